//! `skiffctl describe`: kubectl's human view for pods, deployments, nodes
//! and services, a generic one for the rest, each with its Events.

use anyhow::Result;
use serde_json::Value;

use crate::commands::get::{parse_targets, resolve};
use crate::config::{Ctx, GlobalArgs};
use crate::discovery::ResourceType;
use crate::output::{self, age};
use crate::rest;

/// Show details of a specific resource or group of resources.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// TYPE [NAME_PREFIX...] or TYPE/NAME.
    #[arg(required = true)]
    pub targets: Vec<String>,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Show events.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub show_events: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Lines of `Key:  value`, aligned per run of same-indent lines as
/// kubectl's tabwriter aligns them.
#[derive(Default)]
pub struct Out {
    lines: Vec<(usize, String, Option<String>)>,
}

impl Out {
    /// `Key:` and its value at `indent`.
    pub fn kv(&mut self, indent: usize, key: &str, value: impl Into<String>) {
        self.lines
            .push((indent, format!("{key}:"), Some(value.into())));
    }
    /// A heading line (`Containers:`) or any text without a value column.
    pub fn line(&mut self, indent: usize, text: impl Into<String>) {
        self.lines.push((indent, text.into(), None));
    }
    /// `Key:` then one `k=v` per line (or `<none>`), as Labels print.
    pub fn map(&mut self, indent: usize, key: &str, m: &Value, sep: &str) {
        let entries: Vec<String> = m
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                format!(
                    "{k}{sep}{}",
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                )
            })
            .collect();
        if entries.is_empty() {
            self.kv(indent, key, "<none>");
        } else {
            for (i, e) in entries.into_iter().enumerate() {
                if i == 0 {
                    self.kv(indent, key, e);
                } else {
                    self.lines.push((indent, String::new(), Some(e)));
                }
            }
        }
    }
    /// A table under a heading, kubectl's `Type  Status` blocks.
    pub fn table(&mut self, indent: usize, headers: &[&str], rows: &[Vec<String>]) {
        let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
        let mut all = vec![
            headers
                .iter()
                .map(|h| "-".repeat(h.len()))
                .collect::<Vec<_>>(),
        ];
        all.extend(rows.iter().cloned());
        let text = output::plain_table(&headers, &all, false);
        for l in text.lines() {
            self.line(indent, l.to_string());
        }
    }

    /// Lines with a value align in runs, whatever their indent, as
    /// kubectl's tabwriter (padding 2) aligns them; a heading ends a run.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut i = 0;
        while i < self.lines.len() {
            let mut j = i;
            while j < self.lines.len() && self.lines[j].2.is_some() {
                j += 1;
            }
            if j == i {
                let (ind, text, _) = &self.lines[i];
                out.push_str(&format!("{}{text}\n", " ".repeat(*ind)));
                i += 1;
                continue;
            }
            let width = self.lines[i..j]
                .iter()
                .map(|l| l.0 + l.1.len())
                .max()
                .unwrap_or(0)
                + 2;
            for (ind, key, value) in &self.lines[i..j] {
                let v = value.as_deref().unwrap_or("");
                let lead = format!("{}{key}", " ".repeat(*ind));
                let line = format!("{lead:<width$}{v}");
                out.push_str(line.trim_end());
                out.push('\n');
            }
            i = j;
        }
        out
    }
}

/// A timestamp as kubectl describe prints one (RFC 1123 with a numeric zone).
pub fn when(v: &Value) -> String {
    match v.as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()) {
        Some(t) => t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string(),
        None => s(v),
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => "<none>".into(),
        other => other.to_string(),
    }
}

