//! skiffctl: the Skiff command-line client.
//!
//! The client verbs (`get`, `apply`, `logs`, ...) speak to any API server
//! as kubectl does, through kube's client; each lives in `commands/`.
//! `up`/`down`/`status`/`join` come from `skiff-cluster`.
#![forbid(unsafe_code)]

pub mod commands;
pub mod config;
pub mod discovery;
pub mod jsonpath;
pub mod manifest;
pub mod output;
pub mod rest;

pub use commands::Verb;
pub use config::GlobalArgs;

/// Runs a client verb; `cli` builds the whole command line (for `completion`).
pub async fn run(verb: Verb, outer: &GlobalArgs, cli: fn() -> clap::Command) -> anyhow::Result<()> {
    commands::run(verb, outer, cli).await
}
