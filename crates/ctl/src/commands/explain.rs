//! `skiffctl explain`: field documentation from the server's `/openapi/v3`.

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::config::GlobalArgs;
use crate::rest;

/// Get documentation for a resource.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// TYPE[.FIELD...], e.g. `pods.spec.containers`.
    pub path: String,
    /// Print the fields of fields, all the way down.
    #[arg(long)]
    pub recursive: bool,
    /// group/version to explain (default: the preferred one).
    #[arg(long)]
    pub api_version: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// One OpenAPI v3 document and lookups in it.
pub struct Doc<'a> {
    pub doc: &'a Value,
}

impl Doc<'_> {
    fn schemas(&self) -> &Value {
        &self.doc["components"]["schemas"]
    }

    /// The schema a `$ref` (directly or through `allOf`) points at, else
    /// the schema itself.
    pub fn deref<'b>(&'b self, s: &'b Value) -> &'b Value {
        let mut cur = s;
        for _ in 0..16 {
            let r = cur["$ref"]
                .as_str()
                .or_else(|| cur["allOf"][0]["$ref"].as_str());
            match r.and_then(|r| r.rsplit('/').next()) {
                Some(name) => cur = &self.schemas()[name],
                None => break,
            }
        }
        cur
    }

    /// The top-level schema of `group/version/kind`.
    pub fn kind_schema(&self, group: &str, version: &str, kind: &str) -> Option<&Value> {
        self.schemas().as_object()?.values().find(|s| {
            s["x-kubernetes-group-version-kind"]
                .as_array()
                .is_some_and(|l| {
                    l.iter().any(|g| {
                        g["group"] == group && g["version"] == version && g["kind"] == kind
                    })
                })
        })
    }

    /// A field's type as kubectl writes it: `<string>`, `<[]Container>`,
    /// `<map[string]string>`, `<PodSpec>`, `<Object>`.
    pub fn type_name(&self, s: &Value) -> String {
        let r = s["$ref"]
            .as_str()
            .or_else(|| s["allOf"][0]["$ref"].as_str());
        if let Some(r) = r {
            // A named primitive (Time, Quantity) reads as its JSON type.
            let target = self.deref(s);
            if target.get("properties").is_none()
                && let Some(t @ ("string" | "integer" | "number" | "boolean")) =
                    target["type"].as_str()
            {
                return t.to_string();
            }
            return r.rsplit('.').next().unwrap_or(r).to_string();
        }
        match s["type"].as_str() {
            Some("array") => format!("[]{}", self.type_name(&s["items"])),
            Some("object") => match s.get("additionalProperties") {
                Some(ap) if ap.is_object() => format!("map[string]{}", self.type_name(ap)),
                _ => "Object".into(),
            },
            Some(t) => t.to_string(),
            None if s.get("x-kubernetes-int-or-string").is_some() => "IntOrString".into(),
            None => "Object".into(),
        }
    }

    /// Steps from a schema into a field (through arrays and maps).
    fn field<'b>(&'b self, s: &'b Value, name: &str) -> Option<&'b Value> {
        let mut s = self.deref(s);
        for _ in 0..4 {
            if s["type"] == "array" {
                s = self.deref(&s["items"]);
            } else {
                break;
            }
        }
        s["properties"].get(name)
    }
}

