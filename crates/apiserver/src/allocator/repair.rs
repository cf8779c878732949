//! The repair loop for Service ClusterIPs and NodePorts, as kube-apiserver's
//! ipallocator and portallocator repair controllers run it: every Service's
//! addresses have their allocation record, and every record belongs to a
//! Service that holds its address.
//!
//! A pass reads the Services, the IPAddress objects and the NodePort keys at
//! one store revision, decides ([`plan`], pure) and acts:
//! - a record whose Service is gone or no longer holds its address is
//!   released once it has been seen so on [`PASSES_BEFORE_RELEASE`]
//!   consecutive passes, so an allocation made just before its Service is
//!   written is not taken from it;
//! - a Service's address without a record gets one again, so it cannot be
//!   handed out twice;
//! - an address outside the range or held by two Services is reported as a
//!   warning Event on the Service (upstream's reasons). Services themselves
//!   are never changed.
//!
//! It runs once at start and then every [`INTERVAL`], until the server stops.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use skiff_store::{Error as StoreError, ListOptions, Revision};
use tokio::sync::{Mutex, oneshot};
use tracing::{debug, info, warn};

use super::{
    IP_FAMILY_LABEL, MANAGED_BY, MANAGED_BY_LABEL, NODE_PORT_PREFIX, NODE_PORTS, ServiceRange,
    ip_address_object, ip_addresses, node_ports,
};
use crate::Api;

/// How often a pass runs (upstream's repair controllers: 3 minutes).
pub(crate) const INTERVAL: Duration = Duration::from_secs(180);

/// On how many consecutive passes a record must be seen leaked before it is
/// released.
pub(crate) const PASSES_BEFORE_RELEASE: u32 = 2;

const IP_COMPONENT: &str = "ipallocator-repair-controller";
const PORT_COMPONENT: &str = "portallocator-repair-controller";

/// A Service as a pass sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceView {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub created: String,
    /// `spec.clusterIPs` (or `spec.clusterIP`), without `None` and empty.
    pub cluster_ips: Vec<String>,
    /// The NodePorts of its ports, each once.
    pub node_ports: Vec<u16>,
}

/// An IPAddress object as a pass sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IpRecord {
    pub ip: String,
    pub key: String,
    pub revision: Revision,
    /// `spec.parentRef` when it names a core Service: (namespace, name).
    pub service: Option<(String, String)>,
    /// Labelled as the allocator's own.
    pub managed: bool,
    /// Both of the allocator's labels, with the right values.
    pub labels_ok: bool,
}

/// A NodePort key as a pass sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PortRecord {
    pub port: u16,
    pub key: String,
    pub revision: Revision,
}

/// Who a Service is, for events and records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// A record seen leaked: its key and the revision it had (a record written
/// again since is a new one and starts its grace over).
pub(crate) type Suspect = (String, Revision);

/// Leaks seen and not released yet, with how many consecutive passes saw
/// each.
pub(crate) type Suspects = HashMap<Suspect, u32>;

/// What a pass does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Delete a leaked record, only if it still has the revision seen.
    Release { key: String, revision: Revision },
    /// Create the IPAddress object for a Service's ClusterIP.
    CreateIp { ip: String, service: ServiceRef },
    /// Replace an IPAddress object that points elsewhere (or lacks the
    /// allocator's labels) by one for this Service.
    ReplaceIp {
        key: String,
        revision: Revision,
        ip: String,
        service: ServiceRef,
    },
    /// Create the key for a Service's NodePort.
    CreatePort { port: u16 },
    /// A warning Event on the Service (and a log line).
    Warn {
        service: ServiceRef,
        component: &'static str,
        action: &'static str,
        reason: &'static str,
        message: String,
    },
}

/// The decisions of one pass.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub actions: Vec<Action>,
    /// Leaks seen this pass and not released yet: the next pass's input.
    pub suspects: Suspects,
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// The store revision the pass read at.
    pub revision: i64,
    /// Records seen leaked for the first time, kept for now (store keys).
    pub suspected: Vec<String>,
    /// Records released (store keys).
    pub released: Vec<String>,
    /// Records created or replaced for the Service holding them (store keys).
    pub recreated: Vec<String>,
    /// Warnings reported: (`namespace/name` of the Service, reason).
    pub warnings: Vec<(String, String)>,
}

