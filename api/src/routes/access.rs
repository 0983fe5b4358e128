//! Login, logout, the current user, first-admin setup and API tokens.

use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use chrono::Utc;
use panoptes_storage::audit::{self, AuditEntry};
use panoptes_storage::users::Role;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::extract::{Json, Path};
use crate::session::{COOKIE, Caller, ClientIp, Credential, IDLE, TOKEN_PREFIX, hash_secret, new_secret};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/me", get(me))
        .route("/api/setup", post(setup))
        .route("/api/tokens", post(create_token))
        .route("/api/tokens/{id}", delete(revoke_token))
}

/// Login with a user name and password.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    name: String,
    password: String,
}

/// The logged-in user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Me {
    id: i64,
    name: String,
    role: String,
    /// Send it as `X-CSRF-Token` on unsafe requests made with the session cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
}

/// Appends to the audit log; a failure is logged, never shown to the client.
pub(crate) async fn audit(state: &AppState, e: AuditEntry<'_>) -> Option<audit::AuditReceipt> {
    match audit::append(&state.inner.pool, &e).await {
        Ok(r) => Some(r),
        Err(err) => {
            tracing::error!(error = %err, action = e.action, "audit log append failed");
            None
        }
    }
}

/// Appends what `caller` did to the audit log (see [`audit`]).
pub(crate) async fn audit_caller(
    state: &AppState,
    caller: &Caller,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> Option<audit::AuditReceipt> {
    audit(
        state,
        AuditEntry {
            actor_id: Some(caller.user.id),
            actor_name: &caller.user.name,
            action,
            target,
            details,
            client_ip: caller.client_ip.as_deref(),
        },
    )
    .await
}

fn session_cookie(state: &AppState, value: &str, max_age: i64) -> Result<HeaderValue, ApiError> {
    let secure = if state.inner.config.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .map_err(|_| ApiError::Internal)
}

/// Runs `f` on the login limiter (never across an await).
fn limit<T>(state: &AppState, f: impl FnOnce(&mut crate::limiter::LoginLimiter) -> T) -> T {
    f(&mut state.inner.limiter.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
}

#[utoipa::path(post, path = "/api/auth/login", tag = "access", request_body = Login,
    responses((status = 200, description = "Logged in; sets the session cookie", body = Me),
              (status = 401, description = "Wrong user name or password", body = crate::error::ErrorBody),
              (status = 422, description = "Malformed request", body = crate::error::ErrorBody),
              (status = 429, description = "Too many failed attempts", body = crate::error::ErrorBody)),
    security(()))]
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Json(body): Json<Login>,
) -> Result<Response, ApiError> {
    let keys = [format!("ip:{}", ip.as_deref().unwrap_or("?")), format!("user:{}", body.name.to_lowercase())];
    let now = Instant::now();
    if let Some(wait) = limit(&state, |l| keys.iter().filter_map(|k| l.blocked_for(k, now)).max()) {
        return Err(ApiError::TooManyRequests { retry_after_secs: wait.as_secs() });
    }
    let candidate = panoptes_storage::auth::login_candidate(&state.inner.pool, &body.name).await?;
    // Verify against a dummy hash when the user does not exist, so timing does not tell.
    let (user, ok) = match candidate {
        Some((user, hash)) => {
            let ok = crate::auth::verify_password(&body.password, &hash);
            (Some(user), ok)
        }
        None => {
            let _ = crate::auth::verify_password(&body.password, &state.inner.dummy_hash);
            (None, false)
        }
    };
    let Some(user) = user.filter(|_| ok) else {
        limit(&state, |l| keys.iter().for_each(|k| l.failed(k, now)));
        audit(
            &state,
            AuditEntry {
                actor_id: None,
                actor_name: &body.name,
                action: "login_failed",
                target: "",
                details: json!({}),
                client_ip: ip.as_deref(),
            },
        )
        .await;
        return Err(ApiError::BadLogin);
    };
    limit(&state, |l| keys.iter().for_each(|k| l.succeeded(k)));
    let secret = new_secret();
    let csrf = new_secret();
    let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    panoptes_storage::auth::create_session(
        &state.inner.pool,
        &hash_secret(&secret),
        user.id,
        &csrf,
        Utc::now() + IDLE,
        ip.as_deref(),
        ua,
    )
    .await?;
    audit(
        &state,
        AuditEntry {
            actor_id: Some(user.id),
            actor_name: &user.name,
            action: "login",
            target: "",
            details: json!({}),
            client_ip: ip.as_deref(),
        },
    )
    .await;
    let me = Me { id: user.id, name: user.name, role: user.role.to_string(), csrf_token: Some(csrf) };
    let mut resp = Json(me).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, session_cookie(&state, &secret, IDLE.num_seconds())?);
    Ok(resp)
}

