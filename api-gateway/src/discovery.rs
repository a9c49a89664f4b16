//! API discovery, as kube-apiserver serves it, from the registry of kinds (`actors::kinds`:
//! the built-in ones and those custom resource definitions add):
//!
//! - legacy: `GET /api` (`APIVersions`), `/api/v1` and `/apis/{group}/{version}`
//!   (`APIResourceList`), `/apis` (`APIGroupList`), `/apis/{group}` (`APIGroup`);
//! - aggregated (apidiscovery.k8s.io/v2): `GET /api` and `/apis` answer an
//!   `APIGroupDiscoveryList` when the `Accept` header asks for one before plain JSON, as
//!   kubectl 1.32 does; clients that do not ask get the legacy documents. As in kube-apiserver
//!   they carry an ETag (a hash of the body) and answer `If-None-Match` with 304.
//!
//! Every document is computed per request, so custom resources appear and go as their CRDs
//! do. Custom groups come after the built-in ones, by name; their versions in kube's version
//! priority order (`v2` before `v1` before `v1beta1`), the first preferred.
//!
//! The review APIs ([`crate::aggregator::reviews`]) are listed after `events.k8s.io`, and the
//! groups of non-local APIServices ([`crate::aggregator::groups`]) after all others. Pods also
//! list the subresources the kubelet proxy serves (`pods/log`, `pods/exec`, ...,
//! [`crate::kubelet_proxy::SUBRESOURCES`]).
//!
//! Unknown groups and versions get a 404 `Status`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::custom_kinds;
use actors::kinds::{self, ResourceKind, Subresource};
use serde::Serialize;

use crate::aggregator::{groups, reviews, Aggregator};
use crate::status;

/// The media type of an aggregated discovery document; kubectl reads the `Content-Type`
/// parameters to tell it from a legacy one.
pub const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Registers the discovery routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api", web::get().to(api))
        .route("/api/v1", web::get().to(api_v1))
        .route("/apis", web::get().to(apis))
        .route("/apis/{group}", web::get().to(api_group))
        .route("/apis/{group}/{version}", web::get().to(api_group_version));
}

