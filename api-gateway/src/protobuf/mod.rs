//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), decoded into
//! the JSON object a JSON client would have sent, so that the rest of the server only sees
//! JSON. kubectl's imperative commands (`create namespace`, `create deployment`, `run`,
//! `expose`, ...) and client-go's typed clients send their bodies this way; responses stay
//! JSON, which they accept too.
//!
//! A body is the magic `k8s\0` and a `runtime.Unknown` message: `typeMeta` (1: `apiVersion`
//! 1, `kind` 2), `raw` (2: the object's own message), `contentEncoding` (3), `contentType`
//! (4). The object's message is read with [`MESSAGES`], a table generated from the k8s
//! `.proto` definitions and Go struct tags (`examples/protobuf_table.rs` says how), by a plain
//! wire reader: unknown fields are skipped, malformed input is a 400, never a panic.
//!
//! The JSON follows Go's encoding of the decoded struct: int64s are numbers, bytes base64,
//! `Time` an RFC 3339 string (`null` when zero), `IntOrString` a number or a string,
//! `Quantity` its string, `RawExtension` and `FieldsV1` their JSON. Go's protobuf marshaller
//! writes every non-pointer scalar, so a zero scalar is kept only where Go's JSON would show it
//! (a pointer such as `replicas: 0`, or a field without `omitempty`); empty lists and maps are
//! left out.

use actors::kinds::BUILTIN;
use actors::{schemas, ApiError, ApiResult};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Number, Value};

#[rustfmt::skip]
mod table;

pub use table::MESSAGES;

/// The protobuf media type of request bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// What decoding fails with inside this module: boxed, to keep the frames of the recursion
/// small (an `ApiError` is 120 bytes, and every `?` has slots for it).
type Res<T> = Result<T, Box<ApiError>>;

/// What every protobuf body starts with.
pub const MAGIC: &[u8] = b"k8s\0";

/// How deep messages may nest while decoding (bounds the recursion).
const MAX_DEPTH: usize = 256;

/// How deep the decoded JSON may nest: serde_json reads no deeper, so a deeper object could be
/// stored but never read back (a JSON body that deep is refused by serde_json already).
const MAX_JSON_DEPTH: usize = 127;

/// How a message becomes JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// An object of its fields.
    Object,
    /// `meta/v1` `Time` {seconds 1, nanos 2}: RFC 3339 in seconds, `null` when empty.
    Time,
    /// `meta/v1` `MicroTime`: RFC 3339 with six fractional digits, `null` when empty.
    MicroTime,
    /// `meta/v1` `Duration` {duration 1 (ns)}: Go's duration string (`1h0m0s`).
    Duration,
    /// `resource.Quantity` {string 1}: the string.
    Quantity,
    /// `intstr.IntOrString` {type 1, intVal 2, strVal 3}: a number or a string.
    IntOrString,
    /// `FieldsV1`, apiextensions `JSON` {raw 1}: the JSON in `raw`.
    RawJson,
    /// `runtime.RawExtension` {raw 1}: the JSON in `raw`, or a nested protobuf object.
    RawExtension,
    /// `JSONSchemaPropsOrArray` {schema, jSONSchemas}: the array if any, else the schema.
    SchemaOrArray,
    /// `JSONSchemaPropsOrBool` {allows, schema}: the schema if any, else the boolean.
    SchemaOrBool,
    /// `JSONSchemaPropsOrStringArray` {schema, property}: the strings if any, else the schema.
    SchemaOrStringArray,
}

/// A field's type on the wire; `Msg(i)` is `MESSAGES[i]`. Maps have string keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Str,
    Bytes,
    Bool,
    I32,
    I64,
    F64,
    Msg(u16),
    MapStr,
    MapBytes,
    MapMsg(u16),
}

/// A repeated field: a JSON array.
pub const REP: u8 = 1;
/// A scalar whose zero value is JSON-visible (a Go pointer, or no `omitempty`).
pub const ZERO: u8 = 2;
/// A message embedded with `json:",inline"`: its fields are the parent's.
pub const INLINE: u8 = 4;

/// One field of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub number: u32,
    /// The JSON name; empty for an inline field.
    pub json: &'static str,
    pub ty: Ty,
    /// [`REP`], [`ZERO`], [`INLINE`].
    pub flags: u8,
}

