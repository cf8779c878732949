//! What the Endpoints and EndpointSlice controllers share: which Services
//! they manage (those with a selector, not ExternalName), which pods back a
//! Service (running, with an IP; terminating ones only where asked), how a
//! Service port's targetPort resolves on a pod (a number, or a container
//! port's name), and which Services a pod change concerns.

pub(crate) mod legacy;
pub(crate) mod mirroring;
pub(crate) mod slices;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_api_types::selector::LabelSelector;

use crate::cache::Changed;
use crate::pods;

/// The label Endpoints managed here carry so that the mirroring controller
/// leaves them alone.
pub(crate) const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Endpoints used as leader-election locks are neither deleted nor mirrored.
pub(crate) const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
/// The label a headless Service's endpoints carry.
pub(crate) const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// The selector of a Service this controller manages: `None` for
/// ExternalName Services, Services without a selector (their endpoints are
/// someone else's) and `default/kubernetes`.
pub(crate) fn managed_selector(svc: &Service) -> Option<LabelSelector> {
    // The API server keeps `default/kubernetes` pointing at itself.
    if svc.metadata.namespace.as_deref() == Some("default")
        && svc.metadata.name.as_deref() == Some("kubernetes")
    {
        return None;
    }
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    // An empty selector is no selector (upstream's JSON drops it).
    let selector = spec.selector.as_ref().filter(|s| !s.is_empty())?;
    LabelSelector::from_set(selector).ok()
}

/// `clusterIP: None`.
pub(crate) fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Upstream's `ShouldPodBeInEndpoints`: not finished, with an IP, and not
/// terminating unless terminating pods are included.
pub(crate) fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if matches!(pods::phase(pod), "Succeeded" | "Failed") {
        return false;
    }
    let status = pod.status.as_ref();
    let has_ip = status
        .and_then(|s| s.pod_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty())
        || status
            .and_then(|s| s.pod_ips.as_ref())
            .is_some_and(|ips| !ips.is_empty());
    if !has_ip {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// The pod's IP of `family` ("IPv4" or "IPv6").
pub(crate) fn pod_ip(pod: &Pod, family: &str) -> Option<String> {
    let status = pod.status.as_ref()?;
    let ips = status
        .pod_ips
        .iter()
        .flatten()
        .map(|i| i.ip.clone())
        .chain(status.pod_ip.clone());
    let v6 = family == "IPv6";
    ips.into_iter()
        .find(|ip| !ip.is_empty() && ip.contains(':') == v6)
}

/// The Service's IP families (IPv4 when unset).
pub(crate) fn families(svc: &Service) -> Vec<String> {
    let families = svc.spec.as_ref().and_then(|s| s.ip_families.clone());
    match families {
        Some(f) if !f.is_empty() => f,
        _ => vec!["IPv4".into()],
    }
}

/// The port a Service port's targetPort names on `pod` (upstream's
/// `FindPort`): a number as it is, a name looked up among the containers'
/// ports (sidecars' too) with the same protocol.
pub(crate) fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(0)) => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// A pod's hostname is published when its subdomain names the Service.
pub(crate) fn hostname_for(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_ref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace)
        .then(|| hostname.clone())
}

/// A reference to the pod, as endpoints carry it.
pub(crate) fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// The pods of the Service's namespace its selector matches.
pub(crate) fn selected(pods: &[Arc<Pod>], selector: &LabelSelector) -> Vec<Arc<Pod>> {
    let empty = BTreeMap::new();
    pods.iter()
        .filter(|p| selector.matches(p.metadata.labels.as_ref().unwrap_or(&empty)))
        .cloned()
        .collect()
}

/// What of a pod endpoints are made of.
fn endpoint_view(pod: &Pod) -> impl PartialEq + '_ {
    (
        pod.status.as_ref().map(|s| (&s.pod_ip, &s.pod_ips)),
        pods::is_ready(pod),
        pod.metadata.deletion_timestamp.is_some(),
        pods::phase(pod),
        pod.spec
            .as_ref()
            .map(|s| (&s.node_name, &s.hostname, &s.subdomain)),
        &pod.metadata.labels,
    )
}

/// The Services of the pod's namespace selecting it.
fn selecting(pod: &Pod, services: &Store<Service>) -> Vec<ObjectRef<Service>> {
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    services
        .state()
        .iter()
        .filter(|s| s.metadata.namespace == pod.metadata.namespace)
        .filter(|s| managed_selector(s).is_some_and(|sel| sel.matches(labels)))
        .map(|s| ObjectRef::from_obj(&**s))
        .collect()
}

