//! Generates `api-gateway/src/protobuf/table.rs`: the protobuf fields of every message the
//! built-in kinds (and `DeleteOptions`, `autoscaling/v1` `Scale`) are made of, with each
//! field's number, wire kind, JSON name and JSON emptiness rule.
//!
//! ```text
//! cargo run -p api-gateway --example protobuf_table            # rewrite the table
//! cargo run -p api-gateway --example protobuf_table -- --check # fail if it is stale
//! ```
//!
//! Three sources, each for what it knows best:
//! - the `k8s-pb` crate's prost-generated sources (k8s 1.34 `.proto` files, read as text, never
//!   compiled: a `cfg(any())` dev-dependency makes cargo download it; `K8S_PB_SRC=dir` points
//!   elsewhere): which messages exist, each field's number, scalar type, repetition, map-ness
//!   and message type;
//! - the Go type descriptors inside the kubectl binary (`KUBECTL`, default `/usr/bin/kubectl`,
//!   v1.32): for every `k8s.io/api` and `meta/v1` struct, each field's `json:"..."` tag (the
//!   JSON name, `omitempty`, `,inline`), `protobuf:"..."` tag (its number) and whether the Go
//!   field is a pointer. That says whether a zero value sent on the wire is JSON-visible: Go's
//!   protobuf marshaller always writes non-pointer scalars, so a zero is only meaningful for a
//!   pointer (`replicas: 0`) or a field without `omitempty` (`port: 0`);
//! - k8s-openapi's JSON schemas (`actors::schemas`, v1.33): the JSON property names for the
//!   types kubectl lacks (apiextensions, kube-aggregator, fields newer than 1.32), matched to
//!   prost's snake_case names ignoring case and punctuation (`x_kubernetes_list_type` ->
//!   `x-kubernetes-list-type`); a zero is kept there for `required` properties and the Go
//!   pointers listed in [`POINTERS`]. Fields the 1.33 schemas do not have are left out (a
//!   decoder skips them, as kube-apiserver 1.33 would).
//!
//! The unit tests of `api_gateway::protobuf` check the table against the schemas.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use actors::kinds::BUILTIN;
use actors::schemas;
use serde_json::Value;

/// Where the table goes, relative to this crate.
const OUTPUT: &str = "src/protobuf/table.rs";

/// Messages whose JSON form is not an object of their fields, decoded by hand.
const SPECIAL: &[(&str, &str)] = &[
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Time", "Time"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime", "MicroTime"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Duration", "Duration"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1", "RawJson"),
    ("io.k8s.apimachinery.pkg.api.resource.Quantity", "Quantity"),
    ("io.k8s.apimachinery.pkg.util.intstr.IntOrString", "IntOrString"),
    ("io.k8s.apimachinery.pkg.runtime.RawExtension", "RawExtension"),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON", "RawJson"),
];

/// The JSON-schema unions of apiextensions: decoded as objects of these fields, then turned
/// into their JSON form (`items: {...}` or `items: [...]`, `additionalProperties: false`).
/// (definition, shape, the JSON names of its field numbers).
type Union = (&'static str, &'static str, &'static [(u32, &'static str)]);

const UNIONS: &[Union] = &[
    (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray",
        "SchemaOrArray",
        &[(1, "schema"), (2, "jSONSchemas")],
    ),
    (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool",
        "SchemaOrBool",
        &[(1, "allows"), (2, "schema")],
    ),
    (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray",
        "SchemaOrStringArray",
        &[(1, "schema"), (2, "property")],
    ),
];

