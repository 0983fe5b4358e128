//! `panoptes serve`: start everything, run until a signal, stop in a fixed order.
//!
//! Start: metrics recorder → database (private cluster if configured) → migrations → node
//! registration → event writer → notifications (MQTT, webhooks) → cameras → HTTP. Stop:
//! HTTP stops accepting → cameras stop → pending writes finish → notifications send what
//! is queued and stop → database pool closes → private cluster stops.

use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusBuilder;
use panoptes_camera_gateway::{Credentials, StreamSinks, StreamSpec, Timeouts, Transport};
use panoptes_core::StatusBoard;
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::cameras::Cameras;

use panoptes_camera_gateway::KeyframeQueue;
use panoptes_camera_gateway::decode::{self, DecodeMode, DecodeSettings, DecoderHandle};
use panoptes_core::{CameraId, StreamRole};

use crate::config::{DecoderChoice, ResolvedCamera, Settings, TransportChoice};

/// Encoded frames queued to a decoder: about two GOPs of 2 s at 25 fps.
const DECODER_QUEUE: usize = 128;

/// A stream ready for the gateway, with the consumers to attach.
pub type StreamPlan = (StreamSpec, StreamSinks);

/// A running decoder of one camera stream.
pub type CameraDecoder = (CameraId, String, DecoderHandle);

/// Starts a decoder for each of the camera's detect streams and returns the sinks that feed
/// them, with the decoders' handles (analytics reads their latest-frame slots).
pub fn attach_decoders(
    camera: &ResolvedCamera,
    specs: Vec<StreamPlan>,
) -> (Vec<StreamPlan>, Vec<CameraDecoder>) {
    let mut handles = Vec::new();
    let specs = specs
        .into_iter()
        .map(|(spec, mut sinks)| {
            if camera.enabled && spec.roles.contains(&StreamRole::Detect) {
                let settings = DecodeSettings {
                    choice: match camera.decoder {
                        DecoderChoice::Auto => decode::DecoderChoice::Auto,
                        DecoderChoice::Cuda => decode::DecoderChoice::Cuda,
                        DecoderChoice::Vaapi => decode::DecoderChoice::Vaapi,
                        DecoderChoice::Cpu => decode::DecoderChoice::Cpu,
                    },
                    width: camera.detect_size.0,
                    height: camera.detect_size.1,
                    fps: camera.detect_fps,
                    // Idle until analytics asks for more (motion, active tracks).
                    mode: DecodeMode::KeyframesOnly,
                };
                let (tx, rx) = tokio::sync::mpsc::channel(DECODER_QUEUE);
                match decode::spawn(camera.id.clone(), &spec.stream, settings, rx) {
                    Ok(h) => {
                        sinks.queues.push(KeyframeQueue::new("decoder", tx));
                        handles.push((camera.id.clone(), spec.stream.clone(), h));
                    }
                    Err(e) => warn!(camera = %camera.id, stream = %spec.stream, error = %e, "no decoder"),
                }
            }
            (spec, sinks)
        })
        .collect();
    (specs, handles)
}

/// A running recorder of one camera stream.
pub type CameraRecorder = (CameraId, String, panoptes_storage::recorder::RecorderHandle);

/// Starts a segment writer (a named thread) for each of the camera's record streams and
/// returns the sinks that feed them, with the writers' handles. A writer closes its segment
/// and exits when its stream's session stops (its queue closes); `index` must outlive it.
pub fn attach_recorders(
    camera: &ResolvedCamera,
    data_dir: &Path,
    index: &tokio::sync::mpsc::Sender<panoptes_storage::recorder::IndexMessage>,
    specs: Vec<StreamPlan>,
) -> (Vec<StreamPlan>, Vec<CameraRecorder>) {
    use panoptes_storage::recorder;
    let mut handles = Vec::new();
    let specs = specs
        .into_iter()
        .map(|(spec, mut sinks)| {
            if camera.enabled && spec.roles.contains(&StreamRole::Record) {
                let (tx, rx) = tokio::sync::mpsc::channel(recorder::FRAME_QUEUE);
                let config = recorder::RecorderConfig::default();
                match recorder::spawn(camera.id.clone(), &spec.stream, data_dir, config, rx, index.clone()) {
                    Ok(h) => {
                        sinks.queues.push(KeyframeQueue::new("recorder", tx));
                        handles.push((camera.id.clone(), spec.stream.clone(), h));
                    }
                    Err(e) => warn!(camera = %camera.id, stream = %spec.stream, error = %e, "no recorder"),
                }
            }
            (spec, sinks)
        })
        .collect();
    (specs, handles)
}

