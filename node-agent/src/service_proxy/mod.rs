//! The node's service proxy (kube-proxy's iptables mode): Service cluster IPs and node
//! ports reach the ready endpoints of their EndpointSlices through DNAT rules in the host's
//! `nat` table, and those without ready endpoints are refused in its `filter` table.
//!
//! - [`rules`]: the pure part: Services and EndpointSlices to `iptables-restore` text.
//! - [`iptables`]: running `iptables-restore`, `iptables-save` and `iptables`.
//! - [`watch`]: the list+watch of Services and EndpointSlices.
//! - [`run`]: the shell: both watches feed one loop that keeps the objects and re-renders
//!   and applies the rules after changes, at most once per [`MIN_SYNC_INTERVAL`] (changes
//!   meanwhile are coalesced into the next sync) and at least every [`RESYNC_INTERVAL`]
//!   (which repairs rules someone else flushed). It waits for both lists first, so it never
//!   programs rejects for Services whose slices it has not seen yet.
//!
//! Our chains carry flotilla's names (`FLOTILLA-*`, `FLO-SVC-*`, `FLO-SEP-*`), so a real
//! kube-proxy on the same machine is not disturbed; `flotilla agent reset` removes them
//! ([`remove_rules`]). One proxy per network namespace: two real agents on one machine would
//! overwrite each other's rules.
//!
//! Pod traffic to a cluster IP goes to the bridge's gateway (the pod's default route), so it
//! is routed and meets the `nat` table; the reply of an endpoint on the same bridge, though,
//! is bridged straight back to the client pod, and is translated back only where
//! `br_netfilter` hands bridged packets to iptables (`net.bridge.bridge-nf-call-iptables =
//! 1`). Where it does not, every service connection is masqueraded
//! ([`LocalTraffic::MasqueradeAll`]), so replies come back through the gateway.
//! Hairpin traffic (a pod reaching itself through its Service) also needs the bridge's
//! hairpin mode, which the node's CNI config turns on. The host's own connections to a
//! cluster IP need a route towards the service CIDR (the default route will do): the route
//! is looked up before the `nat` table sees the packet.

pub mod iptables;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Resource;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::ApiClient;
use crate::list_watch::{self, Event};
pub use rules::LocalTraffic;

/// Syncs after changes are at least this far apart (kube-proxy's `--iptables-min-sync-period`).
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// The rules are rewritten this often even without changes (kube-proxy's `--iptables-sync-period`).
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(30);
/// After a failed sync, the next try.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// Where `br_netfilter` says whether bridged IPv4 packets go through iptables.
const BRIDGE_NF_CALL_IPTABLES: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// What the watches report.
#[derive(Debug)]
pub enum Change {
    Services(Box<Event<Service>>),
    Slices(Box<Event<EndpointSlice>>),
}

type Key = (String, String);

