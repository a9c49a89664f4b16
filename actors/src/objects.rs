//! Plain functions over API objects as generic JSON: store keys, the checks and fields set
//! on create and update, and the resourceVersion put back on read.
//!
//! Objects are stored as JSON without `metadata.resourceVersion`; it is the key's
//! `mod_revision`, set by [`with_resource_version`] on the way out.

use rand::Rng;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::api_error::{ApiError, ApiResult, FieldCause, Subject};
use crate::kinds::ResourceKind;

/// Longest DNS-1123 subdomain.
const MAX_SUBDOMAIN: usize = 253;
/// Longest DNS-1123 label (namespace names).
const MAX_LABEL: usize = 63;
/// What `generateName` appends, as kube-apiserver: 5 characters from this alphabet.
const GENERATED_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

const SUBDOMAIN_DETAIL: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_DETAIL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

/// The store key of an object: the kind's prefix, then `namespace/name` or `name`.
pub fn storage_key(kind: &ResourceKind, namespace: Option<&str>, name: &str) -> String {
    match namespace.filter(|_| kind.namespaced) {
        Some(ns) => format!("{}{ns}/{name}", kind.storage_prefix()),
        None => format!("{}{name}", kind.storage_prefix()),
    }
}

/// The store prefix of a list: the whole kind, or one namespace of it.
pub fn list_prefix(kind: &ResourceKind, namespace: Option<&str>) -> String {
    match namespace.filter(|_| kind.namespaced) {
        Some(ns) => format!("{}{ns}/", kind.storage_prefix()),
        None => kind.storage_prefix(),
    }
}

/// `metadata.name`, if set.
pub fn name_of(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/name").and_then(Value::as_str).filter(|n| !n.is_empty())
}

/// Checks what any write must satisfy: an object whose `apiVersion` and `kind` are the
/// resource's (filled in when absent), and whose namespace is empty or the URL's. Returns
/// the object's metadata map.
fn check_envelope<'a>(
    kind: &ResourceKind,
    url_ns: Option<&str>,
    obj: &'a mut Value,
) -> ApiResult<&'a mut Map<String, Value>> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::BadRequest("the body is not a JSON object".into()));
    };
    let api_version = kind.group_version();
    for (field, want) in [("apiVersion", api_version.as_str()), ("kind", kind.kind)] {
        match map.get(field) {
            None => {
                map.insert(field.into(), json!(want));
            }
            Some(Value::String(got)) if got == want => {}
            Some(got) => {
                return Err(ApiError::BadRequest(format!(
                    "the {field} of the object ({got}) does not match the expected {field} ({want})"
                )))
            }
        }
    }
    let metadata = map.entry("metadata").or_insert_with(|| json!({}));
    let Some(metadata) = metadata.as_object_mut() else {
        return Err(ApiError::BadRequest("metadata is not an object".into()));
    };
    if kind.namespaced {
        let body_ns = metadata.get("namespace").and_then(Value::as_str).unwrap_or("");
        if let Some(url_ns) = url_ns {
            if !body_ns.is_empty() && body_ns != url_ns {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ));
            }
            metadata.insert("namespace".into(), json!(url_ns));
        }
    } else {
        metadata.remove("namespace");
    }
    Ok(metadata)
}

/// Why `name` is not a valid name for `kind`, if it is not: namespaces need a DNS-1123
/// label, everything else a DNS-1123 subdomain.
pub fn name_problem(kind: &ResourceKind, name: &str) -> Option<&'static str> {
    let (max, detail, dots) = if kind.resource == "namespaces" {
        (MAX_LABEL, LABEL_DETAIL, false)
    } else {
        (MAX_SUBDOMAIN, SUBDOMAIN_DETAIL, true)
    };
    if name.len() > max {
        return Some(if dots { "must be no more than 253 characters" } else { "must be no more than 63 characters" });
    }
    let label_ok = |label: &str| {
        let b = label.as_bytes();
        let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        !b.is_empty()
            && b.first().is_some_and(alnum)
            && b.last().is_some_and(alnum)
            && b.iter().all(|c| alnum(c) || *c == b'-')
    };
    let ok = if dots { name.split('.').all(label_ok) } else { label_ok(name) };
    (!ok).then_some(detail)
}

