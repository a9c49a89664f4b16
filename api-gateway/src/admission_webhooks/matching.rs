//! Which webhooks a request concerns, as kube's `rules.Matcher`, namespace and object matchers
//! and `ShouldCallHook` decide: a rule's operations, API groups, versions, resources (with
//! `*`, `*/*`, `pods/status`, `pods/*`) and scope; `matchPolicy: Equivalent` (here: any version
//! of the same group and resource); the `namespaceSelector` (the namespace's labels, or for a
//! namespace being created or updated its own) and the `objectSelector` (the new or the old
//! object's labels).

use std::collections::BTreeMap;

use actors::admission::{Attributes, Operation};
use actors::{kinds, ApiError, ApiResult, Get, KindActors};
use serde_json::Value;

/// One entry of a webhook's `rules`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub operations: Vec<String>,
    pub api_groups: Vec<String>,
    pub api_versions: Vec<String>,
    /// `configmaps`, `pods/status`, `*`, `*/*`, `*/scale`.
    pub resources: Vec<String>,
    /// `Cluster`, `Namespaced` or `*` (the default).
    pub scope: Option<String>,
}

impl Rule {
    /// A `RuleWithOperations` as written (fields that are not lists of strings are empty).
    pub fn parse(rule: &Value) -> Rule {
        let strings = |field: &str| -> Vec<String> {
            let items = rule.get(field).and_then(Value::as_array);
            items.into_iter().flatten().filter_map(Value::as_str).map(String::from).collect()
        };
        Rule {
            operations: strings("operations"),
            api_groups: strings("apiGroups"),
            api_versions: strings("apiVersions"),
            resources: strings("resources"),
            scope: rule.get("scope").and_then(Value::as_str).map(String::from),
        }
    }

    /// Whether the rule covers the request; with `any_version` (`matchPolicy: Equivalent`) the
    /// version the request is served in does not count.
    pub fn matches(&self, attrs: &Attributes, any_version: bool) -> bool {
        self.scope_matches(attrs)
            && self.operations.iter().any(|op| op == "*" || op == attrs.operation.as_str())
            && exact_or_wildcard(&self.api_groups, attrs.kind.group)
            && (any_version || exact_or_wildcard(&self.api_versions, attrs.kind.version))
            && self.resource_matches(attrs.kind.resource, attrs.subresource.unwrap_or(""))
    }

    /// kube's scope check: namespaces count as cluster-scoped.
    fn scope_matches(&self, attrs: &Attributes) -> bool {
        let namespaced = !is_namespaces(attrs) && attrs.namespace.as_deref().is_some_and(|ns| !ns.is_empty());
        match self.scope.as_deref() {
            None | Some("*") => true,
            Some("Namespaced") => namespaced,
            Some("Cluster") => !namespaced,
            Some(_) => false,
        }
    }

    fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        self.resources.iter().any(|entry| {
            let (res, sub) = entry.split_once('/').unwrap_or((entry, ""));
            (res == "*" || res == resource) && (sub == "*" || sub == subresource)
        })
    }
}

fn exact_or_wildcard(items: &[String], requested: &str) -> bool {
    items.iter().any(|item| item == "*" || item == requested)
}

/// Whether the request is about the core `namespaces` resource.
pub fn is_namespaces(attrs: &Attributes) -> bool {
    attrs.kind.group.is_empty() && attrs.kind.resource == "namespaces"
}

/// Requests no webhook is called for (kube's `IsExemptAdmissionConfigurationResource`): the
/// admission configurations themselves, so a broken webhook can always be removed.
pub fn exempt(attrs: &Attributes) -> bool {
    attrs.kind.group == "admissionregistration.k8s.io"
        && matches!(
            attrs.kind.kind,
            "ValidatingWebhookConfiguration"
                | "MutatingWebhookConfiguration"
                | "ValidatingAdmissionPolicy"
                | "ValidatingAdmissionPolicyBinding"
                | "MutatingAdmissionPolicy"
                | "MutatingAdmissionPolicyBinding"
        )
}

/// A `metav1.LabelSelector`, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl LabelSelector {
    /// `matchLabels` and `matchExpressions` as kube's `LabelSelectorAsSelector` reads them;
    /// `Err` in its words for an unknown operator or values that do not fit it. Absent or
    /// `null`: the empty selector, which selects everything.
    pub fn parse(selector: Option<&Value>) -> Result<LabelSelector, String> {
        let Some(selector) = selector.filter(|s| !s.is_null()) else { return Ok(LabelSelector::default()) };
        let mut requirements = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (key, value) in labels {
                let value = value.as_str().ok_or_else(|| format!("matchLabels[{key}] must be a string"))?;
                requirements.push(Requirement::In(key.clone(), vec![value.to_string()]));
            }
        }
        for expr in selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
            let key = expr.get("key").and_then(Value::as_str).unwrap_or("").to_string();
            let values: Vec<String> = expr
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect();
            let operator = expr.get("operator").and_then(Value::as_str).unwrap_or("");
            let requirement = match operator {
                "In" | "NotIn" if values.is_empty() => {
                    return Err("for 'in', 'notin' operators, values set can't be empty".into())
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err("values set must be empty for exists and does not exist".into())
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => return Err(format!("{other:?} is not a valid label selector operator")),
            };
            requirements.push(requirement);
        }
        Ok(LabelSelector { requirements })
    }

    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        })
    }
}

