//! What notifications say, without I/O: the `NOTIFY panoptes_events` announcement, the JSON
//! payload (`{type, event}`, the event as `GET /api/events/{id}` shows it), the MQTT topic
//! layout, the count of active objects per camera and label, and a camera's stream state.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use panoptes_core::{CameraId, StreamPhase, StreamStatus};
use panoptes_storage::queries::EventRow;
use serde::Serialize;
use uuid::Uuid;

use crate::routes::events::EventDto;

/// What happened to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A track started: a new event.
    New,
    /// An ongoing event changed (score, box, snapshot, sub label).
    Update,
    /// The track ended.
    End,
    /// Someone acknowledged or dismissed the event.
    Review,
}

impl Kind {
    /// Every kind, in the order of an event's life.
    pub const ALL: [Kind; 4] = [Kind::New, Kind::Update, Kind::End, Kind::Review];

    /// The name used in payloads, headers and the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::New => "new",
            Kind::Update => "update",
            Kind::End => "end",
            Kind::Review => "review",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s names.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The `kind` of a `panoptes_events` notification (`start`, `update`, `end`, `review`).
    fn from_notification(s: &str) -> Option<Kind> {
        match s {
            "start" => Some(Kind::New),
            "update" => Some(Kind::Update),
            "end" => Some(Kind::End),
            "review" => Some(Kind::Review),
            _ => None,
        }
    }
}

/// A `NOTIFY panoptes_events` payload: which event changed, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Announcement {
    pub(crate) id: Uuid,
    pub(crate) kind: Kind,
}

/// Parses `{"id": …, "camera": …, "kind": "start|update|end|review", …}`.
pub(crate) fn parse_announcement(payload: &str) -> Option<Announcement> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    let id = Uuid::try_parse(v.get("id")?.as_str()?).ok()?;
    let kind = Kind::from_notification(v.get("kind")?.as_str()?)?;
    Some(Announcement { id, kind })
}

/// An event after a change, ready for every sink: the JSON body is made once and shared.
#[derive(Debug, Clone)]
pub(crate) struct Notice {
    pub(crate) kind: Kind,
    pub(crate) id: Uuid,
    pub(crate) camera: CameraId,
    pub(crate) label: String,
    pub(crate) start_time: DateTime<Utc>,
    pub(crate) ended: bool,
    pub(crate) alert: bool,
    /// `{"type": kind, "event": {…}}`.
    pub(crate) body: Bytes,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: Kind,
    event: &'a EventDto,
}

impl Notice {
    /// The notice for `row` after a change of `kind`.
    pub(crate) fn new(kind: Kind, row: EventRow) -> Result<Notice, serde_json::Error> {
        let (id, camera, label, start_time) = (row.id, row.camera.clone(), row.label.clone(), row.start_time);
        let (ended, alert) = (row.end_time.is_some(), row.alert);
        let event = EventDto::from(row);
        let body = Bytes::from(serde_json::to_vec(&Body { kind, event: &event })?);
        Ok(Notice { kind, id, camera, label, start_time, ended, alert, body })
    }
}

/// The MQTT topic layout under one prefix (like Frigate's):
///
/// - `<prefix>/available`: `online` / `offline` (retained; `offline` is the last will);
/// - `<prefix>/events`: every event change, `{"type", "event"}`;
/// - `<prefix>/<camera>/<label>`: how many objects of that label the camera tracks now;
/// - `<prefix>/<camera>/status`: the camera's stream state (retained).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Topics {
    prefix: String,
}

impl Topics {
    pub(crate) fn new(prefix: &str) -> Self {
        Topics { prefix: prefix.trim_end_matches('/').to_owned() }
    }

    pub(crate) fn available(&self) -> String {
        format!("{}/available", self.prefix)
    }

    pub(crate) fn events(&self) -> String {
        format!("{}/events", self.prefix)
    }

    /// Camera ids and labels are `[a-z0-9_-]`: never a topic wildcard or level separator.
    pub(crate) fn count(&self, camera: &CameraId, label: &str) -> String {
        format!("{}/{camera}/{label}", self.prefix)
    }

    pub(crate) fn status(&self, camera: &CameraId) -> String {
        format!("{}/{camera}/status", self.prefix)
    }
}

/// Objects tracked right now, per camera and label: the events that started and have not
/// ended. A track whose end never comes (its node died) is forgotten after [`Self::max_age`].
#[derive(Debug)]
pub(crate) struct ActiveObjects {
    active: HashMap<(CameraId, String), HashMap<Uuid, DateTime<Utc>>>,
    max_age: TimeDelta,
}

impl Default for ActiveObjects {
    fn default() -> Self {
        ActiveObjects { active: HashMap::new(), max_age: TimeDelta::hours(1) }
    }
}

