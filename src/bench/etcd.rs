//! Runs a local etcd cluster (Debian's etcd-server 3.4) on loopback, for side-by-side runs.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use chaos::free_port;

/// etcd members as child processes; dropping the cluster kills them.
pub struct EtcdCluster {
    children: Vec<Child>,
    /// Client endpoints, `127.0.0.1:port`.
    pub endpoints: Vec<String>,
}

impl EtcdCluster {
    pub async fn start(bin: &Path, base: &Path, members: usize) -> anyhow::Result<Self> {
        let ports: Vec<(u16, u16)> =
            (0..members).map(|_| Ok((free_port()?, free_port()?))).collect::<anyhow::Result<_>>()?;
        let initial: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}")).collect();
        let mut cluster = EtcdCluster { children: Vec::new(), endpoints: Vec::new() };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let dir = base.join(format!("etcd-{i}"));
            let log = std::fs::File::create(base.join(format!("etcd-{i}.log")))?;
            let child = Command::new(bin)
                .args(["--name", &format!("m{i}"), "--data-dir", &dir.display().to_string()])
                .args(["--listen-client-urls", &format!("http://127.0.0.1:{client}")])
                .args(["--advertise-client-urls", &format!("http://127.0.0.1:{client}")])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args(["--initial-cluster", &initial.join(","), "--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "flotilla-bench", "--logger", "zap", "--log-level", "error"])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            cluster.children.push(child);
            cluster.endpoints.push(format!("127.0.0.1:{client}"));
        }
        cluster.wait_ready(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// Waits until every member answers and knows a leader.
    async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        for endpoint in &self.endpoints {
            loop {
                tick.tick().await;
                let ready = match etcd_client::Client::connect([format!("http://{endpoint}")], None).await {
                    Ok(mut c) => c.status().await.is_ok_and(|s| s.leader() != 0),
                    Err(_) => false,
                };
                if ready {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!("etcd member {endpoint} not ready in {timeout:?}");
                }
            }
        }
        Ok(())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