// ---- legacy documents ----

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiVersions {
    kind: &'static str,
    versions: Vec<&'static str>,
    #[serde(rename = "serverAddressByClientCIDRs")]
    server_address_by_client_cidrs: Vec<ServerAddress>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServerAddress {
    #[serde(rename = "clientCIDR")]
    client_cidr: &'static str,
    server_address: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiResourceList {
    kind: &'static str,
    /// kube-apiserver leaves `apiVersion` out of `/api/v1`'s list, and only there.
    #[serde(skip_serializing_if = "Option::is_none")]
    api_version: Option<&'static str>,
    group_version: String,
    resources: Vec<ApiResource>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiResource {
    name: String,
    singular_name: &'static str,
    namespaced: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'static str>,
    kind: &'static str,
    verbs: &'static [&'static str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    short_names: &'static [&'static str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    categories: &'static [&'static str],
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiGroupList {
    kind: &'static str,
    api_version: &'static str,
    groups: Vec<ApiGroup>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiGroup {
    /// Set only when the group is the whole document (`/apis/{group}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_version: Option<&'static str>,
    name: &'static str,
    versions: Vec<GroupVersion>,
    preferred_version: GroupVersion,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupVersion {
    group_version: String,
    version: &'static str,
}

/// `APIVersions` for `/api`; `server_address` is the address the client reached.
fn api_versions(server_address: String) -> ApiVersions {
    ApiVersions {
        kind: "APIVersions",
        versions: vec!["v1"],
        server_address_by_client_cidrs: vec![ServerAddress { client_cidr: "0.0.0.0/0", server_address }],
    }
}

/// The verbs of a custom kind whose CRD is being deleted: its objects can still be read and
/// deleted, as kube-apiserver's CRD discovery lists them.
const TERMINATING_VERBS: &[&str] = &["delete", "deletecollection", "get", "list", "watch"];

/// The verbs discovery lists for `k`: its own, or [`TERMINATING_VERBS`] while its CRD goes.
fn verbs_of(k: &ResourceKind) -> &'static [&'static str] {
    match custom_kinds::of(k) {
        Some(custom) if custom.terminating => TERMINATING_VERBS,
        _ => k.verbs,
    }
}

/// The resources of one group/version: the kinds', or the review APIs'.
fn resources_of<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static ResourceKind> + 'a {
    kinds::resources_of(group, version).chain(reviews::resources_of(group, version))
}

/// The `APIResourceList` of one group/version, or `None` if it is not served.
fn resource_list(group: &str, version: &str) -> Option<ApiResourceList> {
    let mut resources = Vec::new();
    for k in resources_of(group, version) {
        resources.push(ApiResource {
            name: k.resource.to_string(),
            singular_name: k.singular,
            namespaced: k.namespaced,
            group: None,
            version: None,
            kind: k.kind,
            verbs: verbs_of(k),
            short_names: k.short_names,
            categories: k.categories,
        });
        resources.extend(subresources_of(k).iter().map(|sub| legacy_subresource(k, sub)));
    }
    if resources.is_empty() {
        return None;
    }
    Some(ApiResourceList {
        kind: "APIResourceList",
        api_version: (!group.is_empty()).then_some("v1"),
        group_version: kinds::group_version(group, version),
        resources,
    })
}

/// The subresources of `k`, by name: its own, and for core pods the ones the gateway serves
/// itself from the kubelet ([`crate::kubelet_proxy::SUBRESOURCES`]).
fn subresources_of(k: &ResourceKind) -> Vec<Subresource> {
    let mut subresources = k.subresources.to_vec();
    if k.group.is_empty() && k.resource == "pods" {
        subresources.extend_from_slice(crate::kubelet_proxy::SUBRESOURCES);
        subresources.sort_by_key(|sub| sub.name);
    }
    subresources
}

/// A subresource's entry in an `APIResourceList`: `deployments/scale`, with its own
/// group and version when it returns another group's type (kube leaves them out for the
/// core group: `pods/exec` is a `PodExecOptions`), and its Kind.
fn legacy_subresource(parent: &ResourceKind, sub: &Subresource) -> ApiResource {
    let (group, version, kind) = match sub.response {
        Some((group, version, kind)) => {
            (Some(group).filter(|g| !g.is_empty()), Some(version).filter(|v| !v.is_empty()), kind)
        }
        None => (None, None, parent.kind),
    };
    ApiResource {
        name: format!("{}/{}", parent.resource, sub.name),
        singular_name: "",
        namespaced: parent.namespaced,
        group,
        version,
        kind,
        verbs: sub.verbs,
        short_names: &[],
        categories: &[],
    }
}

/// The served groups (core `""` first), each with its versions, preferred first: the
/// built-in groups in discovery order, then the custom ones by name, their versions in kube's
/// version priority order (as kube-apiserver's CRD discovery sorts them).
pub fn served_groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for (group, version) in kinds::group_versions() {
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, versions)) => versions.push(version),
            None => groups.push((group, vec![version])),
        }
    }
    let builtin = |group: &str| kinds::BUILTIN.iter().any(|k| k.group == group);
    let (mut out, mut custom): (Vec<_>, Vec<_>) = groups.into_iter().partition(|(g, _)| builtin(g));
    let at = out.iter().position(|(g, _)| *g == "events.k8s.io").map_or(out.len(), |i| i + 1);
    for (i, (group, version)) in reviews::group_versions().into_iter().enumerate() {
        out.insert(at + i, (group, vec![version]));
    }
    custom.sort_by(|a, b| a.0.cmp(b.0));
    for (_, versions) in &mut custom {
        versions.sort_by(|a, b| custom_kinds::version_priority(a, b));
    }
    out.extend(custom);
    out
}

/// The named groups (not core), each with its versions; the first version is preferred.
fn api_groups() -> Vec<ApiGroup> {
    let mut groups: Vec<ApiGroup> = Vec::new();
    for (name, versions) in served_groups().into_iter().filter(|(g, _)| !g.is_empty()) {
        let versions: Vec<GroupVersion> = versions
            .into_iter()
            .map(|version| GroupVersion { group_version: kinds::group_version(name, version), version })
            .collect();
        let Some(preferred_version) = versions.first().cloned() else { continue };
        groups.push(ApiGroup { kind: None, api_version: None, name, versions, preferred_version });
    }
    groups
}

