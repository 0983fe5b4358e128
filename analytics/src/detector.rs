//! The [`Detector`] trait and its ONNX Runtime backend.
//!
//! ONNX Runtime is loaded at run time ([`init_runtime`], from `ORT_DYLIB_PATH` by default).
//! [`OrtDetector::load`] builds a session with the configured optimisation level, intra-op
//! threads and execution provider; when a GPU provider cannot be registered, the session
//! runs on the CPU and the reason (ONNX Runtime's registration error) is logged once and kept
//! in [`OrtDetector::provider`]. Inference is blocking: call it from a named thread or
//! `spawn_blocking`, never on an async worker.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ndarray::{ArrayViewD, Axis, Ix2, Ix3};
use ort::ep::ExecutionProvider;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::TensorRef;
use panoptes_models::{DecoderSpec, Model};
use serde::Deserialize;

use crate::decode::{self, Candidate, DecodeError, Detection, NanodetLevel};
use crate::frame::FrameRef;
use crate::nms::nms;
use crate::preprocess::{Letterbox, PreprocessError, Preprocessor};

/// Turns frames into labelled boxes. Implementations may batch: `detect` gets the frames
/// that are ready together (several cameras) and returns one list per frame, in order.
pub trait Detector: Send {
    /// A name for logs and metrics (the model id).
    fn name(&self) -> &str;

    /// Detects objects in each frame; boxes are in that frame's pixels.
    fn detect(&mut self, frames: &[FrameRef<'_>]) -> Result<Vec<Vec<Detection>>, DetectorError>;
}

/// Which execution provider runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProviderKind {
    /// The CPU.
    #[default]
    Cpu,
    /// NVIDIA CUDA (falls back to the CPU when it cannot be registered).
    Cuda,
    /// NVIDIA TensorRT, then CUDA, then the CPU.
    Tensorrt,
    /// The best available: TensorRT, CUDA, then the CPU.
    Auto,
}

/// Detector settings (a per-model table of the configuration).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Execution provider: `cpu` | `cuda` | `tensorrt` | `auto`. Default `cpu`.
    pub provider: ExecutionProviderKind,
    /// Intra-op threads; 0 = ONNX Runtime's default (one per core). Default 1.
    pub intra_threads: usize,
    /// Graph optimisation level 0 (off) … 3 (all). Default 3.
    pub optimization_level: u8,
    /// Minimum score; default: the manifest's `score_threshold`.
    pub score_threshold: Option<f32>,
    /// NMS IoU threshold; default: the manifest's `decoder.nms_iou`.
    pub nms_iou: Option<f32>,
    /// Model label → user-facing label (e.g. `motorcycle` → `motorbike`). Default none.
    pub rename: BTreeMap<String, String>,
    /// User-facing labels to keep; default: all.
    pub keep_labels: Option<Vec<String>>,
    /// Largest batch per inference run when the model takes a dynamic batch. Default 4.
    pub max_batch: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            provider: ExecutionProviderKind::Cpu,
            intra_threads: 1,
            optimization_level: 3,
            score_threshold: None,
            nms_iou: None,
            rename: BTreeMap::new(),
            keep_labels: None,
            max_batch: 4,
        }
    }
}

/// Why a detector could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    /// A batch this frame was part of failed (the message is the batch's error).
    #[error("batch failed: {0}")]
    Batch(String),
    /// ONNX Runtime's shared library could not be found or loaded.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// The model file is missing.
    #[error("model `{model}`: {path} not found: run scripts/setup.sh (it fetches the models)")]
    ModelMissing {
        /// Model id.
        model: String,
        /// Path.
        path: PathBuf,
    },
    /// The model's decoder family is not a detector this backend decodes.
    #[error("model `{model}`: decoder family `{family}` is not supported by the detector")]
    Unsupported {
        /// Model id.
        model: String,
        /// Family.
        family: String,
    },
    /// ONNX Runtime failed.
    #[error("model `{model}`: {stage}: {message}")]
    Ort {
        /// Model id.
        model: String,
        /// What was being done.
        stage: &'static str,
        /// ONNX Runtime's message.
        message: String,
    },
    /// A frame could not be pre-processed.
    #[error("model `{model}`: {source}")]
    Preprocess {
        /// Model id.
        model: String,
        /// Cause.
        source: PreprocessError,
    },
    /// An output did not have the expected shape.
    #[error("model `{model}`: output `{output}`: {message}")]
    Output {
        /// Model id.
        model: String,
        /// Output name.
        output: String,
        /// What is wrong.
        message: String,
    },
    /// Decoding failed.
    #[error("model `{model}`: {source}")]
    Decode {
        /// Model id.
        model: String,
        /// Cause.
        source: DecodeError,
    },
}

