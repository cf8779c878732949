//! Reading manifests: files, directories and stdin; multi-document YAML
//! and JSON; `kind: List` unpacked.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

/// One object from a manifest, and where it came from.
#[derive(Debug, Clone)]
pub struct Doc {
    /// The file name as given (`-` for stdin).
    pub source: String,
    /// The document's position in its file, from 1.
    pub index: usize,
    pub object: Value,
}

impl Doc {
    /// `"web.yaml" (document 2)`, for messages.
    pub fn origin(&self) -> String {
        format!("\"{}\" (document {})", self.source, self.index)
    }
}

/// Reads every `-f` argument; directories give their `.yaml`, `.yml` and
/// `.json` files (recursively with `recursive`).
pub fn read_all(files: &[String], recursive: bool) -> Result<Vec<Doc>> {
    if files.is_empty() {
        bail!("must specify one of -f and -k");
    }
    let mut docs = Vec::new();
    for f in files {
        if f == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading stdin")?;
            docs.extend(parse("-", &text)?);
            continue;
        }
        let path = Path::new(f);
        if path.is_dir() {
            let mut found = Vec::new();
            walk(path, recursive, &mut found)?;
            found.sort();
            for p in found {
                let text = std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?;
                docs.extend(parse(&p.display().to_string(), &text)?);
            }
        } else {
            let text = std::fs::read_to_string(path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    anyhow::anyhow!("the path \"{f}\" does not exist")
                } else {
                    anyhow::Error::from(e).context(format!("reading {f}"))
                }
            })?;
            docs.extend(parse(f, &text)?);
        }
    }
    Ok(docs)
}

/// YAML read as kubectl's YAML 1.1 reader reads manifests: `0644` is
/// octal (file modes), `yes`/`no` are booleans.
pub fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! { legacy_octal_numbers: true }
}

/// Splits YAML at `---` separator lines, as kubectl's reader does, so
/// documents keep their place even when empty.
pub fn split_documents(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end();
        if bare == "---" || bare.starts_with("--- ") {
            if pos > 0 || start != pos {
                docs.push(&text[start..pos]);
            }
            start = pos + line.len();
        }
        pos += line.len();
    }
    docs.push(&text[start..]);
    docs
}

fn walk(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = entry?.path();
        if p.is_dir() {
            if recursive {
                walk(&p, recursive, out)?;
            }
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// Splits one file's text into objects.
pub fn parse(source: &str, text: &str) -> Result<Vec<Doc>> {
    let trimmed = text.trim_start();
    let values: Vec<Value> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut out = Vec::new();
        for (i, v) in serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .enumerate()
        {
            out.push(v.with_context(|| {
                format!("error parsing \"{source}\" (document {}) as JSON", i + 1)
            })?);
        }
        out
    } else {
        let mut out = Vec::new();
        for (i, chunk) in split_documents(text).into_iter().enumerate() {
            let v = if chunk.trim().is_empty() {
                Value::Null
            } else {
                serde_saphyr::from_str_with_options::<Value>(chunk, yaml_options()).map_err(
                    |e| anyhow::anyhow!("error parsing \"{source}\" (document {}): {e}", i + 1),
                )?
            };
            out.push(v);
        }
        out
    };
    let mut docs = Vec::new();
    let mut index = 0;
    for v in values {
        index += 1;
        if v.is_null() || v.as_object().is_some_and(|m| m.is_empty()) {
            continue;
        }
        if !v.is_object() {
            bail!("error parsing \"{source}\" (document {index}): not an object");
        }
        let is_list = v["kind"]
            .as_str()
            .is_some_and(|k| k == "List" || k.ends_with("List"))
            && v["items"].is_array();
        if is_list {
            for item in v["items"].as_array().into_iter().flatten() {
                docs.push(Doc {
                    source: source.into(),
                    index,
                    object: item.clone(),
                });
            }
        } else {
            docs.push(Doc {
                source: source.into(),
                index,
                object: v,
            });
        }
    }
    for d in &docs {
        if d.object["apiVersion"].as_str().is_none_or(str::is_empty) {
            bail!("error validating {}: apiVersion not set", d.origin());
        }
        if d.object["kind"].as_str().is_none_or(str::is_empty) {
            bail!("error validating {}: kind not set", d.origin());
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_splits_and_counts_from_one() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n";
        let docs = parse("x.yaml", text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].object["metadata"]["name"], "b");
        assert_eq!(docs[1].index, 3);
        assert_eq!(docs[1].origin(), "\"x.yaml\" (document 3)");
    }

    #[test]
    fn file_modes_are_octal_as_in_kubectl() {
        let docs = parse(
            "m.yaml",
            "apiVersion: v1\nkind: X\nmode: 0644\nname: \"0644\"\n",
        )
        .unwrap();
        assert_eq!(docs[0].object["mode"], 420);
        assert_eq!(docs[0].object["name"], "0644");
    }

    #[test]
    fn json_and_lists_are_read() {
        let text = r#"{"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b"}}]}"#;
        let docs = parse("l.json", text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].object["kind"], "Secret");
    }

    #[test]
    fn documents_without_a_kind_are_named_in_the_error() {
        let err = parse(
            "bad.yaml",
            "apiVersion: v1\nkind: ConfigMap\n---\napiVersion: v1\nmetadata: {}\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "error validating \"bad.yaml\" (document 2): kind not set"
        );
        assert!(parse("bad.yaml", "a: [").is_err());
    }
}
