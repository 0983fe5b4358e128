//! The configuration file: TOML, every field documented with its default, validated once
//! at start with errors that name the field's path.
//!
//! Unknown fields are errors, like `deny_unknown_fields`, but all of them are reported at
//! once (through `serde_ignored`) together with every invalid value, so that one run of
//! `panoptes check-config` lists every problem. Secrets are never in the file: passwords
//! and tokens come from environment variables (`*_env`) or files (`*_file`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use panoptes_core::{CameraId, NodeId, StreamRole};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

/// The environment variable that overrides `database.url`.
pub const DATABASE_URL_ENV: &str = "PANOPTES_DATABASE_URL";

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Config {
    /// HTTP server, data directory and node identity.
    pub server: ServerConfig,
    /// PostgreSQL: an external server, or a private cluster under the data directory.
    pub database: DatabaseConfig,
    /// Logging.
    pub log: LogConfig,
    /// How long recordings are kept (per-camera overrides in `[[cameras]]`).
    pub retention: RetentionConfig,
    /// Object and face detection on each camera's detect stream.
    pub analytics: AnalyticsSettings,
    /// Publishing events, object counts, camera status and availability to an MQTT broker.
    pub mqtt: MqttConfig,
    /// HTTP endpoints that receive events (`[[webhooks]]` tables).
    pub webhooks: Vec<WebhookConfig>,
    /// The cameras (`[[cameras]]` tables).
    pub cameras: Vec<CameraConfig>,
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ServerConfig {
    /// Address and port the HTTP server listens on.
    pub listen: String,
    /// Directory for recordings, snapshots and the private PostgreSQL cluster.
    pub data_dir: PathBuf,
    /// This node's id in a multi-node installation (lowercase letters, digits, `-`, `_`).
    /// Empty means the host name.
    pub node_id: String,
    /// Environment variable holding the bearer token that `/metrics` requires.
    /// Without a token (here or in `metrics_token_file`) `/metrics` is disabled.
    pub metrics_token_env: Option<String>,
    /// File holding the bearer token that `/metrics` requires.
    pub metrics_token_file: Option<PathBuf>,
    /// Seconds a graceful shutdown may take before the process exits anyway.
    pub shutdown_timeout_secs: u64,
    /// Mark the session cookie `Secure`: set when browsers reach Panoptes over HTTPS
    /// (directly or through a proxy).
    pub secure_cookies: bool,
    /// UDP address of the WebRTC live relay (WHEP): every viewer shares this one socket
    /// and port. Empty switches UDP off; with `webrtc_tcp` empty too, live view is off.
    pub webrtc_udp: String,
    /// TCP address of the WebRTC live relay, for browsers on networks that block UDP (ICE
    /// over TCP: passive host candidates, RFC 4571 framing), e.g. `0.0.0.0:8189` (TCP and
    /// UDP ports are separate, so it may be the UDP port's number). Empty (the default)
    /// means no TCP. With both set, browsers get both candidates and prefer UDP.
    pub webrtc_tcp: String,
    /// IP addresses given to browsers as the relay's ICE candidates, with the port of
    /// `webrtc_udp` and of `webrtc_tcp` (e.g. the public address behind NAT with those
    /// ports forwarded). Empty means the bound address, or 127.0.0.1 and the default
    /// route's address when bound to 0.0.0.0.
    pub webrtc_advertise: Vec<String>,
    /// Directory of the built web UI (`index.html` and assets), served at `/`. A relative
    /// path is taken from the working directory. Without an `index.html` there, only the
    /// API is served (and a warning says so).
    pub ui_dir: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("/var/lib/panoptes"),
            node_id: String::new(),
            metrics_token_env: None,
            metrics_token_file: None,
            shutdown_timeout_secs: 30,
            secure_cookies: false,
            webrtc_udp: "0.0.0.0:8189".into(),
            webrtc_tcp: String::new(),
            webrtc_advertise: Vec::new(),
            ui_dir: PathBuf::from("web-ui/dist"),
        }
    }
}

/// `[database]`
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct DatabaseConfig {
    /// PostgreSQL URL (`postgres://user@host:port/db`), without password. The environment
    /// variable `PANOPTES_DATABASE_URL` overrides it. Empty (the default) runs a private
    /// cluster under `<data_dir>/postgres`.
    pub url: String,
    /// Environment variable holding the database password.
    pub password_env: Option<String>,
    /// File holding the database password.
    pub password_file: Option<PathBuf>,
    /// Size of the connection pool.
    pub max_connections: u32,
    /// Seconds to keep retrying at start before giving up on an unreachable server.
    pub connect_timeout_secs: u64,
    /// The private cluster, used when no URL is given.
    pub embedded: EmbeddedDatabaseConfig,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: String::new(),
            password_env: None,
            password_file: None,
            max_connections: 10,
            connect_timeout_secs: 60,
            embedded: EmbeddedDatabaseConfig::default(),
        }
    }
}

/// `[database.embedded]`
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct EmbeddedDatabaseConfig {
    /// Directory with PostgreSQL's `initdb` and `pg_ctl`. Empty means the newest
    /// `/usr/lib/postgresql/<version>/bin`, else the `PATH`.
    pub bin_dir: Option<PathBuf>,
    /// System user that runs the cluster when Panoptes runs as root.
    pub system_user: String,
}

impl Default for EmbeddedDatabaseConfig {
    fn default() -> Self {
        EmbeddedDatabaseConfig { bin_dir: None, system_user: "postgres".into() }
    }
}

/// `[analytics]`
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct AnalyticsSettings {
    /// Run detection at all.
    pub enabled: bool,
    /// Model ids from `models/manifest.toml` to run on every detect stream.
    pub models: Vec<String>,
    /// Execution provider: `cpu`, `cuda`, `tensorrt` or `auto` (GPU falls back to CPU, logged).
    pub provider: String,
    /// Threads per inference.
    pub threads: usize,
    /// Inferences running at once across all cameras.
    pub parallel: usize,
    /// Your own models: a manifest file in the format of `models/manifest.toml` (ONNX file
    /// paths relative to it; YOLOv5/v8, NanoDet, CenterNet and CenterFace output layouts).
    /// Its ids can then be listed in `models`.
    pub manifest_file: Option<PathBuf>,
    /// Labels kept (others are dropped before tracking). Empty keeps every label the models
    /// know. Vehicle classes stay apart: a bus is never a car.
    pub labels: Vec<String>,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        AnalyticsSettings {
            enabled: true,
            models: vec!["nanodet".into(), "centerface".into()],
            provider: "auto".into(),
            threads: 1,
            parallel: 1,
            manifest_file: None,
            labels: ["person", "face", "bicycle", "car", "motorcycle", "bus", "truck"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// `[mqtt]`: events, active-object counts, camera status and availability published to an
/// MQTT broker (topics in `docs/integrations.md`). Only this node's cameras are published.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct MqttConfig {
    /// Publish to MQTT at all.
    pub enabled: bool,
    /// Broker host name or IP address (no `mqtt://`).
    pub host: String,
    /// Broker port (8883 is usual with `tls`).
    pub port: u16,
    /// Client id; brokers need it unique. Empty means `panoptes-<node id>`.
    pub client_id: String,
    /// First level of every topic: `<prefix>/events`, `<prefix>/<camera>/status`, …
    pub topic_prefix: String,
    /// User name at the broker.
    pub username: Option<String>,
    /// Environment variable holding the broker password.
    pub password_env: Option<String>,
    /// File holding the broker password.
    pub password_file: Option<PathBuf>,
    /// Quality of service of every message: 0, 1 or 2.
    pub qos: u8,
    /// Connect with TLS, trusting the system's CAs and `ca_file`.
    pub tls: bool,
    /// PEM file with the CA that signed the broker's certificate (needs `tls`).
    pub ca_file: Option<PathBuf>,
    /// Seconds between keep-alive pings.
    pub keep_alive_secs: u64,
    /// Messages kept while the broker is unreachable; beyond it the oldest are dropped
    /// (counted in `panoptes_mqtt_dropped_total`).
    pub queue: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: String::new(),
            topic_prefix: "panoptes".into(),
            username: None,
            password_env: None,
            password_file: None,
            qos: 1,
            tls: false,
            ca_file: None,
            keep_alive_secs: 30,
            queue: 1000,
        }
    }
}

