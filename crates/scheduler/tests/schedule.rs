//! The scheduler against the real API server, in-process, with Node objects
//! only (no kubelets): each test creates nodes and pods through the API and
//! checks where the pods land, or why they do not.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::{Value, json};

/// An API server, a client and a running scheduler.
struct Cluster {
    client: Client,
    kube: kube::Config,
    scheduler: Option<skiff_scheduler::Running>,
    server: Option<skiff_apiserver::Running>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        Self::start_with(Some(skiff_scheduler::KubeSchedulerConfiguration::default())).await
    }

    /// A cluster; with `Some(config)` a scheduler runs on it.
    async fn start_with(config: Option<skiff_scheduler::KubeSchedulerConfiguration>) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = skiff_apiserver::start(skiff_apiserver::Config {
            data_dir: dir.path().to_owned(),
            secure_port: 0,
            bind_address: "127.0.0.1".parse().unwrap(),
            ..Default::default()
        })
        .await
        .expect("the API server starts");
        let kubeconfig = Kubeconfig::read_from(&server.admin_kubeconfig).unwrap();
        let kube = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
        let client = Client::try_from(kube.clone()).unwrap();
        let scheduler = match config {
            Some(c) => Some(
                skiff_scheduler::start(skiff_scheduler::Config {
                    scheduler: c,
                    leader_election: None,
                    serving: None,
                    ..skiff_scheduler::Config::new(kube.clone())
                })
                .await
                .expect("the scheduler starts"),
            ),
            None => None,
        };
        Cluster {
            client,
            kube,
            scheduler,
            server: Some(server),
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.scheduler.take() {
            s.stop().await;
        }
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// A Ready node with `cpu` cores, `mem` memory, 110 pods, `labels` and
    /// `taints`.
    async fn node(&self, name: &str, cpu: &str, mem: &str, labels: Value, taints: Value) {
        let mut all_labels = json!({"kubernetes.io/hostname": name});
        if let Value::Object(extra) = labels {
            all_labels.as_object_mut().unwrap().extend(extra);
        }
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": all_labels},
            "spec": {"taints": taints},
            "status": {
                "capacity": {"cpu": cpu, "memory": mem, "pods": "110"},
                "allocatable": {"cpu": cpu, "memory": mem, "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }))
        .unwrap();
        let nodes = Api::<Node>::all(self.client.clone());
        nodes.create(&PostParams::default(), &node).await.unwrap();
        // The API server taints new nodes not-ready (TaintNodesByCondition);
        // with no node lifecycle controller here, the test lifts it as that
        // controller does for a Ready node, leaving the node's own taints.
        nodes
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"taints": taints_or_null(&node)}})),
            )
            .await
            .unwrap();
    }

    async fn pod(&self, spec: Value) -> String {
        let pod: Pod = serde_json::from_value(spec).unwrap();
        let name = pod.metadata.name.clone().unwrap();
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
        name
    }

    /// Waits for `name` to be bound; its node.
    async fn node_of(&self, name: &str) -> String {
        let pods = self.pods();
        wait(&format!("pod {name} to be bound"), || async {
            pods.get(name)
                .await
                .ok()
                .and_then(|p| p.spec.and_then(|s| s.node_name))
        })
        .await
    }
}

fn taints_or_null(node: &Node) -> Value {
    match node.spec.as_ref().and_then(|s| s.taints.as_ref()) {
        Some(t) if !t.is_empty() => serde_json::to_value(t).unwrap(),
        _ => Value::Null,
    }
}

