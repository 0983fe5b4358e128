#!/usr/bin/env bash
# Make the camera-like test clips that scripts/test-camera.py serves.
#
#   scripts/make-clips.sh [--force] MEDIA_DIR CLIPS_DIR
#
# MEDIA_DIR holds the source media that scripts/setup.sh extracts from registry
# packages (bus.jpg, zidane.jpg, bikes.mp4, carphone_pristine.mp4). CLIPS_DIR
# receives, for each variant, an MP4 (for analytics tests, ffprobe, ...) and the
# same bitstream as a raw Annex-B elementary stream (.h264/.h265) that the RTSP
# test camera loops with multifilesrc without re-encoding.
#
# All variants share one 24 s storyboard (600 frames at 25 fps, 12 GOPs of 2 s):
#    0.0- 7.0 s  slow tilt over bus.jpg (a bus, four people, faces)
#    7.0-14.0 s  slow zoom into zidane.jpg (two faces)
#   14.0-20.0 s  slow pan over bikes.mp4 1.24-7.24 s (street: cars, a taxi, cyclists)
#   20.0-24.0 s  carphone_pristine.mp4 (a face in every frame)
# with light temporal noise so it looks like a camera sensor. No B-frames
# (WebRTC), a keyframe every 50 frames exactly (no scene-cut keyframes), so the
# clip and every loop of it start on a keyframe.
#
# The file CLIPS_DIR/RECIPE holds a hash of this script: when the recipe (this
# file) changes, the clips are made again; otherwise the script exits at once.
set -euo pipefail

readonly FPS=25
readonly GOP=50                  # 2 s at 25 fps
readonly FRAMES=600              # 24 s; a multiple of GOP so the loop point is a keyframe
readonly CLIPS=(h264-1080p h264-720p h264-360p h265-720p)

log() { printf '[clips] %s\n' "$*"; }
die() { printf '[clips] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    printf 'usage: %s [--force] MEDIA_DIR CLIPS_DIR\n' "${0##*/}" >&2
    exit 2
}

force=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --force) force=1; shift ;;
        -h|--help) usage ;;
        --) shift; break ;;
        -*) usage ;;
        *) break ;;
    esac
