"""ClaDec reconstructions scored against the planted parts (a data set with known parts).

On the planted-concepts set (`data/planted.py`) each test image carries two
parts: one *unique* to its class (the part that names the class) and one
*shared* with two other classes; the part maps say which pixels each covers.
A decoder that shows what the classifier uses should keep the class's unique
part. Three scores per reconstruction, each a mean over the test images:

* `contrast_unique` / `contrast_shared`: the fraction of a part's contrast
  against the background that the reconstruction keeps,
  (bg(x_hat) - part(x_hat)) / (bg(x) - part(x)) with bg / part the mean
  intensity on the background / inside the part: 1 = the part as it is in
  the image, 0 = no trace of it (any constant image);
* `err_unique`, `err_shared`, `err_background`: the squared error per pixel
  inside the unique part, the shared part and on the background;
* `iou_parts`: the overlap (intersection over union) of the pixels the
  reconstruction shows as part (nearer the parts' mean intensity than the
  background's, with the threshold halfway between them in the image) with
  the parts' masks: 1 = every part pixel and no other, 0 = none.

`parts_table` writes them per layer for ClaDec and RefAE, beside the same
scores of the training-mean image (a trivial decoder). Nothing here runs a
model or touches a file.
"""

from __future__ import annotations

from typing import Any, Sequence

import chex
import numpy as np

from jaxconcepts.evaluators import cladec as tables

SCORES = ("contrast_unique", "contrast_shared", "err_unique", "err_shared", "err_background",
          "iou_parts")
COLUMNS = ("layer", "decoder", "contrast_unique", "contrast_unique_std", "contrast_shared",
           "contrast_shared_std", "err_unique", "err_shared", "err_background", "iou_parts")


def part_masks(part_maps: np.ndarray, labels: np.ndarray,
               class_parts: np.ndarray) -> dict[str, np.ndarray]:
  """The masks of each image's unique part, shared part(s), all parts and background.

  Args:
    part_maps: (N, H, W) int, the part id under each pixel (-1: background).
    labels: (N,) int, each image's class.
    class_parts: (K, P) bool, the parts each class holds; a part held by one
      class only is that class's unique part, the others are shared.

  Returns:
    {"unique", "shared", "parts", "background"}: (N, H, W) bool each.
  """
  maps = np.asarray(part_maps)
  labels = np.asarray(labels)
  class_parts = np.asarray(class_parts, bool)
  chex.assert_rank(maps, 3)
  chex.assert_shape(labels, (maps.shape[0],))
  if maps.size and int(maps.max()) >= class_parts.shape[1]:
    raise ValueError(f"part maps name part {int(maps.max())}, but class_parts has "
                     f"{class_parts.shape[1]} parts")
  unique = class_parts & (class_parts.sum(0) == 1)[None]
  parts = maps >= 0
  ids = np.where(parts, maps, 0).reshape(maps.shape[0], -1).astype(np.int64)
  of_class = lambda table: np.take_along_axis(table[labels], ids, 1).reshape(maps.shape) & parts
  is_unique = of_class(unique)
  return {"unique": is_unique, "shared": of_class(class_parts) & ~is_unique, "parts": parts,
          "background": ~parts}


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """(N,) the mean of `values` (N, H, W) over each image's mask (NaN where it is empty)."""
  n = mask.sum((1, 2))
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(n > 0, (values * mask).sum((1, 2)) / np.maximum(n, 1), np.nan)


def _contrast(recon: np.ndarray, images: np.ndarray, part: np.ndarray,
              background: np.ndarray) -> np.ndarray:
  """(N,) the kept fraction of a part's contrast (NaN where the image has none)."""
  true = _masked_mean(images, background) - _masked_mean(images, part)
  kept = _masked_mean(recon, background) - _masked_mean(recon, part)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(np.abs(true) > 1e-6, kept / np.where(true == 0, 1, true), np.nan)


def _iou(recon: np.ndarray, images: np.ndarray, masks: dict[str, np.ndarray]) -> np.ndarray:
  """(N,) IoU of the pixels shown as part (see module doc) with the parts' masks."""
  part_level = _masked_mean(images, masks["parts"])
  bg_level = _masked_mean(images, masks["background"])
  threshold = (0.5 * (part_level + bg_level))[:, None, None]
  side = np.sign(part_level - bg_level)[:, None, None]
  shown = (recon - threshold) * side > 0
  union = (shown | masks["parts"]).sum((1, 2))
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(union > 0, (shown & masks["parts"]).sum((1, 2)) / np.maximum(union, 1),
                    np.nan)


