//! Label and field selectors of list and watch requests, parsed, checked and matched as
//! kube-apiserver does: the `labelSelector` grammar and validation of apimachinery's
//! `labels.Parse`, the `fieldSelector` grammar of `fields.ParseSelector`, and per kind the
//! field labels its field label conversion accepts and the values its registry strategy
//! selects on (`pkg/apis/*/v1/conversion.go`, `pkg/registry/*/strategy.go`).
//!
//! Matching works on stored objects as JSON; a [`Candidate`] parses an object at most once
//! however many selectors look at it, and selectors on `metadata.name` and
//! `metadata.namespace` alone are answered from the store key without parsing at all.

use std::borrow::Cow;
use std::cell::OnceCell;

use raft_store::KeyValue;
use serde_json::Value;

use crate::api_error::ApiError;
use crate::kinds::ResourceKind;

/// A selector that does not parse, or names a field the kind cannot select on; the API
/// answers it with 400 BadRequest and this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

impl From<SelectorError> for ApiError {
    fn from(e: SelectorError) -> Self {
        ApiError::BadRequest(e.0)
    }
}

/// The label and field selectors of one request; the default selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    /// Parses both selectors for `kind` (empty strings select everything). Label selector
    /// errors come first, then field selector syntax, then unsupported field labels: the
    /// order kube-apiserver checks them in.
    pub fn parse(kind: &ResourceKind, label_selector: &str, field_selector: &str) -> Result<Self, SelectorError> {
        let labels = LabelSelector::parse(label_selector)?;
        let fields = FieldSelector::parse(kind, field_selector)?;
        Ok(Selectors { labels, fields })
    }

    /// Selects every object.
    pub fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// The namespace every selected object is in, when the field selector requires one
    /// (`metadata.namespace=X`): a list of all namespaces can then read just that one.
    pub fn namespace(&self) -> Option<&str> {
        self.fields
            .terms
            .iter()
            .find(|t| t.field == "metadata.namespace" && !t.negated && !t.value.is_empty())
            .map(|t| t.value.as_str())
    }

    /// Whether the object selects. An object that is not JSON selects only when everything does.
    pub fn matches(&self, candidate: &Candidate<'_>) -> bool {
        if self.is_everything() {
            return true;
        }
        if self.labels.is_empty() && self.fields.terms.iter().all(|t| t.field.starts_with("metadata.")) {
            let (namespace, name) = candidate.key_parts(self.fields.namespaced);
            return self.fields.terms.iter().all(|t| {
                let value = if t.field == "metadata.name" { name } else { namespace };
                t.matches(value)
            });
        }
        let Some(object) = candidate.object() else {
            return false;
        };
        self.labels.matches(object.pointer("/metadata/labels")) && self.fields.matches(object)
    }

    /// [`Self::matches`] on an already parsed object.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.labels.matches(object.pointer("/metadata/labels")) && self.fields.matches(object)
    }
}

/// A stored object being matched: its key and bytes, parsed on first need and then shared.
pub struct Candidate<'a> {
    kv: &'a KeyValue,
    object: OnceCell<Option<Value>>,
}

impl<'a> Candidate<'a> {
    pub fn new(kv: &'a KeyValue) -> Self {
        Candidate { kv, object: OnceCell::new() }
    }

    pub fn kv(&self) -> &'a KeyValue {
        self.kv
    }

    /// The object as JSON (`None` if it is not JSON).
    pub fn object(&self) -> Option<&Value> {
        self.object.get_or_init(|| serde_json::from_slice(&self.kv.value).ok()).as_ref()
    }

    /// (namespace, name) from the key: `.../{namespace}/{name}`, or `.../{name}` with an
    /// empty namespace for cluster-scoped kinds.
    fn key_parts(&self, namespaced: bool) -> (&'a str, &'a str) {
        let key = std::str::from_utf8(&self.kv.key).unwrap_or("");
        let mut segments = key.rsplit('/');
        let name = segments.next().unwrap_or("");
        let namespace = if namespaced { segments.next().unwrap_or("") } else { "" };
        (namespace, name)
    }
}

// ---------------------------------------------------------------------------------------
// Label selectors

/// How a label requirement relates its key to its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One requirement of a label selector: `key op values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Operator,
    /// Sorted, without duplicates (kube keeps them as a set).
    pub values: Vec<String>,
}

