//! The few resource quantities the agent reads from flags and writes into Node status:
//! CPU in millicores, memory in bytes, in Kubernetes' canonical notation.

/// A quantity flag that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a valid {1} quantity")]
pub struct BadQuantity(pub String, pub &'static str);

/// `4`, `2.5` or `3500m` as millicores.
pub fn parse_cpu(s: &str) -> Result<u64, BadQuantity> {
    let bad = || BadQuantity(s.to_string(), "cpu");
    if let Some(milli) = s.strip_suffix('m') {
        return milli.parse().map_err(|_| bad());
    }
    let cores: f64 = s.parse().map_err(|_| bad())?;
    if !cores.is_finite() || cores < 0.0 {
        return Err(bad());
    }
    Ok((cores * 1000.0).round() as u64)
}

/// Millicores as kube writes them: whole cores plainly, else `NNNm`.
pub fn format_cpu(millicores: u64) -> String {
    if millicores.is_multiple_of(1000) {
        (millicores / 1000).to_string()
    } else {
        format!("{millicores}m")
    }
}

/// `16Gi`, `512Mi`, `1G`, `1000000` as bytes.
pub fn parse_memory(s: &str) -> Result<u64, BadQuantity> {
    const SUFFIXES: [(&str, u64); 10] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
    ];
    let bad = || BadQuantity(s.to_string(), "memory");
    let (number, multiplier) =
        SUFFIXES.iter().find_map(|(suffix, m)| s.strip_suffix(suffix).map(|n| (n, *m))).unwrap_or((s, 1));
    let value: u64 = number.parse().map_err(|_| bad())?;
    value.checked_mul(multiplier).ok_or_else(bad)
}

/// Bytes in binary notation as kube canonicalises it: the largest of `Gi`/`Mi`/`Ki` that
/// divides evenly, else plain bytes.
pub fn format_memory(bytes: u64) -> String {
    for (suffix, unit) in [("Ti", 1u64 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_round_trip_through_millicores() {
        assert_eq!(parse_cpu("4"), Ok(4000));
        assert_eq!(parse_cpu("2.5"), Ok(2500));
        assert_eq!(parse_cpu("3500m"), Ok(3500));
        assert!(parse_cpu("four").is_err());
        assert!(parse_cpu("-1").is_err());
        assert_eq!(format_cpu(4000), "4");
        assert_eq!(format_cpu(2500), "2500m");
    }

    #[test]
    fn memory_quantities_parse_and_format_canonically() {
        assert_eq!(parse_memory("16Gi"), Ok(16 << 30));
        assert_eq!(parse_memory("512Mi"), Ok(512 << 20));
        assert_eq!(parse_memory("1G"), Ok(1_000_000_000));
        assert_eq!(parse_memory("1000"), Ok(1000));
        assert!(parse_memory("16GB").is_err());
        assert!(parse_memory("99999999Pi").is_err());
        assert_eq!(format_memory(16 << 30), "16Gi");
        assert_eq!(format_memory((16 << 30) - (100 << 20)), "16284Mi");
        assert_eq!(format_memory(16_318_348 * 1024), "16318348Ki");
        assert_eq!(format_memory(1000), "1000");
    }
}
