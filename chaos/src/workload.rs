//! The chaos workload through the Kubernetes API: clients create, compare-and-swap update,
//! delete and read ConfigMaps of one namespace through every member, while watchers on
//! different members follow the namespace; everything is recorded as a [`History`] for the
//! checkers.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::api_client::{Answer, ApiClient, ApiError};
use crate::history::{FailReason, History, Op, OpKind, Outcome, Rv, Versioned, WatchEventType, WatchLog};

/// The namespace the workload writes in (`default` exists in every cluster).
pub const NAMESPACE: &str = "default";

/// What the workload does.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub clients: usize,
    /// ConfigMaps `chaos-0` .. `chaos-{keys-1}`.
    pub keys: usize,
    pub watchers: usize,
    /// How long one request may take before its outcome counts as unknown.
    pub timeout: Duration,
    pub seed: u64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig { clients: 6, keys: 8, watchers: 3, timeout: Duration::from_secs(2), seed: 1 }
    }
}

/// A running workload; [`Workload::finish`] stops it and returns the history.
pub struct Workload {
    /// When the run began: operations' times are nanoseconds since then.
    started: Instant,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    ops: Arc<Mutex<Vec<Op>>>,
    watches: Arc<Mutex<BTreeMap<u32, WatchLog>>>,
    members: Members,
    timeout: Duration,
}

fn path(key: &str) -> String {
    format!("/api/v1/namespaces/{NAMESPACE}/configmaps/{key}")
}

fn rv_of(obj: &Value) -> Option<Rv> {
    obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).and_then(|s| s.parse().ok())
}

fn value_of(obj: &Value) -> Option<String> {
    obj.pointer("/data/v").and_then(Value::as_str).map(String::from)
}

fn configmap(key: &str, value: &str, rv: Option<Rv>) -> Value {
    let mut obj = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": key, "namespace": NAMESPACE, "labels": {"chaos": "workload"}},
        "data": {"v": value},
    });
    if let Some(rv) = rv {
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    }
    obj
}

/// What an answer says of a write or read.
fn outcome(kind: &OpKind, result: Result<Answer, ApiError>) -> Outcome {
    match result {
        Ok(answer) if (200..300).contains(&answer.status) => {
            Outcome::Ok { rv: rv_of(&answer.body), value: value_of(&answer.body) }
        }
        Ok(answer) => match (answer.status, answer.reason()) {
            // A create's 404 is its namespace's (not made yet at the very start): no effect.
            (404, _) if matches!(kind, OpKind::Create { .. }) => Outcome::Fail { reason: FailReason::Other },
            (404, _) => Outcome::Fail { reason: FailReason::NotFound },
            (409, "AlreadyExists") => Outcome::Fail { reason: FailReason::AlreadyExists },
            (409, _) => Outcome::Fail { reason: FailReason::Conflict },
            // Refused before anything was written: bad request, too many requests.
            (400 | 403 | 422 | 429, _) => Outcome::Fail { reason: FailReason::Other },
            // 5xx (the store's outcome may be unknown), 504 timeouts.
            _ if kind.is_write() => Outcome::Indeterminate,
            _ => Outcome::Fail { reason: FailReason::Other },
        },
        Err(ApiError::NotSent(_)) | Err(ApiError::Setup(_)) => Outcome::Fail { reason: FailReason::Other },
        Err(ApiError::NoAnswer(_)) if kind.is_write() => Outcome::Indeterminate,
        Err(ApiError::NoAnswer(_)) => Outcome::Fail { reason: FailReason::Other },
    }
}

/// The API servers the workload talks to; replaced as the membership changes.
#[derive(Clone, Default)]
struct Members(Arc<RwLock<Vec<ApiClient>>>);

impl Members {
    fn set(&self, urls: &[String], pki: &Path) -> Result<(), ApiError> {
        if urls.is_empty() {
            return Err(ApiError::Setup("a workload needs at least one API server".into()));
        }
        let clients: Vec<ApiClient> = urls.iter().map(|u| ApiClient::new(u, pki)).collect::<Result<_, _>>()?;
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = clients;
        Ok(())
    }

    fn all(&self) -> Vec<ApiClient> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The member `choose(count)` picks (there is always at least one).
    fn pick(&self, choose: impl FnOnce(usize) -> usize) -> ApiClient {
        let members = self.0.read().unwrap_or_else(PoisonError::into_inner);
        members[choose(members.len()) % members.len()].clone()
    }
}

