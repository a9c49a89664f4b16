//! The pure half of the service proxy: from the cluster's Services and EndpointSlices to
//! the `iptables-restore` text of the node's service rules, as kube-proxy's iptables
//! proxier writes them (with flotilla's own chain names, so a real kube-proxy on the same
//! machine keeps its chains and we keep ours).
//!
//! The `nat` table:
//! - `FLOTILLA-SERVICES` (jumped to from PREROUTING and OUTPUT): one rule per cluster IP and
//!   port with ready endpoints, to its `FLO-SVC-*` chain; last, local destinations go to
//!   `FLOTILLA-NODEPORTS`.
//! - `FLO-SVC-*` (one per service port; the name hashes `ns/name:port` and the protocol, as
//!   kube's `KUBE-SVC-*`): traffic not from a pod of this node's bridge is marked for
//!   masquerade; then one rule per ready endpoint, `-m statistic --mode random
//!   --probability 1/(n-i)`, the last unconditional; with ClientIP affinity, `-m recent`
//!   checks first.
//! - `FLO-SEP-*` (one per endpoint): a pod reaching itself (hairpin) is marked for
//!   masquerade; DNAT to `podIP:port`.
//! - `FLOTILLA-NODEPORTS`: node ports (always masqueraded), to the service's chain; on the
//!   node's addresses but not on 127.0.0.0/8.
//! - `FLOTILLA-MARK-MASQ` sets [`MASQ_MARK`]; `FLOTILLA-POSTROUTING` (from POSTROUTING)
//!   masquerades what carries it.
//!
//! The `filter` table's `FLOTILLA-SERVICES` (from INPUT, FORWARD and OUTPUT, new
//! connections only) rejects the cluster IPs and node ports of services without ready
//! endpoints, so clients are refused at once instead of hanging (TCP with a reset rather
//! than kube's ICMP port unreachable, see [`render`]).
//!
//! Not done (kube does): externalIPs, load-balancer ingress IPs, `externalTrafficPolicy` and
//! `internalTrafficPolicy: Local` (every endpoint serves every client), the fall-back to
//! serving-terminating endpoints when none is ready, IPv6, and conntrack clean-up of UDP
//! flows whose endpoint went away.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The packet mark bit `FLOTILLA-MARK-MASQ` sets (kube uses 0x4000; another bit keeps a
/// kube-proxy on the same machine out of our way).
pub const MASQ_MARK: u32 = 0x0002_0000;

/// Chains of ours (in both tables) start with one of these.
pub const CHAIN_PREFIXES: [&str; 2] = ["FLOTILLA-", "FLO-"];
pub const SERVICES_CHAIN: &str = "FLOTILLA-SERVICES";
pub const NODEPORTS_CHAIN: &str = "FLOTILLA-NODEPORTS";
pub const POSTROUTING_CHAIN: &str = "FLOTILLA-POSTROUTING";
pub const MARK_MASQ_CHAIN: &str = "FLOTILLA-MARK-MASQ";

/// kube's default ClientIP affinity timeout (3 hours).
const DEFAULT_AFFINITY_SECONDS: i32 = 10_800;

/// Whether a chain name is ours.
pub fn is_ours(chain: &str) -> bool {
    CHAIN_PREFIXES.iter().any(|p| chain.starts_with(p))
}

/// A service port's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(value: Option<&str>) -> Option<Protocol> {
        match value.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// As iptables spells it (and kube hashes it into chain names).
    fn iptables(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One ready endpoint of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// One port of one Service, with what serves it: what the rules are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    /// The port's name; empty for a Service's only, unnamed port.
    pub port_name: String,
    pub protocol: Protocol,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    /// NodePort and LoadBalancer Services' node port.
    pub node_port: Option<u16>,
    /// `sessionAffinity: ClientIP`: how long a client sticks to its endpoint.
    pub affinity_seconds: Option<u32>,
    /// The ready endpoints, sorted.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// kube's `ServicePortName`: `ns/name` or `ns/name:port`.
    pub fn port_name_string(&self) -> String {
        if self.port_name.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            format!("{}/{}:{}", self.namespace, self.name, self.port_name)
        }
    }

    /// The `FLO-SVC-*` chain: kube's hash of the service port name and (lower-case) protocol.
    pub fn chain(&self) -> String {
        format!("FLO-SVC-{}", hash(&format!("{}{}", self.port_name_string(), self.protocol.iptables())))
    }

    /// An endpoint's `FLO-SEP-*` chain: kube's hash of port name, protocol and endpoint.
    pub fn endpoint_chain(&self, endpoint: &Endpoint) -> String {
        let key = format!("{}{}{}:{}", self.port_name_string(), self.protocol.iptables(), endpoint.ip, endpoint.port);
        format!("FLO-SEP-{}", hash(&key))
    }
}

