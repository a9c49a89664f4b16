//! CNI plugin invoker: runs a network's plugin chain for a pod sandbox, per the CNI spec.
//!
//! Each plugin is an executable named by its config's `type`, found in the plugin dir. It gets
//! `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME` and `CNI_PATH` in its env and its
//! config JSON on stdin (with `name`, `cniVersion` and `prevResult` injected from the conflist),
//! and prints a result or a `{"code","msg","details"}` error on stdout.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

/// Where Debian's containernetworking-plugins installs the plugins.
pub const DEFAULT_PLUGIN_DIR: &str = "/usr/lib/cni";
/// How long one plugin may run before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The spec version sent with VERSION.
pub const CNI_VERSION: &str = "1.0.0";
/// CNI error code "container unknown or does not exist": on DEL it means already deleted.
const CODE_UNKNOWN_CONTAINER: u32 = 3;

/// Everything that can go wrong running a plugin.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config is unusable: no plugins, a plugin without `type`, or a `type` with a `/`.
    #[error("invalid CNI config: {0}")]
    InvalidConfig(String),
    /// No executable named after the plugin's `type` in the plugin dir.
    #[error("CNI plugin {plugin:?} not found in {dir:?}")]
    NotFound { plugin: String, dir: PathBuf },
    /// Spawning the plugin or talking to it over its pipes failed.
    #[error("running CNI plugin {plugin:?}: {source}")]
    Io { plugin: String, source: std::io::Error },
    /// The plugin ran past the timeout and was killed.
    #[error("CNI plugin {plugin:?} timed out after {after:?}")]
    Timeout { plugin: String, after: Duration },
    /// The plugin failed and printed a CNI error.
    #[error("CNI plugin {plugin:?} failed: {error}")]
    Plugin { plugin: String, error: PluginError },
    /// The plugin exited non-zero without a parseable CNI error.
    #[error("CNI plugin {plugin:?} exited with {status}: {stderr}")]
    Exit { plugin: String, status: ExitStatus, stderr: String },
    /// The plugin succeeded but printed something that is not the expected JSON.
    #[error("CNI plugin {plugin:?} printed a bad result: {source}")]
    BadOutput { plugin: String, source: serde_json::Error },
}

/// The node's pod network for containerd's CNI plugin: a bridge named after the node (so
/// agents sharing a machine in tests keep apart) with host-local addresses from the pod
/// CIDR, kept under `ipam_dir`. No masquerading: pod traffic stays on this machine.
pub fn node_conflist(node: &str, pod_cidr: &str, ipam_dir: &std::path::Path) -> Value {
    let bridge = bridge_name(node);
    serde_json::json!({
        "cniVersion": CNI_VERSION,
        "name": format!("flotilla-{bridge}"),
        "plugins": [{
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": pod_cidr}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": ipam_dir.display().to_string(),
            },
        }],
    })
}

/// A Linux interface name (at most 15 bytes) for the node's bridge.
pub fn bridge_name(node: &str) -> String {
    let hash = node.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("fl{:08x}", hash as u32)
}

/// Writes the node's conflist into containerd's CNI config dir if it differs; whether it
/// changed.
pub fn write_node_conflist(conf_dir: &std::path::Path, config: &Value) -> std::io::Result<bool> {
    let path = conf_dir.join("10-flotilla.conflist");
    let text = serde_json::to_string_pretty(config).unwrap_or_default();
    if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    std::fs::create_dir_all(conf_dir)?;
    let staged = conf_dir.join(".10-flotilla.conflist.new");
    std::fs::write(&staged, &text)?;
    std::fs::rename(staged, path)?;
    Ok(true)
}

/// Result of this module's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A CNI error, as a failing plugin prints it on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{msg} (code {code}) {details}")]
pub struct PluginError {
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub details: String,
}

/// The sandbox being attached: what the runtime passes in the env.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConf {
    pub container_id: String,
    /// Path of the network namespace, e.g. `/var/run/netns/<name>`.
    pub netns: PathBuf,
    pub ifname: String,
}

/// A `.conflist`: a named network made of a chain of plugin configs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfigList {
    pub cni_version: String,
    pub name: String,
    /// Kept as raw JSON: each plugin has its own config schema.
    pub plugins: Vec<Map<String, Value>>,
}

/// What ADD returns: the interfaces, addresses, routes and DNS set up for the sandbox.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CniResult {
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

// Options are omitted rather than sent as null: Go plugins reject null for some of these types.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Interface {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Netns path when the interface is inside the sandbox; absent for host-side interfaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// CIDR notation, e.g. `10.244.0.5/24`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// CIDR notation, e.g. `0.0.0.0/0`.
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dns {
    pub nameservers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// What VERSION returns.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub cni_version: String,
    pub supported_versions: Vec<String>,
}

