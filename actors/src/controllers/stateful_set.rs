//! The StatefulSet controller (kube-controller-manager's `statefulset-controller`): pods
//! named `{set}-{ordinal}` with stable identities (hostname, the governing Service as
//! subdomain, `statefulset.kubernetes.io/pod-name` and `apps.kubernetes.io/pod-index`
//! labels), each with its own PersistentVolumeClaims from the `volumeClaimTemplates`, made
//! before the pod and kept or deleted as `persistentVolumeClaimRetentionPolicy` says (through
//! owner references the garbage collector follows); `OrderedReady` (one at a time, in
//! ordinal order, scale-down from the top) or `Parallel` pod management; `RollingUpdate`
//! (from the highest ordinal down to the partition, optionally `maxUnavailable` at once) or
//! `OnDelete`; the template's history in ControllerRevisions (`kubectl rollout
//! history/undo sts`); `status` as kube counts it.
//!
//! - [`identity`]: names, ordinals, pods and claims from the set, claim owner references.
//! - [`history`]: revisions (hash, numbering, rollback by renumbering, truncation).
//! - [`plan`]: one sync as a plan of writes, and the status.
//!
//! This file is the shell: informers and keys, and the writes with their Events. Like the
//! ReplicaSet controller it keeps expectations, so a sync never acts on a copy that does not
//! yet show its previous writes.

pub mod history;
pub mod identity;
pub mod plan;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, LocalBoxFuture};
use serde_json::{json, Value};

use super::daemon_set::controller_revisions;
use super::expectations::{Expectations, EXPECTATIONS_TIMEOUT};
use super::pods::{self, claim, controller_ref, int_at, kind, name, namespace, now, terminating, Selector};
use crate::api_error::ApiError;
use crate::controller::informer::resource_version;
use crate::controller::{controller_of, Action, Ctx, Lister, ObjectKey, Reconciler, Watched};
use crate::deletion::DeleteOptions;
use crate::kinds::ResourceKind;
use crate::object_store::Part;
use history::{apply_revision, choose_update, UpdateRevision};
use identity::{is_member, pod_revision};
use plan::{Plan, Revisions, Step};

/// How many names a new revision tries before giving up (each collision bumps the count).
const MAX_COLLISIONS: usize = 10;

pub fn stateful_sets() -> &'static ResourceKind {
    kind("apps", "statefulsets")
}

pub fn claims_kind() -> &'static ResourceKind {
    kind("", "persistentvolumeclaims")
}

/// The controller; keys are StatefulSets.
#[derive(Default)]
pub struct StatefulSets {
    expectations: Expectations,
    /// The StatefulSet informer's copy, for mapping orphan pods and claims to sets (known
    /// once the first reconcile ran; by then every set was queued by the first list).
    sets: Rc<RefCell<Option<Lister>>>,
}

/// What the writes of one sync did.
#[derive(Default)]
struct Outcome {
    /// The highest resourceVersion among the pods it created.
    created: i64,
    /// The pods it deleted (name, uid).
    deleted: Vec<(String, String)>,
    /// The pods the rolling update deleted.
    rolled: i64,
    error: Option<ApiError>,
}

/// What one step did.
enum Done {
    Nothing,
    Created(i64),
    Deleted(String, String),
    Rolled(String, String),
}

/// kube's aggregate of several errors: the one, or all in brackets.
fn aggregate(errors: Vec<String>) -> Result<(), ApiError> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(ApiError::InternalError(errors.concat())),
        _ => Err(ApiError::InternalError(format!("[{}]", errors.join(", ")))),
    }
}

/// Records kube's event for a write to a pod of the set (`SuccessfulCreate`, `FailedDelete`...).
async fn pod_event(ctx: &Ctx, set: &Value, verb: &str, pod: &str, error: Option<&ApiError>) {
    let title = format!("{}{}", verb[..1].to_uppercase(), &verb[1..]);
    let set_name = name(set);
    match error {
        None => {
            let message = format!("{verb} Pod {pod} in StatefulSet {set_name} successful");
            ctx.event(set, "Normal", &format!("Successful{title}"), &message).await;
        }
        Some(e) => {
            let message = format!("{verb} Pod {pod} in StatefulSet {set_name} failed error: {e}");
            ctx.event(set, "Warning", &format!("Failed{title}"), &message).await;
        }
    }
}

/// The set's context for a sync's writes.
struct Sync<'a> {
    ctx: &'a Ctx,
    set: &'a Value,
    /// The set at its update revision (for claim owners, as kube's `updateSet`).
    update_set: &'a Value,
    claims: &'a Lister,
}

