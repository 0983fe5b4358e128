//! The detectors on registry images (bus.jpg, zidane.jpg, a bikes.mp4 frame), checked
//! against the hand-recorded ground truth of models/eval/ground-truth.toml (IoU ≥ 0.5) and
//! against the Python reference decoders' output (models/eval/reference-detections.json).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::*;
use panoptes_analytics::detector::ExecutionProviderKind;
use panoptes_analytics::{Detection, Detector, DetectorConfig, FrameRef};

fn detect(det: &mut impl Detector, (w, h, rgb): &(u32, u32, Vec<u8>)) -> Vec<Detection> {
    let frame = FrameRef::new(*w, *h, rgb).unwrap();
    det.detect(&[frame]).unwrap().remove(0)
}

/// Every ground-truth box is matched by a detection of `label` with IoU ≥ 0.5.
fn assert_found(dets: &[Detection], label: &str, truth: &[[f32; 4]], what: &str) {
    for t in truth {
        let best =
            dets.iter().filter(|d| &*d.label == label).map(|d| d.bbox.iou(&bbox(*t))).fold(0.0f32, f32::max);
        assert!(best >= 0.5, "{what}: no {label} matches {t:?} (best IoU {best:.2}); detections: {dets:#?}");
    }
}

/// The Rust port finds what the Python reference found: same label, IoU ≥ 0.9, score ± 0.05.
fn assert_matches_reference(dets: &[Detection], model: &str, image: &str) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/eval/reference-detections.json"
    ))
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let refs = json["models"][model][image]["detections"].as_array().unwrap();
    for r in refs {
        let label = r[0].as_str().unwrap();
        let score = r[1].as_f64().unwrap() as f32;
        let b = [2, 3, 4, 5].map(|i| r[i].as_f64().unwrap() as f32);
        let found = dets
            .iter()
            .any(|d| &*d.label == label && d.bbox.iou(&bbox(b)) >= 0.9 && (d.score - score).abs() <= 0.05);
        assert!(found, "{model} on {image}: Python found {label} {score} {b:?}, Rust did not: {dets:#?}");
    }
    // Extra Rust boxes may only be borderline ones (resizer rounding differs from Pillow's).
    let threshold =
        panoptes_models::Manifest::builtin().unwrap().get(model).unwrap().score_threshold.unwrap();
    for d in dets {
        let in_reference = refs.iter().any(|r| {
            r[0].as_str() == Some(&*d.label)
                && d.bbox.iou(&bbox([2, 3, 4, 5].map(|i| r[i].as_f64().unwrap() as f32))) >= 0.9
        });
        assert!(
            in_reference || d.score < threshold + 0.03,
            "{model} on {image}: Rust found {d:?}, Python did not"
        );
    }
}

const VEHICLES: [&str; 5] = ["bicycle", "car", "motorcycle", "bus", "truck"];

#[test]
fn faces_in_zidane_and_bus() {
    let mut cf = detector("centerface", &DetectorConfig::default());
    let zidane = load_rgb(&media("zidane.jpg"));
    let dets = detect(&mut cf, &zidane);
    assert_found(&dets, "face", &[[545.0, 245.0, 672.0, 440.0], [915.0, 100.0, 1058.0, 280.0]], "zidane");
    assert_matches_reference(&dets, "centerface", "zidane");
    let bus = load_rgb(&media("bus.jpg"));
    let dets = detect(&mut cf, &bus);
    assert_found(&dets, "face", &[[112.0, 415.0, 155.0, 470.0], [268.0, 420.0, 308.0, 476.0]], "bus");
    assert_matches_reference(&dets, "centerface", "bus");
}

#[test]
fn bus_in_bus_jpg_and_no_vehicle_in_zidane() {
    let mut nd = detector("nanodet", &DetectorConfig::default());
    let bus = load_rgb(&media("bus.jpg"));
    let dets = detect(&mut nd, &bus);
    assert_found(&dets, "bus", &[[17.0, 228.0, 805.0, 758.0]], "bus.jpg");
    assert!(
        !dets.iter().any(|d| &*d.label == "car" || &*d.label == "truck"),
        "the bus must stay a bus: {dets:#?}"
    );
    assert_matches_reference(&dets, "nanodet", "bus");
    let zidane = load_rgb(&media("zidane.jpg"));
    let dets = detect(&mut nd, &zidane);
    assert!(!dets.iter().any(|d| VEHICLES.contains(&&*d.label)), "no vehicle in zidane.jpg: {dets:#?}");
    assert_matches_reference(&dets, "nanodet", "zidane");
}

