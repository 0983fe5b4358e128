//! HTTP API of Panoptes.
//!
//! Today: `/healthz` (the process answers), `/readyz` (the database answers and the cameras
//! are configured; per-state camera counts) and `/metrics` (Prometheus text format, behind a
//! bearer token). The REST resources, authentication, the WHEP live relay and the web UI
//! are added here as they are built.
//!
//! What this crate must not do: talk RTSP, decode or run inference. It reads camera state
//! from [`panoptes_core::StatusBoard`] and data through `panoptes-storage`.

pub mod auth;
mod error;
mod ops;

use std::sync::Arc;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use panoptes_core::StatusBoard;
use panoptes_storage::PgPool;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    board: StatusBoard,
    metrics: PrometheusHandle,
    metrics_token: Option<String>,
}

impl AppState {
    /// Builds the state. `metrics_token`, when set, is the bearer token `/metrics` requires;
    /// without one `/metrics` is refused.
    pub fn new(
        pool: PgPool,
        board: StatusBoard,
        metrics: PrometheusHandle,
        metrics_token: Option<String>,
    ) -> Self {
        AppState { inner: Arc::new(Inner { pool, board, metrics, metrics_token }) }
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    ops::routes().with_state(state).layer(tower_http::trace::TraceLayer::new_for_http())
}

/// Serves `router` on `listener` until `cancel` fires, then stops accepting and lets open
/// requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(async move { cancel.cancelled().await }).await
}
