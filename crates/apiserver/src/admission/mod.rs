//! Admission: the mutating then validating plugins every write passes after
//! defaulting, in upstream's order (k8s.io/kubernetes pkg/kubeapiserver/
//! options/plugins.go). [`mutate`] runs the mutating phase before
//! validation, [`validate`] the validating phase after it; [`validate_delete`]
//! and [`deleted`] see deletions.
//!
//! Plugins, by phase (NamespaceLifecycle is the REST code's
//! `check_namespace` and always runs):
//!
//! | plugin | mutates | validates | default |
//! |---|---|---|---|
//! | LimitRanger | container requests/limits | min/max/ratio | on |
//! | ServiceAccount | `serviceAccountName`, token volume | account exists | on |
//! | NodeRestriction | | nodes touch only their own objects | on |
//! | TaintNodesByCondition | new Nodes are not-ready | | on |
//! | AlwaysPullImages | `imagePullPolicy: Always` | pull policy | off |
//! | PodSecurity | | namespace's Pod Security level | on |
//! | Priority | `priority` from the PriorityClass | one global default | on |
//! | DefaultTolerationSeconds | not-ready/unreachable tolerations | | on |
//! | DefaultStorageClass | claims' storage class | | on |
//! | StorageObjectInUseProtection | protection finalizers | | on |
//! | PersistentVolumeClaimResize | | only expandable claims grow | on |
//! | RuntimeClass | overhead, scheduling | overhead | on |
//! | DefaultIngressClass | ingresses' class | | on |
//! | MutatingAdmissionWebhook | JSONPatch from webhooks | webhooks' verdict | on |
//! | ValidatingAdmissionPolicy | | CEL policies' verdict | on |
//! | ValidatingAdmissionWebhook | | webhooks' verdict | on |
//! | ResourceQuota | | usage charged atomically | on |

mod always_pull_images;
mod expressions;
mod ingress_class;
mod limit_ranger;
mod lookup;
mod node_restriction;
mod node_taints;
mod pod_security;
mod policy;
pub(crate) mod priority;
mod quota;
mod resources;
mod runtime_class;
pub(crate) mod service_account;
mod storage;
mod tolerations;
pub(crate) mod webhook;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use skiff_api_types::registry::ResourceInfo;
use skiff_store::Store;

use crate::Api;
use crate::cache::Cache;
use crate::server::User;
use crate::status::{ApiError, GroupResource};

/// Every plugin, in upstream's order (`NamespaceLifecycle` lives in the REST
/// code and cannot be turned off).
pub const PLUGINS: &[&str] = &[
    "NamespaceLifecycle",
    limit_ranger::NAME,
    service_account::NAME,
    node_restriction::NAME,
    node_taints::NAME,
    always_pull_images::NAME,
    pod_security::NAME,
    priority::NAME,
    tolerations::NAME,
    storage::DEFAULT_STORAGE_CLASS,
    storage::IN_USE_PROTECTION,
    storage::CLAIM_RESIZE,
    runtime_class::NAME,
    ingress_class::NAME,
    webhook::MUTATING,
    policy::NAME,
    webhook::VALIDATING,
    quota::NAME,
];

/// The plugins that run unless disabled: upstream's defaults, plus
/// NodeRestriction (which every kubeadm cluster enables).
const DEFAULT_OFF: &[&str] = &[always_pull_images::NAME];

/// Which admission plugins run; field names follow kube-apiserver's flags.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// `--enable-admission-plugins`: plugins to run besides the default ones
    /// (e.g. `AlwaysPullImages`).
    pub enable_plugins: Vec<String>,
    /// `--disable-admission-plugins`: default plugins not to run.
    pub disable_plugins: Vec<String>,
}

/// The admission chain as configured, with the state its plugins keep.
pub(crate) struct Admission {
    enabled: BTreeSet<&'static str>,
    quota: quota::Quotas,
    /// Namespaced lists read from the store when the watch cache has none.
    live: lookup::LiveLists,
}

/// What a write does, as admission sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

/// One write under admission.
pub struct Request<'a> {
    pub api: &'a Api,
    /// `None` for the server's own writes (bootstrap, allocators).
    pub user: Option<&'a User>,
    pub operation: Operation,
    pub resource: &'static ResourceInfo,
    pub subresource: Option<&'a str>,
    pub dry_run: bool,
    /// Where `Warning` headers for the response go, if anywhere.
    pub warnings: Option<&'a Mutex<Vec<String>>>,
    /// Quota charged for this write: given back unless [`Request::commit`]
    /// says the write landed.
    charges: quota::Ledger,
}

