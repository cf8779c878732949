#!/usr/bin/env python3
"""Generate api-types/src/protobuf/schema.rs: the protobuf schema of the built-in
Kubernetes v1.33 API, as a compact Rust table the protobuf request-body decoder walks.

Two inputs, both read-only:

1. The `k8s-pb` 0.9.0 crate sources, prost-generated from upstream's
   `generated.proto` files. They give every message's fields: tag number, proto
   type, repeated / map, and message type. k8s-pb 0.9.0 is built from Kubernetes
   v1.35 (it has PodSpec.hostnameOverride, WorkloadReference, ...), so only what
   the v1.33 protos also have is kept; `-v` lists what is left out. Get the
   sources with a scratch crate (k8s-pb is NOT a dependency of any Skiff crate):

       cargo new --lib /tmp/pbcheck && cd /tmp/pbcheck \
         && cargo add k8s-pb@=0.9.0 && cargo fetch
       # sources now in ~/.cargo/registry/src/*/k8s-pb-0.9.0/src

2. The upstream Go API sources at the matching release (kubernetes/api,
   kubernetes/apimachinery, kubernetes/apiextensions-apiserver at v0.33.0). The
   protobuf schema alone cannot say how an object looks in JSON; the Go structs do:
   `json:",inline"` embedding (Volume.volumeSource, SecretKeySelector's
   LocalObjectReference, Probe.handler, ...), pointer-ness (a `*int32` replicas of 0
   is meaningful, an `int32` hostPort of 0 is "unset"), `omitempty`, the JSON names
   themselves (used to verify the names derived below), and which types are
   top-level kinds. Lay the three source trees out side by side, at the v0.33.0
   tag, as $UP/api, $UP/apimachinery and $UP/apiextensions-apiserver (from a
   checkout of each repository; they are read, never copied into Skiff).

   The upstream `generated.proto` files in those checkouts decide what is v1.33:
   every message and field they have must be in k8s-pb with the same number, label
   and type (the script fails otherwise); k8s-pb's later additions are dropped.

Usage:

    python3 scripts/gen-proto-schema.py --upstream $UP \
        [--k8s-pb ~/.cargo/registry/src/<index>/k8s-pb-0.9.0/src] \
        [--out api-types/src/protobuf/schema.rs] [-v]

It prints what it wrote (messages, fields, kinds, bytes). The output is not
rustfmt-formatted (one line per field); `mod schema` carries #[rustfmt::skip].

JSON names are derived from the prost field name (snake_case -> lowerCamelCase)
with the exception list below; the script fails if any derived name differs from
the Go `json:"..."` tag, so the list is known complete for the generated packages.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
from dataclasses import dataclass, field

# k8s-pb module directories (relative to its src/) that we generate, GA versions only
# (what Skiff serves), plus the apimachinery packages they reference.
PACKAGES = [
    "apimachinery/pkg/apis/meta/v1",
    "apimachinery/pkg/runtime",
    "apimachinery/pkg/api/resource",
    "apimachinery/pkg/util/intstr",
    "api/core/v1",
    "api/apps/v1",
    "api/batch/v1",
    "api/autoscaling/v1",
    "api/autoscaling/v2",
    "api/coordination/v1",
    "api/discovery/v1",
    "api/events/v1",
    "api/networking/v1",
    "api/node/v1",
    "api/policy/v1",
    "api/rbac/v1",
    "api/scheduling/v1",
    "api/storage/v1",
    "api/certificates/v1",
    "api/admissionregistration/v1",
    "api/authentication/v1",
    "api/authorization/v1",
    "apiextensions_apiserver/pkg/apis/apiextensions/v1",
]

# Packages whose top-level kinds go into the (apiVersion, kind) index.
KIND_PACKAGES = [p for p in PACKAGES if p.startswith("api/") or p.endswith("/apiextensions/v1")
                 or p == "apimachinery/pkg/apis/meta/v1"]

# Kinds apimachinery's AddToGroupVersion registers into every group version
# (client-go's typed clients send e.g. DeleteOptions as "apps/v1, Kind=DeleteOptions").
OPTIONS_KINDS = ["CreateOptions", "DeleteOptions", "GetOptions", "ListOptions",
                 "PatchOptions", "UpdateOptions"]

# Messages whose JSON form is not "an object of its fields" (custom MarshalJSON in Go).
SPECIAL = {
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time": "Time",
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Duration": "Duration",
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1": "RawJson",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Verbs": "Items",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "k8s.io.apimachinery.pkg.api.resource.QuantityValue": "Quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "RawJson",
    "k8s.io.api.authentication.v1.ExtraValue": "Items",
    "k8s.io.api.authorization.v1.ExtraValue": "Items",
    "k8s.io.api.certificates.v1.ExtraValue": "Items",
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSON": "RawJson",
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray": "SchemaOrArray",
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool": "SchemaOrBool",
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray":
        "SchemaOrStringArray",
}

# Envelope messages the decoder reads by hand; not in the table.
SKIP = {"k8s.io.apimachinery.pkg.runtime.Unknown"}

# JSON names that lowerCamelCase(prost snake_case name) gets wrong. Keyed by the
# prost field name everywhere, or by "Message.prost_name" for one message only.
NAME_EXCEPTIONS = {
    # acronyms prost lower-cased
    "cluster_ip": "clusterIP",
    "container_id": "containerID",
    "dataset_uuid": "datasetUUID",
    "disk_uri": "diskURI",
    "external_id": "externalID",
    "host_ip": "hostIP",
    "host_ipc": "hostIPC",
    "host_pid": "hostPID",
    "image_id": "imageID",
    "machine_id": "machineID",
    "boot_id": "bootID",
    "system_uuid": "systemUUID",
    "load_balancer_ip": "loadBalancerIP",
    "non_resource_ur_ls": "nonResourceURLs",
    "pd_id": "pdID",
    "pod_cidr": "podCIDR",
    "pod_cid_rs": "podCIDRs",
    "pod_ip": "podIP",
    "provider_id": "providerID",
    "storage_policy_id": "storagePolicyID",
    "target_ww_ns": "targetWWNs",
    "volume_id": "volumeID",
    "a_pi_group": "apiGroup",
    "client_cidr": "clientCIDR",
    "client_ip": "clientIP",
    "cluster_ips": "clusterIPs",
    "current_cpu_utilization_percentage": "currentCPUUtilizationPercentage",
    "desired_api_version": "desiredAPIVersion",
    "downward_api": "downwardAPI",
    "external_ips": "externalIPs",
    "host_ips": "hostIPs",
    "insecure_skip_tls_verify_backend": "insecureSkipTLSVerifyBackend",
    "node_id": "nodeID",
    "open_apiv3_schema": "openAPIV3Schema",
    "pod_ips": "podIPs",
    "resource_id": "resourceID",
    "scale_io": "scaleIO",
    "server_address_by_client_cid_rs": "serverAddressByClientCIDRs",
    "set_hostname_as_fqdn": "setHostnameAsFQDN",
    "target_cpu_utilization_percentage": "targetCPUUtilizationPercentage",
    "u_id": "uid",
    # Go names that are not lowerCamelCase at all
    "DaemonEndpoint.port": "Port",
    "JSONSchemaProps.ref": "$ref",
    "JSONSchemaProps.schema": "$schema",
    "x_kubernetes_embedded_resource": "x-kubernetes-embedded-resource",
    "x_kubernetes_int_or_string": "x-kubernetes-int-or-string",
    "x_kubernetes_list_map_keys": "x-kubernetes-list-map-keys",
    "x_kubernetes_list_type": "x-kubernetes-list-type",
    "x_kubernetes_map_type": "x-kubernetes-map-type",
    "x_kubernetes_preserve_unknown_fields": "x-kubernetes-preserve-unknown-fields",
    "x_kubernetes_validations": "x-kubernetes-validations",
}


@dataclass
class PbField:
    prost_name: str
    tag: int
    kind: str          # string bytes int32 int64 bool double message map
    repeated: bool
    map_value: str | None = None   # for maps: string | bytes | message
    msg: str | None = None         # fully qualified message name (message, or map of message)


@dataclass
class PbMessage:
    fqn: str
    pkg: str           # k8s-pb module dir, e.g. api/core/v1
    rust_name: str
    fields: list[PbField] = field(default_factory=list)


@dataclass
class GoField:
    name: str          # Go field name ("" when embedded)
    gotype: str
    json: str | None   # None: no json tag
    omitempty: bool
    tag: int | None


@dataclass
class GoStruct:
    name: str
    is_object: bool    # +k8s:deepcopy-gen:interfaces=...runtime.Object
    fields: list[GoField] = field(default_factory=list)


def die(msg: str) -> None:
    print(f"gen-proto-schema: {msg}", file=sys.stderr)
    sys.exit(1)


def proto_package(pkg: str) -> str:
    """The proto package of a k8s-pb module dir: api/core/v1 -> k8s.io.api.core.v1."""
    return "k8s.io." + pkg.replace("/", ".")


def upstream_dir(up: str, pkg: str) -> str:
    if pkg.startswith("api/"):
        return os.path.join(up, "api", pkg[len("api/"):])
    if pkg.startswith("apimachinery/"):
        return os.path.join(up, "apimachinery", pkg[len("apimachinery/"):])
    if pkg.startswith("apiextensions_apiserver/"):
        return os.path.join(up, "apiextensions-apiserver", pkg[len("apiextensions_apiserver/"):])
    die(f"no upstream repository for {pkg}")
    return ""


# ---------------------------------------------------------------- k8s-pb parsing

STRUCT_RE = re.compile(r"^pub struct (\w+) \{\n(.*?)^\}", re.S | re.M)
EMPTY_STRUCT_RE = re.compile(r"^pub struct (\w+) \{\}", re.M)
FIELD_RE = re.compile(
    r"#\[prost\((?P<attr>[^\]]*)\)\]\s*pub (?:r#)?(?P<name>\w+):\s*(?P<ty>.*?),\s*\n\s*(?=///|#\[|$)",
    re.S)


def resolve_path(pkg: str, path: str) -> tuple[str, str]:
    """Resolves a Rust type path used in module `pkg` to (module dir, type name)."""
    path = path.strip()
    parts = path.split("::")
    name = parts[-1]
    mod = pkg.split("/")
    for p in parts[:-1]:
        if p == "super":
            mod = mod[:-1]
        elif p == "crate":
            mod = []
        else:
            mod = mod + [p]
    return "/".join(mod), name


def inner_type(ty: str) -> str:
    ty = re.sub(r"\s+", "", ty).replace(",>", ">")  # rustfmt's trailing commas
    for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<",
                    "::prost::alloc::boxed::Box<"):
        while ty.startswith(wrapper):
            ty = ty[len(wrapper):-1]
    return ty


def parse_k8s_pb(src: str) -> dict[tuple[str, str], PbMessage]:
    """Returns {(pkg, rust struct name): message} for every PACKAGES module."""
    raw: dict[tuple[str, str], PbMessage] = {}
    for pkg in PACKAGES:
        path = os.path.join(src, pkg, "mod.rs")
        if not os.path.exists(path):
            die(f"{path} not found (is --k8s-pb the k8s-pb-0.9.0/src directory?)")
        text = open(path, encoding="utf-8").read()
        for m in EMPTY_STRUCT_RE.finditer(text):
            raw[(pkg, m.group(1))] = PbMessage("", pkg, m.group(1))
        for m in STRUCT_RE.finditer(text):
            msg = PbMessage("", pkg, m.group(1))
            body = m.group(2) + "\n"
            for f in FIELD_RE.finditer(body):
                msg.fields.append(parse_pb_field(pkg, msg.rust_name, f.group("attr"),
                                                 f.group("name"), f.group("ty")))
            n_attrs = body.count("#[prost(")
            if n_attrs != len(msg.fields):
                die(f"{pkg} {msg.rust_name}: parsed {len(msg.fields)} of {n_attrs} fields")
            raw[(pkg, msg.rust_name)] = msg
    return raw


def parse_pb_field(pkg: str, msg: str, attr: str, name: str, ty: str) -> PbField:
    tag_m = re.search(r'tag = "(\d+)"', attr)
    if not tag_m:
        die(f"{pkg} {msg}.{name}: no tag in #[prost({attr})]")
    tag = int(tag_m.group(1))
    head = attr.split(",")[0].strip()
    repeated = ", repeated" in attr
    if head.startswith("btree_map") or head.startswith("map"):
        kv = re.search(r'map = "(\w+), (\w+)"', attr)
        if not kv or kv.group(1) != "string":
            die(f"{pkg} {msg}.{name}: unsupported map {attr}")
        value = kv.group(2)
        f = PbField(name, tag, "map", False, map_value=value)
        if value == "message":
            t = re.sub(r"\s+", "", ty).replace(",>", ">")
            vm = re.match(r".*BTreeMap<::prost::alloc::string::String,(.*)>$", t)
            if not vm:
                die(f"{pkg} {msg}.{name}: cannot read map value type {ty}")
            f.msg = "/".join(resolve_path(pkg, vm.group(1)))
        elif value not in ("string", "bytes"):
            die(f"{pkg} {msg}.{name}: unsupported map value {value}")
        return f
    kind = head.split("=")[0].strip()
    if kind not in ("string", "bytes", "int32", "int64", "bool", "double", "message"):
        die(f"{pkg} {msg}.{name}: unsupported proto type {attr}")
    f = PbField(name, tag, kind, repeated)
    if kind == "message":
        f.msg = "/".join(resolve_path(pkg, inner_type(ty)))
    return f


# ---------------------------------------------------------------- Go parsing

GO_STRUCT_START = re.compile(r"^type (\w+) struct \{\s*$")
GO_META_ALIAS = re.compile(r"^type (\w+) metav1\.(\w+)\s*$")
GO_FIELD = re.compile(r"^\s*(?P<decl>[^`/]+?)\s*`(?P<tag>[^`]*)`\s*(//.*)?$")
OBJECT_MARKER = "+k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object"


def parse_go_package(d: str, meta: dict[str, GoStruct] | None = None) -> dict[str, GoStruct]:
    """Go structs of one package; `type X metav1.Y` aliases resolve through `meta`."""
    structs: dict[str, GoStruct] = {}
    files = sorted(f for f in glob.glob(os.path.join(d, "*.go")) if not f.endswith("_test.go"))
    if not files:
        die(f"no Go files in {d} (is --upstream a directory holding api/, apimachinery/ and "
            "apiextensions-apiserver/ checkouts at v0.33.0?)")
    for path in files:
        comments: list[str] = []
        cur: GoStruct | None = None
        depth = 0
        for line in open(path, encoding="utf-8"):
            s = line.strip()
            if cur is None:
                alias = GO_META_ALIAS.match(line)
                if alias and meta and alias.group(2) in meta:
                    target = meta[alias.group(2)]
                    structs[alias.group(1)] = GoStruct(alias.group(1), target.is_object,
                                                       target.fields)
                empty = re.match(r"^type (\w+) struct\s*\{\s*\}\s*$", line)
                if empty:
                    structs[empty.group(1)] = GoStruct(empty.group(1),
                                                       any(OBJECT_MARKER in c for c in comments))
                    comments = []
                    continue
                m = GO_STRUCT_START.match(line)
                if m:
                    cur = GoStruct(m.group(1), any(OBJECT_MARKER in c for c in comments))
                    depth = 1
                    comments = []
                elif s.startswith("//"):
                    comments.append(s)
                elif s:
                    comments = []
                continue
            if s.startswith("}") and depth == 1:
                structs[cur.name] = cur
                cur = None
                continue
            if s.endswith("struct {"):
                depth += 1  # anonymous nested struct: not an API type
                continue
            if s.startswith("}"):
                depth -= 1
                continue
            if depth != 1 or s.startswith("//"):
                continue
            m = GO_FIELD.match(line)
            if not m:
                continue
            decl = m.group("decl").split()
            tag = m.group("tag")
            if len(decl) == 1:
                name, gotype = "", decl[0]
            elif len(decl) == 2:
                name, gotype = decl
            else:
                die(f"{path}: cannot read Go field {line.strip()}")
            jm = re.search(r'json:"([^"]*)"', tag)
            pm = re.search(r'protobuf:"[a-z0-9]+,(\d+),', tag)
            json_name, omitempty = None, False
            if jm:
                parts = jm.group(1).split(",")
                json_name, omitempty = parts[0], "omitempty" in parts[1:]
            cur.fields.append(GoField(name, gotype, json_name, omitempty,
                                      int(pm.group(1)) if pm else None))
    return structs


def parse_group_name(d: str) -> str | None:
    """The API group from doc.go's +groupName marker or register.go's GroupName."""
    for name, pattern in (("doc.go", r"^// \+groupName=(\S*)\s*$"),
                          ("register.go", r'^const GroupName = "([^"]*)"')):
        path = os.path.join(d, name)
        if os.path.exists(path):
            m = re.search(pattern, open(path, encoding="utf-8").read(), re.M)
            if m:
                return m.group(1)
    return None


# ---------------------------------------------------------------- upstream .proto parsing

PROTO_MSG = re.compile(r"^message (\w+) \{(.*?)^\}", re.S | re.M)
PROTO_FIELD = re.compile(
    r"^\s*(?:(optional|repeated) ([\w.]+)|map<string, ([\w.]+)>) (\w+) = (\d+);", re.M)


def parse_upstream_proto(d: str) -> dict[str, dict[int, tuple[str, str, str]]]:
    """{message: {tag: (label, type, name)}} from an upstream generated.proto."""
    out: dict[str, dict[int, tuple[str, str, str]]] = {}
    path = os.path.join(d, "generated.proto")
    if not os.path.exists(path):
        return out
    for m in PROTO_MSG.finditer(open(path, encoding="utf-8").read()):
        fields = {}
        for f in PROTO_FIELD.finditer(m.group(2)):
            if f.group(3):
                label, ty = "map", f.group(3)
            else:
                label, ty = f.group(1), f.group(2)
            fields[int(f.group(5))] = (label, ty.split(".")[-1], f.group(4))
        out[m.group(1)] = fields
    return out


# ---------------------------------------------------------------- generation

def lower_camel(snake: str) -> str:
    parts = snake.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def json_name(msg_go: str, prost: str) -> str:
    return NAME_EXCEPTIONS.get(f"{msg_go}.{prost}", NAME_EXCEPTIONS.get(prost, lower_camel(prost)))


def is_pointer(gotype: str) -> bool:
    return gotype.startswith("*")


def rust_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k8s-pb", help="k8s-pb-0.9.0/src directory (default: found in ~/.cargo/registry)")
    ap.add_argument("--upstream", required=True,
                    help="directory with api/, apimachinery/, apiextensions-apiserver/ at v0.33.0")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "api-types", "src", "protobuf",
                                                  "schema.rs"))
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="list the k8s-pb messages and fields left out as newer than the upstream")
    args = ap.parse_args()

    src = args.k8s_pb
    if not src:
        found = sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*/k8s-pb-0.9.0/src")))
        if not found:
            die("k8s-pb 0.9.0 sources not found; run `cargo fetch` in a scratch crate "
                "depending on k8s-pb = \"=0.9.0\" or pass --k8s-pb")
        src = found[0]

    pb = parse_k8s_pb(src)

    go: dict[str, dict[str, GoStruct]] = {}
    protos: dict[str, dict] = {}
    groups: dict[str, str | None] = {}
    meta_dir = upstream_dir(args.upstream, "apimachinery/pkg/apis/meta/v1")
    meta_go = parse_go_package(meta_dir)
    for pkg in PACKAGES:
        d = upstream_dir(args.upstream, pkg)
        go[pkg] = parse_go_package(d, meta_go)
        protos[pkg] = parse_upstream_proto(d)
        groups[pkg] = parse_group_name(d)

    problems: list[str] = []
    newer: list[str] = []  # in k8s-pb (a later Kubernetes) but not in the upstream release
    # Match every k8s-pb struct with its upstream proto message (k8s-pb re-cases some
    # names, e.g. AwsElasticBlockStoreVolumeSource; the proto / Go name is the real one).
    by_key: dict[tuple[str, str], PbMessage] = {}
    name_of: dict[str, str] = {}  # "pkg/RustName" -> fqn
    for (pkg, rust), msg in sorted(pb.items()):
        proto_name = {n.lower(): n for n in protos[pkg]}.get(rust.lower())
        if proto_name is None:
            newer.append(f"message {pkg}/{rust}")
            continue
        msg.fqn = proto_package(pkg) + "." + proto_name
        if msg.fqn in SKIP:
            continue
        name_of[f"{pkg}/{rust}"] = msg.fqn
        by_key[(pkg, proto_name)] = msg
        if proto_name not in go[pkg] and msg.fqn not in SPECIAL:
            problems.append(f"{msg.fqn}: no Go struct")
    for pkg in PACKAGES:
        for proto_name in protos[pkg]:
            fqn = proto_package(pkg) + "." + proto_name
            if (pkg, proto_name) not in by_key and fqn not in SKIP:
                problems.append(f"{fqn}: in upstream proto, not in k8s-pb")
    for key in SPECIAL:
        if key not in {m.fqn for m in by_key.values()}:
            problems.append(f"{key}: special message not found")

    messages = sorted(by_key.values(), key=lambda m: m.fqn)
    index = {m.fqn: i for i, m in enumerate(messages)}
    if len(messages) > 65535:
        die("too many messages for u16 indices")

    proto_ty = {"string": "string", "bytes": "bytes", "int32": "int32", "int64": "int64",
                "bool": "bool", "double": "double"}
    renamed: list[str] = []
    used_exceptions: set[str] = set()
    lines: list[str] = []
    total_fields = 0
    for i, msg in enumerate(messages):
        pkg = msg.pkg
        short = msg.fqn.rsplit(".", 1)[1]
        special = SPECIAL.get(msg.fqn, "Plain")
        gostruct = go[pkg].get(short)
        go_by_tag = {f.tag: f for f in gostruct.fields if f.tag is not None} if gostruct else {}
        up = protos[pkg].get(short, {})
        missing = set(up) - {f.tag for f in msg.fields}
        if missing:
            problems.append(f"{msg.fqn}: fields {sorted(missing)} are upstream, not in k8s-pb")
        out_fields = []
        for f in sorted(msg.fields, key=lambda f: f.tag):
            if f.tag not in up:
                newer.append(f"field {msg.fqn}.{f.prost_name} = {f.tag}")
                continue
            total_fields += 1
            target = None
            if f.msg is not None:
                target = name_of.get(f.msg)
                if target is None:
                    problems.append(f"{msg.fqn}.{f.prost_name}: message {f.msg} is not generated")
                    continue
            # the k8s-pb field must be exactly upstream's
            label, uty, uname = up[f.tag]
            want_label = "map" if f.kind == "map" else ("repeated" if f.repeated else "optional")
            if f.kind == "map":
                want_ty = target.rsplit(".", 1)[1] if target else f.map_value
            elif f.kind == "message":
                want_ty = target.rsplit(".", 1)[1]
            else:
                want_ty = proto_ty[f.kind]
            if (label, uty) != (want_label, want_ty):
                problems.append(f"{msg.fqn} field {f.tag}: k8s-pb {want_label} {want_ty}, "
                                f"upstream {label} {uty}")
            flags = []
            name = json_name(short, f.prost_name)
            for key in (f"{short}.{f.prost_name}", f.prost_name):
                if key in NAME_EXCEPTIONS:
                    used_exceptions.add(key)
                    break
            if special == "Plain":
                gf = go_by_tag.get(f.tag)
                if gf is None:
                    problems.append(f"{msg.fqn} field {f.tag} ({f.prost_name}): no Go field with "
                                    "this protobuf tag")
                    continue
                if gf.json is None or gf.json == "-":
                    problems.append(f"{msg.fqn} field {f.tag}: Go field has no JSON name")
                elif gf.json == "" and gf.name == "":
                    flags.append("INLINE")
                    name = ""
                elif gf.json != name:
                    problems.append(f"{msg.fqn} field {f.tag}: derived JSON name {name!r}, "
                                    f"Go says {gf.json!r} (add it to NAME_EXCEPTIONS)")
                if name and name != lower_camel(f.prost_name):
                    renamed.append(f"{short}.{name}")
                if is_pointer(gf.gotype):
                    flags.append("PTR")
                if gf.omitempty:
                    flags.append("OMIT")
            if f.repeated:
                flags.append("REP")
            if f.kind == "map":
                ty = {"string": "MapStr", "bytes": "MapBytes"}.get(f.map_value or "",
                                                                    f"MapMsg({index.get(target, 0)})")
            elif f.kind == "message":
                ty = f"Msg({index[target]})"
            else:
                ty = {"string": "Str", "bytes": "Bytes", "int32": "I32", "int64": "I64",
                      "bool": "Bool", "double": "F64"}[f.kind]
            out_fields.append(f"F({f.tag}, {rust_str(name)}, {ty}, {'|'.join(flags) or '0'}),")
        body = "\n        ".join(out_fields)
        if body:
            lines.append(f"    // {i}\n    M({rust_str(msg.fqn)}, {special}, &[\n        {body}\n    ]),")
        else:
            lines.append(f"    // {i}\n    M({rust_str(msg.fqn)}, {special}, &[]),")
    for key, value in sorted(NAME_EXCEPTIONS.items()):
        if value == lower_camel(key.rsplit(".", 1)[-1]):
            problems.append(f"NAME_EXCEPTIONS[{key!r}] is what the rule gives anyway")
    for key in sorted(set(NAME_EXCEPTIONS) - used_exceptions):
        problems.append(f"NAME_EXCEPTIONS[{key!r}] is not used")

    # (apiVersion, kind) -> message: the Go types marked as runtime.Object, plus the
    # options kinds every group version registers.
    kinds: dict[tuple[str, str], int] = {}
    for pkg in KIND_PACKAGES:
        group = groups[pkg]
        if group is None:
            problems.append(f"{pkg}: no group name in doc.go or register.go")
            continue
        version = pkg.rsplit("/", 1)[1]
        api_version = f"{group}/{version}" if group else version
        for gs in go[pkg].values():
            if gs.is_object and (pkg, gs.name) in by_key:
                kinds[(api_version, gs.name)] = index[by_key[(pkg, gs.name)].fqn]
        for k in OPTIONS_KINDS:
            kinds[(api_version, k)] = index["k8s.io.apimachinery.pkg.apis.meta.v1." + k]

    if problems:
        die("the schema sources disagree:\n  " + "\n  ".join(problems))

    kind_lines = [f"    ({rust_str(av)}, {rust_str(k)}, {i}),"
                  for (av, k), i in sorted(kinds.items())]
    out = f"""// @generated by scripts/gen-proto-schema.py — do not edit.
