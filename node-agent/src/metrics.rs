//! The kubelet endpoint's resource metrics (`GET /metrics/resource`, served by
//! [`crate::kubelet_api`]): the Prometheus text kubelet serves (node, pod and container CPU
//! counters and memory working sets), which metrics-server scrapes. Hollow nodes report
//! steady simulated figures; a real node its host's and its containers' figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use crate::runtime::RunningPod;

/// A hollow container's steady CPU use, in cores.
const HOLLOW_CONTAINER_CPU: f64 = 0.01;
/// A hollow container's working set.
const HOLLOW_CONTAINER_MEMORY: u64 = 16 << 20;
/// What a hollow node's system daemons use besides its pods.
const HOLLOW_SYSTEM_CPU: f64 = 0.1;
const HOLLOW_SYSTEM_MEMORY: u64 = 256 << 20;

/// One container's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSample {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// Unix seconds.
    pub start: i64,
    pub cpu_seconds: f64,
    pub memory: u64,
}

/// One scrape's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub timestamp_ms: i64,
    pub node_cpu_seconds: f64,
    pub node_memory: u64,
    pub containers: Vec<ContainerSample>,
}

/// A hollow node's figures at `now`: each container uses a steady share of a core since it
/// started, the node that plus its system daemons since `since` (the agent's start).
pub fn hollow_sample(pods: &[RunningPod], since: Timestamp, now: Timestamp) -> Sample {
    let seconds = |from: Timestamp| (now.as_millisecond() - from.as_millisecond()).max(0) as f64 / 1000.0;
    let containers: Vec<ContainerSample> = pods
        .iter()
        .flat_map(|pod| {
            pod.containers.iter().map(move |container| ContainerSample {
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                container: container.clone(),
                start: pod.started.as_second(),
                cpu_seconds: HOLLOW_CONTAINER_CPU * seconds(pod.started),
                memory: HOLLOW_CONTAINER_MEMORY,
            })
        })
        .collect();
    Sample {
        timestamp_ms: now.as_millisecond(),
        node_cpu_seconds: HOLLOW_SYSTEM_CPU * seconds(since) + containers.iter().map(|c| c.cpu_seconds).sum::<f64>(),
        node_memory: HOLLOW_SYSTEM_MEMORY + containers.iter().map(|c| c.memory).sum::<u64>(),
        containers,
    }
}

/// A label value escaped as the Prometheus text format wants.
fn escape(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

/// The Prometheus text of `/metrics/resource`, kubelet's metric names, help and order.
pub fn render(sample: &Sample) -> String {
    let ts = sample.timestamp_ms;
    let mut out = String::new();
    let header = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} [STABLE] {help}\n# TYPE {name} {kind}");
    };
    let container_labels = |c: &ContainerSample| {
        format!(
            "container=\"{}\",namespace=\"{}\",pod=\"{}\"",
            escape(&c.container),
            escape(&c.namespace),
            escape(&c.pod)
        )
    };
    header(
        &mut out,
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
    );
    for c in &sample.containers {
        let _ = writeln!(out, "container_cpu_usage_seconds_total{{{}}} {:.9} {ts}", container_labels(c), c.cpu_seconds);
    }
    header(&mut out, "container_memory_working_set_bytes", "gauge", "Current working set of the container in bytes");
    for c in &sample.containers {
        let _ = writeln!(out, "container_memory_working_set_bytes{{{}}} {} {ts}", container_labels(c), c.memory);
    }
    header(
        &mut out,
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds",
    );
    for c in &sample.containers {
        let _ = writeln!(out, "container_start_time_seconds{{{}}} {} {ts}", container_labels(c), c.start);
    }
    header(
        &mut out,
        "node_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
    );
    let _ = writeln!(out, "node_cpu_usage_seconds_total {:.9} {ts}", sample.node_cpu_seconds);
    header(&mut out, "node_memory_working_set_bytes", "gauge", "Current working set of the node in bytes");
    let _ = writeln!(out, "node_memory_working_set_bytes {} {ts}", sample.node_memory);
    // Pods: the sums of their containers.
    let mut pods: BTreeMap<(&str, &str), (f64, u64)> = BTreeMap::new();
    for c in &sample.containers {
        let (cpu, memory) = pods.entry((c.namespace.as_str(), c.pod.as_str())).or_default();
        *cpu += c.cpu_seconds;
        *memory += c.memory;
    }
    header(
        &mut out,
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
    );
    for ((namespace, pod), (cpu, _)) in &pods {
        let _ = writeln!(
            out,
            "pod_cpu_usage_seconds_total{{namespace=\"{}\",pod=\"{}\"}} {cpu:.9} {ts}",
            escape(namespace),
            escape(pod)
        );
    }
    header(&mut out, "pod_memory_working_set_bytes", "gauge", "Current working set of the pod in bytes");
    for ((namespace, pod), (_, memory)) in &pods {
        let _ = writeln!(
            out,
            "pod_memory_working_set_bytes{{namespace=\"{}\",pod=\"{}\"}} {memory} {ts}",
            escape(namespace),
            escape(pod)
        );
    }
    header(
        &mut out,
        "resource_scrape_error",
        "gauge",
        "1 if there was an error while getting container metrics, 0 otherwise",
    );
    out.push_str("resource_scrape_error 0\n");
    out
}