/// Go pointer scalars of the types and fields kubectl 1.32 does not carry (apiextensions.k8s.io/v1,
/// apiregistration.k8s.io/v1, 1.33 additions), from their `types.go`: a zero sent for them is kept.
const POINTERS: &[(&str, &[&str])] = &[
    (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps",
        &[
            "$ref",
            "maximum",
            "minimum",
            "maxLength",
            "minLength",
            "maxItems",
            "minItems",
            "multipleOf",
            "maxProperties",
            "minProperties",
            "x-kubernetes-preserve-unknown-fields",
            "x-kubernetes-list-type",
            "x-kubernetes-map-type",
        ],
    ),
    (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionVersion",
        &["deprecationWarning"],
    ),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceSubresourceScale", &["labelSelectorPath"]),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.ServiceReference", &["path", "port"]),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.ValidationRule", &["reason", "optionalOldSelf"]),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.WebhookClientConfig", &["url"]),
    ("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.ServiceReference", &["port"]),
    // New in 1.33, after the kubectl (1.32) the rest comes from.
    ("io.k8s.api.apps.v1.DeploymentStatus", &["terminatingReplicas"]),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", &["terminatingReplicas"]),
    ("io.k8s.api.core.v1.ContainerStatus", &["stopSignal"]),
    ("io.k8s.api.core.v1.Lifecycle", &["stopSignal"]),
    ("io.k8s.api.core.v1.NodeSwapStatus", &["capacity"]),
    ("io.k8s.api.storage.v1.CSIDriverSpec", &["nodeAllocatableUpdatePeriodSeconds"]),
    ("io.k8s.api.storage.v1.VolumeError", &["errorCode"]),
];

fn main() {
    let check = std::env::args().any(|a| a == "--check");
    let pb = k8s_pb::read(&k8s_pb_src()).expect("reading k8s-pb");
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "/usr/bin/kubectl".into());
    let go = go_types::read(Path::new(&kubectl)).expect("reading kubectl's Go types");
    eprintln!("{} protobuf messages in k8s-pb, {} k8s Go structs in {kubectl}", pb.len(), go.len());
    let table = build(&pb, &go);
    let text = render(&table);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(OUTPUT);
    if check {
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        if old != text {
            eprintln!("{} is stale: run `cargo run -p api-gateway --example protobuf_table`", path.display());
            std::process::exit(1);
        }
        eprintln!("{} is up to date", path.display());
    } else {
        std::fs::write(&path, text).expect("writing the table");
        eprintln!("wrote {} ({} messages)", path.display(), table.len());
    }
}

