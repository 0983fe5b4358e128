//! One viewer's WebRTC session, without I/O: a str0m [`Rtc`] (ICE-lite, send-only video)
//! fed datagrams, timeouts and shared encoded frames, polled for datagrams to send.
//!
//! Fast start: frames handed over before the connection is up are kept (from the newest
//! key frame on) and written the moment DTLS is up, so the browser decodes at once rather
//! than after the next key frame. After a loss the browser cannot repair (PLI/FIR), the
//! viewer waits for the next key frame: the camera is shared, so no key frame is forced.

use std::sync::Arc;
use std::time::{Duration, Instant};

use panoptes_core::{EncodedFrame, VideoCodec};
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{MediaKind, MediaTime, Mid, Pt};
use str0m::net::Transmit;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

/// A frame as the relay sends it: the gateway's frame plus its bytes in the form str0m
/// takes, converted once per frame and shared by every viewer.
#[derive(Debug, Clone)]
pub struct SharedFrame {
    /// The gateway's frame (timestamps, key frame flag).
    pub frame: Arc<EncodedFrame>,
    /// Its Annex B bytes.
    pub data: Arc<[u8]>,
}

/// Why an offer was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OfferError {
    /// Not SDP str0m can read.
    #[error("the offer is not valid SDP: {0}")]
    Malformed(String),
    /// No video section to receive on.
    #[error("the offer has no video section")]
    NoVideo,
    /// The browser cannot decode the stream's codec.
    #[error("this stream is {0}; the browser cannot play it: configure an H.264 sub stream")]
    CodecUnsupported(&'static str),
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// ICE consent or DTLS failed: the browser went away.
    Disconnected,
    /// Never connected within [`CONNECT_TIMEOUT`].
    NeverConnected,
    /// The viewer or the server closed it.
    Closed,
    /// The stream ended.
    StreamEnded,
    /// str0m reported an error.
    Error,
}

impl EndReason {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            EndReason::Disconnected => "disconnected",
            EndReason::NeverConnected => "never_connected",
            EndReason::Closed => "closed",
            EndReason::StreamEnded => "stream_ended",
            EndReason::Error => "error",
        }
    }
}

/// How long a session may take to connect after the answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Key frame requests this soon after the first frame are start-up noise, not loss.
const PLI_GRACE: Duration = Duration::from_secs(2);
/// Frames kept while connecting: at most a long GOP.
const MAX_PENDING: usize = 600;

/// What one `poll` produced.
#[derive(Debug, Default)]
pub struct Polled {
    /// Datagrams to send.
    pub transmits: Vec<Transmit>,
    /// When to call [`ViewerSession::handle_timeout`] next.
    pub next_timeout: Option<Instant>,
}

/// Counters a session accumulates; the driver turns them into metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct SessionCounters {
    /// Frames written.
    pub frames: u64,
    /// Resyncs at a key frame after a loss the browser reported.
    pub resyncs: u64,
}

/// A viewer's session.
#[derive(Debug)]
pub struct ViewerSession {
    rtc: Rtc,
    codec: VideoCodec,
    mid: Option<Mid>,
    pt: Option<Pt>,
    connected_at: Option<Instant>,
    created: Instant,
    first_frame_at: Option<Instant>,
    /// Frames to write once connected, from a key frame on.
    pending: Vec<SharedFrame>,
    /// Skip frames until the next key frame.
    waiting_keyframe: bool,
    ended: Option<EndReason>,
    counters: SessionCounters,
}

/// Whether the SDP offers a video codec (by its rtpmap name, case-insensitive).
fn offers_codec(sdp: &str, name: &str) -> bool {
    sdp.lines().filter_map(|l| l.trim().strip_prefix("a=rtpmap:")).any(|l| {
        l.split_whitespace()
            .nth(1)
            .and_then(|enc| enc.split('/').next())
            .is_some_and(|enc| enc.eq_ignore_ascii_case(name))
    })
}

/// The `a=mid:` of the first video section.
fn video_mid(sdp: &str) -> Option<Mid> {
    let mut in_video = false;
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            in_video = line.starts_with("m=video");
        } else if in_video && let Some(mid) = line.strip_prefix("a=mid:") {
            return Some(Mid::from(mid.trim()));
        }
    }
    None
}

