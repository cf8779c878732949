//! Turning a Pod into CRI configurations: the sandbox (metadata, hostname,
//! DNS, port mappings, namespaces, cgroup parent) and each container
//! (image, command with `$(VAR)` expansion, env from values, ConfigMaps,
//! Secrets, fields and resources, mounts, resources as cgroup limits,
//! security context).

use super::volumes::Mounted;
use crate::Kubelet;
use crate::cri::{api, labels};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Pod, ResourceFieldSelector, Secret, Service,
};
use kube::Api;
use std::collections::{BTreeMap, HashMap};

fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    HashMap::from([
        (
            labels::POD_NAME.to_string(),
            pod.metadata.name.clone().unwrap_or_default(),
        ),
        (
            labels::POD_NAMESPACE.to_string(),
            pod.metadata.namespace.clone().unwrap_or_default(),
        ),
        (
            labels::POD_UID.to_string(),
            pod.metadata.uid.clone().unwrap_or_default(),
        ),
    ])
}

/// The sandbox configuration for a pod.
pub fn sandbox_config(kubelet: &Kubelet, pod: &Pod, attempt: u32) -> api::PodSandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut labels = pod_labels(pod);
    for (k, v) in pod.metadata.labels.iter().flatten() {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let mut annotations: HashMap<String, String> = pod
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    annotations.insert(
        labels::GRACE_PERIOD.into(),
        spec.termination_grace_period_seconds
            .unwrap_or(30)
            .to_string(),
    );
    let host_network = spec.host_network.unwrap_or(false);
    let mut hostname = spec.hostname.clone().unwrap_or_else(|| name.clone());
    hostname.truncate(63);
    let hostname = hostname.trim_end_matches(['-', '.']).to_string();
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| api::PortMapping {
            protocol: protocol(p.protocol.as_deref()),
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let pod_sc = spec.security_context.clone().unwrap_or_default();
    let sysctls = pod_sc
        .sysctls
        .iter()
        .flatten()
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect();
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name,
            uid: uid.clone(),
            namespace,
            attempt,
        }),
        hostname: if host_network {
            String::new()
        } else {
            hostname
        },
        log_directory: kubelet
            .config
            .pod_logs_dir
            .join(log_dir_name(pod))
            .display()
            .to_string(),
        dns_config: Some(dns_config(kubelet, pod)),
        port_mappings,
        labels,
        annotations,
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: if kubelet.config.manage_host {
                crate::cgroups::pod_cgroup(&kubelet.config.cgroup_root, pod)
            } else {
                String::new()
            },
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(&spec)),
                run_as_user: pod_sc.run_as_user.map(|v| api::Int64Value { value: v }),
                run_as_group: pod_sc.run_as_group.map(|v| api::Int64Value { value: v }),
                supplemental_groups: pod_sc.supplemental_groups.clone().unwrap_or_default(),
                ..Default::default()
            }),
            sysctls,
            ..Default::default()
        }),
        windows: None,
    }
}