static RUNTIME: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime once per process from `dylib`, else from `$ORT_DYLIB_PATH`. Later
/// calls return the first outcome.
pub fn init_runtime(dylib: Option<&Path>) -> Result<(), DetectorError> {
    runtime(dylib).map(|_| ())
}

fn runtime(dylib: Option<&Path>) -> Result<ort::environment::Environment, DetectorError> {
    RUNTIME
        .get_or_init(|| {
            let path = match dylib {
                Some(p) => p.to_owned(),
                None => match std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
                    Some(p) => PathBuf::from(p),
                    None => {
                        return Err("ORT_DYLIB_PATH is not set: run scripts/setup.sh and `source $PANOPTES_CACHE/env.sh` (it points at libonnxruntime.so)".to_owned());
                    }
                },
            };
            if !path.is_file() {
                return Err(format!("{} does not exist: run scripts/setup.sh", path.display()));
            }
            let builder = ort::init_from(&path).map_err(|e| format!("cannot load {}: {e}", path.display()))?;
            builder
                .with_name("panoptes")
                .build()
                .map_err(|e| format!("cannot create the environment from {}: {e}", path.display()))
        })
        .clone()
        .map_err(DetectorError::Runtime)
}

/// The provider a session ended up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderReport {
    /// What the configuration asked for.
    pub requested: ExecutionProviderKind,
    /// What runs the model.
    pub used: ExecutionProviderKind,
    /// Why the requested GPU provider was not used (ONNX Runtime's registration errors).
    pub fallback_reason: Option<String>,
}

/// Fallback warnings already logged (once per requested provider and reason).
static FALLBACKS_LOGGED: Mutex<Option<HashSet<(ExecutionProviderKind, String)>>> = Mutex::new(None);

fn log_fallback_once(model: &str, requested: ExecutionProviderKind, reason: &str) {
    let first = match FALLBACKS_LOGGED.lock() {
        Ok(mut guard) => guard.get_or_insert_with(HashSet::new).insert((requested, reason.to_owned())),
        Err(_) => true,
    };
    if first && requested == ExecutionProviderKind::Auto {
        // `auto` means "a GPU if there is one": no GPU is expected news, not a warning.
        tracing::info!(model, ?requested, reason, "GPU execution provider unavailable: running on the CPU");
    } else if first {
        tracing::warn!(model, ?requested, reason, "GPU execution provider unavailable: running on the CPU");
    } else {
        tracing::debug!(
            model,
            ?requested,
            "GPU execution provider unavailable: running on the CPU (logged before)"
        );
    }
}

/// Registers the requested provider on the builder, falling back step by step.
fn register_provider(
    builder: &mut SessionBuilder,
    model: &str,
    requested: ExecutionProviderKind,
) -> ProviderReport {
    use ExecutionProviderKind as K;
    let chain: &[K] = match requested {
        K::Cpu => &[],
        K::Cuda => &[K::Cuda],
        K::Tensorrt | K::Auto => &[K::Tensorrt, K::Cuda],
    };
    let mut reasons = Vec::new();
    for kind in chain {
        let result = match kind {
            K::Tensorrt => ort::ep::TensorRT::default().register(builder),
            _ => ort::ep::CUDA::default().register(builder),
        };
        match result {
            Ok(()) => {
                tracing::info!(model, provider = ?kind, "execution provider registered");
                let fallback_reason = (!reasons.is_empty()).then(|| reasons.join("; "));
                return ProviderReport { requested, used: *kind, fallback_reason };
            }
            Err(e) => reasons.push(format!("{kind:?}: {e}")),
        }
    }
    let fallback_reason = (!reasons.is_empty()).then(|| reasons.join("; "));
    if let Some(reason) = &fallback_reason {
        log_fallback_once(model, requested, reason);
    }
    ProviderReport { requested, used: K::Cpu, fallback_reason }
}

