//! The iptables back end: read the tables with `iptables-save`, write a
//! whole batch with one `iptables-restore --noflush`. Behind a trait, with a
//! fake that keeps tables in memory and records every batch.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

#[cfg(any(test, feature = "testing"))]
mod fake;
#[cfg(any(test, feature = "testing"))]
pub use fake::FakeIptables;

/// Failures of the iptables tools.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not run {program} (is the iptables package installed?)")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed: {stderr}")]
    Failed { program: String, stderr: String },
}

/// Reads and writes the kernel's tables.
pub trait Iptables: Send + Sync {
    /// `iptables-save` output for the `filter` and `nat` tables.
    fn save(&self) -> Result<String, Error>;
    /// Applies `data` with `iptables-restore --noflush`, all or nothing.
    fn restore(&self, data: &str) -> Result<(), Error>;
}

/// The real tools, optionally run inside a network namespace
/// (`ip netns exec NAME`), which tests and benchmarks use.
#[derive(Clone, Debug, Default)]
pub struct ExecIptables {
    prefix: Vec<String>,
}

impl ExecIptables {
    /// The host's own tables.
    pub fn new() -> ExecIptables {
        ExecIptables { prefix: Vec::new() }
    }

    /// The tables of a named network namespace.
    pub fn in_netns(netns: &str) -> ExecIptables {
        ExecIptables {
            prefix: vec!["ip".into(), "netns".into(), "exec".into(), netns.into()],
        }
    }

    fn command(&self, program: &str) -> Command {
        crate::host::command(&self.prefix, program)
    }
}

impl Iptables for ExecIptables {
    fn save(&self) -> Result<String, Error> {
        let mut out = String::new();
        for table in ["filter", "nat"] {
            let output = self
                .command("iptables-save")
                .args(["-t", table])
                .stderr(Stdio::piped())
                .output()
                .map_err(|source| Error::Spawn {
                    program: "iptables-save".into(),
                    source,
                })?;
            if !output.status.success() {
                return Err(Error::Failed {
                    program: "iptables-save".into(),
                    stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
                });
            }
            out.push_str(&String::from_utf8_lossy(&output.stdout));
        }
        Ok(out)
    }

    fn restore(&self, data: &str) -> Result<(), Error> {
        let spawn = |source| Error::Spawn {
            program: "iptables-restore".into(),
            source,
        };
        let mut child = self
            .command("iptables-restore")
            .args(["-w", "5", "--noflush", "--counters"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn)?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let write = stdin.write_all(data.as_bytes());
        drop(stdin);
        let output = child.wait_with_output().map_err(spawn)?;
        write.map_err(spawn)?;
        if !output.status.success() {
            return Err(Error::Failed {
                program: "iptables-restore".into(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(())
    }
}

/// `iptables-save` output, parsed: per table, its chains and its rules
/// (each the `-A` line as printed).
#[derive(Debug, Default, Clone)]
pub struct Saved {
    pub tables: BTreeMap<String, SavedTable>,
}

/// One table of [`Saved`].
#[derive(Debug, Default, Clone)]
pub struct SavedTable {
    pub chains: BTreeSet<String>,
    pub rules: Vec<String>,
}

impl Saved {
    pub fn parse(text: &str) -> Saved {
        let mut saved = Saved::default();
        let mut current: Option<String> = None;
        for line in text.lines() {
            if let Some(table) = line.strip_prefix('*') {
                current = Some(table.to_string());
                saved.tables.entry(table.to_string()).or_default();
            } else if let Some(table) = &current {
                let t = saved.tables.get_mut(table).expect("table entered");
                if let Some(decl) = line.strip_prefix(':') {
                    if let Some(name) = decl.split_whitespace().next() {
                        t.chains.insert(name.to_string());
                    }
                } else if line.starts_with("-A ") {
                    t.rules.push(line.to_string());
                }
            }
        }
        saved
    }

    pub fn table(&self, name: &str) -> Option<&SavedTable> {
        self.tables.get(name)
    }

    /// Whether `from` (in `table`) has a rule jumping to `to`.
    pub fn has_jump(&self, table: &str, from: &str, to: &str) -> bool {
        self.table(table).is_some_and(|t| {
            t.rules.iter().any(|r| {
                let mut words = r.split_whitespace();
                words.next() == Some("-A")
                    && words.next() == Some(from)
                    && r.split_whitespace()
                        .collect::<Vec<_>>()
                        .windows(2)
                        .any(|w| w[0] == "-j" && w[1] == to)
            })
        })
    }
}