/// `[[webhooks]]`: each event change that passes the filters is POSTed as JSON, retried with
/// exponential backoff on connection errors, 5xx and 429 (see `docs/integrations.md`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct WebhookConfig {
    /// Name in logs and metrics (lowercase letters, digits, `-`, `_`). Empty means
    /// `webhook-<n>`, n counting from 1.
    pub name: String,
    /// URL to POST to (`http://` or `https://`, no password). Only its origin is logged.
    pub url: String,
    /// Only events of these cameras. Empty means every camera.
    pub cameras: Vec<String>,
    /// Only events with these labels. Empty means every label.
    pub labels: Vec<String>,
    /// Only these changes: any of `new`, `update`, `end`, `review`. Empty means all.
    pub types: Vec<String>,
    /// Only events that are alerts (the camera's `alerts` rules accept them).
    pub alert_only: bool,
    /// Environment variable holding the secret that signs each body
    /// (`X-Panoptes-Signature: sha256=<hex HMAC-SHA256>`).
    pub secret_env: Option<String>,
    /// File holding the signing secret.
    pub secret_file: Option<PathBuf>,
    /// Seconds one attempt may take.
    pub timeout_secs: f64,
    /// Attempts per delivery, the first included.
    pub max_attempts: u32,
    /// Seconds to wait after the first failed attempt; doubled after each further one.
    pub backoff_secs: f64,
    /// Longest wait between attempts, in seconds (a receiver's `Retry-After` is honoured
    /// up to 600).
    pub max_backoff_secs: f64,
    /// Deliveries waiting at most; beyond it the oldest are dropped (counted in
    /// `panoptes_webhook_dropped_total`).
    pub queue: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            name: String::new(),
            url: String::new(),
            cameras: Vec::new(),
            labels: Vec::new(),
            types: Vec::new(),
            alert_only: false,
            secret_env: None,
            secret_file: None,
            timeout_secs: 10.0,
            max_attempts: 5,
            backoff_secs: 1.0,
            max_backoff_secs: 60.0,
            queue: 1000,
        }
    }
}

/// `[retention]`: recordings are deleted by age and by size, whichever comes first, and
/// whenever free disk space falls under the floor. Segments that an unreviewed alert or a
/// legal hold needs are kept, unless only deleting them keeps the disk above the floor.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RetentionConfig {
    /// Days of recordings kept per camera (0: no age limit).
    pub max_days: u32,
    /// Gigabytes of recordings kept per camera (0: no size limit).
    pub max_gb: f64,
    /// Gigabytes that must stay free on the recordings' disk.
    pub min_free_gb: f64,
    /// Seconds between retention passes.
    pub interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { max_days: 30, max_gb: 0.0, min_free_gb: 5.0, interval_secs: 60 }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct LogConfig {
    /// Filter in `RUST_LOG` syntax (e.g. `info,panoptes_camera_gateway=debug`). The
    /// environment variable `RUST_LOG` overrides it.
    pub filter: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { filter: "info,sqlx=warn".into(), format: LogFormat::Text }
    }
}

/// Which decoder a camera's detect stream uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecoderChoice {
    /// Try `cuda`, then `vaapi`, then `cpu`.
    #[default]
    Auto,
    /// NVIDIA NVDEC.
    Cuda,
    /// VA-API (Intel, AMD).
    Vaapi,
    /// Software decoding.
    Cpu,
}

/// RTP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransportChoice {
    /// RTP interleaved in the RTSP TCP connection.
    #[default]
    Tcp,
    /// RTP over UDP (clean LANs only).
    Udp,
}

/// `[[cameras]]`
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct CameraConfig {
    /// Stable id: lowercase letters, digits, `-`, `_` (used in paths, URLs, metrics).
    pub id: String,
    /// Display name. Empty means the id.
    pub name: String,
    /// Whether the camera is connected at all.
    pub enabled: bool,
    /// Decoder for the detect stream: `auto`, `cuda`, `vaapi` or `cpu`.
    pub decoder: DecoderChoice,
    /// Frames per second decoded for analytics.
    pub detect_fps: f64,
    /// Width the detect stream is scaled to for analytics, in pixels.
    pub detect_width: u32,
    /// Height the detect stream is scaled to for analytics, in pixels.
    pub detect_height: u32,
    /// This camera's analytics: `motion`, `tracker`, `zones`, `lines`, `alerts` (see "Camera
    /// analytics" above the reference).
    #[schemars(with = "std::collections::BTreeMap<String, serde_json::Value>")]
    pub analytics: toml::Table,
    /// Days of this camera's recordings to keep; overrides `retention.max_days`.
    pub retention_days: Option<u32>,
    /// Gigabytes of this camera's recordings to keep; overrides `retention.max_gb`.
    pub retention_gb: Option<f64>,
    /// The camera's streams (`[[cameras.streams]]`), e.g. a `main` and a `sub` stream.
    pub streams: Vec<StreamConfig>,
}

impl Default for CameraConfig {
    fn default() -> Self {
        CameraConfig {
            id: String::new(),
            name: String::new(),
            enabled: true,
            decoder: DecoderChoice::Auto,
            detect_fps: 5.0,
            detect_width: 640,
            detect_height: 360,
            analytics: toml::Table::new(),
            retention_days: None,
            retention_gb: None,
            streams: Vec::new(),
        }
    }
}

/// `[[cameras.streams]]`
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct StreamConfig {
    /// Stream name within the camera, e.g. `main` or `sub`.
    pub name: String,
    /// RTSP URL (`rtsp://host:port/path`), without password.
    pub url: String,
    /// What the stream serves: any of `record`, `live`, `grid`, `detect`.
    pub roles: Vec<StreamRole>,
    /// RTP transport: `tcp` or `udp`.
    pub transport: TransportChoice,
    /// User name for the camera (digest or basic auth).
    pub username: Option<String>,
    /// Environment variable holding the camera password.
    pub password_env: Option<String>,
    /// File holding the camera password.
    pub password_file: Option<PathBuf>,
    /// Seconds each of DESCRIBE, SETUP and PLAY may take.
    pub request_timeout_secs: f64,
    /// Seconds without a frame before the session is restarted.
    pub watchdog_secs: f64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            name: "main".into(),
            url: String::new(),
            roles: vec![StreamRole::Record, StreamRole::Live, StreamRole::Grid, StreamRole::Detect],
            transport: TransportChoice::Tcp,
            username: None,
            password_env: None,
            password_file: None,
            request_timeout_secs: 10.0,
            watchdog_secs: 5.0,
        }
    }
}

