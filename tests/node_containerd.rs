//! End-to-end on a real node: `flotilla up`, then `flotilla agent` with its private
//! containerd, driven with real kubectl. Pods run as containers from the node's local
//! busybox image (never pulled): `kubectl run` goes Running, `kubectl logs` and
//! `kubectl exec` work (and `logs -f`, `--previous`, `--tail`, `--timestamps`); a Deployment's pods get addresses in the node's pod CIDR and reach
//! each other; a deleted pod is replaced; a crashing container restarts with growing
//! back-off; a failing liveness probe restarts a container; a readiness probe gates the
//! Endpoints; `kubectl port-forward` reaches a pod; a Service's cluster IP (and node port)
//! spreads connections from a pod, from the pod itself (hairpin) and from the host over its
//! ready pods, and refuses them at once when none is left; after the agent is killed and
//! started again, running containers are adopted (not started twice), the sandbox of a pod
//! deleted meanwhile is removed and the Service still serves; `flotilla agent reset` removes
//! the service rules. Pods resolve Service names through the node's cluster DNS (their
//! resolv.conf names it, with the namespace's search path). Under `flotilla up`, a pod
//! reaches the API server through the `kubernetes` Service (KUBERNETES_SERVICE_HOST/PORT,
//! its DNS name, a TCP connection; HTTPS with the pod's token through the cluster IP).
//!
//! One test (not several): each would start its own containerd and bridge on the same pod
//! CIDR.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chaos::free_port;
use common::kubelet::{items, json, until};
use common::{eventually_within, Up};
use serde_json::Value;

const IMAGE: &str = "flotilla.local/busybox:latest";
const DEADLINE: Duration = Duration::from_secs(60);

/// The agent of one real node; killed and reset (pods removed, containerd stopped) when
/// dropped.
struct Agent {
    child: Option<Child>,
    dir: PathBuf,
    node: String,
    port: u16,
}

impl Agent {
    fn start(dir: &Path, node: &str, port: u16) -> Agent {
        let mut agent = Agent { child: None, dir: dir.to_path_buf(), node: node.to_string(), port };
        agent.spawn();
        agent
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("agent.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["agent", "--node-name", &self.node, "--node-ip", "127.0.0.1", "--heartbeat-secs", "2"])
            .args(["--kubelet-port", &self.port.to_string()])
            .arg("--kubeconfig")
            .arg(self.dir.join("kubeconfig"))
            .arg("--state-dir")
            .arg(self.state_dir())
            .env("RUST_LOG", "info,node_agent::cri_pods=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.join("agent")
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The containers containerd has for pod `name` (sandbox included), by `ctr`.
    fn containers_of(&self, pod: &str) -> Vec<String> {
        let socket = self.state_dir().join("containerd/containerd.sock");
        let filter = format!("labels.\"io.kubernetes.pod.name\"=={pod}");
        let out = Command::new("ctr")
            .arg("--address")
            .arg(socket)
            .args(["-n", "k8s.io", "containers", "ls", "-q", &filter])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
    }

    /// What `ctr -n k8s.io ARGS` prints about this agent's containerd (for failure messages).
    fn ctr(&self, args: &[&str]) -> String {
        let socket = self.state_dir().join("containerd/containerd.sock");
        let out = Command::new("ctr").arg("--address").arg(socket).args(["-n", "k8s.io"]).args(args).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_else(|e| e.to_string())
    }

    /// Polls `GET path` on the kubelet endpoint until the body holds `needle`.
    fn get_until(&self, path: &str, needle: &str) {
        let url = format!("https://127.0.0.1:{}{path}", self.port);
        eventually_within(DEADLINE, &format!("{needle} in {path}"), || {
            let out = Command::new("curl").args(["-sk", &url]).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.contains(needle) {
                Ok(())
            } else {
                Err(text)
            }
        });
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        let _ = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["agent", "reset", "--state-dir"])
            .arg(self.state_dir())
            .output();
        let bridge = node_agent::cni::bridge_name(&self.node);
        let _ = Command::new("ip").args(["link", "delete", &bridge]).output();
    }
}

fn pod(up: &Up, name: &str) -> Value {
    let (ok, out, _) = up.try_kubectl(&["get", "pod", name, "-o", "json"]);
    if ok {
        json(&out)
    } else {
        Value::Null
    }
}

fn status_of<'a>(pod: &'a Value, container: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == container))
        .unwrap_or(&Value::Null)
}

