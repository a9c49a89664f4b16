//! One sync of one Deployment (upstream's `sync.go`, `rolling.go`, `recreate.go`,
//! `progress.go`): finds or creates the new ReplicaSet and keeps revisions, scales
//! ReplicaSets for a rolling update, a recreate, a scaling event or a paused Deployment,
//! deletes ReplicaSets beyond `revisionHistoryLimit`, and writes the status.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::util::{self, reason};
use crate::api_error::ApiError;
use crate::controller::Ctx;
use crate::controllers::pods::{
    self, by_creation, controlled_by, int_at, name, namespace, spec_replicas, status_count, terminating,
    POD_TEMPLATE_HASH,
};
use crate::deletion::DeleteOptions;
use crate::object_store::Part;

type Result<T> = std::result::Result<T, ApiError>;

/// A sync in progress: the Deployment as last written, and whether to look again later.
pub struct Rollout<'a> {
    ctx: &'a Ctx,
    pub d: Value,
    now: OffsetDateTime,
    /// Look again after this long (to notice a missed progress deadline).
    pub requeue: Option<Duration>,
}

impl<'a> Rollout<'a> {
    pub fn new(ctx: &'a Ctx, d: Value) -> Self {
        Rollout { ctx, d, now: pods::now(), requeue: None }
    }

    fn replicas(&self) -> i64 {
        spec_replicas(&self.d)
    }

    async fn event(&self, event_type: &str, reason: &str, message: &str) {
        self.ctx.event(&self.d, event_type, reason, message).await;
    }

    /// Writes `status` through the status subresource unless the Deployment has it.
    async fn write_status(&mut self, status: Value) -> Result<()> {
        if pods::normalized(self.d.get("status")) == pods::normalized(Some(&status)) {
            return Ok(());
        }
        let mut updated = self.d.clone();
        pods::set_path(&mut updated, &["status"], util::omit_zeros(status, &[]));
        self.d = self.ctx.update(pods::deployments(), Part::Status, updated).await?;
        Ok(())
    }

    /// Sets a condition and writes the status.
    async fn write_condition(&mut self, cond: Value) -> Result<()> {
        let mut status = self.d.get("status").filter(|s| s.is_object()).cloned().unwrap_or_else(|| json!({}));
        pods::set_condition(&mut status, cond);
        self.write_status(status).await
    }

