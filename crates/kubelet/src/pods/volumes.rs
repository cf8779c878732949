//! Pod volumes on the node: emptyDir (disk or tmpfs), hostPath, configMap,
//! secret, downwardAPI, projected (with service-account tokens, refreshed
//! before they expire) and persistentVolumeClaims bound to hostPath or local
//! PersistentVolumes. Content volumes are written atomically as upstream's
//! atomic writer does (a `..data` symlink swapped to a new timestamped
//! directory), so updated ConfigMaps and Secrets reach running containers.

use crate::Kubelet;
use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod,
    Secret, ServiceAccount, Volume,
};
use kube::Api;
use kube::api::PostParams;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where a volume is on the host, for mounts into containers.
#[derive(Debug, Clone)]
pub struct Mounted {
    pub host_path: PathBuf,
    /// Content volumes (secret, configMap, ...) are always read-only.
    pub read_only: bool,
}

/// (pod uid, service account, audience, lifetime in seconds).
type TokenKey = (String, String, String, i64);

/// Service-account tokens the kubelet holds for projected volumes, keyed by
/// pod uid, service account, audience and lifetime.
#[derive(Default)]
pub struct Tokens {
    cache: std::sync::Mutex<HashMap<TokenKey, (String, jiff::Timestamp, jiff::Timestamp)>>,
}

impl Tokens {
    pub fn forget_pod(&self, uid: &str) {
        self.cache.lock().unwrap().retain(|k, _| k.0 != uid);
    }
}

fn plugin_dir(kind: &str) -> &'static str {
    match kind {
        "emptyDir" => "kubernetes.io~empty-dir",
        "configMap" => "kubernetes.io~configmap",
        "secret" => "kubernetes.io~secret",
        "downwardAPI" => "kubernetes.io~downward-api",
        _ => "kubernetes.io~projected",
    }
}

/// Sets up (or refreshes) every volume of `pod`; an error names the volume.
pub async fn setup(kubelet: &Kubelet, pod: &Pod) -> Result<HashMap<String, Mounted>, String> {
    let spec = pod.spec.as_ref().ok_or("pod has no spec")?;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let volumes_dir = kubelet.config.pod_dir(&uid).join("volumes");
    let mut mounted = HashMap::new();
    for volume in spec.volumes.iter().flatten() {
        let result = setup_one(kubelet, pod, &namespace, &uid, &volumes_dir, volume).await;
        match result {
            Ok(m) => {
                mounted.insert(volume.name.clone(), m);
            }
            Err(err) => {
                return Err(format!(
                    "MountVolume.SetUp failed for volume \"{}\" : {err}",
                    volume.name
                ));
            }
        }
    }
    Ok(mounted)
}

