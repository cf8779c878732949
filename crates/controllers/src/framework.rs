//! The table of controllers and what every controller shares: the names
//! `--controllers` selects by (upstream's, aliases included), how a selected
//! controller is started and stopped, its per-object retry backoff and its
//! resync period.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{ControllerRevision, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Endpoints, Node, PersistentVolumeClaim, Pod};
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span, warn};

use crate::cache::Shared;

/// Starts a controller: the future runs it until [`Context::stopped`].
pub(crate) type StartFn = fn(Context) -> BoxFuture<'static, ()>;

/// One entry of the controller table.
#[derive(Debug)]
pub(crate) struct Descriptor {
    /// The canonical name, as upstream's kube-controller-manager has it.
    pub name: &'static str,
    /// Older names `--controllers` also accepts.
    pub aliases: &'static [&'static str],
    /// On only when named explicitly (upstream: bootstrap-signer and
    /// token-cleaner).
    pub disabled_by_default: bool,
    /// `None`: an upstream controller Skiff does not run yet; selecting it is
    /// not an error (upstream command lines keep working), it is skipped.
    pub start: Option<StartFn>,
}

const fn planned(name: &'static str, aliases: &'static [&'static str]) -> Descriptor {
    Descriptor {
        name,
        aliases,
        disabled_by_default: false,
        start: None,
    }
}

/// Every controller upstream's kube-controller-manager knows, in its order.
pub(crate) static CONTROLLERS: &[Descriptor] = &[
    planned("serviceaccount-token-controller", &["serviceaccount-token"]),
    Descriptor {
        name: crate::endpoints::legacy::NAME,
        aliases: &["endpoint"],
        disabled_by_default: false,
        start: Some(crate::endpoints::legacy::start),
    },
    Descriptor {
        name: crate::endpoints::slices::NAME,
        aliases: &["endpointslice"],
        disabled_by_default: false,
        start: Some(crate::endpoints::slices::start),
    },
    Descriptor {
        name: crate::endpoints::mirroring::NAME,
        aliases: &["endpointslicemirroring"],
        disabled_by_default: false,
        start: Some(crate::endpoints::mirroring::start),
    },
    Descriptor {
        name: crate::replicaset::RC_NAME,
        aliases: &["replicationcontroller"],
        disabled_by_default: false,
        start: Some(crate::replicaset::start_rc),
    },
    Descriptor {
        name: crate::podgc::NAME,
        aliases: &["podgc"],
        disabled_by_default: false,
        start: Some(crate::podgc::start),
    },
    Descriptor {
        name: crate::resourcequota::NAME,
        aliases: &["resourcequota"],
        disabled_by_default: false,
        start: Some(crate::resourcequota::start),
    },
    Descriptor {
        name: crate::namespace::NAME,
        aliases: &["namespace"],
        disabled_by_default: false,
        start: Some(crate::namespace::start),
    },
    Descriptor {
        name: crate::serviceaccount::NAME,
        aliases: &["serviceaccount"],
        disabled_by_default: false,
        start: Some(crate::serviceaccount::start),
    },
    Descriptor {
        name: crate::gc::NAME,
        aliases: &["garbagecollector"],
        disabled_by_default: false,
        start: Some(crate::gc::start),
    },
    Descriptor {
        name: crate::daemonset::NAME,
        aliases: &["daemonset"],
        disabled_by_default: false,
        start: Some(crate::daemonset::start),
    },
    Descriptor {
        name: crate::job::NAME,
        aliases: &["job"],
        disabled_by_default: false,
        start: Some(crate::job::start),
    },
    Descriptor {
        name: crate::deployment::NAME,
        aliases: &["deployment"],
        disabled_by_default: false,
        start: Some(crate::deployment::start),
    },
    Descriptor {
        name: crate::replicaset::NAME,
        aliases: &["replicaset"],
        disabled_by_default: false,
        start: Some(crate::replicaset::start),
    },
    Descriptor {
        name: crate::hpa::NAME,
        aliases: &["horizontalpodautoscaling"],
        disabled_by_default: false,
        start: Some(crate::hpa::start),
    },
    Descriptor {
        name: crate::disruption::NAME,
        aliases: &["disruption"],
        disabled_by_default: false,
        start: Some(crate::disruption::start),
    },
    Descriptor {
        name: crate::statefulset::NAME,
        aliases: &["statefulset"],
        disabled_by_default: false,
        start: Some(crate::statefulset::start),
    },
    Descriptor {
        name: crate::cronjob::NAME,
        aliases: &["cronjob"],
        disabled_by_default: false,
        start: Some(crate::cronjob::start),
    },
    Descriptor {
        name: crate::certificates::signer::NAME,
        aliases: &["csrsigning"],
        disabled_by_default: false,
        start: Some(crate::certificates::signer::start),
    },
    Descriptor {
        name: crate::certificates::approver::NAME,
        aliases: &["csrapproving"],
        disabled_by_default: false,
        start: Some(crate::certificates::approver::start),
    },
    planned(
        "certificatesigningrequest-cleaner-controller",
        &["csrcleaner"],
    ),
    planned("podcertificaterequest-cleaner-controller", &[]),
    planned("ttl-controller", &["ttl"]),
    Descriptor {
        disabled_by_default: true,
        ..planned("bootstrap-signer-controller", &["bootstrapsigner"])
    },
    Descriptor {
        disabled_by_default: true,
        ..planned("token-cleaner-controller", &["tokencleaner"])
    },
    Descriptor {
        name: crate::nodeipam::NAME,
        aliases: &["nodeipam"],
        disabled_by_default: false,
        start: Some(crate::nodeipam::start),
    },
    Descriptor {
        name: crate::nodelifecycle::NAME,
        aliases: &["nodelifecycle"],
        disabled_by_default: false,
        start: Some(crate::nodelifecycle::start),
    },
    planned("service-lb-controller", &["service"]),
    planned("node-route-controller", &["route"]),
    planned("cloud-node-lifecycle-controller", &["cloud-node-lifecycle"]),
    Descriptor {
        name: crate::volume::BINDER_NAME,
        aliases: &["persistentvolume-binder"],
        disabled_by_default: false,
        start: Some(crate::volume::start_binder),
    },
    planned(
        "persistentvolume-attach-detach-controller",
        &["attachdetach"],
    ),
    planned(
        "persistentvolume-expander-controller",
        &["persistentvolume-expander"],
    ),
    planned(
        "clusterrole-aggregation-controller",
        &["clusterrole-aggregation"],
    ),
    Descriptor {
        name: crate::volume::protection::PVC_NAME,
        aliases: &["pvc-protection"],
        disabled_by_default: false,
        start: Some(crate::volume::protection::start_pvc),
    },
    Descriptor {
        name: crate::volume::protection::PV_NAME,
        aliases: &["pv-protection"],
        disabled_by_default: false,
        start: Some(crate::volume::protection::start_pv),
    },
    planned("volumeattributesclass-protection-controller", &[]),
    Descriptor {
        name: crate::ttlafterfinished::NAME,
        aliases: &["ttl-after-finished"],
        disabled_by_default: false,
        start: Some(crate::ttlafterfinished::start),
    },
    Descriptor {
        name: crate::root_ca::NAME,
        aliases: &["root-ca-cert-publisher"],
        disabled_by_default: false,
        start: Some(crate::root_ca::start),
    },
    planned(
        "kube-apiserver-serving-clustertrustbundle-publisher-controller",
        &[],
    ),
    planned("ephemeral-volume-controller", &["ephemeral-volume"]),
    planned(
        "storageversion-garbage-collector-controller",
        &["storage-version-gc"],
    ),
    planned("resourceclaim-controller", &["resource-claim-controller"]),
    planned("device-taint-eviction-controller", &[]),
    planned(
        "legacy-serviceaccount-token-cleaner-controller",
        &["legacy-service-account-token-cleaner"],
    ),
    planned("validatingadmissionpolicy-status-controller", &[]),
    Descriptor {
        name: crate::nodelifecycle::eviction::NAME,
        aliases: &[],
        disabled_by_default: false,
        start: Some(crate::nodelifecycle::eviction::start),
    },
    planned("service-cidr-controller", &[]),
    planned("storage-version-migrator-controller", &[]),
    planned("selinux-warning-controller", &[]),
];

/// A `--controllers` entry names no known controller.
#[derive(Debug, thiserror::Error)]
#[error("--controllers: {0:?} is not in the list of known controllers (see --help for the list)")]
pub struct SelectError(String);

/// The names `--controllers` accepts, and which of them Skiff runs today:
/// `(canonical name, implemented)`.
pub fn known_controllers() -> Vec<(&'static str, bool)> {
    let mut all: Vec<_> = CONTROLLERS
        .iter()
        .map(|d| (d.name, d.start.is_some()))
        .collect();
    all.sort();
    all
}

fn canonical(name: &str) -> Option<&'static Descriptor> {
    CONTROLLERS
        .iter()
        .find(|d| d.name == name || d.aliases.contains(&name))
}

