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
pub mod extract;
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

/// A camera definition that passed the node's checks.
#[derive(Debug, Clone)]
pub struct CheckedCamera {
    /// Id, name, streams (URLs without credentials) and the definition without credentials.
    pub spec: panoptes_storage::cameras::CameraSpec,
    /// Logins by stream name.
    pub credentials: std::collections::BTreeMap<String, panoptes_storage::cameras::Credentials>,
}

/// Checks camera definitions sent to `POST`/`PATCH /api/cameras` by the rules of the
/// configuration file (which the binary owns).
pub trait CameraChecker: Send + Sync {
    /// Checks `definition` (a `[[cameras]]` table as JSON, streams may carry `username` and
    /// `password`); problems are `(field path, message)`.
    fn check(&self, definition: serde_json::Value) -> Result<CheckedCamera, Vec<(String, String)>>;
}

/// Where camera definitions are checked.
#[derive(Clone)]
pub struct CameraCheckerHandle(pub Arc<dyn CameraChecker>);

impl std::fmt::Debug for CameraCheckerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CameraCheckerHandle")
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
    /// Checks cameras added or changed through the API; without one those requests are refused.
    pub cameras: Option<CameraCheckerHandle>,
    /// This node: where cameras added through the API run unless the request names a node.
    pub node: Option<panoptes_core::NodeId>,
    /// The web UI's built files (`index.html` and its assets), served at `/`.
    pub ui_dir: Option<std::path::PathBuf>,
    /// Fires when the HTTP server stops: endless responses (the alert stream) end then, so
    /// that a graceful shutdown does not wait for browsers to hang up.
    pub shutdown: CancellationToken,
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

/// The whole HTTP surface: the API, and the web UI's files from `ui_dir` when configured
/// (any other path that is not under `/api/` gets the UI's `index.html`, so the UI's own
/// routes survive a reload).
pub fn router(state: AppState) -> Router {
    let ui_dir = state.inner.config.ui_dir.clone();
    let api = ops::routes()
        .merge(routes::access::routes())
        .merge(routes::cameras::routes())
        .merge(routes::events::routes())
        .merge(routes::recordings::routes())
        .merge(routes::users::routes())
        .merge(openapi::routes())
        .merge(live::routes())
        .with_state(state);
    let api = match ui_dir {
        Some(dir) => {
            let files = tower_http::services::ServeDir::new(&dir)
                .fallback(tower_http::services::ServeFile::new(dir.join("index.html")));
            api.fallback(move |req: axum::extract::Request| ui_file(files.clone(), req))
        }
        None => api.fallback(|| async { ApiError::NotFound }),
    };
    api.layer(tower_http::trace::TraceLayer::new_for_http())
}

/// A UI file, or `index.html` for the UI's own routes; unknown API paths stay JSON 404s.
async fn ui_file<S>(files: S, req: axum::extract::Request) -> axum::response::Response
where
    S: tower::Service<axum::extract::Request, Error = std::convert::Infallible> + Send,
    S::Response: axum::response::IntoResponse,
    S::Future: Send,
{
    use axum::response::IntoResponse;
    use tower::ServiceExt;
    let path = req.uri().path();
    if path == "/api"
        || path.starts_with("/api/")
        || !matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD)
    {
        return ApiError::NotFound.into_response();
    }
    match files.oneshot(req).await {
        Ok(r) => r.into_response(),
        Err(never) => match never {},
    }
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