async fn setup_one(
    kubelet: &Kubelet,
    pod: &Pod,
    namespace: &str,
    uid: &str,
    volumes_dir: &Path,
    volume: &Volume,
) -> Result<Mounted, String> {
    let io = |e: std::io::Error| e.to_string();
    let content_dir = |kind: &str| volumes_dir.join(plugin_dir(kind)).join(&volume.name);
    if let Some(empty) = &volume.empty_dir {
        let dir = content_dir("emptyDir");
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        if empty.medium.as_deref() == Some("Memory")
            && kubelet.config.manage_host
            && !is_mount_point(&dir)
        {
            let mut args = vec![
                "-t".to_string(),
                "tmpfs".into(),
                "tmpfs".into(),
                dir.display().to_string(),
            ];
            if let Some(limit) = &empty.size_limit {
                args.splice(2..2, ["-o".to_string(), format!("size={}", limit.0)]);
            }
            run_mount(&args).await?;
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).map_err(io)?;
        return Ok(Mounted {
            host_path: dir,
            read_only: false,
        });
    }
    if let Some(host) = &volume.host_path {
        let path = PathBuf::from(&host.path);
        match host.type_.as_deref().unwrap_or("") {
            "DirectoryOrCreate" => {
                tokio::fs::create_dir_all(&path).await.map_err(io)?;
            }
            "FileOrCreate" if !path.exists() => {
                if let Some(parent) = path.parent() {
                    tokio::fs::create_dir_all(parent).await.map_err(io)?;
                }
                tokio::fs::write(&path, b"").await.map_err(io)?;
            }
            "Directory" if !path.is_dir() => {
                return Err(format!(
                    "hostPath type check failed: {} is not a directory",
                    host.path
                ));
            }
            "File" if !path.is_file() => {
                return Err(format!(
                    "hostPath type check failed: {} is not a file",
                    host.path
                ));
            }
            "Socket" | "CharDevice" | "BlockDevice" if !path.exists() => {
                return Err(format!(
                    "hostPath type check failed: {} does not exist",
                    host.path
                ));
            }
            _ => {}
        }
        return Ok(Mounted {
            host_path: path,
            read_only: false,
        });
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(kubelet.client.clone(), namespace);
        let pvc = pvcs
            .get_opt(&claim.claim_name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("persistentvolumeclaim \"{}\" not found", claim.claim_name))?;
        let pv_name = pvc
            .spec
            .and_then(|s| s.volume_name)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                format!(
                    "persistentvolumeclaim \"{}\" is not bound",
                    claim.claim_name
                )
            })?;
        let pvs: Api<PersistentVolume> = Api::all(kubelet.client.clone());
        let pv = pvs.get(&pv_name).await.map_err(|e| e.to_string())?;
        let spec = pv.spec.unwrap_or_default();
        let path = spec
            .host_path
            .map(|h| h.path)
            .or(spec.local.map(|l| l.path))
            .ok_or_else(|| {
                format!("persistentvolume \"{pv_name}\" is neither hostPath nor local")
            })?;
        tokio::fs::create_dir_all(&path).await.map_err(io)?;
        return Ok(Mounted {
            host_path: PathBuf::from(path),
            read_only: claim.read_only.unwrap_or(false),
        });
    }

    // Content volumes: gather files, then write them atomically.
    let mut files: BTreeMap<String, (Vec<u8>, u32)> = BTreeMap::new();
    let kind;
    if let Some(cm) = &volume.config_map {
        kind = "configMap";
        let mode = cm.default_mode.unwrap_or(0o644) as u32;
        let data =
            config_map_data(kubelet, namespace, &cm.name, cm.optional.unwrap_or(false)).await?;
        project(
            &mut files,
            data,
            cm.items.as_deref(),
            mode,
            "configmap",
            &cm.name,
        )?;
    } else if let Some(secret) = &volume.secret {
        kind = "secret";
        let mode = secret.default_mode.unwrap_or(0o644) as u32;
        let name = secret.secret_name.clone().unwrap_or_default();
        let data = secret_data(kubelet, namespace, &name, secret.optional.unwrap_or(false)).await?;
        project(
            &mut files,
            data,
            secret.items.as_deref(),
            mode,
            "secret",
            &name,
        )?;
    } else if let Some(downward) = &volume.downward_api {
        kind = "downwardAPI";
        let mode = downward.default_mode.unwrap_or(0o644) as u32;
        downward_files(
            &mut files,
            pod,
            downward.items.as_deref().unwrap_or_default(),
            mode,
        )?;
    } else if let Some(projected) = &volume.projected {
        kind = "projected";
        let mode = projected.default_mode.unwrap_or(0o644) as u32;
        for source in projected.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                let data =
                    config_map_data(kubelet, namespace, &cm.name, cm.optional.unwrap_or(false))
                        .await?;
                project(
                    &mut files,
                    data,
                    cm.items.as_deref(),
                    mode,
                    "configmap",
                    &cm.name,
                )?;
            }
            if let Some(secret) = &source.secret {
                let data = secret_data(
                    kubelet,
                    namespace,
                    &secret.name,
                    secret.optional.unwrap_or(false),
                )
                .await?;
                project(
                    &mut files,
                    data,
                    secret.items.as_deref(),
                    mode,
                    "secret",
                    &secret.name,
                )?;
            }
            if let Some(downward) = &source.downward_api {
                downward_files(
                    &mut files,
                    pod,
                    downward.items.as_deref().unwrap_or_default(),
                    mode,
                )?;
            }
            if let Some(token) = &source.service_account_token {
                let value = service_account_token(
                    kubelet,
                    pod,
                    namespace,
                    uid,
                    token.audience.clone().unwrap_or_default(),
                    token.expiration_seconds.unwrap_or(3600),
                )
                .await?;
                files.insert(token.path.clone(), (value.into_bytes(), mode));
            }
        }
    } else {
        return Err("volume type is not supported by this kubelet".into());
    }
    let dir = content_dir(kind);
    if kubelet.config.manage_host {
        let writing = dir.clone();
        tokio::task::spawn_blocking(move || write_atomic(&writing, &files))
            .await
            .map_err(|e| e.to_string())?
            .map_err(io)?;
    }
    Ok(Mounted {
        host_path: dir,
        read_only: true,
    })
}