impl Sync<'_> {
    fn ns(&self) -> &str {
        namespace(self.set)
    }

    fn claim(&self, claim_name: &str) -> Option<Arc<Value>> {
        self.claims.get(&ObjectKey::new(Some(self.ns()), claim_name))
    }

    /// Creates the claims of `pod` that do not exist (kube's `createPersistentVolumeClaims`);
    /// returns those it created. A claim being deleted is an error: the pod must wait.
    async fn create_claims(&self, set: &Value, pod: &Value) -> Result<Vec<Value>, ApiError> {
        let Some(ordinal) = identity::ordinal(pod) else { return Ok(Vec::new()) };
        let (mut created, mut errors) = (Vec::new(), Vec::new());
        for (_, claim) in identity::claims(set, ordinal) {
            let claim_name = name(&claim).to_string();
            match self.claim(&claim_name) {
                Some(existing) if terminating(&existing) => errors.push(format!("pvc {claim_name} is being deleted")),
                Some(_) => {}
                None => match self.ctx.create(claims_kind(), Some(self.ns()), claim).await {
                    Ok(c) => {
                        let message = format!(
                            "create Claim {claim_name} Pod {} in StatefulSet {} success",
                            name(pod),
                            name(self.set)
                        );
                        self.ctx.event(self.set, "Normal", "SuccessfulCreate", &message).await;
                        created.push(c);
                    }
                    // Made meanwhile; the copy is behind.
                    Err(ApiError::AlreadyExists(_)) => {}
                    Err(e) => {
                        let message = format!(
                            "create Claim {claim_name} for Pod {} in StatefulSet {} failed error: {e}",
                            name(pod),
                            name(self.set)
                        );
                        self.ctx.event(self.set, "Warning", "FailedCreate", &message).await;
                        errors.push(format!("failed to create PVC {claim_name}: {e}"));
                    }
                },
            }
        }
        aggregate(errors).map(|()| created)
    }

    /// Sets the owner references of `pod`'s claims (the ones it finds: in `fresh`, else in
    /// the copy) for the retention policy (kube's `UpdatePodClaimForRetentionPolicy`).
    async fn fix_claim_owners(&self, set: &Value, pod: &Value, fresh: &[Value]) -> Result<bool, ApiError> {
        let Some(ordinal) = identity::ordinal(pod) else { return Ok(false) };
        let mut changed = false;
        for (_, wanted) in identity::claims(set, ordinal) {
            let claim_name = name(&wanted);
            let current = match fresh.iter().find(|c| name(c) == claim_name) {
                Some(c) => Arc::new(c.clone()),
                None => match self.claim(claim_name) {
                    Some(c) => c,
                    // Picked up by a later sync.
                    None => continue,
                },
            };
            if identity::claim_owner_up_to_date(&current, set, pod) {
                continue;
            }
            let updated = identity::with_retention_owners(&current, set, pod);
            match self.ctx.update(claims_kind(), Part::Main, updated).await {
                Ok(_) => changed = true,
                Err(e) => {
                    return Err(ApiError::InternalError(format!(
                        "could not update claim {claim_name} for delete policy ownerRefs: {e}"
                    )))
                }
            }
        }
        Ok(changed)
    }

    /// Creates a pod, its claims first (kube's `CreateStatefulPod`).
    async fn create_pod(&self, pod: &Value) -> Result<Done, ApiError> {
        let pod_name = name(pod).to_string();
        let fresh = match self.create_claims(self.set, pod).await {
            Ok(fresh) => fresh,
            Err(e) => {
                pod_event(self.ctx, self.set, "create", &pod_name, Some(&e)).await;
                return Err(e);
            }
        };
        let created = match self.ctx.create(pods::pods(), Some(self.ns()), pod.clone()).await {
            Ok(created) => created,
            // The copy is behind; the next sync sees it.
            Err(e @ ApiError::AlreadyExists(_)) => return Err(e),
            Err(e) => {
                pod_event(self.ctx, self.set, "create", &pod_name, Some(&e)).await;
                return Err(e);
            }
        };
        if let Err(e) = self.fix_claim_owners(self.set, &created, &fresh).await {
            pod_event(self.ctx, self.set, "update", &pod_name, Some(&e)).await;
            return Err(e);
        }
        pod_event(self.ctx, self.set, "create", &pod_name, None).await;
        Ok(Done::Created(resource_version(&created).unwrap_or(0)))
    }

    /// Brings a pod in line with its identity and claims (kube's `UpdateStatefulPod`): the
    /// identity labels, its missing claims, its claims' owners.
    async fn update_pod(&self, pod: &Value) -> Result<Done, ApiError> {
        let pod_name = name(pod).to_string();
        let result = async {
            let mut changed = false;
            if !identity::identity_matches(self.update_set, pod) {
                if let Some(ordinal) = identity::ordinal(pod) {
                    let mut patch = json!({});
                    identity::set_identity_labels(&mut patch, &pod_name, ordinal);
                    self.ctx.merge_patch(pods::pods(), (Some(self.ns()), &pod_name), Part::Main, &patch).await?;
                    changed = true;
                }
            }
            let mut fresh = Vec::new();
            if !identity::storage_matches(self.update_set, pod) {
                // A running pod's volumes cannot change; its claims can at least exist.
                fresh = self.create_claims(self.update_set, pod).await?;
            }
            changed |= self.fix_claim_owners(self.update_set, pod, &fresh).await?;
            Ok::<bool, ApiError>(changed)
        }
        .await;
        match result {
            Ok(true) => pod_event(self.ctx, self.set, "update", &pod_name, None).await,
            Ok(false) => {}
            Err(e) => {
                pod_event(self.ctx, self.set, "update", &pod_name, Some(&e)).await;
                return Err(e);
            }
        }
        Ok(Done::Nothing)
    }

    /// Deletes a pod (kube's `DeleteStatefulPod`); one already gone is no error.
    async fn delete_pod(&self, pod: &Value) -> Result<Option<(String, String)>, ApiError> {
        let pod_name = name(pod).to_string();
        match self.ctx.delete(pods::pods(), (Some(self.ns()), &pod_name), DeleteOptions::default()).await {
            Ok(_) => {
                pod_event(self.ctx, self.set, "delete", &pod_name, None).await;
                Ok(Some((pod_name, pods::uid(pod).to_string())))
            }
            Err(ApiError::NotFound(_)) => Ok(None),
            Err(e) => {
                pod_event(self.ctx, self.set, "delete", &pod_name, Some(&e)).await;
                Err(e)
            }
        }
    }

    async fn step(&self, step: &Step) -> Result<Done, ApiError> {
        match step {
            Step::Create(pod) => self.create_pod(pod).await,
            Step::CreateClaims(pod) => {
                let fresh = self.create_claims(self.set, pod).await?;
                if let Err(e) = self.fix_claim_owners(self.set, pod, &fresh).await {
                    pod_event(self.ctx, self.set, "update", name(pod), Some(&e)).await;
                    return Err(e);
                }
                Ok(Done::Nothing)
            }
            Step::Update(pod) => self.update_pod(pod).await,
            Step::FixClaims(pod) => self.fix_claim_owners(self.update_set, pod, &[]).await.map(|_| Done::Nothing),
            Step::Delete(pod) => Ok(self.delete_pod(pod).await?.map_or(Done::Nothing, |(n, u)| Done::Deleted(n, u))),
            Step::Roll(pod) => Ok(match self.delete_pod(pod).await? {
                Some((n, u)) => Done::Rolled(n, u),
                None => Done::Rolled(String::new(), String::new()),
            }),
        }
    }

    /// Runs the plan: phase after phase, one step at a time (`OrderedReady`) or in
    /// slow-start batches of 1, 2, 4... (`Parallel`); the first failure ends it.
    async fn run(&self, plan: Plan) -> Outcome {
        let mut outcome = Outcome::default();
        for phase in plan.phases {
            let mut remaining = phase.into_iter();
            let mut batch = 1;
            loop {
                let size = if plan.monotonic { 1 } else { batch };
                let steps: Vec<Step> = remaining.by_ref().take(size).collect();
                if steps.is_empty() {
                    break;
                }
                let results = join_all(steps.iter().map(|s| self.step(s))).await;
                for result in results {
                    match result {
                        Ok(Done::Nothing) => {}
                        Ok(Done::Created(rv)) => outcome.created = outcome.created.max(rv),
                        Ok(Done::Deleted(n, u)) => outcome.deleted.push((n, u)),
                        Ok(Done::Rolled(n, u)) => {
                            outcome.rolled += 1;
                            if !n.is_empty() {
                                outcome.deleted.push((n, u));
                            }
                        }
                        Err(e) => {
                            outcome.error.get_or_insert(e);
                        }
                    }
                }
                if outcome.error.is_some() {
                    return outcome;
                }
                batch *= 2;
            }
        }
        outcome
    }
}