/// The `src` folder of k8s-pb: `K8S_PB_SRC`, else where cargo unpacked the dev-dependency.
fn k8s_pb_src() -> PathBuf {
    if let Ok(dir) = std::env::var("K8S_PB_SRC") {
        return dir.into();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(manifest)
        .output()
        .expect("cargo metadata");
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata output");
    let package = metadata["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "k8s-pb"))
        .expect("k8s-pb among the packages (a dev-dependency of api-gateway)");
    let manifest = Path::new(package["manifest_path"].as_str().expect("manifest_path"));
    manifest.parent().expect("package dir").join("src")
}

/// Lower case without `_`, `-`, `$`: how prost's snake_case, Go's and JSON's names compare.
fn norm(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// One field of the table.
#[derive(Debug, Clone)]
struct Field {
    number: u32,
    json: String,
    ty: k8s_pb::Ty,
    repeated: bool,
    zero: bool,
    inline: bool,
}

#[derive(Debug)]
struct Message {
    shape: &'static str,
    fields: Vec<Field>,
}

/// Every message reachable from the roots, by definition name.
fn build(
    pb: &HashMap<String, k8s_pb::Message>,
    go: &HashMap<String, Vec<go_types::Field>>,
) -> BTreeMap<String, Message> {
    let definitions = schemas::definitions();
    // Canonical names (k8s-pb writes `JsonSchemaProps` for `JSONSchemaProps`).
    let mut canonical: HashMap<String, String> = HashMap::new();
    for name in definitions.keys().chain(go.keys()) {
        canonical.insert(name.to_lowercase(), name.clone());
    }
    for name in SPECIAL.iter().map(|(n, _)| *n).chain(UNIONS.iter().map(|(n, _, _)| *n)) {
        canonical.insert(name.to_lowercase(), name.to_string());
    }
    let pb: HashMap<String, &k8s_pb::Message> =
        pb.iter().map(|(k, v)| (canonical.get(&k.to_lowercase()).cloned().unwrap_or_else(|| k.clone()), v)).collect();
    let resolve = |name: &str| canonical.get(&name.to_lowercase()).cloned().unwrap_or_else(|| name.to_string());

    let mut roots: Vec<String> =
        BUILTIN.iter().map(|k| schemas::definition_of(k).expect("every kind has a schema").to_string()).collect();
    roots.push(schemas::DELETE_OPTIONS.into());
    roots.push(schemas::SCALE.into());
    let mut out = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut from_schema = Vec::new();
    // (message, the definition whose properties its fields are: its own, or for a struct
    // embedded with `json:",inline"` and no definition of its own (admissionregistration's
    // `Rule`), its parent's).
    let mut todo: Vec<(String, String)> = roots.into_iter().map(|r| (r.clone(), r)).collect();
    while let Some((name, owner)) = todo.pop() {
        if out.contains_key(&name) {
            continue;
        }
        let message = pb.get(&name).unwrap_or_else(|| panic!("no protobuf message {name} in k8s-pb"));
        if let Some((_, shape)) = SPECIAL.iter().find(|(n, _)| *n == name) {
            check_special(&name, message);
            out.insert(name, Message { shape, fields: Vec::new() });
            continue;
        }
        let union = UNIONS.iter().find(|(n, _, _)| *n == name);
        let schema = definitions.get(&name).or_else(|| definitions.get(&owner));
        let properties: BTreeSet<String> =
            schema.and_then(|s| s["properties"].as_object()).map(|p| p.keys().cloned().collect()).unwrap_or_default();
        let required: BTreeSet<String> = schema
            .and_then(|s| s["required"].as_array())
            .map(|r| r.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default();
        assert!(union.is_some() || schema.is_some(), "no JSON schema for {name}");
        let go_fields = go.get(&name);
        let pointers = POINTERS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p).unwrap_or(&[]);
        let mut fields = Vec::new();
        for f in &message.fields {
            let ty = match &f.ty {
                k8s_pb::Ty::Message(path) => k8s_pb::Ty::Message(resolve(path)),
                k8s_pb::Ty::MapMessage(path) => k8s_pb::Ty::MapMessage(resolve(path)),
                other => other.clone(),
            };
            let scalar = !matches!(ty, k8s_pb::Ty::Message(_)) && !f.repeated;
            let (json, zero, inline) = if let Some((_, _, names)) = union {
                let json = names.iter().find(|(n, _)| *n == f.number).map(|(_, j)| j.to_string());
                (json.unwrap_or_else(|| panic!("{name} field {} unexpected", f.number)), true, false)
            } else if let Some(g) = go_fields.and_then(|fs| fs.iter().find(|g| g.number == f.number)) {
                assert_eq!(
                    norm(&g.proto_name),
                    norm(&f.rust_name),
                    "{name} field {} differs in Go and k8s-pb",
                    f.number
                );
                (g.json.clone(), scalar && (g.pointer || !g.omitempty), g.inline)
            } else {
                let matches: Vec<&String> = properties.iter().filter(|p| norm(p) == norm(&f.rust_name)).collect();
                match (matches.as_slice(), &ty) {
                    ([json], _) => {
                        let zero = scalar && (required.contains(*json) || pointers.contains(&json.as_str()));
                        from_schema.push(format!("{name}.{json}{}", if zero { " (zero kept)" } else { "" }));
                        ((*json).clone(), zero, false)
                    }
                    ([], k8s_pb::Ty::Message(inner)) if !f.repeated && inlines(&pb, inner, &properties) => {
                        from_schema.push(format!("{name}: {inner} inline"));
                        (String::new(), false, true)
                    }
                    _ => {
                        skipped.push(format!("{name} field {} {}", f.number, f.rust_name));
                        continue;
                    }
                }
            };
            if !inline && union.is_none() {
                assert!(properties.contains(&json), "{name}.{json} (field {}) is not in its JSON schema", f.number);
            }
            if let k8s_pb::Ty::Message(inner) | k8s_pb::Ty::MapMessage(inner) = &ty {
                let owner = if inline && !definitions.contains_key(inner) { &name } else { inner };
                todo.push((inner.clone(), owner.clone()));
            }
            fields.push(Field { number: f.number, json, ty, repeated: f.repeated, zero, inline });
        }
        let shape = union.map(|(_, shape, _)| *shape).unwrap_or("Object");
        out.insert(name, Message { shape, fields });
    }
    eprintln!("named from the JSON schemas (not in kubectl {}):", from_schema.len());
    from_schema.iter().for_each(|s| eprintln!("  {s}"));
    eprintln!("left out (not in the v1.33 JSON schemas, {}):", skipped.len());
    skipped.iter().for_each(|s| eprintln!("  {s}"));
    out
}

/// Whether `inner`'s fields are all properties of the parent: a Go struct embedded with
/// `json:",inline"` (`Volume.volumeSource`).
fn inlines(pb: &HashMap<String, &k8s_pb::Message>, inner: &str, parent: &BTreeSet<String>) -> bool {
    let parent: BTreeSet<String> = parent.iter().map(|p| norm(p)).collect();
    pb.get(inner).is_some_and(|m| !m.fields.is_empty() && m.fields.iter().all(|f| parent.contains(&norm(&f.rust_name))))
}

/// The hand-written decoders rely on these field numbers.
fn check_special(name: &str, message: &k8s_pb::Message) {
    let fields: Vec<(u32, String)> = message.fields.iter().map(|f| (f.number, norm(&f.rust_name))).collect();
    let expected: &[(u32, &str)] = match name.rsplit('.').next().unwrap_or("") {
        "Time" | "MicroTime" => &[(1, "seconds"), (2, "nanos")],
        "Duration" => &[(1, "duration")],
        "FieldsV1" | "JSON" | "RawExtension" => &[(1, "raw")],
        "Quantity" => &[(1, "string")],
        "IntOrString" => &[(1, "type"), (2, "intval"), (3, "strval")],
        other => panic!("unexpected special message {other}"),
    };
    let expected: Vec<(u32, String)> = expected.iter().map(|(n, s)| (*n, s.to_string())).collect();
    assert_eq!(fields, expected, "{name}");
}

fn render(table: &BTreeMap<String, Message>) -> String {
    let index: HashMap<&str, usize> = table.keys().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
    let mut s = String::new();
    s.push_str(
        "//! @generated by `cargo run -p api-gateway --example protobuf_table` (see that file): the protobuf\n\
         //! messages of the built-in kinds, sorted by definition name; `Msg(i)` is `MESSAGES[i]`.\n\n\
         use super::Shape::*;\n\
         use super::Ty::*;\n\
         use super::{f, Message, INLINE, REP, ZERO};\n\n\
         pub static MESSAGES: &[Message] = &[\n",
    );
    for (i, (name, message)) in table.iter().enumerate() {
        let _ = writeln!(s, "    // {i}");
        let _ =
            write!(s, "    Message {{\n        name: {name:?},\n        shape: {},\n        fields: &[", message.shape);
        if !message.fields.is_empty() {
            s.push('\n');
        }
        for f in &message.fields {
            let ty = match &f.ty {
                k8s_pb::Ty::Message(m) => format!("Msg({})", index[m.as_str()]),
                k8s_pb::Ty::MapMessage(m) => format!("MapMsg({})", index[m.as_str()]),
                other => format!("{other:?}"),
            };
            let mut flags: Vec<&str> = Vec::new();
            if f.repeated {
                flags.push("REP");
            }
            if f.zero {
                flags.push("ZERO");
            }
            if f.inline {
                flags.push("INLINE");
            }
            let flags = if flags.is_empty() { "0".to_string() } else { flags.join(" | ") };
            let _ = writeln!(s, "            f({}, {:?}, {ty}, {flags}),", f.number, f.json);
        }
        s.push_str(if message.fields.is_empty() { "],\n    },\n" } else { "        ],\n    },\n" });
    }
    s.push_str("];\n");
    s
}

/// Reads the prost-generated sources of k8s-pb as text.
mod k8s_pb {
    use std::collections::HashMap;
    use std::path::Path;

    /// A field's type on the wire; message types by (not yet canonical) definition name.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Ty {
        Str,
        Bytes,
        Bool,
        I32,
        I64,
        F64,
        Message(String),
        MapStr,
        MapBytes,
        MapMessage(String),
    }

    #[derive(Debug)]
    pub struct Field {
        pub number: u32,
        pub rust_name: String,
        pub ty: Ty,
        pub repeated: bool,
    }

    #[derive(Debug)]
    pub struct Message {
        pub fields: Vec<Field>,
    }

    /// Every struct of every `mod.rs` under `src`, by `io.k8s.api.core.v1.PodSpec`-style name.
    pub fn read(src: &Path) -> std::io::Result<HashMap<String, Message>> {
        let mut out = HashMap::new();
        let mut dirs = vec![src.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.file_name().is_some_and(|n| n == "mod.rs") {
                    let module: Vec<String> = path
                        .parent()
                        .and_then(|p| p.strip_prefix(src).ok())
                        .map(|p| p.iter().map(|c| c.to_string_lossy().into_owned()).collect())
                        .unwrap_or_default();
                    let text = std::fs::read_to_string(&path)?;
                    read_module(&module, &text, &mut out);
                }
            }
        }
        Ok(out)
    }

    /// `io.k8s.api.core.v1` from `["api", "core", "v1"]`.
    fn package(module: &[String]) -> String {
        let mut parts = vec!["io".to_string(), "k8s".to_string()];
        for (i, part) in module.iter().enumerate() {
            // The repositories' names have dashes; the Go packages below them do not.
            parts.push(if i == 0 { part.replace('_', "-") } else { part.clone() });
        }
        parts.join(".")
    }

    fn read_module(module: &[String], text: &str, out: &mut HashMap<String, Message>) {
        let mut rest = text;
        while let Some(start) = rest.find("\npub struct ") {
            let after = &rest[start + "\npub struct ".len()..];
            let name_end = after.find(|c: char| !c.is_alphanumeric() && c != '_').unwrap_or(after.len());
            let name = &after[..name_end];
            let body_start = after.find('{').unwrap_or(0);
            // `pub struct Empty {}` ends on its own line.
            let body_end = match after[body_start..].starts_with("{}") {
                true => body_start + 2,
                false => after.find("\n}").unwrap_or(after.len()),
            };
            let body = &after[body_start..body_end];
            let fields = read_fields(module, body);
            out.insert(format!("{}.{name}", package(module)), Message { fields });
            rest = &after[body_end..];
        }
    }

    /// The `#[prost(...)] pub name: Type,` fields of a struct body.
    fn read_fields(module: &[String], body: &str) -> Vec<Field> {
        let mut fields = Vec::new();
        let mut rest = body;
        while let Some(start) = rest.find("#[prost(") {
            let after = &rest[start + "#[prost(".len()..];
            let attr_end = after.find(")]").unwrap_or(after.len());
            let attr = &after[..attr_end];
            let decl = &after[attr_end + 2..];
            let decl = decl.trim_start();
            let decl = decl.strip_prefix("pub ").unwrap_or(decl);
            let colon = decl.find(':').unwrap_or(0);
            let rust_name = decl[..colon].trim().trim_start_matches("r#").to_string();
            // The type runs to the `,` that ends the field (no commas at depth 0 before it).
            let mut depth = 0i32;
            let mut end = decl.len();
            for (i, c) in decl[colon + 1..].char_indices() {
                match c {
                    '<' => depth += 1,
                    '>' => depth -= 1,
                    ',' if depth == 0 => {
                        end = colon + 1 + i;
                        break;
                    }
                    _ => {}
                }
            }
            let rust_type: String = decl[colon + 1..end].chars().filter(|c| !c.is_whitespace()).collect();
            // rustfmt leaves a trailing comma in type arguments split over lines.
            let rust_type = rust_type.replace(",>", ">");
            let number = attr
                .split("tag = \"")
                .nth(1)
                .and_then(|t| t.split('"').next())
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("no tag in {attr}"));
            let repeated = attr.contains("repeated");
            let kind = attr.split(',').next().unwrap_or("").trim();
            let ty = if attr.starts_with("btree_map") || attr.starts_with("map") {
                let spec = attr.split('"').nth(1).unwrap_or("");
                match spec {
                    "string, string" => Ty::MapStr,
                    "string, bytes" => Ty::MapBytes,
                    "string, message" => Ty::MapMessage(type_name(module, &rust_type)),
                    other => panic!("unexpected map {other}"),
                }
            } else {
                match kind {
                    "string" => Ty::Str,
                    k if k.starts_with("bytes") => Ty::Bytes,
                    "bool" => Ty::Bool,
                    "int32" => Ty::I32,
                    "int64" => Ty::I64,
                    "double" => Ty::F64,
                    "message" => Ty::Message(type_name(module, &rust_type)),
                    other => panic!("unexpected prost type {other} ({attr})"),
                }
            };
            fields.push(Field { number, rust_name, ty, repeated });
            rest = &decl[end..];
        }
        fields
    }

    /// The message named by a field's Rust type, as a definition name: the innermost (for a
    /// map, the last) type argument, its `super::` path resolved from `module`.
    fn type_name(module: &[String], rust_type: &str) -> String {
        let mut inner = rust_type;
        while let Some(open) = inner.find('<') {
            let args = &inner[open + 1..inner.rfind('>').unwrap_or(inner.len())];
            inner = match args.rfind(",") {
                // BTreeMap<String, V>: the value; the key has no commas.
                Some(comma) if !args[..comma].contains('<') => &args[comma + 1..],
                _ => args,
            };
        }
        let segments: Vec<&str> = inner.split("::").filter(|s| !s.is_empty()).collect();
        let mut path: Vec<String> = module.to_vec();
        let mut rest = segments.as_slice();
        let mut relative = false;
        while let ["super", tail @ ..] = rest {
            path.pop();
            rest = tail;
            relative = true;
        }
        if !relative && rest.len() > 1 {
            panic!("unexpected absolute type {inner}");
        }
        let (name, modules) = rest.split_last().unwrap_or_else(|| panic!("empty type {rust_type}"));
        path.extend(modules.iter().map(|s| s.to_string()));
        format!("{}.{name}", package(&path))
    }
}

