//! `skiffctl get`: tables from the server's Table, or objects in a format.

use std::io::Write as _;

use anyhow::{Result, bail};
use futures::TryStreamExt;
use serde_json::Value;

use crate::config::{Ctx, GlobalArgs};
use crate::discovery::{ResourceType, Resources};
use crate::output::{self, Format};
use crate::rest;

/// Display one or many resources.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// TYPE[.GROUP] [NAME...], TYPE/NAME..., or a comma-separated list of types.
    #[arg(value_name = "TYPE [NAME...]")]
    pub targets: Vec<String>,
    /// Selector (label query) to filter on, e.g. -l key1=value1,key2=value2.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Selector (field query) to filter on, e.g. --field-selector status.phase=Running.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// List the requested objects across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output format: wide, yaml, json, name, jsonpath=TEMPLATE.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// After listing, watch for changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Watch for changes without listing first.
    #[arg(long)]
    pub watch_only: bool,
    /// Don't print headers.
    #[arg(long)]
    pub no_headers: bool,
    /// Show all labels as the last column.
    #[arg(long)]
    pub show_labels: bool,
    /// Treat "resource not found" as success.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Keep metadata.managedFields in JSON and YAML output.
    #[arg(long)]
    pub show_managed_fields: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// What to fetch: a type and names (none for a list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub type_name: String,
    pub names: Vec<String>,
}

/// Splits `get`'s arguments as kubectl does: `pods a b`, `pods,svc`,
/// `pod/a svc/b`.
pub fn parse_targets(args: &[String]) -> Result<Vec<Request>> {
    let Some(first) = args.first() else {
        bail!(
            "You must specify the type of resource to get. Use \"skiffctl api-resources\" for a complete list of supported resources."
        );
    };
    if first.contains('/') {
        let mut out: Vec<Request> = Vec::new();
        for a in args {
            let Some((t, n)) = a.split_once('/') else {
                bail!(
                    "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'skiffctl get resource/<resource_name>' instead of 'skiffctl get resource resource/<resource_name>'"
                );
            };
            match out.iter_mut().find(|r| r.type_name == t) {
                Some(r) => r.names.push(n.to_string()),
                None => out.push(Request {
                    type_name: t.to_string(),
                    names: vec![n.to_string()],
                }),
            }
        }
        return Ok(out);
    }
    let types: Vec<&str> = first.split(',').filter(|s| !s.is_empty()).collect();
    let names: Vec<String> = args[1..].to_vec();
    if types.len() > 1 && !names.is_empty() {
        bail!("arguments in resource/name form must have a single resource and name");
    }
    Ok(types
        .into_iter()
        .map(|t| Request {
            type_name: t.to_string(),
            names: names.clone(),
        })
        .collect())
}

/// Expands `all` and resolves each type name.
pub fn resolve<'a>(
    resources: &'a Resources,
    reqs: &[Request],
) -> Result<Vec<(&'a ResourceType, Vec<String>)>> {
    let mut out = Vec::new();
    for r in reqs {
        if r.type_name == "all" {
            for t in resources.in_category("all") {
                out.push((t, r.names.clone()));
            }
        } else {
            out.push((resources.resolve(&r.type_name)?, r.names.clone()));
        }
    }
    Ok(out)
}

