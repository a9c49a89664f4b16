//! `KindActor`: one supervised actor per resource kind. It keeps the kind's [`WatchCache`]
//! fed from a store watch, answers lists from it once it has caught up with the store, and
//! runs gets and writes through [`crate::object_store`]. [`KindActors`] starts one per
//! built-in kind.
//!
//! Watchers: a [`Watch`] gets its first events at once and a bounded channel of the rest;
//! every change the cache applies goes to each matching watcher. A watcher whose channel
//! is full (a slow client) or closed (the client went away) is dropped, as are all of them
//! when the cache relists: their streams end and clients watch again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, MessageResult, ResponseFuture,
    SpawnHandle, StreamHandler, Supervised, Supervisor, WrapFuture,
};
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use raft_store::{
    KeySet, KeyValue, RangeRequest, RangeResponse, Revision, RevisionEvents, StoreError, StoreNode, WatchRequest,
};
use serde_json::Value;

use crate::admission::{Admission, Admit, Attributes, Operation, UserInfo};
use crate::api_error::{ApiError, ApiResult};
use crate::decode::FieldValidation;
use crate::deletion::{self, DeleteOptions, Deleted};
use crate::kinds::{ResourceKind, BUILTIN};
use crate::object_store::Written;
use crate::object_store::{self, page_of, ListPage, Part};
use crate::objects::list_prefix;
use crate::patch::PatchKind;
use crate::selectors::{Candidate, Selectors};
use crate::watch::{too_old, WatchEvent, WatchFilter};
use crate::watch_cache::{CacheError, CachedEvent, WatchCache};

/// Events kept in each kind's cache ring.
const CACHE_EVENTS: usize = 1000;
/// The manager of writes that name none.
const UNKNOWN_MANAGER: &str = "unknown";
/// Pause before listing again after a failure.
const RETRY: Duration = Duration::from_millis(500);
/// How long a list waits for the cache to reach the store's current revision.
const LIST_WAIT: Duration = Duration::from_secs(10);
/// Events a watcher may have unread before it is dropped as too slow.
const WATCHER_BUFFER: usize = 1000;
/// How often watchers that want bookmarks get one (if the revision moved).
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

/// Reads one object, linearizably from the store.
#[derive(Debug, Message)]
#[rtype(result = "ApiResult<Value>")]
pub struct Get {
    pub namespace: Option<String>,
    pub name: String,
}

/// Lists the objects (of one namespace, or all) that `selectors` select, at most `limit`
/// (0: all) from the cache, or a later page from the store when `continue_token` is given.
#[derive(Debug, Default, Message)]
#[rtype(result = "ApiResult<ListPage>")]
pub struct List {
    pub namespace: Option<String>,
    pub limit: usize,
    pub continue_token: Option<String>,
    pub selectors: Selectors,
}

/// Creates an object.
#[derive(Debug, Message)]
#[rtype(result = "ApiResult<Value>")]
pub struct Create {
    pub namespace: Option<String>,
    pub obj: Value,
    /// Who writes, for `metadata.managedFields`; `None`: untracked.
    pub field_manager: Option<String>,
}

/// Replaces an object.
#[derive(Debug, Message)]
#[rtype(result = "ApiResult<Value>")]
pub struct Update {
    pub namespace: Option<String>,
    pub name: String,
    pub obj: Value,
    /// Who writes, for `metadata.managedFields`.
    pub field_manager: Option<String>,
    /// The object, its status or its scale.
    pub part: Part,
}

/// Patches an object: JSON, merge or strategic merge patch, or server-side apply (which
/// creates the object when it does not exist).
#[derive(Debug, Message)]
#[rtype(result = "ApiResult<Written>")]
pub struct Patch {
    pub namespace: Option<String>,
    pub name: String,
    pub patch_kind: PatchKind,
    pub body: Vec<u8>,
    /// Who writes, for `metadata.managedFields` (required for apply).
    pub field_manager: Option<String>,
    /// `force=true`: an apply takes over fields other managers own.
    pub force: bool,
    /// The object, its status or its scale (apply: the object only).
    pub part: Part,
    /// What unknown fields the patched object may have (`fieldValidation`).
    pub field_validation: FieldValidation,
}

/// Deletes an object as kube-apiserver does (see [`crate::deletion`]): at once, or, while
/// finalizers or a pod's grace period hold it, marked with a `deletionTimestamp`.
#[derive(Debug, Default, Message)]
#[rtype(result = "ApiResult<Deleted>")]
pub struct Delete {
    pub namespace: Option<String>,
    pub name: String,
    pub options: DeleteOptions,
}

/// Deletes each object (of one namespace, or of a cluster-scoped kind) that `selectors`
/// select, at most `limit` (0: all), as [`Delete`] does one; answers with them as listed.
#[derive(Debug, Default, Message)]
#[rtype(result = "ApiResult<ListPage>")]
pub struct DeleteCollection {
    pub namespace: Option<String>,
    pub selectors: Selectors,
    pub limit: usize,
    pub options: DeleteOptions,
}

