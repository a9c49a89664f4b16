//! The scheduler's configuration file, kube's `KubeSchedulerConfiguration`
//! (`kubescheduler.config.k8s.io/v1`, YAML or JSON): the profiles (each a `schedulerName`
//! the scheduler serves; every profile is the default plugin set) and the extenders
//! (HTTP webhooks that filter, prioritize or bind, see [`super::extender`]). Other fields
//! are accepted and ignored. `flotilla up --scheduler-config FILE` [`install`]s it before
//! the controllers start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::Value;

use super::SCHEDULER_NAME;

/// kube's `DefaultExtenderTimeout`.
pub const DEFAULT_EXTENDER_TIMEOUT: Duration = Duration::from_secs(5);
const API_VERSION: &str = "kubescheduler.config.k8s.io/v1";

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is not YAML (or JSON).
    #[error("decoding the scheduler configuration: {0}")]
    Decode(String),
    /// A field has a value kube-scheduler refuses.
    #[error("invalid scheduler configuration: {0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, ConfigError>;

/// One extender (kube's `Extender`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtenderConfig {
    /// `http://host:port/prefix`: verbs are POSTed to `{urlPrefix}/{verb}`.
    pub url_prefix: String,
    pub filter_verb: Option<String>,
    pub prioritize_verb: Option<String>,
    pub bind_verb: Option<String>,
    /// What its priorities are multiplied by (positive).
    pub weight: i64,
    /// Sent node names only (it caches the nodes) rather than whole Node objects.
    pub node_cache_capable: bool,
    /// Its failures are skipped rather than failing the pod's scheduling.
    pub ignorable: bool,
    pub http_timeout: Duration,
    /// `managedResources[].name`: when given, only pods asking for one of them are sent.
    pub managed_resources: Vec<String>,
}

/// The scheduler's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// The `schedulerName`s served (events name the pod's).
    pub profiles: Vec<&'static str>,
    pub extenders: Vec<ExtenderConfig>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { profiles: vec![SCHEDULER_NAME], extenders: Vec::new() }
    }
}

impl SchedulerConfig {
    /// The profile name serving pods of `scheduler_name` (absent: the default name).
    pub fn profile(&self, scheduler_name: Option<&str>) -> Option<&'static str> {
        let wanted = scheduler_name.unwrap_or(SCHEDULER_NAME);
        self.profiles.iter().copied().find(|p| *p == wanted)
    }

    /// Parses a `KubeSchedulerConfiguration` document.
    pub fn parse(text: &str) -> Result<SchedulerConfig> {
        let doc: Value = serde_yaml::from_str(text).map_err(|e| ConfigError::Decode(e.to_string()))?;
        let invalid = |why: String| ConfigError::Invalid(why);
        let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
        if api_version != API_VERSION || kind != "KubeSchedulerConfiguration" {
            return Err(invalid(format!(
                "apiVersion {api_version:?} kind {kind:?}: want {API_VERSION:?} KubeSchedulerConfiguration"
            )));
        }
        let mut profiles: Vec<&'static str> = Vec::new();
        for (i, profile) in items(&doc, "profiles").iter().enumerate() {
            let name = match profile.get("schedulerName").and_then(Value::as_str) {
                None | Some("") => SCHEDULER_NAME,
                Some(name) => name,
            };
            if profiles.contains(&name) {
                return Err(invalid(format!("profiles[{i}].schedulerName: Duplicate value: {name:?}")));
            }
            profiles.push(intern(name));
        }
        if profiles.is_empty() {
            profiles.push(SCHEDULER_NAME);
        }
        let extenders =
            items(&doc, "extenders").iter().enumerate().map(|(i, e)| extender(i, e)).collect::<Result<Vec<_>>>()?;
        if extenders.iter().filter(|e| e.bind_verb.is_some()).count() > 1 {
            return Err(invalid("extenders: Invalid value: only one extender can implement bind".into()));
        }
        Ok(SchedulerConfig { profiles, extenders })
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<SchedulerConfig> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        SchedulerConfig::parse(&text)
    }
}

fn items<'a>(doc: &'a Value, field: &str) -> &'a [Value] {
    doc.get(field).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// A profile name for the life of the process (events name their source by it).
fn intern(name: &str) -> &'static str {
    if name == SCHEDULER_NAME {
        return SCHEDULER_NAME;
    }
    Box::leak(name.to_string().into_boxed_str())
}

