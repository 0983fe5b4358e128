//! Fan-out of one stream's frames to its consumers, with the drop policy of the house:
//!
//! - recorder and decoder: bounded queues; when one is full the frame is dropped and that
//!   queue skips ahead to the next key frame (a P-frame without its references is useless);
//! - live viewers: a broadcast channel plus the frames since the last key frame, so a new
//!   viewer starts at once; a lagging viewer resyncs at the next key frame and only hurts
//!   itself.
//!
//! Every drop is counted by camera, stream, consumer and reason.

use std::sync::{Arc, Mutex, PoisonError};

use panoptes_core::EncodedFrame;
use tokio::sync::{broadcast, mpsc};

/// Frames as shared by every consumer.
pub type SharedFrame = Arc<EncodedFrame>;

/// The most frames kept since the last key frame (a 10 s GOP at 30 fps); beyond it the
/// cache is cleared until the next key frame.
const MAX_GOP_FRAMES: usize = 300;
/// Broadcast capacity: about 4 s at 30 fps.
const LIVE_CAPACITY: usize = 128;

fn count_drop(camera: &str, stream: &str, consumer: &'static str, reason: &'static str, n: u64) {
    metrics::counter!("panoptes_frames_dropped_total",
        "camera" => camera.to_owned(), "stream" => stream.to_owned(),
        "consumer" => consumer, "reason" => reason)
    .increment(n);
}

/// A bounded queue to one consumer that resyncs at key frames after a drop.
#[derive(Debug)]
pub struct KeyframeQueue {
    consumer: &'static str,
    tx: mpsc::Sender<SharedFrame>,
    waiting_for_key: bool,
}

/// What [`KeyframeQueue::offer`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued.
    Sent,
    /// Dropped: the queue was full.
    Full,
    /// Dropped: waiting for a key frame after an earlier drop.
    Resync,
    /// The consumer has gone away.
    Closed,
}

impl KeyframeQueue {
    /// Wraps the sending side of a bounded channel; `consumer` labels the metrics.
    pub fn new(consumer: &'static str, tx: mpsc::Sender<SharedFrame>) -> Self {
        // A consumer must start at a key frame.
        KeyframeQueue { consumer, tx, waiting_for_key: true }
    }

