//! Small facts about the host the standard library does not give.

use std::net::{IpAddr, UdpSocket};
use std::path::Path;

/// The address of the interface the default route leaves by, found by
/// "connecting" a UDP socket (no packet is sent); loopback without a route.
pub fn default_ip() -> IpAddr {
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("10.255.255.255:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// Lowers the kubelet's OOM score as upstream does (-999). Machines whose root
/// lacks CAP_SYS_RESOURCE refuse that; it is only worth a warning.
pub fn set_own_oom_score() {
    if let Err(err) = std::fs::write("/proc/self/oom_score_adj", "-999") {
        tracing::warn!("could not set the kubelet's oom_score_adj to -999: {err}");
    }
}

/// Total and available bytes of the filesystem holding `path`.
pub fn filesystem_bytes(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs only writes into the zeroed struct we own, and c_path is
    // a valid NUL-terminated string for the duration of the call.
    let stat = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c_path.as_ptr(), &mut stat) != 0 {
            return None;
        }
        stat
    };
    let block = stat.f_frsize as u64;
    Some((stat.f_blocks as u64 * block, stat.f_bavail as u64 * block))
}

/// Total memory and memory available, in bytes, from /proc/meminfo.
pub fn memory_bytes() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

/// Logical CPUs the kubelet may use.
pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The kernel release (`uname -r`), OS image and machine id for nodeInfo.
pub fn node_info_facts() -> (String, String, String, String) {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let os_image = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into());
    let machine_id = std::fs::read_to_string("/etc/machine-id")
        .unwrap_or_default()
        .trim()
        .to_string();
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap_or_default()
        .trim()
        .to_string();
    (kernel, os_image, machine_id, boot_id)
}

/// Resident memory of this process in bytes (for `/metrics`).
pub fn own_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|t| {
            t.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// CPU time the whole machine has used, in nanoseconds (from /proc/stat).
pub fn cpu_usage_nanos() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    // user nice system (idle iowait excluded) irq softirq steal, in clock ticks.
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum();
    // Linux reports USER_HZ = 100 ticks per second.
    busy * 10_000_000
}

/// The machine's CPU use rate in nanocores, averaged since the previous
/// sample at least a second old (0 on the first call, like a fresh
/// cAdvisor): `/stats/summary` reports it as the node's `usageNanoCores`.
pub fn cpu_usage_nano_cores() -> u64 {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    // The sample the rate is measured from, and the last rate computed.
    static LAST: Mutex<Option<(Instant, u64, u64)>> = Mutex::new(None);
    let now = Instant::now();
    let used = cpu_usage_nanos();
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    match *last {
        Some((at, _, rate)) if now.duration_since(at) < Duration::from_secs(1) => rate,
        Some((at, before, _)) => {
            let elapsed = now.duration_since(at).as_nanos().max(1);
            let rate = (u128::from(used.saturating_sub(before)) * 1_000_000_000 / elapsed) as u64;
            *last = Some((now, used, rate));
            rate
        }
        None => {
            *last = Some((now, used, 0));
            0
        }
    }
}
