//! The proxier: the cluster state the watchers feed in, and `sync`, which
//! turns it into one `iptables-restore` batch. Full syncs read the tables
//! first (to find stale chains and missing jumps) and rewrite everything;
//! partial syncs rewrite only the chains of services that changed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;

use crate::conntrack::Conntrack;
use crate::iptables::{self, Iptables, Saved};
use crate::metrics::Metrics;
use crate::model::{self, Endpoint, Protocol, ServiceKey, ServicePort, ServicePortName};
use crate::render::{
    self, JUMPS, Jump, NodePortDestinations, RenderInput, RenderSettings, ServiceTable,
};

/// Annotation an EndpointSlice carries with the time of the change that
/// produced it; network programming latency is measured from there.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// Where node ports listen (`--nodeport-addresses`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NodePortAddresses {
    /// Every local address (the default).
    #[default]
    All,
    /// The node's primary addresses (from its Node object), as upstream's
    /// `primary`.
    Primary,
    /// Local addresses inside these CIDRs.
    Cidrs(Vec<String>),
}

impl NodePortAddresses {
    /// Parses upstream's flag value: empty, `primary`, or CIDRs.
    pub fn parse(values: &[String]) -> Result<NodePortAddresses, String> {
        let values: Vec<&str> = values
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            return Ok(NodePortAddresses::All);
        }
        if values == ["primary"] {
            return Ok(NodePortAddresses::Primary);
        }
        for v in &values {
            if crate::localaddrs::cidr_contains(v, Ipv4Addr::UNSPECIFIED).is_none() {
                if v.contains(':') {
                    continue; // IPv6 CIDRs are accepted and ignored: IPv4 only.
                }
                return Err(format!(
                    "invalid --nodeport-addresses value {v:?}: want CIDRs or \"primary\""
                ));
            }
        }
        let v4: Vec<String> = values
            .iter()
            .filter(|v| !v.contains(':'))
            .map(|v| v.to_string())
            .collect();
        if v4.iter().any(|c| c.ends_with("/0")) {
            return Ok(NodePortAddresses::All);
        }
        Ok(NodePortAddresses::Cidrs(v4))
    }

    pub(crate) fn includes_loopback(&self) -> bool {
        match self {
            NodePortAddresses::All => true,
            NodePortAddresses::Primary => false,
            NodePortAddresses::Cidrs(c) => c
                .iter()
                .any(|c| crate::localaddrs::cidr_contains(c, Ipv4Addr::LOCALHOST) == Some(true)),
        }
    }
}

/// How much a sync checks and rewrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Rewrites the shared chains and the chains of services that changed.
    Partial,
    /// A partial sync that first reads the tables (`iptables-save`): puts
    /// back missing jumps and rewrites any service whose chains no longer
    /// hold the rules last written (flushed, deleted, edited in number).
    /// The periodic resync (`--iptables-sync-period`).
    Repair,
    /// Reads the tables and rewrites everything: at start, after a failure,
    /// when node addresses change, and hourly (upstream's full sync period).
    Full,
}

/// Upstream's FullSyncPeriod: a full rewrite at least this often.
pub const FULL_SYNC_PERIOD: Duration = Duration::from_secs(3600);

