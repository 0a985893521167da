//! Durations in configuration as the rest of the gateway writes them
//! (`"500ms"`, `"2s"`, `"5m"`, `"1h"`), parsed by hand: four units do not
//! justify another dependency, and a bad value fails when the configuration
//! is read, not when the first notification goes out.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses `<integer><unit>` with unit `ms`, `s`, `m` or `h`.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as \"500ms\", \"30s\", \"5m\""))?;
    let per = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        other => return Err(format!("unknown duration unit {other:?} in {text:?} (ms, s, m, h)")),
    };
    n.checked_mul(per)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration {text:?} is too long"))
}

/// `deserialize_with` for a `Duration` field written as a string.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_mins(5)));
        assert_eq!(parse("1h"), Ok(Duration::from_hours(1)));
        assert!(parse("30").is_err());
        assert!(parse("s").is_err());
        assert!(parse("3d").is_err());
        assert!(parse("-1s").is_err());
    }
}
