//! `loadtest-webhook`: serves the LoadTest admission webhook over HTTPS.

use std::path::PathBuf;
use std::time::Duration;

use admission_webhook::server::{self, Settings};
use clap::Parser;

/// An admission webhook for LoadTests (beta.kuar.com): `/validate` refuses
/// `spec.requestsPerSecond` over `--max-rps`, `/mutate` defaults `spec.scheme` to https.
#[derive(Parser)]
#[command(name = "loadtest-webhook", version)]
struct Args {
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: String,
    /// PEM serving certificate (chain), valid for the name the API server calls.
    #[arg(long)]
    cert: PathBuf,
    /// PEM private key of the serving certificate.
    #[arg(long)]
    key: PathBuf,
    /// The highest spec.requestsPerSecond a LoadTest may ask for.
    #[arg(long, default_value_t = 1000)]
    max_rps: u64,
    /// Milliseconds to wait before answering each review (to try the API server's timeouts).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
}

fn main() -> std::process::ExitCode {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> server::Result<()> {
    let tls = server::tls_config(&args.cert, &args.key)?;
    let settings = Settings { max_rps: args.max_rps, delay: Duration::from_millis(args.delay_ms) };
    tracing::info!(max_rps = settings.max_rps, delay_ms = args.delay_ms, "starting");
    actix_web::rt::System::new().block_on(server::serve(&args.listen, tls, settings))
}
