//! The cluster's certificates as PEM files under `DATA_DIR/pki/`: the CA (`ca.crt`, `ca.key`),
//! the API server's serving certificate (`apiserver.*`), the admin's (`admin.*`), the API
//! server's client certificate towards kubelets (`apiserver-kubelet-client.*`, kubeadm's name),
//! and the key that signs ServiceAccount tokens (`sa.key`, its public half `sa.pub`, kubeadm's
//! names; an ECDSA P-256 key, so tokens are ES256).
//!
//! [`load_or_create`] makes what is missing on first start and loads it on later starts. The
//! CA is never replaced once `ca.crt` exists. A leaf certificate is issued again when it is
//! missing, not signed by the CA, valid for less than [`RENEW_BEFORE`], or (the serving
//! certificate) lacks one of the names asked for.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// Common name of the cluster CA.
pub const CA_NAME: &str = "flotilla-ca";
/// Names every serving certificate holds, before the extra ones a member adds.
pub const DEFAULT_SERVING_NAMES: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "::1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    // The `kubernetes` Service's cluster IP (`actors::service_ips::api_server_ip`): in-cluster
    // clients dial KUBERNETES_SERVICE_HOST, this address.
    "10.96.0.1",
];
/// A leaf certificate with less validity left than this is issued again at start.
pub const RENEW_BEFORE: Duration = Duration::days(30);
const CA_VALIDITY: Duration = Duration::days(3650);
const LEAF_VALIDITY: Duration = Duration::days(365);
/// Back-dating of `notBefore`, so clients whose clocks run a little slow accept new certificates.
const CLOCK_SKEW: Duration = Duration::minutes(5);

/// Errors loading or making the certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A certificate or key could not be made.
    #[error("making the {what}: {source}")]
    Generate { what: &'static str, source: rcgen::Error },
    /// A file holds something other than the certificate or key expected.
    #[error("{path}: not a usable {what}: {reason}")]
    Invalid { path: PathBuf, what: &'static str, reason: String },
    /// A name for the serving certificate is neither an IP address nor a valid DNS name.
    #[error("{0:?} is not a valid DNS name or IP address for the serving certificate")]
    BadName(String),
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The loaded certificates. Carries private keys: keep it out of logs.
#[derive(Clone)]
pub struct Pki {
    /// The cluster CA (its key signs every other certificate).
    pub ca: CertAndKey,
    /// The API server's serving certificate.
    pub apiserver: CertAndKey,
    /// The admin client certificate (CN=admin, O=system:masters).
    pub admin: CertAndKey,
    /// What the API server presents to kubelets for logs, exec, attach and port-forward
    /// (CN=kube-apiserver-kubelet-client, O=kubeadm:cluster-admins, as kubeadm issues it).
    pub kubelet_client: CertAndKey,
    /// The ServiceAccount token signing key (`sa.key`, PKCS#8 PEM, ECDSA P-256): every member
    /// sharing the directory signs and verifies with it ([`crate::service_accounts`]).
    pub service_account_key: String,
}

/// Loads the certificates in `dir` (`DATA_DIR/pki`), making whatever is missing or stale.
/// `extra_names` are added to the serving certificate's names: IP addresses or DNS names.
pub fn load_or_create(dir: &Path, extra_names: &[String]) -> Result<Pki, PkiError> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|source| io(dir, source))?;
    let (ca, issuer) = load_or_create_ca(dir)?;
    let ca_der = parse_pem(&dir.join("ca.crt"), &ca.cert_pem)?;
    let ca_cert = parse_der(&dir.join("ca.crt"), &ca_der)?;
    let mut names: Vec<SanType> = Vec::new();
    for name in DEFAULT_SERVING_NAMES.iter().map(|n| n.to_string()).chain(extra_names.iter().cloned()) {
        let san = san(&name)?;
        if !names.contains(&san) {
            names.push(san);
        }
    }
    let apiserver = load_or_issue_leaf(dir, "apiserver", &ca_cert, &issuer, serving_params(names))?;
    let admin = load_or_issue_leaf(dir, "admin", &ca_cert, &issuer, client_params("admin", Some("system:masters")))?;
    let kubelet_client = load_or_issue_leaf(
        dir,
        "apiserver-kubelet-client",
        &ca_cert,
        &issuer,
        client_params(crate::kubelet_proxy::client::CLIENT_NAME, Some(crate::kubelet_proxy::client::CLIENT_GROUP)),
    )?;
    crate::aggregator::front_proxy::load_or_create(dir, &ca.cert_pem)?;
    let service_account_key = load_or_create_service_account_key(dir)?;
    Ok(Pki { ca, apiserver, admin, kubelet_client, service_account_key })
}

