//! Times as operators read and give them: UTC to the minute in messages
//! and tables, RFC 3339 in JSON, and `--since` as a time or a time ago.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

/// `2026-12-01 12:00 UTC`: Unix milliseconds, to the minute.
pub fn utc_minute(ms: u64) -> String {
    let minute = format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    instant(ms)
        .format(&minute)
        .unwrap_or_else(|_| format!("@{}", ms / 1000))
}

/// `2026-12-01T12:00:05Z`: Unix milliseconds, to the second, for JSON.
pub fn rfc3339(ms: u64) -> String {
    let second = instant(ms).replace_millisecond(0).unwrap_or_else(|_| instant(ms));
    second
        .format(&Rfc3339)
        .unwrap_or_else(|_| format!("@{}", ms / 1000))
}

fn instant(ms: u64) -> OffsetDateTime {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `--since`: an RFC 3339 time (`2026-12-01T12:00:00Z`), a UTC day
/// (`2026-12-01`), or a duration ago (`24h`, `7d`, as policies' settings
/// are written); Unix milliseconds.
pub fn parse_since(text: &str, now_ms: u64) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return u64::try_from(at.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| format!("{text:?} is before 1970"));
    }
    if let Ok(day) = Date::parse(text, format_description!("[year]-[month]-[day]")) {
        let at = day.midnight().assume_utc();
        return u64::try_from(at.unix_timestamp() * 1000).map_err(|_| format!("{text:?} is before 1970"));
    }
    match nodecache_policy_sdk::config::parse_duration_ms(text) {
        Ok(ago) => Ok(now_ms.saturating_sub(ago)),
        Err(why) => Err(format!(
            "{text:?} is neither a time (2026-12-01T12:00:00Z, 2026-12-01) nor a duration ago ({why})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The oracle is coreutils: `date -u -d @1764590400` is Mon Dec 1 12:00:00 UTC 2025.
    const DEC_1_2025_NOON_MS: u64 = 1_764_590_400_000;

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(utc_minute(DEC_1_2025_NOON_MS + 59_999), "2025-12-01 12:00 UTC");
        assert_eq!(rfc3339(DEC_1_2025_NOON_MS + 5_250), "2025-12-01T12:00:05Z");
    }

    #[test]
    fn since_takes_a_time_a_day_or_a_duration_ago() {
        let now = DEC_1_2025_NOON_MS;
        assert_eq!(parse_since("2025-12-01T12:00:00Z", 0), Ok(now));
        assert_eq!(parse_since("2025-12-01T13:00:00+01:00", 0), Ok(now));
        assert_eq!(parse_since("2025-12-01", 0), Ok(now - 12 * 3_600_000));
        assert_eq!(parse_since("24h", now), Ok(now - 86_400_000));
        let refused = parse_since("yesterday", now).unwrap_err();
        assert!(refused.contains("neither a time"), "{refused}");
    }
}
