//! Multi-object tracker: one object = one track = one event. Pure: detections and time
//! (frame pts) in, [`TrackEvent`]s and [`Crossing`]s out.
//!
//! Association is greedy on IoU between each track's constant-velocity prediction and the
//! detections, with a centre-distance fallback for fast objects; labels of one association
//! group (car/bus/truck, bicycle/motorcycle) may associate, so a flickering class does not
//! split an object, but the track's label is the one with the highest summed score (a bus
//! stays a bus). A track is started (event `Started`) after `min_hits` detections once its
//! label's rule holds (median score, area); it ends after `max_missed` detector runs without
//! it or `max_age_secs` unseen. A stationary object stays one track across heartbeats, and
//! when a stationary track ends (missed detections of a parked car), its place is remembered
//! so that a new detection there does not start a new event.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::decode::Detection;
use crate::geometry::{BBox, Point};
use crate::zones::{Direction, Zones};

/// Per-label thresholds for starting an event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabelRule {
    /// Minimum median score over the track. Default 0.4.
    pub min_median_score: f32,
    /// Minimum box area as a fraction of the frame. Default 0.0005.
    pub min_area: f32,
}

impl Default for LabelRule {
    fn default() -> Self {
        Self { min_median_score: 0.4, min_area: 0.0005 }
    }
}

/// Tracker settings (per camera).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// Minimum IoU between prediction and detection to associate. Default 0.2.
    pub iou_threshold: f32,
    /// Detections needed before a track can start an event. Default 2.
    pub min_hits: u32,
    /// Detector runs without the object before its track ends. Default 5.
    pub max_missed: u32,
    /// Unseen this long, a track ends whatever the run count, seconds (keep it above the
    /// motion gate's heartbeat). Default 30.
    pub max_age_secs: f32,
    /// A track whose centre stays within this fraction of the frame diagonal is stationary.
    /// Default 0.03.
    pub stationary_fraction: f32,
    /// Remember where stationary tracks ended for this long, seconds. Default 600.
    pub parked_memory_secs: f32,
    /// Most path points kept per track (older ones are thinned). Default 200.
    pub max_path_points: usize,
    /// Rule for labels without their own. Default: see [`LabelRule`].
    pub default_rule: LabelRule,
    /// Rules per label.
    pub rules: BTreeMap<String, LabelRule>,
    /// Groups of labels that may associate with each other. Default
    /// `[["car", "bus", "truck"], ["bicycle", "motorcycle"]]`.
    pub label_groups: Vec<Vec<String>>,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        let group = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        Self {
            iou_threshold: 0.2,
            min_hits: 2,
            max_missed: 5,
            max_age_secs: 30.0,
            stationary_fraction: 0.03,
            parked_memory_secs: 600.0,
            max_path_points: 200,
            default_rule: LabelRule::default(),
            rules: BTreeMap::new(),
            label_groups: vec![group(&["car", "bus", "truck"]), group(&["bicycle", "motorcycle"])],
        }
    }
}

/// One point of a track's path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathPoint {
    /// Frame time.
    pub at: Duration,
    /// Box in frame pixels.
    pub bbox: BBox,
    /// Score.
    pub score: f32,
}

/// The frame to use as the event's snapshot: the highest-scoring detection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BestShot {
    /// Frame time (pts) of that frame.
    pub at: Duration,
    /// The object's box in it.
    pub bbox: BBox,
    /// Its score.
    pub score: f32,
}

/// A track as events report it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackSummary {
    /// Track id (unique per tracker).
    pub id: u64,
    /// Label (highest summed score over the track).
    pub label: Arc<str>,
    /// First detection time.
    pub start: Duration,
    /// Last detection time (the end, for `Ended`).
    pub end: Duration,
    /// Highest score.
    pub max_score: f32,
    /// Median score.
    pub median_score: f32,
    /// Boxes over time (thinned when long).
    pub path: Vec<PathPoint>,
    /// Zones entered, in order.
    pub zones: Vec<Arc<str>>,
    /// Lines crossed, in order.
    pub crossings: Vec<(Arc<str>, Direction)>,
    /// Snapshot choice.
    pub best: BestShot,
    /// Whether it has not moved.
    pub stationary: bool,
}

/// What happened to a track.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackEvent {
    /// A new object passed its label's rule.
    Started(TrackSummary),
    /// It entered a zone, crossed a line, or got a better snapshot.
    Updated(TrackSummary),
    /// It is gone.
    Ended(TrackSummary),
}

