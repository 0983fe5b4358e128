#!/usr/bin/env bash
# Camera-gateway CPU benchmark: Panoptes against FFmpeg on the same RTSP test camera.
#
# For N in $BENCH_COUNTS (default "1 8 16") cameras of the test camera's /h264-1080p
# (H.264 Main 1080p25, ~4 Mb/s), each mode runs N streams over RTSP/TCP on loopback, waits
# $BENCH_WARMUP s (default 5) once the streams are up, then measures $BENCH_WINDOW s
# (default 30):
#
#   ingest        panoptes serve, N cameras, roles ["record"] (RTSP receive, no decode)
#   idle-decode   panoptes serve, N cameras, roles ["detect"], decoder = "cpu": the decoder
#                 in its default key-frame-only mode
#   full-decode   camera-gateway example decode_bench: Gateway + decode::spawn in
#                 DecodeMode::Full, detect fps 5, 640x360 RGB (serve has no switch for it)
#   ffmpeg-copy   N x `ffmpeg -rtsp_transport tcp -i URL -c copy -f null -`
#   ffmpeg-decode N x `ffmpeg -rtsp_transport tcp -i URL -f null -` (every frame, 25 fps)
#
# CPU = utime+stime of the measured processes (/proc/PID/stat) over the window, in % of
# one core. Also recorded: the camera server's own CPU, bytes received on the measured
# processes' camera connections (ss -i) as Mb/s per camera, frames per second per camera where
# the process tells (ffmpeg -progress, decode_bench), established RTSP connections, and the
# whole machine's busy CPU (/proc/stat) to show other load. Traffic stays on 127.0.0.1.
#
# Environment:
#   PANOPTES_TEST_CAMERA  camera script (default <repo>/scripts/test-camera.py)
#   PANOPTES_CLIPS        clips dir (default ${PANOPTES_CACHE:-${XDG_CACHE_HOME:-~/.cache}/panoptes}/clips)
#   BENCH_COUNTS BENCH_WARMUP BENCH_WINDOW BENCH_MODES  (modes: subset of the five above)
#   BENCH_OUT             directory for results.tsv and the logs of every phase, kept
#                         (default: a temporary directory removed at exit)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${PANOPTES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/panoptes}
CAMERA_SCRIPT=${PANOPTES_TEST_CAMERA:-$REPO/scripts/test-camera.py}
CLIPS=${PANOPTES_CLIPS:-$CACHE/clips}
COUNTS=${BENCH_COUNTS:-"1 8 16"}
WARMUP=${BENCH_WARMUP:-5}
WINDOW=${BENCH_WINDOW:-30}
MODES=${BENCH_MODES:-"ingest idle-decode full-decode ffmpeg-copy ffmpeg-decode"}
MOUNT=/h264-1080p
export CARGO_TARGET_DIR=$HOME/.cache/panoptes/target

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

for tool in ffmpeg ss awk getconf; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
[[ -f $CAMERA_SCRIPT ]] || die "no camera script at $CAMERA_SCRIPT (set PANOPTES_TEST_CAMERA)"
[[ -f $CLIPS/h264-1080p.h264 ]] || die "no clips in $CLIPS (set PANOPTES_CLIPS)"

