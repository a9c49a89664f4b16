//! End-to-end: the controllers and the scheduler on `flotilla up`, with Node objects made
//! through the API and the test as the kubelet (a thread that marks bound pods Running and
//! Ready with a pod IP, and removes pods whose deletion it is told of, as a kubelet does once
//! their containers stop). A Deployment of 5 gets 5 pods bound over 3 nodes; a Service of it
//! gets Endpoints and an EndpointSlice; a pod too big for any node stays Pending with a
//! FailedScheduling event naming why; deleting the Deployment removes its ReplicaSet and
//! pods; `--cascade=orphan` keeps them; a deleted namespace takes everything in it along;
//! every namespace gets its `default` ServiceAccount; Services get distinct cluster IPs.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::AtomicBool;

use common::kubelet::{self, items, json, node_manifest, until, StopOnDrop};
use common::Up;

const BIG_POD: &str = "apiVersion: v1
kind: Pod
metadata: {name: big}
spec:
  containers:
  - name: c
    image: registry.invalid/none:1
    resources: {requests: {cpu: '64'}}
";

#[test]
fn deployments_are_scheduled_served_and_cleaned_up_by_the_controllers() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    let files = tempfile::tempdir().unwrap();
    let nodes = files.path().join("nodes.yaml");
    std::fs::write(&nodes, (1..=3).map(|i| node_manifest(&format!("node-{i}"))).collect::<String>()).unwrap();
    up.kubectl(&["apply", "-f", &nodes.display().to_string()]);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| kubelet::run(&up, &stop, &["node-1", "node-2", "node-3"], kubelet::running));

        // 5 replicas, 5 pods bound, spread over the 3 nodes.
        up.kubectl(&["create", "deployment", "web", "--image=registry.invalid/web:1", "--replicas=5"]);
        let pods = until(&up, "5 web pods bound", &["get", "pods", "-l", "app=web", "-o", "json"], |v| {
            let pods = items(v);
            pods.len() == 5 && pods.iter().all(|p| p["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty()))
        });
        let mut per_node = std::collections::BTreeMap::<String, usize>::new();
        for p in items(&pods) {
            *per_node.entry(p["spec"]["nodeName"].as_str().unwrap().to_string()).or_default() += 1;
        }
        assert_eq!(per_node.len(), 3, "spread over every node: {per_node:?}");
        let status = up.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
        assert!(status.contains("successfully rolled out"), "{status}");

        // A Service of the Deployment: its ready pods' IPs in Endpoints and an EndpointSlice.
        up.kubectl(&["expose", "deployment", "web", "--port=80", "--target-port=8080"]);
        // Each Service gets its own cluster IP from 10.96.0.0/12.
        up.kubectl(&["create", "service", "clusterip", "other", "--tcp=81:8081"]);
        let ip_of = |svc: &str| up.kubectl(&["get", "svc", svc, "-o", "jsonpath={.spec.clusterIP}"]);
        let (web_ip, other_ip) = (ip_of("web"), ip_of("other"));
        for ip in [&web_ip, &other_ip] {
            let octets: Vec<u8> = ip.split('.').map(|o| o.parse().unwrap()).collect();
            assert!(octets[0] == 10 && (96..112).contains(&octets[1]), "{ip} is not in 10.96.0.0/12");
        }
        assert_ne!(web_ip, other_ip);
        assert_eq!(ip_of("kubernetes"), "10.96.0.1");
        until(&up, "5 endpoints", &["get", "endpoints", "web", "-o", "json"], |v| {
            v["subsets"][0]["addresses"].as_array().is_some_and(|a| a.len() == 5)
                && v["subsets"][0]["ports"][0]["port"] == 8080
        });
        until(
            &up,
            "an EndpointSlice of 5",
            &["get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "json"],
            |v| items(v).first().is_some_and(|s| s["endpoints"].as_array().is_some_and(|e| e.len() == 5)),
        );

        // Too big for any node: Pending, and an event saying why.
        let big = files.path().join("big.yaml");
        std::fs::write(&big, BIG_POD).unwrap();
        up.kubectl(&["apply", "-f", &big.display().to_string()]);
        let events = until(
            &up,
            "FailedScheduling",
            &["get", "events", "--field-selector", "reason=FailedScheduling", "-o", "json"],
            |v| items(v).iter().any(|e| e["involvedObject"]["name"] == "big"),
        );
        let message =
            items(&events).into_iter().find(|e| e["involvedObject"]["name"] == "big").unwrap()["message"].clone();
        assert!(message.as_str().unwrap().contains("0/3 nodes are available: 3 Insufficient cpu"), "{message}");
        let pod = json(&up.kubectl(&["get", "pod", "big", "-o", "json"]));
        assert_eq!(pod["status"]["phase"], "Pending");
        assert!(pod["spec"].get("nodeName").is_none());

        // Deleting the Deployment deletes its ReplicaSet and pods (background propagation).
        up.kubectl(&["delete", "deployment", "web"]);
        until(&up, "web's ReplicaSet gone", &["get", "rs", "-l", "app=web", "-o", "json"], |v| items(v).is_empty());
        until(&up, "web's pods gone", &["get", "pods", "-l", "app=web", "-o", "json"], |v| items(v).is_empty());

        // --cascade=orphan keeps them, without their owner.
        up.kubectl(&["create", "deployment", "keep", "--image=registry.invalid/keep:1", "--replicas=2"]);
        until(&up, "2 keep pods", &["get", "pods", "-l", "app=keep", "-o", "json"], |v| items(v).len() == 2);
        up.kubectl(&["delete", "deployment", "keep", "--cascade=orphan"]);
        until(&up, "the orphaned ReplicaSet without owner", &["get", "rs", "-l", "app=keep", "-o", "json"], |v| {
            let rs = items(v);
            rs.len() == 1 && rs[0]["metadata"].get("ownerReferences").is_none()
        });
        assert_eq!(items(&json(&up.kubectl(&["get", "pods", "-l", "app=keep", "-o", "json"]))).len(), 2);

        // A namespace gets its default ServiceAccount; deleted, it takes its content along.
        up.kubectl(&["create", "namespace", "team"]);
        until(&up, "team's default ServiceAccount", &["get", "sa", "-n", "team", "-o", "json"], |v| {
            items(v).iter().any(|sa| sa["metadata"]["name"] == "default")
        });
        up.kubectl(&["create", "deployment", "app", "-n", "team", "--image=registry.invalid/app:1", "--replicas=2"]);
        up.kubectl(&["create", "configmap", "settings", "-n", "team", "--from-literal=a=b"]);
        until(&up, "2 app pods", &["get", "pods", "-n", "team", "-o", "json"], |v| items(v).len() == 2);
        up.kubectl(&["delete", "namespace", "team", "--timeout=60s"]);
        let (ok, _, stderr) = up.try_kubectl(&["get", "namespace", "team"]);
        assert!(!ok && stderr.contains("NotFound"), "{stderr}");
    });
}