/// Makes `sa.key` (and `sa.pub`) when missing, then loads `sa.key`; like the CA, it is never
/// replaced once there (replacing it would invalidate every token issued).
fn load_or_create_service_account_key(dir: &Path) -> Result<String, PkiError> {
    let (key_path, pub_path) = (dir.join("sa.key"), dir.join("sa.pub"));
    if !key_path.exists() {
        let key = KeyPair::generate().map_err(|source| PkiError::Generate { what: "ServiceAccount key", source })?;
        write_file(&key_path, &key.serialize_pem(), 0o600)?;
        write_file(&pub_path, &key.public_key_pem(), 0o644)?;
        tracing::info!(dir = %dir.display(), "made a new ServiceAccount token signing key");
    }
    let pem = read(&key_path)?;
    let key = KeyPair::from_pem(&pem).map_err(|e| invalid(&key_path, "ServiceAccount key", e))?;
    if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err(invalid(&key_path, "ServiceAccount key", "it is not an ECDSA P-256 key"));
    }
    Ok(pem)
}

/// Makes the CA when `ca.crt` is missing, then loads it as every later start does.
fn load_or_create_ca(dir: &Path) -> Result<(CertAndKey, Issuer<'static, KeyPair>), PkiError> {
    load_or_create_named_ca(dir, "ca", CA_NAME)
}

/// Makes the CA `{stem}.crt`/`{stem}.key` (common name `common_name`) when missing, then
/// loads it: the cluster CA, and the front-proxy CA of [`crate::aggregator::front_proxy`].
pub(crate) fn load_or_create_named_ca(
    dir: &Path,
    stem: &str,
    common_name: &str,
) -> Result<(CertAndKey, Issuer<'static, KeyPair>), PkiError> {
    let (cert_path, key_path) = (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
    if !cert_path.exists() {
        let mut params = params_valid_for(CA_VALIDITY);
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let generate = |source| PkiError::Generate { what: "CA", source };
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().map_err(generate)?).map_err(generate)?;
        // The key first: a `ca.crt` on disk always has its key beside it.
        write_file(&key_path, &ca.key().serialize_pem(), 0o600)?;
        write_file(&cert_path, &ca.pem(), 0o644)?;
        tracing::info!(dir = %dir.display(), common_name, "made a new CA");
    }
    let ca = CertAndKey { cert_pem: read(&cert_path)?, key_pem: read(&key_path)? };
    let key = KeyPair::from_pem(&ca.key_pem).map_err(|e| invalid(&key_path, "private key", e))?;
    let cert_der = parse_pem(&cert_path, &ca.cert_pem)?;
    if parse_der(&cert_path, &cert_der)?.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(invalid(&key_path, "CA key", format!("it does not belong to {stem}.crt")));
    }
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, key).map_err(|e| invalid(&cert_path, "CA", e))?;
    Ok((ca, issuer))
}

/// Loads `NAME.crt`/`NAME.key`, or issues them from `params` when missing or stale.
pub(crate) fn load_or_issue_leaf(
    dir: &Path,
    name: &'static str,
    ca: &X509Certificate<'_>,
    issuer: &Issuer<'_, KeyPair>,
    params: CertificateParams,
) -> Result<CertAndKey, PkiError> {
    let (cert_path, key_path) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    if cert_path.exists() && key_path.exists() {
        let pair = CertAndKey { cert_pem: read(&cert_path)?, key_pem: read(&key_path)? };
        let der = parse_pem(&cert_path, &pair.cert_pem)?;
        let cert = parse_der(&cert_path, &der)?;
        let key_matches = KeyPair::from_pem(&pair.key_pem)
            .is_ok_and(|key| key.subject_public_key_info().as_slice() == cert.public_key().raw);
        let stale = if key_matches {
            stale_because(&cert, ca, &params.subject_alt_names)
        } else {
            Some("its key is unreadable or does not match it".into())
        };
        match stale {
            None => return Ok(pair),
            Some(reason) => tracing::info!(cert = %cert_path.display(), reason, "issuing the certificate again"),
        }
    }
    let generate = |source| PkiError::Generate { what: name, source };
    let key = KeyPair::generate().map_err(generate)?;
    let cert = params.signed_by(&key, issuer).map_err(generate)?;
    let pair = CertAndKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() };
    write_file(&key_path, &pair.key_pem, 0o600)?;
    write_file(&cert_path, &pair.cert_pem, 0o644)?;
    Ok(pair)
}

