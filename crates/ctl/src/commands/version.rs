//! `skiffctl version`.

use anyhow::{Result, bail};
use serde_json::json;

use crate::config::GlobalArgs;
use crate::output;
use crate::rest;

/// Print the client and server version information.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Only the client version (no server needed).
    #[arg(long)]
    pub client: bool,
    /// json or yaml.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

pub async fn run(args: Args) -> Result<()> {
    let client_version = format!("v{}", env!("CARGO_PKG_VERSION"));
    let mut doc = json!({"clientVersion": {"gitVersion": client_version}});
    let mut server_err = None;
    if !args.client {
        match args.global.connect().await {
            Ok(ctx) => match rest::get(&ctx.client, "/version").await {
                Ok(v) => doc["serverVersion"] = v,
                Err(e) => server_err = Some(anyhow::Error::from(e)),
            },
            Err(e) => server_err = Some(e),
        }
    }
    match args.output.as_deref() {
        None => {
            println!("Client Version: {client_version}");
            if let Some(v) = doc["serverVersion"]["gitVersion"].as_str() {
                println!("Server Version: {v}");
            }
        }
        Some("json") => print!("{}", output::json(&doc)),
        Some("yaml") => print!("{}", output::yaml(&doc)?),
        Some(o) => bail!("--output must be 'yaml' or 'json', not {o:?}"),
    }
    match server_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
