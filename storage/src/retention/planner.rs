//! The retention planner: given the closed segments, what protects them, the per-camera
//! limits, `now` and the free disk space, which segments to delete and why. No I/O.
//!
//! Rules, in order:
//! 1. per camera, a segment that ended more than `max_age` ago is deleted, unless protected;
//! 2. per camera, while the camera's bytes exceed `max_bytes`, its oldest unprotected segment
//!    is deleted;
//! 3. while free space (plus what 1 and 2 free) is under the floor, the oldest remaining
//!    segment of any camera is deleted: unprotected ones first, then protected ones, which
//!    is the only way a protected segment is ever deleted (marked `overrode`).
//!
//! Protected: the segment overlaps an unreviewed alert or an active legal hold of its camera.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};

/// A closed segment as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSegment {
    /// Row id.
    pub id: i64,
    /// Camera id.
    pub camera: String,
    /// Wall-clock start.
    pub start: DateTime<Utc>,
    /// Wall-clock end.
    pub end: DateTime<Utc>,
    /// File size.
    pub bytes: u64,
}

/// What keeps a range of a camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtectionKind {
    /// An alert still to be reviewed (`alert AND review_state = 'new'`).
    UnreviewedAlert,
    /// A legal hold.
    LegalHold,
}

/// A protected range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    /// Camera id.
    pub camera: String,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// Why.
    pub kind: ProtectionKind,
}

/// Per-camera limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CameraLimits {
    /// Most bytes of recordings.
    pub max_bytes: Option<u64>,
    /// Oldest recording to keep.
    pub max_age: Option<Duration>,
}

/// The disk's state and floor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes available now.
    pub free: u64,
    /// Bytes that must stay free.
    pub floor: u64,
}

/// Why a segment goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletionReason {
    /// Older than the camera's day limit.
    Age,
    /// The camera is over its byte quota.
    Quota,
    /// The disk is under its free-space floor.
    DiskFloor,
}

/// One planned deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// Segment row id.
    pub id: i64,
    /// Camera.
    pub camera: String,
    /// Bytes freed.
    pub bytes: u64,
    /// Why.
    pub reason: DeletionReason,
    /// The protection overridden (disk floor only).
    pub overrode: Option<ProtectionKind>,
}

/// The plan, plus what could not be done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Deletions, in order.
    pub deletions: Vec<Deletion>,
    /// Cameras still over quota because what is left is protected: (camera, bytes over).
    pub over_quota_protected: Vec<(String, u64)>,
    /// Bytes still missing to the disk floor after deleting everything.
    pub floor_shortfall: u64,
}

fn protection_of(seg: &PlanSegment, protections: &[&Protection]) -> Option<ProtectionKind> {
    let mut found = None;
    for p in protections {
        if p.start < seg.end && p.end > seg.start {
            // A legal hold outranks an alert in reports.
            if p.kind == ProtectionKind::LegalHold {
                return Some(p.kind);
            }
            found = Some(p.kind);
        }
    }
    found
}

