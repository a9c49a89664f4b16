//! A StatefulSet's pods and claims by ordinal (kube's `stateful_set_utils.go`): names, the
//! identity labels, pods from a template, the PersistentVolumeClaims of the
//! `volumeClaimTemplates`, and the claims' owner references under the
//! `persistentVolumeClaimRetentionPolicy`.

use serde_json::{json, Map, Value};

use crate::controllers::daemon_set::REVISION_HASH;
use crate::controllers::pods::{self, int_at, name, namespace, spec_replicas, str_at, uid};

/// The label with a stateful pod's own name (what a headless Service selects one pod by).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with a stateful pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// `(parent, ordinal)` of a pod named `{parent}-{ordinal}` (kube's `(.*)-([0-9]+)$`, the
/// ordinal an int32).
pub fn parent_and_ordinal(pod_name: &str) -> Option<(&str, i64)> {
    let (parent, digits) = pod_name.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i32>().ok().map(|ordinal| (parent, i64::from(ordinal)))
}

/// The ordinal of `pod`, if it is named as a pod of a StatefulSet.
pub fn ordinal(pod: &Value) -> Option<i64> {
    parent_and_ordinal(name(pod)).map(|(_, ordinal)| ordinal)
}

/// Whether `pod` is named as a pod of `set` (kube's `isMemberOf`).
pub fn is_member(set: &Value, pod: &Value) -> bool {
    parent_and_ordinal(name(pod)).is_some_and(|(parent, _)| parent == name(set))
}

/// `spec.ordinals.start`, 0 when unset.
pub fn start_ordinal(set: &Value) -> i64 {
    int_at(set, "/spec/ordinals/start")
}

/// The replicas the set wants (never negative).
pub fn replicas(set: &Value) -> i64 {
    spec_replicas(set).max(0)
}

/// Whether `ordinal` is one of the set's (start ..= start + replicas - 1).
pub fn in_range(set: &Value, ordinal: i64) -> bool {
    let start = start_ordinal(set);
    ordinal >= start && ordinal < start + replicas(set)
}

pub fn pod_name(set: &Value, ordinal: i64) -> String {
    format!("{}-{ordinal}", name(set))
}

/// The claim of template `template` for `ordinal`: `{template}-{set}-{ordinal}`.
pub fn claim_name(set: &Value, template: &str, ordinal: i64) -> String {
    format!("{template}-{}-{ordinal}", name(set))
}

/// The revision a pod was made from (its `controller-revision-hash` label).
pub fn pod_revision(pod: &Value) -> &str {
    pod.pointer("/metadata/labels").and_then(|l| l.get(REVISION_HASH)).and_then(Value::as_str).unwrap_or("")
}

fn templates(set: &Value) -> impl Iterator<Item = &Value> {
    set.pointer("/spec/volumeClaimTemplates").and_then(Value::as_array).into_iter().flatten()
}

