//! The `AdmissionReview` (`admission.k8s.io/v1`, or `v1beta1` for webhooks that accept only
//! that) sent to a webhook and the checks kube's `VerifyAdmissionResponse` makes of the answer:
//! its kind, the request's `uid` echoed, `patch` only with `patchType: JSONPatch` and only from
//! a mutating webhook. A JSON patch is applied to the object; a refusal becomes the `Status`
//! kube's `ToStatusErr` makes of the webhook's (403 Forbidden unless it says otherwise).

use std::collections::BTreeMap;

use actors::admission::{Attributes, Operation};
use actors::ApiError;
use base64::Engine;
use serde_json::{json, Map, Value};

use super::matching::is_namespaces;

/// The AdmissionReview versions this server sends, preferred first.
pub const VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// The first version of a webhook's `admissionReviewVersions` this server sends; `Err` in
/// kube's words when it lists none.
pub fn pick_version(accepted: &[String]) -> Result<&'static str, String> {
    accepted
        .iter()
        .find_map(|v| VERSIONS.iter().find(|known| *known == v).copied())
        .ok_or_else(|| "webhook does not accept known AdmissionReview versions".to_string())
}

/// `{group, version, kind}` of the request's object.
fn gvk(attrs: &Attributes) -> Value {
    json!({"group": attrs.kind.group, "version": attrs.kind.version, "kind": attrs.kind.kind})
}

/// `{group, version, resource}` of the request.
fn gvr(attrs: &Attributes) -> Value {
    json!({"group": attrs.kind.group, "version": attrs.kind.version, "resource": attrs.kind.resource})
}

/// The namespace of a request as kube's request info has it: for a namespace, its own name
/// (but on create, which is not addressed to one).
fn namespace_of(attrs: &Attributes) -> String {
    if is_namespaces(attrs) {
        return if attrs.operation == Operation::Create { String::new() } else { attrs.name.clone() };
    }
    attrs.namespace.clone().unwrap_or_default()
}

/// The `AdmissionRequest` of a write (without `object` and `oldObject`, which
/// [`review`] adds): also what matchConditions see as `request`.
pub fn request(uid: &str, attrs: &Attributes) -> Value {
    let mut user = Map::new();
    user.insert("username".into(), json!(attrs.user.username));
    if !attrs.user.uid.is_empty() {
        user.insert("uid".into(), json!(attrs.user.uid));
    }
    if !attrs.user.groups.is_empty() {
        user.insert("groups".into(), json!(attrs.user.groups));
    }
    if !attrs.user.extra.is_empty() {
        user.insert("extra".into(), json!(attrs.user.extra));
    }
    let options = match attrs.operation {
        Operation::Create => Some("CreateOptions"),
        Operation::Update => Some("UpdateOptions"),
        Operation::Delete => Some("DeleteOptions"),
        Operation::Connect => None,
    };
    let mut request = json!({
        "uid": uid,
        "kind": gvk(attrs),
        "resource": gvr(attrs),
        "requestKind": gvk(attrs),
        "requestResource": gvr(attrs),
        "name": attrs.name,
        "namespace": namespace_of(attrs),
        "operation": attrs.operation.as_str(),
        "userInfo": user,
        "dryRun": attrs.dry_run,
    });
    if let Some(sub) = attrs.subresource {
        request["subResource"] = json!(sub);
        request["requestSubResource"] = json!(sub);
    }
    if let Some(kind) = options {
        let mut options = json!({"kind": kind, "apiVersion": "meta.k8s.io/v1"});
        if attrs.dry_run {
            options["dryRun"] = json!(["All"]);
        }
        request["options"] = options;
    }
    request
}

/// The review of `request` (from [`request`]) in `version`, with the objects (`null` where
/// absent: `oldObject` on create, `object` on delete).
pub fn review(version: &str, mut request: Value, object: Option<&Value>, old: Option<&Value>) -> Value {
    request["object"] = object.cloned().unwrap_or(Value::Null);
    request["oldObject"] = old.cloned().unwrap_or(Value::Null);
    json!({"apiVersion": format!("admission.k8s.io/{version}"), "kind": "AdmissionReview", "request": request})
}

