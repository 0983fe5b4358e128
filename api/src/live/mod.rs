//! Live view: WebRTC to browsers over WHEP (RFC 9725), relaying the camera's encoded frames
//! without transcoding.
//!
//! - `POST /api/live/{camera}/{stream}/whep` (body: SDP offer, `Content-Type:
//!   application/sdp`) → `201 Created`, the SDP answer and `Location:
//!   /api/live/sessions/{id}`. `POST /api/live/{camera}/whep?view=grid|focus` picks the
//!   stream by role (`grid` for tiles, `live` for the focused view).
//! - `DELETE /api/live/sessions/{id}` ends a session; `PATCH` answers 405: the server is
//!   ICE-lite with all its candidates in the answer, so there is no trickle ICE.
//! - `GET /api/live/sessions`: the caller's sessions (an admin's: all).
//!
//! One str0m `Rtc` per viewer, all on one UDP socket (`server.webrtc_udp`) and/or one TCP
//! listener (`server.webrtc_tcp`), driven by one task ([`driver`]); the session logic is
//! sans-IO ([`session`]). Frames are written with the camera's 90 kHz timestamps; their
//! bytes are converted once and shared by every viewer. A new viewer gets the frames since
//! the last key frame at once (fast start).
//!
//! ICE over TCP, for networks that block UDP: the answer then also holds passive TCP host
//! candidates (lower priority than UDP ones, so browsers that can use UDP do); the browser
//! connects, and [`tcp`] reads and writes RFC 4571 frames ([`framing`]) for str0m, which
//! handles `Protocol::Tcp` like UDP. Sessions, metrics and limits are the same either way.
//!
//! Metrics: `panoptes_live_viewers{camera,stream}` (gauge), `panoptes_live_bytes_sent_total`,
//! `panoptes_live_resyncs_total{reason}`, `panoptes_live_sessions_ended_total{reason}`,
//! `panoptes_live_datagrams_dropped_total` (UDP socket buffer or TCP queue full),
//! `panoptes_live_frame_age_seconds` (camera arrival → relay driver),
//! `panoptes_live_relay_delay_seconds` (camera arrival → the frame's packets handed to the
//! kernel or the TCP queue, per viewer), `panoptes_live_tcp_connections` (gauge),
//! `panoptes_live_tcp_connections_closed_total{reason}`.

pub mod driver;
pub mod framing;
pub mod session;
pub mod tcp;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use futures::StreamExt;
use panoptes_core::{CameraId, StreamRole, VideoCodec};
use panoptes_storage::audit::{self, AuditEntry};
use panoptes_storage::users::Role;
use serde::Deserialize;
use str0m::Candidate;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::extract::{Json, Path, Query};
use crate::session::Caller;
use crate::{ApiError, AppState};
use driver::{Command, Driver, Endpoint, SessionInfo};
use session::{OfferError, ViewerSession};

/// How long a POST waits for a stream's first key frame when it has none cached yet.
const FIRST_FRAME_WAIT: Duration = Duration::from_secs(5);

/// The running relay: a handle to the driver.
#[derive(Debug, Clone)]
pub struct Relay {
    commands: mpsc::Sender<Command>,
    endpoint: Arc<Endpoint>,
    candidates: Arc<[Candidate]>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl Relay {
    /// Binds the UDP socket at `udp` and/or the ICE-TCP listener at `tcp` and starts the
    /// driver until `cancel` fires. `advertise` replaces the host candidates' IPs (behind
    /// NAT); empty means the bound IP, or loopback and the default route's address when
    /// bound to `0.0.0.0`. Fails when neither is given or one cannot be bound (the error
    /// says which).
    pub async fn start(
        udp: Option<SocketAddr>,
        tcp: Option<SocketAddr>,
        advertise: &[IpAddr],
        cancel: CancellationToken,
    ) -> std::io::Result<Relay> {
        use std::io::{Error, ErrorKind};
        if udp.is_none() && tcp.is_none() {
            return Err(Error::new(ErrorKind::InvalidInput, "neither a UDP nor a TCP address"));
        }
        let context = |proto: &'static str, addr: SocketAddr| {
            move |e: Error| Error::new(e.kind(), format!("{proto} {addr}: {e}"))
        };
        let socket = match udp {
            Some(a) => Some(UdpSocket::bind(a).await.map_err(context("UDP", a))?),
            None => None,
        };
        let listener = match tcp {
            Some(a) => Some(TcpListener::bind(a).await.map_err(context("TCP", a))?),
            None => None,
        };
        let udp = socket.as_ref().map(UdpSocket::local_addr).transpose()?;
        let tcp = listener.as_ref().map(TcpListener::local_addr).transpose()?;
        let endpoint = Endpoint::new(udp, tcp, advertise);
        tracing::info!(
            udp = ?endpoint.udp,
            tcp = ?endpoint.tcp,
            udp_candidates = ?endpoint.udp_candidates,
            tcp_candidates = ?endpoint.tcp_candidates,
            "WebRTC live relay listening"
        );
        let tcp_events = listener.map(|l| {
            let (tx, rx) = mpsc::channel(1024);
            tokio::spawn(tcp::listen(l, tx, cancel.clone()));
            rx
        });
        let candidates = endpoint.ice_candidates().into();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(Driver::new(socket, tcp_events, endpoint.clone(), rx, cancel).run());
        Ok(Relay { commands: tx, endpoint: Arc::new(endpoint), candidates })
    }

    /// The bound UDP address, if UDP is on.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.endpoint.udp
    }

    /// The bound TCP address, if ICE over TCP is on.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.endpoint.tcp
    }

    async fn request<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| ApiError::Unavailable("the live relay stopped"))?;
        rx.await.map_err(|_| ApiError::Unavailable("the live relay stopped"))
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/live/{camera}/{stream}/whep", post(whep_stream))
        .route("/api/live/{camera}/whep", post(whep_view))
        .route("/api/live/sessions", get(list))
        .route("/api/live/sessions/{id}", delete(stop).patch(patch))
}

