//! `ApiError`: the failures of the Kubernetes API, one variant per `Status` reason, and the
//! `Status` body kube-apiserver sends for each.

use raft_store::StoreError;
use serde_json::{json, Value};

use crate::kinds::ResourceKind;

/// What an error is about: the resource (plural, with its group) and the object's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub group: &'static str,
    /// The plural resource name: `configmaps`.
    pub resource: &'static str,
    /// The Kind: `ConfigMap` (named in `Invalid` messages).
    pub kind: &'static str,
    pub name: String,
}

impl Subject {
    pub fn of(kind: &ResourceKind, name: impl Into<String>) -> Self {
        Subject { group: kind.group, resource: kind.resource, kind: kind.kind, name: name.into() }
    }

    /// `ConfigMap`, or `Deployment.apps` outside the core group: how `Invalid` messages name
    /// the kind.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// `configmaps`, or `deployments.apps` outside the core group, as kube-apiserver writes it.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// What is wrong with a field: kube-apiserver's `field.ErrorType`, which names the cause's
/// `reason` and starts its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CauseType {
    #[default]
    Invalid,
    Required,
    Duplicate,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    NotFound,
}

impl CauseType {
    /// The `reason` of a `details.causes` entry: `FieldValueInvalid`, ...
    pub fn reason(self) -> &'static str {
        match self {
            CauseType::Invalid => "FieldValueInvalid",
            CauseType::Required => "FieldValueRequired",
            CauseType::Duplicate => "FieldValueDuplicate",
            CauseType::NotSupported => "FieldValueNotSupported",
            CauseType::Forbidden => "FieldValueForbidden",
            CauseType::TooLong => "FieldValueTooLong",
            CauseType::TooMany => "FieldValueTooMany",
            CauseType::NotFound => "FieldValueNotFound",
        }
    }

    /// How its messages start: `Invalid value`, `Required value`, ...
    pub fn label(self) -> &'static str {
        match self {
            CauseType::Invalid => "Invalid value",
            CauseType::Required => "Required value",
            CauseType::Duplicate => "Duplicate value",
            CauseType::NotSupported => "Unsupported value",
            CauseType::Forbidden => "Forbidden",
            CauseType::TooLong => "Too long",
            CauseType::TooMany => "Too many",
            CauseType::NotFound => "Not found",
        }
    }
}

/// One field an `Invalid` error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldCause {
    /// The field path: `metadata.name`, `spec.containers[0].image`, `data[key]`.
    pub field: String,
    pub kind: CauseType,
    /// The offending value as kube-apiserver prints it (Go's `%q` for strings, `%v` for
    /// numbers, `map[string]string{...}` for maps); `None` where the message leaves it out.
    pub value: Option<String>,
    /// Why it is invalid (may be empty).
    pub detail: String,
}

impl FieldCause {
    /// `Invalid value: "value": detail`, for a string value.
    pub fn invalid(field: impl Into<String>, value: &str, detail: impl Into<String>) -> Self {
        Self::invalid_shown(field, format!("{value:?}"), detail)
    }

    /// `Invalid value: shown: detail`, for a value already printed as kube-apiserver does.
    pub fn invalid_shown(field: impl Into<String>, shown: String, detail: impl Into<String>) -> Self {
        FieldCause { field: field.into(), kind: CauseType::Invalid, value: Some(shown), detail: detail.into() }
    }

