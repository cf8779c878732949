//! The in-memory zone: the DNS view of Services and EndpointSlices, kept
//! up to date one Service at a time, and the pure lookup that answers a name.
//!
//! Writers hold a mutex over the raw objects; readers only take a read lock
//! on the derived zone for the length of one lookup.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The schema version of the Kubernetes DNS specification served at
/// `dns-version.<zone>`.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The deprecated annotation that also publishes not-ready endpoints.
const TOLERATE_UNREADY: &str = "service.alpha.kubernetes.io/tolerate-unready-endpoints";

/// What a Service answers with.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kind {
    /// A ClusterIP (or NodePort/LoadBalancer) Service: its cluster IPs.
    ClusterIp(Vec<IpAddr>),
    /// A headless Service: its ready endpoints.
    Headless,
    /// An ExternalName Service: a CNAME to this name (fully qualified).
    ExternalName(String),
}

/// One named port: (name, protocol, number), name and protocol lowercase.
pub(crate) type NamedPort = (String, String, u16);

/// One ready endpoint of a headless Service.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Endpoint {
    /// The endpoint's hostname, or its address with dashes when it has none.
    pub hostname: String,
    pub ip: IpAddr,
    /// The slice's named ports, which are the pods' ports.
    pub ports: Arc<Vec<NamedPort>>,
}

/// The DNS view of one Service.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub kind: Kind,
    /// The Service's named ports.
    pub ports: Vec<NamedPort>,
    /// Ready endpoints (only kept for headless Services).
    pub endpoints: Vec<Endpoint>,
}

/// What a lookup found.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Answer {
    /// Records owned by the question's name.
    Records {
        answers: Vec<Rr>,
        additionals: Vec<(String, Rr)>,
    },
    /// The name exists, but has no records of this type.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// Not a name this server is authoritative for: forward it.
    NotOurs,
}

/// Record data, owned by the question's name unless stated otherwise.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Rr {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Ptr(String),
    /// priority, weight, port, target
    Srv(u16, u16, u16, String),
    Txt(String),
    Soa,
    Ns(String),
}

/// The query types the lookup distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QType {
    A,
    Aaaa,
    Srv,
    Ptr,
    Txt,
    Soa,
    Ns,
    Cname,
    Any,
    Other,
}

/// The derived, read-side state.
#[derive(Default)]
struct Zone {
    /// Keyed by `name.namespace`, lowercase.
    services: HashMap<String, Arc<Entry>>,
    /// Services per namespace: a namespace with any is an existing name.
    namespaces: HashMap<String, usize>,
    /// Reverse records: IP → fully qualified names.
    ptr: HashMap<IpAddr, Vec<String>>,
}

/// The write-side state: the objects as watched.
#[derive(Default)]
struct Raw {
    /// Keyed by (namespace, name).
    services: HashMap<(String, String), Service>,
    /// Keyed by (namespace, name).
    slices: HashMap<(String, String), EndpointSlice>,
    /// (namespace, service) → its slices' names.
    slices_by_service: HashMap<(String, String), BTreeSet<String>>,
}

/// The cluster zone: cheap concurrent lookups, updates per Service.
pub struct Index {
    /// The cluster domain, lowercase, no trailing dot (`cluster.local`).
    domain: String,
    zone: RwLock<Zone>,
    raw: Mutex<Raw>,
    serial: AtomicU32,
    services_synced: AtomicBool,
    slices_synced: AtomicBool,
}

impl Index {
    /// An empty zone for `domain` (such as `cluster.local`).
    pub fn new(domain: &str) -> Index {
        let serial = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        Index {
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            zone: RwLock::default(),
            raw: Mutex::default(),
            serial: AtomicU32::new(serial),
            services_synced: AtomicBool::new(false),
            slices_synced: AtomicBool::new(false),
        }
    }

