//! Server-side `Table` columns, as upstream's printers
//! (`pkg/printers/internalversion/printers.go`) define them for `kubectl get`.
//!
//! Every cell reads the stored JSON object; a missing field reads as Go's zero
//! value (empty string, 0, false, empty list), so no object can make a cell
//! panic. The API server generates tables with `Wide: true`, so every column,
//! including the `-o wide` ones (priority 1), always gets its cell.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::time::{format_rfc3339, human_duration, since, timestamp};
use super::{CellContext, Column};

// ---------------------------------------------------------------------------
// JSON access
// ---------------------------------------------------------------------------

/// The value at `path`, if every step exists and is not `null`.
pub(crate) fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    (!cur.is_null()).then_some(cur)
}

/// The string at `path`, or `""`.
pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or("")
}

/// The integer at `path`, if present.
pub(crate) fn opt_int(v: &Value, path: &[&str]) -> Option<i64> {
    let x = get(v, path)?;
    x.as_i64().or_else(|| x.as_f64().map(|f| f as i64))
}

/// The integer at `path`, or 0.
pub(crate) fn int_at(v: &Value, path: &[&str]) -> i64 {
    opt_int(v, path).unwrap_or(0)
}

/// The boolean at `path`, if present.
pub(crate) fn opt_bool(v: &Value, path: &[&str]) -> Option<bool> {
    get(v, path).and_then(Value::as_bool)
}

/// The boolean at `path`, or `false`.
pub(crate) fn bool_at(v: &Value, path: &[&str]) -> bool {
    opt_bool(v, path).unwrap_or(false)
}

/// The list at `path`, or an empty one.
pub(crate) fn arr_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The map at `path`, if present.
fn map_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    get(v, path).and_then(Value::as_object)
}

/// The number of entries of the list or map at `path`.
fn len_at(v: &Value, path: &[&str]) -> i64 {
    match get(v, path) {
        Some(Value::Array(a)) => a.len() as i64,
        Some(Value::Object(m)) => m.len() as i64,
        _ => 0,
    }
}

/// The field is present and not `null` (Go: pointer is non-nil).
fn has(v: &Value, path: &[&str]) -> bool {
    get(v, path).is_some()
}

/// A scalar printed as Go prints it with `%v`/`String()`: strings as they
/// are, numbers in decimal (an `IntOrString` or a `Quantity`).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// A `resource.Quantity` field as upstream's `Quantity.String()` prints it:
/// the stored (canonical) form, `"0"` when unset.
fn quantity(v: &Value, path: &[&str]) -> String {
    get(v, path).map(scalar).unwrap_or_else(|| "0".to_string())
}

fn deleting(o: &Value) -> bool {
    has(o, &["metadata", "deletionTimestamp"])
}

fn text(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s.to_string()
    }
}

// ---------------------------------------------------------------------------
// Shared formatting helpers (upstream's labels/selector/container helpers)
// ---------------------------------------------------------------------------

/// The object's AGE: time since `metadata.creationTimestamp`.
fn age(o: &Value, c: &CellContext) -> Value {
    text(since(
        timestamp(get(o, &["metadata", "creationTimestamp"])),
        c.now,
    ))
}

/// `labels.FormatLabels`: sorted `k=v` pairs joined by `,`, or `<none>`.
pub(crate) fn format_labels(m: Option<&Map<String, Value>>) -> String {
    let mut pairs: Vec<String> = m
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", scalar(v)))
        .collect();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort();
    pairs.join(",")
}

/// `metav1.LabelSelectorAsSelector(sel).String()`: `None` when the selector is
/// invalid; `""` for a nil or empty selector.
pub(crate) fn selector_string(sel: Option<&Value>) -> Option<String> {
    let Some(sel) = sel.filter(|s| s.is_object()) else {
        return Some(String::new());
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in map_at(sel, &["matchLabels"]).into_iter().flatten() {
        reqs.push((k.clone(), format!("{k}={}", scalar(v))));
    }
    for expr in arr_at(sel, &["matchExpressions"]) {
        let key = str_at(expr, &["key"]);
        let mut values: Vec<String> = arr_at(expr, &["values"]).iter().map(scalar).collect();
        values.sort();
        let rendered = match str_at(expr, &["operator"]) {
            "In" if !values.is_empty() => format!("{key} in ({})", values.join(",")),
            "NotIn" if !values.is_empty() => format!("{key} notin ({})", values.join(",")),
            "Exists" if values.is_empty() => key.to_string(),
            "DoesNotExist" if values.is_empty() => format!("!{key}"),
            _ => return None,
        };
        reqs.push((key.to_string(), rendered));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Some(
        reqs.into_iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// `metav1.FormatLabelSelector`: the selector string, `<none>` when empty,
/// `<error>` when invalid.
pub(crate) fn format_label_selector(sel: Option<&Value>) -> String {
    match selector_string(sel) {
        None => "<error>".to_string(),
        Some(s) if s.is_empty() => "<none>".to_string(),
        Some(s) => s,
    }
}

/// `layoutContainerCells`: container names and images, each joined by `,`.
fn container_cells(containers: &[Value]) -> (String, String) {
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

fn container_names(o: &Value, path: &[&str]) -> Value {
    text(container_cells(arr_at(o, path)).0)
}

fn container_images(o: &Value, path: &[&str]) -> Value {
    text(container_cells(arr_at(o, path)).1)
}

/// `listWithMoreString`: at most `max` items, then `+ N more...`; `<unset>`
/// when there are none.
fn list_with_more(list: &[String], count: usize, max: usize) -> String {
    let ret = list.join(",");
    if count > max {
        return format!("{ret} + {} more...", count - max);
    }
    if ret.is_empty() {
        "<unset>".to_string()
    } else {
        ret
    }
}

/// Upstream's load-balancer status stringer (wide form: never clipped):
/// the sorted, de-duplicated IPs or hostnames of `status.loadBalancer`.
fn load_balancer_addresses(o: &Value) -> String {
    let mut seen = BTreeSet::new();
    for ing in arr_at(o, &["status", "loadBalancer", "ingress"]) {
        let ip = str_at(ing, &["ip"]);
        let host = str_at(ing, &["hostname"]);
        if !ip.is_empty() {
            seen.insert(ip.to_string());
        } else if !host.is_empty() {
            seen.insert(host.to_string());
        }
    }
    seen.into_iter().collect::<Vec<_>>().join(",")
}

/// `helper.GetAccessModesAsString`.
fn access_modes(modes: &[Value]) -> String {
    let has_mode = |m: &str| modes.iter().any(|x| x.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| has_mode(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// Storage class of a PV or PVC: the beta annotation wins over the field.
fn storage_class(o: &Value) -> String {
    if let Some(v) = get(
        o,
        &[
            "metadata",
            "annotations",
            "volume.beta.kubernetes.io/storage-class",
        ],
    ) {
        return scalar(v);
    }
    str_at(o, &["spec", "storageClassName"]).to_string()
}

fn condition_true(conditions: &[Value], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| str_at(c, &["type"]) == type_ && str_at(c, &["status"]) == "True")
}

/// `printBoolPtr`: `True`/`False`, or `<unset>`.
fn bool_ptr(v: Option<bool>) -> String {
    match v {
        Some(true) => "True".to_string(),
        Some(false) => "False".to_string(),
        None => "<unset>".to_string(),
    }
}

// ---------------------------------------------------------------------------
// Column definitions
// ---------------------------------------------------------------------------

/// The swagger doc of `ObjectMeta.name`, upstream's description of every NAME column.
pub(crate) const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// The swagger doc of `ObjectMeta.creationTimestamp`, upstream's description of AGE.
pub(crate) const AGE_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

const CONTAINERS_DOC: &str = "Names of each container in the template.";
const IMAGES_DOC: &str = "Images referenced by each container in the template.";
const SELECTOR_DOC: &str = "A label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this controller.";

const fn col(
    name: &'static str,
    type_: &'static str,
    description: &'static str,
    cell: fn(&Value, &CellContext) -> Value,
) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
        cell,
    }
}

const fn wide(
    name: &'static str,
    type_: &'static str,
    description: &'static str,
    cell: fn(&Value, &CellContext) -> Value,
) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 1,
        cell,
    }
}

/// The NAME column: `metadata.name`.
const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: NAME_DOC,
    priority: 0,
    cell: |o, _| text(str_at(o, &["metadata", "name"])),
};

const AGE: Column = col("Age", "string", AGE_DOC, age);

/// Upstream's default table (`rest.NewDefaultTableConvertor`) for kinds that
/// have no printer: the name and the RFC 3339 creation timestamp.
pub(crate) const DEFAULT_COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Created At",
        type_: "date",
        format: "",
        description: AGE_DOC,
        priority: 0,
        cell: |o, _| {
            let at = timestamp(get(o, &["metadata", "creationTimestamp"]));
            text(format_rfc3339(at.unwrap_or(-62_135_596_800)))
        },
    },
];

// --- core/v1 ---------------------------------------------------------------

