//! What Skiff's control-plane components (the controller manager, the
//! scheduler, and any other process that talks to the API server and may run
//! in several replicas) share:
//!
//! - [`client_config`]: the API client's configuration from `--kubeconfig`
//!   and `--master`, as the upstream components read them;
//! - [`leader`]: leader election through a `coordination.k8s.io/v1` Lease;
//! - [`serving`]: `/healthz`, `/livez`, `/readyz` and `/metrics` over HTTPS on
//!   the component's `--secure-port`;
//! - [`shutdown_signal`]: SIGTERM or Ctrl-C.
#![forbid(unsafe_code)]

pub mod leader;
pub mod serving;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

pub use leader::{ConfigError as LeaderElectionConfigError, Elector, LeaderElection};
pub use serving::{ServeError, Serving};

/// The client configuration: `--kubeconfig` when given, else `$KUBECONFIG`,
/// `~/.kube/config` or the pod's service account; `--master` overrides the
/// server address.
pub async fn client_config(
    kubeconfig: Option<&Path>,
    master: Option<&str>,
) -> anyhow::Result<kube::Config> {
    let mut config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("reading --kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("using --kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer().await.context(
            "no --kubeconfig, and none found in $KUBECONFIG, ~/.kube/config or the pod's service account",
        )?,
    };
    if let Some(master) = master {
        config.cluster_url = master
            .parse()
            .with_context(|| format!("--master {master:?}"))?;
    }
    Ok(config)
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// `base` plus up to `factor` times itself, at random (upstream's
/// `wait.Jitter`).
pub fn jittered(base: Duration, factor: f64) -> Duration {
    base.mul_f64(1.0 + rand::random::<f64>() * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_base_and_base_times_one_plus_factor() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(2), 1.2);
            assert!(d >= Duration::from_secs(2) && d <= Duration::from_millis(4400));
        }
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_is_named_in_the_error() {
        let e = client_config(Some(Path::new("/nonexistent/kubeconfig")), None)
            .await
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("reading --kubeconfig /nonexistent/kubeconfig"),
            "{e:#}"
        );
    }
}
