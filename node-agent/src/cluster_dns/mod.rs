//! Cluster DNS, served by the node agent for the pods of its node (node-local, in place of
//! a CoreDNS Deployment): names of Services, their endpoints and pods under the cluster
//! domain answered from the watched Services and EndpointSlices; everything else forwarded
//! to the host's resolvers.
//!
//! - [`records`]: the pure part: the answer of the watched objects to one question
//!   (CoreDNS's `kubernetes` plugin semantics, TTL 30, negative TTL 5).
//! - [`resolv`]: the pods' resolv.conf per `dnsPolicy` (what kubelet asks CRI for).
//! - [`Dns::answer`]: one DNS message in, one out (hickory-proto for the wire format);
//!   [`serve_udp`] and [`serve_tcp`]: port 53; [`run`]: the shell: the watches (the service
//!   proxy's list+watch) feed the zone, and the server listens on the address pods are
//!   given (by default the node bridge's gateway, known once the node has a pod CIDR).
//!
//! The sockets are bound with `IP_FREEBIND`: the bridge and its gateway address appear only
//! with the first pod sandbox, and queries are served from then on.
//!
//! Metrics: `flotilla_cluster_dns_queries_total{type,rcode}`,
//! `flotilla_cluster_dns_forwarded_total{result}`.

pub mod records;
pub mod resolv;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};

use crate::client::ApiClient;
use crate::list_watch::{self, Event};
pub use records::Zone;

/// The cluster domain kubelet and CoreDNS default to.
pub const DEFAULT_DOMAIN: &str = "cluster.local";
/// The DNS port.
pub const PORT: u16 = 53;
/// How long one upstream resolver has to answer a forwarded query.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// A TCP client idle this long is dropped.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// After a failed bind, the next try.
const BIND_RETRY: Duration = Duration::from_secs(5);
/// The largest UDP answer without EDNS (RFC 1035), and the most we offer with it.
const UDP_PLAIN_MAX: usize = 512;
const UDP_EDNS_MAX: u16 = 1232;

/// The DNS server's state: the zone, its domain and the upstreams.
#[derive(Debug)]
pub struct Dns {
    zone: RwLock<Synced>,
    domain: String,
    upstreams: RwLock<Vec<SocketAddr>>,
    /// The upstream that answered last: asked first.
    preferred: AtomicUsize,
}

#[derive(Debug, Default)]
struct Synced {
    zone: Zone,
    services_listed: bool,
    slices_listed: bool,
}

/// What the watches report.
#[derive(Debug)]
pub enum Change {
    Services(Box<Event<Service>>),
    Slices(Box<Event<EndpointSlice>>),
}

/// The gateway of the node's bridge for pod CIDR `cidr` (host-local's default: the
/// subnet's first address), e.g. `10.244.0.1` for `10.244.0.0/24`.
pub fn gateway(cidr: &str) -> Option<IpAddr> {
    let (network, _) = cidr.split_once('/')?;
    match network.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(IpAddr::V4(Ipv4Addr::from(u32::from(v4).checked_add(1)?))),
        IpAddr::V6(v6) => Some(IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6).checked_add(1)?))),
    }
}

