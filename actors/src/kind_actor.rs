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
use std::time::Duration;

use actix::{
    Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, MessageResult, ResponseFuture, SpawnHandle,
    StreamHandler, Supervised, Supervisor, WrapFuture,
};
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use raft_store::{KeySet, RangeRequest, RangeResponse, Revision, RevisionEvents, StoreError, StoreNode, WatchRequest};
use serde_json::Value;

use crate::api_error::{ApiError, ApiResult};
use crate::kinds::{ResourceKind, BUILTIN};
use crate::object_store::{self, page_of, ListPage};
use crate::objects::list_prefix;
use crate::watch::{too_old, WatchEvent, WatchFilter};
use crate::watch_cache::{CacheError, WatchCache};

/// Events kept in each kind's cache ring.
const CACHE_EVENTS: usize = 1000;
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

/// Lists objects (of one namespace, or all), at most `limit` (0: all) from the cache, or a
/// later page from the store when `continue_token` is given.
#[derive(Debug, Message)]
#[rtype(result = "ApiResult<ListPage>")]
pub struct List {
    pub namespace: Option<String>,
    pub limit: usize,
    pub continue_token: Option<String>,
}

/// Creates an object.
#[derive(Debug, Message)]
#[rtype(result = "ApiResult<Value>")]
pub struct Create {
    pub namespace: Option<String>,
    pub obj: Value,
}

/// Replaces an object.
#[derive(Debug, Message)]
#[rtype(result = "ApiResult<Value>")]
pub struct Update {
    pub namespace: Option<String>,
    pub name: String,
    pub obj: Value,
}

/// Deletes an object and returns it as it last was.
#[derive(Debug, Message)]
#[rtype(result = "ApiResult<Value>")]
pub struct Delete {
    pub namespace: Option<String>,
    pub name: String,
}

/// Watches objects (of one namespace or all; with `name`, only that object): from now
/// (`resource_version` `None` or 0: first an `ADDED` event per current object) or after a
/// revision (410 Expired as the only event if that is older than the cache keeps).
#[derive(Debug, Message)]
#[rtype(result = "ApiResult<WatchStart>")]
pub struct Watch {
    pub namespace: Option<String>,
    pub name: Option<String>,
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
}

/// Internal: one item of the store watch.
#[derive(Message)]
#[rtype(result = "()")]
struct WatchBatch(Result<RevisionEvents, StoreError>);

struct PendingList {
    target: Revision,
    prefix: String,
    limit: usize,
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
}

impl KindActor {
    /// Starts the actor of `kind` under a supervisor on the current actix arbiter.
    pub fn start_supervised(kind: &'static ResourceKind, node: StoreNode) -> Addr<KindActor> {
        Self::start_with_cache(kind, node, CACHE_EVENTS)
    }