#[utoipa::path(post, path = "/api/auth/logout", tag = "access",
    responses((status = 204, description = "Logged out"), (status = 401, body = crate::error::ErrorBody)))]
pub(crate) async fn logout(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    if let Credential::Session { token_hash, .. } = &caller.via {
        panoptes_storage::auth::delete_session(&state.inner.pool, token_hash).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(header::SET_COOKIE, session_cookie(&state, "", 0)?);
    Ok(resp)
}

#[utoipa::path(get, path = "/api/auth/me", tag = "access",
    responses((status = 200, body = Me), (status = 401, body = crate::error::ErrorBody)))]
pub(crate) async fn me(caller: Caller) -> Json<Me> {
    let csrf_token = match caller.via {
        Credential::Session { csrf, .. } => Some(csrf),
        Credential::Token => None,
    };
    Json(Me { id: caller.user.id, name: caller.user.name, role: caller.user.role.to_string(), csrf_token })
}

/// First-admin creation with the one-time setup token.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Setup {
    token: String,
    name: String,
    password: String,
}

/// Creates the first admin with the one-time setup token printed at first start.
#[utoipa::path(post, path = "/api/setup", tag = "access", request_body = Setup,
    responses((status = 201, body = CreatedUser), (status = 403, body = crate::error::ErrorBody),
              (status = 404, description = "Setup is done", body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)),
    security(()))]
pub(crate) async fn setup(
    State(state): State<AppState>,
    Json(body): Json<Setup>,
) -> Result<Response, ApiError> {
    let expected = state.inner.config.setup_token_hash.clone();
    let Some(expected) = expected else { return Err(ApiError::Disabled("setup is done")) };
    if !crate::ops::constant_time_eq(&hash_secret(&body.token), &expected) {
        return Err(ApiError::Forbidden("wrong setup token"));
    }
    if panoptes_storage::users::count(&state.inner.pool).await? > 0 {
        return Err(ApiError::Disabled("setup is done"));
    }
    panoptes_storage::users::check_name(&body.name).map_err(|e| ApiError::invalid("name", e.to_string()))?;
    let hash = crate::auth::hash_password(&body.password)
        .map_err(|e| ApiError::invalid("password", e.to_string()))?;
    let id = panoptes_storage::users::create(&state.inner.pool, &body.name, &hash, Role::Admin)
        .await
        .map_err(|e| match e {
            panoptes_storage::users::UserError::Db(d) => ApiError::from(d),
            other => ApiError::invalid("name", other.to_string()),
        })?;
    audit(
        &state,
        AuditEntry {
            actor_id: Some(id),
            actor_name: &body.name,
            action: "setup_admin",
            target: &body.name,
            details: json!({}),
            client_ip: None,
        },
    )
    .await;
    Ok((StatusCode::CREATED, Json(CreatedUser { id, name: body.name, role: "admin".into() })).into_response())
}

/// A new API token's label.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    name: String,
}

/// A created API token; `token` is shown only once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedToken {
    id: i64,
    name: String,
    token: String,
}

/// A created user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedUser {
    id: i64,
    name: String,
    role: String,
}

/// Creates an API token for the caller; the secret is shown only in this answer.
#[utoipa::path(post, path = "/api/tokens", tag = "access", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 401, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<NewToken>,
) -> Result<Response, ApiError> {
    if body.name.trim().is_empty() || body.name.len() > 100 {
        return Err(ApiError::invalid("name", "1 to 100 characters"));
    }
    let secret = format!("{TOKEN_PREFIX}{}", new_secret());
    let id = panoptes_storage::auth::create_token(
        &state.inner.pool,
        caller.user.id,
        &body.name,
        &hash_secret(&secret),
    )
    .await?;
    audit(
        &state,
        AuditEntry {
            actor_id: Some(caller.user.id),
            actor_name: &caller.user.name,
            action: "token_create",
            target: &body.name,
            details: json!({"token_id": id}),
            client_ip: caller.client_ip.as_deref(),
        },
    )
    .await;
    Ok((StatusCode::CREATED, Json(CreatedToken { id, name: body.name, token: secret })).into_response())
}

#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "access", params(("id" = i64, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"), (status = 401, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    if !panoptes_storage::auth::revoke_token(&state.inner.pool, caller.user.id, id).await? {
        return Err(ApiError::NotFound);
    }
    audit(
        &state,
        AuditEntry {
            actor_id: Some(caller.user.id),
            actor_name: &caller.user.name,
            action: "token_revoke",
            target: &id.to_string(),
            details: json!({}),
            client_ip: caller.client_ip.as_deref(),
        },
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
