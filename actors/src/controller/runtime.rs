//! The controller actor: informers feeding a work queue, reconciles run a few at a time,
//! only while this member's store is the Raft leader. One generic actor,
//! [`ControllerActor`], drives any [`Reconciler`]; [`Controllers`] starts them and starts
//! again (with backoff) any whose actor died of a panic.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use raft_store::StoreNode;
use serde_json::Value;

use super::context::Ctx;
use super::informer::{Lister, ObjectKey};
use super::queue::WorkQueue;
use crate::api_error::ApiError;
use crate::kind_actor::{KindActors, Watch};
use crate::kinds::ResourceKind;
use crate::watch::WatchEvent;

/// How often a controller checks whether this member leads.
const LEADERSHIP_EVERY: Duration = Duration::from_millis(250);
/// How soon a failed informer watch is started again.
const REWATCH: Duration = Duration::from_millis(200);

/// What a reconcile asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing until the next event about the key.
    Done,
    /// Look at the key again after this long (a grace period, a deadline, a timer).
    RequeueAfter(Duration),
}

/// Which keys an event about one object asks to reconcile: the object and the object it
/// replaced (`None` for a first sight).
pub type KeysOf = Rc<dyn Fn(&Value, Option<&Value>) -> Vec<ObjectKey>>;

/// A kind a controller watches, and the keys its events ask to reconcile.
#[derive(Clone)]
pub struct Watched {
    pub kind: &'static ResourceKind,
    pub keys: KeysOf,
}

impl Watched {
    /// The primary kind: each object is its own key.
    pub fn objects(kind: &'static ResourceKind) -> Watched {
        Watched { kind, keys: Rc::new(|obj: &Value, _: Option<&Value>| ObjectKey::of(obj).into_iter().collect()) }
    }

    /// Objects controlled (`ownerReferences` with `controller: true`) by an object of Kind
    /// `owner_kind` in the same namespace: the owner's key, for the object now and before.
    pub fn owned_by(kind: &'static ResourceKind, owner_kind: &'static str) -> Watched {
        let keys = move |obj: &Value, old: Option<&Value>| {
            let mut keys: Vec<ObjectKey> = controller_of(obj, owner_kind).into_iter().collect();
            if let Some(before) = old.and_then(|o| controller_of(o, owner_kind)) {
                if !keys.contains(&before) {
                    keys.push(before);
                }
            }
            keys
        };
        Watched { kind, keys: Rc::new(keys) }
    }

    /// Any other mapping.
    pub fn with(
        kind: &'static ResourceKind,
        keys: impl Fn(&Value, Option<&Value>) -> Vec<ObjectKey> + 'static,
    ) -> Watched {
        Watched { kind, keys: Rc::new(keys) }
    }
}

/// The key of `obj`'s controller of Kind `owner_kind`, if it has one.
pub fn controller_of(obj: &Value, owner_kind: &str) -> Option<ObjectKey> {
    let refs = obj.pointer("/metadata/ownerReferences")?.as_array()?;
    let owner = refs.iter().find(|r| {
        r.get("controller").and_then(Value::as_bool) == Some(true)
            && r.get("kind").and_then(Value::as_str) == Some(owner_kind)
    })?;
    let name = owner.get("name")?.as_str()?;
    let namespace = obj.pointer("/metadata/namespace").and_then(Value::as_str);
    Some(ObjectKey::new(namespace, name))
}

/// What a controller does. Implement it on a plain struct; [`ControllerActor`] runs it.
pub trait Reconciler: 'static {
    /// For logs and metrics: `replicaset`, `deployment`, `scheduler`.
    fn name(&self) -> &'static str;
    /// The kinds it watches. Reconciles wait until every one of them is listed.
    fn watches(&self) -> Vec<Watched>;
    /// Brings the world in line with the key's object (which may be gone).
    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>>;
    /// How many reconciles may run at once (never two for one key).
    fn workers(&self) -> usize {
        2
    }
}

/// One informer of a controller: the watched kind, its copy, its watch.
struct Informer {
    watched: Watched,
    lister: Lister,
    watch: Option<SpawnHandle>,
}

/// Internal: an event of informer `index`, or the end of its watch (`None`).
#[derive(Message)]
#[rtype(result = "()")]
struct Event(usize, Option<WatchEvent>);

/// Internal: queue a key again (after a backoff or a requested delay).
#[derive(Message)]
#[rtype(result = "()")]
struct Requeue(ObjectKey);

/// Test hook: panic inside the controller, as a bug would.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

/// The actor that runs a [`Reconciler`].
pub struct ControllerActor<R: Reconciler> {
    reconciler: Rc<R>,
    actors: KindActors,
    node: StoreNode,
    informers: Vec<Informer>,
    queue: WorkQueue<ObjectKey>,
    running: usize,
    leading: bool,
    /// The Raft term of this leadership; every write is fenced to it.
    term: Option<u64>,
}

