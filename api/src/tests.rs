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
    seed_cameras(&pool, &["gate", "lobby", "yard"]).await;
    panoptes_storage::cameras::grant(&pool, viewer, &CameraId::new("lobby")?).await?;
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

/// Registers node `n1` and records `cameras` as its cameras.
async fn seed_cameras(pool: &PgPool, cameras: &[&str]) {
    let specs: Vec<_> = cameras
        .iter()
        .map(|c| panoptes_storage::cameras::CameraSpec {
            id: CameraId::new(*c).unwrap(),
            name: c.to_string(),
            enabled: true,
            streams: vec![],
            definition: None,
        })
        .collect();
    let node = panoptes_core::NodeId::new("n1").unwrap();
    panoptes_storage::nodes::register(pool, &node, "127.0.0.1:1", "test").await.unwrap();
    panoptes_storage::cameras::sync(pool, &node, &specs).await.unwrap();
}

async fn seed_events(pool: &PgPool) -> Vec<uuid::Uuid> {
    use panoptes_storage::events::{BBox, Label, NewEvent, Record, store};
    seed_cameras(pool, &["gate", "lobby"]).await;
    let t0 = chrono::Utc::now() - chrono::Duration::minutes(10);
    let bbox = BBox { x: 0.1, y: 0.1, w: 0.2, h: 0.2 };
    let mut ids = Vec::new();
    let mut records = Vec::new();
    for (i, (cam, label)) in [("gate", "car"), ("gate", "bus"), ("lobby", "person")].iter().enumerate() {
        let e = NewEvent::new(
            format!("n1/{cam}/{i}"),
            CameraId::new(*cam).unwrap(),
            Label::new(*label).unwrap(),
            t0 + chrono::Duration::seconds(i as i64),
            0.8,
            bbox,
        );
        ids.push(e.id);
        records.push(Record::Start(e));
    }
    // Two buses went in at the gate's stop line; one person crossed the lobby's.
    for (cam, line, label, total) in [("gate", "stop", "bus", 2), ("lobby", "door", "person", 1)] {
        let c = panoptes_storage::events::LineCount::new(
            CameraId::new(cam).unwrap(),
            line,
            Label::new(label).unwrap(),
            panoptes_storage::events::Direction::In,
            t0,
            total,
        );
        records.push(Record::LineCount(c));
    }
    store::write(pool, &records).await;
    ids
}

