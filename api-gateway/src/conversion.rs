//! Custom objects converted between versions by their CRD's conversion webhook: the
//! `ConversionReview` (v1) kube-apiserver sends, and its checks of the answer.
//!
//! [`convert`] sends, in one review, the objects that are not in the desired version yet, and
//! checks the answer as kube's `webhookConverter` does: the review's kind and `uid`, a
//! `Success` result, one object back per object sent, each in the desired group/version with
//! the same kind, name, namespace and uid; then each keeps its original `metadata` apart from
//! the labels and annotations the webhook set. A failure is a 500 `InternalError`:
//! `conversion webhook for beta.kuar.com/v2, Kind=LoadTest failed: ...`.

use std::sync::{Arc, LazyLock, Mutex};

use actors::custom_kinds::{Conversion, CustomKind};
use actors::{ApiError, ApiResult, KindActors};
use serde_json::{json, Map, Value};

use crate::webhook_client::{self, ClientConfig};

/// The group/version of the reviews sent.
pub const REVIEW_API_VERSION: &str = "apiextensions.k8s.io/v1";

/// `objects` (of `custom`, each in some version) in version `desired` (`group/version`), in
/// order. With conversion `None` only `apiVersion` changes; with a webhook, the objects not
/// in `desired` go to it in one review. `list` says the objects are a list's items (the error
/// messages then name the list kind, as kube's do).
pub async fn convert(
    custom: &CustomKind,
    mut objects: Vec<Value>,
    desired: &str,
    list: bool,
    actors: &KindActors,
) -> ApiResult<Vec<Value>> {
    let pending: Vec<usize> = (0..objects.len()).filter(|&i| api_version(&objects[i]) != desired).collect();
    if pending.is_empty() {
        return Ok(objects);
    }
    let client_config = match &custom.conversion {
        Conversion::None => {
            for i in pending {
                if let Some(map) = objects[i].as_object_mut() {
                    map.insert("apiVersion".into(), json!(desired));
                }
            }
            return Ok(objects);
        }
        Conversion::Webhook { client_config } => client_config,
    };
    let first = &objects[pending[0]];
    let kind = if list { custom.list_kind } else { first.get("kind").and_then(Value::as_str).unwrap_or("") };
    let gvk = format!("{}, Kind={kind}", api_version(first));
    let failed = |why: String| ApiError::InternalError(format!("conversion webhook for {gvk} failed: {why}"));
    let client = client(client_config).map_err(|e| failed(e.to_string()))?;
    let sent: Vec<Value> = pending.iter().map(|&i| objects[i].clone()).collect();
    let uid = uuid::Uuid::new_v4().to_string();
    let review = review_request(&uid, desired, &sent);
    let answer = webhook_client::call(&client, actors, &review, webhook_client::MAX_TIMEOUT)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let converted = converted_objects(&uid, answer).map_err(failed)?;
    let converted = check_converted(desired, &sent, converted, list)
        .map_err(|why| ApiError::InternalError(format!("conversion webhook for {gvk} {why}")))?;
    for (i, object) in pending.into_iter().zip(converted) {
        objects[i] = object;
    }
    Ok(objects)
}

/// The parsed `clientConfig`, kept per configuration so its TLS sessions are reused.
fn client(config: &Value) -> webhook_client::Result<Arc<ClientConfig>> {
    type Clients = Vec<(Value, Arc<ClientConfig>)>;
    static CLIENTS: LazyLock<Mutex<Clients>> = LazyLock::new(Default::default);
    /// Configurations kept; the oldest goes first.
    const KEPT: usize = 64;
    let mut clients = CLIENTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, client)) = clients.iter().find(|(c, _)| c == config) {
        return Ok(client.clone());
    }
    let client = Arc::new(ClientConfig::parse(config)?);
    if clients.len() >= KEPT {
        clients.remove(0);
    }
    clients.push((config.clone(), client.clone()));
    Ok(client)
}

fn api_version(obj: &Value) -> &str {
    obj.get("apiVersion").and_then(Value::as_str).unwrap_or("")
}

/// The `ConversionReview` kube-apiserver sends.
pub fn review_request(uid: &str, desired: &str, objects: &[Value]) -> Value {
    json!({
        "apiVersion": REVIEW_API_VERSION,
        "kind": "ConversionReview",
        "request": {"uid": uid, "desiredAPIVersion": desired, "objects": objects},
    })
}