impl Requirement {
    /// Whether labels (the `metadata.labels` object, if any) satisfy this requirement.
    fn matches(&self, labels: Option<&Value>) -> bool {
        let value = labels.and_then(|l| l.get(&self.key)).and_then(Value::as_str);
        let has = |v: &str| self.values.iter().any(|w| w == v);
        match self.op {
            Operator::In | Operator::Equals | Operator::DoubleEquals => value.is_some_and(has),
            Operator::NotIn | Operator::NotEquals => !value.is_some_and(has),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(Ok(got)), [want]) = (value.map(str::parse::<i64>), self.values.as_slice()) else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.op == Operator::GreaterThan {
                    got > want
                } else {
                    got < want
                }
            }
        }
    }
}

/// A parsed `labelSelector`: every requirement must hold (comma is AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses the full Kubernetes syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`,
    /// `a notin (x,y)`, `a`, `!a`, `a>1`, `a<1`, comma-separated; keys and values are
    /// validated as label keys and values, with kube's messages.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        // Go's lexer reads a NUL byte as the end of the input.
        let selector = selector.split('\0').next().unwrap_or("");
        let mut parser = Parser { items: lex(selector), position: 0 };
        let mut requirements = parser.parse().map_err(SelectorError)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether labels (the `metadata.labels` object, if any) satisfy every requirement.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Error,
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

/// The token a literal stands for, if it is one.
fn keyword(literal: &str) -> Option<Token> {
    Some(match literal {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits a selector into tokens as apimachinery's lexer does; the last is always `End`.
fn lex(s: &str) -> Vec<(Token, String)> {
    let bytes = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while bytes.get(pos).copied().is_some_and(is_whitespace) {
            pos += 1;
        }
        let Some(&first) = bytes.get(pos) else {
            out.push((Token::End, String::new()));
            return out;
        };
        let start = pos;
        if is_special(first) {
            // The longest run of operator characters that is still an operator.
            let mut last = None;
            while bytes.get(pos).copied().is_some_and(is_special) {
                match keyword(&s[start..=pos]) {
                    Some(token) => last = Some((token, pos + 1)),
                    None if last.is_some() => break,
                    None => {}
                }
                pos += 1;
            }
            match last {
                Some((token, end)) => {
                    pos = end;
                    out.push((token, s[start..end].to_string()));
                }
                None => out.push((Token::Error, format!("error expected: keyword found '{}'", &s[start..pos]))),
            }
        } else {
            while bytes.get(pos).is_some_and(|b| !is_special(*b) && !is_whitespace(*b)) {
                pos += 1;
            }
            let word = &s[start..pos];
            let token = match keyword(word) {
                Some(t @ (Token::In | Token::NotIn)) => t,
                _ => Token::Identifier,
            };
            out.push((token, word.to_string()));
        }
    }
}

/// Where the parser is: `in` and `notin` are values, not operators, in [`Context::Values`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

/// The operators a binary requirement may use, as kube lists them in its message.
const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

impl Parser {
    fn item(&self, index: usize, context: Context) -> (Token, String) {
        let (token, literal) =
            self.items.get(index).or(self.items.last()).cloned().unwrap_or((Token::End, String::new()));
        match token {
            Token::In | Token::NotIn if context == Context::Values => (Token::Identifier, literal),
            _ => (token, literal),
        }
    }

    fn lookahead(&self, context: Context) -> (Token, String) {
        self.item(self.position, context)
    }

    fn consume(&mut self, context: Context) -> (Token, String) {
        let item = self.item(self.position, context);
        self.position += 1;
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    let requirement = self.requirement().map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(requirement);
                    let (token, literal) = self.consume(Context::Values);
                    match token {
                        Token::End => return Ok(requirements),
                        Token::Comma => {
                            let (next, literal) = self.lookahead(Context::Values);
                            if next != Token::Identifier && next != Token::DoesNotExist {
                                return Err(format!("found '{literal}', expected: identifier after ','"));
                            }
                        }
                        _ => return Err(format!("found '{literal}', expected: ',' or 'end of string'")),
                    }
                }
                Token::End => return Ok(requirements),
                _ => return Err(format!("found '{literal}', expected: !, identifier, or 'end of string'")),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (key, inferred) = self.key_and_inferred_operator()?;
        if let Some(op) = inferred {
            return new_requirement(key, op, Vec::new());
        }
        let op = self.operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.values()?,
            _ => self.exact_value()?,
        };
        new_requirement(key, op, values)
    }

    /// The key, and `Exists` or `DoesNotExist` when no binary operator follows.
    fn key_and_inferred_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let mut op = None;
        let (mut token, mut literal) = self.consume(Context::Values);
        if token == Token::DoesNotExist {
            op = Some(Operator::DoesNotExist);
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(format!("found '{literal}', expected: identifier"));
        }
        let problems = label_key_problems(&literal);
        if !problems.is_empty() {
            return Err(invalid("<nil>", &literal, &problems));
        }
        let (next, _) = self.lookahead(Context::Values);
        if matches!(next, Token::End | Token::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        Ok((literal, op))
    }

    fn operator(&mut self) -> Result<Operator, String> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => return Err(format!("found '{literal}', expected: {BINARY_OPERATORS}")),
        })
    }

    /// `(a,b,...)`; empty members are the empty value, and `()` is the set of it.
    fn values(&mut self) -> Result<Vec<String>, String> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenPar {
            return Err(format!("found '{literal}' expected: '('"));
        }
        let (token, literal) = self.lookahead(Context::Values);
        match token {
            Token::Identifier | Token::Comma => {
                let values = self.identifiers()?;
                if self.consume(Context::Values).0 != Token::ClosedPar {
                    return Err(format!("found '{literal}', expected: ')'"));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{literal}', expected: ',', ')' or identifier")),
        }
    }

    fn identifiers(&mut self) -> Result<Vec<String>, String> {
        let mut values = Vec::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    values.push(literal);
                    let (next, literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        _ => return Err(format!("found '{literal}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    // `(,`, `,,` and `,)` all hold the empty value.
                    let (next, _) = self.lookahead(Context::Values);
                    if values.is_empty() || matches!(next, Token::ClosedPar | Token::Comma) {
                        values.push(String::new());
                    }
                    if next == Token::ClosedPar {
                        return Ok(values);
                    }
                }
                _ => return Err(format!("found '{literal}', expected: ',', or identifier")),
            }
        }
    }

    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        let (token, _) = self.lookahead(Context::Values);
        if matches!(token, Token::End | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        let (token, literal) = self.consume(Context::Values);
        if token == Token::Identifier {
            return Ok(vec![literal]);
        }
        Err(format!("found '{literal}', expected: identifier"))
    }
}

