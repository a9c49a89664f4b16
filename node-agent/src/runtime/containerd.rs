//! The agent's private containerd: its own root, state and sockets under the agent's state
//! dir (so it never collides with another containerd on the machine), with the CRI plugin
//! set up as this machine kind needs (../shared/notes/runtime.md): cgroupfs, no AppArmor,
//! `restrict_oom_score_adj`, a local pause image, our CNI config dir.
//!
//! An agent that restarts finds its containerd still serving and keeps it: the pods' shims
//! and containers never depend on the agent process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::cri::Cri;
use super::images::PAUSE_IMAGE;

/// Where Debian's containernetworking-plugins installs the plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// How long containerd may take to serve CRI after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Why containerd could not be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// containerd or runc is not installed.
    #[error("{0} is not installed (apt-get install containerd runc containernetworking-plugins)")]
    Missing(&'static str),
    /// It started but did not answer CRI in time; its log says why.
    #[error("containerd did not serve CRI within {timeout:?} (log: {log}): {last}")]
    NotServing { timeout: Duration, log: PathBuf, last: String },
}

/// The paths of one private containerd.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(state_dir: &Path) -> Layout {
        Layout { dir: state_dir.join("containerd") }
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }
    /// Where the CNI config the agent writes for this node lives.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("net.d")
    }
}

/// containerd's config for `layout`.
pub fn config(layout: &Layout) -> String {
    let d = layout.dir.display();
    format!(
        r#"# Written by flotilla agent; rewritten at every start.
version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[debug]
  address = "{d}/debug.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  disable_hugetlb_controller = true
  netns_mounts_under_state_dir = true
  # exec, attach and port-forward streams: loopback only, a fresh port each start.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_tls_streaming = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/bin/runc"
        SystemdCgroup = false
        Root = "{d}/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{d}/net.d"
    max_conf_num = 1
"#
    )
}

/// A containerd serving CRI at [`Layout::socket`].
pub struct Containerd {
    pub layout: Layout,
    pub cri: Cri,
    /// The process, when this agent started it (else it was running already).
    child: Option<tokio::process::Child>,
}

impl Containerd {
    /// Connects to the containerd of `state_dir`, starting it first if it is not serving.
    pub async fn start(state_dir: &Path) -> Result<Containerd, Error> {
        let layout = Layout::new(state_dir);
        if let Ok(cri) = Cri::connect(&layout.socket()).await {
            if cri.version().await.is_ok() {
                tracing::info!(socket = %layout.socket().display(), "containerd already serving: kept");
                return Ok(Containerd { layout, cri, child: None });
            }
        }
        for (binary, path) in [("containerd", "/usr/bin/containerd"), ("runc", "/usr/bin/runc")] {
            if !Path::new(path).exists() {
                return Err(Error::Missing(binary));
            }
        }
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { what, path, source }
        };
        std::fs::create_dir_all(layout.cni_conf_dir()).map_err(io("creating", &layout.cni_conf_dir()))?;
        std::fs::write(layout.config(), config(&layout)).map_err(io("writing", &layout.config()))?;
        // A socket left by a killed containerd would make it refuse to start.
        let _ = std::fs::remove_file(layout.socket());
        let log = std::fs::File::create(layout.log()).map_err(io("creating", &layout.log()))?;
        let log_err = log.try_clone().map_err(io("opening", &layout.log()))?;
        let mut command = tokio::process::Command::new("/usr/bin/containerd");
        command.arg("--config").arg(layout.config()).stdin(Stdio::null()).stdout(log).stderr(log_err);
        // Its own process group: a Ctrl-C meant for the agent does not stop the pods' runtime.
        command.process_group(0);
        let child = command.spawn().map_err(io("starting", Path::new("/usr/bin/containerd")))?;
        let started = Instant::now();
        let mut last;
        loop {
            match Cri::connect(&layout.socket()).await {
                Ok(cri) => match cri.version().await {
                    Ok(version) => {
                        tracing::info!(
                            version = %version,
                            after_ms = started.elapsed().as_millis() as u64,
                            "containerd serving CRI"
                        );
                        return Ok(Containerd { layout, cri, child: Some(child) });
                    }
                    Err(error) => last = error.to_string(),
                },
                Err(error) => last = error.to_string(),
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(Error::NotServing { timeout: START_TIMEOUT, log: layout.log(), last });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops containerd if this agent started it (the pods keep running in their shims).
    pub async fn stop(&mut self) {
        if let Some(child) = &mut self.child {
            if let Some(pid) = child.id() {
                terminate(pid);
            }
            let _ = tokio::time::timeout(STOP_TIMEOUT, child.wait()).await;
        }
    }

    /// Stops the containerd serving this layout, whoever started it (`agent reset`).
    pub async fn stop_any(&mut self) {
        if self.child.is_some() {
            return self.stop().await;
        }
        let config = self.layout.config().display().to_string();
        for pid in pids_running(&config) {
            terminate(pid);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !pids_running(&config).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for pid in pids_running(&config) {
            signal(pid, "-KILL");
        }
    }
}

/// How long containerd may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

fn terminate(pid: u32) {
    signal(pid, "-TERM");
}

/// kill(1): the workspace forbids `unsafe`, so no libc call.
fn signal(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill").args([signal, &pid.to_string()]).status();
}

/// The containerd processes started with `--config CONFIG`.
fn pids_running(config: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
            let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"containerd"))
                && args.windows(2).any(|w| w[0] == b"--config" && w[1] == config.as_bytes())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_keeps_everything_under_the_state_dir() {
        let layout = Layout::new(Path::new("/var/lib/agent"));
        let text = config(&layout);
        for line in text.lines().filter(|l| l.contains("\"/")) {
            let value = line.split('"').nth(1).unwrap_or_default();
            assert!(
                value.starts_with("/var/lib/agent/containerd")
                    || value.starts_with(CNI_BIN_DIR)
                    || value == "/usr/bin/runc",
                "{line}"
            );
        }
        assert!(text.contains("restrict_oom_score_adj = true"));
        assert!(text.contains(&format!("sandbox_image = \"{PAUSE_IMAGE}\"")));
    }
}
