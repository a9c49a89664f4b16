//! The pure part of cluster DNS: what the watched Services and EndpointSlices answer to one
//! question, with the semantics of CoreDNS's `kubernetes` plugin (its default Corefile:
//! `kubernetes cluster.local in-addr.arpa ip6.arpa { pods insecure; fallthrough in-addr.arpa
//! ip6.arpa }`, TTL 30):
//!
//! - `svc.ns.svc.D` A/AAAA: the ClusterIPs; of a headless Service, its ready endpoints
//!   (not-ready ones too with `publishNotReadyAddresses`); of an ExternalName Service, a
//!   CNAME to the external name whatever the type asked.
//! - `host.svc.ns.svc.D`: the endpoint with that hostname (StatefulSet pods), or whose
//!   address written with dashes is `host`.
//! - `_port._proto.svc.ns.svc.D` SRV (and `svc.ns.svc.D` SRV: every port): to the Service
//!   name (ClusterIP) or to each endpoint's name (headless), their addresses as additionals.
//! - `a-b-c-d.ns.pod.D` A: that address (`pods insecure`: not checked against pods).
//! - PTR of a ClusterIP or of a headless Service's endpoint; any other reverse name is not
//!   ours ([`lookup`] answers `None`: forward it).
//! - Anything else under `D`: NXDOMAIN; a name that exists without records of the type
//!   asked: NOERROR and no answer. Both with the zone's SOA in the authority section, TTL 5.
//!
//! Names are matched case-insensitively; answers carry the name as it was asked.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// TTL of answers (CoreDNS's `kubernetes` plugin: 30 s).
pub const TTL: u32 = 30;
/// TTL of the SOA sent with negative answers (CoreDNS: 5 s).
pub const NEGATIVE_TTL: u32 = 5;
/// The label naming an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

type Key = (String, String);

/// The Services and EndpointSlices of the cluster, as the watches last saw them.
#[derive(Debug, Default, Clone)]
pub struct Zone {
    services: BTreeMap<Key, Service>,
    slices: BTreeMap<Key, EndpointSlice>,
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

impl Zone {
    pub fn list_services(&mut self, items: Vec<Service>) {
        self.services = items.into_iter().map(|s| (key_of(&s.metadata), s)).collect();
    }
    pub fn apply_service(&mut self, service: Service) {
        self.services.insert(key_of(&service.metadata), service);
    }
    pub fn delete_service(&mut self, service: &Service) {
        self.services.remove(&key_of(&service.metadata));
    }
    pub fn list_slices(&mut self, items: Vec<EndpointSlice>) {
        self.slices = items.into_iter().map(|s| (key_of(&s.metadata), s)).collect();
    }
    pub fn apply_slice(&mut self, slice: EndpointSlice) {
        self.slices.insert(key_of(&slice.metadata), slice);
    }
    pub fn delete_slice(&mut self, slice: &EndpointSlice) {
        self.slices.remove(&key_of(&slice.metadata));
    }

    fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services.get(&(namespace.to_string(), name.to_string()))
    }