/// Why a leaf certificate must be issued again, or `None` when it is still good.
fn stale_because(cert: &X509Certificate<'_>, ca: &X509Certificate<'_>, wanted: &[SanType]) -> Option<String> {
    if cert.verify_signature(Some(ca.public_key())).is_err() {
        return Some("not signed by the cluster CA".into());
    }
    if cert.validity().time_to_expiration().is_none_or(|left| left < RENEW_BEFORE) {
        return Some("expired or expiring soon".into());
    }
    let held: Vec<SanType> = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext.value.general_names.iter().filter_map(san_of).collect(),
        _ => Vec::new(),
    };
    let missing: Vec<String> = wanted.iter().filter(|w| !held.contains(w)).map(|w| format!("{w:?}")).collect();
    (!missing.is_empty()).then(|| format!("lacks names {}", missing.join(", ")))
}

fn san_of(name: &GeneralName<'_>) -> Option<SanType> {
    match name {
        GeneralName::DNSName(dns) => san(dns).ok(),
        GeneralName::IPAddress(&[a, b, c, d]) => Some(SanType::IpAddress(IpAddr::from([a, b, c, d]))),
        GeneralName::IPAddress(bytes) => <[u8; 16]>::try_from(*bytes).ok().map(|b| SanType::IpAddress(b.into())),
        _ => None,
    }
}

/// A subject alternative name: an IP address when `name` parses as one, else a DNS name.
fn san(name: &str) -> Result<SanType, PkiError> {
    match name.parse::<IpAddr>() {
        Ok(ip) => Ok(SanType::IpAddress(ip)),
        Err(_) if !name.is_empty() => {
            name.try_into().map(SanType::DnsName).map_err(|_| PkiError::BadName(name.to_string()))
        }
        Err(_) => Err(PkiError::BadName(name.to_string())),
    }
}

fn serving_params(names: Vec<SanType>) -> CertificateParams {
    let mut params = params_valid_for(LEAF_VALIDITY);
    params.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    params.subject_alt_names = names;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params
}

/// A client certificate's parameters: the user is the common name, the group the organization.
pub(crate) fn client_params(user: &str, group: Option<&str>) -> CertificateParams {
    let mut params = params_valid_for(LEAF_VALIDITY);
    params.distinguished_name.push(DnType::CommonName, user);
    if let Some(group) = group {
        params.distinguished_name.push(DnType::OrganizationName, group);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

fn params_valid_for(validity: Duration) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + validity;
    params.use_authority_key_identifier_extension = true;
    params
}

/// The DER of the first `CERTIFICATE` block in `pem`.
pub(crate) fn parse_pem(path: &Path, pem: &str) -> Result<Vec<u8>, PkiError> {
    match x509_parser::pem::parse_x509_pem(pem.as_bytes()) {
        Ok((_, block)) if block.label == "CERTIFICATE" => Ok(block.contents),
        Ok((_, block)) => Err(invalid(path, "certificate", format!("PEM block is {}", block.label))),
        Err(e) => Err(invalid(path, "certificate", e)),
    }
}

pub(crate) fn parse_der<'a>(path: &Path, der: &'a [u8]) -> Result<X509Certificate<'a>, PkiError> {
    x509_parser::parse_x509_certificate(der).map(|(_, cert)| cert).map_err(|e| invalid(path, "certificate", e))
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| io(path, source))
}

/// Writes `contents` to `path` through a temporary file and a rename, so a crash leaves the
/// old file or the new one, never half of one. `mode` applies from the start.
pub(crate) fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file =
        fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(|e| io(&tmp, e))?;
    file.write_all(contents.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io(path, e))
}

fn io(path: &Path, source: std::io::Error) -> PkiError {
    PkiError::Io { path: path.to_path_buf(), source }
}

