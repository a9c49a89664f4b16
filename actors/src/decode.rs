//! Decoding written objects against their kind's schema, as kube-apiserver's JSON decoder
//! (`sigs.k8s.io/json` into the Go types) does: a value of the wrong JSON type fails with Go's
//! `json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type
//! int32`; int-or-string, quantity, `int32`/`int64` range and base64 (`format: byte`) values are
//! checked; unknown and duplicate fields are dropped and reported as `fieldValidation` asks
//! (`Strict`: 400, `Warn`, the default: `Warning` headers, `Ignore`: silently).
//!
//! Bodies are walked as [`Node`]s, which keep objects' members in document order with their
//! duplicates, so that strict errors are listed in the order kube-apiserver lists them;
//! objects a patch produced are walked in key order.

use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::api_error::{ApiError, ApiResult, FieldCause, Subject};
use crate::kinds::ResourceKind;
use crate::patch::PatchKind;
use crate::schemas;

/// Most strict errors one decode keeps (as `sigs.k8s.io/json`).
const MAX_STRICT_ERRORS: usize = 100;
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const QUANTITY_FORMAT: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
const QUANTITY_SUFFIX: &str = "unable to parse quantity's suffix";

/// What to do with unknown and duplicate fields: the `fieldValidation` parameter of writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and warn the client (the default).
    #[default]
    Warn,
    /// Refuse the write.
    Strict,
}

impl FieldValidation {
    /// The `fieldValidation` query parameter of a write whose options are `options_kind`
    /// (`CreateOptions`, `UpdateOptions`, `PatchOptions`): absent or empty is `Warn`; any
    /// other unknown value is refused with 422, as kube-apiserver validates the options.
    pub fn parse(param: Option<&str>, options_kind: &'static str) -> ApiResult<FieldValidation> {
        match param.unwrap_or("") {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            "Strict" => Ok(FieldValidation::Strict),
            other => {
                let cause = FieldCause::not_supported("fieldValidation", other, &["", "Ignore", "Strict", "Warn"]);
                let subject = Subject { group: "meta.k8s.io", resource: "", kind: options_kind, name: String::new() };
                Err(ApiError::Invalid { subject, causes: vec![cause] })
            }
        }
    }
}