impl ServiceView {
    /// Reads a stored Service.
    pub(crate) fn from_json(svc: &Value) -> ServiceView {
        let meta = &svc["metadata"];
        let spec = &svc["spec"];
        let mut cluster_ips: Vec<String> = match spec["clusterIPs"].as_array() {
            Some(ips) => ips
                .iter()
                .filter_map(|ip| ip.as_str().map(str::to_owned))
                .collect(),
            None => spec["clusterIP"]
                .as_str()
                .map(str::to_owned)
                .into_iter()
                .collect(),
        };
        cluster_ips.retain(|ip| !ip.is_empty() && ip != "None");
        let mut ports = node_ports(svc);
        ports.sort_unstable();
        ports.dedup();
        ServiceView {
            namespace: meta["namespace"].as_str().unwrap_or("").to_owned(),
            name: meta["name"].as_str().unwrap_or("").to_owned(),
            uid: meta["uid"].as_str().unwrap_or("").to_owned(),
            created: meta["creationTimestamp"].as_str().unwrap_or("").to_owned(),
            cluster_ips,
            node_ports: ports,
        }
    }

    fn reference(&self) -> ServiceRef {
        ServiceRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
        }
    }

    fn is(&self, namespace: &str, name: &str) -> bool {
        self.namespace == namespace && self.name == name
    }
}

impl IpRecord {
    /// Reads a stored IPAddress object.
    pub(crate) fn from_json(key: String, revision: Revision, obj: &Value) -> IpRecord {
        let parent = &obj["spec"]["parentRef"];
        let service = (parent["group"].as_str().unwrap_or("").is_empty()
            && parent["resource"] == "services")
            .then(|| {
                (
                    parent["namespace"].as_str().unwrap_or("").to_owned(),
                    parent["name"].as_str().unwrap_or("").to_owned(),
                )
            });
        let labels = &obj["metadata"]["labels"];
        let managed = labels[MANAGED_BY_LABEL] == MANAGED_BY;
        IpRecord {
            ip: obj["metadata"]["name"].as_str().unwrap_or("").to_owned(),
            key,
            revision,
            service,
            managed,
            labels_ok: managed && labels[IP_FAMILY_LABEL] == "IPv4",
        }
    }
}

/// Services in the order they claim a contested address: the oldest first,
/// then by namespace and name.
fn by_age(services: &mut [&ServiceView]) {
    services.sort_by(|a, b| {
        (&a.created, &a.namespace, &a.name).cmp(&(&b.created, &b.namespace, &b.name))
    });
}

fn warn_action(
    svc: &ServiceView,
    component: &'static str,
    action: &'static str,
    reason: &'static str,
    message: String,
) -> Action {
    Action::Warn {
        service: svc.reference(),
        component,
        action,
        reason,
        message,
    }
}

/// Decides one pass from what it read and from the leaks the previous pass
/// suspected.
pub(crate) fn plan(
    services: &[ServiceView],
    ips: &[IpRecord],
    ports: &[PortRecord],
    range: &ServiceRange,
    port_range: &RangeInclusive<u16>,
    suspected: &Suspects,
) -> Plan {
    let mut out = Plan::default();
    plan_cluster_ips(services, ips, range, suspected, &mut out);
    plan_node_ports(services, ports, port_range, suspected, &mut out);
    out
}

/// A record no Service holds: suspected, or released once seen on enough
/// consecutive passes.
fn leaked(suspected: &Suspects, key: &str, revision: Revision, out: &mut Plan) {
    let id = (key.to_owned(), revision);
    let seen = suspected.get(&id).copied().unwrap_or(0) + 1;
    if seen >= PASSES_BEFORE_RELEASE {
        out.actions.push(Action::Release {
            key: key.to_owned(),
            revision,
        });
    } else {
        out.suspects.insert(id, seen);
    }
}

