//! The kubelet's Node: registration, status every `nodeStatusUpdateFrequency`
//! (conditions, capacity, addresses, images, nodeInfo), and the node's Lease
//! in `kube-node-lease`, renewed every 10 s as upstream's heartbeat.

use crate::eviction::Signal;
use crate::{Kubelet, sys};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints,
    NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Creates the Node, or brings an existing one's labels and taints in line.
pub async fn register(kubelet: &Kubelet) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(kubelet.client.clone());
    let config = &kubelet.config;
    let mut labels = BTreeMap::from([
        (
            "kubernetes.io/hostname".to_string(),
            config.node_name.clone(),
        ),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), go_arch().to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), go_arch().to_string()),
    ]);
    labels.extend(config.node_labels.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(labels.clone()),
            annotations: Some(BTreeMap::from([(
                "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: config.pod_cidr.clone(),
            pod_cidrs: config.pod_cidr.clone().map(|c| vec![c]),
            taints: (!config.register_with_taints.is_empty())
                .then(|| config.register_with_taints.clone()),
            ..Default::default()
        }),
        status: None,
    };
    let mut delay = Duration::from_millis(200);
    loop {
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {
                tracing::info!(node = %config.node_name, "registered the node");
                break;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Already registered (a restart): reconcile our labels.
                let patch = serde_json::json!({"metadata": {"labels": labels}});
                nodes
                    .patch(
                        &config.node_name,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                tracing::info!(node = %config.node_name, "node was already registered");
                break;
            }
            Err(err) => {
                tracing::warn!("registering the node failed, retrying: {err}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(7));
            }
        }
    }
    // A failed first status post is retried by the status loop.
    if let Err(err) = update_status(kubelet, true).await {
        tracing::warn!("posting the node's first status: {err:#}");
    }
    Ok(())
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Posts node status every `nodeStatusUpdateFrequency`.
pub async fn status_loop(kubelet: Arc<Kubelet>) {
    let mut tick = tokio::time::interval(kubelet.config.node_status_update_frequency);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(err) = update_status(&kubelet, false).await {
            tracing::warn!("updating node status: {err:#}");
        }
    }
}

fn condition(
    kind: &str,
    ok: bool,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
    was: Option<&NodeCondition>,
) -> NodeCondition {
    let status = if ok == (kind == "Ready") {
        "True"
    } else {
        "False"
    };
    let transition = match was {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Some(Time(now)),
    };
    NodeCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: transition,
    }
}

/// Computes and patches the node's status.
async fn update_status(kubelet: &Kubelet, first: bool) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(kubelet.client.clone());
    let config = &kubelet.config;
    let current = nodes.get(&config.node_name).await?;
    let old_conditions = current
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let find = |kind: &str| old_conditions.iter().find(|c| c.type_ == kind);
    let now = jiff::Timestamp::now();

    // Capacity and pressure from the same observation the eviction manager
    // acts on: a condition is true while one of its thresholds is crossed.
    let observed = crate::eviction::observe(kubelet);
    let total = |signal| {
        observed
            .get(&signal)
            .map(|(capacity, _)| *capacity as u64)
            .unwrap_or(0)
    };
    let memory = total(Signal::MemoryAvailable);
    let storage = total(Signal::NodeFsAvailable);
    let cpu = if config.manage_host {
        sys::cpus() as u64
    } else {
        4
    };
    let crossed = crate::eviction::crossed(&config.eviction_hard, &observed);
    let pressure = |signal| crossed.iter().any(|(t, _, _)| t.signal == signal);
    let memory_pressure = pressure(Signal::MemoryAvailable);
    let disk_pressure = pressure(Signal::NodeFsAvailable);

    let runtime_ok = match kubelet.runtime.status().await {
        Ok(s) => s
            .conditions
            .iter()
            .filter(|c| c.r#type == "RuntimeReady" || c.r#type == "NetworkReady")
            .all(|c| c.status),
        Err(_) => false,
    };
    let ready_message = if runtime_ok {
        "kubelet is posting ready status"
    } else {
        "container runtime is down or its network is not ready"
    };
    let conditions = vec![
        condition(
            "MemoryPressure",
            !memory_pressure,
            if memory_pressure {
                "KubeletHasInsufficientMemory"
            } else {
                "KubeletHasSufficientMemory"
            },
            if memory_pressure {
                "kubelet has insufficient memory available"
            } else {
                "kubelet has sufficient memory available"
            },
            now,
            find("MemoryPressure"),
        ),
        condition(
            "DiskPressure",
            !disk_pressure,
            if disk_pressure {
                "KubeletHasDiskPressure"
            } else {
                "KubeletHasNoDiskPressure"
            },
            if disk_pressure {
                "kubelet has disk pressure"
            } else {
                "kubelet has no disk pressure"
            },
            now,
            find("DiskPressure"),
        ),
        condition(
            "PIDPressure",
            true,
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
            now,
            find("PIDPressure"),
        ),
        condition(
            "Ready",
            runtime_ok,
            if runtime_ok {
                "KubeletReady"
            } else {
                "KubeletNotReady"
            },
            ready_message,
            now,
            find("Ready"),
        ),
    ];

    let q = |v: String| Quantity(v);
    let capacity = BTreeMap::from([
        ("cpu".to_string(), q(cpu.to_string())),
        ("memory".to_string(), q(format!("{}Ki", memory / 1024))),
        (
            "ephemeral-storage".to_string(),
            q(format!("{}Ki", storage / 1024)),
        ),
        ("pods".to_string(), q(config.max_pods.to_string())),
        ("hugepages-2Mi".to_string(), q("0".into())),
    ]);
    let mut allocatable = capacity.clone();
    allocatable.insert(
        "memory".into(),
        q(format!("{}Ki", memory.saturating_sub(100 << 20) / 1024)),
    );
    allocatable.insert(
        "ephemeral-storage".into(),
        q((storage - storage / 10).to_string()),
    );

    let mut images: Vec<ContainerImage> = match kubelet.runtime.list_images().await {
        Ok(list) => list
            .into_iter()
            .map(|i| {
                let mut names = i.repo_tags.clone();
                names.extend(i.repo_digests.clone());
                ContainerImage {
                    names: Some(names),
                    size_bytes: Some(i.size as i64),
                }
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    images.sort_by_key(|i| std::cmp::Reverse(i.size_bytes));
    images.truncate(50);

    let version = kubelet.runtime.version().await.ok();
    let (kernel, os_image, machine_id, boot_id) = sys::node_info_facts();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string();
    let status = NodeStatus {
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: kubelet.host_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: if config.manage_host
                    && !hostname.is_empty()
                    && config.node_name == hostname
                {
                    hostname
                } else {
                    config.node_name.clone()
                },
            },
        ]),
        allocatable: Some(allocatable),
        capacity: Some(capacity),
        conditions: Some(conditions),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(config.port),
            }),
        }),
        images: Some(images),
        node_info: Some(NodeSystemInfo {
            architecture: go_arch().into(),
            boot_id,
            container_runtime_version: version
                .map(|v| format!("{}://{}", v.runtime_name, v.runtime_version))
                .unwrap_or_default(),
            kernel_version: kernel,
            kube_proxy_version: String::new(),
            kubelet_version: "v1.33.0-skiff".into(),
            machine_id: machine_id.clone(),
            operating_system: "linux".into(),
            os_image,
            system_uuid: machine_id,
            swap: None,
        }),
        ..Default::default()
    };
    let patch = serde_json::json!({ "status": status });
    nodes
        .patch_status(
            &config.node_name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    if first {
        kubelet.events.record(
            crate::events::node_ref(&config.node_name),
            crate::events::Type::Normal,
            "Starting",
            "Starting kubelet.",
        );
        kubelet.events.record(
            crate::events::node_ref(&config.node_name),
            crate::events::Type::Normal,
            "NodeReady",
            format!("Node {} status is now: NodeReady", config.node_name),
        );
    }
    Ok(())
}

