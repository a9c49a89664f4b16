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
        assert!(first_saved.contains("--reject-with tcp-reset"), "{first_saved}");
        // The second sync removed the services that went, and kept the rest.
        assert!(!saved.contains(&two), "{saved}");
        assert!(saved.contains(&ports[2].chain()), "{saved}");
        assert_eq!(rules::saved_chains(&saved), second.chains);
    }

    /// Two "pods" (network namespaces on a bridge in a "node" namespace, as the CNI bridge
    /// plugin wires them) behind a cluster IP, with `busybox httpd` each: what `pod 1`
    /// fetches from the cluster IP eight times, with `br_netfilter` on or off in the node.
    fn fetch_through_a_bridge(local: &LocalTraffic, bridge_nf: bool, endpoints: &[u8], tries: usize) -> Option<String> {
        if std::process::Command::new("busybox").arg("true").status().map(|s| !s.success()).unwrap_or(true) {
            return None;
        }
        let mut sp = port("web", Protocol::Tcp, None, None, 0);
        sp.cluster_ip = Ipv4Addr::new(10, 96, 0, 10);
        sp.endpoints = endpoints.iter().map(|&i| Endpoint { ip: Ipv4Addr::new(10, 9, 0, 1 + i), port: 8080 }).collect();
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules");
        std::fs::write(&rules, render(&[sp], local, &BTreeSet::new()).text).unwrap();
        let jumps: Vec<String> = jumps()
            .into_iter()
            .map(|(table, chain, rule)| {
                let rule: Vec<String> = rule.iter().map(|a| format!("'{a}'")).collect();
                format!("ip netns exec $N iptables -t {table} -I {chain} 1 {}", rule.join(" "))
            })
            .collect();
        let id = std::process::id();
        let script = format!(
            r#"set -e
N=flo-node-{id}; P1=flo-p1-{id}; P2=flo-p2-{id}; D={dir}
cleanup() {{ kill $S1 $S2 2>/dev/null || true; for n in $N $P1 $P2; do ip netns del $n 2>/dev/null || true; done; }}
trap cleanup EXIT
ip netns add $N; ip netns add $P1; ip netns add $P2
ip -n $N link set lo up
ip -n $N link add br0 type bridge
ip -n $N addr add 10.9.0.1/24 dev br0
ip -n $N link set br0 up
# Only where br_netfilter's switch is per network namespace (never flip the host's).
ip netns exec $N test -e /proc/sys/net/bridge/bridge-nf-call-iptables || {{ echo SKIP; exit 0; }}
ip netns exec $N sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables={nf}
# A default route, as a real node has: what is not DNATed is forwarded (and rejected).
ip -n $N link add up0 type veth peer name up1
ip -n $N addr add 192.0.2.1/24 dev up0
ip -n $N link set up0 up
ip -n $N link set up1 up
ip -n $N route add default via 192.0.2.2
for i in 1 2; do
  P=flo-p$i-{id}
  ip -n $N link add v$i type veth peer name eth0 netns $P
  ip -n $N link set v$i master br0
  ip -n $N link set v$i type bridge_slave hairpin on
  ip -n $N link set v$i up
  ip -n $P link set lo up
  ip -n $P addr add 10.9.0.$((i + 1))/24 dev eth0
  ip -n $P link set eth0 up
  ip -n $P route add default via 10.9.0.1
  mkdir -p $D/www$i; echo pod$i > $D/www$i/index.html
done
ip netns exec $P1 busybox httpd -f -p 8080 -h $D/www1 & S1=$!
ip netns exec $P2 busybox httpd -f -p 8080 -h $D/www2 & S2=$!
ip netns exec $N iptables-restore --noflush < {rules}
{jumps}
for i in $(seq {tries}); do
  ip netns exec $P1 busybox timeout 1 busybox wget -qO- http://10.96.0.10:80/ 2>&1 || true
done
"#,
            dir = dir.path().display(),
            nf = u8::from(bridge_nf),
            rules = rules.display(),
            tries = tries,
            jumps = jumps.join("\n"),
        );
        in_scratch_netns(&script).filter(|out| out.trim() != "SKIP")
    }

    /// The data path, without containerd: a pod reaches both endpoints of a cluster IP,
    /// itself included (hairpin), when bridged replies go through iptables (`br_netfilter`)
    /// or, without it, when all service traffic is masqueraded; without either, replies
    /// from a pod of the same bridge skip the reverse NAT and never arrive. No ready
    /// endpoint: refused at once.
    #[test]
    fn pods_on_a_bridge_reach_a_cluster_ip_with_or_without_br_netfilter() {
        let bridge = LocalTraffic::Bridge("br0".into());
        let Some(out) = fetch_through_a_bridge(&bridge, true, &[1, 2], 12) else {
            eprintln!("skipped: not root, no unshare or busybox, or no per-namespace br_netfilter");
            return;
        };
        assert!(out.contains("pod1") && out.contains("pod2"), "br_netfilter on: {out}");
        let out = fetch_through_a_bridge(&LocalTraffic::MasqueradeAll, false, &[1, 2], 12).unwrap();
        assert!(out.contains("pod1") && out.contains("pod2"), "br_netfilter off, all masqueraded: {out}");
        let out = fetch_through_a_bridge(&bridge, false, &[2], 1).unwrap();
        assert!(!out.contains("pod2"), "br_netfilter off, pod traffic not masqueraded: {out}");
        let out = fetch_through_a_bridge(&bridge, true, &[], 3).unwrap();
        assert!(out.lines().all(|l| l.contains("Connection refused")), "no endpoints: {out}");
    }
}