fn plan_cluster_ips(
    services: &[ServiceView],
    ips: &[IpRecord],
    range: &ServiceRange,
    suspected: &Suspects,
    out: &mut Plan,
) {
    // ClusterIPs: who holds each address in the range.
    let mut ip_holders: BTreeMap<String, Vec<&ServiceView>> = BTreeMap::new();
    for svc in services {
        for ip in &svc.cluster_ips {
            match ip.parse::<Ipv4Addr>() {
                Err(_) => out.actions.push(warn_action(
                    svc,
                    IP_COMPONENT,
                    "ClusterIPValidation",
                    "ClusterIPNotValid",
                    format!("Cluster IP {ip} is not a valid IP; please recreate Service"),
                )),
                Ok(addr) if !range.contains(addr) => out.actions.push(warn_action(
                    svc,
                    IP_COMPONENT,
                    "ClusterIPAllocation",
                    "ClusterIPOutOfRange",
                    format!(
                        "Cluster IP [IPv4]: {addr} is not within any configured Service CIDR; please recreate service"
                    ),
                )),
                Ok(addr) => ip_holders.entry(addr.to_string()).or_default().push(svc),
            }
        }
    }
    let records: BTreeMap<&str, &IpRecord> = ips.iter().map(|r| (r.ip.as_str(), r)).collect();
    for (ip, holders) in &mut ip_holders {
        by_age(holders);
        let record = records.get(ip.as_str()).copied();
        // The record's Service keeps the address when it holds it.
        let owner = record
            .and_then(|r| r.service.as_ref())
            .and_then(|(ns, name)| holders.iter().find(|s| s.is(ns, name)))
            .copied()
            .unwrap_or(holders[0]);
        for other in holders.iter().filter(|s| !std::ptr::eq(**s, owner)) {
            out.actions.push(warn_action(
                other,
                IP_COMPONENT,
                "ClusterIPAllocation",
                "ClusterIPAlreadyAllocated",
                format!(
                    "Cluster IP [IPv4]:{ip} was assigned to multiple services; please recreate service"
                ),
            ));
        }
        match record {
            None => {
                out.actions.push(warn_action(
                    owner,
                    IP_COMPONENT,
                    "ClusterIPAllocation",
                    "ClusterIPNotAllocated",
                    format!("Cluster IP [IPv4]: {ip} is not allocated; repairing"),
                ));
                out.actions.push(Action::CreateIp {
                    ip: ip.clone(),
                    service: owner.reference(),
                });
            }
            Some(r) => {
                let points_here = r
                    .service
                    .as_ref()
                    .is_some_and(|(ns, name)| owner.is(ns, name));
                if !points_here {
                    out.actions.push(warn_action(
                        owner,
                        IP_COMPONENT,
                        "ClusterIPAllocation",
                        "ClusterIPNotAllocated",
                        format!(
                            "the ClusterIP [IPv4]: {ip} for Service {}/{} has a wrong reference; repairing",
                            owner.namespace, owner.name
                        ),
                    ));
                }
                if !points_here || !r.labels_ok {
                    out.actions.push(Action::ReplaceIp {
                        key: r.key.clone(),
                        revision: r.revision,
                        ip: ip.clone(),
                        service: owner.reference(),
                    });
                }
            }
        }
    }
    for r in ips {
        // Objects other allocators own are theirs to clean up; those of
        // addresses a Service holds in the range were settled above.
        if !r.managed || ip_holders.contains_key(&r.ip) {
            continue;
        }
        // A Service may still hold it outside the range (the range changed).
        let held = r.service.as_ref().is_some_and(|(ns, name)| {
            services
                .iter()
                .any(|s| s.is(ns, name) && s.cluster_ips.contains(&r.ip))
        });
        if !held {
            leaked(suspected, &r.key, r.revision, out);
        }
    }
}

fn plan_node_ports(
    services: &[ServiceView],
    ports: &[PortRecord],
    port_range: &RangeInclusive<u16>,
    suspected: &Suspects,
    out: &mut Plan,
) {
    let mut port_holders: BTreeMap<u16, Vec<&ServiceView>> = BTreeMap::new();
    for svc in services {
        for &port in &svc.node_ports {
            if port_range.contains(&port) {
                port_holders.entry(port).or_default().push(svc);
            } else {
                out.actions.push(warn_action(
                    svc,
                    PORT_COMPONENT,
                    "PortAllocation",
                    "PortOutOfRange",
                    format!(
                        "Port {port} is not within the port range {}-{}; please recreate service",
                        port_range.start(),
                        port_range.end()
                    ),
                ));
            }
        }
    }
    let port_records: BTreeMap<u16, &PortRecord> = ports.iter().map(|r| (r.port, r)).collect();
    for (port, holders) in &mut port_holders {
        by_age(holders);
        for other in &holders[1..] {
            out.actions.push(warn_action(
                other,
                PORT_COMPONENT,
                "PortAllocation",
                "PortAlreadyAllocated",
                format!("Port {port} was assigned to multiple services; please recreate service"),
            ));
        }
        if !port_records.contains_key(port) {
            out.actions.push(warn_action(
                holders[0],
                PORT_COMPONENT,
                "PortAllocation",
                "PortNotAllocated",
                format!("Port {port} is not allocated; repairing"),
            ));
            out.actions.push(Action::CreatePort { port: *port });
        }
    }
    for r in ports {
        let held = port_holders.contains_key(&r.port)
            || services.iter().any(|s| s.node_ports.contains(&r.port));
        if !held {
            leaked(suspected, &r.key, r.revision, out);
        }
    }
}

/// Runs passes; one at a time, sharing the leaks suspected so far.
pub(crate) struct Repairer {
    api: Arc<Api>,
    suspects: Mutex<Suspects>,
}

impl Repairer {
    pub(crate) fn new(api: Arc<Api>) -> Repairer {
        Repairer {
            api,
            suspects: Mutex::new(Suspects::new()),
        }
    }

    pub(crate) fn api(&self) -> &Arc<Api> {
        &self.api
    }

