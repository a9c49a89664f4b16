//! End-to-end: a CRD whose versions a conversion webhook converts, with real kubectl on
//! `flotilla up` and a real HTTPS webhook in this process (actix-web, a CA and serving
//! certificate made with rcgen by `api_gateway::pki`). v1 has `spec.host: "example.com:8080"`,
//! v2 `spec.hostName: "example.com"` and `spec.port: 8080`; v1 is stored.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::sync::Mutex;

use actix_web::{web, HttpResponse};
use base64::prelude::{Engine, BASE64_STANDARD};
use common::https::HttpsServer;
use common::Up;
use serde_json::{json, Value};

/// How many objects each ConversionReview the webhook answered carried, in order.
static REVIEWS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn reviews() -> Vec<usize> {
    REVIEWS.lock().unwrap().clone()
}

/// One object in the desired version: `host` <-> `hostName` + `port`.
fn convert_object(mut obj: Value, desired: &str) -> Value {
    let spec = obj["spec"].take();
    obj["spec"] = if desired.ends_with("/v2") {
        let host = spec["host"].as_str().unwrap_or("");
        let (name, port) = host.rsplit_once(':').unwrap_or((host, "80"));
        json!({"hostName": name, "port": port.parse::<u16>().unwrap_or(80)})
    } else {
        json!({"host": format!("{}:{}", spec["hostName"].as_str().unwrap_or(""), spec["port"])})
    };
    obj["apiVersion"] = json!(desired);
    obj
}

async fn convert(review: web::Json<Value>) -> HttpResponse {
    let request = &review["request"];
    let desired = request["desiredAPIVersion"].as_str().unwrap_or("");
    let objects = request["objects"].as_array().cloned().unwrap_or_default();
    REVIEWS.lock().unwrap().push(objects.len());
    let converted: Vec<Value> = objects.into_iter().map(|o| convert_object(o, desired)).collect();
    HttpResponse::Ok().json(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "response": {"uid": request["uid"], "convertedObjects": converted, "result": {"status": "Success"}},
    }))
}

fn crd(port: u16, ca_pem: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: backends.net.example.com}}
spec:
  group: net.example.com
  scope: Namespaced
  names: {{plural: backends, singular: backend, kind: Backend}}
  conversion:
    strategy: Webhook
    webhook:
      conversionReviewVersions: [v1]
      clientConfig:
        url: https://127.0.0.1:{port}/convert
        caBundle: {ca}
  versions:
  - name: v1
    served: true
    storage: true
    additionalPrinterColumns:
    - {{name: Host, type: string, jsonPath: .spec.host}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {{type: object, properties: {{host: {{type: string}}}}}}
  - name: v2
    served: true
    storage: false
    additionalPrinterColumns:
    - {{name: Host-Name, type: string, jsonPath: .spec.hostName}}
    - {{name: Port, type: integer, jsonPath: .spec.port}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {{type: object, properties: {{hostName: {{type: string}}, port: {{type: integer}}}}}}
",
        ca = BASE64_STANDARD.encode(ca_pem)
    )
}

const V2_WEB: &str = "apiVersion: net.example.com/v2
kind: Backend
metadata: {name: web}
spec: {hostName: example.com, port: 8080}
";

const V1_API: &str = "apiVersion: net.example.com/v1
kind: Backend
metadata: {name: api}
spec: {host: 'api.example.com:9090'}
";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// `{name: spec}` of a list's items.
fn specs(list: &Value) -> Vec<(String, Value)> {
    let items = list["items"].as_array().unwrap();
    items.iter().map(|o| (o["metadata"]["name"].as_str().unwrap().to_string(), o["spec"].clone())).collect()
}