/// One problem in a configuration, with the path of the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path, e.g. `cameras[0].streams[1].url`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration could not be used.
#[derive(Debug)]
pub struct ConfigError {
    /// The file, if it came from one.
    pub file: Option<PathBuf>,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        match &self.file {
            Some(p) => write!(f, "{}: {n} problem{}", p.display(), if n == 1 { "" } else { "s" })?,
            None => write!(f, "configuration: {n} problem{}", if n == 1 { "" } else { "s" })?,
        }
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A secret's source: where to read it from.
fn read_secret(
    env_name: Option<&String>,
    file: Option<&PathBuf>,
    (env_path, file_path): (&str, &str),
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    let mut push = |field: &str, message: String| {
        problems.push(Problem { path: field.to_owned(), message });
    };
    match (env_name, file) {
        (Some(_), Some(_)) => {
            push(env_path, "give either an environment variable or a file, not both".into());
            None
        }
        (Some(var), None) => match env(var) {
            Some(v) if !v.is_empty() => Some(v),
            Some(_) => {
                push(env_path, format!("environment variable {var} is empty"));
                None
            }
            None => {
                push(env_path, format!("environment variable {var} is not set"));
                None
            }
        },
        (None, Some(f)) => match std::fs::read_to_string(f) {
            Ok(s) if !s.trim_end_matches(['\r', '\n']).is_empty() => {
                Some(s.trim_end_matches(['\r', '\n']).to_owned())
            }
            Ok(_) => {
                push(file_path, format!("{} is empty", f.display()));
                None
            }
            Err(e) => {
                push(file_path, format!("cannot read {}: {e}", f.display()));
                None
            }
        },
        (None, None) => None,
    }
}

/// A camera stream, resolved and checked: ready for the gateway.
#[derive(Clone, PartialEq)]
pub struct ResolvedStream {
    /// Name within the camera.
    pub name: String,
    /// URL without credentials.
    pub url: Url,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// Roles.
    pub roles: Vec<StreamRole>,
    /// Transport.
    pub transport: TransportChoice,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// No-frame watchdog.
    pub watchdog: Duration,
}

impl fmt::Debug for ResolvedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedStream")
            .field("name", &self.name)
            .field("url", &panoptes_core::redact(&self.url))
            .field("has_credentials", &self.credentials.is_some())
            .finish_non_exhaustive()
    }
}

/// A camera, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedCamera {
    /// Id.
    pub id: CameraId,
    /// Display name.
    pub name: String,
    /// Whether it runs.
    pub enabled: bool,
    /// Decoder choice for the detect stream.
    pub decoder: DecoderChoice,
    /// Detect frame rate.
    pub detect_fps: f64,
    /// Detect frame size (width, height).
    pub detect_size: (u32, u32),
    /// Analytics settings (motion gate, tracker rules, zones, counting lines).
    pub analytics: panoptes_analytics::pipeline::CameraAnalyticsConfig,
    /// Its streams.
    pub streams: Vec<ResolvedStream>,
    /// Its `[[cameras]]` table as JSON without credentials (what the database records).
    pub definition: serde_json::Value,
}

/// Where the database is.
#[derive(Clone)]
pub enum DatabaseTarget {
    /// An external server.
    External {
        /// Parsed URL (password injected, if any).
        options: Box<panoptes_storage::PgConnectOptions>,
    },
    /// The private cluster.
    Embedded {
        /// Options for it.
        options: panoptes_storage::cluster::ClusterOptions,
    },
}

impl fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseTarget::External { options } => {
                write!(f, "External({})", panoptes_storage::db::describe(options))
            }
            DatabaseTarget::Embedded { options } => {
                write!(f, "Embedded({})", options.dir.display())
            }
        }
    }
}

/// A configuration that passed validation, with secrets resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file as written (without secrets).
    pub config: Config,
    /// Listen address.
    pub listen: SocketAddr,
    /// This node's id.
    pub node_id: NodeId,
    /// `/metrics` bearer token.
    pub metrics_token: Option<String>,
    /// The WebRTC relay's UDP address (none: no UDP).
    pub webrtc_udp: Option<SocketAddr>,
    /// The WebRTC relay's TCP address (none: no ICE over TCP). Live view is off when
    /// neither is set.
    pub webrtc_tcp: Option<SocketAddr>,
    /// IPs advertised as ICE candidates.
    pub webrtc_advertise: Vec<std::net::IpAddr>,
    /// Database.
    pub database: DatabaseTarget,
    /// MQTT and webhooks (secrets resolved).
    pub notify: panoptes_api::notify::NotifyConfig,
    /// Cameras.
    pub cameras: Vec<ResolvedCamera>,
}

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: Some(path.to_owned()),
        problems: vec![Problem { path: "(file)".into(), message: format!("cannot read: {e}") }],
    })?;
    let env = |k: &str| std::env::var(k).ok();
    from_str(&text, &env).map_err(|mut e| {
        e.file = Some(path.to_owned());
        // Relative secret files are relative to the process, as in every other tool.
        e
    })
}

/// Parses and validates configuration text; `env` looks up environment variables.
pub fn from_str(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
    let mut problems = Vec::new();
    let config = parse(text, &mut problems);
    let settings = config.and_then(|c| validate(c, env, &mut problems));
    match settings {
        Some(s) if problems.is_empty() => Ok(s),
        _ => Err(ConfigError { file: None, problems }),
    }
}

fn parse(text: &str, problems: &mut Vec<Problem>) -> Option<Config> {
    let de = match toml::Deserializer::parse(text) {
        Ok(de) => de,
        Err(e) => {
            problems.push(Problem { path: "(syntax)".into(), message: e.to_string().trim().to_owned() });
            return None;
        }
    };
    let mut unknown = Vec::new();
    let result: Result<Config, _> = serde_ignored::deserialize(de, |p| unknown.push(field_path(&p)));
    for path in unknown {
        problems.push(Problem { path, message: "unknown field".into() });
    }
    match result {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(Problem { path: "(value)".into(), message: e.to_string().trim().to_owned() });
            None
        }
    }
}