fn api_group_list() -> ApiGroupList {
    ApiGroupList { kind: "APIGroupList", api_version: "v1", groups: api_groups() }
}

// ---- aggregated discovery (apidiscovery.k8s.io/v2) ----

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupDiscoveryList {
    kind: &'static str,
    api_version: &'static str,
    metadata: Meta,
    items: Vec<GroupDiscovery>,
}

#[derive(Debug, Default, Serialize)]
struct Meta {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct GroupDiscovery {
    metadata: Meta,
    versions: Vec<VersionDiscovery>,
}

#[derive(Debug, Serialize)]
struct VersionDiscovery {
    version: &'static str,
    resources: Vec<ResourceDiscovery>,
    freshness: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceDiscovery {
    resource: &'static str,
    response_kind: ResponseKind,
    scope: &'static str,
    singular_resource: &'static str,
    verbs: &'static [&'static str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    short_names: &'static [&'static str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    categories: &'static [&'static str],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subresources: Vec<SubresourceDiscovery>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SubresourceDiscovery {
    subresource: &'static str,
    response_kind: ResponseKind,
    verbs: &'static [&'static str],
}

/// A Kind; group and version are empty when they are the enclosing group/version's.
#[derive(Debug, Serialize)]
struct ResponseKind {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
}

/// The aggregated document for the core group (`core == true`, `/api`) or the named groups.
fn group_discovery_list(core: bool) -> GroupDiscoveryList {
    let mut items: Vec<GroupDiscovery> = Vec::new();
    for (group, versions) in served_groups().into_iter().filter(|(g, _)| g.is_empty() == core) {
        let versions = versions
            .into_iter()
            .map(|version| {
                let resources = resources_of(group, version).map(resource_discovery).collect();
                VersionDiscovery { version, resources, freshness: "Current" }
            })
            .collect();
        items.push(GroupDiscovery { metadata: Meta { name: (!group.is_empty()).then_some(group) }, versions });
    }
    GroupDiscoveryList {
        kind: "APIGroupDiscoveryList",
        api_version: "apidiscovery.k8s.io/v2",
        metadata: Meta::default(),
        items,
    }
}

fn resource_discovery(k: &'static ResourceKind) -> ResourceDiscovery {
    let subresources = subresources_of(k)
        .iter()
        .map(|sub| {
            let (group, version, kind) = sub.response.unwrap_or(("", "", k.kind));
            SubresourceDiscovery {
                subresource: sub.name,
                response_kind: ResponseKind { group, version, kind },
                verbs: sub.verbs,
            }
        })
        .collect();
    ResourceDiscovery {
        resource: k.resource,
        response_kind: ResponseKind { group: "", version: "", kind: k.kind },
        scope: if k.namespaced { "Namespaced" } else { "Cluster" },
        singular_resource: k.singular,
        verbs: verbs_of(k),
        short_names: k.short_names,
        categories: k.categories,
        subresources,
    }
}

/// Whether the `Accept` header's first media range that we can serve is the aggregated
/// discovery v2 one (kubectl sends it first, then v2beta1, then plain JSON).
pub fn wants_aggregated(accept: &str) -> bool {
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let params: Vec<&str> = parts.collect();
        let is_json = matches!(media, "application/json" | "application/*" | "*/*");
        if !is_json {
            continue;
        }
        if params.iter().all(|p| p.starts_with("q=")) {
            return false; // plain JSON (or anything): the legacy document
        }
        let has = |want: &str| params.iter().any(|p| p.eq_ignore_ascii_case(want));
        if has("g=apidiscovery.k8s.io") && has("v=v2") && has("as=APIGroupDiscoveryList") {
            return true;
        }
    }
    false
}

// ---- handlers ----

fn accepts_aggregated(req: &HttpRequest) -> bool {
    req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(wants_aggregated)
}

/// Serializes `body` as `content_type`; a serialization failure is a 500 `Status`.
fn json(content_type: &str, body: &impl Serialize) -> HttpResponse {
    match serde_json::to_vec(body) {
        Ok(bytes) => HttpResponse::Ok().content_type(content_type).insert_header((header::VARY, "Accept")).body(bytes),
        Err(e) => status::failure(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &format!("encoding discovery: {e}"),
        ),
    }
}

