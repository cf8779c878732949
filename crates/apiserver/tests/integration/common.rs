//! What several modules share: a server on a free port, on the embedded
//! store or a real etcd started for the test, and an admin client for it.

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A server, its client, and what keeps them alive.
pub struct Cluster {
    pub client: Client,
    server: Option<skiff_apiserver::Running>,
    _dir: tempfile::TempDir,
    _etcd: Option<skiff_store::testing::EtcdServer>,
}

impl Cluster {
    pub fn server(&self) -> &skiff_apiserver::Running {
        self.server.as_ref().expect("running")
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

pub async fn start(etcd: Option<skiff_store::testing::EtcdServer>) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let config = skiff_apiserver::Config {
        data_dir: dir.path().to_owned(),
        secure_port: 0,
        bind_address: "127.0.0.1".parse().unwrap(),
        etcd_servers: etcd.iter().map(|e| e.endpoint()).collect(),
        ..Default::default()
    };
    let server = skiff_apiserver::start(config)
        .await
        .expect("the server starts");
    let kubeconfig = Kubeconfig::read_from(&server.admin_kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Cluster {
        client: Client::try_from(config).unwrap(),
        server: Some(server),
        _dir: dir,
        _etcd: etcd,
    }
}

pub async fn embedded() -> Cluster {
    start(None).await
}

pub async fn etcd() -> Cluster {
    start(Some(skiff_store::testing::EtcdServer::start())).await
}
