"""The concept paper's evaluators on small hand-made results: every row, status and
summary is known (no model runs, no file is written).
"""
import ml_collections
import numpy as np
import pytest

from jaxconcepts import report
from jaxconcepts.evaluators import concepts as ev
from jaxconcepts.evaluators import concepts_health
from jaxconcepts.methods import concepts as cl
from jaxconcepts.methods import crops as crops_lib

NAMES = ("zero", "one", "two")
OFFSETS = (0.0, 1.0)


def _config():
  return ml_collections.ConfigDict(dict(
      split="test", n_images_per_class=4, n_samples=2, noise_std=0.25, baseline=1.0,
      score_order="mean_then_relu", n_concepts=2, nmf_init="nndsvda", nmf_max_iter=50,
      nmf_tol=1e-4, stitch_fill=0.0, contrast_threshold=0.25, epochs=10, lr=0.01,
      bias_position="bottom_right", bias_blank="black", seed=0, n_crops=2))


def _info():
  geometry = crops_lib.crop_geometry((8, 8, 1), (4, 4, 3))
  return ev.RunInfo("feat", (4, 4, 3), 12, geometry, "canvas", NAMES)


def _concepts(rel_error=0.25, n_iter=7):
  return cl.ConceptSet(np.ones((2, 3), np.float32), rel_error, 20, n_iter)


def _classes():
  """Class 0 ran; class 1 has no image; class 2 has too few vectors (but contrasts)."""
  return (ev.ClassResult(0, np.arange(4), "ok", 20, 6, _concepts()),
          ev.ClassResult(1, np.arange(0), "failed: the model predicts this class for no image"),
          ev.ClassResult(2, np.arange(3), "failed: only 1 pixel vector(s)", 1, 2))


def _stitch():
  probs = {"all": np.array([[0.7, 0.2, 0.1]], np.float32),
           "exclude": np.array([[0.3, 0.6, 0.1]], np.float32)}
  return ev.StitchResult((0,), {m: np.zeros((1, 8, 8, 1)) for m in probs}, probs,
                         {"all": np.array([0]), "exclude": np.array([1])}, False)


# ---------------------------------------------------------------------------
# Tables 1 / 2.


def test_stitch_test_rows_tables_1_and_2_and_failures():
  out = ev.stitch_test(_config(), _info(), _classes(), _stitch())
  assert out.stem == "stitch_test"
  per_class = out.tables["per class"]
  assert [r["class"] for r in per_class] == [0, 1, 2]
  assert list(per_class[0]) == [
      "class", "name", "status", "n_images", "n_vectors", "n_contrast_vectors",
      "nmf_rel_error", "nmf_iters", "prob_all", "argmax_all", "predicted_all",
      "prob_excl", "argmax_excl", "predicted_excl", "missing_crops_excl"]
  r0 = per_class[0]
  assert r0["prob_all"] == pytest.approx(0.7) and r0["predicted_all"] and r0["argmax_all"] == 0
  assert r0["prob_excl"] == pytest.approx(0.3) and not r0["predicted_excl"]
  assert r0["argmax_excl"] == 1 and r0["missing_crops_excl"] == 1
  assert per_class[1] == {"class": 1, "name": "one", "status": per_class[1]["status"],
                          "n_images": 0}
  assert per_class[2]["n_vectors"] == 1 and "nmf_rel_error" not in per_class[2]
  (t1,), (t2,) = out.tables["table 1 (crops from all images)"], out.tables[
      "table 2 (excluding the class)"]
  assert (t1["n_classes"], t1["n_failed"], t1["pct_predicted"]) == (1, 2, 100.0)
  assert t1["mean_prob"] == pytest.approx(0.7) and t1["pct_above_0.5"] == 100.0
  assert (t2["pct_predicted"], t2["pct_above_0.2"], t2["pct_above_0.5"]) == (0.0, 100.0, 0.0)
  assert out.extra == {"layer": "feat", "geometry": {"pool": 2, "grid_hw": (2, 2),
                                                     "crop_hw": (4, 4)},
                       "stitch_layout": "canvas", "resized": False, "findings": []}
  assert "3 classes" in out.notes[0] and "(paper)" in out.notes[1]
  assert "status" not in t1  # one class ran: no share of classes to compare with chance