/// Runs CNI plugins from one plugin dir, each under a timeout.
#[derive(Debug, Clone)]
pub struct CniInvoker {
    plugin_dir: PathBuf,
    timeout: Duration,
}

impl Default for CniInvoker {
    fn default() -> Self {
        Self::new(DEFAULT_PLUGIN_DIR)
    }
}

impl CniInvoker {
    pub fn new(plugin_dir: impl Into<PathBuf>) -> Self {
        Self { plugin_dir: plugin_dir.into(), timeout: DEFAULT_TIMEOUT }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs ADD through the chain in order, each plugin seeing the previous one's result as
    /// `prevResult`; returns the last result. On error the caller should DEL to clean up.
    pub async fn add(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> Result<CniResult> {
        let mut prev: Option<Value> = None;
        let mut result = None;
        for plugin in &list.plugins {
            let (kind, conf) = plugin_conf(list, plugin, prev.as_ref())?;
            let out = self.exec(&kind, "ADD", Some(rt), &conf).await?;
            let bad = |source| Error::BadOutput { plugin: kind.clone(), source };
            // The raw JSON is what goes on, so fields we do not model reach the next plugin.
            let raw: Value = serde_json::from_slice(&out).map_err(bad)?;
            result = Some(CniResult::deserialize(&raw).map_err(bad)?);
            prev = Some(raw);
        }
        result.ok_or_else(|| Error::InvalidConfig(format!("network {:?} has no plugins", list.name)))
    }

    /// Runs CHECK through the chain in order, with `prev` (the ADD result) as `prevResult`.
    pub async fn check(&self, list: &NetworkConfigList, rt: &RuntimeConf, prev: &CniResult) -> Result<()> {
        let prev = result_json(prev)?;
        for plugin in &list.plugins {
            let (kind, conf) = plugin_conf(list, plugin, Some(&prev))?;
            self.exec(&kind, "CHECK", Some(rt), &conf).await?;
        }
        Ok(())
    }

    /// Runs DEL through the chain in reverse order. Already-deleted state is not an error: a
    /// netns that is gone is passed as an empty `CNI_NETNS` (the spec allows it for DEL), and
    /// "container unknown" errors are ignored. Every plugin runs even if one fails, so one
    /// failure does not leak the others' resources; the first error is returned.
    pub async fn del(&self, list: &NetworkConfigList, rt: &RuntimeConf, prev: Option<&CniResult>) -> Result<()> {
        let prev = prev.map(result_json).transpose()?;
        let mut rt = rt.clone();
        if !rt.netns.exists() {
            rt.netns = PathBuf::new();
        }
        let mut first_err = None;
        for plugin in list.plugins.iter().rev() {
            let res = match plugin_conf(list, plugin, prev.as_ref()) {
                Ok((kind, conf)) => self.exec(&kind, "DEL", Some(&rt), &conf).await,
                Err(e) => Err(e),
            };
            match res {
                Ok(_) => {}
                Err(Error::Plugin { plugin, error }) if error.code == CODE_UNKNOWN_CONTAINER => {
                    tracing::debug!(%plugin, %error, "CNI DEL: already deleted");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "CNI DEL failed; continuing with the rest of the chain");
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Asks a plugin which spec versions it supports.
    pub async fn version(&self, plugin: &str) -> Result<VersionInfo> {
        let conf = serde_json::json!({ "cniVersion": CNI_VERSION }).to_string();
        let out = self.exec(plugin, "VERSION", None, conf.as_bytes()).await?;
        serde_json::from_slice(&out).map_err(|source| Error::BadOutput { plugin: plugin.to_owned(), source })
    }

    /// Runs one plugin as `CNI_COMMAND=cmd` with `conf` on stdin; returns its stdout if it exits 0.
    async fn exec(&self, plugin: &str, cmd: &str, rt: Option<&RuntimeConf>, conf: &[u8]) -> Result<Vec<u8>> {
        // A `type` with a slash could name an executable outside the plugin dir.
        if plugin.is_empty() || plugin.contains('/') {
            return Err(Error::InvalidConfig(format!("bad plugin type {plugin:?}")));
        }
        let path = self.plugin_dir.join(plugin);
        if !path.is_file() {
            return Err(Error::NotFound { plugin: plugin.to_owned(), dir: self.plugin_dir.clone() });
        }
        tracing::debug!(plugin, command = cmd, "running CNI plugin");
        let io = |source| Error::Io { plugin: plugin.to_owned(), source };

        let mut command = tokio::process::Command::new(&path);
        command.env("CNI_COMMAND", cmd).env("CNI_PATH", &self.plugin_dir);
        if let Some(rt) = rt {
            command.env("CNI_CONTAINERID", &rt.container_id).env("CNI_NETNS", &rt.netns).env("CNI_IFNAME", &rt.ifname);
        }
        // kill_on_drop: a timed-out plugin is killed when its future is dropped.
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = command.spawn().map_err(io)?;
        let stdin = child.stdin.take();
        let write = async move {
            let Some(mut stdin) = stdin else { return Ok(()) };
            match stdin.write_all(conf).await {
                // A plugin may exit without reading its config (VERSION, errors): not our failure.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other,
            }
            // `stdin` drops here, closing the pipe so the plugin sees EOF.
        };
        // Write and read together: a plugin may print before it has read all of a large config.
        let run = async { tokio::join!(write, child.wait_with_output()) };
        let (written, output) = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| Error::Timeout { plugin: plugin.to_owned(), after: self.timeout })?;
        let output = output.map_err(io)?;
        if output.status.success() {
            written.map_err(io)?;
            return Ok(output.stdout);
        }
        match serde_json::from_slice::<PluginError>(&output.stdout) {
            Ok(error) => Err(Error::Plugin { plugin: plugin.to_owned(), error }),
            Err(_) => Err(Error::Exit {
                plugin: plugin.to_owned(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            }),
        }
    }
}

/// One plugin's stdin: its config plus the list's `name`, `cniVersion`, and `prevResult`.
fn plugin_conf(
    list: &NetworkConfigList,
    plugin: &Map<String, Value>,
    prev: Option<&Value>,
) -> Result<(String, Vec<u8>)> {
    let kind = plugin
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::InvalidConfig(format!("a plugin of network {:?} has no \"type\"", list.name)))?
        .to_owned();
    let mut conf = plugin.clone();
    conf.insert("name".into(), list.name.clone().into());
    conf.insert("cniVersion".into(), list.cni_version.clone().into());
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev.clone());
    }
    Ok((kind, Value::Object(conf).to_string().into_bytes()))
}

fn result_json(result: &CniResult) -> Result<Value> {
    // Cannot fail for these plain types; mapped rather than unwrapped all the same.
    serde_json::to_value(result).map_err(|e| Error::InvalidConfig(format!("prevResult: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    const RESULT_A: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"0a:58:0a:f4:00:05","sandbox":"/run/netns/p"}],"ips":[{"address":"10.244.0.5/24","gateway":"10.244.0.1","interface":0}],"routes":[{"dst":"0.0.0.0/0","gw":"10.244.0.1"}],"dns":{"nameservers":["10.96.0.10"],"search":["svc.cluster.local"]},"custom":"kept"}"#;
    const RESULT_B: &str = r#"{"cniVersion":"1.0.0","ips":[{"address":"10.244.0.6/24"}]}"#;

    /// Writes an executable shell script `name` into `dir`: a fake plugin.
    fn fake_plugin(dir: &Path, name: &str, body: &str) {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write plugin");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod plugin");
    }

    /// A fake plugin that logs its name to `calls`, saves its CNI env and stdin, then runs `tail`.
    fn recording_plugin(dir: &Path, name: &str, tail: &str) {
        let d = dir.display();
        let body = format!(
            "echo {name} >> '{d}/calls'\nenv | grep '^CNI_' | sort > '{d}/{name}.env'\ncat > '{d}/{name}.stdin'\n{tail}"
        );
        fake_plugin(dir, name, &body);
    }

    fn print(json: &str) -> String {
        format!("cat <<'EOF'\n{json}\nEOF")
    }

    fn read(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file)).expect(file)
    }

    fn stdin_json(dir: &Path, name: &str) -> Value {
        serde_json::from_str(&read(dir, &format!("{name}.stdin"))).expect("stdin is JSON")
    }

    fn sent_prev(dir: &Path, name: &str) -> CniResult {
        serde_json::from_value(stdin_json(dir, name)["prevResult"].clone()).expect("prevResult")
    }

    fn conflist(plugins: &[&str]) -> NetworkConfigList {
        let plugins: Vec<Value> = plugins.iter().map(|p| json!({ "type": p, "marker": p })).collect();
        serde_json::from_value(json!({ "cniVersion": "1.0.0", "name": "podnet", "plugins": plugins }))
            .expect("conflist")
    }

    fn runtime(netns: &Path) -> RuntimeConf {
        RuntimeConf { container_id: "ctr-1".into(), netns: netns.to_owned(), ifname: "eth0".into() }
    }

    #[tokio::test]
    async fn add_sets_env_injects_config_and_parses_result() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        recording_plugin(d, "alpha", &print(RESULT_A));
        let netns = d.join("netns");
        std::fs::write(&netns, "").expect("netns file");

        let result = CniInvoker::new(d).add(&conflist(&["alpha"]), &runtime(&netns)).await.expect("add");

        let env = read(d, "alpha.env");
        for want in [
            "CNI_COMMAND=ADD".to_owned(),
            "CNI_CONTAINERID=ctr-1".to_owned(),
            format!("CNI_NETNS={}", netns.display()),
            "CNI_IFNAME=eth0".to_owned(),
            format!("CNI_PATH={}", d.display()),
        ] {
            assert!(env.lines().any(|l| l == want), "{want} missing from {env}");
        }
        // First plugin of a chain: name and version injected, no prevResult.
        assert_eq!(
            stdin_json(d, "alpha"),
            json!({ "type": "alpha", "marker": "alpha", "name": "podnet", "cniVersion": "1.0.0" })
        );
        let gw = Some(IpAddr::from([10, 244, 0, 1]));
        let (iface, ip) = (&result.interfaces[0], &result.ips[0]);
        assert_eq!((iface.name.as_str(), iface.mac.as_deref()), ("eth0", Some("0a:58:0a:f4:00:05")));
        assert_eq!((ip.address.as_str(), ip.gateway, ip.interface), ("10.244.0.5/24", gw, Some(0)));
        assert_eq!(result.routes, [Route { dst: "0.0.0.0/0".into(), gw }]);
        assert_eq!(
            (result.dns.nameservers, result.dns.search),
            (vec!["10.96.0.10".into()], vec!["svc.cluster.local".into()])
        );
    }

    #[tokio::test]
    async fn chain_passes_prev_result_on_add_and_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        recording_plugin(d, "alpha", &print(RESULT_A));
        recording_plugin(d, "beta", &print(RESULT_B));
        let (cni, list) = (CniInvoker::new(d), conflist(&["alpha", "beta"]));

        let result = cni.add(&list, &runtime(d)).await.expect("add");
        let beta_in = stdin_json(d, "beta");
        // The raw result goes on untouched, including the field we do not model.
        assert_eq!(beta_in["prevResult"], serde_json::from_str::<Value>(RESULT_A).expect("json"));
        assert_eq!((&beta_in["name"], &beta_in["marker"]), (&json!("podnet"), &json!("beta")));
        assert_eq!((result.ips[0].address.as_str(), result.ips[0].gateway), ("10.244.0.6/24", None));

        // CHECK hands every plugin the ADD result.
        cni.check(&list, &runtime(d), &result).await.expect("check");
        assert_eq!(read(d, "calls"), "alpha\nbeta\nalpha\nbeta\n");
        assert!(read(d, "alpha.env").lines().any(|l| l == "CNI_COMMAND=CHECK"));
        assert_eq!(sent_prev(d, "alpha"), result);
    }

