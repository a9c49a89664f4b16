//! A container's environment (kubelet's `makeEnvironmentVariables`): `envFrom` first, then
//! `env` in order, each value expanded against what came before; `valueFrom` reads the pod's
//! fields, its resources, ConfigMaps and Secrets (fetched by the caller into [`Sources`]).
//! Before them, the Services' variables ([`service_variables`]: `KUBERNETES_SERVICE_HOST`
//! and the rest), which `env` and `envFrom` override and `$(VAR)` references see.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};

use super::config::expand;
use crate::quantity;

/// The ConfigMaps and Secrets of the pod's namespace a container refers to (absent ones are
/// simply not in the maps), and the pod's projected ServiceAccount tokens by volume and path.
#[derive(Debug, Default)]
pub struct Sources {
    pub config_maps: HashMap<String, ConfigMap>,
    pub secrets: HashMap<String, Secret>,
    pub tokens: HashMap<super::tokens::TokenKey, String>,
    /// The Services whose variables the containers get (kubelet's `getServiceEnvVarMap`):
    /// the namespace's unless `enableServiceLinks: false`, and always `default/kubernetes`.
    pub services: Vec<Service>,
}

/// kubelet's Service variables (`envvars.FromServices`) for each Service with a cluster IP,
/// named after it (upper case, `-` as `_`): `{NAME}_SERVICE_HOST`, `{NAME}_SERVICE_PORT` (the
/// first port), `{NAME}_SERVICE_PORT_{PORT_NAME}` per named port, and Docker's link
/// variables `{NAME}_PORT` (`tcp://ip:port` of the first port) and per port
/// `{NAME}_PORT_{port}_{PROTO}` with its `_PROTO`, `_PORT` and `_ADDR`.
pub fn service_variables(services: &[Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut services: Vec<&Service> = services.iter().collect();
    services.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    services.dedup_by(|a, b| a.metadata.name == b.metadata.name);
    for service in services {
        let Some(spec) = &service.spec else { continue };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let upper = |s: &str| s.to_uppercase().replace('-', "_");
        let name = upper(service.metadata.name.as_deref().unwrap_or_default());
        let ports = spec.ports.as_deref().unwrap_or_default();
        out.push((format!("{name}_SERVICE_HOST"), ip.clone()));
        let Some(first) = ports.first() else { continue };
        out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        for port in ports {
            if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((format!("{name}_SERVICE_PORT_{}", upper(port_name)), port.port.to_string()));
            }
        }
        let host_port = |port: i32| if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") };
        let protocol = |p: &k8s_openapi::api::core::v1::ServicePort| p.protocol.as_deref().unwrap_or("TCP").to_string();
        out.push((format!("{name}_PORT"), format!("{}://{}", protocol(first).to_lowercase(), host_port(first.port))));
        for port in ports {
            let proto = protocol(port);
            let prefix = format!("{name}_PORT_{}_{}", port.port, proto.to_uppercase());
            out.push((prefix.clone(), format!("{}://{}", proto.to_lowercase(), host_port(port.port))));
            out.push((format!("{prefix}_PROTO"), proto.to_lowercase()));
            out.push((format!("{prefix}_PORT"), port.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.clone()));
        }
    }
    out
}

/// Why a container's environment cannot be made (kubelet: `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("configmap \"{0}\" not found")]
    ConfigMapMissing(String),
    #[error("secret \"{0}\" not found")]
    SecretMissing(String),
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    KeyMissing { kind: &'static str, namespace: String, name: String, key: String },
    #[error("unsupported fieldPath: {0}")]
    FieldPath(String),
}

/// The names of the ConfigMaps and Secrets `container` reads.
pub fn references(container: &Container) -> (Vec<String>, Vec<String>) {
    let (mut maps, mut secrets) = (Vec::new(), Vec::new());
    for from in container.env_from.iter().flatten() {
        maps.extend(from.config_map_ref.as_ref().map(|r| r.name.clone()));
        secrets.extend(from.secret_ref.as_ref().map(|r| r.name.clone()));
    }
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else { continue };
        maps.extend(from.config_map_key_ref.as_ref().map(|r| r.name.clone()));
        secrets.extend(from.secret_key_ref.as_ref().map(|r| r.name.clone()));
    }
    maps.sort();
    maps.dedup();
    secrets.sort();
    secrets.dedup();
    (maps, secrets)
}

