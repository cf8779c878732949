//! One module per verb.

use anyhow::Result;

use crate::config::GlobalArgs;

pub mod api_resources;
pub mod apply;
pub mod completion;
pub mod delete;
pub mod describe;
pub mod edit;
pub mod exec;
pub mod explain;
pub mod get;
pub mod logs;
pub mod node;
pub mod port_forward;
pub mod rollout;
pub mod scale;
pub mod top;
pub mod version;

/// The client verbs.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Verb {
    /// Display one or many resources.
    Get(get::Args),
    /// Show details of a specific resource or group of resources.
    Describe(describe::Args),
    /// Apply a configuration to a resource by file name or stdin (server-side apply).
    Apply(apply::ApplyArgs),
    /// Create a resource from a file or from stdin.
    Create(apply::CreateArgs),
    /// Delete resources by file names, stdin, resources and names, or by resources and label selector.
    Delete(delete::Args),
    /// Edit a resource on the server with $EDITOR.
    Edit(edit::Args),
    /// Set a new size for a deployment, replica set, replication controller, or stateful set.
    Scale(scale::Args),
    /// Manage the rollout of a resource.
    Rollout(rollout::Args),
    /// Mark node as unschedulable.
    Cordon(node::CordonArgs),
    /// Mark node as schedulable.
    Uncordon(node::CordonArgs),
    /// Drain node in preparation for maintenance.
    Drain(node::DrainArgs),
    /// Print the logs for a container in a pod.
    Logs(logs::Args),
    /// Execute a command in a container.
    Exec(exec::Args),
    /// Forward one or more local ports to a pod.
    PortForward(port_forward::Args),
    /// Display resource (CPU/memory) usage.
    Top(top::Args),
    /// Print the supported API resources on the server.
    ApiResources(api_resources::Args),
    /// Get documentation for a resource.
    Explain(explain::Args),
    /// Output shell completion code for the specified shell (bash or zsh).
    Completion(completion::Args),
    /// Print the client and server version information.
    Version(version::Args),
}

impl Verb {
    fn global_mut(&mut self) -> Option<&mut GlobalArgs> {
        Some(match self {
            Verb::Get(a) => &mut a.global,
            Verb::Describe(a) => &mut a.global,
            Verb::Apply(a) => &mut a.global,
            Verb::Create(a) => &mut a.global,
            Verb::Delete(a) => &mut a.global,
            Verb::Edit(a) => &mut a.global,
            Verb::Scale(a) => &mut a.global,
            Verb::Rollout(a) => &mut a.global,
            Verb::Cordon(a) | Verb::Uncordon(a) => &mut a.global,
            Verb::Drain(a) => &mut a.global,
            Verb::Logs(a) => &mut a.global,
            Verb::Exec(a) => &mut a.global,
            Verb::PortForward(a) => &mut a.global,
            Verb::Top(a) => &mut a.global,
            Verb::ApiResources(a) => &mut a.global,
            Verb::Explain(a) => &mut a.global,
            Verb::Version(a) => &mut a.global,
            Verb::Completion(_) => return None,
        })
    }
}

impl GlobalArgs {
    /// Fills flags given after the verb with those given before it.
    pub fn fill_from(&mut self, outer: &GlobalArgs) {
        let GlobalArgs {
            kubeconfig,
            context,
            namespace,
            server,
            request_timeout,
        } = outer.clone();
        self.kubeconfig = self.kubeconfig.take().or(kubeconfig);
        self.context = self.context.take().or(context);
        self.namespace = self.namespace.take().or(namespace);
        self.server = self.server.take().or(server);
        self.request_timeout = self.request_timeout.take().or(request_timeout);
    }
}

