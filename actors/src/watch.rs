//! Watch events as the Kubernetes API sends them: `{"type": "ADDED", "object": {...}}`, made
//! from the watch cache's events, and which watcher each event is for. Plain functions; the
//! kind actor keeps the watchers and the API gateway streams the events.

use raft_store::{EventKind, KeyValue, Revision};
use serde_json::{json, Value};

use crate::api_error::{ApiError, ApiResult};
use crate::kinds::ResourceKind;
use crate::objects::with_resource_version;
use crate::selectors::{Candidate, Selectors};
use crate::watch_cache::CachedEvent;

/// One event of a watch stream.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`.
    pub event_type: &'static str,
    pub object: Value,
}

impl WatchEvent {
    /// The event as one line of a watch response: `{"type": ..., "object": ...}`.
    pub fn to_json(&self) -> Value {
        json!({"type": self.event_type, "object": self.object})
    }

    /// An `ADDED` event of an object as it is now (the start of a watch from "now").
    pub fn added(kind: &ResourceKind, kv: &KeyValue) -> ApiResult<WatchEvent> {
        Ok(WatchEvent { event_type: "ADDED", object: stamp(kind, with_resource_version(&kv.value, kv.mod_revision)?) })
    }

    /// The event of one cached change: a put of a first version is `ADDED`, a later put
    /// `MODIFIED`, a delete `DELETED` (with the deleting revision as resourceVersion).
    pub fn of_change(kind: &ResourceKind, change: &CachedEvent) -> ApiResult<WatchEvent> {
        let kv = &change.object;
        let event_type = match change.kind {
            EventKind::Put if kv.create_revision == kv.mod_revision => "ADDED",
            EventKind::Put => "MODIFIED",
            EventKind::Delete => "DELETED",
        };
        Ok(WatchEvent { event_type, object: stamp(kind, with_resource_version(&kv.value, kv.mod_revision)?) })
    }

    /// A `BOOKMARK`: the watcher has every change up to `revision`.
    pub fn bookmark(kind: &ResourceKind, revision: Revision) -> WatchEvent {
        let object = json!({
            "kind": kind.kind,
            "apiVersion": kind.group_version(),
            "metadata": {"resourceVersion": revision.to_string()},
        });
        WatchEvent { event_type: "BOOKMARK", object }
    }

    /// An `ERROR` event carrying the `Status` of `e`.
    pub fn error(e: &ApiError) -> WatchEvent {
        WatchEvent { event_type: "ERROR", object: e.status() }
    }
}

/// Sets `kind` and `apiVersion` on an object.
fn stamp(kind: &ResourceKind, mut obj: Value) -> Value {
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), json!(kind.group_version()));
        map.insert("kind".into(), json!(kind.kind));
    }
    obj
}

/// What a watcher wants: objects under a prefix (the kind, or one namespace of it) that its
/// label and field selectors select.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchFilter {
    pub prefix: String,
    pub selectors: Selectors,
}

impl WatchFilter {
    /// Whether a current object is one to watch (the `ADDED` events of a watch from now).
    pub fn matches(&self, object: &Candidate<'_>) -> bool {
        object.kv().key.starts_with(self.prefix.as_bytes()) && self.selectors.matches(object)
    }

