//! Router tests: the whole HTTP surface through `oneshot`, against a real (per-test) database.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use metrics_exporter_prometheus::PrometheusBuilder;
use panoptes_core::{CameraId, StatusBoard, StreamPhase, StreamRole, StreamStatus};
use panoptes_storage::PgPool;
use panoptes_storage::users::{self, Role};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::{ApiConfig, AppState};

/// A live source with no streams.
pub(crate) struct NoLive;

impl panoptes_core::LiveSource for NoLive {
    fn subscribe(&self, _: &CameraId, _: &str) -> Option<panoptes_core::LiveFeed> {
        None
    }
}

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn board_with(cameras: &[&str]) -> StatusBoard {
    let board = StatusBoard::default();
    for c in cameras {
        board.set(StreamStatus {
            camera: CameraId::new(*c).unwrap(),
            stream: "main".into(),
            roles: vec![StreamRole::Record],
            url: panoptes_core::redact(&url::Url::parse("rtsp://u:secret@10.0.0.1/x").unwrap()),
            phase: StreamPhase::Connecting,
            reconnects: 0,
            frames: 0,
            dropped_frames: 0,
        });
    }
    board
}

fn app(pool: PgPool, board: StatusBoard, config: ApiConfig) -> Router {
    let metrics = PrometheusBuilder::new().build_recorder().handle();
    crate::router(AppState::new(pool, board, std::sync::Arc::new(NoLive), metrics, config))
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    json: Value,
}

async fn call(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply { status, headers, json }
}

fn post(uri: &str) -> axum::http::request::Builder {
    Request::post(uri).header(header::CONTENT_TYPE, "application/json")
}

fn json_body(v: Value) -> Body {
    Body::from(v.to_string())
}

async fn add_user(pool: &PgPool, name: &str, role: Role) -> i64 {
    let hash = crate::auth::hash_password("correct horse battery").unwrap();
    users::create(pool, name, &hash, role).await.unwrap()
}