/// Formats a `serde_ignored` path as `a.b[0].c`.
fn field_path(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match p {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        P::Map { parent, key } => {
            let head = field_path(parent);
            if head.is_empty() { key.clone() } else { format!("{head}.{key}") }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => field_path(parent),
    }
}

fn validate(
    config: Config,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) -> Option<Settings> {
    let mut push = |path: &str, message: String| problems.push(Problem { path: path.into(), message });

    let listen = match config.server.listen.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            push(
                "server.listen",
                format!("{:?} is not an address:port such as 127.0.0.1:8080", config.server.listen),
            );
            None
        }
    };
    let node_raw = if config.server.node_id.is_empty() {
        hostname().to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_', "-")
    } else {
        config.server.node_id.clone()
    };
    let node_id = match NodeId::new(node_raw) {
        Ok(n) => Some(n),
        Err(e) => {
            push("server.node_id", e.to_string());
            None
        }
    };
    let r = &config.retention;
    for (field, v) in [("retention.max_gb", r.max_gb), ("retention.min_free_gb", r.min_free_gb)] {
        if !(v.is_finite() && v >= 0.0) {
            push(field, format!("{v} is not a size in GB (0 or more)"));
        }
    }
    if !matches!(config.analytics.provider.as_str(), "cpu" | "cuda" | "tensorrt" | "auto") {
        push(
            "analytics.provider",
            format!("{:?} is not cpu, cuda, tensorrt or auto", config.analytics.provider),
        );
    }
    if r.interval_secs == 0 {
        push("retention.interval_secs", "must be at least 1".into());
    }
    let mut relay_addr = |field: &str, text: &str| -> Option<SocketAddr> {
        if text.is_empty() {
            return None;
        }
        let parsed = text.parse::<SocketAddr>();
        if parsed.is_err() {
            push(field, format!("{text:?} is not an address:port such as 0.0.0.0:8189"));
        }
        parsed.ok()
    };
    let webrtc_udp = relay_addr("server.webrtc_udp", &config.server.webrtc_udp);
    let webrtc_tcp = relay_addr("server.webrtc_tcp", &config.server.webrtc_tcp);
    let mut webrtc_advertise = Vec::new();
    for (i, ip) in config.server.webrtc_advertise.iter().enumerate() {
        match ip.parse::<std::net::IpAddr>() {
            Ok(a) if !a.is_unspecified() => webrtc_advertise.push(a),
            _ => push(&format!("server.webrtc_advertise[{i}]"), format!("{ip:?} is not a usable IP address")),
        }
    }
    if config.server.shutdown_timeout_secs == 0 {
        push("server.shutdown_timeout_secs", "must be at least 1".into());
    }
    let metrics_token = read_secret(
        config.server.metrics_token_env.as_ref(),
        config.server.metrics_token_file.as_ref(),
        ("server.metrics_token_env", "server.metrics_token_file"),
        env,
        problems,
    );
    let mut push = |path: &str, message: String| problems.push(Problem { path: path.into(), message });

    // Database.
    let db = &config.database;
    if db.max_connections == 0 {
        push("database.max_connections", "must be at least 1".into());
    }
    let url_from_env = env(DATABASE_URL_ENV).filter(|u| !u.is_empty());
    let (url_text, url_path) = match &url_from_env {
        Some(u) => (u.clone(), DATABASE_URL_ENV.to_owned()),
        None => (db.url.clone(), "database.url".to_owned()),
    };
    let db_password = read_secret(
        db.password_env.as_ref(),
        db.password_file.as_ref(),
        ("database.password_env", "database.password_file"),
        env,
        problems,
    );
    let database = if url_text.is_empty() {
        Some(DatabaseTarget::Embedded {
            options: panoptes_storage::cluster::ClusterOptions {
                dir: config.server.data_dir.join("postgres"),
                bin_dir: db.embedded.bin_dir.clone(),
                system_user: db.embedded.system_user.clone(),
            },
        })
    } else {
        check_database_url(&url_text, &url_path, db_password, problems)
    };

    let notify = node_id.as_ref().map(|node| resolve_notify(&config, node, env, problems));

    // Cameras.
    let mut cameras = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, cam) in config.cameras.iter().enumerate() {
        let base = format!("cameras[{i}]");
        if CameraId::new(cam.id.clone()).is_ok_and(|id| !seen.insert(id)) {
            problems.push(Problem {
                path: format!("{base}.id"),
                message: format!("duplicate camera id {:?}", cam.id),
            });
        }
        if let Some(c) = resolve_camera(cam, &base, env, &BTreeMap::new(), problems) {
            cameras.push(c);
        }
    }

    Some(Settings {
        listen: listen?,
        node_id: node_id?,
        metrics_token,
        webrtc_udp,
        webrtc_tcp,
        webrtc_advertise,
        database: database?,
        notify: notify?,
        cameras,
        config,
    })
}

