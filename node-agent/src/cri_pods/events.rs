//! Events about pods, as kubelet records them (`source.component: kubelet`): Created,
//! Started, Killing, BackOff, Unhealthy, Failed. Best effort: a lost event is logged only.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

use crate::client::ApiClient;

/// Records an event about `pod` (field path: the container's) without waiting for it.
pub fn record(
    api: &Arc<ApiClient>,
    node: &str,
    pod: &Pod,
    container: Option<&str>,
    warning: bool,
    reason: &str,
    message: String,
) {
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let now = Timestamp::now();
    let name = format!("{}.{:x}", pod.metadata.name.as_deref().unwrap_or("pod"), now.as_nanosecond());
    let event = Event {
        metadata: ObjectMeta { name: Some(name), namespace: Some(namespace.clone()), ..ObjectMeta::default() },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: Some(namespace.clone()),
            uid: pod.metadata.uid.clone(),
            field_path: container.map(|c| format!("spec.containers{{{c}}}")),
            ..ObjectReference::default()
        },
        reason: Some(reason.into()),
        message: Some(message),
        type_: Some(if warning { "Warning" } else { "Normal" }.into()),
        source: Some(EventSource { component: Some("kubelet".into()), host: Some(node.into()) }),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node.into()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        action: Some(reason.into()),
        count: Some(1),
        ..Event::default()
    };
    let api = api.clone();
    tokio::spawn(async move {
        let result = api
            .call("create event", |c| {
                let (event, namespace) = (&event, &namespace);
                async move { Api::<Event>::namespaced(c, namespace).create(&PostParams::default(), event).await }
            })
            .await;
        if let Err(error) = result {
            tracing::debug!(%error, "event not recorded");
        }
    });
}