/// An object's `metadata.labels` (values that are not strings left out).
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
    labels.into_iter().flatten().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()
}

/// kube's object matcher: the empty selector selects every request, another one a request
/// whose new or old object it selects.
pub fn object_selected(selector: &LabelSelector, obj: Option<&Value>, old: Option<&Value>) -> bool {
    selector.is_empty() || [obj, old].into_iter().flatten().any(|o| selector.matches(&labels_of(o)))
}

/// The labels a `namespaceSelector` is matched against, looked up at most once per request.
#[derive(Default)]
pub struct NamespaceLabels {
    found: Option<ApiResult<BTreeMap<String, String>>>,
}

impl NamespaceLabels {
    /// Whether `selector` selects the request's namespace. Requests for cluster-scoped
    /// objects other than namespaces are always selected; a namespace created or updated
    /// is matched by its own new labels; other requests by their namespace's labels as
    /// stored (404 if it does not exist, as kube).
    pub async fn selected(
        &mut self,
        selector: &LabelSelector,
        actors: &KindActors,
        attrs: &Attributes,
        obj: Option<&Value>,
    ) -> ApiResult<bool> {
        let namespaces = is_namespaces(attrs);
        let namespace = if namespaces { Some(attrs.name.as_str()) } else { attrs.namespace.as_deref() };
        let namespace = namespace.filter(|n| !n.is_empty());
        if selector.is_empty() || (namespace.is_none() && !namespaces) {
            return Ok(true);
        }
        let own = namespaces
            && attrs.subresource.is_none()
            && matches!(attrs.operation, Operation::Create | Operation::Update);
        if let (true, Some(obj)) = (own, obj) {
            return Ok(selector.matches(&labels_of(obj)));
        }
        let name = namespace.unwrap_or_default();
        if self.found.is_none() {
            self.found = Some(read_namespace_labels(actors, name).await);
        }
        match &self.found {
            Some(Ok(labels)) => Ok(selector.matches(labels)),
            Some(Err(e)) => Err(e.clone()),
            None => Ok(false),
        }
    }
}

