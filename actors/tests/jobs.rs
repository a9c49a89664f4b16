//! The Job, CronJob, TTL-after-finished and pod GC controllers over a real single-member
//! store, with the test as the kubelet (it marks Job pods Succeeded or Failed through the
//! status subresource): a Job of 3 completions never runs more than 2 pods and completes;
//! failing pods past `backoffLimit` fail it; an Indexed Job runs indexes 0..n; a deadline
//! fails a Job and deletes its pods; a suspended Job starts once resumed; pods orphaned by
//! their Job lose the tracking finalizer; a CronJob (on a clock moved to just before a
//! minute) creates its Job at that minute and, past its history limit, deletes it once
//! complete; at the next minute `Allow` runs a second Job, `Forbid` does not, `Replace`
//! deletes the first; a finished Job with a TTL is deleted; pods of a deleted Node are
//! collected.

#![allow(clippy::unwrap_used)]

mod common;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actors::controller::Controllers;
use actors::controllers::cron_job::{Clock as CronClock, CronJobs, SCHEDULED_TIMESTAMP};
use actors::controllers::job::Jobs;
use actors::controllers::pod_gc::PodGc;
use actors::kinds::find;
use actors::patch::PatchKind;
use actors::{Create, Delete, DeleteOptions, FieldValidation, Get, KindActors, List, Part, Patch, ResourceKind, Watch};
use futures::StreamExt;
use serde_json::{json, Value};
use time::OffsetDateTime;

use common::single_member;

const DEADLINE: Duration = Duration::from_secs(30);
const NS: &str = "default";
const JOB_NAME: &str = "batch.kubernetes.io/job-name";
const INDEX: &str = "batch.kubernetes.io/job-completion-index";
const TRACKING: &str = "batch.kubernetes.io/job-tracking";

fn pods() -> &'static ResourceKind {
    find("", "v1", "pods").unwrap()
}
fn nodes() -> &'static ResourceKind {
    find("", "v1", "nodes").unwrap()
}
fn jobs() -> &'static ResourceKind {
    find("batch", "v1", "jobs").unwrap()
}
fn cron_jobs() -> &'static ResourceKind {
    find("batch", "v1", "cronjobs").unwrap()
}

/// A store, its kind actors and controllers.
struct Cluster {
    kinds: KindActors,
    _controllers: actix::Addr<Controllers>,
    node: raft_store::StoreNode,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// With every controller.
    async fn start() -> Cluster {
        Cluster::start_with(|kinds, node| actors::controllers::start_all(kinds, node, None)).await
    }

