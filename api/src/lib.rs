//! HTTP API of Panoptes.
//!
//! - Operations: `/healthz` (the process answers), `/readyz` (the database answers; camera
//!   stream counts by state), `/metrics` (Prometheus text, behind a bearer token).
//! - Access: login with argon2id-hashed passwords into a session cookie (HttpOnly,
//!   SameSite=Strict) whose unsafe requests need the session's CSRF token, or API bearer
//!   tokens; login rate limiting; roles `admin`, `operator`, `viewer` and per-camera grants
//!   scoping what a caller sees; a one-time setup token for the first admin; every login,
//!   token change and setup written to the hash-chained audit log.
//! - Cameras: live status of every stream the caller may see.
//! - Live view: WHEP/WebRTC relay of the cameras' encoded video ([`live`]).
//! - Notifications: event changes published to MQTT and POSTed to webhooks ([`notify`]).
//!
//! What this crate must not do: talk RTSP, decode or run inference. It reads camera state
//! from [`panoptes_core::StatusBoard`] and data through `panoptes-storage`.

pub mod auth;
pub mod error;
mod limiter;
pub mod live;
pub mod notify;
mod openapi;
mod ops;
mod routes;
pub mod scope;
pub mod session;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use panoptes_core::{LiveSource, StatusBoard};
use panoptes_storage::PgPool;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;

/// Where "analyse this camera now" requests go.
#[derive(Clone)]
pub struct DetectHandle(pub Arc<dyn panoptes_core::DetectRequests>);

impl std::fmt::Debug for DetectHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DetectHandle")
    }
}

/// Settings of the HTTP layer.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// Bearer token `/metrics` requires; without one `/metrics` is refused.
    pub metrics_token: Option<String>,
    /// Mark the session cookie `Secure` (behind TLS).
    pub secure_cookies: bool,
    /// SHA-256 of the one-time setup token, while no user exists.
    pub setup_token_hash: Option<Vec<u8>>,
    /// The data directory (recordings and exports are served from it).
    pub data_dir: std::path::PathBuf,
    /// Analytics on this node, for full-rate detection requests.
    pub detect: Option<DetectHandle>,
    /// The WebRTC live relay; without one the WHEP endpoints answer that live view is off.
    pub live: Option<live::Relay>,
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    live: Arc<dyn LiveSource>,
    board: StatusBoard,
    metrics: PrometheusHandle,
    config: ApiConfig,
    limiter: Mutex<limiter::LoginLimiter>,
    /// A real argon2 hash to verify against when the user does not exist, so a login's
    /// timing does not reveal which names exist.
    dummy_hash: String,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").field("config", &self.config).finish_non_exhaustive()
    }
}

impl AppState {
    /// Builds the state.
    pub fn new(
        pool: PgPool,
        board: StatusBoard,
        live: Arc<dyn LiveSource>,
        metrics: PrometheusHandle,
        config: ApiConfig,
    ) -> Self {
        let dummy_hash = auth::hash_password("not a real password, only for timing").unwrap_or_default();
        AppState {
            inner: Arc::new(Inner {
                pool,
                live,
                board,
                metrics,
                config,
                limiter: Mutex::new(limiter::LoginLimiter::default()),
                dummy_hash,
            }),
        }
    }
}

impl AppState {
    /// Live video of the streams this node holds.
    pub fn live(&self) -> &Arc<dyn LiveSource> {
        &self.inner.live
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    ops::routes()
        .merge(routes::access::routes())
        .merge(routes::cameras::routes())
        .merge(routes::events::routes())
        .merge(routes::recordings::routes())
        .merge(openapi::routes())
        .merge(live::routes())
        .with_state(state)
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// Serves `router` on `listener` until `cancel` fires, then stops accepting and lets open
/// requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}
