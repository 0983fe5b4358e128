//! Detection events: the values producers send, and the writer that stores them.
//!
//! A producer (the analytics pipeline, through the binary) sends a [`NewEvent`] when a
//! track starts and an [`EventUpdate`] when it ends (or when its best snapshot changes),
//! plus [`LineCount`] totals for line-crossing counters. The [`writer`] batches them into
//! PostgreSQL; when the database is unreachable they go to an fsynced [`spool`] file and
//! are replayed in order when it returns. Every record carries an idempotency key, so a
//! replay never duplicates.
//!
//! - [`batcher`]: the writer's decisions (when to write, spool, replay, wait), without I/O.
//! - [`spool`]: the spool file's line format (checksummed JSON) and the blocking file.
//! - [`store`]: the SQL that writes a batch.
//! - [`writer`]: the async task that drives the three, and the [`EventSink`] handle.

pub mod batcher;
pub mod spool;
pub mod store;
pub mod writer;

use std::fmt;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use panoptes_core::{CameraId, NodeId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use writer::{EventSink, EventWriter, WriterConfig, WriterHandle};

/// Limits on producer input. They keep a spool line and a row small.
pub mod limits {
    /// Longest idempotency key in bytes.
    pub const MAX_KEY: usize = 200;
    /// Longest sub-label (plate text, face name) in characters.
    pub const MAX_SUB_LABEL: usize = 100;
    /// Most points in a track's path.
    pub const MAX_PATH_POINTS: usize = 512;
    /// Most zones on one event.
    pub const MAX_ZONES: usize = 32;
    /// Longest zone or line name in bytes.
    pub const MAX_NAME: usize = 64;
    /// Longest snapshot path in bytes.
    pub const MAX_SNAPSHOT_PATH: usize = 512;
}

/// Why an event value is not acceptable. Names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct EventError {
    /// The field, e.g. `bbox.w` or `zones[2]`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

fn bad(field: impl Into<String>, problem: impl Into<String>) -> EventError {
    EventError { field: field.into(), problem: problem.into() }
}

/// An object class: `person`, `bicycle`, `car`, `motorcycle`, `bus`, `truck`, `face`, …
/// One to 32 of `[a-z0-9_]`, starting with a letter.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Label(String);

impl Label {
    /// Validates and wraps a label.
    pub fn new(s: impl Into<String>) -> Result<Self, EventError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(Label(s))
        } else {
            Err(bad("label", format!("{s:?} must be 1 to 32 of a-z, 0-9, '_', starting with a letter")))
        }
    }

    /// The label as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Label {
    type Error = EventError;
    fn try_from(s: String) -> Result<Self, EventError> {
        Label::new(s)
    }
}

impl From<Label> for String {
    fn from(l: Label) -> String {
        l.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A box normalised to the frame: every field in `0..=1`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub w: f32,
    /// Height.
    pub h: f32,
}

impl BBox {
    /// Checks that every field is finite and in `0..=1`; `field` prefixes error names.
    pub fn check(&self, field: &str) -> Result<(), EventError> {
        for (name, v) in [("x", self.x), ("y", self.y), ("w", self.w), ("h", self.h)] {
            if !v.is_finite() || !(0.0..=1.0).contains(&v) {
                return Err(bad(format!("{field}.{name}"), format!("{v} is not in 0..=1")));
            }
        }
        Ok(())
    }

    /// The box as stored (`real[4]`).
    pub fn to_vec(self) -> Vec<f32> {
        vec![self.x, self.y, self.w, self.h]
    }
}

/// One point of a track's path: where the box was `ms` after the event started.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PathPoint {
    /// Milliseconds since the event's start.
    pub ms: u32,
    /// The box at that time.
    pub bbox: BBox,
}

fn path_json(path: &[PathPoint]) -> serde_json::Value {
    serde_json::Value::Array(
        path.iter()
            .map(|p| {
                // Four decimals: a fifth of a pixel at 2000 px, and no f32 noise in JSON.
                let r = |v: f32| (f64::from(v) * 1e4).round() / 1e4;
                serde_json::json!([p.ms, r(p.bbox.x), r(p.bbox.y), r(p.bbox.w), r(p.bbox.h)])
            })
            .collect(),
    )
}