/// The controllers a `--controllers` list turns on, as upstream decides:
/// an explicit `name` or `-name` wins, then `*` turns on all but the
/// disabled-by-default ones; without `*` only the named ones run.
pub(crate) fn select(flag: &[String]) -> Result<Vec<&'static Descriptor>, SelectError> {
    let mut choices: Vec<(&'static str, bool)> = Vec::new();
    let mut star = false;
    for entry in flag.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        if entry == "*" {
            star = true;
            continue;
        }
        let (name, on) = match entry.strip_prefix('-') {
            Some(name) => (name, false),
            None => (entry, true),
        };
        let d = canonical(name).ok_or_else(|| SelectError(name.to_owned()))?;
        // The first explicit choice for a controller wins, as upstream.
        if !choices.iter().any(|(n, _)| *n == d.name) {
            choices.push((d.name, on));
        }
    }
    Ok(CONTROLLERS
        .iter()
        .filter(|d| match choices.iter().find(|(n, _)| *n == d.name) {
            Some((_, on)) => *on,
            None => star && !d.disabled_by_default,
        })
        .collect())
}

/// What the controllers are configured with.
#[derive(Debug)]
pub(crate) struct Settings {
    /// The PEM bundle `kube-root-ca.crt` carries.
    pub root_ca: String,
    pub concurrent_namespace_syncs: u16,
    pub concurrent_replicaset_syncs: u16,
    pub concurrent_rc_syncs: u16,
    pub concurrent_deployment_syncs: u16,
    pub concurrent_endpoint_syncs: u16,
    pub concurrent_service_endpoint_syncs: u16,
    pub mirroring_concurrent_service_endpoint_syncs: u16,
    pub max_endpoints_per_slice: u16,
    pub concurrent_gc_syncs: u16,
    pub concurrent_job_syncs: u16,
    pub concurrent_cron_job_syncs: u16,
    pub concurrent_daemonset_syncs: u16,
    pub concurrent_statefulset_syncs: u16,
    pub namespace_sync_period: Duration,
    pub min_resync_period: Duration,
    pub enable_hostpath_provisioner: bool,
    pub hostpath_provisioner_dir: std::path::PathBuf,
    pub concurrent_horizontal_pod_autoscaler_syncs: u16,
    pub horizontal_pod_autoscaler_sync_period: Duration,
    pub horizontal_pod_autoscaler_tolerance: f64,
    pub horizontal_pod_autoscaler_cpu_initialization_period: Duration,
    pub horizontal_pod_autoscaler_initial_readiness_delay: Duration,
    pub horizontal_pod_autoscaler_downscale_stabilization: Duration,
    /// The cluster-infrastructure controllers' settings.
    pub infra: crate::infra::InfraFlags,
}

