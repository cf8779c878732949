//! The REST operations of every served path, built from the registry: for
//! each resource its collection, item, all-namespaces, watch and subresource
//! paths with upstream's operation ids, actions, query parameters and
//! `x-kubernetes-group-version-kind` — independent of the document version
//! they are rendered into.

use std::borrow::Cow;

use skiff_api_types::registry::{self, ResourceInfo, SubresourceInfo};

use super::schemas::{
    API_GROUP, API_GROUP_LIST, API_RESOURCE_LIST, API_VERSIONS, DELETE_OPTIONS, Names, PATCH,
    STATUS, VERSION_INFO, WATCH_EVENT,
};

/// One path and the operations on it.
pub(super) struct PathItem {
    pub(super) path: String,
    /// Parameters shared by every operation of the path.
    pub(super) params: Vec<Param>,
    pub(super) ops: Vec<Operation>,
}

/// One operation (an HTTP method on a path).
pub(super) struct Operation {
    /// Lower-case HTTP method, as the documents key it: `get`, `post`, ...
    pub(super) method: &'static str,
    pub(super) id: String,
    pub(super) description: String,
    /// `x-kubernetes-action`: `get`, `list`, `watch`, `post`, `connect`, ...
    pub(super) action: Option<&'static str>,
    /// `x-kubernetes-group-version-kind`: the kind the operation serves.
    pub(super) gvk: Option<(&'static str, &'static str, &'static str)>,
    pub(super) params: Vec<Param>,
    pub(super) body: Option<Payload>,
    pub(super) consumes: &'static [&'static str],
    pub(super) produces: &'static [&'static str],
    /// Status code and what it carries.
    pub(super) responses: Vec<(u16, Payload)>,
    pub(super) tag: String,
}

/// What a request or response body holds.
#[derive(Clone, Debug)]
pub(super) enum Payload {
    /// An object of the named schema.
    Schema(String),
    /// A plain string (logs, streams).
    Text,
}

/// A path or query parameter.
#[derive(Clone, Debug)]
pub(super) struct Param {
    pub(super) name: &'static str,
    /// `path` (always required) or `query`.
    pub(super) location: &'static str,
    /// `string`, `integer` or `boolean`.
    pub(super) ty: &'static str,
    pub(super) description: Cow<'static, str>,
}

const fn query(name: &'static str, ty: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: "query",
        ty,
        description: Cow::Borrowed(description),
    }
}

