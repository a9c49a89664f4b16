//! AdmissionReview in and out, and the two decisions on LoadTests: [`validate`] refuses a
//! `spec.requestsPerSecond` over the limit, [`mutate`] defaults `spec.scheme` to `https`.
//!
//! Both are plain functions of the request, so they test without a server.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The group of the kind this webhook looks at.
pub const GROUP: &str = "beta.kuar.com";
/// The kind this webhook looks at; any other kind is allowed unchanged.
pub const KIND: &str = "LoadTest";
/// What [`mutate`] sets `spec.scheme` to when it is absent.
pub const DEFAULT_SCHEME: &str = "https";
/// The AdmissionReview versions this webhook answers; the answer carries the request's.
pub const REVIEW_VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

/// An AdmissionReview as the API server sends it; only `request` is read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewIn {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub request: Option<AdmissionRequest>,
}

/// The fields of `AdmissionReview.request` the decisions need.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    /// Echoed in the response: the API server matches the two by it.
    pub uid: String,
    pub kind: GroupVersionKind,
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    /// The object as it will be stored; absent (null) on DELETE and CONNECT.
    #[serde(default)]
    pub object: Option<Value>,
}

/// `request.kind`: the kind of the object (not of the resource path).
#[derive(Debug, Default, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

impl AdmissionRequest {
    /// Whether this request is about a LoadTest (and so subject to this webhook's rules).
    pub fn is_loadtest(&self) -> bool {
        self.kind.group == GROUP && self.kind.kind == KIND
    }
}

/// The AdmissionReview answered: same `apiVersion` as the request, `response` set.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewOut {
    pub api_version: String,
    pub kind: &'static str,
    pub response: AdmissionResponse,
}

/// `AdmissionReview.response`.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    pub uid: String,
    pub allowed: bool,
    /// Why a request is refused; kube-apiserver prefixes the message with
    /// `admission webhook "<name>" denied the request: ` and answers with `code`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// `JSONPatch` whenever `patch` is set (the only type kube accepts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// A base64-encoded RFC 6902 JSON Patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
}