/// `<namespace>_<name>_<uid>`, the pod's log directory name under the logs dir.
pub fn log_dir_name(pod: &Pod) -> String {
    format!(
        "{}_{}_{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

fn namespace_options(spec: &k8s_openapi::api::core::v1::PodSpec) -> api::NamespaceOption {
    let node = api::NamespaceMode::Node as i32;
    api::NamespaceOption {
        network: if spec.host_network.unwrap_or(false) {
            node
        } else {
            api::NamespaceMode::Pod as i32
        },
        pid: if spec.host_pid.unwrap_or(false) {
            node
        } else if spec.share_process_namespace.unwrap_or(false) {
            api::NamespaceMode::Pod as i32
        } else {
            api::NamespaceMode::Container as i32
        },
        ipc: if spec.host_ipc.unwrap_or(false) {
            node
        } else {
            api::NamespaceMode::Pod as i32
        },
        ..Default::default()
    }
}

fn protocol(p: Option<&str>) -> i32 {
    match p {
        Some("UDP") => api::Protocol::Udp as i32,
        Some("SCTP") => api::Protocol::Sctp as i32,
        _ => api::Protocol::Tcp as i32,
    }
}

/// The resolver configuration for the pod's dnsPolicy, as upstream builds it.
pub fn dns_config(kubelet: &Kubelet, pod: &Pod) -> api::DnsConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec
        .dns_policy
        .clone()
        .unwrap_or_else(|| "ClusterFirst".into());
    let host_network = spec.host_network.unwrap_or(false);
    let host = host_resolv_conf();
    let cluster = match policy.as_str() {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let mut config = if policy == "None" {
        api::DnsConfig::default()
    } else if cluster && !kubelet.config.cluster_dns.is_empty() {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let domain = &kubelet.config.cluster_domain;
        let mut searches = vec![
            format!("{ns}.svc.{domain}"),
            format!("svc.{domain}"),
            domain.clone(),
        ];
        searches.extend(host.searches.iter().cloned());
        api::DnsConfig {
            servers: kubelet
                .config
                .cluster_dns
                .iter()
                .map(|ip| ip.to_string())
                .collect(),
            searches,
            options: vec!["ndots:5".into()],
        }
    } else {
        host
    };
    if let Some(extra) = &spec.dns_config {
        config
            .servers
            .extend(extra.nameservers.iter().flatten().cloned());
        config
            .searches
            .extend(extra.searches.iter().flatten().cloned());
        for option in extra.options.iter().flatten() {
            let Some(name) = &option.name else { continue };
            config
                .options
                .retain(|o| o.split(':').next() != Some(name.as_str()));
            config.options.push(match &option.value {
                Some(v) => format!("{name}:{v}"),
                None => name.clone(),
            });
        }
    }
    config.servers.truncate(3);
    config.searches.dedup();
    config.searches.truncate(32);
    config
}

fn host_resolv_conf() -> api::DnsConfig {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut config = api::DnsConfig::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => config.servers.extend(words.next().map(String::from)),
            Some("search") | Some("domain") => config.searches.extend(words.map(String::from)),
            Some("options") => config.options.extend(words.map(String::from)),
            _ => {}
        }
    }
    config
}

/// A pod field as `fieldRef` reads it; `None` for a path the API does not allow.
pub fn pod_field(pod: &Pod, path: &str, pod_ip: Option<&str>) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let subscript = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix("['").or_else(|| rest.strip_prefix("[\"")))
            .and_then(|rest| rest.strip_suffix("']").or_else(|| rest.strip_suffix("\"]")))
            .map(|key| map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    if let Some(v) = subscript("metadata.labels", meta.labels.as_ref()) {
        return Some(v);
    }
    if let Some(v) = subscript("metadata.annotations", meta.annotations.as_ref()) {
        return Some(v);
    }
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.node_name.clone().unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.clone().unwrap_or_default(),
        "status.hostIP" => status.host_ip.clone().unwrap_or_default(),
        "status.hostIPs" => status
            .host_ips
            .iter()
            .flatten()
            .map(|i| i.ip.clone())
            .collect::<Vec<_>>()
            .join(","),
        "status.podIP" => pod_ip
            .map(String::from)
            .or(status.pod_ip.clone())
            .unwrap_or_default(),
        "status.podIPs" => pod_ip
            .map(String::from)
            .or(status.pod_ip.clone())
            .unwrap_or_default(),
        _ => return None,
    })
}

/// A container resource as `resourceFieldRef` reads it, divided by the
/// divisor and rounded up as upstream does; a missing limit reads as the
/// node's allocatable.
pub fn resource_field(
    pod: &Pod,
    container: &str,
    field: &ResourceFieldSelector,
    node_allocatable: Option<&BTreeMap<String, f64>>,
) -> Result<String, String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let c = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == container || container.is_empty())
        .ok_or_else(|| format!("container {container} not found"))?;
    let resources = c.resources.clone().unwrap_or_default();
    let (map, resource) = match field.resource.split_once('.') {
        Some(("limits", r)) => (resources.limits.unwrap_or_default(), r.to_string()),
        Some(("requests", r)) => (resources.requests.unwrap_or_default(), r.to_string()),
        _ => return Err(format!("unsupported resource {}", field.resource)),
    };
    let value = match map.get(&resource) {
        Some(q) => parse_quantity(&q.0).ok_or_else(|| format!("invalid quantity {}", q.0))?,
        None if field.resource.starts_with("limits.") => node_allocatable
            .and_then(|a| a.get(&resource).copied())
            .unwrap_or(match resource.as_str() {
                "cpu" => crate::sys::cpus() as f64,
                "memory" => crate::sys::memory_bytes().0 as f64,
                _ => 0.0,
            }),
        None => 0.0,
    };
    let divisor = field
        .divisor
        .as_ref()
        .and_then(|d| parse_quantity(&d.0))
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    Ok(((value / divisor) - 1e-9)
        .ceil()
        .max(if value > 0.0 { 1.0 } else { 0.0 })
        .to_string())
}

