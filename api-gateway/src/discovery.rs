//! API discovery, as kube-apiserver serves it, from the registry of built-in kinds
//! (`actors::kinds`):
//!
//! - legacy: `GET /api` (`APIVersions`), `/api/v1` and `/apis/{group}/{version}`
//!   (`APIResourceList`), `/apis` (`APIGroupList`), `/apis/{group}` (`APIGroup`);
//! - aggregated (apidiscovery.k8s.io/v2): `GET /api` and `/apis` answer an
//!   `APIGroupDiscoveryList` when the `Accept` header asks for one before plain JSON, as
//!   kubectl 1.32 does; clients that do not ask get the legacy documents.
//!
//! Unknown groups and versions get a 404 `Status`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::kinds::{self, ResourceKind, Subresource};
use serde::Serialize;

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

/// The `APIResourceList` of one group/version, or `None` if it is not served.
fn resource_list(group: &str, version: &str) -> Option<ApiResourceList> {
    let mut resources = Vec::new();
    for k in kinds::resources_of(group, version) {
        resources.push(ApiResource {
            name: k.resource.to_string(),
            singular_name: k.singular,
            namespaced: k.namespaced,
            group: None,
            version: None,
            kind: k.kind,
            verbs: k.verbs,
            short_names: k.short_names,
            categories: k.categories,
        });
        resources.extend(k.subresources.iter().map(|sub| legacy_subresource(k, sub)));
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

/// A subresource's entry in an `APIResourceList`: `deployments/scale`, with its own
/// group, version and Kind when it returns another type.
fn legacy_subresource(parent: &ResourceKind, sub: &Subresource) -> ApiResource {
    let (group, version, kind) = match sub.response {
        Some((group, version, kind)) => (Some(group), Some(version), kind),
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

/// The named groups (not core), each with its versions; the first version is preferred.
fn api_groups() -> Vec<ApiGroup> {
    let mut groups: Vec<ApiGroup> = Vec::new();
    for (group, version) in kinds::group_versions().into_iter().filter(|(g, _)| !g.is_empty()) {
        let gv = GroupVersion { group_version: kinds::group_version(group, version), version };
        match groups.iter_mut().find(|g| g.name == group) {
            Some(existing) => existing.versions.push(gv),
            None => groups.push(ApiGroup {
                kind: None,
                api_version: None,
                name: group,
                versions: vec![gv.clone()],
                preferred_version: gv,
            }),
        }
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
    for (group, version) in kinds::group_versions().into_iter().filter(|(g, _)| g.is_empty() == core) {
        let resources = kinds::resources_of(group, version).map(resource_discovery).collect();
        let entry = VersionDiscovery { version, resources, freshness: "Current" };
        let name = (!group.is_empty()).then_some(group);
        match items.iter_mut().find(|item| item.metadata.name == name) {
            Some(item) => item.versions.push(entry),
            None => items.push(GroupDiscovery { metadata: Meta { name }, versions: vec![entry] }),
        }
    }
    GroupDiscoveryList {
        kind: "APIGroupDiscoveryList",
        api_version: "apidiscovery.k8s.io/v2",
        metadata: Meta::default(),
        items,
    }
}

fn resource_discovery(k: &'static ResourceKind) -> ResourceDiscovery {
    let subresources = k
        .subresources
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
        verbs: k.verbs,
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

async fn api(req: HttpRequest) -> HttpResponse {
    if accepts_aggregated(&req) {
        return json(AGGREGATED_V2, &group_discovery_list(true));
    }
    json("application/json", &api_versions(req.app_config().local_addr().to_string()))
}

async fn api_v1(req: HttpRequest) -> HttpResponse {
    match resource_list("", "v1") {
        Some(list) => json("application/json", &list),
        None => status::not_found(req.path()),
    }
}

async fn apis(req: HttpRequest) -> HttpResponse {
    if accepts_aggregated(&req) {
        return json(AGGREGATED_V2, &group_discovery_list(false));
    }
    json("application/json", &api_group_list())
}

async fn api_group(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    match api_groups().into_iter().find(|g| g.name == path.as_str()) {
        Some(group) => json("application/json", &ApiGroup { kind: Some("APIGroup"), api_version: Some("v1"), ..group }),
        None => status::not_found(req.path()),
    }
}

async fn api_group_version(req: HttpRequest, path: web::Path<(String, String)>) -> HttpResponse {
    let (group, version) = path.into_inner();
    match resource_list(&group, &version).filter(|_| !group.is_empty()) {
        Some(list) => json("application/json", &list),
        None => status::not_found(req.path()),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::{call_service, init_service, read_body, TestRequest};
    use actix_web::App;
    use serde_json::{json, Value};

    use super::*;

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
        assert_eq!(groups.len(), 12, "every named group once");
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
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        assert_eq!(core["items"][0]["metadata"], json!({}));
        assert_eq!(core["items"][0]["versions"][0]["freshness"], "Current");

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
}
