//! The garbage collector (kube-controller-manager's `garbagecollector`): deletes objects
//! whose owners (`metadata.ownerReferences`) are all gone, and carries out what the `orphan`
//! and `foregroundDeletion` finalizers of the `Orphan` and `Foreground` propagation policies
//! ask for.
//!
//! Every built-in kind but events is watched. The ownership graph is not kept apart: it is
//! read from the informers' copies. A key is one object ([`Node`]); an event about an object
//! queues the object and each of its owners (before and after). A reconcile of object X:
//!
//! - as an owner: if X is gone, each dependent that named it is looked at as below; if X is
//!   being deleted with `orphan`, every dependent loses its reference to X, then the
//!   finalizer goes; with `foregroundDeletion`, its dependents are deleted (in the foreground
//!   themselves when they have dependents) and, once no dependent with `blockOwnerDeletion`
//!   is left, the finalizer goes;
//! - as a dependent (kube's `attemptToDeleteItem`): with no owner gone or waiting for its
//!   dependents, nothing; with some owner still there, it only loses the references to those
//!   gone or waiting; with none, it is deleted (`Foreground` if an owner waits and it has
//!   dependents itself, else as its own finalizers say, else `Background`).
//!
//! Nothing goes on the word of a copy: an owner that seems gone is read from the store
//! (linearizable), and a dependent is deleted with its UID and resourceVersion as
//! preconditions. Custom kinds are not watched: their objects are listed from their kind
//! actors when an owner goes, and dependents with custom owners are looked at again every
//! [`RECHECK`].

use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use serde_json::Value;

use crate::api_error::{ApiError, ApiResult};
use crate::controller::{Action, Ctx, ObjectKey, Reconciler, Watched};
use crate::custom_kinds;
use crate::deletion::{being_deleted, finalizers_of, DeleteOptions, FOREGROUND_FINALIZER, ORPHAN_FINALIZER};
use crate::kind_actor::List;
use crate::kinds::{ResourceKind, BUILTIN};
use crate::object_store::Part;

/// How soon a dependent whose owner is of a kind the collector does not watch (a custom
/// kind, or one not known yet) is looked at again.
pub const RECHECK: Duration = Duration::from_secs(5);

/// The garbage collector. Keys are [`Node::key`]s.
pub struct GarbageCollector {
    kinds: Rc<[&'static ResourceKind]>,
}

impl Default for GarbageCollector {
    fn default() -> Self {
        let kinds: Vec<_> = BUILTIN.iter().filter(|k| k.resource != "events").collect();
        GarbageCollector { kinds: kinds.into() }
    }
}

/// An object in the ownership graph: its kind and place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static ResourceKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl Node {
    /// The node of `obj`, an object of `kind`.
    pub fn of(kind: &'static ResourceKind, obj: &Value) -> Option<Node> {
        let key = ObjectKey::of(obj)?;
        Some(Node { kind, namespace: key.namespace.filter(|_| kind.namespaced), name: key.name })
    }

    /// Its work-queue key: the namespace, and `{group}/{resource}/{name}` as the name.
    pub fn key(&self) -> ObjectKey {
        let name = format!("{}/{}/{}", self.kind.group, self.kind.resource, self.name);
        ObjectKey { namespace: self.namespace.clone(), name }
    }

    /// The node of a [`Node::key`] (`None` if its kind is not served now).
    pub fn from_key(key: &ObjectKey) -> Option<Node> {
        let (group, rest) = key.name.split_once('/')?;
        let (resource, name) = rest.split_once('/')?;
        let kind = kind_of_resource(group, resource)?;
        Some(Node { kind, namespace: key.namespace.clone().filter(|_| kind.namespaced), name: name.into() })
    }

    /// Its key in an informer's copy.
    fn object_key(&self) -> ObjectKey {
        ObjectKey::new(self.namespace.as_deref(), &self.name)
    }
}

