//! Where a pod's logs, exec, attach and port-forward are served: the container (kube's
//! `validateContainer`: the one asked for, which must be the pod's, or the pod's only one), the
//! node the pod is bound to, and that node's kubelet endpoint (kube's
//! `NodeConnectionInfoGetter`: an address from `status.addresses`, the port from
//! `status.daemonEndpoints.kubeletEndpoint.Port`).

use actors::{ApiError, ApiResult};
use serde_json::Value;

/// The kubelet port of a Node that publishes none (kube-apiserver's `--kubelet-port` default).
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

/// The address types tried in order: the node's InternalIP, else its Hostname.
const ADDRESS_TYPES: &[&str] = &["InternalIP", "Hostname"];

/// The names of `pod`'s containers in kube's `VisitContainers` order: init containers,
/// containers, ephemeral containers.
fn container_names(pod: &Value) -> Vec<&str> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|field| pod["spec"][field].as_array())
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

/// The container a request for pod `name` is about: `asked`, which must be one of the pod's
/// (any kind), or without it the pod's only container; 400 in kube's words otherwise.
pub fn container(pod: &Value, name: &str, asked: Option<&str>) -> ApiResult<String> {
    if let Some(asked) = asked {
        if container_names(pod).contains(&asked) {
            return Ok(asked.to_string());
        }
        return Err(ApiError::BadRequest(format!("container {asked} is not valid for pod {name}")));
    }
    let regular: Vec<&str> =
        pod["spec"]["containers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
    match regular.as_slice() {
        [only] => Ok(only.to_string()),
        [] => Err(ApiError::BadRequest(format!("a container name must be specified for pod {name}"))),
        // Go's `%s` of a `[]string`: `[a b]`.
        _ => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            container_names(pod).join(" ")
        ))),
    }
}

/// The node `pod` is bound to (`spec.nodeName`), if it is bound.
pub fn node_name(pod: &Value) -> Option<&str> {
    pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())
}

/// Where `node`'s kubelet listens: its first InternalIP (else Hostname) address, and its
/// `daemonEndpoints` port ([`DEFAULT_KUBELET_PORT`] when it gives none). A node with no such
/// address is kube's 500.
pub fn kubelet_address(node: &Value) -> ApiResult<(String, u16)> {
    let addresses = node["status"]["addresses"].as_array().map(Vec::as_slice).unwrap_or_default();
    let of_type = |kind: &str| {
        addresses.iter().find(|a| a["type"] == kind).and_then(|a| a["address"].as_str()).filter(|a| !a.is_empty())
    };
    let Some(host) = ADDRESS_TYPES.iter().find_map(|kind| of_type(kind)) else {
        // Go's `%v` of the `[]NodeAddress`: `[{ExternalIP 1.2.3.4}]`.
        let known: Vec<String> = addresses
            .iter()
            .map(|a| format!("{{{} {}}}", a["type"].as_str().unwrap_or(""), a["address"].as_str().unwrap_or("")))
            .collect();
        return Err(internal(format!("no preferred addresses found; known addresses: [{}]", known.join(" "))));
    };
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok((host.to_string(), port))
}

/// A failure kube-apiserver reports as a plain error: 500 with no reason (`Unknown`) and the
/// error's text as the message.
pub fn internal(message: String) -> ApiError {
    ApiError::Status { code: 500, reason: String::new(), message, details: None }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn pod(containers: &[&str], init: &[&str]) -> Value {
        let list = |names: &[&str]| names.iter().map(|n| json!({"name": n, "image": "busybox"})).collect::<Vec<_>>();
        json!({"metadata": {"name": "web"}, "spec": {"containers": list(containers), "initContainers": list(init)}})
    }

    #[test]
    fn the_only_container_is_chosen_and_others_must_be_named() {
        assert_eq!(container(&pod(&["app"], &[]), "web", None).unwrap(), "app");
        assert_eq!(container(&pod(&["app", "side"], &["setup"]), "web", Some("setup")).unwrap(), "setup");
        let e = container(&pod(&["app", "side"], &["setup"]), "web", None).unwrap_err();
        assert_eq!(
            (e.code(), e.to_string().as_str()),
            (400, "a container name must be specified for pod web, choose one of: [setup app side]")
        );
        let e = container(&pod(&["app"], &[]), "web", Some("nope")).unwrap_err();
        assert_eq!((e.code(), e.to_string().as_str()), (400, "container nope is not valid for pod web"));
        let e = container(&pod(&[], &[]), "web", None).unwrap_err();
        assert_eq!(e.to_string(), "a container name must be specified for pod web");
    }

    #[test]
    fn the_kubelet_is_reached_at_the_internal_ip_and_the_daemon_endpoint_port() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10777}},
        }});
        assert_eq!(kubelet_address(&node).unwrap(), ("10.0.0.5".to_string(), 10777));
        let hostname_only = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}});
        assert_eq!(kubelet_address(&hostname_only).unwrap(), ("n1".to_string(), DEFAULT_KUBELET_PORT));
        let external = json!({"status": {"addresses": [{"type": "ExternalIP", "address": "1.2.3.4"}]}});
        let e = kubelet_address(&external).unwrap_err();
        assert_eq!(e.code(), 500);
        assert_eq!(e.to_string(), "no preferred addresses found; known addresses: [{ExternalIP 1.2.3.4}]");
        assert_eq!(node_name(&json!({"spec": {"nodeName": ""}})), None);
        assert_eq!(node_name(&json!({"spec": {"nodeName": "n1"}})), Some("n1"));
    }
}