impl ViewerSession {
    /// Accepts a browser's offer for a stream of `codec`, with our host candidates (UDP,
    /// passive TCP or both), and returns the session and the SDP answer.
    pub fn accept(
        offer: &str,
        codec: VideoCodec,
        candidates: &[Candidate],
        now: Instant,
    ) -> Result<(ViewerSession, String), OfferError> {
        if offer.len() > 64 * 1024 {
            return Err(OfferError::Malformed("longer than 64 KiB".into()));
        }
        let parsed = SdpOffer::from_sdp_string(offer).map_err(|e| OfferError::Malformed(e.to_string()))?;
        if !offer.lines().any(|l| l.trim_start().starts_with("m=video")) {
            return Err(OfferError::NoVideo);
        }
        let (h264, h265) = match codec {
            VideoCodec::H264 => (true, false),
            VideoCodec::H265 => (false, true),
        };
        let wanted = if h264 { "H264" } else { "H265" };
        if !offers_codec(offer, wanted) {
            return Err(OfferError::CodecUnsupported(if h264 { "H.264" } else { "H.265" }));
        }
        let mut rtc = RtcConfig::new()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_h264(h264)
            .enable_h265(h265)
            // Statistics are not used; spare the work.
            .set_stats_interval(None)
            .build(now);
        for c in candidates {
            if rtc.add_local_candidate(c.clone()).is_none() {
                tracing::warn!(candidate = %c.to_sdp_string(), "str0m refused a WebRTC candidate");
            }
        }
        let answer = rtc.sdp_api().accept_offer(parsed).map_err(|e| OfferError::Malformed(e.to_string()))?;
        let mut session = ViewerSession {
            rtc,
            codec,
            mid: None,
            pt: None,
            connected_at: None,
            created: now,
            first_frame_at: None,
            pending: Vec::new(),
            waiting_keyframe: true,
            ended: None,
            counters: SessionCounters::default(),
        };
        // The video section's mid, as offered (str0m announces it as an event only later).
        if let Some(mid) = video_mid(offer) {
            session.mid = Some(mid);
            session.pt = session.choose_pt(mid);
        }
        // Accepting is a mutation: drain.
        let _ = session.poll(now);
        if session.mid.is_none() {
            return Err(OfferError::NoVideo);
        }
        if session.pt.is_none() {
            return Err(OfferError::CodecUnsupported(if h264 { "H.264" } else { "H.265" }));
        }
        Ok((session, answer.to_sdp_string()))
    }

    /// Whether this session's peer sent `input` (str0m's demultiplexing).
    pub fn accepts(&self, input: &Input<'_>) -> bool {
        self.rtc.accepts(input)
    }

    /// Feeds a datagram or a timeout; poll afterwards.
    pub fn handle_input(&mut self, input: Input<'_>) {
        if self.ended.is_some() {
            return;
        }
        if let Err(e) = self.rtc.handle_input(input) {
            tracing::debug!(error = %e, "WebRTC input refused");
        }
    }

