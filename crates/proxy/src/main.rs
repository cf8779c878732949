use anyhow::Context;
use clap::Parser;
use skiff_proxy::options::{Options, read_config_file};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let level = match options.verbosity.unwrap_or(0) {
        0..=1 => "info",
        2..=3 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .init();
    let file = options
        .config
        .as_deref()
        .map(read_config_file)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let resolved = options.resolve(file).map_err(anyhow::Error::msg)?;
    if options.cleanup {
        let backends = skiff_proxy::Backends::host(resolved.netns.as_deref());
        skiff_proxy::proxier::cleanup(backends.iptables.as_ref())
            .context("removing the proxy's iptables rules")?;
        tracing::info!("removed the proxy's iptables rules and chains");
        return Ok(());
    }
    let kube =
        skiff_component::client_config(resolved.kubeconfig.as_deref(), resolved.master.as_deref())
            .await?;
    let config = skiff_proxy::Config::from_resolved(kube, resolved);
    let shutdown = skiff_component::shutdown_signal()?;
    skiff_proxy::run(config, shutdown)
        .await
        .context("running the proxy")
}
