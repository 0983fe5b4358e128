#!/usr/bin/env bash
# Runs the browser tests (node's test runner) in a network namespace with only `lo` up:
# Chromium contacts update hosts at start otherwise, and nothing here needs more. Panoptes
# uses its private PostgreSQL cluster (a Unix socket), as the machine's server is not
# reachable from inside the namespace. Needs root (unshare -n) and PANOPTES_BIN.
#
#   PANOPTES_BIN=target/debug/panoptes tests/browser/run.sh [node --test args...] [test files...]
#
# Without test files it runs every *.test.mjs here, one file at a time (each starts its
# own camera, Panoptes and Chromium).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[[ -x "${PANOPTES_BIN:-}" ]] || { echo "run.sh: PANOPTES_BIN must name the panoptes binary" >&2; exit 2; }
[[ -d "$here/node_modules/playwright-core" ]] ||
    { echo "run.sh: npm dependencies missing: npm ci --prefix tests/browser (scripts/setup.sh does it)" >&2; exit 2; }
if [[ "${PANOPTES_IN_NETNS:-}" != 1 ]]; then
    exec unshare -n env PANOPTES_IN_NETNS=1 "$0" "$@"
fi
ip link set lo up
args=() files=()
for a in "$@"; do
    if [[ $a == *.test.mjs ]]; then files+=("$a"); else args+=("$a"); fi
done
((${#files[@]})) || files=("$here"/*.test.mjs)
exec node --test --test-concurrency=1 "${args[@]}" "${files[@]}"