done
[[ $# -eq 2 ]] || usage
media=$1
out=$2

for tool in ffmpeg ffprobe python3 sha256sum; do
    command -v "$tool" >/dev/null || die "'$tool' not found: run scripts/setup.sh (it installs ffmpeg)"
done
for f in bus.jpg zidane.jpg bikes.mp4 carphone_pristine.mp4; do
    [[ -f "$media/$f" ]] || die "missing source media $media/$f: run scripts/setup.sh"
done

script_path=$(readlink -f "${BASH_SOURCE[0]}")
recipe=$(sha256sum "$script_path" | cut -d' ' -f1)

clip_files() {
    local name ext
    for name in "${CLIPS[@]}"; do
        ext=${name%%-*}
        printf '%s\n' "$name.mp4" "$name.$ext"
    done
}

if [[ $force -eq 0 && -f "$out/RECIPE" && "$(cat "$out/RECIPE")" == "$recipe" ]]; then
    complete=1
    while read -r f; do
        [[ -s "$out/$f" ]] || { complete=0; break; }
    done < <(clip_files)
    if [[ $complete -eq 1 ]]; then
        log "clips up to date in $out"
        exit 0
    fi
fi

mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

# --- storyboard -------------------------------------------------------------
# Each segment ends as 1920x1080 yuv420p, square pixels, 25 fps, trimmed to an
# exact frame count; trim on frame counts keeps the total exactly FRAMES.
cat > "$work/graph.txt" <<'EOF'
[0:v]scale=1920:-2:flags=lanczos,crop=1920:1080:0:'544+2*n',trim=end_frame=175,setpts=PTS-STARTPTS,setsar=1,format=yuv420p[s0];
[1:v]scale=3840:2160:flags=lanczos,zoompan=z='1+0.35*on/174':x='(iw-iw/zoom)*0.62':y='(ih-ih/zoom)*0.25':d=1:s=1920x1080:fps=25,trim=end_frame=175,setpts=PTS-STARTPTS,setsar=1,format=yuv420p[s1];
[2:v]fps=25,crop=484:272:'n*156/149':0,scale=1920:1080:flags=lanczos,trim=end_frame=150,setpts=PTS-STARTPTS,setsar=1,format=yuv420p[s2];
[3:v]fps=25,crop=176:99:0:12,scale=1920:1080:flags=lanczos,trim=end_frame=100,setpts=PTS-STARTPTS,setsar=1,format=yuv420p[s3];
[s0][s1][s2][s3]concat=n=4:v=1:a=0,split=4[m0][m1][m2][m3];
[m0]noise=alls=8:allf=t,format=yuv420p[v1080];
[m1]scale=1280:720:flags=bicubic,noise=alls=8:allf=t,format=yuv420p[v720];
[m2]scale=640:360:flags=bicubic,noise=alls=6:allf=t,format=yuv420p[v360];
[m3]scale=1280:720:flags=bicubic,noise=alls=8:allf=t,format=yuv420p[v265]
EOF

# Common output options: constant 25 fps, 90 kHz MP4 timescale, no audio,
# index at the front.
common=(-an -r "$FPS" -fps_mode cfr -video_track_timescale 90000 -movflags +faststart)
# H.264 Main, no B-frames, closed GOP of exactly 2 s, camera-like capped VBR.
x264=(-c:v libx264 -preset superfast -profile:v main -pix_fmt yuv420p
      -bf 0 -g "$GOP" -keyint_min "$GOP" -sc_threshold 0 -flags +cgop)
# H.265 Main, open GOP: x265 makes every keyframe after the first a CRA (not
# IDR) picture. No B-frames are needed for that (a CRA without leading
# pictures is valid), so the H.265 clip has none either.
x265=(-c:v libx265 -preset fast -profile:v main -pix_fmt yuv420p -tag:v hev1)
x265_params="keyint=$GOP:min-keyint=$GOP:scenecut=0:open-gop=1:bframes=0:bitrate=1500:vbv-maxrate=1800:vbv-bufsize=3000:log-level=error"

log "encoding ${#CLIPS[@]} clips (24 s each) into $out; this takes a few minutes on 2 cores"
start=$SECONDS
ffmpeg -hide_banner -nostdin -loglevel error -y \
    -loop 1 -framerate "$FPS" -t 7 -i "$media/bus.jpg" \
    -loop 1 -framerate "$FPS" -t 7 -i "$media/zidane.jpg" \
    -ss 1.24 -t 6.2 -i "$media/bikes.mp4" \
    -i "$media/carphone_pristine.mp4" \
    -filter_complex_script "$work/graph.txt" \
    -map '[v1080]' "${common[@]}" "${x264[@]}" -b:v 4M -maxrate 4.4M -bufsize 8M "$work/h264-1080p.mp4" \
    -map '[v720]' "${common[@]}" "${x264[@]}" -b:v 2M -maxrate 2.2M -bufsize 4M "$work/h264-720p.mp4" \
    -map '[v360]' "${common[@]}" "${x264[@]}" -b:v 500k -maxrate 550k -bufsize 1M "$work/h264-360p.mp4" \
    -map '[v265]' "${common[@]}" "${x265[@]}" -x265-params "$x265_params" "$work/h265-720p.mp4"
log "encoded in $((SECONDS - start)) s"

# Raw Annex-B copies (same bitstream; the bitstream filters put the parameter
# sets in front of every keyframe so each loop of the file is self-contained).
for name in "${CLIPS[@]}"; do
    case "$name" in
        h264-*) ffmpeg -hide_banner -nostdin -loglevel error -y -i "$work/$name.mp4" \
                    -c:v copy -bsf:v h264_mp4toannexb -f h264 "$work/$name.h264" ;;
        h265-*) ffmpeg -hide_banner -nostdin -loglevel error -y -i "$work/$name.mp4" \
                    -c:v copy -bsf:v hevc_mp4toannexb -f hevc "$work/$name.h265" ;;
    esac
