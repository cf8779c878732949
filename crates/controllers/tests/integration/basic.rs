//! The controller manager against a real Skiff API server, in-process, on the
//! embedded store. No kubelet runs: pods without a node are deleted at once
//! by the API server, pods bound to a node wait for their grace period.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, NamespaceCondition, Pod, Secret, ServiceAccount,
};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_controllers::LeaderElection;
use tokio::time::Instant;

use crate::common::{Cluster, Manager, eventually};

/// A controller manager's configuration: every controller, no /healthz.
fn every_controller(
    c: &Cluster,
    leader_election: Option<LeaderElection>,
) -> skiff_controllers::Config {
    skiff_controllers::Config {
        leader_election,
        root_ca_file: Some(c.ca_file.clone()),
        serving: None,
        ..skiff_controllers::Config::new(c.kube.clone())
    }
}

/// Leader election with short periods, as `identity`.
fn fast_election(identity: &str) -> LeaderElection {
    LeaderElection {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(500),
        identity: identity.into(),
        ..LeaderElection::for_lease("kube-controller-manager")
    }
}

async fn create_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

async fn root_ca_configmap(client: &Client, namespace: &str) -> Option<ConfigMap> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    cms.get_opt("kube-root-ca.crt").await.unwrap()
}

async fn default_account(client: &Client, namespace: &str) -> Option<ServiceAccount> {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    sas.get_opt("default").await.unwrap()
}

async fn lease_holder(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    leases
        .get_opt("kube-controller-manager")
        .await
        .unwrap()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

const SOON: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_the_root_ca_configmap_and_the_default_service_account() {
    let c = Cluster::start().await;
    let manager = Manager::start(every_controller(&c, None));

    // Namespaces that existed before the controller manager started...
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        eventually(&format!("kube-root-ca.crt in {ns}"), SOON, || {
            root_ca_configmap(&c.client, ns)
        })
        .await;
    }
    // ...and new ones.
    create_namespace(&c.client, "team-a").await;
    let cm = eventually("kube-root-ca.crt in team-a", SOON, || {
        root_ca_configmap(&c.client, "team-a")
    })
    .await;
    assert_eq!(cm.data.as_ref().unwrap()["ca.crt"], c.ca_pem);
    assert!(
        cm.annotations()["kubernetes.io/description"]
            .starts_with("Contains a CA bundle that can be used to verify the kube-apiserver")
    );
    eventually("the default service account in team-a", SOON, || {
        default_account(&c.client, "team-a")
    })
    .await;

    // A deleted ConfigMap comes back, a changed one is put right.
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "team-a");
    cms.delete("kube-root-ca.crt", &DeleteParams::default())
        .await
        .unwrap();
    let first_uid = cm.uid();
    let back = eventually("kube-root-ca.crt back in team-a", SOON, || async {
        root_ca_configmap(&c.client, "team-a")
            .await
            .filter(|cm| cm.uid() != first_uid)
    })
    .await;
    let mut tampered = back.clone();
    tampered.data = Some([("ca.crt".to_owned(), "nope".to_owned())].into());
    tampered.metadata.annotations = None;
    cms.replace("kube-root-ca.crt", &PostParams::default(), &tampered)
        .await
        .unwrap();
    let fixed = eventually("kube-root-ca.crt put right", SOON, || async {
        root_ca_configmap(&c.client, "team-a").await.filter(|cm| {
            cm.data.as_ref().is_some_and(|d| d["ca.crt"] == c.ca_pem)
                && cm.annotations().contains_key("kubernetes.io/description")
        })
    })
    .await;
    assert_eq!(fixed.uid(), back.uid());

    // A deleted default service account comes back too.
    let sas: Api<ServiceAccount> = Api::namespaced(c.client.clone(), "team-a");
    sas.delete("default", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the default service account back", SOON, || {
        default_account(&c.client, "team-a")
    })
    .await;

    manager.stop().await;
    c.stop().await;
}