/// The served kind of (group, resource): built in, or a custom kind's storage version.
fn kind_of_resource(group: &str, resource: &str) -> Option<&'static ResourceKind> {
    BUILTIN
        .iter()
        .find(|k| k.group == group && k.resource == resource)
        .or_else(|| custom_kinds::get(group, resource).map(|c| c.storage_kind()))
}

/// The served kind of (group, Kind), as an owner reference names it (any version).
fn kind_of_kind(group: &str, kind: &str) -> Option<&'static ResourceKind> {
    BUILTIN.iter().find(|k| k.group == group && k.kind == kind).or_else(|| {
        let custom = custom_kinds::all().into_iter().find(|c| c.group == group && c.storage_kind().kind == kind)?;
        Some(custom.storage_kind())
    })
}

/// One entry of `metadata.ownerReferences`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    /// `blockOwnerDeletion: true`: a foreground deletion of the owner waits for this dependent.
    pub blocks: bool,
}

impl OwnerRef {
    /// The API group of the owner's `apiVersion`.
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(group, _)| group)
    }

    /// The owner as seen from a dependent in `namespace`: `None` if its kind is not served,
    /// or if a cluster-scoped dependent names a namespaced owner (kube never collects such a
    /// dependent on its account).
    pub fn owner(&self, namespace: Option<&str>) -> Option<Node> {
        let kind = kind_of_kind(self.group(), &self.kind)?;
        let namespace = match (kind.namespaced, namespace) {
            (true, Some(ns)) => Some(ns.to_string()),
            (true, None) => return None,
            (false, _) => None,
        };
        Some(Node { kind, namespace, name: self.name.clone() })
    }

    /// Whether it names `owner` (by kind and name; the namespace is the dependent's).
    fn names(&self, owner: &Node) -> bool {
        self.name == owner.name && self.kind == owner.kind.kind && self.group() == owner.kind.group
    }
}

/// The owner references of `obj`.
pub fn owner_refs(obj: &Value) -> Vec<OwnerRef> {
    let refs = obj.pointer("/metadata/ownerReferences").and_then(Value::as_array);
    let text = |r: &Value, field: &str| r.get(field).and_then(Value::as_str).map(str::to_string);
    refs.into_iter()
        .flatten()
        .filter_map(|r| {
            Some(OwnerRef {
                api_version: text(r, "apiVersion")?,
                kind: text(r, "kind")?,
                name: text(r, "name")?,
                uid: text(r, "uid").unwrap_or_default(),
                blocks: r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true),
            })
        })
        .collect()
}

fn uid_of(obj: &Value) -> &str {
    obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default()
}

fn namespace_of<'a>(kind: &ResourceKind, obj: &'a Value) -> Option<&'a str> {
    obj.pointer("/metadata/namespace").and_then(Value::as_str).filter(|_| kind.namespaced)
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
}

fn has_finalizer(obj: &Value, finalizer: &str) -> bool {
    finalizers_of(obj).iter().any(|f| f == finalizer)
}

/// Being deleted, with its dependents first (kube's `isDeletingDependents`).
pub fn deleting_dependents(obj: &Value) -> bool {
    being_deleted(obj) && has_finalizer(obj, FOREGROUND_FINALIZER)
}

