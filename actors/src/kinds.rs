//! The built-in resource kinds: plain data saying, for each, its group, version, resource
//! names, Kind, scope, verbs, short names, categories and subresources, as kube-apiserver 1.32
//! advertises them in discovery, and where its objects live in the store.
//!
//! The list is [`BUILTIN`], in the order discovery serves it (core first, then the groups
//! in kube-apiserver's priority order). Look kinds up with [`find`] (group, version, resource)
//! or [`by_short_name`]; [`group_versions`] lists the served group/versions.

/// Every verb of a full resource.
pub const ALL_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// The verbs of the `status` and `scale` subresources.
pub const SUBRESOURCE_VERBS: &[&str] = &["get", "patch", "update"];

/// Namespaces have no `deletecollection`, as in kube-apiserver.
const NAMESPACE_VERBS: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];

/// A subresource such as `deployments/scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subresource {
    /// The part after the slash: `status`, `scale`.
    pub name: &'static str,
    /// The group, version and Kind of what it returns when that differs from the parent's
    /// (`scale` returns `autoscaling/v1` `Scale`); `None`: the parent's own Kind.
    pub response: Option<(&'static str, &'static str, &'static str)>,
    pub verbs: &'static [&'static str],
}

/// `status`: the parent object, read and written through its status.
pub const STATUS: Subresource = Subresource { name: "status", response: None, verbs: SUBRESOURCE_VERBS };

/// `scale`: an `autoscaling/v1` `Scale` view of the parent's replicas.
pub const SCALE: Subresource =
    Subresource { name: "scale", response: Some(("autoscaling", "v1", "Scale")), verbs: SUBRESOURCE_VERBS };

/// One built-in resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceKind {
    /// The API group; `""` for the core (legacy) group served under `/api`.
    pub group: &'static str,
    pub version: &'static str,
    /// The plural resource name used in URLs: `deployments`.
    pub resource: &'static str,
    /// The singular name kubectl also accepts: `deployment`.
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
}

impl ResourceKind {
    /// `v1` for the core group, else `group/version` (`apps/v1`): the objects' `apiVersion`.
    pub fn group_version(&self) -> String {
        group_version(self.group, self.version)
    }

    /// The store key prefix of this resource's objects: `/registry/{group}/{resource}/`,
    /// with group `core` for the core group (`/registry/core/configmaps/`,
    /// `/registry/apps/deployments/`). Objects sit under it at `{namespace}/{name}`, or at
    /// `{name}` for cluster-scoped kinds. (kube-apiserver leaves the group out for most
    /// kinds; ours always names it, so that two groups' `events` never share a prefix.)
    pub fn storage_prefix(&self) -> String {
        let group = if self.group.is_empty() { "core" } else { self.group };
        format!("/registry/{group}/{}/", self.resource)
    }

    /// Whether objects carry `metadata.generation`, bumped on changes to their desired state
    /// (the kinds whose controllers report `status.observedGeneration`, as kube-apiserver).
    pub fn tracks_generation(&self) -> bool {
        matches!(
            (self.group, self.resource),
            ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
                | ("batch", "jobs" | "cronjobs")
                | ("policy", "poddisruptionbudgets")
                | ("apiextensions.k8s.io", "customresourcedefinitions")
        ) || crate::custom_kinds::of(self).is_some()
    }
}

/// `v1` for the core group, else `group/version`.
pub fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// A builder-free way to write the table below: everything but the defaults.
#[allow(clippy::too_many_arguments)]
const fn kind(
    group: &'static str,
    resource: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [Subresource],
) -> ResourceKind {
    ResourceKind {
        group,
        version: "v1",
        resource,
        singular,
        kind,
        namespaced,
        verbs: ALL_VERBS,
        short_names,
        categories,
        subresources,
    }
}