# Short path: PostgreSQL's socket path has a length limit. Traversable by the postgres
# user, which runs the private cluster when we are root.
WORK=$(mktemp -d /tmp/pgw.XXXXXX)
chmod 755 "$WORK"
OUT=${BENCH_OUT:-$WORK/out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results.tsv

PIDS=()          # every process this script started, killed at exit
CAMERA_PID=
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    # The private PostgreSQL cluster that panoptes started, if a kill left it running.
    local pm=$WORK/data/postgres/postmaster.pid
    if [[ -f $pm ]]; then
        pid=$(head -1 "$pm")
        if [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null; then
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        fi
    fi
    wait 2>/dev/null || true
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stops the processes of one phase and forgets them.
stop_pids() {
    local pid
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    local keep=() p
    for p in "${PIDS[@]}"; do
        [[ " $* " == *" $p "* ]] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

# --- measurements ---------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
# utime+stime of the given processes, in clock ticks (fields 14 and 15 of /proc/PID/stat;
# the command name, field 2, may hold spaces, so count from after its ')').
ticks() {
    local pid sum=0 rest
    for pid in "$@"; do
        rest=$(cat "/proc/$pid/stat" 2>/dev/null) || { echo "gone:$pid"; return; }
        rest=${rest##*) }
        read -r -a f <<<"$rest"
        sum=$((sum + f[11] + f[12]))
    done
    echo "$sum"
}
# bytes received so far on the given processes' established connections to the camera
# (ss -i bytes_received: the same for every client, whatever system calls it reads with)
rx_bytes() {
    local pattern
    pattern=$(printf 'pid=%s,|' "$@")
    ss -Htinp state established "( dport = :$CAMERA_PORT )" | awk -v pat="${pattern%|}" '
        /users:\(/ { mine = ($0 ~ pat); next }
        mine && match($0, /bytes_received:[0-9]+/) { sum += substr($0, RSTART + 15, RLENGTH - 15) }
        END { printf "%d\n", sum }'
}
# busy and total jiffies of the whole machine
host_stat() { awk '/^cpu / {t=0; for (i=2; i<=NF; i++) t+=$i; print t-$5-$6, t}' /proc/stat; }
# the last frame= of each ffmpeg -progress file, summed
progress_frames() {
    local f sum=0 v
    for f in "$@"; do
        v=$(grep -a '^frame=' "$f" 2>/dev/null | tail -1 | cut -d= -f2) || v=0
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}
# established TCP connections to the camera owned by the given processes
connections() {
    local pattern
    pattern=$(printf 'pid=%s,|' "$@")
    ss -Htnp state established "( dport = :$CAMERA_PORT )" | grep -cE "${pattern%|}" || true
}

# measure MODE N FRAMES_SOURCE PIDS...: warm-up, window, one line in $RESULTS.
# FRAMES_SOURCE: "progress" (ffmpeg -progress files in $PHASE_DIR), "log" (decode_bench
# output in $PHASE_DIR/decode_bench.out, read after the window) or "-".
measure() {
    local mode=$1 n=$2 frames_src=$3
    shift 3
    local pids=("$@")
    sleep "$WARMUP"
    local t0 c0 r0 k0 h0 f0=0 t1 c1 r1 k1 h1 f1=0
    t0=$(date +%s.%N); c0=$(ticks "${pids[@]}"); r0=$(rx_bytes "${pids[@]}")
    k0=$(ticks "$CAMERA_PID"); h0=$(host_stat)
    [[ $frames_src == progress ]] && f0=$(progress_frames "$PHASE_DIR"/progress-*.txt)
    sleep "$WINDOW"
    t1=$(date +%s.%N); c1=$(ticks "${pids[@]}"); r1=$(rx_bytes "${pids[@]}")
    k1=$(ticks "$CAMERA_PID"); h1=$(host_stat)
    [[ $frames_src == progress ]] && f1=$(progress_frames "$PHASE_DIR"/progress-*.txt)
    local conns
    conns=$(connections "${pids[@]}")
    if [[ $k0 == gone* || $k1 == gone* ]]; then
        say "WARNING: the test camera (pid $CAMERA_PID) died during $mode N=$n: $(tail -2 "$OUT/camera.log" | tr '\n' ' ')"
        CAMERA_LOST=1
        return 0
    fi
    [[ $conns == "$n" ]] || say "WARNING: $mode N=$n: $conns RTSP connections to the camera at the end of the window, expected $n"
    [[ $c0 != gone* && $c1 != gone* ]] || die "$mode N=$n: a measured process exited during the window ($c0 $c1); logs in $PHASE_DIR"
    local fps=-
    case $frames_src in
        progress) fps=$(awk -v a="$f0" -v b="$f1" -v t0="$t0" -v t1="$t1" -v n="$n" \
                      'BEGIN {printf "%.2f", (b-a)/(t1-t0)/n}') ;;
        log) fps=log ;;
    esac
    awk -v OFS='\t' -v mode="$mode" -v n="$n" -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" \
        -v c0="$c0" -v c1="$c1" -v r0="$r0" -v r1="$r1" -v k0="$k0" -v k1="$k1" \
        -v h0="$h0" -v h1="$h1" -v fps="$fps" -v conns="$conns" 'BEGIN {
            dt = t1 - t0; split(h0, a, " "); split(h1, b, " ")
            cpu = (c1 - c0) / hz / dt * 100
            host = (b[1] - a[1]) / (b[2] - a[2]) * 200   # 2 cores = 200 %
            print mode, n, sprintf("%.1f", dt), sprintf("%.2f", cpu), sprintf("%.3f", cpu / n),
                  sprintf("%.2f", (r1 - r0) * 8 / dt / 1e6 / n), fps,
                  sprintf("%.2f", (k1 - k0) / hz / dt * 100), sprintf("%.0f", host), conns
        }' >>"$RESULTS"
}

# --- build ----------------------------------------------------------------------------
say "building (CARGO_TARGET_DIR=$CARGO_TARGET_DIR; waits for other builds of the shared target dir)"
(cd "$REPO" && cargo build --release -p panoptes \
    && cargo build --release -p panoptes-camera-gateway --example decode_bench) >&2
PANOPTES=$CARGO_TARGET_DIR/release/panoptes
DECODE_BENCH=$CARGO_TARGET_DIR/release/examples/decode_bench

# --- camera -----------------------------------------------------------------------------
start_camera() {
    local log=$OUT/camera.log
    [[ -f $log ]] && mv "$log" "$OUT/camera.log.$(date +%s)"
    /usr/bin/python3 "$CAMERA_SCRIPT" --port 0 --bind 127.0.0.1 --clips "$CLIPS" \
        >"$OUT/camera.out" 2>"$log" &
    CAMERA_PID=$!
    PIDS+=("$CAMERA_PID")
    for _ in $(seq 100); do
        grep -q '^READY ' "$OUT/camera.out" 2>/dev/null && break
        kill -0 "$CAMERA_PID" 2>/dev/null || die "test camera exited: $(tail -3 "$log")"
        sleep 0.2
    done
    BASE=$(awk '/^READY / {print $2}' "$OUT/camera.out")
    [[ -n $BASE ]] || die "test camera did not become ready"
    CAMERA_PORT=${BASE##*:}
    URL=$BASE$MOUNT
    say "camera at $URL (pid $CAMERA_PID)"
}
start_camera

# --- phases ---------------------------------------------------------------------------
serve_config() { # N ROLE
    cat <<EOF
[server]
listen = "127.0.0.1:0"
data_dir = "$WORK/data"
shutdown_timeout_secs = 10

[log]
filter = "info,sqlx=warn"
EOF
    local i
    for i in $(seq "$1"); do
        cat <<EOF

[[cameras]]
id = "bench-$i"
decoder = "cpu"

[[cameras.streams]]
name = "main"
url = "$URL"
roles = ["$2"]
EOF
    done
}

run_serve() { # MODE N ROLE
    local mode=$1 n=$2 role=$3
    serve_config "$n" "$role" >"$PHASE_DIR/panoptes.toml"
    "$PANOPTES" serve --config "$PHASE_DIR/panoptes.toml" >"$PHASE_DIR/panoptes.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    # The first start creates the private PostgreSQL cluster: allow time for it.
    for _ in $(seq 600); do
        grep -q 'HTTP server listening' "$PHASE_DIR/panoptes.log" && break
        kill -0 "$pid" 2>/dev/null || die "panoptes exited: $(tail -5 "$PHASE_DIR/panoptes.log")"
        sleep 0.2
    done
    grep -q 'HTTP server listening' "$PHASE_DIR/panoptes.log" || die "panoptes did not start"
    measure "$mode" "$n" - "$pid"
    stop_pids "$pid"
}

run_full_decode() { # N
    local n=$1
    "$DECODE_BENCH" --url "$URL" --cameras "$n" --fps 5 --width 640 --height 360 \
        --warmup "$WARMUP" --window "$WINDOW" --linger 15 \
        >"$PHASE_DIR/decode_bench.out" 2>"$PHASE_DIR/decode_bench.log" &
    local pid=$!
    PIDS+=("$pid")
    measure full-decode "$n" log "$pid"
    if [[ $CAMERA_LOST == 1 ]]; then
        stop_pids "$pid"
        return 0
    fi
    # Its own report comes at the end of its window, about when ours ends.
    for _ in $(seq 50); do grep -q '^decode_bench ' "$PHASE_DIR/decode_bench.out" && break; sleep 0.2; done
    local own
    own=$(grep '^decode_bench ' "$PHASE_DIR/decode_bench.out" || true)
    [[ -n $own ]] || die "decode_bench printed no report: $(tail -3 "$PHASE_DIR/decode_bench.log")"
    say "  $own"
    local fps
    fps=$(sed -n 's/.*delivered_fps_mean=\([0-9.]*\).*/\1/p' <<<"$own")
    sed -i "\$s/\tlog\t/\t${fps}\t/" "$RESULTS"
    stop_pids "$pid"
}

run_ffmpeg() { # MODE N [ffmpeg output options...]
    local mode=$1 n=$2
    shift 2
    local pids=() i
    for i in $(seq "$n"); do
        # -t bounds each process even if this script is killed without its trap.
        ffmpeg -nostdin -loglevel error -rtsp_transport tcp -i "$URL" "$@" \
            -t $((WARMUP + WINDOW + 60)) -progress "$PHASE_DIR/progress-$i.txt" -f null - \
            2>"$PHASE_DIR/ffmpeg-$i.log" &
        pids+=($!)
        PIDS+=($!)
    done
    measure "$mode" "$n" progress "${pids[@]}"
    stop_pids "${pids[@]}"
}

printf 'mode\tN\twindow_s\tcpu_pct\tcpu_pct_per_cam\trecv_mbps_per_cam\tfps_per_cam\tcamera_server_pct\thost_busy_pct\tconnections\n' >"$RESULTS"
CAMERA_RESTARTS=0
say "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for n in $COUNTS; do
    for mode in $MODES; do
        PHASE_DIR=$OUT/$mode-$n
        mkdir -p "$PHASE_DIR"
        for attempt in 1 2 3; do
            say "$mode N=$n: ${WARMUP}s warm-up, ${WINDOW}s window"
            CAMERA_LOST=0
            case $mode in
                ingest) run_serve ingest "$n" record ;;
                idle-decode) run_serve idle-decode "$n" detect ;;
                full-decode) run_full_decode "$n" ;;
                ffmpeg-copy) run_ffmpeg ffmpeg-copy "$n" -c copy ;;
                ffmpeg-decode) run_ffmpeg ffmpeg-decode "$n" ;;
                *) die "unknown mode $mode" ;;
            esac
            [[ $CAMERA_LOST == 1 ]] || break
            [[ $attempt -lt 3 ]] || die "the test camera died three times"
            stop_pids "$CAMERA_PID"
            CAMERA_RESTARTS=$((CAMERA_RESTARTS + 1))
            start_camera
            say "retrying $mode N=$n"
        done
        tail -1 "$RESULTS" | tr '\t' ' ' | sed 's/^/bench:   /' >&2
    done