/// Polls `f` until it gives `Some`, for up to 20 s.
async fn wait<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pod(name: &str, cpu: &str, extra: Value) -> Value {
    let mut p = json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]},
    });
    merge(&mut p, extra);
    p
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_land_by_resources_selector_taints_and_anti_affinity() {
    let c = Cluster::start().await;
    c.node("small", "1", "4Gi", json!({"disk": "ssd"}), json!([]))
        .await;
    c.node("big", "8", "16Gi", json!({}), json!([])).await;
    c.node(
        "gpu",
        "8",
        "16Gi",
        json!({}),
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
    )
    .await;

    // Resources: only "big" and "gpu" have 4 cores, and "gpu" is tainted.
    c.pod(pod("needs-4", "4", json!({}))).await;
    assert_eq!(c.node_of("needs-4").await, "big");

    // nodeSelector.
    c.pod(pod(
        "wants-ssd",
        "100m",
        json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
    ))
    .await;
    assert_eq!(c.node_of("wants-ssd").await, "small");

    // A toleration lets a pod onto the tainted node; required node
    // affinity sends it there.
    c.pod(pod(
        "gpu-job",
        "100m",
        json!({"spec": {
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["gpu"]}]}]}}},
        }}),
    ))
    .await;
    assert_eq!(c.node_of("gpu-job").await, "gpu");

    // Pod anti-affinity on the hostname: three replicas that tolerate the
    // taint land on three different nodes.
    let mut nodes = Vec::new();
    for i in 0..3 {
        let name = format!("web-{i}");
        c.pod(pod(
            &name,
            "100m",
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {
                "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}},
            }}),
        ))
        .await;
        nodes.push(c.node_of(&name).await);
    }
    nodes.sort();
    assert_eq!(nodes, ["big", "gpu", "small"]);

    // A fourth replica fits nowhere.
    c.pod(pod(
        "web-3",
        "100m",
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {
            "tolerations": [{"key": "dedicated", "operator": "Exists"}],
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}},
        }}),
    ))
    .await;
    let message = unschedulable_message(&c, "web-3").await;
    assert!(
        message.starts_with(
            "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
        ),
        "{message}"
    );
    c.stop().await;
}