    /// The cluster domain, lowercase, without a trailing dot.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The SOA serial: it changes with every update.
    pub fn serial(&self) -> u32 {
        self.serial.load(Ordering::Relaxed)
    }

    /// Whether both watches have listed everything once.
    pub fn synced(&self) -> bool {
        self.services_synced.load(Ordering::Acquire) && self.slices_synced.load(Ordering::Acquire)
    }

    pub(crate) fn mark_services_synced(&self) {
        self.services_synced.store(true, Ordering::Release);
    }

    pub(crate) fn mark_slices_synced(&self) {
        self.slices_synced.store(true, Ordering::Release);
    }

    /// Adds or replaces a Service.
    pub fn apply_service(&self, svc: Service) {
        let key = object_key(&svc.metadata);
        let mut raw = self.raw.lock().unwrap();
        raw.services.insert(key.clone(), svc);
        self.refresh(&raw, &key);
    }

    /// Removes a Service.
    pub fn delete_service(&self, svc: &Service) {
        let key = object_key(&svc.metadata);
        let mut raw = self.raw.lock().unwrap();
        raw.services.remove(&key);
        self.refresh(&raw, &key);
    }

    /// Adds or replaces an EndpointSlice.
    pub fn apply_slice(&self, slice: EndpointSlice) {
        let key = object_key(&slice.metadata);
        let mut raw = self.raw.lock().unwrap();
        let mut touched = Vec::new();
        if let Some(old) = raw.slices.remove(&key) {
            touched.extend(unlink_slice(&mut raw, &key, &old));
        }
        if let Some(svc) = slice_service(&slice) {
            let owner = (key.0.clone(), svc);
            raw.slices_by_service
                .entry(owner.clone())
                .or_default()
                .insert(key.1.clone());
            touched.push(owner);
        }
        raw.slices.insert(key, slice);
        touched.dedup();
        for owner in touched {
            self.refresh(&raw, &owner);
        }
    }

    /// Removes an EndpointSlice.
    pub fn delete_slice(&self, slice: &EndpointSlice) {
        let key = object_key(&slice.metadata);
        let mut raw = self.raw.lock().unwrap();
        if let Some(old) = raw.slices.remove(&key)
            && let Some(owner) = unlink_slice(&mut raw, &key, &old)
        {
            self.refresh(&raw, &owner);
        }
    }

    /// Replaces every Service (after a full list).
    pub fn replace_services(&self, services: Vec<Service>) {
        let mut raw = self.raw.lock().unwrap();
        raw.services = services
            .into_iter()
            .map(|s| (object_key(&s.metadata), s))
            .collect();
        self.rebuild(&raw);
    }

    /// Replaces every EndpointSlice (after a full list).
    pub fn replace_slices(&self, slices: Vec<EndpointSlice>) {
        let mut raw = self.raw.lock().unwrap();
        raw.slices.clear();
        raw.slices_by_service.clear();
        for slice in slices {
            let key = object_key(&slice.metadata);
            if let Some(svc) = slice_service(&slice) {
                raw.slices_by_service
                    .entry((key.0.clone(), svc))
                    .or_default()
                    .insert(key.1.clone());
            }
            raw.slices.insert(key, slice);
        }
        self.rebuild(&raw);
    }

    /// Recomputes one Service's entry and swaps it in.
    fn refresh(&self, raw: &Raw, key: &(String, String)) {
        let entry = build_entry(raw, key).map(Arc::new);
        let mut zone = self.zone.write().unwrap();
        self.swap(&mut zone, key, entry);
        drop(zone);
        self.serial.fetch_add(1, Ordering::Relaxed);
    }

    /// Recomputes every entry, then swaps the whole zone in at once.
    fn rebuild(&self, raw: &Raw) {
        let mut fresh = Zone::default();
        for key in raw.services.keys() {
            let entry = build_entry(raw, key).map(Arc::new);
            self.swap(&mut fresh, key, entry);
        }
        *self.zone.write().unwrap() = fresh;
        self.serial.fetch_add(1, Ordering::Relaxed);
    }

