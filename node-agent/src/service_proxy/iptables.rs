//! Running the host's iptables: one atomic `iptables-restore --noflush` per sync (our
//! chains are declared, which empties them, and rewritten; other chains are left alone),
//! the jumps from the built-in chains to ours (checked with `-C`, inserted first with
//! `-I` when missing, as kube-proxy does every sync), `iptables-save` to find chains of
//! ours left from an earlier run, and the removal of all of it.

use std::collections::BTreeSet;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::rules::{self, POSTROUTING_CHAIN, SERVICES_CHAIN};

/// Running an iptables command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("running {program}: {source}")]
    Spawn { program: &'static str, source: std::io::Error },
    #[error("{program} {args} failed: {stderr}")]
    Failed { program: &'static str, args: String, stderr: String },
}

impl Error {
    /// The program is not installed.
    pub fn not_installed(&self) -> bool {
        matches!(self, Error::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// A jump from a built-in chain to one of ours: (table, chain, rule).
type Jump = (&'static str, &'static str, Vec<&'static str>);

/// The jumps into our chains.
fn jumps() -> Vec<Jump> {
    let portals = vec!["-m", "comment", "--comment", "flotilla service portals", "-j", SERVICES_CHAIN];
    let new_portals = [&["-m", "conntrack", "--ctstate", "NEW"][..], &portals].concat();
    let postrouting = vec!["-m", "comment", "--comment", "flotilla postrouting rules", "-j", POSTROUTING_CHAIN];
    vec![
        ("nat", "PREROUTING", portals.clone()),
        ("nat", "OUTPUT", portals),
        ("nat", "POSTROUTING", postrouting),
        ("filter", "INPUT", new_portals.clone()),
        ("filter", "FORWARD", new_portals.clone()),
        ("filter", "OUTPUT", new_portals),
    ]
}

/// Runs `program args` with `stdin`; its stdout when it exits 0.
async fn run(program: &'static str, args: &[&str], stdin: Option<&str>) -> Result<String, Error> {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| Error::Spawn { program, source })?;
    let input = child.stdin.take();
    let write = async move {
        if let (Some(mut input), Some(text)) = (input, stdin) {
            let _ = input.write_all(text.as_bytes()).await;
        }
    };
    let (_, output) = tokio::join!(write, child.wait_with_output());
    let output = output.map_err(|source| Error::Spawn { program, source })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::Failed {
            program,
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Applies `text` in one transaction, leaving chains it does not name alone.
pub async fn restore(text: &str) -> Result<(), Error> {
    run("iptables-restore", &["-w", "5", "--noflush"], Some(text)).await.map(|_| ())
}

/// The chains of ours now in the `filter` and `nat` tables.
pub async fn our_chains() -> Result<BTreeSet<(String, String)>, Error> {
    let mut chains = BTreeSet::new();
    for table in ["filter", "nat"] {
        chains.extend(rules::saved_chains(&run("iptables-save", &["-t", table], None).await?));
    }
    Ok(chains)
}

/// Makes sure every built-in chain jumps to ours (after our chains exist); how many jumps
/// had to be inserted.
pub async fn ensure_jumps() -> Result<usize, Error> {
    let mut inserted = 0;
    for (table, chain, rule) in jumps() {
        let check = [&["-w", "5", "-t", table, "-C", chain][..], &rule].concat();
        if run("iptables", &check, None).await.is_ok() {
            continue;
        }
        let insert = [&["-w", "5", "-t", table, "-I", chain, "1"][..], &rule].concat();
        run("iptables", &insert, None).await?;
        inserted += 1;
    }
    Ok(inserted)
}

/// Removes the jumps to our chains and the chains themselves; how many chains went.
pub async fn remove_all() -> Result<usize, Error> {
    for (table, chain, rule) in jumps() {
        let delete = [&["-w", "5", "-t", table, "-D", chain][..], &rule].concat();
        // A rule inserted twice (by hand, or by a race of two agents) is deleted twice.
        for _ in 0..8 {
            if run("iptables", &delete, None).await.is_err() {
                break;
            }
        }
    }
    let chains = our_chains().await?;
    if chains.is_empty() {
        return Ok(0);
    }
    restore(&rules::render_removal(&chains)).await?;
    Ok(chains.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::service_proxy::rules::{render, Endpoint, LocalTraffic, Protocol, ServicePort};
    use std::net::Ipv4Addr;

    fn port(name: &str, protocol: Protocol, node_port: Option<u16>, affinity: Option<u32>, n: u8) -> ServicePort {
        ServicePort {
            namespace: "default".into(),
            name: name.into(),
            port_name: String::new(),
            protocol,
            cluster_ip: Ipv4Addr::new(10, 96, 0, 10 + n),
            port: 80,
            node_port,
            affinity_seconds: affinity,
            endpoints: (0..n).map(|i| Endpoint { ip: Ipv4Addr::new(10, 244, 0, 4 + i), port: 8080 }).collect(),
        }
    }

    /// Runs `script` with the rules on stdin in a network namespace of its own (root only).
    fn in_scratch_netns(script: &str) -> Option<String> {
        let root = std::process::Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&root.stdout).trim() != "0" {
            return None;
        }
        let output = std::process::Command::new("unshare").args(["--net", "sh", "-c", script]).output().ok()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{script}: {}\n{text}", String::from_utf8_lossy(&output.stderr));
        Some(text)
    }

    /// The real iptables-restore takes what we render (syntax, modules, chain names), and a
    /// second sync deletes the chains no longer wanted.
    #[test]
    fn iptables_restore_accepts_the_rules_in_a_scratch_netns() {
        let ports = [
            port("two", Protocol::Tcp, Some(30080), None, 2),
            port("sticky", Protocol::Tcp, None, Some(60), 3),
            port("dns", Protocol::Udp, None, None, 1),
            port("empty", Protocol::Tcp, Some(30081), None, 0),
        ];
        let first = render(&ports, &LocalTraffic::Bridge("fl12345678".into()), &BTreeSet::new());
        let second = render(&ports[2..], &LocalTraffic::MasqueradeAll, &first.chains);
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("first"), dir.path().join("second"));
        std::fs::write(&a, &first.text).unwrap();
        std::fs::write(&b, &second.text).unwrap();
        let script = format!(
            "iptables-restore -w 5 --noflush < {a} && iptables-save > {a}.saved && \
             iptables-restore -w 5 --noflush < {b} && iptables-save",
            a = a.display(),
            b = b.display()
        );
        let Some(saved) = in_scratch_netns(&script) else {
            eprintln!("skipped: not root or no unshare");
            return;
        };
        let first_saved = std::fs::read_to_string(format!("{}.saved", a.display())).unwrap();
        let two = ports[0].chain();
        assert!(first_saved.contains(&format!(":{two} - [0:0]")), "{first_saved}");
        assert!(first_saved.contains("--probability 0.50000000000"), "{first_saved}");
        assert!(first_saved.contains("-j DNAT --to-destination 10.244.0.4:8080"), "{first_saved}");
        assert!(first_saved.contains("--reject-with icmp-port-unreachable"), "{first_saved}");
        // The second sync removed the services that went, and kept the rest.
        assert!(!saved.contains(&two), "{saved}");
        assert!(saved.contains(&ports[2].chain()), "{saved}");
        assert_eq!(rules::saved_chains(&saved), second.chains);
    }
}
