//! End-to-end tests of the foundation: the real binary against the machine's PostgreSQL,
//! a private cluster, and the GStreamer test camera.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn serves_a_camera_against_the_machine_postgres() -> TestResult {
    let db = TestDatabase::create();
    let camera = Camera::start();
    let dir = scratch_dir();
    let config = format!(
        r#"
        [server]
        listen = "127.0.0.1:{{port}}"
        data_dir = "{{data_dir}}"
        metrics_token_env = "E2E_METRICS_TOKEN"
        node_id = "e2e-node"

        [[cameras]]
        id = "lobby"
        [[cameras.streams]]
        name = "main"
        url = "{}"
        "#,
        camera.url("h264-720p")
    );
    let mut p = Panoptes::start(dir.path(), &config, &[("PANOPTES_DATABASE_URL", &db.url)]);
    let ready = p.wait_ready(SECS(60));
    assert_eq!(ready["database"], "ok", "{ready}");
    assert_eq!(ready["cameras"]["configured"], 1, "{ready}");

    // The camera is reported as streaming, with frames flowing.
    wait_for(SECS(30), "the camera to be reported streaming", || {
        p.readyz().filter(|r| r["cameras"]["by_state"]["streaming"] == 1)
    });
    let streaming = r#"panoptes_camera_state{camera="lobby",stream="main",state="streaming"}"#;
    assert_eq!(p.metric(streaming), Some(1.0), "{}", p.metrics());
    let frames = r#"panoptes_camera_frames_total{camera="lobby",stream="main"}"#;
    let first = wait_for(SECS(10), "frames", || p.metric(frames).filter(|n| *n > 0.0));
    wait_for(SECS(10), "more frames", || p.metric(frames).filter(|n| *n > first));
    let fps = wait_for(SECS(10), "an fps reading", || {
        p.metric(r#"panoptes_camera_fps{camera="lobby",stream="main"}"#).filter(|f| *f > 0.0)
    });
    assert!((20.0..=30.0).contains(&fps), "fps {fps}");

    // With no GPU here, the `auto` decoder falls back to the CPU and says why, once.
    let line = wait_for(SECS(10), "the decoder choice in the log", || {
        p.log_text().lines().find(|l| l.contains("decoder: using")).map(str::to_owned)
    });
    assert!(line.contains("using cpu for H264; cuda unavailable (no NVIDIA device"), "{line}");
    assert!(line.contains("vaapi unavailable (no GPU render node"), "{line}");
    assert_eq!(p.log_text().matches("decoder: using").count(), 1);

    // The node registered itself in the external database.
    assert_eq!(db.query_i64("SELECT count(*) FROM nodes WHERE id = 'e2e-node'"), 1);

    let status = p.stop(SECS(30));
    assert!(status.success(), "exit status {status}; log:\n{}", p.log_text());
    let log = p.log_text();
    let order =
        ["shutdown 1/5", "shutdown 2/5", "shutdown 3/5", "shutdown 4/5", "shutdown 5/5", "Panoptes stopped"];
    let positions: Vec<usize> = order.iter().map(|s| log.find(s).unwrap_or(usize::MAX)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "shutdown order wrong:\n{log}");
    Ok(())
}

fn user_add(config: &std::path::Path, name: &str) -> std::process::Output {
    let mut child = panoptes_cmd(&[])
        .args(["user", "add", name, "--role", "admin", "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a long enough password\n").unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn private_cluster_is_created_stopped_and_reused() -> TestResult {
    let dir = scratch_dir();
    let config = r#"
        [server]
        listen = "127.0.0.1:{port}"
        data_dir = "{data_dir}"
    "#;
    let cluster = dir.path().join("data/postgres");
    let mut p = Panoptes::start(dir.path(), config, &[]);
    p.wait_ready(SECS(90));
    assert!(cluster.join("PG_VERSION").is_file(), "cluster not created in {}", cluster.display());
    assert!(cluster.join("postmaster.pid").is_file(), "cluster not running");
    assert!(p.log_text().contains("creating private PostgreSQL cluster"));
    assert!(p.stop(SECS(60)).success(), "{}", p.log_text());
    assert!(
        !cluster.join("postmaster.pid").exists(),
        "cluster still running after shutdown:\n{}",
        p.log_text()
    );

    // Data written in between survives: a user added now...
    let cfg = dir.path().join("panoptes.toml");
    let out = user_add(&cfg, "alice");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!cluster.join("postmaster.pid").exists(), "user add left the cluster running");

    // ...is there after the next start, which reuses the cluster instead of creating one.
    let mut p = Panoptes::start(dir.path(), config, &[]);
    p.wait_ready(SECS(90));
    let log = p.log_text();
    assert!(log.contains("reusing existing PostgreSQL cluster"), "{log}");
    assert!(!log.contains("creating private PostgreSQL cluster"), "{log}");
    // A command run next to the server uses its cluster and leaves it running.
    let bob = user_add(&cfg, "bob");
    assert!(bob.status.success(), "{}", String::from_utf8_lossy(&bob.stderr));
    assert!(cluster.join("postmaster.pid").exists(), "user add stopped the server's cluster");
    assert!(p.readyz().is_some_and(|r| r["ready"] == true), "the server lost its database");
    assert!(p.stop(SECS(60)).success());
    assert!(!cluster.join("postmaster.pid").exists(), "the server left its cluster running");
    let again = user_add(&cfg, "alice");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"), "{again:?}");
    Ok(())
}

#[test]
fn check_config_lists_every_problem_with_its_path() -> TestResult {
    let dir = scratch_dir();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        r#"
        [server]
        listen = "127.0.0.1:8080"
        retention_days = 30

        [[cameras]]
        id = "gate"
        [[cameras.streams]]
        url = "rtsp//10.0.0.5/stream"
        username = "admin"
        password_env = "PANOPTES_E2E_UNSET_PASSWORD"
        "#,
    )?;
    let out = panoptes_cmd(&[]).arg("check-config").arg(&file).output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&file.display().to_string()), "names the file: {err}");
    assert!(err.contains("server.retention_days: unknown field"), "{err}");
    assert!(err.contains("cameras[0].streams[0].url: not a URL"), "{err}");
    assert!(
        err.contains(
            "cameras[0].streams[0].password_env: environment variable PANOPTES_E2E_UNSET_PASSWORD is not set"
        ),
        "{err}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[[cameras]]\nid = \"gate\"\n[[cameras.streams]]\nurl = \"rtsp://10.0.0.5/s\"\n")?;
    let out = panoptes_cmd(&[]).arg("check-config").arg(&good).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}
