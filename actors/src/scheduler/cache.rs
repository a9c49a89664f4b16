//! The scheduler's cache (kube's `internal/cache`): every node with what its pods use,
//! updated from the informers and at once when the scheduler assumes a pod onto a node,
//! so the next decision sees it before the binding comes back through the watch.
//!
//! Nodes live in slots indexed by name; `live` lists the slots that have a Node object,
//! in a stable order the scheduler walks round-robin. `generation` moves whenever a change
//! could make an unschedulable pod schedulable (a node added or changed, a pod gone).

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use super::node_info::{NodeInfo, NodeObj, Usage};
use super::pod_info::PodInfo;
use crate::controller::ObjectKey;

/// Where a cached pod's binding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// Assumed onto a node; the binding is being written.
    Binding,
    /// Bound by this scheduler; the informer has not shown it yet.
    Bound,
    /// Seen bound in the informer.
    Observed,
    /// Not bound: reserved on the node its preemption is freeing (kube's nominated pod),
    /// so that pods of lower priority do not take the room first.
    Nominated,
}

/// A pod that counts on a node.
#[derive(Debug, Clone)]
pub struct CachedPod {
    pub info: Rc<PodInfo>,
    pub node: String,
    pub state: PodState,
}

#[derive(Debug, Default)]
pub struct Cache {
    slots: Vec<NodeInfo>,
    by_name: HashMap<String, usize>,
    free: Vec<usize>,
    live: Vec<usize>,
    pods: HashMap<ObjectKey, CachedPod>,
    /// Cached pods with required anti-affinity terms (checked against every incoming pod).
    anti_affinity: HashSet<ObjectKey>,
    pub generation: u64,
    /// Where the next scheduling cycle starts walking `live`.
    pub next_start: usize,
}

impl Cache {
    fn slot(&mut self, name: &str) -> usize {
        if let Some(i) = self.by_name.get(name) {
            return *i;
        }
        let info = NodeInfo { name: name.to_string(), node: None, usage: Usage::default() };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = info;
                i
            }
            None => {
                self.slots.push(info);
                self.slots.len() - 1
            }
        };
        self.by_name.insert(name.to_string(), i);
        i
    }

    /// Frees the slot of a node that has neither an object nor pods.
    fn release_if_empty(&mut self, i: usize) {
        let slot = &self.slots[i];
        if slot.node.is_none() && slot.usage.is_empty() {
            self.by_name.remove(&slot.name);
            self.free.push(i);
        }
    }

    /// Sets a node's object; returns whether it changed.
    pub fn set_node(&mut self, name: &str, node: NodeObj) -> bool {
        let i = self.slot(name);
        let slot = &mut self.slots[i];
        if slot.node.as_ref() == Some(&node) {
            return false;
        }
        if slot.node.is_none() {
            self.live.push(i);
        }
        slot.node = Some(node);
        self.generation += 1;
        true
    }

    /// Forgets a node's object (its pods still count, should it come back).
    pub fn remove_node(&mut self, name: &str) {
        let Some(&i) = self.by_name.get(name) else { return };
        if self.slots[i].node.take().is_some() {
            self.live.retain(|l| *l != i);
            self.generation += 1;
        }
        self.release_if_empty(i);
    }

    /// The nodes that have an object, in walking order.
    pub fn live_len(&self) -> usize {
        self.live.len()
    }

    /// The `n`th node in walking order (`n < live_len()`).
    pub fn live_node(&self, n: usize) -> &NodeInfo {
        &self.slots[self.live[n]]
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.by_name.get(name).map(|i| &self.slots[*i])
    }

    /// Names of the nodes that have an object.
    pub fn node_names(&self) -> Vec<String> {
        self.live.iter().map(|i| self.slots[*i].name.clone()).collect()
    }

    pub fn pod(&self, key: &ObjectKey) -> Option<&CachedPod> {
        self.pods.get(key)
    }

    pub fn pods(&self) -> impl Iterator<Item = (&ObjectKey, &CachedPod)> {
        self.pods.iter()
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// The cached pods with required anti-affinity terms.
    pub fn anti_affinity_pods(&self) -> impl Iterator<Item = &CachedPod> {
        self.anti_affinity.iter().filter_map(|k| self.pods.get(k))
    }

    /// Counts `info` on `node` (replacing what the pod counted before).
    pub fn add_pod(&mut self, info: Rc<PodInfo>, node: &str, state: PodState) {
        let key = info.key.clone();
        self.take_pod(&key);
        let i = self.slot(node);
        self.slots[i].usage.add(&info);
        if !info.pod_anti_affinity.is_empty() {
            self.anti_affinity.insert(key.clone());
        }
        self.pods.insert(key, CachedPod { info, node: node.to_string(), state });
    }

    /// Moves a cached pod to another binding state.
    pub fn set_state(&mut self, key: &ObjectKey, state: PodState) {
        if let Some(p) = self.pods.get_mut(key) {
            p.state = state;
        }
    }

    /// Stops counting a pod (room for others: the generation moves); returns what it was.
    pub fn remove_pod(&mut self, key: &ObjectKey) -> Option<CachedPod> {
        let pod = self.take_pod(key)?;
        self.generation += 1;
        Some(pod)
    }

    fn take_pod(&mut self, key: &ObjectKey) -> Option<CachedPod> {
        let pod = self.pods.remove(key)?;
        self.anti_affinity.remove(key);
        if let Some(&i) = self.by_name.get(&pod.node) {
            self.slots[i].usage.remove(&pod.info);
            self.release_if_empty(i);
        }
        Some(pod)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, cpu: &str) -> Rc<PodInfo> {
        let pod = json!({"metadata": {"namespace": "d", "name": name}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": cpu}}, "ports": [{"containerPort": 80, "hostPort": 80}]},
        ]}});
        Rc::new(PodInfo::parse(&pod).unwrap())
    }

    #[test]
    fn pods_count_on_their_node_until_removed_even_before_the_node_exists() {
        let mut cache = Cache::default();
        cache.add_pod(pod("a", "1"), "n1", PodState::Binding);
        assert_eq!(cache.live_len(), 0);
        let node = NodeObj::parse(&json!({"status": {"allocatable": {"cpu": "4", "pods": "110"}}}));
        assert!(cache.set_node("n1", node.clone()));
        assert!(!cache.set_node("n1", node), "an unchanged node is no change");
        assert_eq!(cache.live_len(), 1);
        let usage = &cache.node("n1").unwrap().usage;
        assert_eq!((usage.requested.milli_cpu, usage.pods), (1000, 1));
        assert!(usage.port_conflict(&pod("b", "1").host_ports[0]));
        // Moving a pod between nodes moves what it uses.
        cache.add_pod(pod("a", "1"), "n2", PodState::Observed);
        assert_eq!(cache.node("n1").unwrap().usage.pods, 0);
        cache.remove_pod(&ObjectKey::new(Some("d"), "a"));
        assert!(cache.node("n2").is_none(), "an empty slot without a node is released");
        cache.remove_node("n1");
        assert_eq!(cache.live_len(), 0);
        assert!(cache.node("n1").is_none());
    }
}
