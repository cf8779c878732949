//! One pass over a Deployment and its (claimed) ReplicaSets, as upstream's
//! `syncDeployment`: status only while it is deleted, scaling when paused
//! or resized, else a RollingUpdate or Recreate step, then the status with
//! the Progressing and Available conditions. Every write goes through
//! [`Writes`], so the rollout logic runs against a fake in tests.

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use tracing::info;

use super::util::{self, reason};
use crate::pods;

/// What a pass writes.
#[async_trait]
pub(crate) trait Writes: Send + Sync {
    /// Replaces a ReplicaSet (pinned to its resourceVersion).
    async fn update_rs(&self, rs: &ReplicaSet) -> Result<ReplicaSet, kube::Error>;
    async fn create_rs(&self, rs: &ReplicaSet) -> Result<ReplicaSet, kube::Error>;
    /// The cached ReplicaSet `name` of the Deployment's namespace.
    fn cached_rs(&self, namespace: &str, name: &str) -> Option<ReplicaSet>;
    async fn delete_rs(&self, namespace: &str, name: &str) -> Result<(), kube::Error>;
    /// Writes `d.status` (pinned to its resourceVersion); answers the new
    /// resourceVersion.
    async fn update_status(&self, d: &Deployment) -> Result<Option<String>, kube::Error>;
    /// Writes the Deployment's revision annotation; answers the new
    /// resourceVersion.
    async fn set_revision(
        &self,
        d: &Deployment,
        revision: &str,
    ) -> Result<Option<String>, kube::Error>;
}

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("scaling ReplicaSet {name}")]
    Scale {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("creating ReplicaSet {name}")]
    Create {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("hash collision for ReplicaSet {name}; collisionCount raised, retrying")]
    Collision { name: String },
    #[error("deleting old ReplicaSet {name}")]
    Delete {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating the Deployment's status")]
    Status(#[source] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

/// One pass: the Deployment as it is being changed (a copy of the cached
/// one, as upstream mutates its deep copy), its ReplicaSets, and the clock.
pub(crate) struct Pass<'a, W: Writes> {
    pub w: &'a W,
    pub d: Deployment,
    pub rss: Vec<ReplicaSet>,
    /// Pods of the Deployment's ReplicaSets, by ReplicaSet UID (Recreate
    /// waits until the old ones are gone).
    pub pods: Vec<(String, Vec<std::sync::Arc<Pod>>)>,
    pub now: Timestamp,
    /// When to look again to check progress against the deadline.
    pub requeue: Option<Duration>,
}

impl<'a, W: Writes> Pass<'a, W> {
    fn name(&self) -> String {
        self.d.name_any()
    }

    fn namespace(&self) -> String {
        self.d.namespace().unwrap_or_default()
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.rss
            .iter()
            .position(|rs| rs.metadata.name.as_deref() == Some(name))
    }

    /// The new ReplicaSet's name and the old ones' (upstream's
    /// `FindNewReplicaSet` / `FindOldReplicaSets`).
    fn split(&self) -> (Option<String>, Vec<String>) {
        let template = self
            .d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let mut sorted: Vec<&ReplicaSet> = self.rss.iter().collect();
        sorted.sort_by(|a, b| util::by_creation(a, b));
        let new = sorted
            .iter()
            .find(|rs| {
                rs.spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| util::equal_ignore_hash(t, &template))
            })
            .map(|rs| rs.name_any());
        let old = sorted
            .iter()
            .map(|rs| rs.name_any())
            .filter(|n| Some(n) != new.as_ref())
            .collect();
        (new, old)
    }

    fn get(&self, name: &str) -> &ReplicaSet {
        &self.rss[self.index_of(name).expect("a known ReplicaSet")]
    }

    fn refs(&self, names: &[String]) -> Vec<&ReplicaSet> {
        names.iter().map(|n| self.get(n)).collect()
    }

    fn put(&mut self, rs: ReplicaSet) {
        match self.index_of(&rs.name_any()) {
            Some(i) => self.rss[i] = rs,
            None => self.rss.push(rs),
        }
    }

    /// Runs the pass (upstream's `syncDeployment` after claiming).
    pub async fn run(&mut self) -> Result<(), Error> {
        if self.d.metadata.deletion_timestamp.is_some() {
            return self.sync_status_only().await;
        }
        self.check_paused_conditions().await?;
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused || self.is_scaling_event().await? {
            return self.sync().await;
        }
        if util::is_recreate(&self.d) {
            self.rollout_recreate().await
        } else {
            self.rollout_rolling().await
        }
    }

    async fn sync_status_only(&mut self) -> Result<(), Error> {
        let (new, old) = self.new_and_old(false).await?;
        self.sync_status(new, old).await
    }

    async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if !util::has_progress_deadline(&self.d) {
            return Ok(());
        }
        let status = self.d.status.clone().unwrap_or_default();
        let cond = util::get_condition(&status, "Progressing");
        if cond.is_some_and(|c| c.reason.as_deref() == Some(reason::TIMED_OUT)) {
            return Ok(());
        }
        let paused_cond = cond.is_some_and(|c| c.reason.as_deref() == Some(reason::PAUSED));
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let condition = if paused && !paused_cond {
            util::new_condition(
                "Progressing",
                "Unknown",
                reason::PAUSED,
                "Deployment is paused".into(),
                self.now,
            )
        } else if !paused && paused_cond {
            util::new_condition(
                "Progressing",
                "Unknown",
                reason::RESUMED,
                "Deployment is resumed".into(),
                self.now,
            )
        } else {
            return Ok(());
        };
        let mut status = status;
        util::set_condition(&mut status, condition);
        self.d.status = Some(status);
        self.write_status().await
    }

    /// A resize: an active ReplicaSet sized for other desired replicas.
    async fn is_scaling_event(&mut self) -> Result<bool, Error> {
        let (new, old) = self.new_and_old(false).await?;
        let want = util::replicas(&self.d);
        let all: Vec<String> = old.into_iter().chain(new).collect();
        Ok(self.refs(&all).into_iter().any(|rs| {
            util::rs_replicas(rs) > 0
                && util::desired_replicas_annotation(rs).is_some_and(|desired| desired != want)
        }))
    }

    async fn write_status(&mut self) -> Result<(), Error> {
        let rv = self.w.update_status(&self.d).await.map_err(Error::Status)?;
        if rv.is_some() {
            self.d.metadata.resource_version = rv;
        }
        Ok(())
    }

    /// Finds (and with `create`, creates) the new ReplicaSet and syncs its
    /// annotations and the Deployment's revision (upstream's
    /// `getAllReplicaSetsAndSyncRevision`).
    async fn new_and_old(&mut self, create: bool) -> Result<(Option<String>, Vec<String>), Error> {
        let (existing, old) = self.split();
        let new_revision = util::max_revision(&self.refs(&old)) + 1;
        if let Some(name) = existing {
            let mut rs = self.get(&name).clone();
            let annotations_changed =
                util::set_new_rs_annotations(&self.d, &mut rs, new_revision, true);
            let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if annotations_changed || min_ready.unwrap_or(0) != rs_min_ready.unwrap_or(0) {
                rs.spec
                    .get_or_insert_with(Default::default)
                    .min_ready_seconds = min_ready;
                let updated = self.w.update_rs(&rs).await.map_err(|source| Error::Scale {
                    name: name.clone(),
                    source,
                })?;
                self.put(updated);
                return Ok((Some(name), old));
            }
            let revision = util::revision(&rs).to_string();
            self.sync_revision(&revision).await?;
            let status = self.d.status.clone().unwrap_or_default();
            if util::has_progress_deadline(&self.d)
                && util::get_condition(&status, "Progressing").is_none()
            {
                let mut status = status;
                util::set_condition(
                    &mut status,
                    util::new_condition(
                        "Progressing",
                        "True",
                        reason::FOUND_NEW_RS,
                        format!("Found new replica set {name:?}"),
                        self.now,
                    ),
                );
                self.d.status = Some(status);
                self.write_status().await?;
            }
            return Ok((Some(name), old));
        }
        if !create {
            return Ok((None, old));
        }
        let created = self.create_new_rs(new_revision, &old).await?;
        Ok((Some(created), old))
    }

    /// Sets the Deployment's revision annotation if it differs.
    async fn sync_revision(&mut self, revision: &str) -> Result<bool, Error> {
        if !util::set_deployment_revision(&mut self.d, revision) {
            return Ok(false);
        }
        let rv = self
            .w
            .set_revision(&self.d, revision)
            .await
            .map_err(Error::Status)?;
        if rv.is_some() {
            self.d.metadata.resource_version = rv;
        }
        Ok(true)
    }

    async fn create_new_rs(&mut self, new_revision: i64, old: &[String]) -> Result<String, Error> {
        let spec = self.d.spec.clone().unwrap_or_default();
        let mut template = spec.template.clone();
        let collision = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = util::compute_hash(&template, collision);
        let name = format!("{}-{hash}", self.name());
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(util::HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(util::HASH_LABEL.into(), hash.clone());
        let mut rs = ReplicaSet {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.namespace()),
                owner_references: Some(vec![pods::controller_ref(
                    "apps/v1",
                    "Deployment",
                    &self.d.metadata,
                )]),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let mut all = self.refs(old);
        all.push(&rs);
        let count = util::new_rs_new_replicas(&self.d, &all, &rs).map_err(Error::Invalid)?;
        util::set_rs_replicas(&mut rs, count);
        util::set_new_rs_annotations(&self.d, &mut rs, new_revision, false);
        let (created, already_existed) = match self.w.create_rs(&rs).await {
            Ok(created) => (created, false),
            Err(e) if crate::framework::is_already_exists(&e) => {
                let Some(existing) = self.w.cached_rs(&self.namespace(), &name) else {
                    return Err(Error::Create { name, source: e });
                };
                let ours = pods::controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| util::equal_ignore_hash(t, &spec.template));
                if !(ours && same) {
                    let mut status = self.d.status.clone().unwrap_or_default();
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    self.d.status = Some(status);
                    self.write_status().await?;
                    return Err(Error::Collision { name });
                }
                (existing, true)
            }
            Err(e) if crate::framework::is_namespace_terminating(&e) => {
                return Err(Error::Create { name, source: e });
            }
            Err(source) => {
                if util::has_progress_deadline(&self.d) {
                    let mut status = self.d.status.clone().unwrap_or_default();
                    util::set_condition(
                        &mut status,
                        util::new_condition(
                            "Progressing",
                            "False",
                            reason::FAILED_RS_CREATE,
                            format!("Failed to create new replica set {name:?}: {source}"),
                            self.now,
                        ),
                    );
                    self.d.status = Some(status);
                    let _ = self.write_status().await;
                }
                return Err(Error::Create { name, source });
            }
        };
        if !already_existed {
            info!(deployment = %self.name(), replicaset = %name, replicas = count, "created new ReplicaSet");
        }
        self.put(created);
        self.sync_revision(&new_revision.to_string()).await?;
        if !already_existed && util::has_progress_deadline(&self.d) {
            let mut status = self.d.status.clone().unwrap_or_default();
            util::set_condition(
                &mut status,
                util::new_condition(
                    "Progressing",
                    "True",
                    reason::NEW_RS_CREATED,
                    format!("Created new replica set {name:?}"),
                    self.now,
                ),
            );
            self.d.status = Some(status);
            self.write_status().await?;
        }
        Ok(name)
    }

    /// Scales `name` to `to` if that is a change (upstream's
    /// `scaleReplicaSetAndRecordEvent`); answers whether it was.
    async fn scale_rs(&mut self, name: &str, to: i32) -> Result<bool, Error> {
        if util::rs_replicas(self.get(name)) == to {
            return Ok(false);
        }
        self.scale_rs_and_annotations(name, to).await
    }

    /// Scales `name` to `to` and refreshes its replica annotations, writing
    /// if either changes (upstream's `scaleReplicaSet`); answers whether
    /// the size changed.
    async fn scale_rs_and_annotations(&mut self, name: &str, to: i32) -> Result<bool, Error> {
        let rs = self.get(name);
        let desired = util::replicas(&self.d);
        let max = desired + util::max_surge(&self.d);
        let from = util::rs_replicas(rs);
        let resize = from != to;
        if !resize && !util::replicas_annotations_need_update(rs, desired, max) {
            return Ok(false);
        }
        let mut copy = rs.clone();
        util::set_rs_replicas(&mut copy, to);
        util::set_replicas_annotations(&mut copy, desired, max);
        let updated = self
            .w
            .update_rs(&copy)
            .await
            .map_err(|source| Error::Scale {
                name: name.to_owned(),
                source,
            })?;
        if resize {
            let direction = if from < to { "up" } else { "down" };
            info!(deployment = %self.name(), replicaset = name, from, to, "Scaled {direction} replica set");
        }
        self.put(updated);
        Ok(resize)
    }

    /// Upstream's `scale`: a resize shared out among the active
    /// ReplicaSets.
    async fn scale(&mut self, new: Option<String>, old: Vec<String>) -> Result<(), Error> {
        let want = util::replicas(&self.d);
        let new_ref = new.as_deref().map(|n| self.get(n));
        let target = util::find_active_or_latest(new_ref, &self.refs(&old)).map(|rs| rs.name_any());
        if let Some(target) = target {
            if util::rs_replicas(self.get(&target)) == want {
                return Ok(());
            }
            self.scale_rs(&target, want).await?;
            return Ok(());
        }
        if util::is_saturated(&self.d, new_ref) {
            for name in old {
                if util::rs_replicas(self.get(&name)) > 0 {
                    self.scale_rs(&name, 0).await?;
                }
            }
            return Ok(());
        }
        if !util::is_rolling(&self.d) {
            return Ok(());
        }
        let mut active: Vec<String> = old
            .iter()
            .chain(new.iter())
            .filter(|n| util::rs_replicas(self.get(n)) > 0)
            .cloned()
            .collect();
        let total = util::replica_count(&self.refs(&active));
        let allowed = if want > 0 {
            want + util::max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - total;
        if to_add > 0 {
            active.sort_by(|a, b| util::by_size_newer(self.get(a), self.get(b)));
        } else if to_add < 0 {
            active.sort_by(|a, b| util::by_size_older(self.get(a), self.get(b)));
        }
        let mut added = 0;
        let mut sizes = Vec::new();
        for name in &active {
            let rs = self.get(name);
            if to_add != 0 {
                let p = util::proportion(rs, &self.d, to_add, added);
                sizes.push(util::rs_replicas(rs) + p);
                added += p;
            } else {
                sizes.push(util::rs_replicas(rs));
            }
        }
        for (i, name) in active.iter().enumerate() {
            if i == 0 && to_add != 0 {
                sizes[0] = (sizes[0] + to_add - added).max(0);
            }
            self.scale_rs_and_annotations(name, sizes[i]).await?;
        }
        Ok(())
    }

    /// Upstream's `sync`: scale, clean up when paused, status.
    async fn sync(&mut self) -> Result<(), Error> {
        let (new, old) = self.new_and_old(false).await?;
        self.scale(new.clone(), old.clone()).await?;
        if self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false) {
            self.cleanup(&old).await?;
        }
        self.sync_status(new, old).await
    }

    fn status_for(&self, new: &Option<String>, old: &[String]) -> DeploymentStatus {
        let mut all = self.refs(old);
        let new_ref = new.as_deref().map(|n| self.get(n));
        all.extend(new_ref);
        util::calculate_status(&all, new_ref, &self.d, self.now)
    }

    /// Writes the status if it changed (upstream's `syncDeploymentStatus`).
    async fn sync_status(&mut self, new: Option<String>, old: Vec<String>) -> Result<(), Error> {
        let status = self.status_for(&new, &old);
        if self.d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        self.d.status = Some(status);
        self.write_status().await
    }

    /// Deletes the oldest ReplicaSets beyond revisionHistoryLimit that have
    /// no pods.
    async fn cleanup(&mut self, old: &[String]) -> Result<(), Error> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> = self
            .refs(old)
            .into_iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let diff = cleanable.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| util::by_revision(a, b));
        let doomed: Vec<String> = cleanable
            .into_iter()
            .take(diff as usize)
            .filter(|rs| {
                util::rs_actual(rs) == 0
                    && util::rs_replicas(rs) == 0
                    && rs.metadata.generation.unwrap_or(0)
                        <= rs
                            .status
                            .as_ref()
                            .and_then(|s| s.observed_generation)
                            .unwrap_or(0)
            })
            .map(|rs| rs.name_any())
            .collect();
        for name in doomed {
            match self.w.delete_rs(&self.namespace(), &name).await {
                Ok(()) => {
                    info!(deployment = %self.name(), replicaset = %name, "deleted old ReplicaSet beyond the revision history limit")
                }
                Err(e) if crate::framework::is_not_found(&e) => {}
                Err(source) => return Err(Error::Delete { name, source }),
            }
        }
        Ok(())
    }

    async fn rollout_rolling(&mut self) -> Result<(), Error> {
        let (new, old) = self.new_and_old(true).await?;
        let new_name = new.clone().expect("created when missing");
        if self.reconcile_new_rs(&new_name, &old).await? {
            return self.sync_rollout_status(new, old).await;
        }
        if self.reconcile_old_rss(&new_name, &old).await? {
            return self.sync_rollout_status(new, old).await;
        }
        let status = self.d.status.clone().unwrap_or_default();
        if util::deployment_complete(&self.d, &status) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(new, old).await
    }

    async fn reconcile_new_rs(&mut self, new: &str, old: &[String]) -> Result<bool, Error> {
        let want = util::replicas(&self.d);
        let current = util::rs_replicas(self.get(new));
        if current == want {
            return Ok(false);
        }
        if current > want {
            return self.scale_rs(new, want).await;
        }
        let mut all = self.refs(old);
        all.push(self.get(new));
        let count =
            util::new_rs_new_replicas(&self.d, &all, self.get(new)).map_err(Error::Invalid)?;
        self.scale_rs(new, count).await
    }

    async fn reconcile_old_rss(&mut self, new: &str, old: &[String]) -> Result<bool, Error> {
        let mut old_active: Vec<String> = old
            .iter()
            .filter(|n| util::rs_replicas(self.get(n)) > 0)
            .cloned()
            .collect();
        if util::replica_count(&self.refs(&old_active)) == 0 {
            return Ok(false);
        }
        let mut all = self.refs(old);
        all.push(self.get(new));
        let all_pods = util::replica_count(&all);
        let max_unavailable = util::max_unavailable(&self.d);
        let min_available = util::replicas(&self.d) - max_unavailable;
        let new_rs = self.get(new);
        let new_unavailable = util::rs_replicas(new_rs) - util::rs_available(new_rs);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        // Unhealthy replicas first: removing them costs no availability.
        old_active.sort_by(|a, b| util::by_creation(self.get(a), self.get(b)));
        let mut cleaned = 0;
        for name in &old_active {
            if cleaned >= max_scaled_down {
                break;
            }
            let rs = self.get(name);
            let (replicas, available) = (util::rs_replicas(rs), util::rs_available(rs));
            // A status written before the last scale-down can count more
            // available pods than the spec now wants: nothing is unhealthy
            // then, and "removing" a negative number would scale it up.
            if replicas == 0 || available >= replicas {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(replicas - available);
            // Upstream returns no error here: the next pass retries.
            if self.scale_rs(name, replicas - down).await.is_err() {
                return Ok(false);
            }
            cleaned += down;
        }
        let scaled = match self.scale_down_old_for_rolling(new, &old_active).await {
            Ok(n) => n,
            Err(_) => return Ok(false),
        };
        Ok(cleaned + scaled > 0)
    }

    async fn scale_down_old_for_rolling(
        &mut self,
        new: &str,
        old: &[String],
    ) -> Result<i32, Error> {
        let min_available = util::replicas(&self.d) - util::max_unavailable(&self.d);
        let mut all = self.refs(old);
        all.push(self.get(new));
        let available = util::available_count(&all);
        if available <= min_available {
            return Ok(0);
        }
        let mut sorted = old.to_vec();
        sorted.sort_by(|a, b| util::by_creation(self.get(a), self.get(b)));
        let total = available - min_available;
        let mut done = 0;
        for name in sorted {
            if done >= total {
                break;
            }
            let replicas = util::rs_replicas(self.get(&name));
            if replicas == 0 {
                continue;
            }
            let down = replicas.min(total - done);
            self.scale_rs(&name, replicas - down).await?;
            done += down;
        }
        Ok(done)
    }

    /// Whether pods of old ReplicaSets still run (Recreate waits for them).
    fn old_pods_running(&self, new: Option<&str>, old: &[String]) -> bool {
        if util::actual_count(&self.refs(old)) > 0 {
            return true;
        }
        let new_uid = new.and_then(|n| self.get(n).metadata.uid.clone());
        self.pods
            .iter()
            .filter(|(uid, _)| Some(uid) != new_uid.as_ref())
            .flat_map(|(_, pods)| pods)
            .any(|p| !matches!(pods::phase(p), "Succeeded" | "Failed"))
    }

    async fn rollout_recreate(&mut self) -> Result<(), Error> {
        let (mut new, mut old) = self.new_and_old(false).await?;
        let active: Vec<String> = old
            .iter()
            .filter(|n| util::rs_replicas(self.get(n)) > 0)
            .cloned()
            .collect();
        let mut scaled_down = false;
        for name in &active {
            if self.scale_rs(name, 0).await? {
                scaled_down = true;
            }
        }
        if scaled_down {
            return self.sync_rollout_status(new, old).await;
        }
        if self.old_pods_running(new.as_deref(), &old) {
            // No pod watch here: look again shortly for the last to go.
            self.requeue = Some(Duration::from_secs(1));
            return self.sync_rollout_status(new, old).await;
        }
        if new.is_none() {
            (new, old) = self.new_and_old(true).await?;
        }
        let name = new.clone().expect("created when missing");
        let want = util::replicas(&self.d);
        self.scale_rs(&name, want).await?;
        let status = self.d.status.clone().unwrap_or_default();
        if util::deployment_complete(&self.d, &status) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(new, old).await
    }

    /// Upstream's `syncRolloutStatus`: the status with the Progressing
    /// condition judged against the deadline, and ReplicaFailure carried
    /// over from the ReplicaSets.
    async fn sync_rollout_status(
        &mut self,
        new: Option<String>,
        old: Vec<String>,
    ) -> Result<(), Error> {
        let mut status = self.status_for(&new, &old);
        let has_deadline = util::has_progress_deadline(&self.d);
        if !has_deadline {
            util::remove_condition(&mut status, "Progressing");
        }
        let current_status = self.d.status.clone().unwrap_or_default();
        let current = util::get_condition(&current_status, "Progressing").cloned();
        let complete_before = status.replicas == status.updated_replicas
            && current
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some(reason::NEW_RS_AVAILABLE));
        if has_deadline && !complete_before {
            let subject = match &new {
                Some(n) => format!("ReplicaSet {n:?}"),
                None => format!("Deployment {:?}", self.name()),
            };
            if util::deployment_complete(&self.d, &status) {
                util::set_condition(
                    &mut status,
                    util::new_condition(
                        "Progressing",
                        "True",
                        reason::NEW_RS_AVAILABLE,
                        format!("{subject} has successfully progressed."),
                        self.now,
                    ),
                );
            } else if util::deployment_progressing(&self.d, &status) {
                let mut c = util::new_condition(
                    "Progressing",
                    "True",
                    reason::RS_UPDATED,
                    format!("{subject} is progressing."),
                    self.now,
                );
                if let Some(current) = &current {
                    if current.status == "True" {
                        c.last_transition_time = current.last_transition_time.clone();
                    }
                    util::remove_condition(&mut status, "Progressing");
                }
                util::set_condition(&mut status, c);
            } else if util::deployment_timed_out(&self.d, &status, self.now) {
                util::set_condition(
                    &mut status,
                    util::new_condition(
                        "Progressing",
                        "False",
                        reason::TIMED_OUT,
                        format!("{subject} has timed out progressing."),
                        self.now,
                    ),
                );
            }
        }
        let failure = self.replica_failure(&new, &old);
        match failure {
            Some(c) => util::set_condition(&mut status, c),
            None => util::remove_condition(&mut status, "ReplicaFailure"),
        }
        if self.d.status.as_ref() == Some(&status) {
            if let Some(after) = self.stuck_requeue(&status) {
                self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
            }
            return Ok(());
        }
        self.d.status = Some(status);
        self.write_status().await
    }

    fn replica_failure(
        &self,
        new: &Option<String>,
        old: &[String],
    ) -> Option<k8s_openapi::api::apps::v1::DeploymentCondition> {
        let failure_of = |rs: &ReplicaSet| {
            rs.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "ReplicaFailure"))
                .map(util::from_rs_condition)
        };
        new.as_deref()
            .and_then(|n| failure_of(self.get(n)))
            .or_else(|| self.refs(old).into_iter().find_map(failure_of))
    }

    /// When to check a rollout that made no progress against its deadline
    /// (upstream's `requeueStuckDeployment`).
    fn stuck_requeue(&self, status: &DeploymentStatus) -> Option<Duration> {
        let current_status = self.d.status.clone().unwrap_or_default();
        let current = util::get_condition(&current_status, "Progressing")?;
        if !util::has_progress_deadline(&self.d)
            || util::deployment_complete(&self.d, status)
            || current.reason.as_deref() == Some(reason::TIMED_OUT)
        {
            return None;
        }
        let deadline = self.d.spec.as_ref()?.progress_deadline_seconds?;
        let last = current.last_update_time.as_ref()?.0;
        let after = last.as_millisecond() + i64::from(deadline) * 1000 - self.now.as_millisecond();
        if after < 1000 {
            return Some(Duration::from_millis(100));
        }
        Some(Duration::from_millis(after as u64) + Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment,
    };
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// An API server in memory: ReplicaSets with resourceVersions, the
    /// Deployment's status and annotations.
    #[derive(Default)]
    struct Fake {
        rss: Mutex<BTreeMap<String, ReplicaSet>>,
        status: Mutex<Option<DeploymentStatus>>,
        revision: Mutex<Option<String>>,
        clock: Mutex<i64>,
        /// Every ReplicaSet write: its name and spec.replicas.
        sizes: Mutex<Vec<(String, i32)>>,
    }

    fn api_error(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(reason, reason)
                .with_code(code)
                .boxed(),
        )
    }

    impl Fake {
        fn tick(&self) -> i64 {
            let mut c = self.clock.lock().unwrap();
            *c += 1;
            *c
        }
    }

    #[async_trait]
    impl Writes for Fake {
        async fn update_rs(&self, rs: &ReplicaSet) -> Result<ReplicaSet, kube::Error> {
            let mut rss = self.rss.lock().unwrap();
            let current = rss
                .get(&rs.name_any())
                .ok_or_else(|| api_error(404, "NotFound"))?;
            if current.metadata.resource_version != rs.metadata.resource_version {
                return Err(api_error(409, "Conflict"));
            }
            self.sizes
                .lock()
                .unwrap()
                .push((rs.name_any(), util::rs_replicas(rs)));
            let mut new = rs.clone();
            new.metadata.resource_version = Some(self.tick().to_string());
            if new.spec != current.spec {
                new.metadata.generation = Some(current.metadata.generation.unwrap_or(1) + 1);
            }
            new.status = current.status.clone();
            rss.insert(new.name_any(), new.clone());
            Ok(new)
        }

        async fn create_rs(&self, rs: &ReplicaSet) -> Result<ReplicaSet, kube::Error> {
            let t = self.tick();
            let mut rss = self.rss.lock().unwrap();
            if rss.contains_key(&rs.name_any()) {
                return Err(api_error(409, "AlreadyExists"));
            }
            let mut new = rs.clone();
            new.metadata.uid = Some(format!("uid-{}", rs.name_any()));
            new.metadata.resource_version = Some(t.to_string());
            new.metadata.generation = Some(1);
            new.metadata.creation_timestamp = Some(Time(Timestamp::from_second(t).unwrap()));
            rss.insert(new.name_any(), new.clone());
            Ok(new)
        }

        fn cached_rs(&self, _: &str, name: &str) -> Option<ReplicaSet> {
            self.rss.lock().unwrap().get(name).cloned()
        }

        async fn delete_rs(&self, _: &str, name: &str) -> Result<(), kube::Error> {
            self.rss.lock().unwrap().remove(name);
            Ok(())
        }

        async fn update_status(&self, d: &Deployment) -> Result<Option<String>, kube::Error> {
            *self.status.lock().unwrap() = d.status.clone();
            Ok(None)
        }

        async fn set_revision(
            &self,
            _: &Deployment,
            revision: &str,
        ) -> Result<Option<String>, kube::Error> {
            *self.revision.lock().unwrap() = Some(revision.to_owned());
            Ok(None)
        }
    }

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": image}]},
        }))
        .unwrap()
    }

    fn deployment(replicas: i32, surge: &str, unavailable: &str, image: &str) -> Deployment {
        let intstr = |s: &str| match s.parse() {
            Ok(i) => IntOrString::Int(i),
            Err(_) => IntOrString::String(s.into()),
        };
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("d-uid".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
                    ..LabelSelector::default()
                },
                template: template(image),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(intstr(surge)),
                        max_unavailable: Some(intstr(unavailable)),
                    }),
                }),
                revision_history_limit: Some(10),
                progress_deadline_seconds: Some(600),
                ..DeploymentSpec::default()
            }),
            status: None,
        }
    }

    /// The ReplicaSet controller and kubelets, `ready_per_step` pods of
    /// each growing ReplicaSet turning available per step.
    fn run_pods(fake: &Fake, ready_per_step: i32) {
        let mut rss = fake.rss.lock().unwrap();
        for rs in rss.values_mut() {
            let want = util::rs_replicas(rs);
            let s = rs.status.get_or_insert_with(ReplicaSetStatus::default);
            let available = s.available_replicas.unwrap_or(0);
            let available = if available >= want {
                want
            } else {
                (available + ready_per_step).min(want)
            };
            s.replicas = want;
            s.ready_replicas = Some(available);
            s.available_replicas = Some(available);
            s.observed_generation = rs.metadata.generation;
        }
    }

    /// Passes (each followed by the pods moving) until nothing changes,
    /// checking the rollout's bounds after every write.
    async fn settle(fake: &Fake, d: &mut Deployment, ready_per_step: i32) {
        let desired = util::replicas(d);
        let surge = util::max_surge(d);
        for step in 1.. {
            assert!(step < 100, "no convergence");
            d.status = fake.status.lock().unwrap().clone();
            if let Some(r) = fake.revision.lock().unwrap().clone() {
                util::set_deployment_revision(d, &r);
            }
            let before: Vec<ReplicaSet> = fake.rss.lock().unwrap().values().cloned().collect();
            let status_before = d.status.clone();
            let mut pass = Pass {
                w: fake,
                d: d.clone(),
                rss: before.clone(),
                pods: Vec::new(),
                now: Timestamp::from_second(1_000_000 + step).unwrap(),
                requeue: None,
            };
            pass.run().await.unwrap();
            let total: i32 = fake
                .rss
                .lock()
                .unwrap()
                .values()
                .map(util::rs_replicas)
                .sum();
            assert!(
                total <= desired + surge,
                "{total} replicas exceed {desired}+{surge}"
            );
            run_pods(fake, ready_per_step);
            let after: Vec<ReplicaSet> = fake.rss.lock().unwrap().values().cloned().collect();
            if after == before && *fake.status.lock().unwrap() == status_before {
                return;
            }
        }
    }

    fn available_floor_holds(fake: &Fake, floor: i32) -> bool {
        let rss = fake.rss.lock().unwrap();
        rss.values().map(util::rs_available).sum::<i32>() >= floor
    }

    #[tokio::test]
    async fn a_new_deployment_creates_one_replica_set_and_completes() {
        let fake = Fake::default();
        let mut d = deployment(3, "25%", "25%", "nginx:1");
        settle(&fake, &mut d, 3).await;
        let rss = fake.rss.lock().unwrap().clone();
        assert_eq!(rss.len(), 1);
        let (name, rs) = rss.into_iter().next().unwrap();
        let hash = util::compute_hash(&template("nginx:1"), None);
        assert_eq!(name, format!("web-{hash}"));
        assert_eq!(rs.metadata.labels.as_ref().unwrap()[util::HASH_LABEL], hash);
        assert_eq!(
            rs.spec
                .as_ref()
                .unwrap()
                .selector
                .match_labels
                .as_ref()
                .unwrap()[util::HASH_LABEL],
            hash
        );
        let a = rs.metadata.annotations.unwrap();
        assert_eq!(a[util::REVISION], "1");
        assert_eq!(a[util::DESIRED_REPLICAS], "3");
        assert_eq!(a[util::MAX_REPLICAS], "4");
        let status = fake.status.lock().unwrap().clone().unwrap();
        assert_eq!(
            (
                status.replicas,
                status.updated_replicas,
                status.available_replicas
            ),
            (Some(3), Some(3), Some(3))
        );
        let p = util::get_condition(&status, "Progressing").unwrap();
        assert_eq!(p.reason.as_deref(), Some(reason::NEW_RS_AVAILABLE));
        assert_eq!(
            p.message.as_deref(),
            Some(format!("ReplicaSet \"web-{hash}\" has successfully progressed.").as_str())
        );
        let a = util::get_condition(&status, "Available").unwrap();
        assert_eq!(a.reason.as_deref(), Some(reason::MIN_AVAILABLE));
        assert_eq!(fake.revision.lock().unwrap().as_deref(), Some("1"));
    }

    /// An old ReplicaSet's status can still count pods a scale-down just
    /// removed; the unhealthy-replica cleanup must not read that as a
    /// negative number to remove, which would scale the old set back up
    /// (and create a pod the rollout then deletes again).
    #[tokio::test]
    async fn a_stale_old_status_never_scales_the_old_replica_set_up() {
        let fake = Fake::default();
        let mut d = deployment(12, "25%", "0", "nginx:1");
        settle(&fake, &mut d, 12).await;
        d.spec.as_mut().unwrap().template = template("nginx:2");
        d.metadata.generation = Some(2);
        let old_name = format!("web-{}", util::compute_hash(&template("nginx:1"), None));
        let new_name = format!("web-{}", util::compute_hash(&template("nginx:2"), None));
        let pass = |d: &Deployment| Pass {
            w: &fake,
            d: d.clone(),
            rss: fake.rss.lock().unwrap().values().cloned().collect(),
            pods: Vec::new(),
            now: Timestamp::from_second(2_000_000).unwrap(),
            requeue: None,
        };
        pass(&d).run().await.unwrap();
        {
            let mut rss = fake.rss.lock().unwrap();
            let old = rss.get_mut(&old_name).unwrap();
            util::set_rs_replicas(old, 4);
            let s = old.status.as_mut().unwrap();
            s.replicas = 5;
            s.ready_replicas = Some(5);
            s.available_replicas = Some(5);
            let new = rss.get_mut(&new_name).unwrap();
            util::set_rs_replicas(new, 11);
            new.status = Some(ReplicaSetStatus {
                replicas: 11,
                ready_replicas: Some(10),
                available_replicas: Some(10),
                observed_generation: new.metadata.generation,
                ..ReplicaSetStatus::default()
            });
        }
        d.status = fake.status.lock().unwrap().clone();
        fake.sizes.lock().unwrap().clear();
        pass(&d).run().await.unwrap();
        let sizes: Vec<i32> = fake
            .sizes
            .lock()
            .unwrap()
            .iter()
            .filter(|(name, _)| *name == old_name)
            .map(|(_, n)| *n)
            .collect();
        assert!(!sizes.is_empty(), "the old ReplicaSet is scaled down");
        assert!(
            sizes.iter().all(|n| *n < 4),
            "the old ReplicaSet went 4 → {sizes:?}"
        );
    }

    #[tokio::test]
    async fn a_rolling_update_stays_within_max_surge_and_max_unavailable() {
        for (replicas, surge, unavailable) in [
            (10, "25%", "25%"),
            (5, "1", "0"),
            (5, "0", "1"),
            (4, "50%", "50%"),
            (3, "25%", "25%"),
        ] {
            let fake = Fake::default();
            let mut d = deployment(replicas, surge, unavailable, "nginx:1");
            settle(&fake, &mut d, replicas).await;
            let floor = replicas - util::max_unavailable(&d);
            d.spec.as_mut().unwrap().template = template("nginx:2");
            d.metadata.generation = Some(2);
            // Step by step, pods turning available one at a time.
            let mut steps = 0;
            loop {
                steps += 1;
                assert!(steps < 200);
                d.status = fake.status.lock().unwrap().clone();
                let rss: Vec<ReplicaSet> = fake.rss.lock().unwrap().values().cloned().collect();
                let mut pass = Pass {
                    w: &fake,
                    d: d.clone(),
                    rss: rss.clone(),
                    pods: Vec::new(),
                    now: Timestamp::from_second(2_000_000 + steps).unwrap(),
                    requeue: None,
                };
                pass.run().await.unwrap();
                let after: Vec<ReplicaSet> = fake.rss.lock().unwrap().values().cloned().collect();
                let total: i32 = after.iter().map(util::rs_replicas).sum();
                assert!(
                    total <= replicas + util::max_surge(&d),
                    "{replicas}/{surge}/{unavailable}: {total} replicas"
                );
                run_pods(&fake, 1);
                assert!(
                    available_floor_holds(&fake, floor),
                    "{replicas}/{surge}/{unavailable}: below {floor} available"
                );
                let status = fake.status.lock().unwrap().clone().unwrap();
                if util::deployment_complete(&d, &status)
                    && after.len() == 2
                    && after.iter().filter(|rs| util::rs_replicas(rs) == 0).count() == 1
                {
                    break;
                }
            }
            let rss = fake.rss.lock().unwrap().clone();
            let new = rss
                .values()
                .find(|rs| util::revision(rs) == 2)
                .expect("revision 2");
            assert_eq!(util::rs_replicas(new), replicas);
        }
    }

    #[tokio::test]
    async fn rolling_back_reuses_the_old_replica_set_with_a_new_revision() {
        let fake = Fake::default();
        let mut d = deployment(2, "1", "0", "nginx:1");
        settle(&fake, &mut d, 2).await;
        d.spec.as_mut().unwrap().template = template("nginx:2");
        settle(&fake, &mut d, 2).await;
        // `kubectl rollout undo`: the template of revision 1 is put back.
        d.spec.as_mut().unwrap().template = template("nginx:1");
        settle(&fake, &mut d, 2).await;
        let rss = fake.rss.lock().unwrap().clone();
        assert_eq!(rss.len(), 2, "no third ReplicaSet");
        let back = rss
            .values()
            .find(|rs| {
                util::equal_ignore_hash(
                    rs.spec.as_ref().unwrap().template.as_ref().unwrap(),
                    &template("nginx:1"),
                )
            })
            .unwrap();
        let a = back.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[util::REVISION], "3");
        assert_eq!(a[util::REVISION_HISTORY], "1");
        assert_eq!(util::rs_replicas(back), 2);
        assert_eq!(fake.revision.lock().unwrap().as_deref(), Some("3"));
    }

    #[tokio::test]
    async fn scaling_mid_rollout_shares_replicas_proportionally() {
        let fake = Fake::default();
        let mut d = deployment(10, "3", "2", "nginx:1");
        settle(&fake, &mut d, 10).await;
        d.spec.as_mut().unwrap().template = template("nginx:2");
        // One pass: the new ReplicaSet surges to 3, old goes down to 8.
        for _ in 0..2 {
            d.status = fake.status.lock().unwrap().clone();
            let rss: Vec<ReplicaSet> = fake.rss.lock().unwrap().values().cloned().collect();
            let mut pass = Pass {
                w: &fake,
                d: d.clone(),
                rss,
                pods: Vec::new(),
                now: Timestamp::UNIX_EPOCH,
                requeue: None,
            };
            pass.run().await.unwrap();
            let mut rss = fake.rss.lock().unwrap();
            for rs in rss.values_mut() {
                // Pods exist but none of the new are available.
                let want = util::rs_replicas(rs);
                let s = rs.status.get_or_insert_with(Default::default);
                s.replicas = want;
                s.observed_generation = rs.metadata.generation;
                s.available_replicas = Some(s.available_replicas.unwrap_or(0).min(s.replicas));
            }
        }
        let sizes = |fake: &Fake| {
            let rss = fake.rss.lock().unwrap();
            let mut v: Vec<(i64, i32)> = rss
                .values()
                .map(|rs| (util::revision(rs), util::rs_replicas(rs)))
                .collect();
            v.sort();
            v
        };
        assert_eq!(sizes(&fake), [(1, 8), (2, 5)]);
        // Scaled to 20 mid-rollout: 23 allowed, 10 more shared 8:5 against
        // the 13 they were sized for: 8*23/13 = 14.2, 5*23/13 = 8.8.
        d.spec.as_mut().unwrap().replicas = Some(20);
        d.status = fake.status.lock().unwrap().clone();
        let rss: Vec<ReplicaSet> = fake.rss.lock().unwrap().values().cloned().collect();
        let mut pass = Pass {
            w: &fake,
            d: d.clone(),
            rss,
            pods: Vec::new(),
            now: Timestamp::UNIX_EPOCH,
            requeue: None,
        };
        pass.run().await.unwrap();
        assert_eq!(sizes(&fake), [(1, 14), (2, 9)]);
    }

    #[tokio::test]
    async fn old_replica_sets_beyond_the_history_limit_are_deleted() {
        let fake = Fake::default();
        let mut d = deployment(1, "1", "0", "v0");
        d.spec.as_mut().unwrap().revision_history_limit = Some(2);
        for v in ["v1", "v2", "v3", "v4"] {
            d.spec.as_mut().unwrap().template = template(v);
            settle(&fake, &mut d, 1).await;
        }
        let mut revisions: Vec<i64> = fake
            .rss
            .lock()
            .unwrap()
            .values()
            .map(util::revision)
            .collect();
        revisions.sort();
        assert_eq!(
            revisions,
            [2, 3, 4],
            "the new one and the two latest old ones"
        );
    }

    #[tokio::test]
    async fn recreate_scales_the_old_down_before_creating_the_new() {
        let fake = Fake::default();
        let mut d = deployment(3, "1", "0", "v1");
        d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        });
        settle(&fake, &mut d, 3).await;
        d.spec.as_mut().unwrap().template = template("v2");
        d.status = fake.status.lock().unwrap().clone();
        let rss: Vec<ReplicaSet> = fake.rss.lock().unwrap().values().cloned().collect();
        let mut pass = Pass {
            w: &fake,
            d: d.clone(),
            rss,
            pods: Vec::new(),
            now: Timestamp::UNIX_EPOCH,
            requeue: None,
        };
        pass.run().await.unwrap();
        {
            let rss = fake.rss.lock().unwrap();
            assert_eq!(rss.len(), 1, "no new ReplicaSet while old pods run");
            assert_eq!(util::rs_replicas(rss.values().next().unwrap()), 0);
        }
        settle(&fake, &mut d, 3).await;
        let rss = fake.rss.lock().unwrap();
        let new = rss.values().find(|rs| util::revision(rs) == 2).unwrap();
        assert_eq!(util::rs_replicas(new), 3);
    }

    #[tokio::test]
    async fn a_paused_deployment_is_only_scaled() {
        let fake = Fake::default();
        let mut d = deployment(2, "1", "0", "v1");
        settle(&fake, &mut d, 2).await;
        d.spec.as_mut().unwrap().paused = Some(true);
        d.spec.as_mut().unwrap().template = template("v2");
        d.spec.as_mut().unwrap().replicas = Some(4);
        settle(&fake, &mut d, 4).await;
        let rss = fake.rss.lock().unwrap().clone();
        assert_eq!(rss.len(), 1, "no rollout while paused");
        assert_eq!(util::rs_replicas(rss.values().next().unwrap()), 4);
        let status = fake.status.lock().unwrap().clone().unwrap();
        let p = util::get_condition(&status, "Progressing").unwrap();
        assert_eq!(p.reason.as_deref(), Some(reason::PAUSED));
        assert_eq!(p.status, "Unknown");
        drop(rss);
        d.spec.as_mut().unwrap().paused = Some(false);
        settle(&fake, &mut d, 4).await;
        assert_eq!(fake.rss.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn no_progress_past_the_deadline_times_out() {
        let fake = Fake::default();
        let mut d = deployment(2, "1", "0", "v1");
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(30);
        // Pods never turn available.
        for t in [0, 10, 20, 45] {
            d.status = fake.status.lock().unwrap().clone();
            let rss: Vec<ReplicaSet> = fake.rss.lock().unwrap().values().cloned().collect();
            let mut pass = Pass {
                w: &fake,
                d: d.clone(),
                rss,
                pods: Vec::new(),
                now: Timestamp::from_second(1000 + t).unwrap(),
                requeue: None,
            };
            pass.run().await.unwrap();
            run_pods(&fake, 0);
            if t == 20 {
                // Last progress at 10: checked again just after 40.
                assert_eq!(
                    pass.requeue,
                    Some(Duration::from_secs(21)),
                    "checked again at the deadline"
                );
            }
        }
        let status = fake.status.lock().unwrap().clone().unwrap();
        let p = util::get_condition(&status, "Progressing").unwrap();
        assert_eq!(
            (p.status.as_str(), p.reason.as_deref()),
            ("False", Some(reason::TIMED_OUT))
        );
    }
}
