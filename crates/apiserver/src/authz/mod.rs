//! Authorization: what a user may do, decided as upstream's
//! `--authorization-mode=Node,RBAC`: members of `system:masters` may do
//! anything; a kubelet's requests go to the [`node`] authorizer first
//! (upstream's plugin/pkg/auth/authorizer/node), which allows what a node
//! needs for the pods bound to it and has no opinion on the rest; then RBAC
//! (upstream's plugin/pkg/auth/authorizer/rbac) decides.
//!
//! ClusterRoleBindings grant their ClusterRole's rules everywhere;
//! RoleBindings grant a Role's or a ClusterRole's rules in their namespace.
//! Decisions read an [`index`] of every binding by subject, built from the
//! watch cache and rebuilt when an RBAC object changes: a request costs a
//! few hash lookups, not a scan of the bindings. The default policy upstream
//! bootstraps is created and reconciled at every start ([`policy`]), the
//! rules of aggregated ClusterRoles are kept up to date by a small
//! controller in the server ([`aggregation`]), and writes of roles and
//! bindings are refused when they would grant more than their author holds
//! ([`escalation`]).

pub(crate) mod aggregation;
mod escalation;
pub(crate) mod index;
pub(crate) mod node;
pub(crate) mod policy;
pub(crate) mod rules;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures::FutureExt;
use skiff_api_types::registry::ResourceInfo;
use tokio::sync::broadcast;

pub(crate) use escalation::check_escalation;

use crate::Api;
use crate::cache::{Cache, CachedEvent};
use crate::server::User;

/// What a request wants to do, as upstream's authorizer.Attributes.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    pub user: &'a User,
    pub verb: &'a str,
    pub resource_request: bool,
    pub api_group: &'a str,
    pub namespace: Option<&'a str>,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub name: Option<&'a str>,
    /// The request path, for non-resource requests.
    pub path: &'a str,
}

/// An authorizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Denied, with the reason shown to the client.
    Deny(String),
}

/// The group whose members may do anything, whatever RBAC says (upstream
/// puts this authorizer before RBAC: it is how the server's own loopback
/// clients, and the admin, keep access).
pub(crate) const PRIVILEGED_GROUP: &str = "system:masters";

fn privileged(user: &User) -> bool {
    user.groups.iter().any(|g| g == PRIVILEGED_GROUP)
}

/// Decides a request: members of `system:masters` may do anything, nodes
/// what the Node authorizer allows them, everyone what RBAC grants them.
/// Anonymous requests are decided like any other: `system:anonymous` in
/// `system:unauthenticated` gets what is bound to them (by default
/// `system:public-info-viewer`: health and version).
pub fn authorize(api: &Api, attrs: &Attributes<'_>) -> Decision {
    if privileged(attrs.user) {
        return Decision::Allow;
    }
    let node_reason = match node::authorize(api, attrs) {
        node::Opinion::Allow => return Decision::Allow,
        node::Opinion::NoOpinion(reason) => reason,
    };
    match api.rbac.index(&api.cache).allowed_by(attrs) {
        Ok(_) => Decision::Allow,
        Err(errors) => Decision::Deny(join_reasons(node_reason, index::denial_reason(&errors))),
    }
}

/// Decides a request and says why, as a SubjectAccessReview answers: the
/// Node authorizer allows without a reason, RBAC says which binding allows;
/// a denial gives every authorizer's reason.
pub(crate) fn review(api: &Api, attrs: &Attributes<'_>) -> index::Verdict {
    if privileged(attrs.user) {
        return index::Verdict {
            allowed: true,
            reason: String::new(),
        };
    }
    let node_reason = match node::authorize(api, attrs) {
        node::Opinion::Allow => {
            return index::Verdict {
                allowed: true,
                reason: String::new(),
            };
        }
        node::Opinion::NoOpinion(reason) => reason,
    };
    let mut verdict = api.rbac.index(&api.cache).decide(attrs);
    if !verdict.allowed {
        verdict.reason = join_reasons(node_reason, verdict.reason);
    }
    verdict
}

/// The reasons of the authorizers that had no opinion, one a line, as
/// upstream's union authorizer joins them.
fn join_reasons(first: String, second: String) -> String {
    match (first.is_empty(), second.is_empty()) {
        (_, true) => first,
        (true, false) => second,
        (false, false) => format!("{first}\n{second}"),
    }
}

