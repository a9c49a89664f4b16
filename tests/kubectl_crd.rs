//! End-to-end: CustomResourceDefinitions with real kubectl on `flotilla up`: the LoadTest
//! flow of "Kubernetes: Up and Running" (group beta.kuar.com), schema validation, pruning,
//! defaults and a CEL rule, two served versions, the scale and status subresources,
//! deleting the CRD, and 50 CRDs established at once.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Up, DEADLINE};
use serde_json::Value;

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: loadtests.beta.kuar.com
spec:
  group: beta.kuar.com
  scope: Namespaced
  names:
    plural: loadtests
    singular: loadtest
    kind: LoadTest
    shortNames: [lt]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
    additionalPrinterColumns: &columns
    - {name: Service, type: string, jsonPath: .spec.service}
    - {name: RPS, type: integer, jsonPath: .spec.requestsPerSecond}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema: &schema
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "self.scheme == 'http' || self.scheme == 'https'"
              message: scheme must be http or https
            properties:
              service: {type: string}
              scheme: {type: string, default: http}
              requestsPerSecond: {type: integer, minimum: 1}
              replicas: {type: integer, default: 1}
              paths: {type: array, items: {type: string}}
          status:
            type: object
            properties:
              replicas: {type: integer}
  - name: v2
    served: true
    storage: false
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
    additionalPrinterColumns: *columns
    schema: *schema
"#;

const LOADTEST: &str = "apiVersion: beta.kuar.com/v1
kind: LoadTest
metadata: {name: load}
spec:
  service: my-service
  requestsPerSecond: 1000
  paths: [/index.html, /login.html]
";

struct Files(tempfile::TempDir);

