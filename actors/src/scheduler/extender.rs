//! Scheduler extenders (kube's `HTTPExtender`): HTTP webhooks the scheduler asks, after
//! its own filters and scores, to filter the feasible nodes (`ExtenderArgs` ->
//! `ExtenderFilterResult`), to score them (-> `HostPriorityList`, times the extender's
//! weight, scaled from 0..10 to 0..100 as kube does), and to bind (`ExtenderBindingArgs` ->
//! `ExtenderBindingResult`) in the scheduler's place. Plain `http://` only, one request
//! per connection, over hyper.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::config::ExtenderConfig;

/// The largest answer read from an extender.
const MAX_RESPONSE: usize = 64 * 1024 * 1024;
/// kube's `MaxExtenderPriority`: extender scores run 0..10.
pub const MAX_EXTENDER_PRIORITY: i64 = 10;
/// kube's `MaxNodeScore`.
const MAX_NODE_SCORE: i64 = 100;

/// A failed extender call, in the words kube's would use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtenderError {
    /// The URL prefix is not `http://host[:port][/path]`.
    #[error("extender URL {0:?} is not a plain http:// URL")]
    Url(String),
    /// No connection, or it broke.
    #[error("Post {url:?}: {reason}")]
    Transport { url: String, reason: String },
    /// No answer in the extender's `httpTimeout`.
    #[error("Post {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)")]
    Timeout { url: String },
    /// An answer other than 200.
    #[error("failed {verb} with extender at URL {url}, code {code}")]
    Status { verb: String, url: String, code: u16 },
    /// An answer that is not the expected JSON.
    #[error("decoding the answer of {url}: {reason}")]
    Decode { url: String, reason: String },
    /// The extender's answer carried an `error`.
    #[error("{0}")]
    Refused(String),
}

pub type Result<T> = std::result::Result<T, ExtenderError>;

/// What a filter call left: the nodes that pass, and why others failed (node -> reason),
/// resolvable by preemption or not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filtered {
    pub nodes: Vec<String>,
    pub failed: Vec<(String, String)>,
    pub failed_unresolvable: Vec<(String, String)>,
}

/// One configured extender.
#[derive(Debug, Clone)]
pub struct Extender {
    pub config: ExtenderConfig,
    /// `host:port` to connect to, the `Host` header, and the path prefix.
    authority: (String, u16),
    host_header: String,
    path: String,
}