    /// One pass: read, decide, act.
    pub(crate) async fn run_once(&self) -> Result<RepairReport, StoreError> {
        let mut suspects = self.suspects.lock().await;
        let api = &self.api;
        let services_info = skiff_api_types::registry::lookup("", "v1", "services")
            .expect("services are a built-in kind");
        let listed = api
            .store
            .list(&services_info.key_prefix(None), ListOptions::default())
            .await?;
        let at = ListOptions {
            revision: listed.revision,
            ..Default::default()
        };
        let services: Vec<ServiceView> = listed
            .items
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
            .map(|svc| ServiceView::from_json(&svc))
            .collect();
        let ips: Vec<IpRecord> = api
            .store
            .list(&ip_addresses().key_prefix(None), at.clone())
            .await?
            .items
            .into_iter()
            .filter_map(|kv| {
                let obj = serde_json::from_slice::<Value>(&kv.value).ok()?;
                Some(IpRecord::from_json(kv.key, kv.mod_revision, &obj))
            })
            .collect();
        let ports: Vec<PortRecord> = api
            .store
            .list(NODE_PORT_PREFIX, at)
            .await?
            .items
            .into_iter()
            .filter_map(|kv| {
                let port = kv.key.strip_prefix(NODE_PORT_PREFIX)?.parse().ok()?;
                Some(PortRecord {
                    port,
                    key: kv.key,
                    revision: kv.mod_revision,
                })
            })
            .collect();

        let plan = plan(
            &services,
            &ips,
            &ports,
            &api.service_range,
            &NODE_PORTS,
            &suspects,
        );
        let mut report = RepairReport {
            revision: listed.revision,
            ..Default::default()
        };
        for ((key, _), seen) in &plan.suspects {
            if *seen == 1 {
                warn!(key = %key, "allocation may have leaked: flagging for clean up on the next pass");
            }
            report.suspected.push(key.clone());
        }
        report.suspected.sort();
        for action in plan.actions {
            self.apply(action, &mut report).await;
        }
        *suspects = plan.suspects;
        Ok(report)
    }

    async fn apply(&self, action: Action, report: &mut RepairReport) {
        let api = &self.api;
        match action {
            Action::Release { key, revision } => {
                match api.store.delete(&key, Some(revision)).await {
                    Ok(_) => {
                        warn!(key = %key, "allocation appears to have leaked: released");
                        report.released.push(key);
                    }
                    Err(e) => debug!(key = %key, error = %e, "not releasing a changed allocation"),
                }
            }
            Action::CreateIp { ip, service } => {
                if self.create_ip(&ip, &service).await {
                    report.recreated.push(ip_addresses().key(None, &ip));
                }
            }
            Action::ReplaceIp {
                key,
                revision,
                ip,
                service,
            } => match api.store.delete(&key, Some(revision)).await {
                Ok(_) => {
                    if self.create_ip(&ip, &service).await {
                        report.recreated.push(key);
                    }
                }
                Err(e) => debug!(key = %key, error = %e, "not replacing a changed IPAddress"),
            },
            Action::CreatePort { port } => {
                let key = format!("{NODE_PORT_PREFIX}{port}");
                match api.store.create(&key, Bytes::from_static(b"{}")).await {
                    Ok(_) => {
                        info!(port, "recreated a Service's NodePort allocation");
                        report.recreated.push(key);
                    }
                    Err(e) => debug!(port, error = %e, "not recreating a NodePort allocation"),
                }
            }
            Action::Warn {
                service,
                component,
                action,
                reason,
                message,
            } => {
                warn!(
                    object.ref = %format!("{}/{}", service.namespace, service.name),
                    reason,
                    "{message}"
                );
                self.record_event(&service, component, action, reason, &message)
                    .await;
                report.warnings.push((
                    format!("{}/{}", service.namespace, service.name),
                    reason.to_owned(),
                ));
            }
        }
    }

    /// Creates the IPAddress object of a Service's ClusterIP; false if it
    /// could not (taken meanwhile: the next pass looks again).
    async fn create_ip(&self, ip: &str, service: &ServiceRef) -> bool {
        let object = ip_address_object(ip, &service.namespace, &service.name);
        match crate::rest::create_object(
            &self.api,
            None,
            ip_addresses(),
            object,
            Some("skiff-apiserver"),
            false,
        )
        .await
        {
            Ok(_) => {
                info!(ip, object.ref = %format!("{}/{}", service.namespace, service.name),
                      "recreated a Service's IPAddress");
                true
            }
            Err(e) => {
                debug!(ip, reason = %e.reason, "not recreating an IPAddress");
                false
            }
        }
    }

