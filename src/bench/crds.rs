//! The CRD point of the API benchmark: N CustomResourceDefinitions created at once, timed
//! until every one is Established and until each serves its resource.

use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::bail;
use awc::Client;
use serde_json::{json, Value};

fn crd(i: usize) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("benchwidgets{i}.bench.example.com")},
        "spec": {
            "group": "bench.example.com",
            "scope": "Namespaced",
            "names": {"plural": format!("benchwidgets{i}"), "kind": format!("BenchWidget{i}")},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer", "default": 1}}}}}}}]
        }
    })
}

async fn established_count(client: &Client, base: &str) -> anyhow::Result<usize> {
    let url = format!("{base}/apis/apiextensions.k8s.io/v1/customresourcedefinitions");
    let mut response = client.get(&url).send().await.map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
    let list: Value = response.json().limit(64 << 20).await?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    Ok(items
        .iter()
        .filter(|crd| {
            crd["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Established" && c["status"] == "True"))
        })
        .count())
}

/// Creates `n` CRDs concurrently; returns how long until all were Established and until
/// every one answered a list of its resource.
pub async fn established(client: &Rc<Client>, base: &str, n: usize) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    let url = format!("{base}/apis/apiextensions.k8s.io/v1/customresourcedefinitions");
    let creates = (0..n).map(|i| {
        let (client, url) = (client.clone(), url.clone());
        async move { super::api::post(&client, &url, &crd(i)).await }
    });
    for result in futures::future::join_all(creates).await {
        result?;
    }
    let deadline = started + Duration::from_secs(60);
    while established_count(client, base).await? < n {
        if Instant::now() > deadline {
            bail!("not all {n} CRDs were Established within 60 s");
        }
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    let all_established = started.elapsed();
    for i in 0..n {
        let url = format!("{base}/apis/bench.example.com/v1/namespaces/default/benchwidgets{i}");
        loop {
            let status = client.get(&url).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
            if status == 200 {
                break;
            }
            if Instant::now() > deadline {
                bail!("benchwidgets{i} never served");
            }
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok((all_established, started.elapsed()))
}