const NS: bool = true;
const CLUSTER: bool = false;
const NONE: &[&str] = &[];
const ALL: &[&str] = &["all"];
const API_EXTENSIONS: &[&str] = &["api-extensions"];
const NO_SUB: &[Subresource] = &[];
const ST: &[Subresource] = &[STATUS];
/// A pod's: `binding` (a `Binding`, what schedulers write) and `eviction` (a `policy/v1`
/// `Eviction`, what `kubectl drain` posts), both create-only, and `status`.
const POD_SUB: &[Subresource] = &[
    Subresource { name: "binding", response: Some(("", "", "Binding")), verbs: &["create"] },
    Subresource { name: "eviction", response: Some(("policy", "v1", "Eviction")), verbs: &["create"] },
    STATUS,
];
const SCALE_ST: &[Subresource] = &[SCALE, STATUS];
/// A ServiceAccount's `token`: a `TokenRequest` answered with a token (create only).
const SA_SUB: &[Subresource] = &[Subresource {
    name: "token",
    response: Some(("authentication.k8s.io", "v1", "TokenRequest")),
    verbs: &["create"],
}];

/// Every built-in resource, in discovery order.
pub static BUILTIN: &[ResourceKind] = &[
    // core/v1
    ResourceKind {
        verbs: NAMESPACE_VERBS,
        ..kind("", "namespaces", "namespace", "Namespace", CLUSTER, &["ns"], NONE, ST)
    },
    kind("", "pods", "pod", "Pod", NS, &["po"], ALL, POD_SUB),
    kind("", "services", "service", "Service", NS, &["svc"], ALL, ST),
    kind("", "endpoints", "endpoints", "Endpoints", NS, &["ep"], NONE, NO_SUB),
    kind("", "configmaps", "configmap", "ConfigMap", NS, &["cm"], NONE, NO_SUB),
    kind("", "secrets", "secret", "Secret", NS, NONE, NONE, NO_SUB),
    kind("", "serviceaccounts", "serviceaccount", "ServiceAccount", NS, &["sa"], NONE, SA_SUB),
    kind("", "nodes", "node", "Node", CLUSTER, &["no"], NONE, ST),
    kind("", "events", "event", "Event", NS, &["ev"], NONE, NO_SUB),
    kind("", "persistentvolumes", "persistentvolume", "PersistentVolume", CLUSTER, &["pv"], NONE, ST),
    kind("", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", NS, &["pvc"], NONE, ST),
    kind("", "resourcequotas", "resourcequota", "ResourceQuota", NS, &["quota"], NONE, ST),
    kind("", "limitranges", "limitrange", "LimitRange", NS, &["limits"], NONE, NO_SUB),
    // apiregistration.k8s.io/v1
    kind("apiregistration.k8s.io", "apiservices", "apiservice", "APIService", CLUSTER, NONE, API_EXTENSIONS, ST),
    // apps/v1
    kind("apps", "controllerrevisions", "controllerrevision", "ControllerRevision", NS, NONE, NONE, NO_SUB),
    kind("apps", "daemonsets", "daemonset", "DaemonSet", NS, &["ds"], ALL, ST),
    kind("apps", "deployments", "deployment", "Deployment", NS, &["deploy"], ALL, SCALE_ST),
    kind("apps", "replicasets", "replicaset", "ReplicaSet", NS, &["rs"], ALL, SCALE_ST),
    kind("apps", "statefulsets", "statefulset", "StatefulSet", NS, &["sts"], ALL, SCALE_ST),
    // events.k8s.io/v1: the same objects as core events, so kube-apiserver gives it `ev` too.
    kind("events.k8s.io", "events", "event", "Event", NS, &["ev"], NONE, NO_SUB),
    // batch/v1
    kind("batch", "cronjobs", "cronjob", "CronJob", NS, &["cj"], ALL, ST),
    kind("batch", "jobs", "job", "Job", NS, NONE, ALL, ST),
    // policy/v1
    kind("policy", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget", NS, &["pdb"], NONE, ST),
    // rbac.authorization.k8s.io/v1
    kind(
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        CLUSTER,
        NONE,
        NONE,
        NO_SUB,
    ),
    kind("rbac.authorization.k8s.io", "clusterroles", "clusterrole", "ClusterRole", CLUSTER, NONE, NONE, NO_SUB),
    kind("rbac.authorization.k8s.io", "rolebindings", "rolebinding", "RoleBinding", NS, NONE, NONE, NO_SUB),
    kind("rbac.authorization.k8s.io", "roles", "role", "Role", NS, NONE, NONE, NO_SUB),
    // storage.k8s.io/v1
    kind("storage.k8s.io", "csidrivers", "csidriver", "CSIDriver", CLUSTER, NONE, NONE, NO_SUB),
    kind("storage.k8s.io", "csinodes", "csinode", "CSINode", CLUSTER, NONE, NONE, NO_SUB),
    kind("storage.k8s.io", "storageclasses", "storageclass", "StorageClass", CLUSTER, &["sc"], NONE, NO_SUB),
    kind("storage.k8s.io", "volumeattachments", "volumeattachment", "VolumeAttachment", CLUSTER, NONE, NONE, ST),
    // admissionregistration.k8s.io/v1
    kind(
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "mutatingwebhookconfiguration",
        "MutatingWebhookConfiguration",
        CLUSTER,
        NONE,
        API_EXTENSIONS,
        NO_SUB,
    ),
    kind(
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        "validatingwebhookconfiguration",
        "ValidatingWebhookConfiguration",
        CLUSTER,
        NONE,
        API_EXTENSIONS,
        NO_SUB,
    ),
    // apiextensions.k8s.io/v1
    kind(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        CLUSTER,
        &["crd", "crds"],
        API_EXTENSIONS,
        ST,
    ),
    // scheduling.k8s.io/v1
    kind("scheduling.k8s.io", "priorityclasses", "priorityclass", "PriorityClass", CLUSTER, &["pc"], NONE, NO_SUB),
    // coordination.k8s.io/v1
    kind("coordination.k8s.io", "leases", "lease", "Lease", NS, NONE, NONE, NO_SUB),
    // discovery.k8s.io/v1
    kind("discovery.k8s.io", "endpointslices", "endpointslice", "EndpointSlice", NS, NONE, NONE, NO_SUB),
];

/// The resource `resource` of `group`/`version`: built in, or served by a custom resource
/// definition (see [`crate::custom_kinds`]).
pub fn find(group: &str, version: &str, resource: &str) -> Option<&'static ResourceKind> {
    BUILTIN.iter().find(|k| k.group == group && k.version == version && k.resource == resource).or_else(|| {
        let custom = crate::custom_kinds::get(group, resource)?;
        custom.version(version).map(|v| v.kind)
    })
}

/// Every served kind: the built-in ones, then the custom ones (every served version).
pub fn all() -> Vec<&'static ResourceKind> {
    BUILTIN.iter().chain(crate::custom_kinds::served_kinds()).collect()
}

