//! `x-kubernetes-validations`: CEL rules compiled and run as kube-apiserver runs them, with
//! the `cel` crate. `self` is the value at the rule's node, `oldSelf` the value at the same
//! place before an update; a rule that reads `oldSelf` (a transition rule) runs only on
//! update where the old value exists, unless `optionalOldSelf` makes `oldSelf` an optional.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cel::common::ast::{operators, EntryExpr, Expr, IdedExpr};
use cel::common::types::CelOptional;
use cel::common::value::Val;
use cel::objects::{Key, Map as CelMap};
use cel::{Context, Env, ExecutionError, Program, Value as Cel};
use serde_json::{Map, Number, Value};

use super::node::{self, META_FIELDS};
use super::report::{child, index, invalid, key, quoted};
use crate::api_error::{CauseType, FieldCause};

/// The `reason`s a rule may give its failures.
pub(super) const REASONS: [&str; 4] =
    ["FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"];

/// The CEL environment: the standard library with the string, list and math extensions
/// and kube's list and regex functions (kube-apiserver's has more: see the module's docs).
fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // An extension that fails to register leaves its functions out; rules using them
        // then fail with a clear `no such overload`.
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::lists);
        let _ = env.add_extension(cel::extensions::math);
        let _ = env.add_extension(super::cel_lib::register);
        Arc::new(env)
    })
    .clone()
}

/// Compiles a rule (or message expression), keeping programs across calls: a CRD's rules
/// are few and run on every write.
pub(super) fn compile(source: &str) -> Result<Arc<Program>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Program>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(program) = cache.lock().ok().and_then(|c| c.get(source).cloned()) {
        return Ok(program);
    }
    let program = Arc::new(env().compile(source).map_err(|e| e.to_string())?);
    if let Ok(mut cache) = cache.lock() {
        if cache.len() > 4096 {
            cache.clear(); // a bound against unbounded growth, not a policy
        }
        cache.insert(source.to_string(), Arc::clone(&program));
    }
    Ok(program)
}

/// Whether a compiled rule reads `oldSelf`.
pub(super) fn uses_old_self(program: &Program) -> bool {
    program.references().has_variable("oldSelf")
}

/// The fields a rule selects from `self` or `oldSelf` that the node does not declare, as
/// kube-apiserver's type check reports them (`undefined field 'x'`).
pub(super) fn undefined_fields(program: &Program, s: &Value, resource: bool) -> Vec<String> {
    let mut check = FieldCheck { root: s, resource, undefined: Vec::new() };
    check.visit(program.expression());
    check.undefined
}

/// Walks a rule's syntax tree, following `self.a.b[0].c` through the schema.
struct FieldCheck<'a> {
    root: &'a Value,
    resource: bool,
    undefined: Vec<String>,
}

impl<'a> FieldCheck<'a> {
    /// Visits `e` and below; returns the schema node `e` denotes, when known.
    fn visit(&mut self, e: &IdedExpr) -> Option<(&'a Value, bool)> {
        match &e.expr {
            Expr::Ident(name) if name == "self" || name == "oldSelf" => Some((self.root, self.resource)),
            Expr::Select(select) => {
                let (s, resource) = self.visit(&select.operand)?;
                self.select(s, resource, &select.field)
            }
            Expr::Call(call) => {
                let target = call.target.as_deref().and_then(|t| self.visit(t));
                let args: Vec<_> = call.args.iter().map(|a| self.visit(a)).collect();
                match (call.func_name.as_str(), target, args.first()) {
                    (operators::INDEX, None, Some(Some((s, _)))) => {
                        let next = node::items(s).or_else(|| node::additional_schema(s))?;
                        Some((next, node::embedded(next)))
                    }
                    _ => None,
                }
            }
            Expr::Comprehension(c) => {
                for part in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                    self.visit(part);
                }
                None
            }
            Expr::List(list) => {
                list.elements.iter().for_each(|x| {
                    self.visit(x);
                });
                None
            }
            Expr::Map(map) => {
                self.entries(&map.entries);
                None
            }
            Expr::Struct(st) => {
                self.entries(&st.entries);
                None
            }
            _ => None,
        }
    }

    fn entries(&mut self, entries: &[cel::common::ast::IdedEntryExpr]) {
        for entry in entries {
            match &entry.expr {
                EntryExpr::StructField(f) => {
                    self.visit(&f.value);
                }
                EntryExpr::MapEntry(m) => {
                    self.visit(&m.key);
                    self.visit(&m.value);
                }
            }
        }
    }

    /// `s.field`: the property's node, or an `undefined field` where `s` fixes its fields.
    fn select(&mut self, s: &'a Value, resource: bool, field: &str) -> Option<(&'a Value, bool)> {
        if (resource || node::embedded(s)) && META_FIELDS.contains(&field) {
            return None;
        }
        if let Some(extra) = node::additional_schema(s) {
            return Some((extra, node::embedded(extra)));
        }
        let props = node::properties(s);
        let found = props.into_iter().flatten().find(|(name, _)| escape(name).as_deref() == Some(field));
        match found {
            Some((_, p)) => Some((p, node::embedded(p))),
            None => {
                let open = node::preserves_unknown(s)
                    || matches!(node::additional(s), node::Additional::Allowed(true))
                    || node::type_of(s) != "object";
                if !open {
                    self.undefined.push(format!("undefined field '{field}'"));
                }
                None
            }
        }
    }
}

