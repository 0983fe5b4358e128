//! One camera stream: an RTSP session and the supervisor that keeps it alive.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use panoptes_core::status::unix_ms;
use panoptes_core::{
    CameraId, EncodedFrame, RedactedUrl, StatusBoard, StreamPhase, StreamRole, StreamStatus, VideoCodec,
};
use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions};
use retina::codec::{CodecItem, FrameFormat, ParameterSetInsertion, ParametersRef, VideoParametersCodec};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};
use url::Url;

use crate::backoff::{Backoff, BackoffPolicy};
use crate::fanout::Fanout;
use crate::rate::RateWindow;
use crate::timeline::{Step, Timeline};

/// User name and password for a camera. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How RTP travels from the camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Interleaved in the RTSP TCP connection: the default, robust on every network.
    #[default]
    Tcp,
    /// Separate UDP ports: lower overhead, only for clean LANs.
    Udp,
}

/// Time limits of a session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    /// Limit on each of DESCRIBE, SETUP and PLAY.
    pub request: Duration,
    /// A session that yields no frame for this long is torn down and restarted.
    pub watchdog: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { request: Duration::from_secs(10), watchdog: Duration::from_secs(5) }
    }
}

/// Everything needed to run one camera stream.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// The camera.
    pub camera: CameraId,
    /// The stream's name within the camera (`main`, `sub`, …).
    pub stream: String,
    /// The RTSP URL, without credentials.
    pub url: Url,
    /// Credentials, if the camera needs them.
    pub credentials: Option<Credentials>,
    /// RTP transport.
    pub transport: Transport,
    /// What the stream is used for.
    pub roles: Vec<StreamRole>,
    /// Time limits.
    pub timeouts: Timeouts,
}

impl StreamSpec {
    /// The URL as it may be logged.
    pub fn redacted_url(&self) -> RedactedUrl {
        panoptes_core::redact(&self.url)
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// An RTSP request got no answer in time.
    #[error("{request} timed out after {after:?}")]
    Timeout {
        /// `DESCRIBE`, `SETUP` or `PLAY`.
        request: &'static str,
        /// The limit.
        after: Duration,
    },
    /// The camera answered 401/403.
    #[error("camera rejected the credentials: {0}")]
    Auth(String),
    /// The camera offers no video stream we can depacketize.
    #[error("no H.264 or H.265 video stream offered (streams: {0})")]
    NoVideo(String),
    /// No frame for longer than the watchdog allows.
    #[error("no frame for {0:?} (watchdog)")]
    Watchdog(Duration),
    /// The camera ended the stream.
    #[error("camera closed the stream")]
    EndOfStream,
    /// Any other RTSP/RTP failure.
    #[error("{0}")]
    Rtsp(String),
}

impl SessionError {
    fn from_retina(e: &retina::Error) -> Self {
        // retina's messages carry connection and packet context on further lines; the first
        // line says what happened. URLs in them are the credential-free ones we passed.
        let msg = e.to_string();
        let first = msg.lines().next().unwrap_or("").trim().to_owned();
        match e.status_code() {
            Some(401 | 403) => SessionError::Auth(first),
            _ => SessionError::Rtsp(first),
        }
    }

    /// The metric label for this kind of failure.
    pub fn reason(&self) -> &'static str {
        match self {
            SessionError::Timeout { .. } => "timeout",
            SessionError::Auth(_) => "auth",
            SessionError::NoVideo(_) => "no_video",
            SessionError::Watchdog(_) => "watchdog",
            SessionError::EndOfStream => "end_of_stream",
            SessionError::Rtsp(_) => "rtsp",
        }
    }
}

