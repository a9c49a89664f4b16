//! CustomResourceDefinitions as plain data: reading a CRD into a [`CustomKind`], its
//! defaults and validation (kube's `apiextensions` `SetDefaults_*` and
//! `ValidateCustomResourceDefinition`), and the status the CRD controller writes
//! (`acceptedNames`, `storedVersions`, the NamesAccepted/Established/Terminating conditions).

use serde_json::{json, Map, Value};

use crate::api_error::FieldCause;
use crate::custom_kinds::{self, Conversion, CustomKind, CustomVersion, Names, ScalePaths};

/// The finalizer that keeps a CRD until its custom objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

const DNS1035: &str = concat!(
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic ",
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for ",
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
);

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn strings_at(v: &Value, pointer: &str) -> Vec<String> {
    let items = v.pointer(pointer).and_then(Value::as_array);
    items.map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect()).unwrap_or_default()
}

/// The names a CRD asks for (`spec.names`, defaulted).
pub fn names_of(crd: &Value) -> Names {
    let kind = str_at(crd, "/spec/names/kind").to_string();
    let singular = match str_at(crd, "/spec/names/singular") {
        "" => kind.to_lowercase(),
        s => s.to_string(),
    };
    let list_kind = match str_at(crd, "/spec/names/listKind") {
        "" => format!("{kind}List"),
        s => s.to_string(),
    };
    Names {
        plural: str_at(crd, "/spec/names/plural").to_string(),
        singular,
        kind,
        list_kind,
        short_names: strings_at(crd, "/spec/names/shortNames"),
        categories: strings_at(crd, "/spec/names/categories"),
    }
}

/// Fills in what kube defaults in a CRD: `names.singular` and `names.listKind`, the
/// conversion strategy `None`, and printer columns' `priority` 0.
pub fn apply_defaults(crd: &mut Value) {
    let names = names_of(crd);
    let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if let Some(n) = spec.get_mut("names").and_then(Value::as_object_mut) {
        if !names.kind.is_empty() {
            n.entry("singular").or_insert_with(|| json!(names.singular));
            n.entry("listKind").or_insert_with(|| json!(names.list_kind));
        }
    }
    let conversion = spec.entry("conversion").or_insert_with(|| json!({}));
    if let Some(c) = conversion.as_object_mut() {
        c.entry("strategy").or_insert_with(|| json!("None"));
    }
    if let Some(versions) = spec.get_mut("versions").and_then(Value::as_array_mut) {
        for v in versions {
            let columns = v.get_mut("additionalPrinterColumns").and_then(Value::as_array_mut);
            for column in columns.into_iter().flatten() {
                if let Some(c) = column.as_object_mut() {
                    c.entry("priority").or_insert_with(|| json!(0));
                }
            }
        }
    }
}

/// Every reason `crd` is invalid, as kube's CRD validation words it.
pub fn validate(crd: &Value, old: Option<&Value>) -> Vec<FieldCause> {
    let mut out = Vec::new();
    let group = str_at(crd, "/spec/group");
    let names = names_of(crd);
    let name = str_at(crd, "/metadata/name");
    if !names.plural.is_empty() && !group.is_empty() && name != format!("{}.{group}", names.plural) {
        out.push(FieldCause::invalid("metadata.name", name, "must be spec.names.plural+\".\"+spec.group"));
    }
    if group.is_empty() {
        out.push(FieldCause::required("spec.group", ""));
    } else if !group.contains('.') {
        out.push(FieldCause::invalid("spec.group", group, "should be a domain with at least one dot"));
    }
    for (field, value) in [("plural", &names.plural), ("singular", &names.singular)] {
        if value.is_empty() {
            out.push(FieldCause::required(format!("spec.names.{field}"), ""));
        } else if !is_dns1035(value) {
            out.push(FieldCause::invalid(format!("spec.names.{field}"), value, DNS1035));
        }
    }
    for (i, short) in names.short_names.iter().enumerate() {
        if !is_dns1035(short) {
            out.push(FieldCause::invalid(format!("spec.names.shortNames[{i}]"), short, DNS1035));
        }
    }
    if names.kind.is_empty() {
        out.push(FieldCause::required("spec.names.kind", ""));
    } else if names.kind == names.list_kind {
        out.push(FieldCause::invalid("spec.names.listKind", &names.list_kind, "kind and listKind may not be the same"));
    }
    match str_at(crd, "/spec/scope") {
        "Namespaced" | "Cluster" => {}
        "" => out.push(FieldCause::required("spec.scope", "")),
        other => out.push(FieldCause::not_supported("spec.scope", other, &["Cluster", "Namespaced"])),
    }
    versions(crd, &mut out);
    match str_at(crd, "/spec/conversion/strategy") {
        "" | "None" => {}
        "Webhook" => {
            if crd.pointer("/spec/conversion/webhook/clientConfig").is_none() {
                let detail = "required when strategy is set to Webhook";
                out.push(FieldCause::required("spec.conversion.webhook", detail));
            }
        }
        other => out.push(FieldCause::not_supported("spec.conversion.strategy", other, &["None", "Webhook"])),
    }
    if let Some(old) = old {
        let was = str_at(old, "/spec/group");
        if was != group {
            out.push(FieldCause::invalid("spec.group", group, "field is immutable"));
        }
    }
    out
}