pub(crate) const POD_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
        |o, _| {
            let s = PodSummary::of(o);
            text(format!("{}/{}", s.ready, s.total))
        },
    ),
    col(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
        |o, _| text(PodSummary::of(o).reason),
    ),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        |o, c| {
            let s = PodSummary::of(o);
            match s.last_restart {
                Some(t) if s.restarts != 0 => {
                    text(format!("{} ({} ago)", s.restarts, since(Some(t), c.now)))
                }
                _ => text(s.restarts.to_string()),
            }
        },
    ),
    AGE,
    wide(
        "IP",
        "string",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
        |o, _| {
            // The v1 `podIP` is the first of `podIPs`; upstream converts one into the other.
            let ip = match arr_at(o, &["status", "podIPs"]).first() {
                Some(p) => str_at(p, &["ip"]),
                None => str_at(o, &["status", "podIP"]),
            };
            text(or_none(ip))
        },
    ),
    wide(
        "Node",
        "string",
        "NodeName indicates in which node this pod is scheduled.",
        |o, _| text(or_none(str_at(o, &["spec", "nodeName"]))),
    ),
    wide(
        "Nominated Node",
        "string",
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
        |o, _| text(or_none(str_at(o, &["status", "nominatedNodeName"]))),
    ),
    wide(
        "Readiness Gates",
        "string",
        "If specified, all readiness gates will be evaluated for pod readiness.",
        |o, _| {
            let gates = arr_at(o, &["spec", "readinessGates"]);
            if gates.is_empty() {
                return text("<none>");
            }
            let conditions = arr_at(o, &["status", "conditions"]);
            let true_count = gates
                .iter()
                .filter(|g| {
                    let t = str_at(g, &["conditionType"]);
                    conditions
                        .iter()
                        .find(|c| str_at(c, &["type"]) == t)
                        .is_some_and(|c| str_at(c, &["status"]) == "True")
                })
                .count();
            text(format!("{true_count}/{}", gates.len()))
        },
    ),
];

/// What upstream's `printPod` computes for READY, STATUS and RESTARTS.
struct PodSummary {
    ready: i64,
    total: i64,
    reason: String,
    restarts: i64,
    last_restart: Option<i64>,
}

impl PodSummary {
    fn of(pod: &Value) -> PodSummary {
        let init_specs = arr_at(pod, &["spec", "initContainers"]);
        let conditions = arr_at(pod, &["status", "conditions"]);
        let is_sidecar = |c: &Value| str_at(c, &["restartPolicy"]) == "Always";
        let sidecar_named = |name: &str| {
            init_specs
                .iter()
                .rev()
                .find(|c| str_at(c, &["name"]) == name)
                .is_some_and(is_sidecar)
        };
        let last_terminated =
            |cs: &Value| timestamp(get(cs, &["lastState", "terminated", "finishedAt"]));

        let total = arr_at(pod, &["spec", "containers"]).len() as i64
            + init_specs.iter().filter(|c| is_sidecar(c)).count() as i64;
        let mut ready = 0;
        let phase = str_at(pod, &["status", "phase"]);
        let status_reason = str_at(pod, &["status", "reason"]);
        let mut reason = if status_reason.is_empty() {
            phase
        } else {
            status_reason
        }
        .to_string();
        if conditions.iter().any(|c| {
            str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated"
        }) {
            reason = "SchedulingGated".to_string();
        }

        let mut restarts = 0;
        let mut sidecar_restarts = 0;
        let mut last_restart: Option<i64> = None;
        let mut last_sidecar_restart: Option<i64> = None;
        let mut initializing = false;
        for (i, cs) in arr_at(pod, &["status", "initContainerStatuses"])
            .iter()
            .enumerate()
        {
            let count = int_at(cs, &["restartCount"]);
            restarts += count;
            let finished = last_terminated(cs);
            last_restart = last_restart.max(finished);
            let sidecar = sidecar_named(str_at(cs, &["name"]));
            if sidecar {
                sidecar_restarts += count;
                last_sidecar_restart = last_sidecar_restart.max(finished);
            }
            let terminated = get(cs, &["state", "terminated"]);
            let waiting_reason = str_at(cs, &["state", "waiting", "reason"]);
            if let Some(t) = terminated
                && int_at(t, &["exitCode"]) == 0
            {
                continue;
            }
            if sidecar && bool_at(cs, &["started"]) {
                if bool_at(cs, &["ready"]) {
                    ready += 1;
                }
                continue;
            }
            reason = if let Some(t) = terminated {
                let r = str_at(t, &["reason"]);
                if !r.is_empty() {
                    format!("Init:{r}")
                } else if int_at(t, &["signal"]) != 0 {
                    format!("Init:Signal:{}", int_at(t, &["signal"]))
                } else {
                    format!("Init:ExitCode:{}", int_at(t, &["exitCode"]))
                }
            } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
                format!("Init:{waiting_reason}")
            } else {
                format!("Init:{i}/{}", init_specs.len())
            };
            initializing = true;
            break;
        }

        if !initializing || condition_true(conditions, "Initialized") {
            restarts = sidecar_restarts;
            last_restart = last_sidecar_restart;
            let mut has_running = false;
            for cs in arr_at(pod, &["status", "containerStatuses"]).iter().rev() {
                restarts += int_at(cs, &["restartCount"]);
                last_restart = last_restart.max(last_terminated(cs));
                let waiting_reason = str_at(cs, &["state", "waiting", "reason"]);
                if !waiting_reason.is_empty() {
                    reason = waiting_reason.to_string();
                } else if let Some(t) = get(cs, &["state", "terminated"]) {
                    let r = str_at(t, &["reason"]);
                    reason = if !r.is_empty() {
                        r.to_string()
                    } else if int_at(t, &["signal"]) != 0 {
                        format!("Signal:{}", int_at(t, &["signal"]))
                    } else {
                        format!("ExitCode:{}", int_at(t, &["exitCode"]))
                    };
                } else if bool_at(cs, &["ready"]) && has(cs, &["state", "running"]) {
                    has_running = true;
                    ready += 1;
                }
            }
            if reason == "Completed" && has_running {
                reason = if condition_true(conditions, "Ready") {
                    "Running"
                } else {
                    "NotReady"
                }
                .to_string();
            }
        }

        if deleting(pod) && status_reason == "NodeLost" {
            reason = "Unknown".to_string();
        } else if deleting(pod) && phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".to_string();
        }
        PodSummary {
            ready,
            total,
            reason,
            restarts,
            last_restart,
        }
    }
}

pub(crate) const POD_TEMPLATE_COLUMNS: &[Column] = &[
    NAME,
    col("Containers", "string", CONTAINERS_DOC, |o, _| {
        container_names(o, &["template", "spec", "containers"])
    }),
    col("Images", "string", IMAGES_DOC, |o, _| {
        container_images(o, &["template", "spec", "containers"])
    }),
    col(
        "Pod Labels",
        "string",
        "The labels for the pod template.",
        |o, _| {
            text(format_labels(map_at(
                o,
                &["template", "metadata", "labels"],
            )))
        },
    ),
];

pub(crate) const REPLICATION_CONTROLLER_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas.",
        |o, _| int_at(o, &["spec", "replicas"]).into(),
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
        |o, _| int_at(o, &["status", "replicas"]).into(),
    ),
    col(
        "Ready",
        "integer",
        "The number of ready replicas for this replication controller.",
        |o, _| int_at(o, &["status", "readyReplicas"]).into(),
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC, |o, _| {
        container_names(o, &["spec", "template", "spec", "containers"])
    }),
    wide("Images", "string", IMAGES_DOC, |o, _| {
        container_images(o, &["spec", "template", "spec", "containers"])
    }),
    wide("Selector", "string", SELECTOR_DOC, |o, _| {
        text(format_labels(map_at(o, &["spec", "selector"])))
    }),
];

pub(crate) const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "type determines how the Service is exposed.",
        |o, _| text(str_at(o, &["spec", "type"])),
    ),
    col(
        "Cluster-IP",
        "string",
        "clusterIP is the IP address of the service and is usually assigned randomly.",
        |o, _| {
            // The v1 `clusterIP` is the first of `clusterIPs`; upstream converts one into the other.
            match arr_at(o, &["spec", "clusterIPs"]).first() {
                Some(ip) => text(ip.as_str().unwrap_or("")),
                None => text(or_none(str_at(o, &["spec", "clusterIP"]))),
            }
        },
    ),
    col(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
        |o, _| text(service_external_ip(o)),
    ),
    col(
        "Port(s)",
        "string",
        "The list of ports that are exposed by this service.",
        |o, _| {
            let ports: Vec<String> = arr_at(o, &["spec", "ports"])
                .iter()
                .map(|p| {
                    let (port, proto) = (int_at(p, &["port"]), str_at(p, &["protocol"]));
                    match int_at(p, &["nodePort"]) {
                        np if np > 0 => format!("{port}:{np}/{proto}"),
                        _ => format!("{port}/{proto}"),
                    }
                })
                .collect();
            text(or_none(&ports.join(",")))
        },
    ),
    AGE,
    wide(
        "Selector",
        "string",
        "Route service traffic to pods with label keys and values matching this selector.",
        |o, _| text(format_labels(map_at(o, &["spec", "selector"]))),
    ),
];

/// `getServiceExternalIP` with `wide` set.
fn service_external_ip(o: &Value) -> String {
    let external: Vec<&str> = arr_at(o, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match str_at(o, &["spec", "type"]) {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".to_string()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let lb = load_balancer_addresses(o);
            if !external.is_empty() {
                let mut all: Vec<&str> = if lb.is_empty() {
                    Vec::new()
                } else {
                    lb.split(',').collect()
                };
                all.extend(external);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => str_at(o, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

pub(crate) const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets.",
        |o, _| text(format_endpoints(o)),
    ),
    AGE,
];

/// `formatEndpoints` for all ports: up to three `ip:port`, then `+ N more...`.
fn format_endpoints(o: &Value) -> String {
    let subsets = arr_at(o, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let (mut more, mut count) = (false, 0usize);
    for ss in subsets {
        let addresses = arr_at(ss, &["addresses"]);
        let ports = arr_at(ss, &["ports"]);
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(str_at(a, &["ip"]).to_string());
            }
            continue;
        }
        for p in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                let ip = str_at(a, &["ip"]);
                let port = int_at(p, &["port"]);
                list.push(if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                });
            }
        }
    }
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", count - MAX)
    } else {
        ret
    }
}

