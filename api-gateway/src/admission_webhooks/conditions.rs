//! A webhook's `matchConditions`: CEL expressions over `object`, `oldObject` (`null` when
//! absent) and `request` (the AdmissionRequest's attributes), run as kube's matcher does: any
//! condition `false` skips the webhook; otherwise an error (or a result that is not a bool)
//! is the webhook's failure, which its `failurePolicy` turns into a refusal (`Fail`) or a skip
//! (`Ignore`). The `authorizer` variable is not provided.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use cel::objects::{Key, Map as CelMap};
use cel::{Context, Env, Program, Value as Cel};
use serde_json::Value;

/// One `matchConditions` entry, compiled when its configuration is read.
#[derive(Clone)]
pub struct MatchCondition {
    pub name: String,
    pub expression: String,
    program: Result<Arc<Program>, String>,
}

impl std::fmt::Debug for MatchCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatchCondition").field("name", &self.name).field("expression", &self.expression).finish()
    }
}

/// What the conditions say of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every condition is true (or there are none): call the webhook.
    Call,
    /// Condition `.0` is false: skip the webhook.
    Skip(String),
    /// No condition is false but some failed: kube's aggregate of their errors.
    Error(String),
}

/// The CEL environment: the standard library with the string and list extensions.
fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // An extension that fails to register leaves its functions out; conditions using them
        // then fail with a clear `no such overload`.
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::lists);
        Arc::new(env)
    })
    .clone()
}

impl MatchCondition {
    /// A `{name, expression}` entry, compiled (a compile error is kept, and reported each
    /// time the condition is evaluated).
    pub fn parse(entry: &Value) -> MatchCondition {
        let text = |f: &str| entry.get(f).and_then(Value::as_str).unwrap_or("").to_string();
        let (name, expression) = (text("name"), text("expression"));
        let program = env()
            .compile(&expression)
            .map(Arc::new)
            .map_err(|e| format!("compilation failed for expression '{expression}': {e}"));
        MatchCondition { name, expression, program }
    }
}

/// Evaluates `conditions` in order with `object`, `oldObject` and `request` bound.
pub fn evaluate(
    conditions: &[MatchCondition],
    object: Option<&Value>,
    old: Option<&Value>,
    request: &Value,
) -> Outcome {
    if conditions.is_empty() {
        return Outcome::Call;
    }
    let ctx = match context(object, old, request) {
        Ok(ctx) => ctx,
        Err(e) => return Outcome::Error(e),
    };
    let mut errors = Vec::new();
    for condition in conditions {
        let program = match &condition.program {
            Ok(program) => program,
            Err(e) => {
                errors.push(e.clone());
                continue;
            }
        };
        match program.execute(&ctx) {
            Ok(Cel::Bool(true)) => {}
            Ok(Cel::Bool(false)) => return Outcome::Skip(condition.name.clone()),
            Ok(other) => errors.push(format!(
                "expression '{}' resulted in error: no such overload: expected a bool, got {:?}",
                condition.expression,
                other.type_of()
            )),
            Err(e) => errors.push(format!("expression '{}' resulted in error: {e}", condition.expression)),
        }
    }
    match errors.len() {
        0 => Outcome::Call,
        1 => Outcome::Error(errors.remove(0)),
        _ => Outcome::Error(format!("[{}]", errors.join(", "))),
    }
}

fn context(object: Option<&Value>, old: Option<&Value>, request: &Value) -> Result<Context<'static, 'static>, String> {
    let mut ctx = Context::with_env(env());
    let null = Value::Null;
    for (name, value) in
        [("object", object.unwrap_or(&null)), ("oldObject", old.unwrap_or(&null)), ("request", request)]
    {
        let value: Box<dyn cel::common::value::Val> = to_cel(value).try_into().map_err(|e| format!("{e}"))?;
        ctx.add_variable_as_val(name, value);
    }
    Ok(ctx)
}

/// JSON as CEL: whole numbers as ints (uints beyond int64), others as doubles.
fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cel::Int(i),
            (None, Some(u)) => Cel::UInt(u),
            _ => Cel::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let map: HashMap<Key, Cel> =
                map.iter().map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v))).collect();
            Cel::Map(CelMap { map: Arc::new(map) })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn conditions(exprs: &[(&str, &str)]) -> Vec<MatchCondition> {
        exprs.iter().map(|(n, e)| MatchCondition::parse(&json!({"name": n, "expression": e}))).collect()
    }

    fn request(operation: &str) -> Value {
        json!({"operation": operation, "userInfo": {"username": "alice", "groups": ["dev"]},
               "resource": {"group": "", "version": "v1", "resource": "configmaps"}, "namespace": "default"})
    }

    #[test]
    fn conditions_see_object_old_object_and_request() {
        let obj = json!({"metadata": {"name": "a", "labels": {"tier": "web"}}, "data": {"n": "1"}});
        let all = conditions(&[
            ("labelled", "has(object.metadata.labels) && object.metadata.labels.tier == 'web'"),
            ("by-alice", "request.userInfo.username == 'alice' && 'dev' in request.userInfo.groups"),
            ("create", "request.operation == 'CREATE' && oldObject == null"),
        ]);
        assert_eq!(evaluate(&all, Some(&obj), None, &request("CREATE")), Outcome::Call);
        assert_eq!(
            evaluate(&all, Some(&obj), Some(&obj), &request("UPDATE")),
            Outcome::Skip("create".into()),
            "the first false condition is named"
        );
    }

    #[test]
    fn a_false_condition_wins_over_errors_and_errors_are_aggregated() {
        let obj = json!({"metadata": {"name": "a"}});
        let failing = conditions(&[("missing", "object.spec.replicas > 1"), ("no", "false")]);
        assert_eq!(evaluate(&failing, Some(&obj), None, &request("CREATE")), Outcome::Skip("no".into()));
        let errors = conditions(&[("missing", "object.spec.replicas > 1"), ("not-bool", "'text'")]);
        let Outcome::Error(message) = evaluate(&errors, Some(&obj), None, &request("CREATE")) else { panic!() };
        assert!(message.starts_with("[expression 'object.spec.replicas > 1' resulted in error: "), "{message}");
        assert!(message.contains("expression ''text'' resulted in error"), "{message}");
        let broken = conditions(&[("syntax", "object.metadata.(")]);
        let Outcome::Error(message) = evaluate(&broken, Some(&obj), None, &request("CREATE")) else { panic!() };
        assert!(message.starts_with("compilation failed for expression 'object.metadata.('"), "{message}");
    }

    #[test]
    fn numbers_compare_as_ints() {
        let obj = json!({"spec": {"replicas": 3, "ratio": 0.5}});
        let c = conditions(&[("n", "object.spec.replicas > 2 && object.spec.ratio < 1.0")]);
        assert_eq!(evaluate(&c, Some(&obj), None, &request("CREATE")), Outcome::Call);
        assert_eq!(evaluate(&[], None, None, &request("DELETE")), Outcome::Call);
    }
}
