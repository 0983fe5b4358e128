//! The camera gateway against GStreamer's RTSP server: transports, digest auth, H.265 open
//! GOPs, decoding, a frozen camera, and a camera killed and restarted many times.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use panoptes_camera_gateway::decode::{self, Backend, DecodeMode, DecodeSettings, DecoderChoice};
use panoptes_camera_gateway::{
    Credentials, Gateway, KeyframeQueue, StreamSinks, StreamSpec, Timeouts, Transport,
};
use panoptes_core::{CameraId, StatusBoard, StreamPhase, StreamRole, StreamStatus};
use tokio_util::sync::CancellationToken;

fn spec(camera: &str, stream: &str, url: &str) -> StreamSpec {
    StreamSpec {
        camera: CameraId::new(camera).unwrap(),
        stream: stream.into(),
        url: url::Url::parse(url).unwrap(),
        credentials: None,
        transport: Transport::Tcp,
        roles: vec![StreamRole::Record],
        timeouts: Timeouts::default(),
    }
}

async fn wait_status(
    board: &StatusBoard,
    stream: &str,
    limit: Duration,
    what: &str,
    cond: impl Fn(&StreamStatus) -> bool,
) -> StreamStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = board.snapshot().into_iter().find(|s| s.stream == stream && cond(s)) {
            return s;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}; board: {:#?}", board.snapshot());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn streaming(s: &StreamStatus) -> bool {
    matches!(s.phase, StreamPhase::Streaming { fps, .. } if fps > 0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_udp_sessions_stream() {
    let camera = Camera::start();
    let board = StatusBoard::default();
    let mut gw = Gateway::new(board.clone(), CancellationToken::new());
    let tcp = spec("cam", "tcp", &camera.url("h264-720p"));
    let mut udp = spec("cam", "udp", &camera.url("h264-360p"));
    udp.transport = Transport::Udp;
    gw.set_camera(
        tcp.camera.clone(),
        true,
        vec![(tcp, StreamSinks::default()), (udp, StreamSinks::default())],
    )
    .await;
    for (stream, w, h) in [("tcp", 1280, 720), ("udp", 640, 360)] {
        let s = wait_status(
            &board,
            stream,
            Duration::from_secs(15),
            stream,
            |s| matches!(s.phase, StreamPhase::Streaming { fps, .. } if fps > 20.0),
        )
        .await;
        let StreamPhase::Streaming { width, height, ref codec, fps, bitrate_bps, .. } = s.phase else {
            unreachable!()
        };
        assert_eq!((width, height), (w, h), "{stream}");
        assert!(codec.to_lowercase().starts_with("avc1.4d"), "{stream}: H.264 Main, got {codec}");
        assert!((20.0..=30.0).contains(&fps), "{stream}: fps {fps}");
        assert!(bitrate_bps > 50_000.0, "{stream}: bitrate {bitrate_bps}");
    }
    // The API's seam: a live feed starts with the cached GOP, then new frames follow.
    use futures::StreamExt;
    use panoptes_core::LiveSource;
    let live = gw.live_source();
    let cam = CameraId::new("cam").unwrap();
    let mut feed = live.subscribe(&cam, "tcp").expect("running stream");
    assert!(feed.backlog.first().is_some_and(|f| f.keyframe), "backlog starts at a key frame");
    let next = tokio::time::timeout(Duration::from_secs(2), feed.frames.next()).await.unwrap().unwrap();
    assert!(next.pts > feed.backlog.last().unwrap().pts);
    assert!(live.subscribe(&cam, "nope").is_none());
    gw.remove_camera(&cam).await;
    assert!(live.subscribe(&cam, "tcp").is_none(), "removed cameras are gone from the live map");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_auth_succeeds_and_fails_without_hammering() {
    let camera = Camera::start();
    let board = StatusBoard::default();
    let mut gw = Gateway::new(board.clone(), CancellationToken::new());
    let mut good = spec("cam", "good", &camera.url("h264-720p-auth"));
    good.credentials = Some(Credentials { username: "panoptes".into(), password: "secret".into() });
    let mut bad = spec("cam", "bad", &camera.url("h264-720p-auth"));
    bad.credentials = Some(Credentials { username: "panoptes".into(), password: "wrong".into() });
    let none = spec("cam", "none", &camera.url("h264-720p-auth"));
    let streams = [good, bad, none].map(|s| (s, StreamSinks::default())).into_iter().collect();
    gw.set_camera(CameraId::new("cam").unwrap(), true, streams).await;

    wait_status(&board, "good", Duration::from_secs(15), "good credentials to stream", streaming).await;
    for stream in ["bad", "none"] {
        let s = wait_status(&board, stream, Duration::from_secs(15), "auth_failed", |s| {
            matches!(s.phase, StreamPhase::AuthFailed { .. })
        })
        .await;
        let StreamPhase::AuthFailed { last_error, next_attempt_unix_ms } = &s.phase else { unreachable!() };
        assert!(last_error.contains("401"), "{stream}: {last_error}");
        assert!(!last_error.contains("wrong"), "password leaked: {last_error}");
        let wait = *next_attempt_unix_ms as i64
            - panoptes_core::status::unix_ms(std::time::SystemTime::now()) as i64;
        assert!(wait >= 10_000, "{stream}: next attempt in {wait} ms: too soon after an auth failure");
    }
    // Over the next seconds the wrong password is not tried again.
    let before = board.snapshot().iter().find(|s| s.stream == "bad").unwrap().reconnects;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = board.snapshot().iter().find(|s| s.stream == "bad").unwrap().reconnects;
    assert_eq!(before, after, "retried a rejected password within 3 s");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_open_gop_keyframes_are_found() {
    let camera = Camera::start();
    let board = StatusBoard::default();
    let mut gw = Gateway::new(board.clone(), CancellationToken::new());
    let s = spec("cam", "main", &camera.url("h265-720p"));
    gw.set_camera(s.camera.clone(), true, vec![(s, StreamSinks::default())]).await;
    wait_status(&board, "main", Duration::from_secs(15), "H.265 to stream", streaming).await;
    let mut live = gw.live(&CameraId::new("cam").unwrap(), "main").unwrap();
    let nal_types = |data: &[u8]| -> Vec<u8> {
        panoptes_core::frame::annex_b_nals(data).map(|n| (n[0] >> 1) & 0x3f).collect()
    };
    let (mut keys, mut cra, mut frames) = (0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(7);
    while Instant::now() < deadline {
        let f = tokio::time::timeout(Duration::from_secs(5), live.next()).await.unwrap().unwrap();
        frames += 1;
        let types = nal_types(&f.data);
        if f.keyframe {
            keys += 1;
            // Parameter sets ride in front of every key frame: VPS, SPS, PPS.
            assert!(types.starts_with(&[32, 33, 34]), "key frame NAL types {types:?}");
            if types.contains(&21) {
                cra += 1;
            }
        } else {
            assert!(!types.iter().any(|t| (16..=21).contains(t)), "IRAP not marked key: {types:?}");
        }
    }
    assert!(frames > 100, "{frames} frames in 7 s");
    assert!(keys >= 2, "{keys} key frames in 7 s of 2 s GOPs");
    assert!(cra >= 1, "no CRA key frame among {keys}: the clip should have open GOPs");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoded_frames_arrive_at_the_detect_rate_and_size_on_cpu() {
    let camera = Camera::start();
    let board = StatusBoard::default();
    let mut gw = Gateway::new(board.clone(), CancellationToken::new());
    let s = spec("cam", "sub", &camera.url("h264-720p"));
    let (tx, rx) = tokio::sync::mpsc::channel(128);
    let settings = DecodeSettings {
        choice: DecoderChoice::Auto,
        width: 320,
        height: 180,
        fps: 5.0,
        mode: DecodeMode::Full,
    };
    let mut handle = decode::spawn(s.camera.clone(), "sub", settings, rx).unwrap();
    let sinks = StreamSinks { queues: vec![KeyframeQueue::new("decoder", tx)] };
    gw.set_camera(s.camera.clone(), true, vec![(s, sinks)]).await;

    // First frame, then count what arrives in 4 s.
    tokio::time::timeout(Duration::from_secs(20), handle.frames.changed()).await.unwrap().unwrap();
    assert_eq!(*handle.backend.borrow(), Some(Backend::Cpu), "no GPU here: auto falls back to cpu");
    let start = Instant::now();
    let mut n = 0;
    let mut last_pts = None;
    while start.elapsed() < Duration::from_secs(4) {
        if tokio::time::timeout(Duration::from_secs(2), handle.frames.changed()).await.is_err() {
            break;
        }
        let f = handle.frames.borrow_and_update().clone().unwrap();
        assert_eq!((f.width, f.height, f.rgb.len()), (320, 180, 320 * 180 * 3));
        if let Some(p) = last_pts {
            assert!(f.pts > p, "timestamps increase");
        }
        last_pts = Some(f.pts);
        n += 1;
    }
    assert!((16..=24).contains(&n), "{n} frames in 4 s at 5 fps");

    // Idle mode: key frames only (one per 2 s GOP).
    handle.control.set_mode(DecodeMode::KeyframesOnly);
    tokio::time::sleep(Duration::from_millis(500)).await;
    handle.frames.borrow_and_update();
    let start = Instant::now();
    let mut keys = 0;
    while start.elapsed() < Duration::from_secs(5) {
        if tokio::time::timeout(Duration::from_secs(3), handle.frames.changed()).await.is_ok() {
            assert!(handle.frames.borrow_and_update().as_ref().unwrap().keyframe);
            keys += 1;
        }
    }
    assert!((1..=4).contains(&keys), "{keys} key frames in 5 s");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_camera_is_detected_by_the_watchdog_and_recovers() {
    let camera = Camera::start();
    let board = StatusBoard::default();
    let mut gw = Gateway::new(board.clone(), CancellationToken::new());
    let mut s = spec("cam", "main", &camera.url("h264-360p"));
    s.timeouts = Timeouts { request: Duration::from_secs(2), watchdog: Duration::from_secs(2) };
    gw.set_camera(s.camera.clone(), true, vec![(s, StreamSinks::default())]).await;
    wait_status(&board, "main", Duration::from_secs(15), "streaming", streaming).await;

    camera.freeze();
    let s = wait_status(
        &board,
        "main",
        Duration::from_secs(6),
        "the watchdog",
        |s| matches!(&s.phase, StreamPhase::Retrying { last_error, .. } if last_error.contains("watchdog")),
    )
    .await;
    assert_eq!(s.reconnects, 0);
    // While frozen, reconnects time out on DESCRIBE instead of hanging.
    wait_status(&board, "main", Duration::from_secs(10), "a DESCRIBE timeout", |s| {
        matches!(&s.phase, StreamPhase::Retrying { last_error, .. } if last_error.contains("DESCRIBE timed out"))
    })
    .await;
    camera.thaw();
    wait_status(&board, "main", Duration::from_secs(20), "streaming after SIGCONT", streaming).await;
    gw.shutdown().await;
}

#[test]
fn camera_killed_and_restarted_twenty_times() {
    let mut camera = Camera::start();
    let dir = scratch_dir();
    let db = TestDatabase::create();
    let config = format!(
        r#"
        [server]
        listen = "127.0.0.1:{{port}}"
        data_dir = "{{data_dir}}"
        metrics_token_env = "E2E_METRICS_TOKEN"
        [[cameras]]
        id = "yard"
        [[cameras.streams]]
        url = "{}"
        "#,
        camera.url("h264-720p")
    );
    let mut p = Panoptes::start(dir.path(), &config, &[("PANOPTES_DATABASE_URL", &db.url)]);
    p.wait_ready(Duration::from_secs(60));
    let streaming_now = |p: &Panoptes| p.readyz().is_some_and(|r| r["cameras"]["by_state"]["streaming"] == 1);
    wait_for(Duration::from_secs(20), "first streaming", || streaming_now(&p).then_some(()));

    let mut recoveries = Vec::new();
    let mut rss = Vec::new();
    for cycle in 0..20 {
        camera.kill();
        wait_for(Duration::from_secs(10), "the loss to be noticed", || (!streaming_now(&p)).then_some(()));
        camera.restart();
        let back = Instant::now();
        wait_for(Duration::from_secs(10), "streaming again", || streaming_now(&p).then_some(()));
        recoveries.push(back.elapsed());
        if cycle == 2 || cycle == 19 {
            rss.push(p.rss_kib());
        }
    }
    let worst = recoveries.iter().max().unwrap();
    eprintln!("recovery after restart: worst {worst:?}, all {recoveries:?}; RSS KiB {rss:?}");
    assert!(*worst < Duration::from_secs(2), "streaming again took {worst:?}; all: {recoveries:?}");
    assert!(rss[1] < rss[0] + 8 * 1024, "memory grew from {} to {} KiB over 17 cycles", rss[0], rss[1]);
    let reconnects = p.metric(r#"panoptes_camera_session_failures_total{camera="yard""#);
    assert!(reconnects.is_some(), "session failures are counted:\n{}", p.metrics());
    assert!(p.stop(Duration::from_secs(30)).success());
}

fn send_hangup(p: &Panoptes) {
    let pid = nix::unistd::Pid::from_raw(p.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
}

fn camera_toml(id: &str, url: &str, enabled: bool) -> String {
    format!("[[cameras]]\nid = \"{id}\"\nenabled = {enabled}\n[[cameras.streams]]\nurl = \"{url}\"\n")
}

#[test]
fn cameras_are_added_changed_and_removed_at_run_time_without_touching_others() {
    let camera = Camera::start();
    let dir = scratch_dir();
    let db = TestDatabase::create();
    let head = r#"
        [server]
        listen = "127.0.0.1:{port}"
        data_dir = "{data_dir}"
        metrics_token_env = "E2E_METRICS_TOKEN"
    "#;
    let (u720, u360) = (camera.url("h264-720p"), camera.url("h264-360p"));
    let first = format!(
        "{head}\n{}\n{}\n{}",
        camera_toml("keep", &u720, true),
        camera_toml("drop", &u360, true),
        camera_toml("flip", &u360, true)
    );
    let mut p = Panoptes::start(dir.path(), &first, &[("PANOPTES_DATABASE_URL", &db.url)]);
    p.wait_ready(Duration::from_secs(60));
    wait_for(Duration::from_secs(20), "three cameras streaming", || {
        p.readyz().filter(|r| r["cameras"]["by_state"]["streaming"] == 3)
    });
    let keep_frames = r#"panoptes_camera_frames_total{camera="keep",stream="main"}"#;
    let before = p.metric(keep_frames).unwrap();

    // A broken file is refused and changes nothing.
    let cfg = dir.path().join("panoptes.toml");
    let port_line = format!("listen = \"127.0.0.1:{}\"", p.port);
    let data_line = format!("data_dir = \"{}\"", dir.path().join("data").display());
    let head = head
        .replace("listen = \"127.0.0.1:{port}\"", &port_line)
        .replace("data_dir = \"{data_dir}\"", &data_line);
    std::fs::write(&cfg, format!("{head}\nbogus = 1\n")).unwrap();
    send_hangup(&p);
    wait_for(Duration::from_secs(10), "the refusal in the log", || {
        p.log_text().contains("configuration not reloaded").then_some(())
    });
    assert!(p.log_text().contains("bogus: unknown field"), "{}", p.log_text());
    assert_eq!(p.readyz().unwrap()["cameras"]["configured"], 3);

    // Remove one, disable one, add one; "keep" is untouched.
    let second = format!(
        "{head}\n{}\n{}\n{}",
        camera_toml("keep", &u720, true),
        camera_toml("flip", &u360, false),
        camera_toml("new", &camera.url("h265-720p"), true)
    );
    std::fs::write(&cfg, second).unwrap();
    send_hangup(&p);
    let r = wait_for(Duration::from_secs(20), "the new camera set", || {
        p.readyz().filter(|r| {
            r["cameras"]["configured"] == 3
                && r["cameras"]["by_state"]["streaming"] == 2
                && r["cameras"]["by_state"]["disabled"] == 1
        })
    });
    assert_eq!(r["cameras"]["streams"], 3, "{r}");
    let log = p.log_text();
    assert!(log.contains(r#"added=[CameraId("new")]"#) || log.contains(r#"added=["new"]"#), "{log}");
    assert!(log.contains("unchanged=1"), "{log}");
    // "keep" never restarted and its frames kept flowing.
    assert!(p.metric(r#"panoptes_camera_session_failures_total{camera="keep""#).is_none(), "{}", p.metrics());
    assert!(
        !log.contains("stream{camera=keep stream=main}: panoptes_camera_gateway::session: stream stopped"),
        "{log}"
    );
    wait_for(Duration::from_secs(5), "keep's frames to grow", || {
        p.metric(keep_frames).filter(|n| *n > before)
    });
    assert!(p.stop(Duration::from_secs(30)).success());
}
