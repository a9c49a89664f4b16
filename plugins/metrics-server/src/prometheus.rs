//! Decodes one scrape of a kubelet's resource metrics endpoint (`/metrics/resource`,
//! Prometheus text format 0.0.4) into points, as metrics-server's resource decoder does: the
//! node's cumulative CPU and working set, and each container's, keyed by pod.
//!
//! Values are read as exact decimals (not through `f64`), so a CPU counter's nanoseconds
//! survive and rates come out exact.

use std::collections::BTreeMap;

/// The series this server reads; others are skipped.
const NODE_CPU: &str = "node_cpu_usage_seconds_total";
const NODE_MEMORY: &str = "node_memory_working_set_bytes";
const NODE_SWAP: &str = "node_swap_usage_bytes";
const CONTAINER_CPU: &str = "container_cpu_usage_seconds_total";
const CONTAINER_MEMORY: &str = "container_memory_working_set_bytes";
const CONTAINER_SWAP: &str = "container_swap_usage_bytes";
const CONTAINER_START: &str = "container_start_time_seconds";

/// One measurement of a node or a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Point {
    /// When it started, in ns since the Unix epoch (0: unknown); its CPU counter was 0 then.
    pub start: i64,
    /// When it was measured, in ns since the Unix epoch.
    pub timestamp: i64,
    /// CPU time used since it started, in nanoseconds.
    pub cpu: u64,
    /// Working set, in bytes.
    pub memory: u64,
    /// Swap in use, in bytes, when the kubelet reports it.
    pub swap: Option<u64>,
}

/// A pod by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

/// What one scrape (or several nodes' scrapes, merged) measured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub nodes: BTreeMap<String, Point>,
    /// Each pod's containers, by container name.
    pub pods: BTreeMap<PodRef, BTreeMap<String, Point>>,
}

/// Why a scrape's text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// One sample line: `name{label="value",...} value [timestamp-ms]`.
#[derive(Debug, PartialEq)]
struct Sample<'a> {
    name: &'a str,
    labels: Labels<'a>,
    value: &'a str,
    timestamp_ms: Option<i64>,
}

impl Sample<'_> {
    fn label(&self, name: &str) -> &str {
        self.labels.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| v.as_str())
    }
}

/// Decodes the text of `node`'s scrape; samples without a timestamp are taken as measured at
/// `default_timestamp` (ns since the epoch, when the request was sent). A node point missing
/// its CPU, memory or time is dropped, and so is a pod with such a container, as
/// metrics-server does.
pub fn decode(text: &str, default_timestamp: i64, node: &str) -> Result<Batch, ParseError> {
    let mut node_point = Point::default();
    let mut pods: BTreeMap<PodRef, BTreeMap<String, Point>> = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let sample = parse_line(line).map_err(|reason| ParseError { line: index + 1, reason })?;
        let Some(sample) = sample else { continue };
        let timestamp = match sample.timestamp_ms {
            Some(ms) => ms
                .checked_mul(1_000_000)
                .ok_or_else(|| ParseError { line: index + 1, reason: format!("timestamp {ms} out of range") })?,
            None => default_timestamp,
        };
        // Values that are not finite, non-negative numbers (NaN) are skipped like absent ones.
        match sample.name {
            NODE_CPU => {
                if let Some(cpu) = scaled(sample.value, 9) {
                    node_point.cpu = cpu;
                    node_point.timestamp = timestamp;
                }
            }
            NODE_MEMORY => {
                if let Some(memory) = scaled(sample.value, 0) {
                    node_point.memory = memory;
                    // The CPU sample's time wins: the rate is computed over it.
                    if node_point.timestamp == 0 {
                        node_point.timestamp = timestamp;
                    }
                }
            }
            NODE_SWAP => node_point.swap = scaled(sample.value, 0),
            CONTAINER_CPU | CONTAINER_MEMORY | CONTAINER_SWAP | CONTAINER_START => {
                let pod = PodRef { namespace: sample.label("namespace").into(), name: sample.label("pod").into() };
                let container = sample.label("container");
                if pod.name.is_empty() || container.is_empty() {
                    continue;
                }
                let point = pods.entry(pod).or_default().entry(container.to_string()).or_default();
                apply_container_sample(point, sample.name, sample.value, timestamp);
            }
            _ => {}
        }
    }
    let mut batch = Batch::default();
    if node_point.timestamp != 0 && node_point.cpu != 0 && node_point.memory != 0 {
        batch.nodes.insert(node.to_string(), node_point);
    } else {
        tracing::debug!(node, "incomplete node metrics; skipped");
    }
    for (pod, containers) in pods {
        if containers.values().all(|c| c.cpu != 0 && c.memory != 0) {
            batch.pods.insert(pod, containers);
        } else {
            tracing::debug!(namespace = pod.namespace, pod = pod.name, "incomplete container metrics; pod skipped");
        }
    }
    Ok(batch)
}

