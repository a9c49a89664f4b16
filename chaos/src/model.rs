//! The sequential specification of one object: a register that is absent or holds a value at
//! a resourceVersion, with create, compare-and-swap update, delete and get.
//!
//! A write whose outcome is indeterminate may take effect, but its resourceVersion is then
//! unknown; the model keeps it unknown until a later operation reveals it (a get returning it,
//! a CAS expecting it), which binds it. Every new resourceVersion must exceed every one the
//! object had before: the store revision only rises.

use crate::history::{FailReason, Op, OpKind, Outcome, Rv};

/// What the object holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Present {
    /// `None` while written by an indeterminate operation and not yet observed.
    pub rv: Option<Rv>,
    pub value: String,
}

/// The register's state: the object, and the highest resourceVersion known on the key so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct State {
    pub object: Option<Present>,
    pub floor: Rv,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.object {
            None => write!(f, "absent (revisions so far <= {})", self.floor),
            Some(Present { rv: Some(rv), value }) => write!(f, "{value:?} at rv {rv}"),
            Some(Present { rv: None, value }) => write!(f, "{value:?} at an unknown rv > {}", self.floor),
        }
    }
}

/// How the model treats one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// It must take effect exactly once, between its invocation and its completion.
    Required,
    /// It may take effect once after its invocation, or never (indeterminate writes).
    Optional,
    /// It constrains nothing (refused with `Other`, indeterminate reads).
    Ignored,
}

/// The role of `op`; `Err` says why the record itself is unusable.
pub fn role(op: &Op) -> Result<Role, String> {
    if let Some(done) = op.completed_ns {
        if done < op.invoked_ns {
            return Err("completed before it was invoked".into());
        }
    }
    match (&op.kind, &op.outcome) {
        (_, Outcome::Indeterminate) if op.kind.is_write() => Ok(Role::Optional),
        (_, Outcome::Indeterminate) | (_, Outcome::Fail { reason: FailReason::Other }) => Ok(Role::Ignored),
        (_, _) if op.completed_ns.is_none() => Err("has an outcome but no completion time".into()),
        (OpKind::Create { .. } | OpKind::Update { .. }, Outcome::Ok { rv: None, .. }) => {
            Err("a successful write must record the new resourceVersion".into())
        }
        (OpKind::Get, Outcome::Ok { rv, value }) if rv.is_none() || value.is_none() => {
            Err("a successful get must record the object's resourceVersion and value".into())
        }
        _ => Ok(Role::Required),
    }
}

/// Binds an unknown resourceVersion to `rv` if that is possible; whether `object` is at `rv`.
fn at_rv(object: &mut Present, floor: &mut Rv, rv: Rv) -> bool {
    match object.rv {
        Some(known) => known == rv,
        None if rv > *floor => {
            object.rv = Some(rv);
            *floor = rv;
            true
        }
        None => false,
    }
}