/// A JSON value whose objects keep their members in order, duplicates included.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl Node {
    /// Parses a JSON body.
    pub fn parse(body: &[u8]) -> Result<Node, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// The node of a parsed value (members in key order).
    pub fn from_value(value: &Value) -> Node {
        match value {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => Node::Number(n.clone()),
            Value::String(s) => Node::String(s.clone()),
            Value::Array(items) => Node::Array(items.iter().map(Node::from_value).collect()),
            Value::Object(map) => Node::Object(map.iter().map(|(k, v)| (k.clone(), Node::from_value(v))).collect()),
        }
    }

    /// The value: of duplicated members, the last.
    pub fn into_value(self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::Number(n) => Value::Number(n),
            Node::String(s) => Value::String(s),
            Node::Array(items) => Value::Array(items.into_iter().map(Node::into_value).collect()),
            Node::Object(members) => Value::Object(members.into_iter().map(|(k, v)| (k, v.into_value())).collect()),
        }
    }

    /// How Go's decoder names this kind of JSON value in type errors.
    fn go_kind(&self) -> String {
        match self {
            Node::Null => "null".into(),
            Node::Bool(_) => "bool".into(),
            Node::Number(_) => "number".into(),
            Node::String(_) => "string".into(),
            Node::Array(_) => "array".into(),
            Node::Object(_) => "object".into(),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node, E> {
        Ok(Node::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Node, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Node, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Node, E> {
        Ok(Number::from_f64(n).map_or(Node::Null, Node::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Node, E> {
        Ok(Node::String(s.into()))
    }

    fn visit_string<E>(self, s: String) -> Result<Node, E> {
        Ok(Node::String(s))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut members = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Node>()? {
            members.push((key, value));
        }
        Ok(Node::Object(members))
    }
}

/// What a schema stands for, as the Go type it was generated from.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Anything goes (`RawExtension`, `FieldsV1`, `JSON`, `oneOf`s).
    Any,
    /// A struct: its definition name and properties.
    Struct(&'static str, &'static Map<String, Value>),
    /// A map with string keys, of values of this schema.
    Map(&'static Value),
    /// A list of items of this schema.
    List(&'static Value),
    Int(u32),
    Float,
    Str,
    Bytes,
    Bool,
    IntOrString,
    Quantity,
    Time,
}

/// The definition a schema refers to (`$ref`, or the lone entry of an `allOf`).
fn reference(schema: &Value) -> Option<&str> {
    let reference = match schema.get("allOf").and_then(Value::as_array) {
        Some(all_of) if all_of.len() == 1 => all_of[0].get("$ref"),
        _ => schema.get("$ref"),
    };
    reference.and_then(Value::as_str).and_then(schemas::ref_name)
}

fn shape(schema: &'static Value) -> Shape {
    let (name, schema) = match reference(schema) {
        Some(name) => match schemas::definitions().get_key_value(name) {
            Some((name, definition)) => (name.as_str(), definition),
            None => return Shape::Any,
        },
        None => ("", schema),
    };
    match name {
        INT_OR_STRING => return Shape::IntOrString,
        QUANTITY => return Shape::Quantity,
        _ => {}
    }
    if schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        return Shape::IntOrString;
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        return Shape::Struct(name, properties);
    }
    let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
    match schema.get("type").and_then(Value::as_str).unwrap_or("") {
        "object" => match schema.get("additionalProperties") {
            Some(values) if values.is_object() => Shape::Map(values),
            _ => Shape::Any,
        },
        "array" => schema.get("items").map_or(Shape::Any, Shape::List),
        "integer" if format == "int32" => Shape::Int(32),
        "integer" => Shape::Int(64),
        "number" => Shape::Float,
        "string" if format == "byte" => Shape::Bytes,
        "string" if format == "date-time" => Shape::Time,
        "string" => Shape::Str,
        "boolean" => Shape::Bool,
        _ => Shape::Any,
    }
}

/// `DeploymentSpec` from `io.k8s.api.apps.v1.DeploymentSpec`.
fn short_name(definition: &str) -> &str {
    definition.rsplit('.').next().unwrap_or(definition)
}

/// The Go type of a definition: `v1.DeploymentSpec`, `intstr.IntOrString`.
fn go_name(definition: &str) -> String {
    let mut parts = definition.rsplit('.');
    match (parts.next(), parts.next()) {
        (Some(name), Some(package)) => format!("{package}.{name}"),
        _ => definition.to_string(),
    }
}

/// String fields whose Go type is a named string type (`v1.PullPolicy`), by struct and
/// field, for the type in error messages; lists of them name their items' type.
const NAMED_STRINGS: &[(&str, &str, &str)] = &[
    ("Container", "imagePullPolicy", "v1.PullPolicy"),
    ("Container", "terminationMessagePolicy", "v1.TerminationMessagePolicy"),
    ("Container", "restartPolicy", "v1.ContainerRestartPolicy"),
    ("EphemeralContainer", "imagePullPolicy", "v1.PullPolicy"),
    ("EphemeralContainer", "terminationMessagePolicy", "v1.TerminationMessagePolicy"),
    ("ContainerPort", "protocol", "v1.Protocol"),
    ("ServicePort", "protocol", "v1.Protocol"),
    ("EndpointPort", "protocol", "v1.Protocol"),
    ("PodSpec", "restartPolicy", "v1.RestartPolicy"),
    ("PodSpec", "dnsPolicy", "v1.DNSPolicy"),
    ("PodSpec", "preemptionPolicy", "v1.PreemptionPolicy"),
    ("ServiceSpec", "type", "v1.ServiceType"),
    ("ServiceSpec", "sessionAffinity", "v1.ServiceAffinity"),
    ("ServiceSpec", "externalTrafficPolicy", "v1.ServiceExternalTrafficPolicy"),
    ("ServiceSpec", "internalTrafficPolicy", "v1.ServiceInternalTrafficPolicy"),
    ("ServiceSpec", "ipFamilies", "v1.IPFamily"),
    ("ServiceSpec", "ipFamilyPolicy", "v1.IPFamilyPolicy"),
    ("Secret", "type", "v1.SecretType"),
    ("PersistentVolumeClaimSpec", "accessModes", "v1.PersistentVolumeAccessMode"),
    ("PersistentVolumeClaimSpec", "volumeMode", "v1.PersistentVolumeMode"),
    ("PersistentVolumeSpec", "accessModes", "v1.PersistentVolumeAccessMode"),
    ("PersistentVolumeSpec", "volumeMode", "v1.PersistentVolumeMode"),
    ("PersistentVolumeSpec", "persistentVolumeReclaimPolicy", "v1.PersistentVolumeReclaimPolicy"),
    ("NamespaceSpec", "finalizers", "v1.FinalizerName"),
    ("NamespaceStatus", "phase", "v1.NamespacePhase"),
    ("PodStatus", "phase", "v1.PodPhase"),
    ("Toleration", "operator", "v1.TolerationOperator"),
    ("Toleration", "effect", "v1.TaintEffect"),
    ("Taint", "effect", "v1.TaintEffect"),
    ("HTTPGetAction", "scheme", "v1.URIScheme"),
    ("DeploymentStrategy", "type", "v1.DeploymentStrategyType"),
    ("StatefulSetSpec", "podManagementPolicy", "v1.PodManagementPolicyType"),
    ("StatefulSetUpdateStrategy", "type", "v1.StatefulSetUpdateStrategyType"),
    ("DaemonSetUpdateStrategy", "type", "v1.DaemonSetUpdateStrategyType"),
    ("CronJobSpec", "concurrencyPolicy", "v1.ConcurrencyPolicy"),
    ("JobSpec", "completionMode", "v1.CompletionMode"),
    ("JobSpec", "podReplacementPolicy", "v1.PodReplacementPolicy"),
    ("LabelSelectorRequirement", "operator", "v1.LabelSelectorOperator"),
    ("ObjectMeta", "uid", "types.UID"),
    ("OwnerReference", "uid", "types.UID"),
    ("ManagedFieldsEntry", "operation", "v1.ManagedFieldsOperationType"),
];

fn named_string(definition: &str, field: &str) -> Option<&'static str> {
    let name = short_name(definition);
    NAMED_STRINGS.iter().find(|(s, f, _)| *s == name && *f == field).map(|(_, _, t)| *t)
}

/// The Go type a schema decodes into, as type errors name it.
fn go_type(schema: &'static Value, named: Option<&'static str>) -> String {
    match shape(schema) {
        Shape::Struct(..) | Shape::Any if reference(schema).is_some() => {
            reference(schema).map(go_name).unwrap_or_default()
        }
        Shape::Struct(..) => "struct {}".into(),
        Shape::Any => "map[string]interface {}".into(),
        Shape::Map(values) if matches!(shape(values), Shape::Quantity) => "v1.ResourceList".into(),
        Shape::Map(values) => format!("map[string]{}", go_type(values, named)),
        Shape::List(items) => format!("[]{}", go_type(items, named)),
        Shape::Int(bits) => format!("int{bits}"),
        Shape::Float => "float64".into(),
        Shape::Str => named.unwrap_or("string").into(),
        Shape::Bytes => "[]uint8".into(),
        Shape::Bool => "bool".into(),
        Shape::IntOrString => "intstr.IntOrString".into(),
        Shape::Quantity => "resource.Quantity".into(),
        Shape::Time => "v1.Time".into(),
    }
}

/// The walk of one object against its schema.
#[derive(Default)]
struct Walk {
    /// Unknown and duplicate fields, in the order met.
    strict: Vec<String>,
    /// The first error Go's decoder saves and decoding goes on past (a type mismatch).
    saved: Option<String>,
    /// An error that stops decoding (a custom unmarshaler's: int-or-string, quantity, time).
    fatal: Option<String>,
    /// The strict errors' path: `spec.template.spec.containers[0].image`.
    path: String,
    /// Go's error context: the struct fields entered, and the innermost struct.
    go_fields: Vec<String>,
    go_struct: &'static str,
}

impl Walk {
    fn strict_error(&mut self, what: &str) {
        let message = format!("{what} field {:?}", self.path);
        if self.strict.len() < MAX_STRICT_ERRORS && !self.strict.contains(&message) {
            self.strict.push(message);
        }
    }

    /// Go's `UnmarshalTypeError` text, in the current context.
    fn type_message(&self, got: &str, go_type: &str) -> String {
        if self.go_fields.is_empty() {
            format!("json: cannot unmarshal {got} into Go value of type {go_type}")
        } else {
            let field = self.go_fields.join(".");
            format!("json: cannot unmarshal {got} into Go struct field {}.{field} of type {go_type}", self.go_struct)
        }
    }

    fn save(&mut self, message: String) {
        if self.saved.is_none() {
            self.saved = Some(message);
        }
    }

    fn type_error(&mut self, got: &str, schema: &'static Value, named: Option<&'static str>) {
        let message = self.type_message(got, &go_type(schema, named));
        self.save(message);
    }

    fn stopped(&self) -> bool {
        self.fatal.is_some()
    }

    /// `node` decoded as `schema`: unknown fields and null struct fields left out.
    fn walk(&mut self, node: Node, schema: &'static Value, named: Option<&'static str>) -> Value {
        if matches!(node, Node::Null) {
            return Value::Null;
        }
        match shape(schema) {
            Shape::Any => node.into_value(),
            Shape::Struct(definition, properties) => match node {
                Node::Object(members) => self.walk_struct(members, definition, properties),
                other => {
                    self.type_error(&other.go_kind(), schema, named);
                    other.into_value()
                }
            },
            Shape::Map(values) => match node {
                Node::Object(members) => self.walk_map(members, values, named),
                other => {
                    self.type_error(&other.go_kind(), schema, named);
                    other.into_value()
                }
            },
            Shape::List(items) => match node {
                Node::Array(elements) => {
                    let mut out = Vec::with_capacity(elements.len());
                    for (i, element) in elements.into_iter().enumerate() {
                        let at = self.path.len();
                        self.path.push_str(&format!("[{i}]"));
                        out.push(self.walk(element, items, named));
                        self.path.truncate(at);
                        if self.stopped() {
                            break;
                        }
                    }
                    Value::Array(out)
                }
                other => {
                    self.type_error(&other.go_kind(), schema, named);
                    other.into_value()
                }
            },
            Shape::Int(bits) => {
                match &node {
                    Node::Number(n) => {
                        let fits = match n.as_i64() {
                            Some(i) if bits == 32 => i32::try_from(i).is_ok(),
                            Some(_) => true,
                            None => false,
                        };
                        if !fits {
                            self.type_error(&format!("number {n}"), schema, named);
                        }
                    }
                    other => self.type_error(&other.go_kind(), schema, named),
                }
                node.into_value()
            }
            Shape::Float => {
                if !matches!(node, Node::Number(_)) {
                    self.type_error(&node.go_kind(), schema, named);
                }
                node.into_value()
            }
            Shape::Str => {
                if !matches!(node, Node::String(_)) {
                    self.type_error(&node.go_kind(), schema, named);
                }
                node.into_value()
            }
            Shape::Time => {
                if !matches!(node, Node::String(_)) {
                    // metav1.Time unmarshals a string first, and stops at anything else.
                    self.fatal = Some(self.type_message(&node.go_kind(), "string"));
                }
                node.into_value()
            }
            Shape::Bool => {
                if !matches!(node, Node::Bool(_)) {
                    self.type_error(&node.go_kind(), schema, named);
                }
                node.into_value()
            }
            Shape::Bytes => {
                match &node {
                    Node::String(s) => {
                        if let Some(at) = base64_error(s) {
                            self.save(format!("illegal base64 data at input byte {at}"));
                        }
                    }
                    other => self.type_error(&other.go_kind(), schema, named),
                }
                node.into_value()
            }
            Shape::IntOrString => {
                let got = match &node {
                    Node::String(_) => None,
                    Node::Number(n) if n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()) => None,
                    Node::Number(n) => Some(format!("number {n}")),
                    other => Some(other.go_kind()),
                };
                if let Some(got) = got {
                    // IntOrString unmarshals anything but a string into its int32.
                    self.fatal = Some(self.type_message(&got, "int32"));
                }
                node.into_value()
            }
            Shape::Quantity => {
                let text = match &node {
                    Node::String(s) => s.clone(),
                    Node::Number(n) => n.to_string(),
                    other => other.clone().into_value().to_string(),
                };
                if let Err(e) = parse_quantity(text.trim()) {
                    self.fatal = Some(e.into());
                }
                node.into_value()
            }
        }
    }

    fn walk_struct(
        &mut self,
        members: Vec<(String, Node)>,
        definition: &'static str,
        properties: &'static Map<String, Value>,
    ) -> Value {
        let mut out = Map::new();
        let mut seen = HashSet::new();
        for (key, member) in members {
            let at = self.path.len();
            if !self.path.is_empty() {
                self.path.push('.');
            }
            self.path.push_str(&key);
            match properties.get_key_value(&key) {
                Some((name, schema)) => {
                    if !seen.insert(name.as_str()) {
                        self.strict_error("duplicate");
                    }
                    let outer = self.go_struct;
                    self.go_fields.push(key.clone());
                    self.go_struct = short_name(definition);
                    if matches!(member, Node::Null) {
                        // A null leaves the Go field unset: it is not written back.
                        out.remove(&key);
                    } else {
                        let value = self.walk(member, schema, named_string(definition, &key));
                        out.insert(key, value);
                    }
                    self.go_fields.pop();
                    self.go_struct = outer;
                }
                None => self.strict_error("unknown"),
            }
            self.path.truncate(at);
            if self.stopped() {
                break;
            }
        }
        Value::Object(out)
    }

    fn walk_map(&mut self, members: Vec<(String, Node)>, values: &'static Value, named: Option<&'static str>) -> Value {
        let mut out = Map::new();
        let mut seen = HashSet::new();
        for (key, member) in members {
            let at = self.path.len();
            if !self.path.is_empty() {
                self.path.push('.');
            }
            self.path.push_str(&key);
            if !seen.insert(key.clone()) {
                self.strict_error("duplicate");
            }
            let value = match member {
                // Go decodes a null map value as the zero value.
                Node::Null if matches!(shape(values), Shape::Str) => Value::String(String::new()),
                member => self.walk(member, values, named),
            };
            out.insert(key, value);
            self.path.truncate(at);
            if self.stopped() {
                break;
            }
        }
        Value::Object(out)
    }
}

/// What decoding an object found.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The object as decoded: unknown fields and null fields left out.
    pub value: Value,
    /// `unknown field "spec.foo"`, `duplicate field "spec.replicas"`, in the order met.
    pub strict: Vec<String>,
    /// Why the object cannot be decoded (Go's wording), if it cannot.
    pub error: Option<String>,
}

/// Prunes a custom object's fields its CRD's schema does not know (unless the CRD keeps
/// unknown fields); returns them as `unknown field "spec.foo"`.
fn prune_custom(kind: &ResourceKind, value: &mut Value) -> Vec<String> {
    let Some(custom) = crate::custom_kinds::of(kind) else { return Vec::new() };
    let schema = custom.version(kind.version).and_then(|v| v.schema.as_ref());
    match schema {
        Some(schema) if !custom.preserve_unknown_fields => {
            crate::crd_schema::prune(value, schema).into_iter().map(|p| format!("unknown field {p:?}")).collect()
        }
        _ => Vec::new(),
    }
}

/// Decodes `node` as the definition `definition` (`io.k8s.api.apps.v1.Deployment`).
pub fn decode(definition: &str, node: Node) -> Decoded {
    let Some((name, schema)) = schemas::definitions().get_key_value(definition) else {
        return Decoded { value: node.into_value(), strict: Vec::new(), error: None };
    };
    let mut walk = Walk::default();
    let value = match (shape(schema), node) {
        (Shape::Struct(_, properties), Node::Object(members)) => walk.walk_struct(members, name, properties),
        // Not an object: left to the envelope checks, which answer 400.
        (_, node) => node.into_value(),
    };
    let error = walk.fatal.or(walk.saved);
    Decoded { value, strict: walk.strict, error }
}

/// The definition and the Kind a write of `kind` (or of its `Scale`) is decoded as.
fn target(kind: &ResourceKind, scale: bool) -> Option<(&'static str, &'static str)> {
    if scale {
        Some((schemas::SCALE, "Scale"))
    } else {
        schemas::definition_of(kind).map(|definition| (definition, kind.kind))
    }
}

/// A create or update body of `kind` (its `Scale` for the `scale` subresource), decoded: 400
/// with kube-apiserver's `Deployment in version "v1" cannot be handled as a Deployment: ...`
/// for type errors and, under `Strict`, for unknown or duplicate fields, which `Warn` turns
/// into warnings. Returns the object and the warnings.
pub fn decode_body(
    kind: &ResourceKind,
    scale: bool,
    body: &[u8],
    validation: FieldValidation,
) -> ApiResult<(Value, Vec<String>)> {
    let node = Node::parse(body).map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    if !scale && crate::custom_kinds::of(kind).is_some() {
        let mut value = node.into_value();
        let unknown = prune_custom(kind, &mut value);
        let version = value.get("apiVersion").and_then(Value::as_str).unwrap_or(kind.version);
        let version = version.rsplit('/').next().unwrap_or_default().to_string();
        let refuse = |why: &str| {
            ApiError::BadRequest(format!(
                "{} in version {version:?} cannot be handled as a {}: {why}",
                kind.kind, kind.kind
            ))
        };
        return match validation {
            FieldValidation::Strict if !unknown.is_empty() => {
                Err(refuse(&format!("strict decoding error: {}", unknown.join(", "))))
            }
            FieldValidation::Strict | FieldValidation::Ignore => Ok((value, Vec::new())),
            FieldValidation::Warn => Ok((value, unknown)),
        };
    }
    let Some((definition, target_kind)) = target(kind, scale) else {
        return Ok((node.into_value(), Vec::new()));
    };
    // The body names its own Kind and version in the message, as kube-apiserver's decoder.
    let named = |field: &str| match &node {
        Node::Object(members) => members.iter().rev().find(|(k, _)| k == field).and_then(|(_, v)| match v {
            Node::String(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        }),
        _ => None,
    };
    let body_kind = named("kind").unwrap_or_else(|| target_kind.to_string());
    let version = named("apiVersion")
        .map(|v| v.rsplit('/').next().unwrap_or_default().to_string())
        .unwrap_or_else(|| if scale { "v1".into() } else { kind.version.to_string() });
    let decoded = decode(definition, node);
    let refuse = |why: &str| {
        ApiError::BadRequest(format!("{body_kind} in version {version:?} cannot be handled as a {target_kind}: {why}"))
    };
    if let Some(error) = &decoded.error {
        return Err(refuse(error));
    }
    let warnings = match validation {
        FieldValidation::Strict if !decoded.strict.is_empty() => {
            return Err(refuse(&format!("strict decoding error: {}", decoded.strict.join(", "))))
        }
        FieldValidation::Strict | FieldValidation::Ignore => Vec::new(),
        FieldValidation::Warn => decoded.strict,
    };
    Ok((decoded.value, warnings))
}

/// Checks the object a JSON, merge or strategic merge patch of `kind` (or of its `Scale`)
/// produced, as kube-apiserver decodes it: type errors, and under `Strict` unknown or
/// duplicate fields, are 422 `patch: Invalid value: ...`; `Warn` turns the latter into
/// warnings. Returns the object with unknown fields dropped, and the warnings.
pub fn check_patched(
    kind: &ResourceKind,
    scale: bool,
    patched: Value,
    (patch_kind, patch): (PatchKind, &[u8]),
    validation: FieldValidation,
) -> ApiResult<(Value, Vec<String>)> {
    let mut strict = match validation {
        FieldValidation::Ignore => Vec::new(),
        _ => patch_strict_errors(patch_kind, patch),
    };
    if !scale && crate::custom_kinds::of(kind).is_some() {
        let mut value = patched;
        strict.extend(prune_custom(kind, &mut value));
        return match validation {
            FieldValidation::Strict if !strict.is_empty() => {
                let subject = Subject { group: "", resource: "", kind: "", name: String::new() };
                let why = format!("strict decoding error: {}", strict.join(", "));
                let cause = FieldCause::invalid("patch", &value.to_string(), why);
                Err(ApiError::Invalid { subject, causes: vec![cause] })
            }
            FieldValidation::Strict | FieldValidation::Ignore => Ok((value, Vec::new())),
            FieldValidation::Warn => Ok((value, strict)),
        };
    }
    let Some((definition, _)) = target(kind, scale) else { return Ok((patched, Vec::new())) };
    // What the message shows: the patched object's JSON, or a strategic patch as Go prints it.
    let shown = |patched: &Value| match patch_kind {
        PatchKind::Strategic => serde_json::from_slice::<Value>(patch).map(|p| go_value(&p)).unwrap_or_default(),
        _ => patched.to_string(),
    };
    let invalid = |shown: String, why: String| {
        let subject = Subject { group: "", resource: "", kind: "", name: String::new() };
        ApiError::Invalid { subject, causes: vec![FieldCause::invalid("patch", &shown, why)] }
    };
    let decoded = decode(definition, Node::from_value(&patched));
    if let Some(error) = decoded.error {
        return Err(invalid(shown(&patched), error));
    }
    strict.extend(decoded.strict);
    match validation {
        FieldValidation::Strict if !strict.is_empty() => {
            Err(invalid(shown(&patched), format!("strict decoding error: {}", strict.join(", "))))
        }
        FieldValidation::Strict | FieldValidation::Ignore => Ok((decoded.value, Vec::new())),
        FieldValidation::Warn => Ok((decoded.value, strict)),
    }
}

/// The strict errors of a patch body itself: its duplicate fields, and for JSON patches the
/// operations' unknown fields (`json patch unknown field "[0].foo"`).
fn patch_strict_errors(patch_kind: PatchKind, patch: &[u8]) -> Vec<String> {
    let Ok(node) = Node::parse(patch) else { return Vec::new() };
    let mut walk = Walk::default();
    match (patch_kind, node) {
        (PatchKind::Json, Node::Array(operations)) => {
            for (i, operation) in operations.into_iter().enumerate() {
                let Node::Object(members) = operation else { continue };
                let mut seen = HashSet::new();
                for (key, _) in members {
                    walk.path = format!("[{i}].{key}");
                    if !["op", "path", "from", "value"].contains(&key.as_str()) {
                        walk.strict_error("unknown");
                    } else if !seen.insert(key) {
                        walk.strict_error("duplicate");
                    }
                }
            }
            walk.strict.into_iter().map(|e| format!("json patch {e}")).collect()
        }
        (_, node) => {
            duplicates(&mut walk, node);
            walk.strict
        }
    }
}

/// Records the duplicate members anywhere in `node`.
fn duplicates(walk: &mut Walk, node: Node) {
    match node {
        Node::Object(members) => {
            let mut seen = HashSet::new();
            for (key, member) in members {
                let at = walk.path.len();
                if !walk.path.is_empty() {
                    walk.path.push('.');
                }
                walk.path.push_str(&key);
                if !seen.insert(key) {
                    walk.strict_error("duplicate");
                }
                duplicates(walk, member);
                walk.path.truncate(at);
            }
        }
        Node::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                let at = walk.path.len();
                walk.path.push_str(&format!("[{i}]"));
                duplicates(walk, item);
                walk.path.truncate(at);
            }
        }
        _ => {}
    }
}

/// Checks a server-side apply configuration of `kind` against its schema, as the field
/// manager's typed conversion does: any unknown field or value of the wrong type fails the
/// apply, whatever `fieldValidation` says (500, `failed to create typed patch object
/// (default/web; apps/v1, Kind=Deployment): .spec.foo: field not declared in schema`).
pub fn check_apply_config(kind: &ResourceKind, config: &Value) -> ApiResult<()> {
    if crate::custom_kinds::of(kind).is_some() {
        let unknown = prune_custom(kind, &mut config.clone());
        if unknown.is_empty() {
            return Ok(());
        }
        let name = config.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        let errors: Vec<String> = unknown
            .iter()
            .map(|u| {
                format!(".{}: field not declared in schema", u.trim_start_matches("unknown field ").trim_matches('"'))
            })
            .collect();
        return Err(ApiError::InternalError(format!(
            "failed to create typed patch object ({name}; {}, Kind={}): {}",
            kind.group_version(),
            kind.kind,
            errors.join(", ")
        )));
    }
    let Some(definition) = schemas::definition_of(kind) else { return Ok(()) };
    let Some(schema) = schemas::definition(definition) else { return Ok(()) };
    let mut errors = Vec::new();
    typed_errors(config, schema, &mut String::new(), &mut errors);
    if errors.is_empty() {
        return Ok(());
    }
    let meta = |field: &str| config.pointer(&format!("/metadata/{field}")).and_then(Value::as_str).unwrap_or("");
    let gvk = format!("{}, Kind={}", kind.group_version(), kind.kind);
    let gvk = if kind.group.is_empty() { format!("/{gvk}") } else { gvk };
    let errors = match errors.as_slice() {
        [one] => one.clone(),
        many => format!("errors:\n  {}", many.join("\n  ")),
    };
    Err(ApiError::InternalError(format!(
        "failed to create typed patch object ({}/{}; {gvk}): {errors}",
        meta("namespace"),
        meta("name")
    )))
}

/// structured-merge-diff's complaints about `value` as `schema`, at `path` (`.spec.foo`).
fn typed_errors(value: &Value, schema: &'static Value, path: &mut String, errors: &mut Vec<String>) {
    if value.is_null() {
        return;
    }
    let expected = |what: &str, errors: &mut Vec<String>, path: &str| {
        let got = match value {
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "list",
            Value::Object(_) => "map",
            Value::Null => "null",
        };
        errors.push(format!("{path}: expected {what}, got {got}"));
    };
    match shape(schema) {
        Shape::Any => {}
        Shape::Struct(_, properties) => match value {
            Value::Object(map) => {
                for (key, member) in map {
                    let at = path.len();
                    path.push('.');
                    path.push_str(key);
                    match properties.get(key) {
                        Some(schema) => typed_errors(member, schema, path, errors),
                        None => errors.push(format!("{path}: field not declared in schema")),
                    }
                    path.truncate(at);
                }
            }
            _ => expected("map", errors, path),
        },
        Shape::Map(values) => match value {
            Value::Object(map) => {
                for (key, member) in map {
                    let at = path.len();
                    path.push_str(&format!(".{key}"));
                    typed_errors(member, values, path, errors);
                    path.truncate(at);
                }
            }
            _ => expected("map", errors, path),
        },
        Shape::List(items) => match value {
            Value::Array(elements) => {
                for (i, element) in elements.iter().enumerate() {
                    let at = path.len();
                    path.push_str(&format!("[{i}]"));
                    typed_errors(element, items, path, errors);
                    path.truncate(at);
                }
            }
            _ => expected("list", errors, path),
        },
        Shape::Int(_) | Shape::Float if !value.is_number() => expected("numeric (int or float)", errors, path),
        Shape::Str | Shape::Bytes | Shape::Time if !value.is_string() => expected("string", errors, path),
        Shape::Bool if !value.is_boolean() => expected("boolean", errors, path),
        Shape::IntOrString | Shape::Quantity if !(value.is_string() || value.is_number()) => {
            expected("string or number", errors, path)
        }
        _ => {}
    }
}

/// Why `s` is not a quantity, as `resource.ParseQuantity` says.
pub fn parse_quantity(s: &str) -> Result<(), &'static str> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Err(QUANTITY_FORMAT);
    }
    let mut pos = usize::from(matches!(b[0], b'+' | b'-'));
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < b.len() && b[pos] == b'.' {
        pos += 1;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
    }
    let suffix_start = pos;
    while pos < b.len() && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < b.len() && matches!(b[pos], b'+' | b'-') {
        pos += 1;
    }
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < b.len() {
        return Err(QUANTITY_FORMAT);
    }
    let suffix = &s[suffix_start..];
    let known = matches!(
        suffix,
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E"
    );
    let exponent = suffix.len() > 1 && suffix.starts_with(['e', 'E']) && suffix[1..].parse::<i64>().is_ok();
    if known || exponent {
        Ok(())
    } else {
        Err(QUANTITY_SUFFIX)
    }
}