fn invalid(path: &Path, what: &'static str, reason: impl std::fmt::Display) -> PkiError {
    PkiError::Invalid { path: path.to_path_buf(), what, reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(pem: &str) -> Vec<u8> {
        parse_pem(Path::new("test"), pem).unwrap()
    }

    fn dns_and_ips(der: &[u8]) -> Vec<String> {
        let cert = parse_der(Path::new("test"), der).unwrap();
        let ext = cert.subject_alternative_name().unwrap().unwrap();
        ext.value
            .general_names
            .iter()
            .map(|n| match san_of(n).unwrap() {
                SanType::DnsName(dns) => dns.as_str().to_string(),
                SanType::IpAddress(ip) => ip.to_string(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn first_start_makes_a_ca_and_leaves_that_chain_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let pki = load_or_create(dir.path(), &["node-1.example".into(), "10.1.2.3".into()]).unwrap();
        let (ca_der, server_der, admin_der) =
            (cert(&pki.ca.cert_pem), cert(&pki.apiserver.cert_pem), cert(&pki.admin.cert_pem));
        let ca = parse_der(Path::new("ca"), &ca_der).unwrap();
        assert_eq!(ca.subject().iter_common_name().next().unwrap().as_str().unwrap(), CA_NAME);
        assert!(ca.is_ca());
        for der in [&server_der, &admin_der] {
            let leaf = parse_der(Path::new("leaf"), der).unwrap();
            assert_eq!(leaf.issuer(), ca.subject());
            leaf.verify_signature(Some(ca.public_key())).unwrap();
        }
        let mut names = dns_and_ips(&server_der);
        names.sort();
        let mut want: Vec<String> = DEFAULT_SERVING_NAMES.iter().map(|n| n.to_string()).collect();
        want.extend(["node-1.example".to_string(), "10.1.2.3".to_string()]);
        want.sort();
        assert_eq!(names, want);

        let admin = crate::authn::user_from_certificate(&admin_der).unwrap();
        assert_eq!((admin.name.as_str(), admin.groups[0].as_str()), ("admin", "system:masters"));
        let kubelet_client_der = cert(&pki.kubelet_client.cert_pem);
        let kubelet_client = parse_der(Path::new("kubelet client"), &kubelet_client_der).unwrap();
        kubelet_client.verify_signature(Some(ca.public_key())).unwrap();
        let kubelet_client = crate::authn::user_from_certificate(&kubelet_client_der).unwrap();
        assert_eq!(
            (kubelet_client.name.as_str(), kubelet_client.groups[0].as_str()),
            ("kube-apiserver-kubelet-client", "kubeadm:cluster-admins")
        );

        for (file, mode) in [
            ("ca.key", 0o600),
            ("apiserver.key", 0o600),
            ("admin.key", 0o600),
            ("apiserver-kubelet-client.key", 0o600),
            ("apiserver-kubelet-client.crt", 0o644),
            ("ca.crt", 0o644),
            ("sa.key", 0o600),
            ("sa.pub", 0o644),
        ] {
            let meta = fs::metadata(dir.path().join(file)).unwrap();
            assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, mode, "{file}");
        }
    }

    #[test]
    fn later_starts_load_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), &[]).unwrap();
        let second = load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(first.ca.cert_pem, second.ca.cert_pem);
        assert_eq!(first.ca.key_pem, second.ca.key_pem);
        assert_eq!(first.apiserver.cert_pem, second.apiserver.cert_pem);
        assert_eq!(first.admin.key_pem, second.admin.key_pem);
        assert_eq!(first.kubelet_client.key_pem, second.kubelet_client.key_pem);
        assert_eq!(first.service_account_key, second.service_account_key);
    }

    #[test]
    fn a_new_name_reissues_the_serving_certificate_but_keeps_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), &[]).unwrap();
        let second = load_or_create(dir.path(), &["192.168.7.7".into()]).unwrap();
        assert_eq!(first.ca.cert_pem, second.ca.cert_pem);
        assert_eq!(first.admin.cert_pem, second.admin.cert_pem);
        assert_ne!(first.apiserver.cert_pem, second.apiserver.cert_pem);
        assert!(dns_and_ips(&cert(&second.apiserver.cert_pem)).contains(&"192.168.7.7".to_string()));
    }

    #[test]
    fn bad_leaves_are_reissued_and_a_ca_without_its_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), &[]).unwrap();
        let other = tempfile::tempdir().unwrap();
        load_or_create(other.path(), &[]).unwrap();
        fs::copy(other.path().join("admin.crt"), dir.path().join("admin.crt")).unwrap();
        fs::copy(other.path().join("admin.key"), dir.path().join("admin.key")).unwrap();
        let second = load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(first.ca.cert_pem, second.ca.cert_pem);
        let (ca_der, admin_der) = (cert(&second.ca.cert_pem), cert(&second.admin.cert_pem));
        let ca = parse_der(Path::new("ca"), &ca_der).unwrap();
        parse_der(Path::new("admin"), &admin_der).unwrap().verify_signature(Some(ca.public_key())).unwrap();

        // A key that does not match its certificate: both are issued again.
        fs::copy(other.path().join("apiserver.key"), dir.path().join("apiserver.key")).unwrap();
        let third = load_or_create(dir.path(), &[]).unwrap();
        assert_ne!(third.apiserver.cert_pem, second.apiserver.cert_pem);
        crate::tls::server_config(&third).unwrap();

        fs::remove_file(dir.path().join("ca.key")).unwrap();
        assert!(matches!(load_or_create(dir.path(), &[]), Err(PkiError::Io { .. })));
        fs::copy(other.path().join("ca.key"), dir.path().join("ca.key")).unwrap();
        assert!(matches!(load_or_create(dir.path(), &[]), Err(PkiError::Invalid { .. })));
    }

    #[test]
    fn bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load_or_create(dir.path(), &["".into()]), Err(PkiError::BadName(_))));
        assert!(matches!(load_or_create(dir.path(), &["bad name\u{e9}".into()]), Err(PkiError::BadName(_))));
    }
}
