//! Flotilla's actors: one supervised actix actor per resource kind and per controller.
//!
//! Each actor is a thin shell over a plain struct or function that holds the logic, so the
//! logic tests without a runtime (see `notes/style.md`, point 4). Today the crate holds:
//!
//! - [`health`]: what "live" and "ready" mean for a member, from the store's status.
//! - [`health_actor`]: [`HealthActor`], which refreshes that assessment periodically and
//!   answers [`GetHealth`]; it runs under an actix `Supervisor`.
//! - [`kinds`]: the built-in resource kinds as plain data ([`kinds::BUILTIN`]): group,
//!   version, names, scope, verbs, short names, categories, subresources, store key prefix;
//!   discovery is served from it. [`custom_kinds`]: the kinds CustomResourceDefinitions add.
//! - [`watch_cache`]: [`WatchCache`], the plain struct a resource-kind actor will own: the
//!   kind's current objects and recent events at a known store revision.
//!
//! - [`admission`]: the admission chain of writes (mutating, then validating plugins) and
//!   its built-in plugins; the gateway adds the webhook dispatch.
//! - [`objects`]: plain functions over API objects (generic JSON): store keys, the checks
//!   and fields of create and update, resourceVersion on read; [`api_error`]: [`ApiError`],
//!   one variant per Kubernetes `Status` reason.
//! - [`object_store`]: get, create, update, delete and list pages as store transactions.
//! - [`deletion`]: Kubernetes deletion: `DeleteOptions`, preconditions, finalizers, graceful
//!   deletion of pods, terminating namespaces, deletecollection.
//! - [`kind_actor`]: [`KindActor`], one supervised actor per kind owning its watch cache;
//!   [`KindActors`] starts them all; it also keeps the kind's watchers ([`Watch`]).
//! - [`schemas`]: the OpenAPI 3 JSON schemas of the built-in kinds (from k8s-openapi), for
//!   the OpenAPI documents and validation.
//! - [`decode`]: written objects decoded against those schemas as kube-apiserver's JSON
//!   decoder does (type errors, unknown and duplicate fields under `fieldValidation`);
//!   [`defaults`]: kube's `SetDefaults_*`; [`validation`]: kube's validation (422 `Invalid`
//!   with field causes), immutable fields on update.
//! - [`watch`]: watch events (`ADDED`, `MODIFIED`, ...) from cached changes, and filters.
//! - [`service_ips`]: Service cluster IPs from 10.96.0.0/12, claimed with the Service.
//! - [`selectors`]: label and field selectors of lists and watches, as kube-apiserver parses
//!   and matches them.
//! - [`crd_schema`]: CRD structural schemas: structural checks, pruning, defaults, validation, CEL.
//!
//! - [`crd`]: CustomResourceDefinitions as plain data (defaults, validation, the kind and
//!   status they define); [`crd_controller`]: [`CrdController`], the actor that serves them.
//!
//! - [`controller`]: the controller runtime (informers, work queues, the supervised
//!   controller actor that runs a plain `Reconciler` while this member leads);
//!   [`controllers`]: the controllers themselves; [`scheduler`]: kube-scheduler's default
//!   profile, a controller over pods.
//!
//! New resource-kind actors and controllers go in their own modules, each beside the plain
//! struct it wraps; restarts are counted in `flotilla_actor_restarts_total{actor=...}`.

pub mod admission;
pub mod api_error;
pub mod apply;
pub mod controller;
pub mod controllers;
pub mod crd;
pub mod crd_controller;
pub mod crd_schema;
pub mod custom_kinds;
pub mod decode;
pub mod defaults;
pub mod deletion;
pub mod field_sets;
pub mod health;
pub mod health_actor;
pub mod kind_actor;
pub mod kinds;
pub mod object_store;
pub mod objects;
pub mod patch;
pub mod scheduler;
pub mod schemas;
pub mod selectors;
pub mod service_ips;
pub mod strategic_merge;
pub mod validation;
pub mod watch;
pub mod watch_cache;

pub use admission::{Admission, UserInfo};
pub use api_error::{ApiError, ApiResult, ApplyConflict, CauseType, FieldCause, Subject};
pub use crd_controller::CrdController;
pub use decode::FieldValidation;
pub use deletion::{DeleteOptions, Deleted};
pub use health::{assess, Health};
pub use health_actor::{GetHealth, HealthActor};
pub use kind_actor::{
    AsUser, Create, Delete, DeleteCollection, DryRun, Get, KindActor, KindActors, List, Patch, Update, Watch,
    WatchStart,
};
pub use kinds::{ResourceKind, Subresource, BUILTIN};
pub use object_store::{ListPage, Part, Written};
pub use patch::PatchKind;
pub use selectors::{SelectorError, Selectors};
pub use watch::{WatchEvent, WatchFilter};
pub use watch_cache::{CacheError, CachedEvent, WatchCache};