    /// With the controllers `start` starts.
    async fn start_with(start: impl FnOnce(KindActors, raft_store::StoreNode) -> actix::Addr<Controllers>) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let node = single_member(dir.path()).await;
        let kinds = KindActors::start(&node);
        let controllers = start(kinds.clone(), node.clone());
        let cluster = Cluster { kinds, _controllers: controllers, node, _dir: dir };
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
        let create = Create { namespace: None, obj: ns, field_manager: Some("test".into()) };
        let _ = cluster.kinds.get(find("", "v1", "namespaces").unwrap()).unwrap().send(create).await.unwrap();
        cluster
    }

    async fn stop(&self) {
        self.node.shutdown().await;
    }

    fn ns(kind: &ResourceKind) -> Option<String> {
        kind.namespaced.then(|| NS.to_string())
    }

    async fn create(&self, kind: &ResourceKind, obj: Value) -> Value {
        let msg = Create { namespace: Cluster::ns(kind), obj, field_manager: Some("test".into()) };
        self.kinds.get(kind).unwrap().send(msg).await.unwrap().unwrap()
    }

    async fn get(&self, kind: &ResourceKind, name: &str) -> Option<Value> {
        let msg = Get { namespace: Cluster::ns(kind), name: name.into() };
        self.kinds.get(kind).unwrap().send(msg).await.unwrap().ok()
    }

    async fn list(&self, kind: &ResourceKind) -> Vec<Value> {
        let msg = List { namespace: Cluster::ns(kind), ..Default::default() };
        self.kinds.get(kind).unwrap().send(msg).await.unwrap().unwrap().items().unwrap()
    }

    async fn delete(&self, kind: &ResourceKind, name: &str) {
        self.delete_with(kind, name, "{}").await;
    }

    /// Deletes with the JSON `DeleteOptions` `options`.
    async fn delete_with(&self, kind: &ResourceKind, name: &str, options: &str) {
        let options = DeleteOptions::from_body(options.as_bytes()).unwrap();
        let msg = Delete { namespace: Cluster::ns(kind), name: name.into(), options };
        self.kinds.get(kind).unwrap().send(msg).await.unwrap().unwrap();
    }

    async fn patch(&self, kind: &ResourceKind, name: &str, part: Part, body: Value) -> Option<Value> {
        let msg = Patch {
            namespace: Cluster::ns(kind),
            name: name.into(),
            patch_kind: PatchKind::Merge,
            body: body.to_string().into_bytes(),
            field_manager: Some("test".into()),
            force: false,
            part,
            field_validation: FieldValidation::Ignore,
        };
        self.kinds.get(kind).unwrap().send(msg).await.unwrap().ok().map(|w| w.obj)
    }

    /// The pods of Job `job`, by name.
    async fn pods_of(&self, job: &str) -> Vec<Value> {
        let mut found: Vec<Value> =
            self.list(pods()).await.into_iter().filter(|p| p["metadata"]["labels"][JOB_NAME] == job).collect();
        found.sort_by(|a, b| name(a).cmp(name(b)));
        found
    }

    /// A fake kubelet: every Job pod that runs ends in `phase` (`Succeeded`, `Failed`),
    /// until `stop` is set.
    fn kubelet(self: &Rc<Self>, phase: &'static str, stop: Rc<Cell<bool>>) {
        let cluster = self.clone();
        actix_rt::spawn(async move {
            while !stop.get() {
                for pod in cluster.list(pods()).await {
                    if pod["metadata"]["labels"].get(JOB_NAME).is_some() && is_active(&pod) {
                        let status = json!({"status": {"phase": phase}});
                        cluster.patch(pods(), name(&pod), Part::Status, status).await;
                    }
                }
                actix_rt::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }

    /// Waits for Job `name` to have condition `kind` `True`.
    async fn job_with(&self, job: &str, kind: &str) -> Value {
        eventually(&format!("job {job} {kind}"), || async {
            let j = self.get(jobs(), job).await?;
            condition(&j, kind).is_some_and(|c| c["status"] == "True").then_some(j)
        })
        .await
    }
}

struct StopOnDrop(Rc<Cell<bool>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

/// Running or waiting to: not finished, not being deleted.
fn is_active(pod: &Value) -> bool {
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    phase != "Succeeded" && phase != "Failed" && pod["metadata"].get("deletionTimestamp").is_none()
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind)
}

fn condition_types(obj: &Value) -> Vec<String> {
    let conditions = obj["status"]["conditions"].as_array().cloned().unwrap_or_default();
    conditions.iter().map(|c| c["type"].as_str().unwrap_or("").to_string()).collect()
}

/// Polls `check` until it gives a value, failing with `what` after [`DEADLINE`].
async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, check: impl FnMut() -> F) -> T {
    eventually_within(DEADLINE, what, check).await
}

async fn eventually_within<T, F: Future<Output = Option<T>>>(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + deadline;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

fn job(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["template"] = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}});
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec})
}