/// `[mqtt]` and `[[webhooks]]`, checked, with their secrets.
fn resolve_notify(
    config: &Config,
    node: &NodeId,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) -> panoptes_api::notify::NotifyConfig {
    use panoptes_api::notify::{
        Kind, MqttSettings, NotifyConfig, RetryPolicy, WebhookFilter, WebhookSettings,
    };
    let m = &config.mqtt;
    let password = read_secret(
        m.password_env.as_ref(),
        m.password_file.as_ref(),
        ("mqtt.password_env", "mqtt.password_file"),
        env,
        problems,
    );
    let mut mqtt = None;
    if m.enabled {
        let mut found = Vec::new();
        let mut push = |path: &str, message: String| found.push(Problem { path: path.into(), message });
        if m.host.is_empty() || m.host.contains("://") || m.host.contains(char::is_whitespace) {
            push("mqtt.host", format!("{:?} is not a host name or address (no scheme, no port)", m.host));
        }
        if m.port == 0 {
            push("mqtt.port", "must be 1 to 65535".into());
        }
        let p = &m.topic_prefix;
        if p.is_empty() || p.starts_with('/') || p.ends_with('/') || p.contains(['+', '#', '\0']) {
            push(
                "mqtt.topic_prefix",
                format!("{p:?} must be non-empty, without + # or a leading or trailing /"),
            );
        }
        if m.qos > 2 {
            push("mqtt.qos", format!("{} is not 0, 1 or 2", m.qos));
        }
        if !(5..=3600).contains(&m.keep_alive_secs) {
            push("mqtt.keep_alive_secs", format!("{} is not within [5, 3600]", m.keep_alive_secs));
        }
        if m.queue == 0 {
            push("mqtt.queue", "must be at least 1".into());
        }
        if m.ca_file.is_some() && !m.tls {
            push("mqtt.ca_file", "is only used with tls = true".into());
        }
        let credentials = match (&m.username, password) {
            (Some(u), p) => Some((u.clone(), p.unwrap_or_default())),
            (None, Some(_)) => {
                push("mqtt.username", "a password is given but no username".into());
                None
            }
            (None, None) => None,
        };
        let client_id = if m.client_id.is_empty() { format!("panoptes-{node}") } else { m.client_id.clone() };
        if found.is_empty() {
            mqtt = Some(MqttSettings {
                host: m.host.clone(),
                port: m.port,
                client_id,
                topic_prefix: m.topic_prefix.clone(),
                credentials,
                qos: m.qos,
                tls: m.tls.then(|| m.ca_file.clone()),
                keep_alive: Duration::from_secs(m.keep_alive_secs),
                queue: m.queue,
            });
        }
        problems.extend(found);
    }

    let mut webhooks = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, w) in config.webhooks.iter().enumerate() {
        let base = format!("webhooks[{i}]");
        let secret = read_secret(
            w.secret_env.as_ref(),
            w.secret_file.as_ref(),
            (&format!("{base}.secret_env"), &format!("{base}.secret_file")),
            env,
            problems,
        );
        let before = problems.len();
        let mut push = |field: &str, message: String| {
            problems.push(Problem { path: format!("{base}.{field}"), message })
        };
        let name = if w.name.is_empty() { format!("webhook-{}", i + 1) } else { w.name.clone() };
        if CameraId::new(name.clone()).is_err() {
            push("name", format!("{name:?} must be 1 to 64 of a-z, 0-9, '-', '_'"));
        } else if !names.insert(name.clone()) {
            push("name", format!("duplicate webhook name {name:?}"));
        }
        let url = match Url::parse(&w.url) {
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                push("url", format!("scheme {:?} is not http:// or https://", u.scheme()));
                None
            }
            Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                push("url", "has no host".into());
                None
            }
            Ok(u) if u.password().is_some() => {
                push("url", "must not contain a password: sign with secret_env or secret_file".into());
                None
            }
            Ok(u) => Some(u),
            // Never echo the text: it may hold a token.
            Err(e) => {
                push("url", format!("not a URL ({e}); expected https://host/path"));
                None
            }
        };
        let mut filter = WebhookFilter { alert_only: w.alert_only, ..WebhookFilter::default() };
        for (j, c) in w.cameras.iter().enumerate() {
            match CameraId::new(c.clone()) {
                Ok(c) => filter.cameras.push(c),
                Err(e) => push(&format!("cameras[{j}]"), format!("{c:?}: {e}")),
            }
        }
        for (j, l) in w.labels.iter().enumerate() {
            if panoptes_storage::events::Label::new(l.clone()).is_err() {
                push(
                    &format!("labels[{j}]"),
                    format!("{l:?} is not a label (a-z, 0-9, '_', starting with a letter)"),
                );
            } else {
                filter.labels.push(l.clone());
            }
        }
        for (j, t) in w.types.iter().enumerate() {
            match Kind::parse(t) {
                Some(k) => filter.types.push(k),
                None => push(&format!("types[{j}]"), format!("{t:?} is not new, update, end or review")),
            }
        }
        if !(w.timeout_secs > 0.0 && w.timeout_secs <= 300.0) {
            push("timeout_secs", format!("{} is not within (0, 300]", w.timeout_secs));
        }
        if !(1..=100).contains(&w.max_attempts) {
            push("max_attempts", format!("{} is not within [1, 100]", w.max_attempts));
        }
        if !(w.backoff_secs > 0.0 && w.backoff_secs <= 3600.0) {
            push("backoff_secs", format!("{} is not within (0, 3600]", w.backoff_secs));
        }
        if !(w.max_backoff_secs >= w.backoff_secs && w.max_backoff_secs <= 3600.0) {
            push("max_backoff_secs", format!("{} is not within [backoff_secs, 3600]", w.max_backoff_secs));
        }
        if w.queue == 0 {
            push("queue", "must be at least 1".into());
        }
        if let (Some(url), true) = (url, problems.len() == before) {
            webhooks.push(WebhookSettings {
                name,
                url,
                filter,
                secret,
                timeout: Duration::from_secs_f64(w.timeout_secs),
                retry: RetryPolicy {
                    max_attempts: w.max_attempts,
                    initial_backoff: Duration::from_secs_f64(w.backoff_secs),
                    max_backoff: Duration::from_secs_f64(w.max_backoff_secs),
                },
                queue: w.queue,
            });
        }
    }
    NotifyConfig { node: node.clone(), mqtt, webhooks }
}

/// The definition of a camera as stored in the database: its `[[cameras]]` table as JSON,
/// without user names, passwords or where passwords come from.
fn definition_of(cam: &CameraConfig) -> serde_json::Value {
    let mut v = serde_json::to_value(cam).unwrap_or_default();
    if let Some(streams) = v.get_mut("streams").and_then(|s| s.as_array_mut()) {
        for s in streams.iter_mut().filter_map(|s| s.as_object_mut()) {
            for k in ["username", "password_env", "password_file"] {
                s.remove(k);
            }
            // A user name in the URL is a credential too (a password there is refused).
            if let Some(url) = s.get_mut("url")
                && let Some(mut u) = url.as_str().and_then(|t| Url::parse(t).ok())
                && !u.username().is_empty()
            {
                let _ = u.set_username("");
                *url = serde_json::Value::String(u.to_string());
            }
        }
    }
    v
}

/// Resolves and checks one camera; `given` holds logins by stream name (cameras defined
/// through the API), which take the place of `username` and `password_env`/`password_file`.
fn resolve_camera(
    cam: &CameraConfig,
    base: &str,
    env: &dyn Fn(&str) -> Option<String>,
    given: &BTreeMap<String, panoptes_storage::cameras::Credentials>,
    problems: &mut Vec<Problem>,
) -> Option<ResolvedCamera> {
    let id = match CameraId::new(cam.id.clone()) {
        Ok(id) => Some(id),
        Err(e) => {
            problems.push(Problem { path: format!("{base}.id"), message: format!("{:?}: {e}", cam.id) });
            None
        }
    };
    if !(cam.detect_fps > 0.0 && cam.detect_fps <= 60.0) {
        problems.push(Problem {
            path: format!("{base}.detect_fps"),
            message: format!("{} is not within (0, 60]", cam.detect_fps),
        });
    }
    for (field, v) in [("detect_width", cam.detect_width), ("detect_height", cam.detect_height)] {
        if !(16..=4096).contains(&v) || v % 2 != 0 {
            problems.push(Problem {
                path: format!("{base}.{field}"),
                message: format!("{v} is not an even number within [16, 4096]"),
            });
        }
    }
    let analytics = match panoptes_analytics::pipeline::CameraAnalyticsConfig::deserialize(
        toml::Value::Table(cam.analytics.clone()),
    ) {
        Ok(a) => {
            if let Err(e) = a.validate() {
                problems.push(Problem { path: format!("{base}.analytics"), message: e.to_string() });
            }
            a
        }
        Err(e) => {
            problems.push(Problem {
                path: format!("{base}.analytics"),
                message: e.to_string().trim().to_owned(),
            });
            Default::default()
        }
    };
    if cam.retention_gb.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
        problems.push(Problem {
            path: format!("{base}.retention_gb"),
            message: "is not a size in GB (0 or more)".into(),
        });
    }
    if cam.streams.is_empty() {
        problems.push(Problem {
            path: format!("{base}.streams"),
            message: "a camera needs at least one stream".into(),
        });
    }
    let mut names = std::collections::HashSet::new();
    let mut streams = Vec::new();
    for (j, s) in cam.streams.iter().enumerate() {
        let sbase = format!("{base}.streams[{j}]");
        if s.name.is_empty() || !names.insert(s.name.clone()) {
            problems.push(Problem {
                path: format!("{sbase}.name"),
                message: format!("stream name {:?} is empty or repeated", s.name),
            });
        }
        if let Some(r) = resolve_stream(s, &sbase, env, given.get(&s.name), problems) {
            streams.push(r);
        }
    }
    let id = id?;
    let name = if cam.name.is_empty() { id.to_string() } else { cam.name.clone() };
    Some(ResolvedCamera {
        id,
        name,
        enabled: cam.enabled,
        decoder: cam.decoder,
        detect_fps: cam.detect_fps,
        detect_size: (cam.detect_width, cam.detect_height),
        analytics,
        streams,
        definition: definition_of(cam),
    })
}

