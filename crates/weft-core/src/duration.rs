//! Human durations in flow documents and config (`500ms`, `30s`, `1h30m`).

use std::time::Duration;

/// What the duration grammar allows, quoted in every error message.
pub const DURATION_HELP: &str =
    "expected a number followed by a unit (ms, s, m, h, d), e.g. 500ms, 30s, 1h30m";

/// Parses a duration such as `250ms`, `5s` or `1h30m`; zero is allowed.
pub fn parse(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("empty duration; {DURATION_HELP}"));
    }
    humantime::parse_duration(trimmed)
        .map_err(|_| format!("invalid duration {text:?}; {DURATION_HELP}"))
}

/// Formats a duration the way [`parse`] reads it.
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse(" 2s ").unwrap(), Duration::from_secs(2));
    }

    #[test]
    fn rejects_garbage_with_help() {
        let err = parse("5 sex").unwrap_err();
        assert!(
            err.contains("\"5 sex\"") && err.contains("ms, s, m, h, d"),
            "{err}"
        );
        assert!(parse("").is_err());
        assert!(parse("-1s").is_err());
    }
}
