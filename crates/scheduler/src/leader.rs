//! Leader election through a `coordination.k8s.io/v1` Lease (by default
//! `kube-system/kube-scheduler`), as client-go's `leaderelection` does it: a
//! candidate takes the Lease when it is free or its holder has not renewed
//! it within `leaseDurationSeconds` (timed on this process's own clock from
//! when it saw the Lease change), the holder renews every retry period, and
//! a holder that cannot renew within the renew deadline has lost it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// `--leader-elect-*`.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// `--leader-elect-lease-duration` (15s).
    pub lease_duration: Duration,
    /// `--leader-elect-renew-deadline` (10s).
    pub renew_deadline: Duration,
    /// `--leader-elect-retry-period` (2s).
    pub retry_period: Duration,
    /// `--leader-elect-resource-namespace` (kube-system).
    pub resource_namespace: String,
    /// `--leader-elect-resource-name` (kube-scheduler).
    pub resource_name: String,
    /// The holder identity: `<hostname>_<random>`.
    pub identity: String,
}

impl Default for LeaderElection {
    fn default() -> Self {
        LeaderElection {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            resource_namespace: "kube-system".into(),
            resource_name: "kube-scheduler".into(),
            identity: default_identity(),
        }
    }
}

/// Leader-election settings client-go refuses.
#[derive(Debug, thiserror::Error)]
pub enum LeaderConfigError {
    #[error(
        "--leader-elect-lease-duration ({0:?}) must be greater than --leader-elect-renew-deadline ({1:?})"
    )]
    LeaseTooShort(Duration, Duration),
    #[error(
        "--leader-elect-renew-deadline ({0:?}) must be greater than 1.2 × --leader-elect-retry-period ({1:?})"
    )]
    RenewDeadlineTooShort(Duration, Duration),
    #[error("the leader-election durations must be positive")]
    NotPositive,
}

impl LeaderElection {
    /// Checks what client-go's `NewLeaderElector` checks.
    pub fn validate(&self) -> Result<(), LeaderConfigError> {
        if self.lease_duration.is_zero()
            || self.renew_deadline.is_zero()
            || self.retry_period.is_zero()
        {
            return Err(LeaderConfigError::NotPositive);
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(LeaderConfigError::LeaseTooShort(
                self.lease_duration,
                self.renew_deadline,
            ));
        }
        if self.renew_deadline <= self.retry_period.mul_f64(1.2) {
            return Err(LeaderConfigError::RenewDeadlineTooShort(
                self.renew_deadline,
                self.retry_period,
            ));
        }
        Ok(())
    }
}

/// `<hostname>_<random hex>`.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}_{:032x}", rand::random::<u128>())
}

/// Parses a Go duration (`15s`, `1m30s`, `500ms`, `2h`).
pub use skiff_api_types::duration::parse_flag_duration as parse_go_duration;

/// One candidate for the Lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaderElection,
    /// The Lease as last seen, and when it last changed.
    observed: Option<(Lease, Instant)>,
}

fn holder(lease: &Lease) -> &str {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .unwrap_or("")
}

impl Elector {
    pub fn new(client: Client, config: LeaderElection) -> Elector {
        Elector {
            api: Api::namespaced(client, &config.resource_namespace),
            config,
            observed: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    fn seconds(&self) -> i32 {
        self.config
            .lease_duration
            .as_secs()
            .clamp(1, i32::MAX as u64) as i32
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&mut self) {
        info!(lease = %format!("{}/{}", self.config.resource_namespace, self.config.resource_name),
            identity = %self.config.identity, "attempting to acquire the leader lease");
        loop {
            if self.try_acquire_or_renew().await {
                info!(identity = %self.config.identity, "acquired the leader lease");
                return;
            }
            let jitter = self
                .config
                .retry_period
                .mul_f64(rand::random::<f64>() * 1.2);
            tokio::time::sleep(self.config.retry_period + jitter).await;
        }
    }

    /// Renews until a renewal does not succeed within the renew deadline.
    pub async fn hold(&mut self) {
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let deadline = Instant::now() + self.config.renew_deadline;
            loop {
                if tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await == Ok(true)
                {
                    break;
                }
                let now = Instant::now();
                if now >= deadline {
                    return;
                }
                tokio::time::sleep_until((now + self.config.retry_period).min(deadline)).await;
            }
        }
    }

    /// Gives the Lease up on a clean shutdown.
    pub async fn release(&mut self) {
        let Some((lease, _)) = self.observed.take() else {
            return;
        };
        if holder(&lease) != self.config.identity {
            return;
        }
        let mut lease = lease;
        let now = MicroTime(Timestamp::now());
        let transitions = lease.spec.as_ref().and_then(|s| s.lease_transitions);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(String::new()),
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: transitions,
            ..LeaseSpec::default()
        });
        if let Err(e) = self
            .api
            .replace(&self.config.resource_name, &PostParams::default(), &lease)
            .await
        {
            warn!(error = %e, "could not release the leader lease");
        }
    }

    async fn try_acquire_or_renew(&mut self) -> bool {
        let name = self.config.resource_name.clone();
        let me = self.config.identity.clone();
        let now = MicroTime(Timestamp::now());
        let current = match self.api.get_opt(&name).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "reading the leader lease");
                return false;
            }
        };
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name),
                    namespace: Some(self.config.resource_namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(self.seconds()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(l) => {
                    self.observed = Some((l, Instant::now()));
                    true
                }
                Err(e) => {
                    debug!(error = %e, "creating the leader lease");
                    false
                }
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|(o, _)| o.spec.clone().unwrap_or_default() != spec);
        if changed {
            self.observed = Some((lease.clone(), Instant::now()));
        }
        let seen_at = self
            .observed
            .as_ref()
            .map(|(_, at)| *at)
            .unwrap_or_else(Instant::now);
        let current_holder = spec.holder_identity.clone().unwrap_or_default();
        let mine = current_holder == me;
        if !current_holder.is_empty() && !mine {
            let theirs =
                Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
            if seen_at + theirs > Instant::now() {
                return false;
            }
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(me),
            lease_duration_seconds: Some(self.seconds()),
            acquire_time: if mine {
                spec.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if mine { transitions } else { transitions + 1 }),
            ..spec
        });
        match self
            .api
            .replace(&name, &PostParams::default(), &lease)
            .await
        {
            Ok(l) => {
                self.observed = Some((l, Instant::now()));
                true
            }
            Err(e) => {
                debug!(error = %e, "writing the leader lease");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_go_duration("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_go_duration("15").is_err());
        assert!(parse_go_duration("3d").is_err());
    }

    #[test]
    fn durations_client_go_refuses_are_refused() {
        let mut le = LeaderElection::default();
        assert!(le.validate().is_ok());
        le.renew_deadline = Duration::from_secs(15);
        assert!(le.validate().is_err());
        le.renew_deadline = Duration::from_millis(2400);
        assert!(le.validate().is_err());
    }
}
