//! Zones (polygons) and counting lines, in frame units (0..1 on both axes, y down), so a
//! configuration survives a change of detect resolution.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::geometry::Point;

/// A zone as configured.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Name (appears in events).
    pub name: String,
    /// Corners in frame units `[x, y]`, at least 3.
    pub polygon: Vec<[f32; 2]>,
}

/// A counting line as configured.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    /// Name (appears in counts).
    pub name: String,
    /// Start point `[x, y]` in frame units.
    pub a: [f32; 2],
    /// End point.
    pub b: [f32; 2],
}

/// Which events are alerts (the review queue, the wall's pulse, recordings held from
/// retention); every event is recorded and searchable either way.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertRules {
    /// Labels that raise alerts; empty means every label.
    pub labels: Vec<String>,
    /// Zones an object must enter to raise an alert; empty means anywhere in the frame.
    pub required_zones: Vec<String>,
}

impl AlertRules {
    /// Whether an object labelled `label` that entered `zones` is an alert.
    pub fn is_alert<Z: AsRef<str>>(&self, label: &str, zones: &[Z]) -> bool {
        let label_ok = self.labels.is_empty() || self.labels.iter().any(|l| l == label);
        let zone_ok = self.required_zones.is_empty()
            || zones.iter().any(|z| self.required_zones.iter().any(|r| r == z.as_ref()));
        label_ok && zone_ok
    }

    /// Fails on a required zone that `zones` does not define.
    pub fn check(&self, zones: &[ZoneConfig]) -> Result<(), ZoneError> {
        match self.required_zones.iter().find(|r| !zones.iter().any(|z| &z.name == *r)) {
            Some(r) => Err(ZoneError {
                what: "alerts.required_zones",
                name: r.clone(),
                message: "is not one of this camera's zones".into(),
            }),
            None => Ok(()),
        }
    }
}

/// Which way an object crossed a line. Looking along the line from `a` to `b` in the image
/// (y down), `Forward` goes from its left-hand image side to the right-hand one as drawn:
/// for a line drawn top to bottom, `Forward` is left → right in the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the side where `cross(b − a, p − a) > 0` to the other.
    Forward,
    /// The opposite.
    Backward,
}

/// Why a zone or line configuration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{what} `{name}`: {message}")]
pub struct ZoneError {
    /// `zone`, `line` or `alerts.required_zones`.
    pub what: &'static str,
    /// Its name.
    pub name: String,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone)]
struct Zone {
    name: Arc<str>,
    polygon: Vec<Point>,
}

#[derive(Debug, Clone)]
struct Line {
    name: Arc<str>,
    a: Point,
    b: Point,
}

/// A camera's zones and lines.
#[derive(Debug, Clone, Default)]
pub struct Zones {
    zones: Vec<Zone>,
    lines: Vec<Line>,
}

fn pt([x, y]: [f32; 2]) -> Point {
    Point { x, y }
}

fn cross(a: Point, b: Point, p: Point) -> f32 {
    (b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x)
}

impl Zones {
    /// Validates and builds.
    pub fn new(zones: &[ZoneConfig], lines: &[LineConfig]) -> Result<Self, ZoneError> {
        let in_unit = |p: &[f32; 2]| p.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v));
        let mut out = Zones::default();
        for z in zones {
            let err =
                |message: &str| ZoneError { what: "zone", name: z.name.clone(), message: message.into() };
            if z.polygon.len() < 3 {
                return Err(err("a polygon needs at least 3 points"));
            }
            if !z.polygon.iter().all(in_unit) {
                return Err(err("points are in frame units: every coordinate within 0..1"));
            }
            out.zones.push(Zone {
                name: z.name.as_str().into(),
                polygon: z.polygon.iter().copied().map(pt).collect(),
            });
        }
        for l in lines {
            let err =
                |message: &str| ZoneError { what: "line", name: l.name.clone(), message: message.into() };
            if !in_unit(&l.a) || !in_unit(&l.b) {
                return Err(err("points are in frame units: every coordinate within 0..1"));
            }
            if l.a == l.b {
                return Err(err("a and b must differ"));
            }
            out.lines.push(Line { name: l.name.as_str().into(), a: pt(l.a), b: pt(l.b) });
        }
        Ok(out)
    }

    /// Names of the zones containing `p` (frame units).
    pub fn zones_at(&self, p: Point) -> impl Iterator<Item = &Arc<str>> {
        self.zones.iter().filter(move |z| polygon_contains(&z.polygon, p)).map(|z| &z.name)
    }

    /// Lines crossed by a move from `from` to `to` (frame units), with the direction.
    pub fn crossings(&self, from: Point, to: Point) -> impl Iterator<Item = (&Arc<str>, Direction)> {
        self.lines.iter().filter_map(move |l| {
            let (s0, s1) = (cross(l.a, l.b, from), cross(l.a, l.b, to));
            let (p0, p1) = (s0 >= 0.0, s1 >= 0.0);
            if p0 == p1 {
                return None;
            }
            // the move must cross the segment itself, not its extension
            let (t0, t1) = (cross(from, to, l.a), cross(from, to, l.b));
            if (t0 > 0.0) == (t1 > 0.0) && t0 != 0.0 && t1 != 0.0 {
                return None;
            }
            Some((&l.name, if p0 { Direction::Forward } else { Direction::Backward }))
        })
    }

    /// Whether any zone or line is configured.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty() && self.lines.is_empty()
    }
}

