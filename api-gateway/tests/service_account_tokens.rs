//! ServiceAccount tokens over an in-process store and its kind actors: a TokenRequest issues
//! a token bound as asked (or refuses, with kube's codes), and a token authenticates only
//! while its ServiceAccount, and the pod or Secret it is bound to, exist with the uids it names.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::time::{Duration, Instant};

use actors::{kinds, DeleteOptions, KindActors};
use api_gateway::service_accounts::jwt::{Signer, DEFAULT_ISSUER};
use api_gateway::service_accounts::token_request::{issue, BoundObject, TokenSpec};
use api_gateway::service_accounts::ServiceAccountTokens;
use raft_store::{StoreConfig, StoreNode};
use serde_json::{json, Value};
use time::OffsetDateTime;

const DEADLINE: Duration = Duration::from_secs(10);

struct Cluster {
    node: StoreNode,
    tokens: ServiceAccountTokens,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::new(1, dir.path().join("store"), "127.0.0.1:0".parse().unwrap());
        let node = StoreNode::start_single(config, DEADLINE).await.unwrap();
        let kinds = KindActors::start(&node);
        let namespaces = kinds::find("", "v1", "namespaces").unwrap();
        let default = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
        actors::object_store::create(&node, namespaces, None, default, None).await.unwrap();
        let pki = api_gateway::pki::load_or_create(&dir.path().join("pki"), &[]).unwrap();
        let signer = Signer::new(&pki.service_account_key, DEFAULT_ISSUER).unwrap();
        Cluster { node, tokens: ServiceAccountTokens { signer, kinds }, _dir: dir }
    }

    /// Creates the object and waits until its kind actor serves it.
    async fn create(&self, resource: &str, obj: Value) -> Value {
        let kind = kinds::find("", "v1", resource).unwrap();
        let created = actors::object_store::create(&self.node, kind, Some("default"), obj, None).await.unwrap();
        let uid = created["metadata"]["uid"].clone();
        let name = created["metadata"]["name"].as_str().unwrap().to_string();
        until(&format!("{resource} {name} served"), || async {
            self.served(resource, &name).await.is_some_and(|o| o["metadata"]["uid"] == uid)
        })
        .await;
        created
    }

    async fn served(&self, resource: &str, name: &str) -> Option<Value> {
        let kind = kinds::find("", "v1", resource).unwrap();
        let get = actors::Get { namespace: Some("default".into()), name: name.into() };
        self.tokens.kinds.get(kind).unwrap().send(get).await.unwrap().ok()
    }

    async fn delete(&self, resource: &str, name: &str) {
        let kind = kinds::find("", "v1", resource).unwrap();
        let at = (Some("default"), name);
        actors::object_store::delete(&self.node, kind, at, &DeleteOptions::default(), None).await.unwrap();
    }

    async fn issue(&self, account: &str, spec: &TokenSpec) -> actors::ApiResult<String> {
        issue(&self.tokens, "default", account, spec, OffsetDateTime::now_utc()).await.map(|i| i.token)
    }

    async fn stop(self) {
        self.node.shutdown().await;
    }
}

async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn account(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})
}

fn pod(name: &str, account: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"serviceAccountName": account, "containers": [{"name": "c", "image": "busybox"}]}})
}

fn spec(audiences: &[&str], bound: Option<(&str, &str, &str)>) -> TokenSpec {
    TokenSpec {
        audiences: audiences.iter().map(|a| a.to_string()).collect(),
        expiration_seconds: 3600,
        bound: bound.map(|(kind, name, uid)| BoundObject {
            kind: kind.into(),
            api_version: "v1".into(),
            name: name.into(),
            uid: uid.into(),
        }),
    }
}

