#!/usr/bin/env bash
# Runs the browser tests (node's test runner): live.test.mjs and live-tcp.test.mjs (the WHEP
# relay over UDP and ICE-TCP) and ui.test.mjs (the web UI; it writes docs/screenshots/*.png). They run in a network
# namespace with only `lo` up: Chromium contacts update hosts at start otherwise, and nothing
# here needs more. Panoptes uses its private PostgreSQL cluster (a Unix socket), as the
# machine's server is not reachable from inside the namespace. Needs root (unshare -n) and
# PANOPTES_BIN.
#
#   PANOPTES_BIN=target/debug/panoptes tests/browser/run.sh [node --test args...] [test files...]
#
# Without test files it runs every *.test.mjs here, one file at a time (each starts its
# own camera, Panoptes and Chromium). The UI test needs the analytics' ONNX Runtime and
# models and the test clips: without ORT_DYLIB_PATH in the environment, scripts/setup.sh's
# env.sh is sourced.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[[ -x "${PANOPTES_BIN:-}" ]] || { echo "run.sh: PANOPTES_BIN must name the panoptes binary" >&2; exit 2; }
[[ -d "$here/node_modules/playwright-core" ]] ||
    { echo "run.sh: npm dependencies missing: npm ci --prefix tests/browser (scripts/setup.sh does it)" >&2; exit 2; }
if [[ "${PANOPTES_IN_NETNS:-}" != 1 ]]; then
    exec unshare -n env PANOPTES_IN_NETNS=1 "$0" "$@"
fi
ip link set lo up
if [[ -z "${ORT_DYLIB_PATH:-}" ]]; then
    env_sh=${PANOPTES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/panoptes}/env.sh
    # shellcheck source=/dev/null
    [[ -f "$env_sh" ]] && source "$env_sh"
fi
# Files named on the command line replace the default set.
files=()
args=()
for a in "$@"; do
    if [[ "$a" == *.mjs ]]; then files+=("$(cd "$(dirname "$a")" && pwd)/$(basename "$a")"); else args+=("$a"); fi
done
[[ ${#files[@]} -gt 0 ]] || files=("$here"/*.test.mjs)
# One file at a time: each starts its own camera, server and browser on 2 cores.
exec node --test --test-concurrency=1 "${args[@]}" "${files[@]}"