impl Extender {
    pub fn new(config: ExtenderConfig) -> Result<Extender> {
        let bad = || ExtenderError::Url(config.url_prefix.clone());
        let uri: Uri = config.url_prefix.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") {
            return Err(bad());
        }
        let host = uri.host().ok_or_else(bad)?.trim_matches(|c| c == '[' || c == ']').to_string();
        let port = uri.port_u16().unwrap_or(80);
        let host_header = uri.authority().map(|a| a.as_str().to_string()).ok_or_else(bad)?;
        let path = uri.path().trim_end_matches('/').to_string();
        Ok(Extender { config, authority: (host, port), host_header, path })
    }

    /// kube's `IsInterested`: every pod, unless `managedResources` names some, then only
    /// pods whose containers request or limit one of them.
    pub fn interested(&self, pod: &Value) -> bool {
        if self.config.managed_resources.is_empty() {
            return true;
        }
        let spec = pod.get("spec").unwrap_or(&Value::Null);
        let containers = ["containers", "initContainers"]
            .iter()
            .flat_map(|f| spec.get(*f).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default());
        containers.into_iter().any(|c| {
            ["requests", "limits"].iter().any(|part| {
                let listed = c.pointer(&format!("/resources/{part}")).and_then(Value::as_object);
                listed.is_some_and(|l| self.config.managed_resources.iter().any(|r| l.contains_key(r)))
            })
        })
    }

    pub fn filters(&self) -> bool {
        self.config.filter_verb.is_some()
    }

    pub fn prioritizes(&self) -> bool {
        self.config.prioritize_verb.is_some()
    }

    pub fn binds(&self) -> bool {
        self.config.bind_verb.is_some()
    }

    /// kube's `ExtenderArgs`: the pod, and the nodes (whole, or by name for a
    /// `nodeCacheCapable` extender).
    fn args(&self, pod: &Value, nodes: &[Arc<Value>]) -> Value {
        if self.config.node_cache_capable {
            let names: Vec<&str> = nodes.iter().map(|n| name_of(n)).collect();
            json!({"pod": pod, "nodenames": names})
        } else {
            let items: Vec<&Value> = nodes.iter().map(|n| n.as_ref()).collect();
            json!({"pod": pod, "nodes": {"metadata": {}, "items": items}})
        }
    }

    /// Asks which of `nodes` the pod may go to.
    pub async fn filter(&self, pod: &Value, nodes: &[Arc<Value>]) -> Result<Filtered> {
        let Some(verb) = &self.config.filter_verb else {
            return Ok(Filtered {
                nodes: nodes.iter().map(|n| name_of(n).to_string()).collect(),
                ..Filtered::default()
            });
        };
        let answer = self.post(verb, &self.args(pod, nodes)).await?;
        if let Some(error) = answer.get("error").and_then(Value::as_str).filter(|e| !e.is_empty()) {
            return Err(ExtenderError::Refused(error.to_string()));
        }
        let by_name = answer.get("nodenames").and_then(Value::as_array).filter(|_| self.config.node_cache_capable);
        let passed: Vec<String> = match by_name {
            Some(names) => names.iter().filter_map(Value::as_str).map(String::from).collect(),
            None => answer
                .pointer("/nodes/items")
                .and_then(Value::as_array)
                .map(|items| items.iter().map(|n| name_of(n).to_string()).collect())
                .unwrap_or_default(),
        };
        // Only nodes that were asked about.
        let asked: std::collections::HashSet<&str> = nodes.iter().map(|n| name_of(n)).collect();
        let failed_map = |field: &str| -> Vec<(String, String)> {
            let mut failed: Vec<(String, String)> = answer
                .get(field)
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
                .unwrap_or_default();
            failed.sort();
            failed
        };
        Ok(Filtered {
            nodes: passed.into_iter().filter(|n| asked.contains(n.as_str())).collect(),
            failed: failed_map("failedNodes"),
            failed_unresolvable: failed_map("failedAndUnresolvableNodes"),
        })
    }

    /// The extender's scores of `nodes` (0..10), times its weight.
    pub async fn prioritize(&self, pod: &Value, nodes: &[Arc<Value>]) -> Result<HashMap<String, i64>> {
        let Some(verb) = &self.config.prioritize_verb else { return Ok(HashMap::new()) };
        let answer = self.post(verb, &self.args(pod, nodes)).await?;
        let list = answer.as_array().ok_or_else(|| ExtenderError::Decode {
            url: self.url(verb),
            reason: "a HostPriorityList is a JSON array".into(),
        })?;
        let mut scores = HashMap::new();
        for entry in list {
            let (Some(host), Some(score)) =
                (entry.get("host").and_then(Value::as_str), entry.get("score").and_then(Value::as_i64))
            else {
                continue;
            };
            let total: &mut i64 = scores.entry(host.to_string()).or_insert(0);
            *total = total.saturating_add(score.saturating_mul(self.config.weight));
        }
        Ok(scores)
    }

    /// Has the extender bind the pod to `node`.
    pub async fn bind(&self, pod: &Value, node: &str) -> Result<()> {
        let Some(verb) = &self.config.bind_verb else { return Ok(()) };
        let meta = |f: &str| pod.pointer(&format!("/metadata/{f}")).and_then(Value::as_str).unwrap_or("");
        let args =
            json!({"podName": meta("name"), "podNamespace": meta("namespace"), "podUID": meta("uid"), "node": node});
        let answer = self.post(verb, &args).await?;
        match answer.get("error").and_then(Value::as_str).filter(|e| !e.is_empty()) {
            Some(error) => Err(ExtenderError::Refused(error.to_string())),
            None => Ok(()),
        }
    }

    fn url(&self, verb: &str) -> String {
        format!("{}/{verb}", self.config.url_prefix)
    }

    /// POSTs `body` to `{urlPrefix}/{verb}` within the extender's timeout.
    async fn post(&self, verb: &str, body: &Value) -> Result<Value> {
        let url = self.url(verb);
        let timeout = self.config.http_timeout.max(Duration::from_millis(1));
        match tokio::time::timeout(timeout, self.exchange(verb, body)).await {
            Ok(result) => result,
            Err(_) => Err(ExtenderError::Timeout { url }),
        }
    }

    async fn exchange(&self, verb: &str, body: &Value) -> Result<Value> {
        let url = self.url(verb);
        let transport = |reason: String| ExtenderError::Transport { url: url.clone(), reason };
        let (host, port) = &self.authority;
        let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await.map_err(|e| {
            transport(match e.kind() {
                std::io::ErrorKind::ConnectionRefused => format!("dial tcp {host}:{port}: connect: connection refused"),
                _ => format!("dial tcp {host}:{port}: {e}"),
            })
        })?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| transport(e.to_string()))?;
        let bytes = serde_json::to_vec(body).map_err(|e| transport(e.to_string()))?;
        let request = Request::post(format!("{}/{verb}", self.path))
            .header(HOST, self.host_header.as_str())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| transport(e.to_string()))?;
        let answer = async move {
            let response = sender.send_request(request).await.map_err(|e| transport(e.to_string()))?;
            let code = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| transport(format!("reading the response: {e}")))?
                .to_bytes();
            Ok::<_, ExtenderError>((code, body))
        };
        // The connection runs beside the request; it ends once the request's sender is gone.
        let (answer, _) = futures::join!(answer, connection);
        let (code, body) = answer?;
        if code != 200 {
            return Err(ExtenderError::Status { verb: verb.to_string(), url: self.config.url_prefix.clone(), code });
        }
        serde_json::from_slice(&body).map_err(|e| ExtenderError::Decode { url: self.url(verb), reason: e.to_string() })
    }
}

fn name_of(node: &Value) -> &str {
    node.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}