/// The claims of `ordinal`'s pod, by template name (kube's `getPersistentVolumeClaims`): each
/// template named for the ordinal, in the set's namespace, with the selector's `matchLabels`.
pub fn claims(set: &Value, ordinal: i64) -> Vec<(String, Value)> {
    let match_labels = set.pointer("/spec/selector/matchLabels").and_then(Value::as_object);
    templates(set)
        .map(|template| {
            let template_name = name(template).to_string();
            let mut metadata: Map<String, Value> =
                template.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
            for field in ["uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"] {
                metadata.remove(field);
            }
            metadata.insert("name".into(), json!(claim_name(set, &template_name, ordinal)));
            metadata.insert("namespace".into(), json!(namespace(set)));
            let mut labels = metadata.get("labels").and_then(Value::as_object).cloned().unwrap_or_default();
            labels.extend(match_labels.into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
            if !labels.is_empty() {
                metadata.insert("labels".into(), Value::Object(labels));
            }
            let claim = json!({
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": metadata,
                "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
            });
            (template_name, claim)
        })
        .collect()
}

/// Points the pod's volumes named as claim templates at its claims, keeping its other
/// volumes after them (kube's `updateStorage`).
pub fn update_storage(set: &Value, pod: &mut Value, ordinal: i64) {
    let claims = claims(set, ordinal);
    let mut volumes: Vec<Value> = claims
        .iter()
        .map(|(template, claim)| json!({"name": template, "persistentVolumeClaim": {"claimName": name(claim)}}))
        .collect();
    let current = pod.pointer("/spec/volumes").and_then(Value::as_array).cloned().unwrap_or_default();
    volumes.extend(current.into_iter().filter(|v| !claims.iter().any(|(template, _)| template == name_of(v))));
    if !volumes.is_empty() {
        pods::set_path(pod, &["spec", "volumes"], Value::Array(volumes));
    }
}

fn name_of(v: &Value) -> &str {
    str_at(v, "/name")
}

/// Sets the identity labels of `pod` (kube's `updateIdentity`).
pub fn set_identity_labels(pod: &mut Value, pod_name: &str, ordinal: i64) {
    pods::set_path(pod, &["metadata", "labels", POD_NAME_LABEL], json!(pod_name));
    pods::set_path(pod, &["metadata", "labels", POD_INDEX_LABEL], json!(ordinal.to_string()));
}

/// The pod of `ordinal` from `set`'s template (kube's `newStatefulSetPod`): named for the
/// ordinal, labelled with its name and index, its hostname and subdomain (the governing
/// Service) set, its claims mounted, controlled by the set.
pub fn new_pod(set: &Value, ordinal: i64) -> Value {
    let mut pod = pods::pod_from_template(set, "StatefulSet");
    let pod_name = pod_name(set, ordinal);
    pods::set_path(&mut pod, &["metadata", "name"], json!(pod_name));
    pods::set_path(&mut pod, &["metadata", "namespace"], json!(namespace(set)));
    set_identity_labels(&mut pod, &pod_name, ordinal);
    pods::set_path(&mut pod, &["spec", "hostname"], json!(pod_name));
    let service = str_at(set, "/spec/serviceName");
    if !service.is_empty() {
        pods::set_path(&mut pod, &["spec", "subdomain"], json!(service));
    }
    update_storage(set, &mut pod, ordinal);
    pod
}

/// The new pod of `ordinal` at revision `revision` (of the set with that revision's template).
pub fn new_versioned_pod(set: &Value, revision: &str, ordinal: i64) -> Value {
    let mut pod = new_pod(set, ordinal);
    pods::set_path(&mut pod, &["metadata", "labels", REVISION_HASH], json!(revision));
    pod
}

/// Whether the pod is named, namespaced and labelled as the set's pod of its ordinal.
pub fn identity_matches(set: &Value, pod: &Value) -> bool {
    let Some((parent, ordinal)) = parent_and_ordinal(name(pod)) else { return false };
    let label = |k: &str| pod.pointer("/metadata/labels").and_then(|l| l.get(k)).and_then(Value::as_str);
    parent == name(set)
        && namespace(pod) == namespace(set)
        && label(POD_NAME_LABEL) == Some(name(pod))
        && label(POD_INDEX_LABEL) == Some(ordinal.to_string().as_str())
}

/// Whether the pod mounts each of its claims under the template's name.
pub fn storage_matches(set: &Value, pod: &Value) -> bool {
    let Some(ordinal) = ordinal(pod) else { return false };
    let volumes = pod.pointer("/spec/volumes").and_then(Value::as_array);
    claims(set, ordinal).iter().all(|(template, claim)| {
        volumes
            .into_iter()
            .flatten()
            .any(|v| name_of(v) == template && str_at(v, "/persistentVolumeClaim/claimName") == name(claim))
    })
}

// ---------------------------------------------------------------------------------------
// Claim retention (`persistentVolumeClaimRetentionPolicy`)

/// Whether claims go with the set (`whenDeleted: Delete`) and with scaled-down pods
/// (`whenScaled: Delete`); anything else retains them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub delete_with_set: bool,
    pub delete_on_scale: bool,
}