#[actix_rt::test]
async fn a_token_is_its_service_accounts_user_until_the_account_is_deleted() {
    let cluster = Cluster::start().await;
    let robot = cluster.create("serviceaccounts", account("robot")).await;
    let token = cluster.issue("robot", &spec(&[], None)).await.unwrap();
    let found = cluster.tokens.authenticate(&token, &[]).await.unwrap();
    assert_eq!(found.user.name, "system:serviceaccount:default:robot");
    assert_eq!(found.user.uid, robot["metadata"]["uid"].as_str().unwrap());
    assert_eq!(found.user.groups, ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]);
    assert_eq!(found.audiences, [DEFAULT_ISSUER]);

    // A token for another audience is not the API server's, but its audience's.
    let vault = cluster.issue("robot", &spec(&["vault"], None)).await.unwrap();
    assert!(cluster.tokens.authenticate(&vault, &[]).await.is_err());
    let found = cluster.tokens.authenticate(&vault, &["vault".into(), "other".into()]).await.unwrap();
    assert_eq!(found.audiences, ["vault"]);

    // No token for an account that does not exist (404).
    assert_eq!(cluster.issue("nobody", &spec(&[], None)).await.unwrap_err().code(), 404);

    // Deleted, then made again under the same name: the old token stays invalid.
    cluster.delete("serviceaccounts", "robot").await;
    until("the token refused", || async { cluster.tokens.authenticate(&token, &[]).await.is_err() }).await;
    cluster.create("serviceaccounts", account("robot")).await;
    assert!(cluster.tokens.authenticate(&token, &[]).await.is_err(), "another uid");
    assert!(cluster.tokens.authenticate(&cluster.issue("robot", &spec(&[], None)).await.unwrap(), &[]).await.is_ok());
    cluster.stop().await;
}

#[actix_rt::test]
async fn bound_tokens_name_their_object_and_die_with_it() {
    let cluster = Cluster::start().await;
    cluster.create("serviceaccounts", account("robot")).await;
    let web = cluster.create("pods", pod("web", "robot")).await;
    cluster.create("pods", pod("other", "default")).await;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
    let secret = cluster.create("secrets", secret).await;
    let web_uid = web["metadata"]["uid"].as_str().unwrap();

    let to_pod = cluster.issue("robot", &spec(&[], Some(("Pod", "web", web_uid)))).await.unwrap();
    let claims = cluster.tokens.signer.verify(&to_pod, &[]).unwrap();
    let pod_ref = claims.kubernetes.pod.unwrap();
    assert_eq!((pod_ref.name.as_str(), pod_ref.uid.as_str()), ("web", web_uid));
    assert!(cluster.tokens.authenticate(&to_pod, &[]).await.is_ok());
    let to_secret = cluster.issue("robot", &spec(&[], Some(("Secret", "s", "")))).await.unwrap();
    let claims = cluster.tokens.signer.verify(&to_secret, &[]).unwrap();
    assert_eq!(claims.kubernetes.secret.unwrap().uid, secret["metadata"]["uid"].as_str().unwrap());

    // kube's refusals: another uid 409, a pod of another account or a kind not bindable 400,
    // a missing object 404.
    let shared = &cluster;
    let refused = |bound| async move { shared.issue("robot", &spec(&[], Some(bound))).await.unwrap_err() };
    let stale = refused(("Pod", "web", "not-its-uid")).await;
    assert_eq!(stale.code(), 409);
    assert!(stale.to_string().starts_with("Operation cannot be fulfilled on Pod \"web\": the UID in the bound"));
    let foreign = refused(("Pod", "other", "")).await;
    assert_eq!(foreign.code(), 400);
    assert!(foreign.to_string().contains("to pod running with different serviceaccount name"), "{foreign}");
    let map = refused(("ConfigMap", "x", "")).await;
    assert_eq!(map.to_string(), "cannot bind token for object of type v1, Kind=ConfigMap");
    assert_eq!(refused(("Pod", "gone", "")).await.code(), 404);

    // An expired token: refused although everything it names exists.
    let long_ago = OffsetDateTime::now_utc() - time::Duration::hours(2);
    let expired = issue(&cluster.tokens, "default", "robot", &spec(&[], None), long_ago).await.unwrap();
    assert!(cluster.tokens.authenticate(&expired.token, &[]).await.is_err());

    // The pod (never scheduled: deleted at once) and the Secret go: so do their tokens.
    cluster.delete("pods", "web").await;
    until("the pod's token refused", || async { cluster.tokens.authenticate(&to_pod, &[]).await.is_err() }).await;
    cluster.delete("secrets", "s").await;
    until("the secret's token refused", || async { cluster.tokens.authenticate(&to_secret, &[]).await.is_err() }).await;
    cluster.stop().await;
}