fn check_score(field: &str, v: f32) -> Result<(), EventError> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(bad(field, format!("{v} is not in 0..=1")))
    }
}

fn check_key(key: &str) -> Result<(), EventError> {
    if key.is_empty() || key.len() > limits::MAX_KEY || key.chars().any(char::is_control) {
        return Err(bad("idempotency_key", format!("must be 1 to {} printable bytes", limits::MAX_KEY)));
    }
    Ok(())
}

fn check_common(
    sub_label: Option<&str>,
    score_max: f32,
    score_median: f32,
    bbox: &BBox,
    path: &[PathPoint],
    zones: &[String],
    snapshot_path: Option<&str>,
) -> Result<(), EventError> {
    if let Some(s) = sub_label
        && (s.is_empty() || s.chars().count() > limits::MAX_SUB_LABEL || s.chars().any(char::is_control))
    {
        return Err(bad("sub_label", format!("must be 1 to {} printable characters", limits::MAX_SUB_LABEL)));
    }
    check_score("score_max", score_max)?;
    check_score("score_median", score_median)?;
    if score_median > score_max {
        return Err(bad("score_median", format!("{score_median} is above score_max {score_max}")));
    }
    bbox.check("bbox")?;
    if path.len() > limits::MAX_PATH_POINTS {
        return Err(bad("path", format!("{} points; at most {}", path.len(), limits::MAX_PATH_POINTS)));
    }
    for (i, p) in path.iter().enumerate() {
        p.bbox.check(&format!("path[{i}].bbox"))?;
    }
    if zones.len() > limits::MAX_ZONES {
        return Err(bad("zones", format!("{} zones; at most {}", zones.len(), limits::MAX_ZONES)));
    }
    for (i, z) in zones.iter().enumerate() {
        if z.is_empty() || z.len() > limits::MAX_NAME || z.chars().any(char::is_control) {
            return Err(bad(
                format!("zones[{i}]"),
                format!("must be 1 to {} printable bytes", limits::MAX_NAME),
            ));
        }
    }
    if let Some(p) = snapshot_path
        && (p.is_empty()
            || p.len() > limits::MAX_SNAPSHOT_PATH
            || p.starts_with('/')
            || p.split('/').any(|c| c == ".."))
    {
        return Err(bad("snapshot_path", "must be a relative path without '..', at most 512 bytes"));
    }
    Ok(())
}

fn yes() -> bool {
    true
}

/// A track started: creates the event (once, whatever the number of replays).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The event's id (UUID v7 from the start time), made before the event is queued so
    /// that a spooled event keeps it.
    pub id: Uuid,
    /// Unique per event, stable across replays, e.g. `node/camera/track-id/start-ms`.
    pub idempotency_key: String,
    /// The camera that saw it.
    pub camera: CameraId,
    /// The node that detected it.
    pub node: Option<NodeId>,
    /// What it is.
    pub label: Label,
    /// Plate text or face name, when known.
    pub sub_label: Option<String>,
    /// Highest detection score so far.
    pub score_max: f32,
    /// Median detection score so far.
    pub score_median: f32,
    /// Box of the best snapshot so far.
    pub bbox: BBox,
    /// The track's path so far (decimated by the producer).
    pub path: Vec<PathPoint>,
    /// Zones the object entered.
    pub zones: Vec<String>,
    /// Whether the camera's alert rules accept it (see `analytics::AlertRules`). Spool lines
    /// written before the field existed read as alerts.
    #[serde(default = "yes")]
    pub alert: bool,
    /// When the track started.
    pub start_time: DateTime<Utc>,
    /// The snapshot's path relative to the node's snapshot directory.
    pub snapshot_path: Option<String>,
}