/// Runs the stream until `cancel` fires: connect, stream, and on any failure wait out the
/// backoff and connect again.
pub(crate) async fn supervise(
    spec: StreamSpec,
    board: StatusBoard,
    fanout: Arc<Fanout>,
    cancel: CancellationToken,
) {
    let span = info_span!("stream", camera = %spec.camera, stream = %spec.stream);
    async move {
        let mut net = Backoff::new(BackoffPolicy::NETWORK);
        let mut auth = Backoff::new(BackoffPolicy::AUTH);
        let mut sessions: u64 = 0;
        let mut out = Output { fanout, timeline: Timeline::default(), params_epoch: 0 };
        let labels = [("camera", spec.camera.to_string()), ("stream", spec.stream.clone())];
        info!(url = %spec.redacted_url(), transport = ?spec.transport, "starting stream");
        loop {
            set_phase(&board, &spec, StreamPhase::Connecting);
            if sessions > 0 {
                board.update(&spec.camera, &spec.stream, |s| s.reconnects += 1);
            }
            sessions += 1;
            let mut streamed = false;
            let result = tokio::select! {
                _ = cancel.cancelled() => break,
                r = run_session(&spec, &board, &mut out, &mut streamed) => r,
            };
            out.fanout.reset();
            out.timeline.new_session();
            if streamed {
                net.reset();
                auth.reset();
            }
            let (delay, phase_is_auth) = match &result {
                SessionError::Auth(_) => (auth.next_delay(rand::random()), true),
                _ => (net.next_delay(rand::random()), false),
            };
            metrics::counter!("panoptes_camera_session_failures_total",
                "camera" => labels[0].1.clone(), "stream" => labels[1].1.clone(),
                "reason" => result.reason())
            .increment(1);
            let next = unix_ms(SystemTime::now() + delay);
            let last_error = result.to_string();
            warn!(error = %last_error, retry_in = ?delay, "stream session ended");
            let phase = if phase_is_auth {
                StreamPhase::AuthFailed { last_error, next_attempt_unix_ms: next }
            } else {
                StreamPhase::Retrying { last_error, next_attempt_unix_ms: next }
            };
            set_phase(&board, &spec, phase);
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        info!("stream stopped");
    }
    .instrument(span)
    .await
}

fn set_phase(board: &StatusBoard, spec: &StreamSpec, phase: StreamPhase) {
    for name in StreamPhase::NAMES {
        metrics::gauge!("panoptes_camera_state",
            "camera" => spec.camera.to_string(), "stream" => spec.stream.clone(), "state" => name)
        .set(if name == phase.name() { 1.0 } else { 0.0 });
    }
    board.update(&spec.camera, &spec.stream, |s| s.phase = phase);
}

/// The initial board entry for a stream.
pub(crate) fn initial_status(spec: &StreamSpec, phase: StreamPhase) -> StreamStatus {
    StreamStatus {
        camera: spec.camera.clone(),
        stream: spec.stream.clone(),
        roles: spec.roles.clone(),
        url: spec.redacted_url(),
        phase,
        reconnects: 0,
        frames: 0,
        dropped_frames: 0,
    }
}

async fn with_timeout<T>(
    request: &'static str,
    after: Duration,
    fut: impl Future<Output = Result<T, retina::Error>>,
) -> Result<T, SessionError> {
    match tokio::time::timeout(after, fut).await {
        Err(_) => Err(SessionError::Timeout { request, after }),
        Ok(Err(e)) => Err(SessionError::from_retina(&e)),
        Ok(Ok(v)) => Ok(v),
    }
}

/// Where a stream's frames go, kept across its sessions.
struct Output {
    fanout: Arc<Fanout>,
    timeline: Timeline,
    params_epoch: u32,
}

/// The parameter sets as Annex B NAL units, to put in front of key frames.
fn parameter_sets(p: Option<ParametersRef<'_>>) -> Bytes {
    let Some(ParametersRef::Video(v)) = p else { return Bytes::new() };
    let nals: Vec<&Bytes> = match v.codec_params() {
        VideoParametersCodec::H264 { sps, pps } => vec![sps, pps],
        VideoParametersCodec::H265 { vps, sps, pps } => vec![vps, sps, pps],
        _ => return Bytes::new(),
    };
    let mut b = BytesMut::new();
    for n in nals {
        b.put_slice(&[0, 0, 0, 1]);
        b.put_slice(n);
    }
    b.freeze()
}

/// What the board shows about a streaming session, refreshed about once a second.
struct Streaming {
    codec: String,
    width: u32,
    height: u32,
}

impl Streaming {
    fn from_params(p: Option<ParametersRef<'_>>) -> Self {
        match p {
            Some(ParametersRef::Video(v)) => {
                let (width, height) = v.pixel_dimensions();
                Streaming { codec: v.rfc6381_codec().to_owned(), width, height }
            }
            _ => Streaming { codec: String::new(), width: 0, height: 0 },
        }
    }
}

/// One RTSP session, from DESCRIBE until it fails. Never returns success: a stream that
/// ends is an error to the supervisor. Sets `streamed` once a frame has arrived.
async fn run_session(
    spec: &StreamSpec,
    board: &StatusBoard,
    out: &mut Output,
    streamed: &mut bool,
) -> SessionError {
    match run_session_inner(spec, board, out, streamed).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn run_session_inner(
    spec: &StreamSpec,
    board: &StatusBoard,
    out: &mut Output,
    streamed: &mut bool,
) -> Result<std::convert::Infallible, SessionError> {
    let t = spec.timeouts;
    let creds = spec
        .credentials
        .as_ref()
        .map(|c| retina::client::Credentials { username: c.username.clone(), password: c.password.clone() });
    let options = SessionOptions::default().creds(creds).user_agent("Panoptes".to_owned());
    let mut session =
        with_timeout("DESCRIBE", t.request, Session::describe(spec.url.clone(), options)).await?;
    let video = session
        .streams()
        .iter()
        .position(|s| s.media() == "video" && matches!(s.encoding_name(), "h264" | "h265"))
        .ok_or_else(|| {
            let offered: Vec<String> =
                session.streams().iter().map(|s| format!("{}/{}", s.media(), s.encoding_name())).collect();
            SessionError::NoVideo(offered.join(", "))
        })?;
    let transport = match spec.transport {
        Transport::Tcp => retina::client::Transport::Tcp(Default::default()),
        Transport::Udp => retina::client::Transport::Udp(Default::default()),
    };
    // Annex B without in-band parameter sets: we put them in front of every key frame
    // ourselves, because retina does not count H.265 CRA pictures as key frames.
    let format = FrameFormat {
        h26x_framing: retina::codec::h26x::Framing::AnnexB,
        parameter_set_insertion: ParameterSetInsertion::Never,
        ..FrameFormat::SIMPLE
    };
    let codec = match session.streams()[video].encoding_name() {
        "h265" => VideoCodec::H265,
        _ => VideoCodec::H264,
    };
    let setup = SetupOptions::default().transport(transport).frame_format(format);
    with_timeout("SETUP", t.request, session.setup(video, setup)).await?;
    let playing = with_timeout("PLAY", t.request, session.play(PlayOptions::default())).await?;
    let mut demuxed = playing.demuxed().map_err(|e| SessionError::from_retina(&e))?;
    debug!("playing");

    let camera = spec.camera.to_string();
    let frames_total = metrics::counter!("panoptes_camera_frames_total",
        "camera" => camera.clone(), "stream" => spec.stream.clone());
    let bytes_total = metrics::counter!("panoptes_camera_bytes_total",
        "camera" => camera.clone(), "stream" => spec.stream.clone());
    let fps_gauge = metrics::gauge!("panoptes_camera_fps",
        "camera" => camera.clone(), "stream" => spec.stream.clone());
    let mut shape = Streaming::from_params(demuxed.streams()[video].parameters());
    let mut prefix = parameter_sets(demuxed.streams()[video].parameters());
    let stream_name: Arc<str> = Arc::from(spec.stream.as_str());
    let jumps = metrics::counter!("panoptes_camera_timestamp_jumps_total",
        "camera" => camera.clone(), "stream" => spec.stream.clone());
    let mut window = RateWindow::new(Duration::from_secs(5));
    let mut last_publish: Option<Instant> = None;
    let mut pending_frames: u64 = 0;
    let mut pending_dropped: u64 = 0;
    loop {
        let item = match tokio::time::timeout(t.watchdog, demuxed.next()).await {
            Err(_) => return Err(SessionError::Watchdog(t.watchdog)),
            Ok(None) => return Err(SessionError::EndOfStream),
            Ok(Some(Err(e))) => return Err(SessionError::from_retina(&e)),
            Ok(Some(Ok(item))) => item,
        };
        let CodecItem::VideoFrame(frame) = item else {
            continue;
        };
        if frame.stream_id() != video {
            continue;
        }
        if frame.has_new_parameters() || prefix.is_empty() {
            let params = demuxed.streams()[video].parameters();
            shape = Streaming::from_params(params.clone());
            prefix = parameter_sets(params);
            out.params_epoch += 1;
            info!(codec = %shape.codec, width = shape.width, height = shape.height, "video parameters");
        }
        let now = Instant::now();
        let len = frame.data().len();
        let keyframe = match codec {
            VideoCodec::H264 => frame.is_random_access_point(),
            VideoCodec::H265 => panoptes_core::frame::h265_is_irap(frame.data()),
        };
        let rtp_timestamp = frame.timestamp().timestamp();
        let (pts, step) = out.timeline.map(rtp_timestamp, now);
        if step == Step::Jump {
            jumps.increment(1);
            debug!(rtp_timestamp, "camera timestamp jumped");
        }
        let data = if keyframe && !prefix.is_empty() {
            let mut b = BytesMut::with_capacity(prefix.len() + len);
            b.put_slice(&prefix);
            b.put_slice(frame.data());
            b.freeze()
        } else {
            Bytes::from(frame.into_data())
        };
        let dropped = out.fanout.publish(Arc::new(EncodedFrame {
            camera: spec.camera.clone(),
            stream: stream_name.clone(),
            codec,
            pts,
            rtp_timestamp,
            received: SystemTime::now(),
            keyframe,
            params_epoch: out.params_epoch,
            data,
        }));
        pending_dropped += dropped;
        window.push(now, len);
        frames_total.increment(1);
        bytes_total.increment(len as u64);
        pending_frames += 1;
        *streamed = true;
        if last_publish.is_none_or(|p| now.duration_since(p) >= Duration::from_secs(1)) {
            last_publish = Some(now);
            let (fps, bitrate_bps) = window.rates(now);
            fps_gauge.set(fps);
            let phase = StreamPhase::Streaming {
                codec: shape.codec.clone(),
                width: shape.width,
                height: shape.height,
                fps,
                bitrate_bps,
                last_frame_unix_ms: unix_ms(SystemTime::now()),
            };
            if pending_frames == 1 && fps == 0.0 {
                info!(codec = %shape.codec, width = shape.width, height = shape.height, "streaming");
            }
            let n = std::mem::take(&mut pending_frames);
            let d = std::mem::take(&mut pending_dropped);
            set_phase(board, spec, phase);
            board.update(&spec.camera, &spec.stream, |s| {
                s.frames += n;
                s.dropped_frames += d;
            });
        }
    }
}
