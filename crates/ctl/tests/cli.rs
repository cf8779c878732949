//! The built `skiffctl` against a real Skiff API server started in this
//! process: what a user types and what they read back.

use std::path::PathBuf;

use serde_json::Value;

/// An API server on a free port, and a way to run `skiffctl` against it.
struct Cluster {
    server: Option<skiff_apiserver::Running>,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

/// One `skiffctl` run.
struct Run {
    ok: bool,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = skiff_apiserver::start(skiff_apiserver::Config {
            data_dir: dir.path().join("apiserver"),
            secure_port: 0,
            bind_address: "127.0.0.1".parse().unwrap(),
            ..Default::default()
        })
        .await
        .expect("the API server starts");
        Cluster {
            kubeconfig: server.admin_kubeconfig.clone(),
            server: Some(server),
            dir,
        }
    }

    async fn ctl(&self, args: &[&str]) -> Run {
        self.ctl_in(args, None).await
    }

    async fn ctl_in(&self, args: &[&str], stdin: Option<&str>) -> Run {
        self.ctl_env(args, stdin, &[]).await
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_skiffctl"));
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("KUBECONFIG");
        cmd
    }

    /// An admin client, for what skiffctl has no verb for (status writes).
    async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    async fn ctl_env(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
        use tokio::io::AsyncWriteExt;
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_skiffctl"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("KUBECONFIG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("skiffctl runs");
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).await.unwrap();
        }
        drop(input);
        let out = child.wait_with_output().await.unwrap();
        Run {
            ok: out.status.success(),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `args` and expects success.
    async fn ok(&self, args: &[&str]) -> String {
        let r = self.ctl(args).await;
        assert!(r.ok, "skiffctl {args:?} failed: {}{}", r.stdout, r.stderr);
        r.stdout
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }
}