/// `text` indented by `by` and word-wrapped to 80 columns, as kubectl
/// explain prints descriptions; its own line breaks are kept.
fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    let mut out = Vec::new();
    for para in text.lines() {
        if para.trim().is_empty() {
            out.push(String::new());
            continue;
        }
        let mut line = String::new();
        for word in para.split_whitespace() {
            if !line.is_empty() && by + line.len() + 1 + word.len() > 80 {
                out.push(format!("{pad}{line}"));
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        out.push(format!("{pad}{line}"));
    }
    out.join("\n")
}

/// Renders kubectl's plain-text explanation of `schema` (reached through
/// `fields` from the kind).
pub fn render(
    doc: &Doc,
    kind: &str,
    api_version: &str,
    fields: &[&str],
    schema: &Value,
    field_schema: Option<&Value>,
    recursive: bool,
) -> String {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let mut out = String::new();
    if !group.is_empty() {
        out.push_str(&format!("GROUP:      {group}\n"));
    }
    out.push_str(&format!("KIND:       {kind}\nVERSION:    {version}\n\n"));
    if let (Some(last), Some(fs)) = (fields.last(), field_schema) {
        out.push_str(&format!("FIELD: {last} <{}>\n\n\n", doc.type_name(fs)));
    }
    let target = doc.deref(schema);
    // A field of an object type is described by its type, as kubectl does.
    let desc = target["description"]
        .as_str()
        .or_else(|| field_schema.and_then(|f| f["description"].as_str()))
        .unwrap_or("<empty>");
    out.push_str(&format!("DESCRIPTION:\n{}\n", indent(desc, 4)));
    let mut body = target;
    while body["type"] == "array" {
        body = doc.deref(&body["items"]);
    }
    if body.get("properties").is_none() {
        out.push_str("\n\n");
    }
    if let Some(props) = body["properties"].as_object() {
        out.push_str("    \nFIELDS:\n");
        let required: Vec<&str> = body["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if recursive {
            fields_recursive(doc, body, 1, &mut out, 0);
            out.push('\n');
        } else {
            for (name, f) in props {
                let req = if required.contains(&name.as_str()) {
                    " -required-"
                } else {
                    ""
                };
                out.push_str(&format!("  {name}\t<{}>{req}\n", doc.type_name(f)));
                let d = f["description"]
                    .as_str()
                    .or_else(|| doc.deref(f)["description"].as_str())
                    .unwrap_or("<no description>");
                out.push_str(&indent(d, 4));
                out.push_str("\n\n");
            }
            out.push('\n');
        }
    }
    out
}

fn fields_recursive(doc: &Doc, s: &Value, depth: usize, out: &mut String, guard: usize) {
    if guard > 12 {
        return;
    }
    let mut s = doc.deref(s);
    while s["type"] == "array" {
        s = doc.deref(&s["items"]);
    }
    let required: Vec<&str> = s["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for (name, f) in s["properties"].as_object().into_iter().flatten() {
        let req = if required.contains(&name.as_str()) {
            " -required-"
        } else {
            ""
        };
        out.push_str(&format!(
            "{}{name}\t<{}>{req}\n",
            "  ".repeat(depth),
            doc.type_name(f)
        ));
        fields_recursive(doc, f, depth + 1, out, guard + 1);
    }
}

pub async fn run(args: Args) -> Result<()> {
    let ctx = args.global.connect().await?;
    let mut parts = args.path.split('.');
    let type_name = parts.next().unwrap_or("");
    let mut fields: Vec<&str> = parts.collect();
    let resources = ctx.resources().await?;
    // `deployments.apps.spec` is ambiguous; try the longest type name first.
    let mut t = None;
    for take in (0..=fields.len().min(2)).rev() {
        let name = std::iter::once(type_name)
            .chain(fields[..take].iter().copied())
            .collect::<Vec<_>>()
            .join(".");
        if let Ok(found) = resources.resolve(&name) {
            t = Some(found);
            fields.drain(..take);
            break;
        }
    }
    let Some(mut t) = t else {
        bail!("the server doesn't have a resource type \"{type_name}\"");
    };
    if let Some(av) = &args.api_version {
        t = resources.by_kind(av, &t.kind)?;
    }
    let index = rest::get(&ctx.client, "/openapi/v3").await?;
    let key = if t.group.is_empty() {
        format!("api/{}", t.version)
    } else {
        format!("apis/{}/{}", t.group, t.version)
    };
    let url = index["paths"][&key]["serverRelativeURL"]
        .as_str()
        .with_context(|| format!("the server's /openapi/v3 has no {key}"))?;
    let document = rest::get(&ctx.client, url).await?;
    let doc = Doc { doc: &document };
    let root = doc
        .kind_schema(&t.group, &t.version, &t.kind)
        .with_context(|| format!("couldn't find resource for \"{}\"", t.qualified()))?;
    let mut schema = root;
    let mut field_schema = None;
    for f in &fields {
        match doc.field(schema, f) {
            Some(s) => {
                field_schema = Some(s);
                schema = s;
            }
            None => bail!("field \"{f}\" does not exist"),
        }
    }
    print!(
        "{}",
        render(
            &doc,
            &t.kind,
            &t.api_version(),
            &fields,
            schema,
            field_schema,
            args.recursive
        )
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({"components": {"schemas": {
            "io.k8s.api.core.v1.Pod": {"description": "Pod is a collection of containers.",
                "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Pod"}],
                "properties": {"apiVersion": {"type": "string", "description": "APIVersion defines the schema."},
                               "spec": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}], "description": "Specification of the pod."}}},
            "io.k8s.api.core.v1.PodSpec": {"description": "PodSpec is a description of a pod.", "required": ["containers"],
                "properties": {"containers": {"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}]}, "description": "List of containers."},
                               "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Selector."}}},
            "io.k8s.api.core.v1.Container": {"properties": {"name": {"type": "string", "description": "Name of the container."}}}
        }}})
    }

    #[test]
    fn kinds_and_fields_read_as_kubectl_explain_prints_them() {
        let v = sample();
        let doc = Doc { doc: &v };
        let pod = doc.kind_schema("", "v1", "Pod").unwrap();
        let out = render(&doc, "Pod", "v1", &[], pod, None, false);
        assert!(out.starts_with("KIND:       Pod\nVERSION:    v1\n\nDESCRIPTION:\n    Pod is a collection of containers.\n"), "{out}");
        assert!(
            out.contains("  spec\t<PodSpec>\n    Specification of the pod.\n"),
            "{out}"
        );
        let spec = doc.field(pod, "spec").unwrap();
        let out = render(&doc, "Pod", "v1", &["spec"], spec, Some(spec), false);
        assert!(out.contains("FIELD: spec <PodSpec>"), "{out}");
        assert!(
            out.contains("  containers\t<[]Container> -required-\n"),
            "{out}"
        );
        assert!(
            out.contains("  nodeSelector\t<map[string]string>\n"),
            "{out}"
        );
        let containers = doc.field(spec, "containers").unwrap();
        assert!(doc.field(containers, "name").is_some());
        let out = render(&doc, "Pod", "v1", &[], pod, None, true);
        assert!(
            out.contains(
                "  spec\t<PodSpec>\n    containers\t<[]Container> -required-\n      name\t<string>\n"
            ),
            "{out}"
        );
    }
}
