//! The subset of kubectl's JSONPath templates `-o jsonpath=` takes:
//! `{.a.b}`, `{.items[*].metadata.name}`, `[n]`, `[a:b]`, `['key']`,
//! `[?(@.type=="Ready")]`, `..name`, `{range ...}...{end}` and `{"\n"}`.

use anyhow::{Result, bail};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Wildcard,
    Index(i64),
    Slice(Option<i64>, Option<i64>),
    Filter(Vec<Step>, Op, Option<Value>),
    Recursive(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Exists,
    Eq,
    Ne,
    Lt,
    Gt,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Path(Vec<Step>),
    Range(Vec<Step>, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

impl Template {
    pub fn parse(src: &str) -> Result<Template> {
        let mut tokens = Vec::new();
        let mut rest = src;
        while !rest.is_empty() {
            match rest.find('{') {
                None => {
                    tokens.push(Tok::Text(rest.to_string()));
                    break;
                }
                Some(i) => {
                    if i > 0 {
                        tokens.push(Tok::Text(rest[..i].to_string()));
                    }
                    let end = find_close(&rest[i..])
                        .ok_or_else(|| anyhow::anyhow!("unclosed action in template {src:?}"))?;
                    tokens.push(Tok::Action(rest[i + 1..i + end].trim().to_string()));
                    rest = &rest[i + end + 1..];
                }
            }
        }
        let mut it = tokens.into_iter();
        let nodes = parse_nodes(&mut it, false)?;
        Ok(Template { nodes })
    }

    /// Renders the template against `data`.
    pub fn render(&self, data: &Value) -> Result<String> {
        let mut out = String::new();
        render_nodes(&self.nodes, data, &mut out)?;
        Ok(out)
    }
}

enum Tok {
    Text(String),
    Action(String),
}

/// The index of the `}` closing the action that starts at `s[0]`, skipping
/// quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        if escaped {
            escaped = false;
            continue;
        }
        match (quote, c) {
            (Some(_), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, '}') => return Some(i),
            _ => {}
        }
    }
    None
}

fn parse_nodes(it: &mut std::vec::IntoIter<Tok>, in_range: bool) -> Result<Vec<Node>> {
    let mut nodes = Vec::new();
    while let Some(tok) = it.next() {
        match tok {
            Tok::Text(t) => nodes.push(Node::Text(t)),
            Tok::Action(a) => {
                if a == "end" {
                    if in_range {
                        return Ok(nodes);
                    }
                    bail!("{{end}} without {{range}}");
                } else if let Some(path) = a.strip_prefix("range ") {
                    let steps = parse_path(path.trim())?;
                    let body = parse_nodes(it, true)?;
                    nodes.push(Node::Range(steps, body));
                } else if a.starts_with('"') || a.starts_with('\'') {
                    nodes.push(Node::Text(unquote(&a)?));
                } else {
                    nodes.push(Node::Path(parse_path(&a)?));
                }
            }
        }
    }
    if in_range {
        bail!("{{range}} without {{end}}");
    }
    Ok(nodes)
}

fn unquote(s: &str) -> Result<String> {
    let q = s.chars().next().unwrap_or('"');
    let inner = s
        .strip_prefix(q)
        .and_then(|s| s.strip_suffix(q))
        .ok_or_else(|| anyhow::anyhow!("unterminated string {s}"))?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn parse_path(src: &str) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    let s: Vec<char> = src.chars().collect();
    let mut i = 0;
    if s.first() == Some(&'$') || s.first() == Some(&'@') {
        i = 1;
    }
    while i < s.len() {
        match s[i] {
            '.' => {
                let recursive = s.get(i + 1) == Some(&'.');
                i += if recursive { 2 } else { 1 };
                let mut name = String::new();
                while i < s.len() && s[i] != '.' && s[i] != '[' {
                    if s[i] == '\\' && i + 1 < s.len() {
                        i += 1;
                    }
                    name.push(s[i]);
                    i += 1;
                }
                if recursive {
                    steps.push(Step::Recursive(name));
                } else if name == "*" {
                    steps.push(Step::Wildcard);
                } else if !name.is_empty() {
                    steps.push(Step::Field(name));
                }
            }
            '[' => {
                let start = i + 1;
                let mut depth = 1;
                let mut quote: Option<char> = None;
                i += 1;
                while i < s.len() {
                    match (quote, s[i]) {
                        (Some(q), c) if c == q => quote = None,
                        (None, '"' | '\'') => quote = Some(s[i]),
                        (None, '[') => depth += 1,
                        (None, ']') => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                if i >= s.len() {
                    bail!("unterminated [ in {src:?}");
                }
                let inner: String = s[start..i].iter().collect();
                i += 1;
                steps.push(parse_bracket(inner.trim(), src)?);
            }
            c if c.is_whitespace() => i += 1,
            _ => {
                // A bare leading name, as in `{metadata.name}`.
                let mut name = String::new();
                while i < s.len() && s[i] != '.' && s[i] != '[' {
                    name.push(s[i]);
                    i += 1;
                }
                steps.push(Step::Field(name));
            }
        }
    }
    Ok(steps)
}

fn parse_bracket(inner: &str, src: &str) -> Result<Step> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if inner.starts_with('\'') || inner.starts_with('"') {
        return Ok(Step::Field(unquote(inner)?));
    }
    if let Some(f) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        let f = f.trim();
        for (text, op) in [("==", Op::Eq), ("!=", Op::Ne), ("<", Op::Lt), (">", Op::Gt)] {
            if let Some((l, r)) = f.split_once(text) {
                let r = r.trim();
                let lit = if r.starts_with('"') || r.starts_with('\'') {
                    Value::String(unquote(r)?)
                } else {
                    serde_json::from_str(r).unwrap_or(Value::String(r.to_string()))
                };
                return Ok(Step::Filter(parse_path(l.trim())?, op, Some(lit)));
            }
        }
        return Ok(Step::Filter(parse_path(f)?, Op::Exists, None));
    }
    if let Some((a, b)) = inner.split_once(':') {
        let num = |t: &str| -> Result<Option<i64>> {
            let t = t.trim();
            if t.is_empty() {
                Ok(None)
            } else {
                Ok(Some(t.parse()?))
            }
        };
        let b = b.split(':').next().unwrap_or("");
        return Ok(Step::Slice(num(a)?, num(b)?));
    }
    match inner.parse::<i64>() {
        Ok(n) => Ok(Step::Index(n)),
        Err(_) => bail!("unsupported [{inner}] in {src:?}"),
    }
}

