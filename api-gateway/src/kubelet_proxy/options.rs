//! The query parameters of the pod subresources the kubelet serves (`PodLogOptions`,
//! `PodExecOptions`, `PodAttachOptions`, `PodPortForwardOptions`), read as kube-apiserver's
//! parameter codec reads them, and written again for the kubelet as kube's `LogLocation` and
//! `streamParams` write them: only the options that are set, keys sorted (Go's
//! `url.Values.Encode`), booleans of the streams as `1` (the kubelet reads `stdin=1`, not
//! `stdin=true`, which is what kubectl sends).

use actix_web::web;
use actors::api_error::{FieldCause, Subject};
use actors::{ApiError, ApiResult};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The query as `(name, value)` pairs, percent-decoded, in order (400 if it cannot be read).
fn pairs(query: &str) -> ApiResult<Vec<(String, String)>> {
    web::Query::<Vec<(String, String)>>::from_query(query)
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// The first value of `name`, as kube's conversion of a query slice reads a scalar.
fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A boolean parameter as kube converts one: absent, `0`, `false` and `f` (any case) are
/// false; anything else, an empty value included, is true.
fn flag(pairs: &[(String, String)], name: &str) -> bool {
    match first(pairs, name) {
        None => false,
        Some(v) => !(v == "0" || v.eq_ignore_ascii_case("false") || v.eq_ignore_ascii_case("f")),
    }
}

/// An integer parameter; 400 with Go's words when it is not one.
fn integer(pairs: &[(String, String)], name: &str) -> ApiResult<Option<i64>> {
    match first(pairs, name) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))),
    }
}

/// `container`, when given and not empty.
fn container(pairs: &[(String, String)]) -> Option<String> {
    first(pairs, "container").filter(|c| !c.is_empty()).map(String::from)
}

/// Go's `url.QueryEscape`: unreserved characters kept, space as `+`, the rest `%XX`.
pub fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(byte)),
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// `key=value&...` with keys sorted and each key's values in order, as Go's
/// `url.Values.Encode` writes a query.
fn encode(mut params: Vec<(&str, String)>) -> String {
    // A stable sort keeps repeated keys (`command`) in their order.
    params.sort_by(|a, b| a.0.cmp(b.0));
    params.iter().map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v))).collect::<Vec<_>>().join("&")
}

/// `GET pods/{name}/log`'s options (kube's `PodLogOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub container: Option<String>,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    /// RFC 3339 in UTC, to the second, as Go's `time.RFC3339` formats it.
    pub since_time: Option<String>,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
    /// Accepted and without effect: the kubelet's serving certificate is never verified
    /// (see [`super::client`]), so there is nothing to skip.
    pub insecure_skip_tls_verify_backend: bool,
}

impl LogOptions {
    /// The options of `query` for pod `name`: 400 for a value that does not parse, 422
    /// (`PodLogOptions "name" is invalid`) for one kube's `ValidatePodLogOptions` refuses.
    pub fn parse(query: &str, name: &str) -> ApiResult<LogOptions> {
        let pairs = pairs(query)?;
        let since_time = match first(&pairs, "sinceTime") {
            None => None,
            Some(raw) => {
                let parsed = OffsetDateTime::parse(raw, &Rfc3339).map_err(|e| {
                    ApiError::BadRequest(format!("parsing time {raw:?} as \"2006-01-02T15:04:05Z07:00\": {e}"))
                })?;
                Some(go_rfc3339(parsed))
            }
        };
        let options = LogOptions {
            container: container(&pairs),
            follow: flag(&pairs, "follow"),
            previous: flag(&pairs, "previous"),
            timestamps: flag(&pairs, "timestamps"),
            since_seconds: integer(&pairs, "sinceSeconds")?,
            since_time,
            tail_lines: integer(&pairs, "tailLines")?,
            limit_bytes: integer(&pairs, "limitBytes")?,
            insecure_skip_tls_verify_backend: flag(&pairs, "insecureSkipTLSVerifyBackend"),
        };
        options.validate(name)?;
        Ok(options)
    }

