//! The JSONPath of kubectl and of CRD printer columns (`k8s.io/client-go/util/jsonpath`), over
//! JSON values: `.spec.replicas`, `.metadata.labels['app.kubernetes.io/name']`,
//! `.status.conditions[?(@.type=="Ready")].status`, `.spec.items[0]`, `[-1]`, `[1:3]`, `[*]`,
//! `.*`, `..name` and unions `[0,2]`.
//!
//! As kube-apiserver's CRD table convertor evaluates them: missing keys give no result rather
//! than an error; an index out of range, a filter over something that is not a list, or a
//! comparison of values of different types is an error.

use serde_json::{Number, Value};

/// A parsed path.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `.name` or `['name']`; an empty name stands for the value itself.
    Field(String),
    /// `.*` or `[*]`: every element or member value.
    Wildcard,
    /// `..`: the value and every container below it.
    Recursive,
    /// `[start:end:step]`; `[n]` is `[n:n+1]` with `end_derived`.
    Slice { start: Option<i64>, end: Option<i64>, end_derived: bool, step: Option<i64> },
    /// `[a,b]`: each path from the same value, results concatenated.
    Union(Vec<JsonPath>),
    /// `[?(left op right)]` or `[?(left)]` (exists).
    Filter(Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    left: JsonPath,
    /// `None`: the element passes when `left` finds anything.
    test: Option<(Op, Operand)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Literal(Value),
    Path(JsonPath),
}

/// Why a path could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError(pub String);

impl JsonPath {
    /// Parses a path as written in a CRD's `additionalPrinterColumns[].jsonPath` (no braces).
    pub fn parse(path: &str) -> Result<JsonPath, String> {
        let chars: Vec<char> = path.trim().chars().collect();
        let mut parser = Parser { chars: &chars, pos: 0 };
        parser.path()
    }

    /// The values the path finds in `root`, in kube's order.
    pub fn find<'a>(&self, root: &'a Value) -> Result<Vec<&'a Value>, EvalError> {
        let mut current = vec![root];
        for step in &self.steps {
            current = eval(step, current)?;
        }
        Ok(current)
    }
}

// ---- parsing ----

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
}

/// Ends a field name (unless escaped with a backslash).
fn is_terminator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '.' | ',' | '[' | ']' | '$' | '@' | '{' | '}')
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn path(&mut self) -> Result<JsonPath, String> {
        let mut steps = Vec::new();
        while let Some(c) = self.peek() {
            match c {
                '$' | '@' => self.pos += 1,
                c if c.is_whitespace() => self.pos += 1,
                '.' => {
                    self.pos += 1;
                    if self.peek() == Some('.') {
                        steps.push(Step::Recursive);
                        continue;
                    }
                    steps.push(self.field());
                }
                '[' => steps.push(self.bracket()?),
                c if c.is_alphanumeric() || c == '_' => steps.push(self.field()),
                other => return Err(format!("unexpected {other:?} at {}", self.pos)),
            }
        }
        Ok(JsonPath { steps })
    }

    /// A field name up to the next unescaped terminator.
    fn field(&mut self) -> Step {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c == '\\' {
                self.pos += 1;
                if let Some(escaped) = self.peek() {
                    name.push(escaped);
                    self.pos += 1;
                }
                continue;
            }
            if is_terminator(c) {
                break;
            }
            name.push(c);
            self.pos += 1;
        }
        if name == "*" {
            Step::Wildcard
        } else {
            Step::Field(name)
        }
    }

    /// `[...]` at the current position.
    fn bracket(&mut self) -> Result<Step, String> {
        let start = self.pos + 1;
        let mut quote: Option<char> = None;
        let mut depth = 0usize;
        let mut end = None;
        for (i, &c) in self.chars.iter().enumerate().skip(start) {
            match (quote, c) {
                (Some(q), c) if c == q && self.chars.get(i.wrapping_sub(1)) != Some(&'\\') => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '(') => depth += 1,
                (None, ')') => depth = depth.saturating_sub(1),
                (None, ']') if depth == 0 => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or("unterminated [")?;
        let inner: String = self.chars[start..end].iter().collect();
        self.pos = end + 1;
        bracket_step(inner.trim())
    }
}

