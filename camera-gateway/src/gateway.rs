//! The set of running cameras: add, replace and remove them at run time without touching
//! the others.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use panoptes_core::{CameraId, LiveFeed, LiveSource, StatusBoard, StreamPhase};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::fanout::{Fanout, KeyframeQueue, LiveSubscription};
use crate::session::{StreamSpec, initial_status, supervise};

/// A running camera: its streams share a cancellation token.
#[derive(Debug)]
struct RunningCamera {
    cancel: CancellationToken,
    tasks: TaskTracker,
    streams: HashMap<String, Arc<Fanout>>,
}

/// Consumers to attach to a stream when it starts.
#[derive(Debug, Default)]
pub struct StreamSinks {
    /// Bounded queues (recorder, decoder) fed with key-frame resync.
    pub queues: Vec<KeyframeQueue>,
}

/// Running streams by camera and stream name.
type LiveMap = HashMap<(CameraId, String), Arc<Fanout>>;

/// Live access to the gateway's running streams, shareable with the API.
#[derive(Debug, Clone, Default)]
pub struct GatewayLive {
    streams: Arc<RwLock<LiveMap>>,
}

impl LiveSource for GatewayLive {
    fn subscribe(&self, camera: &CameraId, stream: &str) -> Option<LiveFeed> {
        let map = self.streams.read().unwrap_or_else(PoisonError::into_inner);
        let sub = map.get(&(camera.clone(), stream.to_owned()))?.subscribe_live();
        let backlog = sub.backlog.clone();
        let frames =
            futures::stream::unfold(sub, |mut sub| async move { sub.next().await.map(|f| (f, sub)) });
        Some(LiveFeed { backlog, frames: Box::pin(frames) })
    }
}

/// Owns one supervisor task per camera stream.
#[derive(Debug)]
pub struct Gateway {
    live: GatewayLive,
    board: StatusBoard,
    root: CancellationToken,
    cameras: HashMap<CameraId, RunningCamera>,
}

impl Gateway {
    /// A gateway publishing to `board`; every camera stops when `root` is cancelled.
    pub fn new(board: StatusBoard, root: CancellationToken) -> Self {
        Gateway { live: GatewayLive::default(), board, root, cameras: HashMap::new() }
    }

    /// Live access to the running streams.
    pub fn live_source(&self) -> GatewayLive {
        self.live.clone()
    }

    /// The status board the gateway writes.
    pub fn board(&self) -> &StatusBoard {
        &self.board
    }

    /// Starts (or restarts with new settings) a camera with the given streams. An empty
    /// `streams` or `enabled == false` shows the camera as disabled.
    pub async fn set_camera(
        &mut self,
        camera: CameraId,
        enabled: bool,
        streams: Vec<(StreamSpec, StreamSinks)>,
    ) {
        self.remove_camera(&camera).await;
        let cancel = self.root.child_token();
        let tasks = TaskTracker::new();
        let mut fanouts = HashMap::new();
        for (spec, sinks) in streams {
            if !enabled {
                self.board.set(initial_status(&spec, StreamPhase::Disabled));
                continue;
            }
            let fanout = Fanout::new(spec.camera.as_str(), &spec.stream);
            for q in sinks.queues {
                fanout.add_queue(q);
            }
            fanouts.insert(spec.stream.clone(), fanout.clone());
            self.live
                .streams
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert((camera.clone(), spec.stream.clone()), fanout.clone());
            self.board.set(initial_status(&spec, StreamPhase::Connecting));
            tasks.spawn(supervise(spec, self.board.clone(), fanout, cancel.clone()));
        }
        tasks.close();
        let running = RunningCamera { cancel, tasks, streams: fanouts };
        self.cameras.insert(camera, running);
    }

    /// Subscribes a live viewer to a running stream.
    pub fn live(&self, camera: &CameraId, stream: &str) -> Option<LiveSubscription> {
        Some(self.cameras.get(camera)?.streams.get(stream)?.subscribe_live())
    }

    /// Stops a camera's streams and waits for them to end.
    pub async fn remove_camera(&mut self, camera: &CameraId) {
        self.live.streams.write().unwrap_or_else(PoisonError::into_inner).retain(|(c, _), _| c != camera);
        if let Some(running) = self.cameras.remove(camera) {
            running.cancel.cancel();
            running.tasks.wait().await;
            info!(camera = %camera, "camera stopped");
        }
        self.board.remove_camera(camera);
    }

    /// Stops every camera and waits for all of them.
    pub async fn shutdown(mut self) {
        let ids: Vec<CameraId> = self.cameras.keys().cloned().collect();
        for running in self.cameras.values() {
            running.cancel.cancel();
        }
        for id in ids {
            self.remove_camera(&id).await;
        }
    }
}