//
// The protobuf schema of the Kubernetes v1.33 built-in API (GA versions) as facts:
// per message, its fields' tag, JSON name, type and Go representation. Field types
// from k8s-pb 0.9.0, restricted to and checked against upstream's v1.33
// generated.proto; JSON names, inline / pointer / omitempty and the kinds from the
// upstream Go structs (kubernetes/api, apimachinery, apiextensions-apiserver v0.33.0).
// {len(messages)} messages, {total_fields} fields, {len(kinds)} kinds.

use super::Special::*;
use super::Ty::*;
use super::{{F, INLINE, M, OMIT, PTR, REP}};

/// Every message, sorted by fully qualified proto name (binary-searchable).
pub(super) static MESSAGES: [M; {len(messages)}] = [
{chr(10).join(lines)}
];

/// (apiVersion, kind) → index into [`MESSAGES`], sorted.
pub(super) static KINDS: [(&str, &str, u16); {len(kinds)}] = [
{chr(10).join(kind_lines)}
];
"""
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write(out)
    if args.verbose:
        print("left out as newer than the upstream release:\n  " + "\n  ".join(newer))
        print("irregular JSON names:\n  " + "\n  ".join(renamed))
    print(f"wrote {args.out}: {len(messages)} messages, {total_fields} fields "
          f"({len(renamed)} irregular JSON names), {len(kinds)} kinds, {len(out)} bytes; "
          f"{len(newer)} newer k8s-pb messages/fields left out")


if __name__ == "__main__":
    main()