/// kube's chain-name hash: sha256, base32, the first 16 characters.
fn hash(text: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let (mut out, mut buffer, mut bits) = (String::with_capacity(16), 0u32, 0u32);
    for &byte in digest.as_ref() {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 && out.len() < 16 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
        if out.len() == 16 {
            break;
        }
    }
    out
}

/// The service ports the proxy serves, from the Services and EndpointSlices it watches:
/// IPv4 cluster IPs only (headless and ExternalName Services get nothing), each with the
/// ready endpoints of its Service's slices whose port of the same name and protocol gives
/// the target port (so named targetPorts come resolved). Sorted by namespace, name, port.
pub fn service_ports<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Vec<ServicePort> {
    // (namespace, service) -> slices.
    let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        let (Some(namespace), Some(service)) = (
            slice.metadata.namespace.as_deref(),
            slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)).map(String::as_str),
        ) else {
            continue;
        };
        if slice.address_type == "IPv4" {
            by_service.entry((namespace, service)).or_default().push(slice);
        }
    }
    let mut out = Vec::new();
    for service in services {
        let (Some(namespace), Some(name), Some(spec)) =
            (service.metadata.namespace.as_deref(), service.metadata.name.as_deref(), service.spec.as_ref())
        else {
            continue;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let Some(cluster_ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else {
            // Headless ("None"), not yet allocated, or IPv6.
            continue;
        };
        let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            let seconds = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(DEFAULT_AFFINITY_SECONDS);
            seconds.clamp(1, 86_400) as u32
        });
        let slices = by_service.get(&(namespace, name)).map(Vec::as_slice).unwrap_or_default();
        for port in spec.ports.iter().flatten() {
            let (Some(protocol), Ok(number)) = (Protocol::parse(port.protocol.as_deref()), u16::try_from(port.port))
            else {
                continue;
            };
            let port_name = port.name.clone().unwrap_or_default();
            let node_port =
                port.node_port.filter(|_| node_ports).and_then(|p| u16::try_from(p).ok()).filter(|&p| p > 0);
            let mut endpoints = BTreeSet::new();
            for slice in slices {
                let target = slice.ports.iter().flatten().find(|p| {
                    p.name.as_deref().unwrap_or_default() == port_name
                        && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
                });
                let Some(target) = target.and_then(|p| p.port).and_then(|p| u16::try_from(p).ok()) else {
                    continue;
                };
                for endpoint in &slice.endpoints {
                    // kube: an unknown readiness counts as ready; a terminating endpoint is
                    // never ready.
                    let conditions = endpoint.conditions.as_ref();
                    let ready = conditions.and_then(|c| c.ready).unwrap_or(true)
                        && !conditions.and_then(|c| c.terminating).unwrap_or(false);
                    if !ready {
                        continue;
                    }
                    if let Some(ip) = endpoint.addresses.first().and_then(|a| a.parse::<Ipv4Addr>().ok()) {
                        endpoints.insert(Endpoint { ip, port: target });
                    }
                }
            }
            out.push(ServicePort {
                namespace: namespace.to_string(),
                name: name.to_string(),
                port_name,
                protocol,
                cluster_ip,
                port: number,
                node_port,
                affinity_seconds,
                endpoints: endpoints.into_iter().collect(),
            });
        }
    }
    out.sort_by(|a, b| {
        (&a.namespace, &a.name, &a.port_name, a.protocol).cmp(&(&b.namespace, &b.name, &b.port_name, b.protocol))
    });
    out
}

