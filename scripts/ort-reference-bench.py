#!/usr/bin/env python3
"""Python onnxruntime reference timings for one model on one image, to set beside the Rust
benchmark in the same run (same libonnxruntime 1.31.1, same model file, same input).

    scripts/ort-reference-bench.py nanodet $CACHE/media/bus.jpg [-n 50] [--threads 1] [--json]
    scripts/ort-reference-bench.py --dylib     # path of the libonnxruntime.so this uses

Prints inference ms (session.run only) and whole-frame ms (preprocess + inference + decode,
all in Python/numpy/Pillow as in panoptes_models.decode): mean, p50, p95 over N iterations
after warm-up runs. Runs in $CACHE/venv-tools (re-executes itself there)."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from panoptes_models import cache  # noqa: E402

if __name__ == "__main__":
    cache.reexec_in_venv("tools", Path(__file__).resolve(), sys.argv[1:])

from panoptes_models import manifest  # noqa: E402
from panoptes_models.decode import Runner, preprocess  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def summary(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 2), "p50": round(pct(values, 0.5), 2),
            "p95": round(pct(values, 0.95), 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="model id from models/manifest.toml")
    p.add_argument("image", nargs="?", type=Path)
    p.add_argument("-n", "--iterations", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = ORT default)")
    p.add_argument("--threshold", type=float, help="score threshold (default: manifest's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--dylib", action="store_true", help="print the libonnxruntime.so path and exit")
    a = p.parse_args()

    import onnxruntime as ort

    capi = Path(ort.__file__).parent / "capi"
    dylib = sorted(capi.glob("libonnxruntime.so*"))
    if a.dylib:
        print(dylib[0] if dylib else "not found")
        return 0
    if not a.model or not a.image:
        p.error("model and image are required")
    specs = manifest.by_id(manifest.load())
    if a.model not in specs:
        p.error(f"unknown model {a.model!r}; known: {sorted(specs)}")
    spec = specs[a.model]
    path = cache.cache_dir() / "models" / spec["file"]
    if not path.exists():
        print(f"error: {a.model}: {path} missing; run scripts/models-fetch.py {a.model}", file=sys.stderr)
        return 1
    if not a.image.exists():
        print(f"error: image {a.image} not found", file=sys.stderr)
        return 1
    from PIL import Image

    image = Image.open(a.image)
    image.load()
    thr = spec["score_threshold"] if a.threshold is None else a.threshold
    runner = Runner(spec, str(path), a.threads)

    tensor, lb = preprocess(image, spec)
    for _ in range(a.warmup):
        runner.decode(runner.infer(tensor), spec, lb, thr)
    infer_ms, frame_ms = [], []
    dets = []
    for _ in range(a.iterations):
        t0 = time.perf_counter()
        tensor, lb = preprocess(image, spec)
        t1 = time.perf_counter()
        out = runner.infer(tensor)
        t2 = time.perf_counter()
        dets = runner.decode(out, spec, lb, thr)
        t3 = time.perf_counter()
        infer_ms.append((t2 - t1) * 1e3)
        frame_ms.append((t3 - t0) * 1e3)

    result = {
        "model": a.model, "file": str(path), "image": str(a.image),
        "image_size": list(image.size), "input": list(tensor.shape),
        "onnxruntime": ort.__version__, "dylib": str(dylib[0]) if dylib else None,
        "threads": a.threads or "default", "iterations": a.iterations,
        "inference_ms": summary(infer_ms), "frame_ms": summary(frame_ms),
        "detections": len(dets), "threshold": thr,
    }
    if a.json:
        print(json.dumps(result))
    else:
        i, f = result["inference_ms"], result["frame_ms"]
        print(f"{a.model} on {a.image.name} {image.size[0]}x{image.size[1]} -> input {list(tensor.shape)}, "
              f"onnxruntime {ort.__version__}, threads {result['threads']}, {a.iterations} iterations")
        print(f"  inference  ms: mean {i['mean']:.2f}  p50 {i['p50']:.2f}  p95 {i['p95']:.2f}")
        print(f"  whole frame ms: mean {f['mean']:.2f}  p50 {f['p50']:.2f}  p95 {f['p95']:.2f}  "
              f"(preprocess + inference + decode, {len(dets)} detections >= {thr})")
        print(f"  libonnxruntime: {result['dylib']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
