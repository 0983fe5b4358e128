//! Output decoders, one per family, as pure functions on ndarray views of ONE batch item
//! (the batch axis already removed). They return [`Candidate`]s in frame pixels, before NMS;
//! the math is `docs/models.md`'s and `scripts/panoptes_models/decode.py`'s.

use std::sync::Arc;

use ndarray::{ArrayView2, ArrayView3, Axis};

use crate::geometry::{BBox, Point};
use crate::preprocess::Letterbox;

/// A decoded box before NMS and labelling.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Box in frame pixels.
    pub bbox: BBox,
    /// Score 0..1.
    pub score: f32,
    /// 0-based class index into the model's labels.
    pub class: usize,
    /// Landmarks in frame pixels (CenterFace: eyes, nose, mouth corners).
    pub landmarks: Vec<Point>,
}

/// One detected object, labelled.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Box in frame pixels.
    pub bbox: BBox,
    /// Score 0..1.
    pub score: f32,
    /// User-facing label (`car`, `bus`, `face`…).
    pub label: Arc<str>,
    /// Class index in the model's output.
    pub class: usize,
    /// Landmarks in frame pixels, if the model gives any.
    pub landmarks: Vec<Point>,
}

/// An output tensor does not have the shape its family needs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{family}: {message}")]
pub struct DecodeError {
    /// Decoder family.
    pub family: &'static str,
    /// What is wrong.
    pub message: String,
}

fn shape_err(family: &'static str, message: String) -> DecodeError {
    DecodeError { family, message }
}

/// CenterFace. `heat` `[h, w]`, `scale`/`offset` `[2, h, w]`, `landmarks` `[10, h, w]`.
pub fn centerface(
    heat: ArrayView2<'_, f32>,
    scale: ArrayView3<'_, f32>,
    offset: ArrayView3<'_, f32>,
    landmarks: ArrayView3<'_, f32>,
    stride: u32,
    lb: &Letterbox,
    threshold: f32,
) -> Result<Vec<Candidate>, DecodeError> {
    let (h, w) = heat.dim();
    if scale.dim() != (2, h, w) || offset.dim() != (2, h, w) || landmarks.dim() != (10, h, w) {
        return Err(shape_err(
            "centerface",
            format!(
                "heatmap {:?}, scale {:?}, offset {:?}, landmarks {:?}: expected [2|2|10, {h}, {w}]",
                heat.dim(),
                scale.dim(),
                offset.dim(),
                landmarks.dim()
            ),
        ));
    }
    let s = stride as f32;
    let (in_w, in_h) = (lb.in_w as f32, lb.in_h as f32);
    let mut out = Vec::new();
    for ((r, c), &p) in heat.indexed_iter() {
        if !passes(p, threshold) {
            continue;
        }
        let bh = scale[[0, r, c]].exp() * s;
        let bw = scale[[1, r, c]].exp() * s;
        let cy = (r as f32 + offset[[0, r, c]] + 0.5) * s;
        let cx = (c as f32 + offset[[1, r, c]] + 0.5) * s;
        let x1 = (cx - bw / 2.0).clamp(0.0, in_w);
        let y1 = (cy - bh / 2.0).clamp(0.0, in_h);
        let x2 = (x1 + bw).min(in_w);
        let y2 = (y1 + bh).min(in_h);
        let bbox = lb.box_to_frame(BBox::new(x1, y1, x2, y2));
        if !bbox.is_finite() {
            continue;
        }
        let pts = (0..5)
            .map(|k| {
                let (x, y) =
                    lb.to_frame(x1 + landmarks[[2 * k + 1, r, c]] * bw, y1 + landmarks[[2 * k, r, c]] * bh);
                Point { x, y }
            })
            .collect();
        out.push(Candidate { bbox, score: p, class: 0, landmarks: pts });
    }
    Ok(out)
}

/// One NanoDet level: `cls` `[N, C]` (sigmoid applied), `reg` `[N, 4 (reg_max + 1)]` logits.
#[derive(Debug, Clone)]
pub struct NanodetLevel<'a> {
    /// Stride in input pixels.
    pub stride: u32,
    /// Class scores.
    pub cls: ArrayView2<'a, f32>,
    /// Box distributions.
    pub reg: ArrayView2<'a, f32>,
}

