//! The admission chain every write goes through, as kube-apiserver's: after decoding and
//! defaulting, the mutating plugins may change the object (built-in ones, then mutating
//! webhooks), then it is validated (the kind's validation), then the validating plugins may
//! refuse it (built-in ones, then validating webhooks), then it is stored.
//!
//! A plugin implements [`Admission`]; [`Chain`] runs several in order. The kind actors hold
//! one chain ([`crate::KindActors::set_admission`]); the gateway adds the webhook dispatch
//! to it. Each write carries [`Attributes`]: what is written and by whom ([`UserInfo`]).

pub mod builtin;
pub mod limit_ranger;
pub mod namespace_lifecycle;
pub mod quantity;
pub mod resource_quota;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::LocalBoxFuture;
use serde_json::Value;

use crate::api_error::ApiResult;
use crate::kinds::ResourceKind;

/// The operation of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    /// As AdmissionReview and webhook rules spell it: `CREATE`, `UPDATE`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// Who makes a request, as authentication found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The identity of writes made inside the control plane (controllers, the scheduler).
    pub fn control_plane() -> UserInfo {
        UserInfo {
            username: "system:kube-controller-manager".into(),
            groups: vec!["system:authenticated".into()],
            ..UserInfo::default()
        }
    }
}

/// What a write is: the kind and subresource, the operation, the object's place, the user.
#[derive(Debug, Clone)]
pub struct Attributes {
    pub kind: &'static ResourceKind,
    pub subresource: Option<&'static str>,
    pub operation: Operation,
    pub namespace: Option<String>,
    pub name: String,
    pub user: UserInfo,
    pub dry_run: bool,
}

/// A future of an admission step, run on the kind actor's thread.
pub type Step<'a> = LocalBoxFuture<'a, ApiResult<Vec<String>>>;

/// An admission plugin. Both steps return warnings for the client; an error refuses the
/// write (as the Status it is). On DELETE both steps run too, before anything is deleted:
/// `obj` is `null` (there is no new object; a change to it is ignored) and `old` is the
/// object as stored, as kube's `GetObject()` is nil and `GetOldObject()` the object then.
pub trait Admission: Send + Sync {
    /// May change `obj`. `old` is the stored object on update.
    fn mutate<'a>(&'a self, attrs: &'a Attributes, obj: &'a mut Value, old: Option<&'a Value>) -> Step<'a>;
    /// May refuse `obj`, which no longer changes.
    fn validate<'a>(&'a self, attrs: &'a Attributes, obj: &'a Value, old: Option<&'a Value>) -> Step<'a>;
}

/// Plugins run in order: every mutating step first, then every validating step.
#[derive(Clone, Default)]
pub struct Chain {
    plugins: Vec<Arc<dyn Admission>>,
}

impl Chain {
    pub fn new(plugins: Vec<Arc<dyn Admission>>) -> Self {
        Chain { plugins }
    }

    /// This chain, then `plugin`.
    pub fn then(mut self, plugin: Arc<dyn Admission>) -> Self {
        self.plugins.push(plugin);
        self
    }
}

impl Admission for Chain {
    fn mutate<'a>(&'a self, attrs: &'a Attributes, obj: &'a mut Value, old: Option<&'a Value>) -> Step<'a> {
        Box::pin(async move {
            let mut warnings = Vec::new();
            for plugin in &self.plugins {
                warnings.extend(plugin.mutate(attrs, obj, old).await?);
            }
            Ok(warnings)
        })
    }

    fn validate<'a>(&'a self, attrs: &'a Attributes, obj: &'a Value, old: Option<&'a Value>) -> Step<'a> {
        Box::pin(async move {
            let mut warnings = Vec::new();
            for plugin in &self.plugins {
                warnings.extend(plugin.validate(attrs, obj, old).await?);
            }
            Ok(warnings)
        })
    }
}

/// A write's admission: the chain and the write's attributes; and, for the controllers'
/// writes, the Raft leadership term the store must still be in (`raft_store::Txn::leader_term`).
#[derive(Clone)]
pub struct Admit {
    pub chain: Arc<dyn Admission>,
    pub attrs: Attributes,
    pub leader_term: Option<u64>,
    /// The warnings the plugins (webhooks) gave, for the client's `Warning` headers.
    pub warnings: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Admit {
    /// Keeps `warnings` for the client.
    pub fn warn(&self, warnings: Vec<String>) {
        if !warnings.is_empty() {
            self.warnings.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend(warnings);
        }
    }

    /// The warnings kept so far.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}
