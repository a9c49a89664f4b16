//! The node IPAM controller (kube-controller-manager's `node-ipam-controller` with the
//! range allocator): every Node without `spec.podCIDR` gets the lowest free block of the
//! cluster CIDR (`/24`s of `10.244.0.0/16` by default) in `spec.podCIDR` and
//! `spec.podCIDRs`. The blocks in use are read from the informer's nodes plus the ones this
//! controller assigned that the informer has not shown yet; a deleted node's block is free
//! again. Writes carry the node's resourceVersion: a conflict means the node changed, and it
//! is looked at again with a fresh used set.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use serde_json::{json, Value};

use super::node_lifecycle::nodes;
use super::pods::{self, name, str_at};
use crate::api_error::ApiError;
use crate::controller::{Action, Ctx, ObjectKey, Reconciler, Watched};
use crate::object_store::Part;

/// How soon a node is tried again when the range is full.
const FULL_RETRY: Duration = Duration::from_secs(30);

/// An IPv4 CIDR: network address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub base: u32,
    pub prefix: u8,
}

impl Cidr {
    /// `a.b.c.d/n`, the address masked to the prefix; `None` for anything else (IPv6 too).
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = s.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
        Some(Cidr { base: u32::from(addr) & mask(prefix), prefix })
    }

    /// Which block of size `/node_prefix` of `self` `other` is, if it is one.
    fn index_of(&self, other: &Cidr, node_prefix: u8) -> Option<u64> {
        if other.prefix != node_prefix || node_prefix < self.prefix || other.base & mask(self.prefix) != self.base {
            return None;
        }
        Some(u64::from((other.base - self.base) >> (32 - u32::from(node_prefix))))
    }

    /// How many `/node_prefix` blocks it holds.
    fn blocks(&self, node_prefix: u8) -> u64 {
        if node_prefix < self.prefix || node_prefix > 32 {
            return 0;
        }
        1u64 << (node_prefix - self.prefix)
    }

    /// Block `index` of size `/node_prefix`.
    fn block(&self, index: u64, node_prefix: u8) -> String {
        let shift = 32 - u32::from(node_prefix);
        let base = self.base.wrapping_add(((index as u32).checked_shl(shift)).unwrap_or(0));
        format!("{}/{node_prefix}", Ipv4Addr::from(base))
    }
}

fn mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

/// The pod CIDRs a node has (`spec.podCIDRs`, else `spec.podCIDR`).
pub fn pod_cidrs(node: &Value) -> Vec<String> {
    let list: Vec<String> = node
        .pointer("/spec/podCIDRs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect();
    if !list.is_empty() {
        return list;
    }
    match str_at(node, "/spec/podCIDR") {
        "" => Vec::new(),
        cidr => vec![cidr.to_string()],
    }
}

/// The range allocator; keys are nodes.
pub struct NodeIpam {
    /// The range the nodes' blocks come from (`--cluster-cidr`).
    pub cluster_cidr: Cidr,
    /// The size of each node's block (`--node-cidr-mask-size`).
    pub node_prefix: u8,
    /// Blocks written to nodes the informer has not shown yet: node name -> (uid, block).
    assigned: Rc<RefCell<HashMap<String, (String, String)>>>,
}

impl Default for NodeIpam {
    fn default() -> Self {
        NodeIpam::new(Cidr { base: u32::from(Ipv4Addr::new(10, 244, 0, 0)), prefix: 16 }, 24)
    }
}

impl NodeIpam {
    pub fn new(cluster_cidr: Cidr, node_prefix: u8) -> Self {
        NodeIpam { cluster_cidr, node_prefix, assigned: Rc::default() }
    }

    /// The lowest free block, given the nodes' CIDRs and those assigned but not yet seen.
    pub fn next_free<'a>(&self, used: impl IntoIterator<Item = &'a str>) -> Option<String> {
        let taken: BTreeSet<u64> = used
            .into_iter()
            .filter_map(Cidr::parse)
            .filter_map(|c| self.cluster_cidr.index_of(&c, self.node_prefix))
            .collect();
        let free = (0..self.cluster_cidr.blocks(self.node_prefix)).find(|i| !taken.contains(i))?;
        Some(self.cluster_cidr.block(free, self.node_prefix))
    }
}

