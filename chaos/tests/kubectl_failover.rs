//! kubectl against every member of a 3-process control plane, through a leader kill: each
//! member serves the whole API (writes through the leader, reads from its own store); after
//! SIGKILL of the leader, each survivor serves kubectl again once a new leader is elected,
//! and from then on without errors; the controllers move to the new leader (a Deployment
//! scaled after the kill gets its pods); the killed member comes back with everything.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chaos::{flotilla_binary, FlotillaCluster, FAST_ELECTIONS};
use raft_store::NodeId;

const DEADLINE: Duration = Duration::from_secs(60);

/// kubectl with the admin's credentials against member `id`; (ok, stdout, stderr).
fn kubectl(cluster: &FlotillaCluster, base: &Path, id: NodeId, args: &[&str]) -> (bool, String, String) {
    let pki = cluster.pki_dir();
    let out = Command::new("kubectl")
        .arg(format!("--server={}", cluster.api(id).unwrap()))
        .arg(format!("--certificate-authority={}", pki.join("ca.crt").display()))
        .arg(format!("--client-certificate={}", pki.join("admin.crt").display()))
        .arg(format!("--client-key={}", pki.join("admin.key").display()))
        .arg(format!("--cache-dir={}", base.join(format!("kube-cache-{id}")).display()))
        .arg("--request-timeout=10s")
        .args(args)
        .output()
        .expect("kubectl runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// kubectl that must succeed now.
fn must(cluster: &FlotillaCluster, base: &Path, id: NodeId, args: &[&str]) -> String {
    let (ok, out, err) = kubectl(cluster, base, id, args);
    assert!(ok, "kubectl {args:?} via member {id} failed: {err}\n{}", cluster.log_tail(id, 30));
    out
}

/// Retries kubectl until it succeeds and `check` holds, within the deadline.
fn eventually(cluster: &FlotillaCluster, base: &Path, id: NodeId, args: &[&str], check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (ok, out, err) = kubectl(cluster, base, id, args);
        if ok && check(&out) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl {args:?} via member {id}: {out}{err}\n{}",
            cluster.log_tail(id, 30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pod_count(out: &str) -> usize {
    out.lines().filter(|l| !l.trim().is_empty()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_keeps_working_on_every_member_through_a_leader_kill() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let mut cluster = FlotillaCluster::start_with_api(&flotilla_binary().unwrap(), base, 3, &FAST_ELECTIONS).unwrap();
    for id in cluster.ids() {
        eventually(&cluster, base, id, &["get", "--raw", "/readyz"], |out| out.contains("ok"));
        eventually(&cluster, base, id, &["get", "namespace", "default", "-o", "name"], |_| true);
    }

    // Writes through any member; reads through every member see them at once.
    must(&cluster, base, 1, &["create", "configmap", "from-1", "--from-literal=k=1"]);
    must(&cluster, base, 2, &["create", "deployment", "web", "--image=registry.invalid/web:1", "--replicas=2"]);
    for id in cluster.ids() {
        must(&cluster, base, id, &["get", "configmap", "from-1"]);
    }
    let pods = ["get", "pods", "-l", "app=web", "-o", "name"];
    eventually(&cluster, base, 3, &pods, |out| pod_count(out) == 2);

    let leader = cluster.wait_for_leader(DEADLINE).await.unwrap();
    cluster.kill(leader).unwrap();
    let survivors: Vec<NodeId> = cluster.ids().into_iter().filter(|id| *id != leader).collect();

    // Each survivor serves writes again once a new leader is elected...
    for &id in &survivors {
        let name = format!("after-kill-{id}");
        eventually(&cluster, base, id, &["create", "configmap", &name], |_| true);
    }
    // ...and from then on without errors, reads and writes alike.
    for i in 0..5 {
        for &id in &survivors {
            let name = format!("steady-{id}-{i}");
            must(&cluster, base, id, &["create", "configmap", &name, "--from-literal=i=1"]);
            for &reader in &survivors {
                must(&cluster, base, reader, &["get", "configmap", &name]);
            }
        }
    }

    // The controllers work on the new leader.
    must(&cluster, base, survivors[0], &["scale", "deployment", "web", "--replicas=3"]);
    eventually(&cluster, base, survivors[1], &pods, |out| pod_count(out) == 3);

    // The killed member comes back with every object.
    cluster.restart(leader).unwrap();
    let last = format!("steady-{}-4", survivors[1]);
    eventually(&cluster, base, leader, &["get", "configmap", &last, "-o", "name"], |_| true);
    let names = must(&cluster, base, leader, &["get", "configmaps", "-o", "name"]);
    for &id in &survivors {
        assert!(names.contains(&format!("configmap/after-kill-{id}")), "{names}");
        assert!(names.contains(&format!("configmap/steady-{id}-4")), "{names}");
    }
}
