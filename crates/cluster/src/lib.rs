//! Bringing a Skiff cluster up and down on this machine: `skiffctl up`,
//! `down`, `status` and `join`.
//!
//! Each is a clap argument struct (flattened into skiffctl's subcommands) and
//! an async function that carries it out.
#![forbid(unsafe_code)]

use std::path::PathBuf;

/// `skiffctl up`: start a single-node cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Where the cluster's data, certificates and logs live.
    #[arg(long, default_value = ".skiff")]
    pub data_dir: PathBuf,
}

/// `skiffctl down`: stop the cluster this machine runs.
#[derive(Debug, Clone, clap::Args)]
pub struct DownArgs {
    /// Where the cluster's data, certificates and logs live.
    #[arg(long, default_value = ".skiff")]
    pub data_dir: PathBuf,
    /// Also delete the data.
    #[arg(long)]
    pub purge: bool,
}

/// `skiffctl status`: each component's health.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Where the cluster's data, certificates and logs live.
    #[arg(long, default_value = ".skiff")]
    pub data_dir: PathBuf,
}

/// `skiffctl join`: run a kubelet and proxy here for an existing cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct JoinArgs {
    /// The API server's URL.
    #[arg(long)]
    pub server: String,
    /// A bootstrap token (`abcdef.0123456789abcdef`).
    #[arg(long)]
    pub token: String,
}

pub async fn up(_args: UpArgs) -> anyhow::Result<()> {
    anyhow::bail!("skiffctl up: not built yet")
}

pub async fn down(_args: DownArgs) -> anyhow::Result<()> {
    anyhow::bail!("skiffctl down: not built yet")
}

pub async fn status(_args: StatusArgs) -> anyhow::Result<()> {
    anyhow::bail!("skiffctl status: not built yet")
}

pub async fn join(_args: JoinArgs) -> anyhow::Result<()> {
    anyhow::bail!("skiffctl join: not built yet")
}