/// Watches the objects (of one namespace or all) that `selectors` select: from now
/// (`resource_version` `None` or 0: first an `ADDED` event per selected object) or after a
/// revision (410 Expired as the only event if that is older than the cache keeps). Objects
/// that start to select are `ADDED`, those that stop `DELETED`.
#[derive(Debug, Default, Message)]
#[rtype(result = "ApiResult<WatchStart>")]
pub struct Watch {
    pub namespace: Option<String>,
    pub selectors: Selectors,
    pub resource_version: Option<Revision>,
    /// Send `BOOKMARK` events when the revision moves without changes for this watcher.
    pub bookmarks: bool,
}

/// The start of a watch: the events to send first, then whatever `rest` yields; the stream
/// ends when `rest` does.
pub struct WatchStart {
    pub initial: Vec<WatchEvent>,
    pub rest: mpsc::Receiver<WatchEvent>,
}

/// Internal: the revision after which the cache holds every event, once it is synced.
#[derive(Message)]
#[rtype(result = "Option<Revision>")]
struct Oldest;

/// Internal: register a watcher (the cache is synced by then, or this fails with 503).
#[derive(Message)]
#[rtype(result = "ApiResult<WatchStart>")]
struct StartWatch(Watch);

struct Watcher {
    filter: WatchFilter,
    tx: mpsc::Sender<WatchEvent>,
    /// The watcher has heard of every change up to this revision.
    sent: Revision,
    /// The watcher wants `BOOKMARK` events.
    bookmarks: bool,
}

/// Internal: answer a list from the cache once it is at `target` or later.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<ApiResult<ListPage>>")]
struct ListAt {
    target: Revision,
    prefix: String,
    limit: usize,
    selectors: Selectors,
}

/// Internal: one item of the store watch.
#[derive(Message)]
#[rtype(result = "()")]
struct WatchBatch(Result<RevisionEvents, StoreError>);

struct PendingList {
    target: Revision,
    prefix: String,
    limit: usize,
    selectors: Selectors,
    reply: oneshot::Sender<ApiResult<ListPage>>,
}

/// The actor of one resource kind.
pub struct KindActor {
    kind: &'static ResourceKind,
    node: StoreNode,
    cache: WatchCache,
    /// The cache holds a list and is fed by a watch.
    synced: bool,
    pending: Vec<PendingList>,
    watch: Option<SpawnHandle>,
    watchers: Vec<Watcher>,
    /// The admission chain of writes, once the gateway has set one.
    admission: AdmissionSlot,
    /// Its CRD went (or was redefined): it serves nothing more.
    retired: bool,
}

/// Where the kind actors find the admission chain (set once the gateway is up).
pub type AdmissionSlot = Arc<std::sync::RwLock<Option<Arc<dyn Admission>>>>;

/// A write made on behalf of a user (the gateway's requests). Plain messages are the
/// control plane's own writes ([`UserInfo::control_plane`]).
pub struct AsUser<M>(pub UserInfo, pub M);

/// A user's write with `dryRun=All`: decoded, defaulted, admitted and validated as any, and
/// answered with the object it would store, but not stored (deletes carry their own option).
pub struct DryRun<M>(pub UserInfo, pub M);

impl Message for DryRun<Create> {
    type Result = ApiResult<Written>;
}

impl Message for DryRun<Update> {
    type Result = ApiResult<Written>;
}

impl Message for DryRun<Patch> {
    type Result = ApiResult<Written>;
}

impl Handler<DryRun<Create>> for KindActor {
    type Result = ResponseFuture<ApiResult<Written>>;

    fn handle(&mut self, DryRun(user, msg): DryRun<Create>, _ctx: &mut Context<Self>) -> Self::Result {
        self.create((user, None, true), msg)
    }
}

impl Handler<DryRun<Update>> for KindActor {
    type Result = ResponseFuture<ApiResult<Written>>;

    fn handle(&mut self, DryRun(user, msg): DryRun<Update>, _ctx: &mut Context<Self>) -> Self::Result {
        self.update((user, None, true), msg)
    }
}

impl Handler<DryRun<Patch>> for KindActor {
    type Result = ResponseFuture<ApiResult<Written>>;

    fn handle(&mut self, DryRun(user, msg): DryRun<Patch>, _ctx: &mut Context<Self>) -> Self::Result {
        self.patch((user, None, true), msg)
    }
}

/// A user's create or update answers with the admission plugins' warnings too.
impl Message for AsUser<Create> {
    type Result = ApiResult<Written>;
}

impl Message for AsUser<Update> {
    type Result = ApiResult<Written>;
}

impl Message for AsUser<Patch> {
    type Result = ApiResult<Written>;
}

impl Message for AsUser<Delete> {
    type Result = ApiResult<Deleted>;
}