#[actix_rt::test]
async fn a_job_of_three_completions_runs_at_most_two_pods_and_completes() {
    let cluster = Rc::new(Cluster::start().await);
    let mut watch = cluster
        .kinds
        .get(pods())
        .unwrap()
        .send(Watch { namespace: Some(NS.into()), ..Default::default() })
        .await
        .unwrap()
        .unwrap();
    let created = cluster.create(jobs(), job("pi", json!({"completions": 3, "parallelism": 2}))).await;
    let stop = Rc::new(Cell::new(false));
    let _stop = StopOnDrop(stop.clone());

    // Every pod event: never more than 2 of its pods active. The kubelet starts once 2
    // run.
    let mut current: BTreeMap<String, Value> = BTreeMap::new();
    let deadline = Instant::now() + DEADLINE;
    let mut most = 0;
    loop {
        let next = actix_rt::time::timeout(Duration::from_millis(200), watch.rest.next()).await;
        if let Ok(Some(e)) = next {
            if e.object["metadata"]["labels"][JOB_NAME] == "pi" {
                if e.event_type == "DELETED" {
                    current.remove(name(&e.object));
                } else {
                    current.insert(name(&e.object).to_string(), e.object);
                }
                let active = current.values().filter(|p| is_active(p)).count();
                assert!(active <= 2, "{active} pods active at once");
                if active == 2 && most < 2 {
                    cluster.kubelet("Succeeded", stop.clone());
                }
                most = most.max(active);
            }
        }
        let j = cluster.get(jobs(), "pi").await.unwrap();
        if condition(&j, "Complete").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the job never completed: {j}");
    }
    assert_eq!(most, 2, "two pods ran at once");
    let j = cluster.job_with("pi", "Complete").await;
    let s = &j["status"];
    assert_eq!((s["succeeded"].as_i64(), s.get("failed"), s.get("active")), (Some(3), None, None));
    assert_eq!((s["ready"].as_i64(), s["terminating"].as_i64()), (Some(0), Some(0)));
    assert!(s["startTime"].is_string() && s["completionTime"].is_string());
    assert_eq!(condition_types(&j), ["SuccessCriteriaMet", "Complete"]);
    let complete = condition(&j, "Complete").unwrap();
    assert_eq!(complete["reason"], "CompletionsReached");
    assert_eq!(complete["message"], "Reached expected number of succeeded pods");
    assert_eq!(s["uncountedTerminatedPods"], json!({}));

    // Three pods, each with kube's labels and owner, none left with the finalizer.
    let pods = eventually("no pod keeps the tracking finalizer", || async {
        let pods = cluster.pods_of("pi").await;
        pods.iter().all(|p| p["metadata"].get("finalizers").is_none()).then_some(pods)
    })
    .await;
    assert_eq!(pods.len(), 3);
    let uid = created["metadata"]["uid"].as_str().unwrap();
    for p in &pods {
        let labels = &p["metadata"]["labels"];
        assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
        assert_eq!((labels["controller-uid"].as_str(), labels["job-name"].as_str()), (Some(uid), Some("pi")));
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!((owner["apiVersion"].as_str(), owner["kind"].as_str()), (Some("batch/v1"), Some("Job")));
        assert_eq!((owner["controller"].as_bool(), owner["uid"].as_str()), (Some(true), Some(uid)));
        assert!(name(p).starts_with("pi-"));
    }
    stop.set(true);
    cluster.stop().await;
}

#[actix_rt::test]
async fn failing_pods_past_the_backoff_limit_fail_the_job() {
    let cluster = Rc::new(Cluster::start().await);
    cluster.create(jobs(), job("flaky", json!({"backoffLimit": 1}))).await;
    let stop = Rc::new(Cell::new(false));
    let _stop = StopOnDrop(stop.clone());
    cluster.kubelet("Failed", stop.clone());
    // The second pod waits out the 10 s backoff after the first failure.
    let j = eventually_within(DEADLINE + Duration::from_secs(15), "the job failed", || async {
        let j = cluster.get(jobs(), "flaky").await?;
        condition(&j, "Failed").is_some().then_some(j)
    })
    .await;
    let failed = condition(&j, "Failed").unwrap();
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(failed["message"], "Job has reached the specified backoff limit");
    assert_eq!(condition_types(&j), ["FailureTarget", "Failed"]);
    assert_eq!((j["status"]["failed"].as_i64(), j["status"].get("succeeded")), (Some(2), None));
    assert!(j["status"].get("completionTime").is_none());
    assert_eq!(cluster.pods_of("flaky").await.len(), 2, "one pod, then one replacement");
    stop.set(true);
    cluster.stop().await;
}