/// Produces the `/metrics/resource` text on each scrape.
pub type Source = Arc<dyn Fn() -> String + Send + Sync>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pod(name: &str, containers: &[&str], started: i64) -> RunningPod {
        RunningPod {
            uid: name.into(),
            namespace: "default".into(),
            name: name.into(),
            node: "n0".into(),
            ip: "10.244.0.2".parse().unwrap(),
            started: Timestamp::from_second(started).unwrap(),
            containers: containers.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn hollow_figures_rise_steadily_with_time() {
        let since = Timestamp::from_second(1_000).unwrap();
        let pods = [pod("web", &["app", "side"], 1_100)];
        let sample = hollow_sample(&pods, since, Timestamp::from_second(1_200).unwrap());
        assert_eq!(sample.containers.len(), 2);
        assert!((sample.containers[0].cpu_seconds - 1.0).abs() < 1e-9);
        assert_eq!(sample.containers[0].memory, 16 << 20);
        assert!((sample.node_cpu_seconds - (20.0 + 2.0)).abs() < 1e-9);
        assert_eq!(sample.node_memory, (256 << 20) + (32 << 20));
        assert_eq!(sample.timestamp_ms, 1_200_000);
    }

    #[test]
    fn the_text_is_what_kubelet_serves() {
        let since = Timestamp::from_second(1_000).unwrap();
        let pods = [pod("we\"b", &["app"], 1_100)];
        let text = render(&hollow_sample(&pods, since, Timestamp::from_second(1_200).unwrap()));
        assert!(text.contains("# TYPE container_cpu_usage_seconds_total counter\n"), "{text}");
        assert!(text.contains(
            "container_cpu_usage_seconds_total{container=\"app\",namespace=\"default\",pod=\"we\\\"b\"} 1.000000000 1200000\n"
        ));
        assert!(text.contains(
            "container_memory_working_set_bytes{container=\"app\",namespace=\"default\",pod=\"we\\\"b\"} 16777216 1200000\n"
        ));
        assert!(text.contains(
            "container_start_time_seconds{container=\"app\",namespace=\"default\",pod=\"we\\\"b\"} 1100 1200000\n"
        ));
        assert!(text.contains("node_cpu_usage_seconds_total 21.000000000 1200000\n"));
        assert!(text.contains("node_memory_working_set_bytes 285212672 1200000\n"));
        assert!(
            text.contains("pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"we\\\"b\"} 1.000000000 1200000\n")
        );
        assert!(text.contains("pod_memory_working_set_bytes{namespace=\"default\",pod=\"we\\\"b\"} 16777216 1200000\n"));
        assert!(text.ends_with("resource_scrape_error 0\n"));
    }
}
