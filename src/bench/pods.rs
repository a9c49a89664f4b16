//! The pod startup benchmark: `flotilla up` on this machine (a real node: containerd, the
//! local busybox image) or with N hollow nodes (`flotilla agent --hollow`), then N pods
//! created by concurrent clients; each pod's latency is from its create request to the
//! watch event that shows it Running (kube's pod startup SLI, which excludes image pulls).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chaos::api_client::ApiClient;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(30);
const IMAGE: &str = "flotilla.local/busybox:latest";

#[derive(clap::Args, Clone)]
pub struct PodsBenchArgs {
    /// Pods to create.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Creates in flight at once.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Pace the creates at this many pods a second (default: as fast as the clients go).
    #[arg(long)]
    rate: Option<f64>,
    /// Run the pods on this many hollow nodes instead of this machine's containerd.
    #[arg(long)]
    hollow_nodes: Option<usize>,
    /// Where the member's data dir goes (a temporary dir by default).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// Child processes, killed (and a real node reset) when dropped.
struct Processes {
    children: Vec<Child>,
    node_state: Option<PathBuf>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let (Some(state), Ok(me)) = (&self.node_state, std::env::current_exe()) {
            let _ = Command::new(me).args(["agent", "reset", "--state-dir"]).arg(state).output();
        }
    }
}

fn spawn(args: &[String], log: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(log)?;
    Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting flotilla")
}

fn ready_nodes(list: &Value) -> usize {
    let items = list["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    items
        .iter()
        .filter(|n| n["spec"]["podCIDR"].is_string())
        .filter(|n| {
            n["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
        .count()
}

fn running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|c| !c.is_empty() && c.iter().all(|c| c["state"]["running"].is_object()))
}

pub async fn run(args: PodsBenchArgs) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let work = args.work_dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let data = work.join("data");
    std::fs::create_dir_all(&work)?;
    let port = chaos::free_port()?;
    let mut up = vec![
        "up".to_string(),
        "--data-dir".into(),
        data.display().to_string(),
        "--port".into(),
        port.to_string(),
        "--store-listen".into(),
        format!("127.0.0.1:{}", chaos::free_port()?),
        "--kubelet-port".into(),
        chaos::free_port()?.to_string(),
    ];
    if args.hollow_nodes.is_some() {
        up.push("--no-node".into());
    }
    let mut processes = Processes {
        children: vec![spawn(&up, &work.join("up.log"))?],
        node_state: args.hollow_nodes.is_none().then(|| data.join("node")),
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    while !data.join("kubeconfig").exists() || !data.join("pki/admin.key").exists() {
        anyhow::ensure!(Instant::now() < deadline, "flotilla up never wrote its kubeconfig (see {})", work.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let api = ApiClient::new(&format!("https://127.0.0.1:{port}"), &data.join("pki"))?;
    let wanted_nodes = args.hollow_nodes.unwrap_or(1);
    if let Some(count) = args.hollow_nodes {
        let agent = [
            "agent".to_string(),
            "--hollow".into(),
            "--count".into(),
            count.to_string(),
            "--kubeconfig".into(),
            data.join("kubeconfig").display().to_string(),
        ];
        processes.children.push(spawn(&agent, &work.join("agent.log"))?);
    }
    loop {
        let ready = match api.request("GET", "/api/v1/nodes", None, TIMEOUT).await {
            Ok(answer) if answer.status == 200 => ready_nodes(&answer.body),
            _ => 0,
        };
        if ready >= wanted_nodes {
            break;
        }
        if Instant::now() > deadline {
            bail!("{ready} of {wanted_nodes} nodes Ready after 120 s (see {})", work.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let nodes_ready = started.elapsed();
    eprintln!("{wanted_nodes} node(s) Ready {nodes_ready:.1?} after start; creating {} pods", args.pods);

    // The watch first, from the list's revision: no Running event can be missed.
    let list = api.request("GET", "/api/v1/namespaces/default/pods", None, TIMEOUT).await?;
    let rv = list.body["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    let (status, mut watch) = api
        .watch(&format!("/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}&allowWatchBookmarks=false"))
        .await?;
    anyhow::ensure!(status == 200, "pod watch answered {status}");

    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let create_start = Instant::now();
    let mut creators = Vec::new();
    for _ in 0..args.clients.max(1) {
        let (api, sent, next, total, rate) = (api.clone(), sent.clone(), next.clone(), args.pods, args.rate);
        creators.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                if let Some(rate) = rate.filter(|r| *r > 0.0) {
                    let due = create_start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let name = format!("startup-{i}");
                let pod = json!({
                    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                    "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "app", "image": IMAGE,
                        "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]},
                });
                sent.lock().unwrap_or_else(PoisonError::into_inner).insert(name.clone(), Instant::now());
                let answer = api.request("POST", "/api/v1/namespaces/default/pods", Some(&pod), TIMEOUT).await?;
                anyhow::ensure!(answer.status == 201, "creating {name}: {} {}", answer.status, answer.body);
            }
        }));
    }
    let mut latency_us = Histogram::<u64>::new(3)?;
    let mut seen: HashMap<String, Duration> = HashMap::new();
    let step = (args.pods / 10).max(1);
    let mut rv = rv;
    while seen.len() < args.pods {
        let event = match tokio::time::timeout(Duration::from_secs(120), watch.next()).await {
            Ok(Some(event)) => event,
            // The server ended the watch (its timeout): go on from the last revision seen.
            Ok(None) => {
                let path = format!("/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}");
                let (status, again) = api.watch(&path).await?;
                anyhow::ensure!(status == 200, "pod watch answered {status}");
                watch = again;
                continue;
            }
            Err(_) => {
                bail!("{} of {} pods Running after 120 s without news (see {})", seen.len(), args.pods, work.display())
            }
        };
        let pod = &event["object"];
        if let Some(at) = pod["metadata"]["resourceVersion"].as_str() {
            rv = at.to_string();
        }
        let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if seen.contains_key(&name) || !running(pod) {
            continue;
        }
        let Some(at) = sent.lock().unwrap_or_else(PoisonError::into_inner).get(&name).copied() else { continue };
        let latency = at.elapsed();
        latency_us.record(latency.as_micros() as u64)?;
        seen.insert(name, latency);
        if seen.len().is_multiple_of(step) {
            eprintln!("  {} / {} pods Running after {:.1?}", seen.len(), args.pods, create_start.elapsed());
        }
    }
    for creator in creators {
        creator.await??;
    }
    let total = create_start.elapsed();
    let ms = |q: f64| latency_us.value_at_quantile(q) as f64 / 1000.0;
    let kind = match args.hollow_nodes {
        Some(n) => format!("{n} hollow nodes"),
        None => "1 real node (containerd)".to_string(),
    };
    let offered = args.rate.map_or_else(|| format!("{} clients, unpaced", args.clients), |r| format!("{r} pods/s"));
    println!("| nodes | pods | creates | nodes Ready after | all Running after | pods/s | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {kind} | {} | {offered} | {:.1} s | {:.1} s | {:.0} | {:.0} | {:.0} | {:.0} |",
        args.pods,
        nodes_ready.as_secs_f64(),
        total.as_secs_f64(),
        args.pods as f64 / total.as_secs_f64(),
        ms(0.5),
        ms(0.99),
        ms(1.0)
    );
    drop(processes);
    Ok(())
}
