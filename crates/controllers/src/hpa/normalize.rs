//! From the metrics' recommendation to the replicas actually set: the
//! stabilization window (the most replicas recommended in the last window
//! bounds a scale-down; with `behavior`, the fewest bounds a scale-up), then
//! min/maxReplicas and the rate limits, upstream's way. Recommendations and
//! scale events are remembered per HPA.

use std::time::{Duration, Instant};

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};

/// How a direction's policies combine.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Select {
    Max,
    Min,
    Disabled,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum PolicyKind {
    Pods,
    Percent,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Policy {
    pub kind: PolicyKind,
    pub value: i32,
    pub period: Duration,
}

/// One direction's rules, defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Rules {
    pub stabilization: Duration,
    pub select: Select,
    pub policies: Vec<Policy>,
}

fn rules(given: Option<&HPAScalingRules>, stabilization: Duration, policies: Vec<Policy>) -> Rules {
    let select = match given.and_then(|g| g.select_policy.as_deref()) {
        Some("Min") => Select::Min,
        Some("Disabled") => Select::Disabled,
        _ => Select::Max,
    };
    let given_policies: Vec<Policy> = given
        .and_then(|g| g.policies.as_ref())
        .map(|p| {
            p.iter()
                .map(|p| Policy {
                    kind: if p.type_ == "Pods" {
                        PolicyKind::Pods
                    } else {
                        PolicyKind::Percent
                    },
                    value: p.value,
                    period: Duration::from_secs(p.period_seconds.max(0) as u64),
                })
                .collect()
        })
        .unwrap_or_default();
    Rules {
        stabilization: given
            .and_then(|g| g.stabilization_window_seconds)
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(stabilization),
        select,
        policies: if given_policies.is_empty() {
            policies
        } else {
            given_policies
        },
    }
}

/// The scale-up and scale-down rules of a `behavior`, upstream's defaults
/// for what it leaves out (up: no window, 4 pods or 100% per 15s; down:
/// `--horizontal-pod-autoscaler-downscale-stabilization`, 100% per 15s).
pub(crate) fn behavior_rules(
    b: &HorizontalPodAutoscalerBehavior,
    downscale_window: Duration,
) -> (Rules, Rules) {
    let fifteen = Duration::from_secs(15);
    let up = rules(
        b.scale_up.as_ref(),
        Duration::ZERO,
        vec![
            Policy {
                kind: PolicyKind::Pods,
                value: 4,
                period: fifteen,
            },
            Policy {
                kind: PolicyKind::Percent,
                value: 100,
                period: fifteen,
            },
        ],
    );
    let down = rules(
        b.scale_down.as_ref(),
        downscale_window,
        vec![Policy {
            kind: PolicyKind::Percent,
            value: 100,
            period: fifteen,
        }],
    );
    (up, down)
}

/// What a normalization decided, with the reasons for the conditions.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Decision {
    pub replicas: i32,
    /// AbleToScale (True): ReadyForNewScale or Scale{Up,Down}Stabilized.
    pub able_reason: &'static str,
    pub able_message: &'static str,
    /// ScalingLimited: true when the limits changed the recommendation.
    pub limited: bool,
    pub limit_reason: &'static str,
    pub limit_message: &'static str,
}

/// One HPA's memory.
#[derive(Debug, Default)]
pub(crate) struct History {
    recommendations: Vec<(i32, Instant)>,
    up_events: Vec<(i32, Instant)>,
    down_events: Vec<(i32, Instant)>,
}

