//! What a cluster on this machine is made of: its settings (kept in
//! `cluster.json` so the supervisor and `down` see what `up` was told), where
//! everything lives under the data directory, and each component's command
//! line. Everything here is pure, so it is unit-tested.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Whether this machine runs the whole cluster (`up`) or only a node of
/// another one (`join`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Server,
    Node,
}

/// The settings of the cluster, as given to `up` or `join`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub mode: Mode,
    pub node_name: String,
    pub secure_port: u16,
    pub etcd_servers: Vec<String>,
    pub service_cidr: String,
    pub cluster_cidr: String,
    pub node_cidr_mask_size: u8,
    pub dns_service_ip: String,
    pub cluster_domain: String,
    pub bridge: String,
    pub controller_manager_port: u16,
    pub scheduler_port: u16,
    pub kubelet_port: u16,
    pub proxy_healthz_port: u16,
    pub proxy_metrics_port: u16,
    pub dns_port: u16,
    pub dns_health_port: u16,
    pub dns_ready_port: u16,
    pub dns_metrics_port: u16,
    pub eviction_hard: String,
    /// The OCI archives imported into containerd at start.
    pub images_dir: PathBuf,
    /// `join` only: the API server's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// `join` only: the bootstrap token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// `join` only: the cluster CA file, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<PathBuf>,
}

impl Settings {
    /// Upstream's and CLUSTER-DEFAULTS' values.
    pub fn defaults(mode: Mode, node_name: String, images_dir: PathBuf) -> Settings {
        Settings {
            mode,
            node_name,
            secure_port: 6443,
            etcd_servers: Vec::new(),
            service_cidr: "10.96.0.0/12".into(),
            cluster_cidr: "10.244.0.0/16".into(),
            node_cidr_mask_size: 24,
            dns_service_ip: "10.96.0.10".into(),
            cluster_domain: "cluster.local".into(),
            bridge: "skiff0".into(),
            controller_manager_port: 10257,
            scheduler_port: 10259,
            kubelet_port: 10250,
            proxy_healthz_port: 10256,
            proxy_metrics_port: 10249,
            dns_port: 53,
            dns_health_port: 8080,
            dns_ready_port: 8181,
            dns_metrics_port: 9153,
            eviction_hard: String::new(),
            images_dir,
            server: None,
            token: None,
            certificate_authority: None,
        }
    }
}

/// Where everything lives under the data directory (an absolute path).
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> std::io::Result<Layout> {
        let dir = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir()?.join(dir)
        };
        Ok(Layout {
            dir: normalize(&dir),
        })
    }
    pub fn settings(&self) -> PathBuf {
        self.dir.join("cluster.json")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn supervisor_pid(&self) -> PathBuf {
        self.dir.join("supervisor.pid")
    }
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
    pub fn log(&self, component: &str) -> PathBuf {
        self.logs().join(format!("{component}.log"))
    }
    pub fn images(&self) -> PathBuf {
        self.dir.join("images")
    }
    pub fn containerd(&self) -> PathBuf {
        self.dir.join("containerd")
    }
    pub fn containerd_config(&self) -> PathBuf {
        self.containerd().join("config.toml")
    }
    pub fn containerd_socket(&self) -> PathBuf {
        self.containerd().join("containerd.sock")
    }
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.containerd().join("cni/net.d")
    }
    pub fn pod_logs(&self) -> PathBuf {
        self.containerd().join("pod-logs")
    }
    pub fn apiserver(&self) -> PathBuf {
        self.dir.join("apiserver")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.apiserver().join("pki/ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.apiserver().join("pki/ca.key")
    }
    /// The API server writes this one; `admin_kubeconfig` is a copy.
    pub fn apiserver_admin_kubeconfig(&self) -> PathBuf {
        self.apiserver().join("admin.kubeconfig")
    }
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }
    pub fn kubelet(&self) -> PathBuf {
        self.dir.join("kubelet")
    }
    pub fn kubelet_kubeconfig(&self) -> PathBuf {
        self.dir.join("kubelet.kubeconfig")
    }
    pub fn bootstrap_kubeconfig(&self) -> PathBuf {
        self.dir.join("bootstrap-kubelet.kubeconfig")
    }
    pub fn kubelet_ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn manifests(&self) -> PathBuf {
        self.dir.join("manifests")
    }
}

