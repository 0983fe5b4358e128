//! Cameras: the list and live status of those the caller may see, and (admins) adding,
//! changing and deleting cameras through the API. A camera's definition is the
//! configuration file's `[[cameras]]` table as JSON, checked by the same rules (through
//! [`crate::CameraChecker`], which the binary provides); credentials are write-only.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use panoptes_core::{CameraId, NodeId, StreamStatus};
use panoptes_storage::cameras::{ApiCamera, CameraDetail, CameraError, StoredApiCamera};
use panoptes_storage::users::Role;
use serde::Serialize;
use serde_json::json;

use crate::extract::{Json, Path};
use crate::scope::CameraScope;
use crate::session::Caller;
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/cameras", get(list).post(create))
        .route("/api/cameras/{id}", patch(update).delete(remove))
        .route("/api/cameras/status", get(status))
        .route("/api/cameras/{id}/detect", post(detect))
}

/// How long to analyse at the full detect rate.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DetectRequest {
    /// Seconds, 1 to 3600.
    seconds: u64,
}

/// Decodes and analyses a camera at its full detect rate for a while, whatever the motion
/// gate says (idle cameras otherwise decode key frames only).
#[utoipa::path(post, path = "/api/cameras/{id}/detect", tag = "cameras", request_body = DetectRequest,
    params(("id" = String, Path, description = "Camera id")),
    responses((status = 202, description = "Full-rate analysis requested"), (status = 401, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn detect(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<DetectRequest>,
) -> Result<axum::http::StatusCode, ApiError> {
    caller.require(panoptes_storage::users::Role::Operator)?;
    if !(1..=3600).contains(&body.seconds) {
        return Err(ApiError::invalid("seconds", "1 to 3600"));
    }
    let camera = panoptes_core::CameraId::new(id).map_err(|_| ApiError::NotFound)?;
    let visible = crate::scope::cameras_visible(&state, &caller.user).await?;
    let known = state.inner.board.snapshot().iter().any(|s| s.camera == camera);
    if !visible.allows(&camera) || !known {
        return Err(ApiError::NotFound);
    }
    let Some(detect) = &state.inner.config.detect else {
        return Err(ApiError::Disabled("analytics is off on this node"));
    };
    if !detect.0.request_full_rate(&camera, std::time::Duration::from_secs(body.seconds)) {
        return Err(ApiError::NotFound);
    }
    Ok(axum::http::StatusCode::ACCEPTED)
}

#[utoipa::path(get, path = "/api/cameras/status", tag = "cameras",
    responses((status = 200, body = Vec<StreamStatus>), (status = 401, body = crate::error::ErrorBody)))]
/// Every stream's live status: state, codec, resolution, fps, bitrate, last frame, last
/// error, reconnect and drop counters. URLs never carry credentials.
pub(crate) async fn status(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<StreamStatus>>, ApiError> {
    let visible = crate::scope::cameras_visible(&state, &caller.user).await?;
    let streams = state.inner.board.snapshot().into_iter().filter(|s| visible.allows(&s.camera)).collect();
    Ok(Json(streams))
}

/// A stream as listed. Credentials are write-only: only whether there are some shows.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct StreamDto {
    name: String,
    /// Any of `record`, `live`, `grid`, `detect`.
    roles: Vec<String>,
    /// The RTSP URL without credentials (a query string shows as `redacted`).
    url: Option<String>,
    has_credentials: bool,
}

/// A camera as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CameraDto {
    id: String,
    name: String,
    enabled: bool,
    /// The node that runs it.
    node: Option<String>,
    /// `config` (a node's configuration file: change it there) or `api`.
    managed_by: String,
    streams: Vec<StreamDto>,
    /// Names of its zones.
    zones: Vec<String>,
    /// Names of its counting lines.
    lines: Vec<String>,
    /// Its analytics settings (zones with polygons, lines, alert rules, motion, tracker).
    #[schema(value_type = Object)]
    analytics: serde_json::Value,
}

