//! A pod's status computed from what the runtime reports: phase (as
//! upstream's `getPhase`), conditions, IPs, and each container's state,
//! last state, readiness and restart count.

use crate::cri::api;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::HashMap;

/// One container as the runtime reports it.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub id: String,
    pub name: String,
    pub attempt: u32,
    pub sandbox_id: String,
    pub state: i32,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub image: String,
    pub image_ref: String,
}

impl Observed {
    pub fn running(&self) -> bool {
        self.state == api::ContainerState::ContainerRunning as i32
    }
    pub fn exited(&self) -> bool {
        self.state == api::ContainerState::ContainerExited as i32
    }
    pub fn succeeded(&self) -> bool {
        self.exited() && self.exit_code == 0
    }
}

/// Everything a status is computed from besides the pod itself.
pub struct Inputs<'a> {
    /// Containers newest first.
    pub containers: &'a [Observed],
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    /// Container name → why it is waiting (ErrImagePull, CrashLoopBackOff, ...).
    pub waiting: &'a HashMap<String, (String, String)>,
    /// Container id → (ready, started) from probes.
    pub probe: &'a (dyn Fn(&Container, &Observed) -> (bool, bool) + Sync),
    pub runtime_name: &'a str,
    pub start_time: Option<Time>,
    /// The phase was already final (Succeeded/Failed): it stays.
    pub terminal_phase: Option<String>,
}

fn time(nanos: i64) -> Option<Time> {
    (nanos > 0).then(|| Time(jiff::Timestamp::from_nanosecond(nanos as i128).unwrap_or_default()))
}

/// The newest two containers named `name`.
fn latest<'a>(
    containers: &'a [Observed],
    name: &str,
) -> (Option<&'a Observed>, Option<&'a Observed>) {
    let mut it = containers.iter().filter(|c| c.name == name);
    (it.next(), it.next())
}

fn terminated(c: &Observed, runtime: &str) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: c.exit_code,
        reason: Some(if c.reason.is_empty() {
            if c.exit_code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            }
        } else {
            c.reason.clone()
        }),
        message: (!c.message.is_empty()).then(|| c.message.clone()),
        started_at: time(c.started_at),
        finished_at: time(c.finished_at),
        container_id: Some(format!("{runtime}://{}", c.id)),
        signal: None,
    }
}

fn container_status(container: &Container, inputs: &Inputs<'_>) -> ContainerStatus {
    let (newest, previous) = latest(inputs.containers, &container.name);
    let waiting = inputs.waiting.get(&container.name);
    let (mut ready, mut started) = (false, false);
    let mut last_state = previous.filter(|p| p.exited()).map(|p| ContainerState {
        terminated: Some(terminated(p, inputs.runtime_name)),
        ..Default::default()
    });
    let state = match (newest, waiting) {
        (Some(c), Some((reason, message))) if !c.running() => {
            // Waiting to restart: the exit just seen is the last state.
            if c.exited() {
                last_state = Some(ContainerState {
                    terminated: Some(terminated(c, inputs.runtime_name)),
                    ..Default::default()
                });
            }
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: Some(message.clone()),
                }),
                ..Default::default()
            }
        }
        (Some(c), _) if c.running() => {
            (ready, started) = (inputs.probe)(container, c);
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: time(c.started_at),
                }),
                ..Default::default()
            }
        }
        (Some(c), _) if c.exited() => ContainerState {
            terminated: Some(terminated(c, inputs.runtime_name)),
            ..Default::default()
        },
        (_, Some((reason, message))) => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: (!message.is_empty()).then(|| message.clone()),
            }),
            ..Default::default()
        },
        _ => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".into()),
                message: None,
            }),
            ..Default::default()
        },
    };
    ContainerStatus {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        image_id: newest.map(|c| c.image_ref.clone()).unwrap_or_default(),
        container_id: newest.map(|c| format!("{}://{}", inputs.runtime_name, c.id)),
        ready,
        started: Some(started),
        restart_count: newest.map(|c| c.attempt as i32).unwrap_or(0),
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ..Default::default()
    }
}

