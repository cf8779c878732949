//! Removing conntrack entries that would keep steering UDP packets to an
//! endpoint that is gone (or to a service's REJECT). Behind a trait with a
//! fake that records each deletion's arguments.

use std::process::Stdio;
#[cfg(any(test, feature = "testing"))]
use std::sync::Mutex;

/// Deletes conntrack entries.
pub trait Conntrack: Send + Sync {
    /// `conntrack -D <args>`; deleting nothing is not an error.
    fn delete(&self, args: &[String]) -> Result<(), String>;
}

/// The `conntrack` tool, optionally inside a network namespace.
#[derive(Clone, Debug, Default)]
pub struct ExecConntrack {
    pub(crate) prefix: Vec<String>,
}

impl ExecConntrack {
    pub fn new(netns: Option<&str>) -> ExecConntrack {
        ExecConntrack {
            prefix: crate::host::netns_prefix(netns),
        }
    }
}

impl Conntrack for ExecConntrack {
    fn delete(&self, args: &[String]) -> Result<(), String> {
        let output = crate::host::command(&self.prefix, "conntrack")
            .arg("-D")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("could not run conntrack (install the conntrack package): {e}"))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() || stderr.contains("0 flow entries") {
            Ok(())
        } else {
            Err(format!(
                "conntrack -D {}: {}",
                args.join(" "),
                stderr.trim()
            ))
        }
    }
}

/// Records deletions instead of making them.
#[cfg(any(test, feature = "testing"))]
#[derive(Default)]
pub struct FakeConntrack {
    pub deleted: Mutex<Vec<Vec<String>>>,
}

#[cfg(any(test, feature = "testing"))]
impl Conntrack for FakeConntrack {
    fn delete(&self, args: &[String]) -> Result<(), String> {
        self.deleted.lock().unwrap().push(args.to_vec());
        Ok(())
    }
}