/// Watches the controllers share (upstream's shared informer factory): each
/// kind is watched and cached once for all of its controllers, the watch
/// starting with its first subscriber.
pub(crate) struct Informers {
    pub pods: Shared<Pod>,
    pub nodes: Shared<Node>,
    pub jobs: Shared<Job>,
    pub replica_sets: Shared<ReplicaSet>,
    pub controller_revisions: Shared<ControllerRevision>,
    pub persistent_volume_claims: Shared<PersistentVolumeClaim>,
    pub endpoints: Shared<Endpoints>,
    pub certificate_signing_requests: Shared<CertificateSigningRequest>,
}

impl Informers {
    fn new(client: &Client) -> Self {
        Informers {
            pods: Shared::new(Api::all(client.clone())),
            nodes: Shared::new(Api::all(client.clone())),
            jobs: Shared::new(Api::all(client.clone())),
            replica_sets: Shared::new(Api::all(client.clone())),
            controller_revisions: Shared::new(Api::all(client.clone())),
            persistent_volume_claims: Shared::new(Api::all(client.clone())),
            endpoints: Shared::new(Api::all(client.clone())),
            certificate_signing_requests: Shared::new(Api::all(client.clone())),
        }
    }
}

/// Empties what no controller reads before an object is cached: its
/// `managedFields`, as upstream's kube-controller-manager does with its
/// informers' transform.
pub(crate) fn drop_managed_fields<K: kube::Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// A `Controller` of `K` as `Controller::new` makes it, but whose store
/// keeps objects without their `managedFields`, which no controller reads.
pub(crate) fn controller<K>(api: Api<K>, config: watcher::Config) -> Controller<K>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Debug + Unpin,
{
    let (reader, writer) = reflector::store();
    let objects = reflector(
        writer,
        watcher(api, config).modify(drop_managed_fields::<K>),
    )
    .applied_objects();
    Controller::for_stream(objects, reader)
}