fn condition(
    kind: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    old: &[PodCondition],
    now: jiff::Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let transition = old
        .iter()
        .find(|c| c.type_ == kind && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    PodCondition {
        type_: kind.into(),
        status: status.into(),
        reason: if ok { None } else { reason.map(String::from) },
        message: if ok { None } else { message },
        last_transition_time: Some(transition),
        last_probe_time: None,
        observed_generation: None,
    }
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The pod's status.
pub fn compute(pod: &Pod, inputs: &Inputs<'_>) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let old_conditions = old.conditions.clone().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let init_statuses: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_status(c, inputs))
        .collect();
    let statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, inputs))
        .collect();

    // Initialized: every regular init container succeeded, every sidecar started.
    let mut pending_init = Vec::new();
    let mut init_failed = false;
    for (c, s) in spec.init_containers.iter().flatten().zip(&init_statuses) {
        let state = s.state.clone().unwrap_or_default();
        let done = if is_sidecar(c) {
            s.started == Some(true)
        } else {
            state.terminated.as_ref().is_some_and(|t| t.exit_code == 0)
        };
        if state.terminated.as_ref().is_some_and(|t| t.exit_code != 0)
            && policy == "Never"
            && !is_sidecar(c)
        {
            init_failed = true;
        }
        if !done {
            pending_init.push(c.name.clone());
        }
    }
    let initialized = pending_init.is_empty();

    let (mut running, mut waiting, mut stopped, mut failed) = (0, 0, 0, 0);
    for s in &statuses {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code != 0 {
                failed += 1;
            }
        } else if s
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .is_some()
        {
            // Waiting to restart after an exit counts as stopped.
            stopped += 1;
            failed += 1;
        } else {
            waiting += 1;
        }
    }
    let phase = if let Some(phase) = &inputs.terminal_phase {
        phase.clone()
    } else if init_failed {
        "Failed".into()
    } else if !initialized || waiting > 0 {
        "Pending".into()
    } else if running > 0 {
        "Running".into()
    } else if stopped > 0 {
        match policy.as_str() {
            "Always" => "Running".into(),
            "OnFailure" if failed == 0 => "Succeeded".into(),
            "OnFailure" => "Running".into(),
            _ if failed > 0 => "Failed".into(),
            _ => "Succeeded".into(),
        }
    } else {
        "Pending".into()
    };
    let terminal = phase == "Succeeded" || phase == "Failed";

    let unready: Vec<String> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.clone())
        .collect();
    let containers_ready = unready.is_empty() && !terminal;
    let gates_ok = spec.readiness_gates.iter().flatten().all(|g| {
        old_conditions
            .iter()
            .any(|c| c.type_ == g.condition_type && c.status == "True")
    });
    let (not_ready_reason, not_ready_message) = if terminal {
        ("PodCompleted", None)
    } else {
        (
            "ContainersNotReady",
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let mut conditions = vec![
        condition(
            "PodReadyToStartContainers",
            inputs.sandbox_ready,
            None,
            None,
            &old_conditions,
            now,
        ),
        condition(
            "Initialized",
            initialized,
            Some(if terminal && !initialized {
                "PodCompleted"
            } else {
                "ContainersNotInitialized"
            }),
            Some(format!(
                "containers with incomplete status: [{}]",
                pending_init.join(" ")
            )),
            &old_conditions,
            now,
        ),
        condition(
            "Ready",
            containers_ready && gates_ok,
            Some(if containers_ready {
                "ReadinessGatesNotReady"
            } else {
                not_ready_reason
            }),
            not_ready_message.clone(),
            &old_conditions,
            now,
        ),
        condition(
            "ContainersReady",
            containers_ready,
            Some(not_ready_reason),
            not_ready_message,
            &old_conditions,
            now,
        ),
    ];
    // Conditions others own (PodScheduled, DisruptionTarget, readiness gates) stay.
    for c in &old_conditions {
        if !conditions.iter().any(|n| n.type_ == c.type_) {
            conditions.push(c.clone());
        }
    }
    let pod_ips = inputs.pod_ip.clone().map(|ip| vec![PodIP { ip }]);
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        host_ip: Some(inputs.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: inputs.host_ip.clone(),
        }]),
        pod_ip: inputs.pod_ip.clone(),
        pod_ips,
        start_time: inputs.start_time.clone(),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        qos_class: Some(crate::cgroups::qos_class(pod).into()),
        nominated_node_name: old.nominated_node_name.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(policy: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]},
            "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}
        }))
        .unwrap()
    }

    fn observed(name: &str, state: api::ContainerState, code: i32, attempt: u32) -> Observed {
        Observed {
            id: format!("{name}{attempt}"),
            name: name.into(),
            attempt,
            state: state as i32,
            exit_code: code,
            started_at: 1,
            ..Default::default()
        }
    }

    fn status(
        pod: &Pod,
        containers: &[Observed],
        waiting: &HashMap<String, (String, String)>,
    ) -> PodStatus {
        let probe = |_: &Container, _: &Observed| (true, true);
        compute(
            pod,
            &Inputs {
                containers,
                sandbox_ready: true,
                pod_ip: Some("10.1.0.2".into()),
                host_ip: "192.0.2.1".into(),
                waiting,
                probe: &probe,
                runtime_name: "containerd",
                start_time: None,
                terminal_phase: None,
            },
        )
    }

    fn cond(s: &PodStatus, kind: &str) -> String {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == kind)
            .unwrap()
            .status
            .clone()
    }

    #[test]
    fn phases() {
        use api::ContainerState::*;
        let none = HashMap::new();
        let p = pod("Always");
        let s = status(&p, &[], &none);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let both = [
            observed("a", ContainerRunning, 0, 0),
            observed("b", ContainerRunning, 0, 0),
        ];
        let s = status(&p, &both, &none);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Ready"), "True");
        assert_eq!(cond(&s, "PodScheduled"), "True");

        let done = [
            observed("a", ContainerExited, 0, 0),
            observed("b", ContainerExited, 0, 0),
        ];
        assert_eq!(
            status(&pod("Never"), &done, &none).phase.as_deref(),
            Some("Succeeded")
        );
        assert_eq!(
            status(&pod("OnFailure"), &done, &none).phase.as_deref(),
            Some("Succeeded")
        );
        assert_eq!(
            status(&pod("Always"), &done, &none).phase.as_deref(),
            Some("Running")
        );
        let one_failed = [
            observed("a", ContainerExited, 1, 0),
            observed("b", ContainerExited, 0, 0),
        ];
        let s = status(&pod("Never"), &one_failed, &none);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == "Ready")
                .unwrap()
                .reason
                .as_deref(),
            Some("PodCompleted")
        );
    }

    #[test]
    fn crash_loop_shows_waiting_with_last_state() {
        use api::ContainerState::*;
        let p = pod("Always");
        let waiting = HashMap::from([(
            "a".to_string(),
            ("CrashLoopBackOff".to_string(), "back-off 10s".to_string()),
        )]);
        let containers = [
            observed("a", ContainerExited, 2, 3),
            observed("b", ContainerRunning, 0, 0),
        ];
        let s = status(&p, &containers, &waiting);
        let a = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(a.restart_count, 3);
        assert_eq!(
            a.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("CrashLoopBackOff")
        );
        assert_eq!(
            a.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            2
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Ready"), "False");
    }
}
