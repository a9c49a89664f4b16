//! The webhooks of Mutating- and ValidatingWebhookConfigurations, read with kube's v1
//! defaults (`failurePolicy: Fail`, `matchPolicy: Equivalent`, `timeoutSeconds: 10`,
//! `reinvocationPolicy: Never`, empty selectors) into [`Webhook`]s, and [`Snapshot`]: all of
//! them in kube's order (configurations by name, then webhooks as listed).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::conditions::MatchCondition;
use super::matching::{LabelSelector, Rule};
use crate::webhook_client::{self, ClientConfig};

/// Which plugin calls a webhook; also the `type` of its metrics, in kube's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookType {
    Mutating,
    Validating,
}

impl HookType {
    /// `admit` or `validating`, as kube's webhook metrics label them.
    pub fn label(self) -> &'static str {
        match self {
            HookType::Mutating => "admit",
            HookType::Validating => "validating",
        }
    }
}

/// `failurePolicy`: what a webhook that cannot be called (or answers nonsense) does to the
/// request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    Fail,
    Ignore,
}

/// One webhook of a configuration, ready to match and call.
#[derive(Debug)]
pub struct Webhook {
    pub name: String,
    /// The configuration it is in.
    pub configuration: String,
    pub hook_type: HookType,
    /// The parsed `clientConfig`, or why it cannot be used (a failure of each call).
    pub client: Result<Arc<ClientConfig>, String>,
    pub rules: Vec<Rule>,
    pub failure_policy: FailurePolicy,
    /// `matchPolicy: Equivalent` (the default): a rule naming another version of the same
    /// group and resource matches too.
    pub equivalent: bool,
    /// Parsed `namespaceSelector`, or why it does not parse (a 500 when the rules match).
    pub namespace_selector: Result<LabelSelector, String>,
    pub object_selector: Result<LabelSelector, String>,
    /// `None`, `NoneOnDryRun`, ...; absent: `None` here means not given.
    pub side_effects: Option<String>,
    pub timeout: Duration,
    pub review_versions: Vec<String>,
    /// `reinvocationPolicy: IfNeeded` (mutating webhooks).
    pub reinvoke: bool,
    pub match_conditions: Vec<MatchCondition>,
}

impl Webhook {
    /// Webhook `hook` of configuration `configuration`, of `hook_type`.
    pub fn parse(configuration: &str, hook_type: HookType, hook: &Value) -> Webhook {
        let text = |f: &str| hook.get(f).and_then(Value::as_str);
        let list = |f: &str| hook.get(f).and_then(Value::as_array).cloned().unwrap_or_default();
        let client = match hook.get("clientConfig") {
            Some(config) => ClientConfig::parse(config).map(Arc::new).map_err(|e| e.to_string()),
            None => Err("clientConfig is required".to_string()),
        };
        let review_versions: Vec<String> =
            list("admissionReviewVersions").iter().filter_map(Value::as_str).map(String::from).collect();
        Webhook {
            name: text("name").unwrap_or("").to_string(),
            configuration: configuration.to_string(),
            hook_type,
            client,
            rules: list("rules").iter().map(Rule::parse).collect(),
            failure_policy: match text("failurePolicy") {
                Some("Ignore") => FailurePolicy::Ignore,
                _ => FailurePolicy::Fail,
            },
            equivalent: text("matchPolicy") != Some("Exact"),
            namespace_selector: LabelSelector::parse(hook.get("namespaceSelector")),
            object_selector: LabelSelector::parse(hook.get("objectSelector")),
            side_effects: text("sideEffects").map(String::from),
            timeout: webhook_client::timeout(hook.get("timeoutSeconds").and_then(Value::as_i64)),
            review_versions: if review_versions.is_empty() { vec!["v1".to_string()] } else { review_versions },
            reinvoke: hook_type == HookType::Mutating && text("reinvocationPolicy") == Some("IfNeeded"),
            match_conditions: list("matchConditions").iter().map(MatchCondition::parse).collect(),
        }
    }
}

