//! The Service ClusterIP and NodePort repair pass against a real in-process
//! API server, on both storage backends: leaked allocations are released on
//! the second pass that sees them, lost ones are recreated, and doubly held
//! addresses are reported as Events on the Service.

use std::time::Duration;

use bytes::Bytes;
use k8s_openapi::api::core::v1::{Event, Service};
use k8s_openapi::api::networking::v1::IPAddress;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;

use crate::common::{Cluster, embedded, etcd};

const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";

impl Cluster {
    async fn pass(&self) -> skiff_apiserver::RepairReport {
        self.server()
            .repair_service_allocations()
            .await
            .expect("a repair pass reads the store")
    }

    async fn port_key_exists(&self, port: u16) -> bool {
        self.server()
            .store()
            .get(&format!("{PORT_PREFIX}{port}"))
            .await
            .unwrap()
            .is_some()
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn ip_addresses(&self) -> Api<IPAddress> {
        Api::all(self.client.clone())
    }
}

/// A NodePort Service asking for `ip` and `node_port` (either may be left
/// to the allocator).
fn node_port_service(name: &str, ip: Option<&str>, node_port: Option<u16>) -> Service {
    let mut port = json!({"port": 80, "protocol": "TCP", "targetPort": 8080});
    if let Some(p) = node_port {
        port["nodePort"] = json!(p);
    }
    let mut spec = json!({"type": "NodePort", "selector": {"app": name}, "ports": [port]});
    if let Some(ip) = ip {
        spec["clusterIP"] = json!(ip);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn cluster_ip(svc: &Service) -> String {
    svc.spec.as_ref().unwrap().cluster_ip.clone().unwrap()
}

fn node_port(svc: &Service) -> u16 {
    svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
        .node_port
        .unwrap() as u16
}

fn parent_of(ip: &IPAddress) -> (String, String) {
    let parent = &ip.spec.as_ref().unwrap().parent_ref;
    (
        parent.namespace.clone().unwrap_or_default(),
        parent.name.clone(),
    )
}

/// Waits (a few seconds at most) for a warning Event with `reason` on the
/// Service `name`.
async fn wait_for_event(c: &Cluster, name: &str, reason: &str) -> Event {
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    for _ in 0..50 {
        let found = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| {
                e.involved_object.name.as_deref() == Some(name)
                    && e.involved_object.kind.as_deref() == Some("Service")
                    && e.reason.as_deref() == Some(reason)
            });
        if let Some(event) = found {
            return event;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {reason} event on Service {name}");
}

mod suite {
    use super::*;

    pub async fn leaked_allocations_are_released_on_the_second_pass_not_the_first(c: &Cluster) {
        let kept = c
            .services()
            .create(
                &PostParams::default(),
                &node_port_service("kept", None, None),
            )
            .await
            .unwrap();
        let (kept_ip, kept_port) = (cluster_ip(&kept), node_port(&kept));

        // An IPAddress and a NodePort whose Service was never written.
        let leaked: IPAddress = serde_json::from_value(json!({
            "metadata": {"name": "10.0.0.77", "labels": {
                "ipaddress.kubernetes.io/ip-family": "IPv4",
                "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io"}},
            "spec": {"parentRef": {"group": "", "resource": "services",
                                   "namespace": "default", "name": "ghost"}},
        }))
        .unwrap();
        c.ip_addresses()
            .create(&PostParams::default(), &leaked)
            .await
            .unwrap();
        c.server()
            .store()
            .create(&format!("{PORT_PREFIX}30777"), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let ip_key = "/registry/ipaddresses/10.0.0.77".to_owned();
        let port_key = format!("{PORT_PREFIX}30777");

        let first = c.pass().await;
        assert!(first.released.is_empty(), "first pass: {first:?}");
        assert_eq!(first.suspected, vec![ip_key.clone(), port_key.clone()]);
        assert!(
            c.ip_addresses()
                .get_opt("10.0.0.77")
                .await
                .unwrap()
                .is_some()
        );
        assert!(c.port_key_exists(30777).await);

        let second = c.pass().await;
        assert_eq!(second.released, vec![ip_key, port_key], "second pass");
        assert!(second.suspected.is_empty());
        assert!(
            c.ip_addresses()
                .get_opt("10.0.0.77")
                .await
                .unwrap()
                .is_none()
        );
        assert!(!c.port_key_exists(30777).await);

        // What a Service holds is never released.
        let third = c.pass().await;
        assert!(third.released.is_empty() && third.suspected.is_empty());
        let kept_record = c.ip_addresses().get(&kept_ip).await.unwrap();
        assert_eq!(
            parent_of(&kept_record),
            ("default".to_owned(), "kept".to_owned())
        );
        assert!(c.port_key_exists(kept_port).await);

        // Released means free again.
        let reuse = c
            .services()
            .create(
                &PostParams::default(),
                &node_port_service("reuse", Some("10.0.0.77"), Some(30777)),
            )
            .await
            .expect("the released address and port can be allocated again");
        assert_eq!(cluster_ip(&reuse), "10.0.0.77");
    }

    pub async fn a_lost_allocation_is_recreated_and_stays_taken(c: &Cluster) {
        let web = c
            .services()
            .create(
                &PostParams::default(),
                &node_port_service("web", None, None),
            )
            .await
            .unwrap();
        let (ip, port) = (cluster_ip(&web), node_port(&web));

        // Lose both records; the Service still holds its address and port.
        c.ip_addresses()
            .delete(&ip, &DeleteParams::default())
            .await
            .unwrap();
        c.server()
            .store()
            .delete(&format!("{PORT_PREFIX}{port}"), None)
            .await
            .unwrap();

        let report = c.pass().await;
        assert!(report.released.is_empty());
        assert!(
            report
                .recreated
                .contains(&format!("/registry/ipaddresses/{ip}"))
                && report.recreated.contains(&format!("{PORT_PREFIX}{port}")),
            "{report:?}"
        );
        let record = c.ip_addresses().get(&ip).await.unwrap();
        assert_eq!(parent_of(&record), ("default".to_owned(), "web".to_owned()));
        assert_eq!(
            record.metadata.labels.as_ref().unwrap()["ipaddress.kubernetes.io/managed-by"],
            "ipallocator.k8s.io"
        );
        assert!(c.port_key_exists(port).await);
        wait_for_event(c, "web", "ClusterIPNotAllocated").await;
        wait_for_event(c, "web", "PortNotAllocated").await;

        // Nobody else can take them now.
        let thief = c
            .services()
            .create(
                &PostParams::default(),
                &node_port_service("thief", Some(&ip), None),
            )
            .await
            .expect_err("the recreated ClusterIP is taken");
        let kube::Error::Api(status) = thief else {
            panic!("expected an API error, got {thief:?}")
        };
        assert_eq!(status.code, 422);
        assert!(status.message.contains("already allocated"), "{status:?}");
        let thief = c
            .services()
            .create(
                &PostParams::default(),
                &node_port_service("thief", None, Some(port)),
            )
            .await
            .expect_err("the recreated NodePort is taken");
        let kube::Error::Api(status) = thief else {
            panic!("expected an API error, got {thief:?}")
        };
        assert_eq!(status.code, 422);
        assert!(
            c.port_key_exists(port).await,
            "a Service refused a NodePort does not release its holder's"
        );

        // A second pass finds nothing more to do.
        let again = c.pass().await;
        assert!(
            again.recreated.is_empty() && again.warnings.is_empty(),
            "{again:?}"
        );
    }

    pub async fn addresses_held_by_two_services_are_reported_on_the_service(c: &Cluster) {
        c.services()
            .create(
                &PostParams::default(),
                &node_port_service("first", Some("10.0.0.50"), Some(30050)),
            )
            .await
            .unwrap();
        // The records lost, a second Service gets the same address and port.
        c.ip_addresses()
            .delete("10.0.0.50", &DeleteParams::default())
            .await
            .unwrap();
        c.server()
            .store()
            .delete(&format!("{PORT_PREFIX}30050"), None)
            .await
            .unwrap();
        c.services()
            .create(
                &PostParams::default(),
                &node_port_service("second", Some("10.0.0.50"), Some(30050)),
            )
            .await
            .unwrap();

        let report = c.pass().await;
        let mut warnings = report.warnings.clone();
        warnings.sort();
        assert_eq!(
            warnings,
            vec![
                (
                    "default/first".to_owned(),
                    "ClusterIPAlreadyAllocated".to_owned()
                ),
                (
                    "default/second".to_owned(),
                    "PortAlreadyAllocated".to_owned()
                ),
            ],
            "the IPAddress names second, so first is told; first is older, so second is told about the port"
        );
        assert!(report.released.is_empty() && report.recreated.is_empty());
        let event = wait_for_event(c, "first", "ClusterIPAlreadyAllocated").await;
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(
            event.message.as_deref(),
            Some(
                "Cluster IP [IPv4]:10.0.0.50 was assigned to multiple services; please recreate service"
            )
        );
        assert_eq!(
            event.source.as_ref().and_then(|s| s.component.as_deref()),
            Some("ipallocator-repair-controller")
        );
        wait_for_event(c, "second", "PortAlreadyAllocated").await;

        // Reported again on the next pass: the same Event, counted.
        c.pass().await;
        let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
        let mut counted = false;
        for _ in 0..50 {
            let same: Vec<Event> = events
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|e| {
                    e.involved_object.name.as_deref() == Some("first")
                        && e.reason.as_deref() == Some("ClusterIPAlreadyAllocated")
                })
                .collect();
            assert_eq!(same.len(), 1, "one Event, not one per pass");
            if same[0].count == Some(2) {
                counted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(counted, "the repeated warning bumps the Event's count");

        // The Services themselves are left as they were.
        for name in ["first", "second"] {
            let svc = c.services().get(name).await.unwrap();
            assert_eq!(cluster_ip(&svc), "10.0.0.50");
            assert_eq!(node_port(&svc), 30050);
        }
    }
}

macro_rules! suite {
    ($backend:ident: $($name:ident),* $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let cluster = super::$backend().await;
                    suite::$name(&cluster).await;
                    cluster.stop().await;
                }
            )*
        }
    };
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        suite!(embedded: $($name),*);
        suite!(etcd: $($name),*);
    };
}

both!(
    leaked_allocations_are_released_on_the_second_pass_not_the_first,
    a_lost_allocation_is_recreated_and_stays_taken,
    addresses_held_by_two_services_are_reported_on_the_service,
);

#[tokio::test]
async fn the_repair_loop_stops_with_the_server() {
    let cluster = embedded().await;
    // Stopping waits for the loop to end; a loop that ignored it would hang.
    tokio::time::timeout(Duration::from_secs(10), cluster.stop())
        .await
        .expect("the server and its repair loop stop");
}