fn pod(name: &str, node: Option<&str>, grace: i64) -> Pod {
    let mut spec = json!({
        "terminationGracePeriodSeconds": grace,
        "containers": [{"name": "app", "image": "busybox"}],
    });
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

async fn namespace_gone(client: &Client, name: &str) -> Option<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .get_opt(name)
        .await
        .unwrap()
        .is_none()
        .then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_deletes_its_content_then_the_namespace() {
    let c = Cluster::start().await;
    let manager = Manager::start(every_controller(&c, None));
    create_namespace(&c.client, "doomed").await;
    // Pods are admitted once the namespace's service account exists.
    eventually("the default service account", SOON, || {
        default_account(&c.client, "doomed")
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "doomed");
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "doomed");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "doomed");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"a": "b"}}))
            .unwrap(),
    )
    .await
    .unwrap();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "password"}, "stringData": {"p": "w"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("web", None, 30))
        .await
        .unwrap();

    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the namespace gone", SOON, || {
        namespace_gone(&c.client, "doomed")
    })
    .await;
    let lp = ListParams::default();
    assert!(cms.list(&lp).await.unwrap().items.is_empty());
    assert!(secrets.list(&lp).await.unwrap().items.is_empty());
    assert!(pods.list(&lp).await.unwrap().items.is_empty());
    let accounts: Api<ServiceAccount> = Api::namespaced(c.client.clone(), "doomed");
    assert!(accounts.list(&lp).await.unwrap().items.is_empty());

    manager.stop().await;
    c.stop().await;
}

/// Deletes namespace `name`, whose pod is bound to a node no kubelet runs,
/// and waits until its status says the pod remains.
async fn delete_with_a_terminating_pod(c: &Client, name: &str) -> Namespace {
    eventually("the default service account", SOON, || {
        default_account(c, name)
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), name);
    // Bound to a node whose kubelet never comes: deleted gracefully, so it
    // stays until its grace period is over and someone removes it.
    pods.create(&PostParams::default(), &pod("bound", Some("node-a"), 4))
        .await
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(c.clone());
    namespaces
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    let ns = eventually("the NamespaceContentRemaining condition", SOON, || async {
        let ns = namespaces.get_opt(name).await.unwrap()?;
        condition(&ns, "NamespaceContentRemaining")
            .is_some_and(|c| c.status == "True")
            .then_some(ns)
    })
    .await;
    assert_eq!(ns.status_phase(), Some("Terminating"));
    let remaining = condition(&ns, "NamespaceContentRemaining").unwrap();
    assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
    assert_eq!(
        remaining.message.as_deref(),
        Some("Some resources are remaining: pods. has 1 resource instances")
    );
    let discovery = condition(&ns, "NamespaceDeletionDiscoveryFailure").unwrap();
    assert_eq!(discovery.status, "False");
    assert_eq!(discovery.reason.as_deref(), Some("ResourcesDiscovered"));
    assert!(
        ns.spec
            .as_ref()
            .unwrap()
            .finalizers
            .as_ref()
            .unwrap()
            .contains(&"kubernetes".to_owned())
    );
    let bound = pods.get("bound").await.unwrap();
    assert!(bound.metadata.deletion_timestamp.is_some());
    // What a kubelet does once the containers stopped.
    pods.delete(
        "bound",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    ns
}

fn condition<'a>(ns: &'a Namespace, kind: &str) -> Option<&'a NamespaceCondition> {
    ns.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_namespace_waits_for_its_pods_and_says_what_remains() {
    let c = Cluster::start().await;
    let manager = Manager::start(every_controller(&c, None));
    create_namespace(&c.client, "slow").await;
    delete_with_a_terminating_pod(&c.client, "slow").await;
    eventually("the namespace gone", SOON, || {
        namespace_gone(&c.client, "slow")
    })
    .await;
    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_is_finalized_once_its_pods_are_gone_and_then_awaits_its_other_finalizers() {
    let c = Cluster::start().await;
    let manager = Manager::start(every_controller(&c, None));
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    let held = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .unwrap();
    namespaces
        .create(&PostParams::default(), &held)
        .await
        .unwrap();
    delete_with_a_terminating_pod(&c.client, "held").await;

    // The pod gone, the controller removes its finalizer and says so; the
    // namespace waits for the other one.
    let ns = eventually("the kubernetes finalizer removed", SOON, || async {
        let ns = namespaces.get_opt("held").await.unwrap()?;
        ns.spec
            .as_ref()?
            .finalizers
            .as_ref()?
            .is_empty()
            .then_some(ns)
    })
    .await;
    let remaining = condition(&ns, "NamespaceContentRemaining").unwrap();
    assert_eq!(remaining.status, "False");
    assert_eq!(remaining.reason.as_deref(), Some("ContentRemoved"));
    assert_eq!(
        remaining.message.as_deref(),
        Some("All content successfully removed")
    );
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "held");
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    let release = json!({"metadata": {"finalizers": null}});
    namespaces
        .patch("held", &PatchParams::default(), &Patch::Merge(release))
        .await
        .unwrap();
    eventually("the namespace gone", SOON, || {
        namespace_gone(&c.client, "held")
    })
    .await;

    manager.stop().await;
    c.stop().await;
}