impl NewEvent {
    /// A new event with one detection: score and box; the other fields empty.
    pub fn new(
        idempotency_key: impl Into<String>,
        camera: CameraId,
        label: Label,
        start_time: DateTime<Utc>,
        score: f32,
        bbox: BBox,
    ) -> Self {
        let ms = u64::try_from(start_time.timestamp_millis()).unwrap_or(0);
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, ((ms % 1000) * 1_000_000) as u32);
        NewEvent {
            id: Uuid::new_v7(ts),
            idempotency_key: idempotency_key.into(),
            camera,
            node: None,
            label,
            sub_label: None,
            score_max: score,
            score_median: score,
            bbox,
            path: Vec::new(),
            zones: Vec::new(),
            alert: true,
            start_time,
            snapshot_path: None,
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), EventError> {
        check_key(&self.idempotency_key)?;
        check_common(
            self.sub_label.as_deref(),
            self.score_max,
            self.score_median,
            &self.bbox,
            &self.path,
            &self.zones,
            self.snapshot_path.as_deref(),
        )
    }

    pub(crate) fn path_json(&self) -> serde_json::Value {
        path_json(&self.path)
    }
}

/// A track ended (or its best snapshot changed): the event's final values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventUpdate {
    /// The key the [`NewEvent`] was created with.
    pub idempotency_key: String,
    /// The camera (for metrics and logs; the key identifies the event).
    pub camera: CameraId,
    /// When the track ended; `None` keeps the event ongoing.
    pub end_time: Option<DateTime<Utc>>,
    /// Plate text or face name, when known.
    pub sub_label: Option<String>,
    /// Highest detection score.
    pub score_max: f32,
    /// Median detection score.
    pub score_median: f32,
    /// Box of the best snapshot.
    pub bbox: BBox,
    /// The track's whole path (decimated).
    pub path: Vec<PathPoint>,
    /// Zones the object entered.
    pub zones: Vec<String>,
    /// Whether the camera's alert rules accept it (it may become one on entering a zone).
    #[serde(default = "yes")]
    pub alert: bool,
    /// The best snapshot's path.
    pub snapshot_path: Option<String>,
}

impl EventUpdate {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), EventError> {
        check_key(&self.idempotency_key)?;
        check_common(
            self.sub_label.as_deref(),
            self.score_max,
            self.score_median,
            &self.bbox,
            &self.path,
            &self.zones,
            self.snapshot_path.as_deref(),
        )
    }

    pub(crate) fn path_json(&self) -> serde_json::Value {
        path_json(&self.path)
    }
}

/// Direction of a line crossing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Crossed in the line's positive direction.
    In,
    /// Crossed the other way.
    Out,
}

impl Direction {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// The running total of one line counter over one hour. Sending totals (not deltas)
/// makes the upsert idempotent: the stored count is the largest total seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineCount {
    /// The camera.
    pub camera: CameraId,
    /// The line's id within the camera (same shape as a camera id).
    pub line_id: String,
    /// What crossed.
    pub label: Label,
    /// Which way.
    pub direction: Direction,
    /// The start of the hour (UTC); [`LineCount::new`] truncates.
    pub bucket_start: DateTime<Utc>,
    /// Crossings in this hour so far.
    pub total: u64,
    /// The node that counted.
    pub node: Option<NodeId>,
}

impl LineCount {
    /// A total for the hour that contains `at`.
    pub fn new(
        camera: CameraId,
        line_id: impl Into<String>,
        label: Label,
        direction: Direction,
        at: DateTime<Utc>,
        total: u64,
    ) -> Self {
        let bucket_start = at.duration_trunc(TimeDelta::hours(1)).unwrap_or(at);
        LineCount { camera, line_id: line_id.into(), label, direction, bucket_start, total, node: None }
    }

    /// Checks the line id, the hour boundary and the total.
    pub fn validate(&self) -> Result<(), EventError> {
        if CameraId::new(self.line_id.clone()).is_err() {
            return Err(bad("line_id", "must be 1 to 64 of a-z, 0-9, '-', '_'"));
        }
        if self.bucket_start.timestamp() % 3600 != 0 || self.bucket_start.timestamp_subsec_nanos() != 0 {
            return Err(bad("bucket_start", "must be the start of an hour"));
        }
        if i64::try_from(self.total).is_err() {
            return Err(bad("total", "too large"));
        }
        Ok(())
    }
}