    fn swap(&self, zone: &mut Zone, key: &(String, String), entry: Option<Arc<Entry>>) {
        let (ns, name) = (key.0.to_ascii_lowercase(), key.1.to_ascii_lowercase());
        let id = format!("{name}.{ns}");
        let old = match entry {
            Some(e) => {
                for (ip, target) in ptrs(&e, &name, &ns, &self.domain) {
                    zone.ptr.entry(ip).or_default().push(target);
                }
                zone.services.insert(id, e)
            }
            None => zone.services.remove(&id),
        };
        if let Some(old) = &old {
            for (ip, target) in ptrs(old, &name, &ns, &self.domain) {
                if let Some(names) = zone.ptr.get_mut(&ip) {
                    if let Some(at) = names.iter().position(|n| *n == target) {
                        names.remove(at);
                    }
                    if names.is_empty() {
                        zone.ptr.remove(&ip);
                    }
                }
            }
        }
        let count =
            zone.services.contains_key(&format!("{name}.{ns}")) as isize - old.is_some() as isize;
        if count != 0 {
            let n = zone.namespaces.entry(ns.clone()).or_default();
            *n = n.saturating_add_signed(count);
            if *n == 0 {
                zone.namespaces.remove(&ns);
            }
        }
    }

    /// Answers `qname` (lowercase, with or without the trailing dot).
    pub(crate) fn lookup(&self, qname: &str, qtype: QType) -> Answer {
        let qname = qname.trim_end_matches('.');
        if let Some(ip) = parse_reverse(qname) {
            let zone = self.zone.read().unwrap();
            return match zone.ptr.get(&ip) {
                Some(names) if qtype == QType::Ptr || qtype == QType::Any => Answer::Records {
                    answers: names.iter().map(|n| Rr::Ptr(n.clone())).collect(),
                    additionals: Vec::new(),
                },
                Some(_) => Answer::NoData,
                None => Answer::NotOurs,
            };
        }
        let rest = if qname == self.domain {
            ""
        } else {
            match qname
                .strip_suffix(self.domain.as_str())
                .and_then(|r| r.strip_suffix('.'))
            {
                Some(rest) => rest,
                None => return Answer::NotOurs,
            }
        };
        if rest.is_empty() {
            return match qtype {
                QType::Soa => records(vec![Rr::Soa]),
                QType::Ns => records(vec![Rr::Ns(format!("ns.dns.{}.", self.domain))]),
                _ => Answer::NoData,
            };
        }
        if rest == "dns-version" {
            return match qtype {
                QType::Txt | QType::Any => records(vec![Rr::Txt(SCHEMA_VERSION.into())]),
                _ => Answer::NoData,
            };
        }
        if let Some(under) = rest.strip_suffix("svc") {
            if under.is_empty() {
                return Answer::NoData;
            }
            if let Some(under) = under.strip_suffix('.') {
                return self.lookup_service(under, qtype);
            }
        }
        if let Some(under) = rest.strip_suffix("pod") {
            if under.is_empty() {
                return Answer::NoData;
            }
            if let Some(under) = under.strip_suffix('.') {
                return lookup_pod(under, qtype);
            }
        }
        Answer::NxDomain
    }

