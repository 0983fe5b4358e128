//! Analytics end to end: a GStreamer camera whose clip shows a bus, people and faces →
//! decoder → motion gate → ONNX detectors → tracker → events in PostgreSQL with snapshots,
//! visible over the API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;

#[test]
fn detections_from_a_real_clip_become_events_with_snapshots() {
    let camera = Camera::start();
    let dir = scratch_dir();
    let db = TestDatabase::create();
    let config = format!(
        r#"
        [server]
        listen = "127.0.0.1:{{port}}"
        data_dir = "{{data_dir}}"
        metrics_token_env = "E2E_METRICS_TOKEN"
        [analytics]
        enabled = true
        provider = "auto"
        [[cameras]]
        id = "street"
        [[cameras.streams]]
        url = "{}"
        roles = ["detect"]
        "#,
        camera.url("h264-720p")
    );
    let mut p = Panoptes::start(dir.path(), &config, &[("PANOPTES_DATABASE_URL", &db.url)]);
    p.wait_ready(Duration::from_secs(60));
    assert!(p.log_text().contains("detector loaded"), "{}", p.log_text());

    // The clip loops every 24 s and shows a bus with people, then faces: events follow.
    let n = wait_for(Duration::from_secs(90), "events from the clip", || {
        let n = db.query_i64("SELECT count(*) FROM events WHERE camera_id = 'street'");
        (n >= 2).then_some(n)
    });
    let labels = db.rows3(
        "SELECT label, count(*)::bigint, coalesce(min(snapshot_path), '') FROM events GROUP BY label ORDER BY label",
    );
    eprintln!("{n} events: {labels:?}");
    let known = ["bicycle", "bus", "car", "face", "motorcycle", "person", "truck"];
    assert!(labels.iter().all(|(l, _, _)| known.contains(&l.as_str())), "{labels:?}");
    assert!(labels.iter().any(|(l, _, _)| l == "face" || l == "person"), "people or faces found: {labels:?}");

    // Snapshots are JPEG files under the data directory.
    let snap = labels.iter().map(|(_, _, s)| s).find(|s| !s.is_empty()).expect("a snapshot path");
    let bytes = std::fs::read(dir.path().join("data/snapshots").join(snap)).unwrap();
    assert_eq!(&bytes[..3], &[0xff, 0xd8, 0xff], "JPEG");

    let crop = dir.path().join("data/snapshots").join(snap.replace(".jpg", "-crop.jpg"));
    let crop = std::fs::read(&crop).unwrap_or_else(|e| panic!("{}: {e}", crop.display()));
    assert_eq!(&crop[..3], &[0xff, 0xd8, 0xff], "crop JPEG");
    assert_ne!(crop, bytes, "the crop is not the whole frame");

    // Motion asked the decoder for full rate: more frames delivered than key frames alone.
    // (Key frames alone would deliver one frame per 2 s GOP: about 10 in 20 s.)
    let metric = r#"panoptes_decode_delivered_total{camera="street""#;
    let start = p.metric(metric).unwrap_or(0.0);
    wait_for(Duration::from_secs(20), "full-rate decoding on motion", || {
        (p.metric(metric).unwrap_or(0.0) > start + 30.0).then_some(())
    });
    assert!(p.stop(Duration::from_secs(30)).success(), "{}", p.log_text());
}

#[test]
fn an_idle_camera_decodes_key_frames_until_asked_for_full_rate() {
    let camera = Camera::start();
    let dir = scratch_dir();
    let db = TestDatabase::create();
    // Motion never counts and the heartbeat never comes: the camera stays idle.
    let config = format!(
        r#"
        [server]
        listen = "127.0.0.1:{{port}}"
        data_dir = "{{data_dir}}"
        metrics_token_env = "E2E_METRICS_TOKEN"
        [analytics]
        enabled = true
        [[cameras]]
        id = "quiet"
        [cameras.analytics.motion]
        min_changed_fraction = 1.0
        heartbeat_secs = 3600.0
        [[cameras.streams]]
        url = "{}"
        roles = ["detect"]
        "#,
        camera.url("h264-360p")
    );
    let env: &[(&str, &str)] =
        &[("PANOPTES_DATABASE_URL", &db.url), ("E2E_METRICS_TOKEN", "e2e-metrics-token")];
    let mut p = Panoptes::start(dir.path(), &config, env);
    p.wait_ready(Duration::from_secs(60));
    let metric = r#"panoptes_decode_delivered_total{camera="quiet""#;
    let delivered = |p: &Panoptes| p.metric(metric).unwrap_or(0.0);
    wait_for(Duration::from_secs(10), "the first key frame", || (delivered(&p) > 0.0).then_some(()));
    // Idle: about one frame per 2 s GOP.
    let (a, t) = (delivered(&p), std::time::Instant::now());
    wait_for(Duration::from_secs(10), "two more key frames", || (delivered(&p) >= a + 2.0).then_some(()));
    let idle_rate = (delivered(&p) - a) / t.elapsed().as_secs_f64();
    assert!(idle_rate < 1.5, "idle rate {idle_rate}/s");

    let cfg = dir.path().join("panoptes.toml");
    let (client, csrf) = user_session(&p, env, &cfg, "ops", "operator", &["quiet"]);
    let csrf = csrf.as_str();
    let asked = client
        .post(p.url("/api/cameras/quiet/detect"))
        .header("x-csrf-token", csrf)
        .json(&serde_json::json!({"seconds": 30}))
        .send()
        .unwrap();
    assert_eq!(asked.status(), 202);
    let missing = client
        .post(p.url("/api/cameras/nope/detect"))
        .header("x-csrf-token", csrf)
        .json(&serde_json::json!({"seconds": 30}))
        .send()
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Asked: the detect rate (5 fps), from the next key frame on.
    let (b, t) = (delivered(&p), std::time::Instant::now());
    wait_for(Duration::from_secs(15), "full-rate frames", || (delivered(&p) >= b + 20.0).then_some(()));
    let full_rate = (delivered(&p) - b) / t.elapsed().as_secs_f64();
    assert!(full_rate > 2.5, "asked rate {full_rate}/s (idle was {idle_rate}/s)");
    assert!(p.stop(Duration::from_secs(30)).success());
}