pub(crate) async fn run(
    mut verb: Verb,
    outer: &GlobalArgs,
    cli: fn() -> clap::Command,
) -> Result<()> {
    if let Some(g) = verb.global_mut() {
        g.fill_from(outer);
    }
    match verb {
        Verb::Get(a) => get::run(a).await,
        Verb::Describe(a) => describe::run(a).await,
        Verb::Apply(a) => apply::apply(a).await,
        Verb::Create(a) => apply::create(a).await,
        Verb::Delete(a) => delete::run(a).await,
        Verb::Edit(a) => edit::run(a).await,
        Verb::Scale(a) => scale::run(a).await,
        Verb::Rollout(a) => rollout::run(a).await,
        Verb::Cordon(a) => node::cordon(a, true).await,
        Verb::Uncordon(a) => node::cordon(a, false).await,
        Verb::Drain(a) => node::drain(a).await,
        Verb::Logs(a) => logs::run(a).await,
        Verb::Exec(a) => exec::run(a).await,
        Verb::PortForward(a) => port_forward::run(a).await,
        Verb::Top(a) => top::run(a).await,
        Verb::ApiResources(a) => api_resources::run(a).await,
        Verb::Explain(a) => explain::run(a).await,
        Verb::Completion(a) => completion::run(a, cli),
        Verb::Version(a) => version::run(a).await,
    }
}

/// Resolves `TYPE NAME...` or `TYPE/NAME...` to types and names.
pub(crate) async fn named<'a>(
    ctx: &'a crate::config::Ctx,
    targets: &[String],
) -> Result<Vec<(&'a crate::discovery::ResourceType, String)>> {
    let reqs = get::parse_targets(targets)?;
    let mut out = Vec::new();
    for (t, names) in get::resolve(ctx.resources().await?, &reqs)? {
        if names.is_empty() {
            anyhow::bail!("resource name may not be empty");
        }
        for n in names {
            out.push((t, n));
        }
    }
    Ok(out)
}

/// The pod a `logs`/`exec`/`port-forward` target names: `NAME` or
/// `pod/NAME` itself, or one pod selected by a service's or workload's
/// selector (`svc/web`, `deploy/web`), running ones first.
pub(crate) async fn pod_for(ctx: &crate::config::Ctx, target: &str) -> Result<serde_json::Value> {
    use crate::rest;
    let (type_name, name) = match target.split_once('/') {
        Some((t, n)) => (t, n),
        None => ("pods", target),
    };
    let t = ctx.resources().await?.resolve(type_name)?;
    let obj = rest::get(&ctx.client, &t.path(Some(&ctx.namespace), Some(name))).await?;
    if t.kind == "Pod" && t.group.is_empty() {
        return Ok(obj);
    }
    let selector = if t.kind == "Service" {
        obj["spec"]["selector"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(",")
    } else {
        rollout::match_labels(&obj["spec"]["selector"])
    };
    if selector.is_empty() {
        anyhow::bail!(
            "cannot attach to {}/{name}: selector for it is empty",
            t.name_prefix()
        );
    }
    let list = rest::get(
        &ctx.client,
        &format!(
            "/api/v1/namespaces/{}/pods{}",
            ctx.namespace,
            rest::query(&[("labelSelector", selector)])
        ),
    )
    .await?;
    let mut pods: Vec<serde_json::Value> = list["items"].as_array().cloned().unwrap_or_default();
    pods.retain(|p| p["metadata"]["deletionTimestamp"].is_null());
    pods.sort_by_key(|p| p["status"]["phase"] != "Running");
    pods.into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no pods found for {}/{name}", t.name_prefix()))
}

/// The container to use: `-c`, the `kubectl.kubernetes.io/default-container`
/// annotation, or the first (saying so when there are several).
pub(crate) fn container_of(pod: &serde_json::Value, wanted: Option<&str>) -> Result<String> {
    let names: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
    if let Some(w) = wanted {
        let known = names.contains(&w)
            || ["initContainers", "ephemeralContainers"].iter().any(|k| {
                pod["spec"][k]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["name"] == w)
            });
        if !known {
            anyhow::bail!("container {w} is not valid for pod {pod_name}");
        }
        return Ok(w.to_string());
    }
    if let Some(d) =
        pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"].as_str()
        && names.contains(&d)
    {
        return Ok(d.to_string());
    }
    let Some(first) = names.first() else {
        anyhow::bail!("pod {pod_name} has no containers");
    };
    if names.len() > 1 {
        eprintln!(
            "Defaulted container \"{first}\" out of: {}",
            names.join(", ")
        );
    }
    Ok(first.to_string())
}