#[actix_rt::test]
async fn an_indexed_job_runs_one_pod_per_index() {
    let cluster = Rc::new(Cluster::start().await);
    let spec = json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"});
    cluster.create(jobs(), job("ix", spec)).await;
    let pods = eventually("3 indexed pods", || async {
        let pods = cluster.pods_of("ix").await;
        (pods.len() == 3).then_some(pods)
    })
    .await;
    let mut indexes = BTreeSet::new();
    for p in &pods {
        let ix = p["metadata"]["annotations"][INDEX].as_str().unwrap().to_string();
        assert_eq!(p["metadata"]["labels"][INDEX], ix.as_str());
        assert_eq!(p["spec"]["hostname"], format!("ix-{ix}"));
        assert!(name(p).starts_with(&format!("ix-{ix}-")), "{}", name(p));
        let env = &p["spec"]["containers"][0]["env"][0];
        assert_eq!(env["name"], "JOB_COMPLETION_INDEX");
        assert_eq!(p["metadata"]["finalizers"], json!([TRACKING]));
        indexes.insert(ix);
    }
    assert_eq!(indexes, ["0", "1", "2"].into_iter().map(String::from).collect());
    let stop = Rc::new(Cell::new(false));
    let _stop = StopOnDrop(stop.clone());
    cluster.kubelet("Succeeded", stop.clone());
    let j = cluster.job_with("ix", "Complete").await;
    assert_eq!((j["status"]["completedIndexes"].as_str(), j["status"]["succeeded"].as_i64()), (Some("0-2"), Some(3)));
    stop.set(true);
    cluster.stop().await;
}

#[actix_rt::test]
async fn a_job_past_its_deadline_fails_and_loses_its_pods() {
    let cluster = Cluster::start().await;
    // No kubelet: its pod never starts.
    cluster.create(jobs(), job("slow", json!({"activeDeadlineSeconds": 1}))).await;
    let j = cluster.job_with("slow", "Failed").await;
    let failed = condition(&j, "Failed").unwrap();
    assert_eq!(failed["reason"], "DeadlineExceeded");
    assert_eq!(failed["message"], "Job was active longer than specified deadline");
    assert_eq!(j["status"]["failed"].as_i64(), Some(1), "the deleted pod counts as failed");
    eventually("the pod deleted", || async { cluster.pods_of("slow").await.is_empty().then_some(()) }).await;
    cluster.stop().await;
}

#[actix_rt::test]
async fn a_suspended_job_starts_no_pod_until_resumed() {
    let cluster = Cluster::start().await;
    cluster.create(jobs(), job("later", json!({"suspend": true}))).await;
    let j = cluster.job_with("later", "Suspended").await;
    assert_eq!(condition(&j, "Suspended").unwrap()["reason"], "JobSuspended");
    assert!(j["status"].get("startTime").is_none());
    assert!(cluster.pods_of("later").await.is_empty());
    cluster.patch(jobs(), "later", Part::Main, json!({"spec": {"suspend": false}})).await.unwrap();
    eventually("a pod once resumed", || async { (cluster.pods_of("later").await.len() == 1).then_some(()) }).await;
    let j = eventually("resumed", || async {
        let j = cluster.get(jobs(), "later").await?;
        (condition(&j, "Suspended")?["status"] == "False").then_some(j)
    })
    .await;
    assert_eq!(condition(&j, "Suspended").unwrap()["reason"], "JobResumed");
    assert!(j["status"]["startTime"].is_string());
    cluster.stop().await;
}

