//! Cross-camera batching: frames that cameras hand in while the detectors are busy (or at
//! the same moment) go through the models together, one inference per model per batch.
//!
//! One task owns the queue; a batch is the first waiting frame plus every frame already
//! queued behind it, up to `max_batch`. Nothing waits to fill a batch: an idle system runs
//! each frame at once, a busy one batches what piled up, which is when batching pays.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::decode::Detection;
use crate::detector::DetectorError;
use crate::frame::Frame;
use crate::pipeline::SharedDetector;

type Reply = oneshot::Sender<Result<Vec<Detection>, DetectorError>>;

/// Why a frame got no detections.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// A detector failed on the batch.
    #[error(transparent)]
    Detector(#[from] DetectorError),
    /// The batcher has stopped.
    #[error("the detector batcher has stopped")]
    Stopped,
}

/// Hands frames to the shared detectors, batched across cameras. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DetectBatcher {
    tx: mpsc::Sender<(Arc<Frame>, Reply)>,
}

impl DetectBatcher {
    /// Starts the batching task. `permits` bounds inferences running at once; batches hold
    /// at most `max_batch` frames.
    pub fn start(detectors: Vec<SharedDetector>, permits: Arc<Semaphore>, max_batch: usize) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Arc<Frame>, Reply)>(256);
        let detectors: Arc<[SharedDetector]> = detectors.into();
        let max_batch = max_batch.max(1);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                while jobs.len() < max_batch {
                    match rx.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
                let Ok(permit) = permits.clone().acquire_owned().await else { break };
                let frames: Vec<Arc<Frame>> = jobs.iter().map(|(f, _)| f.clone()).collect();
                let dets = detectors.clone();
                let result = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    run_batch(&dets, &frames)
                })
                .await;
                metrics::histogram!("panoptes_detect_batch_size").record(jobs.len() as f64);
                match result {
                    Ok(Ok(per_frame)) => {
                        for ((_, reply), dets) in jobs.into_iter().zip(per_frame) {
                            let _ = reply.send(Ok(dets));
                        }
                    }
                    Ok(Err(e)) => {
                        let msg = e.to_string();
                        for (_, reply) in jobs {
                            let _ = reply.send(Err(DetectorError::Batch(msg.clone())));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "detector task panicked");
                        for (_, reply) in jobs {
                            let _ = reply.send(Err(DetectorError::Batch("detector task panicked".into())));
                        }
                    }
                }
            }
        });
        DetectBatcher { tx }
    }

    /// Detections for one frame (waits for its batch).
    pub async fn detect(&self, frame: Arc<Frame>) -> Result<Vec<Detection>, BatchError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send((frame, reply)).await.map_err(|_| BatchError::Stopped)?;
        Ok(rx.await.map_err(|_| BatchError::Stopped)??)
    }
}

/// Runs every detector once over the batch; returns each frame's detections.
fn run_batch(
    detectors: &[SharedDetector],
    frames: &[Arc<Frame>],
) -> Result<Vec<Vec<Detection>>, DetectorError> {
    let views: Vec<_> = frames.iter().map(|f| f.view()).collect();
    let mut all: Vec<Vec<Detection>> = vec![Vec::new(); frames.len()];
    for d in detectors {
        let mut guard = match d.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let out = guard.detect(&views)?;
        for (acc, mut dets) in all.iter_mut().zip(out) {
            acc.append(&mut dets);
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::{Duration, SystemTime};

    use panoptes_core::{CameraId, Pts90k};

    use super::*;
    use crate::detector::Detector;
    use crate::frame::FrameRef;
    use crate::geometry::BBox;

    /// Sleeps on its first call (so requests pile up), records batch sizes, and answers with
    /// one detection whose box width is the frame's width (to check the mapping back).
    struct Slow {
        batches: Arc<Mutex<Vec<usize>>>,
    }

    impl Detector for Slow {
        fn name(&self) -> &str {
            "slow"
        }

        fn detect(&mut self, frames: &[FrameRef<'_>]) -> Result<Vec<Vec<Detection>>, DetectorError> {
            let first = {
                let mut b = self.batches.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                b.push(frames.len());
                b.len() == 1
            };
            if first {
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(frames
                .iter()
                .map(|f| {
                    vec![Detection {
                        bbox: BBox::new(0.0, 0.0, f.width as f32, 1.0),
                        score: 0.9,
                        label: Arc::from("car"),
                        class: 2,
                        landmarks: Vec::new(),
                    }]
                })
                .collect())
        }
    }

    fn frame(camera: &str, width: u32) -> Arc<Frame> {
        Arc::new(Frame {
            camera: CameraId::new(camera).unwrap_or_else(|e| unreachable!("{e}")),
            pts: Pts90k(0),
            received: SystemTime::now(),
            width,
            height: 2,
            keyframe: true,
            rgb: vec![0u8; width as usize * 2 * 3].into(),
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_of_several_cameras_share_one_inference_when_ready_together() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let det: SharedDetector = Arc::new(std::sync::Mutex::new(Slow { batches: batches.clone() }));
        let batcher = DetectBatcher::start(vec![det], Arc::new(Semaphore::new(1)), 8);
        // The first frame keeps the detector busy; four cameras hand in frames meanwhile.
        let b0 = batcher.clone();
        let first = tokio::spawn(async move { b0.detect(frame("cam0", 10)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut rest = Vec::new();
        for i in 1..=4u32 {
            let b = batcher.clone();
            rest.push(tokio::spawn(async move { b.detect(frame(&format!("cam{i}"), 10 + i)).await }));
        }
        let got = first.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got[0].bbox.x2, 10.0);
        for (i, r) in rest.into_iter().enumerate() {
            let dets = r.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(dets.len(), 1);
            assert_eq!(dets[0].bbox.x2, (11 + i) as f32, "each camera gets its own frame's detections");
        }
        let sizes = batches.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        assert_eq!(sizes, [1, 4], "the four waiting frames went through as one batch");
    }
}
