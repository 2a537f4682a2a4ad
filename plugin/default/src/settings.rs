//! The policy's parameters, read from the host's configuration on every call,
//! so an operator changes them without rebuilding the component.

use crate::bindings::{Parameter, PolicyError, PolicyInfo};
use crate::host::Host;

pub const MAX_AGE: &str = "max-age";
pub const STALE_MAX_AGE: &str = "stale-max-age";
const MAX_AGE_DEFAULT: &str = "24h";
const STALE_MAX_AGE_DEFAULT: &str = "7d";

/// How old cache entries may be, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// An entry younger than this is used without asking the node.
    pub max_age_ms: u64,
    /// An entry younger than this is served (marked stale) when a refresh fails.
    pub stale_max_age_ms: u64,
}

impl Settings {
    pub fn from_host(host: &impl Host) -> Result<Settings, PolicyError> {
        Ok(Settings {
            max_age_ms: duration_setting(host, MAX_AGE, MAX_AGE_DEFAULT)?,
            stale_max_age_ms: duration_setting(host, STALE_MAX_AGE, STALE_MAX_AGE_DEFAULT)?,
        })
    }
}

fn duration_setting(host: &impl Host, key: &str, default: &str) -> Result<u64, PolicyError> {
    let text = host.config(key).unwrap_or_else(|| default.to_string());
    parse_duration_ms(&text).map_err(|why| PolicyError::BadConfig(format!("{key} = {text:?}: {why}")))
}

/// Parses `90`, `90s`, `15m`, `24h` or `7d` into milliseconds (bare numbers are seconds).
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err("expected a number of seconds or a duration like 90s, 15m, 24h, 7d".into());
    }
    let count: u64 = digits.parse().map_err(|_| "number too large".to_string())?;
    let unit_ms: u64 = match unit {
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("unknown unit {other:?} (use s, m, h or d)")),
    };
    count
        .checked_mul(unit_ms)
        .ok_or_else(|| "duration too large".to_string())
}

pub fn describe() -> PolicyInfo {
    PolicyInfo {
        name: "default".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        parameters: vec![
            Parameter {
                name: MAX_AGE.into(),
                default_value: MAX_AGE_DEFAULT.into(),
                description: "a cache entry younger than this is used without asking the node".into(),
            },
            Parameter {
                name: STALE_MAX_AGE.into(),
                default_value: STALE_MAX_AGE_DEFAULT.into(),
                description: "when a refresh fails, an entry younger than this is served as stale".into(),
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_host::FakeHost;

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration_ms("90"), Ok(90_000));
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert_eq!(parse_duration_ms("15m"), Ok(900_000));
        assert_eq!(parse_duration_ms("24h"), Ok(86_400_000));
        assert_eq!(parse_duration_ms(" 7d "), Ok(604_800_000));
        assert_eq!(parse_duration_ms("0"), Ok(0));
    }

    #[test]
    fn bad_durations_are_rejected() {
        assert!(parse_duration_ms("").is_err());
        assert!(parse_duration_ms("h").is_err());
        assert!(parse_duration_ms("3w").is_err());
        assert!(parse_duration_ms("-5").is_err());
        assert!(parse_duration_ms("99999999999999999999").is_err());
        assert!(parse_duration_ms("999999999999999d").is_err());
    }

    #[test]
    fn defaults_apply_when_the_host_sets_nothing() {
        let host = FakeHost::default();
        let settings = Settings::from_host(&host).unwrap();
        assert_eq!(settings.max_age_ms, 86_400_000);
        assert_eq!(settings.stale_max_age_ms, 7 * 86_400_000);
    }

    #[test]
    fn max_age_comes_from_config() {
        let host = FakeHost::default().with_config(MAX_AGE, "90s");
        assert_eq!(Settings::from_host(&host).unwrap().max_age_ms, 90_000);
    }

    #[test]
    fn a_bad_config_value_names_the_key() {
        let host = FakeHost::default().with_config(MAX_AGE, "soon");
        match Settings::from_host(&host) {
            Err(PolicyError::BadConfig(message)) => assert!(message.contains("max-age"), "{message}"),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn describe_lists_every_parameter() {
        let names: Vec<_> = describe().parameters.into_iter().map(|p| p.name).collect();
        assert_eq!(names, [MAX_AGE, STALE_MAX_AGE]);
    }
}
