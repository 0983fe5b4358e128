//! The running set of cameras, applied from the configuration file and the cameras added
//! through the API: at start, on every reload (SIGHUP) and on every change through the API,
//! touching only the cameras whose settings changed.

use std::collections::{BTreeMap, HashMap};

use panoptes_camera_gateway::Gateway;
use panoptes_core::{CameraId, StatusBoard};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::ResolvedCamera;
use std::path::PathBuf;

use panoptes_storage::recorder::IndexMessage;
use tokio::sync::mpsc;

use crate::serve::{CameraDecoder, CameraRecorder, attach_decoders, attach_recorders, stream_specs};

/// A camera as the database records it (URLs without credentials).
pub fn storage_spec(c: &ResolvedCamera) -> panoptes_storage::cameras::CameraSpec {
    panoptes_storage::cameras::CameraSpec {
        id: c.id.clone(),
        name: c.name.clone(),
        enabled: c.enabled,
        streams: c
            .streams
            .iter()
            .map(|s| panoptes_storage::cameras::StreamSpec {
                name: s.name.clone(),
                roles: s.roles.clone(),
                redacted_url: Some(panoptes_core::redact(&s.url).to_string()),
                has_credentials: s.credentials.is_some(),
            })
            .collect(),
        definition: Some(c.definition.clone()),
    }
}

/// The configured cameras as the database records them.
pub fn storage_specs(cameras: &[ResolvedCamera]) -> Vec<panoptes_storage::cameras::CameraSpec> {
    cameras.iter().map(storage_spec).collect()
}

/// Checks cameras sent to the API by the configuration file's rules.
#[derive(Debug, Clone, Copy)]
pub struct ConfigChecker;

impl panoptes_api::CameraChecker for ConfigChecker {
    fn check(
        &self,
        definition: serde_json::Value,
    ) -> Result<panoptes_api::CheckedCamera, Vec<(String, String)>> {
        let (camera, credentials) = crate::config::camera_from_api(definition)
            .map_err(|problems| problems.into_iter().map(|p| (p.path, p.message)).collect::<Vec<_>>())?;
        Ok(panoptes_api::CheckedCamera { spec: storage_spec(&camera), credentials })
    }
}

/// The cameras added through the API that `node` runs, resolved. One that no longer passes
/// the checks (say, after an upgrade) is logged, naming the camera and field, and skipped.
pub async fn api_cameras(
    pool: &panoptes_storage::PgPool,
    node: &panoptes_core::NodeId,
) -> Vec<ResolvedCamera> {
    let stored = match panoptes_storage::cameras::api_cameras(pool, node).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "reading the cameras added through the API failed");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for s in stored {
        let mut problems = Vec::new();
        match crate::config::camera_from_definition(s.definition, &s.credentials, &mut problems) {
            Some(c) if problems.is_empty() => out.push(c),
            _ => {
                let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
                tracing::error!(camera = %s.id, ?problems, "camera added through the API is not valid; not started");
            }
        }
    }
    out
}

/// The configuration file's cameras and the API's; a file's camera wins over an API camera
/// with the same id.
pub fn merge(file: &[ResolvedCamera], api: Vec<ResolvedCamera>) -> Vec<ResolvedCamera> {
    let mut all = file.to_vec();
    for c in api {
        if all.iter().any(|f| f.id == c.id) {
            tracing::warn!(camera = %c.id, "defined in the configuration file and through the API; the file wins");
        } else {
            all.push(c);
        }
    }
    all
}

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ChangeReport {
    /// Cameras started.
    pub added: Vec<CameraId>,
    /// Cameras restarted with new settings (including enabled ↔ disabled).
    pub changed: Vec<CameraId>,
    /// Cameras stopped and forgotten.
    pub removed: Vec<CameraId>,
    /// Cameras left running untouched.
    pub unchanged: usize,
}

/// Where recorders write and index.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The data directory (segments go under `recordings/`).
    pub data_dir: PathBuf,
    /// The index writer's queue.
    pub index: mpsc::Sender<IndexMessage>,
}

