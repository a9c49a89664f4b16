//! The API benchmark: creates, gets, full lists and watches over HTTPS against a
//! `flotilla up` started for it, with many concurrent clients using the admin client
//! certificate. Each point prints a markdown row for BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use awc::Client;
use futures::StreamExt;
use hdrhistogram::Histogram;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

#[derive(clap::Args, Clone)]
pub struct ApiBenchArgs {
    /// Offered create rate (creates/s) of the open-loop create point.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Measured seconds of each create and get point.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent clients of the closed-loop points.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Pods in the namespace the list point lists whole.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Concurrent watchers of the watch point.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Changes every watcher must see.
    #[arg(long, default_value_t = 100)]
    events: usize,
    /// CRDs created at once by the CRD point (0: skip it).
    #[arg(long, default_value_t = 50)]
    crds: usize,
    /// Where the member's data dir goes (a temporary dir by default).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// A `flotilla up` child process, killed when dropped.
pub(super) struct Member {
    child: Child,
    pub(super) port: u16,
    pub(super) dir: PathBuf,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn start_member(dir: &Path) -> anyhow::Result<Member> {
    let port = chaos::free_port()?;
    let store = format!("127.0.0.1:{}", chaos::free_port()?);
    let log = std::fs::File::create(dir.join("member.log"))?;
    let child = Command::new(std::env::current_exe()?)
        .args(["up", "--data-dir", &dir.join("data").display().to_string(), "--port", &port.to_string()])
        .args(["--store-listen", &store, "--no-node"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting flotilla up")?;
    Ok(Member { child, port, dir: dir.join("data") })
}

/// An HTTPS client trusting the member's CA and presenting the admin certificate.
pub(super) fn client(pki: &Path, connections: usize) -> anyhow::Result<Client> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(pki.join("ca.crt"))?)?;
    let chain = vec![CertificateDer::from_pem_file(pki.join("admin.crt"))?];
    let key = PrivateKeyDer::from_pem_file(pki.join("admin.key"))?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    let connector = awc::Connector::new().rustls_0_23(Arc::new(config)).limit(connections);
    Ok(Client::builder().connector(connector).timeout(Duration::from_secs(60)).finish())
}

/// One measured point: latencies in microseconds, errors, elapsed time.
struct Point {
    name: String,
    clients: usize,
    latency_us: Histogram<u64>,
    errors: u64,
    elapsed: Duration,
}

impl Point {
    fn new(name: impl Into<String>, clients: usize) -> Point {
        let latency_us = Histogram::new(3).expect("3 significant figures is valid");
        Point { name: name.into(), clients, latency_us, errors: 0, elapsed: Duration::ZERO }
    }

