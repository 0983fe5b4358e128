//! Cameras as the caller may see them.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use panoptes_core::StreamStatus;

use crate::session::Caller;
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/cameras/status", get(status)).route("/api/cameras/{id}/detect", post(detect))
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