/// The resource with short name `short`. Where two groups share one (`ev`: core and
/// `events.k8s.io` events), the first in discovery order wins, as in kubectl: the core one.
pub fn by_short_name(short: &str) -> Option<&'static ResourceKind> {
    all().into_iter().find(|k| k.short_names.contains(&short))
}

/// The resources of one group/version, in discovery order (empty if not served).
pub fn resources_of<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static ResourceKind> + 'a {
    all().into_iter().filter(move |k| k.group == group && k.version == version)
}

/// The served (group, version) pairs, each once, in discovery order; core (`""`) first.
/// A custom group's versions come preferred first.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    group_versions_of(BUILTIN.iter(), &crate::custom_kinds::served_kinds())
}

/// The (group, version) pairs of `builtin` kinds in their order, then those of `custom`
/// kinds: each custom group's versions, across all of its CRDs, in kube's version priority.
fn group_versions_of<'k>(
    builtin: impl Iterator<Item = &'k ResourceKind>,
    custom: &[&'k ResourceKind],
) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for k in builtin {
        if !out.contains(&(k.group, k.version)) {
            out.push((k.group, k.version));
        }
    }
    let mut groups: Vec<&'static str> = Vec::new();
    for k in custom {
        if !groups.contains(&k.group) {
            groups.push(k.group);
        }
    }
    for group in groups {
        let mut versions: Vec<&'static str> = Vec::new();
        for k in custom.iter().filter(|k| k.group == group) {
            if !versions.contains(&k.version) && !out.contains(&(group, k.version)) {
                versions.push(k.version);
            }
        }
        versions.sort_by(|a, b| crate::custom_kinds::version_priority(a, b));
        out.extend(versions.into_iter().map(|v| (group, v)));
    }
    out
}