/// A control-plane write fenced to the Raft leadership of a term (the controllers'): the
/// store rejects it if that leadership has ended (`raft_store::Txn::leader_term`).
pub struct Fenced<M>(pub u64, pub M);

impl<M: Message> Message for Fenced<M> {
    type Result = M::Result;
}

impl KindActor {
    /// Starts the actor of `kind` under a supervisor on the current actix arbiter.
    pub fn start_supervised(kind: &'static ResourceKind, node: StoreNode) -> Addr<KindActor> {
        Self::start_with_cache(kind, node, CACHE_EVENTS)
    }

    /// [`Self::start_supervised`] with a cache ring of `cache_events` events.
    pub fn start_with_cache(kind: &'static ResourceKind, node: StoreNode, cache_events: usize) -> Addr<KindActor> {
        Self::start_admitting(kind, node, cache_events, AdmissionSlot::default())
    }

    /// Starts the actor of `kind` whose writes go through the chain in `admission`.
    pub fn start_admitting(
        kind: &'static ResourceKind,
        node: StoreNode,
        cache_events: usize,
        admission: AdmissionSlot,
    ) -> Addr<KindActor> {
        Supervisor::start(move |_| KindActor {
            kind,
            node,
            cache: WatchCache::new(cache_events),
            synced: false,
            pending: Vec::new(),
            watch: None,
            watchers: Vec::new(),
            admission,
            retired: false,
        })
    }

    /// The admission of a write of `part` of `name` by `user`, if a chain is set, or the
    /// write is fenced to a leadership term or a dry run (with no chain, an empty one).
    fn admit(&self, (user, fence, dry_run): Writer, namespace: Option<&str>, name: &str, part: Part) -> Option<Admit> {
        let chain = self.admission.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let chain = match (chain, fence.is_some() || dry_run) {
            (Some(chain), _) => chain,
            (None, true) => Arc::new(crate::admission::Chain::default()),
            (None, false) => return None,
        };
        let subresource = match part {
            Part::Main => None,
            Part::Status => Some("status"),
            Part::Scale => Some("scale"),
        };
        let attrs = Attributes {
            kind: self.kind,
            subresource,
            operation: Operation::Create,
            namespace: namespace.map(String::from),
            name: name.to_string(),
            user,
            dry_run,
        };
        Some(Admit { chain, attrs, leader_term: fence, warnings: Default::default() })
    }

    /// Lists the kind's prefix from the store, then resets the cache and watches from there.
    fn relist(&mut self, ctx: &mut Context<Self>) {
        self.synced = false;
        self.watchers.clear();
        if let Some(handle) = self.watch.take() {
            ctx.cancel_future(handle);
        }
        let node = self.node.clone();
        let prefix = self.kind.storage_prefix();
        let list = async move { node.range(RangeRequest::prefix(prefix), true).await };
        ctx.spawn(list.into_actor(self).map(|result, actor, ctx| match result {
            Ok(list) => actor.watch_from(list, ctx),
            Err(e) => {
                tracing::debug!(resource = actor.kind.resource, error = %e, "listing for the watch cache failed; retrying");
                ctx.run_later(RETRY, |actor, ctx| actor.relist(ctx));
            }
        }));
    }

    fn watch_from(&mut self, list: RangeResponse, ctx: &mut Context<Self>) {
        let req = WatchRequest {
            keys: KeySet::Prefix(self.kind.storage_prefix().into_bytes()),
            start_revision: list.revision + 1,
            progress_notify: true,
        };
        self.cache.reset(list);
        self.synced = true;
        self.watch = Some(ctx.add_stream(self.node.watch(req).map(WatchBatch)));
        self.answer_pending();
    }

