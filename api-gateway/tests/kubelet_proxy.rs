//! The kubelet proxy end to end in one process: a real single-member store and the kind
//! actors, the API server over HTTPS (`api_gateway::serve`), and a fake kubelet: hyper over
//! rustls with a self-signed rcgen certificate, requiring a client certificate of the cluster
//! CA (as a kubelet's `--client-ca-file` does). It records who asked for what, streams a
//! followed log one line at a time as the test lets it, and echoes WebSocket frames. A Node
//! (InternalIP 127.0.0.1, `daemonEndpoints` port of the fake) and pods bound to it are
//! written to the store; the test talks to the gateway over HTTPS as kubectl would.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actors::{kinds, HealthActor, KindActors};
use api_gateway::{pki, serve, Pki, Tokens};
use futures::{SinkExt, StreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use raft_store::{StoreConfig, StoreNode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const DEADLINE: Duration = Duration::from_secs(20);

// ---- the fake kubelet ----

/// What the fake kubelet was asked: by whom (the client certificate's CN and O) and for what
/// (path and query, as sent).
#[derive(Debug, Clone)]
struct Seen {
    user: String,
    groups: Vec<String>,
    target: String,
}

/// A kubelet that is not one: see the module's documentation.
struct FakeKubelet {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Lets a followed log write its second line.
    release: Arc<Notify>,
}

type Body = BoxBody<Bytes, Infallible>;

fn reply(code: u16, text: &str) -> Response<Body> {
    let body = Full::new(Bytes::from(text.to_string())).boxed();
    Response::builder().status(code).header("content-type", "text/plain").body(body).unwrap()
}

impl FakeKubelet {
    /// Listens on a port of 127.0.0.1, trusting client certificates of `cluster_ca` only.
    async fn start(cluster_ca: &str) -> FakeKubelet {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(cluster_ca.as_bytes()).unwrap()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap();
        // Self-signed, as a kubelet's own serving certificate is: no CA of the cluster knows it.
        let own = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let key = PrivateKeyDer::try_from(own.signing_key.serialize_der()).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![own.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let kubelet = FakeKubelet { port, seen: Arc::default(), release: Arc::new(Notify::new()) };
        let (seen, release) = (kubelet.seen.clone(), kubelet.release.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen, release) = (acceptor.clone(), seen.clone(), release.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let der = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
                    let user = der.and_then(|der| api_gateway::authn::user_from_certificate(&der).ok());
                    let (user, groups) = user.map(|u| (u.name, u.groups)).unwrap_or_default();
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let target = req.uri().path_and_query().map_or_else(String::new, |p| p.to_string());
                        seen.lock().unwrap().push(Seen { user: user.clone(), groups: groups.clone(), target });
                        answer(req, release.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        kubelet
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The fake's answers: logs of pod `web`; a pod `starting` whose container waits; WebSocket
/// echoes on `/exec/...` and `/portForward/...`; 404 for anything else.
async fn answer(mut req: Request<Incoming>, release: Arc<Notify>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if path.starts_with("/exec/") || path.starts_with("/portForward/") {
        return Ok(websocket_echo(&mut req));
    }
    let response = match path.as_str() {
        "/containerLogs/default/web/app" if query.contains("follow=true") => {
            // One line now, the next once the test has read the first.
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(Bytes::from("first line\n")))).await;
                release.notified().await;
                let _ = tx.send(Ok(Frame::data(Bytes::from("second line\n")))).await;
            });
            let chunks = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
            let body = BodyExt::boxed(StreamBody::new(chunks));
            Response::builder().header("content-type", "text/plain").body(body).unwrap()
        }
        "/containerLogs/default/web/app" | "/containerLogs/default/two/sidecar" => {
            reply(200, "hello from the kubelet\n")
        }
        "/containerLogs/default/starting/app" => {
            reply(400, "container \"app\" in pod \"starting\" is waiting to start: ContainerCreating")
        }
        _ => reply(404, "404 page not found\n"),
    };
    Ok(response)
}

/// Switches to WebSocket (the first subprotocol offered) and echoes every data frame.
fn websocket_echo(req: &mut Request<Incoming>) -> Response<Body> {
    let Some(key) = req.headers().get("sec-websocket-key").map(|k| derive_accept_key(k.as_bytes())) else {
        return reply(400, "not a WebSocket upgrade");
    };
    let protocol = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|p| p.to_str().ok())
        .and_then(|p| p.split(',').next())
        .map(|p| p.trim().to_string())
        .unwrap_or_default();
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(message)) = socket.next().await {
            let echoed = match message {
                Message::Binary(_) | Message::Text(_) => socket.send(message).await.is_ok(),
                Message::Close(_) => false,
                _ => true,
            };
            if !echoed {
                break;
            }
        }
    });
    Response::builder()
        .status(101)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", key)
        .header("sec-websocket-protocol", protocol)
        .body(Full::new(Bytes::new()).boxed())
        .unwrap()
}

