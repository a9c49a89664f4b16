//! Label selectors (`labelSelector=`: equality- and set-based, as `labels.Parse` reads them)
//! and field selectors (`fieldSelector=`: `metadata.name` and `metadata.namespace` only, the
//! fields metrics-server matches on).

use std::collections::BTreeMap;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Exists(String),
    DoesNotExist(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

/// A parsed label selector; the empty one matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// Parses `text`; the error says which requirement is wrong.
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        for term in split_top_level(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            requirements.push(requirement(term).map_err(|e| format!("unable to parse requirement: {e}"))?);
        }
        Ok(LabelSelector(requirements))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            // As in Kubernetes: a missing label is "not equal".
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::GreaterThan(k, n) => labels.get(k).and_then(|l| l.parse::<i64>().ok()).is_some_and(|l| l > *n),
            Requirement::LessThan(k, n) => labels.get(k).and_then(|l| l.parse::<i64>().ok()).is_some_and(|l| l < *n),
        })
    }
}

/// Splits on commas outside parentheses (`a in (x,y),b` is two terms).
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut terms, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

fn requirement(term: &str) -> Result<Requirement, String> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(key_of(key)?));
    }
    if let Some(open) = term.find('(') {
        let close = term.rfind(')').filter(|c| *c > open && term[c + 1..].trim().is_empty());
        let close = close.ok_or_else(|| format!("{term:?}: expected a closing parenthesis"))?;
        let values: Vec<String> = term[open + 1..close].split(',').map(|v| v.trim().to_string()).collect();
        for value in &values {
            value_of(value)?;
        }
        let head: Vec<&str> = term[..open].split_whitespace().collect();
        return match head.as_slice() {
            [key, "in"] => Ok(Requirement::In(key_of(key)?, values)),
            [key, "notin"] => Ok(Requirement::NotIn(key_of(key)?, values)),
            _ => Err(format!("{term:?}: expected 'in' or 'notin' before the values")),
        };
    }
    for (op, make) in [
        ("!=", Requirement::NotEquals as fn(String, String) -> Requirement),
        ("==", Requirement::Equals),
        ("=", Requirement::Equals),
    ] {
        if let Some((key, value)) = term.split_once(op) {
            return Ok(make(key_of(key)?, value_of(value.trim())?));
        }
    }
    for (op, make) in [(">", Requirement::GreaterThan as fn(String, i64) -> Requirement), ("<", Requirement::LessThan)]
    {
        if let Some((key, value)) = term.split_once(op) {
            let n = value.trim().parse::<i64>().map_err(|_| format!("{term:?}: {op} needs an integer"))?;
            return Ok(make(key_of(key)?, n));
        }
    }
    Ok(Requirement::Exists(key_of(term)?))
}

/// A label key: `[prefix/]name`, name of alphanumerics, `-`, `_`, `.`.
fn key_of(key: &str) -> Result<String, String> {
    let key = key.trim();
    let name = key.rsplit_once('/').map_or(key, |(_, name)| name);
    let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if !valid(key) || name.is_empty() || name.len() > 63 {
        return Err(format!("{key:?}: invalid label key"));
    }
    Ok(key.to_string())
}

fn value_of(value: &str) -> Result<String, String> {
    if value.len() > 63 || !value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(format!("{value:?}: invalid label value"));
    }
    Ok(value.to_string())
}

/// A parsed field selector over `metadata.name` and `metadata.namespace`; other fields read
/// as empty, as metrics-server's field sets have only those two.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(text: &str) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, true, v)
            } else {
                return Err(format!("invalid selector: '{text}'; can't understand '{term}'"));
            };
            terms.push((field.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(terms))
    }

    pub fn matches(&self, namespace: &str, name: &str) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let actual = match field.as_str() {
                "metadata.name" => name,
                "metadata.namespace" => namespace,
                _ => "",
            };
            (actual == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn equality_and_set_requirements_match_as_in_kubernetes() {
        let web = labels(&[("app", "web"), ("tier", "front"), ("rank", "3")]);
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app=db", false),
            ("missing!=x", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app in (web, db)", true),
            ("app notin (web,db)", false),
            ("missing notin (a)", true),
            ("app=web,tier in (front)", true),
            ("app=web,tier=back", false),
            ("rank>2,rank<4", true),
            ("kubernetes.io/hostname=n1", false),
        ];
        for (text, want) in cases {
            assert_eq!(LabelSelector::parse(text).unwrap().matches(&web), want, "{text}");
        }
    }

    #[test]
    fn malformed_selectors_are_refused() {
        for text in ["app in (web", "app=we b", "=web", "app between (a)", "rank>x"] {
            let err = LabelSelector::parse(text).unwrap_err();
            assert!(err.starts_with("unable to parse requirement"), "{text}: {err}");
        }
    }

    #[test]
    fn field_selectors_read_name_and_namespace() {
        let s = FieldSelector::parse("metadata.name=web,metadata.namespace!=kube-system").unwrap();
        assert!(s.matches("default", "web"));
        assert!(!s.matches("kube-system", "web"));
        assert!(!FieldSelector::parse("spec.nodeName=n1").unwrap().matches("default", "web"));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