fn invalid_name(kind: &ResourceKind, name: &str, detail: &str) -> ApiError {
    let cause = FieldCause::invalid("metadata.name", name, detail);
    ApiError::Invalid { subject: Subject::of(kind, name), causes: vec![cause] }
}

/// `2024-05-01T10:00:00Z`: RFC 3339 in whole seconds, UTC.
pub fn timestamp(now: OffsetDateTime) -> String {
    let whole = now.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap_or(now);
    whole.format(&Rfc3339).unwrap_or_default()
}

/// A fresh random (version 4) UID.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Checks and completes an object for create in namespace `url_ns` (for namespaced kinds):
/// name (or `generateName` plus 5 random characters), namespace, uid, creationTimestamp,
/// generation 1; any resourceVersion is dropped.
pub fn prepare_create(
    kind: &ResourceKind,
    url_ns: Option<&str>,
    mut obj: Value,
    now: OffsetDateTime,
) -> ApiResult<Value> {
    let metadata = check_envelope(kind, url_ns, &mut obj)?;
    let name = match metadata.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        Some(name) => name.to_string(),
        None => match metadata.get("generateName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            Some(base) => format!("{base}{}", random_suffix()),
            None => {
                let cause = FieldCause::required("metadata.name", "name or generateName is required");
                return Err(ApiError::Invalid { subject: Subject::of(kind, ""), causes: vec![cause] });
            }
        },
    };
    if let Some(detail) = name_problem(kind, &name) {
        return Err(invalid_name(kind, &name, detail));
    }
    metadata.insert("name".into(), json!(name));
    metadata.insert("uid".into(), json!(new_uid()));
    metadata.insert("creationTimestamp".into(), json!(timestamp(now)));
    if kind.tracks_generation() {
        metadata.insert("generation".into(), json!(1));
    } else {
        metadata.remove("generation");
    }
    metadata.remove("resourceVersion");
    Ok(obj)
}

fn random_suffix() -> String {
    let mut rng = rand::thread_rng();
    (0..5).map(|_| GENERATED_ALPHABET[rng.gen_range(0..GENERATED_ALPHABET.len())] as char).collect()
}

/// Checks an update of `name` in `url_ns`: the body must name the same object (400).
/// Returns the body's resourceVersion, if it has one (400 if it is not a number).
pub fn check_update(kind: &ResourceKind, url_ns: Option<&str>, name: &str, obj: &mut Value) -> ApiResult<Option<i64>> {
    let metadata = check_envelope(kind, url_ns, obj)?;
    match metadata.get("name").and_then(Value::as_str) {
        Some(n) if n == name => {}
        Some(n) => {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )))
        }
        None => {
            metadata.insert("name".into(), json!(name));
        }
    }
    match metadata.get("resourceVersion") {
        None => Ok(None),
        Some(Value::String(rv)) if rv.is_empty() => Ok(None),
        Some(Value::String(rv)) => {
            rv.parse::<i64>().map(Some).map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {rv:?}")))
        }
        Some(other) => Err(ApiError::BadRequest(format!("invalid resourceVersion {other}"))),
    }
}

/// The stored form of an update of `old` to `new`: uid and creationTimestamp come from
/// `old`; for kinds that track it, generation rises by one when anything outside metadata
/// and status changed.
pub fn prepare_update(kind: &ResourceKind, old: &Value, mut new: Value) -> Value {
    if kind.group.is_empty() && kind.resource == "services" {
        keep_allocated_ip(old, &mut new);
    }
    let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
    let changed = spec_part(old) != spec_part(&new);
    if let Some(metadata) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["uid", "creationTimestamp"] {
            match old.pointer(&format!("/metadata/{field}")) {
                Some(v) => metadata.insert(field.into(), v.clone()),
                None => metadata.remove(field),
            };
        }
        if kind.tracks_generation() {
            metadata.insert("generation".into(), json!(if changed { generation + 1 } else { generation }));
        } else {
            metadata.remove("generation");
        }
        metadata.remove("resourceVersion");
    }
    new
}

