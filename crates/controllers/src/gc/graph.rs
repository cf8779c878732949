//! The ownerReferences graph (upstream's `GraphBuilder`): a node per object
//! seen by the metadata watches, plus a *virtual* node for each owner
//! referenced but not (yet) seen. Each change of an object updates the graph
//! and answers what the workers must look at: dependents whose owner went,
//! owners waiting in foreground deletion whose dependents changed, owners
//! that started orphaning or foreground deletion, and virtual owners to
//! check against the API server.

use std::collections::{HashMap, HashSet, VecDeque};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The `metadata.finalizers` entry of a foreground deletion.
pub(crate) const FOREGROUND: &str = "foregroundDeletion";
/// The `metadata.finalizers` entry of an orphaning deletion.
pub(crate) const ORPHAN: &str = "orphan";
/// How many owners known to be absent are remembered.
const ABSENT_CACHE_SIZE: usize = 500;

/// Which object a node is (for a virtual node: as its dependents name it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    /// The object's namespace (a virtual node: its first dependent's,
    /// whether or not its kind is namespaced).
    pub namespace: Option<String>,
}

/// What the workers should do about a node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Work {
    /// Check whether the object (by UID) is garbage, or a foreground
    /// deletion can finish, or a virtual node exists.
    Delete(String),
    /// Remove references to this owner from its dependents, then its
    /// `orphan` finalizer.
    Orphan(String),
}

/// One object in the graph.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub identity: Identity,
    pub owners: Vec<OwnerReference>,
    /// UIDs of the objects naming this one as an owner.
    pub dependents: HashSet<String>,
    /// Seen through a watch (not only referenced).
    pub observed: bool,
    pub being_deleted: bool,
    /// Being deleted in the foreground: dependents first.
    pub deleting_dependents: bool,
    /// Being deleted with the `orphan` finalizer.
    pub orphaning: bool,
}

/// The graph, and the owners known to be gone.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    nodes: HashMap<String, Node>,
    absent: HashSet<(String, String, String, String, Option<String>)>,
    absent_order: VecDeque<(String, String, String, String, Option<String>)>,
}

fn has_finalizer(meta: &ObjectMeta, f: &str) -> bool {
    meta.finalizers.iter().flatten().any(|x| x == f)
}

fn blocks(r: &OwnerReference) -> bool {
    r.block_owner_deletion == Some(true)
}

fn absent_key(
    r: &OwnerReference,
    namespace: Option<&str>,
) -> (String, String, String, String, Option<String>) {
    (
        r.api_version.clone(),
        r.kind.clone(),
        r.name.clone(),
        r.uid.clone(),
        namespace.map(str::to_owned),
    )
}

impl Graph {
    /// The node of `uid`.
    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// How many nodes the graph holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The dependents of `uid` that block its deletion
    /// (`blockOwnerDeletion: true` on their reference to it).
    pub fn blocking_dependents(&self, uid: &str) -> Vec<&Node> {
        let Some(node) = self.nodes.get(uid) else {
            return Vec::new();
        };
        node.dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .filter(|d| d.owners.iter().any(|r| r.uid == uid && blocks(r)))
            .collect()
    }

    /// Remembers that the owner `r` (seen from `namespace`) does not exist.
    pub fn mark_absent(&mut self, r: &OwnerReference, namespace: Option<&str>) {
        let key = absent_key(r, namespace);
        if self.absent.insert(key.clone()) {
            self.absent_order.push_back(key);
            if self.absent_order.len() > ABSENT_CACHE_SIZE
                && let Some(old) = self.absent_order.pop_front()
            {
                self.absent.remove(&old);
            }
        }
    }

    /// Whether the owner `r` is known not to exist (cluster-scoped, or in
    /// `namespace`).
    pub fn is_absent(&self, r: &OwnerReference, namespace: Option<&str>) -> bool {
        self.absent.contains(&absent_key(r, None))
            || (namespace.is_some() && self.absent.contains(&absent_key(r, namespace)))
    }

    fn add_dependent_to_owners(
        &mut self,
        uid: &str,
        owners: &[OwnerReference],
        work: &mut Vec<Work>,
    ) {
        let namespace = self
            .nodes
            .get(uid)
            .and_then(|n| n.identity.namespace.clone());
        for r in owners {
            let owner = self.nodes.entry(r.uid.clone()).or_insert_with(|| {
                work.push(Work::Delete(r.uid.clone()));
                Node {
                    identity: Identity {
                        api_version: r.api_version.clone(),
                        kind: r.kind.clone(),
                        name: r.name.clone(),
                        uid: r.uid.clone(),
                        namespace: namespace.clone(),
                    },
                    owners: Vec::new(),
                    dependents: HashSet::new(),
                    observed: false,
                    being_deleted: false,
                    deleting_dependents: false,
                    orphaning: false,
                }
            });
            owner.dependents.insert(uid.to_owned());
            if owner.observed
                && (owner.identity.kind != r.kind
                    || owner.identity.name != r.name
                    || owner.identity.api_version.split('/').next()
                        != r.api_version.split('/').next())
            {
                // The reference names another object than the one with this
                // UID: check it against the API server.
                work.push(Work::Delete(uid.to_owned()));
            }
        }
    }

