//! `skiffctl exec`: a command in a container, over the API server's
//! `pods/exec` WebSocket (channel protocol v5, falling back to v4).

use std::io::IsTerminal as _;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, TerminalSize};

use crate::config::GlobalArgs;

/// Execute a command in a container.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// POD, or TYPE/NAME (deploy/web, svc/web) for one of its pods.
    pub target: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
    /// The container (default: the pod's default or only one).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass stdin to the container.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Stdin is a TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Only print output from the remote session.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Checks what kubectl checks before it dials: the pod has a node and has
/// not finished.
pub fn check_runnable(pod: &serde_json::Value) -> Result<()> {
    if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
        bail!("unable to upgrade connection: pod does not have a host assigned");
    }
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    if phase == "Succeeded" || phase == "Failed" {
        bail!("cannot exec into a container in a completed pod; current phase is {phase}");
    }
    Ok(())
}

/// Puts the local terminal in raw mode until dropped.
struct RawTerminal {
    saved: String,
}

impl RawTerminal {
    fn enter() -> Option<RawTerminal> {
        let saved = std::process::Command::new("stty")
            .arg("-g")
            .stdin(std::process::Stdio::inherit())
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let saved = String::from_utf8_lossy(&saved.stdout).trim().to_string();
        std::process::Command::new("stty")
            .args(["raw", "-echo"])
            .stdin(std::process::Stdio::inherit())
            .status()
            .ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = std::process::Command::new("stty")
            .arg(&self.saved)
            .stdin(std::process::Stdio::inherit())
            .status();
    }
}

fn terminal_size() -> Option<TerminalSize> {
    let out = std::process::Command::new("stty")
        .arg("size")
        .stdin(std::process::Stdio::inherit())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let height = it.next()?.parse().ok()?;
    let width = it.next()?.parse().ok()?;
    Some(TerminalSize { width, height })
}

pub async fn run(args: Args) -> Result<()> {
    let ctx = args.global.connect().await?;
    let pod = super::pod_for(&ctx, &args.target).await?;
    check_runnable(&pod)?;
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let container = super::container_of(&pod, args.container.as_deref())?;
    let tty = args.tty && args.stdin && std::io::stdin().is_terminal();
    if args.tty && !tty && !args.quiet {
        eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
    }
    let params = AttachParams {
        container: Some(container),
        stdin: args.stdin,
        stdout: true,
        stderr: !tty,
        tty,
        ..AttachParams::default()
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let mut process = pods
        .exec(&name, args.command.clone(), &params)
        .await
        .context("unable to upgrade connection")?;
    let raw = tty.then(RawTerminal::enter).flatten();
    if tty && let (Some(size), Some(tx)) = (terminal_size(), process.terminal_size()) {
        let mut tx = tx;
        let _ = futures::SinkExt::send(&mut tx, size).await;
    }
    let status = process.take_status();
    let mut tasks = Vec::new();
    if let Some(mut input) = process.stdin() {
        tasks.push(tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let _ = tokio::io::copy(&mut stdin, &mut input).await;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut input).await;
        }));
    }
    let out = process.stdout().map(|mut o| {
        tokio::spawn(async move {
            let mut stdout = tokio::io::stdout();
            let _ = tokio::io::copy(&mut o, &mut stdout).await;
        })
    });
    let err = process.stderr().map(|mut e| {
        tokio::spawn(async move {
            let mut stderr = tokio::io::stderr();
            let _ = tokio::io::copy(&mut e, &mut stderr).await;
        })
    });
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    if let Some(o) = out {
        let _ = o.await;
    }
    if let Some(e) = err {
        let _ = e.await;
    }
    for t in tasks {
        t.abort();
    }
    let _ = process.join().await;
    drop(raw);
    if let Some(s) = status
        && s.status.as_deref() == Some("Failure")
    {
        let code = s
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
            .and_then(|c| c.message.as_deref())
            .and_then(|m| m.parse::<i32>().ok());
        if let Some(code) = code {
            if !args.quiet {
                eprintln!("command terminated with exit code {code}");
            }
            std::process::exit(code);
        }
        bail!("{}", s.message.unwrap_or_default());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: Args,
    }

    #[test]
    fn the_command_follows_the_double_dash() {
        let a = T::parse_from([
            "exec", "-it", "web", "-c", "app", "--", "sh", "-c", "echo hi",
        ])
        .a;
        assert!(a.stdin && a.tty);
        assert_eq!(a.container.as_deref(), Some("app"));
        assert_eq!(a.command, ["sh", "-c", "echo hi"]);
    }

    #[test]
    fn pods_without_a_node_or_finished_cannot_be_entered() {
        let err = check_runnable(&json!({"spec": {}}))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "unable to upgrade connection: pod does not have a host assigned"
        );
        let done = json!({"spec": {"nodeName": "n"}, "status": {"phase": "Succeeded"}});
        assert!(check_runnable(&done).is_err());
        let running = json!({"spec": {"nodeName": "n"}, "status": {"phase": "Running"}});
        assert!(check_runnable(&running).is_ok());
    }
}
