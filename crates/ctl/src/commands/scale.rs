//! `skiffctl scale`: through the `scale` subresource.

use anyhow::{Result, bail};
use serde_json::json;

use crate::config::GlobalArgs;
use crate::rest;

/// Set a new size for a deployment, replica set, replication controller, or stateful set.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// TYPE NAME or TYPE/NAME.
    #[arg(value_name = "TYPE NAME", required = true)]
    pub targets: Vec<String>,
    /// The new desired number of replicas.
    #[arg(long, required = true)]
    pub replicas: i64,
    /// Only scale if the current size is this (-1: any).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub current_replicas: i64,
    /// `name` prints only `kind/name`.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

pub async fn run(args: Args) -> Result<()> {
    if args.replicas < 0 {
        bail!(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0"
        );
    }
    let ctx = args.global.connect().await?;
    for (t, name) in super::named(&ctx, &args.targets).await? {
        if !t.subresources.iter().any(|s| s == "scale") {
            bail!(
                "{} \"{name}\" cannot be scaled: the type has no scale subresource",
                t.qualified()
            );
        }
        let uri = format!("{}/scale", t.path(Some(&ctx.namespace), Some(&name)));
        if args.current_replicas >= 0 {
            let scale = rest::get(&ctx.client, &uri).await?;
            let current = scale["spec"]["replicas"].as_i64().unwrap_or(0);
            if current != args.current_replicas {
                bail!(
                    "Expected replicas to be {}, was {current}",
                    args.current_replicas
                );
            }
        }
        rest::patch(
            &ctx.client,
            &uri,
            "application/merge-patch+json",
            &json!({"spec": {"replicas": args.replicas}}),
        )
        .await?;
        if args.output.as_deref() == Some("name") {
            println!("{}/{name}", t.name_prefix());
        } else {
            println!("{}/{name} scaled", t.name_prefix());
        }
    }
    Ok(())
}
