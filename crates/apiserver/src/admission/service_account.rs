//! ServiceAccount (plugin/pkg/admission/serviceaccount): a new pod runs as
//! the `default` ServiceAccount unless it names one, the account must exist,
//! its imagePullSecrets are copied, and a projected token volume
//! (`kube-api-access-<random>`: a bound token, the cluster CA, the
//! namespace) is mounted into every container at
//! `/var/run/secrets/kubernetes.io/serviceaccount` unless the pod or the
//! account opts out with `automountServiceAccountToken: false`. Mirror pods
//! are left alone but may not reference accounts, secrets or tokens.
//!
//! Until a ServiceAccount controller exists, a missing `default` account is
//! created here, as that controller would have done.

use serde_json::{Value, json};

use super::{Operation, Request, containers, is_mirror_pod, lookup, namespace_of};
use crate::Api;
use crate::status::ApiError;

pub const NAME: &str = "ServiceAccount";

/// The account a pod runs as when it names none.
const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Where the token volume is mounted.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The token volume's name, before its random suffix.
const VOLUME_PREFIX: &str = "kube-api-access-";
/// Upstream's `WarnOnlyBoundTokenExpirationSeconds`: one hour and seven
/// seconds, which the kubelet recognizes as "extend if the server allows".
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// The annotation that limits pods to the account's listed secrets.
const ENFORCE_MOUNTABLE_SECRETS: &str = "kubernetes.io/enforce-mountable-secrets";
/// Who creates missing `default` accounts.
const MANAGER: &str = "skiff-apiserver";

/// Whether the plugin looks at this request: pods themselves (and their
/// ephemeral containers), created.
fn applies(req: &Request<'_>) -> bool {
    req.is("", "pods") && req.subresource.is_none() && req.operation == Operation::Create
}

/// The mutating half.
pub async fn admit(req: &Request<'_>, pod: &mut Value) -> Result<(), ApiError> {
    if !applies(req) || is_mirror_pod(pod) {
        return Ok(());
    }
    if pod["spec"]["serviceAccountName"]
        .as_str()
        .is_none_or(str::is_empty)
    {
        pod["spec"]["serviceAccountName"] = json!(DEFAULT_SERVICE_ACCOUNT);
    }
    let account = account_of(req, pod).await?;
    if should_automount(&account, pod) {
        mount_token(pod, &super::random_suffix());
    }
    if pod["spec"]["imagePullSecrets"]
        .as_array()
        .is_none_or(Vec::is_empty)
        && let Some(secrets) = account["imagePullSecrets"].as_array()
        && !secrets.is_empty()
    {
        pod["spec"]["imagePullSecrets"] =
            Value::Array(secrets.iter().map(|s| json!({"name": s["name"]})).collect());
    }
    Ok(())
}

/// The validating half.
pub async fn validate(req: &Request<'_>, pod: &Value) -> Result<(), ApiError> {
    if !applies(req) {
        return Ok(());
    }
    if is_mirror_pod(pod) {
        return mirror_pod_refusal(pod).map_or(Ok(()), |why| Err(req.forbidden(pod, why)));
    }
    let namespace = namespace_of(pod);
    let Some(account_name) = pod["spec"]["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
    else {
        return Err(req.forbidden(
            pod,
            format!(
                "no service account specified for pod {namespace}/{}",
                pod["metadata"]["name"].as_str().unwrap_or("")
            ),
        ));
    };
    let account = account_of(req, pod).await?;
    let enforce = account["metadata"]["annotations"][ENFORCE_MOUNTABLE_SECRETS]
        .as_str()
        .is_some_and(|v| parse_bool(v) == Some(true));
    if enforce && let Some(why) = unlisted_secret(account_name, &account, pod) {
        return Err(req.forbidden(pod, why));
    }
    Ok(())
}

/// The pod's ServiceAccount, looked up as upstream does; a missing
/// `default` account is created.
async fn account_of(req: &Request<'_>, pod: &Value) -> Result<Value, ApiError> {
    let namespace = namespace_of(pod);
    let name = pod["spec"]["serviceAccountName"].as_str().unwrap_or("");
    let accounts = lookup::resource("", "serviceaccounts");
    let found = lookup::get(req.api, accounts, Some(namespace), name)
        .await
        .map_err(|e| lookup_failed(req, pod, namespace, name, &e.message))?;
    if let Some(account) = found {
        return Ok(account);
    }
    if name == DEFAULT_SERVICE_ACCOUNT {
        return ensure_default_service_account(req.api, namespace).await;
    }
    Err(lookup_failed(
        req,
        pod,
        namespace,
        name,
        &format!("serviceaccount \"{name}\" not found"),
    ))
}

fn lookup_failed(
    req: &Request<'_>,
    pod: &Value,
    namespace: &str,
    name: &str,
    why: &str,
) -> ApiError {
    req.forbidden(
        pod,
        format!("error looking up service account {namespace}/{name}: {why}"),
    )
}

/// Creates the `default` ServiceAccount of `namespace` unless it exists, and
/// answers it. (The ServiceAccount controller's job, done on demand until
/// that controller exists.)
pub(crate) async fn ensure_default_service_account(
    api: &Api,
    namespace: &str,
) -> Result<Value, ApiError> {
    let accounts = lookup::resource("", "serviceaccounts");
    let account = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": DEFAULT_SERVICE_ACCOUNT, "namespace": namespace},
    });
    let created = Box::pin(crate::rest::create_object(
        api,
        None,
        accounts,
        account,
        Some(MANAGER),
        false,
    ))
    .await;
    match created {
        Ok(account) => Ok(account),
        Err(e) if e.reason == "AlreadyExists" => {
            lookup::get(api, accounts, Some(namespace), DEFAULT_SERVICE_ACCOUNT)
                .await?
                .ok_or(e)
        }
        Err(e) => Err(e),
    }
}