/// A Service update that leaves out its cluster IP keeps the allocated one (kube's
/// `patchAllocatedValues`): `kubectl replace` of a manifest without it changes nothing there.
fn keep_allocated_ip(old: &Value, new: &mut Value) {
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else { return };
    for field in ["clusterIP", "clusterIPs"] {
        let unset =
            spec.get(field).is_none_or(|v| v.as_str() == Some("") || v.as_array().is_some_and(|a| a.is_empty()));
        if let (true, Some(allocated)) = (unset, old.pointer(&format!("/spec/{field}"))) {
            spec.insert(field.into(), allocated.clone());
        }
    }
}

/// Everything but `metadata`, `status`, `kind` and `apiVersion`.
fn spec_part(obj: &Value) -> Map<String, Value> {
    let mut map = obj.as_object().cloned().unwrap_or_default();
    for field in ["metadata", "status", "kind", "apiVersion"] {
        map.remove(field);
    }
    map
}

/// The `autoscaling/v1` `Scale` of an object with a `scale` subresource: its desired
/// replicas (`spec.replicas`, 1 if unset), observed replicas and label selector.
pub fn scale_of(kind: &ResourceKind, obj: &Value) -> Value {
    if let Some(paths) = crate::custom_kinds::scale_paths(kind) {
        return custom_scale_of(&paths, obj);
    }
    let meta = &obj["metadata"];
    let mut metadata = Map::new();
    for field in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(v) = meta.get(field) {
            metadata.insert(field.into(), v.clone());
        }
    }
    let mut status = json!({"replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0)});
    if let Some(selector) = obj.pointer("/spec/selector").map(selector_string).filter(|s| !s.is_empty()) {
        status["selector"] = json!(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": status,
    })
}

/// A pod's QoS class (kube's `GetPodQOS`): `BestEffort` without any cpu or memory request
/// or limit, `Guaranteed` when every container limits cpu and memory to what it requests,
/// else `Burstable`.
pub fn qos_class(pod: &Value) -> &'static str {
    let mut containers: Vec<&Value> = Vec::new();
    for list in ["containers", "initContainers"] {
        if let Some(items) = pod.pointer(&format!("/spec/{list}")).and_then(Value::as_array) {
            containers.extend(items);
        }
    }
    let resource = |c: &Value, section: &str, name: &str| {
        c.pointer(&format!("/resources/{section}/{name}")).map(|v| v.to_string().trim_matches('"').to_string())
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        for name in ["cpu", "memory"] {
            let (request, limit) = (resource(c, "requests", name), resource(c, "limits", name));
            any |= request.is_some() || limit.is_some();
            // A missing request defaults to the limit.
            match (request, limit) {
                (_, None) => guaranteed = false,
                (Some(r), Some(l)) if r != l => guaranteed = false,
                _ => {}
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// A JSON path of a CRD's scale subresource (`.spec.replicas`) as a JSON pointer.
pub fn json_path_pointer(path: &str) -> String {
    path.split('.').filter(|p| !p.is_empty()).fold(String::new(), |acc, p| format!("{acc}/{p}"))
}

/// The `Scale` of a custom object, read at its CRD's paths.
fn custom_scale_of(paths: &crate::custom_kinds::ScalePaths, obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let mut metadata = Map::new();
    for field in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(v) = meta.get(field) {
            metadata.insert(field.into(), v.clone());
        }
    }
    let at = |path: &str| obj.pointer(&json_path_pointer(path)).and_then(Value::as_i64).unwrap_or(0);
    let mut status = json!({"replicas": at(&paths.status_replicas)});
    let selector = paths.label_selector.as_deref().and_then(|p| obj.pointer(&json_path_pointer(p)));
    if let Some(selector) = selector.and_then(Value::as_str).filter(|s| !s.is_empty()) {
        status["selector"] = json!(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": at(&paths.spec_replicas)},
        "status": status,
    })
}

/// Writes `replicas` into `obj` where `kind` keeps its desired replicas (`spec.replicas`, or
/// a CRD's `specReplicasPath`), making the objects on the way.
pub fn set_replicas(kind: &ResourceKind, obj: &mut Value, replicas: i64) {
    let path = match crate::custom_kinds::scale_paths(kind) {
        Some(paths) => paths.spec_replicas,
        None => ".spec.replicas".to_string(),
    };
    let parts: Vec<&str> = path.split('.').filter(|p| !p.is_empty()).collect();
    let Some((last, parents)) = parts.split_last() else { return };
    let mut at = obj;
    for part in parents {
        let Some(map) = at.as_object_mut() else { return };
        at = map.entry(part.to_string()).or_insert_with(|| json!({}));
    }
    if let Some(map) = at.as_object_mut() {
        map.insert(last.to_string(), json!(replicas));
    }
}

/// A `LabelSelector` object in the label selector syntax: `app=web,tier in (a,b)`.
pub fn selector_string(selector: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        parts.extend(labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())));
    }
    for expr in selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = expr["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = expr["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        match expr["operator"].as_str().unwrap_or_default() {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

/// Writes the stored object `raw` to `out` as [`with_resource_version`] would render it,
/// without parsing it: `"resourceVersion":"N"` goes first into its top-level `metadata`
/// (stored objects never carry one). False, with nothing written, if `raw` has no
/// top-level `metadata` object.
pub fn splice_resource_version(raw: &[u8], mod_revision: i64, out: &mut Vec<u8>) -> bool {
    let Some(at) = metadata_body_start(raw) else { return false };
    out.extend_from_slice(&raw[..at]);
    out.extend_from_slice(format!("\"resourceVersion\":\"{mod_revision}\"").as_bytes());
    let rest = &raw[at..];
    if rest.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'}') {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    true
}

/// Where the members of the top-level `"metadata": {` object of `raw` begin.
fn metadata_body_start(raw: &[u8]) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped, mut string_start) = (0usize, false, false, 0usize);
    for (i, &c) in raw.iter().enumerate() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => {
                    in_string = false;
                    // A key (not a value: keys are followed by ':') named metadata, at the top.
                    if depth == 1 && &raw[string_start..i] == b"metadata" {
                        let mut j = i + 1;
                        while raw.get(j).is_some_and(u8::is_ascii_whitespace) {
                            j += 1;
                        }
                        if raw.get(j) != Some(&b':') {
                            continue;
                        }
                        j += 1;
                        while raw.get(j).is_some_and(u8::is_ascii_whitespace) {
                            j += 1;
                        }
                        return (raw.get(j) == Some(&b'{')).then_some(j + 1);
                    }
                }
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => {
                in_string = true;
                string_start = i + 1;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// A stored object as clients see it: with `metadata.resourceVersion` = `mod_revision`.
pub fn with_resource_version(raw: &[u8], mod_revision: i64) -> ApiResult<Value> {
    let mut obj: Value =
        serde_json::from_slice(raw).map_err(|e| ApiError::InternalError(format!("stored object is not JSON: {e}")))?;
    if let Some(metadata) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("resourceVersion".into(), json!(mod_revision.to_string()));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::find;

    fn cm() -> &'static ResourceKind {
        find("", "v1", "configmaps").unwrap()
    }

    fn deployments() -> &'static ResourceKind {
        find("apps", "v1", "deployments").unwrap()
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap() + time::Duration::milliseconds(250)
    }

    fn body(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
    }

    #[test]
    fn keys_are_the_prefix_then_namespace_and_name() {
        assert_eq!(storage_key(cm(), Some("default"), "x"), "/registry/core/configmaps/default/x");
        let ns = find("", "v1", "namespaces").unwrap();
        assert_eq!(storage_key(ns, None, "team-a"), "/registry/core/namespaces/team-a");
        assert_eq!(list_prefix(cm(), Some("default")), "/registry/core/configmaps/default/");
        assert_eq!(list_prefix(cm(), None), "/registry/core/configmaps/");
    }

    #[test]
    fn create_sets_namespace_uid_timestamp_and_generation() {
        let mut input = body("x");
        input["metadata"]["resourceVersion"] = json!("7");
        let obj = prepare_create(cm(), Some("default"), input, now()).unwrap();
        let meta = &obj["metadata"];
        assert_eq!(meta["namespace"], "default");
        assert_eq!(meta["creationTimestamp"], "2023-11-14T22:13:20Z");
        assert!(meta.get("generation").is_none(), "configmaps have no generation");
        assert_eq!(meta["uid"].as_str().unwrap().len(), 36);
        assert!(meta.get("resourceVersion").is_none());
        assert_eq!(obj["data"]["a"], "1");
        let deploy = json!({"metadata": {"name": "web"}, "spec": {"replicas": 1}});
        let obj = prepare_create(deployments(), Some("default"), deploy, now()).unwrap();
        assert_eq!(obj["metadata"]["generation"], 1);
    }

    #[test]
    fn create_fills_in_a_generated_name() {
        let input = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "web-"}});
        let obj = prepare_create(cm(), Some("default"), input, now()).unwrap();
        let name = obj["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert!(name_problem(cm(), name).is_none());
    }

    #[test]
    fn create_refuses_wrong_types_names_and_namespaces() {
        let wrong_kind = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}});
        assert_eq!(prepare_create(cm(), Some("default"), wrong_kind, now()).unwrap_err().code(), 400);
        let wrong_version = json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
        assert_eq!(prepare_create(cm(), Some("default"), wrong_version, now()).unwrap_err().code(), 400);
        let mut other_ns = body("x");
        other_ns["metadata"]["namespace"] = json!("other");
        assert_eq!(prepare_create(cm(), Some("default"), other_ns, now()).unwrap_err().code(), 400);
        let err = prepare_create(cm(), Some("default"), body("Bad_Name"), now()).unwrap_err();
        assert_eq!(err.code(), 422);
        assert!(err.to_string().contains("metadata.name: Invalid value: \"Bad_Name\""), "{err}");
        assert_eq!(err.status()["details"]["causes"][0]["field"], "metadata.name");
        let nameless = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}});
        assert_eq!(prepare_create(cm(), Some("default"), nameless, now()).unwrap_err().code(), 422);
        assert_eq!(prepare_create(cm(), Some("default"), json!([1]), now()).unwrap_err().code(), 400);
    }

    #[test]
    fn names_are_dns_subdomains_and_namespace_names_labels() {
        for good in ["a", "web-1", "a.b.c", "0x"] {
            assert_eq!(name_problem(cm(), good), None, "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a..b", ".a", &"a".repeat(254)] {
            assert!(name_problem(cm(), bad).is_some(), "{bad}");
        }
        let ns = find("", "v1", "namespaces").unwrap();
        assert!(name_problem(ns, "a.b").is_some());
        assert!(name_problem(ns, &"a".repeat(64)).is_some());
        assert!(name_problem(ns, "team-a").is_none());
    }

    #[test]
    fn cluster_scoped_objects_have_no_namespace() {
        let ns = find("", "v1", "namespaces").unwrap();
        let input = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t", "namespace": "x"}});
        let obj = prepare_create(ns, None, input, now()).unwrap();
        assert!(obj["metadata"].get("namespace").is_none());
    }

    #[test]
    fn update_keeps_identity_and_bumps_generation_only_on_spec_changes() {
        let deploy = |replicas: i64| json!({"metadata": {"name": "web"}, "spec": {"replicas": replicas}});
        let old = prepare_create(deployments(), Some("default"), deploy(1), now()).unwrap();
        let mut relabelled = deploy(1);
        relabelled["metadata"]["labels"] = json!({"a": "b"});
        relabelled["metadata"]["uid"] = json!("forged");
        let same = prepare_update(deployments(), &old, relabelled);
        assert_eq!(same["metadata"]["uid"], old["metadata"]["uid"]);
        assert_eq!(same["metadata"]["creationTimestamp"], old["metadata"]["creationTimestamp"]);
        assert_eq!(same["metadata"]["generation"], 1);
        let mut changed = deploy(3);
        changed["metadata"]["resourceVersion"] = json!("5");
        let bumped = prepare_update(deployments(), &old, changed);
        assert_eq!(bumped["metadata"]["generation"], 2);
        assert!(bumped["metadata"].get("resourceVersion").is_none());
        let cm_old = prepare_create(cm(), Some("default"), body("x"), now()).unwrap();
        let mut cm_new = body("x");
        cm_new["data"]["a"] = json!("2");
        assert!(prepare_update(cm(), &cm_old, cm_new)["metadata"].get("generation").is_none());
    }

    #[test]
    fn update_checks_the_name_and_reads_the_resource_version() {
        let mut with_rv = body("x");
        with_rv["metadata"]["resourceVersion"] = json!("12");
        assert_eq!(check_update(cm(), Some("default"), "x", &mut with_rv).unwrap(), Some(12));
        assert_eq!(check_update(cm(), Some("default"), "x", &mut body("x")).unwrap(), None);
        assert_eq!(check_update(cm(), Some("default"), "y", &mut body("x")).unwrap_err().code(), 400);
        let mut bad_rv = body("x");
        bad_rv["metadata"]["resourceVersion"] = json!("abc");
        assert_eq!(check_update(cm(), Some("default"), "x", &mut bad_rv).unwrap_err().code(), 400);
    }

    #[test]
    fn scales_show_desired_and_observed_replicas_and_the_selector() {
        let deploy = json!({
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "5", "labels": {"a": "b"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}},
            "status": {"replicas": 2}
        });
        let scale = scale_of(crate::kinds::find("apps", "v1", "deployments").unwrap(), &deploy);
        assert_eq!(scale["kind"], "Scale");
        assert_eq!(scale["metadata"], json!({"name": "web", "namespace": "default", "resourceVersion": "5"}));
        assert_eq!(scale["spec"], json!({"replicas": 3}));
        assert_eq!(scale["status"], json!({"replicas": 2, "selector": "app=web,tier in (a,b)"}));
        assert_eq!(
            scale_of(crate::kinds::find("apps", "v1", "deployments").unwrap(), &json!({"metadata": {}}))["spec"]
                ["replicas"],
            1
        );
    }

    #[test]
    fn resource_versions_splice_into_stored_json_as_parsing_would_set_them() {
        let cases = [
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"metadata": "{"}}),
            json!({"data": {"a\"metadata": "\\"}, "metadata": {}, "zz": [1, {"metadata": 2}]}),
            json!({"metadata": {"labels": {"metadata": "x"}, "name": "y"}}),
        ];
        for case in cases {
            let raw = serde_json::to_vec(&case).unwrap();
            let mut out = Vec::new();
            assert!(splice_resource_version(&raw, 42, &mut out), "{case}");
            let spliced: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(spliced, with_resource_version(&raw, 42).unwrap(), "{case}");
        }
        let mut out = Vec::new();
        assert!(!splice_resource_version(br#"{"data": {"metadata": {}}}"#, 1, &mut out));
        assert!(!splice_resource_version(br#"{"metadata": "x"}"#, 1, &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn reads_carry_the_resource_version_as_a_string() {
        let obj = with_resource_version(body("x").to_string().as_bytes(), 42).unwrap();
        assert_eq!(obj["metadata"]["resourceVersion"], "42");
        assert_eq!(with_resource_version(b"not json", 1).unwrap_err().code(), 500);
    }

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        let pod = |resources: Value| json!({"spec": {"containers": [{"name": "c", "resources": resources}]}});
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(qos_class(&pod(json!({"requests": {"cpu": "1"}}))), "Burstable");
        assert_eq!(qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))), "Guaranteed");
        let unequal = json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}});
        assert_eq!(qos_class(&pod(unequal)), "Burstable");
    }
}
