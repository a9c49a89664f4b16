//! Pod volumes on the node's disk (kubelet's volume manager, for the volume kinds that need
//! no storage system): emptyDir, hostPath, configMap, secret, downwardAPI and projected
//! (the ServiceAccount admission's `kube-api-access-*` volume, its token from [`super::tokens`]).
//! Each lives under
//! `{pods_dir}/{uid}/volumes/{name}` and is bind-mounted into the containers that ask.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod, Volume};

use super::env::{field, Sources};

/// Why a pod's volumes cannot be set up (kubelet: `FailedMount`).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("configmap \"{0}\" not found")]
    ConfigMapMissing(String),
    #[error("secret \"{0}\" not found")]
    SecretMissing(String),
    #[error("volume {volume}: {what} {path}: {source}")]
    Io {
        volume: String,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("volume {0} of a kind this node cannot mount")]
    Unsupported(String),
    #[error("container mounts volume \"{0}\", which the pod does not define")]
    Undefined(String),
    #[error("volume {0}: no ServiceAccount token yet")]
    TokenMissing(String),
}

/// The ConfigMaps and Secrets the pod's volumes read.
pub fn references(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let (mut maps, mut secrets) = (Vec::new(), Vec::new());
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        maps.extend(v.config_map.as_ref().map(|c| c.name.clone()));
        secrets.extend(v.secret.as_ref().and_then(|s| s.secret_name.clone()));
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            maps.extend(source.config_map.as_ref().map(|c| c.name.clone()));
            secrets.extend(source.secret.as_ref().map(|s| s.name.clone()));
        }
    }
    maps.sort();
    maps.dedup();
    secrets.sort();
    secrets.dedup();
    (maps, secrets)
}

/// One file a volume holds: relative path, content, mode.
type File = (String, Vec<u8>, u32);

fn pick(data: BTreeMap<String, Vec<u8>>, items: Option<&Vec<KeyToPath>>, mode: u32) -> Vec<File> {
    match items {
        Some(items) => items
            .iter()
            .filter_map(|i| Some((i.path.clone(), data.get(&i.key)?.clone(), i.mode.map_or(mode, |m| m as u32))))
            .collect(),
        None => data.into_iter().map(|(k, v)| (k, v, mode)).collect(),
    }
}

fn config_map_files(sources: &Sources, name: &str, items: Option<&Vec<KeyToPath>>, mode: u32) -> Option<Vec<File>> {
    let map = sources.config_maps.get(name)?;
    let mut data: BTreeMap<String, Vec<u8>> =
        map.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
    data.extend(map.binary_data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())));
    Some(pick(data, items, mode))
}

fn secret_files(sources: &Sources, name: &str, items: Option<&Vec<KeyToPath>>, mode: u32) -> Option<Vec<File>> {
    let secret = sources.secrets.get(name)?;
    let mut data: BTreeMap<String, Vec<u8>> =
        secret.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    data.extend(secret.string_data.iter().flatten().map(|(k, v)| (k.clone(), v.clone().into_bytes())));
    Some(pick(data, items, mode))
}

fn downward_files(pod: &Pod, items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile], mode: u32) -> Vec<File> {
    let pod_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
    let host_ip = pod.status.as_ref().and_then(|s| s.host_ip.clone()).unwrap_or_default();
    items
        .iter()
        .filter_map(|item| {
            let value = match &item.field_ref {
                Some(f) if f.field_path == "metadata.labels" || f.field_path == "metadata.annotations" => {
                    let map = if f.field_path == "metadata.labels" {
                        &pod.metadata.labels
                    } else {
                        &pod.metadata.annotations
                    };
                    map.iter().flatten().map(|(k, v)| format!("{k}={v:?}\n")).collect()
                }
                Some(f) => field(pod, &f.field_path, &pod_ip, &host_ip).ok()?,
                None => return None,
            };
            Some((item.path.clone(), value.into_bytes(), item.mode.map_or(mode, |m| m as u32)))
        })
        .collect()
}

