//! Calling the webhooks of a request, as kube's mutating and validating dispatchers do.
//!
//! Mutating webhooks run one after another, each on the object as the previous one left it.
//! When one changes the object, the `reinvocationPolicy: IfNeeded` webhooks called before it
//! are called once more (after the others), at most once each. Validating webhooks run all at
//! once; the first refusal (in configuration order) is the answer. A webhook that cannot be
//! called or answers nonsense refuses the request with a 500 (`failurePolicy: Fail`) or is
//! skipped (`Ignore`); a refusal carries the webhook's status. Nothing here holds a lock
//! while it waits, and a request only ever waits on webhooks whose rules name it.
//!
//! Metrics: `flotilla_admission_webhook_latency_seconds{name,type,rejected}` (histogram) per
//! call, `flotilla_admission_webhook_rejection_count{name,type,reason}` per refusal, with
//! kube's reasons `no_error` (the webhook said no), `calling_webhook_error` and
//! `apiserver_internal_error`.

use std::collections::BTreeSet;
use std::time::Instant;

use actors::admission::Attributes;
use actors::{ApiError, ApiResult, KindActors, Subject};
use serde_json::Value;

use super::conditions::{self, Outcome};
use super::config::{FailurePolicy, HookType, Snapshot, Webhook};
use super::matching::{object_selected, NamespaceLabels};
use super::review::{self, Response};
use crate::webhook_client;

/// Why a call did not admit the request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// kube's `ErrCallingWebhook`: the webhook could not be called or its answer is not
    /// valid; `failurePolicy` decides. The text completes `failed calling webhook "<name>": `.
    #[error("{0}")]
    Calling(String),
    /// The webhook refused the request (its status, as kube's `ToStatusErr` makes it).
    #[error("{0}")]
    Rejected(ApiError),
    /// Anything else refuses the request whatever the policy: a patch that does not apply, a
    /// webhook with side effects on a dry run, a selector or condition that fails.
    #[error("{0}")]
    Internal(ApiError),
}

impl CallError {
    /// The metrics' `reason` of a refusal.
    fn reason(&self) -> &'static str {
        match self {
            CallError::Calling(_) => "calling_webhook_error",
            CallError::Rejected(_) => "no_error",
            CallError::Internal(_) => "apiserver_internal_error",
        }
    }
}

/// The request's error for a failed call of `hook`, or `None` when its policy ignores it.
fn refusal(hook: &Webhook, attrs: &Attributes, e: CallError) -> Option<ApiError> {
    match e {
        CallError::Calling(why) if hook.failure_policy == FailurePolicy::Ignore => {
            tracing::warn!(webhook = hook.name, resource = attrs.kind.resource, error = %why, "failed calling webhook, failing open");
            None
        }
        CallError::Calling(why) => {
            tracing::warn!(webhook = hook.name, resource = attrs.kind.resource, error = %why, "failed calling webhook, failing closed");
            Some(ApiError::InternalError(format!(
                "Internal error occurred: failed calling webhook {:?}: {why}",
                hook.name
            )))
        }
        CallError::Rejected(e) | CallError::Internal(e) => Some(e),
    }
}

/// Records a call's metrics: its latency, and whether (and why) it refused the request.
fn observe(hook: &Webhook, started: Instant, result: &Result<Response, CallError>) {
    let kind = hook.hook_type.label();
    let rejected = match result {
        Ok(response) if response.allowed => None,
        Ok(_) => Some("no_error"),
        Err(CallError::Calling(_)) if hook.failure_policy == FailurePolicy::Ignore => None,
        Err(e) => Some(e.reason()),
    };
    let seconds = started.elapsed().as_secs_f64();
    metrics::histogram!("flotilla_admission_webhook_latency_seconds",
        "name" => hook.name.clone(), "type" => kind, "rejected" => rejected.is_some().to_string())
    .record(seconds);
    if let Some(reason) = rejected {
        metrics::counter!("flotilla_admission_webhook_rejection_count",
            "name" => hook.name.clone(), "type" => kind, "reason" => reason)
        .increment(1);
    }
    tracing::debug!(
        webhook = hook.name,
        r#type = kind,
        seconds,
        rejected = rejected.is_some(),
        "admission webhook called"
    );
}

/// Whether `hook`'s rules cover the request (before anything else is looked at, so webhooks
/// for other resources cost a few string compares). With `matchPolicy: Equivalent`, a rule for
/// another version of the same group and resource matches too.
fn rules_match(hook: &Webhook, attrs: &Attributes) -> bool {
    hook.rules.iter().any(|r| r.matches(attrs, hook.equivalent))
}