    /// Advances timers to `now`; poll afterwards.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.connected_at.is_none() && now.saturating_duration_since(self.created) > CONNECT_TIMEOUT {
            self.end(EndReason::NeverConnected);
            return;
        }
        self.handle_input(Input::Timeout(now));
    }

    /// Takes a frame of the stream: written now when connected, else kept for the start.
    /// Poll afterwards.
    pub fn push_frame(&mut self, frame: SharedFrame, now: Instant) {
        if self.ended.is_some() || frame.frame.codec != self.codec {
            return;
        }
        if self.connected_at.is_none() {
            if frame.frame.keyframe {
                self.pending.clear();
            }
            if (frame.frame.keyframe || !self.pending.is_empty()) && self.pending.len() < MAX_PENDING {
                self.pending.push(frame);
            }
            return;
        }
        self.write(&frame, now);
    }

    /// Writes one frame, unless waiting for a key frame.
    fn write(&mut self, f: &SharedFrame, now: Instant) {
        if self.waiting_keyframe {
            if !f.frame.keyframe {
                return;
            }
            self.waiting_keyframe = false;
        }
        let (Some(mid), Some(pt)) = (self.mid, self.pt) else { return };
        let Some(writer) = self.rtc.writer(mid) else { return };
        // The wall clock when the camera's frame arrived, on the monotonic clock.
        let age = f.frame.received.elapsed().unwrap_or_default();
        let wallclock = now.checked_sub(age).unwrap_or(now);
        let rtp_time = MediaTime::from_90khz(u64::try_from(f.frame.pts.0).unwrap_or(0));
        match writer.write(pt, wallclock, rtp_time, f.data.clone()) {
            Ok(()) => {
                self.counters.frames += 1;
                self.first_frame_at.get_or_insert(now);
            }
            Err(e) => {
                tracing::debug!(error = %e, "WebRTC write failed; waiting for the next key frame");
                self.waiting_keyframe = true;
            }
        }
    }

    /// Drains str0m's output until its next timeout.
    pub fn poll(&mut self, now: Instant) -> Polled {
        let mut out = Polled::default();
        if self.ended.is_some() {
            return out;
        }
        // Bounded: str0m always ends a drain with a timeout; guard against a stuck loop.
        for _ in 0..100_000 {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    out.next_timeout = Some(t);
                    break;
                }
                Ok(Output::Transmit(t)) => out.transmits.push(t),
                Ok(Output::Event(e)) => self.on_event(e, now),
                Err(e) => {
                    tracing::debug!(error = %e, "WebRTC session failed");
                    self.end(EndReason::Error);
                    break;
                }
            }
        }
        if self.ended.is_none() && !self.rtc.is_alive() {
            self.end(EndReason::Disconnected);
        }
        // Connected during this drain: send what was kept (a mutation, so drain again).
        if self.ended.is_none() && self.connected_at.is_some() && !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            for f in &pending {
                self.write(f, now);
            }
            let more = self.poll(now);
            out.transmits.extend(more.transmits);
            out.next_timeout = more.next_timeout;
        }
        out
    }

    fn on_event(&mut self, e: Event, now: Instant) {
        match e {
            Event::MediaAdded(m) if m.kind == MediaKind::Video && self.mid.is_none() => {
                self.mid = Some(m.mid);
                self.pt = self.choose_pt(m.mid);
            }
            Event::Connected => {
                tracing::debug!(after = ?now.saturating_duration_since(self.created), "WebRTC viewer connected (DTLS up)");
                self.connected_at = Some(now);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.end(EndReason::Disconnected);
            }
            Event::KeyframeRequest(_) => {
                let settled =
                    self.first_frame_at.is_some_and(|t| now.saturating_duration_since(t) > PLI_GRACE);
                if settled && !self.waiting_keyframe {
                    self.waiting_keyframe = true;
                    self.counters.resyncs += 1;
                }
            }
            _ => {}
        }
    }

    /// The payload type to send with: the stream's codec, packetization mode 1, the
    /// H.264 profile of the stream when the browser offered it.
    fn choose_pt(&mut self, mid: Mid) -> Option<Pt> {
        let want = match self.codec {
            VideoCodec::H264 => Codec::H264,
            VideoCodec::H265 => Codec::H265,
        };
        let writer = self.rtc.writer(mid)?;
        let mut best: Option<(u8, Pt)> = None;
        for p in writer.payload_params() {
            let spec = p.spec();
            if spec.codec != want {
                continue;
            }
            let mut score = 1;
            if spec.format.packetization_mode == Some(1) {
                score += 2;
            }
            // Main (4d) plays Main; constrained baseline plays only baseline streams,
            // but browsers decode any profile they support whatever was negotiated.
            if spec.format.profile_level_id.is_some_and(|id| (id >> 16) == 0x4d) {
                score += 1;
            }
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, p.pt()));
            }
        }
        best.map(|(_, pt)| pt)
    }

    /// Ends the session.
    pub fn end(&mut self, reason: EndReason) {
        if self.ended.is_none() {
            self.ended = Some(reason);
            self.rtc.disconnect();
        }
    }

    /// Why it ended, once it has.
    pub fn ended(&self) -> Option<EndReason> {
        self.ended
    }

    /// Whether media flows.
    pub fn is_connected(&self) -> bool {
        self.connected_at.is_some()
    }

    /// Counters so far.
    pub fn counters(&self) -> SessionCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::SocketAddr;

    use str0m::net::TcpType;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8189))
    }

    fn udp() -> Vec<Candidate> {
        vec![Candidate::host(addr(), "udp").unwrap()]
    }

    /// An offer as headless Chromium makes it for a receive-only video transceiver
    /// (trimmed to the lines that matter).
    pub(crate) const CHROME_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 105\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:abcd\r\n\
