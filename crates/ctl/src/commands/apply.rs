//! `skiffctl apply -f` (server-side apply) and `skiffctl create -f`.

use anyhow::{Result, bail};
use http::Method;
use serde_json::Value;

use crate::config::{Ctx, GlobalArgs};
use crate::discovery::ResourceType;
use crate::manifest::{self, Doc};
use crate::rest;

/// Apply a configuration by file name or stdin.
#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    /// Files, directories or `-` (stdin) holding the objects.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Read directories recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Server-side apply (what skiffctl always does; accepted for kubectl's scripts).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub server_side: Option<bool>,
    /// Take ownership of fields another manager owns.
    #[arg(long)]
    pub force_conflicts: bool,
    /// The field manager recorded for the applied fields.
    #[arg(long, default_value = "skiffctl")]
    pub field_manager: String,
    /// `none` or `server`: `server` sends the request without persisting it.
    #[arg(long, num_args = 0..=1, default_missing_value = "server", default_value = "none")]
    pub dry_run: String,
    /// `name` prints only `kind/name`.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Create a resource from a file or from stdin.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// Files, directories or `-` (stdin) holding the objects.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Read directories recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// `none` or `server`.
    #[arg(long, num_args = 0..=1, default_missing_value = "server", default_value = "none")]
    pub dry_run: String,
    /// `name` prints only `kind/name`.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Where a document goes: its type, namespace and name.
pub(crate) struct Target<'a> {
    pub t: &'a ResourceType,
    pub namespace: Option<String>,
    pub name: String,
}

/// Resolves a document's type and namespace, checking `-n` agrees.
pub(crate) async fn target<'a>(ctx: &'a Ctx, doc: &Doc, need_name: bool) -> Result<Target<'a>> {
    let o = &doc.object;
    let resources = ctx.resources().await?;
    let t = resources
        .by_kind(
            o["apiVersion"].as_str().unwrap_or(""),
            o["kind"].as_str().unwrap_or(""),
        )
        .map_err(|e| anyhow::anyhow!("resource mapping not found for {}: {e}", doc.origin()))?;
    let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
    if need_name && name.is_empty() {
        bail!(
            "error when retrieving current configuration of {}: resource name may not be empty",
            doc.origin()
        );
    }
    let namespace = if t.namespaced {
        let own = o["metadata"]["namespace"]
            .as_str()
            .filter(|s| !s.is_empty());
        match own {
            Some(ns) if ctx.explicit_namespace && ns != ctx.namespace => bail!(
                "the namespace from the provided object \"{ns}\" does not match the namespace \"{}\". You must pass '--namespace={ns}' to perform this operation.",
                ctx.namespace
            ),
            Some(ns) => Some(ns.to_string()),
            None => Some(ctx.namespace.clone()),
        }
    } else {
        None
    };
    Ok(Target { t, namespace, name })
}

/// The server's refusal, naming the file, the document and each field.
pub(crate) fn explain_failure(verb: &str, doc: &Doc, e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(s) => {
            let head = format!(
                "Error from server ({}): error when {verb} {}: {}",
                s.reason,
                doc.origin(),
                s.message
            );
            let causes: Vec<String> = s
                .details
                .as_ref()
                .map(|d| {
                    d.causes
                        .iter()
                        .filter(|c| !c.field.is_empty() && !s.message.contains(&c.field))
                        .map(|c| format!("{}: {}", c.field, c.message))
                        .collect()
                })
                .unwrap_or_default();
            if causes.is_empty() {
                anyhow::anyhow!("{head}")
            } else {
                anyhow::anyhow!("{head} [{}]", causes.join(", "))
            }
        }
        other => anyhow::Error::from(other).context(format!("error when {verb} {}", doc.origin())),
    }
}

