//! Who is calling: a browser session (cookie + CSRF header on unsafe methods) or an API
//! token (`Authorization: Bearer …`). Secrets are random 32-byte values; only their SHA-256
//! is stored.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use chrono::Utc;
use panoptes_storage::auth::AuthUser;
use panoptes_storage::users::Role;
use sha2::{Digest, Sha256};

use crate::{ApiError, AppState};

/// The session cookie's name.
pub const COOKIE: &str = "panoptes_session";
/// The header carrying the CSRF token on unsafe requests from a browser session.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Sessions end after this long without a request.
pub const IDLE: chrono::Duration = chrono::Duration::hours(12);
/// API tokens start with this, so they are recognisable in secret scanners.
pub const TOKEN_PREFIX: &str = "pnp_";

/// A new random secret, URL-safe.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a secret, as stored.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// How the caller authenticated.
#[derive(Debug, Clone)]
pub enum Credential {
    /// Browser session; carries its CSRF token.
    Session {
        /// The session cookie's secret hash.
        token_hash: Vec<u8>,
        /// The session's CSRF token.
        csrf: String,
    },
    /// API token.
    Token,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user.
    pub user: AuthUser,
    /// How they authenticated.
    pub via: Credential,
    /// Their address.
    pub client_ip: Option<String>,
}

impl Caller {
    /// Fails unless the caller's role is `min` or more privileged.
    pub fn require(&self, min: Role) -> Result<(), ApiError> {
        let rank = |r: Role| match r {
            Role::Admin => 3,
            Role::Operator => 2,
            Role::Viewer => 1,
        };
        if rank(self.user.role) >= rank(min) {
            Ok(())
        } else {
            Err(ApiError::Forbidden("your role does not allow this"))
        }
    }
}

/// The value of cookie `name`, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The client's address as the server saw it.
pub fn client_ip(parts: &Parts) -> Option<String> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string())
}

/// The client's address, for handlers that need it without authentication.
#[derive(Debug, Clone)]
pub struct ClientIp(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let pool = &state.inner.pool;
        let ip = client_ip(parts);
        if let Some(token) = bearer(&parts.headers) {
            if !token.starts_with(TOKEN_PREFIX) {
                return Err(ApiError::Unauthorized);
            }
            let user = panoptes_storage::auth::token_user(pool, &hash_secret(token)).await?;
            return match user {
                Some(user) => Ok(Caller { user, via: Credential::Token, client_ip: ip }),
                None => Err(ApiError::Unauthorized),
            };
        }
        let Some(secret) = cookie(&parts.headers, COOKIE) else { return Err(ApiError::Unauthorized) };
        let token_hash = hash_secret(secret);
        let Some((user, csrf)) =
            panoptes_storage::auth::session_user(pool, &token_hash, Utc::now() + IDLE).await?
        else {
            return Err(ApiError::Unauthorized);
        };
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if !sent.is_some_and(|s| crate::ops::constant_time_eq(s.as_bytes(), csrf.as_bytes())) {
                return Err(ApiError::Forbidden("missing or wrong X-CSRF-Token header"));
            }
        }
        Ok(Caller { user, via: Credential::Session { token_hash, csrf }, client_ip: ip })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn finds_cookies_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; panoptes_session=abc ; b=2"));
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "zz"), None);
    }

    #[test]
    fn secrets_are_random_and_hashed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(hash_secret(&a).len(), 32);
    }
}
