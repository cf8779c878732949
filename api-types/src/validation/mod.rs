//! Validation of API objects, with errors shaped like upstream's `field.ErrorList`.
//!
//! Every check here follows upstream Kubernetes (v1.33): the same rules, the same
//! field paths and the same messages, so that `skiffctl` and `kubectl` users see the
//! text they already know:
//!
//! ```text
//! spec.containers[0].image: Required value
//! spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure"
//! ```
//!
//! The validators are pure functions from typed `k8s-openapi` objects to a list of
//! [`FieldError`]s; [`validate`] is the entry point the generic API server calls with
//! JSON. Validation expects objects that went through [`crate::defaults`] first, as
//! upstream does, but it tolerates fields that defaulting would fill (an absent
//! `restartPolicy` is not an error: defaulting makes it `Always`).
//!
//! Deliberate differences from upstream:
//! - struct-valued bad values print as JSON instead of Go's `%#v`;
//! - `supported values` lists are sorted;
//! - update checks that need the previous object's server-set fields
//!   (`resourceVersion`, `generation`) are left to the API server's update path, and an
//!   update that omits `uid` or `creationTimestamp` is not an error (upstream copies
//!   them from the stored object before validating).

mod apps;
mod batch;
mod cluster;
mod meta;
mod names;
mod pods;
mod services;

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use crate::k8s::apimachinery::pkg::util::intstr::IntOrString;

pub use apps::{
    validate_daemon_set, validate_daemon_set_update, validate_deployment,
    validate_deployment_update, validate_replica_set, validate_replica_set_update,
    validate_stateful_set, validate_stateful_set_update,
};
pub use batch::{
    CronSchedule, parse_cron_schedule, validate_cron_job, validate_cron_job_update, validate_job,
    validate_job_update,
};
pub use cluster::{
    validate_config_map, validate_config_map_update, validate_lease, validate_lease_update,
    validate_namespace, validate_namespace_update, validate_node, validate_node_update,
    validate_secret, validate_secret_update, validate_service_account,
    validate_service_account_update,
};
pub use meta::{
    validate_annotations, validate_label_selector, validate_labels, validate_object_meta,
    validate_object_meta_update,
};
pub use names::{
    NameFn, is_config_map_key, is_dns1035_label, is_dns1123_label, is_dns1123_subdomain,
    is_env_var_name, is_qualified_name, is_relaxed_env_var_name, is_valid_ip, is_valid_label_value,
    is_valid_percent, is_valid_port_name, is_valid_port_num, name_fn_for, name_is_dns_label,
    name_is_dns_subdomain, name_is_dns1035_label, name_is_path_segment,
};
pub use pods::{
    validate_pod, validate_pod_spec, validate_pod_template, validate_pod_template_spec,
    validate_pod_template_update, validate_pod_update, validate_replication_controller,
    validate_replication_controller_update,
};
pub use services::{validate_service, validate_service_update};

/// Why a field is invalid: upstream's `field.ErrorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// A looked-up value does not exist (`Not found`).
    NotFound,
    /// A required value is missing (`Required value`).
    Required,
    /// A value that must be unique is repeated (`Duplicate value`).
    Duplicate,
    /// A malformed or out-of-range value (`Invalid value`).
    Invalid,
    /// A value outside an enumeration (`Unsupported value`).
    NotSupported,
    /// A well-formed value not permitted here (`Forbidden`).
    Forbidden,
    /// A value longer than allowed (`Too long`).
    TooLong,
    /// A list with more items than allowed (`Too many`).
    TooMany,
    /// An error not caused by the user's input (`Internal error`).
    Internal,
    /// A value of the wrong JSON type for its field (`Invalid value`).
    TypeInvalid,
}

/// One invalid field: upstream's `field.Error`.
///
/// [`Display`](fmt::Display) prints exactly upstream's `Error()` text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// What is wrong.
    pub kind: ErrorType,
    /// The field's path, as upstream prints it: `spec.containers[0].image`.
    pub field: String,
    /// The bad value as upstream prints it (strings quoted Go-style, numbers bare), or
    /// `None` when the message omits it.
    pub value: Option<String>,
    /// Why the value is wrong; may be empty.
    pub detail: String,
}

/// A list of field errors: upstream's `field.ErrorList`.
///
/// [`Display`](fmt::Display) prints upstream's aggregate: one error alone, several as
/// `[first, second]`, repeated messages once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<FieldError>);

