//! Validation of written objects, as kube-apiserver's `pkg/apis/*/validation`: plain
//! functions over generic JSON that collect every [`FieldCause`] at once, answered as one
//! 422 `Invalid` (`Deployment.apps "web" is invalid: [spec.selector: Required value, ...]`).
//!
//! [`check`] runs on every create and update, after defaulting: object metadata (label and
//! annotation syntax and size), ConfigMap and Secret keys and sizes, pod specs wherever they
//! appear (containers, ports, volumes), workloads (selectors that match their template),
//! Services, Jobs and CronJobs; on update it also refuses changes to immutable fields
//! (workload selectors, a Job's template, immutable ConfigMaps and Secrets).

use std::collections::{BTreeMap, HashSet};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{Map, Value};

use crate::api_error::{ApiError, ApiResult, FieldCause, Subject};
use crate::kinds::ResourceKind;

/// Largest ConfigMap or Secret payload (`core.MaxSecretSize`).
const MAX_DATA_SIZE: usize = 1024 * 1024;
/// Largest total size of an object's annotations, keys and values.
const MAX_ANNOTATIONS_SIZE: usize = 256 * 1024;
const IMMUTABLE: &str = "field is immutable";
const IMMUTABLE_WHEN_SET: &str = "field is immutable when `immutable` is set";
const NEGATIVE: &str = "must be greater than or equal to 0";
const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";
const SUBDOMAIN: &str = concat!(
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must ",
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is ",
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
);
const LABEL: &str = concat!(
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and ",
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is ",
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
);
const QUALIFIED_NAME: &str = concat!(
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric ",
    "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is ",
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
);
const LABEL_VALUE: &str = concat!(
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must ",
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for ",
    "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
);
const CONFIG_KEY: &str = concat!(
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or ",
    "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
);
const DNS1035: &str = concat!(
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic ",
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for ",
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
);
const MISMATCH: &str = "`selector` does not match template `labels`";

/// Checks a write of `kind`: `obj` as it will be stored, `old` the stored object on update.
/// 422 with every cause found.
pub fn check(kind: &ResourceKind, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
    let causes = causes(kind, obj, old);
    if causes.is_empty() {
        return Ok(());
    }
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    Err(ApiError::Invalid { subject: Subject::of(kind, name), causes })
}

/// The causes that make a write of `kind` invalid, in kube-apiserver's order where it has one.
pub fn causes(kind: &ResourceKind, obj: &Value, old: Option<&Value>) -> Vec<FieldCause> {
    let mut out = Vec::new();
    object_meta(obj.get("metadata").unwrap_or(&Value::Null), "metadata", &mut out);
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let old_spec = old.map(|o| o.get("spec").unwrap_or(&Value::Null));
    if let Some(schema) = crate::custom_kinds::schema(kind) {
        out.extend(crate::crd_schema::validate(obj, old, &schema));
        return out;
    }
    match (kind.group, kind.kind) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => out.extend(crate::crd::validate(obj, old)),
        ("", "ConfigMap") => config_map(obj, old, &mut out),
        ("", "Secret") => secret(obj, old, &mut out),
        ("", "Pod") => pod_spec(spec, "spec", &mut out),
        ("", "Service") => {
            service_name(obj, &mut out);
            service(spec, &mut out);
        }
        ("apps", "Deployment") => {
            workload(spec, Workload::Deployment, &mut out);
            deployment_strategy(spec, &mut out);
            immutable(spec.get("selector"), old_spec.map(|s| s.get("selector")), "spec.selector", &mut out);
        }
        ("apps", "ReplicaSet") => {
            workload(spec, Workload::ReplicaSet, &mut out);
            immutable(spec.get("selector"), old_spec.map(|s| s.get("selector")), "spec.selector", &mut out);
        }
        ("apps", "DaemonSet") => {
            workload(spec, Workload::DaemonSet, &mut out);
            immutable(spec.get("selector"), old_spec.map(|s| s.get("selector")), "spec.selector", &mut out);
        }
        ("apps", "StatefulSet") => {
            workload(spec, Workload::StatefulSet, &mut out);
            if let Some(old_spec) = old_spec {
                stateful_set_update(spec, old_spec, &mut out);
            }
        }
        ("batch", "Job") => {
            job(spec, &mut out);
            if let Some(old_spec) = old_spec {
                for field in ["selector", "template", "completionMode", "podFailurePolicy", "completions"] {
                    immutable(spec.get(field), Some(old_spec.get(field)), &format!("spec.{field}"), &mut out);
                }
            }
        }
        ("batch", "CronJob") => cron_job(spec, &mut out),
        _ => {}
    }
    out
}

// ---- names and keys ----

fn max_len(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
        && b.iter().all(|c| alnum(c) || *c == b'-')
}

fn dns_label_errors(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > 63 {
        errors.push(max_len(63));
    }
    if !is_dns_label(s) {
        errors.push(LABEL.into());
    }
    errors
}

fn dns_subdomain_errors(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > 253 {
        errors.push(max_len(253));
    }
    if !s.split('.').all(is_dns_label) {
        errors.push(SUBDOMAIN.into());
    }
    errors
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_alphanumeric();
    !b.is_empty()
        && b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
        && b.iter().all(|c| alnum(c) || matches!(c, b'-' | b'_' | b'.'))
}

/// `IsQualifiedName`: an optional DNS subdomain prefix and `/`, then a name of at most 63.
fn qualified_name_errors(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".into());
            } else {
                errors.extend(dns_subdomain_errors(prefix).into_iter().map(|e| format!("prefix part {e}")));
            }
            *name
        }
        _ => {
            errors.push(format!(
                "a qualified name {QUALIFIED_NAME} with an optional DNS subdomain prefix and '/' \
                 (e.g. 'example.com/MyName')"
            ));
            return errors;
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".into());
    } else if name.len() > 63 {
        errors.push(format!("name part {}", max_len(63)));
    }
    if !is_qualified_part(name) {
        errors.push(format!("name part {QUALIFIED_NAME}"));
    }
    errors
}