    /// `Required value`, and `: detail` if there is one.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldCause { field: field.into(), kind: CauseType::Required, value: None, detail: detail.into() }
    }

    /// `Forbidden: detail`.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldCause { field: field.into(), kind: CauseType::Forbidden, value: None, detail: detail.into() }
    }

    /// `Duplicate value: "value"`.
    pub fn duplicate(field: impl Into<String>, value: &str) -> Self {
        FieldCause {
            field: field.into(),
            kind: CauseType::Duplicate,
            value: Some(format!("{value:?}")),
            detail: "".into(),
        }
    }

    /// `Not found: "value"`.
    pub fn not_found(field: impl Into<String>, value: &str) -> Self {
        FieldCause {
            field: field.into(),
            kind: CauseType::NotFound,
            value: Some(format!("{value:?}")),
            detail: "".into(),
        }
    }

    /// `Unsupported value: "value": supported values: "a", "b"`.
    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let quoted: Vec<String> = supported.iter().map(|v| format!("{v:?}")).collect();
        let detail = if quoted.is_empty() { String::new() } else { format!("supported values: {}", quoted.join(", ")) };
        FieldCause { field: field.into(), kind: CauseType::NotSupported, value: Some(format!("{value:?}")), detail }
    }

    /// `Too long: must have at most N bytes`.
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        let detail = format!("must have at most {max} bytes");
        FieldCause { field: field.into(), kind: CauseType::TooLong, value: None, detail }
    }

    /// The message without the field, as kube-apiserver's `ErrorBody`:
    /// `Invalid value: "Bad_Name": a lowercase RFC 1123 ...`, `Required value`.
    pub fn message(&self) -> String {
        let mut message = self.kind.label().to_string();
        if let Some(value) = &self.value {
            message = format!("{message}: {value}");
        }
        if !self.detail.is_empty() {
            message = format!("{message}: {}", self.detail);
        }
        message
    }
}

/// A failed API request; each variant is one Kubernetes `Status` reason and HTTP code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request itself is wrong (undecodable body, mismatched names).
    #[error("{0}")]
    BadRequest(String),
    /// 403: the request is not allowed (new content in a namespace being terminated).
    #[error("{}", forbidden_message(.subject, .why))]
    Forbidden { subject: Subject, why: String, causes: Vec<Cause> },
    /// 404: the object does not exist.
    #[error("{} {:?} not found", .0.qualified_resource(), .0.name)]
    NotFound(Subject),
    /// 404: nothing is served at this path (the path is in the message).
    #[error("the server could not find the requested resource ({0})")]
    NotFoundPath(String),
    /// 409: create of a name that is taken.
    #[error("{} {:?} already exists", .0.qualified_resource(), .0.name)]
    AlreadyExists(Subject),
    /// 409: the object changed since the resourceVersion the client sent.
    #[error(
        "Operation cannot be fulfilled on {} {:?}: the object has been modified; please apply your changes to the latest version and try again",
        .0.qualified_resource(), .0.name
    )]
    Conflict(Subject),
    /// 409: a condition of the operation does not hold (a delete's preconditions), in
    /// kube-apiserver's words; `what` is the resource or Kind it names (`ConfigMap` for
    /// delete preconditions, `namespaces` for a namespace's).
    #[error("Operation cannot be fulfilled on {} {:?}: {}", qualified(.group, .what), .name, .why)]
    Unfulfilled { group: &'static str, what: &'static str, name: String, why: String },
    /// 409: a server-side apply sets fields other managers own, to other values.
    #[error("{}", apply_conflict_message(.conflicts))]
    ApplyConflict { subject: Subject, conflicts: Vec<ApplyConflict> },
    /// 422: the object fails validation.
    #[error("{} {:?} is invalid{}", .subject.qualified_kind(), .subject.name, invalid_summary(.causes))]
    Invalid { subject: Subject, causes: Vec<FieldCause> },
    /// 422: a patch that cannot be applied to the object (a failed JSON patch `test`, a
    /// path that does not exist).
    #[error("{0}")]
    InvalidPatch(String),
    /// 410 `Gone`: a watch's resourceVersion is older than what is kept.
    #[error("{0}")]
    Gone(String),
    /// 410 `Expired`: a list's continue token names a compacted revision.
    #[error("{0}")]
    Expired(String),
    /// 405: the verb is not served on this path.
    #[error("{0}")]
    MethodNotSupported(String),
    /// 413: the body is over the size limit.
    #[error("{0}")]
    RequestEntityTooLarge(String),
    /// 415: a body in an encoding not served (protobuf).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 500: a bug or corrupt data.
    #[error("{0}")]
    InternalError(String),
    /// 503: the store cannot answer now; retry.
    #[error("{0}")]
    ServiceUnavailable(String),
    /// 429: too many requests in flight; retry after a second.
    #[error("Too many requests, please try again later.")]
    TooManyRequests,
    /// 504: the request did not finish in its time (the `timeout` parameter, or 60 s).
    #[error("Timeout: request did not complete within requested timeout - context deadline exceeded")]
    Timeout,
    /// Any code and reason, as another party decided them: an admission webhook's refusal
    /// keeps the code and reason the webhook gave, as kube-apiserver passes it on.
    #[error("{message}")]
    Status { code: u16, reason: String, message: String, details: Option<Value> },
}

