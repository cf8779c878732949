//! `skiffctl rollout status|history|undo|restart` for deployments,
//! daemon sets and stateful sets.

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::config::{Ctx, GlobalArgs, parse_duration};
use crate::discovery::ResourceType;
use crate::output;
use crate::rest;

/// Manage the rollout of a resource.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Action {
    /// Show the status of the rollout.
    Status {
        /// TYPE NAME or TYPE/NAME.
        #[arg(required = true)]
        targets: Vec<String>,
        /// Watch the status until the rollout finishes.
        #[arg(short = 'w', long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
        watch: bool,
        /// How long to wait before giving up (0: forever).
        #[arg(long, default_value = "0s")]
        timeout: String,
    },
    /// View rollout history.
    History {
        #[arg(required = true)]
        targets: Vec<String>,
        /// Show the pod template of this revision.
        #[arg(long, default_value_t = 0)]
        revision: i64,
    },
    /// Undo a previous rollout.
    Undo {
        #[arg(required = true)]
        targets: Vec<String>,
        /// The revision to roll back to (0: the previous one).
        #[arg(long, default_value_t = 0)]
        to_revision: i64,
    },
    /// Restart a resource (a new rollout of the same template).
    Restart {
        #[arg(required = true)]
        targets: Vec<String>,
    },
}

const ROLLABLE: &[&str] = &["Deployment", "DaemonSet", "StatefulSet"];

pub async fn run(args: Args) -> Result<()> {
    let ctx = args.global.connect().await?;
    match &args.action {
        Action::Status {
            targets,
            watch,
            timeout,
        } => {
            let limit = parse_duration(timeout)?;
            for (t, name) in checked(&ctx, targets).await? {
                status(&ctx, t, &name, *watch, limit).await?;
            }
        }
        Action::Restart { targets } => {
            for (t, name) in checked(&ctx, targets).await? {
                let now = jiff::Timestamp::now().to_string();
                let patch = json!({"spec": {"template": {"metadata": {"annotations": {
                    "kubectl.kubernetes.io/restartedAt": now}}}}});
                rest::patch(
                    &ctx.client,
                    &t.path(Some(&ctx.namespace), Some(&name)),
                    "application/strategic-merge-patch+json",
                    &patch,
                )
                .await?;
                println!("{}/{name} restarted", t.name_prefix());
            }
        }
        Action::History { targets, revision } => {
            for (t, name) in checked(&ctx, targets).await? {
                only_deployments(t, "history")?;
                history(&ctx, t, &name, *revision).await?;
            }
        }
        Action::Undo {
            targets,
            to_revision,
        } => {
            for (t, name) in checked(&ctx, targets).await? {
                only_deployments(t, "undo")?;
                undo(&ctx, t, &name, *to_revision).await?;
            }
        }
    }
    Ok(())
}

async fn checked<'a>(ctx: &'a Ctx, targets: &[String]) -> Result<Vec<(&'a ResourceType, String)>> {
    let all = super::named(ctx, targets).await?;
    for (t, _) in &all {
        if !ROLLABLE.contains(&t.kind.as_str()) || t.group != "apps" {
            bail!(
                "no rollout for {}: not a deployment, daemonset or statefulset",
                t.qualified()
            );
        }
    }
    Ok(all)
}

fn only_deployments(t: &ResourceType, what: &str) -> Result<()> {
    if t.kind != "Deployment" {
        bail!("rollout {what} is only supported for deployments");
    }
    Ok(())
}

