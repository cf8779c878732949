#!/usr/bin/env python3
"""Regenerates schema.txt, the patch metadata of the built-in types.

The facts come from upstream's published API definitions:

* the structured-merge-diff schema (list types, list-map keys and their
  defaults, atomic maps and structs, zero-value structs) that client-go and
  apiextensions-apiserver publish for their apply configurations, and
* the `patchStrategy` / `patchMergeKey` struct tags of the Go API types
  (k8s.io/api, k8s.io/apimachinery meta/v1, apiextensions-apiserver), which
  strategic merge patch reads.

Usage (each argument is a git directory of the named repository):

    scripts/gen-patch-schema.py CLIENT_GO API APIMACHINERY APIEXTENSIONS > crates/apiserver/src/patch/schema.txt

Only types reachable from the group-versions Skiff serves are written, and
only the fields that are not plain scalars (a field the table does not name
is a scalar, or unknown, to the patch engine), and only the types with such
fields or that are atomic (a type the table does not name is a plain struct).

Format, one type per `T` line followed by its `F` lines:

    T <definition> [atomic]
    F <json name> <type> [zero|null] [smp=<patchStrategy>] [mk=<patchMergeKey>]

where <type> is `s` (scalar), `u` (untyped, atomic), `d` (untyped, deduced:
maps granular, lists atomic), a definition name (a struct), `{T}` (a map of
T with granular keys) or `{T}a` (atomic map), `[T]` (atomic list), `[T]s`
(a set) or `[T]m(k1,k2=<json default>)` (a map-list keyed by k1, k2).
`zero` marks a field Go always serializes as `{}` (a non-pointer struct) and
`null` one it serializes as `null` when empty (a slice or map without
omitempty).
"""

import json
import re
import subprocess
import sys

import yaml

SERVED = [
    ("core", "v1"), ("apps", "v1"), ("events", "v1"), ("authentication", "v1"),
    ("authorization", "v1"), ("autoscaling", "v2"), ("autoscaling", "v1"),
    ("batch", "v1"), ("certificates", "v1"), ("networking", "v1"),
    ("policy", "v1"), ("rbac", "v1"), ("storage", "v1"),
    ("admissionregistration", "v1"), ("scheduling", "v1"),
    ("coordination", "v1"), ("node", "v1"), ("discovery", "v1"),
]
APIEXT = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1"
META = "io.k8s.apimachinery.pkg.apis.meta.v1"


def git_show(repo, path):
    return subprocess.run(["git", "-C", repo, "show", "HEAD:" + path],
                          check=True, capture_output=True, text=True).stdout


def git_ls(repo, under):
    out = subprocess.run(["git", "-C", repo, "ls-tree", "-r", "--name-only", "HEAD", under],
                         check=True, capture_output=True, text=True).stdout
    return out.split()


def smd_types(go_source):
    start = go_source.index("typed.YAMLObject(`") + len("typed.YAMLObject(`")
    end = go_source.index("`)", start)
    doc = yaml.safe_load(go_source[start:end])
    return {t["name"]: t for t in doc["types"]}


# --- Go struct tags -------------------------------------------------------

FIELD_RE = re.compile(r'^\s+(\w+)\s+([^`]+?)\s+`([^`]*)`')
EMBED_RE = re.compile(r'^\s+([\w.]+)\s+`([^`]*)`')


def tag(tags, name):
    m = re.search(name + r':"([^"]*)"', tags)
    return m.group(1) if m else None


def go_structs(source):
    """{struct: [(json name or None for embedded, go type, tags)]}"""
    structs = {}
    current = None
    for line in source.splitlines():
        m = re.match(r'^type (\w+) struct \{', line)
        if m:
            current = structs.setdefault(m.group(1), [])
            continue
        if current is None:
            continue
        if line.startswith("}"):
            current = None
            continue
        m = FIELD_RE.match(line)
        if m:
            json_tag = tag(m.group(3), "json") or ""
            name = json_tag.split(",")[0]
            if name and name != "-":
                current.append((name, m.group(2), m.group(3)))
            continue
        m = EMBED_RE.match(line)
        if m:
            json_tag = tag(m.group(2), "json")
            if json_tag is not None and json_tag.split(",")[0] == "":
                current.append((None, m.group(1), m.group(2)))
    return structs