/// A camera defined through the API: its definition (the `[[cameras]]` table as JSON, where
/// each stream may also carry `username` and `password`) checked exactly like a camera in
/// the configuration file. Unknown fields are refused; `password_env` and `password_file`
/// are refused too (they would read the server's environment and files). Returns the camera
/// and the logins taken out of the definition.
pub fn camera_from_api(
    mut definition: serde_json::Value,
) -> Result<(ResolvedCamera, BTreeMap<String, panoptes_storage::cameras::Credentials>), Vec<Problem>> {
    let mut problems = Vec::new();
    let mut logins = BTreeMap::new();
    if let Some(streams) = definition.get_mut("streams").and_then(|s| s.as_array_mut()) {
        for (j, s) in streams.iter_mut().enumerate() {
            let Some(s) = s.as_object_mut() else { continue };
            for k in ["password_env", "password_file"] {
                if s.remove(k).is_some() {
                    problems.push(Problem {
                        path: format!("streams[{j}].{k}"),
                        message: "not accepted through the API: send `password`".into(),
                    });
                }
            }
            let name = s.get("name").and_then(|n| n.as_str()).unwrap_or("main").to_owned();
            let password = s.remove("password");
            let username = s.remove("username");
            let text = |v: Option<serde_json::Value>, field: &str, problems: &mut Vec<Problem>| match v {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(t)) => Some(t),
                Some(_) => {
                    problems.push(Problem {
                        path: format!("streams[{j}].{field}"),
                        message: "must be a string".into(),
                    });
                    None
                }
            };
            let (username, password) =
                (text(username, "username", &mut problems), text(password, "password", &mut problems));
            match (username, password) {
                (Some(u), p) if !u.is_empty() => {
                    logins.insert(
                        name,
                        panoptes_storage::cameras::Credentials {
                            username: u,
                            password: p.unwrap_or_default(),
                        },
                    );
                }
                (_, Some(p)) if !p.is_empty() => problems.push(Problem {
                    path: format!("streams[{j}].username"),
                    message: "a password is given but no username".into(),
                }),
                _ => {}
            }
        }
    }
    let resolved = camera_from_definition(definition, &logins, &mut problems);
    match resolved {
        Some(c) if problems.is_empty() => Ok((c, logins)),
        _ => Err(problems),
    }
}

/// A stored camera definition (without credentials) with its logins, checked.
pub fn camera_from_definition(
    definition: serde_json::Value,
    logins: &BTreeMap<String, panoptes_storage::cameras::Credentials>,
    problems: &mut Vec<Problem>,
) -> Option<ResolvedCamera> {
    let mut unknown = Vec::new();
    let cam: Result<CameraConfig, _> =
        serde_ignored::deserialize(definition, |p| unknown.push(field_path(&p)));
    for path in unknown {
        problems.push(Problem { path, message: "unknown field".into() });
    }
    let cam = match cam {
        Ok(c) => c,
        Err(e) => {
            problems.push(Problem { path: "(value)".into(), message: e.to_string() });
            return None;
        }
    };
    let c = resolve_camera(&cam, "", &|_| None, logins, problems);
    for p in problems.iter_mut() {
        p.path = p.path.trim_start_matches('.').to_owned();
    }
    c
}

fn check_database_url(
    text: &str,
    path: &str,
    password: Option<String>,
    problems: &mut Vec<Problem>,
) -> Option<DatabaseTarget> {
    let mut push = |message: String| problems.push(Problem { path: path.into(), message });
    let url = match Url::parse(text) {
        Ok(u) => u,
        Err(e) => {
            push(format!("not a URL ({e}); expected postgres://user@host:port/database"));
            return None;
        }
    };
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        push(format!("scheme {:?} is not postgres:// or postgresql://", url.scheme()));
        return None;
    }
    if url.password().is_some() && path == "database.url" {
        push("must not contain a password: use database.password_env or database.password_file".into());
        return None;
    }
    match text.parse::<panoptes_storage::PgConnectOptions>() {
        Ok(mut o) => {
            if let Some(pw) = password {
                o = o.password(&pw);
            }
            Some(DatabaseTarget::External { options: Box::new(o) })
        }
        Err(e) => {
            push(format!("not a valid PostgreSQL URL: {e}"));
            None
        }
    }
}

fn resolve_stream(
    s: &StreamConfig,
    base: &str,
    env: &dyn Fn(&str) -> Option<String>,
    given: Option<&panoptes_storage::cameras::Credentials>,
    problems: &mut Vec<Problem>,
) -> Option<ResolvedStream> {
    let (env_path, file_path) = (format!("{base}.password_env"), format!("{base}.password_file"));
    let password = read_secret(
        s.password_env.as_ref(),
        s.password_file.as_ref(),
        (&env_path, &file_path),
        env,
        problems,
    );
    let mut push =
        |field: &str, message: String| problems.push(Problem { path: format!("{base}.{field}"), message });
    if s.roles.is_empty() {
        push("roles", "a stream needs at least one role (record, live, grid, detect)".into());
    }
    for (field, v) in [("request_timeout_secs", s.request_timeout_secs), ("watchdog_secs", s.watchdog_secs)] {
        if !(v > 0.0 && v <= 3600.0) {
            push(field, format!("{v} is not within (0, 3600]"));
        }
    }
    let mut url = match Url::parse(&s.url) {
        Ok(u) if matches!(u.scheme(), "rtsp" | "rtsps") && u.host_str().is_some_and(|h| !h.is_empty()) => u,
        Ok(u) if !matches!(u.scheme(), "rtsp" | "rtsps") => {
            push("url", format!("scheme {:?} is not rtsp:// or rtsps://", u.scheme()));
            return None;
        }
        Ok(_) => {
            push("url", "has no host".into());
            return None;
        }
        Err(e) => {
            // Never echo the text: it may hold a password.
            push("url", format!("not a URL ({e}); expected rtsp://host:port/path"));
            return None;
        }
    };
    if url.password().is_some() {
        push("url", "must not contain a password: use password_env or password_file".into());
        return None;
    }
    let url_user = (!url.username().is_empty()).then(|| url.username().to_owned());
    let _ = url.set_username("");
    let (username, password) = match given {
        Some(g) => (Some(g.username.clone()), Some(g.password.clone())),
        None => (s.username.clone().or(url_user), password),
    };
    let credentials = match (username, password) {
        (Some(u), Some(p)) => Some((u, p)),
        (Some(u), None) => Some((u, String::new())),
        (None, Some(_)) => {
            push("username", "a password is given but no username".into());
            None
        }
        (None, None) => None,
    };
    Some(ResolvedStream {
        name: s.name.clone(),
        url,
        credentials,
        roles: s.roles.clone(),
        transport: s.transport,
        request_timeout: Duration::from_secs_f64(s.request_timeout_secs.clamp(0.001, 3600.0)),
        watchdog: Duration::from_secs_f64(s.watchdog_secs.clamp(0.001, 3600.0)),
    })
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "panoptes".into())
}

