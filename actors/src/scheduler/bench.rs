//! A `scheduler_perf`-style benchmark in one process: a single-member store in a temporary
//! directory, the kind actors and the scheduler; `nodes` nodes (4 cpu, 8Gi, 110 pods),
//! then `pods` small pods created as fast as the store takes them. Reports pods bound per
//! second and creation-to-binding latency (from just before each create to the watch
//! event that shows the pod bound). Run it on an actix system (`actix_rt::System`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use raft_store::{StoreConfig, StoreNode};
use serde_json::{json, Value};

use super::Scheduler;
use crate::api_error::ApiError;
use crate::controller::Controllers;
use crate::kind_actor::{Create, KindActors, Patch, Watch};
use crate::kinds::{self, ResourceKind};
use crate::object_store::Part;
use crate::patch::PatchKind;
use crate::FieldValidation;

/// How many creates are in flight at once.
const CREATES_IN_FLIGHT: usize = 256;
/// The longest the benchmark waits without a pod being bound.
const STALL: Duration = Duration::from_secs(60);
const NAMESPACE: &str = "bench";

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The store did not start or elect itself.
    #[error("store: {0}")]
    Store(String),
    /// A create failed.
    #[error("{0}")]
    Api(#[from] ApiError),
    /// Pods stopped being bound.
    #[error("stalled: {bound} of {pods} pods bound, none in the last {STALL:?}")]
    Stalled { bound: usize, pods: usize },
}

/// What the benchmark measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub nodes: usize,
    pub pods: usize,
    /// From the first pod create to the last binding seen.
    pub elapsed: Duration,
    /// Pods bound per second over `elapsed`.
    pub pods_per_sec: f64,
    /// Pods created per second (what fed the scheduler).
    pub creates_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Pods bound per node: the fewest and the most.
    pub spread: (usize, usize),
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} pods on {} nodes in {:.2?}: {:.0} pods/s bound ({:.0} pods/s created); \
             creation to binding p50 {:.1?}, p99 {:.1?}, max {:.1?}; {}..{} pods per node",
            self.pods,
            self.nodes,
            self.elapsed,
            self.pods_per_sec,
            self.creates_per_sec,
            self.p50,
            self.p99,
            self.max,
            self.spread.0,
            self.spread.1
        )
    }
}

fn kind(resource: &str) -> &'static ResourceKind {
    kinds::find("", "v1", resource).unwrap_or(&kinds::BUILTIN[0])
}

async fn store(dir: &std::path::Path) -> Result<StoreNode, BenchError> {
    let err = |e: &dyn std::fmt::Display| BenchError::Store(e.to_string());
    let config = StoreConfig::new(1, dir, ([127, 0, 0, 1], 0).into());
    let node = StoreNode::start_single(config, Duration::from_secs(10)).await.map_err(|e| err(&e))?;
    Ok(node)
}

/// Creates every object `make(i)` describes, `CREATES_IN_FLIGHT` at a time; `started`
/// hears of each just before its create is sent.
async fn create_all(
    actors: &KindActors,
    resource: &str,
    count: usize,
    make: impl Fn(usize) -> Value,
    started: impl Fn(usize),
) -> Result<(), BenchError> {
    let kind = kind(resource);
    let actor = actors.get(kind).ok_or_else(|| ApiError::ServiceUnavailable(format!("no {resource} actor")))?;
    let namespace = kind.namespaced.then(|| NAMESPACE.to_string());
    let creates = futures::stream::iter(0..count).map(|i| {
        let msg = Create { namespace: namespace.clone(), obj: make(i), field_manager: None };
        started(i);
        let actor = actor.clone();
        async move { actor.send(msg).await }
    });
    let mut results = creates.buffer_unordered(CREATES_IN_FLIGHT);
    while let Some(result) = results.next().await {
        result.map_err(|e| ApiError::ServiceUnavailable(e.to_string()))??;
    }
    Ok(())
}

fn node_object(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("node-{i}"), "labels": {
            "kubernetes.io/hostname": format!("node-{i}"), "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
    })
}

/// Reports each node's status (a create drops it), as its kubelet would.
async fn report_status(actors: &KindActors, nodes: usize) -> Result<(), BenchError> {
    let actor = actors.get(kind("nodes")).ok_or_else(|| ApiError::ServiceUnavailable("no nodes actor".into()))?;
    let status = json!({"status": {
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True"}],
    }});
    let body = status.to_string().into_bytes();
    let patches = futures::stream::iter(0..nodes).map(|i| {
        let msg = Patch {
            namespace: None,
            name: format!("node-{i}"),
            patch_kind: PatchKind::Merge,
            body: body.clone(),
            field_manager: Some("kubelet".into()),
            force: false,
            part: Part::Status,
            field_validation: FieldValidation::Ignore,
        };
        let actor = actor.clone();
        async move { actor.send(msg).await }
    });
    let mut results = patches.buffer_unordered(CREATES_IN_FLIGHT);
    while let Some(result) = results.next().await {
        result.map_err(|e| ApiError::ServiceUnavailable(e.to_string()))??;
    }
    Ok(())
}

fn pod_object(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
    })
}

/// Pod name -> when the watch first showed it bound, and to which node.
type Bound = Rc<RefCell<HashMap<String, (Instant, String)>>>;