/// The host's resolvers as upstreams (port 53), without `except` (ourselves).
pub fn host_upstreams(except: Option<IpAddr>) -> Vec<SocketAddr> {
    let mut names = resolv::parse(&std::fs::read_to_string(resolv::HOST_RESOLV_CONF).unwrap_or_default()).nameservers;
    // systemd-resolved's stub may not answer (or not for us): its upstreams come after it.
    if let Ok(text) = std::fs::read_to_string(resolv::SYSTEMD_RESOLV_CONF) {
        names.extend(resolv::parse(&text).nameservers);
    }
    let mut out: Vec<SocketAddr> = Vec::new();
    for ip in names.iter().filter_map(|n| n.parse::<IpAddr>().ok()) {
        let addr = SocketAddr::new(ip, PORT);
        if Some(ip) != except && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

fn type_label(qtype: RecordType) -> String {
    qtype.to_string()
}

fn count(qtype: &str, rcode: ResponseCode) {
    metrics::counter!("flotilla_cluster_dns_queries_total", "type" => qtype.to_string(), "rcode" => rcode.to_str())
        .increment(1);
}

impl Dns {
    pub fn new(domain: &str, upstreams: Vec<SocketAddr>) -> Dns {
        Dns {
            zone: RwLock::new(Synced::default()),
            domain: domain.trim_matches('.').to_ascii_lowercase(),
            upstreams: RwLock::new(upstreams),
            preferred: AtomicUsize::new(0),
        }
    }

    /// Replaces the upstream resolvers.
    pub fn set_upstreams(&self, upstreams: Vec<SocketAddr>) {
        *self.upstreams.write().unwrap_or_else(std::sync::PoisonError::into_inner) = upstreams;
    }

    fn upstreams(&self) -> Vec<SocketAddr> {
        self.upstreams.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Takes in a change of the watched objects.
    pub fn observe(&self, change: Change) {
        let mut synced = self.zone.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match change {
            Change::Services(event) => match *event {
                Event::Listed(items) => {
                    synced.zone.list_services(items);
                    synced.services_listed = true;
                }
                Event::Applied(s) => synced.zone.apply_service(s),
                Event::Deleted(s) => synced.zone.delete_service(&s),
            },
            Change::Slices(event) => match *event {
                Event::Listed(items) => {
                    synced.zone.list_slices(items);
                    synced.slices_listed = true;
                }
                Event::Applied(s) => synced.zone.apply_slice(s),
                Event::Deleted(s) => synced.zone.delete_slice(&s),
            },
        }
    }

    /// The answer to the DNS message `query` (`None`: nothing to send back). `udp`: the
    /// answer is truncated to what the client takes over UDP.
    pub async fn answer(&self, query: &[u8], udp: bool) -> Option<Vec<u8>> {
        let request = match Message::from_vec(query) {
            Ok(request) => request,
            Err(error) => {
                tracing::debug!(%error, "cluster DNS: a message that does not parse");
                let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
                count("invalid", ResponseCode::FormErr);
                return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr).to_vec().ok();
            }
        };
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let id = request.metadata.id;
        let mut response = Message::response(id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.queries = request.queries.clone();
        let max = match &request.edns {
            Some(edns) => {
                let mut ours = Edns::new();
                ours.set_max_payload(UDP_EDNS_MAX);
                response.edns = Some(ours);
                usize::from(edns.max_payload().clamp(UDP_PLAIN_MAX as u16, UDP_EDNS_MAX))
            }
            None => UDP_PLAIN_MAX,
        };
        let (qname, qtype) = match (request.metadata.op_code, request.queries.as_slice()) {
            (OpCode::Query, [question]) => (question.name().clone(), question.query_type()),
            (OpCode::Query, _) => {
                response.metadata.response_code = ResponseCode::FormErr;
                count("invalid", ResponseCode::FormErr);
                return response.to_vec().ok();
            }
            _ => {
                response.metadata.response_code = ResponseCode::NotImp;
                count("invalid", ResponseCode::NotImp);
                return response.to_vec().ok();
            }
        };
        let answered = {
            let synced = self.zone.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let answer = records::lookup(&synced.zone, &self.domain, &qname, qtype);
            // Before both lists the zone is unknown: not NXDOMAIN, which would be cached.
            match answer {
                Some(_) if !(synced.services_listed && synced.slices_listed) => Some(None),
                other => other.map(Some),
            }
        };
        let qtype_label = type_label(qtype);
        match answered {
            Some(Some(answer)) => {
                response.metadata.authoritative = true;
                response.metadata.response_code = answer.rcode;
                response.answers = answer.answers;
                response.authorities = answer.authorities;
                response.additionals = answer.additionals;
                // An ExternalName's CNAME is followed, as CoreDNS does, so stub resolvers get
                // addresses.
                let target = match response.answers.last().map(|r| &r.data) {
                    Some(RData::CNAME(target)) if !matches!(qtype, RecordType::CNAME | RecordType::ANY) => {
                        Some(target.0.clone())
                    }
                    _ => None,
                };
                if let Some(target) = target {
                    response.answers.extend(self.chase(id, target, qtype).await);
                }
            }
            Some(None) => response.metadata.response_code = ResponseCode::ServFail,
            None => {
                return match self.forward(query, udp).await {
                    Some(reply) => {
                        let rcode = reply.get(3).map_or(ResponseCode::ServFail, |b| ResponseCode::from(0, b & 0x0f));
                        count(&qtype_label, rcode);
                        tracing::trace!(name = %qname, qtype = %qtype_label, %rcode, "cluster DNS: forwarded");
                        Some(reply)
                    }
                    None => {
                        count(&qtype_label, ResponseCode::ServFail);
                        response.metadata.response_code = ResponseCode::ServFail;
                        response.to_vec().ok()
                    }
                };
            }
        }
        count(&qtype_label, response.metadata.response_code);
        tracing::trace!(name = %qname, qtype = %qtype_label, rcode = %response.metadata.response_code, "cluster DNS");
        let bytes = response.to_vec().ok()?;
        if udp && bytes.len() > max {
            return response.truncate().to_vec().ok();
        }
        Some(bytes)
    }

    /// The records of `target` (a CNAME's): from the zone where it is in it, else from the
    /// upstreams.
    async fn chase(&self, id: u16, target: Name, qtype: RecordType) -> Vec<Record> {
        {
            let synced = self.zone.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(answer) = records::lookup(&synced.zone, &self.domain, &target, qtype) {
                return answer.answers;
            }
        }
        let mut query = Message::new(id, MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(target, qtype));
        let Ok(bytes) = query.to_vec() else { return Vec::new() };
        let reply = self.forward(&bytes, false).await.and_then(|reply| Message::from_vec(&reply).ok());
        reply.map(|reply| reply.answers).unwrap_or_default()
    }

    /// Sends `query` to the upstreams in turn (the last one that answered first) over UDP;
    /// the first answer with the query's id. A truncated answer is asked for again over TCP
    /// unless the client itself asked over UDP (it will come back over TCP).
    async fn forward(&self, query: &[u8], udp: bool) -> Option<Vec<u8>> {
        let upstreams = self.upstreams();
        if upstreams.is_empty() {
            metrics::counter!("flotilla_cluster_dns_forwarded_total", "result" => "no_upstream").increment(1);
            return None;
        }
        let first = self.preferred.load(Ordering::Relaxed) % upstreams.len();
        for i in 0..upstreams.len() {
            let index = (first + i) % upstreams.len();
            let upstream = upstreams[index];
            let mut answer = ask_upstream(upstream, query).await;
            if !udp && answer.as_ref().is_ok_and(|reply| reply.get(2).is_some_and(|flags| flags & 0x02 != 0)) {
                answer = ask_upstream_tcp(upstream, query).await;
            }
            match answer {
                Ok(reply) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    metrics::counter!("flotilla_cluster_dns_forwarded_total", "result" => "ok").increment(1);
                    return Some(reply);
                }
                Err(error) => {
                    tracing::debug!(%upstream, %error, "cluster DNS: upstream did not answer");
                }
            }
        }
        metrics::counter!("flotilla_cluster_dns_forwarded_total", "result" => "failed").increment(1);
        None
    }
}

async fn ask_upstream(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    let deadline = tokio::time::Instant::now() + UPSTREAM_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
        if n >= 2 && buf[..2] == query[..2] {
            return Ok(buf[..n].to_vec());
        }
    }
}

async fn ask_upstream_tcp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let exchange = async {
        let mut stream = TcpStream::connect(upstream).await?;
        let length = u16::try_from(query.len()).map_err(std::io::Error::other)?;
        let mut framed = length.to_be_bytes().to_vec();
        framed.extend_from_slice(query);
        stream.write_all(&framed).await?;
        let length = stream.read_u16().await?;
        let mut reply = vec![0u8; usize::from(length)];
        stream.read_exact(&mut reply).await?;
        Ok(reply)
    };
    tokio::time::timeout(UPSTREAM_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer over TCP"))?
}

/// A UDP socket on `addr`, bound even before the address exists (`IP_FREEBIND`).
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, None)?;
    freebind(&socket, addr)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// A TCP listener on `addr`, bound even before the address exists (`IP_FREEBIND`).
