//! Informers: a controller's local copy of one kind's objects, kept by a watch on the kind
//! actor (its first events list every object), as client-go's shared informers and listers.
//! The controller actor drives the watch; reconciles read the copy through [`Lister`].

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::kinds::ResourceKind;
use crate::watch::WatchEvent;

/// An object's place: namespace (`None` for cluster-scoped kinds) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: Option<&str>, name: &str) -> Self {
        ObjectKey { namespace: namespace.map(String::from), name: name.to_string() }
    }

    /// The key of `obj` (from its metadata).
    pub fn of(obj: &Value) -> Option<ObjectKey> {
        let name = obj.pointer("/metadata/name").and_then(Value::as_str)?;
        let namespace = obj.pointer("/metadata/namespace").and_then(Value::as_str);
        Some(ObjectKey::new(namespace, name))
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The objects of one kind as last seen. Cheap to clone (shared); never locked across an
/// `.await`.
#[derive(Debug, Clone)]
pub struct Lister {
    pub kind: &'static ResourceKind,
    objects: Arc<RwLock<BTreeMap<ObjectKey, Arc<Value>>>>,
    synced: Arc<std::sync::atomic::AtomicBool>,
}

impl Lister {
    pub fn new(kind: &'static ResourceKind) -> Self {
        Lister { kind, objects: Arc::default(), synced: Arc::default() }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<ObjectKey, Arc<Value>>> {
        self.objects.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<ObjectKey, Arc<Value>>> {
        self.objects.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The object at `key`.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        self.read().get(key).cloned()
    }

    /// Every object (of `namespace` if given), in key order.
    pub fn list(&self, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let objects = self.read();
        match namespace {
            None => objects.values().cloned().collect(),
            Some(ns) => {
                objects.iter().filter(|(k, _)| k.namespace.as_deref() == Some(ns)).map(|(_, v)| v.clone()).collect()
            }
        }
    }

    /// The objects (of `namespace` if given) that `keep` selects.
    pub fn list_where(&self, namespace: Option<&str>, keep: impl Fn(&Value) -> bool) -> Vec<Arc<Value>> {
        self.list(namespace).into_iter().filter(|o| keep(o)).collect()
    }

    /// How many objects there are.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Whether the first list has arrived.
    pub fn has_synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Applies one watch event; returns the object and, for updates and deletes, the one
    /// it replaced. `None` for bookmarks and errors.
    pub fn apply(&self, event: &WatchEvent) -> Option<(Arc<Value>, Option<Arc<Value>>)> {
        let object = Arc::new(event.object.clone());
        let key = ObjectKey::of(&object)?;
        match event.event_type {
            "ADDED" | "MODIFIED" => {
                let old = self.write().insert(key, object.clone());
                Some((object, old))
            }
            "DELETED" => {
                let old = self.write().remove(&key);
                Some((object, old))
            }
            _ => None,
        }
    }

    /// Replaces everything with a fresh list (after a relist); returns the keys that are gone.
    pub fn replace(&self, objects: Vec<Value>) -> Vec<Arc<Value>> {
        let fresh: BTreeMap<ObjectKey, Arc<Value>> =
            objects.into_iter().filter_map(|o| Some((ObjectKey::of(&o)?, Arc::new(o)))).collect();
        let mut current = self.write();
        let gone = current.iter().filter(|(k, _)| !fresh.contains_key(*k)).map(|(_, v)| v.clone()).collect();
        *current = fresh;
        self.synced.store(true, std::sync::atomic::Ordering::SeqCst);
        gone
    }

    /// Forgets everything (leadership lost).
    pub fn clear(&self) {
        self.write().clear();
        self.synced.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The resourceVersion of an event's object, if it has a numeric one.
pub fn resource_version(obj: &Value) -> Option<i64> {
    obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).and_then(|rv| rv.parse().ok())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(event_type: &'static str, ns: &str, name: &str, rv: &str) -> WatchEvent {
        let object = json!({"metadata": {"namespace": ns, "name": name, "resourceVersion": rv}});
        WatchEvent { event_type, object }
    }

    #[test]
    fn events_keep_the_copy_and_replace_reports_what_went() {
        let pods = Lister::new(crate::kinds::find("", "v1", "pods").unwrap());
        pods.apply(&event("ADDED", "a", "p1", "1"));
        pods.apply(&event("ADDED", "b", "p2", "2"));
        let (_, old) = pods.apply(&event("MODIFIED", "a", "p1", "3")).unwrap();
        assert_eq!(resource_version(&old.unwrap()), Some(1));
        assert_eq!(pods.list(Some("a")).len(), 1);
        assert_eq!(pods.len(), 2);
        pods.apply(&event("DELETED", "b", "p2", "4"));
        assert!(pods.get(&ObjectKey::new(Some("b"), "p2")).is_none());
        let gone = pods.replace(vec![json!({"metadata": {"namespace": "c", "name": "p3"}})]);
        assert_eq!(gone.len(), 1);
        assert!(pods.has_synced());
        assert_eq!(pods.list(None).len(), 1);
    }
}