    /// Answers the pending lists whose target revision the cache has reached.
    fn answer_pending(&mut self) {
        if !self.synced {
            return;
        }
        let revision = self.cache.revision();
        let (ready, waiting): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|p| p.target <= revision);
        self.pending = waiting;
        for p in ready {
            let _ = p.reply.send(self.page(&p.prefix, p.limit, &p.selectors));
        }
    }

    /// Registers a watcher and returns its first events.
    fn start_watch(&mut self, msg: Watch) -> ApiResult<WatchStart> {
        if !self.synced {
            return Err(ApiError::ServiceUnavailable(format!("{} watch: the cache is relisting", self.kind.resource)));
        }
        let prefix = list_prefix(self.kind, msg.namespace.as_deref().or(msg.selectors.namespace()));
        let filter = WatchFilter { prefix, selectors: msg.selectors };
        let (tx, rest) = mpsc::channel(WATCHER_BUFFER);
        let initial = match msg.resource_version.filter(|rv| *rv > 0) {
            None => {
                let keep = |kv: &KeyValue| filter.matches(&Candidate::new(kv));
                let (kvs, _) = self.cache.list_matching(filter.prefix.as_bytes(), None, 0, keep);
                kvs.iter().map(|kv| WatchEvent::added(self.kind, kv)).collect::<ApiResult<Vec<_>>>()?
            }
            Some(after) => match self.cache.events_after(after) {
                Ok(changes) => {
                    let mut events = Vec::new();
                    for change in &changes {
                        let (object, prev) = candidates(change);
                        events.extend(filter.event_of(self.kind, change, &object, prev.as_ref())?);
                    }
                    events
                }
                Err(CacheError::TooOld { requested, oldest }) => {
                    // The stream is the error alone: `tx` goes with this scope, `rest` ends.
                    return Ok(WatchStart { initial: vec![WatchEvent::error(&too_old(requested, oldest))], rest });
                }
                Err(e) => return Err(ApiError::InternalError(e.to_string())),
            },
        };
        let sent = self.cache.revision().max(msg.resource_version.unwrap_or(0));
        self.watchers.push(Watcher { filter, tx, sent, bookmarks: msg.bookmarks });
        Ok(WatchStart { initial, rest })
    }

    /// Sends the changes after `from` to the watchers; drops the watchers that are full or gone.
    fn notify_watchers(&mut self, from: Revision) {
        if self.watchers.is_empty() {
            return;
        }
        let Ok(changes) = self.cache.events_after(from) else {
            // More changes in one batch than the ring holds: the watchers start over.
            self.watchers.clear();
            return;
        };
        let kind = self.kind;
        // Each object is parsed at most once, however many watchers' selectors read it.
        let parsed: Vec<_> = changes.iter().map(candidates).collect();
        self.watchers.retain_mut(|w| {
            for (change, (object, prev)) in changes.iter().zip(&parsed) {
                if change.revision <= w.sent {
                    continue;
                }
                let event = match w.filter.event_of(kind, change, object, prev.as_ref()) {
                    Ok(Some(event)) => event,
                    Ok(None) => continue,
                    Err(_) => {
                        tracing::warn!(resource = kind.resource, "a stored object is not JSON; skipped in watches");
                        continue;
                    }
                };
                if w.tx.try_send(event).is_err() {
                    return false;
                }
                w.sent = change.revision;
            }
            !w.tx.is_closed()
        });
    }

    /// Tells the watchers that want bookmarks how far the cache is, where that moved.
    fn send_bookmarks(&mut self) {
        let (kind, revision) = (self.kind, self.cache.revision());
        self.watchers.retain_mut(|w| {
            if !w.bookmarks || revision <= w.sent {
                return !w.tx.is_closed();
            }
            w.sent = revision;
            w.tx.try_send(WatchEvent::bookmark(kind, revision)).is_ok()
        });
    }

    /// The first page of a list from the cache: the walk stops once `limit` selected
    /// objects are found.
    fn page(&self, prefix: &str, limit: usize, selectors: &Selectors) -> ApiResult<ListPage> {
        let keep = |kv: &KeyValue| selectors.matches(&Candidate::new(kv));
        let (kvs, more) = self.cache.list_matching(prefix.as_bytes(), None, limit, keep);
        Ok(page_of(kvs, self.cache.revision(), more))
    }
}

/// The object and previous object of a change, to be matched by watchers' selectors.
fn candidates(change: &CachedEvent) -> (Candidate<'_>, Option<Candidate<'_>>) {
    (Candidate::new(&change.object), change.prev.as_deref().map(Candidate::new))
}

impl Actor for KindActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A custom kind's actor restarted (by a request holding its address) after its CRD
        // went, or after a newer definition replaced it, stays stopped.
        // It idles (stopping would have its supervisor start it again at once, in a loop)
        // until the last address goes.
        let builtin = BUILTIN.iter().any(|k| std::ptr::eq(k, self.kind));
        let current = crate::custom_kinds::of(self.kind).is_some_and(|c| std::ptr::eq(c.storage_kind(), self.kind));
        if self.retired || (!builtin && !current) {
            self.retired = true;
            metrics::gauge!("flotilla_kind_actors", "resource" => actor_label(self.kind)).set(0.0);
            return;
        }
        metrics::gauge!("flotilla_kind_actors", "resource" => actor_label(self.kind)).set(1.0);
        ctx.run_interval(BOOKMARK_EVERY, |actor, _| actor.send_bookmarks());
        self.relist(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        metrics::gauge!("flotilla_kind_actors", "resource" => actor_label(self.kind)).set(0.0);
    }
}

/// `configmaps`, `deployments.apps`, `loadtests.beta.kuar.com`: how metrics name a kind.
fn actor_label(kind: &ResourceKind) -> String {
    match kind.group {
        "" => kind.resource.to_string(),
        group => format!("{}.{group}", kind.resource),
    }
}

impl Supervised for KindActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        let actor = format!("kind/{}", self.kind.resource);
        metrics::counter!("flotilla_actor_restarts_total", "actor" => actor.clone()).increment(1);
        tracing::warn!(actor, "actor restarting");
        self.synced = false;
        self.watch = None;
    }
}