/// The files of a configMap/secret/downwardAPI/projected volume; `None` for other kinds.
fn files(pod: &Pod, volume: &Volume, sources: &Sources) -> Result<Option<Vec<File>>, VolumeError> {
    if let Some(c) = &volume.config_map {
        let mode = c.default_mode.unwrap_or(0o644) as u32;
        return match config_map_files(sources, &c.name, c.items.as_ref(), mode) {
            Some(files) => Ok(Some(files)),
            None if c.optional == Some(true) => Ok(Some(Vec::new())),
            None => Err(VolumeError::ConfigMapMissing(c.name.clone())),
        };
    }
    if let Some(s) = &volume.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let mode = s.default_mode.unwrap_or(0o644) as u32;
        return match secret_files(sources, &name, s.items.as_ref(), mode) {
            Some(files) => Ok(Some(files)),
            None if s.optional == Some(true) => Ok(Some(Vec::new())),
            None => Err(VolumeError::SecretMissing(name)),
        };
    }
    if let Some(d) = &volume.downward_api {
        let mode = d.default_mode.unwrap_or(0o644) as u32;
        return Ok(Some(downward_files(pod, d.items.as_deref().unwrap_or_default(), mode)));
    }
    if let Some(p) = &volume.projected {
        let mode = p.default_mode.unwrap_or(0o644) as u32;
        let mut all = Vec::new();
        for source in p.sources.iter().flatten() {
            if let Some(c) = &source.config_map {
                match config_map_files(sources, &c.name, c.items.as_ref(), mode) {
                    Some(files) => all.extend(files),
                    None if c.optional == Some(true) => {}
                    None => return Err(VolumeError::ConfigMapMissing(c.name.clone())),
                }
            }
            if let Some(s) = &source.secret {
                match secret_files(sources, &s.name, s.items.as_ref(), mode) {
                    Some(files) => all.extend(files),
                    None if s.optional == Some(true) => {}
                    None => return Err(VolumeError::SecretMissing(s.name.clone())),
                }
            }
            if let Some(d) = &source.downward_api {
                all.extend(downward_files(pod, d.items.as_deref().unwrap_or_default(), mode));
            }
            if let Some(t) = &source.service_account_token {
                let token = sources.tokens.get(&(volume.name.clone(), t.path.clone()));
                let token = token.ok_or_else(|| VolumeError::TokenMissing(volume.name.clone()))?;
                all.push((t.path.clone(), token.clone().into_bytes(), mode));
            }
        }
        return Ok(Some(all));
    }
    Ok(None)
}

/// Sets up every volume of `pod` under `pod_dir` and returns its host path by name.
pub fn prepare(pod: &Pod, pod_dir: &Path, sources: &Sources) -> Result<HashMap<String, PathBuf>, VolumeError> {
    let mut paths = HashMap::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let name = volume.name.clone();
        let io = |what, path: &Path| {
            let (volume, path) = (name.clone(), path.to_path_buf());
            move |source| VolumeError::Io { volume, what, path, source }
        };
        let dir = pod_dir.join("volumes").join(&volume.name);
        if let Some(host) = &volume.host_path {
            let path = PathBuf::from(&host.path);
            if matches!(host.type_.as_deref(), Some("DirectoryOrCreate")) {
                std::fs::create_dir_all(&path).map_err(io("creating", &path))?;
            }
            paths.insert(name, path);
        } else if volume.empty_dir.is_some() {
            std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).map_err(io("chmod", &dir))?;
            paths.insert(name, dir);
        } else if let Some(files) = files(pod, volume, sources)? {
            std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
            for (relative, data, mode) in files {
                write_file(&volume.name, &dir, &relative, &data, mode)?;
            }
            paths.insert(name, dir);
        } else {
            return Err(VolumeError::Unsupported(name));
        }
    }
    Ok(paths)
}

