//! CEL as admission evaluates it (k8s.io/apiserver pkg/admission/plugin/cel):
//! expressions compiled once and kept by their text, JSON objects turned
//! into CEL values, and an evaluation scope that binds `object`,
//! `oldObject`, `request`, `params`, `namespaceObject` and, lazily, the
//! `variables.<name>` of a ValidatingAdmissionPolicy.
//!
//! The environment is cel-rust's standard library (`has`, `all`, `exists`,
//! `exists_one`, `map`, `filter`, `size`, `contains`, `startsWith`,
//! `endsWith`, `matches`, conversions, optionals) with the strings
//! extension (`lowerAscii`, `upperAscii`, `trim`, `split`, `join`,
//! `replace`, `substring`, `indexOf`, `charAt`, `format`, ...), cel-go's
//! lists extension (`distinct`, `flatten`, `reverse`, `slice`, `sort`,
//! `lists.range`), and from Kubernetes' own libraries the sets library
//! (`sets.contains`, `sets.equivalent`, `sets.intersects`) and the lists
//! one (`isSorted`, `sum`, `min`, `max`, and `indexOf`/`lastIndexOf` on
//! lists).
//!
//! Not available: `authorizer` (and `authorizer.requestResource`),
//! timestamps and durations, and the Kubernetes `quantity`, `url`, `ip`,
//! `cidr`, `semver`, `format.*`, regex `find`/`findAll` libraries; there is
//! no type checker (a misspelt variable or a non-boolean validation shows
//! when evaluated, not when the policy is created) and no cost budget.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt, LIST_TYPE,
};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, ExecutionError, Program};
use serde_json::{Value, json};

use super::{Operation, Request};

/// How many compiled expressions are kept before the cache starts over.
const MAX_CACHED: usize = 4096;

/// The environment every admission expression compiles and runs in.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .expect("the strings extension declares once");
    env.add_extension(cel::extensions::lists)
        .expect("the lists extension declares once");
    env.add_extension(kubernetes_library)
        .expect("the Kubernetes functions declare once");
    Arc::new(env)
});

/// Compiled expressions by their text.
static PROGRAMS: LazyLock<Mutex<HashMap<String, Compiled>>> = LazyLock::new(Default::default);

/// An expression compiled, or why it does not compile.
pub(crate) type Compiled = Result<Arc<Program>, String>;

/// Compiles `source`, or answers upstream's `compilation failed: ...`
/// (with cel-go's `ERROR: <input>:line:column: ...` lines).
pub(crate) fn compile(source: &str) -> Compiled {
    if let Some(done) = PROGRAMS.lock().unwrap().get(source) {
        return done.clone();
    }
    let compiled = ENV
        .compile(source)
        .map(Arc::new)
        .map_err(|e| format!("compilation failed: {e}"));
    let mut programs = PROGRAMS.lock().unwrap();
    if programs.len() >= MAX_CACHED {
        programs.clear();
    }
    programs.insert(source.to_owned(), compiled.clone());
    compiled
}