/// Logs in; returns (cookie header value, csrf token).
async fn login(app: &Router, name: &str) -> (String, String) {
    let r = call(
        app,
        post("/api/auth/login")
            .body(json_body(json!({"name": name, "password": "correct horse battery"})))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    (cookie, r.json["csrf_token"].as_str().unwrap().to_owned())
}

#[sqlx::test(migrator = "panoptes_storage::MIGRATOR")]
async fn login_session_csrf_and_tokens(pool: PgPool) -> TestResult {
    add_user(&pool, "alice", Role::Operator).await;
    let app = app(pool.clone(), board_with(&[]), ApiConfig::default());

    let bad = call(
        &app,
        post("/api/auth/login").body(json_body(json!({"name": "alice", "password": "nope nope nope"})))?,
    )
    .await;
    assert_eq!((bad.status, bad.json["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("bad_login")));

    let (cookie, csrf) = login(&app, "ALICE").await;
    let me =
        call(&app, Request::get("/api/auth/me").header(header::COOKIE, &cookie).body(Body::empty())?).await;
    assert_eq!(
        (me.status, me.json["name"].as_str(), me.json["role"].as_str()),
        (StatusCode::OK, Some("alice"), Some("operator"))
    );

    // Unsafe requests from a session need the CSRF token.
    let no_csrf = call(
        &app,
        post("/api/tokens").header(header::COOKIE, &cookie).body(json_body(json!({"name": "ci"})))?,
    )
    .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    let created = call(
        &app,
        post("/api/tokens")
            .header(header::COOKIE, &cookie)
            .header("x-csrf-token", &csrf)
            .body(json_body(json!({"name": "ci"})))?,
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let token = created.json["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("pnp_"));

    // Bearer tokens need no CSRF token.
    let bearer = |t: &str| format!("Bearer {t}");
    let status = call(
        &app,
        Request::get("/api/cameras/status")
            .header(header::AUTHORIZATION, bearer(&token))
            .body(Body::empty())?,
    )
    .await;
    assert_eq!(status.status, StatusCode::OK);
    let id = created.json["id"].as_i64().unwrap();
    let revoke = call(
        &app,
        Request::delete(format!("/api/tokens/{id}"))
            .header(header::AUTHORIZATION, bearer(&token))
            .body(Body::empty())?,
    )
    .await;
    assert_eq!(revoke.status, StatusCode::NO_CONTENT);
    let after = call(
        &app,
        Request::get("/api/auth/me").header(header::AUTHORIZATION, bearer(&token)).body(Body::empty())?,
    )
    .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);

    // Logout ends the session.
    let out = call(
        &app,
        post("/api/auth/logout")
            .header(header::COOKIE, &cookie)
            .header("x-csrf-token", &csrf)
            .body(Body::empty())?,
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let gone =
        call(&app, Request::get("/api/auth/me").header(header::COOKIE, &cookie).body(Body::empty())?).await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);

    // Logins and token changes are in the audit log, and the chain holds.
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM audit_log WHERE action IN ('login', 'login_failed', 'token_create', 'token_revoke')")
        .fetch_one(&pool)
        .await?;
    assert_eq!(n, 4);
    assert_eq!(
        panoptes_storage::audit::verify(&pool).await?,
        panoptes_storage::audit::Verification::Intact { rows: 4 }
    );
    Ok(())
}

#[sqlx::test(migrator = "panoptes_storage::MIGRATOR")]
async fn every_endpoint_but_health_needs_auth(pool: PgPool) -> TestResult {
    let app = app(pool, board_with(&["gate"]), ApiConfig::default());
    for uri in ["/api/cameras/status", "/api/auth/me"] {
        let r = call(&app, Request::get(uri).body(Body::empty())?).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(r.json["code"], "unauthorized");
    }
    let fake = call(
        &app,
        Request::get("/api/auth/me").header(header::AUTHORIZATION, "Bearer pnp_forged").body(Body::empty())?,
    )
    .await;
    assert_eq!(fake.status, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, Request::get("/healthz").body(Body::empty())?).await.status, StatusCode::OK);
    Ok(())
}

#[sqlx::test(migrator = "panoptes_storage::MIGRATOR")]
async fn logins_are_rate_limited(pool: PgPool) -> TestResult {
    add_user(&pool, "bob", Role::Viewer).await;
    let app = app(pool, board_with(&[]), ApiConfig::default());
    for _ in 0..crate::limiter::MAX_FAILURES {
        let r = call(
            &app,
            post("/api/auth/login").body(json_body(json!({"name": "bob", "password": "wrong password"})))?,
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Even the right password is refused while blocked.
    let r = call(
        &app,
        post("/api/auth/login")
            .body(json_body(json!({"name": "bob", "password": "correct horse battery"})))?,
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.get(header::RETRY_AFTER).is_some());
    Ok(())
}

#[sqlx::test(migrator = "panoptes_storage::MIGRATOR")]
async fn viewers_see_only_granted_cameras(pool: PgPool) -> TestResult {
    let viewer = add_user(&pool, "vic", Role::Viewer).await;
    add_user(&pool, "root", Role::Admin).await;
    panoptes_storage::auth::grant_cameras(&pool, viewer, &["lobby".into()]).await?;
    let app = app(pool, board_with(&["gate", "lobby", "yard"]), ApiConfig::default());
    let cams = |r: &Reply| -> Vec<String> {
        r.json.as_array().unwrap().iter().map(|s| s["camera"].as_str().unwrap().to_owned()).collect()
    };
    let (cookie, _) = login(&app, "vic").await;
    let r =
        call(&app, Request::get("/api/cameras/status").header(header::COOKIE, &cookie).body(Body::empty())?)
            .await;
    assert_eq!(cams(&r), ["lobby"]);
    assert!(!r.json.to_string().contains("secret"), "credentials leaked: {}", r.json);
    let (cookie, _) = login(&app, "root").await;
    let r =
        call(&app, Request::get("/api/cameras/status").header(header::COOKIE, &cookie).body(Body::empty())?)
            .await;
    assert_eq!(cams(&r), ["gate", "lobby", "yard"]);
    Ok(())
}

#[sqlx::test(migrator = "panoptes_storage::MIGRATOR")]
async fn setup_token_creates_the_first_admin_once(pool: PgPool) -> TestResult {
    let token = crate::session::new_secret();
    let config =
        ApiConfig { setup_token_hash: Some(crate::session::hash_secret(&token)), ..Default::default() };
    let app = app(pool, board_with(&[]), config);
    let body = |t: &str| json_body(json!({"token": t, "name": "admin", "password": "correct horse battery"}));
    assert_eq!(call(&app, post("/api/setup").body(body("wrong"))?).await.status, StatusCode::FORBIDDEN);
    let short = call(
        &app,
        post("/api/setup").body(json_body(json!({"token": token, "name": "admin", "password": "short"})))?,
    )
    .await;
    assert_eq!(
        (short.status, short.json["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("password"))
    );
    assert_eq!(call(&app, post("/api/setup").body(body(&token))?).await.status, StatusCode::CREATED);
    assert_eq!(call(&app, post("/api/setup").body(body(&token))?).await.status, StatusCode::NOT_FOUND);
    login(&app, "admin").await;
    Ok(())
}