/// Cameras, their gateway sessions, decoders and recorders.
#[derive(Debug)]
pub struct Cameras {
    gateway: Gateway,
    recording: Option<Recording>,
    current: BTreeMap<CameraId, ResolvedCamera>,
    decoders: HashMap<CameraId, Vec<CameraDecoder>>,
    recorders: Vec<CameraRecorder>,
    analytics: Option<crate::detection::Analytics>,
    /// Stops a camera's analytics pipelines.
    analytics_stop: HashMap<CameraId, CancellationToken>,
}

impl Cameras {
    /// An empty set publishing to `board`; streams with the `record` role are recorded when
    /// `recording` is given.
    pub fn new(board: StatusBoard, recording: Option<Recording>) -> Self {
        // Not a child of the process's root token: shutdown stops cameras in its own turn.
        Cameras {
            gateway: Gateway::new(board, CancellationToken::new()),
            recording,
            current: BTreeMap::new(),
            decoders: HashMap::new(),
            recorders: Vec::new(),
            analytics: None,
            analytics_stop: HashMap::new(),
        }
    }

    /// Runs analytics on every detect stream started from now on.
    pub fn with_analytics(mut self, analytics: Option<crate::detection::Analytics>) -> Self {
        self.analytics = analytics;
        self
    }

    /// Live access to the running streams, for the API.
    pub fn live_source(&self) -> panoptes_camera_gateway::GatewayLive {
        self.gateway.live_source()
    }

    /// Makes the running set match `wanted`.
    pub async fn apply(&mut self, wanted: &[ResolvedCamera]) -> ChangeReport {
        let mut report = ChangeReport::default();
        // Writers of cameras stopped or replaced earlier have closed their segments by now
        // (or will at shutdown): forget those that have, so changes made through the API
        // over months do not pile up handles.
        self.recorders.retain(|(_, _, handle)| !handle.is_finished());
        let wanted_ids: BTreeMap<&CameraId, &ResolvedCamera> = wanted.iter().map(|c| (&c.id, c)).collect();
        let gone: Vec<CameraId> =
            self.current.keys().filter(|id| !wanted_ids.contains_key(id)).cloned().collect();
        for id in gone {
            self.gateway.remove_camera(&id).await;
            if let Some(stop) = self.analytics_stop.remove(&id) {
                stop.cancel();
            }
            self.current.remove(&id);
            self.decoders.remove(&id);
            info!(camera = %id, "camera removed");
            report.removed.push(id);
        }
        for cam in wanted {
            match self.current.get(&cam.id) {
                Some(old) if old == cam => {
                    report.unchanged += 1;
                    continue;
                }
                Some(_) => report.changed.push(cam.id.clone()),
                None => report.added.push(cam.id.clone()),
            }
            // Old decoders end when the old sessions (their only feeders) stop.
            self.decoders.remove(&cam.id);
            if let Some(stop) = self.analytics_stop.remove(&cam.id) {
                stop.cancel();
            }
            let (mut plans, handles) = attach_decoders(cam, stream_specs(cam));
            if let Some(rec) = &self.recording {
                let (p, writers) = attach_recorders(cam, &rec.data_dir, &rec.index, plans);
                plans = p;
                self.recorders.extend(writers);
            }
            self.gateway.set_camera(cam.id.clone(), cam.enabled, plans).await;
            if let Some(analytics) = &self.analytics {
                let stop = CancellationToken::new();
                for (camera, _, handle) in &handles {
                    analytics.start_camera(camera.clone(), cam.analytics.clone(), handle, stop.clone());
                }
                self.analytics_stop.insert(cam.id.clone(), stop);
            }
            self.decoders.insert(cam.id.clone(), handles);
            self.current.insert(cam.id.clone(), cam.clone());
        }
        report
    }

    /// Stops every camera, then waits for the recorders to close their segments.
    pub async fn shutdown(self) {
        // Analytics first: it ends its open tracks, which become events before the writer
        // flushes.
        for stop in self.analytics_stop.values() {
            stop.cancel();
        }
        self.gateway.shutdown().await;
        // Their queues closed with the sessions; each writer finishes its segment and exits.
        let recorders = self.recorders;
        let joined = tokio::task::spawn_blocking(move || {
            for (camera, stream, handle) in recorders {
                handle.join();
                tracing::debug!(%camera, stream, "recorder closed");
            }
        })
        .await;
        if let Err(e) = joined {
            tracing::error!(error = %e, "joining the recorders failed");
        }
    }
}
