//! Resource quantities as apimachinery's `resource.Quantity` adds, compares and prints them
//! (the canonical form: `1500m`, `2k`, `1Gi`, `1536Mi`), for LimitRanger's messages and
//! ResourceQuota's `status.used`. Values are kept in milli-units (sub-milli amounts round up,
//! as `MilliValue()` does); parsing reuses the scheduler's.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

/// How a quantity prints, as the one it was parsed from (Go's `resource.Format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `1Ki`, `5Mi`: powers of 1024.
    BinarySI,
    /// `500m`, `2k`: powers of 1000.
    #[default]
    DecimalSI,
    /// `1e3`.
    DecimalExponent,
}

/// One quantity.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quantity {
    milli: i128,
    format: Format,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.milli == other.milli
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.milli.cmp(&other.milli)
    }
}

impl Quantity {
    /// `n` whole units, printed in decimal (`resource.NewQuantity(n, DecimalSI)`).
    pub fn units(n: i64) -> Quantity {
        Quantity { milli: i128::from(n) * 1000, format: Format::DecimalSI }
    }

    /// A quantity from JSON (a string such as `"500m"`, or a number); `None` if it is not one.
    pub fn parse(value: &Value) -> Option<Quantity> {
        let milli = crate::scheduler::resources::scaled(value, 3)?;
        // Past i64 in milli-units (9.2 PB and up): keep whole units instead.
        let milli = if milli == i64::MAX || milli == i64::MIN {
            i128::from(crate::scheduler::resources::scaled(value, 0)?) * 1000
        } else {
            i128::from(milli)
        };
        let text = match value {
            Value::String(s) => s.trim().to_string(),
            other => other.to_string(),
        };
        let format = if text.ends_with('i') {
            Format::BinarySI
        } else if text.contains(['e', 'E']) {
            Format::DecimalExponent
        } else {
            Format::DecimalSI
        };
        Some(Quantity { milli, format })
    }

    /// The value in milli-units (`MilliValue()`).
    pub fn milli(&self) -> i128 {
        self.milli
    }

    pub fn is_zero(&self) -> bool {
        self.milli == 0
    }

    /// Adds `other`; a zero quantity takes the other's format, as Go's `Add` does.
    pub fn add(&mut self, other: Quantity) {
        if self.milli == 0 {
            self.format = other.format;
        }
        self.milli = self.milli.saturating_add(other.milli);
    }

    /// Subtracts `other`, as Go's `Sub`.
    pub fn sub(&mut self, other: Quantity) {
        if self.milli == 0 {
            self.format = other.format;
        }
        self.milli = self.milli.saturating_sub(other.milli);
    }

    /// As JSON: the canonical string.
    pub fn to_json(self) -> Value {
        Value::String(self.to_string())
    }
}

/// Removes factors of `base` from `n`: what is left, and how many went.
fn remove_factors(mut n: i128, base: i128) -> (i128, i32) {
    let mut times = 0;
    while n != 0 && n % base == 0 {
        n /= base;
        times += 1;
    }
    (n, times)
}

impl fmt::Display for Quantity {
    /// Go's `Quantity.String()`: the canonical form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.milli == 0 {
            return f.write_str("0");
        }
        let mut format = self.format;
        if format == Format::BinarySI && (self.milli.abs() < 1_024_000 || self.milli % 1000 != 0) {
            // Small or fractional binary amounts print in decimal (no rounding).
            format = Format::DecimalSI;
        }
        if format == Format::BinarySI {
            let (amount, times) = remove_factors(self.milli / 1000, 1024);
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            return match suffix.get(times as usize) {
                Some(s) => write!(f, "{amount}{s}"),
                None => write!(f, "{}", self.milli / 1000),
            };
        }
        let (mut amount, times) = remove_factors(self.milli, 10);
        let mut exponent = times - 3;
        // The exponent goes down to a multiple of 3.
        match exponent.rem_euclid(3) {
            1 => {
                amount *= 10;
                exponent -= 1;
            }
            2 => {
                amount *= 100;
                exponent -= 2;
            }
            _ => {}
        }
        if format == Format::DecimalExponent {
            return match exponent {
                0 => write!(f, "{amount}"),
                e => write!(f, "{amount}e{e}"),
            };
        }
        let suffix = match exponent {
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            e => return write!(f, "{amount}e{e}"),
        };
        write!(f, "{amount}{suffix}")
    }
}

