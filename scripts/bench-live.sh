#!/usr/bin/env bash
# Live relay benchmark: CPU per viewer of Panoptes' str0m relay against a GStreamer webrtcbin
# relay (scripts/bench-webrtcbin.py) of the same camera stream, in the same run, with N
# non-decoding str0m viewers (api/examples/live_load.rs), plus the delay inside Panoptes'
# relay. Everything runs in a private network namespace: loopback plus a veth pair with
# addresses that exist only inside it (libnice offers no loopback candidates).
#
#   scripts/bench-live.sh [VIEWERS [SECS]]      e.g. scripts/bench-live.sh 1,10,50 15
#
# Needs root, scripts/setup.sh done, gstreamer1.0-nice and gir1.2-gst-plugins-bad-1.0.
# PROFILE=release (default debug) picks the build of panoptes and live_load. WEBRTCBIN=1 also
# runs the GStreamer reference relay (scripts/bench-webrtcbin.py; GST_DEFAULTS=1 keeps
# libnice's ICE-TCP and UPnP, which the reference turns off by default). The viewers are str0m
# clients (api/examples/live_load.rs: also reads the relay delay) or, with CLIENT=aiortc,
# aiortc clients (scripts/bench-client.py, installed from PyPI into a venv in the cache),
# which both relays accept: str0m's DTLS refuses webrtcbin's RSA certificate. The aiortc
# viewers run in worker processes of PER_PROC (default 10) viewers each; it prints, per
# relay and count, CPU, frames/s per viewer (min/median), the client's CPU, UDP drops and
# the delay inside each relay, then the ratio table. BENCH_JSON=FILE also keeps the rows
# (with every viewer's frames/s and timestamp gaps). BENCH_LOG sets Panoptes' log filter.
set -euo pipefail
cd "$(dirname "$0")/.."
VIEWERS=${1:-1,10,50}
SECS=${2:-15}
PROFILE=${PROFILE:-debug}
CACHE=${PANOPTES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/panoptes}
# shellcheck disable=SC1091
source "$CACHE/env.sh"
TARGET=${CARGO_TARGET_DIR:-target}
AIORTC_VERSION=1.16.0
export AIORTC_VENV=$CACHE/tools/aiortc-$AIORTC_VERSION

if [[ "${BENCH_IN_NETNS:-}" != 1 ]]; then
    flag=()
    [[ $PROFILE == release ]] && flag=(--release)
    if [[ "${CLIENT:-str0m}" == aiortc && ! -x "$AIORTC_VENV/bin/python" ]]; then
        /usr/bin/python3 -m venv "$AIORTC_VENV"
        "$AIORTC_VENV/bin/pip" install -q "aiortc==$AIORTC_VERSION"
    fi
    cargo build --locked -q "${flag[@]}" --bin panoptes
    cargo build --locked -q "${flag[@]}" -p panoptes-api --example live_load
    work=$(mktemp -d /tmp/panoptes-bench.XXXXXX)
    chmod 755 "$work"
    # Copies: another build in a shared target dir must not swap the binaries mid-run.
    cp "$TARGET/$PROFILE/panoptes" "$TARGET/$PROFILE/examples/live_load" "$work/"
    BENCH_IN_NETNS=1 BENCH_WORK=$work exec unshare -n "$0" "$@"
fi

work=$BENCH_WORK
export BENCH_METRICS_TOKEN=bench
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ -n "${KEEP:-}" ]] || rm -rf "$work"
}
trap cleanup EXIT

ip link set lo up
ip link add bench0 type veth peer name bench1
ip addr add 10.213.0.1/24 dev bench0
ip addr add 10.213.0.2/24 dev bench1
ip link set bench0 up
ip link set bench1 up

wait_for() {  # wait_for SECONDS CMD...: poll CMD until it succeeds
    local end=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || { echo "bench: timed out: $*" >&2; return 1; }
        sleep 0.2
    done
}

/usr/bin/python3 scripts/test-camera.py --port 18554 --bind 127.0.0.1 >"$work/camera.out" 2>"$work/camera.log" &
pids+=($!)
wait_for 30 grep -q READY "$work/camera.out"
rtsp=rtsp://127.0.0.1:18554/h264-720p

cat >"$work/panoptes.toml" <<EOF
[server]
listen = "127.0.0.1:18080"
data_dir = "$work/data"
metrics_token_env = "BENCH_METRICS_TOKEN"
webrtc_udp = "10.213.0.1:0"
[log]
filter = "${BENCH_LOG:-warn}"
[[cameras]]
id = "lobby"
[[cameras.streams]]
name = "main"
url = "$rtsp"
roles = ["live"]
EOF
echo "bench-password" | env -u PANOPTES_DATABASE_URL "$work/panoptes" user add bench --role admin \
    --config "$work/panoptes.toml" >"$work/user.log" 2>&1
env -u PANOPTES_DATABASE_URL "$work/panoptes" serve --config "$work/panoptes.toml" \
    >"$work/panoptes.log" 2>&1 &
panoptes=$!
pids+=($panoptes)
wait_for 90 curl -sf http://127.0.0.1:18080/readyz

if [[ "${WEBRTCBIN:-}" == 1 ]]; then
    /usr/bin/python3 scripts/bench-webrtcbin.py --rtsp "$rtsp" --port 18081 --bind 127.0.0.1 ${GST_DEFAULTS:+--gst-defaults} \
        >"$work/gst.out" 2>"$work/gst.log" &
    gst=$!
    pids+=($gst)
    wait_for 30 grep -q READY "$work/gst.out"
fi
sleep 3  # the relays receiving the stream

if [[ "${CLIENT:-str0m}" == aiortc ]]; then
    # One client run measures both relays at each viewer count in turn (same conditions).
    relays=(--relay "name=Panoptes,whep=http://127.0.0.1:18080/api/live/lobby/main/whep,pid=$panoptes,login=http://127.0.0.1:18080|bench|bench-password,metrics=http://127.0.0.1:18080|bench")
    [[ "${WEBRTCBIN:-}" == 1 ]] &&
        relays+=(--relay "name=webrtcbin,whep=http://127.0.0.1:18081/whep,pid=$gst,delay=http://127.0.0.1:18081/delay")
    echo "## Panoptes (str0m relay, $PROFILE build)${WEBRTCBIN:+ and GStreamer webrtcbin}, aiortc viewers, $SECS s per measurement, 720p 25 fps"
    "$AIORTC_VENV/bin/python" scripts/bench-client.py "${relays[@]}" --viewers "$VIEWERS" --secs "$SECS" \
        --per-proc "${PER_PROC:-10}" ${BENCH_JSON:+--json "$BENCH_JSON"}
    exit 0
fi

echo "## Panoptes (str0m relay, $PROFILE build), $SECS s per measurement, 720p 25 fps ~2 Mbit/s"
"$work/live_load" --base http://127.0.0.1:18080 --user bench --password bench-password --camera lobby \
    --stream main --pid "$panoptes" --secs "$SECS" --viewers "$VIEWERS" --bind-ip 10.213.0.2 \
    --metrics-token bench
[[ "${WEBRTCBIN:-}" == 1 ]] || exit 0
echo
echo "## GStreamer webrtcbin relay (rtph264pay + webrtcbin per viewer), same stream"
"$work/live_load" --base http://127.0.0.1:18081 --whep-url http://127.0.0.1:18081/whep --pid "$gst" \
    --secs "$SECS" --viewers "$VIEWERS" --bind-ip 10.213.0.2
