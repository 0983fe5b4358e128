"""TF.js graph patching (needs TensorFlow, i.e. $CACHE/venv-convert; skipped elsewhere):

    PYTHONPATH=scripts $CACHE/venv-convert/bin/python -m unittest tests.test_tfjs_patch
"""

from __future__ import annotations

import importlib.util
import unittest

HAVE_TF = importlib.util.find_spec("tensorflow") is not None


@unittest.skipUnless(HAVE_TF, "needs tensorflow (venv-convert)")
class PatchTest(unittest.TestCase):
    def test_fills_targs_and_opdef_defaults(self):
        from panoptes_models.convert import patch_tfjs_nodes

        nodes = [
            {"op": "_FusedConv2D", "name": "c", "attr": {"T": {"type": "DT_FLOAT"}, "num_args": {"i": "2"}}},
            {"op": "FusedDepthwiseConv2dNative", "name": "d",
             "attr": {"T": {"type": "DT_FLOAT"}, "num_args": {"i": "1"}}},
            {"op": "TopKV2", "name": "t", "attr": {"T": {"type": "DT_FLOAT"}, "sorted": {"b": True}}},
            {"op": "NotARealOp", "name": "x"},
        ]
        report = patch_tfjs_nodes(nodes)
        conv, dw, topk, other = (n["attr"] for n in nodes)
        self.assertEqual(conv["TArgs"], {"list": {"type": ["DT_FLOAT", "DT_FLOAT"]}})
        self.assertNotIn("TArgs", dw)  # TF's _FusedDepthwiseConv2dNative declares no TArgs
        self.assertEqual(topk["index_type"], {"type": "DT_INT32"})
        self.assertTrue(topk["sorted"]["b"])  # present attrs are left alone
        self.assertEqual(other, {})
        self.assertEqual(report["TArgs"], 1)


if __name__ == "__main__":
    unittest.main()