/// `a/./b/../c` → `a/c`, without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The component names, in start order (stopped in reverse).
pub const SERVER_COMPONENTS: &[&str] = &[
    "containerd",
    "apiserver",
    "controller-manager",
    "scheduler",
    "kubelet",
    "proxy",
    "dns",
];
pub const NODE_COMPONENTS: &[&str] = &["containerd", "kubelet", "proxy"];

pub fn components(mode: &Mode) -> &'static [&'static str] {
    match mode {
        Mode::Server => SERVER_COMPONENTS,
        Mode::Node => NODE_COMPONENTS,
    }
}

/// The executable of a component.
pub fn program(component: &str) -> &'static str {
    match component {
        "containerd" => "containerd",
        "apiserver" => "skiff-apiserver",
        "controller-manager" => "skiff-controller-manager",
        "scheduler" => "skiff-scheduler",
        "kubelet" => "skiff-kubelet",
        "proxy" => "skiff-proxy",
        "dns" => "skiff-dns",
        _ => "unknown",
    }
}

/// What the supervisor learns of this machine when it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// The address other hosts reach this one at: the kubelet's
    /// `--node-ip`, and where cluster DNS listens (a DNS server on the
    /// wildcard address would answer from whichever address routing picks,
    /// not the one the Service's DNAT sent the query to).
    pub node_ip: String,
    /// `join` only: the pod CIDR the cluster allocated to this node (the
    /// kubelet's `--pod-cidr`), learned before the kubelet starts.
    pub pod_cidr: Option<String>,
}

/// The first `/mask` subnet of `cidr` (`10.244.0.0/16`, 24 → `10.244.0.0/24`):
/// the node's pod CIDR when no controller allocates one.
pub fn first_subnet(cidr: &str, mask: u8) -> String {
    let base = cidr.split('/').next().unwrap_or(cidr);
    format!("{base}/{mask}")
}

