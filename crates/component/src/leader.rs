//! Leader election through a `coordination.k8s.io/v1` Lease, as client-go's
//! `leaderelection` package does it: a candidate takes the Lease when it is
//! free or its holder has not renewed it for `leaseDurationSeconds` (timed on
//! this process's own monotonic clock from when it last saw the Lease
//! change, so clock skew between machines cannot shorten a lease), the holder
//! renews every retry period, and a holder that cannot renew within the renew
//! deadline has lost it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::jittered;

/// client-go's `JitterFactor`: a candidate waits the retry period plus up to
/// 1.2 times it between attempts.
const JITTER: f64 = 1.2;

/// `--leader-elect-*`.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// `--leader-elect-lease-duration` (15s): how long others wait after
    /// the last renewal they saw before taking the Lease.
    pub lease_duration: Duration,
    /// `--leader-elect-renew-deadline` (10s): how long the holder keeps
    /// trying to renew before it gives up leading.
    pub renew_deadline: Duration,
    /// `--leader-elect-retry-period` (2s): between attempts.
    pub retry_period: Duration,
    /// `--leader-elect-resource-namespace` (kube-system).
    pub resource_namespace: String,
    /// `--leader-elect-resource-name` (the component's: kube-scheduler,
    /// kube-controller-manager).
    pub resource_name: String,
    /// The Lease's holderIdentity for this process: `<hostname>_<uuid>`.
    pub identity: String,
}

impl LeaderElection {
    /// Upstream's defaults for the Lease `kube-system/<resource_name>`.
    pub fn for_lease(resource_name: &str) -> Self {
        LeaderElection {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            resource_namespace: "kube-system".into(),
            resource_name: resource_name.into(),
            identity: default_identity(),
        }
    }
}

/// Leader-election settings that cannot work, as client-go refuses them.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "--leader-elect-lease-duration ({lease:?}) must be greater than --leader-elect-renew-deadline ({renew:?})"
    )]
    LeaseNotLongerThanRenewDeadline { lease: Duration, renew: Duration },
    #[error(
        "--leader-elect-renew-deadline ({renew:?}) must be greater than 1.2 × --leader-elect-retry-period ({retry:?})"
    )]
    RenewDeadlineTooShort { renew: Duration, retry: Duration },
    #[error("the leader-election durations must be positive")]
    NotPositive,
    #[error("the leader-election Lease needs a namespace, a name and a holder identity")]
    Unnamed,
}

impl LeaderElection {
    /// Checks what client-go's `NewLeaderElector` checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.lease_duration.is_zero()
            || self.renew_deadline.is_zero()
            || self.retry_period.is_zero()
        {
            return Err(ConfigError::NotPositive);
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(ConfigError::LeaseNotLongerThanRenewDeadline {
                lease: self.lease_duration,
                renew: self.renew_deadline,
            });
        }
        if self.renew_deadline <= self.retry_period.mul_f64(JITTER) {
            return Err(ConfigError::RenewDeadlineTooShort {
                renew: self.renew_deadline,
                retry: self.retry_period,
            });
        }
        if self.resource_namespace.is_empty()
            || self.resource_name.is_empty()
            || self.identity.is_empty()
        {
            return Err(ConfigError::Unnamed);
        }
        Ok(())
    }
}

/// `<hostname>_<random uuid>`, as kube-controller-manager names itself.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".into());
    format!("{host}_{}", uuid_v4())
}

fn uuid_v4() -> String {
    let mut b = rand::random::<u128>().to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The Lease as this candidate last saw it, and when.
struct Observed {
    lease: Lease,
    at: Instant,
}

impl Observed {
    fn holder(&self) -> &str {
        self.lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            .unwrap_or("")
    }
}

/// One candidate for the Lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaderElection,
    observed: Option<Observed>,
}

