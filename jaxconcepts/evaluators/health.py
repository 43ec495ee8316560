"""Results that say when they mean nothing (DESIGN section 9): one status per number.

A reconstruction loss means little if a trivial decoder does as well: the
all-black (constant) image, or the training-mean image, for the same test
images and in the same reduction. An accuracy means little at chance, 1 /
classes. This unit turns a value and its baselines into a `Health`:

* "ok": the value is usable;
* "collapsed": a loss within `COLLAPSE_MARGIN` (relative) of a trivial
  baseline, or worse than it (a decoder that learnt nothing beyond it);
* "chance": an accuracy within `CHANCE_MARGIN` (absolute) of 1 / classes,
  or below it;
* "nan": a value that is NaN or Inf (a diverged run); never averaged away;
* "missing": nothing was computed (a stage not trained, a check skipped).

`Finding`s ("where, what, status, note") are collected by the program's
evaluators and written as the run summary (`summary_table`), logged as
warnings, and marked in the tables. Nothing here runs a model or writes a
file; any program can use it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

from absl import logging
import numpy as np

STATUSES = ("ok", "collapsed", "chance", "nan", "missing")
# Statuses a user must see (listed in the summary and logged as warnings).
PROBLEMS = ("collapsed", "chance", "nan")
# A loss within 5% of a trivial decoder's is indistinguishable from it at the
# seed-to-seed spread of a short run; the collapsed decoders sat at
# 0.0001% of the all-black loss.
COLLAPSE_MARGIN = 0.05
# An accuracy within 5 points of chance (e.g. < 0.15 for 10 classes).
CHANCE_MARGIN = 0.05


@dataclasses.dataclass(frozen=True)
class Health:
  """The verdict on one number: `status` (one of `STATUSES`) and a one-line `note`."""
  status: str
  note: str = ""

  @property
  def is_problem(self) -> bool:
    return self.status in PROBLEMS


@dataclasses.dataclass(frozen=True)
class Finding:
  """A `Health` with where it was found: table, row label and the checked column."""
  table: str
  row: str
  column: str
  health: Health

  def as_row(self) -> dict[str, str]:
    return {"table": self.table, "row": self.row, "column": self.column,
            "status": self.health.status, "note": self.health.note}


def _values(values: float | Sequence[float] | None) -> list[float] | None:
  if values is None:
    return None
  if np.ndim(values) == 0:
    return [float(values)]
  return [float(v) for v in values]


def _check_margin(margin: float, name: str) -> float:
  m = float(margin)
  if not 0.0 <= m < 1.0:
    raise ValueError(f"{name} must lie in [0, 1), got {margin!r}")
  return m


def loss_health(values: float | Sequence[float] | None, baselines: Mapping[str, float],
                margin: float = COLLAPSE_MARGIN) -> Health:
  """Whether a loss (per seed) beats every trivial baseline by more than `margin`.

  Args:
    values: the loss, or one loss per seed; None or [] when nothing was computed.
    baselines: {name: the same loss of a trivial decoder}, e.g.
      {"all-black": 119.2, "mean image": 40.1}, same images and reduction.
    margin: relative; a loss >= (1 - margin) * baseline is "collapsed".

  Returns:
    "nan" if any value is NaN / Inf, else "collapsed" if any value is within
    the margin of (or above) a baseline, else "ok"; "missing" without values.
  """
  margin = _check_margin(margin, "collapse margin")
  vals = _values(values)
  if not vals:
    return Health("missing", "not computed")
  bad = [i for i, v in enumerate(vals) if not math.isfinite(v)]
  if bad:
    return Health("nan", f"non-finite loss for seed index {bad}: {[vals[i] for i in bad]}")
  for name, base in baselines.items():
    base = float(base)
    if not math.isfinite(base):
      raise ValueError(f"baseline {name!r} must be finite, got {base}")
    worst = max(vals)
    if worst >= (1.0 - margin) * base:
      return Health("collapsed", f"loss {worst:.4g} is within {margin:.0%} of (or above) the "
                                 f"{name} image's {base:.4g}")
  return Health("ok")


def accuracy_health(values: float | Sequence[float] | None, num_classes: int,
                    margin: float = CHANCE_MARGIN) -> Health:
  """Whether an accuracy (per seed) lies more than `margin` above chance, 1 / classes.

  Args:
    values: the accuracy, or one per seed; NaN entries (a missing evaluation
      classifier) are skipped; None, [] or all NaN: "missing".
    num_classes: >= 2.
    margin: absolute; an accuracy <= 1 / classes + margin is "chance".

  Returns:
    "nan" for an Inf, "chance" if any value is within the margin, else "ok".
  """
  if int(num_classes) < 2:
    raise ValueError(f"num_classes must be >= 2 for a chance level, got {num_classes!r}")
  margin = _check_margin(margin, "chance margin")
  vals = [v for v in (_values(values) or []) if not math.isnan(v)]
  if not vals:
    return Health("missing", "not computed")
  if any(math.isinf(v) for v in vals):
    return Health("nan", f"infinite accuracy {vals}")
  chance = 1.0 / int(num_classes)
  worst = min(vals)
  if worst <= chance + margin:
    return Health("chance", f"accuracy {worst:.4g} is within {margin:.2g} of (or below) "
                            f"chance {chance:.4g}")
  return Health("ok")


def trivial_rec_losses(x: np.ndarray, mean_image: np.ndarray) -> dict[str, dict[str, float]]:
  """The reconstruction losses of two trivial decoders on images `x`, in both reductions.

  Args:
    x: (N, H, W, C) the images the real decoder reconstructs.
    mean_image: (H, W, C) the training-mean image.

  Returns:
    {"black": ..., "mean_image": ...}, each {"sum": squared error summed over
    the pixels of an image, "mean": averaged over them}, means over the N
    images, accumulated in float64. A decoder that outputs one constant image
    for every input can do no better than the mean of `x` itself, and the
    training mean is the best constant one can learn.

  Raises:
    ValueError: a mean image that is not of the images' shape.
  """
  x = np.asarray(x, np.float64)
  mean_image = np.asarray(mean_image, np.float64)
  if x.ndim != 4 or mean_image.shape != x.shape[1:]:
    raise ValueError(f"mean_image must have the images' shape {x.shape[1:]} (images "
                     f"(N, H, W, C)), got {mean_image.shape} for images {x.shape}")
  out = {}
  for name, const in (("black", np.zeros_like(mean_image)), ("mean_image", mean_image)):
    err = np.square(x - const).reshape(x.shape[0], -1)
    out[name] = {"sum": float(err.sum(-1).mean()), "mean": float(err.mean())}
  return out


def worst(healths: Sequence[Health]) -> str:
  """The most severe status of several: nan > collapsed > chance > missing > ok."""
  order = ("nan", "collapsed", "chance", "missing", "ok")
  statuses = [h.status for h in healths] or ["ok"]
  return min(statuses, key=order.index)


def mark_row(table: str, label: str, row: dict[str, Any], checks: Mapping[str, Health],
             found: list[Finding] | None = None) -> dict[str, Any]:
  """Adds "status" (the worst of `checks`), "health" (the problems' notes) and "checks".

  Args:
    table, label: where the row is (for the findings).
    row: a table row (modified and returned).
    checks: {checked column: its Health}.
    found: if given, the row's problems are appended to it (`findings`).
  """
  if found is not None:
    found += findings(table, label, checks)
  row["status"] = worst(list(checks.values()))
  row["health"] = "; ".join(f"{col}: {h.status} ({h.note})" for col, h in checks.items()
                            if h.is_problem)
  row["checks"] = {col: h.status for col, h in checks.items()}
  return row


def findings(table: str, row_label: str, checks: Mapping[str, Health]) -> list[Finding]:
  """The problems (collapsed, chance, nan) among one row's checks."""
  return [Finding(table, row_label, col, h) for col, h in checks.items() if h.is_problem]


SUMMARY_COLUMNS = ("table", "row", "column", "status", "note")


def summary_rows(found: Sequence[Finding]) -> list[dict[str, str]]:
  """One row per problem, for `report.write_table` (columns `SUMMARY_COLUMNS`)."""
  return [f.as_row() for f in found]


def summary_title(program: str, found: Sequence[Finding]) -> str:
  """"<program> run summary: N results mean nothing" or "... all results passed"."""
  if not found:
    return f"{program} run summary: every checked result passed the health checks"
  return (f"{program} run summary: {len(found)} result(s) mean nothing "
          "(collapsed, at chance or NaN)")


def summary_notes() -> list[str]:
  """How to read the summary (the margins and baselines)."""
  return [f"collapsed: a reconstruction loss within {COLLAPSE_MARGIN:.0%} of (or above) the "
          "loss of a trivial decoder on the same test images (the all-black image, or the "
          "training-mean image), in the table's reduction",
          f"chance: an accuracy within {CHANCE_MARGIN:g} of (or below) 1 / classes",
          "nan: a NaN or Inf loss (a diverged run)"]


def log_warnings(program: str, rows: Sequence[Mapping[str, str]]) -> None:
  """One WARNING per `summary_rows` row, then a count pointing at results/summary.md."""
  for r in rows:
    logging.warning("%s: %s, %s, %s: %s (%s)", program, r["table"], r["row"], r["column"],
                    r["status"], r["note"])
  if rows:
    logging.warning("%s: %d result(s) mean nothing (collapsed, at chance or NaN); see "
                    "results/summary.md", program, len(rows))