/// Turns a configured camera into the gateway's stream specs.
pub fn stream_specs(camera: &ResolvedCamera) -> Vec<StreamPlan> {
    camera
        .streams
        .iter()
        .map(|s| StreamSpec {
            camera: camera.id.clone(),
            stream: s.name.clone(),
            url: s.url.clone(),
            credentials: s
                .credentials
                .as_ref()
                .map(|(u, p)| Credentials { username: u.clone(), password: p.clone() }),
            transport: match s.transport {
                TransportChoice::Tcp => Transport::Tcp,
                TransportChoice::Udp => Transport::Udp,
            },
            roles: s.roles.clone(),
            timeouts: Timeouts { request: s.request_timeout, watchdog: s.watchdog },
        })
        .map(|spec| (spec, StreamSinks::default()))
        .collect()
}

/// The retention policy the configuration asks for.
pub fn retention_policy(settings: &Settings) -> panoptes_storage::retention::RetentionPolicy {
    use panoptes_storage::retention::{CameraLimits, RetentionPolicy};
    const GB: f64 = 1e9;
    let limits = |days: u32, gb: f64| CameraLimits {
        max_bytes: (gb > 0.0).then_some((gb * GB) as u64),
        max_age: (days > 0).then(|| chrono::Duration::days(i64::from(days))),
    };
    let r = &settings.config.retention;
    let cameras = settings
        .config
        .cameras
        .iter()
        .map(|c| {
            let l = limits(c.retention_days.unwrap_or(r.max_days), c.retention_gb.unwrap_or(r.max_gb));
            (c.id.clone(), l)
        })
        .collect();
    RetentionPolicy {
        cameras,
        default: limits(r.max_days, r.max_gb),
        free_floor: (r.min_free_gb * GB) as u64,
    }
}

/// Starts the WebRTC live relay on `server.webrtc_udp` and/or `server.webrtc_tcp`. A port
/// that cannot be bound is logged and leaves live view off rather than stopping recording.
async fn start_live_relay(
    settings: &Settings,
    cancel: &CancellationToken,
) -> Option<panoptes_api::live::Relay> {
    let (udp, tcp) = (settings.webrtc_udp, settings.webrtc_tcp);
    if udp.is_none() && tcp.is_none() {
        return None;
    }
    match panoptes_api::live::Relay::start(udp, tcp, &settings.webrtc_advertise, cancel.clone()).await {
        Ok(r) => Some(r),
        Err(e) => {
            error!(error = %e, "live view is off: cannot bind server.webrtc_udp / server.webrtc_tcp");
            None
        }
    }
}

/// Re-reads the configuration file and applies camera changes. A file with problems is
/// reported and ignored: the running cameras stay as they are.
async fn reload(
    path: Option<&Path>,
    running: &Settings,
    pool: &panoptes_storage::PgPool,
    file_cameras: &mut Vec<crate::config::ResolvedCamera>,
    cameras: &mut Cameras,
) {
    let Some(path) = path else {
        warn!("SIGHUP ignored: Panoptes was started without a configuration file");
        return;
    };
    info!(file = %path.display(), "SIGHUP: reloading the configuration");
    let new = match crate::config::load(path) {
        Ok(s) => s,
        Err(e) => {
            error!("configuration not reloaded, keeping the running one: {e}");
            return;
        }
    };
    if new.listen != running.listen || new.config.database.url != running.config.database.url {
        warn!("server and database settings change only at restart; applying camera changes now");
    }
    let notify_of = |c: &crate::config::Config| serde_json::to_value((&c.mqtt, &c.webhooks)).ok();
    if notify_of(&new.config) != notify_of(&running.config) {
        warn!("MQTT and webhook settings change only at restart; applying camera changes now");
    }
    let specs = crate::cameras::storage_specs(&new.cameras);
    if let Err(e) = panoptes_storage::cameras::sync(pool, &running.node_id, &specs).await {
        error!(error = %e, "recording the reloaded cameras in the database failed; applying them anyway");
    }
    *file_cameras = new.cameras;
    let r = apply_all(file_cameras, pool, &running.node_id, cameras).await;
    info!(added = ?r.added, changed = ?r.changed, removed = ?r.removed, unchanged = r.unchanged, "configuration reloaded");
}

/// The web UI's directory, if it holds a built UI.
fn ui_dir(dir: &Path) -> Option<PathBuf> {
    if dir.join("index.html").is_file() {
        info!(dir = %dir.display(), "serving the web UI");
        Some(dir.to_path_buf())
    } else {
        warn!(dir = %dir.display(), "no web UI at server.ui_dir (build it with scripts/setup.sh); serving the API only");
        None
    }
}

/// Runs the configuration file's cameras and this node's cameras from the API.
async fn apply_all(
    file_cameras: &[crate::config::ResolvedCamera],
    pool: &panoptes_storage::PgPool,
    node: &panoptes_core::NodeId,
    cameras: &mut Cameras,
) -> crate::cameras::ChangeReport {
    let api = crate::cameras::api_cameras(pool, node).await;
    cameras.apply(&crate::cameras::merge(file_cameras, api)).await
}

