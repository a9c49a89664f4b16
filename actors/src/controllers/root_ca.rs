//! The root CA publisher: every active namespace has the ConfigMap `kube-root-ca.crt`
//! holding the cluster CA (kube-controller-manager's `root-ca-cert-publisher`); pods'
//! `kube-api-access-*` volumes mount it as `ca.crt`.

use std::rc::Rc;

use futures::future::LocalBoxFuture;
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::controller::{Action, Ctx, ObjectKey, Reconciler, Watched};
use crate::kinds::{self, ResourceKind};
use crate::object_store::Part;

/// The ConfigMap's name, as kube has it.
pub const NAME: &str = "kube-root-ca.crt";

fn kind(resource: &str) -> &'static ResourceKind {
    kinds::find("", "v1", resource).unwrap_or(&kinds::BUILTIN[0])
}

/// Keys are namespaces.
pub struct RootCaPublisher {
    /// The cluster CA certificate, PEM.
    pub ca_pem: String,
}

impl Reconciler for RootCaPublisher {
    fn name(&self) -> &'static str {
        "root-ca-cert-publisher"
    }

    fn watches(&self) -> Vec<Watched> {
        // A changed or deleted ConfigMap brings its namespace back to the queue.
        let namespace_of = |cm: &Value, _: Option<&Value>| {
            let ours = cm.pointer("/metadata/name").and_then(Value::as_str) == Some(NAME);
            let ns = cm.pointer("/metadata/namespace").and_then(Value::as_str);
            ns.filter(|_| ours).map(|ns| ObjectKey::new(None, ns)).into_iter().collect()
        };
        vec![Watched::objects(kind("namespaces")), Watched::with(kind("configmaps"), namespace_of)]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(async move {
            let Some(namespace) = ctx.lister(kind("namespaces")).and_then(|l| l.get(&key)) else {
                return Ok(Action::Done);
            };
            if !super::service_account::is_active(&namespace) {
                return Ok(Action::Done);
            }
            let existing = ctx.lister(kind("configmaps")).and_then(|l| l.get(&ObjectKey::new(Some(&key.name), NAME)));
            let result = match existing {
                Some(cm) if cm.pointer("/data/ca.crt").and_then(Value::as_str) == Some(self.ca_pem.as_str()) => {
                    return Ok(Action::Done)
                }
                Some(cm) => {
                    let mut cm = (*cm).clone();
                    cm["data"] = json!({"ca.crt": self.ca_pem});
                    ctx.update(kind("configmaps"), Part::Main, cm).await
                }
                None => {
                    let cm = json!({
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": NAME, "annotations": {"kubernetes.io/description":
                            "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                        "data": {"ca.crt": self.ca_pem},
                    });
                    ctx.create(kind("configmaps"), Some(&key.name), cm).await
                }
            };
            match result {
                Ok(_) | Err(ApiError::AlreadyExists(_)) => Ok(Action::Done),
                // The namespace went meanwhile.
                Err(ApiError::NotFound(_) | ApiError::Forbidden { .. }) => Ok(Action::Done),
                Err(e) => Err(e),
            }
        })
    }
}
