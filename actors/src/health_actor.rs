//! `HealthActor`: a supervised actor that keeps the member's latest [`Health`] fresh.

use std::time::Duration;

use actix::{Actor, Addr, AsyncContext, Context, Handler, Message, MessageResult, Supervised, Supervisor};
use raft_store::StoreNode;

use crate::health::{assess, Health};

/// Asks a [`HealthActor`] for the latest assessment.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Health")]
pub struct GetHealth;

/// Reassesses the member every `period` from `StoreNode::status()`; answers [`GetHealth`].
pub struct HealthActor {
    node: StoreNode,
    period: Duration,
    health: Health,
}

impl HealthActor {
    /// Starts the actor under a supervisor on the current actix arbiter.
    pub fn start_supervised(node: StoreNode, period: Duration) -> Addr<HealthActor> {
        Supervisor::start(move |_| HealthActor { node, period, health: Health::starting() })
    }

    fn refresh(&mut self) {
        let health = assess(self.node.status());
        if health.ready != self.health.ready || health.live != self.health.live {
            tracing::info!(live = health.live, ready = health.ready, reason = %health.reason, "member health changed");
        }
        self.health = health;
    }
}

impl Actor for HealthActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.refresh();
        ctx.run_interval(self.period, |actor, _| actor.refresh());
    }
}

impl Supervised for HealthActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        metrics::counter!("flotilla_actor_restarts_total", "actor" => "health").increment(1);
        tracing::warn!(actor = "health", "actor restarting");
    }
}

impl Handler<GetHealth> for HealthActor {
    type Result = MessageResult<GetHealth>;

    fn handle(&mut self, _msg: GetHealth, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.health.clone())
    }
}
