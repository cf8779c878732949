use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgAction, Parser};
use skiff_api_types::duration::parse_flag_duration as parse_duration;

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
    /// PEM keys (public or private, or certificates) that verify
    /// service-account tokens; repeatable.
    #[arg(long)]
    service_account_key_file: Vec<PathBuf>,
    /// The private key that signs service-account tokens (default: the
    /// generated pki/sa.key).
    #[arg(long)]
    service_account_signing_key_file: Option<PathBuf>,
    /// The issuer of service-account tokens; repeatable, the first is used
    /// to issue, all are accepted.
    #[arg(long, default_value = skiff_apiserver::DEFAULT_ISSUER)]
    service_account_issuer: Vec<String>,
    /// The audiences the API answers to (default: the issuers).
    #[arg(long, value_delimiter = ',')]
    api_audiences: Vec<String>,
    /// The longest service-account token lifetime granted (e.g. 24h).
    #[arg(long, value_parser = parse_duration)]
    service_account_max_token_expiration: Option<std::time::Duration>,
    /// Issue the kubelet's projected tokens for a year, warning after an hour.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    service_account_extend_token_expiration: bool,
    /// Serve requests without credentials as system:anonymous.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    anonymous_auth: bool,
    /// Accept bootstrap tokens (kube-system Secrets of type
    /// bootstrap.kubernetes.io/token).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    enable_bootstrap_token_auth: bool,
    /// Admission plugins to run besides the default ones (comma-separated,
    /// e.g. AlwaysPullImages).
    #[arg(long, value_delimiter = ',')]
    enable_admission_plugins: Vec<String>,
    /// Default admission plugins not to run (comma-separated).
    #[arg(long, value_delimiter = ',')]
    disable_admission_plugins: Vec<String>,
    /// The client certificate presented to kubelets (default: the generated
    /// pki/apiserver-kubelet-client.crt, user kube-apiserver-kubelet-client).
    #[arg(long, requires = "kubelet_client_key")]
    kubelet_client_certificate: Option<PathBuf>,
    /// The private key of --kubelet-client-certificate.
    #[arg(long, requires = "kubelet_client_certificate")]
    kubelet_client_key: Option<PathBuf>,
    /// The CA that kubelets' serving certificates are verified against
    /// (default: not verified).
    #[arg(long)]
    kubelet_certificate_authority: Option<PathBuf>,
    /// Which Node address types to reach kubelets at, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "InternalIP,ExternalIP,Hostname"
    )]
    kubelet_preferred_address_types: Vec<String>,
    /// How long connecting to a kubelet may take.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    kubelet_timeout: std::time::Duration,
    /// How long Events are kept after they were last observed.
    #[arg(long, value_parser = parse_duration, default_value = "1h0m0s")]
    event_ttl: std::time::Duration,
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
            service_account_key_files: o.service_account_key_file,
            service_account_signing_key_file: o.service_account_signing_key_file,
            service_account_issuers: o.service_account_issuer,
            api_audiences: o.api_audiences,
            service_account_max_token_expiration: o.service_account_max_token_expiration,
            service_account_extend_token_expiration: o.service_account_extend_token_expiration,
            anonymous_auth: o.anonymous_auth,
            enable_bootstrap_token_auth: o.enable_bootstrap_token_auth,
        },
        admission: skiff_apiserver::AdmissionConfig {
            enable_plugins: o.enable_admission_plugins,
            disable_plugins: o.disable_admission_plugins,
        },
        kubelet_client_certificate: o.kubelet_client_certificate,
        kubelet_client_key: o.kubelet_client_key,
        kubelet_certificate_authority: o.kubelet_certificate_authority,
        kubelet_preferred_address_types: o.kubelet_preferred_address_types,
        kubelet_timeout: o.kubelet_timeout,
        event_ttl: o.event_ttl,
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    skiff_apiserver::run(config, shutdown)
        .await
        .context("skiff-apiserver failed")
}
