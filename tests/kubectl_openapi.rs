//! End-to-end: real kubectl reads Flotilla's OpenAPI documents: `explain` of kinds and of
//! nested fields (v3, and v2 as protobuf with `--output plaintext-openapiv2`); create with
//! kubectl's default `--validate=strict`, which hands field validation to the server
//! (`?fieldValidation=Strict`) because the v3 documents list that parameter, and validates
//! `kind: List` files on its side against the v2 document; client-side `apply` building its
//! strategic merge patch from the documents' merge keys. Anonymous clients get no documents.

#![allow(clippy::unwrap_used)]

mod common;

use common::Up;

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\ndata:\n  color: blue\n";
const LIST: &str = "apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: one}, data: {a: b}}
- {apiVersion: v1, kind: ConfigMap, metadata: {name: two}}
";
const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: nginx:1.27}
      - {name: side, image: busybox}
";

#[test]
fn kubectl_explains_kinds_and_fields_and_validates_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };

    let strategy = up.kubectl(&["explain", "deployment.spec.strategy"]);
    for line in [
        "GROUP:      apps",
        "KIND:       Deployment",
        "FIELD: strategy <DeploymentStrategy>",
        "The deployment strategy to use to replace existing pods with new ones.",
        "rollingUpdate\t<RollingUpdateDeployment>",
    ] {
        assert!(strategy.contains(line), "{line:?} not in {strategy}");
    }
    let containers = up.kubectl(&["explain", "pods.spec.containers"]);
    for line in ["KIND:       Pod", "FIELD: containers <[]Container>", "image\t<string>", "ports\t<[]ContainerPort>"] {
        assert!(containers.contains(line), "{line:?} not in {containers}");
    }
    let configmap = up.kubectl(&["explain", "configmap"]);
    for line in ["ConfigMap holds configuration data for pods to consume.", "data\t<map[string]string>"] {
        assert!(configmap.contains(line), "{line:?} not in {configmap}");
    }
    let crd = up.kubectl(&["explain", "crd.spec.versions.schema"]);
    assert!(crd.contains("GROUP:      apiextensions.k8s.io"), "{crd}");
    let (ok, _, stderr) = up.try_kubectl(&["explain", "deployment.spec.nope"]);
    assert!(!ok && stderr.contains("field \"nope\" does not exist"), "{stderr}");
    let v2 = up.kubectl(&["explain", "deployment.spec.strategy", "--output", "plaintext-openapiv2"]);
    assert!(v2.contains("RESOURCE: strategy <Object>") && v2.contains("rollingUpdate\t<Object>"), "{v2}");

    // Default validation: kubectl finds fieldValidation in the document and asks the server.
    up.kubectl_eventually(&["get", "ns", "default"]);
    let (ok, stdout, stderr) = up.try_kubectl(&["create", "-f", &file("cm.yaml", CM), "-v=6"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "configmap/demo created");
    let post = "POST https://127.0.0.1";
    let strict = "/api/v1/namespaces/default/configmaps?fieldManager=kubectl-create&fieldValidation=Strict";
    assert!(stderr.lines().any(|l| l.contains(post) && l.contains(strict)), "{stderr}");

    // kubectl validates List files on its side, against the v2 document.
    let list = file("list.yaml", LIST);
    assert_eq!(up.kubectl(&["create", "-f", &list]), "configmap/one created\nconfigmap/two created\n");
    let bad = file("bad.yaml", &LIST.replace("data: {a: b}", "data: {a: b}, bogus: 1").replace("one", "three"));
    let (ok, _, stderr) = up.try_kubectl(&["create", "-f", &bad]);
    assert!(!ok && stderr.contains(r#"unknown field "bogus" in io.k8s.api.core.v1.ConfigMap"#), "{stderr}");

    // Client-side apply merges the containers list by name, as the document's merge keys say:
    // a replaced list would carry no $setElementOrder, and a failed v3 lookup would warn.
    up.kubectl(&["apply", "-f", &file("deploy.yaml", DEPLOY)]);
    let changed = file("deploy2.yaml", &DEPLOY.replace("nginx:1.27", "nginx:1.28"));
    let (_, _, stderr) = up.try_kubectl(&["apply", "-f", &changed, "-v=8"]);
    assert!(!stderr.contains("error calculating patch from openapi v3 spec"), "{stderr}");
    let patch = stderr.lines().find(|l| l.contains("\"Request Body\"") && l.contains("setElementOrder"));
    let patch = patch.unwrap_or_else(|| panic!("no strategic merge patch sent: {stderr}"));
    assert!(patch.contains(r#"\"$setElementOrder/containers\":[{\"name\":\"web\"},{\"name\":\"side\"}]"#), "{patch}");
    assert!(patch.contains(r#"\"containers\":[{\"image\":\"nginx:1.28\",\"name\":\"web\"}]"#), "{patch}");

    let (code, _) = up.anonymous_get("/openapi/v3").unwrap();
    assert_eq!(code, 401, "the documents are for authenticated clients only");
}
