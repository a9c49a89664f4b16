//! End-to-end: admission webhooks with real kubectl on `flotilla up` and the example plugin
//! `loadtest-webhook` (plugins/admission-webhook) as a separate HTTPS process, registered by
//! `url` with a Validating- and a MutatingWebhookConfiguration: a LoadTest over the rate limit
//! refused (403, kube's "denied the request" message), `spec.scheme` defaulted by JSON Patch,
//! objectSelector and namespaceSelector exclusions, `failurePolicy` Ignore and Fail with the
//! webhook down, and `timeoutSeconds` against a slow webhook that holds up nothing else.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::{Up, DEADLINE};
use serde_json::Value;

/// The LoadTest CRD of `kubectl_crd.rs` without the `scheme` default and CEL rule: a schema
/// default is applied while decoding, before mutating admission, so the webhook would never
/// see the scheme absent.
const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: loadtests.beta.kuar.com}
spec:
  group: beta.kuar.com
  scope: Namespaced
  names: {plural: loadtests, singular: loadtest, kind: LoadTest, shortNames: [lt]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              service: {type: string}
              scheme: {type: string}
              requestsPerSecond: {type: integer, minimum: 1}
"#;

const LIMITS: &str = "limits.loadtests.beta.kuar.com";
const DEFAULTS: &str = "defaults.loadtests.beta.kuar.com";

/// The `loadtest-webhook` binary next to `flotilla`, built (with the same profile) when it is
/// missing or older than the plugin's sources.
fn plugin_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let flotilla = Path::new(env!("CARGO_BIN_EXE_flotilla"));
        let profile_dir = flotilla.parent().unwrap();
        let binary = profile_dir.join("loadtest-webhook");
        let plugin = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/admission-webhook");
        let sources =
            newest_source(&plugin.join("src")).max(modified(&plugin.join("Cargo.toml")).unwrap_or(UNIX_EPOCH));
        if modified(&binary).is_some_and(|built| sources <= built) {
            return binary;
        }
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_string(),
            Some(other) => other.to_string(),
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(&cargo)
            .args(["build", "-p", "admission-webhook", "--bin", "loadtest-webhook", "--profile", &profile])
            .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap_or_else(|e| panic!("running {cargo} to build loadtest-webhook: {e}"));
        assert!(
            out.status.success() && binary.exists(),
            "`cargo build -p admission-webhook --bin loadtest-webhook` failed; build it before the tests \
             (scripts/test.sh does):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        binary
    })
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The latest modification time of the files under `dir`.
fn newest_source(dir: &Path) -> SystemTime {
    let mut newest = UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let time = if path.is_dir() { newest_source(&path) } else { modified(&path).unwrap_or(newest) };
        newest = newest.max(time);
    }
    newest
}

/// A `loadtest-webhook` process on 127.0.0.1 serving a certificate for `localhost` and
/// `127.0.0.1`; killed when dropped.
struct Plugin {
    child: Child,
    port: u16,
}

