//! The NamespaceLifecycle admission plugin, as kube-apiserver's (first in its chain): no
//! content is written into a namespace that does not exist (404 `namespaces "x" not found`)
//! and nothing new is created in one being terminated (403, cause `NamespaceTerminating`);
//! the namespaces `default`, `kube-system` and `kube-public` may not be deleted. Deletes of
//! content, and updates in a terminating namespace, are allowed.
//!
//! [`check_open`] is the one implementation of the create rule; writes that skip admission
//! altogether (the bootstrap, in-process tests without a chain) call it from the store path.

use raft_store::{RangeRequest, StoreNode};
use serde_json::Value;

use super::{Admission, Attributes, Operation, Step};
use crate::api_error::{ApiError, ApiResult, Cause, Subject};
use crate::kinds::ResourceKind;

/// Namespaces that can never be deleted (kube's `immortalNamespaces`).
pub const IMMORTAL: [&str; 3] = ["default", "kube-system", "kube-public"];

fn namespace_subject(ns: &str) -> Subject {
    Subject { group: "", resource: "namespaces", kind: "Namespace", name: ns.into() }
}

/// Reads namespace `ns`: from this member's applied state first, then linearizably if it is
/// not there (a namespace created a moment ago may not have reached a follower yet; kube
/// also falls back from its cache to a live lookup). `None` if it does not exist.
async fn namespace(node: &StoreNode, ns: &str, linearizable: bool) -> ApiResult<Option<Value>> {
    let key = format!("/registry/core/namespaces/{ns}");
    let mut found = node.range(RangeRequest::key(key.clone()), linearizable).await?;
    if found.kvs.is_empty() && !linearizable {
        found = node.range(RangeRequest::key(key), true).await?;
    }
    let Some(kv) = found.kvs.first() else { return Ok(None) };
    let namespace = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::InternalError(format!("stored namespace is not JSON: {e}")))?;
    Ok(Some(namespace))
}

fn terminating(namespace: &Value) -> bool {
    namespace.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
}

/// The 403 of a create into namespace `ns` while it is being terminated.
fn terminating_error(kind: &ResourceKind, ns: &str, name: &str) -> ApiError {
    let cause = Cause {
        reason: "NamespaceTerminating",
        message: format!("namespace {ns} is being terminated"),
        field: "metadata.namespace".into(),
    };
    ApiError::Forbidden {
        subject: Subject::of(kind, name),
        why: format!("unable to create new content in namespace {ns} because it is being terminated"),
        causes: vec![cause],
    }
}

/// A create of `name` (of `kind`) into namespace `ns`: 404 if the namespace is missing,
/// 403 if it is being terminated. Read linearizably: a namespace whose deletion was just
/// acknowledged must refuse new content on every member.
pub async fn check_open(node: &StoreNode, kind: &ResourceKind, ns: &str, name: &str) -> ApiResult<()> {
    match namespace(node, ns, true).await? {
        None => Err(ApiError::NotFound(namespace_subject(ns))),
        Some(namespace) if terminating(&namespace) => Err(terminating_error(kind, ns, name)),
        Some(_) => Ok(()),
    }
}

/// kube allows access reviews in any namespace: a 404 would tell who may not know that
/// the namespace exists.
fn is_access_review(kind: &ResourceKind) -> bool {
    (kind.group, kind.resource) == ("authorization.k8s.io", "localsubjectaccessreviews")
}

/// The NamespaceLifecycle admission plugin; it reads namespaces from the store.
pub struct NamespaceLifecycle {
    pub node: StoreNode,
}

impl NamespaceLifecycle {
    async fn admit(&self, attrs: &Attributes) -> ApiResult<()> {
        let is_namespace = attrs.kind.group.is_empty() && attrs.kind.resource == "namespaces";
        if attrs.operation == Operation::Delete && is_namespace && IMMORTAL.contains(&attrs.name.as_str()) {
            return Err(ApiError::Forbidden {
                subject: Subject::of(attrs.kind, attrs.name.clone()),
                why: "this namespace may not be deleted".into(),
                causes: Vec::new(),
            });
        }
        let Some(ns) = attrs.namespace.as_deref().filter(|ns| !ns.is_empty() && attrs.kind.namespaced) else {
            return Ok(());
        };
        if is_namespace || is_access_review(attrs.kind) {
            return Ok(());
        }
        match attrs.operation {
            Operation::Create => check_open(&self.node, attrs.kind, ns, &attrs.name).await,
            // Updates need the namespace to exist, whatever its phase.
            Operation::Update | Operation::Connect => match namespace(&self.node, ns, false).await? {
                Some(_) => Ok(()),
                None => Err(ApiError::NotFound(namespace_subject(ns))),
            },
            Operation::Delete => Ok(()),
        }
    }
}

impl Admission for NamespaceLifecycle {
    /// kube runs it as a mutating plugin, first of all, so nothing else works on a write that
    /// it refuses.
    fn mutate<'a>(&'a self, attrs: &'a Attributes, _obj: &'a mut Value, _old: Option<&'a Value>) -> Step<'a> {
        Box::pin(async move {
            self.admit(attrs).await?;
            Ok(Vec::new())
        })
    }

    fn validate<'a>(&'a self, _: &'a Attributes, _: &'a Value, _: Option<&'a Value>) -> Step<'a> {
        Box::pin(async { Ok(Vec::new()) })
    }
}
