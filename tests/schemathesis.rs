//! The OpenAPI document against the running server: Schemathesis (from PyPI, installed by
//! scripts/setup.sh) generates requests for every documented operation as a logged-in
//! admin (bearer token) and checks that nothing answers 5xx and that every response matches
//! the document (status codes, content types, body schemas).
//!
//! Left out: `/api/events/stream` (Server-Sent Events never end), and the two operations
//! that would end the test's own credentials (`/api/auth/logout`, `DELETE /api/tokens/{id}`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

fn schemathesis() -> PathBuf {
    let cache = std::env::var_os("PANOPTES_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/panoptes"));
    let st = cache.join("venvs/schemathesis/bin/st");
    assert!(st.is_file(), "{} missing: run scripts/setup.sh", st.display());
    st
}

#[test]
fn the_api_matches_its_openapi_document() {
    let st = schemathesis();
    let db = TestDatabase::create();
    let camera = Camera::start();
    let dir = scratch_dir();
    let env: &[(&str, &str)] = &[("PANOPTES_DATABASE_URL", &db.url)];
    let config = config_with_cameras(&[("lobby", &camera.url("h264-360p"))]);
    let mut p = Panoptes::start(dir.path(), &config, env);
    p.wait_ready(Duration::from_secs(60));
    let cfg = dir.path().join("panoptes.toml");
    let (client, csrf) = user_session(&p, env, &cfg, "fuzzer", "admin", &[]);
    let token: serde_json::Value = client
        .post(p.url("/api/tokens"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"name": "schemathesis"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = token["token"].as_str().unwrap_or_else(|| panic!("no token: {token}")).to_owned();

    let report = dir.path().join("schemathesis");
    let out = Command::new(&st)
        .arg("run")
        .arg(p.url("/api/openapi.json"))
        .args(["--url", &p.url("")])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "100", "--workers", "2", "--request-timeout", "10", "--seed", "1"])
        .args(["--exclude-operation-id", "stream", "--exclude-operation-id", "logout"])
        .args(["--exclude-operation-id", "revoke_token"])
        .args(["--report", "junit", "--report-dir"])
        .arg(&report)
        // Its example database (.schemathesis/) goes to the scratch directory, not the clone.
        .current_dir(dir.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{text}");
    p.assert_running();
    assert!(out.status.success(), "schemathesis found problems (see above)");
    assert!(!p.log_text().contains("panicked"), "the server panicked:\n{}", p.log_text());
    assert!(p.stop(Duration::from_secs(30)).success());
}
