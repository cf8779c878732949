//! `skiffctl logs`: the `pods/log` subresource, streamed.

use anyhow::{Result, bail};
use futures::AsyncReadExt as _;
use tokio::io::AsyncWriteExt as _;

use crate::config::{GlobalArgs, parse_duration};
use crate::rest;

/// Print the logs for a container in a pod.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// POD, or TYPE/NAME (deploy/web, svc/web) for one of its pods.
    pub target: String,
    /// The container (default: the pod's default or only one).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Stream the logs.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The previous terminated container's logs.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Lines of recent log to show (-1: all).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub tail: i64,
    /// Only logs newer than this duration (5s, 2m, 3h).
    #[arg(long)]
    pub since: Option<String>,
    /// Only logs after this RFC 3339 time.
    #[arg(long)]
    pub since_time: Option<String>,
    /// Prefix each line with its timestamp.
    #[arg(long)]
    pub timestamps: bool,
    /// Maximum bytes of logs to return.
    #[arg(long)]
    pub limit_bytes: Option<i64>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// The `pods/log` query for these flags.
pub fn log_query(args: &Args, container: &str) -> Result<String> {
    if args.since.is_some() && args.since_time.is_some() {
        bail!("at most one of `sinceTime` or `sinceSeconds` may be specified");
    }
    let mut q = vec![("container", container.to_string())];
    if args.follow {
        q.push(("follow", "true".into()));
    }
    if args.previous {
        q.push(("previous", "true".into()));
    }
    if args.tail >= 0 {
        q.push(("tailLines", args.tail.to_string()));
    }
    if let Some(s) = &args.since {
        let d = parse_duration(s)?;
        q.push(("sinceSeconds", d.as_secs().max(1).to_string()));
    }
    if let Some(t) = &args.since_time {
        q.push(("sinceTime", t.clone()));
    }
    if args.timestamps {
        q.push(("timestamps", "true".into()));
    }
    if let Some(n) = args.limit_bytes {
        q.push(("limitBytes", n.to_string()));
    }
    Ok(rest::query(&q))
}

pub async fn run(args: Args) -> Result<()> {
    let ctx = args.global.connect().await?;
    let pod = super::pod_for(&ctx, &args.target).await?;
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let container = super::container_of(&pod, args.container.as_deref())?;
    let uri = format!(
        "/api/v1/namespaces/{}/pods/{name}/log{}",
        ctx.namespace,
        log_query(&args, &container)?
    );
    let req = http::Request::get(uri).body(Vec::new())?;
    let mut body = ctx.client.request_stream(req).await?;
    let mut out = tokio::io::stdout();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = body.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).await?;
        out.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: Args,
    }

    #[test]
    fn log_flags_become_the_subresource_query() {
        let a = T::parse_from([
            "logs",
            "web",
            "-f",
            "--tail",
            "10",
            "--since",
            "2m",
            "--timestamps",
            "-p",
        ])
        .a;
        assert_eq!(
            log_query(&a, "app").unwrap(),
            "?container=app&follow=true&previous=true&tailLines=10&sinceSeconds=120&timestamps=true"
        );
        let a = T::parse_from([
            "logs",
            "web",
            "--since",
            "1m",
            "--since-time",
            "2024-01-01T00:00:00Z",
        ])
        .a;
        assert!(log_query(&a, "app").is_err());
    }
}