fn running_pods(list: &Value, app: &str) -> Vec<Value> {
    items(list)
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == app)
        .filter(|p| p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

/// Polls until `check` holds for pod `name`, with the agent's log on failure.
fn until_pod(up: &Up, agent: &Agent, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let p = pod(up, name);
        if check(&p) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "never: {what}\npod: {p}\nagent log (tail):\n{}",
            agent.log().lines().rev().take(30).collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `kubectl run NAME` of the local busybox running `sh -c SCRIPT`.
fn run_pod(up: &Up, name: &str, script: &str) {
    up.kubectl(&["run", name, "--image", IMAGE, "--image-pull-policy=Never", "--", "sh", "-c", script]);
}

fn apply(up: &Up, manifest: &str) {
    let path = up.dir.join(format!("manifest-{}.yaml", free_port().unwrap()));
    std::fs::write(&path, manifest).unwrap();
    up.kubectl(&["apply", "-f", &path.display().to_string()]);
}

/// `GET /` over HTTP/1.0 from this process, with short timeouts: the body.
fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    tcp.set_read_timeout(Some(Duration::from_secs(3)))?;
    tcp.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut answer = String::new();
    tcp.read_to_string(&mut answer)?;
    Ok(answer.split_once("\r\n\r\n").map(|(_, body)| body.trim().to_string()).unwrap_or_default())
}

/// Polls until `addr` has answered with every one of `names` (and nothing else).
fn host_reaches_all(addr: SocketAddr, names: &[String]) {
    let deadline = Instant::now() + DEADLINE;
    let mut seen = HashSet::new();
    while !names.iter().all(|n| seen.contains(n)) {
        let answer = http_get(addr);
        match &answer {
            Ok(body) => {
                assert!(names.contains(body), "{addr} answered {body:?}, not one of {names:?}");
                seen.insert(body.clone());
            }
            // Not yet programmed: poll again shortly.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
        assert!(Instant::now() < deadline, "{addr} from the host reached only {seen:?} of {names:?}; last: {answer:?}");
    }
}

/// Polls, `wget`ting `url` in pod `pod` eight times a round, until every one of `wanted`
/// has answered (and only `names` did).
fn pod_reaches(up: &Up, pod: &str, url: &str, names: &[String], wanted: &[String]) {
    let deadline = Instant::now() + DEADLINE;
    // busybox 1.35's `wget -T` crashes: `timeout` bounds each try instead.
    let script = format!("for i in 1 2 3 4 5 6 7 8; do timeout 2 wget -qO- {url}; done; true");
    let mut seen = HashSet::new();
    while !wanted.iter().all(|n| seen.contains(n)) {
        let (_, out, err) = up.try_kubectl(&["exec", pod, "--", "sh", "-c", &script]);
        for body in out.lines() {
            assert!(names.iter().any(|n| n == body), "{url} answered {body:?}, not one of {names:?}");
            seen.insert(body.to_string());
        }
        assert!(Instant::now() < deadline, "{url} from {pod} reached only {seen:?} of {wanted:?}: {err}");
    }
}

/// Polls `sh -c SCRIPT` (bounded by `timeout 5`) in pod `pod` until its output satisfies
/// `check`: that output.
fn exec_until(up: &Up, pod: &str, script: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + DEADLINE;
    let script = format!("timeout 5 {script}");
    loop {
        let (_, out, err) = up.try_kubectl(&["exec", pod, "--", "sh", "-c", &script]);
        if check(&out) {
            return out;
        }
        assert!(Instant::now() < deadline, "never: `{script}` in {pod}:\n{out}\n{err}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A global IPv4 address of this host (not a pod bridge's), else `fallback`.
fn host_address(fallback: &str) -> String {
    let out = Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let ifname = fields.get(1)?;
            let inet = fields.iter().position(|f| *f == "inet")?;
            (!ifname.starts_with("fl")).then(|| fields.get(inet + 1)?.split('/').next().map(String::from))?
        })
        .next()
        .unwrap_or_else(|| fallback.to_string())
}

#[test]
fn real_pods_run_log_exec_restart_probe_forward_and_survive_an_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    let node = format!("real-{}", free_port().unwrap());
    let mut agent = Agent::start(dir.path(), &node, free_port().unwrap());
    let nodes = until(&up, "the node Ready with a pod CIDR", &["get", "nodes", "-o", "json"], |list| {
        items(list).iter().any(|n| {
            n["metadata"]["name"] == node.as_str()
                && n["spec"]["podCIDR"].is_string()
                && n["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
    });
    let cidr = items(&nodes).iter().find(|n| n["metadata"]["name"] == node.as_str()).unwrap()["spec"]["podCIDR"]
        .as_str()
        .unwrap()
        .to_string();
    let prefix = cidr.rsplit_once('.').unwrap().0.to_string() + ".";
    assert!(cidr.ends_with(".0/24"), "{cidr}");

    // kubectl run, logs, exec.
    run_pod(&up, "hello", "echo hi; sleep 3600");
    let hello =
        until_pod(&up, &agent, "hello", "hello Running", |p| status_of(p, "hello")["state"]["running"].is_object());
    assert!(hello["status"]["podIP"].as_str().unwrap().starts_with(&prefix), "{hello}");
    assert_eq!(up.kubectl_eventually(&["logs", "hello"]), "hi\n");
    assert_eq!(up.kubectl(&["exec", "hello", "--", "cat", "/etc/hostname"]), "hello\n");
    let (ok, _, stderr) = up.try_kubectl(&["exec", "hello", "--", "sh", "-c", "exit 3"]);
    assert!(!ok && stderr.contains("exit code 3"), "{stderr}");
    let runtime = up.kubectl(&["get", "node", &node, "-o", "jsonpath={.status.nodeInfo.containerRuntimeVersion}"]);
    assert!(runtime.starts_with("containerd://1."), "{runtime}");

    // The kubelet endpoint reports the container's CPU and memory (for metrics-server).
    let series = "container_memory_working_set_bytes{container=\"hello\",namespace=\"default\",pod=\"hello\"}";
    agent.get_until("/metrics/resource", series);
    // Its /metrics has the agent process's own metrics, as kubelet's has (the service proxy syncs at start).
    agent.get_until("/metrics", "flotilla_service_proxy_syncs_total{result=\"ok\"}");

    // `kubectl logs -f` follows a container until it ends.
    up.kubectl(&[
        "run",
        "count",
        "--image",
        IMAGE,
        "--image-pull-policy=Never",
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3; do echo $i; sleep 1; done",
    ]);
    until_pod(&up, &agent, "count", "count started", |p| {
        !status_of(p, "count")["state"]["waiting"].is_object() && !p["status"]["containerStatuses"].is_null()
    });
    assert_eq!(up.kubectl(&["logs", "-f", "count"]), "1\n2\n3\n");
    until_pod(&up, &agent, "count", "count Succeeded", |p| p["status"]["phase"] == "Succeeded");
    assert_eq!(up.kubectl(&["logs", "count", "--tail=1", "--timestamps"]).split_once(' ').unwrap().1, "3\n");

    // A Deployment of 3: addresses in the pod CIDR, reachable from another pod.
    up.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image",
        IMAGE,
        "--replicas=3",
        "--",
        "sh",
        "-c",
        "echo hello from $(hostname) > /tmp/index.html; exec httpd -f -p 8080 -h /tmp",
    ]);
    let list = until(&up, "3 web pods Running", &["get", "pods", "-o", "json"], |l| running_pods(l, "web").len() == 3);
    let web = running_pods(&list, "web");
    let ips: Vec<String> = web.iter().map(|p| p["status"]["podIP"].as_str().unwrap().to_string()).collect();
    assert!(ips.iter().all(|ip| ip.starts_with(&prefix)), "{ips:?} not in {cidr}");
    assert_eq!(ips.iter().collect::<std::collections::HashSet<_>>().len(), 3, "{ips:?}");
    let first = web[0]["metadata"]["name"].as_str().unwrap().to_string();
    let page =
        up.kubectl_eventually(&["exec", "hello", "--", "wget", "-qO-", &format!("http://{}:8080/index.html", ips[0])]);
    assert_eq!(page, format!("hello from {first}\n"));

    // Cluster DNS: the pod's resolv.conf names the node's DNS (the bridge's gateway) and the
    // search path; a Service's name resolves to its cluster IP, its short name reaches it
    // through the service proxy, and the API's own Service resolves.
    let resolv = up.kubectl(&["exec", "hello", "--", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains(&format!("nameserver {prefix}1\n")), "{resolv}");
    assert!(resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "{resolv}");
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    up.kubectl(&["expose", "deployment", "web", "--port", "80", "--target-port", "8080"]);
    let web_ip = up.kubectl(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let found = exec_until(&up, "hello", "nslookup web.default.svc.cluster.local", |out| {
        out.contains(&format!("Address: {web_ip}"))
    });
    assert!(found.contains("web.default.svc.cluster.local"), "{found}");
    let page = exec_until(&up, "hello", "wget -qO- http://web/", |out| out.starts_with("hello from web-"));
    assert_eq!(page.lines().count(), 1, "{page}");
    let api_ip = up.kubectl(&["get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]);
    exec_until(&up, "hello", "nslookup kubernetes.default.svc.cluster.local", |out| {
        out.contains(&format!("Address: {api_ip}"))
    });
    let (_, missing, _) = up.try_kubectl(&["exec", "hello", "--", "nslookup", "nope.default.svc.cluster.local"]);
    assert!(!missing.contains("Address: 10."), "{missing}");

    // kubectl port-forward to one of them.
    let local = free_port().unwrap();
    let mut forward = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(dir.path().join("kubeconfig"))
        .args(["port-forward", &format!("pod/{first}"), &format!("{local}:8080")])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("port-forward.log")).unwrap())
        .spawn()
        .unwrap();
    // kubectl writes a line per connection: its stdout is drained for as long as it runs.
    let (lines, ready) = std::sync::mpsc::channel();
    let stdout = forward.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let ready = ready.recv_timeout(DEADLINE).unwrap();
    assert!(ready.starts_with("Forwarding from"), "{ready}");
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", local)).unwrap();
    tcp.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
    // kubectl may reset the local connection once the pod's side closed: keep what came.
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = tcp.read(&mut chunk) {
        answer.extend_from_slice(&chunk[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    let _ = forward.kill();
    let _ = forward.wait();
    let forward_log = std::fs::read_to_string(dir.path().join("port-forward.log")).unwrap_or_default();
    assert!(answer.ends_with(&format!("hello from {first}\n")), "{answer:?}\nkubectl: {forward_log}");

    // A deleted pod is replaced.
    up.kubectl(&["delete", "pod", &first, "--wait=true"]);
    until(&up, "the deleted web pod replaced", &["get", "pods", "-o", "json"], |l| {
        let running = running_pods(l, "web");
        running.len() == 3 && running.iter().all(|p| p["metadata"]["name"] != first.as_str())
    });

    // A crashing container restarts with growing back-off (at once, then 10 s, then 20 s).
    run_pod(&up, "crash", "echo attempt; exit 1");
    let crash = until_pod(&up, &agent, "crash", "crash restarted twice and backing off 20 s", |p| {
        let s = status_of(p, "crash");
        s["restartCount"].as_u64() >= Some(2)
            && s["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            && s["state"]["waiting"]["message"].as_str().is_some_and(|m| m.starts_with("back-off 20s"))
    });
    assert_eq!(status_of(&crash, "crash")["lastState"]["terminated"]["exitCode"], 1, "{crash}");
    assert_eq!(up.kubectl(&["logs", "crash", "--previous"]), "attempt\n");
    let table = up.kubectl(&["get", "pod", "crash", "--no-headers"]);
    assert!(table.contains("CrashLoopBackOff"), "{table}");
    assert!(table.split_whitespace().nth(3).and_then(|r| r.parse::<u32>().ok()) >= Some(2), "{table}");

    // A failing liveness probe restarts the container.
    apply(
        &up,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "live"}},
              "spec": {{"containers": [{{"name": "app", "image": "{IMAGE}", "imagePullPolicy": "Never",
                "command": ["sh", "-c", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 3600"],
                "livenessProbe": {{"exec": {{"command": ["cat", "/tmp/healthy"]}}, "periodSeconds": 1, "failureThreshold": 1}}}}]}}}}"#
        ),
    );
    until_pod(&up, &agent, "live", "live restarted by its liveness probe", |p| {
        status_of(p, "app")["restartCount"].as_u64() >= Some(1)
    });
    let events = up.kubectl(&["get", "events", "--field-selector", "involvedObject.name=live", "-o", "json"]);
    assert!(events.contains("failed liveness probe, will be restarted"), "{events}");

    // A readiness probe gates the Endpoints.
    apply(
        &up,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "List", "items": [
              {{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "gate", "labels": {{"app": "gate"}}}},
                "spec": {{"containers": [{{"name": "app", "image": "{IMAGE}", "imagePullPolicy": "Never",
                  "command": ["sleep", "3600"],
                  "readinessProbe": {{"exec": {{"command": ["cat", "/tmp/ready"]}}, "periodSeconds": 1}}}}]}}}},
              {{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "gate"}},
                "spec": {{"selector": {{"app": "gate"}}, "ports": [{{"port": 80}}]}}}}]}}"#
        ),
    );
    let gate = until_pod(&up, &agent, "gate", "gate running, not ready", |p| {
        status_of(p, "app")["state"]["running"].is_object() && status_of(p, "app")["ready"] == false
    });
    let gate_ip = gate["status"]["podIP"].as_str().unwrap().to_string();
    until(&up, "gate only among the not-ready addresses", &["get", "endpoints", "gate", "-o", "json"], |e| {
        e["subsets"][0]["notReadyAddresses"][0]["ip"] == gate_ip.as_str() && e["subsets"][0]["addresses"].is_null()
    });
    up.kubectl(&["exec", "gate", "--", "touch", "/tmp/ready"]);
    until(&up, "gate among the ready addresses", &["get", "endpoints", "gate", "-o", "json"], |e| {
        e["subsets"][0]["addresses"][0]["ip"] == gate_ip.as_str()
    });

    // A Service of two pods (a named targetPort): its cluster IP reaches both from another
    // pod, from the host, and a pod reaches itself through it (hairpin); its node port
    // works on this host's address.
    let node_port = 30000 + free_port().unwrap() % 2700;
    apply(
        &up,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "List", "items": [
              {{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {{"name": "echo"}},
                "spec": {{"replicas": 2, "selector": {{"matchLabels": {{"app": "echo"}}}},
                  "template": {{"metadata": {{"labels": {{"app": "echo"}}}},
                    "spec": {{"containers": [{{"name": "httpd", "image": "{IMAGE}", "imagePullPolicy": "Never",
                      "command": ["sh", "-c", "mkdir -p /www; hostname > /www/index.html; exec httpd -f -p 8080 -h /www"],
                      "ports": [{{"name": "http", "containerPort": 8080}}]}}]}}}}}}}},
              {{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "echo"}},
                "spec": {{"type": "NodePort", "selector": {{"app": "echo"}},
                  "ports": [{{"name": "web", "port": 80, "targetPort": "http", "nodePort": {node_port}}}]}}}}]}}"#
        ),
    );
    let list =
        until(&up, "2 echo pods Running", &["get", "pods", "-o", "json"], |l| running_pods(l, "echo").len() == 2);
    let echo: Vec<String> =
        running_pods(&list, "echo").iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
    let cluster_ip = up.kubectl(&["get", "service", "echo", "-o", "jsonpath={.spec.clusterIP}"]);
    let service: SocketAddr = format!("{cluster_ip}:80").parse().unwrap();
    pod_reaches(&up, "hello", &format!("http://{cluster_ip}/"), &echo, &echo);
    pod_reaches(&up, "hello", &format!("http://{cluster_ip}:80/"), &echo, &echo);
    pod_reaches(&up, &echo[0], &format!("http://{cluster_ip}:80/"), &echo, &echo[..1]);
    host_reaches_all(service, &echo);
    let node_address = host_address(&format!("{prefix}1"));
    host_reaches_all(format!("{node_address}:{node_port}").parse().unwrap(), &echo);

    // The agent dies; a pod is force-deleted meanwhile; the agent comes back.
    let hello_id = status_of(&pod(&up, "hello"), "hello")["containerID"].as_str().unwrap().to_string();
    let crash_containers = agent.containers_of("crash");
    assert!(!crash_containers.is_empty());
    agent.kill();
    up.kubectl(&["delete", "pod", "crash", "--grace-period=0", "--force"]);
    agent.spawn();
    let deadline = Instant::now() + DEADLINE;
    while !agent.containers_of("crash").is_empty() {
        assert!(Instant::now() < deadline, "the force-deleted pod's sandbox was never removed:\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let hello = pod(&up, "hello");
    assert_eq!(status_of(&hello, "hello")["containerID"], hello_id.as_str(), "adopted, not restarted: {hello}");
    assert_eq!(status_of(&hello, "hello")["restartCount"], 0);
    let containers = agent.containers_of("hello");
    assert_eq!(
        containers.len(),
        2,
        "the sandbox and one container, not {containers:?}:\n{}\nagent log:\n{}",
        agent.ctr(&["containers", "ls"]),
        agent.log()
    );
    // The agent waits for containerd's pod network before making sandboxes: none failed.
    let events = up.kubectl(&["get", "events", "--field-selector", "involvedObject.name=hello", "-o", "json"]);
    assert!(!events.contains("FailedCreatePodSandBox"), "{events}");
    assert_eq!(up.kubectl(&["exec", "hello", "--", "echo", "still here"]), "still here\n");

    // The restarted agent's proxy keeps the Service; without ready pods it refuses
    // connections at once (not a hang), from the host and from a pod.
    host_reaches_all(service, &echo);
    up.kubectl(&["scale", "deployment", "echo", "--replicas=0"]);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let started = Instant::now();
        let answer = TcpStream::connect_timeout(&service, Duration::from_secs(5));
        if matches!(&answer, Err(e) if e.kind() == ErrorKind::ConnectionRefused) {
            assert!(started.elapsed() < Duration::from_secs(1), "refused only after {:?}", started.elapsed());
            break;
        }
        assert!(Instant::now() < deadline, "{service} never refused: {answer:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();
    let (ok, _, stderr) =
        up.try_kubectl(&["exec", "hello", "--", "timeout", "5", "wget", "-qO-", &format!("http://{service}/")]);
    assert!(!ok && stderr.contains("refused"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(4), "refused only after {:?}", started.elapsed());

    // `flotilla agent reset` (when the agent goes) removes the service rules.
    drop(agent);
    let out = Command::new("iptables-save").output().unwrap();
    let rules = String::from_utf8_lossy(&out.stdout);
    assert!(!rules.contains("FLOTILLA-") && !rules.contains("FLO-S"), "{rules}");
}

/// `flotilla up` alone (the README's main job) is a one-node cluster: this machine joins
/// as a node and runs pods.
#[test]
fn flotilla_up_makes_this_machine_a_node_that_runs_pods() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let https = free_port().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["up", "--data-dir", &data.display().to_string(), "--port", &https.to_string()])
        .args(["--store-listen", &format!("127.0.0.1:{}", free_port().unwrap())])
        .args(["--kubelet-port", &free_port().unwrap().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data.join("up.log")).unwrap())
        .spawn()
        .unwrap();
    let up = Up { child, dir: data.clone(), https, store: String::new() };
    // Reset (containers, containerd) and the bridge go with the test, pass or fail.
    struct Node(PathBuf, String);
    impl Drop for Node {
        fn drop(&mut self) {
            let _ = Command::new(env!("CARGO_BIN_EXE_flotilla"))
                .args(["agent", "reset", "--state-dir"])
                .arg(&self.0)
                .output();
            if !self.1.is_empty() {
                let _ = Command::new("ip").args(["link", "delete", &node_agent::cni::bridge_name(&self.1)]).output();
            }
        }
    }
    up.wait_ready();
    let nodes = until(&up, "this machine's node Ready", &["get", "nodes", "-o", "json"], |list| {
        items(list).iter().any(|n| {
            n["spec"]["podCIDR"].is_string()
                && n["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
    });
    let name = items(&nodes)[0]["metadata"]["name"].as_str().unwrap().to_string();
    let _node = Node(data.join("node"), name);
    run_pod(&up, "hi", "echo from-up; sleep 3600");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let p = pod(&up, "hi");
        if status_of(&p, "hi")["state"]["running"].is_object() {
            break;
        }
        let log = std::fs::read_to_string(data.join("up.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "never Running: {p}\n{log}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(up.kubectl_eventually(&["logs", "hi"]), "from-up\n");

    // The pod's projected ServiceAccount token (TokenRequest, bound to the pod) is in its
    // kube-api-access volume and authenticates as the pod's ServiceAccount.
    let token = up.kubectl(&["exec", "hi", "--", "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"]);
    let user = common::tokens::WithToken::new(&up).whoami(&token);
    assert_eq!(user["username"], "system:serviceaccount:default:default");
    let key = std::fs::read_to_string(data.join("pki/sa.key")).unwrap();
    let signer = api_gateway::service_accounts::jwt::Signer::new(&key, "https://kubernetes.default.svc.cluster.local");
    let claims = signer.unwrap().verify(&token, &[]).unwrap();
    assert_eq!(claims.kubernetes.pod.unwrap().name, "hi");
    assert_eq!(claims.exp - claims.iat, 3607);

    // The API from the pod, as in-cluster clients reach it: KUBERNETES_SERVICE_HOST/PORT is
    // the `kubernetes` Service, its name resolves to it, and the service proxy carries a TCP
    // connection to the API's advertise address. (Busybox's TLS does not agree with rustls
    // on a cipher suite, so HTTPS with the pod's token is checked from the host, through the
    // same cluster IP: the certificate holds the Service's address and names.)
    let env = up.kubectl(&["exec", "hi", "--", "sh", "-c", "echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"]);
    assert_eq!(env, "10.96.0.1:443\n");
    exec_until(&up, "hi", "nslookup kubernetes.default.svc.cluster.local", |out| out.contains("Address: 10.96.0.1"));
    exec_until(&up, "hi", "nc -w 3 $KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT -e true && echo open", |out| {
        out == "open\n"
    });
    let bearer = format!("Authorization: Bearer {token}");
    let ca = data.join("pki/ca.crt");
    for url in ["https://10.96.0.1/api", "https://kubernetes.default.svc/api"] {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--resolve", "kubernetes.default.svc:443:10.96.0.1", "--cacert"])
            .arg(&ca)
            .args(["-H", &bearer, url])
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(body.contains("APIVersions"), "{url}: {body}{}", String::from_utf8_lossy(&out.stderr));
    }

    // The node's service proxy, in this process, has synced: its metrics are on the API
    // server's /metrics (the process's one recorder).
    let metrics = up.kubectl(&["get", "--raw", "/metrics"]);
    assert!(metrics.contains("flotilla_service_proxy_syncs_total{result=\"ok\"}"), "{metrics}");
    assert!(metrics.contains("flotilla_service_proxy_rules{table=\"nat\"}"), "{metrics}");
}
