//! Cameras as the caller may see them.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use panoptes_core::StreamStatus;

use crate::session::Caller;
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/cameras/status", get(status))
}

/// Every stream's live status: state, codec, resolution, fps, bitrate, last frame, last
/// error, reconnect and drop counters. URLs never carry credentials.
async fn status(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<StreamStatus>>, ApiError> {
    let visible = crate::scope::cameras_visible(&state, &caller.user).await?;
    let streams = state.inner.board.snapshot().into_iter().filter(|s| visible.allows(&s.camera)).collect();
    Ok(Json(streams))
}
