//! `skiffctl cordon|uncordon|drain`.

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::{Result, bail};
use http::Method;
use serde_json::{Value, json};

use crate::config::{Ctx, GlobalArgs, parse_duration};
use crate::rest;

/// Mark nodes (un)schedulable.
#[derive(Debug, Clone, clap::Args)]
pub struct CordonArgs {
    /// Node names.
    #[arg(required_unless_present = "selector")]
    pub nodes: Vec<String>,
    /// Selector (label query) to filter nodes on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// `none` or `server`.
    #[arg(long, num_args = 0..=1, default_missing_value = "server", default_value = "none")]
    pub dry_run: String,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Drain a node in preparation for maintenance.
#[derive(Debug, Clone, clap::Args)]
pub struct DrainArgs {
    /// Node names.
    #[arg(required_unless_present = "selector")]
    pub nodes: Vec<String>,
    /// Selector (label query) to filter nodes on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Ignore DaemonSet-managed pods.
    #[arg(long)]
    pub ignore_daemonsets: bool,
    /// Continue even if there are pods using emptyDir (their data is lost).
    #[arg(long)]
    pub delete_emptydir_data: bool,
    /// Continue even if there are pods that do not declare a controller.
    #[arg(long)]
    pub force: bool,
    /// Seconds given to each pod to terminate gracefully (-1: the pod's own).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// How long to wait before giving up (0: forever).
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// Delete pods instead of evicting them (skips PodDisruptionBudgets).
    #[arg(long)]
    pub disable_eviction: bool,
    /// Label selector for the pods to drain.
    #[arg(long)]
    pub pod_selector: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

async fn node_names(ctx: &Ctx, nodes: &[String], selector: &Option<String>) -> Result<Vec<String>> {
    if let Some(sel) = selector {
        let list = rest::get(
            &ctx.client,
            &format!(
                "/api/v1/nodes{}",
                rest::query(&[("labelSelector", sel.clone())])
            ),
        )
        .await?;
        return Ok(list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect());
    }
    Ok(nodes.to_vec())
}

/// Sets `spec.unschedulable`; prints as kubectl does.
async fn set_unschedulable(ctx: &Ctx, name: &str, on: bool, dry: bool) -> Result<()> {
    let uri = format!("/api/v1/nodes/{name}");
    let node = rest::get(&ctx.client, &uri).await?;
    let now = node["spec"]["unschedulable"].as_bool().unwrap_or(false);
    let word = if on { "cordoned" } else { "uncordoned" };
    if now == on {
        println!("node/{name} already {word}");
        return Ok(());
    }
    let q = if dry { "?dryRun=All" } else { "" };
    let value = if on { json!(true) } else { Value::Null };
    rest::patch(
        &ctx.client,
        &format!("{uri}{q}"),
        "application/strategic-merge-patch+json",
        &json!({"spec": {"unschedulable": value}}),
    )
    .await?;
    let suffix = if dry { " (server dry run)" } else { "" };
    println!("node/{name} {word}{suffix}");
    Ok(())
}

pub async fn cordon(args: CordonArgs, on: bool) -> Result<()> {
    let ctx = args.global.connect().await?;
    let dry = args.dry_run == "server";
    for name in node_names(&ctx, &args.nodes, &args.selector).await? {
        set_unschedulable(&ctx, &name, on, dry).await?;
    }
    Ok(())
}

/// Why a pod cannot be drained, or that it is skipped, per kubectl's filters.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Evict,
    /// Skipped, with a warning (DaemonSet pods with --ignore-daemonsets).
    Skip(&'static str),
    /// Skipped silently (mirror pods, finished pods' handled as evictable).
    Ignore,
    /// Refused: the message kubectl gives, to list with the pods.
    Refuse(&'static str),
}

/// Applies kubectl's drain filters to one pod.
pub fn verdict(pod: &Value, args: &DrainArgs) -> Verdict {
    let meta = &pod["metadata"];
    if meta["annotations"]["kubernetes.io/config.mirror"].is_string() {
        return Verdict::Ignore;
    }
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    let finished = phase == "Succeeded" || phase == "Failed";
    let controller = meta["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["controller"] == true);
    if let Some(c) = controller
        && c["kind"] == "DaemonSet"
    {
        return if args.ignore_daemonsets {
            Verdict::Skip("ignoring DaemonSet-managed Pods")
        } else {
            Verdict::Refuse(
                "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)",
            )
        };
    }
    if controller.is_none() && !finished && !args.force {
        return Verdict::Refuse(
            "cannot delete Pods that declare no controller (use --force to override)",
        );
    }
    let empty_dir = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v.get("emptyDir").is_some());
    if empty_dir && !finished && !args.delete_emptydir_data {
        return Verdict::Refuse(
            "cannot delete Pods with local storage (use --delete-emptydir-data to override)",
        );
    }
    Verdict::Evict
}

pub async fn drain(args: DrainArgs) -> Result<()> {
    let ctx = args.global.connect().await?;
    let limit = parse_duration(&args.timeout)?;
    for name in node_names(&ctx, &args.nodes, &args.selector).await? {
        set_unschedulable(&ctx, &name, true, false).await?;
        drain_node(&ctx, &args, &name, limit).await?;
        println!("node/{name} drained");
    }
    Ok(())
}

fn pod_ref(p: &Value) -> String {
    format!(
        "{}/{}",
        p["metadata"]["namespace"].as_str().unwrap_or(""),
        p["metadata"]["name"].as_str().unwrap_or("")
    )
}

async fn drain_node(ctx: &Ctx, args: &DrainArgs, node: &str, limit: Duration) -> Result<()> {
    let q = rest::query(&[
        ("fieldSelector", format!("spec.nodeName={node}")),
        (
            "labelSelector",
            args.pod_selector.clone().unwrap_or_default(),
        ),
    ]);
    let list = rest::get(&ctx.client, &format!("/api/v1/pods{q}")).await?;
    let mut evict = Vec::new();
    let mut refused: Vec<(&'static str, Vec<String>)> = Vec::new();
    let mut skipped: Vec<(&'static str, Vec<String>)> = Vec::new();
    for pod in list["items"].as_array().into_iter().flatten() {
        match verdict(pod, args) {
            Verdict::Evict => evict.push(pod.clone()),
            Verdict::Ignore => {}
            Verdict::Skip(why) => push_group(&mut skipped, why, pod_ref(pod)),
            Verdict::Refuse(why) => push_group(&mut refused, why, pod_ref(pod)),
        }
    }
    if !refused.is_empty() {
        let parts: Vec<String> = refused
            .iter()
            .map(|(why, pods)| format!("{why}: {}", pods.join(", ")))
            .collect();
        bail!(
            "unable to drain node \"{node}\" due to error: [{}], continuing command...\nThere are pending nodes to be drained:\n {node}",
            parts.join(", ")
        );
    }
    for (why, pods) in &skipped {
        eprintln!("Warning: {why}: {}", pods.join(", "));
    }
    let deadline = (!limit.is_zero()).then(|| tokio::time::Instant::now() + limit);
    let bar = (std::io::stderr().is_terminal() && !evict.is_empty()).then(|| {
        let b = indicatif::ProgressBar::new(evict.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} evicting pods {pos}/{len} {wide_msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut pending = Vec::new();
    for pod in &evict {
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
        let name = pod["metadata"]["name"].as_str().unwrap_or("");
        println!("evicting pod {ns}/{name}");
        loop {
            let result = if args.disable_eviction {
                let mut opts = json!({"kind": "DeleteOptions", "apiVersion": "v1"});
                if args.grace_period >= 0 {
                    opts["gracePeriodSeconds"] = json!(args.grace_period);
                }
                rest::send_json(
                    &ctx.client,
                    Method::DELETE,
                    &format!("/api/v1/namespaces/{ns}/pods/{name}"),
                    &opts,
                )
                .await
            } else {
                let mut eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction",
                    "metadata": {"name": name, "namespace": ns}});
                if args.grace_period >= 0 {
                    eviction["deleteOptions"] = json!({"gracePeriodSeconds": args.grace_period});
                }
                rest::send_json(
                    &ctx.client,
                    Method::POST,
                    &format!("/api/v1/namespaces/{ns}/pods/{name}/eviction"),
                    &eviction,
                )
                .await
            };
            match result {
                Ok(_) => break,
                Err(e) if rest::is_not_found(&e) => break,
                Err(kube::Error::Api(s)) if s.code == 429 => {
                    eprintln!(
                        "error when evicting pods/\"{name}\" -n \"{ns}\" (will retry after 5s): {}",
                        s.message
                    );
                    if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        bail!("drain did not complete within {limit:?}");
                    }
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Err(e) => {
                    return Err(anyhow::Error::from(e)
                        .context(format!("error when evicting pods/\"{name}\" -n \"{ns}\"")));
                }
            }
        }
        pending.push((
            format!("/api/v1/namespaces/{ns}/pods/{name}"),
            pod["metadata"]["uid"].as_str().map(str::to_string),
            name.to_string(),
        ));
    }
    for (uri, uid, name) in pending {
        loop {
            let gone = match rest::get(&ctx.client, &uri).await {
                Err(e) if rest::is_not_found(&e) => true,
                Err(e) => return Err(e.into()),
                Ok(v) => v["metadata"]["uid"].as_str() != uid.as_deref(),
            };
            if gone {
                break;
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                if let Some(b) = &bar {
                    b.finish_and_clear();
                }
                bail!("drain did not complete within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if let Some(b) = &bar {
            b.inc(1);
            b.set_message(name.clone());
        }
        println!("pod/{name} evicted");
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(())
}

fn push_group(groups: &mut Vec<(&'static str, Vec<String>)>, why: &'static str, pod: String) {
    match groups.iter_mut().find(|(w, _)| *w == why) {
        Some((_, pods)) => pods.push(pod),
        None => groups.push((why, vec![pod])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        d: DrainArgs,
    }

    fn args(flags: &[&str]) -> DrainArgs {
        let mut argv = vec!["drain", "n1"];
        argv.extend_from_slice(flags);
        T::parse_from(argv).d
    }

    #[test]
    fn drain_filters_follow_kubectl() {
        let ds =
            json!({"metadata": {"ownerReferences": [{"kind": "DaemonSet", "controller": true}]}});
        assert!(matches!(verdict(&ds, &args(&[])), Verdict::Refuse(_)));
        assert!(matches!(
            verdict(&ds, &args(&["--ignore-daemonsets"])),
            Verdict::Skip(_)
        ));
        let bare = json!({"metadata": {}, "status": {"phase": "Running"}});
        assert!(matches!(verdict(&bare, &args(&[])), Verdict::Refuse(_)));
        assert_eq!(verdict(&bare, &args(&["--force"])), Verdict::Evict);
        let done = json!({"metadata": {}, "status": {"phase": "Succeeded"}});
        assert_eq!(verdict(&done, &args(&[])), Verdict::Evict);
        let scratch = json!({"metadata": {"ownerReferences": [{"kind": "ReplicaSet", "controller": true}]},
                             "spec": {"volumes": [{"name": "s", "emptyDir": {}}]}});
        assert!(matches!(verdict(&scratch, &args(&[])), Verdict::Refuse(_)));
        assert_eq!(
            verdict(&scratch, &args(&["--delete-emptydir-data"])),
            Verdict::Evict
        );
        let mirror = json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}});
        assert_eq!(verdict(&mirror, &args(&[])), Verdict::Ignore);
    }
}
