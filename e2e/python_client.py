#!/usr/bin/env python3
"""The official Kubernetes Python client against skiff-apiserver.

Usage: python3 e2e/python_client.py KUBECONFIG

Drives the typed client (CoreV1Api, AppsV1Api), a watch, and the dynamic
client (which reads discovery) through create, read, list, patch, replace,
scale, server-side apply, watch and delete; checks the errors a client sees
(404, 409, 422) carry upstream's reasons. Prints one line per check and closes
with "N passed, M failed".
"""
import sys
import traceback

from kubernetes import client, config, dynamic, watch
from kubernetes.client.rest import ApiException

passed = 0
failed = 0


def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
        print(f"ok    python: {name}")
    except Exception:  # noqa: BLE001 - report any failure and go on
        failed += 1
        print(f"FAIL  python: {name}")
        print("      " + traceback.format_exc().replace("\n", "\n      "))


def expect_api_error(fn, status, reason):
    try:
        fn()
    except ApiException as e:
        assert e.status == status, f"status {e.status}, expected {status}: {e.body}"
        assert reason in e.body, f"{reason!r} not in {e.body}"
        return e
    raise AssertionError(f"expected HTTP {status}")


def main(kubeconfig):
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    apps = client.AppsV1Api()
    ns = "python"

    def namespaces_exist():
        names = [n.metadata.name for n in core.list_namespace().items]
        assert "default" in names and "kube-system" in names, names
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        assert core.read_namespace(ns).status.phase == "Active"

    check("list and create namespaces", namespaces_exist)

    def configmap_lifecycle():
        cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm", labels={"app": "py"}), data={"a": "1"})
        created = core.create_namespaced_config_map(ns, cm)
        assert created.metadata.uid and created.metadata.resource_version
        expect_api_error(lambda: core.create_namespaced_config_map(ns, cm), 409, "AlreadyExists")
        patched = core.patch_namespaced_config_map("cm", ns, {"data": {"b": "2"}})
        assert patched.data == {"a": "1", "b": "2"}, patched.data
        stale = created
        stale.data = {"a": "stale"}
        expect_api_error(lambda: core.replace_namespaced_config_map("cm", ns, stale), 409, "Conflict")
        assert core.read_namespaced_config_map("cm", ns).data["a"] == "1"
        listed = core.list_namespaced_config_map(ns, label_selector="app=py")
        assert [c.metadata.name for c in listed.items] == ["cm"]
        core.delete_namespaced_config_map("cm", ns)
        expect_api_error(lambda: core.read_namespaced_config_map("cm", ns), 404, "NotFound")

    check("a ConfigMap's whole lifecycle with 409 and 404", configmap_lifecycle)

    def invalid_pod():
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(name="bad"),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="")]),
        )
        e = expect_api_error(lambda: core.create_namespaced_pod(ns, pod), 422, "Invalid")
        assert "spec.containers[0].image" in e.body, e.body

    check("an invalid pod gets 422 naming the field", invalid_pod)

    def watch_events():
        rv = core.list_namespaced_config_map(ns).metadata.resource_version
        core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w")))
        core.delete_namespaced_config_map("w", ns)
        seen = []
        w = watch.Watch()
        for event in w.stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=5):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 2:
                w.stop()
        assert seen == [("ADDED", "w"), ("DELETED", "w")], seen

    check("a watch from a resourceVersion sees ADDED then DELETED", watch_events)

    def deployment_and_scale():
        d = client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=1,
                selector=client.V1LabelSelector(match_labels={"app": "web"}),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels={"app": "web"}),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="skiff/testhost:1")]),
                ),
            ),
        )
        apps.create_namespaced_deployment(ns, d)
        apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 3}})
        assert apps.read_namespaced_deployment("web", ns).spec.replicas == 3
        assert apps.read_namespaced_deployment_scale("web", ns).spec.replicas == 3

    check("a Deployment scaled through its scale subresource", deployment_and_scale)

    def dynamic_server_side_apply():
        dyn = dynamic.DynamicClient(client.ApiClient())
        cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa", "namespace": ns}, "data": {"x": "1"}}
        cms.server_side_apply(body=body, field_manager="python-e2e")
        got = cms.get(name="ssa", namespace=ns)
        assert got.data.x == "1"
        managers = [m.manager for m in got.metadata.managedFields]
        assert "python-e2e" in managers, managers

    check("the dynamic client finds ConfigMaps by discovery and applies server-side", dynamic_server_side_apply)

    def version():
        v = client.VersionApi().get_code()
        assert (v.major, v.minor) == ("1", "33"), v

    check("version reports 1.33", version)

    print()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
