//! Time zones for `spec.timeZone`, read from the system's tz database
//! (`/usr/share/zoneinfo`, TZif files as Go's `time.LoadLocation` reads them). Beyond the
//! last transition a file lists (2037 in "fat" files) the last offset holds.

use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Where the tz database is.
pub const ZONEINFO: &str = "/usr/share/zoneinfo";

/// A zone: UTC offsets and the instants they start at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// (transition time in Unix seconds, offset in seconds from then on), ascending.
    transitions: Vec<(i64, i32)>,
    /// The offset before the first transition (or always, without any).
    initial: i32,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone { transitions: Vec::new(), initial: 0 }
    }

    /// The zone named `name` (`""` and `UTC` are UTC), as Go's `time.LoadLocation`;
    /// the error is Go's.
    pub fn load(name: &str) -> Result<Zone, String> {
        if name.is_empty() || name == "UTC" {
            return Ok(Zone::utc());
        }
        let unknown = || format!("unknown time zone {name}");
        let safe = !name.starts_with('/')
            && !name.contains('\\')
            && name.split('/').all(|part| !part.is_empty() && part != "..")
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-+.".contains(&b));
        if !safe {
            return Err(unknown());
        }
        let bytes = std::fs::read(format!("{ZONEINFO}/{name}")).map_err(|_| unknown())?;
        parse_tzif(&bytes).ok_or_else(unknown)
    }

    /// The offset in force at `t`.
    pub fn offset_at(&self, unix: i64) -> UtcOffset {
        let i = self.transitions.partition_point(|(at, _)| *at <= unix);
        let seconds = if i == 0 { self.initial } else { self.transitions[i - 1].1 };
        UtcOffset::from_whole_seconds(seconds).unwrap_or(UtcOffset::UTC)
    }

    /// `t`'s wall-clock time in this zone.
    pub fn local(&self, t: OffsetDateTime) -> PrimitiveDateTime {
        let local = t.to_offset(self.offset_at(t.unix_timestamp()));
        PrimitiveDateTime::new(local.date(), local.time())
    }

    /// The instant of wall-clock time `local` (for a time skipped or repeated by a change
    /// of offset, one of the offsets around the change).
    pub fn instant(&self, local: PrimitiveDateTime) -> OffsetDateTime {
        let guess = self.offset_at(local.assume_utc().unix_timestamp());
        let offset = self.offset_at(local.assume_offset(guess).unix_timestamp());
        local.assume_offset(offset).to_offset(UtcOffset::UTC)
    }

    /// `t` with the zone's offset at that instant (for RFC 3339 in the zone).
    pub fn in_zone(&self, t: OffsetDateTime) -> OffsetDateTime {
        t.to_offset(self.offset_at(t.unix_timestamp()))
    }
}

fn be32(b: &[u8], at: usize) -> Option<i64> {
    let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(i64::from(i32::from_be_bytes(bytes)))
}

fn be64(b: &[u8], at: usize) -> Option<i64> {
    let bytes: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(i64::from_be_bytes(bytes))
}

/// A TZif file (RFC 8536): the 64-bit block of version 2+ files, else the 32-bit one.
fn parse_tzif(b: &[u8]) -> Option<Zone> {
    if b.get(0..4)? != b"TZif" {
        return None;
    }
    let counts = |at: usize| -> Option<[usize; 6]> {
        let mut c = [0usize; 6];
        for (i, slot) in c.iter_mut().enumerate() {
            *slot = usize::try_from(be32(b, at + 20 + 4 * i)?).ok()?;
        }
        Some(c)
    };
    let version = *b.get(4)?;
    let [isut, isstd, leap, time_count, type_count, chars] = counts(0)?;
    let v1_len = time_count * 4 + time_count + type_count * 6 + chars + leap * 8 + isstd + isut;
    let (start, time_size) = if version >= b'2' { (44 + v1_len, 8) } else { (0, 4) };
    let [isut, isstd, leap, time_count, type_count, chars] = counts(start)?;
    let _ = (isut, isstd, leap, chars);
    if type_count == 0 {
        return None;
    }
    let times_at = start + 44;
    let index_at = times_at + time_count * time_size;
    let types_at = index_at + time_count;
    let offset_of = |t: usize| be32(b, types_at + t * 6);
    let mut transitions = Vec::with_capacity(time_count);
    for i in 0..time_count {
        let at = if time_size == 8 { be64(b, times_at + i * 8)? } else { be32(b, times_at + i * 4)? };
        let t = usize::from(*b.get(index_at + i)?);
        if t >= type_count {
            return None;
        }
        transitions.push((at, i32::try_from(offset_of(t)?).ok()?));
    }
    // Before the first transition: the first standard-time type (RFC 8536 section 3.2).
    let initial = (0..type_count).find(|t| b.get(types_at + t * 6 + 4) == Some(&0)).unwrap_or(0);
    Some(Zone { transitions, initial: i32::try_from(offset_of(initial)?).ok()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    }

    #[test]
    fn unknown_and_unsafe_names_are_refused_as_go_does() {
        assert_eq!(Zone::load("Mars/Olympus").unwrap_err(), "unknown time zone Mars/Olympus");
        assert!(Zone::load("../etc/passwd").is_err());
        assert!(Zone::load("/etc/localtime").is_err());
        assert_eq!(Zone::load("").unwrap(), Zone::utc());
    }

    #[test]
    fn zones_of_the_tz_database_follow_daylight_saving() {
        // Only where the machine has the tz database.
        let Ok(ny) = Zone::load("America/New_York") else { return };
        assert_eq!(ny.offset_at(at("2024-01-15T12:00:00Z").unix_timestamp()).whole_hours(), -5);
        assert_eq!(ny.offset_at(at("2024-07-15T12:00:00Z").unix_timestamp()).whole_hours(), -4);
        let local = ny.local(at("2024-07-15T12:00:00Z"));
        assert_eq!((local.hour(), local.minute()), (8, 0));
        assert_eq!(ny.instant(local), at("2024-07-15T12:00:00Z"));
        let winter = ny.local(at("2024-01-15T12:00:00Z"));
        assert_eq!(ny.instant(winter), at("2024-01-15T12:00:00Z"));
    }

    #[test]
    fn a_time_zone_is_read_from_a_tzif_file() {
        // A version 1 file: one transition at 1000 from +01:00 to +02:00.
        let mut b = b"TZif".to_vec();
        b.extend([0u8; 16]);
        for count in [0u32, 0, 0, 1, 2, 0] {
            b.extend(count.to_be_bytes());
        }
        b.extend(1000i32.to_be_bytes());
        b.push(1);
        b.extend(3600i32.to_be_bytes());
        b.extend([0, 0]);
        b.extend(7200i32.to_be_bytes());
        b.extend([1, 0]);
        let zone = parse_tzif(&b).unwrap();
        assert_eq!(zone.offset_at(999).whole_seconds(), 3600);
        assert_eq!(zone.offset_at(1000).whole_seconds(), 7200);
        assert!(parse_tzif(b"TZif").is_none());
        assert!(parse_tzif(b"nope").is_none());
    }
}
