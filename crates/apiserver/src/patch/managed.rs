//! `metadata.managedFields`: who owns which fields, decoded into sets, the
//! bookkeeping of an operation's changes, and the encoding back
//! (k8s.io/apimachinery/pkg/util/managedfields, structured-merge-diff merge).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::fieldpath::{Path, PathElement, Set};
use super::typed::Comparison;

/// The kind of write that made an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Operation {
    Apply,
    Update,
}

/// What tells managers apart: an applier is one manager whatever the API
/// version it applies with; an updater is one per API version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ManagerId {
    pub manager: String,
    pub operation: Operation,
    /// Empty for `Apply`.
    pub api_version: String,
    pub subresource: String,
}

/// The fields one manager owns.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub set: Set,
    pub api_version: String,
    pub time: Option<String>,
}

/// The decoded `managedFields` of an object.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Managed {
    pub entries: BTreeMap<ManagerId, Entry>,
}

/// Fields a manager never owns (upstream's stripMeta): identity and
/// server-set metadata.
const STRIPPED: &[&[&str]] = &[
    &["apiVersion"],
    &["kind"],
    &["metadata"],
    &["metadata", "name"],
    &["metadata", "namespace"],
    &["metadata", "creationTimestamp"],
    &["metadata", "selfLink"],
    &["metadata", "uid"],
    &["metadata", "clusterName"],
    &["metadata", "generation"],
    &["metadata", "managedFields"],
    &["metadata", "resourceVersion"],
];

/// Update managers beyond this many are folded, oldest first, into one
/// `ancient-changes` entry per API version.
const MAX_UPDATE_MANAGERS: usize = 10;

impl ManagerId {
    pub(crate) fn new(
        manager: &str,
        operation: Operation,
        api_version: &str,
        subresource: &str,
    ) -> Self {
        ManagerId {
            manager: if manager.is_empty() {
                "unknown"
            } else {
                manager
            }
            .to_owned(),
            operation,
            api_version: match operation {
                Operation::Apply => String::new(),
                Operation::Update => api_version.to_owned(),
            },
            subresource: subresource.to_owned(),
        }
    }

    /// The manager as conflicts name it: `"kubectl"`, or
    /// `"kube-controller-manager" using apps/v1` for an updater.
    pub(crate) fn describe(&self) -> String {
        let mut out = serde_json::to_string(&self.manager).expect("serializes");
        if !self.subresource.is_empty() {
            out.push_str(&format!(
                " with subresource {}",
                serde_json::to_string(&self.subresource).expect("serializes")
            ));
        }
        if self.operation == Operation::Update {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }
}

/// The set of fields never owned.
pub(crate) fn stripped_fields() -> Set {
    let mut set = Set::new();
    for path in STRIPPED {
        let path: Path = path.iter().map(|p| PathElement::field(p)).collect();
        set.insert(&path);
    }
    set
}

fn time_seconds(time: &Option<String>) -> i64 {
    time.as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or(0, |t| t.as_second())
}

impl Managed {
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decodes `metadata.managedFields` (absent or `null`: no entries).
    pub(crate) fn decode(value: Option<&Value>) -> Result<Managed, String> {
        let mut managed = Managed::default();
        let items = match value {
            None | Some(Value::Null) => return Ok(managed),
            Some(Value::Array(items)) => items,
            Some(_) => return Err("managedFields must be a list".to_owned()),
        };
        for (i, item) in items.iter().enumerate() {
            let text = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or("");
            let operation = match text("operation") {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                _ => return Err("operation must be `Apply` or `Update`".to_owned()),
            };
            if text("apiVersion").is_empty() {
                return Err("apiVersion must not be empty".to_owned());
            }
            match text("fieldsType") {
                "FieldsV1" => {}
                "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
                other => {
                    return Err(format!(
                        "invalid fieldsType {other:?} in managed fields entry {i}"
                    ));
                }
            }
            let set = match item.get("fieldsV1") {
                None | Some(Value::Null) => Set::new(),
                Some(v) => Set::from_fields_v1(v)?,
            };
            let id = ManagerId::new(
                text("manager"),
                operation,
                text("apiVersion"),
                text("subresource"),
            );
            let time = item.get("time").and_then(Value::as_str).map(str::to_owned);
            managed.entries.insert(
                id,
                Entry {
                    set,
                    api_version: text("apiVersion").to_owned(),
                    time,
                },
            );
        }
        Ok(managed)
    }

    /// The `managedFields` list, in upstream's order (appliers first, then
    /// by time, manager, API version, subresource); `None` when empty.
    pub(crate) fn encode(&self) -> Option<Value> {
        if self.entries.is_empty() {
            return None;
        }
        let mut entries: Vec<(&ManagerId, &Entry)> = self.entries.iter().collect();
        entries.sort_by(|(a, ea), (b, eb)| {
            a.operation
                .cmp(&b.operation)
                .then_with(|| time_seconds(&ea.time).cmp(&time_seconds(&eb.time)))
                .then_with(|| a.manager.cmp(&b.manager))
                .then_with(|| ea.api_version.cmp(&eb.api_version))
                .then_with(|| a.subresource.cmp(&b.subresource))
        });
        let list = entries
            .into_iter()
            .map(|(id, e)| {
                let mut m = Map::new();
                m.insert("manager".to_owned(), json!(id.manager));
                m.insert(
                    "operation".to_owned(),
                    json!(match id.operation {
                        Operation::Apply => "Apply",
                        Operation::Update => "Update",
                    }),
                );
                m.insert("apiVersion".to_owned(), json!(e.api_version));
                if let Some(t) = &e.time {
                    m.insert("time".to_owned(), json!(t));
                }
                m.insert("fieldsType".to_owned(), json!("FieldsV1"));
                m.insert("fieldsV1".to_owned(), e.set.to_fields_v1());
                if !id.subresource.is_empty() {
                    m.insert("subresource".to_owned(), json!(id.subresource));
                }
                Value::Object(m)
            })
            .collect();
        Some(Value::Array(list))
    }

