//! Services.

use std::collections::BTreeSet;

use super::meta::{
    dns1123_label_errors, object_meta_errors, object_meta_update_errors, qualified_name_errors,
    validate_labels,
};
use super::names::{is_dns1123_subdomain, is_valid_ip, name_is_dns1035_label};
use super::pods::{port_num_or_name_errors, protocol_errors};
use super::{BadValue, FieldError, Path};
use crate::k8s::api::core::v1::{Service, ServiceSpec};

/// The default `--service-node-port-range`.
const NODE_PORT_RANGE: (i32, i32) = (30000, 32767);
/// The kubelet's port, which a load balancer may not expose.
const KUBELET_PORT: i32 = 10250;
/// The longest client-IP session affinity upstream allows, in seconds.
const MAX_CLIENT_IP_AFFINITY_SECONDS: i32 = 86400;

/// Validates a service: ports (required unless headless or `ExternalName`, named
/// when several, valid numbers and target ports), type, session affinity, cluster
/// IPs, external IPs, node ports and traffic policies.
pub fn validate_service(service: &Service) -> Vec<FieldError> {
    let mut errs = object_meta_errors(
        &service.metadata,
        true,
        name_is_dns1035_label,
        &Path::new("metadata"),
    );
    errs.extend(service_spec_errors(service.spec.as_ref()));
    errs
}

/// Validates a service update: the primary cluster IP may not change once set
/// (an update that omits it keeps the stored one).
pub fn validate_service_update(new: &Service, old: &Service) -> Vec<FieldError> {
    let mut errs = object_meta_update_errors(&new.metadata, &old.metadata);
    errs.extend(service_spec_errors(new.spec.as_ref()));
    let default = ServiceSpec::default();
    let new_spec = new.spec.as_ref().unwrap_or(&default);
    let old_spec = old.spec.as_ref().unwrap_or(&default);
    let is_external_name = |s: &ServiceSpec| s.type_.as_deref() == Some("ExternalName");
    if is_external_name(new_spec) || is_external_name(old_spec) {
        return errs;
    }
    let old_ips = cluster_ips(old_spec);
    let new_ips = cluster_ips(new_spec);
    if let (Some(old_primary), Some(new_primary)) = (old_ips.first(), new_ips.first())
        && old_primary != new_primary
    {
        errs.push(FieldError::invalid(
            &Path::new("spec").child("clusterIPs").index(0),
            BadValue::string_list(&new_ips),
            "may not change once set",
        ));
    }
    errs
}

/// The cluster IPs a spec asks for: `clusterIPs`, or else `clusterIP`.
fn cluster_ips(spec: &ServiceSpec) -> Vec<String> {
    match (&spec.cluster_ips, spec.cluster_ip.as_deref()) {
        (Some(ips), _) if !ips.is_empty() => ips.clone(),
        (_, Some(ip)) if !ip.is_empty() => vec![ip.to_owned()],
        _ => Vec::new(),
    }
}

