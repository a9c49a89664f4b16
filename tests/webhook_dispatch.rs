//! End-to-end: admission webhooks through real kubectl on `flotilla up`, with a real HTTPS
//! webhook server in this process (actix-web, certificate from `api_gateway::pki`). A
//! validating webhook refuses configmaps labelled `deny=yes` (kubectl prints its message), a
//! mutating one labels every configmap (the label is stored), a DELETE webhook protects
//! configmaps labelled `protected=yes`, one on `pods/eviction` refuses evictions; with the
//! server stopped, `failurePolicy: Fail` refuses with a 500 naming the webhook. (The
//! dispatcher's finer points are covered in-process by `api-gateway/tests/admission_webhooks.rs`.)

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use base64::prelude::{Engine, BASE64_STANDARD};
use common::https::HttpsServer;
use common::Up;
use serde_json::{json, Value};

/// The three webhooks, by path.
async fn hook(path: web::Path<String>, review: web::Json<Value>) -> HttpResponse {
    let request = &review["request"];
    let labels = &request["object"]["metadata"]["labels"];
    let mut response = match path.as_str() {
        "validate" if labels["deny"] == "yes" => {
            json!({"allowed": false, "status": {"message": "the label deny=yes is not allowed"}})
        }
        "mutate" => {
            let patch = if labels.is_object() {
                json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}])
            } else {
                json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}])
            };
            json!({"allowed": true, "patchType": "JSONPatch", "patch": BASE64_STANDARD.encode(patch.to_string())})
        }
        "protect" if request["oldObject"]["metadata"]["labels"]["protected"] == "yes" => {
            json!({"allowed": false, "status": {"message": "this configmap is protected"}})
        }
        "evict" if request["subResource"] == "eviction" && request["object"]["kind"] == "Eviction" => {
            json!({"allowed": false, "status": {"message": "evictions are paused"}})
        }
        _ => json!({"allowed": true}),
    };
    response["uid"] = request["uid"].clone();
    HttpResponse::Ok()
        .json(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}))
}

fn configurations(port: u16, ca_pem: &str) -> String {
    let client = |path: &str| {
        format!("{{url: 'https://127.0.0.1:{port}/{path}', caBundle: {}}}", BASE64_STANDARD.encode(ca_pem))
    };
    let rules =
        |ops: &str| format!("[{{operations: [{ops}], apiGroups: [''], apiVersions: [v1], resources: [configmaps]}}]");
    format!(
        "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: guard}}
webhooks:
- {{name: deny.example.com, clientConfig: {validate}, rules: {write}, sideEffects: None, admissionReviewVersions: [v1]}}
- {{name: protect.example.com, clientConfig: {protect}, rules: {delete}, sideEffects: None, admissionReviewVersions: [v1]}}
- {{name: evict.example.com, clientConfig: {evict}, rules: {evictions}, sideEffects: None, admissionReviewVersions: [v1]}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {{name: labeller}}
webhooks:
- {{name: label.example.com, clientConfig: {mutate}, rules: {write}, sideEffects: None, admissionReviewVersions: [v1]}}
",
        validate = client("validate"),
        protect = client("protect"),
        evict = client("evict"),
        evictions = "[{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [pods/eviction]}]",
        mutate = client("mutate"),
        write = rules("CREATE, UPDATE"),
        delete = rules("DELETE"),
    )
}

fn configmap(name: &str, labels: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, labels: {{{labels}}}}}\ndata: {{k: v}}\n")
}

#[test]
fn webhooks_refuse_label_and_protect_configmaps_through_kubectl() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    let (mut webhook, ca_pem) = HttpsServer::with_own_ca(|routes| {
        routes.route("/{path}", web::post().to(hook));
    });
    up.wait_ready();
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    up.kubectl(&["apply", "-f", &write("hooks.yaml", &configurations(webhook.port(), &ca_pem))]);

    // The configurations reach the dispatcher through a watch: wait for the label.
    let deadline = Instant::now() + common::DEADLINE;
    for i in 0.. {
        let probe = write("probe.yaml", &configmap(&format!("probe-{i}"), ""));
        let created: Value = serde_json::from_str(&up.kubectl(&["create", "-f", &probe, "-o", "json"])).unwrap();
        if created["metadata"]["labels"]["mutated"] == "yes" {
            break;
        }
        assert!(Instant::now() < deadline, "the mutating webhook never acted");
        std::thread::sleep(Duration::from_millis(100));
    }

    up.kubectl(&["create", "-f", &write("web.yaml", &configmap("web", "app: web"))]);
    let web: Value = serde_json::from_str(&up.kubectl(&["get", "configmap", "web", "-o", "json"])).unwrap();
    assert_eq!(web["metadata"]["labels"], json!({"app": "web", "mutated": "yes"}));

    let (ok, _, stderr) = up.try_kubectl(&["create", "-f", &write("bad.yaml", &configmap("bad", "deny: 'yes'"))]);
    assert!(!ok);
    assert!(
        stderr.contains(r#"Error from server (Forbidden): error when creating "#)
            && stderr.contains(
                r#"admission webhook "deny.example.com" denied the request: the label deny=yes is not allowed"#
            ),
        "{stderr}"
    );

    up.kubectl(&["create", "-f", &write("kept.yaml", &configmap("kept", "protected: 'yes'"))]);
    let (ok, _, stderr) = up.try_kubectl(&["delete", "configmap", "kept"]);
    assert!(!ok);
    assert!(
        stderr.contains(
            r#"Error from server (Forbidden): admission webhook "protect.example.com" denied the request: this configmap is protected"#
        ),
        "{stderr}"
    );
    assert!(up.kubectl(&["delete", "configmap", "web"]).contains(r#"configmap "web" deleted"#));

    // Subresources go through admission too: a webhook on pods/eviction sees the Eviction.
    up.kubectl(&["run", "busy", "--image=registry.invalid/app:1"]);
    let eviction = r#"{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "busy"}}"#;
    let eviction = write("eviction.json", eviction);
    let (ok, _, stderr) =
        up.try_kubectl(&["create", "--raw", "/api/v1/namespaces/default/pods/busy/eviction", "-f", &eviction]);
    assert!(
        !ok && stderr.contains(r#"admission webhook "evict.example.com" denied the request: evictions are paused"#),
        "{stderr}"
    );
    up.kubectl(&["get", "pod", "busy"]);

    // The webhooks fail closed (failurePolicy defaults to Fail) once their server is gone.
    webhook.stop();
    let (ok, _, stderr) = up.try_kubectl(&["create", "-f", &write("late.yaml", &configmap("late", ""))]);
    assert!(!ok);
    assert!(
        stderr.contains(r#"Error from server (InternalError): error when creating "#)
            && stderr.contains(r#"Internal error occurred: failed calling webhook "label.example.com": failed to call webhook: Post "https://127.0.0.1:"#),
        "{stderr}"
    );
}