fn apply_container_sample(point: &mut Point, name: &str, value: &str, timestamp: i64) {
    match name {
        CONTAINER_CPU => {
            if let Some(cpu) = scaled(value, 9) {
                point.cpu = cpu;
                point.timestamp = timestamp;
            }
        }
        CONTAINER_MEMORY => {
            if let Some(memory) = scaled(value, 0) {
                point.memory = memory;
                if point.timestamp == 0 {
                    point.timestamp = timestamp;
                }
            }
        }
        CONTAINER_SWAP => point.swap = scaled(value, 0),
        CONTAINER_START => {
            if let Some(start) = scaled(value, 9).and_then(|s| i64::try_from(s).ok()) {
                point.start = start;
            }
        }
        _ => {}
    }
}

/// One line: `None` for blank lines and comments (`# HELP`, `# TYPE`).
fn parse_line(line: &str) -> Result<Option<Sample<'_>>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let name_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("invalid metric name in {line:?}"));
    }
    let mut rest = line[name_end..].trim_start();
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after)?;
        labels = parsed;
        rest = remaining;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or_else(|| format!("no value in {line:?}"))?;
    let timestamp_ms = match fields.next() {
        Some(t) => Some(t.parse::<i64>().map_err(|_| format!("invalid timestamp {t:?}"))?),
        None => None,
    };
    if fields.next().is_some() {
        return Err(format!("unexpected text after the timestamp in {line:?}"));
    }
    Ok(Some(Sample { name, labels, value, timestamp_ms }))
}

/// Label names and their (unescaped) values.
type Labels<'a> = Vec<(&'a str, String)>;

/// The labels after `{`, and the text after the closing `}`.
fn parse_labels(mut text: &str) -> Result<(Labels<'_>, &str), String> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = text.find('=').ok_or("a label without a value")?;
        let name = text[..eq].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid label name {name:?}"));
        }
        text = text[eq + 1..].trim_start().strip_prefix('"').ok_or("a label value must be quoted")?;
        let mut value = String::new();
        let mut chars = text.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("an unterminated escape".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("an unterminated label value".into()),
            }
        };
        labels.push((name, value));
        text = text[end + 1..].trim_start();
        if let Some(rest) = text.strip_prefix(',') {
            text = rest;
        } else if !text.starts_with('}') {
            return Err("labels must be separated by commas".into());
        }
    }
}

/// A decimal number (`12.5`, `1.2e+07`) times `10^digits`, exactly, the fraction beyond
/// that truncated; `None` for NaN, infinities, negative or malformed numbers.
pub fn scaled(text: &str, digits: i32) -> Option<u64> {
    let text = text.strip_prefix('+').unwrap_or(text);
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    // Accumulate the digits; past what u128 holds, drop them and count the lost places.
    let mut value: u128 = 0;
    let mut shift = exponent.checked_add(digits)?.checked_sub(i32::try_from(fraction.len()).ok()?)?;
    for b in whole.bytes().chain(fraction.bytes()) {
        match value.checked_mul(10).and_then(|v| v.checked_add(u128::from(b - b'0'))) {
            Some(v) => value = v,
            None => shift = shift.checked_add(1)?,
        }
    }
    let value = if shift >= 0 {
        value.checked_mul(10u128.checked_pow(shift.unsigned_abs())?)?
    } else {
        10u128.checked_pow(shift.unsigned_abs()).map_or(0, |d| value / d)
    };
    u64::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// What a kubelet serves, trimmed: HELP/TYPE lines, millisecond timestamps, escapes.
    const SCRAPE: &str = r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="default",pod="web-1"} 12.345678901 1700000000123