/// How the rules tell a pod's traffic from the rest (kube's local-traffic detector).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalTraffic {
    /// Packets that came in on this bridge are from this node's pods; the rest (the host,
    /// other machines) is masqueraded so replies come back through this node.
    Bridge(String),
    /// Masquerade all service traffic (kube's `--masquerade-all`): needed where bridged
    /// replies skip iptables (no `br_netfilter`), so replies must go through the gateway.
    MasqueradeAll,
}

/// The rules' text and what they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The input of `iptables-restore --noflush`.
    pub text: String,
    /// Rules written into the `filter` and `nat` tables.
    pub filter_rules: usize,
    pub nat_rules: usize,
    /// Every chain of ours the text leaves in place, as (table, chain).
    pub chains: BTreeSet<(String, String)>,
}

/// Renders the rules for `ports`. `stale` are chains of ours found in the tables (table,
/// chain): those no longer wanted are flushed and deleted in the same transaction.
pub fn render(ports: &[ServicePort], local: &LocalTraffic, stale: &BTreeSet<(String, String)>) -> Rendered {
    let mut filter = Table::new("filter");
    let mut nat = Table::new("nat");
    filter.chain(SERVICES_CHAIN);
    for chain in [SERVICES_CHAIN, NODEPORTS_CHAIN, POSTROUTING_CHAIN, MARK_MASQ_CHAIN] {
        nat.chain(chain);
    }
    let mark = format!("{MASQ_MARK:#x}/{MASQ_MARK:#x}");
    nat.rule(POSTROUTING_CHAIN, &format!("-m mark ! --mark {mark} -j RETURN"));
    // Clear the bit: a packet going through these rules again is not masqueraded twice.
    nat.rule(POSTROUTING_CHAIN, &format!("-j MARK --xor-mark {MASQ_MARK:#x}"));
    nat.rule(
        POSTROUTING_CHAIN,
        "-m comment --comment \"flotilla service traffic requiring SNAT\" -j MASQUERADE --random-fully",
    );
    nat.rule(MARK_MASQ_CHAIN, &format!("-j MARK --or-mark {MASQ_MARK:#x}"));

    for sp in ports {
        let name = sp.port_name_string();
        let proto = sp.protocol.iptables();
        let portal = format!("-d {}/32 -p {proto} -m {proto} --dport {}", sp.cluster_ip, sp.port);
        if sp.endpoints.is_empty() {
            // kube rejects with ICMP port unreachable; for TCP a reset is surer: an ICMP
            // error that meets the socket still locked by connect() (a pod on this node is
            // answered within microseconds) is only a soft error, and the client learns of
            // it a SYN retransmission (a second) later; a reset waits in the backlog.
            let reject = match sp.protocol {
                Protocol::Tcp => "REJECT --reject-with tcp-reset",
                Protocol::Udp | Protocol::Sctp => "REJECT",
            };
            filter.rule(
                SERVICES_CHAIN,
                &format!("-m comment --comment \"{name} has no endpoints\" {portal} -j {reject}"),
            );
            if let Some(node_port) = sp.node_port {
                filter.rule(
                    SERVICES_CHAIN,
                    &format!(
                        "-m comment --comment \"{name} has no endpoints\" ! -d 127.0.0.0/8 -m addrtype \
                         --dst-type LOCAL -p {proto} -m {proto} --dport {node_port} -j {reject}"
                    ),
                );
            }
            continue;
        }
        let svc = sp.chain();
        nat.chain(&svc);
        nat.rule(SERVICES_CHAIN, &format!("-m comment --comment \"{name} cluster IP\" {portal} -j {svc}"));
        let masquerade = match local {
            LocalTraffic::Bridge(bridge) => format!("! -i {bridge} "),
            LocalTraffic::MasqueradeAll => String::new(),
        };
        nat.rule(
            &svc,
            &format!("-m comment --comment \"{name} cluster IP\" {masquerade}{portal} -j {MARK_MASQ_CHAIN}"),
        );
        if let Some(node_port) = sp.node_port {
            let match_port = format!("-m comment --comment {name} -p {proto} -m {proto} --dport {node_port}");
            nat.rule(NODEPORTS_CHAIN, &format!("{match_port} -j {MARK_MASQ_CHAIN}"));
            nat.rule(NODEPORTS_CHAIN, &format!("{match_port} -j {svc}"));
        }
        let chains: Vec<String> = sp.endpoints.iter().map(|e| sp.endpoint_chain(e)).collect();
        if let Some(seconds) = sp.affinity_seconds {
            for (endpoint, sep) in sp.endpoints.iter().zip(&chains) {
                nat.rule(
                    &svc,
                    &format!(
                        "-m comment --comment \"{name} -> {}:{}\" -m recent --name {sep} --rcheck \
                         --seconds {seconds} --reap -j {sep}",
                        endpoint.ip, endpoint.port
                    ),
                );
            }
        }
        let n = sp.endpoints.len();
        for (i, (endpoint, sep)) in sp.endpoints.iter().zip(&chains).enumerate() {
            let comment = format!("-m comment --comment \"{name} -> {}:{}\"", endpoint.ip, endpoint.port);
            if i + 1 < n {
                let probability = 1.0 / (n - i) as f64;
                nat.rule(
                    &svc,
                    &format!("{comment} -m statistic --mode random --probability {probability:.10} -j {sep}"),
                );
            } else {
                nat.rule(&svc, &format!("{comment} -j {sep}"));
            }
            nat.chain(sep);
            nat.rule(sep, &format!("-m comment --comment {name} -s {}/32 -j {MARK_MASQ_CHAIN}", endpoint.ip));
            let affinity = match sp.affinity_seconds {
                Some(_) => format!(" -m recent --name {sep} --set"),
                None => String::new(),
            };
            nat.rule(
                sep,
                &format!(
                    "-m comment --comment {name} -p {proto} -m {proto}{affinity} -j DNAT --to-destination {}:{}",
                    endpoint.ip, endpoint.port
                ),
            );
        }
    }
    // Last: anything for a local address may be a node port. Not on 127.0.0.0/8: a
    // packet from there may not leave the host (kube sets `route_localnet` for that; we
    // leave the host's sysctls alone, as kube's nftables mode does).
    nat.rule(
        SERVICES_CHAIN,
        &format!(
            "-m comment --comment \"flotilla service nodeports; this must be the last rule in this chain\" \
             ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j {NODEPORTS_CHAIN}"
        ),
    );

    let mut chains = BTreeSet::new();
    let mut text = String::new();
    let (filter_rules, nat_rules) = (filter.rules.len(), nat.rules.len());
    for table in [filter, nat] {
        let gone: Vec<&String> = stale
            .iter()
            .filter(|(t, c)| t == table.name && is_ours(c) && !table.chains.contains(c))
            .map(|(_, c)| c)
            .collect();
        let _ = writeln!(text, "*{}", table.name);
        for chain in table.chains.iter().chain(gone.iter().copied()) {
            let _ = writeln!(text, ":{chain} - [0:0]");
        }
        for rule in &table.rules {
            let _ = writeln!(text, "{rule}");
        }
        for chain in gone {
            let _ = writeln!(text, "-X {chain}");
        }
        let _ = writeln!(text, "COMMIT");
        chains.extend(table.chains.iter().map(|c| (table.name.to_string(), c.clone())));
    }
    Rendered { text, filter_rules, nat_rules, chains }
}

