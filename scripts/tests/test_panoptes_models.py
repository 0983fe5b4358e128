"""Unit tests of the model tooling that need no model file and no network.

Run with scripts/models-test.py (it uses $CACHE/venv-tools: numpy, Pillow, onnx)."""

from __future__ import annotations

import copy
import importlib.util
import tomllib
import unittest

import numpy as np

from panoptes_models import decode, manifest
from panoptes_models.cache import REPO_DIR

COCO_VEHICLES = {"bicycle": 1, "car": 2, "motorcycle": 3, "bus": 5, "truck": 7}


def load_script(name: str):
    path = REPO_DIR / "scripts" / name
    spec = importlib.util.spec_from_file_location(name.replace("-", "_").removesuffix(".py"), path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class ManifestTest(unittest.TestCase):
    def setUp(self):
        self.data = manifest.load()
        self.models = manifest.by_id(self.data)

    def test_defaults_and_coco_indexing(self):
        self.assertEqual(self.data["defaults"], {"face": "centerface", "object": "nanodet"})
        for mid in ("nanodet", "centernet"):
            m = self.models[mid]
            self.assertEqual(m["label_base"], 0)
            self.assertEqual(len(m["labels"]), 80)
            for name, idx in COCO_VEHICLES.items():
                self.assertEqual(m["labels"][idx], name, mid)

    def test_every_model_pinned(self):
        for m in self.data["model"]:
            self.assertRegex(m["sha256"], r"^[0-9a-f]{64}$", m["id"])

    def _broken(self, mutate) -> str:
        text = manifest.MANIFEST.read_text()
        data = tomllib.loads(text)
        mutate(data["model"][1])
        with self.assertRaises(manifest.ManifestError) as cm:
            for m in data["model"]:
                manifest.validate_model(m)
        return str(cm.exception)

    def test_errors_name_model_and_field(self):
        msg = self._broken(lambda m: m.pop("file"))
        self.assertIn("model", msg)
        self.assertIn("'file'", msg)
        msg = self._broken(lambda m: m["source"].update(sha256="abc"))
        self.assertIn("model 'nanodet'.source.sha256", msg)
        msg = self._broken(lambda m: m["decoder"]["levels"][0].update(cls="nope"))
        self.assertIn("'nope'", msg)
        msg = self._broken(lambda m: m["input"].update(layout="CHW"))
        self.assertIn("input.layout", msg)


def spec_nanodet(size=416):
    m = copy.deepcopy(manifest.by_id(manifest.load())["nanodet"])
    m["input"]["width"] = m["input"]["height"] = size
    return m


class PreprocessTest(unittest.TestCase):
    def test_fit_letterbox(self):
        from PIL import Image

        spec = spec_nanodet()
        img = Image.new("RGB", (1280, 720), (10, 20, 30))
        x, lb = decode.preprocess(img, spec)
        self.assertEqual(x.shape, (1, 3, 416, 416))
        self.assertEqual((lb.in_w, lb.in_h), (416, 416))
        self.assertAlmostEqual(lb.scale_x, 416 / 1280)
        self.assertAlmostEqual(lb.scale_y, 234 / 720)
        # BGR + mean/std: channel 0 is blue (30)
        self.assertAlmostEqual(float(x[0, 0, 0, 0]), (30 - 103.53) / 57.375, places=4)
        # padding below the image is pixel 0, normalised
        self.assertAlmostEqual(float(x[0, 2, 300, 0]), (0 - 123.675) / 58.395, places=4)

    def test_dynamic_multiple_of_32(self):
        spec = manifest.by_id(manifest.load())["centerface"]
        self.assertEqual(decode.input_size(spec, 1280, 720), (640, 384))
        self.assertEqual(decode.input_size(spec, 176, 144), (640, 544))

    def test_height_mode(self):
        from PIL import Image

        spec = manifest.by_id(manifest.load())["ppocr-rec"]
        x, lb = decode.preprocess(Image.new("RGB", (200, 20)), spec)
        self.assertEqual(x.shape, (1, 3, 48, 480))
        x, _ = decode.preprocess(Image.new("RGB", (40, 40)), spec)
        self.assertEqual(x.shape, (1, 3, 48, 320))
        self.assertEqual(float(x[0, 0, 0, 100]), 0.0)  # padding 127.5 -> 0


class DecoderTest(unittest.TestCase):
    def test_nanodet_single_cell(self):
        spec = spec_nanodet()
        outs = {}
        for level in spec["decoder"]["levels"]:
            n = (416 // level["stride"]) ** 2
            outs[level["cls"]] = np.zeros((1, n, 80), np.float32)
            outs[level["reg"]] = np.full((1, n, 44), -20.0, np.float32)
        # stride 16, cell row 5 col 7, class car, distances 3 bins on every side
        i = 5 * 26 + 7
        outs["cls_16"][0, i, 2] = 0.9
        for side in range(4):
            outs["reg_16"][0, i, side * 11 + 3] = 20.0
        lb = decode.Letterbox(416, 416, 1.0, 1.0, 0, 0, 416, 416)
        dets = decode.decode_nanodet(outs, spec, lb, 0.35)
        self.assertEqual(len(dets), 1)
        d = dets[0]
        cx, cy = (7 + 0.5) * 16, (5 + 0.5) * 16
        self.assertEqual(d.label, "car")
        for got, want in zip(d.box(), (cx - 48, cy - 48, cx + 48, cy + 48)):
            self.assertAlmostEqual(got, want, places=2)

    def test_centernet_rows(self):
        spec = manifest.by_id(manifest.load())["centernet"]
        det = np.zeros((1, 100, 6), np.float32)
        det[0, 0] = [10, 20, 110, 220, 0.8, 5]
        det[0, 1] = [12, 22, 108, 218, 0.5, 5]   # overlaps: removed by NMS
        det[0, 2] = [300, 300, 400, 400, 0.2, 2]  # below threshold
        lb = decode.Letterbox(512, 512, 0.5, 0.5, 0, 0, 1024, 1024)
        dets = decode.decode_centernet({"detections": det}, spec, lb, 0.35)
        self.assertEqual([(d.label, d.box()) for d in dets], [("bus", (20.0, 40.0, 220.0, 440.0))])

    def test_centerface_single_peak(self):
        spec = manifest.by_id(manifest.load())["centerface"]
        h, w = 40, 40
        outs = {"heatmap": np.zeros((1, 1, h, w), np.float32), "scale": np.zeros((1, 2, h, w), np.float32),
                "offset": np.zeros((1, 2, h, w), np.float32), "landmarks": np.zeros((1, 10, h, w), np.float32)}
        outs["heatmap"][0, 0, 10, 20] = 0.9
        outs["scale"][0, :, 10, 20] = np.log(8.0)  # 32 px box
        lb = decode.Letterbox(160, 160, 1.0, 1.0, 0, 0, 160, 160)
        (d,) = decode.decode_centerface(outs, spec, lb, 0.5)
        cx, cy = (20 + 0.5) * 4, (10 + 0.5) * 4
        for got, want in zip(d.box(), (cx - 16, cy - 16, cx + 16, cy + 16)):
            self.assertAlmostEqual(got, want, places=3)
        self.assertEqual(d.landmarks[0], (cx - 16, cy - 16))

    def test_components_and_dbnet(self):
        mask = np.zeros((10, 12), bool)
        mask[1:3, 1:4] = True
        mask[3, 4] = True          # diagonal neighbour joins the first region
        mask[6:9, 8:11] = True
        self.assertEqual(sorted(decode._components(mask)), [(1, 1, 5, 4), (8, 6, 11, 9)])
        spec = manifest.by_id(manifest.load())["ppocr-det"]
        prob = np.zeros((1, 1, 64, 64), np.float32)
        prob[0, 0, 10:20, 10:40] = 0.9
        lb = decode.Letterbox(64, 64, 1.0, 1.0, 0, 0, 64, 64)
        (d,) = decode.decode_dbnet({"sigmoid_0.tmp_0": prob}, spec, lb, 0.5)
        # dilation grows the 30x10 region to 31x11, unclip adds 31*11*1.6/84 = 6.5 px per side
        self.assertAlmostEqual(d.x1, 10 - 6.495, places=2)
        self.assertAlmostEqual(d.y2, 21 + 6.495, places=2)

    def test_ctc(self):
        spec = manifest.by_id(manifest.load())["ppocr-rec"]
        charset = ["", "a", "b", " "]
        steps = [1, 1, 0, 1, 2, 2, 0, 0, 3]
        probs = np.zeros((1, len(steps), 4), np.float32)
        for t, c in enumerate(steps):
            probs[0, t, c] = 0.9
        text, score = decode.decode_ctc({"softmax_11.tmp_0": probs}, spec, charset)
        self.assertEqual(text, "aab ")
        self.assertAlmostEqual(score, 0.9, places=5)


class MatchTest(unittest.TestCase):
    def setUp(self):
        self.ev = load_script("models-eval.py")

    def det(self, label, score, box):
        return decode.Detection(*box, score, 0, label)

    def test_tp_fp_fn_ignore_duplicate(self):
        boxes = [{"class": "car", "box": [0, 0, 100, 100]},
                 {"class": "truck", "also": ["car"], "box": [200, 0, 300, 100]},
                 {"class": "bus", "box": [400, 0, 500, 100]},
                 {"class": "car", "box": [600, 0, 700, 100], "ignore": True}]
        dets = [self.det("car", 0.9, (2, 2, 100, 100)),      # TP car
                self.det("car", 0.8, (0, 0, 98, 98)),        # duplicate -> FP
                self.det("car", 0.7, (200, 0, 300, 100)),    # TP truck via `also`
                self.det("car", 0.6, (600, 0, 700, 100)),    # on ignore box: not counted
                self.det("bicycle", 0.5, (400, 0, 500, 100)),  # wrong class: FP bicycle
                self.det("car", 0.2, (800, 0, 900, 100))]    # below threshold
        tp, fp, fn, log = self.ev.match(dets, boxes, {"car", "truck", "bus", "bicycle"}, 0.5, 0.35)
        self.assertEqual(tp, {"car": 1, "truck": 1})
        self.assertEqual(fp, {"car": 1, "bicycle": 1})
        self.assertEqual(fn, {"bus": 1})
        self.assertEqual([v for v, _, _ in log], ["TP", "FP dup", "TP", "ignored", "FP"])


class CanonicaliseTest(unittest.TestCase):
    def _graph(self, order, names):
        from onnx import TensorProto, helper, numpy_helper

        w = numpy_helper.from_array(np.ones((3,), np.float32), names["w"])
        n1 = helper.make_node("Add", ["x", names["w"]], [names["a"]], name=names["n1"])
        n2 = helper.make_node("Relu", [names["a"]], [names["b"]], name=names["n2"])
        n3 = helper.make_node("Sigmoid", [names["a"]], [names["c"]], name=names["n3"])
        n4 = helper.make_node("Add", [names["b"], names["c"]], ["y"], name=names["n4"], domain="")
        nodes = [n1, n2, n3, n4]
        g = helper.make_graph([nodes[i] for i in order], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])], [w])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)])

    def test_same_bytes_for_renamed_reordered_graphs(self):
        from panoptes_models.convert import canonicalise

        a = self._graph([0, 1, 2, 3], dict(w="w1", a="a1", b="b1", c="c1", n1="p", n2="q", n3="r", n4="s"))
        b = self._graph([0, 2, 1, 3], dict(w="zz", a="t9", b="t7", c="t8", n1="X", n2="Y", n3="Z", n4="W"))
        canonicalise(a)
        canonicalise(b)
        self.assertEqual(a.SerializeToString(), b.SerializeToString())



if __name__ == "__main__":
    unittest.main()
