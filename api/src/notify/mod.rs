//! Notifications out of Panoptes: MQTT ([`mqtt`]) and webhooks ([`webhook`]), both optional.
//!
//! One **dispatcher** task listens to `NOTIFY panoptes_events` (sent by every event insert,
//! update and review), fetches the event through `panoptes-storage` — only when its camera is
//! owned by this node, so nodes sharing a database never publish twice — builds the JSON
//! once ([`payload`]) and offers it to each sink. Every sink has its own bounded queue that
//! drops its oldest entry when full (counted), so a slow or absent broker or receiver never
//! holds up the dispatcher, let alone the event writer. Notifications that arrive while the
//! listener's database connection is down are lost (the events themselves are stored).
//!
//! What this module must not do: write events, or block on anything outside its tasks.

pub mod mqtt;
pub mod payload;
mod queue;
#[cfg(test)]
mod tests;
mod tls;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use panoptes_core::{NodeId, StatusBoard};
use panoptes_storage::PgPool;
use sqlx::postgres::PgListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use mqtt::MqttSettings;
pub use payload::Kind;
pub use webhook::{RetryPolicy, WebhookFilter, WebhookSettings, WebhookStats};

use mqtt::MqttSink;
use payload::{Notice, parse_announcement};
use webhook::WebhookSink;

/// The channel `panoptes-storage` announces event changes on.
const CHANNEL: &str = panoptes_storage::events::store::CHANNEL;
/// At shutdown, notifications still arriving (the event writer's last flush) are taken
/// until none came for this long…
const DRAIN_QUIET: Duration = Duration::from_millis(300);
/// …or for at most this long.
const DRAIN_MAX: Duration = Duration::from_secs(2);
/// Queues get this long to empty at shutdown before everything is aborted.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// What to notify, and where.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// This node: only events of its cameras are published.
    pub node: NodeId,
    /// MQTT, when enabled.
    pub mqtt: Option<MqttSettings>,
    /// Webhooks.
    pub webhooks: Vec<WebhookSettings>,
}

impl NotifyConfig {
    /// Whether anything is configured at all.
    pub fn is_empty(&self) -> bool {
        self.mqtt.is_none() && self.webhooks.is_empty()
    }
}

/// Why notifications could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// TLS could not be set up.
    #[error("TLS: {0}")]
    Tls(String),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(String),
}

/// The running notifications.
#[derive(Debug)]
pub struct Notifier {
    stopping: CancellationToken,
    abort: CancellationToken,
    tasks: JoinSet<()>,
    webhooks: Vec<(String, Arc<WebhookStats>)>,
}

impl Notifier {
    /// Starts the dispatcher and the sinks `config` asks for; `None` when it asks for none.
    /// Connections are made in the background: an unreachable broker or database is
    /// retried, never an error here.
    pub fn start(
        pool: PgPool,
        board: StatusBoard,
        config: NotifyConfig,
    ) -> Result<Option<Notifier>, NotifyError> {
        if config.is_empty() {
            return Ok(None);
        }
        let stopping = CancellationToken::new();
        let abort = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut sinks = Sinks::default();
        if let Some(m) = &config.mqtt {
            let (sink, t) = MqttSink::start(m, board, stopping.clone(), abort.clone())?;
            tasks.spawn(t.driver);
            tasks.spawn(t.publisher);
            tasks.spawn(t.status);
            sinks.mqtt = Some(sink);
            info!(broker = %m.broker(), prefix = %m.topic_prefix, "MQTT publishing on");
        }
        if !config.webhooks.is_empty() {
            let tls = tls::client_config(None)?;
            let client = reqwest::Client::builder()
                .use_preconfigured_tls((*tls).clone())
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("panoptes/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| NotifyError::Http(e.to_string()))?;
            for w in &config.webhooks {
                let sink = WebhookSink::new(w.clone());
                info!(webhook = %w.name, target = %webhook::origin(&w.url), "webhook on");
                tasks.spawn(sink.clone().run(client.clone(), abort.clone()));
                sinks.webhooks.push(sink);
            }
        }
        let webhooks = sinks.webhooks.iter().map(|w| (w.name().to_owned(), w.stats.clone())).collect();
        tasks.spawn(dispatch(pool, config.node, sinks, stopping.clone(), abort.clone()));
        Ok(Some(Notifier { stopping, abort, tasks, webhooks }))
    }

    /// Each webhook's counts, by name.
    pub fn webhook_stats(&self) -> &[(String, Arc<WebhookStats>)] {
        &self.webhooks
    }

    /// Stops: takes the notifications still arriving, lets the queues empty for a few
    /// seconds (MQTT then says `offline` and disconnects), then aborts what is left.
    pub async fn stop(mut self) {
        self.stopping.cancel();
        let drained = tokio::time::timeout(DRAIN_MAX + STOP_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!("notifications: queues did not empty in time; dropping the rest");
            self.abort.cancel();
            if tokio::time::timeout(Duration::from_secs(1), async {
                while self.tasks.join_next().await.is_some() {}
            })
            .await
            .is_err()
            {
                self.tasks.abort_all();
            }
        }
    }
}

#[derive(Debug, Default)]
struct Sinks {
    mqtt: Option<MqttSink>,
    webhooks: Vec<WebhookSink>,
}

impl Sinks {
    fn offer(&mut self, n: &Notice) {
        if let Some(m) = &mut self.mqtt {
            m.offer(n);
        }
        for w in &self.webhooks {
            w.offer(n);
        }
    }