#[actix_rt::test]
async fn pods_orphaned_by_their_job_lose_the_tracking_finalizer() {
    let cluster = Cluster::start().await;
    cluster.create(jobs(), job("left", json!({"parallelism": 2, "completions": 2}))).await;
    eventually("2 pods", || async { (cluster.pods_of("left").await.len() == 2).then_some(()) }).await;
    cluster.delete_with(jobs(), "left", r#"{"propagationPolicy": "Orphan"}"#).await;
    eventually("orphans without owner or finalizer", || async {
        let pods = cluster.pods_of("left").await;
        let free =
            |p: &Value| p["metadata"].get("ownerReferences").is_none() && p["metadata"].get("finalizers").is_none();
        (pods.len() == 2 && pods.iter().all(free)).then_some(())
    })
    .await;
    eventually("the job gone", || async { cluster.get(jobs(), "left").await.is_none().then_some(()) }).await;
    cluster.stop().await;
}

/// The CronJob controller's clock: now, moved on by the seconds in the cell.
fn test_clock() -> (Rc<Cell<i64>>, CronClock) {
    let offset = Rc::new(Cell::new(0));
    let shared = offset.clone();
    (offset, Rc::new(move || OffsetDateTime::now_utc() + time::Duration::seconds(shared.get())))
}

/// Moves the clock to a second before a whole minute at least 10 s from now (so that
/// CronJobs created meanwhile are older than it); returns that minute (Unix seconds). The
/// CronJobs' `startingDeadlineSeconds: 30` keeps the minutes the clock skipped out.
fn aim(offset: &Cell<i64>) -> i64 {
    let real = OffsetDateTime::now_utc().unix_timestamp();
    let minute = ((real + 10) / 60 + 1) * 60;
    offset.set(minute - 1 - real);
    minute
}

#[actix_rt::test]
async fn a_cron_job_creates_its_job_at_the_scheduled_minute() {
    // The controller's clock runs a second before a minute later than the CronJob's
    // creation, so that minute comes within a second.
    let (offset, clock) = test_clock();
    let cluster = Rc::new(
        Cluster::start_with(move |kinds, node| {
            Controllers::new(kinds, node).with(Jobs::new).with(move || CronJobs::with_clock(clock.clone())).run()
        })
        .await,
    );
    let minute = aim(&offset);
    let template = json!({"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}});
    let cj = json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "*/1 * * * *",
            "jobTemplate": template,
            "successfulJobsHistoryLimit": 0,
            "startingDeadlineSeconds": 30,
        },
    });
    let cj = cluster.create(cron_jobs(), cj).await;
    let expected = format!("tick-{}", minute / 60);
    let created = eventually("the scheduled job", || cluster.get(jobs(), &expected)).await;
    let owner = &created["metadata"]["ownerReferences"][0];
    assert_eq!((owner["kind"].as_str(), owner["uid"].as_str()), (Some("CronJob"), cj["metadata"]["uid"].as_str()));
    let at = OffsetDateTime::from_unix_timestamp(minute).unwrap();
    let stamp = actors::objects::timestamp(at);
    assert_eq!(created["metadata"]["annotations"][SCHEDULED_TIMESTAMP], stamp.as_str());
    let cj = eventually("the job active", || async {
        let cj = cluster.get(cron_jobs(), "tick").await?;
        (cj["status"]["active"][0]["name"] == expected.as_str()).then_some(cj)
    })
    .await;
    assert_eq!(cj["status"]["lastScheduleTime"], stamp.as_str());

    // Its pod succeeds: the job completes, leaves `active`, sets `lastSuccessfulTime`.
    let stop = Rc::new(Cell::new(false));
    let _stop = StopOnDrop(stop.clone());
    cluster.kubelet("Succeeded", stop.clone());
    // (It may be deleted as soon as it completes.)
    eventually("the job seen completed", || async {
        let cj = cluster.get(cron_jobs(), "tick").await?;
        (cj["status"].get("active").is_none() && cj["status"]["lastSuccessfulTime"].is_string()).then_some(())
    })
    .await;
    // No successful Job kept.
    eventually("the completed job deleted", || async { cluster.list(jobs()).await.is_empty().then_some(()) }).await;
    stop.set(true);
    cluster.stop().await;
}