container_cpu_usage_seconds_total{container="side\"car",namespace="default",pod="web-1"} 0.5 1700000000123
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="app",namespace="default",pod="web-1"} 6.7108864e+07 1700000000123
container_memory_working_set_bytes{container="side\"car",namespace="default",pod="web-1"} 1.048576e+06 1700000000123
container_start_time_seconds{container="app",namespace="default",pod="web-1"} 1.6999999e+09 1700000000123
container_cpu_usage_seconds_total{container="db",namespace="data",pod="pg-0"} 3 1700000000100
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 1234.5 1700000000000
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 5.36870912e+08 1700000000000
# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE resource_scrape_error gauge
resource_scrape_error 0
"#;

    #[test]
    fn a_kubelet_scrape_decodes_into_node_and_container_points() {
        let batch = decode(SCRAPE, 42, "node-a").unwrap();
        assert_eq!(
            batch.nodes["node-a"],
            Point {
                start: 0,
                timestamp: 1_700_000_000_000_000_000,
                cpu: 1_234_500_000_000,
                memory: 536_870_912,
                swap: None
            }
        );
        let web = &batch.pods[&PodRef { namespace: "default".into(), name: "web-1".into() }];
        assert_eq!(
            web["app"],
            Point {
                start: 1_699_999_900_000_000_000,
                timestamp: 1_700_000_000_123_000_000,
                cpu: 12_345_678_901,
                memory: 67_108_864,
                swap: None
            }
        );
        assert_eq!(web["side\"car"].memory, 1_048_576);
        // pg-0 has no memory sample: incomplete, dropped.
        assert_eq!(batch.pods.len(), 1);
    }

    #[test]
    fn samples_without_a_timestamp_take_the_request_time() {
        let text = "node_cpu_usage_seconds_total 10\nnode_memory_working_set_bytes 2048\n";
        let batch = decode(text, 7_000_000, "n").unwrap();
        assert_eq!(batch.nodes["n"].timestamp, 7_000_000);
    }

    #[test]
    fn the_cpu_samples_time_is_the_points_time() {
        let text = "node_memory_working_set_bytes 2048 5000\nnode_cpu_usage_seconds_total 10 4000\n";
        assert_eq!(decode(text, 0, "n").unwrap().nodes["n"].timestamp, 4_000_000_000);
        let text = "node_cpu_usage_seconds_total 10 4000\nnode_memory_working_set_bytes 2048 5000\n";
        assert_eq!(decode(text, 0, "n").unwrap().nodes["n"].timestamp, 4_000_000_000);
    }

    #[test]
    fn a_node_without_memory_has_no_point() {
        let batch = decode("node_cpu_usage_seconds_total 10 1000\n", 0, "n").unwrap();
        assert!(batch.nodes.is_empty());
    }

    #[test]
    fn malformed_lines_are_errors_with_their_line_number() {
        let err = decode("# ok\nnode_cpu_usage_seconds_total{a=\"b\" 1\n", 0, "n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(decode("node_cpu_usage_seconds_total 1 notatime\n", 0, "n").is_err());
        assert!(decode("{a=\"b\"} 1\n", 0, "n").is_err());
    }

    #[test]
    fn numbers_scale_exactly() {
        assert_eq!(scaled("12.345678901", 9), Some(12_345_678_901));
        assert_eq!(scaled("1.5e+03", 9), Some(1_500_000_000_000));
        assert_eq!(scaled("5.36870912e+08", 0), Some(536_870_912));
        assert_eq!(scaled("0.0000000019", 9), Some(1), "truncated past a nanosecond");
        assert_eq!(scaled("3", 0), Some(3));
        assert_eq!(scaled("+7", 0), Some(7));
        assert_eq!(scaled("2.5E-1", 1), Some(2));
        assert_eq!(scaled("NaN", 0), None);
        assert_eq!(scaled("+Inf", 0), None);
        assert_eq!(scaled("-1", 0), None);
        assert_eq!(scaled("", 0), None);
        assert_eq!(scaled(".", 0), None);
        assert_eq!(scaled("1e400", 0), None);
    }
}