impl Files {
    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Polls until `check` holds, failing after `deadline`.
fn eventually(deadline: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !check() {
        assert!(Instant::now() < end, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_loadtest_crd_is_served_validated_versioned_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    let files = Files(tempfile::tempdir().unwrap());

    // Before the CRD: kubectl does not know the resource.
    let (ok, _, stderr) = up.try_kubectl(&["get", "loadtests"]);
    assert!(!ok);
    assert!(stderr.contains(r#"the server doesn't have a resource type "loadtests""#), "{stderr}");

    let crd = files.write("crd.yaml", CRD);
    let out = up.kubectl(&["apply", "-f", &crd]);
    assert!(out.contains("customresourcedefinition.apiextensions.k8s.io/loadtests.beta.kuar.com created"), "{out}");
    up.kubectl(&["wait", "--for=condition=Established", "crd/loadtests.beta.kuar.com", "--timeout=10s"]);
    let (_, stdout, stderr) = up.try_kubectl(&["get", "loadtests"]);
    assert!(stderr.contains("No resources found in default namespace."), "{stdout} {stderr}");

    // A LoadTest, listed by its short name with the printer columns; defaults filled in.
    let lt = files.write("lt.yaml", LOADTEST);
    assert!(up.kubectl(&["apply", "-f", &lt]).contains("loadtest.beta.kuar.com/load created"));
    let table = up.kubectl(&["get", "lt"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SERVICE", "RPS", "AGE"], "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with("load "), "{table}");
    assert!(table.contains("my-service") && table.contains("1000"), "{table}");
    let obj = json(&up.kubectl(&["get", "lt", "load", "-o", "json"]));
    assert_eq!(obj["spec"]["scheme"], "http");
    assert_eq!(obj["spec"]["replicas"], 1);
    assert_eq!(obj["metadata"]["generation"], 1);
    assert_eq!(up.kubectl(&["apply", "-f", &lt]).trim(), "loadtest.beta.kuar.com/load unchanged");

    // Schema: a wrong type is a 422 naming the field; the CEL rule holds.
    let bad = files.write("bad.yaml", &LOADTEST.replace("requestsPerSecond: 1000", "requestsPerSecond: fast"));
    let (ok, _, stderr) = up.try_kubectl(&["apply", "-f", &bad, "--validate=false"]);
    assert!(!ok);
    assert!(stderr.contains("spec.requestsPerSecond"), "{stderr}");
    assert!(stderr.contains("is invalid"), "{stderr}");
    let ftp = files
        .write("ftp.yaml", &LOADTEST.replace("name: load", "name: ftp").replace("  paths:", "  scheme: ftp\n  paths:"));
    let (ok, _, stderr) = up.try_kubectl(&["apply", "-f", &ftp]);
    assert!(!ok);
    assert!(stderr.contains("scheme must be http or https"), "{stderr}");

    // Unknown fields are pruned (a client that does not validate: fieldValidation Ignore).
    let extra = files.write(
        "extra.yaml",
        &LOADTEST.replace("name: load", "name: extra").replace("  paths:", "  color: red\n  paths:"),
    );
    up.kubectl(&["apply", "-f", &extra, "--validate=false"]);
    let obj = json(&up.kubectl(&["get", "lt", "extra", "-o", "json"]));
    assert!(obj["spec"].get("color").is_none(), "{obj}");
    assert_eq!(obj["spec"]["service"], "my-service");

    // Both versions serve every object; one created through v2 is read through v1.
    let v2 = files
        .write("v2.yaml", &LOADTEST.replace("beta.kuar.com/v1", "beta.kuar.com/v2").replace("name: load", "name: two"));
    up.kubectl(&["apply", "-f", &v2]);
    let through_v1 = json(&up.kubectl(&["get", "loadtests.v1.beta.kuar.com", "two", "-o", "json"]));
    assert_eq!(through_v1["apiVersion"], "beta.kuar.com/v1");
    let through_v2 = json(&up.kubectl(&["get", "loadtests.v2.beta.kuar.com", "load", "-o", "json"]));
    assert_eq!(through_v2["apiVersion"], "beta.kuar.com/v2");
    assert_eq!(through_v2["spec"]["service"], "my-service");

    // Scale and status: kubectl scale writes spec.replicas; status writes leave generation.
    assert!(up.kubectl(&["scale", "lt", "load", "--replicas=3"]).contains("scaled"));
    let obj = json(&up.kubectl(&["get", "lt", "load", "-o", "json"]));
    assert_eq!(obj["spec"]["replicas"], 3);
    assert_eq!(obj["metadata"]["generation"], 2);
    up.kubectl(&["patch", "lt", "load", "--subresource=status", "--type=merge", "-p", r#"{"status":{"replicas":3}}"#]);
    let obj = json(&up.kubectl(&["get", "lt", "load", "-o", "json"]));
    assert_eq!(obj["status"]["replicas"], 3);
    assert_eq!(obj["metadata"]["generation"], 2);
    // Strategic merge patches are for built-in kinds only (415, as upstream).
    let (ok, _, stderr) =
        up.try_kubectl(&["patch", "lt", "load", "--type=strategic", "-p", r#"{"spec":{"service":"x"}}"#]);
    assert!(!ok);
    assert!(stderr.contains("unknown format") || stderr.contains("415"), "{stderr}");
    up.kubectl(&["patch", "lt", "load", "--type=merge", "-p", r#"{"spec":{"service":"other"}}"#]);
    assert_eq!(json(&up.kubectl(&["get", "lt", "load", "-o", "json"]))["spec"]["service"], "other");

    // explain reads the CRD's schema from OpenAPI.
    let explain = up.kubectl(&["explain", "loadtests.spec"]);
    assert!(explain.contains("requestsPerSecond"), "{explain}");

    // Deleting the CRD deletes every LoadTest and the resource leaves discovery.
    up.kubectl(&["delete", "-f", &crd, "--timeout=20s"]);
    let (ok, _, stderr) = up.try_kubectl(&["get", "--raw", "/apis/beta.kuar.com/v1/loadtests"]);
    assert!(!ok && stderr.contains("NotFound"), "{stderr}");
    // kubectl trusts its discovery cache for hours (kube-apiserver would 404 as above); a
    // fresh kubectl finds no such resource.
    std::fs::remove_dir_all(dir.path().join("kube-cache")).unwrap();
    let (ok, _, stderr) = up.try_kubectl(&["get", "loadtests"]);
    assert!(!ok, "loadtests still served");
    assert!(stderr.contains(r#"the server doesn't have a resource type "loadtests""#), "{stderr}");
    let resources = up.kubectl(&["api-resources"]);
    assert!(!resources.contains("beta.kuar.com"), "{resources}");
    // Created again, the CRD serves no leftover objects.
    up.kubectl(&["apply", "-f", &crd]);
    up.kubectl(&["wait", "--for=condition=Established", "crd/loadtests.beta.kuar.com", "--timeout=10s"]);
    let (_, stdout, stderr) = up.try_kubectl(&["get", "loadtests", "-A"]);
    assert!(stderr.contains("No resources found"), "{stdout} {stderr}");
}

fn widget_crd(i: usize) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: widgets{i}.example.com}}
spec:
  group: example.com
  scope: Cluster
  names: {{plural: widgets{i}, kind: Widget{i}}}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}
---
"
    )
}

#[test]
fn fifty_crds_at_once_are_all_established_with_their_actors() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    let files = Files(tempfile::tempdir().unwrap());
    let all: String = (0..50).map(widget_crd).collect();
    let path = files.write("crds.yaml", &all);
    let created = Instant::now();
    up.kubectl(&["apply", "-f", &path]);
    let established = || {
        let list = json(&up.kubectl(&["get", "crd", "-o", "json"]));
        let items = list["items"].as_array().unwrap().clone();
        items.len() == 50
            && items.iter().all(|crd| {
                crd["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Established" && c["status"] == "True"))
            })
    };
    eventually(DEADLINE, "50 CRDs established", established);
    eprintln!("50 CRDs established {:?} after the apply", created.elapsed());
    // Each has its own kind actor, shown in the metrics.
    let metrics = up.kubectl(&["get", "--raw", "/metrics"]);
    let actors = metrics
        .lines()
        .filter(|l| l.starts_with("flotilla_kind_actors{") && l.contains(".example.com") && l.ends_with(" 1"))
        .count();
    assert_eq!(actors, 50, "{metrics}");
    // And serves its resource.
    let widget = files.write("w.yaml", "apiVersion: example.com/v1\nkind: Widget7\nmetadata: {name: w}\nsize: 3\n");
    up.kubectl(&["apply", "-f", &widget]);
    assert_eq!(json(&up.kubectl(&["get", "widgets7", "w", "-o", "json"]))["size"], 3);
}

const PORTS_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gateways.ssa.example.com}
spec:
  group: ssa.example.com
  scope: Namespaced
  names: {plural: gateways, kind: Gateway}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    port: {type: integer}
"#;

fn gateway(ports: &str) -> String {
    format!("apiVersion: ssa.example.com/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  ports: {ports}\n")
}

#[test]
fn server_side_apply_merges_custom_lists_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    let files = Files(tempfile::tempdir().unwrap());
    up.kubectl(&["apply", "-f", &files.write("crd.yaml", PORTS_CRD)]);
    up.kubectl(&["wait", "--for=condition=Established", "crd/gateways.ssa.example.com", "--timeout=10s"]);

    // Two managers, one port each: the list merges by name.
    let http = files.write("a.yaml", &gateway("[{name: http, port: 80}]"));
    let out = up.kubectl(&["apply", "--server-side", "--field-manager=a", "-f", &http]);
    assert_eq!(out.trim(), "gateway.ssa.example.com/gw serverside-applied");
    let metrics = files.write("b.yaml", &gateway("[{name: metrics, port: 9090}]"));
    up.kubectl(&["apply", "--server-side", "--field-manager=b", "-f", &metrics]);
    let gw = json(&up.kubectl(&["get", "gateway", "gw", "-o", "json", "--show-managed-fields"]));
    assert_eq!(gw["spec"]["ports"], json(r#"[{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}]"#));
    let fields = |manager: &str| {
        let entries = gw["metadata"]["managedFields"].as_array().unwrap();
        entries.iter().find(|e| e["manager"] == manager).unwrap()["fieldsV1"]["f:spec"]["f:ports"].clone()
    };
    assert_eq!(fields("a"), json(r#"{"k:{\"name\":\"http\"}": {".": {}, "f:name": {}, "f:port": {}}}"#));
    assert_eq!(fields("b"), json(r#"{"k:{\"name\":\"metrics\"}": {".": {}, "f:name": {}, "f:port": {}}}"#));

    // b changing the port of a's item conflicts, unless forced.
    let take = files.write("take.yaml", &gateway("[{name: metrics, port: 9090}, {name: http, port: 8080}]"));
    let (ok, _, stderr) = up.try_kubectl(&["apply", "--server-side", "--field-manager=b", "-f", &take]);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains(r#"conflict with "a""#) && stderr.contains(r#".spec.ports[name="http"].port"#), "{stderr}");
    let gw = json(&up.kubectl(&["get", "gateway", "gw", "-o", "json"]));
    assert_eq!(gw["spec"]["ports"][0]["port"], 80, "a refused apply changes nothing");
    up.kubectl(&["apply", "--server-side", "--field-manager=b", "--force-conflicts", "-f", &take]);
    let gw = json(&up.kubectl(&["get", "gateway", "gw", "-o", "json"]));
    assert_eq!(gw["spec"]["ports"], json(r#"[{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}]"#));
}
