//! The scheduler's writes to the API server, behind one trait: bind a pod,
//! patch its status, delete a preemption victim, write an Event. The real
//! one uses kube-rs; the fake records what it was asked.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the API server refused the request ({code}): {message}")]
    Refused { code: u16, message: String },
    #[error("talking to the API server")]
    Transport(#[source] kube::Error),
}

impl ClientError {
    /// HTTP status of a refusal.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Refused { code, .. } => Some(*code),
            ClientError::Transport(_) => None,
        }
    }
}

impl From<kube::Error> for ClientError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => ClientError::Refused {
                code: s.code,
                message: s.message,
            },
            other => ClientError::Transport(other),
        }
    }
}

/// Everything the scheduler writes.
#[async_trait]
pub trait ClusterClient: Send + Sync {
    /// POST `pods/{name}/binding`.
    async fn bind(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        node: &str,
    ) -> Result<(), ClientError>;
    /// A strategic-merge patch of `pods/{name}/status`.
    async fn patch_pod_status(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), ClientError>;
    /// Deletes a pod (with a UID precondition), as preemption does.
    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ClientError>;
    /// Writes a core/v1 Event.
    async fn create_event(&self, event: &Event) -> Result<(), ClientError>;
    /// Bumps an Event written before (a repeat).
    async fn patch_event(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), ClientError>;
    /// A merge patch of a PersistentVolume (volume binding).
    async fn patch_pv(&self, name: &str, patch: &Value) -> Result<(), ClientError>;
    /// A merge patch of a PersistentVolumeClaim (volume binding).
    async fn patch_pvc(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), ClientError>;
}

/// The real client.
pub struct KubeClient {
    client: kube::Client,
}

impl KubeClient {
    pub fn new(client: kube::Client) -> KubeClient {
        KubeClient { client }
    }
}

#[async_trait]
impl ClusterClient for KubeClient {
    async fn bind(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        node: &str,
    ) -> Result<(), ClientError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        let _: Value = pods
            .create_subresource("binding", name, &PostParams::default(), &binding)
            .await?;
        Ok(())
    }

    async fn patch_pod_status(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), ClientError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        pods.patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await?;
        Ok(())
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ClientError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        pods.delete(name, &dp).await?;
        Ok(())
    }

    async fn create_event(&self, event: &Event) -> Result<(), ClientError> {
        let ns = event.metadata.namespace.as_deref().unwrap_or("default");
        let events: Api<Event> = Api::namespaced(self.client.clone(), ns);
        events.create(&PostParams::default(), event).await?;
        Ok(())
    }

    async fn patch_event(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), ClientError> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        events
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }

    async fn patch_pv(&self, name: &str, patch: &Value) -> Result<(), ClientError> {
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        pvs.patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }

    async fn patch_pvc(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), ClientError> {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        pvcs.patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }
}

/// A client that records every call and succeeds (or fails binds on demand).
#[cfg(test)]
#[derive(Default)]
pub struct FakeClient {
    pub calls: std::sync::Mutex<Vec<Call>>,
    pub fail_binds: std::sync::atomic::AtomicBool,
}

/// One recorded call.
#[cfg(test)]
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Bind { pod: String, node: String },
    PatchStatus { pod: String, patch: Value },
    Delete { pod: String },
    Event { reason: String, message: String },
    Patch { object: String, patch: Value },
}

#[cfg(test)]
impl FakeClient {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    fn record(&self, c: Call) {
        self.calls.lock().unwrap().push(c);
    }
}

#[cfg(test)]
#[async_trait]
impl ClusterClient for FakeClient {
    async fn bind(&self, ns: &str, name: &str, _uid: &str, node: &str) -> Result<(), ClientError> {
        if self.fail_binds.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ClientError::Refused {
                code: 500,
                message: "binding refused".into(),
            });
        }
        self.record(Call::Bind {
            pod: format!("{ns}/{name}"),
            node: node.into(),
        });
        Ok(())
    }
    async fn patch_pod_status(
        &self,
        ns: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), ClientError> {
        self.record(Call::PatchStatus {
            pod: format!("{ns}/{name}"),
            patch: patch.clone(),
        });
        Ok(())
    }
    async fn delete_pod(&self, ns: &str, name: &str, _uid: &str) -> Result<(), ClientError> {
        self.record(Call::Delete {
            pod: format!("{ns}/{name}"),
        });
        Ok(())
    }
    async fn create_event(&self, event: &Event) -> Result<(), ClientError> {
        self.record(Call::Event {
            reason: event.reason.clone().unwrap_or_default(),
            message: event.message.clone().unwrap_or_default(),
        });
        Ok(())
    }
    async fn patch_event(&self, _: &str, _: &str, _: &Value) -> Result<(), ClientError> {
        Ok(())
    }
    async fn patch_pv(&self, name: &str, patch: &Value) -> Result<(), ClientError> {
        self.record(Call::Patch {
            object: format!("persistentvolumes/{name}"),
            patch: patch.clone(),
        });
        Ok(())
    }
    async fn patch_pvc(&self, ns: &str, name: &str, patch: &Value) -> Result<(), ClientError> {
        self.record(Call::Patch {
            object: format!("persistentvolumeclaims/{ns}/{name}"),
            patch: patch.clone(),
        });
        Ok(())
    }
}