/// A `ResourceList`: resource name to quantity, in name order.
pub type ResourceList = BTreeMap<String, Quantity>;

/// The quantities of a JSON `ResourceList` (entries that are not quantities are skipped).
pub fn list_of(value: Option<&Value>) -> ResourceList {
    let entries = value.and_then(Value::as_object).into_iter().flatten();
    entries.filter_map(|(name, q)| Some((name.clone(), Quantity::parse(q)?))).collect()
}

/// A `ResourceList` as JSON, each quantity in its canonical form.
pub fn list_to_json(list: &ResourceList) -> Value {
    Value::Object(list.iter().map(|(k, v)| (k.clone(), v.to_json())).collect::<Map<String, Value>>())
}

/// `quota.Add`: every key of either, summed where both have it.
pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (name, q) in b {
        out.entry(name.clone()).or_default().add(*q);
    }
    out
}

/// Adds `b` into `total`, key by key (`addResourceList`).
pub fn add_into(total: &mut ResourceList, b: &ResourceList) {
    for (name, q) in b {
        total.entry(name.clone()).or_default().add(*q);
    }
}

/// Sets each of `total`'s entries to the larger of it and `b`'s (`maxResourceList`).
pub fn max_into(total: &mut ResourceList, b: &ResourceList) {
    for (name, q) in b {
        match total.get_mut(name) {
            Some(current) if *current >= *q => {}
            Some(current) => *current = *q,
            None => {
                total.insert(name.clone(), *q);
            }
        }
    }
}

/// `quota.Mask`: only the entries named in `names`.
pub fn mask(list: &ResourceList, names: &[String]) -> ResourceList {
    list.iter().filter(|(k, _)| names.contains(k)).map(|(k, v)| (k.clone(), *v)).collect()
}

/// `name=quantity` pairs in name order, joined by commas (the quota admission's `prettyPrint`).
pub fn pretty(list: &ResourceList) -> String {
    list.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(&json!(s)).unwrap()
    }

    #[test]
    fn quantities_print_in_their_canonical_form() {
        for (input, shown) in [
            ("1", "1"),
            ("500m", "500m"),
            ("1500m", "1500m"),
            ("2000m", "2"),
            ("0.5", "500m"),
            ("2000", "2k"),
            ("1Gi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1024", "1024"),
            ("512Ki", "512Ki"),
            ("1e3", "1e3"),
            ("0", "0"),
            ("100M", "100M"),
        ] {
            assert_eq!(q(input).to_string(), shown, "{input}");
        }
        assert_eq!(Quantity::parse(&json!(2)).unwrap().to_string(), "2");
        assert!(Quantity::parse(&json!("abc")).is_none());
    }

    #[test]
    fn sums_keep_the_first_non_zero_format() {
        let mut total = Quantity::default();
        total.add(q("512Mi"));
        total.add(q("512Mi"));
        assert_eq!(total.to_string(), "1Gi");
        let mut cpu = q("500m");
        cpu.add(q("1"));
        assert_eq!(cpu.to_string(), "1500m");
        cpu.sub(q("1500m"));
        assert_eq!(cpu.to_string(), "0");
        assert!(q("1") > q("999m") && q("1Ki") == q("1024"));
    }

    #[test]
    fn lists_add_mask_and_print() {
        let a = list_of(Some(&json!({"pods": "1", "requests.cpu": "500m"})));
        let b = list_of(Some(&json!({"pods": "2", "requests.memory": "1Gi"})));
        let sum = add(&a, &b);
        assert_eq!(pretty(&sum), "pods=3,requests.cpu=500m,requests.memory=1Gi");
        assert_eq!(pretty(&mask(&sum, &["pods".into()])), "pods=3");
        assert_eq!(list_to_json(&a), json!({"pods": "1", "requests.cpu": "500m"}));
    }
}