/// What a sync did, for tests, benchmarks and logs.
#[derive(Clone, Debug)]
pub struct SyncReport {
    pub mode: SyncMode,
    /// `mode == Full`.
    pub full: bool,
    pub duration: Duration,
    pub nat_rules: usize,
    pub filter_rules: usize,
    /// Bytes given to iptables-restore.
    pub restore_bytes: usize,
    /// Network programming latency of each EndpointSlice change this sync applied.
    pub programming_latencies: Vec<Duration>,
}

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("reading the current iptables rules")]
    Save(#[source] iptables::Error),
    #[error("applying the iptables rules")]
    Restore(#[source] iptables::Error),
}

/// The fixed parts of a proxier.
pub struct ProxierConfig {
    pub hostname: String,
    pub settings: RenderSettings,
    pub node_port_addresses: NodePortAddresses,
    /// Prefix for host tools (`ip netns exec NAME`), empty for this host.
    pub tool_prefix: Vec<String>,
}

/// One port of a Service with its endpoints, as the rendered table holds it.
type PortEntry = (ServicePortName, (ServicePort, Vec<Endpoint>));

/// Cluster state as the watchers last saw it.
#[derive(Default)]
struct State {
    services: HashMap<ServiceKey, Service>,
    /// EndpointSlices by Service, then by slice name.
    slices: HashMap<ServiceKey, BTreeMap<String, EndpointSlice>>,
    /// The rendered ports of each Service, rebuilt when it changes.
    ports: HashMap<ServiceKey, Vec<PortEntry>>,
    /// Services changed since the last successful sync.
    changed: HashSet<ServiceKey>,
    /// Trigger times of EndpointSlice changes not yet applied.
    triggers: Vec<Timestamp>,
    node_ips: Vec<Ipv4Addr>,
    node_eligible: bool,
    /// First change not yet applied.
    queued_since: Option<Instant>,
    /// Something only a full sync fixes (node addresses changed, a failure).
    needs_full: bool,
}

/// What the last successful sync left in the kernel.
#[derive(Default)]
struct Applied {
    table: ServiceTable,
    /// Per-service chains, whose they are and how many rules each holds.
    chains: BTreeMap<String, (ServiceKey, usize)>,
}

/// See the module documentation.
pub struct Proxier {
    config: ProxierConfig,
    iptables: Arc<dyn Iptables>,
    conntrack: Arc<dyn Conntrack>,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    applied: Mutex<Applied>,
    /// When rules were last applied (for /healthz).
    pub(crate) last_applied: Mutex<Option<(Instant, Timestamp)>>,
}

impl Proxier {
    pub fn new(
        config: ProxierConfig,
        iptables: Arc<dyn Iptables>,
        conntrack: Arc<dyn Conntrack>,
        metrics: Arc<Metrics>,
    ) -> Proxier {
        Proxier {
            config,
            iptables,
            conntrack,
            metrics,
            state: Mutex::new(State {
                needs_full: true,
                node_eligible: true,
                ..State::default()
            }),
            applied: Mutex::new(Applied::default()),
            last_applied: Mutex::new(None),
        }
    }

    /// Records a Service (created or updated).
    pub fn service_updated(&self, svc: &Service) {
        let key = key_of(&svc.metadata);
        let mut state = self.state.lock().unwrap();
        if state.services.get(&key) == Some(svc) {
            return;
        }
        state.services.insert(key.clone(), svc.clone());
        self.metrics.service_changes.inc();
        state.mark(key);
    }

    pub fn service_deleted(&self, svc: &Service) {
        let key = key_of(&svc.metadata);
        let mut state = self.state.lock().unwrap();
        if state.services.remove(&key).is_some() {
            self.metrics.service_changes.inc();
            state.mark(key);
        }
    }

    /// Replaces every Service (after a relist).
    pub fn services_replaced(&self, services: Vec<Service>) {
        let mut state = self.state.lock().unwrap();
        let new: HashMap<ServiceKey, Service> = services
            .into_iter()
            .map(|s| (key_of(&s.metadata), s))
            .collect();
        let keys: HashSet<ServiceKey> = state.services.keys().chain(new.keys()).cloned().collect();
        state.services = new;
        for key in keys {
            state.mark(key);
        }
    }

    /// Records an EndpointSlice (created or updated).
    pub fn slice_updated(&self, slice: &EndpointSlice) {
        let Some(key) = model::slice_service(slice) else {
            return;
        };
        let name = slice.metadata.name.clone().unwrap_or_default();
        let mut state = self.state.lock().unwrap();
        let slices = state.slices.entry(key.clone()).or_default();
        if slices.get(&name) == Some(slice) {
            return;
        }
        slices.insert(name, slice.clone());
        if let Some(t) = trigger_time(slice) {
            state.triggers.push(t);
        }
        self.metrics.endpoint_changes.inc();
        state.mark(key);
    }

    pub fn slice_deleted(&self, slice: &EndpointSlice) {
        let Some(key) = model::slice_service(slice) else {
            return;
        };
        let name = slice.metadata.name.clone().unwrap_or_default();
        let mut state = self.state.lock().unwrap();
        let removed = state
            .slices
            .get_mut(&key)
            .and_then(|s| s.remove(&name))
            .is_some();
        if state.slices.get(&key).is_some_and(|s| s.is_empty()) {
            state.slices.remove(&key);
        }
        if removed {
            self.metrics.endpoint_changes.inc();
            state.mark(key);
        }
    }

    /// Replaces every EndpointSlice (after a relist).
    pub fn slices_replaced(&self, slices: Vec<EndpointSlice>) {
        let mut state = self.state.lock().unwrap();
        let mut keys: HashSet<ServiceKey> = state.slices.keys().cloned().collect();
        state.slices.clear();
        for slice in slices {
            if let Some(key) = model::slice_service(&slice) {
                let name = slice.metadata.name.clone().unwrap_or_default();
                keys.insert(key.clone());
                state.slices.entry(key).or_default().insert(name, slice);
            }
        }
        for key in keys {
            state.mark(key);
        }
    }

    /// Records this proxy's Node: its addresses (for `primary` node port
    /// addresses) and whether it is being deleted.
    pub fn node_updated(&self, node: &Node) {
        let ips: Vec<Ipv4Addr> = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
            .filter_map(|a| a.address.parse().ok())
            .collect();
        let eligible = node.metadata.deletion_timestamp.is_none()
            && !node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| t.iter().any(|t| t.key == "ToBeDeletedByClusterAutoscaler"));
        let mut state = self.state.lock().unwrap();
        state.node_eligible = eligible;
        if state.node_ips != ips {
            state.node_ips = ips;
            state.needs_full = true;
            state.queued_since.get_or_insert_with(Instant::now);
        }
    }

    /// Whether changes are waiting for a sync.
    pub fn pending(&self) -> bool {
        let state = self.state.lock().unwrap();
        !state.changed.is_empty() || state.needs_full
    }

    /// For /healthz: when rules were last applied, whether a change has
    /// waited longer than `timeout`, and whether the node is eligible.
    pub(crate) fn health(&self, timeout: Duration) -> (Option<Timestamp>, bool, bool) {
        let state = self.state.lock().unwrap();
        let stale = state.queued_since.is_some_and(|q| q.elapsed() > timeout);
        let last = *self.last_applied.lock().unwrap();
        (last.map(|(_, t)| t), !stale, state.node_eligible)
    }

    /// Brings the tables in line with the state.
    pub fn sync(&self, mode: SyncMode) -> Result<SyncReport, SyncError> {
        let start = Instant::now();
        let (table, mut changed, triggers, node_ips, mode) = {
            let mut state = self.state.lock().unwrap();
            let changed = std::mem::take(&mut state.changed);
            for key in &changed {
                let ports = build_ports(&state, key, &self.config.hostname);
                if ports.is_empty() {
                    state.ports.remove(key);
                } else {
                    state.ports.insert(key.clone(), ports);
                }
            }
            let table: ServiceTable = state.ports.values().flatten().cloned().collect();
            let mode = if std::mem::take(&mut state.needs_full) {
                SyncMode::Full
            } else {
                mode
            };
            let triggers = std::mem::take(&mut state.triggers);
            (table, changed, triggers, state.node_ips.clone(), mode)
        };
        let full = mode == SyncMode::Full;
        let result = self.apply(&table, &mut changed, mode, &node_ips);
        let rendered = match result {
            Ok(r) => r,
            Err(e) => {
                let mut state = self.state.lock().unwrap();
                state.changed.extend(changed);
                state.triggers.extend(triggers);
                state.needs_full = true;
                self.metrics.restore_failures.inc();
                return Err(e);
            }
        };
        let now = Timestamp::now();
        {
            let mut state = self.state.lock().unwrap();
            if state.changed.is_empty() && !state.needs_full {
                state.queued_since = None;
            }
        }
        *self.last_applied.lock().unwrap() = Some((Instant::now(), now));

        // Forget conntrack entries that would keep UDP going to the old place.
        let previous = {
            let mut applied = self.applied.lock().unwrap();
            let counts = written_chain_rules(&rendered.text);
            let old = std::mem::take(&mut applied.chains);
            applied.chains = rendered
                .active_nat_chains
                .iter()
                .map(|(chain, svc)| {
                    let n = counts
                        .get(chain.as_str())
                        .copied()
                        .or_else(|| old.get(chain).map(|(_, n)| *n))
                        .unwrap_or(0);
                    (chain.clone(), (svc.clone(), n))
                })
                .collect();
            std::mem::replace(&mut applied.table, table)
        };
        {
            let applied = self.applied.lock().unwrap();
            for args in udp_conntrack_cleanup(&previous, &applied.table, &changed) {
                if let Err(error) = self.conntrack.delete(&args) {
                    tracing::warn!(%error, "could not delete conntrack entries");
                }
            }
        }

        let duration = start.elapsed();
        let latencies: Vec<Duration> = triggers
            .iter()
            .filter_map(|t| {
                let secs = now.duration_since(*t).as_secs_f64();
                (secs >= 0.0).then(|| Duration::from_secs_f64(secs))
            })
            .collect();
        self.metrics
            .observe_sync(full, duration, &rendered, &latencies);
        tracing::debug!(
            full,
            elapsed_ms = duration.as_secs_f64() * 1e3,
            nat_rules = rendered.nat_rules,
            filter_rules = rendered.filter_rules,
            "synced iptables rules"
        );
        Ok(SyncReport {
            mode,
            full,
            duration,
            nat_rules: rendered.nat_rules,
            filter_rules: rendered.filter_rules,
            restore_bytes: rendered.text.len(),
            programming_latencies: latencies,
        })
    }

    fn apply(
        &self,
        table: &ServiceTable,
        changed: &mut HashSet<ServiceKey>,
        mode: SyncMode,
        node_ips: &[Ipv4Addr],
    ) -> Result<render::Rendered, SyncError> {
        let full = mode == SyncMode::Full;
        let mut settings = self.config.settings.clone();
        settings.node_ports = match &self.config.node_port_addresses {
            NodePortAddresses::All => NodePortDestinations::AllLocal,
            NodePortAddresses::Primary => NodePortDestinations::Addresses(node_ips.to_vec()),
            NodePortAddresses::Cidrs(cidrs) => NodePortDestinations::Addresses(
                crate::localaddrs::local_addresses(&self.config.tool_prefix)
                    .into_iter()
                    .filter(|ip| {
                        cidrs
                            .iter()
                            .any(|c| crate::localaddrs::cidr_contains(c, *ip) == Some(true))
                    })
                    .collect(),
            ),
        };
        let (existing, missing_jumps): (BTreeSet<String>, Vec<Jump>) = if mode != SyncMode::Partial
        {
            let saved = Saved::parse(&self.iptables.save().map_err(SyncError::Save)?);
            let nat = saved.table("nat").cloned().unwrap_or_default();
            if mode == SyncMode::Repair {
                // Services whose chains lost (or gained) rules get rewritten.
                let mut found: HashMap<&str, usize> = HashMap::new();
                for rule in &nat.rules {
                    if let Some(chain) = rule.split_whitespace().nth(1) {
                        *found.entry(chain).or_default() += 1;
                    }
                }
                let applied = self.applied.lock().unwrap();
                for (chain, (svc, n)) in &applied.chains {
                    let present = nat.chains.contains(chain);
                    if !present || found.get(chain.as_str()).copied().unwrap_or(0) != *n {
                        tracing::info!(chain, service = %format!("{}/{}", svc.namespace, svc.name), "repairing chain");
                        changed.insert(svc.clone());
                    }
                }
            }
            let existing = nat.chains;
            let missing = JUMPS
                .iter()
                .filter(|j| {
                    j.to != crate::names::KUBE_FIREWALL
                        || (settings.localhost_node_ports
                            && settings.node_ports.includes_loopback())
                })
                .filter(|j| !saved.has_jump(j.table, j.from, j.to))
                .cloned()
                .collect();
            (existing, missing)
        } else {
            let applied = self.applied.lock().unwrap();
            (applied.chains.keys().cloned().collect(), Vec::new())
        };
        let rendered = render::render(
            &settings,
            &RenderInput {
                services: table,
                changed: if full { None } else { Some(changed) },
                existing_nat_chains: &existing,
                missing_jumps: &missing_jumps,
            },
        );
        self.iptables
            .restore(&rendered.text)
            .map_err(SyncError::Restore)?;
        Ok(rendered)
    }
}

