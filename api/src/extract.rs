//! `Json`, `Path` and `Query` as axum's, except that a request they cannot read gets the
//! API's JSON error (`invalid` naming the part, or `unsupported_media_type`), never axum's
//! plain-text rejection: every answer of the API has the documented shape. Text holding a
//! NUL character (which PostgreSQL cannot store) is refused here, naming the field.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// A JSON request body, or a JSON response.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v)) => v,
            Err(JsonRejection::MissingJsonContentType(_)) => {
                return Err(ApiError::UnsupportedMediaType("application/json"));
            }
            Err(e) => return Err(ApiError::invalid("body", e.body_text())),
        };
        if let Some(field) = nul_in(&value, String::new()) {
            return Err(ApiError::invalid(field, "text must not contain NUL characters"));
        }
        serde_json::from_value(value).map(Json).map_err(|e| ApiError::invalid("body", e.to_string()))
    }
}

/// The path of the first string (or key) holding a NUL character, which PostgreSQL text
/// cannot store.
fn nul_in(v: &serde_json::Value, path: String) -> Option<String> {
    let here = |p: &str| if p.is_empty() { "body".to_owned() } else { p.to_owned() };
    match v {
        serde_json::Value::String(s) => s.contains('\0').then(|| here(&path)),
        serde_json::Value::Array(a) => {
            a.iter().enumerate().find_map(|(i, x)| nul_in(x, format!("{path}[{i}]")))
        }
        serde_json::Value::Object(o) => o.iter().find_map(|(k, x)| {
            let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            if k.contains('\0') { Some(here(&path)) } else { nul_in(x, p) }
        }),
        _ => None,
    }
}

/// Whether a raw path or query string carries an encoded NUL.
fn encoded_nul(raw: &str) -> bool {
    raw.as_bytes().windows(3).any(|w| w == b"%00")
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if encoded_nul(parts.uri.path()) {
            return Err(ApiError::invalid("path", "must not contain NUL characters"));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e: PathRejection| ApiError::invalid("path", e.body_text()))
    }
}

/// Query-string parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if parts.uri.query().is_some_and(encoded_nul) {
            return Err(ApiError::invalid("query", "must not contain NUL characters"));
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e: QueryRejection| ApiError::invalid("query", e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_found_with_their_path() {
        let v = serde_json::json!({"name": "ok", "streams": [{"url": "rtsp://x"}, {"url": "a\0b"}]});
        assert_eq!(nul_in(&v, String::new()).as_deref(), Some("streams[1].url"));
        assert_eq!(nul_in(&serde_json::json!({"a": ["fine", 1, null]}), String::new()), None);
        assert_eq!(nul_in(&serde_json::json!("\0"), String::new()).as_deref(), Some("body"));
        assert!(encoded_nul("labels=car%00") && !encoded_nul("labels=car%200"));
    }
}