a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=recvonly\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=rtpmap:102 H264/90000\r\n\
a=rtcp-fb:102 nack\r\n\
a=rtcp-fb:102 nack pli\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:103 rtx/90000\r\n\
a=fmtp:103 apt=102\r\n\
a=rtpmap:104 H264/90000\r\n\
a=rtcp-fb:104 nack\r\n\
a=rtcp-fb:104 nack pli\r\n\
a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f\r\n\
a=rtpmap:105 rtx/90000\r\n\
a=fmtp:105 apt=104\r\n";

    #[test]
    fn answers_a_chrome_offer_with_h264_and_our_candidate() {
        let (s, answer) = ViewerSession::accept(CHROME_OFFER, VideoCodec::H264, &udp(), Instant::now())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(answer.contains("H264/90000"), "{answer}");
        assert!(answer.contains("a=ice-lite"), "{answer}");
        assert!(answer.contains("127.0.0.1 8189"), "{answer}");
        assert!(answer.contains("a=sendonly"), "{answer}");
        assert!(!answer.contains("VP8"), "{answer}");
        assert!(!s.is_connected());
    }

    #[test]
    fn tcp_candidates_are_passive_and_rank_below_udp() {
        let tcp = Candidate::builder().tcp().host(addr()).tcptype(TcpType::Passive).build().unwrap();
        let both = [udp(), vec![tcp.clone()]].concat();
        let (_, answer) =
            ViewerSession::accept(CHROME_OFFER, VideoCodec::H264, &both, Instant::now()).unwrap();
        let line = |proto: &str| {
            answer
                .lines()
                .find(|l| l.starts_with("a=candidate:") && l.contains(&format!(" {proto} ")))
                .map(str::to_owned)
        };
        let (u, t) = (line("udp").unwrap(), line("tcp").unwrap());
        assert!(t.contains("127.0.0.1 8189 typ host tcptype passive"), "{t}");
        let prio = |l: &str| l.split_whitespace().nth(3).unwrap().parse::<u32>().unwrap();
        assert!(prio(&u) > prio(&t), "browsers must prefer UDP: {u} / {t}");
        let (_, tcp_only) =
            ViewerSession::accept(CHROME_OFFER, VideoCodec::H264, &[tcp], Instant::now()).unwrap();
        assert!(!tcp_only.contains(" udp "), "{tcp_only}");
    }

    #[test]
    fn h265_without_browser_support_is_refused_clearly() {
        let e = ViewerSession::accept(CHROME_OFFER, VideoCodec::H265, &udp(), Instant::now()).err();
        assert_eq!(e, Some(OfferError::CodecUnsupported("H.265")));
    }

    #[test]
    fn h265_is_offered_when_the_browser_has_it() {
        let offer = CHROME_OFFER.replace("VP8/90000", "H265/90000");
        let r = ViewerSession::accept(&offer, VideoCodec::H265, &udp(), Instant::now());
        let (_, answer) = r.unwrap_or_else(|e| panic!("{e}"));
        assert!(answer.contains("H265/90000"), "{answer}");
    }

    #[test]
    fn garbage_offers_are_errors_not_panics() {
        let mut inputs: Vec<String> = vec![
            String::new(),
            "\0\0\0".into(),
            "v=0\r\n".into(),
            "m=video\r\n".into(),
            "hello world".into(),
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF\r\n".into(),
            CHROME_OFFER.replace("a=ice-ufrag:abcd\r\n", ""),
            CHROME_OFFER.replace("a=fingerprint", "a=fingerprnt"),
            CHROME_OFFER.replace("m=video", "m=audio"),
            CHROME_OFFER.replace("H264", "H26\u{fffd}"),
            "a".repeat(70_000),
        ];
        // Every prefix and a few byte flips of a real offer.
        let bytes = CHROME_OFFER.as_bytes();
        for cut in (0..bytes.len()).step_by(7) {
            inputs.push(String::from_utf8_lossy(&bytes[..cut]).into_owned());
        }
        let mut seed = 0x2545_f491_u32;
        for _ in 0..300 {
            let mut b = bytes.to_vec();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let i = seed as usize % b.len();
                b[i] = (seed >> 8) as u8;
            }
            inputs.push(String::from_utf8_lossy(&b).into_owned());
        }
        for offer in inputs {
            let _ = ViewerSession::accept(&offer, VideoCodec::H264, &udp(), Instant::now());
        }
        assert!(ViewerSession::accept("", VideoCodec::H264, &udp(), Instant::now()).is_err());
    }

    #[test]
    fn keeps_frames_from_the_last_keyframe_until_connected() {
        let now = Instant::now();
        let (mut s, _) = ViewerSession::accept(CHROME_OFFER, VideoCodec::H264, &udp(), now)
            .unwrap_or_else(|e| panic!("{e}"));
        let frame = |pts: i64, key: bool| {
            let f = EncodedFrame {
                camera: panoptes_core::CameraId::new("cam").unwrap_or_else(|e| panic!("{e}")),
                stream: "main".into(),
                codec: VideoCodec::H264,
                pts: panoptes_core::Pts90k(pts),
                rtp_timestamp: pts,
                received: std::time::SystemTime::now(),
                keyframe: key,
                params_epoch: 0,
                data: bytes::Bytes::from_static(&[0, 0, 0, 1, 0x65, 1]),
            };
            SharedFrame { data: Arc::from(&f.data[..]), frame: Arc::new(f) }
        };
        s.push_frame(frame(0, false), now);
        assert!(s.pending.is_empty(), "a delta frame before any key frame is useless");
        s.push_frame(frame(3600, true), now);
        s.push_frame(frame(7200, false), now);
        s.push_frame(frame(10800, true), now);
        s.push_frame(frame(14400, false), now);
        assert_eq!(s.pending.len(), 2);
        assert!(s.pending[0].frame.keyframe);
        s.handle_timeout(now + CONNECT_TIMEOUT + Duration::from_secs(1));
        assert_eq!(s.ended(), Some(EndReason::NeverConnected));
    }
}
