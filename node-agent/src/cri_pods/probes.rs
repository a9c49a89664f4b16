//! Container probes (kubelet's prober): exec through CRI, httpGet and tcpSocket against the
//! pod's IP, each on its own schedule (initialDelaySeconds, periodSeconds, timeoutSeconds)
//! with success and failure thresholds. A startup probe holds back the others until it
//! passes.

use std::time::{Duration, Instant};

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::runtime::cri::Cri;

/// One probe's schedule and its run of results.
#[derive(Debug, Clone)]
pub struct Tracker {
    probe: Probe,
    last: Option<Instant>,
    successes: i32,
    failures: i32,
    /// The current verdict.
    pub ok: bool,
}

impl Tracker {
    fn new(probe: &Probe, initially: bool) -> Tracker {
        Tracker { probe: probe.clone(), last: None, successes: 0, failures: 0, ok: initially }
    }

    fn due(&self, started: Instant, now: Instant) -> bool {
        let delay = Duration::from_secs(self.probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        let period = Duration::from_secs(self.probe.period_seconds.unwrap_or(10).max(1) as u64);
        now >= started + delay && self.last.is_none_or(|last| now >= last + period)
    }

    /// Records one result; whether the verdict changed.
    fn record(&mut self, passed: bool, now: Instant) -> bool {
        self.last = Some(now);
        let before = self.ok;
        if passed {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= self.probe.success_threshold.unwrap_or(1).max(1) {
                self.ok = true;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= self.probe.failure_threshold.unwrap_or(3).max(1) {
                self.ok = false;
            }
        }
        before != self.ok
    }
}

/// The probes of one run of a container.
#[derive(Debug, Clone)]
pub struct Probes {
    /// The run they belong to (a new run starts over).
    pub run_id: String,
    started: Instant,
    startup: Option<Tracker>,
    liveness: Option<Tracker>,
    readiness: Option<Tracker>,
}

/// What the probes say after a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub started: bool,
    pub ready: bool,
    /// The liveness (or startup) probe failed past its threshold: restart the container.
    pub kill: bool,
}

/// A probe failure worth an event: which probe and what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: &'static str,
    pub output: String,
}

impl Probes {
    pub fn new(container: &Container, run_id: &str, started: Instant) -> Probes {
        Probes {
            run_id: run_id.to_string(),
            started,
            startup: container.startup_probe.as_ref().map(|p| Tracker::new(p, false)),
            liveness: container.liveness_probe.as_ref().map(|p| Tracker::new(p, true)),
            readiness: container.readiness_probe.as_ref().map(|p| Tracker::new(p, false)),
        }
    }

    pub fn verdict(&self) -> Verdict {
        let started = self.startup.as_ref().is_none_or(|t| t.ok);
        let startup_failed = self.startup.as_ref().is_some_and(|t| !t.ok && t.failures >= threshold(&t.probe));
        Verdict {
            started,
            ready: started && self.readiness.as_ref().is_none_or(|t| t.ok),
            kill: startup_failed || self.liveness.as_ref().is_some_and(|t| !t.ok),
        }
    }

    /// Runs the probes that are due; the failures seen.
    pub async fn round(&mut self, target: &Target<'_>, now: Instant) -> Vec<Failure> {
        let mut failures = Vec::new();
        let started = self.started;
        let startup_done = self.startup.as_ref().is_none_or(|t| t.ok);
        let trackers: [(&'static str, Option<&mut Tracker>); 3] = [
            ("Startup", self.startup.as_mut().filter(|_| !startup_done)),
            ("Liveness", self.liveness.as_mut().filter(|_| startup_done)),
            ("Readiness", self.readiness.as_mut().filter(|_| startup_done)),
        ];
        for (kind, tracker) in trackers {
            let Some(tracker) = tracker else { continue };
            if !tracker.due(started, now) {
                continue;
            }
            let result = run(&tracker.probe, target).await;
            if let Err(output) = &result {
                failures.push(Failure { kind, output: output.clone() });
            }
            tracker.record(result.is_ok(), now);
        }
        failures
    }
}

fn threshold(probe: &Probe) -> i32 {
    probe.failure_threshold.unwrap_or(3).max(1)
}

/// Where probes go.
pub struct Target<'a> {
    pub cri: &'a Cri,
    pub container_id: &'a str,
    pub container: &'a Container,
    pub pod_ip: &'a str,
}

fn port(value: &IntOrString, container: &Container) -> Option<u16> {
    match value {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .or_else(|| name.parse().ok()),
    }
}