fn key<K: Resource>(object: &K) -> Key {
    let meta = object.meta();
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

fn observe<K: Resource>(map: &mut BTreeMap<Key, K>, event: Event<K>) {
    match event {
        Event::Listed(items) => *map = items.into_iter().map(|o| (key(&o), o)).collect(),
        Event::Applied(object) => {
            map.insert(key(&object), object);
        }
        Event::Deleted(object) => {
            map.remove(&key(&object));
        }
    }
}

/// The objects the rules are made from, and what was last applied.
#[derive(Debug, Default)]
pub struct Proxy {
    services: BTreeMap<Key, Service>,
    slices: BTreeMap<Key, EndpointSlice>,
    services_listed: bool,
    slices_listed: bool,
    /// The chains of ours in the tables after the last sync; `None`: ask iptables-save.
    chains: Option<BTreeSet<(String, String)>>,
}

impl Proxy {
    pub fn observe(&mut self, change: Change) {
        match change {
            Change::Services(event) => {
                self.services_listed |= matches!(*event, Event::Listed(_));
                observe(&mut self.services, *event);
            }
            Change::Slices(event) => {
                self.slices_listed |= matches!(*event, Event::Listed(_));
                observe(&mut self.slices, *event);
            }
        }
    }

    /// Whether both kinds have been listed.
    pub fn ready(&self) -> bool {
        self.services_listed && self.slices_listed
    }

    /// The rules of what is known now.
    pub fn render(&self, local: &LocalTraffic, chains: &BTreeSet<(String, String)>) -> rules::Rendered {
        rules::render(&rules::service_ports(self.services.values(), self.slices.values()), local, chains)
    }

    /// Renders and applies the rules.
    async fn sync(&mut self, local: &LocalTraffic) -> Result<rules::Rendered, iptables::Error> {
        let chains = match self.chains.take() {
            Some(chains) => chains,
            None => iptables::our_chains().await?,
        };
        let rendered = self.render(local, &chains);
        if let Err(error) = iptables::restore(&rendered.text).await {
            tracing::debug!(rules = %rendered.text, "iptables-restore input");
            return Err(error);
        }
        let inserted = iptables::ensure_jumps().await?;
        if inserted > 0 {
            tracing::info!(inserted, "jumps to the service chains inserted");
        }
        self.chains = Some(rendered.chains.clone());
        Ok(rendered)
    }
}

/// How to tell pod traffic from the rest on this host (see the module docs).
pub fn local_traffic(bridge: &str) -> LocalTraffic {
    match std::fs::read_to_string(BRIDGE_NF_CALL_IPTABLES) {
        Ok(value) if value.trim() == "1" => LocalTraffic::Bridge(bridge.to_string()),
        _ => LocalTraffic::MasqueradeAll,
    }
}

/// Runs the service proxy of the node whose pods sit on `bridge`, until the process ends
/// (or at once, with an error logged, where iptables is not installed).
pub async fn run(api: Arc<ApiClient>, bridge: String) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(list_watch::watch(api.clone(), "services", None, tx.clone(), |e| Change::Services(Box::new(e))));
    tokio::spawn(list_watch::watch(api, "endpointslices", None, tx, |e| Change::Slices(Box::new(e))));
    let mut proxy = Proxy::default();
    let far = || Instant::now() + Duration::from_secs(86_400);
    let mut due = far();
    let mut last: Option<Instant> = None;
    let mut local = None;
    let mut synced_once = false;
    loop {
        tokio::select! {
            change = rx.recv() => {
                let Some(change) = change else { return };
                proxy.observe(change);
                while let Ok(change) = rx.try_recv() {
                    proxy.observe(change);
                }
                if proxy.ready() {
                    let earliest = last.map_or_else(Instant::now, |l| (l + MIN_SYNC_INTERVAL).max(Instant::now()));
                    due = due.min(earliest);
                }
            }
            () = tokio::time::sleep_until(due) => {
                if !proxy.ready() {
                    due = far();
                    continue;
                }
                let now = local_traffic(&bridge);
                if local.as_ref() != Some(&now) {
                    tracing::info!(local = ?now, "service proxy: telling pod traffic by");
                    local = Some(now.clone());
                }
                let started = Instant::now();
                last = Some(started);
                let result = proxy.sync(&now).await;
                let seconds = started.elapsed().as_secs_f64();
                metrics::histogram!("flotilla_service_proxy_sync_duration_seconds").record(seconds);
                match result {
                    Ok(rendered) => {
                        metrics::counter!("flotilla_service_proxy_syncs_total", "result" => "ok").increment(1);
                        metrics::gauge!("flotilla_service_proxy_rules", "table" => "nat").set(rendered.nat_rules as f64);
                        metrics::gauge!("flotilla_service_proxy_rules", "table" => "filter")
                            .set(rendered.filter_rules as f64);
                        if synced_once {
                            tracing::debug!(
                                nat_rules = rendered.nat_rules,
                                filter_rules = rendered.filter_rules,
                                seconds,
                                "service rules synced"
                            );
                        } else {
                            synced_once = true;
                            tracing::info!(
                                nat_rules = rendered.nat_rules,
                                filter_rules = rendered.filter_rules,
                                seconds,
                                "service proxy programmed its first rules"
                            );
                        }
                        due = started + RESYNC_INTERVAL;
                    }
                    Err(error) if error.not_installed() => {
                        tracing::error!(%error, "no service proxy: iptables is not installed");
                        return;
                    }
                    Err(error) => {
                        metrics::counter!("flotilla_service_proxy_syncs_total", "result" => "error").increment(1);
                        tracing::warn!(%error, "syncing the service rules failed");
                        due = started + RETRY_INTERVAL;
                    }
                }
            }
        }
    }
}

/// Removes the service proxy's rules and chains from this host (`flotilla agent reset`):
/// how many chains went. Without iptables there is nothing to remove.
pub async fn remove_rules() -> Result<usize, iptables::Error> {
    match iptables::remove_all().await {
        Err(error) if error.not_installed() => Ok(0),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn the_proxy_waits_for_both_lists_and_follows_changes() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]},
        }))
        .unwrap();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "web-abc", "labels": {rules::SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4", "ports": [{"port": 8080}],
            "endpoints": [{"addresses": ["10.244.0.4"], "conditions": {"ready": true}}],
        }))
        .unwrap();
        let mut proxy = Proxy::default();
        proxy.observe(Change::Services(Box::new(Event::Listed(vec![service.clone()]))));
        assert!(!proxy.ready());
        proxy.observe(Change::Slices(Box::new(Event::Listed(Vec::new()))));
        assert!(proxy.ready());
        let local = LocalTraffic::MasqueradeAll;
        assert!(proxy.render(&local, &BTreeSet::new()).text.contains("-j REJECT"));
        proxy.observe(Change::Slices(Box::new(Event::Applied(slice.clone()))));
        let text = proxy.render(&local, &BTreeSet::new()).text;
        assert!(text.contains("--to-destination 10.244.0.4:8080") && !text.contains("REJECT"), "{text}");
        proxy.observe(Change::Slices(Box::new(Event::Deleted(slice))));
        proxy.observe(Change::Services(Box::new(Event::Deleted(service))));
        let rendered = proxy.render(&local, &BTreeSet::new());
        assert_eq!(rendered.filter_rules, 0);
        assert!(!rendered.text.contains("default/web"));
    }
}