fn bracket_step(inner: &str) -> Result<Step, String> {
    if let Some(filter) = inner.strip_prefix('?') {
        let body = filter.trim().strip_prefix('(').and_then(|f| f.strip_suffix(')')).ok_or("filter must be ?(...)")?;
        return Ok(Step::Filter(Box::new(parse_filter(body)?)));
    }
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    let parts = split_outside_quotes(inner, ',');
    if parts.len() > 1 {
        let paths = parts.iter().map(|p| bracket_step(p.trim()).map(|s| JsonPath { steps: vec![s] }));
        return Ok(Step::Union(paths.collect::<Result<_, _>>()?));
    }
    if let Some(key) = unquote(inner) {
        return Ok(Step::Field(key));
    }
    parse_slice(inner)
}

/// `'text'` or `"text"` without its quotes (and with `\'`, `\"` unescaped).
fn unquote(s: &str) -> Option<String> {
    let quote = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = s.strip_prefix(quote)?.strip_suffix(quote)?;
    Some(inner.replace(&format!("\\{quote}"), &quote.to_string()))
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quote: Option<char> = None;
    let mut begin = 0;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, c) if c == sep => {
                parts.push(&s[begin..i]);
                begin = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[begin..]);
    parts
}

/// `n`, `a:b`, `a:b:c`, with any part left out.
fn parse_slice(inner: &str) -> Result<Step, String> {
    let parts: Vec<&str> = inner.split(':').map(str::trim).collect();
    if parts.len() > 3 || parts[0].is_empty() && parts.len() == 1 {
        return Err(format!("invalid array index {inner}"));
    }
    let number = |s: &str| -> Result<Option<i64>, String> {
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(|_| format!("invalid array index {inner}"))
    };
    let start = number(parts[0])?;
    if parts.len() == 1 {
        let end = start.map(|s| s + 1);
        return Ok(Step::Slice { start, end, end_derived: true, step: None });
    }
    let end = number(parts[1])?;
    let step = match parts.get(2) {
        Some(s) => number(s)?,
        None => None,
    };
    Ok(Step::Slice { start, end, end_derived: false, step })
}

/// `left op right` or `left`, as kube splits it: at the first run of `!<>=`.
fn parse_filter(body: &str) -> Result<Filter, String> {
    let Some(at) = body.find(['!', '<', '>', '=']) else {
        return Ok(Filter { left: JsonPath::parse(body)?, test: None });
    };
    let rest = &body[at..];
    let op_len = rest.find(|c| !matches!(c, '!' | '<' | '>' | '=')).unwrap_or(rest.len());
    let op = match &rest[..op_len] {
        "==" => Op::Eq,
        "!=" => Op::Ne,
        "<" => Op::Lt,
        "<=" => Op::Le,
        ">" => Op::Gt,
        ">=" => Op::Ge,
        other => return Err(format!("unrecognized filter operator {other}")),
    };
    let left = JsonPath::parse(&body[..at])?;
    let right = rest[op_len..].trim();
    let right = if let Some(text) = unquote(right) {
        Operand::Literal(Value::String(text))
    } else if let Ok(i) = right.parse::<i64>() {
        Operand::Literal(Value::from(i))
    } else if let Some(f) = right.parse::<f64>().ok().and_then(Number::from_f64) {
        Operand::Literal(Value::Number(f))
    } else if right == "true" || right == "false" {
        Operand::Literal(Value::Bool(right == "true"))
    } else {
        Operand::Path(JsonPath::parse(right)?)
    };
    Ok(Filter { left, test: Some((op, right)) })
}

// ---- evaluation ----

