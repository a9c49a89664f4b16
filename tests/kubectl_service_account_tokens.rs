//! End-to-end: ServiceAccount tokens through real kubectl. `kubectl create token` (with
//! `--duration`, `--audience`, `--bound-object-kind Pod`) gets a token that works as
//! `kubectl --token`: `auth whoami` shows the ServiceAccount's user and groups, `get pods`
//! works. A token for another audience, an expired or garbled one, one whose ServiceAccount
//! or bound pod was deleted: 401 `Unauthorized`. A TokenReview accepts a good token.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use api_gateway::service_accounts::jwt::{subject, Claims, KubernetesClaims, ObjectRef, Signer, DEFAULT_ISSUER};
use common::tokens::WithToken;
use common::Up;
use serde_json::Value;

fn claims_of(up: &Up, token: &str, audiences: &[String]) -> Claims {
    let key = std::fs::read_to_string(up.dir.join("pki/sa.key")).unwrap();
    Signer::new(&key, DEFAULT_ISSUER).unwrap().verify(token, audiences).unwrap()
}

#[test]
fn kubectl_create_token_gives_tokens_that_authenticate_as_the_service_account() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    let with = WithToken::new(&up);
    up.kubectl(&["create", "serviceaccount", "robot"]);

    let token = up.kubectl(&["create", "token", "robot", "--duration=15m"]).trim().to_string();
    let user = with.whoami(&token);
    assert_eq!(user["username"], "system:serviceaccount:default:robot");
    let groups: Vec<&str> = user["groups"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(groups, ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]);
    let sa_uid = up.kubectl(&["get", "sa", "robot", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(user["uid"], sa_uid.as_str());
    let (ok, _, stderr) = with.kubectl(&token, &["get", "pods"]);
    assert!(ok, "get pods with the token: {stderr}");
    let claims = claims_of(&up, &token, &[]);
    assert_eq!(claims.exp - claims.iat, 900);
    assert_eq!(claims.kubernetes.serviceaccount.uid, sa_uid);

    // A TokenReview (as an extension server would ask) says whose it is.
    let review = dir.path().join("review.json");
    let body =
        format!(r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"{token}"}}}}"#);
    std::fs::write(&review, body).unwrap();
    let reviewed = up.kubectl(&["create", "-f", &review.display().to_string(), "-o", "json"]);
    let reviewed: Value = serde_json::from_str(&reviewed).unwrap();
    assert_eq!(reviewed["status"]["authenticated"], true);
    assert_eq!(reviewed["status"]["user"]["username"], "system:serviceaccount:default:robot");

    // kube's lifetime bounds, from the server.
    let (ok, _, stderr) = up.try_kubectl(&["create", "token", "robot", "--duration=5m"]);
    assert!(!ok && stderr.contains("may not specify a duration less than 10 minutes"), "{stderr}");
    let (ok, _, stderr) = up.try_kubectl(&["create", "token", "nobody"]);
    assert!(!ok && stderr.contains(r#"serviceaccounts "nobody" not found"#), "{stderr}");

    // Another audience's token is not the API server's.
    let vault = up.kubectl(&["create", "token", "robot", "--audience=vault"]).trim().to_string();
    assert_eq!(claims_of(&up, &vault, &["vault".into()]).aud, ["vault"]);
    with.assert_unauthorized(&vault);

    // Bound to a pod (never scheduled here: no node), the token lives as long as the pod.
    up.kubectl(&[
        "run",
        "web",
        "--image=flotilla.local/busybox:latest",
        "--overrides",
        r#"{"spec": {"serviceAccountName": "robot"}}"#,
    ]);
    let bound = up
        .kubectl(&["create", "token", "robot", "--bound-object-kind=Pod", "--bound-object-name=web"])
        .trim()
        .to_string();
    assert_eq!(with.whoami(&bound)["username"], "system:serviceaccount:default:robot");
    assert_eq!(claims_of(&up, &bound, &[]).kubernetes.pod.unwrap().name, "web");
    up.kubectl(&["delete", "pod", "web", "--wait=true"]);
    with.until_unauthorized(&bound);

    // Expired (signed with the cluster's own key, two hours ago) and garbled tokens.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let key = std::fs::read_to_string(up.dir.join("pki/sa.key")).unwrap();
    let expired = Signer::new(&key, DEFAULT_ISSUER)
        .unwrap()
        .sign(&Claims {
            iss: DEFAULT_ISSUER.into(),
            sub: subject("default", "robot"),
            aud: vec![DEFAULT_ISSUER.into()],
            exp: now - 3600,
            iat: now - 7200,
            nbf: now - 7200,
            jti: String::new(),
            kubernetes: KubernetesClaims {
                namespace: "default".into(),
                serviceaccount: ObjectRef { name: "robot".into(), uid: sa_uid.clone() },
                pod: None,
                secret: None,
            },
        })
        .unwrap();
    with.assert_unauthorized(&expired);
    // One character of the signature changed.
    let at = token.len() - 20;
    let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
    let garbled = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
    with.assert_unauthorized(&garbled);
    with.assert_unauthorized("not-a-token");

    // The ServiceAccount deleted: its tokens stop working.
    up.kubectl(&["delete", "serviceaccount", "robot"]);
    with.until_unauthorized(&token);
}
