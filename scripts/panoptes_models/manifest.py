"""Load and validate models/manifest.toml (standard library only).

The schema is documented at the top of the manifest and in docs/models.md. Validation here
is strict so that a typo fails in the tool, with the model id and field named, before the
Rust loader ever sees it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from .cache import REPO_DIR

MANIFEST = REPO_DIR / "models" / "manifest.toml"

ROLES = {"face", "object", "text", "face_embedding"}
REGISTRIES = {"pypi", "npm"}
CONVERTS = {"none", "symbolic-dims", "tfjs"}
VERIFY = {"sha256", "structure"}
LAYOUTS = {"NCHW", "NHWC"}
COLOURS = {"RGB", "BGR"}
RESIZE = {"stretch", "fit", "height"}
SHA = re.compile(r"^[0-9a-f]{64}$")
ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class ManifestError(ValueError):
    pass


def _need(table: dict, key: str, typ, where: str):
    if key not in table:
        raise ManifestError(f"{where}: missing field '{key}'")
    v = table[key]
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise ManifestError(f"{where}.{key}: expected {getattr(typ, '__name__', typ)}, got {v!r}")
    return v


def _one_of(table: dict, key: str, allowed: set, where: str):
    v = _need(table, key, str, where)
    if v not in allowed:
        raise ManifestError(f"{where}.{key}: {v!r} is not one of {sorted(allowed)}")
    return v


def _sha(table: dict, key: str, where: str, allow_empty: bool = False) -> str:
    v = _need(table, key, str, where)
    if not (SHA.match(v) or (allow_empty and v == "")):
        raise ManifestError(f"{where}.{key}: not a lowercase hex sha256: {v!r}")
    return v


def validate_model(m: dict) -> None:
    mid = _need(m, "id", str, "model")
    if not ID.match(mid):
        raise ManifestError(f"model {mid!r}: id must match {ID.pattern}")
    w = f"model '{mid}'"
    _one_of(m, "role", ROLES, w)
    f = _need(m, "file", str, w)
    if "/" in f or not f.endswith(".onnx"):
        raise ManifestError(f"{w}.file: a bare *.onnx file name, got {f!r}")
    _sha(m, "sha256", w, allow_empty=True)
    _one_of(m, "verify", VERIFY, w)
    if m["verify"] == "structure":
        _sha(m, "structure_sha256", w, allow_empty=True)
    _need(m, "licence", str, w)
    _need(m, "licence_note", str, w)
    conv = _one_of(m, "convert", CONVERTS, w)
    src = _need(m, "source", dict, w)
    _one_of(src, "registry", REGISTRIES, f"{w}.source")
    for k in ("package", "version", "path"):
        _need(src, k, str, f"{w}.source")
    _sha(src, "archive_sha256", f"{w}.source")
    _sha(src, "sha256", f"{w}.source")
    for i, extra in enumerate(src.get("extra", [])):
        _need(extra, "path", str, f"{w}.source.extra[{i}]")
        _sha(extra, "sha256", f"{w}.source.extra[{i}]")
    if conv != "none":
        _need(m, "convert_args", dict, w)

    inp = _need(m, "input", dict, w)
    wi = f"{w}.input"
    _need(inp, "name", str, wi)
    _one_of(inp, "layout", LAYOUTS, wi)
    _one_of(inp, "colour", COLOURS, wi)
    _need(inp, "width", int, wi)
    _need(inp, "height", int, wi)
    if inp.get("dynamic", False):
        _need(inp, "multiple_of", int, wi)
    else:
        _one_of(inp, "resize", RESIZE, wi)
    if _need(inp, "dtype", str, wi) != "float32":
        raise ManifestError(f"{wi}.dtype: only float32 is supported")
    for k in ("mean", "std"):
        v = _need(inp, k, list, wi)
        if len(v) != 3 or not all(isinstance(x, (int, float)) for x in v):
            raise ManifestError(f"{wi}.{k}: three numbers, one per channel in `colour` order")
    if any(x == 0 for x in inp["std"]):
        raise ManifestError(f"{wi}.std: must not contain 0")

    outs = _need(m, "outputs", list, w)
    names = set()
    for i, o in enumerate(outs):
        _need(o, "name", str, f"{w}.outputs[{i}]")
        _need(o, "shape", list, f"{w}.outputs[{i}]")
        names.add(o["name"])
    dec = _need(m, "decoder", dict, w)
    _need(dec, "family", str, f"{w}.decoder")
    referenced = []
    for level in dec.get("levels", []):
        referenced += [level["cls"], level["reg"]]
    referenced += list(dec.get("outputs", {}).values())
    for key in ("detections", "output"):
        if key in dec:
            referenced.append(dec[key])
    for r in referenced:
        if r not in names:
            raise ManifestError(f"{w}.decoder: refers to output {r!r}, not listed in outputs")

    labels = m.get("labels", [])
    if m["role"] in ("face", "object"):
        if not labels:
            raise ManifestError(f"{w}.labels: a detector needs labels")
        if _need(m, "label_base", int, w) not in (0, 1):
            raise ManifestError(f"{w}.label_base: 0 or 1 (the model's class number of labels[0])")
        if len(set(labels)) != len(labels):
            raise ManifestError(f"{w}.labels: duplicate names")


def load(path: Path = MANIFEST) -> dict:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ManifestError(f"{path}: {e}") from None
    if data.get("schema") != 1:
        raise ManifestError(f"{path}: schema = 1 expected, got {data.get('schema')!r}")
    models = data.get("model", [])
    if not models:
        raise ManifestError(f"{path}: no [[model]] entries")
    seen_ids, seen_files = set(), set()
    for m in models:
        validate_model(m)
        if m["id"] in seen_ids or m["file"] in seen_files:
            raise ManifestError(f"{path}: duplicate id or file for model '{m['id']}'")
        seen_ids.add(m["id"])
        seen_files.add(m["file"])
    for role, mid in data.get("defaults", {}).items():
        if mid not in seen_ids:
            raise ManifestError(f"{path}: defaults.{role} = {mid!r} is not a model id")
    known = {label for m in models for label in m.get("labels", [])}
    for group, labels in data.get("groups", {}).items():
        unknown = [x for x in labels if x not in known]
        if unknown:
            raise ManifestError(f"{path}: groups.{group} names unknown labels {unknown}")
    return data


def by_id(data: dict) -> dict[str, dict]:
    return {m["id"]: m for m in data["model"]}