fn eval<'a>(step: &Step, input: Vec<&'a Value>) -> Result<Vec<&'a Value>, EvalError> {
    let mut out = Vec::new();
    match step {
        Step::Field(name) if name.is_empty() => return Ok(input),
        Step::Field(name) => {
            for value in input {
                if let Some(found) = value.as_object().and_then(|m| m.get(name)) {
                    out.push(found);
                }
            }
        }
        Step::Wildcard => {
            for value in input {
                match value {
                    Value::Array(items) => out.extend(items),
                    Value::Object(members) => out.extend(members.values()),
                    _ => {}
                }
            }
        }
        Step::Recursive => {
            for value in input {
                descend(value, &mut out);
            }
        }
        Step::Slice { start, end, end_derived, step } => {
            for value in input {
                if value.is_null() {
                    continue;
                }
                let Value::Array(items) = value else {
                    return Err(EvalError(format!("{value} is not array or slice")));
                };
                out.extend(slice(items, *start, *end, *end_derived, *step)?);
            }
        }
        Step::Union(paths) => {
            for path in paths {
                for value in &input {
                    let mut current = vec![*value];
                    for step in &path.steps {
                        current = eval(step, current)?;
                    }
                    out.extend(current);
                }
            }
        }
        Step::Filter(filter) => {
            for value in input {
                let Value::Array(items) = value else {
                    return Err(EvalError(format!("{value} is not array or slice and cannot be filtered")));
                };
                for item in items {
                    if passes(filter, item)? {
                        out.push(item);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// kube's recursive descent: each non-empty container, then what is below it.
fn descend<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    let children: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Object(members) => members.values().collect(),
        _ => Vec::new(),
    };
    if !children.is_empty() {
        out.push(value);
        for child in children {
            descend(child, out);
        }
    }
}

fn slice(
    items: &[Value],
    start: Option<i64>,
    end: Option<i64>,
    end_derived: bool,
    step: Option<i64>,
) -> Result<impl Iterator<Item = &Value>, EvalError> {
    let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
    let mut start = start.unwrap_or(0);
    if start < 0 {
        start += len;
    }
    let mut end = end.unwrap_or(len);
    if end < 0 || (end == 0 && end_derived) {
        end += len;
    }
    let out_of_bounds = |index: i64| EvalError(format!("array index out of bounds: index {index}, length {len}"));
    let range = if start == end {
        0..0
    } else {
        if start >= len || start < 0 {
            return Err(out_of_bounds(start));
        }
        if end > len || end < 0 {
            return Err(out_of_bounds(end - 1));
        }
        if start > end {
            return Err(EvalError(format!("starting index {start} is greater than ending index {end}")));
        }
        // In range by the checks above.
        usize::try_from(start).unwrap_or(0)..usize::try_from(end).unwrap_or(0)
    };
    let step = match step {
        Some(s) if s <= 0 => return Err(EvalError(format!("step must be > 0, got {s}"))),
        Some(s) => usize::try_from(s).unwrap_or(1),
        None => 1,
    };
    Ok(items[range].iter().step_by(step))
}

fn passes(filter: &Filter, item: &Value) -> Result<bool, EvalError> {
    let Some((op, right)) = &filter.test else {
        return Ok(filter.left.find(item).is_ok_and(|found| !found.is_empty()));
    };
    let lefts = filter.left.find(item)?;
    let left = match lefts.as_slice() {
        [] => return Ok(false),
        [one] => *one,
        _ => return Err(EvalError("can only compare one element at a time".into())),
    };
    let rights = match right {
        Operand::Literal(value) => vec![value],
        Operand::Path(path) => path.find(item)?,
    };
    let right = match rights.as_slice() {
        [] => return Ok(false),
        [one] => *one,
        _ => return Err(EvalError("can only compare one element at a time".into())),
    };
    compare(*op, left, right)
}

/// Go template's `eq`, `lt` ... over JSON values: both sides of one basic kind (integers,
/// floats, strings, booleans for equality), else an error.
fn compare(op: Op, left: &Value, right: &Value) -> Result<bool, EvalError> {
    use std::cmp::Ordering;
    let incompatible = || EvalError(format!("incompatible types for comparison: {left} and {right}"));
    let ordering: Ordering = match (left, right) {
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64(), a.is_f64(), b.is_f64()) {
            (Some(a), Some(b), _, _) => a.cmp(&b),
            (_, _, true, true) => {
                let (a, b) = (a.as_f64().unwrap_or(f64::NAN), b.as_f64().unwrap_or(f64::NAN));
                a.partial_cmp(&b).ok_or_else(incompatible)?
            }
            _ => return Err(incompatible()),
        },
        (Value::Bool(a), Value::Bool(b)) => match op {
            Op::Eq => return Ok(a == b),
            Op::Ne => return Ok(a != b),
            _ => return Err(EvalError("invalid type for comparison".into())),
        },
        _ => return Err(incompatible()),
    };
    Ok(match op {
        Op::Eq => ordering == Ordering::Equal,
        Op::Ne => ordering != Ordering::Equal,
        Op::Lt => ordering == Ordering::Less,
        Op::Le => ordering != Ordering::Greater,
        Op::Gt => ordering == Ordering::Greater,
        Op::Ge => ordering != Ordering::Less,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn find(path: &str, value: &Value) -> Result<Vec<Value>, EvalError> {
        let path = JsonPath::parse(path).unwrap();
        path.find(value).map(|found| found.into_iter().cloned().collect())
    }

    fn object() -> Value {
        json!({
            "metadata": {"name": "a", "labels": {"app.kubernetes.io/name": "web", "tier": "db"}},
            "spec": {"replicas": 3, "ratio": 0.5, "items": [{"name": "x"}, {"name": "y"}, {"name": "z"}]},
            "status": {"conditions": [
                {"type": "Progressing", "status": "True"},
                {"type": "Ready", "status": "False", "count": 2},
            ]},
        })
    }

    #[test]
    fn fields_indexes_and_slices_find_what_kubectl_finds() {
        let o = object();
        assert_eq!(find(".spec.replicas", &o).unwrap(), [json!(3)]);
        assert_eq!(find("$.spec.replicas", &o).unwrap(), [json!(3)]);
        assert_eq!(find(".spec.items[0].name", &o).unwrap(), [json!("x")]);
        assert_eq!(find(".spec.items[-1].name", &o).unwrap(), [json!("z")]);
        assert_eq!(find(".spec.items[1:].name", &o).unwrap(), [json!("y"), json!("z")]);
        assert_eq!(find(".spec.items[0:3:2].name", &o).unwrap(), [json!("x"), json!("z")]);
        assert_eq!(find(".spec.items[*].name", &o).unwrap(), [json!("x"), json!("y"), json!("z")]);
        assert_eq!(find(".spec.items[0,2].name", &o).unwrap(), [json!("x"), json!("z")]);
        assert_eq!(find(".metadata.labels['app.kubernetes.io/name']", &o).unwrap(), [json!("web")]);
        assert_eq!(find(r".metadata.labels.app\.kubernetes\.io/name", &o).unwrap(), [json!("web")]);
        assert_eq!(find(".metadata.labels.*", &o).unwrap(), [json!("web"), json!("db")]);
        assert_eq!(find("..name", &o).unwrap(), [json!("a"), json!("x"), json!("y"), json!("z")]);
    }

    #[test]
    fn missing_keys_find_nothing_but_bad_indexes_are_errors() {
        let o = object();
        assert!(find(".spec.nope.deeper", &o).unwrap().is_empty());
        assert!(find(".spec.replicas.deeper", &o).unwrap().is_empty());
        assert!(find(".spec.items[7]", &o).is_err());
        assert!(find(".spec.replicas[0]", &o).is_err());
        assert!(find(".spec[?(@.a==1)]", &o).is_err());
        assert!(find(".spec.nope[0]", &o).unwrap().is_empty());
    }

    #[test]
    fn filters_compare_like_go_templates() {
        let o = object();
        let status = |path: &str| find(path, &o);
        assert_eq!(status(r#".status.conditions[?(@.type=="Ready")].status"#).unwrap(), [json!("False")]);
        assert_eq!(status(".status.conditions[?(@.type == 'Ready')].status").unwrap(), [json!("False")]);
        assert_eq!(status(r#".status.conditions[?(@.type!="Ready")].type"#).unwrap(), [json!("Progressing")]);
        assert_eq!(status(".status.conditions[?(@.count)].type").unwrap(), [json!("Ready")]);
        assert_eq!(status(".status.conditions[?(@.count>=2)].type").unwrap(), [json!("Ready")]);
        assert!(status(".status.conditions[?(@.count<2)].type").unwrap().is_empty());
        assert!(status(".status.conditions[?(@.count==2.0)].type").is_err(), "int against float");
        assert!(status(r#".status.conditions[?(@.count=="2")].type"#).is_err(), "int against string");
        assert!(JsonPath::parse(".a[?(@.b=~\"x\")]").is_err());
        assert!(JsonPath::parse(".a[x]").is_err());
        assert!(JsonPath::parse(".a[0").is_err());
    }
}