/// The preferred version of `group`: the first one served.
pub fn preferred_version(group: &str) -> Option<&'static str> {
    group_versions().into_iter().find(|(g, _)| *g == group).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_group_and_resource_is_unique() {
        let mut seen = HashSet::new();
        for k in BUILTIN {
            assert!(seen.insert((k.group, k.resource)), "{}/{} twice", k.group, k.resource);
        }
        assert_eq!(BUILTIN.len(), 37);
    }

    #[test]
    fn every_kind_can_be_read_listed_and_watched() {
        for k in BUILTIN {
            for verb in ["get", "list", "watch"] {
                assert!(k.verbs.contains(&verb), "{} lacks {verb}", k.resource);
            }
            assert_eq!(k.singular, k.kind.to_lowercase(), "{}", k.resource);
            assert_eq!(k.version, "v1");
        }
    }

    #[test]
    fn short_names_are_unique_but_for_the_events_of_two_groups() {
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for k in BUILTIN {
            for short in k.short_names {
                if let Some((_, other)) = seen.iter().find(|(s, _)| s == short) {
                    assert_eq!((*short, *other, k.resource), ("ev", "events", "events"), "{short} twice");
                }
                seen.push((short, k.resource));
            }
        }
    }

    #[test]
    fn lookups_by_group_version_resource_and_by_short_name() {
        let deploy = find("apps", "v1", "deployments").unwrap();
        assert_eq!((deploy.kind, deploy.namespaced, deploy.group_version()), ("Deployment", true, "apps/v1".into()));
        assert_eq!(deploy.subresources, &[SCALE, STATUS]);
        assert!(!find("", "v1", "namespaces").unwrap().namespaced);
        assert!(find("apps", "v2", "deployments").is_none());
        assert!(find("", "v1", "deployments").is_none());
        assert_eq!(by_short_name("cm").unwrap().resource, "configmaps");
        assert_eq!(by_short_name("crds").unwrap().kind, "CustomResourceDefinition");
        assert_eq!(by_short_name("ev").unwrap().group, "", "core events win");
        assert!(by_short_name("nope").is_none());
        assert_eq!(resources_of("batch", "v1").map(|k| k.resource).collect::<Vec<_>>(), ["cronjobs", "jobs"]);
    }

    #[test]
    fn group_versions_start_with_core_and_list_each_once() {
        let gvs = group_versions();
        assert_eq!(gvs[0], ("", "v1"));
        assert_eq!(gvs.len(), 13);
        assert!(gvs.contains(&("coordination.k8s.io", "v1")));
        assert_eq!(group_version("", "v1"), "v1");
    }

    #[test]
    fn a_custom_groups_versions_come_in_priority_order_across_its_crds() {
        let pods = find("", "v1", "pods").unwrap();
        let kind = |resource: &'static str, version: &'static str| ResourceKind {
            group: "example.com",
            version,
            resource,
            ..*pods
        };
        let custom = [kind("as", "v1"), kind("bs", "v1beta1"), kind("bs", "v2"), kind("cs", "v1")];
        let custom: Vec<&ResourceKind> = custom.iter().collect();
        let gvs = group_versions_of(BUILTIN.iter(), &custom);
        let mine: Vec<_> = gvs.iter().filter(|(g, _)| *g == "example.com").map(|(_, v)| *v).collect();
        assert_eq!(mine, ["v2", "v1", "v1beta1"]);
        assert_eq!(gvs[0], ("", "v1"));
    }

    #[test]
    fn storage_prefixes_name_the_group() {
        assert_eq!(find("", "v1", "configmaps").unwrap().storage_prefix(), "/registry/core/configmaps/");
        assert_eq!(find("apps", "v1", "deployments").unwrap().storage_prefix(), "/registry/apps/deployments/");
        let prefixes: HashSet<_> = BUILTIN.iter().map(|k| k.storage_prefix()).collect();
        assert_eq!(prefixes.len(), BUILTIN.len());
    }
}