/// Time spent in each stage of the last [`Detector::detect`] call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    /// Letterbox + normalisation into the input tensor.
    pub preprocess: Duration,
    /// `session.run`.
    pub inference: Duration,
    /// Output decoding and NMS.
    pub decode: Duration,
}

/// A detector backed by an ONNX Runtime session and a manifest entry.
#[derive(Debug)]
pub struct OrtDetector {
    model: Model,
    session: Session,
    labels: Vec<Arc<str>>,
    keep: Vec<bool>,
    threshold: f32,
    nms_iou: f32,
    per_class: bool,
    dynamic_batch: bool,
    max_batch: usize,
    provider: ProviderReport,
    pre: Preprocessor,
    input: Vec<f32>,
    times: StageTimes,
}

fn ort_err<'a, R>(model: &'a str, stage: &'static str) -> impl FnOnce(ort::Error<R>) -> DetectorError + 'a {
    move |e| DetectorError::Ort { model: model.to_owned(), stage, message: e.to_string() }
}

impl OrtDetector {
    /// Builds a session for `model` from the file at `path` (see
    /// [`panoptes_models::ModelCache::path_of`]). Loads ONNX Runtime first if needed.
    pub fn load(model: &Model, path: &Path, config: &DetectorConfig) -> Result<Self, DetectorError> {
        let id = model.id.as_str();
        let (per_class, default_iou) = match &model.decoder {
            DecoderSpec::Centerface { nms_iou, .. } => (true, *nms_iou),
            DecoderSpec::Nanodet { nms_iou, class_agnostic_nms, .. }
            | DecoderSpec::Centernet { nms_iou, class_agnostic_nms, .. }
            | DecoderSpec::Yolov5 { nms_iou, class_agnostic_nms, .. }
            | DecoderSpec::Yolov8 { nms_iou, class_agnostic_nms, .. } => (!class_agnostic_nms, *nms_iou),
            other => {
                return Err(DetectorError::Unsupported {
                    model: id.to_owned(),
                    family: other.family().to_owned(),
                });
            }
        };
        if !path.is_file() {
            return Err(DetectorError::ModelMissing { model: id.to_owned(), path: path.to_owned() });
        }
        let env = runtime(None)?;
        let level = match config.optimization_level {
            0 => GraphOptimizationLevel::Disable,
            1 => GraphOptimizationLevel::Level1,
            2 => GraphOptimizationLevel::Level2,
            _ => GraphOptimizationLevel::All,
        };
        let mut builder = Session::builder(&env)
            .map_err(ort_err(id, "session options"))?
            .with_optimization_level(level)
            .map_err(ort_err(id, "optimisation level"))?;
        if config.intra_threads > 0 {
            builder =
                builder.with_intra_threads(config.intra_threads).map_err(ort_err(id, "intra threads"))?;
        }
        let provider = register_provider(&mut builder, id, config.provider);
        let session = builder.commit_from_file(path).map_err(ort_err(id, "loading the model"))?;

        let dynamic_batch = session
            .inputs()
            .iter()
            .chain(session.outputs())
            .all(|o| o.dtype().tensor_shape().and_then(|s| s.first().copied()).is_some_and(|d| d < 0));
        let labels: Vec<Arc<str>> = model
            .labels
            .iter()
            .map(|l| Arc::from(config.rename.get(l).map_or(l.as_str(), String::as_str)))
            .collect();
        let keep = labels
            .iter()
            .map(|l| config.keep_labels.as_ref().is_none_or(|k| k.iter().any(|x| x.as_str() == &**l)))
            .collect();
        Ok(Self {
            model: model.clone(),
            session,
            labels,
            keep,
            threshold: config.score_threshold.or(model.score_threshold).unwrap_or(0.5),
            nms_iou: config.nms_iou.unwrap_or(default_iou),
            per_class,
            dynamic_batch,
            max_batch: config.max_batch.max(1),
            provider,
            pre: Preprocessor::new(),
            input: Vec::new(),
            times: StageTimes::default(),
        })
    }