/// Where Go's `base64.StdEncoding` fails to decode `s`: the offset of its
/// `illegal base64 data at input byte N` (line breaks are skipped, as Go does).
pub fn base64_error(s: &str) -> Option<usize> {
    let src = s.as_bytes();
    let alphabet = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    let newline = |c: u8| c == b'\n' || c == b'\r';
    let mut si = 0;
    loop {
        let mut j = 0;
        while j < 4 {
            if si == src.len() {
                return (j != 0).then_some(si - j);
            }
            let c = src[si];
            si += 1;
            if alphabet(c) {
                j += 1;
                continue;
            }
            if newline(c) {
                continue;
            }
            if c != b'=' || j < 2 {
                return Some(si - 1);
            }
            if j == 2 {
                // "==" is expected.
                while si < src.len() && newline(src[si]) {
                    si += 1;
                }
                if si == src.len() {
                    return Some(src.len());
                }
                if src[si] != b'=' {
                    return Some(si - 1);
                }
                si += 1;
            }
            while si < src.len() && newline(src[si]) {
                si += 1;
            }
            return (si < src.len()).then_some(si);
        }
    }
}

/// A JSON value as Go's `%+v` prints the `map[string]interface{}` it decodes into:
/// `map[spec:map[replicas:3]]`, lists `[a b]`, strings bare, null `<nil>`.
pub fn go_value(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) => go_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(items) => format!("[{}]", items.iter().map(go_value).collect::<Vec<_>>().join(" ")),
        Value::Object(map) => {
            let members: Vec<String> = map.iter().map(|(k, v)| format!("{k}:{}", go_value(v))).collect();
            format!("map[{}]", members.join(" "))
        }
    }
}

