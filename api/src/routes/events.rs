//! Events: incident search with keyset paging, one event, review, counts, and the live
//! alert stream (Server-Sent Events). Every query is scoped by the caller's camera grants.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use futures::Stream;
use panoptes_core::CameraId;
use panoptes_storage::events::ReviewState;
use panoptes_storage::queries::{self, Cursor, EventFilter, EventRow, RangeFilter, ReviewError, Verdict};
use panoptes_storage::users::Role;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::extract::{Json, Path, Query};
use crate::scope::cameras_visible;
use crate::session::Caller;
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/events", get(list))
        .route("/api/events/stream", get(stream))
        .route("/api/events/counts", get(counts))
        .route("/api/events/{id}", get(one))
        .route("/api/events/{id}/review", post(review))
        .route("/api/events/{id}/snapshot", get(snapshot))
}

/// An event as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EventDto {
    id: Uuid,
    camera: String,
    label: String,
    sub_label: Option<String>,
    score_max: f32,
    score_median: f32,
    /// Best snapshot's box, normalised: `[x, y, w, h]`.
    bbox: [f32; 4],
    zones: Vec<String>,
    /// Whether the camera's alert rules (labels, required zones) accept it; only alerts
    /// belong in the review queue.
    alert: bool,
    start_time: DateTime<Utc>,
    end_time: Option<DateTime<Utc>>,
    /// `new`, `acknowledged` or `dismissed`.
    review_state: String,
    reviewed_by: Option<i64>,
    reviewed_at: Option<DateTime<Utc>>,
    review_note: Option<String>,
}

impl From<EventRow> for EventDto {
    fn from(e: EventRow) -> Self {
        EventDto {
            id: e.id,
            camera: e.camera.to_string(),
            label: e.label,
            sub_label: e.sub_label,
            score_max: e.score_max,
            score_median: e.score_median,
            bbox: [e.bbox.x, e.bbox.y, e.bbox.w, e.bbox.h],
            zones: e.zones,
            alert: e.alert,
            start_time: e.start_time,
            end_time: e.end_time,
            review_state: e.review_state.as_str().to_owned(),
            reviewed_by: e.reviewed_by,
            reviewed_at: e.reviewed_at,
            review_note: e.review_note,
        }
    }
}

/// A page of events, newest first; pass `next` as `after` for the following page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EventPage {
    events: Vec<EventDto>,
    next: Option<String>,
}

/// Search parameters. Lists are comma-separated.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    /// Start of the range (RFC 3339).
    from: Option<DateTime<Utc>>,
    /// End of the range (RFC 3339).
    to: Option<DateTime<Utc>>,
    /// Camera ids, comma-separated.
    cameras: Option<String>,
    /// Labels, comma-separated (`car,bus`).
    labels: Option<String>,
    /// Zones (any of), comma-separated.
    zones: Option<String>,
    /// Minimum best score, 0..1.
    min_score: Option<f32>,
    /// Review states, comma-separated (`new,acknowledged`).
    review: Option<String>,
    /// Text in the sub label (plate, face name).
    sub_label: Option<String>,
    /// `true`: only alerts (the review queue); `false`: only events that are not alerts.
    alert: Option<bool>,
    /// Cursor from the previous page's `next`.
    after: Option<String>,
    /// Page size (1–500, default 50).
    limit: Option<u32>,
}