/// A JSON value as a CEL value: objects are maps with string keys,
/// integers are `int` (`uint` past `int`'s range), other numbers `double`.
pub(crate) fn to_val(v: &Value) -> Box<dyn Val> {
    match v {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Box::new(CelInt::from(i)),
            (None, Some(u)) => Box::new(CelUInt::from(u)),
            _ => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        Value::String(s) => Box::new(CelString::from(s.clone())),
        Value::Array(items) => {
            Box::new(CelList::from(items.iter().map(to_val).collect::<Vec<_>>()))
        }
        Value::Object(map) => Box::new(CelMap::from(
            map.iter()
                .map(|(k, v)| (CelMapKey::from(k.clone()), to_val(v)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}

/// What an expression sees of the request, converted once and shared by
/// every expression evaluated for it.
pub(crate) struct Inputs {
    object: Box<dyn Val>,
    old_object: Box<dyn Val>,
    request: Box<dyn Val>,
    namespace_object: Box<dyn Val>,
    /// `variables` when none is defined: an empty map, so that
    /// `variables.x` is "no such key" rather than an undeclared name.
    no_variables: Box<dyn Val>,
}

impl Inputs {
    /// `object` and `oldObject` are `null` where absent (`oldObject` on a
    /// create, `object` on a delete), as is `namespaceObject` for
    /// cluster-scoped objects.
    pub(crate) fn new(
        object: Option<&Value>,
        old_object: Option<&Value>,
        request: &Value,
        namespace_object: Option<&Value>,
    ) -> Self {
        let or_null =
            |v: Option<&Value>| v.map_or_else(|| Box::new(CelNull) as Box<dyn Val>, to_val);
        Inputs {
            object: or_null(object),
            old_object: or_null(old_object),
            request: to_val(request),
            namespace_object: or_null(namespace_object),
            no_variables: Box::new(CelMap::default()),
        }
    }
}

/// A policy's `variables`, each evaluated when first used (and only then:
/// an unused variable that would fail does not fail anything).
pub(crate) struct Variables<'a> {
    defined: &'a [(String, String, Compiled)],
    values: Vec<OnceLock<Result<Box<dyn Val>, String>>>,
}

impl<'a> Variables<'a> {
    /// `defined` holds each variable's name, expression and compiled
    /// program, in the policy's order: a variable sees those before it.
    pub(crate) fn new(defined: &'a [(String, String, Compiled)]) -> Self {
        Variables {
            defined,
            values: defined.iter().map(|_| OnceLock::new()).collect(),
        }
    }
}

/// The names an expression resolves: the inputs, `params`, and the
/// variables before `visible`.
struct Scope<'a> {
    inputs: &'a Inputs,
    params: &'a dyn Val,
    variables: Option<&'a Variables<'a>>,
    visible: usize,
    /// Why the last variable that failed did.
    failed: Mutex<Option<String>>,
}

impl VariableResolver for Scope<'_> {
    fn resolve<'b>(&'b self, name: &str) -> Option<CowVal<'b, 'b>> {
        let input: &dyn Val = match name {
            "object" => self.inputs.object.as_ref(),
            "oldObject" => self.inputs.old_object.as_ref(),
            "request" => self.inputs.request.as_ref(),
            "namespaceObject" => self.inputs.namespace_object.as_ref(),
            "params" => self.params,
            "variables" => self.inputs.no_variables.as_ref(),
            _ => return self.variable(name.strip_prefix("variables.")?),
        };
        Some(CowVal::Borrowed(input))
    }
}

impl Scope<'_> {
    fn variable<'b>(&'b self, name: &str) -> Option<CowVal<'b, 'b>> {
        let variables = self.variables?;
        let index = variables.defined[..self.visible.min(variables.defined.len())]
            .iter()
            .position(|(n, _, _)| n == name)?;
        let value = variables.values[index].get_or_init(|| {
            let (_, source, compiled) = &variables.defined[index];
            let program = compiled.as_ref().map_err(Clone::clone)?;
            let scope = Scope {
                inputs: self.inputs,
                params: self.params,
                variables: Some(variables),
                visible: index,
                failed: Mutex::new(None),
            };
            let value = scope.run(source, program)?;
            Box::<dyn Val>::try_from(value)
                .map_err(|e| format!("expression '{source}' resulted in error: {}", message(&e)))
        });
        match value {
            Ok(v) => Some(CowVal::Borrowed(v.as_ref())),
            Err(e) => {
                *self.failed.lock().unwrap() = Some(e.clone());
                None
            }
        }
    }

    fn run(&self, source: &str, program: &Program) -> Result<cel::Value, String> {
        let mut context = Context::with_env(ENV.clone());
        context.set_variable_resolver(self);
        program.execute(&context).map_err(|e| {
            // A variable that failed is what to report, not the missing
            // name its failure left behind.
            self.failed.lock().unwrap().take().unwrap_or_else(|| {
                format!("expression '{source}' resulted in error: {}", message(&e))
            })
        })
    }
}

/// Evaluates a compiled expression: its value, or upstream's
/// `expression '<source>' resulted in error: <why>` (or the compilation
/// error, for one that did not compile).
pub(crate) fn eval(
    source: &str,
    compiled: &Compiled,
    inputs: &Inputs,
    params: &dyn Val,
    variables: Option<&Variables<'_>>,
) -> Result<cel::Value, String> {
    let program = compiled
        .as_ref()
        .map_err(|e| format!("compilation error: {e}"))?;
    let scope = Scope {
        inputs,
        params,
        variables,
        visible: usize::MAX,
        failed: Mutex::new(None),
    };
    scope.run(source, program)
}