const READY: (&str, &str) = ("ReadyForNewScale", "recommended size matches current size");
const WITHIN: (&str, &str) = (
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);
const SCALE_UP_LIMIT: (&str, &str) = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const SCALE_DOWN_LIMIT: (&str, &str) = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);
const TOO_MANY: (&str, &str) = (
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const TOO_FEW: (&str, &str) = (
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);

fn before(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_sub(d)
}

/// Whether `t` lies within the last `d` before `now`.
fn within(t: Instant, now: Instant, d: Duration) -> bool {
    before(now, d).is_none_or(|cutoff| t > cutoff)
}

fn decision(
    replicas: i32,
    able: (&'static str, &'static str),
    limited: bool,
    limit: (&'static str, &'static str),
) -> Decision {
    Decision {
        replicas,
        able_reason: able.0,
        able_message: able.1,
        limited,
        limit_reason: limit.0,
        limit_message: limit.1,
    }
}

impl History {
    fn remember(&mut self, recommendation: i32, now: Instant, keep: Duration) {
        self.recommendations.retain(|(_, t)| within(*t, now, keep));
        self.recommendations.push((recommendation, now));
    }

    /// Without `behavior`: the highest recommendation within the
    /// downscale window, then at most max(2 × current, 4) and within
    /// min/maxReplicas.
    pub fn normalize(
        &mut self,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
        window: Duration,
        now: Instant,
    ) -> Decision {
        let mut stabilized = desired;
        for (r, t) in &self.recommendations {
            if within(*t, now, window) {
                stabilized = stabilized.max(*r);
            }
        }
        self.remember(desired, now, window);
        let able = if stabilized != desired {
            (
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest recent recommendation",
            )
        } else {
            READY
        };
        let up_limit = (2 * current).max(4);
        let (allowed, why) = if max > up_limit {
            (up_limit, SCALE_UP_LIMIT)
        } else {
            (max, TOO_MANY)
        };
        let (replicas, why) = if stabilized < min {
            (min, TOO_FEW)
        } else if stabilized > allowed {
            (allowed, why)
        } else {
            (stabilized, WITHIN)
        };
        decision(replicas, able, replicas != stabilized, why)
    }

    /// With `behavior`: both stabilization windows, then the policies'
    /// rates over what was scaled in their periods.
    #[allow(clippy::too_many_arguments)]
    pub fn normalize_with_behavior(
        &mut self,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
        up: &Rules,
        down: &Rules,
        now: Instant,
    ) -> Decision {
        let (mut up_rec, mut down_rec) = (desired, desired);
        for (r, t) in &self.recommendations {
            if within(*t, now, up.stabilization) {
                up_rec = up_rec.min(*r);
            }
            if within(*t, now, down.stabilization) {
                down_rec = down_rec.max(*r);
            }
        }
        self.remember(desired, now, up.stabilization.max(down.stabilization));
        let stabilized = current.max(up_rec).min(down_rec);
        let able = if stabilized > desired {
            (
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest recent recommendation",
            )
        } else if stabilized < desired {
            (
                "ScaleUpStabilized",
                "recent recommendations were lower than current one, applying the lowest recent recommendation",
            )
        } else {
            READY
        };
        let (replicas, why) = if stabilized > current {
            let limit = scale_up_limit(current, &self.up_events, up, now).max(current);
            let (allowed, why) = if max > limit {
                (limit, SCALE_UP_LIMIT)
            } else {
                (max, TOO_MANY)
            };
            if stabilized > allowed {
                (allowed, why)
            } else {
                (stabilized, WITHIN)
            }
        } else if stabilized < current {
            let limit = scale_down_limit(current, &self.down_events, down, now).min(current);
            let (allowed, why) = if min < limit {
                (limit, SCALE_DOWN_LIMIT)
            } else {
                (min, TOO_FEW)
            };
            if stabilized < allowed {
                (allowed, why)
            } else {
                (stabilized, WITHIN)
            }
        } else {
            (stabilized, WITHIN)
        };
        decision(replicas, able, replicas != stabilized, why)
    }

    /// Records a rescale, for the rate policies; events older than the
    /// longest policy period are dropped.
    pub fn scaled(&mut self, from: i32, to: i32, keep: Duration, now: Instant) {
        let events = if to > from {
            &mut self.up_events
        } else {
            &mut self.down_events
        };
        events.retain(|(_, t)| within(*t, now, keep));
        events.push(((to - from).abs(), now));
    }
}

/// The longest period of the rules' policies.
pub(crate) fn longest_period(up: &Rules, down: &Rules) -> Duration {
    up.policies
        .iter()
        .chain(&down.policies)
        .map(|p| p.period)
        .max()
        .unwrap_or_default()
}

fn changed_in(events: &[(i32, Instant)], period: Duration, now: Instant) -> i32 {
    events
        .iter()
        .filter(|(_, t)| within(*t, now, period))
        .map(|(n, _)| n)
        .sum()
}

fn scale_up_limit(current: i32, events: &[(i32, Instant)], rules: &Rules, now: Instant) -> i32 {
    let pick: fn(i32, i32) -> i32 = match rules.select {
        Select::Disabled => return current,
        Select::Min => i32::min,
        Select::Max => i32::max,
    };
    let mut result = if rules.select == Select::Min {
        i32::MAX
    } else {
        i32::MIN
    };
    for p in &rules.policies {
        let start = current - changed_in(events, p.period, now);
        let proposed = match p.kind {
            PolicyKind::Pods => start + p.value,
            PolicyKind::Percent => {
                (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
            }
        };
        result = pick(result, proposed);
    }
    result
}

fn scale_down_limit(current: i32, events: &[(i32, Instant)], rules: &Rules, now: Instant) -> i32 {
    // Max picks the policy allowing the largest change: the lowest limit.
    let pick: fn(i32, i32) -> i32 = match rules.select {
        Select::Disabled => return current,
        Select::Min => i32::max,
        Select::Max => i32::min,
    };
    let mut result = if rules.select == Select::Min {
        i32::MIN
    } else {
        i32::MAX
    };
    for p in &rules.policies {
        let start = current + changed_in(events, p.period, now);
        let proposed = match p.kind {
            PolicyKind::Pods => start - p.value,
            PolicyKind::Percent => (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32,
        };
        result = pick(result, proposed);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const WINDOW: Duration = Duration::from_secs(300);

    fn defaults() -> (Rules, Rules) {
        behavior_rules(&HorizontalPodAutoscalerBehavior::default(), WINDOW)
    }

    #[test]
    fn defaults_are_upstreams() {
        let (up, down) = defaults();
        assert_eq!(up.stabilization, Duration::ZERO);
        assert_eq!(up.policies.len(), 2);
        assert_eq!(down.stabilization, WINDOW);
        assert_eq!(
            down.policies,
            [Policy {
                kind: PolicyKind::Percent,
                value: 100,
                period: Duration::from_secs(15)
            }]
        );
        let b: HorizontalPodAutoscalerBehavior = serde_json::from_value(json!({
            "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Min",
                          "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]}}))
        .unwrap();
        let (_, down) = behavior_rules(&b, WINDOW);
        assert_eq!(
            (down.stabilization, down.select),
            (Duration::from_secs(60), Select::Min)
        );
    }

    #[test]
    fn without_behavior_a_scale_down_waits_for_the_window_and_a_scale_up_doubles_at_most() {
        let mut h = History::default();
        let t0 = Instant::now();
        let d = h.normalize(5, 5, 1, 20, WINDOW, t0);
        assert_eq!(
            (d.replicas, d.able_reason, d.limited),
            (5, "ReadyForNewScale", false)
        );
        let d = h.normalize(5, 2, 1, 20, WINDOW, t0 + Duration::from_secs(60));
        assert_eq!((d.replicas, d.able_reason), (5, "ScaleDownStabilized"));
        let d = h.normalize(5, 2, 1, 20, WINDOW, t0 + Duration::from_secs(301));
        assert_eq!(d.replicas, 2);
        let d = h.normalize(3, 50, 1, 20, WINDOW, t0 + Duration::from_secs(400));
        assert_eq!(
            (d.replicas, d.limited, d.limit_reason),
            (6, true, "ScaleUpLimit")
        );
        let d = h.normalize(3, 50, 1, 5, WINDOW, t0 + Duration::from_secs(400));
        assert_eq!((d.replicas, d.limit_reason), (5, "TooManyReplicas"));
        let mut h = History::default();
        let d = h.normalize(3, 1, 2, 5, WINDOW, t0);
        assert_eq!((d.replicas, d.limit_reason), (2, "TooFewReplicas"));
    }

    #[test]
    fn scale_up_policies_limit_per_period_and_count_recent_scaling() {
        let (up, down) = defaults();
        let mut h = History::default();
        let t0 = Instant::now();
        // From 1: max(1 + 4, 1 × 2) = 5.
        let d = h.normalize_with_behavior(1, 100, 1, 100, &up, &down, t0);
        assert_eq!(
            (d.replicas, d.limit_reason, d.limited),
            (5, "ScaleUpLimit", true)
        );
        h.scaled(1, 5, longest_period(&up, &down), t0);
        // 5 s later the period began at 1 replica: still at most 5.
        let d = h.normalize_with_behavior(5, 100, 1, 100, &up, &down, t0 + Duration::from_secs(5));
        assert_eq!(d.replicas, 5);
        // After the period: max(5 + 4, 10) = 10.
        let d = h.normalize_with_behavior(5, 100, 1, 100, &up, &down, t0 + Duration::from_secs(16));
        assert_eq!(d.replicas, 10);
        // Min of the policies: 5 + 4 = 9.
        let min_up = Rules {
            select: Select::Min,
            ..up.clone()
        };
        let mut h = History::default();
        assert_eq!(
            h.normalize_with_behavior(5, 100, 1, 100, &min_up, &down, t0)
                .replicas,
            9
        );
        let off = Rules {
            select: Select::Disabled,
            ..up
        };
        let mut h = History::default();
        assert_eq!(
            h.normalize_with_behavior(5, 100, 1, 100, &off, &down, t0)
                .replicas,
            5
        );
    }

    #[test]
    fn scale_down_is_stabilized_then_limited_by_its_policies() {
        let (up, _) = defaults();
        let down = Rules {
            stabilization: Duration::from_secs(60),
            select: Select::Max,
            policies: vec![
                Policy {
                    kind: PolicyKind::Pods,
                    value: 2,
                    period: Duration::from_secs(60),
                },
                Policy {
                    kind: PolicyKind::Percent,
                    value: 10,
                    period: Duration::from_secs(60),
                },
            ],
        };
        let mut h = History::default();
        let t0 = Instant::now();
        assert_eq!(
            h.normalize_with_behavior(10, 10, 1, 20, &up, &down, t0)
                .replicas,
            10
        );
        let d = h.normalize_with_behavior(10, 3, 1, 20, &up, &down, t0 + Duration::from_secs(30));
        assert_eq!((d.replicas, d.able_reason), (10, "ScaleDownStabilized"));
        // Past the window: Max picks the larger change, 2 pods over 10%.
        let d = h.normalize_with_behavior(10, 3, 1, 20, &up, &down, t0 + Duration::from_secs(100));
        assert_eq!((d.replicas, d.limit_reason), (8, "ScaleDownLimit"));
        h.scaled(
            10,
            8,
            Duration::from_secs(60),
            t0 + Duration::from_secs(100),
        );
        // Within the same period no more may go.
        let d = h.normalize_with_behavior(8, 3, 1, 20, &up, &down, t0 + Duration::from_secs(110));
        assert_eq!(d.replicas, 8);
    }

    #[test]
    fn a_scale_up_window_takes_the_lowest_recent_recommendation() {
        let (_, down) = defaults();
        let (mut up, _) = defaults();
        up.stabilization = Duration::from_secs(60);
        let mut h = History::default();
        let t0 = Instant::now();
        assert_eq!(
            h.normalize_with_behavior(2, 2, 1, 20, &up, &down, t0)
                .replicas,
            2
        );
        let d = h.normalize_with_behavior(2, 6, 1, 20, &up, &down, t0 + Duration::from_secs(10));
        assert_eq!((d.replicas, d.able_reason), (2, "ScaleUpStabilized"));
        let d = h.normalize_with_behavior(2, 6, 1, 20, &up, &down, t0 + Duration::from_secs(61));
        assert_eq!(d.replicas, 6);
    }
}
