//! Runs the member's HTTP server (the HTTPS API server, or plain-HTTP health endpoints) on its
//! own thread: actix actors and actix-web want a single-threaded actix runtime, while the
//! store runs on the tokio pool.

use std::net::SocketAddr;
use std::time::Duration;

use actix::Addr;
use actix_web::dev::Server;
use actors::HealthActor;
use api_gateway::{PrometheusHandle, ServeError};
use raft_store::StoreNode;

/// Starts the member's health actor and the server that `serve` builds on it, and returns the
/// address the server is bound to.
pub fn start<F>(node: StoreNode, prometheus: PrometheusHandle, serve: F) -> anyhow::Result<SocketAddr>
where
    F: FnOnce(Addr<HealthActor>, PrometheusHandle) -> Result<(Server, SocketAddr), ServeError> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("flotilla-http".into()).spawn(move || {
        let system = actix_rt::System::new();
        let failed = system.block_on(async move {
            let health = HealthActor::start_supervised(node, Duration::from_millis(500));
            match serve(health, prometheus) {
                Ok((server, addr)) => {
                    let _ = tx.send(Ok(addr));
                    if let Err(e) = server.await {
                        tracing::error!(error = %e, "HTTP server stopped");
                    }
                    false
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    true
                }
            }
        });
        if failed {
            // The process exits with the error. Dropping the runtime here, under the actors
            // already started, would panic in actix's timers (no reactor) while it does.
            std::mem::forget(system);
        }
    })?;
    Ok(rx.recv()??)
}
