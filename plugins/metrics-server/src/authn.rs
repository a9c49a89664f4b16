//! Request-header authentication, as extension API servers do it: a connection whose client
//! certificate chains to the request-header CA (checked in the TLS handshake) and names an
//! allowed common name may say who the caller is in `X-Remote-User`, `X-Remote-Group` and
//! `X-Remote-Extra-*`. Requests without such a certificate, or without a user header, are
//! anonymous; a verified certificate with a name not allowed is refused (401).

use std::any::Any;
use std::collections::BTreeMap;

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::Extensions;
use actix_web::http::header::HeaderMap;
use actix_web::HttpRequest;
use serde_json::Value;

pub const ANONYMOUS: &str = "system:anonymous";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";

/// Whom requests are from, and how to trust the front proxy (the ConfigMap's
/// `requestheader-*` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// The CA that signs front-proxy client certificates, PEM.
    pub client_ca_pem: String,
    /// Common names a front proxy may have; empty: any the CA signed.
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_headers_prefix: Vec<String>,
}

impl RequestHeader {
    /// With kube's header names.
    pub fn new(client_ca_pem: String, allowed_names: Vec<String>) -> RequestHeader {
        RequestHeader {
            client_ca_pem,
            allowed_names,
            username_headers: vec!["X-Remote-User".into()],
            group_headers: vec!["X-Remote-Group".into()],
            extra_headers_prefix: vec!["X-Remote-Extra-".into()],
        }
    }

    /// From the `kube-system/extension-apiserver-authentication` ConfigMap; `None` while it
    /// has no request-header CA.
    pub fn from_config_map(cm: &Value) -> Option<RequestHeader> {
        let data = cm.get("data")?;
        let ca = data.get("requestheader-client-ca-file").and_then(Value::as_str).filter(|ca| !ca.trim().is_empty())?;
        // The list values are JSON arrays of strings.
        let list = |key: &str, default: &[&str]| -> Vec<String> {
            data.get(key)
                .and_then(Value::as_str)
                .and_then(|text| serde_json::from_str::<Vec<String>>(text).ok())
                .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
        };
        Some(RequestHeader {
            client_ca_pem: ca.to_string(),
            allowed_names: list("requestheader-allowed-names", &[]),
            username_headers: list("requestheader-username-headers", &["X-Remote-User"]),
            group_headers: list("requestheader-group-headers", &["X-Remote-Group"]),
            extra_headers_prefix: list("requestheader-extra-headers-prefix", &["X-Remote-Extra-"]),
        })
    }
}

/// The common name of the client certificate the TLS handshake verified.
#[derive(Debug, Clone)]
pub struct PeerName(pub String);

/// `HttpServer::on_connect`: records the verified client certificate's common name.
pub fn on_connect(conn: &dyn Any, extensions: &mut Extensions) {
    let Some(tls) = conn.downcast_ref::<TlsStream<actix_rt::net::TcpStream>>() else { return };
    let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first()) else { return };
    match x509_parser::parse_x509_certificate(leaf) {
        Ok((_, cert)) => {
            let name = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or_default();
            extensions.insert(PeerName(name.to_string()));
        }
        Err(e) => tracing::warn!("unreadable client certificate: {e}"),
    }
}

/// Who makes a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    pub fn anonymous() -> User {
        User { name: ANONYMOUS.into(), groups: vec![UNAUTHENTICATED.into()], extra: BTreeMap::new() }
    }
}

/// The caller of `req`; `Err` (401) when the certificate is not an allowed front proxy.
pub fn authenticate(req: &HttpRequest, config: &RequestHeader) -> Result<User, String> {
    let peer = req.conn_data::<PeerName>().map(|p| p.0.as_str());
    identify(peer, req.headers(), config)
}

/// The caller, from the verified certificate's common name (`peer`) and the headers.
pub fn identify(peer: Option<&str>, headers: &HeaderMap, config: &RequestHeader) -> Result<User, String> {
    let Some(peer) = peer else { return Ok(User::anonymous()) };
    if !config.allowed_names.is_empty() && !config.allowed_names.iter().any(|n| n == peer) {
        return Err(format!("x509: subject with cn={peer} is not in the allowed list"));
    }
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    };
    let Some(name) = config.username_headers.iter().find_map(|h| values(h).into_iter().next()) else {
        return Ok(User::anonymous());
    };
    let groups = config.group_headers.iter().flat_map(|h| values(h)).collect();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (header, value) in headers.iter() {
        let header = header.as_str();
        for prefix in &config.extra_headers_prefix {
            let Some(key) = header.get(..prefix.len()).filter(|p| p.eq_ignore_ascii_case(prefix)) else { continue };
            let key = unescape(&header[key.len()..]).to_lowercase();
            if let Ok(value) = value.to_str() {
                extra.entry(key).or_default().push(value.to_string());
            }
        }
    }
    Ok(User { name, groups, extra })
}

/// Percent-decoding of extra keys (kube escapes them to fit in a header name).
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b))) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use actix_web::test::TestRequest;
    use serde_json::json;

    use super::*;

    fn config() -> RequestHeader {
        RequestHeader::new("CA".into(), vec!["front-proxy-client".into()])
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut req = TestRequest::get();
        for (name, value) in pairs {
            req = req.append_header((*name, *value));
        }
        req.to_http_request().headers().clone()
    }

    #[test]
    fn the_config_map_names_the_ca_and_the_headers() {
        let cm = json!({"data": {
            "requestheader-client-ca-file": "PEM",
            "requestheader-allowed-names": "[\"front-proxy-client\"]",
            "requestheader-username-headers": "[\"X-Remote-User\"]",
        }});
        let config = RequestHeader::from_config_map(&cm).unwrap();
        assert_eq!(config.allowed_names, ["front-proxy-client"]);
        assert_eq!(config.group_headers, ["X-Remote-Group"], "defaulted");
        assert_eq!(RequestHeader::from_config_map(&json!({"data": {"client-ca-file": "PEM"}})), None);
    }

    #[test]
    fn the_front_proxy_says_who_the_caller_is() {
        let sent = headers(&[
            ("X-Remote-User", "jane"),
            ("X-Remote-Group", "devs"),
            ("X-Remote-Group", "system:authenticated"),
            ("X-Remote-Extra-Scopes%2Fa", "read"),
        ]);
        let user = identify(Some("front-proxy-client"), &sent, &config()).unwrap();
        assert_eq!(user.name, "jane");
        assert_eq!(user.groups, ["devs", "system:authenticated"]);
        assert_eq!(user.extra["scopes/a"], ["read"]);
    }

    #[test]
    fn no_client_certificate_or_no_user_header_is_anonymous() {
        let sent = headers(&[("X-Remote-User", "mallory")]);
        assert_eq!(identify(None, &sent, &config()).unwrap(), User::anonymous());
        assert_eq!(identify(Some("front-proxy-client"), &headers(&[]), &config()).unwrap(), User::anonymous());
    }

    #[test]
    fn a_certificate_with_a_name_not_allowed_is_refused() {
        let err = identify(Some("someone"), &headers(&[("X-Remote-User", "jane")]), &config()).unwrap_err();
        assert_eq!(err, "x509: subject with cn=someone is not in the allowed list");
    }

    #[test]
    fn extra_keys_are_unescaped() {
        assert_eq!(unescape("scopes%2Fa"), "scopes/a");
        assert_eq!(unescape("plain"), "plain");
        assert_eq!(unescape("bad%zz"), "bad%zz");
    }
}