async fn read_namespace_labels(actors: &KindActors, name: &str) -> ApiResult<BTreeMap<String, String>> {
    let kind = kinds::find("", "v1", "namespaces")
        .ok_or_else(|| ApiError::InternalError("Internal error occurred: namespaces are not served".into()))?;
    let actor = actors
        .get(kind)
        .ok_or_else(|| ApiError::InternalError("Internal error occurred: no actor serves namespaces".into()))?;
    let namespace = actor
        .send(Get { namespace: None, name: name.to_string() })
        .await
        .map_err(|e| ApiError::InternalError(format!("Internal error occurred: reading namespace {name}: {e}")))??;
    Ok(labels_of(&namespace))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use actors::UserInfo;
    use serde_json::json;

    fn attrs(group: &str, version: &str, resource: &str, sub: Option<&'static str>, op: Operation) -> Attributes {
        let kind = kinds::find(group, version, resource).unwrap();
        let namespace = kind.namespaced.then(|| "default".to_string());
        Attributes {
            kind,
            subresource: sub,
            operation: op,
            namespace,
            name: "x".into(),
            user: UserInfo::default(),
            dry_run: false,
        }
    }

    fn rule(v: Value) -> Rule {
        Rule::parse(&v)
    }

    #[test]
    fn rules_match_operations_groups_versions_and_resources_with_wildcards() {
        let cm = attrs("", "v1", "configmaps", None, Operation::Create);
        let exact = rule(
            json!({"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}),
        );
        assert!(exact.matches(&cm, false));
        let update = attrs("", "v1", "configmaps", None, Operation::Update);
        assert!(!exact.matches(&update, false));
        let all = rule(json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}));
        assert!(all.matches(&update, false));
        let deploy = attrs("apps", "v1", "deployments", None, Operation::Create);
        assert!(!exact.matches(&deploy, false));
        assert!(all.matches(&deploy, false));
    }

    #[test]
    fn subresources_match_only_rules_that_name_them() {
        let status = attrs("", "v1", "pods", Some("status"), Operation::Update);
        let base = json!({"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"]});
        let with = |resources: Value| {
            let mut r = base.clone();
            r["resources"] = resources;
            rule(r)
        };
        assert!(!with(json!(["pods"])).matches(&status, false));
        assert!(!with(json!(["*"])).matches(&status, false));
        assert!(with(json!(["pods/status"])).matches(&status, false));
        assert!(with(json!(["pods/*"])).matches(&status, false));
        assert!(with(json!(["*/*"])).matches(&status, false));
        assert!(with(json!(["*/status"])).matches(&status, false));
        assert!(!with(json!(["pods/log"])).matches(&status, false));
        let pod = attrs("", "v1", "pods", None, Operation::Update);
        assert!(with(json!(["pods/*"])).matches(&pod, false), "pods/* covers the pod itself");
        assert!(with(json!(["*/*"])).matches(&pod, false));
    }

    #[test]
    fn scopes_treat_namespaces_as_cluster_scoped() {
        let base = json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]});
        let scoped = |scope: &str| {
            let mut r = base.clone();
            r["scope"] = json!(scope);
            rule(r)
        };
        let cm = attrs("", "v1", "configmaps", None, Operation::Create);
        let ns = attrs("", "v1", "namespaces", None, Operation::Create);
        let node = attrs("", "v1", "nodes", None, Operation::Create);
        assert!(scoped("Namespaced").matches(&cm, false));
        assert!(!scoped("Namespaced").matches(&ns, false));
        assert!(!scoped("Namespaced").matches(&node, false));
        assert!(!scoped("Cluster").matches(&cm, false));
        assert!(scoped("Cluster").matches(&ns, false));
        assert!(scoped("Cluster").matches(&node, false));
        assert!(scoped("*").matches(&node, false));
        assert!(!scoped("Elsewhere").matches(&node, false));
    }

    #[test]
    fn equivalent_match_policy_ignores_the_rules_version() {
        let deploy = attrs("apps", "v1", "deployments", None, Operation::Create);
        let beta = rule(
            json!({"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1beta1"], "resources": ["deployments"]}),
        );
        assert!(!beta.matches(&deploy, false));
        assert!(beta.matches(&deploy, true));
        let other_group = rule(
            json!({"operations": ["CREATE"], "apiGroups": ["extensions"], "apiVersions": ["v1beta1"], "resources": ["deployments"]}),
        );
        assert!(!other_group.matches(&deploy, true));
    }

    #[test]
    fn label_selectors_select_as_kube_does() {
        let labels: BTreeMap<String, String> =
            [("env", "prod"), ("team", "a")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let select = |s: Value| LabelSelector::parse(Some(&s)).unwrap().matches(&labels);
        assert!(select(json!({})));
        assert!(select(json!({"matchLabels": {"env": "prod"}})));
        assert!(!select(json!({"matchLabels": {"env": "dev"}})));
        assert!(select(json!({"matchExpressions": [{"key": "env", "operator": "In", "values": ["dev", "prod"]}]})));
        assert!(!select(json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]})));
        assert!(select(json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]})));
        assert!(select(json!({"matchExpressions": [{"key": "team", "operator": "Exists"}]})));
        assert!(!select(json!({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]})));
        assert!(LabelSelector::parse(None).unwrap().is_empty());
        assert_eq!(
            LabelSelector::parse(Some(&json!({"matchExpressions": [{"key": "a", "operator": "Near"}]}))).unwrap_err(),
            r#""Near" is not a valid label selector operator"#
        );
        assert!(LabelSelector::parse(Some(&json!({"matchExpressions": [{"key": "a", "operator": "In"}]}))).is_err());
    }

    #[test]
    fn object_selectors_look_at_the_new_and_the_old_object() {
        let selector = LabelSelector::parse(Some(&json!({"matchLabels": {"watched": "yes"}}))).unwrap();
        let with = json!({"metadata": {"labels": {"watched": "yes"}}});
        let without = json!({"metadata": {}});
        assert!(object_selected(&selector, Some(&with), None));
        assert!(object_selected(&selector, Some(&without), Some(&with)), "the label being removed");
        assert!(!object_selected(&selector, Some(&without), None));
        assert!(!object_selected(&selector, None, None));
        assert!(object_selected(&LabelSelector::default(), None, None));
    }

    #[actix_rt::test]
    async fn namespace_selectors_read_a_namespace_s_own_labels_when_it_is_written() {
        let selector = LabelSelector::parse(Some(&json!({"matchLabels": {"hooked": "yes"}}))).unwrap();
        let actors = KindActors::default();
        let mut labels = NamespaceLabels::default();
        let ns = attrs("", "v1", "namespaces", None, Operation::Create);
        let obj = json!({"metadata": {"name": "x", "labels": {"hooked": "yes"}}});
        assert!(labels.selected(&selector, &actors, &ns, Some(&obj)).await.unwrap());
        let plain = json!({"metadata": {"name": "x"}});
        assert!(!labels.selected(&selector, &actors, &ns, Some(&plain)).await.unwrap());
        // Cluster-scoped objects other than namespaces are always selected.
        let node = attrs("", "v1", "nodes", None, Operation::Create);
        assert!(labels.selected(&selector, &actors, &node, Some(&plain)).await.unwrap());
        // A namespaced object with no namespace actors to ask: the failure is the answer.
        let cm = attrs("", "v1", "configmaps", None, Operation::Create);
        assert_eq!(labels.selected(&selector, &actors, &cm, Some(&plain)).await.unwrap_err().code(), 500);
    }

    #[test]
    fn the_admission_configurations_are_exempt() {
        let config =
            attrs("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", None, Operation::Create);
        assert!(exempt(&config));
        assert!(!exempt(&attrs("", "v1", "configmaps", None, Operation::Create)));
    }
}