pub async fn run(args: Args) -> Result<()> {
    let ctx = args.global.connect().await?;
    let format = Format::parse(args.output.as_deref())?;
    let reqs = parse_targets(&args.targets)?;
    let resources = ctx.resources().await?;
    let targets = resolve(resources, &reqs)?;
    let several = targets.len() > 1 || reqs.iter().any(|r| r.type_name == "all");
    let ns = (!args.all_namespaces).then_some(ctx.namespace.as_str());
    let list_query = rest::query(&[
        ("labelSelector", args.selector.clone().unwrap_or_default()),
        (
            "fieldSelector",
            args.field_selector.clone().unwrap_or_default(),
        ),
    ]);
    let mut failed = false;
    let mut stdout = std::io::stdout().lock();

    if args.watch || args.watch_only {
        if targets.len() != 1 {
            bail!("you may only specify a single resource type when watching");
        }
        drop(stdout);
        let (t, names) = &targets[0];
        return watch(&ctx, &args, &format, t, names, ns).await;
    }

    if format.is_table() {
        let mut printed_any = false;
        for (t, names) in &targets {
            let mut tables = Vec::new();
            if names.is_empty() {
                let uri = format!("{}{list_query}", t.path(ns, None));
                tables.push(rest::get_table(&ctx.client, &uri).await?);
            } else {
                for n in names {
                    match rest::get_table(&ctx.client, &t.path(Some(&ctx.namespace), Some(n))).await
                    {
                        Ok(tab) => tables.push(tab),
                        Err(e) if rest::is_not_found(&e) && args.ignore_not_found => {}
                        Err(e) => {
                            failed = true;
                            eprintln!("{}", rest::error_text(&e.into()));
                        }
                    }
                }
            }
            let table = merge_tables(tables);
            if table["rows"].as_array().is_none_or(|r| r.is_empty()) {
                continue;
            }
            if printed_any {
                writeln!(stdout)?;
            }
            printed_any = true;
            let opts = TableOptions {
                wide: matches!(format, Format::Wide),
                namespace_column: args.all_namespaces && t.namespaced,
                show_labels: args.show_labels,
                name_prefix: several.then(|| t.name_prefix()),
            };
            let (headers, rows) = table_rows(&table, &opts);
            write!(
                stdout,
                "{}",
                output::plain_table(&headers, &rows, args.no_headers)
            )?;
        }
        if !printed_any && !failed && targets.iter().all(|(_, n)| n.is_empty()) {
            if args.all_namespaces || targets.iter().all(|(t, _)| !t.namespaced) {
                eprintln!("No resources found");
            } else {
                eprintln!("No resources found in {} namespace.", ctx.namespace);
            }
        }
    } else {
        let mut items = Vec::new();
        let mut single = None;
        for (t, names) in &targets {
            if names.is_empty() {
                let uri = format!("{}{list_query}", t.path(ns, None));
                let list = rest::get(&ctx.client, &uri).await?;
                for mut item in list["items"].as_array().cloned().unwrap_or_default() {
                    item["apiVersion"] = Value::String(t.api_version());
                    item["kind"] = Value::String(t.kind.clone());
                    items.push(item);
                }
            } else {
                for n in names {
                    match rest::get(&ctx.client, &t.path(Some(&ctx.namespace), Some(n))).await {
                        Ok(obj) => items.push(obj),
                        Err(e) if rest::is_not_found(&e) && args.ignore_not_found => {}
                        Err(e) => {
                            failed = true;
                            eprintln!("{}", rest::error_text(&e.into()));
                        }
                    }
                }
                if targets.len() == 1 && names.len() == 1 {
                    single = items.pop();
                }
            }
        }
        let mut value = match single {
            Some(obj) => obj,
            None => output::list(items),
        };
        if !args.show_managed_fields {
            strip_managed_fields(&mut value);
        }
        let prefix = |v: &Value| prefix_of(resources, v);
        if !(failed
            && value["kind"] == "List"
            && value["items"].as_array().is_some_and(|a| a.is_empty()))
        {
            write!(stdout, "{}", output::print_value(&format, &value, &prefix)?)?;
        }
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

/// Drops `metadata.managedFields` from an object or a List's items, as
/// kubectl hides them by default.
pub fn strip_managed_fields(v: &mut Value) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
        for item in items {
            strip_managed_fields(item);
        }
    }
}

/// `kind.group` for `-o name`, from an object's apiVersion and kind.
pub fn prefix_of(resources: &Resources, v: &Value) -> String {
    let av = v["apiVersion"].as_str().unwrap_or("");
    let kind = v["kind"].as_str().unwrap_or("");
    match resources.by_kind(av, kind) {
        Ok(t) => t.name_prefix(),
        Err(_) => kind.to_lowercase(),
    }
}

