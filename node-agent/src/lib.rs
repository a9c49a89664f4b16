//! Flotilla's node agent (its kubelet): runs bound pods on a node through CRI, wires their
//! networking with CNI, and will host CSI and device plugins.
//!
//! Start at [`cni::CniInvoker`]: it runs the node's CNI plugin chain (ADD/CHECK/DEL/VERSION)
//! for a pod sandbox. Pod workers, CRI and plugin registration come next.

pub mod cni;