// ---- the gateway ----

/// A store, the kind actors and the API server over HTTPS, with a Node `n1` whose kubelet
/// is the fake, a Node `lost` whose kubelet port is closed, and pods.
struct Gateway {
    addr: SocketAddr,
    pki: Pki,
    kubelet: FakeKubelet,
    node: StoreNode,
    handle: ServerHandle,
    _dir: tempfile::TempDir,
}

/// A Node whose kubelet listens on `port` of 127.0.0.1, as a kubelet registers it.
fn node_object(name: &str, port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": {
        "addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
    }})
}

/// A pod of `containers` in `default`, bound to `node` if given.
fn pod(name: &str, containers: &[&str], node: Option<&str>) -> Value {
    let containers: Vec<Value> = containers.iter().map(|c| json!({"name": c, "image": "busybox"})).collect();
    let mut pod =
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": containers}});
    if let Some(node) = node {
        pod["spec"]["nodeName"] = json!(node);
    }
    pod
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port()
}

impl Gateway {
    async fn start() -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::new(1, dir.path().join("store"), "127.0.0.1:0".parse().unwrap());
        let node = StoreNode::start_single(config, DEADLINE).await.unwrap();
        let kinds = KindActors::start(&node);
        let pki = pki::load_or_create(&dir.path().join("pki"), &[]).unwrap();
        let kubelet = FakeKubelet::start(&pki.ca.cert_pem).await;

        let nodes = kinds::find("", "v1", "nodes").unwrap();
        let pods = kinds::find("", "v1", "pods").unwrap();
        let create = |kind, ns, obj| actors::object_store::create(&node, kind, ns, obj, None);
        create(nodes, None, node_object("n1", kubelet.port)).await.unwrap();
        create(nodes, None, node_object("lost", closed_port().await)).await.unwrap();
        let namespaces = kinds::find("", "v1", "namespaces").unwrap();
        let default = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
        create(namespaces, None, default).await.unwrap();
        let ns = Some("default");
        create(pods, ns, pod("web", &["app"], Some("n1"))).await.unwrap();
        create(pods, ns, pod("two", &["app", "sidecar"], Some("n1"))).await.unwrap();
        create(pods, ns, pod("starting", &["app"], Some("n1"))).await.unwrap();
        create(pods, ns, pod("pending", &["app"], None)).await.unwrap();
        create(pods, ns, pod("stranded", &["app"], Some("lost"))).await.unwrap();
        create(pods, ns, pod("nowhere", &["app"], Some("gone"))).await.unwrap();

