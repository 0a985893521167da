//! What a request says in its query: the parameters (refused as the API's
//! JSON error, never axum's plain text), times, and page cursors.
//!
//! Every list of the API pages the same way: `?limit=` (each list has its
//! default and its most), and an answer `{"<items>": [...], "next": CURSOR}`
//! where `next` is `null` on the last page, or an opaque text to send back
//! as `?cursor=` with the same filters for the page after. A cursor names
//! its list, so one list's cursor given to another is a 400, not a wrong page.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ApiError;

fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", detail)
}

/// The query string as `T`; a parameter that does not parse is a 400 in
/// the API's JSON shape naming it (`limit: invalid digit found in string`).
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        axum::extract::Query::try_from_uri(&parts.uri)
            .map(|q| Query(q.0))
            .map_err(|e| bad(e.body_text()))
    }
}

/// A request body as `T`, read after the role check (an extractor would
/// read it before, and answer a token without the right a 422 about its
/// body rather than a 403); refused as the API's JSON error.
///
/// # Errors
/// 400 naming what does not parse.
pub fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("the body is not the JSON this route takes: {e}")))
}

/// `from`/`to` of a query: ms since the Unix epoch, or RFC 3339 with its
/// offset (`2026-12-01T08:00:00+08:00`, `2026-12-01T00:00:00Z`). A time
/// without an offset is refused rather than guessed: read as UTC it is 8
/// hours off for everybody in China, read as local time it depends on
/// where the gateway runs.
///
/// # Errors
/// 400 naming the parameter and what is wrong.
pub fn parse_time(name: &str, text: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    match OffsetDateTime::parse(text, &Rfc3339) {
        Ok(t) => i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| bad(format!("`{name}` is out of range: {text}"))),
        Err(_) if zone_less(text) => Err(bad(format!(
            "`{name}` has no UTC offset: {text}; add one, as in {text}+08:00 or {text}Z"
        ))),
        Err(e) => Err(bad(format!(
            "`{name}` is neither RFC 3339 (2026-12-01T08:00:00+08:00) nor ms since the epoch: {text} ({e})"
        ))),
    }
}

/// Whether `text` is a date and time of day with no offset after it.
fn zone_less(text: &str) -> bool {
    let with_z = format!("{text}Z");
    OffsetDateTime::parse(&with_z, &Rfc3339).is_ok()
}

/// The cursor of the page after the one that ended with `key`, for `list`.
#[must_use]
pub fn cursor(list: &str, key: Value) -> String {
    URL_SAFE_NO_PAD.encode(Value::Array(vec![Value::from(list), key]).to_string())
}

/// Ends a page read with one item more than `limit` (to know whether there
/// is a next page): cuts it to `limit` and answers the cursor of its last
/// item, keyed by `key`, or `None` on the last page.
pub fn end_page<T>(items: &mut Vec<T>, limit: usize, list: &str, key: impl Fn(&T) -> Value) -> Option<String> {
    if items.len() <= limit {
        return None;
    }
    items.truncate(limit);
    items.last().map(|last| cursor(list, key(last)))
}

/// The key a cursor of `list` carries.
///
/// # Errors
/// 400 for a text that is not a cursor, or a cursor of another list.
pub fn from_cursor(list: &str, text: &str) -> Result<Value, ApiError> {
    let not = || {
        bad(format!(
            "`cursor` is not a cursor of this list ({list}): take `next` of its last page"
        ))
    };
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| not())?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Array(mut v)) if v.len() == 2 && v[0] == list => Ok(v.pop().unwrap_or(Value::Null)),
        _ => Err(not()),
    }
}

/// A cursor's key as `T`.
///
/// # Errors
/// As [`from_cursor`], and for a key of the wrong shape.
pub fn cursor_key<T: DeserializeOwned>(list: &str, text: Option<&str>) -> Result<Option<T>, ApiError> {
    text.map(|t| {
        let key = from_cursor(list, t)?;
        serde_json::from_value(key).map_err(|_| bad(format!("`cursor` is not a cursor of this list ({list})")))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_take_any_offset_and_refuse_none() {
        let utc = parse_time("from", "2026-12-01T00:00:00Z").unwrap();
        assert_eq!(parse_time("from", "2026-12-01T08:00:00+08:00").unwrap(), utc);
        assert_eq!(parse_time("from", "2026-11-30T19:00:00-05:00").unwrap(), utc);
        assert_eq!(parse_time("from", "2026-12-01T08:00:00.250+08:00").unwrap(), utc + 250);
        assert_eq!(parse_time("from", &utc.to_string()).unwrap(), utc);
        let e = parse_time("to", "2026-12-01T08:00:00").unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(
            e.detail().contains("`to` has no UTC offset") && e.detail().contains("+08:00"),
            "{}",
            e.detail()
        );
        let e = parse_time("from", "yesterday").unwrap_err();
        assert!(e.detail().contains("neither RFC 3339"), "{}", e.detail());
    }

    #[test]
    fn a_cursor_returns_its_key_to_its_own_list_only() {
        let c = cursor("alerts", serde_json::json!(["r", 1_764_547_200_000_i64, 42]));
        assert!(
            c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{c}"
        );
        assert_eq!(
            from_cursor("alerts", &c).unwrap(),
            serde_json::json!(["r", 1_764_547_200_000_i64, 42])
        );
        assert!(from_cursor("work_orders", &c).is_err());
        assert!(from_cursor("alerts", "not a cursor").is_err());
        let k: Option<(String, i64, u64)> = cursor_key("alerts", Some(&c)).unwrap();
        assert_eq!(k, Some(("r".into(), 1_764_547_200_000, 42)));
        assert!(cursor_key::<u64>("alerts", Some(&c)).is_err());
    }
}
