use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// The Skiff API server: the Kubernetes REST API over HTTPS.
#[derive(Parser)]
#[command(name = "skiff-apiserver", version)]
struct Options {
    /// Where the embedded store, the certificates and admin.kubeconfig live.
    #[arg(long, default_value = ".skiff/apiserver")]
    data_dir: PathBuf,
    /// The port to serve HTTPS on.
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// The address the rest of the cluster reaches this server at.
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// etcd client URLs (comma-separated); without them the embedded store is used.
    #[arg(long, value_delimiter = ',')]
    etcd_servers: Vec<String>,
    /// The CIDR Service ClusterIPs are allocated from.
    #[arg(long, default_value = "10.0.0.0/24")]
    service_cluster_ip_range: String,
    /// A serving certificate (PEM) to use instead of the generated one.
    #[arg(long, requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// The private key of --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// The CA that client certificates are verified against.
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// Bearer tokens: a CSV file of token,user,uid,"group1,group2".
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = Options::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = skiff_apiserver::Config {
        data_dir: o.data_dir,
        secure_port: o.secure_port,
        bind_address: o.bind_address,
        advertise_address: o.advertise_address,
        etcd_servers: o.etcd_servers,
        service_cluster_ip_range: o.service_cluster_ip_range,
        tls_cert_file: o.tls_cert_file,
        tls_private_key_file: o.tls_private_key_file,
        client_ca_file: o.client_ca_file,
        authn: skiff_apiserver::AuthnConfig {
            token_auth_file: o.token_auth_file,
        },
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    skiff_apiserver::run(config, shutdown)
        .await
        .context("skiff-apiserver failed")
}
