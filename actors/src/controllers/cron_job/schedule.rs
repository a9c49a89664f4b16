//! Cron schedules as kube's CronJob controller reads them (robfig/cron's `ParseStandard`):
//! five fields (minute, hour, day of month, month, day of week) with `*`, `?`, lists,
//! ranges, steps and month and weekday names, or a descriptor (`@yearly`, `@annually`,
//! `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`, `@every <duration>`). Times are
//! wall-clock times of the schedule's zone ([`PrimitiveDateTime`]); days match when the
//! day of month or the day of week does, unless either is `*` (then both must).

use time::{Date, Duration, Month, PrimitiveDateTime, Time};

/// Set in a field's bits when it was `*` or `?`.
const STAR: u64 = 1 << 63;
/// Searches give up this many years past the start (as robfig/cron).
const YEARS: i32 = 5;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Fields(Fields),
    /// `@every`: a fixed delay (whole seconds, at least one) after the previous run.
    Every(Duration),
}

/// The matching values of each field, as bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds { min: 0, max: 59, names: &[] };
const HOURS: Bounds = Bounds { min: 0, max: 23, names: &[] };
const DOM: Bounds = Bounds { min: 1, max: 31, names: &[] };
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
};
const DOW: Bounds = Bounds { min: 0, max: 6, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"] };

/// Parses a schedule; the error is robfig/cron's message.
pub fn parse(spec: &str) -> Result<Schedule, String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    if let Some(descriptor) = spec.strip_prefix('@') {
        return descriptor_schedule(descriptor, spec);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("expected exactly 5 fields, found {}: [{}]", fields.len(), fields.join(" ")));
    }
    Ok(Schedule::Fields(Fields {
        minute: field(fields[0], &MINUTES)?,
        hour: field(fields[1], &HOURS)?,
        dom: field(fields[2], &DOM)?,
        month: field(fields[3], &MONTHS)?,
        dow: field(fields[4], &DOW)?,
    }))
}

fn descriptor_schedule(descriptor: &str, spec: &str) -> Result<Schedule, String> {
    let all = |b: &Bounds| bits(b.min, b.max, 1) | STAR;
    let fields = |minute: u64, hour: u64, dom: u64, month: u64, dow: u64| {
        Ok(Schedule::Fields(Fields { minute, hour, dom, month, dow }))
    };
    match descriptor {
        "yearly" | "annually" => fields(1, 1, 1 << 1, 1 << 1, all(&DOW)),
        "monthly" => fields(1, 1, 1 << 1, all(&MONTHS), all(&DOW)),
        "weekly" => fields(1, 1, all(&DOM), all(&MONTHS), 1),
        "daily" | "midnight" => fields(1, 1, all(&DOM), all(&MONTHS), all(&DOW)),
        "hourly" => fields(1, all(&HOURS), all(&DOM), all(&MONTHS), all(&DOW)),
        _ => match descriptor.strip_prefix("every ") {
            Some(text) => {
                let d = go_duration(text.trim()).map_err(|e| format!("failed to parse duration {spec}: {e}"))?;
                let whole = Duration::seconds(d.whole_seconds().max(1));
                Ok(Schedule::Every(whole))
            }
            None => Err(format!("unrecognized descriptor: {spec}")),
        },
    }
}

/// A Go duration (`1h30m`, `90s`, `1.5h`, `500ms`).
fn go_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let nanos = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total += number * nanos;
    }
    if !total.is_finite() || total > i64::MAX as f64 {
        return Err(invalid());
    }
    Ok(Duration::nanoseconds(total as i64))
}

fn bits(min: u32, max: u32, step: u32) -> u64 {
    (min..=max).step_by(step.max(1) as usize).fold(0, |acc, v| acc | 1 << v)
}

/// One field: comma-separated ranges.
fn field(text: &str, bounds: &Bounds) -> Result<u64, String> {
    text.split(',').try_fold(0, |acc, part| Ok(acc | range(part, bounds)?))
}