impl<R: Reconciler> ControllerActor<R> {
    pub fn new(reconciler: R, actors: KindActors, node: StoreNode) -> Self {
        let informers = reconciler
            .watches()
            .into_iter()
            .map(|watched| Informer { lister: Lister::new(watched.kind), watched, watch: None })
            .collect();
        ControllerActor {
            reconciler: Rc::new(reconciler),
            actors,
            node,
            informers,
            queue: WorkQueue::default(),
            running: 0,
            leading: false,
            term: None,
        }
    }

    fn name(&self) -> &'static str {
        self.reconciler.name()
    }

    fn context(&self) -> Ctx {
        let listers: HashMap<(&'static str, &'static str), Lister> = self
            .informers
            .iter()
            .map(|i| ((i.watched.kind.group, i.watched.kind.resource), i.lister.clone()))
            .collect();
        Ctx::new(self.actors.clone(), self.node.clone(), listers, self.name()).fenced(self.term)
    }

    /// Starts or stops the work as this member gains or loses leadership. A leadership of
    /// another term (lost and won again between two checks) starts afresh: writes in flight
    /// for the old term fail at the store.
    fn check_leadership(&mut self, ctx: &mut Context<Self>) {
        let term = self.node.leader_term();
        if self.leading && term != self.term {
            tracing::info!(controller = self.name(), term = ?self.term, "no longer leading: stopping");
            self.leading = false;
            self.term = None;
            for informer in &mut self.informers {
                if let Some(handle) = informer.watch.take() {
                    ctx.cancel_future(handle);
                }
                informer.lister.clear();
            }
            self.queue.clear();
        }
        if let (Some(term), false) = (term, self.leading) {
            tracing::info!(controller = self.name(), term, "leading: starting");
            self.leading = true;
            self.term = Some(term);
            for i in 0..self.informers.len() {
                self.start_informer(i, ctx);
            }
        }
    }

    /// Watches informer `index`'s kind from now: the first events list every object.
    fn start_informer(&mut self, index: usize, ctx: &mut Context<Self>) {
        let informer = &mut self.informers[index];
        if let Some(handle) = informer.watch.take() {
            ctx.cancel_future(handle);
        }
        let Some(actor) = self.actors.get(informer.watched.kind) else {
            ctx.run_later(REWATCH, move |act, ctx| act.start_informer(index, ctx));
            return;
        };
        let msg = Watch { bookmarks: false, ..Watch::default() };
        let started = async move { actor.send(msg).await };
        ctx.spawn(started.into_actor(self).map(move |result, act, ctx| {
            if !act.leading {
                return;
            }
            match result {
                Ok(Ok(start)) => {
                    let informer = &mut act.informers[index];
                    let objects: Vec<Value> = start.initial.into_iter().map(|e| e.object).collect();
                    let gone = informer.lister.replace(objects);
                    let keys = informer.watched.keys.clone();
                    let mut queued: Vec<ObjectKey> = Vec::new();
                    for obj in informer.lister.list(None).iter().chain(gone.iter()) {
                        queued.extend(keys(obj, None));
                    }
                    let events = start
                        .rest
                        .map(move |e| Event(index, Some(e)))
                        .chain(futures::stream::once(async move { Event(index, None) }));
                    act.informers[index].watch = Some(ctx.add_stream(events));
                    for key in queued {
                        act.queue.add(key);
                    }
                    act.kick(ctx);
                }
                Ok(Err(e)) => {
                    tracing::debug!(controller = act.name(), error = %e, "informer watch refused; retrying");
                    ctx.run_later(REWATCH, move |act, ctx| act.start_informer(index, ctx));
                }
                Err(e) => {
                    tracing::debug!(controller = act.name(), error = %e, "kind actor unreachable; retrying");
                    ctx.run_later(REWATCH, move |act, ctx| act.start_informer(index, ctx));
                }
            }
        }));
    }

    /// Starts reconciles for queued keys, up to the worker count, once every informer has
    /// its first list.
    fn kick(&mut self, ctx: &mut Context<Self>) {
        if !self.leading || !self.informers.iter().all(|i| i.lister.has_synced()) {
            return;
        }
        let name = self.name();
        metrics::gauge!("flotilla_controller_queue_depth", "controller" => name).set(self.queue.len() as f64);
        while self.running < self.reconciler.workers() {
            let Some(key) = self.queue.take_next() else { break };
            self.running += 1;
            let started = Instant::now();
            let work = self.reconciler.clone().reconcile(self.context(), key.clone());
            ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
                act.running -= 1;
                act.queue.done(&key);
                metrics::histogram!("flotilla_controller_reconcile_duration_seconds", "controller" => name)
                    .record(started.elapsed().as_secs_f64());
                let outcome = match result {
                    Ok(Action::Done) => {
                        act.queue.forget(&key);
                        "success"
                    }
                    Ok(Action::RequeueAfter(after)) => {
                        act.queue.forget(&key);
                        ctx.notify_later(Requeue(key), after);
                        "requeue"
                    }
                    Err(e) => {
                        let after = act.queue.backoff(&key);
                        tracing::debug!(controller = name, key = %key, error = %e, ?after, "reconcile failed; retrying");
                        ctx.notify_later(Requeue(key), after);
                        "error"
                    }
                };
                metrics::counter!("flotilla_controller_reconciles_total", "controller" => name, "result" => outcome)
                    .increment(1);
                act.kick(ctx);
            }));
        }
    }
}

