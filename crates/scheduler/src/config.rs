//! The configuration file (`--config`): upstream's `KubeSchedulerConfiguration`
//! (`kubescheduler.config.k8s.io/v1`) in YAML or JSON, the parts that apply —
//! profiles with their `schedulerName`, plugins enabled and disabled per
//! extension point (or `multiPoint`), `pluginConfig` args,
//! `percentageOfNodesToScore`, `parallelism`, `leaderElection` — and the
//! code that turns a profile into a [`Framework`].

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::framework::{BuildError, Framework, Handle, Plugin};
use crate::plugins;

/// The API version this file format has.
pub const API_VERSION: &str = "kubescheduler.config.k8s.io/v1";
/// The profile name pods get when they name none.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeSchedulerConfiguration {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    /// Threads for filters and scores (upstream: 16).
    #[serde(default)]
    pub parallelism: Option<i32>,
    /// Default for profiles that set none; 0 is adaptive.
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<i32>,
    #[serde(default)]
    pub pod_initial_backoff_seconds: Option<i64>,
    #[serde(default)]
    pub pod_max_backoff_seconds: Option<i64>,
    #[serde(default)]
    pub profiles: Vec<Profile>,
    #[serde(default)]
    pub leader_election: Option<LeaderElectionConfiguration>,
    #[serde(default)]
    pub client_connection: Option<ClientConnection>,
}

/// `leaderElection`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderElectionConfiguration {
    pub leader_elect: Option<bool>,
    pub lease_duration: Option<String>,
    pub renew_deadline: Option<String>,
    pub retry_period: Option<String>,
    pub resource_lock: Option<String>,
    pub resource_name: Option<String>,
    pub resource_namespace: Option<String>,
}

/// `clientConnection`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConnection {
    pub kubeconfig: Option<String>,
}

/// One profile.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    #[serde(default)]
    pub scheduler_name: Option<String>,
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<i32>,
    #[serde(default)]
    pub plugins: Option<Plugins>,
    #[serde(default)]
    pub plugin_config: Vec<PluginConfig>,
}

/// Plugins per extension point.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plugins {
    pub multi_point: Option<PluginSet>,
    pub pre_enqueue: Option<PluginSet>,
    pub queue_sort: Option<PluginSet>,
    pub pre_filter: Option<PluginSet>,
    pub filter: Option<PluginSet>,
    pub post_filter: Option<PluginSet>,
    pub pre_score: Option<PluginSet>,
    pub score: Option<PluginSet>,
    pub reserve: Option<PluginSet>,
    pub permit: Option<PluginSet>,
    pub pre_bind: Option<PluginSet>,
    pub bind: Option<PluginSet>,
    pub post_bind: Option<PluginSet>,
}

/// Enabled and disabled plugins of one extension point.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PluginSet {
    #[serde(default)]
    pub enabled: Vec<PluginRef>,
    #[serde(default)]
    pub disabled: Vec<PluginRef>,
}

/// A plugin named in a set.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PluginRef {
    pub name: String,
    #[serde(default)]
    pub weight: Option<i64>,
}

/// Args for one plugin.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PluginConfig {
    pub name: String,
    #[serde(default)]
    pub args: Value,
}

/// Why the configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a KubeSchedulerConfiguration: {reason}")]
    Parse { path: String, reason: String },
    #[error(
        "{path}: apiVersion must be {API_VERSION} and kind KubeSchedulerConfiguration (got {got})"
    )]
    Version { path: String, got: String },
    #[error("{0}")]
    Invalid(String),
}

