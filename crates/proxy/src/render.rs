//! The ruleset, rendered in memory as `iptables-restore` input: the layout
//! of upstream kube-proxy's iptables mode (pkg/proxy/iptables/proxier.go),
//! chain for chain and rule for rule, so `iptables-save` on a Skiff node
//! reads like one on a kube-proxy node.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::model::{Endpoint, ServiceKey, ServicePort, ServicePortName};
use crate::names::*;

/// Settings that shape the rules, from the proxy's configuration.
#[derive(Clone, Debug)]
pub struct RenderSettings {
    /// Pod traffic comes from here (`--cluster-cidr`); traffic to a cluster
    /// IP from elsewhere is masqueraded. None: no such rule.
    pub cluster_cidr: Option<String>,
    /// Masquerade every packet to a cluster IP.
    pub masquerade_all: bool,
    /// `--iptables-masquerade-bit`, 14 by default (mark 0x4000).
    pub masquerade_bit: u32,
    pub masquerade_random_fully: bool,
    /// Where node ports are accepted.
    pub node_ports: NodePortDestinations,
    /// Node ports also answer on 127.0.0.0/8 (needs route_localnet).
    pub localhost_node_ports: bool,
}

impl Default for RenderSettings {
    fn default() -> Self {
        RenderSettings {
            cluster_cidr: None,
            masquerade_all: false,
            masquerade_bit: 14,
            masquerade_random_fully: false,
            node_ports: NodePortDestinations::AllLocal,
            localhost_node_ports: true,
        }
    }
}

impl RenderSettings {
    pub(crate) fn mark(&self) -> String {
        format!("{:#x}", 1u32 << self.masquerade_bit)
    }
}

/// Destination addresses node ports answer on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodePortDestinations {
    /// Every local address (`--nodeport-addresses` empty or 0.0.0.0/0).
    AllLocal,
    /// These addresses only.
    Addresses(Vec<Ipv4Addr>),
}

impl NodePortDestinations {
    pub(crate) fn includes_loopback(&self) -> bool {
        match self {
            NodePortDestinations::AllLocal => true,
            NodePortDestinations::Addresses(a) => a.iter().any(|ip| ip.is_loopback()),
        }
    }
}

/// A rule in a built-in chain that sends packets into one of ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jump {
    pub table: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    /// Match arguments, without `-j`.
    pub args: &'static str,
}

impl Jump {
    pub(crate) fn rule(&self) -> String {
        if self.args.is_empty() {
            format!("-j {}", self.to)
        } else {
            format!("{} -j {}", self.args, self.to)
        }
    }
}

/// The jumps upstream inserts at the top of the built-in chains.
pub const JUMPS: &[Jump] = &[
    Jump {
        table: "filter",
        from: "INPUT",
        to: KUBE_EXTERNAL_SERVICES,
        args: "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\"",
    },
    Jump {
        table: "filter",
        from: "FORWARD",
        to: KUBE_EXTERNAL_SERVICES,
        args: "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\"",
    },
    Jump {
        table: "filter",
        from: "INPUT",
        to: KUBE_NODEPORTS,
        args: "-m comment --comment \"kubernetes health check service ports\"",
    },
    Jump {
        table: "filter",
        from: "FORWARD",
        to: KUBE_SERVICES,
        args: "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\"",
    },
    Jump {
        table: "filter",
        from: "OUTPUT",
        to: KUBE_SERVICES,
        args: "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\"",
    },
    Jump {
        table: "filter",
        from: "FORWARD",
        to: KUBE_FORWARD,
        args: "-m comment --comment \"kubernetes forwarding rules\"",
    },
    Jump {
        table: "filter",
        from: "INPUT",
        to: KUBE_PROXY_FIREWALL,
        args: "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\"",
    },
    Jump {
        table: "filter",
        from: "OUTPUT",
        to: KUBE_PROXY_FIREWALL,
        args: "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\"",
    },
    Jump {
        table: "filter",
        from: "FORWARD",
        to: KUBE_PROXY_FIREWALL,
        args: "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\"",
    },
    Jump {
        table: "filter",
        from: "INPUT",
        to: KUBE_FIREWALL,
        args: "",
    },
    Jump {
        table: "filter",
        from: "OUTPUT",
        to: KUBE_FIREWALL,
        args: "",
    },
    Jump {
        table: "nat",
        from: "OUTPUT",
        to: KUBE_SERVICES,
        args: "-m comment --comment \"kubernetes service portals\"",
    },
    Jump {
        table: "nat",
        from: "PREROUTING",
        to: KUBE_SERVICES,
        args: "-m comment --comment \"kubernetes service portals\"",
    },
    Jump {
        table: "nat",
        from: "POSTROUTING",
        to: KUBE_POSTROUTING,
        args: "-m comment --comment \"kubernetes postrouting rules\"",
    },
];

