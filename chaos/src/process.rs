//! Runs `flotilla server` members as child processes on loopback ports, with faults:
//! SIGKILL, SIGSTOP/SIGCONT and restart on the same data dir.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use raft_store::client::StoreClient;
use raft_store::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Starting or signalling a process failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The cluster did not reach the wanted state before the deadline.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A member id the cluster does not know.
    #[error("no member {0}")]
    NoMember(NodeId),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Election timings for tests: fast failover on loopback.
pub const FAST_ELECTIONS: [&str; 6] =
    ["--heartbeat-ms", "50", "--election-timeout-min-ms", "300", "--election-timeout-max-ms", "600"];

/// A free TCP port on 127.0.0.1 (free when asked).
///
/// Taken from 10000-29999, below the kernel's ephemeral range (32768 and up by default) and
/// the NodePort range: a process restarted on its port must find it unused, and a port from
/// the ephemeral range may meanwhile have become some outgoing connection's local port (seen:
/// a member restarted on such a port could not bind it for 20 s).
pub fn free_port() -> Result<u16> {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = rng.gen_range(10_000..30_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Member `id`'s store address: its own loopback address `127.0.1.<id>` (every 127/8 address
/// is the loopback device's) and a free port. Members connect to each other from their own
/// address, so that [`FlotillaCluster::partition`] can cut pairs of members apart; clients
/// (from 127.0.0.1) are never cut off.
fn member_addr(id: NodeId) -> Result<String> {
    let ip = format!("127.0.1.{}", id.clamp(1, 254));
    Ok(format!("{ip}:{}", TcpListener::bind(format!("{ip}:0"))?.local_addr()?.port()))
}

/// The `flotilla` binary: `$FLOTILLA_BIN`, else the one cargo built next to the test binary.
pub fn flotilla_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("FLOTILLA_BIN") {
        return Ok(PathBuf::from(bin));
    }
    // Test binaries live in target/<profile>/deps; the flotilla binary in target/<profile>.
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "cannot locate the target directory"))?;
    let bin = profile_dir.join("flotilla");
    if !bin.exists() {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} not found: run `cargo build --bin flotilla` first or set FLOTILLA_BIN", bin.display()),
        )));
    }
    Ok(bin)
}

struct Member {
    /// `https://127.0.0.1:PORT` when the member serves the Kubernetes API.
    api: Option<String>,
    addr: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

/// With the shared certificates of `pki`, a member serves the Kubernetes API on a free
/// loopback port: its flags are added to `how`, its URL returned.
fn serve_api(pki: Option<&Path>, how: &mut Vec<String>) -> Result<Option<String>> {
    let Some(pki) = pki else { return Ok(None) };
    let api = format!("127.0.0.1:{}", free_port()?);
    how.extend(["--api-addr".into(), api.clone(), "--pki-dir".into(), pki.display().to_string()]);
    Ok(Some(format!("https://{api}")))
}

/// A multi-process cluster. Dropping it kills every member.
pub struct FlotillaCluster {
    bin: PathBuf,
    base: PathBuf,
    members: BTreeMap<NodeId, Member>,
    /// The iptables rules of a partition in force, to delete when it heals.
    partition: Vec<Vec<String>>,
    /// The shared certificates when the members serve the API.
    pki: Option<PathBuf>,
}

impl FlotillaCluster {
    /// Starts members 1..=n under `base` (one data dir and log file each), bootstrapped
    /// together. `extra` arguments go to every member (e.g. election timings).
    pub fn start(bin: &Path, base: &Path, n: u64, extra: &[&str]) -> Result<Self> {
        Self::bootstrap(bin, base, n, extra, None)
    }

    /// [`Self::start`], every member also serving the Kubernetes API over HTTPS with the
    /// certificates in `base/pki` (made first by `flotilla cluster pki`; see [`Self::pki_dir`]).
    pub fn start_with_api(bin: &Path, base: &Path, n: u64, extra: &[&str]) -> Result<Self> {
        let pki = base.join("pki");
        let made = Command::new(bin).args(["cluster", "pki", "--dir"]).arg(&pki).stderr(Stdio::null()).status()?;
        if !made.success() {
            return Err(Error::Io(std::io::Error::other(format!("flotilla cluster pki failed: {made}"))));
        }
        Self::bootstrap(bin, base, n, extra, Some(&pki))
    }

