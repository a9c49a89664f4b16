//! The admission webhook benchmark: the latency one validating webhook adds to each create.
//! ConfigMap creates against a `flotilla up` started for it, first with no webhook, then with
//! a ValidatingWebhookConfiguration that sends every ConfigMap create to an allow-all HTTPS
//! webhook served in this process (actix-web, certificate by `api_gateway::pki`).

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::{bail, Context};
use awc::Client;
use base64::Engine;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::api::{client, post, start_member, wait_for, wait_ready};

#[derive(clap::Args, Clone)]
pub struct WebhookBenchArgs {
    /// ConfigMaps created in each of the two points.
    #[arg(long, default_value_t = 2000)]
    creates: usize,
    /// Concurrent clients, each creating its share one after another.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Where the member's data dir goes (a temporary dir by default).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// The reviews the webhook has answered.
#[derive(Default)]
struct Reviews(AtomicU64);

/// Allows every request, echoing its uid, as a minimal validating webhook does.
async fn allow(review: web::Json<Value>, reviews: web::Data<Reviews>) -> HttpResponse {
    reviews.0.fetch_add(1, Ordering::Relaxed);
    HttpResponse::Ok().json(json!({
        "apiVersion": review["apiVersion"],
        "kind": "AdmissionReview",
        "response": {"uid": review["request"]["uid"], "allowed": true},
    }))
}

/// One measured point.
struct Point {
    clients: usize,
    latency_us: Histogram<u64>,
    errors: u64,
    elapsed: Duration,
}

impl Point {
    fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    fn markdown(&self, name: &str) -> String {
        let rate = self.latency_us.len() as f64 / self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
            name,
            self.latency_us.len() + self.errors,
            self.clients,
            rate,
            self.ms(0.5),
            self.ms(0.99),
            self.ms(1.0),
            self.errors
        )
    }
}

pub async fn run(args: WebhookBenchArgs) -> anyhow::Result<()> {
    let handle = std::thread::spawn(move || actix_rt::System::new().block_on(run_local(args)));
    handle.join().map_err(|_| anyhow::anyhow!("the benchmark thread panicked"))?
}

async fn run_local(args: WebhookBenchArgs) -> anyhow::Result<()> {
    if args.clients == 0 || args.creates == 0 {
        bail!("--clients and --creates must be positive");
    }
    let temp = tempfile::tempdir()?;
    let dir = args.work_dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let member = start_member(&dir)?;
    let base = format!("https://localhost:{}", member.port);
    wait_for(&member.dir.join("pki/admin.key"))?;
    let client = Rc::new(client(&member.dir.join("pki"), args.clients + 4)?);
    wait_ready(&client, &base).await?;
    eprintln!("flotilla up ready on {base}; data in {}", member.dir.display());

    // The webhook: its own CA and a serving certificate for 127.0.0.1.
    let pki = api_gateway::pki::load_or_create(&dir.join("webhook-pki"), &[]).context("webhook certificates")?;
    let tls = api_gateway::tls::server_config(&pki).context("webhook TLS settings")?;
    let reviews = web::Data::new(Reviews::default());
    let data = reviews.clone();
    let server = HttpServer::new(move || App::new().app_data(data.clone()).route("/validate", web::post().to(allow)))
        .workers(2)
        // Without it the answer waits behind the TLS 1.3 session tickets for the client's
        // delayed ACK: ~40 ms on every fresh connection.
        .tcp_nodelay(true)
        .disable_signals()
        .bind_rustls_0_23(("127.0.0.1", 0), tls)?;
    let port = server.addrs().first().map(|a| a.port()).context("the webhook has no address")?;
    let server = server.run();
    let webhook = server.handle();
    actix_rt::spawn(server);
    eprintln!("allow-all webhook on https://127.0.0.1:{port}/validate");

    for ns in ["bench-plain", "bench-webhook"] {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        post(&client, &format!("{base}/api/v1/namespaces"), &body).await?;
    }
    // One client shows the latency a webhook call adds; many show what is left under load.
    let concurrencies = if args.clients > 1 { vec![1, args.clients] } else { vec![1] };
    // Warm up connections and caches with one create per client.
    creates(&client, &base, "bench-plain", "warm", args.clients, args.clients).await;
    let mut plain = Vec::new();
    for &clients in &concurrencies {
        eprintln!("{} creates, {clients} clients, no webhook", args.creates);
        let prefix = format!("cm-{clients}");
        plain.push(creates(&client, &base, "bench-plain", &prefix, args.creates, clients).await);
    }

    register(&client, &base, port, &pki.ca.cert_pem).await?;
    wait_effective(&client, &base, &reviews).await?;
    creates(&client, &base, "bench-webhook", "warm", args.clients, args.clients).await;
    let before = reviews.0.load(Ordering::Relaxed);
    let mut hooked = Vec::new();
    for &clients in &concurrencies {
        eprintln!("{} creates, {clients} clients, one validating webhook", args.creates);
        let prefix = format!("cm-{clients}");
        hooked.push(creates(&client, &base, "bench-webhook", &prefix, args.creates, clients).await);
    }
    let reviewed = reviews.0.load(Ordering::Relaxed) - before;
    webhook.stop(true).await;

    println!("| point | creates | clients | creates/s | p50 ms | p99 ms | max ms | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    for (p, h) in plain.iter().zip(&hooked) {
        println!("{}", p.markdown("create, no webhook"));
        println!("{}", h.markdown("create, one validating webhook"));
    }
    println!();
    for (p, h) in plain.iter().zip(&hooked) {
        println!(
            "clients={}: the webhook adds p50 {:+.2} ms ({:.2}x), p99 {:+.2} ms ({:.2}x)",
            p.clients,
            h.ms(0.5) - p.ms(0.5),
            h.ms(0.5) / p.ms(0.5).max(1e-9),
            h.ms(0.99) - p.ms(0.99),
            h.ms(0.99) / p.ms(0.99).max(1e-9),
        );
    }
    let created: u64 = hooked.iter().map(|h| h.latency_us.len()).sum();
    println!("the webhook answered {reviewed} reviews for {created} creates");
    let errors: u64 = plain.iter().chain(&hooked).map(|p| p.errors).sum();
    if errors > 0 {
        bail!("{errors} creates failed");
    }
    Ok(())
}