/// The keys an event about `obj` (of `kind`; `old` before) queues: the object, and each of
/// its owners now and before.
pub fn keys_of(kind: &'static ResourceKind, obj: &Value, old: Option<&Value>) -> Vec<ObjectKey> {
    let mut keys: Vec<ObjectKey> = Node::of(kind, obj).map(|n| n.key()).into_iter().collect();
    let namespace = namespace_of(kind, obj);
    let before = old.map(owner_refs).unwrap_or_default();
    for owner in owner_refs(obj).iter().chain(&before).filter_map(|r| r.owner(namespace)) {
        let key = owner.key();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// How an owner stands, for one of its dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// There (or not resolvable: never collected on its account).
    Solid,
    /// Being deleted with `foregroundDeletion`: waiting for its dependents to go.
    Waiting,
    /// Gone, or replaced by another object of the same name (another UID).
    Dangling,
}

fn state_of(owner: &Value) -> OwnerState {
    if deleting_dependents(owner) {
        OwnerState::Waiting
    } else {
        OwnerState::Solid
    }
}

/// A dependent's owner references by how their owners stand.
#[derive(Debug, Default)]
struct Classified {
    solid: Vec<OwnerRef>,
    waiting: Vec<OwnerRef>,
    dangling: Vec<OwnerRef>,
    /// Some owner is of a kind not watched: look again after [`RECHECK`].
    recheck: bool,
}

/// What picks an owner's dependents.
enum Owned<'a> {
    /// References naming the owner (it is gone: its UID is not known).
    Named,
    /// References with the owner's UID.
    Uid(&'a str),
}

impl Owned<'_> {
    fn matches(&self, r: &OwnerRef, owner: &Node) -> bool {
        match self {
            Owned::Named => r.names(owner),
            Owned::Uid(uid) => r.uid == *uid,
        }
    }
}

/// One reconcile's work.
struct Work {
    ctx: Ctx,
    kinds: Rc<[&'static ResourceKind]>,
}

impl Work {
    /// How the owner `r` of a dependent in `namespace` stands; an owner that is not in the
    /// copies (or has another UID there) is read from the store.
    async fn owner_state(&self, r: &OwnerRef, namespace: Option<&str>) -> ApiResult<(OwnerState, bool)> {
        let Some(owner) = r.owner(namespace) else {
            // An unknown kind may be a custom one not served yet: look again later.
            let unknown = kind_of_kind(r.group(), &r.kind).is_none();
            return Ok((OwnerState::Solid, unknown));
        };
        let lister = self.ctx.lister(owner.kind);
        if let Some(found) = lister.and_then(|l| l.get(&owner.object_key())) {
            if uid_of(&found) == r.uid {
                return Ok((state_of(&found), false));
            }
        }
        let recheck = lister.is_none();
        match self.ctx.get(owner.kind, owner.namespace.as_deref(), &owner.name).await {
            Ok(found) if uid_of(&found) == r.uid => Ok((state_of(&found), recheck)),
            Ok(_) | Err(ApiError::NotFound(_)) => Ok((OwnerState::Dangling, false)),
            Err(e) => Err(e),
        }
    }

    async fn classify(&self, refs: Vec<OwnerRef>, namespace: Option<&str>) -> ApiResult<Classified> {
        let mut out = Classified::default();
        for r in refs {
            let (state, recheck) = self.owner_state(&r, namespace).await?;
            out.recheck |= recheck;
            match state {
                OwnerState::Solid => out.solid.push(r),
                OwnerState::Waiting => out.waiting.push(r),
                OwnerState::Dangling => out.dangling.push(r),
            }
        }
        Ok(out)
    }

    /// The objects whose owner references pick `owner`: from the copies, and for custom
    /// kinds from their actors. Cluster-scoped dependents only for cluster-scoped owners.
    async fn dependents(&self, owner: &Node, owned: Owned<'_>) -> ApiResult<Vec<(&'static ResourceKind, Value)>> {
        let picks = |obj: &Value| owner_refs(obj).iter().any(|r| owned.matches(r, owner));
        let scope = |kind: &ResourceKind| -> Option<Option<String>> {
            match (&owner.namespace, kind.namespaced) {
                (Some(_), false) => None,
                (namespace, true) => Some(namespace.clone()),
                (None, false) => Some(None),
            }
        };
        let mut out = Vec::new();
        for &kind in self.kinds.iter() {
            let (Some(lister), Some(namespace)) = (self.ctx.lister(kind), scope(kind)) else { continue };
            for obj in lister.list_where(namespace.as_deref(), picks) {
                out.push((kind, (*obj).clone()));
            }
        }
        for custom in custom_kinds::all() {
            let kind = custom.storage_kind();
            let (Some(actor), Some(namespace)) = (self.ctx.actors.get(kind), scope(kind)) else { continue };
            let listed = actor.send(List { namespace, ..List::default() }).await;
            match listed.map_err(|e| ApiError::ServiceUnavailable(e.to_string())).and_then(|page| page?.items()) {
                Ok(items) => out.extend(items.into_iter().filter(|o| picks(o)).map(|o| (kind, o))),
                Err(e) => tracing::debug!(resource = kind.resource, error = %e, "listing custom dependents failed"),
            }
        }
        Ok(out)
    }