/// What a running controller is given.
#[derive(Clone)]
pub(crate) struct Context {
    pub client: Client,
    pub settings: Arc<Settings>,
    pub informers: Arc<Informers>,
    stop: watch::Receiver<bool>,
}

impl Context {
    /// Resolves once the controller manager stops.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut stop = self.stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    }

    /// The period after which every object is reconciled again: random
    /// between `--min-resync-period` and twice it, as upstream's informers.
    pub fn resync_period(&self) -> Duration {
        jittered(self.settings.min_resync_period, 1.0)
    }
}

pub(crate) use skiff_component::jittered;

/// The controllers started by [`start`].
pub(crate) struct Running {
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

/// Starts the selected controllers that Skiff implements.
pub(crate) fn start(
    selected: &[&'static Descriptor],
    client: Client,
    settings: Arc<Settings>,
) -> Running {
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let informers = Arc::new(Informers::new(&client));
    for d in selected {
        let Some(start) = d.start else {
            info!(controller = d.name, "not implemented yet; skipping");
            continue;
        };
        let ctx = Context {
            client: client.clone(),
            settings: settings.clone(),
            informers: informers.clone(),
            stop: stop_rx.clone(),
        };
        info!(controller = d.name, "starting controller");
        let span = info_span!("controller", controller = d.name);
        tasks.push((
            d.name,
            tokio::spawn(supervise(d.name, start, ctx).instrument(span)),
        ));
    }
    Running { stop, tasks }
}

/// Runs a controller, starting it again (after a second) should it panic,
/// so that one bad object cannot silently stop a control loop.
async fn supervise(name: &'static str, start: StartFn, ctx: Context) {
    /// Aborted with the supervisor (a lost Lease aborts it).
    struct Abort(JoinHandle<()>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    loop {
        let mut run = Abort(tokio::spawn(start(ctx.clone()).in_current_span()));
        let mut stopped = ctx.stop.clone();
        match (&mut run.0).await {
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                if *stopped.borrow_and_update() {
                    return;
                }
                tracing::error!(controller = name, "controller panicked; restarting it");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(_) => return,
        }
    }
}

impl Running {
    /// Asks every controller to finish what it is doing, waits a little,
    /// then ends the stragglers.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for (name, task) in &mut self.tasks {
            if tokio::time::timeout_at(deadline, &mut *task).await.is_err() {
                warn!(controller = *name, "did not stop in time; aborting it");
                task.abort();
            }
        }
    }

    /// Ends every controller at once (the Lease is lost: not one more write).
    pub fn abort(self) {
        drop(self);
    }
}

/// Controllers never outlive what started them (a dropped `run` future
/// included).
impl Drop for Running {
    fn drop(&mut self) {
        for (_, task) in &self.tasks {
            task.abort();
        }
    }
}

/// Per-object exponential retry delays after failures, reset by a success:
/// upstream's default controller rate limiter (5 ms doubling up to 1000 s).
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    const BASE: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1000);

    /// Records a failure of `key` and answers how long to wait before the
    /// next attempt.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock");
        let n = failures.entry(key.to_owned()).or_insert(0);
        let delay = Self::BASE
            .checked_mul(1u32.checked_shl(*n).unwrap_or(u32::MAX))
            .unwrap_or(Self::MAX)
            .min(Self::MAX);
        *n = n.saturating_add(1);
        delay
    }

    /// Forgets the failures of `key`.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("backoff lock").remove(key);
    }
}

/// What to tell a user about a failed request: the API server's own message
/// when it answered, else the error.
pub(crate) fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

/// The API server answered 404.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The API server answered 409 AlreadyExists.
pub(crate) fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_already_exists())
}