impl StatefulSets {
    pub fn new() -> Self {
        StatefulSets::default()
    }
}

/// The current and update revisions, and the collision count (kube's
/// `getStatefulSetRevisions`): the set's template is the update revision (the newest
/// revision, an older one renumbered, or a new one); `status.currentRevision` names the
/// current one (the update revision when it names none).
async fn revisions(ctx: &Ctx, set: &Value, history: &[Value]) -> Result<(Value, Value, i64), ApiError> {
    let mut collisions = history::collision_count(set);
    let next = history::next_number(history);
    let candidate = history::new_revision(set, next, collisions);
    let update = match choose_update(history, &candidate) {
        UpdateRevision::Newest(i) => history[i].clone(),
        UpdateRevision::Renumber(i) => {
            let mut cr = history[i].clone();
            cr["revision"] = json!(next);
            ctx.update(controller_revisions(), Part::Main, cr).await?
        }
        UpdateRevision::Create => create_revision(ctx, set, candidate, &mut collisions).await?,
    };
    let current =
        history.iter().find(|cr| name(cr) == history::status_current(set)).cloned().unwrap_or_else(|| update.clone());
    Ok((current, update, collisions))
}

/// Creates a revision; on a name taken by another template, counts a collision and tries
/// the next name (kube's `CreateControllerRevision`).
async fn create_revision(ctx: &Ctx, set: &Value, mut cr: Value, collisions: &mut i64) -> Result<Value, ApiError> {
    let ns = namespace(set);
    for _ in 0..MAX_COLLISIONS {
        let cr_name = history::revision_name(set, &cr["data"], *collisions);
        pods::set_path(&mut cr, &["metadata", "name"], json!(cr_name));
        match ctx.create(controller_revisions(), Some(ns), cr.clone()).await {
            Err(ApiError::AlreadyExists(_)) => {
                let existing = ctx.get(controller_revisions(), Some(ns), &cr_name).await?;
                if history::same_data(&existing, &cr) {
                    return Ok(existing);
                }
                *collisions += 1;
            }
            result => return result,
        }
    }
    Err(ApiError::InternalError(format!("no free ControllerRevision name for StatefulSet {}", name(set))))
}