/// Reads Go's runtime type descriptors (go1.2x, amd64 ELF) from a Go binary: the named
/// structs of `k8s.io/...` packages with their fields' tags and whether each is a pointer.
mod go_types {
    use std::collections::{HashMap, HashSet};
    use std::path::Path;

    #[derive(Debug, Clone)]
    pub struct Field {
        /// The `protobuf:"..."` number.
        pub number: u32,
        /// The `name=` of the protobuf tag (or the Go field name).
        pub proto_name: String,
        /// The JSON name; empty for an inline struct.
        pub json: String,
        pub omitempty: bool,
        pub inline: bool,
        pub pointer: bool,
    }

    const KIND_ARRAY: u8 = 17;
    const KIND_CHAN: u8 = 18;
    const KIND_FUNC: u8 = 19;
    const KIND_INTERFACE: u8 = 20;
    const KIND_MAP: u8 = 21;
    const KIND_POINTER: u8 = 22;
    const KIND_SLICE: u8 = 23;
    const KIND_STRUCT: u8 = 25;
    const TFLAG_UNCOMMON: u8 = 1;
    const TFLAG_EXTRA_STAR: u8 = 2;
    const TFLAG_NAMED: u8 = 4;

    struct Elf {
        data: Vec<u8>,
        /// (vaddr, file offset, size) of each PT_LOAD.
        loads: Vec<(u64, u64, u64)>,
        /// (name, vaddr, file offset, size) of each section.
        sections: Vec<(String, u64, u64, u64)>,
    }