    /// The object as stored now, if it is still the one with `uid`.
    async fn latest(&self, node: &Node, uid: &str) -> ApiResult<Option<Value>> {
        match self.ctx.get(node.kind, node.namespace.as_deref(), &node.name).await {
            Ok(found) if uid_of(&found) == uid => Ok(Some(found)),
            Ok(_) | Err(ApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `obj` (its resourceVersion a precondition); one gone meanwhile is no error.
    async fn write(&self, kind: &'static ResourceKind, obj: Value) -> ApiResult<Option<Value>> {
        match self.ctx.update(kind, Part::Main, obj).await {
            Ok(written) => Ok(Some(written)),
            Err(ApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the owner references with these UIDs from the object `node` (with `uid`).
    async fn drop_refs(&self, node: &Node, uid: &str, owners: &BTreeSet<&str>) -> ApiResult<()> {
        let Some(mut latest) = self.latest(node, uid).await? else { return Ok(()) };
        let Some(refs) = latest.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut) else {
            return Ok(());
        };
        let before = refs.len();
        refs.retain(|r| !owners.contains(r.get("uid").and_then(Value::as_str).unwrap_or_default()));
        if refs.len() == before {
            return Ok(());
        }
        if refs.is_empty() {
            if let Some(meta) = latest.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("ownerReferences");
            }
        }
        self.write(node.kind, latest).await.map(drop)
    }

    /// Removes `finalizer` from the object `node` (with `uid`); the update deletes it if that
    /// was the last one.
    async fn remove_finalizer(&self, node: &Node, uid: &str, finalizer: &str) -> ApiResult<()> {
        let Some(mut latest) = self.latest(node, uid).await? else { return Ok(()) };
        let Some(list) = latest.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) else {
            return Ok(());
        };
        let before = list.len();
        list.retain(|f| f.as_str() != Some(finalizer));
        if list.len() == before {
            return Ok(());
        }
        tracing::debug!(resource = node.kind.resource, name = %node.name, finalizer, "removing finalizer");
        self.write(node.kind, latest).await.map(drop)
    }

    /// Deletes `obj` as it is now (UID and resourceVersion preconditions).
    async fn delete(&self, kind: &'static ResourceKind, obj: &Value, policy: &str) -> ApiResult<()> {
        let options = DeleteOptions {
            uid: Some(uid_of(obj).to_string()),
            resource_version: obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string),
            propagation_policy: Some(policy.to_string()),
            ..DeleteOptions::default()
        };
        tracing::debug!(resource = kind.resource, name = name_of(obj), policy, "collecting");
        match self.ctx.delete(kind, (namespace_of(kind, obj), name_of(obj)), options).await {
            Ok(_) | Err(ApiError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// kube's `attemptToDeleteItem` for `obj`, a dependent of `kind`. Returns whether to look
    /// at it again after [`RECHECK`].
    async fn attempt_to_delete(&self, kind: &'static ResourceKind, obj: &Value) -> ApiResult<bool> {
        // Already going: its own reconcile deals with its dependents.
        if being_deleted(obj) || owner_refs(obj).is_empty() {
            return Ok(false);
        }
        let namespace = namespace_of(kind, obj);
        let seen = self.classify(owner_refs(obj), namespace).await?;
        if seen.dangling.is_empty() && seen.waiting.is_empty() {
            return Ok(seen.recheck);
        }
        let Some(node) = Node::of(kind, obj) else { return Ok(false) };
        let uid = uid_of(obj).to_string();
        let Some(latest) = self.latest(&node, &uid).await? else { return Ok(false) };
        if being_deleted(&latest) {
            return Ok(false);
        }
        let now = self.classify(owner_refs(&latest), namespace).await?;
        if now.dangling.is_empty() && now.waiting.is_empty() {
            return Ok(now.recheck);
        }
        if !now.solid.is_empty() {
            let owners: BTreeSet<&str> = now.dangling.iter().chain(&now.waiting).map(|r| r.uid.as_str()).collect();
            self.drop_refs(&node, &uid, &owners).await?;
            return Ok(now.recheck);
        }
        let mut latest = latest;
        let own = match now.waiting.is_empty() {
            true => Vec::new(),
            false => self.dependents(&node, Owned::Uid(&uid)).await?,
        };
        let policy = if !own.is_empty() {
            // A dependent waiting for its own dependents could wait on this one through a
            // cycle: this one stops blocking its owners first.
            if own.iter().any(|(_, d)| deleting_dependents(d)) {
                match self.unblock(kind, latest).await? {
                    Some(written) => latest = written,
                    None => return Ok(false),
                }
            }
            "Foreground"
        } else if has_finalizer(&latest, ORPHAN_FINALIZER) {
            "Orphan"
        } else if has_finalizer(&latest, FOREGROUND_FINALIZER) {
            "Foreground"
        } else {
            "Background"
        };
        self.delete(kind, &latest, policy).await?;
        Ok(false)
    }

    /// Sets `blockOwnerDeletion: false` on every reference of `obj` that blocks.
    async fn unblock(&self, kind: &'static ResourceKind, mut obj: Value) -> ApiResult<Option<Value>> {
        let refs = obj.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut);
        let mut changed = false;
        for r in refs.into_iter().flatten() {
            if r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true) {
                r["blockOwnerDeletion"] = Value::Bool(false);
                changed = true;
            }
        }
        if !changed {
            return Ok(Some(obj));
        }
        self.write(kind, obj).await
    }

    /// `Orphan`: every dependent loses its reference to the owner, then the finalizer goes.
    async fn orphan_dependents(&self, owner: &Node, uid: &str) -> ApiResult<()> {
        let owners = BTreeSet::from([uid]);
        for (kind, dep) in self.dependents(owner, Owned::Uid(uid)).await? {
            let Some(node) = Node::of(kind, &dep) else { continue };
            self.drop_refs(&node, uid_of(&dep), &owners).await?;
        }
        self.remove_finalizer(owner, uid, ORPHAN_FINALIZER).await
    }

    /// `Foreground` (kube's `processDeletingDependentsItem`): the dependents are deleted; the
    /// finalizer goes once none that blocks is left. Returns whether to look again later.
    async fn delete_dependents_first(&self, owner: &Node, uid: &str) -> ApiResult<bool> {
        let dependents = self.dependents(owner, Owned::Uid(uid)).await?;
        let mut recheck = false;
        for (kind, dep) in &dependents {
            recheck |= self.attempt_to_delete(kind, dep).await?;
        }
        let blocking = dependents.iter().any(|(_, d)| owner_refs(d).iter().any(|r| r.uid == uid && r.blocks));
        if !blocking {
            self.remove_finalizer(owner, uid, FOREGROUND_FINALIZER).await?;
        }
        // The dependents' events bring the owner back; custom ones are not watched.
        let custom = dependents.iter().any(|(kind, _)| !self.kinds.contains(kind));
        Ok(recheck || (blocking && custom))
    }

    async fn reconcile(&self, node: Node) -> ApiResult<Action> {
        let copy = self.ctx.lister(node.kind).and_then(|l| l.get(&node.object_key()));
        let current = match copy {
            Some(obj) => Some((*obj).clone()),
            None => match self.ctx.get(node.kind, node.namespace.as_deref(), &node.name).await {
                Ok(obj) => Some(obj),
                Err(ApiError::NotFound(_)) => None,
                Err(e) => return Err(e),
            },
        };
        let mut recheck = false;
        match &current {
            None => {
                for (kind, dep) in self.dependents(&node, Owned::Named).await? {
                    recheck |= self.attempt_to_delete(kind, &dep).await?;
                }
            }
            Some(obj) if being_deleted(obj) => {
                let uid = uid_of(obj);
                if has_finalizer(obj, ORPHAN_FINALIZER) {
                    self.orphan_dependents(&node, uid).await?;
                } else if has_finalizer(obj, FOREGROUND_FINALIZER) {
                    recheck |= self.delete_dependents_first(&node, uid).await?;
                }
            }
            Some(obj) => recheck |= self.attempt_to_delete(node.kind, obj).await?,
        }
        Ok(if recheck { Action::RequeueAfter(RECHECK) } else { Action::Done })
    }
}

impl Reconciler for GarbageCollector {
    fn name(&self) -> &'static str {
        "garbagecollector"
    }

    fn watches(&self) -> Vec<Watched> {
        let keys = |kind: &'static ResourceKind| move |obj: &Value, old: Option<&Value>| keys_of(kind, obj, old);
        self.kinds.iter().map(|&kind| Watched::with(kind, keys(kind))).collect()
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        let work = Work { ctx, kinds: self.kinds.clone() };
        Box::pin(async move {
            match Node::from_key(&key) {
                Some(node) => work.reconcile(node).await,
                None => Ok(Action::Done),
            }
        })
    }

    fn workers(&self) -> usize {
        8
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::find;

    fn rs_owned_pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "shop", "uid": "p",
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "r", "controller": true,
                 "blockOwnerDeletion": true},
                {"apiVersion": "v1", "kind": "Node", "name": "node-1", "uid": "n"},
                {"apiVersion": "example.com/v1", "kind": "Unknown", "name": "x", "uid": "u"}]}})
    }

    #[test]
    fn keys_round_trip_and_name_the_object_and_its_owners() {
        let pods = find("", "v1", "pods").unwrap();
        let keys = keys_of(pods, &rs_owned_pod(), None);
        let nodes: Vec<Node> = keys.iter().map(|k| Node::from_key(k).unwrap()).collect();
        assert_eq!(nodes[0], Node { kind: pods, namespace: Some("shop".into()), name: "web-1".into() });
        assert_eq!(keys[1], ObjectKey::new(Some("shop"), "apps/replicasets/web"));
        assert_eq!(nodes[2].kind.resource, "nodes");
        assert_eq!(nodes[2].namespace, None, "a cluster-scoped owner");
        assert_eq!(keys.len(), 3, "an owner of an unknown kind has no key");
        assert!(Node::from_key(&ObjectKey::new(None, "nonsense")).is_none());
    }

    #[test]
    fn owner_references_parse_with_their_blocking_flag() {
        let refs = owner_refs(&rs_owned_pod());
        assert_eq!(refs.len(), 3);
        assert!(refs[0].blocks && !refs[1].blocks);
        assert_eq!((refs[0].group(), refs[1].group()), ("apps", ""));
        // A cluster-scoped dependent cannot have a namespaced owner.
        assert!(refs[0].owner(None).is_none());
        assert!(refs[1].owner(None).is_some());
    }

    #[test]
    fn only_objects_being_deleted_with_the_foreground_finalizer_wait_for_dependents() {
        let mut owner = json!({"metadata": {"name": "o", "finalizers": [FOREGROUND_FINALIZER]}});
        assert_eq!(state_of(&owner), OwnerState::Solid);
        owner["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        assert_eq!(state_of(&owner), OwnerState::Waiting);
        owner["metadata"]["finalizers"] = json!([ORPHAN_FINALIZER]);
        assert_eq!(state_of(&owner), OwnerState::Solid);
    }
}
