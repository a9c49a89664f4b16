//! The JSON schemas of the built-in kinds, in OpenAPI 3 form: k8s-openapi's definitions
//! (`io.k8s.api.apps.v1.Deployment`, ...) collected once, with what kube-apiserver adds to
//! them and k8s-openapi leaves out.
//!
//! [`definitions`] holds, by definition name, the schema of every kind in [`BUILTIN`], of its
//! list (`io.k8s.api.apps.v1.DeploymentList`, which k8s-openapi has no type for), of the meta
//! types the REST paths send and take ([`STATUS`], [`DELETE_OPTIONS`], [`PATCH`],
//! [`WATCH_EVENT`], [`SCALE`]), and of everything those refer to. References have the
//! OpenAPI 3 form `#/components/schemas/NAME` ([`V3_REF_PREFIX`]); [`ref_name`] also reads
//! the Swagger 2.0 form, and [`resolve`] follows one. A `$ref` that carries a description
//! beside it is written `{"allOf": [{"$ref": ...}], "description": ...}`, as kube-apiserver
//! does in OpenAPI 3 (siblings of `$ref` are ignored there).
//!
//! Added to k8s-openapi's schemas:
//! - `x-kubernetes-group-version-kind` ([`GVK_EXTENSION`]) on each kind's and list's
//!   definition, and on the meta types: kubectl finds a kind's schema by it (`explain`, the
//!   strategic merge patches of client-side `apply`).
//! - `x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key` on the fields listed in
//!   [`PATCH_STRATEGIES`]: client-side `kubectl apply` reads them to build strategic merge
//!   patches (without them it would replace lists such as `containers` instead of merging them).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use k8s_openapi::api::{
    admissionregistration, apps, autoscaling, batch, coordination, core, discovery, events, policy, rbac, scheduling,
    storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use k8s_openapi::{ClusterResourceScope, ListableResource, NamespaceResourceScope};
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::kinds::{self, ResourceKind, BUILTIN};

/// How OpenAPI 3 documents refer to a schema: `#/components/schemas/NAME`.
pub const V3_REF_PREFIX: &str = "#/components/schemas/";
/// How Swagger 2.0 documents refer to a schema: `#/definitions/NAME`.
pub const V2_REF_PREFIX: &str = "#/definitions/";

/// The extension naming the group, version and Kind a definition (a list of them) or an
/// operation (one) is about.
pub const GVK_EXTENSION: &str = "x-kubernetes-group-version-kind";

/// `Status`: the body of every error and of some deletes.
pub const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
/// `DeleteOptions`: the optional body of a delete.
pub const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
/// `Patch`: the body of a patch (any of the patch media types).
pub const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
/// `WatchEvent`: one event of a watch stream.
pub const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
/// `ListMeta`: the metadata of a list.
pub const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
/// `autoscaling/v1` `Scale`: what the `scale` subresources read and write.
pub const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";

/// `(definition, field, x-kubernetes-patch-strategy, x-kubernetes-patch-merge-key)` of the
/// built-in types, from the `patchStrategy` and `patchMergeKey` Go struct tags that
/// kube-apiserver turns into these extensions and k8s-openapi does not carry.
pub const PATCH_STRATEGIES: &[(&str, &str, &str, Option<&str>)] = &[
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", "merge", None),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", "merge", Some("uid")),
    ("io.k8s.api.core.v1.PodSpec", "volumes", "merge,retainKeys", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "containers", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "merge", Some("ip")),
    ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", "merge", Some("topologyKey")),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims", "merge,retainKeys", Some("name")),
    ("io.k8s.api.core.v1.Container", "ports", "merge", Some("containerPort")),
    ("io.k8s.api.core.v1.Container", "env", "merge", Some("name")),
    ("io.k8s.api.core.v1.Container", "volumeMounts", "merge", Some("mountPath")),
    ("io.k8s.api.core.v1.Container", "volumeDevices", "merge", Some("devicePath")),
    ("io.k8s.api.core.v1.EphemeralContainer", "ports", "merge", Some("containerPort")),
    ("io.k8s.api.core.v1.EphemeralContainer", "env", "merge", Some("name")),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", "merge", Some("mountPath")),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", "merge", Some("devicePath")),
    ("io.k8s.api.core.v1.ContainerStatus", "allocatedResourcesStatus", "merge", Some("name")),
    ("io.k8s.api.core.v1.ContainerStatus", "volumeMounts", "merge", Some("mountPath")),
    ("io.k8s.api.core.v1.PodStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", "merge", Some("ip")),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", "merge", Some("ip")),
    ("io.k8s.api.core.v1.PodStatus", "resourceClaimStatuses", "merge,retainKeys", Some("name")),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", None),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", "merge", Some("type")),
    ("io.k8s.api.core.v1.NamespaceStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "merge", Some("port")),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.ServiceAccount", "secrets", "merge", Some("name")),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", "retainKeys", None),
    ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetSpec", "selector", "replace", None),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.storage.v1.CSINodeSpec", "drivers", "merge", Some("name")),
    ("io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration", "webhooks", "merge", Some("name")),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration", "webhooks", "merge", Some("name")),
    ("io.k8s.api.admissionregistration.v1.MutatingWebhook", "matchConditions", "merge", Some("name")),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhook", "matchConditions", "merge", Some("name")),
    ("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceStatus", "conditions", "merge", Some("type")),
];

