//! Recordings: segments of a camera stream by time (for the timeline and playback), a
//! segment's file with HTTP range requests, and clip export. Scoped by camera grants;
//! playback and exports are written to the audit log.

use std::path::{Component, Path as FsPath};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use panoptes_core::CameraId;
use panoptes_storage::export::ExportError;
use panoptes_storage::users::Role;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower::ServiceExt;

use crate::extract::{Json, Path, Query};
use crate::scope::cameras_visible;
use crate::session::Caller;
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/recordings", get(list))
        .route("/api/recordings/spans", get(spans))
        .route("/api/recordings/{id}/file", get(file))
        .route("/api/exports", post(export))
        .route("/api/exports/{file}", get(export_file))
}

/// A recorded segment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SegmentDto {
    id: i64,
    camera: String,
    stream: String,
    start_time: DateTime<Utc>,
    end_time: Option<DateTime<Utc>>,
    bytes: Option<i64>,
    sha256: Option<String>,
    codec: String,
    /// Where to fetch it (HTTP range requests supported).
    url: String,
}

/// Which recordings.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    /// Camera id.
    camera: String,
    /// Stream name (default `main`).
    stream: Option<String>,
    /// Start (RFC 3339).
    from: DateTime<Utc>,
    /// End (RFC 3339).
    to: DateTime<Utc>,
}

/// Which cameras' recorded spans.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpanParams {
    /// Camera ids, comma-separated; empty or absent: every camera the caller may see.
    cameras: Option<String>,
    /// Stream name (default `main`).
    stream: Option<String>,
    /// Start (RFC 3339).
    from: DateTime<Utc>,
    /// End (RFC 3339), at most 31 days after `from`.
    to: DateTime<Utc>,
    /// Gaps up to this many seconds are bridged (default 2, at most 3600).
    max_gap_secs: Option<u32>,
}

/// A stretch of continuous recording.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SpanDto {
    camera: String,
    start_time: DateTime<Utc>,
    end_time: DateTime<Utc>,
}

#[utoipa::path(get, path = "/api/recordings/spans", tag = "recordings", params(SpanParams),
    responses((status = 200, body = Vec<SpanDto>), (status = 401, body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)))]
/// Recorded spans per camera (segments merged where they follow each other), for playback
/// timelines: a few rows per camera and day instead of one per segment.
pub(crate) async fn spans(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<SpanParams>,
) -> Result<Json<Vec<SpanDto>>, ApiError> {
    if p.to <= p.from {
        return Err(ApiError::invalid("to", "must be after from"));
    }
    if p.to - p.from > chrono::Duration::days(31) {
        return Err(ApiError::invalid("to", "at most 31 days after from"));
    }
    let gap = p.max_gap_secs.unwrap_or(2);
    if gap > 3600 {
        return Err(ApiError::invalid("max_gap_secs", "at most 3600"));
    }
    let scope = cameras_visible(&state, &caller.user).await?;
    let asked = crate::routes::events::split(&p.cameras);
    let cameras: Vec<String> = if asked.is_empty() {
        panoptes_storage::cameras::list(&state.inner.pool, &scope)
            .await?
            .into_iter()
            .map(|c| c.id.to_string())
            .collect()
    } else {
        let mut ok = Vec::new();
        for c in &asked {
            // Cameras the caller may not see are left out, like cameras without recordings.
            if let Ok(id) = CameraId::new(c.clone())
                && scope.allows(&id)
            {
                ok.push(id.to_string());
            }
        }
        ok
    };
    let stream = p.stream.unwrap_or_else(|| "main".into());
    let rows = panoptes_storage::recorder::index::spans_between(
        &state.inner.pool,
        &cameras,
        &stream,
        p.from,
        p.to,
        chrono::Duration::seconds(i64::from(gap)),
    )
    .await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| SpanDto { camera: r.camera_id, start_time: r.start_time, end_time: r.end_time })
            .collect(),
    ))
}

fn visible_camera(id: &str, scope: &crate::scope::CameraScope) -> Result<CameraId, ApiError> {
    let cam = CameraId::new(id).map_err(|e| ApiError::invalid("camera", e.to_string()))?;
    if scope.allows(&cam) { Ok(cam) } else { Err(ApiError::NotFound) }
}

#[utoipa::path(get, path = "/api/recordings", tag = "recordings", params(ListParams),
    responses((status = 200, body = Vec<SegmentDto>), (status = 401, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> Result<Json<Vec<SegmentDto>>, ApiError> {
    let scope = cameras_visible(&state, &caller.user).await?;
    let cam = visible_camera(&p.camera, &scope)?;
    if p.to <= p.from {
        return Err(ApiError::invalid("to", "must be after from"));
    }
    let stream = p.stream.unwrap_or_else(|| "main".into());
    let rows = panoptes_storage::recorder::index::segments_between(
        &state.inner.pool,
        cam.as_str(),
        &stream,
        p.from,
        p.to,
    )
    .await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| SegmentDto {
                url: format!("/api/recordings/{}/file", r.id),
                id: r.id,
                camera: r.camera_id,
                stream: r.stream,
                start_time: r.start_time,
                end_time: r.end_time,
                bytes: r.bytes,
                sha256: r.sha256,
                codec: r.codec,
            })
            .collect(),
    ))
}

/// A path from the index, checked to stay inside the data directory.
pub(crate) fn inside(data_dir: &FsPath, relative: &str) -> Option<std::path::PathBuf> {
    let rel = FsPath::new(relative);
    let clean = rel.components().all(|c| matches!(c, Component::Normal(_)));
    clean.then(|| data_dir.join(rel))
}

