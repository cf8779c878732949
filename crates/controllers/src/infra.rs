//! The settings of the cluster-infrastructure controllers (node lifecycle,
//! taint eviction, node IPAM, ...), with kube-controller-manager's flag
//! names. Kept apart from the workload controllers' settings so the binary
//! takes them as one flattened group.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};

use crate::framework::parse_go_duration;

/// The cluster-infrastructure controllers' flags.
#[derive(Args, Clone, Debug)]
pub struct InfraFlags {
    /// How often the node lifecycle controller looks at every node's health.
    #[arg(long, default_value = "5s", value_parser = parse_go_duration)]
    pub node_monitor_period: Duration,
    /// How long a node may go without renewing its Lease or status before
    /// it is marked unhealthy (conditions Unknown, tainted unreachable).
    #[arg(long, default_value = "40s", value_parser = parse_go_duration)]
    pub node_monitor_grace_period: Duration,
    /// The same, for a node that has never posted its status.
    #[arg(long, default_value = "1m0s", value_parser = parse_go_duration)]
    pub node_startup_grace_period: Duration,
    /// Nodes per second tainted for eviction in a healthy zone.
    #[arg(long, default_value_t = 0.1)]
    pub node_eviction_rate: f64,
    /// Nodes per second tainted for eviction in an unhealthy zone of a large
    /// cluster (0 in a small one).
    #[arg(long, default_value_t = 0.01)]
    pub secondary_node_eviction_rate: f64,
    /// Above this many nodes a zone is large (see --secondary-node-eviction-rate).
    #[arg(long, default_value_t = 50)]
    pub large_cluster_size_threshold: u32,
    /// The share of not-ready nodes (at least 3) that makes a zone unhealthy.
    #[arg(long, default_value_t = 0.55)]
    pub unhealthy_zone_threshold: f64,
    /// Give Nodes pod CIDRs out of --cluster-cidr.
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub allocate_node_cidrs: bool,
    /// The pods' address range(s), comma-separated (one per IP family).
    #[arg(long, default_value = "")]
    pub cluster_cidr: String,
    /// The size of each node's pod CIDR (default 24 for IPv4, 64 for IPv6).
    #[arg(long)]
    pub node_cidr_mask_size: Option<u8>,
    /// The same, for IPv4 in a dual-stack cluster.
    #[arg(long)]
    pub node_cidr_mask_size_ipv4: Option<u8>,
    /// The same, for IPv6 in a dual-stack cluster.
    #[arg(long)]
    pub node_cidr_mask_size_ipv6: Option<u8>,
    /// The Services' range: pod CIDRs overlapping it are not handed out.
    #[arg(long, default_value = "")]
    pub service_cluster_ip_range: String,
    /// The CA certificate (PEM) the built-in signers sign with; without it
    /// and --cluster-signing-key-file nothing is signed.
    #[arg(long, requires = "cluster_signing_key_file")]
    pub cluster_signing_cert_file: Option<PathBuf>,
    /// The CA's private key (PEM).
    #[arg(long, requires = "cluster_signing_cert_file")]
    pub cluster_signing_key_file: Option<PathBuf>,
    /// The longest a signed certificate is valid.
    #[arg(long, default_value = "8760h0m0s", value_parser = parse_go_duration)]
    pub cluster_signing_duration: Duration,
    /// Finished pods kept before the oldest are deleted (0: all kept).
    #[arg(long, default_value_t = 12500)]
    pub terminated_pod_gc_threshold: u32,
    /// How often the pod garbage collector runs (upstream: fixed 20 s).
    #[arg(skip = Duration::from_secs(20))]
    pub pod_gc_period: Duration,
    /// How long a node must be missing before its pods are deleted
    /// (upstream: fixed 40 s).
    #[arg(skip = Duration::from_secs(40))]
    pub pod_gc_quarantine: Duration,
    /// How often every ResourceQuota's usage is recounted.
    #[arg(long, default_value = "5m0s", value_parser = parse_go_duration)]
    pub resource_quota_sync_period: Duration,
}

impl Default for InfraFlags {
    /// Upstream's defaults (as the flags above).
    fn default() -> Self {
        InfraFlags {
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(40),
            node_startup_grace_period: Duration::from_secs(60),
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
            large_cluster_size_threshold: 50,
            unhealthy_zone_threshold: 0.55,
            allocate_node_cidrs: false,
            cluster_cidr: String::new(),
            node_cidr_mask_size: None,
            node_cidr_mask_size_ipv4: None,
            node_cidr_mask_size_ipv6: None,
            service_cluster_ip_range: String::new(),
            cluster_signing_cert_file: None,
            cluster_signing_key_file: None,
            cluster_signing_duration: Duration::from_secs(8760 * 3600),
            terminated_pod_gc_threshold: 12500,
            pod_gc_period: Duration::from_secs(20),
            pod_gc_quarantine: Duration::from_secs(40),
            resource_quota_sync_period: Duration::from_secs(300),
        }
    }
}

impl InfraFlags {
    /// Refuses flags the controllers could not run with (upstream exits
    /// at start for these too).
    pub fn validate(&self) -> Result<(), String> {
        crate::nodeipam::Allocator::from_flags(self).map(|_| ())
    }
}
