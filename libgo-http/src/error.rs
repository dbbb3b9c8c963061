//! The one error type of the server: every failure becomes `{status, code, message}`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use libgo_core::ErrorKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The HTTP status, repeated.
    #[schema(example = 404)]
    pub status: u16,
    /// A stable code: `NOT_FOUND`, `INVALID_INPUT`, `UNAUTHORIZED`, `FORBIDDEN`,
    /// `RESOURCE_CONFLICT`, `RATE_LIMITED`, `UNSUPPORTED`, `BACKEND_UNAVAILABLE`, `TIMEOUT`,
    /// `METHOD_NOT_ALLOWED`, `PAYLOAD_TOO_LARGE`, `UNSUPPORTED_MEDIA_TYPE`,
    /// `INTERNAL_SERVER_ERROR`.
    #[schema(example = "NOT_FOUND")]
    pub code: String,
    /// What went wrong, for people.
    #[schema(example = "no instance \"web\"")]
    pub message: String,
    /// The request field it is about, where known: a JSON path into the body
    /// (`memoryBytes`, `disks[0].sizeBytes`), so a form can show the message next to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "memoryBytes")]
    pub field: Option<String>,
}

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// `Result` with [`ApiError`].
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            headers: Vec::new(),
        }
    }

    /// Names the request field the error is about.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400 `INVALID_INPUT`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_INPUT", message)
    }

    /// 401 `UNAUTHORIZED`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
            .with_header(axum::http::header::WWW_AUTHENTICATE, "Bearer")
    }

    /// 403 `FORBIDDEN`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    /// 409 `RESOURCE_CONFLICT`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "RESOURCE_CONFLICT", message)
    }

    /// 429 `RATE_LIMITED` with `Retry-After`.
    pub fn rate_limited(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message).with_header(
            axum::http::header::RETRY_AFTER,
            &retry_after_secs.max(1).to_string(),
        )
    }

    /// 500 `INTERNAL_SERVER_ERROR`; the detail goes to the log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            "internal server error",
        )
    }

    /// Adds a header to the response.
    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            status: self.status.as_u16(),
            code: self.code.to_string(),
            message: self.message.clone(),
            field: self.field.clone(),
        }
    }
}

/// The status a core error kind is answered with.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<libgo_core::Error> for ApiError {
    fn from(e: libgo_core::Error) -> Self {
        let kind = e.kind();
        if kind == ErrorKind::Internal {
            // An engine's own words (paths, QEMU output) stay in the log, which the request
            // span ties to the request id the client got in `x-request-id`.
            tracing::error!(error = %e, "engine failure");
            let mut message = String::from("internal error; the server log has the detail");
            if let Some((_, backend)) = e.context().iter().find(|(k, _)| *k == "backend") {
                message.push_str(&format!(" (backend: {backend})"));
            }
            return ApiError::new(status_of(kind), kind.code(), message);
        }
        tracing::debug!(error = %e, "request failed");
        let field = e.field().map(str::to_string);
        let mut api = ApiError::new(status_of(kind), kind.code(), e.detail());
        api.field = field;
        api
    }
}

impl From<libgo_core::Error> for ErrorBody {
    /// The body a failure is answered with, as a route would answer it (a task's failure
    /// is shown in this shape).
    fn from(e: libgo_core::Error) -> Self {
        ApiError::from(e).body()
    }
}

impl From<crate::tasks::TaskRefused> for ApiError {
    fn from(refused: crate::tasks::TaskRefused) -> Self {
        match refused {
            crate::tasks::TaskRefused::TooMany {
                message,
                retry_after_secs,
            } => ApiError::rate_limited(message, retry_after_secs),
            crate::tasks::TaskRefused::Failed(e) => e.into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(format!("database: {e}"))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "expected a request with Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                payload_too_large()
            }
            other => ApiError::invalid(other.body_text()),
        }
    }
}

/// 413 `PAYLOAD_TOO_LARGE`.
pub fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        "the request body is larger than the server accepts",
    )
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::invalid(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::invalid(r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut headers = HeaderMap::new();
        for (k, v) in self.headers {
            headers.insert(k, v);
        }
        (self.status, headers, Json(body)).into_response()
    }
}

/// The code used for a bare HTTP status (for responses that did not come from an
/// [`ApiError`], such as a body-limit layer's).
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_INPUT",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        408 | 504 => "TIMEOUT",
        409 => "RESOURCE_CONFLICT",
        413 => "PAYLOAD_TOO_LARGE",
        415 => "UNSUPPORTED_MEDIA_TYPE",
        429 => "RATE_LIMITED",
        501 => "UNSUPPORTED",
        503 => "BACKEND_UNAVAILABLE",
        s if s < 500 => "INVALID_INPUT",
        _ => "INTERNAL_SERVER_ERROR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_kinds_map_to_statuses_and_codes() {
        let e: ApiError = libgo_core::Error::not_found("no instance \"x\"")
            .with_context("id", "x")
            .into();
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert_eq!(e.body().code, "NOT_FOUND");
        assert_eq!(e.body().message, "no instance \"x\" (id: x)");
        let e: ApiError = libgo_core::Error::conflict("exists").into();
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert_eq!(e.code(), "RESOURCE_CONFLICT");
        let e: ApiError = libgo_core::Error::unavailable("down").into();
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code(), "BACKEND_UNAVAILABLE");
    }

    #[test]
    fn engine_internals_stay_in_the_log() {
        let e: ApiError = libgo_core::Error::internal(
            "qemu unexpectedly closed the monitor: /var/lib/libvirt/qemu/secret.sock",
        )
        .with_context("backend", "kvm")
        .into();
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let message = e.body().message;
        assert!(!message.contains("qemu"), "{message}");
        assert!(!message.contains("/var/lib"), "{message}");
        assert!(message.contains("backend: kvm"), "{message}");
    }
}