impl<'a> Request<'a> {
    pub fn new(
        api: &'a Api,
        user: Option<&'a User>,
        operation: Operation,
        resource: &'static ResourceInfo,
        subresource: Option<&'a str>,
        dry_run: bool,
    ) -> Self {
        Request {
            api,
            user,
            operation,
            resource,
            subresource,
            dry_run,
            warnings: None,
            charges: quota::Ledger::default(),
        }
    }

    /// Sends the plugins' warnings to this list.
    pub fn with_warnings(mut self, warnings: &'a Mutex<Vec<String>>) -> Self {
        self.warnings = Some(warnings);
        self
    }

    /// The write was stored: what admission charged stays charged. Without
    /// this, dropping the request gives the quota back.
    pub fn commit(&self) {
        self.charges.commit();
    }

    fn warn(&self, warning: String) {
        if let Some(w) = self.warnings {
            w.lock().unwrap().push(warning);
        }
    }

    fn is(&self, group: &str, plural: &str) -> bool {
        self.resource.group == group && self.resource.plural == plural
    }

    fn gr(&self) -> GroupResource<'static> {
        GroupResource {
            group: self.resource.group,
            resource: self.resource.plural,
        }
    }

    /// Upstream's `admission.NewForbidden`: `<resource> "<name>" is
    /// forbidden: <why>`.
    fn forbidden(&self, obj: &Value, why: impl AsRef<str>) -> ApiError {
        ApiError::forbidden(self.gr(), name_of(obj), why.as_ref())
    }

    fn enabled(&self, plugin: &str) -> bool {
        self.api.admission.enabled.contains(plugin)
    }
}

impl Drop for Request<'_> {
    fn drop(&mut self) {
        self.charges.refund(&self.api.admission.quota);
    }
}

impl Admission {
    /// The chain `config` asks for; an unknown plugin name is an error.
    pub fn new(config: &Config, store: Arc<dyn Store>, cache: Cache) -> Result<Self, String> {
        let known = |name: &str| {
            PLUGINS.iter().copied().find(|p| *p == name).ok_or_else(|| {
                format!(
                    "admission plugin {name:?} is unknown; known plugins: {}",
                    PLUGINS.join(", ")
                )
            })
        };
        let mut enabled: BTreeSet<&'static str> = PLUGINS
            .iter()
            .copied()
            .filter(|p| !DEFAULT_OFF.contains(p))
            .collect();
        for name in &config.enable_plugins {
            enabled.insert(known(name)?);
        }
        for name in &config.disable_plugins {
            enabled.remove(known(name)?);
        }
        Ok(Admission {
            enabled,
            quota: quota::Quotas::new(store, cache),
            live: lookup::LiveLists::default(),
        })
    }
}

/// The mutating phase: may change the object.
pub async fn mutate(
    req: &Request<'_>,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if req.enabled(limit_ranger::NAME) {
        limit_ranger::admit(req, obj, old).await?;
    }
    if req.enabled(service_account::NAME) {
        service_account::admit(req, obj).await?;
    }
    if req.enabled(node_restriction::NAME) {
        node_restriction::admit(req, obj, old).await?;
    }
    if req.enabled(node_taints::NAME) {
        node_taints::admit(req, obj);
    }
    if req.enabled(always_pull_images::NAME) {
        always_pull_images::admit(req, obj, old);
    }
    if req.enabled(priority::NAME) {
        priority::admit(req, obj, old).await?;
    }
    if req.enabled(tolerations::NAME) {
        tolerations::admit(req, obj);
    }
    if req.enabled(storage::DEFAULT_STORAGE_CLASS) {
        storage::default_class(req, obj)?;
    }
    if req.enabled(storage::IN_USE_PROTECTION) {
        storage::protect(req, obj);
    }
    if req.enabled(runtime_class::NAME) {
        runtime_class::admit(req, obj).await?;
    }
    if req.enabled(ingress_class::NAME) {
        ingress_class::admit(req, obj);
    }
    if req.enabled(webhook::MUTATING) {
        webhook::mutate(req, obj, old).await?;
    }
    if req.enabled(quota::NAME) {
        quota::admit_quota_object(req, obj).await?;
    }
    Ok(())
}