fn names(v: &serde_json::Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|z| z.get("name")?.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

impl From<CameraDetail> for CameraDto {
    fn from(d: CameraDetail) -> Self {
        let analytics = d.definition.get("analytics").cloned().unwrap_or_else(|| json!({}));
        CameraDto {
            id: d.camera.id.to_string(),
            name: d.camera.name,
            enabled: d.camera.enabled,
            node: d.camera.node,
            managed_by: d.managed_by,
            streams: d
                .streams
                .into_iter()
                .map(|s| StreamDto {
                    name: s.name,
                    roles: s.roles,
                    url: s.url,
                    has_credentials: s.has_credentials,
                })
                .collect(),
            zones: names(&analytics, "zones"),
            lines: names(&analytics, "lines"),
            analytics,
        }
    }
}

#[utoipa::path(get, path = "/api/cameras", tag = "cameras",
    responses((status = 200, body = Vec<CameraDto>), (status = 401, body = crate::error::ErrorBody)))]
/// The cameras the caller may see, with streams (no credentials), zones and lines.
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<CameraDto>>, ApiError> {
    let visible = crate::scope::cameras_visible(&state, &caller.user).await?;
    let cameras = panoptes_storage::cameras::details(&state.inner.pool, &visible).await?;
    Ok(Json(cameras.into_iter().map(CameraDto::from).collect()))
}

async fn one(state: &AppState, id: &CameraId) -> Result<CameraDto, ApiError> {
    let all = panoptes_storage::cameras::details(&state.inner.pool, &CameraScope::Cameras(vec![id.clone()]))
        .await?;
    all.into_iter().next().map(CameraDto::from).ok_or(ApiError::NotFound)
}

fn camera_error(e: CameraError) -> ApiError {
    match e {
        CameraError::Exists(id) => ApiError::Conflict(format!("camera {id:?} already exists")),
        CameraError::NotFound => ApiError::NotFound,
        e @ CameraError::ManagedByConfig(_) => ApiError::ManagedByConfig(e.to_string()),
        CameraError::UnknownNode(n) => ApiError::invalid("node", format!("node {n:?} is not registered")),
        CameraError::Db(e) => e.into(),
    }
}

/// Checks a definition with the node's configuration rules.
fn check(state: &AppState, definition: serde_json::Value, node: NodeId) -> Result<ApiCamera, ApiError> {
    let Some(checker) = &state.inner.config.cameras else {
        return Err(ApiError::Disabled("cameras cannot be changed through the API on this node"));
    };
    let checked = checker.0.check(definition).map_err(|problems| match problems.into_iter().next() {
        Some((field, message)) => ApiError::invalid(field, message),
        None => ApiError::invalid("body", "invalid camera"),
    })?;
    Ok(ApiCamera { spec: checked.spec, node, credentials: checked.credentials })
}

/// Takes the API-only `node` field out of a camera body.
fn take_node(body: &mut serde_json::Value) -> Result<Option<NodeId>, ApiError> {
    let Some(obj) = body.as_object_mut() else {
        return Err(ApiError::invalid("body", "expected a JSON object"));
    };
    match obj.remove("node") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(n)) => {
            NodeId::new(n).map(Some).map_err(|e| ApiError::invalid("node", e.to_string()))
        }
        Some(_) => Err(ApiError::invalid("node", "must be a string")),
    }
}

/// Field names of a body, for the audit log (never values: they may hold passwords).
fn field_names(body: &serde_json::Value) -> Vec<String> {
    body.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

#[utoipa::path(post, path = "/api/cameras", tag = "cameras",
    request_body(content = Object, description = "The configuration file's `[[cameras]]` table as JSON \
        (`id`, `name`, `enabled`, `streams` [{`name`, `url`, `roles`, `transport`, `username`, `password`}], \
        `detect_fps`, `analytics`, ...), plus an optional `node` (default: this node). `username` and \
        `password` are write-only."),
    responses((status = 201, body = CameraDto), (status = 401, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)))]