pub(crate) const NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node", |o, _| {
        let mut status: Vec<String> = Vec::new();
        if let Some(c) = arr_at(o, &["status", "conditions"])
            .iter()
            .rev()
            .find(|c| str_at(c, &["type"]) == "Ready")
        {
            status.push(
                if str_at(c, &["status"]) == "True" {
                    "Ready"
                } else {
                    "NotReady"
                }
                .to_string(),
            );
        }
        if status.is_empty() {
            status.push("Unknown".to_string());
        }
        if bool_at(o, &["spec", "unschedulable"]) {
            status.push("SchedulingDisabled".to_string());
        }
        text(status.join(","))
    }),
    col("Roles", "string", "The roles of the node", |o, _| {
        let mut roles = BTreeSet::new();
        for (k, v) in map_at(o, &["metadata", "labels"]).into_iter().flatten() {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role" && !scalar(v).is_empty() {
                roles.insert(scalar(v));
            }
        }
        text(or_none(&roles.into_iter().collect::<Vec<_>>().join(",")))
    }),
    AGE,
    col(
        "Version",
        "string",
        "Kubelet Version reported by the node.",
        |o, _| text(str_at(o, &["status", "nodeInfo", "kubeletVersion"])),
    ),
    wide(
        "Internal-IP",
        "string",
        "List of addresses reachable to the node.",
        |o, _| text(node_address(o, "InternalIP")),
    ),
    wide(
        "External-IP",
        "string",
        "List of addresses reachable to the node.",
        |o, _| text(node_address(o, "ExternalIP")),
    ),
    wide(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
        |o, _| {
            text(unknown_if_empty(str_at(
                o,
                &["status", "nodeInfo", "osImage"],
            )))
        },
    ),
    wide(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
        |o, _| {
            text(unknown_if_empty(str_at(
                o,
                &["status", "nodeInfo", "kernelVersion"],
            )))
        },
    ),
    wide(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
        |o, _| {
            text(unknown_if_empty(str_at(
                o,
                &["status", "nodeInfo", "containerRuntimeVersion"],
            )))
        },
    ),
];

fn unknown_if_empty(s: &str) -> &str {
    if s.is_empty() { "<unknown>" } else { s }
}

fn node_address(o: &Value, type_: &str) -> String {
    arr_at(o, &["status", "addresses"])
        .iter()
        .find(|a| str_at(a, &["type"]) == type_)
        .map(|a| str_at(a, &["address"]).to_string())
        .unwrap_or_else(|| "<none>".to_string())
}

/// Core `v1` events and `events.k8s.io/v1` events share storage and printer;
/// the latter names some fields differently.
fn ev<'a>(o: &'a Value, core: &[&str], events_v1: &[&str]) -> Option<&'a Value> {
    get(o, core).or_else(|| get(o, events_v1))
}

fn ev_str<'a>(o: &'a Value, core: &[&str], events_v1: &[&str]) -> &'a str {
    ev(o, core, events_v1).and_then(Value::as_str).unwrap_or("")
}

fn event_first_seen(o: &Value, c: &CellContext) -> String {
    match timestamp(ev(o, &["firstTimestamp"], &["deprecatedFirstTimestamp"])) {
        Some(t) => since(Some(t), c.now),
        None => since(timestamp(get(o, &["eventTime"])), c.now),
    }
}

fn event_last_seen(o: &Value, c: &CellContext) -> String {
    if has(o, &["series"]) {
        return since(timestamp(get(o, &["series", "lastObservedTime"])), c.now);
    }
    match timestamp(ev(o, &["lastTimestamp"], &["deprecatedLastTimestamp"])) {
        Some(t) => since(Some(t), c.now),
        None => event_first_seen(o, c),
    }
}

pub(crate) const EVENT_COLUMNS: &[Column] = &[
    col(
        "Last Seen",
        "string",
        "The time at which the most recent occurrence of this event was recorded.",
        |o, c| text(event_last_seen(o, c)),
    ),
    col(
        "Type",
        "string",
        "Type of this event (Normal, Warning), new types could be added in the future",
        |o, _| text(str_at(o, &["type"])),
    ),
    col(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
        |o, _| text(str_at(o, &["reason"])),
    ),
    col(
        "Object",
        "string",
        "The object that this event is about.",
        |o, _| {
            let kind =
                ev_str(o, &["involvedObject", "kind"], &["regarding", "kind"]).to_lowercase();
            let name = ev_str(o, &["involvedObject", "name"], &["regarding", "name"]);
            text(if name.is_empty() {
                kind
            } else {
                format!("{kind}/{name}")
            })
        },
    ),
    wide(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
        |o, _| {
            text(ev_str(
                o,
                &["involvedObject", "fieldPath"],
                &["regarding", "fieldPath"],
            ))
        },
    ),
    wide(
        "Source",
        "string",
        "The component reporting this event. Should be a short machine understandable string.",
        |o, _| {
            let first = |a: &str, b: &str| {
                if a.is_empty() {
                    b.to_string()
                } else {
                    a.to_string()
                }
            };
            let component = first(
                ev_str(
                    o,
                    &["source", "component"],
                    &["deprecatedSource", "component"],
                ),
                ev_str(o, &["reportingComponent"], &["reportingController"]),
            );
            let instance = first(
                ev_str(o, &["source", "host"], &["deprecatedSource", "host"]),
                str_at(o, &["reportingInstance"]),
            );
            text(if instance.is_empty() {
                component
            } else {
                format!("{component}, {instance}")
            })
        },
    ),
    col(
        "Message",
        "string",
        "A human-readable description of the status of this operation.",
        |o, _| text(ev_str(o, &["message"], &["note"]).trim()),
    ),
    wide(
        "First Seen",
        "string",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
        |o, c| text(event_first_seen(o, c)),
    ),
    wide(
        "Count",
        "string",
        "The number of times this event has occurred.",
        |o, _| {
            let count = if has(o, &["series"]) {
                int_at(o, &["series", "count"])
            } else {
                match ev(o, &["count"], &["deprecatedCount"]).and_then(Value::as_i64) {
                    Some(n) if n != 0 => n,
                    _ => 1,
                }
            };
            count.into()
        },
    ),
    Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: NAME_DOC,
        priority: 1,
        cell: |o, _| text(str_at(o, &["metadata", "name"])),
    },
];

pub(crate) const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace", |o, _| {
        text(str_at(o, &["status", "phase"]))
    }),
    AGE,
];

pub(crate) const SECRET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
        |o, _| text(str_at(o, &["type"])),
    ),
    col(
        "Data",
        "string",
        "Data contains the secret data.",
        |o, _| len_at(o, &["data"]).into(),
    ),
    AGE,
];

pub(crate) const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Secrets",
        "string",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
        |o, _| len_at(o, &["secrets"]).into(),
    ),
    AGE,
];

pub(crate) const PERSISTENT_VOLUME_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Capacity",
        "string",
        "capacity is the description of the persistent volume's resources and capacity.",
        |o, _| text(quantity(o, &["spec", "capacity", "storage"])),
    ),
    col(
        "Access Modes",
        "string",
        "accessModes contains all ways the volume can be mounted.",
        |o, _| text(access_modes(arr_at(o, &["spec", "accessModes"]))),
    ),
    col(
        "Reclaim Policy",
        "string",
        "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
        |o, _| text(str_at(o, &["spec", "persistentVolumeReclaimPolicy"])),
    ),
    col(
        "Status",
        "string",
        "phase indicates if a volume is available, bound to a claim, or released by a claim.",
        |o, _| {
            text(if deleting(o) {
                "Terminating"
            } else {
                str_at(o, &["status", "phase"])
            })
        },
    ),
    col(
        "Claim",
        "string",
        "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
        |o, _| match get(o, &["spec", "claimRef"]) {
            Some(r) => text(format!(
                "{}/{}",
                str_at(r, &["namespace"]),
                str_at(r, &["name"])
            )),
            None => text(""),
        },
    ),
    col(
        "StorageClass",
        "string",
        "StorageClass of the pv",
        |o, _| text(storage_class(o)),
    ),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pv",
        |o, _| {
            text(
                get(o, &["spec", "volumeAttributesClassName"])
                    .map(scalar)
                    .unwrap_or_else(|| "<unset>".to_string()),
            )
        },
    ),
    col(
        "Reason",
        "string",
        "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
        |o, _| text(str_at(o, &["status", "reason"])),
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
        |o, _| {
            text(
                get(o, &["spec", "volumeMode"])
                    .map(scalar)
                    .unwrap_or_else(|| "<unset>".to_string()),
            )
        },
    ),
];

