//! `skiffctl port-forward`: local TCP ports to a pod's, over the API
//! server's `pods/portforward` WebSocket.

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::config::GlobalArgs;
use crate::rest;

/// Forward one or more local ports to a pod.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// POD, pod/NAME, svc/NAME or deploy/NAME.
    pub target: String,
    /// [LOCAL:]REMOTE, or :REMOTE for a random local port.
    #[arg(required = true)]
    pub ports: Vec<String>,
    /// Addresses to listen on (comma-separated; `localhost` is 127.0.0.1).
    #[arg(long, default_value = "localhost")]
    pub address: String,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// `8080:80` → (8080, 80); `80` → (80, 80); `:80` → (0, 80).
pub fn parse_port(spec: &str) -> Result<(u16, String)> {
    let (local, remote) = match spec.split_once(':') {
        Some((l, r)) => (l, r),
        None => (spec, spec),
    };
    let local = if local.is_empty() {
        0
    } else {
        local
            .parse()
            .with_context(|| format!("invalid local port {local:?} in {spec:?}"))?
    };
    if remote.is_empty() {
        bail!("invalid port {spec:?}: the remote port is missing");
    }
    Ok((local, remote.to_string()))
}

/// The container port a service port (number or name) targets in `pod`.
pub fn service_target(service: &Value, pod: &Value, port: &str) -> Result<u16> {
    let sp = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            p["port"].as_i64().map(|n| n.to_string()).as_deref() == Some(port) || p["name"] == port
        })
        .with_context(|| {
            format!(
                "Service {} does not have a service port {port}",
                service["metadata"]["name"].as_str().unwrap_or("")
            )
        })?;
    match &sp["targetPort"] {
        Value::Number(n) => Ok(n.as_u64().unwrap_or(0) as u16),
        Value::String(name) => container_port(pod, name),
        _ => Ok(sp["port"].as_u64().unwrap_or(0) as u16),
    }
}

/// A named container port of `pod`, or a number.
pub fn container_port(pod: &Value, port: &str) -> Result<u16> {
    if let Ok(n) = port.parse() {
        return Ok(n);
    }
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
        .find(|p| p["name"] == port)
        .and_then(|p| p["containerPort"].as_u64())
        .map(|n| n as u16)
        .with_context(|| {
            format!(
                "Pod '{}' does not have a named port '{port}'",
                pod["metadata"]["name"].as_str().unwrap_or("")
            )
        })
}

pub async fn run(args: Args) -> Result<()> {
    let ctx = args.global.connect().await?;
    let pod = super::pod_for(&ctx, &args.target).await?;
    if pod["status"]["phase"] != "Running" {
        bail!(
            "unable to forward port because pod is not running. Current status={}",
            pod["status"]["phase"].as_str().unwrap_or("Unknown")
        );
    }
    let service = match args.target.split_once('/') {
        Some((t, n)) if ctx.resources().await?.resolve(t)?.kind == "Service" => Some(
            rest::get(
                &ctx.client,
                &format!("/api/v1/namespaces/{}/services/{n}", ctx.namespace),
            )
            .await?,
        ),
        _ => None,
    };
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let addresses: Vec<String> = args
        .address
        .split(',')
        .map(|a| {
            if a == "localhost" {
                "127.0.0.1".to_string()
            } else {
                a.to_string()
            }
        })
        .collect();
    let mut tasks = Vec::new();
    for spec in &args.ports {
        let (local, remote) = parse_port(spec)?;
        let remote = match &service {
            Some(svc) => service_target(svc, &pod, &remote)?,
            None => container_port(&pod, &remote)?,
        };
        for addr in &addresses {
            let listener = TcpListener::bind((addr.as_str(), local))
                .await
                .with_context(|| format!("unable to listen on port {local}"))?;
            let bound = listener.local_addr()?;
            println!("Forwarding from {bound} -> {remote}");
            let pods = pods.clone();
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((mut conn, _)) = listener.accept().await else {
                        return;
                    };
                    println!("Handling connection for {}", bound.port());
                    let pods = pods.clone();
                    let name = name.clone();
                    tokio::spawn(async move {
                        let mut forwarder = match pods.portforward(&name, &[remote]).await {
                            Ok(f) => f,
                            Err(e) => {
                                eprintln!(
                                    "error: an error occurred forwarding {} -> {remote}: {e}",
                                    bound.port()
                                );
                                return;
                            }
                        };
                        let errors = forwarder.take_error(remote);
                        if let Some(mut upstream) = forwarder.take_stream(remote) {
                            let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                        }
                        if let Some(errors) = errors
                            && let Ok(Some(e)) =
                                tokio::time::timeout(std::time::Duration::from_millis(100), errors)
                                    .await
                        {
                            eprintln!(
                                "error: an error occurred forwarding {} -> {remote}: {e}",
                                bound.port()
                            );
                        }
                        forwarder.abort();
                    });
                }
            }));
        }
    }
    tokio::signal::ctrl_c().await?;
    for t in tasks {
        t.abort();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn port_specs_parse_as_kubectl_reads_them() {
        assert_eq!(parse_port("8080:80").unwrap(), (8080, "80".into()));
        assert_eq!(parse_port("80").unwrap(), (80, "80".into()));
        assert_eq!(parse_port(":http").unwrap(), (0, "http".into()));
        assert!(parse_port("x:80").is_err());
        assert!(parse_port("80:").is_err());
    }

    #[test]
    fn service_ports_map_to_the_pods_target_port() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"ports": [{"name": "web", "containerPort": 8080}]}]}});
        let svc = json!({"metadata": {"name": "s"}, "spec": {"ports": [
            {"port": 80, "targetPort": "web"}, {"name": "m", "port": 9090, "targetPort": 9091}]}});
        assert_eq!(service_target(&svc, &pod, "80").unwrap(), 8080);
        assert_eq!(service_target(&svc, &pod, "m").unwrap(), 9091);
        assert!(service_target(&svc, &pod, "81").is_err());
        assert!(container_port(&pod, "nope").is_err());
    }
}
