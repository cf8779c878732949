//! `skiffctl edit`: the object in `$KUBE_EDITOR`/`$EDITOR`, written back with
//! an update; on an error the editor reopens with the error on top.

use anyhow::{Context as _, Result, bail};
use http::Method;
use serde_json::Value;

use crate::config::GlobalArgs;
use crate::output;
use crate::rest;

/// Edit a resource on the server.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    pub targets: Vec<String>,
    /// yaml or json.
    #[arg(short = 'o', long, default_value = "yaml")]
    pub output: String,
    /// Edit this subresource (`status`).
    #[arg(long)]
    pub subresource: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

const HEADER: &str = "# Please edit the object below. Lines beginning with a '#' will be ignored,\n# and an empty file will abort the edit. If an error occurs while saving this file will be\n# reopened with the relevant failures.\n#\n";

/// The edited text without the comment lines on top.
pub fn strip_comments(text: &str) -> String {
    let mut lines = text.lines().peekable();
    while lines.peek().is_some_and(|l| l.starts_with('#')) {
        lines.next();
    }
    let mut out = lines.collect::<Vec<_>>().join("\n");
    out.push('\n');
    out
}

fn editor() -> String {
    std::env::var("KUBE_EDITOR")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into())
}

pub async fn run(args: Args) -> Result<()> {
    let ctx = args.global.connect().await?;
    let json_mode = match args.output.as_str() {
        "yaml" => false,
        "json" => true,
        o => bail!("the edit mode must be yaml or json, not {o:?}"),
    };
    for (t, name) in super::named(&ctx, &args.targets).await? {
        let mut uri = t.path(Some(&ctx.namespace), Some(&name));
        if let Some(s) = &args.subresource {
            uri = format!("{uri}/{s}");
        }
        let original = rest::get(&ctx.client, &uri).await?;
        let original_text = if json_mode {
            output::json(&original)
        } else {
            output::yaml(&original)?
        };
        let mut content = original_text.clone();
        let mut error: Option<String> = None;
        let mut last_failed: Option<String> = None;
        let file = tempfile::Builder::new()
            .prefix("skiffctl-edit-")
            .suffix(if json_mode { ".json" } else { ".yaml" })
            .tempfile()?;
        loop {
            let mut text = HEADER.to_string();
            if let Some(e) = &error {
                text.push_str(&format!("# {}/{name} was not valid:\n", t.name_prefix()));
                for l in e.lines() {
                    text.push_str(&format!("# * {l}\n"));
                }
                text.push_str("#\n");
            }
            text.push_str(&content);
            std::fs::write(file.path(), &text)?;
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{} \"$1\"", editor()))
                .arg("sh")
                .arg(file.path())
                .status()
                .context("starting the editor")?;
            if !status.success() {
                bail!("the editor exited with {status}");
            }
            let edited = strip_comments(&std::fs::read_to_string(file.path())?);
            if edited.trim().is_empty() {
                bail!("Edit cancelled, saved file was empty.");
            }
            if edited == original_text {
                println!("Edit cancelled, no changes made.");
                break;
            }
            if last_failed.as_deref() == Some(edited.as_str()) {
                let keep = tempfile::Builder::new()
                    .prefix("skiffctl-edit-")
                    .suffix(".yaml")
                    .disable_cleanup(true)
                    .tempfile()?;
                std::fs::write(keep.path(), &edited)?;
                bail!(
                    "Edit cancelled, no valid changes were saved.\nA copy of your changes has been stored to \"{}\"",
                    keep.path().display()
                );
            }
            let parsed: Result<Value> = if json_mode {
                serde_json::from_str(&edited).map_err(Into::into)
            } else {
                serde_saphyr::from_str_with_options::<Value>(
                    &edited,
                    crate::manifest::yaml_options(),
                )
                .map_err(|e| anyhow::anyhow!("{e}"))
            };
            let result = match parsed {
                Err(e) => Err(format!("error parsing the edited object: {e}")),
                Ok(obj) => rest::send_json(
                    &ctx.client,
                    Method::PUT,
                    &format!("{uri}?fieldValidation=Strict"),
                    &obj,
                )
                .await
                .map_err(|e| match e {
                    kube::Error::Api(s) => {
                        let mut m = s.message.clone();
                        for c in s.details.iter().flat_map(|d| d.causes.iter()) {
                            if !c.field.is_empty() && !m.contains(&c.field) {
                                m.push_str(&format!("\n{}: {}", c.field, c.message));
                            }
                        }
                        m
                    }
                    other => other.to_string(),
                }),
            };
            match result {
                Ok(_) => {
                    println!("{}/{name} edited", t.name_prefix());
                    break;
                }
                Err(e) => {
                    error = Some(e);
                    last_failed = Some(edited.clone());
                    content = edited;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_comment_lines_are_dropped() {
        assert_eq!(
            strip_comments("# a\n# b\nkind: X\n# kept\n"),
            "kind: X\n# kept\n"
        );
    }
}