/// A requirement with its values checked as kube's `NewRequirement` does.
fn new_requirement(key: String, op: Operator, mut values: Vec<String>) -> Result<Requirement, String> {
    values.sort();
    values.dedup();
    let mut errors: Vec<String> = Vec::new();
    if matches!(op, Operator::GreaterThan | Operator::LessThan) {
        for (i, value) in values.iter().enumerate() {
            if value.parse::<i64>().is_err() {
                let detail = ["for 'Gt', 'Lt' operators, the value must be an integer".to_string()];
                errors.push(invalid(&format!("values[{i}]"), value, &detail));
            }
        }
    }
    for (i, value) in values.iter().enumerate() {
        let problems = label_value_problems(value);
        if !problems.is_empty() {
            errors.push(invalid(&format!("values[{i}][{key}]"), value, &problems));
        }
    }
    let mut unique: Vec<String> = Vec::new();
    for e in errors {
        if !unique.contains(&e) {
            unique.push(e);
        }
    }
    match unique.len() {
        0 => Ok(Requirement { key, op, values }),
        1 => Err(unique.concat()),
        _ => Err(format!("[{}]", unique.join(", "))),
    }
}

/// A `field.Invalid` error as Go prints it: `path: Invalid value: "v": detail; detail`.
fn invalid(path: &str, value: &str, details: &[String]) -> String {
    format!("{path}: Invalid value: {value:?}: {}", details.join("; "))
}

