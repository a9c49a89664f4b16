//! kube-apiserver's endpoint reconciler for the `default/kubernetes` Service: its Endpoints
//! and its EndpointSlice `kubernetes` name the API servers by their advertise address and
//! secure port (port name `https`), so that pods reach the API through the Service's cluster
//! IP (`KUBERNETES_SERVICE_HOST`) by the node's service proxy.
//!
//! As kube's reconciler writes them: the Endpoints carry
//! `endpointslice.kubernetes.io/skip-mirror: "true"` (the reconciler writes the slice itself,
//! no mirroring controller does), and the slice, made from the Endpoints' first subset, has
//! only the label `kubernetes.io/service-name: kubernetes` (no `managed-by`: the
//! EndpointSlice controller leaves slices of Services without a selector alone).
//!
//! Membership: one API server at a time, the one whose store leads the Raft group (in
//! `flotilla up`, the only member): it names only itself, so a changed address or port, or a
//! new leader, replaces the old entry within a second or so. kube's lease reconciler lists
//! every live API server; that is not built (members of a local cluster also differ in port,
//! which one slice cannot carry), so the Service does not spread load over members.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use actors::{ApiError, ApiResult};
use anyhow::Context;
use raft_store::StoreNode;
use serde_json::{json, Value};

/// The Service's (and its Endpoints' and slice's) name and namespace.
pub const NAME: &str = "kubernetes";
pub const NAMESPACE: &str = "default";
/// The label kube puts on the Endpoints so that no controller mirrors them into a slice.
pub const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// The label tying a slice to its Service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// How often a member checks its entry again (kube's `--endpoint-reconciler` interval, 10 s).
pub const INTERVAL: Duration = Duration::from_secs(10);
const MANAGER: &str = "flotilla";

/// `current` (or a new object) with the subsets, labels and name of the Endpoints naming
/// `addresses` on `port`.
pub fn endpoints(current: Option<&Value>, addresses: &BTreeSet<IpAddr>, port: u16) -> Value {
    let mut obj = current.cloned().unwrap_or_else(
        || json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": NAME, "namespace": NAMESPACE}}),
    );
    let ips: Vec<Value> = addresses.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
    obj["subsets"] = json!([{"addresses": ips, "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]);
    set_label(&mut obj, SKIP_MIRROR, "true");
    obj
}

/// `current` (or a new object) as kube's reconciler makes the slice from the Endpoints
/// `endpoints`: one endpoint per address, ready, and the first subset's ports.
pub fn endpoint_slice(current: Option<&Value>, endpoints: &Value) -> Value {
    let mut obj = current.cloned().unwrap_or_else(|| {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": NAME, "namespace": NAMESPACE}})
    });
    let subset = &endpoints["subsets"][0];
    let ips: Vec<&str> =
        subset["addresses"].as_array().into_iter().flatten().filter_map(|a| a["ip"].as_str()).collect();
    let ipv6 = !ips.is_empty() && ips.iter().all(|ip| ip.contains(':'));
    obj["addressType"] = json!(if ipv6 { "IPv6" } else { "IPv4" });
    obj["endpoints"] =
        ips.iter().map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}})).collect::<Vec<_>>().into();
    obj["ports"] = subset["ports"].clone();
    set_label(&mut obj, SERVICE_NAME, NAME);
    obj
}

fn set_label(obj: &mut Value, key: &str, value: &str) {
    let metadata = &mut obj["metadata"];
    if !metadata["labels"].is_object() {
        metadata["labels"] = json!({});
    }
    metadata["labels"][key] = json!(value);
}

/// Writes `desired(current)` as the object `resource`/`kubernetes` (creating it when absent);
/// writes nothing when it is already so.
async fn put(
    node: &StoreNode,
    group: &str,
    version: &str,
    resource: &str,
    desired: impl Fn(Option<&Value>) -> Value,
) -> ApiResult<Value> {
    let kind = actors::kinds::find(group, version, resource)
        .ok_or_else(|| ApiError::BadRequest(format!("no kind {resource}")))?;
    match actors::object_store::update_with(node, kind, Some(NAMESPACE), NAME, Some(MANAGER), |current| {
        Ok(desired(Some(current)))
    })
    .await
    {
        Err(ApiError::NotFound(_)) => {
            actors::object_store::create(node, kind, Some(NAMESPACE), desired(None), Some(MANAGER)).await
        }
        other => other,
    }
}

/// One pass: the Endpoints naming this member (`me`:`port`), then the slice from them.
pub async fn reconcile(node: &StoreNode, me: IpAddr, port: u16) -> anyhow::Result<()> {
    let written = put(node, "", "v1", "endpoints", |current| endpoints(current, &BTreeSet::from([me]), port))
        .await
        .context("writing the kubernetes Endpoints")?;
    put(node, "discovery.k8s.io", "v1", "endpointslices", |current| endpoint_slice(current, &written))
        .await
        .context("writing the kubernetes EndpointSlice")?;
    Ok(())
}

