//! Defaulting of written objects, as kube-apiserver's `SetDefaults_*` functions
//! (`pkg/apis/*/v1/defaults.go` and the declarative `+default` markers) and the parts of its
//! REST strategies that fill fields in on create: plain functions over generic JSON.
//!
//! Every write goes through [`apply`]; creates through [`for_create`]. Defaulting only fills
//! in what is missing (Secrets' `stringData` aside, which is folded into `data`), so applying
//! it to an object it already defaulted changes nothing: a `kubectl apply` of the same
//! manifest stays `unchanged`, and a PUT of an unchanged object writes nothing.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::kinds::ResourceKind;

/// `rbac.authorization.k8s.io`: the API group of RBAC subjects and role references.
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
/// What a Job's generated selector and pod labels use.
const JOB_LABELS: [&str; 2] = ["batch.kubernetes.io/job-name", "job-name"];
const JOB_UID_LABELS: [&str; 2] = ["batch.kubernetes.io/controller-uid", "controller-uid"];
/// The mode of secret, configMap, downwardAPI and projected volumes' files (0644).
const DEFAULT_MODE: i64 = 420;

/// Fills in the defaults of a write of `kind`.
pub fn apply(kind: &ResourceKind, obj: &mut Value) {
    if let Some(schema) = crate::custom_kinds::schema(kind) {
        // A custom object: its CRD's structural schema says.
        crate::crd_schema::apply_defaults(obj, &schema);
        return;
    }
    if (kind.group, kind.kind) == ("apiextensions.k8s.io", "CustomResourceDefinition") {
        crate::crd::apply_defaults(obj);
        return;
    }
    let Some(root) = obj.as_object_mut() else { return };
    match (kind.group, kind.kind) {
        ("", "Pod") => pod(root),
        ("", "Service") => service(root),
        ("", "Secret") => secret(root),
        ("", "Namespace") => namespace(root),
        ("", "PersistentVolumeClaim") => persistent_volume_claim(root),
        ("", "PersistentVolume") => persistent_volume(root),
        ("", "Endpoints") => endpoints(root),
        ("apps", "Deployment") => deployment(root),
        ("apps", "ReplicaSet") => replica_set(root),
        ("apps", "StatefulSet") => stateful_set(root),
        ("apps", "DaemonSet") => daemon_set(root),
        ("batch", "Job") => job(root),
        ("batch", "CronJob") => cron_job(root),
        ("discovery.k8s.io", "EndpointSlice") => endpoint_slice(root),
        (RBAC_GROUP, "RoleBinding" | "ClusterRoleBinding") => role_binding(root),
        _ => {}
    }
}

/// Defaults a create of `kind`: [`apply`], what the kind's REST strategy sets on create (a
/// Namespace's `kubernetes` finalizer, a Job's generated selector), then [`apply`] again for
/// what that fills in (a Job's labels from its pod template), as a read back would.
pub fn for_create(kind: &ResourceKind, obj: &mut Value) {
    apply(kind, obj);
    if let Some(root) = obj.as_object_mut() {
        match (kind.group, kind.kind) {
            ("", "Namespace") => namespace_finalizer(root),
            ("", "Pod") => default_toleration_seconds(root),
            ("batch", "Job") => job_selector(root),
            _ => {}
        }
    }
    apply(kind, obj);
}

/// The DefaultTolerationSeconds admission plugin: a new pod that tolerates neither the
/// `not-ready` nor the `unreachable` `NoExecute` taint tolerates each for 300 s, so that the
/// taint manager evicts it 5 minutes after its node fails.
fn default_toleration_seconds(root: &mut Map<String, Value>) {
    const KEYS: [&str; 2] = ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"];
    let spec = object(root, "spec");
    let tolerates = |key: &str| {
        let list = spec.get("tolerations").and_then(Value::as_array);
        list.into_iter().flatten().any(|t| {
            let field = |f: &str| t.get(f).and_then(Value::as_str).unwrap_or("");
            (field("key") == key || field("key").is_empty()) && matches!(field("effect"), "NoExecute" | "")
        })
    };
    let missing: Vec<Value> = KEYS
        .iter()
        .filter(|key| !tolerates(key))
        .map(|key| json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}))
        .collect();
    if missing.is_empty() {
        return;
    }
    match spec.get_mut("tolerations").and_then(Value::as_array_mut) {
        Some(list) => list.extend(missing),
        None => {
            spec.insert("tolerations".into(), Value::Array(missing));
        }
    }
}