impl KubeSchedulerConfiguration {
    /// Reads and checks a file (YAML or JSON).
    pub fn load(path: &Path) -> Result<KubeSchedulerConfiguration, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses file contents; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<KubeSchedulerConfiguration, ConfigError> {
        let value: Value = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| ConfigError::Parse {
                path: origin.into(),
                reason: e.to_string(),
            })?
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
                path: origin.into(),
                reason: e.to_string(),
            })?
        };
        let cfg: KubeSchedulerConfiguration =
            serde_json::from_value(value).map_err(|e| ConfigError::Parse {
                path: origin.into(),
                reason: e.to_string(),
            })?;
        let version = cfg.api_version.as_deref().unwrap_or("");
        let kind = cfg.kind.as_deref().unwrap_or("");
        if version != API_VERSION || kind != "KubeSchedulerConfiguration" {
            return Err(ConfigError::Version {
                path: origin.into(),
                got: format!("{version} {kind}"),
            });
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(p) = self.percentage_of_nodes_to_score
            && !(0..=100).contains(&p)
        {
            return Err(ConfigError::Invalid(format!(
                "percentageOfNodesToScore {p} must be between 0 and 100"
            )));
        }
        if let Some(p) = self.parallelism
            && p <= 0
        {
            return Err(ConfigError::Invalid(format!(
                "parallelism {p} must be greater than 0"
            )));
        }
        let mut names = HashSet::new();
        for profile in &self.profiles {
            let name = profile.name();
            if !names.insert(name) {
                return Err(ConfigError::Invalid(format!(
                    "duplicate profile with schedulerName {name}"
                )));
            }
            if let Some(p) = profile.percentage_of_nodes_to_score
                && !(0..=100).contains(&p)
            {
                return Err(ConfigError::Invalid(format!(
                    "profile {name}: percentageOfNodesToScore {p} must be between 0 and 100"
                )));
            }
        }
        Ok(())
    }

    /// The profiles, with the default one when the file lists none.
    pub fn profiles(&self) -> Vec<Profile> {
        if self.profiles.is_empty() {
            vec![Profile::default()]
        } else {
            self.profiles.clone()
        }
    }
}

impl Profile {
    /// Its `schedulerName` (`default-scheduler` when unset).
    pub fn name(&self) -> &str {
        self.scheduler_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(DEFAULT_SCHEDULER_NAME)
    }

    fn args(&self, plugin: &str) -> Value {
        self.plugin_config
            .iter()
            .find(|c| c.name == plugin)
            .map(|c| c.args.clone())
            .unwrap_or(Value::Null)
    }
}

/// Extension points, in the order they run, with how to read their set.
type SetOf = fn(&Plugins) -> Option<&PluginSet>;
const POINTS: [(&str, SetOf); 12] = [
    ("PreEnqueue", |p| p.pre_enqueue.as_ref()),
    ("QueueSort", |p| p.queue_sort.as_ref()),
    ("PreFilter", |p| p.pre_filter.as_ref()),
    ("Filter", |p| p.filter.as_ref()),
    ("PostFilter", |p| p.post_filter.as_ref()),
    ("PreScore", |p| p.pre_score.as_ref()),
    ("Score", |p| p.score.as_ref()),
    ("Reserve", |p| p.reserve.as_ref()),
    ("Permit", |p| p.permit.as_ref()),
    ("PreBind", |p| p.pre_bind.as_ref()),
    ("Bind", |p| p.bind.as_ref()),
    ("PostBind", |p| p.post_bind.as_ref()),
];

/// Adds `plugin` to `fw` at `point`; false if it does not implement it.
fn attach(fw: &mut Framework, point: &str, plugin: &Arc<dyn Plugin>, weight: i64) -> bool {
    let p = plugin.clone();
    match point {
        "PreEnqueue" => p.as_pre_enqueue().map(|x| fw.pre_enqueue.push(x)).is_some(),
        "QueueSort" => p.as_queue_sort().map(|x| fw.queue_sort = Some(x)).is_some(),
        "PreFilter" => p.as_pre_filter().map(|x| fw.pre_filter.push(x)).is_some(),
        "Filter" => p.as_filter().map(|x| fw.filter.push(x)).is_some(),
        "PostFilter" => p.as_post_filter().map(|x| fw.post_filter.push(x)).is_some(),
        "PreScore" => p.as_pre_score().map(|x| fw.pre_score.push(x)).is_some(),
        "Score" => p.as_score().map(|x| fw.score.push((x, weight))).is_some(),
        "Reserve" => p.as_reserve().map(|x| fw.reserve.push(x)).is_some(),
        "Permit" => p.as_permit().map(|x| fw.permit.push(x)).is_some(),
        "PreBind" => p.as_pre_bind().map(|x| fw.pre_bind.push(x)).is_some(),
        "Bind" => p.as_bind().map(|x| fw.bind.push(x)).is_some(),
        "PostBind" => p.as_post_bind().map(|x| fw.post_bind.push(x)).is_some(),
        _ => false,
    }
}

/// Whether `plugin` implements `point` (without attaching it).
fn implements(point: &str, plugin: &Arc<dyn Plugin>) -> bool {
    let p = plugin.clone();
    match point {
        "PreEnqueue" => p.as_pre_enqueue().is_some(),
        "QueueSort" => p.as_queue_sort().is_some(),
        "PreFilter" => p.as_pre_filter().is_some(),
        "Filter" => p.as_filter().is_some(),
        "PostFilter" => p.as_post_filter().is_some(),
        "PreScore" => p.as_pre_score().is_some(),
        "Score" => p.as_score().is_some(),
        "Reserve" => p.as_reserve().is_some(),
        "Permit" => p.as_permit().is_some(),
        "PreBind" => p.as_pre_bind().is_some(),
        "Bind" => p.as_bind().is_some(),
        "PostBind" => p.as_post_bind().is_some(),
        _ => false,
    }
}

