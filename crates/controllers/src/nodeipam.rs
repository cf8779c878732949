//! The node IPAM controller (upstream's nodeipam with the RangeAllocator):
//! with `--allocate-node-cidrs`, every Node gets `spec.podCIDR(s)`, one
//! `--node-cidr-mask-size` block per `--cluster-cidr` (one per IP family).
//! What is allocated is rebuilt from the Nodes at start, so nothing is kept
//! elsewhere; a deleted Node's blocks are free again; blocks overlapping
//! `--service-cluster-ip-range` are never handed out.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::{error, info, warn};

use crate::cache::{Cache, Changed};
use crate::framework::{self, Context};
use crate::infra::InfraFlags;

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "node-ipam-controller";

/// A CIDR: its first address (as a number) and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    v6: bool,
    base: u128,
    len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, len) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (address/length)"))?;
        let ip: IpAddr = ip.parse().map_err(|_| format!("{s:?}: bad address"))?;
        let len: u8 = len
            .parse()
            .map_err(|_| format!("{s:?}: bad prefix length"))?;
        let (v6, value, bits) = match ip {
            IpAddr::V4(a) => (false, u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (true, u128::from(a), 128),
        };
        if len > bits {
            return Err(format!("{s:?}: prefix length over {bits}"));
        }
        Ok(Cidr {
            v6,
            base: value & !host_mask(bits, len),
            len,
        })
    }

    fn bits(&self) -> u8 {
        if self.v6 { 128 } else { 32 }
    }

    fn last(&self) -> u128 {
        self.base | host_mask(self.bits(), self.len)
    }
}

fn host_mask(bits: u8, len: u8) -> u128 {
    let host = u32::from(bits - len);
    if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = if self.v6 {
            IpAddr::from(std::net::Ipv6Addr::from(self.base))
        } else {
            IpAddr::from(std::net::Ipv4Addr::from(self.base as u32))
        };
        write!(f, "{ip}/{}", self.len)
    }
}

/// The blocks of one cluster CIDR (upstream's cidrset): which are taken.
#[derive(Debug)]
pub(crate) struct CidrSet {
    cluster: Cidr,
    node_len: u8,
    used: Vec<bool>,
    /// Where the search for a free block starts (round robin, as upstream).
    next: usize,
}

/// At most 2^16 blocks per cluster CIDR, as upstream.
const MAX_PREFIX_DIFF: u8 = 16;

impl CidrSet {
    pub fn new(cluster: Cidr, node_len: u8) -> Result<CidrSet, String> {
        if node_len < cluster.len || node_len > cluster.bits() {
            return Err(format!(
                "node CIDR mask size {node_len} does not fit cluster CIDR {cluster}"
            ));
        }
        if node_len - cluster.len > MAX_PREFIX_DIFF {
            return Err(format!(
                "node CIDR mask size {node_len} is more than {MAX_PREFIX_DIFF} bits longer than cluster CIDR {cluster}"
            ));
        }
        Ok(CidrSet {
            cluster,
            node_len,
            used: vec![false; 1usize << (node_len - cluster.len)],
            next: 0,
        })
    }

    fn shift(&self) -> u32 {
        u32::from(self.cluster.bits() - self.node_len)
    }

    fn block(&self, i: usize) -> Cidr {
        Cidr {
            v6: self.cluster.v6,
            base: self.cluster.base + ((i as u128) << self.shift()),
            len: self.node_len,
        }
    }

    /// The blocks `cidr` overlaps.
    fn indices(&self, cidr: &Cidr) -> std::ops::Range<usize> {
        if cidr.v6 != self.cluster.v6 {
            return 0..0;
        }
        let start = cidr.base.max(self.cluster.base);
        let end = cidr.last().min(self.cluster.last());
        if start > end {
            return 0..0;
        }
        let first = ((start - self.cluster.base) >> self.shift()) as usize;
        let last = ((end - self.cluster.base) >> self.shift()) as usize;
        first..last + 1
    }

    /// Takes the next free block; `None` when none is left.
    pub fn allocate(&mut self) -> Option<Cidr> {
        let n = self.used.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if !self.used[i] {
                self.used[i] = true;
                self.next = (i + 1) % n;
                return Some(self.block(i));
            }
        }
        None
    }

    /// Marks every block `cidr` overlaps as taken.
    pub fn occupy(&mut self, cidr: &Cidr) {
        for i in self.indices(cidr) {
            self.used[i] = true;
        }
    }

    /// Frees the blocks `cidr` overlaps.
    pub fn release(&mut self, cidr: &Cidr) {
        for i in self.indices(cidr) {
            self.used[i] = false;
        }
    }
}

/// The allocator: one set per cluster CIDR.
#[derive(Debug)]
pub(crate) struct Allocator {
    sets: Vec<CidrSet>,
}

