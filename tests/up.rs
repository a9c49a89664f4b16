//! End-to-end: the real `flotilla up` process serves health endpoints and its store, keeps
//! its data across restarts, and refuses a data dir written in another format.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chaos::free_port;
use raft_store::client::StoreClient;

const DEADLINE: Duration = Duration::from_secs(30);

struct Up {
    child: Child,
    http: u16,
    store: String,
}

impl Up {
    fn start(dir: &Path) -> Up {
        let http = free_port().unwrap();
        let store = format!("127.0.0.1:{}", free_port().unwrap());
        let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["up", "--data-dir", &dir.display().to_string(), "--port", &http.to_string()])
            .args(["--store-listen", &store])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Up { child, http, store }
    }

    /// Waits for /readyz to answer 200, polling until the deadline.
    fn wait_ready(&self) {
        let deadline = Instant::now() + DEADLINE;
        let mut last = String::new();
        while Instant::now() < deadline {
            match http_get(self.http, "/readyz") {
                Ok((200, _)) => return,
                Ok((code, body)) => last = format!("{code} {body}"),
                Err(e) => last = e.to_string(),
            }
            std::thread::yield_now();
        }
        panic!("flotilla up never became ready: {last}");
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "flotilla up exited with {exit}");
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((code, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flotilla_up_serves_health_and_metrics_and_keeps_data_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    assert_eq!(http_get(up.http, "/livez").unwrap().0, 200);
    let client = StoreClient::new(&up.store).unwrap();
    let mut last = 0;
    for i in 0..20 {
        last = client.put(format!("/e2e/{i}"), format!("v{i}")).await.unwrap();
    }
    let (code, metrics) = http_get(up.http, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(metrics.contains("flotilla_store_applied_entries_total"), "{metrics}");
    up.stop();

    let up = Up::start(dir.path());
    up.wait_ready();
    let client = StoreClient::new(&up.store).unwrap();
    let all = client.range(&raft_store::RangeRequest::prefix("/e2e/"), true).await.unwrap();
    assert_eq!(all.count, 20);
    assert_eq!(all.revision, last);
    assert_eq!(client.put("/e2e/after", "x").await.unwrap(), last + 1, "revisions keep rising");
    up.stop();
}

#[test]
fn a_data_dir_written_in_another_format_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("FLOTILLA_FORMAT"), "99\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["up", "--data-dir", &dir.path().display().to_string()])
        .args(["--port", &free_port().unwrap().to_string()])
        .args(["--store-listen", &format!("127.0.0.1:{}", free_port().unwrap())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("store format 99") && stderr.contains("reads format 1"), "{stderr}");
}