/// While this member's store leads: [`reconcile`] at once and then every [`INTERVAL`] (it
/// puts back what someone removed or changed), forever; failures are logged and tried
/// again a second later.
pub async fn run(node: StoreNode, me: IpAddr, port: u16) {
    let mut done: Option<std::time::Instant> = None;
    loop {
        if !node.is_leader() {
            done = None;
        } else if done.is_none_or(|at| at.elapsed() >= INTERVAL) {
            match reconcile(&node, me, port).await {
                Ok(()) => {
                    if done.is_none() {
                        tracing::info!(address = %me, port, "the kubernetes Service's endpoints name this API server");
                    }
                    done = Some(std::time::Instant::now());
                }
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "the kubernetes Service's endpoints are not written yet")
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn endpoints_and_slice_name_the_advertise_address_on_the_secure_port() {
        let e = endpoints(None, &BTreeSet::from([ip("192.0.2.2")]), 6443);
        assert_eq!(e["metadata"]["labels"][SKIP_MIRROR], "true");
        assert_eq!(
            e["subsets"],
            json!([{"addresses": [{"ip": "192.0.2.2"}], "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}])
        );
        let s = endpoint_slice(None, &e);
        assert_eq!(s["metadata"]["name"], "kubernetes");
        assert_eq!(s["metadata"]["labels"], json!({SERVICE_NAME: "kubernetes"}));
        assert_eq!(s["addressType"], "IPv4");
        assert_eq!(s["endpoints"], json!([{"addresses": ["192.0.2.2"], "conditions": {"ready": true}}]));
        assert_eq!(s["ports"], json!([{"name": "https", "port": 6443, "protocol": "TCP"}]));
    }

    #[test]
    fn the_old_entry_is_replaced_and_several_addresses_make_several_endpoints() {
        // What older versions wrote: loopback.
        let old = json!({"metadata": {"name": "kubernetes", "labels": {SKIP_MIRROR: "true"}, "resourceVersion": "7"},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]});
        let e = endpoints(Some(&old), &BTreeSet::from([ip("192.0.2.2")]), 6443);
        assert_eq!(e["metadata"]["resourceVersion"], "7", "an update of the object read");
        assert_eq!(e["subsets"][0]["addresses"], json!([{"ip": "192.0.2.2"}]));
        let both = endpoints(None, &BTreeSet::from([ip("192.0.2.2"), ip("192.0.2.3")]), 6443);
        let s = endpoint_slice(None, &both);
        assert_eq!(s["endpoints"].as_array().unwrap().len(), 2);
        let v6 = endpoint_slice(None, &endpoints(None, &BTreeSet::from([ip("fd00::1")]), 6443));
        assert_eq!(v6["addressType"], "IPv6");
    }

    /// In process, against a one-member store: the objects are made, then corrected.
    #[tokio::test]
    async fn reconcile_writes_the_endpoints_and_the_slice_to_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let cfg = raft_store::StoreConfig::new(1, dir.path().join("store"), addr);
        let node = StoreNode::start_single(cfg, Duration::from_secs(20)).await.unwrap();
        let ns = actors::kinds::find("", "v1", "namespaces").unwrap();
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
        actors::object_store::create(&node, ns, None, obj, None).await.unwrap();

        reconcile(&node, ip("192.0.2.2"), 6443).await.unwrap();
        reconcile(&node, ip("192.0.2.9"), 7443).await.unwrap();
        let e = actors::kinds::find("", "v1", "endpoints").unwrap();
        let e = actors::object_store::get(&node, e, Some(NAMESPACE), NAME).await.unwrap();
        assert_eq!(e["subsets"][0]["addresses"], json!([{"ip": "192.0.2.9"}]));
        assert_eq!(e["subsets"][0]["ports"][0]["port"], 7443);
        assert_eq!(e["metadata"]["labels"][SKIP_MIRROR], "true");
        let s = actors::kinds::find("discovery.k8s.io", "v1", "endpointslices").unwrap();
        let s = actors::object_store::get(&node, s, Some(NAMESPACE), NAME).await.unwrap();
        assert_eq!(s["metadata"]["labels"][SERVICE_NAME], "kubernetes");
        assert_eq!(s["endpoints"], json!([{"addresses": ["192.0.2.9"], "conditions": {"ready": true}}]));
        assert_eq!(s["ports"], json!([{"name": "https", "port": 7443, "protocol": "TCP"}]));
        let rv = s["metadata"]["resourceVersion"].clone();
        reconcile(&node, ip("192.0.2.9"), 7443).await.unwrap();
        let s = actors::kinds::find("discovery.k8s.io", "v1", "endpointslices").unwrap();
        let s = actors::object_store::get(&node, s, Some(NAMESPACE), NAME).await.unwrap();
        assert_eq!(s["metadata"]["resourceVersion"], rv, "nothing to change, nothing written");
        node.shutdown().await;
    }
}