def _two_class_stitch(p0, p1):
  """Classes 0 and 1 ran; p0 / p1 their stitched images' softmax (both modes)."""
  probs = {m: np.array([p0, p1], np.float32) for m in ("all", "exclude")}
  return ev.StitchResult((0, 1), {m: np.zeros((2, 8, 8, 1)) for m in probs}, probs,
                         {m: np.array([0, 0]) for m in probs}, False)


def _flat_or_board(blank):
  """(k=2, m=2, 4, 4, 1) crops: concept j flat black if blank[j], else a checkerboard."""
  board = (np.indices((4, 4)).sum(0) % 2).astype(np.float32)[..., None]
  return np.stack([np.stack([np.zeros_like(board) if b else board] * 2) for b in blank])


def test_a_blank_concept_and_a_stitched_test_at_chance_are_marked_and_summarised():
  classes = (ev.ClassResult(0, np.arange(4), "ok", 20, 6, _concepts()),
             ev.ClassResult(1, np.arange(4), "ok", 20, 6, _concepts()))
  assert concepts_health.blank_concepts(_flat_or_board([True, False])).tolist() == [True, False]
  # Neither stitched image is recognised (0% <= chance 1/3 + 0.05): chance, in both tables.
  out = ev.stitch_test(_config(), _info(), classes,
                       _two_class_stitch([0.2, 0.7, 0.1], [0.6, 0.3, 0.1]),
                       {0: _flat_or_board([True, False]), 1: _flat_or_board([False, False])})
  per_class = out.tables["per class"]
  assert [r["blank_concepts"] for r in per_class] == [1, 0]
  (t1,) = out.tables["table 1 (crops from all images)"]
  assert t1["status"] == "chance" and "chance 0.3333" in t1["health"]
  found = out.extra["findings"]
  assert [(f["row"], f["column"], f["status"]) for f in found] == [
      ("class 0 (zero)", "concepts", "collapsed"), ("% predicts class", "pct_predicted", "chance"),
      ("% predicts class", "pct_predicted", "chance")]
  assert "1 of 2 concepts' top crops are blank" in found[0]["note"]
  summary = concepts_health.run_summary([out, report.Figure("x.png", [], [], None, "t")])
  assert summary.stem == "summary" and summary.tables["summary"] == found
  assert "3 result(s) mean nothing" in summary.title
  # Both recognised, no blank concept: nothing to report.
  ok = ev.stitch_test(_config(), _info(), classes,
                      _two_class_stitch([0.7, 0.2, 0.1], [0.2, 0.7, 0.1]),
                      {0: _flat_or_board([False, False]), 1: _flat_or_board([False, False])})
  assert ok.extra["findings"] == [] and ok.tables["table 1 (crops from all images)"][0][
      "status"] == "ok"
  assert "every checked result passed" in concepts_health.run_summary([ok]).title


def test_stitch_test_without_any_class_that_ran_has_nan_summaries():
  failed = _classes()[1:]
  out = ev.stitch_test(_config(), _info(), failed, None)
  (t1,) = out.tables["table 1 (crops from all images)"]
  assert t1["n_classes"] == 0 and t1["n_failed"] == 2 and np.isnan(t1["mean_prob"])
  assert [r["status"] for r in out.tables["per class"]] == [r.status for r in failed]


# ---------------------------------------------------------------------------
# Table 3.


def _shift(b, a):
  """B's 2 images move to A at offset 1: mean p(A) 0.05 -> 0.8, both flip."""
  mean = np.zeros((1, 2, 3))
  mean[0, 0, b], mean[0, 0, a] = 0.9, 0.05
  mean[0, 1, b], mean[0, 1, a] = 0.1, 0.8
  argmax = np.array([[[b, b], [a, a]]])
  base = mean[0, 0]
  return ev.ShiftResult(b, (a,), mean, argmax, base, np.array([0.75]), 2)