/// Plans deletions. `segments` may come in any order.
pub fn plan(
    segments: &[PlanSegment],
    protections: &[Protection],
    limits: &HashMap<String, CameraLimits>,
    now: DateTime<Utc>,
    disk: DiskSpace,
) -> Plan {
    let mut by_camera: BTreeMap<&str, Vec<&PlanSegment>> = BTreeMap::new();
    for s in segments {
        by_camera.entry(&s.camera).or_default().push(s);
    }
    let mut prot_by_camera: HashMap<&str, Vec<&Protection>> = HashMap::new();
    for p in protections {
        prot_by_camera.entry(&p.camera).or_default().push(p);
    }
    let mut plan = Plan::default();
    // Survivors after age and quota, with their protection, for the floor pass.
    let mut survivors: Vec<(&PlanSegment, Option<ProtectionKind>)> = Vec::new();
    for (camera, mut segs) in by_camera {
        segs.sort_by_key(|s| (s.start, s.id));
        let prots = prot_by_camera.get(camera).map(Vec::as_slice).unwrap_or(&[]);
        let lim = limits.get(camera).copied().unwrap_or_default();
        let mut kept: Vec<(&PlanSegment, Option<ProtectionKind>)> = Vec::new();
        for s in segs {
            let protection = protection_of(s, prots);
            let too_old = lim.max_age.is_some_and(|age| s.end < now - age);
            if too_old && protection.is_none() {
                plan.deletions.push(Deletion {
                    id: s.id,
                    camera: s.camera.clone(),
                    bytes: s.bytes,
                    reason: DeletionReason::Age,
                    overrode: None,
                });
            } else {
                kept.push((s, protection));
            }
        }
        if let Some(max) = lim.max_bytes {
            let mut total: u64 = kept.iter().map(|(s, _)| s.bytes).sum();
            let mut i = 0;
            while total > max && i < kept.len() {
                if kept[i].1.is_none() {
                    let (s, _) = kept.remove(i);
                    total -= s.bytes;
                    plan.deletions.push(Deletion {
                        id: s.id,
                        camera: s.camera.clone(),
                        bytes: s.bytes,
                        reason: DeletionReason::Quota,
                        overrode: None,
                    });
                } else {
                    i += 1;
                }
            }
            if total > max {
                plan.over_quota_protected.push((camera.to_owned(), total - max));
            }
        }
        survivors.extend(kept);
    }
    let freed: u64 = plan.deletions.iter().map(|d| d.bytes).sum();
    let mut free = disk.free.saturating_add(freed);
    if free < disk.floor {
        survivors.sort_by_key(|(s, p)| (p.is_some(), s.start, s.id));
        for (s, p) in survivors {
            if free >= disk.floor {
                break;
            }
            free = free.saturating_add(s.bytes);
            plan.deletions.push(Deletion {
                id: s.id,
                camera: s.camera.clone(),
                bytes: s.bytes,
                reason: DeletionReason::DiskFloor,
                overrode: p,
            });
        }
        plan.floor_shortfall = disk.floor.saturating_sub(free);
    }
    plan
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::minutes(min)
    }

    /// `n` one-minute segments of 100 bytes for `camera`, ids from `id0`.
    fn segs(camera: &str, id0: i64, n: i64) -> Vec<PlanSegment> {
        (0..n)
            .map(|i| PlanSegment {
                id: id0 + i,
                camera: camera.into(),
                start: t(i),
                end: t(i + 1),
                bytes: 100,
            })
            .collect()
    }

    fn ids(p: &Plan) -> Vec<i64> {
        p.deletions.iter().map(|d| d.id).collect()
    }

    fn limits(camera: &str, l: CameraLimits) -> HashMap<String, CameraLimits> {
        HashMap::from([(camera.to_owned(), l)])
    }

    const ROOMY: DiskSpace = DiskSpace { free: 1 << 40, floor: 1 << 30 };

    #[test]
    fn quota_deletes_oldest_first_until_under() {
        let s = segs("a", 1, 10);
        let l = limits("a", CameraLimits { max_bytes: Some(750), max_age: None });
        let p = plan(&s, &[], &l, t(10), ROOMY);
        assert_eq!(ids(&p), [1, 2, 3]);
        assert!(p.deletions.iter().all(|d| d.reason == DeletionReason::Quota));
    }

    #[test]
    fn age_limit_deletes_what_ended_before_it() {
        let s = segs("a", 1, 10);
        let l = limits("a", CameraLimits { max_bytes: None, max_age: Some(Duration::minutes(5)) });
        let p = plan(&s, &[], &l, t(10), ROOMY);
        assert_eq!(ids(&p), [1, 2, 3, 4]);
    }

    #[test]
    fn unreviewed_alerts_and_holds_are_kept_even_over_quota() {
        let s = segs("a", 1, 10);
        let prot = [
            Protection {
                camera: "a".into(),
                start: t(0) + Duration::seconds(30),
                end: t(1) + Duration::seconds(10),
                kind: ProtectionKind::UnreviewedAlert,
            },
            Protection { camera: "a".into(), start: t(3), end: t(4), kind: ProtectionKind::LegalHold },
            // Another camera's alert protects nothing here.
            Protection { camera: "b".into(), start: t(0), end: t(10), kind: ProtectionKind::LegalHold },
        ];
        let l = limits("a", CameraLimits { max_bytes: Some(450), max_age: Some(Duration::minutes(1)) });
        let p = plan(&s, &prot, &l, t(10), ROOMY);
        // Segments 1,2 (alert 0:30–1:10) and 4 (hold 3–4) stay; every other but the newest goes.
        assert_eq!(ids(&p), [3, 5, 6, 7, 8, 9]);
        assert_eq!(p.deletions[0].reason, DeletionReason::Age);
        assert!(p.deletions.iter().all(|d| d.overrode.is_none()));
        assert!(p.over_quota_protected.is_empty());
    }

    #[test]
    fn only_the_disk_floor_overrides_protection_and_says_so() {
        let s = segs("a", 1, 4);
        let prot = [Protection {
            camera: "a".into(),
            start: t(0),
            end: t(4),
            kind: ProtectionKind::UnreviewedAlert,
        }];
        let p = plan(&s, &prot, &HashMap::new(), t(10), DiskSpace { free: 1000, floor: 1150 });
        assert_eq!(ids(&p), [1, 2]);
        assert!(
            p.deletions.iter().all(|d| d.reason == DeletionReason::DiskFloor
                && d.overrode == Some(ProtectionKind::UnreviewedAlert))
        );
    }

    #[test]
    fn the_floor_takes_unprotected_segments_of_any_camera_first() {
        let mut s = segs("a", 1, 3);
        s.extend(segs("b", 10, 3));
        let prot =
            [Protection { camera: "a".into(), start: t(0), end: t(1), kind: ProtectionKind::LegalHold }];
        let p = plan(&s, &prot, &HashMap::new(), t(10), DiskSpace { free: 0, floor: 250 });
        // Oldest unprotected: b's first (t0), a's second (t1), b's second (t1).
        assert_eq!(ids(&p), [10, 2, 11]);
        assert_eq!(p.floor_shortfall, 0);
    }

    #[test]
    fn shortfall_is_reported_when_nothing_is_left() {
        let s = segs("a", 1, 2);
        let p = plan(&s, &[], &HashMap::new(), t(10), DiskSpace { free: 0, floor: 1000 });
        assert_eq!(ids(&p), [1, 2]);
        assert_eq!(p.floor_shortfall, 800);
    }
}