fn versions(crd: &Value, out: &mut Vec<FieldCause>) {
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array).cloned().unwrap_or_default();
    if versions.is_empty() {
        out.push(FieldCause::invalid_shown(
            "spec.versions",
            "null".into(),
            "must have exactly one version marked as storage version",
        ));
        return;
    }
    let storage = versions.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true)).count();
    if storage != 1 {
        let shown = format!("[]apiextensions.CustomResourceDefinitionVersion{{...{} versions}}", versions.len());
        out.push(FieldCause::invalid_shown(
            "spec.versions",
            shown,
            "must have exactly one version marked as storage version",
        ));
    }
    let mut seen = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let path = format!("spec.versions[{i}]");
        let name = str_at(v, "/name");
        if name.is_empty() {
            out.push(FieldCause::required(format!("{path}.name"), ""));
        } else if !is_dns1035(name) {
            out.push(FieldCause::invalid(format!("{path}.name"), name, DNS1035));
        } else if seen.contains(&name) {
            out.push(FieldCause::duplicate(format!("{path}.name"), name));
        }
        seen.push(name);
        for flag in ["served", "storage"] {
            if !v.get(flag).is_some_and(Value::is_boolean) {
                out.push(FieldCause::required(format!("{path}.{flag}"), ""));
            }
        }
        match v.pointer("/schema/openAPIV3Schema") {
            None => out.push(FieldCause::required(format!("{path}.schema.openAPIV3Schema"), "schemas are required")),
            Some(schema) => {
                out.extend(crate::crd_schema::check_structural(schema, &format!("{path}.schema.openAPIV3Schema")))
            }
        }
        let columns = v.get("additionalPrinterColumns").and_then(Value::as_array);
        for (j, c) in columns.into_iter().flatten().enumerate() {
            let cpath = format!("{path}.additionalPrinterColumns[{j}]");
            for field in ["name", "type", "jsonPath"] {
                if str_at(c, &format!("/{field}")).is_empty() {
                    out.push(FieldCause::required(format!("{cpath}.{field}"), ""));
                }
            }
            let ty = str_at(c, "/type");
            let types = ["integer", "number", "string", "boolean", "date"];
            if !ty.is_empty() && !types.contains(&ty) {
                out.push(FieldCause::not_supported(format!("{cpath}.type"), ty, &types));
            }
        }
        if let Some(scale) = v.pointer("/subresources/scale") {
            for field in ["specReplicasPath", "statusReplicasPath"] {
                let p = str_at(scale, &format!("/{field}"));
                if p.is_empty() {
                    out.push(FieldCause::required(format!("{path}.subresources.scale.{field}"), ""));
                } else if !p.starts_with('.') {
                    out.push(FieldCause::invalid(
                        format!("{path}.subresources.scale.{field}"),
                        p,
                        "should be a json path under .spec or .status",
                    ));
                }
            }
        }
    }
}