impl Allocator {
    /// From the flags; `Ok(None)` when `--allocate-node-cidrs` is off.
    pub fn from_flags(f: &InfraFlags) -> Result<Option<Allocator>, String> {
        if !f.allocate_node_cidrs {
            return Ok(None);
        }
        let clusters: Vec<Cidr> = f
            .cluster_cidr
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Cidr::parse)
            .collect::<Result<_, _>>()?;
        if clusters.is_empty() {
            return Err("--allocate-node-cidrs needs --cluster-cidr".into());
        }
        if clusters.len() > 2 || (clusters.len() == 2 && clusters[0].v6 == clusters[1].v6) {
            return Err("--cluster-cidr takes at most one CIDR per IP family".into());
        }
        let dual = clusters.len() == 2;
        let mut sets = Vec::new();
        for c in clusters {
            let family = if c.v6 {
                f.node_cidr_mask_size_ipv6
            } else {
                f.node_cidr_mask_size_ipv4
            };
            let len = match (dual, family, f.node_cidr_mask_size) {
                (true, Some(l), _) => l,
                (false, _, Some(l)) => l,
                _ if c.v6 => 64,
                _ => 24,
            };
            sets.push(CidrSet::new(c, len)?);
        }
        let mut alloc = Allocator { sets };
        for s in f
            .service_cluster_ip_range
            .split(',')
            .filter(|s| !s.trim().is_empty())
        {
            let cidr = Cidr::parse(s).map_err(|e| format!("--service-cluster-ip-range: {e}"))?;
            for set in &mut alloc.sets {
                set.occupy(&cidr);
            }
        }
        Ok(Some(alloc))
    }

    fn occupy(&mut self, cidrs: &[String]) {
        for c in cidrs.iter().filter_map(|c| Cidr::parse(c).ok()) {
            for set in &mut self.sets {
                set.occupy(&c);
            }
        }
    }

    fn release(&mut self, cidrs: &[String]) {
        for c in cidrs.iter().filter_map(|c| Cidr::parse(c).ok()) {
            for set in &mut self.sets {
                set.release(&c);
            }
        }
    }

    /// One block from every set, or none at all.
    fn allocate(&mut self) -> Option<Vec<String>> {
        let mut got = Vec::new();
        for i in 0..self.sets.len() {
            match self.sets[i].allocate() {
                Some(c) => got.push(c),
                None => {
                    for (set, c) in self.sets.iter_mut().zip(&got) {
                        set.release(c);
                    }
                    return None;
                }
            }
        }
        Some(got.iter().map(Cidr::to_string).collect())
    }
}

fn pod_cidrs(node: &Node) -> Vec<String> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    match (&spec.pod_cidrs, &spec.pod_cidr) {
        (Some(v), _) if !v.is_empty() => v.clone(),
        (_, Some(c)) if !c.is_empty() => vec![c.clone()],
        _ => Vec::new(),
    }
}

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let mut alloc = match Allocator::from_flags(&ctx.settings.infra) {
            Ok(Some(a)) => a,
            Ok(None) => {
                info!("--allocate-node-cidrs is off; node IPAM does nothing");
                ctx.stopped().await;
                return;
            }
            Err(e) => {
                error!(error = %e, "node IPAM cannot start");
                ctx.stopped().await;
                return;
            }
        };
        let (nodes, changes) = ctx
            .informers
            .nodes
            .subscribe(|c: &Changed<Node>| Some(c.clone()));
        let stopped = ctx.stopped();
        tokio::pin!(stopped, changes);
        tokio::select! {
            () = nodes.ready() => {}
            () = &mut stopped => return,
        }
        for node in nodes.all() {
            alloc.occupy(&pod_cidrs(&node));
        }
        // Nodes still waiting for a block (the range was full, or the write
        // failed), retried every few seconds.
        let mut pending: BTreeSet<String> = nodes.all().iter().map(|n| n.name_any()).collect();
        let mut retry = tokio::time::interval(Duration::from_secs(5));
        // Written but not yet seen in the cache: not to be given a second.
        let mut written: HashMap<String, String> = HashMap::new();
        loop {
            let names = std::mem::take(&mut pending);
            for name in names {
                if !assign(&ctx.client, &nodes, &mut alloc, &mut written, &name).await {
                    pending.insert(name);
                }
            }
            tokio::select! {
                () = &mut stopped => return,
                _ = retry.tick() => {}
                Some(change) = changes.next() => match change {
                    Changed::Deleted(node) => {
                        let cidrs = pod_cidrs(&node);
                        if !cidrs.is_empty() {
                            info!(node = %node.name_any(), ?cidrs, "node deleted; releasing its pod CIDRs");
                            alloc.release(&cidrs);
                        }
                        pending.remove(&node.name_any());
                        written.remove(&node.name_any());
                    }
                    c => {
                        alloc.occupy(&pod_cidrs(c.latest()));
                        pending.insert(c.latest().name_any());
                    }
                },
            }
        }
    })
}