pub async fn run(args: Args) -> Result<()> {
    let ctx = args.global.connect().await?;
    let reqs = parse_targets(&args.targets)?;
    let resources = ctx.resources().await?;
    let ns = (!args.all_namespaces).then_some(ctx.namespace.as_str());
    let mut first = true;
    let mut failed = false;
    for (t, names) in resolve(resources, &reqs)? {
        let mut objects = Vec::new();
        if names.is_empty() || args.selector.is_some() {
            let q = rest::query(&[("labelSelector", args.selector.clone().unwrap_or_default())]);
            let list = rest::get(&ctx.client, &format!("{}{q}", t.path(ns, None))).await?;
            objects.extend(list["items"].as_array().cloned().unwrap_or_default());
        } else {
            for n in &names {
                match rest::get(&ctx.client, &t.path(Some(&ctx.namespace), Some(n))).await {
                    Ok(o) => objects.push(o),
                    Err(e) if rest::is_not_found(&e) => {
                        // kubectl describes every object whose name starts with the argument.
                        let list = rest::get(&ctx.client, &t.path(ns, None)).await?;
                        let matched: Vec<Value> = list["items"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|o| {
                                o["metadata"]["name"]
                                    .as_str()
                                    .is_some_and(|x| x.starts_with(n.as_str()))
                            })
                            .cloned()
                            .collect();
                        if matched.is_empty() {
                            failed = true;
                            eprintln!("{}", rest::error_text(&e.into()));
                        }
                        objects.extend(matched);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        for obj in objects {
            if !first {
                println!("\n");
            }
            first = false;
            print!("{}", describe(&ctx, t, &obj, args.show_events).await?);
        }
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

/// The whole description of one object.
pub async fn describe(ctx: &Ctx, t: &ResourceType, obj: &Value, events: bool) -> Result<String> {
    let mut out = Out::default();
    match (t.group.as_str(), t.kind.as_str()) {
        ("", "Pod") => pod(&mut out, obj),
        ("apps", "Deployment") => deployment(ctx, &mut out, obj).await?,
        ("", "Node") => node(ctx, &mut out, obj).await?,
        ("", "Service") => service(ctx, &mut out, obj).await?,
        ("", "ConfigMap") => config_map(&mut out, obj),
        ("", "Namespace") => {
            namespace(ctx, &mut out, obj).await;
            return Ok(out.render());
        }
        _ => generic(&mut out, obj),
    }
    if events {
        event_block(ctx, &mut out, obj).await;
    }
    Ok(out.render())
}

fn header(out: &mut Out, obj: &Value) {
    let m = &obj["metadata"];
    out.kv(0, "Name", s(&m["name"]));
    if let Some(ns) = m["namespace"].as_str() {
        out.kv(0, "Namespace", ns);
    }
}

fn labels_annotations(out: &mut Out, indent: usize, m: &Value) {
    out.map(indent, "Labels", &m["labels"], "=");
    let mut ann = m["annotations"].clone();
    if let Some(a) = ann.as_object_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    out.map(indent, "Annotations", &ann, ": ");
}

fn controlled_by(m: &Value) -> Option<String> {
    m["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == true)
        .map(|o| format!("{}/{}", s(&o["kind"]), s(&o["name"])))
}

fn pod(out: &mut Out, p: &Value) {
    let m = &p["metadata"];
    let spec = &p["spec"];
    let st = &p["status"];
    header(out, p);
    out.kv(
        0,
        "Priority",
        spec["priority"].as_i64().unwrap_or(0).to_string(),
    );
    if let Some(pc) = spec["priorityClassName"].as_str() {
        out.kv(0, "Priority Class Name", pc);
    }
    out.kv(
        0,
        "Service Account",
        spec["serviceAccountName"].as_str().unwrap_or("default"),
    );
    let node = match (spec["nodeName"].as_str(), st["hostIP"].as_str()) {
        (Some(n), Some(ip)) => format!("{n}/{ip}"),
        (Some(n), None) => n.to_string(),
        _ => "<none>".into(),
    };
    out.kv(0, "Node", node);
    if let Some(t) = st["startTime"].as_str() {
        out.kv(0, "Start Time", when(&Value::String(t.to_string())));
    }
    labels_annotations(out, 0, m);
    let mut status = s(&st["phase"]);
    if m["deletionTimestamp"].is_string() {
        status = format!("Terminating (lasts {})", age(&m["deletionTimestamp"]));
    }
    out.kv(0, "Status", status);
    if let Some(r) = st["reason"].as_str() {
        out.kv(0, "Reason", r);
    }
    if let Some(msg) = st["message"].as_str() {
        out.kv(0, "Message", msg);
    }
    out.kv(0, "IP", st["podIP"].as_str().unwrap_or(""));
    match st["podIPs"].as_array() {
        Some(ips) if !ips.is_empty() => {
            out.line(0, "IPs:");
            for ip in ips {
                out.kv(2, "IP", s(&ip["ip"]));
            }
        }
        _ => out.kv(0, "IPs", "<none>"),
    }
    if let Some(c) = controlled_by(m) {
        out.kv(0, "Controlled By", c);
    }
    for (key, title, statuses) in [
        ("initContainers", "Init Containers", "initContainerStatuses"),
        ("containers", "Containers", "containerStatuses"),
    ] {
        let Some(cs) = spec[key].as_array() else {
            continue;
        };
        if cs.is_empty() {
            continue;
        }
        out.line(0, format!("{title}:"));
        for c in cs {
            let name = s(&c["name"]);
            let status = st[statuses]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["name"] == name.as_str()))
                .cloned()
                .unwrap_or(Value::Null);
            container(out, c, &status, 2);
        }
    }
    if let Some(conds) = st["conditions"].as_array() {
        out.line(0, "Conditions:");
        let rows: Vec<Vec<String>> = conds
            .iter()
            .map(|c| vec![s(&c["type"]), s(&c["status"])])
            .collect();
        out.table(2, &["Type", "Status"], &rows);
    }
    volumes(out, &spec["volumes"]);
    if let Some(q) = st["qosClass"].as_str() {
        out.kv(0, "QoS Class", q);
    }
    out.map(0, "Node-Selectors", &spec["nodeSelector"], "=");
    let tolerations = tolerations(&spec["tolerations"]);
    list_kv(out, 0, "Tolerations", &tolerations);
}

fn tolerations(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let mut x = t["key"].as_str().unwrap_or("").to_string();
            if let Some(v) = t["value"].as_str() {
                x.push_str(&format!("={v}"));
            } else if t["operator"] == "Exists" && !x.is_empty() {
                x.push(':');
            }
            if let Some(e) = t["effect"].as_str() {
                if !x.ends_with(':') {
                    x.push(':');
                }
                x.push_str(e);
            } else if x.ends_with(':') {
                x.pop();
            }
            if x.is_empty() {
                x = if t["operator"] == "Exists" {
                    "op=Exists".into()
                } else {
                    "<none>".into()
                };
            } else if t["operator"] == "Exists" {
                x = format!("{x} op=Exists");
            }
            if let Some(secs) = t["tolerationSeconds"].as_i64() {
                x.push_str(&format!(" for {secs}s"));
            }
            x
        })
        .collect()
}

fn list_kv(out: &mut Out, indent: usize, key: &str, items: &[String]) {
    if items.is_empty() {
        out.kv(indent, key, "<none>");
    }
    for (i, x) in items.iter().enumerate() {
        if i == 0 {
            out.kv(indent, key, x.clone());
        } else {
            out.lines.push((indent, String::new(), Some(x.clone())));
        }
    }
}

/// One container; its name at `name_indent` (2 in pods, 3 in templates).
fn container(out: &mut Out, c: &Value, status: &Value, name_indent: usize) {
    out.line(name_indent, format!("{}:", s(&c["name"])));
    if let Some(id) = status["containerID"].as_str() {
        out.kv(4, "Container ID", id);
    }
    out.kv(4, "Image", s(&c["image"]));
    if let Some(id) = status["imageID"].as_str() {
        out.kv(4, "Image ID", id);
    }
    let ports: Vec<String> = c["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}/{}",
                s(&p["containerPort"]),
                p["protocol"].as_str().unwrap_or("TCP")
            )
        })
        .collect();
    let host_ports: Vec<String> = c["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}/{}",
                p["hostPort"].as_i64().unwrap_or(0),
                p["protocol"].as_str().unwrap_or("TCP")
            )
        })
        .collect();
    out.kv(
        4,
        if ports.len() > 1 { "Ports" } else { "Port" },
        if ports.is_empty() {
            "<none>".into()
        } else {
            ports.join(", ")
        },
    );
    out.kv(
        4,
        if host_ports.len() > 1 {
            "Host Ports"
        } else {
            "Host Port"
        },
        if host_ports.is_empty() {
            "<none>".into()
        } else {
            host_ports.join(", ")
        },
    );
    if let Some(cmd) = c["command"].as_array() {
        out.line(4, "Command:");
        for x in cmd {
            out.line(6, s(x));
        }
    }
    if let Some(a) = c["args"].as_array() {
        out.line(4, "Args:");
        for x in a {
            out.line(6, s(x));
        }
    }
    if !status.is_null() {
        state(out, "State", &status["state"]);
        if status["lastState"]
            .as_object()
            .is_some_and(|m| !m.is_empty())
        {
            state(out, "Last State", &status["lastState"]);
        }
        out.kv(
            4,
            "Ready",
            if status["ready"] == true {
                "True"
            } else {
                "False"
            },
        );
        out.kv(
            4,
            "Restart Count",
            status["restartCount"].as_i64().unwrap_or(0).to_string(),
        );
    }
    for kind in ["limits", "requests"] {
        if let Some(m) = c["resources"][kind].as_object().filter(|m| !m.is_empty()) {
            out.line(4, format!("{}{}:", kind[..1].to_uppercase(), &kind[1..]));
            for (k, v) in m {
                out.kv(6, k, s(v));
            }
        }
    }
    for (probe, title) in [
        ("livenessProbe", "Liveness"),
        ("readinessProbe", "Readiness"),
        ("startupProbe", "Startup"),
    ] {
        let p = &c[probe];
        if p.is_object() {
            let how = if let Some(h) = p.get("httpGet") {
                format!(
                    "http-get {}://:{}{}",
                    h["scheme"].as_str().unwrap_or("HTTP").to_lowercase(),
                    s(&h["port"]),
                    h["path"].as_str().unwrap_or("/")
                )
            } else if let Some(t) = p.get("tcpSocket") {
                format!("tcp-socket :{}", s(&t["port"]))
            } else if let Some(e) = p.get("exec") {
                format!(
                    "exec [{}]",
                    e["command"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(s)
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            } else {
                "unknown".into()
            };
            out.kv(
                4,
                title,
                format!(
                    "{how} delay={}s timeout={}s period={}s #success={} #failure={}",
                    p["initialDelaySeconds"].as_i64().unwrap_or(0),
                    p["timeoutSeconds"].as_i64().unwrap_or(1),
                    p["periodSeconds"].as_i64().unwrap_or(10),
                    p["successThreshold"].as_i64().unwrap_or(1),
                    p["failureThreshold"].as_i64().unwrap_or(3)
                ),
            );
        }
    }
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let v = if let Some(v) = e["value"].as_str() {
                v.to_string()
            } else if let Some(r) = e["valueFrom"].as_object() {
                let (k, inner) = r
                    .iter()
                    .next()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .unwrap_or_default();
                format!(
                    "<set to the key '{}' of {k} '{}'>",
                    s(&inner["key"]),
                    s(&inner["name"])
                )
            } else {
                String::new()
            };
            (s(&e["name"]), v)
        })
        .collect();
    if env.is_empty() {
        out.kv(4, "Environment", "<none>");
    } else {
        out.line(4, "Environment:");
        for (k, v) in env {
            out.kv(6, &k, v);
        }
    }
    let mounts: Vec<String> = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{} from {} ({})",
                s(&m["mountPath"]),
                s(&m["name"]),
                if m["readOnly"] == true { "ro" } else { "rw" }
            )
        })
        .collect();
    if mounts.is_empty() {
        out.kv(4, "Mounts", "<none>");
    } else {
        out.line(4, "Mounts:");
        for m in mounts {
            out.line(6, m);
        }
    }
}