    fn close(&self) {
        if let Some(m) = &self.mqtt {
            m.close();
        }
        for w in &self.webhooks {
            w.close();
        }
    }
}

/// Listens, fetches, offers. Reconnects the listener with backoff (logged once per outage).
async fn dispatch(
    pool: PgPool,
    node: NodeId,
    mut sinks: Sinks,
    stopping: CancellationToken,
    abort: CancellationToken,
) {
    let mut listener: Option<PgListener> = None;
    let mut backoff = Duration::from_millis(500);
    let mut outage = false;
    loop {
        if stopping.is_cancelled() || abort.is_cancelled() {
            break;
        }
        let Some(l) = listener.as_mut() else {
            let connected = tokio::select! {
                _ = stopping.cancelled() => break,
                r = connect(&pool) => r,
            };
            match connected {
                Ok(l) => {
                    if std::mem::take(&mut outage) {
                        info!("notifications: listening to the database again");
                    }
                    backoff = Duration::from_millis(500);
                    listener = Some(l);
                }
                Err(e) => {
                    pause(&mut outage, &mut backoff, &e, &stopping).await;
                }
            }
            continue;
        };
        let received = tokio::select! {
            _ = stopping.cancelled() => break,
            r = l.recv() => r,
        };
        match received {
            Ok(n) => handle(&pool, &node, &mut sinks, n.payload()).await,
            // `recv` reconnects by itself; an error means that failed: back off and retry.
            Err(e) => pause(&mut outage, &mut backoff, &e, &stopping).await,
        }
    }
    // The event writer's last flush may still be announcing: take what arrives until quiet.
    if let Some(l) = listener.as_mut() {
        let until = tokio::time::Instant::now() + DRAIN_MAX;
        while let Ok(Ok(n)) =
            tokio::time::timeout_at(until.min(tokio::time::Instant::now() + DRAIN_QUIET), l.recv()).await
        {
            if abort.is_cancelled() {
                break;
            }
            handle(&pool, &node, &mut sinks, n.payload()).await;
        }
    }
    sinks.close();
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut l = PgListener::connect_with(pool).await?;
    l.listen(CHANNEL).await?;
    Ok(l)
}

async fn pause(outage: &mut bool, backoff: &mut Duration, e: &sqlx::Error, stopping: &CancellationToken) {
    if !*outage {
        warn!(error = %e, "notifications: cannot listen to the database; retrying with backoff");
        *outage = true;
    } else {
        debug!(error = %e, "notifications: listener retry failed");
    }
    tokio::select! {
        _ = stopping.cancelled() => {}
        _ = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(30));
}

async fn handle(pool: &PgPool, node: &NodeId, sinks: &mut Sinks, payload: &str) {
    let Some(a) = parse_announcement(payload) else {
        debug!(payload, "notifications: not an event announcement");
        return;
    };
    let row = match panoptes_storage::queries::get_owned(pool, a.id, node).await {
        Ok(Some(row)) => row,
        // Another node's camera (or the event is gone).
        Ok(None) => return,
        Err(e) => {
            warn!(event = %a.id, error = %e, "notifications: cannot read the event; not published");
            metrics::counter!("panoptes_notify_lookup_errors_total").increment(1);
            return;
        }
    };
    match Notice::new(a.kind, row) {
        Ok(n) => sinks.offer(&n),
        Err(e) => warn!(event = %a.id, error = %e, "notifications: cannot serialise the event"),
    }
}