/// A resource quantity as a number (`100m` → 0.1, `1Gi` → 1073741824),
/// parsed exactly by the shared `resource.Quantity`.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let q = skiff_api_types::quantity::Quantity::parse(text.trim()).ok()?;
    Some(q.nano_value() as f64 / 1e9)
}

/// Expands `$(NAME)` references from `env`; `$$` escapes, unknown names stay.
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(after) = after.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Docker-link style variables for the Services visible to the pod, as
/// upstream injects them when `enableServiceLinks` is on (the `kubernetes`
/// Service's always).
async fn service_env(kubelet: &Kubelet, pod: &Pod) -> Vec<(String, String)> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut services: BTreeMap<String, Service> = BTreeMap::new();
    if links {
        let api: Api<Service> = Api::namespaced(kubelet.client.clone(), &namespace);
        if let Ok(list) = api.list(&Default::default()).await {
            for s in list.items {
                services.insert(s.metadata.name.clone().unwrap_or_default(), s);
            }
        }
    }
    if namespace != "default" || !links {
        let api: Api<Service> = Api::namespaced(kubelet.client.clone(), "default");
        if let Ok(Some(s)) = api.get_opt("kubernetes").await {
            services.insert("kubernetes".into(), s);
        }
    }
    let mut env = Vec::new();
    for (name, service) in services {
        let spec = service.spec.unwrap_or_default();
        let Some(ip) = spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None") else {
            continue;
        };
        let prefix = name.to_uppercase().replace('-', "_");
        let ports = spec.ports.unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        env.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
        env.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(port_name) = &p.name {
                env.push((
                    format!(
                        "{prefix}_SERVICE_PORT_{}",
                        port_name.to_uppercase().replace('-', "_")
                    ),
                    p.port.to_string(),
                ));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        env.push((
            format!("{prefix}_PORT"),
            format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port),
        ));
        for p in &ports {
            let base = format!("{prefix}_PORT_{}_{}", p.port, proto(p));
            env.push((
                base.clone(),
                format!("{}://{ip}:{}", proto(p).to_lowercase(), p.port),
            ));
            env.push((format!("{base}_PROTO"), proto(p).to_lowercase()));
            env.push((format!("{base}_PORT"), p.port.to_string()));
            env.push((format!("{base}_ADDR"), ip.clone()));
        }
    }
    env
}