/// Stops a kind actor for good (its CRD is gone): its watchers' streams end.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for KindActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        self.retired = true;
        self.watchers.clear();
        if let Some(handle) = self.watch.take() {
            ctx.cancel_future(handle);
        }
        ctx.stop();
    }
}

impl StreamHandler<WatchBatch> for KindActor {
    fn handle(&mut self, WatchBatch(item): WatchBatch, ctx: &mut Context<Self>) {
        let from = self.cache.revision();
        let applied = match item {
            Ok(batch) => self.cache.apply(&batch).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match applied {
            Ok(()) => {
                self.notify_watchers(from);
                self.answer_pending();
            }
            Err(e) => {
                tracing::info!(resource = self.kind.resource, error = %e, "watch cache relisting");
                self.relist(ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The store's watch ended (the member is stopping, or it dropped us): start over.
        self.watch = None;
        ctx.run_later(RETRY, |actor, ctx| actor.relist(ctx));
    }
}

impl Handler<ListAt> for KindActor {
    type Result = MessageResult<ListAt>;

    fn handle(&mut self, msg: ListAt, _ctx: &mut Context<Self>) -> Self::Result {
        let (reply, rx) = oneshot::channel();
        let ListAt { target, prefix, limit, selectors } = msg;
        self.pending.push(PendingList { target, prefix, limit, selectors, reply });
        self.answer_pending();
        MessageResult(rx)
    }
}

impl Handler<List> for KindActor {
    type Result = ResponseFuture<ApiResult<ListPage>>;

    fn handle(&mut self, msg: List, ctx: &mut Context<Self>) -> Self::Result {
        let (node, kind, me) = (self.node.clone(), self.kind, ctx.address());
        Box::pin(async move {
            // `metadata.namespace=X` reads one namespace of a list of all of them.
            let prefix = list_prefix(kind, msg.namespace.as_deref().or(msg.selectors.namespace()));
            if let Some(token) = &msg.continue_token {
                return object_store::page_at(&node, &prefix, token, msg.limit, &msg.selectors).await;
            }
            let mut count = RangeRequest::prefix(prefix.clone());
            count.count_only = true;
            let target = node.range(count, true).await?.revision;
            let unavailable = |what: &str| ApiError::ServiceUnavailable(format!("{} list: {what}", kind.resource));
            let rx = me
                .send(ListAt { target, prefix, limit: msg.limit, selectors: msg.selectors })
                .await
                .map_err(|_| unavailable("the kind actor is not running"))?;
            match actix_rt::time::timeout(LIST_WAIT, rx).await {
                Ok(Ok(page)) => page,
                Ok(Err(_)) => Err(unavailable("the kind actor restarted")),
                Err(_) => Err(unavailable(&format!("the watch cache did not reach revision {target} in time"))),
            }
        })
    }
}

impl Handler<Oldest> for KindActor {
    type Result = Option<Revision>;

    fn handle(&mut self, _: Oldest, _ctx: &mut Context<Self>) -> Self::Result {
        self.synced.then(|| self.cache.oldest())
    }
}

impl Handler<StartWatch> for KindActor {
    type Result = ApiResult<WatchStart>;

    fn handle(&mut self, StartWatch(msg): StartWatch, _ctx: &mut Context<Self>) -> Self::Result {
        self.start_watch(msg)
    }
}

impl Handler<Watch> for KindActor {
    type Result = ResponseFuture<ApiResult<WatchStart>>;

    fn handle(&mut self, msg: Watch, ctx: &mut Context<Self>) -> Self::Result {
        let (kind, me, node) = (self.kind, ctx.address(), self.node.clone());
        Box::pin(async move {
            let unavailable = |what: &str| ApiError::ServiceUnavailable(format!("{} watch: {what}", kind.resource));
            // A list at revision 0 answers once the cache is synced.
            let synced = me
                .send(ListAt { target: 0, prefix: String::new(), limit: 1, selectors: Selectors::default() })
                .await
                .map_err(|_| unavailable("the kind actor is not running"))?;
            match actix_rt::time::timeout(LIST_WAIT, synced).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Err(unavailable("the kind actor restarted")),
                Err(_) => return Err(unavailable("the watch cache did not sync in time")),
            }
            // A watch from before the cache's memory replays the store's history up to
            // where the cache takes over; the store answers 410 if that was compacted.
            let oldest = me.send(Oldest).await.map_err(|_| unavailable("the kind actor is not running"))?;
            let mut msg = msg;
            let mut replayed = Vec::new();
            if let (Some(after), Some(oldest)) = (msg.resource_version.filter(|rv| *rv > 0), oldest) {
                if after < oldest {
                    let prefix = list_prefix(kind, msg.namespace.as_deref().or(msg.selectors.namespace()));
                    let filter = WatchFilter { prefix, selectors: msg.selectors.clone() };
                    match replay(&node, kind, &filter, after, oldest).await {
                        Ok(events) => replayed = events,
                        Err(e) => {
                            let (_, rest) = mpsc::channel(0);
                            return Ok(WatchStart { initial: vec![WatchEvent::error(&e)], rest });
                        }
                    }
                    msg.resource_version = Some(oldest);
                }
            }
            let mut start =
                me.send(StartWatch(msg)).await.map_err(|_| unavailable("the kind actor is not running"))??;
            replayed.append(&mut start.initial);
            start.initial = replayed;
            Ok(start)
        })
    }
}

/// The watch events of `filter` in the store's history after revision `after` up to and
/// including `until`; 410 Expired if that history was compacted.
async fn replay(
    node: &StoreNode,
    kind: &'static ResourceKind,
    filter: &WatchFilter,
    after: Revision,
    until: Revision,
) -> ApiResult<Vec<WatchEvent>> {
    let req = WatchRequest {
        keys: KeySet::Prefix(kind.storage_prefix().into_bytes()),
        start_revision: after + 1,
        progress_notify: true,
    };
    let mut history = Box::pin(node.watch(req));
    let mut events = Vec::new();
    loop {
        let batch = match actix_rt::time::timeout(LIST_WAIT, history.next()).await {
            Ok(Some(Ok(batch))) => batch,
            Ok(Some(Err(StoreError::Compacted { .. }))) => return Err(too_old(after, until)),
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) | Err(_) => {
                return Err(ApiError::ServiceUnavailable(format!("{} watch: replaying history", kind.resource)))
            }
        };
        if batch.revision > until {
            return Ok(events);
        }
        for event in &batch.events {
            let change = CachedEvent::from_store(batch.revision, event);
            let (object, prev) = candidates(&change);
            events.extend(filter.event_of(kind, &change, &object, prev.as_ref())?);
        }
        if batch.revision == until {
            return Ok(events);
        }
    }
}

impl Handler<Get> for KindActor {
    type Result = ResponseFuture<ApiResult<Value>>;

    fn handle(&mut self, msg: Get, _ctx: &mut Context<Self>) -> Self::Result {
        let (node, kind) = (self.node.clone(), self.kind);
        Box::pin(async move { object_store::get(&node, kind, msg.namespace.as_deref(), &msg.name).await })
    }
}

impl Handler<Create> for KindActor {
    type Result = ResponseFuture<ApiResult<Value>>;

    fn handle(&mut self, msg: Create, _ctx: &mut Context<Self>) -> Self::Result {
        object_only(self.create((UserInfo::control_plane(), None, false), msg))
    }
}

impl Handler<AsUser<Create>> for KindActor {
    type Result = ResponseFuture<ApiResult<Written>>;

    fn handle(&mut self, AsUser(user, msg): AsUser<Create>, _ctx: &mut Context<Self>) -> Self::Result {
        self.create((user, None, false), msg)
    }
}

impl Handler<Fenced<Create>> for KindActor {
    type Result = ResponseFuture<ApiResult<Value>>;

    fn handle(&mut self, Fenced(term, msg): Fenced<Create>, _ctx: &mut Context<Self>) -> Self::Result {
        object_only(self.create((UserInfo::control_plane(), Some(term), false), msg))
    }
}

/// The object of a write, without its warnings (the control plane's own writes).
fn object_only(written: ResponseFuture<ApiResult<Written>>) -> ResponseFuture<ApiResult<Value>> {
    Box::pin(async move { written.await.map(|w| w.obj) })
}

/// The warnings the admission plugins gave a write, after its own.
fn with_admission_warnings(mut written: Written, admit: Option<&Admit>) -> Written {
    if let Some(admit) = admit {
        written.warnings.extend(admit.take_warnings());
    }
    written
}

/// The writes, by who makes them: a user (or the control plane), the leadership fence, and
/// whether it is a dry run.
type Writer = (UserInfo, Option<u64>, bool);

impl KindActor {
    fn create(&self, writer: Writer, msg: Create) -> ResponseFuture<ApiResult<Written>> {
        let (node, kind) = (self.node.clone(), self.kind);
        let admit = self.admit(writer, msg.namespace.as_deref(), "", Part::Main);
        Box::pin(async move {
            let manager = msg.field_manager.as_deref();
            let ns = msg.namespace.as_deref();
            let obj = object_store::create_admitted(&node, kind, ns, msg.obj, manager, admit.as_ref()).await?;
            Ok(with_admission_warnings(Written { obj, warnings: Vec::new() }, admit.as_ref()))
        })
    }
}

impl Handler<Update> for KindActor {
    type Result = ResponseFuture<ApiResult<Value>>;

    fn handle(&mut self, msg: Update, _ctx: &mut Context<Self>) -> Self::Result {
        object_only(self.update((UserInfo::control_plane(), None, false), msg))
    }
}

impl Handler<AsUser<Update>> for KindActor {
    type Result = ResponseFuture<ApiResult<Written>>;

    fn handle(&mut self, AsUser(user, msg): AsUser<Update>, _ctx: &mut Context<Self>) -> Self::Result {
        self.update((user, None, false), msg)
    }
}

impl Handler<Fenced<Update>> for KindActor {
    type Result = ResponseFuture<ApiResult<Value>>;

    fn handle(&mut self, Fenced(term, msg): Fenced<Update>, _ctx: &mut Context<Self>) -> Self::Result {
        object_only(self.update((UserInfo::control_plane(), Some(term), false), msg))
    }
}

impl KindActor {
    fn update(&self, writer: Writer, msg: Update) -> ResponseFuture<ApiResult<Written>> {
        let (node, kind) = (self.node.clone(), self.kind);
        let admit = self.admit(writer, msg.namespace.as_deref(), &msg.name, msg.part);
        Box::pin(async move {
            let manager = msg.field_manager.as_deref().unwrap_or(UNKNOWN_MANAGER);
            let target = (msg.namespace.as_deref(), msg.name.as_str(), msg.part);
            let obj = object_store::update(&node, kind, target, msg.obj, manager, admit.as_ref()).await?;
            Ok(with_admission_warnings(Written { obj, warnings: Vec::new() }, admit.as_ref()))
        })
    }
}

impl Handler<Patch> for KindActor {
    type Result = ResponseFuture<ApiResult<Written>>;

    fn handle(&mut self, msg: Patch, _ctx: &mut Context<Self>) -> Self::Result {
        self.patch((UserInfo::control_plane(), None, false), msg)
    }
}

impl Handler<AsUser<Patch>> for KindActor {
    type Result = ResponseFuture<ApiResult<Written>>;

    fn handle(&mut self, AsUser(user, msg): AsUser<Patch>, _ctx: &mut Context<Self>) -> Self::Result {
        self.patch((user, None, false), msg)
    }
}

impl Handler<Fenced<Patch>> for KindActor {
    type Result = ResponseFuture<ApiResult<Written>>;

    fn handle(&mut self, Fenced(term, msg): Fenced<Patch>, _ctx: &mut Context<Self>) -> Self::Result {
        self.patch((UserInfo::control_plane(), Some(term), false), msg)
    }
}

impl KindActor {
    fn patch(&self, writer: Writer, msg: Patch) -> ResponseFuture<ApiResult<Written>> {
        let (node, kind) = (self.node.clone(), self.kind);
        let admit = self.admit(writer, msg.namespace.as_deref(), &msg.name, msg.part);
        Box::pin(async move {
            let admit = admit.as_ref();
            let ns = msg.namespace.as_deref();
            let manager = msg.field_manager.as_deref();
            let written = match (msg.patch_kind, manager) {
                (PatchKind::Apply, _) if msg.part != Part::Main => {
                    Err(ApiError::MethodNotSupported("server-side apply is served on the object only".into()))
                }
                (PatchKind::Apply, None) => {
                    Err(ApiError::BadRequest("PATCH: fieldManager is required for apply requests".into()))
                }
                (PatchKind::Apply, Some(manager)) => {
                    let obj =
                        object_store::apply(&node, kind, (ns, &msg.name), &msg.body, manager, msg.force, admit).await?;
                    Ok(Written { obj, warnings: Vec::new() })
                }
                (patch_kind, manager) => {
                    let manager = manager.unwrap_or(UNKNOWN_MANAGER);
                    let target = (ns, msg.name.as_str(), msg.part);
                    let body = (patch_kind, msg.body.as_slice());
                    object_store::patch(&node, kind, target, body, manager, msg.field_validation, admit).await
                }
            };
            written.map(|w| with_admission_warnings(w, admit))
        })
    }
}

impl Handler<Delete> for KindActor {
    type Result = ResponseFuture<ApiResult<Deleted>>;

    fn handle(&mut self, msg: Delete, _ctx: &mut Context<Self>) -> Self::Result {
        self.delete((UserInfo::control_plane(), None, false), msg)
    }
}

impl Handler<Fenced<Delete>> for KindActor {
    type Result = ResponseFuture<ApiResult<Deleted>>;

    fn handle(&mut self, Fenced(term, msg): Fenced<Delete>, _ctx: &mut Context<Self>) -> Self::Result {
        self.delete((UserInfo::control_plane(), Some(term), false), msg)
    }
}

impl Handler<AsUser<Delete>> for KindActor {
    type Result = ResponseFuture<ApiResult<Deleted>>;

    fn handle(&mut self, AsUser(user, msg): AsUser<Delete>, _ctx: &mut Context<Self>) -> Self::Result {
        self.delete((user, None, false), msg)
    }
}

impl KindActor {
    fn delete(&self, writer: Writer, msg: Delete) -> ResponseFuture<ApiResult<Deleted>> {
        let (node, kind) = (self.node.clone(), self.kind);
        let admit = self.admit(writer, msg.namespace.as_deref(), &msg.name, Part::Main);
        Box::pin(async move {
            // Deletes go through admission too (NamespaceLifecycle keeps `default` alive;
            // webhooks see the stored object as `oldObject`).
            let target = (msg.namespace.as_deref(), msg.name.as_str());
            object_store::delete(&node, kind, target, &msg.options, admit.as_ref()).await
        })
    }
}

impl Handler<DeleteCollection> for KindActor {
    type Result = ResponseFuture<ApiResult<ListPage>>;

    fn handle(&mut self, msg: DeleteCollection, _ctx: &mut Context<Self>) -> Self::Result {
        let (node, kind) = (self.node.clone(), self.kind);
        Box::pin(async move {
            let DeleteCollection { namespace, selectors, limit, options } = msg;
            deletion::delete_collection(&node, kind, namespace.as_deref(), &selectors, limit, &options).await
        })
    }
}

/// Fault injection for tests: the actor panics while handling it.
#[doc(hidden)]
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

impl Handler<InjectPanic> for KindActor {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _ctx: &mut Context<Self>) {
        panic!("injected panic in the {} actor", self.kind.resource);
    }
}

/// The kind actors by (group, resource), with the kind each serves.
type ActorsByKind = HashMap<(&'static str, &'static str), (&'static ResourceKind, Addr<KindActor>)>;

/// The actors of every served kind, by (group, resource): the built-in kinds from the start,
/// custom kinds as the CRD controller adds them ([`KindActors::ensure`], [`KindActors::stop`]).
/// A panic ends an actor's task, its actix supervisor with it; [`KindActors::get`] then starts
/// the kind's actor again.
#[derive(Clone, Default)]
pub struct KindActors {
    actors: Arc<Mutex<ActorsByKind>>,
    node: Option<StoreNode>,
    admission: AdmissionSlot,
}

impl KindActors {
    /// Starts one supervised [`KindActor`] per built-in kind on the current actix arbiter.
    pub fn start(node: &StoreNode) -> Self {
        let admission = AdmissionSlot::default();
        let start =
            |k: &'static ResourceKind| KindActor::start_admitting(k, node.clone(), CACHE_EVENTS, admission.clone());
        let actors = BUILTIN.iter().map(|k| ((k.group, k.resource), (k, start(k))));
        KindActors { actors: Arc::new(Mutex::new(actors.collect())), node: Some(node.clone()), admission }
    }

    /// Sends every later write of every kind through `chain`.
    pub fn set_admission(&self, chain: Arc<dyn Admission>) {
        *self.admission.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(chain);
    }

    /// The admission chain, once set: for writes served outside the kind actors (the
    /// `pods/binding` and `pods/eviction` subresources).
    pub fn admission(&self) -> Option<Arc<dyn Admission>> {
        self.admission.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActorsByKind> {
        self.actors.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The actor of `kind` (any version of it), started again (on the current arbiter) if it died.
    pub fn get(&self, kind: &ResourceKind) -> Option<Addr<KindActor>> {
        let key = (kind.group, kind.resource);
        let mut actors = self.lock();
        let (kind, addr) = actors.get(&key)?;
        if addr.connected() {
            return Some(addr.clone());
        }
        let (node, kind) = (self.node.clone()?, *kind);
        let actor = format!("kind/{}", kind.resource);
        metrics::counter!("flotilla_actor_restarts_total", "actor" => actor.clone()).increment(1);
        tracing::warn!(actor, "actor died (panicked); starting it again");
        let addr = KindActor::start_admitting(kind, node, CACHE_EVENTS, self.admission.clone());
        actors.insert(key, (kind, addr.clone()));
        Some(addr)
    }

    /// Starts the actor of `kind` (a custom kind's storage version) unless it runs already;
    /// an actor of an earlier definition of the same resource is replaced when the storage
    /// version changed.
    pub fn ensure(&self, kind: &'static ResourceKind) -> Option<Addr<KindActor>> {
        let node = self.node.clone()?;
        let mut actors = self.lock();
        if let Some((running, addr)) = actors.get(&(kind.group, kind.resource)) {
            if std::ptr::eq(*running, kind) && addr.connected() {
                return Some(addr.clone());
            }
            addr.do_send(Stop);
        }
        let addr = KindActor::start_admitting(kind, node, CACHE_EVENTS, self.admission.clone());
        actors.insert((kind.group, kind.resource), (kind, addr.clone()));
        Some(addr)
    }

    /// The store the actors write to (for writes that are one transaction of their own,
    /// such as `pods/binding`); `None` for an empty set.
    pub fn store(&self) -> Option<&StoreNode> {
        self.node.as_ref()
    }

    /// Stops and forgets the actor of (group, resource).
    pub fn stop(&self, group: &str, resource: &str) {
        let mut actors = self.lock();
        let key = actors.keys().find(|(g, r)| *g == group && *r == resource).copied();
        if let Some((_, addr)) = key.and_then(|key| actors.remove(&key)) {
            addr.do_send(Stop);
        }
    }
}