/// The state after `op` takes effect in `state`, or why it cannot take effect there. For an
/// optional operation, `Err` means it cannot take effect at this point (it may still never).
pub fn step(state: &State, op: &Op) -> Result<State, String> {
    let mut next = state.clone();
    let State { object, floor } = &mut next;
    let returned_value_is = |expected: &str| match &op.outcome {
        Outcome::Ok { value: Some(v), .. } if v != expected => Err(format!("returned {v:?}, not {expected:?}")),
        _ => Ok(()),
    };
    let new_rv = |rv: Rv, floor: Rv| {
        if rv > floor {
            Ok(rv)
        } else {
            Err(format!("new rv {rv} does not exceed the key's earlier rv {floor}"))
        }
    };
    match (&op.kind, &op.outcome) {
        (OpKind::Create { value }, Outcome::Ok { rv: Some(rv), .. }) => {
            if object.is_some() {
                return Err(format!("created, but the object exists ({state})"));
            }
            returned_value_is(value)?;
            *floor = new_rv(*rv, *floor)?;
            *object = Some(Present { rv: Some(*rv), value: value.clone() });
        }
        (OpKind::Create { value }, Outcome::Indeterminate) => {
            if object.is_some() {
                return Err(format!("cannot create: the object exists ({state})"));
            }
            *object = Some(Present { rv: None, value: value.clone() });
        }
        (OpKind::Create { .. }, Outcome::Fail { reason: FailReason::AlreadyExists }) => {
            if object.is_none() {
                return Err("AlreadyExists, but the object is absent".into());
            }
        }
        (OpKind::Update { value, expected_rv }, Outcome::Ok { rv: Some(rv), .. }) => {
            let Some(current) = object.as_mut() else {
                return Err("updated, but the object is absent".into());
            };
            if !at_rv(current, floor, *expected_rv) {
                return Err(format!("updated with expected rv {expected_rv}, but the object is {state}"));
            }
            returned_value_is(value)?;
            if *rv == *expected_rv && current.value == *value {
                // A no-op update: the server writes nothing and returns the object unchanged.
                return Ok(next);
            }
            *floor = new_rv(*rv, *floor)?;
            *current = Present { rv: Some(*rv), value: value.clone() };
        }
        (OpKind::Update { value, expected_rv }, Outcome::Indeterminate) => {
            let Some(current) = object.as_mut() else {
                return Err("cannot update: the object is absent".into());
            };
            if !at_rv(current, floor, *expected_rv) {
                return Err(format!("cannot update with expected rv {expected_rv}: the object is {state}"));
            }
            *current = Present { rv: None, value: value.clone() };
        }
        (OpKind::Update { expected_rv, .. }, Outcome::Fail { reason: FailReason::Conflict })
        | (OpKind::Delete { expected_rv: Some(expected_rv) }, Outcome::Fail { reason: FailReason::Conflict }) => {
            match object {
                None => return Err("Conflict, but the object is absent".into()),
                Some(Present { rv: Some(rv), .. }) if rv == expected_rv => {
                    return Err(format!("Conflict, but the object is at the expected rv {rv}"));
                }
                Some(_) => {}
            }
        }
        (
            OpKind::Update { .. } | OpKind::Delete { .. } | OpKind::Get,
            Outcome::Fail { reason: FailReason::NotFound },
        ) => {
            if object.is_some() {
                return Err(format!("NotFound, but the object is {state}"));
            }
        }
        (OpKind::Delete { expected_rv }, Outcome::Ok { rv, value }) => {
            let Some(current) = object.as_mut() else {
                return Err("deleted, but the object is absent".into());
            };
            if let Some(expected) = expected_rv {
                if !at_rv(current, floor, *expected) {
                    return Err(format!("deleted with expected rv {expected}, but the object is {state}"));
                }
            }
            if let Some(v) = value {
                if *v != current.value {
                    return Err(format!("deleted {v:?}, but the object is {state}"));
                }
            }
            // The returned rv is either the object's last one or the deletion revision.
            if let Some(rv) = rv {
                if current.rv != Some(*rv) {
                    *floor = new_rv(*rv, *floor)?;
                }
            }
            *object = None;
        }
        (OpKind::Delete { expected_rv }, Outcome::Indeterminate) => {
            let Some(current) = object.as_mut() else {
                return Err("cannot delete: the object is absent".into());
            };
            if let Some(expected) = expected_rv {
                if !at_rv(current, floor, *expected) {
                    return Err(format!("cannot delete with expected rv {expected}: the object is {state}"));
                }
            }
            *object = None;
        }
        (OpKind::Get, Outcome::Ok { rv: Some(rv), value: Some(value) }) => {
            let Some(current) = object.as_mut() else {
                return Err(format!("read {value:?} at rv {rv}, but the object is absent"));
            };
            if current.value != *value || !at_rv(current, floor, *rv) {
                return Err(format!("read {value:?} at rv {rv}, but the object is {state}"));
            }
        }
        (kind, outcome) => return Err(format!("{} cannot end in {outcome:?}", kind.name())),
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn op(kind: OpKind, outcome: Outcome) -> Op {
        Op { client: 0, key: "k".into(), kind, invoked_ns: 0, completed_ns: Some(1), outcome }
    }

    fn ok(rv: Rv, value: &str) -> Outcome {
        Outcome::Ok { rv: Some(rv), value: Some(value.into()) }
    }

    fn at(rv: Option<Rv>, value: &str, floor: Rv) -> State {
        State { object: Some(Present { rv, value: value.into() }), floor }
    }

    #[test]
    fn a_cas_takes_effect_only_at_the_expected_rv_and_must_raise_it() {
        let state = at(Some(5), "a", 5);
        let update = |expected_rv, outcome| op(OpKind::Update { value: "b".into(), expected_rv }, outcome);
        assert_eq!(step(&state, &update(5, ok(7, "b"))).unwrap(), at(Some(7), "b", 7));
        assert!(step(&state, &update(4, ok(7, "b"))).is_err());
        assert!(step(&state, &update(5, ok(5, "b"))).is_err(), "a changed value needs a new rv");
        let conflict = Outcome::Fail { reason: FailReason::Conflict };
        assert!(step(&state, &update(5, conflict.clone())).is_err());
        assert_eq!(step(&state, &update(4, conflict)).unwrap(), state);
    }

    #[test]
    fn an_update_to_the_same_value_may_keep_the_rv() {
        let state = at(Some(5), "a", 5);
        let same = op(OpKind::Update { value: "a".into(), expected_rv: 5 }, ok(5, "a"));
        assert_eq!(step(&state, &same).unwrap(), state);
    }

    #[test]
    fn an_indeterminate_write_leaves_an_unknown_rv_that_a_later_read_binds() {
        let state = at(Some(5), "a", 5);
        let lost = op(OpKind::Update { value: "b".into(), expected_rv: 5 }, Outcome::Indeterminate);
        let after = step(&state, &lost).unwrap();
        assert_eq!(after, at(None, "b", 5));
        assert!(step(&after, &op(OpKind::Get, ok(4, "b"))).is_err(), "rvs only rise");
        assert_eq!(step(&after, &op(OpKind::Get, ok(9, "b"))).unwrap(), at(Some(9), "b", 9));
        let cas = op(OpKind::Update { value: "c".into(), expected_rv: 8 }, ok(12, "c"));
        assert_eq!(step(&after, &cas).unwrap(), at(Some(12), "c", 12));
    }

    #[test]
    fn a_delete_may_return_the_last_rv_or_the_deletion_revision() {
        let state = at(Some(5), "a", 5);
        let delete = |rv| op(OpKind::Delete { expected_rv: Some(5) }, ok(rv, "a"));
        assert_eq!(step(&state, &delete(5)).unwrap(), State { object: None, floor: 5 });
        assert_eq!(step(&state, &delete(6)).unwrap(), State { object: None, floor: 6 });
        assert!(step(&state, &delete(3)).is_err());
        let absent = State { object: None, floor: 6 };
        let create = op(OpKind::Create { value: "x".into() }, ok(6, "x"));
        assert!(step(&absent, &create).is_err(), "a re-create gets a rv above the deletion");
    }

    #[test]
    fn unusable_records_are_told_apart_from_refusals() {
        let create = op(OpKind::Create { value: "x".into() }, Outcome::Ok { rv: None, value: None });
        assert!(role(&create).is_err());
        let other = op(OpKind::Get, Outcome::Fail { reason: FailReason::Other });
        assert_eq!(role(&other).unwrap(), Role::Ignored);
        let lost = Op { completed_ns: None, ..op(OpKind::Delete { expected_rv: None }, Outcome::Indeterminate) };
        assert_eq!(role(&lost).unwrap(), Role::Optional);
    }
}
