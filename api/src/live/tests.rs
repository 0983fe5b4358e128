//! The relay over real sockets, without HTTP or a database: a str0m client plays a stream
//! over ICE-TCP alone, and what is not WebRTC on the TCP port is shut out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use panoptes_core::{CameraId, EncodedFrame, LiveFeed, Pts90k, VideoCodec};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::framing::{FrameDecoder, MAX_FRAME, encode};
use super::{Command, Relay, ViewerSession, tcp};

/// A frame of the fake camera: SPS, PPS and a slice (IDR on key frames), `size` bytes.
fn frame(n: i64, size: usize) -> Arc<EncodedFrame> {
    let key = n % 25 == 0;
    let mut data = vec![0, 0, 0, 1, 0x67, 0x4d, 0x00, 0x1f, 0, 0, 0, 1, 0x68, 0xee, 0x3c, 0x80];
    data.extend_from_slice(&[0, 0, 0, 1, if key { 0x65 } else { 0x41 }]);
    data.resize(size, 0x5a);
    Arc::new(EncodedFrame {
        camera: CameraId::new("lobby").unwrap(),
        stream: "main".into(),
        codec: VideoCodec::H264,
        pts: Pts90k(n * 3600),
        rtp_timestamp: n * 3600,
        received: SystemTime::now(),
        keyframe: key,
        params_epoch: 0,
        data: bytes::Bytes::from(data),
    })
}

async fn tcp_relay(cancel: &CancellationToken) -> (Relay, SocketAddr) {
    let relay = Relay::start(None, Some(([127, 0, 0, 1], 0).into()), &[], cancel.clone()).await.unwrap();
    assert_eq!(relay.udp_addr(), None);
    let tcp = relay.tcp_addr().unwrap();
    (relay, tcp)
}

/// The fake camera: frames at 25/s (a key frame every 25, `key` bytes, others `delta`)
/// to every feed made by [`feed`], until dropped.
fn camera(
    key: usize,
    delta: usize,
) -> (tokio::sync::broadcast::Sender<Arc<EncodedFrame>>, tokio::task::JoinHandle<()>) {
    let (tx, _) = tokio::sync::broadcast::channel(256);
    let frames = tx.clone();
    let task = tokio::spawn(async move {
        for n in 1.. {
            tokio::time::sleep(Duration::from_millis(40)).await;
            let _ = frames.send(frame(n, if n % 25 == 0 { key } else { delta }));
        }
    });
    (tx, task)
}

/// A viewer's feed: a key frame, then the camera's frames.
fn feed(camera: &tokio::sync::broadcast::Sender<Arc<EncodedFrame>>, key: usize) -> LiveFeed {
    let frames = futures::stream::unfold(camera.subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(f) => return Some((f, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    });
    LiveFeed { backlog: vec![frame(0, key)], frames: Box::pin(frames) }
}

/// A str0m client with an active TCP candidate on its connection's address, and what it
/// received.
struct Viewer {
    rtc: Rtc,
    rd: tokio::net::tcp::OwnedReadHalf,
    wr: tokio::net::tcp::OwnedWriteHalf,
    local: SocketAddr,
    server: SocketAddr,
    decoder: FrameDecoder,
    buf: Vec<u8>,
    connected: bool,
    media: usize,
    media_bytes: usize,
}

impl Viewer {
    /// Connects (with a receive buffer of `recv_buffer` bytes if given), offers, and
    /// starts session `id` on the relay.
    async fn start(relay: &Relay, id: &str, feed: LiveFeed, recv_buffer: Option<u32>) -> Viewer {
        let server = relay.tcp_addr().unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let conn = socket.connect(server).await.unwrap();
        let local = conn.local_addr().unwrap();
        let mut rtc = Rtc::builder().set_stats_interval(None).build(Instant::now());
        let ours = Candidate::builder().tcp().host(local).tcptype(TcpType::Active).build().unwrap();
        rtc.add_local_candidate(ours);
        let mut change = rtc.sdp_api();
        change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        let (session, answer) = ViewerSession::accept(
            &offer.to_sdp_string(),
            VideoCodec::H264,
            &relay.candidates,
            Instant::now(),
        )
        .unwrap();
        assert!(answer.contains("tcptype passive"), "{answer}");
        rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
        let start = Command::Start {
            id: id.into(),
            camera: CameraId::new("lobby").unwrap(),
            stream: "main".into(),
            user_id: 1,
            session: Box::new(session),
            feed,
        };
        relay.commands.send(start).await.unwrap();
        let (rd, wr) = conn.into_split();
        Viewer {
            rtc,
            rd,
            wr,
            local,
            server,
            decoder: FrameDecoder::new(MAX_FRAME),
            buf: vec![0u8; 65536],
            connected: false,
            media: 0,
            media_bytes: 0,
        }
    }

    /// Sends what str0m wants sent, then waits (at most 100 ms) for bytes or a timeout.
    async fn step(&mut self) {
        let timeout = loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    assert_eq!(t.proto, Protocol::Tcp);
                    assert_eq!((t.source, t.destination), (self.local, self.server));
                    let mut out = Vec::new();
                    encode(&t.contents, &mut out).unwrap();
                    self.wr.write_all(&out).await.unwrap();
                }
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::MediaData(m)) => {
                    self.media += 1;
                    self.media_bytes += m.data.len();
                }
                Output::Event(_) => {}
            }
        };
        let wait = timeout.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
        tokio::select! {
            r = self.rd.read(&mut self.buf) => {
                let n = r.unwrap();
                assert!(n > 0, "the relay closed the connection");
                self.decoder.push(&self.buf[..n]);
                while let Some(f) = self.decoder.next_frame() {
                    let rx = Receive::new(Protocol::Tcp, self.server, self.local, f.unwrap()).unwrap();
                    self.rtc.handle_input(Input::Receive(Instant::now(), rx)).unwrap();
                }
            }
            _ = tokio::time::sleep(wait) => self.rtc.handle_input(Input::Timeout(Instant::now())).unwrap(),
        }
    }

    /// Steps until `done`, failing after `limit`.
    async fn until(&mut self, limit: Duration, done: impl Fn(&Viewer) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(Instant::now() < deadline, "connected {}, {} frames", self.connected, self.media);
            self.step().await;
        }
    }

    /// Reads until the relay closes the connection; `false` if it is still open after `limit`.
    async fn closed_within(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            loop {
                match self.rd.read(&mut self.buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }
}

async fn list(relay: &Relay) -> Vec<super::SessionInfo> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    relay.commands.send(Command::List { reply: tx }).await.unwrap();
    rx.await.unwrap()
}