/// kube-apiserver's escaping of property names into CEL identifiers (`x-y` is `x__dash__y`,
/// `namespace` is `__namespace__`); `None` for names CEL cannot reach.
pub(super) fn escape(name: &str) -> Option<String> {
    const RESERVED: [&str; 18] = [
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
    ];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '_' if chars.peek() == Some(&'_') => {
                chars.next();
                out.push_str("__underscores__");
            }
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

/// A JSON value as CEL sees it under the node `s`: objects with `properties` show only
/// those (escaped), `number` nodes read whole numbers as doubles, and a resource (the
/// object itself or an embedded one) also shows `apiVersion`, `kind` and
/// `metadata.name`/`generateName`.
pub(super) fn to_cel(v: &Value, s: Option<&Value>, resource: bool) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => number(n, s),
        Value::String(text) => Cel::String(Arc::new(text.clone())),
        Value::Array(items) => {
            let item_schema = s.and_then(node::items);
            let embedded = item_schema.is_some_and(node::embedded);
            Cel::List(Arc::new(items.iter().map(|i| to_cel(i, item_schema, embedded)).collect()))
        }
        Value::Object(map) => object(map, s, resource),
    }
}

/// A JSON number as a CEL int (whole numbers), uint (beyond int64) or double.
fn number(n: &Number, s: Option<&Value>) -> Cel {
    let ty = s.map(node::type_of).unwrap_or("");
    if ty == "number" {
        return Cel::Float(n.as_f64().unwrap_or(0.0));
    }
    if let Some(i) = n.as_i64() {
        return Cel::Int(i);
    }
    if let Some(u) = n.as_u64() {
        return Cel::UInt(u);
    }
    let f = n.as_f64().unwrap_or(0.0);
    let whole = f.fract() == 0.0 && f.abs() < 9.2e18;
    if whole && (ty == "integer" || s.is_some_and(node::int_or_string)) {
        Cel::Int(f as i64)
    } else {
        Cel::Float(f)
    }
}

/// A JSON object as a CEL map.
fn object(map: &Map<String, Value>, s: Option<&Value>, resource: bool) -> Cel {
    let mut out: HashMap<Key, Cel> = HashMap::new();
    let string_key = |k: String| Key::String(Arc::new(k));
    match s {
        Some(s) if node::properties(s).is_some() || resource => {
            for (name, p) in node::properties(s).into_iter().flatten() {
                let (Some(v), Some(name)) = (map.get(name), escape(name)) else { continue };
                out.insert(string_key(name), to_cel(v, Some(p), node::embedded(p)));
            }
            if resource {
                for field in ["apiVersion", "kind"] {
                    if let Some(Value::String(text)) = map.get(field) {
                        out.insert(string_key(field.to_string()), Cel::String(Arc::new(text.clone())));
                    }
                }
                // Of metadata, CEL sees only the name and generateName.
                if let Some(Value::Object(meta)) = map.get("metadata") {
                    let mut visible = HashMap::new();
                    for field in ["name", "generateName"] {
                        if let Some(Value::String(text)) = meta.get(field) {
                            visible.insert(string_key(field.to_string()), Cel::String(Arc::new(text.clone())));
                        }
                    }
                    out.insert(string_key("metadata".to_string()), Cel::Map(CelMap { map: Arc::new(visible) }));
                }
            }
        }
        _ => {
            // A map (additionalProperties) or an object whose fields are unknown to the
            // schema (x-kubernetes-preserve-unknown-fields): every key, as it is.
            let extra = s.and_then(node::additional_schema);
            let embedded = extra.is_some_and(node::embedded);
            for (k, v) in map {
                out.insert(string_key(k.clone()), to_cel(v, extra, embedded));
            }
        }
    }
    Cel::Map(CelMap { map: Arc::new(out) })
}