/// The ValidatingWebhookConfiguration sending every ConfigMap create to the webhook.
async fn register(client: &Client, base: &str, port: u16, ca_pem: &str) -> anyhow::Result<()> {
    let config = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "bench-allow-all"},
        "webhooks": [{
            "name": "allow-all.bench.flotilla.dev",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "clientConfig": {
                "url": format!("https://127.0.0.1:{port}/validate"),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem),
            },
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}],
        }],
    });
    let url = format!("{base}/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations");
    post(client, &url, &config).await
}

/// Creates probe ConfigMaps until one reaches the webhook: the configuration is in effect.
async fn wait_effective(client: &Client, base: &str, reviews: &Reviews) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("{base}/api/v1/namespaces/bench-webhook/configmaps");
    for i in 0.. {
        if reviews.0.load(Ordering::Relaxed) > 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the ValidatingWebhookConfiguration never took effect");
        }
        post(client, &url, &configmap(&format!("probe-{i}"))).await?;
    }
    Ok(())
}

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "x".repeat(256)}})
}

/// `total` ConfigMap creates in `namespace` by `clients` concurrent clients (closed loop).
async fn creates(
    client: &Rc<Client>,
    base: &str,
    namespace: &str,
    prefix: &str,
    total: usize,
    clients: usize,
) -> Point {
    let url = format!("{base}/api/v1/namespaces/{namespace}/configmaps");
    let per_client = total.div_ceil(clients);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, url, prefix) = (client.clone(), url.clone(), prefix.to_string());
        let range = (c * per_client)..((c + 1) * per_client).min(total);
        tasks.push(actix_rt::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("3 significant figures is valid");
            let mut errors = 0u64;
            for i in range {
                let t = Instant::now();
                let obj = configmap(&format!("{prefix}-{i}"));
                match client.post(&url).send_json(&obj).await {
                    Ok(r) if r.status().is_success() => {
                        let _ = hist.record(t.elapsed().as_micros() as u64);
                    }
                    _ => errors += 1,
                }
            }
            (hist, errors)
        }));
    }
    let mut point = Point {
        clients,
        latency_us: Histogram::new(3).expect("3 significant figures is valid"),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        match task.await {
            Ok((hist, errors)) => {
                let _ = point.latency_us.add(hist);
                point.errors += errors;
            }
            Err(_) => point.errors += 1,
        }
    }
    point.elapsed = start.elapsed();
    point
}