    impl Elf {
        fn open(path: &Path) -> std::io::Result<Elf> {
            let data = std::fs::read(path)?;
            let mut elf = Elf { data, loads: Vec::new(), sections: Vec::new() };
            assert_eq!(&elf.data[..5], b"\x7fELF\x02", "not a 64-bit ELF file");
            let (phoff, phnum) = (elf.raw_u64(0x20), elf.raw_u16(0x38) as u64);
            for i in 0..phnum {
                let p = (phoff + i * 56) as usize;
                if elf.raw_u32(p) == 1 {
                    elf.loads.push((elf.raw_u64(p + 16), elf.raw_u64(p + 8), elf.raw_u64(p + 32)));
                }
            }
            let (shoff, shnum, shstrndx) = (elf.raw_u64(0x28), elf.raw_u16(0x3c) as u64, elf.raw_u16(0x3e) as u64);
            let strtab = elf.raw_u64((shoff + shstrndx * 64) as usize + 24) as usize;
            for i in 0..shnum {
                let s = (shoff + i * 64) as usize;
                let name_off = strtab + elf.raw_u32(s) as usize;
                let name_end = elf.data[name_off..].iter().position(|b| *b == 0).unwrap_or(0) + name_off;
                let name = String::from_utf8_lossy(&elf.data[name_off..name_end]).into_owned();
                elf.sections.push((name, elf.raw_u64(s + 16), elf.raw_u64(s + 24), elf.raw_u64(s + 32)));
            }
            Ok(elf)
        }