pub(crate) const PERSISTENT_VOLUME_CLAIM_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Status",
        "string",
        "phase represents the current phase of PersistentVolumeClaim.",
        |o, _| {
            text(if deleting(o) {
                "Terminating"
            } else {
                str_at(o, &["status", "phase"])
            })
        },
    ),
    col(
        "Volume",
        "string",
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
        |o, _| text(str_at(o, &["spec", "volumeName"])),
    ),
    col(
        "Capacity",
        "string",
        "capacity represents the actual resources of the underlying volume.",
        |o, _| {
            if str_at(o, &["spec", "volumeName"]).is_empty() {
                text("")
            } else {
                text(quantity(o, &["status", "capacity", "storage"]))
            }
        },
    ),
    col(
        "Access Modes",
        "string",
        "accessModes contains the actual access modes the volume backing the PVC has.",
        |o, _| {
            if str_at(o, &["spec", "volumeName"]).is_empty() {
                text("")
            } else {
                text(access_modes(arr_at(o, &["status", "accessModes"])))
            }
        },
    ),
    col(
        "StorageClass",
        "string",
        "StorageClass of the pvc",
        |o, _| text(storage_class(o)),
    ),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pvc",
        |o, _| {
            text(
                get(o, &["spec", "volumeAttributesClassName"])
                    .map(scalar)
                    .unwrap_or_else(|| "<unset>".to_string()),
            )
        },
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "volumeMode defines what type of volume is required by the claim.",
        |o, _| {
            text(
                get(o, &["spec", "volumeMode"])
                    .map(scalar)
                    .unwrap_or_else(|| "<unset>".to_string()),
            )
        },
    ),
];

fn component_condition(o: &Value) -> Option<&Value> {
    arr_at(o, &["conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == "Healthy")
}

pub(crate) const COMPONENT_STATUS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Status",
        "string",
        "Status of the component conditions",
        |o, _| {
            text(match component_condition(o) {
                Some(c) if str_at(c, &["status"]) == "True" => "Healthy",
                Some(_) => "Unhealthy",
                None => "Unknown",
            })
        },
    ),
    col(
        "Message",
        "string",
        "Message of the component conditions",
        |o, _| {
            text(
                component_condition(o)
                    .map(|c| str_at(c, &["message"]))
                    .unwrap_or(""),
            )
        },
    ),
    col(
        "Error",
        "string",
        "Error of the component conditions",
        |o, _| {
            text(
                component_condition(o)
                    .map(|c| str_at(c, &["error"]))
                    .unwrap_or(""),
            )
        },
    ),
];

pub(crate) const CONFIG_MAP_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Data",
        "string",
        "Data contains the configuration data.",
        |o, _| (len_at(o, &["data"]) + len_at(o, &["binaryData"])).into(),
    ),
    AGE,
];

pub(crate) const RESOURCE_QUOTA_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Request",
        "string",
        "Request represents a minimum amount of cpu/memory that a container may consume.",
        |o, _| text(quota_usage(o, false)),
    ),
    col(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
        |o, _| text(quota_usage(o, true)),
    ),
    AGE,
];

/// `used/hard` for each resource of `status.hard`, sorted by name; resources
/// named `limits.*` go to the Limit column, all others to Request.
fn quota_usage(o: &Value, limits: bool) -> String {
    let Some(hard) = map_at(o, &["status", "hard"]) else {
        return String::new();
    };
    let mut names: Vec<&String> = hard.keys().collect();
    names.sort();
    names
        .into_iter()
        .filter(|r| {
            let mut pieces = r.split('.');
            let first = pieces.next();
            (pieces.next().is_some() && first == Some("limits")) == limits
        })
        .map(|r| {
            format!(
                "{r}: {}/{}",
                quantity(o, &["status", "used", r]),
                quantity(o, &["status", "hard", r])
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

// --- apps/v1 ---------------------------------------------------------------

pub(crate) const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "Number of the pod with ready state",
        |o, _| {
            text(format!(
                "{}/{}",
                int_at(o, &["status", "readyReplicas"]),
                int_at(o, &["spec", "replicas"])
            ))
        },
    ),
    col(
        "Up-to-date",
        "string",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
        |o, _| int_at(o, &["status", "updatedReplicas"]).into(),
    ),
    col(
        "Available",
        "string",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
        |o, _| int_at(o, &["status", "availableReplicas"]).into(),
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC, |o, _| {
        container_names(o, &["spec", "template", "spec", "containers"])
    }),
    wide("Images", "string", IMAGES_DOC, |o, _| {
        container_images(o, &["spec", "template", "spec", "containers"])
    }),
    wide(
        "Selector",
        "string",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
        |o, _| {
            text(
                selector_string(get(o, &["spec", "selector"]))
                    .unwrap_or_else(|| "<invalid>".to_string()),
            )
        },
    ),
];

pub(crate) const REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas.",
        |o, _| int_at(o, &["spec", "replicas"]).into(),
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
        |o, _| int_at(o, &["status", "replicas"]).into(),
    ),
    col(
        "Ready",
        "integer",
        "The number of ready replicas for this replica set.",
        |o, _| int_at(o, &["status", "readyReplicas"]).into(),
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC, |o, _| {
        container_names(o, &["spec", "template", "spec", "containers"])
    }),
    wide("Images", "string", IMAGES_DOC, |o, _| {
        container_images(o, &["spec", "template", "spec", "containers"])
    }),
    wide(
        "Selector",
        "string",
        "Selector is a label query over pods that should match the replica count.",
        |o, _| text(format_label_selector(get(o, &["spec", "selector"]))),
    ),
];

pub(crate) const DAEMON_SET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
        |o, _| int_at(o, &["status", "desiredNumberScheduled"]).into(),
    ),
    col(
        "Current",
        "integer",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
        |o, _| int_at(o, &["status", "currentNumberScheduled"]).into(),
    ),
    col(
        "Ready",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
        |o, _| int_at(o, &["status", "numberReady"]).into(),
    ),
    col(
        "Up-to-date",
        "integer",
        "The total number of nodes that are running updated daemon pod",
        |o, _| int_at(o, &["status", "updatedNumberScheduled"]).into(),
    ),
    col(
        "Available",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
        |o, _| int_at(o, &["status", "numberAvailable"]).into(),
    ),
    col(
        "Node Selector",
        "string",
        "NodeSelector is a selector which must be true for the pod to fit on a node.",
        |o, _| {
            text(format_labels(map_at(
                o,
                &["spec", "template", "spec", "nodeSelector"],
            )))
        },
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC, |o, _| {
        container_names(o, &["spec", "template", "spec", "containers"])
    }),
    wide("Images", "string", IMAGES_DOC, |o, _| {
        container_images(o, &["spec", "template", "spec", "containers"])
    }),
    wide(
        "Selector",
        "string",
        "A label query over pods that are managed by the daemon set.",
        |o, _| text(format_label_selector(get(o, &["spec", "selector"]))),
    ),
];

pub(crate) const STATEFUL_SET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "Number of the pod with ready state",
        |o, _| {
            text(format!(
                "{}/{}",
                int_at(o, &["status", "readyReplicas"]),
                int_at(o, &["spec", "replicas"])
            ))
        },
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC, |o, _| {
        container_names(o, &["spec", "template", "spec", "containers"])
    }),
    wide("Images", "string", IMAGES_DOC, |o, _| {
        container_images(o, &["spec", "template", "spec", "containers"])
    }),
];

pub(crate) const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Controller",
        "string",
        "Controller of the object",
        |o, _| {
            let owner = arr_at(o, &["metadata", "ownerReferences"])
                .iter()
                .find(|r| bool_at(r, &["controller"]));
            let Some(owner) = owner else {
                return text("<none>");
            };
            let api_version = str_at(owner, &["apiVersion"]);
            let group = match api_version.split_once('/') {
                Some((g, _)) => g,
                None => "",
            };
            let kind = str_at(owner, &["kind"]);
            let name = str_at(owner, &["name"]);
            text(match (group, kind) {
                ("", "") => name.to_string(),
                ("", k) => format!("{}/{name}", k.to_lowercase()),
                (g, k) => format!("{}.{}/{name}", k.to_lowercase(), g.to_lowercase()),
            })
        },
    ),
    col(
        "Revision",
        "string",
        "Revision indicates the revision of the state represented by Data.",
        |o, _| int_at(o, &["revision"]).into(),
    ),
    AGE,
];

// --- autoscaling -----------------------------------------------------------

pub(crate) const HORIZONTAL_POD_AUTOSCALER_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Reference",
        "string",
        "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.",
        |o, _| {
            text(format!(
                "{}/{}",
                str_at(o, &["spec", "scaleTargetRef", "kind"]),
                str_at(o, &["spec", "scaleTargetRef", "name"])
            ))
        },
    ),
    col(
        "Targets",
        "string",
        "metrics contains the specifications for which to use to calculate the desired replica count.",
        |o, _| text(hpa_targets(o)),
    ),
    col(
        "MinPods",
        "string",
        "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.",
        |o, _| {
            text(
                opt_int(o, &["spec", "minReplicas"])
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "<unset>".to_string()),
            )
        },
    ),
    col(
        "MaxPods",
        "string",
        "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.",
        |o, _| int_at(o, &["spec", "maxReplicas"]).into(),
    ),
    col(
        "Replicas",
        "string",
        "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.",
        |o, _| int_at(o, &["status", "currentReplicas"]).into(),
    ),
    AGE,
];