/// Creates the node's Lease and renews it every 10 s (a quarter of its
/// duration, as upstream), backing off on errors.
pub async fn lease_loop(kubelet: Arc<Kubelet>) {
    let leases: Api<Lease> = Api::namespaced(kubelet.client.clone(), "kube-node-lease");
    let name = kubelet.config.node_name.clone();
    let duration = kubelet.config.lease_duration_seconds;
    let renew = Duration::from_secs((duration as u64 / 4).max(1));
    let mut failures = 0u32;
    loop {
        let result = renew_lease(&kubelet, &leases, &name, duration).await;
        let wait = match result {
            Ok(()) => {
                failures = 0;
                renew
            }
            Err(err) => {
                failures += 1;
                tracing::warn!("renewing the node lease: {err}");
                Duration::from_millis(200 * 2u64.pow(failures.min(5)))
            }
        };
        tokio::time::sleep(wait).await;
    }
}

async fn renew_lease(
    kubelet: &Kubelet,
    leases: &Api<Lease>,
    name: &str,
    duration: i32,
) -> kube::Result<()> {
    let now = MicroTime(jiff::Timestamp::now());
    match leases.get_opt(name).await? {
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.renew_time = Some(now);
            spec.holder_identity = Some(name.into());
            spec.lease_duration_seconds = Some(duration);
            leases.replace(name, &PostParams::default(), &lease).await?;
        }
        None => {
            let node: Api<Node> = Api::all(kubelet.client.clone());
            let owner = node
                .get(name)
                .await
                .ok()
                .and_then(|n| n.metadata.uid)
                .map(|uid| {
                    vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: name.into(),
                        uid,
                        ..Default::default()
                    }]
                });
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    owner_references: owner,
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(name.into()),
                    lease_duration_seconds: Some(duration),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            leases.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}
