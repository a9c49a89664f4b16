//! Tests of the protobuf decoder: the wire reader on hand-built bytes, the special types,
//! whole objects, and the generated table checked against k8s-openapi's JSON schemas.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use serde_json::json;

use super::*;

/// Builds protobuf messages by hand.
#[derive(Default, Clone)]
struct Pb(Vec<u8>);

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Pb {
    fn new() -> Pb {
        Pb::default()
    }
    fn key(mut self, number: u32, wire: u64) -> Pb {
        put_varint(&mut self.0, (u64::from(number) << 3) | wire);
        self
    }
    fn varint(self, number: u32, v: u64) -> Pb {
        let mut pb = self.key(number, 0);
        put_varint(&mut pb.0, v);
        pb
    }
    fn bytes(self, number: u32, b: &[u8]) -> Pb {
        let mut pb = self.key(number, 2);
        put_varint(&mut pb.0, b.len() as u64);
        pb.0.extend_from_slice(b);
        pb
    }
    fn string(self, number: u32, s: &str) -> Pb {
        self.bytes(number, s.as_bytes())
    }
    fn msg(self, number: u32, m: Pb) -> Pb {
        self.bytes(number, &m.0)
    }
    fn fixed64(mut self, number: u32, v: u64) -> Pb {
        self = self.key(number, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn fixed32(mut self, number: u32, v: u32) -> Pb {
        self = self.key(number, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A `map<string, string>` entry.
    fn entry(self, number: u32, key: &str, value: &str) -> Pb {
        self.msg(number, Pb::new().string(1, key).string(2, value))
    }
}

/// `k8s\0` + `runtime.Unknown{typeMeta, raw}`.
fn body(api_version: &str, kind: &str, raw: Pb) -> Vec<u8> {
    let unknown = Pb::new().msg(1, Pb::new().string(1, api_version).string(2, kind)).msg(2, raw);
    [MAGIC, &unknown.0].concat()
}

/// `ObjectMeta` as Go writes it: every non-pointer field, zeros included; an empty
/// `creationTimestamp`.
fn meta(name: &str) -> Pb {
    Pb::new()
        .string(1, name)
        .string(2, "")
        .string(3, "")
        .string(4, "")
        .string(5, "")
        .string(6, "")
        .varint(7, 0)
        .msg(8, Pb::new())
}

fn fields(bytes: &[u8]) -> Res<Vec<(u32, String)>> {
    let mut reader = Reader::new(bytes);
    let mut out = Vec::new();
    while let Some((number, wire)) = reader.next()? {
        out.push((number, format!("{wire:?}")));
    }
    Ok(out)
}

#[test]
fn the_reader_reads_every_wire_type() {
    let pb =
        Pb::new().varint(1, 150).varint(2, u64::MAX).fixed64(3, 7).string(4, "hi").fixed32(5, 9).varint(536_870_911, 1);
    assert_eq!(
        fields(&pb.0).unwrap(),
        vec![
            (1, "Varint(150)".into()),
            (2, format!("Varint({})", u64::MAX)),
            (3, "Fixed64(7)".into()),
            (4, "Bytes([104, 105])".into()),
            (5, "Fixed32".into()),
            (536_870_911, "Varint(1)".into()),
        ]
    );
    assert_eq!(fields(&[0x08, 0x96, 0x01]).unwrap(), vec![(1, "Varint(150)".into())]);
}

#[test]
fn malformed_input_is_a_bad_request() {
    let cases: &[(&[u8], &str)] = &[
        (&[0x08], "a varint runs past the end"),
        (&[0x08, 0x80], "a varint runs past the end"),
        (&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], "longer than 10 bytes"),
        (&[0x12, 0x05, b'a'], "a field of 5 bytes runs past the end"),
        (&[0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], "runs past the end"),
        (&[0x09, 1, 2, 3], "runs past the end"),
        (&[0x0b], "wire type 3"),
        (&[0x0c], "wire type 4"),
        (&[0x0e], "wire type 6"),
        (&[0x00, 0x01], "field number 0 is out of range"),
    ];
    for (bytes, message) in cases {
        let e = fields(bytes).unwrap_err();
        assert_eq!(e.code(), 400, "{bytes:?}");
        assert!(e.to_string().contains(message), "{bytes:?}: {e}");
    }
}

#[test]
fn no_input_panics() {
    let deployment = body("apps/v1", "Deployment", deployment_message());
    // Every prefix, and every single-byte corruption of a real body: Ok or a 400, never a panic.
    for end in 0..deployment.len() {
        if let Err(e) = decode(&deployment[..end]) {
            assert_eq!(e.code(), 400);
        }
    }
    // (A corrupted key can turn into the envelope's contentEncoding: 415.)
    for at in MAGIC.len()..deployment.len() {
        for b in [0x00, 0x01, 0x07, 0x0a, 0x7f, 0x80, 0xff] {
            let mut corrupt = deployment.clone();
            corrupt[at] = b;
            if let Err(e) = decode(&corrupt) {
                assert!(matches!(e.code(), 400 | 415), "{at} {b}: {e}");
            }
        }
    }
    // Pseudo-random garbage after the magic and a valid header.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        let len = (seed % 64) as usize;
        let mut raw = Vec::new();
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            raw.push(seed as u8);
        }
        let _ = decode(&body("apps/v1", "Deployment", Pb(raw)));
    }
}

#[test]
fn unknown_fields_are_skipped() {
    let raw = Pb::new()
        .msg(1, meta("c").varint(99, 5).string(100, "future"))
        .fixed32(77, 1)
        .fixed64(78, 1)
        .entry(2, "a", "1");
    let obj = decode(&body("v1", "ConfigMap", raw)).unwrap();
    assert_eq!(
        obj,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "creationTimestamp": null},
            "data": {"a": "1"}})
    );
}