/// Upstream's matchConditions: `Ok(false)` as soon as one is false, else
/// the errors of those that failed (upstream's aggregate: one alone, several
/// as `[a, b]`), else `Ok(true)`. What an error means is the caller's
/// `failurePolicy`.
pub(crate) fn conditions_match(
    conditions: &[Value],
    inputs: &Inputs,
    params: &dyn Val,
    variables: Option<&Variables<'_>>,
) -> Result<bool, String> {
    let mut errors = Vec::new();
    for condition in conditions {
        let source = condition["expression"].as_str().unwrap_or("");
        match eval(source, &compile(source), inputs, params, variables) {
            Ok(cel::Value::Bool(false)) => return Ok(false),
            Ok(cel::Value::Bool(true)) => {}
            Ok(other) => errors.push(format!(
                "expression '{source}' resulted in error: must evaluate to bool, got {}",
                other.type_of()
            )),
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(true),
        1 => Err(errors.remove(0)),
        _ => Err(format!("[{}]", errors.join(", "))),
    }
}

/// The `request` variable: the AdmissionRequest without its objects, as
/// upstream's CreateAdmissionRequest makes it.
pub(crate) fn request(req: &Request<'_>, obj: Option<&Value>, old: Option<&Value>) -> Value {
    let r = req.resource;
    let subject = obj.or(old).unwrap_or(&Value::Null);
    let kind = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let resource = json!({"group": r.group, "version": r.version, "resource": r.plural});
    let (operation, options) = match req.operation {
        Operation::Create => ("CREATE", "CreateOptions"),
        Operation::Update => ("UPDATE", "UpdateOptions"),
        Operation::Delete => ("DELETE", "DeleteOptions"),
    };
    let mut user = serde_json::Map::new();
    match req.user {
        Some(u) => {
            let mut put = |k: &str, v: Value| {
                let empty = match &v {
                    Value::String(s) => s.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    Value::Object(o) => o.is_empty(),
                    _ => false,
                };
                if !empty {
                    user.insert(k.to_owned(), v);
                }
            };
            put("username", json!(u.name));
            put("uid", json!(u.uid));
            put("groups", json!(u.groups));
            put("extra", json!(u.extra));
        }
        None => {
            user.insert("username".into(), json!("system:apiserver"));
            user.insert("groups".into(), json!(["system:masters"]));
        }
    }
    let mut request = json!({
        "uid": "",
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "operation": operation,
        "userInfo": user,
        "dryRun": req.dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": options},
    });
    if let Some(name) = subject["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
    {
        request["name"] = json!(name);
    }
    if r.namespaced
        && let Some(ns) = subject["metadata"]["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
    {
        request["namespace"] = json!(ns);
    }
    if let Some(sub) = req.subresource {
        request["subResource"] = json!(sub);
        request["requestSubResource"] = json!(sub);
    }
    request
}

/// cel-go's wording for the common runtime errors.
fn message(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(key) => format!("no such key: {key}"),
        ExecutionError::UndeclaredReference(name) => format!("undeclared reference to '{name}'"),
        ExecutionError::DivisionByZero(_) => "division by zero".to_owned(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".to_owned(),
        other => other.to_string(),
    }
}

/// Kubernetes' sets library and the list functions of its lists library.
fn kubernetes_library(env: &mut Env) -> Result<(), cel::DeclarationError> {
    let list2 = || vec![LIST_TYPE, LIST_TYPE];
    env.add_overload(
        "sets.contains",
        "list_sets_contains_list",
        list2(),
        sets_contains,
    )?;
    env.add_overload(
        "sets.equivalent",
        "list_sets_equivalent_list",
        list2(),
        sets_equivalent,
    )?;
    env.add_overload(
        "sets.intersects",
        "list_sets_intersects_list",
        list2(),
        sets_intersects,
    )?;
    env.add_member_overload("isSorted", "list_is_sorted", LIST_TYPE, vec![], is_sorted)?;
    env.add_member_overload("sum", "list_sum", LIST_TYPE, vec![], sum)?;
    env.add_member_overload("min", "list_min", LIST_TYPE, vec![], min)?;
    env.add_member_overload("max", "list_max", LIST_TYPE, vec![], max)?;
    env.add_member_overload(
        "indexOf",
        "list_index_of",
        LIST_TYPE,
        vec![cel::common::types::DYN_TYPE],
        index_of,
    )?;
    env.add_member_overload(
        "lastIndexOf",
        "list_last_index_of",
        LIST_TYPE,
        vec![cel::common::types::DYN_TYPE],
        last_index_of,
    )?;
    Ok(())
}

/// The elements of a list argument.
fn elements<'a, 'v>(v: &'a (dyn Val + 'v)) -> Result<Vec<&'a (dyn Val + 'v)>, ExecutionError> {
    let list = v
        .as_iterable()
        .ok_or_else(|| ExecutionError::function_error("list", "expected a list"))?;
    let mut out = Vec::new();
    let mut it = list.iter();
    while let Some(e) = it.next() {
        out.push(e);
    }
    Ok(out)
}

fn contains_all(a: &[&dyn Val], b: &[&dyn Val]) -> bool {
    b.iter().all(|x| a.iter().any(|y| y.equals(*x)))
}

fn boolean<'b, 'v>(b: bool) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Ok(CowVal::owned(CelBool::from(b)))
}