    /// Takes the changes of an operation by `me` into account (upstream's
    /// Updater.update): fields `me` changed are taken from every other
    /// manager — unless `force` is false, when another manager owning one
    /// is a conflict — and removed fields are owned by nobody.
    pub(crate) fn take_changes(
        &mut self,
        me: &ManagerId,
        cmp: &Comparison,
        force: bool,
    ) -> Result<(), Vec<(ManagerId, Path)>> {
        let changed = cmp.modified.union(&cmp.added);
        let mut conflicts = Vec::new();
        for (id, entry) in &self.entries {
            if id == me {
                continue;
            }
            for path in entry.set.intersection(&changed).paths() {
                conflicts.push((id.clone(), path));
            }
        }
        if !force && !conflicts.is_empty() {
            return Err(conflicts);
        }
        for (id, entry) in self.entries.iter_mut() {
            if id == me {
                continue;
            }
            entry.set = entry.set.difference(&changed).difference(&cmp.removed);
        }
        self.entries.retain(|_, e| !e.set.is_empty());
        Ok(())
    }

    /// Folds the oldest update managers into `ancient-changes` entries when
    /// there are more than upstream keeps.
    pub(crate) fn cap_updaters(&mut self) {
        let mut updaters: Vec<ManagerId> = self
            .entries
            .keys()
            .filter(|id| id.operation == Operation::Update)
            .cloned()
            .collect();
        if updaters.len() <= MAX_UPDATE_MANAGERS {
            return;
        }
        updaters.sort_by(|a, b| {
            time_seconds(&self.entries[a].time)
                .cmp(&time_seconds(&self.entries[b].time))
                .then_with(|| a.cmp(b))
        });
        let mut remaining = updaters.len();
        let mut first_of_version: BTreeMap<String, ManagerId> = BTreeMap::new();
        for id in updaters {
            if remaining <= MAX_UPDATE_MANAGERS {
                break;
            }
            let entry = self.entries[&id].clone();
            let bucket =
                ManagerId::new("ancient-changes", Operation::Update, &entry.api_version, "");
            match first_of_version.get(&entry.api_version) {
                Some(first) => {
                    if !self.entries.contains_key(&bucket) {
                        let moved = self.entries.remove(first).expect("present");
                        self.entries.insert(bucket.clone(), moved);
                    }
                    let bucket_entry = self.entries.get_mut(&bucket).expect("present");
                    bucket_entry.set = bucket_entry.set.union(&entry.set);
                    bucket_entry.time = entry.time.clone();
                    self.entries.remove(&id);
                    remaining -= 1;
                }
                None => {
                    first_of_version.insert(entry.api_version.clone(), id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_in_upstreams_order() {
        let list = json!([
            {"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
             "time": "2024-01-01T00:00:02Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "a", "operation": "Update", "apiVersion": "apps/v1",
             "time": "2024-01-01T00:00:01Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:paused": {}}}},
            {"manager": "kubelet", "operation": "Update", "apiVersion": "v1",
             "time": "2024-01-01T00:00:03Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:status": {"f:phase": {}}}, "subresource": "status"}
        ]);
        let managed = Managed::decode(Some(&list)).unwrap();
        assert_eq!(managed.entries.len(), 3);
        assert_eq!(managed.encode().unwrap(), list);
    }

    #[test]
    fn bad_entries_are_rejected() {
        let bad = json!([{"manager": "x", "operation": "Patch", "apiVersion": "v1", "fieldsType": "FieldsV1"}]);
        assert!(Managed::decode(Some(&bad)).is_err());
        let bad = json!([{"manager": "x", "operation": "Update", "apiVersion": "v1"}]);
        assert!(
            Managed::decode(Some(&bad))
                .unwrap_err()
                .contains("missing fieldsType")
        );
    }

    #[test]
    fn managers_describe_themselves_as_upstream_does() {
        assert_eq!(
            ManagerId::new("kubectl", Operation::Apply, "apps/v1", "").describe(),
            "\"kubectl\""
        );
        assert_eq!(
            ManagerId::new("kubelet", Operation::Update, "v1", "status").describe(),
            "\"kubelet\" with subresource \"status\" using v1"
        );
    }

    #[test]
    fn more_than_ten_updaters_fold_into_ancient_changes() {
        let mut managed = Managed::default();
        for i in 0..12 {
            let mut set = Set::new();
            set.insert(&[
                PathElement::field("f"),
                PathElement::field(&format!("x{i}")),
            ]);
            managed.entries.insert(
                ManagerId::new(&format!("m{i:02}"), Operation::Update, "v1", ""),
                Entry {
                    set,
                    api_version: "v1".to_owned(),
                    time: Some(format!("2024-01-01T00:00:{i:02}Z")),
                },
            );
        }
        managed.cap_updaters();
        assert_eq!(managed.entries.len(), 10);
        let ancient =
            &managed.entries[&ManagerId::new("ancient-changes", Operation::Update, "v1", "")];
        assert_eq!(ancient.set.paths().len(), 3);
    }
}
