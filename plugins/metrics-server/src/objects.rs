//! The objects of `metrics.k8s.io/v1beta1` as JSON: discovery documents, `NodeMetrics`,
//! `PodMetrics`, their lists, and their `Table` form (metrics-server's columns: name, each
//! resource, window).

use serde_json::{json, Map, Value};

use crate::format;
use crate::scraper::{NodeInfo, PodInfo};
use crate::store::Usage;

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
pub const GROUP_VERSION: &str = "metrics.k8s.io/v1beta1";

/// `GET /apis/metrics.k8s.io/v1beta1`.
pub fn resource_list() -> Value {
    let resource = |name: &str, namespaced: bool, kind: &str| json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get", "list"]});
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [resource("nodes", false, "NodeMetrics"), resource("pods", true, "PodMetrics")],
    })
}

/// `GET /apis/metrics.k8s.io`.
pub fn api_group() -> Value {
    let version = json!({"groupVersion": GROUP_VERSION, "version": VERSION});
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [version], "preferredVersion": version})
}

/// `GET /apis`.
pub fn api_group_list() -> Value {
    let mut group = api_group();
    if let Some(group) = group.as_object_mut() {
        group.remove("kind");
        group.remove("apiVersion");
    }
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]})
}

/// `GET /`: the paths served.
pub fn root_paths() -> Value {
    json!({"paths": ["/apis", "/apis/metrics.k8s.io", "/apis/metrics.k8s.io/v1beta1", "/healthz", "/livez", "/readyz"]})
}

/// A usage as a resource list: `{"cpu": "250m", "memory": "512Mi"}` (and swap when known).
fn usage_of(cpu: u64, memory: u64, swap: Option<u64>) -> Value {
    let mut usage = json!({"cpu": format::cpu(cpu), "memory": format::bytes(memory)});
    if let Some(swap) = swap {
        usage["swap"] = json!(format::bytes(swap));
    }
    usage
}

fn metadata(
    name: &str,
    namespace: Option<&str>,
    labels: &std::collections::BTreeMap<String, String>,
    now: i64,
) -> Value {
    let mut meta = Map::new();
    meta.insert("name".into(), json!(name));
    if let Some(namespace) = namespace {
        meta.insert("namespace".into(), json!(namespace));
    }
    // Made on each read, as in metrics-server.
    meta.insert("creationTimestamp".into(), json!(format::rfc3339(now)));
    if !labels.is_empty() {
        meta.insert("labels".into(), json!(labels));
    }
    Value::Object(meta)
}

/// One row of a metrics table: what the object is, and the object.
#[derive(Debug, Clone)]
pub struct Item {
    pub name: String,
    pub cpu: u64,
    pub memory: u64,
    pub swap: Option<u64>,
    pub window: i64,
    pub object: Value,
}

/// A `NodeMetrics`.
pub fn node_metrics(node: &NodeInfo, usage: &Usage, now: i64) -> Item {
    let object = json!({
        "kind": "NodeMetrics",
        "apiVersion": GROUP_VERSION,
        "metadata": metadata(&node.name, None, &node.labels, now),
        "timestamp": format::rfc3339(usage.timestamp),
        "window": format::go_duration(usage.window),
        "usage": usage_of(usage.cpu, usage.memory, usage.swap),
    });
    Item {
        name: node.name.clone(),
        cpu: usage.cpu,
        memory: usage.memory,
        swap: usage.swap,
        window: usage.window,
        object,
    }
}

/// A `PodMetrics`: `time` is the earliest container's, `containers` each one's usage.
pub fn pod_metrics(pod: &PodInfo, time: &Usage, containers: &[(String, Usage)], now: i64) -> Item {
    let listed: Vec<Value> =
        containers.iter().map(|(name, u)| json!({"name": name, "usage": usage_of(u.cpu, u.memory, u.swap)})).collect();
    let object = json!({
        "kind": "PodMetrics",
        "apiVersion": GROUP_VERSION,
        "metadata": metadata(&pod.name, Some(&pod.namespace), &pod.labels, now),
        "timestamp": format::rfc3339(time.timestamp),
        "window": format::go_duration(time.window),
        "containers": listed,
    });
    let swaps: Vec<u64> = containers.iter().filter_map(|(_, u)| u.swap).collect();
    Item {
        name: pod.name.clone(),
        cpu: containers.iter().map(|(_, u)| u.cpu).sum(),
        memory: containers.iter().map(|(_, u)| u.memory).sum(),
        swap: (!swaps.is_empty()).then(|| swaps.iter().sum()),
        window: time.window,
        object,
    }
}

