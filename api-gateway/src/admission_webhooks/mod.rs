//! Admission webhooks (`admissionregistration.k8s.io/v1` Mutating- and
//! ValidatingWebhookConfigurations), dispatched as kube-apiserver's `MutatingAdmissionWebhook`
//! and `ValidatingAdmissionWebhook` plugins do.
//!
//! [`Webhooks`] is an [`actors::admission::Admission`] plugin in the kind actors' chain after
//! the built-in plugins but ResourceQuota (`builtin::chain_with_webhooks`), so a write goes:
//! built-in mutating -> mutating webhooks -> validation -> built-in validating -> validating
//! webhooks -> ResourceQuota. DELETEs too (no object; the stored one as `oldObject`). Where
//! to start:
//!
//! - [`watcher`]: a supervised actor watching both configuration kinds and publishing the
//!   current set ([`config::Snapshot`]: the webhooks parsed, configurations by name) to every
//!   dispatcher; requests wait (up to 10 s) for its first list, as kube's do for its informers.
//! - [`matching`]: which webhooks a request concerns: `rules` (operations, groups, versions,
//!   `resources` with `*`, `*/*` and subresources, `scope`), `matchPolicy`, `namespaceSelector`,
//!   `objectSelector`; [`conditions`]: the CEL `matchConditions`.
//! - [`review`]: the `AdmissionReview` sent and the checks of the answer (uid, kind,
//!   `patchType`), the JSON patch applied, a refusal turned into its `Status`.
//! - [`dispatch`]: the calls: mutating webhooks one after another (each sees the previous one's
//!   result; `reinvocationPolicy: IfNeeded` reinvoked once), validating ones all at once;
//!   `failurePolicy`, `timeoutSeconds`, `sideEffects` under dry run; metrics and logs.
//!
//! Not done: the object is sent in the version it is stored in (kube converts it to the
//! version the matching rule names); built-in plugins are not run again on reinvocation; the
//! `authorizer` CEL variable; `auditAnnotations` are logged (there is no audit log).

pub mod conditions;
pub mod config;
pub mod dispatch;
pub mod matching;
pub mod review;
pub mod watcher;

use std::sync::Arc;
use std::time::Duration;

use actors::admission::{Admission, Attributes, Operation, Step};
use actors::{ApiError, ApiResult, KindActors, Subject};
use serde_json::Value;
use tokio::sync::watch;

use self::config::Snapshot;

/// How long a request waits for the first list of the configurations (kube's informers').
pub const READY_WAIT: Duration = Duration::from_secs(10);

/// The admission webhook dispatcher: the configurations as [`watcher::ConfigWatcher`]
/// publishes them, and the kind actors (to resolve services and read namespaces).
#[derive(Clone)]
pub struct Webhooks {
    actors: KindActors,
    configs: watch::Receiver<Arc<Snapshot>>,
}

impl Webhooks {
    /// Starts the configuration watcher on the current actix arbiter and returns the
    /// dispatcher fed by it.
    pub fn start(actors: KindActors) -> Webhooks {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        watcher::ConfigWatcher::start(actors.clone(), tx);
        Webhooks { actors, configs: rx }
    }

    /// A dispatcher over a fixed set of configurations (no watcher): for tests and tools.
    pub fn fixed(actors: KindActors, snapshot: Snapshot) -> Webhooks {
        let (_tx, rx) = watch::channel(Arc::new(Snapshot { synced: true, ..snapshot }));
        Webhooks { actors, configs: rx }
    }

    /// The configurations now, once they have been listed (403 after [`READY_WAIT`] if not).
    /// The receiver's lock is held only to clone the `Arc`.
    async fn snapshot(&self, attrs: &Attributes) -> ApiResult<Arc<Snapshot>> {
        let now = self.configs.borrow().clone();
        if now.synced {
            return Ok(now);
        }
        let mut configs = self.configs.clone();
        let ready = tokio::time::timeout(READY_WAIT, configs.wait_for(|s| s.synced)).await;
        match ready.map(|r| r.map(|snapshot| snapshot.clone())) {
            Ok(Ok(ready)) => Ok(ready),
            _ => Err(ApiError::Forbidden {
                subject: Subject::of(attrs.kind, attrs.name.clone()),
                why: "not yet ready to handle request".into(),
                causes: Vec::new(),
            }),
        }
    }
}

impl Admission for Webhooks {
    /// The mutating webhooks. On DELETE (`obj` is `null`, `old` the object as stored) they
    /// are called too, as kube calls them: they may refuse the delete, not change it.
    fn mutate<'a>(&'a self, attrs: &'a Attributes, obj: &'a mut Value, old: Option<&'a Value>) -> Step<'a> {
        Box::pin(async move {
            if matching::exempt(attrs) {
                return Ok(Vec::new());
            }
            let snapshot = self.snapshot(attrs).await?;
            if snapshot.mutating.is_empty() {
                return Ok(Vec::new());
            }
            let obj = (attrs.operation != Operation::Delete).then_some(obj);
            dispatch::mutate(&self.actors, &snapshot, attrs, obj, old).await
        })
    }

    /// The validating webhooks (on DELETE with no object, the stored one as `oldObject`).
    fn validate<'a>(&'a self, attrs: &'a Attributes, obj: &'a Value, old: Option<&'a Value>) -> Step<'a> {
        Box::pin(async move {
            if matching::exempt(attrs) {
                return Ok(Vec::new());
            }
            let snapshot = self.snapshot(attrs).await?;
            if snapshot.validating.is_empty() {
                return Ok(Vec::new());
            }
            let obj = (attrs.operation != Operation::Delete).then_some(obj);
            dispatch::validate(&self.actors, &snapshot, attrs, obj, old).await
        })
    }
}
