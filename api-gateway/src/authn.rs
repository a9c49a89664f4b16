//! Who is asking: a request's identity, from its verified client certificate or bearer token.
//!
//! In kube-apiserver's order: an x509 client certificate that rustls verified against the
//! cluster CA (user = CN, groups = the O values), then a static bearer token from the token
//! file (`--token-auth-file`), then a ServiceAccount token (a JWT signed with the cluster's
//! `sa.key`, see [`crate::service_accounts`]), else anonymous. Every authenticated user also
//! gets the group `system:authenticated`. Anonymous requests get 401 except on [`PUBLIC_PATHS`]; a bearer
//! token that matches nothing gets 401 everywhere, as in kube-apiserver.

use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use actix_web::middleware::Next;
use actix_web::rt::net::TcpStream;
use actix_web::{web, HttpMessage, HttpRequest};

use crate::service_accounts::ServiceAccountTokens;
use crate::status;

/// Paths (and their subpaths) anonymous clients may reach.
pub const PUBLIC_PATHS: &[&str] = &["/livez", "/readyz", "/version"];
/// The group every authenticated user is in.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The user and group of a request with no identity.
pub const ANONYMOUS_USER: &str = "system:anonymous";
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";

/// Who made a request. The middleware puts it in every request's extensions it lets through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// An authenticated user: `groups` plus `system:authenticated`.
    pub fn authenticated(name: &str, uid: &str, mut groups: Vec<String>) -> UserInfo {
        if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
            groups.push(AUTHENTICATED_GROUP.to_string());
        }
        UserInfo { name: name.to_string(), uid: uid.to_string(), groups }
    }

    fn anonymous() -> UserInfo {
        UserInfo { name: ANONYMOUS_USER.into(), uid: String::new(), groups: vec![UNAUTHENTICATED_GROUP.into()] }
    }
}

/// Errors reading the token file.
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    #[error("reading token file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("token file {path}, line {line}: {reason}")]
    Line { path: PathBuf, line: usize, reason: String },
}

/// Static bearer tokens, as kube-apiserver's `--token-auth-file`: CSV lines
/// `token,user,uid[,"group1,group2"]`. Empty lines are skipped.
#[derive(Clone, Debug, Default)]
pub struct Tokens(HashMap<String, UserInfo>);

impl Tokens {
    /// Reads and parses a token file.
    pub fn load(path: &Path) -> Result<Tokens, AuthnError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthnError::Read { path: path.into(), source })?;
        Tokens::parse(&text).map_err(|(line, reason)| AuthnError::Line { path: path.into(), line, reason })
    }

    /// Parses a token file's text; an error names the line (from 1) and what is wrong with it.
    pub fn parse(text: &str) -> Result<Tokens, (usize, String)> {
        let mut tokens = HashMap::new();
        for (n, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let fields = csv_fields(line).map_err(|reason| (n + 1, reason))?;
            let [token, user, uid, rest @ ..] = fields.as_slice() else {
                return Err((n + 1, format!("needs at least 3 columns (token, user, uid), has {}", fields.len())));
            };
            if token.is_empty() || user.is_empty() {
                return Err((n + 1, "empty token or user name".into()));
            }
            let groups = rest.first().map(|g| split_groups(g)).unwrap_or_default();
            if tokens.insert(token.clone(), UserInfo::authenticated(user, uid, groups)).is_some() {
                tracing::warn!(line = n + 1, "duplicate token in the token file; the later line wins");
            }
        }
        Ok(Tokens(tokens))
    }

    /// The user a token belongs to.
    pub fn user(&self, token: &str) -> Option<&UserInfo> {
        self.0.get(token)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn split_groups(field: &str) -> Vec<String> {
    field.split(',').map(str::trim).filter(|g| !g.is_empty()).map(String::from).collect()
}

/// The fields of one CSV line: commas separate, double quotes enclose (with `""` for a quote).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    fields.push(field);
    Ok(fields)
}

/// The identity of a connection's verified client certificate, kept in its extensions.
#[derive(Clone, Debug)]
pub struct ClientCertUser(pub UserInfo);

/// For `HttpServer::on_connect`: reads the client certificate rustls verified during the
/// handshake and keeps its identity with the connection.
pub fn on_connect(conn: &dyn Any, extensions: &mut Extensions) {
    let Some(tls) = conn.downcast_ref::<TlsStream<TcpStream>>() else { return };
    let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first()) else { return };
    match user_from_certificate(leaf) {
        Ok(user) => {
            extensions.insert(ClientCertUser(user));
        }
        Err(reason) => tracing::warn!(reason, "ignoring a verified client certificate"),
    }
}

