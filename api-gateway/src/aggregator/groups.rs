//! The aggregated groups as discovery serves them, beside the local ones.
//!
//! As kube-aggregator: the legacy documents (`/apis`, `/apis/{group}`) list every non-local
//! APIService's group/version, available or not, groups by `groupPriorityMinimum` (highest
//! first) and versions by `versionPriority` (highest first, then kube's version order); the
//! aggregated (v2) document lists the resources each extension server's
//! `/apis/{group}/{version}` answered at its last passing check, `Current` while the
//! APIService is available and `Stale` after. A group/version never checked successfully is
//! left out of v2.

use std::cmp::Reverse;

use actors::custom_kinds;
use serde_json::{json, Value};

use super::{Aggregator, Remote};

/// One aggregated group: its name and its APIServices, preferred first.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub versions: Vec<Remote>,
}

/// `remotes` grouped and ordered as discovery lists them.
pub fn grouped(remotes: Vec<Remote>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for remote in remotes {
        match groups.iter_mut().find(|g| g.name == remote.spec.group) {
            Some(group) => group.versions.push(remote),
            None => groups.push(Group { name: remote.spec.group.clone(), versions: vec![remote] }),
        }
    }
    for group in &mut groups {
        group.versions.sort_by(|a, b| {
            b.spec
                .version_priority
                .cmp(&a.spec.version_priority)
                .then_with(|| custom_kinds::version_priority(&a.spec.version, &b.spec.version))
        });
    }
    let priority = |g: &Group| g.versions.iter().map(|r| r.spec.group_priority_minimum).max().unwrap_or(0);
    groups.sort_by_key(|g| (Reverse(priority(g)), g.name.clone()));
    groups
}

fn group_version(group: &str, version: &str) -> Value {
    json!({"groupVersion": format!("{group}/{version}"), "version": version})
}

/// A group's `APIGroup` entry of `/apis` (`kind` and `apiVersion` are the caller's to add).
pub fn legacy_group(group: &Group) -> Value {
    let versions: Vec<Value> = group.versions.iter().map(|r| group_version(&group.name, &r.spec.version)).collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": group.name, "versions": versions, "preferredVersion": preferred})
}

/// A group's `APIGroupDiscovery`, or `None` when no version of it has a discovery document.
pub fn v2_group(group: &Group) -> Option<Value> {
    let versions: Vec<Value> = group.versions.iter().filter_map(v2_version).collect();
    (!versions.is_empty()).then(|| json!({"metadata": {"name": group.name}, "versions": versions}))
}

fn v2_version(remote: &Remote) -> Option<Value> {
    let list = remote.discovery.as_ref()?;
    let freshness = if remote.available() { "Current" } else { "Stale" };
    Some(json!({"version": remote.spec.version, "resources": v2_resources(list), "freshness": freshness}))
}

/// An `APIResourceList`'s resources as aggregated discovery's `APIResourceDiscovery`s:
/// `{resource}/{sub}` entries become their parent's subresources.
pub fn v2_resources(list: &Value) -> Vec<Value> {
    let entries = list.get("resources").and_then(Value::as_array).cloned().unwrap_or_default();
    let text = |v: &Value, field: &str| v.get(field).and_then(Value::as_str).unwrap_or("").to_string();
    let kind_of =
        |v: &Value| json!({"group": text(v, "group"), "version": text(v, "version"), "kind": text(v, "kind")});
    let mut resources: Vec<Value> = Vec::new();
    for entry in entries.iter().filter(|e| !text(e, "name").contains('/')) {
        let mut resource = json!({
            "resource": text(entry, "name"),
            "responseKind": kind_of(entry),
            "scope": if entry.get("namespaced").and_then(Value::as_bool) == Some(true) { "Namespaced" } else { "Cluster" },
            "singularResource": text(entry, "singularName"),
            "verbs": entry.get("verbs").cloned().unwrap_or_else(|| json!([])),
        });
        for field in ["shortNames", "categories"] {
            if let Some(values) = entry.get(field).filter(|v| v.as_array().is_some_and(|a| !a.is_empty())) {
                resource[field] = values.clone();
            }
        }
        let parent = format!("{}/", text(entry, "name"));
        let subresources: Vec<Value> = entries
            .iter()
            .filter_map(|e| {
                let name = text(e, "name");
                let sub = name.strip_prefix(&parent)?;
                Some(json!({
                    "subresource": sub,
                    "responseKind": kind_of(e),
                    "verbs": e.get("verbs").cloned().unwrap_or_else(|| json!([])),
                }))
            })
            .collect();
        if !subresources.is_empty() {
            resource["subresources"] = json!(subresources);
        }
        resources.push(resource);
    }
    resources
}