        fn section(&self, name: &str) -> (u64, u64, u64) {
            let s = self.sections.iter().find(|s| s.0 == name).unwrap_or_else(|| panic!("no {name} section"));
            (s.1, s.2, s.3)
        }

        fn raw_u16(&self, at: usize) -> u16 {
            u16::from_le_bytes(self.data[at..at + 2].try_into().unwrap())
        }
        fn raw_u32(&self, at: usize) -> u32 {
            u32::from_le_bytes(self.data[at..at + 4].try_into().unwrap())
        }
        fn raw_u64(&self, at: usize) -> u64 {
            u64::from_le_bytes(self.data[at..at + 8].try_into().unwrap())
        }

        /// The file offset of a virtual address.
        fn at(&self, addr: u64) -> usize {
            let (vaddr, off, _) = self
                .loads
                .iter()
                .find(|(v, _, size)| (*v..v + size).contains(&addr))
                .unwrap_or_else(|| panic!("address {addr:#x} is in no loaded segment"));
            (addr - vaddr + off) as usize
        }
        fn u8(&self, addr: u64) -> u8 {
            self.data[self.at(addr)]
        }
        fn i32(&self, addr: u64) -> i32 {
            self.raw_u32(self.at(addr)) as i32
        }
        fn u64(&self, addr: u64) -> u64 {
            self.raw_u64(self.at(addr))
        }
        fn varint(&self, mut addr: u64) -> (u64, u64) {
            let (mut value, mut shift) = (0u64, 0);
            loop {
                let b = self.u8(addr);
                addr += 1;
                value |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b < 0x80 {
                    return (value, addr);
                }
            }
        }
        /// An `abi.Name`: flags, then the name and (with flag 2) the tag, length-prefixed.
        fn name(&self, addr: u64) -> (String, String, u8) {
            let flags = self.u8(addr);
            let (len, at) = self.varint(addr + 1);
            let text = |at: u64, len: u64| {
                let start = self.at(at);
                String::from_utf8_lossy(&self.data[start..start + len as usize]).into_owned()
            };
            let name = text(at, len);
            let mut tag = String::new();
            if flags & 2 != 0 {
                let (tag_len, tag_at) = self.varint(at + len);
                tag = text(tag_at, tag_len);
            }
            (name, tag, flags)
        }
    }