    /// [`Self::start_supervised`] with a cache ring of `cache_events` events.
    pub fn start_with_cache(kind: &'static ResourceKind, node: StoreNode, cache_events: usize) -> Addr<KindActor> {
        Supervisor::start(move |_| KindActor {
            kind,
            node,
            cache: WatchCache::new(cache_events),
            synced: false,
            pending: Vec::new(),
            watch: None,
            watchers: Vec::new(),
        })
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
            let _ = p.reply.send(self.page(&p.prefix, p.limit));
        }
    }

    /// Registers a watcher and returns its first events.
    fn start_watch(&mut self, msg: Watch) -> ApiResult<WatchStart> {
        if !self.synced {
            return Err(ApiError::ServiceUnavailable(format!("{} watch: the cache is relisting", self.kind.resource)));
        }
        let prefix = list_prefix(self.kind, msg.namespace.as_deref());
        let filter = WatchFilter { prefix, name: msg.name };
        let (tx, rest) = mpsc::channel(WATCHER_BUFFER);
        let initial = match msg.resource_version.filter(|rv| *rv > 0) {
            None => {
                let (kvs, _) = self.cache.list(filter.prefix.as_bytes(), None, 0);
                let kvs = kvs.iter().filter(|kv| filter.matches(&kv.key));
                kvs.map(|kv| WatchEvent::added(self.kind, kv)).collect::<ApiResult<Vec<_>>>()?
            }
            Some(after) => match self.cache.events_after(after) {
                Ok(changes) => {
                    let changes = changes.iter().filter(|c| filter.matches(&c.object.key));
                    changes.map(|c| WatchEvent::of_change(self.kind, c)).collect::<ApiResult<Vec<_>>>()?
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
        self.watchers.retain_mut(|w| {
            for change in &changes {
                if change.revision <= w.sent || !w.filter.matches(&change.object.key) {
                    continue;
                }
                let Ok(event) = WatchEvent::of_change(kind, change) else {
                    tracing::warn!(resource = kind.resource, "a stored object is not JSON; skipped in watches");
                    continue;
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

    fn page(&self, prefix: &str, limit: usize) -> ApiResult<ListPage> {
        let (kvs, more) = self.cache.list(prefix.as_bytes(), None, limit);
        page_of(&kvs.iter().map(|kv| kv.as_ref()).collect::<Vec<_>>(), self.cache.revision(), more)
    }
}

impl Actor for KindActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(BOOKMARK_EVERY, |actor, _| actor.send_bookmarks());
        self.relist(ctx);
    }
}

impl Supervised for KindActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        let actor = format!("kind/{}", self.kind.resource);
        metrics::counter!("flotilla_actor_restarts_total", "actor" => actor.clone()).increment(1);
        tracing::warn!(actor, "actor restarting");
        self.synced = false;
        self.watch = None;
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
        self.pending.push(PendingList { target: msg.target, prefix: msg.prefix, limit: msg.limit, reply });
        self.answer_pending();
        MessageResult(rx)
    }
}

impl Handler<List> for KindActor {
    type Result = ResponseFuture<ApiResult<ListPage>>;

    fn handle(&mut self, msg: List, ctx: &mut Context<Self>) -> Self::Result {
        let (node, kind, me) = (self.node.clone(), self.kind, ctx.address());
        Box::pin(async move {
            let prefix = list_prefix(kind, msg.namespace.as_deref());
            if let Some(token) = &msg.continue_token {
                return object_store::page_at(&node, &prefix, token, msg.limit).await;
            }
            let mut count = RangeRequest::prefix(prefix.clone());
            count.count_only = true;
            let target = node.range(count, true).await?.revision;
            let unavailable = |what: &str| ApiError::ServiceUnavailable(format!("{} list: {what}", kind.resource));
            let rx = me
                .send(ListAt { target, prefix, limit: msg.limit })
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

impl Handler<StartWatch> for KindActor {
    type Result = ApiResult<WatchStart>;

    fn handle(&mut self, StartWatch(msg): StartWatch, _ctx: &mut Context<Self>) -> Self::Result {
        self.start_watch(msg)
    }
}

impl Handler<Watch> for KindActor {
    type Result = ResponseFuture<ApiResult<WatchStart>>;

    fn handle(&mut self, msg: Watch, ctx: &mut Context<Self>) -> Self::Result {
        let (kind, me) = (self.kind, ctx.address());
        Box::pin(async move {
            let unavailable = |what: &str| ApiError::ServiceUnavailable(format!("{} watch: {what}", kind.resource));
            // A list at revision 0 answers once the cache is synced.
            let synced = me
                .send(ListAt { target: 0, prefix: String::new(), limit: 1 })
                .await
                .map_err(|_| unavailable("the kind actor is not running"))?;
            match actix_rt::time::timeout(LIST_WAIT, synced).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Err(unavailable("the kind actor restarted")),
                Err(_) => return Err(unavailable("the watch cache did not sync in time")),
            }
            me.send(StartWatch(msg)).await.map_err(|_| unavailable("the kind actor is not running"))?
        })
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
        let (node, kind) = (self.node.clone(), self.kind);
        Box::pin(async move { object_store::create(&node, kind, msg.namespace.as_deref(), msg.obj).await })
    }
}

impl Handler<Update> for KindActor {
    type Result = ResponseFuture<ApiResult<Value>>;

    fn handle(&mut self, msg: Update, _ctx: &mut Context<Self>) -> Self::Result {
        let (node, kind) = (self.node.clone(), self.kind);
        Box::pin(async move { object_store::update(&node, kind, msg.namespace.as_deref(), &msg.name, msg.obj).await })
    }
}

impl Handler<Delete> for KindActor {
    type Result = ResponseFuture<ApiResult<Value>>;

    fn handle(&mut self, msg: Delete, _ctx: &mut Context<Self>) -> Self::Result {
        let (node, kind) = (self.node.clone(), self.kind);
        Box::pin(async move { object_store::delete(&node, kind, msg.namespace.as_deref(), &msg.name).await })
    }
}

/// The actors of every built-in kind, by (group, resource).
#[derive(Clone, Default)]
pub struct KindActors {
    actors: HashMap<(&'static str, &'static str), Addr<KindActor>>,
}

impl KindActors {
    /// Starts one supervised [`KindActor`] per built-in kind on the current actix arbiter.
    pub fn start(node: &StoreNode) -> Self {
        let actors = BUILTIN.iter().map(|k| ((k.group, k.resource), KindActor::start_supervised(k, node.clone())));
        KindActors { actors: actors.collect() }
    }

    /// The actor of `kind`, if one runs.
    pub fn get(&self, kind: &ResourceKind) -> Option<&Addr<KindActor>> {
        self.actors.get(&(kind.group, kind.resource))
    }
}