/// Whether any node of the schema's structure carries rules.
pub(super) fn has_rules(s: &Value) -> bool {
    !node::rules(s).is_empty()
        || node::properties(s).is_some_and(|p| p.values().any(has_rules))
        || node::items(s).is_some_and(has_rules)
        || node::additional_schema(s).is_some_and(has_rules)
}

/// Runs every rule of the schema over the custom object `obj` (with `old` on update);
/// `base` is the path of `obj` (`""` for the object itself, whose own rules fail at `<nil>`
/// as kube-apiserver's do).
pub(super) fn validate(
    obj: &Value,
    old: Option<&Value>,
    schema: &Value,
    base: &str,
    resource: bool,
) -> Vec<FieldCause> {
    let mut walker = Walker { env: env(), out: Vec::new() };
    walker.walk(obj, old, schema, base, resource);
    walker.out
}

/// Visits the nodes of an object that carry rules, the node before its children.
struct Walker {
    env: Arc<Env>,
    out: Vec<FieldCause>,
}

impl Walker {
    fn walk(&mut self, v: &Value, old: Option<&Value>, s: &Value, path: &str, resource: bool) {
        // Rules apply to values that are there; a null is checked by the node above.
        if v.is_null() || !s.is_object() {
            return;
        }
        self.rules(v, old.filter(|o| !o.is_null()), s, path, resource);
        match v {
            Value::Object(map) => {
                // Old fields correlate by name, unless the map is atomic.
                let old_map = old.and_then(Value::as_object).filter(|_| node::map_type(s) != Some("atomic"));
                let old_of = |k: &str| old_map.and_then(|m| m.get(k));
                for (k, sub) in map {
                    if let Some(p) = node::property(s, k) {
                        self.walk(sub, old_of(k), p, &child(path, k), node::embedded(p));
                    } else if let Some(a) = node::additional_schema(s) {
                        self.walk(sub, old_of(k), a, &key(path, k), node::embedded(a));
                    }
                }
            }
            Value::Array(items) => {
                let Some(item_schema) = node::items(s) else { return };
                let old_items = old.and_then(Value::as_array);
                for (i, item) in items.iter().enumerate() {
                    // Old items correlate only in list-type maps, by their keys.
                    let old_item = match (node::list_type(s), old_items) {
                        (Some("map"), Some(olds)) => {
                            let keys = node::list_map_keys(s);
                            olds.iter().find(|o| keys.iter().all(|k| o.get(*k) == item.get(*k)))
                        }
                        _ => None,
                    };
                    self.walk(item, old_item, item_schema, &index(path, i), node::embedded(item_schema));
                }
            }
            _ => {}
        }
    }