/// Chains the proxy owns outright in each table (always rewritten).
pub const FILTER_CHAINS: [&str; 6] = [
    KUBE_NODEPORTS,
    KUBE_SERVICES,
    KUBE_EXTERNAL_SERVICES,
    KUBE_FIREWALL,
    KUBE_FORWARD,
    KUBE_PROXY_FIREWALL,
];
pub const NAT_CHAINS: [&str; 4] = [
    KUBE_SERVICES,
    KUBE_NODEPORTS,
    KUBE_POSTROUTING,
    KUBE_MARK_MASQ,
];

/// One service port and the endpoints it currently has.
pub type ServiceTable = BTreeMap<ServicePortName, (ServicePort, Vec<Endpoint>)>;

/// What one sync writes.
pub struct RenderInput<'a> {
    pub services: &'a ServiceTable,
    /// Services whose per-service chains must be rewritten; `None` rewrites
    /// all of them (a full sync).
    pub changed: Option<&'a HashSet<ServiceKey>>,
    /// Per-service `nat` chains that may exist now; those no longer used
    /// are flushed and deleted.
    pub existing_nat_chains: &'a BTreeSet<String>,
    /// Jumps from built-in chains that are missing and must be inserted.
    pub missing_jumps: &'a [Jump],
}

/// `iptables-restore` input and what it amounts to.
#[derive(Debug, Default)]
pub struct Rendered {
    pub text: String,
    /// Rules in the whole ruleset (also those a partial sync leaves out).
    pub filter_rules: usize,
    pub nat_rules: usize,
    /// Per-service `nat` chains the ruleset uses, and whose they are.
    pub active_nat_chains: BTreeMap<String, ServiceKey>,
    /// Service ports with no local endpoints, by traffic policy.
    pub no_local_endpoints_internal: usize,
    pub no_local_endpoints_external: usize,
}

/// Lines of one table: chain declarations, then rules.
#[derive(Default)]
struct Lines {
    chains: String,
    rules: String,
    count: usize,
}

impl Lines {
    fn chain(&mut self, name: &str) {
        let _ = writeln!(self.chains, ":{name} - [0:0]");
    }

    fn rule(&mut self, line: std::fmt::Arguments<'_>) {
        let _ = self.rules.write_fmt(line);
        self.rules.push('\n');
        self.count += 1;
    }
}

/// A comment argument, quoted when it has spaces (as iptables-save prints it).
fn comment(text: &str) -> String {
    if text.contains(' ') {
        format!("-m comment --comment \"{text}\"")
    } else {
        format!("-m comment --comment {text}")
    }
}

/// `1/n` with ten decimals, as upstream writes probabilities.
fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
}

/// Chain names of one service port.
struct ServiceChains {
    cluster: String,
    local: String,
    external: String,
    firewall: String,
}

impl ServiceChains {
    fn of(name: &str, protocol: &str) -> ServiceChains {
        let hash = port_proto_hash(name, protocol);
        ServiceChains {
            cluster: format!("KUBE-SVC-{hash}"),
            local: format!("KUBE-SVL-{hash}"),
            external: format!("KUBE-EXT-{hash}"),
            firewall: format!("KUBE-FW-{hash}"),
        }
    }
}

