"""Health checks: a loss against trivial decoders, an accuracy against chance, the summary."""
import math

import numpy as np
import pytest

from jaxconcepts.evaluators import health


def test_loss_near_or_above_a_trivial_baseline_is_collapsed():
  base = {"all-black": 100.0, "training-mean": 50.0}
  assert health.loss_health([20.0, 30.0], base).status == "ok"
  h = health.loss_health([20.0, 48.0], base)  # one seed within 5% of the mean image
  assert h.status == "collapsed" and "training-mean" in h.note and h.is_problem
  assert health.loss_health(100.0, base).status == "collapsed"
  assert health.loss_health(47.4, base).status == "ok"  # 5.2% below: not within 5%


def test_non_finite_loss_is_nan_and_missing_is_not_a_problem():
  base = {"all-black": 100.0}
  for bad in (float("nan"), float("inf")):
    h = health.loss_health([1.0, bad], base)
    assert h.status == "nan" and h.is_problem
  for nothing in (None, []):
    h = health.loss_health(nothing, base)
    assert h.status == "missing" and not h.is_problem


def test_accuracy_within_margin_of_chance_is_chance():
  assert health.accuracy_health([0.9, 0.8], 10).status == "ok"
  assert health.accuracy_health([0.9, 0.12], 10).status == "chance"
  assert health.accuracy_health(0.05, 10).status == "chance"  # below chance too
  assert health.accuracy_health(0.56, 2).status == "ok"
  assert health.accuracy_health(0.54, 2).status == "chance"
  assert health.accuracy_health([float("nan")], 10).status == "missing"
  with pytest.raises(ValueError, match="num_classes must be >= 2"):
    health.accuracy_health(0.5, 1)


def test_trivial_rec_losses_of_black_and_mean_image_in_both_reductions():
  x = np.zeros((2, 2, 2, 1), np.float32)
  x[0] = 1.0  # image 0 all white, image 1 all black
  base = health.trivial_rec_losses(x, x.mean(0))
  assert base["black"] == {"sum": 2.0, "mean": 0.5}  # (4 + 0) / 2 images
  assert base["mean_image"] == {"sum": 1.0, "mean": 0.25}  # 4 x 0.25 per image
  with pytest.raises(ValueError, match="mean_image must have the images' shape"):
    health.trivial_rec_losses(x, np.zeros((3, 3, 1)))


def test_mark_row_shows_the_worst_status_and_collects_problems():
  found = []
  checks = {"rec": health.Health("collapsed", "at black"), "acc": health.Health("ok"),
            "other": health.Health("missing", "not computed")}
  row = health.mark_row("t", "row 1", {"x": 1}, checks, found)
  assert row["status"] == "collapsed" and row["health"] == "rec: collapsed (at black)"
  assert row["checks"] == {"rec": "collapsed", "acc": "ok", "other": "missing"}
  assert [f.as_row() for f in found] == [{"table": "t", "row": "row 1", "column": "rec",
                                          "status": "collapsed", "note": "at black"}]
  ok = health.mark_row("t", "row 2", {}, {"acc": health.Health("ok")}, found)
  assert ok["status"] == "ok" and ok["health"] == "" and len(found) == 1
  assert "1 result(s) mean nothing" in health.summary_title("P", found)
  assert "passed" in health.summary_title("P", [])


def test_margins_are_checked():
  with pytest.raises(ValueError, match="collapse margin must lie in"):
    health.loss_health(1.0, {"b": 2.0}, margin=1.5)
  assert not math.isnan(health.COLLAPSE_MARGIN)
