//! Functions of kube-apiserver's CEL libraries that the `cel` crate lacks: the lists library
//! (`sum`, `min`, `max`, `isSorted`, `indexOf`, `lastIndexOf`) and the regex library
//! (`find`, `findAll`).

use std::cmp::Ordering;
use std::sync::Arc;

use cel::common::types::{DYN_TYPE, INT_TYPE, LIST_TYPE, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError, Value};

/// Registers the functions on `env`.
pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_member_overload("sum", "list_sum", LIST_TYPE, vec![], sum)?;
    env.add_member_overload("min", "list_min", LIST_TYPE, vec![], min)?;
    env.add_member_overload("max", "list_max", LIST_TYPE, vec![], max)?;
    env.add_member_overload("isSorted", "list_is_sorted", LIST_TYPE, vec![], is_sorted)?;
    env.add_member_overload("indexOf", "list_index_of", LIST_TYPE, vec![DYN_TYPE], index_of)?;
    env.add_member_overload("lastIndexOf", "list_last_index_of", LIST_TYPE, vec![DYN_TYPE], last_index_of)?;
    env.add_member_overload("find", "string_find", STRING_TYPE, vec![STRING_TYPE], find)?;
    env.add_member_overload("findAll", "string_find_all", STRING_TYPE, vec![STRING_TYPE], find_all)?;
    env.add_member_overload("findAll", "string_find_all_n", STRING_TYPE, vec![STRING_TYPE, INT_TYPE], find_all_n)?;
    Ok(())
}

/// The arguments as plain values.
fn values(args: &[CowVal<'_, '_>]) -> Result<Vec<Value>, ExecutionError> {
    args.iter().map(|a| Value::try_from(a.as_ref())).collect()
}

/// A result handed back to the interpreter.
fn owned<'b, 'v>(value: Value) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let boxed: Box<dyn Val> = value.try_into()?;
    Ok(CowVal::Owned(boxed))
}

/// The receiver's elements.
fn elements(args: &[Value], function: &str) -> Result<Arc<Vec<Value>>, ExecutionError> {
    match args.first() {
        Some(Value::List(items)) => Ok(Arc::clone(items)),
        _ => Err(ExecutionError::function_error(function, "receiver is not a list")),
    }
}

/// The order of two comparable elements (numbers across types, strings, booleans).
fn compare(a: &Value, b: &Value, function: &str) -> Result<Ordering, ExecutionError> {
    let number = |v: &Value| match v {
        Value::Int(i) => Some(*i as f64),
        Value::UInt(u) => Some(*u as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    };
    let order = match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::UInt(x), Value::UInt(y)) => Some(x.cmp(y)),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Bytes(x), Value::Bytes(y)) => Some(x.cmp(y)),
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => None,
        },
    };
    order.ok_or_else(|| ExecutionError::function_error(function, "elements are not comparable"))
}

fn sum<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = elements(&values(&args)?, "sum")?;
    let total = items.iter().try_fold(Value::Int(0), |acc, item| match (acc, item) {
        (Value::Int(a), Value::Int(b)) => {
            a.checked_add(*b).map(Value::Int).ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))
        }
        (Value::Int(0), Value::UInt(b)) => Ok(Value::UInt(*b)),
        (Value::UInt(a), Value::UInt(b)) => {
            a.checked_add(*b).map(Value::UInt).ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))
        }
        (Value::Int(a), Value::Float(b)) => Ok(Value::Float(a as f64 + b)),
        (Value::Float(a), Value::Float(b)) => Ok(Value::Float(a + b)),
        (Value::Float(a), Value::Int(b)) => Ok(Value::Float(a + *b as f64)),
        _ => Err(ExecutionError::function_error("sum", "elements are not numbers")),
    })?;
    owned(total)
}

/// The least (or, `greatest`, the greatest) element; an error for an empty list.
fn extreme<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
    greatest: bool,
    function: &str,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = elements(&values(&args)?, function)?;
    let mut best: Option<&Value> = None;
    for item in items.iter() {
        best = match best {
            None => Some(item),
            Some(b) => {
                let order = compare(item, b, function)?;
                if (greatest && order == Ordering::Greater) || (!greatest && order == Ordering::Less) {
                    Some(item)
                } else {
                    Some(b)
                }
            }
        };
    }
    let best =
        best.ok_or_else(|| ExecutionError::function_error(function, format!("{function} called on empty list")))?;
    owned(best.clone())
}

fn min<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme(args, false, "min")
}

fn max<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme(args, true, "max")
}

fn is_sorted<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = elements(&values(&args)?, "isSorted")?;
    for pair in items.windows(2) {
        if compare(&pair[0], &pair[1], "isSorted")? == Ordering::Greater {
            return owned(Value::Bool(false));
        }
    }
    owned(Value::Bool(true))
}

/// The index of the first (or, `last`, the last) element equal to the argument, or -1.
fn position<'b, 'v>(args: Vec<CowVal<'b, 'v>>, last: bool, function: &str) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let args = values(&args)?;
    let items = elements(&args, function)?;
    let wanted = args.get(1).ok_or_else(|| ExecutionError::invalid_argument_count(1, 0))?;
    let found = if last { items.iter().rposition(|v| v == wanted) } else { items.iter().position(|v| v == wanted) };
    owned(Value::Int(found.map_or(-1, |i| i64::try_from(i).unwrap_or(i64::MAX))))
}

fn index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    position(args, false, "indexOf")
}

fn last_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    position(args, true, "lastIndexOf")
}

/// The receiver and the compiled regex argument.
fn text_and_regex(args: &[Value], function: &str) -> Result<(Arc<String>, regex::Regex), ExecutionError> {
    match (args.first(), args.get(1)) {
        (Some(Value::String(text)), Some(Value::String(pattern))) => {
            let re = regex::Regex::new(pattern).map_err(|e| ExecutionError::function_error(function, e))?;
            Ok((Arc::clone(text), re))
        }
        _ => Err(ExecutionError::function_error(function, "expects a string and a regex")),
    }
}

/// The first match of the regex, or `''`.
fn find<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (text, re) = text_and_regex(&values(&args)?, "find")?;
    let found = re.find(&text).map(|m| m.as_str().to_string()).unwrap_or_default();
    owned(Value::String(Arc::new(found)))
}

/// Every match of the regex, at most `limit` of them when one is given (and not negative).
fn all_matches<'b, 'v>(args: Vec<CowVal<'b, 'v>>, limit: Option<i64>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (text, re) = text_and_regex(&values(&args)?, "findAll")?;
    let limit = limit.and_then(|l| usize::try_from(l).ok()).unwrap_or(usize::MAX);
    let found: Vec<Value> =
        re.find_iter(&text).take(limit).map(|m| Value::String(Arc::new(m.as_str().to_string()))).collect();
    owned(Value::List(Arc::new(found)))
}

fn find_all<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    all_matches(args, None)
}

fn find_all_n<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let limit = match args.get(2).map(|a| Value::try_from(a.as_ref())) {
        Some(Ok(Value::Int(n))) => Some(n),
        _ => None,
    };
    all_matches(args, limit)
}