        let health = HealthActor::start_supervised(node.clone(), Duration::from_millis(50));
        let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle();
        let tokens = Tokens::parse("s3cret,robot,r1,\"ops\"\n").unwrap();
        let (server, addr) = serve("127.0.0.1:0".parse().unwrap(), &pki, tokens, health, kinds, prometheus).unwrap();
        let handle = server.handle();
        actix_rt::spawn(server);
        let gateway = Gateway { addr, pki, kubelet, node, handle, _dir: dir };
        // The gateway answers once it listens and its pods actor has seen the pods.
        for name in ["web", "two", "starting", "pending", "stranded", "nowhere"] {
            gateway.until_ok(&format!("/api/v1/namespaces/default/pods/{name}")).await;
        }
        gateway
    }

    async fn stop(self) {
        self.handle.stop(true).await;
        self.node.shutdown().await;
    }

    /// A TLS connection to the gateway, with the admin's certificate or none.
    async fn connect(&self, admin: bool) -> tokio_rustls::client::TlsStream<TcpStream> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.pki.ca.cert_pem.as_bytes()).unwrap()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = if admin {
            let cert = CertificateDer::from_pem_slice(self.pki.admin.cert_pem.as_bytes()).unwrap();
            let key = PrivateKeyDer::from_pem_slice(self.pki.admin.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(vec![cert], key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap()
    }

    /// Sends `method path` with `headers`; the response comes back once its head has (within
    /// the deadline: a proxy that holds the head back until the body ends fails here).
    async fn send(&self, admin: bool, method: &str, path: &str, headers: &[(&str, &str)]) -> Response<Incoming> {
        let tls = self.connect(admin).await;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(connection);
        let mut request = Request::builder().method(method).uri(path).header("host", "localhost");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let sent = sender.send_request(request.body(Full::new(Bytes::new())).unwrap());
        tokio::time::timeout(DEADLINE, sent).await.expect("no answer within the deadline").unwrap()
    }

    /// `GET path` as the admin: the code, the `Content-Type` and the whole body.
    async fn get(&self, path: &str) -> (u16, String, String) {
        let response = self.send(true, "GET", path, &[]).await;
        let code = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (code, content_type, String::from_utf8(body.to_vec()).unwrap())
    }

    /// `GET path` as the admin, which must be a `Status` with `code`; its message.
    async fn status(&self, path: &str, code: u16, reason: &str) -> String {
        let (got, _, body) = self.get(path).await;
        let status: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: not JSON: {body}"));
        assert_eq!((got, status["kind"].as_str(), status["code"].as_u64()), (code, Some("Status"), Some(code.into())));
        assert_eq!(status["reason"], reason, "{path}: {status}");
        status["message"].as_str().unwrap().to_string()
    }

    /// Polls `GET path` until it answers 200; fails past the deadline.
    async fn until_ok(&self, path: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let tcp = TcpStream::connect(self.addr).await;
            let last = match tcp {
                Ok(_) => self.get(path).await,
                Err(e) => (0, String::new(), e.to_string()),
            };
            if last.0 == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "{path} never answered 200: {last:?}");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Opens a WebSocket to `path` offering `protocol`, as kubectl 1.30+ does.
    async fn websocket(
        &self,
        path: &str,
        protocol: &str,
    ) -> (WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>, hyper::http::HeaderMap) {
        let mut request = format!("wss://localhost:{}{path}", self.addr.port()).into_client_request().unwrap();
        request.headers_mut().insert("sec-websocket-protocol", protocol.parse().unwrap());
        let tls = self.connect(true).await;
        let handshake = tokio::time::timeout(DEADLINE, tokio_tungstenite::client_async(request, tls));
        let (socket, response) = handshake.await.expect("no handshake within the deadline").unwrap();
        assert_eq!(response.status().as_u16(), 101);
        (socket, response.headers().clone())
    }
}

/// The next data frame of `body`, within the deadline (a buffering proxy never sends it).
async fn next_chunk(body: &mut Incoming) -> Option<Bytes> {
    loop {
        let frame = tokio::time::timeout(DEADLINE, body.frame()).await.expect("no chunk within the deadline");
        match frame {
            None => return None,
            Some(frame) => {
                if let Ok(data) = frame.unwrap().into_data() {
                    return Some(data);
                }
            }
        }
    }
}

const LOG: &str = "/api/v1/namespaces/default/pods/web/log";

#[actix_rt::test]
async fn logs_are_read_from_the_nodes_kubelet_with_kubes_parameters() {
    let gateway = Gateway::start().await;

    let query = "?container=app&tailLines=5&timestamps=true&limitBytes=100&sinceSeconds=60&pretty=true";
    let (code, content_type, body) = gateway.get(&format!("{LOG}{query}")).await;
    assert_eq!((code, content_type.as_str(), body.as_str()), (200, "text/plain", "hello from the kubelet\n"));
    // A one-container pod's container is found without being named.
    assert_eq!(gateway.get(LOG).await.2, "hello from the kubelet\n");
    let (code, _, body) = gateway.get("/api/v1/namespaces/default/pods/two/log?container=sidecar").await;
    assert_eq!((code, body.as_str()), (200, "hello from the kubelet\n"));

    let seen = gateway.kubelet.seen();
    let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "/containerLogs/default/web/app?limitBytes=100&sinceSeconds=60&tailLines=5&timestamps=true",
            "/containerLogs/default/web/app",
            "/containerLogs/default/two/sidecar",
        ]
    );
    // Every request came with the API server's kubelet client certificate.
    for seen in &seen {
        assert_eq!(seen.user, "kube-apiserver-kubelet-client", "{seen:?}");
        assert!(seen.groups.iter().any(|g| g == "kubeadm:cluster-admins"), "{seen:?}");
    }
    gateway.stop().await;
}