fn label_value_errors(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > 63 {
        errors.push(max_len(63));
    }
    if !s.is_empty() && !is_qualified_part(s) {
        errors.push(LABEL_VALUE.into());
    }
    errors
}

/// `IsConfigMapKey`: the keys of ConfigMaps and Secrets.
fn config_key_errors(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > 253 {
        errors.push(max_len(253));
    }
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')) {
        errors.push(CONFIG_KEY.into());
    }
    match s {
        "." => errors.push("must not be '.'".into()),
        ".." => errors.push("must not be '..'".into()),
        _ if s.starts_with("..") => errors.push("must not start with '..'".into()),
        _ => {}
    }
    errors
}

/// `IsValidPortName`: an IANA service name.
fn port_name_errors(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > 15 {
        errors.push(max_len(15));
    }
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-') {
        errors.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        errors.push("must contain at least one letter (a-z)".into());
    }
    if s.contains("--") {
        errors.push("must not contain consecutive hyphens".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errors.push("must not begin or end with a hyphen".into());
    }
    errors
}

// ---- how kube-apiserver prints values ----

/// A `map[string]string` as Go's `%#v`: `map[string]string{"app":"web"}`.
fn go_string_map(map: Option<&Value>) -> String {
    match map.and_then(Value::as_object) {
        None => "map[string]string(nil)".into(),
        Some(map) => {
            let pairs: Vec<String> =
                map.iter().map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or_default())).collect();
            format!("map[string]string{{{}}}", pairs.join(", "))
        }
    }
}

/// A label selector as Go's `%#v`.
fn go_selector(selector: Option<&Value>) -> String {
    let Some(selector) = selector.filter(|s| s.is_object()) else { return "(*v1.LabelSelector)(nil)".into() };
    let expressions = match selector.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".into(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|e| {
                    let values = match e.get("values").and_then(Value::as_array) {
                        None => "[]string(nil)".into(),
                        Some(v) => format!(
                            "[]string{{{}}}",
                            v.iter()
                                .map(|s| format!("{:?}", s.as_str().unwrap_or_default()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{:?}, Operator:{:?}, Values:{values}}}",
                        e.get("key").and_then(Value::as_str).unwrap_or_default(),
                        e.get("operator").and_then(Value::as_str).unwrap_or_default()
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{expressions}}}",
        go_string_map(selector.get("matchLabels"))
    )
}

/// A scalar as kube-apiserver prints a bad value: strings quoted, numbers and booleans bare.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

// ---- metadata ----

fn labels(map: Option<&Value>, path: &str, out: &mut Vec<FieldCause>) {
    for (key, value) in map.and_then(Value::as_object).into_iter().flatten() {
        for e in qualified_name_errors(key) {
            out.push(FieldCause::invalid(path, key, e));
        }
        let value = value.as_str().unwrap_or_default();
        for e in label_value_errors(value) {
            out.push(FieldCause::invalid(path, value, e));
        }
    }
}

fn object_meta(meta: &Value, path: &str, out: &mut Vec<FieldCause>) {
    labels(meta.get("labels"), &format!("{path}.labels"), out);
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        let path = format!("{path}.annotations");
        let mut size = 0;
        for (key, value) in annotations {
            // Annotation keys are qualified names, of any case.
            for e in qualified_name_errors(&key.to_lowercase()) {
                out.push(FieldCause::invalid(&path, key, e));
            }
            size += key.len() + value.as_str().map_or(0, str::len);
        }
        if size > MAX_ANNOTATIONS_SIZE {
            out.push(FieldCause::too_long(path, MAX_ANNOTATIONS_SIZE));
        }
    }
    for (i, finalizer) in meta.get("finalizers").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let finalizer = finalizer.as_str().unwrap_or_default();
        for e in qualified_name_errors(finalizer) {
            out.push(FieldCause::invalid(format!("{path}.finalizers[{i}]"), finalizer, e));
        }
    }
}

// ---- ConfigMap and Secret ----

/// The decoded size of a base64 value (its length if it is not base64).
fn decoded_len(value: &Value) -> usize {
    let text = value.as_str().unwrap_or_default();
    BASE64.decode(text.replace(['\n', '\r'], "")).map_or(text.len(), |b| b.len())
}

fn config_map(obj: &Value, old: Option<&Value>, out: &mut Vec<FieldCause>) {
    if let Some(old) = old {
        immutable_payload(obj, old, &["data", "binaryData"], out);
    }
    let binary = obj.get("binaryData").and_then(Value::as_object);
    let mut size = 0;
    for (key, value) in obj.get("data").and_then(Value::as_object).into_iter().flatten() {
        size += value.as_str().map_or(0, str::len);
        for e in config_key_errors(key) {
            out.push(FieldCause::invalid(format!("data[{key}]"), key, e));
        }
        if binary.is_some_and(|b| b.contains_key(key)) {
            out.push(FieldCause::invalid(format!("data[{key}]"), key, "duplicate of key present in binaryData"));
        }
    }
    for (key, value) in binary.into_iter().flatten() {
        size += decoded_len(value);
        for e in config_key_errors(key) {
            out.push(FieldCause::invalid(format!("binaryData[{key}]"), key, e));
        }
    }
    if size > MAX_DATA_SIZE {
        out.push(FieldCause::too_long("", MAX_DATA_SIZE));
    }
}