    /// Sets the Deployment's revision annotation (a metadata write).
    async fn set_revision(&mut self, revision: &str) -> Result<()> {
        if pods::annotation(&self.d, util::REVISION) == Some(revision) {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {util::REVISION: revision}}});
        let key = (Some(namespace(&self.d)), name(&self.d));
        self.d = self.ctx.merge_patch(pods::deployments(), key, Part::Main, &patch).await?;
        Ok(())
    }

    fn condition(&self, kind: &str) -> Option<&Value> {
        pods::condition(self.d.get("status")?, kind)
    }

    fn condition_reason(&self, kind: &str) -> Option<&str> {
        self.condition(kind)?.get("reason")?.as_str()
    }

    // -----------------------------------------------------------------------------------
    // The new ReplicaSet and revisions

    /// Finds the new ReplicaSet among `rses` and syncs its annotations and the
    /// Deployment's revision; with `create`, creates it when missing (appended to `rses`).
    /// Returns its index (upstream's `getAllReplicaSetsAndSyncRevision`).
    pub async fn new_and_old(&mut self, rses: &mut Vec<Value>, create: bool) -> Result<Option<usize>> {
        let existing = util::find_new(&self.d, rses);
        let max_old = rses.iter().enumerate().filter(|(i, _)| Some(*i) != existing).map(|(_, rs)| util::revision(rs));
        let new_revision = max_old.max().unwrap_or(0).saturating_add(1);
        if let Some(i) = existing {
            let mut copy = rses[i].clone();
            let annotated = util::set_new_rs_annotations(&self.d, &mut copy, new_revision, true);
            let min_ready = int_at(&self.d, "/spec/minReadySeconds");
            if annotated || int_at(&copy, "/spec/minReadySeconds") != min_ready {
                pods::set_path(&mut copy, &["spec", "minReadySeconds"], json!(min_ready));
                rses[i] = self.ctx.update(pods::replica_sets(), Part::Main, copy).await?;
                return Ok(Some(i));
            }
            let revision = pods::annotation(&rses[i], util::REVISION).unwrap_or("").to_string();
            self.set_revision(&revision).await?;
            if util::has_progress_deadline(&self.d) && self.condition("Progressing").is_none() {
                let msg = format!("Found new replica set {:?}", name(&rses[i]));
                let cond = util::new_condition("Progressing", "True", reason::FOUND_NEW_RS, &msg, self.now);
                self.write_condition(cond).await?;
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        self.create_new(rses, new_revision).await.map(Some)
    }

    async fn create_new(&mut self, rses: &mut Vec<Value>, new_revision: i64) -> Result<usize> {
        let d = &self.d;
        let collisions = d.pointer("/status/collisionCount").and_then(Value::as_i64);
        let mut template = d.pointer("/spec/template").cloned().unwrap_or_else(|| json!({}));
        let hash = util::template_hash(&template, collisions);
        pods::set_path(&mut template, &["metadata", "labels", POD_TEMPLATE_HASH], json!(hash));
        let mut selector = d.pointer("/spec/selector").cloned().unwrap_or_else(|| json!({}));
        pods::set_path(&mut selector, &["matchLabels", POD_TEMPLATE_HASH], json!(hash));
        let rs_name = format!("{}-{}", name(d), hash);
        let mut rs = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name,
                "namespace": namespace(d),
                "labels": template["metadata"]["labels"].clone(),
                "ownerReferences": [pods::owner_reference(d, "Deployment")],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": int_at(d, "/spec/minReadySeconds"),
                "selector": selector,
                "template": template,
            },
        });
        let replicas = {
            let all: Vec<&Value> = rses.iter().chain(std::iter::once(&rs)).collect();
            util::new_rs_new_replicas(d, &all, &rs)
        };
        pods::set_path(&mut rs, &["spec", "replicas"], json!(replicas));
        util::set_new_rs_annotations(d, &mut rs, new_revision, false);
        let ns = Some(namespace(d).to_string());
        let (created, already_existed) = match self.ctx.create(pods::replica_sets(), ns.as_deref(), rs).await {
            Ok(created) => (created, false),
            Err(ApiError::AlreadyExists(subject)) => {
                let existing = self.ctx.get(pods::replica_sets(), ns.as_deref(), &rs_name).await?;
                let ours = controlled_by(&existing, &self.d)
                    && util::equal_ignore_hash(existing.pointer("/spec/template"), self.d.pointer("/spec/template"));
                if !ours {
                    // A hash collision: the next hash takes the count into account.
                    let mut status =
                        self.d.get("status").filter(|s| s.is_object()).cloned().unwrap_or_else(|| json!({}));
                    status["collisionCount"] = json!(collisions.unwrap_or(0).saturating_add(1));
                    self.write_status(status).await?;
                    return Err(ApiError::AlreadyExists(subject));
                }
                (existing, true)
            }
            Err(e) => {
                let msg = format!("Failed to create new replica set {rs_name:?}: {e}");
                if util::has_progress_deadline(&self.d) {
                    let cond = util::new_condition("Progressing", "False", reason::FAILED_RS_CREATE, &msg, self.now);
                    // The create's error is what matters; this write is retried with it.
                    let _ = self.write_condition(cond).await;
                }
                self.event("Warning", reason::FAILED_RS_CREATE, &msg).await;
                return Err(e);
            }
        };
        if !already_existed && replicas > 0 {
            let msg = format!("Scaled up replica set {rs_name} from 0 to {replicas}");
            self.event("Normal", "ScalingReplicaSet", &msg).await;
        }
        self.set_revision(&new_revision.to_string()).await?;
        if !already_existed && util::has_progress_deadline(&self.d) {
            let msg = format!("Created new replica set {rs_name:?}");
            let cond = util::new_condition("Progressing", "True", reason::NEW_RS_CREATED, &msg, self.now);
            self.write_condition(cond).await?;
        }
        rses.push(created);
        Ok(rses.len() - 1)
    }

    // -----------------------------------------------------------------------------------
    // Scaling

    /// Sets a ReplicaSet's replicas and replica annotations; whether its size changed.
    async fn scale_rs(&self, rs: &mut Value, to: i64, operation: &str) -> Result<bool> {
        let from = spec_replicas(rs);
        let (desired, max) = (self.replicas(), self.replicas() + util::max_surge(&self.d));
        let resize = from != to;
        if !resize && !util::replicas_annotations_need_update(rs, desired, max) {
            return Ok(false);
        }
        let mut copy = rs.clone();
        pods::set_path(&mut copy, &["spec", "replicas"], json!(to));
        util::set_replicas_annotations(&mut copy, desired, max);
        *rs = self.ctx.update(pods::replica_sets(), Part::Main, copy).await?;
        if resize {
            let msg = format!("Scaled {operation} replica set {} from {from} to {to}", name(rs));
            self.event("Normal", "ScalingReplicaSet", &msg).await;
        }
        Ok(resize)
    }

    async fn scale_to(&self, rs: &mut Value, to: i64) -> Result<bool> {
        match spec_replicas(rs).cmp(&to) {
            std::cmp::Ordering::Equal => Ok(false),
            std::cmp::Ordering::Less => self.scale_rs(rs, to, "up").await,
            std::cmp::Ordering::Greater => self.scale_rs(rs, to, "down").await,
        }
    }

    /// Old ReplicaSets (not `new`) with replicas, oldest first.
    fn active_old(rses: &[Value], new: Option<usize>) -> Vec<usize> {
        let mut old: Vec<usize> = (0..rses.len()).filter(|i| Some(*i) != new && spec_replicas(&rses[*i]) > 0).collect();
        old.sort_by(|a, b| by_creation(&rses[*a], &rses[*b]));
        old
    }

    /// Whether any active ReplicaSet was sized for another replica count (a scale, not a
    /// rollout).
    pub async fn is_scaling_event(&mut self, rses: &mut Vec<Value>) -> Result<bool> {
        self.new_and_old(rses, false).await?;
        let replicas = self.replicas();
        Ok(rses
            .iter()
            .filter(|rs| spec_replicas(rs) > 0)
            .any(|rs| util::desired_replicas(rs).is_some_and(|desired| desired != replicas)))
    }

    /// A scaling event or a paused Deployment: scale, clean up, write the status.
    pub async fn sync(&mut self, rses: &mut Vec<Value>) -> Result<()> {
        let new = self.new_and_old(rses, false).await?;
        self.scale(rses, new).await?;
        if self.d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
            self.cleanup(rses, new).await?;
        }
        self.sync_status(rses, new).await
    }

    /// Only the status (a Deployment being deleted).
    pub async fn sync_status_only(&mut self, rses: &mut Vec<Value>) -> Result<()> {
        let new = self.new_and_old(rses, false).await?;
        self.sync_status(rses, new).await
    }

    /// Proportional scaling (upstream's `scale`).
    async fn scale(&mut self, rses: &mut [Value], new: Option<usize>) -> Result<()> {
        let replicas = self.replicas();
        if let Some(i) = active_or_latest(rses, new) {
            self.scale_to(&mut rses[i], replicas).await?;
            return Ok(());
        }
        if let Some(n) = new.filter(|n| util::is_saturated(&self.d, &rses[*n])) {
            for i in Self::active_old(rses, Some(n)) {
                self.scale_to(&mut rses[i], 0).await?;
            }
            return Ok(());
        }
        if !util::is_rolling(&self.d) {
            return Ok(());
        }
        let mut active: Vec<usize> = (0..rses.len()).filter(|i| spec_replicas(&rses[*i]) > 0).collect();
        let current = util::spec_total(active.iter().map(|i| &rses[*i]));
        let allowed = if replicas > 0 { replicas + util::max_surge(&self.d) } else { 0 };
        let to_add = allowed - current;
        let operation = match to_add.cmp(&0) {
            std::cmp::Ordering::Greater => {
                active.sort_by(|a, b| util::by_size(&rses[*a], &rses[*b], true));
                "up"
            }
            std::cmp::Ordering::Less => {
                active.sort_by(|a, b| util::by_size(&rses[*a], &rses[*b], false));
                "down"
            }
            std::cmp::Ordering::Equal => "",
        };
        let mut added = 0;
        let mut sizes: HashMap<usize, i64> = HashMap::new();
        for &i in &active {
            let size = spec_replicas(&rses[i]);
            if to_add != 0 {
                let proportion = util::rs_proportion(&rses[i], &self.d, to_add, added);
                sizes.insert(i, size + proportion);
                added += proportion;
            } else {
                sizes.insert(i, size);
            }
        }
        for (position, &i) in active.iter().enumerate() {
            let mut size = sizes.get(&i).copied().unwrap_or(0);
            if position == 0 && to_add != 0 {
                size = (size + to_add - added).max(0);
            }
            self.scale_rs(&mut rses[i], size, operation).await?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Rolling update

    pub async fn rolling(&mut self, rses: &mut Vec<Value>) -> Result<()> {
        let new = self.new_and_old(rses, true).await?;
        let Some(n) = new else { return self.sync_rollout_status(rses, None).await };
        if self.reconcile_new(rses, n).await? || self.reconcile_old(rses, n).await? {
            return self.sync_rollout_status(rses, Some(n)).await;
        }
        if util::deployment_complete(&self.d, self.d.get("status").unwrap_or(&Value::Null)) {
            self.cleanup(rses, Some(n)).await?;
        }
        self.sync_rollout_status(rses, Some(n)).await
    }

    async fn reconcile_new(&self, rses: &mut [Value], n: usize) -> Result<bool> {
        let replicas = self.replicas();
        let current = spec_replicas(&rses[n]);
        if current == replicas {
            return Ok(false);
        }
        if current > replicas {
            return self.scale_to(&mut rses[n], replicas).await;
        }
        let target = {
            let all: Vec<&Value> = rses.iter().collect();
            util::new_rs_new_replicas(&self.d, &all, &rses[n])
        };
        self.scale_to(&mut rses[n], target).await
    }

    /// Scales old ReplicaSets down as far as availability allows: first their unhealthy
    /// replicas, then as new replicas become available.
    async fn reconcile_old(&self, rses: &mut [Value], n: usize) -> Result<bool> {
        let old = Self::active_old(rses, Some(n));
        if util::spec_total(old.iter().map(|i| &rses[*i])) == 0 {
            return Ok(false);
        }
        let all_pods = util::spec_total(rses.iter());
        let min_available = self.replicas() - util::max_unavailable(&self.d);
        let new_unavailable = spec_replicas(&rses[n]) - status_count(&rses[n], "availableReplicas");
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        // Unhealthy replicas first: deleting them costs no availability.
        let mut cleaned = 0;
        for &i in &old {
            if cleaned >= max_scaled_down {
                break;
            }
            let (size, available) = (spec_replicas(&rses[i]), status_count(&rses[i], "availableReplicas"));
            if size == 0 || size == available {
                continue;
            }
            if available > size {
                // A status from before its last scale-down: wait for a fresh one.
                return Ok(cleaned > 0);
            }
            let down = (max_scaled_down - cleaned).min(size - available);
            self.scale_to(&mut rses[i], size - down).await?;
            cleaned += down;
        }
        // Then as many as stay above the minimum available.
        // (A ReplicaSet's pods beyond its size are going: never count them.)
        let available: i64 = rses.iter().map(|rs| status_count(rs, "availableReplicas").min(spec_replicas(rs))).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for &i in &old {
                if scaled >= total {
                    break;
                }
                let size = spec_replicas(&rses[i]);
                if size == 0 {
                    continue;
                }
                let down = size.min(total - scaled);
                self.scale_to(&mut rses[i], size - down).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    // -----------------------------------------------------------------------------------
    // Recreate

    /// Old ReplicaSets to zero, and once none of their pods run, the new one up.
    pub async fn recreate(&mut self, rses: &mut Vec<Value>, pods: &HashMap<String, Vec<Arc<Value>>>) -> Result<()> {
        let mut new = self.new_and_old(rses, false).await?;
        let mut scaled_down = false;
        for i in Self::active_old(rses, new) {
            scaled_down |= self.scale_to(&mut rses[i], 0).await?;
        }
        if scaled_down || old_pods_running(rses, new, pods) {
            return self.sync_rollout_status(rses, new).await;
        }
        if new.is_none() {
            new = self.new_and_old(rses, true).await?;
        }
        if let Some(n) = new {
            let replicas = self.replicas();
            self.scale_to(&mut rses[n], replicas).await?;
        }
        if util::deployment_complete(&self.d, self.d.get("status").unwrap_or(&Value::Null)) {
            self.cleanup(rses, new).await?;
        }
        self.sync_rollout_status(rses, new).await
    }

    // -----------------------------------------------------------------------------------
    // History and status

    /// Deletes the oldest scaled-down ReplicaSets beyond `revisionHistoryLimit`.
    async fn cleanup(&self, rses: &[Value], new: Option<usize>) -> Result<()> {
        let Some(limit) = self.d.pointer("/spec/revisionHistoryLimit").and_then(Value::as_i64) else {
            return Ok(());
        };
        let mut cleanable: Vec<&Value> =
            rses.iter().enumerate().filter(|(i, rs)| Some(*i) != new && !terminating(rs)).map(|(_, rs)| rs).collect();
        let diff = cleanable.len() as i64 - limit;
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| util::by_revision(a, b));
        for rs in cleanable.into_iter().take(diff as usize) {
            let observed = status_count(rs, "observedGeneration");
            if status_count(rs, "replicas") != 0
                || spec_replicas(rs) != 0
                || int_at(rs, "/metadata/generation") > observed
            {
                continue;
            }
            let key = (Some(namespace(rs)), name(rs));
            match self.ctx.delete(pods::replica_sets(), key, DeleteOptions::default()).await {
                Ok(_) | Err(ApiError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn status_of(&self, rses: &[Value], new: Option<usize>) -> Value {
        let all: Vec<&Value> = rses.iter().collect();
        util::calculate_status(&all, new.map(|n| &rses[n]), &self.d, self.now)
    }

    /// Writes the status without judging progress.
    async fn sync_status(&mut self, rses: &[Value], new: Option<usize>) -> Result<()> {
        let status = self.status_of(rses, new);
        self.write_status(status).await
    }

    /// Writes the status with the Progressing condition (complete, progressing, timed out)
    /// and any ReplicaFailure (upstream's `syncRolloutStatus`).
    async fn sync_rollout_status(&mut self, rses: &[Value], new: Option<usize>) -> Result<()> {
        let mut status = self.status_of(rses, new);
        let deadline = util::has_progress_deadline(&self.d);
        if !deadline {
            pods::remove_condition(&mut status, "Progressing");
        }
        let current = self.condition("Progressing").cloned();
        let complete = status.get("replicas") == status.get("updatedReplicas")
            && self.condition_reason("Progressing") == Some(reason::NEW_RS_AVAILABLE);
        let new_name = new.map(|n| name(&rses[n]).to_string());
        let what = |d: &Value| match &new_name {
            Some(rs) => format!("ReplicaSet {rs:?}"),
            None => format!("Deployment {:?}", name(d)),
        };
        if deadline && !complete {
            if util::deployment_complete(&self.d, &status) {
                let msg = format!("{} has successfully progressed.", what(&self.d));
                let cond = util::new_condition("Progressing", "True", reason::NEW_RS_AVAILABLE, &msg, self.now);
                pods::set_condition(&mut status, cond);
            } else if util::deployment_progressing(&self.d, &status) {
                let msg = format!("{} is progressing.", what(&self.d));
                let mut cond = util::new_condition("Progressing", "True", reason::RS_UPDATED, &msg, self.now);
                if let Some(current) = &current {
                    if current.get("status").and_then(Value::as_str) == Some("True") {
                        if let Some(at) = current.get("lastTransitionTime") {
                            pods::set_path(&mut cond, &["lastTransitionTime"], at.clone());
                        }
                    }
                    pods::remove_condition(&mut status, "Progressing");
                }
                pods::set_condition(&mut status, cond);
            } else if util::deployment_timed_out(&self.d, &status, self.now) {
                let msg = format!("{} has timed out progressing.", what(&self.d));
                let cond = util::new_condition("Progressing", "False", reason::TIMED_OUT, &msg, self.now);
                pods::set_condition(&mut status, cond);
            }
        }
        let all: Vec<&Value> = rses.iter().collect();
        match util::replica_failure(&all, new.map(|n| &rses[n])) {
            Some(failure) => pods::set_condition(&mut status, failure),
            None => pods::remove_condition(&mut status, "ReplicaFailure"),
        }
        if pods::normalized(self.d.get("status")) == pods::normalized(Some(&status)) {
            self.requeue = util::requeue_stuck(&self.d, &status, self.now);
            return Ok(());
        }
        self.write_status(status).await
    }

    /// Marks a paused (or resumed) Deployment in its Progressing condition, so the time
    /// spent paused never counts against the progress deadline.
    pub async fn check_paused_conditions(&mut self) -> Result<()> {
        if !util::has_progress_deadline(&self.d) || self.condition_reason("Progressing") == Some(reason::TIMED_OUT) {
            return Ok(());
        }
        let paused = self.d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
        let marked = self.condition_reason("Progressing") == Some(reason::PAUSED);
        let cond = if paused && !marked {
            util::new_condition("Progressing", "Unknown", reason::PAUSED, "Deployment is paused", self.now)
        } else if !paused && marked {
            util::new_condition("Progressing", "Unknown", reason::RESUMED, "Deployment is resumed", self.now)
        } else {
            return Ok(());
        };
        self.write_condition(cond).await
    }

    /// The Deployment selects everything: refuse, but say the spec was seen.
    pub async fn refuse_selecting_all(&mut self) -> Result<()> {
        self.event(
            "Warning",
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.",
        )
        .await;
        let generation = int_at(&self.d, "/metadata/generation");
        if status_count(&self.d, "observedGeneration") < generation {
            let mut status = self.d.get("status").filter(|s| s.is_object()).cloned().unwrap_or_else(|| json!({}));
            status["observedGeneration"] = json!(generation);
            self.write_status(status).await?;
        }
        Ok(())
    }
}

/// The only active ReplicaSet, or with none active the new (else the newest) one.
fn active_or_latest(rses: &[Value], new: Option<usize>) -> Option<usize> {
    if rses.is_empty() {
        return None;
    }
    let active: Vec<usize> = (0..rses.len()).filter(|i| spec_replicas(&rses[*i]) > 0).collect();
    match active.as_slice() {
        [] => new.or_else(|| (0..rses.len()).max_by(|a, b| by_creation(&rses[*a], &rses[*b]))),
        [only] => Some(*only),
        _ => None,
    }
}

/// Whether pods of old ReplicaSets still run (or may: any not finished).
fn old_pods_running(rses: &[Value], new: Option<usize>, pods: &HashMap<String, Vec<Arc<Value>>>) -> bool {
    let old = || rses.iter().enumerate().filter(move |(i, _)| Some(*i) != new).map(|(_, rs)| rs);
    if util::status_total(old(), "replicas") > 0 {
        return true;
    }
    let new_uid = new.map(|n| pods::uid(&rses[n]));
    pods.iter().filter(|(uid, _)| Some(uid.as_str()) != new_uid).any(|(_, pods)| {
        pods.iter().any(|p| !matches!(p.pointer("/status/phase").and_then(Value::as_str), Some("Failed" | "Succeeded")))
    })
}