    fn remove_dependent_from_owners(&mut self, uid: &str, owners: &[OwnerReference]) {
        for r in owners {
            let drop_virtual = match self.nodes.get_mut(&r.uid) {
                Some(owner) => {
                    owner.dependents.remove(uid);
                    !owner.observed && owner.dependents.is_empty()
                }
                None => false,
            };
            if drop_virtual {
                self.nodes.remove(&r.uid);
            }
        }
    }

    /// An object was added or updated.
    pub fn observe(&mut self, identity: Identity, meta: &ObjectMeta) -> Vec<Work> {
        let mut work = Vec::new();
        let uid = identity.uid.clone();
        let owners = meta.owner_references.clone().unwrap_or_default();
        let being_deleted = meta.deletion_timestamp.is_some();
        let foreground = being_deleted && has_finalizer(meta, FOREGROUND);
        let orphan = being_deleted && has_finalizer(meta, ORPHAN);
        let (was_orphaning, was_deleting_dependents) = match self.nodes.get_mut(&uid) {
            None => {
                self.nodes.insert(
                    uid.clone(),
                    Node {
                        identity,
                        owners: owners.clone(),
                        dependents: HashSet::new(),
                        observed: true,
                        being_deleted,
                        deleting_dependents: false,
                        orphaning: false,
                    },
                );
                self.add_dependent_to_owners(&uid, &owners, &mut work);
                (false, false)
            }
            Some(node) => {
                if !node.observed {
                    if node.identity != identity {
                        // Dependents named it otherwise: check them.
                        work.extend(node.dependents.iter().cloned().map(Work::Delete));
                    }
                    node.identity = identity;
                    node.observed = true;
                }
                node.being_deleted |= being_deleted;
                let state = (node.orphaning, node.deleting_dependents);
                let old = std::mem::take(&mut node.owners);
                node.owners = owners.clone();
                if old != owners {
                    let added: Vec<OwnerReference> = owners
                        .iter()
                        .filter(|r| !old.iter().any(|o| o.uid == r.uid))
                        .cloned()
                        .collect();
                    let removed: Vec<OwnerReference> = old
                        .iter()
                        .filter(|o| !owners.iter().any(|r| r.uid == o.uid))
                        .cloned()
                        .collect();
                    // An owner waiting for its blocking dependents may be
                    // free now: a blocking reference went or stopped blocking.
                    let unblocked = old.iter().filter(|o| {
                        blocks(o)
                            && owners
                                .iter()
                                .find(|r| r.uid == o.uid)
                                .is_none_or(|r| !blocks(r))
                    });
                    for o in unblocked {
                        if self
                            .nodes
                            .get(&o.uid)
                            .is_some_and(|n| n.deleting_dependents)
                        {
                            work.push(Work::Delete(o.uid.clone()));
                        }
                    }
                    self.add_dependent_to_owners(&uid, &added, &mut work);
                    self.remove_dependent_from_owners(&uid, &removed);
                }
                state
            }
        };
        let node = self.nodes.get_mut(&uid).expect("just inserted");
        node.orphaning = orphan;
        if orphan && !was_orphaning {
            work.push(Work::Orphan(uid));
            return work;
        }
        if foreground && !was_deleting_dependents {
            node.deleting_dependents = true;
            work.extend(node.dependents.iter().cloned().map(Work::Delete));
            work.push(Work::Delete(uid));
        }
        work
    }

