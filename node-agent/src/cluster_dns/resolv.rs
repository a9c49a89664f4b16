//! A pod's resolv.conf (CRI's `DNSConfig`, which containerd writes into the sandbox), by
//! its `dnsPolicy` and `dnsConfig`, as kubelet's `GetPodDNS` makes it:
//!
//! - `ClusterFirst` (the default): the cluster's nameserver, the search path
//!   `<ns>.svc.<domain> svc.<domain> <domain>` and then the host's, `options ndots:5`; a
//!   `hostNetwork` pod gets the host's configuration instead (unless `ClusterFirstWithHostNet`),
//!   and so does every pod where the node has no cluster DNS.
//! - `Default`: the host's resolv.conf (nameservers, search, options).
//! - `None`: only what `dnsConfig` says.
//!
//! `dnsConfig` is then merged in: its nameservers and searches after those, without
//! duplicates; its options override those of the same name. At most 3 nameservers and 32
//! search domains, kubelet's limits.

use std::net::IpAddr;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;

/// The host's resolver configuration as kubelet reads it (`--resolv-conf`).
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// Where systemd-resolved keeps the real upstreams when /etc/resolv.conf names its stub.
pub const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";
/// kubelet's limits.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// A parsed resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// Parses resolv.conf text (`domain` counts as a search domain, as kubelet takes it; the
/// last `search` line wins, as in the resolver).
pub fn parse(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => conf.nameservers.extend(fields.next().map(String::from)),
            Some("search") | Some("domain") => conf.searches = fields.map(String::from).collect(),
            Some("options") => conf.options.extend(fields.map(String::from)),
            _ => {}
        }
    }
    conf
}

/// The host's resolv.conf; where it only names systemd-resolved's stub (127.0.0.53, which
/// a pod cannot reach), the nameservers of resolved's own file, as kubelet is told to use.
pub fn host() -> ResolvConf {
    let mut conf = parse(&std::fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default());
    let stub_only = !conf.nameservers.is_empty() && conf.nameservers.iter().all(|n| n.starts_with("127."));
    if stub_only {
        if let Ok(text) = std::fs::read_to_string(SYSTEMD_RESOLV_CONF) {
            let real = parse(&text);
            if !real.nameservers.is_empty() {
                conf.nameservers = real.nameservers;
            }
        }
    }
    conf
}

/// What the node knows of cluster DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    /// The nameserver ClusterFirst pods get; `None`: no cluster DNS (yet).
    pub nameserver: Option<IpAddr>,
    /// The cluster domain (`cluster.local`).
    pub domain: String,
}