/// An `immutable: true` ConfigMap or Secret: it stays immutable and its payload unchanged.
fn immutable_payload(obj: &Value, old: &Value, payload: &[&str], out: &mut Vec<FieldCause>) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if obj.get("immutable").and_then(Value::as_bool) != Some(true) {
        out.push(FieldCause::forbidden("immutable", IMMUTABLE_WHEN_SET));
    }
    for field in payload {
        let empty = |v: Option<&Value>| v.and_then(Value::as_object).is_none_or(Map::is_empty);
        let (new, was) = (obj.get(*field), old.get(*field));
        if new != was && !(empty(new) && empty(was)) {
            out.push(FieldCause::forbidden(*field, IMMUTABLE_WHEN_SET));
        }
    }
}

fn secret(obj: &Value, old: Option<&Value>, out: &mut Vec<FieldCause>) {
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
    if let Some(old) = old {
        let was = old.get("type").and_then(Value::as_str).unwrap_or("");
        if was != kind {
            out.push(FieldCause::invalid("type", kind, IMMUTABLE));
        }
        immutable_payload(obj, old, &["data"], out);
    }
    let data = obj.get("data").and_then(Value::as_object);
    let mut size = 0;
    for (key, value) in data.into_iter().flatten() {
        size += decoded_len(value);
        for e in config_key_errors(key) {
            out.push(FieldCause::invalid(format!("data[{key}]"), key, e));
        }
    }
    let has = |key: &str| data.is_some_and(|d| d.contains_key(key));
    let required = |key: &str| FieldCause::required(format!("data[{key}]"), "");
    match kind {
        "kubernetes.io/service-account-token" => {
            let name = obj.pointer("/metadata/annotations/kubernetes.io~1service-account.name");
            if name.and_then(Value::as_str).is_none_or(str::is_empty) {
                out.push(FieldCause::required("metadata.annotations[kubernetes.io/service-account.name]", ""));
            }
        }
        "kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson" => {
            let key = if kind == "kubernetes.io/dockercfg" { ".dockercfg" } else { ".dockerconfigjson" };
            match data.and_then(|d| d.get(key)) {
                None => out.push(required(key)),
                Some(value) => {
                    let bytes = BASE64.decode(value.as_str().unwrap_or_default()).unwrap_or_default();
                    if let Err(e) = serde_json::from_slice::<Map<String, Value>>(&bytes) {
                        let path = format!("data[{key}]");
                        out.push(FieldCause::invalid(path, "<secret contents redacted>", e.to_string()));
                    }
                }
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            out.push(required("username"));
            out.push(required("password"));
        }
        "kubernetes.io/ssh-auth" if data.and_then(|d| d.get("ssh-privatekey")).is_none_or(|v| decoded_len(v) == 0) => {
            out.push(required("ssh-privatekey"));
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    out.push(required(key));
                }
            }
        }
        _ => {}
    }
    if size > MAX_DATA_SIZE {
        out.push(FieldCause::too_long("data", MAX_DATA_SIZE));
    }
}

// ---- pods ----

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn not_negative(v: &Value, key: &str, path: &str, out: &mut Vec<FieldCause>) {
    if let Some(n) = v.get(key).and_then(Value::as_i64).filter(|n| *n < 0) {
        out.push(FieldCause::invalid_shown(format!("{path}.{key}"), n.to_string(), NEGATIVE));
    }
}

fn port_number(v: &Value, path: String, required: bool, out: &mut Vec<FieldCause>) {
    match v.as_i64() {
        None | Some(0) if required => out.push(FieldCause::required(path, "")),
        None | Some(0) => {}
        Some(n) if !(1..=65535).contains(&n) => out.push(FieldCause::invalid_shown(path, n.to_string(), PORT_RANGE)),
        Some(_) => {}
    }
}

/// `ValidatePodSpec`, the parts that commonly matter, at `path` (`spec`, `spec.template.spec`).
fn pod_spec(spec: &Value, path: &str, out: &mut Vec<FieldCause>) {
    let volumes: Vec<&str> = list(spec, "volumes").iter().map(|v| str_at(v, "name")).collect();
    let mut seen_volumes = HashSet::new();
    for (i, name) in volumes.iter().enumerate() {
        let at = format!("{path}.volumes[{i}].name");
        if name.is_empty() {
            out.push(FieldCause::required(&at, ""));
        } else {
            for e in dns_label_errors(name) {
                out.push(FieldCause::invalid(&at, name, e));
            }
        }
        if !seen_volumes.insert(*name) {
            out.push(FieldCause::duplicate(&at, name));
        }
    }
    let containers = list(spec, "containers");
    if containers.is_empty() {
        out.push(FieldCause::required(format!("{path}.containers"), ""));
    }
    let mut names = HashSet::new();
    for key in ["initContainers", "containers"] {
        for (i, c) in list(spec, key).iter().enumerate() {
            container(c, &format!("{path}.{key}[{i}]"), &volumes, &mut names, out);
        }
    }
    match str_at(spec, "restartPolicy") {
        "Always" | "OnFailure" | "Never" => {}
        "" => out.push(FieldCause::required(format!("{path}.restartPolicy"), "")),
        other => out.push(FieldCause::not_supported(
            format!("{path}.restartPolicy"),
            other,
            &["Always", "OnFailure", "Never"],
        )),
    }
    match str_at(spec, "dnsPolicy") {
        "" | "ClusterFirst" | "ClusterFirstWithHostNet" | "Default" | "None" => {}
        other => out.push(FieldCause::not_supported(
            format!("{path}.dnsPolicy"),
            other,
            &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        )),
    }
    if let Some(n) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64).filter(|n| *n <= 0) {
        let at = format!("{path}.activeDeadlineSeconds");
        out.push(FieldCause::invalid_shown(at, n.to_string(), "must be between 1 and 2147483647, inclusive"));
    }
}