/// An aggregated document with its ETag, or 304 when the client's `If-None-Match` names it,
/// as kube-apiserver serves them (`Cache-Control: public`, so clients revalidate).
fn aggregated(req: &HttpRequest, body: &impl Serialize) -> HttpResponse {
    let bytes = match serde_json::to_vec(body) {
        Ok(bytes) => bytes,
        Err(e) => {
            let message = format!("encoding discovery: {e}");
            return status::failure(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &message);
        }
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let etag = format!("\"{}\"", digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<String>());
    let cached = req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str());
    let mut response = if cached { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::VARY, "Accept"))
        .insert_header((header::CACHE_CONTROL, "public"));
    if cached {
        response.finish()
    } else {
        response.content_type(AGGREGATED_V2).body(bytes)
    }
}

async fn api(req: HttpRequest) -> HttpResponse {
    if accepts_aggregated(&req) {
        return aggregated(&req, &group_discovery_list(true));
    }
    json("application/json", &api_versions(req.app_config().local_addr().to_string()))
}

async fn api_v1(req: HttpRequest) -> HttpResponse {
    match resource_list("", "v1") {
        Some(list) => json("application/json", &list),
        None => status::not_found(req.path()),
    }
}

/// `doc` as JSON with the app's aggregated groups merged in by `merge` (none without an
/// [`Aggregator`]).
fn with_aggregated(
    req: &HttpRequest,
    doc: &impl Serialize,
    merge: fn(&Aggregator, &mut serde_json::Value),
) -> serde_json::Value {
    let mut value = serde_json::to_value(doc).unwrap_or_default();
    if let Some(aggregator) = req.app_data::<web::Data<Aggregator>>() {
        merge(aggregator, &mut value);
    }
    value
}

async fn apis(req: HttpRequest) -> HttpResponse {
    if accepts_aggregated(&req) {
        return aggregated(&req, &with_aggregated(&req, &group_discovery_list(false), groups::merge_v2));
    }
    json("application/json", &with_aggregated(&req, &api_group_list(), groups::merge_legacy))
}

async fn api_group(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    match api_groups().into_iter().find(|g| g.name == path.as_str()) {
        Some(group) => json("application/json", &ApiGroup { kind: Some("APIGroup"), api_version: Some("v1"), ..group }),
        None => match req.app_data::<web::Data<Aggregator>>().and_then(|a| groups::api_group(a, &path)) {
            Some(group) => json("application/json", &group),
            None => status::not_found(req.path()),
        },
    }
}

async fn api_group_version(req: HttpRequest, path: web::Path<(String, String)>) -> HttpResponse {
    let (group, version) = path.into_inner();
    match resource_list(&group, &version).filter(|_| !group.is_empty()) {
        Some(list) => json("application/json", &list),
        None => status::not_found(req.path()),
    }
}

/// Test support shared by discovery, OpenAPI and table tests: a custom kind in the global
/// registry for the length of one test (each test its own group, as tests run in parallel).
#[cfg(test)]
pub(crate) mod test_support {
    use actors::custom_kinds::{self, Conversion, CustomKind, CustomVersion, Names, ScalePaths};
    use serde_json::{json, Value};

    /// `loadtests.{group}` (`LoadTest`, short name `lt`, category `all`), namespaced, with the
    /// status and scale subresources, served at `v2` (no printer columns) and `v1`
    /// ([`columns`]); unregistered when dropped.
    pub(crate) struct LoadTests {
        pub(crate) group: &'static str,
    }

    impl LoadTests {
        pub(crate) fn register(group: &str) -> LoadTests {
            LoadTests::register_with(group, schema())
        }