/// Records bindings from a watch on the bench namespace's pods until `done`.
async fn watch_bindings(actors: KindActors, bound: Bound, done: Rc<Cell<bool>>) {
    while !done.get() {
        let Some(actor) = actors.get(kind("pods")) else { return };
        let watch = Watch { namespace: Some(NAMESPACE.into()), ..Watch::default() };
        let Ok(Ok(start)) = actor.send(watch).await else { return };
        let mut events = futures::stream::iter(start.initial).chain(start.rest);
        while let Some(event) = events.next().await {
            if done.get() {
                return;
            }
            let pod = &event.object;
            let (Some(name), Some(node)) = (
                pod.pointer("/metadata/name").and_then(Value::as_str),
                pod.pointer("/spec/nodeName").and_then(Value::as_str),
            ) else {
                continue;
            };
            bound.borrow_mut().entry(name.to_string()).or_insert_with(|| (Instant::now(), node.to_string()));
        }
        // Dropped as too slow: watch again (what was bound meanwhile is in the new list).
    }
}

/// Runs the benchmark: `nodes` nodes, then `pods` pods; prints progress each second.
pub async fn run(nodes: usize, pods: usize) -> Result<BenchReport, BenchError> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("flotilla-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| BenchError::Store(e.to_string()))?;
    let result = run_in(&dir, nodes, pods).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(dir: &std::path::Path, nodes: usize, pods: usize) -> Result<BenchReport, BenchError> {
    let store = store(dir).await?;
    let result = bench(&store, nodes, pods).await;
    store.shutdown().await;
    result
}

async fn bench(store: &StoreNode, nodes: usize, pods: usize) -> Result<BenchReport, BenchError> {
    let actors = KindActors::start(store);
    let _scheduler = Controllers::new(actors.clone(), store.clone()).with(Scheduler::default).run();
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    create_all(&actors, "namespaces", 1, |_| namespace.clone(), |_| {}).await?;
    let t0 = Instant::now();
    create_all(&actors, "nodes", nodes, node_object, |_| {}).await?;
    report_status(&actors, nodes).await?;
    println!("created {nodes} nodes in {:.2?}", t0.elapsed());

    let bound: Bound = Rc::default();
    let done = Rc::new(Cell::new(false));
    actix_rt::spawn(watch_bindings(actors.clone(), bound.clone(), done.clone()));
    let created: Rc<RefCell<Vec<Option<Instant>>>> = Rc::new(RefCell::new(vec![None; pods]));
    let start = Instant::now();
    let creating = {
        let (actors, created) = (actors.clone(), created.clone());
        actix_rt::spawn(async move {
            let mark = |i: usize| {
                if let Some(slot) = created.borrow_mut().get_mut(i) {
                    *slot = Some(Instant::now());
                }
            };
            let result = create_all(&actors, "pods", pods, pod_object, mark).await;
            (result, start.elapsed())
        })
    };
    let (mut last_count, mut last_progress) = (0, Instant::now());
    while bound.borrow().len() < pods {
        actix_rt::time::sleep(Duration::from_secs(1)).await;
        let count = bound.borrow().len();
        let made = created.borrow().iter().filter(|c| c.is_some()).count();
        println!("{:>6.1}s: {made} pods created, {count} bound", start.elapsed().as_secs_f64());
        if count > last_count {
            (last_count, last_progress) = (count, Instant::now());
        } else if creating.is_finished() && made < pods {
            // A create failed: its error is the answer.
            break;
        } else if last_progress.elapsed() > STALL {
            done.set(true);
            return Err(BenchError::Stalled { bound: count, pods });
        }
    }
    done.set(true);
    let (result, create_time) = creating.await.map_err(|e| BenchError::Store(e.to_string()))?;
    result?;
    let report = measure(nodes, pods, start, create_time, &bound.borrow(), &created.borrow());
    println!("{report}");
    Ok(report)
}

/// The report from when each pod was created and bound.
fn measure(
    nodes: usize,
    pods: usize,
    start: Instant,
    create_time: Duration,
    bound: &HashMap<String, (Instant, String)>,
    created: &[Option<Instant>],
) -> BenchReport {
    let mut latencies: Vec<Duration> = (0..pods)
        .filter_map(|i| {
            let (at, _) = bound.get(&format!("pod-{i}"))?;
            Some(at.saturating_duration_since((*created.get(i)?)?))
        })
        .collect();
    latencies.sort();
    let pick = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)));
    let last = bound.values().map(|(at, _)| *at).max().unwrap_or(start);
    let elapsed = last.saturating_duration_since(start);
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for (_, node) in bound.values() {
        *per_node.entry(node.as_str()).or_insert(0) += 1;
    }
    let fewest = if per_node.len() < nodes { 0 } else { per_node.values().copied().min().unwrap_or(0) };
    BenchReport {
        nodes,
        pods,
        elapsed,
        pods_per_sec: pods as f64 / elapsed.as_secs_f64().max(1e-9),
        creates_per_sec: pods as f64 / create_time.as_secs_f64().max(1e-9),
        p50: pick(0.5).copied().unwrap_or_default(),
        p99: pick(0.99).copied().unwrap_or_default(),
        max: latencies.last().copied().unwrap_or_default(),
        spread: (fewest, per_node.values().copied().max().unwrap_or(0)),
    }
}