impl ActiveObjects {
    /// Applies a notice; returns the counts that changed, as `(camera, label, count)`.
    pub(crate) fn apply(&mut self, notice: &Notice, now: DateTime<Utc>) -> Vec<(CameraId, String, usize)> {
        let mut touched: HashSet<(CameraId, String)> = HashSet::new();
        let mut before: HashMap<(CameraId, String), usize> = HashMap::new();
        // Forget tracks older than max_age.
        let oldest = now - self.max_age;
        for (key, ids) in &mut self.active {
            let n = ids.len();
            ids.retain(|_, started| *started >= oldest);
            if ids.len() != n {
                before.insert(key.clone(), n);
                touched.insert(key.clone());
            }
        }
        let key = (notice.camera.clone(), notice.label.clone());
        let ids = self.active.entry(key.clone()).or_default();
        before.entry(key.clone()).or_insert(ids.len());
        match notice.kind {
            Kind::New | Kind::Update if !notice.ended && notice.start_time >= oldest => {
                ids.insert(notice.id, notice.start_time);
            }
            Kind::New | Kind::Update | Kind::End => {
                ids.remove(&notice.id);
            }
            Kind::Review => {}
        }
        touched.insert(key);
        let mut changed: Vec<(CameraId, String, usize)> = touched
            .into_iter()
            .filter_map(|k| {
                let now_n = self.active.get(&k).map_or(0, HashMap::len);
                (before.get(&k).copied() != Some(now_n)).then_some((k.0, k.1, now_n))
            })
            .collect();
        self.active.retain(|_, ids| !ids.is_empty());
        changed.sort();
        changed
    }
}

/// A camera's stream state as published on `<prefix>/<camera>/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct CameraState {
    /// `streaming` (every enabled stream streams), `degraded` (some do), `disabled` (every
    /// stream is), else the phase of its first stream that is not streaming (`connecting`,
    /// `retrying`, `auth_failed`).
    pub(crate) state: &'static str,
    /// Each stream's phase by stream name.
    pub(crate) streams: BTreeMap<String, &'static str>,
}