/// What the authorizers keep current with the watch cache: the RBAC index,
/// and the Node authorizer's pods by node ([`node::PodsByNode`]).
///
/// The RBAC index is rebuilt lazily: each decision compares the cache's revision
/// with the one the index is known to be current at; when the cache has
/// moved on, it drains the cache's event streams of the four RBAC resources
/// (the cache sends an event before it advances its revision, so every event
/// up to the revision read is there) and rebuilds only if one of them
/// changed. Between writes a decision takes no lock but a read lock.
pub(crate) struct Rbac {
    index: RwLock<Arc<index::Index>>,
    /// The cache revision up to which `index` reflects every RBAC object.
    current_at: AtomicI64,
    follow: Mutex<Vec<Follower>>,
    /// Which pods are bound to which node, for the Node authorizer.
    nodes: node::PodsByNode,
}

struct Follower {
    resource: &'static ResourceInfo,
    events: Option<broadcast::Receiver<Arc<CachedEvent>>>,
}

impl Default for Rbac {
    fn default() -> Self {
        Rbac {
            index: RwLock::new(Arc::new(index::Index::default())),
            current_at: AtomicI64::new(-1),
            follow: Mutex::new(
                index::resources()
                    .into_iter()
                    .map(|resource| Follower {
                        resource,
                        events: None,
                    })
                    .collect(),
            ),
            nodes: node::PodsByNode::default(),
        }
    }
}

impl Rbac {
    /// The index, current with the cache.
    pub fn index(&self, cache: &Cache) -> Arc<index::Index> {
        let revision = cache.revision();
        if self.current_at.load(Ordering::Acquire) >= revision {
            return self.index.read().unwrap().clone();
        }
        let mut followers = self.follow.lock().unwrap();
        if self.current_at.load(Ordering::Acquire) >= revision {
            return self.index.read().unwrap().clone();
        }
        let mut changed = false;
        for follower in followers.iter_mut() {
            changed |= follower.drain(cache);
        }
        if changed {
            let rebuilt = Arc::new(index::Index::build(cache));
            *self.index.write().unwrap() = rebuilt;
        }
        self.current_at.fetch_max(revision, Ordering::AcqRel);
        self.index.read().unwrap().clone()
    }
}

impl Follower {
    /// Takes every pending event; true if there was any (or if events may
    /// have been missed, when the stream lagged or the cache reloaded).
    fn drain(&mut self, cache: &Cache) -> bool {
        let Some(events) = &mut self.events else {
            self.subscribe(cache);
            return true;
        };
        let mut changed = false;
        loop {
            match events.try_recv() {
                Ok(_) => changed = true,
                Err(broadcast::error::TryRecvError::Empty) => return changed,
                Err(broadcast::error::TryRecvError::Lagged(_)) => changed = true,
                Err(broadcast::error::TryRecvError::Closed) => {
                    self.subscribe(cache);
                    return true;
                }
            }
        }
    }

    fn subscribe(&mut self, cache: &Cache) {
        // A watch from the current state never waits.
        self.events = cache
            .watch(self.resource, None)
            .now_or_never()
            .and_then(Result::ok)
            .map(|start| start.live);
    }
}

/// The 403 for a denied request, worded as upstream's.
pub fn forbidden(attrs: &Attributes<'_>, reason: &str) -> crate::status::ApiError {
    let user = &attrs.user.name;
    let why = if !attrs.resource_request {
        format!(
            "User \"{user}\" cannot {} path \"{}\"",
            attrs.verb, attrs.path
        )
    } else {
        let resource = match attrs.subresource {
            Some(sub) => format!("{}/{sub}", attrs.resource),
            None => attrs.resource.to_owned(),
        };
        let scope = match attrs.namespace {
            Some(ns) if !ns.is_empty() => format!(" in the namespace \"{ns}\""),
            _ => " at the cluster scope".to_owned(),
        };
        format!(
            "User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\"{scope}",
            attrs.verb, attrs.api_group
        )
    };
    let why = if reason.is_empty() {
        why
    } else {
        format!("{why}: {reason}")
    };
    if attrs.resource_request {
        crate::status::ApiError::forbidden(
            crate::status::GroupResource {
                group: attrs.api_group,
                resource: attrs.resource,
            },
            attrs.name.unwrap_or(""),
            &why,
        )
    } else {
        crate::status::ApiError::forbidden_path(&why)
    }
}
