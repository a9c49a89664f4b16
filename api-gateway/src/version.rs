//! `GET /version`: the server's version in kube-apiserver's format (`kubectl version` reads it).

use actix_web::HttpResponse;

/// The Kubernetes minor version whose API Flotilla serves.
pub const KUBE_MINOR: &str = "32";

/// The body of `/version`.
pub fn info() -> serde_json::Value {
    serde_json::json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0-flotilla.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": option_env!("FLOTILLA_GIT_COMMIT").unwrap_or(""),
        "gitTreeState": option_env!("FLOTILLA_GIT_TREE_STATE").unwrap_or(""),
        "buildDate": option_env!("FLOTILLA_BUILD_DATE").unwrap_or("1970-01-01T00:00:00Z"),
        "goVersion": "rustc",
        "compiler": "rustc",
        "platform": platform(),
    })
}

pub(crate) async fn version() -> HttpResponse {
    HttpResponse::Ok().json(info())
}

/// `os/arch` with Go's names for the architecture, as clients expect (`linux/amd64`).
fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("{}/{arch}", std::env::consts::OS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_kubernetes_1_32_and_this_platform() {
        let v = info();
        assert_eq!((v["major"].as_str(), v["minor"].as_str()), (Some("1"), Some("32")));
        assert_eq!(v["gitVersion"], format!("v1.32.0-flotilla.{}", env!("CARGO_PKG_VERSION")));
        assert!(v["platform"].as_str().is_some_and(|p| p.starts_with("linux/")), "{v}");
    }
}