/// Adds a camera (admins). Its node starts it at once.
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(mut body): Json<serde_json::Value>,
) -> Result<(StatusCode, Json<CameraDto>), ApiError> {
    caller.require(Role::Admin)?;
    let node = take_node(&mut body)?
        .or_else(|| state.inner.config.node.clone())
        .ok_or(ApiError::invalid("node", "required on this node"))?;
    let fields = field_names(&body);
    let cam = check(&state, body, node)?;
    panoptes_storage::cameras::create_api(&state.inner.pool, &cam).await.map_err(camera_error)?;
    let id = cam.spec.id.clone();
    crate::routes::access::audit_caller(
        &state,
        &caller,
        "camera_create",
        id.as_str(),
        json!({ "fields": fields, "node": cam.node.as_str() }),
    )
    .await;
    Ok((StatusCode::CREATED, Json(one(&state, &id).await?)))
}

/// Merges a partial camera body into the stored definition: top-level fields replace the
/// stored ones (`null` removes one); a stream sent without `username` and `password` keeps
/// the login its same-named stream had.
fn merge(stored: &StoredApiCamera, patch: serde_json::Value) -> Result<serde_json::Value, ApiError> {
    let serde_json::Value::Object(patch) = patch else {
        return Err(ApiError::invalid("body", "expected a JSON object"));
    };
    let mut merged = match &stored.definition {
        serde_json::Value::Object(o) => o.clone(),
        _ => serde_json::Map::new(),
    };
    for (k, v) in patch {
        if k == "id" && v.as_str() != Some(stored.id.as_str()) {
            return Err(ApiError::invalid("id", "a camera's id cannot change"));
        }
        if v.is_null() {
            merged.remove(&k)
        } else {
            merged.insert(k, v)
        };
    }
    if let Some(streams) = merged.get_mut("streams").and_then(|s| s.as_array_mut()) {
        for s in streams.iter_mut().filter_map(|s| s.as_object_mut()) {
            if s.contains_key("username") || s.contains_key("password") {
                continue;
            }
            let name = s.get("name").and_then(|n| n.as_str()).unwrap_or("main");
            if let Some(login) = stored.credentials.get(name) {
                s.insert("username".into(), json!(login.username));
                s.insert("password".into(), json!(login.password));
            }
        }
    }
    Ok(serde_json::Value::Object(merged))
}

#[utoipa::path(patch, path = "/api/cameras/{id}", tag = "cameras",
    params(("id" = String, Path, description = "Camera id")),
    request_body(content = Object, description = "Fields of the camera to change (see POST /api/cameras); \
        `streams` replaces the list, and a stream without `username`/`password` keeps its login."),
    responses((status = 200, body = CameraDto), (status = 401, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "Defined in a configuration file", body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)))]
/// Changes a camera added through the API (admins); its node applies the change at once.
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(mut body): Json<serde_json::Value>,
) -> Result<Json<CameraDto>, ApiError> {
    caller.require(Role::Admin)?;
    let id = CameraId::new(id).map_err(|_| ApiError::NotFound)?;
    let pool = &state.inner.pool;
    let moved_to = take_node(&mut body)?;
    let fields = field_names(&body);
    let stored = panoptes_storage::cameras::api_camera(pool, &id).await.map_err(camera_error)?;
    let current = stored.node.clone().and_then(|n| NodeId::new(n).ok());
    let node = moved_to.or(current).ok_or(ApiError::invalid("node", "required"))?;
    let merged = merge(&stored, body)?;
    let cam = check(&state, merged, node)?;
    panoptes_storage::cameras::update_api(pool, &cam).await.map_err(camera_error)?;
    crate::routes::access::audit_caller(
        &state,
        &caller,
        "camera_update",
        id.as_str(),
        json!({ "fields": fields }),
    )
    .await;
    Ok(Json(one(&state, &id).await?))
}

#[utoipa::path(delete, path = "/api/cameras/{id}", tag = "cameras",
    params(("id" = String, Path, description = "Camera id")),
    responses((status = 204, description = "Deleted; its events and recordings stay until retention removes them"),
              (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "Defined in a configuration file", body = crate::error::ErrorBody)))]
/// Deletes a camera added through the API (admins): it stops, its credentials are erased.
pub(crate) async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Admin)?;
    let id = CameraId::new(id).map_err(|_| ApiError::NotFound)?;
    panoptes_storage::cameras::retire_api(&state.inner.pool, &id).await.map_err(camera_error)?;
    crate::routes::access::audit_caller(&state, &caller, "camera_delete", id.as_str(), json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}