    /// The provider actually used, and why a GPU one was not.
    pub fn provider(&self) -> &ProviderReport {
        &self.provider
    }

    /// The manifest entry.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Stage times of the last `detect` call (summed over its batches).
    pub fn last_times(&self) -> StageTimes {
        self.times
    }

    /// Whether frames of one input size are run as one batch.
    pub fn batches(&self) -> bool {
        self.dynamic_batch
    }

    fn run_batch(
        &mut self,
        frames: &[FrameRef<'_>],
        lb: &Letterbox,
    ) -> Result<Vec<Vec<Detection>>, DetectorError> {
        let id = self.model.id.clone();
        let t0 = Instant::now();
        let slot = lb.slot_len();
        self.input.resize(slot * frames.len(), 0.0);
        for (frame, chunk) in frames.iter().zip(self.input.chunks_exact_mut(slot)) {
            self.pre
                .fill(frame, &self.model.input, lb, chunk)
                .map_err(|source| DetectorError::Preprocess { model: id.clone(), source })?;
        }
        let shape = match self.model.input.layout {
            panoptes_models::Layout::Nchw => [frames.len(), 3, lb.in_h as usize, lb.in_w as usize],
            panoptes_models::Layout::Nhwc => [frames.len(), lb.in_h as usize, lb.in_w as usize, 3],
        };
        let t1 = Instant::now();
        let tensor = TensorRef::from_array_view((shape, self.input.as_slice()))
            .map_err(ort_err(&id, "input tensor"))?;
        let outputs = self
            .session
            .run(ort::inputs![self.model.input.name.as_str() => tensor])
            .map_err(ort_err(&id, "inference"))?;
        let t2 = Instant::now();
        let get = |name: &str| -> Result<ArrayViewD<'_, f32>, DetectorError> {
            let value = outputs.get(name).ok_or_else(|| DetectorError::Output {
                model: id.clone(),
                output: name.to_owned(),
                message: "the model has no such output".into(),
            })?;
            value.try_extract_array::<f32>().map_err(|e| DetectorError::Output {
                model: id.clone(),
                output: name.to_owned(),
                message: e.to_string(),
            })
        };
        let mut results = Vec::with_capacity(frames.len());
        for b in 0..frames.len() {
            let candidates =
                decode_one(&self.model, &get, b, lb, self.threshold).map_err(|e| e.with_model(&id))?;
            results.push(finish(&self.keep, &self.labels, self.nms_iou, self.per_class, candidates));
        }
        drop(outputs);
        let t3 = Instant::now();
        self.times.preprocess += t1 - t0;
        self.times.inference += t2 - t1;
        self.times.decode += t3 - t2;
        Ok(results)
    }
}

/// Keeps the wanted classes, suppresses overlaps, attaches labels.
fn finish(
    keep: &[bool],
    labels: &[Arc<str>],
    nms_iou: f32,
    per_class: bool,
    candidates: Vec<Candidate>,
) -> Vec<Detection> {
    let kept: Vec<Candidate> =
        candidates.into_iter().filter(|c| keep.get(c.class).copied().unwrap_or(false)).collect();
    nms(kept, nms_iou, per_class)
        .into_iter()
        .filter_map(|c| {
            let label = labels.get(c.class)?.clone();
            Some(Detection { bbox: c.bbox, score: c.score, label, class: c.class, landmarks: c.landmarks })
        })
        .collect()
}

/// Internal decode failure before the model id is attached.
enum DecodeFailure {
    Detector(DetectorError),
    Output(String, String),
    Decode(DecodeError),
}

impl DecodeFailure {
    fn with_model(self, model: &str) -> DetectorError {
        match self {
            Self::Detector(e) => e,
            Self::Output(output, message) => {
                DetectorError::Output { model: model.to_owned(), output, message }
            }
            Self::Decode(source) => DetectorError::Decode { model: model.to_owned(), source },
        }
    }
}