/// Writes one file of volume `volume` (directory `dir`) whole: through a staged file and a
/// rename, so a container reading it sees the old content or the new, never a part.
pub fn write_file(volume: &str, dir: &Path, relative: &str, data: &[u8], mode: u32) -> Result<(), VolumeError> {
    let io = |what, path: &Path| {
        let (volume, path) = (volume.to_string(), path.to_path_buf());
        move |source| VolumeError::Io { volume, what, path, source }
    };
    // Paths are validated by the API server (no `..`); stay inside anyway.
    if relative.split('/').any(|part| part == "..") {
        return Ok(());
    }
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    let staged = path.with_extension("flotilla-new");
    std::fs::write(&staged, data).map_err(io("writing", &staged))?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode & 0o777)).map_err(io("chmod", &staged))?;
    std::fs::rename(&staged, &path).map_err(io("writing", &path))
}

/// The CRI mounts of `container`'s volumeMounts.
pub fn mounts(container: &Container, paths: &HashMap<String, PathBuf>) -> Result<Vec<cri::Mount>, VolumeError> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            let base = paths.get(&m.name).ok_or_else(|| VolumeError::Undefined(m.name.clone()))?;
            let host = match m.sub_path.as_deref().filter(|s| !s.is_empty() && !s.split('/').any(|p| p == "..")) {
                Some(sub) => {
                    let path = base.join(sub);
                    if !path.exists() {
                        std::fs::create_dir_all(&path).map_err(|source| VolumeError::Io {
                            volume: m.name.clone(),
                            what: "creating",
                            path: path.clone(),
                            source,
                        })?;
                    }
                    path
                }
                None => base.clone(),
            };
            Ok(cri::Mount {
                container_path: m.mount_path.clone(),
                host_path: host.display().to_string(),
                readonly: m.read_only.unwrap_or(false),
                ..Default::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    use super::*;

    #[test]
    fn volumes_are_written_and_mounted() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "labels": {"a": "b"}},
            "spec": {
                "containers": [{"name": "c", "volumeMounts": [
                    {"name": "cache", "mountPath": "/cache"},
                    {"name": "conf", "mountPath": "/etc/conf", "readOnly": true},
                    {"name": "info", "mountPath": "/info"},
                    {"name": "api", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}],
                "volumes": [
                    {"name": "cache", "emptyDir": {}},
                    {"name": "conf", "configMap": {"name": "cm", "items": [{"key": "k", "path": "dir/file"}]}},
                    {"name": "info", "downwardAPI": {"items": [
                        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    {"name": "api", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token"}},
                        {"configMap": {"name": "cm", "items": [{"key": "k", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}]}}))
        .unwrap();
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"k": "v"}})).unwrap();
        let token = (("api".to_string(), "token".to_string()), "jwt".to_string());
        let sources = Sources {
            config_maps: HashMap::from([("cm".to_string(), cm.clone())]),
            tokens: HashMap::from([token]),
            ..Sources::default()
        };
        assert_eq!(references(&pod).0, ["cm"]);
        let dir = tempfile::tempdir().unwrap();
        let paths = prepare(&pod, dir.path(), &sources).unwrap();
        let read = |v: &str, f: &str| std::fs::read_to_string(paths[v].join(f)).unwrap();
        assert_eq!(read("conf", "dir/file"), "v");
        assert_eq!(read("info", "name"), "web");
        assert_eq!(read("info", "labels"), "a=\"b\"\n");
        assert_eq!(read("api", "ca.crt"), "v");
        assert_eq!(read("api", "namespace"), "shop");
        assert_eq!(read("api", "token"), "jwt");
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let mounts = mounts(container, &paths).unwrap();
        assert_eq!(mounts.len(), 4);
        assert!(mounts[1].readonly);
        assert!(Path::new(&mounts[0].host_path).is_dir());
        // A missing ConfigMap fails the pod's volumes, as kubelet's FailedMount.
        let err = prepare(&pod, dir.path(), &Sources::default()).unwrap_err();
        assert_eq!(err.to_string(), "configmap \"cm\" not found");
        // So does a token not (yet) got.
        let no_token = Sources { config_maps: HashMap::from([("cm".to_string(), cm)]), ..Sources::default() };
        let err = prepare(&pod, dir.path(), &no_token).unwrap_err();
        assert_eq!(err.to_string(), "volume api: no ServiceAccount token yet");
    }
}