impl Field {
    pub fn repeated(&self) -> bool {
        self.flags & REP != 0
    }
    pub fn keeps_zero(&self) -> bool {
        self.flags & ZERO != 0
    }
    pub fn inline(&self) -> bool {
        self.flags & INLINE != 0
    }
}

/// Writes the table's rows short.
pub const fn f(number: u32, json: &'static str, ty: Ty, flags: u8) -> Field {
    Field { number, json, ty, flags }
}

/// One protobuf message: its OpenAPI definition name and fields.
#[derive(Debug)]
pub struct Message {
    /// `io.k8s.api.apps.v1.Deployment`.
    pub name: &'static str,
    pub shape: Shape,
    pub fields: &'static [Field],
}

/// The message of definition `name` (`io.k8s.api.core.v1.PodSpec`).
pub fn message(name: &str) -> Option<&'static Message> {
    MESSAGES.binary_search_by(|m| m.name.cmp(name)).ok().map(|i| &MESSAGES[i])
}

/// Whether a `Content-Type` is the protobuf media type (parameters aside).
pub fn is_protobuf(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    media_type.eq_ignore_ascii_case(MEDIA_TYPE)
}

/// The definition name of the object `kind` of `api_version`: a built-in kind's, `Scale`,
/// or `DeleteOptions` (of any group).
fn definition_of(api_version: &str, kind: &str) -> Option<&'static str> {
    match (api_version, kind) {
        ("autoscaling/v1", "Scale") => return Some(schemas::SCALE),
        (_, "DeleteOptions") => return Some(schemas::DELETE_OPTIONS),
        _ => {}
    }
    let k = BUILTIN.iter().find(|k| k.kind == kind && k.group_version() == api_version)?;
    schemas::definition_of(k)
}

#[cold]
#[inline(never)]
fn bad(message: impl Into<String>) -> Box<ApiError> {
    Box::new(ApiError::BadRequest(format!("the protobuf body is not valid: {}", message.into())))
}

/// Decodes a protobuf body (`k8s\0` + `runtime.Unknown`) into the JSON object, with the
/// `apiVersion` and `kind` of its type meta.
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    decode_at(body, 0).map_err(|e| *e)
}

fn decode_at(body: &[u8], depth: usize) -> Res<Value> {
    let Some(unknown) = body.strip_prefix(MAGIC) else {
        return Err(bad("it does not start with the protobuf magic \"k8s\\x00\""));
    };
    let (mut api_version, mut kind, mut raw, mut encoding, mut content_type) =
        (String::new(), String::new(), &[][..], String::new(), String::new());
    let mut reader = Reader::new(unknown);
    while let Some((number, wire)) = reader.next()? {
        match number {
            1 => {
                let mut type_meta = Reader::new(wire.bytes("typeMeta")?);
                while let Some((number, wire)) = type_meta.next()? {
                    match number {
                        1 => api_version = wire.string("apiVersion")?,
                        2 => kind = wire.string("kind")?,
                        _ => {}
                    }
                }
            }
            2 => raw = wire.bytes("raw")?,
            3 => encoding = wire.string("contentEncoding")?,
            4 => content_type = wire.string("contentType")?,
            _ => {}
        }
    }
    if !encoding.is_empty() {
        return Err(Box::new(ApiError::UnsupportedMediaType(format!(
            "the content encoding {encoding:?} is not served"
        ))));
    }
    let mut obj = match content_type.as_str() {
        "" => {
            let name = definition_of(&api_version, &kind)
                .ok_or_else(|| bad(format!("no kind {kind:?} is registered for version {api_version:?}")))?;
            let message = self::message(name).ok_or_else(|| bad(format!("no protobuf message for {name}")))?;
            decode_message(message, raw, depth)?
        }
        t if t.eq_ignore_ascii_case("application/json") => {
            serde_json::from_slice(raw).map_err(|e| bad(format!("the embedded JSON: {e}")))?
        }
        other => {
            let message = format!("the embedded content type {other:?} is not served");
            return Err(Box::new(ApiError::UnsupportedMediaType(message)));
        }
    };
    if depth == 0 && json_depth(&obj) > MAX_JSON_DEPTH {
        return Err(bad(format!("its JSON would nest deeper than {MAX_JSON_DEPTH} levels")));
    }
    if let Some(map) = obj.as_object_mut() {
        if !api_version.is_empty() {
            map.insert("apiVersion".into(), Value::String(api_version));
        }
        if !kind.is_empty() {
            map.insert("kind".into(), Value::String(kind));
        }
    }
    Ok(obj)
}

