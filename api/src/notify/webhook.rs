//! Webhooks: each event change that passes a webhook's filter is POSTed to its URL as
//! `{"type", "event"}` JSON, one delivery at a time and in order, from a bounded queue
//! (oldest dropped when full).
//!
//! Every request carries `X-Panoptes-Delivery` (the same id on every attempt, so a
//! receiver can deduplicate), `X-Panoptes-Event` (the type) and, with a secret,
//! `X-Panoptes-Signature: sha256=<hex HMAC-SHA256 of the body>`. Connection errors,
//! timeouts, 5xx and 429 are retried with exponential backoff ([`RetryPolicy`], honouring
//! `Retry-After`); other answers are final. The URL is never logged, only its origin: it
//! may hold a token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use panoptes_core::CameraId;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::payload::{Kind, Notice};
use super::queue::{DropOldest, Pushed};

/// The longest `Retry-After` honoured; a longer one is shortened to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Which event changes a webhook receives. Empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookFilter {
    /// Only these cameras.
    pub cameras: Vec<CameraId>,
    /// Only these labels.
    pub labels: Vec<String>,
    /// Only these kinds of change.
    pub types: Vec<Kind>,
    /// Only alerts.
    pub alert_only: bool,
}

impl WebhookFilter {
    pub(crate) fn accepts(&self, n: &Notice) -> bool {
        (self.cameras.is_empty() || self.cameras.contains(&n.camera))
            && (self.labels.is_empty() || self.labels.contains(&n.label))
            && (self.types.is_empty() || self.types.contains(&n.kind))
            && (!self.alert_only || n.alert)
    }
}

/// When to try a delivery again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubled after each further one.
    pub initial_backoff: Duration,
    /// The longest wait between attempts (a `Retry-After` may ask for more, up to
    /// [`MAX_RETRY_AFTER`]).
    pub max_backoff: Duration,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered.
    Status {
        /// HTTP status code.
        code: u16,
        /// Its `Retry-After`, if any and valid.
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused or reset, DNS, TLS, timeout.
    Transport,
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Done: the receiver took it.
    Delivered,
    /// Try again after this long.
    Retry(Duration),
    /// Done: failed for good, for this reason (a metric label).
    GiveUp(&'static str),
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based), without `Retry-After`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.initial_backoff.saturating_mul(1 << doublings).min(self.max_backoff)
    }

    /// Decides after attempt number `attempt` (1-based) ended with `outcome`.
    pub fn decide(&self, attempt: u32, outcome: &Outcome) -> Decision {
        let retry_after = match outcome {
            Outcome::Status { code: 200..=299, .. } => return Decision::Delivered,
            Outcome::Status { code: 429, retry_after } => *retry_after,
            Outcome::Status { code: 500..=599, retry_after } => *retry_after,
            Outcome::Status { code: 300..=399, .. } => return Decision::GiveUp("redirect"),
            Outcome::Status { .. } => return Decision::GiveUp("refused"),
            Outcome::Transport => None,
        };
        if attempt >= self.max_attempts {
            return Decision::GiveUp("attempts_exhausted");
        }
        let wait = match retry_after {
            Some(d) => d.min(MAX_RETRY_AFTER),
            None => self.backoff(attempt),
        };
        Decision::Retry(wait)
    }
}

/// Parses `Retry-After`: seconds, or an HTTP date (a date in the past means now).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(at);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `sha256=<hex HMAC-SHA256 of body keyed with secret>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// One webhook, resolved.
#[derive(Clone)]
pub struct WebhookSettings {
    /// Its name in logs and metrics.
    pub name: String,
    /// Where to POST.
    pub url: url::Url,
    /// Which changes it receives.
    pub filter: WebhookFilter,
    /// The HMAC key for `X-Panoptes-Signature`.
    pub secret: Option<String>,
    /// The longest one attempt may take.
    pub timeout: Duration,
    /// Retries.
    pub retry: RetryPolicy,
    /// Deliveries waiting at most (the oldest is dropped beyond).
    pub queue: usize,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("name", &self.name)
            .field("target", &origin(&self.url))
            .field("filter", &self.filter)
            .field("has_secret", &self.secret.is_some())
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("queue", &self.queue)
            .finish()
    }
}

/// `scheme://host:port` of a URL: what logs may show.
pub(crate) fn origin(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}

