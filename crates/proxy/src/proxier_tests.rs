//! The sync cycle against the fake iptables: full and partial syncs,
//! repair, restart, failure, conntrack and latency.

use super::*;
use crate::conntrack::FakeConntrack;
use crate::iptables::FakeIptables;
use serde_json::json;

fn service(name: &str, ip: &str, protocol: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": name},
        "spec": {"clusterIP": ip, "ports": [{"name": "p", "port": 80, "protocol": protocol}]}
    }))
    .unwrap()
}

fn slice(svc: &str, ips: &[&str], protocol: &str, trigger: Option<&str>) -> EndpointSlice {
    let mut annotations = serde_json::Map::new();
    if let Some(t) = trigger {
        annotations.insert(TRIGGER_TIME_ANNOTATION.into(), json!(t));
    }
    serde_json::from_value(json!({
        "metadata": {
            "namespace": "default", "name": format!("{svc}-abc"),
            "labels": {"kubernetes.io/service-name": svc},
            "annotations": annotations,
        },
        "addressType": "IPv4",
        "ports": [{"name": "p", "port": 8080, "protocol": protocol}],
        "endpoints": ips.iter().map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

struct Harness {
    fake: Arc<FakeIptables>,
    conntrack: Arc<FakeConntrack>,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            fake: Arc::new(FakeIptables::new()),
            conntrack: Arc::new(FakeConntrack::default()),
        }
    }

    fn proxier(&self) -> Proxier {
        Proxier::new(
            ProxierConfig {
                hostname: "node-1".into(),
                settings: RenderSettings {
                    cluster_cidr: Some("10.244.0.0/16".into()),
                    ..RenderSettings::default()
                },
                node_port_addresses: NodePortAddresses::All,
                tool_prefix: Vec::new(),
            },
            self.fake.clone(),
            self.conntrack.clone(),
            Arc::new(Metrics::new()),
        )
    }
}

fn svc_chain(name: &str, protocol: &str) -> String {
    format!(
        "KUBE-SVC-{}",
        crate::names::port_proto_hash(&format!("default/{name}:p"), protocol)
    )
}

fn sep_chain(name: &str, protocol: &str, ep: &str) -> String {
    crate::names::endpoint_chain(&format!("default/{name}:p"), protocol, ep)
}

#[test]
fn the_first_sync_is_full_and_later_ones_rewrite_only_what_changed() {
    let h = Harness::new();
    let p = h.proxier();
    p.service_updated(&service("a", "10.96.0.1", "TCP"));
    p.service_updated(&service("b", "10.96.0.2", "TCP"));
    p.slice_updated(&slice("a", &["10.244.1.1"], "TCP", None));
    p.slice_updated(&slice("b", &["10.244.1.2"], "TCP", None));
    let first = p.sync(SyncMode::Partial).unwrap();
    assert!(first.full);
    assert_eq!(h.fake.saves(), 1);
    assert_eq!(
        h.fake.chain("nat", "PREROUTING").unwrap(),
        vec!["-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"]
    );

    p.slice_updated(&slice("b", &["10.244.1.3"], "TCP", None));
    let second = p.sync(SyncMode::Partial).unwrap();
    assert!(!second.full);
    assert_eq!(h.fake.saves(), 1, "a partial sync does not read the tables");
    let batch = h.fake.restores().pop().unwrap();
    assert!(!batch.contains(&format!(":{}", svc_chain("a", "tcp"))));
    assert!(batch.contains(&format!(":{}", svc_chain("b", "tcp"))));
    assert!(batch.contains(&format!("-X {}", sep_chain("b", "tcp", "10.244.1.2:8080"))));
    assert_eq!(h.fake.restores().len(), 2, "one restore per sync");
    assert!(
        h.fake
            .chain("nat", &sep_chain("b", "tcp", "10.244.1.2:8080"))
            .is_none()
    );
    assert!(
        h.fake
            .chain("nat", &sep_chain("b", "tcp", "10.244.1.3:8080"))
            .is_some()
    );
    assert_eq!(
        h.fake.chain("nat", &svc_chain("a", "tcp")).unwrap().len(),
        2
    );
}

#[test]
fn a_full_resync_repairs_flushed_rules() {
    let h = Harness::new();
    let p = h.proxier();
    p.service_updated(&service("a", "10.96.0.1", "TCP"));
    p.slice_updated(&slice("a", &["10.244.1.1"], "TCP", None));
    p.sync(SyncMode::Partial).unwrap();
    let before = h.fake.save().unwrap();
    h.fake.flush_everything();
    assert_eq!(p.sync(SyncMode::Repair).unwrap().mode, SyncMode::Repair);
    assert_eq!(h.fake.save().unwrap(), before);
}

#[test]
fn the_periodic_resync_rewrites_only_the_services_whose_chains_were_damaged() {
    let h = Harness::new();
    let p = h.proxier();
    for name in ["a", "b"] {
        p.service_updated(&service(
            name,
            if name == "a" {
                "10.96.0.1"
            } else {
                "10.96.0.2"
            },
            "TCP",
        ));
    }
    p.slice_updated(&slice("a", &["10.244.1.1"], "TCP", None));
    p.slice_updated(&slice("b", &["10.244.1.2"], "TCP", None));
    p.sync(SyncMode::Partial).unwrap();
    let before = h.fake.save().unwrap();
    let sep = sep_chain("b", "tcp", "10.244.1.2:8080");
    h.fake
        .restore(&format!("*nat\n:{sep} - [0:0]\nCOMMIT\n"))
        .unwrap();
    p.sync(SyncMode::Repair).unwrap();
    let batch = h.fake.restores().pop().unwrap();
    assert!(batch.contains(&format!(":{sep}")));
    assert!(
        !batch.contains(&format!(":{}", svc_chain("a", "tcp"))),
        "a was intact"
    );
    assert_eq!(h.fake.save().unwrap(), before);
}

#[test]
fn a_restarted_proxy_adds_no_duplicate_jumps_and_removes_chains_of_deleted_services() {
    let h = Harness::new();
    let p = h.proxier();
    p.service_updated(&service("a", "10.96.0.1", "TCP"));
    p.service_updated(&service("gone", "10.96.0.9", "TCP"));
    p.slice_updated(&slice("a", &["10.244.1.1"], "TCP", None));
    p.slice_updated(&slice("gone", &["10.244.1.9"], "TCP", None));
    p.sync(SyncMode::Partial).unwrap();
    drop(p);

    let p = h.proxier();
    p.services_replaced(vec![service("a", "10.96.0.1", "TCP")]);
    p.slices_replaced(vec![slice("a", &["10.244.1.1"], "TCP", None)]);
    assert!(p.sync(SyncMode::Partial).unwrap().full);
    for (table, chain) in [
        ("nat", "PREROUTING"),
        ("nat", "OUTPUT"),
        ("filter", "INPUT"),
    ] {
        let rules = h.fake.chain(table, chain).unwrap();
        let mut unique = rules.clone();
        unique.dedup();
        assert_eq!(rules, unique, "{table}/{chain}");
    }
    let chains = h.fake.chains("nat");
    assert!(!chains.contains(&svc_chain("gone", "tcp")));
    assert!(!chains.contains(&sep_chain("gone", "tcp", "10.244.1.9:8080")));
    assert!(chains.contains(&svc_chain("a", "tcp")));
}

#[test]
fn a_failed_restore_keeps_the_changes_and_makes_the_next_sync_full() {
    let h = Harness::new();
    let p = h.proxier();
    p.service_updated(&service("a", "10.96.0.1", "TCP"));
    p.slice_updated(&slice("a", &["10.244.1.1"], "TCP", None));
    p.sync(SyncMode::Partial).unwrap();
    p.slice_updated(&slice(
        "a",
        &["10.244.1.2"],
        "TCP",
        Some("2026-01-01T00:00:00Z"),
    ));
    h.fake.fail_next_restore();
    assert!(p.sync(SyncMode::Partial).is_err());
    assert!(p.pending());
    let report = p.sync(SyncMode::Partial).unwrap();
    assert!(report.full);
    assert_eq!(report.programming_latencies.len(), 1, "the trigger is kept");
    assert!(
        h.fake
            .chain("nat", &sep_chain("a", "tcp", "10.244.1.2:8080"))
            .is_some()
    );
}

#[test]
fn udp_conntrack_entries_of_removed_endpoints_are_deleted() {
    let h = Harness::new();
    let p = h.proxier();
    p.service_updated(&service("dns", "10.96.0.10", "UDP"));
    p.sync(SyncMode::Partial).unwrap();
    // From no endpoints to one: flows stuck on the REJECT are cleared.
    p.slice_updated(&slice("dns", &["10.244.1.1", "10.244.1.2"], "UDP", None));
    p.sync(SyncMode::Partial).unwrap();
    assert_eq!(
        *h.conntrack.deleted.lock().unwrap(),
        vec![vec!["--orig-dst", "10.96.0.10", "-p", "udp"]]
    );
    h.conntrack.deleted.lock().unwrap().clear();
    p.slice_updated(&slice("dns", &["10.244.1.1"], "UDP", None));
    p.sync(SyncMode::Partial).unwrap();
    assert_eq!(
        *h.conntrack.deleted.lock().unwrap(),
        vec![vec![
            "--orig-dst",
            "10.96.0.10",
            "--dst-nat",
            "10.244.1.2",
            "-p",
            "udp"
        ]]
    );
    // TCP services never need it.
    h.conntrack.deleted.lock().unwrap().clear();
    p.service_updated(&service("web", "10.96.0.11", "TCP"));
    p.slice_updated(&slice("web", &["10.244.1.5"], "TCP", None));
    p.sync(SyncMode::Partial).unwrap();
    p.slice_updated(&slice("web", &[], "TCP", None));
    p.sync(SyncMode::Partial).unwrap();
    assert!(h.conntrack.deleted.lock().unwrap().is_empty());
}

#[test]
fn network_programming_latency_runs_from_the_trigger_time_to_the_restore() {
    let h = Harness::new();
    let p = h.proxier();
    p.service_updated(&service("a", "10.96.0.1", "TCP"));
    let trigger = Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(2);
    p.slice_updated(&slice(
        "a",
        &["10.244.1.1"],
        "TCP",
        Some(&trigger.to_string()),
    ));
    let report = p.sync(SyncMode::Partial).unwrap();
    assert_eq!(report.programming_latencies.len(), 1);
    let l = report.programming_latencies[0];
    assert!(
        l >= Duration::from_secs(2) && l < Duration::from_secs(10),
        "{l:?}"
    );
    assert!(
        p.sync(SyncMode::Partial)
            .unwrap()
            .programming_latencies
            .is_empty()
    );
}

#[test]
fn cleanup_removes_every_rule_and_chain_the_proxy_made() {
    let h = Harness::new();
    let p = h.proxier();
    p.service_updated(&service("a", "10.96.0.1", "TCP"));
    p.slice_updated(&slice("a", &["10.244.1.1"], "TCP", None));
    p.sync(SyncMode::Partial).unwrap();
    // A rule of someone else's survives.
    h.fake
        .restore("*nat\n:OTHER - [0:0]\n-A POSTROUTING -j OTHER\nCOMMIT\n")
        .unwrap();
    cleanup(h.fake.as_ref()).unwrap();
    assert_eq!(
        h.fake.chains("nat"),
        ["INPUT", "OTHER", "OUTPUT", "POSTROUTING", "PREROUTING"]
    );
    assert_eq!(h.fake.chains("filter"), ["FORWARD", "INPUT", "OUTPUT"]);
    assert_eq!(
        h.fake.chain("nat", "POSTROUTING").unwrap(),
        vec!["-j OTHER"]
    );
    assert!(h.fake.chain("filter", "INPUT").unwrap().is_empty());
    // Nothing left: a second cleanup does nothing.
    let restores = h.fake.restores().len();
    cleanup(h.fake.as_ref()).unwrap();
    assert_eq!(h.fake.restores().len(), restores);
}

#[test]
fn services_the_proxy_ignores_get_no_rules() {
    let h = Harness::new();
    let p = h.proxier();
    let headless: Service = serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "h"},
        "spec": {"clusterIP": "None", "ports": [{"port": 80}]}
    }))
    .unwrap();
    let external: Service = serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "x"},
        "spec": {"type": "ExternalName", "externalName": "example.com"}
    }))
    .unwrap();
    p.service_updated(&headless);
    p.service_updated(&external);
    p.sync(SyncMode::Partial).unwrap();
    assert!(h.fake.chain("nat", "KUBE-SERVICES").unwrap().len() == 1);
    assert!(h.fake.chain("filter", "KUBE-SERVICES").unwrap().is_empty());
}
