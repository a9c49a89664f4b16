//! A list+watch of the objects of one kind in all namespaces (the node's pods, Services,
//! EndpointSlices), optionally narrowed by a field selector. It lists, then watches from the
//! list's revision for ever: a watch that ends is renewed from the last revision seen, one
//! that fails moves to the next API endpoint, 410 Gone lists again.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::client::{retryable, ApiClient};

/// How long one watch request lasts before it is renewed from the last revision.
const WATCH_TIMEOUT_SECS: u32 = 120;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the watch saw.
#[derive(Debug)]
pub enum Event<K> {
    /// Everything there is (at start and after a 410): replaces what was known.
    Listed(Vec<K>),
    /// Added or modified.
    Applied(K),
    Deleted(K),
}

/// Lists and watches `K` in all namespaces (those matching `fields`, a field selector, when
/// given), sending each event wrapped by `wrap`, until the receiver is gone.
pub async fn watch<K, M>(
    api: Arc<ApiClient>,
    what: &'static str,
    fields: Option<String>,
    tx: mpsc::UnboundedSender<M>,
    wrap: fn(Event<K>) -> M,
) where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    let mut backoff = FIRST_BACKOFF;
    loop {
        let listed = api
            .call(what, |c| {
                let params = with_fields(ListParams::default(), fields.as_deref());
                async move { Api::<K>::all(c).list(&params).await }
            })
            .await;
        let list = match listed {
            Ok(list) => list,
            Err(error) => {
                tracing::warn!(%error, what, "listing failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let mut revision = list.metadata.resource_version.clone().unwrap_or_default();
        if tx.send(wrap(Event::Listed(list.items))).is_err() {
            return;
        }
        loop {
            let (endpoint, url, client) = api.current();
            let mut params = WatchParams::default().timeout(WATCH_TIMEOUT_SECS);
            if let Some(fields) = &fields {
                params = params.fields(fields);
            }
            let stream = match Api::<K>::all(client).watch(&params, &revision).await {
                Ok(stream) => stream,
                Err(error) => {
                    let error = crate::client::Error::from(error);
                    tracing::warn!(%url, %error, what, "watch failed to start");
                    if error.code() == Some(410) {
                        break;
                    }
                    if retryable(&error) {
                        api.fail_over(endpoint);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let mut stream = stream.boxed();
            let mut relist = false;
            loop {
                match stream.try_next().await {
                    Ok(Some(event)) => {
                        backoff = FIRST_BACKOFF;
                        let event = match event {
                            WatchEvent::Added(object) | WatchEvent::Modified(object) => {
                                revision = object.meta().resource_version.clone().unwrap_or(revision);
                                Event::Applied(object)
                            }
                            WatchEvent::Deleted(object) => {
                                revision = object.meta().resource_version.clone().unwrap_or(revision);
                                Event::Deleted(object)
                            }
                            WatchEvent::Bookmark(bookmark) => {
                                revision = bookmark.metadata.resource_version;
                                continue;
                            }
                            WatchEvent::Error(status) => {
                                tracing::info!(code = status.code, message = %status.message, what, "watch ended");
                                relist = status.code == 410;
                                break;
                            }
                        };
                        if tx.send(wrap(event)).is_err() {
                            return;
                        }
                    }
                    // The server ended the watch (its timeout): renew it.
                    Ok(None) => break,
                    Err(error) => {
                        tracing::warn!(%url, %error, what, "watch broke; trying the next endpoint");
                        api.fail_over(endpoint);
                        break;
                    }
                }
            }
            if relist {
                break;
            }
        }
    }
}

fn with_fields(params: ListParams, fields: Option<&str>) -> ListParams {
    match fields {
        Some(fields) => params.fields(fields),
        None => params,
    }
}
