#!/usr/bin/env bash
# Analytics benchmark: the Rust detector (analytics/examples/bench.rs) against Python
# onnxruntime (scripts/ort-reference-bench.py) on the same libonnxruntime, model, image and
# thread count, in the same run. Prints a Markdown table for docs/BENCHMARKS.md.
#
#   bench/analytics.sh [ITERATIONS=50] [THREADS=1]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-50}
threads=${2:-1}
CACHE=${PANOPTES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/panoptes}
# shellcheck disable=SC1091
source "$CACHE/env.sh"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
cargo build -q --release -p panoptes-analytics --example bench
bin=$CARGO_TARGET_DIR/release/examples/bench
py_dylib=$(python3 scripts/ort-reference-bench.py --dylib)
echo "Rust ORT_DYLIB_PATH=$ORT_DYLIB_PATH; Python onnxruntime: $py_dylib ($(sha256sum "$ORT_DYLIB_PATH" "$py_dylib" | cut -c1-12 | tr '\n' ' '))" >&2
echo "| model | image | Rust inference ms | Python inference ms | ratio | Rust frame ms | Python frame ms | ratio | Rust preprocess share | Rust frames/s/core |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for model in nanodet centerface centernet; do
  for img in bus.jpg zidane.jpg; do
    r=$("$bin" "$model" "$CACHE/media/$img" "$n" "$threads")
    p=$(python3 scripts/ort-reference-bench.py "$model" "$CACHE/media/$img" -n "$n" --threads "$threads" --json)
    python3 - "$r" "$p" "$threads" <<'PY'
import json, sys
r, p, t = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
ri, pi = r["inference_ms"]["p50"], p["inference_ms"]["p50"]
rf, pf = r["frame_ms"]["p50"], p["frame_ms"]["p50"]
share = r["preprocess_ms"]["p50"] / rf
print(f"| {r['model']} | {r['image'].rsplit('/', 1)[-1]} {r['image_size'][0]}x{r['image_size'][1]} | {ri:.1f} | {pi:.1f} | {ri/pi:.2f} | {rf:.1f} | {pf:.1f} | {rf/pf:.2f} | {share:.0%} | {1000/rf/t:.1f} |")
PY
  done
done