    /// `under` is what stands before `.svc.<zone>`.
    fn lookup_service(&self, under: &str, qtype: QType) -> Answer {
        let labels: Vec<&str> = under.split('.').collect();
        let zone = self.zone.read().unwrap();
        match labels.as_slice() {
            [ns] => {
                if zone.namespaces.contains_key(*ns) {
                    Answer::NoData
                } else {
                    Answer::NxDomain
                }
            }
            [_, _] => match zone.services.get(under) {
                Some(e) => self.service_records(e, qtype),
                None => Answer::NxDomain,
            },
            [first, _, _] => {
                let Some(e) = zone.services.get(&under[first.len() + 1..]) else {
                    return Answer::NxDomain;
                };
                if let Some(proto) = first.strip_prefix('_') {
                    // `_proto.svc.ns`: an empty non-terminal when an SRV record
                    // lies beneath it.
                    let used = match e.kind {
                        Kind::ClusterIp(_) => e.ports.iter().any(|p| p.1 == proto),
                        Kind::Headless => e
                            .endpoints
                            .iter()
                            .any(|ep| ep.ports.iter().any(|p| p.1 == proto)),
                        Kind::ExternalName(_) => false,
                    };
                    return if used {
                        Answer::NoData
                    } else {
                        Answer::NxDomain
                    };
                }
                let ips: Vec<IpAddr> = e
                    .endpoints
                    .iter()
                    .filter(|ep| ep.hostname == *first)
                    .map(|ep| ep.ip)
                    .collect();
                if ips.is_empty() {
                    Answer::NxDomain
                } else {
                    address_records(&ips, qtype)
                }
            }
            [port, proto, svc, ns] => {
                let (Some(port), Some(proto)) = (port.strip_prefix('_'), proto.strip_prefix('_'))
                else {
                    return Answer::NxDomain;
                };
                let Some(e) = zone.services.get(&format!("{svc}.{ns}")) else {
                    return Answer::NxDomain;
                };
                self.srv_records(e, svc, ns, port, proto, qtype)
            }
            _ => Answer::NxDomain,
        }
    }

    fn service_records(&self, e: &Entry, qtype: QType) -> Answer {
        match &e.kind {
            Kind::ExternalName(target) => records(vec![Rr::Cname(target.clone())]),
            Kind::ClusterIp(ips) => address_records(ips, qtype),
            Kind::Headless => {
                if e.endpoints.is_empty() {
                    // The specification: a headless Service without ready
                    // endpoints answers NXDOMAIN.
                    return Answer::NxDomain;
                }
                let mut ips: Vec<IpAddr> = e.endpoints.iter().map(|ep| ep.ip).collect();
                ips.dedup();
                address_records(&ips, qtype)
            }
        }
    }

    fn srv_records(
        &self,
        e: &Entry,
        svc: &str,
        ns: &str,
        port: &str,
        proto: &str,
        qtype: QType,
    ) -> Answer {
        let domain = &self.domain;
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        match &e.kind {
            Kind::ClusterIp(ips) => {
                if let Some(p) = e.ports.iter().find(|p| p.0 == port && p.1 == proto) {
                    let target = format!("{svc}.{ns}.svc.{domain}.");
                    answers.push(Rr::Srv(0, 100, p.2, target.clone()));
                    for ip in ips {
                        additionals.push((target.clone(), address_rr(*ip)));
                    }
                }
            }
            Kind::Headless => {
                let matching: Vec<(&Endpoint, u16)> = e
                    .endpoints
                    .iter()
                    .filter_map(|ep| {
                        ep.ports
                            .iter()
                            .find(|p| p.0 == port && p.1 == proto)
                            .map(|p| (ep, p.2))
                    })
                    .collect();
                let weight = if matching.is_empty() {
                    0
                } else {
                    (100 / matching.len()).max(1) as u16
                };
                for (ep, number) in matching {
                    let target = format!("{}.{svc}.{ns}.svc.{domain}.", ep.hostname);
                    answers.push(Rr::Srv(0, weight, number, target.clone()));
                    additionals.push((target, address_rr(ep.ip)));
                }
            }
            Kind::ExternalName(_) => {}
        }
        if answers.is_empty() {
            Answer::NxDomain
        } else if qtype == QType::Srv || qtype == QType::Any {
            Answer::Records {
                answers,
                additionals,
            }
        } else {
            Answer::NoData
        }
    }
}