fn container(c: &Value, path: &str, volumes: &[&str], names: &mut HashSet<String>, out: &mut Vec<FieldCause>) {
    let name = str_at(c, "name");
    let name_path = format!("{path}.name");
    if name.is_empty() {
        out.push(FieldCause::required(&name_path, ""));
    } else {
        for e in dns_label_errors(name) {
            out.push(FieldCause::invalid(&name_path, name, e));
        }
    }
    if !names.insert(name.to_string()) {
        out.push(FieldCause::duplicate(&name_path, name));
    }
    if str_at(c, "image").is_empty() {
        out.push(FieldCause::required(format!("{path}.image"), ""));
    }
    let mut port_names = HashSet::new();
    for (i, port) in list(c, "ports").iter().enumerate() {
        let at = format!("{path}.ports[{i}]");
        let port_name = str_at(port, "name");
        if !port_name.is_empty() {
            let errors = port_name_errors(port_name);
            if !errors.is_empty() {
                for e in errors {
                    out.push(FieldCause::invalid(format!("{at}.name"), port_name, e));
                }
            } else if !port_names.insert(port_name) {
                out.push(FieldCause::duplicate(format!("{at}.name"), port_name));
            }
        }
        port_number(port.get("containerPort").unwrap_or(&Value::Null), format!("{at}.containerPort"), true, out);
        port_number(port.get("hostPort").unwrap_or(&Value::Null), format!("{at}.hostPort"), false, out);
        protocol(port, &at, out);
    }
    for (i, env) in list(c, "env").iter().enumerate() {
        let at = format!("{path}.env[{i}].name");
        let env_name = str_at(env, "name");
        if env_name.is_empty() {
            out.push(FieldCause::required(at, ""));
        } else if !env_name.chars().all(|ch| ch.is_ascii_graphic() || ch == ' ') || env_name.contains('=') {
            let detail =
                "a valid environment variable name must consist only of printable ASCII characters other than '='";
            out.push(FieldCause::invalid(at, env_name, detail));
        }
    }
    let mut mount_paths = HashSet::new();
    for (i, mount) in list(c, "volumeMounts").iter().enumerate() {
        let at = format!("{path}.volumeMounts[{i}]");
        let volume = str_at(mount, "name");
        if volume.is_empty() {
            out.push(FieldCause::required(format!("{at}.name"), ""));
        }
        if !volumes.contains(&volume) {
            out.push(FieldCause::not_found(format!("{at}.name"), volume));
        }
        let mount_path = str_at(mount, "mountPath");
        if mount_path.is_empty() {
            out.push(FieldCause::required(format!("{at}.mountPath"), ""));
        } else if !mount_paths.insert(mount_path) {
            out.push(FieldCause::invalid(format!("{at}.mountPath"), mount_path, "must be unique"));
        }
    }
    match str_at(c, "imagePullPolicy") {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => out.push(FieldCause::required(format!("{path}.imagePullPolicy"), "")),
        other => out.push(FieldCause::not_supported(
            format!("{path}.imagePullPolicy"),
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    match str_at(c, "terminationMessagePolicy") {
        "File" | "FallbackToLogsOnError" => {}
        "" => out.push(FieldCause::required(format!("{path}.terminationMessagePolicy"), "")),
        other => out.push(FieldCause::not_supported(
            format!("{path}.terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
}

fn protocol(port: &Value, path: &str, out: &mut Vec<FieldCause>) {
    match str_at(port, "protocol") {
        "TCP" | "UDP" | "SCTP" => {}
        "" => out.push(FieldCause::required(format!("{path}.protocol"), "")),
        other => out.push(FieldCause::not_supported(format!("{path}.protocol"), other, &["SCTP", "TCP", "UDP"])),
    }
}

/// `ValidatePodTemplateSpec` at `path` (`spec.template`).
fn pod_template(template: &Value, path: &str, out: &mut Vec<FieldCause>) {
    object_meta(template.get("metadata").unwrap_or(&Value::Null), &format!("{path}.metadata"), out);
    pod_spec(template.get("spec").unwrap_or(&Value::Null), &format!("{path}.spec"), out);
}

// ---- selectors and workloads ----

/// Whether a label selector selects `labels`; `None` if it is not a valid selector.
fn selects(selector: &Value, labels: &Map<String, Value>) -> Option<bool> {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    for (k, v) in selector.get("matchLabels").and_then(Value::as_object).into_iter().flatten() {
        if label(k) != v.as_str() {
            return Some(false);
        }
    }
    for expr in list(selector, "matchExpressions") {
        let key = str_at(expr, "key");
        let values: Vec<&str> = list(expr, "values").iter().filter_map(Value::as_str).collect();
        let matched = match str_at(expr, "operator") {
            "In" => label(key).is_some_and(|v| values.contains(&v)),
            "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
            "Exists" => label(key).is_some(),
            "DoesNotExist" => label(key).is_none(),
            _ => return None,
        };
        if !matched {
            return Some(false);
        }
    }
    Some(true)
}

/// Whether a selector has no requirements (selects everything).
fn empty_selector(selector: &Value) -> bool {
    selector.get("matchLabels").and_then(Value::as_object).is_none_or(Map::is_empty)
        && list(selector, "matchExpressions").is_empty()
}

/// `ValidateLabelSelector` at `path`; whether the selector is usable.
fn label_selector(selector: &Value, path: &str, out: &mut Vec<FieldCause>) -> bool {
    labels(selector.get("matchLabels"), &format!("{path}.matchLabels"), out);
    let mut valid = true;
    for (i, expr) in list(selector, "matchExpressions").iter().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        let values = list(expr, "values");
        match str_at(expr, "operator") {
            "In" | "NotIn" if values.is_empty() => out.push(FieldCause::required(
                format!("{at}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => out.push(FieldCause::forbidden(
                format!("{at}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                valid = false;
                out.push(FieldCause::invalid(format!("{at}.operator"), other, "not a valid selector operator"));
            }
        }
        let key = str_at(expr, "key");
        for e in qualified_name_errors(key) {
            out.push(FieldCause::invalid(format!("{at}.key"), key, e));
        }
        for (j, value) in values.iter().enumerate() {
            let value = value.as_str().unwrap_or_default();
            for e in label_value_errors(value) {
                out.push(FieldCause::invalid(format!("{at}.values[{j}]"), value, e));
            }
        }
    }
    valid
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Deployment,
    ReplicaSet,
    DaemonSet,
    StatefulSet,
}

/// The spec of a Deployment, ReplicaSet, DaemonSet or StatefulSet: counts, a selector that
/// selects its pod template, a valid template that restarts `Always`.
fn workload(spec: &Value, kind: Workload, out: &mut Vec<FieldCause>) {
    not_negative(spec, "replicas", "spec", out);
    let selector = spec.get("selector").filter(|s| s.is_object());
    let noun = match kind {
        Workload::Deployment | Workload::ReplicaSet => "deployment",
        Workload::DaemonSet => "daemonset",
        Workload::StatefulSet => "statefulset",
    };
    let mut usable = true;
    match selector {
        None if kind != Workload::DaemonSet => out.push(FieldCause::required("spec.selector", "")),
        None => {}
        Some(selector) => {
            usable = label_selector(selector, "spec.selector", out);
            if empty_selector(selector) {
                let detail = format!("empty selector is invalid for {noun}");
                out.push(FieldCause::invalid_shown("spec.selector", go_selector(Some(selector)), detail));
            }
        }
    }
    let template = spec.get("template").unwrap_or(&Value::Null);
    let template_labels = template.pointer("/metadata/labels");
    if !usable {
        out.push(FieldCause::invalid_shown("spec.selector", go_selector(selector), "invalid label selector"));
    } else {
        // A missing selector selects nothing; an empty one everything (and is refused above).
        let empty = Map::new();
        let labels = template_labels.and_then(Value::as_object).unwrap_or(&empty);
        let matches = match selector {
            None => false,
            Some(s) if empty_selector(s) => true,
            Some(s) => selects(s, labels).unwrap_or(true),
        };
        if !matches {
            out.push(FieldCause::invalid_shown(
                "spec.template.metadata.labels",
                go_string_map(template_labels),
                MISMATCH,
            ));
        }
    }
    if kind == Workload::StatefulSet {
        // Its pods get a volume per claim template, which its containers may mount.
        let mut with_claims = template.clone();
        let mut volumes = with_claims.pointer("/spec/volumes").and_then(Value::as_array).cloned().unwrap_or_default();
        for claim in list(spec, "volumeClaimTemplates") {
            let claim_name = claim.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
            if !volumes.iter().any(|v| str_at(v, "name") == claim_name) {
                let volume =
                    serde_json::json!({"name": claim_name, "persistentVolumeClaim": {"claimName": claim_name}});
                volumes.push(volume);
            }
        }
        if let Some(spec) = with_claims.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("volumes".into(), Value::Array(volumes));
        }
        pod_template(&with_claims, "spec.template", out);
    } else {
        pod_template(template, "spec.template", out);
    }
    let restart = template.pointer("/spec/restartPolicy").and_then(Value::as_str).unwrap_or("");
    if !restart.is_empty() && restart != "Always" {
        out.push(FieldCause::not_supported("spec.template.spec.restartPolicy", restart, &["Always"]));
    }
    not_negative(spec, "minReadySeconds", "spec", out);
    not_negative(spec, "revisionHistoryLimit", "spec", out);
    if kind == Workload::Deployment {
        not_negative(spec, "progressDeadlineSeconds", "spec", out);
        let deadline = spec.get("progressDeadlineSeconds").and_then(Value::as_i64);
        let min_ready = spec.get("minReadySeconds").and_then(Value::as_i64).unwrap_or(0);
        if let Some(deadline) = deadline.filter(|d| *d <= min_ready) {
            let detail = "must be greater than minReadySeconds";
            out.push(FieldCause::invalid_shown("spec.progressDeadlineSeconds", deadline.to_string(), detail));
        }
    }
    if kind == Workload::StatefulSet {
        match str_at(spec, "podManagementPolicy") {
            "OrderedReady" | "Parallel" => {}
            "" => out.push(FieldCause::required("spec.podManagementPolicy", "")),
            other => {
                out.push(FieldCause::invalid("spec.podManagementPolicy", other, "must be 'OrderedReady' or 'Parallel'"))
            }
        }
    }
}

const PERCENT: &str = concat!(
    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex ",
    "used for validation is '[0-9]+%')"
);

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// An int-or-percent as Go's `%#v` prints an `intstr.IntOrString`.
fn go_int_or_string(value: &Value) -> String {
    match value {
        Value::String(s) => format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{s:?}}}"),
        other => format!("intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}", other.as_i64().unwrap_or(0)),
    }
}

fn deployment_strategy(spec: &Value, out: &mut Vec<FieldCause>) {
    let strategy = spec.get("strategy").unwrap_or(&Value::Null);
    let rolling = strategy.get("rollingUpdate").filter(|r| r.is_object());
    match str_at(strategy, "type") {
        "Recreate" if rolling.is_some() => out.push(FieldCause::forbidden(
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy `type` is 'Recreate'",
        )),
        "RollingUpdate" => {
            let Some(rolling) = rolling else { return };
            let path = "spec.strategy.rollingUpdate";
            let mut values = [0i64; 2];
            for (slot, field) in values.iter_mut().zip(["maxUnavailable", "maxSurge"]) {
                let Some(value) = rolling.get(field) else { continue };
                let at = format!("{path}.{field}");
                match value {
                    Value::String(s) => match s.strip_suffix('%').filter(|n| is_digits(n)) {
                        Some(n) => *slot = n.parse().unwrap_or(0),
                        None => out.push(FieldCause::invalid_shown(at, go_int_or_string(value), PERCENT)),
                    },
                    other => {
                        let n = other.as_i64().unwrap_or(0);
                        *slot = n;
                        if n < 0 {
                            out.push(FieldCause::invalid_shown(at, n.to_string(), NEGATIVE));
                        }
                    }
                }
            }
            let unavailable = rolling.get("maxUnavailable").unwrap_or(&Value::Null);
            if values == [0, 0] {
                out.push(FieldCause::invalid_shown(
                    format!("{path}.maxUnavailable"),
                    go_int_or_string(unavailable),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
            if unavailable.is_string() && values[0] > 100 {
                out.push(FieldCause::invalid_shown(
                    format!("{path}.maxUnavailable"),
                    go_int_or_string(unavailable),
                    "must not be greater than 100%",
                ));
            }
        }
        "Recreate" => {}
        other => out.push(FieldCause::not_supported("spec.strategy.type", other, &["Recreate", "RollingUpdate"])),
    }
}

/// A StatefulSet's spec may only change in replicas, ordinals, template, update strategy,
/// revision history, claim retention and minReadySeconds.
fn stateful_set_update(spec: &Value, old: &Value, out: &mut Vec<FieldCause>) {
    let rest = |spec: &Value| -> BTreeMap<String, Value> {
        let mutable = [
            "replicas",
            "ordinals",
            "template",
            "updateStrategy",
            "revisionHistoryLimit",
            "persistentVolumeClaimRetentionPolicy",
            "minReadySeconds",
        ];
        spec.as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| !mutable.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    if rest(spec) != rest(old) {
        out.push(FieldCause::forbidden(
            "spec",
            concat!(
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', ",
                "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and ",
                "'minReadySeconds' are forbidden"
            ),
        ));
    }
}

/// `field is immutable` where an update changes `new` from `old` (`old` is `None` on create).
fn immutable(new: Option<&Value>, old: Option<Option<&Value>>, path: &str, out: &mut Vec<FieldCause>) {
    let Some(old) = old else { return };
    fn set(v: Option<&Value>) -> Option<&Value> {
        v.filter(|v| !v.is_null())
    }
    if set(new) == set(old) {
        return;
    }
    let shown = match path {
        "spec.selector" => go_selector(new),
        _ => match new {
            Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => shown(v),
            Some(v) => v.to_string(),
            None => "null".into(),
        },
    };
    out.push(FieldCause::invalid_shown(path, shown, IMMUTABLE));
}

// ---- batch ----

/// The restart policy of a Job's pods: `OnFailure` or `Never`.
fn job_restart_policy(template: &Value, path: &str, out: &mut Vec<FieldCause>) {
    let restart = template.pointer("/spec/restartPolicy").and_then(Value::as_str).unwrap_or("");
    if restart != "OnFailure" && restart != "Never" {
        out.push(FieldCause::not_supported(format!("{path}.spec.restartPolicy"), restart, &["OnFailure", "Never"]));
    }
}

fn job_counts(spec: &Value, path: &str, out: &mut Vec<FieldCause>) {
    for field in ["parallelism", "completions", "activeDeadlineSeconds", "backoffLimit"] {
        not_negative(spec, field, path, out);
    }
}

fn job(spec: &Value, out: &mut Vec<FieldCause>) {
    job_counts(spec, "spec", out);
    let template = spec.get("template").unwrap_or(&Value::Null);
    match spec.get("selector").filter(|s| s.is_object()) {
        None => out.push(FieldCause::required("spec.selector", "")),
        Some(selector) => {
            if label_selector(selector, "spec.selector", out) {
                let empty = Map::new();
                let template_labels = template.pointer("/metadata/labels");
                let labels = template_labels.and_then(Value::as_object).unwrap_or(&empty);
                if selects(selector, labels) == Some(false) {
                    let shown = go_string_map(template_labels);
                    out.push(FieldCause::invalid_shown("spec.template.metadata.labels", shown, MISMATCH));
                }
            }
        }
    }
    pod_template(template, "spec.template", out);
    job_restart_policy(template, "spec.template", out);
}

fn cron_job(spec: &Value, out: &mut Vec<FieldCause>) {
    if str_at(spec, "schedule").is_empty() {
        out.push(FieldCause::required("spec.schedule", ""));
    }
    match str_at(spec, "concurrencyPolicy") {
        "" | "Allow" | "Forbid" | "Replace" => {}
        other => out.push(FieldCause::not_supported("spec.concurrencyPolicy", other, &["Allow", "Forbid", "Replace"])),
    }
    not_negative(spec, "successfulJobsHistoryLimit", "spec", out);
    not_negative(spec, "failedJobsHistoryLimit", "spec", out);
    let job_spec = spec.pointer("/jobTemplate/spec").unwrap_or(&Value::Null);
    job_counts(job_spec, "spec.jobTemplate.spec", out);
    if let Some(selector) = job_spec.get("selector").filter(|s| !s.is_null()) {
        let shown = go_selector(Some(selector));
        out.push(FieldCause::invalid_shown(
            "spec.jobTemplate.spec.selector",
            shown,
            "`selector` will be auto-generated",
        ));
    }
    let template = job_spec.get("template").unwrap_or(&Value::Null);
    pod_template(template, "spec.jobTemplate.spec.template", out);
    job_restart_policy(template, "spec.jobTemplate.spec.template", out);
}

// ---- services ----

/// Service names are DNS-1035 labels (they become DNS names): a letter first.
fn service_name(obj: &Value, out: &mut Vec<FieldCause>) {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let starts_with_letter = name.bytes().next().is_some_and(|c| c.is_ascii_lowercase());
    if !name.is_empty() && (!starts_with_letter || !is_dns_label(name)) {
        out.push(FieldCause::invalid("metadata.name", name, DNS1035));
    }
    if name.len() > 63 {
        out.push(FieldCause::invalid("metadata.name", name, max_len(63)));
    }
}

fn service(spec: &Value, out: &mut Vec<FieldCause>) {
    let kind = str_at(spec, "type");
    let ports = list(spec, "ports");
    let headless = str_at(spec, "clusterIP") == "None";
    match kind {
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName" | "" => {}
        other => out.push(FieldCause::not_supported(
            "spec.type",
            other,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    if kind == "ExternalName" {
        let name = str_at(spec, "externalName");
        if name.is_empty() {
            out.push(FieldCause::required("spec.externalName", ""));
        } else {
            for e in dns_subdomain_errors(name.trim_end_matches('.')) {
                out.push(FieldCause::invalid("spec.externalName", name, e));
            }
        }
    } else if ports.is_empty() && !headless {
        out.push(FieldCause::required("spec.ports", ""));
    }
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        let name = str_at(port, "name");
        if ports.len() > 1 && name.is_empty() {
            out.push(FieldCause::required(format!("{at}.name"), ""));
        } else if !name.is_empty() {
            for e in dns_label_errors(name) {
                out.push(FieldCause::invalid(format!("{at}.name"), name, e));
            }
            if !names.insert(name) {
                out.push(FieldCause::duplicate(format!("{at}.name"), name));
            }
        }
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&number) {
            out.push(FieldCause::invalid_shown(format!("{at}.port"), number.to_string(), PORT_RANGE));
        }
        protocol(port, &at, out);
        match port.get("targetPort") {
            Some(Value::String(target)) => {
                for e in port_name_errors(target) {
                    out.push(FieldCause::invalid(format!("{at}.targetPort"), target, e));
                }
            }
            Some(target) => {
                let n = target.as_i64().unwrap_or(0);
                if !(1..=65535).contains(&n) {
                    out.push(FieldCause::invalid_shown(format!("{at}.targetPort"), n.to_string(), PORT_RANGE));
                }
            }
            None => {}
        }
        let node_port = port.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        if kind == "ClusterIP" && node_port != 0 {
            out.push(FieldCause::forbidden(format!("{at}.nodePort"), "may not be used when `type` is 'ClusterIP'"));
        }
    }
    match str_at(spec, "sessionAffinity") {
        "" | "None" | "ClientIP" => {}
        other => out.push(FieldCause::not_supported("spec.sessionAffinity", other, &["ClientIP", "None"])),
    }
    labels(spec.get("selector"), "spec.selector", out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults;
    use crate::kinds::find;
    use serde_json::json;

    fn kind(group: &str, resource: &str) -> &'static ResourceKind {
        find(group, "v1", resource).unwrap()
    }

    /// The messages of a defaulted object's causes, as `field: message`.
    fn problems(group: &str, resource: &str, mut obj: Value, old: Option<&Value>) -> Vec<String> {
        defaults::apply(kind(group, resource), &mut obj);
        causes(kind(group, resource), &obj, old).iter().map(|c| format!("{}: {}", c.field, c.message())).collect()
    }

    fn deploy(selector: Value, labels: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"selector": selector,
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}})
    }

    #[test]
    fn deployments_need_a_selector_that_matches_their_template() {
        assert!(problems(
            "apps",
            "deployments",
            deploy(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"})),
            None
        )
        .is_empty());
        let mismatch = problems(
            "apps",
            "deployments",
            deploy(json!({"matchLabels": {"app": "web"}}), json!({"app": "api"})),
            None,
        );
        assert_eq!(
            mismatch,
            [
                r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"api"}: `selector` does not match template `labels`"#
            ]
        );
        let mut missing = deploy(json!(null), json!({"app": "web"}));
        missing["spec"].as_object_mut().unwrap().remove("selector");
        assert_eq!(
            problems("apps", "deployments", missing, None),
            [
                "spec.selector: Required value",
                r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: `selector` does not match template `labels`"#
            ]
        );
        let empty = problems("apps", "deployments", deploy(json!({}), json!({"app": "web"})), None);
        assert_eq!(
            empty,
            ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"]
        );
        let mut negative = deploy(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"}));
        negative["spec"]["replicas"] = json!(-1);
        assert_eq!(
            problems("apps", "deployments", negative, None),
            ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
        );
        let expressions = deploy(
            json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}),
            json!({"tier": "b"}),
        );
        assert!(problems("apps", "deployments", expressions, None).is_empty());
    }

    #[test]
    fn workload_selectors_are_immutable() {
        let old = deploy(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"}));
        let new = deploy(json!({"matchLabels": {"app": "api"}}), json!({"app": "api"}));
        assert_eq!(
            problems("apps", "deployments", new, Some(&old)),
            [
                r#"spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"api"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"#
            ]
        );
        assert!(problems("apps", "deployments", old.clone(), Some(&old)).is_empty());
        let mut sts = deploy(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"}));
        let old_sts = sts.clone();
        sts["spec"]["serviceName"] = json!("other");
        sts["spec"]["replicas"] = json!(3);
        let out = problems("apps", "statefulsets", sts, Some(&old_sts));
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].starts_with("spec: Forbidden: updates to statefulset spec for fields other than 'replicas'"));
    }

    #[test]
    fn pod_specs_need_named_unique_containers_with_images_and_valid_ports() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "Web", "image": "nginx", "ports": [{"containerPort": 70000, "name": "http"}, {"containerPort": 81, "name": "http"}]},
            {"name": "side"},
            {"name": "side", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/d"}]},
        ]}});
        let out = problems("", "pods", pod, None);
        assert_eq!(
            out,
            [
                format!(r#"spec.containers[0].name: Invalid value: "Web": {LABEL}"#),
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive".into(),
                r#"spec.containers[0].ports[1].name: Duplicate value: "http""#.into(),
                "spec.containers[1].image: Required value".into(),
                r#"spec.containers[2].name: Duplicate value: "side""#.into(),
                r#"spec.containers[2].volumeMounts[0].name: Not found: "data""#.into(),
            ]
        );
        assert_eq!(problems("", "pods", json!({"spec": {}}), None), ["spec.containers: Required value"]);
    }

    #[test]
    fn metadata_labels_and_annotations_are_checked() {
        let cm = json!({"metadata": {"name": "c", "labels": {"bad key!": "ok", "app": "-bad"},
            "annotations": {"Example.com/Key": "fine", "big": "x".repeat(MAX_ANNOTATIONS_SIZE)}}});
        let out = problems("", "configmaps", cm, None);
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(out[0], format!(r#"metadata.labels: Invalid value: "-bad": {LABEL_VALUE}"#));
        assert_eq!(out[1], format!(r#"metadata.labels: Invalid value: "bad key!": name part {QUALIFIED_NAME}"#));
        assert_eq!(out[2], "metadata.annotations: Too long: must have at most 262144 bytes");
    }

    #[test]
    fn config_map_and_secret_keys_sizes_and_immutability() {
        let cm = json!({"metadata": {"name": "c"}, "data": {"ok.key": "1", "bad/key": "2", "..x": "3"}});
        assert_eq!(
            problems("", "configmaps", cm, None),
            [
                r#"data[..x]: Invalid value: "..x": must not start with '..'"#.to_string(),
                format!(r#"data[bad/key]: Invalid value: "bad/key": {CONFIG_KEY}"#),
            ]
        );
        let big = json!({"metadata": {"name": "s"}, "data": {"a": BASE64.encode(vec![0u8; MAX_DATA_SIZE + 1])}});
        assert_eq!(problems("", "secrets", big, None), ["data: Too long: must have at most 1048576 bytes"]);
        let old = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}});
        let changed = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "2"}});
        assert_eq!(
            problems("", "configmaps", changed, Some(&old)),
            ["data: Forbidden: field is immutable when `immutable` is set"]
        );
        let tls = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
        assert_eq!(problems("", "secrets", tls, None), ["data[tls.key]: Required value"]);
        let old = json!({"metadata": {"name": "s"}, "type": "Opaque"});
        let retyped =
            json!({"metadata": {"name": "s"}, "type": "kubernetes.io/basic-auth", "data": {"username": "eA=="}});
        assert_eq!(
            problems("", "secrets", retyped, Some(&old)),
            [r#"type: Invalid value: "kubernetes.io/basic-auth": field is immutable"#]
        );
    }

    #[test]
    fn services_need_ports_in_range_with_unique_names() {
        assert_eq!(
            problems("", "services", json!({"spec": {"selector": {"app": "web"}}}), None),
            ["spec.ports: Required value"]
        );
        assert!(problems("", "services", json!({"spec": {"clusterIP": "None"}}), None).is_empty());
        let numeric = json!({"metadata": {"name": "1web"}, "spec": {"ports": [{"port": 80}]}});
        assert_eq!(
            problems("", "services", numeric, None),
            [format!(r#"metadata.name: Invalid value: "1web": {DNS1035}"#)]
        );
        assert!(problems(
            "",
            "services",
            json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
            None
        )
        .is_empty());
        let bad = json!({"spec": {"ports": [{"port": 0, "name": "a"}, {"port": 80, "name": "a"}, {"port": 81, "nodePort": 30001}]}});
        assert_eq!(
            problems("", "services", bad, None),
            [
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                r#"spec.ports[1].name: Duplicate value: "a""#,
                "spec.ports[2].name: Required value",
                "spec.ports[2].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
            ]
        );
    }

    #[test]
    fn jobs_restart_on_failure_or_never_and_keep_their_template() {
        let job = |restart: &str, image: &str| {
            json!({"metadata": {"name": "j", "uid": "u"}, "spec": {"template": {"spec": {"restartPolicy": restart,
                "containers": [{"name": "c", "image": image}]}}}})
        };
        let mut ok = job("Never", "perl");
        defaults::for_create(kind("batch", "jobs"), &mut ok);
        assert!(causes(kind("batch", "jobs"), &ok, None).is_empty());
        let mut always = job("", "perl");
        defaults::for_create(kind("batch", "jobs"), &mut always);
        let out: Vec<String> = causes(kind("batch", "jobs"), &always, None)
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message()))
            .collect();
        assert_eq!(
            out,
            [
                r#"spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#
            ]
        );
        let mut changed = ok.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("python");
        let out = causes(kind("batch", "jobs"), &changed, Some(&ok));
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].field.as_str(), out[0].detail.as_str()), ("spec.template", IMMUTABLE));
    }

    #[test]
    fn name_rules_match_kube() {
        assert!(qualified_name_errors("example.com/My-Name_1").is_empty());
        assert_eq!(qualified_name_errors("a/b/c").len(), 1);
        assert_eq!(qualified_name_errors("/x"), ["prefix part must be non-empty"]);
        assert!(label_value_errors("").is_empty());
        assert_eq!(label_value_errors(&"a".repeat(64)), [max_len(63)]);
        assert_eq!(port_name_errors("80"), ["must contain at least one letter (a-z)"]);
        assert!(port_name_errors("http-alt").is_empty());
        assert_eq!(config_key_errors("."), ["must not be '.'"]);
    }
}
