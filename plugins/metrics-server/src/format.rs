//! How the metrics API writes numbers and times: Kubernetes quantities in canonical form (as
//! `resource.Quantity` marshals them), Go durations (`metav1.Duration`) and RFC 3339 times
//! (`metav1.Time`).

/// CPU in nanocores as a canonical decimal quantity: `250m`, `1500u`, `12345n`, `2`.
pub fn cpu(nanocores: u64) -> String {
    decimal(u128::from(nanocores), -9)
}

/// Bytes as a canonical binary quantity: `512Mi`, `1536Ki`; amounts that are not a multiple
/// of 1024, or below 1024, come out as decimal quantities (`1000` is `1k`), as in Kubernetes.
pub fn bytes(amount: u64) -> String {
    if amount < 1024 {
        return decimal(u128::from(amount), 0);
    }
    const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let (mut value, mut power) = (amount, 0);
    while value.is_multiple_of(1024) && power < SUFFIXES.len() - 1 {
        value /= 1024;
        power += 1;
    }
    format!("{value}{}", SUFFIXES[power])
}

/// `value * 10^exponent` in canonical decimal SI form: the exponent a multiple of three, as
/// large as keeps the mantissa whole.
fn decimal(mut value: u128, mut exponent: i32) -> String {
    if value == 0 {
        return "0".into();
    }
    while value.is_multiple_of(10) {
        value /= 10;
        exponent += 1;
    }
    let scale_down = exponent.rem_euclid(3);
    value *= 10u128.pow(scale_down.unsigned_abs());
    exponent -= scale_down;
    let suffix = match exponent {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        // Beyond exa: Kubernetes switches to exponent notation.
        _ => return format!("{value}e{exponent}"),
    };
    format!("{value}{suffix}")
}

/// A duration in nanoseconds as Go's `time.Duration.String` writes it: `1.5s`, `1m0.25s`,
/// `250ms`, `0s`.
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    if u < 1_000_000_000 {
        let (unit, per) = match u {
            0..1_000 => ("ns", 1),
            1_000..1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{sign}{}{unit}", fraction(u, per));
    }
    let seconds = u / 1_000_000_000;
    let (hours, minutes) = (seconds / 3600, seconds / 60 % 60);
    let secs = fraction(seconds % 60 * 1_000_000_000 + u % 1_000_000_000, 1_000_000_000);
    match (hours, minutes) {
        (0, 0) => format!("{sign}{secs}s"),
        (0, m) => format!("{sign}{m}m{secs}s"),
        (h, m) => format!("{sign}{h}h{m}m{secs}s"),
    }
}

/// `value / per` with the fraction's trailing zeros (and a bare point) dropped.
fn fraction(value: u64, per: u64) -> String {
    let (whole, rest) = (value / per, value % per);
    if rest == 0 {
        return whole.to_string();
    }
    let width = per.ilog10() as usize;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A time (nanoseconds since the Unix epoch) as `metav1.Time` writes it: RFC 3339 in UTC,
/// whole seconds (`2026-01-02T03:04:05Z`).
pub fn rfc3339(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Now, in nanoseconds since the Unix epoch.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_written_with_the_largest_exact_suffix() {
        assert_eq!(cpu(0), "0");
        assert_eq!(cpu(250_000_000), "250m");
        assert_eq!(cpu(1_500_000), "1500u");
        assert_eq!(cpu(12_345), "12345n");
        assert_eq!(cpu(2_000_000_000), "2");
        assert_eq!(cpu(1_500_000_000), "1500m");
        assert_eq!(cpu(100), "100n");
        assert_eq!(cpu(2_000_000_000_000), "2k");
    }

    #[test]
    fn memory_is_binary_when_a_multiple_of_1024_else_plain_or_decimal() {
        assert_eq!(bytes(512 * 1024 * 1024), "512Mi");
        assert_eq!(bytes(1024 * 1024 * 1024), "1Gi");
        assert_eq!(bytes(1536 * 1024), "1536Ki");
        assert_eq!(bytes(1536), "1536");
        assert_eq!(bytes(1000), "1k");
        assert_eq!(bytes(512), "512");
        assert_eq!(bytes(0), "0");
    }

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(1_000_000_000), "1s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(20_004_000_000), "20.004s");
        assert_eq!(go_duration(60_250_000_000), "1m0.25s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(250_000_000), "250ms");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(999), "999ns");
        assert_eq!(go_duration(-1_500_000_000), "-1.5s");
    }

    #[test]
    fn times_are_rfc3339_utc_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_999_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00Z");
    }
}