/// Waits for the pod's PodScheduled=False condition; its message.
async fn unschedulable_message(c: &Cluster, name: &str) -> String {
    let pods = c.pods();
    wait(
        &format!("pod {name} to be marked unschedulable"),
        || async {
            let p = pods.get(name).await.ok()?;
            let cond = p
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
            assert_eq!(cond.reason.as_deref(), Some("Unschedulable"));
            cond.message
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_pod_says_why_per_plugin_and_fits_once_a_node_arrives() {
    let c = Cluster::start().await;
    for n in ["a", "b"] {
        c.node(n, "1", "4Gi", json!({}), json!([])).await;
    }
    for n in ["t1", "t2", "t3"] {
        c.node(
            n,
            "8",
            "16Gi",
            json!({}),
            json!([{"key": "k", "value": "v", "effect": "NoSchedule"}]),
        )
        .await;
    }
    c.pod(pod("hungry", "2", json!({}))).await;
    let message = unschedulable_message(&c, "hungry").await;
    assert_eq!(
        message,
        "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint {k: v}. \
         preemption: 0/5 nodes are available: 2 No preemption victims found for incoming pod, \
         3 Preemption is not helpful for scheduling."
    );
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let event = wait("a FailedScheduling event", || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("FailedScheduling")
                    && e.involved_object.name.as_deref() == Some("hungry")
            })
    })
    .await;
    assert_eq!(event.message.as_deref(), Some(message.as_str()));
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(
        event.reporting_component.as_deref(),
        Some("default-scheduler")
    );

    // A node that fits arrives: the pod is retried at once (not after the
    // five-minute flush) and lands there.
    c.node("roomy", "4", "8Gi", json!({}), json!([])).await;
    assert_eq!(c.node_of("hungry").await, "roomy");
    let scheduled = wait("a Scheduled event", || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("Scheduled")
                    && e.involved_object.name.as_deref() == Some("hungry")
            })
    })
    .await;
    assert_eq!(
        scheduled.message.as_deref(),
        Some("Successfully assigned default/hungry to roomy")
    );
    // Both attempts show in /metrics under upstream's names.
    let metrics = skiff_scheduler::metrics::get().encode();
    for result in ["unschedulable", "scheduled"] {
        let line = format!(
            "scheduler_schedule_attempts_total{{result=\"{result}\",profile=\"default-scheduler\"}} "
        );
        let count: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line} in\n{metrics}"))
            .parse()
            .unwrap();
        assert!(count >= 1, "{line}{count}");
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_nodes_fill_evenly_and_a_deleted_pod_frees_its_room() {
    let c = Cluster::start().await;
    for n in ["n1", "n2", "n3", "n4"] {
        c.node(n, "2", "4Gi", json!({}), json!([])).await;
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..8 {
        c.pod(pod(&format!("p{i}"), "1", json!({}))).await;
    }
    for i in 0..8 {
        *counts.entry(c.node_of(&format!("p{i}")).await).or_default() += 1;
    }
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        [2, 2, 2, 2],
        "{counts:?}"
    );
    // The cluster is full; one more waits, and gets the room a deleted pod leaves.
    c.pod(pod("late", "1", json!({}))).await;
    unschedulable_message(&c, "late").await;
    c.pods()
        .delete("p0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    c.node_of("late").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_spread_constraints_split_pods_over_zones() {
    let c = Cluster::start().await;
    // Zone a has the big nodes, which LeastAllocated alone would favour.
    for (n, zone, cpu) in [
        ("a1", "a", "16"),
        ("a2", "a", "16"),
        ("b1", "b", "2"),
        ("b2", "b", "2"),
    ] {
        c.node(
            n,
            cpu,
            "32Gi",
            json!({"topology.kubernetes.io/zone": zone}),
            json!([]),
        )
        .await;
    }
    let mut zones: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..4 {
        let name = format!("spread-{i}");
        c.pod(pod(
            &name,
            "500m",
            json!({"metadata": {"labels": {"app": "spread"}}, "spec": {"topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                 "labelSelector": {"matchLabels": {"app": "spread"}}}]}}),
        ))
        .await;
        let node = c.node_of(&name).await;
        *zones.entry(node[..1].to_owned()).or_default() += 1;
    }
    assert_eq!(zones, BTreeMap::from([("a".into(), 2), ("b".into(), 2)]));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemption_evicts_a_lower_priority_pod_and_nominates_the_node() {
    let c = Cluster::start().await;
    let classes: Api<PriorityClass> = Api::all(c.client.clone());
    for (name, value) in [("low", 10), ("high", 1000)] {
        let pc: PriorityClass = serde_json::from_value(json!({
            "metadata": {"name": name}, "value": value}))
        .unwrap();
        classes.create(&PostParams::default(), &pc).await.unwrap();
    }
    c.node("only", "2", "4Gi", json!({}), json!([])).await;
    c.pod(pod(
        "victim",
        "2",
        json!({"spec": {"priorityClassName": "low"}}),
    ))
    .await;
    assert_eq!(c.node_of("victim").await, "only");

    c.pod(pod(
        "vip",
        "2",
        json!({"spec": {"priorityClassName": "high"}}),
    ))
    .await;
    let pods = c.pods();
    let nominated = wait("vip to be nominated", || async {
        pods.get("vip")
            .await
            .ok()?
            .status?
            .nominated_node_name
            .filter(|n| !n.is_empty())
    })
    .await;
    assert_eq!(nominated, "only");
    let victim = wait("the victim to be evicted", || async {
        pods.get("victim")
            .await
            .ok()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;
    let disruption = victim
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "DisruptionTarget");
    assert_eq!(
        disruption.and_then(|d| d.reason).as_deref(),
        Some("PreemptionByScheduler")
    );
    // The kubelet's part: the victim stops and its deletion completes.
    pods.delete("victim", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert_eq!(c.node_of("vip").await, "only");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_takes_the_kube_scheduler_lease_and_releases_it_on_shutdown() {
    let c = Cluster::start_with(None).await;
    c.node("n1", "2", "4Gi", json!({}), json!([])).await;
    let config = skiff_scheduler::Config {
        leader_election: Some(skiff_scheduler::LeaderElection {
            lease_duration: Duration::from_secs(4),
            renew_deadline: Duration::from_secs(3),
            retry_period: Duration::from_millis(500),
            ..Default::default()
        }),
        serving: None,
        ..skiff_scheduler::Config::new(c.kube.clone())
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(skiff_scheduler::run(config, async {
        let _ = stopped.await;
    }));
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-system");
    let holder = wait("the kube-scheduler lease", || async {
        leases
            .get("kube-scheduler")
            .await
            .ok()?
            .spec?
            .holder_identity
            .filter(|h| !h.is_empty())
    })
    .await;
    assert!(!holder.is_empty());
    c.pod(pod("led", "100m", json!({}))).await;
    assert_eq!(c.node_of("led").await, "n1");
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    let after = leases.get("kube-scheduler").await.unwrap();
    assert_eq!(after.spec.unwrap().holder_identity.as_deref(), Some(""));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_from_a_config_file_score_their_own_way() {
    let config = skiff_scheduler::KubeSchedulerConfiguration::parse(
        r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
  - schedulerName: default-scheduler
  - schedulerName: packer
    plugins:
      score:
        disabled:
          - name: "*"
        enabled:
          - name: NodeResourcesFit
    pluginConfig:
      - name: NodeResourcesFit
        args:
          scoringStrategy:
            type: MostAllocated
"#,
        "test config",
    )
    .unwrap();
    let c = Cluster::start_with(Some(config)).await;
    for n in ["n1", "n2"] {
        c.node(n, "4", "8Gi", json!({}), json!([])).await;
    }
    c.pod(pod("first", "1", json!({}))).await;
    let first = c.node_of("first").await;
    // The packer profile stacks onto the busier node; the default spreads.
    c.pod(pod(
        "packed",
        "1",
        json!({"spec": {"schedulerName": "packer"}}),
    ))
    .await;
    assert_eq!(c.node_of("packed").await, first);
    c.pod(pod("spread", "1", json!({}))).await;
    assert_ne!(c.node_of("spread").await, first);
    // A pod for a profile nobody runs is left alone.
    c.pod(pod(
        "orphan",
        "1",
        json!({"spec": {"schedulerName": "nobody"}}),
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let orphan = c.pods().get("orphan").await.unwrap();
    assert!(orphan.spec.unwrap().node_name.is_none());
    assert!(orphan.status.and_then(|s| s.conditions).is_none_or(|c| {
        c.iter()
            .all(|c| c.type_ != "PodScheduled" || c.status != "False")
    }));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_volumes_pin_pods_and_unbound_claims_wait() {
    let c = Cluster::start().await;
    for n in ["n1", "n2"] {
        c.node(n, "4", "8Gi", json!({}), json!([])).await;
    }
    let pvs: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(c.client.clone());
    let pv = serde_json::from_value(json!({
        "metadata": {"name": "local-n2"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "local", "local": {"path": "/data"},
            "claimRef": {"namespace": "default", "name": "data"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}]}}},
    }))
    .unwrap();
    pvs.create(&PostParams::default(), &pv).await.unwrap();
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(c.client.clone(), "default");
    for (name, volume) in [("data", Some("local-n2")), ("pending", None)] {
        let pvc = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                "volumeName": volume, "resources": {"requests": {"storage": "1Gi"}}},
        }))
        .unwrap();
        pvcs.create(&PostParams::default(), &pvc).await.unwrap();
    }
    let uses = |claim: &str| json!({"spec": {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]}});
    c.pod(pod("bound", "100m", uses("data"))).await;
    assert_eq!(c.node_of("bound").await, "n2");
    c.pod(pod("waits", "100m", uses("pending"))).await;
    let message = unschedulable_message(&c, "waits").await;
    assert_eq!(
        message,
        "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refusal_reason_reads_like_upstreams() {
    let c = Cluster::start().await;
    c.node("open", "2", "4Gi", json!({"disk": "hdd"}), json!([]))
        .await;
    c.node("cordoned", "2", "4Gi", json!({"disk": "hdd"}), json!([]))
        .await;
    Api::<Node>::all(c.client.clone())
        .patch(
            "cordoned",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    let not_helpful =
        "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.";

    c.pod(pod(
        "wants-ssd",
        "100m",
        json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
    ))
    .await;
    assert_eq!(
        unschedulable_message(&c, "wants-ssd").await,
        format!(
            "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
             1 node(s) were unschedulable. {not_helpful}"
        )
    );

    let with_port = |name: &str| {
        pod(
            name,
            "100m",
            json!({"spec": {"containers": [{"name": "c", "image": "busybox",
                "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}),
        )
    };
    c.pod(with_port("port-1")).await;
    assert_eq!(c.node_of("port-1").await, "open");
    c.pod(with_port("port-2")).await;
    assert_eq!(
        unschedulable_message(&c, "port-2").await,
        "0/2 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, \
         1 node(s) were unschedulable. preemption: 0/2 nodes are available: \
         1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
    );

    // A gated pod is not tried at all; lifting the gate schedules it.
    c.pod(pod(
        "gated",
        "100m",
        json!({"spec": {"schedulingGates": [{"name": "example.com/wait"}]}}),
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let gated = c.pods().get("gated").await.unwrap();
    assert!(gated.spec.as_ref().unwrap().node_name.is_none());
    let reason = gated
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .and_then(|c| c.reason);
    assert_ne!(reason.as_deref(), Some("Unschedulable"));
    c.pods()
        .patch(
            "gated",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"schedulingGates": null}})),
        )
        .await
        .unwrap();
    assert_eq!(c.node_of("gated").await, "open");
    c.stop().await;
}
