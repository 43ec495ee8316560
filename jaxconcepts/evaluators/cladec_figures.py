"""The ClaDec paper's figures: computed results in, image grids out (one unit per figure).

Each unit takes the `evaluators.cladec.Results` of an evaluation (the first
seed's reconstructions) and returns a `Grid` (rows of (H, W, 1 or 3) images
with labels) that `report.save_image_grid` writes as `figures/<name>.png`:

* `layers_figure`: X | RefAE | ClaDec | difference per layer (Figs. 6 / 7);
* `alpha_figure`: reconstructions per alpha (Fig. 11);
* `epochs_figure`: classifiers trained for 0, 1, ... epochs (Fig. 12);
* `subsets_figure`: nested / disjoint neuron subsets (Figs. 13 / 14);
* `occlusion_figure`: least and most relevant square occluded (Fig. 16).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from jaxconcepts.evaluators import cladec as tables

_SCALE_NOTE = ("red: RefAE brighter than ClaDec, green: ClaDec brighter (scaled to the largest "
               "difference shown)")


@dataclasses.dataclass(frozen=True)
class Grid:
  """One figure as `report.save_image_grid` takes it (`name`: the PNG's stem)."""
  name: str
  rows: list[list[np.ndarray]]
  title: str
  row_labels: list[str]
  col_labels: list[str] | None = None


@dataclasses.dataclass(frozen=True)
class TestSet:
  """The test images the reconstructions are of: (N, H, W, C), (N,) labels, class names."""
  images: np.ndarray
  labels: np.ndarray
  class_names: Sequence[str]


def diff_image(refae: np.ndarray, cladec_img: np.ndarray, scale: float) -> np.ndarray:
  """Fig. 7's difference: red where RefAE is brighter than ClaDec, green the opposite.

  Args:
    refae, cladec_img: (H, W, C) in [0, 1] (channels averaged).
    scale: the difference shown at full intensity.

  Returns:
    (H, W, 3) RGB in [0, 1].
  """
  d = (np.asarray(refae, np.float32) - np.asarray(cladec_img, np.float32)).mean(-1)
  d = d / max(float(scale), 1e-8)
  rgb = np.zeros(d.shape + (3,), np.float32)
  rgb[..., 0] = np.clip(d, 0, 1)
  rgb[..., 1] = np.clip(-d, 0, 1)
  return rgb


def _show(img: np.ndarray) -> np.ndarray:
  """An image as shown: grey or RGB as it is, other channel counts averaged to grey."""
  img = np.asarray(img, np.float32)
  return img if img.shape[-1] in (1, 3) else img.mean(-1, keepdims=True)


def _first_seed(recons: tables.Recons | None) -> np.ndarray | None:
  return None if recons is None or not recons.images else recons.images[0]


def layers_figure(layers: Sequence[tables.LayerResult], test: TestSet, idx: np.ndarray,
                  name: str, title: str) -> Grid | None:
  """X | RefAE | ClaDec | difference for test images `idx`, one row per layer."""
  shown = [(r.label, _first_seed(r.refae), _first_seed(r.cladec)) for r in layers]
  shown = [(label, ref, cla) for label, ref, cla in shown if ref is not None and cla is not None]
  if idx.size == 0 or not shown:
    return None
  scale = max(float(np.abs(np.stack([ref[idx] - cla[idx] for _, ref, cla in shown])).max()),
              1e-3)
  rows = []
  for _, ref, cla in shown:
    row = []
    for j in idx:
      row += [_show(test.images[j]), _show(ref[j]), _show(cla[j]),
              diff_image(ref[j], cla[j], scale)]
    rows.append(row)
  cols = []
  for j in idx:
    cols += [f"X ({test.class_names[test.labels[j]][:8]})", "RefAE", "ClaDec", "diff"]
  return Grid(name, rows, title, [label for label, _, _ in shown], cols)


def _rows_grid(name: str, title: str, originals: list[np.ndarray],
               labelled: Sequence[tuple[str, np.ndarray]], idx: np.ndarray) -> Grid:
  """A grid of X, then one row of reconstructions `idx` per (label, images)."""
  return Grid(name, [originals] + [[_show(x[j]) for j in idx] for _, x in labelled], title,
              ["X"] + [label for label, _ in labelled])


def alpha_figure(results: tables.Results, originals: list[np.ndarray],
                 idx: np.ndarray) -> Grid | None:
  """Fig. 11: ClaDec at the alpha layer per alpha, largest first."""
  shown = [(f"alpha={a:g}", _first_seed(results.alpha[a]))
           for a in sorted(results.alpha, reverse=True)]
  shown = [(label, x) for label, x in shown if x is not None]
  if not shown:
    return None
  return _rows_grid("cladec_alpha",
                    f"ClaDec reconstructions at {results.alpha_label} per alpha",
                    originals, shown, idx)


def epochs_figure(results: tables.Results, refae: np.ndarray | None,
                  originals: list[np.ndarray], idx: np.ndarray) -> Grid | None:
  """Fig. 12: ClaDec for classifiers trained 0, 1, ... epochs (and RefAE, if given)."""
  shown = [(f"clf {r.epochs} ep", _first_seed(r.cladec))
           for r in sorted(results.epochs, key=lambda r: r.epochs)]
  shown = [(label, x) for label, x in shown if x is not None]
  if not shown:
    return None
  shown = ([("RefAE", refae)] if refae is not None else []) + shown
  return _rows_grid("cladec_training_epochs",
                    f"ClaDec at {results.epochs_label} for classifiers trained 0, 1, ... epochs",
                    originals, shown, idx)


def subsets_figure(results: tables.Results, kind: str, originals: list[np.ndarray],
                   idx: np.ndarray) -> Grid | None:
  """Figs. 13 / 14: ClaDec from `kind` ("nested" | "disjoint") neuron subsets."""
  shown = [(f"n{r.start}-{r.stop - 1}", _first_seed(r.cladec))
           for r in results.subsets if r.kind == kind]
  shown = [(label, x) for label, x in shown if x is not None]
  if not shown:
    return None
  return _rows_grid(f"cladec_subsets_{kind}",
                    f"ClaDec from {kind} neuron subsets of {results.subset_label}",
                    originals, shown, idx)


def occlusion_figure(results: Sequence[tables.OcclusionResult], n: int) -> Grid | None:
  """Fig. 16: X, ClaDec(X), and the least / most relevant square occluded, per layer."""
  rows, labels = [], []
  for r in results:
    e = r.example
    if e is None:
      continue
    for j in range(min(n, e.images.shape[0])):
      rows.append([_show(e.images[j]), _show(e.recon[j]), _show(e.occluded[j, e.i_min[j]]),
                   _show(e.recon_occluded[j, e.i_min[j]]), _show(e.occluded[j, e.i_max[j]]),
                   _show(e.recon_occluded[j, e.i_max[j]])])
      labels.append(r.label)
  if not rows:
    return None
  return Grid("occlusion", rows,
              "least (Omin) and most (Omax) relevant square by ClaDec relevance", labels,
              ["X", "ClaDec(X)", "X_Omin", "ClaDec", "X_Omax", "ClaDec"])


def figures(results: tables.Results, test: TestSet, n_images: int, seed: int,
            epochs_refae: np.ndarray | None) -> list[Grid]:
  """Every figure the results allow, in the order the program writes them.

  Args:
    results: the evaluation's results.
    test: the test set the reconstructions are of.
    n_images: test images per figure (the first ones).
    seed: the first seed, named in the layer figure's title.
    epochs_refae: RefAE reconstructions shown in Fig. 12, or None.
  """
  n = min(int(n_images), test.images.shape[0])
  idx = np.arange(n)
  wrong = np.nonzero(results.predictions != test.labels)[0][:n]
  grids = [
      layers_figure(results.layers, test, idx, "cladec_layers",
                    f"X | RefAE | ClaDec | difference per layer (seed {seed}); {_SCALE_NOTE}"),
      layers_figure(results.layers, test, wrong, "cladec_layers_misclassified",
                    "misclassified test images: X | RefAE | ClaDec | difference; predicted: "
                    + ", ".join(test.class_names[p][:8] for p in results.predictions[wrong])),
  ]
  originals = [_show(test.images[j]) for j in idx]
  grids += [alpha_figure(results, originals, idx),
            epochs_figure(results, epochs_refae, originals, idx)]
  grids += [subsets_figure(results, kind, originals, idx) for kind in ("nested", "disjoint")]
  grids.append(occlusion_figure(results.occlusion, min(n, 4)))
  return [g for g in grids if g is not None]