/// Wakes the main loop whenever cameras change through the API (`NOTIFY panoptes_cameras`),
/// after the database connection comes back (a notification may have been missed), and
/// once a minute as a backstop.
fn watch_api_cameras(
    pool: panoptes_storage::PgPool,
    cancel: CancellationToken,
) -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let mut backoff = Duration::from_secs(1);
        'outer: loop {
            let mut listener = match panoptes_storage::PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    warn!(error = %e, "camera change listener: connecting failed; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            if let Err(e) = listener.listen(panoptes_storage::cameras::CHANNEL).await {
                warn!(error = %e, "camera change listener: LISTEN failed; retrying");
                continue;
            }
            backoff = Duration::from_secs(1);
            let _ = tx.try_send(());
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break 'outer,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => { let _ = tx.try_send(()); }
                    n = listener.try_recv() => match n {
                        // Full: a refresh is already pending, which will see this change too.
                        Ok(Some(_)) => { let _ = tx.try_send(()); }
                        // The connection dropped and sqlx reconnects: refresh for what was missed.
                        Ok(None) => { let _ = tx.try_send(()); }
                        Err(e) => {
                            warn!(error = %e, "camera change listener failed; reconnecting");
                            continue 'outer;
                        }
                    },
                }
            }
        }
    });
    rx
}