fn without_duplicates(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// The DNS config of `pod`'s sandbox.
pub fn pod_dns(pod: &Pod, cluster: &ClusterDns, host: &ResolvConf) -> cri::DnsConfig {
    let spec = pod.spec.as_ref();
    let policy = spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst");
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let wants_cluster = match policy {
        "None" | "Default" => false,
        "ClusterFirstWithHostNet" => true,
        _ => !host_network,
    };
    let mut config = match (policy, cluster.nameserver.filter(|_| wants_cluster)) {
        ("None", _) => cri::DnsConfig::default(),
        (_, Some(nameserver)) => {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
            let domain = cluster.domain.trim_matches('.');
            let mut searches = vec![format!("{namespace}.svc.{domain}"), format!("svc.{domain}"), domain.to_string()];
            searches.extend(host.searches.iter().cloned());
            cri::DnsConfig {
                servers: vec![nameserver.to_string()],
                searches: without_duplicates(searches),
                options: vec!["ndots:5".to_string()],
            }
        }
        _ => cri::DnsConfig {
            servers: host.nameservers.clone(),
            searches: host.searches.clone(),
            options: host.options.clone(),
        },
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        config.servers.extend(extra.nameservers.iter().flatten().cloned());
        config.servers = without_duplicates(std::mem::take(&mut config.servers));
        config.searches.extend(extra.searches.iter().flatten().cloned());
        config.searches = without_duplicates(std::mem::take(&mut config.searches));
        for option in extra.options.iter().flatten() {
            let Some(name) = option.name.as_deref() else { continue };
            let text = match &option.value {
                Some(value) => format!("{name}:{value}"),
                None => name.to_string(),
            };
            let same = |o: &String| o.split(':').next() == Some(name);
            match config.options.iter_mut().find(|o| same(o)) {
                Some(existing) => *existing = text,
                None => config.options.push(text),
            }
        }
    }
    config.servers.truncate(MAX_NAMESERVERS);
    config.searches.truncate(MAX_SEARCHES);
    config
}

/// The resolv.conf text containerd writes for `config` (for logs and tests).
pub fn render(config: &cri::DnsConfig) -> String {
    let mut text = String::new();
    if !config.searches.is_empty() {
        text.push_str(&format!("search {}\n", config.searches.join(" ")));
    }
    for server in &config.servers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !config.options.is_empty() {
        text.push_str(&format!("options {}\n", config.options.join(" ")));
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([]);
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": spec})).unwrap()
    }

    fn cluster() -> ClusterDns {
        ClusterDns { nameserver: Some("10.244.0.1".parse().unwrap()), domain: "cluster.local".into() }
    }

    fn host_conf() -> ResolvConf {
        parse("# generated\nnameserver 192.0.2.53\nnameserver 192.0.2.54 ; second\nsearch corp.example lab\noptions edns0 timeout:2\n")
    }

    #[test]
    fn resolv_conf_is_parsed() {
        let conf = host_conf();
        assert_eq!(conf.nameservers, ["192.0.2.53", "192.0.2.54"]);
        assert_eq!(conf.searches, ["corp.example", "lab"]);
        assert_eq!(conf.options, ["edns0", "timeout:2"]);
    }

    #[test]
    fn cluster_first_is_the_cluster_nameserver_and_search_path() {
        let dns = pod_dns(&pod(json!({})), &cluster(), &host_conf());
        assert_eq!(
            render(&dns),
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab\n\
             nameserver 10.244.0.1\noptions ndots:5\n"
        );
        let explicit = pod_dns(&pod(json!({"dnsPolicy": "ClusterFirst"})), &cluster(), &host_conf());
        assert_eq!(explicit, dns);
    }

    #[test]
    fn default_host_network_and_no_cluster_dns_get_the_hosts() {
        let host = cri::DnsConfig {
            servers: vec!["192.0.2.53".into(), "192.0.2.54".into()],
            searches: vec!["corp.example".into(), "lab".into()],
            options: vec!["edns0".into(), "timeout:2".into()],
        };
        assert_eq!(pod_dns(&pod(json!({"dnsPolicy": "Default"})), &cluster(), &host_conf()), host);
        assert_eq!(pod_dns(&pod(json!({"hostNetwork": true})), &cluster(), &host_conf()), host);
        let none = ClusterDns { nameserver: None, domain: "cluster.local".into() };
        assert_eq!(pod_dns(&pod(json!({})), &none, &host_conf()), host);
        let with_host_net = pod(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}));
        assert_eq!(pod_dns(&with_host_net, &cluster(), &host_conf()).servers, ["10.244.0.1"]);
    }

    #[test]
    fn none_is_only_dns_config_and_dns_config_merges() {
        let only = pod(json!({"dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["1.2.3.4"], "searches": ["a.example"], "options": [{"name": "ndots", "value": "2"}]}}));
        assert_eq!(
            render(&pod_dns(&only, &cluster(), &host_conf())),
            "search a.example\nnameserver 1.2.3.4\noptions ndots:2\n"
        );
        let merged = pod(json!({"dnsConfig": {
            "nameservers": ["10.244.0.1", "1.2.3.4"], "searches": ["b.example", "cluster.local"],
            "options": [{"name": "ndots", "value": "1"}, {"name": "edns0"}]}}));
        let dns = pod_dns(&merged, &cluster(), &host_conf());
        assert_eq!(dns.servers, ["10.244.0.1", "1.2.3.4"]);
        assert_eq!(
            dns.searches,
            ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example", "lab", "b.example"]
        );
        assert_eq!(dns.options, ["ndots:1", "edns0"]);
        let many = pod(
            json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]}}),
        );
        assert_eq!(pod_dns(&many, &cluster(), &host_conf()).servers.len(), 3);
    }
}
