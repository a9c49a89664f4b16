//! End-to-end: kubectl's imperative commands (`create namespace`, `create configmap`,
//! `create secret`, `create deployment`, `create service`, `run`, `create job`, `expose`, ...)
//! on `flotilla up`. kubectl sends their bodies as Kubernetes protobuf, which the server
//! decodes into the JSON a JSON client would send, and answers in JSON, which kubectl reads.

#![allow(clippy::unwrap_used)]

mod common;

use common::Up;
use serde_json::{json, Value};

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn imperative_commands_send_protobuf_and_create_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    up.kubectl_eventually(&["get", "ns", "default", "-o", "name"]);
    let run = |args: &[&str], expected: &str| assert_eq!(up.kubectl(args).trim(), expected, "kubectl {args:?}");

    // The body really is protobuf (kubectl logs its request headers at -v=8).
    let (ok, stdout, stderr) = up.try_kubectl(&["create", "namespace", "team-a", "-v=8"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "namespace/team-a created");
    assert!(stderr.contains("Content-Type: application/vnd.kubernetes.protobuf"), "{stderr}");
    assert_eq!(json(&up.kubectl(&["get", "ns", "team-a", "-o", "json"]))["status"]["phase"], "Active");
    // Errors come back as JSON `Status` bodies, which kubectl reads as well.
    let (ok, _, stderr) = up.try_kubectl(&["create", "namespace", "team-a"]);
    assert!(!ok);
    assert_eq!(stderr.trim(), r#"Error from server (AlreadyExists): namespaces "team-a" already exists"#);

    run(
        &["create", "configmap", "c", "--from-literal=a=1", "--from-literal=b=2", "-n", "team-a"],
        "configmap/c created",
    );
    let cm = json(&up.kubectl(&["get", "cm", "c", "-n", "team-a", "-o", "json"]));
    assert_eq!(cm["data"], json!({"a": "1", "b": "2"}));
    assert_eq!(cm["metadata"]["namespace"], "team-a");

    run(&["create", "secret", "generic", "s", "--from-literal=password=x"], "secret/s created");
    let secret = json(&up.kubectl(&["get", "secret", "s", "-o", "json"]));
    assert_eq!((&secret["data"], &secret["type"]), (&json!({"password": "eA=="}), &json!("Opaque")));

    run(&["create", "deployment", "web", "--image=nginx:1.27", "--replicas=3"], "deployment.apps/web created");
    let deploy = json(&up.kubectl(&["get", "deploy", "web", "-o", "json"]));
    assert_eq!(deploy["spec"]["replicas"], 3);
    assert_eq!(deploy["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(deploy["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));
    let container = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!((&container["name"], &container["image"]), (&json!("nginx"), &json!("nginx:1.27")));
    // A zero sent for a pointer field is kept.
    run(&["create", "deployment", "idle", "--image=nginx", "--replicas=0"], "deployment.apps/idle created");
    assert_eq!(up.kubectl(&["get", "deploy", "idle", "-o", "jsonpath={.spec.replicas}"]), "0");

    run(&["create", "service", "clusterip", "web", "--tcp=80:8080"], "service/web created");
    let svc = json(&up.kubectl(&["get", "svc", "web", "-o", "json"]));
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080, "an IntOrString");
    assert_eq!(svc["spec"]["selector"], json!({"app": "web"}));

    run(&["run", "pod1", "--image=busybox", "--restart=Never", "--", "sleep", "1"], "pod/pod1 created");
    let pod = json(&up.kubectl(&["get", "pod", "pod1", "-o", "json"]));
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(pod["spec"]["containers"][0]["args"], json!(["sleep", "1"]));
    assert_eq!(pod["metadata"]["labels"], json!({"run": "pod1"}));

    run(&["create", "job", "j", "--image=busybox"], "job.batch/j created");
    let job = json(&up.kubectl(&["get", "job", "j", "-o", "json"]));
    assert_eq!(job["spec"]["template"]["spec"]["containers"][0]["image"], "busybox");

    run(&["expose", "deployment", "web", "--port=80", "--name=web2"], "service/web2 exposed");
    let web2 = json(&up.kubectl(&["get", "svc", "web2", "-o", "json"]));
    assert_eq!(web2["spec"]["selector"], json!({"app": "web"}));
    assert_eq!(web2["spec"]["ports"][0]["port"], 80);

    // These two patch (JSON bodies), the objects created above.
    run(&["scale", "deployment", "web", "--replicas=5"], "deployment.apps/web scaled");
    run(&["set", "image", "deployment/web", "nginx=nginx:1.28"], "deployment.apps/web image updated");
    let deploy = json(&up.kubectl(&["get", "deploy", "web", "-o", "json"]));
    assert_eq!(deploy["spec"]["replicas"], 5);
    assert_eq!(deploy["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.28");
}

#[test]
fn more_kinds_created_imperatively() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    up.kubectl_eventually(&["get", "ns", "default", "-o", "name"]);
    let run = |args: &[&str], expected: &str| assert_eq!(up.kubectl(args).trim(), expected, "kubectl {args:?}");

    run(&["create", "serviceaccount", "sa"], "serviceaccount/sa created");
    run(&["create", "role", "r", "--verb=get,list", "--resource=pods"], "role.rbac.authorization.k8s.io/r created");
    run(
        &["create", "rolebinding", "rb", "--role=r", "--user=alice"],
        "rolebinding.rbac.authorization.k8s.io/rb created",
    );
    let rb = json(&up.kubectl(&["get", "rolebinding", "rb", "-o", "json"]));
    assert_eq!(rb["subjects"], json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]));
    assert_eq!(rb["roleRef"], json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}));
    run(
        &["create", "clusterrole", "cr", "--verb=get", "--resource=nodes"],
        "clusterrole.rbac.authorization.k8s.io/cr created",
    );
    run(
        &["create", "clusterrolebinding", "crb", "--clusterrole=cr", "--group=devs"],
        "clusterrolebinding.rbac.authorization.k8s.io/crb created",
    );
    run(&["create", "quota", "q", "--hard=cpu=1,pods=0"], "resourcequota/q created");
    let quota = json(&up.kubectl(&["get", "quota", "q", "-o", "json"]));
    assert_eq!(quota["spec"]["hard"], json!({"cpu": "1", "pods": "0"}), "Quantities");
    // `value` has no omitempty: its zero is kept; `globalDefault: false` is left out, as in Go.
    run(
        &["create", "priorityclass", "pc", "--value=0", "--description=low"],
        "priorityclass.scheduling.k8s.io/pc created",
    );
    let pc = json(&up.kubectl(&["get", "pc", "pc", "-o", "json"]));
    assert_eq!((&pc["value"], &pc["description"], pc.get("globalDefault")), (&json!(0), &json!("low"), None));
    run(&["create", "pdb", "pdb", "--selector=app=web", "--min-available=0"], "poddisruptionbudget.policy/pdb created");
    let pdb = json(&up.kubectl(&["get", "pdb", "pdb", "-o", "json"]));
    assert_eq!(pdb["spec"]["minAvailable"], 0);
    run(
        &["create", "cronjob", "cj", "--image=busybox", "--schedule=*/5 * * * *", "--", "date"],
        "cronjob.batch/cj created",
    );
    let cj = json(&up.kubectl(&["get", "cronjob", "cj", "-o", "json"]));
    assert_eq!(cj["spec"]["schedule"], "*/5 * * * *");
    let regcred = ["create", "secret", "docker-registry", "regcred", "--docker-server=r.example"];
    run(&[&regcred[..], &["--docker-username=u", "--docker-password=p"]].concat(), "secret/regcred created");
    let secret = json(&up.kubectl(&["get", "secret", "regcred", "-o", "json"]));
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    assert!(secret["data"][".dockerconfigjson"].as_str().is_some_and(|d| !d.is_empty()));
}
