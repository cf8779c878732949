//! The status conditions a Terminating namespace carries, with upstream's
//! types, reasons and messages, so `kubectl describe namespace` says why a
//! namespace is stuck as it does upstream.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::NamespaceCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub(crate) const DISCOVERY_FAILURE: &str = "NamespaceDeletionDiscoveryFailure";
pub(crate) const GROUP_VERSION_PARSING_FAILURE: &str =
    "NamespaceDeletionGroupVersionParsingFailure";
pub(crate) const CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
pub(crate) const CONTENT_REMAINING: &str = "NamespaceContentRemaining";
pub(crate) const FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";

/// Every condition type, in upstream's order, with its reason and message
/// when all is well.
const OK: [(&str, &str, &str); 5] = [
    (
        DISCOVERY_FAILURE,
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        GROUP_VERSION_PARSING_FAILURE,
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        CONTENT_FAILURE,
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    (
        CONTENT_REMAINING,
        "ContentRemoved",
        "All content successfully removed",
    ),
    (
        FINALIZERS_REMAINING,
        "ContentHasNoFinalizers",
        "All content-preserving finalizers finished",
    ),
];

/// The conditions one pass of content deletion found (upstream's
/// namespaceConditionUpdater); types not reported are all well.
#[derive(Debug, Default)]
pub(crate) struct ConditionUpdater {
    found: Vec<(&'static str, &'static str, String)>,
}

impl ConditionUpdater {
    /// Discovery failed for some group versions (`group/version` → error).
    pub fn discovery_failed(&mut self, failed: &BTreeMap<String, String>) {
        let list = failed
            .iter()
            .map(|(gv, e)| format!("{gv}: {e}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.found.push((
            DISCOVERY_FAILURE,
            "DiscoveryFailed",
            format!(
                "Discovery failed for some groups, {} failing: unable to retrieve the complete list of server APIs: {list}",
                failed.len()
            ),
        ));
    }

    /// Discovery failed as a whole.
    pub fn discovery_error(&mut self, message: String) {
        self.found
            .push((DISCOVERY_FAILURE, "DiscoveryFailed", message));
    }

    /// Deleting some resource types failed.
    pub fn content_deletion_failed(&mut self, errors: &[String]) {
        self.found.push((
            CONTENT_FAILURE,
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                errors.len(),
                aggregate(errors)
            ),
        ));
    }

    /// What is left: instances per `resource.group`, and per finalizer.
    pub fn content_totals(
        &mut self,
        remaining: &BTreeMap<String, usize>,
        finalizers: &BTreeMap<String, usize>,
    ) {
        let resources: Vec<String> = remaining
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(gr, n)| format!("{gr} has {n} resource instances"))
            .collect();
        if !resources.is_empty() {
            self.found.push((
                CONTENT_REMAINING,
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", resources.join(", ")),
            ));
        }
        let by_finalizer: Vec<String> = finalizers
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        if !by_finalizer.is_empty() {
            self.found.push((
                FINALIZERS_REMAINING,
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    by_finalizer.join(", ")
                ),
            ));
        }
    }

    /// Brings `conditions` (a copy of the namespace's) up to date; a
    /// condition's lastTransitionTime moves only when it changes. True when
    /// anything changed.
    pub fn apply(&self, conditions: &mut Vec<NamespaceCondition>, now: &Time) -> bool {
        let mut changed = false;
        for (kind, ok_reason, ok_message) in OK {
            let (status, reason, message) = match self.found.iter().find(|(t, _, _)| *t == kind) {
                Some((_, reason, message)) => ("True", *reason, message.as_str()),
                None => ("False", ok_reason, ok_message),
            };
            match conditions.iter_mut().find(|c| c.type_ == kind) {
                None => {
                    conditions.push(NamespaceCondition {
                        type_: kind.to_owned(),
                        status: status.to_owned(),
                        reason: Some(reason.to_owned()),
                        message: Some(message.to_owned()),
                        last_transition_time: Some(now.clone()),
                    });
                    changed = true;
                }
                Some(c) => {
                    if c.status != status
                        || c.reason.as_deref() != Some(reason)
                        || c.message.as_deref() != Some(message)
                    {
                        c.status = status.to_owned();
                        c.reason = Some(reason.to_owned());
                        c.message = Some(message.to_owned());
                        c.last_transition_time = Some(now.clone());
                        changed = true;
                    }
                }
            }
        }
        changed
    }
}

/// Several errors as one message, as upstream's `utilerrors.NewAggregate`
/// prints them.
pub(crate) fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn get<'a>(conditions: &'a [NamespaceCondition], kind: &str) -> &'a NamespaceCondition {
        conditions.iter().find(|c| c.type_ == kind).unwrap()
    }

    #[test]
    fn a_clean_pass_sets_every_condition_false_with_upstreams_reasons() {
        let mut conditions = Vec::new();
        assert!(ConditionUpdater::default().apply(&mut conditions, &at(1)));
        assert_eq!(conditions.len(), 5);
        let remaining = get(&conditions, CONTENT_REMAINING);
        assert_eq!(remaining.status, "False");
        assert_eq!(remaining.reason.as_deref(), Some("ContentRemoved"));
        // Nothing changed: nothing to write.
        assert!(!ConditionUpdater::default().apply(&mut conditions, &at(2)));
        assert_eq!(
            get(&conditions, CONTENT_REMAINING).last_transition_time,
            Some(at(1))
        );
    }

    #[test]
    fn remaining_content_and_finalizers_are_counted_as_upstream_words_them() {
        let mut u = ConditionUpdater::default();
        u.content_totals(
            &BTreeMap::from([("pods.".into(), 2), ("widgets.example.com".into(), 1)]),
            &BTreeMap::from([("example.com/hold".into(), 1)]),
        );
        let mut conditions = Vec::new();
        u.apply(&mut conditions, &at(1));
        let remaining = get(&conditions, CONTENT_REMAINING);
        assert_eq!(remaining.status, "True");
        assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            remaining.message.as_deref(),
            Some(
                "Some resources are remaining: pods. has 2 resource instances, widgets.example.com has 1 resource instances"
            )
        );
        let finalizers = get(&conditions, FINALIZERS_REMAINING);
        assert_eq!(
            finalizers.message.as_deref(),
            Some(
                "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
            )
        );
        // Once it is all gone, the conditions flip, with a new transition time.
        assert!(ConditionUpdater::default().apply(&mut conditions, &at(5)));
        let remaining = get(&conditions, CONTENT_REMAINING);
        assert_eq!(remaining.status, "False");
        assert_eq!(remaining.last_transition_time, Some(at(5)));
    }

    #[test]
    fn failures_say_how_many_and_which() {
        let mut u = ConditionUpdater::default();
        u.discovery_failed(&BTreeMap::from([(
            "metrics.k8s.io/v1beta1".into(),
            "503".into(),
        )]));
        u.content_deletion_failed(&["a".into(), "b".into()]);
        let mut conditions = Vec::new();
        u.apply(&mut conditions, &at(1));
        let discovery = get(&conditions, DISCOVERY_FAILURE);
        assert_eq!(discovery.status, "True");
        assert_eq!(discovery.reason.as_deref(), Some("DiscoveryFailed"));
        assert!(discovery.message.as_deref().unwrap().starts_with(
            "Discovery failed for some groups, 1 failing: unable to retrieve the complete list of server APIs: metrics.k8s.io/v1beta1: 503"
        ));
        let content = get(&conditions, CONTENT_FAILURE);
        assert_eq!(
            content.message.as_deref(),
            Some("Failed to delete all resource types, 2 remaining: [a, b]")
        );
    }
}