/// The container's environment, in upstream's order: service variables, then
/// `envFrom`, then `env` (later entries win; `$(VAR)` expands to earlier ones).
pub async fn environment(
    kubelet: &Kubelet,
    pod: &Pod,
    container: &Container,
    pod_ip: &str,
) -> Result<Vec<(String, String)>, String> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut env: Vec<(String, String)> = service_env(kubelet, pod).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(kubelet.client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(kubelet.client.clone(), &namespace);
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        if let Some(r) = &source.config_map_ref {
            match config_maps
                .get_opt(&r.name)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(cm) => env.extend(
                    cm.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (format!("{prefix}{k}"), v)),
                ),
                None if r.optional.unwrap_or(false) => {}
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        }
        if let Some(r) = &source.secret_ref {
            match secrets.get_opt(&r.name).await.map_err(|e| e.to_string())? {
                Some(s) => env.extend(s.data.unwrap_or_default().into_iter().map(|(k, v)| {
                    (
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(&v.0).into_owned(),
                    )
                })),
                None if r.optional.unwrap_or(false) => {}
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(from) = &var.value_from {
            if let Some(f) = &from.field_ref {
                pod_field(pod, &f.field_path, Some(pod_ip))
                    .ok_or_else(|| format!("unsupported fieldPath {}", f.field_path))?
            } else if let Some(r) = &from.resource_field_ref {
                let name = r
                    .container_name
                    .clone()
                    .unwrap_or_else(|| container.name.clone());
                resource_field(pod, &name, r, None)?
            } else if let Some(r) = &from.config_map_key_ref {
                match config_maps
                    .get_opt(&r.name)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    Some(cm) => match cm.data.unwrap_or_default().remove(&r.key) {
                        Some(v) => v,
                        None if r.optional.unwrap_or(false) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {namespace}/{}",
                                r.key, r.name
                            ));
                        }
                    },
                    None if r.optional.unwrap_or(false) => continue,
                    None => return Err(format!("configmap \"{}\" not found", r.name)),
                }
            } else if let Some(r) = &from.secret_key_ref {
                match secrets.get_opt(&r.name).await.map_err(|e| e.to_string())? {
                    Some(s) => match s.data.unwrap_or_default().remove(&r.key) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if r.optional.unwrap_or(false) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                r.key, r.name
                            ));
                        }
                    },
                    None if r.optional.unwrap_or(false) => continue,
                    None => return Err(format!("secret \"{}\" not found", r.name)),
                }
            } else {
                continue;
            }
        } else {
            expand(var.value.as_deref().unwrap_or_default(), &env)
        };
        env.retain(|(k, _)| k != &var.name);
        env.push((var.name.clone(), value));
    }
    Ok(env)
}

/// Paths upstream masks and makes read-only in unprivileged containers.
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Everything a container needs beyond the pod: its volumes and the pod's IP.
pub struct ContainerContext<'a> {
    pub volumes: &'a HashMap<String, Mounted>,
    pub pod_ip: &'a str,
    pub attempt: u32,
}