impl Workload {
    /// Starts clients and watchers against the members' API servers (`https://...` URLs).
    pub fn start(urls: &[String], pki: &Path, config: WorkloadConfig) -> Result<Workload, ApiError> {
        let members = Members::default();
        members.set(urls, pki)?;
        let (stop, stopped) = watch::channel(false);
        let started = Instant::now();
        let ops = Arc::new(Mutex::new(Vec::new()));
        let watches = Arc::new(Mutex::new(BTreeMap::new()));
        let mut tasks = Vec::new();
        for client in 0..config.clients {
            let (members, ops, stopped, config) = (members.clone(), ops.clone(), stopped.clone(), config.clone());
            tasks.push(tokio::spawn(async move {
                run_client(client as u32, members, ops, stopped, config, started).await;
            }));
        }
        for watcher in 0..config.watchers {
            let (members, watches, stopped, timeout) =
                (members.clone(), watches.clone(), stopped.clone(), config.timeout);
            tasks.push(tokio::spawn(async move {
                run_watcher(watcher as u32, members, watches, stopped, timeout).await;
            }));
        }
        Ok(Workload { started, stop, tasks, ops, watches, members, timeout: config.timeout })
    }

    /// Points clients and watchers at these members' API servers from now on (after a member
    /// was replaced: the new one serves, the removed one never will again).
    pub fn set_members(&self, urls: &[String], pki: &Path) -> Result<(), ApiError> {
        self.members.set(urls, pki)
    }

    /// Nanoseconds since the run began, on the clock of the operations' times.
    pub fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// Operations recorded so far.
    pub fn ops(&self) -> usize {
        self.ops.lock().map(|ops| ops.len()).unwrap_or(0)
    }

    /// Acknowledged operations so far (2xx answers), to see progress after a fault.
    pub fn acknowledged(&self) -> usize {
        self.ops.lock().map(|ops| ops.iter().filter(|op| op.is_ok()).count()).unwrap_or(0)
    }

