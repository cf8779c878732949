//! The Job controller's pure decisions: pod-failure backoff, which
//! podFailurePolicy rule a failed pod matches, completion-index sets and
//! successPolicy rules, as upstream's job controller makes them.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{JobSpec, PodFailurePolicyRule, SuccessPolicy};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// Upstream's `DefaultJobPodFailureBackOff`.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// Upstream's `MaxJobPodFailureBackOff`.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(360);

/// How long to wait after the last failure before creating pods again,
/// given the failures since the last success: 10 s doubling, at most 6 min.
pub(crate) fn failure_backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let shift = (failures - 1).min(16);
    BACKOFF_BASE.saturating_mul(1 << shift).min(BACKOFF_MAX)
}

/// What a podFailurePolicy says about a failed pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FailureAction {
    /// Fail the whole job; the message names the rule.
    FailJob(String),
    /// Fail the pod's index (with backoffLimitPerIndex).
    FailIndex,
    /// Do not count the failure.
    Ignore,
    /// Count it toward backoffLimit (also: no rule matched).
    Count,
}

fn terminated_exit_codes<'a>(
    statuses: impl Iterator<Item = &'a ContainerStatus> + 'a,
    container: Option<&'a str>,
) -> impl Iterator<Item = i32> + 'a {
    statuses
        .filter(move |s| container.is_none_or(|c| c == s.name))
        .filter_map(|s| s.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code))
        .filter(|code| *code != 0)
}

fn rule_matches(rule: &PodFailurePolicyRule, pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    if let Some(req) = &rule.on_exit_codes {
        let statuses = status
            .container_statuses
            .iter()
            .flatten()
            .chain(status.init_container_statuses.iter().flatten());
        let container = req.container_name.as_deref();
        let hit = |code: i32| match req.operator.as_str() {
            "In" => req.values.contains(&code),
            "NotIn" => !req.values.contains(&code),
            _ => false,
        };
        return terminated_exit_codes(statuses, container).any(hit);
    }
    rule.on_pod_conditions.iter().flatten().any(|pattern| {
        let want = if pattern.status.is_empty() {
            "True"
        } else {
            pattern.status.as_str()
        };
        status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == pattern.type_ && c.status == want)
    })
}

/// The action of the first podFailurePolicy rule the failed pod matches.
pub(crate) fn failure_action(spec: &JobSpec, pod: &Pod) -> FailureAction {
    let Some(policy) = &spec.pod_failure_policy else {
        return FailureAction::Count;
    };
    for (i, rule) in policy.rules.iter().enumerate() {
        if !rule_matches(rule, pod) {
            continue;
        }
        return match rule.action.as_str() {
            "FailJob" => FailureAction::FailJob(format!(
                "Pod {}/{} has {} matching FailJob rule at index {i}",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default(),
                if rule.on_exit_codes.is_some() {
                    "container exit codes"
                } else {
                    "condition"
                },
            )),
            "FailIndex" => FailureAction::FailIndex,
            "Ignore" => FailureAction::Ignore,
            _ => FailureAction::Count,
        };
    }
    FailureAction::Count
}

/// Parses an index set as Job status writes it: `1,3-5,7`. Malformed
/// parts are skipped, as upstream does.
pub(crate) fn parse_indexes(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse(), part.parse()),
        };
        if let (Ok(lo), Ok(hi)) = (lo, hi) {
            out.extend((lo.max(0)..=hi).filter(|i| *i < completions));
        }
    }
    out
}

/// Writes an index set compactly: runs of three or more become `a-b`.
pub(crate) fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        match end - start {
            0 => parts.push(start.to_string()),
            1 => {
                parts.push(start.to_string());
                parts.push(end.to_string());
            }
            _ => parts.push(format!("{start}-{end}")),
        }
    }
    parts.join(",")
}

/// The index of the first successPolicy rule the completed indexes meet.
pub(crate) fn success_rule_met(
    policy: &SuccessPolicy,
    completed: &BTreeSet<i32>,
    completions: i32,
) -> Option<usize> {
    policy.rules.iter().position(
        |rule| match (&rule.succeeded_indexes, rule.succeeded_count) {
            (Some(indexes), count) => {
                let wanted = parse_indexes(indexes, completions);
                let done = wanted.intersection(completed).count() as i32;
                match count {
                    Some(n) => done >= n,
                    None => !wanted.is_empty() && done == wanted.len() as i32,
                }
            }
            (None, Some(n)) => completed.len() as i32 >= n,
            (None, None) => false,
        },
    )
}