/// Counts of one webhook since start (also exported as metrics).
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Deliveries the receiver took.
    pub delivered: AtomicU64,
    /// Deliveries given up.
    pub failed: AtomicU64,
    /// Attempts after a first one.
    pub retries: AtomicU64,
    /// Deliveries dropped unsent (queue full, shutdown).
    pub dropped: AtomicU64,
}

/// A queued delivery.
#[derive(Debug)]
pub(crate) struct Delivery {
    id: Uuid,
    kind: Kind,
    body: Bytes,
}

/// The dispatcher's side of one webhook.
#[derive(Debug, Clone)]
pub(crate) struct WebhookSink {
    settings: Arc<WebhookSettings>,
    queue: Arc<DropOldest<Delivery>>,
    pub(crate) stats: Arc<WebhookStats>,
}

impl WebhookSink {
    pub(crate) fn new(settings: WebhookSettings) -> Self {
        let queue = Arc::new(DropOldest::new(settings.queue));
        WebhookSink { settings: Arc::new(settings), queue, stats: Arc::default() }
    }

    pub(crate) fn name(&self) -> &str {
        &self.settings.name
    }

    /// Queues the notice if the filter takes it; never waits.
    pub(crate) fn offer(&self, n: &Notice) {
        if !self.settings.filter.accepts(n) {
            return;
        }
        let d = Delivery { id: Uuid::now_v7(), kind: n.kind, body: n.body.clone() };
        match self.queue.push(d) {
            Pushed::Queued => {}
            Pushed::DroppedOldest(_) => self.dropped("queue_full", 1),
            Pushed::Closed(_) => self.dropped("shutdown", 1),
        }
    }

    fn dropped(&self, reason: &'static str, n: u64) {
        self.stats.dropped.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("panoptes_webhook_dropped_total", "webhook" => self.settings.name.clone(), "reason" => reason)
            .increment(n);
    }

    /// No more offers; the task delivers what is queued and ends.
    pub(crate) fn close(&self) {
        self.queue.close();
    }

    /// Delivers until the queue is closed and empty, or `abort` fires (what is left is
    /// counted as dropped).
    pub(crate) async fn run(self, client: reqwest::Client, abort: CancellationToken) {
        let mut failing = false;
        loop {
            let next = tokio::select! {
                _ = abort.cancelled() => None,
                d = self.queue.pop() => d,
            };
            let Some(d) = next else { break };
            tokio::select! {
                _ = abort.cancelled() => {
                    self.dropped("shutdown", 1);
                    break;
                }
                () = self.deliver(&client, &d, &mut failing) => {}
            }
        }
        let left = self.queue.clear();
        if left > 0 {
            self.dropped("shutdown", left as u64);
        }
    }