/// Deletes the idle revisions beyond `revisionHistoryLimit`.
async fn truncate_history(ctx: &Ctx, set: &Value, history: &[Value], live: &[&str]) -> Result<(), ApiError> {
    for cr in history::to_truncate(set, history, live) {
        match ctx.delete(controller_revisions(), (Some(namespace(set)), name(cr)), DeleteOptions::default()).await {
            Ok(_) | Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes the status (a merge patch of the status subresource; fields now zero go, as Go's
/// `omitempty` leaves them out).
async fn write_status(ctx: &Ctx, set: &Value, status: &Value) -> Result<(), ApiError> {
    let mut patch = status.clone();
    if let (Some(old), Some(new)) = (set.get("status").and_then(Value::as_object), patch.as_object_mut()) {
        for field in ["observedGeneration", "readyReplicas", "currentReplicas", "updatedReplicas", "currentRevision"] {
            if old.contains_key(field) && !new.contains_key(field) {
                new.insert(field.into(), Value::Null);
            }
        }
    }
    let ns = namespace(set);
    ctx.merge_patch(stateful_sets(), (Some(ns), name(set)), Part::Status, &json!({"status": patch})).await.map(|_| ())
}

/// The sets in `obj`'s namespace whose selector matches it.
fn selecting(sets: &Rc<RefCell<Option<Lister>>>, obj: &Value) -> Vec<ObjectKey> {
    match sets.try_borrow().ok().and_then(|s| s.clone()) {
        Some(lister) => lister
            .list(Some(namespace(obj)))
            .iter()
            .filter(|set| Selector::of(set).matches(obj))
            .filter_map(|set| ObjectKey::of(set))
            .collect(),
        None => Vec::new(),
    }
}

/// Whether the set's selector parses (kube gives up on a set whose selector does not).
fn selector_is_valid(set: &Value) -> bool {
    set.pointer("/spec/selector")
        .filter(|s| s.is_object())
        .is_some_and(|s| crate::selectors::LabelSelector::parse(&crate::objects::selector_string(s)).is_ok())
}

impl Reconciler for StatefulSets {
    fn name(&self) -> &'static str {
        "statefulset"
    }

    fn watches(&self) -> Vec<Watched> {
        let observe = self.expectations.observer();
        let sets = self.sets.clone();
        let pod_keys = move |pod: &Value, old: Option<&Value>| {
            observe(pod);
            let mut keys: Vec<ObjectKey> = Vec::new();
            for p in std::iter::once(pod).chain(old) {
                let found = match controller_ref(p) {
                    Some(_) => controller_of(p, "StatefulSet").into_iter().collect(),
                    // An orphan: every set that may adopt it.
                    None => selecting(&sets, p),
                };
                for key in found {
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
            }
            keys
        };
        let sets = self.sets.clone();
        // A claim that went (a stale one collected) or changed may unblock its set.
        let claim_keys = move |claim: &Value, old: Option<&Value>| {
            let mut keys = selecting(&sets, claim);
            for key in
                controller_of(claim, "StatefulSet").into_iter().chain(old.and_then(|o| controller_of(o, "StatefulSet")))
            {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            keys
        };
        vec![
            Watched::objects(stateful_sets()),
            Watched::with(pods::pods(), pod_keys),
            Watched::owned_by(controller_revisions(), "StatefulSet"),
            Watched::with(claims_kind(), claim_keys),
        ]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(async move {
            let listers = (
                ctx.lister(stateful_sets()).cloned(),
                ctx.lister(pods::pods()).cloned(),
                ctx.lister(controller_revisions()).cloned(),
                ctx.lister(claims_kind()).cloned(),
            );
            let (Some(set_lister), Some(pod_lister), Some(cr_lister), Some(claim_lister)) = listers else {
                return Ok(Action::Done);
            };
            *self.sets.borrow_mut() = Some(set_lister.clone());
            let Some(set) = set_lister.get(&key) else {
                self.expectations.forget(&key);
                return Ok(Action::Done);
            };
            if !selector_is_valid(&set) {
                tracing::debug!(set = %key, "statefulset selector does not parse; not syncing");
                return Ok(Action::Done);
            }
            let selector = Selector::of(&set);
            let ns = key.namespace.as_deref();
            let owned = claim(&ctx, controller_revisions(), &set, "StatefulSet", &selector, cr_lister.list(ns)).await?;
            let candidates: Vec<Arc<Value>> =
                pod_lister.list(ns).into_iter().filter(|p| controller_ref(p).is_some() || is_member(&set, p)).collect();
            let pods: Vec<Arc<Value>> = claim(&ctx, pods::pods(), &set, "StatefulSet", &selector, candidates)
                .await?
                .into_iter()
                .filter(|p| is_member(&set, p))
                .collect();
            if !self.expectations.satisfied(&key, &pod_lister) {
                return Ok(Action::RequeueAfter(EXPECTATIONS_TIMEOUT));
            }

            let mut history_list: Vec<Value> = owned.iter().map(|cr| (**cr).clone()).collect();
            history_list.sort_by(history::by_number);
            let (current, update, collisions) = revisions(&ctx, &set, &history_list).await?;
            let (current_set, update_set) = (apply_revision(&set, &current), apply_revision(&set, &update));
            let revs = Revisions {
                current_set: &current_set,
                update_set: &update_set,
                current: name(&current),
                update: name(&update),
            };
            let lookup = |claim_name: &str| claim_lister.get(&ObjectKey::new(ns, claim_name));
            let plan = plan::plan(&set, &revs, &pods, &lookup, now());
            let sync = Sync { ctx: &ctx, set: &set, update_set: &update_set, claims: &claim_lister };
            let outcome = sync.run(plan).await;
            self.expectations.expect(&key, outcome.created, outcome.deleted);

            let status = plan::status(&set, &revs, &pods, outcome.rolled, collisions, now());
            if plan::status_changed(&set, &status) {
                write_status(&ctx, &set, &status).await?;
            }
            let mut live: Vec<&str> = vec![revs.current, revs.update];
            live.extend(pods.iter().map(|p| pod_revision(p)));
            let truncated = truncate_history(&ctx, &set, &history_list, &live).await;
            if let Some(e) = outcome.error {
                return Err(e);
            }
            truncated?;
            // One more sync once the ready pods may count as available.
            let min_ready = int_at(&set, "/spec/minReadySeconds");
            let available = status.get("availableReplicas").and_then(Value::as_i64).unwrap_or(0);
            if min_ready > 0 && available != identity::replicas(&set) {
                return Ok(Action::RequeueAfter(Duration::from_secs(min_ready as u64)));
            }
            Ok(Action::Done)
        })
    }
}
