//! RTSP ingest for Panoptes.
//!
//! One supervised task per camera stream connects with [retina] (RTP over TCP by default),
//! keeps the session alive through drops, freezes and restarts of the camera (timeouts on
//! every RTSP request, a no-frame watchdog, reconnect with exponential backoff and jitter,
//! a slower schedule after authentication failures) and publishes the stream's state to the
//! shared [`panoptes_core::StatusBoard`] and to metrics.
//!
//! What this crate must not do: touch the database, the disk or HTTP. The binary wires its
//! output to the recorder, the live relay and analytics. Credentials are passed to retina
//! separately from the URL, so no URL this crate logs or publishes carries them.

mod backoff;
pub mod decode;
mod fanout;
mod gateway;
mod rate;
mod session;
mod timeline;

pub use backoff::{Backoff, BackoffPolicy};
pub use fanout::{Fanout, KeyframeQueue, LiveSubscription, Offer, SharedFrame};
pub use gateway::{Gateway, GatewayLive, StreamSinks};
pub use rate::RateWindow;
pub use session::{Credentials, SessionError, StreamSpec, Timeouts, Transport};
pub use timeline::{Step, Timeline};