impl State {
    fn mark(&mut self, key: ServiceKey) {
        self.changed.insert(key);
        self.queued_since.get_or_insert_with(Instant::now);
    }
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ServiceKey {
    ServiceKey {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
    }
}

fn trigger_time(slice: &EndpointSlice) -> Option<Timestamp> {
    slice
        .metadata
        .annotations
        .as_ref()?
        .get(TRIGGER_TIME_ANNOTATION)?
        .parse()
        .ok()
}

/// Rules written per chain declared in a restore batch (`nat` only).
fn written_chain_rules(text: &str) -> HashMap<&str, usize> {
    let nat = text.split("*nat\n").nth(1).unwrap_or_default();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for line in nat.lines() {
        if let Some(decl) = line.strip_prefix(':') {
            counts
                .entry(decl.split(' ').next().unwrap_or_default())
                .or_default();
        } else if let Some(rule) = line.strip_prefix("-A ")
            && let Some(chain) = rule.split(' ').next()
            && let Some(n) = counts.get_mut(chain)
        {
            *n += 1;
        }
    }
    counts
}

/// The ports of one Service with their endpoints.
fn build_ports(state: &State, key: &ServiceKey, hostname: &str) -> Vec<PortEntry> {
    let Some(svc) = state.services.get(key) else {
        return Vec::new();
    };
    let ports = model::service_ports(svc);
    if ports.is_empty() {
        return Vec::new();
    }
    let endpoints = state
        .slices
        .get(key)
        .map(|s| model::slice_endpoints(s.values(), hostname))
        .unwrap_or_default();
    ports
        .into_iter()
        .map(|p| {
            let eps = endpoints
                .get(&(p.name.port.clone(), p.protocol))
                .cloned()
                .unwrap_or_default();
            (p.name.clone(), (p, eps))
        })
        .collect()
}

/// Endpoints of a service port that traffic may go to.
fn usable(endpoints: &[Endpoint]) -> BTreeSet<Ipv4Addr> {
    let ready: BTreeSet<Ipv4Addr> = endpoints.iter().filter(|e| e.ready).map(|e| e.ip).collect();
    if !ready.is_empty() {
        return ready;
    }
    endpoints
        .iter()
        .filter(|e| e.serving && e.terminating)
        .map(|e| e.ip)
        .collect()
}

/// `conntrack -D` arguments for UDP service ports of changed services, as
/// upstream: flows DNATed to an endpoint that went away, and flows to a
/// service address that had no endpoints (and was rejected) and now has some.
fn udp_conntrack_cleanup(
    old: &ServiceTable,
    new: &ServiceTable,
    changed: &HashSet<ServiceKey>,
) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let s = |v: &dyn std::fmt::Display| v.to_string();
    for (name, (svc, eps)) in old {
        if svc.protocol != Protocol::Udp || !changed.contains(&name.service) {
            continue;
        }
        let now = new.get(name).map(|(_, e)| usable(e)).unwrap_or_default();
        for gone in usable(eps).difference(&now) {
            for vip in std::iter::once(&svc.cluster_ip)
                .chain(&svc.external_ips)
                .chain(&svc.load_balancer_ips)
            {
                out.push(vec![
                    "--orig-dst".into(),
                    s(vip),
                    "--dst-nat".into(),
                    s(gone),
                    "-p".into(),
                    "udp".into(),
                ]);
            }
            if svc.node_port != 0 {
                out.push(vec![
                    "-p".into(),
                    "udp".into(),
                    "--dport".into(),
                    s(&svc.node_port),
                    "--dst-nat".into(),
                    s(gone),
                ]);
            }
        }
    }
    for (name, (svc, eps)) in new {
        if svc.protocol != Protocol::Udp
            || !changed.contains(&name.service)
            || usable(eps).is_empty()
        {
            continue;
        }
        let had = old.get(name).is_some_and(|(_, e)| !usable(e).is_empty());
        if had {
            continue;
        }
        for vip in std::iter::once(&svc.cluster_ip)
            .chain(&svc.external_ips)
            .chain(&svc.load_balancer_ips)
        {
            out.push(vec!["--orig-dst".into(), s(vip), "-p".into(), "udp".into()]);
        }
        if svc.node_port != 0 {
            out.push(vec![
                "-p".into(),
                "udp".into(),
                "--dport".into(),
                s(&svc.node_port),
            ]);
        }
    }
    out
}

