//! What CRI is asked to create for a pod: the sandbox config and each container's config,
//! from the pod spec (kubelet's `generatePodSandboxConfig` / `generateContainerConfig`).
//! Env values and volume paths come in resolved; this module only translates.

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity;

pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Marks what this agent created, so `agent reset` and orphan cleanup touch nothing else.
pub const LABEL_MANAGED: &str = "io.flotilla.managed";
/// cgroupfs parent of every pod (notes/runtime.md: plain parents on this machine kind).
pub const CGROUP_ROOT: &str = "/flotilla-pods";
/// CFS period kubelet uses.
const CPU_PERIOD: i64 = 100_000;

pub fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}
pub fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}
pub fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

pub fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

/// The directory, under the node's pod log dir, of this pod's container logs.
pub fn log_directory(pod_logs: &str, pod: &Pod) -> String {
    format!("{pod_logs}/{}_{}_{}", namespace(pod), name(pod), uid(pod))
}

/// A container's log file, relative to the pod's log directory: kubelet's layout.
pub fn log_path(container: &str, attempt: u32) -> String {
    format!("{container}/{attempt}.log")
}

fn namespaces(pod: &Pod) -> cri::NamespaceOption {
    let spec = pod.spec.as_ref();
    let mode = |host: bool| if host { cri::NamespaceMode::Node } else { cri::NamespaceMode::Pod } as i32;
    cri::NamespaceOption {
        network: mode(host_network(pod)),
        pid: if spec.and_then(|s| s.host_pid).unwrap_or(false) {
            cri::NamespaceMode::Node as i32
        } else if spec.and_then(|s| s.share_process_namespace).unwrap_or(false) {
            cri::NamespaceMode::Pod as i32
        } else {
            cri::NamespaceMode::Container as i32
        },
        ipc: mode(spec.and_then(|s| s.host_ipc).unwrap_or(false)),
        ..Default::default()
    }
}

fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = pod.metadata.labels.clone().unwrap_or_default().into_iter().collect();
    labels.insert(LABEL_POD_NAME.into(), name(pod).into());
    labels.insert(LABEL_POD_NAMESPACE.into(), namespace(pod).into());
    labels.insert(LABEL_POD_UID.into(), uid(pod).into());
    labels.insert(LABEL_MANAGED.into(), "true".into());
    labels
}

