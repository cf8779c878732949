//! DefaultBinder: binds the pod through the `pods/binding` subresource.

use async_trait::async_trait;
use std::sync::Arc;

use crate::extension_points;
use crate::framework::{BindPlugin, CycleState, Handle, Plugin, Status};
use crate::nodeinfo::PodInfo;

pub const NAME: &str = "DefaultBinder";

/// POSTs a Binding.
pub struct DefaultBinder {
    handle: Arc<Handle>,
}

impl DefaultBinder {
    pub fn new(handle: Arc<Handle>) -> DefaultBinder {
        DefaultBinder { handle }
    }
}

impl Plugin for DefaultBinder {
    fn name(&self) -> &'static str {
        NAME
    }
    extension_points!(as_bind: BindPlugin);
}

#[async_trait]
impl BindPlugin for DefaultBinder {
    async fn bind(&self, _: &CycleState, pod: &PodInfo, node: &str) -> Status {
        match self
            .handle
            .client
            .bind(&pod.namespace, &pod.name, &pod.uid, node)
            .await
        {
            Ok(()) => Status::success(),
            Err(e) => Status::error(format!("binding rejected: {e}")),
        }
    }
}
