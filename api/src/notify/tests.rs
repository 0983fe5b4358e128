//! Notifications against the real things: a fresh PostgreSQL database per test, events
//! written through the storage event writer, a Mosquitto broker of the test's own (the
//! `mosquitto` binary on a free port) and local axum webhook receivers. Every wait is a
//! condition with a deadline.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use chrono::{TimeDelta, Utc};
use panoptes_core::{CameraId, NodeId, StatusBoard, StreamPhase, StreamRole, StreamStatus};
use panoptes_storage::PgPool;
use panoptes_storage::cameras::{CameraSpec, sync};
use panoptes_storage::events::{BBox, EventSink, EventUpdate, EventWriter, Label, NewEvent, WriterConfig};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(20);

/// A free TCP port on 127.0.0.1 (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap()
}

/// A Mosquitto broker of this test's own, on a free port, killed on drop.
struct Broker {
    port: u16,
    /// A configuration file instead of `-p port`.
    config: Option<std::path::PathBuf>,
    child: Option<Child>,
}

impl Broker {
    async fn start() -> Broker {
        let mut b = Broker { port: free_port(), config: None, child: None };
        b.spawn().await;
        b
    }

    async fn spawn(&mut self) {
        let args = match &self.config {
            Some(c) => vec!["-c".to_owned(), c.display().to_string()],
            None => vec!["-p".to_owned(), self.port.to_string()],
        };
        let child = Command::new("mosquitto")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mosquitto (scripts/setup.sh installs it)");
        self.child = Some(child);
        let port = self.port;
        until("mosquitto to accept connections", || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
        })
        .await;
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` every 20 ms until it gives `Some`, failing after [`WAIT`].
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {WAIT:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An MQTT subscriber to `<prefix>/#`: every message in arrival order.
struct Subscriber {
    rx: mpsc::UnboundedReceiver<(String, String, bool)>,
    seen: Vec<(String, String, bool)>,
    _task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    async fn connect(port: u16, prefix: &str) -> Subscriber {
        let mut opts =
            MqttOptions::new(format!("test-sub-{}", uuid::Uuid::now_v7().simple()), "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(opts, 16);
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
        let filter = format!("{prefix}/#");
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.subscribe(filter.clone(), QoS::AtLeastOnce).await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let text = String::from_utf8_lossy(&p.payload).into_owned();
                        let _ = tx.send((p.topic, text, p.retain));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let ok = tokio::time::timeout(WAIT, subscribed.recv()).await;
        assert!(matches!(ok, Ok(Some(()))), "the test subscriber did not subscribe");
        Subscriber { rx, seen: Vec::new(), _task: task }
    }

    /// Waits for the first message (not seen before) on `topic` that `f` accepts.
    async fn next(&mut self, topic: &str, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = tokio::time::timeout_at(deadline, self.rx.recv()).await;
            let Ok(Some(m)) = got else {
                panic!("timed out waiting for {what} on {topic}; seen: {:#?}", self.seen);
            };
            self.seen.push(m.clone());
            if m.0 == topic && f(&m.1) {
                return m.1;
            }
        }
    }
}

fn event_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Node `n1` owns `gate` and `door`; node `n2` owns `yard`.
async fn cameras(pool: &PgPool) -> NodeId {
    let (n1, n2) = (NodeId::new("n1").unwrap(), NodeId::new("n2").unwrap());
    for n in [&n1, &n2] {
        panoptes_storage::nodes::register(pool, n, "127.0.0.1:0", "test").await.unwrap();
    }
    let spec = |id: &str| CameraSpec {
        id: CameraId::new(id).unwrap(),
        name: id.into(),
        enabled: true,
        streams: Vec::new(),
        definition: None,
    };
    sync(pool, &n1, &[spec("gate"), spec("door")]).await.unwrap();
    sync(pool, &n2, &[spec("yard")]).await.unwrap();
    n1
}

struct Writer {
    sink: EventSink,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
    handle: Option<panoptes_storage::events::WriterHandle>,
}

impl Writer {
    async fn start(pool: &PgPool) -> Writer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = WriterConfig::new(dir.path().join("events.spool"));
        config.batcher.max_delay = Duration::from_millis(10);
        let cancel = CancellationToken::new();
        let (sink, handle) = EventWriter::start(pool.clone(), config, cancel.clone()).await;
        Writer { sink, cancel, _dir: dir, handle: Some(handle) }
    }

