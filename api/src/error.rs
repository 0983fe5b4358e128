//! Errors at the HTTP edge: JSON `{code, message, field?}` with a stable code, never
//! internals (those go to the log).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or wrong credentials.
    #[error("authentication required")]
    Unauthorized,
    /// Wrong user name or password.
    #[error("wrong user name or password")]
    BadLogin,
    /// Authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// A request field is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field's path in the request.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The camera is defined in a node's configuration file, not through the API.
    #[error("{0}")]
    ManagedByConfig(String),
    /// The thing does not exist (or is not visible to the caller).
    #[error("not found")]
    NotFound,
    /// Too many attempts; try again later.
    #[error("too many attempts; try again in {retry_after_secs} s")]
    TooManyRequests {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// The feature is switched off by configuration.
    #[error("{0}")]
    Disabled(&'static str),
    /// The request body has the wrong content type.
    #[error("expected Content-Type {0}")]
    UnsupportedMediaType(&'static str),
    /// The method is not supported on this resource.
    #[error("{0}")]
    MethodNotAllowed(&'static str),
    /// The browser cannot play the stream's codec.
    #[error("{0}")]
    CodecUnsupported(String),
    /// The thing exists but cannot serve now (e.g. a stream that is not running).
    #[error("{0}")]
    Unavailable(&'static str),
    /// Something failed on our side; details are in the log.
    #[error("internal error")]
    Internal,
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "database error while serving a request");
        ApiError::Internal
    }
}

impl ApiError {
    /// An invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid { field: field.into(), message: message.into() }
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::BadLogin => (StatusCode::UNAUTHORIZED, "bad_login"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::ManagedByConfig(_) => (StatusCode::CONFLICT, "managed_by_config"),
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Disabled(_) => (StatusCode::NOT_FOUND, "disabled"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::CodecUnsupported(_) => (StatusCode::UNPROCESSABLE_ENTITY, "codec_unsupported"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// Every error answer: a stable `code`, a human `message`, and the request `field` at fault.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// `unauthorized`, `bad_login`, `forbidden`, `invalid`, `not_found`, `conflict`,
    /// `managed_by_config`, `rate_limited`, `disabled`, `unsupported_media_type`,
    /// `method_not_allowed`, `codec_unsupported`, `unavailable`, `internal`.
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// The request field at fault, for `invalid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let field = match &self {
            ApiError::Invalid { field, .. } => Some(field.clone()),
            _ => None,
        };
        let body = ErrorBody { code: code.to_owned(), message: self.to_string(), field };
        let mut resp = (status, Json(body)).into_response();
        match &self {
            ApiError::Unauthorized => {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::TooManyRequests { retry_after_secs } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        resp
    }
}
