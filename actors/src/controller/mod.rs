//! The controller runtime, as client-go and controller-runtime shape it, on actix:
//!
//! - [`informer`]: [`Lister`], a controller's copy of one kind's objects, kept by a watch
//!   on the kind actor; [`ObjectKey`].
//! - [`queue`]: [`WorkQueue`], de-duplicating, one reconcile per key at a time, per-key
//!   exponential backoff.
//! - [`context`]: [`Ctx`], what a reconcile reads (listers) and writes through (the kind
//!   actors), and Events.
//! - [`runtime`]: the [`Reconciler`] trait, [`ControllerActor`] that runs one while this
//!   member leads the store, and [`Controllers`], which starts them and restarts any that
//!   panicked.
//!
//! A controller is a plain struct implementing [`Reconciler`]; see the `controllers` module.

pub mod context;
pub mod informer;
pub mod queue;
pub mod runtime;

pub use context::Ctx;
pub use informer::{Lister, ObjectKey};
pub use queue::WorkQueue;
pub use runtime::{
    controller_of, Action, ControllerActor, Controllers, InjectPanic, PanicController, Reconciler, Watched,
};