    /// Stops clients and watchers, reads the final state (retrying through the members until
    /// one answers), and returns the history.
    pub async fn finish(self) -> History {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let mut final_state = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        'read: while Instant::now() < deadline {
            for member in self.members.all() {
                if let Ok((_, state)) = list(&member, self.timeout).await {
                    final_state = Some(state);
                    break 'read;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ops = self.ops.lock().map(|ops| ops.clone()).unwrap_or_default();
        let watches = self.watches.lock().map(|w| w.clone()).unwrap_or_default();
        History { ops, watches, final_state }
    }
}

/// Lists the workload's ConfigMaps: the list's resourceVersion and the objects.
async fn list(member: &ApiClient, timeout: Duration) -> Result<(Rv, BTreeMap<String, Versioned>), String> {
    let path = format!("/api/v1/namespaces/{NAMESPACE}/configmaps?labelSelector=chaos%3Dworkload");
    let answer = member.request("GET", &path, None, timeout).await.map_err(|e| e.to_string())?;
    if answer.status != 200 {
        return Err(format!("list: {}", answer.status));
    }
    let rv = rv_of(&answer.body).ok_or("list without resourceVersion")?;
    let mut state = BTreeMap::new();
    for item in answer.body.get("items").and_then(Value::as_array).into_iter().flatten() {
        let name = item.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        if let (Some(rv), Some(value)) = (rv_of(item), value_of(item)) {
            state.insert(name.to_string(), Versioned { rv, value });
        }
    }
    Ok((rv, state))
}

async fn run_client(
    client: u32,
    members: Members,
    ops: Arc<Mutex<Vec<Op>>>,
    stopped: watch::Receiver<bool>,
    config: WorkloadConfig,
    started: Instant,
) {
    let mut rng = StdRng::seed_from_u64(config.seed.wrapping_mul(1000).wrapping_add(u64::from(client)));
    // The resourceVersion this client last saw of each key, for its compare-and-swaps.
    let mut seen: BTreeMap<String, Rv> = BTreeMap::new();
    let mut seq = 0u64;
    let since = |at: Instant| at.duration_since(started).as_nanos() as u64;
    while !*stopped.borrow() {
        seq += 1;
        let key = format!("chaos-{}", rng.gen_range(0..config.keys.max(1)));
        let value = format!("c{client}-{seq}");
        let roll = rng.gen_range(0..100);
        let kind = match (roll, seen.get(&key)) {
            (0..=29, _) => OpKind::Get,
            (30..=49, _) => OpKind::Create { value: value.clone() },
            (50..=79, Some(rv)) => OpKind::Update { value: value.clone(), expected_rv: *rv },
            (80..=99, Some(rv)) => OpKind::Delete { expected_rv: Some(*rv) },
            _ => OpKind::Get,
        };
        let member = &members.pick(|n| rng.gen_range(0..n));
        let invoked = Instant::now();
        let result = match &kind {
            OpKind::Get => member.request("GET", &path(&key), None, config.timeout).await,
            OpKind::Create { value } => {
                let collection = format!("/api/v1/namespaces/{NAMESPACE}/configmaps");
                member.request("POST", &collection, Some(&configmap(&key, value, None)), config.timeout).await
            }
            OpKind::Update { value, expected_rv } => {
                let body = configmap(&key, value, Some(*expected_rv));
                member.request("PUT", &path(&key), Some(&body), config.timeout).await
            }
            OpKind::Delete { expected_rv } => {
                let rv = expected_rv.map(|rv| rv.to_string());
                let body =
                    json!({"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"resourceVersion": rv}});
                member.request("DELETE", &path(&key), Some(&body), config.timeout).await
            }
        };
        let completed = Instant::now();
        let outcome = outcome(&kind, result);
        match (&kind, &outcome) {
            (OpKind::Delete { .. }, Outcome::Ok { .. }) => {
                seen.remove(&key);
            }
            (_, Outcome::Ok { rv: Some(rv), .. }) => {
                seen.insert(key.clone(), *rv);
            }
            (_, Outcome::Fail { reason: FailReason::NotFound }) => {
                seen.remove(&key);
            }
            _ => {}
        }
        // An unknown outcome may take effect later still (a proposal in the leader's log).
        let completed_ns = (!matches!(outcome, Outcome::Indeterminate)).then(|| since(completed));
        let op = Op { client, key, kind, invoked_ns: since(invoked), completed_ns, outcome };
        if let Ok(mut ops) = ops.lock() {
            ops.push(op);
        }
    }
}

async fn run_watcher(
    watcher: u32,
    members: Members,
    watches: Arc<Mutex<BTreeMap<u32, WatchLog>>>,
    mut stopped: watch::Receiver<bool>,
    timeout: Duration,
) {
    let record = |f: &mut dyn FnMut(&mut WatchLog)| {
        if let Ok(mut watches) = watches.lock() {
            if let Some(log) = watches.get_mut(&watcher) {
                f(log);
            }
        }
    };
    let mut turn = watcher as usize;
    // List, then watch from the list's revision; after a broken stream, watch again from the
    // last revision seen (through the next member); after a 410, list again.
    let mut from: Option<Rv> = None;
    while !*stopped.borrow() {
        let member = &members.pick(|n| turn % n);
        turn += 1;
        let rv = match from {
            Some(rv) => rv,
            None => match list(member, timeout).await {
                Ok((rv, state)) => {
                    if let Ok(mut watches) = watches.lock() {
                        match watches.get_mut(&watcher) {
                            Some(log) => log.relist(rv, Some(state)),
                            None => {
                                watches.insert(watcher, WatchLog::new(watcher, rv, Some(state)));
                            }
                        }
                    }
                    rv
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        from = Some(rv);
        let path = format!(
            "/api/v1/namespaces/{NAMESPACE}/configmaps?watch=1&labelSelector=chaos%3Dworkload&resourceVersion={rv}&allowWatchBookmarks=true"
        );
        let Ok((status, mut stream)) = member.watch(&path).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if status == 410 {
            from = None;
            continue;
        }
        if status != 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        loop {
            let event = tokio::select! {
                event = stream.next() => event,
                _ = stopped.changed() => None,
            };
            let Some(event) = event else { break };
            let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
            let obj = event.get("object").cloned().unwrap_or(Value::Null);
            let event_type = match kind {
                "ADDED" => WatchEventType::Added,
                "MODIFIED" => WatchEventType::Modified,
                "DELETED" => WatchEventType::Deleted,
                "BOOKMARK" => WatchEventType::Bookmark,
                _ => {
                    // An ERROR event: 410 Gone means relist; anything else, watch again.
                    if obj.get("code").and_then(Value::as_u64) == Some(410) {
                        from = None;
                    }
                    break;
                }
            };
            let Some(rv) = rv_of(&obj) else { continue };
            let key = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
            let value = value_of(&obj);
            record(&mut |log| log.push(event_type, &key, rv, value.as_deref()));
            from = Some(rv);
        }
    }
}