/// The nesting depth of arrays and objects in `value` (`{}`: 1), without recursion.
fn json_depth(value: &Value) -> usize {
    let (mut max, mut todo) = (0, vec![(value, 1)]);
    while let Some((value, depth)) = todo.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        max = max.max(depth);
        todo.extend(children.map(|c| (c, depth + 1)));
    }
    max
}

/// One field's value as read off the wire.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    /// No k8s field is a 32-bit one; read past.
    Fixed32,
}

impl<'a> Wire<'a> {
    fn name(&self) -> &'static str {
        match self {
            Wire::Varint(_) => "varint",
            Wire::Fixed64(_) => "64-bit",
            Wire::Bytes(_) => "length-delimited",
            Wire::Fixed32 => "32-bit",
        }
    }

    fn mismatch(&self, what: &str, expected: &str) -> Box<ApiError> {
        bad(format!("{what} is {}, not {expected}", self.name()))
    }

    fn bytes(self, what: &str) -> Res<&'a [u8]> {
        match self {
            Wire::Bytes(b) => Ok(b),
            other => Err(other.mismatch(what, "length-delimited")),
        }
    }

    fn string(self, what: &str) -> Res<String> {
        Ok(String::from_utf8_lossy(self.bytes(what)?).into_owned())
    }

    fn varint(self, what: &str) -> Res<u64> {
        match self {
            Wire::Varint(v) => Ok(v),
            other => Err(other.mismatch(what, "a varint")),
        }
    }
}

/// Reads `(field number, value)` pairs off a message's bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Res<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else { return Err(bad("a varint runs past the end")) };
            self.pos += 1;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(bad("a varint is longer than 10 bytes"))
    }

    fn take(&mut self, len: usize) -> Res<&'a [u8]> {
        let end = self.pos.checked_add(len).filter(|end| *end <= self.buf.len());
        let end = end.ok_or_else(|| bad(format!("a field of {len} bytes runs past the end")))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// The next field, `None` at the end.
    fn next(&mut self) -> Res<Option<(u32, Wire<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).ok().filter(|n| (1..1 << 29).contains(n));
        let number = number.ok_or_else(|| bad(format!("field number {} is out of range", key >> 3)))?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(self.fixed()?)),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| bad("a length does not fit"))?;
                Wire::Bytes(self.take(len)?)
            }
            5 => {
                self.fixed::<4>()?;
                Wire::Fixed32
            }
            other => return Err(bad(format!("field {number} has wire type {other}, which is not served"))),
        };
        Ok(Some((number, wire)))
    }

    fn fixed<const N: usize>(&mut self) -> Res<[u8; N]> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }
}

fn message_at(index: u16) -> Res<&'static Message> {
    MESSAGES
        .get(usize::from(index))
        .ok_or_else(|| Box::new(ApiError::InternalError(format!("protobuf message {index}"))))
}

// The functions on the recursion path (`decode_message`, `decode_fields`, `map_entry`) keep
// their frames small, leaving the rest to functions out of line: unoptimised builds give every
// local its own stack slot, and `MAX_DEPTH` levels must fit a 2 MiB thread stack.

/// The JSON of one message.
fn decode_message(message: &'static Message, bytes: &[u8], depth: usize) -> Res<Value> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    match message.shape {
        Shape::Object => {
            let mut map = Map::new();
            decode_fields(message, bytes, &mut map, depth)?;
            Ok(Value::Object(map))
        }
        Shape::SchemaOrArray | Shape::SchemaOrBool | Shape::SchemaOrStringArray => {
            let mut map = Map::new();
            decode_fields(message, bytes, &mut map, depth)?;
            Ok(union(message.shape, map))
        }
        Shape::RawExtension => raw_extension(message, bytes, depth),
        _ => special(message, bytes),
    }
}

#[cold]
#[inline(never)]
fn too_deep() -> Box<ApiError> {
    bad(format!("messages nest deeper than {MAX_DEPTH} levels"))
}