pub fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    freebind(&socket, addr)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    TcpListener::from_std(socket.into())
}

fn freebind(socket: &socket2::Socket, addr: SocketAddr) -> std::io::Result<()> {
    match addr {
        SocketAddr::V4(_) => socket.set_freebind_v4(true),
        SocketAddr::V6(_) => socket.set_freebind_v6(true),
    }
}

/// Answers queries on `socket` for ever (each in its own task: forwarding waits).
pub async fn serve_udp(socket: UdpSocket, dns: Arc<Dns>) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                tracing::warn!(%error, "cluster DNS: UDP receive failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (query, socket, dns) = (buf[..n].to_vec(), socket.clone(), dns.clone());
        tokio::spawn(async move {
            if let Some(reply) = dns.answer(&query, true).await {
                if let Err(error) = socket.send_to(&reply, peer).await {
                    tracing::debug!(%peer, %error, "cluster DNS: UDP send failed");
                }
            }
        });
    }
}

/// Answers queries on connections to `listener` for ever (RFC 1035's two-byte lengths).
pub async fn serve_tcp(listener: TcpListener, dns: Arc<Dns>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, dns.clone()));
            }
            Err(error) => {
                tracing::warn!(%error, "cluster DNS: TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(mut stream: TcpStream, dns: Arc<Dns>) {
    loop {
        let Ok(Ok(length)) = tokio::time::timeout(TCP_IDLE, stream.read_u16()).await else { return };
        let mut query = vec![0u8; usize::from(length)];
        if !matches!(tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query)).await, Ok(Ok(_))) {
            return;
        }
        let Some(reply) = dns.answer(&query, false).await else { continue };
        let Ok(length) = u16::try_from(reply.len()) else { return };
        let mut framed = length.to_be_bytes().to_vec();
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

/// Serves `dns` on UDP and TCP `addr` until the returned handles are aborted.
pub fn listen(addr: SocketAddr, dns: Arc<Dns>) -> std::io::Result<Vec<tokio::task::JoinHandle<()>>> {
    let udp = bind_udp(addr)?;
    let tcp = bind_tcp(addr)?;
    Ok(vec![tokio::spawn(serve_udp(udp, dns.clone())), tokio::spawn(serve_tcp(tcp, dns))])
}

/// Runs the node's cluster DNS for `domain` until the process ends: the zone follows the
/// watches; the server listens on port 53 of the address `address` holds (and moves when it
/// changes; nothing while it is `None`).
pub async fn run(api: Arc<ApiClient>, domain: String, mut address: watch::Receiver<Option<IpAddr>>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(list_watch::watch(api.clone(), "services", None, tx.clone(), |e| Change::Services(Box::new(e))));
    tokio::spawn(list_watch::watch(api, "endpointslices", None, tx, |e| Change::Slices(Box::new(e))));
    let dns = Arc::new(Dns::new(&domain, Vec::new()));
    let mut serving: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut bound: Option<IpAddr> = None;
    let mut retry = false;
    loop {
        let wanted = *address.borrow_and_update();
        if wanted != bound || retry {
            serving.drain(..).for_each(|h| h.abort());
            retry = false;
            bound = wanted;
            if let Some(ip) = wanted {
                dns.set_upstreams(host_upstreams(Some(ip)));
                let addr = SocketAddr::new(ip, PORT);
                match listen(addr, dns.clone()) {
                    Ok(handles) => {
                        tracing::info!(%addr, domain = %domain, upstreams = ?dns.upstreams(), "cluster DNS serving");
                        serving = handles;
                    }
                    Err(error) => {
                        tracing::warn!(%addr, %error, "cluster DNS cannot listen; trying again");
                        retry = true;
                    }
                }
            }
        }
        let pending = async {
            if retry {
                tokio::time::sleep(BIND_RETRY).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            change = rx.recv() => {
                let Some(change) = change else { return };
                dns.observe(change);
                while let Ok(change) = rx.try_recv() {
                    dns.observe(change);
                }
            }
            changed = address.changed() => {
                if changed.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            () = pending => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use hickory_proto::rr::rdata::A;
    use serde_json::json;

    fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
        let mut message = Message::new(id, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        message.to_vec().unwrap()
    }

    async fn ask_udp(server: SocketAddr, id: u16, name: &str, qtype: RecordType) -> Message {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&query(id, name, qtype), server).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf)).await.unwrap().unwrap();
        let reply = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(reply.metadata.id, id);
        reply
    }

    /// The fake upstream's answer: 192.0.2.7 for every question; over UDP, `big.example.`
    /// is truncated (to be asked again over TCP).
    fn upstream_reply(request: &[u8], udp: bool) -> Vec<u8> {
        let request = Message::from_vec(request).unwrap();
        let mut reply = Message::response(request.metadata.id, OpCode::Query);
        let name = request.queries[0].name().clone();
        reply.queries = request.queries.clone();
        if udp && name.to_ascii() == "big.example." {
            reply.metadata.truncation = true;
        } else {
            reply.add_answer(Record::from_rdata(name, 60, RData::A(A([192, 0, 2, 7].into()))));
        }
        reply.to_vec().unwrap()
    }

    /// A UDP socket and a TCP listener on one loopback port. The port the system gives the
    /// UDP socket may be taken for TCP (another test's connection): then another is taken.
    fn udp_and_tcp_on_one_port() -> (UdpSocket, TcpListener, SocketAddr) {
        loop {
            let udp = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = udp.local_addr().unwrap();
            match bind_tcp(addr) {
                Ok(tcp) => return (udp, tcp, addr),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => panic!("bind tcp {addr}: {e}"),
            }
        }
    }

    /// A fake upstream resolver on loopback, UDP and TCP.
    async fn fake_upstream() -> SocketAddr {
        let (socket, listener, addr) = udp_and_tcp_on_one_port();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                socket.send_to(&upstream_reply(&buf[..n], true), peer).await.unwrap();
            }
        });
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let length = stream.read_u16().await.unwrap();
                let mut request = vec![0u8; usize::from(length)];
                stream.read_exact(&mut request).await.unwrap();
                let reply = upstream_reply(&request, false);
                stream.write_all(&u16::try_from(reply.len()).unwrap().to_be_bytes()).await.unwrap();
                stream.write_all(&reply).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn real_queries_over_udp_and_tcp_on_loopback() {
        // An upstream that never answers comes first: the next one is asked.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dns = Arc::new(Dns::new("cluster.local", vec![silent.local_addr().unwrap(), fake_upstream().await]));
        let (udp, tcp, server) = udp_and_tcp_on_one_port();
        tokio::spawn(serve_udp(udp, dns.clone()));
        tokio::spawn(serve_tcp(tcp, dns.clone()));

        // Before the lists: the zone is not known yet.
        let reply = ask_udp(server, 1, "web.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);

        let services: Vec<Service> = serde_json::from_value(json!([
            {"metadata": {"namespace": "default", "name": "web"},
             "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]}},
            {"metadata": {"namespace": "default", "name": "ext"},
             "spec": {"type": "ExternalName", "externalName": "example.com"}},
        ]))
        .unwrap();
        dns.observe(Change::Services(Box::new(Event::Listed(services))));
        dns.observe(Change::Slices(Box::new(Event::Listed(Vec::new()))));

        let reply = ask_udp(server, 2, "web.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.authoritative && reply.metadata.recursion_desired);
        assert_eq!(reply.answers.len(), 1);
        assert_eq!(reply.answers[0].data.to_string(), "10.96.0.20");
        assert_eq!(reply.answers[0].ttl, records::TTL);

        let reply = ask_udp(server, 3, "nope.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(reply.authorities[0].record_type(), RecordType::SOA);

        // Outside the zone: forwarded (past the silent upstream).
        let reply = ask_udp(server, 4, "example.org.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(reply.answers[0].data.to_string(), "192.0.2.7");
        // The one that answered is asked first from now on: at once.
        let started = std::time::Instant::now();
        ask_udp(server, 5, "example.net.", RecordType::A).await;
        assert!(started.elapsed() < UPSTREAM_TIMEOUT, "{:?}", started.elapsed());

        // An ExternalName: the CNAME, followed upstream.
        let reply = ask_udp(server, 8, "ext.default.svc.cluster.local.", RecordType::A).await;
        let answers: Vec<String> = reply.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(answers, ["example.com.", "192.0.2.7"]);

        // TCP, two queries on one connection.
        let mut stream = TcpStream::connect(server).await.unwrap();
        for id in [6u16, 7] {
            let q = query(id, "WEB.default.svc.cluster.local.", RecordType::A);
            let mut framed = u16::try_from(q.len()).unwrap().to_be_bytes().to_vec();
            framed.extend_from_slice(&q);
            stream.write_all(&framed).await.unwrap();
            let length = stream.read_u16().await.unwrap();
            let mut reply = vec![0u8; usize::from(length)];
            stream.read_exact(&mut reply).await.unwrap();
            let reply = Message::from_vec(&reply).unwrap();
            assert_eq!((reply.metadata.id, reply.answers[0].data.to_string()), (id, "10.96.0.20".to_string()));
        }
        // A truncated upstream answer: passed on to a UDP client, asked again over TCP for a
        // TCP one.
        let reply = ask_udp(server, 9, "big.example.", RecordType::A).await;
        assert!(reply.metadata.truncation && reply.answers.is_empty());
        let q = query(10, "big.example.", RecordType::A);
        let mut framed = u16::try_from(q.len()).unwrap().to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        stream.write_all(&framed).await.unwrap();
        let length = stream.read_u16().await.unwrap();
        let mut reply = vec![0u8; usize::from(length)];
        stream.read_exact(&mut reply).await.unwrap();
        let reply = Message::from_vec(&reply).unwrap();
        assert!(!reply.metadata.truncation);
        assert_eq!(reply.answers[0].data.to_string(), "192.0.2.7");

        // Garbage gets FORMERR.
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&[0x12, 0x34, 0xff], server).await.unwrap();
        let mut buf = [0u8; 512];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf)).await.unwrap().unwrap();
        let reply = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!((reply.metadata.id, reply.metadata.response_code), (0x1234, ResponseCode::FormErr));
    }

    #[test]
    fn the_gateway_is_the_pod_cidrs_first_address() {
        assert_eq!(gateway("10.244.3.0/24"), Some("10.244.3.1".parse().unwrap()));
        assert_eq!(gateway("fd00:10:244::/64"), Some("fd00:10:244::1".parse().unwrap()));
        assert_eq!(gateway("bogus"), None);
    }
}