/// Which endpoints serve which traffic, as upstream's CategorizeEndpoints:
/// ready endpoints, or if there are none, those still serving while
/// terminating.
fn categorize<'e>(
    svc: &ServicePort,
    endpoints: &'e [Endpoint],
) -> (Vec<&'e Endpoint>, Vec<&'e Endpoint>, Vec<&'e Endpoint>) {
    fn usable<'e>(eps: impl Iterator<Item = &'e Endpoint> + Clone) -> Vec<&'e Endpoint> {
        let ready: Vec<_> = eps.clone().filter(|e| e.ready).collect();
        if !ready.is_empty() {
            return ready;
        }
        eps.filter(|e| e.serving && e.terminating).collect()
    }
    let cluster = if svc.uses_cluster_endpoints() {
        usable(endpoints.iter())
    } else {
        Vec::new()
    };
    let local = if svc.uses_local_endpoints() {
        usable(endpoints.iter().filter(|e| e.local))
    } else {
        Vec::new()
    };
    let mut all: Vec<&Endpoint> = cluster.iter().chain(local.iter()).copied().collect();
    all.sort();
    all.dedup();
    (cluster, local, all)
}

/// Renders the whole ruleset (or, with `changed`, everything but the
/// per-service chains of unchanged services).
pub fn render(settings: &RenderSettings, input: &RenderInput<'_>) -> Rendered {
    let mark = settings.mark();
    let mut filter = Lines::default();
    let mut nat = Lines::default();
    // Rules of services a partial sync does not rewrite: counted, not written.
    let mut skipped = Lines::default();
    let mut out = Rendered::default();

    for chain in FILTER_CHAINS {
        filter.chain(chain);
    }
    for chain in NAT_CHAINS {
        nat.chain(chain);
    }
    for jump in input.missing_jumps {
        let lines = if jump.table == "nat" {
            &mut nat
        } else {
            &mut filter
        };
        lines
            .rules
            .push_str(&format!("-I {} 1 {}\n", jump.from, jump.rule()));
    }

    // Fixed rules.
    nat.rule(format_args!(
        "-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN"
    ));
    nat.rule(format_args!(
        "-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}"
    ));
    nat.rule(format_args!(
        "-A {KUBE_POSTROUTING} {} -j MASQUERADE{}",
        comment("kubernetes service traffic requiring SNAT"),
        if settings.masquerade_random_fully {
            " --random-fully"
        } else {
            ""
        }
    ));
    nat.rule(format_args!("-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}"));
    filter.rule(format_args!(
        "-A {KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP"
    ));
    filter.rule(format_args!(
        "-A {KUBE_FORWARD} {} -m mark --mark {mark}/{mark} -j ACCEPT",
        comment("kubernetes forwarding rules")
    ));
    filter.rule(format_args!(
        "-A {KUBE_FORWARD} {} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        comment("kubernetes forwarding conntrack rule")
    ));
    if settings.localhost_node_ports && settings.node_ports.includes_loopback() {
        filter.rule(format_args!(
            "-A {KUBE_FIREWALL} {} -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
            comment("block incoming localnet connections")
        ));
    }

    // Rules in the shared KUBE-SERVICES / KUBE-NODEPORTS chains.
    let mut shared = Lines::default();
    // The per-service chains this sync writes.
    let mut own = Lines::default();
    for (name, (svc, endpoints)) in input.services {
        let write_chains = input
            .changed
            .is_none_or(|changed| changed.contains(&name.service));
        let target = if write_chains { &mut own } else { &mut skipped };
        render_service(
            settings,
            name,
            svc,
            endpoints,
            &mut filter,
            &mut shared,
            svc_nat_split(target),
            &mut out,
        );
    }
    nat.chains.push_str(&own.chains);
    nat.rules.push_str(&shared.rules);
    nat.rules.push_str(&own.rules);
    nat.count += shared.count + own.count;

    // Node ports last: they match any local destination.
    let last =
        comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain");
    match &settings.node_ports {
        NodePortDestinations::AllLocal => {
            let not_loopback = if settings.localhost_node_ports {
                ""
            } else {
                " ! -d 127.0.0.0/8"
            };
            nat.rule(format_args!(
                "-A {KUBE_SERVICES} {last} -m addrtype --dst-type LOCAL{not_loopback} -j {KUBE_NODEPORTS}"
            ));
        }
        NodePortDestinations::Addresses(addrs) => {
            for ip in addrs {
                if ip.is_loopback() && !settings.localhost_node_ports {
                    continue;
                }
                nat.rule(format_args!(
                    "-A {KUBE_SERVICES} {last} -d {ip} -j {KUBE_NODEPORTS}"
                ));
            }
        }
    }

    // Stale per-service chains: flushed by declaring them, then deleted.
    let stale: Vec<&String> = input
        .existing_nat_chains
        .iter()
        .filter(|c| !out.active_nat_chains.contains_key(*c))
        .filter(|c| SERVICE_CHAIN_PREFIXES.iter().any(|p| c.starts_with(p)))
        .collect();
    for chain in &stale {
        nat.chain(chain);
    }
    for chain in &stale {
        let _ = writeln!(nat.rules, "-X {chain}");
    }

    out.filter_rules = filter.count;
    out.nat_rules = nat.count + skipped.count;
    let text = &mut out.text;
    text.reserve(
        filter.chains.len() + filter.rules.len() + nat.chains.len() + nat.rules.len() + 32,
    );
    text.push_str("*filter\n");
    text.push_str(&filter.chains);
    text.push_str(&filter.rules);
    text.push_str("COMMIT\n*nat\n");
    text.push_str(&nat.chains);
    text.push_str(&nat.rules);
    text.push_str("COMMIT\n");
    out
}