/// A field path under construction, like upstream's `field.Path`.
///
/// ```
/// # use skiff_api_types::validation::Path;
/// let p = Path::new("spec").child("containers").index(0).child("image");
/// assert_eq!(p.to_string(), "spec.containers[0].image");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Path(String);

/// A bad value rendered the way upstream's error messages print it.
///
/// Strings are quoted Go-style (`"Foo_Bar"`), numbers and booleans are bare. Build
/// one with `From` or, for an already rendered value, [`BadValue::raw`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadValue(String);

impl ErrorType {
    /// The machine-readable reason, as upstream's `metav1.CauseType`.
    pub fn reason(&self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The human-readable phrase that starts the message: `Required value`.
    pub fn message(&self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid | ErrorType::TypeInvalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
        }
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl FieldError {
    /// An error of any kind; prefer the named constructors.
    pub fn new(
        kind: ErrorType,
        path: &Path,
        value: Option<BadValue>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            field: path.0.clone(),
            value: value.map(|v| v.0),
            detail: detail.into(),
        }
    }

    /// `Required value`, with an optional detail (`""` for none).
    pub fn required(path: &Path, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Required, path, None, detail)
    }

    /// `Invalid value: <value>: <detail>`.
    pub fn invalid(path: &Path, value: impl Into<BadValue>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Invalid, path, Some(value.into()), detail)
    }

    /// `Unsupported value: <value>: supported values: "a", "b"` (the list is sorted).
    pub fn not_supported(path: &Path, value: impl Into<BadValue>, supported: &[&str]) -> Self {
        let mut supported = supported.to_vec();
        supported.sort_unstable();
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(ErrorType::NotSupported, path, Some(value.into()), detail)
    }

    /// `Forbidden: <detail>`.
    pub fn forbidden(path: &Path, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Forbidden, path, None, detail)
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(path: &Path, value: impl Into<BadValue>) -> Self {
        Self::new(ErrorType::Duplicate, path, Some(value.into()), "")
    }

    /// `Not found: <value>`.
    pub fn not_found(path: &Path, value: impl Into<BadValue>) -> Self {
        Self::new(ErrorType::NotFound, path, Some(value.into()), "")
    }

    /// `Too long: may not be more than <max> bytes`.
    pub fn too_long(path: &Path, max_bytes: usize) -> Self {
        let unit = if max_bytes == 1 { "byte" } else { "bytes" };
        Self::new(
            ErrorType::TooLong,
            path,
            None,
            format!("may not be more than {max_bytes} {unit}"),
        )
    }

    /// `Too many: <actual>: must have at most <max> items`.
    pub fn too_many(path: &Path, actual: usize, max: usize) -> Self {
        Self::new(
            ErrorType::TooMany,
            path,
            Some(actual.into()),
            format!("must have at most {max} items"),
        )
    }

    /// `Internal error: <detail>`.
    pub fn internal(path: &Path, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Internal, path, None, detail)
    }

    /// `Invalid value: <value>: <detail>` for a value of the wrong type.
    pub fn type_invalid(
        path: &Path,
        value: impl Into<BadValue>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(ErrorType::TypeInvalid, path, Some(value.into()), detail)
    }

    /// The message without the field: upstream's `ErrorBody()`, which is what goes
    /// into a `metav1.StatusCause`'s `message`.
    pub fn body(&self) -> String {
        let mut s = String::from(self.kind.message());
        let omit_value = matches!(
            self.kind,
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong | ErrorType::Internal
        );
        if let (false, Some(value)) = (omit_value, &self.value) {
            s.push_str(": ");
            s.push_str(value);
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

impl std::error::Error for FieldError {}

impl FieldErrors {
    /// No errors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether there are no errors.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The errors, in the order they were found.
    pub fn iter(&self) -> std::slice::Iter<'_, FieldError> {
        self.0.iter()
    }

    /// `Ok(())` when there are no errors, else `Err(self)`.
    pub fn into_result(self) -> Result<(), FieldErrors> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    /// The message of upstream's `Invalid` status for these errors:
    /// `Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: ...`.
    pub fn status_message(&self, group: &str, kind: &str, name: &str) -> String {
        let qualified = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        format!("{qualified} {} is invalid: {self}", go_quote(name))
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut seen: Vec<String> = Vec::new();
        for err in &self.0 {
            let msg = err.to_string();
            if !seen.contains(&msg) {
                seen.push(msg);
            }
        }
        match seen.len() {
            0 => Ok(()),
            1 => f.write_str(&seen[0]),
            _ => write!(f, "[{}]", seen.join(", ")),
        }
    }
}

impl std::error::Error for FieldErrors {}

impl From<Vec<FieldError>> for FieldErrors {
    fn from(errors: Vec<FieldError>) -> Self {
        Self(errors)
    }
}

impl IntoIterator for FieldErrors {
    type Item = FieldError;
    type IntoIter = std::vec::IntoIter<FieldError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a FieldErrors {
    type Item = &'a FieldError;
    type IntoIter = std::slice::Iter<'a, FieldError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Extend<FieldError> for FieldErrors {
    fn extend<I: IntoIterator<Item = FieldError>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl Path {
    /// A path starting at `root` (`"metadata"`, `"spec"`). An empty root prints as
    /// `[]`, as upstream's `field.NewPath("")`.
    pub fn new(root: &str) -> Self {
        if root.is_empty() {
            Path("[]".to_owned())
        } else {
            Path(root.to_owned())
        }
    }

    /// The path to a named field below this one: `spec` → `spec.replicas`.
    pub fn child(&self, name: &str) -> Self {
        Path(format!("{}.{name}", self.0))
    }

    /// The path to a list item: `spec.containers` → `spec.containers[0]`.
    pub fn index(&self, index: usize) -> Self {
        Path(format!("{}[{index}]", self.0))
    }

    /// The path to a map entry: `metadata.labels` → `metadata.labels[app]`.
    pub fn key(&self, key: &str) -> Self {
        Path(format!("{}[{key}]", self.0))
    }

    /// The path as upstream prints it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl BadValue {
    /// A value that is already rendered (a Go-style map, a JSON object, ...).
    pub fn raw(rendered: impl Into<String>) -> Self {
        BadValue(rendered.into())
    }

    /// A serializable value, printed as compact JSON.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Self {
        BadValue(serde_json::to_string(value).unwrap_or_else(|_| "<unprintable>".to_owned()))
    }

    /// A string map printed as Go's `%#v` does: `map[string]string{"app":"web"}`.
    pub fn string_map(map: Option<&BTreeMap<String, String>>) -> Self {
        let Some(map) = map else {
            return BadValue("map[string]string(nil)".to_owned());
        };
        let entries: Vec<String> = map
            .iter()
            .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
            .collect();
        BadValue(format!("map[string]string{{{}}}", entries.join(", ")))
    }

    /// A string list printed as Go's `%#v` does: `[]string{"a", "b"}`.
    pub fn string_list(list: &[String]) -> Self {
        let items: Vec<String> = list.iter().map(|s| go_quote(s)).collect();
        BadValue(format!("[]string{{{}}}", items.join(", ")))
    }

    /// The rendered text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for BadValue {
    fn from(s: &str) -> Self {
        BadValue(go_quote(s))
    }
}

impl From<&String> for BadValue {
    fn from(s: &String) -> Self {
        BadValue(go_quote(s))
    }
}

impl From<String> for BadValue {
    fn from(s: String) -> Self {
        BadValue(go_quote(&s))
    }
}

impl From<Option<&str>> for BadValue {
    fn from(s: Option<&str>) -> Self {
        BadValue(go_quote(s.unwrap_or_default()))
    }
}

impl From<&IntOrString> for BadValue {
    /// Printed as upstream's `IntOrString.String()`: bare, `25%` or `8080`.
    fn from(v: &IntOrString) -> Self {
        match v {
            IntOrString::Int(i) => BadValue(i.to_string()),
            IntOrString::String(s) => BadValue(s.clone()),
        }
    }
}

macro_rules! bad_value_from_display {
    ($($t:ty),*) => {$(
        impl From<$t> for BadValue {
            fn from(v: $t) -> Self {
                BadValue(v.to_string())
            }
        }
    )*};
}
bad_value_from_display!(i32, i64, u32, u64, usize, bool);

/// Quotes a string as Go's `%q` / `strconv.Quote` does.
pub(crate) fn go_quote(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Validates an object the generic API server is about to store.
///
/// `group` is the API group (`""` for the core group), `kind` the object's kind,
/// `obj` the new object (after defaulting) and `old` the stored object on update.
/// Known kinds are decoded into their `k8s-openapi` type and checked field by field;
/// other kinds (custom resources, kinds without specific rules) get the metadata
/// checks only, namespaced or not as `namespaced` says. A value of the wrong JSON
/// type is reported against its field.
pub fn validate(
    group: &str,
    kind: &str,
    obj: &Value,
    old: Option<&Value>,
    namespaced: bool,
) -> Result<(), FieldErrors> {
    let group = if group == "core" { "" } else { group };
    let errors = match (group, kind) {
        ("", "Pod") => typed(obj, old, validate_pod, validate_pod_update),
        ("", "PodTemplate") => typed(
            obj,
            old,
            validate_pod_template,
            validate_pod_template_update,
        ),
        ("", "ReplicationController") => typed(
            obj,
            old,
            validate_replication_controller,
            validate_replication_controller_update,
        ),
        ("", "Service") => typed(obj, old, validate_service, validate_service_update),
        ("", "ConfigMap") => typed(obj, old, validate_config_map, validate_config_map_update),
        ("", "Secret") => typed(obj, old, validate_secret, validate_secret_update),
        ("", "Namespace") => typed(obj, old, validate_namespace, validate_namespace_update),
        ("", "Node") => typed(obj, old, validate_node, validate_node_update),
        ("", "ServiceAccount") => typed(
            obj,
            old,
            validate_service_account,
            validate_service_account_update,
        ),
        ("apps", "Deployment") => typed_with_selector(
            obj,
            old,
            apps::deployment_errors,
            apps::deployment_update_errors,
        ),
        ("apps", "ReplicaSet") => typed_with_selector(
            obj,
            old,
            apps::replica_set_errors,
            apps::replica_set_update_errors,
        ),
        ("apps", "StatefulSet") => typed_with_selector(
            obj,
            old,
            apps::stateful_set_errors,
            apps::stateful_set_update_errors,
        ),
        ("apps", "DaemonSet") => typed_with_selector(
            obj,
            old,
            apps::daemon_set_errors,
            apps::daemon_set_update_errors,
        ),
        ("batch", "Job") => typed(obj, old, validate_job, validate_job_update),
        ("batch", "CronJob") => typed(obj, old, validate_cron_job, validate_cron_job_update),
        ("coordination.k8s.io", "Lease") => typed(obj, old, validate_lease, validate_lease_update),
        _ => generic(group, kind, obj, old, namespaced),
    };
    FieldErrors(errors).into_result()
}

/// Decodes `obj` (and `old`) as `T` and runs the create or update validator.
fn typed<T: DeserializeOwned>(
    obj: &Value,
    old: Option<&Value>,
    create: impl Fn(&T) -> Vec<FieldError>,
    update: impl Fn(&T, &T) -> Vec<FieldError>,
) -> Vec<FieldError> {
    let new = match decode::<T>(obj) {
        Ok(new) => new,
        Err(err) => return vec![err],
    };
    match old {
        None => create(&new),
        Some(old) => match decode::<T>(old) {
            Ok(old) => update(&new, &old),
            Err(err) => vec![FieldError::internal(
                &Path::new(""),
                format!("the stored object could not be decoded: {err}"),
            )],
        },
    }
}

/// Like [`typed`] for kinds whose `spec.selector` is required but decodes to an empty
/// selector when absent: tells the validator whether the JSON had one.
fn typed_with_selector<T: DeserializeOwned>(
    obj: &Value,
    old: Option<&Value>,
    create: fn(&T, bool) -> Vec<FieldError>,
    update: fn(&T, &T, bool) -> Vec<FieldError>,
) -> Vec<FieldError> {
    let present = obj
        .get("spec")
        .and_then(|spec| spec.get("selector"))
        .is_some_and(|sel| !sel.is_null());
    typed(
        obj,
        old,
        |new: &T| create(new, present),
        |new: &T, old: &T| update(new, old, present),
    )
}

/// Metadata-only validation for kinds without specific rules.
fn generic(
    group: &str,
    kind: &str,
    obj: &Value,
    old: Option<&Value>,
    namespaced: bool,
) -> Vec<FieldError> {
    let meta = |v: &Value| -> Result<ObjectMeta, FieldError> {
        match v.get("metadata") {
            None | Some(Value::Null) => Ok(ObjectMeta::default()),
            Some(m) => decode_at::<ObjectMeta>(m, &["metadata"]),
        }
    };
    if !obj.is_object() {
        return vec![FieldError::type_invalid(
            &Path::new(""),
            BadValue::json(obj),
            "an object must be a JSON object",
        )];
    }
    let new = match meta(obj) {
        Ok(m) => m,
        Err(err) => return vec![err],
    };
    let mut errs = meta::object_meta_errors(
        &new,
        namespaced,
        name_fn_for(group, kind),
        &Path::new("metadata"),
    );
    if let Some(old) = old {
        match meta(old) {
            Ok(old) => errs.extend(meta::object_meta_update_errors(&new, &old)),
            Err(err) => errs.push(FieldError::internal(
                &Path::new(""),
                format!("the stored object could not be decoded: {err}"),
            )),
        }
    }
    errs
}

/// Decodes a whole object, ignoring its `apiVersion` and `kind` (the caller already
/// dispatched on them, and `k8s-openapi` only accepts its own version).
fn decode<T: DeserializeOwned>(obj: &Value) -> Result<T, FieldError> {
    let Value::Object(map) = obj else {
        return Err(FieldError::type_invalid(
            &Path::new(""),
            BadValue::json(obj),
            "an object must be a JSON object",
        ));
    };
    let mut map = map.clone();
    map.remove("apiVersion");
    map.remove("kind");
    decode_at(&Value::Object(map), &[])
}

/// Decodes `value` as `T`; on failure names the field (below `prefix`) that failed.
pub(crate) fn decode_at<T: DeserializeOwned>(
    value: &Value,
    prefix: &[&str],
) -> Result<T, FieldError> {
    match T::deserialize(value) {
        Ok(t) => Ok(t),
        Err(_) => {
            // Decode again from text: serde_json then reports where it stopped, and the
            // position maps back to a field path.
            let text = serde_json::to_string(value).unwrap_or_default();
            let err = match serde_json::from_str::<T>(&text) {
                Ok(t) => return Ok(t),
                Err(err) => err,
            };
            let segments = if err.line() == 1 && err.column() > 0 {
                json_path_at(&text, err.column())
            } else {
                Vec::new()
            };
            let mut path: Option<Path> = None;
            for name in prefix {
                path = Some(match path {
                    None => Path::new(name),
                    Some(p) => p.child(name),
                });
            }
            let mut here = value;
            for seg in &segments {
                path = Some(match (path, seg) {
                    (None, Segment::Key(k)) => Path::new(k),
                    (None, Segment::Index(i)) => Path::new("").index(*i),
                    (Some(p), Segment::Key(k)) => p.child(k),
                    (Some(p), Segment::Index(i)) => p.index(*i),
                });
                here = match seg {
                    Segment::Key(k) => here.get(k.as_str()).unwrap_or(&Value::Null),
                    Segment::Index(i) => here.get(*i).unwrap_or(&Value::Null),
                };
            }
            let path = path.unwrap_or_else(|| Path::new(""));
            let shown = match here {
                Value::String(s) => BadValue::from(s),
                other => BadValue::json(other),
            };
            Err(FieldError::type_invalid(&path, shown, serde_message(&err)))
        }
    }
}

/// A serde error's message without serde_json's `at line 1 column 42` suffix.
fn serde_message(err: &serde_json::Error) -> String {
    let msg = err.to_string();
    match msg.rfind(" at line ") {
        Some(at) => msg[..at].to_owned(),
        None => msg,
    }
}

/// One step of a JSON path.
#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// The path to the innermost value being read when a parser stopped at `column`
/// (1-based) of single-line JSON `text`.
fn json_path_at(text: &str, column: usize) -> Vec<Segment> {
    enum Frame {
        Object {
            key: Option<String>,
            expecting_key: bool,
        },
        Array {
            index: usize,
        },
    }
    let bytes = text.as_bytes();
    let end = column.min(bytes.len());
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < end {
        match bytes[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if let Some(Frame::Object {
                    key,
                    expecting_key: true,
                }) = stack.last_mut()
                {
                    let raw = &text[start..(i + 1).min(text.len())];
                    *key = serde_json::from_str::<String>(raw).ok();
                }
            }
            b'{' => stack.push(Frame::Object {
                key: None,
                expecting_key: true,
            }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b':' => {
                if let Some(Frame::Object { expecting_key, .. }) = stack.last_mut() {
                    *expecting_key = false;
                }
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { key, expecting_key }) => {
                    *key = None;
                    *expecting_key = true;
                }
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
    stack
        .into_iter()
        .filter_map(|frame| match frame {
            Frame::Object {
                key: Some(k),
                expecting_key: false,
            } => Some(Segment::Key(k)),
            Frame::Object { .. } => None,
            Frame::Array { index } => Some(Segment::Index(index)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn required_errors_print_without_a_value() {
        let err = FieldError::required(
            &Path::new("spec")
                .child("containers")
                .index(0)
                .child("image"),
            "",
        );
        assert_eq!(err.to_string(), "spec.containers[0].image: Required value");
        assert_eq!(err.kind.reason(), "FieldValueRequired");
    }

    #[test]
    fn invalid_errors_quote_strings_and_print_numbers_bare() {
        let p = Path::new("metadata").child("name");
        assert_eq!(
            FieldError::invalid(&p, "Foo\"Bar", "nope").to_string(),
            r#"metadata.name: Invalid value: "Foo\"Bar": nope"#
        );
        let r = Path::new("spec").child("replicas");
        assert_eq!(
            FieldError::invalid(&r, -1, "must be greater than or equal to 0").to_string(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
    }

    #[test]
    fn unsupported_values_list_the_supported_ones_quoted() {
        let err = FieldError::not_supported(
            &Path::new("spec").child("restartPolicy"),
            "Sometimes",
            &["Always", "OnFailure", "Never"],
        );
        assert_eq!(
            err.to_string(),
            r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure""#
        );
        assert_eq!(err.kind.reason(), "FieldValueNotSupported");
    }

    #[test]
    fn the_other_error_types_print_as_upstream() {
        let p = Path::new("metadata").child("annotations");
        assert_eq!(
            FieldError::too_long(&p, 262144).to_string(),
            "metadata.annotations: Too long: may not be more than 262144 bytes"
        );
        assert_eq!(
            FieldError::forbidden(&Path::new("spec"), "no").to_string(),
            "spec: Forbidden: no"
        );
        assert_eq!(
            FieldError::duplicate(&Path::new("a").index(1), "x").to_string(),
            r#"a[1]: Duplicate value: "x""#
        );
        assert_eq!(
            FieldError::not_found(&Path::new("a"), "x").to_string(),
            r#"a: Not found: "x""#
        );
        assert_eq!(
            FieldError::too_many(&Path::new("a"), 5, 3).to_string(),
            "a: Too many: 5: must have at most 3 items"
        );
        assert_eq!(
            FieldError::internal(&Path::new("a"), "boom").to_string(),
            "a: Internal error: boom"
        );
        assert_eq!(ErrorType::TypeInvalid.reason(), "FieldValueTypeInvalid");
        assert_eq!(ErrorType::Internal.reason(), "InternalError");
    }

    #[test]
    fn paths_render_children_indexes_and_keys() {
        let p = Path::new("metadata").child("labels").key("app");
        assert_eq!(p.as_str(), "metadata.labels[app]");
        assert_eq!(Path::new("").to_string(), "[]");
    }

    #[test]
    fn an_error_list_prints_one_error_alone_and_several_in_brackets() {
        let a = FieldError::required(&Path::new("a"), "");
        let b = FieldError::required(&Path::new("b"), "");
        assert_eq!(
            FieldErrors(vec![a.clone()]).to_string(),
            "a: Required value"
        );
        assert_eq!(
            FieldErrors(vec![a.clone(), b.clone(), a.clone()]).to_string(),
            "[a: Required value, b: Required value]"
        );
        assert_eq!(
            FieldErrors(vec![a.clone(), a]).to_string(),
            "a: Required value"
        );
    }

    #[test]
    fn the_status_message_names_the_kind_and_object() {
        let errs = FieldErrors(vec![FieldError::required(&Path::new("spec"), "")]);
        assert_eq!(
            errs.status_message("apps", "Deployment", "web"),
            r#"Deployment.apps "web" is invalid: spec: Required value"#
        );
        assert_eq!(
            errs.status_message("", "Pod", "p"),
            r#"Pod "p" is invalid: spec: Required value"#
        );
    }

    #[test]
    fn go_quoting_escapes_like_strconv_quote() {
        assert_eq!(go_quote("a\nb\t\"c\"\\"), r#""a\nb\t\"c\"\\""#);
        assert_eq!(go_quote("\u{1}"), r#""\x01""#);
        assert_eq!(go_quote("héllo"), "\"héllo\"");
    }

    #[test]
    fn go_style_maps_and_lists_render_as_percent_sharp_v() {
        let mut m = BTreeMap::new();
        m.insert("b".to_owned(), "2".to_owned());
        m.insert("a".to_owned(), "1".to_owned());
        assert_eq!(
            BadValue::string_map(Some(&m)).as_str(),
            r#"map[string]string{"a":"1", "b":"2"}"#
        );
        assert_eq!(
            BadValue::string_map(None).as_str(),
            "map[string]string(nil)"
        );
        assert_eq!(
            BadValue::string_list(&["x".to_owned(), "y".to_owned()]).as_str(),
            r#"[]string{"x", "y"}"#
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_reported_against_its_field() {
        let obj = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": "three", "selector": {"matchLabels": {"app": "web"}}}
        });
        let errs = validate("apps", "Deployment", &obj, None, true).unwrap_err();
        assert_eq!(errs.len(), 1);
        let err = &errs.0[0];
        assert_eq!(err.kind, ErrorType::TypeInvalid);
        assert_eq!(err.field, "spec.replicas");
        assert_eq!(err.value.as_deref(), Some("\"three\""));
        assert!(err.detail.contains("expected i32"), "{}", err.detail);
    }

    #[test]
    fn a_wrong_type_inside_a_list_names_the_item() {
        let obj = json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [
                {"name": "a", "image": "x"},
                {"name": "b", "image": "y", "ports": [{"containerPort": "http"}]}
            ]}
        });
        let errs = validate("", "Pod", &obj, None, true).unwrap_err();
        assert_eq!(errs.0[0].field, "spec.containers[1].ports[0].containerPort");
    }

    #[test]
    fn json_paths_track_keys_and_indexes() {
        let text = r#"{"a":{"b":[1,{"c":"x"}]}}"#;
        let at = text.find("\"x\"").unwrap() + 3;
        assert_eq!(
            json_path_at(text, at),
            vec![
                Segment::Key("a".into()),
                Segment::Key("b".into()),
                Segment::Index(1),
                Segment::Key("c".into())
            ]
        );
    }

    #[test]
    fn unknown_kinds_get_metadata_checks_only() {
        let ok = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default"}, "spec": {"anything": 1}});
        assert!(validate("example.com", "Widget", &ok, None, true).is_ok());
        let bad = json!({"metadata": {"name": "W_1"}});
        let errs = validate("example.com", "Widget", &bad, None, false).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(
            errs.0[0]
                .to_string()
                .starts_with(r#"metadata.name: Invalid value: "W_1""#)
        );
        let cluster_scoped = json!({"metadata": {"name": "w", "namespace": "x"}});
        assert_eq!(
            validate("example.com", "Widget", &cluster_scoped, None, false)
                .unwrap_err()
                .to_string(),
            "metadata.namespace: Forbidden: not allowed on this type"
        );
    }

    #[test]
    fn unknown_kinds_keep_their_name_on_update() {
        let old = json!({"metadata": {"name": "w", "namespace": "d", "uid": "1"}});
        let new = json!({"metadata": {"name": "v", "namespace": "d", "uid": "1"}});
        let errs = validate("example.com", "Widget", &new, Some(&old), true).unwrap_err();
        assert_eq!(
            errs.to_string(),
            r#"metadata.name: Invalid value: "v": field is immutable"#
        );
    }

    #[test]
    fn rbac_names_may_contain_colons() {
        let role = json!({"metadata": {"name": "system:controller:foo"}});
        assert!(
            validate(
                "rbac.authorization.k8s.io",
                "ClusterRole",
                &role,
                None,
                false
            )
            .is_ok()
        );
        let bad = json!({"metadata": {"name": "a/b"}});
        assert_eq!(
            validate(
                "rbac.authorization.k8s.io",
                "ClusterRole",
                &bad,
                None,
                false
            )
            .unwrap_err()
            .to_string(),
            r#"metadata.name: Invalid value: "a/b": may not contain '/'"#
        );
    }
}
