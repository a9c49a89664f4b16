//! The last two scrapes of every node and container, and the usage they make: CPU as the
//! rate of the cumulative counter between them, memory as the last working set. The rules
//! are metrics-server's (`pkg/storage`): a point is kept only when newer than the one
//! stored, a container that restarted starts over, and a pod is served only when every
//! container has two points.

use std::collections::{BTreeMap, HashMap};

use crate::prometheus::{Batch, PodRef, Point};

/// A fresh container's first point is rated from its start time only when it started at
/// least this long before (shorter windows give wild rates): metrics-server's 10 s.
const FRESH_CONTAINER_MIN_WINDOW: i64 = 10_000_000_000;

/// Usage over one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// When the later point was measured, in ns since the Unix epoch.
    pub timestamp: i64,
    /// Between the two points, in ns.
    pub window: i64,
    /// CPU in nanocores (nanoseconds of CPU per second).
    pub cpu: u64,
    /// Working set in bytes, at `timestamp`.
    pub memory: u64,
    pub swap: Option<u64>,
}

/// The points of the last two scrapes.
#[derive(Debug, Default)]
pub struct Store {
    nodes_last: HashMap<String, Point>,
    nodes_prev: HashMap<String, Point>,
    pods_last: HashMap<PodRef, BTreeMap<String, Point>>,
    pods_prev: HashMap<PodRef, BTreeMap<String, Point>>,
    /// The scrape interval, in ns.
    resolution: i64,
}

impl Store {
    /// A store for scrapes `resolution_ns` apart.
    pub fn new(resolution_ns: i64) -> Store {
        Store { resolution: resolution_ns, ..Store::default() }
    }

    /// Whether any usage can be served (some node or container has two points).
    pub fn ready(&self) -> bool {
        !self.nodes_prev.is_empty() || !self.pods_prev.is_empty()
    }

    /// Takes a new scrape of every node; nodes and pods absent from it are forgotten.
    pub fn store(&mut self, batch: Batch) {
        let mut last = HashMap::with_capacity(batch.nodes.len());
        let mut prev = HashMap::with_capacity(batch.nodes.len());
        for (name, point) in batch.nodes {
            if let Some(stored) = self.nodes_last.get(&name) {
                if point.timestamp > stored.timestamp {
                    prev.insert(name.clone(), *stored);
                } else if let Some(before) = self.nodes_prev.get(&name).filter(|p| p.timestamp < point.timestamp) {
                    // The same scrape again: keep the older point.
                    prev.insert(name.clone(), *before);
                }
            }
            last.insert(name, point);
        }
        self.nodes_last = last;
        self.nodes_prev = prev;

        let mut last = HashMap::with_capacity(batch.pods.len());
        let mut prev = HashMap::with_capacity(batch.pods.len());
        for (pod, containers) in batch.pods {
            let mut prev_containers = BTreeMap::new();
            for (name, point) in &containers {
                if let Some(from_start) = self.fresh_start(point) {
                    prev_containers.insert(name.clone(), from_start);
                    continue;
                }
                let Some(stored) = self.pods_last.get(&pod).and_then(|c| c.get(name)) else { continue };
                // Started again after the stored point: a restart, whose counter began anew.
                if point.start >= stored.timestamp {
                    continue;
                }
                if point.timestamp > stored.timestamp {
                    prev_containers.insert(name.clone(), *stored);
                } else if let Some(before) = self
                    .pods_prev
                    .get(&pod)
                    .and_then(|c| c.get(name))
                    .filter(|before| before.timestamp < point.timestamp)
                {
                    prev_containers.insert(name.clone(), *before);
                }
            }
            if !prev_containers.is_empty() {
                prev.insert(pod.clone(), prev_containers);
            }
            last.insert(pod, containers);
        }
        self.pods_last = last;
        self.pods_prev = prev;
    }

    /// For a container that started within the last scrape interval (but long enough ago):
    /// a point at its start with nothing used, so its first scrape already gives a rate.
    fn fresh_start(&self, point: &Point) -> Option<Point> {
        let age = point.timestamp - point.start;
        (point.start > 0 && age > 0 && age < self.resolution && age >= FRESH_CONTAINER_MIN_WINDOW).then_some(Point {
            timestamp: point.start,
            cpu: 0,
            ..*point
        })
    }

    /// The usage of node `name`, once it has two points.
    pub fn node(&self, name: &str) -> Option<Usage> {
        let (last, prev) = (self.nodes_last.get(name)?, self.nodes_prev.get(name)?);
        usage(last, prev).inspect_err(|e| tracing::warn!(node = name, "skipping node usage: {e}")).ok()
    }

    /// The usage of each container of `pod` (by name), and the earliest of their times;
    /// `None` unless every container has two points.
    pub fn pod(&self, pod: &PodRef) -> Option<(Usage, Vec<(String, Usage)>)> {
        let (last, prev) = (self.pods_last.get(pod)?, self.pods_prev.get(pod)?);
        let mut containers = Vec::with_capacity(last.len());
        let mut earliest: Option<Usage> = None;
        for (name, point) in last {
            let before = prev.get(name)?;
            match usage(point, before) {
                Ok(u) => {
                    if earliest.is_none_or(|e| u.timestamp < e.timestamp) {
                        earliest = Some(u);
                    }
                    containers.push((name.clone(), u));
                }
                Err(e) => tracing::warn!(pod = pod.name, container = name, "skipping container usage: {e}"),
            }
        }
        Some((earliest?, containers))
    }
}