/// Adds the fields of `message` read from `bytes` to `map` (inline fields included).
fn decode_fields(message: &'static Message, bytes: &[u8], map: &mut Map<String, Value>, depth: usize) -> Res<()> {
    let mut reader = Reader::new(bytes);
    while let Some((number, wire)) = reader.next()? {
        // Fields newer than the table are skipped, as kube-apiserver skips unknown fields.
        let Some(field) = message.fields.iter().find(|f| f.number == number) else { continue };
        let (Ty::Msg(index) | Ty::MapMsg(index)) = field.ty else {
            scalar_field(message, field, wire, map)?;
            continue;
        };
        let Wire::Bytes(inner) = wire else { return Err(mismatch(message, field, wire, "length-delimited")) };
        let inner_message = message_at(index)?;
        if field.ty == Ty::MapMsg(index) {
            let (key, value) = map_entry(field.ty, inner, depth + 1)?;
            insert_entry(map, field, key, value);
        } else if field.inline() {
            decode_fields(inner_message, inner, map, depth + 1)?;
        } else {
            let value = decode_message(inner_message, inner, depth + 1)?;
            insert_message(map, field, value);
        }
    }
    Ok(())
}

/// One `map<string, V>` entry {key 1, value 2}; a missing value is V's zero.
fn map_entry(ty: Ty, bytes: &[u8], depth: usize) -> Res<(String, Value)> {
    let (mut key, mut value) = (String::new(), None);
    let mut reader = Reader::new(bytes);
    while let Some((number, wire)) = reader.next()? {
        match (number, ty) {
            (1, _) => key = wire.string("a map key")?,
            (2, Ty::MapMsg(index)) => {
                value = Some(decode_message(message_at(index)?, wire.bytes("a map value")?, depth)?)
            }
            (2, _) => value = Some(map_value(ty, wire)?),
            _ => {}
        }
    }
    let value = match (value, ty) {
        (Some(value), _) => value,
        (None, Ty::MapMsg(index)) => decode_message(message_at(index)?, &[], depth)?,
        (None, _) => Value::String(String::new()),
    };
    Ok((key, value))
}

#[inline(never)]
fn map_value(ty: Ty, wire: Wire<'_>) -> Res<Value> {
    Ok(match ty {
        Ty::MapBytes => Value::String(STANDARD.encode(wire.bytes("a map value")?)),
        _ => Value::String(wire.string("a map value")?),
    })
}

#[inline(never)]
fn insert_entry(map: &mut Map<String, Value>, field: &Field, key: String, value: Value) {
    if let Value::Object(entries) = map.entry(field.json).or_insert_with(|| Value::Object(Map::new())) {
        entries.insert(key, value);
    }
}

#[inline(never)]
fn insert_message(map: &mut Map<String, Value>, field: &Field, value: Value) {
    if field.repeated() {
        push(map, field.json, value);
        return;
    }
    // A message sent twice is merged, as protobuf does.
    match (map.get_mut(field.json), value) {
        (Some(Value::Object(old)), Value::Object(new)) => old.extend(new),
        (_, value) => {
            map.insert(field.json.into(), value);
        }
    }
}

#[cold]
#[inline(never)]
fn mismatch(message: &Message, field: &Field, wire: Wire<'_>, expected: &str) -> Box<ApiError> {
    wire.mismatch(&format!("{}.{} (field {})", message.name, field.json, field.number), expected)
}