    /// Runs the rules of one node.
    fn rules(&mut self, v: &Value, old: Option<&Value>, s: &Value, path: &str, resource: bool) {
        let rules = node::rules(s);
        if rules.is_empty() {
            return;
        }
        // The value kube-apiserver shows for a failed rule is the node's type.
        let type_shown = quoted(node::type_of(s));
        let shown_path = if path.is_empty() { "<nil>".to_string() } else { path.to_string() };
        let this = to_cel(v, Some(s), resource);
        let before = old.map(|o| to_cel(o, Some(s), resource));
        for rule in rules {
            let Some(source) = node::str_of(rule, "rule") else { continue };
            let program = match compile(source) {
                Ok(p) => p,
                Err(e) => {
                    self.out.push(invalid(&shown_path, type_shown.clone(), format!("rule compile error: {e}")));
                    continue;
                }
            };
            let optional = node::flag(rule, "optionalOldSelf");
            let reads_old = uses_old_self(&program);
            if reads_old && before.is_none() && !optional {
                continue; // a transition rule has nothing to compare with on create
            }
            let ctx = match self.context(&this, before.as_ref(), reads_old, optional) {
                Ok(ctx) => ctx,
                Err(e) => {
                    self.out.push(invalid(&shown_path, type_shown.clone(), format!("{e} evaluating rule: {source}")));
                    continue;
                }
            };
            let field = node::str_of(rule, "fieldPath")
                .and_then(|fp| field_path(path, fp))
                .unwrap_or_else(|| shown_path.clone());
            match program.execute(&ctx) {
                Ok(Cel::Bool(true)) => {}
                Ok(_) => {
                    let detail = message(rule, &ctx);
                    self.out.push(failure(field, type_shown.clone(), detail, node::str_of(rule, "reason")));
                }
                Err(e) => {
                    let rule_text = rule_error_string(rule);
                    let detail = match e {
                        ExecutionError::NoSuchOverload(_) => format!(
                            "'{e}': call arguments did not match a supported operator, function or macro signature for rule: {rule_text}"
                        ),
                        e => format!("{e} evaluating rule: {rule_text}"),
                    };
                    self.out.push(invalid(&shown_path, type_shown.clone(), detail));
                }
            }
        }
    }

    /// The variables of one rule: `self`, and `oldSelf` when the rule reads it.
    fn context(
        &self,
        this: &Cel,
        before: Option<&Cel>,
        reads_old: bool,
        optional: bool,
    ) -> Result<Context<'static, 'static>, ExecutionError> {
        let mut ctx = Context::with_env(Arc::clone(&self.env));
        let this: Box<dyn Val> = this.clone().try_into()?;
        ctx.add_variable_as_val("self", this);
        if reads_old {
            let before: Option<Box<dyn Val>> = before.map(|b| b.clone().try_into()).transpose()?;
            match (optional, before) {
                (true, Some(b)) => ctx.add_variable_as_val("oldSelf", Box::new(CelOptional::of(b))),
                (true, None) => ctx.add_variable_as_val("oldSelf", Box::new(CelOptional::none())),
                (false, Some(b)) => ctx.add_variable_as_val("oldSelf", b),
                (false, None) => {}
            }
        }
        Ok(ctx)
    }
}

/// The cause of a failed rule, of the kind its `reason` names.
fn failure(field: String, type_shown: String, detail: String, reason: Option<&str>) -> FieldCause {
    match reason {
        Some("FieldValueForbidden") => FieldCause::forbidden(field, detail),
        Some("FieldValueRequired") => FieldCause::required(field, detail),
        Some("FieldValueDuplicate") => {
            FieldCause { field, kind: CauseType::Duplicate, value: Some(type_shown), detail: String::new() }
        }
        _ => invalid(field, type_shown, detail),
    }
}

/// The message of a failed rule: its `messageExpression`'s result when that is a non-empty
/// single line, else its `message`, else `failed rule: <rule>`.
fn message(rule: &Value, ctx: &Context) -> String {
    if let Some(expr) = node::str_of(rule, "messageExpression").filter(|e| !e.trim().is_empty()) {
        if let Ok(Cel::String(text)) = compile(expr).and_then(|p| p.execute(ctx).map_err(|e| e.to_string())) {
            let text = text.trim();
            if !text.is_empty() && !text.contains(['\n', '\r']) {
                return text.to_string();
            }
        }
    }
    match node::str_of(rule, "message").map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => m.to_string(),
        None => format!("failed rule: {}", rule_error_string(rule)),
    }
}

/// How kube-apiserver names a rule in errors: its message, else its source.
fn rule_error_string(rule: &Value) -> String {
    match node::str_of(rule, "message").map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => m.to_string(),
        None => node::str_of(rule, "rule").unwrap_or("").trim().to_string(),
    }
}

/// A rule's `fieldPath` (`.spec.a`, `['a.b']`, `.list[0]`) below the node at `base`, as a
/// field path; `None` when it does not parse.
pub(super) fn field_path(base: &str, field_path: &str) -> Option<String> {
    let mut path = base.to_string();
    let mut rest = field_path.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']")?;
            path = key(&path, &r[..end]);
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let i: usize = r[..end].parse().ok()?;
            path = index(&path, i);
            rest = &r[end + 1..];
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            path = child(&path, &r[..end]);
            rest = &r[end..];
        } else {
            return None;
        }
    }
    Some(path)
}