impl TrackEvent {
    /// The summary inside.
    pub fn summary(&self) -> &TrackSummary {
        match self {
            Self::Started(s) | Self::Updated(s) | Self::Ended(s) => s,
        }
    }
}

/// A started track crossed a counting line.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossing {
    /// Track id.
    pub track: u64,
    /// Line name.
    pub line: Arc<str>,
    /// Track label at the time.
    pub label: Arc<str>,
    /// Direction.
    pub direction: Direction,
    /// Frame time.
    pub at: Duration,
}

#[derive(Debug, Clone)]
struct Track {
    id: u64,
    bbox: BBox,
    velocity: Point,
    last_seen: Duration,
    first_seen: Duration,
    first_center: Point,
    max_shift: f32,
    hits: u32,
    missed: u32,
    scores: Vec<f32>,
    label_scores: BTreeMap<Arc<str>, f32>,
    path: Vec<PathPoint>,
    zones: Vec<Arc<str>>,
    crossings: Vec<(Arc<str>, Direction)>,
    best: BestShot,
    started: bool,
    /// Matched a remembered parked object: no events unless it moves.
    parked: bool,
    frame_diag: f32,
}

#[derive(Debug, Clone)]
struct Parked {
    label: Arc<str>,
    bbox: BBox,
    until: Duration,
}

/// Per-camera tracker state.
#[derive(Debug, Clone)]
pub struct Tracker {
    config: TrackerConfig,
    tracks: Vec<Track>,
    parked: Vec<Parked>,
    next_id: u64,
}

impl Track {
    fn label(&self) -> Arc<str> {
        self.label_scores
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or_else(|| Arc::from(""), |(l, _)| l.clone())
    }

    fn predicted(&self, now: Duration) -> BBox {
        let dt = now.saturating_sub(self.last_seen).as_secs_f32();
        self.bbox.translate(self.velocity.x * dt, self.velocity.y * dt)
    }

    fn stationary(&self, fraction: f32) -> bool {
        // small total displacement and slow (per second, in the same unit): a parked car's
        // jitter between heartbeats passes, an object that just started to move does not
        let limit = fraction * self.frame_diag;
        let speed = (self.velocity.x * self.velocity.x + self.velocity.y * self.velocity.y).sqrt();
        self.hits >= 2 && self.max_shift <= limit && speed <= limit
    }

    fn summary(&self, stationary_fraction: f32) -> TrackSummary {
        let mut sorted = self.scores.clone();
        sorted.sort_by(f32::total_cmp);
        let median = if sorted.is_empty() {
            0.0
        } else if sorted.len() % 2 == 1 {
            sorted[sorted.len() / 2]
        } else {
            (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
        };
        TrackSummary {
            id: self.id,
            label: self.label(),
            start: self.first_seen,
            end: self.last_seen,
            max_score: sorted.last().copied().unwrap_or(0.0),
            median_score: median,
            path: self.path.clone(),
            zones: self.zones.clone(),
            crossings: self.crossings.clone(),
            best: self.best,
            stationary: self.stationary(stationary_fraction),
        }
    }
}

impl Tracker {
    /// A tracker.
    pub fn new(config: TrackerConfig) -> Self {
        Self { config, tracks: Vec::new(), parked: Vec::new(), next_id: 1 }
    }

    fn same_group(&self, a: &str, b: &str) -> bool {
        a == b
            || self.config.label_groups.iter().any(|g| g.iter().any(|x| x == a) && g.iter().any(|x| x == b))
    }

    fn rule(&self, label: &str) -> &LabelRule {
        self.config.rules.get(label).unwrap_or(&self.config.default_rule)
    }

    /// Whether a started track is moving (the motion gate keeps full rate for those).
    pub fn has_moving_tracks(&self) -> bool {
        self.tracks
            .iter()
            .any(|t| !t.parked && t.missed == 0 && !t.stationary(self.config.stationary_fraction))
    }

    /// Live tracks' ids and best-shot times (the pipeline keeps those frames).
    pub fn best_shots(&self) -> impl Iterator<Item = (u64, Duration)> + '_ {
        self.tracks.iter().map(|t| (t.id, t.best.at))
    }