#[tokio::test]
async fn a_viewer_plays_over_ice_tcp_alone_and_is_let_go_when_the_session_ends() {
    let cancel = CancellationToken::new();
    let (relay, _) = tcp_relay(&cancel).await;
    assert!(relay.candidates.iter().all(|c| c.proto() == Protocol::Tcp));
    // 30 KB key frames: a frame spans many packets and TCP frames.
    let (camera, task) = camera(30_000, 3_000);
    let mut v = Viewer::start(&relay, "s1", feed(&camera, 30_000), None).await;
    v.until(Duration::from_secs(20), |v| v.media >= 30).await;
    assert!(v.connected);
    assert!(v.media_bytes > 30 * 2_000, "{} bytes of media", v.media_bytes);
    let sessions = list(&relay).await;
    assert!(sessions.len() == 1 && sessions[0].connected && sessions[0].frames >= 30, "{sessions:?}");

    // Ending the session closes its connection, after what was queued (DTLS close).
    let (tx, rx) = tokio::sync::oneshot::channel();
    relay.commands.send(Command::Stop { id: "s1".into(), user_id: None, reply: tx }).await.unwrap();
    assert!(rx.await.unwrap());
    assert!(v.closed_within(Duration::from_secs(5)).await, "the connection outlived its session");
    task.abort();
    cancel.cancel();
}

#[tokio::test]
async fn a_viewer_that_stops_reading_slows_no_one_else_and_is_let_go() {
    let cancel = CancellationToken::new();
    let (relay, _) = tcp_relay(&cancel).await;
    // ~20 Mbit/s, so the stuck viewer's socket buffers and queue fill within seconds.
    let (camera, task) = camera(200_000, 90_000);
    let mut stuck = Viewer::start(&relay, "stuck", feed(&camera, 200_000), Some(4096)).await;
    stuck.until(Duration::from_secs(20), |v| v.media >= 3).await;
    let mut good = Viewer::start(&relay, "good", feed(&camera, 200_000), None).await;
    good.until(Duration::from_secs(20), |v| v.media >= 3).await;

    // The stuck viewer reads nothing more; the good one must keep its frame rate and the
    // driver must keep answering.
    let (t0, m0) = (Instant::now(), good.media);
    while t0.elapsed() < Duration::from_secs(4) {
        good.step().await;
    }
    let fps = (good.media - m0) as f64 / t0.elapsed().as_secs_f64();
    assert!(fps > 20.0, "the good viewer got {fps:.1} frames/s");
    let asked = Instant::now();
    assert_eq!(list(&relay).await.len(), 2);
    assert!(asked.elapsed() < Duration::from_millis(500), "the driver took {:?} to answer", asked.elapsed());

    // The stuck connection is closed (slow queue, stalled write or consent): once the
    // viewer reads again it finds the end of the stream, not an endless one.
    let deadline = Instant::now() + tcp::SLOW_CLOSE + Duration::from_secs(2);
    while Instant::now() < deadline {
        good.step().await;
    }
    assert!(stuck.closed_within(Duration::from_secs(5)).await, "the stuck viewer's connection is still open");
    assert!(good.media > m0, "the good viewer stopped");
    task.abort();
    cancel.cancel();
}

/// Reads until the relay closes the connection; `false` if it stays open for 3 s.
async fn closed_by_relay(mut s: TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn what_is_not_webrtc_is_shut_out() {
    let cancel = CancellationToken::new();
    let (_relay, server) = tcp_relay(&cancel).await;

    // HTTP: "GE" announces an 18 KB frame, over the limit.
    let mut http = TcpStream::connect(server).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(closed_by_relay(http).await, "HTTP");

    // Well framed, but not STUN, DTLS or RTP.
    let mut junk = TcpStream::connect(server).await.unwrap();
    let mut out = Vec::new();
    encode(&[0xff; 40], &mut out).unwrap();
    junk.write_all(&out).await.unwrap();
    assert!(closed_by_relay(junk).await, "junk");

    // RTP that no session knows.
    let mut rtp = TcpStream::connect(server).await.unwrap();
    let mut out = Vec::new();
    encode(&[0x80, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9], &mut out).unwrap();
    rtp.write_all(&out).await.unwrap();
    assert!(closed_by_relay(rtp).await, "unrouted");

    // Empty frames are skipped; the connection lives on until it binds or times out.
    let mut empty = TcpStream::connect(server).await.unwrap();
    empty.write_all(&[0, 0, 0, 0]).await.unwrap();
    let mut buf = [0u8; 16];
    let still_open = tokio::time::timeout(Duration::from_millis(500), empty.read(&mut buf)).await.is_err();
    assert!(still_open);
    cancel.cancel();
}
