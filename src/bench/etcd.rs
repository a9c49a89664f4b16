//! Runs a local etcd cluster (Debian's etcd-server 3.4) on loopback, for side-by-side runs.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use chaos::free_port;

/// etcd members as child processes; dropping the cluster kills them.
pub struct EtcdCluster {
    bin: std::path::PathBuf,
    /// Each member's arguments and log file, to start it again after a kill.
    specs: Vec<(Vec<String>, std::path::PathBuf)>,
    children: Vec<Option<Child>>,
    /// Client endpoints, `127.0.0.1:port`.
    pub endpoints: Vec<String>,
}

impl EtcdCluster {
    pub async fn start(bin: &Path, base: &Path, members: usize) -> anyhow::Result<Self> {
        let ports: Vec<(u16, u16)> =
            (0..members).map(|_| Ok((free_port()?, free_port()?))).collect::<anyhow::Result<_>>()?;
        let initial: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}")).collect();
        let mut cluster =
            EtcdCluster { bin: bin.to_path_buf(), specs: Vec::new(), children: Vec::new(), endpoints: Vec::new() };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let dir = base.join(format!("etcd-{i}"));
            let args: Vec<String> = [
                "--name",
                &format!("m{i}"),
                "--data-dir",
                &dir.display().to_string(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &initial.join(","),
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "flotilla-bench",
                "--logger",
                "zap",
                "--log-level",
                "error",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            cluster.specs.push((args, base.join(format!("etcd-{i}.log"))));
            cluster.children.push(None);
            cluster.spawn(i)?;
            cluster.endpoints.push(format!("127.0.0.1:{client}"));
        }
        cluster.wait_ready(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// Process ids of the running members.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().flatten().map(Child::id).collect()
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let (args, log) = &self.specs[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let child = Command::new(&self.bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// SIGKILL member `i`.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.children[i].take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts a killed member `i` again on its data dir, and waits until it knows a leader.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i)?;
        self.spawn(i)?;
        self.wait_ready(Duration::from_secs(30)).await
    }

    /// The index of the member every running member calls leader, once they agree.
    pub async fn leader(&self, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            let mut leader = None;
            for (i, endpoint) in self.endpoints.iter().enumerate() {
                if self.children[i].is_none() {
                    continue;
                }
                let Ok(mut c) = etcd_client::Client::connect([format!("http://{endpoint}")], None).await else {
                    continue;
                };
                let Ok(status) = c.status().await else { continue };
                if status.header().is_some_and(|h| h.member_id() == status.leader()) {
                    leader = Some(i);
                }
            }
            if let Some(i) = leader {
                return Ok(i);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("etcd agrees on no leader within {timeout:?}");
            }
        }
    }

    /// Waits until every member answers and knows a leader.
    async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            if self.children[i].is_none() {
                continue;
            }
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
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
