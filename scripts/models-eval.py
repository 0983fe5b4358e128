#!/usr/bin/env python3
"""Measure the detectors against hand-recorded ground truth (models/eval/ground-truth.toml).

    scripts/models-eval.py                      all face/object models, write models/eval/results.*
    scripts/models-eval.py nanodet centernet    only these
    scripts/models-eval.py --draw DIR           also save images with GT and detections drawn
    scripts/models-eval.py --set nanodet.input.colour='"RGB"' ...   try a variant (not written)

Runs under $CACHE/venv-tools (onnxruntime 1.31.1; re-executes itself there, creating it on
first use). Models must be installed (scripts/models-fetch.py); media are fetched into
$CACHE/media/ when missing.

Matching, per image: detections of the evaluated classes, highest score first, each matched
to the unmatched ground-truth box of an accepted class (`class` or `also`) with the highest
IoU >= 0.5 -> TP (counted under the ground-truth class). A detection overlapping (IoU >= 0.5)
an `ignore` box or an already-matched box of an accepted class is not counted when the box
is `ignore`, and is an FP (duplicate) otherwise. Every other detection is an FP under its own
label; every unmatched non-ignore box is an FN. Thresholding happens after NMS, which for
greedy NMS equals thresholding before it, so one inference serves every threshold."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from panoptes_models import cache  # noqa: E402

if __name__ == "__main__":
    cache.reexec_in_venv("tools", Path(__file__).resolve(), sys.argv[1:])

from panoptes_models import manifest, media  # noqa: E402
from panoptes_models.cache import StepError  # noqa: E402
from panoptes_models.decode import Runner, iou, preprocess  # noqa: E402

GROUND_TRUTH = cache.REPO_DIR / "models" / "eval" / "ground-truth.toml"
RESULTS = cache.REPO_DIR / "models" / "eval" / "results"
GOLDEN = cache.REPO_DIR / "models" / "eval" / "reference-detections.json"
SWEEP = [0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6]
FLOOR = 0.05  # decode once at this score, threshold afterwards


def match(dets, boxes, classes: set[str], iou_min: float, threshold: float):
    """Returns (tp, fp, fn) dicts keyed by class name, plus a per-detection log."""
    tp, fp, fn = {}, {}, {}
    gts = [b for b in boxes if b["class"] in classes]
    used = [False] * len(gts)
    log = []
    for d in sorted((d for d in dets if d.score >= threshold and d.label in classes), key=lambda d: -d.score):
        best, best_iou = None, iou_min
        ignored = False
        duplicate = False
        for i, g in enumerate(gts):
            accepted = {g["class"], *g.get("also", [])}
            if d.label not in accepted:
                continue
            ov = iou(d.box(), tuple(g["box"]))
            if ov < iou_min:
                continue
            if g.get("ignore"):
                ignored = True
            elif used[i]:
                duplicate = True
            elif ov >= best_iou:
                best, best_iou = i, ov
        if best is not None:
            used[best] = True
            c = gts[best]["class"]
            tp[c] = tp.get(c, 0) + 1
            log.append(("TP", d, best_iou))
        elif ignored and not duplicate:
            log.append(("ignored", d, 0.0))
        else:
            fp[d.label] = fp.get(d.label, 0) + 1
            log.append(("FP dup" if duplicate else "FP", d, 0.0))
    for i, g in enumerate(gts):
        if not used[i] and not g.get("ignore"):
            fn[g["class"]] = fn.get(g["class"], 0) + 1
    return tp, fp, fn, log


def compact_json(obj) -> str:
    """Indented JSON with innermost lists (boxes, shapes) kept on one line."""
    import re

    text = json.dumps(obj, indent=1, ensure_ascii=False)
    return re.sub(r"\[\s+([^\[\]{}]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)


def add(a: dict, b: dict) -> None:
    for k, v in b.items():
        a[k] = a.get(k, 0) + v


def pr(tp: int, fp: int, fn: int) -> tuple[str, str]:
    p = f"{tp / (tp + fp):.2f}" if tp + fp else "-"
    r = f"{tp / (tp + fn):.2f}" if tp + fn else "-"
    return p, r


def apply_set(specs: dict, assignment: str) -> str:
    """--set id.a.b=JSON : override one manifest field for a what-if run."""
    key, _, value = assignment.partition("=")
    mid, *path = key.split(".")
    if mid not in specs or not path or not value:
        raise SystemExit(f"error: --set {assignment!r}: expected MODEL.field.sub=JSON with a known model")
    node = specs[mid]
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = json.loads(value)
    return mid


def draw(image_path: Path, boxes, results: dict, out: Path) -> None:
    from PIL import Image, ImageDraw

    img = Image.open(image_path).convert("RGB")
    d = ImageDraw.Draw(img)
    for b in boxes:
        d.rectangle(b["box"], outline=(255, 255, 0) if not b.get("ignore") else (128, 128, 0), width=2)
        d.text((b["box"][0] + 3, b["box"][1] + 3), "GT " + b["class"], fill=(255, 255, 0))
    colours = [(255, 60, 60), (60, 160, 255), (60, 255, 60)]
    for k, (mid, logs) in enumerate(results.items()):
        for verdict, det, _ in logs:
            c = colours[k % len(colours)]
            d.rectangle(det.box(), outline=c, width=1 if verdict != "TP" else 2)
            d.text((det.x1 + 3, det.y2 - 12 - 12 * k), f"{mid} {det.label} {det.score:.2f} {verdict}", fill=c)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)


def _face_crops(face_spec: dict, images, threads: int):
    """Run the face detector; yield (image id, person, crop) for detections matching a
    ground-truth face that names a person."""
    from PIL import Image

    det = Runner(face_spec, str(cache.cache_dir() / "models" / face_spec["file"]), threads)
    for img, img_path in images:
        faces = [b for b in img["boxes"] if b["class"] == "face" and b.get("person")]
        if not faces:
            continue
        pil = Image.open(img_path).convert("RGB")
        dets = det.detect(pil, face_spec["score_threshold"])
        for b in faces:
            best = max(dets, key=lambda d: iou(d.box(), tuple(b["box"])), default=None)
            if best is None or iou(best.box(), tuple(b["box"])) < 0.5:
                continue
            yield img["id"], b["person"], pil.crop(tuple(int(round(v)) for v in best.box()))


def eval_embedding(spec: dict, path: Path, face_spec: dict, images, threads: int, report: dict) -> list[str]:
    """Cosine similarity of face descriptors: same person vs different people."""
    import itertools

    from panoptes_models.decode import Embedder, cosine

    emb = Embedder(spec, str(path), threads)
    items = []
    times = []
    for img_id, person, crop in _face_crops(face_spec, images, threads):
        t = time.perf_counter()
        items.append((img_id, person, emb.embed(crop)))
        times.append((time.perf_counter() - t) * 1e3)
    same, diff = [], []
    for (ia, pa, ea), (ib, pb, eb) in itertools.combinations(items, 2):
        (same if pa == pb else diff).append(cosine(ea, eb))
    thr = spec["score_threshold"]

    def stats(v):
        return f"{min(v):.2f} / {statistics.mean(v):.2f} / {max(v):.2f}" if v else "-"

    ok_same = sum(s >= thr for s in same)
    ok_diff = sum(d < thr for d in diff)
    report["models"][spec["id"]] = {
        "faces": len(items), "people": len({p for _, p, _ in items}),
        "same_pairs": len(same), "different_pairs": len(diff),
        "same_cosine_min_mean_max": [round(min(same), 3), round(statistics.mean(same), 3), round(max(same), 3)] if same else None,
        "different_cosine_min_mean_max": [round(min(diff), 3), round(statistics.mean(diff), 3), round(max(diff), 3)] if diff else None,
        "threshold": thr, "same_accepted": ok_same, "different_rejected": ok_diff,
        "ms_per_face_median": round(statistics.median(times), 1) if times else None,
    }
    return [f"### {spec['id']} (face descriptors of {len(items)} detected faces, "
            f"{len({p for _, p, _ in items})} people; crops from {face_spec['id']})\n",
            "| pairs | count | cosine min / mean / max | correct at threshold " + str(thr) + " |",
            "| --- | ---: | --- | ---: |",
            f"| same person | {len(same)} | {stats(same)} | {ok_same}/{len(same)} |",
            f"| different people | {len(diff)} | {stats(diff)} | {ok_diff}/{len(diff)} |",
            f"\n{report['models'][spec['id']]['ms_per_face_median']} ms per face (median, incl. resize).\n"]


def eval_text(det_spec: dict, det_path: Path, rec_spec: dict | None, images, threads: int,
              report: dict) -> list[str]:
    """Detect text lines, read them, and look for the words ground truth lists in `texts`."""
    from PIL import Image

    from panoptes_models.decode import Recognizer

    if rec_spec is None:
        return []
    rec_path = cache.cache_dir() / "models" / rec_spec["file"]
    if not rec_path.exists():
        raise SystemExit(f"error: {rec_spec['id']}: not installed; run scripts/models-fetch.py {rec_spec['id']}")
    det = Runner(det_spec, str(det_path), threads)
    rec = Recognizer(rec_spec, str(rec_path), threads)
    lines = [f"### {det_spec['id']} + {rec_spec['id']} (text boxes >= {det_spec['score_threshold']}, "
             f"strings >= {rec_spec['score_threshold']})\n",
             "| image | expected | read (in box order) | found | ms |", "| --- | --- | --- | ---: | ---: |"]
    out = {}
    for img, img_path in images:
        want = img.get("texts")
        if not want:
            continue
        pil = Image.open(img_path).convert("RGB")
        t = time.perf_counter()
        read = []
        for b in det.detect(pil, det_spec["score_threshold"]):
            text, score = rec.read(pil.crop(tuple(int(round(v)) for v in b.box())))
            if text and score >= rec_spec["score_threshold"]:
                read.append(text)
        ms = (time.perf_counter() - t) * 1e3
        norm = [r.replace(" ", "").lower() for r in read]
        found = [w for w in want if any(w.replace(" ", "").lower() in r for r in norm)]
        out[img["id"]] = {"expected": want, "read": read, "found": found, "ms": round(ms)}
        lines.append(f"| {img['id']} | {', '.join(want)} | {' / '.join(read)} | "
                     f"{len(found)}/{len(want)} | {ms:.0f} |")
    report["models"][det_spec["id"]] = out
    return lines + [""]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ids", nargs="*", help="model ids (default: every face and object model)")
    p.add_argument("--repeat", type=int, default=5, help="timed inferences per image (default 5)")
    p.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0 = ORT default)")
    p.add_argument("--draw", type=Path, help="write annotated images into this directory")
    p.add_argument("--set", action="append", default=[], metavar="ID.FIELD=JSON",
                   help="override a manifest field (what-if; results are not written)")
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("-v", "--verbose", action="store_true", help="print every detection's verdict")
    a = p.parse_args()

    data = manifest.load()
    specs = manifest.by_id(data)
    gt = tomllib.loads(GROUND_TRUTH.read_text())
    vehicle = set(gt["vehicle_classes"])
    iou_min = gt["iou"]
    ids = a.ids or [m["id"] for m in data["model"]]
    for i in ids:
        if i not in specs:
            raise SystemExit(f"error: unknown model id {i!r}")
    modified = {apply_set(specs, s) for s in a.set}

    try:
        images = [(img, media.ensure_image(img)) for img in gt["image"]]
    except StepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    from PIL import Image
    import onnxruntime as ort

    report = {"onnxruntime": ort.__version__, "iou": iou_min, "models": {}}
    golden: dict[str, dict] = {}
    drawn: dict[str, dict] = {img["id"]: {} for img, _ in images}
    md = []
    for mid in ids:
        spec = specs[mid]
        path = cache.cache_dir() / "models" / spec["file"]
        if not path.exists():
            print(f"error: {mid}: model not installed at {path}; run scripts/models-fetch.py {mid}",
                  file=sys.stderr)
            return 1
        if spec["role"] == "face_embedding":
            md += eval_embedding(spec, path, specs[data["defaults"]["face"]], images, a.threads, report)
            continue
        if spec["role"] == "text":
            if spec["decoder"]["family"] == "dbnet":
                rec = next((m for m in data["model"] if m["decoder"]["family"] == "ctc"), None)
                md += eval_text(spec, path, rec, images, a.threads, report)
            continue
        classes = {"face"} if spec["role"] == "face" else vehicle
        runner = Runner(spec, str(path), a.threads)
        thr = spec["score_threshold"]
        per_image = []
        infer_ms, best_ms, frame_ms = [], [], []
        group = "face" if spec["role"] == "face" else "vehicle"
        for img, img_path in images:
            if group not in img.get("evaluate", ["vehicle", "face"]):
                continue
            pil = Image.open(img_path)
            pil.load()
            t0 = time.perf_counter()
            tensor, lb = preprocess(pil, spec)
            t1 = time.perf_counter()
            outputs = runner.infer(tensor)  # warm-up (first run allocates)
            times = []
            for _ in range(a.repeat):
                s = time.perf_counter()
                outputs = runner.infer(tensor)
                times.append((time.perf_counter() - s) * 1e3)
            t2 = time.perf_counter()
            runner.decode(outputs, spec, lb, thr)  # timed at the recommended threshold
            t3 = time.perf_counter()
            dets = runner.decode(outputs, spec, lb, FLOOR)  # for the threshold sweep
            golden.setdefault(mid, {})[img["id"]] = {
                "input_shape": list(tensor.shape),
                "detections": [[d.label, round(d.score, 4), round(d.x1, 1), round(d.y1, 1),
                                round(d.x2, 1), round(d.y2, 1)] for d in dets if d.score >= thr]}
            med = statistics.median(times)
            infer_ms.append(med)
            best_ms.append(min(times))
            frame_ms.append((t1 - t0) * 1e3 + med + (t3 - t2) * 1e3)
            per_image.append((img, dets))

        # threshold sweep (totals over the evaluated classes)
        sweep = []
        for t in sorted(set(SWEEP + [thr])):
            T, F, N = {}, {}, {}
            for img, dets in per_image:
                tp, fp, fn, _ = match(dets, img["boxes"], classes, iou_min, t)
                add(T, tp), add(F, fp), add(N, fn)
            tt, ff, nn = sum(T.values()), sum(F.values()), sum(N.values())
            sweep.append({"threshold": t, "tp": tt, "fp": ff, "fn": nn})

        # per-class at the recommended threshold
        T, F, N = {}, {}, {}
        per_image_report = {}
        tp_ious = []
        for img, dets in per_image:
            tp, fp, fn, log = match(dets, img["boxes"], classes, iou_min, thr)
            add(T, tp), add(F, fp), add(N, fn)
            tp_ious += [ov for verdict, _, ov in log if verdict == "TP"]
            drawn[img["id"]][mid] = log
            per_image_report[img["id"]] = {"tp": sum(tp.values()), "fp": sum(fp.values()),
                                           "fn": sum(fn.values())}
            if a.verbose:
                for verdict, d, ov in log:
                    print(f"  {mid:10} {img['id']:11} {verdict:7} {d.label:10} {d.score:.2f} "
                          f"[{d.x1:.0f},{d.y1:.0f},{d.x2:.0f},{d.y2:.0f}] iou={ov:.2f}")
        order = sorted(classes, key=lambda c: gt["vehicle_classes"].index(c) if c in vehicle else 0)
        rows = []
        for c in order:
            tp, fp, fn = T.get(c, 0), F.get(c, 0), N.get(c, 0)
            prec, rec = pr(tp, fp, fn)
            rows.append({"class": c, "tp": tp, "fp": fp, "fn": fn, "precision": prec, "recall": rec})
        tt, ff, nn = sum(T.values()), sum(F.values()), sum(N.values())
        prec, rec = pr(tt, ff, nn)
        rows.append({"class": "all", "tp": tt, "fp": ff, "fn": nn, "precision": prec, "recall": rec})
        name = mid + (" (modified by --set)" if mid in modified else "")
        report["models"][name] = {
            "threshold": thr, "classes": rows,
            "mean_iou_of_tp": round(statistics.mean(tp_ious), 3) if tp_ious else None, "sweep": sweep, "per_image": per_image_report,
            "inference_ms_median_per_image": round(statistics.median(infer_ms), 1),
            "inference_ms_mean_per_image": round(statistics.mean(infer_ms), 1),
            "inference_ms_best_of_n_median_per_image": round(statistics.median(best_ms), 1),
            "frame_ms_mean_per_image": round(statistics.mean(frame_ms), 1),
            "input": f"{spec['input']['width']}x{spec['input']['height']}"
                     + (" (fit, /32)" if spec["input"].get("dynamic") else ""),
        }

        md.append(f"### {name} (score >= {thr}, IoU >= {iou_min}, {len(per_image)} images)\n")
        md.append("| class | TP | FP | FN | precision | recall |")
        md.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for r in rows:
            md.append(f"| {r['class']} | {r['tp']} | {r['fp']} | {r['fn']} | {r['precision']} | {r['recall']} |")
        m = report["models"][name]
        md.append(f"\nMean IoU of the true positives: {m['mean_iou_of_tp']}. "
                  f"Inference {m['inference_ms_median_per_image']} ms median per image "
                  f"(mean {m['inference_ms_mean_per_image']}; best of {a.repeat}: "
                  f"{m['inference_ms_best_of_n_median_per_image']}), whole frame (Python preprocess + "
                  f"inference + decode) {m['frame_ms_mean_per_image']} ms mean; input {m['input']}.\n")
        negatives = [i for i, _ in per_image if not any(b["class"] in classes for b in i["boxes"])]
        neg_fp = {i["id"]: per_image_report[i["id"]]["fp"] for i in negatives}
        report["models"][name]["false_positives_on_negative_images"] = neg_fp
        if negatives:
            md.append("False positives on images without any " + ("face" if group == "face" else "vehicle")
                      + ": " + ", ".join(f"{k} {v}" for k, v in neg_fp.items()) + ".\n")
        md.append("Threshold sweep (all evaluated classes): " + ", ".join(
            f"{s['threshold']}: {s['tp']}/{s['fp']}/{s['fn']}" for s in sweep) + " (TP/FP/FN)\n")

    text = "\n".join(md)
    print(text)
    if a.draw:
        for img, img_path in images:
            draw(img_path, img["boxes"], drawn[img["id"]], a.draw / f"{img['id']}.png")
        print(f"annotated images in {a.draw}")
    if not a.no_write and not modified:
        import os
        import platform
        header = (f"# Measured by scripts/models-eval.py\n\nonnxruntime {ort.__version__} (CPU), "
                  f"{os.cpu_count()} cores, {platform.machine()}, ORT threads: "
                  f"{a.threads or 'default'}, load average at the end {os.getloadavg()[0]:.1f} "
                  f"(timings are only comparable within one run); ground truth: "
                  f"models/eval/ground-truth.toml.\n\n")
        RESULTS.with_suffix(".md").write_text(header + text + "\n")
        RESULTS.with_suffix(".json").write_text(compact_json(report) + "\n")
        GOLDEN.write_text(compact_json({
            "about": "Python reference detections (panoptes_models.decode) at each model's "
                     "score_threshold, for checking the Rust port on the same images: "
                     "[label, score, x1, y1, x2, y2] in original image pixels.",
            "onnxruntime": ort.__version__, "models": golden}) + "\n")
        print(f"wrote {RESULTS.with_suffix('.md')}, .json and {GOLDEN.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
