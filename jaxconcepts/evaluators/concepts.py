"""The concept paper's tables and figures: computed results in, rows out.

The concepts program (`programs/concepts.py`) computes, per class, per chosen
pair and per ordered pair, the arrays below (`ClassResult`, `StitchResult`,
`PairResult`, `ShiftResult`). Each unit here turns them into one results file
(`report.TableSet`: named tables of rows, with notes) or into figures (`Figure`: rows
of images with labels):

* :func:`stitch_test`: per-class rows, Table 1 (crops from all images) and
  Table 2 (excluding the class);
* :func:`shift_test`: per ordered pair (B -> A) rows and Table 3;
* :func:`bias_probe`: Table 4 and the stitched test of the contrast concepts;
* :func:`planted_parts`: on a data set with planted parts (`data.planted`),
  how well each class's and each chosen pair's concept crops cover the parts
  that should explain them, against random crops of the same images;
* :func:`concept_figures`, :func:`stitched_figure`, :func:`contrast_figures`:
  the crop figures;
* the health of the stitched test (`evaluators.concepts_health`): blank concepts and a
  share of recognised classes at chance, in the tables and in extra["findings"].

Nothing here runs a model or touches a file. A class or pair that failed keeps
its row, whose status says why; summaries are over those that ran and count
the others (``n_failed``).
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import chex
import ml_collections
import numpy as np

from jaxconcepts import report
from jaxconcepts.data import planted as planted_lib
from jaxconcepts.evaluators import concepts_health
from jaxconcepts.evaluators import health
from jaxconcepts.methods import concepts as concepts_lib
from jaxconcepts.methods import contrast as contrast_lib
from jaxconcepts.methods import crops as crops_lib

Row = dict[str, Any]
STITCH_MODES = (("all", "all"), ("exclude", "excl"))  # (crop mode, column tag)


# ---------------------------------------------------------------------------
# Results (what the program computes) and outputs (what it writes).


class RunInfo(NamedTuple):
  """The settings every table's notes and titles name.

  Attributes:
    layer: the canonical tap name.
    layer_shape: (h, w, c) per image.
    n_images: images in the split searched and explained.
    geometry: the crop geometry.
    layout: the resolved stitch layout.
    names: a name per class id (the data set's class names or the ids).
    noise_std: the SmoothGrad std in [0, 1] pixel units that ran.
    data_std: the training images' std it was scaled by (None: not scaled).
    blank: the bias probe's blank colour (C,) that ran.
  """
  layer: str
  layer_shape: tuple[int, ...]
  n_images: int
  geometry: crops_lib.CropGeometry
  layout: str
  names: tuple[str, ...]
  noise_std: float | None = None
  data_std: float | None = None
  blank: tuple[float, ...] | None = None


class PartTruth(NamedTuple):
  """The planted parts of the searched split (`data.planted.PlantedParts`).

  Attributes:
    maps: (N, H, W) int part id per pixel (-1: background).
    class_parts: (classes, P) bool, the parts of each class.
    names: P part names.
  """
  maps: np.ndarray
  class_parts: np.ndarray
  names: tuple[str, ...]


class ClassResult(NamedTuple):
  """One class after attribution and NMF.

  Attributes:
    cls: the class id.
    image_idx: (n,) indices of the images predicted as the class (n may be 0).
    status: "ok", or "failed: <why>".
    n_vectors: pixel vectors with a positive score (None: attribution did not
      run).
    n_contrast_vectors: pixel vectors kept for contrasting (None: as above).
    concepts: the NMF concepts (None: not factorised).
  """
  cls: int
  image_idx: np.ndarray
  status: str
  n_vectors: int | None = None
  n_contrast_vectors: int | None = None
  concepts: concepts_lib.ConceptSet | None = None

  @property
  def has_contrast(self) -> bool:
    """Whether the class takes part in contrasting (has contrast vectors)."""
    return bool(self.n_contrast_vectors)


class StitchResult(NamedTuple):
  """The stitched-image test of the classes with concepts.

  Attributes:
    classes: the classes that ran, in order (n of them).
    images: {"all", "exclude"}: (n, H', W', C) stitched images.
    probs: {"all", "exclude"}: (n, classes) float32 softmax of the model.
    missing: {"all", "exclude"}: (n,) int, concepts without a top crop.
    resized: whether the stitched images were resized to the input size.
  """
  classes: tuple[int, ...]
  images: Mapping[str, np.ndarray]
  probs: Mapping[str, np.ndarray]
  missing: Mapping[str, np.ndarray]
  resized: bool


class PairResult(NamedTuple):
  """Contrast concepts of one chosen pair (A, B) and their tests.

  Attributes:
    a: the class explained (why A ...).
    b: ... rather than B.
    status: "ok", or why the pair did not run (without "failed: ").
    concepts: the contrast concepts (None unless ok).
    crops: (k, m, ch, cw, C) the concepts' top crops from all images.
    stitched_probs: (classes,) softmax for their stitched top crops.
    crop_image: (k,) int, the image of each concept's probe crop (-1: none).
    crop_image_pred: (k,) the model's prediction for that image (None: none).
    crop_from_a: (k,) bool, whether that image is predicted as A.
    probe: (k,) the `contrast.bias_probe` numbers per concept (None: no crop).
  """
  a: int
  b: int
  status: str
  concepts: concepts_lib.ConceptSet | None = None
  crops: np.ndarray | None = None
  stitched_probs: np.ndarray | None = None
  crop_image: Sequence[int] = ()
  crop_image_pred: Sequence[int | None] = ()
  crop_from_a: Sequence[bool] = ()
  probe: Sequence[Mapping[str, float] | None] = ()


class ShiftResult(NamedTuple):
  """The shifting test from class B toward each class A it ran for.

  Attributes:
    b: the images' (predicted) class.
    targets: the P classes A, in order.
    mean_probs: (P, T, classes) mean softmax over B's images per offset.
    argmax: (P, T, N) each image's predicted class per offset.
    base_mean: (classes,) mean softmax of the unshifted images.
    train_acc: (P,) training accuracy of each (A, B) pair classifier.
    n_images: N.
    target_probs: (P, T, N) each image's p(A) per offset (None: not kept).
    base_probs: (N, classes) softmax of the unshifted images (None: not kept).
  """
  b: int
  targets: tuple[int, ...]
  mean_probs: np.ndarray
  argmax: np.ndarray
  base_mean: np.ndarray
  train_acc: np.ndarray
  n_images: int
  target_probs: np.ndarray | None = None
  base_probs: np.ndarray | None = None


# ---------------------------------------------------------------------------
# Tables 1 / 2: the stitched-image test.


def class_row(r: ClassResult, names: Sequence[str]) -> Row:
  """The per-class row up to the NMF: status, images, vectors, NMF error."""
  row = {"class": r.cls, "name": names[r.cls], "status": r.status,
         "n_images": int(r.image_idx.size)}
  if r.n_vectors is not None:
    row["n_vectors"] = r.n_vectors
    row["n_contrast_vectors"] = r.n_contrast_vectors
  if r.concepts is not None:
    row["nmf_rel_error"] = r.concepts.rel_error
    row["nmf_iters"] = r.concepts.n_iter
  return row


def stitch_columns(stitch: StitchResult, i: int) -> Row:
  """The stitched-test columns of the i-th class of `stitch`."""
  c = stitch.classes[i]
  row = {}
  for mode, tag in STITCH_MODES:
    p = stitch.probs[mode][i]
    row[f"prob_{tag}"] = float(p[c])
    row[f"argmax_{tag}"] = int(p.argmax())
    row[f"predicted_{tag}"] = bool(p.argmax() == c)
    if stitch.missing[mode][i]:
      row[f"missing_crops_{tag}"] = int(stitch.missing[mode][i])
  return row


def _noise(info: RunInfo) -> str:
  """The SmoothGrad noise as it ran, with the conversion from normalised units."""
  if info.noise_std is None:
    return "noise std as configured"
  if info.data_std is None:
    return f"noise std {info.noise_std:.4g} in [0, 1] pixel units"
  return (f"noise std {info.noise_std / info.data_std:.4g} in normalised units (the paper's "
          f"0.25) x data std {info.data_std:.4g} = {info.noise_std:.4g} in [0, 1] pixel units")


def _stitch_notes(config: ml_collections.ConfigDict, info: RunInfo, n_classes: int,
                  resized: bool) -> list[str]:
  g = info.geometry
  order = config.score_order
  return [
      f"layer {info.layer} {tuple(info.layer_shape)}; {n_classes} classes; images: the "
      f"{config.split} split ({info.n_images} images), up to "
      f"{int(config.n_images_per_class)} predicted per class (labels ignored)",
      f"attribution: DeepLift + SmoothGrad, {int(config.n_samples)} samples, {_noise(info)}, "
      f"baseline {float(config.baseline)}; pixel score order "
      f"{order}{' (paper)' if order == 'mean_then_relu' else ' (reference code)'}",
      f"NMF: multiplicative updates, {int(config.n_concepts)} concepts, init "
      f"{config.nmf_init}, max_iter {int(config.nmf_max_iter)}, tol {float(config.nmf_tol)}",
      f"crops: pool {g.pool}x{g.pool} -> grid {g.grid_hw}, crop {g.crop_hw}; stitched "
      f"layout '{info.layout}'{', resized to the input size' if resized else ''}, fill "
      f"{float(config.stitch_fill)}",
      "table 1: crops from all images; table 2: crops only from images not predicted as "
      "the class; statistics over the classes that ran (n_failed did not)",
  ]


def stitch_test(config: ml_collections.ConfigDict, info: RunInfo,
                classes: Sequence[ClassResult], stitch: StitchResult | None,
                class_crops: Mapping[int, np.ndarray] | None = None) -> report.TableSet:
  """The stitched-image test: per-class rows, Tables 1 and 2, with their health.

  Args:
    config: the concepts config (for the notes).
    info: the run's settings.
    classes: every class of the run, in order.
    stitch: the test of the classes with concepts (None: no class had any).
    class_crops: {class: (k, m, ch, cw, C) top crops} for the blank-concept check (None:
      not checked).

  Returns:
    `stitch_test` tables "per class" (with `blank_concepts` when checked), "table 1 (crops
    from all images)" and "table 2 (excluding the class)" (one row each, with n_failed and
    its health against chance, 1 / classes); the problems in extra["findings"].
  """
  rows = {r.cls: class_row(r, info.names) for r in classes}
  found: list[health.Finding] = []
  for c, crops in (class_crops or {}).items():
    blank = concepts_health.blank_concepts(crops)
    rows[c]["blank_concepts"] = int(blank.sum())
    found += health.findings("stitch_test per class", f"class {c} ({info.names[c]})",
                             {"concepts": concepts_health.blank_check(blank)})
  ran = stitch.classes if stitch is not None else ()
  for i, c in enumerate(ran):
    rows[c].update(stitch_columns(stitch, i))
  summaries = []
  for (_, tag), table in zip(STITCH_MODES, ("table 1", "table 2")):
    summary = crops_lib.stitch_summary([rows[c][f"prob_{tag}"] for c in ran],
                                       [rows[c][f"predicted_{tag}"] for c in ran])
    summary["n_failed"] = sum(1 for r in classes if r.concepts is None)
    if len(ran) >= 2:  # chance: a class guessed at random is "predicted" 1 / classes of the time
      share = health.accuracy_health(summary["pct_predicted"] / 100.0, len(info.names))
      health.mark_row(f"stitch_test {table}", "% predicts class", summary,
                      {"pct_predicted": share}, found)
    summaries.append(summary)
  resized = stitch.resized if stitch is not None else False
  g = info.geometry
  return report.TableSet(
      "stitch_test", "Stitched-image test (Tables 1/2)",
      {"per class": [rows[r.cls] for r in classes],
       "table 1 (crops from all images)": [summaries[0]],
       "table 2 (excluding the class)": [summaries[1]]},
      _stitch_notes(config, info, len(classes), resized),
      {"layer": info.layer,
       "geometry": {"pool": g.pool, "grid_hw": g.grid_hw, "crop_hw": g.crop_hw},
       "stitch_layout": info.layout, "resized": resized,
       "findings": health.summary_rows(found)})


# ---------------------------------------------------------------------------
# Table 3: the shifting test.


def _class_failure(r: ClassResult) -> str:
  """Why a class takes no part in contrasting."""
  return f"class {r.cls}: " + (r.status if r.status != "ok" else "no contrast vectors")


def shift_rows(classes: Sequence[ClassResult], shifts: Mapping[int, ShiftResult],
               offsets: Sequence[float], names: Sequence[str],
               rule: str = "paper") -> list[Row]:
  """One row per ordered pair (B -> A) of distinct classes, B-major.

  Args:
    classes: every class of the run, in order.
    shifts: {B: its shifting test} for the classes that ran.
    offsets: the T offsets.
    names: a name per class id.
    rule: `contrast.SHIFT_RULES` (majority vote and thresholds).

  Returns:
    Rows with status, n_images, pair_train_acc and
    `contrast.shift_metrics_from_stats`' numbers (failed rows: status only).
  """
  by_class = {r.cls: r for r in classes}
  n_contrast = sum(r.has_contrast for r in classes)
  rows = []
  for rb in classes:
    b = rb.cls
    fail = ("fewer than 2 classes with contrast vectors" if n_contrast < 2
            else None if rb.has_contrast else _class_failure(rb))
    res = shifts.get(b)
    for ra in classes:
      a = ra.cls
      if a == b:
        continue
      row = {"from_b": b, "to_a": a, "name_b": names[b], "name_a": names[a]}
      if fail is not None:
        row["status"] = f"failed: {fail}"
      elif a not in res.targets:
        row["status"] = f"failed: {_class_failure(by_class[a])}"
      else:
        i = res.targets.index(a)
        row.update(status="ok", n_images=res.n_images,
                   pair_train_acc=float(res.train_acc[i]))
        row.update(contrast_lib.shift_metrics_from_stats(
            res.mean_probs[i], res.argmax[i], res.base_mean, a, b, offsets, rule=rule,
            target_probs=None if res.target_probs is None else res.target_probs[i],
            base_target=None if res.base_probs is None else res.base_probs[:, a]))
      rows.append(row)
  return rows


def shift_test(config: ml_collections.ConfigDict, info: RunInfo,
               classes: Sequence[ClassResult], shifts: Mapping[int, ShiftResult],
               offsets: Sequence[float]) -> report.TableSet:
  """The shifting test: per ordered pair rows and Table 3.

  Args:
    config: the concepts config (for the notes).
    info: the run's settings.
    classes: every class of the run, in order.
    shifts: {B: its shifting test} for the classes that ran.
    offsets: the T offsets.

  Returns:
    `shift_test` tables "per ordered pair (B -> A)" and "table 3" (one row:
    `contrast.shift_summary` with n_failed).
  """
  rule = config.get("shift_rule", "paper")
  rows = shift_rows(classes, shifts, offsets, info.names, rule)
  summary = contrast_lib.shift_summary(rows, offsets=offsets, rule=rule)
  summary["n_failed"] = sum(1 for r in rows if r["status"] != "ok")
  notes = [
      f"layer {info.layer}; activations of images predicted as B shifted by t * w "
      f"(w: the (A, B) hyperplane normal toward A, raw) at every position, then "
      f"ReLU; offsets {list(offsets)}; best offset = highest mean p(A)",
      f"pairwise classifiers: raw pixel vectors with score > "
      f"{float(config.contrast_threshold)} x image max, zero init, {config.epochs} "
      f"epochs full-batch SGD lr {config.lr}",
      ("swap_t (rule 'paper'): A is the majority of the per-image votes (argmax) at the "
       "best offset and its mean probability >= t" if rule == "paper" else
       "swap_t (rule 'mean_probs'): A is the argmax of the mean probabilities at the best "
       "offset and its mean probability > t") +
      "; flip_rate: fraction of images with argmax A there",
      f"table 3: mean (and std over {summary['std_over'] or 'pairs'}) of default / shifted "
      "p(A); % of pairs that swap"]
  return report.TableSet("shift_test", "Shifting test (Table 3)",
                  {"per ordered pair (B -> A)": rows, "table 3": [summary]},
                  notes, {"layer": info.layer})


# ---------------------------------------------------------------------------
# Table 4: the bias probe, and the stitched contrast concepts.


def _pair_rows(p: PairResult, names: Sequence[str]) -> tuple[Row, list[Row]]:
  """(the stitched contrast row, the k bias probe rows) of one pair."""
  base = {"to_a": p.a, "from_b": p.b, "name_a": names[p.a], "name_b": names[p.b]}
  if p.status != "ok":
    failed = {**base, "status": f"failed: {p.status}"}
    return failed, [dict(failed)]
  probs = p.stitched_probs
  stitched = {**base, "status": "ok", "nmf_rel_error": p.concepts.rel_error,
              "n_vectors": p.concepts.n_vectors, "prob_a": float(probs[p.a]),
              "prob_b": float(probs[p.b]), "argmax": int(probs.argmax())}
  rows = []
  for j, probe in enumerate(p.probe):
    row = {**base, "concept": j, "crop_from_image": int(p.crop_image[j]),
           "crop_image_pred": p.crop_image_pred[j],
           "crop_from_class_a": bool(p.crop_from_a[j])}
    if probe is not None:
      row["status"] = "ok"
      row.update(probe)
    else:
      row["status"] = "failed: no crop found"
    rows.append(row)
  return stitched, rows


def bias_probe(config: ml_collections.ConfigDict, info: RunInfo,
               pairs: Sequence[PairResult]) -> report.TableSet:
  """The bias probe (Table 4) and the stitched test of the contrast concepts.

  Args:
    config: the concepts config (for the notes).
    info: the run's settings.
    pairs: every chosen pair (A, B), in order.

  Returns:
    `bias_probe` tables "bias probe (Table 4)" (k rows per pair that ran, one
    per failed pair) and "stitched contrast concepts" (one row per pair).
  """
  stitched, probes = [], []
  for p in pairs:
    s, rows = _pair_rows(p, info.names)
    stitched.append(s)
    probes += rows
  position = config.bias_position
  blank = (f"the data's mean colour {[round(v, 4) for v in info.blank]} (the paper's zeros in "
           "normalised space)" if config.bias_blank == "mean" else
           f"{list(info.blank) if info.blank is not None else config.bias_blank} (black)")
  notes = [f"for each chosen pair (A, B): contrast concepts = NMF ({int(config.n_concepts)}) "
           "of A's activations scaled by max(w.x + b, 0); each concept's top crop taken from "
           f"an image predicted as A (crop_from_class_a) is pasted at the {position} corner "
           "of every image predicted as B",
           "orig / pasted / blank: mean p(A) and p(B) for the original images, with the "
           f"crop, and with the same square set to {blank}"]
  return report.TableSet("bias_probe", "Contrast concepts: bias probe (Table 4) and stitched test",
                  {"bias probe (Table 4)": probes, "stitched contrast concepts": stitched},
                  notes, {"layer": info.layer})


# ---------------------------------------------------------------------------
# Planted parts: concept crops scored against the known truth.


def _part_row(truth: PartTruth, hits: crops_lib.CropHits, geometry: crops_lib.CropGeometry,
              wanted: np.ndarray, seed: int) -> Row:
  """Coverage of the wanted parts by the top crops and by random crops of the same images."""
  p = len(truth.names)
  found = concepts_lib.part_hit_scores(
      concepts_lib.part_coverage(hits, geometry, truth.maps, p), wanted)
  rand = concepts_lib.part_hit_scores(concepts_lib.part_coverage(
      concepts_lib.random_hits(hits, geometry, seed), geometry, truth.maps, p), wanted)
  return {"parts": [truth.names[i] for i in np.flatnonzero(wanted)],
          "coverage": found["coverage"], "random_coverage": rand["coverage"],
          "hit_rate": found["hit_rate"], "random_hit_rate": rand["hit_rate"],
          "any_part": found["any_part"], "random_any_part": rand["any_part"],
          "n_crops": found["n_crops"],
          "concept_parts": [truth.names[t] if t >= 0 else None for t in found["top_part"]]}


def _part_summary(rows: Sequence[Row]) -> Row:
  ok = [r for r in rows if r.get("n_crops")]
  out = {"n": len(ok)}
  for key in ("coverage", "random_coverage", "hit_rate", "random_hit_rate"):
    out[key] = float(np.mean([r[key] for r in ok])) if ok else float("nan")
  return out


def planted_parts(config: ml_collections.ConfigDict, info: RunInfo, truth: PartTruth,
                  classes: Sequence[ClassResult],
                  crops: Mapping[Any, crops_lib.ConceptCrops],
                  pairs: Sequence[tuple[int, int]]) -> report.TableSet:
  """Concept crops against the planted parts (a data set with known parts).

  Per class, the class's concepts' top-m crops (from all images) are scored
  against the class's parts; per chosen pair (A, B), the contrast concepts'
  crops against the parts that separate A from B (A's parts that B lacks).
  The baseline is a random cell of each crop's image.

  Args:
    config: the concepts config (n_crops, seed).
    info: the run's settings.
    truth: the split's part maps and the classes' parts.
    classes: every class of the run, in order.
    crops: {class or (A, B): their crops}.
    pairs: the chosen pairs, in order.

  Returns:
    `planted_parts` tables "per class", "per contrast pair" and "summary"
    (one row for classes, one for pairs).
  """
  seed, g = int(config.seed), info.geometry
  class_rows, pair_rows = [], []
  for r in classes:
    row = {"class": r.cls, "name": info.names[r.cls]}
    if r.concepts is None or r.cls not in crops:
      class_rows.append({**row, "status": r.status if r.status != "ok" else "no concepts"})
      continue
    class_rows.append({**row, "status": "ok", **_part_row(
        truth, crops[r.cls].hits["all"], g, truth.class_parts[r.cls], seed)})
  for a, b in pairs:
    row = {"to_a": a, "from_b": b, "name_a": info.names[a], "name_b": info.names[b]}
    if (a, b) not in crops:
      pair_rows.append({**row, "status": "failed: no contrast concepts"})
      continue
    wanted = planted_lib.separating_parts(truth.class_parts, a, b)
    pair_rows.append({**row, "status": "ok", **_part_row(
        truth, crops[(a, b)].hits["all"], g, wanted, seed)})
  summary = [{"what": "classes (their parts)", **_part_summary(class_rows)},
             {"what": "contrast pairs (separating parts)", **_part_summary(pair_rows)}]
  notes = [f"layer {info.layer}; each concept's top-{int(config.n_crops)} crops "
           f"({g.crop_hw[0]}x{g.crop_hw[1]}) from all images",
           "coverage: per crop, the largest fraction of one wanted part's pixels (in that "
           "image) inside the crop, averaged over crops; hit_rate: fraction of crops holding "
           "at least half of a wanted part; any_part: coverage by any planted part",
           "wanted parts: a class's parts; for a pair (A, B) the parts of A that B lacks",
           f"random_*: the same images, a uniformly random crop cell each (seed {seed})",
           "concept_parts: the part each concept's crops cover most"]
  return report.TableSet("planted_parts", "Concepts against the planted parts",
                         {"per class": class_rows, "per contrast pair": pair_rows,
                          "summary": summary}, notes, {"layer": info.layer})


# ---------------------------------------------------------------------------
# Figures.


def _crop_grid(path: str, crops: np.ndarray, title: str) -> report.Figure:
  """k concepts x m crops (k, m, ch, cw, C) as a figure, one row per concept."""
  chex.assert_rank(crops, 5)
  k, m = crops.shape[:2]
  return report.Figure(path, [list(r) for r in crops], [f"concept {j}" for j in range(k)],
                [f"#{j + 1}" for j in range(m)], title)


def concept_figures(info: RunInfo, class_crops: Mapping[int, np.ndarray]) -> list[report.Figure]:
  """One figure per class with concepts: its k concepts x top-m crops.

  Args:
    info: the run's settings.
    class_crops: {class: (k, m, ch, cw, C) crops from all images}, in order.

  Returns:
    Figures `concepts/class_XXX.png`.
  """
  return [_crop_grid(f"concepts/class_{c:03d}.png", crops,
                     f"{info.names[c]} ({c}): {crops.shape[0]} concepts x top-"
                     f"{crops.shape[1]} crops, {info.layer}")
          for c, crops in class_crops.items()]


def stitched_figure(info: RunInfo, stitch: StitchResult) -> report.Figure:
  """The stitched images of every class that ran: crops from all / other images.

  Args:
    info: the run's settings.
    stitch: the stitched-image test.

  Returns:
    Figure `stitched.png`, one row per class, labelled with p(class) left/right.
  """
  labels = []
  for i, c in enumerate(stitch.classes):
    cols = stitch_columns(stitch, i)
    labels.append(f"{info.names[c]} {cols['prob_all']:.2f}/{cols['prob_excl']:.2f}")
  return report.Figure(
      "stitched.png",
      [[stitch.images["all"][i], stitch.images["exclude"][i]]
       for i in range(len(stitch.classes))], labels, None,
      f"stitched images ({info.layout}{', resized' if stitch.resized else ''})\nleft: "
      "crops from all images\nright: from images not\npredicted as the class\n"
      "p(class) left/right")


def contrast_figures(info: RunInfo, pairs: Sequence[PairResult]) -> list[report.Figure]:
  """One figure per pair that ran: its k contrast concepts x top-m crops.

  Args:
    info: the run's settings.
    pairs: the chosen pairs (failed ones are skipped).

  Returns:
    Figures `contrast/AAA_vs_BBB.png`.
  """
  return [_crop_grid(f"contrast/{p.a:03d}_vs_{p.b:03d}.png", p.crops,
                     f"why {info.names[p.a]} rather than {info.names[p.b]}: "
                     f"{p.crops.shape[0]} contrast concepts, {info.layer}")
          for p in pairs if p.status == "ok"]