/// The usage between two points of one node or container.
fn usage(last: &Point, prev: &Point) -> Result<Usage, &'static str> {
    if last.start < prev.start {
        return Err("unexpected decrease in start time");
    }
    if last.cpu < prev.cpu {
        return Err("unexpected decrease in cumulative CPU usage");
    }
    let window = last.timestamp - prev.timestamp;
    if window <= 0 {
        return Err("points out of order");
    }
    // Integer arithmetic: a steady counter gives an exact rate.
    let rate = u128::from(last.cpu - prev.cpu) * 1_000_000_000 / window.unsigned_abs() as u128;
    Ok(Usage {
        timestamp: last.timestamp,
        window,
        cpu: u64::try_from(rate).unwrap_or(u64::MAX),
        memory: last.memory,
        swap: last.swap,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const SECOND: i64 = 1_000_000_000;

    fn point(timestamp_s: i64, cpu_ms: u64, memory: u64) -> Point {
        Point { start: SECOND, timestamp: timestamp_s * SECOND, cpu: cpu_ms * 1_000_000, memory, swap: None }
    }

    fn node_batch(p: Point) -> Batch {
        let mut batch = Batch::default();
        batch.nodes.insert("n".into(), p);
        batch
    }

    fn pod_batch(containers: &[(&str, Point)]) -> Batch {
        let mut batch = Batch::default();
        let pod = batch.pods.entry(web()).or_default();
        for (name, p) in containers {
            pod.insert((*name).into(), *p);
        }
        batch
    }

    fn web() -> PodRef {
        PodRef { namespace: "default".into(), name: "web".into() }
    }

    #[test]
    fn cpu_is_the_rate_between_the_last_two_scrapes() {
        let mut store = Store::new(15 * SECOND);
        store.store(node_batch(point(100, 1_000, 512)));
        assert_eq!(store.node("n"), None, "one point makes no rate");
        assert!(!store.ready());
        store.store(node_batch(point(115, 4_750, 1024)));
        let usage = store.node("n").unwrap();
        assert_eq!(usage.cpu, 250_000_000, "3.75 s of CPU over 15 s is 250m");
        assert_eq!((usage.memory, usage.window, usage.timestamp), (1024, 15 * SECOND, 115 * SECOND));
        assert!(store.ready());
    }

    #[test]
    fn a_repeated_scrape_keeps_the_older_point() {
        let mut store = Store::new(15 * SECOND);
        store.store(node_batch(point(100, 0, 1)));
        store.store(node_batch(point(110, 1_000, 1)));
        store.store(node_batch(point(110, 1_000, 1)));
        assert_eq!(store.node("n").unwrap().cpu, 100_000_000);
        assert_eq!(store.node("n").unwrap().window, 10 * SECOND);
    }

    #[test]
    fn a_counter_that_went_back_gives_no_usage() {
        let mut store = Store::new(15 * SECOND);
        store.store(node_batch(point(100, 5_000, 1)));
        store.store(node_batch(point(110, 1_000, 1)));
        assert_eq!(store.node("n"), None);
    }

    #[test]
    fn a_node_missing_from_a_scrape_is_forgotten() {
        let mut store = Store::new(15 * SECOND);
        store.store(node_batch(point(100, 0, 1)));
        store.store(node_batch(point(110, 1_000, 1)));
        store.store(Batch::default());
        assert_eq!(store.node("n"), None);
        store.store(node_batch(point(120, 2_000, 1)));
        assert_eq!(store.node("n"), None, "it starts over");
    }

    #[test]
    fn a_pod_is_served_when_every_container_has_two_points() {
        let mut store = Store::new(15 * SECOND);
        store.store(pod_batch(&[("app", point(100, 0, 64))]));
        store.store(pod_batch(&[("app", point(110, 500, 64)), ("sidecar", point(110, 100, 8))]));
        assert_eq!(store.pod(&web()), None, "the sidecar has one point");
        store.store(pod_batch(&[("app", point(120, 1_500, 65)), ("sidecar", point(121, 1_200, 8))]));
        let (time, containers) = store.pod(&web()).unwrap();
        assert_eq!(time.timestamp, 120 * SECOND, "the earliest container's time");
        let names: Vec<_> = containers.iter().map(|(n, u)| (n.as_str(), u.cpu, u.memory)).collect();
        assert_eq!(names, [("app", 100_000_000, 65), ("sidecar", 100_000_000, 8)]);
    }

    #[test]
    fn a_restarted_container_starts_over() {
        let mut store = Store::new(15 * SECOND);
        store.store(pod_batch(&[("app", point(100, 0, 64))]));
        store.store(pod_batch(&[("app", point(110, 500, 64))]));
        assert!(store.pod(&web()).is_some());
        let restarted = Point { start: 112 * SECOND, ..point(120, 100, 64) };
        store.store(pod_batch(&[("app", restarted)]));
        assert_eq!(store.pod(&web()), None);
    }

    #[test]
    fn a_fresh_container_is_rated_from_its_start() {
        let mut store = Store::new(60 * SECOND);
        let fresh = Point { start: 100 * SECOND, ..point(130, 3_000, 64) };
        store.store(pod_batch(&[("app", fresh)]));
        let (time, containers) = store.pod(&web()).unwrap();
        assert_eq!((time.window, containers[0].1.cpu), (30 * SECOND, 100_000_000));
    }
}