/// The validating phase, after validation: may only refuse.
pub async fn validate(req: &Request<'_>, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    if req.enabled(limit_ranger::NAME) {
        limit_ranger::validate(req, obj, old).await?;
    }
    if req.enabled(service_account::NAME) {
        service_account::validate(req, obj).await?;
    }
    if req.enabled(always_pull_images::NAME) {
        always_pull_images::validate(req, obj)?;
    }
    if req.enabled(pod_security::NAME) {
        pod_security::validate(req, obj, old).await?;
    }
    if req.enabled(priority::NAME) {
        priority::validate(req, obj)?;
    }
    if req.enabled(storage::CLAIM_RESIZE) {
        storage::validate_resize(req, obj, old)?;
    }
    if req.enabled(runtime_class::NAME) {
        runtime_class::validate(req, obj).await?;
    }
    if req.enabled(policy::NAME) {
        policy::validate(req, Some(obj), old).await?;
    }
    if req.enabled(webhook::VALIDATING) {
        webhook::validate(req, Some(obj), old).await?;
    }
    // Last, as upstream: only a write every other plugin accepted is charged.
    if req.enabled(quota::NAME) {
        quota::validate(req, obj, old).await?;
    }
    Ok(())
}

/// Admission of a deletion, before it is written: `current` is the object
/// as stored.
pub async fn validate_delete(req: &Request<'_>, current: &Value) -> Result<(), ApiError> {
    if req.enabled(node_restriction::NAME) {
        node_restriction::validate_delete(req, current)?;
    }
    if req.enabled(webhook::MUTATING) {
        webhook::mutate_delete(req, current).await?;
    }
    if req.enabled(policy::NAME) {
        policy::validate(req, None, Some(current)).await?;
    }
    if req.enabled(webhook::VALIDATING) {
        webhook::validate(req, None, Some(current)).await?;
    }
    Ok(())
}

/// The checks of objects' validation that need CEL (policies' and
/// webhooks' expressions must compile): their field errors.
pub(crate) fn expression_errors(
    resource: &ResourceInfo,
    obj: &Value,
) -> Vec<skiff_api_types::validation::FieldError> {
    policy::field_errors(resource, obj)
}

/// An object is gone from the store: what it used of its namespace's quotas
/// is free again (the ResourceQuota controller would recount it).
pub async fn deleted(api: &Api, resource: &'static ResourceInfo, last: &Value) {
    if api.admission.enabled.contains(quota::NAME) {
        quota::release(api, resource, last).await;
    }
}

/// `metadata.name`, else `generateName`, else upstream's "Unknown".
fn name_of(obj: &Value) -> &str {
    let meta = &obj["metadata"];
    meta["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .or_else(|| meta["generateName"].as_str().filter(|n| !n.is_empty()))
        .unwrap_or("Unknown")
}

/// The namespace of an object (empty for cluster-scoped ones).
fn namespace_of(obj: &Value) -> &str {
    obj["metadata"]["namespace"].as_str().unwrap_or("")
}

/// Every container of a pod spec, as upstream's VisitContainers: init
/// containers, containers, then ephemeral containers.
fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |k| spec[k].as_array().into_iter().flatten())
}

/// Calls `f` on every container of a pod spec, in [`containers`]' order.
fn for_each_container_mut(spec: &mut Value, mut f: impl FnMut(&mut Value)) {
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        if let Some(list) = spec.get_mut(key).and_then(Value::as_array_mut) {
            list.iter_mut().for_each(&mut f);
        }
    }
}

/// Five random characters from upstream's alphabet for generated names.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Whether a pod is a kubelet's mirror of a static pod.
fn is_mirror_pod(pod: &Value) -> bool {
    pod["metadata"]["annotations"]
        .get("kubernetes.io/config.mirror")
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_plugin_is_known_and_always_pull_images_is_off() {
        for off in DEFAULT_OFF {
            assert!(PLUGINS.contains(off));
        }
        assert!(!PLUGINS[1..].contains(&"NamespaceLifecycle"));
    }

    #[test]
    fn containers_are_visited_init_first_then_regular_then_ephemeral() {
        let mut spec = serde_json::json!({
            "initContainers": [{"name": "i"}],
            "containers": [{"name": "a"}, {"name": "b"}],
            "ephemeralContainers": [{"name": "e"}],
        });
        let names: Vec<String> = containers(&spec)
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["i", "a", "b", "e"]);
        let mut seen = Vec::new();
        for_each_container_mut(&mut spec, |c| {
            seen.push(c["name"].as_str().unwrap().to_owned())
        });
        assert_eq!(seen, names);
    }
}
