//! Built-in admission plugins, as kube-apiserver's of the same names:
//!
//! - [`NamespaceLifecycle`] (first): no content in missing or terminating namespaces, the
//!   initial namespaces are never deleted (`namespace_lifecycle.rs`).
//! - [`LimitRanger`] (mutating and validating, pods and claims): LimitRange defaults and
//!   bounds (`limit_ranger.rs`).
//! - [`ServiceAccount`] (mutating, pods): `serviceAccountName` defaults to `default`, and
//!   unless `automountServiceAccountToken: false` the pod gets the projected
//!   `kube-api-access-*` volume (token, CA, namespace) mounted in every container.
//! - [`PodSecurity`] (validating, pods): the Pod Security Standards level a namespace's
//!   `pod-security.kubernetes.io/enforce` label names (`privileged`, `baseline`,
//!   `restricted`); a pod that violates it is 403 with kube's list of violations.
//! - [`ResourceQuota`] (validating, last): usage checked against and charged to the
//!   namespace's ResourceQuotas (`resource_quota/`).

use std::sync::Arc;

use raft_store::StoreNode;
use serde_json::{json, Value};

pub use super::limit_ranger::LimitRanger;
pub use super::namespace_lifecycle::NamespaceLifecycle;
pub use super::resource_quota::ResourceQuota;
use super::{Admission, Attributes, Operation, Step};
use crate::api_error::{ApiError, Subject};

fn is_pod_create(attrs: &Attributes) -> bool {
    attrs.kind.group.is_empty()
        && attrs.kind.resource == "pods"
        && attrs.subresource.is_none()
        && attrs.operation == Operation::Create
}

const TOKEN_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The ServiceAccount admission plugin.
pub struct ServiceAccount;

impl ServiceAccount {
    fn admit(pod: &mut Value) {
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
        let account = match spec.get("serviceAccountName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(name) => name.to_string(),
            None => "default".to_string(),
        };
        spec.insert("serviceAccountName".into(), json!(account));
        spec.insert("serviceAccount".into(), json!(account));
        if spec.get("automountServiceAccountToken").and_then(Value::as_bool) == Some(false) {
            return;
        }
        let mounted = |c: &Value| {
            let mounts = c.get("volumeMounts").and_then(Value::as_array);
            mounts.into_iter().flatten().any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT))
        };
        let containers = ["containers", "initContainers"];
        let needs_mount = containers
            .iter()
            .filter_map(|list| spec.get(*list).and_then(Value::as_array))
            .flatten()
            .any(|c| !mounted(c));
        if !needs_mount {
            return;
        }
        let suffix: String = crate::objects::new_uid().chars().filter(char::is_ascii_alphanumeric).take(5).collect();
        let volume_name = format!("kube-api-access-{suffix}");
        let volume = json!({
            "name": volume_name,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ],
            },
        });
        match spec.get_mut("volumes").and_then(Value::as_array_mut) {
            Some(volumes) => volumes.push(volume),
            None => {
                spec.insert("volumes".into(), json!([volume]));
            }
        }
        for list in containers {
            let Some(items) = spec.get_mut(list).and_then(Value::as_array_mut) else { continue };
            for c in items.iter_mut().filter(|c| !mounted(c)) {
                let Some(c) = c.as_object_mut() else { continue };
                let mount = json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT});
                match c.get_mut("volumeMounts").and_then(Value::as_array_mut) {
                    Some(mounts) => mounts.push(mount),
                    None => {
                        c.insert("volumeMounts".into(), json!([mount]));
                    }
                }
            }
        }
    }
}

impl Admission for ServiceAccount {
    fn mutate<'a>(&'a self, attrs: &'a Attributes, obj: &'a mut Value, _old: Option<&'a Value>) -> Step<'a> {
        Box::pin(async move {
            if is_pod_create(attrs) {
                ServiceAccount::admit(obj);
            }
            Ok(Vec::new())
        })
    }

    fn validate<'a>(&'a self, _: &'a Attributes, _: &'a Value, _: Option<&'a Value>) -> Step<'a> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// The Pod Security Standards levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// Capabilities the baseline level allows adding.
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];
/// Volume types the restricted level allows.
const RESTRICTED_VOLUMES: &[&str] =
    &["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];

fn containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|l| spec.get(*l).and_then(Value::as_array))
        .flatten()
        .collect()
}

fn names_where(spec: &Value, bad: impl Fn(&Value) -> bool) -> Vec<String> {
    let names = containers(spec).into_iter().filter(|c| bad(c));
    names.map(|c| format!("{:?}", c.get("name").and_then(Value::as_str).unwrap_or(""))).collect()
}

