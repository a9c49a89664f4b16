//! The custom resource kinds that established CustomResourceDefinitions define, as a
//! process-wide registry beside the built-in table ([`crate::kinds::BUILTIN`]).
//!
//! The CRD controller ([`crate::crd_controller`]) registers a [`CustomKind`] when a CRD is
//! established and removes it when the CRD goes; everything that looks kinds up
//! ([`crate::kinds::find`] and friends, discovery, OpenAPI, tables) sees it at once.
//!
//! Kinds are `&'static ResourceKind` everywhere, so a custom kind's [`ResourceKind`] and its
//! strings are interned: leaked once per distinct value, and reused when a CRD comes back
//! with the same names. What leaks is bounded by the distinct CRD definitions ever seen.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use serde_json::Value;

use crate::kinds::{ResourceKind, Subresource, ALL_VERBS, SCALE, STATUS};

/// One served version of a custom kind.
#[derive(Debug, Clone)]
pub struct CustomVersion {
    /// The kind as this version serves it (its `version` is this version's name).
    pub kind: &'static ResourceKind,
    /// `spec.versions[].schema.openAPIV3Schema`, if given.
    pub schema: Option<Value>,
    /// `spec.versions[].additionalPrinterColumns`, as written in the CRD.
    pub printer_columns: Vec<Value>,
    /// `spec.versions[].subresources.scale`: where replicas and the selector live.
    pub scale: Option<ScalePaths>,
    pub deprecated: bool,
    pub deprecation_warning: Option<String>,
}

/// The `scale` subresource's paths into a custom object (`.spec.replicas` style).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// How objects move between versions (`spec.conversion`).
#[derive(Debug, Clone, PartialEq)]
pub enum Conversion {
    /// Only `apiVersion` changes.
    None,
    /// A ConversionReview v1 to the webhook's `clientConfig` (kept as written).
    Webhook { client_config: Value },
}

/// A custom resource as its CRD defines it.
#[derive(Debug, Clone)]
pub struct CustomKind {
    /// The CRD's name: `{plural}.{group}`.
    pub crd_name: String,
    pub group: &'static str,
    pub resource: &'static str,
    /// `spec.names.listKind` (defaulted: `{kind}List`).
    pub list_kind: &'static str,
    /// The served versions, in kube's version priority order (preferred first).
    pub versions: Vec<CustomVersion>,
    /// The version objects are stored in.
    pub storage_version: &'static str,
    pub conversion: Conversion,
    /// `spec.preserveUnknownFields` (v1 CRDs: false unless set).
    pub preserve_unknown_fields: bool,
    /// The CRD is being deleted: its objects are read and deleted, no longer created.
    pub terminating: bool,
}

impl CustomKind {
    /// The served version `version`.
    pub fn version(&self, version: &str) -> Option<&CustomVersion> {
        self.versions.iter().find(|v| v.kind.version == version)
    }

    /// The kind of the storage version (what the kind actor and the store hold).
    pub fn storage_kind(&self) -> &'static ResourceKind {
        self.version(self.storage_version).map(|v| v.kind).unwrap_or_else(|| self.versions[0].kind)
    }
}

/// Registered custom kinds by (group, resource), plus a generation that moves on every
/// change (caches of discovery and OpenAPI key on it).
#[derive(Default)]
struct Registry {
    kinds: BTreeMap<(&'static str, &'static str), Arc<CustomKind>>,
    generation: u64,
}

static REGISTRY: LazyLock<RwLock<Registry>> = LazyLock::new(Default::default);

fn read() -> std::sync::RwLockReadGuard<'static, Registry> {
    REGISTRY.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write() -> std::sync::RwLockWriteGuard<'static, Registry> {
    REGISTRY.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Adds or replaces a custom kind.
pub fn register(kind: CustomKind) {
    let mut registry = write();
    registry.kinds.insert((kind.group, kind.resource), Arc::new(kind));
    registry.generation += 1;
}

/// Removes the custom kind of (group, resource); returns it if it was there.
pub fn unregister(group: &str, resource: &str) -> Option<Arc<CustomKind>> {
    let mut registry = write();
    let key = registry.kinds.keys().find(|(g, r)| *g == group && *r == resource).copied()?;
    registry.generation += 1;
    registry.kinds.remove(&key)
}

/// The custom kind of (group, resource).
pub fn get(group: &str, resource: &str) -> Option<Arc<CustomKind>> {
    read().kinds.iter().find(|((g, r), _)| *g == group && *r == resource).map(|(_, k)| k.clone())
}

/// The custom kind serving `kind` (any of its versions), if `kind` is custom.
pub fn of(kind: &ResourceKind) -> Option<Arc<CustomKind>> {
    get(kind.group, kind.resource)
}

/// The scale paths of `kind`'s version, if it is a custom kind with a `scale` subresource.
pub fn scale_paths(kind: &ResourceKind) -> Option<ScalePaths> {
    of(kind)?.version(kind.version)?.scale.clone()
}

