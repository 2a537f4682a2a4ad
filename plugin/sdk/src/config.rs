//! Reading a policy's parameters from the host's configuration on every
//! call, so an operator changes them without rebuilding the component.

use crate::host::Host;
use crate::types::PolicyError;

/// A duration parameter in milliseconds; `default` when the operator set none.
pub fn duration_ms(host: &impl Host, key: &str, default: &str) -> Result<u64, PolicyError> {
    let text = host.config(key).unwrap_or_else(|| default.to_string());
    parse_duration_ms(&text).map_err(|why| bad(key, &text, &why))
}

/// A number parameter (`1`, `0.5`); must be finite and not negative.
pub fn number(host: &impl Host, key: &str, default: f64) -> Result<f64, PolicyError> {
    let Some(text) = host.config(key) else {
        return Ok(default);
    };
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err(bad(key, &text, "expected a number of 0 or more, e.g. 1 or 0.5")),
    }
}

fn bad(key: &str, text: &str, why: &str) -> PolicyError {
    PolicyError::BadConfig(format!("{key} = {text:?}: {why}"))
}

/// Parses `250ms`, `90`, `90s`, `1.5m`, `24h` or `7d` into milliseconds
/// (a bare number is seconds). The one duration grammar of nodecache.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err("expected a duration like 250ms, 90s, 15m, 24h or 7d".into());
    }
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m, h or d)")),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let whole: u64 = whole.parse().map_err(|_| "number too large".to_string())?;
    let mut total = whole
        .checked_mul(unit_ms)
        .ok_or_else(|| "duration too large".to_string())?;
    // Fractions are exact to the millisecond: no float rounding.
    let mut scale = unit_ms;
    for digit in fraction.bytes() {
        if digit == b'.' {
            return Err("more than one decimal point".into());
        }
        scale /= 10;
        total = total
            .checked_add(u64::from(digit - b'0') * scale)
            .ok_or_else(|| "duration too large".to_string())?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_host::FakeHost;

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration_ms("90"), Ok(90_000));
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("15m"), Ok(900_000));
        assert_eq!(parse_duration_ms("1.5h"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("0.25s"), Ok(250));
        assert_eq!(parse_duration_ms("24h"), Ok(86_400_000));
        assert_eq!(parse_duration_ms(" 7d "), Ok(604_800_000));
        assert_eq!(parse_duration_ms("0"), Ok(0));
    }

    #[test]
    fn bad_durations_are_rejected() {
        for text in [
            "",
            "h",
            "3w",
            "-5",
            ".5s",
            "5.s",
            "1.2.3s",
            "99999999999999999999",
            "999999999999999d",
        ] {
            assert!(parse_duration_ms(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn a_setting_falls_back_to_its_default() {
        let host = FakeHost::default();
        assert_eq!(duration_ms(&host, "max-age", "24h"), Ok(86_400_000));
        assert_eq!(number(&host, "beta", 1.0), Ok(1.0));
    }

    #[test]
    fn a_bad_value_names_the_key() {
        let host = FakeHost::default()
            .with_config("max-age", "soon")
            .with_config("beta", "-1");
        match duration_ms(&host, "max-age", "24h") {
            Err(PolicyError::BadConfig(message)) => {
                assert!(message.contains("max-age = \"soon\""), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(number(&host, "beta", 1.0), Err(PolicyError::BadConfig(m)) if m.contains("beta")));
    }
}