#[test]
fn the_envelope_is_checked() {
    let e = decode(b"{\"kind\": \"ConfigMap\"}").unwrap_err();
    assert_eq!((e.code(), e.to_string().contains("magic")), (400, true));
    let e = decode(&body("v1", "Nope", Pb::new())).unwrap_err();
    assert_eq!(e.code(), 400);
    assert!(e.to_string().contains(r#"no kind "Nope" is registered for version "v1""#), "{e}");
    let gzip = Pb::new().msg(1, Pb::new().string(1, "v1").string(2, "ConfigMap")).string(3, "gzip");
    assert_eq!(decode(&[MAGIC, &gzip.0].concat()).unwrap_err().code(), 415);
    // An embedded JSON object is taken as it is.
    let embedded = Pb::new()
        .msg(1, Pb::new().string(1, "v1").string(2, "ConfigMap"))
        .string(2, r#"{"metadata": {"name": "j"}}"#)
        .string(4, "application/json");
    let obj = decode(&[MAGIC, &embedded.0].concat()).unwrap();
    assert_eq!(obj, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}}));
    assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
    assert!(is_protobuf("Application/Vnd.Kubernetes.Protobuf; charset=x"));
    assert!(!is_protobuf("application/json"));
    assert!(!is_protobuf("application/vnd.kubernetes.protobuf-x"));
}

fn special(name: &str, bytes: Pb) -> Res<Value> {
    decode_message(message(name).unwrap(), &bytes.0, 0)
}

const TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime";

#[test]
fn times_are_rfc3339_in_utc() {
    assert_eq!(special(TIME, Pb::new().varint(1, 1_704_067_200)).unwrap(), json!("2024-01-01T00:00:00Z"));
    // Go keeps seconds only for `Time`.
    assert_eq!(
        special(TIME, Pb::new().varint(1, 1_704_067_201).varint(2, 999)).unwrap(),
        json!("2024-01-01T00:00:01Z")
    );
    assert_eq!(special(TIME, Pb::new()).unwrap(), Value::Null);
    assert_eq!(special(TIME, Pb::new().varint(1, 0)).unwrap(), json!("1970-01-01T00:00:00Z"));
    assert_eq!(special(TIME, Pb::new().varint(1, (-1i64) as u64)).unwrap(), json!("1969-12-31T23:59:59Z"));
    let micro = Pb::new().varint(1, 1_704_067_200).varint(2, 123_456_789);
    assert_eq!(special(MICRO_TIME, micro).unwrap(), json!("2024-01-01T00:00:00.123456Z"));
    assert_eq!(special(MICRO_TIME, Pb::new().varint(1, 1_704_067_200)).unwrap(), json!("2024-01-01T00:00:00.000000Z"));
    assert_eq!(special(TIME, Pb::new().varint(1, i64::MAX as u64)).unwrap_err().code(), 400);
    assert_eq!(special(TIME, Pb::new().string(1, "x")).unwrap_err().code(), 400);
}

