//! The process-wide Prometheus recorder that every `metrics::counter!` etc. reports to.

use std::time::Duration;

pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

/// How often histogram samples are folded into their summaries when nobody scrapes.
const UPKEEP_PERIOD: Duration = Duration::from_secs(5);

/// Errors installing the recorder.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The recorder could not be built, or a global recorder is already installed.
    #[error("install prometheus recorder: {0}")]
    Install(#[from] BuildError),
    /// The upkeep thread could not be started.
    #[error("start metrics upkeep thread: {0}")]
    Upkeep(#[from] std::io::Error),
}

/// Installs the Prometheus recorder as the global `metrics` recorder and returns the handle
/// that renders it. Call once per process, before anything records metrics (records made
/// earlier are lost); a second call fails with [`MetricsError::Install`].
///
/// Also starts a small thread that runs the recorder's upkeep, so histogram samples do not
/// pile up between scrapes (`install_recorder` leaves that to the caller).
pub fn install_prometheus() -> Result<PrometheusHandle, MetricsError> {
    // Buckets (seconds) for request latencies, as kube-apiserver's histograms have them.
    let buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];
    // The store's latencies are well under a millisecond to a few: etcd's disk histograms
    // start at 1 ms, ours a step lower (a WAL fsync here takes ~0.25 ms).
    let store = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
    // Histograms of counts (transactions per entry, reads per read-index round).
    let counts = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];
    let handle = PrometheusBuilder::new()
        .set_buckets(&buckets)?
        .set_buckets_for_metric(Matcher::Prefix("flotilla_store_".into()), &store)?
        .set_buckets_for_metric(Matcher::Full("flotilla_store_batch_txns".into()), &counts)?
        .set_buckets_for_metric(Matcher::Full("flotilla_store_read_index_batch".into()), &counts)?
        .install_recorder()?;
    let upkeep = handle.clone();
    std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
        std::thread::sleep(UPKEEP_PERIOD);
        upkeep.run_upkeep();
    })?;
    Ok(handle)
}