    #[tokio::test]
    async fn failures_become_typed_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let cni_err = r#"{"code":7,"msg":"bad config","details":"no subnet"}"#;
        fake_plugin(d, "broken", &format!("{}\nexit 1", print(cni_err)));
        fake_plugin(d, "crashy", "echo 'segfault, sort of' >&2\nexit 2");
        fake_plugin(d, "garbled", "echo not-json");
        let cni = CniInvoker::new(d);

        match cni.add(&conflist(&["broken"]), &runtime(d)).await {
            Err(Error::Plugin { plugin, error }) => {
                assert_eq!(plugin, "broken");
                assert_eq!(error, PluginError { code: 7, msg: "bad config".into(), details: "no subnet".into() });
            }
            other => panic!("want Plugin error, got {other:?}"),
        }
        match cni.add(&conflist(&["crashy"]), &runtime(d)).await {
            Err(Error::Exit { status, stderr, .. }) => {
                assert_eq!((status.code(), stderr.as_str()), (Some(2), "segfault, sort of"));
            }
            other => panic!("want Exit error, got {other:?}"),
        }
        let err = cni.add(&conflist(&["garbled"]), &runtime(d)).await;
        assert!(matches!(err, Err(Error::BadOutput { .. })), "{err:?}");
        let err = cni.add(&conflist(&["absent"]), &runtime(d)).await;
        assert!(matches!(err, Err(Error::NotFound { .. })), "{err:?}");
        let err = cni.add(&conflist(&["../broken"]), &runtime(d)).await;
        assert!(matches!(err, Err(Error::InvalidConfig(_))), "{err:?}");
        let err = cni.add(&conflist(&[]), &runtime(d)).await;
        assert!(matches!(err, Err(Error::InvalidConfig(_))), "{err:?}");
    }

    #[tokio::test]
    async fn del_runs_in_reverse_and_tolerates_already_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        recording_plugin(d, "alpha", "");
        // "Container unknown": beta's state is already gone.
        recording_plugin(d, "beta", &format!("{}\nexit 1", print(r#"{"code":3,"msg":"no such container"}"#)));
        recording_plugin(d, "gamma", "");
        let prev: CniResult = serde_json::from_str(RESULT_B).expect("result");

        let gone = d.join("netns-gone");
        CniInvoker::new(d)
            .del(&conflist(&["alpha", "beta", "gamma"]), &runtime(&gone), Some(&prev))
            .await
            .expect("del");

        assert_eq!(read(d, "calls"), "gamma\nbeta\nalpha\n");
        let env = read(d, "alpha.env");
        assert!(env.lines().any(|l| l == "CNI_COMMAND=DEL"), "{env}");
        assert!(env.lines().any(|l| l == "CNI_NETNS="), "a missing netns is passed empty: {env}");
        assert_eq!(sent_prev(d, "alpha"), prev);
    }

    #[tokio::test]
    async fn del_runs_whole_chain_and_returns_first_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        recording_plugin(d, "alpha", "");
        recording_plugin(d, "beta", &format!("{}\nexit 1", print(r#"{"code":11,"msg":"try again"}"#)));

        let err = CniInvoker::new(d).del(&conflist(&["alpha", "beta"]), &runtime(d), None).await;

        assert!(matches!(&err, Err(Error::Plugin { error, .. }) if error.code == 11), "{err:?}");
        assert_eq!(read(d, "calls"), "beta\nalpha\n");
        assert!(stdin_json(d, "alpha").get("prevResult").is_none());
    }

    #[tokio::test]
    async fn version_parses_supported_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        recording_plugin(d, "alpha", &print(r#"{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}"#));

        let info = CniInvoker::new(d).version("alpha").await.expect("version");

        assert_eq!(info.supported_versions, ["0.4.0", "1.0.0"]);
        assert!(read(d, "alpha.env").lines().any(|l| l == "CNI_COMMAND=VERSION"));
        assert_eq!(stdin_json(d, "alpha"), json!({ "cniVersion": CNI_VERSION }));
    }

    #[tokio::test]
    async fn hung_plugin_is_killed_at_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        // Opening a FIFO nobody writes blocks forever: a hang without sleeping.
        let status = std::process::Command::new("mkfifo").arg(d.join("fifo")).status().expect("mkfifo");
        assert!(status.success());
        fake_plugin(d, "stuck", &format!("read x < '{}/fifo'", d.display()));

        let cni = CniInvoker::new(d).with_timeout(Duration::from_millis(200));
        let err = cni.add(&conflist(&["stuck"]), &runtime(d)).await;

        assert!(matches!(err, Err(Error::Timeout { ref plugin, .. }) if plugin == "stuck"), "{err:?}");
    }

    /// The real host-local IPAM plugin needs no netns: it only records leases in `dataDir`.
    #[tokio::test]
    async fn real_host_local_allocates_and_releases() {
        if !Path::new(DEFAULT_PLUGIN_DIR).join("host-local").is_file() {
            eprintln!("skipped: no {DEFAULT_PLUGIN_DIR}/host-local (Debian containernetworking-plugins)");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().display().to_string();
        let ipam = json!({ "type": "host-local", "dataDir": data, "ranges": [[{ "subnet": "10.99.0.0/24" }]] });
        let list: NetworkConfigList = serde_json::from_value(json!({
            "cniVersion": "1.0.0", "name": "podnet", "plugins": [{ "type": "host-local", "ipam": ipam }]
        }))
        .expect("conflist");
        // ADD requires a non-empty CNI_NETNS, but host-local never opens it.
        let rt = runtime(&dir.path().join("unused-netns"));
        let cni = CniInvoker::default();

        let result = cni.add(&list, &rt).await.expect("add");
        assert_eq!(result.ips[0].address, "10.99.0.2/24");
        assert_eq!(result.ips[0].gateway, Some([10, 99, 0, 1].into()));
        let lease = dir.path().join("podnet/10.99.0.2");
        assert_eq!(std::fs::read_to_string(&lease).expect("lease").lines().next(), Some("ctr-1"));

        cni.del(&list, &rt, Some(&result)).await.expect("del");
        assert!(!lease.exists());
        cni.del(&list, &rt, Some(&result)).await.expect("second del is a no-op");
    }
}