    async fn deliver(&self, client: &reqwest::Client, d: &Delivery, failing: &mut bool) {
        let s = &self.settings;
        let name = s.name.clone();
        let mut attempt = 1;
        loop {
            let outcome = self.attempt(client, d, attempt).await;
            let decision = s.retry.decide(attempt, &outcome.0);
            match decision {
                Decision::Delivered => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("panoptes_webhook_delivered_total", "webhook" => name).increment(1);
                    if std::mem::take(failing) {
                        info!(webhook = %s.name, target = %origin(&s.url), "webhook delivers again");
                    }
                    return;
                }
                Decision::Retry(wait) => {
                    if !*failing {
                        warn!(webhook = %s.name, target = %origin(&s.url), error = %outcome.1,
                              retry_in = ?wait, "webhook delivery failed; retrying with backoff");
                        *failing = true;
                    } else {
                        debug!(webhook = %s.name, delivery = %d.id, attempt, error = %outcome.1, "webhook retry");
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("panoptes_webhook_retries_total", "webhook" => name.clone())
                        .increment(1);
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Decision::GiveUp(reason) => {
                    if !*failing {
                        warn!(webhook = %s.name, target = %origin(&s.url), error = %outcome.1, attempts = attempt,
                              reason, "webhook delivery failed; giving up on it");
                        *failing = true;
                    } else {
                        debug!(webhook = %s.name, delivery = %d.id, attempt, reason, "webhook delivery given up");
                    }
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("panoptes_webhook_failed_total", "webhook" => name, "reason" => reason)
                        .increment(1);
                    return;
                }
            }
        }
    }

    /// One POST; the outcome and a description of it for logs.
    async fn attempt(&self, client: &reqwest::Client, d: &Delivery, attempt: u32) -> (Outcome, String) {
        let s = &self.settings;
        let mut req = client
            .post(s.url.clone())
            .timeout(s.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Panoptes-Delivery", d.id.to_string())
            .header("X-Panoptes-Event", d.kind.as_str())
            .header("X-Panoptes-Attempt", attempt.to_string())
            .body(d.body.clone());
        if let Some(secret) = &s.secret {
            req = req.header("X-Panoptes-Signature", signature(secret.as_bytes(), &d.body));
        }
        match req.send().await {
            Ok(resp) => {
                let code = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                (Outcome::Status { code, retry_after }, format!("HTTP {code}"))
            }
            // Never the URL: it may hold a token.
            Err(e) => (Outcome::Transport, describe(e)),
        }
    }
}

/// A transport error for logs, without its URL (it may hold a token).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = if e.is_timeout() { "timed out".to_owned() } else { e.to_string() };
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(3),
        }
    }

    fn status(code: u16) -> Outcome {
        Outcome::Status { code, retry_after: None }
    }

    #[test]
    fn success_is_final_and_other_4xx_are_not_retried() {
        let p = policy();
        assert_eq!(p.decide(1, &status(200)), Decision::Delivered);
        assert_eq!(p.decide(3, &status(204)), Decision::Delivered);
        for code in [400, 401, 403, 404, 410, 422] {
            assert_eq!(p.decide(1, &status(code)), Decision::GiveUp("refused"), "{code}");
        }
        assert_eq!(p.decide(1, &status(301)), Decision::GiveUp("redirect"));
    }

    #[test]
    fn transport_errors_5xx_and_429_back_off_exponentially_up_to_the_cap() {
        let p = policy();
        assert_eq!(p.decide(1, &Outcome::Transport), Decision::Retry(Duration::from_secs(1)));
        assert_eq!(p.decide(2, &status(500)), Decision::Retry(Duration::from_secs(2)));
        assert_eq!(p.decide(3, &status(503)), Decision::Retry(Duration::from_secs(3)));
        assert_eq!(p.decide(4, &status(429)), Decision::GiveUp("attempts_exhausted"));
        assert_eq!(p.backoff(100), Duration::from_secs(3));
        let one = RetryPolicy { max_attempts: 1, ..p };
        assert_eq!(one.decide(1, &status(502)), Decision::GiveUp("attempts_exhausted"));
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_limit() {
        let p = policy();
        let ra = |secs| Outcome::Status { code: 429, retry_after: Some(Duration::from_secs(secs)) };
        assert_eq!(p.decide(1, &ra(30)), Decision::Retry(Duration::from_secs(30)));
        assert_eq!(p.decide(1, &ra(0)), Decision::Retry(Duration::ZERO));
        assert_eq!(p.decide(1, &ra(86_400)), Decision::Retry(MAX_RETRY_AFTER));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21T07:28:00Z
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn filters_take_cameras_labels_types_and_alerts() -> Result<(), Box<dyn std::error::Error>> {
        let row = super::super::payload::tests::row("gate", "car", 0, None);
        let n = Notice::new(Kind::New, row)?;
        let mut f = WebhookFilter::default();
        assert!(f.accepts(&n));
        f.cameras = vec![CameraId::new("door")?];
        assert!(!f.accepts(&n));
        f.cameras.push(CameraId::new("gate")?);
        assert!(f.accepts(&n));
        f.labels = vec!["person".into()];
        assert!(!f.accepts(&n));
        f.labels.push("car".into());
        f.types = vec![Kind::End];
        assert!(!f.accepts(&n));
        f.types.push(Kind::New);
        f.alert_only = true;
        assert!(f.accepts(&n));
        let mut quiet = super::super::payload::tests::row("gate", "car", 0, None);
        quiet.alert = false;
        assert!(!f.accepts(&Notice::new(Kind::New, quiet)?), "not an alert");
        Ok(())
    }

    #[test]
    fn debug_hides_the_url_path_and_the_secret() -> Result<(), url::ParseError> {
        let s = WebhookSettings {
            name: "ha".into(),
            url: url::Url::parse("https://ha.local:8123/api/webhook/s3cr3t-id")?,
            filter: WebhookFilter::default(),
            secret: Some("hunter2".into()),
            timeout: Duration::from_secs(5),
            retry: policy(),
            queue: 10,
        };
        let text = format!("{s:?}");
        assert!(
            text.contains("https://ha.local:8123") && !text.contains("s3cr3t") && !text.contains("hunter2")
        );
        Ok(())
    }
}