const PRETTY: Param = query(
    "pretty",
    "string",
    "If 'true', then the output is pretty printed.",
);
const ALLOW_WATCH_BOOKMARKS: Param = query(
    "allowWatchBookmarks",
    "boolean",
    "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Ignored for requests that are not watches.",
);
const CONTINUE: Param = query(
    "continue",
    "string",
    "The continue token of a previous, limited list call, to fetch the next chunk of results. Its other query parameters must be the same as the first call's.",
);
const FIELD_SELECTOR: Param = query(
    "fieldSelector",
    "string",
    "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
);
const LABEL_SELECTOR: Param = query(
    "labelSelector",
    "string",
    "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
);
const LIMIT: Param = query(
    "limit",
    "integer",
    "The maximum number of responses to return for a list call. When more items exist, the server sets the `continue` field on the list metadata to a token that fetches the next chunk.",
);
const RESOURCE_VERSION: Param = query(
    "resourceVersion",
    "string",
    "Constrains which resource versions the request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details. Defaults to unset.",
);
const RESOURCE_VERSION_MATCH: Param = query(
    "resourceVersionMatch",
    "string",
    "Determines how resourceVersion is applied to list calls: NotOlderThan or Exact. Defaults to unset.",
);
const SEND_INITIAL_EVENTS: Param = query(
    "sendInitialEvents",
    "boolean",
    "With watch=true, starts the watch stream with synthetic events for every existing object, followed by a bookmark marking the end of that initial state.",
);
const TIMEOUT_SECONDS: Param = query(
    "timeoutSeconds",
    "integer",
    "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.",
);
const WATCH: Param = query(
    "watch",
    "boolean",
    "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.",
);
const DRY_RUN: Param = query(
    "dryRun",
    "string",
    "When present, the request is processed but nothing is persisted. The only valid value is All: every dry-run stage runs. Any other value is rejected.",
);
const FIELD_MANAGER: Param = query(
    "fieldManager",
    "string",
    "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters. Required for apply patches, optional otherwise.",
);
const FIELD_VALIDATION: Param = query(
    "fieldValidation",
    "string",
    "How the server treats unknown or duplicate fields in the request's object: Ignore drops them silently, Warn accepts the request with a warning per field, Strict fails the request.",
);
const FORCE: Param = query(
    "force",
    "boolean",
    "Force is going to \"force\" Apply requests: the caller re-acquires fields owned by other managers. Must be unset for non-apply patch requests.",
);
const GRACE_PERIOD_SECONDS: Param = query(
    "gracePeriodSeconds",
    "integer",
    "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. Defaults to a per object value if not specified.",
);
const IGNORE_STORE_READ_ERROR: Param = query(
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "boolean",
    "If set to true, an object that cannot be read from storage (it cannot be decoded or transformed) is deleted anyway, bypassing admission and finalizers. Dangerous: it may break the cluster.",
);
const ORPHAN_DEPENDENTS: Param = query(
    "orphanDependents",
    "boolean",
    "Deprecated: please use the PropagationPolicy. Should the dependent objects be orphaned.",
);
const PROPAGATION_POLICY: Param = query(
    "propagationPolicy",
    "string",
    "Whether and how garbage collection will be performed: 'Orphan', 'Background' or 'Foreground'.",
);
const CONTAINER: Param = query(
    "container",
    "string",
    "The container for which to stream logs or run the command.",
);
const FOLLOW: Param = query(
    "follow",
    "boolean",
    "Follow the log stream of the pod. Defaults to false.",
);
const INSECURE_SKIP_TLS_VERIFY_BACKEND: Param = query(
    "insecureSkipTLSVerifyBackend",
    "boolean",
    "Skips verifying the serving certificate of the backend (kubelet) the logs are read from.",
);
const LIMIT_BYTES: Param = query(
    "limitBytes",
    "integer",
    "If set, the number of bytes to read from the server before terminating the log output.",
);
const PREVIOUS: Param = query(
    "previous",
    "boolean",
    "Return previous terminated container logs. Defaults to false.",
);
const SINCE_SECONDS: Param = query(
    "sinceSeconds",
    "integer",
    "A relative time in seconds before the current time from which to show logs.",
);
const STREAM: Param = query(
    "stream",
    "string",
    "Which container log stream to return: All, Stdout or Stderr. Defaults to All.",
);
const TAIL_LINES: Param = query(
    "tailLines",
    "integer",
    "If set, the number of lines from the end of the logs to show.",
);
const TIMESTAMPS: Param = query(
    "timestamps",
    "boolean",
    "If true, add an RFC3339 timestamp at the beginning of every line of log output. Defaults to false.",
);
const COMMAND: Param = query(
    "command",
    "string",
    "Command is the remote command to execute, one argument per parameter.",
);
const STDIN: Param = query(
    "stdin",
    "boolean",
    "Redirect the standard input stream of the pod for this call.",
);
const STDOUT: Param = query(
    "stdout",
    "boolean",
    "Redirect the standard output stream of the pod for this call.",
);
const STDERR: Param = query(
    "stderr",
    "boolean",
    "Redirect the standard error stream of the pod for this call.",
);
const TTY: Param = query(
    "tty",
    "boolean",
    "Allocate a terminal for this call. Defaults to false.",
);
const PORTS: Param = query("ports", "integer", "List of ports to forward.");
const PROXY_PATH: Param = query(
    "path",
    "string",
    "Path is the URL path to use for the current proxy request.",
);