#[actix_rt::test]
async fn concurrency_policies_allow_forbid_or_replace_a_running_job() {
    // The clock starts a little before a minute and is then moved on by one.
    let (offset, clock) = test_clock();
    let cluster = Cluster::start_with(move |kinds, node| {
        Controllers::new(kinds, node).with(Jobs::new).with(move || CronJobs::with_clock(clock.clone())).run()
    })
    .await;
    let minute = aim(&offset);
    let template = json!({"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}});
    for policy in ["Allow", "Forbid", "Replace"] {
        let cj = json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": policy.to_lowercase()},
            "spec": {
                "schedule": "* * * * *",
                "concurrencyPolicy": policy,
                "jobTemplate": template,
                "startingDeadlineSeconds": 30,
            },
        });
        cluster.create(cron_jobs(), cj).await;
    }
    let first = |cj: &str| format!("{cj}-{}", minute / 60);
    let second = |cj: &str| format!("{cj}-{}", minute / 60 + 1);
    for cj in ["allow", "forbid", "replace"] {
        let name = first(cj);
        eventually(&format!("{cj}'s first job"), || cluster.get(jobs(), &name)).await;
    }
    // A minute later, with the first Jobs still running (no kubelet); a change of each
    // CronJob has the controller look at once.
    offset.set(offset.get() + 60);
    for cj in ["allow", "forbid", "replace"] {
        cluster.patch(cron_jobs(), cj, Part::Main, json!({"metadata": {"labels": {"poke": "1"}}})).await.unwrap();
    }
    eventually("allow runs both", || async {
        let both = cluster.get(jobs(), &first("allow")).await.is_some()
            && cluster.get(jobs(), &second("allow")).await.is_some();
        let cj = cluster.get(cron_jobs(), "allow").await?;
        (both && cj["status"]["active"].as_array()?.len() == 2).then_some(())
    })
    .await;
    eventually("replace runs only the second", || async {
        let gone = cluster
            .get(jobs(), &first("replace"))
            .await
            .is_none_or(|j| j["metadata"].get("deletionTimestamp").is_some());
        let cj = cluster.get(cron_jobs(), "replace").await?;
        let active = cj["status"]["active"].as_array()?;
        (gone && active.len() == 1 && active[0]["name"] == second("replace").as_str()).then_some(())
    })
    .await;
    let held_back = eventually("forbid says it held back", || async {
        let events = cluster.list(find("", "v1", "events").unwrap()).await;
        events.into_iter().find(|e| e["reason"] == "JobAlreadyActive" && e["involvedObject"]["name"] == "forbid")
    })
    .await;
    assert_eq!(
        held_back["message"],
        "Not starting job because prior execution is running and concurrency policy is Forbid"
    );
    assert!(cluster.get(jobs(), &second("forbid")).await.is_none());
    let forbid = cluster.get(cron_jobs(), "forbid").await.unwrap();
    assert_eq!(forbid["status"]["active"].as_array().unwrap().len(), 1);
    let stamp = actors::objects::timestamp(OffsetDateTime::from_unix_timestamp(minute).unwrap());
    assert_eq!(forbid["status"]["lastScheduleTime"], stamp.as_str());
    cluster.stop().await;
}

#[actix_rt::test]
async fn a_finished_job_with_a_ttl_is_deleted() {
    let cluster = Rc::new(Cluster::start().await);
    cluster.create(jobs(), job("brief", json!({"ttlSecondsAfterFinished": 1}))).await;
    let stop = Rc::new(Cell::new(false));
    let _stop = StopOnDrop(stop.clone());
    cluster.kubelet("Succeeded", stop.clone());
    cluster.job_with("brief", "Complete").await;
    eventually("the job deleted", || async { cluster.get(jobs(), "brief").await.is_none().then_some(()) }).await;
    eventually("its pod deleted", || async { cluster.pods_of("brief").await.is_empty().then_some(()) }).await;
    stop.set(true);
    cluster.stop().await;
}

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
}

fn bound_pod(name: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
    })
}

#[actix_rt::test]
async fn pods_of_a_deleted_node_are_collected() {
    // A Node never seen is missing for the quarantine before its pods count as orphans.
    let cluster = Cluster::start_with(|kinds, node| {
        Controllers::new(kinds, node).with(|| PodGc::new().with_quarantine(Duration::from_millis(500))).run()
    })
    .await;
    cluster.create(nodes(), node("gone")).await;
    cluster.create(nodes(), node("kept")).await;
    cluster.create(pods(), bound_pod("orphan", "gone")).await;
    cluster.create(pods(), bound_pod("fine", "kept")).await;
    cluster.create(pods(), bound_pod("stray", "never")).await;
    eventually("the pods seen bound", || async {
        let pods = cluster.list(pods()).await;
        (pods.len() == 3).then_some(())
    })
    .await;
    cluster.delete(nodes(), "gone").await;
    eventually("the orphan and the stray pod deleted", || async {
        let names: Vec<String> = cluster.list(pods()).await.iter().map(|p| name(p).to_string()).collect();
        (names == ["fine"]).then_some(())
    })
    .await;
    cluster.stop().await;
}