/// One `details.causes` entry of a `Status` that is not a field's invalid value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `NamespaceTerminating`, ...
    pub reason: &'static str,
    pub message: String,
    pub field: String,
}

/// `configmaps "x" is forbidden: why`, or `configmaps is forbidden: why` without a name.
fn forbidden_message(subject: &Subject, why: &str) -> String {
    match subject.name.as_str() {
        "" => format!("{} is forbidden: {why}", subject.qualified_resource()),
        name => format!("{} {name:?} is forbidden: {why}", subject.qualified_resource()),
    }
}

/// `what`, or `what.group` outside the core group.
fn qualified(group: &str, what: &str) -> String {
    match group {
        "" => what.to_string(),
        group => format!("{what}.{group}"),
    }
}

/// One field an apply would take from another manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyConflict {
    pub manager: String,
    /// The API version the other manager wrote with.
    pub api_version: String,
    /// The field: `.spec.replicas`.
    pub field: String,
}

impl ApplyConflict {
    fn with(&self) -> String {
        format!("{:?} using {}", self.manager, self.api_version)
    }
}

/// kube-apiserver's wording: `Apply failed with 1 conflict: conflict with "kubectl" using
/// apps/v1: .spec.replicas`.
fn apply_conflict_message(conflicts: &[ApplyConflict]) -> String {
    let n = conflicts.len();
    let mut by_manager: Vec<(String, Vec<&str>)> = Vec::new();
    for c in conflicts {
        match by_manager.iter_mut().find(|(m, _)| *m == c.with()) {
            Some((_, fields)) => fields.push(&c.field),
            None => by_manager.push((c.with(), vec![&c.field])),
        }
    }
    let parts: Vec<String> = by_manager
        .iter()
        .map(|(with, fields)| match fields.as_slice() {
            [one] => format!("conflict with {with}: {one}"),
            many => format!("conflicts with {with}:\n- {}", many.join("\n- ")),
        })
        .collect();
    format!("Apply failed with {n} conflict{}: {}", if n == 1 { "" } else { "s" }, parts.join("\n"))
}