/// Even-odd point-in-polygon test.
pub fn polygon_contains(polygon: &[Point], p: Point) -> bool {
    let mut inside = false;
    let n = polygon.len();
    for i in 0..n {
        let (a, b) = (polygon[i], polygon[(i + n - 1) % n]);
        if (a.y > p.y) != (b.y > p.y) && p.x < (b.x - a.x) * (p.y - a.y) / (b.y - a.y) + a.x {
            inside = !inside;
        }
    }
    inside
}

/// Crossing counts per line, label and direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineCounts(BTreeMap<(Arc<str>, Arc<str>, Direction), u64>);

impl LineCounts {
    /// Counts one crossing and returns the new total for that key.
    pub fn add(&mut self, line: &Arc<str>, label: &Arc<str>, direction: Direction) -> u64 {
        let n = self.0.entry((line.clone(), label.clone(), direction)).or_insert(0);
        *n += 1;
        *n
    }

    /// The count for a key.
    pub fn get(&self, line: &str, label: &str, direction: Direction) -> u64 {
        self.0
            .iter()
            .find(|((l, c, d), _)| &**l == line && &**c == label && *d == direction)
            .map_or(0, |(_, n)| *n)
    }

    /// All counts.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, Direction, u64)> {
        self.0.iter().map(|((l, c, d), n)| (&**l, &**c, *d, *n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(x: f32, y: f32) -> Point {
        Point { x, y }
    }

    #[test]
    fn zones_contain_points() {
        let z = Zones::new(
            &[ZoneConfig {
                name: "drive".into(),
                polygon: vec![[0.0, 0.5], [0.5, 0.5], [0.5, 1.0], [0.0, 1.0]],
            }],
            &[],
        )
        .unwrap();
        assert_eq!(z.zones_at(p(0.25, 0.75)).map(|n| &**n).collect::<Vec<_>>(), ["drive"]);
        assert_eq!(z.zones_at(p(0.75, 0.75)).count(), 0);
        assert_eq!(z.zones_at(p(0.25, 0.25)).count(), 0);
    }

    #[test]
    fn line_crossings_have_a_direction_and_respect_the_segment() {
        // vertical line drawn top to bottom through the middle, upper half only
        let z = Zones::new(&[], &[LineConfig { name: "gate".into(), a: [0.5, 0.0], b: [0.5, 0.5] }]).unwrap();
        let got: Vec<_> = z.crossings(p(0.4, 0.2), p(0.6, 0.25)).map(|(n, d)| (n.to_string(), d)).collect();
        assert_eq!(got, [("gate".to_string(), Direction::Forward)]);
        let got: Vec<_> = z.crossings(p(0.6, 0.2), p(0.4, 0.2)).map(|(_, d)| d).collect();
        assert_eq!(got, [Direction::Backward]);
        // below the segment's end: no crossing
        assert_eq!(z.crossings(p(0.4, 0.8), p(0.6, 0.8)).count(), 0);
        // no side change: none
        assert_eq!(z.crossings(p(0.1, 0.2), p(0.4, 0.3)).count(), 0);
    }

    #[test]
    fn bad_configs_are_refused_with_the_name() {
        let e = Zones::new(&[ZoneConfig { name: "z".into(), polygon: vec![[0.0, 0.0], [1.0, 1.0]] }], &[])
            .unwrap_err();
        assert_eq!(e.to_string(), "zone `z`: a polygon needs at least 3 points");
        let e =
            Zones::new(&[], &[LineConfig { name: "l".into(), a: [0.0, 0.0], b: [2.0, 1.0] }]).unwrap_err();
        assert!(e.to_string().starts_with("line `l`"));
    }

    #[test]
    fn counts_per_line_label_direction() {
        let mut c = LineCounts::default();
        let (l, car, bus) = (Arc::from("gate"), Arc::from("car"), Arc::from("bus"));
        assert_eq!(c.add(&l, &car, Direction::Forward), 1);
        assert_eq!(c.add(&l, &car, Direction::Forward), 2);
        c.add(&l, &bus, Direction::Backward);
        assert_eq!(c.get("gate", "car", Direction::Forward), 2);
        assert_eq!(c.get("gate", "bus", Direction::Backward), 1);
        assert_eq!(c.get("gate", "bus", Direction::Forward), 0);
    }

    #[test]
    fn alerts_can_require_a_zone_and_a_label() {
        let any = AlertRules::default();
        assert!(any.is_alert("car", &[] as &[&str]), "no rules: every event is an alert");
        let rules =
            AlertRules { labels: vec!["car".into(), "bus".into()], required_zones: vec!["lane".into()] };
        assert!(rules.is_alert("bus", &["kerb", "lane"]));
        assert!(!rules.is_alert("bus", &["kerb"]), "outside the required zone");
        assert!(!rules.is_alert("bus", &[] as &[&str]));
        assert!(!rules.is_alert("person", &["lane"]), "a label the rules do not list");
        let lane = ZoneConfig { name: "lane".into(), polygon: vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]] };
        assert_eq!(rules.check(std::slice::from_ref(&lane)), Ok(()));
        let e = rules.check(&[]).unwrap_err();
        assert_eq!(e.to_string(), "alerts.required_zones `lane`: is not one of this camera's zones");
    }
}