/// `NodeMetricsList` or `PodMetricsList`.
pub fn list(kind: &str, items: Vec<Item>) -> Value {
    let items: Vec<Value> = items.into_iter().map(|i| i.object).collect();
    json!({"kind": kind, "apiVersion": GROUP_VERSION, "metadata": {}, "items": items})
}

/// What a Table row carries of its object (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn parse(value: Option<&str>) -> Include {
        match value {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

/// A `Table` (`meta.k8s.io/{version}`) of `items`.
pub fn table(items: &[Item], version: &str, include: Include) -> Value {
    let column = |name: &str, format: &str, description: &str| json!({"name": name, "type": "string", "format": format, "description": description, "priority": 0});
    let with_swap = items.first().is_some_and(|i| i.swap.is_some());
    let mut columns = vec![column("Name", "name", "Name of the resource"), column("cpu", "quantity", "")];
    columns.push(column("memory", "quantity", ""));
    if with_swap {
        columns.push(column("swap", "quantity", ""));
    }
    columns.push(column("Window", "duration", ""));
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut cells = vec![json!(item.name), json!(format::cpu(item.cpu)), json!(format::bytes(item.memory))];
            if with_swap {
                cells.push(json!(format::bytes(item.swap.unwrap_or(0))));
            }
            cells.push(json!(format::go_duration(item.window)));
            let mut row = json!({"cells": cells});
            match include {
                Include::None => {}
                Include::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": format!("meta.k8s.io/{version}"),
                        "metadata": item.object["metadata"],
                    });
                }
                Include::Object => row["object"] = item.object.clone(),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": {},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const SECOND: i64 = 1_000_000_000;

    fn usage(cpu: u64, memory: u64) -> Usage {
        Usage { timestamp: 1_700_000_000 * SECOND, window: 15 * SECOND, cpu, memory, swap: None }
    }

    #[test]
    fn node_metrics_carry_name_labels_time_window_and_usage() {
        let node = NodeInfo { name: "n1".into(), labels: BTreeMap::from([("zone".into(), "a".into())]), kubelet: None };
        let item = node_metrics(&node, &usage(250_000_000, 512 * 1024 * 1024), 0);
        assert_eq!(
            item.object,
            json!({
                "kind": "NodeMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {"name": "n1", "creationTimestamp": "1970-01-01T00:00:00Z", "labels": {"zone": "a"}},
                "timestamp": "2023-11-14T22:13:20Z", "window": "15s",
                "usage": {"cpu": "250m", "memory": "512Mi"},
            })
        );
    }

    #[test]
    fn a_pods_table_row_sums_its_containers() {
        let pod = PodInfo { namespace: "default".into(), name: "web".into(), labels: BTreeMap::new() };
        let containers = [("app".into(), usage(100_000_000, 1 << 20)), ("side".into(), usage(50_000_000, 1 << 20))];
        let item = pod_metrics(&pod, &usage(0, 0), &containers, 0);
        assert_eq!(item.object["containers"][1], json!({"name": "side", "usage": {"cpu": "50m", "memory": "1Mi"}}));
        let table = table(&[item], "v1", Include::Metadata);
        assert_eq!(table["rows"][0]["cells"], json!(["web", "150m", "2Mi", "15s"]));
        assert_eq!(table["rows"][0]["object"]["metadata"]["namespace"], "default");
        let names: Vec<&str> =
            table["columnDefinitions"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(names, ["Name", "cpu", "memory", "Window"]);
    }

    #[test]
    fn discovery_names_nodes_and_pods() {
        let list = resource_list();
        assert_eq!(list["resources"][0]["kind"], "NodeMetrics");
        assert_eq!(list["resources"][1]["namespaced"], true);
        assert_eq!(api_group_list()["groups"][0]["preferredVersion"]["version"], "v1beta1");
    }
}