fn state(out: &mut Out, title: &str, st: &Value) {
    if let Some(r) = st.get("running") {
        out.kv(4, title, "Running");
        out.kv(6, "Started", when(&r["startedAt"]));
    } else if let Some(w) = st.get("waiting") {
        out.kv(4, title, "Waiting");
        if let Some(r) = w["reason"].as_str() {
            out.kv(6, "Reason", r);
        }
    } else if let Some(t) = st.get("terminated") {
        out.kv(4, title, "Terminated");
        if let Some(r) = t["reason"].as_str() {
            out.kv(6, "Reason", r);
        }
        out.kv(
            6,
            "Exit Code",
            t["exitCode"].as_i64().unwrap_or(0).to_string(),
        );
        out.kv(6, "Started", when(&t["startedAt"]));
        out.kv(6, "Finished", when(&t["finishedAt"]));
    } else {
        out.kv(4, title, "Waiting");
    }
}

fn volumes(out: &mut Out, vols: &Value) {
    let Some(vs) = vols.as_array().filter(|v| !v.is_empty()) else {
        out.kv(0, "Volumes", "<none>");
        return;
    };
    out.line(0, "Volumes:");
    for v in vs {
        out.line(2, format!("{}:", s(&v["name"])));
        let Some((kind, src)) = v
            .as_object()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() != "name"))
        else {
            continue;
        };
        let mut c = kind.clone();
        if let Some(f) = c.get_mut(..1) {
            f.make_ascii_uppercase();
        }
        out.kv(4, "Type", c);
        for (k, x) in src.as_object().into_iter().flatten() {
            if !x.is_object() && !x.is_array() {
                let mut key = k.clone();
                if let Some(f) = key.get_mut(..1) {
                    f.make_ascii_uppercase();
                }
                out.kv(4, &key, s(x));
            }
        }
    }
}