impl Plugin {
    fn start(tls: &Tls, extra: &[&str]) -> Plugin {
        let port = chaos::free_port().unwrap();
        let log = std::fs::File::create(tls.dir.path().join(format!("webhook-{port}.log"))).unwrap();
        let child = Command::new(plugin_binary())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--cert")
            .arg(&tls.cert)
            .arg("--key")
            .arg(&tls.key)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut plugin = Plugin { child, port };
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok((200, _)) = common::https_get(tls.ca_pem.as_bytes(), port, "/healthz") {
                return plugin;
            }
            if let Ok(Some(status)) = plugin.child.try_wait() {
                panic!("loadtest-webhook exited with {status}; see {}", tls.dir.path().display());
            }
            assert!(Instant::now() < deadline, "loadtest-webhook never answered /healthz on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a serving certificate for the plugin (made with rcgen by `api_gateway::pki`),
/// written as PEM files in a temp dir that also holds the plugin's logs and the manifests.
struct Tls {
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    ca_pem: String,
}

impl Tls {
    fn new() -> Tls {
        let dir = tempfile::tempdir().unwrap();
        let pki = api_gateway::pki::load_or_create(&dir.path().join("pki"), &[]).unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, &pki.apiserver.cert_pem).unwrap();
        std::fs::write(&key, &pki.apiserver.key_pem).unwrap();
        Tls { dir, cert, key, ca_pem: pki.ca.cert_pem }
    }

    fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }

    /// Writes `text` to a file named `name` in the temp dir; returns its path.
    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

/// One webhook of kind `kind` (`Validating` or `Mutating`) in a configuration named `config`.
/// `extra` holds more fields of the webhook (indented YAML lines: selectors, timeout).
fn configuration(kind: &str, config: &str, webhook: &str, url: &str, ca_bundle: &str, extra: &str) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1
kind: {kind}WebhookConfiguration
metadata: {{name: {config}}}
webhooks:
- name: {webhook}
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig:
    url: {url}
    caBundle: {ca_bundle}
  rules:
  - apiGroups: [beta.kuar.com]
    apiVersions: [\"*\"]
    operations: [CREATE, UPDATE]
    resources: [loadtests]
    scope: Namespaced
{extra}"
    )
}

/// A LoadTest manifest; `spec` is a YAML flow mapping, `labels` one too.
fn loadtest(name: &str, namespace: &str, labels: &str, spec: &str) -> String {
    format!(
        "apiVersion: beta.kuar.com/v1
kind: LoadTest
metadata: {{name: {name}, namespace: {namespace}, labels: {labels}}}
spec: {spec}
"
    )
}

/// Starts `flotilla up` and creates the LoadTest CRD, waiting for it to be Established.
fn up_with_crd(tls: &Tls) -> Up {
    let data = tls.dir.path().join("up");
    std::fs::create_dir_all(&data).unwrap();
    let up = Up::start(&data);
    up.wait_ready();
    up.kubectl(&["apply", "-f", &tls.write("crd.yaml", CRD)]);
    up.kubectl(&["wait", "--for=condition=Established", "crd/loadtests.beta.kuar.com", "--timeout=20s"]);
    // The resource is served once discovery lists it.
    up.kubectl_eventually(&["get", "loadtests", "-A"]);
    up
}

/// `kubectl create -f manifest` until `expected(ok, stderr)` holds, deleting what a create
/// that did not meet it left behind: webhook configurations (and namespace labels) take
/// effect a little after they are written. Returns the last stderr.
fn create_until(up: &Up, manifest: &str, what: &str, expected: impl Fn(bool, &str) -> bool) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (ok, _, stderr) = up.try_kubectl(&["create", "-f", manifest]);
        if expected(ok, &stderr) {
            return stderr;
        }
        assert!(Instant::now() < deadline, "never happened: {what}; last: ok={ok} {stderr}");
        if ok {
            up.kubectl(&["delete", "-f", manifest, "--ignore-not-found", "--wait=false"]);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn get_json(up: &Up, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&up.kubectl(&all)).unwrap()
}

#[test]
fn the_loadtest_webhooks_refuse_fast_tests_default_the_scheme_and_honour_selectors() {
    let tls = Tls::new();
    let up = up_with_crd(&tls);
    let plugin = Plugin::start(&tls, &[]);
    let ca = tls.ca_bundle();

    // Only LoadTests labelled `limits: enforced`, outside namespaces labelled `limits: exempt`.
    let selectors = "  namespaceSelector:
    matchExpressions: [{key: limits, operator: NotIn, values: [exempt]}]
  objectSelector:
    matchLabels: {limits: enforced}
";
    let mutating = configuration("Mutating", "loadtest-defaults", DEFAULTS, &plugin.url("/mutate"), &ca, "");
    let validating = configuration("Validating", "loadtest-limits", LIMITS, &plugin.url("/validate"), &ca, selectors);
    up.kubectl(&["apply", "-f", &tls.write("mutating.yaml", &mutating)]);
    up.kubectl(&["apply", "-f", &tls.write("validating.yaml", &validating)]);

    // Over the limit: refused with the webhook's 403 and message, named by kube-apiserver.
    let fast = tls.write("fast.yaml", &loadtest("fast", "default", "{limits: enforced}", "{requestsPerSecond: 5000}"));
    let stderr = create_until(&up, &fast, "the validating webhook refuses 5000 rps", |ok, stderr| {
        !ok && stderr.contains("denied the request")
    });
    assert!(stderr.contains("Error from server (Forbidden)"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            r#"admission webhook "{LIMITS}" denied the request: requestsPerSecond 5000 exceeds the limit of 1000"#
        )),
        "{stderr}"
    );
    let (ok, _, _) = up.try_kubectl(&["get", "loadtest", "fast"]);
    assert!(!ok, "a refused LoadTest is not stored");

    // Without a scheme: stored with https, added by the mutating webhook's JSON Patch.
    let plain =
        tls.write("plain.yaml", &loadtest("plain", "default", "{limits: enforced}", "{requestsPerSecond: 100}"));
    create_until(&up, &plain, "the mutating webhook defaults the scheme", |ok, _| {
        ok && get_json(&up, &["get", "loadtest", "plain"])["spec"]["scheme"] == "https"
    });
    let stored = get_json(&up, &["get", "loadtest", "plain"]);
    assert_eq!(stored["spec"]["requestsPerSecond"], 100);
    assert_eq!(stored["spec"]["scheme"], "https");

    // A scheme given is kept.
    let http = tls.write("http.yaml", &loadtest("http", "default", "{limits: enforced}", "{scheme: http}"));
    up.kubectl(&["create", "-f", &http]);
    assert_eq!(get_json(&up, &["get", "loadtest", "http"])["spec"]["scheme"], "http");

