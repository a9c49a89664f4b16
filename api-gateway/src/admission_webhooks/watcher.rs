//! [`ConfigWatcher`]: a supervised actor that watches the Mutating- and
//! ValidatingWebhookConfigurations through their kind actors (an informer, as kube's webhook
//! plugins have) and publishes every change as a new [`Snapshot`] on a `tokio::sync::watch`
//! channel, which the dispatchers read without waiting on this actor. A configuration is
//! parsed again only when it changed, so its webhooks keep their TLS settings (and sessions).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorFutureExt, AsyncContext, Context, Message, StreamHandler, Supervised, Supervisor, WrapFuture};
use actors::{kinds, KindActors, Watch, WatchEvent};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::watch;

use super::config::{webhooks_of, HookType, Snapshot, Webhook};

/// How soon a failed or ended watch is started again.
const REWATCH: Duration = Duration::from_secs(1);

/// The configurations of one kind, by name, with their parsed webhooks.
#[derive(Default)]
struct Configurations {
    listed: bool,
    by_name: BTreeMap<String, (Value, Vec<Arc<Webhook>>)>,
}

impl Configurations {
    fn put(&mut self, hook_type: HookType, obj: Value) {
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        if self.by_name.get(&name).is_some_and(|(known, _)| *known == obj) {
            return;
        }
        let hooks = webhooks_of(hook_type, &obj);
        self.by_name.insert(name, (obj, hooks));
    }

    fn remove(&mut self, obj: &Value) {
        if let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str) {
            self.by_name.remove(name);
        }
    }

    /// Replaces all with a new list (parsing again only what changed).
    fn relist(&mut self, hook_type: HookType, objects: Vec<Value>) {
        let mut old = std::mem::take(&mut self.by_name);
        for obj in objects {
            let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
            match old.remove(&name) {
                Some((known, hooks)) if known == obj => {
                    self.by_name.insert(name, (known, hooks));
                }
                _ => self.put(hook_type, obj),
            }
        }
        self.listed = true;
    }

    /// The webhooks in kube's order: configurations by name, then as listed.
    fn webhooks(&self) -> Vec<Arc<Webhook>> {
        self.by_name.values().flat_map(|(_, hooks)| hooks.iter().cloned()).collect()
    }
}

/// Internal: an event of one of the two watches, or its end (`None`).
#[derive(Message)]
#[rtype(result = "()")]
struct Event(HookType, Option<WatchEvent>);

/// The watcher: see the module docs.
pub struct ConfigWatcher {
    actors: KindActors,
    mutating: Configurations,
    validating: Configurations,
    publish: watch::Sender<Arc<Snapshot>>,
}

impl ConfigWatcher {
    /// Starts the watcher, supervised, on the current arbiter; it publishes on `publish`.
    pub fn start(actors: KindActors, publish: watch::Sender<Arc<Snapshot>>) -> actix::Addr<ConfigWatcher> {
        Supervisor::start(move |_| ConfigWatcher {
            actors,
            mutating: Configurations::default(),
            validating: Configurations::default(),
            publish,
        })
    }

    fn configurations(&mut self, hook_type: HookType) -> &mut Configurations {
        match hook_type {
            HookType::Mutating => &mut self.mutating,
            HookType::Validating => &mut self.validating,
        }
    }

    fn watch(&mut self, hook_type: HookType, ctx: &mut Context<Self>) {
        let resource = match hook_type {
            HookType::Mutating => "mutatingwebhookconfigurations",
            HookType::Validating => "validatingwebhookconfigurations",
        };
        let actor = kinds::find("admissionregistration.k8s.io", "v1", resource).and_then(|k| self.actors.get(k));
        let Some(actor) = actor else {
            ctx.run_later(REWATCH, move |act, ctx| act.watch(hook_type, ctx));
            return;
        };
        let started = async move { actor.send(Watch::default()).await };
        ctx.spawn(started.into_actor(self).map(move |result, act, ctx| match result {
            Ok(Ok(start)) => {
                let objects = start.initial.into_iter().map(|e| e.object).collect();
                act.configurations(hook_type).relist(hook_type, objects);
                act.publish();
                let events = start
                    .rest
                    .map(move |e| Event(hook_type, Some(e)))
                    .chain(futures::stream::once(async move { Event(hook_type, None) }));
                ctx.add_stream(events);
            }
            Ok(Err(e)) => {
                tracing::debug!(resource, error = %e, "webhook configuration watch refused; retrying");
                ctx.run_later(REWATCH, move |act, ctx| act.watch(hook_type, ctx));
            }
            Err(e) => {
                tracing::debug!(resource, error = %e, "kind actor unreachable; retrying");
                ctx.run_later(REWATCH, move |act, ctx| act.watch(hook_type, ctx));
            }
        }));
    }

    /// Sends the current webhooks to the dispatchers.
    fn publish(&self) {
        let snapshot = Snapshot {
            synced: self.mutating.listed && self.validating.listed,
            mutating: self.mutating.webhooks(),
            validating: self.validating.webhooks(),
        };
        tracing::debug!(
            mutating = snapshot.mutating.len(),
            validating = snapshot.validating.len(),
            synced = snapshot.synced,
            "admission webhooks updated"
        );
        self.publish.send_replace(Arc::new(snapshot));
    }
}

impl Actor for ConfigWatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for hook_type in [HookType::Mutating, HookType::Validating] {
            self.watch(hook_type, ctx);
        }
    }
}

impl Supervised for ConfigWatcher {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        metrics::counter!("flotilla_actor_restarts_total", "actor" => "admission-webhooks").increment(1);
        tracing::warn!(actor = "admission-webhooks", "actor restarting");
    }
}

impl StreamHandler<Event> for ConfigWatcher {
    fn handle(&mut self, Event(hook_type, event): Event, ctx: &mut Context<Self>) {
        let Some(event) = event else {
            // The watch ended (the kind actor relisted or restarted): the next list replaces all.
            ctx.run_later(REWATCH, move |act, ctx| act.watch(hook_type, ctx));
            return;
        };
        match event.event_type {
            "ADDED" | "MODIFIED" => self.configurations(hook_type).put(hook_type, event.object),
            "DELETED" => self.configurations(hook_type).remove(&event.object),
            _ => return,
        }
        self.publish();
    }

    /// Each watch's end is an [`Event`] with no event; the watcher goes on.
    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn config(name: &str, hook: &str) -> Value {
        json!({"metadata": {"name": name}, "webhooks": [{"name": hook, "clientConfig": {"url": "https://127.0.0.1:1/"}}]})
    }

    #[test]
    fn unchanged_configurations_keep_their_parsed_webhooks_across_a_relist() {
        let mut configs = Configurations::default();
        configs.relist(HookType::Validating, vec![config("b", "b1"), config("a", "a1")]);
        let before = configs.webhooks();
        assert_eq!(before.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), ["a1", "b1"]);
        configs.relist(HookType::Validating, vec![config("a", "a1"), config("b", "b2")]);
        let after = configs.webhooks();
        assert!(Arc::ptr_eq(&before[0], &after[0]), "a did not change");
        assert_eq!(after[1].name, "b2");
        configs.remove(&config("a", "a1"));
        assert_eq!(configs.webhooks().len(), 1);
    }
}
