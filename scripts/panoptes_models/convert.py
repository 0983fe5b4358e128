"""Conversion worker, run by models-fetch.py inside a helper venv:

    python -m panoptes_models.convert symbolic-dims SRC DST --spec JSON      (venv-tools: onnx)
    python -m panoptes_models.convert tfjs MODEL_JSON DST --spec JSON        (venv-convert: tf2onnx)
    python -m panoptes_models.convert describe FILE                          (venv-tools: onnx)
    python -m panoptes_models.convert smoke FILE --spec MODEL_JSON           (venv-tools: onnxruntime)

`--spec` is the model's [model.convert_args] table (smoke: the whole [[model]] entry), as JSON.
Every command prints one JSON line on success; errors go to stderr with a non-zero exit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------- symbolic dims (ONNX edit)

def symbolic_dims(src: Path, dst: Path, spec: dict) -> dict:
    """Rewrite fixed input/output dims to symbolic ones (e.g. CenterFace's 10x3x32x32).

    spec: {"inputs": {name: [dims]}, "outputs": {name: [dims]}, "drop_initializer_inputs": bool}
    A dim is an int (fixed) or a string (symbolic name). With drop_initializer_inputs, weights
    that an old exporter (IR 4) also listed as graph inputs are removed from the inputs, so
    ONNX Runtime treats them as constants (constant folding, BN fusion) and the model has a
    single input."""
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    model = onnx.load(str(src))
    dropped = 0
    if spec.get("drop_initializer_inputs"):
        inits = {i.name for i in model.graph.initializer}
        keep = [i for i in model.graph.input if i.name not in inits]
        dropped = len(model.graph.input) - len(keep)
        del model.graph.input[:]
        model.graph.input.extend(keep)
    in_names = [i.name for i in model.graph.input]
    out_names = [o.name for o in model.graph.output]
    if sorted(in_names) != sorted(spec["inputs"]) or sorted(out_names) != sorted(spec["outputs"]):
        _fail(f"graph has inputs {in_names} and outputs {out_names}; the manifest's convert_args "
              f"name inputs {list(spec['inputs'])} and outputs {list(spec['outputs'])}")
    model = update_inputs_outputs_dims(model, spec["inputs"], spec["outputs"])
    _rename(model, spec.get("rename", {}))
    _save(model, dst)
    return {"dropped_initializer_inputs": dropped}


# ---------------------------------------------------------------- TF.js graph patching

# TF.js fused ops carry `num_args` and `T` but not `TArgs` (the list of the extra args' types),
# which TensorFlow 2.15's op registry requires (for _FusedConv2D, _FusedMatMul) when tf2onnx
# builds a NodeDef for shape inference.
FUSED_OPS = {"_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedDepthwiseConv2dNative",
             "_FusedMatMul"}
# TF.js-only op names and the TensorFlow op whose op-def describes them.
OPDEF_ALIASES = {"FusedDepthwiseConv2dNative": "_FusedDepthwiseConv2dNative"}


def patch_tfjs_nodes(nodes: list[dict]) -> dict:
    """Patch TF.js graph nodes in place so tf2onnx 1.16.1 + TensorFlow 2.15 accept them.

    1. fused ops: add `TArgs` = [T] * num_args when missing;
    2. every op known to TensorFlow's registry: add attrs that the op-def declares with a default
       value but the node lacks (TF.js exporters drop attrs that were added to TF later, e.g.
       TopKV2 `index_type`). Values are TensorFlow's own defaults, so semantics do not change.
    Returns counts of what was added."""
    from google.protobuf.json_format import MessageToDict
    from tensorflow.python.framework import op_def_registry

    added_targs = 0
    added_defaults: dict[str, int] = {}
    for node in nodes:
        op = node.get("op", "")
        attr = node.setdefault("attr", {})
        op_def = op_def_registry.get(OPDEF_ALIASES.get(op, op))
        if op_def is None:
            continue
        declared = {a.name for a in op_def.attr}
        if (op in FUSED_OPS and "TArgs" in declared and "TArgs" not in attr
                and "num_args" in attr and "T" in attr):
            n = int(attr["num_args"].get("i", "0"))
            attr["TArgs"] = {"list": {"type": [attr["T"]["type"]] * n}}
            added_targs += 1
        for a in op_def.attr:
            if a.name in attr or not a.HasField("default_value"):
                continue
            value = MessageToDict(a.default_value)
            if not value:  # proto3 JSON drops some empty defaults; spell out the empty list
                value = {"list": {}}
            attr[a.name] = value
            key = f"{op}.{a.name}"
            added_defaults[key] = added_defaults.get(key, 0) + 1
    return {"TArgs": added_targs, "defaults": dict(sorted(added_defaults.items()))}


def tfjs(model_json: Path, dst: Path, spec: dict) -> dict:
    """Convert a TF.js graph model (model.json + weight shards beside it) to ONNX.

    The graph is patched (patch_tfjs_nodes) and written to a scratch model.json next to links
    to the original shards, then handed unchanged to tf2onnx's own tfjs reader."""
    from tf2onnx import convert as tf2onnx_convert

    model = json.loads(model_json.read_text())
    topo = model["modelTopology"]
    report = {"main": patch_tfjs_nodes(topo.get("node", []))}
    for func in topo.get("library", {}).get("function", []):
        report[func["signature"]["name"]] = patch_tfjs_nodes(func.get("nodeDef", []))

    opset = int(spec.get("opset", 15))
    with tempfile.TemporaryDirectory(prefix="tfjs-", dir=dst.parent) as tmpd:
        tmp = Path(tmpd)
        for manifest in model["weightsManifest"]:
            for shard in manifest["paths"]:
                os.symlink(model_json.resolve().parent / shard, tmp / shard)
        patched = tmp / "model.json"
        patched.write_text(json.dumps(model))
        out = tmp / "model.onnx"
        argv = ["tf2onnx.convert", "--tfjs", str(patched), "--output", str(out),
                "--opset", str(opset)]
        if spec.get("inputs_as_nchw"):
            argv += ["--inputs-as-nchw", ",".join(spec["inputs_as_nchw"])]
        sys.argv = argv
        try:
            tf2onnx_convert.main()
        except SystemExit as e:
            if e.code not in (0, None):
                _fail(f"tf2onnx exited with {e.code}")
        if not out.exists():
            _fail("tf2onnx finished without writing the model")
        report["canonical"] = _normalise(out, dst, spec, f"converted from {model_json.name} by tf2onnx")
    report["opset"] = opset
    return report


def _rename(model, renames: dict) -> None:
    """Rename graph inputs/outputs (and every node edge using them) to readable names."""
    for vi in list(model.graph.input) + list(model.graph.output):
        if vi.name in renames:
            old, new = vi.name, renames[vi.name]
            for node in model.graph.node:
                node.input[:] = [new if x == old else x for x in node.input]
                node.output[:] = [new if x == old else x for x in node.output]
            vi.name = new


def _save(model, dst: Path) -> None:
    import onnx

    onnx.checker.check_model(model)
    tmp = dst.with_name(dst.name + ".part")
    onnx.save(model, str(tmp))
    tmp.replace(dst)


def canonicalise(model) -> dict:
    """Make a converted graph byte-for-byte repeatable.

    tf2onnx's optimiser iterates over sets of graph objects, so node order and the generated
    names (pad_const__91, Expand__22, ...) change from run to run while the computation does
    not. This rewrites the graph into a canonical form that depends only on the computation:
      1. every tensor gets a structural hash: graph inputs by name, initializers by dtype, shape
         and data, node outputs by (op, domain, sorted attributes, input hashes, output index);
      2. identical initializers and identical nodes (same hash = same pure computation on the
         same values) are merged, so every remaining hash is unique;
      3. nodes are topologically sorted, ties broken by hash; intermediate tensors and nodes
         are renamed n<index>_<op>[:k], initializers c<index>; graph inputs/outputs keep names;
      4. value_info (optional shape hints) is dropped; attributes are sorted by name; unknown
         dims of inputs/outputs (unk__N) are renumbered dim0, dim1, ...
    Returns counts of what was merged."""
    import hashlib as _h
    import heapq

    import onnx
    from onnx import numpy_helper

    g = model.graph
    keep_names = {v.name for v in g.input} | {v.name for v in g.output}
    sig: dict[str, str] = {}
    for v in g.input:
        sig[v.name] = _h.sha256(b"input:" + v.name.encode()).hexdigest()

    # 1+2a. initializers: hash by content, merge duplicates
    alias: dict[str, str] = {}
    merged_inits = 0
    by_sig_init: dict[str, onnx.TensorProto] = {}
    for t in g.initializer:
        arr = numpy_helper.to_array(t)
        s = _h.sha256(f"init:{t.data_type}:{list(t.dims)}:".encode() + arr.tobytes()).hexdigest()
        if s in by_sig_init and t.name not in keep_names:
            alias[t.name] = by_sig_init[s].name
            merged_inits += 1
            continue
        by_sig_init.setdefault(s, t)
        sig[t.name] = s

    # 1+2b. nodes, in the existing (valid) topological order; merge identical nodes
    nodes = []
    by_sig_node: dict[str, onnx.NodeProto] = {}
    merged_nodes = 0
    for n in g.node:
        n.input[:] = [alias.get(i, i) for i in n.input]
        if not n.domain:  # '' set explicitly vs unset serialise differently (proto2 presence)
            n.ClearField("domain")
        n.ClearField("doc_string")
        attrs = sorted(n.attribute, key=lambda a: a.name)
        del n.attribute[:]
        n.attribute.extend(attrs)
        h = _h.sha256()
        h.update(f"{n.op_type}|{n.domain}|".encode())
        for a in attrs:
            h.update(a.SerializeToString(deterministic=True))
        for i in n.input:
            h.update((sig.get(i, "") if i else "<none>").encode() + b",")
        s = h.hexdigest()
        if s in by_sig_node and not any(o in keep_names for o in n.output):
            first = by_sig_node[s]
            for k, o in enumerate(n.output):
                alias[o] = first.output[k]
            merged_nodes += 1
            continue
        by_sig_node.setdefault(s, n)
        for k, o in enumerate(n.output):
            sig[o] = f"{s}:{k}"
        nodes.append((s, n))
    for v in g.output:
        if v.name in alias:
            raise ValueError(f"graph output {v.name} was merged away")

    # 3. canonical topological order (Kahn, ready set ordered by hash)
    producer = {o: idx for idx, (_, n) in enumerate(nodes) for o in n.output if o}
    deps = [set() for _ in nodes]
    users: list[list[int]] = [[] for _ in nodes]
    for idx, (_, n) in enumerate(nodes):
        for i in n.input:
            if i in producer:
                deps[idx].add(producer[i])
        for d in deps[idx]:
            users[d].append(idx)
    ready = [(nodes[i][0], i) for i in range(len(nodes)) if not deps[i]]
    heapq.heapify(ready)
    order = []
    remaining = [len(d) for d in deps]
    while ready:
        _, i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            remaining[u] -= 1
            if remaining[u] == 0:
                heapq.heappush(ready, (nodes[u][0], u))
    if len(order) != len(nodes):
        raise ValueError("graph has a cycle")

    rename: dict[str, str] = {}
    for pos, i in enumerate(order):
        n = nodes[i][1]
        n.name = f"n{pos}_{n.op_type}"
        for k, o in enumerate(n.output):
            if o and o not in keep_names:
                rename[o] = f"{n.name}:{k}"
    inits = sorted((s, t) for s, t in by_sig_init.items())
    used_inits = []
    for pos, (s, t) in enumerate(inits):
        if t.name not in keep_names:
            rename[t.name] = f"c{pos}"
        used_inits.append(t)
    for pos in order:
        n = nodes[pos][1]
        n.input[:] = [rename.get(alias.get(i, i), alias.get(i, i)) if i else i for i in n.input]
        n.output[:] = [rename.get(o, o) for o in n.output]
    for t in used_inits:
        t.name = rename.get(t.name, t.name)
    new_nodes = [nodes[i][1] for i in order]
    new_inits = [t for _, t in sorted(((t.name, t) for t in used_inits), key=lambda x: x[0])]
    del g.node[:]
    g.node.extend(new_nodes)
    del g.initializer[:]
    g.initializer.extend(new_inits)
    del g.value_info[:]
    # tf2onnx numbers unknown dims globally (unk__181, ...): renumber them in order
    k = 0
    for v in list(g.input) + list(g.output):
        for d in v.type.tensor_type.shape.dim:
            if d.dim_param.startswith("unk__"):
                d.dim_param = f"dim{k}"
                k += 1
    return {"merged_initializers": merged_inits, "merged_nodes": merged_nodes}


def _normalise(src: Path, dst: Path, spec: dict, doc: str) -> dict:
    """Rename inputs/outputs, replace tf2onnx's unknown output dims (unk__N) by the known ones,
    and canonicalise the graph (see canonicalise)."""
    import onnx

    model = onnx.load(str(src))
    _rename(model, spec.get("rename", {}))
    model.graph.doc_string = doc  # tf2onnx writes the (temporary) source path here
    report = canonicalise(model)
    for name, dims in spec.get("output_dims", {}).items():
        hits = [vi for vi in model.graph.output if vi.name == name]
        if not hits:
            _fail(f"convert_args.output_dims names {name!r}, not an output of the converted graph")
        shape = hits[0].type.tensor_type.shape
        del shape.dim[:]
        for d in dims:
            dim = shape.dim.add()
            if isinstance(d, int):
                dim.dim_value = d
            else:
                dim.dim_param = d
    _save(model, dst)
    return report


# ---------------------------------------------------------------- structural description

def describe(path: Path) -> dict:
    """Inputs/outputs with shapes and a hash of the graph structure + weights that does not
    depend on node names, for models whose conversion is not byte-for-byte repeatable."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))

    def vi(v):
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in v.type.tensor_type.shape.dim]
        return {"name": v.name, "elem_type": v.type.tensor_type.elem_type, "shape": dims}

    h = hashlib.sha256()
    for node in model.graph.node:
        h.update(node.op_type.encode())
    for init in sorted(model.graph.initializer, key=lambda t: numpy_helper.to_array(t).tobytes()):
        h.update(numpy_helper.to_array(init).tobytes())
    return {
        "inputs": [vi(v) for v in model.graph.input],
        "outputs": [vi(v) for v in model.graph.output],
        "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "nodes": len(model.graph.node),
        "structure_sha256": h.hexdigest(),
    }


def smoke(path: Path, spec: dict) -> dict:
    """Load the model in ONNX Runtime, check input/outputs against the manifest entry `spec`,
    run one inference on a mid-grey frame of the default size, check the concrete shapes."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = spec["input"]
    ins = sess.get_inputs()
    if [i.name for i in ins] != [inp["name"]]:
        _fail(f"model inputs {[i.name for i in ins]}, manifest says [{inp['name']!r}]")
    w, h = inp["width"], inp["height"]
    shape = (1, 3, h, w) if inp["layout"] == "NCHW" else (1, h, w, 3)
    for got, want in zip(ins[0].shape, shape):
        if isinstance(got, int) and got != want:
            _fail(f"input shape {ins[0].shape} does not fit layout {inp['layout']} {w}x{h}")
    want_out = {o["name"]: o["shape"] for o in spec["outputs"]}
    got_names = [o.name for o in sess.get_outputs()]
    if sorted(got_names) != sorted(want_out):
        _fail(f"model outputs {got_names}, manifest lists {sorted(want_out)}")
    x = np.full(shape, 128.0, dtype=np.float32)
    x = (x - np.asarray(inp["mean"], np.float32).reshape((1, 3, 1, 1) if inp["layout"] == "NCHW" else (1, 1, 1, 3))) \
        / np.asarray(inp["std"], np.float32).reshape((1, 3, 1, 1) if inp["layout"] == "NCHW" else (1, 1, 1, 3))
    outs = sess.run(got_names, {inp["name"]: x.astype(np.float32)})
    shapes = {}
    for name, arr in zip(got_names, outs):
        shapes[name] = list(arr.shape)
        for g, wnt in zip(arr.shape, want_out[name]):
            if isinstance(wnt, int) and g != wnt:
                _fail(f"output {name} has shape {list(arr.shape)}, manifest says {want_out[name]}")
        if len(arr.shape) != len(want_out[name]):
            _fail(f"output {name} has rank {arr.ndim}, manifest says {want_out[name]}")
    return {"outputs": shapes}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("symbolic-dims", "tfjs"):
        s = sub.add_parser(name)
        s.add_argument("src", type=Path)
        s.add_argument("dst", type=Path)
        s.add_argument("--spec", default="{}")
    s = sub.add_parser("describe")
    s.add_argument("src", type=Path)
    s = sub.add_parser("smoke")
    s.add_argument("src", type=Path)
    s.add_argument("--spec", default="{}")
    a = p.parse_args()
    if not a.src.exists():
        _fail(f"{a.src} does not exist")
    if a.cmd == "describe":
        result = describe(a.src)
    elif a.cmd == "smoke":
        result = smoke(a.src, json.loads(a.spec))
    else:
        spec = json.loads(a.spec)
        a.dst.parent.mkdir(parents=True, exist_ok=True)
        result = (symbolic_dims if a.cmd == "symbolic-dims" else tfjs)(a.src, a.dst, spec)
    sys.stdout.flush()
    print("RESULT " + json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
