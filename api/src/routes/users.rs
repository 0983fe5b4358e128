//! Users and roles (admins only), and the audit log. Users are never deleted: `DELETE`
//! disables one (their reviews and audit entries keep naming them), ending their sessions
//! and revoking their tokens. Every change is written to the audit log, without passwords.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch};
use chrono::{DateTime, Utc};
use panoptes_storage::users::{ChangeError, Role, UserChange, UserError, UserRow};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::extract::{Json, Path, Query};
use crate::session::Caller;
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/users", get(list).post(create))
        .route("/api/users/{id}", patch(update).delete(disable))
        .route("/api/audit", get(audit_log))
}

/// A user as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct UserDto {
    id: i64,
    name: String,
    /// `admin`, `operator` or `viewer`.
    role: String,
    /// Cameras granted (admins see every camera).
    cameras: Vec<String>,
    disabled: bool,
    created_at: DateTime<Utc>,
}

impl From<UserRow> for UserDto {
    fn from(u: UserRow) -> Self {
        UserDto {
            id: u.id,
            name: u.name,
            role: u.role.to_string(),
            cameras: u.cameras,
            disabled: u.disabled_at.is_some(),
            created_at: u.created_at,
        }
    }
}

#[utoipa::path(get, path = "/api/users", tag = "users",
    responses((status = 200, body = Vec<UserDto>), (status = 401, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody)))]
/// Every user (admins).
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<UserDto>>, ApiError> {
    caller.require(Role::Admin)?;
    let users = panoptes_storage::users::list(&state.inner.pool, None).await?;
    Ok(Json(users.into_iter().map(UserDto::from).collect()))
}

/// A new user.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    /// 1 to 64 of letters, digits, `.`, `_`, `@`, `-`; unique ignoring case.
    name: String,
    /// At least 12 characters.
    password: String,
    /// `admin`, `operator` or `viewer`.
    role: String,
    /// Cameras to grant.
    #[serde(default)]
    cameras: Vec<String>,
}

/// Changes to a user; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserPatch {
    role: Option<String>,
    /// A new password (ends the user's sessions).
    password: Option<String>,
    /// The full set of granted cameras.
    cameras: Option<Vec<String>>,
    /// Disable or enable the user.
    disabled: Option<bool>,
}

fn role(r: &str) -> Result<Role, ApiError> {
    r.parse().map_err(|e: String| ApiError::invalid("role", e))
}

fn hash(password: &str) -> Result<String, ApiError> {
    crate::auth::hash_password(password).map_err(|e| ApiError::invalid("password", e.to_string()))
}

fn change_error(e: ChangeError) -> ApiError {
    match e {
        ChangeError::NotFound => ApiError::NotFound,
        e @ ChangeError::LastAdmin => ApiError::Conflict(e.to_string()),
        e @ ChangeError::UnknownCamera(_) => ApiError::invalid("cameras", e.to_string()),
        ChangeError::Db(e) => e.into(),
    }
}

async fn one(state: &AppState, id: i64) -> Result<UserDto, ApiError> {
    let users = panoptes_storage::users::list(&state.inner.pool, Some(id)).await?;
    users.into_iter().next().map(UserDto::from).ok_or(ApiError::NotFound)
}

#[utoipa::path(post, path = "/api/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserDto), (status = 401, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)))]
/// Creates a user (admins).
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<NewUser>,
) -> Result<(StatusCode, Json<UserDto>), ApiError> {
    caller.require(Role::Admin)?;
    panoptes_storage::users::check_name(&body.name).map_err(|e| ApiError::invalid("name", e.to_string()))?;
    let role = role(&body.role)?;
    let hash = hash(&body.password)?;
    let pool = &state.inner.pool;
    let id = panoptes_storage::users::create(pool, &body.name, &hash, role).await.map_err(|e| match e {
        UserError::Exists(n) => ApiError::Conflict(format!("user {n:?} already exists")),
        e @ UserError::BadName(_) => ApiError::invalid("name", e.to_string()),
        UserError::Db(d) => d.into(),
    })?;
    if !body.cameras.is_empty() {
        let grants = UserChange { cameras: Some(body.cameras.clone()), ..Default::default() };
        if let Err(e) = panoptes_storage::users::change(pool, id, &grants).await {
            // Keep nothing half-made: the user goes again.
            sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(pool).await?;
            return Err(change_error(e));
        }
    }
    crate::routes::access::audit_caller(
        &state,
        &caller,
        "user_create",
        &body.name,
        json!({ "role": role.as_str(), "cameras": body.cameras }),
    )
    .await;
    Ok((StatusCode::CREATED, Json(one(&state, id).await?)))
}

