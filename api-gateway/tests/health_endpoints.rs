//! The health and metrics endpoints over real HTTP, against a real single-member store.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actors::HealthActor;
use api_gateway::{install_prometheus, serve};
use raft_store::{StoreConfig, StoreNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response as (status code, raw headers, body).
struct Response {
    code: u16,
    headers: String,
    body: String,
}

/// Sends `GET path` over HTTP/1.1 with `Connection: close` and reads the whole answer.
async fn get(addr: std::net::SocketAddr, path: &str) -> Response {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let code = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    Response { code, headers: headers.to_ascii_lowercase(), body: body.to_string() }
}

// One test function: the Prometheus recorder is global and installs once per process.
#[actix_rt::test]
async fn endpoints_report_health_and_metrics_of_a_single_member() {
    let prometheus = install_prometheus().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = StoreNode::start(StoreConfig::new(1, dir.path(), "127.0.0.1:0".parse().unwrap())).await.unwrap();
    node.initialize(&BTreeMap::from([(1, node.addr().to_string())])).await.unwrap();
    let health = HealthActor::start_supervised(node.clone(), Duration::from_millis(10));
    let (server, addr) = serve("127.0.0.1:0".parse().unwrap(), health, prometheus).unwrap();
    let handle = server.handle();
    actix_rt::spawn(server);

    let deadline = Instant::now() + Duration::from_secs(10);
    let ready = loop {
        let r = get(addr, "/readyz").await;
        if r.code == 200 || Instant::now() >= deadline {
            break r;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((ready.code, ready.body.as_str()), (200, "ok"));

    let verbose = get(addr, "/readyz?verbose").await;
    assert_eq!((verbose.code, verbose.body.as_str()), (200, "[+]store ok\nreadyz check passed\n"));

    let live = get(addr, "/livez").await;
    assert_eq!((live.code, live.body.as_str()), (200, "ok"));

    assert_eq!(get(addr, "/nope").await.code, 404);

    node.put("k", "v").await.unwrap();
    let metrics = get(addr, "/metrics").await;
    assert_eq!(metrics.code, 200);
    assert!(metrics.headers.contains("content-type: text/plain; version=0.0.4"), "{}", metrics.headers);
    assert!(metrics.body.contains("flotilla_store_"), "{}", metrics.body);
    assert!(metrics.body.contains("flotilla_http_requests_total"), "{}", metrics.body);
    assert!(metrics.body.contains(r#"path="/readyz""#), "{}", metrics.body);

    handle.stop(true).await;
    node.shutdown().await;
}