/// `formatHPAMetrics`, for `autoscaling/v2` objects (`spec.metrics`) and for
/// `autoscaling/v1` ones (`spec.targetCPUUtilizationPercentage`).
fn hpa_targets(o: &Value) -> String {
    if !has(o, &["spec", "metrics"])
        && let Some(target) = opt_int(o, &["spec", "targetCPUUtilizationPercentage"])
    {
        let current = opt_int(o, &["status", "currentCPUUtilizationPercentage"])
            .map(|c| format!("{c}%"))
            .unwrap_or_else(|| "<unknown>".to_string());
        return format!("cpu: {current}/{target}%");
    }
    let specs = arr_at(o, &["spec", "metrics"]);
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let statuses = arr_at(o, &["status", "currentMetrics"]);
    let q = |v: &Value, path: &[&str]| {
        get(v, path)
            .map(scalar)
            .unwrap_or_else(|| "<nil>".to_string())
    };
    let unknown = || "<unknown>".to_string();
    const MAX: usize = 2;
    let mut list: Vec<String> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i);
        let entry = match str_at(spec, &["type"]) {
            kind @ ("External" | "Object") => {
                let key = if kind == "External" {
                    "external"
                } else {
                    "object"
                };
                let st = status.and_then(|s| get(s, &[key]));
                if has(spec, &[key, "target", "averageValue"]) {
                    let current = st
                        .and_then(|s| get(s, &["current", "averageValue"]))
                        .map(scalar)
                        .unwrap_or_else(unknown);
                    format!(
                        "{current}/{} (avg)",
                        q(spec, &[key, "target", "averageValue"])
                    )
                } else {
                    let current = st
                        .map(|s| q(s, &["current", "value"]))
                        .unwrap_or_else(unknown);
                    format!("{current}/{}", q(spec, &[key, "target", "value"]))
                }
            }
            "Pods" => {
                let current = status
                    .and_then(|s| get(s, &["pods"]))
                    .map(|s| q(s, &["current", "averageValue"]))
                    .unwrap_or_else(unknown);
                format!("{current}/{}", q(spec, &["pods", "target", "averageValue"]))
            }
            kind @ ("Resource" | "ContainerResource") => {
                let key = if kind == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let name = str_at(spec, &[key, "name"]);
                let st = status.and_then(|s| get(s, &[key]));
                if has(spec, &[key, "target", "averageValue"]) {
                    let current = st
                        .map(|s| q(s, &["current", "averageValue"]))
                        .unwrap_or_else(unknown);
                    format!(
                        "{name}: {current}/{}",
                        q(spec, &[key, "target", "averageValue"])
                    )
                } else {
                    let current = st
                        .and_then(|s| opt_int(s, &["current", "averageUtilization"]))
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(unknown);
                    let target = opt_int(spec, &[key, "target", "averageUtilization"])
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(|| "<auto>".to_string());
                    format!("{name}: {current}/{target}")
                }
            }
            _ => "<unknown type>".to_string(),
        };
        list.push(entry);
    }
    let count = list.len();
    if count > MAX {
        list.truncate(MAX);
        return format!("{} + {} more...", list.join(", "), count - MAX);
    }
    list.join(", ")
}

// --- batch/v1 --------------------------------------------------------------

fn job_condition(o: &Value, type_: &str) -> bool {
    arr_at(o, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == type_)
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

pub(crate) const JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job.", |o, _| {
        text(if job_condition(o, "Complete") {
            "Complete"
        } else if job_condition(o, "Failed") {
            "Failed"
        } else if deleting(o) {
            "Terminating"
        } else if job_condition(o, "Suspended") {
            "Suspended"
        } else if job_condition(o, "FailureTarget") {
            "FailureTarget"
        } else {
            "Running"
        })
    }),
    col(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded.",
        |o, _| {
            let succeeded = int_at(o, &["status", "succeeded"]);
            text(match opt_int(o, &["spec", "completions"]) {
                Some(c) => format!("{succeeded}/{c}"),
                None => match int_at(o, &["spec", "parallelism"]) {
                    p if p > 1 => format!("{succeeded}/1 of {p}"),
                    _ => format!("{succeeded}/1"),
                },
            })
        },
    ),
    col(
        "Duration",
        "string",
        "Time required to complete the job.",
        |o, c| {
            let start = timestamp(get(o, &["status", "startTime"]));
            let done = timestamp(get(o, &["status", "completionTime"]));
            text(match (start, done) {
                (None, _) => String::new(),
                (Some(s), None) => human_duration(c.now - s),
                (Some(s), Some(d)) => human_duration(d - s),
            })
        },
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC, |o, _| {
        container_names(o, &["spec", "template", "spec", "containers"])
    }),
    wide("Images", "string", IMAGES_DOC, |o, _| {
        container_images(o, &["spec", "template", "spec", "containers"])
    }),
    wide(
        "Selector",
        "string",
        "A label query over pods that should match the pod count.",
        |o, _| text(format_label_selector(get(o, &["spec", "selector"]))),
    ),
];

pub(crate) const CRON_JOB_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Schedule",
        "string",
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
        |o, _| text(str_at(o, &["spec", "schedule"])),
    ),
    col(
        "Timezone",
        "string",
        "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
        |o, _| {
            text(
                get(o, &["spec", "timeZone"])
                    .map(scalar)
                    .unwrap_or_else(|| "<none>".to_string()),
            )
        },
    ),
    col(
        "Suspend",
        "boolean",
        "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.",
        |o, _| text(bool_ptr(opt_bool(o, &["spec", "suspend"]))),
    ),
    col(
        "Active",
        "integer",
        "A list of pointers to currently running jobs.",
        |o, _| len_at(o, &["status", "active"]).into(),
    ),
    col(
        "Last Schedule",
        "string",
        "Information when was the last time the job was successfully scheduled.",
        |o, c| match timestamp(get(o, &["status", "lastScheduleTime"])) {
            Some(t) => text(since(Some(t), c.now)),
            None if has(o, &["status", "lastScheduleTime"]) => text("<unknown>"),
            None => text("<none>"),
        },
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC, |o, _| {
        container_names(
            o,
            &[
                "spec",
                "jobTemplate",
                "spec",
                "template",
                "spec",
                "containers",
            ],
        )
    }),
    wide("Images", "string", IMAGES_DOC, |o, _| {
        container_images(
            o,
            &[
                "spec",
                "jobTemplate",
                "spec",
                "template",
                "spec",
                "containers",
            ],
        )
    }),
    wide(
        "Selector",
        "string",
        "A label query over pods that should match the pod count.",
        |o, _| {
            text(format_label_selector(get(
                o,
                &["spec", "jobTemplate", "spec", "selector"],
            )))
        },
    ),
];

// --- certificates, coordination, discovery ---------------------------------

pub(crate) const CERTIFICATE_SIGNING_REQUEST_COLUMNS: &[Column] = &[
    NAME,
    AGE,
    col(
        "SignerName",
        "string",
        "signerName indicates the requested signer, and is a qualified name.",
        |o, _| text(or_none(str_at(o, &["spec", "signerName"]))),
    ),
    col(
        "Requestor",
        "string",
        "username contains the name of the user that created the CertificateSigningRequest.",
        |o, _| text(str_at(o, &["spec", "username"])),
    ),
    col(
        "RequestedDuration",
        "string",
        "expirationSeconds is the requested duration of validity of the issued certificate.",
        |o, _| {
            text(
                opt_int(o, &["spec", "expirationSeconds"])
                    .map(human_duration)
                    .unwrap_or_else(|| "<none>".to_string()),
            )
        },
    ),
    col(
        "Condition",
        "string",
        "conditions applied to the request.",
        |o, _| {
            let conditions = arr_at(o, &["status", "conditions"]);
            let seen = |t: &str| conditions.iter().any(|c| str_at(c, &["type"]) == t);
            let mut status = if seen("Denied") {
                "Denied"
            } else if seen("Approved") {
                "Approved"
            } else {
                "Pending"
            }
            .to_string();
            if seen("Failed") {
                status.push_str(",Failed");
            }
            if !str_at(o, &["status", "certificate"]).is_empty() {
                status.push_str(",Issued");
            }
            text(status)
        },
    ),
];

pub(crate) const LEASE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
        |o, _| text(str_at(o, &["spec", "holderIdentity"])),
    ),
    AGE,
];

pub(crate) const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice.",
        |o, _| text(str_at(o, &["addressType"])),
    ),
    col(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
        |o, _| {
            const MAX: usize = 3;
            let ports = arr_at(o, &["ports"]);
            let list: Vec<String> = ports
                .iter()
                .take(MAX)
                .map(|p| match (opt_int(p, &["port"]), get(p, &["name"])) {
                    (Some(n), _) => n.to_string(),
                    (None, Some(name)) => scalar(name),
                    (None, None) => "*".to_string(),
                })
                .collect();
            text(list_with_more(&list, ports.len(), MAX))
        },
    ),
    col(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
        |o, _| {
            const MAX: usize = 3;
            let all: Vec<String> = arr_at(o, &["endpoints"])
                .iter()
                .flat_map(|e| arr_at(e, &["addresses"]).iter().map(scalar))
                .collect();
            let list: Vec<String> = all.iter().take(MAX).cloned().collect();
            text(list_with_more(&list, all.len(), MAX))
        },
    ),
    AGE,
];

// --- networking.k8s.io/v1 --------------------------------------------------