/// The pod's choice wins, then the account's; mounting is the default.
fn should_automount(account: &Value, pod: &Value) -> bool {
    pod["spec"]["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| account["automountServiceAccountToken"].as_bool())
        .unwrap_or(true)
}

/// The projected volume upstream's `TokenVolumeSource` builds, with every
/// default written out (admission runs after defaulting).
fn token_volume_source() -> Value {
    json!({
        "defaultMode": 0o644,
        "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": TOKEN_EXPIRATION_SECONDS}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ],
    })
}

/// Mounts the token volume into every container that has nothing at the
/// token path yet, adding the volume (named with `suffix`) if one needs it.
fn mount_token(pod: &mut Value, suffix: &str) {
    let existing = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .find(|n| n.starts_with(VOLUME_PREFIX))
        .map(str::to_owned);
    let volume_name = existing
        .clone()
        .unwrap_or_else(|| format!("{VOLUME_PREFIX}{suffix}"));
    let mut needs_volume = false;
    // Ephemeral containers get no automatic mounts.
    for key in ["initContainers", "containers"] {
        let Some(list) = pod["spec"].get_mut(key).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in list {
            let mounted = container["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"] == TOKEN_MOUNT_PATH);
            if mounted {
                continue;
            }
            let mount =
                json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
            match container["volumeMounts"].as_array_mut() {
                Some(mounts) => mounts.push(mount),
                None => container["volumeMounts"] = json!([mount]),
            }
            needs_volume = true;
        }
    }
    if existing.is_none() && needs_volume {
        let volume = json!({"name": volume_name, "projected": token_volume_source()});
        match pod["spec"]["volumes"].as_array_mut() {
            Some(volumes) => volumes.push(volume),
            None => pod["spec"]["volumes"] = json!([volume]),
        }
    }
}

/// Why a mirror pod may not be created, if it may not.
fn mirror_pod_refusal(pod: &Value) -> Option<&'static str> {
    if pod["spec"]["serviceAccountName"]
        .as_str()
        .is_some_and(|s| !s.is_empty())
    {
        return Some("a mirror pod may not reference service accounts");
    }
    if !secret_names(pod).is_empty() {
        return Some("a mirror pod may not reference secrets");
    }
    let projects_token = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|v| v["projected"]["sources"].as_array().into_iter().flatten())
        .any(|s| s.get("serviceAccountToken").is_some());
    projects_token.then_some("a mirror pod may not use ServiceAccountToken volume projections")
}

/// Every secret a pod references (upstream's VisitPodSecretNames): pull
/// secrets, secret volumes and projections, env and envFrom.
pub(super) fn secret_names(pod: &Value) -> Vec<String> {
    let spec = &pod["spec"];
    let mut names = Vec::new();
    let mut add = |v: &Value| {
        if let Some(n) = v.as_str().filter(|n| !n.is_empty()) {
            names.push(n.to_owned());
        }
    };
    for s in spec["imagePullSecrets"].as_array().into_iter().flatten() {
        add(&s["name"]);
    }
    for c in containers(spec) {
        for e in c["envFrom"].as_array().into_iter().flatten() {
            add(&e["secretRef"]["name"]);
        }
        for e in c["env"].as_array().into_iter().flatten() {
            add(&e["valueFrom"]["secretKeyRef"]["name"]);
        }
    }
    for v in spec["volumes"].as_array().into_iter().flatten() {
        add(&v["secret"]["secretName"]);
        for s in v["projected"]["sources"].as_array().into_iter().flatten() {
            add(&s["secret"]["name"]);
        }
        for key in [
            "azureFile",
            "cephfs",
            "cinder",
            "flexVolume",
            "rbd",
            "scaleIO",
            "iscsi",
            "storageos",
            "csi",
        ] {
            add(&v[key]["secretRef"]["name"]);
            add(&v[key]["nodePublishSecretRef"]["name"]);
        }
        add(&v["azureFile"]["secretName"]);
    }
    names
}

