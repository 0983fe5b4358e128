//! Greedy non-maximum suppression.

use crate::decode::Candidate;

/// Greedy NMS: highest score first; a box is dropped when its IoU with an already kept box
/// exceeds `iou_threshold`. With `per_class`, only boxes of the same class suppress each
/// other (a bus never suppresses a car). Order of the result: score, descending.
pub fn nms(mut candidates: Vec<Candidate>, iou_threshold: f32, per_class: bool) -> Vec<Candidate> {
    // stable sort by descending score; NaN scores never reach here (decoders drop them)
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::with_capacity(candidates.len().min(64));
    for c in candidates {
        let suppressed =
            kept.iter().any(|k| (!per_class || k.class == c.class) && k.bbox.iou(&c.bbox) > iou_threshold);
        if !suppressed {
            kept.push(c);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::BBox;

    fn cand(x: f32, score: f32, class: usize) -> Candidate {
        Candidate { bbox: BBox::new(x, 0.0, x + 10.0, 10.0), score, class, landmarks: Vec::new() }
    }

    #[test]
    fn suppresses_within_a_class_only() {
        let out =
            nms(vec![cand(0.0, 0.5, 2), cand(1.0, 0.9, 2), cand(0.5, 0.8, 5), cand(30.0, 0.4, 2)], 0.5, true);
        let got: Vec<(usize, f32)> = out.iter().map(|c| (c.class, c.score)).collect();
        assert_eq!(got, [(2, 0.9), (5, 0.8), (2, 0.4)]);
        let agnostic = nms(vec![cand(0.0, 0.5, 2), cand(1.0, 0.9, 2), cand(0.5, 0.8, 5)], 0.5, false);
        assert_eq!(agnostic.len(), 1);
    }

    #[test]
    fn threshold_is_strictly_greater() {
        // IoU of these two is exactly 1/3
        let a = Candidate { bbox: BBox::new(0.0, 0.0, 10.0, 10.0), score: 0.9, class: 0, landmarks: vec![] };
        let b = Candidate { bbox: BBox::new(5.0, 0.0, 15.0, 10.0), score: 0.8, class: 0, landmarks: vec![] };
        assert_eq!(nms(vec![a.clone(), b.clone()], 1.0 / 3.0, true).len(), 2);
        assert_eq!(nms(vec![a, b], 0.3, true).len(), 1);
    }
}