pub(crate) const INGRESS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Class",
        "string",
        "The name of the IngressClass resource that should be used for additional configuration",
        |o, _| {
            text(
                get(o, &["spec", "ingressClassName"])
                    .map(scalar)
                    .unwrap_or_else(|| "<none>".to_string()),
            )
        },
    ),
    col(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
        |o, _| {
            const MAX: usize = 3;
            let rules = arr_at(o, &["spec", "rules"]);
            let mut list: Vec<&str> = Vec::new();
            let mut more = false;
            for rule in rules {
                if list.len() == MAX {
                    more = true;
                }
                let host = str_at(rule, &["host"]);
                if !more && !host.is_empty() {
                    list.push(host);
                }
            }
            if list.is_empty() {
                return text("*");
            }
            let ret = list.join(",");
            text(if more {
                format!("{ret} + {} more...", rules.len() - MAX)
            } else {
                ret
            })
        },
    ),
    col(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
        |o, _| text(load_balancer_addresses(o)),
    ),
    col(
        "Ports",
        "string",
        "Ports of TLS configurations that open",
        |o, _| {
            text(if arr_at(o, &["spec", "tls"]).is_empty() {
                "80"
            } else {
                "80, 443"
            })
        },
    ),
    AGE,
];

pub(crate) const INGRESS_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Controller",
        "string",
        "Controller that is responsible for handling this class",
        |o, _| text(str_at(o, &["spec", "controller"])),
    ),
    col(
        "Parameters",
        "string",
        "A reference to a resource with additional parameters",
        |o, _| {
            let Some(p) = get(o, &["spec", "parameters"]) else {
                return text("<none>");
            };
            let mut s = str_at(p, &["kind"]).to_string();
            if let Some(g) = get(p, &["apiGroup"]) {
                s = format!("{s}.{}", scalar(g));
            }
            text(format!("{s}/{}", str_at(p, &["name"])))
        },
    ),
    AGE,
];

pub(crate) const NETWORK_POLICY_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Pod-Selector",
        "string",
        "podSelector selects the pods to which this NetworkPolicy object applies.",
        |o, _| {
            let sel = get(o, &["spec", "podSelector"])
                .cloned()
                .unwrap_or_else(|| Value::Object(Map::new()));
            text(format_label_selector(Some(&sel)))
        },
    ),
    AGE,
];

pub(crate) const SERVICE_CIDR_COLUMNS: &[Column] = &[
    NAME,
    col(
        "CIDRs",
        "string",
        "CIDRs defines the IP blocks in CIDR notation (e.g. \"192.168.0.0/24\" or \"2001:db8::/64\") from which to assign service cluster IPs.",
        |o, _| {
            let cidrs: Vec<String> = arr_at(o, &["spec", "cidrs"]).iter().map(scalar).collect();
            text(cidrs.join(","))
        },
    ),
    AGE,
];

pub(crate) const IP_ADDRESS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "ParentRef",
        "string",
        "ParentRef references the resource that an IPAddress is attached to.",
        |o, _| {
            let Some(p) = get(o, &["spec", "parentRef"]) else {
                return text("<none>");
            };
            let (group, resource) = (str_at(p, &["group"]), str_at(p, &["resource"]));
            let mut s = if group.is_empty() {
                resource.to_string()
            } else {
                format!("{resource}.{group}")
            }
            .to_lowercase();
            let ns = str_at(p, &["namespace"]);
            if !ns.is_empty() {
                s = format!("{s}/{ns}");
            }
            text(format!("{s}/{}", str_at(p, &["name"])))
        },
    ),
];

// --- node, policy, rbac, scheduling ----------------------------------------

pub(crate) const RUNTIME_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Handler",
        "string",
        "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class.",
        |o, _| text(str_at(o, &["handler"])),
    ),
    AGE,
];

pub(crate) const POD_DISRUPTION_BUDGET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Min Available",
        "string",
        "The minimum number of pods that must be available.",
        |o, _| {
            text(
                get(o, &["spec", "minAvailable"])
                    .map(scalar)
                    .unwrap_or_else(|| "N/A".to_string()),
            )
        },
    ),
    col(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable.",
        |o, _| {
            text(
                get(o, &["spec", "maxUnavailable"])
                    .map(scalar)
                    .unwrap_or_else(|| "N/A".to_string()),
            )
        },
    ),
    col(
        "Allowed Disruptions",
        "integer",
        "Calculated number of pods that may be disrupted at this time.",
        |o, _| int_at(o, &["status", "disruptionsAllowed"]).into(),
    ),
    AGE,
];

/// `rbac.SubjectsStrings`: the names of the binding's users, groups and
/// service accounts (`namespace/name`), each list joined by `", "`.
fn subjects(o: &Value, kind: &str) -> Value {
    let names: Vec<String> = arr_at(o, &["subjects"])
        .iter()
        .filter(|s| str_at(s, &["kind"]) == kind)
        .map(|s| match kind {
            "ServiceAccount" => format!("{}/{}", str_at(s, &["namespace"]), str_at(s, &["name"])),
            _ => str_at(s, &["name"]).to_string(),
        })
        .collect();
    text(names.join(", "))
}

fn role_ref(o: &Value) -> Value {
    text(format!(
        "{}/{}",
        str_at(o, &["roleRef", "kind"]),
        str_at(o, &["roleRef", "name"])
    ))
}

pub(crate) const ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
        |o, _| role_ref(o),
    ),
    AGE,
    wide("Users", "string", "Users in the roleBinding", |o, _| {
        subjects(o, "User")
    }),
    wide("Groups", "string", "Groups in the roleBinding", |o, _| {
        subjects(o, "Group")
    }),
    wide(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the roleBinding",
        |o, _| subjects(o, "ServiceAccount"),
    ),
];

pub(crate) const CLUSTER_ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can only reference a ClusterRole in the global namespace.",
        |o, _| role_ref(o),
    ),
    AGE,
    wide(
        "Users",
        "string",
        "Users in the clusterRoleBinding",
        |o, _| subjects(o, "User"),
    ),
    wide(
        "Groups",
        "string",
        "Groups in the clusterRoleBinding",
        |o, _| subjects(o, "Group"),
    ),
    wide(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the clusterRoleBinding",
        |o, _| subjects(o, "ServiceAccount"),
    ),
];

pub(crate) const PRIORITY_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Value",
        "integer",
        "value represents the integer value of this priority class.",
        |o, _| int_at(o, &["value"]).into(),
    ),
    col(
        "Global-Default",
        "boolean",
        "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.",
        |o, _| bool_at(o, &["globalDefault"]).into(),
    ),
    AGE,
    col(
        "PreemptionPolicy",
        "string",
        "preemptionPolicy is the Policy for preempting pods with lower priority.",
        |o, _| text(str_at(o, &["preemptionPolicy"])),
    ),
];

// --- storage.k8s.io/v1 -----------------------------------------------------

pub(crate) const STORAGE_CLASS_COLUMNS: &[Column] = &[
    Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: NAME_DOC,
        priority: 0,
        cell: |o, _| {
            let name = str_at(o, &["metadata", "name"]);
            let default = [
                "storageclass.kubernetes.io/is-default-class",
                "storageclass.beta.kubernetes.io/is-default-class",
            ]
            .iter()
            .any(|a| str_at(o, &["metadata", "annotations", a]) == "true");
            text(if default {
                format!("{name} (default)")
            } else {
                name.to_string()
            })
        },
    },
    col(
        "Provisioner",
        "string",
        "provisioner indicates the type of the provisioner.",
        |o, _| text(str_at(o, &["provisioner"])),
    ),
    col(
        "ReclaimPolicy",
        "string",
        "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class.",
        |o, _| {
            text(
                get(o, &["reclaimPolicy"])
                    .map(scalar)
                    .unwrap_or_else(|| "Delete".to_string()),
            )
        },
    ),
    col(
        "VolumeBindingMode",
        "string",
        "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.",
        |o, _| {
            text(
                get(o, &["volumeBindingMode"])
                    .map(scalar)
                    .unwrap_or_else(|| "Immediate".to_string()),
            )
        },
    ),
    col(
        "AllowVolumeExpansion",
        "string",
        "allowVolumeExpansion shows whether the storage class allow volume expand.",
        |o, _| bool_at(o, &["allowVolumeExpansion"]).into(),
    ),
    AGE,
];

pub(crate) const VOLUME_ATTACHMENT_COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Attacher",
        type_: "string",
        format: "name",
        description: "attacher indicates the name of the volume driver that MUST handle this request.",
        priority: 0,
        cell: |o, _| text(str_at(o, &["spec", "attacher"])),
    },
    col(
        "PV",
        "string",
        "persistentVolumeName represents the name of the persistent volume to attach.",
        |o, _| text(str_at(o, &["spec", "source", "persistentVolumeName"])),
    ),
    col(
        "Node",
        "string",
        "nodeName represents the node that the volume should be attached to.",
        |o, _| text(str_at(o, &["spec", "nodeName"])),
    ),
    col(
        "Attached",
        "boolean",
        "attached indicates the volume is successfully attached.",
        |o, _| bool_at(o, &["status", "attached"]).into(),
    ),
    AGE,
];

pub(crate) const CSI_NODE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Drivers",
        "integer",
        "Drivers indicates the number of CSI drivers registered on the node",
        |o, _| len_at(o, &["spec", "drivers"]).into(),
    ),
    AGE,
];