    struct Types {
        elf: Elf,
        /// `moduledata.types`: name and type offsets are relative to it.
        base: u64,
    }

    impl Types {
        fn kind(&self, t: u64) -> u8 {
            self.elf.u8(t + 23) & 0x1f
        }
        fn tflag(&self, t: u64) -> u8 {
            self.elf.u8(t + 20)
        }
        fn string(&self, t: u64) -> String {
            let (name, _, _) = self.elf.name(self.base + self.elf.i32(t + 40) as i64 as u64);
            if self.tflag(t) & TFLAG_EXTRA_STAR != 0 {
                name[1..].to_string()
            } else {
                name
            }
        }
        fn pkg_path(&self, t: u64) -> String {
            if self.tflag(t) & TFLAG_UNCOMMON == 0 {
                return String::new();
            }
            // The uncommon part follows the kind's own descriptor.
            let size = match self.kind(t) {
                KIND_STRUCT | KIND_INTERFACE => 80,
                KIND_POINTER | KIND_SLICE | KIND_FUNC => 56,
                KIND_ARRAY => 72,
                KIND_CHAN => 64,
                KIND_MAP => return String::new(),
                _ => 48,
            };
            match self.elf.i32(t + size) {
                0 => String::new(),
                off => self.elf.name(self.base + off as i64 as u64).0,
            }
        }
        fn struct_fields(&self, t: u64) -> Vec<(String, String, u64)> {
            let (ptr, len) = (self.elf.u64(t + 56), self.elf.u64(t + 64));
            (0..len)
                .map(|i| {
                    let (name, tag, _) = self.elf.name(self.elf.u64(ptr + 24 * i));
                    (name, tag, self.elf.u64(ptr + 24 * i + 8))
                })
                .collect()
        }
        fn children(&self, t: u64) -> Vec<u64> {
            let mut out = Vec::new();
            let ptr_to_this = self.elf.i32(t + 44);
            if ptr_to_this != 0 {
                out.push(self.base + ptr_to_this as i64 as u64);
            }
            match self.kind(t) {
                KIND_POINTER | KIND_SLICE | KIND_ARRAY | KIND_CHAN => out.push(self.elf.u64(t + 48)),
                KIND_MAP => out.extend([self.elf.u64(t + 48), self.elf.u64(t + 56)]),
                KIND_STRUCT => out.extend(self.struct_fields(t).into_iter().map(|f| f.2)),
                _ => {}
            }
            out
        }
    }