/// Adds the aggregated groups to `/apis`' `APIGroupList` (`list`, as JSON): new groups
/// after the local ones, versions of a group served locally too after its local versions.
pub fn merge_legacy(aggregator: &Aggregator, list: &mut Value) {
    let Some(groups) = list.get_mut("groups").and_then(Value::as_array_mut) else { return };
    for group in grouped(aggregator.remotes()) {
        let entry = legacy_group(&group);
        match groups.iter_mut().find(|g| g["name"] == group.name.as_str()) {
            Some(local) => {
                if let (Some(have), Some(more)) = (local["versions"].as_array_mut(), entry["versions"].as_array()) {
                    for version in more {
                        if !have.contains(version) {
                            have.push(version.clone());
                        }
                    }
                }
            }
            None => groups.push(entry),
        }
    }
}

/// Adds the aggregated groups to `/apis`' `APIGroupDiscoveryList` (`list`, as JSON).
pub fn merge_v2(aggregator: &Aggregator, list: &mut Value) {
    let Some(items) = list.get_mut("items").and_then(Value::as_array_mut) else { return };
    for group in grouped(aggregator.remotes()) {
        let Some(entry) = v2_group(&group) else { continue };
        match items.iter_mut().find(|i| i["metadata"]["name"] == group.name.as_str()) {
            Some(local) => {
                if let (Some(have), Some(more)) = (local["versions"].as_array_mut(), entry["versions"].as_array()) {
                    for version in more {
                        if !have.iter().any(|v| v["version"] == version["version"]) {
                            have.push(version.clone());
                        }
                    }
                }
            }
            None => items.push(entry),
        }
    }
}