/// The state of every camera on the board.
pub(crate) fn camera_states(board: &[StreamStatus]) -> BTreeMap<CameraId, CameraState> {
    let mut by_camera: BTreeMap<CameraId, Vec<&StreamStatus>> = BTreeMap::new();
    for s in board {
        by_camera.entry(s.camera.clone()).or_default().push(s);
    }
    by_camera
        .into_iter()
        .map(|(camera, streams)| {
            let enabled: Vec<&&StreamStatus> =
                streams.iter().filter(|s| !matches!(s.phase, StreamPhase::Disabled)).collect();
            let streaming =
                enabled.iter().filter(|s| matches!(s.phase, StreamPhase::Streaming { .. })).count();
            let state = if enabled.is_empty() {
                "disabled"
            } else if streaming == enabled.len() {
                "streaming"
            } else if streaming > 0 {
                "degraded"
            } else {
                enabled[0].phase.name()
            };
            let streams = streams.iter().map(|s| (s.stream.clone(), s.phase.name())).collect();
            (camera, CameraState { state, streams })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use panoptes_storage::events::{BBox, ReviewState};
    use panoptes_storage::queries::EventRow;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000 + secs, 0).unwrap()
    }

    pub(crate) fn row(camera: &str, label: &str, start: i64, end: Option<i64>) -> EventRow {
        EventRow {
            id: Uuid::now_v7(),
            camera: CameraId::new(camera).unwrap(),
            node: Some("n1".into()),
            label: label.into(),
            sub_label: Some("AB-123".into()),
            score_max: 0.875,
            score_median: 0.75,
            bbox: BBox { x: 0.125, y: 0.25, w: 0.5, h: 0.5 },
            zones: vec!["drive".into()],
            alert: true,
            start_time: t(start),
            end_time: end.map(t),
            snapshot_path: Some("gate/x.jpg".into()),
            review_state: ReviewState::New,
            reviewed_by: None,
            reviewed_at: None,
            review_note: None,
        }
    }

    #[test]
    fn announcements_parse_the_storage_notifications() {
        let id = Uuid::now_v7();
        for (kind, expected) in
            [("start", Kind::New), ("update", Kind::Update), ("end", Kind::End), ("review", Kind::Review)]
        {
            let p = format!(r#"{{"id":"{id}","camera":"gate","label":"car","state":"new","kind":"{kind}"}}"#);
            assert_eq!(parse_announcement(&p), Some(Announcement { id, kind: expected }));
        }
        assert_eq!(parse_announcement(r#"{"id":"nope","kind":"start"}"#), None);
        assert_eq!(parse_announcement(&format!(r#"{{"id":"{id}","kind":"deleted"}}"#)), None);
        assert_eq!(parse_announcement("not json"), None);
    }

    #[test]
    fn the_payload_is_type_and_the_api_event() -> Result<(), serde_json::Error> {
        let r = row("gate", "car", 0, Some(5));
        let id = r.id;
        let n = Notice::new(Kind::End, r)?;
        let v: serde_json::Value = serde_json::from_slice(&n.body)?;
        assert_eq!(v["type"], "end");
        let e = &v["event"];
        assert_eq!(e["id"], id.to_string());
        assert_eq!((e["camera"].as_str(), e["label"].as_str()), (Some("gate"), Some("car")));
        assert_eq!(e["sub_label"], "AB-123");
        assert_eq!(e["bbox"], serde_json::json!([0.125, 0.25, 0.5, 0.5]));
        assert_eq!(e["zones"], serde_json::json!(["drive"]));
        assert_eq!(e["start_time"], "2025-11-24T16:00:00Z");
        assert_eq!(e["end_time"], "2025-11-24T16:00:05Z");
        assert_eq!(e["review_state"], "new");
        assert_eq!(e["alert"], true);
        // Exactly the API's fields: the payload is `EventDto`.
        let keys: Vec<&str> =
            e.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        assert!(!keys.contains(&"snapshot_path") && !keys.contains(&"node"), "{keys:?}");
        assert!(n.ended && n.alert);
        Ok(())
    }

    #[test]
    fn topics_follow_the_documented_layout() -> Result<(), panoptes_core::IdError> {
        let t = Topics::new("home/nvr/");
        let cam = CameraId::new("front-door")?;
        assert_eq!(t.available(), "home/nvr/available");
        assert_eq!(t.events(), "home/nvr/events");
        assert_eq!(t.count(&cam, "person"), "home/nvr/front-door/person");
        assert_eq!(t.status(&cam), "home/nvr/front-door/status");
        Ok(())
    }

    #[test]
    fn active_objects_count_started_tracks_until_they_end() -> Result<(), serde_json::Error> {
        let mut a = ActiveObjects::default();
        let now = t(10);
        let p1 = row("gate", "person", 0, None);
        let p2 = row("gate", "person", 1, None);
        let c1 = row("gate", "car", 2, None);
        let cam = CameraId::new("gate").unwrap_or_else(|_| unreachable!());
        let count =
            |v: Vec<(CameraId, String, usize)>| v.into_iter().map(|(_, l, n)| (l, n)).collect::<Vec<_>>();
        assert_eq!(count(a.apply(&Notice::new(Kind::New, p1.clone())?, now)), [("person".into(), 1)]);
        assert_eq!(count(a.apply(&Notice::new(Kind::New, p2.clone())?, now)), [("person".into(), 2)]);
        assert_eq!(count(a.apply(&Notice::new(Kind::New, c1.clone())?, now)), [("car".into(), 1)]);
        // An update of a running track and a review change nothing.
        assert!(a.apply(&Notice::new(Kind::Update, p1.clone())?, now).is_empty());
        assert!(a.apply(&Notice::new(Kind::Review, p1.clone())?, now).is_empty());
        let mut p1_end = p1.clone();
        p1_end.end_time = Some(t(9));
        assert_eq!(a.apply(&Notice::new(Kind::End, p1_end)?, now), [(cam.clone(), "person".into(), 1)]);
        // A start seen only after its end (both in one batch) never counts.
        let quick = row("gate", "dog", 3, Some(4));
        assert!(a.apply(&Notice::new(Kind::New, quick)?, now).is_empty());
        // Tracks whose end never came are forgotten after an hour.
        let later = now + TimeDelta::hours(2);
        let mut changed = a.apply(&Notice::new(Kind::Review, c1)?, later);
        changed.sort();
        assert_eq!(changed, [(cam.clone(), "car".into(), 0), (cam, "person".into(), 0)]);
        Ok(())
    }

    fn stream(camera: &str, name: &str, phase: StreamPhase) -> StreamStatus {
        StreamStatus {
            camera: CameraId::new(camera).unwrap(),
            stream: name.into(),
            roles: vec![],
            url: panoptes_core::redact(&url::Url::parse("rtsp://h/x").unwrap()),
            phase,
            reconnects: 0,
            frames: 0,
            dropped_frames: 0,
        }
    }

    #[test]
    fn camera_state_summarises_its_streams() {
        let streaming = || StreamPhase::Streaming {
            codec: "avc1".into(),
            width: 1,
            height: 1,
            fps: 1.0,
            bitrate_bps: 1.0,
            last_frame_unix_ms: 0,
        };
        let retrying = || StreamPhase::Retrying { last_error: "x".into(), next_attempt_unix_ms: 0 };
        let board = [
            stream("a", "main", streaming()),
            stream("a", "sub", streaming()),
            stream("b", "main", streaming()),
            stream("b", "sub", retrying()),
            stream("c", "main", StreamPhase::Disabled),
            stream("d", "main", StreamPhase::Disabled),
            stream("d", "sub", retrying()),
        ];
        let s = camera_states(&board);
        let states: Vec<(&str, &str)> = s.iter().map(|(c, st)| (c.as_str(), st.state)).collect();
        assert_eq!(states, [("a", "streaming"), ("b", "degraded"), ("c", "disabled"), ("d", "retrying")]);
        let json = serde_json::to_value(&s[&CameraId::new("b").unwrap()]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"state": "degraded", "streams": {"main": "streaming", "sub": "retrying"}})
        );
    }
}