fn secret_data(secret: &Secret) -> BTreeMap<String, String> {
    let mut data: BTreeMap<String, String> =
        secret.data.iter().flatten().map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned())).collect();
    data.extend(secret.string_data.clone().unwrap_or_default());
    data
}

/// A `fieldRef` value (the downward API's pod fields).
pub fn field(pod: &Pod, path: &str, pod_ip: &str, host_ip: &str) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let from_map = |map: &Option<BTreeMap<String, String>>, prefix: &str| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    if let Some(v) = from_map(&meta.labels, "metadata.labels['") {
        return Ok(v);
    }
    if let Some(v) = from_map(&meta.annotations, "metadata.annotations['") {
        return Ok(v);
    }
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        other => return Err(EnvError::FieldPath(other.to_string())),
    })
}

/// A `resourceFieldRef` value, in the divisor's units (default 1 core / 1 byte), rounded up.
fn resource(container: &Container, resource: &str, divisor: Option<&str>) -> String {
    let (list, name) = match resource.split_once('.') {
        Some(("limits", name)) => (container.resources.as_ref().and_then(|r| r.limits.as_ref()), name),
        Some(("requests", name)) => (container.resources.as_ref().and_then(|r| r.requests.as_ref()), name),
        _ => return String::new(),
    };
    let raw = list.and_then(|l| l.get(name)).map(|q| q.0.as_str());
    if name == "cpu" {
        let millis = raw.and_then(|q| quantity::parse_cpu(q).ok()).unwrap_or(0);
        let divisor = divisor.and_then(|d| quantity::parse_cpu(d).ok()).filter(|d| *d > 0).unwrap_or(1000);
        millis.div_ceil(divisor).to_string()
    } else {
        let bytes = raw.and_then(|q| quantity::parse_memory(q).ok()).unwrap_or(0);
        let divisor = divisor.and_then(|d| quantity::parse_memory(d).ok()).filter(|d| *d > 0).unwrap_or(1);
        bytes.div_ceil(divisor).to_string()
    }
}