/// `under` is what stands before `.pod.<zone>`: `[<ip-with-dashes>.]<ns>`.
fn lookup_pod(under: &str, qtype: QType) -> Answer {
    let labels: Vec<&str> = under.split('.').collect();
    match labels.as_slice() {
        [_ns] => Answer::NoData,
        [ip, _ns] => match parse_dashed(ip) {
            Some(ip) => address_records(&[ip], qtype),
            None => Answer::NxDomain,
        },
        _ => Answer::NxDomain,
    }
}

fn records(answers: Vec<Rr>) -> Answer {
    Answer::Records {
        answers,
        additionals: Vec::new(),
    }
}

fn address_rr(ip: IpAddr) -> Rr {
    match ip {
        IpAddr::V4(v4) => Rr::A(v4),
        IpAddr::V6(v6) => Rr::Aaaa(v6),
    }
}

/// A or AAAA records of a name that exists: NODATA when none of the family.
fn address_records(ips: &[IpAddr], qtype: QType) -> Answer {
    let answers: Vec<Rr> = ips
        .iter()
        .filter(|ip| match qtype {
            QType::A => ip.is_ipv4(),
            QType::Aaaa => ip.is_ipv6(),
            QType::Any => true,
            _ => false,
        })
        .map(|ip| address_rr(*ip))
        .collect();
    if answers.is_empty() {
        Answer::NoData
    } else {
        records(answers)
    }
}

fn object_key(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn slice_service(slice: &EndpointSlice) -> Option<String> {
    slice
        .metadata
        .labels
        .as_ref()?
        .get(SERVICE_NAME_LABEL)
        .cloned()
}

/// Forgets `old` (stored under `key`) in the service → slices index; returns
/// the Service it belonged to.
fn unlink_slice(
    raw: &mut Raw,
    key: &(String, String),
    old: &EndpointSlice,
) -> Option<(String, String)> {
    let owner = (key.0.clone(), slice_service(old)?);
    if let Some(set) = raw.slices_by_service.get_mut(&owner) {
        set.remove(&key.1);
        if set.is_empty() {
            raw.slices_by_service.remove(&owner);
        }
    }
    Some(owner)
}

/// The DNS view of the Service `key` from the raw objects, if it exists.
fn build_entry(raw: &Raw, key: &(String, String)) -> Option<Entry> {
    let svc = raw.services.get(key)?;
    let spec = svc.spec.as_ref()?;
    let ports: Vec<NamedPort> = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let name = p.name.as_deref().filter(|n| !n.is_empty())?;
            Some((
                name.to_ascii_lowercase(),
                p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                u16::try_from(p.port).ok()?,
            ))
        })
        .collect();
    if spec.type_.as_deref() == Some("ExternalName") {
        let target = spec.external_name.clone().unwrap_or_default();
        let target = format!("{}.", target.trim_end_matches('.')).to_ascii_lowercase();
        return Some(Entry {
            kind: Kind::ExternalName(target),
            ports,
            endpoints: Vec::new(),
        });
    }
    let cluster_ips: Vec<IpAddr> = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.iter().filter_map(|ip| ip.parse().ok()).collect(),
        _ => spec
            .cluster_ip
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect(),
    };
    let headless = spec.cluster_ip.as_deref() == Some("None");
    if !headless {
        return Some(Entry {
            kind: Kind::ClusterIp(cluster_ips),
            ports,
            endpoints: Vec::new(),
        });
    }
    let all = spec.publish_not_ready_addresses == Some(true)
        || svc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TOLERATE_UNREADY))
            .is_some_and(|v| v == "true");
    let mut endpoints = Vec::new();
    for slice_name in raw.slices_by_service.get(key).into_iter().flatten() {
        let Some(slice) = raw.slices.get(&(key.0.clone(), slice_name.clone())) else {
            continue;
        };
        let slice_ports: Arc<Vec<NamedPort>> = Arc::new(
            slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    let name = p.name.as_deref().filter(|n| !n.is_empty())?;
                    Some((
                        name.to_ascii_lowercase(),
                        p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                        u16::try_from(p.port?).ok()?,
                    ))
                })
                .collect(),
        );
        for ep in &slice.endpoints {
            // An unset `ready` means ready, as the API documents.
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready && !all {
                continue;
            }
            for address in &ep.addresses {
                let Ok(ip) = address.parse::<IpAddr>() else {
                    continue;
                };
                let hostname = match ep.hostname.as_deref().filter(|h| !h.is_empty()) {
                    Some(h) => h.to_ascii_lowercase(),
                    None => dashed(ip),
                };
                endpoints.push(Endpoint {
                    hostname,
                    ip,
                    ports: slice_ports.clone(),
                });
            }
        }
    }
    endpoints.sort_by(|a, b| (a.ip, &a.hostname).cmp(&(b.ip, &b.hostname)));
    endpoints.dedup_by(|a, b| a.ip == b.ip && a.hostname == b.hostname && a.ports == b.ports);
    Some(Entry {
        kind: Kind::Headless,
        ports,
        endpoints,
    })
}