/// Which Services a pod change concerns: those selecting it before or
/// after, when something endpoints show changed.
pub(crate) fn services_for_pod_change(
    change: &Changed<Pod>,
    services: &Store<Service>,
) -> Vec<ObjectRef<Service>> {
    match change {
        Changed::Added(p) | Changed::Deleted(p) => selecting(p, services),
        Changed::Updated { old, new } => {
            if endpoint_view(old) == endpoint_view(new) {
                return Vec::new();
            }
            let mut refs = selecting(new, services);
            if old.metadata.labels != new.metadata.labels {
                for r in selecting(old, services) {
                    if !refs.contains(&r) {
                        refs.push(r);
                    }
                }
            }
            refs
        }
    }
}

/// Labels of the objects made for `svc`: its own, with `extra`, and the
/// headless label for a headless Service.
pub(crate) fn labels_for(svc: &Service, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    labels.remove(HEADLESS_LABEL);
    for (k, v) in extra {
        labels.insert((*k).to_owned(), (*v).to_owned());
    }
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

#[cfg(test)]
pub(crate) mod testing {
    //! Services and pods for tests.
    use k8s_openapi::api::core::v1::{Pod, Service};
    use serde_json::json;

    /// Service `web` selecting app=web with port http → targetPort `target`.
    pub fn service(target: serde_json::Value, publish_not_ready: bool) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid", "labels": {"team": "a"}},
            "spec": {
                "selector": {"app": "web"},
                "clusterIP": "10.0.0.10",
                "publishNotReadyAddresses": publish_not_ready,
                "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": target}],
            },
        }))
        .unwrap()
    }

    /// A running pod with app=web, container port `http` = 8080.
    pub fn pod(name: &str, ip: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {
                "nodeName": "node-a",
                "containers": [{"name": "app", "image": "x", "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}],
            },
            "status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            },
        }))
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{pod, service};
    use super::*;
    use serde_json::json;

    #[test]
    fn named_target_ports_resolve_on_the_pods_containers() {
        let svc = service(json!("http"), false);
        let port = &svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
        assert_eq!(find_port(&pod("a", "10.1.0.1", true), port), Some(8080));
        let mut other = pod("b", "10.1.0.2", true);
        other.spec.as_mut().unwrap().containers[0].ports = None;
        assert_eq!(find_port(&other, port), None);
        let numeric = service(json!(9090), false);
        let port = &numeric.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
        assert_eq!(find_port(&other, port), Some(9090));
    }

    #[test]
    fn pods_without_an_ip_finished_or_terminating_are_left_out() {
        let mut p = pod("a", "10.1.0.1", true);
        assert!(should_be_in_endpoints(&p, false));
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        assert!(!should_be_in_endpoints(&p, false));
        assert!(should_be_in_endpoints(&p, true));
        let mut no_ip = pod("b", "", true);
        no_ip.status.as_mut().unwrap().pod_ips = None;
        assert!(!should_be_in_endpoints(&no_ip, true));
        let mut done = pod("c", "10.1.0.3", false);
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(!should_be_in_endpoints(&done, true));
    }

    #[test]
    fn services_without_a_selector_or_of_type_external_name_are_not_managed() {
        let mut svc = service(json!(80), false);
        assert!(managed_selector(&svc).is_some());
        svc.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
        assert!(managed_selector(&svc).is_none());
        let mut bare = service(json!(80), false);
        bare.spec.as_mut().unwrap().selector = None;
        assert!(managed_selector(&bare).is_none());
        let mut kubernetes = service(json!(443), false);
        kubernetes.metadata.name = Some("kubernetes".into());
        kubernetes.metadata.namespace = Some("default".into());
        assert!(managed_selector(&kubernetes).is_none());
    }

    #[test]
    fn the_pod_ip_of_each_family_is_found() {
        let mut p = pod("a", "10.1.0.1", true);
        p.status.as_mut().unwrap().pod_ips = Some(vec![
            k8s_openapi::api::core::v1::PodIP {
                ip: "10.1.0.1".into(),
            },
            k8s_openapi::api::core::v1::PodIP {
                ip: "fd00::1".into(),
            },
        ]);
        assert_eq!(pod_ip(&p, "IPv4").as_deref(), Some("10.1.0.1"));
        assert_eq!(pod_ip(&p, "IPv6").as_deref(), Some("fd00::1"));
    }
}