/// The CRI configuration for one container.
pub async fn container_config(
    kubelet: &Kubelet,
    pod: &Pod,
    container: &Container,
    image_ref: &str,
    ctx: &ContainerContext<'_>,
) -> Result<api::ContainerConfig, String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let env = environment(kubelet, pod, container, ctx.pod_ip).await?;
    let command = container
        .command
        .iter()
        .flatten()
        .map(|c| expand(c, &env))
        .collect();
    let args = container
        .args
        .iter()
        .flatten()
        .map(|c| expand(c, &env))
        .collect();

    let mut mounts = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let volume = ctx
            .volumes
            .get(&m.name)
            .ok_or_else(|| format!("volume \"{}\" is not set up", m.name))?;
        let mut host_path = volume.host_path.clone();
        if let Some(sub) = m.sub_path.as_ref().filter(|s| !s.is_empty()) {
            let sub = expand(sub, &env);
            if sub.split('/').any(|p| p == "..") || sub.starts_with('/') {
                return Err(format!(
                    "subPath {sub:?} must be a relative path without '..'"
                ));
            }
            host_path = host_path.join(&sub);
            if kubelet.config.manage_host && !host_path.exists() {
                std::fs::create_dir_all(&host_path).map_err(|e| e.to_string())?;
            }
        }
        mounts.push(api::Mount {
            container_path: m.mount_path.clone(),
            host_path: host_path.display().to_string(),
            readonly: m.read_only.unwrap_or(false) || volume.read_only,
            propagation: match m.mount_propagation.as_deref() {
                Some("HostToContainer") => api::MountPropagation::PropagationHostToContainer as i32,
                Some("Bidirectional") => api::MountPropagation::PropagationBidirectional as i32,
                _ => api::MountPropagation::PropagationPrivate as i32,
            },
            ..Default::default()
        });
    }
    let container_dir = kubelet
        .config
        .pod_dir(&uid)
        .join("containers")
        .join(&container.name);
    if kubelet.config.manage_host {
        // /etc/hosts with the pod's own name and hostAliases (not for host
        // network pods, which see the node's).
        if !spec.host_network.unwrap_or(false)
            && !mounts.iter().any(|m| m.container_path == "/etc/hosts")
        {
            let pod_dir = kubelet.config.pod_dir(&uid);
            std::fs::create_dir_all(&pod_dir)
                .map_err(|e| format!("creating {}: {e}", pod_dir.display()))?;
            let hosts = pod_dir.join("etc-hosts");
            std::fs::write(&hosts, etc_hosts(pod, ctx.pod_ip))
                .map_err(|e| format!("writing {}: {e}", hosts.display()))?;
            mounts.push(api::Mount {
                container_path: "/etc/hosts".into(),
                host_path: hosts.display().to_string(),
                ..Default::default()
            });
        }
        let path = container
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        if !path.is_empty() && !mounts.iter().any(|m| m.container_path == path) {
            std::fs::create_dir_all(&container_dir)
                .map_err(|e| format!("creating {}: {e}", container_dir.display()))?;
            let file = container_dir.join(format!("termination-{}", ctx.attempt));
            std::fs::write(&file, b"").map_err(|e| format!("writing {}: {e}", file.display()))?;
            mounts.push(api::Mount {
                container_path: path,
                host_path: file.display().to_string(),
                ..Default::default()
            });
        }
    }

    let sc = container.security_context.clone().unwrap_or_default();
    let pod_sc = spec.security_context.clone().unwrap_or_default();
    let privileged = sc.privileged.unwrap_or(false);
    let seccomp = sc
        .seccomp_profile
        .clone()
        .or(pod_sc.seccomp_profile.clone())
        .map(|p| api::SecurityProfile {
            profile_type: match p.type_.as_str() {
                "RuntimeDefault" => api::security_profile::ProfileType::RuntimeDefault as i32,
                "Localhost" => api::security_profile::ProfileType::Localhost as i32,
                _ => api::security_profile::ProfileType::Unconfined as i32,
            },
            localhost_ref: p
                .localhost_profile
                .map(|l| format!("/var/lib/kubelet/seccomp/{l}"))
                .unwrap_or_default(),
        });
    let caps = sc.capabilities.clone().unwrap_or_default();
    let security_context = api::LinuxContainerSecurityContext {
        capabilities: Some(api::Capability {
            add_capabilities: caps.add.unwrap_or_default(),
            drop_capabilities: caps.drop.unwrap_or_default(),
            ..Default::default()
        }),
        privileged,
        namespace_options: Some(namespace_options(&spec)),
        run_as_user: sc
            .run_as_user
            .or(pod_sc.run_as_user)
            .map(|value| api::Int64Value { value }),
        run_as_group: sc
            .run_as_group
            .or(pod_sc.run_as_group)
            .map(|value| api::Int64Value { value }),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: pod_sc.supplemental_groups.clone().unwrap_or_default(),
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        masked_paths: if privileged {
            Vec::new()
        } else {
            MASKED_PATHS.iter().map(|s| s.to_string()).collect()
        },
        readonly_paths: if privileged {
            Vec::new()
        } else {
            READONLY_PATHS.iter().map(|s| s.to_string()).collect()
        },
        seccomp,
        ..Default::default()
    };

    let mut labels = pod_labels(pod);
    labels.insert(labels::CONTAINER_NAME.into(), container.name.clone());
    let annotations = HashMap::from([(labels::RESTART_COUNT.to_string(), ctx.attempt.to_string())]);
    Ok(api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: container.name.clone(),
            attempt: ctx.attempt,
        }),
        image: Some(api::ImageSpec {
            image: image_ref.to_string(),
            ..Default::default()
        }),
        command,
        args,
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: env
            .into_iter()
            .map(|(key, value)| api::KeyValue { key, value })
            .collect(),
        mounts,
        labels,
        annotations,
        log_path: format!("{}/{}.log", container.name, ctx.attempt),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(api::LinuxContainerConfig {
            resources: Some(linux_resources(pod, container)),
            security_context: Some(security_context),
        }),
        ..Default::default()
    })
}