/// A float64 as Go's `%v` prints it: shortest digits, with an exponent below 1e-4 or from 1e6.
fn go_float(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    let scientific = format!("{f:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..6).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let plain = format!("{f}");
    plain.strip_suffix(".0").map(str::to_string).unwrap_or(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::find;
    use serde_json::json;

    fn deployments() -> &'static ResourceKind {
        find("apps", "v1", "deployments").unwrap()
    }

    fn deploy(spec: &str) -> String {
        format!(r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"web"}},"spec":{spec}}}"#)
    }

    fn decode_deploy(spec: &str, validation: FieldValidation) -> ApiResult<(Value, Vec<String>)> {
        decode_body(deployments(), false, deploy(spec).as_bytes(), validation)
    }

    #[test]
    fn wrong_types_are_refused_in_go_json_wording() {
        let err = decode_deploy(r#"{"replicas":"three"}"#, FieldValidation::Warn).unwrap_err();
        assert_eq!(err.code(), 400);
        assert_eq!(
            err.to_string(),
            r#"Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"#
        );
        let cases = [
            (r#"{"replicas":1.5}"#, "number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32"),
            (r#"{"replicas":4294967296}"#, "number 4294967296 into Go struct field DeploymentSpec.spec.replicas"),
            (r#"{"template":[]}"#, "array into Go struct field DeploymentSpec.spec.template of type v1.PodTemplateSpec"),
            (
                r#"{"template":{"spec":{"containers":{}}}}"#,
                "object into Go struct field PodSpec.spec.template.spec.containers of type []v1.Container",
            ),
            (
                r#"{"template":{"spec":{"containers":[{"name":5}]}}}"#,
                "number into Go struct field Container.spec.template.spec.containers.name of type string",
            ),
            (
                r#"{"template":{"spec":{"containers":[{"imagePullPolicy":true}]}}}"#,
                "bool into Go struct field Container.spec.template.spec.containers.imagePullPolicy of type v1.PullPolicy",
            ),
            (
                r#"{"selector":{"matchLabels":{"a":1}}}"#,
                "number into Go struct field LabelSelector.spec.selector.matchLabels of type string",
            ),
            (
                r#"{"strategy":{"rollingUpdate":{"maxSurge":true}}}"#,
                "bool into Go struct field RollingUpdateDeployment.spec.strategy.rollingUpdate.maxSurge of type int32",
            ),
        ];
        for (spec, want) in cases {
            let err = decode_deploy(spec, FieldValidation::Warn).unwrap_err().to_string();
            assert!(err.contains(want), "{spec}: {err}");
        }
        let meta = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":[]}}"#;
        let err = decode_body(deployments(), false, meta.as_bytes(), FieldValidation::Warn).unwrap_err();
        assert!(err.to_string().ends_with("ObjectMeta.metadata.labels of type map[string]string"), "{err}");
    }

    #[test]
    fn int_or_strings_quantities_and_base64_accept_what_kube_accepts() {
        let ok = [
            r#"{"strategy":{"rollingUpdate":{"maxSurge":"25%","maxUnavailable":1}}}"#,
            r#"{"template":{"spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":"500m","memory":1e9}}}]}}}"#,
            r#"{"replicas":null,"paused":true}"#,
        ];
        for spec in ok {
            decode_deploy(spec, FieldValidation::Strict).unwrap_or_else(|e| panic!("{spec}: {e}"));
        }
        let err = decode_deploy(
            r#"{"template":{"spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":"lots"}}}]}}}"#,
            FieldValidation::Warn,
        )
        .unwrap_err();
        assert!(err.to_string().ends_with(QUANTITY_FORMAT), "{err}");
        assert_eq!(parse_quantity("5Xi"), Err(QUANTITY_FORMAT));
        assert_eq!(parse_quantity("5ii"), Err(QUANTITY_SUFFIX));
        for good in ["0", "1", "1.5Gi", "100m", "1e3", "+2k", ".5", "12E-3"] {
            assert_eq!(parse_quantity(good), Ok(()), "{good}");
        }
        let secrets = find("", "v1", "secrets").unwrap();
        let body = br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"data":{"a":"aGk=","b":"a!b"}}"#;
        let err = decode_body(secrets, false, body, FieldValidation::Warn).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 1"#
        );
        assert_eq!(base64_error("aGk="), None);
        assert_eq!(base64_error("aGVsbG8=\n"), None);
        assert_eq!(base64_error(""), None);
        assert_eq!(base64_error("abc"), Some(0));
        assert_eq!(base64_error("abcdabc"), Some(4));
        assert_eq!(base64_error("ab=c"), Some(2));
        assert_eq!(base64_error("aGk=x"), Some(4));
    }

    #[test]
    fn unknown_and_duplicate_fields_follow_field_validation() {
        let body = r#"{"unknownField":"x","replicas":2,"replicas":3,"template":{"spec":{"containers":[{"name":"a","imagePullPolicyy":"x"}]}}}"#;
        let err = decode_deploy(body, FieldValidation::Strict).unwrap_err();
        assert_eq!(err.code(), 400);
        assert_eq!(
            err.to_string(),
            r#"Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.unknownField", duplicate field "spec.replicas", unknown field "spec.template.spec.containers[0].imagePullPolicyy""#
        );
        let (obj, warnings) = decode_deploy(body, FieldValidation::Warn).unwrap();
        assert_eq!(warnings.len(), 3);
        assert_eq!(warnings[0], r#"unknown field "spec.unknownField""#);
        assert_eq!(obj["spec"]["replicas"], 3, "the last duplicate wins");
        assert!(obj["spec"].get("unknownField").is_none());
        assert!(obj["spec"]["template"]["spec"]["containers"][0].get("imagePullPolicyy").is_none());
        let (_, warnings) = decode_deploy(body, FieldValidation::Ignore).unwrap();
        assert!(warnings.is_empty());
        let meta = br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a","unknownMeta":"x","labels":{"a":"1","a":"2"}}}"#;
        let err = decode_body(deployments(), false, meta, FieldValidation::Strict).unwrap_err().to_string();
        assert!(
            err.ends_with(
                r#"strict decoding error: unknown field "metadata.unknownMeta", duplicate field "metadata.labels.a""#
            ),
            "{err}"
        );
    }

    #[test]
    fn field_validation_values_are_checked_like_kube_options() {
        assert_eq!(FieldValidation::parse(None, "CreateOptions").unwrap(), FieldValidation::Warn);
        assert_eq!(FieldValidation::parse(Some("Strict"), "CreateOptions").unwrap(), FieldValidation::Strict);
        assert_eq!(FieldValidation::parse(Some("Ignore"), "PatchOptions").unwrap(), FieldValidation::Ignore);
        let err = FieldValidation::parse(Some("strict"), "CreateOptions").unwrap_err();
        assert_eq!(err.code(), 422);
        assert_eq!(
            err.to_string(),
            r#"CreateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "strict": supported values: "", "Ignore", "Strict", "Warn""#
        );
    }

    #[test]
    fn patched_objects_are_checked_with_the_patch_in_the_message() {
        let cm = find("", "v1", "configmaps").unwrap();
        let patched = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "datum": {"a": "b"}});
        let patch = br#"{"datum":{"a":"b"}}"#;
        let err = check_patched(cm, false, patched.clone(), (PatchKind::Strategic, patch), FieldValidation::Strict)
            .unwrap_err();
        assert_eq!(err.code(), 422);
        assert_eq!(
            err.to_string(),
            r#" "" is invalid: patch: Invalid value: "map[datum:map[a:b]]": strict decoding error: unknown field "datum""#
        );
        let (obj, warnings) =
            check_patched(cm, false, patched.clone(), (PatchKind::Merge, patch), FieldValidation::Warn).unwrap();
        assert_eq!(warnings, vec![r#"unknown field "datum""#.to_string()]);
        assert!(obj.get("datum").is_none());
        let bad = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": 1}});
        let err = check_patched(cm, false, bad, (PatchKind::Merge, b"{}"), FieldValidation::Ignore).unwrap_err();
        assert!(err
            .to_string()
            .contains("json: cannot unmarshal number into Go struct field ConfigMap.data of type string"));
        let ops = br#"[{"op":"add","path":"/data/a","value":"1","op":"add","extra":1}]"#;
        assert_eq!(
            patch_strict_errors(PatchKind::Json, ops),
            vec![
                r#"json patch duplicate field "[0].op""#.to_string(),
                r#"json patch unknown field "[0].extra""#.into()
            ]
        );
    }

    #[test]
    fn apply_configurations_must_fit_the_schema() {
        let config = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"}, "spec": {"foo": 1, "replicas": "x"}});
        let err = check_apply_config(deployments(), &config).unwrap_err();
        assert_eq!(err.code(), 500);
        assert_eq!(
            err.to_string(),
            "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): errors:\n  .spec.foo: field not declared in schema\n  .spec.replicas: expected numeric (int or float), got string"
        );
        let ok = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}});
        check_apply_config(deployments(), &ok).unwrap();
    }

    #[test]
    fn go_prints_maps_sorted_and_floats_shortest() {
        assert_eq!(go_value(&json!({"b": [1, "x", null], "a": {"c": true}})), "map[a:map[c:true] b:[1 x <nil>]]");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(3.0), "3");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(123456.0), "123456");
    }

    #[test]
    fn scale_bodies_decode_as_scales() {
        let body =
            br#"{"apiVersion":"autoscaling/v1","kind":"Scale","metadata":{"name":"web"},"spec":{"replicas":"2"}}"#;
        let err = decode_body(deployments(), true, body, FieldValidation::Warn).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"Scale in version "v1" cannot be handled as a Scale: json: cannot unmarshal string into Go struct field ScaleSpec.spec.replicas of type int32"#
        );
    }
}