    fn new_event(&self, n: i64, camera: &str, label: &str) -> NewEvent {
        let start = Utc::now() - TimeDelta::seconds(60 - n);
        let bbox = BBox { x: 0.25, y: 0.25, w: 0.5, h: 0.5 };
        let mut e = NewEvent::new(
            format!("n1/{camera}/{n}/{}", uuid::Uuid::now_v7().simple()),
            CameraId::new(camera).unwrap(),
            Label::new(label).unwrap(),
            start,
            0.8,
            bbox,
        );
        e.node = Some(NodeId::new("n1").unwrap());
        self.sink.start(e.clone()).unwrap();
        e
    }

    fn end(&self, e: &NewEvent) {
        self.sink
            .update(EventUpdate {
                idempotency_key: e.idempotency_key.clone(),
                camera: e.camera.clone(),
                end_time: Some(e.start_time + TimeDelta::seconds(3)),
                sub_label: None,
                score_max: 0.9,
                score_median: 0.8,
                bbox: e.bbox,
                path: Vec::new(),
                zones: vec!["drive".into()],
                alert: true,
                snapshot_path: None,
            })
            .unwrap();
    }

    async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(h) = self.handle.take() {
            h.finished().await;
        }
    }
}

fn mqtt(port: u16, prefix: &str) -> MqttSettings {
    MqttSettings {
        host: "127.0.0.1".into(),
        port,
        client_id: format!("panoptes-test-{}", uuid::Uuid::now_v7().simple()),
        topic_prefix: prefix.into(),
        credentials: None,
        qos: 1,
        tls: None,
        keep_alive: Duration::from_secs(5),
        queue: 100,
    }
}

fn unique_prefix() -> String {
    format!("panoptes-test/{}", uuid::Uuid::now_v7().simple())
}

fn stream_status(camera: &str, phase: StreamPhase) -> StreamStatus {
    StreamStatus {
        camera: CameraId::new(camera).unwrap(),
        stream: "main".into(),
        roles: vec![StreamRole::Record],
        url: panoptes_core::redact(&url::Url::parse("rtsp://u:secret@10.0.0.1/x").unwrap()),
        phase,
        reconnects: 0,
        frames: 0,
        dropped_frames: 0,
    }
}

