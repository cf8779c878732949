//! `skiffctl top nodes|pods`, as `kubectl top`: usage from the resource
//! metrics API (`metrics.k8s.io/v1beta1`, which the API server serves from
//! the kubelets' summaries), beside the nodes' allocatable resources.

use anyhow::{Result, bail};
use serde_json::Value;
use skiff_api_types::quantity::Quantity;

use crate::config::{Ctx, GlobalArgs};
use crate::output;
use crate::rest;

const METRICS: &str = "/apis/metrics.k8s.io/v1beta1";

/// Display resource (CPU/memory) usage.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// `nodes` (`node`, `no`) or `pods` (`pod`, `po`).
    pub what: String,
    /// One node or pod.
    pub name: Option<String>,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Across all namespaces (pods).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Each container's usage (pods).
    #[arg(long)]
    pub containers: bool,
    /// Don't print headers.
    #[arg(long)]
    pub no_headers: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// A quantity field in nano-units (CPU in nanocores) and in units (bytes).
fn nanos_and_units(v: &Value) -> Option<(f64, f64)> {
    let q = Quantity::parse(v.as_str()?).ok()?;
    Some((q.nano_value() as f64, q.value() as f64))
}

/// CPU as kubectl top prints it: millicores.
pub fn cpu_text(nano_cores: f64) -> String {
    format!("{}m", (nano_cores / 1e6).round() as i64)
}

/// Memory as kubectl top prints it: mebibytes.
pub fn memory_text(bytes: f64) -> String {
    format!("{}Mi", (bytes / 1024.0 / 1024.0).round() as i64)
}

/// The items of a list, or the one object a named GET answered.
fn items(v: Value) -> Vec<Value> {
    match v.get("items") {
        Some(Value::Array(items)) => items.clone(),
        _ => vec![v],
    }
}

pub async fn run(args: Args) -> Result<()> {
    let ctx = args.global.connect().await?;
    match args.what.as_str() {
        "nodes" | "node" | "no" => top_nodes(&ctx, &args).await,
        "pods" | "pod" | "po" => top_pods(&ctx, &args).await,
        other => bail!("unknown resource {other:?} for top: use nodes or pods"),
    }
}

async fn top_nodes(ctx: &Ctx, args: &Args) -> Result<()> {
    let q = rest::query(&[("labelSelector", args.selector.clone().unwrap_or_default())]);
    let (metrics_uri, nodes_uri) = match &args.name {
        Some(n) => (format!("{METRICS}/nodes/{n}"), format!("/api/v1/nodes/{n}")),
        None => (format!("{METRICS}/nodes{q}"), format!("/api/v1/nodes{q}")),
    };
    let metrics = items(rest::get(&ctx.client, &metrics_uri).await?);
    if metrics.is_empty() {
        bail!("metrics not available yet");
    }
    let nodes = items(rest::get(&ctx.client, &nodes_uri).await?);
    let headers: Vec<String> = ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let pct = |used: f64, total: Option<f64>| match total {
        Some(t) if t > 0.0 => format!("{}%", (used / t * 100.0).round() as i64),
        _ => "<unknown>".to_string(),
    };
    let mut rows = Vec::new();
    for m in &metrics {
        let name = m["metadata"]["name"].as_str().unwrap_or("");
        let allocatable = nodes
            .iter()
            .find(|n| n["metadata"]["name"] == name)
            .map(|n| &n["status"]["allocatable"]);
        let cpu = nanos_and_units(&m["usage"]["cpu"]).map_or(0.0, |c| c.0);
        let memory = nanos_and_units(&m["usage"]["memory"]).map_or(0.0, |m| m.1);
        let cpu_total = allocatable
            .and_then(|a| nanos_and_units(&a["cpu"]))
            .map(|c| c.0);
        let memory_total = allocatable
            .and_then(|a| nanos_and_units(&a["memory"]))
            .map(|m| m.1);
        rows.push(vec![
            name.to_string(),
            cpu_text(cpu),
            pct(cpu, cpu_total),
            memory_text(memory),
            pct(memory, memory_total),
        ]);
    }
    print!("{}", output::plain_table(&headers, &rows, args.no_headers));
    Ok(())
}