/// Removes every rule and chain the proxy makes, in one batch (`--cleanup`).
pub fn cleanup(iptables: &dyn Iptables) -> Result<(), SyncError> {
    let saved = Saved::parse(&iptables.save().map_err(SyncError::Save)?);
    let text = render_cleanup(&saved);
    if text.is_empty() {
        return Ok(());
    }
    iptables.restore(&text).map_err(SyncError::Restore)
}

/// The batch `cleanup` applies: jumps out of built-in chains deleted, our
/// chains flushed and deleted.
pub(crate) fn render_cleanup(saved: &Saved) -> String {
    let mut text = String::new();
    for (table, own) in [
        ("filter", &render::FILTER_CHAINS[..]),
        ("nat", &render::NAT_CHAINS[..]),
    ] {
        let Some(t) = saved.table(table) else {
            continue;
        };
        let ours = |c: &str| {
            own.contains(&c)
                || (table == "nat"
                    && (crate::names::SERVICE_CHAIN_PREFIXES
                        .iter()
                        .any(|p| c.starts_with(p))
                        || c == "KUBE-MARK-DROP"))
        };
        let chains: Vec<&String> = t.chains.iter().filter(|c| ours(c)).collect();
        let builtin_jumps: Vec<&String> = t
            .rules
            .iter()
            .filter(|r| {
                let words: Vec<&str> = r.split_whitespace().collect();
                words.len() > 1
                    && !ours(words[1])
                    && !words[1].starts_with("KUBE-")
                    && words.windows(2).any(|w| w[0] == "-j" && ours(w[1]))
            })
            .collect();
        if chains.is_empty() && builtin_jumps.is_empty() {
            continue;
        }
        text.push_str(&format!("*{table}\n"));
        for c in &chains {
            text.push_str(&format!(":{c} - [0:0]\n"));
        }
        for r in builtin_jumps {
            text.push_str(&format!("-D{}\n", &r[2..]));
        }
        for c in &chains {
            text.push_str(&format!("-X {c}\n"));
        }
        text.push_str("COMMIT\n");
    }
    text
}

#[cfg(test)]
#[path = "proxier_tests.rs"]
mod tests;
