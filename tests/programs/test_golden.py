"""The programs write the recorded tables (no accidental change of results).

`tests/golden/quick_programs.json` is recorded with `python -m tests.golden.record`.
The first recording (commit b595c68) came from the flat-module code (e5a7db7),
before any file moved, and the restructured code matched it. It was recorded
again after the intentional result changes of issue 16 (health columns, the
decoder's clip output, per-seed batch orders, sample std, Table 6 runs, the
concepts fixes), and its ClaDec entries again when the quick ClaDec run moved from
the digits to the planted-concepts set (with its `cladec_planted_parts` table).
This test runs the same three small programs with the current code and compares
every table value (numbers to rtol 1e-3 / atol 1e-4, everything else exactly): a
change of results must be deliberate.

The ClaDec entries depend on the CPU: on a 2-core AMD EPYC with AVX2 only
(2026-12-02) an evaluation classifier's accuracy moved by one of 64 test images
and the reconstruction losses by about 0.1%, from rounding alone (the classifier
and concepts tables were equal to tolerance). So there is one recording per CPU
seen: `quick_programs.json` (the machine of the earlier sessions, whose model was
not recorded) and `quick_programs_amd_epyc_avx2.json`, and a run must equal one
of them. The concepts program's health columns (blank concepts, the stitched test
against chance) were added to `quick_programs.json` from the AMD recording, whose
concepts tables equalled it in every other value. A real change of results equals
none of them.
"""

import glob
import json
import os

import pytest

from tests.golden import compare
from tests.golden import record

GOLDENS = sorted(glob.glob(os.path.join(os.path.dirname(os.path.dirname(__file__)), "golden",
                                        "quick_programs*.json")))


@pytest.mark.slow
def test_programs_write_the_recorded_tables():
  assert len(GOLDENS) >= 2, GOLDENS
  actual = record.record()
  diffs = {}
  for path in GOLDENS:
    with open(path) as f:
      expected = json.load(f)
    assert sorted(actual) == sorted(expected), path
    diffs[os.path.basename(path)] = compare.differences(expected, actual)
  closest = min(diffs, key=lambda k: len(diffs[k]))
  assert not diffs[closest], f"closest recording {closest}:\n" + "\n".join(diffs[closest][:40])


def test_compare_finds_a_changed_value_and_ignores_timings():
  a = {"x/t": {"": [{"acc": 0.5, "wall_s": 1.0, "name": "a"}]}}
  b = {"x/t": {"": [{"acc": 0.5 + 1e-6, "wall_s": 9.0, "name": "a"}]}}
  assert not compare.differences(a, b)
  b["x/t"][""][0]["acc"] = 0.51
  assert compare.differences(a, b) == ["x/t/[0].acc: 0.5 vs 0.51"]
  b["x/t"][""][0]["name"] = "b"
  assert len(compare.differences(a, b)) == 2
  nested_a = {"x/t": {"": [{"per_seed": {"0": [1.0, 2.0]}}]}}
  nested_b = {"x/t": {"": [{"per_seed": {"0": [1.0, 2.0 + 1e-9]}}]}}
  assert not compare.differences(nested_a, nested_b)
  nested_b["x/t"][""][0]["per_seed"]["0"][1] = 2.1
  assert len(compare.differences(nested_a, nested_b)) == 1