        /// With `schema` as both versions' `openAPIV3Schema`.
        pub(crate) fn register_with(group: &str, schema: Value) -> LoadTests {
            let names = Names {
                plural: "loadtests".into(),
                singular: "loadtest".into(),
                kind: "LoadTest".into(),
                list_kind: "LoadTestList".into(),
                short_names: vec!["lt".into()],
                categories: vec!["all".into()],
            };
            let version = |v: &str, printer_columns: Vec<Value>| CustomVersion {
                kind: custom_kinds::kind_for(group, v, &names, true, true, true),
                schema: Some(schema.clone()),
                printer_columns,
                scale: Some(ScalePaths {
                    spec_replicas: ".spec.replicas".into(),
                    status_replicas: ".status.replicas".into(),
                    label_selector: Some(".status.selector".into()),
                }),
                deprecated: false,
                deprecation_warning: None,
            };
            let group = custom_kinds::intern(group);
            custom_kinds::register(CustomKind {
                crd_name: format!("loadtests.{group}"),
                group,
                resource: custom_kinds::intern("loadtests"),
                list_kind: custom_kinds::intern("LoadTestList"),
                versions: vec![version("v2", Vec::new()), version("v1", columns())],
                storage_version: custom_kinds::intern("v1"),
                conversion: Conversion::None,
                preserve_unknown_fields: false,
                terminating: false,
            });
            LoadTests { group }
        }

        /// Marks the CRD as being deleted.
        pub(crate) fn terminate(&self) {
            if let Some(kind) = custom_kinds::get(self.group, "loadtests") {
                custom_kinds::register(CustomKind { terminating: true, ..(*kind).clone() });
            }
        }
    }

    impl Drop for LoadTests {
        fn drop(&mut self) {
            custom_kinds::unregister(self.group, "loadtests");
        }
    }

