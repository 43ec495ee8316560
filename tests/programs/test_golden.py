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
"""

import json
import os

import pytest

from tests.golden import compare
from tests.golden import record

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(__file__)), "golden", "quick_programs.json")


@pytest.mark.slow
def test_programs_write_the_recorded_tables():
  with open(GOLDEN) as f:
    expected = json.load(f)
  actual = record.record()
  assert sorted(actual) == sorted(expected)
  diffs = compare.differences(expected, actual)
  assert not diffs, "\n".join(diffs[:40])


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
