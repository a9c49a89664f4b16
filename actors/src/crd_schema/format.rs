//! The string `format`s kube-apiserver checks in CRD schemas (`date-time`, `uuid`, `byte`,
//! `ipv4`, ...). Formats it does not know are ignored, as kube strips them from the schema;
//! the numeric formats (`int32`, `double`, ...) only name a type and check nothing more.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use base64::Engine;
use regex::Regex;

/// Whether `value` is in `format`; `None` for a format that is not checked.
pub(super) fn check(format: &str, value: &str) -> Option<bool> {
    // go-openapi compares format names without dashes: `date-time` is `datetime`.
    let name = format.replace('-', "");
    let ok = match name.as_str() {
        "bsonobjectid" => value.len() == 24 && value.bytes().all(|b| b.is_ascii_hexdigit()),
        "uri" => is_uri(value),
        "email" => matches(&EMAIL, r"^(?:[^<>@\s]+\s*<[^<>@\s]+@[^<>@\s]+>|[^<>@\s]+@[^<>@\s]+)$", value),
        "hostname" => is_hostname(value),
        "ipv4" => value.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => value.contains(':') && value.parse::<Ipv6Addr>().is_ok(),
        "cidr" => is_cidr(value),
        "mac" => matches(
            &MAC,
            r"^(?:[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){7}|[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){19}|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){2,9})$",
            value,
        ),
        "uuid" => matches(&UUID, r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", value),
        "uuid3" => matches(&UUID3, r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$", value),
        "uuid4" => {
            matches(&UUID4, r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$", value)
        }
        "uuid5" => {
            matches(&UUID5, r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$", value)
        }
        "isbn" => is_isbn10(value) || is_isbn13(value),
        "isbn10" => is_isbn10(value),
        "isbn13" => is_isbn13(value),
        "creditcard" => is_credit_card(value),
        "ssn" => matches(&SSN, r"^\d{3}[- ]?\d{2}[- ]?\d{4}$", value),
        "hexcolor" => matches(&HEXCOLOR, r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$", value),
        "rgbcolor" => matches(
            &RGBCOLOR,
            r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$",
            value,
        ),
        "byte" => base64::engine::general_purpose::STANDARD.decode(value).is_ok(),
        "password" => true,
        "date" => is_date(value),
        "datetime" => is_date_time(value),
        "duration" => is_duration(value),
        "quantity" => matches(
            &QUANTITY,
            r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$",
            value,
        ),
        "k8sshortname" => value.len() <= 63 && matches(&SHORT_NAME, r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", value),
        "k8slongname" => {
            value.len() <= 253
                && matches(&LONG_NAME, r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", value)
        }
        _ => return None,
    };
    Some(ok)
}

static EMAIL: OnceLock<Option<Regex>> = OnceLock::new();
static MAC: OnceLock<Option<Regex>> = OnceLock::new();
static UUID: OnceLock<Option<Regex>> = OnceLock::new();
static UUID3: OnceLock<Option<Regex>> = OnceLock::new();
static UUID4: OnceLock<Option<Regex>> = OnceLock::new();
static UUID5: OnceLock<Option<Regex>> = OnceLock::new();
static SSN: OnceLock<Option<Regex>> = OnceLock::new();
static HEXCOLOR: OnceLock<Option<Regex>> = OnceLock::new();
static RGBCOLOR: OnceLock<Option<Regex>> = OnceLock::new();
static QUANTITY: OnceLock<Option<Regex>> = OnceLock::new();
static SHORT_NAME: OnceLock<Option<Regex>> = OnceLock::new();
static LONG_NAME: OnceLock<Option<Regex>> = OnceLock::new();
static DATE_TIME: OnceLock<Option<Regex>> = OnceLock::new();
static DURATION: OnceLock<Option<Regex>> = OnceLock::new();
static SCALA_DURATION: OnceLock<Option<Regex>> = OnceLock::new();

/// Matches `value` against a pattern compiled once; a pattern that fails to compile (a bug
/// here) accepts everything rather than panic.
fn matches(cell: &'static OnceLock<Option<Regex>>, pattern: &str, value: &str) -> bool {
    cell.get_or_init(|| Regex::new(pattern).ok()).as_ref().is_none_or(|re| re.is_match(value))
}

/// Go's `url.ParseRequestURI`: an absolute URI or an absolute path, without spaces.
fn is_uri(value: &str) -> bool {
    if value.is_empty() || value.chars().any(char::is_whitespace) {
        return false;
    }
    if value.starts_with('/') {
        return true;
    }
    match value.split_once(':') {
        Some((scheme, _)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// An RFC 1123 host name: dot-separated labels of letters, digits and inner dashes.
fn is_hostname(value: &str) -> bool {
    let value = value.strip_suffix('.').unwrap_or(value);
    !value.is_empty()
        && value.len() <= 255
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

/// Go's `net.ParseCIDR`: an address and a prefix length that fits it.
fn is_cidr(value: &str) -> bool {
    let Some((ip, bits)) = value.split_once('/') else { return false };
    let Ok(bits) = bits.parse::<u8>() else { return false };
    if bits.to_string().len() != value.len() - ip.len() - 1 {
        return false; // leading zeros or signs in the length
    }
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => bits <= 32,
        Ok(IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

/// A full date, `2006-01-02`, that exists.
fn is_date(value: &str) -> bool {
    let b = value.as_bytes();
    if !value.is_ascii() || b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |s: &str| s.parse::<u32>().ok().filter(|_| s.bytes().all(|c| c.is_ascii_digit()));
    let (Some(year), Some(month), Some(day)) = (num(&value[0..4]), num(&value[5..7]), num(&value[8..10])) else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// A date-time as go-openapi's strfmt parses it: RFC 3339, with or without seconds,
/// fractions and zone, `T` or a space between date and time.
fn is_date_time(value: &str) -> bool {
    let re = r"(?i)^(\d{4}-\d{2}-\d{2})[t ]([01]\d|2[0-3]):[0-5]\d(:([0-5]\d|60)(\.\d+)?)?(z|[+-]([01]\d|2[0-3]):?[0-5]\d)?$";
    let Some(re) = DATE_TIME.get_or_init(|| Regex::new(re).ok()).as_ref() else { return true };
    re.captures(value).and_then(|c| c.get(1)).is_some_and(|date| is_date(date.as_str()))
}

/// A duration as go-openapi's strfmt parses it: Go's `time.ParseDuration` (`1h30m`) or its
/// own `3 days`-like form.
fn is_duration(value: &str) -> bool {
    value == "0"
        || matches(&DURATION, r"^[-+]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+$", value)
        || matches(
            &SCALA_DURATION,
            r"^[0-9]+\s*(?:ns|nano|nanos|nanosecond|nanoseconds|us|µs|micro|micros|microsecond|microseconds|ms|milli|millis|millisecond|milliseconds|s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days|w|wk|wks|week|weeks)$",
            value,
        )
}

/// Digits of an ISBN without its separators.
fn isbn_digits(value: &str) -> String {
    value.chars().filter(|c| *c != '-' && *c != ' ').collect()
}

/// An ISBN-10 with a valid check digit.
fn is_isbn10(value: &str) -> bool {
    let s = isbn_digits(value);
    let b = s.as_bytes();
    if b.len() != 10 || !b[..9].iter().all(u8::is_ascii_digit) || !(b[9].is_ascii_digit() || b[9] == b'X') {
        return false;
    }
    let sum: u32 = b
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let d = if *c == b'X' { 10 } else { u32::from(c - b'0') };
            (i as u32 + 1) * d
        })
        .sum();
    sum.is_multiple_of(11)
}

/// An ISBN-13 with a valid check digit.
fn is_isbn13(value: &str) -> bool {
    let s = isbn_digits(value);
    let b = s.as_bytes();
    if b.len() != 13 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = b.iter().enumerate().map(|(i, c)| u32::from(c - b'0') * if i % 2 == 0 { 1 } else { 3 }).sum();
    sum.is_multiple_of(10)
}

/// A card number: 12 to 19 digits (other characters ignored) that pass the Luhn check.
fn is_credit_card(value: &str) -> bool {
    let digits: Vec<u32> = value.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(12..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                *d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}