#[sqlx::test(migrator = "panoptes_storage::MIGRATOR")]
async fn mqtt_publishes_this_nodes_events_counts_status_and_availability(pool: PgPool) -> TestResult {
    let node = cameras(&pool).await;
    let broker = Broker::start().await;
    let prefix = unique_prefix();
    let mut sub = Subscriber::connect(broker.port, &prefix).await;
    let board = StatusBoard::default();
    board.set(stream_status("gate", StreamPhase::Connecting));
    let config = NotifyConfig { node, mqtt: Some(mqtt(broker.port, &prefix)), webhooks: Vec::new() };
    let notifier = Notifier::start(pool.clone(), board.clone(), config)?.ok_or("not started")?;

    let available = format!("{prefix}/available");
    sub.next(&available, "online", |p| p == "online").await;
    let status = sub.next(&format!("{prefix}/gate/status"), "gate's status", |_| true).await;
    assert_eq!(event_json(&status)["state"], "connecting");

    let writer = Writer::start(&pool).await;
    // Another node's camera first: it must never appear, and the messages keep the order
    // of the announcements, so when gate's event arrives yard's would have come before it.
    let foreign = writer.new_event(0, "yard", "person");
    let e = writer.new_event(1, "gate", "person");
    let events = format!("{prefix}/events");
    let text = sub.next(&events, "gate's new event", |p| event_json(p)["event"]["camera"] == "gate").await;
    let v = event_json(&text);
    assert_eq!(v["type"], "new");
    assert_eq!(v["event"]["id"], e.id.to_string());
    assert_eq!(v["event"]["label"], "person");
    assert_eq!(v["event"]["bbox"], serde_json::json!([0.25, 0.25, 0.5, 0.5]));
    assert_eq!(v["event"]["end_time"], Value::Null);
    assert_eq!(sub.next(&format!("{prefix}/gate/person"), "the person count", |_| true).await, "1");

    writer.end(&e);
    let text = sub.next(&events, "gate's end", |p| event_json(p)["type"] == "end").await;
    assert_eq!(event_json(&text)["event"]["zones"], serde_json::json!(["drive"]));
    assert_eq!(sub.next(&format!("{prefix}/gate/person"), "the count back to 0", |_| true).await, "0");

    // Stream state changes reach `<camera>/status`.
    board.set(stream_status(
        "gate",
        StreamPhase::Streaming {
            codec: "avc1.4d0028".into(),
            width: 1280,
            height: 720,
            fps: 25.0,
            bitrate_bps: 2e6,
            last_frame_unix_ms: 0,
        },
    ));
    let status = sub.next(&format!("{prefix}/gate/status"), "streaming", |p| p.contains("streaming")).await;
    assert_eq!(event_json(&status)["streams"]["main"], "streaming");

    writer.stop().await;
    notifier.stop().await;
    sub.next(&available, "offline at shutdown", |p| p == "offline").await;
    let yard = foreign.id.to_string();
    assert!(!sub.seen.iter().any(|(_, p, _)| p.contains(&yard)), "another node's event was published");
    assert!(!sub.seen.iter().any(|(t, _, _)| t.contains("/yard/")), "another node's camera was published");
    drop(broker);
    Ok(())
}

/// A request a receiver got: its headers and body.
type Request = (HeaderMap, Vec<u8>);

/// A webhook receiver: answers each request with the next scripted status (the last one
/// repeats) and records what it got.
#[derive(Clone, Default)]
struct Receiver {
    script: Arc<Mutex<Vec<u16>>>,
    got: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    fn requests(&self) -> Vec<Request> {
        self.got.lock().unwrap().clone()
    }
}