async fn top_pods(ctx: &Ctx, args: &Args) -> Result<()> {
    let q = rest::query(&[("labelSelector", args.selector.clone().unwrap_or_default())]);
    let ns = (!args.all_namespaces).then_some(ctx.namespace.as_str());
    let uri = match (ns, &args.name) {
        (Some(ns), Some(n)) => format!("{METRICS}/namespaces/{ns}/pods/{n}"),
        (Some(ns), None) => format!("{METRICS}/namespaces/{ns}/pods{q}"),
        (None, _) => format!("{METRICS}/pods{q}"),
    };
    let metrics: Vec<Value> = items(rest::get(&ctx.client, &uri).await?)
        .into_iter()
        .filter(|m| {
            args.name
                .as_ref()
                .is_none_or(|n| m["metadata"]["name"] == n.as_str())
        })
        .collect();
    if metrics.is_empty() {
        match ns {
            Some(ns) if args.name.is_none() => bail!("No resources found in {ns} namespace."),
            _ => bail!("metrics not available yet"),
        }
    }
    let mut headers = Vec::new();
    if args.all_namespaces {
        headers.push("NAMESPACE".to_string());
    }
    headers.push("NAME".into());
    if args.containers {
        headers.push("CONTAINER".into());
    }
    headers.push("CPU(cores)".into());
    headers.push("MEMORY(bytes)".into());
    let mut rows = Vec::new();
    for m in &metrics {
        let lead = |row: &mut Vec<String>| {
            if args.all_namespaces {
                row.push(
                    m["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                );
            }
            row.push(m["metadata"]["name"].as_str().unwrap_or("").to_string());
        };
        let containers = m["containers"].as_array().cloned().unwrap_or_default();
        let usage = |c: &Value| {
            (
                nanos_and_units(&c["usage"]["cpu"]).map_or(0.0, |c| c.0),
                nanos_and_units(&c["usage"]["memory"]).map_or(0.0, |m| m.1),
            )
        };
        if args.containers {
            for c in &containers {
                let mut row = Vec::new();
                lead(&mut row);
                row.push(c["name"].as_str().unwrap_or("").to_string());
                let (cpu, memory) = usage(c);
                row.push(cpu_text(cpu));
                row.push(memory_text(memory));
                rows.push(row);
            }
        } else {
            let (cpu, memory) = containers
                .iter()
                .map(usage)
                .fold((0.0, 0.0), |(a, b), (c, m)| (a + c, b + m));
            let mut row = Vec::new();
            lead(&mut row);
            row.push(cpu_text(cpu));
            row.push(memory_text(memory));
            rows.push(row);
        }
    }
    print!("{}", output::plain_table(&headers, &rows, args.no_headers));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_reads_as_kubectl_top_prints_it() {
        assert_eq!(nanos_and_units(&json!("1900m")).unwrap().0, 1.9e9);
        assert_eq!(
            nanos_and_units(&json!("8Gi")).unwrap().1,
            8.0 * 1024.0 * 1024.0 * 1024.0
        );
        assert_eq!(nanos_and_units(&json!("250000000n")).unwrap().0, 2.5e8);
        assert!(nanos_and_units(&json!("x")).is_none());
        assert_eq!(cpu_text(250_000_000.0), "250m");
        assert_eq!(memory_text(512.0 * 1024.0 * 1024.0), "512Mi");
    }

    #[test]
    fn a_list_or_one_object_gives_its_items() {
        assert_eq!(items(json!({"items": [{"a": 1}, {"a": 2}]})).len(), 2);
        assert_eq!(items(json!({"kind": "NodeMetrics"})).len(), 1);
    }
}