/// A comma-separated query parameter as its non-empty, trimmed items.
pub(crate) fn split(s: &Option<String>) -> Vec<String> {
    s.as_deref()
        .map(|s| s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn cameras_param(s: &Option<String>) -> Result<Vec<CameraId>, ApiError> {
    split(s)
        .into_iter()
        .map(|c| CameraId::new(c.clone()).map_err(|e| ApiError::invalid("cameras", format!("{c:?}: {e}"))))
        .collect()
}

fn filter_error(e: queries::FilterError) -> ApiError {
    match e.0.into_iter().next() {
        Some(f) => ApiError::invalid(f.field, f.message),
        None => ApiError::invalid("query", "invalid"),
    }
}

#[utoipa::path(get, path = "/api/events", tag = "events", params(ListParams),
    responses((status = 200, body = EventPage), (status = 401, body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> Result<Json<EventPage>, ApiError> {
    let access = cameras_visible(&state, &caller.user).await?;
    let review = split(&p.review)
        .into_iter()
        .map(|r| {
            ReviewState::parse(&r).ok_or_else(|| ApiError::invalid("review", format!("unknown state {r:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let after = match &p.after {
        Some(c) => {
            Some(c.parse::<Cursor>().map_err(|_| ApiError::invalid("after", "not a cursor from `next`"))?)
        }
        None => None,
    };
    let filter = EventFilter {
        from: p.from,
        to: p.to,
        cameras: cameras_param(&p.cameras)?,
        labels: split(&p.labels),
        zones: split(&p.zones),
        min_score: p.min_score,
        review,
        alert: p.alert,
        sub_label: p.sub_label.clone(),
        after,
        limit: p.limit.unwrap_or(50),
    };
    let page = match queries::list(&state.inner.pool, &access, &filter).await {
        Ok(p) => p,
        Err(queries::QueryError::Invalid(e)) => return Err(filter_error(e)),
        Err(queries::QueryError::Db(e)) => return Err(e.into()),
    };
    Ok(Json(EventPage {
        events: page.events.into_iter().map(EventDto::from).collect(),
        next: page.next.map(|c| c.to_string()),
    }))
}

#[utoipa::path(get, path = "/api/events/{id}", tag = "events", params(("id" = Uuid, Path, description = "Event id")),
    responses((status = 200, body = EventDto), (status = 401, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<EventDto>, ApiError> {
    let access = cameras_visible(&state, &caller.user).await?;
    let e = queries::get(&state.inner.pool, &access, id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(e.into()))
}

/// Which snapshot.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotParams {
    /// The crop around the object instead of the whole frame.
    crop: Option<bool>,
}

#[utoipa::path(get, path = "/api/events/{id}/snapshot", tag = "events",
    params(("id" = Uuid, Path, description = "Event id"), SnapshotParams),
    responses((status = 200, description = "JPEG", content_type = "image/jpeg", body = String),
              (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn snapshot(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(p): Query<SnapshotParams>,
    req: axum::extract::Request,
) -> Result<axum::response::Response, ApiError> {
    use tower::ServiceExt;
    let access = cameras_visible(&state, &caller.user).await?;
    let e = queries::get(&state.inner.pool, &access, id).await?.ok_or(ApiError::NotFound)?;
    let rel = e.snapshot_path.ok_or(ApiError::NotFound)?;
    let dir = state.inner.config.data_dir.join("snapshots");
    let mut full = crate::routes::recordings::inside(&dir, &rel).ok_or(ApiError::NotFound)?;
    if p.crop == Some(true) {
        let stem = full.file_stem().and_then(|s| s.to_str()).unwrap_or("snapshot").to_owned();
        full.set_file_name(format!("{stem}-crop.jpg"));
    }
    let resp =
        tower_http::services::ServeFile::new(&full).oneshot(req).await.map_err(|_| ApiError::Internal)?;
    if resp.status() == axum::http::StatusCode::NOT_FOUND {
        return Err(ApiError::NotFound);
    }
    Ok(resp.map(axum::body::Body::new))
}

/// A review decision.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReviewBody {
    /// `acknowledge` or `dismiss`.
    verdict: String,
    /// Why (at most 2000 characters).
    note: Option<String>,
}

#[utoipa::path(post, path = "/api/events/{id}/review", tag = "events", request_body = ReviewBody,
    params(("id" = Uuid, Path, description = "Event id")),
    responses((status = 200, body = EventDto), (status = 401, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "Already in that state", body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn review(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<ReviewBody>,
) -> Result<Json<EventDto>, ApiError> {
    caller.require(Role::Operator)?;
    let verdict = match body.verdict.as_str() {
        "acknowledge" => Verdict::Acknowledge,
        "dismiss" => Verdict::Dismiss,
        other => {
            return Err(ApiError::invalid("verdict", format!("{other:?} is not acknowledge or dismiss")));
        }
    };
    let access = cameras_visible(&state, &caller.user).await?;
    let row = queries::review(&state.inner.pool, &access, id, verdict, caller.user.id, body.note.as_deref())
        .await
        .map_err(|e| match e {
            ReviewError::NotFound => ApiError::NotFound,
            ReviewError::Unchanged { state, .. } => {
                ApiError::Conflict(format!("event is already {}", state.as_str()))
            }
            ReviewError::NoteTooLong => ApiError::invalid("note", "at most 2000 characters"),
            ReviewError::Db(e) => e.into(),
        })?;
    crate::routes::access::audit_caller(
        &state,
        &caller,
        "review",
        &id.to_string(),
        json!({"verdict": body.verdict, "note": body.note, "camera": row.camera.as_str()}),
    )
    .await;
    Ok(Json(row.into()))
}

/// Range and grouping for counts.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct CountParams {
    /// Start (RFC 3339).
    from: DateTime<Utc>,
    /// End (RFC 3339).
    to: DateTime<Utc>,
    /// Camera ids, comma-separated.
    cameras: Option<String>,
    /// Labels, comma-separated.
    labels: Option<String>,
    /// `hour` (default), `label`, or `line` (counting-line crossings per camera, line, label
    /// and direction over the range).
    by: Option<String>,
}

/// One count.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CountDto {
    /// The hour (for `by=hour`).
    hour: Option<DateTime<Utc>>,
    /// The label (for `by=label` and `by=line`).
    label: Option<String>,
    /// The camera (for `by=line`).
    #[serde(skip_serializing_if = "Option::is_none")]
    camera: Option<String>,
    /// The counting line (for `by=line`).
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<String>,
    /// `in` or `out` (for `by=line`).
    #[serde(skip_serializing_if = "Option::is_none")]
    direction: Option<String>,
    count: i64,
}

impl CountDto {
    fn new(hour: Option<DateTime<Utc>>, label: Option<String>, count: i64) -> Self {
        CountDto { hour, label, camera: None, line: None, direction: None, count }
    }
}

#[utoipa::path(get, path = "/api/events/counts", tag = "events", params(CountParams),
    responses((status = 200, body = Vec<CountDto>), (status = 401, body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn counts(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<CountParams>,
) -> Result<Json<Vec<CountDto>>, ApiError> {
    let access = cameras_visible(&state, &caller.user).await?;
    let f =
        RangeFilter { from: p.from, to: p.to, cameras: cameras_param(&p.cameras)?, labels: split(&p.labels) };
    let result = match p.by.as_deref().unwrap_or("hour") {
        "hour" => queries::counts_per_hour(&state.inner.pool, &access, &f)
            .await
            .map(|v| v.into_iter().map(|c| CountDto::new(Some(c.hour), None, c.count)).collect()),
        "label" => queries::counts_per_label(&state.inner.pool, &access, &f)
            .await
            .map(|v| v.into_iter().map(|c| CountDto::new(None, Some(c.label), c.count)).collect()),
        "line" => queries::line_counts(&state.inner.pool, &access, &f, false).await.map(|v| {
            v.into_iter()
                .map(|c| CountDto {
                    camera: Some(c.camera),
                    line: Some(c.line_id),
                    direction: Some(c.direction),
                    ..CountDto::new(None, Some(c.label), c.count)
                })
                .collect()
        }),
        other => return Err(ApiError::invalid("by", format!("{other:?} is not hour, label or line"))),
    };
    match result {
        Ok(v) => Ok(Json(v)),
        Err(queries::QueryError::Invalid(e)) => Err(filter_error(e)),
        Err(queries::QueryError::Db(e)) => Err(e.into()),
    }
}

/// New and updated events as Server-Sent Events (`event: start|update|end|review`, data:
/// `{id, camera, label, state, kind}`), only for cameras the caller may see.
#[utoipa::path(get, path = "/api/events/stream", tag = "events",
    responses((status = 200, description = "text/event-stream", content_type = "text/event-stream", body = String),
              (status = 401, body = crate::error::ErrorBody)))]
pub(crate) async fn stream(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let access = cameras_visible(&state, &caller.user).await?;
    let mut listener = sqlx::postgres::PgListener::connect_with(&state.inner.pool).await?;
    listener.listen("panoptes_events").await?;
    let shutdown = state.inner.config.shutdown.clone();
    let stream = futures::stream::unfold((listener, access), move |(mut listener, access)| {
        let shutdown = shutdown.clone();
        async move {
            loop {
                // `recv` reconnects by itself after a lost connection; give up only on errors it
                // cannot recover from, and when the server stops.
                let n = tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    n = listener.recv() => n,
                };
                let n = match n {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "alert stream: listener failed");
                        return None;
                    }
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(n.payload()) else { continue };
                let visible = v["camera"]
                    .as_str()
                    .and_then(|c| CameraId::new(c).ok())
                    .is_some_and(|c| access.allows(&c));
                if !visible {
                    continue;
                }
                let kind = v["kind"].as_str().unwrap_or("update").to_owned();
                let ev = SseEvent::default().event(kind).data(v.to_string());
                return Some((Ok(ev), (listener, access)));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