    /// Feeds the detections of one detector run on a `width`×`height` frame taken at `now`.
    pub fn update(
        &mut self,
        now: Duration,
        detections: &[Detection],
        width: u32,
        height: u32,
        zones: &Zones,
    ) -> (Vec<TrackEvent>, Vec<Crossing>) {
        let (fw, fh) = (width.max(1) as f32, height.max(1) as f32);
        let mut events = Vec::new();
        let mut crossings = Vec::new();
        // 1. associate: all candidate pairs, best first
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, t) in self.tracks.iter().enumerate() {
            let pred = t.predicted(now);
            let tl = t.label();
            for (di, d) in detections.iter().enumerate() {
                if !self.same_group(&tl, &d.label) {
                    continue;
                }
                let iou = pred.iou(&d.bbox);
                let score = if iou >= self.config.iou_threshold {
                    1.0 + iou
                } else {
                    let (pc, dc) = (pred.center(), d.bbox.center());
                    let dist = ((pc.x - dc.x).powi(2) + (pc.y - dc.y).powi(2)).sqrt();
                    let limit = 0.5 * pred.width().max(pred.height());
                    let size_ratio = (d.bbox.area() / pred.area().max(1.0)).clamp(0.0, 100.0);
                    if dist < limit && (0.5..=2.0).contains(&size_ratio) {
                        1.0 - dist / limit
                    } else {
                        continue;
                    }
                };
                pairs.push((score, ti, di));
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_done = vec![false; self.tracks.len()];
        let mut det_done = vec![false; detections.len()];
        for (_, ti, di) in pairs {
            if track_done[ti] || det_done[di] {
                continue;
            }
            track_done[ti] = true;
            det_done[di] = true;
            let d = &detections[di];
            let max_points = self.config.max_path_points.max(2);
            let t = &mut self.tracks[ti];
            let dt = now.saturating_sub(t.last_seen).as_secs_f32();
            let (old, new) = (t.bbox.bottom_center(), d.bbox.bottom_center());
            if dt > 0.0 {
                let (oc, nc) = (t.bbox.center(), d.bbox.center());
                let v = Point { x: (nc.x - oc.x) / dt, y: (nc.y - oc.y) / dt };
                t.velocity = Point { x: 0.5 * t.velocity.x + 0.5 * v.x, y: 0.5 * t.velocity.y + 0.5 * v.y };
            }
            t.bbox = d.bbox;
            t.last_seen = now;
            t.hits += 1;
            t.missed = 0;
            t.scores.push(d.score);
            *t.label_scores.entry(d.label.clone()).or_insert(0.0) += d.score;
            let c = d.bbox.center();
            let shift = ((c.x - t.first_center.x).powi(2) + (c.y - t.first_center.y).powi(2)).sqrt();
            t.max_shift = t.max_shift.max(shift);
            if t.path.len() >= max_points {
                // thin: drop every other point of the older half
                let half = t.path.len() / 2;
                let mut i = 0;
                t.path.retain(|_| {
                    i += 1;
                    i > half || i % 2 == 0
                });
            }
            t.path.push(PathPoint { at: now, bbox: d.bbox, score: d.score });
            let mut changed = false;
            if d.score > t.best.score {
                t.best = BestShot { at: now, bbox: d.bbox, score: d.score };
                changed = true;
            }
            let norm = |p: Point| Point { x: p.x / fw, y: p.y / fh };
            for z in zones.zones_at(norm(new)) {
                if !t.zones.contains(z) {
                    t.zones.push(z.clone());
                    changed = true;
                }
            }
            for (line, direction) in zones.crossings(norm(old), norm(new)) {
                t.crossings.push((line.clone(), direction));
                changed = true;
                crossings.push(Crossing {
                    track: t.id,
                    line: line.clone(),
                    label: Arc::from(""),
                    direction,
                    at: now,
                });
            }
            if t.parked && !t.stationary(self.config.stationary_fraction) {
                t.parked = false; // it moves after all: a new object event
            }
            if t.started && changed {
                events.push(TrackEvent::Updated(t.summary(self.config.stationary_fraction)));
            }
        }
        // 2. unmatched tracks miss
        for (t, done) in self.tracks.iter_mut().zip(&track_done) {
            if !done {
                t.missed += 1;
            }
        }
        // 3. new tracks
        for (d, done) in detections.iter().zip(&det_done) {
            if *done {
                continue;
            }
            // a second box on an object already tracked (another class of the same group,
            // which per-class NMS keeps): not a new object
            if self.tracks.iter().any(|t| self.same_group(&t.label(), &d.label) && t.bbox.iou(&d.bbox) >= 0.6)
            {
                continue;
            }
            let parked = self.parked.iter().any(|p| p.label == d.label && p.bbox.iou(&d.bbox) >= 0.5);
            let id = self.next_id;
            self.next_id += 1;
            let mut label_scores = BTreeMap::new();
            label_scores.insert(d.label.clone(), d.score);
            let mut zones_in = Vec::new();
            for z in
                zones.zones_at(Point { x: d.bbox.bottom_center().x / fw, y: d.bbox.bottom_center().y / fh })
            {
                zones_in.push(z.clone());
            }
            self.tracks.push(Track {
                id,
                bbox: d.bbox,
                velocity: Point::default(),
                last_seen: now,
                first_seen: now,
                first_center: d.bbox.center(),
                max_shift: 0.0,
                hits: 1,
                missed: 0,
                scores: vec![d.score],
                label_scores,
                path: vec![PathPoint { at: now, bbox: d.bbox, score: d.score }],
                zones: zones_in,
                crossings: Vec::new(),
                best: BestShot { at: now, bbox: d.bbox, score: d.score },
                started: false,
                parked,
                frame_diag: (fw * fw + fh * fh).sqrt(),
            });
        }
        // 4. start tracks that pass their rule
        let frame_area = fw * fh;
        for i in 0..self.tracks.len() {
            let t = &self.tracks[i];
            if t.started || t.parked || t.hits < self.config.min_hits.max(1) {
                continue;
            }
            let summary = t.summary(self.config.stationary_fraction);
            let rule = self.rule(&summary.label);
            if summary.median_score >= rule.min_median_score && t.bbox.area() >= rule.min_area * frame_area {
                self.tracks[i].started = true;
                events.push(TrackEvent::Started(summary));
            }
        }
        // labels of crossings (tracks may have been updated above); only started tracks count
        crossings.retain_mut(|c| match self.tracks.iter().find(|t| t.id == c.track) {
            Some(t) if t.started => {
                c.label = t.label();
                true
            }
            _ => false,
        });
        // 5. end lost tracks
        let max_age = Duration::from_secs_f32(self.config.max_age_secs.max(0.0));
        let (max_missed, fraction) = (self.config.max_missed.max(1), self.config.stationary_fraction);
        let mut ended = Vec::new();
        self.tracks.retain(|t| {
            let lost = t.missed >= max_missed || now.saturating_sub(t.last_seen) > max_age;
            if lost {
                ended.push(t.clone());
            }
            !lost
        });
        let memory = Duration::from_secs_f32(self.config.parked_memory_secs.max(0.0));
        self.parked.retain(|p| p.until > now);
        for t in ended {
            if t.stationary(fraction) && (t.started || t.parked) {
                self.parked.push(Parked { label: t.label(), bbox: t.bbox, until: now + memory });
            }
            if t.started {
                events.push(TrackEvent::Ended(t.summary(fraction)));
            }
        }
        (events, crossings)
    }

    /// Ends every track (shutdown): `Ended` for the started ones.
    pub fn finish(&mut self) -> Vec<TrackEvent> {
        let fraction = self.config.stationary_fraction;
        self.tracks.drain(..).filter(|t| t.started).map(|t| TrackEvent::Ended(t.summary(fraction))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zones::LineConfig;

    fn det(label: &str, x: f32, score: f32) -> Detection {
        Detection {
            bbox: BBox::new(x, 100.0, x + 80.0, 160.0),
            score,
            label: Arc::from(label),
            class: 2,
            landmarks: vec![],
        }
    }

    fn secs(s: f32) -> Duration {
        Duration::from_secs_f32(s)
    }

    fn kinds(events: &[TrackEvent]) -> Vec<&'static str> {
        events
            .iter()
            .map(|e| match e {
                TrackEvent::Started(_) => "started",
                TrackEvent::Updated(_) => "updated",
                TrackEvent::Ended(_) => "ended",
            })
            .collect()
    }

    #[test]
    fn a_moving_car_is_one_track_one_event_and_crosses_the_line_forward() {
        let zones =
            Zones::new(&[], &[LineConfig { name: "middle".into(), a: [0.5, 0.0], b: [0.5, 1.0] }]).unwrap();
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut all = Vec::new();
        let mut crossings = Vec::new();
        for i in 0..30 {
            let x = 10.0 + i as f32 * 20.0; // 200 px/s at 10 fps
            // the label flickers to truck now and then: still one track, labelled car
            let label = if i % 7 == 3 { "truck" } else { "car" };
            let (e, c) = tr.update(secs(i as f32 * 0.1), &[det(label, x, 0.7)], 640, 360, &zones);
            all.extend(e);
            crossings.extend(c);
            assert!(tr.has_moving_tracks() || i < 1);
        }
        for i in 30..36 {
            let (e, _) = tr.update(secs(i as f32 * 0.1), &[], 640, 360, &zones);
            all.extend(e);
        }
        let k = kinds(&all);
        assert_eq!(k.iter().filter(|k| **k == "started").count(), 1, "{k:?}");
        assert_eq!(k.iter().filter(|k| **k == "ended").count(), 1, "{k:?}");
        assert_eq!(crossings.len(), 1);
        assert_eq!(
            (&*crossings[0].line, &*crossings[0].label, crossings[0].direction),
            ("middle", "car", Direction::Forward)
        );
        let TrackEvent::Ended(s) = all.last().unwrap() else { panic!() };
        assert_eq!(&*s.label, "car");
        assert_eq!(s.start, secs(0.0));
        assert!((s.end.as_secs_f32() - 2.9).abs() < 1e-3);
        assert_eq!(s.crossings.len(), 1);
        assert!(!s.stationary);
        assert_eq!(s.path.len(), 30);
    }

    #[test]
    fn a_parked_car_does_not_fire_again_on_every_heartbeat() {
        let zones = Zones::default();
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut started = 0;
        // seen at each 10 s heartbeat for 10 minutes, sometimes missed by the detector
        for i in 0..60 {
            let dets = if i % 9 == 5 { vec![] } else { vec![det("car", 300.0 + (i % 3) as f32, 0.6)] };
            let (e, _) = tr.update(secs(i as f32 * 10.0), &dets, 640, 360, &zones);
            started += e.iter().filter(|e| matches!(e, TrackEvent::Started(_))).count();
            assert!(i == 0 || !tr.has_moving_tracks(), "run {i}");
        }
        assert_eq!(started, 1);
    }

    #[test]
    fn a_parked_car_lost_for_a_while_is_remembered() {
        let zones = Zones::default();
        let mut tr = Tracker::new(TrackerConfig { max_missed: 2, ..TrackerConfig::default() });
        let mut started = 0;
        let mut feed = |t: f32, dets: Vec<Detection>, tr: &mut Tracker| {
            let (e, _) = tr.update(secs(t), &dets, 640, 360, &zones);
            started += e.iter().filter(|e| matches!(e, TrackEvent::Started(_))).count();
        };
        for i in 0..3 {
            feed(i as f32, vec![det("car", 300.0, 0.6)], &mut tr);
        }
        for i in 3..6 {
            feed(i as f32, vec![], &mut tr); // ends (stationary): remembered
        }
        for i in 6..10 {
            feed(i as f32, vec![det("car", 301.0, 0.6)], &mut tr); // same place again
        }
        assert_eq!(started, 1);
    }

    #[test]
    fn label_rules_filter_weak_and_small_objects_and_bus_is_not_car() {
        let mut config = TrackerConfig::default();
        config.rules.insert("car".into(), LabelRule { min_median_score: 0.5, min_area: 0.0 });
        let zones = Zones::default();
        let mut tr = Tracker::new(config);
        let mut events = Vec::new();
        for i in 0..4 {
            let t = secs(i as f32 * 0.1);
            let (e, _) = tr.update(t, &[det("car", 10.0, 0.45), det("bus", 400.0, 0.8)], 640, 360, &zones);
            events.extend(e);
        }
        let started: Vec<_> = events
            .iter()
            .filter_map(|e| if let TrackEvent::Started(s) = e { Some(&*s.label) } else { None })
            .collect();
        assert_eq!(started, ["bus"]);
    }

    #[test]
    fn a_second_class_on_the_same_object_is_not_a_second_track() {
        let zones = Zones::default();
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut started = 0;
        for i in 0..5 {
            let x = 100.0 + i as f32 * 10.0;
            let mut dets = vec![det("bus", x, 0.7)];
            if i >= 2 {
                dets.push(det("truck", x + 2.0, 0.5));
            }
            let (e, _) = tr.update(secs(i as f32 * 0.1), &dets, 640, 360, &zones);
            started += e.iter().filter(|e| matches!(e, TrackEvent::Started(_))).count();
        }
        assert_eq!(started, 1);
        assert_eq!(tr.tracks.len(), 1);
    }

    #[test]
    fn best_shot_is_the_highest_score() {
        let zones = Zones::default();
        let mut tr = Tracker::new(TrackerConfig::default());
        for (i, s) in [0.5, 0.9, 0.6].iter().enumerate() {
            tr.update(secs(i as f32), &[det("car", 100.0 + i as f32 * 30.0, *s)], 640, 360, &zones);
        }
        let ev = tr.finish();
        let s = ev[0].summary();
        assert_eq!((s.best.at, s.best.score), (secs(1.0), 0.9));
        assert!((s.median_score - 0.6).abs() < 1e-6 && (s.max_score - 0.9).abs() < 1e-6);
    }
}