fn is_dns1035(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// The [`CustomKind`] a (valid) CRD defines. `Err` says why it cannot be served.
pub fn definition(crd: &Value) -> Result<CustomKind, String> {
    let group = str_at(crd, "/spec/group");
    let names = names_of(crd);
    if group.is_empty() || names.plural.is_empty() || names.kind.is_empty() {
        return Err("spec.group, spec.names.plural and spec.names.kind are required".into());
    }
    let namespaced = str_at(crd, "/spec/scope") != "Cluster";
    let all = crd.pointer("/spec/versions").and_then(Value::as_array).cloned().unwrap_or_default();
    let storage = all.iter().find(|v| v.get("storage").and_then(Value::as_bool) == Some(true));
    let storage_version = storage.map(|v| str_at(v, "/name")).ok_or("no storage version")?;
    let mut versions: Vec<CustomVersion> = Vec::new();
    for v in &all {
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let name = str_at(v, "/name");
        let status = v.pointer("/subresources/status").is_some();
        let scale = v.pointer("/subresources/scale").map(|s| ScalePaths {
            spec_replicas: str_at(s, "/specReplicasPath").to_string(),
            status_replicas: str_at(s, "/statusReplicasPath").to_string(),
            label_selector: s.get("labelSelectorPath").and_then(Value::as_str).map(String::from),
        });
        let kind = custom_kinds::kind_for(group, name, &names, namespaced, status, scale.is_some());
        versions.push(CustomVersion {
            kind,
            schema: v.pointer("/schema/openAPIV3Schema").cloned(),
            printer_columns: v.get("additionalPrinterColumns").and_then(Value::as_array).cloned().unwrap_or_default(),
            scale,
            deprecated: v.get("deprecated").and_then(Value::as_bool).unwrap_or(false),
            deprecation_warning: v.get("deprecationWarning").and_then(Value::as_str).map(String::from),
        });
    }
    if versions.is_empty() {
        return Err("no version is served".into());
    }
    versions.sort_by(|a, b| custom_kinds::version_priority(a.kind.version, b.kind.version));
    let conversion = match str_at(crd, "/spec/conversion/strategy") {
        "Webhook" => Conversion::Webhook {
            client_config: crd.pointer("/spec/conversion/webhook/clientConfig").cloned().unwrap_or(Value::Null),
        },
        _ => Conversion::None,
    };
    Ok(CustomKind {
        crd_name: str_at(crd, "/metadata/name").to_string(),
        group: custom_kinds::intern(group),
        resource: custom_kinds::intern(&names.plural),
        list_kind: custom_kinds::intern(&names.list_kind),
        versions,
        storage_version: custom_kinds::intern(storage_version),
        conversion,
        preserve_unknown_fields: crd.pointer("/spec/preserveUnknownFields").and_then(Value::as_bool).unwrap_or(false),
        terminating: false,
    })
}

/// The first name of `names` another served kind of the same group already uses, as kube's
/// naming controller words the NamesAccepted condition's reason and message.
pub fn name_conflict(group: &str, names: &Names, own_crd: &str) -> Option<(&'static str, String)> {
    let same_group = crate::kinds::all().into_iter().filter(|k| k.group == group);
    for k in same_group {
        if custom_kinds::get(k.group, k.resource).is_some_and(|c| c.crd_name == own_crd) {
            continue;
        }
        if k.resource == names.plural || k.singular == names.plural {
            return Some(("PluralConflict", format!("{:?} is already in use", names.plural)));
        }
        if k.resource == names.singular || k.singular == names.singular {
            return Some(("SingularConflict", format!("{:?} is already in use", names.singular)));
        }
        if let Some(s) = names.short_names.iter().find(|s| k.short_names.contains(&s.as_str()) || k.resource == *s) {
            return Some(("ShortNamesConflict", format!("{s:?} is already in use")));
        }
        if k.kind == names.kind {
            return Some(("KindConflict", format!("{:?} is already in use", names.kind)));
        }
    }
    None
}

/// One status condition; `lastTransitionTime` kept from `previous` if the status is unchanged.
fn condition(previous: &Value, ty: &str, status: bool, reason: &str, message: &str, now: &str) -> Value {
    let status = if status { "True" } else { "False" };
    let old = previous
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(ty)));
    let since = match old {
        Some(c) if c.get("status").and_then(Value::as_str) == Some(status) => {
            c.get("lastTransitionTime").cloned().unwrap_or_else(|| json!(now))
        }
        _ => json!(now),
    };
    json!({"type": ty, "status": status, "lastTransitionTime": since, "reason": reason, "message": message})
}

/// What the CRD controller observed, for [`desired_status`].
pub struct Observed<'a> {
    pub conflict: Option<(&'static str, String)>,
    pub terminating: bool,
    pub now: &'a str,
}

