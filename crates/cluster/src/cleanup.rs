//! Stopping the components and removing what the pods leave on the host:
//! sandboxes and containers (through CRI, so CNI DEL runs), leftover shims
//! and container processes, mounts under the data directory, the pods'
//! cgroups, the CNI bridge, the bridge plugin's masquerade chains and the
//! proxy's iptables rules.

use crate::config::{self, Layout, Settings};
use crate::state::{self, State};
use skiff_kubelet::cri::Runtime as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// Stops the components recorded in `state` (containerd last, after the
/// pods' sandboxes are removed through it when `remove_pods`).
pub async fn stop_components(l: &Layout, st: &State, remove_pods: bool) {
    let pid_of = |name: &str| {
        st.components
            .get(name)
            .and_then(|c| c.pid)
            .filter(|pid| state::ours(*pid, &l.dir))
    };
    let mut names: Vec<&str> = config::SERVER_COMPONENTS.to_vec();
    names.reverse();
    let others: Vec<u32> = names
        .iter()
        .filter(|n| **n != "containerd")
        .filter_map(|n| pid_of(n))
        .collect();
    terminate(&others, Duration::from_secs(10)).await;
    let containerd = pid_of("containerd");
    if remove_pods && containerd.is_some() {
        match tokio::time::timeout(Duration::from_secs(90), remove_all_pods(l)).await {
            Ok(Ok(n)) if n > 0 => println!("removed {n} pod sandbox(es) through CRI"),
            Ok(Ok(_)) => {}
            Ok(Err(err)) => eprintln!("removing the pods through CRI: {err:#}"),
            Err(_) => eprintln!("removing the pods through CRI took over 90 s"),
        }
    }
    if let Some(pid) = containerd {
        terminate(&[pid], Duration::from_secs(10)).await;
    }
}