/// One violation in kube's words: `check (detail)`.
fn violation(check: &str, names: &[String], detail: &str) -> Option<String> {
    if names.is_empty() {
        return None;
    }
    let noun = if names.len() == 1 { "container" } else { "containers" };
    Some(format!("{check} ({noun} {} {detail})", names.join(", ")))
}

/// What a pod spec breaks of `level`, in kube's wording and order.
pub fn violations(spec: &Value, level: Level) -> Vec<String> {
    let mut out = Vec::new();
    if level == Level::Privileged {
        return out;
    }
    let sc = |c: &Value, field: &str| c.pointer(&format!("/securityContext/{field}")).cloned();
    let host: Vec<&str> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|f| spec.get(*f).and_then(Value::as_bool) == Some(true))
        .collect();
    if !host.is_empty() {
        out.push(format!(
            "host namespaces ({})",
            host.iter().map(|h| format!("{h}=true")).collect::<Vec<_>>().join(", ")
        ));
    }
    let privileged = names_where(spec, |c| sc(c, "privileged").and_then(|v| v.as_bool()) == Some(true));
    out.extend(violation("privileged", &privileged, "must not set securityContext.privileged=true"));
    let added = |c: &Value| -> Vec<String> {
        let caps = c.pointer("/securityContext/capabilities/add").and_then(Value::as_array);
        caps.into_iter().flatten().filter_map(Value::as_str).map(String::from).collect()
    };
    let bad_caps = names_where(spec, |c| added(c).iter().any(|cap| !BASELINE_CAPABILITIES.contains(&cap.as_str())));
    out.extend(violation(
        "non-default capabilities",
        &bad_caps,
        "must not include non-default capabilities in securityContext.capabilities.add",
    ));
    let host_path: Vec<String> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("hostPath").is_some())
        .map(|v| format!("{:?}", v.get("name").and_then(Value::as_str).unwrap_or("")))
        .collect();
    if !host_path.is_empty() {
        out.push(format!("hostPath volumes (volume {})", host_path.join(", ")));
    }
    let host_ports = names_where(spec, |c| {
        let ports = c.get("ports").and_then(Value::as_array);
        ports.into_iter().flatten().any(|p| p.get("hostPort").and_then(Value::as_i64).is_some_and(|h| h != 0))
    });
    out.extend(violation("hostPort", &host_ports, "uses hostPorts"));
    if level < Level::Restricted {
        return out;
    }
    let restricted_volumes: Vec<String> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| {
            v.as_object().is_some_and(|m| m.keys().any(|k| k != "name" && !RESTRICTED_VOLUMES.contains(&k.as_str())))
        })
        .map(|v| format!("{:?}", v.get("name").and_then(Value::as_str).unwrap_or("")))
        .collect();
    if !restricted_volumes.is_empty() {
        out.push(format!(
            "restricted volume types (volume {} uses a restricted volume type)",
            restricted_volumes.join(", ")
        ));
    }
    let escalation = names_where(spec, |c| sc(c, "allowPrivilegeEscalation").and_then(|v| v.as_bool()) != Some(false));
    out.extend(violation(
        "allowPrivilegeEscalation != false",
        &escalation,
        "must set securityContext.allowPrivilegeEscalation=false",
    ));
    let drops_all = |c: &Value| {
        let drop = c.pointer("/securityContext/capabilities/drop").and_then(Value::as_array);
        drop.into_iter().flatten().any(|d| d.as_str() == Some("ALL"))
    };
    let not_dropped = names_where(spec, |c| !drops_all(c));
    out.extend(violation(
        "unrestricted capabilities",
        &not_dropped,
        "must set securityContext.capabilities.drop=[\"ALL\"]",
    ));
    let pod_non_root = spec.pointer("/securityContext/runAsNonRoot").and_then(Value::as_bool) == Some(true);
    let root = names_where(spec, |c| match sc(c, "runAsNonRoot").and_then(|v| v.as_bool()) {
        Some(v) => !v,
        None => !pod_non_root,
    });
    if !root.is_empty() {
        out.push(format!("runAsNonRoot != true (pod or {} must set securityContext.runAsNonRoot=true)", {
            let noun = if root.len() == 1 { "container" } else { "containers" };
            format!("{noun} {}", root.join(", "))
        }));
    }
    let pod_seccomp = spec.pointer("/securityContext/seccompProfile/type").and_then(Value::as_str);
    let seccomp_ok = |t: Option<&str>| matches!(t, Some("RuntimeDefault" | "Localhost"));
    let no_seccomp = names_where(spec, |c| {
        let own = c.pointer("/securityContext/seccompProfile/type").and_then(Value::as_str);
        !seccomp_ok(own.or(pod_seccomp))
    });
    if !no_seccomp.is_empty() {
        let noun = if no_seccomp.len() == 1 { "container" } else { "containers" };
        out.push(format!(
            "seccompProfile (pod or {noun} {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
            no_seccomp.join(", ")
        ));
    }
    out
}