const LIST_PARAMS: &[Param] = &[
    ALLOW_WATCH_BOOKMARKS,
    CONTINUE,
    FIELD_SELECTOR,
    LABEL_SELECTOR,
    LIMIT,
    RESOURCE_VERSION,
    RESOURCE_VERSION_MATCH,
    SEND_INITIAL_EVENTS,
    TIMEOUT_SECONDS,
    WATCH,
];
const WRITE_PARAMS: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION];
const PATCH_PARAMS: &[Param] = &[DRY_RUN, FORCE, FIELD_MANAGER, FIELD_VALIDATION];
const DELETE_PARAMS: &[Param] = &[
    DRY_RUN,
    GRACE_PERIOD_SECONDS,
    IGNORE_STORE_READ_ERROR,
    ORPHAN_DEPENDENTS,
    PROPAGATION_POLICY,
];
const DELETE_COLLECTION_PARAMS: &[Param] = &[
    CONTINUE,
    DRY_RUN,
    FIELD_SELECTOR,
    GRACE_PERIOD_SECONDS,
    IGNORE_STORE_READ_ERROR,
    LABEL_SELECTOR,
    LIMIT,
    ORPHAN_DEPENDENTS,
    PROPAGATION_POLICY,
    RESOURCE_VERSION,
    RESOURCE_VERSION_MATCH,
    SEND_INITIAL_EVENTS,
    TIMEOUT_SECONDS,
];
const LOG_PARAMS: &[Param] = &[
    CONTAINER,
    FOLLOW,
    INSECURE_SKIP_TLS_VERIFY_BACKEND,
    LIMIT_BYTES,
    PREVIOUS,
    SINCE_SECONDS,
    STREAM,
    TAIL_LINES,
    TIMESTAMPS,
];
const EXEC_PARAMS: &[Param] = &[COMMAND, CONTAINER, STDERR, STDIN, STDOUT, TTY];
const ATTACH_PARAMS: &[Param] = &[CONTAINER, STDERR, STDIN, STDOUT, TTY];
const PORT_FORWARD_PARAMS: &[Param] = &[PORTS];

const JSON_YAML: &[&str] = &["application/json", "application/yaml"];
const LIST_MEDIA: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/json;stream=watch",
];
const ANY_MEDIA: &[&str] = &["*/*"];
const TEXT_MEDIA: &[&str] = &["text/plain"];
const JSON_MEDIA: &[&str] = &["application/json"];
const PATCH_MEDIA: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// How the operations of one group-version are named: `listAppsV1…`, tag
/// `apps_v1`.
struct Naming {
    /// `Core`, `Apps`, `RbacAuthorization`.
    group: String,
    /// `V1`, `V2`, `V1beta1`.
    version: String,
    tag: String,
}

/// Builds the operations of the resources of one group-version.
struct Builder<'a> {
    /// The schema names of the kinds operations take and answer.
    names: &'a Names,
    naming: Naming,
    /// `/api/v1` or `/apis/<group>/<version>`.
    prefix: String,
    items: Vec<PathItem>,
}

/// The paths of `/api/v1` or `/apis/<group>/<version>`.
pub(super) fn group_version(group: &str, version: &str, names: &Names) -> Vec<PathItem> {
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut b = Builder {
        names,
        naming: Naming::new(group, version),
        prefix,
        items: Vec::new(),
    };
    let mut op = b.op(
        "get",
        b.id("get", "APIResources"),
        "get available resources".into(),
        None,
    );
    op.consumes = JSON_YAML;
    op.responses = vec![(200, Payload::Schema(API_RESOURCE_LIST.into()))];
    let root = format!("{}/", b.prefix);
    b.push(root, Vec::new(), vec![op]);
    for r in registry::resources_in(group, version) {
        b.resource(r);
    }
    b.items
}

/// The paths of one resource a CRD defines, as upstream's CRD OpenAPI
/// builder gives them (the same operations as a built-in kind's, named the
/// same way); `names` must name the kind's schema and its list's.
pub(super) fn custom_resource(r: &'static ResourceInfo, names: &Names) -> Vec<PathItem> {
    let mut b = Builder {
        names,
        naming: Naming::new(r.group, r.version),
        prefix: format!("/apis/{}/{}", r.group, r.version),
        items: Vec::new(),
    };
    b.resource(r);
    b.items
}

/// `/api/`: the versions of the core group.
pub(super) fn legacy_root() -> Vec<PathItem> {
    vec![discovery_item(
        "/api/",
        "getCoreAPIVersions",
        "core",
        API_VERSIONS,
    )]
}

/// `/apis/`: the API groups.
pub(super) fn groups_root() -> Vec<PathItem> {
    vec![discovery_item(
        "/apis/",
        "getAPIVersions",
        "apis",
        API_GROUP_LIST,
    )]
}