/// The command line (program arguments, without the program) of `component`.
pub fn args(component: &str, s: &Settings, l: &Layout, host: &Host) -> Vec<String> {
    let p = |p: PathBuf| p.display().to_string();
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    let admin = p(l.admin_kubeconfig());
    match component {
        "containerd" => push(&["--config", &p(l.containerd_config())]),
        "apiserver" => {
            push(&[
                "--data-dir",
                &p(l.apiserver()),
                "--secure-port",
                &s.secure_port.to_string(),
                "--service-cluster-ip-range",
                &s.service_cidr,
                "--enable-bootstrap-token-auth=true",
            ]);
            if !s.etcd_servers.is_empty() {
                push(&["--etcd-servers", &s.etcd_servers.join(",")]);
            }
        }
        "controller-manager" => {
            push(&[
                "--kubeconfig",
                &admin,
                "--root-ca-file",
                &p(l.ca_cert()),
                "--secure-port",
                &s.controller_manager_port.to_string(),
            ]);
            push(&[
                "--allocate-node-cidrs=true",
                "--cluster-cidr",
                &s.cluster_cidr,
                "--node-cidr-mask-size",
                &s.node_cidr_mask_size.to_string(),
                "--cluster-signing-cert-file",
                &p(l.ca_cert()),
                "--cluster-signing-key-file",
                &p(l.ca_key()),
                // Volumes for claims of the default StorageClass, in
                // directories on this (the only) node.
                "--enable-hostpath-provisioner",
                "--hostpath-provisioner-dir",
                &p(l.dir.join("hostpath-volumes")),
            ]);
        }
        "scheduler" => push(&[
            "--kubeconfig",
            &admin,
            "--secure-port",
            &s.scheduler_port.to_string(),
        ]),
        "kubelet" => {
            push(&[
                "--kubeconfig",
                &p(l.kubelet_kubeconfig()),
                "--container-runtime-endpoint",
                &format!("unix://{}", l.containerd_socket().display()),
                "--hostname-override",
                &s.node_name,
                "--root-dir",
                &p(l.kubelet()),
                "--pod-logs-dir",
                &p(l.pod_logs()),
                "--pod-manifest-path",
                &p(l.manifests()),
                "--cni-conf-dir",
                &p(l.cni_conf_dir()),
                "--cni-bridge",
                &s.bridge,
                "--client-ca-file",
                &p(l.kubelet_ca()),
                "--port",
                &s.kubelet_port.to_string(),
                "--cluster-dns",
                &s.dns_service_ip,
                "--cluster-domain",
                &s.cluster_domain,
                "--node-ip",
                &host.node_ip,
            ]);
            if s.mode == Mode::Node {
                push(&["--bootstrap-kubeconfig", &p(l.bootstrap_kubeconfig())]);
            }
            if !s.eviction_hard.is_empty() {
                push(&["--eviction-hard", &s.eviction_hard]);
            }
            // The kubelet writes its CNI configuration as it starts, before
            // the node IPAM controller has set the Node's spec.podCIDR (and
            // without that controller nobody does): on `up`'s single node
            // that allocation is the cluster CIDR's first subnet anyway.
            // On a joined node, the subnet the node IPAM controller gave its
            // Node (see join::pod_cidr).
            match (&s.mode, &host.pod_cidr) {
                (Mode::Server, _) => push(&[
                    "--pod-cidr",
                    &first_subnet(&s.cluster_cidr, s.node_cidr_mask_size),
                ]),
                (Mode::Node, Some(cidr)) => push(&["--pod-cidr", cidr]),
                (Mode::Node, None) => {}
            }
        }
        "proxy" => {
            let kubeconfig = match s.mode {
                Mode::Server => admin,
                Mode::Node => p(l.kubelet_kubeconfig()),
            };
            push(&[
                "--kubeconfig",
                &kubeconfig,
                "--hostname-override",
                &s.node_name,
                "--cluster-cidr",
                &s.cluster_cidr,
                "--healthz-bind-address",
                &format!("0.0.0.0:{}", s.proxy_healthz_port),
                "--metrics-bind-address",
                &format!("127.0.0.1:{}", s.proxy_metrics_port),
            ]);
        }
        "dns" => push(&[
            "--kubeconfig",
            &admin,
            "--cluster-domain",
            &s.cluster_domain,
            "--dns-address",
            &format!("{}:{}", host.node_ip, s.dns_port),
            "--health-address",
            &format!("0.0.0.0:{}", s.dns_health_port),
            "--ready-address",
            &format!("0.0.0.0:{}", s.dns_ready_port),
            "--metrics-address",
            &format!("0.0.0.0:{}", s.dns_metrics_port),
        ]),
        _ => {}
    }
    a
}

/// How `status` checks a component: scheme, port and path.
pub fn health_endpoint(component: &str, s: &Settings) -> Option<(&'static str, u16, &'static str)> {
    Some(match component {
        "apiserver" => ("https", s.secure_port, "/readyz"),
        "controller-manager" => ("https", s.controller_manager_port, "/healthz"),
        "scheduler" => ("https", s.scheduler_port, "/healthz"),
        "kubelet" => ("https", s.kubelet_port, "/healthz"),
        "proxy" => ("http", s.proxy_healthz_port, "/healthz"),
        "dns" => ("http", s.dns_health_port, "/health"),
        _ => return None,
    })
}

/// containerd's configuration: everything under the data directory, so it
/// never meets a containerd the machine already runs, and the machine's trap
/// (no CAP_SYS_RESOURCE: a negative oom_score_adj fails every
/// RunPodSandbox) handled with `restrict_oom_score_adj`.
pub fn containerd_config(l: &Layout, sandbox_image: &str) -> String {
    let dir = l.containerd();
    let d = dir.display();
    let sock = l.containerd_socket();
    let sock = sock.display();
    format!(
        r#"# Written by skiffctl on every start.
version = 2
root = "{d}/root"
state = "{d}/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "{sock}"
  tcp_address = ""

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{d}/opt"

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{sandbox_image}"
    # This machine's root lacks CAP_SYS_RESOURCE: a negative oom_score_adj
    # fails every RunPodSandbox ("can't get final child's PID from pipe: EOF").
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    disable_tcp_service = true
    enable_selinux = false
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "{d}/runc"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "{cni}"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "{d}/certs.d"
"#,
        cni = l.cni_conf_dir().display(),
    )
}