const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;
const SUBDOMAIN_MAX: usize = 253;
const QUALIFIED_NAME_RULE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_RULE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter().all(inner)
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`
fn is_subdomain(s: &str) -> bool {
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    s.split('.').all(|label| {
        let b = label.as_bytes();
        b.first().is_some_and(alnum) && b.last().is_some_and(alnum) && b.iter().all(|c| alnum(c) || *c == b'-')
    })
}

/// Why `key` is not a label key (`[prefix/]name`), as apimachinery's `IsQualifiedName`.
fn label_key_problems(key: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => name,
        [prefix, name] => {
            if prefix.is_empty() {
                problems.push("prefix part must be non-empty".to_string());
            } else {
                if prefix.len() > SUBDOMAIN_MAX {
                    problems.push(format!("prefix part must be no more than {SUBDOMAIN_MAX} characters"));
                }
                if !is_subdomain(prefix) {
                    problems.push(format!("prefix part {SUBDOMAIN_RULE}"));
                }
            }
            name
        }
        _ => {
            return vec![format!(
                "a qualified name {QUALIFIED_NAME_RULE} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )]
        }
    };
    if name.is_empty() {
        problems.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX {
        problems.push(format!("name part must be no more than {QUALIFIED_NAME_MAX} characters"));
    }
    if !is_qualified_name_part(name) {
        problems.push(format!("name part {QUALIFIED_NAME_RULE}"));
    }
    problems
}

/// Why `value` is not a label value, as apimachinery's `IsValidLabelValue`.
fn label_value_problems(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > LABEL_VALUE_MAX {
        problems.push(format!("must be no more than {LABEL_VALUE_MAX} characters"));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        problems.push(LABEL_VALUE_RULE.to_string());
    }
    problems
}

// ---------------------------------------------------------------------------------------
// Field selectors

/// One term of a field selector: `field=value` (or `==`), or `field!=value` when negated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    /// The field label after the kind's conversion (`spec.host` becomes `spec.nodeName`).
    pub field: &'static str,
    pub value: String,
    pub negated: bool,
}

impl FieldTerm {
    fn matches(&self, value: &str) -> bool {
        (value == self.value) != self.negated
    }
}

/// A parsed `fieldSelector` for one kind: every term must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub terms: Vec<FieldTerm>,
    set: FieldSet,
    namespaced: bool,
}

impl FieldSelector {
    /// Parses `f=v`, `f==v` and `f!=v` terms separated by commas (`\,`, `\=` and `\\` escape
    /// in values), then converts each field label as `kind` does; a label it does not
    /// support fails with kube's message for that kind.
    pub fn parse(kind: &ResourceKind, selector: &str) -> Result<Self, SelectorError> {
        let set = FieldSet::of(kind);
        let mut parts = split_terms(selector);
        parts.sort_unstable();
        let mut parsed = Vec::new();
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            let Some((field, op, raw)) = split_term(part) else {
                return Err(SelectorError(format!("invalid selector: '{selector}'; can't understand '{part}'")));
            };
            parsed.push((field, op == "!=", unescape(raw)?));
        }
        let mut terms = Vec::new();
        for (field, negated, value) in parsed {
            let field = set.convert(field).map_err(SelectorError)?;
            terms.push(FieldTerm { field, value, negated });
        }
        Ok(FieldSelector { terms, set, namespaced: kind.namespaced })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether the object's selectable fields satisfy every term.
    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|t| t.matches(&self.set.value(t.field, object, self.namespaced)))
    }
}

/// The comma-separated terms; a backslash-escaped comma stays inside its term.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in selector.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// `(field, operator, raw value)` split at the first operator (`!=`, `==` or `=`).
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        for op in ["!=", "==", "="] {
            if term[i..].starts_with(op) {
                return Some((&term[..i], op, &term[i + op.len()..]));
            }
        }
    }
    None
}

/// Removes the escapes of a value; an unknown escape or a bare `,` or `=` is an error.
fn unescape(raw: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(raw.len());
    let mut escaped = false;
    for c in raw.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError(format!("invalid field selector: invalid escape sequence: \\{c}")));
            }
            out.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            // Go prints the rune with %v: its code point.
            ',' | '=' => {
                return Err(SelectorError(format!(
                    "invalid field selector: unescaped character in value: {}",
                    u32::from(c)
                )))
            }
            c => out.push(c),
        }
    }
    if escaped {
        return Err(SelectorError("invalid field selector: invalid escape sequence: \\".into()));
    }
    Ok(out)
}

/// Which field labels a kind accepts and where their values come from: one variant per
/// kind with its own field label conversion in kube-apiserver; `Meta` for the rest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum FieldSet {
    /// kube's `DefaultMetaV1FieldSelectorConversion`: `metadata.name`, `metadata.namespace`.
    #[default]
    Meta,
    Pod,
    Node,
    Namespace,
    Secret,
    Service,
    /// core/v1 Event.
    CoreEvent,
    /// events.k8s.io/v1 Event: the same fields under their new names.
    Event,
    Job,
}

const META: &[&str] = &["metadata.name", "metadata.namespace"];
const POD: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
];
const NODE: &[&str] = &["metadata.name", "spec.unschedulable"];
const NAMESPACE: &[&str] = &["status.phase", "metadata.name"];
const SECRET: &[&str] = &["type", "metadata.namespace", "metadata.name"];
const SERVICE: &[&str] = &["metadata.namespace", "metadata.name", "spec.clusterIP", "spec.type"];
const CORE_EVENT: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];
const EVENT: &[&str] = &["reason", "type", "metadata.namespace", "metadata.name"];
/// events.k8s.io/v1 labels and the core label each is stored under.
const EVENT_ALIASES: &[(&str, &str)] = &[
    ("regarding.kind", "involvedObject.kind"),
    ("regarding.namespace", "involvedObject.namespace"),
    ("regarding.name", "involvedObject.name"),
    ("regarding.uid", "involvedObject.uid"),
    ("regarding.apiVersion", "involvedObject.apiVersion"),
    ("regarding.resourceVersion", "involvedObject.resourceVersion"),
    ("regarding.fieldPath", "involvedObject.fieldPath"),
    ("reportingController", "reportingComponent"),
];
/// Old v1 clients send `spec.host` for the node of a pod.
const POD_ALIASES: &[(&str, &str)] = &[("spec.host", "spec.nodeName")];
const JOB: &[&str] = &["metadata.name", "metadata.namespace", "status.successful"];

impl FieldSet {
    fn of(kind: &ResourceKind) -> FieldSet {
        match (kind.group, kind.resource) {
            ("", "pods") => FieldSet::Pod,
            ("", "nodes") => FieldSet::Node,
            ("", "namespaces") => FieldSet::Namespace,
            ("", "secrets") => FieldSet::Secret,
            ("", "services") => FieldSet::Service,
            ("", "events") => FieldSet::CoreEvent,
            ("events.k8s.io", "events") => FieldSet::Event,
            ("batch", "jobs") => FieldSet::Job,
            _ => FieldSet::Meta,
        }
    }

    /// The label `label` is selected under, or kube's message refusing it.
    fn convert(self, label: &str) -> Result<&'static str, String> {
        let (accepted, aliases): (&[&'static str], &[(&str, &'static str)]) = match self {
            FieldSet::Meta => (META, &[]),
            FieldSet::Pod => (POD, POD_ALIASES),
            FieldSet::Node => (NODE, &[]),
            FieldSet::Namespace => (NAMESPACE, &[]),
            FieldSet::Secret => (SECRET, &[]),
            FieldSet::Service => (SERVICE, &[]),
            FieldSet::CoreEvent => (CORE_EVENT, &[]),
            FieldSet::Event => (EVENT, EVENT_ALIASES),
            FieldSet::Job => (JOB, &[]),
        };
        if let Some(field) = accepted.iter().find(|f| **f == label) {
            return Ok(field);
        }
        if let Some((_, field)) = aliases.iter().find(|(from, _)| *from == label) {
            return Ok(field);
        }
        Err(match self {
            FieldSet::Meta => {
                format!("{label:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")
            }
            FieldSet::Job => format!("field label {label:?} not supported for Job"),
            _ => format!("field label not supported: {label}"),
        })
    }

    /// The value of a (converted) field label on `object`, as the kind's selectable fields
    /// have it: absent strings are empty, absent booleans `false`, absent counts `0`, and
    /// fields kube defaults on create read as their default.
    fn value<'a>(self, field: &str, object: &'a Value, namespaced: bool) -> Cow<'a, str> {
        let text = |path: &str| object.pointer(path).and_then(Value::as_str);
        let string = |path: &str| Cow::Borrowed(text(path).unwrap_or(""));
        let or = |path: &str, default: &'static str| Cow::Borrowed(text(path).unwrap_or(default));
        let flag =
            |path: &str| Cow::Borrowed(if object.pointer(path) == Some(&Value::Bool(true)) { "true" } else { "false" });
        match (self, field) {
            (_, "metadata.name") => string("/metadata/name"),
            (_, "metadata.namespace") if namespaced => string("/metadata/namespace"),
            (FieldSet::Pod, "spec.nodeName") => string("/spec/nodeName"),
            (FieldSet::Pod, "spec.restartPolicy") => or("/spec/restartPolicy", "Always"),
            (FieldSet::Pod, "spec.schedulerName") => or("/spec/schedulerName", "default-scheduler"),
            (FieldSet::Pod, "spec.serviceAccountName") => string("/spec/serviceAccountName"),
            (FieldSet::Pod, "spec.hostNetwork") => flag("/spec/hostNetwork"),
            (FieldSet::Pod, "status.phase") => or("/status/phase", "Pending"),
            (FieldSet::Pod, "status.podIP") => {
                Cow::Borrowed(text("/status/podIPs/0/ip").or(text("/status/podIP")).unwrap_or(""))
            }
            (FieldSet::Pod, "status.nominatedNodeName") => string("/status/nominatedNodeName"),
            (FieldSet::Node, "spec.unschedulable") => flag("/spec/unschedulable"),
            (FieldSet::Namespace, "status.phase") => or("/status/phase", "Active"),
            (FieldSet::Secret, "type") => or("/type", "Opaque"),
            (FieldSet::Service, "spec.clusterIP") => string("/spec/clusterIP"),
            (FieldSet::Service, "spec.type") => or("/spec/type", "ClusterIP"),
            (FieldSet::CoreEvent, "source") => Cow::Borrowed(
                text("/source/component").filter(|s| !s.is_empty()).or(text("/reportingComponent")).unwrap_or(""),
            ),
            (FieldSet::CoreEvent | FieldSet::Event, "reason" | "type") => string(&format!("/{field}")),
            (FieldSet::CoreEvent, "reportingComponent") => string("/reportingComponent"),
            (FieldSet::Event, "reportingComponent") => string("/reportingController"),
            (FieldSet::CoreEvent | FieldSet::Event, _) if field.starts_with("involvedObject.") => {
                let member = &field["involvedObject.".len()..];
                let parent = if self == FieldSet::Event { "regarding" } else { "involvedObject" };
                string(&format!("/{parent}/{member}"))
            }
            (FieldSet::Job, "status.successful") => match object.pointer("/status/succeeded") {
                Some(Value::Number(n)) => Cow::Owned(n.to_string()),
                _ => Cow::Borrowed("0"),
            },
            // Accepted but not selectable (`status.podIPs`), or `metadata.namespace` of a
            // cluster-scoped kind: kube matches these against the empty string.
            _ => Cow::Borrowed(""),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::find;

    fn labels(selector: &str) -> LabelSelector {
        LabelSelector::parse(selector).unwrap()
    }

    fn error(selector: &str) -> String {
        LabelSelector::parse(selector).unwrap_err().0
    }

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "x", "namespace": "default", "labels": labels}})
    }

    fn selects(selector: &str, l: Value) -> bool {
        labels(selector).matches(obj(l).pointer("/metadata/labels"))
    }

    #[test]
    fn every_label_operator_matches_as_in_kube() {
        let web = json!({"app": "web", "tier": "a", "n": "5"});
        for (selector, want) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (web,db)", true),
            ("app in (db)", false),
            ("app notin (db)", true),
            ("app notin (web)", false),
            ("missing notin (x)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier in (a,b)", true),
            ("app=web,tier=b", false),
            ("n>4", true),
            ("n>5", false),
            ("n<6", true),
            ("missing>1", false),
            ("app>1", false),
            ("  app = web , tier notin ( b , c ) ", true),
            ("x in (in,notin)", false),
        ] {
            assert_eq!(selects(selector, web.clone()), want, "{selector}");
        }
        assert!(selects("app=", json!({"app": ""})));
        assert!(selects("app in (,x)", json!({"app": ""})));
        assert!(selects("app in ()", json!({"app": ""})));
        assert!(!selects("app", Value::Null));
        assert!(selects("!app", Value::Null));
        assert!(selects("in in (in)", json!({"in": "in"})), "keywords are values after an operator");
    }

    #[test]
    fn requirements_are_sorted_by_key_with_sorted_unique_values() {
        let parsed = labels("z=1,a in (c,b,c)");
        assert_eq!(
            parsed.requirements[0],
            Requirement { key: "a".into(), op: Operator::In, values: vec!["b".into(), "c".into()] }
        );
        assert_eq!(parsed.requirements[1].key, "z");
    }

    #[test]
    fn bad_label_selectors_fail_with_kubes_messages() {
        let name_rule = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
        assert_eq!(
            error("app:web"),
            format!("unable to parse requirement: <nil>: Invalid value: \"app:web\": {name_rule}")
        );
        assert_eq!(
            error("a/b/c=1"),
            "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        );
        assert!(error("Example.com/a=b").starts_with("unable to parse requirement: <nil>: Invalid value: \"Example.com/a\": prefix part a lowercase RFC 1123 subdomain"));
        assert_eq!(
            error("/a"),
            "unable to parse requirement: <nil>: Invalid value: \"/a\": prefix part must be non-empty"
        );
        assert_eq!(
            error("a/"),
            format!(
                "unable to parse requirement: <nil>: Invalid value: \"a/\": name part must be non-empty; {name_rule}"
            )
        );
        assert_eq!(
            error("a=b$"),
            "unable to parse requirement: values[0][a]: Invalid value: \"b$\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        );
        assert!(error(&format!("a={}", "v".repeat(64))).starts_with(&format!(
            "unable to parse requirement: values[0][a]: Invalid value: \"{}\": must be no more than 63 characters",
            "v".repeat(64)
        )));
        assert_eq!(
            error("a>x"),
            "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        assert_eq!(error("a in b"), "unable to parse requirement: found 'b' expected: '('");
        assert_eq!(error("a in (b"), "unable to parse requirement: found '', expected: ',' or ')'");
        assert_eq!(error("a in (b c)"), "unable to parse requirement: found 'c', expected: ',' or ')'");
        assert_eq!(error("a in (=)"), "unable to parse requirement: found '=', expected: ',', ')' or identifier");
        assert_eq!(error("a b"), "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt");
        assert_eq!(error("a=b c"), "found 'c', expected: ',' or 'end of string'");
        assert_eq!(error("a=b,"), "found '', expected: identifier after ','");
        assert_eq!(error(",a"), "found ',', expected: !, identifier, or 'end of string'");
        assert_eq!(error("!=a"), "found '!=', expected: !, identifier, or 'end of string'");
        assert_eq!(error("!a=b"), "found '=', expected: ',' or 'end of string'");
        assert_eq!(error("a=(b)"), "unable to parse requirement: found '(', expected: identifier");
    }

    #[test]
    fn double_equals_with_nothing_after_is_the_empty_value() {
        // `a==` is `a == ""` (the value may be empty), like `a=`.
        assert!(LabelSelector::parse("a==").is_ok());
        assert!(LabelSelector::parse("a=").is_ok());
    }

    fn cm() -> &'static ResourceKind {
        find("", "v1", "configmaps").unwrap()
    }

    fn fields(kind: &ResourceKind, selector: &str) -> Result<FieldSelector, String> {
        FieldSelector::parse(kind, selector).map_err(|e| e.0)
    }

    #[test]
    fn field_selectors_parse_terms_and_escapes() {
        let parsed = fields(cm(), "metadata.name=a\\,b,metadata.namespace!=x").unwrap();
        assert_eq!(parsed.terms.len(), 2);
        assert_eq!(parsed.terms[0], FieldTerm { field: "metadata.name", value: "a,b".into(), negated: false });
        assert_eq!(parsed.terms[1], FieldTerm { field: "metadata.namespace", value: "x".into(), negated: true });
        assert_eq!(fields(cm(), "metadata.name==a").unwrap().terms[0].value, "a");
        assert!(fields(cm(), "").unwrap().is_empty());
        assert!(fields(cm(), ",").unwrap().is_empty());
        assert_eq!(fields(cm(), "x").unwrap_err(), "invalid selector: 'x'; can't understand 'x'");
        assert_eq!(
            fields(cm(), "metadata.name=a=b").unwrap_err(),
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(
            fields(cm(), "metadata.name=a\\b").unwrap_err(),
            "invalid field selector: invalid escape sequence: \\b"
        );
        assert_eq!(
            fields(cm(), "metadata.name=a\\").unwrap_err(),
            "invalid field selector: invalid escape sequence: \\"
        );
    }

    #[test]
    fn unsupported_fields_fail_with_each_kinds_message() {
        assert_eq!(
            fields(cm(), "status.phase=x").unwrap_err(),
            "\"status.phase\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(fields(pods, "spec.bogus=x").unwrap_err(), "field label not supported: spec.bogus");
        assert_eq!(fields(pods, "spec.host=n1").unwrap().terms[0].field, "spec.nodeName");
        let jobs = find("batch", "v1", "jobs").unwrap();
        assert_eq!(fields(jobs, "spec.x=1").unwrap_err(), "field label \"spec.x\" not supported for Job");
        let nodes = find("", "v1", "nodes").unwrap();
        assert_eq!(fields(nodes, "metadata.namespace=x").unwrap_err(), "field label not supported: metadata.namespace");
        let rs = find("apps", "v1", "replicasets").unwrap();
        assert!(fields(rs, "status.replicas=1").unwrap_err().contains("is not a known field selector"));
        let events = find("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(fields(events, "regarding.name=p").unwrap().terms[0].field, "involvedObject.name");
        assert_eq!(
            fields(events, "involvedObject.name=p").unwrap_err(),
            "field label not supported: involvedObject.name"
        );
        // Terms are checked in sorted order, after all of them parse.
        assert_eq!(
            fields(cm(), "z=1,a=1").unwrap_err(),
            "\"a\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
    }

    #[test]
    fn field_values_come_from_the_object_with_kubes_defaults() {
        let pods = find("", "v1", "pods").unwrap();
        let pod = json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": "n1", "hostNetwork": true},
            "status": {"podIPs": [{"ip": "10.0.0.1"}]},
        });
        let select = |kind, selector: &str, o: &Value| fields(kind, selector).unwrap().matches(o);
        assert!(select(pods, "spec.nodeName=n1,metadata.namespace=default", &pod));
        assert!(select(pods, "spec.hostNetwork=true,status.podIP=10.0.0.1", &pod));
        assert!(select(pods, "status.phase=Pending,spec.restartPolicy=Always", &pod));
        assert!(select(pods, "status.podIPs=", &pod), "accepted but never set");
        assert!(!select(pods, "spec.nodeName!=n1", &pod));
        let nodes = find("", "v1", "nodes").unwrap();
        assert!(select(nodes, "spec.unschedulable=false", &json!({"metadata": {"name": "n"}})));
        let secrets = find("", "v1", "secrets").unwrap();
        assert!(select(secrets, "type=Opaque", &json!({"metadata": {"name": "s"}})));
        assert!(!select(secrets, "type=Opaque", &json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls"})));
        let events = find("", "v1", "events").unwrap();
        let event = json!({
            "involvedObject": {"kind": "Pod", "name": "p"},
            "reason": "Pulled",
            "reportingComponent": "kubelet",
        });
        assert!(select(events, "involvedObject.kind=Pod,involvedObject.name=p,reason=Pulled,source=kubelet", &event));
        let new_events = find("events.k8s.io", "v1", "events").unwrap();
        let event = json!({"regarding": {"kind": "Pod"}, "reportingController": "kubelet", "type": "Normal"});
        assert!(select(new_events, "regarding.kind=Pod,reportingController=kubelet,type=Normal", &event));
        let jobs = find("batch", "v1", "jobs").unwrap();
        assert!(select(jobs, "status.successful=0", &json!({})));
        assert!(select(jobs, "status.successful=3", &json!({"status": {"succeeded": 3}})));
        let ns = find("", "v1", "namespaces").unwrap();
        assert!(select(ns, "status.phase=Active", &json!({"metadata": {"name": "a"}})));
        let pvs = find("", "v1", "persistentvolumes").unwrap();
        assert!(select(pvs, "metadata.namespace=", &json!({"metadata": {"name": "a"}})), "cluster-scoped: empty");
    }

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.to_string().into_bytes(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
        }
    }

    #[test]
    fn selectors_match_candidates_by_key_or_by_object() {
        let a = kv("/registry/core/configmaps/team/a", json!({"metadata": {"name": "a", "labels": {"app": "web"}}}));
        let garbage = KeyValue { value: b"not json".to_vec(), ..kv("/registry/core/configmaps/team/b", Value::Null) };
        let parse = |l: &str, f: &str| Selectors::parse(cm(), l, f).unwrap();
        assert!(parse("", "").matches(&Candidate::new(&garbage)), "everything selects anything");
        // Name and namespace come from the key: the stored body is not even read.
        assert!(parse("", "metadata.name=b,metadata.namespace=team").matches(&Candidate::new(&garbage)));
        assert!(!parse("", "metadata.name=a").matches(&Candidate::new(&garbage)));
        assert!(parse("app=web", "metadata.name=a").matches(&Candidate::new(&a)));
        assert!(!parse("app=db", "").matches(&Candidate::new(&a)));
        assert!(!parse("app=web", "").matches(&Candidate::new(&garbage)));
        assert_eq!(parse("", "metadata.namespace=team").namespace(), Some("team"));
        assert_eq!(parse("", "metadata.namespace!=team").namespace(), None);
        assert_eq!(
            Selectors::parse(cm(), "a b", "bogus").unwrap_err().0,
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
            "label errors first"
        );
        assert_eq!(ApiError::from(SelectorError("x".into())).code(), 400);
    }
}