/// Whether `hook`, whose rules match, is to be called for this request (the rest of kube's
/// `ShouldCallHook`): its selectors, then its match conditions (a failing one follows the
/// failure policy).
async fn should_call(
    hook: &Webhook,
    actors: &KindActors,
    attrs: &Attributes,
    (obj, old): (Option<&Value>, Option<&Value>),
    namespace: &mut NamespaceLabels,
    request: &Value,
) -> ApiResult<bool> {
    let internal = |e: &String| ApiError::InternalError(format!("Internal error occurred: {e}"));
    let ns_selector = hook.namespace_selector.as_ref().map_err(internal)?;
    if !namespace.selected(ns_selector, actors, attrs, obj).await? {
        return Ok(false);
    }
    let object_selector = hook.object_selector.as_ref().map_err(internal)?;
    if !object_selected(object_selector, obj, old) {
        return Ok(false);
    }
    match conditions::evaluate(&hook.match_conditions, obj, old, request) {
        Outcome::Call => Ok(true),
        Outcome::Skip(condition) => {
            tracing::debug!(webhook = hook.name, condition, "match condition false; webhook skipped");
            Ok(false)
        }
        Outcome::Error(_) if hook.failure_policy == FailurePolicy::Ignore => Ok(false),
        Outcome::Error(why) => {
            tracing::warn!(webhook = hook.name, error = %why, "failed evaluating match conditions, failing closed");
            Err(ApiError::Forbidden { subject: Subject::of(attrs.kind, attrs.name.clone()), why, causes: Vec::new() })
        }
    }
}

/// One call of `hook`: the dry-run check, the review, the answer checked (not yet acted on).
async fn call(
    hook: &Webhook,
    actors: &KindActors,
    attrs: &Attributes,
    (obj, old): (Option<&Value>, Option<&Value>),
    request: &Value,
) -> Result<Response, CallError> {
    if attrs.dry_run {
        match hook.side_effects.as_deref() {
            Some("None" | "NoneOnDryRun") => {}
            None => return Err(CallError::Calling("Webhook SideEffects is nil".into())),
            Some(_) => {
                let why = format!("admission webhook {:?} does not support dry run", hook.name);
                return Err(CallError::Internal(ApiError::BadRequest(why)));
            }
        }
    }
    let version = review::pick_version(&hook.review_versions)
        .map_err(|e| CallError::Calling(format!("could not create admission objects: {e}")))?;
    let client = hook.client.as_ref().map_err(|e| CallError::Calling(format!("could not get REST client: {e}")))?;
    let uid = request.get("uid").and_then(Value::as_str).unwrap_or("").to_string();
    let body = review::review(version, request.clone(), obj, old);
    // No lock is held here: the snapshot is an `Arc`, the client config a clone.
    let answer = webhook_client::call(client, actors, &body, hook.timeout)
        .await
        .map_err(|e| CallError::Calling(format!("failed to call webhook: {e}")))?;
    let response = review::parse_response(version, &uid, answer, hook.hook_type == HookType::Mutating)
        .map_err(|e| CallError::Calling(format!("received invalid webhook response: {e}")))?;
    for (key, value) in &response.audit_annotations {
        tracing::debug!(webhook = hook.name, key, value, "admission webhook audit annotation");
    }
    if response.allowed {
        Ok(response)
    } else {
        Err(CallError::Rejected(review::denied(attrs, &hook.name, response.status.as_ref())))
    }
}

/// Which mutating webhooks are called again, as kube's `webhookReinvokeContext`.
#[derive(Default)]
struct Reinvocation {
    /// `IfNeeded` webhooks called so far (by index in the snapshot).
    called: BTreeSet<usize>,
    /// Those to call again: the ones called before the object last changed.
    again: BTreeSet<usize>,
}