pub(crate) const CSI_DRIVER_COLUMNS: &[Column] = &[
    NAME,
    col(
        "AttachRequired",
        "boolean",
        "attachRequired indicates this CSI volume driver requires an attach operation.",
        |o, _| {
            opt_bool(o, &["spec", "attachRequired"])
                .unwrap_or(true)
                .into()
        },
    ),
    col(
        "PodInfoOnMount",
        "boolean",
        "podInfoOnMount indicates this CSI volume driver requires additional pod information (like podName, podUID, etc.) during mount operations.",
        |o, _| bool_at(o, &["spec", "podInfoOnMount"]).into(),
    ),
    col(
        "StorageCapacity",
        "boolean",
        "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity that the driver deployment will report.",
        |o, _| bool_at(o, &["spec", "storageCapacity"]).into(),
    ),
    col(
        "TokenRequests",
        "string",
        "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication.",
        |o, _| {
            if !has(o, &["spec", "tokenRequests"]) {
                return text("<unset>");
            }
            let audiences: Vec<&str> = arr_at(o, &["spec", "tokenRequests"])
                .iter()
                .map(|t| str_at(t, &["audience"]))
                .collect();
            text(audiences.join(","))
        },
    ),
    col(
        "RequiresRepublish",
        "boolean",
        "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being periodically called to reflect any possible change in the mounted volume.",
        |o, _| bool_at(o, &["spec", "requiresRepublish"]).into(),
    ),
    col(
        "Modes",
        "string",
        "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports.",
        |o, _| {
            let modes: Vec<String> = arr_at(o, &["spec", "volumeLifecycleModes"])
                .iter()
                .map(scalar)
                .collect();
            text(or_none(&modes.join(",")))
        },
    ),
    AGE,
];

pub(crate) const CSI_STORAGE_CAPACITY_COLUMNS: &[Column] = &[
    NAME,
    col(
        "StorageClassName",
        "string",
        "storageClassName represents the name of the StorageClass that the reported capacity applies to.",
        |o, _| text(str_at(o, &["storageClassName"])),
    ),
    col(
        "Capacity",
        "string",
        "capacity is the value reported by the CSI driver in its GetCapacityResponse for a GetCapacityRequest with topology and parameters that match the previous fields.",
        |o, _| {
            text(
                get(o, &["capacity"])
                    .map(scalar)
                    .unwrap_or_else(|| "<unset>".to_string()),
            )
        },
    ),
];

// --- admissionregistration.k8s.io/v1 ---------------------------------------

pub(crate) const WEBHOOK_CONFIGURATION_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Webhooks",
        "integer",
        "Webhooks indicates the number of webhooks registered in this configuration",
        |o, _| len_at(o, &["webhooks"]).into(),
    ),
    AGE,
];

pub(crate) const VALIDATING_ADMISSION_POLICY_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Validations",
        "integer",
        "Validations indicates the number of validation rules defined in this configuration",
        |o, _| len_at(o, &["spec", "validations"]).into(),
    ),
    col(
        "ParamKind",
        "string",
        "ParamKind specifies the kind of resources used to parameterize this policy",
        |o, _| match get(o, &["spec", "paramKind"]) {
            Some(p) => text(format!(
                "{}/{}",
                str_at(p, &["apiVersion"]),
                str_at(p, &["kind"])
            )),
            None => text("<unset>"),
        },
    ),
    AGE,
];