fn eval<'a>(steps: &[Step], data: &'a Value) -> Vec<&'a Value> {
    let mut cur = vec![data];
    for step in steps {
        let mut next = Vec::new();
        for v in cur {
            match step {
                Step::Field(name) => {
                    if let Some(x) = v.get(name.as_str()) {
                        next.push(x);
                    }
                }
                Step::Wildcard => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Index(n) => {
                    if let Value::Array(a) = v {
                        let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                        if let Some(x) = usize::try_from(idx).ok().and_then(|i| a.get(i)) {
                            next.push(x);
                        }
                    }
                }
                Step::Slice(from, to) => {
                    if let Value::Array(a) = v {
                        let len = a.len() as i64;
                        let norm = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) };
                        let f = norm(from.unwrap_or(0)) as usize;
                        let t = norm(to.unwrap_or(len)) as usize;
                        if f < t {
                            next.extend(a[f..t].iter());
                        }
                    }
                }
                Step::Filter(path, op, lit) => {
                    let items: Vec<&Value> = match v {
                        Value::Array(a) => a.iter().collect(),
                        other => vec![other],
                    };
                    for item in items {
                        let found = eval(path, item);
                        let keep = match (op, lit) {
                            (Op::Exists, _) => !found.is_empty(),
                            (op, Some(lit)) => found.iter().any(|f| compare(f, *op, lit)),
                            _ => false,
                        };
                        if keep {
                            next.push(item);
                        }
                    }
                }
                Step::Recursive(name) => collect_recursive(v, name, &mut next),
            }
        }
        cur = next;
    }
    cur
}

fn compare(a: &Value, op: Op, b: &Value) -> bool {
    match op {
        Op::Eq => a == b,
        Op::Ne => a != b,
        Op::Lt | Op::Gt => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => {
                if op == Op::Lt {
                    x < y
                } else {
                    x > y
                }
            }
            _ => false,
        },
        Op::Exists => true,
    }
}

fn collect_recursive<'a>(v: &'a Value, name: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            if let Some(x) = m.get(name) {
                out.push(x);
            }
            for x in m.values() {
                collect_recursive(x, name, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_recursive(x, name, out)),
        _ => {}
    }
}

fn render_nodes(nodes: &[Node], data: &Value, out: &mut String) -> Result<()> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Path(steps) => {
                let found = eval(steps, data);
                let texts: Vec<String> = found.iter().map(|v| text(v)).collect();
                out.push_str(&texts.join(" "));
            }
            Node::Range(steps, body) => {
                for item in eval(steps, data) {
                    render_nodes(body, item, out)?;
                }
            }
        }
    }
    Ok(())
}

/// How JSONPath prints one value: strings bare, the rest as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, data: &Value) -> String {
        Template::parse(t).unwrap().render(data).unwrap()
    }

    fn list() -> Value {
        json!({"kind": "List", "items": [
            {"metadata": {"name": "a", "labels": {"app.kubernetes.io/name": "x"}},
             "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Other", "status": "False"}]}},
            {"metadata": {"name": "b"}, "spec": {"replicas": 3}},
        ]})
    }

    #[test]
    fn fields_and_wildcards_print_space_separated() {
        let d = list();
        assert_eq!(render("{.items[*].metadata.name}", &d), "a b");
        assert_eq!(render("{.items[0].metadata.name}", &d), "a");
        assert_eq!(render("{.items[-1].metadata.name}", &d), "b");
        assert_eq!(render("{.items[1].spec.replicas}", &d), "3");
        assert_eq!(render("{.items[0:1].metadata.name}", &d), "a");
        assert_eq!(render("{.kind}", &d), "List");
        assert_eq!(render("{.missing}", &d), "");
    }

    #[test]
    fn objects_print_as_json_and_text_is_kept() {
        let d = json!({"spec": {"a": 1}});
        assert_eq!(render("spec={.spec}!", &d), "spec={\"a\":1}!");
    }

    #[test]
    fn range_repeats_its_body_for_each_item() {
        let d = list();
        assert_eq!(
            render("{range .items[*]}{.metadata.name}{\"\\n\"}{end}", &d),
            "a\nb\n"
        );
    }

    #[test]
    fn filters_escaped_dots_and_quoted_keys_select() {
        let d = list();
        assert_eq!(
            render(
                "{.items[0].status.conditions[?(@.type==\"Ready\")].status}",
                &d
            ),
            "True"
        );
        assert_eq!(
            render("{.items[0].metadata.labels.app\\.kubernetes\\.io/name}", &d),
            "x"
        );
        assert_eq!(
            render("{.items[0].metadata.labels['app.kubernetes.io/name']}", &d),
            "x"
        );
        assert_eq!(render("{..name}", &d), "a b");
    }

    #[test]
    fn malformed_templates_are_errors() {
        assert!(Template::parse("{.a").is_err());
        assert!(Template::parse("{range .items[*]}x").is_err());
        assert!(Template::parse("{end}").is_err());
    }
}
