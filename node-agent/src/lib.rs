//! Flotilla's node agent (its kubelet): registers Nodes, keeps their Leases and status
//! fresh, runs the pods bound to them, and serves the kubelet endpoint. It is a plain
//! Kubernetes API client: it depends on no control-plane crate.
//!
//! Start at [`agent::run`]: one process runs one real node or N hollow (simulated) ones.
//! - [`client`]: the API client over several endpoints, failing over between them.
//! - [`node`] (what a node reports) and [`heartbeat`] (registration, Lease, status loops).
//! - [`pods`] (the shared pod watch and per-pod decisions), [`pod_status`] (the Running
//!   status), [`runtime`] (where pods run: the in-memory hollow runtime so far).
//! - [`metrics`]: `/metrics/resource` over HTTPS; [`host`]: /proc facts; [`quantity`].
//! - [`cni`]: the CNI plugin chain for pod sandboxes (for the CRI runtime to come).

pub mod agent;
pub mod client;
pub mod cni;
pub mod heartbeat;
pub mod host;
pub mod metrics;
pub mod node;
pub mod pod_status;
pub mod pods;
pub mod quantity;
pub mod runtime;

pub use agent::{run, Config, Hollow};