impl Reconciler for NodeIpam {
    fn name(&self) -> &'static str {
        "node-ipam"
    }

    fn watches(&self) -> Vec<Watched> {
        let assigned = self.assigned.clone();
        let keys = move |node: &Value, _: Option<&Value>| {
            // Seen with its block (or gone): no longer only ours to remember.
            if let Ok(mut assigned) = assigned.try_borrow_mut() {
                if assigned.get(name(node)).is_some_and(|(uid, _)| uid == pods::uid(node))
                    && !pod_cidrs(node).is_empty()
                {
                    assigned.remove(name(node));
                }
            }
            ObjectKey::of(node).into_iter().collect()
        };
        vec![Watched::with(nodes(), keys)]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(async move {
            let Some(lister) = ctx.lister(nodes()).cloned() else { return Ok(Action::Done) };
            let Some(node) = lister.get(&key) else {
                self.assigned.borrow_mut().remove(&key.name);
                return Ok(Action::Done);
            };
            if !pod_cidrs(&node).is_empty() || pods::terminating(&node) {
                return Ok(Action::Done);
            }
            let uid = pods::uid(&node).to_string();
            if self.assigned.borrow().get(&key.name).is_some_and(|(u, _)| *u == uid) {
                // Written; the informer is behind.
                return Ok(Action::Done);
            }
            // Decided and reserved before any await: two reconciles never pick one block.
            let choice = {
                let mut assigned = self.assigned.borrow_mut();
                let all = lister.list(None);
                let used: Vec<String> = all
                    .iter()
                    .flat_map(|n| pod_cidrs(n))
                    .chain(assigned.iter().filter(|(n, _)| **n != key.name).map(|(_, (_, b))| b.clone()))
                    .collect();
                let choice = self.next_free(used.iter().map(String::as_str));
                if let Some(block) = &choice {
                    assigned.insert(key.name.clone(), (uid, block.clone()));
                }
                choice
            };
            let Some(block) = choice else {
                let message = format!("Node {} status is now: CIDRNotAvailable", key.name);
                ctx.event(&node, "Normal", "CIDRNotAvailable", &message).await;
                return Ok(Action::RequeueAfter(FULL_RETRY));
            };
            let mut updated = (*node).clone();
            pods::set_path(&mut updated, &["spec", "podCIDR"], json!(block));
            pods::set_path(&mut updated, &["spec", "podCIDRs"], json!([block]));
            match ctx.update(nodes(), Part::Main, updated).await {
                Ok(_) => {
                    tracing::debug!(node = %key.name, cidr = %block, "pod CIDR assigned");
                    Ok(Action::Done)
                }
                Err(e) => {
                    self.assigned.borrow_mut().remove(&key.name);
                    match e {
                        ApiError::NotFound(_) => Ok(Action::Done),
                        e => Err(e),
                    }
                }
            }
        })
    }

    fn workers(&self) -> usize {
        4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_the_lowest_free_ones_of_the_range() {
        let ipam = NodeIpam::default();
        assert_eq!(ipam.next_free([]).as_deref(), Some("10.244.0.0/24"));
        let used = ["10.244.0.0/24", "10.244.2.0/24", "192.168.0.0/24", "10.244.1.0/25", "fd00::/64"];
        assert_eq!(ipam.next_free(used).as_deref(), Some("10.244.1.0/24"), "foreign and odd blocks do not count");
        let small = NodeIpam::new(Cidr::parse("10.0.0.0/23").unwrap(), 24);
        assert_eq!(small.next_free(["10.0.0.0/24"]).as_deref(), Some("10.0.1.0/24"));
        assert_eq!(small.next_free(["10.0.0.0/24", "10.0.1.0/24"]), None, "full");
    }

    #[test]
    fn cidrs_parse_and_mask() {
        assert_eq!(Cidr::parse("10.244.3.7/16"), Cidr::parse("10.244.0.0/16"));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
        assert_eq!(pod_cidrs(&json!({"spec": {"podCIDR": "10.244.1.0/24"}})), ["10.244.1.0/24"]);
        assert!(pod_cidrs(&json!({"spec": {}})).is_empty());
    }
}