/// The object at `key`, made an (empty) object if absent or not one.
fn object<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map.entry(key).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    match slot {
        Value::Object(inner) => inner,
        _ => unreachable!("made an object just above"),
    }
}

/// The object at `key`, if there is one.
fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_object_mut)
}

/// The objects in the list at `key`.
fn items<'a>(map: &'a mut Map<String, Value>, key: &str) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten().filter_map(Value::as_object_mut)
}

/// Whether `key` is unset: absent, null, or the zero value of a string or number.
fn unset(map: &Map<String, Value>, key: &str) -> bool {
    match map.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// Sets `key` to `value` where it is absent or null (Go's nil pointers).
fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if matches!(map.get(key), None | Some(Value::Null)) {
        map.insert(key.into(), value);
    }
}

/// Sets `key` to `value` where it is unset (Go's zero values: `""`, `0`).
fn default_zero(map: &mut Map<String, Value>, key: &str, value: Value) {
    if unset(map, key) {
        map.insert(key.into(), value);
    }
}

fn str_of<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or("")
}

// ---- core/v1 ----

fn pod(root: &mut Map<String, Value>) {
    let spec = object(root, "spec");
    pod_spec(spec);
    // SetDefaults_Pod: only Pods, not pod templates.
    default(spec, "enableServiceLinks", json!(true));
    for key in ["containers", "initContainers"] {
        for container in items(spec, key) {
            let resources = object(container, "resources");
            let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else { continue };
            let requests = object(resources, "requests");
            for (resource, quantity) in limits {
                requests.entry(resource).or_insert(quantity);
            }
        }
    }
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for key in ["containers", "initContainers"] {
            for container in items(spec, key) {
                for port in items(container, "ports") {
                    if unset(port, "hostPort") {
                        if let Some(container_port) = port.get("containerPort").cloned() {
                            port.insert("hostPort".into(), container_port);
                        }
                    }
                }
            }
        }
    }
}

/// `SetDefaults_PodSpec` and what it contains: containers, probes, volumes.
fn pod_spec(spec: &mut Map<String, Value>) {
    default_zero(spec, "dnsPolicy", json!("ClusterFirst"));
    default_zero(spec, "restartPolicy", json!("Always"));
    default(spec, "securityContext", json!({}));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default_zero(spec, "schedulerName", json!("default-scheduler"));
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        for c in items(spec, key) {
            container(c);
        }
    }
    for v in items(spec, "volumes") {
        volume(v);
    }
}