/// What the extenders made of a pod's feasible nodes: those left, with their combined
/// extender scores (already scaled to the scheduler's 0..100 range), and the reasons of
/// the nodes they filtered out.
#[derive(Debug, Clone, Default)]
pub struct Extended {
    pub nodes: Vec<String>,
    pub scores: HashMap<String, i64>,
    /// (node, reason, whether preemption could help).
    pub failed: Vec<(String, String, bool)>,
}

/// Runs every interested extender's filter in turn over `nodes`, then their priorities
/// over what is left (a prioritize failure is ignored, as kube does). A filter failure
/// fails the pod unless the extender is ignorable.
pub async fn extend(extenders: &[Extender], pod: &Value, nodes: Vec<Arc<Value>>) -> Result<Extended> {
    let mut nodes = nodes;
    let mut failed = Vec::new();
    for extender in extenders.iter().filter(|e| e.filters() && e.interested(pod)) {
        if nodes.is_empty() {
            break;
        }
        let result = match extender.filter(pod, &nodes).await {
            Ok(result) => result,
            Err(e) if extender.config.ignorable => {
                tracing::info!(extender = %extender.config.url_prefix, error = %e, "skipping an ignorable extender");
                continue;
            }
            Err(e) => return Err(e),
        };
        failed.extend(result.failed.into_iter().map(|(n, r)| (n, r, true)));
        failed.extend(result.failed_unresolvable.into_iter().map(|(n, r)| (n, r, false)));
        let kept: std::collections::HashSet<String> = result.nodes.into_iter().collect();
        nodes.retain(|n| kept.contains(name_of(n)));
    }
    let mut scores: HashMap<String, i64> = HashMap::new();
    if !nodes.is_empty() {
        for extender in extenders.iter().filter(|e| e.prioritizes() && e.interested(pod)) {
            match extender.prioritize(pod, &nodes).await {
                Ok(priorities) => {
                    for (host, score) in priorities {
                        let total: &mut i64 = scores.entry(host).or_insert(0);
                        *total = total.saturating_add(score);
                    }
                }
                Err(e) => tracing::debug!(extender = %extender.config.url_prefix, error = %e, "prioritize failed"),
            }
        }
    }
    for score in scores.values_mut() {
        *score = score.saturating_mul(MAX_NODE_SCORE / MAX_EXTENDER_PRIORITY);
    }
    Ok(Extended { nodes: nodes.iter().map(|n| name_of(n).to_string()).collect(), scores, failed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> ExtenderConfig {
        ExtenderConfig {
            url_prefix: url.into(),
            filter_verb: Some("filter".into()),
            prioritize_verb: None,
            bind_verb: None,
            weight: 1,
            node_cache_capable: false,
            ignorable: false,
            http_timeout: Duration::from_secs(1),
            managed_resources: Vec::new(),
        }
    }

    #[test]
    fn urls_and_interest_are_read_as_kube_does() {
        let e = Extender::new(config("http://127.0.0.1:8080/sched")).unwrap();
        assert_eq!((e.authority.0.as_str(), e.authority.1, e.path.as_str()), ("127.0.0.1", 8080, "/sched"));
        assert_eq!(e.url("filter"), "http://127.0.0.1:8080/sched/filter");
        assert!(Extender::new(config("ftp://x")).is_err());
        let mut gpu = config("http://h");
        gpu.managed_resources = vec!["example.com/gpu".into()];
        let e = Extender::new(gpu).unwrap();
        assert_eq!(e.authority.1, 80);
        let asks = json!({"spec": {"containers": [{"resources": {"limits": {"example.com/gpu": 1}}}]}});
        assert!(e.interested(&asks));
        assert!(!e.interested(&json!({"spec": {"containers": [{"name": "c"}]}})));
    }

    #[test]
    fn args_carry_whole_nodes_or_their_names() {
        let nodes = vec![Arc::new(json!({"metadata": {"name": "n1"}}))];
        let pod = json!({"metadata": {"name": "p"}});
        let whole = Extender::new(config("http://h")).unwrap();
        assert_eq!(whole.args(&pod, &nodes)["nodes"]["items"][0]["metadata"]["name"], "n1");
        let mut cached = config("http://h");
        cached.node_cache_capable = true;
        assert_eq!(Extender::new(cached).unwrap().args(&pod, &nodes)["nodenames"], json!(["n1"]));
    }

    #[actix_rt::test]
    async fn an_unreachable_extender_fails_unless_ignorable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let nodes = vec![Arc::new(json!({"metadata": {"name": "n1"}}))];
        let pod = json!({"metadata": {"name": "p"}});
        let strict = Extender::new(config(&format!("http://127.0.0.1:{port}"))).unwrap();
        let err = extend(std::slice::from_ref(&strict), &pod, nodes.clone()).await.unwrap_err();
        assert!(err.to_string().contains("connection refused"), "{err}");
        let mut lenient = strict.clone();
        lenient.config.ignorable = true;
        let extended = extend(&[lenient], &pod, nodes).await.unwrap();
        assert_eq!(extended.nodes, ["n1"]);
    }
}
