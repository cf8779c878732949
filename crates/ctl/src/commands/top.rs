//! `skiffctl top nodes|pods`, from each kubelet's `/stats/summary` through
//! the API server's node proxy (there is no metrics API).

use anyhow::{Result, bail};
use serde_json::Value;

use crate::config::{Ctx, GlobalArgs};
use crate::output;
use crate::rest;

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

/// A Kubernetes quantity as a number (`100m` → 0.1, `1Gi` → 2^30).
pub fn quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    // Sub-unit suffixes divide, so 1900m is exactly 1.9.
    match suffix {
        "n" => return Some(n / 1e9),
        "u" => return Some(n / 1e6),
        "m" => return Some(n / 1e3),
        _ => {}
    }
    let factor = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * factor)
}

/// CPU as kubectl top prints it: millicores.
pub fn cpu_text(nano_cores: f64) -> String {
    format!("{}m", (nano_cores / 1e6).round() as i64)
}

/// Memory as kubectl top prints it: mebibytes.
pub fn memory_text(bytes: f64) -> String {
    format!("{}Mi", (bytes / 1024.0 / 1024.0).round() as i64)
}

async fn summary(ctx: &Ctx, node: &str) -> Result<Value> {
    Ok(rest::get(
        &ctx.client,
        &format!("/api/v1/nodes/{node}/proxy/stats/summary"),
    )
    .await?)
}

async fn nodes(ctx: &Ctx, args: &Args) -> Result<Vec<Value>> {
    if let Some(n) = &args.name {
        return Ok(vec![
            rest::get(&ctx.client, &format!("/api/v1/nodes/{n}")).await?,
        ]);
    }
    let q = rest::query(&[("labelSelector", args.selector.clone().unwrap_or_default())]);
    let list = rest::get(&ctx.client, &format!("/api/v1/nodes{q}")).await?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
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
    let headers: Vec<String> = ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut rows = Vec::new();
    let mut measured = false;
    for node in nodes(ctx, args).await? {
        let name = node["metadata"]["name"].as_str().unwrap_or("").to_string();
        let alloc = &node["status"]["allocatable"];
        match summary(ctx, &name).await {
            Ok(s) => {
                measured = true;
                let cpu = s["node"]["cpu"]["usageNanoCores"].as_f64().unwrap_or(0.0);
                let mem = s["node"]["memory"]["workingSetBytes"]
                    .as_f64()
                    .unwrap_or(0.0);
                let pct = |used: f64, total: Option<f64>| match total {
                    Some(t) if t > 0.0 => format!("{}%", (used / t * 100.0).round() as i64),
                    _ => "<unknown>".to_string(),
                };
                let cpu_total = alloc["cpu"].as_str().and_then(quantity).map(|c| c * 1e9);
                let mem_total = alloc["memory"].as_str().and_then(quantity);
                rows.push(vec![
                    name,
                    cpu_text(cpu),
                    pct(cpu, cpu_total),
                    memory_text(mem),
                    pct(mem, mem_total),
                ]);
            }
            Err(e) => {
                eprintln!(
                    "{}",
                    rest::error_text(&e.context(format!("reading the stats of node {name}")))
                );
                rows.push(vec![
                    name,
                    "<unknown>".into(),
                    "<unknown>".into(),
                    "<unknown>".into(),
                    "<unknown>".into(),
                ]);
            }
        }
    }
    if !measured {
        bail!("metrics not available yet");
    }
    print!("{}", output::plain_table(&headers, &rows, args.no_headers));
    Ok(())
}

async fn top_pods(ctx: &Ctx, args: &Args) -> Result<()> {
    let q = rest::query(&[("labelSelector", args.selector.clone().unwrap_or_default())]);
    let ns = (!args.all_namespaces).then_some(ctx.namespace.as_str());
    let pod_uri = match ns {
        Some(ns) => format!("/api/v1/namespaces/{ns}/pods{q}"),
        None => format!("/api/v1/pods{q}"),
    };
    let pods = rest::get(&ctx.client, &pod_uri).await?;
    let wanted: Vec<(String, String, String)> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            args.name
                .as_ref()
                .is_none_or(|n| p["metadata"]["name"] == n.as_str())
        })
        .map(|p| {
            (
                p["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let mut node_names: Vec<&str> = wanted
        .iter()
        .map(|w| w.2.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    node_names.sort();
    node_names.dedup();
    let mut stats = Vec::new();
    for n in node_names {
        match summary(ctx, n).await {
            Ok(s) => stats.extend(s["pods"].as_array().cloned().unwrap_or_default()),
            Err(e) => eprintln!(
                "{}",
                rest::error_text(&e.context(format!("reading the stats of node {n}")))
            ),
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
    for (ns, name, _) in &wanted {
        let Some(s) = stats.iter().find(|s| {
            s["podRef"]["namespace"] == ns.as_str() && s["podRef"]["name"] == name.as_str()
        }) else {
            continue;
        };
        let lead = |row: &mut Vec<String>| {
            if args.all_namespaces {
                row.push(ns.clone());
            }
            row.push(name.clone());
        };
        if args.containers {
            for c in s["containers"].as_array().into_iter().flatten() {
                let mut row = Vec::new();
                lead(&mut row);
                row.push(c["name"].as_str().unwrap_or("").to_string());
                row.push(cpu_text(c["cpu"]["usageNanoCores"].as_f64().unwrap_or(0.0)));
                row.push(memory_text(
                    c["memory"]["workingSetBytes"].as_f64().unwrap_or(0.0),
                ));
                rows.push(row);
            }
        } else {
            let sum = |key: &str, field: &str| -> f64 {
                match s[key][field].as_f64() {
                    Some(v) => v,
                    None => s["containers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c[key][field].as_f64())
                        .sum(),
                }
            };
            let mut row = Vec::new();
            lead(&mut row);
            row.push(cpu_text(sum("cpu", "usageNanoCores")));
            row.push(memory_text(sum("memory", "workingSetBytes")));
            rows.push(row);
        }
    }
    if rows.is_empty() {
        match ns {
            Some(ns) if args.name.is_none() => bail!("No resources found in {ns} namespace."),
            _ => bail!("metrics not available yet"),
        }
    }
    print!("{}", output::plain_table(&headers, &rows, args.no_headers));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_usage_read_as_kubectl_top_prints_them() {
        assert_eq!(quantity("1900m"), Some(1.9));
        assert_eq!(quantity("2"), Some(2.0));
        assert_eq!(quantity("8Gi"), Some(8.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(quantity("1k"), Some(1000.0));
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("x"), None);
        assert_eq!(cpu_text(250_000_000.0), "250m");
        assert_eq!(memory_text(512.0 * 1024.0 * 1024.0), "512Mi");
    }
}