/// The spec to write to take or renew a Lease whose spec is `current`, or
/// `None` while another holder's lease runs. `observed_at` is when this
/// candidate saw `current` change; `now` the same clock now.
pub fn next_spec(
    current: &LeaseSpec,
    observed_at: Instant,
    now: Instant,
    wall_now: Timestamp,
    identity: &str,
    lease_duration: Duration,
) -> Option<LeaseSpec> {
    let holder = current.holder_identity.as_deref().unwrap_or("");
    let mine = holder == identity;
    if !holder.is_empty() && !mine {
        let theirs = Duration::from_secs(current.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        if observed_at + theirs > now {
            return None;
        }
    }
    let transitions = current.lease_transitions.unwrap_or(0);
    let (acquire_time, lease_transitions) = if mine {
        (current.acquire_time.clone(), transitions)
    } else {
        (Some(MicroTime(wall_now)), transitions + 1)
    };
    Some(LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(lease_duration.as_secs().clamp(1, i32::MAX as u64) as i32),
        acquire_time,
        renew_time: Some(MicroTime(wall_now)),
        lease_transitions: Some(lease_transitions),
        ..LeaseSpec::default()
    })
}

impl Elector {
    pub fn new(client: Client, config: LeaderElection) -> Self {
        Elector {
            api: Api::namespaced(client, &config.resource_namespace),
            config,
            observed: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// `namespace/name` of the Lease.
    pub fn lease_name(&self) -> String {
        format!(
            "{}/{}",
            self.config.resource_namespace, self.config.resource_name
        )
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&mut self) {
        loop {
            if self.try_acquire_or_renew().await {
                return;
            }
            tokio::time::sleep(jittered(self.config.retry_period, JITTER)).await;
        }
    }

    /// Keeps the Lease renewed; returns once a renewal has not succeeded
    /// within the renew deadline: leadership is lost.
    pub async fn hold(&mut self) {
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let deadline = Instant::now() + self.config.renew_deadline;
            loop {
                let renewed = tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await;
                if renewed == Ok(true) {
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

    /// Gives the Lease up (on a clean shutdown) so another candidate need not
    /// wait for it to expire: client-go's ReleaseOnCancel.
    pub async fn release(&mut self) {
        let Some(observed) = &self.observed else {
            return;
        };
        if observed.holder() != self.config.identity {
            return;
        }
        let mut lease = observed.lease.clone();
        let old = lease.spec.take().unwrap_or_default();
        let now = MicroTime(Timestamp::now());
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(String::new()),
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: old.lease_transitions,
            ..LeaseSpec::default()
        });
        match self
            .api
            .replace(&self.config.resource_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(identity = %self.config.identity, "released the leader lease"),
            Err(e) => warn!(error = %e, "could not release the leader lease"),
        }
        self.observed = None;
    }

    /// One attempt to take or renew the Lease; true when this candidate
    /// holds it afterwards.
    async fn try_acquire_or_renew(&mut self) -> bool {
        let name = self.config.resource_name.clone();
        let identity = self.config.identity.clone();
        // Fast path: renew what this holder last wrote.
        if let Some(observed) = &self.observed
            && observed.holder() == identity
            && observed.at + self.config.lease_duration > Instant::now()
        {
            let mut lease = observed.lease.clone();
            if let Some(spec) = lease.spec.as_mut() {
                spec.renew_time = Some(MicroTime(Timestamp::now()));
                spec.lease_duration_seconds = Some(self.lease_seconds());
            }
            match self
                .api
                .replace(&name, &PostParams::default(), &lease)
                .await
            {
                Ok(lease) => {
                    self.observe(lease);
                    return true;
                }
                Err(e) => debug!(error = %e, "optimistic lease renewal failed; reading the lease"),
            }
        }
        let current = match self.api.get_opt(&name).await {
            Ok(current) => current,
            Err(e) => {
                warn!(lease = %self.lease_name(), error = %e, "reading the leader lease");
                return false;
            }
        };
        let Some(current) = current else {
            let spec = next_spec(
                &LeaseSpec::default(),
                Instant::now(),
                Instant::now(),
                Timestamp::now(),
                &identity,
                self.config.lease_duration,
            )
            .map(|mut s| {
                s.lease_transitions = Some(0);
                s
            });
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name),
                    namespace: Some(self.config.resource_namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec,
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(lease) => {
                    self.observe(lease);
                    true
                }
                Err(e) => {
                    debug!(error = %e, "creating the leader lease");
                    false
                }
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.lease.spec.clone().unwrap_or_default() != spec);
        if changed {
            self.observe(current.clone());
        }
        let observed_at = self.observed.as_ref().map_or_else(Instant::now, |o| o.at);
        let Some(next) = next_spec(
            &spec,
            observed_at,
            Instant::now(),
            Timestamp::now(),
            &identity,
            self.config.lease_duration,
        ) else {
            return false;
        };
        let mut lease = current;
        lease.spec = Some(next);
        match self
            .api
            .replace(&name, &PostParams::default(), &lease)
            .await
        {
            Ok(lease) => {
                self.observe(lease);
                true
            }
            Err(e) => {
                debug!(error = %e, "writing the leader lease");
                false
            }
        }
    }

    fn observe(&mut self, lease: Lease) {
        self.observed = Some(Observed {
            lease,
            at: Instant::now(),
        });
    }

    fn lease_seconds(&self) -> i32 {
        self.config
            .lease_duration
            .as_secs()
            .clamp(1, i32::MAX as u64) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_lease_another_holder_renewed_recently_is_not_taken() {
        let seen = Instant::now();
        let next = next_spec(
            &held_by("other", 15),
            seen,
            seen + Duration::from_secs(14),
            Timestamp::now(),
            "me",
            Duration::from_secs(15),
        );
        assert_eq!(next, None);
    }

    #[test]
    fn an_expired_lease_is_taken_with_one_more_transition() {
        let seen = Instant::now();
        let now = Timestamp::now();
        let next = next_spec(
            &held_by("other", 15),
            seen,
            seen + Duration::from_secs(16),
            now,
            "me",
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(next.holder_identity.as_deref(), Some("me"));
        assert_eq!(next.lease_transitions, Some(4));
        assert_eq!(next.lease_duration_seconds, Some(20));
        assert_eq!(next.acquire_time, Some(MicroTime(now)));
        assert_eq!(next.renew_time, Some(MicroTime(now)));
    }

    #[test]
    fn a_released_lease_is_free_at_once() {
        let seen = Instant::now();
        let next = next_spec(
            &held_by("", 1),
            seen,
            seen,
            Timestamp::now(),
            "me",
            Duration::from_secs(15),
        );
        assert!(next.is_some());
    }

    #[test]
    fn renewing_keeps_the_acquire_time_and_the_transitions() {
        let seen = Instant::now();
        let next = next_spec(
            &held_by("me", 15),
            seen,
            seen,
            Timestamp::now(),
            "me",
            Duration::from_secs(15),
        )
        .unwrap();
        assert_eq!(next.acquire_time, Some(MicroTime(Timestamp::UNIX_EPOCH)));
        assert_eq!(next.lease_transitions, Some(3));
    }

    #[test]
    fn durations_client_go_refuses_are_refused() {
        let mut le = LeaderElection::for_lease("kube-scheduler");
        assert!(le.validate().is_ok());
        le.renew_deadline = Duration::from_secs(15);
        assert!(matches!(
            le.validate(),
            Err(ConfigError::LeaseNotLongerThanRenewDeadline { .. })
        ));
        le.renew_deadline = Duration::from_millis(2400);
        assert!(matches!(
            le.validate(),
            Err(ConfigError::RenewDeadlineTooShort { .. })
        ));
    }

    #[test]
    fn the_identity_is_the_hostname_and_a_uuid() {
        let id = default_identity();
        let (host, uuid) = id.rsplit_once('_').unwrap();
        assert!(!host.is_empty());
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert_ne!(default_identity(), id);
    }
}