/// `/apis/{name}` of a group only extension servers serve.
pub fn api_group(aggregator: &Aggregator, name: &str) -> Option<Value> {
    let group = grouped(aggregator.remotes()).into_iter().find(|g| g.name == name)?;
    let mut entry = legacy_group(&group);
    entry["kind"] = json!("APIGroup");
    entry["apiVersion"] = json!("v1");
    Some(entry)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::super::proxy::ProxyError;
    use super::super::{ApiServiceSpec, Condition};
    use super::*;

    fn remote(group: &str, version: &str, priorities: (i64, i64), available: Option<bool>) -> Remote {
        let spec = ApiServiceSpec {
            group: group.into(),
            version: version.into(),
            service: None,
            ca_bundle: None,
            insecure_skip_tls_verify: false,
            group_priority_minimum: priorities.0,
            version_priority: priorities.1,
        };
        let condition = available.map(|available| Condition { available, reason: "Passed", message: String::new() });
        let list = json!({"resources": [{"name": "widgets", "singularName": "widget", "namespaced": true,
            "kind": "Widget", "verbs": ["get", "list"]}]});
        Remote {
            name: format!("{version}.{group}"),
            spec,
            transport: Err(ProxyError::Config("test".into())),
            condition,
            discovery: available.map(|_| Arc::new(list)),
        }
    }

    #[test]
    fn groups_order_by_group_priority_and_versions_by_version_priority() {
        let groups = grouped(vec![
            remote("b.example.com", "v1", (100, 10), Some(true)),
            remote("a.example.com", "v1", (100, 10), None),
            remote("b.example.com", "v2", (100, 20), Some(true)),
            remote("high.example.com", "v1beta1", (2000, 1), Some(true)),
        ]);
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["high.example.com", "a.example.com", "b.example.com"]);
        assert_eq!(
            legacy_group(&groups[2]),
            json!({
                "name": "b.example.com",
                "versions": [{"groupVersion": "b.example.com/v2", "version": "v2"}, {"groupVersion": "b.example.com/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "b.example.com/v2", "version": "v2"},
            })
        );
        assert!(v2_group(&groups[1]).is_none(), "never checked: not in aggregated discovery");
    }

    #[test]
    fn resource_lists_become_aggregated_resources_with_their_subresources() {
        let list = json!({"resources": [
            {"name": "widgets", "singularName": "widget", "namespaced": true, "kind": "Widget",
             "verbs": ["get", "list"], "shortNames": ["wd"]},
            {"name": "widgets/status", "singularName": "", "namespaced": true, "kind": "Widget", "verbs": ["get"]},
            {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "NodeMetrics",
             "verbs": ["get"], "categories": []},
        ]});
        assert_eq!(
            json!(v2_resources(&list)),
            json!([
                {"resource": "widgets", "responseKind": {"group": "", "version": "", "kind": "Widget"},
                 "scope": "Namespaced", "singularResource": "widget", "verbs": ["get", "list"], "shortNames": ["wd"],
                 "subresources": [{"subresource": "status", "responseKind": {"group": "", "version": "", "kind": "Widget"}, "verbs": ["get"]}]},
                {"resource": "nodes", "responseKind": {"group": "", "version": "", "kind": "NodeMetrics"},
                 "scope": "Cluster", "singularResource": "node", "verbs": ["get"]},
            ])
        );
        let mut unavailable = remote("x.example.com", "v1", (1, 1), Some(false));
        assert_eq!(v2_version(&unavailable).unwrap()["freshness"], "Stale");
        unavailable.condition = None;
        unavailable.discovery = None;
        assert!(v2_version(&unavailable).is_none());
    }

    #[test]
    fn the_discovery_documents_gain_the_aggregated_groups() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::load_or_create(dir.path(), &[]).unwrap();
        let aggregator = Aggregator::new(&pki, actors::KindActors::default()).unwrap();
        for (version, priority) in [("v1", 10), ("v2", 20)] {
            let spec = ApiServiceSpec {
                service: Some(super::super::proxy::ServiceRef { namespace: "ns".into(), name: "m".into(), port: 443 }),
                ..remote("metrics.example.com", version, (100, priority), None).spec
            };
            let name = format!("{version}.metrics.example.com");
            aggregator.upsert(&name, spec.clone());
            let passed = Condition { available: true, reason: "Passed", message: String::new() };
            let list =
                json!({"resources": [{"name": "widgets", "namespaced": true, "kind": "Widget", "verbs": ["get"]}]});
            aggregator.record(&name, &spec, passed, (version == "v1").then_some(list));
        }
        let mut legacy = json!({"kind": "APIGroupList", "groups": [{"name": "apps", "versions": []}]});
        merge_legacy(&aggregator, &mut legacy);
        assert_eq!(legacy["groups"][1]["name"], "metrics.example.com");
        assert_eq!(legacy["groups"][1]["preferredVersion"]["version"], "v2");
        let mut v2 = json!({"kind": "APIGroupDiscoveryList", "items": []});
        merge_v2(&aggregator, &mut v2);
        assert_eq!(v2["items"][0]["metadata"]["name"], "metrics.example.com");
        let versions = v2["items"][0]["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 1, "v2 has no discovery document yet: {versions:?}");
        assert_eq!(versions[0]["resources"][0]["resource"], "widgets");
        assert_eq!(api_group(&aggregator, "metrics.example.com").unwrap()["kind"], "APIGroup");
        assert!(api_group(&aggregator, "apps").is_none());
    }
}