/// Serves `receivers` at `/0`, `/1`, …; returns the base URL.
async fn serve(receivers: Vec<Receiver>) -> String {
    let mut router = axum::Router::new();
    for (i, r) in receivers.into_iter().enumerate() {
        router = router.route(
            &format!("/{i}"),
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let r = r.clone();
                async move {
                    r.got.lock().unwrap().push((headers, body.to_vec()));
                    let mut script = r.script.lock().unwrap();
                    let code = if script.len() > 1 { script.remove(0) } else { script[0] };
                    StatusCode::from_u16(code).unwrap()
                }
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

fn webhook(name: &str, url: &str) -> WebhookSettings {
    WebhookSettings {
        name: name.into(),
        url: url::Url::parse(url).unwrap(),
        filter: WebhookFilter::default(),
        secret: None,
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        },
        queue: 100,
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[sqlx::test(migrator = "panoptes_storage::MIGRATOR")]
async fn webhooks_retry_5xx_then_deliver_once_signed_and_never_retry_4xx(pool: PgPool) -> TestResult {
    let node = cameras(&pool).await;
    let flaky = Receiver { script: Arc::new(Mutex::new(vec![500, 500, 200])), ..Receiver::default() };
    let refusing = Receiver { script: Arc::new(Mutex::new(vec![400])), ..Receiver::default() };
    let base = serve(vec![flaky.clone(), refusing.clone()]).await;
    let mut good = webhook("alarm", &format!("{base}/0"));
    good.secret = Some("s3cret".into());
    good.filter.cameras = vec![CameraId::new("gate")?];
    good.filter.types = vec![Kind::New];
    let mut bad = webhook("broken", &format!("{base}/1"));
    bad.filter.types = vec![Kind::New];
    let config = NotifyConfig { node, mqtt: None, webhooks: vec![good, bad] };
    let notifier = Notifier::start(pool.clone(), StatusBoard::default(), config)?.ok_or("not started")?;
    let all: Vec<Arc<WebhookStats>> = notifier.webhook_stats().iter().map(|s| s.1.clone()).collect();
    let stats = |i: usize| all[i].clone();

    let writer = Writer::start(&pool).await;
    // `door` is filtered out of `alarm`; `gate`'s event reaches both.
    writer.new_event(0, "door", "car");
    let e = writer.new_event(1, "gate", "person");
    until("alarm's delivery", || async { (stats(0).delivered.load(Ordering::Relaxed) == 1).then_some(()) })
        .await;
    until("broken's two refusals", || async { (stats(1).failed.load(Ordering::Relaxed) == 2).then_some(()) })
        .await;

    writer.stop().await;
    notifier.stop().await;

    // alarm: three attempts of one delivery, the same id, then delivered once.
    let got = flaky.requests();
    assert_eq!(
        got.len(),
        3,
        "attempts: {:?}",
        got.iter().map(|g| header(&g.0, "x-panoptes-attempt")).collect::<Vec<_>>()
    );
    let ids: Vec<&str> = got.iter().map(|(h, _)| header(h, "x-panoptes-delivery")).collect();
    assert!(!ids[0].is_empty() && ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    let attempts: Vec<&str> = got.iter().map(|(h, _)| header(h, "x-panoptes-attempt")).collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    for (h, body) in &got {
        assert_eq!(header(h, "x-panoptes-signature"), webhook::signature(b"s3cret", body));
        assert_eq!(header(h, "x-panoptes-event"), "new");
        assert_eq!(header(h, "content-type"), "application/json");
        let v: Value = serde_json::from_slice(body)?;
        assert_eq!(
            (v["type"].as_str(), v["event"]["id"].as_str()),
            (Some("new"), Some(e.id.to_string().as_str()))
        );
    }
    let s = stats(0);
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    assert_eq!((load(&s.delivered), load(&s.retries), load(&s.failed)), (1, 2, 0));

    // broken: 400 is final: one attempt per delivery, no retry, no signature without a secret.
    let got = refusing.requests();
    assert_eq!(got.len(), 2);
    assert_ne!(header(&got[0].0, "x-panoptes-delivery"), header(&got[1].0, "x-panoptes-delivery"));
    assert!(
        got.iter()
            .all(|(h, _)| header(h, "x-panoptes-attempt") == "1" && h.get("x-panoptes-signature").is_none())
    );
    let s = stats(1);
    assert_eq!((load(&s.delivered), load(&s.retries), load(&s.failed)), (0, 0, 2));
    Ok(())
}

#[sqlx::test(migrator = "panoptes_storage::MIGRATOR")]
async fn an_unreachable_broker_never_holds_up_events(pool: PgPool) -> TestResult {
    let node = cameras(&pool).await;
    let mut m = mqtt(free_port(), &unique_prefix());
    m.queue = 2;
    let config = NotifyConfig { node, mqtt: Some(m), webhooks: Vec::new() };
    let notifier = Notifier::start(pool.clone(), StatusBoard::default(), config)?.ok_or("not started")?;
    let writer = Writer::start(&pool).await;
    for i in 0..20 {
        writer.new_event(i, "gate", "car");
    }
    until("the 20 events in the database", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.ok()?;
        (n == 20).then_some(())
    })
    .await;
    writer.stop().await;
    // Stopping with the broker away is prompt: the queue is given up, nothing waits for it.
    let started = std::time::Instant::now();
    notifier.stop().await;
    assert!(started.elapsed() < DRAIN_MAX + Duration::from_secs(1), "stop took {:?}", started.elapsed());
    Ok(())
}

#[sqlx::test(migrator = "panoptes_storage::MIGRATOR")]
async fn publishing_resumes_after_the_broker_restarts(pool: PgPool) -> TestResult {
    let node = cameras(&pool).await;
    let mut broker = Broker::start().await;
    let prefix = unique_prefix();
    let config = NotifyConfig { node, mqtt: Some(mqtt(broker.port, &prefix)), webhooks: Vec::new() };
    let notifier = Notifier::start(pool.clone(), StatusBoard::default(), config)?.ok_or("not started")?;
    let writer = Writer::start(&pool).await;
    {
        let mut sub = Subscriber::connect(broker.port, &prefix).await;
        sub.next(&format!("{prefix}/available"), "online", |p| p == "online").await;
    }
    broker.kill();
    // Events written while the broker is away are stored all the same.
    let during = writer.new_event(0, "gate", "car");
    until("the event in the database", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE id = $1")
            .bind(during.id)
            .fetch_one(&pool)
            .await
            .ok()?;
        (n == 1).then_some(())
    })
    .await;
    broker.spawn().await;
    // A fresh broker knows nothing retained: `online` again proves the reconnect.
    let mut sub = Subscriber::connect(broker.port, &prefix).await;
    sub.next(&format!("{prefix}/available"), "online after the restart", |p| p == "online").await;
    let after = writer.new_event(1, "gate", "car");
    let id = after.id.to_string();
    sub.next(&format!("{prefix}/events"), "an event after the restart", |p| p.contains(&id)).await;
    writer.stop().await;
    notifier.stop().await;
    Ok(())
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("running openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[sqlx::test(migrator = "panoptes_storage::MIGRATOR")]
async fn mqtt_over_tls_trusts_a_private_ca_file(pool: PgPool) -> TestResult {
    let node = cameras(&pool).await;
    // A private CA and a broker certificate for localhost signed by it.
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        d,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=panoptes test CA"],
        ]
        .concat(),
    );
    openssl(
        d,
        &[&["req"][..], &ec, &["-keyout", "broker.key", "-out", "broker.csr", "-subj", "/CN=localhost"]]
            .concat(),
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )?;
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "broker.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "broker.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    // One TLS listener for Panoptes, one plain listener for the test's subscriber. `user
    // root` keeps mosquitto (when run as root) from dropping to a user that cannot read the
    // key in this private directory.
    let (tls_port, plain_port) = (free_port(), free_port());
    let config = d.join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "user root\nallow_anonymous true\nlistener {plain_port} 127.0.0.1\nlistener {tls_port} 127.0.0.1\n\
             cafile {0}/ca.pem\ncertfile {0}/broker.pem\nkeyfile {0}/broker.key\n",
            d.display()
        ),
    )?;
    let mut broker = Broker { port: plain_port, config: Some(config), child: None };
    broker.spawn().await;
    let prefix = unique_prefix();
    let mut sub = Subscriber::connect(plain_port, &prefix).await;
    let mut m = mqtt(tls_port, &prefix);
    m.host = "localhost".into();
    m.tls = Some(Some(d.join("ca.pem")));
    let config = NotifyConfig { node, mqtt: Some(m), webhooks: Vec::new() };
    let notifier = Notifier::start(pool.clone(), StatusBoard::default(), config)?.ok_or("not started")?;
    sub.next(&format!("{prefix}/available"), "online over TLS", |p| p == "online").await;
    let writer = Writer::start(&pool).await;
    let e = writer.new_event(0, "gate", "car");
    let id = e.id.to_string();
    sub.next(&format!("{prefix}/events"), "the event over TLS", |p| p.contains(&id)).await;
    writer.stop().await;
    notifier.stop().await;
    Ok(())
}