/// A scalar, repeated scalar or `map<string, string | bytes>` field into `map`.
#[inline(never)]
fn scalar_field(message: &Message, field: &Field, wire: Wire<'_>, map: &mut Map<String, Value>) -> Res<()> {
    let what = || format!("{}.{} (field {})", message.name, field.json, field.number);
    if let Ty::MapStr | Ty::MapBytes = field.ty {
        let Wire::Bytes(entry) = wire else { return Err(mismatch(message, field, wire, "length-delimited")) };
        let (key, value) = map_entry(field.ty, entry, 0)?;
        insert_entry(map, field, key, value);
        return Ok(());
    }
    if !field.repeated() {
        let value = scalar(field.ty, wire, &what)?;
        if field.keeps_zero() || !is_zero(&value) {
            map.insert(field.json.into(), value);
        } else {
            map.remove(field.json);
        }
        return Ok(());
    }
    match (field.ty, wire) {
        // Packed numbers (the k8s messages send them unpacked, but both are valid).
        (Ty::Bool | Ty::I32 | Ty::I64, Wire::Bytes(packed)) => {
            let mut reader = Reader::new(packed);
            while reader.pos < packed.len() {
                push(map, field.json, scalar(field.ty, Wire::Varint(reader.varint()?), &what)?);
            }
        }
        (Ty::F64, Wire::Bytes(packed)) => {
            let mut reader = Reader::new(packed);
            while reader.pos < packed.len() {
                let bits = u64::from_le_bytes(reader.fixed()?);
                push(map, field.json, scalar(field.ty, Wire::Fixed64(bits), &what)?);
            }
        }
        _ => push(map, field.json, scalar(field.ty, wire, &what)?),
    }
    Ok(())
}