/// The converted objects of a webhook's answer to the review `uid`, or why there are none
/// (kube's words: its kind, a missing response, another uid, a result other than `Success`).
pub fn converted_objects(uid: &str, mut answer: Value) -> Result<Vec<Value>, String> {
    let (api_version, kind) = (api_version(&answer), answer.get("kind").and_then(Value::as_str).unwrap_or(""));
    if api_version != REVIEW_API_VERSION || kind != "ConversionReview" {
        return Err(format!(
            "expected webhook response of {REVIEW_API_VERSION}, Kind=ConversionReview, got {api_version}, Kind={kind}"
        ));
    }
    let Some(response) = answer.get_mut("response").filter(|r| r.is_object()) else {
        return Err("no response provided".into());
    };
    let got = response.get("uid").and_then(Value::as_str).unwrap_or("");
    if got != uid {
        return Err(format!("expected response.uid={uid:?}, got {got:?}"));
    }
    let status = response.pointer("/result/status").and_then(Value::as_str).unwrap_or("");
    if status != "Success" {
        return match response.pointer("/result/message").and_then(Value::as_str).filter(|m| !m.is_empty()) {
            Some(message) => Err(message.to_string()),
            None => Err(format!("response.result.status was '{status}', not 'Success'")),
        };
    }
    match response.get_mut("convertedObjects").map(Value::take) {
        Some(Value::Array(objects)) => Ok(objects),
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(_) => Err("response.convertedObjects is not a list".into()),
    }
}

/// The converted objects checked against the objects `sent`, with each one's metadata put
/// back but for its labels and annotations; `Err` completes `conversion webhook for {gvk} ...`.
pub fn check_converted(desired: &str, sent: &[Value], converted: Vec<Value>, list: bool) -> Result<Vec<Value>, String> {
    if converted.len() != sent.len() {
        return Err(format!("returned {} objects, expected {}", converted.len(), sent.len()));
    }
    let at = |i: usize| if list { format!("converted object at index {i}") } else { format!("object at index {i}") };
    let mut out = Vec::with_capacity(sent.len());
    for (i, (original, mut object)) in sent.iter().zip(converted).enumerate() {
        let got = api_version(&object);
        if got != desired {
            return Err(format!(
                "returned invalid {}: invalid groupVersion (expected {desired}, received {got})",
                at(i)
            ));
        }
        let field = |obj: &Value, pointer: &str| obj.pointer(pointer).and_then(Value::as_str).unwrap_or("").to_string();
        for (pointer, what) in [
            ("/kind", "kind"),
            ("/metadata/name", "name"),
            ("/metadata/namespace", "namespace"),
            ("/metadata/uid", "UID"),
        ] {
            let (want, got) = (field(original, pointer), field(&object, pointer));
            if want != got {
                return Err(format!("returned invalid {}: must have the same {what}: {want} != {got}", at(i)));
            }
        }
        restore_metadata(original, &mut object)
            .map_err(|why| format!("returned invalid metadata in {}: {why}", at(i)))?;
        out.push(object);
    }
    Ok(out)
}