/// Runs the mutating webhooks on `obj` (`None` on DELETE: they may refuse, not change) and
/// returns their warnings.
pub async fn mutate(
    actors: &KindActors,
    snapshot: &Snapshot,
    attrs: &Attributes,
    mut obj: Option<&mut Value>,
    old: Option<&Value>,
) -> ApiResult<Vec<String>> {
    let mut warnings = Vec::new();
    let mut namespace = NamespaceLabels::default();
    let mut reinvocation = Reinvocation::default();
    for round in 0..2 {
        if round == 1 && reinvocation.again.is_empty() {
            break;
        }
        for (i, hook) in snapshot.mutating.iter().enumerate() {
            if !rules_match(hook, attrs) {
                continue;
            }
            let uid = uuid::Uuid::new_v4().to_string();
            let request = review::request(&uid, attrs);
            let current = obj.as_deref();
            if !should_call(hook, actors, attrs, (current, old), &mut namespace, &request).await? {
                continue;
            }
            // On reinvocation only the webhooks due again; none is called for the first time.
            if round == 1 && !reinvocation.again.contains(&i) {
                continue;
            }
            let started = Instant::now();
            let mut result = call(hook, actors, attrs, (current, old), &request).await;
            let mut changed = false;
            if let Ok(response) = &result {
                if let Some(patch) = &response.patch {
                    match apply(hook, obj.as_deref_mut(), patch) {
                        Ok(c) => changed = c,
                        Err(e) => result = Err(e),
                    }
                }
            }
            observe(hook, started, &result);
            if changed {
                tracing::debug!(webhook = hook.name, round, "mutating webhook changed the object");
                reinvocation.again.extend(reinvocation.called.iter().copied());
            }
            if round == 1 {
                reinvocation.again.remove(&i);
            }
            if hook.reinvoke {
                reinvocation.called.insert(i);
            }
            match result {
                Ok(response) => warnings.extend(response.warnings),
                Err(e) => {
                    if let Some(e) = refusal(hook, attrs, e) {
                        return Err(e);
                    }
                }
            }
        }
    }
    Ok(warnings)
}

/// Applies a mutating webhook's patch; whether it changed the object.
fn apply(hook: &Webhook, obj: Option<&mut Value>, patch: &[u8]) -> Result<bool, CallError> {
    let internal =
        |why: String| CallError::Internal(ApiError::InternalError(format!("Internal error occurred: {why}")));
    let Some(obj) = obj else {
        return Err(internal(format!(
            "admission webhook {:?} attempted to modify the object, which is not supported for this operation",
            hook.name
        )));
    };
    let patched = review::apply_patch(obj, patch).map_err(internal)?;
    if patched == *obj {
        return Ok(false);
    }
    *obj = patched;
    Ok(true)
}