fn item<'a, D: ndarray::Dimension>(
    all: ArrayViewD<'a, f32>,
    b: usize,
    name: &str,
) -> Result<ndarray::ArrayView<'a, f32, D>, DecodeFailure> {
    if all.ndim() == 0 || all.shape()[0] <= b {
        return Err(DecodeFailure::Output(
            name.to_owned(),
            format!("shape {:?} has no batch item {b}", all.shape()),
        ));
    }
    let shape = all.shape().to_vec();
    all.index_axis_move(Axis(0), b)
        .into_dimensionality::<D>()
        .map_err(|_| DecodeFailure::Output(name.to_owned(), format!("unexpected shape {shape:?}")))
}

fn decode_one<'a>(
    model: &Model,
    get: &dyn Fn(&str) -> Result<ArrayViewD<'a, f32>, DetectorError>,
    b: usize,
    lb: &Letterbox,
    threshold: f32,
) -> Result<Vec<Candidate>, DecodeFailure> {
    let get = |name: &str| get(name).map_err(DecodeFailure::Detector);
    let decoded = match &model.decoder {
        DecoderSpec::Centerface { stride, outputs, .. } => {
            let heat: ndarray::ArrayView3<'_, f32> =
                item::<Ix3>(get(&outputs.heatmap)?, b, &outputs.heatmap)?;
            let heat = heat.index_axis_move(Axis(0), 0);
            decode::centerface(
                heat,
                item::<Ix3>(get(&outputs.scale)?, b, &outputs.scale)?,
                item::<Ix3>(get(&outputs.offset)?, b, &outputs.offset)?,
                item::<Ix3>(get(&outputs.landmarks)?, b, &outputs.landmarks)?,
                *stride,
                lb,
                threshold,
            )
        }
        DecoderSpec::Nanodet { reg_max, center_offset, levels, .. } => {
            let mut views = Vec::with_capacity(levels.len());
            for l in levels {
                views.push(NanodetLevel {
                    stride: l.stride,
                    cls: item::<Ix2>(get(&l.cls)?, b, &l.cls)?,
                    reg: item::<Ix2>(get(&l.reg)?, b, &l.reg)?,
                });
            }
            decode::nanodet(&views, *reg_max, *center_offset, lb, threshold)
        }
        DecoderSpec::Centernet { detections, .. } => decode::centernet(
            item::<Ix2>(get(detections)?, b, detections)?,
            model.labels.len(),
            lb,
            threshold,
        ),
        DecoderSpec::Yolov5 { output, .. } => {
            decode::yolov5(item::<Ix2>(get(output)?, b, output)?, lb, threshold)
        }
        DecoderSpec::Yolov8 { output, .. } => {
            decode::yolov8(item::<Ix2>(get(output)?, b, output)?, lb, threshold)
        }
        other => {
            return Err(DecodeFailure::Detector(DetectorError::Unsupported {
                model: model.id.clone(),
                family: other.family().to_owned(),
            }));
        }
    };
    decoded.map_err(DecodeFailure::Decode)
}

impl Detector for OrtDetector {
    fn name(&self) -> &str {
        &self.model.id
    }

    fn detect(&mut self, frames: &[FrameRef<'_>]) -> Result<Vec<Vec<Detection>>, DetectorError> {
        self.times = StageTimes::default();
        let mut results: Vec<Vec<Detection>> = vec![Vec::new(); frames.len()];
        // group frames by input geometry; batch a group when the model allows it
        let plans: Vec<Letterbox> =
            frames.iter().map(|f| Letterbox::plan(&self.model.input, f.width, f.height)).collect();
        let mut done = vec![false; frames.len()];
        for i in 0..frames.len() {
            if done[i] {
                continue;
            }
            let lb = plans[i];
            let limit = if self.dynamic_batch { self.max_batch } else { 1 };
            let group: Vec<usize> =
                (i..frames.len()).filter(|&j| !done[j] && plans[j] == lb).take(limit).collect();
            let batch: Vec<FrameRef<'_>> = group.iter().map(|&j| frames[j]).collect();
            let out = self.run_batch(&batch, &lb)?;
            for (j, dets) in group.into_iter().zip(out) {
                done[j] = true;
                results[j] = dets;
            }
        }
        Ok(results)
    }
}
