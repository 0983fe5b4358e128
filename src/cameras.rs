//! The running set of cameras, applied from configuration: at start, and again on every
//! reload (SIGHUP), touching only the cameras whose settings changed.

use std::collections::{BTreeMap, HashMap};

use panoptes_camera_gateway::Gateway;
use panoptes_core::{CameraId, StatusBoard};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::ResolvedCamera;
use crate::serve::{CameraDecoder, attach_decoders, stream_specs};

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

/// Cameras, their gateway sessions and their decoders.
#[derive(Debug)]
pub struct Cameras {
    gateway: Gateway,
    current: BTreeMap<CameraId, ResolvedCamera>,
    decoders: HashMap<CameraId, Vec<CameraDecoder>>,
}

impl Cameras {
    /// An empty set publishing to `board`.
    pub fn new(board: StatusBoard) -> Self {
        // Not a child of the process's root token: shutdown stops cameras in its own turn.
        Cameras {
            gateway: Gateway::new(board, CancellationToken::new()),
            current: BTreeMap::new(),
            decoders: HashMap::new(),
        }
    }

    /// Live access to the running streams, for the API.
    pub fn live_source(&self) -> panoptes_camera_gateway::GatewayLive {
        self.gateway.live_source()
    }

    /// Makes the running set match `wanted`.
    pub async fn apply(&mut self, wanted: &[ResolvedCamera]) -> ChangeReport {
        let mut report = ChangeReport::default();
        let wanted_ids: BTreeMap<&CameraId, &ResolvedCamera> = wanted.iter().map(|c| (&c.id, c)).collect();
        let gone: Vec<CameraId> =
            self.current.keys().filter(|id| !wanted_ids.contains_key(id)).cloned().collect();
        for id in gone {
            self.gateway.remove_camera(&id).await;
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
            let (plans, handles) = attach_decoders(cam, stream_specs(cam));
            self.gateway.set_camera(cam.id.clone(), cam.enabled, plans).await;
            self.decoders.insert(cam.id.clone(), handles);
            self.current.insert(cam.id.clone(), cam.clone());
        }
        report
    }

    /// Stops every camera.
    pub async fn shutdown(self) {
        self.gateway.shutdown().await;
    }
}
