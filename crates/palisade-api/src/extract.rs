//! Request extractors whose errors are API errors naming the field: a size-capped, strict
//! JSON body and a strict query string.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::config::ApiLimits;
use crate::error::ApiError;
use crate::server::AppState;

/// Reads a whole body: at most `limits.max_body_bytes` (413 beyond, at once when the
/// declared `Content-Length` is larger), within `limits.body_timeout` (408 beyond: a slow or
/// short body is the client's fault, never counted as a server error).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: axum::body::Body,
    limits: &ApiLimits,
) -> Result<bytes::Bytes, ApiError> {
    let limit = limits.max_body_bytes;
    check_content_type(headers, &["application/json"])?;
    check_declared_length(headers, limit as u64, "admin.max_body_bytes")?;
    match tokio::time::timeout(limits.body_timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(body_timeout(limits.body_timeout)),
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => {
            if is_length_limit(&e) {
                Err(ApiError::too_large(limit))
            } else {
                Err(ApiError::bad_request(format!("could not read the request body: {e}")))
            }
        }
    }
}

/// 415 `unsupported_media_type` unless the body's `Content-Type` is one of `allowed`
/// (parameters such as `charset=utf-8` are ignored; case-insensitive).
pub(crate) fn check_content_type(headers: &HeaderMap, allowed: &[&str]) -> Result<(), ApiError> {
    let given = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = given.split(';').next().unwrap_or("").trim();
    if allowed.iter().any(|a| media.eq_ignore_ascii_case(a)) {
        return Ok(());
    }
    let given = if given.is_empty() { "none".to_string() } else { format!("{given:?}") };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "Content-Type is {given}; send {} (e.g. curl -H 'content-type: {}')",
            allowed.join(" or "),
            allowed.first().copied().unwrap_or("application/json")
        ),
    ))
}

/// 413 before reading a byte when the declared `Content-Length` exceeds `limit`.
pub(crate) fn check_declared_length(headers: &HeaderMap, limit: u64, setting: &str) -> Result<(), ApiError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limit => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("Content-Length is {n} bytes; the limit is {limit} bytes ({setting})"),
        )),
        _ => Ok(()),
    }
}

/// 408 `body_timeout`.
pub(crate) fn body_timeout(limit: std::time::Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        format!(
            "the request body did not arrive within {}s (admin.body_timeout_secs); send it faster, or check that Content-Length matches the body",
            limit.as_secs()
        ),
    )
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Parses JSON text into a value (400 `bad_json` with line and column otherwise).
pub(crate) fn parse_json_value(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "bad_json",
            "the request body is empty; send a JSON object",
        ));
    }
    let value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "bad_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    if let Some(key) = crate::strict_json::first_duplicate_key(bytes) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "duplicate_key",
            format!("the key `{key}` appears twice in one object; send each key once"),
        ));
    }
    let mut value = value;
    integral_floats_as_integers(&mut value);
    Ok(value)
}

/// `1.0` is the integer 1 in JSON (and in JSON Schema's `integer`); serde wants `1`. Numbers
/// with no fractional part that fit an `i64` or `u64` become integers, so a client that writes
/// `"score": 850.0` gets the same answer as one that writes `850`.
fn integral_floats_as_integers(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0) {
                // The casts are exact: `f` is integral and checked to be in range.
                if f >= 0.0 && f < u64::MAX as f64 {
                    *v = Value::from(f as u64);
                } else if f < 0.0 && f >= i64::MIN as f64 {
                    *v = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// Deserialises `value` as `T`, naming the field path in errors, and refuses fields `T` does
/// not know (a typo must never be silently ignored). `prefix` is prepended to paths.
pub(crate) fn from_value_strict<T: DeserializeOwned + Serialize>(
    value: Value,
    prefix: &str,
) -> Result<T, ApiError> {
    let input = value.clone();
    let parsed: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let field = join_path(prefix, &path);
        if field.is_empty() {
            // Missing fields are reported at their parent; serde's message names the field.
            ApiError::new(axum::http::StatusCode::BAD_REQUEST, "invalid_field", inner)
        } else {
            ApiError::invalid_field(&field, inner)
        }
    })?;
    let known = serde_json::to_value(&parsed).map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(path) = first_unknown(&input, &known, prefix.to_string()) {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "unknown_field",
            format!(
                "unknown field `{path}`; check the spelling against the OpenAPI document (/v1/openapi.json)"
            ),
        ));
    }
    Ok(parsed)
}