fn service_spec_errors(spec: Option<&ServiceSpec>) -> Vec<FieldError> {
    let default = ServiceSpec::default();
    let spec = spec.unwrap_or(&default);
    let path = Path::new("spec");
    let mut errs = Vec::new();
    let type_ = spec.type_.as_deref().unwrap_or_default();
    let ips = cluster_ips(spec);
    let headless = ips.first().is_some_and(|ip| ip == "None");
    let ports = spec.ports.as_deref().unwrap_or_default();
    let ports_path = path.child("ports");

    if ports.is_empty() && !headless && type_ != "ExternalName" {
        errs.push(FieldError::required(&ports_path, ""));
    }
    match type_ {
        "LoadBalancer" | "NodePort" => {
            if headless {
                errs.push(FieldError::invalid(
                    &path.child("clusterIPs").index(0),
                    "None",
                    format!("may not be set to 'None' for {type_} services"),
                ));
            }
            if type_ == "LoadBalancer" {
                for (i, port) in ports.iter().enumerate() {
                    if port.port == KUBELET_PORT {
                        errs.push(FieldError::invalid(
                            &ports_path.index(i),
                            port.port,
                            format!(
                                "may not expose port {KUBELET_PORT} externally since it is used by kubelet"
                            ),
                        ));
                    }
                }
            }
        }
        "ExternalName" => {
            if !ips.is_empty() {
                errs.push(FieldError::forbidden(
                    &path.child("clusterIPs"),
                    "may not be set for ExternalName services",
                ));
            }
            if spec.ip_families.as_ref().is_some_and(|f| !f.is_empty()) {
                errs.push(FieldError::forbidden(
                    &path.child("ipFamilies"),
                    "may not be set for ExternalName services",
                ));
            }
            if spec.ip_family_policy.is_some() {
                errs.push(FieldError::forbidden(
                    &path.child("ipFamilyPolicy"),
                    "may not be set for ExternalName services",
                ));
            }
            let name_path = path.child("externalName");
            let cname = spec.external_name.as_deref().unwrap_or_default();
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                errs.push(FieldError::required(&name_path, ""));
            } else {
                for msg in is_dns1123_subdomain(cname) {
                    errs.push(FieldError::invalid(&name_path, cname, msg));
                }
            }
        }
        _ => {}
    }

    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = ports_path.index(i);
        let name = port.name.as_deref().unwrap_or_default();
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        } else if !name.is_empty() {
            errs.extend(dns1123_label_errors(name, &p.child("name")));
            if !names.insert(name) {
                errs.push(FieldError::duplicate(&p.child("name"), name));
            }
        }
        for msg in super::names::is_valid_port_num(port.port.into()) {
            errs.push(FieldError::invalid(&p.child("port"), port.port, msg));
        }
        errs.extend(protocol_errors(
            port.protocol.as_deref(),
            &p.child("protocol"),
        ));
        // An unset target port is defaulted to the port.
        if let Some(target) = &port.target_port {
            errs.extend(port_num_or_name_errors(target, &p.child("targetPort")));
        }
        if let Some(app_protocol) = &port.app_protocol {
            errs.extend(qualified_name_errors(app_protocol, &p.child("appProtocol")));
        }
    }

    errs.extend(validate_labels(
        spec.selector.as_ref(),
        &path.child("selector"),
    ));

    let affinity = spec.session_affinity.as_deref().unwrap_or_default();
    let affinity_config_path = path.child("sessionAffinityConfig");
    match affinity {
        "" => {}
        "ClientIP" => {
            // Defaulting fills in the timeout; only a given one is checked.
            let timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            if let Some(t) = timeout.filter(|&t| t <= 0 || t > MAX_CLIENT_IP_AFFINITY_SECONDS) {
                errs.push(FieldError::invalid(
                    &affinity_config_path
                        .child("clientIP")
                        .child("timeoutSeconds"),
                    t,
                    format!(
                        "must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"
                    ),
                ));
            }
        }
        "None" => {
            if spec.session_affinity_config.is_some() {
                errs.push(FieldError::forbidden(
                    &affinity_config_path,
                    "must not be set when session affinity is None",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            &path.child("sessionAffinity"),
            other,
            &["ClientIP", "None"],
        )),
    }

    if type_ != "ExternalName" {
        errs.extend(cluster_ip_errors(spec, &path));
    }
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        for msg in is_valid_ip(ip) {
            errs.push(FieldError::invalid(
                &path.child("externalIPs").index(i),
                ip,
                msg,
            ));
        }
    }

    if !type_.is_empty()
        && !matches!(
            type_,
            "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
        )
    {
        errs.push(FieldError::not_supported(
            &path.child("type"),
            type_,
            &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"],
        ));
    }

    let mut node_ports = BTreeSet::new();
    let mut port_keys = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = ports_path.index(i);
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if let Some(node_port) = port.node_port.filter(|&n| n != 0) {
            if matches!(type_, "ClusterIP" | "") {
                errs.push(FieldError::forbidden(
                    &p.child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            } else if !(NODE_PORT_RANGE.0..=NODE_PORT_RANGE.1).contains(&node_port) {
                errs.push(FieldError::invalid(
                    &p.child("nodePort"),
                    node_port,
                    format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORT_RANGE.0, NODE_PORT_RANGE.1
                    ),
                ));
            }
            if !node_ports.insert((protocol, node_port)) {
                errs.push(FieldError::duplicate(&p.child("nodePort"), node_port));
            }
        }
        if !port_keys.insert((protocol, port.port)) {
            errs.push(FieldError::duplicate(
                &p,
                BadValue::json(&serde_json::json!({"port": port.port, "protocol": protocol})),
            ));
        }
    }

    let externally_accessible = matches!(type_, "LoadBalancer" | "NodePort")
        || (matches!(type_, "ClusterIP" | "")
            && spec
                .external_ips
                .as_ref()
                .is_some_and(|ips| !ips.is_empty()));
    let etp_path = path.child("externalTrafficPolicy");
    let etp = spec.external_traffic_policy.as_deref().unwrap_or_default();
    if !externally_accessible {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                &etp_path,
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if !etp.is_empty() && !matches!(etp, "Cluster" | "Local") {
        errs.push(FieldError::not_supported(
            &etp_path,
            etp,
            &["Cluster", "Local"],
        ));
    }
    let needs_health_check = type_ == "LoadBalancer" && etp == "Local";
    if let Some(hc) = spec.health_check_node_port.filter(|&hc| hc != 0)
        && !needs_health_check
    {
        errs.push(FieldError::invalid(
            &path.child("healthCheckNodePort"),
            hc,
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        ));
    }
    if let Some(itp) = spec.internal_traffic_policy.as_deref()
        && !matches!(itp, "Cluster" | "Local")
    {
        errs.push(FieldError::not_supported(
            &path.child("internalTrafficPolicy"),
            itp,
            &["Cluster", "Local"],
        ));
    }
    if let Some(lb_class) = &spec.load_balancer_class {
        if type_ != "LoadBalancer" {
            errs.push(FieldError::forbidden(
                &path.child("loadBalancerClass"),
                "may only be used when `type` is 'LoadBalancer'",
            ));
        } else {
            errs.extend(qualified_name_errors(
                lb_class,
                &path.child("loadBalancerClass"),
            ));
        }
    }
    errs
}

fn cluster_ip_errors(spec: &ServiceSpec, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ip = spec.cluster_ip.as_deref().unwrap_or_default();
    let list = spec.cluster_ips.as_deref().unwrap_or_default();
    let list_path = path.child("clusterIPs");
    if list.is_empty() {
        if !ip.is_empty() && ip != "None" {
            for msg in is_valid_ip(ip) {
                errs.push(FieldError::invalid(&path.child("clusterIP"), ip, msg));
            }
        }
    } else {
        if ip.is_empty() {
            errs.push(FieldError::invalid(
                &list_path,
                BadValue::string_list(list),
                "must be empty when `clusterIP` is not specified",
            ));
        } else if ip != list[0] {
            errs.push(FieldError::invalid(
                &list_path,
                BadValue::string_list(list),
                "first value must match `clusterIP`",
            ));
        }
        for (i, entry) in list.iter().enumerate() {
            if i == 0 && entry == "None" {
                continue;
            }
            for msg in is_valid_ip(entry) {
                errs.push(FieldError::invalid(&list_path.index(i), entry, msg));
            }
        }
        if list.len() > 2 {
            errs.push(FieldError::invalid(
                &list_path,
                BadValue::string_list(list),
                "may only hold up to 2 values",
            ));
        }
    }
    if let Some(policy) = spec.ip_family_policy.as_deref()
        && !matches!(
            policy,
            "SingleStack" | "PreferDualStack" | "RequireDualStack"
        )
    {
        errs.push(FieldError::not_supported(
            &path.child("ipFamilyPolicy"),
            policy,
            &["SingleStack", "PreferDualStack", "RequireDualStack"],
        ));
    }
    let families = spec.ip_families.as_deref().unwrap_or_default();
    let mut seen = BTreeSet::new();
    for (i, family) in families.iter().enumerate() {
        let p = path.child("ipFamilies").index(i);
        if !matches!(family.as_str(), "IPv4" | "IPv6") {
            errs.push(FieldError::not_supported(&p, family, &["IPv4", "IPv6"]));
        } else if !seen.insert(family.as_str()) {
            errs.push(FieldError::duplicate(&p, family));
        }
    }
    if families.len() > 2 {
        errs.push(FieldError::invalid(
            &path.child("ipFamilies"),
            BadValue::string_list(families),
            "may specify no more than one IP for each IP family, i.e 2 IPs",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn service(spec: Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "d"}, "spec": spec}))
            .unwrap()
    }

    fn messages(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_simple_service_is_valid() {
        let svc = service(
            json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}),
        );
        assert!(validate_service(&svc).is_empty());
    }

    #[test]
    fn service_names_are_dns1035_labels() {
        let mut svc = service(json!({"ports": [{"port": 80}]}));
        svc.metadata.name = Some("1web".into());
        assert_eq!(
            messages(validate_service(&svc)),
            vec![
                r#"metadata.name: Invalid value: "1web": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#
            ]
        );
    }

    #[test]
    fn ports_are_required_unless_headless_or_external_name() {
        assert_eq!(
            messages(validate_service(&service(json!({})))),
            vec!["spec.ports: Required value"]
        );
        assert!(validate_service(&service(json!({"clusterIP": "None"}))).is_empty());
        assert!(
            validate_service(&service(
                json!({"type": "ExternalName", "externalName": "db.example.com."})
            ))
            .is_empty()
        );
        assert_eq!(
            messages(validate_service(&service(json!({"type": "ExternalName"})))),
            vec!["spec.externalName: Required value"]
        );
    }

    #[test]
    fn several_ports_need_unique_names() {
        let svc = service(json!({"ports": [
            {"port": 80}, {"name": "a", "port": 0, "protocol": "HTTP"}, {"name": "a", "port": 81, "targetPort": "Web"},
        ]}));
        assert_eq!(
            messages(validate_service(&svc)),
            vec![
                "spec.ports[0].name: Required value",
                "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                r#"spec.ports[1].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP""#,
                r#"spec.ports[2].name: Duplicate value: "a""#,
                r#"spec.ports[2].targetPort: Invalid value: "Web": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"#,
            ]
        );
    }

    #[test]
    fn types_affinities_and_cluster_ips_are_checked() {
        let svc = service(json!({
            "type": "Magic", "sessionAffinity": "Sticky", "clusterIP": "10.0.0.300",
            "ports": [{"port": 80}],
        }));
        assert_eq!(
            messages(validate_service(&svc)),
            vec![
                r#"spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None""#,
                r#"spec.clusterIP: Invalid value: "10.0.0.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#,
                r#"spec.type: Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#,
            ]
        );
        let svc = service(json!({"sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}, "ports": [{"port": 80}]}));
        assert_eq!(
            messages(validate_service(&svc)),
            vec![
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400"
            ]
        );
    }

    #[test]
    fn node_ports_need_a_node_port_type_and_the_range() {
        let svc = service(json!({"ports": [{"port": 80, "nodePort": 30080}]}));
        assert_eq!(
            messages(validate_service(&svc)),
            vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
        );
        let svc = service(json!({"type": "NodePort", "ports": [
            {"name": "a", "port": 80, "nodePort": 80},
            {"name": "b", "port": 81, "nodePort": 30001},
            {"name": "c", "port": 81, "nodePort": 30001},
        ]}));
        assert_eq!(
            messages(validate_service(&svc)),
            vec![
                "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
                "spec.ports[2].nodePort: Duplicate value: 30001",
                r#"spec.ports[2]: Duplicate value: {"port":81,"protocol":"TCP"}"#,
            ]
        );
    }

    #[test]
    fn traffic_policies_follow_the_type() {
        let svc = service(json!({"externalTrafficPolicy": "Local", "ports": [{"port": 80}]}));
        assert_eq!(
            messages(validate_service(&svc)),
            vec![
                r#"spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services"#
            ]
        );
        let svc = service(
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "internalTrafficPolicy": "Nearby", "ports": [{"port": 80}]}),
        );
        assert_eq!(
            messages(validate_service(&svc)),
            vec![
                r#"spec.internalTrafficPolicy: Unsupported value: "Nearby": supported values: "Cluster", "Local""#
            ]
        );
    }

    #[test]
    fn the_cluster_ip_may_not_change() {
        let old = service(
            json!({"clusterIP": "10.0.0.10", "clusterIPs": ["10.0.0.10"], "ports": [{"port": 80}]}),
        );
        let mut new = old.clone();
        new.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 81;
        assert!(validate_service_update(&new, &old).is_empty());
        let omitted = service(json!({"ports": [{"port": 80}]}));
        assert!(validate_service_update(&omitted, &old).is_empty());
        let moved = service(
            json!({"clusterIP": "10.0.0.11", "clusterIPs": ["10.0.0.11"], "ports": [{"port": 80}]}),
        );
        assert_eq!(
            messages(validate_service_update(&moved, &old)),
            vec![
                r#"spec.clusterIPs[0]: Invalid value: []string{"10.0.0.11"}: may not change once set"#
            ]
        );
    }
}