/// One thing for the writer to store: the unit of batching, spooling and replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Record {
    /// A track started.
    Start(NewEvent),
    /// A track ended or changed.
    Update(EventUpdate),
    /// A line counter's hourly total.
    LineCount(LineCount),
}

impl Record {
    /// The camera the record belongs to (for metric labels).
    pub fn camera(&self) -> &CameraId {
        match self {
            Record::Start(e) => &e.camera,
            Record::Update(u) => &u.camera,
            Record::LineCount(c) => &c.camera,
        }
    }

    /// Checks the record's fields.
    pub fn validate(&self) -> Result<(), EventError> {
        match self {
            Record::Start(e) => e.validate(),
            Record::Update(u) => u.validate(),
            Record::LineCount(c) => c.validate(),
        }
    }
}

/// Review state of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    /// Not reviewed yet.
    New,
    /// Seen and kept.
    Acknowledged,
    /// Seen and judged not interesting (false positive, expected visitor…).
    Dismissed,
}

impl ReviewState {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewState::New => "new",
            ReviewState::Acknowledged => "acknowledged",
            ReviewState::Dismissed => "dismissed",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "new" => Some(ReviewState::New),
            "acknowledged" => Some(ReviewState::Acknowledged),
            "dismissed" => Some(ReviewState::Dismissed),
            _ => None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(key: &str, camera: &str, secs: i64) -> NewEvent {
        let t = DateTime::from_timestamp(1_764_000_000 + secs, 0).unwrap();
        let bbox = BBox { x: 0.1, y: 0.2, w: 0.3, h: 0.4 };
        let mut e =
            NewEvent::new(key, CameraId::new(camera).unwrap(), Label::new("person").unwrap(), t, 0.8, bbox);
        // Deterministic ids, so that test records compare equal.
        let mut rand = [0u8; 10];
        rand[..4].copy_from_slice(&crate::events::spool::crc32(key.as_bytes()).to_be_bytes());
        e.id = uuid::Builder::from_unix_timestamp_millis(t.timestamp_millis() as u64, &rand).into_uuid();
        e
    }

    #[test]
    fn labels_are_checked() {
        assert!(Label::new("person").is_ok());
        assert!(Label::new("license_plate").is_ok());
        assert!(Label::new("Person").is_err());
        assert!(Label::new("").is_err());
        assert!(Label::new("9car").is_err());
    }

    #[test]
    fn fields_are_named_in_errors() {
        let mut e = sample("k", "cam", 0);
        assert_eq!(e.validate(), Ok(()));
        e.bbox.w = 1.5;
        assert_eq!(e.validate().unwrap_err().field, "bbox.w");
        e.bbox.w = 0.5;
        e.score_median = 0.9;
        assert_eq!(e.validate().unwrap_err().field, "score_median");
        e.score_median = 0.5;
        e.zones = vec!["ok".into(), String::new()];
        assert_eq!(e.validate().unwrap_err().field, "zones[1]");
        e.zones.clear();
        e.snapshot_path = Some("../etc/passwd".into());
        assert_eq!(e.validate().unwrap_err().field, "snapshot_path");
        e.snapshot_path = None;
        e.idempotency_key = String::new();
        assert_eq!(e.validate().unwrap_err().field, "idempotency_key");
    }

    #[test]
    fn ids_follow_the_start_time() {
        let a = sample("a", "cam", 0);
        let b = sample("b", "cam", 10);
        assert!(a.id < b.id);
        assert_eq!(a.id.get_version_num(), 7);
    }

    #[test]
    fn line_counts_are_truncated_to_the_hour() {
        let t = DateTime::from_timestamp(1_764_000_000 + 1234, 0).unwrap();
        let c = LineCount::new(
            CameraId::new("cam").unwrap(),
            "door",
            Label::new("person").unwrap(),
            Direction::In,
            t,
            3,
        );
        assert_eq!(c.bucket_start.timestamp() % 3600, 0);
        assert_eq!(c.validate(), Ok(()));
    }
}
