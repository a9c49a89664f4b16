//! A real node's `/metrics/resource` figures: the host's from /proc and each container's
//! CPU and working set from CRI (`ListContainerStats`), refreshed in the background so a
//! scrape reads the latest text without waiting on the runtime.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::config::{LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE};
use crate::host::HostUsage;
use crate::metrics::{self, ContainerSample, Sample};
use crate::runtime::cri::Cri;

/// How often the figures are gathered (metrics-server scrapes every 15 s).
const REFRESH: Duration = Duration::from_secs(5);

/// The running containers' figures now.
pub async fn containers(cri: &Cri) -> Result<Vec<ContainerSample>, crate::runtime::cri::Error> {
    let stats = cri.list_container_stats().await?;
    // Start times: from the containers' creation (stats carry none).
    let mut started: HashMap<String, i64> = HashMap::new();
    for sandbox in cri.list_pod_sandboxes(HashMap::new()).await? {
        for c in cri.list_containers(&sandbox.id).await.unwrap_or_default() {
            started.insert(c.id.clone(), c.created_at / 1_000_000_000);
        }
    }
    Ok(stats
        .into_iter()
        .filter_map(|s| {
            let attributes = s.attributes?;
            let label = |key: &str| attributes.labels.get(key).cloned();
            Some(ContainerSample {
                namespace: label(LABEL_POD_NAMESPACE)?,
                pod: label(LABEL_POD_NAME)?,
                container: label(LABEL_CONTAINER_NAME)?,
                start: started.get(&attributes.id).copied().unwrap_or(0),
                cpu_seconds: s.cpu.and_then(|c| c.usage_core_nano_seconds).map_or(0.0, |v| v.value as f64 / 1e9),
                memory: s.memory.and_then(|m| m.working_set_bytes).map_or(0, |v| v.value),
            })
        })
        .collect())
}

/// The rendered text, kept fresh by [`refresh`].
#[derive(Clone, Default)]
pub struct Latest(Arc<RwLock<String>>);

impl Latest {
    pub fn text(&self) -> String {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Gathers the node's and its containers' figures every few seconds, for ever.
pub async fn refresh(cri: Cri, latest: Latest) {
    loop {
        let text = match HostUsage::read() {
            Some(usage) => {
                let containers = containers(&cri).await.unwrap_or_else(|error| {
                    tracing::debug!(%error, "container stats unavailable");
                    Vec::new()
                });
                metrics::render(&Sample {
                    timestamp_ms: Timestamp::now().as_millisecond(),
                    node_cpu_seconds: usage.cpu_seconds,
                    node_memory: usage.memory_working_set,
                    containers,
                })
            }
            None => "resource_scrape_error 1\n".to_string(),
        };
        *latest.0.write().unwrap_or_else(PoisonError::into_inner) = text;
        tokio::time::sleep(REFRESH).await;
    }
}
