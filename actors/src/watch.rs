//! Watch events as the Kubernetes API sends them: `{"type": "ADDED", "object": {...}}`, made
//! from the watch cache's events, and which watcher each event is for. Plain functions; the
//! kind actor keeps the watchers and the API gateway streams the events.

use raft_store::{EventKind, KeyValue, Revision};
use serde_json::{json, Value};

use crate::api_error::{ApiError, ApiResult};
use crate::kinds::ResourceKind;
use crate::objects::with_resource_version;
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

/// Which store keys a watcher wants: those under a prefix (the kind, or one namespace of
/// it) and, with `fieldSelector=metadata.name=X`, only the object named X.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchFilter {
    pub prefix: String,
    pub name: Option<String>,
}

impl WatchFilter {
    pub fn matches(&self, key: &[u8]) -> bool {
        let Some(rest) = key.strip_prefix(self.prefix.as_bytes()) else {
            return false;
        };
        match &self.name {
            Some(name) => rest.rsplit(|b| *b == b'/').next() == Some(name.as_bytes()),
            None => true,
        }
    }
}

/// The 410 of a watch from a revision whose events are no longer kept; `oldest` is the
/// revision after which every event is.
pub fn too_old(requested: Revision, oldest: Revision) -> ApiError {
    ApiError::Expired(format!("too old resource version: {requested} ({oldest})"))
}

/// The value of a field selector, if it is one this server serves (`metadata.name=X` or
/// `metadata.name==X`); `Err` names what is not served.
pub fn name_selector(selector: &str) -> ApiResult<Option<String>> {
    if selector.is_empty() {
        return Ok(None);
    }
    let value = selector.strip_prefix("metadata.name==").or_else(|| selector.strip_prefix("metadata.name="));
    match value {
        Some(name) if !name.contains(',') => Ok(Some(name.to_string())),
        _ => Err(ApiError::BadRequest(format!(
            "field selector {selector:?} is not supported; only metadata.name=NAME is served"
        ))),
    }
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

    #[test]
    fn filters_select_a_namespace_and_a_name() {
        let all = WatchFilter { prefix: "/registry/core/configmaps/".into(), name: None };
        let named = WatchFilter { prefix: "/registry/core/configmaps/default/".into(), name: Some("a".into()) };
        assert!(all.matches(b"/registry/core/configmaps/team/x"));
        assert!(!all.matches(b"/registry/core/secrets/default/a"));
        assert!(named.matches(b"/registry/core/configmaps/default/a"));
        assert!(!named.matches(b"/registry/core/configmaps/default/ab"));
        assert!(!named.matches(b"/registry/core/configmaps/team/a"));
    }

    #[test]
    fn only_name_field_selectors_are_served_and_too_old_is_expired() {
        assert_eq!(name_selector("").unwrap(), None);
        assert_eq!(name_selector("metadata.name=demo").unwrap(), Some("demo".into()));
        assert_eq!(name_selector("metadata.name==demo").unwrap(), Some("demo".into()));
        assert_eq!(name_selector("status.phase=Running").unwrap_err().code(), 400);
        let expired = WatchEvent::error(&too_old(3, 10)).to_json();
        assert_eq!(expired["type"], "ERROR");
        assert_eq!(
            (expired["object"]["code"].as_i64(), expired["object"]["reason"].as_str()),
            (Some(410), Some("Expired"))
        );
        assert_eq!(expired["object"]["message"], "too old resource version: 3 (10)");
    }
}