#[sqlx::test(migrator = "panoptes_storage::MIGRATOR")]
async fn events_are_scoped_reviewed_by_operators_and_audited(pool: PgPool) -> TestResult {
    let ids = seed_events(&pool).await;
    let viewer = add_user(&pool, "vic", Role::Viewer).await;
    let op = add_user(&pool, "olga", Role::Operator).await;
    for u in [viewer, op] {
        panoptes_storage::cameras::grant(&pool, u, &CameraId::new("gate")?).await?;
    }
    let app = app(pool.clone(), board_with(&[]), ApiConfig::default());

    let (vcookie, vcsrf) = login(&app, "vic").await;
    let page =
        call(&app, Request::get("/api/events?limit=2").header(header::COOKIE, &vcookie).body(Body::empty())?)
            .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.json);
    let got: Vec<&str> =
        page.json["events"].as_array().unwrap().iter().map(|e| e["label"].as_str().unwrap()).collect();
    assert_eq!(got, ["bus", "car"], "newest first, lobby not granted");
    let next = page.json["next"].as_str().map(str::to_owned);
    if let Some(next) = next {
        let more = call(
            &app,
            Request::get(format!("/api/events?after={next}"))
                .header(header::COOKIE, &vcookie)
                .body(Body::empty())?,
        )
        .await;
        assert_eq!(more.json["events"].as_array().unwrap().len(), 0);
    }
    let hidden = call(
        &app,
        Request::get(format!("/api/events/{}", ids[2]))
            .header(header::COOKIE, &vcookie)
            .body(Body::empty())?,
    )
    .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND, "an ungranted camera's event is invisible");
    let bad = call(
        &app,
        Request::get("/api/events?review=maybe").header(header::COOKIE, &vcookie).body(Body::empty())?,
    )
    .await;
    assert_eq!((bad.status, bad.json["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("review")));

    let review = |cookie: &str, csrf: &str, id: uuid::Uuid, verdict: &str| {
        post(&format!("/api/events/{id}/review"))
            .header(header::COOKIE, cookie)
            .header("x-csrf-token", csrf)
            .body(json_body(json!({"verdict": verdict, "note": "checked"})))
            .unwrap()
    };
    let r = call(&app, review(&vcookie, &vcsrf, ids[0], "acknowledge")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "viewers do not review");
    let (ocookie, ocsrf) = login(&app, "olga").await;
    let r = call(&app, review(&ocookie, &ocsrf, ids[0], "acknowledge")).await;
    assert_eq!(
        (r.status, r.json["review_state"].as_str()),
        (StatusCode::OK, Some("acknowledged")),
        "{}",
        r.json
    );
    let again = call(&app, review(&ocookie, &ocsrf, ids[0], "acknowledge")).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let other = call(&app, review(&ocookie, &ocsrf, ids[2], "dismiss")).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);

    let counts = call(
        &app,
        Request::get(format!(
            "/api/events/counts?by=label&from={}&to={}",
            (chrono::Utc::now() - chrono::Duration::hours(1))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))
        .header(header::COOKIE, &ocookie)
        .body(Body::empty())?,
    )
    .await;
    assert_eq!(counts.status, StatusCode::OK, "{}", counts.json);
    assert_eq!(counts.json.as_array().unwrap().len(), 2, "{}", counts.json);
    let lines = call(
        &app,
        Request::get(format!(
            "/api/events/counts?by=line&from={}&to={}",
            (chrono::Utc::now() - chrono::Duration::hours(2))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            (chrono::Utc::now() + chrono::Duration::hours(1))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))
        .header(header::COOKIE, &ocookie)
        .body(Body::empty())?,
    )
    .await;
    assert_eq!(lines.status, StatusCode::OK, "{}", lines.json);
    assert_eq!(
        lines.json,
        json!([{"hour": null, "label": "bus", "camera": "gate", "line": "stop", "direction": "in", "count": 2}]),
        "the lobby's line is not granted"
    );

    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM audit_log WHERE action = 'review'").fetch_one(&pool).await?;
    assert_eq!(n, 1);
    Ok(())
}

#[sqlx::test(migrator = "panoptes_storage::MIGRATOR")]
async fn alert_stream_delivers_only_granted_cameras(pool: PgPool) -> TestResult {
    let ids = seed_events(&pool).await;
    let viewer = add_user(&pool, "vic", Role::Viewer).await;
    panoptes_storage::cameras::grant(&pool, viewer, &CameraId::new("lobby")?).await?;
    let app = app(pool.clone(), board_with(&[]), ApiConfig::default());
    let (cookie, _) = login(&app, "vic").await;
    let resp = app
        .clone()
        .oneshot(Request::get("/api/events/stream").header(header::COOKIE, &cookie).body(Body::empty())?)
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    // A review on an ungranted camera, then one on the granted camera.
    let admin = add_user(&pool, "root", Role::Admin).await;
    let all = panoptes_storage::cameras::Access::All;
    panoptes_storage::queries::review(
        &pool,
        &all,
        ids[0],
        panoptes_storage::queries::Verdict::Dismiss,
        admin,
        None,
    )
    .await?;
    panoptes_storage::queries::review(
        &pool,
        &all,
        ids[2],
        panoptes_storage::queries::Verdict::Dismiss,
        admin,
        None,
    )
    .await?;
    use futures::StreamExt;
    let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), body.next())
        .await?
        .ok_or("stream ended")??;
    let text = String::from_utf8_lossy(&chunk).to_string();
    assert!(text.contains("event: review") && text.contains(&ids[2].to_string()), "{text}");
    assert!(!text.contains(&ids[0].to_string()), "ungranted camera leaked: {text}");
    Ok(())
}