fn container(c: &mut Map<String, Value>) {
    if unset(c, "imagePullPolicy") {
        let policy = if tag_is_latest(str_of(c, "image")) { "Always" } else { "IfNotPresent" };
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    default_zero(c, "terminationMessagePath", json!("/dev/termination-log"));
    default_zero(c, "terminationMessagePolicy", json!("File"));
    for port in items(c, "ports") {
        default_zero(port, "protocol", json!("TCP"));
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = object_at(c, key) {
            probe(p);
        }
    }
    if let Some(lifecycle) = object_at(c, "lifecycle") {
        for key in ["postStart", "preStop"] {
            if let Some(get) = object_at(lifecycle, key).and_then(|h| object_at(h, "httpGet")) {
                http_get(get);
            }
        }
    }
    for env in items(c, "env") {
        if let Some(field_ref) = object_at(env, "valueFrom").and_then(|v| object_at(v, "fieldRef")) {
            default_zero(field_ref, "apiVersion", json!("v1"));
        }
    }
}

/// Whether an image reference has the `latest` tag, or no tag and no digest (which means
/// `latest`), as `parsers.ParseImageName` reads it; an unparsable reference (empty, or with
/// upper case in its repository path) has no tag.
fn tag_is_latest(image: &str) -> bool {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    let slash = name.rfind('/');
    let (repository, tag) = match name.rfind(':') {
        Some(colon) if slash.is_none_or(|slash| colon > slash) => (&name[..colon], Some(&name[colon + 1..])),
        _ => (name, None),
    };
    let mut components: Vec<&str> = repository.split('/').collect();
    // A first component with a dot, a port or upper case, or `localhost`, is a registry.
    let registry = components.len() > 1
        && components.first().is_some_and(|c| {
            c.contains(['.', ':']) || *c == "localhost" || c.chars().any(|ch| ch.is_ascii_uppercase())
        });
    if registry {
        components.remove(0);
    }
    if repository.is_empty() || components.iter().any(|c| c.is_empty() || c.chars().any(|ch| ch.is_ascii_uppercase())) {
        return false;
    }
    match (tag, digest) {
        (Some(tag), _) => tag == "latest",
        (None, Some(_)) => false,
        (None, None) => true,
    }
}

fn probe(p: &mut Map<String, Value>) {
    default_zero(p, "timeoutSeconds", json!(1));
    default_zero(p, "periodSeconds", json!(10));
    default_zero(p, "successThreshold", json!(1));
    default_zero(p, "failureThreshold", json!(3));
    if let Some(get) = object_at(p, "httpGet") {
        http_get(get);
    }
}

fn http_get(get: &mut Map<String, Value>) {
    default_zero(get, "path", json!("/"));
    default_zero(get, "scheme", json!("HTTP"));
}

fn volume(v: &mut Map<String, Value>) {
    // A volume with no source is an emptyDir.
    if v.iter().all(|(k, value)| k == "name" || value.is_null()) {
        v.insert("emptyDir".into(), json!({}));
    }
    for key in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(source) = object_at(v, key) {
            default(source, "defaultMode", json!(DEFAULT_MODE));
            downward_items(source);
        }
    }
    if let Some(projected) = object_at(v, "projected") {
        for source in items(projected, "sources") {
            if let Some(token) = object_at(source, "serviceAccountToken") {
                default(token, "expirationSeconds", json!(3600));
            }
            if let Some(downward) = object_at(source, "downwardAPI") {
                downward_items(downward);
            }
        }
    }
    if let Some(host_path) = object_at(v, "hostPath") {
        default(host_path, "type", json!(""));
    }
    if let Some(spec) =
        object_at(v, "ephemeral").and_then(|e| object_at(e, "volumeClaimTemplate")).and_then(|t| object_at(t, "spec"))
    {
        persistent_volume_claim_spec(spec);
    }
}

fn downward_items(source: &mut Map<String, Value>) {
    for item in items(source, "items") {
        if let Some(field_ref) = object_at(item, "fieldRef") {
            default_zero(field_ref, "apiVersion", json!("v1"));
        }
    }
}

/// The pod template at `spec.template`, if any.
fn template_spec(spec: &mut Map<String, Value>) {
    if let Some(template) = object_at(spec, "template") {
        pod_spec(object(template, "spec"));
    }
}

