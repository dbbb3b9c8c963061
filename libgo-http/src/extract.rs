//! Extractors whose rejections are [`ApiError`]s, so that malformed input is answered in the
//! error shape like everything else.

use axum::extract::FromRequest;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// A JSON request body (or response). As a request body it must be a JSON object (serde
/// would otherwise take `[]` for a struct of optional fields); errors name the path of the
/// offending field (`disks[0].sizeGB: unknown field …`) in the error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "expected a request with Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    crate::error::payload_too_large()
                } else {
                    ApiError::invalid(e.body_text())
                }
            })?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::invalid("the request body must be a JSON object"));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
        let parsed = match parsed {
            Ok(value) => {
                de.end()
                    .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))?;
                Ok(value)
            }
            Err(e)
                if e.inner()
                    .to_string()
                    .starts_with("invalid type: floating point") =>
            {
                integral_floats_as_integers(&bytes).ok_or(e)
            }
            Err(e) => Err(e),
        };
        let value: T = parsed.map_err(|e| {
            let path = e.path().to_string();
            let error = if path == "." {
                ApiError::invalid(format!("invalid request body: {}", e.inner()))
            } else {
                ApiError::invalid(format!("invalid request body at {path}: {}", e.inner()))
            };
            // At the top level the path is "." and only the message names an unknown field.
            let inner = e.inner().to_string();
            let unknown = inner
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split('`').next());
            match (path.as_str(), unknown) {
                (".", Some(f)) => error.with_field(f),
                (".", None) => error,
                (p, _) => error.with_field(p),
            }
        })?;
        Ok(Json(value))
    }
}

/// The body read again with each number that has no fractional part (`8.0`, `1e3`) taken as
/// the integer it is, as JSON Schema counts it (serde's integer fields refuse them, and
/// generated clients send them). Only tried after the plain read failed on such a number, so
/// that the plain read's strictness (duplicate fields) stays for every other body.
fn integral_floats_as_integers<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    fn normalise(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Number(n) if n.is_f64() => {
                if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0) {
                    // Exact for |f| < 2^63 (or < 2^64 when positive); beyond that it stays a float.
                    if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
                        *n = serde_json::Number::from(f as u64);
                    } else if (-9_223_372_036_854_775_808.0..0.0).contains(&f) {
                        *n = serde_json::Number::from(f as i64);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(normalise),
            serde_json::Value::Object(fields) => fields.values_mut().for_each(normalise),
            _ => {}
        }
    }
    let StrictValue(mut value) = serde_json::from_slice(bytes).ok()?;
    normalise(&mut value);
    serde_json::from_value(value).ok()
}

/// A JSON value whose objects may not repeat a key (`serde_json::Value` keeps the last one
/// silently, where reading into a struct refuses the duplicate field).
struct StrictValue(serde_json::Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, MapAccess, SeqAccess, Visitor};
        use serde_json::Value;
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::from(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::from(v)))
            }
            fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
                let mut items = Vec::new();
                while let Some(StrictValue(v)) = seq.next_element()? {
                    items.push(v);
                }
                Ok(StrictValue(Value::Array(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
                let mut fields = serde_json::Map::new();
                while let Some((k, StrictValue(v))) = map.next_entry::<String, StrictValue>()? {
                    if fields.contains_key(&k) {
                        return Err(A::Error::custom(format!("duplicate field `{k}`")));
                    }
                    fields.insert(k, v);
                }
                Ok(StrictValue(Value::Object(fields)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` with JSON errors.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `axum::extract::Path` with JSON errors.
#[derive(Debug, Clone, Copy, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Disk {
        size: u64,
        prefix: u8,
        offset: Option<i32>,
    }

    async fn read(body: &str) -> Result<Disk, ApiError> {
        let req = axum::http::Request::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .expect("request");
        Json::<Disk>::from_request(req, &()).await.map(|Json(d)| d)
    }

    #[tokio::test]
    async fn integral_numbers_written_as_floats_are_integers() {
        let disk = read(r#"{"size": 1048576.0, "prefix": 2.4e1, "offset": -3.0}"#)
            .await
            .expect("integral floats are integers");
        assert_eq!(
            disk,
            Disk {
                size: 1_048_576,
                prefix: 24,
                offset: Some(-3)
            }
        );
        // A fraction, a value out of the field's range and a duplicate field stay refused.
        for body in [
            r#"{"size": 1.5, "prefix": 1}"#,
            r#"{"size": 1, "prefix": 256.0}"#,
            r#"{"size": 1.0, "prefix": 1, "prefix": 2}"#,
            r#"{"size": 1.0, "prefix": 1, "extra": 2}"#,
        ] {
            let e = read(body).await.expect_err(body);
            assert_eq!(e.code(), "INVALID_INPUT", "{body}");
        }
    }
}