/// User = the subject's common name, groups = its organization values.
pub fn user_from_certificate(der: &[u8]) -> Result<UserInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or_default();
    if name.is_empty() {
        return Err("the certificate has no common name".into());
    }
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok()).map(String::from).collect();
    Ok(UserInfo::authenticated(name, "", groups))
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The user of a bearer token, and which of `audiences` (the API server's when empty) it is
/// good for: a static token (any audience), else a ServiceAccount token meant for one of
/// them; `None` when it is neither. Both from the app data; the middleware and TokenReview ask.
pub async fn token_user(req: &HttpRequest, token: &str, audiences: &[String]) -> Option<(UserInfo, Vec<String>)> {
    if let Some(user) = req.app_data::<web::Data<Tokens>>().and_then(|tokens| tokens.user(token)) {
        return Some((user.clone(), audiences.to_vec()));
    }
    if !crate::service_accounts::jwt::looks_like_jwt(token) {
        return None;
    }
    match req.app_data::<web::Data<ServiceAccountTokens>>()?.authenticate(token, audiences).await {
        Ok(found) => Some((found.user, found.audiences)),
        Err(reason) => {
            tracing::debug!(%reason, "refused a bearer token");
            None
        }
    }
}

fn is_public(path: &str) -> bool {
    PUBLIC_PATHS.iter().any(|p| path.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

/// Middleware (`middleware::from_fn(authn::authenticate)`): finds who is asking, puts the
/// [`UserInfo`] in the request's extensions, or answers 401. Reads the [`Tokens`] from the
/// app data (`web::Data<Tokens>`); with none there, no token is valid.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let user = if let Some(ClientCertUser(user)) = req.conn_data::<ClientCertUser>() {
        Some(user.clone())
    } else if let Some(token) = bearer_token(req.headers()) {
        match token_user(req.request(), token, &[]).await {
            Some((user, _)) => Some(user),
            None => return Ok(req.into_response(status::unauthorized()).map_into_right_body()),
        }
    } else {
        None
    };
    match user {
        Some(user) => req.extensions_mut().insert(user),
        None if is_public(req.path()) => req.extensions_mut().insert(UserInfo::anonymous()),
        None => return Ok(req.into_response(status::unauthorized()).map_into_right_body()),
    };
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_lines_give_users_with_their_groups() {
        let tokens = Tokens::parse("\u{feff}t1,alice,u1,\"dev,ops\"\n\nt2,bob,u2\r\nt3,carol,u3,solo\n").unwrap();
        assert_eq!(tokens.len(), 3);
        let alice = tokens.user("t1").unwrap();
        assert_eq!((alice.name.as_str(), alice.uid.as_str()), ("alice", "u1"));
        assert_eq!(alice.groups, ["dev", "ops", AUTHENTICATED_GROUP]);
        assert_eq!(tokens.user("t2").unwrap().groups, [AUTHENTICATED_GROUP]);
        assert_eq!(tokens.user("t3").unwrap().groups, ["solo", AUTHENTICATED_GROUP]);
        assert!(tokens.user("nope").is_none());
    }

    #[test]
    fn bad_token_file_lines_are_refused_with_their_line_number() {
        assert_eq!(Tokens::parse("t,a,u\nonly,two\n").unwrap_err().0, 2);
        assert_eq!(Tokens::parse("t,a,u,\"open\n").unwrap_err().0, 1);
        assert_eq!(Tokens::parse(",a,u\n").unwrap_err().0, 1);
    }

    #[test]
    fn csv_quotes_enclose_commas_and_double_quotes_escape() {
        assert_eq!(csv_fields(r#"a,"b,c","say ""hi""",,"#).unwrap(), ["a", "b,c", r#"say "hi""#, "", ""]);
    }

    #[test]
    fn certificate_identity_is_common_name_and_every_organization() {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, "jane");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:masters");
        // A second O value: rcgen keeps one value per type, so name the O attribute by its OID.
        params.distinguished_name.push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 10]), "team-a");
        let cert = params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
        let user = user_from_certificate(cert.der()).unwrap();
        assert_eq!(user.name, "jane");
        assert_eq!(user.groups, ["system:masters", "team-a", AUTHENTICATED_GROUP]);

        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "x");
        let cert = params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
        assert!(user_from_certificate(cert.der()).is_err(), "no CN, no user");
    }

    #[test]
    fn only_health_and_version_paths_are_public() {
        for path in ["/livez", "/readyz", "/version", "/readyz/ping", "/livez/etcd"] {
            assert!(is_public(path), "{path}");
        }
        for path in ["/", "/api", "/metrics", "/livezz", "/versions", "/apis/apps/v1"] {
            assert!(!is_public(path), "{path}");
        }
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        headers.insert(AUTHORIZATION, "Bearer abc ".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some("abc"));
        headers.insert(AUTHORIZATION, "bearer  xyz".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some("xyz"));
        headers.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), None);
    }
}