/// The webhooks of one configuration object, in order.
pub fn webhooks_of(hook_type: HookType, config: &Value) -> Vec<Arc<Webhook>> {
    let name = config.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let hooks = config.get("webhooks").and_then(Value::as_array);
    hooks.into_iter().flatten().map(|hook| Arc::new(Webhook::parse(name, hook_type, hook))).collect()
}

/// Every webhook, in the order kube calls them.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Both kinds have been listed (until then requests wait).
    pub synced: bool,
    pub mutating: Vec<Arc<Webhook>>,
    pub validating: Vec<Arc<Webhook>>,
}

impl Snapshot {
    /// The webhooks of `mutating` and `validating` configuration objects (any order).
    pub fn of(mutating: &[Value], validating: &[Value]) -> Snapshot {
        let ordered = |hook_type, configs: &[Value]| {
            let mut configs: Vec<&Value> = configs.iter().collect();
            configs.sort_by_key(|c| c.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string());
            configs.into_iter().flat_map(|c| webhooks_of(hook_type, c)).collect()
        };
        Snapshot {
            synced: true,
            mutating: ordered(HookType::Mutating, mutating),
            validating: ordered(HookType::Validating, validating),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn webhooks_get_kubes_v1_defaults() {
        let config = json!({"metadata": {"name": "c"}, "webhooks": [{
            "name": "a.example.com", "clientConfig": {"url": "https://127.0.0.1:9443/a"},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "sideEffects": "None", "admissionReviewVersions": ["v1"]}]});
        let hooks = webhooks_of(HookType::Mutating, &config);
        let hook = &hooks[0];
        assert_eq!((hook.name.as_str(), hook.configuration.as_str()), ("a.example.com", "c"));
        assert_eq!(hook.failure_policy, FailurePolicy::Fail);
        assert!(hook.equivalent);
        assert_eq!(hook.timeout, Duration::from_secs(10));
        assert!(!hook.reinvoke);
        assert!(hook.namespace_selector.as_ref().unwrap().is_empty());
        assert!(hook.client.is_ok());
        assert_eq!(hook.rules[0].resources, vec!["configmaps".to_string()]);
    }

    #[test]
    fn settings_are_read_and_timeouts_capped() {
        let hook = Webhook::parse(
            "c",
            HookType::Mutating,
            &json!({"name": "b", "failurePolicy": "Ignore", "matchPolicy": "Exact", "timeoutSeconds": 99,
                    "reinvocationPolicy": "IfNeeded", "clientConfig": {"url": "http://insecure/"},
                    "objectSelector": {"matchExpressions": [{"key": "a", "operator": "Bad"}]},
                    "matchConditions": [{"name": "m", "expression": "true"}]}),
        );
        assert_eq!(hook.failure_policy, FailurePolicy::Ignore);
        assert!(!hook.equivalent);
        assert_eq!(hook.timeout, Duration::from_secs(30));
        assert!(hook.reinvoke);
        assert!(hook.client.unwrap_err().contains("the scheme must be https"));
        assert!(hook.object_selector.is_err());
        assert_eq!(hook.match_conditions.len(), 1);
    }

    #[test]
    fn a_snapshot_orders_configurations_by_name() {
        let config = |name: &str, hooks: &[&str]| {
            let hooks: Vec<Value> = hooks.iter().map(|h| json!({"name": h})).collect();
            json!({"metadata": {"name": name}, "webhooks": hooks})
        };
        let snapshot = Snapshot::of(&[config("z", &["z1"]), config("a", &["a2", "a1"])], &[config("v", &["v1"])]);
        let names: Vec<&str> = snapshot.mutating.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["a2", "a1", "z1"]);
        assert_eq!(snapshot.validating[0].hook_type, HookType::Validating);
        assert!(!snapshot.validating[0].reinvoke);
    }
}