impl Retention {
    pub fn of(set: &Value) -> Retention {
        let policy = |f: &str| str_at(set, &format!("/spec/persistentVolumeClaimRetentionPolicy/{f}")) == "Delete";
        Retention { delete_with_set: policy("whenDeleted"), delete_on_scale: policy("whenScaled") }
    }

    fn retains_all(self) -> bool {
        !self.delete_with_set && !self.delete_on_scale
    }
}

/// An owner: what an owner reference names.
struct Owner<'a> {
    api_version: &'a str,
    kind: &'a str,
    name: &'a str,
    uid: &'a str,
}

impl<'a> Owner<'a> {
    fn set(set: &'a Value) -> Owner<'a> {
        Owner { api_version: "apps/v1", kind: "StatefulSet", name: name(set), uid: uid(set) }
    }

    fn pod(pod: &'a Value) -> Owner<'a> {
        Owner { api_version: "v1", kind: "Pod", name: name(pod), uid: uid(pod) }
    }

    /// Whether `reference` names this owner (by group/version, kind and name; kube's `matchesRef`).
    fn named_by(&self, reference: &Value) -> bool {
        str_at(reference, "/apiVersion") == self.api_version
            && str_at(reference, "/kind") == self.kind
            && str_at(reference, "/name") == self.name
    }

    fn controller_ref(&self) -> Value {
        json!({"apiVersion": self.api_version, "kind": self.kind, "name": self.name, "uid": self.uid,
            "controller": true, "blockOwnerDeletion": true})
    }
}

fn owner_refs(obj: &Value) -> &[Value] {
    obj.pointer("/metadata/ownerReferences").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn is_controller(reference: &Value) -> bool {
    reference.get("controller").and_then(Value::as_bool) == Some(true)
}

fn has_owner_ref(claim: &Value, owner: &Owner) -> bool {
    owner_refs(claim).iter().any(|r| str_at(r, "/uid") == owner.uid)
}

/// A reference that names `owner` but with another uid: left by an earlier object of that
/// name (kube's `hasStaleOwnerRef`; only the first reference naming it counts).
fn has_stale_owner_ref(claim: &Value, owner: &Owner) -> bool {
    owner_refs(claim).iter().find(|r| owner.named_by(r)).is_some_and(|r| str_at(r, "/uid") != owner.uid)
}

/// A controller other than the set and the pod, under a policy that deletes claims
/// (references to an earlier set or pod of the same name count as one).
fn has_unexpected_controller(claim: &Value, set: &Value, pod: &Value) -> bool {
    if Retention::of(set).retains_all() {
        return false;
    }
    let (set, pod) = (Owner::set(set), Owner::pod(pod));
    owner_refs(claim).iter().any(|r| {
        for owner in [&set, &pod] {
            if owner.named_by(r) {
                return str_at(r, "/uid") != owner.uid;
            }
        }
        is_controller(r)
    })
}

/// The set or the pod owns the claim without being its controller.
fn has_non_controller_owner(claim: &Value, set: &Value, pod: &Value) -> bool {
    let uids = [uid(set), uid(pod)];
    owner_refs(claim).iter().any(|r| {
        let owner_uid = str_at(r, "/uid");
        !owner_uid.is_empty() && uids.contains(&owner_uid) && !is_controller(r)
    })
}

/// Whether the claim's owner references say what the retention policy wants for `pod`
/// (kube's `isClaimOwnerUpToDate`): no reference when retained; the set as controller when
/// deleted with it; the pod as controller once scaled down when deleted on scale-down.
/// Claims with stale references or another controller are left alone.
pub fn claim_owner_up_to_date(claim: &Value, set: &Value, pod: &Value) -> bool {
    let (set_owner, pod_owner) = (Owner::set(set), Owner::pod(pod));
    if has_stale_owner_ref(claim, &set_owner) || has_stale_owner_ref(claim, &pod_owner) {
        return true;
    }
    if has_unexpected_controller(claim, set, pod) {
        return !(has_owner_ref(claim, &set_owner) || has_owner_ref(claim, &pod_owner));
    }
    if has_non_controller_owner(claim, set, pod) {
        return false;
    }
    let retention = Retention::of(set);
    let scaled_down = !ordinal(pod).is_some_and(|o| in_range(set, o));
    let (has_set, has_pod) = (has_owner_ref(claim, &set_owner), has_owner_ref(claim, &pod_owner));
    let want_set = retention.delete_with_set && !(retention.delete_on_scale && scaled_down);
    let want_pod = retention.delete_on_scale && scaled_down;
    has_set == want_set && has_pod == want_pod
}

/// The claim with the owner references the retention policy wants for `pod` (kube's
/// `updateClaimOwnerRefForSetAndPod`).
pub fn with_retention_owners(claim: &Value, set: &Value, pod: &Value) -> Value {
    let (set_owner, pod_owner) = (Owner::set(set), Owner::pod(pod));
    let unexpected = has_unexpected_controller(claim, set, pod);
    let mut refs: Vec<Value> =
        owner_refs(claim).iter().filter(|r| !set_owner.named_by(r) && !pod_owner.named_by(r)).cloned().collect();
    if !unexpected {
        let retention = Retention::of(set);
        let scaled_down = !ordinal(pod).is_some_and(|o| in_range(set, o));
        if retention.delete_on_scale && scaled_down {
            refs.push(pod_owner.controller_ref());
        } else if retention.delete_with_set {
            refs.push(set_owner.controller_ref());
        }
    }
    let mut updated = claim.clone();
    if let Some(meta) = updated.get_mut("metadata").and_then(Value::as_object_mut) {
        if refs.is_empty() {
            meta.remove("ownerReferences");
        } else {
            meta.insert("ownerReferences".into(), Value::Array(refs));
        }
    }
    updated
}

/// Whether an existing claim of a pod not yet created carries a reference to an earlier pod
/// of its name, under `whenScaled: Delete`: it is about to be garbage collected, so the pod
/// must wait (kube's `PodClaimIsStale`).
pub fn claim_is_stale(set: &Value, claim: &Value, pod: &Value) -> bool {
    Retention::of(set).delete_on_scale && has_stale_owner_ref(claim, &Owner::pod(pod))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(retention: Value) -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "d", "uid": "set-uid"},
            "spec": {
                "replicas": 2,
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{"name": "c", "image": "i"}],
                    "volumes": [{"name": "scratch", "emptyDir": {}}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"tier": "db"}}, "spec": {"accessModes": ["ReadWriteOnce"]},
                    "status": {"phase": "Pending"}}],
                "persistentVolumeClaimRetentionPolicy": retention,
            },
        })
    }

    #[test]
    fn ordinals_come_from_the_last_dash() {
        assert_eq!(parent_and_ordinal("web-0"), Some(("web", 0)));
        assert_eq!(parent_and_ordinal("my-web-12"), Some(("my-web", 12)));
        assert_eq!(parent_and_ordinal("web-x"), None);
        assert_eq!(parent_and_ordinal("web"), None);
        assert_eq!(parent_and_ordinal("web-99999999999"), None, "beyond int32");
        let s = set(json!({}));
        assert!(is_member(&s, &json!({"metadata": {"name": "web-3"}})));
        assert!(!is_member(&s, &json!({"metadata": {"name": "webx-3"}})));
    }

    #[test]
    fn new_pods_carry_their_identity_and_claims() {
        let s = set(json!({}));
        let pod = new_versioned_pod(&s, "web-abc", 1);
        assert_eq!(pod["metadata"]["name"], "web-1");
        assert_eq!(pod["metadata"]["generateName"], "web-");
        let labels = &pod["metadata"]["labels"];
        assert_eq!(labels[POD_NAME_LABEL], "web-1");
        assert_eq!(labels[POD_INDEX_LABEL], "1");
        assert_eq!(labels[REVISION_HASH], "web-abc");
        assert_eq!(
            (pod["spec"]["hostname"].as_str(), pod["spec"]["subdomain"].as_str()),
            (Some("web-1"), Some("nginx"))
        );
        assert_eq!(
            pod["spec"]["volumes"],
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}}, {"name": "scratch", "emptyDir": {}}])
        );
        assert!(identity_matches(&s, &pod) && storage_matches(&s, &pod));
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        let mut relabelled = pod.clone();
        relabelled["metadata"]["labels"][POD_INDEX_LABEL] = json!("7");
        assert!(!identity_matches(&s, &relabelled));

        let claims = claims(&s, 1);
        let (template, claim) = &claims[0];
        assert_eq!(template, "data");
        assert_eq!(claim["metadata"]["name"], "data-web-1");
        assert_eq!(claim["metadata"]["labels"], json!({"tier": "db", "app": "nginx"}));
        assert!(claim.get("status").is_none());
    }

    fn claim_with(refs: Value) -> Value {
        json!({"metadata": {"name": "data-web-1", "ownerReferences": refs}})
    }

    #[test]
    fn claim_owners_follow_the_retention_policy() {
        let pod = json!({"metadata": {"name": "web-1", "uid": "pod-uid"}});
        let condemned = json!({"metadata": {"name": "web-5", "uid": "pod5-uid"}});
        let bare = json!({"metadata": {"name": "data-web-1"}});
        let retain = set(json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
        assert!(claim_owner_up_to_date(&bare, &retain, &pod));

        let with_set = set(json!({"whenDeleted": "Delete", "whenScaled": "Retain"}));
        assert!(!claim_owner_up_to_date(&bare, &with_set, &pod));
        let fixed = with_retention_owners(&bare, &with_set, &pod);
        assert_eq!(fixed["metadata"]["ownerReferences"][0]["uid"], "set-uid");
        assert_eq!(fixed["metadata"]["ownerReferences"][0]["controller"], true);
        assert!(claim_owner_up_to_date(&fixed, &with_set, &pod));
        // Back to Retain: the reference goes.
        assert!(!claim_owner_up_to_date(&fixed, &retain, &pod));
        assert!(with_retention_owners(&fixed, &retain, &pod)["metadata"].get("ownerReferences").is_none());

        let on_scale = set(json!({"whenDeleted": "Delete", "whenScaled": "Delete"}));
        assert!(claim_owner_up_to_date(&fixed, &on_scale, &pod), "in range: the set's");
        let scaled = with_retention_owners(&fixed, &on_scale, &condemned);
        let refs = scaled["metadata"]["ownerReferences"].as_array().unwrap();
        assert_eq!((refs.len(), refs[0]["kind"].as_str()), (1, Some("Pod")), "scaled down: the pod's only");
        assert!(claim_owner_up_to_date(&scaled, &on_scale, &condemned));

        // Another controller: left alone.
        let other =
            claim_with(json!([{"apiVersion": "x/v1", "kind": "X", "name": "x", "uid": "x", "controller": true}]));
        assert!(claim_owner_up_to_date(&other, &on_scale, &pod));
        // A reference to an earlier pod of the name: stale, and blocks that pod's creation.
        let stale =
            claim_with(json!([{"apiVersion": "v1", "kind": "Pod", "name": "web-1", "uid": "old", "controller": true}]));
        assert!(claim_owner_up_to_date(&stale, &on_scale, &pod));
        let unborn = json!({"metadata": {"name": "web-1"}});
        assert!(claim_is_stale(&on_scale, &stale, &unborn));
        assert!(!claim_is_stale(&with_set, &stale, &unborn), "retained on scale-down: never stale");
    }
}