fn invalid_summary(causes: &[FieldCause]) -> String {
    // As kube-apiserver's aggregate: repeated messages once, several in brackets.
    let mut parts: Vec<String> = Vec::new();
    for cause in causes {
        let part = format!("{}: {}", cause.field, cause.message());
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    match parts.len() {
        0 => String::new(),
        1 => format!(": {}", parts.concat()),
        _ => format!(": [{}]", parts.join(", ")),
    }
}

/// Result of an API operation.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Forbidden { .. } => 403,
            ApiError::NotFound(_) | ApiError::NotFoundPath(_) => 404,
            ApiError::AlreadyExists(_)
            | ApiError::Conflict(_)
            | ApiError::Unfulfilled { .. }
            | ApiError::ApplyConflict { .. } => 409,
            ApiError::Invalid { .. } | ApiError::InvalidPatch(_) => 422,
            ApiError::Gone(_) | ApiError::Expired(_) => 410,
            ApiError::MethodNotSupported(_) => 405,
            ApiError::RequestEntityTooLarge(_) => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::InternalError(_) => 500,
            ApiError::ServiceUnavailable(_) => 503,
            ApiError::TooManyRequests => 429,
            ApiError::Timeout => 504,
            ApiError::Status { code, .. } => *code,
        }
    }

    /// The `Status` reason.
    pub fn reason(&self) -> &str {
        match self {
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::NotFound(_) | ApiError::NotFoundPath(_) => "NotFound",
            ApiError::AlreadyExists(_) => "AlreadyExists",
            ApiError::Conflict(_) | ApiError::Unfulfilled { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } | ApiError::InvalidPatch(_) => "Invalid",
            ApiError::Gone(_) => "Gone",
            ApiError::Expired(_) => "Expired",
            ApiError::MethodNotSupported(_) => "MethodNotAllowed",
            ApiError::RequestEntityTooLarge(_) => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::InternalError(_) => "InternalError",
            ApiError::ServiceUnavailable(_) => "ServiceUnavailable",
            ApiError::TooManyRequests => "TooManyRequests",
            ApiError::Timeout => "Timeout",
            ApiError::Status { reason, .. } => reason,
        }
    }

    /// The `Status` object kube-apiserver would send.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            ApiError::NotFound(s) | ApiError::AlreadyExists(s) | ApiError::Conflict(s) => {
                Some(json!({"name": s.name, "group": s.group, "kind": s.resource}))
            }
            ApiError::Unfulfilled { group, what, name, .. } => {
                Some(json!({"name": name, "group": group, "kind": what}))
            }
            ApiError::Forbidden { subject: s, causes, .. } => {
                let mut details = json!({"name": s.name, "group": s.group, "kind": s.resource});
                if !causes.is_empty() {
                    let causes: Vec<Value> = causes
                        .iter()
                        .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                        .collect();
                    details["causes"] = json!(causes);
                }
                Some(details)
            }
            ApiError::ApplyConflict { subject: s, conflicts } => {
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|c| {
                        json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", c.with()), "field": c.field})
                    })
                    .collect();
                Some(json!({"name": s.name, "group": s.group, "kind": s.resource, "causes": causes}))
            }
            ApiError::Invalid { subject: s, causes } => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|c| json!({"reason": c.kind.reason(), "message": c.message(), "field": c.field}))
                    .collect();
                Some(json!({"name": s.name, "group": s.group, "kind": s.kind, "causes": causes}))
            }
            ApiError::TooManyRequests => Some(json!({"retryAfterSeconds": 1})),
            ApiError::Timeout => Some(json!({})),
            ApiError::Status { details, .. } => details.clone(),
            _ => None,
        };
        if let Some(details) = details {
            status["details"] = details;
        }
        status
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_)
            | StoreError::NotLeader { .. }
            | StoreError::Indeterminate(_)
            | StoreError::Fenced { .. } => ApiError::ServiceUnavailable(e.to_string()),
            StoreError::Compacted { .. } => ApiError::Expired(e.to_string()),
            _ => ApiError::InternalError(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::find;

    fn cm(name: &str) -> Subject {
        Subject::of(find("", "v1", "configmaps").unwrap(), name)
    }

    #[test]
    fn messages_read_as_kube_apiserver_writes_them() {
        assert_eq!(ApiError::NotFound(cm("x")).to_string(), r#"configmaps "x" not found"#);
        assert_eq!(ApiError::AlreadyExists(cm("x")).to_string(), r#"configmaps "x" already exists"#);
        assert_eq!(
            ApiError::Conflict(cm("x")).to_string(),
            r#"Operation cannot be fulfilled on configmaps "x": the object has been modified; please apply your changes to the latest version and try again"#
        );
        let deploy = Subject::of(find("apps", "v1", "deployments").unwrap(), "web");
        assert_eq!(ApiError::NotFound(deploy).to_string(), r#"deployments.apps "web" not found"#);
    }

    #[test]
    fn each_variant_has_its_code_and_reason() {
        let cases = [
            (ApiError::BadRequest("b".into()), 400, "BadRequest"),
            (ApiError::NotFound(cm("x")), 404, "NotFound"),
            (ApiError::AlreadyExists(cm("x")), 409, "AlreadyExists"),
            (ApiError::Conflict(cm("x")), 409, "Conflict"),
            (
                ApiError::Unfulfilled { group: "", what: "ConfigMap", name: "x".into(), why: "w".into() },
                409,
                "Conflict",
            ),
            (ApiError::Forbidden { subject: cm("x"), why: "w".into(), causes: vec![] }, 403, "Forbidden"),
            (ApiError::Invalid { subject: cm("x"), causes: vec![] }, 422, "Invalid"),
            (ApiError::InvalidPatch("p".into()), 422, "Invalid"),
            (ApiError::Gone("g".into()), 410, "Gone"),
            (ApiError::Expired("e".into()), 410, "Expired"),
            (ApiError::MethodNotSupported("m".into()), 405, "MethodNotAllowed"),
            (ApiError::RequestEntityTooLarge("t".into()), 413, "RequestEntityTooLarge"),
            (ApiError::NotFoundPath("/x".into()), 404, "NotFound"),
            (ApiError::UnsupportedMediaType("p".into()), 415, "UnsupportedMediaType"),
            (ApiError::InternalError("i".into()), 500, "InternalError"),
            (ApiError::ServiceUnavailable("u".into()), 503, "ServiceUnavailable"),
            (ApiError::TooManyRequests, 429, "TooManyRequests"),
            (ApiError::Timeout, 504, "Timeout"),
            (
                ApiError::Status { code: 422, reason: "Invalid".into(), message: "m".into(), details: None },
                422,
                "Invalid",
            ),
        ];
        for (error, code, reason) in cases {
            assert_eq!((error.code(), error.reason()), (code, reason));
            let status = error.status();
            assert_eq!((status["kind"].as_str(), status["status"].as_str()), (Some("Status"), Some("Failure")));
            assert_eq!((status["code"].as_u64(), status["reason"].as_str()), (Some(code as u64), Some(reason)));
        }
    }

    #[test]
    fn apply_conflicts_list_each_field_by_manager() {
        let conflict = |manager: &str, field: &str| ApplyConflict {
            manager: manager.into(),
            api_version: "apps/v1".into(),
            field: field.into(),
        };
        let one = ApiError::ApplyConflict { subject: cm("x"), conflicts: vec![conflict("kubectl", ".spec.replicas")] };
        assert_eq!(
            one.to_string(),
            r#"Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas"#
        );
        assert_eq!((one.code(), one.reason()), (409, "Conflict"));
        assert_eq!(one.status()["details"]["causes"][0]["reason"], "FieldManagerConflict");
        let two =
            ApiError::ApplyConflict { subject: cm("x"), conflicts: vec![conflict("a", ".x"), conflict("a", ".y")] };
        assert_eq!(two.to_string(), "Apply failed with 2 conflicts: conflicts with \"a\" using apps/v1:\n- .x\n- .y");
    }

    #[test]
    fn status_details_name_the_object_and_invalid_fields() {
        let status = ApiError::NotFound(cm("x")).status();
        assert_eq!(status["details"], json!({"name": "x", "group": "", "kind": "configmaps"}));
        let cause = FieldCause::invalid("metadata.name", "Bad_Name", "bad");
        let invalid = ApiError::Invalid { subject: cm("Bad_Name"), causes: vec![cause] };
        assert_eq!(
            invalid.to_string(),
            r#"ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": bad"#
        );
        let status = invalid.status();
        assert_eq!(status["details"]["kind"], "ConfigMap");
        assert_eq!(
            status["details"]["causes"],
            json!([{"reason": "FieldValueInvalid", "message": r#"Invalid value: "Bad_Name": bad"#, "field": "metadata.name"}])
        );
    }

    #[test]
    fn unfulfilled_and_forbidden_read_as_kube_apiserver_writes_them() {
        let deploy = ApiError::Unfulfilled { group: "apps", what: "Deployment", name: "web".into(), why: "w".into() };
        assert_eq!(deploy.to_string(), r#"Operation cannot be fulfilled on Deployment.apps "web": w"#);
        assert_eq!(deploy.status()["details"], json!({"name": "web", "group": "apps", "kind": "Deployment"}));
        let cause = Cause { reason: "NamespaceTerminating", message: "m".into(), field: "metadata.namespace".into() };
        let forbidden = ApiError::Forbidden { subject: cm("x"), why: "no".into(), causes: vec![cause] };
        assert_eq!(forbidden.to_string(), r#"configmaps "x" is forbidden: no"#);
        assert_eq!(forbidden.status()["details"]["causes"][0]["reason"], "NamespaceTerminating");
        let nameless = ApiError::Forbidden { subject: cm(""), why: "no".into(), causes: vec![] };
        assert_eq!(nameless.to_string(), "configmaps is forbidden: no");
    }

    #[test]
    fn invalid_causes_read_as_kube_field_errors() {
        let deploy = Subject::of(find("apps", "v1", "deployments").unwrap(), "web");
        let causes = vec![
            FieldCause::required("spec.selector", ""),
            FieldCause::invalid_shown("spec.replicas", "-1".into(), "must be greater than or equal to 0"),
            FieldCause::duplicate("spec.template.spec.containers[1].name", "web"),
            FieldCause::not_supported("spec.strategy.type", "Fast", &["Recreate", "RollingUpdate"]),
            FieldCause::forbidden("data", "field is immutable when `immutable` is set"),
            FieldCause::too_long("metadata.annotations", 262144),
            FieldCause::not_found("spec.containers[0].volumeMounts[0].name", "data"),
            FieldCause::required("spec.selector", ""),
        ];
        let invalid = ApiError::Invalid { subject: deploy.clone(), causes };
        assert_eq!(
            invalid.to_string(),
            concat!(
                r#"Deployment.apps "web" is invalid: [spec.selector: Required value, "#,
                r#"spec.replicas: Invalid value: -1: must be greater than or equal to 0, "#,
                r#"spec.template.spec.containers[1].name: Duplicate value: "web", "#,
                r#"spec.strategy.type: Unsupported value: "Fast": supported values: "Recreate", "RollingUpdate", "#,
                "data: Forbidden: field is immutable when `immutable` is set, ",
                "metadata.annotations: Too long: must have at most 262144 bytes, ",
                r#"spec.containers[0].volumeMounts[0].name: Not found: "data"]"#,
            )
        );
        let status = invalid.status();
        assert_eq!(
            (status["details"]["kind"].as_str(), status["details"]["group"].as_str()),
            (Some("Deployment"), Some("apps"))
        );
        let reasons: Vec<&str> =
            status["details"]["causes"].as_array().unwrap().iter().map(|c| c["reason"].as_str().unwrap()).collect();
        assert_eq!(
            reasons[..7],
            [
                "FieldValueRequired",
                "FieldValueInvalid",
                "FieldValueDuplicate",
                "FieldValueNotSupported",
                "FieldValueForbidden",
                "FieldValueTooLong",
                "FieldValueNotFound"
            ]
        );
        assert_eq!(status["details"]["causes"][0]["message"], "Required value");
        let bare = ApiError::Invalid { subject: deploy, causes: vec![] };
        assert_eq!(bare.to_string(), r#"Deployment.apps "web" is invalid"#);
    }

    #[test]
    fn store_errors_map_to_retryable_or_expired_or_internal() {
        assert_eq!(ApiError::from(StoreError::Unavailable("x".into())).code(), 503);
        assert_eq!(ApiError::from(StoreError::Compacted { requested: 1, compacted: 5 }).reason(), "Expired");
        assert_eq!(ApiError::from(StoreError::Storage("x".into())).code(), 500);
    }
}