const APP: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {tier: web}
data:
  mode: fast
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {tier: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: nginx
";

#[tokio::test(flavor = "multi_thread")]
async fn get_prints_upstream_tables_and_every_output_format() {
    let c = Cluster::start().await;

    let out = c.ok(&["get", "namespaces"]).await;
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "AGE"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("kube-system ") && l.contains("Active")),
        "{out}"
    );

    let out = c.ok(&["get", "ns", "--no-headers", "-o", "wide"]).await;
    assert!(!out.contains("NAME"), "{out}");

    assert_eq!(
        c.ok(&["get", "ns", "default", "-o", "name"]).await,
        "namespace/default\n"
    );
    assert_eq!(
        c.ok(&["get", "ns", "-o", "jsonpath={.items[*].metadata.name}"])
            .await,
        "default kube-node-lease kube-public kube-system"
    );
    assert_eq!(
        c.ok(&[
            "get",
            "ns",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}"
        ])
        .await,
        "default\nkube-node-lease\nkube-public\nkube-system\n"
    );
    let json: Value =
        serde_json::from_str(&c.ok(&["get", "ns", "kube-system", "-o", "json"]).await).unwrap();
    assert_eq!(json["kind"], "Namespace");
    assert!(
        json["metadata"].get("managedFields").is_none(),
        "managed fields are hidden"
    );
    let yaml = c.ok(&["get", "namespaces", "-o", "yaml"]).await;
    assert!(yaml.starts_with("apiVersion: v1\nitems:\n"), "{yaml}");
    assert!(yaml.contains("kind: List"), "{yaml}");

    // With -A the namespace column leads; short names and TYPE/NAME resolve.
    let out = c.ok(&["get", "svc", "-A", "--show-labels"]).await;
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header.first(), Some(&"NAMESPACE"));
    assert_eq!(header.last(), Some(&"LABELS"));
    assert!(out.contains("kubernetes"), "{out}");
    let out = c.ok(&["get", "service/kubernetes", "-o", "name"]).await;
    assert_eq!(out, "service/kubernetes\n");

    let r = c.ctl(&["get", "pods"]).await;
    assert!(r.ok);
    assert_eq!(r.stderr, "No resources found in default namespace.\n");

    let r = c.ctl(&["get", "pods", "missing"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "Error from server (NotFound): pods \"missing\" not found\n"
    );
    let r = c.ctl(&["get", "widgets"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "error: the server doesn't have a resource type \"widgets\"\n"
    );
    let r = c.ctl(&["get", "ns", "-o", "xml"]).await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("unable to match a printer"),
        "{}",
        r.stderr
    );

    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_create_scale_and_delete_report_as_kubectl() {
    let c = Cluster::start().await;
    let app = c.write("app.yaml", APP);

    assert_eq!(
        c.ok(&["apply", "-f", &app]).await,
        "configmap/settings created\ndeployment.apps/web created\n"
    );
    assert_eq!(
        c.ok(&["apply", "-f", &app]).await,
        "configmap/settings unchanged\ndeployment.apps/web unchanged\n"
    );
    let changed = APP.replace("mode: fast", "mode: slow");
    let r = c
        .ctl_in(
            &["apply", "-f", "-", "--server-side", "--force-conflicts"],
            Some(&changed),
        )
        .await;
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "configmap/settings serverside-applied\ndeployment.apps/web serverside-applied\n"
    );
    assert_eq!(
        c.ok(&["get", "cm", "settings", "-o", "jsonpath={.data.mode}"])
            .await,
        "slow"
    );
    let managers = c
        .ok(&[
            "get",
            "cm",
            "settings",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ])
        .await;
    assert_eq!(managers, "skiffctl");

    // A bad document: the error names the file, the document and the field,
    // the good documents still apply, and the exit code is 1.
    let bad = c.write(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: broken}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: b}}\n  template:\n    metadata: {labels: {app: b}}\n    spec:\n      containers:\n      - name: app\n        image: nginx\n        imagePullPolcy: Always\n",
    );
    let r = c.ctl(&["apply", "-f", &bad]).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout, "configmap/fine created\n");
    assert!(
        r.stderr.contains(&format!("\"{bad}\" (document 2)")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("imagePullPolcy"), "{}", r.stderr);
    let invalid = c.write(
        "invalid.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: negative}\nspec:\n  replicas: -1\n  selector: {matchLabels: {app: neg}}\n  template:\n    metadata: {labels: {app: neg}}\n    spec:\n      containers: [{name: app, image: nginx}]\n",
    );
    let r = c.ctl(&["apply", "-f", &invalid]).await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .starts_with("Error from server (Invalid): error when applying"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("(document 1)") && r.stderr.contains("spec.replicas"),
        "{}",
        r.stderr
    );
    let r = c.ctl(&["apply", "-f", "nowhere.yaml"]).await;
    assert_eq!(
        r.stderr,
        "error: the path \"nowhere.yaml\" does not exist\n"
    );
    let kindless = c.write("kindless.yaml", "apiVersion: v1\nmetadata: {name: x}\n");
    let r = c.ctl(&["apply", "-f", &kindless]).await;
    assert_eq!(
        r.stderr,
        format!("error: error validating \"{kindless}\" (document 1): kind not set\n")
    );

    let r = c.ctl(&["create", "-f", &app]).await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!("Error from server (AlreadyExists): error when creating \"{app}\" (document 1): configmaps \"settings\" already exists")),
        "{}",
        r.stderr
    );
    let other = c.write(
        "other.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
    );
    assert_eq!(
        c.ok(&["create", "-f", &other]).await,
        "configmap/other created\n"
    );
    assert_eq!(
        c.ok(&["create", "-f", &other, "-n", "kube-public", "-o", "name"])
            .await,
        "configmap/other\n"
    );
    let r = c.ctl(&["apply", "-f", &other, "-n", "kube-public"]).await;
    assert!(r.ok, "{}", r.stderr);
    let pinned = c.write(
        "pinned.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: p, namespace: default}\n",
    );
    let r = c.ctl(&["apply", "-f", &pinned, "-n", "kube-public"]).await;
    assert!(
        r.stderr
            .contains("does not match the namespace \"kube-public\""),
        "{}",
        r.stderr
    );

    assert_eq!(
        c.ok(&["scale", "deploy", "web", "--replicas", "5"]).await,
        "deployment.apps/web scaled\n"
    );
    assert_eq!(
        c.ok(&["get", "deployment/web", "-o", "jsonpath={.spec.replicas}"])
            .await,
        "5"
    );
    let r = c
        .ctl(&[
            "scale",
            "deploy/web",
            "--replicas",
            "3",
            "--current-replicas",
            "4",
        ])
        .await;
    assert_eq!(r.stderr, "error: Expected replicas to be 4, was 5\n");

    assert_eq!(
        c.ok(&["delete", "cm", "other"]).await,
        "configmap \"other\" deleted\n"
    );
    let r = c.ctl(&["delete", "cm", "other"]).await;
    assert_eq!(
        r.stderr,
        "Error from server (NotFound): configmaps \"other\" not found\n"
    );
    assert!(
        c.ctl(&["delete", "cm", "other", "--ignore-not-found"])
            .await
            .ok
    );
    assert_eq!(
        c.ok(&["delete", "-f", &app, "--cascade=orphan", "--wait=false"])
            .await,
        "configmap \"settings\" deleted\ndeployment.apps \"web\" deleted\n"
    );
    assert_eq!(c.ok(&["delete", "cm", "-l", "tier=none"]).await, "");
    assert_eq!(
        c.ok(&["delete", "cm", "--all", "-n", "kube-public", "-o", "name"])
            .await,
        "configmap/other\n"
    );
    let r = c.ctl(&["delete", "cm"]).await;
    assert_eq!(
        r.stderr,
        "error: resource(s) were provided, but no name was specified\n"
    );

    c.stop().await;
}