/// A webhook's answer, checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Response {
    pub allowed: bool,
    /// `status` (a `metav1.Status`): what a refusal tells the client.
    pub status: Option<Value>,
    /// The JSON patch, decoded from base64 (mutating webhooks only).
    pub patch: Option<Vec<u8>>,
    pub warnings: Vec<String>,
    pub audit_annotations: BTreeMap<String, String>,
}

/// The response of `answer` to the review `uid` sent in `version`, as kube verifies it; `Err`
/// completes `received invalid webhook response: ...`.
pub fn parse_response(version: &str, uid: &str, answer: Value, mutating: bool) -> Result<Response, String> {
    let expected = format!("admission.k8s.io/{version}");
    let api_version = answer.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = answer.get("kind").and_then(Value::as_str).unwrap_or("");
    let Some(response) = answer.get("response").filter(|r| r.is_object()) else {
        return Err("webhook response was absent".into());
    };
    let got_uid = response.get("uid").and_then(Value::as_str).unwrap_or("");
    let strict = version == "v1";
    if strict && got_uid != uid {
        return Err(format!("expected response.uid={uid:?}, got {got_uid:?}"));
    }
    if strict && (api_version != expected || kind != "AdmissionReview") {
        let (group, v) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        return Err(format!(
            "expected webhook response of {expected}, Kind=AdmissionReview, got {}{v}, Kind={kind}",
            if group.is_empty() { String::new() } else { format!("{group}/") }
        ));
    }
    let allowed = match response.get("allowed") {
        Some(Value::Bool(b)) => *b,
        None | Some(Value::Null) => false,
        Some(other) => {
            return Err(format!(
                "json: cannot unmarshal {} into Go struct field AdmissionResponse.response.allowed of type bool",
                go_type(other)
            ))
        }
    };
    let patch = match response.get("patch") {
        None | Some(Value::Null) => None,
        Some(Value::String(b64)) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| format!("illegal base64 data in response.patch: {e}"))?,
        ),
        Some(other) => {
            return Err(format!(
                "json: cannot unmarshal {} into Go struct field AdmissionResponse.response.patch of type []uint8",
                go_type(other)
            ))
        }
    };
    let mut patch_type = response.get("patchType").and_then(Value::as_str).unwrap_or("").to_string();
    let has_patch = patch.as_ref().is_some_and(|p| !p.is_empty());
    if has_patch && patch_type.is_empty() {
        if strict {
            return Err("webhook returned response.patch but not response.patchType".into());
        }
        patch_type = "JSONPatch".into();
    }
    if !patch_type.is_empty() {
        if !mutating {
            return Err("validating webhook may not return response.patch".into());
        }
        if patch_type != "JSONPatch" {
            return Err(format!("webhook returned invalid response.patchType of {patch_type:?}"));
        }
    }
    let strings = |field: &str| -> Vec<String> {
        let items = response.get(field).and_then(Value::as_array);
        items.into_iter().flatten().filter_map(Value::as_str).map(String::from).collect()
    };
    let audit_annotations = response
        .get("auditAnnotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    Ok(Response {
        allowed,
        status: response.get("status").filter(|s| s.is_object()).cloned(),
        patch: patch.filter(|p| !p.is_empty()),
        warnings: strings("warnings"),
        audit_annotations,
    })
}

/// Go's name of a JSON value's type, for decoding errors.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `obj` with the JSON `patch` applied; `Err` is the reason (kube: a 500).
pub fn apply_patch(obj: &Value, patch: &[u8]) -> Result<Value, String> {
    let patch: json_patch::Patch = serde_json::from_slice(patch).map_err(|e| format!("invalid JSON patch: {e}"))?;
    let mut patched = obj.clone();
    json_patch::patch(&mut patched, &patch).map_err(|e| e.to_string())?;
    if !patched.is_object() {
        return Err("the patched object is not a JSON object".into());
    }
    Ok(patched)
}