fn push(map: &mut Map<String, Value>, key: &str, value: Value) {
    if let Value::Array(items) = map.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
        items.push(value);
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// A scalar field's JSON.
fn scalar(ty: Ty, wire: Wire<'_>, what: &dyn Fn() -> String) -> Res<Value> {
    Ok(match ty {
        Ty::Str => Value::String(wire.string(&what())?),
        Ty::Bytes => Value::String(STANDARD.encode(wire.bytes(&what())?)),
        Ty::Bool => Value::Bool(wire.varint(&what())? != 0),
        // Negative int32s are sent as 10-byte varints; the low 32 bits are the value.
        Ty::I32 => Value::from(wire.varint(&what())? as i32),
        Ty::I64 => Value::from(wire.varint(&what())? as i64),
        Ty::F64 => match wire {
            Wire::Fixed64(bits) => {
                float(f64::from_bits(bits)).ok_or_else(|| bad(format!("{} is not finite", what())))?
            }
            other => return Err(other.mismatch(&what(), "64-bit")),
        },
        Ty::Msg(_) | Ty::MapStr | Ty::MapBytes | Ty::MapMsg(_) => {
            return Err(Box::new(ApiError::InternalError(format!("{} is not a scalar", what()))))
        }
    })
}

/// A double as Go writes it: integral values without a fraction; `None` for NaN and infinities.
fn float(x: f64) -> Option<Value> {
    if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 {
        return Some(Value::from(x as i64));
    }
    Number::from_f64(x).map(Value::Number)
}

/// The JSON of apiextensions' unions, from their decoded fields.
#[inline(never)]
fn union(shape: Shape, mut map: Map<String, Value>) -> Value {
    let non_empty = |v: &Option<Value>| v.as_ref().and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    match shape {
        Shape::SchemaOrArray => match map.remove("jSONSchemas") {
            list if non_empty(&list) => list.unwrap_or(Value::Null),
            _ => map.remove("schema").unwrap_or(Value::Null),
        },
        Shape::SchemaOrBool => match map.remove("schema") {
            Some(schema) => schema,
            None => Value::Bool(map.get("allows").and_then(Value::as_bool).unwrap_or(false)),
        },
        _ => match map.remove("property") {
            list if non_empty(&list) => list.unwrap_or(Value::Null),
            _ => map.remove("schema").unwrap_or(Value::Null),
        },
    }
}

/// `RawExtension`: the JSON in `raw`, or the object of a nested protobuf body.
#[inline(never)]
fn raw_extension(message: &Message, bytes: &[u8], depth: usize) -> Res<Value> {
    let raw = raw_bytes(bytes)?;
    if raw.starts_with(MAGIC) {
        return decode_at(raw, depth + 1);
    }
    raw_json(message, raw)
}

fn raw_bytes(bytes: &[u8]) -> Res<&[u8]> {
    let mut raw: &[u8] = &[];
    let mut reader = Reader::new(bytes);
    while let Some((number, wire)) = reader.next()? {
        if number == 1 {
            raw = wire.bytes("raw")?;
        }
    }
    Ok(raw)
}

fn raw_json(message: &Message, raw: &[u8]) -> Res<Value> {
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(raw).map_err(|e| bad(format!("the JSON of a {}: {e}", message.name)))
}

/// The messages of fixed fields that are not objects in JSON.
#[inline(never)]
fn special(message: &Message, bytes: &[u8]) -> Res<Value> {
    match message.shape {
        Shape::Time => time(bytes, false),
        Shape::MicroTime => time(bytes, true),
        Shape::Duration => {
            let mut nanos = 0;
            read_scalars(bytes, |number, wire| {
                if number == 1 {
                    nanos = wire.varint("Duration.duration")? as i64;
                }
                Ok(())
            })?;
            Ok(Value::String(go_duration(nanos)))
        }
        Shape::Quantity => {
            let mut quantity = "0".to_string();
            read_scalars(bytes, |number, wire| {
                if number == 1 {
                    quantity = wire.string("Quantity.string")?;
                }
                Ok(())
            })?;
            Ok(Value::String(quantity))
        }
        Shape::IntOrString => {
            let (mut is_string, mut int, mut string) = (false, 0i32, String::new());
            read_scalars(bytes, |number, wire| {
                match number {
                    1 => is_string = wire.varint("IntOrString.type")? == 1,
                    2 => int = wire.varint("IntOrString.intVal")? as i32,
                    3 => string = wire.string("IntOrString.strVal")?,
                    _ => {}
                }
                Ok(())
            })?;
            Ok(if is_string { Value::String(string) } else { Value::from(int) })
        }
        Shape::RawJson => raw_json(message, raw_bytes(bytes)?),
        Shape::Object
        | Shape::RawExtension
        | Shape::SchemaOrArray
        | Shape::SchemaOrBool
        | Shape::SchemaOrStringArray => {
            Err(Box::new(ApiError::InternalError(format!("{} is not a fixed message", message.name))))
        }
    }
}

/// Calls `each` with every field of a small fixed message.
fn read_scalars(bytes: &[u8], mut each: impl FnMut(u32, Wire<'_>) -> Res<()>) -> Res<()> {
    let mut reader = Reader::new(bytes);
    while let Some((number, wire)) = reader.next()? {
        each(number, wire)?;
    }
    Ok(())
}

/// `Time` (seconds only, as Go's unmarshaller keeps) or `MicroTime` (microseconds), in UTC;
/// an empty message is the zero time, `null`.
fn time(bytes: &[u8], micro: bool) -> Res<Value> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    let (mut seconds, mut nanos) = (0i64, 0i32);
    read_scalars(bytes, |number, wire| {
        match number {
            1 => seconds = wire.varint("Time.seconds")? as i64,
            2 => nanos = wire.varint("Time.nanos")? as i32,
            _ => {}
        }
        Ok(())
    })?;
    let total = i128::from(seconds) * 1_000_000_000 + if micro { i128::from(nanos) } else { 0 };
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(total)
        .ok()
        .filter(|t| (0..=9999).contains(&t.year()))
        .ok_or_else(|| bad(format!("the time {seconds}s {nanos}ns is out of range")))?;
    let mut text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if micro {
        text.push_str(&format!(".{:06}", t.microsecond()));
    }
    text.push('Z');
    Ok(Value::String(text))
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
pub fn go_duration(nanos: i64) -> String {
    /// `v / 10^prec` and its fraction `.123` without trailing zeros (nothing when 0).
    fn split(v: u64, prec: u32) -> (u64, String) {
        let unit = 10u64.pow(prec);
        let fraction = v % unit;
        if fraction == 0 {
            return (v / unit, String::new());
        }
        let digits = format!("{fraction:0width$}", width = prec as usize);
        (v / unit, format!(".{}", digits.trim_end_matches('0')))
    }
    let u = nanos.unsigned_abs();
    if u == 0 {
        return "0s".into();
    }
    let text = if u < 1_000_000_000 {
        let (prec, unit) = match u {
            0..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        let (whole, fraction) = split(u, prec);
        format!("{whole}{fraction}{unit}")
    } else {
        let (seconds, fraction) = split(u, 9);
        let mut text = format!("{}{fraction}s", seconds % 60);
        let minutes = seconds / 60;
        if minutes > 0 {
            text = format!("{}m{text}", minutes % 60);
            if minutes / 60 > 0 {
                text = format!("{}h{text}", minutes / 60);
            }
        }
        text
    };
    if nanos < 0 {
        format!("-{text}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests;
