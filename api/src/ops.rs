//! Operations endpoints: health, readiness, metrics.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::extract::Json;
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Liveness: the process answers HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive", body = String)), security(()))]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness of this node.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Readiness {
    ready: bool,
    database: String,
    cameras: CameraCounts,
}

/// Camera stream counts.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CameraCounts {
    configured: usize,
    streams: usize,
    /// Streams per state (`connecting`, `streaming`, `retrying`, `auth_failed`, `disabled`).
    #[schema(value_type = std::collections::BTreeMap<String, usize>)]
    by_state: BTreeMap<&'static str, usize>,
}

/// Readiness: 200 when the database answers; per-state counts of the camera streams.
/// Camera names are not shown here (this endpoint needs no login).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, description = "Database unreachable", body = Readiness)), security(()))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let s = &state.inner;
    let db = panoptes_storage::db::ping(&s.pool, Duration::from_secs(2)).await;
    let streams = s.board.snapshot();
    let cameras: std::collections::BTreeSet<_> = streams.iter().map(|st| &st.camera).collect();
    let mut by_state = BTreeMap::new();
    for st in &streams {
        *by_state.entry(st.phase.name()).or_insert(0) += 1;
    }
    let body = Readiness {
        ready: db.is_ok(),
        database: match &db {
            Ok(()) => "ok".into(),
            Err(e) => format!("unreachable: {e}"),
        },
        cameras: CameraCounts { configured: cameras.len(), streams: streams.len(), by_state },
    };
    let code = if db.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

/// Prometheus metrics, for a scraper holding the configured bearer token.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
              (status = 401, body = crate::error::ErrorBody), (status = 404, description = "Metrics disabled", body = crate::error::ErrorBody)),
    security(("metrics_token" = [])))]
pub(crate) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let Some(expected) = state.inner.config.metrics_token.as_deref() else {
        return Err(ApiError::Disabled(
            "metrics are disabled: set server.metrics_token_env or server.metrics_token_file",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes())) {
        return Err(ApiError::Unauthorized);
    }
    let body = state.inner.metrics.render();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

/// Compares without an early exit, so response time does not leak how much matched.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use metrics_exporter_prometheus::PrometheusBuilder;
    use panoptes_core::StatusBoard;
    use tower::ServiceExt;

    fn app(token: Option<&str>) -> Router {
        // A lazy pool never connects until used; readiness is not exercised here.
        let pool = panoptes_storage::PgPool::connect_lazy("postgres://127.0.0.1:1/none")
            .unwrap_or_else(|e| unreachable!("lazy pool: {e}"));
        let handle = PrometheusBuilder::new().build_recorder().handle();
        let state = AppState::new(
            pool,
            StatusBoard::default(),
            std::sync::Arc::new(crate::tests::NoLive),
            handle,
            crate::ApiConfig { metrics_token: token.map(str::to_owned), ..Default::default() },
        );
        crate::router(state)
    }

    async fn status_of(app: Router, req: Request<Body>) -> StatusCode {
        match app.oneshot(req).await {
            Ok(r) => r.status(),
            Err(e) => match e {},
        }
    }

    #[tokio::test]
    async fn healthz_needs_no_auth() -> Result<(), axum::http::Error> {
        let req = Request::get("/healthz").body(Body::empty())?;
        assert_eq!(status_of(app(None), req).await, StatusCode::OK);
        Ok(())
    }

    #[tokio::test]
    async fn metrics_requires_the_token() -> Result<(), axum::http::Error> {
        let req = || Request::get("/metrics");
        assert_eq!(status_of(app(None), req().body(Body::empty())?).await, StatusCode::NOT_FOUND);
        assert_eq!(
            status_of(app(Some("s3cret")), req().body(Body::empty())?).await,
            StatusCode::UNAUTHORIZED
        );
        let wrong = req().header("authorization", "Bearer nope").body(Body::empty())?;
        assert_eq!(status_of(app(Some("s3cret")), wrong).await, StatusCode::UNAUTHORIZED);
        let right = req().header("authorization", "Bearer s3cret").body(Body::empty())?;
        assert_eq!(status_of(app(Some("s3cret")), right).await, StatusCode::OK);
        Ok(())
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