/// The API server answered 409 Conflict (a stale resourceVersion).
pub(crate) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict")
}

/// The API server answered 422 Invalid (a JSON patch test failed, say).
pub(crate) fn is_invalid(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 422)
}

/// The API server answered 405: the resource does not support the verb.
pub(crate) fn is_method_not_supported(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 405)
}

/// A create refused because its namespace is being deleted: upstream's
/// `NamespaceTerminating` cause, or the Forbidden message that carries it.
pub(crate) fn is_namespace_terminating(e: &kube::Error) -> bool {
    let kube::Error::Api(s) = e else {
        return false;
    };
    let cause = s
        .details
        .as_ref()
        .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"));
    cause || (s.code == 403 && s.message.contains("because it is being terminated"))
}

/// A Go duration (`15s`, `1m30s`, `1.5h`, `300ms`, `0`), as upstream's flags
/// take them.
pub use skiff_api_types::duration::parse_flag_duration as parse_go_duration;

#[cfg(test)]
mod tests {
    use super::*;

    fn names(flag: &[&str]) -> Vec<&'static str> {
        let flag: Vec<String> = flag.iter().map(|s| s.to_string()).collect();
        select(&flag).unwrap().iter().map(|d| d.name).collect()
    }

    #[test]
    fn star_selects_every_controller_but_the_disabled_by_default_ones() {
        let all = names(&["*"]);
        assert!(all.contains(&"namespace-controller"));
        assert!(all.contains(&"root-ca-certificate-publisher-controller"));
        assert!(!all.contains(&"bootstrap-signer-controller"));
        assert!(!all.contains(&"token-cleaner-controller"));
        assert_eq!(all.len(), CONTROLLERS.len() - 2);
    }

    #[test]
    fn a_minus_entry_turns_a_controller_off_by_name_or_alias() {
        let some = names(&["*", "-namespace", "-serviceaccount-controller"]);
        assert!(!some.contains(&"namespace-controller"));
        assert!(!some.contains(&"serviceaccount-controller"));
        assert!(some.contains(&"root-ca-certificate-publisher-controller"));
    }

    #[test]
    fn without_star_only_the_named_controllers_run() {
        assert_eq!(
            names(&["root-ca-cert-publisher", "tokencleaner"]),
            [
                "token-cleaner-controller",
                "root-ca-certificate-publisher-controller"
            ]
        );
        assert!(names(&[]).is_empty());
    }

    #[test]
    fn the_first_explicit_choice_wins() {
        assert!(names(&["namespace", "-namespace"]).contains(&"namespace-controller"));
        assert!(!names(&["-namespace", "namespace", "*"]).contains(&"namespace-controller"));
    }

    #[test]
    fn an_unknown_controller_is_an_error_naming_it() {
        let err = select(&["*".into(), "-nope".into()]).unwrap_err();
        assert!(err.to_string().contains("\"nope\""), "{err}");
    }

    #[test]
    fn names_and_aliases_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for d in CONTROLLERS {
            for n in std::iter::once(&d.name).chain(d.aliases) {
                assert!(seen.insert(*n), "{n} registered twice");
            }
        }
    }

    #[test]
    fn backoff_doubles_per_failure_up_to_the_cap_and_resets_on_success() {
        let b = Backoff::default();
        assert_eq!(b.failed("a"), Duration::from_millis(5));
        assert_eq!(b.failed("a"), Duration::from_millis(10));
        assert_eq!(b.failed("a"), Duration::from_millis(20));
        assert_eq!(b.failed("b"), Duration::from_millis(5));
        for _ in 0..40 {
            b.failed("a");
        }
        assert_eq!(b.failed("a"), Duration::from_secs(1000));
        b.succeeded("a");
        assert_eq!(b.failed("a"), Duration::from_millis(5));
    }

    #[test]
    fn go_durations_parse_as_upstream_flags_take_them() {
        assert_eq!(parse_go_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_go_duration("5m0s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(parse_go_duration("15").is_err());
        assert!(parse_go_duration("-1s").is_err());
        assert!(parse_go_duration("3d").is_err());
    }

    #[test]
    fn jitter_stays_between_the_base_and_the_factor() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(10), 1.0);
            assert!(d >= Duration::from_secs(10) && d <= Duration::from_secs(20));
        }
    }
}
