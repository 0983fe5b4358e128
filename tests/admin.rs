//! Administration through the API, end to end: an admin adds a camera with a password
//! (which never comes back and never reaches the log), the node starts it at once, a
//! change and a delete apply at once too, bad definitions are refused naming the field,
//! cameras from the configuration file are left to the file, and users are created,
//! granted, changed and disabled; each change is in the audit log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// The `state` of `camera`'s stream `stream`, from `/api/cameras/status`.
fn state_of(client: &reqwest::blocking::Client, p: &Panoptes, camera: &str, stream: &str) -> Option<String> {
    let all: Value = client.get(p.url("/api/cameras/status")).send().ok()?.json().ok()?;
    all.as_array()?
        .iter()
        .find(|s| s["camera"] == camera && s["stream"] == stream)
        .map(|s| s["state"].as_str().unwrap_or_default().to_owned())
}

#[test]
fn cameras_and_users_are_managed_through_the_api() {
    let db = TestDatabase::create();
    let camera = Camera::start();
    let dir = scratch_dir();
    let env: &[(&str, &str)] = &[("PANOPTES_DATABASE_URL", &db.url)];
    let config = config_with_cameras(&[("lobby", &camera.url("h264-360p"))]);
    let mut p = Panoptes::start(dir.path(), &config, env);
    p.wait_ready(SECS(60));
    let cfg = dir.path().join("panoptes.toml");
    let (admin, csrf) = user_session(&p, env, &cfg, "boss", "admin", &[]);
    let send = |req: reqwest::blocking::RequestBuilder| {
        let r = req.header("x-csrf-token", &csrf).send().unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap_or(Value::Null))
    };

    // A camera behind digest auth, added with its password.
    let gate = json!({
        "id": "gate",
        "name": "Front gate",
        "streams": [{
            "name": "main",
            "url": camera.url("h264-720p-auth"),
            "username": "panoptes",
            "password": "secret",
            "roles": ["record", "live", "grid"],
        }],
        "analytics": { "zones": [{ "name": "lane", "polygon": [[0, 0.5], [1, 0.5], [1, 1]] }] },
    });
    let (status, created) = send(admin.post(p.url("/api/cameras")).json(&gate));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["managed_by"], "api");
    assert_eq!(created["zones"], json!(["lane"]));
    assert_eq!(created["streams"][0]["has_credentials"], true);
    assert!(!created.to_string().contains("secret"), "the password came back: {created}");
    wait_for(SECS(30), "the new camera to stream (digest auth with the stored password)", || {
        (state_of(&admin, &p, "gate", "main")? == "streaming").then_some(())
    });

    // Bad definitions: refused with the field, nothing stored.
    for (body, field) in [
        (json!({"id": "x1", "streams": [{"url": "http://cam/x"}]}), "streams[0].url"),
        (json!({"id": "x2", "streams": [{"url": "rtsp://u:pw@cam/x"}]}), "streams[0].url"),
        (json!({"id": "x3", "streams": [{"url": "rtsp://cam/x", "colour": "red"}]}), "streams[0].colour"),
        (
            json!({"id": "x4", "streams": [{"url": "rtsp://cam/x", "password_file": "/etc/shadow"}]}),
            "streams[0].password_file",
        ),
        (json!({"id": "Bad Id", "streams": [{"url": "rtsp://cam/x"}]}), "id"),
        (json!({"id": "x5", "streams": []}), "streams"),
        (
            json!({"id": "x6", "streams": [{"url": "rtsp://cam/x"}], "analytics": {"alerts": {"required_zones": ["nope"]}}}),
            "analytics",
        ),
    ] {
        let (status, err) = send(admin.post(p.url("/api/cameras")).json(&body));
        assert_eq!(
            (status, err["code"].as_str(), err["field"].as_str()),
            (422, Some("invalid"), Some(field)),
            "{body}: {err}"
        );
        assert!(!err.to_string().contains("pw@"), "the URL's password echoed: {err}");
    }
    let (status, err) = send(admin.post(p.url("/api/cameras")).json(&gate));
    assert_eq!((status, err["code"].as_str()), (409, Some("conflict")));

    // The file's cameras are the file's.
    let (status, err) = send(admin.patch(p.url("/api/cameras/lobby")).json(&json!({"name": "Hall"})));
    assert_eq!((status, err["code"].as_str()), (409, Some("managed_by_config")), "{err}");
    let (status, _) = send(admin.delete(p.url("/api/cameras/lobby")));
    assert_eq!(status, 409);

    // A change keeps the stored password when none is sent, and applies at once.
    let (status, changed) = send(admin.patch(p.url("/api/cameras/gate")).json(&json!({
        "name": "Gate (north)",
        "streams": [{ "name": "main", "url": camera.url("h264-720p-auth"), "roles": ["record", "live"] }],
    })));
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (changed["name"].as_str(), changed["streams"][0]["has_credentials"].as_bool()),
        (Some("Gate (north)"), Some(true))
    );
    let (status, _) = send(admin.patch(p.url("/api/cameras/gate")).json(&json!({"enabled": false})));
    assert_eq!(status, 200);
    wait_for(SECS(20), "the disabled camera to stop", || {
        (state_of(&admin, &p, "gate", "main")? == "disabled").then_some(())
    });

    // Users: a viewer granted one camera sees that camera only and cannot administer.
    let (status, viewer) = send(admin.post(p.url("/api/users")).json(&json!({
        "name": "night-guard", "password": "a long enough password", "role": "viewer", "cameras": ["gate"],
    })));
    assert_eq!(status, 201, "{viewer}");
    let (status, err) = send(admin.post(p.url("/api/users")).json(&json!({
        "name": "weak", "password": "short", "role": "viewer",
    })));
    assert_eq!((status, err["field"].as_str()), (422, Some("password")));
    let guard = reqwest::blocking::Client::builder().cookie_store(true).build().unwrap();
    let me: Value = guard
        .post(p.url("/api/auth/login"))
        .json(&json!({"name": "night-guard", "password": "a long enough password"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let guard_csrf = me["csrf_token"].as_str().unwrap().to_owned();
    let seen: Value = guard.get(p.url("/api/cameras")).send().unwrap().json().unwrap();
    let ids: Vec<&str> = seen.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["gate"]);
    let denied =
        guard.post(p.url("/api/cameras")).header("x-csrf-token", &guard_csrf).json(&gate).send().unwrap();
    assert_eq!(denied.status(), 403);
    assert_eq!(guard.get(p.url("/api/users")).send().unwrap().status(), 403);

    // Disabling the user ends their session at once; the last admin cannot be removed.
    let id = viewer["id"].as_i64().unwrap();
    let (status, _) = send(admin.delete(p.url(&format!("/api/users/{id}"))));
    assert_eq!(status, 204);
    assert_eq!(guard.get(p.url("/api/cameras")).send().unwrap().status(), 401);
    let users: Value = admin.get(p.url("/api/users")).send().unwrap().json().unwrap();
    let boss =
        users.as_array().unwrap().iter().find(|u| u["name"] == "boss").unwrap()["id"].as_i64().unwrap();
    let (status, err) =
        send(admin.patch(p.url(&format!("/api/users/{boss}"))).json(&json!({"role": "viewer"})));
    assert_eq!((status, err["code"].as_str()), (409, Some("conflict")), "{err}");

    // Deleting the camera stops it and erases its credentials.
    let (status, _) = send(admin.delete(p.url("/api/cameras/gate")));
    assert_eq!(status, 204);
    wait_for(SECS(20), "the deleted camera to leave the status list", || {
        state_of(&admin, &p, "gate", "main").is_none().then_some(())
    });
    assert_eq!(db.query_i64("SELECT count(*) FROM cameras WHERE id = 'gate' AND credentials IS NOT NULL"), 0);

    // Every change is audited, without the password.
    let audit: Value = admin.get(p.url("/api/audit?limit=100")).send().unwrap().json().unwrap();
    let actions: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for a in ["camera_create", "camera_update", "camera_delete", "user_create", "user_disable"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    assert!(!audit.to_string().contains("secret"), "a password reached the audit log");
    // A browser holding the alert stream open does not hold up a graceful shutdown.
    let stream = reqwest::blocking::Client::builder().cookie_store(true).build().unwrap();
    stream
        .post(p.url("/api/auth/login"))
        .json(&json!({"name": "boss", "password": "a long enough password"}))
        .send()
        .unwrap();
    let sse = stream.get(p.url("/api/events/stream")).send().unwrap();
    assert_eq!(sse.status(), 200);
    let stopping = std::time::Instant::now();
    assert!(p.stop(SECS(30)).success());
    assert!(
        stopping.elapsed() < SECS(10),
        "shutdown waited {:?} for the open alert stream",
        stopping.elapsed()
    );
    drop(sse);
    assert!(!p.log_text().contains("secret"), "a camera password reached the log");
}