fn etc_hosts(pod: &Pod, pod_ip: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let hostname = spec
        .hostname
        .clone()
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    if !pod_ip.is_empty() {
        match &spec.subdomain {
            Some(sub) => text.push_str(&format!(
                "{pod_ip}\t{hostname}.{sub}.{}.svc.cluster.local\t{hostname}\n",
                pod.metadata.namespace.as_deref().unwrap_or("default")
            )),
            None => text.push_str(&format!("{pod_ip}\t{hostname}\n")),
        }
    }
    for alias in spec.host_aliases.iter().flatten() {
        text.push_str(&format!(
            "\n# Entries added by HostAliases.\n{}\t{}\n",
            alias.ip,
            alias.hostnames.clone().unwrap_or_default().join("\t")
        ));
    }
    text
}

/// Requests and limits as cgroup settings: cpu shares from the request, CFS
/// quota from the limit, the memory limit, and the OOM score for the QoS class.
pub fn linux_resources(pod: &Pod, container: &Container) -> api::LinuxContainerResources {
    let resources = container.resources.clone().unwrap_or_default();
    let get = |map: &Option<
        BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
               name: &str| {
        map.as_ref()
            .and_then(|m| m.get(name))
            .and_then(|q| parse_quantity(&q.0))
    };
    let cpu_request = get(&resources.requests, "cpu").or(get(&resources.limits, "cpu"));
    let cpu_limit = get(&resources.limits, "cpu");
    let memory_limit = get(&resources.limits, "memory");
    let memory_request = get(&resources.requests, "memory").or(memory_limit);
    let milli = |cores: f64| (cores * 1000.0).round() as i64;
    let oom = match crate::cgroups::qos_class(pod) {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            let capacity = crate::sys::memory_bytes().0.max(1) as f64;
            let score = 1000 - (1000.0 * memory_request.unwrap_or(0.0) / capacity) as i64;
            score.clamp(2, 999)
        }
    };
    api::LinuxContainerResources {
        cpu_period: if cpu_limit.is_some() { 100_000 } else { 0 },
        cpu_quota: cpu_limit.map(|l| (milli(l) * 100).max(1000)).unwrap_or(0),
        cpu_shares: cpu_request
            .map(|r| (milli(r) * 1024 / 1000).max(2))
            .unwrap_or(2),
        memory_limit_in_bytes: memory_limit.map(|m| m as i64).unwrap_or(0),
        oom_score_adj: oom,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "two".to_string()),
        ];
        assert_eq!(expand("$(A)-$(B)", &env), "1-two");
        assert_eq!(expand("$$(A) $(C)", &env), "$(A) $(C)");
        assert_eq!(expand("cost $5", &env), "cost $5");
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("100m"), Some(0.1));
        assert_eq!(parse_quantity("1Gi"), Some(1073741824.0));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("x"), None);
    }

    #[test]
    fn fields() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i", "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}}}]}
        }))
        .unwrap();
        assert_eq!(
            pod_field(&pod, "metadata.labels['app']", None).as_deref(),
            Some("web")
        );
        assert_eq!(
            pod_field(&pod, "spec.nodeName", None).as_deref(),
            Some("n1")
        );
        assert_eq!(
            pod_field(&pod, "status.podIP", Some("10.0.0.5")).as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(pod_field(&pod, "spec.bogus", None), None);
        let sel = |r: &str, d: Option<&str>| ResourceFieldSelector {
            container_name: Some("c".into()),
            resource: r.into(),
            divisor: d.map(|d| k8s_openapi::apimachinery::pkg::api::resource::Quantity(d.into())),
        };
        assert_eq!(
            resource_field(&pod, "c", &sel("limits.memory", Some("1Mi")), None).unwrap(),
            "64"
        );
        assert_eq!(
            resource_field(&pod, "c", &sel("limits.cpu", None), None).unwrap(),
            "1"
        );
        assert_eq!(
            resource_field(&pod, "c", &sel("limits.cpu", Some("1m")), None).unwrap(),
            "250"
        );
        let r = linux_resources(&pod, &pod.spec.as_ref().unwrap().containers[0]);
        assert_eq!(
            (
                r.cpu_quota,
                r.cpu_period,
                r.cpu_shares,
                r.memory_limit_in_bytes
            ),
            (25_000, 100_000, 256, 64 << 20)
        );
    }
}
