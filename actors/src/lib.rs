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
//!   discovery is served from it.
//! - [`watch_cache`]: [`WatchCache`], the plain struct a resource-kind actor will own: the
//!   kind's current objects and recent events at a known store revision.
//!
//! New resource-kind actors and controllers go in their own modules, each beside the plain
//! struct it wraps; restarts are counted in `flotilla_actor_restarts_total{actor=...}`.

pub mod health;
pub mod health_actor;
pub mod kinds;
pub mod watch_cache;

pub use health::{assess, Health};
pub use health_actor::{GetHealth, HealthActor};
pub use kinds::{ResourceKind, Subresource, BUILTIN};
pub use watch_cache::{CacheError, CachedEvent, WatchCache};