pub(crate) const VALIDATING_ADMISSION_POLICY_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "PolicyName",
        "string",
        "PolicyName indicates the policy definition which the policy binding binded to",
        |o, _| text(str_at(o, &["spec", "policyName"])),
    ),
    col(
        "ParamRef",
        "string",
        "ParamRef indicates the param resource which sets the configration param",
        |o, _| {
            let Some(p) = get(o, &["spec", "paramRef"]) else {
                return text("<unset>");
            };
            let (name, ns) = (str_at(p, &["name"]), str_at(p, &["namespace"]));
            text(if !name.is_empty() {
                if ns.is_empty() {
                    format!("*/{name}")
                } else {
                    format!("{ns}/{name}")
                }
            } else if let Some(sel) = get(p, &["selector"]) {
                format_label_selector(Some(sel))
            } else {
                "<unset>".to_string()
            })
        },
    ),
    AGE,
];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn ctx() -> CellContext {
        CellContext { now: NOW }
    }

    fn ago(secs: i64) -> String {
        format_rfc3339(NOW - secs)
    }

    fn cells(columns: &[Column], obj: &Value) -> Vec<Value> {
        columns.iter().map(|c| (c.cell)(obj, &ctx())).collect()
    }

    fn cell(columns: &[Column], name: &str, obj: &Value) -> Value {
        let column = columns
            .iter()
            .find(|c| c.name == name)
            .expect("column exists");
        (column.cell)(obj, &ctx())
    }

    fn pod(status: Value) -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(3600)},
            "spec": {"containers": [{"name": "app", "image": "nginx"}], "nodeName": "node-1"},
            "status": status,
        })
    }

    #[test]
    fn a_running_ready_pod_prints_like_kubectl() {
        let p = pod(json!({
            "phase": "Running",
            "podIPs": [{"ip": "10.0.0.5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": ago(3500)}}}],
        }));
        let row = cells(POD_COLUMNS, &p);
        assert_eq!(
            row,
            vec![
                json!("web"),
                json!("1/1"),
                json!("Running"),
                json!("0"),
                json!("60m"),
                json!("10.0.0.5"),
                json!("node-1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn a_pending_pod_shows_its_phase_and_nothing_ready() {
        let p = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}, "status": {"phase": "Pending"}});
        assert_eq!(cell(POD_COLUMNS, "Ready", &p), json!("0/2"));
        assert_eq!(cell(POD_COLUMNS, "Status", &p), json!("Pending"));
        assert_eq!(cell(POD_COLUMNS, "Restarts", &p), json!("0"));
        assert_eq!(cell(POD_COLUMNS, "Age", &p), json!("<unknown>"));
        assert_eq!(cell(POD_COLUMNS, "IP", &p), json!("<none>"));
    }

    #[test]
    fn a_crash_looping_pod_shows_the_waiting_reason_and_when_it_last_restarted() {
        let p = pod(json!({
            "phase": "Running",
            "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(300)}},
            }],
        }));
        assert_eq!(cell(POD_COLUMNS, "Status", &p), json!("CrashLoopBackOff"));
        assert_eq!(cell(POD_COLUMNS, "Ready", &p), json!("0/1"));
        assert_eq!(cell(POD_COLUMNS, "Restarts", &p), json!("5 (5m ago)"));
    }

    #[test]
    fn an_initializing_pod_counts_finished_init_containers() {
        let p = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "app"}]},
            "status": {
                "phase": "Pending",
                "initContainerStatuses": [
                    {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "i2", "restartCount": 1, "state": {"running": {}}},
                ],
                "containerStatuses": [{"name": "app", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}],
            },
        });
        assert_eq!(cell(POD_COLUMNS, "Status", &p), json!("Init:1/2"));
        assert_eq!(cell(POD_COLUMNS, "Ready", &p), json!("0/1"));
        assert_eq!(cell(POD_COLUMNS, "Restarts", &p), json!("1"));
    }

    #[test]
    fn a_failing_init_container_names_its_reason_or_exit_code() {
        let mut p = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i1"}], "containers": [{"name": "app"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i1", "state": {"terminated": {"exitCode": 3}}}]},
        });
        assert_eq!(cell(POD_COLUMNS, "Status", &p), json!("Init:ExitCode:3"));
        p["status"]["initContainerStatuses"][0]["state"] =
            json!({"waiting": {"reason": "ImagePullBackOff"}});
        assert_eq!(
            cell(POD_COLUMNS, "Status", &p),
            json!("Init:ImagePullBackOff")
        );
    }

    #[test]
    fn a_sidecar_init_container_counts_towards_ready_and_total() {
        let p = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "app"}]},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "restartCount": 2, "state": {"running": {}}}],
                "containerStatuses": [{"name": "app", "ready": true, "restartCount": 1, "state": {"running": {}}}],
            },
        });
        assert_eq!(cell(POD_COLUMNS, "Ready", &p), json!("2/2"));
        assert_eq!(cell(POD_COLUMNS, "Status", &p), json!("Running"));
        assert_eq!(cell(POD_COLUMNS, "Restarts", &p), json!("3"));
    }

    #[test]
    fn a_finished_pod_reads_completed() {
        let p = pod(json!({
            "phase": "Succeeded",
            "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
        }));
        assert_eq!(cell(POD_COLUMNS, "Status", &p), json!("Completed"));
        assert_eq!(cell(POD_COLUMNS, "Ready", &p), json!("0/1"));
    }

    #[test]
    fn a_pod_being_deleted_reads_terminating_unless_it_already_finished() {
        let mut p = pod(json!({
            "phase": "Running",
            "containerStatuses": [{"name": "app", "ready": true, "state": {"running": {}}}],
        }));
        p["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(cell(POD_COLUMNS, "Status", &p), json!("Terminating"));
        p["status"]["phase"] = json!("Failed");
        p["status"]["containerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 137}});
        assert_eq!(cell(POD_COLUMNS, "Status", &p), json!("ExitCode:137"));
        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(cell(POD_COLUMNS, "Status", &p), json!("Unknown"));
    }

    #[test]
    fn a_scheduling_gated_pod_says_so() {
        let p = json!({"metadata": {"name": "p"}, "spec": {"containers": [{}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}});
        assert_eq!(cell(POD_COLUMNS, "Status", &p), json!("SchedulingGated"));
    }

    #[test]
    fn a_pod_with_only_the_legacy_pod_ip_still_shows_it() {
        let p = json!({"status": {"podIP": "10.0.0.9"}});
        assert_eq!(cell(POD_COLUMNS, "IP", &p), json!("10.0.0.9"));
    }

    #[test]
    fn readiness_gates_count_the_true_conditions() {
        let p = json!({"spec": {"readinessGates": [{"conditionType": "a"}, {"conditionType": "b"}]},
            "status": {"conditions": [{"type": "a", "status": "True"}, {"type": "b", "status": "False"}]}});
        assert_eq!(cell(POD_COLUMNS, "Readiness Gates", &p), json!("1/2"));
    }

    #[test]
    fn cells_of_an_empty_object_never_panic() {
        for columns in [
            POD_COLUMNS,
            SERVICE_COLUMNS,
            NODE_COLUMNS,
            EVENT_COLUMNS,
            DEPLOYMENT_COLUMNS,
            JOB_COLUMNS,
            CRON_JOB_COLUMNS,
            HORIZONTAL_POD_AUTOSCALER_COLUMNS,
            PERSISTENT_VOLUME_COLUMNS,
            PERSISTENT_VOLUME_CLAIM_COLUMNS,
            INGRESS_COLUMNS,
            ENDPOINTS_COLUMNS,
            ENDPOINT_SLICE_COLUMNS,
            RESOURCE_QUOTA_COLUMNS,
            CONTROLLER_REVISION_COLUMNS,
            DEFAULT_COLUMNS,
        ] {
            for obj in [
                json!({}),
                json!(null),
                json!({"spec": 5, "status": "x", "metadata": []}),
            ] {
                assert_eq!(cells(columns, &obj).len(), columns.len());
            }
        }
    }

    #[test]
    fn deployment_ready_is_ready_over_desired() {
        let d = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(10)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "a", "image": "nginx:1"}, {"name": "b", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        });
        assert_eq!(
            cells(DEPLOYMENT_COLUMNS, &d),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("10s"),
                json!("a,b"),
                json!("nginx:1,busybox"),
                json!("app=web")
            ]
        );
    }

    #[test]
    fn service_ports_show_node_ports_and_protocols() {
        let s = json!({
            "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}],
                     "selector": {"app": "web", "tier": "fe"}},
        });
        assert_eq!(
            cell(SERVICE_COLUMNS, "Port(s)", &s),
            json!("80:30080/TCP,443/TCP")
        );
        assert_eq!(cell(SERVICE_COLUMNS, "Cluster-IP", &s), json!("10.96.0.10"));
        assert_eq!(cell(SERVICE_COLUMNS, "External-IP", &s), json!("<none>"));
        assert_eq!(
            cell(SERVICE_COLUMNS, "Selector", &s),
            json!("app=web,tier=fe")
        );
    }

    #[test]
    fn load_balancer_services_show_pending_until_they_get_an_address() {
        let mut s = json!({"spec": {"type": "LoadBalancer", "ports": []}});
        assert_eq!(cell(SERVICE_COLUMNS, "External-IP", &s), json!("<pending>"));
        assert_eq!(cell(SERVICE_COLUMNS, "Port(s)", &s), json!("<none>"));
        assert_eq!(cell(SERVICE_COLUMNS, "Cluster-IP", &s), json!("<none>"));
        s["spec"]["clusterIP"] = json!("10.96.0.7");
        assert_eq!(cell(SERVICE_COLUMNS, "Cluster-IP", &s), json!("10.96.0.7"));
        s["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}]}});
        assert_eq!(
            cell(SERVICE_COLUMNS, "External-IP", &s),
            json!("203.0.113.9,lb.example.com")
        );
    }

    #[test]
    fn nodes_show_readiness_roles_and_addresses() {
        let n = json!({
            "metadata": {"name": "node-1", "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.0"}},
        });
        assert_eq!(
            cell(NODE_COLUMNS, "Status", &n),
            json!("Ready,SchedulingDisabled")
        );
        assert_eq!(
            cell(NODE_COLUMNS, "Roles", &n),
            json!("control-plane,worker")
        );
        assert_eq!(cell(NODE_COLUMNS, "Version", &n), json!("v1.33.0"));
        assert_eq!(cell(NODE_COLUMNS, "Internal-IP", &n), json!("192.168.1.10"));
        assert_eq!(cell(NODE_COLUMNS, "External-IP", &n), json!("<none>"));
        assert_eq!(cell(NODE_COLUMNS, "OS-Image", &n), json!("<unknown>"));
        assert_eq!(cell(NODE_COLUMNS, "Status", &json!({})), json!("Unknown"));
    }

    #[test]
    fn jobs_show_status_completions_and_duration() {
        let j = json!({
            "spec": {"completions": 3, "parallelism": 1, "template": {"spec": {"containers": []}}},
            "status": {"succeeded": 3, "startTime": ago(200), "completionTime": ago(20),
                       "conditions": [{"type": "Complete", "status": "True"}]},
        });
        assert_eq!(cell(JOB_COLUMNS, "Status", &j), json!("Complete"));
        assert_eq!(cell(JOB_COLUMNS, "Completions", &j), json!("3/3"));
        assert_eq!(cell(JOB_COLUMNS, "Duration", &j), json!("3m"));
        let running = json!({"spec": {"parallelism": 4}, "status": {"startTime": ago(30)}});
        assert_eq!(cell(JOB_COLUMNS, "Status", &running), json!("Running"));
        assert_eq!(
            cell(JOB_COLUMNS, "Completions", &running),
            json!("0/1 of 4")
        );
        assert_eq!(cell(JOB_COLUMNS, "Duration", &running), json!("30s"));
    }

    #[test]
    fn events_show_object_source_and_count() {
        let e = json!({
            "metadata": {"name": "web.17a"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
            "reason": "Pulled", "type": "Normal", "message": " pulled \n",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": ago(600), "lastTimestamp": ago(60), "count": 4,
        });
        let row = cells(EVENT_COLUMNS, &e);
        assert_eq!(
            row,
            vec![
                json!("60s"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web"),
                json!("spec.containers{app}"),
                json!("kubelet, node-1"),
                json!("pulled"),
                json!("10m"),
                json!(4),
                json!("web.17a")
            ]
        );
        let new_style = json!({"regarding": {"kind": "Node", "name": "n1"}, "note": "hi", "eventTime": "2023-11-14T22:13:00.000000Z",
            "reportingController": "kubelet"});
        assert_eq!(cell(EVENT_COLUMNS, "Object", &new_style), json!("node/n1"));
        assert_eq!(cell(EVENT_COLUMNS, "Message", &new_style), json!("hi"));
        assert_eq!(cell(EVENT_COLUMNS, "Source", &new_style), json!("kubelet"));
        assert_eq!(cell(EVENT_COLUMNS, "Count", &new_style), json!(1));
        assert_eq!(cell(EVENT_COLUMNS, "Last Seen", &new_style), json!("20s"));
    }

    #[test]
    fn label_selectors_print_sorted_by_key() {
        let sel = json!({"matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]},
                                 {"key": "canary", "operator": "DoesNotExist"}]});
        assert_eq!(
            format_label_selector(Some(&sel)),
            "a=1,b=2,!canary,env in (dev,prod)"
        );
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(
            format_label_selector(Some(
                &json!({"matchExpressions": [{"key": "x", "operator": "Bogus"}]})
            )),
            "<error>"
        );
    }

    #[test]
    fn endpoints_list_three_addresses_then_how_many_more() {
        let ep = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(
            cell(ENDPOINTS_COLUMNS, "Endpoints", &ep),
            json!("10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...")
        );
        assert_eq!(
            cell(ENDPOINTS_COLUMNS, "Endpoints", &json!({})),
            json!("<none>")
        );
    }

    #[test]
    fn hpa_targets_cover_v1_and_v2_shapes() {
        let v2 = json!({"spec": {"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]},
            "status": {"currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 12}}}]}});
        assert_eq!(
            cell(HORIZONTAL_POD_AUTOSCALER_COLUMNS, "Targets", &v2),
            json!("cpu: 12%/80%")
        );
        let v1 = json!({"spec": {"targetCPUUtilizationPercentage": 50, "maxReplicas": 4}});
        assert_eq!(
            cell(HORIZONTAL_POD_AUTOSCALER_COLUMNS, "Targets", &v1),
            json!("cpu: <unknown>/50%")
        );
        assert_eq!(
            cell(HORIZONTAL_POD_AUTOSCALER_COLUMNS, "MinPods", &v1),
            json!("<unset>")
        );
    }

    #[test]
    fn resource_quotas_split_requests_from_limits() {
        let q = json!({"status": {"hard": {"pods": "10", "limits.cpu": "4", "requests.memory": "1Gi"},
                                  "used": {"pods": "3", "limits.cpu": "500m"}}});
        assert_eq!(
            cell(RESOURCE_QUOTA_COLUMNS, "Request", &q),
            json!("pods: 3/10, requests.memory: 0/1Gi")
        );
        assert_eq!(
            cell(RESOURCE_QUOTA_COLUMNS, "Limit", &q),
            json!("limits.cpu: 500m/4")
        );
    }

    #[test]
    fn storage_classes_mark_the_default_one() {
        let sc = json!({"metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path"});
        assert_eq!(
            cells(STORAGE_CLASS_COLUMNS, &sc),
            vec![
                json!("standard (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("Immediate"),
                json!(false),
                json!("<unknown>")
            ]
        );
    }

    #[test]
    fn the_default_table_prints_the_creation_time_in_rfc3339() {
        let role =
            json!({"metadata": {"name": "reader", "creationTimestamp": "2024-01-02T03:04:05Z"}});
        assert_eq!(
            cells(DEFAULT_COLUMNS, &role),
            vec![json!("reader"), json!("2024-01-02T03:04:05Z")]
        );
        assert_eq!(
            cells(DEFAULT_COLUMNS, &json!({})),
            vec![json!(""), json!("0001-01-01T00:00:00Z")]
        );
    }
}