/// The `iptables-restore --noflush` text that empties and deletes `chains` (table, chain),
/// ours only: what `flotilla agent reset` runs once the jumps to them are gone.
pub fn render_removal(chains: &BTreeSet<(String, String)>) -> String {
    let mut text = String::new();
    for table in ["filter", "nat"] {
        let ours: Vec<&String> = chains.iter().filter(|(t, c)| t == table && is_ours(c)).map(|(_, c)| c).collect();
        if ours.is_empty() {
            continue;
        }
        let _ = writeln!(text, "*{table}");
        for chain in &ours {
            let _ = writeln!(text, ":{chain} - [0:0]");
        }
        for chain in &ours {
            let _ = writeln!(text, "-X {chain}");
        }
        let _ = writeln!(text, "COMMIT");
    }
    text
}

/// The chains of ours in `iptables-save` output, as (table, chain).
pub fn saved_chains(save: &str) -> BTreeSet<(String, String)> {
    let mut table = "";
    let mut out = BTreeSet::new();
    for line in save.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name.trim();
        } else if let Some(rest) = line.strip_prefix(':') {
            let chain = rest.split_whitespace().next().unwrap_or_default();
            if is_ours(chain) {
                out.insert((table.to_string(), chain.to_string()));
            }
        }
    }
    out
}

