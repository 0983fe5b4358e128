#!/usr/bin/env python3
"""Run the model tooling's unit tests (scripts/tests) in $CACHE/venv-tools.

Needs no model file and no network once venv-tools exists. Prints unittest's report and a
final 'N passed, N failed' line; exits non-zero on any failure."""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from panoptes_models import cache  # noqa: E402

if __name__ == "__main__":
    cache.reexec_in_venv("tools", Path(__file__).resolve(), sys.argv[1:])
    suite = unittest.defaultTestLoader.discover(str(HERE / "tests"), top_level_dir=str(HERE))
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed - len(result.skipped)} passed, {failed} failed"
          + (f", {len(result.skipped)} skipped" if result.skipped else ""))
    sys.exit(1 if failed else 0)
