//! Kernel settings the proxy needs, behind a trait with a fake.

#[cfg(any(test, feature = "testing"))]
use std::collections::BTreeMap;
#[cfg(any(test, feature = "testing"))]
use std::sync::Mutex;

/// Reads and writes sysctls (`net/ipv4/conf/all/route_localnet` style keys).
pub trait Sysctl: Send + Sync {
    /// None when the setting does not exist (module not loaded).
    fn get(&self, key: &str) -> Option<String>;
    fn set(&self, key: &str, value: &str) -> Result<(), String>;
}

/// /proc/sys of this process, or `sysctl -w` inside a network namespace.
#[derive(Clone, Debug, Default)]
pub struct ProcSysctl {
    prefix: Vec<String>,
}

impl ProcSysctl {
    pub fn new(netns: Option<&str>) -> ProcSysctl {
        ProcSysctl {
            prefix: crate::host::netns_prefix(netns),
        }
    }
}

impl Sysctl for ProcSysctl {
    fn get(&self, key: &str) -> Option<String> {
        if self.prefix.is_empty() {
            return std::fs::read_to_string(format!("/proc/sys/{key}"))
                .ok()
                .map(|v| v.trim().to_string());
        }
        let out = crate::host::command(&self.prefix, "cat")
            .arg(format!("/proc/sys/{key}"))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn set(&self, key: &str, value: &str) -> Result<(), String> {
        if self.prefix.is_empty() {
            return std::fs::write(format!("/proc/sys/{key}"), value).map_err(|e| e.to_string());
        }
        let out = crate::host::command(&self.prefix, "sysctl")
            .arg("-w")
            .arg(format!("{}={value}", key.replace('/', ".")))
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

/// In-memory settings; records what was set.
#[cfg(any(test, feature = "testing"))]
#[derive(Default)]
pub struct FakeSysctl {
    pub values: Mutex<BTreeMap<String, String>>,
}

#[cfg(any(test, feature = "testing"))]
impl Sysctl for FakeSysctl {
    fn get(&self, key: &str) -> Option<String> {
        self.values.lock().unwrap().get(key).cloned()
    }

    fn set(&self, key: &str, value: &str) -> Result<(), String> {
        self.values
            .lock()
            .unwrap()
            .insert(key.to_string(), value.to_string());
        Ok(())
    }
}

pub(crate) const ROUTE_LOCALNET: &str = "net/ipv4/conf/all/route_localnet";
pub(crate) const BRIDGE_NF_CALL_IPTABLES: &str = "net/bridge/bridge-nf-call-iptables";

/// Sets what the ruleset relies on, as upstream does at start: route_localnet
/// for node ports on 127.0.0.1, bridge-nf-call-iptables when br_netfilter is
/// loaded (so bridged pod traffic sees the rules). ip_forward is left alone,
/// as upstream leaves it (the network plugin's job).
pub(crate) fn ensure(sysctl: &dyn Sysctl, localhost_node_ports: bool) {
    if localhost_node_ports {
        set_to_one(sysctl, ROUTE_LOCALNET);
    }
    if sysctl.get(BRIDGE_NF_CALL_IPTABLES).is_some() {
        set_to_one(sysctl, BRIDGE_NF_CALL_IPTABLES);
    } else {
        tracing::info!(
            sysctl = BRIDGE_NF_CALL_IPTABLES,
            "br_netfilter not loaded; bridged traffic will not see the rules"
        );
    }
}

fn set_to_one(sysctl: &dyn Sysctl, key: &str) {
    if sysctl.get(key).as_deref() == Some("1") {
        tracing::info!(sysctl = key, value = "1", "sysctl already set");
        return;
    }
    match sysctl.set(key, "1") {
        Ok(()) => tracing::info!(sysctl = key, value = "1", "set sysctl"),
        Err(error) => tracing::warn!(sysctl = key, %error, "could not set sysctl"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_localnet_is_set_and_bridge_calls_only_when_br_netfilter_is_loaded() {
        let fake = FakeSysctl::default();
        ensure(&fake, true);
        assert_eq!(fake.get(ROUTE_LOCALNET).as_deref(), Some("1"));
        assert_eq!(fake.get(BRIDGE_NF_CALL_IPTABLES), None);

        let fake = FakeSysctl::default();
        fake.set(BRIDGE_NF_CALL_IPTABLES, "0").unwrap();
        ensure(&fake, false);
        assert_eq!(fake.get(ROUTE_LOCALNET), None);
        assert_eq!(fake.get(BRIDGE_NF_CALL_IPTABLES).as_deref(), Some("1"));
    }
}