    /// The value of `key:"..."` in a Go struct tag.
    fn tag_value<'a>(tag: &'a str, key: &str) -> Option<&'a str> {
        let start = tag.find(&format!("{key}:\""))? + key.len() + 2;
        let len = tag[start..].find('"')?;
        Some(&tag[start..start + len])
    }

    /// The `k8s.io/...` named structs, by definition name (`io.k8s.api.core.v1.PodSpec`).
    pub fn read(path: &Path) -> std::io::Result<HashMap<String, Vec<Field>>> {
        let elf = Elf::open(path)?;
        let (base, _, _) = elf.section(".rodata");
        let (_, typelink, size) = elf.section(".typelink");
        let types = Types { elf, base };
        let mut todo: Vec<u64> =
            (0..size / 4).map(|i| base + types.elf.raw_u32((typelink + i * 4) as usize) as i32 as i64 as u64).collect();
        let mut seen = HashSet::new();
        let mut out = HashMap::new();
        while let Some(t) = todo.pop() {
            if !seen.insert(t) {
                continue;
            }
            todo.extend(types.children(t));
            if types.kind(t) != KIND_STRUCT || types.tflag(t) & TFLAG_NAMED == 0 {
                continue;
            }
            let pkg = types.pkg_path(t);
            let Some(rest) = pkg.strip_prefix("k8s.io/") else { continue };
            let type_name = types.string(t);
            let type_name = type_name.rsplit('.').next().unwrap_or("");
            if type_name.contains('[') {
                continue;
            }
            let definition = format!("io.k8s.{}.{type_name}", rest.replace('/', "."));
            let mut fields = Vec::new();
            for (go_name, tag, ty) in types.struct_fields(t) {
                let Some(protobuf) = tag_value(&tag, "protobuf") else { continue };
                let mut parts = protobuf.split(',');
                let number = parts.nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
                let proto_name = parts.find_map(|p| p.strip_prefix("name=")).unwrap_or(&go_name).to_string();
                let json = tag_value(&tag, "json").unwrap_or("");
                let mut json_parts = json.split(',');
                let json_name = json_parts.next().unwrap_or("").to_string();
                let options: Vec<&str> = json_parts.collect();
                let inline = json_name.is_empty() && options.contains(&"inline");
                let json_name = if json_name.is_empty() && !inline { go_name.clone() } else { json_name };
                fields.push(Field {
                    number,
                    proto_name,
                    json: json_name,
                    omitempty: options.contains(&"omitempty"),
                    inline,
                    pointer: types.kind(ty) == KIND_POINTER,
                });
            }
            out.insert(definition, fields);
        }
        Ok(out)
    }
}