fn join_path(prefix: &str, path: &str) -> String {
    let path = if path == "." { "" } else { path };
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

/// The first object key in `input` that the re-serialised `known` value lacks.
fn first_unknown(input: &Value, known: &Value, path: String) -> Option<String> {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                let p = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match k.get(key) {
                    None => return Some(p),
                    Some(kv) => {
                        if let Some(found) = first_unknown(v, kv, p) {
                            return Some(found);
                        }
                    }
                }
            }
            None
        }
        (Value::Array(i), Value::Array(k)) => i
            .iter()
            .zip(k.iter())
            .enumerate()
            .find_map(|(n, (iv, kv))| first_unknown(iv, kv, format!("{path}[{n}]"))),
        _ => None,
    }
}

/// A JSON body, at most `admin.max_body_bytes`, parsed strictly.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned + Serialize> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let bytes = read_body(&parts.headers, body, state.limits()).await?;
        let value = parse_json_value(&bytes)?;
        from_value_strict(value, "").map(JsonBody)
    }
}

/// A query string parsed strictly into `T` (unknown parameters are refused).
pub(crate) struct QueryParams<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de).map(QueryParams).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." || path.is_empty() {
                ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "invalid_query",
                    format!("query string: {inner}"),
                )
            } else {
                ApiError::invalid_field(&path, inner)
            }
        })
    }
}

/// Checks a page size: default 100, allowed 1..=1000.
pub(crate) fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let max = palisade_store::QUERY_LIMIT_MAX;
    match limit {
        None => Ok(100),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::invalid_field("limit", format!("is {n}; allowed is 1..={max}"))),
    }
}

/// Parses a text parameter with `FromStr`, naming the field in errors.
pub(crate) fn parse_field<T: std::str::FromStr>(field: &str, value: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    value.parse::<T>().map_err(|e| ApiError::invalid_field(field, e))
}

/// Parses a digest as records carry them: `<algorithm>:<lowercase hex>`, an algorithm of
/// `[A-Za-z0-9_-]`, the exact size for fixed-size algorithms (a truncated `sha256:9f86` can
/// only ever match nothing, which reads like an answer: refuse it).
pub(crate) fn parse_digest(field: &'static str, value: &str) -> Result<palisade_types::Digest, ApiError> {
    let d: palisade_types::Digest = parse_field(field, value)?;
    d.check(field).map_err(|e| ApiError::invalid_field(field, e.to_string()))?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_found_at_any_depth() {
        let input = serde_json::json!({"a": 1, "b": {"c": 2, "typo": 3}});
        let known = serde_json::json!({"a": 1, "b": {"c": 2}});
        assert_eq!(first_unknown(&input, &known, String::new()).as_deref(), Some("b.typo"));
        let input = serde_json::json!({"l": [{"x": 1}, {"x": 1, "y": 2}]});
        let known = serde_json::json!({"l": [{"x": 1}, {"x": 1}]});
        assert_eq!(first_unknown(&input, &known, String::new()).as_deref(), Some("l[1].y"));
    }

    #[test]
    fn paths_join() {
        assert_eq!(join_path("", "."), "");
        assert_eq!(join_path("", "subject.name"), "subject.name");
        assert_eq!(join_path("x", "[0]"), "x[0]");
        assert_eq!(join_path("x", "y"), "x.y");
    }

    #[test]
    fn integral_floats_are_integers_and_others_stay() {
        let v = parse_json_value(br#"{"a": 850.0, "b": -2.0, "c": 1.5, "d": [3.0], "e": 1e30}"#).unwrap();
        assert_eq!(v["a"], serde_json::json!(850));
        assert!(v["a"].is_u64());
        assert_eq!(v["b"], serde_json::json!(-2));
        assert_eq!(v["c"], serde_json::json!(1.5));
        assert!(v["d"][0].is_u64());
        // Beyond u64: left a float (and refused by an integer field).
        assert!(v["e"].is_f64());
    }
}