fn relay(state: &AppState) -> Result<&Relay, ApiError> {
    state
        .inner
        .config
        .live
        .as_ref()
        .ok_or(ApiError::Disabled("live view is off: set server.webrtc_udp or server.webrtc_tcp"))
}

/// The camera, if the caller may see it (404 otherwise: never reveal that it exists).
async fn visible_camera(state: &AppState, caller: &Caller, camera: &str) -> Result<CameraId, ApiError> {
    let id = CameraId::new(camera).map_err(|_| ApiError::NotFound)?;
    let scope = crate::scope::cameras_visible(state, &caller.user).await?;
    if !scope.allows(&id) {
        return Err(ApiError::NotFound);
    }
    Ok(id)
}

#[derive(Debug, Deserialize)]
struct ViewQuery {
    view: Option<String>,
}

async fn whep_view(
    State(state): State<AppState>,
    caller: Caller,
    Path(camera): Path<String>,
    Query(q): Query<ViewQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let camera = visible_camera(&state, &caller, &camera).await?;
    let roles: &[StreamRole] = match q.view.as_deref().unwrap_or("focus") {
        "grid" => &[StreamRole::Grid, StreamRole::Live],
        "focus" => &[StreamRole::Live, StreamRole::Grid],
        _ => return Err(ApiError::invalid("view", "grid or focus")),
    };
    let streams: Vec<_> = state.inner.board.snapshot().into_iter().filter(|s| s.camera == camera).collect();
    let stream = roles
        .iter()
        .find_map(|r| streams.iter().find(|s| s.roles.contains(r)))
        .or_else(|| streams.first())
        .map(|s| s.stream.clone())
        .ok_or(ApiError::NotFound)?;
    start(&state, &caller, camera, stream, &headers, &body).await
}

async fn whep_stream(
    State(state): State<AppState>,
    caller: Caller,
    Path((camera, stream)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let camera = visible_camera(&state, &caller, &camera).await?;
    start(&state, &caller, camera, stream, &headers, &body).await
}

async fn start(
    state: &AppState,
    caller: &Caller,
    camera: CameraId,
    stream: String,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let relay = relay(state)?;
    let sdp_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
    });
    if !sdp_type {
        return Err(ApiError::UnsupportedMediaType("application/sdp"));
    }
    let offer =
        std::str::from_utf8(body).map_err(|_| ApiError::invalid("offer", "the offer is not UTF-8"))?;
    if !state.inner.board.snapshot().iter().any(|s| s.camera == camera && s.stream == stream) {
        return Err(ApiError::NotFound);
    }
    let Some(mut feed) = state.live().subscribe(&camera, &stream) else {
        return Err(ApiError::Unavailable("the stream is not running on this node"));
    };
    if feed.backlog.is_empty() {
        match tokio::time::timeout(FIRST_FRAME_WAIT, feed.frames.next()).await {
            Ok(Some(f)) => feed.backlog.push(f),
            _ => return Err(ApiError::Unavailable("the stream has no picture yet; try again")),
        }
    }
    let codec = feed.backlog.first().map(|f| f.codec).unwrap_or(VideoCodec::H264);
    let (session, answer) =
        ViewerSession::accept(offer, codec, &relay.candidates, Instant::now()).map_err(|e| match e {
            OfferError::CodecUnsupported(_) => ApiError::CodecUnsupported(e.to_string()),
            OfferError::Malformed(_) | OfferError::NoVideo => ApiError::invalid("offer", e.to_string()),
        })?;
    let id = crate::session::new_secret()[..32].to_owned();
    let start = Command::Start {
        id: id.clone(),
        camera: camera.clone(),
        stream: stream.clone(),
        user_id: caller.user.id,
        session: Box::new(session),
        feed,
    };
    relay.commands.send(start).await.map_err(|_| ApiError::Unavailable("the live relay stopped"))?;
    let entry = AuditEntry {
        actor_id: Some(caller.user.id),
        actor_name: &caller.user.name,
        action: "live_view",
        target: camera.as_str(),
        details: serde_json::json!({"stream": stream, "session": &id[..8]}),
        client_ip: caller.client_ip.as_deref(),
    };
    if let Err(e) = audit::append(&state.inner.pool, &entry).await {
        tracing::error!(error = %e, "audit log append failed");
    }
    tracing::info!(%camera, %stream, user = %caller.user.name, "live view session started");
    let location =
        HeaderValue::from_str(&format!("/api/live/sessions/{id}")).map_err(|_| ApiError::Internal)?;
    let mut resp = (StatusCode::CREATED, answer).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
    h.insert(header::LOCATION, location);
    Ok(resp)
}

/// The owner, or any admin.
fn owner_filter(caller: &Caller) -> Option<i64> {
    (caller.user.role != Role::Admin).then_some(caller.user.id)
}

async fn stop(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let relay = relay(&state)?;
    let user_id = owner_filter(&caller);
    if relay.request(|reply| Command::Stop { id, user_id, reply }).await? {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::NotFound)
    }
}

async fn patch(_caller: Caller) -> Result<StatusCode, ApiError> {
    Err(ApiError::MethodNotAllowed(
        "no trickle ICE: the server is ICE-lite and its answer holds every candidate",
    ))
}

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<SessionInfo>>, ApiError> {
    let relay = relay(&state)?;
    let mut all = relay.request(|reply| Command::List { reply }).await?;
    if let Some(user) = owner_filter(&caller) {
        all.retain(|s| s.user_id == user);
    }
    all.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Json(all))
}