/// A `metav1.Status` as far as a denial needs one.
#[derive(Debug, PartialEq, Serialize)]
pub struct Status {
    pub status: &'static str,
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl AdmissionResponse {
    /// Allowed, unchanged.
    pub fn allow(uid: &str) -> AdmissionResponse {
        AdmissionResponse { uid: uid.to_string(), allowed: true, status: None, patch_type: None, patch: None }
    }

    /// Refused with 403 Forbidden and `message`.
    pub fn deny(uid: &str, message: String) -> AdmissionResponse {
        let status = Status { status: "Failure", code: 403, reason: "Forbidden", message };
        AdmissionResponse { status: Some(status), allowed: false, ..AdmissionResponse::allow(uid) }
    }

    /// Allowed, with the JSON Patch `ops` applied to the object.
    pub fn patch(uid: &str, ops: &[Value]) -> AdmissionResponse {
        let encoded = base64::engine::general_purpose::STANDARD.encode(Value::from(ops.to_vec()).to_string());
        AdmissionResponse { patch_type: Some("JSONPatch"), patch: Some(encoded), ..AdmissionResponse::allow(uid) }
    }
}

/// Why `object`'s `spec.requestsPerSecond` is not acceptable under `max_rps`, if it is not.
/// A missing or non-numeric value passes: the CRD's schema judges types, not this webhook.
pub fn rps_violation(object: &Value, max_rps: u64) -> Option<String> {
    let rps = &object["spec"]["requestsPerSecond"];
    let over = match (rps.as_u64(), rps.as_f64()) {
        (Some(n), _) => n > max_rps,
        (None, Some(f)) => f > max_rps as f64,
        (None, None) => false,
    };
    over.then(|| format!("requestsPerSecond {rps} exceeds the limit of {max_rps}"))
}

/// The JSON Patch that sets `spec.scheme` to [`DEFAULT_SCHEME`] when `object` has none; `None`
/// when it has one (whatever its value: validation is the schema's business).
pub fn scheme_default(object: &Value) -> Option<Vec<Value>> {
    match object.get("spec") {
        Some(Value::Object(spec)) if spec.get("scheme").is_some_and(|s| !s.is_null()) => None,
        Some(Value::Object(_)) => Some(vec![json!({"op": "add", "path": "/spec/scheme", "value": DEFAULT_SCHEME})]),
        // No spec (or a null one): add the whole object; `add` replaces a null member.
        _ => Some(vec![json!({"op": "add", "path": "/spec", "value": {"scheme": DEFAULT_SCHEME}})]),
    }
}

/// The validating decision: LoadTests over `max_rps` are refused, everything else allowed.
pub fn validate(request: &AdmissionRequest, max_rps: u64) -> AdmissionResponse {
    let violation = match &request.object {
        Some(object) if request.is_loadtest() => rps_violation(object, max_rps),
        _ => None,
    };
    match violation {
        Some(message) => AdmissionResponse::deny(&request.uid, message),
        None => AdmissionResponse::allow(&request.uid),
    }
}

/// The mutating decision: a LoadTest without `spec.scheme` gets `https`; nothing else changes.
pub fn mutate(request: &AdmissionRequest) -> AdmissionResponse {
    let ops = match &request.object {
        Some(object) if request.is_loadtest() && object.is_object() => scheme_default(object),
        _ => None,
    };
    match ops {
        Some(ops) => AdmissionResponse::patch(&request.uid, &ops),
        None => AdmissionResponse::allow(&request.uid),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn request(kind: &str, object: Value) -> AdmissionRequest {
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": GROUP, "version": "v1", "kind": kind},
                "operation": "CREATE",
                "namespace": "default",
                "name": "load",
                "object": object,
            }
        });
        serde_json::from_value::<ReviewIn>(review).unwrap().request.unwrap()
    }

    fn loadtest(spec: Value) -> Value {
        json!({"apiVersion": "beta.kuar.com/v1", "kind": "LoadTest", "metadata": {"name": "load"}, "spec": spec})
    }

    fn decoded_patch(response: &AdmissionResponse) -> Value {
        let bytes = base64::engine::general_purpose::STANDARD.decode(response.patch.as_ref().unwrap()).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn a_loadtest_over_the_limit_is_refused_with_403_and_the_figures() {
        let response = validate(&request(KIND, loadtest(json!({"requestsPerSecond": 5000}))), 1000);
        assert!(!response.allowed);
        assert_eq!(response.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
        let status = response.status.unwrap();
        assert_eq!((status.code, status.reason), (403, "Forbidden"));
        assert_eq!(status.message, "requestsPerSecond 5000 exceeds the limit of 1000");
    }

    #[test]
    fn a_loadtest_at_or_under_the_limit_or_without_a_rate_is_allowed() {
        for spec in [json!({"requestsPerSecond": 1000}), json!({"requestsPerSecond": 1}), json!({}), json!(null)] {
            let response = validate(&request(KIND, loadtest(spec.clone())), 1000);
            assert_eq!(response, AdmissionResponse::allow("705ab4f5-6393-11e8-b7cc-42010a800002"), "{spec}");
        }
    }

    #[test]
    fn a_fractional_or_non_numeric_rate_is_judged_only_when_numeric() {
        assert!(rps_violation(&loadtest(json!({"requestsPerSecond": 1000.5})), 1000).is_some());
        assert!(rps_violation(&loadtest(json!({"requestsPerSecond": "lots"})), 1000).is_none());
        assert!(rps_violation(&loadtest(json!({"requestsPerSecond": -3})), 1000).is_none());
    }

    #[test]
    fn other_kinds_and_deletes_are_allowed_unchanged() {
        let other = request("Other", loadtest(json!({"requestsPerSecond": 5000})));
        assert!(validate(&other, 1000).allowed);
        assert_eq!(mutate(&other).patch, None);
        let mut delete = request(KIND, Value::Null);
        delete.object = None;
        assert!(validate(&delete, 1000).allowed);
        assert_eq!(mutate(&delete).patch, None);
    }

    #[test]
    fn a_loadtest_without_a_scheme_gets_https_by_json_patch() {
        let response = mutate(&request(KIND, loadtest(json!({"service": "web"}))));
        assert!(response.allowed);
        assert_eq!(response.patch_type, Some("JSONPatch"));
        assert_eq!(decoded_patch(&response), json!([{"op": "add", "path": "/spec/scheme", "value": "https"}]));
    }

    #[test]
    fn a_loadtest_without_a_spec_gets_one_with_the_scheme() {
        let mut object = loadtest(Value::Null);
        let response = mutate(&request(KIND, object.clone()));
        assert_eq!(decoded_patch(&response), json!([{"op": "add", "path": "/spec", "value": {"scheme": "https"}}]));
        object.as_object_mut().unwrap().remove("spec");
        assert!(mutate(&request(KIND, object)).patch.is_some());
    }

    #[test]
    fn a_loadtest_with_a_scheme_is_left_alone() {
        for scheme in ["http", "https", "gopher"] {
            let response = mutate(&request(KIND, loadtest(json!({"scheme": scheme}))));
            assert_eq!(response, AdmissionResponse::allow("705ab4f5-6393-11e8-b7cc-42010a800002"));
        }
    }

    #[test]
    fn responses_serialize_as_kube_expects() {
        let denied = serde_json::to_value(AdmissionResponse::deny("u", "no".into())).unwrap();
        assert_eq!(
            denied,
            json!({"uid": "u", "allowed": false,
                   "status": {"status": "Failure", "code": 403, "reason": "Forbidden", "message": "no"}})
        );
        assert_eq!(serde_json::to_value(AdmissionResponse::allow("u")).unwrap(), json!({"uid": "u", "allowed": true}));
    }
}