/// Runs the validating webhooks on `obj` (`None` on DELETE, with the object as `old`), all
/// at once; the first refusal in configuration order is the answer.
pub async fn validate(
    actors: &KindActors,
    snapshot: &Snapshot,
    attrs: &Attributes,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> ApiResult<Vec<String>> {
    let mut namespace = NamespaceLabels::default();
    let mut due = Vec::new();
    for hook in snapshot.validating.iter().filter(|hook| rules_match(hook, attrs)) {
        let uid = uuid::Uuid::new_v4().to_string();
        let request = review::request(&uid, attrs);
        if should_call(hook, actors, attrs, (obj, old), &mut namespace, &request).await? {
            due.push((hook, request));
        }
    }
    let calls = due.iter().map(|(hook, request)| async move {
        let started = Instant::now();
        let result = call(hook, actors, attrs, (obj, old), request).await;
        observe(hook, started, &result);
        (hook, result)
    });
    let mut warnings = Vec::new();
    let mut first = None;
    for (hook, result) in futures::future::join_all(calls).await {
        match result {
            Ok(response) => warnings.extend(response.warnings),
            Err(e) => {
                if let Some(e) = refusal(hook, attrs, e) {
                    first.get_or_insert(e);
                }
            }
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(warnings),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use actors::admission::Operation;
    use actors::{kinds, UserInfo};
    use serde_json::json;

    fn attrs(op: Operation, dry_run: bool) -> Attributes {
        Attributes {
            kind: kinds::find("", "v1", "configmaps").unwrap(),
            subresource: None,
            operation: op,
            namespace: Some("default".into()),
            name: "cm".into(),
            user: UserInfo::default(),
            dry_run,
        }
    }

    /// A configuration of one webhook for configmaps at an address nothing listens on.
    fn unreachable(name: &str, extra: Value) -> Value {
        let mut hook = json!({"name": name, "clientConfig": {"url": "https://127.0.0.1:1/hook"},
            "rules": [{"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "sideEffects": "None", "admissionReviewVersions": ["v1"]});
        if let (Some(hook), Some(extra)) = (hook.as_object_mut(), extra.as_object()) {
            hook.extend(extra.clone());
        }
        json!({"metadata": {"name": name}, "webhooks": [hook]})
    }

    #[actix_rt::test]
    async fn an_unreachable_webhook_fails_closed_or_open_by_its_policy() {
        let actors = KindActors::default();
        let closed = Snapshot::of(&[], &[unreachable("closed.example.com", json!({}))]);
        let e = validate(&actors, &closed, &attrs(Operation::Create, false), Some(&json!({})), None).await.unwrap_err();
        assert_eq!((e.code(), e.reason()), (500, "InternalError"));
        assert!(
            e.to_string().starts_with(
                r#"Internal error occurred: failed calling webhook "closed.example.com": failed to call webhook: Post "https://127.0.0.1:1/hook": dial tcp 127.0.0.1:1: "#
            ),
            "{e}"
        );
        let open = Snapshot::of(&[unreachable("open.example.com", json!({"failurePolicy": "Ignore"}))], &[]);
        let mut obj = json!({"metadata": {"name": "cm"}});
        let warnings = mutate(&actors, &open, &attrs(Operation::Create, false), Some(&mut obj), None).await.unwrap();
        assert!(warnings.is_empty());
    }

    #[actix_rt::test]
    async fn webhooks_for_other_resources_or_other_operations_are_never_called() {
        let actors = KindActors::default();
        let secrets = unreachable(
            "secrets.example.com",
            json!({"rules": [{"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["secrets"]}]}),
        );
        let deletes = unreachable(
            "deletes.example.com",
            json!({"rules": [{"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]}),
        );
        let validating = [secrets.clone(), deletes];
        let snapshot = Snapshot::of(std::slice::from_ref(&secrets), &validating);
        let mut obj = json!({"metadata": {"name": "cm"}});
        let a = attrs(Operation::Create, false);
        assert!(mutate(&actors, &snapshot, &a, Some(&mut obj), None).await.is_ok());
        assert!(validate(&actors, &snapshot, &a, Some(&obj), None).await.is_ok());
        let e = validate(&actors, &snapshot, &attrs(Operation::Delete, false), None, Some(&obj)).await.unwrap_err();
        assert!(e.to_string().contains("deletes.example.com"), "{e}");
    }

    #[actix_rt::test]
    async fn a_dry_run_refuses_webhooks_with_side_effects_before_calling_them() {
        let actors = KindActors::default();
        let some = Snapshot::of(&[], &[unreachable("effects.example.com", json!({"sideEffects": "Some"}))]);
        let e = validate(&actors, &some, &attrs(Operation::Delete, true), None, Some(&json!({}))).await.unwrap_err();
        assert_eq!(
            (e.code(), e.to_string().as_str()),
            (400, r#"admission webhook "effects.example.com" does not support dry run"#)
        );
        let unset = Snapshot::of(
            &[],
            &[unreachable("unset.example.com", json!({"sideEffects": null, "failurePolicy": "Ignore"}))],
        );
        assert!(validate(&actors, &unset, &attrs(Operation::Delete, true), None, Some(&json!({}))).await.is_ok());
    }

    #[actix_rt::test]
    async fn failing_match_conditions_follow_the_failure_policy_and_false_ones_skip() {
        let actors = KindActors::default();
        let skip =
            unreachable("skip.example.com", json!({"matchConditions": [{"name": "never", "expression": "false"}]}));
        let broken = unreachable(
            "broken.example.com",
            json!({"matchConditions": [{"name": "b", "expression": "object.nope.x"}]}),
        );
        let obj = json!({"metadata": {"name": "cm"}});
        let a = attrs(Operation::Create, false);
        assert!(validate(&actors, &Snapshot::of(&[], &[skip]), &a, Some(&obj), None).await.is_ok());
        let e = validate(&actors, &Snapshot::of(&[], std::slice::from_ref(&broken)), &a, Some(&obj), None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), 403);
        assert!(
            e.to_string().starts_with(r#"configmaps "cm" is forbidden: expression 'object.nope.x' resulted in error"#),
            "{e}"
        );
        let mut ignored = broken;
        ignored["webhooks"][0]["failurePolicy"] = json!("Ignore");
        assert!(validate(&actors, &Snapshot::of(&[], &[ignored]), &a, Some(&obj), None).await.is_ok());
    }

    #[test]
    fn patches_change_the_object_but_not_on_delete() {
        let hook = Webhook::parse("c", HookType::Mutating, &json!({"name": "m"}));
        let mut obj = json!({"metadata": {"name": "cm"}});
        assert!(apply(&hook, Some(&mut obj), br#"[{"op":"add","path":"/data","value":{"a":"1"}}]"#).unwrap());
        assert_eq!(obj["data"]["a"], "1");
        assert!(!apply(&hook, Some(&mut obj), br#"[{"op":"replace","path":"/data/a","value":"1"}]"#).unwrap());
        let Err(CallError::Internal(e)) = apply(&hook, None, b"[]") else { panic!() };
        assert_eq!(
            e.to_string(),
            r#"Internal error occurred: admission webhook "m" attempted to modify the object, which is not supported for this operation"#
        );
    }
}