def go_facts(repo, directory, prefix, facts):
    """Records {(definition, field): (patchStrategy, mergeKey, go type, omitempty)}."""
    structs = {}
    for path in git_ls(repo, directory):
        rest = path[len(directory):].lstrip("/")
        if "/" in rest or not path.endswith(".go") or path.endswith("_test.go") \
                or "generated" in path:
            continue
        structs.update(go_structs(git_show(repo, path)))

    def fields(name, seen=()):
        out = []
        for json_name, go_type, tags in structs.get(name, []):
            if json_name is None:
                if go_type in structs and go_type not in seen:
                    out.extend(fields(go_type, seen + (name,)))
                continue
            out.append((json_name, go_type, tags))
        return out

    for name in structs:
        for json_name, go_type, tags in fields(name):
            omitempty = "omitempty" in (tag(tags, "json") or "")
            facts[(prefix + "." + name, json_name)] = (
                tag(tags, "patchStrategy"), tag(tags, "patchMergeKey"), go_type, omitempty)


# --- Type expressions -----------------------------------------------------

class Gen:
    def __init__(self, types, facts):
        self.types = types
        self.facts = facts
        self.wanted = []
        self.seen = set()

    def struct_like(self, name):
        t = self.types.get(name)
        return t is not None and "map" in t and "fields" in t["map"]

    def want(self, name):
        if name not in self.seen:
            self.seen.add(name)
            self.wanted.append(name)

    def expr(self, tref):
        if "namedType" in tref:
            name = tref["namedType"]
            if name == "__untyped_atomic_":
                return "u"
            if name == "__untyped_deduced_":
                return "d"
            if self.struct_like(name):
                self.want(name)
                return name
            return self.expr(self.types[name])
        if "list" in tref and "map" not in tref and "scalar" not in tref:
            lst = tref["list"]
            elem = self.expr(lst["elementType"])
            rel = lst.get("elementRelationship", "atomic")
            if rel == "atomic":
                return "[%s]" % elem
            keys = lst.get("keys") or []
            if not keys:
                return "[%s]s" % elem
            return "[%s]m(%s)" % (elem, ",".join(self.key(lst, k) for k in keys))
        if "map" in tref and "scalar" not in tref:
            m = tref["map"]
            elem = self.expr(m.get("elementType", {"scalar": "untyped"}))
            if m.get("elementRelationship") == "atomic":
                return "{%s}a" % elem
            return "{%s}" % elem
        if "scalar" in tref and ("map" in tref or "list" in tref):
            return "u"
        return "s"

    def key(self, lst, key):
        elem = lst["elementType"].get("namedType")
        for f in self.types.get(elem, {}).get("map", {}).get("fields", []):
            if f["name"] == key and "default" in f and f["default"] not in ("", 0, {}, False):
                return "%s=%s" % (key, json.dumps(f["default"], separators=(",", ":")))
        return key

    def emit(self):
        out = []
        i = 0
        while i < len(self.wanted):
            name = self.wanted[i]
            i += 1
            t = self.types[name]["map"]
            head = "T " + name + (" atomic" if t.get("elementRelationship") == "atomic" else "")
            lines = []
            for f in t["fields"]:
                e = self.expr(f["type"])
                strategy, merge_key, go_type, omitempty = self.facts.get(
                    (name, f["name"]), (None, None, "", True))
                if e == "s" and not strategy:
                    continue
                parts = ["F", f["name"], e]
                if f.get("default") == {} and not e.startswith(("[", "{")):
                    parts.append("zero")
                elif not omitempty and go_type.startswith(("[]", "map[")):
                    parts.append("null")
                if strategy:
                    parts.append("smp=" + strategy)
                if merge_key:
                    parts.append("mk=" + merge_key)
                lines.append(" ".join(parts))
            if lines or head.endswith(" atomic"):
                out.append(head)
                out.extend(lines)
        return out


def main():
    client_go, api, apimachinery, apiext = sys.argv[1:5]
    types = smd_types(git_show(client_go, "applyconfigurations/internal/internal.go"))
    types.update(smd_types(git_show(apiext, "pkg/client/applyconfiguration/internal/internal.go")))
    facts = {}
    for group, version in SERVED:
        go_facts(api, "%s/%s" % (group, version), "io.k8s.api.%s.%s" % (group, version), facts)
    go_facts(apimachinery, "pkg/apis/meta/v1", META, facts)
    go_facts(apiext, "pkg/apis/apiextensions/v1", APIEXT, facts)

    gen = Gen(types, facts)
    roots = ["io.k8s.api.%s.%s." % gv for gv in SERVED] + [APIEXT + "."]
    for name in sorted(types):
        if any(name.startswith(r) and name.count(".") == r.count(".") for r in roots):
            if gen.struct_like(name):
                gen.want(name)
    lines = gen.emit()
    print("# Patch metadata of the built-in types; generated by scripts/gen-patch-schema.py, do not edit.")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