/// Where a rollout stands: `Ok(done, message)`, or an error when it failed.
pub fn rollout_state(kind: &str, name: &str, obj: &Value) -> Result<(bool, String)> {
    let spec = &obj["spec"];
    let st = &obj["status"];
    let i = |v: &Value| v.as_i64().unwrap_or(0);
    let generation = i(&obj["metadata"]["generation"]);
    if i(&st["observedGeneration"]) < generation {
        let what = kind.to_lowercase();
        return Ok((
            false,
            format!("Waiting for {what} spec update to be observed..."),
        ));
    }
    match kind {
        "Deployment" => {
            let conditions = st["conditions"].as_array().cloned().unwrap_or_default();
            if conditions
                .iter()
                .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded")
            {
                bail!("deployment \"{name}\" exceeded its progress deadline");
            }
            let want = spec["replicas"].as_i64().unwrap_or(1);
            let updated = i(&st["updatedReplicas"]);
            let replicas = i(&st["replicas"]);
            let available = i(&st["availableReplicas"]);
            let wait = format!("Waiting for deployment \"{name}\" rollout to finish: ");
            if updated < want {
                return Ok((
                    false,
                    format!("{wait}{updated} out of {want} new replicas have been updated..."),
                ));
            }
            if replicas > updated {
                return Ok((
                    false,
                    format!(
                        "{wait}{} old replicas are pending termination...",
                        replicas - updated
                    ),
                ));
            }
            if available < updated {
                return Ok((
                    false,
                    format!("{wait}{available} of {updated} updated replicas are available..."),
                ));
            }
            Ok((
                true,
                format!("deployment \"{name}\" successfully rolled out"),
            ))
        }
        "DaemonSet" => {
            if spec["updateStrategy"]["type"] == "OnDelete" {
                bail!("rollout status is only available for RollingUpdate strategy type");
            }
            let desired = i(&st["desiredNumberScheduled"]);
            let updated = i(&st["updatedNumberScheduled"]);
            let available = i(&st["numberAvailable"]);
            let wait = format!("Waiting for daemon set \"{name}\" rollout to finish: ");
            if updated < desired {
                return Ok((
                    false,
                    format!("{wait}{updated} out of {desired} new pods have been updated..."),
                ));
            }
            if available < desired {
                return Ok((
                    false,
                    format!("{wait}{available} of {desired} updated pods are available..."),
                ));
            }
            Ok((
                true,
                format!("daemon set \"{name}\" successfully rolled out"),
            ))
        }
        "StatefulSet" => {
            if spec["updateStrategy"]["type"] == "OnDelete" {
                bail!("rollout status is only available for RollingUpdate strategy type");
            }
            let want = spec["replicas"].as_i64().unwrap_or(1);
            let ready = i(&st["readyReplicas"]);
            if ready < want {
                return Ok((
                    false,
                    format!("Waiting for {} pods to be ready...", want - ready),
                ));
            }
            let partition = spec["updateStrategy"]["rollingUpdate"]["partition"]
                .as_i64()
                .unwrap_or(0);
            if partition > 0 {
                let updated = i(&st["updatedReplicas"]);
                if updated < want - partition {
                    return Ok((
                        false,
                        format!(
                            "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                            want - partition
                        ),
                    ));
                }
                return Ok((
                    true,
                    format!(
                        "partitioned roll out complete: {updated} new pods have been updated..."
                    ),
                ));
            }
            if st["updateRevision"] != st["currentRevision"] {
                let updated = i(&st["updatedReplicas"]);
                return Ok((
                    false,
                    format!(
                        "waiting for statefulset rolling update to complete {updated} pods at revision {}...",
                        st["updateRevision"].as_str().unwrap_or("")
                    ),
                ));
            }
            Ok((
                true,
                format!(
                    "statefulset rolling update complete {want} pods at revision {}...",
                    st["currentRevision"].as_str().unwrap_or("")
                ),
            ))
        }
        other => bail!("no rollout status for {other}"),
    }
}

