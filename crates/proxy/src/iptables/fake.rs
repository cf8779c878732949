//! An in-memory iptables: applies restore batches with the semantics the
//! proxy relies on (declaring a chain creates or flushes it, `-A`, `-I`,
//! `-D`, `-X` of an unreferenced chain, all or nothing per batch) and keeps
//! every batch it was given.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Error, Iptables};

const BUILTIN: &[(&str, &[&str])] = &[
    ("filter", &["INPUT", "FORWARD", "OUTPUT"]),
    ("nat", &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]),
];

type Tables = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// See the module documentation.
pub struct FakeIptables {
    state: Mutex<FakeState>,
}

struct FakeState {
    tables: Tables,
    restores: Vec<String>,
    saves: usize,
    fail_next_restore: bool,
}

impl Default for FakeIptables {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeIptables {
    /// Empty tables with their built-in chains.
    pub fn new() -> FakeIptables {
        let mut tables = Tables::new();
        for (table, chains) in BUILTIN {
            let t = tables.entry(table.to_string()).or_default();
            for c in *chains {
                t.insert(c.to_string(), Vec::new());
            }
        }
        FakeIptables {
            state: Mutex::new(FakeState {
                tables,
                restores: Vec::new(),
                saves: 0,
                fail_next_restore: false,
            }),
        }
    }

    /// Every batch given to `restore`, oldest first.
    pub fn restores(&self) -> Vec<String> {
        self.state.lock().unwrap().restores.clone()
    }

    /// How many times `save` ran.
    pub fn saves(&self) -> usize {
        self.state.lock().unwrap().saves
    }

    /// The rules of one chain, each without its `-A CHAIN ` prefix.
    pub fn chain(&self, table: &str, chain: &str) -> Option<Vec<String>> {
        self.state
            .lock()
            .unwrap()
            .tables
            .get(table)?
            .get(chain)
            .cloned()
    }

    /// Names of the chains in a table.
    pub fn chains(&self, table: &str) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state
            .tables
            .get(table)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Makes the next restore fail, as a kernel error would.
    pub fn fail_next_restore(&self) {
        self.state.lock().unwrap().fail_next_restore = true;
    }

    /// Empties every chain, as someone running `iptables -F` would.
    pub fn flush_everything(&self) {
        let mut state = self.state.lock().unwrap();
        for table in state.tables.values_mut() {
            for rules in table.values_mut() {
                rules.clear();
            }
        }
    }

    fn apply(tables: &mut Tables, data: &str) -> Result<(), String> {
        let mut table: Option<String> = None;
        for line in data.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(t) = line.strip_prefix('*') {
                table = Some(t.to_string());
                tables.entry(t.to_string()).or_default();
                continue;
            }
            let Some(tname) = &table else {
                return Err(format!("line outside a table: {line}"));
            };
            if line == "COMMIT" {
                table = None;
                continue;
            }
            let t = tables.get_mut(tname).expect("table created");
            if let Some(decl) = line.strip_prefix(':') {
                let name = decl.split_whitespace().next().unwrap_or_default();
                t.entry(name.to_string()).or_default().clear();
                continue;
            }
            let mut words = line.splitn(3, ' ');
            let op = words.next().unwrap_or_default();
            let chain = words.next().unwrap_or_default().to_string();
            let rest = words.next().unwrap_or_default().to_string();
            match op {
                "-A" | "-I" | "-D" => {
                    if !t.contains_key(&chain) {
                        return Err(format!("no chain {chain}: {line}"));
                    }
                    if let Some(target) = jump_target(&rest)
                        && target.starts_with("KUBE-")
                        && !t.contains_key(target)
                    {
                        return Err(format!("no chain/target {target}: {line}"));
                    }
                    let rules = t.get_mut(&chain).expect("checked");
                    match op {
                        "-A" => rules.push(rest),
                        "-I" => {
                            let (pos, rule) = match rest.split_once(' ') {
                                Some((n, r)) if n.parse::<usize>().is_ok() => {
                                    (n.parse::<usize>().unwrap().max(1) - 1, r.to_string())
                                }
                                _ => (0, rest),
                            };
                            rules.insert(pos.min(rules.len()), rule);
                        }
                        _ => {
                            let Some(i) = rules.iter().position(|r| *r == rest) else {
                                return Err(format!("no such rule: {line}"));
                            };
                            rules.remove(i);
                        }
                    }
                }
                "-X" => {
                    if !t.contains_key(&chain) {
                        return Err(format!("no chain {chain}: {line}"));
                    }
                    let referenced = t
                        .values()
                        .flatten()
                        .any(|r| jump_target(r) == Some(chain.as_str()));
                    if referenced {
                        return Err(format!("chain {chain} is still referenced"));
                    }
                    t.remove(&chain);
                }
                _ => return Err(format!("unknown command: {line}")),
            }
        }
        if table.is_some() {
            return Err("missing COMMIT".into());
        }
        Ok(())
    }
}

fn jump_target(rule: &str) -> Option<&str> {
    let words: Vec<&str> = rule.split_whitespace().collect();
    words.windows(2).find(|w| w[0] == "-j").map(|w| w[1])
}

impl Iptables for FakeIptables {
    fn save(&self) -> Result<String, Error> {
        let mut state = self.state.lock().unwrap();
        state.saves += 1;
        let mut out = String::new();
        for (table, chains) in &state.tables {
            out.push_str(&format!("*{table}\n"));
            for name in chains.keys() {
                let builtin = BUILTIN
                    .iter()
                    .any(|(t, c)| t == table && c.contains(&name.as_str()));
                let policy = if builtin { "ACCEPT" } else { "-" };
                out.push_str(&format!(":{name} {policy} [0:0]\n"));
            }
            for (name, rules) in chains {
                for rule in rules {
                    out.push_str(&format!("-A {name} {rule}\n"));
                }
            }
            out.push_str("COMMIT\n");
        }
        Ok(out)
    }

    fn restore(&self, data: &str) -> Result<(), Error> {
        let mut state = self.state.lock().unwrap();
        state.restores.push(data.to_string());
        if std::mem::take(&mut state.fail_next_restore) {
            return Err(Error::Failed {
                program: "iptables-restore".into(),
                stderr: "injected failure".into(),
            });
        }
        let mut tables = state.tables.clone();
        FakeIptables::apply(&mut tables, data).map_err(|stderr| Error::Failed {
            program: "iptables-restore".into(),
            stderr,
        })?;
        state.tables = tables;
        Ok(())
    }
}