pub async fn apply(args: ApplyArgs) -> Result<()> {
    let ctx = args.global.connect().await?;
    let docs = manifest::read_all(&args.files, args.recursive)?;
    let dry = dry_run(&args.dry_run)?;
    let mut failed = false;
    for doc in &docs {
        match apply_one(&ctx, &args, doc, dry).await {
            Ok(line) => println!("{line}"),
            Err(e) => {
                failed = true;
                eprintln!("{}", text_of(&e));
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

/// The error text: our own messages already read as kubectl's.
fn text_of(e: &anyhow::Error) -> String {
    let s = e.to_string();
    if s.starts_with("Error from server") {
        s
    } else {
        rest::error_text(e)
    }
}

fn dry_run(s: &str) -> Result<bool> {
    match s {
        "none" | "false" => Ok(false),
        "server" | "true" => Ok(true),
        "client" => bail!("--dry-run=client is not supported; use --dry-run=server"),
        o => bail!("Invalid dry-run value ({o}). Must be \"none\", \"server\", or \"client\"."),
    }
}

async fn apply_one(ctx: &Ctx, args: &ApplyArgs, doc: &Doc, dry: bool) -> Result<String> {
    let target = target(ctx, doc, true).await?;
    let t = target.t;
    let uri = t.path(target.namespace.as_deref(), Some(&target.name));
    let before = match rest::get(&ctx.client, &uri).await {
        Ok(v) => Some(v),
        Err(e) if rest::is_not_found(&e) => None,
        Err(e) => {
            return Err(explain_failure(
                "retrieving current configuration of",
                doc,
                e,
            ));
        }
    };
    let mut body = doc.object.clone();
    if let Some(ns) = &target.namespace {
        body["metadata"]["namespace"] = Value::String(ns.clone());
    }
    let mut q = vec![
        ("fieldManager", args.field_manager.clone()),
        ("fieldValidation", "Strict".to_string()),
    ];
    if args.force_conflicts {
        q.push(("force", "true".into()));
    }
    if dry {
        q.push(("dryRun", "All".into()));
    }
    let after = rest::patch(
        &ctx.client,
        &format!("{uri}{}", rest::query(&q)),
        "application/apply-patch+yaml",
        &body,
    )
    .await
    .map_err(|e| explain_failure("applying", doc, e))?;
    let what = format!("{}/{}", t.name_prefix(), target.name);
    if args.output.as_deref() == Some("name") {
        return Ok(what);
    }
    let verb = if args.server_side == Some(true) {
        "serverside-applied"
    } else {
        match before {
            None => "created",
            Some(b) if b["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"] => {
                "unchanged"
            }
            Some(_) => "configured",
        }
    };
    let suffix = if dry { " (server dry run)" } else { "" };
    Ok(format!("{what} {verb}{suffix}"))
}

pub async fn create(args: CreateArgs) -> Result<()> {
    let ctx = args.global.connect().await?;
    let docs = manifest::read_all(&args.files, args.recursive)?;
    let dry = dry_run(&args.dry_run)?;
    let mut failed = false;
    for doc in &docs {
        match create_one(&ctx, &args, doc, dry).await {
            Ok(line) => println!("{line}"),
            Err(e) => {
                failed = true;
                eprintln!("{}", text_of(&e));
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

async fn create_one(ctx: &Ctx, args: &CreateArgs, doc: &Doc, dry: bool) -> Result<String> {
    let target = target(ctx, doc, false).await?;
    let t = target.t;
    let mut body = doc.object.clone();
    if let Some(ns) = &target.namespace {
        body["metadata"]["namespace"] = Value::String(ns.clone());
    }
    let mut q = vec![("fieldValidation", "Strict".to_string())];
    if dry {
        q.push(("dryRun", "All".into()));
    }
    let uri = format!(
        "{}{}",
        t.path(target.namespace.as_deref(), None),
        rest::query(&q)
    );
    let created = rest::send_json(&ctx.client, Method::POST, &uri, &body)
        .await
        .map_err(|e| explain_failure("creating", doc, e))?;
    let what = format!(
        "{}/{}",
        t.name_prefix(),
        created["metadata"]["name"].as_str().unwrap_or(&target.name)
    );
    if args.output.as_deref() == Some("name") {
        return Ok(what);
    }
    let suffix = if dry { " (server dry run)" } else { "" };
    Ok(format!("{what} created{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::response::StatusDetails;

    #[test]
    fn refusals_name_the_file_document_and_fields() {
        let doc = Doc {
            source: "bad.yaml".into(),
            index: 2,
            object: Value::Null,
        };
        let status = kube::core::Status::failure("Deployment.apps \"web\" is invalid", "Invalid")
            .with_code(422)
            .with_details(
                serde_json::from_value::<StatusDetails>(serde_json::json!({"causes": [{
                    "reason": "FieldValueInvalid",
                    "message": "Invalid value: -1: must be greater than or equal to 0",
                    "field": "spec.replicas"}]}))
                .unwrap(),
            );
        let e = explain_failure("applying", &doc, kube::Error::Api(Box::new(status)));
        assert_eq!(
            e.to_string(),
            "Error from server (Invalid): error when applying \"bad.yaml\" (document 2): Deployment.apps \"web\" is invalid [spec.replicas: Invalid value: -1: must be greater than or equal to 0]"
        );
    }

    #[test]
    fn dry_run_values_are_kubectls() {
        assert!(!dry_run("none").unwrap());
        assert!(dry_run("server").unwrap());
        assert!(dry_run("bogus").is_err());
    }
}