#[test]
fn a_conversion_webhook_converts_writes_reads_lists_and_watches_between_versions() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    let (mut webhook, ca_pem) = HttpsServer::with_own_ca(|routes| {
        routes.route("/convert", web::post().to(convert));
    });
    up.wait_ready();
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };

    let crd = write("crd.yaml", &crd(webhook.port(), &ca_pem));
    up.kubectl(&["apply", "-f", &crd]);
    up.kubectl(&["wait", "--for=condition=Established", "crd/backends.net.example.com", "--timeout=10s"]);

    // Written through v2, stored as v1 by the webhook; read back through both.
    let web = write("web.yaml", V2_WEB);
    assert!(up.kubectl(&["create", "-f", &web]).contains("backend.net.example.com/web created"));
    assert!(!reviews().is_empty(), "the webhook converted nothing");
    let v1 = json(&up.kubectl(&["get", "backends.v1.net.example.com", "web", "-o", "json"]));
    assert_eq!(v1["apiVersion"], "net.example.com/v1");
    assert_eq!(v1["spec"], json!({"host": "example.com:8080"}));
    let v2 = json(&up.kubectl(&["get", "backends.v2.net.example.com", "web", "-o", "json"]));
    assert_eq!(v2["apiVersion"], "net.example.com/v2");
    assert_eq!(v2["spec"], json!({"hostName": "example.com", "port": 8080}));
    assert_eq!(v2["metadata"]["uid"], v1["metadata"]["uid"]);
    assert_eq!(v2["metadata"]["resourceVersion"], v1["metadata"]["resourceVersion"]);

    // Lists through both versions; a v2 list page goes to the webhook in one review.
    let api = write("api.yaml", V1_API);
    up.kubectl(&["create", "-f", &api]);
    let before = reviews().len();
    let list = json(&up.kubectl(&["get", "backends.v2.net.example.com", "-o", "json"]));
    assert_eq!(
        specs(&list),
        [
            ("api".to_string(), json!({"hostName": "api.example.com", "port": 9090})),
            ("web".to_string(), json!({"hostName": "example.com", "port": 8080})),
        ]
    );
    assert_eq!(reviews()[before..], [2], "one review for the page");
    let list = json(&up.kubectl(&["get", "backends.v1.net.example.com", "-o", "json"]));
    assert_eq!(
        specs(&list),
        [
            ("api".to_string(), json!({"host": "api.example.com:9090"})),
            ("web".to_string(), json!({"host": "example.com:8080"})),
        ]
    );
    // kubectl's table shows v2's printer columns over converted objects.
    let table = up.kubectl(&["get", "backends.v2.net.example.com"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "HOST-NAME", "PORT"], "{table}");
    assert!(table.lines().any(|l| l.split_whitespace().eq(["api", "api.example.com", "9090"])), "{table}");

    // A watch through v2: the first events and a later change arrive converted.
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let watch_path = |query: &str| format!("/apis/net.example.com/v2/namespaces/default/backends?watch=true&{query}");
    let initial = up.kubectl(&["get", "--raw", &watch_path("timeoutSeconds=1")]);
    let added: Vec<Value> = initial.lines().filter(|l| !l.trim().is_empty()).map(json).collect();
    assert_eq!(added.len(), 2, "{initial}");
    assert!(added.iter().all(|e| e["type"] == "ADDED" && e["object"]["spec"]["port"].is_u64()), "{initial}");
    let watcher = Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()))
        .arg("--kubeconfig")
        .arg(dir.path().join("kubeconfig"))
        .arg("--cache-dir")
        .arg(dir.path().join("kube-cache"))
        .args(["get", "--raw", &watch_path(&format!("resourceVersion={rv}&timeoutSeconds=3"))])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let db = write("db.yaml", &V1_API.replace("name: api", "name: db").replace("api.example.com:9090", "db:5432"));
    up.kubectl(&["create", "-f", &db]);
    let out = watcher.wait_with_output().unwrap();
    let events = String::from_utf8(out.stdout).unwrap();
    let events: Vec<Value> = events.lines().filter(|l| !l.trim().is_empty()).map(json).collect();
    let created = events.iter().find(|e| e["object"]["metadata"]["name"] == "db").unwrap_or_else(|| {
        panic!("no event for db: {events:?} {}", String::from_utf8_lossy(&out.stderr));
    });
    assert_eq!(created["type"], "ADDED");
    assert_eq!(created["object"]["apiVersion"], "net.example.com/v2");
    assert_eq!(created["object"]["spec"], json!({"hostName": "db", "port": 5432}));

    // Without the webhook, reads through v2 and writes through v2 fail with a 500 naming it;
    // v1, the stored version, needs no conversion.
    webhook.stop();
    let (ok, _, stderr) = up.try_kubectl(&["get", "backends.v2.net.example.com", "web"]);
    assert!(!ok);
    assert!(stderr.contains("InternalError"), "{stderr}");
    assert!(stderr.contains("conversion webhook for net.example.com/v1, Kind=Backend failed"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{}", webhook.port())), "{stderr}");
    assert!(stderr.contains("connection refused"), "{stderr}");
    let (ok, _, stderr) = up.try_kubectl(&["get", "backends.v2.net.example.com"]);
    assert!(!ok);
    assert!(stderr.contains("conversion webhook for net.example.com/v1, Kind=BackendList failed"), "{stderr}");
    let other = write("other.yaml", &V2_WEB.replace("name: web", "name: other"));
    let (ok, _, stderr) = up.try_kubectl(&["create", "-f", &other]);
    assert!(!ok);
    assert!(stderr.contains("conversion webhook for net.example.com/v2, Kind=Backend failed"), "{stderr}");
    let v1 = json(&up.kubectl(&["get", "backends.v1.net.example.com", "web", "-o", "json"]));
    assert_eq!(v1["spec"], json!({"host": "example.com:8080"}));
}