/// The definition names of one built-in kind.
#[derive(Debug)]
struct KindSchemas {
    kind: &'static ResourceKind,
    /// `io.k8s.api.apps.v1.Deployment`.
    definition: String,
    /// `io.k8s.api.apps.v1.DeploymentList`.
    list: String,
}

#[derive(Debug)]
struct Registry {
    definitions: Map<String, Value>,
    kinds: Vec<KindSchemas>,
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

fn registry() -> &'static Registry {
    REGISTRY.get_or_init(build)
}

/// Every definition, by name (built on first use; a few milliseconds).
pub fn definitions() -> &'static Map<String, Value> {
    &registry().definitions
}

/// The definition named `name` (`io.k8s.api.core.v1.PodSpec`).
pub fn definition(name: &str) -> Option<&'static Value> {
    definitions().get(name)
}

/// The definition name of `kind`'s objects (`io.k8s.api.apps.v1.Deployment`); `None` for a
/// kind that is not built in.
pub fn definition_of(kind: &ResourceKind) -> Option<&'static str> {
    kind_schemas(kind).map(|k| k.definition.as_str())
}

/// The definition name of `kind`'s lists (`io.k8s.api.apps.v1.DeploymentList`).
pub fn list_definition_of(kind: &ResourceKind) -> Option<&'static str> {
    kind_schemas(kind).map(|k| k.list.as_str())
}

fn kind_schemas(kind: &ResourceKind) -> Option<&'static KindSchemas> {
    registry()
        .kinds
        .iter()
        .find(|k| (k.kind.group, k.kind.version, k.kind.resource) == (kind.group, kind.version, kind.resource))
}

/// The definition name a `$ref` points at, in either the OpenAPI 3 or the Swagger 2.0 form.
pub fn ref_name(reference: &str) -> Option<&str> {
    reference.strip_prefix(V3_REF_PREFIX).or_else(|| reference.strip_prefix(V2_REF_PREFIX))
}

/// The schema `schema` stands for: the definition its `$ref` names, also where the reference
/// is the lone entry of an `allOf` (how a reference with a description beside it is written),
/// or else `schema` itself. `None` if the reference names no definition.
pub fn resolve(schema: &Value) -> Option<&Value> {
    let reference = match schema.get("allOf").and_then(Value::as_array) {
        Some(all_of) if all_of.len() == 1 => all_of[0].get("$ref"),
        _ => schema.get("$ref"),
    };
    match reference {
        Some(reference) => definition(ref_name(reference.as_str()?)?),
        None => Some(schema),
    }
}

/// The names of the definitions that `roots` name, and of all those they refer to, however
/// deeply; names of no definition are left out.
pub fn reachable<'a>(roots: impl IntoIterator<Item = &'a str>) -> BTreeSet<&'static str> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&'static str> =
        roots.into_iter().filter_map(|r| definitions().get_key_value(r)).map(|(k, _)| k.as_str()).collect();
    while let Some(name) = todo.pop() {
        if !seen.insert(name) {
            continue;
        }
        if let Some(schema) = definition(name) {
            collect_refs(schema, &mut |r| {
                if let Some((key, _)) = ref_name(r).and_then(|n| definitions().get_key_value(n)) {
                    todo.push(key.as_str());
                }
            });
        }
    }
    seen
}

