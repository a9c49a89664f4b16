//! Where pods run: [`hollow::HollowRuntime`] (pods "run" in memory, for scale tests), or
//! real containers through CRI: [`containerd`] (the agent's private containerd),
//! [`images`] (local images, no registry), [`cri`] (the CRI client).

pub mod containerd;
pub mod cri;
pub mod hollow;
pub mod images;

use std::net::IpAddr;

use k8s_openapi::jiff::Timestamp;

/// A pod the runtime runs, as its status and the node's metrics see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningPod {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub ip: IpAddr,
    /// When the runtime started it (the pod's `startTime`, its containers' `startedAt`).
    pub started: Timestamp,
    /// Its (non-init) containers' names.
    pub containers: Vec<String>,
}
