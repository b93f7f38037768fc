//! Request handlers, one module per resource. Each handler only translates: HTTP in, one
//! engine call, JSON out. Rules about what a request may do live in the engine, so the API
//! and the CLI cannot disagree about them.

pub(crate) mod batch;
pub(crate) mod breakers;
pub(crate) mod diff;
pub(crate) mod dlq;
pub(crate) mod flows;
pub(crate) mod key_limits;
pub(crate) mod queues;
pub(crate) mod runs;
pub(crate) mod schedules;
pub(crate) mod workers;

use crate::error::ApiError;

/// Page size of list endpoints when `limit` is not given.
pub const DEFAULT_LIST_LIMIT: u32 = 50;
/// Largest `limit` a list endpoint accepts.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// Checks a list endpoint's `limit`, applying [`DEFAULT_LIST_LIMIT`].
pub(crate) fn list_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIST_LIMIT),
        Some(n) if (1..=MAX_LIST_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "limit is {n}; it must be between 1 and {MAX_LIST_LIMIT}"
        ))),
    }
}

/// An RFC 3339 time as epoch milliseconds; the error names `field`.
pub(crate) fn parse_time(field: &str, t: &str) -> Result<weft_core::time::Millis, ApiError> {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp_millis())
        .map_err(|e| {
            ApiError::bad_request(format!(
                "{field} is {t:?}: {e}; expected an RFC 3339 time such as 2026-11-22T15:00:00Z"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_and_stay_in_range() {
        assert_eq!(list_limit(None).unwrap(), DEFAULT_LIST_LIMIT);
        assert_eq!(list_limit(Some(1)).unwrap(), 1);
        assert_eq!(list_limit(Some(MAX_LIST_LIMIT)).unwrap(), MAX_LIST_LIMIT);
        assert!(list_limit(Some(0)).is_err());
        assert!(list_limit(Some(MAX_LIST_LIMIT + 1)).is_err());
    }
}