#[utoipa::path(get, path = "/api/recordings/{id}/file", tag = "recordings", params(("id" = i64, Path, description = "Segment id")),
    responses((status = 200, description = "The MP4 segment", content_type = "video/mp4", body = String),
              (status = 206, description = "A byte range of it"), (status = 401, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn file(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    req: Request,
) -> Result<Response, ApiError> {
    let scope = cameras_visible(&state, &caller.user).await?;
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT camera_id, path FROM recording_segments WHERE id = $1 AND state = 'closed'")
            .bind(id)
            .fetch_optional(&state.inner.pool)
            .await?;
    let (camera, path) = row.ok_or(ApiError::NotFound)?;
    visible_camera(&camera, &scope)?;
    let full = inside(&state.inner.config.data_dir, &path).ok_or(ApiError::NotFound)?;
    // One audit row per playback, not per range request.
    if first_request(&req) {
        crate::routes::access::audit_caller(
            &state,
            &caller,
            "recording_view",
            &camera,
            json!({"segment": id}),
        )
        .await;
    }
    serve_file(&full, req).await
}

/// A clip to export.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportRequest {
    camera: String,
    /// Stream name (default `main`).
    stream: Option<String>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

#[utoipa::path(post, path = "/api/exports", tag = "recordings", request_body = ExportRequest,
    responses((status = 201, description = "The export's manifest", body = Object), (status = 401, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ExportRequest>,
) -> Result<Response, ApiError> {
    caller.require(Role::Operator)?;
    let scope = cameras_visible(&state, &caller.user).await?;
    let cam = visible_camera(&body.camera, &scope)?;
    let stream = body.stream.unwrap_or_else(|| "main".into());
    let result = panoptes_storage::export::export_clip(
        &state.inner.pool,
        &state.inner.config.data_dir,
        &cam,
        &stream,
        body.from,
        body.to,
        &caller.user.name,
    )
    .await
    .map_err(|e| match e {
        ExportError::InvalidRange { why, .. } => ApiError::invalid("to", why),
        ExportError::NoRecording { .. } => ApiError::NotFound,
        other => {
            tracing::error!(error = %other, "export failed");
            ApiError::Internal
        }
    })?;
    let mut manifest = serde_json::to_value(&result.manifest).map_err(|_| ApiError::Internal)?;
    let receipt =
        crate::routes::access::audit_caller(&state, &caller, "export", cam.as_str(), manifest.clone()).await;
    if let Some(r) = &receipt {
        if let Err(e) = panoptes_storage::export::attach_audit(&result.manifest_path, r) {
            tracing::error!(error = %e, "adding the audit entry to the export manifest failed");
        }
        manifest["audit"] = json!({ "id": r.id, "at": r.at, "hash": r.hash });
    }
    let clip = result.manifest.clip.clone();
    manifest["download"] = json!(format!("/api/exports/{clip}"));
    if let Some(name) = result.manifest_path.file_name().and_then(|n| n.to_str()) {
        manifest["manifest"] = json!(format!("/api/exports/{name}"));
    }
    Ok((StatusCode::CREATED, Json(manifest)).into_response())
}

#[utoipa::path(get, path = "/api/exports/{file}", tag = "recordings",
    params(("file" = String, Path, description = "The clip (`….mp4`) or its manifest (`….json`), as named by POST /api/exports")),
    responses((status = 200, description = "The exported clip or its manifest (with its audit entry)", body = String),
              (status = 206, description = "A byte range of it"), (status = 401, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
/// Downloads an export (operators, for cameras they may see); each download is audited.
pub(crate) async fn export_file(
    State(state): State<AppState>,
    caller: Caller,
    Path(file): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    caller.require(Role::Operator)?;
    let (path, manifest) = panoptes_storage::export::export_file(&state.inner.config.data_dir, &file)
        .ok_or(ApiError::NotFound)?;
    let text = tokio::fs::read(&manifest).await.map_err(|_| ApiError::NotFound)?;
    let camera: String = serde_json::from_slice::<serde_json::Value>(&text)
        .ok()
        .and_then(|m| m["camera"].as_str().map(str::to_owned))
        .ok_or(ApiError::NotFound)?;
    let scope = cameras_visible(&state, &caller.user).await?;
    visible_camera(&camera, &scope)?;
    if path.extension().is_some_and(|e| e == "mp4") && first_request(&req) {
        crate::routes::access::audit_caller(
            &state,
            &caller,
            "export_download",
            &camera,
            json!({ "file": file }),
        )
        .await;
    }
    serve_file(&path, req).await
}

/// Whether a request starts a download or playback (no range, or a range from byte 0),
/// so that one is audited once, not per range request.
fn first_request(req: &Request) -> bool {
    match req.headers().get(axum::http::header::RANGE) {
        None => true,
        Some(r) => r.as_bytes().starts_with(b"bytes=0-"),
    }
}

/// A file with range requests; the content type follows the extension.
async fn serve_file(full: &FsPath, req: Request) -> Result<Response, ApiError> {
    match tower_http::services::ServeFile::new(full).oneshot(req).await {
        Ok(resp) if resp.status() == StatusCode::NOT_FOUND => Err(ApiError::NotFound),
        Ok(resp) => Ok(resp.map(Body::new)),
        Err(e) => {
            tracing::error!(error = %e, path = %full.display(), "serving a file failed");
            Err(ApiError::Internal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_paths_stay_inside_the_data_dir() {
        let d = FsPath::new("/data");
        assert_eq!(inside(d, "recordings/a/x.mp4"), Some(d.join("recordings/a/x.mp4")));
        assert_eq!(inside(d, "../etc/passwd"), None);
        assert_eq!(inside(d, "/etc/passwd"), None);
        assert_eq!(inside(d, "recordings/../../x"), None);
    }
}