trait StatusPhase {
    fn status_phase(&self) -> Option<&str>;
}

impl StatusPhase for Namespace {
    fn status_phase(&self) -> Option<&str> {
        self.status.as_ref()?.phase.as_deref()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_another_takes_over_when_it_stops() {
    let c = Cluster::start().await;
    let mut replicas = [
        (
            "a",
            Some(Manager::start(every_controller(
                &c,
                Some(fast_election("a")),
            ))),
        ),
        (
            "b",
            Some(Manager::start(every_controller(
                &c,
                Some(fast_election("b")),
            ))),
        ),
    ];
    let leader = eventually("a leader", SOON, || lease_holder(&c.client)).await;
    // The leader keeps the Lease: the other does not take it while it renews.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            lease_holder(&c.client).await.as_deref(),
            Some(leader.as_str())
        );
    }
    // And the leader's controllers act.
    create_namespace(&c.client, "led").await;
    eventually("kube-root-ca.crt from the leader", SOON, || {
        root_ca_configmap(&c.client, "led")
    })
    .await;

    // The leader dies without releasing the Lease: the other takes over once
    // the lease duration has passed without renewals.
    let killed = Instant::now();
    let (_, manager) = replicas.iter_mut().find(|(id, _)| *id == leader).unwrap();
    manager.take().unwrap().kill();
    let follower = if leader == "a" { "b" } else { "a" };
    eventually(
        "the other replica leading",
        Duration::from_secs(10),
        || async { (lease_holder(&c.client).await.as_deref() == Some(follower)).then_some(()) },
    )
    .await;
    let took = killed.elapsed();
    // Lease duration, plus at most one retry period with its jitter.
    assert!(
        took <= Duration::from_millis(3000 + 500 * 22 / 10 + 500),
        "took {took:?}"
    );
    create_namespace(&c.client, "after").await;
    eventually("kube-root-ca.crt from the new leader", SOON, || {
        root_ca_configmap(&c.client, "after")
    })
    .await;

    // A clean shutdown releases the Lease: a new candidate need not wait.
    let third = Manager::start(every_controller(&c, Some(fast_election("c"))));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, manager) = replicas.iter_mut().find(|(id, _)| *id == follower).unwrap();
    let stopped = Instant::now();
    manager.take().unwrap().stop().await;
    eventually(
        "the third replica leading",
        Duration::from_secs(10),
        || async { (lease_holder(&c.client).await.as_deref() == Some("c")).then_some(()) },
    )
    .await;
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "took {:?}",
        stopped.elapsed()
    );
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-system");
    let lease = leases
        .get("kube-controller-manager")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(lease.lease_transitions, Some(2));
    assert_eq!(lease.lease_duration_seconds, Some(3));

    third.stop().await;
    c.stop().await;
}