def test_shift_test_rows_and_table_3():
  classes = (_classes()[0], _classes()[1],
             ev.ClassResult(2, np.arange(3), "ok", 9, 4, _concepts()))
  out = ev.shift_test(_config(), _info(), classes, {0: _shift(0, 2), 2: _shift(2, 0)}, OFFSETS)
  rows = out.tables["per ordered pair (B -> A)"]
  assert [(r["from_b"], r["to_a"]) for r in rows] == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0),
                                                      (2, 1)]
  status = {(r["from_b"], r["to_a"]): r["status"] for r in rows}
  no_image = "failed: class 1: failed: the model predicts this class for no image"
  assert status == {(0, 1): no_image, (0, 2): "ok", (1, 0): no_image, (1, 2): no_image,
                    (2, 0): "ok", (2, 1): no_image}
  ok = rows[1]
  assert (ok["name_b"], ok["name_a"], ok["n_images"], ok["pair_train_acc"]) == (
      "zero", "two", 2, 0.75)
  assert ok["default_pred"] == pytest.approx(0.05) and ok["shifted_pred"] == pytest.approx(0.8)
  assert ok["best_offset"] == 1.0 and ok["flip_rate"] == 1.0 and ok["swap_0.5"]
  (t3,) = out.tables["table 3"]
  assert (t3["n_pairs"], t3["n_failed"], t3["pct_swap_0.5"]) == (2, 4, 100.0)
  assert t3["best_offset_counts"] == {"0": 0, "1": 2}
  assert out.extra == {"layer": "feat"} and "offsets [0.0, 1.0]" in out.notes[0]


def test_shift_test_with_fewer_than_two_contrast_classes_fails_every_pair():
  classes = _classes()[:2]  # only class 0 has contrast vectors
  rows = ev.shift_test(_config(), _info(), classes, {}, OFFSETS).tables[
      "per ordered pair (B -> A)"]
  assert [r["status"] for r in rows] == ["failed: fewer than 2 classes with contrast vectors"] * 2


def test_a_class_without_contrast_vectors_is_named_in_the_rows():
  classes = (_classes()[0], ev.ClassResult(1, np.arange(2), "ok", 9, 0, _concepts()),
             ev.ClassResult(2, np.arange(3), "ok", 9, 4, _concepts()))
  rows = ev.shift_rows(classes, {0: _shift(0, 2), 2: _shift(2, 0)}, OFFSETS, NAMES)
  assert rows[0]["status"] == "failed: class 1: no contrast vectors"  # 0 -> 1
  assert rows[2]["status"] == "failed: class 1: no contrast vectors"  # 1 -> 0


# ---------------------------------------------------------------------------
# Table 4 and the stitched contrast concepts.


def _pair_ok():
  probe = {"orig_a": 0.1, "orig_b": 0.8, "pasted_a": 0.4, "pasted_b": 0.5, "blank_a": 0.1,
           "blank_b": 0.8, "pct_flipped": 25.0}
  return ev.PairResult(0, 2, "ok", _concepts(0.5), np.zeros((2, 3, 2, 2, 1)),
                       np.array([0.6, 0.1, 0.3]), (5, -1), (0, None), (True, False),
                       (probe, None))


def test_bias_probe_rows_per_concept_and_the_stitched_contrast_row():
  failed = ev.PairResult(1, 0, "a class of the pair has no contrast vectors")
  out = ev.bias_probe(_config(), _info(), [_pair_ok(), failed])
  probes = out.tables["bias probe (Table 4)"]
  assert len(probes) == 3
  assert probes[0]["status"] == "ok" and probes[0]["pasted_a"] == 0.4
  assert (probes[0]["concept"], probes[0]["crop_from_image"], probes[0]["crop_image_pred"],
          probes[0]["crop_from_class_a"]) == (0, 5, 0, True)
  assert probes[1]["status"] == "failed: no crop found" and probes[1]["crop_image_pred"] is None
  assert probes[2] == {"to_a": 1, "from_b": 0, "name_a": "one", "name_b": "zero",
                       "status": "failed: a class of the pair has no contrast vectors"}
  stitched = out.tables["stitched contrast concepts"]
  assert stitched[0]["status"] == "ok" and stitched[0]["argmax"] == 0
  assert (stitched[0]["prob_a"], stitched[0]["prob_b"], stitched[0]["nmf_rel_error"]) == (
      0.6, 0.3, 0.5)
  assert stitched[1]["status"].startswith("failed: a class")
  assert "bottom_right" in out.notes[0] and "NMF (2)" in out.notes[0]


# ---------------------------------------------------------------------------
# Figures.