/// `/apis/<group>/`: one API group.
pub(super) fn group_root(group: &str) -> Vec<PathItem> {
    let naming = Naming::new(group, "");
    vec![discovery_item(
        &format!("/apis/{group}/"),
        &format!("get{}APIGroup", naming.group),
        naming.tag.trim_end_matches('_'),
        API_GROUP,
    )]
}

/// `/version/`: the server's version.
pub(super) fn version_root() -> Vec<PathItem> {
    let mut item = discovery_item("/version/", "getCodeVersion", "version", VERSION_INFO);
    item.ops[0].description = "get the version information for this server".into();
    item.ops[0].produces = JSON_MEDIA;
    vec![item]
}

fn discovery_item(path: &str, id: &str, tag: &str, schema: &str) -> PathItem {
    PathItem {
        path: path.to_owned(),
        params: Vec::new(),
        ops: vec![Operation {
            method: "get",
            id: id.to_owned(),
            description: if schema == API_GROUP {
                "get information of a group".into()
            } else {
                "get available API versions".into()
            },
            action: None,
            gvk: None,
            params: Vec::new(),
            body: None,
            consumes: JSON_YAML,
            produces: JSON_YAML,
            responses: vec![(200, Payload::Schema(schema.to_owned()))],
            tag: tag.to_owned(),
        }],
    }
}

impl Naming {
    fn new(group: &str, version: &str) -> Naming {
        let parts: Vec<&str> = if group.is_empty() {
            vec!["core"]
        } else {
            group.trim_end_matches(".k8s.io").split('.').collect()
        };
        let group_name: String = parts.iter().map(|p| capitalize(p)).collect();
        let mut tag_group = group_name.clone();
        if let Some(first) = tag_group.get(..1) {
            tag_group = first.to_ascii_lowercase() + &tag_group[1..];
        }
        Naming {
            group: group_name,
            version: capitalize(version),
            tag: format!("{tag_group}_{version}"),
        }
    }
}