async fn run_mount(args: &[String]) -> Result<(), String> {
    let out = tokio::process::Command::new("mount")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("mount: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mount {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn is_mount_point(dir: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let target = dir.display().to_string();
    text.lines()
        .any(|l| l.split_whitespace().nth(4) == Some(target.as_str()))
}

async fn config_map_data(
    kubelet: &Kubelet,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let api: Api<ConfigMap> = Api::namespaced(kubelet.client.clone(), namespace);
    match api.get_opt(name).await.map_err(|e| e.to_string())? {
        Some(cm) => {
            let mut data: BTreeMap<String, Vec<u8>> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            data.extend(
                cm.binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0)),
            );
            Ok(data)
        }
        None if optional => Ok(BTreeMap::new()),
        None => Err(format!("configmap \"{name}\" not found")),
    }
}

async fn secret_data(
    kubelet: &Kubelet,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let api: Api<Secret> = Api::namespaced(kubelet.client.clone(), namespace);
    match api.get_opt(name).await.map_err(|e| e.to_string())? {
        Some(secret) => {
            let mut data: BTreeMap<String, Vec<u8>> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            data.extend(
                secret
                    .string_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes())),
            );
            Ok(data)
        }
        None if optional => Ok(BTreeMap::new()),
        None => Err(format!("secret \"{name}\" not found")),
    }
}

/// Adds `data` to `files`, all keys or only `items`.
fn project(
    files: &mut BTreeMap<String, (Vec<u8>, u32)>,
    mut data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    what: &str,
    name: &str,
) -> Result<(), String> {
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                let value = data.remove(&item.key).ok_or_else(|| {
                    format!(
                        "configuration error: {what} \"{name}\" has no key \"{}\"",
                        item.key
                    )
                })?;
                files.insert(
                    item.path.clone(),
                    (value, item.mode.map(|m| m as u32).unwrap_or(mode)),
                );
            }
        }
        _ => {
            for (k, v) in data {
                files.insert(k, (v, mode));
            }
        }
    }
    Ok(())
}

fn downward_files(
    files: &mut BTreeMap<String, (Vec<u8>, u32)>,
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    mode: u32,
) -> Result<(), String> {
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            match field.field_path.as_str() {
                "metadata.labels" => format_map(pod.metadata.labels.as_ref()),
                "metadata.annotations" => format_map(pod.metadata.annotations.as_ref()),
                path => super::spec::pod_field(pod, path, None)
                    .ok_or_else(|| format!("unsupported fieldPath {path}"))?,
            }
        } else if let Some(resource) = &item.resource_field_ref {
            let container = resource.container_name.as_deref().unwrap_or_default();
            super::spec::resource_field(pod, container, resource, None)?
        } else {
            continue;
        };
        files.insert(
            item.path.clone(),
            (
                value.into_bytes(),
                item.mode.map(|m| m as u32).unwrap_or(mode),
            ),
        );
    }
    Ok(())
}

/// `key="value"` lines, sorted, as upstream writes label and annotation files.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn service_account_token(
    kubelet: &Kubelet,
    pod: &Pod,
    namespace: &str,
    uid: &str,
    audience: String,
    expiration: i64,
) -> Result<String, String> {
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let key = (uid.to_string(), sa.clone(), audience.clone(), expiration);
    let now = jiff::Timestamp::now();
    if let Some((token, issued, expires)) =
        kubelet.pods.tokens.cache.lock().unwrap().get(&key).cloned()
    {
        // Refresh when 80% of the lifetime has passed, as upstream does.
        let lifetime = expires.duration_since(issued).as_secs_f64();
        if now.duration_since(issued).as_secs_f64() < lifetime * 0.8 {
            return Ok(token);
        }
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: if audience.is_empty() {
                Vec::new()
            } else {
                vec![audience]
            },
            expiration_seconds: Some(expiration),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: Some(uid.to_string()),
            }),
        },
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(kubelet.client.clone(), namespace);
    let response: TokenRequest = api
        .create_subresource("token", &sa, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("failed to fetch token: {e}"))?;
    let status = response.status.ok_or("token request returned no status")?;
    let expires = status.expiration_timestamp.0;
    kubelet
        .pods
        .tokens
        .cache
        .lock()
        .unwrap()
        .insert(key, (status.token.clone(), now, expires));
    Ok(status.token)
}