/// How a server Table becomes rows.
#[derive(Debug, Clone, Default)]
pub struct TableOptions {
    pub wide: bool,
    pub namespace_column: bool,
    pub show_labels: bool,
    /// `pod` to print names as `pod/web`.
    pub name_prefix: Option<String>,
}

/// Joins several one-object Tables into one.
fn merge_tables(tables: Vec<Value>) -> Value {
    let mut it = tables.into_iter();
    let Some(mut first) = it.next() else {
        return Value::Null;
    };
    for t in it {
        if let (Some(rows), Some(more)) = (first["rows"].as_array_mut(), t["rows"].as_array()) {
            rows.extend(more.iter().cloned());
        }
    }
    first
}

/// A server Table's headers and rows, with kubectl's extra columns.
pub fn table_rows(table: &Value, opts: &TableOptions) -> (Vec<String>, Vec<Vec<String>>) {
    let columns: Vec<(usize, String)> = table["columnDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, c)| opts.wide || c["priority"].as_i64().unwrap_or(0) == 0)
        .map(|(i, c)| (i, c["name"].as_str().unwrap_or("").to_uppercase()))
        .collect();
    let mut headers = Vec::new();
    if opts.namespace_column {
        headers.push("NAMESPACE".to_string());
    }
    headers.extend(columns.iter().map(|(_, n)| n.clone()));
    if opts.show_labels {
        headers.push("LABELS".into());
    }
    let mut rows = Vec::new();
    for row in table["rows"].as_array().into_iter().flatten() {
        let cells = row["cells"].as_array().cloned().unwrap_or_default();
        let meta = &row["object"]["metadata"];
        let mut out = Vec::new();
        if opts.namespace_column {
            out.push(meta["namespace"].as_str().unwrap_or("").to_string());
        }
        for (pos, (i, name)) in columns.iter().enumerate() {
            let mut text = cells.get(*i).map(output::cell).unwrap_or_default();
            if pos == 0
                && name == "NAME"
                && let Some(p) = &opts.name_prefix
            {
                text = format!("{p}/{text}");
            }
            out.push(text);
        }
        if opts.show_labels {
            out.push(output::labels_text(&meta["labels"]));
        }
        rows.push(out);
    }
    (headers, rows)
}

async fn watch(
    ctx: &Ctx,
    args: &Args,
    format: &Format,
    t: &ResourceType,
    names: &[String],
    ns: Option<&str>,
) -> Result<()> {
    let opts = TableOptions {
        wide: matches!(format, Format::Wide),
        namespace_column: args.all_namespaces && t.namespaced,
        show_labels: args.show_labels,
        name_prefix: None,
    };
    let accept = format.is_table().then_some(rest::TABLE);
    let mut query: Vec<(&str, String)> = vec![
        ("labelSelector", args.selector.clone().unwrap_or_default()),
        (
            "fieldSelector",
            args.field_selector.clone().unwrap_or_default(),
        ),
    ];
    if let [name] = names {
        query[1].1 = format!("metadata.name={name}");
    }
    let list_uri = format!("{}{}", t.path(ns, None), rest::query(&query));
    let first = rest::call(&ctx.client, http::Method::GET, &list_uri, accept, None).await?;
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut headers_printed = args.no_headers;
    if !args.watch_only {
        emit(&first, format, &opts, &mut headers_printed, t)?;
    }
    query.push(("watch", "true".into()));
    query.push(("resourceVersion", rv));
    query.push(("allowWatchBookmarks", "false".into()));
    let uri = format!("{}{}", t.path(ns, None), rest::query(&query));
    let mut events = rest::watch(&ctx.client, &uri, accept).await?;
    while let Some(ev) = events.try_next().await? {
        if ev["type"] == "ERROR" {
            bail!(
                "{}",
                ev["object"]["message"].as_str().unwrap_or("watch failed")
            );
        }
        if ev["type"] == "BOOKMARK" {
            continue;
        }
        let mut obj = ev["object"].clone();
        if !args.show_managed_fields {
            strip_managed_fields(&mut obj);
        }
        if !format.is_table() {
            obj["apiVersion"] = Value::String(t.api_version());
            obj["kind"] = Value::String(t.kind.clone());
        }
        emit(&obj, format, &opts, &mut headers_printed, t)?;
    }
    Ok(())
}

fn emit(
    v: &Value,
    format: &Format,
    opts: &TableOptions,
    headers_printed: &mut bool,
    t: &ResourceType,
) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    if format.is_table() {
        let (headers, rows) = table_rows(v, opts);
        if rows.is_empty() {
            return Ok(());
        }
        let text = output::plain_table(&headers, &rows, *headers_printed);
        *headers_printed = true;
        write!(stdout, "{text}")?;
    } else if v["kind"].as_str().is_some_and(|k| k.ends_with("List")) {
        for item in v["items"].as_array().into_iter().flatten() {
            let mut item = item.clone();
            item["apiVersion"] = Value::String(t.api_version());
            item["kind"] = Value::String(t.kind.clone());
            let prefix = |_: &Value| t.name_prefix();
            write!(stdout, "{}", output::print_value(format, &item, &prefix)?)?;
            if matches!(format, Format::Yaml) {
                writeln!(stdout, "---")?;
            }
        }
    } else {
        let prefix = |_: &Value| t.name_prefix();
        write!(stdout, "{}", output::print_value(format, v, &prefix)?)?;
        if matches!(format, Format::Yaml) {
            writeln!(stdout, "---")?;
        }
    }
    stdout.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn managed_fields_go_and_nothing_else_changes() {
        let mut v =
            json!({"kind": "List", "items": [{"metadata": {"name": "a", "managedFields": []}}]});
        strip_managed_fields(&mut v);
        assert_eq!(
            v,
            json!({"kind": "List", "items": [{"metadata": {"name": "a"}}]})
        );
        let mut o = json!({"kind": "X"});
        strip_managed_fields(&mut o);
        assert_eq!(o, json!({"kind": "X"}));
    }

    #[test]
    fn targets_split_as_kubectl_splits_them() {
        assert_eq!(
            parse_targets(&s(&["pods", "a", "b"])).unwrap(),
            vec![Request {
                type_name: "pods".into(),
                names: s(&["a", "b"])
            }]
        );
        assert_eq!(parse_targets(&s(&["po,svc"])).unwrap().len(), 2);
        let r = parse_targets(&s(&["pod/a", "svc/b", "pod/c"])).unwrap();
        assert_eq!(r[0].names, s(&["a", "c"]));
        assert_eq!(r[1].type_name, "svc");
        assert!(parse_targets(&[]).is_err());
        assert!(parse_targets(&s(&["pod/a", "b"])).is_err());
    }

    #[test]
    fn table_rows_take_priority_zero_columns_unless_wide() {
        let table = json!({
            "columnDefinitions": [
                {"name": "Name", "priority": 0}, {"name": "Status", "priority": 0}, {"name": "IP", "priority": 1}],
            "rows": [{"cells": ["web", "Running", "10.0.0.1"],
                      "object": {"metadata": {"name": "web", "namespace": "ns", "labels": {"app": "web"}}}}]
        });
        let (h, r) = table_rows(&table, &TableOptions::default());
        assert_eq!(h, s(&["NAME", "STATUS"]));
        assert_eq!(r, vec![s(&["web", "Running"])]);
        let opts = TableOptions {
            wide: true,
            namespace_column: true,
            show_labels: true,
            name_prefix: Some("pod".into()),
        };
        let (h, r) = table_rows(&table, &opts);
        assert_eq!(h, s(&["NAMESPACE", "NAME", "STATUS", "IP", "LABELS"]));
        assert_eq!(
            r,
            vec![s(&["ns", "pod/web", "Running", "10.0.0.1", "app=web"])]
        );
    }
}