    /// Records a warning Event on a Service; the same warning again bumps
    /// the existing Event's count, as upstream's event recorder does.
    async fn record_event(
        &self,
        service: &ServiceRef,
        component: &str,
        action: &str,
        reason: &str,
        message: &str,
    ) {
        let api = &self.api;
        let events = skiff_api_types::registry::lookup("", "v1", "events")
            .expect("events are a built-in kind");
        let now = crate::rest::now_rfc3339();
        let same = |e: &Value| {
            e["involvedObject"]["uid"] == service.uid.as_str()
                && e["reason"] == reason
                && e["message"] == message
                && e["source"]["component"] == component
        };
        let existing = api
            .cache
            .list(events, &events.key_prefix(Some(&service.namespace)), |o| {
                serde_json::from_slice::<Value>(&o.raw).is_ok_and(|e| same(&e))
            })
            .objects
            .into_iter()
            .next();
        if let Some(cached) = existing
            && let Ok(mut event) = serde_json::from_slice::<Value>(&cached.raw)
        {
            event["count"] = json!(event["count"].as_i64().unwrap_or(1) + 1);
            event["lastTimestamp"] = json!(now);
            if let Some(meta) = event["metadata"].as_object_mut() {
                meta.remove("resourceVersion");
            }
            let bytes = Bytes::from(serde_json::to_vec(&event).expect("serializes"));
            match api
                .store
                .update(&cached.key, bytes, Some(cached.revision))
                .await
            {
                Ok(_) => return,
                Err(e) => debug!(key = %cached.key, error = %e, "not updating an event"),
            }
        }
        let name = format!(
            "{}.{:x}",
            service.name,
            jiff::Timestamp::now().as_nanosecond()
        );
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": service.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Service",
                "namespace": service.namespace,
                "name": service.name,
                "uid": service.uid,
            },
            "reason": reason,
            "message": message,
            "type": "Warning",
            "source": {"component": component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "action": action,
            "reportingComponent": component,
        });
        if let Err(e) =
            crate::rest::create_object(api, None, events, event, Some(component), false).await
        {
            debug!(reason = %e.reason, "not recording a repair event");
        }
    }
}