fn extender(i: usize, e: &Value) -> Result<ExtenderConfig> {
    let field = |name: &str| e.get(name).and_then(Value::as_str).filter(|v| !v.is_empty()).map(String::from);
    let flag = |name: &str| e.get(name).and_then(Value::as_bool).unwrap_or(false);
    let invalid = |why: String| ConfigError::Invalid(format!("extenders[{i}].{why}"));
    let url_prefix = field("urlPrefix").ok_or_else(|| invalid("urlPrefix: Required value".into()))?;
    if flag("enableHTTPS") || !url_prefix.starts_with("http://") {
        return Err(invalid(format!("urlPrefix: Unsupported value: {url_prefix:?}: only plain http:// extenders")));
    }
    let prioritize_verb = field("prioritizeVerb");
    let weight = e.get("weight").and_then(Value::as_i64).unwrap_or(0);
    if prioritize_verb.is_some() && weight <= 0 {
        return Err(invalid(format!("weight: Invalid value: {weight}: must have a positive weight applied to it")));
    }
    let http_timeout = match e.get("httpTimeout") {
        None | Some(Value::Null) => DEFAULT_EXTENDER_TIMEOUT,
        Some(Value::String(s)) => {
            go_duration(s).ok_or_else(|| invalid(format!("httpTimeout: Invalid value: {s:?}")))?
        }
        Some(other) => return Err(invalid(format!("httpTimeout: Invalid value: {other}"))),
    };
    let http_timeout = if http_timeout.is_zero() { DEFAULT_EXTENDER_TIMEOUT } else { http_timeout };
    let managed_resources = items(e, "managedResources")
        .iter()
        .filter_map(|r| r.get("name").and_then(Value::as_str).map(String::from))
        .collect();
    Ok(ExtenderConfig {
        url_prefix: url_prefix.trim_end_matches('/').to_string(),
        filter_verb: field("filterVerb"),
        prioritize_verb,
        bind_verb: field("bindVerb"),
        weight,
        node_cache_capable: flag("nodeCacheCapable"),
        ignorable: flag("ignorable"),
        http_timeout,
        managed_resources,
    })
}

/// A Go duration (`300ms`, `5s`, `1m30s`, `1.5h`); `None` if it is not one.
pub fn go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).ok()
}

static INSTALLED: OnceLock<Arc<SchedulerConfig>> = OnceLock::new();

/// Makes `config` the one [`super::Scheduler::default`] uses in this process (the first
/// call wins; returns whether it did).
pub fn install(config: SchedulerConfig) -> bool {
    INSTALLED.set(Arc::new(config)).is_ok()
}

/// The installed configuration, or the default one.
pub fn installed() -> Arc<SchedulerConfig> {
    INSTALLED.get().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_with_profiles_and_extenders_parses() {
        let config = SchedulerConfig::parse(
            "apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
- schedulerName: second-scheduler
extenders:
- urlPrefix: http://127.0.0.1:8888/scheduler/
  filterVerb: filter
  prioritizeVerb: prioritize
  weight: 2
  nodeCacheCapable: true
  ignorable: true
  httpTimeout: 1.5s
  managedResources:
  - name: example.com/gpu
    ignoredByScheduler: true
",
        )
        .unwrap();
        assert_eq!(config.profiles, ["default-scheduler", "second-scheduler"]);
        assert_eq!(config.profile(None), Some("default-scheduler"));
        assert_eq!(config.profile(Some("second-scheduler")), Some("second-scheduler"));
        assert_eq!(config.profile(Some("other")), None);
        let e = &config.extenders[0];
        assert_eq!(e.url_prefix, "http://127.0.0.1:8888/scheduler");
        assert_eq!(
            (e.filter_verb.as_deref(), e.prioritize_verb.as_deref(), e.bind_verb.as_deref()),
            (Some("filter"), Some("prioritize"), None)
        );
        assert_eq!((e.weight, e.node_cache_capable, e.ignorable), (2, true, true));
        assert_eq!(e.http_timeout, Duration::from_millis(1500));
        assert_eq!(e.managed_resources, ["example.com/gpu"]);
    }

    #[test]
    fn defaults_and_refusals_are_kubes() {
        let minimal = "{apiVersion: kubescheduler.config.k8s.io/v1, kind: KubeSchedulerConfiguration}";
        assert_eq!(SchedulerConfig::parse(minimal).unwrap(), SchedulerConfig::default());
        let head = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n";
        let refused = |body: &str| SchedulerConfig::parse(&format!("{head}{body}")).unwrap_err().to_string();
        assert!(refused("extenders: [{urlPrefix: 'http://x', prioritizeVerb: p}]").contains("positive weight"));
        assert!(refused("extenders: [{urlPrefix: 'https://x'}]").contains("only plain http://"));
        assert!(refused("extenders: [{filterVerb: f}]").contains("urlPrefix: Required value"));
        let two_binders = "extenders: [{urlPrefix: 'http://a', bindVerb: b}, {urlPrefix: 'http://b', bindVerb: b}]";
        assert!(refused(two_binders).contains("only one extender can implement bind"));
        assert!(refused("profiles: [{schedulerName: a}, {schedulerName: a}]").contains("Duplicate"));
        assert!(SchedulerConfig::parse("apiVersion: v1\nkind: Pod\n").is_err());
        assert!(SchedulerConfig::parse(": : :\n  - [").is_err());
        assert_eq!(go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(go_duration("5"), None);
        assert_eq!(go_duration("5x"), None);
    }
}
