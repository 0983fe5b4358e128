//! Access end to end: a user created on the command line logs in over HTTP, sees only the
//! cameras granted to them, and the audit log verifies until a row is edited in SQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::*;

fn run(env: Env<'_>, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = panoptes_cmd(env)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn login_grants_and_a_verifiable_audit_log() {
    let db = TestDatabase::create();
    let camera = Camera::start();
    let dir = scratch_dir();
    let env: &[(&str, &str)] = &[("PANOPTES_DATABASE_URL", &db.url)];
    let config =
        config_with_cameras(&[("lobby", &camera.url("h264-360p")), ("vault", &camera.url("h264-720p"))]);
    let mut p = Panoptes::start(dir.path(), &config, env);
    p.wait_ready(Duration::from_secs(60));
    assert!(p.log_text().contains("no users yet"), "setup token offered");
    let cfg = dir.path().join("panoptes.toml");
    let cfg = cfg.to_str().unwrap();

    let out =
        run(env, &["user", "add", "guard", "--role", "viewer", "--config", cfg], "a long enough password\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(env, &["user", "grant", "guard", "lobby", "--config", cfg], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let client = reqwest::blocking::Client::builder().cookie_store(true).build().unwrap();
    let status = client.get(p.url("/api/cameras/status")).send().unwrap().status();
    assert_eq!(status, 401);
    let bad = client
        .post(p.url("/api/auth/login"))
        .json(&serde_json::json!({"name": "guard", "password": "not it at all"}))
        .send()
        .unwrap();
    assert_eq!(bad.status(), 401);
    let ok = client
        .post(p.url("/api/auth/login"))
        .json(&serde_json::json!({"name": "guard", "password": "a long enough password"}))
        .send()
        .unwrap();
    assert_eq!(ok.status(), 200);
    let cams: serde_json::Value = client.get(p.url("/api/cameras/status")).send().unwrap().json().unwrap();
    let ids: Vec<&str> = cams.as_array().unwrap().iter().map(|c| c["camera"].as_str().unwrap()).collect();
    assert_eq!(ids, ["lobby"], "a viewer sees only granted cameras");
    assert!(p.stop(Duration::from_secs(30)).success());

    let verify = |label: &str| {
        let out = run(env, &["audit", "verify", "--config", cfg], "");
        (
            out.status.success(),
            format!(
                "{label}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, text) = verify("intact");
    assert!(ok && text.contains("audit log intact: 2 rows"), "{text}");
    db.execute("UPDATE audit_log SET actor_name = 'someone else' WHERE action = 'login'");
    let (ok, text) = verify("edited");
    assert!(!ok && text.contains("BROKEN at row"), "{text}");
}
