//! The service account controller: every active namespace has a `default` ServiceAccount
//! (kube-controller-manager's `serviceaccount-controller`).

use std::rc::Rc;

use futures::future::LocalBoxFuture;
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::controller::{Action, Ctx, ObjectKey, Reconciler, Watched};
use crate::kinds::{self, ResourceKind};

fn kind(resource: &str) -> &'static ResourceKind {
    kinds::find("", "v1", resource).unwrap_or(&kinds::BUILTIN[0])
}

/// Whether a namespace takes new objects (not terminating).
pub fn is_active(namespace: &Value) -> bool {
    namespace.pointer("/status/phase").and_then(Value::as_str) != Some("Terminating")
        && namespace.pointer("/metadata/deletionTimestamp").is_none()
}

/// Keys are namespaces.
pub struct ServiceAccounts;

impl Reconciler for ServiceAccounts {
    fn name(&self) -> &'static str {
        "serviceaccount"
    }

    fn watches(&self) -> Vec<Watched> {
        // A deleted `default` account brings its namespace back to the queue.
        let namespace_of = |sa: &Value, _: Option<&Value>| {
            let is_default = sa.pointer("/metadata/name").and_then(Value::as_str) == Some("default");
            let ns = sa.pointer("/metadata/namespace").and_then(Value::as_str);
            ns.filter(|_| is_default).map(|ns| ObjectKey::new(None, ns)).into_iter().collect()
        };
        vec![Watched::objects(kind("namespaces")), Watched::with(kind("serviceaccounts"), namespace_of)]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(async move {
            let Some(namespace) = ctx.lister(kind("namespaces")).and_then(|l| l.get(&key)) else {
                return Ok(Action::Done);
            };
            let active = is_active(&namespace);
            let exists = ctx
                .lister(kind("serviceaccounts"))
                .is_some_and(|l| l.get(&ObjectKey::new(Some(&key.name), "default")).is_some());
            if !active || exists {
                return Ok(Action::Done);
            }
            let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
            match ctx.create(kind("serviceaccounts"), Some(&key.name), sa).await {
                Ok(_) | Err(ApiError::AlreadyExists(_)) => Ok(Action::Done),
                // The namespace went meanwhile.
                Err(ApiError::NotFound(_) | ApiError::Forbidden { .. }) => Ok(Action::Done),
                Err(e) => Err(e),
            }
        })
    }
}
