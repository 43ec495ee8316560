"""The programs write the recorded tables (no accidental change of results).

`tests/golden/quick_programs.json` is recorded with `python -m tests.golden.record`.
The first recording (commit b595c68) came from the flat-module code (e5a7db7),
before any file moved, and the restructured code matched it. It was recorded
again after the intentional result changes of issue 16 (health columns, the
decoder's clip output, per-seed batch orders, sample std, Table 6 runs, the
concepts fixes), and its ClaDec entries again when the quick ClaDec run moved from
the digits to the planted-concepts set (with its `cladec_planted_parts` table).
This test runs the classifier and concepts programs with the current code and
compares every table value (numbers to rtol 1e-3 / atol 1e-4, everything else exactly): a
change of results must be deliberate.

The ClaDec entries depend on the CPU: on a 2-core AMD EPYC with AVX2 only
(2026-12-02) an evaluation classifier's accuracy moved by one of 64 test images
and the reconstruction losses by about 0.1%, from rounding alone (the classifier
and concepts tables were equal to tolerance). So there is one recording per CPU
seen: `quick_programs.json` (the machine of the earlier sessions, whose model was
not recorded) and `quick_programs_amd_epyc_avx2.json`, and a run must equal one
of them. The ClaDec program's entries are checked by the end-to-end test in
`tests/programs/test_cladec.py`, whose run is the recorded one (running it twice
cost about 6 minutes of CI on 2 cores). The concepts program's health columns
(blank concepts, the stitched test against chance) were added to `quick_programs.json` from the AMD recording, whose
concepts tables equalled it in every other value. A real change of results equals
none of them.
"""

import json

import pytest

from tests.golden import compare
from tests.golden import record


@pytest.mark.slow
def test_classifier_and_concepts_programs_write_the_recorded_tables():
  assert len(record.GOLDENS) >= 2, record.GOLDENS
  actual = record.record(programs=("classifier", "concepts"))
  closest, diffs = record.closest_recording(actual)
  assert not diffs, f"closest recording {closest}:\n" + "\n".join(diffs[:40])


def test_a_partial_run_is_compared_with_its_programs_entries_only():
  with open(record.GOLDENS[0]) as f:
    full = json.load(f)
  concepts = {k: v for k, v in full.items() if k.startswith("concepts/")}
  assert concepts and len(concepts) < len(full)
  assert record.closest_recording(concepts)[1] == []
  stem = sorted(concepts)[0]
  name = sorted(concepts[stem])[0]
  changed = json.loads(json.dumps(concepts))
  changed[stem][name] = changed[stem][name][:-1]
  assert any(stem in line for line in record.closest_recording(changed)[1])


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