fn sets_contains<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = (elements(args[0].as_ref())?, elements(args[1].as_ref())?);
    boolean(contains_all(&a, &b))
}

fn sets_equivalent<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = (elements(args[0].as_ref())?, elements(args[1].as_ref())?);
    boolean(contains_all(&a, &b) && contains_all(&b, &a))
}

fn sets_intersects<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = (elements(args[0].as_ref())?, elements(args[1].as_ref())?);
    boolean(a.iter().any(|x| b.iter().any(|y| y.equals(*x))))
}

/// Orders two elements, as `<` does.
fn order(a: &dyn Val, b: &dyn Val) -> Result<std::cmp::Ordering, ExecutionError> {
    a.as_comparer()
        .ok_or_else(|| ExecutionError::function_error("compare", "elements are not comparable"))?
        .compare(b)
}

fn is_sorted<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = elements(args[0].as_ref())?;
    for pair in items.windows(2) {
        if order(pair[0], pair[1])? == std::cmp::Ordering::Greater {
            return boolean(false);
        }
    }
    boolean(true)
}

fn sum<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = elements(args[0].as_ref())?;
    let mut int: i64 = 0;
    let mut double: Option<f64> = None;
    for item in items {
        if let Some(i) = item.downcast_ref::<CelInt>() {
            let i: i64 = *i.inner();
            int = int
                .checked_add(i)
                .ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))?;
        } else if let Some(d) = item.downcast_ref::<CelDouble>() {
            *double.get_or_insert(0.0) += *d.inner();
        } else {
            return Err(ExecutionError::function_error(
                "sum",
                format!("cannot sum {}", item.get_type().name()),
            ));
        }
    }
    Ok(match double {
        Some(d) => CowVal::owned(CelDouble::from(d + int as f64)),
        None => CowVal::owned(CelInt::from(int)),
    })
}

fn extreme<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
    name: &str,
    keep: std::cmp::Ordering,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = elements(args[0].as_ref())?;
    let mut best: Option<&(dyn Val + 'v)> = None;
    for item in items {
        best = match best {
            Some(b) if order(item, b)? != keep => Some(b),
            _ => Some(item),
        };
    }
    best.map(|b| CowVal::Owned(b.clone_as_boxed()))
        .ok_or_else(|| {
            ExecutionError::function_error(name, format!("{name} called on an empty list"))
        })
}

fn min<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme(args, "min", std::cmp::Ordering::Less)
}

fn max<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme(args, "max", std::cmp::Ordering::Greater)
}

fn index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = elements(args[0].as_ref())?;
    let found = items.iter().position(|x| x.equals(args[1].as_ref()));
    Ok(CowVal::owned(CelInt::from(found.map_or(-1, |i| i as i64))))
}