    fn markdown(&self) -> String {
        let ms = |q: f64| self.latency_us.value_at_quantile(q) as f64 / 1000.0;
        let rate = self.latency_us.len() as f64 / self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
            self.name,
            self.clients,
            rate,
            ms(0.5),
            ms(0.99),
            ms(1.0),
            self.errors
        )
    }
}

pub async fn run(args: ApiBenchArgs) -> anyhow::Result<()> {
    let handle = std::thread::spawn(move || actix_rt::System::new().block_on(run_local(args)));
    handle.join().map_err(|_| anyhow::anyhow!("the benchmark thread panicked"))?
}

async fn run_local(args: ApiBenchArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = args.work_dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let member = start_member(&dir)?;
    let base = format!("https://localhost:{}", member.port);
    // The PKI appears once the member has started.
    wait_for(&member.dir.join("pki/admin.key"))?;
    let client = Rc::new(client(&member.dir.join("pki"), args.watchers + args.clients + 16)?);
    wait_ready(&client, &base).await?;
    eprintln!("flotilla up ready on {base}; data in {}", member.dir.display());
    for ns in ["bench", "bench-pods", "bench-watch"] {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        post(&client, &format!("{base}/api/v1/namespaces"), &body).await?;
    }

    let crds = if args.crds > 0 {
        eprintln!("{} CRDs created at once", args.crds);
        Some(super::crds::established(&client, &base, args.crds).await?)
    } else {
        None
    };
    let mut points = Vec::new();
    eprintln!("open-loop creates at {}/s for {} s", args.rate, args.seconds);
    points.push(open_loop_creates(&client, &base, &args).await);
    eprintln!("closed-loop creates, {} clients", args.clients);
    points.push(closed_loop(&client, &base, &args, "create (closed loop)", Verb::Create).await);
    eprintln!("closed-loop gets, {} clients", args.clients);
    points.push(closed_loop(&client, &base, &args, "get", Verb::Get).await);
    eprintln!("creating {} pods", args.pods);
    create_pods(&client, &base, &args).await?;
    eprintln!("listing {} pods", args.pods);
    points.push(full_lists(&client, &base, &args).await);
    println!("| point | clients | ops/s | p50 ms | p99 ms | max ms | errors |");
    println!("|---|---|---|---|---|---|---|");
    for p in &points {
        println!("{}", p.markdown());
    }
    if let Some((established, served)) = crds {
        println!(
            "\n{} CRDs created at once: all Established after {:.0} ms, all serving their resource after {:.0} ms",
            args.crds,
            established.as_secs_f64() * 1000.0,
            served.as_secs_f64() * 1000.0
        );
    }
    eprintln!("{} watchers, {} changes", args.watchers, args.events);
    let (complete, elapsed) = watchers(&client, &base, &args).await?;
    println!(
        "\n{} of {} watchers saw all {} changes, in order; the last one {:.0} ms after the first write",
        complete,
        args.watchers,
        args.events,
        elapsed.as_secs_f64() * 1000.0
    );
    Ok(())
}

pub(super) fn wait_for(path: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        if Instant::now() > deadline {
            bail!("{} never appeared", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

pub(super) async fn wait_ready(client: &Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("flotilla up never became ready");
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn post(client: &Client, url: &str, body: &Value) -> anyhow::Result<()> {
    let mut response = client.post(url).send_json(body).await.map_err(|e| anyhow::anyhow!("POST {url}: {e}"))?;
    if !response.status().is_success() && response.status().as_u16() != 409 {
        let text = response.body().await.unwrap_or_default();
        bail!("POST {url}: {} {}", response.status(), String::from_utf8_lossy(&text));
    }
    Ok(())
}

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "x".repeat(256)}})
}

/// Creates at a fixed offered rate; each latency counts from when the request was due, so
/// a stalled server shows in the figures (no coordinated omission).
async fn open_loop_creates(client: &Rc<Client>, base: &str, args: &ApiBenchArgs) -> Point {
    let url = format!("{base}/api/v1/namespaces/bench/configmaps");
    let total = args.rate * args.seconds;
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + interval * i as u32;
        actix_rt::time::sleep_until(due.into()).await;
        let (client, url) = (client.clone(), url.clone());
        tasks.push(actix_rt::spawn(async move {
            let ok = matches!(client.post(&url).send_json(&configmap(&format!("open-{i}"))).await, Ok(r) if r.status().is_success());
            (ok, due.elapsed())
        }));
    }
    let mut point = Point::new(format!("create at {}/s (open loop)", args.rate), 0);
    for task in tasks {
        match task.await {
            Ok((true, latency)) => {
                let _ = point.latency_us.record(latency.as_micros() as u64);
            }
            _ => point.errors += 1,
        }
    }
    point.elapsed = start.elapsed();
    point
}

#[derive(Clone, Copy)]
enum Verb {
    Create,
    Get,
}

async fn closed_loop(client: &Rc<Client>, base: &str, args: &ApiBenchArgs, name: &str, verb: Verb) -> Point {
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let start = Instant::now();
    let existing = (args.rate * args.seconds).max(1);
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (client, base) = (client.clone(), base.to_string());
        tasks.push(actix_rt::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("3 significant figures is valid");
            let mut errors = 0u64;
            let mut i = 0u64;
            while Instant::now() < end {
                let t = Instant::now();
                let ok = match verb {
                    Verb::Create => {
                        let url = format!("{base}/api/v1/namespaces/bench/configmaps");
                        let obj = configmap(&format!("closed-{c}-{i}"));
                        matches!(client.post(&url).send_json(&obj).await, Ok(r) if r.status().is_success())
                    }
                    Verb::Get => {
                        let n = (c as u64 * 7919 + i * 104_729) % existing;
                        let url = format!("{base}/api/v1/namespaces/bench/configmaps/open-{n}");
                        match client.get(&url).send().await {
                            Ok(mut r) => r.status().is_success() && r.body().limit(1 << 20).await.is_ok(),
                            Err(_) => false,
                        }
                    }
                };
                if ok {
                    let _ = hist.record(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
                i += 1;
            }
            (hist, errors)
        }));
    }
    let mut point = Point::new(name, args.clients);
    for task in tasks {
        if let Ok((hist, errors)) = task.await {
            let _ = point.latency_us.add(hist);
            point.errors += errors;
        }
    }
    point.elapsed = start.elapsed();
    point
}