/// Where a service's own nat chains go: declarations and rules.
struct SvcNat<'a> {
    chains: &'a mut String,
    rules: &'a mut String,
    count: &'a mut usize,
}

fn svc_nat_split(lines: &mut Lines) -> SvcNat<'_> {
    SvcNat {
        chains: &mut lines.chains,
        rules: &mut lines.rules,
        count: &mut lines.count,
    }
}

impl SvcNat<'_> {
    fn chain(&mut self, name: &str) {
        let _ = writeln!(self.chains, ":{name} - [0:0]");
    }

    fn rule(&mut self, line: std::fmt::Arguments<'_>) {
        let _ = self.rules.write_fmt(line);
        self.rules.push('\n');
        *self.count += 1;
    }
}

#[allow(clippy::too_many_arguments)]
fn render_service(
    settings: &RenderSettings,
    name: &ServicePortName,
    svc: &ServicePort,
    endpoints: &[Endpoint],
    filter: &mut Lines,
    shared: &mut Lines,
    mut own: SvcNat<'_>,
    out: &mut Rendered,
) {
    let spn = name.to_string();
    let proto = svc.protocol.as_str();
    let chains = ServiceChains::of(&spn, proto);
    let (cluster_eps, local_eps, all_eps) = categorize(svc, endpoints);
    let has_endpoints = !all_eps.is_empty();
    let uses_cluster_chain = !cluster_eps.is_empty() && svc.uses_cluster_endpoints();
    let uses_local_chain = !local_eps.is_empty() && svc.uses_local_endpoints();

    let (internal_chain, has_internal) = if svc.internal_policy_local {
        (&chains.local, has_endpoints && !local_eps.is_empty())
    } else {
        (&chains.cluster, has_endpoints)
    };
    let (external_policy_chain, has_external) = if svc.external_policy_local {
        (&chains.local, has_endpoints && !local_eps.is_empty())
    } else {
        (&chains.cluster, has_endpoints)
    };
    let uses_external_chain = has_endpoints && svc.externally_accessible();
    let uses_fw_chain = has_endpoints
        && !svc.load_balancer_ips.is_empty()
        && !svc.load_balancer_source_ranges.is_empty();
    let lb_chain = if uses_fw_chain {
        &chains.firewall
    } else {
        &chains.external
    };

    let (internal_target, internal_comment, external_target, external_comment);
    if !has_endpoints {
        internal_target = "REJECT";
        internal_comment = comment(&format!("{spn} has no endpoints"));
        external_target = "REJECT";
        external_comment = internal_comment.clone();
    } else {
        internal_target = "DROP";
        internal_comment = comment(&format!("{spn} has no local endpoints"));
        external_target = "DROP";
        external_comment = internal_comment.clone();
        if !has_internal {
            out.no_local_endpoints_internal += 1;
        }
        if !has_external {
            out.no_local_endpoints_external += 1;
        }
    }
    let dport = svc.port;
    let cip = svc.cluster_ip;

    // Cluster IP.
    let cluster_ip_comment = comment(&format!("{spn} cluster IP"));
    if has_internal {
        shared.rule(format_args!(
            "-A {KUBE_SERVICES} {cluster_ip_comment} -m {proto} -p {proto} -d {cip} --dport {dport} -j {internal_chain}"
        ));
    } else {
        filter.rule(format_args!(
            "-A {KUBE_SERVICES} {internal_comment} -m {proto} -p {proto} -d {cip} --dport {dport} -j {internal_target}"
        ));
    }

    // External IPs.
    for ip in &svc.external_ips {
        if has_endpoints {
            shared.rule(format_args!(
                "-A {KUBE_SERVICES} {} -m {proto} -p {proto} -d {ip} --dport {dport} -j {}",
                comment(&format!("{spn} external IP")),
                chains.external
            ));
        }
        if !has_external {
            filter.rule(format_args!(
                "-A {KUBE_EXTERNAL_SERVICES} {external_comment} -m {proto} -p {proto} -d {ip} --dport {dport} -j {external_target}"
            ));
        }
    }

    // Load balancer ingress IPs.
    for ip in &svc.load_balancer_ips {
        if has_endpoints {
            shared.rule(format_args!(
                "-A {KUBE_SERVICES} {} -m {proto} -p {proto} -d {ip} --dport {dport} -j {lb_chain}",
                comment(&format!("{spn} loadbalancer IP"))
            ));
        }
        if uses_fw_chain {
            filter.rule(format_args!(
                "-A {KUBE_PROXY_FIREWALL} {} -m {proto} -p {proto} -d {ip} --dport {dport} -j DROP",
                comment(&format!(
                    "{spn} traffic not accepted by {}",
                    chains.firewall
                ))
            ));
        }
    }
    if !has_external {
        for ip in &svc.load_balancer_ips {
            filter.rule(format_args!(
                "-A {KUBE_EXTERNAL_SERVICES} {external_comment} -m {proto} -p {proto} -d {ip} --dport {dport} -j {external_target}"
            ));
        }
    }

    // Node port.
    if svc.node_port != 0 {
        let node_port = svc.node_port;
        if has_endpoints {
            shared.rule(format_args!(
                "-A {KUBE_NODEPORTS} {} -m {proto} -p {proto} --dport {node_port} -j {}",
                comment(&spn),
                chains.external
            ));
        }
        if !has_external {
            filter.rule(format_args!(
                "-A {KUBE_EXTERNAL_SERVICES} {external_comment} -m addrtype --dst-type LOCAL -m {proto} -p {proto} --dport {node_port} -j {external_target}"
            ));
        }
    }

    // Health check node port.
    if svc.health_check_node_port != 0 {
        filter.rule(format_args!(
            "-A {KUBE_NODEPORTS} {} -m tcp -p tcp --dport {} -j ACCEPT",
            comment(&format!("{spn} health check node port")),
            svc.health_check_node_port
        ));
    }

    // From here on: the service's own chains.
    if has_internal {
        if settings.masquerade_all {
            own.rule(format_args!(
                "-A {internal_chain} {cluster_ip_comment} -m {proto} -p {proto} -d {cip} --dport {dport} -j {KUBE_MARK_MASQ}"
            ));
        } else if let Some(cidr) = &settings.cluster_cidr {
            // Off-cluster traffic to a cluster IP (a route to the service
            // range via this node) may leave the node again: masquerade it.
            own.rule(format_args!(
                "-A {internal_chain} {cluster_ip_comment} -m {proto} -p {proto} -d {cip} --dport {dport} ! -s {cidr} -j {KUBE_MARK_MASQ}"
            ));
        }
    }

    if uses_external_chain {
        let ext = &chains.external;
        own.chain(ext);
        out.active_nat_chains
            .insert(ext.clone(), name.service.clone());
        if !svc.external_policy_local {
            own.rule(format_args!(
                "-A {ext} {} -j {KUBE_MARK_MASQ}",
                comment(&format!(
                    "masquerade traffic for {spn} external destinations"
                ))
            ));
        } else {
            if let Some(cidr) = &settings.cluster_cidr {
                // Pods reaching an external address are treated as if they
                // went out to the load balancer and back: cluster policy.
                own.rule(format_args!(
                    "-A {ext} {} -s {cidr} -j {}",
                    comment(&format!("pod traffic for {spn} external destinations")),
                    chains.cluster
                ));
            }
            own.rule(format_args!(
                "-A {ext} {} -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}",
                comment(&format!(
                    "masquerade LOCAL traffic for {spn} external destinations"
                ))
            ));
            own.rule(format_args!(
                "-A {ext} {} -m addrtype --src-type LOCAL -j {}",
                comment(&format!(
                    "route LOCAL traffic for {spn} external destinations"
                )),
                chains.cluster
            ));
        }
        if has_external {
            own.rule(format_args!("-A {ext} -j {external_policy_chain}"));
        }
    }

    if uses_fw_chain {
        let fw = &chains.firewall;
        own.chain(fw);
        out.active_nat_chains
            .insert(fw.clone(), name.service.clone());
        let lb_comment = comment(&format!("{spn} loadbalancer IP"));
        for range in &svc.load_balancer_source_ranges {
            own.rule(format_args!(
                "-A {fw} {lb_comment} -s {} -j {}",
                range.trim(),
                chains.external
            ));
        }
        // Traffic from the load balancer's own address, as upstream allows.
        for ip in &svc.load_balancer_ips {
            own.rule(format_args!(
                "-A {fw} {lb_comment} -s {ip} -j {}",
                chains.external
            ));
        }
        own.rule(format_args!(
            "-A {fw} {}",
            comment(&format!(
                "other traffic to {spn} will be dropped by KUBE-PROXY-FIREWALL"
            ))
        ));
    }

    if uses_cluster_chain {
        own.chain(&chains.cluster);
        out.active_nat_chains
            .insert(chains.cluster.clone(), name.service.clone());
        endpoint_jumps(&mut own, &spn, proto, svc, &chains.cluster, &cluster_eps);
    }
    if uses_local_chain {
        own.chain(&chains.local);
        out.active_nat_chains
            .insert(chains.local.clone(), name.service.clone());
        endpoint_jumps(&mut own, &spn, proto, svc, &chains.local, &local_eps);
    }

    for ep in all_eps {
        let sep = endpoint_chain(&spn, proto, &ep.to_string());
        own.chain(&sep);
        let c = comment(&spn);
        // Hairpin: an endpoint reaching itself through the service.
        own.rule(format_args!(
            "-A {sep} {c} -s {} -j {KUBE_MARK_MASQ}",
            ep.ip
        ));
        let affinity = if svc.affinity_seconds.is_some() {
            format!(" -m recent --name {sep} --set")
        } else {
            String::new()
        };
        own.rule(format_args!(
            "-A {sep} {c}{affinity} -m {proto} -p {proto} -j DNAT --to-destination {ep}"
        ));
        out.active_nat_chains.insert(sep, name.service.clone());
    }
}

/// The rules of a KUBE-SVC / KUBE-SVL chain: affinity checks first, then
/// one probability rule per endpoint (1/n, 1/(n-1), ..., the last always).
fn endpoint_jumps(
    own: &mut SvcNat<'_>,
    spn: &str,
    proto: &str,
    svc: &ServicePort,
    chain: &str,
    endpoints: &[&Endpoint],
) {
    if let Some(seconds) = svc.affinity_seconds {
        for ep in endpoints {
            let sep = endpoint_chain(spn, proto, &ep.to_string());
            own.rule(format_args!(
                "-A {chain} {} -m recent --name {sep} --rcheck --seconds {seconds} --reap -j {sep}",
                comment(&format!("{spn} -> {ep}"))
            ));
        }
    }
    let n = endpoints.len();
    for (i, ep) in endpoints.iter().enumerate() {
        let sep = endpoint_chain(spn, proto, &ep.to_string());
        let c = comment(&format!("{spn} -> {ep}"));
        if i + 1 < n {
            own.rule(format_args!(
                "-A {chain} {c} -m statistic --mode random --probability {} -j {sep}",
                probability(n - i)
            ));
        } else {
            own.rule(format_args!("-A {chain} {c} -j {sep}"));
        }
    }
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
