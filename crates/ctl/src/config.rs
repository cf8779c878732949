//! Global flags (kubectl's names) and the client they build.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::discovery::Resources;

/// Flags every client verb takes, as kubectl's.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file to use.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The name of the kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,
    /// The namespace scope for this request.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The address and port of the API server.
    #[arg(short = 's', long)]
    pub server: Option<String>,
    /// How long to wait for a single request (e.g. 1s, 2m, 3h; 0 waits forever).
    #[arg(long, value_name = "DURATION")]
    pub request_timeout: Option<String>,
}

/// A connected client and what the verbs share.
pub struct Ctx {
    pub client: Client,
    /// The namespace verbs act in: `-n`, else the context's, else `default`.
    pub namespace: String,
    /// Whether `-n` was given.
    pub explicit_namespace: bool,
    pub config: kube::Config,
    resources: tokio::sync::OnceCell<Resources>,
}

impl GlobalArgs {
    /// The kubeconfig to read: `--kubeconfig`, `$KUBECONFIG`,
    /// `.skiff/admin.kubeconfig` here (left by `skiffctl up`), `~/.kube/config`.
    pub fn kubeconfig_path(&self) -> Option<PathBuf> {
        if let Some(p) = &self.kubeconfig {
            return Some(p.clone());
        }
        if let Some(env) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            return std::env::split_paths(&env).find(|p| p.exists());
        }
        let local = Path::new(".skiff/admin.kubeconfig");
        if local.exists() {
            return Some(local.to_path_buf());
        }
        let home = std::env::var_os("HOME").map(PathBuf::from)?;
        let user = home.join(".kube/config");
        user.exists().then_some(user)
    }

    /// Builds the client these flags describe.
    pub async fn connect(&self) -> Result<Ctx> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let mut config = match self.kubeconfig_path() {
            Some(path) => {
                let kc = Kubeconfig::read_from(&path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .with_context(|| format!("loading kubeconfig {}", path.display()))?
            }
            None => match kube::Config::incluster() {
                Ok(c) => c,
                Err(_) => bail!(
                    "no configuration: pass --kubeconfig, set KUBECONFIG, or run `skiffctl up` in this directory"
                ),
            },
        };
        if let Some(server) = &self.server {
            let url = if server.contains("://") {
                server.clone()
            } else {
                format!("https://{server}")
            };
            config.cluster_url = url
                .parse()
                .with_context(|| format!("--server {server:?} is not a URL"))?;
        }
        if let Some(t) = &self.request_timeout {
            let d = parse_duration(t).with_context(|| format!("--request-timeout {t:?}"))?;
            if !d.is_zero() {
                config.read_timeout = Some(d);
                config.write_timeout = Some(d);
                config.connect_timeout = Some(d);
            }
        }
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config.clone()).context("building the API client")?;
        Ok(Ctx {
            client,
            namespace,
            explicit_namespace: self.namespace.is_some(),
            config,
            resources: tokio::sync::OnceCell::new(),
        })
    }
}

impl Ctx {
    /// The server's resource types (discovered once per run).
    pub async fn resources(&self) -> Result<&Resources> {
        self.resources
            .get_or_try_init(|| Resources::discover(&self.client))
            .await
    }
}

/// A duration as kubectl takes it: Go's `1h2m3.5s` form, or a bare number
/// of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        bail!("empty duration");
    }
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if end == 0 {
            bail!("invalid duration {s:?}");
        }
        let n: f64 = rest[..end]
            .parse()
            .with_context(|| format!("invalid duration {s:?}"))?;
        rest = &rest[end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => bail!("invalid duration {s:?}: unknown unit {u:?}"),
        };
        total += n * factor;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_and_kubectl_write_them() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }
}