async fn create_pods(client: &Rc<Client>, base: &str, args: &ApiBenchArgs) -> anyhow::Result<()> {
    let url = format!("{base}/api/v1/namespaces/bench-pods/pods");
    let per_client = args.pods.div_ceil(args.clients);
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (client, url) = (client.clone(), url.clone());
        let range = (c * per_client)..((c + 1) * per_client).min(args.pods);
        tasks.push(actix_rt::spawn(async move {
            for i in range {
                let pod = json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("pod-{i}"), "labels": {"app": "bench", "shard": (i % 10).to_string()}},
                    "spec": {"nodeName": format!("node-{}", i % 100),
                             "containers": [{"name": "main", "image": "registry.local/bench:1", "ports": [{"containerPort": 8080}]}]}
                });
                post(&client, &url, &pod).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| anyhow::anyhow!("pod creator: {e}"))??;
    }
    Ok(())
}

/// Twenty full lists of the pods namespace, one after another.
async fn full_lists(client: &Rc<Client>, base: &str, args: &ApiBenchArgs) -> Point {
    let url = format!("{base}/api/v1/namespaces/bench-pods/pods");
    let mut point = Point::new(format!("list {} pods", args.pods), 1);
    let start = Instant::now();
    for _ in 0..20 {
        let t = Instant::now();
        let body = match client.get(&url).send().await {
            Ok(mut r) => r.body().limit(1 << 30).await.ok(),
            Err(_) => None,
        };
        // Timed to the last byte received; the check below parses outside the timing.
        let latency = t.elapsed();
        let complete = body.is_some_and(|body| {
            serde_json::from_slice::<Value>(&body)
                .is_ok_and(|list| list["items"].as_array().is_some_and(|items| items.len() == args.pods))
        });
        if complete {
            let _ = point.latency_us.record(latency.as_micros() as u64);
        } else {
            point.errors += 1;
        }
    }
    point.elapsed = start.elapsed();
    point
}

/// Starts the watchers, makes the changes, and waits until every watcher has seen every
/// change (or 60 s pass). Returns how many saw them all, and when the last one did.
async fn watchers(client: &Rc<Client>, base: &str, args: &ApiBenchArgs) -> anyhow::Result<(usize, Duration)> {
    let list_url = format!("{base}/api/v1/namespaces/bench-watch/configmaps");
    let mut response = client.get(&list_url).send().await.map_err(|e| anyhow::anyhow!("list: {e}"))?;
    let list: Value = serde_json::from_slice(&response.body().await?)?;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    let (started_tx, mut started_rx) = futures::channel::mpsc::channel::<()>(args.watchers);
    let first_write = Rc::new(std::cell::Cell::new(None::<Instant>));
    let mut tasks = Vec::new();
    for _ in 0..args.watchers {
        let url = format!("{list_url}?watch=true&resourceVersion={rv}&timeoutSeconds=120");
        let (client, mut started, want) = (client.clone(), started_tx.clone(), args.events);
        tasks.push(actix_rt::spawn(async move {
            let Ok(mut stream) = client.get(&url).send().await else { return None };
            let _ = started.try_send(());
            let (mut buffer, mut seen) = (Vec::new(), 0usize);
            while let Some(Ok(chunk)) = stream.next().await {
                buffer.extend_from_slice(&chunk);
                while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    let event: Value = serde_json::from_slice(&line).ok()?;
                    let name = event["object"]["metadata"]["name"].as_str().unwrap_or_default();
                    // Events must arrive in order: change `seen` is named `w-{seen}`.
                    if event["type"] == "ADDED" && name == format!("w-{seen}") {
                        seen += 1;
                    }
                    if seen == want {
                        return Some(Instant::now());
                    }
                }
            }
            None
        }));
    }
    drop(started_tx);
    let mut started = 0;
    while started < args.watchers {
        match actix_rt::time::timeout(Duration::from_secs(60), started_rx.next()).await {
            Ok(Some(())) => started += 1,
            _ => break,
        }
    }
    eprintln!("{started} watchers connected");
    first_write.set(Some(Instant::now()));
    let url = format!("{base}/api/v1/namespaces/bench-watch/configmaps");
    for i in 0..args.events {
        post(client, &url, &configmap(&format!("w-{i}"))).await?;
    }
    let t0 = first_write.get().unwrap_or_else(Instant::now);
    let mut complete = 0;
    let mut last = Duration::ZERO;
    for task in tasks {
        if let Ok(Ok(Some(done))) = actix_rt::time::timeout(Duration::from_secs(60), task).await {
            complete += 1;
            last = last.max(done.saturating_duration_since(t0));
        }
    }
    Ok((complete, last))
}