fn last_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = elements(args[0].as_ref())?;
    let found = items.iter().rposition(|x| x.equals(args[1].as_ref()));
    Ok(CowVal::owned(CelInt::from(found.map_or(-1, |i| i as i64))))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(source: &str, object: Value) -> Result<cel::Value, String> {
        let inputs = Inputs::new(Some(&object), None, &json!({"operation": "CREATE"}), None);
        eval(source, &compile(source), &inputs, &CelNull, None)
    }

    #[test]
    fn fields_of_the_object_are_read_and_compared() {
        let deployment = json!({"spec": {"replicas": 6, "ratio": 0.5, "labels": {"app": "web"}}});
        assert_eq!(
            run("object.spec.replicas <= 5", deployment.clone()),
            Ok(false.into())
        );
        assert_eq!(
            run("object.spec.replicas + 1 == 7", deployment.clone()),
            Ok(true.into())
        );
        assert_eq!(
            run("object.spec.ratio < 1", deployment.clone()),
            Ok(true.into())
        );
        assert_eq!(
            run("has(object.spec.replicas)", deployment.clone()),
            Ok(true.into())
        );
        assert_eq!(
            run("has(object.spec.paused)", deployment.clone()),
            Ok(false.into())
        );
        assert_eq!(
            run("object.spec.labels['app'] == 'web'", deployment.clone()),
            Ok(true.into())
        );
        assert_eq!(
            run("oldObject == null", deployment.clone()),
            Ok(true.into())
        );
        assert_eq!(
            run("request.operation == 'CREATE'", deployment.clone()),
            Ok(true.into())
        );
        assert_eq!(
            run("object.spec.paused", deployment),
            Err("expression 'object.spec.paused' resulted in error: no such key: paused".into())
        );
    }

    #[test]
    fn macros_and_string_functions_work_on_lists() {
        let pod = json!({"spec": {"containers": [{"name": "App", "image": "nginx:1"}, {"name": "b", "image": "registry.k8s.io/pause"}]}});
        let ok = |s: &str| assert_eq!(run(s, pod.clone()), Ok(true.into()), "{s}");
        ok(
            "object.spec.containers.all(c, c.image.contains(':') || c.image.startsWith('registry.k8s.io/'))",
        );
        ok("object.spec.containers.exists(c, c.name.lowerAscii() == 'app')");
        ok("object.spec.containers.map(c, c.name).size() == 2");
        ok("size(object.spec.containers.filter(c, c.name.upperAscii() == 'B')) == 1");
        ok("object.spec.containers[0].image.matches('^nginx:[0-9]+$')");
        ok("object.spec.containers[1].image.endsWith('pause')");
        ok("sets.contains(['a', 'b', 'c'], ['a', 'c']) && !sets.intersects(['a'], ['b'])");
        ok("[3, 1, 2].max() == 3 && [1, 2, 3].isSorted() && [1, 2].sum() == 3");
        ok("['a', 'b'].indexOf('b') == 1 && 'abc'.indexOf('c') == 2");
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = compile("object.spec.replicas <=").unwrap_err();
        assert!(
            e.starts_with("compilation failed: ERROR: <input>:1:"),
            "{e}"
        );
    }

    #[test]
    fn variables_are_evaluated_lazily_and_see_only_earlier_ones() {
        let defined: Vec<(String, String, Compiled)> = [
            ("replicas", "object.spec.replicas"),
            ("double", "variables.replicas * 2"),
            ("broken", "object.spec.missing"),
            ("ahead", "variables.later"),
            ("later", "1"),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_owned(), s.to_owned(), compile(s)))
        .collect();
        let object = json!({"spec": {"replicas": 3}});
        let inputs = Inputs::new(Some(&object), None, &json!({}), None);
        let eval_with = |s: &str| {
            let variables = Variables::new(&defined);
            eval(s, &compile(s), &inputs, &CelNull, Some(&variables))
        };
        assert_eq!(eval_with("variables.double == 6"), Ok(true.into()));
        assert_eq!(
            eval_with("variables.broken == 1"),
            Err("expression 'object.spec.missing' resulted in error: no such key: missing".into())
        );
        assert!(eval_with("variables.ahead == 1").is_err());
        assert_eq!(eval_with("variables.later == 1"), Ok(true.into()));
    }
}
