//! End-to-end: real kubectl changes objects on `flotilla up` with every PATCH format and
//! the subresources: client-side `apply` (created / unchanged / configured), `label`,
//! `annotate`, `edit`, `patch` (strategic, merge, JSON), `scale` (the `scale`
//! subresource), `--subresource=status`, and server-side apply with its conflicts.

#![allow(clippy::unwrap_used)]

mod common;

use common::Up;
use serde_json::Value;

const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports: [{containerPort: 80}]
        env: [{name: A, value: '1'}]
";
const SERVICE: &str = "apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
";
const SECRET: &str = "apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: hunter2}
";
const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\ndata:\n  color: blue\n";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

struct Files(tempfile::TempDir);

impl Files {
    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

#[test]
fn kubectl_applies_patches_scales_and_edits_objects() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files(tempfile::tempdir().unwrap());
    let up = Up::start(dir.path());
    up.wait_ready();
    let get = |args: &[&str]| json(&up.kubectl(&[args, &["-o", "json"]].concat()));

    // Client-side apply: a three-way strategic merge patch against the last applied state.
    let deploy = files.write("deploy.yaml", DEPLOY);
    assert_eq!(up.kubectl(&["apply", "-f", &deploy]).trim(), "deployment.apps/web created");
    assert_eq!(up.kubectl(&["apply", "-f", &deploy]).trim(), "deployment.apps/web unchanged");
    let changed = files.write("deploy2.yaml", &DEPLOY.replace("nginx:1.27", "nginx:1.28"));
    assert_eq!(up.kubectl(&["apply", "-f", &changed]).trim(), "deployment.apps/web configured");
    let d = get(&["get", "deployment", "web"]);
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.28");
    assert_eq!(container["ports"][0]["containerPort"], 80, "the strategic merge kept the rest of the container");
    assert_eq!(d["metadata"]["generation"], 2, "a spec change bumps the generation");
    for (file, text) in [("svc.yaml", SERVICE), ("secret.yaml", SECRET), ("cm.yaml", CM)] {
        let path = files.write(file, text);
        assert!(up.kubectl(&["apply", "-f", &path]).trim().ends_with(" created"));
        // kube-apiserver folds a Secret's stringData into data, so kubectl always finds it to
        // send again (kubernetes/kubernetes#87736): "configured", though nothing changes.
        let again = if file == "secret.yaml" { " configured" } else { " unchanged" };
        assert!(up.kubectl(&["apply", "-f", &path]).trim().ends_with(again), "{file}");
    }

    // describe reads each kind (and the events about it, by field selector).
    let described = up.kubectl(&["describe", "deployment", "web"]);
    for line in
        ["Name:                   web", "Namespace:              default", "Image:      nginx:1.28", "NewReplicaSet:"]
    {
        assert!(described.contains(line), "describe deployment lacks {line:?}:\n{described}");
    }
    assert!(described.contains("Replicas:") && described.contains("2 desired"), "{described}");
    let described = up.kubectl(&["describe", "service", "web"]);
    assert!(described.contains("http  80/TCP") && described.contains("8080/TCP"), "{described}");
    let described = up.kubectl(&["describe", "secret", "creds"]);
    assert!(described.contains("password:  7 bytes"), "{described}");
    let described = up.kubectl(&["describe", "cm", "demo"]);
    assert!(described.contains("color:\n----\nblue"), "{described}");