/// The container's environment, in order (a later name overrides an earlier one).
pub fn resolve(
    pod: &Pod,
    container: &Container,
    sources: &Sources,
    pod_ip: &str,
    host_ip: &str,
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut env: Vec<(String, String)> = service_variables(&sources.services);
    let set = |env: &mut Vec<(String, String)>, key: String, value: String| {
        env.retain(|(k, _)| *k != key);
        env.push((key, value));
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.config_maps.get(&r.name) {
                Some(map) => {
                    for (k, v) in map.data.iter().flatten() {
                        set(&mut env, format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::ConfigMapMissing(r.name.clone())),
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secrets.get(&r.name) {
                Some(secret) => {
                    for (k, v) in secret_data(secret) {
                        set(&mut env, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::SecretMissing(r.name.clone())),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(from)) => {
                if let Some(f) = &from.field_ref {
                    field(pod, &f.field_path, pod_ip, host_ip)?
                } else if let Some(r) = &from.resource_field_ref {
                    resource(container, &r.resource, r.divisor.as_ref().map(|d| d.0.as_str()))
                } else if let Some(r) = &from.config_map_key_ref {
                    let optional = r.optional == Some(true);
                    match sources.config_maps.get(&r.name).map(|m| m.data.as_ref().and_then(|d| d.get(&r.key))) {
                        Some(Some(v)) => v.clone(),
                        _ if optional => continue,
                        None => return Err(EnvError::ConfigMapMissing(r.name.clone())),
                        Some(None) => {
                            return Err(EnvError::KeyMissing {
                                kind: "configmap",
                                namespace,
                                name: r.name.clone(),
                                key: r.key.clone(),
                            })
                        }
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let optional = r.optional == Some(true);
                    match sources.secrets.get(&r.name).map(|s| secret_data(s).remove(&r.key)) {
                        Some(Some(v)) => v,
                        _ if optional => continue,
                        None => return Err(EnvError::SecretMissing(r.name.clone())),
                        Some(None) => {
                            return Err(EnvError::KeyMissing {
                                kind: "secret",
                                namespace,
                                name: r.name.clone(),
                                key: r.key.clone(),
                            })
                        }
                    }
                } else {
                    String::new()
                }
            }
            (Some(value), None) => expand(value, &env),
            (None, None) => String::new(),
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "labels": {"tier": "front"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "a",
                "resources": {"limits": {"memory": "64Mi", "cpu": "1500m"}},
                "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                "env": [
                    {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
                    {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "GREETING", "value": "hi $(NAME) at $(CM_color)"},
                    {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "password"}}},
                    {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}},
                ]}]},
        }))
        .unwrap()
    }

    fn sources() -> Sources {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"color": "blue"}})).unwrap();
        let secret: Secret =
            serde_json::from_value(json!({"metadata": {"name": "s"}, "data": {"password": "aHVudGVyMg=="}})).unwrap();
        Sources {
            config_maps: HashMap::from([("cm".to_string(), cm)]),
            secrets: HashMap::from([("s".to_string(), secret)]),
            ..Sources::default()
        }
    }

    #[test]
    fn services_give_kubelets_variables_which_env_overrides() {
        let service = |name: &str, ip: &str, ports: serde_json::Value| -> Service {
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"clusterIP": ip, "ports": ports}}))
                .unwrap()
        };
        let services = vec![
            service("kubernetes", "10.96.0.1", json!([{"name": "https", "port": 443, "protocol": "TCP"}])),
            service("my-db", "10.96.0.9", json!([{"port": 5432}, {"name": "dns-udp", "port": 53, "protocol": "UDP"}])),
            service("headless", "None", json!([{"port": 80}])),
        ];
        let vars: HashMap<String, String> = service_variables(&services).into_iter().collect();
        assert_eq!(vars["KUBERNETES_SERVICE_HOST"], "10.96.0.1");
        assert_eq!(vars["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(vars["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(vars["KUBERNETES_PORT"], "tcp://10.96.0.1:443");
        assert_eq!(vars["KUBERNETES_PORT_443_TCP"], "tcp://10.96.0.1:443");
        assert_eq!(vars["KUBERNETES_PORT_443_TCP_PROTO"], "tcp");
        assert_eq!(vars["KUBERNETES_PORT_443_TCP_PORT"], "443");
        assert_eq!(vars["KUBERNETES_PORT_443_TCP_ADDR"], "10.96.0.1");
        assert_eq!(vars["MY_DB_SERVICE_PORT"], "5432");
        assert_eq!(vars["MY_DB_SERVICE_PORT_DNS_UDP"], "53");
        assert_eq!(vars["MY_DB_PORT_53_UDP"], "udp://10.96.0.9:53");
        assert!(!vars.keys().any(|k| k.starts_with("HEADLESS")), "{vars:?}");
        assert_eq!(vars.len(), 8 + 12, "{vars:?}");

        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "env": [
                {"name": "KUBERNETES_SERVICE_HOST", "value": "mine"},
                {"name": "URL", "value": "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"}]}]}}))
        .unwrap();
        let sources = Sources { services, ..Sources::default() };
        let env: HashMap<String, String> =
            resolve(&pod, &pod.spec.as_ref().unwrap().containers[0], &sources, "", "").unwrap().into_iter().collect();
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "mine");
        assert_eq!(env["URL"], "https://mine:443");
        assert_eq!(env["KUBERNETES_PORT"], "tcp://10.96.0.1:443");
    }

    #[test]
    fn every_kind_of_value_resolves() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        assert_eq!(references(c), (vec!["cm".to_string()], vec!["nope".to_string(), "s".to_string()]));
        let env: HashMap<String, String> =
            resolve(&p, c, &sources(), "10.0.0.7", "192.168.1.1").unwrap().into_iter().collect();
        assert_eq!(env["CM_color"], "blue");
        assert_eq!(env["NAME"], "web");
        assert_eq!(env["TIER"], "front");
        assert_eq!(env["IP"], "10.0.0.7");
        assert_eq!(env["MEM"], "64");
        assert_eq!(env["CPU"], "2");
        assert_eq!(env["GREETING"], "hi web at blue");
        assert_eq!(env["PASS"], "hunter2");
        assert!(!env.contains_key("OPT"));
    }

    #[test]
    fn a_missing_source_is_an_error_kubelet_would_report() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let err = resolve(&p, c, &Sources::default(), "", "").unwrap_err();
        assert_eq!(err.to_string(), "configmap \"cm\" not found");
    }
}