/// Calls `found` with every `$ref` string anywhere in `schema`.
pub fn collect_refs(schema: &Value, found: &mut impl FnMut(&str)) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(r)) => found(r),
                    _ => collect_refs(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, found)),
        _ => {}
    }
}

/// `[{"group": .., "version": .., "kind": ..}]`: the value of [`GVK_EXTENSION`] on a definition.
pub fn gvk_list(group: &str, version: &str, kind: &str) -> Value {
    json!([{"group": group, "version": version, "kind": kind}])
}

// ---- building ----

/// Whether a k8s-openapi scope type is the namespaced one.
trait Scope {
    const NAMESPACED: bool;
}

impl Scope for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}

impl Scope for ClusterResourceScope {
    const NAMESPACED: bool = false;
}

/// Adds `T`'s schema (and all it refers to) for `kind`; returns its definition name and its
/// list's Kind, or `None` if `T` is not `kind`'s type (group, version, Kind, resource or
/// scope differ), which the tests catch.
fn add<T>(gen: &mut SchemaGenerator, kind: &ResourceKind) -> Option<(String, &'static str)>
where
    T: JsonSchema + ListableResource,
    T::Scope: Scope,
{
    let same = (T::GROUP, T::VERSION, T::KIND, T::URL_PATH_SEGMENT, <T::Scope as Scope>::NAMESPACED)
        == (kind.group, kind.version, kind.kind, kind.resource, kind.namespaced);
    if !same {
        return None;
    }
    gen.subschema_for::<T>();
    Some((T::schema_name().into_owned(), T::LIST_KIND))
}

/// The k8s-openapi type of each built-in kind.
fn add_kind(gen: &mut SchemaGenerator, k: &ResourceKind) -> Option<(String, &'static str)> {
    match (k.group, k.kind) {
        ("", "Namespace") => add::<core::v1::Namespace>(gen, k),
        ("", "Pod") => add::<core::v1::Pod>(gen, k),
        ("", "Service") => add::<core::v1::Service>(gen, k),
        ("", "Endpoints") => add::<core::v1::Endpoints>(gen, k),
        ("", "ConfigMap") => add::<core::v1::ConfigMap>(gen, k),
        ("", "Secret") => add::<core::v1::Secret>(gen, k),
        ("", "ServiceAccount") => add::<core::v1::ServiceAccount>(gen, k),
        ("", "Node") => add::<core::v1::Node>(gen, k),
        ("", "Event") => add::<core::v1::Event>(gen, k),
        ("", "PersistentVolume") => add::<core::v1::PersistentVolume>(gen, k),
        ("", "PersistentVolumeClaim") => add::<core::v1::PersistentVolumeClaim>(gen, k),
        ("", "ResourceQuota") => add::<core::v1::ResourceQuota>(gen, k),
        ("", "LimitRange") => add::<core::v1::LimitRange>(gen, k),
        ("apiregistration.k8s.io", "APIService") => add::<apiregistration::APIService>(gen, k),
        ("apps", "ControllerRevision") => add::<apps::v1::ControllerRevision>(gen, k),
        ("apps", "DaemonSet") => add::<apps::v1::DaemonSet>(gen, k),
        ("apps", "Deployment") => add::<apps::v1::Deployment>(gen, k),
        ("apps", "ReplicaSet") => add::<apps::v1::ReplicaSet>(gen, k),
        ("apps", "StatefulSet") => add::<apps::v1::StatefulSet>(gen, k),
        ("events.k8s.io", "Event") => add::<events::v1::Event>(gen, k),
        ("batch", "CronJob") => add::<batch::v1::CronJob>(gen, k),
        ("batch", "Job") => add::<batch::v1::Job>(gen, k),
        ("policy", "PodDisruptionBudget") => add::<policy::v1::PodDisruptionBudget>(gen, k),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => add::<rbac::v1::ClusterRoleBinding>(gen, k),
        ("rbac.authorization.k8s.io", "ClusterRole") => add::<rbac::v1::ClusterRole>(gen, k),
        ("rbac.authorization.k8s.io", "RoleBinding") => add::<rbac::v1::RoleBinding>(gen, k),
        ("rbac.authorization.k8s.io", "Role") => add::<rbac::v1::Role>(gen, k),
        ("storage.k8s.io", "CSIDriver") => add::<storage::v1::CSIDriver>(gen, k),
        ("storage.k8s.io", "CSINode") => add::<storage::v1::CSINode>(gen, k),
        ("storage.k8s.io", "StorageClass") => add::<storage::v1::StorageClass>(gen, k),
        ("storage.k8s.io", "VolumeAttachment") => add::<storage::v1::VolumeAttachment>(gen, k),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            add::<admissionregistration::v1::MutatingWebhookConfiguration>(gen, k)
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            add::<admissionregistration::v1::ValidatingWebhookConfiguration>(gen, k)
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => add::<apiextensions::CustomResourceDefinition>(gen, k),
        ("scheduling.k8s.io", "PriorityClass") => add::<scheduling::v1::PriorityClass>(gen, k),
        ("coordination.k8s.io", "Lease") => add::<coordination::v1::Lease>(gen, k),
        ("discovery.k8s.io", "EndpointSlice") => add::<discovery::v1::EndpointSlice>(gen, k),
        _ => None,
    }
}

fn build() -> Registry {
    let started = std::time::Instant::now();
    let mut gen = SchemaSettings::openapi3().into_generator();
    let mut found = Vec::new();
    for kind in BUILTIN {
        match add_kind(&mut gen, kind) {
            Some((definition, list_kind)) => found.push((kind, definition, list_kind)),
            None => tracing::error!(group = kind.group, kind = kind.kind, "no schema for a built-in kind"),
        }
    }
    gen.subschema_for::<meta::Status>();
    gen.subschema_for::<meta::DeleteOptions>();
    gen.subschema_for::<meta::Patch>();
    gen.subschema_for::<meta::WatchEvent<meta::Status>>();
    gen.subschema_for::<meta::ListMeta>();
    gen.subschema_for::<autoscaling::v1::Scale>();
    // Applies the OpenAPI 3 transforms: `$ref` with siblings becomes a one-entry `allOf`.
    let mut definitions = gen.take_definitions(true);

    let mut kinds = Vec::new();
    for (kind, definition, list_kind) in found {
        let list = list_name(&definition, kind.kind, list_kind);
        let list_schema = list_schema(&definitions, kind, &definition, list_kind);
        set_extension(&mut definitions, &definition, GVK_EXTENSION, gvk_list(kind.group, kind.version, kind.kind));
        definitions.insert(list.clone(), list_schema);
        kinds.push(KindSchemas { kind, definition, list });
    }
    set_extension(&mut definitions, STATUS, GVK_EXTENSION, gvk_list("", "v1", "Status"));
    set_extension(&mut definitions, SCALE, GVK_EXTENSION, gvk_list("autoscaling", "v1", "Scale"));
    // As in kube-apiserver, the options and events shared by every group/version name each.
    for (name, kind) in [(DELETE_OPTIONS, "DeleteOptions"), (WATCH_EVENT, "WatchEvent")] {
        let gvks = kinds::group_versions()
            .into_iter()
            .map(|(group, version)| json!({"group": group, "version": version, "kind": kind}))
            .collect();
        set_extension(&mut definitions, name, GVK_EXTENSION, Value::Array(gvks));
    }
    for (name, field, strategy, key) in PATCH_STRATEGIES {
        let Some(property) =
            definitions.get_mut(*name).and_then(|d| d.get_mut("properties")).and_then(|p| p.get_mut(*field))
        else {
            tracing::error!(definition = name, field, "patch strategy for a field with no schema");
            continue;
        };
        if let Some(property) = property.as_object_mut() {
            property.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
            if let Some(key) = key {
                property.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            }
        }
    }
    tracing::debug!(elapsed = ?started.elapsed(), definitions = definitions.len(), "built the kinds' JSON schemas");
    Registry { definitions, kinds }
}

/// `io.k8s.api.apps.v1.DeploymentList` from `io.k8s.api.apps.v1.Deployment`.
fn list_name(definition: &str, kind: &str, list_kind: &str) -> String {
    let package = definition.strip_suffix(kind).unwrap_or(definition);
    format!("{package}{list_kind}")
}

/// The description of a list's `metadata`.
const LIST_METADATA: &str = "Standard list metadata. More info: \
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// The schema of a kind's list, as kube-apiserver publishes it; `apiVersion` and `kind` are
/// described as in the kind's own schema.
fn list_schema(definitions: &Map<String, Value>, kind: &ResourceKind, definition: &str, list_kind: &str) -> Value {
    let property = |name: &str| {
        definitions
            .get(definition)
            .and_then(|d| d.pointer(&format!("/properties/{name}")))
            .cloned()
            .unwrap_or_else(|| json!({"type": "string"}))
    };
    json!({
        "description": format!("{list_kind} is a list of {} objects.", kind.kind),
        "type": "object",
        "properties": {
            "apiVersion": property("apiVersion"),
            "items": {
                "description": format!("The {} objects.", kind.kind),
                "type": "array",
                "items": {"$ref": format!("{V3_REF_PREFIX}{definition}")},
            },
            "kind": property("kind"),
            "metadata": {
                "description": LIST_METADATA,
                "allOf": [{"$ref": format!("{V3_REF_PREFIX}{LIST_META}")}],
            },
        },
        "required": ["items"],
        GVK_EXTENSION: gvk_list(kind.group, kind.version, list_kind),
    })
}

fn set_extension(definitions: &mut Map<String, Value>, name: &str, key: &str, value: Value) {
    match definitions.get_mut(name).and_then(Value::as_object_mut) {
        Some(definition) => {
            definition.insert(key.into(), value);
        }
        None => tracing::error!(definition = name, "extension for a missing definition"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn by_kind(group: &str, resource: &str) -> &'static ResourceKind {
        kinds::find(group, "v1", resource).unwrap()
    }

    #[test]
    fn every_builtin_kind_and_its_list_have_a_definition_with_their_gvk() {
        for kind in BUILTIN {
            let name = definition_of(kind).unwrap_or_else(|| panic!("no schema for {}/{}", kind.group, kind.kind));
            let schema = definition(name).unwrap();
            assert_eq!(schema[GVK_EXTENSION], gvk_list(kind.group, kind.version, kind.kind), "{name}");
            assert!(schema["properties"]["metadata"].is_object(), "{name}");
            let list = list_definition_of(kind).unwrap();
            assert_eq!(list, format!("{name}List"));
            let list_schema = definition(list).unwrap();
            assert_eq!(list_schema[GVK_EXTENSION][0]["kind"], format!("{}List", kind.kind));
            assert_eq!(resolve(&list_schema["properties"]["items"]["items"]), Some(schema));
        }
        let names: BTreeSet<_> = BUILTIN.iter().map(|k| definition_of(k).unwrap()).collect();
        assert_eq!(names.len(), BUILTIN.len(), "two kinds share a definition");
    }

    #[test]
    fn names_follow_kube_apiserver() {
        assert_eq!(definition_of(by_kind("apps", "deployments")), Some("io.k8s.api.apps.v1.Deployment"));
        assert_eq!(definition_of(by_kind("", "events")), Some("io.k8s.api.core.v1.Event"));
        assert_eq!(definition_of(by_kind("events.k8s.io", "events")), Some("io.k8s.api.events.v1.Event"));
        assert_eq!(
            definition_of(by_kind("apiextensions.k8s.io", "customresourcedefinitions")),
            Some("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition")
        );
        assert_eq!(
            definition_of(by_kind("apiregistration.k8s.io", "apiservices")),
            Some("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIService")
        );
        assert_eq!(list_definition_of(by_kind("", "configmaps")), Some("io.k8s.api.core.v1.ConfigMapList"));
        let unknown = ResourceKind { group: "example.com", ..*by_kind("", "pods") };
        assert_eq!(definition_of(&unknown), None);
    }

    #[test]
    fn meta_types_are_there_with_their_gvks() {
        for name in [STATUS, DELETE_OPTIONS, PATCH, WATCH_EVENT, LIST_META, SCALE] {
            assert!(definition(name).is_some(), "{name}");
        }
        assert_eq!(definition(STATUS).unwrap()[GVK_EXTENSION], gvk_list("", "v1", "Status"));
        assert_eq!(definition(SCALE).unwrap()[GVK_EXTENSION], gvk_list("autoscaling", "v1", "Scale"));
        let gvks = definition(DELETE_OPTIONS).unwrap()[GVK_EXTENSION].as_array().unwrap();
        assert_eq!(gvks.len(), kinds::group_versions().len());
        assert!(gvks.contains(&json!({"group": "apps", "version": "v1", "kind": "DeleteOptions"})));
    }

    #[test]
    fn references_use_the_openapi3_prefix_and_all_resolve() {
        let mut refs = Vec::new();
        for schema in definitions().values() {
            collect_refs(schema, &mut |r| refs.push(r.to_string()));
        }
        assert!(refs.len() > 100, "{}", refs.len());
        for r in &refs {
            assert!(r.starts_with(V3_REF_PREFIX), "{r}");
            assert!(definition(ref_name(r).unwrap()).is_some(), "dangling {r}");
        }
        assert_eq!(ref_name("#/definitions/io.k8s.api.core.v1.Pod"), Some("io.k8s.api.core.v1.Pod"));
        assert_eq!(ref_name("#/components/schemas/io.k8s.api.core.v1.Pod"), Some("io.k8s.api.core.v1.Pod"));
        assert_eq!(ref_name("#/elsewhere/x"), None);
    }

    #[test]
    fn a_reference_with_a_description_is_a_one_entry_all_of() {
        let deployment = definition("io.k8s.api.apps.v1.Deployment").unwrap();
        let spec = &deployment["properties"]["spec"];
        assert_eq!(spec["allOf"], json!([{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}]));
        assert!(spec.get("$ref").is_none());
        assert!(spec["description"].as_str().unwrap().contains("desired behavior"));
        let resolved = resolve(spec).unwrap();
        let strategy = &resolved["properties"]["strategy"];
        assert!(strategy["description"]
            .as_str()
            .unwrap()
            .contains("The deployment strategy to use to replace existing pods with new ones"));
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        let plain = json!({"type": "string"});
        assert_eq!(resolve(&plain), Some(&plain));
        assert_eq!(resolve(&json!({"$ref": "#/components/schemas/nope"})), None);
    }

    #[test]
    fn patch_strategies_name_existing_fields() {
        for (name, field, strategy, key) in PATCH_STRATEGIES {
            let property = definition(name).and_then(|d| d["properties"].get(*field));
            let property = property.unwrap_or_else(|| panic!("{name}.{field}"));
            assert_eq!(property["x-kubernetes-patch-strategy"], *strategy, "{name}.{field}");
            match key {
                Some(key) => {
                    assert_eq!(property["x-kubernetes-patch-merge-key"], *key, "{name}.{field}");
                    let item = resolve(&property["items"]).unwrap();
                    assert!(item["properties"].get(*key).is_some(), "{name}.{field} items lack {key}");
                }
                None => assert!(property.get("x-kubernetes-patch-merge-key").is_none()),
            }
        }
        let containers = &definition("io.k8s.api.core.v1.PodSpec").unwrap()["properties"]["containers"];
        assert_eq!(
            (&containers["x-kubernetes-patch-merge-key"], &containers["type"]),
            (&json!("name"), &json!("array"))
        );
    }

    #[test]
    fn reachable_follows_references_transitively() {
        let names = reachable(["io.k8s.api.apps.v1.DeploymentList", "nope"]);
        for name in [
            "io.k8s.api.apps.v1.DeploymentList",
            "io.k8s.api.apps.v1.Deployment",
            "io.k8s.api.core.v1.PodSpec",
            "io.k8s.api.core.v1.Container",
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            LIST_META,
            "io.k8s.apimachinery.pkg.api.resource.Quantity",
        ] {
            assert!(names.contains(name), "{name}");
        }
        assert!(!names.contains("nope") && !names.contains("io.k8s.api.rbac.v1.Role"));
    }
}