/// kube's `restoreObjectMeta`: `converted` gets `original`'s metadata, with the labels and
/// annotations the webhook answered (string maps; absent ones are removed).
fn restore_metadata(original: &Value, converted: &mut Value) -> Result<(), String> {
    let answered = match converted.get("metadata") {
        Some(Value::Object(m)) => m.clone(),
        None => return Err("missing metadata in converted object".into()),
        Some(_) => return Err("invalid metadata in converted object: not an object".into()),
    };
    let mut metadata = original.get("metadata").and_then(Value::as_object).cloned().unwrap_or_else(Map::new);
    for field in ["labels", "annotations"] {
        match answered.get(field) {
            None | Some(Value::Null) => {
                metadata.remove(field);
            }
            Some(Value::Object(values)) => {
                if let Some((key, _)) = values.iter().find(|(_, v)| !v.is_string()) {
                    return Err(format!("metadata.{field}[{key}] must be a string in converted object"));
                }
                metadata.insert(field.into(), Value::Object(values.clone()));
            }
            Some(_) => return Err(format!("invalid metadata.{field} in converted object: not a map")),
        }
    }
    if let Some(map) = converted.as_object_mut() {
        map.insert("metadata".into(), Value::Object(metadata));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn v1(name: &str, host: &str) -> Value {
        json!({"apiVersion": "net.example.com/v1", "kind": "Backend",
               "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                            "resourceVersion": "7", "labels": {"app": "web"}},
               "spec": {"host": host}})
    }

    fn answer(uid: &str, objects: Vec<Value>) -> Value {
        json!({"apiVersion": REVIEW_API_VERSION, "kind": "ConversionReview",
               "response": {"uid": uid, "convertedObjects": objects, "result": {"status": "Success"}}})
    }

    #[test]
    fn a_review_asks_for_the_desired_version_of_the_objects() {
        let review = review_request("u1", "net.example.com/v2", &[v1("a", "h:1")]);
        assert_eq!(review["apiVersion"], "apiextensions.k8s.io/v1");
        assert_eq!(review["kind"], "ConversionReview");
        assert_eq!(review["request"]["uid"], "u1");
        assert_eq!(review["request"]["desiredAPIVersion"], "net.example.com/v2");
        assert_eq!(review["request"]["objects"][0]["metadata"]["name"], "a");
    }

    #[test]
    fn answers_for_another_review_or_without_success_are_refused_in_kubes_words() {
        assert_eq!(converted_objects("u1", answer("u1", vec![json!({})])).unwrap().len(), 1);
        assert_eq!(
            converted_objects("u1", answer("u2", vec![])).unwrap_err(),
            r#"expected response.uid="u1", got "u2""#
        );
        let mut wrong = answer("u1", vec![]);
        wrong["apiVersion"] = json!("apiextensions.k8s.io/v1beta1");
        assert!(converted_objects("u1", wrong).unwrap_err().starts_with("expected webhook response of"));
        let mut failed = answer("u1", vec![]);
        failed["response"]["result"] = json!({"status": "Failure", "message": "cannot convert spec.host"});
        assert_eq!(converted_objects("u1", failed.clone()).unwrap_err(), "cannot convert spec.host");
        failed["response"]["result"] = json!({"status": "Failure"});
        assert_eq!(converted_objects("u1", failed).unwrap_err(), "response.result.status was 'Failure', not 'Success'");
        let none = json!({"apiVersion": REVIEW_API_VERSION, "kind": "ConversionReview"});
        assert_eq!(converted_objects("u1", none).unwrap_err(), "no response provided");
    }

    #[test]
    fn converted_objects_keep_their_metadata_but_for_labels_and_annotations() {
        let sent = [v1("a", "example.com:8080")];
        let mut back = json!({"apiVersion": "net.example.com/v2", "kind": "Backend",
            "metadata": {"name": "a", "namespace": "default", "uid": "uid-a", "resourceVersion": "99",
                         "annotations": {"converted": "yes"}},
            "spec": {"hostName": "example.com", "port": 8080}});
        let out = check_converted("net.example.com/v2", &sent, vec![back.clone()], false).unwrap();
        assert_eq!(out[0]["spec"], json!({"hostName": "example.com", "port": 8080}));
        assert_eq!(
            out[0]["metadata"],
            json!({"name": "a", "namespace": "default", "uid": "uid-a", "resourceVersion": "7",
                   "annotations": {"converted": "yes"}})
        );
        back["metadata"]["labels"] = json!({"n": 1});
        let e = check_converted("net.example.com/v2", &sent, vec![back], false).unwrap_err();
        assert_eq!(
            e,
            "returned invalid metadata in object at index 0: metadata.labels[n] must be a string in converted object"
        );
    }

    #[test]
    fn converted_objects_must_match_in_number_version_kind_and_identity() {
        let sent = [v1("a", "h:1"), v1("b", "h:2")];
        let v2 = |name: &str| {
            json!({"apiVersion": "net.example.com/v2", "kind": "Backend",
                   "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")}})
        };
        let check = |converted: Vec<Value>| check_converted("net.example.com/v2", &sent, converted, true);
        assert_eq!(check(vec![v2("a")]).unwrap_err(), "returned 1 objects, expected 2");
        assert_eq!(
            check(vec![v2("a"), v1("b", "h:2")]).unwrap_err(),
            "returned invalid converted object at index 1: invalid groupVersion (expected net.example.com/v2, received net.example.com/v1)"
        );
        assert_eq!(
            check(vec![v2("b"), v2("a")]).unwrap_err(),
            "returned invalid converted object at index 0: must have the same name: a != b"
        );
        let mut other_kind = v2("b");
        other_kind["kind"] = json!("Frontend");
        assert_eq!(
            check(vec![v2("a"), other_kind]).unwrap_err(),
            "returned invalid converted object at index 1: must have the same kind: Backend != Frontend"
        );
        assert_eq!(check(vec![v2("a"), v2("b")]).unwrap().len(), 2);
    }

    #[actix_rt::test]
    async fn objects_already_in_the_desired_version_are_not_sent() {
        // An unreachable webhook: nothing is sent, so nothing fails.
        let custom = CustomKind {
            crd_name: "backends.net.example.com".into(),
            group: "net.example.com",
            resource: "backends",
            list_kind: "BackendList",
            versions: Vec::new(),
            storage_version: "v1",
            conversion: Conversion::Webhook { client_config: json!({"url": "https://127.0.0.1:1/convert"}) },
            preserve_unknown_fields: false,
            terminating: false,
        };
        let objects = vec![v1("a", "h:1")];
        let out = convert(&custom, objects.clone(), "net.example.com/v1", false, &KindActors::default()).await;
        assert_eq!(out.unwrap(), objects);
        let e = convert(&custom, objects, "net.example.com/v2", false, &KindActors::default()).await.unwrap_err();
        assert_eq!(e.code(), 500);
        assert!(
            e.to_string().starts_with(
                r#"conversion webhook for net.example.com/v1, Kind=Backend failed: Post "https://127.0.0.1:1/convert": dial tcp 127.0.0.1:1: "#
            ),
            "{e}"
        );
    }
}