/// The reverse records an entry owns.
fn ptrs(e: &Entry, name: &str, ns: &str, domain: &str) -> Vec<(IpAddr, String)> {
    match &e.kind {
        Kind::ClusterIp(ips) => ips
            .iter()
            .map(|ip| (*ip, format!("{name}.{ns}.svc.{domain}.")))
            .collect(),
        Kind::Headless => e
            .endpoints
            .iter()
            .map(|ep| (ep.ip, format!("{}.{name}.{ns}.svc.{domain}.", ep.hostname)))
            .collect(),
        Kind::ExternalName(_) => Vec::new(),
    }
}

/// `10.1.2.3` → `10-1-2-3`; IPv6 colons become dashes as well.
fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// The inverse of `dashed`: `10-1-2-3` → 10.1.2.3.
fn parse_dashed(label: &str) -> Option<IpAddr> {
    if label.matches('-').count() == 3
        && let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>()
    {
        return Some(IpAddr::V4(v4));
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// `4.3.2.1.in-addr.arpa` → 1.2.3.4; nibble names under `ip6.arpa` too.
fn parse_reverse(qname: &str) -> Option<IpAddr> {
    if let Some(rest) = qname.strip_suffix(".in-addr.arpa") {
        let mut octets: Vec<u8> = Vec::with_capacity(4);
        for label in rest.split('.') {
            octets.push(label.parse().ok()?);
        }
        if octets.len() != 4 {
            return None;
        }
        octets.reverse();
        return Some(IpAddr::V4(Ipv4Addr::new(
            octets[0], octets[1], octets[2], octets[3],
        )));
    }
    if let Some(rest) = qname.strip_suffix(".ip6.arpa") {
        let nibbles: Vec<&str> = rest.split('.').collect();
        if nibbles.len() != 32 {
            return None;
        }
        let mut value: u128 = 0;
        for nibble in nibbles.iter().rev() {
            if nibble.len() != 1 {
                return None;
            }
            value = (value << 4) | u128::from_str_radix(nibble, 16).ok()?;
        }
        return Some(IpAddr::V6(Ipv6Addr::from(value)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    fn slice(value: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(value).unwrap()
    }

    fn index() -> Index {
        let index = Index::new("cluster.local");
        index.apply_service(service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20", "fd00::20"],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 81}]},
        })));
        index.apply_service(service(json!({
            "metadata": {"name": "db", "namespace": "prod"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]},
        })));
        index.apply_slice(slice(json!({
            "metadata": {"name": "db-abc", "namespace": "prod",
                         "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "ports": [{"name": "pg", "port": 15432, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.244.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.244.0.6"], "conditions": {"ready": true}},
                {"addresses": ["10.244.0.7"], "conditions": {"ready": false}},
            ],
        })));
        index.apply_service(service(json!({
            "metadata": {"name": "ext", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "example.com"},
        })));
        index
    }

    fn answers(a: Answer) -> Vec<Rr> {
        match a {
            Answer::Records { answers, .. } => answers,
            other => panic!("expected records, got {other:?}"),
        }
    }

    #[test]
    fn a_cluster_ip_service_answers_its_cluster_ips_by_family() {
        let i = index();
        assert_eq!(
            answers(i.lookup("web.default.svc.cluster.local.", QType::A)),
            vec![Rr::A("10.96.0.20".parse().unwrap())]
        );
        assert_eq!(
            answers(i.lookup("web.default.svc.cluster.local", QType::Aaaa)),
            vec![Rr::Aaaa("fd00::20".parse().unwrap())]
        );
        assert_eq!(
            i.lookup("web.default.svc.cluster.local", QType::Txt),
            Answer::NoData
        );
    }

    #[test]
    fn a_headless_service_answers_its_ready_endpoints() {
        let i = index();
        assert_eq!(
            answers(i.lookup("db.prod.svc.cluster.local", QType::A)),
            vec![
                Rr::A("10.244.0.5".parse().unwrap()),
                Rr::A("10.244.0.6".parse().unwrap())
            ]
        );
        assert_eq!(
            i.lookup("db.prod.svc.cluster.local", QType::Aaaa),
            Answer::NoData
        );
        assert_eq!(
            answers(i.lookup("db-0.db.prod.svc.cluster.local", QType::A)),
            vec![Rr::A("10.244.0.5".parse().unwrap())]
        );
        assert_eq!(
            answers(i.lookup("10-244-0-6.db.prod.svc.cluster.local", QType::A)),
            vec![Rr::A("10.244.0.6".parse().unwrap())]
        );
        assert_eq!(
            i.lookup("10-244-0-7.db.prod.svc.cluster.local", QType::A),
            Answer::NxDomain
        );
    }

    #[test]
    fn publish_not_ready_addresses_includes_unready_endpoints() {
        let i = index();
        i.apply_service(service(json!({
            "metadata": {"name": "db", "namespace": "prod"},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": true},
        })));
        assert_eq!(
            answers(i.lookup("db.prod.svc.cluster.local", QType::A)).len(),
            3
        );
    }

    #[test]
    fn a_headless_service_without_ready_endpoints_is_nxdomain() {
        let i = index();
        i.delete_slice(&slice(json!({
            "metadata": {"name": "db-abc", "namespace": "prod",
                         "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4", "endpoints": [],
        })));
        assert_eq!(
            i.lookup("db.prod.svc.cluster.local", QType::A),
            Answer::NxDomain
        );
        assert_eq!(
            i.lookup("5.0.244.10.in-addr.arpa", QType::Ptr),
            Answer::NotOurs
        );
    }

    #[test]
    fn srv_records_name_the_service_or_each_endpoint() {
        let i = index();
        match i.lookup("_http._tcp.web.default.svc.cluster.local", QType::Srv) {
            Answer::Records {
                answers,
                additionals,
            } => {
                assert_eq!(
                    answers,
                    vec![Rr::Srv(0, 100, 80, "web.default.svc.cluster.local.".into())]
                );
                assert_eq!(additionals.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            answers(i.lookup("_pg._tcp.db.prod.svc.cluster.local", QType::Srv)),
            vec![
                Rr::Srv(0, 50, 15432, "db-0.db.prod.svc.cluster.local.".into()),
                Rr::Srv(0, 50, 15432, "10-244-0-6.db.prod.svc.cluster.local.".into()),
            ]
        );
        assert_eq!(
            i.lookup("_http._udp.web.default.svc.cluster.local", QType::Srv),
            Answer::NxDomain
        );
        assert_eq!(
            i.lookup("_tcp.web.default.svc.cluster.local", QType::Srv),
            Answer::NoData
        );
        assert_eq!(
            i.lookup("_http._tcp.web.default.svc.cluster.local", QType::A),
            Answer::NoData
        );
    }

    #[test]
    fn ptr_records_cover_cluster_ips_and_headless_endpoints() {
        let i = index();
        assert_eq!(
            answers(i.lookup("20.0.96.10.in-addr.arpa.", QType::Ptr)),
            vec![Rr::Ptr("web.default.svc.cluster.local.".into())]
        );
        let v6 = "0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa";
        assert_eq!(
            answers(i.lookup(v6, QType::Ptr)),
            vec![Rr::Ptr("web.default.svc.cluster.local.".into())]
        );
        assert_eq!(
            answers(i.lookup("5.0.244.10.in-addr.arpa", QType::Ptr)),
            vec![Rr::Ptr("db-0.db.prod.svc.cluster.local.".into())]
        );
        assert_eq!(
            i.lookup("1.1.168.192.in-addr.arpa", QType::Ptr),
            Answer::NotOurs
        );
        i.delete_service(&service(
            json!({"metadata": {"name": "web", "namespace": "default"}}),
        ));
        assert_eq!(
            i.lookup("20.0.96.10.in-addr.arpa", QType::Ptr),
            Answer::NotOurs
        );
    }

    #[test]
    fn an_external_name_service_is_a_cname() {
        let i = index();
        assert_eq!(
            answers(i.lookup("ext.default.svc.cluster.local", QType::A)),
            vec![Rr::Cname("example.com.".into())]
        );
    }

    #[test]
    fn pod_names_encode_their_address() {
        let i = index();
        assert_eq!(
            answers(i.lookup("10-244-1-9.default.pod.cluster.local", QType::A)),
            vec![Rr::A("10.244.1.9".parse().unwrap())]
        );
        assert_eq!(
            i.lookup("10-244-1-9.default.pod.cluster.local", QType::Aaaa),
            Answer::NoData
        );
        assert_eq!(
            i.lookup("not-an-ip.default.pod.cluster.local", QType::A),
            Answer::NxDomain
        );
        assert_eq!(
            i.lookup("default.pod.cluster.local", QType::A),
            Answer::NoData
        );
    }

    #[test]
    fn missing_names_are_nxdomain_and_existing_ones_nodata() {
        let i = index();
        assert_eq!(
            i.lookup("nope.default.svc.cluster.local", QType::A),
            Answer::NxDomain
        );
        assert_eq!(i.lookup("nope.cluster.local", QType::A), Answer::NxDomain);
        assert_eq!(
            i.lookup("default.svc.cluster.local", QType::A),
            Answer::NoData
        );
        assert_eq!(
            i.lookup("nons.svc.cluster.local", QType::A),
            Answer::NxDomain
        );
        assert_eq!(i.lookup("svc.cluster.local", QType::A), Answer::NoData);
        assert_eq!(i.lookup("cluster.local", QType::A), Answer::NoData);
        assert_eq!(
            answers(i.lookup("cluster.local", QType::Soa)),
            vec![Rr::Soa]
        );
        assert_eq!(i.lookup("example.com", QType::A), Answer::NotOurs);
    }

    #[test]
    fn dns_version_is_a_txt_record() {
        assert_eq!(
            answers(index().lookup("dns-version.cluster.local", QType::Txt)),
            vec![Rr::Txt(SCHEMA_VERSION.into())]
        );
    }

    #[test]
    fn a_full_relist_replaces_the_zone() {
        let i = index();
        i.replace_services(vec![service(json!({
            "metadata": {"name": "only", "namespace": "x"},
            "spec": {"clusterIP": "10.96.0.99"},
        }))]);
        assert_eq!(
            i.lookup("web.default.svc.cluster.local", QType::A),
            Answer::NxDomain
        );
        assert_eq!(
            answers(i.lookup("only.x.svc.cluster.local", QType::A)).len(),
            1
        );
        assert_eq!(
            i.lookup("default.svc.cluster.local", QType::A),
            Answer::NxDomain
        );
    }
}