/// NanoDet GFL head: one box per cell (its best class), distance = stride · E[bin].
pub fn nanodet(
    levels: &[NanodetLevel<'_>],
    reg_max: u32,
    center_offset: f32,
    lb: &Letterbox,
    threshold: f32,
) -> Result<Vec<Candidate>, DecodeError> {
    let bins = reg_max as usize + 1;
    let mut out = Vec::new();
    let mut probs = vec![0f32; bins];
    for level in levels {
        let (n, _classes) = level.cls.dim();
        let s = level.stride.max(1);
        let fw = (lb.in_w / s) as usize;
        if level.reg.dim() != (n, 4 * bins) || fw == 0 {
            return Err(shape_err(
                "nanodet",
                format!(
                    "stride {s}: cls {:?}, reg {:?}: expected reg [{n}, {}]",
                    level.cls.dim(),
                    level.reg.dim(),
                    4 * bins
                ),
            ));
        }
        for (i, row) in level.cls.axis_iter(Axis(0)).enumerate() {
            let Some((k, score)) = argmax(row.iter().copied()) else { continue };
            if !passes(score, threshold) {
                continue;
            }
            let reg = level.reg.row(i);
            let mut d = [0f32; 4];
            for (j, dj) in d.iter_mut().enumerate() {
                let logits = reg.slice(ndarray::s![j * bins..(j + 1) * bins]);
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for (p, &l) in probs.iter_mut().zip(logits.iter()) {
                    *p = (l - max).exp();
                    sum += *p;
                }
                let expect: f32 = probs.iter().enumerate().map(|(b, p)| b as f32 * p).sum::<f32>() / sum;
                *dj = expect * s as f32;
            }
            let cx = ((i % fw) as f32 + center_offset) * s as f32;
            let cy = ((i / fw) as f32 + center_offset) * s as f32;
            let bbox = lb.box_to_frame(BBox::new(cx - d[0], cy - d[1], cx + d[2], cy + d[3]));
            if bbox.is_finite() {
                out.push(Candidate { bbox, score, class: k, landmarks: Vec::new() });
            }
        }
    }
    Ok(out)
}

/// CenterNet with in-graph decoding: `det` `[K, 6]` rows x1, y1, x2, y2 (input pixels),
/// score, class (float). Rows with a class outside `0..num_classes` are dropped.
pub fn centernet(
    det: ArrayView2<'_, f32>,
    num_classes: usize,
    lb: &Letterbox,
    threshold: f32,
) -> Result<Vec<Candidate>, DecodeError> {
    if det.ncols() != 6 {
        return Err(shape_err("centernet", format!("detections {:?}: expected [K, 6]", det.dim())));
    }
    let mut out = Vec::new();
    for row in det.axis_iter(Axis(0)) {
        let (score, cls) = (row[4], row[5]);
        if !passes(score, threshold) || !cls.is_finite() {
            continue;
        }
        let c = cls.round();
        if c < 0.0 || c as usize >= num_classes {
            continue;
        }
        let bbox = lb.box_to_frame(BBox::new(row[0], row[1], row[2], row[3]));
        if bbox.is_finite() {
            out.push(Candidate { bbox, score, class: c as usize, landmarks: Vec::new() });
        }
    }
    Ok(out)
}

fn xywh(cx: f32, cy: f32, w: f32, h: f32) -> BBox {
    BBox::new(cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)
}

/// Ultralytics YOLOv5 export: `out` `[N, 5 + C]` rows cx, cy, w, h (input pixels),
/// objectness, class probabilities; score = objectness × best class probability.
pub fn yolov5(
    out: ArrayView2<'_, f32>,
    lb: &Letterbox,
    threshold: f32,
) -> Result<Vec<Candidate>, DecodeError> {
    if out.ncols() < 6 {
        return Err(shape_err("yolov5", format!("output {:?}: expected [N, 5 + classes]", out.dim())));
    }
    let mut dets = Vec::new();
    for row in out.axis_iter(Axis(0)) {
        let obj = row[4];
        if !passes(obj, threshold) {
            continue; // score <= obj, so it cannot pass
        }
        let Some((k, p)) = argmax(row.iter().skip(5).copied()) else { continue };
        let score = obj * p;
        if !passes(score, threshold) {
            continue;
        }
        let bbox = lb.box_to_frame(xywh(row[0], row[1], row[2], row[3]));
        if bbox.is_finite() {
            dets.push(Candidate { bbox, score, class: k, landmarks: Vec::new() });
        }
    }
    Ok(dets)
}

/// Ultralytics YOLOv8/YOLO11 export: `out` `[4 + C, N]` columns cx, cy, w, h (input
/// pixels), class scores; no objectness.
pub fn yolov8(
    out: ArrayView2<'_, f32>,
    lb: &Letterbox,
    threshold: f32,
) -> Result<Vec<Candidate>, DecodeError> {
    if out.nrows() < 5 {
        return Err(shape_err("yolov8", format!("output {:?}: expected [4 + classes, N]", out.dim())));
    }
    let mut dets = Vec::new();
    for col in out.axis_iter(Axis(1)) {
        let Some((k, score)) = argmax(col.iter().skip(4).copied()) else { continue };
        if !passes(score, threshold) {
            continue;
        }
        let bbox = lb.box_to_frame(xywh(col[0], col[1], col[2], col[3]));
        if bbox.is_finite() {
            dets.push(Candidate { bbox, score, class: k, landmarks: Vec::new() });
        }
    }
    Ok(dets)
}

/// `value >= threshold`; false for NaN.
fn passes(value: f32, threshold: f32) -> bool {
    value >= threshold
}

/// Index and value of the largest element (first one on ties; NaN never wins).
fn argmax(values: impl Iterator<Item = f32>) -> Option<(usize, f32)> {
    let mut best: Option<(usize, f32)> = None;
    for (i, v) in values.enumerate() {
        if best.is_none_or(|(_, b)| v > b) && !v.is_nan() {
            best = Some((i, v));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Array3};

    /// Identity letterbox: input = frame, 100x100.
    fn identity(w: u32, h: u32) -> Letterbox {
        Letterbox {
            in_w: w,
            in_h: h,
            resized_w: w,
            resized_h: h,
            scale_x: 1.0,
            scale_y: 1.0,
            frame_w: w,
            frame_h: h,
        }
    }

    fn close(b: BBox, want: [f32; 4]) -> bool {
        (b.x1 - want[0]).abs() < 1e-3
            && (b.y1 - want[1]).abs() < 1e-3
            && (b.x2 - want[2]).abs() < 1e-3
            && (b.y2 - want[3]).abs() < 1e-3
    }

    #[test]
    fn centerface_decodes_one_peak() {
        let (h, w) = (8, 8);
        let mut heat = Array2::<f32>::zeros((h, w));
        heat[[3, 4]] = 0.9;
        heat[[5, 5]] = 0.3; // below threshold
        let mut scale = Array3::<f32>::zeros((2, h, w));
        scale[[0, 3, 4]] = (12.0f32 / 4.0).ln(); // box_h 12
        scale[[1, 3, 4]] = (8.0f32 / 4.0).ln(); // box_w 8
        let mut offset = Array3::<f32>::zeros((2, h, w));
        offset[[0, 3, 4]] = 0.25; // dy
        offset[[1, 3, 4]] = -0.5; // dx
        let mut lmk = Array3::<f32>::zeros((10, h, w));
        lmk[[0, 3, 4]] = 0.5; // first point dy (half the box height)
        lmk[[1, 3, 4]] = 0.25; // first point dx
        // frame twice the input size: everything doubles
        let lb = Letterbox { frame_w: 64, frame_h: 64, scale_x: 0.5, scale_y: 0.5, ..identity(32, 32) };
        let out = centerface(heat.view(), scale.view(), offset.view(), lmk.view(), 4, &lb, 0.5).unwrap();
        assert_eq!(out.len(), 1);
        // cy = (3 + 0.25 + 0.5) * 4 = 15, cx = (4 - 0.5 + 0.5) * 4 = 16
        // input box (12, 9, 20, 21) -> frame (24, 18, 40, 42)
        assert!(close(out[0].bbox, [24.0, 18.0, 40.0, 42.0]), "{:?}", out[0].bbox);
        assert_eq!(out[0].landmarks.len(), 5);
        // (x1 + 0.25 * 8, y1 + 0.5 * 12) = (14, 15) -> (28, 30)
        assert!((out[0].landmarks[0].x - 28.0).abs() < 1e-3 && (out[0].landmarks[0].y - 30.0).abs() < 1e-3);
        let bad = Array3::<f32>::zeros((2, 4, 4));
        assert!(centerface(heat.view(), bad.view(), offset.view(), lmk.view(), 4, &lb, 0.5).is_err());
    }

    #[test]
    fn nanodet_decodes_distribution_expectations() {
        // one level, stride 8, 32x32 input -> 4x4 cells; 3 classes, reg_max 2 (3 bins)
        let lb = identity(32, 32);
        let mut cls = Array2::<f32>::zeros((16, 3));
        cls[[6, 2]] = 0.8; // row 1, col 2
        cls[[6, 1]] = 0.5;
        cls[[9, 0]] = 0.1; // below threshold
        let mut reg = Array2::<f32>::from_elem((16, 12), -100.0);
        // left: all mass on bin 1 -> 8; top: bin 0 -> 0; right: bin 2 -> 16; bottom: uniform -> 8
        reg[[6, 1]] = 10.0;
        reg[[6, 3]] = 10.0;
        reg[[6, 8]] = 10.0;
        for b in 9..12 {
            reg[[6, b]] = 0.0;
        }
        let level = NanodetLevel { stride: 8, cls: cls.view(), reg: reg.view() };
        let out = nanodet(&[level], 2, 0.5, &lb, 0.35).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].class, 2);
        assert!((out[0].score - 0.8).abs() < 1e-6);
        // centre (2.5 * 8, 1.5 * 8) = (20, 12); box (12, 12, 36 -> clipped 32, 20)
        assert!(close(out[0].bbox, [12.0, 12.0, 32.0, 20.0]), "{:?}", out[0].bbox);
        let bad = NanodetLevel { stride: 8, cls: cls.view(), reg: cls.view() };
        assert!(nanodet(&[bad], 2, 0.5, &lb, 0.35).is_err());
    }

    #[test]
    fn centernet_keeps_rows_above_threshold_with_valid_class() {
        let lb = Letterbox { frame_w: 200, frame_h: 100, scale_x: 0.5, scale_y: 0.5, ..identity(100, 100) };
        let det = ndarray::arr2(&[
            [10.0, 10.0, 50.0, 40.0, 0.9, 5.0],
            [0.0, 0.0, 5.0, 5.0, 0.2, 2.0],
            [0.0, 0.0, 5.0, 5.0, 0.9, 80.0],
            [0.0, 0.0, 5.0, 5.0, 0.9, f32::NAN],
            [20.0, 20.0, 30.0, 30.0, 0.5, 2.0],
        ]);
        let out = centernet(det.view(), 80, &lb, 0.35).unwrap();
        assert_eq!(out.iter().map(|c| c.class).collect::<Vec<_>>(), [5, 2]);
        assert!(close(out[0].bbox, [20.0, 20.0, 100.0, 80.0]));
        assert!(centernet(ndarray::Array2::zeros((3, 5)).view(), 80, &lb, 0.3).is_err());
    }

    #[test]
    fn yolov5_multiplies_objectness() {
        let lb = identity(100, 100);
        // cx, cy, w, h, obj, c0, c1
        let out = ndarray::arr2(&[
            [50.0, 50.0, 20.0, 10.0, 0.9, 0.1, 0.8], // 0.72 class 1
            [10.0, 10.0, 4.0, 4.0, 0.5, 0.6, 0.1],   // 0.30 below 0.35
            [10.0, 10.0, 4.0, 4.0, 0.2, 1.0, 0.0],   // objectness below
        ]);
        let d = yolov5(out.view(), &lb, 0.35).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].class, 1);
        assert!((d[0].score - 0.72).abs() < 1e-6);
        assert!(close(d[0].bbox, [40.0, 45.0, 60.0, 55.0]));
    }

    #[test]
    fn yolov8_reads_columns_without_objectness() {
        let lb = Letterbox { frame_w: 200, frame_h: 200, scale_x: 0.5, scale_y: 0.5, ..identity(100, 100) };
        // [4 + 3 classes, 2 anchors]
        let out = ndarray::arr2(&[
            [50.0, 10.0],
            [50.0, 10.0],
            [20.0, 4.0],
            [10.0, 4.0],
            [0.1, 0.2],
            [0.2, 0.1],
            [0.7, 0.3],
        ]);
        let d = yolov8(out.view(), &lb, 0.35).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].class, d[0].score), (2, 0.7));
        assert!(close(d[0].bbox, [80.0, 90.0, 120.0, 110.0]));
        assert!(yolov8(ndarray::Array2::zeros((4, 3)).view(), &lb, 0.3).is_err());
    }

    #[test]
    fn argmax_ignores_nan_and_takes_first_on_ties() {
        assert_eq!(argmax([f32::NAN, 0.5, 0.5].into_iter()), Some((1, 0.5)));
        assert_eq!(argmax(std::iter::empty()), None);
    }
}