/// The PodSecurity admission plugin (enforce mode).
pub struct PodSecurity {
    pub node: StoreNode,
}

impl PodSecurity {
    async fn level_of(&self, namespace: &str) -> Option<Level> {
        let kind = crate::kinds::find("", "v1", "namespaces")?;
        let ns = crate::object_store::get(&self.node, kind, None, namespace).await.ok()?;
        let label = ns.pointer("/metadata/labels/pod-security.kubernetes.io~1enforce")?.as_str()?;
        Level::parse(label)
    }
}

impl Admission for PodSecurity {
    fn mutate<'a>(&'a self, _: &'a Attributes, _: &'a mut Value, _: Option<&'a Value>) -> Step<'a> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn validate<'a>(&'a self, attrs: &'a Attributes, obj: &'a Value, _old: Option<&'a Value>) -> Step<'a> {
        Box::pin(async move {
            if !is_pod_create(attrs) {
                return Ok(Vec::new());
            }
            let Some(ns) = attrs.namespace.as_deref() else { return Ok(Vec::new()) };
            let Some(level) = self.level_of(ns).await else { return Ok(Vec::new()) };
            let found = violations(obj.get("spec").unwrap_or(&Value::Null), level);
            if found.is_empty() {
                return Ok(Vec::new());
            }
            let why = format!("violates PodSecurity \"{}:latest\": {}", level.name(), found.join(", "));
            Err(ApiError::Forbidden { subject: Subject::of(attrs.kind, attrs.name.clone()), why, causes: Vec::new() })
        })
    }
}

/// The built-in plugins, in kube-apiserver's order. ResourceQuota charges the quota, so
/// it stays last: whatever could still refuse the write (validating webhooks too) goes
/// before it.
pub fn chain(node: StoreNode) -> super::Chain {
    chain_with_webhooks(node, Arc::new(super::Chain::default()))
}

/// [`chain`] with `webhooks` (the gateway's admission webhook dispatch) in kube's place:
/// after the other plugins (mutating webhooks after built-in mutation, validating webhooks
/// after built-in validation), before ResourceQuota.
pub fn chain_with_webhooks(node: StoreNode, webhooks: Arc<dyn Admission>) -> super::Chain {
    super::Chain::new(vec![
        Arc::new(NamespaceLifecycle { node: node.clone() }),
        Arc::new(LimitRanger { node: node.clone() }),
        Arc::new(ServiceAccount),
        Arc::new(PodSecurity { node: node.clone() }),
        webhooks,
        Arc::new(ResourceQuota { node }),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_accounts_and_their_token_volume_are_added() {
        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "x"}]}});
        ServiceAccount::admit(&mut pod);
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        let volume = pod["spec"]["volumes"][0]["name"].as_str().unwrap();
        assert!(volume.starts_with("kube-api-access-"));
        assert_eq!(pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"], TOKEN_MOUNT);
        let mut opted_out = json!({"spec": {"automountServiceAccountToken": false, "containers": [{"name": "c"}]}});
        ServiceAccount::admit(&mut opted_out);
        assert!(opted_out["spec"].get("volumes").is_none());
    }

    #[test]
    fn pod_security_levels_list_kubes_violations() {
        let privileged =
            json!({"containers": [{"name": "c", "securityContext": {"privileged": true}}], "hostNetwork": true});
        assert_eq!(violations(&privileged, Level::Privileged), Vec::<String>::new());
        assert_eq!(
            violations(&privileged, Level::Baseline),
            [
                "host namespaces (hostNetwork=true)",
                "privileged (container \"c\" must not set securityContext.privileged=true)"
            ]
        );
        let plain = json!({"containers": [{"name": "c"}]});
        assert!(violations(&plain, Level::Baseline).is_empty());
        let restricted = violations(&plain, Level::Restricted);
        assert_eq!(restricted.len(), 4, "{restricted:?}");
        assert!(restricted[0].starts_with("allowPrivilegeEscalation != false"));
        let hardened = json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
        });
        assert!(violations(&hardened, Level::Restricted).is_empty());
    }
}