    /// Members 1..=n bootstrapped together; with `pki`, each serving the API on a free port.
    fn bootstrap(bin: &Path, base: &Path, n: u64, extra: &[&str], pki: Option<&Path>) -> Result<Self> {
        let addrs: BTreeMap<NodeId, String> = (1..=n).map(|id| Ok((id, member_addr(id)?))).collect::<Result<_>>()?;
        let initial: Vec<String> = addrs.iter().map(|(id, a)| format!("{id}={a}")).collect();
        let mut cluster = FlotillaCluster {
            bin: bin.to_path_buf(),
            base: base.to_path_buf(),
            members: BTreeMap::new(),
            partition: Vec::new(),
            pki: pki.map(Path::to_path_buf),
        };
        for (id, addr) in &addrs {
            let mut how = vec!["--initial-cluster".to_string(), initial.join(",")];
            let api = serve_api(pki, &mut how)?;
            let how: Vec<&str> = how.iter().map(String::as_str).collect();
            cluster.add(*id, addr.clone(), &how, extra)?;
            if let Some(member) = cluster.members.get_mut(id) {
                member.api = api;
            }
        }
        Ok(cluster)
    }

    /// The directory of the members' data and logs.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The shared certificates of a cluster started by [`Self::start_with_api`]: `ca.crt`,
    /// `admin.crt`, `admin.key` are what a client needs.
    pub fn pki_dir(&self) -> PathBuf {
        self.base.join("pki")
    }

    /// The API server URL of member `id` (started by [`Self::start_with_api`]).
    pub fn api(&self, id: NodeId) -> Result<&str> {
        let member = self.members.get(&id).ok_or(Error::NoMember(id))?;
        member.api.as_deref().ok_or(Error::NoMember(id))
    }

    /// Starts a new member `id` that joins the running cluster through member `via`.
    /// With the API when the cluster serves it.
    pub fn join(&mut self, id: NodeId, via: NodeId, extra: &[&str]) -> Result<()> {
        let seed = self.addr(via)?.to_string();
        let mut how = vec!["--join".to_string(), seed];
        let api = serve_api(self.pki.as_deref(), &mut how)?;
        let how: Vec<&str> = how.iter().map(String::as_str).collect();
        self.add(id, member_addr(id)?, &how, extra)?;
        if let Some(member) = self.members.get_mut(&id) {
            member.api = api;
        }
        Ok(())
    }