/// One table's chains and rules, in the order written.
struct Table {
    name: &'static str,
    chains: BTreeSet<String>,
    rules: Vec<String>,
}

impl Table {
    fn new(name: &'static str) -> Table {
        Table { name, chains: BTreeSet::new(), rules: Vec::new() }
    }

    fn chain(&mut self, chain: &str) {
        self.chains.insert(chain.to_string());
    }

    fn rule(&mut self, chain: &str, rule: &str) {
        self.rules.push(format!("-A {chain} {rule}"));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"namespace": "default", "name": "web"}, "spec": spec})).unwrap()
    }

    fn slice(name: &str, ports: serde_json::Value, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": name, "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4", "ports": ports, "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn ready(ip: &str) -> serde_json::Value {
        json!({"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false}})
    }

    fn rules(ports: &[ServicePort]) -> Vec<String> {
        let rendered = render(ports, &LocalTraffic::Bridge("fl0".into()), &BTreeSet::new());
        rendered.text.lines().map(String::from).collect()
    }

    fn chain_rules<'a>(lines: &'a [String], chain: &str) -> Vec<&'a str> {
        let prefix = format!("-A {chain} ");
        lines.iter().filter_map(|l| l.strip_prefix(&prefix)).collect()
    }

    #[test]
    fn the_chain_hash_is_kubes() {
        // kube-proxy's KUBE-SVC chain of `default/kubernetes:https` TCP (seen on every cluster).
        let sp = ServicePort {
            namespace: "default".into(),
            name: "kubernetes".into(),
            port_name: "https".into(),
            protocol: Protocol::Tcp,
            cluster_ip: Ipv4Addr::new(10, 96, 0, 1),
            port: 443,
            node_port: None,
            affinity_seconds: None,
            endpoints: Vec::new(),
        };
        assert_eq!(sp.chain(), "FLO-SVC-NPX46M4PTMTKRN6Y");
    }

    #[test]
    fn two_ready_endpoints_split_half_and_half_with_hairpin_and_masquerade() {
        let svc = service(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80, "targetPort": 8080}]}));
        let slices = [slice(
            "web-1",
            json!([{"port": 8080, "protocol": "TCP"}]),
            json!([ready("10.244.0.5"), ready("10.244.0.4")]),
        )];
        let ports = service_ports([&svc], &slices);
        assert_eq!(ports.len(), 1);
        let sp = &ports[0];
        assert_eq!(sp.endpoints.iter().map(|e| e.ip.to_string()).collect::<Vec<_>>(), ["10.244.0.4", "10.244.0.5"]);
        let lines = rules(&ports);
        let svc_chain = sp.chain();
        assert!(lines.contains(&format!(
            "-A FLOTILLA-SERVICES -m comment --comment \"default/web cluster IP\" -d 10.96.0.10/32 -p tcp -m tcp \
             --dport 80 -j {svc_chain}"
        )));
        let svc_rules = chain_rules(&lines, &svc_chain);
        assert_eq!(svc_rules.len(), 3, "{svc_rules:#?}");
        assert!(svc_rules[0].contains("! -i fl0 -d 10.96.0.10/32") && svc_rules[0].ends_with("-j FLOTILLA-MARK-MASQ"));
        let (first, second) = (sp.endpoint_chain(&sp.endpoints[0]), sp.endpoint_chain(&sp.endpoints[1]));
        assert_eq!(
            svc_rules[1],
            format!(
                "-m comment --comment \"default/web -> 10.244.0.4:8080\" -m statistic --mode random \
                 --probability 0.5000000000 -j {first}"
            )
        );
        assert_eq!(svc_rules[2], format!("-m comment --comment \"default/web -> 10.244.0.5:8080\" -j {second}"));
        assert_eq!(
            chain_rules(&lines, &first),
            [
                "-m comment --comment default/web -s 10.244.0.4/32 -j FLOTILLA-MARK-MASQ",
                "-m comment --comment default/web -p tcp -m tcp -j DNAT --to-destination 10.244.0.4:8080",
            ]
        );
        // The jump to node ports is the services chain's last rule; masquerade of marked packets.
        let services = chain_rules(&lines, SERVICES_CHAIN);
        assert!(services
            .last()
            .unwrap()
            .ends_with("! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j FLOTILLA-NODEPORTS"));
        assert!(chain_rules(&lines, POSTROUTING_CHAIN).last().unwrap().ends_with("-j MASQUERADE --random-fully"));
        // Declared before use, in both tables, each table committed.
        assert_eq!(lines.iter().filter(|l| *l == "COMMIT").count(), 2);
        assert!(lines.contains(&format!(":{first} - [0:0]")));
        let no_reject = lines.iter().all(|l| !l.contains("REJECT"));
        assert!(no_reject, "{lines:#?}");
    }

    #[test]
    fn three_endpoints_get_a_third_then_a_half_then_the_rest() {
        let svc = service(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}));
        let slices = [slice(
            "web-1",
            json!([{"port": 80}]),
            json!([ready("10.244.0.4"), ready("10.244.0.5"), ready("10.244.0.6")]),
        )];
        let ports = service_ports([&svc], &slices);
        let lines = rules(&ports);
        let svc_rules = chain_rules(&lines, &ports[0].chain());
        assert!(svc_rules[1].contains("--probability 0.3333333333"), "{}", svc_rules[1]);
        assert!(svc_rules[2].contains("--probability 0.5000000000"), "{}", svc_rules[2]);
        assert!(!svc_rules[3].contains("statistic"), "{}", svc_rules[3]);
    }

    #[test]
    fn named_target_ports_come_from_the_slice_port_of_the_same_name() {
        let svc = service(json!({"clusterIP": "10.96.0.10", "ports": [
            {"name": "http", "port": 80, "targetPort": "web"},
            {"name": "metrics", "port": 9090, "targetPort": "metrics"},
        ]}));
        let slices = [slice(
            "web-1",
            json!([{"name": "metrics", "port": 9100, "protocol": "TCP"}, {"name": "http", "port": 8080, "protocol": "TCP"}]),
            json!([ready("10.244.0.4")]),
        )];
        let ports = service_ports([&svc], &slices);
        let by_name: Vec<(&str, u16, u16)> =
            ports.iter().map(|p| (p.port_name.as_str(), p.port, p.endpoints[0].port)).collect();
        assert_eq!(by_name, [("http", 80, 8080), ("metrics", 9090, 9100)]);
        assert_eq!(ports[0].port_name_string(), "default/web:http");
        let text = render(&ports, &LocalTraffic::MasqueradeAll, &BTreeSet::new()).text;
        assert!(text.contains("--to-destination 10.244.0.4:8080"));
        assert!(text.contains("--to-destination 10.244.0.4:9100"));
        assert_ne!(ports[0].chain(), ports[1].chain());
    }

    #[test]
    fn a_service_without_ready_endpoints_is_rejected_in_the_filter_table() {
        let svc = service(json!({"type": "NodePort", "clusterIP": "10.96.0.10",
            "ports": [{"port": 80, "nodePort": 30080}]}));
        let not_ready = json!({"addresses": ["10.244.0.4"], "conditions": {"ready": false}});
        let slices = [slice("web-1", json!([{"port": 8080}]), json!([not_ready]))];
        let ports = service_ports([&svc], &slices);
        assert!(ports[0].endpoints.is_empty());
        let rendered = render(&ports, &LocalTraffic::Bridge("fl0".into()), &BTreeSet::new());
        let lines: Vec<String> = rendered.text.lines().map(String::from).collect();
        assert_eq!(
            chain_rules(&lines, SERVICES_CHAIN)[..2],
            [
                "-m comment --comment \"default/web has no endpoints\" -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j REJECT \
                 --reject-with tcp-reset",
                "-m comment --comment \"default/web has no endpoints\" ! -d 127.0.0.0/8 -m addrtype --dst-type \
                 LOCAL -p tcp -m tcp --dport 30080 -j REJECT --reject-with tcp-reset",
            ]
        );
        // The filter table comes first; nothing of the service in nat.
        assert!(lines[0] == "*filter" && rendered.filter_rules == 2);
        assert!(!rendered.text.contains("FLO-SVC-"));
        // Without any slice at all: the same.
        let ports = service_ports([&svc], []);
        assert!(render(&ports, &LocalTraffic::MasqueradeAll, &BTreeSet::new()).text.contains("-j REJECT"));
    }

    #[test]
    fn node_ports_are_masqueraded_and_go_to_the_service_chain() {
        let svc = service(json!({"type": "NodePort", "clusterIP": "10.96.0.10",
            "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]}));
        let slices = [slice("web-1", json!([{"port": 8080}]), json!([ready("10.244.0.4")]))];
        let ports = service_ports([&svc], &slices);
        assert_eq!(ports[0].node_port, Some(30080));
        let lines = rules(&ports);
        let svc_chain = ports[0].chain();
        assert_eq!(
            chain_rules(&lines, NODEPORTS_CHAIN),
            [
                "-m comment --comment default/web -p tcp -m tcp --dport 30080 -j FLOTILLA-MARK-MASQ".to_string(),
                format!("-m comment --comment default/web -p tcp -m tcp --dport 30080 -j {svc_chain}"),
            ]
        );
        // A ClusterIP Service's stray nodePort is no node port.
        let plain = service(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80, "nodePort": 30080}]}));
        assert_eq!(service_ports([&plain], &slices)[0].node_port, None);
    }

    #[test]
    fn udp_ports_get_udp_rules_and_only_matching_slice_ports() {
        let svc = service(json!({"clusterIP": "10.96.0.10", "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        ]}));
        let slices = [slice(
            "web-1",
            json!([{"name": "dns", "port": 5353, "protocol": "UDP"}, {"name": "dns-tcp", "port": 5353, "protocol": "TCP"}]),
            json!([ready("10.244.0.4")]),
        )];
        let ports = service_ports([&svc], &slices);
        let udp = ports.iter().find(|p| p.protocol == Protocol::Udp).unwrap();
        let lines = rules(&ports);
        assert!(lines.contains(&format!(
            "-A FLOTILLA-SERVICES -m comment --comment \"default/web:dns cluster IP\" -d 10.96.0.10/32 -p udp -m udp \
             --dport 53 -j {}",
            udp.chain()
        )));
        let sep = udp.endpoint_chain(&udp.endpoints[0]);
        assert_eq!(
            chain_rules(&lines, &sep)[1],
            "-m comment --comment default/web:dns -p udp -m udp -j DNAT --to-destination 10.244.0.4:5353"
        );
        // Without endpoints: ICMP port unreachable for UDP (a reset for TCP).
        let text = render(&service_ports([&svc], []), &LocalTraffic::MasqueradeAll, &BTreeSet::new()).text;
        assert!(text.contains("-p udp -m udp --dport 53 -j REJECT\n"), "{text}");
        assert!(text.contains("-p tcp -m tcp --dport 53 -j REJECT --reject-with tcp-reset\n"), "{text}");
    }

    #[test]
    fn headless_and_external_name_services_get_nothing() {
        let headless = service(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        let external = service(json!({"type": "ExternalName", "externalName": "example.com", "ports": [{"port": 80}]}));
        let slices = [slice("web-1", json!([{"port": 80}]), json!([ready("10.244.0.4")]))];
        assert!(service_ports([&headless, &external], &slices).is_empty());
        let rendered = render(&[], &LocalTraffic::MasqueradeAll, &BTreeSet::new());
        assert_eq!((rendered.filter_rules, rendered.nat_rules), (0, 5), "{}", rendered.text);
    }

    #[test]
    fn only_ready_endpoints_serve_not_terminating_or_unready_ones() {
        let svc = service(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}));
        let slices = [
            slice(
                "web-1",
                json!([{"port": 80}]),
                json!([
                    ready("10.244.0.4"),
                    {"addresses": ["10.244.0.5"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                    {"addresses": ["10.244.0.6"], "conditions": {"ready": false, "serving": false, "terminating": false}},
                    {"addresses": ["10.244.0.7"]},
                ]),
            ),
            // Another slice of the same service, and one of another service.
            slice("web-2", json!([{"port": 80}]), json!([ready("10.244.0.8"), ready("10.244.0.4")])),
            serde_json::from_value(json!({
                "metadata": {"namespace": "default", "name": "other-1", "labels": {SERVICE_NAME_LABEL: "other"}},
                "addressType": "IPv4", "ports": [{"port": 80}], "endpoints": [ready("10.244.0.9")],
            }))
            .unwrap(),
        ];
        let ports = service_ports([&svc], &slices);
        let ips: Vec<String> = ports[0].endpoints.iter().map(|e| e.ip.to_string()).collect();
        assert_eq!(ips, ["10.244.0.4", "10.244.0.7", "10.244.0.8"]);
    }

    #[test]
    fn client_ip_affinity_checks_recent_clients_first() {
        let svc = service(json!({"clusterIP": "10.96.0.10", "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}, "ports": [{"port": 80}]}));
        let slices = [slice("web-1", json!([{"port": 80}]), json!([ready("10.244.0.4"), ready("10.244.0.5")]))];
        let ports = service_ports([&svc], &slices);
        assert_eq!(ports[0].affinity_seconds, Some(60));
        let lines = rules(&ports);
        let sep = ports[0].endpoint_chain(&ports[0].endpoints[0]);
        let svc_rules = chain_rules(&lines, &ports[0].chain());
        assert_eq!(
            svc_rules[1],
            format!(
                "-m comment --comment \"default/web -> 10.244.0.4:80\" -m recent --name {sep} --rcheck --seconds 60 \
                 --reap -j {sep}"
            )
        );
        assert!(svc_rules[3].contains("statistic"), "{svc_rules:#?}");
        assert!(chain_rules(&lines, &sep)[1].contains(&format!("-m recent --name {sep} --set -j DNAT")));
    }

    #[test]
    fn chains_no_longer_wanted_are_flushed_and_deleted_and_others_are_left_alone() {
        let stale: BTreeSet<(String, String)> =
            [("nat", "FLO-SVC-GONE"), ("nat", SERVICES_CHAIN), ("nat", "KUBE-SERVICES"), ("filter", "FLO-SEP-GONE")]
                .into_iter()
                .map(|(t, c)| (t.to_string(), c.to_string()))
                .collect();
        let text = render(&[], &LocalTraffic::MasqueradeAll, &stale).text;
        assert!(text.contains(":FLO-SVC-GONE - [0:0]\n") && text.contains("-X FLO-SVC-GONE\n"), "{text}");
        assert!(text.contains("-X FLO-SEP-GONE\n"));
        assert!(!text.contains("KUBE-") && !text.contains("-X FLOTILLA-SERVICES"), "{text}");
        let removal = render_removal(&stale);
        assert_eq!(
            removal,
            "*filter\n:FLO-SEP-GONE - [0:0]\n-X FLO-SEP-GONE\nCOMMIT\n*nat\n:FLO-SVC-GONE - [0:0]\n:FLOTILLA-SERVICES - [0:0]\n\
             -X FLO-SVC-GONE\n-X FLOTILLA-SERVICES\nCOMMIT\n"
        );
    }

    #[test]
    fn our_chains_are_found_in_iptables_save_output() {
        let save = "# Generated by iptables-save\n*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n\
                    :FLOTILLA-SERVICES - [0:0]\n:FLO-SVC-ABC - [0:0]\n-A PREROUTING -j FLOTILLA-SERVICES\nCOMMIT\n\
                    *filter\n:FLOTILLA-SERVICES - [0:0]\nCOMMIT\n";
        let chains: Vec<(String, String)> = saved_chains(save).into_iter().collect();
        let want: Vec<(String, String)> =
            [("filter", "FLOTILLA-SERVICES"), ("nat", "FLO-SVC-ABC"), ("nat", "FLOTILLA-SERVICES")]
                .into_iter()
                .map(|(t, c)| (t.to_string(), c.to_string()))
                .collect();
        assert_eq!(chains, want);
    }
}