def test_figures_name_their_files_rows_and_columns():
  crops = np.zeros((2, 3, 2, 2, 1), np.float32)
  (fig,) = ev.concept_figures(_info(), {0: crops})
  assert fig.path == "concepts/class_000.png"
  assert len(fig.images) == 2 and len(fig.images[0]) == 3
  assert fig.row_labels == ["concept 0", "concept 1"] and fig.col_labels == ["#1", "#2", "#3"]
  assert fig.title == "zero (0): 2 concepts x top-3 crops, feat"
  fig = ev.stitched_figure(_info(), _stitch())
  assert fig.path == "stitched.png" and fig.row_labels == ["zero 0.70/0.30"]
  assert len(fig.images[0]) == 2 and fig.col_labels is None
  figs = ev.contrast_figures(_info(), [_pair_ok(), ev.PairResult(1, 0, "failed")])
  assert [f.path for f in figs] == ["contrast/000_vs_002.png"]
  assert figs[0].title.startswith("why zero rather than two")
  assert all(isinstance(f, report.Figure) for f in figs)


# ---------------------------------------------------------------------------
# Planted parts.


def _truth():
  """Two 8x8 images (4x4 crops, 2x2 grid). Parts: 0 (class 0 only), 1 (class 1 only),
  2 (shared by 0 and 1). Image 0: part 0 in cell (0, 0), part 2 in cell (1, 1);
  image 1: part 1 in cell (0, 1), part 2 in cell (1, 0)."""
  maps = np.full((2, 8, 8), -1, np.int8)
  maps[0, 0:3, 0:3], maps[0, 5:8, 5:8] = 0, 2
  maps[1, 0:3, 5:8], maps[1, 5:8, 0:3] = 1, 2
  class_parts = np.array([[1, 0, 1], [0, 1, 1], [0, 0, 0]], bool)
  return ev.PartTruth(maps, class_parts, ("p0", "p1", "shared"))


def _crops(image, row, col):
  hits = crops_lib.CropHits(np.array(image), np.array(row), np.array(col),
                            np.zeros(np.shape(image)))
  return crops_lib.ConceptCrops({"all": hits}, {})


def test_planted_parts_scores_class_and_contrast_concepts_against_the_truth():
  info = ev.RunInfo("feat", (4, 4, 3), 2, crops_lib.crop_geometry((8, 8, 1), (4, 4, 3)),
                    "canvas", NAMES)
  classes = (_classes()[0], _classes()[1], _classes()[2])
  crops = {
      # class 0: concept 0 on part 0 (twice), concept 1 on the shared part and on class 1's part
      0: _crops([[0, 0], [0, 1]], [[0, 0], [1, 0]], [[0, 0], [1, 1]]),
      # pair (0, 1): the separating part is p0 only; one crop on p0, one on the shared part
      (0, 1): _crops([[0, 0], [0, 0]], [[0, 1], [0, 1]], [[0, 1], [0, 1]]),
  }
  out = ev.planted_parts(_config(), info, _truth(), classes, crops, ((0, 1), (1, 0)))
  per_class = out.tables["per class"]
  assert [r["status"] for r in per_class][1:] == [classes[1].status, classes[2].status]
  row = per_class[0]
  assert row["parts"] == ["p0", "shared"] and row["n_crops"] == 4
  # crops: p0 whole, p0 whole, shared whole (image 0), p1 (image 1: not a class-0 part)
  assert row["coverage"] == pytest.approx(0.75) and row["hit_rate"] == pytest.approx(0.75)
  assert row["any_part"] == pytest.approx(1.0)
  assert row["concept_parts"] == ["p0", "p1"]  # concept 1: a tie of p1 and shared, lower id
  assert 0.0 <= row["random_coverage"] <= 1.0
  pair = out.tables["per contrast pair"]
  assert pair[0]["parts"] == ["p0"] and pair[0]["coverage"] == pytest.approx(0.5)
  assert pair[1]["status"] == "failed: no contrast concepts"
  summary = {r["what"]: r for r in out.tables["summary"]}
  assert summary["classes (their parts)"]["n"] == 1
  assert summary["contrast pairs (separating parts)"]["coverage"] == pytest.approx(0.5)
  assert out.stem == "planted_parts" and any("random" in n for n in out.notes)
