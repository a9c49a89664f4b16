//! The CRD controller: a supervised actor that watches CustomResourceDefinitions and makes
//! the API serve what they define, as kube-apiserver's naming, establishing and finalizer
//! controllers do together.
//!
//! For each CRD that changed it runs [`reconcile`], one CRD at a time: a CRD whose names are
//! free is registered ([`crate::custom_kinds`]), gets its own [`KindActor`] and the status
//! `NamesAccepted`/`Established` (and the cleanup finalizer); a CRD being deleted is marked
//! `Terminating`, its objects deleted, then its finalizer removed, which lets it go; a CRD
//! that is gone stops being served and its actor stops.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use actix::prelude::*;
use futures::StreamExt;
use raft_store::{KeySet, RangeRequest, RevisionEvents, StoreError, StoreNode, WatchRequest};
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::crd::{self, Observed, CLEANUP_FINALIZER};
use crate::custom_kinds;
use crate::deletion::being_deleted;
use crate::kind_actor::{DeleteCollection, KindActors};
use crate::kinds::{self, ResourceKind};
use crate::object_store;

/// How soon a CRD whose objects are still being deleted is looked at again.
const CLEANUP_RETRY: Duration = Duration::from_millis(200);
/// How soon the CRD watch is set up again after it failed.
const RETRY: Duration = Duration::from_millis(500);

fn crd_kind() -> &'static ResourceKind {
    static KIND: std::sync::LazyLock<&'static ResourceKind> = std::sync::LazyLock::new(|| {
        kinds::BUILTIN.iter().find(|k| k.resource == "customresourcedefinitions").unwrap_or(&kinds::BUILTIN[0])
    });
    &KIND
}

/// What one reconcile asks of the controller.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Look again after [`CLEANUP_RETRY`] (objects are still being deleted).
    Again,
}

/// Brings the API in line with the CRD `name` as stored now.
pub async fn reconcile(node: &StoreNode, actors: &KindActors, name: &str) -> Result<Outcome, ApiError> {
    let crd = match object_store::get(node, crd_kind(), None, name).await {
        Ok(crd) => crd,
        Err(ApiError::NotFound(_)) => {
            forget(actors, name);
            return Ok(Outcome::Done);
        }
        Err(e) => return Err(e),
    };
    let now = crate::objects::timestamp(time::OffsetDateTime::now_utc());
    let definition = crd::definition(&crd).map_err(ApiError::InternalError)?;
    if being_deleted(&crd) {
        return clean_up(node, actors, name, crd, definition, &now).await;
    }
    let conflict = crd::name_conflict(definition.group, &crd::names_of(&crd), name);
    if conflict.is_none() {
        let storage = definition.storage_kind();
        custom_kinds::register(definition);
        actors.ensure(storage);
    }
    let status = crd::desired_status(&crd, &Observed { conflict: conflict.clone(), terminating: false, now: &now });
    let finalizers = crate::deletion::finalizers_of(&crd);
    if crd.get("status") == Some(&status) && finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
        return Ok(Outcome::Done);
    }
    object_store::update_with(node, crd_kind(), None, name, None, |current| {
        let mut new = current.clone();
        let seen = Observed { conflict: conflict.clone(), terminating: false, now: &now };
        new["status"] = crd::desired_status(current, &seen);
        add_finalizer(&mut new);
        Ok(new)
    })
    .await?;
    Ok(Outcome::Done)
}

/// Deletes a terminating CRD's objects; once none are left, removes its finalizer.
async fn clean_up(
    node: &StoreNode,
    actors: &KindActors,
    name: &str,
    crd: Value,
    mut definition: custom_kinds::CustomKind,
    now: &str,
) -> Result<Outcome, ApiError> {
    let storage = definition.storage_kind();
    definition.terminating = true;
    let served = custom_kinds::get(definition.group, definition.resource).is_some_and(|k| k.crd_name == name);
    if served {
        custom_kinds::register(definition);
    }
    let status = crd::desired_status(&crd, &Observed { conflict: None, terminating: true, now });
    if crd.get("status") != Some(&status) {
        object_store::update_with(node, crd_kind(), None, name, None, |current| {
            let mut new = current.clone();
            new["status"] = crd::desired_status(current, &Observed { conflict: None, terminating: true, now });
            Ok(new)
        })
        .await?;
    }
    let prefix = storage.storage_prefix();
    let left = node.range(RangeRequest { count_only: true, ..RangeRequest::prefix(prefix.clone()) }, true).await?.count;
    if left > 0 {
        if let Some(actor) = served.then(|| actors.ensure(storage)).flatten() {
            let msg = DeleteCollection::default();
            actor.send(msg).await.map_err(|e| ApiError::ServiceUnavailable(e.to_string()))??;
        }
        let left = node.range(RangeRequest { count_only: true, ..RangeRequest::prefix(prefix) }, true).await?.count;
        if left > 0 {
            return Ok(Outcome::Again);
        }
    }
    let removed = object_store::update_with(node, crd_kind(), None, name, None, |current| {
        let mut new = current.clone();
        if let Some(finalizers) = new.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) {
            finalizers.retain(|f| f != CLEANUP_FINALIZER);
        }
        Ok(new)
    })
    .await;
    match removed {
        Ok(_) | Err(ApiError::NotFound(_)) => Ok(Outcome::Done),
        Err(e) => Err(e),
    }
}