fn template(out: &mut Out, tpl: &Value) {
    out.line(0, "Pod Template:");
    out.map(2, "Labels", &tpl["metadata"]["labels"], "=");
    if tpl["metadata"]["annotations"]
        .as_object()
        .is_some_and(|a| !a.is_empty())
    {
        out.map(2, "Annotations", &tpl["metadata"]["annotations"], ": ");
    }
    if let Some(sa) = tpl["spec"]["serviceAccountName"].as_str() {
        out.kv(2, "Service Account", sa);
    }
    out.line(2, "Containers:");
    for c in tpl["spec"]["containers"].as_array().into_iter().flatten() {
        container(out, c, &Value::Null, 3);
    }
    let mut vout = Out::default();
    volumes(&mut vout, &tpl["spec"]["volumes"]);
    vout.map(0, "Node-Selectors", &tpl["spec"]["nodeSelector"], "=");
    let tolerations = tolerations(&tpl["spec"]["tolerations"]);
    list_kv(&mut vout, 0, "Tolerations", &tolerations);
    for (ind, k, v) in vout.lines {
        out.lines.push((ind + 2, k, v));
    }
}

async fn deployment(ctx: &Ctx, out: &mut Out, d: &Value) -> Result<()> {
    let m = &d["metadata"];
    let spec = &d["spec"];
    let st = &d["status"];
    header(out, d);
    out.kv(0, "CreationTimestamp", when(&m["creationTimestamp"]));
    labels_annotations(out, 0, m);
    out.kv(
        0,
        "Selector",
        super::rollout::match_labels(&spec["selector"]),
    );
    let i = |v: &Value| v.as_i64().unwrap_or(0);
    out.kv(
        0,
        "Replicas",
        format!(
            "{} desired | {} updated | {} total | {} available | {} unavailable",
            spec["replicas"].as_i64().unwrap_or(1),
            i(&st["updatedReplicas"]),
            i(&st["replicas"]),
            i(&st["availableReplicas"]),
            i(&st["unavailableReplicas"])
        ),
    );
    let strategy = spec["strategy"]["type"].as_str().unwrap_or("RollingUpdate");
    out.kv(0, "StrategyType", strategy);
    out.kv(
        0,
        "MinReadySeconds",
        i(&spec["minReadySeconds"]).to_string(),
    );
    if strategy == "RollingUpdate" {
        let ru = &spec["strategy"]["rollingUpdate"];
        let pick = |v: &Value| if v.is_null() { "25%".to_string() } else { s(v) };
        out.kv(
            0,
            "RollingUpdateStrategy",
            format!(
                "{} max unavailable, {} max surge",
                pick(&ru["maxUnavailable"]),
                pick(&ru["maxSurge"])
            ),
        );
    }
    template(out, &spec["template"]);
    if let Some(conds) = st["conditions"].as_array() {
        out.line(0, "Conditions:");
        let rows: Vec<Vec<String>> = conds
            .iter()
            .map(|c| vec![s(&c["type"]), s(&c["status"]), s(&c["reason"])])
            .collect();
        out.table(2, &["Type", "Status", "Reason"], &rows);
    }
    let ns = m["namespace"].as_str().unwrap_or("");
    let uid = m["uid"].as_str().unwrap_or("");
    let q = rest::query(&[(
        "labelSelector",
        super::rollout::match_labels(&spec["selector"]),
    )]);
    let sets = rest::get(
        &ctx.client,
        &format!("/apis/apps/v1/namespaces/{ns}/replicasets{q}"),
    )
    .await?;
    let revision = m["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .unwrap_or("");
    let mut old = Vec::new();
    let mut new = None;
    for rs in sets["items"].as_array().into_iter().flatten() {
        if !rs["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|o| o.iter().any(|r| r["uid"] == uid))
        {
            continue;
        }
        let text = format!(
            "{} ({}/{} replicas created)",
            s(&rs["metadata"]["name"]),
            i(&rs["status"]["replicas"]),
            i(&rs["spec"]["replicas"])
        );
        if rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"].as_str()
            == Some(revision)
        {
            new = Some(text);
        } else if i(&rs["spec"]["replicas"]) > 0 || i(&rs["status"]["replicas"]) > 0 {
            old.push(text);
        }
    }
    // kubectl leaves both out until the controller made a replica set.
    if new.is_some() || !old.is_empty() {
        let old = if old.is_empty() {
            "<none>".into()
        } else {
            old.join(", ")
        };
        out.kv(0, "OldReplicaSets", old);
        out.kv(0, "NewReplicaSet", new.unwrap_or_else(|| "<none>".into()));
    }
    Ok(())
}

async fn node(ctx: &Ctx, out: &mut Out, n: &Value) -> Result<()> {
    let m = &n["metadata"];
    let spec = &n["spec"];
    let st = &n["status"];
    header(out, n);
    let roles: Vec<String> = m["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| {
            k.strip_prefix("node-role.kubernetes.io/")
                .map(str::to_string)
        })
        .collect();
    out.kv(
        0,
        "Roles",
        if roles.is_empty() {
            "<none>".into()
        } else {
            roles.join(",")
        },
    );
    labels_annotations(out, 0, m);
    out.kv(0, "CreationTimestamp", when(&m["creationTimestamp"]));
    let taints: Vec<String> = spec["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| match t["value"].as_str() {
            Some(v) => format!("{}={v}:{}", s(&t["key"]), s(&t["effect"])),
            None => format!("{}:{}", s(&t["key"]), s(&t["effect"])),
        })
        .collect();
    list_kv(out, 0, "Taints", &taints);
    out.kv(
        0,
        "Unschedulable",
        spec["unschedulable"].as_bool().unwrap_or(false).to_string(),
    );
    if let Some(conds) = st["conditions"].as_array() {
        out.line(0, "Conditions:");
        let rows: Vec<Vec<String>> = conds
            .iter()
            .map(|c| {
                vec![
                    s(&c["type"]),
                    s(&c["status"]),
                    when(&c["lastHeartbeatTime"]),
                    when(&c["lastTransitionTime"]),
                    s(&c["reason"]),
                    s(&c["message"]),
                ]
            })
            .collect();
        out.table(
            2,
            &[
                "Type",
                "Status",
                "LastHeartbeatTime",
                "LastTransitionTime",
                "Reason",
                "Message",
            ],
            &rows,
        );
    }
    out.line(0, "Addresses:");
    for a in st["addresses"].as_array().into_iter().flatten() {
        out.kv(2, &s(&a["type"]), s(&a["address"]));
    }
    for (key, title) in [("capacity", "Capacity"), ("allocatable", "Allocatable")] {
        if let Some(res) = st[key].as_object() {
            out.line(0, format!("{title}:"));
            for (k, v) in res {
                out.kv(2, k, s(v));
            }
        }
    }
    if let Some(info) = st["nodeInfo"].as_object() {
        out.line(0, "System Info:");
        for (k, title) in [
            ("machineID", "Machine ID"),
            ("systemUUID", "System UUID"),
            ("bootID", "Boot ID"),
            ("kernelVersion", "Kernel Version"),
            ("osImage", "OS Image"),
            ("operatingSystem", "Operating System"),
            ("architecture", "Architecture"),
            ("containerRuntimeVersion", "Container Runtime Version"),
            ("kubeletVersion", "Kubelet Version"),
            ("kubeProxyVersion", "Kube-Proxy Version"),
        ] {
            if let Some(v) = info.get(k) {
                out.kv(2, title, s(v));
            }
        }
    }
    if let Some(c) = spec["podCIDR"].as_str() {
        out.kv(0, "PodCIDR", c);
    }
    let name = s(&m["name"]);
    let q = rest::query(&[("fieldSelector", format!("spec.nodeName={name}"))]);
    if let Ok(pods) = rest::get(&ctx.client, &format!("/api/v1/pods{q}")).await {
        let live: Vec<&Value> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
            .collect();
        out.kv(
            0,
            "Non-terminated Pods",
            format!("({} in total)", live.len()),
        );
        let rows: Vec<Vec<String>> = live
            .iter()
            .map(|p| {
                let sum = |kind: &str, res: &str| -> String {
                    let total: f64 = p["spec"]["containers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| {
                            let q = c["resources"][kind][res].as_str()?;
                            let q = skiff_api_types::quantity::Quantity::parse(q).ok()?;
                            Some(q.nano_value() as f64 / 1e9)
                        })
                        .sum();
                    if total == 0.0 {
                        "0".into()
                    } else if res == "cpu" {
                        format!("{}m", (total * 1000.0).round() as i64)
                    } else {
                        format!("{}Mi", (total / 1024.0 / 1024.0).round() as i64)
                    }
                };
                vec![
                    s(&p["metadata"]["namespace"]),
                    s(&p["metadata"]["name"]),
                    sum("requests", "cpu"),
                    sum("limits", "cpu"),
                    sum("requests", "memory"),
                    sum("limits", "memory"),
                    age(&p["metadata"]["creationTimestamp"]),
                ]
            })
            .collect();
        if !rows.is_empty() {
            out.table(
                2,
                &[
                    "Namespace",
                    "Name",
                    "CPU Requests",
                    "CPU Limits",
                    "Memory Requests",
                    "Memory Limits",
                    "Age",
                ],
                &rows,
            );
        }
    }
    Ok(())
}