    /// The event of `change` for this watcher, if any, as kube-apiserver's watch cache
    /// decides it from whether the object selects before and after the change: selected
    /// after only is `ADDED`, before and after `MODIFIED`, before only `DELETED` (the
    /// object as it last selected, at the change's revision; this is also what a delete
    /// is). `object` and `prev` are the change's object and previous object, shared by the
    /// watchers so that each is parsed once.
    pub fn event_of(
        &self,
        kind: &ResourceKind,
        change: &CachedEvent,
        object: &Candidate<'_>,
        prev: Option<&Candidate<'_>>,
    ) -> ApiResult<Option<WatchEvent>> {
        if !change.object.key.starts_with(self.prefix.as_bytes()) {
            return Ok(None);
        }
        let (now, before) = match change.kind {
            EventKind::Put => (self.selectors.matches(object), prev.is_some_and(|p| self.selectors.matches(p))),
            // A delete's object is the object as it last was.
            EventKind::Delete => (false, self.selectors.matches(object)),
        };
        let event = |event_type: &'static str, kv: &KeyValue, revision: Revision| -> ApiResult<WatchEvent> {
            Ok(WatchEvent { event_type, object: stamp(kind, with_resource_version(&kv.value, revision)?) })
        };
        let kv = &change.object;
        Ok(match (now, before) {
            (true, false) => Some(event("ADDED", kv, kv.mod_revision)?),
            (true, true) => Some(event("MODIFIED", kv, kv.mod_revision)?),
            (false, true) => {
                let last = match (change.kind, prev) {
                    (EventKind::Put, Some(prev)) => prev.kv(),
                    _ => kv.as_ref(),
                };
                Some(event("DELETED", last, change.revision)?)
            }
            (false, false) => None,
        })
    }
}