/// Gives the node its blocks if it has none; false to try again later.
async fn assign(
    client: &Client,
    nodes: &Cache<Node>,
    alloc: &mut Allocator,
    written: &mut HashMap<String, String>,
    name: &str,
) -> bool {
    let Some(node) = nodes.get("", name) else {
        return true;
    };
    let uid = node.metadata.uid.clone().unwrap_or_default();
    if !pod_cidrs(&node).is_empty() {
        written.remove(name);
        return true;
    }
    if node.metadata.deletion_timestamp.is_some() || written.get(name) == Some(&uid) {
        return true;
    }
    let Some(cidrs) = alloc.allocate() else {
        warn!(node = %name, "no pod CIDR left in --cluster-cidr");
        crate::events::record(
            client,
            "cidrAllocator",
            &*node,
            "Normal",
            "CIDRNotAvailable",
            &format!("Node {name} status is now: CIDRNotAvailable"),
        )
        .await;
        return false;
    };
    let api: Api<Node> = Api::all(client.clone());
    let patch = json!({"spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            info!(node = %name, ?cidrs, "allocated pod CIDRs");
            written.insert(name.to_owned(), uid);
            true
        }
        Err(e) if framework::is_not_found(&e) => {
            alloc.release(&cidrs);
            true
        }
        Err(e) => {
            alloc.release(&cidrs);
            warn!(node = %name, error = %e, "writing the node's pod CIDRs failed; retrying");
            crate::events::record(
                client,
                "cidrAllocator",
                &*node,
                "Warning",
                "CIDRAssignmentFailed",
                &format!("Node {name} status is now: CIDRAssignmentFailed"),
            )
            .await;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(cluster: &str, mask: Option<u8>, service: &str) -> InfraFlags {
        InfraFlags {
            allocate_node_cidrs: true,
            cluster_cidr: cluster.into(),
            node_cidr_mask_size: mask,
            service_cluster_ip_range: service.into(),
            ..InfraFlags::default()
        }
    }

    #[test]
    fn cidrs_parse_and_print_in_canonical_form() {
        assert_eq!(
            Cidr::parse("10.244.3.7/16").unwrap().to_string(),
            "10.244.0.0/16"
        );
        assert_eq!(Cidr::parse("fd00::1/48").unwrap().to_string(), "fd00::/48");
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("10.0.0.0").is_err());
    }

    #[test]
    fn blocks_are_handed_out_in_order_and_reused_after_release() {
        let mut a = Allocator::from_flags(&flags("10.244.0.0/16", Some(24), ""))
            .unwrap()
            .unwrap();
        assert_eq!(a.allocate().unwrap(), ["10.244.0.0/24"]);
        assert_eq!(a.allocate().unwrap(), ["10.244.1.0/24"]);
        a.release(&["10.244.0.0/24".into()]);
        // Round robin: freed blocks come round again after the rest.
        assert_eq!(a.allocate().unwrap(), ["10.244.2.0/24"]);
        let mut small = Allocator::from_flags(&flags("10.0.0.0/23", Some(24), ""))
            .unwrap()
            .unwrap();
        small.occupy(&["10.0.1.0/24".into()]);
        assert_eq!(small.allocate().unwrap(), ["10.0.0.0/24"]);
        assert!(small.allocate().is_none());
        small.release(&["10.0.1.0/24".into()]);
        assert_eq!(small.allocate().unwrap(), ["10.0.1.0/24"]);
    }

    #[test]
    fn the_service_range_is_never_handed_out() {
        let mut a = Allocator::from_flags(&flags("10.0.0.0/22", Some(24), "10.0.1.0/25"))
            .unwrap()
            .unwrap();
        let got: Vec<String> = std::iter::from_fn(|| a.allocate()).flatten().collect();
        assert_eq!(got, ["10.0.0.0/24", "10.0.2.0/24", "10.0.3.0/24"]);
    }

    #[test]
    fn dual_stack_gives_one_block_per_family() {
        let mut f = flags("10.244.0.0/16,fd00:10:244::/56", None, "");
        f.node_cidr_mask_size_ipv4 = Some(24);
        f.node_cidr_mask_size_ipv6 = Some(64);
        let mut a = Allocator::from_flags(&f).unwrap().unwrap();
        assert_eq!(a.allocate().unwrap(), ["10.244.0.0/24", "fd00:10:244::/64"]);
        assert_eq!(
            a.allocate().unwrap(),
            ["10.244.1.0/24", "fd00:10:244:1::/64"]
        );
    }

    #[test]
    fn bad_flags_are_refused_and_off_means_off() {
        assert!(
            Allocator::from_flags(&InfraFlags::default())
                .unwrap()
                .is_none()
        );
        assert!(Allocator::from_flags(&flags("", Some(24), "")).is_err());
        assert!(Allocator::from_flags(&flags("10.0.0.0/8", Some(25), "")).is_err());
        assert!(Allocator::from_flags(&flags("10.0.0.0/16", Some(8), "")).is_err());
        assert!(Allocator::from_flags(&flags("10.0.0.0/16,10.1.0.0/16", Some(24), "")).is_err());
    }
}
