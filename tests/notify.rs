//! Notifications end to end: the real binary publishes to a Mosquitto broker of the test's
//! own, says `offline` at shutdown and (through its last will) when killed, and keeps
//! working, logging once, while the broker is unreachable.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `mosquitto -p PORT`, killed on drop.
struct Broker {
    port: u16,
    child: Child,
}

impl Broker {
    fn start() -> Broker {
        let port = free_port();
        let child = Command::new("mosquitto")
            .args(["-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mosquitto (scripts/setup.sh installs it)");
        wait_for(WAIT, "mosquitto to accept connections", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Broker { port, child }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every message under `<prefix>/#`, in arrival order.
struct Subscriber {
    rx: mpsc::Receiver<(String, String)>,
    seen: Vec<(String, String)>,
}

impl Subscriber {
    fn connect(port: u16, prefix: &str) -> Subscriber {
        let id = format!("e2e-sub-{}-{port}", std::process::id());
        let mut opts = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut connection) = rumqttc::Client::new(opts, 16);
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let filter = format!("{prefix}/#");
        std::thread::spawn(move || {
            for n in connection.iter() {
                match n {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        let _ = client.subscribe(filter.clone(), rumqttc::QoS::AtLeastOnce);
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if tx
                            .send((p.topic.clone(), String::from_utf8_lossy(&p.payload).into_owned()))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready.recv_timeout(WAIT).expect("the test subscriber did not subscribe");
        Subscriber { rx, seen: Vec::new() }
    }

    /// The first message not seen before on `topic` that `f` accepts.
    fn next(&mut self, topic: &str, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(m) = self.rx.recv_timeout(left) else {
                panic!("timed out waiting for {what} on {topic}; seen: {:#?}", self.seen);
            };
            self.seen.push(m.clone());
            if m.0 == topic && f(&m.1) {
                return m.1;
            }
        }
    }
}

fn config(mqtt_port: u16, prefix: &str) -> String {
    // The camera never answers: only its ownership and status matter here.
    format!(
        r#"
        [server]
        listen = "127.0.0.1:{{port}}"
        data_dir = "{{data_dir}}"
        node_id = "e2e-node"
        metrics_token_env = "E2E_METRICS_TOKEN"
        webrtc_udp = ""
        [mqtt]
        enabled = true
        port = {mqtt_port}
        topic_prefix = "{prefix}"
        [[cameras]]
        id = "gate"
        [[cameras.streams]]
        url = "rtsp://127.0.0.1:{}/nothing"
        "#,
        free_port()
    )
}

/// An event of `gate` as the event writer stores it (the writer itself is tested with
/// MQTT in `panoptes-api`); returns its id.
fn insert_event(db: &TestDatabase) -> String {
    let rows = db.rows3(
        "INSERT INTO events (id, idempotency_key, camera_id, node_id, label, score_max, score_median, bbox, \
         start_time) VALUES (gen_random_uuid(), 'e2e/gate/1', 'gate', 'e2e-node', 'car', 0.9, 0.8, \
         '{0.1,0.1,0.2,0.2}', now()) RETURNING id::text, 0::bigint, ''::text",
    );
    rows[0].0.clone()
}

fn review(p: &Panoptes, client: &reqwest::blocking::Client, csrf: &str, id: &str) {
    let r = client
        .post(p.url(&format!("/api/events/{id}/review")))
        .header("x-csrf-token", csrf)
        .json(&serde_json::json!({"verdict": "acknowledge", "note": "seen"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
}

#[test]
fn reviews_reach_mqtt_and_offline_is_said_at_stop_and_on_a_crash() {
    let db = TestDatabase::create();
    let broker = Broker::start();
    let dir = scratch_dir();
    let prefix = format!("e2e-{}", std::process::id());
    let env: &[(&str, &str)] =
        &[("PANOPTES_DATABASE_URL", &db.url), ("E2E_METRICS_TOKEN", "e2e-metrics-token")];
    let mut sub = Subscriber::connect(broker.port, &prefix);
    let mut p = Panoptes::start(dir.path(), &config(broker.port, &prefix), env);
    let available = format!("{prefix}/available");
    sub.next(&available, "online", |m| m == "online");
    let status = sub.next(&format!("{prefix}/gate/status"), "gate's status", |_| true);
    assert!(status.contains("\"state\""), "{status}");

    let id = insert_event(&db);
    let cfg = dir.path().join("panoptes.toml");
    let (client, csrf) = user_session(&p, env, &cfg, "op", "operator", &["gate"]);
    review(&p, &client, &csrf, &id);
    let text = sub.next(&format!("{prefix}/events"), "the review", |m| m.contains(&id));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "review");
    assert_eq!(v["event"]["review_state"], "acknowledged");
    assert_eq!(v["event"]["review_note"], "seen");

    // A crash: the broker says it for us (the last will).
    p.kill();
    sub.next(&available, "offline by the last will", |m| m == "offline");

    // A clean stop: Panoptes says it itself, in shutdown step 4.
    let mut p = Panoptes::start(dir.path(), &config(broker.port, &prefix), env);
    sub.next(&available, "online again", |m| m == "online");
    assert!(p.stop(WAIT).success(), "{}", p.log_text());
    sub.next(&available, "offline at shutdown", |m| m == "offline");
    assert!(p.log_text().contains("shutdown 4/5: notifications"), "{}", p.log_text());
}

#[test]
fn an_unreachable_broker_is_logged_once_and_changes_nothing_else() {
    let db = TestDatabase::create();
    let dir = scratch_dir();
    let port = free_port();
    let env: &[(&str, &str)] =
        &[("PANOPTES_DATABASE_URL", &db.url), ("E2E_METRICS_TOKEN", "e2e-metrics-token")];
    let mut p = Panoptes::start(dir.path(), &config(port, "e2e-nobody"), env);
    p.wait_ready(WAIT);
    // Several failed attempts (0.5 s, 1 s, 2 s apart)…
    wait_for(WAIT, "three failed connection attempts", || {
        p.metric("panoptes_mqtt_connection_errors_total").filter(|n| *n >= 3.0)
    });
    // …one warning, naming the broker.
    let log = p.log_text();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("MQTT broker unreachable")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains(&format!("127.0.0.1:{port}")), "{}", warnings[0]);

    // The API and the database carry on: a review is stored.
    let id = insert_event(&db);
    let cfg = dir.path().join("panoptes.toml");
    let (client, csrf) = user_session(&p, env, &cfg, "op", "operator", &["gate"]);
    review(&p, &client, &csrf, &id);
    let stored = db.query_i64(&format!(
        "SELECT count(*) FROM events WHERE id = '{id}' AND review_state = 'acknowledged'"
    ));
    assert_eq!(stored, 1);
    assert_eq!(p.metric("panoptes_mqtt_connected"), Some(0.0));
    // Stopping does not wait for the broker.
    let started = Instant::now();
    assert!(p.stop(WAIT).success(), "{}", p.log_text());
    assert!(started.elapsed() < Duration::from_secs(10), "stop took {:?}", started.elapsed());
}