async fn service(ctx: &Ctx, out: &mut Out, svc: &Value) -> Result<()> {
    let m = &svc["metadata"];
    let spec = &svc["spec"];
    header(out, svc);
    labels_annotations(out, 0, m);
    let sel: Vec<String> = spec["selector"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", s(v)))
        .collect();
    out.kv(
        0,
        "Selector",
        if sel.is_empty() {
            "<none>".into()
        } else {
            sel.join(",")
        },
    );
    out.kv(0, "Type", spec["type"].as_str().unwrap_or("ClusterIP"));
    if let Some(p) = spec["ipFamilyPolicy"].as_str() {
        out.kv(0, "IP Family Policy", p);
    }
    if let Some(f) = spec["ipFamilies"].as_array() {
        out.kv(
            0,
            "IP Families",
            f.iter().map(s).collect::<Vec<_>>().join(","),
        );
    }
    out.kv(0, "IP", spec["clusterIP"].as_str().unwrap_or("<none>"));
    if let Some(ips) = spec["clusterIPs"].as_array() {
        out.kv(0, "IPs", ips.iter().map(s).collect::<Vec<_>>().join(","));
    }
    if let Some(e) = spec["externalName"].as_str() {
        out.kv(0, "External Name", e);
    }
    let ns = m["namespace"].as_str().unwrap_or("");
    let q = rest::query(&[(
        "labelSelector",
        format!("kubernetes.io/service-name={}", s(&m["name"])),
    )]);
    let slices = rest::get(
        &ctx.client,
        &format!("/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices{q}"),
    )
    .await
    .unwrap_or(Value::Null);
    for p in spec["ports"].as_array().into_iter().flatten() {
        let proto = p["protocol"].as_str().unwrap_or("TCP");
        let pname = p["name"].as_str().unwrap_or("<unset>");
        out.kv(0, "Port", format!("{pname}  {}/{proto}", s(&p["port"])));
        let target = if p["targetPort"].is_null() {
            s(&p["port"])
        } else {
            s(&p["targetPort"])
        };
        out.kv(0, "TargetPort", format!("{target}/{proto}"));
        if let Some(np) = p["nodePort"].as_i64() {
            out.kv(0, "NodePort", format!("{pname}  {np}/{proto}"));
        }
        let mut eps = Vec::new();
        for slice in slices["items"].as_array().into_iter().flatten() {
            let port = slice["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|sp| sp["name"].as_str().unwrap_or("") == p["name"].as_str().unwrap_or(""))
                .and_then(|sp| sp["port"].as_i64());
            let Some(port) = port else { continue };
            for ep in slice["endpoints"].as_array().into_iter().flatten() {
                if ep["conditions"]["ready"] == false {
                    continue;
                }
                for a in ep["addresses"].as_array().into_iter().flatten() {
                    eps.push(format!("{}:{port}", s(a)));
                }
            }
        }
        out.kv(0, "Endpoints", eps.join(","));
    }
    out.kv(
        0,
        "Session Affinity",
        spec["sessionAffinity"].as_str().unwrap_or("None"),
    );
    if let Some(p) = spec["externalTrafficPolicy"].as_str() {
        out.kv(0, "External Traffic Policy", p);
    }
    if let Some(p) = spec["internalTrafficPolicy"].as_str() {
        out.kv(0, "Internal Traffic Policy", p);
    }
    Ok(())
}

fn config_map(out: &mut Out, cm: &Value) {
    header(out, cm);
    labels_annotations(out, 0, &cm["metadata"]);
    out.line(0, "");
    out.line(0, "Data");
    out.line(0, "====");
    for (k, v) in cm["data"].as_object().into_iter().flatten() {
        out.line(0, format!("{k}:"));
        out.line(0, "----");
        out.line(0, s(v));
    }
    out.line(0, "");
    out.line(0, "");
    out.line(0, "BinaryData");
    out.line(0, "====");
    for (k, v) in cm["binaryData"].as_object().into_iter().flatten() {
        let len = v.as_str().map(|b| b.len() * 3 / 4).unwrap_or(0);
        out.line(0, format!("{k}: {len} bytes"));
    }
    out.line(0, "");
}

/// A namespace: its status, then its quotas and limit ranges (no events,
/// as kubectl).
async fn namespace(ctx: &Ctx, out: &mut Out, ns: &Value) {
    let name = s(&ns["metadata"]["name"]);
    out.kv(0, "Name", name.clone());
    labels_annotations(out, 0, &ns["metadata"]);
    out.kv(0, "Status", s(&ns["status"]["phase"]));
    out.line(0, "");
    let list = |r: &'static str| {
        let uri = format!("/api/v1/namespaces/{name}/{r}");
        async move { rest::get(&ctx.client, &uri).await.unwrap_or(Value::Null) }
    };
    let quotas = list("resourcequotas").await;
    match quotas["items"].as_array().filter(|a| !a.is_empty()) {
        None => out.line(0, "No resource quota."),
        Some(items) => {
            out.line(0, "Resource Quotas");
            for q in items {
                out.kv(2, "Name", s(&q["metadata"]["name"]));
                let rows: Vec<Vec<String>> = q["status"]["hard"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| vec![k.clone(), s(&q["status"]["used"][k]), s(v)])
                    .collect();
                out.table(2, &["Resource", "Used", "Hard"], &rows);
            }
        }
    }
    out.line(0, "");
    let ranges = list("limitranges").await;
    match ranges["items"].as_array().filter(|a| !a.is_empty()) {
        None => out.line(0, "No LimitRange resource."),
        Some(items) => {
            out.line(0, "Resource Limits");
            for l in items {
                out.kv(2, "Name", s(&l["metadata"]["name"]));
            }
        }
    }
}

/// kubectl's generic describer: the metadata, then every other field nested.
fn generic(out: &mut Out, obj: &Value) {
    let m = &obj["metadata"];
    header(out, obj);
    labels_annotations(out, 0, m);
    out.kv(0, "API Version", s(&obj["apiVersion"]));
    out.kv(0, "Kind", s(&obj["kind"]));
    if let Some(map) = obj.as_object() {
        for (k, v) in map {
            if matches!(k.as_str(), "apiVersion" | "kind") {
                continue;
            }
            if k == "metadata" {
                let mut meta = v.clone();
                if let Some(mm) = meta.as_object_mut() {
                    for skip in [
                        "name",
                        "namespace",
                        "labels",
                        "annotations",
                        "managedFields",
                    ] {
                        mm.remove(skip);
                    }
                }
                nested(out, 0, "Metadata", &meta);
            } else {
                nested(out, 0, &title(k), v);
            }
        }
    }
}

/// `fooBar` → `Foo Bar`, as kubectl's generic describer titles fields.
pub fn title(k: &str) -> String {
    let mut out = String::new();
    for (i, c) in k.chars().enumerate() {
        if i == 0 {
            out.extend(c.to_uppercase());
        } else {
            if c.is_uppercase()
                && !k[..k.char_indices().nth(i).map(|x| x.0).unwrap_or(0)]
                    .ends_with(|p: char| p.is_uppercase())
            {
                out.push(' ');
            }
            out.push(c);
        }
    }
    out
}

fn nested(out: &mut Out, indent: usize, key: &str, v: &Value) {
    match v {
        Value::Object(m) => {
            if m.is_empty() {
                return;
            }
            out.line(indent, format!("{key}:"));
            for (k, x) in m {
                nested(out, indent + 2, &title(k), x);
            }
        }
        Value::Array(a) => {
            if a.iter().all(|x| !x.is_object() && !x.is_array()) {
                out.kv(indent, key, a.iter().map(s).collect::<Vec<_>>().join(", "));
                return;
            }
            out.line(indent, format!("{key}:"));
            for x in a {
                match x.as_object() {
                    Some(m) => {
                        for (k, y) in m {
                            nested(out, indent + 2, &title(k), y);
                        }
                    }
                    None => out.line(indent + 2, s(x)),
                }
            }
        }
        other => out.kv(indent, key, s(other)),
    }
}

async fn event_block(ctx: &Ctx, out: &mut Out, obj: &Value) {
    let m = &obj["metadata"];
    let uid = m["uid"].as_str().unwrap_or("");
    let name = m["name"].as_str().unwrap_or("");
    let ns = m["namespace"].as_str();
    let base = match ns {
        Some(ns) => format!("/api/v1/namespaces/{ns}/events"),
        None => "/api/v1/events".to_string(),
    };
    let selector = format!("involvedObject.name={name},involvedObject.uid={uid}");
    let events = match rest::get(
        &ctx.client,
        &format!("{base}{}", rest::query(&[("fieldSelector", selector)])),
    )
    .await
    {
        Ok(v) => v,
        Err(_) => rest::get(&ctx.client, &base).await.unwrap_or(Value::Null),
    };
    let mut items: Vec<&Value> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["involvedObject"]["uid"] == uid
                || (uid.is_empty() && e["involvedObject"]["name"] == name)
        })
        .collect();
    let when = |e: &Value| {
        e["lastTimestamp"]
            .as_str()
            .or_else(|| e["eventTime"].as_str())
            .or_else(|| e["metadata"]["creationTimestamp"].as_str())
            .unwrap_or("")
            .to_string()
    };
    items.sort_by_key(|e| when(e));
    if items.is_empty() {
        out.kv(0, "Events", "<none>");
        return;
    }
    out.line(0, "Events:");
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|e| {
            let count = e["count"]
                .as_i64()
                .or_else(|| e["series"]["count"].as_i64())
                .unwrap_or(1);
            let last = Value::String(when(e));
            let first = e["firstTimestamp"].clone();
            let age_text = if count > 1 && first.is_string() {
                format!("{} (x{count} over {})", age(&last), age(&first))
            } else {
                age(&last)
            };
            let from = e["source"]["component"]
                .as_str()
                .or_else(|| e["reportingComponent"].as_str())
                .unwrap_or("")
                .to_string();
            vec![
                s(&e["type"]),
                s(&e["reason"]),
                age_text,
                from,
                e["message"].as_str().unwrap_or("").trim().to_string(),
            ]
        })
        .collect();
    out.table(2, &["Type", "Reason", "Age", "From", "Message"], &rows);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_align_within_a_block() {
        let mut out = Out::default();
        out.kv(0, "Name", "web");
        out.kv(0, "Namespace", "default");
        out.map(0, "Labels", &json!({"a": "1", "b": "2"}), "=");
        out.line(0, "Containers:");
        out.kv(4, "Image", "nginx");
        assert_eq!(
            out.render(),
            "Name:       web\nNamespace:  default\nLabels:     a=1\n            b=2\nContainers:\n    Image:  nginx\n"
        );
    }

    #[test]
    fn pods_describe_their_node_containers_and_conditions() {
        let p = json!({"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "nginx", "ports": [{"containerPort": 80}]}]},
            "status": {"phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}],
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "app", "ready": true, "restartCount": 2, "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}}]}});
        let mut out = Out::default();
        pod(&mut out, &p);
        let text = out.render();
        assert!(text.contains("Node:             n1/10.0.0.1\n"), "{text}");
        assert!(text.contains("Labels:           app=web\n"), "{text}");
        assert!(text.contains("    Image:          nginx\n"), "{text}");
        assert!(text.contains("    Port:           80/TCP\n"), "{text}");
        assert!(text.contains("    Restart Count:  2\n"), "{text}");
        assert!(
            text.contains("  Type    Status\n  ----    ------\n  Ready   True\n"),
            "{text}"
        );
    }

    #[test]
    fn generic_titles_split_camel_case() {
        assert_eq!(title("clusterIP"), "Cluster IP");
        assert_eq!(title("dataSource"), "Data Source");
        assert_eq!(title("spec"), "Spec");
    }
}
