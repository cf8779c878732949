//! `skiffctl delete`: by type and name, by file, by selector or `--all`.

use std::time::Duration;

use anyhow::{Result, bail};
use http::Method;
use serde_json::{Value, json};

use crate::commands::get::{parse_targets, resolve};
use crate::config::{Ctx, GlobalArgs, parse_duration};
use crate::discovery::ResourceType;
use crate::manifest;
use crate::rest;

/// Delete resources by file names, stdin, resources and names, or by resources and label selector.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// TYPE NAME..., TYPE/NAME..., or TYPE with -l / --all.
    #[arg(value_name = "TYPE [NAME...]")]
    pub targets: Vec<String>,
    /// Files, directories or `-` naming the objects to delete.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<String>,
    /// Read directories recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Selector (field query) to filter on.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Delete all resources of the given types in the namespace.
    #[arg(long)]
    pub all: bool,
    /// With --all or -l, act across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// background, foreground or orphan.
    #[arg(long, default_value = "background", num_args = 0..=1, default_missing_value = "background")]
    pub cascade: String,
    /// Seconds given to the resource to terminate gracefully (-1: its default).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// Delete at once (grace period 1).
    #[arg(long)]
    pub now: bool,
    /// With --grace-period=0, delete immediately.
    #[arg(long)]
    pub force: bool,
    /// Wait for the resources to be gone before returning.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub wait: bool,
    /// How long to wait for the deletion (0: a week).
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// Treat "resource not found" as success.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// `name` prints only `kind/name`.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// `DeleteOptions` for these flags.
pub fn delete_options(cascade: &str, grace_period: i64, now: bool, force: bool) -> Result<Value> {
    let policy = match cascade {
        "background" | "true" => "Background",
        "foreground" => "Foreground",
        "orphan" | "false" => "Orphan",
        o => bail!(
            "invalid cascade value ({o}). Must be \"background\", \"foreground\", or \"orphan\"."
        ),
    };
    let mut opts =
        json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": policy});
    let grace = if now { 1 } else { grace_period };
    if force && grace != 0 && grace_period >= 0 {
        bail!("--force and --grace-period greater than 0 cannot be specified together");
    }
    if force && grace_period < 0 {
        opts["gracePeriodSeconds"] = json!(0);
    } else if grace >= 0 {
        opts["gracePeriodSeconds"] = json!(grace);
    }
    Ok(opts)
}

struct Victim<'a> {
    t: &'a ResourceType,
    namespace: Option<String>,
    name: String,
}

pub async fn run(args: Args) -> Result<()> {
    let ctx = args.global.connect().await?;
    let opts = delete_options(&args.cascade, args.grace_period, args.now, args.force)?;
    let resources = ctx.resources().await?;
    let mut victims = Vec::new();
    let mut failed = false;
    if !args.files.is_empty() {
        if !args.targets.is_empty() {
            bail!("resource(s) were provided, but no name was specified");
        }
        for doc in manifest::read_all(&args.files, args.recursive)? {
            let target = super::apply::target(&ctx, &doc, true).await?;
            victims.push(Victim {
                t: target.t,
                namespace: target.namespace,
                name: target.name,
            });
        }
    } else {
        let reqs = parse_targets(&args.targets)?;
        for (t, names) in resolve(resources, &reqs)? {
            if names.is_empty() {
                if !args.all && args.selector.is_none() && args.field_selector.is_none() {
                    bail!("resource(s) were provided, but no name was specified");
                }
                let ns = (!args.all_namespaces).then_some(ctx.namespace.as_str());
                let q = rest::query(&[
                    ("labelSelector", args.selector.clone().unwrap_or_default()),
                    (
                        "fieldSelector",
                        args.field_selector.clone().unwrap_or_default(),
                    ),
                ]);
                let list = rest::get(&ctx.client, &format!("{}{q}", t.path(ns, None))).await?;
                for item in list["items"].as_array().into_iter().flatten() {
                    victims.push(Victim {
                        t,
                        namespace: item["metadata"]["namespace"].as_str().map(str::to_string),
                        name: item["metadata"]["name"].as_str().unwrap_or("").to_string(),
                    });
                }
            } else {
                if args.all || args.selector.is_some() {
                    bail!("name cannot be provided when a selector is specified");
                }
                for n in names {
                    victims.push(Victim {
                        t,
                        namespace: Some(ctx.namespace.clone()),
                        name: n,
                    });
                }
            }
        }
        if victims.is_empty() && !failed {
            eprintln!("No resources found");
        }
    }
    let mut deleted = Vec::new();
    for v in &victims {
        let uri = v.t.path(v.namespace.as_deref(), Some(&v.name));
        match rest::send_json(&ctx.client, Method::DELETE, &uri, &opts).await {
            Ok(obj) => {
                if args.output.as_deref() == Some("name") {
                    println!("{}/{}", v.t.name_prefix(), v.name);
                } else {
                    println!("{} \"{}\" deleted", v.t.name_prefix(), v.name);
                }
                deleted.push((uri, obj["metadata"]["uid"].as_str().map(str::to_string)));
            }
            Err(e) if rest::is_not_found(&e) && args.ignore_not_found => {}
            Err(e) => {
                failed = true;
                eprintln!("{}", rest::error_text(&e.into()));
            }
        }
    }
    if args.wait && !deleted.is_empty() {
        let t = parse_duration(&args.timeout)?;
        let limit = if t.is_zero() {
            Duration::from_secs(7 * 24 * 3600)
        } else {
            t
        };
        wait_gone(&ctx, &deleted, limit).await?;
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

/// Polls each object until it is gone (or replaced by one with another UID).
pub(crate) async fn wait_gone(
    ctx: &Ctx,
    objects: &[(String, Option<String>)],
    limit: Duration,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    for (uri, uid) in objects {
        loop {
            match rest::get(&ctx.client, uri).await {
                Err(e) if rest::is_not_found(&e) => break,
                Err(e) => return Err(e.into()),
                Ok(v) if uid.is_some() && v["metadata"]["uid"].as_str() != uid.as_deref() => break,
                Ok(_) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("timed out waiting for the condition on {uri}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_options_follow_the_cascade_and_grace_flags() {
        let o = delete_options("foreground", -1, false, false).unwrap();
        assert_eq!(o["propagationPolicy"], "Foreground");
        assert!(o.get("gracePeriodSeconds").is_none());
        let o = delete_options("orphan", 5, false, false).unwrap();
        assert_eq!(o["propagationPolicy"], "Orphan");
        assert_eq!(o["gracePeriodSeconds"], 5);
        assert_eq!(
            delete_options("background", -1, true, false).unwrap()["gracePeriodSeconds"],
            1
        );
        assert_eq!(
            delete_options("background", -1, false, true).unwrap()["gracePeriodSeconds"],
            0
        );
        assert!(delete_options("sideways", -1, false, false).is_err());
    }
}