/// Runs one probe: Ok, or Err with what went wrong (the event's message).
pub async fn run(probe: &Probe, target: &Target<'_>) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        return match target.cri.exec_sync(target.container_id, command, timeout).await {
            Ok(out) if out.exit_code == 0 => Ok(()),
            Ok(out) => Err(format!(
                "command exited with {}: {}",
                out.exit_code,
                String::from_utf8_lossy(&out.stdout).trim().chars().take(200).collect::<String>()
            )),
            Err(error) => Err(error.to_string()),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = port(&tcp.port, target.container).ok_or("bad port")?;
        let host = tcp.host.clone().unwrap_or_else(|| target.pod_ip.to_string());
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(format!("dial tcp {host}:{port}: {error}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    if let Some(http) = &probe.http_get {
        let port = port(&http.port, target.container).ok_or("bad port")?;
        let host = http.host.clone().unwrap_or_else(|| target.pod_ip.to_string());
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let url = format!("http://{host}:{port}{path}");
        return match tokio::time::timeout(timeout, http_get(&host, port, &path, http)).await {
            Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
            Ok(Ok(code)) => Err(format!("HTTP probe failed with statuscode: {code}")),
            Ok(Err(error)) => Err(format!("Get \"{url}\": {error}")),
            Err(_) => Err(format!("Get \"{url}\": context deadline exceeded")),
        };
    }
    // grpc probes: not supported here; a probe of no known kind passes, as kube's does.
    Ok(())
}

async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    http: &k8s_openapi::api::core::v1::HTTPGetAction,
) -> Result<u16, String> {
    let stream = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let mut request = hyper::Request::get(path)
        .header("Host", format!("{host}:{port}"))
        .header("User-Agent", "kube-probe/1.32")
        .header("Accept", "*/*");
    for header in http.http_headers.iter().flatten() {
        request = request.header(header.name.as_str(), header.value.as_str());
    }
    let request = request.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn container(spec: serde_json::Value) -> Container {
        serde_json::from_value(spec).unwrap()
    }

    #[test]
    fn thresholds_and_schedule() {
        let c = container(json!({"name": "a", "livenessProbe": {"exec": {"command": ["true"]},
            "initialDelaySeconds": 5, "periodSeconds": 2, "failureThreshold": 2},
            "readinessProbe": {"exec": {"command": ["true"]}}}));
        let t0 = Instant::now();
        let mut probes = Probes::new(&c, "id", t0);
        assert_eq!(probes.verdict(), Verdict { started: true, ready: false, kill: false });
        let live = probes.liveness.as_mut().unwrap();
        assert!(!live.due(t0, t0 + Duration::from_secs(4)));
        assert!(live.due(t0, t0 + Duration::from_secs(5)));
        live.record(false, t0 + Duration::from_secs(5));
        assert!(!live.due(t0, t0 + Duration::from_secs(6)));
        assert!(live.ok, "one failure is under the threshold");
        assert!(live.record(false, t0 + Duration::from_secs(7)));
        assert!(probes.verdict().kill);
        probes.readiness.as_mut().unwrap().record(true, t0);
        assert!(probes.verdict().ready);
    }

    #[test]
    fn a_startup_probe_holds_back_readiness_and_kills_when_it_gives_up() {
        let c = container(json!({"name": "a", "startupProbe": {"exec": {"command": ["true"]}, "failureThreshold": 1}}));
        let mut probes = Probes::new(&c, "id", Instant::now());
        assert_eq!(probes.verdict(), Verdict { started: false, ready: false, kill: false });
        probes.startup.as_mut().unwrap().record(false, Instant::now());
        assert!(probes.verdict().kill);
    }

    #[tokio::test]
    async fn tcp_and_http_probes_reach_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                let status = if request.starts_with("GET /healthz ") { "200 OK" } else { "500 Oops" };
                let _ = stream.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes()).await;
            }
        });
        let cri = crate::runtime::cri::Cri::lazy_for_tests();
        let c = container(json!({"name": "a", "ports": [{"name": "web", "containerPort": port}]}));
        let target = Target { cri: &cri, container_id: "x", container: &c, pod_ip: "127.0.0.1" };
        let probe = |spec: serde_json::Value| -> Probe { serde_json::from_value(spec).unwrap() };
        assert_eq!(run(&probe(json!({"tcpSocket": {"port": port}})), &target).await, Ok(()));
        assert_eq!(run(&probe(json!({"httpGet": {"path": "/healthz", "port": "web"}})), &target).await, Ok(()));
        let failed = run(&probe(json!({"httpGet": {"path": "/other", "port": port}})), &target).await;
        assert_eq!(failed, Err("HTTP probe failed with statuscode: 500".to_string()));
    }
}