const NODE: &str = "\
apiVersion: v1
kind: Node
metadata:
  name: n1
  labels: {kubernetes.io/hostname: n1}
status:
  capacity: {cpu: '2', memory: 4Gi}
  allocatable: {cpu: '2', memory: 4Gi}
";

#[tokio::test(flavor = "multi_thread")]
async fn nodes_cordon_drain_and_describe() {
    let c = Cluster::start().await;
    let node = c.write("node.yaml", NODE);
    c.ok(&["create", "-f", &node]).await;

    assert_eq!(c.ok(&["cordon", "n1"]).await, "node/n1 cordoned\n");
    assert_eq!(c.ok(&["cordon", "n1"]).await, "node/n1 already cordoned\n");
    assert_eq!(
        c.ok(&["get", "no", "n1", "-o", "jsonpath={.spec.unschedulable}"])
            .await,
        "true"
    );
    let out = c.ok(&["get", "nodes"]).await;
    assert!(out.contains("SchedulingDisabled"), "{out}");
    let out = c.ok(&["describe", "node", "n1"]).await;
    assert!(out.starts_with("Name:               n1\n"), "{out}");
    assert!(out.contains("Unschedulable:      true\n"), "{out}");
    assert!(out.contains("Capacity:\n  cpu:     2\n"), "{out}");
    assert_eq!(c.ok(&["uncordon", "n1"]).await, "node/n1 uncordoned\n");
    // No kubelet answers for n1, so the metrics API has nothing for it:
    // top says so, as kubectl does.
    let r = c.ctl(&["top", "nodes"]).await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.ends_with("error: metrics not available yet\n"),
        "{}",
        r.stderr
    );

    // A pod with no controller on the node: drain refuses without --force.
    let pod = c.write(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: lone}\nspec:\n  nodeName: n1\n  containers: [{name: app, image: nginx}]\n",
    );
    c.ok(&["create", "-f", &pod]).await;
    let r = c.ctl(&["drain", "n1", "--timeout", "5s"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("node/n1 cordoned"), "{}", r.stdout);
    assert!(
        r.stderr.contains(
            "cannot delete Pods that declare no controller (use --force to override): default/lone"
        ),
        "{}",
        r.stderr
    );

    let uid = c
        .ok(&["get", "pod", "lone", "-o", "jsonpath={.metadata.uid}"])
        .await;
    let event = c.write(
        "event.yaml",
        &format!(
            "apiVersion: v1\nkind: Event\nmetadata: {{name: lone.1}}\ninvolvedObject: {{kind: Pod, name: lone, namespace: default, uid: {uid}}}\nreason: Pulled\nmessage: Image pulled\ntype: Normal\nsource: {{component: kubelet}}\ncount: 1\n"
        ),
    );
    c.ok(&["create", "-f", &event]).await;
    let out = c.ok(&["describe", "pod", "lone"]).await;
    assert!(out.contains("Events:\n  Type     Reason   Age"), "{out}");
    assert!(out.contains("  Normal   Pulled   "), "{out}");
    assert!(out.trim_end().ends_with("kubelet   Image pulled"), "{out}");
    assert!(out.contains("Node:             n1\n"), "{out}");
    assert!(out.contains("Containers:\n  app:\n    Image:"), "{out}");

    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_explain_and_pods_without_a_node() {
    let c = Cluster::start().await;

    let out = c.ok(&["api-resources"]).await;
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    );
    let deploy: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("deployments "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        deploy,
        ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
    let names = c
        .ok(&["api-resources", "-o", "name", "--api-group", "apps"])
        .await;
    assert!(names.lines().any(|l| l == "deployments.apps"), "{names}");

    let out = c.ok(&["explain", "pods"]).await;
    assert!(
        out.starts_with("KIND:       Pod\nVERSION:    v1\n"),
        "{out}"
    );
    assert!(out.contains("\nFIELDS:\n"), "{out}");
    let out = c
        .ok(&["explain", "deploy.spec.template.spec.containers"])
        .await;
    assert!(out.contains("FIELD: containers <[]Container>"), "{out}");
    assert!(out.contains("  image\t<string>"), "{out}");
    let r = c.ctl(&["explain", "pods.spec.nope"]).await;
    assert_eq!(r.stderr, "error: field \"nope\" does not exist\n");

    let pod = c.write(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: pending}\nspec:\n  containers: [{name: app, image: nginx}]\n",
    );
    c.ok(&["create", "-f", &pod]).await;
    let r = c.ctl(&["exec", "pending", "--", "ls"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "error: unable to upgrade connection: pod does not have a host assigned\n"
    );
    // As upstream, the log of a pod no node runs yet is empty.
    let r = c.ctl(&["logs", "pending"]).await;
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    let r = c.ctl(&["logs", "pending", "-c", "nope"]).await;
    assert_eq!(
        r.stderr,
        "error: container nope is not valid for pod pending\n"
    );
    let r = c.ctl(&["exec", "pending", "-c", "nope", "--", "ls"]).await;
    assert_eq!(r.code, 1);

    assert!(c.ok(&["completion", "bash"]).await.contains("skiffctl"));

    // Without --kubeconfig, `.skiff/admin.kubeconfig` here (what `skiffctl
    // up` leaves) is used; global flags may also come before the verb.
    let cm = c.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: here}\n",
    );
    c.ok(&["apply", "-f", &cm, "-n", "kube-system"]).await;
    std::fs::create_dir_all(c.dir.path().join(".skiff")).unwrap();
    std::fs::copy(&c.kubeconfig, c.dir.path().join(".skiff/admin.kubeconfig")).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_skiffctl"))
        .args([
            "-n",
            "kube-system",
            "get",
            "configmaps",
            "-o",
            "name",
            "--field-selector",
            "metadata.name=here",
        ])
        .current_dir(c.dir.path())
        .env_remove("KUBECONFIG")
        .env("HOME", c.dir.path())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "configmap/here\n");
    let v = c.ok(&["version"]).await;
    assert!(
        v.starts_with("Client Version: v") && v.contains("Server Version: v1."),
        "{v}"
    );

    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_edit_and_rollout() {
    use tokio::io::AsyncBufReadExt;

    let c = Cluster::start().await;
    let app = c.write("app.yaml", APP);
    c.ok(&["apply", "-f", &app]).await;

    // get -w prints the list, then a row for each change.
    let mut watch = c
        .command(&["get", "configmaps", "-w", "--no-headers"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    assert!(first.starts_with("settings "), "{first}");
    let other = c.write(
        "w.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched}\n",
    );
    c.ok(&["apply", "-f", &other]).await;
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line())
        .await
        .expect("the watch prints the new object")
        .unwrap()
        .unwrap();
    assert!(next.starts_with("watched "), "{next}");
    watch.kill().await.unwrap();

    // edit: the editor's change is written back; no change cancels.
    let r = c
        .ctl_env(
            &["edit", "cm", "settings"],
            None,
            &[("EDITOR", "sed -i s/fast/slow/")],
        )
        .await;
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.stdout, "configmap/settings edited\n");
    assert_eq!(
        c.ok(&["get", "cm", "settings", "-o", "jsonpath={.data.mode}"])
            .await,
        "slow"
    );
    let r = c
        .ctl_env(&["edit", "cm/settings"], None, &[("EDITOR", "true")])
        .await;
    assert_eq!(r.stdout, "Edit cancelled, no changes made.\n");
    // An invalid edit reopens the editor with the error on top; saving the
    // same text again gives up, as kubectl does.
    let script = c.write(
        "editor.sh",
        "#!/bin/sh\nif grep -q 'was not valid' \"$1\"; then cp \"$1\" \"$1.seen\"; exit 0; fi\nsed -i 's/^data:/bogus: 1\\ndata:/' \"$1\"\n",
    );
    let r = c
        .ctl_env(
            &["edit", "cm", "settings"],
            None,
            &[("EDITOR", &format!("sh {script}"))],
        )
        .await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("Edit cancelled, no valid changes were saved."),
        "{}",
        r.stderr
    );

    // rollout restart stamps the template; status follows the controller's status.
    assert_eq!(
        c.ok(&["rollout", "restart", "deploy", "web"]).await,
        "deployment.apps/web restarted\n"
    );
    let stamp = c
        .ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}",
        ])
        .await;
    assert!(stamp.ends_with('Z'), "{stamp}");
    let r = c
        .ctl(&["rollout", "status", "deploy/web", "--timeout", "1s"])
        .await;
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr, "error: timed out waiting for the condition\n");
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        c.client().await,
        "default",
        &kube::discovery::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "apps",
            "v1",
            "Deployment",
        )),
    );
    let generation = api.get("web").await.unwrap().metadata.generation.unwrap();
    let status = serde_json::json!({"status": {"observedGeneration": generation, "replicas": 2,
        "updatedReplicas": 2, "availableReplicas": 1, "readyReplicas": 1}});
    api.patch_status(
        "web",
        &Default::default(),
        &kube::api::Patch::Merge(&status),
    )
    .await
    .unwrap();
    let r = c
        .ctl(&["rollout", "status", "deploy/web", "--watch=false"])
        .await;
    assert_eq!(
        r.stdout,
        "Waiting for deployment \"web\" rollout to finish: 1 of 2 updated replicas are available...\n"
    );
    let status = serde_json::json!({"status": {"availableReplicas": 2}});
    api.patch_status(
        "web",
        &Default::default(),
        &kube::api::Patch::Merge(&status),
    )
    .await
    .unwrap();
    assert_eq!(
        c.ok(&["rollout", "status", "deploy/web"]).await,
        "deployment \"web\" successfully rolled out\n"
    );
    let out = c.ok(&["describe", "deploy", "web"]).await;
    assert!(out.contains("Replicas:               2 desired | 2 updated | 2 total | 2 available | 0 unavailable\n"), "{out}");

    c.stop().await;
}