/// The running loop: stops (after the pass under way) when told to.
pub(crate) struct Loop {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Loop {
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Runs a pass every `interval` (the first one `interval` from now).
pub(crate) fn spawn(repairer: Arc<Repairer>, interval: Duration) -> Loop {
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = tokio::time::sleep(interval) => {}
            }
            if let Err(e) = repairer.run_once().await {
                warn!(error = %e, "repairing Service allocations failed; retrying next pass");
            }
        }
    });
    Loop { stop, task }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, created: &str, ips: &[&str], ports: &[u16]) -> ServiceView {
        ServiceView {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            created: created.into(),
            cluster_ips: ips.iter().map(|s| s.to_string()).collect(),
            node_ports: ports.to_vec(),
        }
    }

    fn ip(addr: &str, rev: Revision, parent: Option<&str>) -> IpRecord {
        IpRecord {
            ip: addr.into(),
            key: format!("/registry/ipaddresses/{addr}"),
            revision: rev,
            service: parent.map(|p| ("default".to_owned(), p.to_owned())),
            managed: true,
            labels_ok: true,
        }
    }

    fn port(p: u16, rev: Revision) -> PortRecord {
        PortRecord {
            port: p,
            key: format!("{NODE_PORT_PREFIX}{p}"),
            revision: rev,
        }
    }

    fn range() -> ServiceRange {
        ServiceRange::parse("10.0.0.0/24").unwrap()
    }

    fn run(
        services: &[ServiceView],
        ips: &[IpRecord],
        ports: &[PortRecord],
        suspected: &Suspects,
    ) -> Plan {
        plan(services, ips, ports, &range(), &NODE_PORTS, suspected)
    }

    fn reasons(plan: &Plan) -> Vec<(String, &'static str)> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Warn {
                    service, reason, ..
                } => Some((service.name.clone(), *reason)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_consistent_cluster_needs_nothing() {
        let services = [svc("a", "t1", &["10.0.0.5"], &[30001, 30002])];
        let p = run(
            &services,
            &[ip("10.0.0.5", 3, Some("a"))],
            &[port(30001, 4), port(30002, 4)],
            &Suspects::new(),
        );
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn a_leak_is_suspected_first_and_released_on_the_next_pass() {
        let ips = [ip("10.0.0.9", 7, Some("gone"))];
        let ports = [port(30500, 8)];
        let first = run(&[], &ips, &ports, &Suspects::new());
        assert!(first.actions.is_empty(), "nothing released on first sight");
        assert_eq!(first.suspects.len(), 2);

        let second = run(&[], &ips, &ports, &first.suspects);
        assert_eq!(
            second.actions,
            vec![
                Action::Release {
                    key: "/registry/ipaddresses/10.0.0.9".into(),
                    revision: 7
                },
                Action::Release {
                    key: format!("{NODE_PORT_PREFIX}30500"),
                    revision: 8
                },
            ]
        );
        assert!(second.suspects.is_empty());
        assert_eq!(PASSES_BEFORE_RELEASE, 2);
    }

    #[test]
    fn a_suspect_whose_service_appears_is_forgotten() {
        let ips = [ip("10.0.0.9", 7, Some("late"))];
        let ports = [port(30500, 8)];
        let first = run(&[], &ips, &ports, &Suspects::new());
        let services = [svc("late", "t1", &["10.0.0.9"], &[30500])];
        let second = run(&services, &ips, &ports, &first.suspects);
        assert_eq!(second, Plan::default());
        // Leaked again later: the grace starts over.
        let third = run(&[], &ips, &ports, &second.suspects);
        assert!(third.actions.is_empty());
    }

    #[test]
    fn a_record_written_again_starts_its_grace_over() {
        let first = run(&[], &[ip("10.0.0.9", 7, None)], &[], &Suspects::new());
        let second = run(&[], &[ip("10.0.0.9", 12, None)], &[], &first.suspects);
        assert!(second.actions.is_empty());
        assert_eq!(
            second.suspects,
            Suspects::from([(("/registry/ipaddresses/10.0.0.9".to_owned(), 12), 1)])
        );
    }

    #[test]
    fn a_record_the_service_no_longer_holds_leaks() {
        let services = [svc("a", "t1", &["10.0.0.5"], &[30001])];
        let ips = [ip("10.0.0.5", 3, Some("a")), ip("10.0.0.6", 4, Some("a"))];
        let ports = [port(30001, 5), port(30002, 6)];
        let first = run(&services, &ips, &ports, &Suspects::new());
        assert!(first.actions.is_empty());
        assert_eq!(
            first.suspects,
            Suspects::from([
                (("/registry/ipaddresses/10.0.0.6".to_owned(), 4), 1),
                ((format!("{NODE_PORT_PREFIX}30002"), 6), 1),
            ])
        );
    }

    #[test]
    fn another_allocators_ipaddress_is_left_alone() {
        let mut foreign = ip("10.0.0.9", 7, Some("gone"));
        foreign.managed = false;
        foreign.labels_ok = false;
        let ips = [foreign];
        let first = run(&[], &ips, &[], &Suspects::new());
        let second = run(&[], &ips, &[], &first.suspects);
        assert_eq!(second, Plan::default());
    }

    #[test]
    fn a_missing_record_is_recreated_with_a_warning() {
        let services = [svc("a", "t1", &["10.0.0.5"], &[30001])];
        let p = run(&services, &[], &[], &Suspects::new());
        assert_eq!(
            reasons(&p),
            vec![
                ("a".into(), "ClusterIPNotAllocated"),
                ("a".into(), "PortNotAllocated")
            ]
        );
        assert!(p.actions.contains(&Action::CreateIp {
            ip: "10.0.0.5".into(),
            service: services[0].reference()
        }));
        assert!(p.actions.contains(&Action::CreatePort { port: 30001 }));
    }

    #[test]
    fn a_record_pointing_at_a_missing_service_is_given_to_the_holder() {
        let services = [svc("a", "t1", &["10.0.0.5"], &[])];
        let p = run(
            &services,
            &[ip("10.0.0.5", 3, Some("b"))],
            &[],
            &Suspects::new(),
        );
        assert_eq!(reasons(&p), vec![("a".into(), "ClusterIPNotAllocated")]);
        assert!(p.actions.contains(&Action::ReplaceIp {
            key: "/registry/ipaddresses/10.0.0.5".into(),
            revision: 3,
            ip: "10.0.0.5".into(),
            service: services[0].reference()
        }));
        assert!(p.suspects.is_empty());
    }

    #[test]
    fn a_record_without_the_allocators_labels_is_replaced_silently() {
        let services = [svc("a", "t1", &["10.0.0.5"], &[])];
        let mut r = ip("10.0.0.5", 3, Some("a"));
        r.labels_ok = false;
        let p = run(&services, &[r], &[], &Suspects::new());
        assert!(reasons(&p).is_empty());
        assert!(matches!(p.actions[..], [Action::ReplaceIp { .. }]));
    }

    #[test]
    fn a_shared_clusterip_warns_the_service_its_record_does_not_name() {
        let services = [
            svc("old", "t1", &["10.0.0.5"], &[]),
            svc("new", "t2", &["10.0.0.5"], &[]),
        ];
        let p = run(
            &services,
            &[ip("10.0.0.5", 3, Some("new"))],
            &[],
            &Suspects::new(),
        );
        assert_eq!(p.actions.len(), 1);
        assert_eq!(
            reasons(&p),
            vec![("old".into(), "ClusterIPAlreadyAllocated")]
        );
        // With no record, the oldest keeps it.
        let p = run(&services, &[], &[], &Suspects::new());
        assert_eq!(
            reasons(&p),
            vec![
                ("new".into(), "ClusterIPAlreadyAllocated"),
                ("old".into(), "ClusterIPNotAllocated")
            ]
        );
    }

    #[test]
    fn a_shared_nodeport_warns_all_but_the_oldest() {
        let services = [svc("b", "t2", &[], &[30001]), svc("a", "t1", &[], &[30001])];
        let p = run(&services, &[], &[port(30001, 3)], &Suspects::new());
        assert_eq!(reasons(&p), vec![("b".into(), "PortAlreadyAllocated")]);
        assert_eq!(p.actions.len(), 1);
    }

    #[test]
    fn addresses_outside_the_ranges_are_reported_and_their_records_kept() {
        let services = [svc("a", "t1", &["10.9.0.5"], &[80])];
        let ips = [ip("10.9.0.5", 3, Some("a"))];
        let ports = [port(80, 4)];
        let first = run(&services, &ips, &ports, &Suspects::new());
        assert_eq!(
            reasons(&first),
            vec![
                ("a".into(), "ClusterIPOutOfRange"),
                ("a".into(), "PortOutOfRange")
            ]
        );
        assert!(first.suspects.is_empty(), "still held: not leaked");
        assert_eq!(first.actions.len(), 2, "warnings only");
    }

    #[test]
    fn an_invalid_clusterip_is_reported() {
        let services = [svc("a", "t1", &["banana"], &[])];
        let p = run(&services, &[], &[], &Suspects::new());
        assert_eq!(reasons(&p), vec![("a".into(), "ClusterIPNotValid")]);
    }

    #[test]
    fn a_service_reads_its_addresses_from_its_spec() {
        let v = ServiceView::from_json(&json!({
            "metadata": {"namespace": "ns", "name": "web", "uid": "u1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"],
                     "ports": [{"port": 53, "protocol": "TCP", "nodePort": 30053},
                               {"port": 53, "protocol": "UDP", "nodePort": 30053},
                               {"port": 80, "nodePort": 30080}]}
        }));
        assert_eq!(v.cluster_ips, vec!["10.0.0.7"]);
        assert_eq!(v.node_ports, vec![30053, 30080]);
        let headless = ServiceView::from_json(&json!({
            "metadata": {"namespace": "ns", "name": "h"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"]}
        }));
        assert!(headless.cluster_ips.is_empty());
        let r = IpRecord::from_json(
            "/registry/ipaddresses/10.0.0.7".into(),
            9,
            &ip_address_object("10.0.0.7", "ns", "web"),
        );
        assert_eq!(r.service, Some(("ns".to_owned(), "web".to_owned())));
        assert!(r.managed && r.labels_ok);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        // Small pools, so that sharing, loss and leaks all happen often:
        // addresses 10.0.0.1-6 in the range and 10.9.0.1 outside it,
        // ports 30000-30003 in the range and 80 outside it.
        fn pool_ip(i: u8) -> String {
            if i == 6 {
                "10.9.0.1".into()
            } else {
                format!("10.0.0.{}", i + 1)
            }
        }

        fn pool_port(i: u8) -> u16 {
            if i == 4 { 80 } else { 30000 + u16::from(i) }
        }

        fn services() -> impl Strategy<Value = Vec<ServiceView>> {
            proptest::collection::vec(
                (
                    0u8..3,
                    proptest::option::of(0u8..7),
                    proptest::collection::btree_set(0u8..5, 0..3),
                ),
                0..6,
            )
            .prop_map(|specs| {
                specs
                    .into_iter()
                    .enumerate()
                    .map(|(i, (age, ip, ports))| {
                        let ip = ip.map(pool_ip);
                        let ports: Vec<u16> = ports.into_iter().map(pool_port).collect();
                        let mut s = svc(
                            &format!("s{i}"),
                            &format!("t{age}"),
                            &ip.iter().map(String::as_str).collect::<Vec<_>>(),
                            &ports,
                        );
                        s.node_ports.sort_unstable();
                        s
                    })
                    .collect()
            })
        }

        fn records() -> impl Strategy<Value = (Vec<IpRecord>, Vec<PortRecord>)> {
            (
                proptest::collection::btree_map(
                    0u8..7,
                    (proptest::option::of(0usize..7), any::<bool>(), 1i64..4),
                    0..7,
                ),
                proptest::collection::btree_map(0u8..5, 1i64..4, 0..5),
            )
                .prop_map(|(ips, ports)| {
                    let ips = ips
                        .into_iter()
                        .map(|(i, (parent, managed, rev))| {
                            let parent = parent.map(|p| format!("s{p}"));
                            let mut r = ip(&pool_ip(i), rev, parent.as_deref());
                            r.managed = managed;
                            r.labels_ok = managed;
                            r
                        })
                        .collect();
                    let ports = ports
                        .into_iter()
                        .map(|(i, rev)| port(pool_port(i), rev))
                        .collect();
                    (ips, ports)
                })
        }

        /// Whether a Service holds what the record allocates: any Service
        /// in the range; outside it (an old range), the one it names.
        fn held(
            services: &[ServiceView],
            key: &str,
            ips: &[IpRecord],
            ports: &[PortRecord],
        ) -> bool {
            if let Some(r) = ips.iter().find(|r| r.key == key) {
                let in_range = range().contains(r.ip.parse().unwrap());
                return services.iter().any(|s| {
                    s.cluster_ips.contains(&r.ip)
                        && (in_range || r.service.as_ref().is_some_and(|(ns, n)| s.is(ns, n)))
                });
            }
            let r = ports
                .iter()
                .find(|r| r.key == key)
                .expect("a listed record");
            services.iter().any(|s| s.node_ports.contains(&r.port))
        }

        proptest! {
            #[test]
            fn only_records_no_service_holds_are_released_and_only_on_a_later_pass(
                services in services(),
                (ips, ports) in records(),
            ) {
                let first = run(&services, &ips, &ports, &Suspects::new());
                prop_assert!(
                    !first.actions.iter().any(|a| matches!(a, Action::Release { .. })),
                    "nothing is released on first sight"
                );
                for (key, _) in first.suspects.keys() {
                    prop_assert!(!held(&services, key, &ips, &ports), "{key} is held");
                }
                // Seen again unchanged: every suspect goes, nothing else does.
                let second = run(&services, &ips, &ports, &first.suspects);
                let mut released: Vec<&String> = second
                    .actions
                    .iter()
                    .filter_map(|a| match a {
                        Action::Release { key, .. } => Some(key),
                        _ => None,
                    })
                    .collect();
                released.sort();
                let mut suspected: Vec<&String> = first.suspects.keys().map(|(k, _)| k).collect();
                suspected.sort();
                prop_assert_eq!(released, suspected);
                prop_assert!(second.suspects.is_empty());
            }

            #[test]
            fn every_held_address_in_range_ends_with_one_record_and_sharers_are_warned(
                services in services(),
                (ips, ports) in records(),
            ) {
                let p = run(&services, &ips, &ports, &Suspects::new());
                let range = range();
                let mut in_range_ips: BTreeMap<String, usize> = BTreeMap::new();
                let mut in_range_ports: BTreeMap<u16, usize> = BTreeMap::new();
                for s in &services {
                    for ip in &s.cluster_ips {
                        if range.contains(ip.parse().unwrap()) {
                            *in_range_ips.entry(ip.clone()).or_default() += 1;
                        }
                    }
                    for port in &s.node_ports {
                        if NODE_PORTS.contains(port) {
                            *in_range_ports.entry(*port).or_default() += 1;
                        }
                    }
                }
                for (ip, holders) in &in_range_ips {
                    let fixes = p.actions.iter().filter(|a| matches!(a,
                        Action::CreateIp { ip: i, .. } | Action::ReplaceIp { ip: i, .. } if i == ip)).count();
                    let has_record = ips.iter().any(|r| &r.ip == ip);
                    prop_assert!(fixes <= 1);
                    prop_assert!(has_record || fixes == 1, "{ip} gets a record");
                    let shared = p.actions.iter().filter(|a| matches!(a,
                        Action::Warn { reason: "ClusterIPAlreadyAllocated", message, .. } if message.contains(&format!(":{ip} ")))).count();
                    prop_assert_eq!(shared, holders - 1);
                }
                for (port, holders) in &in_range_ports {
                    let created = p.actions.iter().filter(|a| matches!(a, Action::CreatePort { port: q } if q == port)).count();
                    let has_record = ports.iter().any(|r| r.port == *port);
                    prop_assert_eq!(created, usize::from(!has_record));
                    let shared = p.actions.iter().filter(|a| matches!(a,
                        Action::Warn { reason: "PortAlreadyAllocated", message, .. } if message.starts_with(&format!("Port {port} ")))).count();
                    prop_assert_eq!(shared, holders - 1);
                }
                let out_of_range = services.iter().map(|s| {
                    s.cluster_ips.iter().filter(|ip| !range.contains(ip.parse().unwrap())).count()
                        + s.node_ports.iter().filter(|p| !NODE_PORTS.contains(p)).count()
                }).sum::<usize>();
                let warned = p.actions.iter().filter(|a| matches!(a,
                    Action::Warn { reason: "ClusterIPOutOfRange" | "PortOutOfRange", .. })).count();
                prop_assert_eq!(warned, out_of_range);
            }
        }
    }
}