    // An UPDATE over the limit is refused too.
    let (ok, _, stderr) =
        up.try_kubectl(&["patch", "loadtest", "plain", "--type=merge", "-p", r#"{"spec":{"requestsPerSecond":2000}}"#]);
    assert!(!ok);
    assert!(stderr.contains("requestsPerSecond 2000 exceeds the limit of 1000"), "{stderr}");
    assert_eq!(get_json(&up, &["get", "loadtest", "plain"])["spec"]["requestsPerSecond"], 100);

    // objectSelector: without the label, the validating webhook is not called (the
    // mutating one, which has no selector, still is).
    let unlabelled =
        tls.write("unlabelled.yaml", &loadtest("unlabelled", "default", "{}", "{requestsPerSecond: 5000}"));
    up.kubectl(&["create", "-f", &unlabelled]);
    let stored = get_json(&up, &["get", "loadtest", "unlabelled"]);
    assert_eq!(
        (stored["spec"]["requestsPerSecond"].as_i64(), stored["spec"]["scheme"].as_str()),
        (Some(5000), Some("https"))
    );

    // namespaceSelector: a namespace labelled `limits: exempt` is not checked; an unlabelled
    // one is.
    up.kubectl(&["create", "namespace", "exempt"]);
    up.kubectl(&["label", "namespace", "exempt", "limits=exempt"]);
    up.kubectl(&["create", "namespace", "checked"]);
    let exempt =
        tls.write("exempt.yaml", &loadtest("fast", "exempt", "{limits: enforced}", "{requestsPerSecond: 5000}"));
    create_until(&up, &exempt, "a LoadTest in the exempt namespace is let in", |ok, _| ok);
    let checked =
        tls.write("checked.yaml", &loadtest("fast", "checked", "{limits: enforced}", "{requestsPerSecond: 5000}"));
    let (ok, _, stderr) = up.try_kubectl(&["create", "-f", &checked]);
    assert!(!ok && stderr.contains(&format!(r#"admission webhook "{LIMITS}" denied the request"#)), "{stderr}");
    drop(plugin);
}

#[test]
fn a_webhook_that_is_down_or_slow_meets_its_failure_policy_and_timeout() {
    let tls = Tls::new();
    let up = up_with_crd(&tls);
    let plugin = Plugin::start(&tls, &[]);
    let ca = tls.ca_bundle();
    let config = |policy: &str, url: &str, extra: &str| {
        let extra = format!("  failurePolicy: {policy}\n{extra}");
        tls.write("validating.yaml", &configuration("Validating", "loadtest-limits", LIMITS, url, &ca, &extra))
    };
    let fast = tls.write("fast.yaml", &loadtest("fast", "default", "{}", "{requestsPerSecond: 5000}"));

    up.kubectl(&["apply", "-f", &config("Ignore", &plugin.url("/validate"), "")]);
    create_until(&up, &fast, "the webhook refuses 5000 rps", |ok, stderr| !ok && stderr.contains("denied the request"));

    // Down, with failurePolicy Ignore: the create goes through unchecked.
    let url = plugin.url("/validate");
    plugin.kill();
    up.kubectl(&["create", "-f", &fast]);
    up.kubectl(&["delete", "-f", &fast]);

    // Down, with failurePolicy Fail: refused with a 500 naming the webhook and why.
    up.kubectl(&["apply", "-f", &config("Fail", &url, "")]);
    let stderr = create_until(&up, &fast, "failurePolicy Fail refuses while the webhook is down", |ok, stderr| {
        !ok && stderr.contains("failed calling webhook")
    });
    assert!(stderr.contains("Error from server (InternalError)"), "{stderr}");
    assert!(stderr.contains(&format!(r#"failed calling webhook "{LIMITS}""#)), "{stderr}");
    assert!(stderr.contains("connection refused"), "{stderr}");

    // Slow (5 s) against timeoutSeconds: 1: the call is abandoned at the deadline.
    let slow = Plugin::start(&tls, &["--delay-ms", "5000"]);
    up.kubectl(&["apply", "-f", &config("Fail", &slow.url("/validate"), "  timeoutSeconds: 1\n")]);
    let ok_rate = tls.write("ok.yaml", &loadtest("steady", "default", "{}", "{requestsPerSecond: 10}"));
    let stderr = create_until(&up, &ok_rate, "the slow webhook times out", |ok, stderr| {
        !ok && (stderr.contains("deadline exceeded") || stderr.contains("Timeout exceeded"))
    });
    assert!(stderr.contains(&format!(r#"failed calling webhook "{LIMITS}""#)), "{stderr}");

    // While a LoadTest create waits on the slow webhook, a ConfigMap (no webhook) is created.
    let waiting = std::thread::scope(|s| {
        let blocked = s.spawn(|| up.try_kubectl(&["create", "-f", &ok_rate]));
        up.kubectl(&["create", "configmap", "unrelated", "--from-literal=k=v"]);
        blocked.join().unwrap()
    });
    assert!(!waiting.0, "the LoadTest create fails at the webhook's deadline: {}", waiting.2);
    assert_eq!(get_json(&up, &["get", "configmap", "unrelated"])["data"]["k"], "v");
    drop(slow);
}