impl<R: Reconciler> Actor for ControllerActor<R> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        metrics::gauge!("flotilla_controller_running", "controller" => self.name()).set(1.0);
        self.check_leadership(ctx);
        ctx.run_interval(LEADERSHIP_EVERY, |act, ctx| act.check_leadership(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        metrics::gauge!("flotilla_controller_running", "controller" => self.name()).set(0.0);
    }
}

impl<R: Reconciler> StreamHandler<Event> for ControllerActor<R> {
    fn handle(&mut self, Event(index, event): Event, ctx: &mut Context<Self>) {
        let Some(event) = event else {
            // The kind actor dropped the watch (restarted, or this controller fell behind):
            // list and watch again; what changed meanwhile shows in the new list.
            if self.leading {
                ctx.run_later(REWATCH, move |act, ctx| act.start_informer(index, ctx));
            }
            return;
        };
        if event.event_type == "ERROR" {
            ctx.run_later(REWATCH, move |act, ctx| act.start_informer(index, ctx));
            return;
        }
        let informer = &self.informers[index];
        if let Some((obj, old)) = informer.lister.apply(&event) {
            for key in (informer.watched.keys)(&obj, old.as_deref()) {
                self.queue.add(key);
            }
        }
        self.kick(ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl<R: Reconciler> Handler<Requeue> for ControllerActor<R> {
    type Result = ();

    fn handle(&mut self, Requeue(key): Requeue, ctx: &mut Context<Self>) {
        if self.leading {
            self.queue.add(key);
            self.kick(ctx);
        }
    }
}

impl<R: Reconciler> Handler<InjectPanic> for ControllerActor<R> {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _ctx: &mut Context<Self>) {
        panic!("injected panic in the {} controller", self.name());
    }
}

/// Starts a controller; called again to restart it.
type Starter = Box<dyn Fn() -> Recipient<InjectPanic>>;

struct Running {
    name: &'static str,
    start: Starter,
    addr: Recipient<InjectPanic>,
    restarts: u32,
    /// Not started again before this (backoff after a crash).
    next_start: Instant,
}

/// The controllers of a member, and their watchdog: a controller whose actor died (a
/// panic ends its task) is started again after 1 s, 2 s, 4 s ... (at most 30 s).
pub struct Controllers {
    actors: KindActors,
    node: StoreNode,
    running: Vec<Running>,
}

impl Controllers {
    pub fn new(actors: KindActors, node: StoreNode) -> Self {
        Controllers { actors, node, running: Vec::new() }
    }

    /// Adds and starts the controller that `make` builds.
    pub fn with<R: Reconciler>(mut self, make: impl Fn() -> R + 'static) -> Self {
        let (actors, node) = (self.actors.clone(), self.node.clone());
        let name = make().name();
        let start: Starter = Box::new(move || {
            let actor = ControllerActor::new(make(), actors.clone(), node.clone());
            actor.start().recipient()
        });
        let addr = start();
        self.running.push(Running { name, start, addr, restarts: 0, next_start: Instant::now() });
        self
    }

    /// Starts the watchdog actor; returns its address.
    pub fn run(self) -> Addr<Controllers> {
        self.start()
    }

    fn watch_over(&mut self) {
        let now = Instant::now();
        for c in &mut self.running {
            if c.addr.connected() {
                continue;
            }
            if now < c.next_start {
                continue;
            }
            c.restarts += 1;
            let backoff = Duration::from_secs(1 << (c.restarts - 1).min(5)).min(Duration::from_secs(30));
            c.next_start = now + backoff;
            metrics::counter!("flotilla_actor_restarts_total", "actor" => format!("controller/{}", c.name))
                .increment(1);
            tracing::warn!(controller = c.name, restarts = c.restarts, "controller died (panicked); starting it again");
            c.addr = (c.start)();
        }
    }
}

impl Actor for Controllers {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_millis(200), |act, _| act.watch_over());
    }
}

/// Sends the test panic to the controller `name`.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct PanicController(pub &'static str);

impl Handler<PanicController> for Controllers {
    type Result = bool;

    fn handle(&mut self, PanicController(name): PanicController, _ctx: &mut Context<Self>) -> bool {
        let Some(c) = self.running.iter().find(|c| c.name == name) else { return false };
        c.addr.do_send(InjectPanic);
        true
    }
}