#[utoipa::path(patch, path = "/api/users/{id}", tag = "users", request_body = UserPatch,
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = UserDto), (status = 401, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "It would leave no enabled admin", body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)))]
/// Changes a user's role, password, camera grants or enabled state (admins).
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Json(body): Json<UserPatch>,
) -> Result<Json<UserDto>, ApiError> {
    caller.require(Role::Admin)?;
    let change = UserChange {
        role: body.role.as_deref().map(role).transpose()?,
        password_hash: body.password.as_deref().map(hash).transpose()?,
        cameras: body.cameras.clone(),
        disabled: body.disabled,
    };
    panoptes_storage::users::change(&state.inner.pool, id, &change).await.map_err(change_error)?;
    let user = one(&state, id).await?;
    let details = json!({
        "role": body.role, "cameras": body.cameras, "disabled": body.disabled,
        "password_changed": body.password.is_some(),
    });
    crate::routes::access::audit_caller(&state, &caller, "user_update", &user.name, details).await;
    Ok(Json(user))
}

#[utoipa::path(delete, path = "/api/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "User id")),
    responses((status = 204, description = "Disabled: sessions ended, tokens revoked"),
              (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "It would leave no enabled admin", body = crate::error::ErrorBody)))]
/// Disables a user (admins); users are kept so that their reviews still name them.
pub(crate) async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Admin)?;
    let change = UserChange { disabled: Some(true), ..Default::default() };
    panoptes_storage::users::change(&state.inner.pool, id, &change).await.map_err(change_error)?;
    let user = one(&state, id).await?;
    crate::routes::access::audit_caller(&state, &caller, "user_disable", &user.name, json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Audit log paging and filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    /// Entries older than this id (the previous page's `next`).
    before: Option<i64>,
    /// Only this action (`login`, `review`, `live_view`, `camera_update`, ...).
    action: Option<String>,
    /// Only this actor's name.
    actor: Option<String>,
    /// Page size, 1 to 500 (default 100).
    limit: Option<u32>,
}

/// An audit entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AuditDto {
    id: i64,
    at: DateTime<Utc>,
    actor_id: Option<i64>,
    actor: String,
    action: String,
    target: String,
    #[schema(value_type = Object)]
    details: serde_json::Value,
    ip: Option<String>,
}

/// A page of audit entries, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AuditPage {
    entries: Vec<AuditDto>,
    /// Pass as `before` for the next page.
    next: Option<i64>,
}

#[utoipa::path(get, path = "/api/audit", tag = "users", params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 401, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
/// The audit log, newest first (admins). `panoptes audit verify` checks its hash chain.
pub(crate) async fn audit_log(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(Role::Admin)?;
    let limit = p.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "1 to 500"));
    }
    let rows = panoptes_storage::audit::list(
        &state.inner.pool,
        p.before,
        p.action.as_deref(),
        p.actor.as_deref(),
        limit + 1,
    )
    .await?;
    let more = rows.len() > limit as usize;
    let entries: Vec<AuditDto> = rows
        .into_iter()
        .take(limit as usize)
        .map(|r| AuditDto {
            id: r.id,
            at: r.at,
            actor_id: r.actor_id,
            actor: r.actor_name,
            action: r.action,
            target: r.target,
            details: r.details,
            ip: r.client_ip,
        })
        .collect();
    let next = if more { entries.last().map(|e| e.id) } else { None };
    Ok(Json(AuditPage { entries, next }))
}