#[test]
fn cars_in_a_street_frame() {
    let dir = tempfile::tempdir().unwrap();
    let frame = video_frame(&media("bikes.mp4"), 165, dir.path());
    assert_eq!((frame.0, frame.1), (640, 272));
    let mut nd = detector("nanodet", &DetectorConfig::default());
    let dets = detect(&mut nd, &frame);
    assert_found(
        &dets,
        "car",
        &[[57.0, 100.0, 163.0, 172.0], [327.0, 97.0, 445.0, 170.0], [505.0, 100.0, 603.0, 162.0]],
        "bikes frame 165",
    );
    assert_matches_reference(&dets, "nanodet", "bikes-f165");
}

#[test]
fn centernet_finds_the_bus_too() {
    let mut cn = detector("centernet", &DetectorConfig::default());
    let bus = load_rgb(&media("bus.jpg"));
    let dets = detect(&mut cn, &bus);
    assert_found(&dets, "bus", &[[17.0, 228.0, 805.0, 758.0]], "bus.jpg");
    assert_matches_reference(&dets, "centernet", "bus");
}

#[test]
fn labels_can_be_renamed_and_filtered() {
    let config = DetectorConfig {
        rename: BTreeMap::from([("bus".to_owned(), "coach".to_owned())]),
        keep_labels: Some(vec!["coach".to_owned()]),
        ..DetectorConfig::default()
    };
    let mut nd = detector("nanodet", &config);
    let dets = detect(&mut nd, &load_rgb(&media("bus.jpg")));
    assert_eq!(dets.iter().map(|d| &*d.label).collect::<Vec<_>>(), ["coach"]);
}

#[test]
fn a_batch_gives_the_same_boxes_as_single_frames() {
    let mut cf = detector("centerface", &DetectorConfig::default());
    let zidane = load_rgb(&media("zidane.jpg"));
    let bus = load_rgb(&media("bus.jpg"));
    let single = [detect(&mut cf, &zidane), detect(&mut cf, &bus)];
    let frames = [
        FrameRef::new(zidane.0, zidane.1, &zidane.2).unwrap(),
        FrameRef::new(bus.0, bus.1, &bus.2).unwrap(),
        FrameRef::new(zidane.0, zidane.1, &zidane.2).unwrap(),
    ];
    let batch = cf.detect(&frames).unwrap();
    assert_eq!(batch.len(), 3);
    for (b, s) in batch.iter().zip([&single[0], &single[1], &single[0]]) {
        assert_eq!(b.len(), s.len());
        for (x, y) in b.iter().zip(s.iter()) {
            assert!(x.bbox.iou(&y.bbox) > 0.99 && (x.score - y.score).abs() < 1e-3);
        }
    }
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn cuda_requested_without_a_gpu_falls_back_to_cpu_and_says_why_once() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let config = DetectorConfig { provider: ExecutionProviderKind::Cuda, ..DetectorConfig::default() };
    let (first, second) = tracing::subscriber::with_default(subscriber, || {
        (detector("nanodet", &config), detector("nanodet", &config))
    });
    let report = first.provider();
    assert_eq!(report.requested, ExecutionProviderKind::Cuda);
    assert_eq!(report.used, ExecutionProviderKind::Cpu);
    let reason = report.fallback_reason.clone().expect("a reason");
    assert!(reason.starts_with("Cuda: ") && reason.len() > 8, "{reason}");
    eprintln!("fallback reason: {reason}");
    assert_eq!(second.provider(), report);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.matches("running on the CPU").count(), 1, "logged once: {text}");
    assert!(text.contains("WARN") && text.contains(&reason[6..]), "the reason is logged: {text}");
    // and it still detects
    let mut first = first;
    let dets = detect(&mut first, &load_rgb(&media("bus.jpg")));
    assert!(dets.iter().any(|d| &*d.label == "bus"));
}