/// Runs until a signal arrives (or `stop` is cancelled, when given). SIGHUP re-reads
/// `config_path` and applies camera changes.
pub async fn run(
    settings: Settings,
    config_path: Option<PathBuf>,
    stop: Option<CancellationToken>,
) -> anyhow::Result<()> {
    let metrics = PrometheusBuilder::new().install_recorder().context("installing the metrics recorder")?;
    let root = crate::shutdown::on_signals();
    if let Some(stop) = stop {
        let root = root.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            root.cancel();
        });
    }
    info!(version = env!("CARGO_PKG_VERSION"), node = %settings.node_id, "starting Panoptes");

    let db = crate::database::open(&settings, &root, crate::database::ClusterUse::Owner)
        .await
        .context("opening the database")?;
    if let Err(e) = panoptes_storage::migrate(&db.pool).await {
        db.close().await;
        return Err(e).context("applying database migrations");
    }
    let listener = match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(l) => l,
        Err(e) => {
            db.close().await;
            return Err(e).with_context(|| format!("listening on {} (server.listen)", settings.listen));
        }
    };
    panoptes_storage::nodes::register(
        &db.pool,
        &settings.node_id,
        &settings.listen.to_string(),
        env!("CARGO_PKG_VERSION"),
    )
    .await
    .context("registering this node")?;
    panoptes_storage::cameras::sync(
        &db.pool,
        &settings.node_id,
        &crate::cameras::storage_specs(&settings.cameras),
    )
    .await
    .context("recording the configured cameras in the database")?;

    // Recordings: repair the index after a crash before any recorder writes, then run the
    // index writer and retention until shutdown step 3.
    let data_dir = settings.config.server.data_dir.clone();
    let node = settings.node_id.to_string();
    let recovered = panoptes_storage::recorder::recover(&db.pool, &data_dir, Some(&node))
        .await
        .context("checking recordings against their index")?;
    info!(?recovered, "recordings checked");
    let writers = CancellationToken::new();
    let (index_tx, index_rx) = tokio::sync::mpsc::channel(panoptes_storage::recorder::INDEX_QUEUE);
    let index_task = tokio::spawn(panoptes_storage::recorder::run_index(
        db.pool.clone(),
        Some(node),
        index_rx,
        writers.clone(),
    ));
    let retention_task = tokio::spawn(panoptes_storage::retention::run(
        db.pool.clone(),
        data_dir.clone(),
        retention_policy(&settings),
        Duration::from_secs(settings.config.retention.interval_secs),
        writers.clone(),
    ));
    // Events: batched into PostgreSQL, spooled to disk while it is away.
    let (events, event_writer) = panoptes_storage::events::EventWriter::start(
        db.pool.clone(),
        panoptes_storage::events::WriterConfig::new(data_dir.join("spool/events.spool")),
        writers.clone(),
    )
    .await;

    let board = StatusBoard::default();
    // Notifications: this node's event changes to MQTT and webhooks. A broker or receiver
    // that is away is retried in the background, never a reason not to start.
    let notifier = match panoptes_api::notify::Notifier::start(
        db.pool.clone(),
        board.clone(),
        settings.notify.clone(),
    ) {
        Ok(n) => n,
        Err(e) => {
            error!("notifications (MQTT, webhooks) are off: {e}");
            None
        }
    };
    let recording = crate::cameras::Recording { data_dir: data_dir.clone(), index: index_tx };
    let analytics = match crate::detection::load(
        &settings.config.analytics,
        events.clone(),
        settings.node_id.clone(),
        &data_dir,
    ) {
        Ok(a) => a,
        Err(e) => {
            error!("analytics unavailable, cameras run without detection: {e:#}");
            None
        }
    };
    let detect = analytics.clone().map(|a| panoptes_api::DetectHandle(std::sync::Arc::new(a)));
    let mut cameras = Cameras::new(board.clone(), Some(recording)).with_analytics(analytics);
    let mut file_cameras = settings.cameras.clone();
    let report = apply_all(&file_cameras, &db.pool, &settings.node_id, &mut cameras).await;
    info!(cameras = report.added.len(), "cameras started");
    let mut api_camera_changes = watch_api_cameras(db.pool.clone(), writers.clone());

    let heartbeat = {
        let (pool, node, cancel) = (db.pool.clone(), settings.node_id.clone(), writers.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {
                        if let Err(e) = panoptes_storage::nodes::heartbeat(&pool, &node).await {
                            warn!(error = %e, "node heartbeat failed");
                        }
                    }
                }
            }
        })
    };

    // No user yet: a one-time setup token for creating the first admin over HTTP.
    let setup_token_hash = if panoptes_storage::users::count(&db.pool).await.context("counting users")? == 0 {
        let token = panoptes_api::session::new_secret();
        warn!(
            "no users yet: create the first admin with `panoptes user add NAME --role admin`, or POST \
             /api/setup {{\"token\": \"{token}\", \"name\": …, \"password\": …}} (this token works once)"
        );
        Some(panoptes_api::session::hash_secret(&token))
    } else {
        None
    };
    let http_relay_cancel = CancellationToken::new();
    let http_cancel = CancellationToken::new();
    let api_config = panoptes_api::ApiConfig {
        shutdown: http_cancel.clone(),
        metrics_token: settings.metrics_token.clone(),
        secure_cookies: settings.config.server.secure_cookies,
        setup_token_hash,
        data_dir: data_dir.clone(),
        detect,
        live: start_live_relay(&settings, &http_relay_cancel).await,
        cameras: Some(panoptes_api::CameraCheckerHandle(std::sync::Arc::new(crate::cameras::ConfigChecker))),
        node: Some(settings.node_id.clone()),
        ui_dir: ui_dir(&settings.config.server.ui_dir),
    };
    let live = std::sync::Arc::new(cameras.live_source());
    let state = panoptes_api::AppState::new(db.pool.clone(), board, live, metrics, api_config);
    // The bound address (the configured port may be 0: any free port).
    let local_addr =
        listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| settings.listen.to_string());
    let http = tokio::spawn(panoptes_api::serve(listener, panoptes_api::router(state), http_cancel.clone()));
    info!(listen = %local_addr, "HTTP server listening");

    // Run until shutdown; reload the cameras on SIGHUP.
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = root.cancelled() => break,
            _ = hangup.recv() => {
                reload(config_path.as_deref(), &settings, &db.pool, &mut file_cameras, &mut cameras).await;
            }
            Some(()) = api_camera_changes.recv() => {
                let r = apply_all(&file_cameras, &db.pool, &settings.node_id, &mut cameras).await;
                if !(r.added.is_empty() && r.changed.is_empty() && r.removed.is_empty()) {
                    info!(added = ?r.added, changed = ?r.changed, removed = ?r.removed, "cameras changed through the API applied");
                }
            }
        }
    }
    let limit = Duration::from_secs(settings.config.server.shutdown_timeout_secs);
    let ordered = async {
        info!("shutdown 1/5: HTTP server stops accepting");
        http_cancel.cancel();
        http_relay_cancel.cancel();
        match http.await {
            Ok(Err(e)) => warn!(error = %e, "HTTP server ended with an error"),
            Err(e) => warn!(error = %e, "HTTP server task failed"),
            Ok(Ok(())) => {}
        }
        info!("shutdown 2/5: cameras stop");
        // Their input closed, the decoder threads end by themselves.
        cameras.shutdown().await;
        info!("shutdown 3/5: pending writes finish");
        // Analytics (the only event source) has stopped with the cameras.
        drop(events);
        writers.cancel();
        let _ = heartbeat.await;
        let _ = retention_task.await;
        // The recorders (the only index senders) are gone: the index drains and ends.
        let _ = index_task.await;
        let status = event_writer.finished().await;
        info!(?status, "event writer flushed");
        info!("shutdown 4/5: notifications send what is queued");
        if let Some(n) = notifier {
            n.stop().await;
        }
        info!("shutdown 5/5: database closes");
        db.close().await;
    };
    if tokio::time::timeout(limit, ordered).await.is_err() {
        warn!(?limit, "shutdown took too long; exiting anyway");
    }
    info!("Panoptes stopped");
    Ok(())
}
