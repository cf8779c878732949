//! Printing: kubectl's plain tables, `-o` formats and human durations.

use anyhow::{Result, bail};
use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement, Table, presets};
use serde_json::Value;

use crate::jsonpath::Template;

/// What `-o` asked for.
#[derive(Debug, Clone)]
pub enum Format {
    Table,
    Wide,
    Json,
    Yaml,
    Name,
    JsonPath(Template),
}

impl Format {
    pub fn parse(o: Option<&str>) -> Result<Format> {
        Ok(match o {
            None | Some("") => Format::Table,
            Some("wide") => Format::Wide,
            Some("json") => Format::Json,
            Some("yaml") => Format::Yaml,
            Some("name") => Format::Name,
            Some(o) => {
                if let Some(t) = o
                    .strip_prefix("jsonpath=")
                    .or_else(|| o.strip_prefix("jsonpath-as-json="))
                {
                    Format::JsonPath(Template::parse(t)?)
                } else {
                    bail!(
                        "unable to match a printer suitable for the output format \"{o}\", allowed formats are: json,jsonpath,name,wide,yaml"
                    )
                }
            }
        })
    }

    pub fn is_table(&self) -> bool {
        matches!(self, Format::Table | Format::Wide)
    }
}

/// Renders rows as kubectl does: no borders, left-aligned columns three
/// spaces apart, no trailing blanks.
pub fn plain_table(headers: &[String], rows: &[Vec<String>], no_headers: bool) -> String {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .force_no_tty()
        .set_content_arrangement(ContentArrangement::Disabled);
    if !no_headers {
        table.set_header(headers.to_vec());
    }
    for row in rows {
        table.add_row(row.clone());
    }
    let n = headers
        .len()
        .max(rows.iter().map(Vec::len).max().unwrap_or(0));
    for i in 0..n {
        if let Some(col) = table.column_mut(i) {
            col.set_padding((0, if i + 1 == n { 0 } else { 3 }));
            col.set_cell_alignment(CellAlignment::Left);
            col.set_constraint(ColumnConstraint::ContentWidth);
        }
    }
    let mut out = String::new();
    for line in table.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A YAML document of `v`.
pub fn yaml(v: &Value) -> Result<String> {
    Ok(serde_saphyr::to_string(v)?)
}

/// JSON as kubectl prints it: indented four spaces.
pub fn json(v: &Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser).expect("a JSON value serializes");
    String::from_utf8(buf).expect("JSON is UTF-8") + "\n"
}

/// A list of objects as kubectl wraps several: `kind: List`.
pub fn list(items: Vec<Value>) -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items})
}

/// Prints `v` (one object, or a List) in a non-table format.
pub fn print_value(
    format: &Format,
    v: &Value,
    name_prefix: &dyn Fn(&Value) -> String,
) -> Result<String> {
    Ok(match format {
        Format::Json => json(v),
        Format::Yaml => yaml(v)?,
        Format::JsonPath(t) => t.render(v)?,
        Format::Name => {
            let mut out = String::new();
            let items: Vec<&Value> = match v["items"].as_array() {
                Some(items) if v["kind"].as_str().is_some_and(|k| k.ends_with("List")) => {
                    items.iter().collect()
                }
                _ => vec![v],
            };
            for item in items {
                out.push_str(&format!(
                    "{}/{}\n",
                    name_prefix(item),
                    item["metadata"]["name"].as_str().unwrap_or("")
                ));
            }
            out
        }
        Format::Table | Format::Wide => bail!("a table is printed from the server's Table"),
    })
}

/// A table cell's text, as kubectl prints server-side Table cells.
pub fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".into(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// `labels` as `k=v,k=v`, or `<none>`.
pub fn labels_text(labels: &Value) -> String {
    match labels.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".into(),
    }
}

/// A duration as kubectl's HumanDuration writes an age (`5s`, `3m2s`, `4h`,
/// `2d3h`, `400d`, `3y10d`).
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    let minutes = s / 60;
    let hours = s / 3600;
    if s < 120 {
        return format!("{s}s");
    }
    if minutes < 10 {
        return if s % 60 == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{}s", s % 60)
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    if hours < 8 {
        return if minutes % 60 == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{}m", minutes % 60)
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return if hours % 24 == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{}h", hours / 24, hours % 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = hours / 24 - 365 * (hours / 24 / 365);
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{}d", hours / 24 / 365, days)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The age of an RFC 3339 timestamp, as kubectl prints it; `<unknown>`
/// when absent.
pub fn age(ts: &Value) -> String {
    let Some(t) = ts.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    human_duration(jiff::Timestamp::now().as_second() - t.as_second())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_are_plain_and_aligned_like_kubectl() {
        let out = plain_table(
            &["NAME".into(), "READY".into(), "STATUS".into()],
            &[
                vec!["web-1".into(), "1/1".into(), "Running".into()],
                vec!["a-much-longer-name".into(), "0/1".into(), "Pending".into()],
            ],
            false,
        );
        assert_eq!(
            out,
            "NAME                 READY   STATUS\n\
             web-1                1/1     Running\n\
             a-much-longer-name   0/1     Pending\n"
        );
        let out = plain_table(&["NAME".into()], &[vec!["x".into()]], true);
        assert_eq!(out, "x\n");
    }

    #[test]
    fn durations_read_as_kubectl_ages() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(182), "3m2s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60 * 5), "3h5m");
        assert_eq!(human_duration(20 * 3600), "20h");
        assert_eq!(human_duration(51 * 3600), "2d3h");
        assert_eq!(human_duration(400 * 86400), "400d");
        assert_eq!(human_duration((3 * 365 + 10) * 86400), "3y10d");
    }

    #[test]
    fn output_flags_parse_and_unknown_ones_are_refused() {
        assert!(matches!(Format::parse(Some("wide")).unwrap(), Format::Wide));
        assert!(matches!(
            Format::parse(Some("jsonpath={.a}")).unwrap(),
            Format::JsonPath(_)
        ));
        let err = Format::parse(Some("xml")).unwrap_err().to_string();
        assert!(err.contains("\"xml\""), "{err}");
    }

    #[test]
    fn names_print_type_slash_name_for_lists_and_objects() {
        let prefix = |_: &Value| "pod".to_string();
        let l = list(vec![
            json!({"metadata": {"name": "a"}}),
            json!({"metadata": {"name": "b"}}),
        ]);
        assert_eq!(
            print_value(&Format::Name, &l, &prefix).unwrap(),
            "pod/a\npod/b\n"
        );
        assert_eq!(labels_text(&json!({"a": "1", "b": "2"})), "a=1,b=2");
        assert_eq!(labels_text(&Value::Null), "<none>");
        assert_eq!(cell(&json!(3)), "3");
    }
}