fn service(root: &mut Map<String, Value>) {
    let spec = object(root, "spec");
    default_zero(spec, "sessionAffinity", json!("None"));
    match str_of(spec, "sessionAffinity") {
        "None" => {
            spec.remove("sessionAffinityConfig");
        }
        "ClientIP" => {
            let config = spec.get("sessionAffinityConfig");
            let timeout = config.and_then(|c| c.pointer("/clientIP/timeoutSeconds"));
            if timeout.is_none_or(Value::is_null) {
                spec.insert("sessionAffinityConfig".into(), json!({"clientIP": {"timeoutSeconds": 10800}}));
            }
        }
        _ => {}
    }
    default_zero(spec, "type", json!("ClusterIP"));
    for port in items(spec, "ports") {
        default_zero(port, "protocol", json!("TCP"));
        if unset(port, "targetPort") {
            if let Some(number) = port.get("port").cloned() {
                port.insert("targetPort".into(), number);
            }
        }
    }
    let kind = str_of(spec, "type").to_string();
    let external_ips = spec.get("externalIPs").and_then(Value::as_array).is_some_and(|ips| !ips.is_empty());
    let externally_accessible = kind == "LoadBalancer" || kind == "NodePort" || (kind == "ClusterIP" && external_ips);
    if externally_accessible {
        default_zero(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if matches!(kind.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if kind == "LoadBalancer" {
        default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    // What the Service REST storage sets on a single-stack IPv4 cluster.
    if kind != "ExternalName" {
        let headless = str_of(spec, "clusterIP") == "None";
        let selector = spec.get("selector").and_then(Value::as_object).is_some_and(|s| !s.is_empty());
        let policy = if headless && !selector { "RequireDualStack" } else { "SingleStack" };
        default(spec, "ipFamilyPolicy", json!(policy));
        default(spec, "ipFamilies", json!(["IPv4"]));
    }
}

/// Secrets: type `Opaque`; `stringData` is written into `data` (base64) and dropped, as
/// kube-apiserver's conversion does on every write.
fn secret(root: &mut Map<String, Value>) {
    default_zero(root, "type", json!("Opaque"));
    if let Some(string_data) = root.remove("stringData") {
        let Value::Object(string_data) = string_data else { return };
        if string_data.is_empty() {
            return;
        }
        let data = object(root, "data");
        for (key, value) in string_data {
            let text = value.as_str().unwrap_or_default();
            data.insert(key, json!(BASE64.encode(text)));
        }
    }
}

fn namespace(root: &mut Map<String, Value>) {
    let metadata = object(root, "metadata");
    let name = str_of(metadata, "name").to_string();
    if !name.is_empty() {
        object(metadata, "labels").insert("kubernetes.io/metadata.name".into(), json!(name));
    }
}

/// On create a namespace gets the `kubernetes` finalizer, which its deletion removes once
/// its content is gone.
fn namespace_finalizer(root: &mut Map<String, Value>) {
    let spec = object(root, "spec");
    let finalizers = spec.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(list) = finalizers.as_array_mut() {
        if !list.iter().any(|f| f == "kubernetes") {
            list.push(json!("kubernetes"));
        }
    }
}

fn persistent_volume_claim(root: &mut Map<String, Value>) {
    persistent_volume_claim_spec(object(root, "spec"));
    default_zero(object(root, "status"), "phase", json!("Pending"));
}

fn persistent_volume_claim_spec(spec: &mut Map<String, Value>) {
    default(spec, "volumeMode", json!("Filesystem"));
}

fn persistent_volume(root: &mut Map<String, Value>) {
    let spec = object(root, "spec");
    default_zero(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
    default(spec, "volumeMode", json!("Filesystem"));
    default_zero(object(root, "status"), "phase", json!("Pending"));
}

fn endpoints(root: &mut Map<String, Value>) {
    for subset in items(root, "subsets") {
        for port in items(subset, "ports") {
            default_zero(port, "protocol", json!("TCP"));
        }
    }
}

// ---- apps/v1 ----

fn deployment(root: &mut Map<String, Value>) {
    let spec = object(root, "spec");
    default(spec, "replicas", json!(1));
    let strategy = object(spec, "strategy");
    default_zero(strategy, "type", json!("RollingUpdate"));
    if str_of(strategy, "type") == "RollingUpdate" {
        let rolling = object(strategy, "rollingUpdate");
        default(rolling, "maxUnavailable", json!("25%"));
        default(rolling, "maxSurge", json!("25%"));
    }
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
    template_spec(spec);
}

fn replica_set(root: &mut Map<String, Value>) {
    let spec = object(root, "spec");
    default(spec, "replicas", json!(1));
    template_spec(spec);
}

fn stateful_set(root: &mut Map<String, Value>) {
    let spec = object(root, "spec");
    default_zero(spec, "podManagementPolicy", json!("OrderedReady"));
    let strategy = object(spec, "updateStrategy");
    if unset(strategy, "type") {
        strategy.insert("type".into(), json!("RollingUpdate"));
        default(strategy, "rollingUpdate", json!({}));
    }
    if str_of(strategy, "type") == "RollingUpdate" {
        if let Some(rolling) = object_at(strategy, "rollingUpdate") {
            default(rolling, "partition", json!(0));
        }
    }
    let retention = object(spec, "persistentVolumeClaimRetentionPolicy");
    default_zero(retention, "whenDeleted", json!("Retain"));
    default_zero(retention, "whenScaled", json!("Retain"));
    default(spec, "replicas", json!(1));
    default(spec, "revisionHistoryLimit", json!(10));
    template_spec(spec);
    for claim in items(spec, "volumeClaimTemplates") {
        persistent_volume_claim(claim);
    }
}

fn daemon_set(root: &mut Map<String, Value>) {
    let spec = object(root, "spec");
    let strategy = object(spec, "updateStrategy");
    default_zero(strategy, "type", json!("RollingUpdate"));
    if str_of(strategy, "type") == "RollingUpdate" {
        let rolling = object(strategy, "rollingUpdate");
        default(rolling, "maxUnavailable", json!(1));
        default(rolling, "maxSurge", json!(0));
    }
    default(spec, "revisionHistoryLimit", json!(10));
    template_spec(spec);
}

// ---- batch/v1 ----

fn job(root: &mut Map<String, Value>) {
    let spec = object(root, "spec");
    if matches!(spec.get("completions"), None | Some(Value::Null))
        && matches!(spec.get("parallelism"), None | Some(Value::Null))
    {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    default(spec, "parallelism", json!(1));
    let per_index = !matches!(spec.get("backoffLimitPerIndex"), None | Some(Value::Null));
    default(spec, "backoffLimit", json!(if per_index { i64::from(i32::MAX) } else { 6 }));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    let failure_policy = !matches!(spec.get("podFailurePolicy"), None | Some(Value::Null));
    default(spec, "podReplacementPolicy", json!(if failure_policy { "Failed" } else { "TerminatingOrFailed" }));
    template_spec(spec);
    let template = spec.get("template");
    let template_labels = template.and_then(|t| t.pointer("/metadata/labels")).and_then(Value::as_object).cloned();
    if let Some(labels) = template_labels {
        let metadata = object(root, "metadata");
        let empty = metadata.get("labels").and_then(Value::as_object).is_none_or(Map::is_empty);
        if empty {
            metadata.insert("labels".into(), Value::Object(labels));
        }
    }
}

/// A Job's generated selector (unless `manualSelector`): its pods get the job's name and
/// uid as labels, and the selector picks the uid.
fn job_selector(root: &mut Map<String, Value>) {
    let metadata = root.get("metadata").cloned().unwrap_or_default();
    let name = metadata.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    let uid = metadata.get("uid").and_then(Value::as_str).unwrap_or("").to_string();
    let spec = object(root, "spec");
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let labels = object(object(object(spec, "template"), "metadata"), "labels");
    for key in JOB_LABELS {
        labels.entry(key).or_insert_with(|| json!(name));
    }
    for key in JOB_UID_LABELS {
        labels.entry(key).or_insert_with(|| json!(uid));
    }
    let selector = object(object(spec, "selector"), "matchLabels");
    selector.entry(JOB_UID_LABELS[0]).or_insert_with(|| json!(uid));
}

fn cron_job(root: &mut Map<String, Value>) {
    let spec = object(root, "spec");
    default_zero(spec, "concurrencyPolicy", json!("Allow"));
    default(spec, "suspend", json!(false));
    default(spec, "successfulJobsHistoryLimit", json!(3));
    default(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(job_spec) = object_at(spec, "jobTemplate").and_then(|t| object_at(t, "spec")) {
        template_spec(job_spec);
    }
}

// ---- other groups ----

fn endpoint_slice(root: &mut Map<String, Value>) {
    for port in items(root, "ports") {
        default(port, "name", json!(""));
        default(port, "protocol", json!("TCP"));
    }
}

fn role_binding(root: &mut Map<String, Value>) {
    if let Some(role_ref) = object_at(root, "roleRef") {
        default_zero(role_ref, "apiGroup", json!(RBAC_GROUP));
    }
    for subject in items(root, "subjects") {
        if unset(subject, "apiGroup") && matches!(str_of(subject, "kind"), "User" | "Group") {
            subject.insert("apiGroup".into(), json!(RBAC_GROUP));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::find;

    fn defaulted(group: &str, resource: &str, mut obj: Value) -> Value {
        let kind = find(group, "v1", resource).unwrap();
        apply(kind, &mut obj);
        let again = {
            let mut copy = obj.clone();
            apply(kind, &mut copy);
            copy
        };
        assert_eq!(again, obj, "defaulting twice changes nothing");
        obj
    }

    #[test]
    fn deployments_get_replicas_strategy_limits_and_pod_defaults() {
        let d = defaulted(
            "apps",
            "deployments",
            json!({"metadata": {"name": "web"}, "spec": {"template": {"spec": {"containers": [
                {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}]},
                {"name": "b", "image": "nginx:1.27"},
                {"name": "c", "image": "registry:5000/x/nginx:latest"},
                {"name": "d", "image": "nginx@sha256:abc"},
                {"name": "e", "image": "Nginx"},
                {"name": "f", "image": "localhost:5000/nginx"},
            ]}}}}),
        );
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(
            (spec["revisionHistoryLimit"].as_i64(), spec["progressDeadlineSeconds"].as_i64()),
            (Some(10), Some(600))
        );
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["schedulerName"], "default-scheduler");
        assert_eq!(pod["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod["securityContext"], json!({}));
        assert!(pod.get("enableServiceLinks").is_none(), "only pods get enableServiceLinks");
        let policies: Vec<&str> =
            pod["containers"].as_array().unwrap().iter().map(|c| c["imagePullPolicy"].as_str().unwrap()).collect();
        assert_eq!(policies, ["Always", "IfNotPresent", "Always", "IfNotPresent", "IfNotPresent", "Always"]);
        let a = &pod["containers"][0];
        assert_eq!(a["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(a["terminationMessagePolicy"], "File");
        assert_eq!(a["ports"][0]["protocol"], "TCP");
        let recreate =
            defaulted("apps", "deployments", json!({"spec": {"strategy": {"type": "Recreate"}, "replicas": 0}}));
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(recreate["spec"]["replicas"], 0, "an explicit zero stays");
    }

    #[test]
    fn pods_get_probes_volumes_requests_and_service_links() {
        let p = defaulted(
            "",
            "pods",
            json!({"spec": {"containers": [{"name": "a", "image": "x:1",
                "livenessProbe": {"httpGet": {"port": 80}},
                "resources": {"limits": {"cpu": "1"}, "requests": {"memory": "1Gi"}},
                "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
                "volumes": [{"name": "v"}, {"name": "s", "secret": {"secretName": "x"}}]}}),
        );
        let c = &p["spec"]["containers"][0];
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(c["resources"]["requests"], json!({"cpu": "1", "memory": "1Gi"}));
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(p["spec"]["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(p["spec"]["volumes"][1]["secret"]["defaultMode"], 420);
        assert_eq!(p["spec"]["enableServiceLinks"], true);
    }

    #[test]
    fn services_get_type_affinity_ports_and_families() {
        let s = defaulted("", "services", json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}));
        assert_eq!(
            s["spec"],
            json!({"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                "type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]})
        );
        let lb = defaulted(
            "",
            "services",
            json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": "http"}]}}),
        );
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        assert_eq!(lb["spec"]["ports"][0]["targetPort"], "http");
        let external = defaulted("", "services", json!({"spec": {"type": "ExternalName", "externalName": "x.com"}}));
        assert!(external["spec"].get("ipFamilies").is_none());
        let headless = defaulted("", "services", json!({"spec": {"clusterIP": "None"}}));
        assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");
    }

    #[test]
    fn secrets_fold_string_data_into_data() {
        let s =
            defaulted("", "secrets", json!({"data": {"a": "eA=="}, "stringData": {"password": "hunter2", "a": "y"}}));
        assert_eq!(s["type"], "Opaque");
        assert_eq!(s["data"], json!({"a": "eQ==", "password": "aHVudGVyMg=="}));
        assert!(s.get("stringData").is_none());
    }

    #[test]
    fn namespaces_get_their_name_label_and_on_create_the_kubernetes_finalizer() {
        let kind = find("", "v1", "namespaces").unwrap();
        let mut ns = json!({"metadata": {"name": "team-a"}});
        for_create(kind, &mut ns);
        assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "team-a");
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    }

    #[test]
    fn jobs_get_counts_and_a_generated_selector() {
        let kind = find("batch", "v1", "jobs").unwrap();
        let mut j = json!({"metadata": {"name": "pi", "uid": "u-1"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}}});
        for_create(kind, &mut j);
        let spec = &j["spec"];
        assert_eq!((spec["completions"].as_i64(), spec["parallelism"].as_i64()), (Some(1), Some(1)));
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(spec["selector"], json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}));
        assert_eq!(spec["template"]["metadata"]["labels"]["job-name"], "pi");
        assert_eq!(j["metadata"]["labels"], spec["template"]["metadata"]["labels"]);
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
    }

    #[test]
    fn new_pods_tolerate_not_ready_and_unreachable_nodes_for_five_minutes() {
        let kind = find("", "v1", "pods").unwrap();
        let mut pod = json!({"spec": {"containers": [{"name": "c"}],
            "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}]}});
        for_create(kind, &mut pod);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists"},
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        let mut tolerant = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        for_create(kind, &mut tolerant);
        assert_eq!(tolerant["spec"]["tolerations"], json!([{"operator": "Exists"}]));
        let mut updated = json!({"spec": {}});
        apply(kind, &mut updated);
        assert!(updated["spec"].get("tolerations").is_none(), "on create only");
    }

    #[test]
    fn stateful_daemon_and_cron_defaults() {
        let s = defaulted("apps", "statefulsets", json!({"spec": {"volumeClaimTemplates": [{"spec": {}}]}}));
        assert_eq!(s["spec"]["updateStrategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
        assert_eq!(s["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(s["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"], "Filesystem");
        assert_eq!(s["spec"]["volumeClaimTemplates"][0]["status"]["phase"], "Pending");
        let d = defaulted("apps", "daemonsets", json!({"spec": {}}));
        assert_eq!(d["spec"]["updateStrategy"]["rollingUpdate"], json!({"maxUnavailable": 1, "maxSurge": 0}));
        let c = defaulted("batch", "cronjobs", json!({"spec": {"schedule": "* * * * *"}}));
        assert_eq!(c["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(
            (c["spec"]["successfulJobsHistoryLimit"].as_i64(), c["spec"]["failedJobsHistoryLimit"].as_i64()),
            (Some(3), Some(1))
        );
        let pvc = defaulted("", "persistentvolumeclaims", json!({"spec": {}}));
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
    }
}
