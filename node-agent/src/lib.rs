//! Flotilla's node agent (its kubelet): registers Nodes, keeps their Leases and status
//! fresh, runs the pods bound to them, and serves the kubelet endpoint. It is a plain
//! Kubernetes API client: it depends on no control-plane crate.
//!
//! Start at [`agent::run`]: one process runs one real node or N hollow (simulated) ones.
//! - [`client`]: the API client over several endpoints, failing over between them;
//!   [`list_watch`]: list+watch of one kind over it (pods, Services, EndpointSlices).
//! - [`node`] (what a node reports) and [`heartbeat`] (registration, Lease, status loops).
//! - [`pods`] (the shared pod watch; hollow pods' decisions), [`pod_status`] (their
//!   Running status); [`cri_pods`]: a real node's pods as containers through CRI.
//! - [`runtime`]: the hollow runtime, the private containerd, local images, the CRI client.
//! - [`kubelet_api`]: the HTTPS endpoint (metrics, logs, exec, attach, port-forward);
//!   [`metrics`]: `/metrics/resource`; [`host`]: /proc facts; [`quantity`].
//! - [`cni`]: the node's CNI config and the CNI plugin invoker.
//! - [`service_proxy`]: kube-proxy's iptables mode: Service cluster IPs and node ports.
//! - [`cluster_dns`]: the node-local cluster DNS server and the pods' resolv.conf.

pub mod agent;
pub mod client;
pub mod cluster_dns;
pub mod cni;
pub mod cri_pods;
pub mod heartbeat;
pub mod host;
pub mod kubelet_api;
pub mod list_watch;
pub mod metrics;
pub mod node;
pub mod pod_status;
pub mod pods;
pub mod quantity;
pub mod runtime;
pub mod service_proxy;

pub use agent::{run, Config, Hollow, Prometheus};
