//! Facts about the host from /proc and /etc (what kubelet learns from cAdvisor): CPUs,
//! memory, kernel, OS image, ids; and its usage now (CPU time, memory working set) for the
//! resource metrics of a real node.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

/// What a node reports about its machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub hostname: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

impl HostFacts {
    /// Reads this machine's facts; what cannot be read is left empty (or 1 CPU).
    pub fn read() -> HostFacts {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        HostFacts {
            hostname: read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "localhost".into()),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            memory_bytes: meminfo_kib(&meminfo, "MemTotal").unwrap_or(0) * 1024,
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
            os_image: os_image(&std::fs::read_to_string("/etc/os-release").unwrap_or_default()),
            machine_id: read_trimmed("/etc/machine-id").unwrap_or_default(),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
        }
    }
}

/// `PRETTY_NAME` of an os-release file, as kubelet's `osImage` ("Linux" without one).
pub fn os_image(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "Linux".into())
}

/// A `/proc/meminfo` field in KiB.
pub fn meminfo_kib(meminfo: &str, field: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The architecture as Go's `GOARCH` names it (`kubernetes.io/arch`).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The address this host reaches `server` from (the source address the kernel picks for
/// it: no packet is sent); loopback for a loopback server or when there is no route.
pub fn address_towards(server: &str) -> IpAddr {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let Some(target) = host_port(server) else { return loopback };
    if target.ip().is_loopback() {
        return loopback;
    }
    let bind: SocketAddr =
        if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    UdpSocket::bind(bind)
        .and_then(|socket| {
            socket.connect(target)?;
            socket.local_addr()
        })
        .map_or(loopback, |local| local.ip())
}

/// The socket address of `https://host:port/...`, resolving a name.
fn host_port(url: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next()?;
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_string()
    } else {
        format!("{authority}:443")
    };
    with_port.to_socket_addrs().ok()?.next()
}

/// Usage of the whole machine now: cumulative CPU seconds and memory working set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostUsage {
    pub cpu_seconds: f64,
    pub memory_working_set: u64,
}

/// Clock ticks per second of /proc/stat (`USER_HZ`, 100 on every Linux architecture
/// kubelet supports).
const USER_HZ: f64 = 100.0;

impl HostUsage {
    pub fn read() -> Option<HostUsage> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        HostUsage::parse(&stat, &meminfo)
    }

    /// CPU: the busy ticks of the `cpu` line (all but idle and iowait; guest time is already
    /// in user). Memory: as cAdvisor's root cgroup, usage less inactive file pages.
    pub fn parse(stat: &str, meminfo: &str) -> Option<HostUsage> {
        let cpu_line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let ticks: Vec<u64> = cpu_line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal
        let busy: u64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
        let total = meminfo_kib(meminfo, "MemTotal")?;
        let free = meminfo_kib(meminfo, "MemFree")?;
        let inactive_file = meminfo_kib(meminfo, "Inactive(file)").unwrap_or(0);
        Some(HostUsage {
            cpu_seconds: busy as f64 / USER_HZ,
            memory_working_set: total.saturating_sub(free).saturating_sub(inactive_file) * 1024,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const MEMINFO: &str = "MemTotal:       16318348 kB\nMemFree:         1000000 kB\nMemAvailable:    9000000 kB\nInactive(file):  2000000 kB\n";

    #[test]
    fn meminfo_fields_and_os_release_names_are_read() {
        assert_eq!(meminfo_kib(MEMINFO, "MemTotal"), Some(16_318_348));
        assert_eq!(meminfo_kib(MEMINFO, "Mem"), None);
        assert_eq!(
            os_image("NAME=Debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(os_image(""), "Linux");
    }

    #[test]
    fn usage_counts_busy_ticks_and_the_working_set() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n";
        let usage = HostUsage::parse(stat, MEMINFO).unwrap();
        assert_eq!(usage.cpu_seconds, 1.61);
        assert_eq!(usage.memory_working_set, (16_318_348 - 1_000_000 - 2_000_000) * 1024);
    }

    #[test]
    fn this_host_has_facts() {
        let facts = HostFacts::read();
        assert!(facts.cpus >= 1);
        assert!(facts.memory_bytes > 0);
        assert!(HostUsage::read().is_some());
    }

    #[test]
    fn a_loopback_server_is_reached_from_loopback() {
        assert_eq!(address_towards("https://127.0.0.1:6443"), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(address_towards("not a url"), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
}
