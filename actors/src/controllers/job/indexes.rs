//! Completion indexes of Indexed Jobs: `status.completedIndexes` as kube writes it
//! (`1,3-5,7`), and a pod's index from its `batch.kubernetes.io/job-completion-index`
//! annotation.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::controllers::pods::annotation;

/// The annotation (and label) with a pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// The index of `pod` if it has a valid one below `completions`.
pub fn of_pod(pod: &Value, completions: i64) -> Option<i64> {
    let text = annotation(pod, COMPLETION_INDEX)?;
    // kube's `getCompletionIndex`: a plain decimal number, no sign, no leading `+`.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>().ok().filter(|ix| *ix < completions)
}

/// Parses `completedIndexes`; invalid parts and indexes at or above `completions` are
/// dropped (kube's `parseIndexesFromString`).
pub fn parse(text: &str, completions: i64) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i64>(), b.parse::<i64>()),
            None => (part.parse::<i64>(), part.parse::<i64>()),
        };
        let (Ok(first), Ok(last)) = (first, last) else { continue };
        let last = last.min(completions - 1);
        if first < 0 || first > last {
            continue;
        }
        out.extend(first..=last);
    }
    out
}

/// Formats indexes as kube: ascending, runs of three or more as `a-b`, pairs as `a,b`.
pub fn format(indexes: &BTreeSet<i64>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        match last - first {
            0 => parts.push(first.to_string()),
            1 => {
                parts.push(first.to_string());
                parts.push(last.to_string());
            }
            _ => parts.push(format!("{first}-{last}")),
        }
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn indexes_format_runs_as_ranges_and_parse_back() {
        let set: BTreeSet<i64> = [0, 1, 3, 4, 5, 7].into_iter().collect();
        assert_eq!(format(&set), "0,1,3-5,7");
        assert_eq!(parse("0,1,3-5,7", 10), set);
        assert_eq!(format(&BTreeSet::new()), "");
        assert_eq!(parse("2-9,x,5-1", 4), [2, 3].into_iter().collect());
    }

    #[test]
    fn a_pods_index_is_its_annotation_below_the_completions() {
        let pod = |ix: &str| json!({"metadata": {"annotations": {COMPLETION_INDEX: ix}}});
        assert_eq!(of_pod(&pod("2"), 3), Some(2));
        assert_eq!(of_pod(&pod("3"), 3), None);
        assert_eq!(of_pod(&pod("-1"), 3), None);
        assert_eq!(of_pod(&pod("+1"), 3), None);
        assert_eq!(of_pod(&json!({}), 3), None);
    }
}