/// The schema of `kind`'s version, if it is a custom kind with one.
pub fn schema(kind: &ResourceKind) -> Option<Value> {
    of(kind)?.version(kind.version)?.schema.clone()
}

/// Every registered custom kind, by (group, resource).
pub fn all() -> Vec<Arc<CustomKind>> {
    read().kinds.values().cloned().collect()
}

/// Moves whenever a kind is registered or removed.
pub fn generation() -> u64 {
    read().generation
}

/// The served kinds of every custom resource, every version.
pub fn served_kinds() -> Vec<&'static ResourceKind> {
    read().kinds.values().flat_map(|k| k.versions.iter().map(|v| v.kind)).collect()
}

/// A string that lives for the rest of the process; equal strings share one copy.
pub fn intern(s: &str) -> &'static str {
    static STRINGS: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(Default::default);
    let mut strings = STRINGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(found) = strings.get(s) {
        return found;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    strings.insert(leaked);
    leaked
}

fn intern_list(items: &[String]) -> &'static [&'static str] {
    static LISTS: LazyLock<Mutex<Vec<&'static [&'static str]>>> = LazyLock::new(Default::default);
    let mut lists = LISTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(found) = lists.iter().find(|l| l.iter().eq(items.iter())) {
        return found;
    }
    let leaked: &'static [&'static str] = Box::leak(items.iter().map(|s| intern(s)).collect::<Vec<_>>().into());
    lists.push(leaked);
    leaked
}

/// A `ResourceKind` that lives for the rest of the process; equal kinds share one copy.
pub fn intern_kind(kind: ResourceKind) -> &'static ResourceKind {
    static KINDS: LazyLock<Mutex<Vec<&'static ResourceKind>>> = LazyLock::new(Default::default);
    let mut kinds = KINDS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(found) = kinds.iter().find(|k| ***k == kind) {
        return found;
    }
    let leaked: &'static ResourceKind = Box::leak(Box::new(kind));
    kinds.push(leaked);
    leaked
}

/// What a CRD's names and scope say, for [`kind_for`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
}

/// The interned kind of one version of a custom resource.
pub fn kind_for(
    group: &str,
    version: &str,
    names: &Names,
    namespaced: bool,
    status: bool,
    scale: bool,
) -> &'static ResourceKind {
    const ST: &[Subresource] = &[STATUS];
    const SC: &[Subresource] = &[SCALE];
    const SCALE_ST: &[Subresource] = &[SCALE, STATUS];
    let subresources: &'static [Subresource] = match (status, scale) {
        (false, false) => &[],
        (true, false) => ST,
        (false, true) => SC,
        (true, true) => SCALE_ST,
    };
    let singular = if names.singular.is_empty() { names.kind.to_lowercase() } else { names.singular.clone() };
    intern_kind(ResourceKind {
        group: intern(group),
        version: intern(version),
        resource: intern(&names.plural),
        singular: intern(&singular),
        kind: intern(&names.kind),
        namespaced,
        verbs: ALL_VERBS,
        short_names: intern_list(&names.short_names),
        categories: intern_list(&names.categories),
        subresources,
    })
}

/// kube's version priority (`k8s.io/apimachinery/pkg/version.CompareKubeAwareVersionStrings`):
/// GA before beta before alpha, higher numbers first, then other names alphabetically.
/// Sorts ascending in priority order: the preferred version first.
pub fn version_priority(a: &str, b: &str) -> std::cmp::Ordering {
    fn parse(v: &str) -> Option<(u64, u8, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let major: u64 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        if tail.is_empty() {
            return Some((major, 2, 0));
        }
        let (level, n) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (0, n)
        } else {
            return None;
        };
        if n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        Some((major, level, n.parse().ok()?))
    }
    match (parse(a), parse(b)) {
        (Some((ma, la, na)), Some((mb, lb, nb))) => lb.cmp(&la).then(mb.cmp(&ma)).then(nb.cmp(&na)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_kube_does() {
        let mut v = vec!["v1alpha1", "foo", "v2", "v1beta2", "v1", "v10", "v11alpha2", "v1beta1", "bar"];
        v.sort_by(|a, b| version_priority(a, b));
        assert_eq!(v, ["v10", "v2", "v1", "v1beta2", "v1beta1", "v11alpha2", "v1alpha1", "bar", "foo"]);
    }

    #[test]
    fn interned_kinds_are_shared() {
        let names = Names { plural: "widgets".into(), kind: "Widget".into(), ..Default::default() };
        let a = kind_for("example.com", "v1", &names, true, true, false);
        let b = kind_for("example.com", "v1", &names, true, true, false);
        assert!(std::ptr::eq(a, b));
        assert_eq!(a.singular, "widget");
        assert_eq!(a.subresources, &[STATUS]);
    }
}