/// Writes `files` under `dir` atomically: a new `..<timestamp>` directory,
/// then the `..data` link swapped to it, then top-level links to `..data/`.
pub fn write_atomic(dir: &Path, files: &BTreeMap<String, (Vec<u8>, u32)>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let data_link = dir.join("..data");
    // Unchanged content: nothing to do.
    if let Ok(current) = std::fs::read_link(&data_link) {
        let current = dir.join(current);
        let same = files.iter().all(|(path, (content, mode))| {
            let p = current.join(path);
            std::fs::read(&p).is_ok_and(|c| &c == content)
                && std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o7777 == *mode)
        }) && count_files(&current) == files.len();
        if same {
            return Ok(());
        }
    }
    let stamp = format!("..{}", jiff::Timestamp::now().as_nanosecond());
    let new_dir = dir.join(&stamp);
    std::fs::create_dir_all(&new_dir)?;
    for (path, (content, mode)) in files {
        let target = new_dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, content)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode))?;
    }
    let old = std::fs::read_link(&data_link).ok();
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link)?;
    std::fs::rename(&tmp_link, &data_link)?;
    // Top-level names point into ..data; names no longer present go.
    let top: std::collections::BTreeSet<String> = files
        .keys()
        .map(|p| p.split('/').next().unwrap_or(p).to_string())
        .collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with("..") && !top.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old
        && old.to_string_lossy() != stamp
    {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        count_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Unmounts whatever is mounted under the pod's directory and removes it.
pub async fn teardown(kubelet: &Kubelet, uid: &str) -> std::io::Result<()> {
    kubelet.pods.tokens.forget_pod(uid);
    let dir = kubelet.config.pod_dir(uid);
    if kubelet.config.manage_host {
        let prefix = format!("{}/", dir.display());
        let text = tokio::fs::read_to_string("/proc/self/mountinfo")
            .await
            .unwrap_or_default();
        let mut mounts: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let out = tokio::process::Command::new("umount")
                .arg(m)
                .output()
                .await?;
            if !out.status.success() {
                tracing::warn!(
                    "umount {m}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
    match tokio::fs::remove_dir_all(&dir).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Decodes a `.dockerconfigjson` and returns the credentials for `image`'s registry.
pub fn registry_auth(dockerconfig: &[u8], image: &str) -> Option<(String, String)> {
    let value: serde_json::Value = serde_json::from_slice(dockerconfig).ok()?;
    let auths = value.get("auths").or(Some(&value))?.as_object()?;
    let registry = image_registry(image);
    for (host, entry) in auths {
        let host = host
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let host = host.split('/').next().unwrap_or(host);
        let matches = host == registry || (registry == "docker.io" && host == "index.docker.io");
        if !matches {
            continue;
        }
        if let (Some(u), Some(p)) = (
            entry.get("username").and_then(|v| v.as_str()),
            entry.get("password").and_then(|v| v.as_str()),
        ) {
            return Some((u.into(), p.into()));
        }
        let auth = entry.get("auth")?.as_str()?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (u, p) = text.split_once(':')?;
        return Some((u.into(), p.into()));
    }
    None
}

/// The registry host of an image reference (`docker.io` for short names).
pub fn image_registry(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writer_swaps_content() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = BTreeMap::from([
            ("a".to_string(), (b"one".to_vec(), 0o644)),
            ("b".to_string(), (b"x".to_vec(), 0o600)),
        ]);
        write_atomic(dir.path(), &files).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"one");
        assert_eq!(
            std::fs::metadata(dir.path().join("b"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        files.insert("a".into(), (b"two".to_vec(), 0o644));
        files.remove("b");
        write_atomic(dir.path(), &files).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"two");
        assert!(!dir.path().join("b").exists());
        // Only the current timestamped directory is left.
        let stamps = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.starts_with("..") && n != "..data"
            })
            .count();
        assert_eq!(stamps, 1);
    }

    #[test]
    fn registry_credentials() {
        let config = br#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpwYXNz"},"https://index.docker.io/v1/":{"username":"d","password":"p"}}}"#;
        assert_eq!(
            registry_auth(config, "127.0.0.1:5000/app:1"),
            Some(("user".into(), "pass".into()))
        );
        assert_eq!(
            registry_auth(config, "busybox:1.36"),
            Some(("d".into(), "p".into()))
        );
        assert_eq!(registry_auth(config, "quay.io/x/y"), None);
    }
}