/// Builds the framework of one profile, as upstream merges a profile's
/// plugins with the defaults: the default `multiPoint` set less what the
/// profile disables there, plus what it enables there; then for each
/// extension point, the plugins the profile enables at that point first
/// (in its order), then the `multiPoint` plugins that implement the point
/// and are not disabled at it (`*` disables them all).
pub fn build_framework(
    profile: &Profile,
    global_percentage: Option<i32>,
    handle: &Arc<Handle>,
) -> Result<Framework, BuildError> {
    let name = profile.name().to_owned();
    let registry: HashMap<&str, plugins::Constructor> = plugins::registry().into_iter().collect();
    let known = || {
        let mut k: Vec<&str> = registry.keys().copied().collect();
        k.sort();
        k.join(", ")
    };
    let empty = Plugins::default();
    let plugins_cfg = profile.plugins.as_ref().unwrap_or(&empty);

    let mut multi: Vec<(String, i64)> = plugins::default_plugins()
        .into_iter()
        .map(|(n, w)| (n.to_owned(), w))
        .collect();
    if let Some(set) = &plugins_cfg.multi_point {
        if set.disabled.iter().any(|d| d.name == "*") {
            multi.clear();
        }
        multi.retain(|(n, _)| !set.disabled.iter().any(|d| d.name == *n));
        for e in &set.enabled {
            let w = e.weight.unwrap_or(0);
            match multi.iter_mut().find(|(n, _)| *n == e.name) {
                Some(entry) => entry.1 = w,
                None => multi.push((e.name.clone(), w)),
            }
        }
    }

    let mut instances: HashMap<String, Arc<dyn Plugin>> = HashMap::new();
    let mut instance = |plugin: &str| -> Result<Arc<dyn Plugin>, BuildError> {
        if let Some(p) = instances.get(plugin) {
            return Ok(p.clone());
        }
        let ctor = registry
            .get(plugin)
            .ok_or_else(|| BuildError::UnknownPlugin {
                profile: name.clone(),
                plugin: plugin.to_owned(),
                known: known(),
            })?;
        let p = ctor(&profile.args(plugin), handle).map_err(|reason| BuildError::Args {
            profile: name.clone(),
            plugin: plugin.to_owned(),
            reason,
        })?;
        instances.insert(plugin.to_owned(), p.clone());
        Ok(p)
    };

    let mut fw = Framework::empty(&name, handle.clone());
    fw.percentage_of_nodes_to_score = profile.percentage_of_nodes_to_score.or(global_percentage);
    let mut used: Vec<Arc<dyn Plugin>> = Vec::new();
    for (point, set_of) in POINTS {
        let set = set_of(plugins_cfg);
        let disabled_all = set.is_some_and(|s| s.disabled.iter().any(|d| d.name == "*"));
        let mut chosen: Vec<(String, i64, bool)> = Vec::new();
        for e in set.iter().flat_map(|s| s.enabled.iter()) {
            chosen.push((e.name.clone(), e.weight.unwrap_or(0), true));
        }
        for (n, w) in &multi {
            let disabled =
                disabled_all || set.is_some_and(|s| s.disabled.iter().any(|d| d.name == *n));
            if disabled || chosen.iter().any(|(c, _, _)| c == n) {
                continue;
            }
            chosen.push((n.clone(), *w, false));
        }
        for (plugin_name, weight, explicit) in chosen {
            let p = instance(&plugin_name)?;
            if !implements(point, &p) {
                if explicit {
                    return Err(BuildError::NotImplemented {
                        profile: name.clone(),
                        plugin: plugin_name,
                        point,
                    });
                }
                continue;
            }
            let weight = if weight <= 0 {
                multi
                    .iter()
                    .find(|(n, _)| *n == plugin_name)
                    .map(|(_, w)| *w)
                    .filter(|w| *w > 0)
                    .unwrap_or(1)
            } else {
                weight
            };
            attach(&mut fw, point, &p, weight);
            if !used.iter().any(|u| u.name() == p.name()) {
                used.push(p);
            }
        }
    }
    for p in &used {
        fw.events.insert(p.name(), p.events_to_register());
    }
    if fw.queue_sort.is_none() {
        return Err(BuildError::Invalid {
            profile: name,
            reason: "no QueueSort plugin is enabled".into(),
        });
    }
    if fw.bind.is_empty() {
        return Err(BuildError::Invalid {
            profile: name,
            reason: "no Bind plugin is enabled".into(),
        });
    }
    Ok(fw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> Arc<Handle> {
        Handle::for_tests()
    }

    fn names<T: ?Sized + Plugin>(v: &[Arc<T>]) -> Vec<&'static str> {
        v.iter().map(|p| p.name()).collect()
    }

    #[test]
    fn the_default_profile_has_upstreams_plugins_and_weights() {
        let fw = build_framework(&Profile::default(), None, &handle()).unwrap();
        assert_eq!(fw.profile_name, "default-scheduler");
        assert_eq!(
            names(&fw.filter),
            [
                "NodeUnschedulable",
                "NodeName",
                "TaintToleration",
                "NodeAffinity",
                "NodePorts",
                "NodeResourcesFit",
                "VolumeRestrictions",
                "VolumeBinding",
                "PodTopologySpread",
                "InterPodAffinity",
            ]
        );
        let weights: Vec<(&str, i64)> = fw.score.iter().map(|(p, w)| (p.name(), *w)).collect();
        assert_eq!(
            weights,
            [
                ("TaintToleration", 3),
                ("NodeAffinity", 2),
                ("NodeResourcesFit", 1),
                ("PodTopologySpread", 2),
                ("InterPodAffinity", 2),
                ("NodeResourcesBalancedAllocation", 1),
                ("ImageLocality", 1),
            ]
        );
        assert_eq!(names(&fw.pre_enqueue), ["SchedulingGates"]);
        assert_eq!(names(&fw.bind), ["DefaultBinder"]);
    }

    #[test]
    fn a_config_file_disables_enables_and_reweights() {
        let yaml = r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 30
profiles:
  - schedulerName: packer
    plugins:
      score:
        disabled:
          - name: "*"
        enabled:
          - name: NodeResourcesFit
            weight: 5
    pluginConfig:
      - name: NodeResourcesFit
        args:
          scoringStrategy:
            type: MostAllocated
  - schedulerName: no-images
    plugins:
      multiPoint:
        disabled:
          - name: ImageLocality
"#;
        let cfg = KubeSchedulerConfiguration::parse(yaml, "test.yaml").unwrap();
        let profiles = cfg.profiles();
        let packer =
            build_framework(&profiles[0], cfg.percentage_of_nodes_to_score, &handle()).unwrap();
        assert_eq!(packer.profile_name, "packer");
        assert_eq!(packer.percentage_of_nodes_to_score, Some(30));
        let weights: Vec<(&str, i64)> = packer.score.iter().map(|(p, w)| (p.name(), *w)).collect();
        assert_eq!(weights, [("NodeResourcesFit", 5)]);
        let other = build_framework(&profiles[1], None, &handle()).unwrap();
        assert!(!other.score.iter().any(|(p, _)| p.name() == "ImageLocality"));
        assert!(other.pre_score.iter().all(|p| p.name() != "ImageLocality"));
    }

    #[test]
    fn mistakes_are_refused_with_what_to_fix() {
        let bad_version = "apiVersion: v1\nkind: KubeSchedulerConfiguration\n";
        assert!(matches!(
            KubeSchedulerConfiguration::parse(bad_version, "f"),
            Err(ConfigError::Version { .. })
        ));
        let unknown = r#"{"apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
            "profiles": [{"plugins": {"filter": {"enabled": [{"name": "Nope"}]}}}]}"#;
        let cfg = KubeSchedulerConfiguration::parse(unknown, "f").unwrap();
        let err = build_framework(&cfg.profiles()[0], None, &handle())
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("plugin Nope is not known"),
            "{err}"
        );
        let wrong_point = r#"{"apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
            "profiles": [{"plugins": {"filter": {"enabled": [{"name": "ImageLocality"}]}}}]}"#;
        let cfg = KubeSchedulerConfiguration::parse(wrong_point, "f").unwrap();
        let err = build_framework(&cfg.profiles()[0], None, &handle())
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("does not implement the Filter"),
            "{err}"
        );
        let dup = r#"{"apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
            "profiles": [{}, {"schedulerName": "default-scheduler"}]}"#;
        assert!(KubeSchedulerConfiguration::parse(dup, "f").is_err());
    }
}