/// A kubeconfig for one user: a client certificate, or a bearer token.
pub fn kubeconfig(server: &str, ca_pem: Option<&str>, user: &str, cred: Credential<'_>) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let cluster = match ca_pem {
        Some(ca) => format!("    certificate-authority-data: {}\n", b64(ca)),
        None => "    insecure-skip-tls-verify: true\n".to_string(),
    };
    let credential = match cred {
        Credential::Certificate { cert, key } => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(cert),
            b64(key)
        ),
        Credential::Token(token) => format!("    token: {token}\n"),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server}\n{cluster}users:\n- name: {user}\n  user:\n{credential}contexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: {user}\ncurrent-context: skiff\npreferences: {{}}\n"
    )
}

pub enum Credential<'a> {
    Certificate { cert: &'a str, key: &'a str },
    Token(&'a str),
}

/// Default settings for tests.
#[cfg(test)]
pub(crate) fn tests_settings() -> Settings {
    Settings::defaults(Mode::Server, "vm".into(), "/d/images".into())
}

#[cfg(test)]
mod tests {
    use super::tests_settings as settings;
    use super::*;

    fn joined(args: &[String]) -> String {
        args.join(" ")
    }

    fn host() -> Host {
        Host {
            node_ip: "192.0.2.7".into(),
            pod_cidr: None,
        }
    }

    #[test]
    fn a_relative_data_dir_becomes_absolute_and_clean() {
        let l = Layout::new(Path::new("./a/../.skiff")).unwrap();
        assert!(l.dir.is_absolute());
        assert!(l.dir.ends_with(".skiff"));
        assert!(!l.dir.display().to_string().contains(".."));
        assert_eq!(
            l.containerd_socket(),
            l.dir.join("containerd/containerd.sock")
        );
    }