/// SIGTERM, then SIGKILL for whatever still runs after `grace`.
pub async fn terminate(pids: &[u32], grace: Duration) {
    for pid in pids {
        state::signal(*pid, "TERM");
    }
    let deadline = Instant::now() + grace;
    while pids.iter().any(|p| state::alive(*p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for pid in pids.iter().filter(|p| state::alive(**p)) {
        state::signal(*pid, "KILL");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| state::alive(*p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops and removes every pod sandbox (and any container left) through CRI.
async fn remove_all_pods(l: &Layout) -> anyhow::Result<usize> {
    let endpoint = l.containerd_socket().display().to_string();
    let rt = skiff_kubelet::cri::remote::Remote::connect(&endpoint).await?;
    let sandboxes = rt.list_pod_sandbox(None).await?;
    for sb in &sandboxes {
        if let Err(err) = rt.stop_pod_sandbox(&sb.id).await {
            eprintln!("StopPodSandbox {}: {err}", sb.id);
        }
        if let Err(err) = rt.remove_pod_sandbox(&sb.id).await {
            eprintln!("RemovePodSandbox {}: {err}", sb.id);
        }
    }
    for c in rt.list_containers(None).await? {
        let _ = rt.stop_container(&c.id, 0).await;
        let _ = rt.remove_container(&c.id).await;
    }
    Ok(sandboxes.len())
}

/// Removes what stopped processes leave behind. Returns what it could not.
pub async fn leftovers(l: &Layout, s: Option<&Settings>) -> Vec<String> {
    let mut problems = Vec::new();
    let sock = l.containerd_socket().display().to_string();
    // Shims outlive containerd by design; their -address is our socket.
    let shims: Vec<u32> = processes()
        .into_iter()
        .filter(|(_, cmd)| {
            cmd.contains("containerd-shim") && cmd.contains(&format!("-address {sock} "))
        })
        .map(|(pid, _)| pid)
        .collect();
    kill_orphaned_containers(l);
    if !shims.is_empty() {
        println!("killing {} leftover containerd shim(s)", shims.len());
        terminate(&shims, Duration::ZERO).await;
        remove_shim_sockets(l);
    }
    let mounts = mounts_under(&l.dir);
    if !mounts.is_empty() {
        println!(
            "unmounting {} mount(s) under {}",
            mounts.len(),
            l.dir.display()
        );
    }
    for m in &mounts {
        let ok = run("umount", &[m]) || run("umount", &["-l", m]);
        if !ok {
            problems.push(format!("could not unmount {m}"));
        }
    }
    remove_pod_cgroups(l);
    if let Some(s) = s {
        if Path::new("/sys/class/net").join(&s.bridge).exists() {
            if run("ip", &["link", "del", &s.bridge]) {
                println!("deleted the bridge {}", s.bridge);
            } else {
                problems.push(format!("could not delete the bridge {}", s.bridge));
            }
        }
        if let Ok(proxy) = crate::supervisor::resolve("proxy") {
            let ok = std::process::Command::new(&proxy)
                .args(["--cleanup", "--hostname-override", &s.node_name])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|st| st.success());
            if ok {
                println!("removed the proxy's iptables rules (skiff-proxy --cleanup)");
            } else {
                problems.push("skiff-proxy --cleanup failed".into());
            }
        }
    }
    // CNI DEL removes the bridge plugin's masquerade chain of each pod; a
    // pod whose DEL never ran (containerd killed, a full disk) leaves its
    // chain behind. Only chains for this cluster's pod addresses go: another
    // Skiff cluster on this host (other CIDRs) keeps its pods' chains.
    if let Some(s) = s {
        match remove_cni_masquerade(skiff_kubelet::cni::NETWORK_NAME, &s.cluster_cidr) {
            Ok(0) => {}
            Ok(n) => println!("removed {n} leftover CNI masquerade chain(s)"),
            Err(err) => problems.push(format!("removing CNI masquerade chains: {err:#}")),
        }
    }
    // No pod survives: host-local's reservations and the node's CNI config
    // (rewritten by the kubelet from the Node's podCIDR) go.
    let _ = std::fs::remove_dir_all(l.kubelet().join("cni-ipam"));
    if let Ok(entries) = std::fs::read_dir(l.cni_conf_dir()) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if mounts_under(&l.dir).is_empty() {
        let _ = std::fs::remove_dir_all(l.kubelet().join("pods"));
    }
    let _ = std::fs::remove_file(l.containerd_socket());
    let _ = std::fs::remove_file(l.containerd().join("containerd.sock.ttrpc"));
    problems
}

/// Deletes the nat chains the CNI bridge plugin made for pods of `network`
/// in `cluster_cidr` (`CNI-<hash>`, each rule commented `name: "<network>"
/// id: "<container>"`, one accepting the pod subnet) and the POSTROUTING
/// rules jumping to them, in one iptables-restore.
fn remove_cni_masquerade(network: &str, cluster_cidr: &str) -> anyhow::Result<usize> {
    let out = std::process::Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()?;
    anyhow::ensure!(out.status.success(), "iptables-save -t nat failed");
    let (script, chains) =
        cni_masquerade_removal(&String::from_utf8_lossy(&out.stdout), network, cluster_cidr);
    if chains == 0 {
        return Ok(0);
    }
    let mut child = std::process::Command::new("iptables-restore")
        .args(["--noflush", "--wait"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "iptables-restore: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(chains)
}

/// The iptables-restore input that removes `network`'s CNI chains for pod
/// subnets inside `cluster_cidr` from an `iptables-save -t nat` dump, and
/// how many chains it removes.
fn cni_masquerade_removal(dump: &str, network: &str, cluster_cidr: &str) -> (String, usize) {
    let tag = format!("name: \\\"{network}\\\" id: ");
    let rules: Vec<(&str, &str)> = dump
        .lines()
        .filter_map(|l| l.strip_prefix("-A "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    let mut chains: Vec<&str> = rules
        .iter()
        .filter(|(chain, rule)| {
            chain.starts_with("CNI-")
                && rule.contains(&tag)
                && destination(rule).is_some_and(|d| within(d, cluster_cidr))
        })
        .map(|(chain, _)| *chain)
        .collect();
    chains.sort_unstable();
    chains.dedup();
    let mut script = String::from("*nat\n");
    for (chain, rule) in &rules {
        let target = rule.rsplit_once("-j ").map(|(_, t)| t.trim());
        if !chain.starts_with("CNI-") && target.is_some_and(|t| chains.contains(&t)) {
            script.push_str(&format!("-D {chain} {rule}\n"));
        }
    }
    for chain in &chains {
        script.push_str(&format!("-F {chain}\n-X {chain}\n"));
    }
    script.push_str("COMMIT\n");
    (script, chains.len())
}

/// The `-d <address>[/<bits>]` of an iptables rule (not a negated one).
fn destination(rule: &str) -> Option<&str> {
    let mut words = rule.split(' ');
    let mut last = "";
    while let Some(w) = words.next() {
        if w == "-d" && last != "!" {
            return words.next();
        }
        last = w;
    }
    None
}

/// Whether the IPv4 subnet (or address) `inner` lies inside `outer`.
fn within(inner: &str, outer: &str) -> bool {
    let parse = |cidr: &str| -> Option<(u32, u32)> {
        let (ip, bits) = cidr.split_once('/').unwrap_or((cidr, "32"));
        let ip: std::net::Ipv4Addr = ip.parse().ok()?;
        let bits: u32 = bits.parse().ok().filter(|b| *b <= 32)?;
        Some((u32::from(ip), bits))
    };
    let (Some((a, a_bits)), Some((b, b_bits))) = (parse(inner), parse(outer)) else {
        return false;
    };
    let mask = u32::MAX.checked_shl(32 - b_bits).unwrap_or(0);
    a_bits >= b_bits && a & mask == b & mask
}

fn run(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Every process with its command line.
fn processes() -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, format!("{} ", state::cmdline(pid)?))))
        .collect()
}

/// Mount points below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mount_points_under(&text, &prefix)
}

fn mount_points_under(mountinfo: &str, prefix: &str) -> Vec<String> {
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|p| p.starts_with(prefix))
        .collect();
    points.sort();
    points.dedup();
    points.reverse();
    points
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// After containerd or its shims died without cleaning up: kill what still
/// runs in each container of ours (the bundle's init.pid, checked against its
/// cgroup so a recycled pid is left alone).
fn kill_orphaned_containers(l: &Layout) {
    let tasks = l.containerd().join("state/io.containerd.runtime.v2.task");
    let Ok(namespaces) = std::fs::read_dir(&tasks) else {
        return;
    };
    for ns in namespaces.flatten() {
        let Ok(bundles) = std::fs::read_dir(ns.path()) else {
            continue;
        };
        for bundle in bundles.flatten() {
            let id = bundle.file_name().to_string_lossy().into_owned();
            let Some(pid) = std::fs::read_to_string(bundle.path().join("init.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
            else {
                continue;
            };
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            if state::alive(pid) && cgroup.lines().any(|l| l.ends_with(&format!("/{id}"))) {
                println!("killing the processes of container {id}");
                state::signal(pid, "KILL");
            }
        }
    }
}

fn remove_shim_sockets(l: &Layout) {
    let tasks = l.containerd().join("state/io.containerd.runtime.v2.task");
    let Ok(namespaces) = std::fs::read_dir(&tasks) else {
        return;
    };
    for ns in namespaces.flatten() {
        for bundle in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
            if let Ok(address) = std::fs::read_to_string(bundle.path().join("address")) {
                let path = address.trim().trim_start_matches("unix://");
                if path.starts_with("/run/containerd/s/") {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}

/// Removes the (emptied) cgroups of the pods this kubelet ran: their UIDs
/// are the directories under the kubelet's `pods/`.
fn remove_pod_cgroups(l: &Layout) {
    let Ok(pods) = std::fs::read_dir(l.kubelet().join("pods")) else {
        return;
    };
    let uids: Vec<String> = pods
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let controllers: Vec<_> = controllers.flatten().map(|e| e.path()).collect();
    for uid in &uids {
        for c in &controllers {
            for qos in ["", "burstable/", "besteffort/"] {
                let dir = c.join(format!("kubepods/{qos}pod{uid}"));
                if dir.is_dir() {
                    remove_cgroup_tree(&dir);
                }
            }
        }
    }
}

/// rmdir of a cgroup and its children, deepest first (only empty ones go).
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&child.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_networks_cni_chains_and_their_jumps_are_removed() {
        let dump = r#"# Generated by iptables-save
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-aaa - [0:0]
:CNI-bbb - [0:0]
:CNI-other - [0:0]
-A POSTROUTING -s 10.248.0.5/32 -m comment --comment "name: \"skiff\" id: \"c1\"" -j CNI-aaa
-A POSTROUTING -s 10.0.0.9/32 -m comment --comment "name: \"other\" id: \"c9\"" -j CNI-other
-A CNI-aaa -d 10.248.0.0/24 -m comment --comment "name: \"skiff\" id: \"c1\"" -j ACCEPT
-A CNI-aaa ! -d 224.0.0.0/4 -m comment --comment "name: \"skiff\" id: \"c1\"" -j MASQUERADE
-A CNI-bbb -d 10.248.0.0/24 -m comment --comment "name: \"skiff\" id: \"c2\"" -j ACCEPT
-A CNI-other -d 10.0.0.0/24 -m comment --comment "name: \"other\" id: \"c9\"" -j ACCEPT
COMMIT
"#;
        let (script, n) = cni_masquerade_removal(dump, "skiff", "10.248.0.0/16");
        assert_eq!(n, 2);
        assert_eq!(
            script,
            "*nat\n\
             -D POSTROUTING -s 10.248.0.5/32 -m comment --comment \"name: \\\"skiff\\\" id: \\\"c1\\\"\" -j CNI-aaa\n\
             -F CNI-aaa\n-X CNI-aaa\n-F CNI-bbb\n-X CNI-bbb\nCOMMIT\n"
        );
        assert_eq!(
            cni_masquerade_removal("*nat\nCOMMIT\n", "skiff", "10.248.0.0/16").1,
            0
        );
        // Another Skiff cluster's pods (another CIDR) keep theirs.
        assert_eq!(cni_masquerade_removal(dump, "skiff", "10.244.0.0/16").1, 0);
    }

    #[test]
    fn mounts_under_the_data_dir_come_deepest_first() {
        let info = "\
36 35 98:0 / / rw - ext4 /dev/root rw
40 36 0:40 / /d/containerd/state/netns/cni-1 rw - nsfs nsfs rw
41 36 0:41 / /d/kubelet/pods/u1/volumes/kubernetes.io~projected/kube\\040api rw - tmpfs tmpfs rw
42 36 0:42 / /d/containerd/state/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw - overlay overlay rw
43 36 0:43 / /dd/other rw - tmpfs tmpfs rw
";
        let m = mount_points_under(info, "/d/");
        assert_eq!(
            m,
            [
                "/d/kubelet/pods/u1/volumes/kubernetes.io~projected/kube api",
                "/d/containerd/state/netns/cni-1",
                "/d/containerd/state/io.containerd.runtime.v2.task/k8s.io/abc/rootfs",
            ]
        );
    }
}
