//! ServiceAccount tokens as kube-apiserver writes them: JWTs with kube's claims, signed ES256
//! with the cluster's `sa.key` ([`crate::pki`]), checked here (signature, issuer, time, audience).
//!
//! Plain functions of a key and a clock: whether the ServiceAccount (and a bound pod or
//! Secret) still exists is [`super`]'s question.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The issuer (and default audience) of kube-apiserver as kubeadm configures it.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// How far token times may be off the server's clock (kube's JWT validator allows 60 s too).
const LEEWAY_SECONDS: u64 = 60;

/// A token's claims, kube's names and shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// `system:serviceaccount:NAMESPACE:NAME`.
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    /// The token's id (kube's credential id).
    #[serde(default)]
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

/// The `kubernetes.io` claim: whose token it is, and the object it is bound to, if any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
}

/// An object by name and uid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

/// Why a key cannot sign, or a token is not valid.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The signing key is not a PKCS#8 ECDSA P-256 key.
    #[error("the ServiceAccount signing key: {0}")]
    Key(String),
    /// A token that is not one of ours, or no longer valid (kube logs the reason, the client
    /// only sees 401).
    #[error("invalid ServiceAccount token: {0}")]
    Invalid(String),
}

/// The user name of a ServiceAccount.
pub fn subject(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// Signs and verifies the cluster's ServiceAccount tokens.
pub struct Signer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// kube's key id: the unpadded base64url SHA-256 of the public key's DER.
    kid: String,
    /// Who issues (`iss`), and the API server's own audiences (kube: the issuer).
    pub issuer: String,
    pub audiences: Vec<String>,
}

impl Signer {
    /// A signer with the PKCS#8 PEM key `key_pem` (the `sa.key` of [`crate::pki::Pki`]).
    pub fn new(key_pem: &str, issuer: &str) -> Result<Signer, JwtError> {
        let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| JwtError::Key(e.to_string()))?;
        if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(JwtError::Key("not an ECDSA P-256 key".into()));
        }
        use rcgen::PublicKeyData;
        let spki = key.subject_public_key_info();
        let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &spki));
        Ok(Signer {
            encoding: EncodingKey::from_ec_der(key.serialized_der()),
            decoding: DecodingKey::from_ec_der(key.public_key_raw()),
            kid,
            issuer: issuer.to_string(),
            audiences: vec![issuer.to_string()],
        })
    }

    /// The signed token of `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, JwtError> {
        let header = Header { kid: Some(self.kid.clone()), ..Header::new(Algorithm::ES256) };
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| JwtError::Key(e.to_string()))
    }

    /// The claims of `token` when it is one of ours (signature, `iss`), valid now (`exp`,
    /// `nbf`, 60 s leeway) and meant for one of `audiences` (the API server's when empty).
    pub fn verify(&self, token: &str, audiences: &[String]) -> Result<Claims, JwtError> {
        let audiences = if audiences.is_empty() { &self.audiences } else { audiences };
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(audiences);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| JwtError::Invalid(e.to_string()))?;
        let claims = data.claims;
        let k = &claims.kubernetes;
        if claims.sub != subject(&k.namespace, &k.serviceaccount.name) {
            return Err(JwtError::Invalid("sub does not name the token's ServiceAccount".into()));
        }
        Ok(claims)
    }
}