    /// An object was deleted (seen by a watch, or — `only_virtual` — found
    /// absent by a worker, which removes only a node still virtual).
    pub fn remove(&mut self, uid: &str, only_virtual: bool) -> Vec<Work> {
        let mut work = Vec::new();
        let Some(node) = self.nodes.get(uid) else {
            return work;
        };
        if only_virtual && node.observed {
            return work;
        }
        let node = self.nodes.remove(uid).expect("present");
        for d in &node.dependents {
            // The dependents' references to it now dangle.
            if let Some(dep) = self.nodes.get(d)
                && let Some(r) = dep.owners.iter().find(|r| r.uid == uid)
            {
                let r = r.clone();
                let ns = dep.identity.namespace.clone();
                self.mark_absent(&r, ns.as_deref());
            }
            work.push(Work::Delete(d.clone()));
        }
        for r in &node.owners {
            if self
                .nodes
                .get(&r.uid)
                .is_some_and(|o| o.deleting_dependents)
            {
                work.push(Work::Delete(r.uid.clone()));
            }
        }
        self.remove_dependent_from_owners(uid, &node.owners);
        work
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn id(kind: &str, name: &str) -> Identity {
        Identity {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: Some("ns".into()),
        }
    }

    fn owner_ref(kind: &str, name: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    fn meta(owners: &[OwnerReference], deleting: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(owners.to_vec()),
            deletion_timestamp: deleting.map(|_| Time(Timestamp::UNIX_EPOCH)),
            finalizers: deleting.map(|f| vec![f.to_owned()]),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn an_unseen_owner_becomes_a_virtual_node_to_check() {
        let mut g = Graph::default();
        let work = g.observe(
            id("ReplicaSet", "rs"),
            &meta(&[owner_ref("Deployment", "d", true)], None),
        );
        assert_eq!(work, [Work::Delete("uid-d".into())]);
        let d = g.node("uid-d").unwrap();
        assert!(!d.observed);
        assert!(d.dependents.contains("uid-rs"));
        // Seen later: it becomes a real node, nothing to do.
        let work = g.observe(id("Deployment", "d"), &meta(&[], None));
        assert!(work.is_empty());
        assert!(g.node("uid-d").unwrap().observed);
    }

    #[test]
    fn a_deleted_owner_sends_its_dependents_to_be_checked() {
        let mut g = Graph::default();
        g.observe(id("Deployment", "d"), &meta(&[], None));
        g.observe(
            id("ReplicaSet", "rs"),
            &meta(&[owner_ref("Deployment", "d", true)], None),
        );
        let work = g.remove("uid-d", false);
        assert_eq!(work, [Work::Delete("uid-rs".into())]);
        assert!(g.is_absent(&owner_ref("Deployment", "d", true), Some("ns")));
        assert!(g.node("uid-d").is_none());
        g.remove("uid-rs", false);
        assert_eq!(g.len(), 0);
    }

    #[test]
    fn foreground_deletion_checks_the_dependents_and_their_removal_the_owner() {
        let mut g = Graph::default();
        g.observe(id("Deployment", "d"), &meta(&[], None));
        g.observe(
            id("ReplicaSet", "a"),
            &meta(&[owner_ref("Deployment", "d", true)], None),
        );
        g.observe(
            id("ReplicaSet", "b"),
            &meta(&[owner_ref("Deployment", "d", false)], None),
        );
        let mut work = g.observe(id("Deployment", "d"), &meta(&[], Some(FOREGROUND)));
        work.sort_by_key(|w| format!("{w:?}"));
        assert_eq!(
            work,
            [
                Work::Delete("uid-a".into()),
                Work::Delete("uid-b".into()),
                Work::Delete("uid-d".into())
            ]
        );
        assert!(g.node("uid-d").unwrap().deleting_dependents);
        let blocking: Vec<&str> = g
            .blocking_dependents("uid-d")
            .iter()
            .map(|n| n.identity.name.as_str())
            .collect();
        assert_eq!(blocking, ["a"]);
        // A second update of the owner does not start it again.
        assert!(
            g.observe(id("Deployment", "d"), &meta(&[], Some(FOREGROUND)))
                .is_empty()
        );
        let work = g.remove("uid-a", false);
        assert_eq!(work, [Work::Delete("uid-d".into())]);
        assert!(g.blocking_dependents("uid-d").is_empty());
    }

    #[test]
    fn a_dependent_that_stops_blocking_frees_its_foreground_owner() {
        let mut g = Graph::default();
        g.observe(id("Deployment", "d"), &meta(&[], None));
        g.observe(
            id("ReplicaSet", "a"),
            &meta(&[owner_ref("Deployment", "d", true)], None),
        );
        g.observe(id("Deployment", "d"), &meta(&[], Some(FOREGROUND)));
        let work = g.observe(id("ReplicaSet", "a"), &meta(&[], None));
        assert_eq!(work, [Work::Delete("uid-d".into())]);
        assert!(g.node("uid-d").unwrap().dependents.is_empty());
    }

    #[test]
    fn the_orphan_finalizer_starts_orphaning_once() {
        let mut g = Graph::default();
        g.observe(id("Deployment", "d"), &meta(&[], None));
        let work = g.observe(id("Deployment", "d"), &meta(&[], Some(ORPHAN)));
        assert_eq!(work, [Work::Orphan("uid-d".into())]);
        assert!(
            g.observe(id("Deployment", "d"), &meta(&[], Some(ORPHAN)))
                .is_empty()
        );
        // Seen for the first time already orphaning (after a restart).
        let mut g = Graph::default();
        let work = g.observe(id("Deployment", "d"), &meta(&[], Some(ORPHAN)));
        assert_eq!(work, [Work::Orphan("uid-d".into())]);
    }

    #[test]
    fn a_virtual_node_found_absent_is_removed_and_its_dependents_checked() {
        let mut g = Graph::default();
        g.observe(
            id("ReplicaSet", "rs"),
            &meta(&[owner_ref("Deployment", "d", true)], None),
        );
        let work = g.remove("uid-d", true);
        assert_eq!(work, [Work::Delete("uid-rs".into())]);
        // A real node is not removed on a worker's say-so.
        g.observe(id("Deployment", "x"), &meta(&[], None));
        assert!(g.remove("uid-x", true).is_empty());
        assert!(g.node("uid-x").is_some());
    }
}