done
say "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- report ---------------------------------------------------------------------------
echo
echo "Measurements (CPU in % of one core; camera server and host busy are totals, host of 200 %)"
echo
awk -F'\t' 'NR == 1 {
        print "| mode | N | CPU % total | CPU % per camera | Mb/s received per camera | fps per camera | camera server CPU % | host busy % | RTSP connections |"
        print "|---|---:|---:|---:|---:|---:|---:|---:|---:|"; next }
    { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $4, $5, $6, $7, $8, $9, $10 }' "$RESULTS"
echo
echo "Ours against the reference (CPU % of one core per camera)"
echo
awk -F'\t' 'NR > 1 { cpu[$1 SUBSEP $2] = $5; ns[$2] = 1 }
    END {
        print "| ours | N | ours | reference | reference | ours / reference |"
        print "|---|---:|---:|---|---:|---:|"
        split("ingest ffmpeg-copy idle-decode ffmpeg-decode full-decode ffmpeg-decode", p, " ")
        for (n in ns) order[++k] = n + 0
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (order[j] < order[i]) { t = order[i]; order[i] = order[j]; order[j] = t }
        for (q = 1; q <= 5; q += 2) for (i = 1; i <= k; i++) {
            o = (p[q] SUBSEP order[i]); r = (p[q+1] SUBSEP order[i])
            if (!(o in cpu) || !(r in cpu)) continue
            ratio = cpu[r] > 0 ? sprintf("%.2f", cpu[o] / cpu[r]) : "-"
            printf "| %s | %d | %s | %s | %s | %s |\n", p[q], order[i], cpu[o], p[q+1], cpu[r], ratio
        }
    }' "$RESULTS"
echo
say "test camera restarts: $CAMERA_RESTARTS"
say "raw results: $RESULTS${BENCH_OUT:+ (logs beside it)}"