impl Builder<'_> {
    /// An operation with the defaults of this group-version filled in.
    fn op(
        &self,
        method: &'static str,
        id: String,
        description: String,
        gvk: Option<(&'static str, &'static str, &'static str)>,
    ) -> Operation {
        Operation {
            method,
            id,
            description,
            action: None,
            gvk,
            params: Vec::new(),
            body: None,
            consumes: ANY_MEDIA,
            produces: JSON_YAML,
            responses: Vec::new(),
            tag: self.naming.tag.clone(),
        }
    }

    /// `<verb><Group><Version><rest>`, e.g. `listCoreV1NamespacedPod`.
    fn id(&self, verb: &str, rest: &str) -> String {
        format!("{verb}{}{}{rest}", self.naming.group, self.naming.version)
    }

    fn schema(&self, group: &str, version: &str, kind: &str) -> Option<Payload> {
        self.names
            .name_of(group, version, kind)
            .map(|name| Payload::Schema(name.to_owned()))
    }

    fn push(&mut self, path: String, params: Vec<Param>, ops: Vec<Operation>) {
        if !ops.is_empty() {
            self.items.push(PathItem { path, params, ops });
        }
    }

    fn resource(&mut self, r: &'static ResourceInfo) {
        let gvk = Some((r.group, r.version, r.kind));
        let object = self.schema(r.group, r.version, r.kind);
        let (scope, scope_params, scoped) = if r.namespaced {
            (
                "namespaces/{namespace}/",
                vec![namespace_param()],
                "Namespaced",
            )
        } else {
            ("", Vec::new(), "")
        };
        let kind = r.kind;
        let base = format!("{}/{scope}{}", self.prefix, r.plural);
        let with_pretty = |mut params: Vec<Param>| {
            params.push(PRETTY);
            params
        };
        let name_params = |scope_params: &[Param]| {
            let mut params = vec![name_param(kind)];
            params.extend_from_slice(scope_params);
            params
        };

        // The collection.
        let mut ops = Vec::new();
        if r.has_verb("list") {
            ops.push(self.list_op(r, &format!("{scoped}{kind}")));
        }
        if r.has_verb("create") {
            let mut op = self.op(
                "post",
                self.id("create", &format!("{scoped}{kind}")),
                format!("create {}", article(kind)),
                gvk,
            );
            op.action = Some("post");
            op.params = WRITE_PARAMS.to_vec();
            op.body = object.clone();
            op.responses = created(object.clone());
            ops.push(op);
        }
        if r.has_verb("deletecollection") {
            let mut op = self.op(
                "delete",
                self.id("delete", &format!("Collection{scoped}{kind}")),
                format!("delete collection of {kind}"),
                gvk,
            );
            op.action = Some("deletecollection");
            op.params = DELETE_COLLECTION_PARAMS.to_vec();
            op.body = Some(Payload::Schema(DELETE_OPTIONS.into()));
            op.responses = vec![(200, Payload::Schema(STATUS.into()))];
            ops.push(op);
        }
        self.push(base.clone(), with_pretty(scope_params.clone()), ops);

        // One object.
        let mut ops = Vec::new();
        let rest = format!("{scoped}{kind}");
        if r.has_verb("get") {
            let mut op = self.op(
                "get",
                self.id("read", &rest),
                format!("read the specified {kind}"),
                gvk,
            );
            op.action = Some("get");
            op.responses = object.iter().map(|o| (200, o.clone())).collect();
            ops.push(op);
        }
        if r.has_verb("update") {
            ops.push(self.replace_op(
                self.id("replace", &rest),
                format!("replace the specified {kind}"),
                gvk,
                object.clone(),
            ));
        }
        if r.has_verb("patch") {
            ops.push(self.patch_op(
                self.id("patch", &rest),
                format!("partially update the specified {kind}"),
                gvk,
                object.clone(),
            ));
        }
        if r.has_verb("delete") {
            let mut op = self.op(
                "delete",
                self.id("delete", &rest),
                format!("delete {}", article(kind)),
                gvk,
            );
            op.action = Some("delete");
            op.params = DELETE_PARAMS.to_vec();
            op.body = Some(Payload::Schema(DELETE_OPTIONS.into()));
            op.responses = vec![
                (200, Payload::Schema(STATUS.into())),
                (202, Payload::Schema(STATUS.into())),
            ];
            ops.push(op);
        }
        self.push(
            format!("{base}/{{name}}"),
            with_pretty(name_params(&scope_params)),
            ops,
        );

        // Across namespaces.
        if r.namespaced && r.has_verb("list") {
            let op = self.list_op(r, &format!("{kind}ForAllNamespaces"));
            self.push(
                format!("{}/{}", self.prefix, r.plural),
                vec![PRETTY],
                vec![op],
            );
        }

        // The deprecated watch paths.
        if r.has_verb("watch") {
            let watch_base = format!("{}/watch/{scope}{}", self.prefix, r.plural);
            let op = self.watch_op(
                r,
                self.id("watch", &format!("{scoped}{kind}List")),
                "watchlist",
            );
            self.push(
                watch_base.clone(),
                with_pretty(scope_params.clone()),
                vec![op],
            );
            let op = self.watch_op(r, self.id("watch", &format!("{scoped}{kind}")), "watch");
            self.push(
                format!("{watch_base}/{{name}}"),
                with_pretty(name_params(&scope_params)),
                vec![op],
            );
            if r.namespaced {
                let op = self.watch_op(
                    r,
                    self.id("watch", &format!("{kind}ListForAllNamespaces")),
                    "watchlist",
                );
                self.push(
                    format!("{}/watch/{}", self.prefix, r.plural),
                    vec![PRETTY],
                    vec![op],
                );
            }
        }

        for s in r.subresources {
            let path = format!("{base}/{{name}}/{}", s.name);
            let params = with_pretty(name_params(&scope_params));
            self.subresource(r, s, &format!("{scoped}{kind}"), path, params);
        }
    }

    fn subresource(
        &mut self,
        r: &ResourceInfo,
        s: &'static SubresourceInfo,
        scoped_kind: &str,
        path: String,
        params: Vec<Param>,
    ) {
        let gvk = Some((s.group, s.version, s.kind));
        let sub = capitalize(s.name);
        let rest = format!("{scoped_kind}{sub}");
        let kind = r.kind;
        let connect = |b: &Self, verb: &str, rest: &str, extra: &[Param]| {
            let (method, upper) = connect_method(verb);
            let mut op = b.op(
                method,
                b.id("connect", &format!("{upper}{rest}")),
                format!(
                    "connect {} requests to {} of {kind}",
                    method.to_ascii_uppercase(),
                    s.name
                ),
                gvk,
            );
            op.action = Some("connect");
            op.params = extra.to_vec();
            op.produces = ANY_MEDIA;
            op.responses = vec![(200, Payload::Text)];
            op
        };
        match s.name {
            "log" => {
                let mut op = self.op(
                    "get",
                    self.id("read", &rest),
                    format!("read log of the specified {kind}"),
                    gvk,
                );
                op.action = Some("get");
                op.params = LOG_PARAMS.to_vec();
                op.produces = TEXT_MEDIA;
                op.responses = vec![(200, Payload::Text)];
                self.push(path, params, vec![op]);
            }
            "exec" | "attach" | "portforward" => {
                let extra = match s.name {
                    "exec" => EXEC_PARAMS,
                    "attach" => ATTACH_PARAMS,
                    _ => PORT_FORWARD_PARAMS,
                };
                let ops = s
                    .verbs
                    .iter()
                    .map(|v| connect(self, v, &rest, extra))
                    .collect();
                self.push(path, params, ops);
            }
            "proxy" => {
                let ops = s
                    .verbs
                    .iter()
                    .map(|v| connect(self, v, &rest, &[PROXY_PATH]))
                    .collect();
                self.push(path.clone(), params.clone(), ops);
                let with_path = format!("{rest}WithPath");
                let ops = s
                    .verbs
                    .iter()
                    .map(|v| connect(self, v, &with_path, &[]))
                    .collect();
                let mut params = params;
                params.insert(1, path_param("path", "path to the resource".into()));
                self.push(format!("{path}/{{path}}"), params, ops);
            }
            name => {
                let object = self.schema(s.group, s.version, s.kind);
                let mut ops = Vec::new();
                for verb in s.verbs {
                    let op = match *verb {
                        "get" => {
                            let mut op = self.op(
                                "get",
                                self.id("read", &rest),
                                format!("read {name} of the specified {kind}"),
                                gvk,
                            );
                            op.action = Some("get");
                            op.responses = object.iter().map(|o| (200, o.clone())).collect();
                            op
                        }
                        "update" => self.replace_op(
                            self.id("replace", &rest),
                            format!("replace {name} of the specified {kind}"),
                            gvk,
                            object.clone(),
                        ),
                        "patch" => self.patch_op(
                            self.id("patch", &rest),
                            format!("partially update {name} of the specified {kind}"),
                            gvk,
                            object.clone(),
                        ),
                        "create" => {
                            let mut op = self.op(
                                "post",
                                self.id("create", &rest),
                                format!("create {name} of {}", article(kind)),
                                gvk,
                            );
                            op.action = Some("post");
                            op.params = WRITE_PARAMS.to_vec();
                            op.body = object.clone();
                            op.responses = created(object.clone());
                            op
                        }
                        _ => continue,
                    };
                    ops.push(op);
                }
                self.push(path, params, ops);
            }
        }
    }

    fn list_op(&self, r: &'static ResourceInfo, rest: &str) -> Operation {
        let mut op = self.op(
            "get",
            self.id("list", rest),
            format!("list or watch objects of kind {}", r.kind),
            Some((r.group, r.version, r.kind)),
        );
        op.action = Some("list");
        op.params = LIST_PARAMS.to_vec();
        op.produces = LIST_MEDIA;
        op.responses = self
            .schema(r.group, r.version, r.list_kind)
            .into_iter()
            .map(|p| (200, p))
            .collect();
        op
    }

    fn watch_op(&self, r: &'static ResourceInfo, id: String, action: &'static str) -> Operation {
        let description = if action == "watch" {
            format!(
                "watch changes to an object of kind {}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter.",
                r.kind
            )
        } else {
            format!(
                "watch individual changes to a list of {}. deprecated: use the 'watch' parameter with a list operation instead.",
                r.kind
            )
        };
        let mut op = self.op("get", id, description, Some((r.group, r.version, r.kind)));
        op.action = Some(action);
        op.params = LIST_PARAMS.to_vec();
        op.produces = LIST_MEDIA;
        op.responses = vec![(200, Payload::Schema(WATCH_EVENT.into()))];
        op
    }

    fn replace_op(
        &self,
        id: String,
        description: String,
        gvk: Option<(&'static str, &'static str, &'static str)>,
        object: Option<Payload>,
    ) -> Operation {
        let mut op = self.op("put", id, description, gvk);
        op.action = Some("put");
        op.params = WRITE_PARAMS.to_vec();
        op.body = object.clone();
        op.responses = object
            .iter()
            .flat_map(|o| [(200, o.clone()), (201, o.clone())])
            .collect();
        op
    }

    fn patch_op(
        &self,
        id: String,
        description: String,
        gvk: Option<(&'static str, &'static str, &'static str)>,
        object: Option<Payload>,
    ) -> Operation {
        let mut op = self.op("patch", id, description, gvk);
        op.action = Some("patch");
        op.params = PATCH_PARAMS.to_vec();
        op.body = Some(Payload::Schema(PATCH.into()));
        op.consumes = PATCH_MEDIA;
        op.responses = object
            .iter()
            .flat_map(|o| [(200, o.clone()), (201, o.clone())])
            .collect();
        op
    }
}

/// The responses of a create: 200, 201 and 202 with the object.
fn created(object: Option<Payload>) -> Vec<(u16, Payload)> {
    object
        .iter()
        .flat_map(|o| [(200, o.clone()), (201, o.clone()), (202, o.clone())])
        .collect()
}

fn connect_method(verb: &str) -> (&'static str, &'static str) {
    match verb {
        "create" => ("post", "Post"),
        "update" => ("put", "Put"),
        "patch" => ("patch", "Patch"),
        "delete" => ("delete", "Delete"),
        _ => ("get", "Get"),
    }
}

fn path_param(name: &'static str, description: Cow<'static, str>) -> Param {
    Param {
        name,
        location: "path",
        ty: "string",
        description,
    }
}

fn name_param(kind: &str) -> Param {
    path_param("name", format!("name of the {kind}").into())
}

fn namespace_param() -> Param {
    path_param(
        "namespace",
        "object name and auth scope, such as for teams and projects".into(),
    )
}

/// `a Pod`, `an Ingress`.
fn article(kind: &str) -> String {
    match kind.chars().next() {
        Some('A' | 'E' | 'I' | 'O' | 'U') => format!("an {kind}"),
        _ => format!("a {kind}"),
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::schemas::Catalog;
    use super::*;

    #[test]
    fn operations_are_named_as_upstream_names_them() {
        let rbac = Naming::new("rbac.authorization.k8s.io", "v1");
        assert_eq!(
            (
                rbac.group.as_str(),
                rbac.version.as_str(),
                rbac.tag.as_str()
            ),
            ("RbacAuthorization", "V1", "rbacAuthorization_v1")
        );
        let core = Naming::new("", "v1");
        assert_eq!(
            (core.group.as_str(), core.tag.as_str()),
            ("Core", "core_v1")
        );

        let catalog = Catalog::build();
        let items = group_version("", "v1", catalog.names());
        let ids: Vec<&str> = items
            .iter()
            .flat_map(|i| i.ops.iter().map(|o| o.id.as_str()))
            .collect();
        for id in [
            "getCoreV1APIResources",
            "listCoreV1NamespacedPod",
            "listCoreV1PodForAllNamespaces",
            "createCoreV1NamespacedPod",
            "deleteCoreV1CollectionNamespacedPod",
            "readCoreV1NamespacedPodStatus",
            "patchCoreV1NamespacedPod",
            "watchCoreV1NamespacedPodList",
            "connectCoreV1GetNamespacedPodExec",
            "connectCoreV1PostNamespacedPodExec",
            "connectCoreV1GetNodeProxyWithPath",
            "readCoreV1NamespacedPodLog",
            "createCoreV1NamespacedPodEviction",
            "createCoreV1NamespacedServiceAccountToken",
            "replaceCoreV1NamespaceFinalize",
            "readCoreV1Node",
        ] {
            assert!(ids.contains(&id), "{id} missing");
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "operation ids are unique");
    }

    #[test]
    fn every_write_operation_offers_field_validation() {
        let catalog = Catalog::build();
        for g in registry::groups() {
            for v in g.versions {
                for item in group_version(g.name, v, catalog.names()) {
                    for op in &item.ops {
                        if matches!(op.action, Some("post" | "put" | "patch")) {
                            assert!(
                                op.params.iter().any(|p| p.name == "fieldValidation"),
                                "{} has no fieldValidation",
                                op.id
                            );
                        }
                    }
                }
            }
        }
    }
}