/// The error a webhook's refusal is, as kube's `ToStatusErr`: the webhook's code (403 if it
/// gave none) and reason (`Forbidden`, `InternalError` for a 500), the message
/// `admission webhook "<webhook>" denied the request: <why>`.
pub fn denied(attrs: &Attributes, webhook: &str, status: Option<&Value>) -> ApiError {
    let empty = json!({});
    let status = status.unwrap_or(&empty);
    let text = |f: &str| status.get(f).and_then(Value::as_str).unwrap_or("").to_string();
    let (message, reason) = (text("message"), text("reason"));
    let code = status.get("code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok()).filter(|c| *c != 0);
    let code = code.unwrap_or(403);
    let denied_by = format!("admission webhook {webhook:?} denied the request");
    let why = match (message.is_empty(), reason.is_empty()) {
        (false, _) => format!("{denied_by}: {message}"),
        (true, false) => format!("{denied_by}: {reason}"),
        (true, true) => format!("{denied_by} without explanation"),
    };
    let name = if attrs.name.is_empty() { "Unknown" } else { attrs.name.as_str() };
    // kube's ToStatusErr: the message is the refusal alone, with no `... is forbidden:` prefix.
    let default_reason = if code == 500 { "InternalError" } else { "Forbidden" };
    let message = why.clone();
    let details = match status.get("details").filter(|d| d.is_object()) {
        Some(details) => details.clone(),
        None if code == 500 => json!({"causes": [{"message": why}]}),
        None => json!({"group": attrs.kind.group, "kind": attrs.kind.resource, "name": name}),
    };
    let reason = if reason.is_empty() { default_reason.to_string() } else { reason };
    ApiError::Status { code, reason, message, details: Some(details) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use actors::{kinds, UserInfo};

    fn attrs(op: Operation) -> Attributes {
        Attributes {
            kind: kinds::find("", "v1", "configmaps").unwrap(),
            subresource: None,
            operation: op,
            namespace: Some("default".into()),
            name: "cm".into(),
            user: UserInfo { username: "alice".into(), groups: vec!["dev".into()], ..UserInfo::default() },
            dry_run: false,
        }
    }

    fn answer(uid: &str, response: Value) -> Value {
        let mut response = response;
        response["uid"] = json!(uid);
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
    }

    #[test]
    fn a_review_carries_the_request_and_both_objects() {
        let obj = json!({"metadata": {"name": "cm"}});
        let sent = review("v1", request("u1", &attrs(Operation::Update)), Some(&obj), Some(&obj));
        assert_eq!(sent["apiVersion"], "admission.k8s.io/v1");
        let r = &sent["request"];
        assert_eq!(r["uid"], "u1");
        assert_eq!(r["kind"], json!({"group": "", "version": "v1", "kind": "ConfigMap"}));
        assert_eq!(r["resource"], json!({"group": "", "version": "v1", "resource": "configmaps"}));
        assert_eq!(r["requestResource"], r["resource"]);
        assert_eq!(
            (r["name"].as_str(), r["namespace"].as_str(), r["operation"].as_str()),
            (Some("cm"), Some("default"), Some("UPDATE"))
        );
        assert_eq!(r["userInfo"], json!({"username": "alice", "groups": ["dev"]}));
        assert_eq!(r["options"]["kind"], "UpdateOptions");
        assert_eq!((r["object"]["metadata"]["name"].as_str(), r["dryRun"].as_bool()), (Some("cm"), Some(false)));
        assert!(r.get("subResource").is_none());
        let delete = review("v1", request("u2", &attrs(Operation::Delete)), None, Some(&obj));
        assert_eq!(
            (delete["request"]["object"].is_null(), delete["request"]["oldObject"]["metadata"]["name"].as_str()),
            (true, Some("cm"))
        );
    }

    #[test]
    fn the_first_review_version_the_webhook_lists_and_this_server_knows_is_sent() {
        assert_eq!(pick_version(&["v1beta1".into(), "v1".into()]).unwrap(), "v1beta1");
        assert_eq!(pick_version(&["v2".into(), "v1".into()]).unwrap(), "v1");
        assert_eq!(pick_version(&["v2".into()]).unwrap_err(), "webhook does not accept known AdmissionReview versions");
    }

    #[test]
    fn answers_are_checked_as_kube_does() {
        let ok =
            parse_response("v1", "u1", answer("u1", json!({"allowed": true, "warnings": ["careful"]})), false).unwrap();
        assert_eq!((ok.allowed, ok.warnings), (true, vec!["careful".to_string()]));
        assert_eq!(
            parse_response("v1", "u1", answer("u2", json!({"allowed": true})), false).unwrap_err(),
            r#"expected response.uid="u1", got "u2""#
        );
        let mut beta = answer("u1", json!({"allowed": true}));
        beta["apiVersion"] = json!("admission.k8s.io/v1beta1");
        assert_eq!(
            parse_response("v1", "u1", beta, false).unwrap_err(),
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got admission.k8s.io/v1beta1, Kind=AdmissionReview"
        );
        let none = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
        assert_eq!(parse_response("v1", "u1", none, true).unwrap_err(), "webhook response was absent");
        let patch = base64::engine::general_purpose::STANDARD.encode(r#"[{"op":"add","path":"/data","value":{}}]"#);
        let untyped = answer("u1", json!({"allowed": true, "patch": patch}));
        assert_eq!(
            parse_response("v1", "u1", untyped.clone(), true).unwrap_err(),
            "webhook returned response.patch but not response.patchType"
        );
        let mut typed = untyped;
        typed["response"]["patchType"] = json!("JSONPatch");
        assert!(parse_response("v1", "u1", typed.clone(), true).unwrap().patch.is_some());
        assert_eq!(
            parse_response("v1", "u1", typed.clone(), false).unwrap_err(),
            "validating webhook may not return response.patch"
        );
        typed["response"]["patchType"] = json!("MergePatch");
        assert_eq!(
            parse_response("v1", "u1", typed, true).unwrap_err(),
            r#"webhook returned invalid response.patchType of "MergePatch""#
        );
        let bad = answer("u1", json!({"allowed": "yes"}));
        assert!(parse_response("v1", "u1", bad, false).unwrap_err().contains("cannot unmarshal string"));
    }

    #[test]
    fn json_patches_apply_to_the_object() {
        let obj = json!({"metadata": {"name": "cm", "labels": {"a": "1"}}, "data": {"k": "v"}});
        let patched = apply_patch(
            &obj,
            br#"[{"op":"add","path":"/metadata/labels/b","value":"2"},{"op":"remove","path":"/data/k"}]"#,
        )
        .unwrap();
        assert_eq!(patched["metadata"]["labels"], json!({"a": "1", "b": "2"}));
        assert_eq!(patched["data"], json!({}));
        let e = apply_patch(&obj, br#"[{"op":"remove","path":"/spec/x"}]"#).unwrap_err();
        assert!(e.contains("failed at path '/spec/x'"), "{e}");
        assert!(apply_patch(&obj, b"{}").unwrap_err().starts_with("invalid JSON patch"));
        assert!(apply_patch(&obj, br#"[{"op":"replace","path":"","value":3}]"#).is_err());
    }

    #[test]
    fn refusals_become_kubes_status() {
        let e = denied(&attrs(Operation::Create), "deny.example.com", Some(&json!({"message": "no thanks"})));
        assert_eq!((e.code(), e.reason()), (403, "Forbidden"));
        assert_eq!(e.to_string(), r#"admission webhook "deny.example.com" denied the request: no thanks"#);
        assert_eq!(e.status()["details"], json!({"group": "", "kind": "configmaps", "name": "cm"}));
        let e = denied(&attrs(Operation::Create), "w", None);
        assert_eq!(e.to_string(), r#"admission webhook "w" denied the request without explanation"#);
        let e = denied(&attrs(Operation::Create), "w", Some(&json!({"code": 422, "reason": "Invalid"})));
        assert_eq!((e.code(), e.reason()), (422, "Invalid"));
        assert_eq!(e.to_string(), r#"admission webhook "w" denied the request: Invalid"#);
        let e = denied(&attrs(Operation::Create), "w", Some(&json!({"code": 500, "message": "boom"})));
        assert_eq!((e.code(), e.reason()), (500, "InternalError"));
        assert_eq!(e.to_string(), r#"admission webhook "w" denied the request: boom"#);
    }
}