    /// kube's `ValidatePodLogOptions`.
    fn validate(&self, name: &str) -> ApiResult<()> {
        let mut causes = Vec::new();
        if let Some(tail) = self.tail_lines.filter(|t| *t < 0) {
            causes.push(FieldCause::invalid_shown("tailLines", tail.to_string(), "must be greater than or equal to 0"));
        }
        if let Some(limit) = self.limit_bytes.filter(|l| *l < 1) {
            causes.push(FieldCause::invalid_shown("limitBytes", limit.to_string(), "must be greater than 0"));
        }
        match (self.since_seconds, &self.since_time) {
            (Some(_), Some(_)) => {
                causes.push(FieldCause::forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be specified"))
            }
            (Some(seconds), None) if seconds < 1 => {
                causes.push(FieldCause::invalid_shown("sinceSeconds", seconds.to_string(), "must be greater than 0"))
            }
            _ => {}
        }
        if causes.is_empty() {
            return Ok(());
        }
        let subject = Subject { group: "", resource: "pods", kind: "PodLogOptions", name: name.to_string() };
        Err(ApiError::Invalid { subject, causes })
    }

    /// The kubelet's `containerLogs` query, as kube's `LogLocation` writes it.
    pub fn kubelet_query(&self) -> String {
        let mut params = Vec::new();
        let mut set = |key, on: bool| {
            if on {
                params.push((key, "true".to_string()));
            }
        };
        set("follow", self.follow);
        set("previous", self.previous);
        set("timestamps", self.timestamps);
        let numbers =
            [("sinceSeconds", self.since_seconds), ("tailLines", self.tail_lines), ("limitBytes", self.limit_bytes)];
        for (key, value) in numbers {
            if let Some(value) = value {
                params.push((key, value.to_string()));
            }
        }
        if let Some(since) = &self.since_time {
            params.push(("sinceTime", since.clone()));
        }
        encode(params)
    }
}

/// `2006-01-02T15:04:05Z`: Go's `time.RFC3339` of a time in UTC (seconds only, as
/// `metav1.Time` keeps it).
fn go_rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The options of `exec`, `attach` (kube's `PodExecOptions`, `PodAttachOptions`) and
/// `portforward` (`PodPortForwardOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub container: Option<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    /// `exec` only.
    pub command: Vec<String>,
    /// `portforward` only.
    pub ports: Vec<i32>,
}

impl StreamOptions {
    /// The options of `query` for `subresource` (`exec`, `attach` or `portforward`); 400 for
    /// a port that is not a 32-bit integer.
    pub fn parse(subresource: &str, query: &str) -> ApiResult<StreamOptions> {
        let pairs = pairs(query)?;
        let mut options = StreamOptions::default();
        if subresource == "portforward" {
            for (_, value) in pairs.iter().filter(|(n, _)| n == "ports") {
                let port = value.parse::<i32>().map_err(|_| {
                    ApiError::BadRequest(format!("strconv.ParseInt: parsing {value:?}: invalid syntax"))
                })?;
                options.ports.push(port);
            }
            return Ok(options);
        }
        options.container = container(&pairs);
        options.stdin = flag(&pairs, "stdin");
        options.stdout = flag(&pairs, "stdout");
        options.stderr = flag(&pairs, "stderr");
        options.tty = flag(&pairs, "tty");
        if subresource == "exec" {
            options.command = pairs.iter().filter(|(n, _)| n == "command").map(|(_, v)| v.clone()).collect();
        }
        Ok(options)
    }

    /// The kubelet's query, as kube's `streamParams` writes it: the streams as `1`, the
    /// command's words in order, the ports joined by commas as `port`.
    pub fn kubelet_query(&self) -> String {
        let mut params = Vec::new();
        for (key, on) in [("stdin", self.stdin), ("stdout", self.stdout), ("stderr", self.stderr), ("tty", self.tty)] {
            if on {
                params.push((key, "1".to_string()));
            }
        }
        params.extend(self.command.iter().map(|word| ("command", word.clone())));
        if !self.ports.is_empty() {
            let ports: Vec<String> = self.ports.iter().map(i32::to_string).collect();
            params.push(("port", ports.join(",")));
        }
        encode(params)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn log_options_are_sent_on_as_kube_sends_them() {
        let query = "container=app&follow=true&previous=false&timestamps=1&tailLines=10&limitBytes=500\
                     &sinceTime=2024-05-06T07%3A08%3A09.5%2B02%3A00&insecureSkipTLSVerifyBackend=true&pretty=x";
        let options = LogOptions::parse(query, "web").unwrap();
        assert_eq!(options.container.as_deref(), Some("app"));
        assert!(options.follow && !options.previous && options.timestamps && options.insecure_skip_tls_verify_backend);
        assert_eq!(
            options.kubelet_query(),
            "follow=true&limitBytes=500&sinceTime=2024-05-06T05%3A08%3A09Z&tailLines=10&timestamps=true"
        );
        assert_eq!(LogOptions::parse("", "web").unwrap(), LogOptions::default());
        assert_eq!(LogOptions::default().kubelet_query(), "");
        let since = LogOptions::parse("sinceSeconds=60&previous=", "web").unwrap();
        assert_eq!(since.kubelet_query(), "previous=true&sinceSeconds=60");
    }

    #[test]
    fn bad_log_options_are_400_or_422_in_kubes_words() {
        let e = LogOptions::parse("tailLines=ten", "web").unwrap_err();
        assert_eq!((e.code(), e.to_string().as_str()), (400, r#"strconv.ParseInt: parsing "ten": invalid syntax"#));
        assert_eq!(LogOptions::parse("sinceTime=yesterday", "web").unwrap_err().code(), 400);
        let e = LogOptions::parse("tailLines=-1", "web").unwrap_err();
        assert_eq!(e.code(), 422);
        assert_eq!(
            e.to_string(),
            r#"PodLogOptions "web" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"#
        );
        assert_eq!(e.status()["details"]["kind"], "PodLogOptions");
        for query in ["limitBytes=0", "sinceSeconds=0", "sinceSeconds=5&sinceTime=2024-05-06T07:08:09Z"] {
            assert_eq!(LogOptions::parse(query, "web").unwrap_err().code(), 422, "{query}");
        }
    }

    #[test]
    fn stream_options_are_sent_on_with_ones_and_the_command_in_order() {
        let query =
            "command=sh&command=-c&command=echo+hi%26bye&container=app&stdin=true&stdout=true&tty=false&stderr=1";
        let exec = StreamOptions::parse("exec", query).unwrap();
        assert_eq!(exec.command, ["sh", "-c", "echo hi&bye"]);
        assert_eq!(exec.container.as_deref(), Some("app"));
        assert_eq!(exec.kubelet_query(), "command=sh&command=-c&command=echo+hi%26bye&stderr=1&stdin=1&stdout=1");
        let attach = StreamOptions::parse("attach", "stdin=true&tty=true&command=ignored").unwrap();
        assert_eq!(attach.kubelet_query(), "stdin=1&tty=1");
        let forward = StreamOptions::parse("portforward", "ports=8080&ports=9090").unwrap();
        assert_eq!(forward.kubelet_query(), "port=8080%2C9090");
        assert_eq!(StreamOptions::parse("portforward", "ports=http").unwrap_err().code(), 400);
    }
}