#[actix_rt::test]
async fn a_followed_log_streams_each_chunk_as_the_kubelet_writes_it() {
    let gateway = Gateway::start().await;
    let response = gateway.send(true, "GET", &format!("{LOG}?follow=true"), &[]).await;
    assert_eq!(response.status().as_u16(), 200);
    let mut body = response.into_body();
    // The kubelet holds the second line back until the first has reached the client.
    assert_eq!(next_chunk(&mut body).await.unwrap(), "first line\n");
    gateway.kubelet.release.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = next_chunk(&mut body).await {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(String::from_utf8(rest).unwrap(), "second line\n");
    assert_eq!(gateway.kubelet.seen()[0].target, "/containerLogs/default/web/app?follow=true");
    gateway.stop().await;
}

#[actix_rt::test]
async fn bad_requests_missing_pods_and_unreachable_kubelets_are_kubes_statuses() {
    let gateway = Gateway::start().await;
    let pods = "/api/v1/namespaces/default/pods";

    let message = gateway.status(&format!("{pods}/two/log"), 400, "BadRequest").await;
    assert_eq!(message, "a container name must be specified for pod two, choose one of: [app sidecar]");
    let message = gateway.status(&format!("{pods}/web/log?container=nope"), 400, "BadRequest").await;
    assert_eq!(message, "container nope is not valid for pod web");
    let message = gateway.status(&format!("{pods}/nope/log"), 404, "NotFound").await;
    assert_eq!(message, r#"pods "nope" not found"#);
    let message = gateway.status(&format!("{pods}/web/log?tailLines=-1"), 422, "Invalid").await;
    assert!(message.starts_with(r#"PodLogOptions "web" is invalid: tailLines"#), "{message}");
    // The kubelet's refusal, in its words.
    let message = gateway.status(&format!("{pods}/starting/log"), 400, "BadRequest").await;
    assert_eq!(message, r#"container "app" in pod "starting" is waiting to start: ContainerCreating"#);
    // A pod on no node has no logs yet (kube answers empty); exec needs a node.
    assert_eq!(gateway.get(&format!("{pods}/pending/log")).await, (200, "text/plain".into(), String::new()));
    let message = gateway.status(&format!("{pods}/pending/exec?command=ls"), 400, "BadRequest").await;
    assert_eq!(message, "pod pending does not have a host assigned");
    let message = gateway.status(&format!("{pods}/nowhere/log"), 404, "NotFound").await;
    assert_eq!(message, r#"nodes "gone" not found"#);
    // A kubelet that does not answer: Go's client error, as kube-apiserver passes it on.
    let (code, _, body) = gateway.get(&format!("{pods}/stranded/log?follow=true")).await;
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code, 500, "{body}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with(r#"Get "https://127.0.0.1:"#)
            && message.contains(r#"/containerLogs/default/stranded/app?follow=true": dial tcp 127.0.0.1:"#)
            && message.ends_with(": connect: connection refused"),
        "{message}"
    );
    // exec without an upgrade; other methods.
    let message = gateway.status(&format!("{pods}/web/exec?command=ls"), 400, "BadRequest").await;
    assert_eq!(message, "Upgrade request required");
    let response = gateway.send(true, "POST", &format!("{pods}/web/log"), &[]).await;
    assert_eq!(response.status().as_u16(), 405);
    // Anonymous callers do not get through.
    let response = gateway.send(false, "GET", &format!("{pods}/web/exec?command=ls"), &[]).await;
    assert_eq!(response.status().as_u16(), 401);
    // Nothing of these reached the kubelet but the one refused log.
    let targets: Vec<String> = gateway.kubelet.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(targets, ["/containerLogs/default/starting/app"]);
    gateway.stop().await;
}

#[actix_rt::test]
async fn exec_and_port_forward_are_websockets_tunnelled_to_the_kubelet() {
    let gateway = Gateway::start().await;
    let exec =
        "/api/v1/namespaces/default/pods/web/exec?command=echo&command=hi+there&stdin=true&stdout=true&tty=false";
    let (mut socket, headers) = gateway.websocket(exec, "v5.channel.k8s.io, v4.channel.k8s.io").await;
    assert_eq!(headers.get("sec-websocket-protocol").unwrap(), "v5.channel.k8s.io");
    // Channel 0 (stdin) out, the kubelet's echo back, frame for frame.
    socket.send(Message::binary(b"\x00hello".to_vec())).await.unwrap();
    let echoed = tokio::time::timeout(DEADLINE, socket.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed, Message::binary(b"\x00hello".to_vec()));
    socket.close(None).await.unwrap();

    let forward = "/api/v1/namespaces/default/pods/web/portforward?ports=8080";
    let (mut socket, headers) = gateway.websocket(forward, "SPDY/3.1+portforward.k8s.io").await;
    assert_eq!(headers.get("sec-websocket-protocol").unwrap(), "SPDY/3.1+portforward.k8s.io");
    socket.send(Message::binary(b"spdy frames".to_vec())).await.unwrap();
    let echoed = tokio::time::timeout(DEADLINE, socket.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed, Message::binary(b"spdy frames".to_vec()));
    socket.close(None).await.unwrap();

    let seen = gateway.kubelet.seen();
    let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(
        targets,
        ["/exec/default/web/app?command=echo&command=hi+there&stdin=1&stdout=1", "/portForward/default/web?port=8080"]
    );
    assert!(seen.iter().all(|s| s.user == "kube-apiserver-kubelet-client"), "{seen:?}");
    gateway.stop().await;
}
