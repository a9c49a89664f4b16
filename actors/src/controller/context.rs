//! What a reconcile works with: the informers' copies ([`Lister`]) and writes through the
//! kind actors, the path every API client's writes take (defaults, validation, managed
//! fields as the controller), plus Events like upstream's event recorder.

use std::collections::HashMap;

use raft_store::StoreNode;
use serde_json::{json, Value};

use super::informer::Lister;
use crate::api_error::{ApiError, ApiResult};
use crate::deletion::{DeleteOptions, Deleted};
use crate::kind_actor::{Create, Delete, Fenced, Get, KindActor, KindActors, Patch, Update};
use crate::kinds::{self, ResourceKind};
use crate::object_store::Part;
use crate::patch::PatchKind;
use crate::FieldValidation;

/// A reconcile's view of the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Ctx {
    pub actors: KindActors,
    pub node: StoreNode,
    listers: HashMap<(&'static str, &'static str), Lister>,
    /// The field manager of its writes, and the Events' source: the controller's name.
    pub manager: &'static str,
    /// The Raft leadership term the controller started leading in: its writes are fenced to
    /// it, so they fail at the store once that leadership has ended. `None` in tests that
    /// run a reconcile without leadership.
    pub leader_term: Option<u64>,
}

fn unreachable(kind: &ResourceKind, e: actix::MailboxError) -> ApiError {
    ApiError::ServiceUnavailable(format!("{} actor: {e}", kind.resource))
}

impl Ctx {
    pub fn new(
        actors: KindActors,
        node: StoreNode,
        listers: HashMap<(&'static str, &'static str), Lister>,
        manager: &'static str,
    ) -> Self {
        Ctx { actors, node, listers, manager, leader_term: None }
    }

    /// This context with its writes fenced to the leadership of `term`.
    pub fn fenced(mut self, term: Option<u64>) -> Self {
        self.leader_term = term;
        self
    }

    /// Sends a write to `kind`'s actor, fenced to the leadership term if there is one.
    async fn write<M, R>(&self, kind: &ResourceKind, msg: M) -> ApiResult<R>
    where
        M: actix::Message<Result = ApiResult<R>> + Send + 'static,
        R: Send + 'static,
        KindActor: actix::Handler<M> + actix::Handler<Fenced<M>>,
    {
        let actor = self.actor(kind)?;
        let sent = match self.leader_term {
            Some(term) => actor.send(Fenced(term, msg)).await,
            None => actor.send(msg).await,
        };
        sent.map_err(|e| unreachable(kind, e))?
    }

    /// The copy of a watched kind's objects.
    pub fn lister(&self, kind: &ResourceKind) -> Option<&Lister> {
        self.listers.get(&(kind.group, kind.resource))
    }

    fn actor(&self, kind: &ResourceKind) -> ApiResult<actix::Addr<crate::KindActor>> {
        self.actors.get(kind).ok_or_else(|| ApiError::ServiceUnavailable(format!("no actor for {}", kind.resource)))
    }

    /// Reads an object from the store (linearizable), not from a copy.
    pub async fn get(&self, kind: &ResourceKind, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        let msg = Get { namespace: ns.map(String::from), name: name.into() };
        self.actor(kind)?.send(msg).await.map_err(|e| unreachable(kind, e))?
    }

    pub async fn create(&self, kind: &ResourceKind, ns: Option<&str>, obj: Value) -> ApiResult<Value> {
        let msg = Create { namespace: ns.map(String::from), obj, field_manager: Some(self.manager.into()) };
        self.write(kind, msg).await
    }

    /// Replaces the object (or its status, with `Part::Status`); its resourceVersion is a
    /// precondition (409 if the object moved on).
    pub async fn update(&self, kind: &ResourceKind, part: Part, obj: Value) -> ApiResult<Value> {
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        let namespace = obj.pointer("/metadata/namespace").and_then(Value::as_str).map(String::from);
        let msg = Update { namespace, name, obj, field_manager: Some(self.manager.into()), part };
        self.write(kind, msg).await
    }

    /// A JSON merge patch of the object (or of its status, with `Part::Status`).
    pub async fn merge_patch(
        &self,
        kind: &ResourceKind,
        (ns, name): (Option<&str>, &str),
        part: Part,
        patch: &Value,
    ) -> ApiResult<Value> {
        let msg = Patch {
            namespace: ns.map(String::from),
            name: name.into(),
            patch_kind: PatchKind::Merge,
            body: patch.to_string().into_bytes(),
            field_manager: Some(self.manager.into()),
            force: false,
            part,
            field_validation: FieldValidation::Ignore,
        };
        Ok(self.write(kind, msg).await?.obj)
    }

    pub async fn delete(
        &self,
        kind: &ResourceKind,
        (ns, name): (Option<&str>, &str),
        options: DeleteOptions,
    ) -> ApiResult<Deleted> {
        let msg = Delete { namespace: ns.map(String::from), name: name.into(), options };
        self.write(kind, msg).await
    }

    /// Records a core/v1 Event about `involved` (`Normal` or `Warning`), as upstream's
    /// recorder: named `{object}.{unique suffix}`, in the object's namespace (`default` for
    /// cluster-scoped objects). A failure to record is logged, never an error.
    pub async fn event(&self, involved: &Value, event_type: &str, reason: &str, message: &str) {
        let Some(kind) = kinds::find("", "v1", "events") else { return };
        let meta = |f: &str| involved.pointer(&format!("/metadata/{f}")).and_then(Value::as_str).unwrap_or("");
        let namespace = match meta("namespace") {
            "" => "default",
            ns => ns,
        };
        let now = crate::objects::timestamp(time::OffsetDateTime::now_utc());
        let suffix = crate::objects::new_uid().replace('-', "");
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": format!("{}.{}", meta("name"), &suffix[..16]), "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion").cloned().unwrap_or(Value::Null),
                "kind": involved.get("kind").cloned().unwrap_or(Value::Null),
                "name": meta("name"),
                "namespace": meta("namespace"),
                "uid": meta("uid"),
                "resourceVersion": meta("resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "type": event_type,
            "source": {"component": self.manager},
            "reportingComponent": self.manager,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        });
        if let Err(e) = self.create(kind, Some(namespace), event).await {
            tracing::debug!(component = self.manager, error = %e, "recording an event failed");
        }
    }
}
