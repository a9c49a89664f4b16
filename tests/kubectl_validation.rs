//! End-to-end: real kubectl against `flotilla up` sees kube-apiserver's decoding, defaulting
//! and validation: a selector that does not match its template is 422 naming the field, a
//! string where an integer goes is 400 in Go's words, unknown fields fail under
//! `fieldValidation=Strict` (kubectl's default `--validate=strict`) and are warnings under
//! `--validate=warn`, defaults show on reads and keep `apply` `unchanged`, a Secret's
//! `stringData` reads back as base64 `data`, and selectors are immutable.

#![allow(clippy::unwrap_used)]

mod common;

use common::Up;
use serde_json::Value;

const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx:1.27, ports: [{containerPort: 80}]}]
";
const SECRET: &str = "apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: hunter2}
";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn kubectl_sees_kube_apiserver_decoding_defaulting_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    up.kubectl_eventually(&["get", "ns", "default"]);

    // A selector that does not select the template's labels: 422, the field named.
    let mismatch = file("mismatch.yaml", &DEPLOY.replace("labels: {app: web}", "labels: {app: api}"));
    let (ok, _, stderr) = up.try_kubectl(&["create", "-f", &mismatch]);
    assert!(!ok);
    assert!(
        stderr.contains(r#"The Deployment "web" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{"app":"api"}: `selector` does not match template `labels`"#),
        "{stderr}"
    );

    // A string where an int32 goes: 400 in Go's json words.
    let three = file("three.yaml", &DEPLOY.replace("spec:\n  selector", "spec:\n  replicas: three\n  selector"));
    let (ok, _, stderr) = up.try_kubectl(&["create", "-f", &three]);
    assert!(!ok);
    assert!(
        stderr.contains(r#"Error from server (BadRequest): error when creating "#)
            && stderr.contains(r#"Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"#),
        "{stderr}"
    );

    // Typos: kubectl's default validation sends fieldValidation=Strict; warn lets them through.
    let typo = file("typo.yaml", &DEPLOY.replace("containerPort: 80}", "containerPort: 80, hostPortt: 8}"));
    for validate in [&["--validate=strict"][..], &[]] {
        let (ok, _, stderr) = up.try_kubectl(&[&["apply", "-f", &typo], validate].concat());
        assert!(!ok);
        assert!(
            stderr.contains(
                r#"strict decoding error: unknown field "spec.template.spec.containers[0].ports[0].hostPortt""#
            ),
            "{stderr}"
        );
    }
    let (ok, stdout, stderr) = up.try_kubectl(&["apply", "-f", &typo, "--validate=warn"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "deployment.apps/web created");
    assert!(
        stderr.contains(r#"Warning: unknown field "spec.template.spec.containers[0].ports[0].hostPortt""#),
        "{stderr}"
    );

    // Defaults show on reads, and a second apply of the manifest changes nothing.
    let d = json(&up.kubectl(&["get", "deploy", "web", "-o", "json"]));
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(
        spec["strategy"],
        json(r#"{"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}"#)
    );
    assert_eq!(
        (spec["revisionHistoryLimit"].as_i64(), spec["progressDeadlineSeconds"].as_i64()),
        (Some(10), Some(600))
    );
    let pod = &spec["template"]["spec"];
    assert_eq!((pod["restartPolicy"].as_str(), pod["dnsPolicy"].as_str()), (Some("Always"), Some("ClusterFirst")));
    let container = &pod["containers"][0];
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
    assert_eq!(container["ports"][0], json(r#"{"containerPort": 80, "protocol": "TCP"}"#), "the typo was dropped");
    let deploy = file("deploy.yaml", DEPLOY);
    assert_eq!(up.kubectl(&["apply", "-f", &deploy]).trim(), "deployment.apps/web configured");
    assert_eq!(up.kubectl(&["apply", "-f", &deploy]).trim(), "deployment.apps/web unchanged");

    // A PUT of the object as read writes nothing, defaults left out or not.
    let mut read = json(&up.kubectl(&["get", "deploy", "web", "-o", "json"]));
    read["metadata"]["annotations"].as_object_mut().unwrap().clear();
    up.kubectl(&["replace", "-f", &file("plain.json", &read.to_string())]);
    let mut bare = json(&up.kubectl(&["get", "deploy", "web", "-o", "json"]));
    let rv = bare["metadata"]["resourceVersion"].clone();
    assert_eq!(
        up.kubectl(&["replace", "-f", &file("same.json", &bare.to_string())]).trim(),
        "deployment.apps/web replaced"
    );
    bare["spec"].as_object_mut().unwrap().remove("strategy");
    bare["metadata"].as_object_mut().unwrap().remove("resourceVersion");
    assert_eq!(
        up.kubectl(&["replace", "-f", &file("bare.json", &bare.to_string())]).trim(),
        "deployment.apps/web replaced"
    );
    let after = json(&up.kubectl(&["get", "deploy", "web", "-o", "json"]));
    assert_eq!(after["metadata"]["resourceVersion"], rv, "an unchanged PUT keeps the resourceVersion");
    assert_eq!(after["spec"]["strategy"]["type"], "RollingUpdate");
    up.kubectl(&["apply", "-f", &deploy]);

    // Selectors are immutable; patches are decoded as strictly as the client asks.
    let moved = file("moved.yaml", &DEPLOY.replace("app: web", "app: api"));
    let (ok, _, stderr) = up.try_kubectl(&["apply", "-f", &moved]);
    assert!(
        !ok && stderr.contains("spec.selector: Invalid value: ") && stderr.contains("field is immutable"),
        "{stderr}"
    );
    let (ok, _, stderr) =
        up.try_kubectl(&["patch", "deploy", "web", "--type=merge", "-p", r#"{"spec":{"replicaz":3}}"#]);
    assert!(ok && stderr.contains(r#"Warning: unknown field "spec.replicaz""#), "{stderr}");
    let (ok, _, stderr) =
        up.try_kubectl(&["patch", "deploy", "web", "--type=merge", "-p", r#"{"spec":{"replicas":-1}}"#]);
    assert!(!ok && stderr.contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"), "{stderr}");
    let typo_again = file("typo2.yaml", &DEPLOY.replace("image: nginx:1.27", "image: nginx:1.28, imagePullPolicyy: x"));
    let (ok, _, stderr) = up.try_kubectl(&["apply", "-f", &typo_again]);
    assert!(
        !ok && stderr.contains("The request is invalid: patch: Invalid value: ")
            && stderr.contains(
                r#"strict decoding error: unknown field "spec.template.spec.containers[0].imagePullPolicyy""#
            ),
        "{stderr}"
    );

    // Raw requests: no fieldValidation is Warn; an unknown value is refused as kube does.
    let raw = file("cm.json", r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"raw"},"datta":{"a":"1"}}"#);
    let (ok, _, stderr) = up.try_kubectl(&["create", "--raw", "/api/v1/namespaces/default/configmaps", "-f", &raw]);
    assert!(ok && stderr.contains(r#"Warning: unknown field "datta""#), "{stderr}");
    let uri = "/api/v1/namespaces/default/configmaps?fieldValidation=Loose";
    let (ok, _, stderr) = up.try_kubectl(&["create", "--raw", uri, "-f", &raw]);
    assert!(
        !ok && stderr.contains(
            r#"fieldValidation: Unsupported value: "Loose": supported values: "", "Ignore", "Strict", "Warn""#
        ),
        "{stderr}"
    );
    let bad_key = file("badkey.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keys}\ndata: {'a/b': x}\n");
    let (ok, _, stderr) = up.try_kubectl(&["create", "-f", &bad_key]);
    assert!(
        !ok && stderr
            .contains(r#"data[a/b]: Invalid value: "a/b": a valid config key must consist of alphanumeric characters"#),
        "{stderr}"
    );

    // A Secret's stringData reads back as base64 data.
    let secret = file("secret.yaml", SECRET);
    assert_eq!(up.kubectl(&["create", "-f", &secret]).trim(), "secret/creds created");
    let s = json(&up.kubectl(&["get", "secret", "creds", "-o", "json"]));
    assert_eq!(s["data"], json(r#"{"password": "aHVudGVyMg=="}"#));
    assert_eq!(s["type"], "Opaque");
    assert!(s.get("stringData").is_none(), "{s}");
    up.stop();
}
