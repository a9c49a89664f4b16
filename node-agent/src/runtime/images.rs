//! Local images, since no registry is reachable: a busybox image and the pause image are
//! built here from the host's `busybox-static` (one layer: `/bin/busybox` and its applet
//! links), written as a docker-archive and imported into containerd with `ctr`. The agent
//! never pulls: an image that is not in the store fails the pod (`ErrImageNeverPull`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;

/// The busybox image every node has; `kubectl run --image=flotilla.local/busybox:latest`.
pub const BUSYBOX_IMAGE: &str = "flotilla.local/busybox:latest";
/// The sandbox ("pause") image: a shell that sleeps until it is told to stop.
pub const PAUSE_IMAGE: &str = "flotilla.local/pause:3.9";
/// Where Debian's busybox-static puts the binary.
const BUSYBOX_BINARY: &str = "/bin/busybox";
/// The pause process: PID 1 of the sandbox, exits 0 on SIGTERM.
const PAUSE_SCRIPT: &str = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why an image could not be built or imported.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{BUSYBOX_BINARY} is missing (apt-get install busybox-static)")]
    NoBusybox,
    #[error("ctr images import {file} failed: {stderr}")]
    Import { file: PathBuf, stderr: String },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { what, path, source }
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The applets busybox offers, from `busybox --list`.
fn applets() -> Result<Vec<String>, Error> {
    let out = std::process::Command::new(BUSYBOX_BINARY)
        .arg("--list")
        .stderr(Stdio::null())
        .output()
        .map_err(|_| Error::NoBusybox)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(String::from)
        .collect())
}

/// The one layer: `/bin/busybox`, a link per applet, and the few files a shell expects.
fn layer() -> Result<Vec<u8>, Error> {
    let binary = std::fs::read(BUSYBOX_BINARY).map_err(|_| Error::NoBusybox)?;
    let mut tar = tar::Builder::new(Vec::new());
    let io_err = |source| Error::Io { what: "building", path: PathBuf::from("layer.tar"), source };
    let dir = |tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(mode);
        header.set_size(0);
        header.set_mtime(0);
        tar.append_data(&mut header, path, std::io::empty())
    };
    for (path, mode) in [("bin/", 0o755), ("etc/", 0o755), ("root/", 0o700), ("tmp/", 0o1777), ("var/", 0o755)] {
        dir(&mut tar, path, mode).map_err(io_err)?;
    }
    let file = |tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_mtime(0);
        tar.append_data(&mut header, path, data)
    };
    file(&mut tar, "bin/busybox", 0o755, &binary).map_err(io_err)?;
    file(&mut tar, "etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        .map_err(io_err)?;
    file(&mut tar, "etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n").map_err(io_err)?;
    for applet in applets()? {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_mode(0o777);
        header.set_size(0);
        header.set_mtime(0);
        tar.append_link(&mut header, format!("bin/{applet}"), "busybox").map_err(io_err)?;
    }
    tar.into_inner().map_err(io_err)
}

/// An image config over `layer_digest` running `entrypoint`/`cmd`.
fn image_config(layer_digest: &str, entrypoint: Option<Vec<&str>>, cmd: Vec<&str>) -> Vec<u8> {
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Env": [PATH_ENV], "Entrypoint": entrypoint, "Cmd": cmd, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "flotilla agent: busybox-static"}],
    });
    config.to_string().into_bytes()
}

/// Writes a docker-archive holding the busybox and pause images to `path`.
pub fn write_archive(path: &Path) -> Result<(), Error> {
    let layer = layer()?;
    let layer_digest = sha256_hex(&layer);
    let busybox = image_config(&layer_digest, None, vec!["sh"]);
    let pause = image_config(&layer_digest, Some(vec!["/bin/sh", "-c", PAUSE_SCRIPT]), vec![]);
    let (busybox_name, pause_name) = (format!("{}.json", sha256_hex(&busybox)), format!("{}.json", sha256_hex(&pause)));
    let layer_name = format!("{layer_digest}/layer.tar");
    let manifest = json!([
        {"Config": busybox_name, "RepoTags": [BUSYBOX_IMAGE], "Layers": [layer_name]},
        {"Config": pause_name, "RepoTags": [PAUSE_IMAGE], "Layers": [layer_name]},
    ])
    .to_string();
    let out = std::fs::File::create(path).map_err(io("creating", path))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(out));
    let entries: [(&str, &[u8]); 4] = [
        (&layer_name, &layer),
        (&busybox_name, &busybox),
        (&pause_name, &pause),
        ("manifest.json", manifest.as_bytes()),
    ];
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_mtime(0);
        tar.append_data(&mut header, name, data).map_err(io("writing", path))?;
    }
    let mut inner = tar.into_inner().map_err(io("writing", path))?;
    inner.flush().map_err(io("writing", path))
}

/// Imports an image archive (docker-archive or OCI layout tar) into the `k8s.io` namespace
/// of the containerd at `socket`, where CRI sees it.
pub async fn import(socket: &Path, file: &Path) -> Result<(), Error> {
    let out = tokio::process::Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["-n", "k8s.io", "images", "import"])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(io("running ctr for", file))?;
    if !out.status.success() {
        return Err(Error::Import {
            file: file.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Makes sure the node's own images are in the store: builds their archive in `dir` and
/// imports it (both take well under a second).
pub async fn import_node_images(socket: &Path, dir: &Path) -> Result<(), Error> {
    let file = dir.join("flotilla-images.tar");
    write_archive(&file)?;
    import(socket, &file).await?;
    tracing::info!(images = ?[BUSYBOX_IMAGE, PAUSE_IMAGE], "node images imported");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_archive_names_both_images_over_one_layer_whose_digest_matches() {
        if !Path::new(BUSYBOX_BINARY).exists() {
            eprintln!("skipped: no {BUSYBOX_BINARY}");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.tar");
        write_archive(&path).unwrap();
        let mut archive = tar::Archive::new(std::fs::File::open(&path).unwrap());
        let mut files = std::collections::HashMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            files.insert(name, data);
        }
        let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        let tags: Vec<&str> = manifest.as_array().unwrap().iter().map(|m| m["RepoTags"][0].as_str().unwrap()).collect();
        assert_eq!(tags, [BUSYBOX_IMAGE, PAUSE_IMAGE]);
        let layer_name = manifest[0]["Layers"][0].as_str().unwrap();
        let layer = &files[layer_name];
        let config: serde_json::Value =
            serde_json::from_slice(&files[manifest[1]["Config"].as_str().unwrap()]).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], format!("sha256:{}", sha256_hex(layer)));
        assert_eq!(config["config"]["Entrypoint"][2], PAUSE_SCRIPT);
        // The layer has the binary and an `sh` link to it.
        let mut names = Vec::new();
        for entry in tar::Archive::new(&layer[..]).entries().unwrap() {
            names.push(entry.unwrap().path().unwrap().display().to_string());
        }
        assert!(names.contains(&"bin/busybox".to_string()));
        assert!(names.contains(&"bin/sh".to_string()));
    }
}
