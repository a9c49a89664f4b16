//! Runs the HTTP endpoints (/livez, /readyz, /metrics) on their own thread: actix actors and
//! actix-web want a single-threaded actix runtime, while the store runs on the tokio pool.

use std::net::SocketAddr;
use std::time::Duration;

use actors::HealthActor;
use api_gateway::PrometheusHandle;
use raft_store::StoreNode;

/// Starts the endpoints and returns the address they are bound to.
pub fn start(node: StoreNode, bind: SocketAddr, prometheus: PrometheusHandle) -> anyhow::Result<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("flotilla-http".into()).spawn(move || {
        let system = actix_rt::System::new();
        system.block_on(async move {
            let health = HealthActor::start_supervised(node, Duration::from_millis(500));
            match api_gateway::serve(bind, health, prometheus) {
                Ok((server, addr)) => {
                    let _ = tx.send(Ok(addr));
                    if let Err(e) = server.await {
                        tracing::error!(error = %e, "HTTP endpoints stopped");
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
    })?;
    let addr = rx.recv()?.map_err(|e| anyhow::anyhow!("binding HTTP endpoints on {bind}: {e}"))?;
    Ok(addr)
}