/// The 410 of a watch from a revision whose events are no longer kept; `oldest` is the
/// revision after which every event is.
pub fn too_old(requested: Revision, oldest: Revision) -> ApiError {
    ApiError::Expired(format!("too old resource version: {requested} ({oldest})"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::kinds::find;

    fn change(kind: EventKind, create: Revision, modified: Revision) -> CachedEvent {
        let object = KeyValue {
            key: b"/registry/core/configmaps/default/a".to_vec(),
            value: br#"{"metadata":{"name":"a"}}"#.to_vec(),
            create_revision: create,
            mod_revision: modified,
            version: 1,
        };
        CachedEvent { revision: modified, kind, object: Arc::new(object), prev: None }
    }

    #[test]
    fn first_versions_are_added_later_ones_modified_and_deletes_deleted() {
        let cm = find("", "v1", "configmaps").unwrap();
        let added = WatchEvent::of_change(cm, &change(EventKind::Put, 5, 5)).unwrap();
        assert_eq!(added.event_type, "ADDED");
        assert_eq!(
            (added.object["kind"].as_str(), added.object["apiVersion"].as_str()),
            (Some("ConfigMap"), Some("v1"))
        );
        assert_eq!(added.object["metadata"]["resourceVersion"], "5");
        assert_eq!(WatchEvent::of_change(cm, &change(EventKind::Put, 5, 7)).unwrap().event_type, "MODIFIED");
        let deleted = WatchEvent::of_change(cm, &change(EventKind::Delete, 5, 9)).unwrap();
        assert_eq!(
            (deleted.event_type, deleted.object["metadata"]["resourceVersion"].as_str()),
            ("DELETED", Some("9"))
        );
        let bookmark = WatchEvent::bookmark(cm, 12).to_json();
        assert_eq!(bookmark["type"], "BOOKMARK");
        assert_eq!(bookmark["object"]["metadata"], json!({"resourceVersion": "12"}));
    }

    fn kv(name: &str, labels: Value, create: Revision, modified: Revision) -> Arc<KeyValue> {
        let value = json!({"metadata": {"name": name, "namespace": "default", "labels": labels}});
        Arc::new(KeyValue {
            key: format!("/registry/core/configmaps/default/{name}").into_bytes(),
            value: value.to_string().into_bytes(),
            create_revision: create,
            mod_revision: modified,
            version: 1,
        })
    }

    /// The (type, resourceVersion, labels) a filter makes of a change, if any.
    fn seen(filter: &WatchFilter, change: &CachedEvent) -> Option<(&'static str, String, Value)> {
        let cm = find("", "v1", "configmaps").unwrap();
        let object = Candidate::new(&change.object);
        let prev = change.prev.as_deref().map(Candidate::new);
        let event = filter.event_of(cm, change, &object, prev.as_ref()).unwrap()?;
        let rv = event.object["metadata"]["resourceVersion"].as_str().unwrap().to_string();
        Some((event.event_type, rv, event.object["metadata"]["labels"].clone()))
    }

    #[test]
    fn filters_select_a_prefix_and_objects_by_label_and_field() {
        let cm = find("", "v1", "configmaps").unwrap();
        let web = |l: &str, f: &str| WatchFilter {
            prefix: "/registry/core/configmaps/default/".into(),
            selectors: Selectors::parse(cm, l, f).unwrap(),
        };
        let a = kv("a", json!({"app": "web"}), 5, 5);
        assert!(web("app=web", "").matches(&Candidate::new(&a)));
        assert!(web("", "metadata.name=a").matches(&Candidate::new(&a)));
        assert!(!web("", "metadata.name=ab").matches(&Candidate::new(&a)));
        assert!(!web("app=db", "").matches(&Candidate::new(&a)));
        let elsewhere = WatchFilter { prefix: "/registry/core/configmaps/team/".into(), ..web("", "") };
        assert!(!elsewhere.matches(&Candidate::new(&a)));
    }

    #[test]
    fn objects_entering_and_leaving_a_selection_are_added_and_deleted() {
        let cm = find("", "v1", "configmaps").unwrap();
        let filter = WatchFilter {
            prefix: "/registry/core/configmaps/".into(),
            selectors: Selectors::parse(cm, "app=web", "").unwrap(),
        };
        let (plain, web, db) =
            (kv("a", json!({}), 5, 5), kv("a", json!({"app": "web"}), 5, 6), kv("a", json!({"app": "db"}), 5, 7));
        let put = |object: &Arc<KeyValue>, prev: Option<&Arc<KeyValue>>| CachedEvent {
            revision: object.mod_revision,
            kind: EventKind::Put,
            object: object.clone(),
            prev: prev.cloned(),
        };
        assert_eq!(seen(&filter, &put(&plain, None)), None, "created unselected");
        assert_eq!(seen(&filter, &put(&web, Some(&plain))), Some(("ADDED", "6".into(), json!({"app": "web"}))));
        let web_again = kv("a", json!({"app": "web"}), 5, 8);
        assert_eq!(seen(&filter, &put(&web_again, Some(&web))).unwrap().0, "MODIFIED");
        // Leaving: DELETED with the object as it last selected, at the change's revision.
        assert_eq!(seen(&filter, &put(&db, Some(&web))), Some(("DELETED", "7".into(), json!({"app": "web"}))));
        let gone = CachedEvent {
            revision: 9,
            kind: EventKind::Delete,
            object: kv("a", json!({"app": "web"}), 5, 9),
            prev: Some(web.clone()),
        };
        assert_eq!(seen(&filter, &gone), Some(("DELETED", "9".into(), json!({"app": "web"}))));
        let gone_db = CachedEvent {
            revision: 9,
            kind: EventKind::Delete,
            object: kv("a", json!({"app": "db"}), 5, 9),
            prev: Some(db.clone()),
        };
        assert_eq!(seen(&filter, &gone_db), None);
        // Everything: a first version is ADDED, a later one MODIFIED.
        let all = WatchFilter { prefix: "/registry/core/configmaps/".into(), selectors: Selectors::default() };
        assert_eq!(seen(&all, &put(&plain, None)).unwrap().0, "ADDED");
        assert_eq!(seen(&all, &put(&db, Some(&web))).unwrap().0, "MODIFIED");
        assert_eq!(seen(&all, &gone_db).unwrap().0, "DELETED");
    }

    #[test]
    fn too_old_is_expired() {
        let expired = WatchEvent::error(&too_old(3, 10)).to_json();
        assert_eq!(expired["type"], "ERROR");
        assert_eq!(
            (expired["object"]["code"].as_i64(), expired["object"]["reason"].as_str()),
            (Some(410), Some("Expired"))
        );
        assert_eq!(expired["object"]["message"], "too old resource version: 3 (10)");
    }
}