/// The completion index a pod carries (annotation, else label).
pub(crate) fn pod_index(pod: &Pod) -> Option<i32> {
    let meta = &pod.metadata;
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(super::INDEX_KEY))
        .or_else(|| meta.labels.as_ref().and_then(|l| l.get(super::INDEX_KEY)))
        .and_then(|v| v.parse().ok())
}

/// The lowest `n` indexes below `completions` not in `taken`.
pub(crate) fn first_free_indexes(taken: &BTreeSet<i32>, completions: i32, n: usize) -> Vec<i32> {
    (0..completions)
        .filter(|i| !taken.contains(i))
        .take(n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failed_pod(exit: i32, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "conditions": conditions,
                "containerStatuses": [{"name": "main", "ready": false, "restartCount": 0,
                    "image": "i", "imageID": "",
                    "state": {"terminated": {"exitCode": exit}}}]}
        }))
        .unwrap()
    }

    fn spec_with_rules(rules: serde_json::Value) -> JobSpec {
        serde_json::from_value(json!({
            "template": {},
            "podFailurePolicy": {"rules": rules}
        }))
        .unwrap()
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_up_to_six_minutes() {
        assert_eq!(failure_backoff(0), Duration::ZERO);
        assert_eq!(failure_backoff(1), Duration::from_secs(10));
        assert_eq!(failure_backoff(2), Duration::from_secs(20));
        assert_eq!(failure_backoff(6), Duration::from_secs(320));
        assert_eq!(failure_backoff(7), Duration::from_secs(360));
        assert_eq!(failure_backoff(100), Duration::from_secs(360));
    }

    #[test]
    fn the_first_matching_failure_rule_decides() {
        let spec = spec_with_rules(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"containerName": "main", "operator": "NotIn", "values": [1]}},
        ]));
        let disrupted = failed_pod(42, json!([{"type": "DisruptionTarget", "status": "True"}]));
        assert_eq!(failure_action(&spec, &disrupted), FailureAction::Ignore);
        assert!(matches!(
            failure_action(&spec, &failed_pod(42, json!([]))),
            FailureAction::FailJob(m) if m.contains("rule at index 1")
        ));
        assert_eq!(
            failure_action(&spec, &failed_pod(3, json!([]))),
            FailureAction::Count
        );
        // Exit code 1 matches no rule: counted.
        assert_eq!(
            failure_action(&spec, &failed_pod(1, json!([]))),
            FailureAction::Count
        );
        // Exit code 0 never matches a NotIn rule.
        let spec = spec_with_rules(json!([
            {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [5]}},
        ]));
        assert_eq!(
            failure_action(&spec, &failed_pod(0, json!([]))),
            FailureAction::Count
        );
        assert!(matches!(
            failure_action(&spec, &failed_pod(6, json!([]))),
            FailureAction::FailJob(_)
        ));
    }

    #[test]
    fn index_sets_round_trip_in_compact_form() {
        let set = parse_indexes("0,2-4,7,8,20", 10);
        assert_eq!(set, [0, 2, 3, 4, 7, 8].into());
        assert_eq!(format_indexes(&set), "0,2-4,7,8");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
        assert_eq!(first_free_indexes(&set, 10, 3), vec![1, 5, 6]);
    }

    #[test]
    fn success_rules_match_on_indexes_or_counts() {
        let policy: SuccessPolicy = serde_json::from_value(json!({"rules": [
            {"succeededIndexes": "0-2"},
            {"succeededCount": 4},
        ]}))
        .unwrap();
        assert_eq!(success_rule_met(&policy, &[0, 1].into(), 10), None);
        assert_eq!(success_rule_met(&policy, &[0, 1, 2].into(), 10), Some(0));
        assert_eq!(success_rule_met(&policy, &[5, 6, 7, 8].into(), 10), Some(1));
    }
}