/// With `kubernetes.io/enforce-mountable-secrets`, a pod may use only the
/// secrets its account lists.
fn unlisted_secret(account_name: &str, account: &Value, pod: &Value) -> Option<String> {
    let listed = |field: &str, name: &str| {
        account[field]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["name"] == name)
    };
    let spec = &pod["spec"];
    for v in spec["volumes"].as_array().into_iter().flatten() {
        if let Some(secret) = v["secret"]["secretName"].as_str()
            && !listed("secrets", secret)
        {
            return Some(format!(
                "volume with secret.secretName=\"{secret}\" is not allowed because service account {account_name} does not reference that secret"
            ));
        }
    }
    for (key, what) in [
        ("initContainers", "init container"),
        ("containers", "container"),
    ] {
        for c in spec[key].as_array().into_iter().flatten() {
            for e in c["env"].as_array().into_iter().flatten() {
                if let Some(secret) = e["valueFrom"]["secretKeyRef"]["name"].as_str()
                    && !listed("secrets", secret)
                {
                    return Some(format!(
                        "{what} {} with envVar {} referencing secret.secretName=\"{secret}\" is not allowed because service account {account_name} does not reference that secret",
                        c["name"].as_str().unwrap_or(""),
                        e["name"].as_str().unwrap_or("")
                    ));
                }
            }
        }
    }
    for (i, s) in spec["imagePullSecrets"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = s["name"].as_str().unwrap_or("");
        if !listed("imagePullSecrets", name) {
            return Some(format!(
                "imagePullSecrets[{i}].name=\"{name}\" is not allowed because service account {account_name} does not reference that imagePullSecret"
            ));
        }
    }
    None
}

/// Go's strconv.ParseBool.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [
                    {"name": "a", "image": "nginx"},
                    {"name": "b", "image": "nginx", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]},
                ],
            },
        })
    }

    #[test]
    fn the_token_volume_is_projected_and_mounted_where_nothing_is() {
        let mut p = pod();
        mount_token(&mut p, "x7k2q");
        let volumes = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 1);
        assert_eq!(volumes[0]["name"], "kube-api-access-x7k2q");
        let sources = &volumes[0]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        assert_eq!(volumes[0]["projected"]["defaultMode"], 420);
        let mount = json!([{"name": "kube-api-access-x7k2q", "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}]);
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"], mount);
        assert_eq!(p["spec"]["initContainers"][0]["volumeMounts"], mount);
        assert_eq!(
            p["spec"]["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1,
            "a container with its own mount at the path keeps it"
        );
    }

    #[test]
    fn an_existing_token_volume_is_reused() {
        let mut p = pod();
        p["spec"]["volumes"] =
            json!([{"name": "kube-api-access-aaaaa", "projected": token_volume_source()}]);
        mount_token(&mut p, "zzzzz");
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(
            p["spec"]["containers"][0]["volumeMounts"][0]["name"],
            "kube-api-access-aaaaa"
        );
    }

    #[test]
    fn the_pod_decides_automounting_before_its_account() {
        let account = json!({"automountServiceAccountToken": false});
        let mut p = pod();
        assert!(!should_automount(&account, &p));
        p["spec"]["automountServiceAccountToken"] = json!(true);
        assert!(should_automount(&account, &p));
        assert!(should_automount(&json!({}), &pod()));
    }

    #[test]
    fn mirror_pods_may_not_reference_accounts_secrets_or_tokens() {
        let mut p = pod();
        assert_eq!(mirror_pod_refusal(&p), None);
        p["spec"]["containers"][0]["env"] =
            json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]);
        assert_eq!(
            mirror_pod_refusal(&p),
            Some("a mirror pod may not reference secrets")
        );
        let mut p = pod();
        p["spec"]["serviceAccountName"] = json!("default");
        assert_eq!(
            mirror_pod_refusal(&p),
            Some("a mirror pod may not reference service accounts")
        );
        let mut p = pod();
        p["spec"]["volumes"] = json!([{"name": "t", "projected": token_volume_source()}]);
        assert_eq!(
            mirror_pod_refusal(&p),
            Some("a mirror pod may not use ServiceAccountToken volume projections")
        );
    }

    #[test]
    fn enforced_accounts_refuse_secrets_they_do_not_list() {
        let account = json!({"secrets": [{"name": "ok"}], "imagePullSecrets": [{"name": "pull"}]});
        let mut p = pod();
        p["spec"]["volumes"] = json!([{"name": "v", "secret": {"secretName": "ok"}}]);
        p["spec"]["imagePullSecrets"] = json!([{"name": "pull"}]);
        assert_eq!(unlisted_secret("sa", &account, &p), None);
        p["spec"]["volumes"] = json!([{"name": "v", "secret": {"secretName": "other"}}]);
        assert_eq!(
            unlisted_secret("sa", &account, &p).unwrap(),
            "volume with secret.secretName=\"other\" is not allowed because service account sa does not reference that secret"
        );
    }
}