/// The configuration reference in Markdown, generated from the types above (their doc
/// comments and defaults). `docs/configuration.md` embeds it; a test keeps them equal.
pub fn reference_markdown() -> String {
    let schema = schemars::schema_for!(Config);
    let root = schema.as_value();
    let mut rows = Vec::new();
    walk(root, root, "", &mut rows);
    let mut out = String::from("| Field | Type | Default | Meaning |\n|---|---|---|---|\n");
    for r in rows {
        out.push_str(&format!("| `{}` | {} | {} | {} |\n", r.0, r.1, r.2, r.3));
    }
    out
}

type Row = (String, String, String, String);

fn resolve<'a>(root: &'a serde_json::Value, v: &'a serde_json::Value) -> &'a serde_json::Value {
    if let Some(r) = v.get("$ref").and_then(|r| r.as_str()) {
        let name = r.rsplit('/').next().unwrap_or("");
        return root.pointer(&format!("/$defs/{name}")).map_or(v, |d| resolve(root, d));
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        let Some(list) = v.get(key).and_then(|l| l.as_array()) else {
            continue;
        };
        let is_null = |x: &serde_json::Value| x.get("type").and_then(|t| t.as_str()) == Some("null");
        // `allOf: [X]` wraps a reference; `anyOf: [X, null]` is an Option.
        let wrapper = list.len() <= 2 && (key == "allOf" || list.iter().any(is_null));
        if let Some(first) = list.iter().find(|x| !is_null(x)).filter(|_| wrapper) {
            return resolve(root, first);
        }
    }
    v
}

fn type_name(root: &serde_json::Value, v: &serde_json::Value) -> String {
    let t = resolve(root, v);
    if let Some(variants) = t.get("oneOf").or_else(|| t.get("enum")).and_then(|l| l.as_array()) {
        let names: Vec<String> = variants
            .iter()
            .filter_map(|x| x.get("const").or(Some(x)).and_then(|c| c.as_str()).map(|s| format!("`{s}`")))
            .collect();
        if !names.is_empty() {
            return names.join(" \\| ");
        }
    }
    match t.get("type") {
        Some(serde_json::Value::String(s)) if s == "array" => {
            let item = t.get("items").map(|i| type_name(root, i)).unwrap_or_default();
            format!("list of {item}")
        }
        Some(serde_json::Value::String(s)) => match s.as_str() {
            "integer" => "integer".into(),
            "number" => "number".into(),
            "boolean" => "boolean".into(),
            _ => "string".into(),
        },
        Some(serde_json::Value::Array(a)) => {
            a.iter().filter_map(|x| x.as_str()).find(|x| *x != "null").unwrap_or("string").to_owned()
        }
        _ => "string".into(),
    }
}