#[test]
fn durations_are_go_duration_strings() {
    for (nanos, text) in [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (1_000_000, "1ms"),
        (500_000_000, "500ms"),
        (1_000_000_000, "1s"),
        (1_500_000_000, "1.5s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_000_000_001, "1h2m3.000000001s"),
        (-2_000_000_000, "-2s"),
        (i64::MIN, "-2562047h47m16.854775808s"),
    ] {
        assert_eq!(go_duration(nanos), text, "{nanos}");
    }
    let d = "io.k8s.apimachinery.pkg.apis.meta.v1.Duration";
    if message(d).is_some() {
        assert_eq!(special(d, Pb::new().varint(1, 90_000_000_000)).unwrap(), json!("1m30s"));
    }
}

#[test]
fn quantities_int_or_strings_and_raw_json() {
    let q = "io.k8s.apimachinery.pkg.api.resource.Quantity";
    assert_eq!(special(q, Pb::new().string(1, "100m")).unwrap(), json!("100m"));
    let ios = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
    assert_eq!(special(ios, Pb::new().varint(1, 0).varint(2, 8080).string(3, "")).unwrap(), json!(8080));
    assert_eq!(special(ios, Pb::new().varint(1, 1).varint(2, 0).string(3, "http")).unwrap(), json!("http"));
    assert_eq!(special(ios, Pb::new().varint(1, 0).varint(2, (-1i64) as u64)).unwrap(), json!(-1));
    let raw = "io.k8s.apimachinery.pkg.runtime.RawExtension";
    assert_eq!(special(raw, Pb::new().string(1, r#"{"a": [1, 2]}"#)).unwrap(), json!({"a": [1, 2]}));
    assert_eq!(special(raw, Pb::new()).unwrap(), Value::Null);
    assert_eq!(special(raw, Pb::new().string(1, "{nope")).unwrap_err().code(), 400);
    // A nested protobuf object is decoded too.
    let nested = body("v1", "ConfigMap", Pb::new().msg(1, meta("n")));
    let value = special(raw, Pb::new().bytes(1, &nested)).unwrap();
    assert_eq!(value["kind"], "ConfigMap");
    assert_eq!(value["metadata"]["name"], "n");
    let fields_v1 = "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1";
    assert_eq!(special(fields_v1, Pb::new().string(1, r#"{"f:data": {}}"#)).unwrap(), json!({"f:data": {}}));
}

/// A Deployment as `kubectl create deployment web --image=nginx:1.27 --replicas=0` sends it,
/// plus a port, resources and a configMap volume.
fn deployment_message() -> Pb {
    let labels = |pb: Pb| pb.entry(11, "app", "web");
    let container = Pb::new()
        .string(1, "nginx")
        .string(2, "nginx:1.27")
        .string(3, "sleep")
        .string(3, "1")
        .msg(6, Pb::new().string(1, "").varint(2, 0).varint(3, 80).string(4, "TCP").string(5, ""))
        .msg(
            8,
            Pb::new()
                .msg(1, Pb::new().string(1, "cpu").msg(2, Pb::new().string(1, "500m")))
                .msg(2, Pb::new().string(1, "memory").msg(2, Pb::new().string(1, "64Mi"))),
        )
        .string(5, "")
        .string(13, "")
        .string(14, "")
        .varint(16, 0)
        .varint(18, 0);
    // Volume{name 1, volumeSource 2 (inline) {configMap 19 {localObjectReference 1 (inline) {name 1}, defaultMode 3}}}
    let volume = Pb::new()
        .string(1, "config")
        .msg(2, Pb::new().msg(19, Pb::new().msg(1, Pb::new().string(1, "settings")).varint(3, 0o644)));
    let pod_spec = Pb::new().msg(1, volume).msg(2, container).string(3, "").varint(11, 0).string(8, "");
    let template = Pb::new().msg(1, labels(meta(""))).msg(2, pod_spec);
    let spec = Pb::new()
        .varint(1, 0)
        .msg(2, Pb::new().entry(1, "app", "web"))
        .msg(3, template)
        .msg(4, Pb::new())
        .varint(5, 0)
        .varint(7, 0);
    Pb::new().msg(1, labels(meta("web"))).msg(2, spec).msg(3, Pb::new())
}

#[test]
fn a_deployment_decodes_as_kubectl_would_send_it_in_json() {
    let obj = decode(&body("apps/v1", "Deployment", deployment_message())).unwrap();
    let expected = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
        "spec": {
            // A pointer: the zero is kept. minReadySeconds and paused are not pointers.
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                "spec": {
                    "volumes": [{"name": "config", "configMap": {"name": "settings", "defaultMode": 420}}],
                    "containers": [{
                        "name": "nginx",
                        "image": "nginx:1.27",
                        "command": ["sleep", "1"],
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}},
                    }],
                },
            },
            "strategy": {},
        },
        "status": {},
    });
    assert_eq!(obj, expected);
}

#[test]
fn secrets_services_and_namespaces() {
    let secret =
        Pb::new().msg(1, meta("s")).msg(2, Pb::new().string(1, "password").bytes(2, b"x\xff")).string(3, "Opaque");
    let obj = decode(&body("v1", "Secret", secret)).unwrap();
    assert_eq!(obj["data"], json!({"password": "eP8="}));
    assert_eq!(obj["type"], "Opaque");
    assert!(obj.get("immutable").is_none());

    let port = Pb::new()
        .string(1, "80-8080")
        .string(2, "TCP")
        .varint(3, 80)
        .msg(4, Pb::new().varint(1, 0).varint(2, 8080).string(3, ""))
        .varint(5, 0);
    let service = Pb::new()
        .msg(1, meta("web"))
        .msg(2, Pb::new().msg(1, port).entry(2, "app", "web").string(3, "").string(4, "ClusterIP"))
        .msg(3, Pb::new().msg(1, Pb::new()));
    let obj = decode(&body("v1", "Service", service)).unwrap();
    assert_eq!(
        obj["spec"],
        json!({"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
            "selector": {"app": "web"}, "type": "ClusterIP"})
    );
    assert_eq!(obj["status"], json!({"loadBalancer": {}}));

    let namespace = Pb::new().msg(1, meta("team-a")).msg(2, Pb::new()).msg(3, Pb::new().string(1, ""));
    let obj = decode(&body("v1", "Namespace", namespace)).unwrap();
    assert_eq!(
        obj,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "creationTimestamp": null},
            "spec": {}, "status": {}})
    );
}