    /// Offers a frame without waiting.
    pub fn offer(&mut self, frame: &SharedFrame) -> Offer {
        if self.waiting_for_key && !frame.keyframe {
            return Offer::Resync;
        }
        match self.tx.try_send(frame.clone()) {
            Ok(()) => {
                self.waiting_for_key = false;
                Offer::Sent
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.waiting_for_key = true;
                Offer::Full
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Closed,
        }
    }
}

/// A new live viewer's start: the frames since the last key frame, then the live channel.
#[derive(Debug)]
pub struct LiveSubscription {
    /// Frames since the last key frame (starts with it), to send at once.
    pub backlog: Vec<SharedFrame>,
    rx: broadcast::Receiver<SharedFrame>,
    waiting_for_key: bool,
    camera: String,
    stream: String,
}

impl LiveSubscription {
    /// The next frame to send, skipping to the next key frame after falling behind.
    /// `None` when the stream is gone.
    pub async fn next(&mut self) -> Option<SharedFrame> {
        loop {
            match self.rx.recv().await {
                Ok(f) if self.waiting_for_key && !f.keyframe => {
                    count_drop(&self.camera, &self.stream, "live", "resync", 1);
                }
                Ok(f) => {
                    self.waiting_for_key = false;
                    return Some(f);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    count_drop(&self.camera, &self.stream, "live", "lagged", n);
                    metrics::counter!("panoptes_live_resyncs_total",
                        "camera" => self.camera.clone(), "stream" => self.stream.clone())
                    .increment(1);
                    self.waiting_for_key = true;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// The fan-out point of one stream.
#[derive(Debug)]
pub struct Fanout {
    camera: String,
    stream: String,
    live: broadcast::Sender<SharedFrame>,
    gop: Mutex<Vec<SharedFrame>>,
    queues: Mutex<Vec<KeyframeQueue>>,
}

impl Fanout {
    /// A fan-out with no consumers yet.
    pub fn new(camera: &str, stream: &str) -> Arc<Self> {
        Arc::new(Fanout {
            camera: camera.to_owned(),
            stream: stream.to_owned(),
            live: broadcast::channel(LIVE_CAPACITY).0,
            gop: Mutex::new(Vec::new()),
            queues: Mutex::new(Vec::new()),
        })
    }

    /// Adds a queue consumer (recorder, decoder).
    pub fn add_queue(&self, q: KeyframeQueue) {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner).push(q);
    }

    /// Subscribes a live viewer.
    pub fn subscribe_live(&self) -> LiveSubscription {
        // Under the GOP lock, so no frame is both in the backlog and on the channel, and
        // none is in neither.
        let gop = self.gop.lock().unwrap_or_else(PoisonError::into_inner);
        LiveSubscription {
            backlog: gop.clone(),
            rx: self.live.subscribe(),
            waiting_for_key: gop.is_empty(),
            camera: self.camera.clone(),
            stream: self.stream.clone(),
        }
    }

    /// Live viewers subscribed now.
    pub fn live_viewers(&self) -> usize {
        self.live.receiver_count()
    }

    /// Distributes one frame; returns how many consumers dropped it.
    pub fn publish(&self, frame: SharedFrame) -> u64 {
        let mut dropped = 0;
        {
            let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
            queues.retain_mut(|q| match q.offer(&frame) {
                Offer::Sent => true,
                Offer::Full => {
                    count_drop(&self.camera, &self.stream, q.consumer, "queue_full", 1);
                    dropped += 1;
                    true
                }
                Offer::Resync => {
                    count_drop(&self.camera, &self.stream, q.consumer, "resync", 1);
                    dropped += 1;
                    true
                }
                Offer::Closed => false,
            });
        }
        let mut gop = self.gop.lock().unwrap_or_else(PoisonError::into_inner);
        if frame.keyframe {
            gop.clear();
            gop.push(frame.clone());
        } else if !gop.is_empty() && gop.len() < MAX_GOP_FRAMES {
            gop.push(frame.clone());
        } else {
            gop.clear();
        }
        // No receivers is not an error: nobody is watching.
        let _ = self.live.send(frame);
        dropped
    }

    /// Forgets the cached GOP (the session ended; the next frames start afresh).
    pub fn reset(&self) {
        self.gop.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use bytes::Bytes;
    use panoptes_core::{CameraId, Pts90k, VideoCodec};

    use super::*;

    fn frame(i: i64, keyframe: bool) -> SharedFrame {
        Arc::new(EncodedFrame {
            camera: CameraId::new("cam").unwrap_or_else(|e| unreachable!("{e}")),
            stream: "main".into(),
            codec: VideoCodec::H264,
            pts: Pts90k(i * 3600),
            rtp_timestamp: i * 3600,
            received: SystemTime::now(),
            keyframe,
            params_epoch: 0,
            data: Bytes::from_static(b"\0\0\x01\x65"),
        })
    }

    #[test]
    fn queue_starts_at_a_keyframe_and_resyncs_after_a_full_drop() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut q = KeyframeQueue::new("recorder", tx);
        assert_eq!(q.offer(&frame(0, false)), Offer::Resync);
        assert_eq!(q.offer(&frame(1, true)), Offer::Sent);
        assert_eq!(q.offer(&frame(2, false)), Offer::Sent);
        assert_eq!(q.offer(&frame(3, false)), Offer::Full);
        assert!(rx.try_recv().is_ok());
        assert_eq!(q.offer(&frame(4, false)), Offer::Resync, "room again, but no key frame yet");
        assert_eq!(q.offer(&frame(5, true)), Offer::Sent);
        drop(rx);
        assert_eq!(q.offer(&frame(6, true)), Offer::Closed);
    }

    #[tokio::test]
    async fn new_viewer_gets_the_gop_then_live_frames() {
        let fan = Fanout::new("cam", "main");
        fan.publish(frame(0, false)); // before any key frame: not cached
        fan.publish(frame(1, true));
        fan.publish(frame(2, false));
        let mut sub = fan.subscribe_live();
        let backlog: Vec<i64> = sub.backlog.iter().map(|f| f.pts.0 / 3600).collect();
        assert_eq!(backlog, [1, 2]);
        fan.publish(frame(3, false));
        assert_eq!(sub.next().await.map(|f| f.pts.0 / 3600), Some(3));
        assert_eq!(fan.live_viewers(), 1);
    }

    #[tokio::test]
    async fn lagging_viewer_resyncs_at_the_next_keyframe() {
        let fan = Fanout::new("cam", "main");
        fan.publish(frame(0, true));
        let mut sub = fan.subscribe_live();
        for i in 1..(LIVE_CAPACITY as i64 + 50) {
            fan.publish(frame(i, false));
        }
        let k = LIVE_CAPACITY as i64 + 50;
        fan.publish(frame(k, true));
        fan.publish(frame(k + 1, false));
        assert_eq!(sub.next().await.map(|f| f.pts.0 / 3600), Some(k));
        assert_eq!(sub.next().await.map(|f| f.pts.0 / 3600), Some(k + 1));
    }

    #[test]
    fn full_consumer_does_not_block_others() {
        let fan = Fanout::new("cam", "main");
        let (slow_tx, _slow_rx) = mpsc::channel(1);
        let (fast_tx, mut fast_rx) = mpsc::channel(100);
        fan.add_queue(KeyframeQueue::new("recorder", slow_tx));
        fan.add_queue(KeyframeQueue::new("decoder", fast_tx));
        let mut dropped = 0;
        for i in 0..10 {
            dropped += fan.publish(frame(i, i % 5 == 0));
        }
        let mut got = 0;
        while fast_rx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, 10);
        assert_eq!(dropped, 9, "slow queue took one frame and dropped the rest");
    }
}