/// The status a CRD should have: its accepted names, stored versions and conditions.
pub fn desired_status(crd: &Value, seen: &Observed<'_>) -> Value {
    let names = names_of(crd);
    let mut status = crd.get("status").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut conditions = Vec::new();
    match &seen.conflict {
        None => {
            let mut accepted = Map::new();
            accepted.insert("plural".into(), json!(names.plural));
            accepted.insert("singular".into(), json!(names.singular));
            accepted.insert("kind".into(), json!(names.kind));
            accepted.insert("listKind".into(), json!(names.list_kind));
            if !names.short_names.is_empty() {
                accepted.insert("shortNames".into(), json!(names.short_names));
            }
            if !names.categories.is_empty() {
                accepted.insert("categories".into(), json!(names.categories));
            }
            status.insert("acceptedNames".into(), Value::Object(accepted));
            conditions.push(condition(crd, "NamesAccepted", true, "NoConflicts", "no conflicts found", seen.now));
            let established = "the initial names have been accepted";
            conditions.push(condition(crd, "Established", true, "InitialNamesAccepted", established, seen.now));
        }
        Some((reason, message)) => {
            status.entry("acceptedNames").or_insert_with(|| json!({"plural": "", "kind": ""}));
            conditions.push(condition(crd, "NamesAccepted", false, reason, message, seen.now));
            let not = "not all names are accepted";
            conditions.push(condition(crd, "Established", false, "NotAccepted", not, seen.now));
        }
    }
    if seen.terminating {
        let message = "CustomResource deletion is in progress";
        conditions.push(condition(crd, "Terminating", true, "InstanceDeletionInProgress", message, seen.now));
    }
    status.insert("conditions".into(), Value::Array(conditions));
    let mut stored = strings_at(crd, "/status/storedVersions");
    if seen.conflict.is_none() {
        if let Ok(def) = definition(crd) {
            if !stored.iter().any(|v| v == def.storage_version) {
                stored.push(def.storage_version.to_string());
            }
        }
    }
    status.insert("storedVersions".into(), json!(stored));
    Value::Object(status)
}

/// Whether the CRD's Established condition is True.
pub fn is_established(crd: &Value) -> bool {
    let conditions = crd.pointer("/status/conditions").and_then(Value::as_array);
    conditions.into_iter().flatten().any(|c| {
        c.get("type").and_then(Value::as_str) == Some("Established")
            && c.get("status").and_then(Value::as_str) == Some("True")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loadtest_crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "loadtests.beta.kuar.com"},
            "spec": {
                "group": "beta.kuar.com",
                "scope": "Namespaced",
                "names": {"plural": "loadtests", "kind": "LoadTest", "shortNames": ["lt"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object"}}}}},
                    {"name": "v2", "served": true, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object"}},
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}}}
                ]
            }
        })
    }

    #[test]
    fn defaults_fill_names_and_conversion() {
        let mut crd = loadtest_crd();
        apply_defaults(&mut crd);
        assert_eq!(crd["spec"]["names"]["singular"], "loadtest");
        assert_eq!(crd["spec"]["names"]["listKind"], "LoadTestList");
        assert_eq!(crd["spec"]["conversion"]["strategy"], "None");
    }

    #[test]
    fn a_valid_crd_has_no_causes_and_defines_its_versions() {
        let crd = loadtest_crd();
        assert_eq!(validate(&crd, None), vec![]);
        let def = definition(&crd).unwrap();
        assert_eq!(def.storage_version, "v1");
        assert_eq!(def.versions.iter().map(|v| v.kind.version).collect::<Vec<_>>(), ["v2", "v1"]);
        assert_eq!(def.storage_kind().version, "v1");
        let v2 = def.version("v2").unwrap();
        assert_eq!(v2.kind.subresources.len(), 2);
        assert_eq!(v2.scale.as_ref().unwrap().spec_replicas, ".spec.replicas");
        assert_eq!(v2.kind.short_names, ["lt"]);
    }

    #[test]
    fn invalid_crds_name_every_field() {
        let mut crd = loadtest_crd();
        crd["metadata"]["name"] = json!("wrong");
        crd["spec"]["versions"][1]["storage"] = json!(true);
        crd["spec"]["scope"] = json!("Galaxy");
        let fields: Vec<String> = validate(&crd, None).into_iter().map(|c| c.field).collect();
        assert_eq!(fields, ["metadata.name", "spec.scope", "spec.versions"]);
    }

    #[test]
    fn status_accepts_names_and_records_the_storage_version() {
        let crd = loadtest_crd();
        let status =
            desired_status(&crd, &Observed { conflict: None, terminating: false, now: "2026-01-01T00:00:00Z" });
        assert_eq!(status["acceptedNames"]["shortNames"], json!(["lt"]));
        assert_eq!(status["storedVersions"], json!(["v1"]));
        let mut with = crd.clone();
        with["status"] = status;
        assert!(is_established(&with));
        let later = desired_status(&with, &Observed { conflict: None, terminating: true, now: "2027-01-01T00:00:00Z" });
        assert_eq!(later["conditions"][1]["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert_eq!(later["conditions"][2]["type"], "Terminating");
    }
}
