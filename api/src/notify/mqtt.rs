//! MQTT publishing with rumqttc (topic layout in [`Topics`]).
//!
//! Three tasks: the **driver** polls rumqttc's event loop (connects, reconnects with
//! backoff, logs once per outage with the broker's address); the **publisher** takes
//! messages from a bounded queue (oldest dropped when full, counted) and hands them to
//! rumqttc only while a session is up, announcing `online` and every camera's status at
//! each new session; the **status watcher** polls the [`StatusBoard`] and queues the
//! cameras whose state changed. Nothing here ever makes the event writer wait.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use panoptes_core::{CameraId, StatusBoard};
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS, Transport};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::NotifyError;
use super::payload::{ActiveObjects, CameraState, Notice, Topics, camera_states};
use super::queue::{DropOldest, Pushed};

/// rumqttc's own request channel: small, since our queue is the buffer that drops.
const CLIENT_CHANNEL: usize = 16;
/// First and longest wait between connection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often the status board is compared with what was published.
const STATUS_POLL: Duration = Duration::from_secs(1);

/// The MQTT connection, resolved.
#[derive(Clone)]
pub struct MqttSettings {
    /// Broker host name or address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id (unique per node).
    pub client_id: String,
    /// Topic prefix.
    pub topic_prefix: String,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// QoS of every publication (0, 1 or 2).
    pub qos: u8,
    /// TLS, with an optional CA file (PEM) on top of the system's.
    pub tls: Option<Option<PathBuf>>,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// Messages waiting at most while the broker is away (the oldest is dropped beyond).
    pub queue: usize,
}

impl std::fmt::Debug for MqttSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSettings")
            .field("broker", &self.broker())
            .field("client_id", &self.client_id)
            .field("topic_prefix", &self.topic_prefix)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .field("qos", &self.qos)
            .field("tls", &self.tls)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl MqttSettings {
    /// `host:port`, for logs.
    pub fn broker(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn qos(&self) -> QoS {
        match self.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        }
    }
}

/// A message for the broker.
#[derive(Debug, Clone)]
struct Message {
    topic: String,
    payload: Bytes,
    retain: bool,
}

/// The dispatcher's side of MQTT, plus the tasks to spawn.
#[derive(Debug)]
pub(crate) struct MqttSink {
    topics: Topics,
    queue: Arc<DropOldest<Message>>,
    active: ActiveObjects,
}

/// The three tasks, ready to spawn.
pub(crate) struct MqttTasks {
    pub(crate) driver: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    pub(crate) publisher: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    pub(crate) status: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl std::fmt::Debug for MqttTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MqttTasks")
    }
}

impl MqttSink {
    /// Builds the client and its tasks. `stopping` ends the status watcher and, once the
    /// queue is drained, the publisher (which then says `offline` and disconnects);
    /// `abort` ends everything at once.
    pub(crate) fn start(
        s: &MqttSettings,
        board: StatusBoard,
        stopping: CancellationToken,
        abort: CancellationToken,
    ) -> Result<(MqttSink, MqttTasks), NotifyError> {
        let topics = Topics::new(&s.topic_prefix);
        let mut opts = MqttOptions::new(s.client_id.clone(), s.host.clone(), s.port);
        // rumqttc refuses keep-alives under a second (it asserts).
        opts.set_keep_alive(s.keep_alive.max(Duration::from_secs(1)))
            .set_clean_session(true)
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_last_will(LastWill::new(topics.available(), "offline", s.qos(), true));
        if let Some((user, password)) = &s.credentials {
            opts.set_credentials(user.clone(), password.clone());
        }
        if let Some(ca_file) = &s.tls {
            let config = super::tls::client_config(ca_file.as_deref())?;
            opts.set_transport(Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(config)));
        }
        let (client, eventloop) = AsyncClient::new(opts, CLIENT_CHANNEL);
        let queue = Arc::new(DropOldest::new(s.queue));
        let (session_tx, session_rx) = watch::channel(None);
        let driver_stop = CancellationToken::new();
        let driver = Box::pin(drive(eventloop, s.broker(), session_tx, driver_stop.clone(), abort.clone()));
        let publisher = Box::pin(publish(Publisher {
            client,
            queue: queue.clone(),
            session: session_rx,
            board: board.clone(),
            topics: topics.clone(),
            qos: s.qos(),
            driver_stop,
            stopping: stopping.clone(),
            abort: abort.clone(),
        }));
        let status = Box::pin(watch_status(board, queue.clone(), topics.clone(), stopping));
        Ok((
            MqttSink { topics, queue, active: ActiveObjects::default() },
            MqttTasks { driver, publisher, status },
        ))
    }

    /// Queues the event message and any changed object counts; never waits.
    pub(crate) fn offer(&mut self, n: &Notice) {
        let topic = self.topics.events();
        push(&self.queue, Message { topic, payload: n.body.clone(), retain: false });
        for (camera, label, count) in self.active.apply(n, Utc::now()) {
            let topic = self.topics.count(&camera, &label);
            push(&self.queue, Message { topic, payload: Bytes::from(count.to_string()), retain: false });
        }
    }

    /// No more offers: the publisher sends what is queued (while connected) and ends.
    pub(crate) fn close(&self) {
        self.queue.close();
    }
}