/// Whether `token` looks like a JWT (three dot-separated parts, the first a JSON header):
/// only those go to [`Signer::verify`].
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let header = parts.next().and_then(|h| URL_SAFE_NO_PAD.decode(h).ok());
    parts.count() == 2 && header.is_some_and(|h| h.first() == Some(&b'{'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn key() -> String {
        rcgen::KeyPair::generate().unwrap().serialize_pem()
    }

    pub(crate) fn claims(now: i64, lifetime: i64, aud: &str) -> Claims {
        Claims {
            iss: DEFAULT_ISSUER.into(),
            sub: subject("shop", "robot"),
            aud: vec![aud.into()],
            exp: now + lifetime,
            iat: now,
            nbf: now,
            jti: "j-1".into(),
            kubernetes: KubernetesClaims {
                namespace: "shop".into(),
                serviceaccount: ObjectRef { name: "robot".into(), uid: "sa-uid".into() },
                pod: Some(ObjectRef { name: "web".into(), uid: "pod-uid".into() }),
                secret: None,
            },
        }
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    #[test]
    fn a_signed_token_verifies_back_to_its_claims_with_kubes_shape() {
        let signer = Signer::new(&key(), DEFAULT_ISSUER).unwrap();
        let claims = claims(now(), 3600, DEFAULT_ISSUER);
        let token = signer.sign(&claims).unwrap();
        assert!(looks_like_jwt(&token));
        assert_eq!(signer.verify(&token, &[]).unwrap(), claims);

        let part = |i: usize| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(i).unwrap()).unwrap()).unwrap()
        };
        assert_eq!(part(0)["alg"], "ES256");
        assert_eq!(part(0)["kid"].as_str().unwrap().len(), 43, "base64url of a SHA-256");
        let body = part(1);
        assert_eq!(body["sub"], "system:serviceaccount:shop:robot");
        assert_eq!(body["kubernetes.io"]["serviceaccount"]["uid"], "sa-uid");
        assert_eq!(body["kubernetes.io"]["pod"]["name"], "web");
        assert!(body["kubernetes.io"].get("secret").is_none());
    }

    #[test]
    fn expired_and_not_yet_valid_tokens_are_refused() {
        let signer = Signer::new(&key(), DEFAULT_ISSUER).unwrap();
        let expired = signer.sign(&claims(now() - 7200, 3600, DEFAULT_ISSUER)).unwrap();
        assert!(matches!(signer.verify(&expired, &[]), Err(JwtError::Invalid(e)) if e.contains("Expired")));
        let mut later = claims(now(), 3600, DEFAULT_ISSUER);
        later.nbf = now() + 600;
        let later = signer.sign(&later).unwrap();
        assert!(matches!(signer.verify(&later, &[]), Err(JwtError::Invalid(e)) if e.contains("Immature")));
    }

    #[test]
    fn another_keys_signature_or_a_changed_claim_is_refused() {
        let signer = Signer::new(&key(), DEFAULT_ISSUER).unwrap();
        let stranger = Signer::new(&key(), DEFAULT_ISSUER).unwrap();
        let claims = claims(now(), 3600, DEFAULT_ISSUER);
        assert!(signer.verify(&stranger.sign(&claims).unwrap(), &[]).is_err());

        // The body of another token under this one's signature.
        let token = signer.sign(&claims).unwrap();
        let other = signer.sign(&Claims { sub: subject("shop", "admin"), ..claims.clone() }).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], other.split('.').nth(1).unwrap(), parts[2]);
        assert!(signer.verify(&forged, &[]).is_err());
        assert!(signer.verify("garbage", &[]).is_err());
        assert!(!looks_like_jwt("garbage") && !looks_like_jwt("a.b.c"));
    }

    #[test]
    fn the_audience_must_be_one_asked_for_or_the_api_servers() {
        let signer = Signer::new(&key(), DEFAULT_ISSUER).unwrap();
        let vault = signer.sign(&claims(now(), 3600, "vault")).unwrap();
        assert!(signer.verify(&vault, &[]).is_err(), "not for the API server");
        assert!(signer.verify(&vault, &["vault".into(), "other".into()]).is_ok());
        let api = signer.sign(&claims(now(), 3600, DEFAULT_ISSUER)).unwrap();
        assert!(signer.verify(&api, &["vault".into()]).is_err());
    }

    #[test]
    fn another_issuer_or_a_subject_not_matching_the_account_is_refused() {
        let key = key();
        let signer = Signer::new(&key, DEFAULT_ISSUER).unwrap();
        let elsewhere = Signer::new(&key, "https://elsewhere").unwrap();
        let claims = claims(now(), 3600, DEFAULT_ISSUER);
        assert!(signer
            .verify(&elsewhere.sign(&Claims { iss: "https://elsewhere".into(), ..claims.clone() }).unwrap(), &[])
            .is_err());
        let mismatched = signer.sign(&Claims { sub: subject("shop", "admin"), ..claims }).unwrap();
        assert!(signer.verify(&mismatched, &[]).is_err());
    }

    #[test]
    fn only_p256_keys_sign() {
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap().serialize_pem();
        assert!(matches!(Signer::new(&ed, DEFAULT_ISSUER), Err(JwtError::Key(_))));
        assert!(matches!(Signer::new("nope", DEFAULT_ISSUER), Err(JwtError::Key(_))));
    }
}