def part_scores(recon: np.ndarray, images: np.ndarray, part_maps: np.ndarray,
                labels: np.ndarray, class_parts: np.ndarray) -> dict[str, float]:
  """The `SCORES` of reconstructions against the planted parts (see module doc).

  Args:
    recon: (N, H, W, C) reconstructions (a (H, W, C) image is one for every
      test image, e.g. the training mean); channels are averaged.
    images: (N, H, W, C) the test images they reconstruct.
    part_maps: (N, H, W) int, the images' part ids (-1: background).
    labels: (N,) int classes.
    class_parts: (K, P) bool, the parts of each class.

  Returns:
    {score: the mean over the images where it is defined (NaN if none)}.
  """
  images = np.asarray(images, np.float64)
  recon = np.broadcast_to(np.asarray(recon, np.float64), images.shape)
  chex.assert_rank(images, 4)
  chex.assert_shape(np.asarray(part_maps), images.shape[:3])
  x, x_hat = images.mean(-1), recon.mean(-1)
  m = part_masks(part_maps, labels, class_parts)
  err = np.square(x_hat - x)
  per_image = {
      "contrast_unique": _contrast(x_hat, x, m["unique"], m["background"]),
      "contrast_shared": _contrast(x_hat, x, m["shared"], m["background"]),
      "err_unique": _masked_mean(err, m["unique"]),
      "err_shared": _masked_mean(err, m["shared"]),
      "err_background": _masked_mean(err, m["background"]),
      "iou_parts": _iou(x_hat, x, m)}
  return {k: (float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"))
          for k, v in per_image.items()}


def _row(layer: str, decoder: str, per_seed: Sequence[dict[str, float]]) -> dict[str, Any]:
  """Means (and for the contrasts the sample std) over seeds of `part_scores`."""
  row: dict[str, Any] = {"layer": layer, "decoder": decoder}
  for key in SCORES:
    row[key], std = tables.mean_std([s[key] for s in per_seed])
    if key.startswith("contrast"):
      row[key + "_std"] = std
  row["per_seed"] = {key: [s[key] for s in per_seed] for key in SCORES}
  return row


def parts_table(results: tables.Results, x_test: np.ndarray, labels: np.ndarray,
                part_maps: np.ndarray, class_parts: np.ndarray,
                info: tables.RunInfo) -> tables.Table:
  """ClaDec and RefAE per layer (first the training-mean image) against the planted parts.

  Args:
    results: the evaluation's results (the layer table's reconstructions).
    x_test: (N, H, W, C) the test images; labels: (N,) their classes.
    part_maps: (N, H, W) the test images' part maps; class_parts: (K, P) bool.
    info: the run's settings, for the notes.
  """
  score = lambda r: part_scores(r, x_test, part_maps, labels, class_parts)
  rows = [_row("-", "training-mean image", [score(results.mean_image)])]
  for layer in results.layers:
    for name, recons in (("ClaDec", layer.cladec), ("RefAE", layer.refae)):
      if recons is not None:
        rows.append(_row(layer.label, name, [score(r) for r in recons.images]))
  return tables.Table(
      "cladec_planted_parts", rows, columns=COLUMNS,
      title=f"ClaDec vs RefAE against the planted parts, {info.config.arch} on {info.dataset}",
      notes=tables.notes(info, epochs_of=("decoder", "refae")) + [
          "contrast_unique / contrast_shared = the fraction of the part's contrast against the "
          "background that the reconstruction keeps (1 = as in the image, 0 = no trace, as any "
          "constant image); unique = the part that names the image's class, shared = the part "
          "it shares with two other classes; mean (and sample std) over seeds",
          "err_* = squared error per pixel inside the unique part, the shared part and on the "
          "background; iou_parts = overlap of the pixels the reconstruction shows as part "
          "(nearer the parts' intensity than the background's) with the parts' masks",
          "how to read: the training-mean row is what a decoder that learnt nothing scores; a "
          "decoder that shows what the classifier uses keeps the unique part (contrast_unique "
          "well above the training mean's); ClaDec above RefAE on contrast_unique relative to "
          "contrast_shared = ClaDec keeps the class's part and drops more of the rest"])


def planted_tables(results: tables.Results, x_test: np.ndarray, labels: np.ndarray,
                   parts: Any, info: tables.RunInfo) -> list[tables.Table]:
  """[`parts_table`] for a data set with planted parts (`Dataset.parts`), else []."""
  if parts is None:
    return []
  return [parts_table(results, x_test, labels, parts.test, parts.class_parts, info)]