fn add_finalizer(crd: &mut Value) {
    let Some(metadata) = crd.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let finalizers = metadata.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(list) = finalizers.as_array_mut() {
        if !list.iter().any(|f| f == CLEANUP_FINALIZER) {
            list.push(json!(CLEANUP_FINALIZER));
        }
    }
}

/// Stops serving the kind of the CRD `name` (`{plural}.{group}`), if that CRD defined it.
fn forget(actors: &KindActors, name: &str) {
    let Some((resource, group)) = name.split_once('.') else { return };
    if custom_kinds::get(group, resource).is_some_and(|k| k.crd_name == name) {
        custom_kinds::unregister(group, resource);
        actors.stop(group, resource);
        tracing::info!(crd = name, "custom resource no longer served");
    }
}

/// Internal: one item of the CRD watch.
#[derive(Message)]
#[rtype(result = "()")]
struct Changes(Result<RevisionEvents, StoreError>);

/// Internal: look at a CRD again.
#[derive(Message)]
#[rtype(result = "()")]
struct Requeue(String);

/// The actor: a queue of CRD names to reconcile, fed by a watch on the CRD prefix.
pub struct CrdController {
    node: StoreNode,
    actors: KindActors,
    queue: VecDeque<String>,
    queued: HashSet<String>,
    busy: bool,
    watch: Option<SpawnHandle>,
}

impl CrdController {
    /// Starts the controller under a supervisor on the current arbiter.
    pub fn start_supervised(node: StoreNode, actors: KindActors) -> Addr<CrdController> {
        Supervisor::start(move |_| CrdController {
            node,
            actors,
            queue: VecDeque::new(),
            queued: HashSet::new(),
            busy: false,
            watch: None,
        })
    }

    /// Lists every CRD (each is queued), then watches for changes from there.
    fn relist(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.watch.take() {
            ctx.cancel_future(handle);
        }
        let node = self.node.clone();
        let prefix = crd_kind().storage_prefix();
        let list = async move { node.range(RangeRequest::prefix(prefix), true).await };
        ctx.spawn(list.into_actor(self).map(|result, actor, ctx| match result {
            Ok(list) => {
                for kv in &list.kvs {
                    actor.enqueue(name_of_key(&kv.key));
                }
                // CRDs deleted while no watch ran: forget the kinds of those not listed.
                let listed: HashSet<String> = list.kvs.iter().map(|kv| name_of_key(&kv.key)).collect();
                for kind in custom_kinds::all() {
                    if !listed.contains(&kind.crd_name) {
                        actor.enqueue(kind.crd_name.clone());
                    }
                }
                let req = WatchRequest {
                    keys: KeySet::Prefix(crd_kind().storage_prefix().into_bytes()),
                    start_revision: list.revision + 1,
                    progress_notify: false,
                };
                actor.watch = Some(ctx.add_stream(actor.node.watch(req).map(Changes)));
                actor.kick(ctx);
            }
            Err(e) => {
                tracing::debug!(error = %e, "listing CRDs failed; retrying");
                ctx.run_later(RETRY, |actor, ctx| actor.relist(ctx));
            }
        }));
    }

    fn enqueue(&mut self, name: String) {
        if self.queued.insert(name.clone()) {
            self.queue.push_back(name);
        }
    }

    /// Reconciles the next queued CRD unless one is in progress.
    fn kick(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let Some(name) = self.queue.pop_front() else { return };
        self.queued.remove(&name);
        self.busy = true;
        let (node, actors) = (self.node.clone(), self.actors.clone());
        let work = async move {
            let outcome = reconcile(&node, &actors, &name).await;
            (name, outcome)
        };
        ctx.spawn(work.into_actor(self).map(|(name, outcome), actor, ctx| {
            actor.busy = false;
            match outcome {
                Ok(Outcome::Done) => {}
                Ok(Outcome::Again) => {
                    ctx.notify_later(Requeue(name), CLEANUP_RETRY);
                }
                Err(e) => {
                    tracing::warn!(crd = name, error = %e, "reconciling the CRD failed; retrying");
                    ctx.notify_later(Requeue(name), RETRY);
                }
            }
            actor.kick(ctx);
        }));
    }
}

/// The CRD name at the end of its store key.
fn name_of_key(key: &[u8]) -> String {
    let key = String::from_utf8_lossy(key);
    key.rsplit('/').next().unwrap_or_default().to_string()
}

impl Actor for CrdController {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.relist(ctx);
    }
}

impl Supervised for CrdController {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        metrics::counter!("flotilla_actor_restarts_total", "actor" => "crd-controller").increment(1);
        self.busy = false;
        self.watch = None;
    }
}

impl StreamHandler<Changes> for CrdController {
    fn handle(&mut self, Changes(item): Changes, ctx: &mut Context<Self>) {
        match item {
            Ok(batch) => {
                for event in batch.events {
                    self.enqueue(name_of_key(&event.kv.key));
                }
                self.kick(ctx);
            }
            Err(e) => {
                tracing::warn!(error = %e, "the CRD watch failed; listing again");
                ctx.run_later(RETRY, |actor, ctx| actor.relist(ctx));
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(RETRY, |actor, ctx| actor.relist(ctx));
    }
}

impl Handler<Requeue> for CrdController {
    type Result = ();

    fn handle(&mut self, Requeue(name): Requeue, ctx: &mut Context<Self>) {
        self.enqueue(name);
        self.kick(ctx);
    }
}