    // Strategic merge patches merge containers by name; JSON and merge patches too.
    let patch = r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"B","value":"2"}]}]}}}}"#;
    assert_eq!(up.kubectl(&["patch", "deployment", "web", "-p", patch]).trim(), "deployment.apps/web patched");
    let env = &get(&["get", "deployment", "web"])["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(env.as_array().unwrap().len(), 2, "env merged by name: {env}");
    up.kubectl(&["patch", "cm", "demo", "--type=merge", "-p", r#"{"data":{"size":"xl"}}"#]);
    up.kubectl(&["patch", "cm", "demo", "--type=json", "-p", r#"[{"op":"remove","path":"/data/color"}]"#]);
    assert_eq!(get(&["get", "cm", "demo"])["data"], json(r#"{"size":"xl"}"#));
    let (ok, _, stderr) = up.try_kubectl(&[
        "patch",
        "cm",
        "demo",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/data/size","value":"s"}]"#,
    ]);
    assert!(!ok && stderr.contains("invalid"), "a failed test op is refused: {stderr}");
    assert_eq!(
        up.kubectl(&["patch", "cm", "demo", "--type=merge", "-p", r#"{"data":{"size":"xl"}}"#]).trim(),
        "configmap/demo patched (no change)"
    );

    // label, annotate and edit are patches.
    assert_eq!(up.kubectl(&["label", "cm", "demo", "tier=front"]).trim(), "configmap/demo labeled");
    assert_eq!(up.kubectl(&["annotate", "cm", "demo", "owner=team-a"]).trim(), "configmap/demo annotated");
    let cm = get(&["get", "cm", "demo"]);
    assert_eq!(
        (cm["metadata"]["labels"]["tier"].as_str(), cm["metadata"]["annotations"]["owner"].as_str()),
        (Some("front"), Some("team-a"))
    );
    assert_eq!(up.kubectl(&["label", "cm", "demo", "tier-"]).trim(), "configmap/demo unlabeled");
    let edit = std::process::Command::new("kubectl")
        .env("KUBE_EDITOR", "sed -i s/size:\\ xl/size:\\ xxl/")
        .args(["--kubeconfig", &dir.path().join("kubeconfig").display().to_string(), "edit", "cm", "demo"])
        .output()
        .unwrap();
    assert!(edit.status.success(), "kubectl edit: {}", String::from_utf8_lossy(&edit.stderr));
    assert_eq!(String::from_utf8_lossy(&edit.stdout).trim(), "configmap/demo edited");
    assert_eq!(get(&["get", "cm", "demo"])["data"]["size"], "xxl");

    // scale goes through the scale subresource; status only through the status one.
    assert_eq!(up.kubectl(&["scale", "deployment", "web", "--replicas=4"]).trim(), "deployment.apps/web scaled");
    let scale = json(&up.kubectl(&["get", "--raw", "/apis/apps/v1/namespaces/default/deployments/web/scale"]));
    assert_eq!((scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()), (Some("Scale"), Some(4)));
    assert_eq!(scale["status"]["selector"], "app=web");
    assert_eq!(get(&["get", "deployment", "web"])["spec"]["replicas"], 4);
    // (A Service's status: no controller here writes it, unlike a Deployment's.)
    let status = r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.1"}]}}}"#;
    up.kubectl(&["patch", "service", "web", "--subresource=status", "--type=merge", "-p", status]);
    let ignored = r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.9"}]}}}"#;
    up.kubectl(&["patch", "service", "web", "--type=merge", "-p", ignored]);
    let svc = get(&["get", "service", "web"]);
    assert_eq!(svc["status"]["loadBalancer"]["ingress"][0]["ip"], "192.0.2.1");

    // Server-side apply: shared fields, conflicts with other managers, forced takeover.
    let ssa = files.write("ssa.yaml", &DEPLOY.replace("name: web\n  labels", "name: api\n  labels"));
    assert_eq!(up.kubectl(&["apply", "--server-side", "-f", &ssa]).trim(), "deployment.apps/api serverside-applied");
    assert_eq!(up.kubectl(&["apply", "--server-side", "-f", &ssa]).trim(), "deployment.apps/api serverside-applied");
    let managers = get(&["get", "deployment", "api", "--show-managed-fields"])["metadata"]["managedFields"].clone();
    assert_eq!(managers[0]["manager"], "kubectl");
    assert_eq!(managers[0]["operation"], "Apply");
    assert_eq!(managers[0]["fieldsV1"]["f:spec"]["f:replicas"], json("{}"));
    up.kubectl(&["scale", "deployment", "api", "--replicas=7"]);
    let (ok, _, stderr) = up.try_kubectl(&["apply", "--server-side", "-f", &ssa]);
    assert!(!ok && stderr.contains("Apply failed with 1 conflict") && stderr.contains(".spec.replicas"), "{stderr}");
    up.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", &ssa]);
    assert_eq!(get(&["get", "deployment", "api"])["spec"]["replicas"], 2);

    // Bad patches are refused with the right status.
    let (ok, _, stderr) = up.try_kubectl(&["patch", "cm", "demo", "--type=merge", "-p", "{not json"]);
    assert!(!ok, "{stderr}");
    let (ok, _, stderr) = up.try_kubectl(&["patch", "cm", "missing", "--type=merge", "-p", "{}"]);
    assert!(!ok && stderr.contains(r#"configmaps "missing" not found"#), "{stderr}");
    up.stop();
}