fn push(queue: &DropOldest<Message>, m: Message) {
    match queue.push(m) {
        Pushed::Queued => {}
        Pushed::DroppedOldest(_) => {
            metrics::counter!("panoptes_mqtt_dropped_total", "reason" => "queue_full").increment(1);
        }
        Pushed::Closed(_) => {
            metrics::counter!("panoptes_mqtt_dropped_total", "reason" => "shutdown").increment(1);
        }
    }
}

fn status_message(topics: &Topics, camera: &CameraId, state: &CameraState) -> Message {
    let payload = serde_json::to_vec(state).map(Bytes::from).unwrap_or_default();
    Message { topic: topics.status(camera), payload, retain: true }
}

/// Polls rumqttc's event loop: the connection's whole life. Publishes the session number
/// on `session` while connected (`None` while not).
async fn drive(
    mut eventloop: EventLoop,
    broker: String,
    session: watch::Sender<Option<u64>>,
    stop: CancellationToken,
    abort: CancellationToken,
) {
    let mut sessions = 0u64;
    let mut backoff = BACKOFF_MIN;
    let mut outage = false;
    loop {
        let event = tokio::select! {
            _ = abort.cancelled() => break,
            _ = stop.cancelled(), if session.borrow().is_none() => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                sessions += 1;
                backoff = BACKOFF_MIN;
                if std::mem::take(&mut outage) {
                    info!(broker = %broker, "MQTT broker reachable again; publishing resumes");
                } else {
                    info!(broker = %broker, "MQTT connected");
                }
                metrics::gauge!("panoptes_mqtt_connected").set(1.0);
                session.send_replace(Some(sessions));
            }
            // Our own DISCONNECT went out: the end.
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                metrics::counter!("panoptes_mqtt_published_total").increment(1);
            }
            Ok(_) => {}
            Err(e) => {
                session.send_replace(None);
                metrics::gauge!("panoptes_mqtt_connected").set(0.0);
                metrics::counter!("panoptes_mqtt_connection_errors_total").increment(1);
                if stop.is_cancelled() {
                    break;
                }
                if !outage {
                    warn!(broker = %broker, error = %e,
                          "MQTT broker unreachable; messages wait in a bounded queue (oldest dropped) \
                           while reconnecting with backoff");
                    outage = true;
                } else {
                    debug!(broker = %broker, error = %e, "MQTT reconnect failed");
                }
                tokio::select! {
                    _ = abort.cancelled() => break,
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    session.send_replace(None);
    metrics::gauge!("panoptes_mqtt_connected").set(0.0);
}

struct Publisher {
    client: AsyncClient,
    queue: Arc<DropOldest<Message>>,
    session: watch::Receiver<Option<u64>>,
    board: StatusBoard,
    topics: Topics,
    qos: QoS,
    driver_stop: CancellationToken,
    stopping: CancellationToken,
    abort: CancellationToken,
}

impl Publisher {
    async fn send(&self, m: Message) -> bool {
        let publish = self.client.publish_bytes(m.topic, self.qos, m.retain, m.payload);
        tokio::select! {
            _ = self.abort.cancelled() => false,
            r = publish => r.is_ok(),
        }
    }

    /// `online` and every camera's status: what a new session must say first.
    async fn announce(&self) {
        let online = Message { topic: self.topics.available(), payload: Bytes::from("online"), retain: true };
        self.send(online).await;
        for (camera, state) in camera_states(&self.board.snapshot()) {
            self.send(status_message(&self.topics, &camera, &state)).await;
        }
    }
}

/// Hands queued messages to rumqttc while a session is up. Ends when the queue is closed
/// and drained (then says `offline` and disconnects), or when stopping while the broker is
/// away (what is queued is dropped and counted).
async fn publish(mut p: Publisher) {
    let mut announced = 0u64;
    loop {
        let current = *p.session.borrow_and_update();
        let Some(session) = current else {
            tokio::select! {
                _ = p.abort.cancelled() => break,
                _ = p.stopping.cancelled() => break,
                changed = p.session.changed() => if changed.is_err() { break },
            }
            continue;
        };
        if session != announced {
            p.announce().await;
            announced = session;
        }
        let next = tokio::select! {
            _ = p.abort.cancelled() => break,
            _ = p.session.changed() => continue,
            m = p.queue.pop() => m,
        };
        match next {
            Some(m) => {
                if !p.send(m).await {
                    break;
                }
            }
            None => {
                // Drained: say what the last will would say, but cleanly.
                let offline =
                    Message { topic: p.topics.available(), payload: Bytes::from("offline"), retain: true };
                p.send(offline).await;
                let _ = p.client.try_disconnect();
                break;
            }
        }
    }
    let left = p.queue.clear();
    if left > 0 {
        metrics::counter!("panoptes_mqtt_dropped_total", "reason" => "shutdown").increment(left as u64);
    }
    // The driver ends once the DISCONNECT is out, or at once when there is no session.
    p.driver_stop.cancel();
}

/// Queues the status of each camera whose state changed since the last look.
async fn watch_status(
    board: StatusBoard,
    queue: Arc<DropOldest<Message>>,
    topics: Topics,
    stop: CancellationToken,
) {
    // The publisher announces the states at each new session: start from what it sees.
    let mut last: BTreeMap<CameraId, CameraState> = camera_states(&board.snapshot());
    let mut tick = tokio::time::interval(STATUS_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = camera_states(&board.snapshot());
        for (camera, state) in &now {
            if last.get(camera) != Some(state) {
                push(&queue, status_message(&topics, camera, state));
            }
        }
        last = now;
    }
}