    /// Replaces member `id` online: takes it out of the voters through member `via`, stops
    /// it, forgets it and deletes its data dir, and joins a new member (the next unused id) in its place. Returns
    /// the new member's id once it is a voter.
    pub async fn replace(&mut self, id: NodeId, via: NodeId, extra: &[&str], timeout: Duration) -> Result<NodeId> {
        let client = self.client(via)?;
        let store = |e: raft_store::StoreError| Error::Io(std::io::Error::other(e.to_string()));
        let voters = client.status().await.map_err(store)?.voters;
        client.change_membership(voters.into_iter().filter(|v| *v != id).collect()).await.map_err(store)?;
        self.kill(id)?;
        self.members.remove(&id);
        // Its data is of no use any more; a long run replaces hundreds of members and
        // would otherwise fill the disk (its log stays, for the post-mortem).
        let _ = std::fs::remove_dir_all(self.base.join(format!("member-{id}")));
        let new = self.members.keys().max().copied().unwrap_or(0).max(id) + 1;
        self.join(new, via, extra)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(status) = self.client(new)?.status().await {
                if status.voters.contains(&new) {
                    return Ok(new);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "member {new} did not become a voter in place of {id}\n{}",
                    self.log_tails(&self.running())
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn add(&mut self, id: NodeId, addr: String, how: &[&str], extra: &[&str]) -> Result<()> {
        let dir = self.base.join(format!("member-{id}"));
        let mut args: Vec<String> = vec![
            "server".into(),
            "--id".into(),
            id.to_string(),
            "--data-dir".into(),
            dir.display().to_string(),
            "--listen".into(),
            addr.clone(),
        ];
        args.extend(how.iter().chain(extra).map(|s| s.to_string()));
        let log = self.base.join(format!("member-{id}.log"));
        self.members.insert(id, Member { api: None, addr, args, log, child: None });
        self.spawn(id)
    }

    fn spawn(&mut self, id: NodeId) -> Result<()> {
        let member = self.members.get_mut(&id).ok_or(Error::NoMember(id))?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&member.log)?;
        let child = Command::new(&self.bin)
            .args(&member.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        member.child = Some(child);
        Ok(())
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.members.keys().copied().collect()
    }

    /// Process ids of the running members.
    pub fn pids(&self) -> Vec<u32> {
        self.members.values().filter_map(|m| m.child.as_ref().map(Child::id)).collect()
    }

    pub fn running(&self) -> Vec<NodeId> {
        self.members.iter().filter(|(_, m)| m.child.is_some()).map(|(id, _)| *id).collect()
    }

    pub fn addr(&self, id: NodeId) -> Result<&str> {
        Ok(&self.members.get(&id).ok_or(Error::NoMember(id))?.addr)
    }

    pub fn client(&self, id: NodeId) -> Result<StoreClient> {
        StoreClient::new(self.addr(id)?).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))
    }

    /// SIGKILL: the member gets no chance to flush or say goodbye.
    pub fn kill(&mut self, id: NodeId) -> Result<()> {
        let member = self.members.get_mut(&id).ok_or(Error::NoMember(id))?;
        if let Some(mut child) = member.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Cuts the members of `side` off from the others (both ways) with iptables rules on
    /// their store ports, until [`Self::heal`]. Clients still reach every member's API.
    pub fn partition(&mut self, side: &[NodeId]) -> Result<()> {
        self.heal()?;
        let split = |id: &NodeId| -> Result<(String, String)> {
            let addr = self.addr(*id)?;
            let (ip, port) = addr.rsplit_once(':').unwrap_or((addr, ""));
            Ok((ip.to_string(), port.to_string()))
        };
        let (inside, outside): (Vec<NodeId>, Vec<NodeId>) = self.ids().into_iter().partition(|id| side.contains(id));
        let mut rules = Vec::new();
        for a in &inside {
            for b in &outside {
                let ((a_ip, a_port), (b_ip, b_port)) = (split(a)?, split(b)?);
                for (from, to, port) in [(&a_ip, &b_ip, &b_port), (&b_ip, &a_ip, &a_port)] {
                    let rule: Vec<String> = ["INPUT", "-p", "tcp", "-s", from, "-d", to, "--dport", port, "-j", "DROP"]
                        .iter()
                        .map(|s| s.to_string())
                        .collect();
                    iptables("-I", &rule)?;
                    rules.push(rule);
                }
            }
        }
        self.partition = rules;
        Ok(())
    }

    /// Lifts the partition of [`Self::partition`].
    pub fn heal(&mut self) -> Result<()> {
        for rule in std::mem::take(&mut self.partition) {
            iptables("-D", &rule)?;
        }
        Ok(())
    }

    /// SIGSTOP: the member freezes (as a stalled machine would) until [`Self::resume`].
    pub fn pause(&mut self, id: NodeId) -> Result<()> {
        self.signal(id, "-STOP")
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&mut self, id: NodeId) -> Result<()> {
        self.signal(id, "-CONT")
    }

    fn signal(&mut self, id: NodeId, signal: &str) -> Result<()> {
        let member = self.members.get_mut(&id).ok_or(Error::NoMember(id))?;
        if let Some(child) = &member.child {
            let status = Command::new("kill").args([signal, &child.id().to_string()]).status()?;
            if !status.success() {
                return Err(Error::Io(std::io::Error::other(format!("kill {signal} of member {id}: {status}"))));
            }
        }
        Ok(())
    }

    /// Starts a killed member again on its data dir.
    pub fn restart(&mut self, id: NodeId) -> Result<()> {
        self.kill(id)?;
        self.spawn(id)
    }

    /// Waits until every running member reports the same leader, which is running.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId> {
        self.wait_for_leader_among(&self.running(), timeout).await
    }

    /// Waits until the members `among` (a partition's majority side, say) report the same
    /// leader, which is one of them.
    pub async fn wait_for_leader_among(&self, among: &[NodeId], timeout: Duration) -> Result<NodeId> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(Duration::from_millis(25));
        loop {
            tick.tick().await;
            let running = among.to_vec();
            let mut views = Vec::new();
            for id in &running {
                let view = match self.client(*id)?.status().await {
                    Ok(s) => s.leader,
                    Err(_) => None,
                };
                views.push(view);
            }
            if let Some(Some(leader)) = views.first() {
                if views.iter().all(|v| *v == Some(*leader)) && running.contains(leader) {
                    return Ok(*leader);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "members {running:?} agree on no leader: {views:?}\n{}",
                    self.log_tails(&running)
                )));
            }
        }
    }

    /// The log file of a member, for failure messages.
    pub fn log_tail(&self, id: NodeId, lines: usize) -> String {
        let Some(m) = self.members.get(&id) else { return String::new() };
        let text = std::fs::read_to_string(&m.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The last log lines of each of `ids`, for a timeout's message: a failed CI run then
    /// explains itself without the member logs it leaves on its machine.
    pub fn log_tails(&self, ids: &[NodeId]) -> String {
        let tails: Vec<String> = ids.iter().map(|id| format!("member {id}:\n{}", self.log_tail(*id, 10))).collect();
        tails.join("\n---\n")
    }
}

/// Runs `iptables -w <action> <rule>`.
fn iptables(action: &str, rule: &[String]) -> Result<()> {
    let status = Command::new("iptables").args(["-w", action]).args(rule).stderr(Stdio::null()).status()?;
    if !status.success() {
        return Err(Error::Io(std::io::Error::other(format!("iptables {action} {}: {status}", rule.join(" ")))));
    }
    Ok(())
}

impl Drop for FlotillaCluster {
    fn drop(&mut self) {
        let _ = self.heal();
        for member in self.members.values_mut() {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