async fn status(
    ctx: &Ctx,
    t: &ResourceType,
    name: &str,
    watch: bool,
    limit: Duration,
) -> Result<()> {
    let uri = t.path(Some(&ctx.namespace), Some(name));
    let deadline = (!limit.is_zero()).then(|| tokio::time::Instant::now() + limit);
    let bar = std::io::stdout().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(Duration::from_millis(120));
        b
    });
    let mut last = String::new();
    loop {
        let obj = rest::get(&ctx.client, &uri).await?;
        let (done, message) = match rollout_state(&t.kind, name, &obj) {
            Ok(s) => s,
            Err(e) => {
                if let Some(b) = &bar {
                    b.finish_and_clear();
                }
                return Err(e);
            }
        };
        if done {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            println!("{message}");
            return Ok(());
        }
        if message != last {
            match &bar {
                Some(b) => b.set_message(message.clone()),
                None => println!("{message}"),
            }
            last = message;
        }
        if !watch {
            if let Some(b) = &bar {
                b.finish_and_clear();
                println!("{last}");
            }
            return Ok(());
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            bail!("timed out waiting for the condition");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The deployment's replica sets (owned by it), oldest revision first.
async fn replica_sets(ctx: &Ctx, deploy: &Value) -> Result<Vec<Value>> {
    let uid = deploy["metadata"]["uid"].as_str().unwrap_or("");
    let selector = match_labels(&deploy["spec"]["selector"]);
    let uri = format!(
        "/apis/apps/v1/namespaces/{}/replicasets{}",
        deploy["metadata"]["namespace"].as_str().unwrap_or(""),
        rest::query(&[("labelSelector", selector)])
    );
    let list = rest::get(&ctx.client, &uri).await?;
    let mut out: Vec<Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rs| {
            rs["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|o| o.iter().any(|r| r["uid"] == uid))
        })
        .cloned()
        .collect();
    out.sort_by_key(revision_of);
    Ok(out)
}

fn revision_of(rs: &Value) -> i64 {
    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A label selector's matchLabels as `k=v,...`.
pub fn match_labels(selector: &Value) -> String {
    let mut parts: Vec<String> = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match e["operator"].as_str().unwrap_or("") {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

async fn history(ctx: &Ctx, t: &ResourceType, name: &str, revision: i64) -> Result<()> {
    let deploy = rest::get(&ctx.client, &t.path(Some(&ctx.namespace), Some(name))).await?;
    let sets = replica_sets(ctx, &deploy).await?;
    if revision > 0 {
        let Some(rs) = sets.iter().find(|rs| revision_of(rs) == revision) else {
            bail!("unable to find the specified revision");
        };
        println!("{}/{name} with revision #{revision}", t.name_prefix());
        print!(
            "{}",
            output::yaml(&json!({"Pod Template": rs["spec"]["template"]}))?
        );
        return Ok(());
    }
    println!("{}/{name} ", t.name_prefix());
    let rows: Vec<Vec<String>> = sets
        .iter()
        .filter(|rs| revision_of(rs) > 0)
        .map(|rs| {
            vec![
                revision_of(rs).to_string(),
                rs["metadata"]["annotations"]["kubernetes.io/change-cause"]
                    .as_str()
                    .unwrap_or("<none>")
                    .to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::plain_table(&["REVISION".into(), "CHANGE-CAUSE".into()], &rows, false)
    );
    println!();
    Ok(())
}

async fn undo(ctx: &Ctx, t: &ResourceType, name: &str, to: i64) -> Result<()> {
    let uri = t.path(Some(&ctx.namespace), Some(name));
    let deploy = rest::get(&ctx.client, &uri).await?;
    if deploy["spec"]["paused"] == true {
        bail!(
            "you cannot rollback a paused deployment; resume it first with 'skiffctl rollout resume' and try again"
        );
    }
    let sets = replica_sets(ctx, &deploy).await?;
    let current = sets.iter().map(revision_of).max().unwrap_or(0);
    let target = if to == 0 {
        sets.iter().rev().find(|rs| revision_of(rs) < current)
    } else {
        sets.iter().find(|rs| revision_of(rs) == to)
    };
    let Some(rs) = target else {
        if to == 0 {
            bail!("no rollout history found for deployment \"{name}\"");
        }
        bail!("unable to find specified revision {to} in history");
    };
    let mut template = rs["spec"]["template"].clone();
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
    let mut current_template = deploy["spec"]["template"].clone();
    if let Some(labels) = current_template["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
    if template == current_template {
        println!(
            "{}/{name} skipped rollback (current template already matches revision {})",
            t.name_prefix(),
            revision_of(rs)
        );
        return Ok(());
    }
    let patch = json!([{"op": "replace", "path": "/spec/template", "value": template}]);
    rest::patch(&ctx.client, &uri, "application/json-patch+json", &patch).await?;
    println!("{}/{name} rolled back", t.name_prefix());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_rollout_messages_follow_kubectl() {
        let d = |updated: i64, replicas: i64, available: i64| {
            json!({"metadata": {"generation": 2}, "spec": {"replicas": 3},
                   "status": {"observedGeneration": 2, "updatedReplicas": updated,
                              "replicas": replicas, "availableReplicas": available}})
        };
        assert_eq!(
            rollout_state("Deployment", "web", &d(1, 3, 1)).unwrap().1,
            "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated..."
        );
        assert_eq!(
            rollout_state("Deployment", "web", &d(3, 4, 3)).unwrap().1,
            "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination..."
        );
        assert_eq!(
            rollout_state("Deployment", "web", &d(3, 3, 2)).unwrap().1,
            "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available..."
        );
        assert_eq!(
            rollout_state("Deployment", "web", &d(3, 3, 3)).unwrap(),
            (
                true,
                "deployment \"web\" successfully rolled out".to_string()
            )
        );
        let stale = json!({"metadata": {"generation": 3}, "status": {"observedGeneration": 2}});
        assert!(!rollout_state("Deployment", "web", &stale).unwrap().0);
        let dead = json!({"status": {"conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]}});
        assert!(rollout_state("Deployment", "web", &dead).is_err());
    }

    #[test]
    fn selectors_render_as_label_queries() {
        let s = json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]});
        assert_eq!(match_labels(&s), "app=web,tier in (a,b)");
    }
}