    #[test]
    fn containerd_config_keeps_everything_under_the_data_dir_and_handles_the_oom_trap() {
        let l = Layout::new(Path::new("/tmp/x")).unwrap();
        let text = containerd_config(&l, "skiff.local/pause:3.10");
        assert!(text.contains("restrict_oom_score_adj = true"));
        assert!(text.contains("SystemdCgroup = false"));
        assert!(text.contains(r#"root = "/tmp/x/containerd/root""#));
        assert!(text.contains(r#"state = "/tmp/x/containerd/state""#));
        assert!(text.contains(r#"address = "/tmp/x/containerd/containerd.sock""#));
        assert!(text.contains(r#"Root = "/tmp/x/containerd/runc""#));
        assert!(text.contains(r#"conf_dir = "/tmp/x/containerd/cni/net.d""#));
        assert!(text.contains(r#"sandbox_image = "skiff.local/pause:3.10""#));
        assert!(!text.contains("/run/containerd/containerd.sock"));
        assert!(!text.contains("/var/lib/containerd"));
    }

    #[test]
    fn the_apiserver_uses_etcd_only_when_asked() {
        let l = Layout::new(Path::new("/d")).unwrap();
        let mut s = settings();
        let a = joined(&args("apiserver", &s, &l, &host()));
        assert!(a.contains("--service-cluster-ip-range 10.96.0.0/12"));
        assert!(a.contains("--data-dir /d/apiserver"));
        assert!(!a.contains("--etcd-servers"));
        s.etcd_servers = vec![
            "http://127.0.0.1:2379".into(),
            "http://127.0.0.1:22379".into(),
        ];
        let a = joined(&args("apiserver", &s, &l, &host()));
        assert!(a.contains("--etcd-servers http://127.0.0.1:2379,http://127.0.0.1:22379"));
    }

    #[test]
    fn pod_cidrs_csr_signing_and_host_path_volumes_come_from_the_controller_manager() {
        let l = Layout::new(Path::new("/d")).unwrap();
        let s = settings();
        let cm = joined(&args("controller-manager", &s, &l, &host()));
        assert!(cm.contains(
            "--allocate-node-cidrs=true --cluster-cidr 10.244.0.0/16 --node-cidr-mask-size 24"
        ));
        assert!(cm.contains(
            "--cluster-signing-cert-file /d/apiserver/pki/ca.crt --cluster-signing-key-file /d/apiserver/pki/ca.key"
        ));
        assert!(cm.contains(
            "--enable-hostpath-provisioner --hostpath-provisioner-dir /d/hostpath-volumes"
        ));
        assert!(joined(&args("kubelet", &s, &l, &host())).contains("--pod-cidr 10.244.0.0/24"));
    }

    #[test]
    fn kubelet_gets_the_private_containerd_bridge_and_cluster_dns() {
        let l = Layout::new(Path::new("/d")).unwrap();
        let mut s = settings();
        s.bridge = "skiffe2e1".into();
        s.kubelet_port = 20250;
        let k = joined(&args("kubelet", &s, &l, &host()));
        assert!(k.contains("--container-runtime-endpoint unix:///d/containerd/containerd.sock"));
        assert!(k.contains("--cni-bridge skiffe2e1"));
        assert!(k.contains("--cni-conf-dir /d/containerd/cni/net.d"));
        assert!(k.contains("--cluster-dns 10.96.0.10 --cluster-domain cluster.local"));
        assert!(k.contains("--port 20250"));
        assert!(k.contains("--node-ip 192.0.2.7"));
        assert!(k.contains("--kubeconfig /d/kubelet.kubeconfig"));
        assert!(!k.contains("--bootstrap-kubeconfig"));
        s.mode = Mode::Node;
        let k = joined(&args("kubelet", &s, &l, &host()));
        assert!(k.contains("--bootstrap-kubeconfig /d/bootstrap-kubelet.kubeconfig"));
        assert!(!k.contains("--pod-cidr"));
        let joined_host = Host {
            pod_cidr: Some("10.244.3.0/24".into()),
            ..host()
        };
        let k = joined(&args("kubelet", &s, &l, &joined_host));
        assert!(k.contains("--pod-cidr 10.244.3.0/24"));
    }

    #[test]
    fn proxy_and_dns_use_the_shared_flag_names() {
        let l = Layout::new(Path::new("/d")).unwrap();
        let s = settings();
        let p = joined(&args("proxy", &s, &l, &host()));
        assert_eq!(
            p,
            "--kubeconfig /d/admin.kubeconfig --hostname-override vm --cluster-cidr 10.244.0.0/16 \
             --healthz-bind-address 0.0.0.0:10256 --metrics-bind-address 127.0.0.1:10249"
        );
        let d = joined(&args("dns", &s, &l, &host()));
        assert!(d.contains("--dns-address 192.0.2.7:53"));
        assert!(d.contains("--health-address 0.0.0.0:8080"));
        assert!(d.contains("--ready-address 0.0.0.0:8181"));
    }

    #[test]
    fn settings_round_trip_through_json() {
        let mut s = settings();
        s.mode = Mode::Node;
        s.server = Some("https://10.0.0.1:6443".into());
        s.token = Some("abcdef.0123456789abcdef".into());
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains(r#""mode":"node""#));
        let back: Settings = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn kubeconfigs_carry_a_certificate_or_a_token() {
        let k = kubeconfig(
            "https://127.0.0.1:6443",
            Some("CA"),
            "node",
            Credential::Certificate {
                cert: "C",
                key: "K",
            },
        );
        assert!(k.contains("server: https://127.0.0.1:6443"));
        assert!(k.contains("certificate-authority-data: Q0E="));
        assert!(k.contains("client-certificate-data: Qw=="));
        let k = kubeconfig(
            "https://h:6443",
            None,
            "bootstrap",
            Credential::Token("a.b"),
        );
        assert!(k.contains("insecure-skip-tls-verify: true"));
        assert!(k.contains("token: a.b"));
        // It parses as kube's Kubeconfig.
        let parsed = kube::config::Kubeconfig::from_yaml(&k).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some("skiff"));
    }

    #[test]
    fn first_subnet_of_the_cluster_cidr() {
        assert_eq!(first_subnet("10.244.0.0/16", 24), "10.244.0.0/24");
    }
}
