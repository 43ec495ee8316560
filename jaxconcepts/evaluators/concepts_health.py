"""The concepts run's health checks (DESIGN section 9): results that say when they mean nothing.

* a **blank concept**: its top crops are flat patches (background, e.g. the black around a
  Fashion-MNIST item, or no crop found), not a part of the class; the stitched test then
  pastes a blank square;
* a **stitched test at chance**: the share of classes whose stitched image the model
  recognises is within `health.CHANCE_MARGIN` of 1 / classes (checked in `evaluators.concepts`).

:func:`run_summary` gathers every table's problems (`extra["findings"]`) for
`results/summary` and the closing warnings. Nothing here runs a model or writes a file.
"""

from __future__ import annotations

from typing import Any, Sequence

import chex
import numpy as np

from jaxconcepts import report
from jaxconcepts.evaluators import health

# Mean per-crop pixel std (pixels in [0, 1]) below which a concept's crops are a flat patch.
BLANK_CROP_STD = 0.02


def blank_concepts(crops: np.ndarray) -> np.ndarray:
  """Which concepts' top crops are blank: mean per-crop pixel std below `BLANK_CROP_STD`.

  Args:
    crops: (k, m, ch, cw, C) the top-m crops of k concepts (missing ones are a constant fill).

  Returns:
    (k,) bool.
  """
  chex.assert_rank(crops, 5)
  k, m = crops.shape[:2]
  per_crop = np.asarray(crops, np.float64).reshape(k, m, -1).std(axis=-1)
  return per_crop.mean(axis=1) < BLANK_CROP_STD


def blank_check(blank: np.ndarray) -> health.Health:
  """"collapsed" when any of a class's concepts is blank (`blank`: (k,) bool), else "ok"."""
  if not blank.any():
    return health.Health("ok")
  return health.Health("collapsed", f"{int(blank.sum())} of {blank.size} concepts' top crops "
                                    f"are blank (mean pixel std < {BLANK_CROP_STD:g}): "
                                    "background, not a part")


def run_summary(outputs: Sequence[Any]) -> report.TableSet:
  """The run summary: every table's health problems (extra["findings"]), one row each."""
  rows = [r for t in outputs if isinstance(t, report.TableSet)
          for r in t.extra.get("findings", ())]
  checked = [t.stem for t in outputs if isinstance(t, report.TableSet) and "findings" in t.extra]
  title = (f"concepts run summary: {len(rows)} result(s) mean nothing (blank concepts, at "
           "chance or NaN)" if rows else
           "concepts run summary: every checked result passed the health checks")
  notes = [f"collapsed (concepts): a concept whose top crops have a mean pixel std below "
           f"{BLANK_CROP_STD:g} (a flat patch: background, or no crop found)",
           f"chance: a share of classes recognised within {health.CHANCE_MARGIN:g} of (or "
           "below) 1 / classes", f"tables checked: {checked}"]
  return report.TableSet("summary", title, {"summary": rows}, notes, {})