    /// A structural schema with a required field, a default, an int-or-string, a nullable.
    pub(crate) fn schema() -> Value {
        json!({
            "type": "object",
            "description": "A load test.",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "description": "What to load, and how hard.",
                    "required": ["url"],
                    "properties": {
                        "url": {"type": "string", "description": "The URL to load."},
                        "requestsPerSecond": {"type": "integer", "format": "int32", "minimum": 1, "default": 10,
                            "description": "How many requests to send each second."},
                        "replicas": {"type": "integer"},
                        "port": {"x-kubernetes-int-or-string": true},
                        "note": {"type": "string", "nullable": true},
                    },
                },
                "status": {
                    "type": "object",
                    "properties": {
                        "replicas": {"type": "integer"},
                        "selector": {"type": "string"},
                        "conditions": {"type": "array", "items": {"type": "object", "properties": {
                            "type": {"type": "string"}, "status": {"type": "string"}}}},
                    },
                },
            },
        })
    }

    /// v1's `additionalPrinterColumns`: URL, RPS, Ready (priority 1) and Age.
    pub(crate) fn columns() -> Vec<Value> {
        vec![
            json!({"name": "URL", "type": "string", "jsonPath": ".spec.url"}),
            json!({"name": "RPS", "type": "integer", "description": "Requests per second",
                "jsonPath": ".spec.requestsPerSecond"}),
            json!({"name": "Ready", "type": "string", "priority": 1,
                "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}),
            json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}),
        ]
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::{call_service, init_service, read_body, TestRequest};
    use actix_web::App;
    use serde_json::{json, Value};

    use super::test_support::LoadTests;
    use super::*;

    fn is_builtin(group: &Value) -> bool {
        kinds::BUILTIN.iter().any(|k| group == k.group)
    }

    fn value(body: &impl Serialize) -> Value {
        serde_json::to_value(body).unwrap()
    }

    #[test]
    fn api_versions_names_v1_and_the_server_address() {
        assert_eq!(
            value(&api_versions("127.0.0.1:6443".into())),
            json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
            })
        );
    }

    #[test]
    fn core_resource_list_has_resources_and_subresources() {
        let list = value(&resource_list("", "v1").unwrap());
        assert_eq!((&list["kind"], &list["groupVersion"]), (&json!("APIResourceList"), &json!("v1")));
        assert!(list.get("apiVersion").is_none(), "as kube-apiserver: no apiVersion in /api/v1");
        let resources = list["resources"].as_array().unwrap();
        let pods = resources.iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(
            pods,
            &json!({
                "name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                "shortNames": ["po"], "categories": ["all"],
            })
        );
        let status = resources.iter().find(|r| r["name"] == "pods/status").unwrap();
        assert_eq!(
            status,
            &json!({"name": "pods/status", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get", "patch", "update"]})
        );
        // The subresources the kubelet serves, by name among the pod's own, as kube lists them.
        let pod_subresources: Vec<&str> =
            resources.iter().filter_map(|r| r["name"].as_str()?.strip_prefix("pods/")).collect();
        assert_eq!(pod_subresources, ["attach", "binding", "eviction", "exec", "log", "portforward", "status"]);
        let exec = resources.iter().find(|r| r["name"] == "pods/exec").unwrap();
        assert_eq!(
            exec,
            &json!({"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions", "verbs": ["create", "get"]})
        );
        let log = resources.iter().find(|r| r["name"] == "pods/log").unwrap();
        assert_eq!(
            log,
            &json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]})
        );
        let binding = resources.iter().find(|r| r["name"] == "pods/binding").unwrap();
        assert!(binding.get("group").is_none() && binding.get("version").is_none(), "{binding}");
        let secrets = resources.iter().find(|r| r["name"] == "secrets").unwrap();
        assert!(secrets.get("shortNames").is_none() && secrets.get("categories").is_none(), "{secrets}");
        let namespaces = resources.iter().find(|r| r["name"] == "namespaces").unwrap();
        assert_eq!(namespaces["namespaced"], false);
        let top_level = resources.iter().filter(|r| !r["name"].as_str().unwrap().contains('/')).count();
        assert_eq!(top_level, 13);
    }

    #[test]
    fn scale_subresources_name_their_own_group_version_and_kind() {
        let list = value(&resource_list("apps", "v1").unwrap());
        assert_eq!((&list["apiVersion"], &list["groupVersion"]), (&json!("v1"), &json!("apps/v1")));
        let scale = list["resources"].as_array().unwrap().iter().find(|r| r["name"] == "deployments/scale").unwrap();
        assert_eq!(
            scale,
            &json!({
                "name": "deployments/scale", "singularName": "", "namespaced": true,
                "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"],
            })
        );
        assert!(resource_list("apps", "v2").is_none());
        assert!(resource_list("nope.example.com", "v1").is_none());
    }

    #[test]
    fn group_list_names_each_group_with_its_preferred_version() {
        let list = value(&api_group_list());
        assert_eq!((&list["kind"], &list["apiVersion"]), (&json!("APIGroupList"), &json!("v1")));
        let groups = list["groups"].as_array().unwrap();
        let builtin = groups.iter().filter(|g| is_builtin(&g["name"])).count();
        assert_eq!(builtin, 12, "every named group once");
        let apps = groups.iter().find(|g| g["name"] == "apps").unwrap();
        assert_eq!(
            apps,
            &json!({
                "name": "apps",
                "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
            })
        );
    }

    #[test]
    fn aggregated_lists_have_the_v2_shape() {
        let core = value(&group_discovery_list(true));
        assert_eq!(
            (&core["kind"], &core["apiVersion"]),
            (&json!("APIGroupDiscoveryList"), &json!("apidiscovery.k8s.io/v2"))
        );
        assert_eq!(core["metadata"], json!({}));
        assert_eq!(core["items"].as_array().unwrap().len(), 1, "custom groups are never core");
        assert_eq!(core["items"][0]["metadata"], json!({}));
        assert_eq!(core["items"][0]["versions"][0]["freshness"], "Current");
        let pods =
            core["items"][0]["versions"][0]["resources"].as_array().unwrap().iter().find(|r| r["resource"] == "pods");
        let portforward =
            pods.unwrap()["subresources"].as_array().unwrap().iter().find(|s| s["subresource"] == "portforward");
        assert_eq!(
            portforward.unwrap(),
            &json!({"subresource": "portforward", "responseKind": {"group": "", "version": "", "kind": "PodPortForwardOptions"}, "verbs": ["create", "get"]})
        );

        let groups = value(&group_discovery_list(false));
        let apps = groups["items"].as_array().unwrap().iter().find(|i| i["metadata"]["name"] == "apps").unwrap();
        let deploy =
            apps["versions"][0]["resources"].as_array().unwrap().iter().find(|r| r["resource"] == "deployments");
        assert_eq!(
            deploy.unwrap(),
            &json!({
                "resource": "deployments",
                "responseKind": {"group": "", "version": "", "kind": "Deployment"},
                "scope": "Namespaced",
                "singularResource": "deployment",
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                "shortNames": ["deploy"],
                "categories": ["all"],
                "subresources": [
                    {"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}, "verbs": ["get", "patch", "update"]},
                    {"subresource": "status", "responseKind": {"group": "", "version": "", "kind": "Deployment"}, "verbs": ["get", "patch", "update"]},
                ],
            })
        );
        let crds = groups["items"].as_array().unwrap().iter().find(|i| i["metadata"]["name"] == "apiextensions.k8s.io");
        assert_eq!(crds.unwrap()["versions"][0]["resources"][0]["scope"], "Cluster");
    }

    #[test]
    fn accept_header_picks_aggregated_only_when_asked_first() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert!(wants_aggregated(kubectl));
        assert!(wants_aggregated("application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList, application/json; g=apidiscovery.k8s.io; v=v2; as=APIGroupDiscoveryList"));
        assert!(!wants_aggregated("application/json, */*"));
        assert!(!wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated(
            "application/json,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        ));
        assert!(!wants_aggregated(""));
    }

    #[actix_rt::test]
    async fn routes_answer_documents_and_404_for_unknown_groups() {
        let app = init_service(App::new().configure(configure)).await;
        let get = |path: &str| TestRequest::get().uri(path).to_request();

        let resp = call_service(&app, get("/apis/apps")).await;
        assert_eq!(resp.status(), 200);
        let group: Value = serde_json::from_slice(&read_body(resp).await).unwrap();
        assert_eq!((&group["kind"], &group["name"]), (&json!("APIGroup"), &json!("apps")));

        let resp = call_service(&app, get("/apis/batch/v1")).await;
        assert_eq!(resp.status(), 200);
        let list: Value = serde_json::from_slice(&read_body(resp).await).unwrap();
        assert_eq!(list["groupVersion"], "batch/v1");

        for path in ["/apis/nope.example.com/v1", "/apis/apps/v9", "/apis/nope.example.com"] {
            let resp = call_service(&app, get(path)).await;
            assert_eq!(resp.status(), 404, "{path}");
            let status: Value = serde_json::from_slice(&read_body(resp).await).unwrap();
            assert_eq!((&status["kind"], &status["reason"]), (&json!("Status"), &json!("NotFound")));
        }

        let aggregated = TestRequest::get().uri("/apis").insert_header((header::ACCEPT, AGGREGATED_V2)).to_request();
        let resp = call_service(&app, aggregated).await;
        assert_eq!(resp.headers().get(header::CONTENT_TYPE).unwrap(), AGGREGATED_V2);
        let list: Value = serde_json::from_slice(&read_body(resp).await).unwrap();
        assert_eq!(list["kind"], "APIGroupDiscoveryList");

        let resp = call_service(&app, get("/apis")).await;
        assert_eq!(resp.headers().get(header::CONTENT_TYPE).unwrap(), "application/json");
        let list: Value = serde_json::from_slice(&read_body(resp).await).unwrap();
        assert_eq!(list["kind"], "APIGroupList");
    }

    #[test]
    fn custom_resources_are_discovered_until_their_crd_goes() {
        let group = "discovery.custom.example.com";
        let load_tests = LoadTests::register(group);

        let list = value(&api_group_list());
        let groups = list["groups"].as_array().unwrap();
        let at = groups.iter().position(|g| g["name"] == group).unwrap();
        assert!(groups[..at].iter().filter(|g| is_builtin(&g["name"])).count() == 12, "after the built-in groups");
        assert!(groups[at..].iter().all(|g| !is_builtin(&g["name"])));
        let v2 = json!({"groupVersion": format!("{group}/v2"), "version": "v2"});
        let v1 = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
        assert_eq!(groups[at], json!({"name": group, "versions": [v2, v1], "preferredVersion": v2}));

        let list = value(&resource_list(group, "v1").unwrap());
        assert_eq!((&list["apiVersion"], &list["groupVersion"]), (&json!("v1"), &json!(format!("{group}/v1"))));
        assert_eq!(
            list["resources"],
            json!([
                {"name": "loadtests", "singularName": "loadtest", "namespaced": true, "kind": "LoadTest",
                 "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                 "shortNames": ["lt"], "categories": ["all"]},
                {"name": "loadtests/scale", "singularName": "", "namespaced": true, "group": "autoscaling",
                 "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]},
                {"name": "loadtests/status", "singularName": "", "namespaced": true, "kind": "LoadTest",
                 "verbs": ["get", "patch", "update"]},
            ])
        );

        let aggregated = value(&group_discovery_list(false));
        let items = aggregated["items"].as_array().unwrap();
        let ours = items.iter().find(|i| i["metadata"]["name"] == group).unwrap();
        let versions: Vec<&Value> = ours["versions"].as_array().unwrap().iter().map(|v| &v["version"]).collect();
        assert_eq!(versions, [&json!("v2"), &json!("v1")], "preferred first");
        assert_eq!(
            ours["versions"][1]["resources"][0],
            json!({
                "resource": "loadtests",
                "responseKind": {"group": "", "version": "", "kind": "LoadTest"},
                "scope": "Namespaced",
                "singularResource": "loadtest",
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                "shortNames": ["lt"],
                "categories": ["all"],
                "subresources": [
                    {"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}, "verbs": ["get", "patch", "update"]},
                    {"subresource": "status", "responseKind": {"group": "", "version": "", "kind": "LoadTest"}, "verbs": ["get", "patch", "update"]},
                ],
            })
        );

        load_tests.terminate();
        let list = value(&resource_list(group, "v1").unwrap());
        assert_eq!(list["resources"][0]["verbs"], json!(["delete", "deletecollection", "get", "list", "watch"]));
        drop(load_tests);
        assert!(resource_list(group, "v1").is_none());
        assert!(value(&api_group_list())["groups"].as_array().unwrap().iter().all(|g| g["name"] != group));
        let aggregated = value(&group_discovery_list(false));
        assert!(aggregated["items"].as_array().unwrap().iter().all(|i| i["metadata"]["name"] != group));
    }

    #[actix_rt::test]
    async fn routes_follow_the_registry_and_aggregated_documents_revalidate_by_etag() {
        let group = "routes.discovery.custom.example.com";
        let app = init_service(App::new().configure(configure)).await;
        let get = |path: &str| TestRequest::get().uri(path).to_request();
        let aggregated = |path: &str| TestRequest::get().uri(path).insert_header((header::ACCEPT, AGGREGATED_V2));

        let resp = call_service(&app, aggregated("/apis").to_request()).await;
        let before = resp.headers().get(header::ETAG).unwrap().clone();
        assert_eq!(resp.headers().get(header::CACHE_CONTROL).unwrap(), "public");

        let load_tests = LoadTests::register(group);
        let resp = call_service(&app, get(&format!("/apis/{group}/v1"))).await;
        assert_eq!(resp.status(), 200);
        let resp = call_service(&app, get(&format!("/apis/{group}"))).await;
        let body: Value = serde_json::from_slice(&read_body(resp).await).unwrap();
        assert_eq!((&body["kind"], &body["preferredVersion"]["version"]), (&json!("APIGroup"), &json!("v2")));
        let resp =
            call_service(&app, aggregated("/apis").insert_header((header::IF_NONE_MATCH, before)).to_request()).await;
        assert_eq!(resp.status(), 200, "a new CRD changes the ETag");
        let list: Value = serde_json::from_slice(&read_body(resp).await).unwrap();
        assert!(list["items"].as_array().unwrap().iter().any(|i| i["metadata"]["name"] == group));

        drop(load_tests);
        for path in [format!("/apis/{group}/v1"), format!("/apis/{group}/v2"), format!("/apis/{group}")] {
            assert_eq!(call_service(&app, get(&path)).await.status(), 404, "{path}");
        }

        // The core group never holds custom kinds: its ETag is stable, and revalidates.
        let resp = call_service(&app, aggregated("/api").to_request()).await;
        let etag = resp.headers().get(header::ETAG).unwrap().clone();
        let resp =
            call_service(&app, aggregated("/api").insert_header((header::IF_NONE_MATCH, etag)).to_request()).await;
        assert_eq!(resp.status(), 304);
    }
}