#[test]
fn scale_and_delete_options_decode_too() {
    let scale = Pb::new().msg(1, meta("web")).msg(2, Pb::new().varint(1, 3));
    let obj = decode(&body("autoscaling/v1", "Scale", scale)).unwrap();
    assert_eq!(obj["spec"], json!({"replicas": 3}));
    // autoscaling/v1 ScaleSpec.replicas is a plain `int32` with `omitempty`: Go's JSON has no 0.
    let scale = Pb::new().msg(1, meta("web")).msg(2, Pb::new().varint(1, 0));
    assert_eq!(decode(&body("autoscaling/v1", "Scale", scale)).unwrap()["spec"], json!({}));
    let options = Pb::new().varint(1, 0).varint(3, 0).string(4, "Foreground");
    let obj = decode(&body("apps/v1", "DeleteOptions", options)).unwrap();
    assert_eq!(
        obj,
        json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "orphanDependents": false,
            "propagationPolicy": "Foreground"})
    );
}

fn field_number(message_name: &str, json: &str) -> u32 {
    message(message_name).unwrap().fields.iter().find(|f| f.json == json).unwrap().number
}

#[test]
fn custom_resource_schemas_and_their_unions() {
    let props = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";
    let n = |json| field_number(props, json);
    let string = Pb::new().string(n("type"), "string");
    let schema = Pb::new()
        .string(n("type"), "object")
        .msg(n("properties"), Pb::new().string(1, "name").msg(2, string.clone()))
        .msg(n("additionalProperties"), Pb::new().varint(1, 0))
        .msg(n("items"), Pb::new().msg(1, string.clone()))
        .msg(n("dependencies"), Pb::new().string(1, "a").msg(2, Pb::new().string(2, "b").string(2, "c")))
        .fixed64(n("minimum"), 0f64.to_bits())
        .fixed64(n("maximum"), 2.5f64.to_bits())
        .varint(n("x-kubernetes-preserve-unknown-fields"), 0)
        .varint(n("nullable"), 0)
        .msg(n("default"), Pb::new().string(1, r#"{"x": 1}"#))
        .msg(n("enum"), Pb::new().string(1, "\"a\""));
    let value = decode_message(message(props).unwrap(), &schema.0, 0).unwrap();
    assert_eq!(
        value,
        json!({
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "additionalProperties": false,
            "items": {"type": "string"},
            "dependencies": {"a": ["b", "c"]},
            "minimum": 0,
            "maximum": 2.5,
            "x-kubernetes-preserve-unknown-fields": false,
            "default": {"x": 1},
            "enum": ["a"],
        })
    );
    let array = Pb::new().msg(n("items"), Pb::new().msg(2, string.clone()).msg(2, string.clone()));
    let value = decode_message(message(props).unwrap(), &array.0, 0).unwrap();
    assert_eq!(value, json!({"items": [{"type": "string"}, {"type": "string"}]}));
    let with_schema = Pb::new().msg(n("additionalProperties"), Pb::new().varint(1, 1).msg(2, string));
    let value = decode_message(message(props).unwrap(), &with_schema.0, 0).unwrap();
    assert_eq!(value, json!({"additionalProperties": {"type": "string"}}));
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let props = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";
    let not = field_number(props, "not");
    let nested = |depth: usize| (0..depth).fold(Pb::new(), |inner, _| Pb::new().msg(not, inner));
    let crd = |depth: usize| {
        let version = Pb::new().string(1, "v1").msg(4, Pb::new().msg(1, nested(depth)));
        body(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            Pb::new().msg(1, meta("c")).msg(2, Pb::new().msg(7, version)),
        )
    };
    // The deepest object accepted can be read back by serde_json (which stops at 128 levels).
    let deepest = (1..200).take_while(|d| decode(&crd(*d)).is_ok()).last().unwrap();
    let text = decode(&crd(deepest)).unwrap().to_string();
    assert!(serde_json::from_str::<Value>(&text).is_ok(), "{deepest}");
    let e = decode(&crd(deepest + 1)).unwrap_err();
    assert_eq!(e.code(), 400);
    assert!(e.to_string().contains("nest deeper"), "{e}");
    let e = decode_message(message(props).unwrap(), &nested(2000).0, 0).unwrap_err();
    assert_eq!(e.code(), 400);
    assert!(e.to_string().contains("nest deeper"), "{e}");
}

#[test]
fn wire_types_must_match_the_fields() {
    let raw = Pb::new().msg(1, meta("c")).varint(2, 1);
    let e = decode(&body("v1", "ConfigMap", raw)).unwrap_err();
    assert_eq!(e.code(), 400);
    assert!(e.to_string().contains("ConfigMap.data (field 2) is varint, not length-delimited"), "{e}");
    let raw = Pb::new().msg(1, meta("c").string(7, "1"));
    assert_eq!(decode(&body("v1", "ConfigMap", raw)).unwrap_err().code(), 400);
    let nan = Pb::new().fixed64(field_number(PROPS, "minimum"), f64::NAN.to_bits());
    assert_eq!(decode_message(message(PROPS).unwrap(), &nan.0, 0).unwrap_err().code(), 400);
}

const PROPS: &str = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";

// ---- the table against k8s-openapi's schemas ----

/// The definition a property refers to, if any.
fn reference(property: &Value) -> Option<&str> {
    let reference = match property.get("allOf").and_then(Value::as_array) {
        Some(all_of) if all_of.len() == 1 => all_of[0].get("$ref"),
        _ => property.get("$ref"),
    };
    reference.and_then(Value::as_str).and_then(schemas::ref_name)
}

/// Checks one value of a property (an item of a list, a value of a map) against a type.
fn check_type(ty: Ty, schema: &Value, at: &str) {
    let json_type = schema.get("type").and_then(Value::as_str);
    match ty {
        Ty::Str | Ty::Bytes => assert_eq!(json_type, Some("string"), "{at}"),
        Ty::Bool => assert_eq!(json_type, Some("boolean"), "{at}"),
        Ty::I32 | Ty::I64 => assert_eq!(json_type, Some("integer"), "{at}"),
        Ty::F64 => assert_eq!(json_type, Some("number"), "{at}"),
        Ty::Msg(i) => {
            let name = MESSAGES[usize::from(i)].name;
            match reference(schema) {
                Some(r) => assert_eq!(r, name, "{at}"),
                // k8s-openapi writes apiextensions' unions and `JSON` in place, as kube does.
                None => assert!(name.starts_with("io.k8s.apiextensions-apiserver"), "{at} has no $ref"),
            }
        }
        Ty::MapStr | Ty::MapBytes | Ty::MapMsg(_) => unreachable!("{at}"),
    }
}

/// Checks `message`'s fields against the properties of `definition` (the message's own, or
/// for an inline message its parent's).
fn check_fields(message: &Message, definition: &str, checked: &mut usize) {
    let schema = schemas::definition(definition).unwrap_or_else(|| panic!("no schema {definition}"));
    let no_properties = Map::new();
    let properties = schema["properties"].as_object().unwrap_or(&no_properties);
    let mut numbers = BTreeSet::new();
    for field in message.fields {
        assert!(numbers.insert(field.number), "{}: field {} twice", message.name, field.number);
        let at = format!("{}.{} (field {}, in {definition})", message.name, field.json, field.number);
        if field.inline() {
            let Ty::Msg(i) = field.ty else { panic!("{at}: inline but not a message") };
            assert!(field.json.is_empty() && !field.repeated(), "{at}");
            check_fields(&MESSAGES[usize::from(i)], definition, checked);
            continue;
        }
        let property = properties.get(field.json).unwrap_or_else(|| panic!("{at} is not in the JSON schema"));
        *checked += 1;
        let json_type = property.get("type").and_then(Value::as_str);
        match field.ty {
            _ if field.repeated() => {
                assert_eq!(json_type, Some("array"), "{at}");
                check_type(field.ty, &property["items"], &at);
            }
            Ty::MapStr => check_type(Ty::Str, &property["additionalProperties"], &at),
            Ty::MapBytes => check_type(Ty::Bytes, &property["additionalProperties"], &at),
            Ty::MapMsg(i) => check_type(Ty::Msg(i), &property["additionalProperties"], &at),
            ty => check_type(ty, property, &at),
        }
        if field.keeps_zero() {
            assert!(matches!(field.ty, Ty::Str | Ty::Bytes | Ty::Bool | Ty::I32 | Ty::I64 | Ty::F64), "{at}");
        }
    }
}

#[test]
fn the_table_matches_the_json_schemas() {
    for pair in MESSAGES.windows(2) {
        assert!(pair[0].name < pair[1].name, "{} and {} out of order", pair[0].name, pair[1].name);
    }
    let mut inline_only = BTreeSet::new();
    for m in MESSAGES {
        for f in m.fields {
            if let Ty::Msg(i) | Ty::MapMsg(i) = f.ty {
                assert!(usize::from(i) < MESSAGES.len(), "{}.{}", m.name, f.json);
                if f.inline() && schemas::definition(MESSAGES[usize::from(i)].name).is_none() {
                    inline_only.insert(MESSAGES[usize::from(i)].name);
                }
            }
        }
    }
    let mut checked = 0;
    for m in MESSAGES {
        match (m.shape, schemas::definition(m.name)) {
            (Shape::Object, Some(_)) => check_fields(m, m.name, &mut checked),
            // Checked through the parents they are inlined into.
            (Shape::Object, None) => assert!(inline_only.contains(m.name), "{} has no JSON schema", m.name),
            (_, _) => {}
        }
    }
    assert!(checked > 1300, "{checked}");
    for kind in BUILTIN {
        let definition = schemas::definition_of(kind).unwrap();
        let m = message(definition).unwrap_or_else(|| panic!("no protobuf message for {definition}"));
        assert_eq!(m.shape, Shape::Object);
        assert_eq!(m.fields[0], f(1, "metadata", m.fields[0].ty, 0), "{definition}");
    }
    for name in [schemas::SCALE, schemas::DELETE_OPTIONS] {
        assert!(message(name).is_some(), "{name}");
    }
}

#[test]
fn zeros_follow_go_pointers_and_omitempty() {
    let field = |m: &str, json: &str| *message(m).unwrap().fields.iter().find(|f| f.json == json).unwrap();
    let spec = "io.k8s.api.apps.v1.DeploymentSpec";
    assert!(field(spec, "replicas").keeps_zero(), "*int32");
    assert!(!field(spec, "minReadySeconds").keeps_zero(), "int32 omitempty");
    assert!(!field(spec, "paused").keeps_zero(), "bool omitempty");
    assert!(field("io.k8s.api.core.v1.ServicePort", "port").keeps_zero(), "int32 without omitempty");
    assert!(!field("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "uid").keeps_zero());
    assert!(field("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "storageClassName").keeps_zero(), "*string");
    assert!(field("io.k8s.api.core.v1.PodSpec", "automountServiceAccountToken").keeps_zero(), "*bool");
    assert!(field(PROPS, "minimum").keeps_zero(), "*float64");
    assert!(!field(PROPS, "nullable").keeps_zero(), "bool omitempty");
}