/// The sandbox of `pod`, attempt `attempt`, with the resolv.conf `dns` (see
/// [`crate::cluster_dns::resolv::pod_dns`]).
pub fn sandbox(pod: &Pod, pod_logs: &str, attempt: u32, dns: cri::DnsConfig) -> cri::PodSandboxConfig {
    let spec = pod.spec.as_ref();
    // Host-network pods keep the host's name (notes/runtime.md: leave it empty).
    let hostname = if host_network(pod) {
        String::new()
    } else {
        let base = spec.and_then(|s| s.hostname.clone()).unwrap_or_else(|| name(pod).to_string());
        base.chars().take(63).collect::<String>().trim_end_matches(['-', '.']).to_string()
    };
    let port_mappings = spec
        .into_iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| cri::PortMapping {
            protocol: match p.protocol.as_deref() {
                Some("UDP") => cri::Protocol::Udp,
                Some("SCTP") => cri::Protocol::Sctp,
                _ => cri::Protocol::Tcp,
            } as i32,
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or_default(),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let security = cri::LinuxSandboxSecurityContext {
        namespace_options: Some(namespaces(pod)),
        run_as_user: spec
            .and_then(|s| s.security_context.as_ref())
            .and_then(|c| c.run_as_user)
            .map(|value| cri::Int64Value { value }),
        ..Default::default()
    };
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name(pod).into(),
            uid: uid(pod).into(),
            namespace: namespace(pod).into(),
            attempt,
        }),
        hostname,
        log_directory: log_directory(pod_logs, pod),
        dns_config: Some(dns),
        port_mappings,
        labels: pod_labels(pod),
        annotations: pod.metadata.annotations.clone().unwrap_or_default().into_iter().collect(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: format!("{CGROUP_ROOT}/pod{}", uid(pod)),
            security_context: Some(security),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn millis(list: Option<&std::collections::BTreeMap<String, Quantity>>, key: &str) -> Option<i64> {
    let q = list?.get(key)?;
    quantity::parse_cpu(&q.0).ok().map(|m| m as i64)
}

fn bytes(list: Option<&std::collections::BTreeMap<String, Quantity>>, key: &str) -> Option<i64> {
    let q = list?.get(key)?;
    quantity::parse_memory(&q.0).ok().map(|b| b as i64)
}

/// cgroup figures for a container's requests and limits (kubelet's cgroupfs rules: shares
/// from the CPU request, quota from the CPU limit, a hard memory limit).
pub fn resources(requirements: Option<&ResourceRequirements>) -> cri::LinuxContainerResources {
    let requests = requirements.and_then(|r| r.requests.as_ref());
    let limits = requirements.and_then(|r| r.limits.as_ref());
    // A limit without a request requests the limit.
    let cpu_request = millis(requests, "cpu").or_else(|| millis(limits, "cpu"));
    let cpu_limit = millis(limits, "cpu");
    cri::LinuxContainerResources {
        cpu_shares: cpu_request.map(|m| (m * 1024 / 1000).max(2)).unwrap_or(2),
        cpu_period: if cpu_limit.is_some() { CPU_PERIOD } else { 0 },
        cpu_quota: cpu_limit.map(|m| (m * CPU_PERIOD / 1000).max(1000)).unwrap_or(0),
        memory_limit_in_bytes: bytes(limits, "memory").unwrap_or(0),
        ..Default::default()
    }
}

/// `$(VAR)` references in `input` replaced from `env` (kube's expansion: `$$` escapes, an
/// unknown name stays as written).
pub fn expand(input: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let var = &inner[..end];
                    match env.iter().rev().find(|(k, _)| k == var) {
                        Some((_, value)) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(var);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A container's config: `env` resolved, `mounts` as host paths, attempt `attempt`.
pub fn container(
    pod: &Pod,
    container: &Container,
    env: &[(String, String)],
    mounts: Vec<cri::Mount>,
    attempt: u32,
) -> cri::ContainerConfig {
    let command = container.command.iter().flatten().map(|c| expand(c, env)).collect();
    let args = container.args.iter().flatten().map(|a| expand(a, env)).collect();
    let mut labels = HashMap::from([
        (LABEL_POD_NAME.to_string(), name(pod).to_string()),
        (LABEL_POD_NAMESPACE.to_string(), namespace(pod).to_string()),
        (LABEL_POD_UID.to_string(), uid(pod).to_string()),
        (LABEL_CONTAINER_NAME.to_string(), container.name.clone()),
    ]);
    labels.insert(LABEL_MANAGED.into(), "true".into());
    let pod_security = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let security = container.security_context.as_ref();
    let capabilities = security.and_then(|s| s.capabilities.as_ref()).map(|c| cri::Capability {
        add_capabilities: c.add.clone().unwrap_or_default(),
        drop_capabilities: c.drop.clone().unwrap_or_default(),
        ..Default::default()
    });
    let linux_security = cri::LinuxContainerSecurityContext {
        capabilities,
        privileged: security.and_then(|s| s.privileged).unwrap_or(false),
        namespace_options: Some(namespaces(pod)),
        run_as_user: security
            .and_then(|s| s.run_as_user)
            .or_else(|| pod_security.and_then(|s| s.run_as_user))
            .map(|value| cri::Int64Value { value }),
        run_as_group: security
            .and_then(|s| s.run_as_group)
            .or_else(|| pod_security.and_then(|s| s.run_as_group))
            .map(|value| cri::Int64Value { value }),
        readonly_rootfs: security.and_then(|s| s.read_only_root_filesystem).unwrap_or(false),
        supplemental_groups: pod_security.and_then(|s| s.supplemental_groups.clone()).unwrap_or_default(),
        ..Default::default()
    };
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: container.name.clone(), attempt }),
        image: Some(cri::ImageSpec { image: container.image.clone().unwrap_or_default(), ..Default::default() }),
        command,
        args,
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: env.iter().map(|(key, value)| cri::KeyValue { key: key.clone(), value: value.clone() }).collect(),
        mounts,
        labels,
        log_path: log_path(&container.name, attempt),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources(container.resources.as_ref())),
            security_context: Some(linux_security),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "labels": {"app": "web"}},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn expansion_follows_kube() {
        let env = vec![("A".to_string(), "1".to_string()), ("B".to_string(), "two".to_string())];
        assert_eq!(expand("x$(A)y$(B)", &env), "x1ytwo");
        assert_eq!(expand("$$(A) $(C) $A $(", &env), "$(A) $(C) $A $(");
    }

    #[test]
    fn the_sandbox_carries_the_pods_identity_ports_and_namespaces() {
        let p = pod(json!({"hostname": "h", "containers": [
            {"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]}]}));
        let dns = cri::DnsConfig { servers: vec!["10.244.0.1".into()], ..Default::default() };
        let s = sandbox(&p, "/logs", 2, dns.clone());
        assert_eq!(s.dns_config.as_ref(), Some(&dns));
        let meta = s.metadata.unwrap();
        assert_eq!(
            (meta.name.as_str(), meta.namespace.as_str(), meta.uid.as_str(), meta.attempt),
            ("web", "shop", "u-1", 2)
        );
        assert_eq!(s.hostname, "h");
        assert_eq!(s.log_directory, "/logs/shop_web_u-1");
        assert_eq!(s.port_mappings.len(), 1);
        assert_eq!(s.port_mappings[0].host_port, 8080);
        assert_eq!(s.labels[LABEL_POD_UID], "u-1");
        assert_eq!(s.labels["app"], "web");
        let ns = s.linux.unwrap().security_context.unwrap().namespace_options.unwrap();
        assert_eq!(ns.network, cri::NamespaceMode::Pod as i32);
        let host = sandbox(&pod(json!({"hostNetwork": true, "containers": []})), "/logs", 0, dns);
        assert_eq!(host.hostname, "");
    }

    #[test]
    fn requests_and_limits_become_shares_quota_and_memory() {
        let r: ResourceRequirements = serde_json::from_value(json!({
            "requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}))
        .unwrap();
        let res = resources(Some(&r));
        assert_eq!((res.cpu_shares, res.cpu_quota, res.cpu_period), (256, 50_000, 100_000));
        assert_eq!(res.memory_limit_in_bytes, 64 << 20);
        let none = resources(None);
        assert_eq!((none.cpu_shares, none.cpu_quota, none.memory_limit_in_bytes), (2, 0, 0));
    }

    #[test]
    fn a_container_config_expands_its_command_and_names_its_log() {
        let p = pod(json!({"containers": [{"name": "a", "image": "busybox", "command": ["sh", "-c", "echo $(MSG)"]}]}));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let config = container(&p, c, &[("MSG".into(), "hi".into())], Vec::new(), 3);
        assert_eq!(config.command, ["sh", "-c", "echo hi"]);
        assert_eq!(config.log_path, "a/3.log");
        assert_eq!(config.labels[LABEL_CONTAINER_NAME], "a");
        assert_eq!(config.envs[0].value, "hi");
    }
}