fn number_or_name(text: &str, bounds: &Bounds) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = bounds.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + bounds.min);
    }
    text.parse::<u32>()
        .map_err(|_| format!("failed to parse int from {text}: strconv.Atoi: parsing {text:?}: invalid syntax"))
}

/// `*`, `?`, `a`, `a-b`, each optionally `/step` (robfig's `getRange`).
fn range(expr: &str, bounds: &Bounds) -> Result<u64, String> {
    let mut range_and_step = expr.split('/');
    let low_high = range_and_step.next().unwrap_or("");
    let step_text = range_and_step.next();
    if range_and_step.next().is_some() {
        return Err(format!("too many slashes: {expr}"));
    }
    let parts: Vec<&str> = low_high.split('-').collect();
    let (start, mut end, mut extra) = if low_high == "*" || low_high == "?" {
        (bounds.min, bounds.max, STAR)
    } else {
        let start = number_or_name(parts[0], bounds)?;
        match parts.len() {
            1 => (start, start, 0),
            2 => (start, number_or_name(parts[1], bounds)?, 0),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match step_text {
        None => 1,
        Some(s) => {
            let step = s
                .parse::<u32>()
                .map_err(|_| format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax"))?;
            // `N/step` means `N-max/step`.
            if parts.len() == 1 && extra == 0 {
                end = bounds.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
    };
    if start < bounds.min {
        return Err(format!("beginning of range ({start}) below minimum ({}): {expr}", bounds.min));
    }
    if end > bounds.max {
        return Err(format!("end of range ({end}) above maximum ({}): {expr}", bounds.max));
    }
    if start > end {
        return Err(format!("beginning of range ({start}) beyond end of range ({end}): {expr}"));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(bits(start, end, step) | extra)
}

fn has(bits: u64, v: u32) -> bool {
    bits & (1 << v) != 0
}

impl Fields {
    fn day_matches(&self, date: Date) -> bool {
        let dom = has(self.dom, u32::from(date.day()));
        let dow = has(self.dow, u32::from(date.weekday().number_days_from_sunday()));
        if self.dom & STAR != 0 || self.dow & STAR != 0 {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first matching minute after `t` (robfig's `SpecSchedule.Next`).
    fn next(&self, t: PrimitiveDateTime) -> Option<PrimitiveDateTime> {
        let mut t = truncate(t).checked_add(Duration::minutes(1))?;
        let limit = t.year() + YEARS;
        'wrap: loop {
            if t.year() > limit {
                return None;
            }
            while !has(self.month, u32::from(u8::from(t.month()))) {
                t = first_of_next_month(t.date())?.midnight();
                if t.month() == Month::January {
                    continue 'wrap;
                }
            }
            while !self.day_matches(t.date()) {
                let month = t.month();
                t = t.date().next_day()?.midnight();
                if t.month() != month {
                    continue 'wrap;
                }
            }
            while !has(self.hour, u32::from(t.hour())) {
                let day = t.date();
                t = truncate_hour(t).checked_add(Duration::hours(1))?;
                if t.date() != day {
                    continue 'wrap;
                }
            }
            while !has(self.minute, u32::from(t.minute())) {
                let hour = t.hour();
                t = t.checked_add(Duration::minutes(1))?;
                if t.hour() != hour {
                    continue 'wrap;
                }
            }
            return Some(t);
        }
    }

    /// The last matching minute at or before `t`.
    fn prev(&self, t: PrimitiveDateTime) -> Option<PrimitiveDateTime> {
        let mut t = truncate(t);
        let limit = t.year() - YEARS;
        'wrap: loop {
            if t.year() < limit {
                return None;
            }
            while !has(self.month, u32::from(u8::from(t.month()))) {
                // The last minute of the previous month.
                t = first_of_month(t.date()).midnight().checked_sub(Duration::minutes(1))?;
                if t.month() == Month::December {
                    continue 'wrap;
                }
            }
            while !self.day_matches(t.date()) {
                let month = t.month();
                t = t.date().midnight().checked_sub(Duration::minutes(1))?;
                if t.month() != month {
                    continue 'wrap;
                }
            }
            while !has(self.hour, u32::from(t.hour())) {
                let day = t.date();
                t = truncate_hour(t).checked_sub(Duration::minutes(1))?;
                if t.date() != day {
                    continue 'wrap;
                }
            }
            while !has(self.minute, u32::from(t.minute())) {
                let hour = t.hour();
                t = t.checked_sub(Duration::minutes(1))?;
                if t.hour() != hour {
                    continue 'wrap;
                }
            }
            return Some(t);
        }
    }
}

fn truncate(t: PrimitiveDateTime) -> PrimitiveDateTime {
    PrimitiveDateTime::new(t.date(), Time::from_hms(t.hour(), t.minute(), 0).unwrap_or(Time::MIDNIGHT))
}

fn truncate_hour(t: PrimitiveDateTime) -> PrimitiveDateTime {
    PrimitiveDateTime::new(t.date(), Time::from_hms(t.hour(), 0, 0).unwrap_or(Time::MIDNIGHT))
}

fn first_of_month(d: Date) -> Date {
    d.replace_day(1).unwrap_or(d)
}

fn first_of_next_month(d: Date) -> Option<Date> {
    let (year, month) = match d.month() {
        Month::December => (d.year() + 1, Month::January),
        m => (d.year(), m.next()),
    };
    Date::from_calendar_date(year, month, 1).ok()
}

impl Schedule {
    /// The first run after `t` (`None` if none within five years).
    pub fn next(&self, t: PrimitiveDateTime) -> Option<PrimitiveDateTime> {
        match self {
            Schedule::Fields(f) => f.next(t),
            Schedule::Every(d) => {
                let whole = t.replace_nanosecond(0).unwrap_or(t);
                whole.checked_add(*d)
            }
        }
    }

    /// The latest run in `(earliest, now]` and how many runs there are in it, counted up
    /// to `cap` (kube's `mostRecentScheduleTime`).
    pub fn most_recent(
        &self,
        earliest: PrimitiveDateTime,
        now: PrimitiveDateTime,
        cap: usize,
    ) -> Option<(PrimitiveDateTime, usize)> {
        let first = self.next(earliest)?;
        if first > now {
            return None;
        }
        let latest = match self {
            Schedule::Fields(f) => f.prev(now)?,
            Schedule::Every(d) => {
                let periods = (now - first).whole_seconds() / d.whole_seconds().max(1);
                first.checked_add(Duration::seconds(periods.saturating_mul(d.whole_seconds())))?
            }
        };
        let mut missed = 1;
        let mut t = first;
        while missed <= cap {
            match self.next(t) {
                Some(n) if n <= now => {
                    missed += 1;
                    t = n;
                }
                _ => break,
            }
        }
        Some((latest, missed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(text: &str) -> PrimitiveDateTime {
        let rfc3339 = format!("{}Z", text.replace(' ', "T"));
        let at = time::OffsetDateTime::parse(&rfc3339, &time::format_description::well_known::Rfc3339).unwrap();
        PrimitiveDateTime::new(at.date(), at.time())
    }

    fn next(spec: &str, t: PrimitiveDateTime) -> PrimitiveDateTime {
        parse(spec).unwrap().next(t).unwrap()
    }

    #[test]
    fn every_minute_runs_at_the_next_whole_minute() {
        assert_eq!(next("*/1 * * * *", dt("2024-01-01 10:00:30")), dt("2024-01-01 10:01:00"));
        assert_eq!(next("* * * * *", dt("2024-01-01 10:00:00")), dt("2024-01-01 10:01:00"));
        assert_eq!(next("*/15 * * * *", dt("2024-01-01 10:50:00")), dt("2024-01-01 11:00:00"));
    }

    #[test]
    fn fields_take_lists_ranges_steps_and_names() {
        assert_eq!(next("5,10 2-4 * * *", dt("2024-01-01 04:10:00")), dt("2024-01-02 02:05:00"));
        assert_eq!(next("0 9 * * MON-fri", dt("2024-01-05 10:00:00")), dt("2024-01-08 09:00:00"));
        assert_eq!(next("0 0 1 jan,JUL *", dt("2024-02-01 00:00:00")), dt("2024-07-01 00:00:00"));
        assert_eq!(next("30 3/6 * * *", dt("2024-01-01 04:00:00")), dt("2024-01-01 09:30:00"));
        assert_eq!(next("0 0 29 2 *", dt("2024-03-01 00:00:00")), dt("2028-02-29 00:00:00"));
    }

    #[test]
    fn days_match_by_month_day_or_weekday_unless_one_is_a_star() {
        // The 13th, or any Friday.
        assert_eq!(next("0 0 13 * 5", dt("2024-01-01 00:00:00")), dt("2024-01-05 00:00:00"));
        // Fridays only.
        assert_eq!(next("0 0 * * 5", dt("2024-01-05 00:00:00")), dt("2024-01-12 00:00:00"));
    }

    #[test]
    fn descriptors_are_shorthands() {
        assert_eq!(next("@hourly", dt("2024-01-01 10:00:00")), dt("2024-01-01 11:00:00"));
        assert_eq!(next("@daily", dt("2024-01-01 10:00:00")), dt("2024-01-02 00:00:00"));
        assert_eq!(next("@midnight", dt("2024-01-01 10:00:00")), dt("2024-01-02 00:00:00"));
        assert_eq!(next("@weekly", dt("2024-01-01 10:00:00")), dt("2024-01-07 00:00:00"));
        assert_eq!(next("@monthly", dt("2024-01-01 10:00:00")), dt("2024-02-01 00:00:00"));
        assert_eq!(next("@yearly", dt("2024-01-01 10:00:00")), dt("2025-01-01 00:00:00"));
        assert_eq!(next("@every 1h30m", dt("2024-01-01 10:00:00")), dt("2024-01-01 11:30:00"));
    }

    #[test]
    fn bad_schedules_are_refused_in_robfigs_words() {
        assert_eq!(parse("* * * *").unwrap_err(), "expected exactly 5 fields, found 4: [* * * *]");
        assert_eq!(parse("60 * * * *").unwrap_err(), "end of range (60) above maximum (59): 60");
        assert_eq!(parse("5-1 * * * *").unwrap_err(), "beginning of range (5) beyond end of range (1): 5-1");
        assert_eq!(parse("*/0 * * * *").unwrap_err(), "step of range should be a positive number: */0");
        assert_eq!(parse("@fortnightly").unwrap_err(), "unrecognized descriptor: @fortnightly");
        assert!(parse("0 0 * * 7").is_err());
        assert!(parse("x * * * *").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn the_most_recent_run_counts_the_missed_ones() {
        let s = parse("*/5 * * * *").unwrap();
        assert_eq!(s.most_recent(dt("2024-01-01 10:00:00"), dt("2024-01-01 10:04:00"), 100), None);
        assert_eq!(
            s.most_recent(dt("2024-01-01 10:00:00"), dt("2024-01-01 10:17:00"), 100),
            Some((dt("2024-01-01 10:15:00"), 3))
        );
        let (latest, missed) = s.most_recent(dt("2024-01-01 00:00:00"), dt("2024-02-01 00:00:00"), 100).unwrap();
        assert_eq!((latest, missed), (dt("2024-02-01 00:00:00"), 101));
        let every = parse("@every 10m").unwrap();
        assert_eq!(
            every.most_recent(dt("2024-01-01 10:00:00"), dt("2024-01-01 10:35:00"), 100),
            Some((dt("2024-01-01 10:30:00"), 3))
        );
    }

    #[test]
    fn impossible_dates_never_run() {
        assert_eq!(parse("0 0 30 2 *").unwrap().next(dt("2024-01-01 00:00:00")), None);
    }
}
