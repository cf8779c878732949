//! The supervisor's record of its components (`state.json`), read by `up`
//! for progress, by `status` and by `down`; and the few process helpers they
//! share (is a pid alive, is it ours, signal it).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// What the supervisor last wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub supervisor_pid: u32,
    /// How far the start has come, in words (`up` shows it).
    pub phase: String,
    /// The components, by name.
    pub components: BTreeMap<String, Component>,
    /// Set when the supervisor has given up (a missing file, a failed step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    /// The running process, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub restarts: u32,
    /// `running`, `backoff`, `not built`, `waiting` or `stopped`.
    pub status: String,
    /// How the previous process ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
}

impl State {
    pub fn load(path: &Path) -> Option<State> {
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes through a temporary file and a rename, so readers never see
    /// half a file.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).expect("plain data"))?;
        std::fs::rename(&tmp, path)
    }
}

/// Whether `pid` runs (a zombie does not).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => false,
    }
}

/// The command line of `pid`, its arguments joined by spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Whether `pid` runs and is one of this cluster's processes: its command
/// line names the data directory (a recycled pid would not).
pub fn ours(pid: u32, data_dir: &Path) -> bool {
    alive(pid) && cmdline(pid).is_some_and(|c| names_dir(&c, data_dir))
}

/// Whether a command line names `dir` itself or a path below it (and not
/// merely a longer name such as `<dir>2`).
fn names_dir(cmdline: &str, dir: &Path) -> bool {
    let dir = dir.display().to_string();
    let line = format!("{cmdline} ");
    line.contains(&format!("{dir}/")) || line.contains(&format!("{dir} "))
}

/// Sends `signal` (`TERM`, `KILL`) to `pid` with kill(1); this crate does no
/// unsafe calls of its own.
pub fn signal(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// The supervisor's pid, when it runs.
pub fn supervisor(layout: &crate::config::Layout) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(layout.supervisor_pid())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    ours(pid, &layout.dir).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut state = State {
            supervisor_pid: 42,
            phase: "starting the API server".into(),
            ..State::default()
        };
        state.components.insert(
            "kubelet".into(),
            Component {
                pid: Some(7),
                restarts: 2,
                status: "running".into(),
                last_exit: Some("signal 9".into()),
            },
        );
        state.save(&path).unwrap();
        assert_eq!(State::load(&path), Some(state));
        assert!(!dir.path().join("state.json.tmp").exists());
    }

    #[test]
    fn a_missing_or_broken_state_file_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(State::load(&path), None);
        std::fs::write(&path, "{").unwrap();
        assert_eq!(State::load(&path), None);
    }

    #[test]
    fn a_command_line_names_the_data_dir_or_paths_below_it_only() {
        let d = Path::new("/tmp/x");
        assert!(names_dir("skiffctl up --data-dir /tmp/x", d));
        assert!(names_dir(
            "containerd --config /tmp/x/containerd/config.toml",
            d
        ));
        assert!(names_dir(
            "skiff-kubelet --container-runtime-endpoint unix:///tmp/x/containerd/containerd.sock",
            d
        ));
        assert!(!names_dir("skiffctl up --data-dir /tmp/x2", d));
        assert!(!names_dir(
            "containerd --config /tmp/x2/containerd/config.toml",
            d
        ));
    }

    #[test]
    fn this_process_is_alive_and_named_by_its_command_line() {
        let me = std::process::id();
        assert!(alive(me));
        let line = cmdline(me).unwrap();
        assert!(!line.is_empty());
        assert!(!ours(me, Path::new("/no/such/data/dir")));
        assert!(!alive(u32::MAX - 1));
    }
}