done

# --- verification -----------------------------------------------------------
probe() {  # probe FILE ENTRIES -> compact key=value line of the first video stream
    ffprobe -v error -select_streams v:0 -show_entries "stream=$2" -of default=nw=1 "$1" | tr '\n' ' '
}

verify() {  # verify NAME CODEC PROFILE WIDTH HEIGHT
    local name=$1 codec=$2 profile=$3 width=$4 height=$5 info keys
    info=$(probe "$work/$name.mp4" codec_name,profile,width,height,pix_fmt,has_b_frames,r_frame_rate,nb_frames)
    for want in "codec_name=$codec" "profile=$profile" "width=$width" "height=$height" \
                "pix_fmt=yuv420p" "has_b_frames=0" "r_frame_rate=$FPS/1" "nb_frames=$FRAMES"; do
        [[ " $info " == *" $want "* ]] || die "$name.mp4: expected $want, got: $info"
    done
    # Keyframes exactly at 0, GOP, 2*GOP, ...
    keys=$(ffprobe -v error -select_streams v:0 -show_entries packet=flags -of csv=p=0 "$work/$name.mp4" |
           awk -v gop="$GOP" '{ k = ($1 ~ /K/); if (k != ((NR - 1) % gop == 0)) bad++ } END { print bad + 0 }')
    [[ $keys -eq 0 ]] || die "$name.mp4: $keys frames break the fixed $GOP-frame GOP"
    log "ok $name: $info"
}

verify h264-1080p h264 Main 1920 1080
verify h264-720p  h264 Main 1280 720
verify h264-360p  h264 Main 640 360
verify h265-720p  hevc Main 1280 720

# NAL unit census of the elementary streams: each must open with parameter
# sets, and the H.265 one must hold CRA pictures (open GOP) besides its IDR.
nal_census() {  # nal_census FILE h264|h265 -> "first=T T:N ..." (first: first type other than AUD/SEI)
    python3 - "$1" "$2" <<'PY'
import collections, re, sys
data = open(sys.argv[1], "rb").read()
hevc = sys.argv[2] == "h265"
skip = {35, 39, 40} if hevc else {6, 9}   # AUD and SEI may come before the parameter sets
counts = collections.Counter()
first = None
for m in re.finditer(b"\x00\x00\x01", data):
    if m.end() >= len(data):
        break
    b = data[m.end()]
    t = (b >> 1) & 0x3F if hevc else b & 0x1F
    counts[t] += 1
    if first is None and t not in skip:
        first = t
print("first=%s %s" % (first, " ".join("%d:%d" % kv for kv in sorted(counts.items()))))
PY
}

for name in "${CLIPS[@]}"; do
    ext=${name%%-*}
    census=$(nal_census "$work/$name.$ext" "$ext")
    case "$ext" in
        h264)
            # 7 = SPS first; 5 = IDR slices, one per GOP.
            [[ $census == "first=7 "* ]] || die "$name.h264 does not start with parameter sets (SPS) ($census)"
            [[ " $census " == *" 5:$((FRAMES / GOP)) "* ]] || die "$name.h264: expected $((FRAMES / GOP)) IDR slices ($census)"
            ;;
        h265)
            # 32 = VPS first; 19/20 = IDR, 21 = CRA.
            [[ $census == "first=32 "* ]] || die "$name.h265 does not start with parameter sets (VPS) ($census)"
            [[ " $census " == *" 21:"* ]] || die "$name.h265 has no CRA pictures: open GOP failed ($census)"
            ;;
    esac
    log "ok $name.$ext NAL types (type:count) $census"
done

# --- publish ------------------------------------------------------------------
while read -r f; do
    mv -f -- "$work/$f" "$out/$f"
done < <(clip_files)
printf '%s\n' "$recipe" > "$out/RECIPE"
log "clips ready in $out"
