//! The relay over real sockets, without HTTP or a database: a str0m client plays a stream
//! over ICE-TCP alone, and what is not WebRTC on the TCP port is shut out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use panoptes_core::{CameraId, EncodedFrame, LiveFeed, Pts90k, VideoCodec};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::framing::{FrameDecoder, MAX_FRAME, encode};
use super::{Command, Relay, ViewerSession};

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

#[tokio::test]
async fn a_viewer_plays_over_ice_tcp_alone_and_is_let_go_when_the_session_ends() {
    let cancel = CancellationToken::new();
    let (relay, server) = tcp_relay(&cancel).await;
    assert!(relay.candidates.iter().all(|c| c.proto() == Protocol::Tcp));

    // The client: str0m with an active TCP candidate on its connection's address.
    let conn = TcpStream::connect(server).await.unwrap();
    let local = conn.local_addr().unwrap();
    let mut rtc = Rtc::builder().set_stats_interval(None).build(Instant::now());
    let ours = Candidate::builder().tcp().host(local).tcptype(TcpType::Active).build().unwrap();
    rtc.add_local_candidate(ours);
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = change.apply().unwrap();
    let (session, answer) =
        ViewerSession::accept(&offer.to_sdp_string(), VideoCodec::H264, &relay.candidates, Instant::now())
            .unwrap();
    assert!(answer.contains("tcptype passive"), "{answer}");
    rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();

    // The camera: a key frame in the backlog, then 25 frames/s with 30 KB key frames
    // (so a frame spans many packets and TCP frames).
    let (frames, feed) = futures::channel::mpsc::unbounded();
    let camera = tokio::spawn(async move {
        for n in 1.. {
            tokio::time::sleep(Duration::from_millis(40)).await;
            let size = if n % 25 == 0 { 30_000 } else { 3_000 };
            if frames.unbounded_send(frame(n, size)).is_err() {
                return;
            }
        }
    });
    let start = Command::Start {
        id: "s1".into(),
        camera: CameraId::new("lobby").unwrap(),
        stream: "main".into(),
        user_id: 1,
        session: Box::new(session),
        feed: LiveFeed { backlog: vec![frame(0, 30_000)], frames: Box::pin(feed) },
    };
    relay.commands.send(start).await.unwrap();

    let (mut rd, mut wr) = conn.into_split();
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    let mut buf = vec![0u8; 65536];
    let (mut connected, mut media, mut media_bytes) = (false, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while media < 30 {
        assert!(Instant::now() < deadline, "connected {connected}, {media} frames");
        let timeout = loop {
            match rtc.poll_output().unwrap() {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    assert_eq!(t.proto, Protocol::Tcp);
                    assert_eq!((t.source, t.destination), (local, server));
                    let mut out = Vec::new();
                    encode(&t.contents, &mut out).unwrap();
                    wr.write_all(&out).await.unwrap();
                }
                Output::Event(Event::Connected) => connected = true,
                Output::Event(Event::MediaData(m)) => {
                    media += 1;
                    media_bytes += m.data.len();
                }
                Output::Event(_) => {}
            }
        };
        let wait = timeout.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
        tokio::select! {
            r = rd.read(&mut buf) => {
                let n = r.unwrap();
                assert!(n > 0, "the relay closed the connection");
                decoder.push(&buf[..n]);
                while let Some(f) = decoder.next_frame() {
                    let rx = Receive::new(Protocol::Tcp, server, local, f.unwrap()).unwrap();
                    rtc.handle_input(Input::Receive(Instant::now(), rx)).unwrap();
                }
            }
            _ = tokio::time::sleep(wait) => rtc.handle_input(Input::Timeout(Instant::now())).unwrap(),
        }
    }
    assert!(connected);
    assert!(media_bytes > 30 * 2_000, "{media_bytes} bytes of media");

    let (tx, rx) = tokio::sync::oneshot::channel();
    relay.commands.send(Command::List { reply: tx }).await.unwrap();
    let list = rx.await.unwrap();
    assert!(list.len() == 1 && list[0].connected && list[0].frames >= 30, "{list:?}");

    // Ending the session closes its connection, after what was queued (DTLS close).
    let (tx, rx) = tokio::sync::oneshot::channel();
    relay.commands.send(Command::Stop { id: "s1".into(), user_id: None, reply: tx }).await.unwrap();
    assert!(rx.await.unwrap());
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => decoder.push(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the relay kept the connection open after the session ended");
    while let Some(f) = decoder.next_frame() {
        if let Ok(rx) = Receive::new(Protocol::Tcp, server, local, f.unwrap()) {
            let _ = rtc.handle_input(Input::Receive(Instant::now(), rx));
        }
    }
    let mut closed_seen = false;
    while let Ok(o) = rtc.poll_output() {
        match o {
            Output::Timeout(_) => break,
            Output::Event(Event::IceConnectionStateChange(IceConnectionState::Disconnected)) => {
                closed_seen = true
            }
            _ => {}
        }
    }
    let _ = closed_seen; // str0m may report the DTLS close only later; the EOF is the check.
    camera.abort();
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