fn walk(root: &serde_json::Value, v: &serde_json::Value, prefix: &str, rows: &mut Vec<Row>) {
    let t = resolve(root, v);
    let Some(props) = t.get("properties").and_then(|p| p.as_object()) else {
        return;
    };
    for (name, prop) in props {
        let path = format!("{prefix}{name}");
        let target = resolve(root, prop);
        let desc = prop
            .get("description")
            .or_else(|| target.get("description"))
            .and_then(|d| d.as_str())
            .unwrap_or("")
            .replace('\n', " ")
            .replace('|', "\\|");
        if target.get("properties").is_some() {
            walk(root, target, &format!("{path}."), rows);
            continue;
        }
        let item = target.get("items").map(|i| resolve(root, i));
        if let Some(item) = item.filter(|i| i.get("properties").is_some()) {
            rows.push((format!("{path}[]"), "list of tables".into(), "`[]`".into(), desc));
            walk(root, item, &format!("{path}[]."), rows);
            continue;
        }
        let default = match prop.get("default") {
            None | Some(serde_json::Value::Null) => "(none)".to_owned(),
            Some(serde_json::Value::String(s)) if s.is_empty() => "`\"\"`".to_owned(),
            Some(d) => format!("`{d}`"),
        };
        rows.push((path, type_name(root, prop), default, desc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn empty_file_is_valid_and_embedded() -> Result<(), ConfigError> {
        let s = from_str("", &env_of(&[]))?;
        assert!(matches!(s.database, DatabaseTarget::Embedded { .. }));
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert!(s.cameras.is_empty());
        Ok(())
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let text = r#"
            [server]
            listen = "127.0.0.1:8080"
            colour = "blue"

            [[cameras]]
            id = "gate"
            [[cameras.streams]]
            url = "http//broken"
            urll = "rtsp://x/y"
            username = "admin"
            password_env = "GATE_PASSWORD"
        "#;
        let Err(e) = from_str(text, &env_of(&[])) else { panic!("accepted") };
        let paths: Vec<&str> = e.problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"server.colour"), "{e}");
        assert!(paths.contains(&"cameras[0].streams[0].urll"), "{e}");
        assert!(paths.contains(&"cameras[0].streams[0].url"), "{e}");
        assert!(paths.contains(&"cameras[0].streams[0].password_env"), "{e}");
        assert!(e.to_string().contains("GATE_PASSWORD is not set"), "{e}");
    }

    #[test]
    fn passwords_in_urls_are_refused_and_never_echoed() {
        let text = r#"
            [[cameras]]
            id = "gate"
            [[cameras.streams]]
            url = "rtsp://admin:hunter2@10.0.0.5/stream"
        "#;
        let Err(e) = from_str(text, &env_of(&[])) else { panic!("accepted") };
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("cameras[0].streams[0].url"), "{e}");
    }

    #[test]
    fn secrets_resolve_from_env_and_files() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let f = dir.path().join("token");
        std::fs::write(&f, "tok\n")?;
        let text = format!(
            r#"
            [server]
            metrics_token_file = "{}"
            [[cameras]]
            id = "gate"
            [[cameras.streams]]
            url = "rtsp://admin@10.0.0.5:554/stream"
            password_env = "PW"
            "#,
            f.display()
        );
        let s = from_str(&text, &env_of(&[("PW", "pa55")]))?;
        assert_eq!(s.metrics_token.as_deref(), Some("tok"));
        let st = &s.cameras[0].streams[0];
        assert_eq!(st.credentials, Some(("admin".into(), "pa55".into())));
        assert_eq!(st.url.as_str(), "rtsp://10.0.0.5:554/stream");
        assert!(!format!("{st:?}").contains("pa55"));
        Ok(())
    }

    #[test]
    fn database_url_from_env_wins_and_is_checked() {
        let ok = from_str("", &env_of(&[(DATABASE_URL_ENV, "postgres://u@db:5432/p")]));
        assert!(matches!(ok.map(|s| s.database), Ok(DatabaseTarget::External { .. })));
        let Err(e) = from_str("", &env_of(&[(DATABASE_URL_ENV, "mysql://db/p")])) else { panic!() };
        assert_eq!(e.problems[0].path, DATABASE_URL_ENV);
    }

    #[test]
    fn duplicate_ids_and_bad_values_are_reported() {
        let text = r#"
            [[cameras]]
            id = "a"
            detect_fps = 0
            [[cameras.streams]]
            url = "rtsp://h/1"
            [[cameras]]
            id = "a"
            [[cameras.streams]]
            url = "rtsp://h/2"
            roles = []
        "#;
        let Err(e) = from_str(text, &env_of(&[])) else { panic!() };
        let paths: Vec<&str> = e.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["cameras[0].detect_fps", "cameras[1].id", "cameras[1].streams[0].roles"], "{e}");
    }

    #[test]
    fn camera_analytics_tables_are_parsed_and_checked() {
        let ok = r#"
            [[cameras]]
            id = "road"
            [cameras.analytics]
            zones = [{ name = "lane", polygon = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]] }]
            lines = [{ name = "stop", a = [0.5, 0.0], b = [0.5, 1.0] }]
            alerts = { labels = ["car", "bus"], required_zones = ["lane"] }
            [cameras.analytics.motion]
            heartbeat_secs = 20.0
            [cameras.analytics.tracker.rules.car]
            min_median_score = 0.5
            min_area = 0.001
            [[cameras.streams]]
            url = "rtsp://h/1"
        "#;
        let s = from_str(ok, &env_of(&[])).unwrap_or_else(|e| panic!("{e}"));
        let a = &s.cameras[0].analytics;
        assert_eq!((a.zones.len(), a.lines.len(), a.motion.heartbeat_secs), (1, 1, 20.0));
        let bad = ok.replace("heartbeat_secs", "heartbeat");
        let Err(e) = from_str(&bad, &env_of(&[])) else { panic!("accepted") };
        assert_eq!(e.problems[0].path, "cameras[0].analytics", "{e}");
        assert!(e.to_string().contains("heartbeat"), "{e}");
        assert!(a.alerts.is_alert("bus", &["lane"]) && !a.alerts.is_alert("bus", &[] as &[&str]));
        let unknown_zone = ok.replace("required_zones = [\"lane\"]", "required_zones = [\"kerb\"]");
        let Err(e) = from_str(&unknown_zone, &env_of(&[])) else { panic!("accepted") };
        assert_eq!(e.problems[0].path, "cameras[0].analytics", "{e}");
        assert!(e.to_string().contains("`kerb`: is not one of this camera's zones"), "{e}");
    }

    #[test]
    fn webrtc_transports_are_each_optional_and_checked() {
        let s = from_str("", &env_of(&[])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.webrtc_udp, Some(SocketAddr::from(([0, 0, 0, 0], 8189))));
        assert_eq!(s.webrtc_tcp, None, "ICE over TCP is off by default");
        let tcp_only = "[server]\nwebrtc_udp = \"\"\nwebrtc_tcp = \"0.0.0.0:8189\"\n";
        let s = from_str(tcp_only, &env_of(&[])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.webrtc_udp, s.webrtc_tcp), (None, Some(SocketAddr::from(([0, 0, 0, 0], 8189)))));
        let Err(e) = from_str("[server]\nwebrtc_tcp = \"8189\"\n", &env_of(&[])) else { panic!("accepted") };
        assert_eq!(e.problems[0].path, "server.webrtc_tcp", "{e}");
    }

    #[test]
    fn mqtt_and_webhooks_resolve_with_defaults_and_secrets() -> Result<(), ConfigError> {
        let text = r#"
            [server]
            node_id = "edge-1"
            [mqtt]
            enabled = true
            host = "broker.lan"
            username = "nvr"
            password_env = "MQTT_PW"
            [[webhooks]]
            url = "https://ha.lan:8123/api/webhook/abc"
            cameras = ["gate"]
            labels = ["person"]
            types = ["new", "end"]
            secret_file = "/nonexistent/never-read-when-env-is-used"
            secret_env = "HOOK_SECRET"
        "#;
        // One secret source per webhook: env and file together are refused, naming the field.
        let Err(e) = from_str(text, &env_of(&[("MQTT_PW", "pw"), ("HOOK_SECRET", "k")])) else {
            panic!("accepted both secret_env and secret_file")
        };
        assert_eq!(e.problems[0].path, "webhooks[0].secret_env", "{e}");
        let text = text.replace("secret_file = \"/nonexistent/never-read-when-env-is-used\"\n", "");
        let s = from_str(&text, &env_of(&[("MQTT_PW", "pw"), ("HOOK_SECRET", "k")]))?;
        let m = s.notify.mqtt.as_ref().unwrap_or_else(|| panic!("mqtt off"));
        assert_eq!((m.host.as_str(), m.port, m.qos), ("broker.lan", 1883, 1));
        assert_eq!((m.client_id.as_str(), m.topic_prefix.as_str()), ("panoptes-edge-1", "panoptes"));
        assert_eq!(m.credentials, Some(("nvr".into(), "pw".into())));
        assert!(!format!("{m:?}").contains("pw\""), "{m:?}");
        let w = &s.notify.webhooks[0];
        assert_eq!(w.name, "webhook-1");
        assert_eq!(w.secret.as_deref(), Some("k"));
        assert_eq!(w.filter.types, [panoptes_api::notify::Kind::New, panoptes_api::notify::Kind::End]);
        assert_eq!((w.retry.max_attempts, w.timeout), (5, Duration::from_secs(10)));
        assert!(!format!("{w:?}").contains("abc"), "{w:?}");
        // Off by default; nothing configured means no notifier.
        assert!(from_str("", &env_of(&[]))?.notify.is_empty());
        Ok(())
    }

    #[test]
    fn bad_mqtt_and_webhook_settings_are_named() {
        let text = r#"
            [mqtt]
            enabled = true
            host = "mqtt://broker:1883"
            topic_prefix = "home/#"
            qos = 3
            ca_file = "/etc/ca.pem"
            [[webhooks]]
            name = "Alarm Panel"
            url = "ftp://x/y"
            types = ["started"]
            labels = ["Car"]
            max_attempts = 0
            [[webhooks]]
            url = "https://user:hunter2@host/hook"
            max_backoff_secs = 0.5
        "#;
        let Err(e) = from_str(text, &env_of(&[])) else { panic!("accepted") };
        let paths: Vec<&str> = e.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "mqtt.host",
                "mqtt.topic_prefix",
                "mqtt.qos",
                "mqtt.ca_file",
                "webhooks[0].name",
                "webhooks[0].url",
                "webhooks[0].labels[0]",
                "webhooks[0].types[0]",
                "webhooks[0].max_attempts",
                "webhooks[1].url",
                "webhooks[1].max_backoff_secs",
            ],
            "{e}"
        );
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn docs_match_the_code() -> Result<(), std::io::Error> {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md"))?;
        let (begin, end) = ("<!-- BEGIN GENERATED REFERENCE -->\n", "<!-- END GENERATED REFERENCE -->");
        let start = doc.find(begin).map(|i| i + begin.len());
        let stop = doc.find(end);
        let (Some(start), Some(stop)) = (start, stop) else {
            panic!("markers missing in docs/configuration.md")
        };
        let expected = reference_markdown();
        assert!(
            doc[start..stop] == expected,
            "docs/configuration.md is out of date; regenerate with `panoptes config-reference`:\n{expected}"
        );
        Ok(())
    }
}