    /// The endpoints of Service `ns/name` that DNS publishes, each address once.
    fn endpoints(&self, service: &Service) -> Vec<Endpoint> {
        let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
        let name = service.metadata.name.as_deref().unwrap_or_default();
        let not_ready_too = service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        let from = (namespace.to_string(), String::new());
        let slices = self.slices.range(from..).take_while(|((ns, _), _)| ns == namespace).map(|(_, s)| s);
        for slice in slices {
            let labels = slice.metadata.labels.as_ref();
            if labels.and_then(|l| l.get(SERVICE_NAME_LABEL)).map(String::as_str) != Some(name) {
                continue;
            }
            let ports: Vec<Port> = slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    Some(Port {
                        name: p.name.clone().unwrap_or_default(),
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        port: u16::try_from(p.port?).ok()?,
                    })
                })
                .collect();
            for endpoint in &slice.endpoints {
                let ready = endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready && !not_ready_too {
                    continue;
                }
                for address in &endpoint.addresses {
                    let Ok(ip) = address.parse::<IpAddr>() else { continue };
                    if seen.insert(ip) {
                        out.push(Endpoint { ip, hostname: endpoint.hostname.clone(), ports: ports.clone() });
                    }
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
struct Port {
    name: String,
    protocol: String,
    port: u16,
}

#[derive(Debug, Clone)]
struct Endpoint {
    ip: IpAddr,
    hostname: Option<String>,
    ports: Vec<Port>,
}

impl Endpoint {
    /// Its label under the Service: the hostname, else the address with dashes.
    fn label(&self) -> String {
        self.hostname.clone().unwrap_or_else(|| dashed(self.ip))
    }
}

/// `10.244.0.5` as `10-244-0-5`, `fd00::1` as `fd00--1` (CoreDNS's endpoint and pod names).
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

fn undashed(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    label.replace('-', ":").parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// What the zone says to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

enum Found {
    Records(Vec<Record>, Vec<Record>),
    NoData,
    NxDomain,
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap_or_else(|_| Name::root())
}

fn address_record(owner: &Name, ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(v4) => Record::from_rdata(owner.clone(), TTL, RData::A(A(v4))),
        IpAddr::V6(v6) => Record::from_rdata(owner.clone(), TTL, RData::AAAA(AAAA(v6))),
    }
}

fn fits(ip: IpAddr, qtype: RecordType) -> bool {
    matches!((ip, qtype), (IpAddr::V4(_), RecordType::A) | (IpAddr::V6(_), RecordType::AAAA))
}

/// The zone's SOA record (CoreDNS's: `ns.dns.D. hostmaster.D.`, minimum TTL 5).
pub fn soa(domain: &str, ttl: u32) -> Record {
    let rdata = SOA::new(
        name(&format!("ns.dns.{domain}.")),
        name(&format!("hostmaster.{domain}.")),
        1,
        7200,
        1800,
        86400,
        NEGATIVE_TTL,
    );
    Record::from_rdata(name(&format!("{domain}.")), ttl, RData::SOA(rdata))
}

fn lower_labels(name: &Name) -> Vec<String> {
    name.iter().map(|l| String::from_utf8_lossy(l).to_ascii_lowercase()).collect()
}

/// The answer of the zone `domain` (like `cluster.local`) to `qname`/`qtype`, or `None`
/// where the name is not the zone's (forward it upstream).
pub fn lookup(zone: &Zone, domain: &str, qname: &Name, qtype: RecordType) -> Option<Answer> {
    let domain = domain.trim_matches('.').to_ascii_lowercase();
    let labels = lower_labels(qname);
    let zone_labels: Vec<&str> = domain.split('.').filter(|l| !l.is_empty()).collect();
    let in_zone = labels.len() >= zone_labels.len()
        && labels[labels.len() - zone_labels.len()..].iter().zip(&zone_labels).all(|(a, b)| a == b);
    let found = if in_zone {
        in_cluster(zone, &domain, qname, &labels[..labels.len() - zone_labels.len()], qtype)
    } else if qtype == RecordType::PTR {
        let ip = reverse(&labels)?;
        let target = ptr(zone, &domain, ip)?;
        Found::Records(vec![Record::from_rdata(qname.clone(), TTL, RData::PTR(PTR(name(&target))))], Vec::new())
    } else {
        return None;
    };
    let negative = |rcode| Answer {
        rcode,
        answers: Vec::new(),
        authorities: vec![soa(&domain, NEGATIVE_TTL)],
        additionals: Vec::new(),
    };
    Some(match found {
        Found::Records(answers, _) if answers.is_empty() => negative(ResponseCode::NoError),
        Found::Records(answers, additionals) => {
            Answer { rcode: ResponseCode::NoError, answers, authorities: Vec::new(), additionals }
        }
        Found::NoData => negative(ResponseCode::NoError),
        Found::NxDomain => negative(ResponseCode::NXDomain),
    })
}

/// A name under the zone; `rel`: its labels before the zone's, lowercase.
fn in_cluster(zone: &Zone, domain: &str, qname: &Name, rel: &[String], qtype: RecordType) -> Found {
    let rel: Vec<&str> = rel.iter().map(String::as_str).collect();
    match rel.as_slice() {
        [] => match qtype {
            RecordType::SOA => Found::Records(vec![soa(domain, TTL)], Vec::new()),
            RecordType::NS => {
                let ns = Record::from_rdata(qname.clone(), TTL, RData::NS(NS(name(&format!("ns.dns.{domain}.")))));
                Found::Records(vec![ns], Vec::new())
            }
            _ => Found::NoData,
        },
        ["svc"] | ["pod"] => Found::NoData,
        [namespace, "svc"] => {
            if zone.services.keys().any(|(ns, _)| ns == namespace) {
                Found::NoData
            } else {
                Found::NxDomain
            }
        }
        [_, "pod"] => Found::NoData,
        [ip, _, "pod"] => match undashed(ip) {
            Some(ip) if fits(ip, qtype) => Found::Records(vec![address_record(qname, ip)], Vec::new()),
            Some(_) => Found::NoData,
            None => Found::NxDomain,
        },
        [service, namespace, "svc"] => match zone.service(namespace, service) {
            Some(s) => service_records(zone, domain, qname, s, qtype),
            None => Found::NxDomain,
        },
        [host, service, namespace, "svc"] => {
            let Some(s) = zone.service(namespace, service) else { return Found::NxDomain };
            let endpoints: Vec<Endpoint> = zone
                .endpoints(s)
                .into_iter()
                .filter(|e| e.label().eq_ignore_ascii_case(host) || dashed(e.ip) == *host)
                .collect();
            if endpoints.is_empty() {
                return Found::NxDomain;
            }
            let records = endpoints.iter().filter(|e| fits(e.ip, qtype)).map(|e| address_record(qname, e.ip)).collect();
            Found::Records(records, Vec::new())
        }
        [port, protocol, service, namespace, "svc"] => {
            let (Some(port), Some(protocol)) = (port.strip_prefix('_'), protocol.strip_prefix('_')) else {
                return Found::NxDomain;
            };
            let Some(s) = zone.service(namespace, service) else { return Found::NxDomain };
            let (answers, additionals) = srv(zone, domain, qname, s, Some((port, protocol)));
            if answers.is_empty() {
                return Found::NxDomain;
            }
            if qtype != RecordType::SRV {
                return Found::NoData;
            }
            Found::Records(answers, additionals)
        }
        _ => Found::NxDomain,
    }
}

fn headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn cluster_ips(service: &Service) -> Vec<IpAddr> {
    let Some(spec) = service.spec.as_ref() else { return Vec::new() };
    let ips = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.clone(),
        _ => spec.cluster_ip.iter().cloned().collect(),
    };
    ips.iter().filter_map(|ip| ip.parse().ok()).collect()
}

fn service_records(zone: &Zone, domain: &str, qname: &Name, service: &Service, qtype: RecordType) -> Found {
    let spec = service.spec.as_ref();
    if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        let Some(external) = spec.and_then(|s| s.external_name.as_deref()) else { return Found::NoData };
        let target = name(&format!("{}.", external.trim_end_matches('.')));
        return Found::Records(vec![Record::from_rdata(qname.clone(), TTL, RData::CNAME(CNAME(target)))], Vec::new());
    }
    if qtype == RecordType::SRV {
        let (answers, additionals) = srv(zone, domain, qname, service, None);
        return Found::Records(answers, additionals);
    }
    let ips = if headless(service) {
        zone.endpoints(service).into_iter().map(|e| e.ip).collect()
    } else {
        cluster_ips(service)
    };
    Found::Records(
        ips.into_iter().filter(|ip| fits(*ip, qtype)).map(|ip| address_record(qname, ip)).collect(),
        Vec::new(),
    )
}

/// SRV records of `service`'s ports (those named `port` of `protocol` where given), and the
/// addresses of their targets.
fn srv(
    zone: &Zone,
    domain: &str,
    qname: &Name,
    service: &Service,
    wanted: Option<(&str, &str)>,
) -> (Vec<Record>, Vec<Record>) {
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    let service_name = service.metadata.name.as_deref().unwrap_or_default();
    let base = format!("{service_name}.{namespace}.svc.{domain}.");
    let matches = |name: &str, protocol: &str| {
        wanted.is_none_or(|(n, p)| n.eq_ignore_ascii_case(name) && p.eq_ignore_ascii_case(protocol))
    };
    // (target, port, address)
    let mut targets: Vec<(String, u16, IpAddr)> = Vec::new();
    if headless(service) {
        for endpoint in zone.endpoints(service) {
            for port in endpoint.ports.iter().filter(|p| matches(&p.name, &p.protocol)) {
                targets.push((format!("{}.{base}", endpoint.label()), port.port, endpoint.ip));
            }
        }
    } else {
        let ports = service.spec.as_ref().and_then(|s| s.ports.as_ref());
        for port in ports.into_iter().flatten() {
            let (name, protocol) = (port.name.as_deref().unwrap_or(""), port.protocol.as_deref().unwrap_or("TCP"));
            if !matches(name, protocol) {
                continue;
            }
            for ip in cluster_ips(service) {
                targets.push((base.clone(), u16::try_from(port.port).unwrap_or(0), ip));
            }
        }
    }
    let weight = u16::try_from(100 / targets.len().max(1)).unwrap_or(100).max(1);
    let mut answers: Vec<Record> = Vec::new();
    let mut additionals: Vec<Record> = Vec::new();
    for (target, port, ip) in targets {
        let rdata = SRV::new(0, weight, port, name(&target));
        let record = Record::from_rdata(qname.clone(), TTL, RData::SRV(rdata));
        if !answers.contains(&record) {
            answers.push(record);
        }
        let address = address_record(&name(&target), ip);
        if !additionals.contains(&address) {
            additionals.push(address);
        }
    }
    (answers, additionals)
}

/// The address of a reverse name (`d.c.b.a.in-addr.arpa`, the 32 nibbles of `ip6.arpa`).
fn reverse(labels: &[String]) -> Option<IpAddr> {
    match labels {
        [d, c, b, a, in_addr, arpa] if in_addr == "in-addr" && arpa == "arpa" => {
            format!("{a}.{b}.{c}.{d}").parse().ok().map(IpAddr::V4)
        }
        [nibbles @ .., ip6, arpa] if ip6 == "ip6" && arpa == "arpa" && nibbles.len() == 32 => {
            let mut value: u128 = 0;
            for nibble in nibbles.iter().rev() {
                value = (value << 4) | u128::from(u8::from_str_radix(nibble, 16).ok()?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(value)))
        }
        _ => None,
    }
}

/// The name of a ClusterIP, or of an endpoint of a headless Service.
fn ptr(zone: &Zone, domain: &str, ip: IpAddr) -> Option<String> {
    let named = |s: &Service| {
        let (ns, name) = (s.metadata.namespace.as_deref()?, s.metadata.name.as_deref()?);
        Some(format!("{name}.{ns}.svc.{domain}."))
    };
    if let Some(service) = zone.services.values().find(|s| !headless(s) && cluster_ips(s).contains(&ip)) {
        return named(service);
    }
    zone.services.values().filter(|s| headless(s)).find_map(|s| {
        let endpoint = zone.endpoints(s).into_iter().find(|e| e.ip == ip)?;
        Some(format!("{}.{}", endpoint.label(), named(s)?))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    const D: &str = "cluster.local";

    fn zone() -> Zone {
        let services: Vec<Service> = serde_json::from_value(json!([
            {"metadata": {"namespace": "default", "name": "web"},
             "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                      "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
            {"metadata": {"namespace": "db", "name": "pg"},
             "spec": {"clusterIP": "None", "ports": [{"name": "sql", "port": 5432}]}},
            {"metadata": {"namespace": "default", "name": "ext"},
             "spec": {"type": "ExternalName", "externalName": "example.com"}},
        ]))
        .unwrap();
        let slices: Vec<EndpointSlice> = serde_json::from_value(json!([
            {"metadata": {"namespace": "db", "name": "pg-1", "labels": {SERVICE_NAME_LABEL: "pg"}},
             "addressType": "IPv4", "ports": [{"name": "sql", "port": 5432, "protocol": "TCP"}],
             "endpoints": [
                {"addresses": ["10.244.0.5"], "hostname": "pg-0", "conditions": {"ready": true}},
                {"addresses": ["10.244.0.6"], "hostname": "pg-1", "conditions": {"ready": true}},
                {"addresses": ["10.244.0.7"], "hostname": "pg-2", "conditions": {"ready": false}}]},
            {"metadata": {"namespace": "default", "name": "web-1", "labels": {SERVICE_NAME_LABEL: "web"}},
             "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
             "endpoints": [{"addresses": ["10.244.0.9"], "conditions": {"ready": true}}]},
        ]))
        .unwrap();
        let mut zone = Zone::default();
        zone.list_services(services);
        zone.list_slices(slices);
        zone
    }

    fn ask(zone: &Zone, qname: &str, qtype: RecordType) -> Answer {
        lookup(zone, D, &Name::from_ascii(qname).unwrap(), qtype).unwrap()
    }

    fn data(answer: &Answer) -> Vec<String> {
        answer.answers.iter().map(|r| r.data.to_string()).collect()
    }

    #[test]
    fn a_cluster_ip_service_answers_its_cluster_ip() {
        let answer = ask(&zone(), "web.default.svc.cluster.local.", RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::NoError);
        assert_eq!(data(&answer), ["10.96.0.20"]);
        assert_eq!(answer.answers[0].ttl, TTL);
        assert_eq!(answer.answers[0].name.to_ascii(), "web.default.svc.cluster.local.");
        // No AAAA: NOERROR without answers, the SOA as authority.
        let answer = ask(&zone(), "web.default.svc.cluster.local.", RecordType::AAAA);
        assert_eq!((answer.rcode, answer.answers.len()), (ResponseCode::NoError, 0));
        assert_eq!(answer.authorities[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn names_are_case_insensitive_and_keep_the_asked_case() {
        let answer = ask(&zone(), "WeB.Default.SVC.Cluster.Local.", RecordType::A);
        assert_eq!(data(&answer), ["10.96.0.20"]);
        assert_eq!(answer.answers[0].name.to_ascii(), "WeB.Default.SVC.Cluster.Local.");
    }

    #[test]
    fn a_headless_service_answers_its_ready_endpoints_and_their_hostnames() {
        let answer = ask(&zone(), "pg.db.svc.cluster.local.", RecordType::A);
        assert_eq!(data(&answer), ["10.244.0.5", "10.244.0.6"]);
        assert_eq!(data(&ask(&zone(), "pg-1.pg.db.svc.cluster.local.", RecordType::A)), ["10.244.0.6"]);
        assert_eq!(data(&ask(&zone(), "10-244-0-5.pg.db.svc.cluster.local.", RecordType::A)), ["10.244.0.5"]);
        // Not ready: not published.
        let answer = ask(&zone(), "pg-2.pg.db.svc.cluster.local.", RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::NXDomain);
    }

    #[test]
    fn srv_records_name_the_ports() {
        let answer = ask(&zone(), "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(data(&answer), ["0 100 80 web.default.svc.cluster.local."]);
        assert_eq!(answer.additionals[0].data.to_string(), "10.96.0.20");
        let answer = ask(&zone(), "_sql._tcp.pg.db.svc.cluster.local.", RecordType::SRV);
        assert_eq!(
            data(&answer),
            ["0 50 5432 pg-0.pg.db.svc.cluster.local.", "0 50 5432 pg-1.pg.db.svc.cluster.local."]
        );
        assert_eq!(answer.additionals.len(), 2);
        let answer = ask(&zone(), "_nope._tcp.web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(answer.rcode, ResponseCode::NXDomain);
        let answer = ask(&zone(), "web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(data(&answer), ["0 100 80 web.default.svc.cluster.local."]);
    }

    #[test]
    fn an_external_name_service_is_a_cname() {
        let answer = ask(&zone(), "ext.default.svc.cluster.local.", RecordType::A);
        assert_eq!(answer.answers[0].record_type(), RecordType::CNAME);
        assert_eq!(data(&answer), ["example.com."]);
    }

    #[test]
    fn unknown_names_in_the_zone_are_nxdomain_with_the_soa() {
        for qname in [
            "nope.default.svc.cluster.local.",
            "web.other.svc.cluster.local.",
            "a.b.c.d.e.f.cluster.local.",
            "x.cluster.local.",
        ] {
            let answer = ask(&zone(), qname, RecordType::A);
            assert_eq!(answer.rcode, ResponseCode::NXDomain, "{qname}");
            assert!(answer.answers.is_empty());
            let soa = &answer.authorities[0];
            assert_eq!((soa.record_type(), soa.ttl), (RecordType::SOA, NEGATIVE_TTL));
            assert_eq!(soa.name.to_ascii(), "cluster.local.");
        }
        // Names that exist without records: NOERROR.
        assert_eq!(ask(&zone(), "default.svc.cluster.local.", RecordType::A).rcode, ResponseCode::NoError);
        assert_eq!(ask(&zone(), "svc.cluster.local.", RecordType::A).rcode, ResponseCode::NoError);
        assert_eq!(ask(&zone(), "cluster.local.", RecordType::SOA).answers[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn pod_names_are_their_dashed_addresses() {
        assert_eq!(data(&ask(&zone(), "10-244-0-42.default.pod.cluster.local.", RecordType::A)), ["10.244.0.42"]);
        assert_eq!(ask(&zone(), "not-an-ip.default.pod.cluster.local.", RecordType::A).rcode, ResponseCode::NXDomain);
    }

    #[test]
    fn ptr_of_cluster_ips_and_headless_endpoints_others_forwarded() {
        assert_eq!(
            data(&ask(&zone(), "20.0.96.10.in-addr.arpa.", RecordType::PTR)),
            ["web.default.svc.cluster.local."]
        );
        assert_eq!(data(&ask(&zone(), "5.0.244.10.in-addr.arpa.", RecordType::PTR)), ["pg-0.pg.db.svc.cluster.local."]);
        let name = Name::from_ascii("1.1.168.192.in-addr.arpa.").unwrap();
        assert!(lookup(&zone(), D, &name, RecordType::PTR).is_none());
        let name = Name::from_ascii("example.com.").unwrap();
        assert!(lookup(&zone(), D, &name, RecordType::A).is_none());
    }

    #[test]
    fn another_cluster_domain() {
        let name = Name::from_ascii("web.default.svc.corp.example.").unwrap();
        let answer = lookup(&zone(), "corp.example", &name, RecordType::A).unwrap();
        assert_eq!(data(&answer), ["10.96.0.20"]);
        let name = Name::from_ascii("web.default.svc.cluster.local.").unwrap();
        assert!(lookup(&zone(), "corp.example", &name, RecordType::A).is_none());
    }
}
