"""The ClaDec paper's tables: computed results in, rows out (one unit per table).

The ClaDec program (`programs/cladec.py`) restores its trained stages and
computes arrays: test-set reconstructions per seed, the explained classifier's
logits on them, the accuracies of the evaluation classifiers, the occlusion
trials. Each unit here turns those results into the rows of one table, with
its columns, title and notes, as a `Table` that `report.write_table` writes:

* `layers_table`: ClaDec vs RefAE per layer (Tables 2/3);
* `alpha_table`: the alpha trade-off (Tables 4/5);
* `epochs_table`: classifiers trained for 0, 1, ... epochs (Table 6);
* `subsets_table`: decoders from neuron subsets (Figs. 13/14);
* `occlusion_table`: most / least relevant square occluded (Tables 7/8).

Every reconstruction table also shows, for the same test images and in its
reduction, the loss of two trivial decoders (the all-black image, `rec_black`,
and the training-mean image, `rec_mean_image`); every accuracy is shown beside
`chance` = 1 / classes; a `status` column says whether the row means anything
(`evaluators.health`) and each `Table` carries its `findings` (the problems)
for the run summary.

Nothing here runs a model or touches a file. Means and standard deviations are
over seeds, ignoring NaN (a missing stage or evaluation classifier); the std
is the sample std (ddof=1), as the paper's "mean +- std over 5 runs" (NaN
with one seed).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import ml_collections
import numpy as np

from jaxconcepts.evaluators import health
from jaxconcepts.methods import cladec

OCCLUSION_KEYS = ("acc_max", "acc_min", "delta_acc")
OCCLUSION_COLUMNS = ("layer", "spatial", "gradcam_layer", "cladec_acc_max",
                     "cladec_acc_max_std", "cladec_acc_min", "cladec_acc_min_std",
                     "cladec_delta_acc", "gradcam_acc_max", "gradcam_acc_max_std",
                     "gradcam_acc_min", "gradcam_acc_min_std", "gradcam_delta_acc", "chance",
                     "status", "health")
_OTHER = {"sum": "mean", "mean": "sum"}


def layer_columns(rec_reduction: str) -> tuple[str, ...]:
  """Tables 2/3: the configured reduction first, the other one too (issue 16, fix 3)."""
  o = _OTHER[rec_reduction]
  return ("layer", "shape", "rec_cladec", "rec_cladec_std", "rec_refae", "rec_refae_std",
          "delta_rec", "rec_black", "rec_mean_image", f"rec_cladec_{o}", f"rec_refae_{o}",
          "acc_eval_cladec", "acc_eval_cladec_std", "acc_eval_refae", "acc_eval_refae_std",
          "delta_acc", "chance", "status", "health")


def alpha_columns(rec_reduction: str) -> tuple[str, ...]:
  """Tables 4/5 (both reductions of the rec loss)."""
  return ("alpha", "total_loss", "total_loss_std", "rec_loss", "rec_loss_std",
          f"rec_loss_{_OTHER[rec_reduction]}", "rec_black", "rec_mean_image",
          "classifier_loss", "classifier_loss_std", "acc_eval_cladec", "acc_eval_cladec_std",
          "acc_classifier_on_recon", "acc_classifier_on_recon_std", "chance", "status",
          "health")


def epochs_columns(rec_reduction: str) -> tuple[str, ...]:
  """Table 6 (both reductions of the rec loss)."""
  o = _OTHER[rec_reduction]
  return ("classifier_epochs", "classifier_accuracy", "rec_cladec", "rec_cladec_std",
          "rec_refae", "rec_refae_std", "delta_rec", "rec_black", "rec_mean_image",
          f"rec_cladec_{o}", f"rec_refae_{o}", "acc_eval_cladec", "acc_eval_cladec_std",
          "acc_eval_refae", "acc_eval_refae_std", "delta_acc", "chance", "status", "health")


def subsets_columns(rec_reduction: str) -> tuple[str, ...]:
  """Figs. 13/14 (both reductions of the rec loss)."""
  return ("kind", "neurons", "n_neurons", "rec_cladec", "rec_cladec_std",
          f"rec_cladec_{_OTHER[rec_reduction]}", "rec_black", "rec_mean_image", "status",
          "health")


# ---------------------------------------------------------------------------
# Results (what the program computes) and tables (what it writes)
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Recons:
  """Test-set reconstructions of one trained stage, one entry per seed.

  Attributes:
    images: per seed, (N, H, W, C) float32 reconstructions of the test images.
    eval_accuracy: per seed, the test accuracy of the evaluation classifier
      trained on this kind of reconstruction (NaN when it is missing).
    logits: per seed, (N, classes) logits of the explained classifier on
      `images` (only where a table needs them; else empty).
  """
  images: tuple[np.ndarray, ...]
  eval_accuracy: tuple[float, ...] = ()
  logits: tuple[np.ndarray, ...] = ()


@dataclasses.dataclass(frozen=True)
class Table:
  """One table as `report.write_table` takes it (`name` is the file stem).

  `findings` are the rows' health problems (`health.Finding`), for the summary.
  """
  name: str
  rows: list[dict[str, Any]]
  title: str
  notes: list[str]
  columns: tuple[str, ...] | None = None
  findings: tuple[health.Finding, ...] = ()


@dataclasses.dataclass(frozen=True)
class RunInfo:
  """What the notes under every table say: the settings that produced it.

  Attributes:
    config: the ClaDec config the program ran with.
    dataset: the data set's name.
    num_train, num_test: images used.
    image_shape: (H, W, C).
    seeds: the decoder seeds.
    classifier_workdir, classifier_step: the explained classifier.
    kernel_size: the decoder's transposed-conv kernel.
    warnings: extra notes (e.g. train's and evaluate's configs differ).
  """
  config: ml_collections.ConfigDict
  dataset: str
  num_train: int
  num_test: int
  image_shape: tuple[int, ...]
  seeds: tuple[int, ...]
  classifier_workdir: str | None
  classifier_step: int | None
  kernel_size: int
  warnings: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Reference:
  """What the health checks compare with, for the test images the tables use.

  Attributes:
    x_test: (N, H, W, C) the test images.
    rec_reduction: the tables' reduction, "sum" | "mean".
    black, mean_image: {"sum", "mean"}: the rec loss of the all-black image
      and of the training-mean image on `x_test`, in both reductions.
    num_classes: chance = 1 / num_classes.
  """
  x_test: np.ndarray
  rec_reduction: str
  black: Mapping[str, float]
  mean_image: Mapping[str, float]
  num_classes: int

  @property
  def chance(self) -> float:
    return 1.0 / self.num_classes

  def baselines(self) -> dict[str, float]:
    """{trivial decoder: its loss in the tables' reduction}."""
    r = self.rec_reduction
    return {"all-black": self.black[r], "training-mean": self.mean_image[r]}

  def baseline_cells(self) -> dict[str, float]:
    r = self.rec_reduction
    return {"rec_black": self.black[r], "rec_mean_image": self.mean_image[r]}


def reference(x_test: np.ndarray, mean_image: np.ndarray, num_classes: int,
              rec_reduction: str) -> Reference:
  """The trivial decoders' losses on `x_test` (N, H, W, C) given the training mean (H, W, C)."""
  if int(num_classes) < 2:
    raise ValueError(f"num_classes must be >= 2, got {num_classes!r}")
  base = health.trivial_rec_losses(x_test, mean_image)
  return Reference(np.asarray(x_test, np.float32), cladec.check_rec_reduction(rec_reduction),
                   base["black"], base["mean_image"], int(num_classes))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """(mean, sample std, ddof=1) over the values that are not NaN.

  (NaN, NaN) without values; (mean, NaN) for one value (a sample std needs two).
  """
  v = np.asarray([x for x in values if not np.isnan(x)], np.float64)
  if v.size == 0:
    return float("nan"), float("nan")
  return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else float("nan"))


def _recs(recons: Recons | None, x_test: np.ndarray) -> dict[str, list[float]]:
  """Mean rec loss on the test set per seed, in both reductions ({} lists if missing)."""
  out = {"sum": [], "mean": []}
  for x in (() if recons is None else recons.images):
    m = cladec.reconstruction_metrics(x, x_test)
    out["sum"].append(m["rec_sum"])
    out["mean"].append(m["rec_mean"])
  return out


def _accs(recons: Recons | None) -> list[float]:
  return [] if recons is None else list(recons.eval_accuracy)


def _rec_cells(prefix: str, recs: Mapping[str, list[float]], ref: Reference) -> dict[str, Any]:
  """{prefix: mean, prefix_std, prefix_<other reduction>: mean} of per-seed losses."""
  r = ref.rec_reduction
  m, s = mean_std(recs[r])
  return {prefix: m, prefix + "_std": s, f"{prefix}_{_OTHER[r]}": mean_std(recs[_OTHER[r]])[0]}


def _acc_cells(prefix: str, accs: Sequence[float]) -> dict[str, float]:
  m, s = mean_std(accs)
  return {prefix: m, prefix + "_std": s}


def notes(info: RunInfo, epochs_of: Sequence[str] = ("decoder", "refae", "eval")) -> list[str]:
  """The settings behind a table: rec reduction, epochs, seeds, data, classifier."""
  c = info.config
  ep = {"decoder": f"ClaDec decoders {c.decoder_epochs} epochs",
        "refae": f"RefAE {c.refae_epochs} epochs",
        "eval": f"evaluation classifiers {c.eval_classifier.num_epochs} epochs"}
  rec = ("squared error summed over the pixels of an image, the paper's"
         if c.rec_reduction == "sum" else "squared error averaged over pixels, the authors' code")
  return [
      f"rec reduction: {c.rec_reduction} ({rec}), mean over the test images; the columns "
      f"ending in _{_OTHER[c.rec_reduction]} give the other reduction",
      "epochs: " + ", ".join(ep[k] for k in epochs_of)
      + f"; batch {c.batch_size}; decoder '{c.decoder.variant}' (kernel {info.kernel_size})",
      f"seeds: {list(info.seeds)} (mean and sample std, ddof=1, over seeds; each seed its "
      "own initialisation and batch order)",
      f"data: {info.dataset} ({c.data.source}), {info.num_train} train / "
      f"{info.num_test} test images, {info.image_shape}",
      f"classifier: {c.arch} from {info.classifier_workdir} (step {info.classifier_step})",
  ] + list(info.warnings)


def _health_note(has_acc: bool = True) -> str:
  out = ("health: rec_black / rec_mean_image = the same rec loss of an all-black image and of "
         "the training-mean image on the same test images; status 'collapsed' = a loss within "
         f"{health.COLLAPSE_MARGIN:.0%} of (or above) one of them")
  if has_acc:
    out += (f"; chance = 1 / classes, status 'chance' = an accuracy within "
            f"{health.CHANCE_MARGIN:g} of it")
  return out + "; 'nan' = a NaN / Inf loss; the worst status of the row is shown"


# ---------------------------------------------------------------------------
# Tables 2/3: per layer
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LayerResult:
  """One layer's ClaDec and RefAE reconstructions (None: stage missing)."""
  label: str
  shape: tuple[int, ...]
  cladec: Recons | None
  refae: Recons | None


def layer_row(result: LayerResult, ref: Reference,
              found: list[health.Finding] | None = None) -> dict[str, Any]:
  """Rec loss and evaluation accuracy of ClaDec and RefAE at one layer, deltas and health."""
  recs_c, recs_r = (_recs(r, ref.x_test) for r in (result.cladec, result.refae))
  accs_c, accs_r = _accs(result.cladec), _accs(result.refae)
  row = {"layer": result.label, "shape": "x".join(map(str, result.shape)),
         **_rec_cells("rec_cladec", recs_c, ref), **_rec_cells("rec_refae", recs_r, ref),
         **ref.baseline_cells(), **_acc_cells("acc_eval_cladec", accs_c),
         **_acc_cells("acc_eval_refae", accs_r), "chance": ref.chance}
  row["delta_rec"] = row["rec_cladec"] - row["rec_refae"]
  row["delta_acc"] = row["acc_eval_cladec"] - row["acc_eval_refae"]
  r = ref.rec_reduction
  row["per_seed"] = {"rec_cladec": recs_c[r], "rec_refae": recs_r[r],
                     "acc_eval_cladec": accs_c, "acc_eval_refae": accs_r}
  checks = {"rec_cladec": health.loss_health(recs_c[r] if result.cladec else None,
                                             ref.baselines()),
            "rec_refae": health.loss_health(recs_r[r] if result.refae else None,
                                            ref.baselines()),
            "acc_eval_cladec": health.accuracy_health(accs_c, ref.num_classes),
            "acc_eval_refae": health.accuracy_health(accs_r, ref.num_classes)}
  return health.mark_row("cladec_layers", result.label, row, checks, found)


def layers_table(results: Sequence[LayerResult], ref: Reference, info: RunInfo) -> Table:
  """Tables 2/3: ClaDec vs RefAE per layer."""
  c, found = info.config, []
  rows = [layer_row(r, ref, found) for r in results]
  return Table(
      "cladec_layers", rows, columns=layer_columns(c.rec_reduction), findings=tuple(found),
      title=f"ClaDec vs RefAE per layer (Tables 2/3), {c.arch} on {info.dataset}, "
            f"alpha={c.alpha:g}",
      notes=notes(info) + [
          "delta_rec = rec_cladec - rec_refae; delta_acc = acc_eval_cladec - acc_eval_refae; "
          "acc_eval_* = accuracy on reconstructions of the test set of a classifier (same "
          "architecture) trained on reconstructions of the training set", _health_note()])


# ---------------------------------------------------------------------------
# Tables 4/5: the alpha trade-off
# ---------------------------------------------------------------------------

def alpha_row(alpha: float, recons: Recons | None, labels: np.ndarray, ref: Reference,
              found: list[health.Finding] | None = None) -> dict[str, Any]:
  """Eq. 1's parts on the test set at one alpha, the evaluation accuracy and health.

  At alpha = 1 the reconstruction is not trained (Eq. 1 has no rec term), so
  its loss is not checked against the trivial decoders.
  """
  r, o = ref.rec_reduction, _OTHER[ref.rec_reduction]
  vals = {k: [] for k in ("total", "rec", "rec_" + o, "ce", "acc_c", "acc_eval")}
  if recons is not None:
    for x, logits, acc in zip(recons.images, recons.logits, recons.eval_accuracy):
      m = cladec.reconstruction_metrics(x, ref.x_test, logits=logits, labels=labels,
                                        alpha=alpha, rec_reduction=r)
      for key, value in (("total", m["total"]), ("rec", m["rec"]), ("rec_" + o, m["rec_" + o]),
                         ("ce", m["ce"]), ("acc_c", m["accuracy"]), ("acc_eval", acc)):
        vals[key].append(value)
  row = {"alpha": alpha, **ref.baseline_cells(), "chance": ref.chance}
  for key, label in (("total", "total_loss"), ("rec", "rec_loss"), ("ce", "classifier_loss"),
                     ("acc_eval", "acc_eval_cladec"), ("acc_c", "acc_classifier_on_recon")):
    row[label], row[label + "_std"] = mean_std(vals[key])
  row["rec_loss_" + o] = mean_std(vals["rec_" + o])[0]
  row["per_seed"] = vals
  checks = {"acc_eval_cladec": health.accuracy_health(vals["acc_eval"], ref.num_classes),
            "acc_classifier_on_recon": health.accuracy_health(vals["acc_c"], ref.num_classes)}
  if alpha < 1.0:
    checks["rec_loss"] = health.loss_health(vals["rec"] if recons else None, ref.baselines())
  return health.mark_row("cladec_alpha", f"alpha={alpha:g}", row, checks, found)


def alpha_table(results: Mapping[float, Recons | None], layer_label: str, labels: np.ndarray,
                ref: Reference, info: RunInfo) -> Table:
  """Tables 4/5: one row per alpha, largest first."""
  found = []
  rows = [alpha_row(a, results[a], labels, ref, found) for a in sorted(results, reverse=True)]
  return Table(
      "cladec_alpha", rows, columns=alpha_columns(info.config.rec_reduction),
      findings=tuple(found), title=f"alpha trade-off at {layer_label} (Tables 4/5)",
      notes=notes(info, epochs_of=("decoder", "eval")) + [
          "total_loss = (1 - alpha) rec_loss + alpha classifier_loss (Eq. 1) on the test "
          "set; classifier_loss = CE of the explained classifier on the reconstructions; "
          "acc_classifier_on_recon = its accuracy on them",
          _health_note() + "; alpha = 1 trains no reconstruction: its rec_loss is not checked"])


# ---------------------------------------------------------------------------
# Table 6: classifiers trained for 0, 1, ... epochs
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EpochsResult:
  """ClaDec for one classifier snapshot (None: snapshot or decoder missing)."""
  epochs: int
  classifier_accuracy: float
  cladec: Recons | None


def epochs_row(result: EpochsResult, refae: Mapping[str, Any], ref: Reference,
               found: list[health.Finding]) -> dict[str, Any]:
  """One Table 6 row; `refae` holds the RefAE cells and checks shared by every row.

  The untrained classifier (0 epochs) is at chance by construction: its
  accuracy is not checked.
  """
  recs = _recs(result.cladec, ref.x_test)
  accs = _accs(result.cladec)
  row = {"classifier_epochs": result.epochs, "classifier_accuracy": result.classifier_accuracy,
         **_rec_cells("rec_cladec", recs, ref), **refae["cells"], **ref.baseline_cells(),
         **_acc_cells("acc_eval_cladec", accs), "chance": ref.chance}
  row["delta_rec"] = row["rec_cladec"] - row["rec_refae"]
  row["delta_acc"] = row["acc_eval_cladec"] - row["acc_eval_refae"]
  checks = {"rec_cladec": health.loss_health(recs[ref.rec_reduction] if result.cladec else None,
                                             ref.baselines()),
            "acc_eval_cladec": health.accuracy_health(accs, ref.num_classes), **refae["checks"]}
  if result.epochs > 0:
    checks["classifier_accuracy"] = health.accuracy_health(result.classifier_accuracy,
                                                           ref.num_classes)
  return health.mark_row("cladec_training_epochs", f"{result.epochs} epochs", row, checks, found)


def epochs_table(results: Sequence[EpochsResult], refae: Recons | None, layer_label: str,
                 ref: Reference, info: RunInfo) -> Table:
  """Table 6: one row per classifier; the RefAE columns are the same RefAE in every row."""
  c, found = info.config, []
  recs_r, accs_r = _recs(refae, ref.x_test), _accs(refae)
  shared = {"cells": {**_rec_cells("rec_refae", recs_r, ref),
                      **_acc_cells("acc_eval_refae", accs_r)},
            "checks": {"rec_refae": health.loss_health(
                           recs_r[ref.rec_reduction] if refae else None, ref.baselines()),
                       "acc_eval_refae": health.accuracy_health(accs_r, ref.num_classes)}}
  rows = [epochs_row(r, shared, ref, found) for r in sorted(results, key=lambda r: r.epochs)]
  epochs = [r.epochs for r in results]
  how = (f"one classifier run per row, each with its own {c.classifier.optimizer.name} "
         "schedule over its own epochs" if c.get("classifier_epochs_runs", "own") == "own" else
         f"snapshots of one classifier run ({c.classifier.optimizer.name}, schedule over "
         f"{max(epochs)} epochs) after each number of epochs")
  return Table(
      "cladec_training_epochs", rows, columns=epochs_columns(c.rec_reduction),
      findings=tuple(found), title=f"impact of classifier training (Table 6) at {layer_label}",
      notes=notes(info) + [
          f"classifiers: {how}; 0 = untrained (its accuracy is at chance by construction and "
          "not checked)",
          "RefAE does not depend on the classifier: its columns are the same RefAE for all "
          "rows", _health_note()])


# ---------------------------------------------------------------------------
# Figs. 13/14: neuron subsets
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SubsetResult:
  """ClaDec from channels [start, stop) of the subset layer (None: stage missing)."""
  kind: str
  start: int
  stop: int
  cladec: Recons | None


def subsets_table(results: Sequence[SubsetResult], layer_label: str, ref: Reference,
                  info: RunInfo) -> Table:
  """Rec loss of decoders that see only a run of channels, in the configured order."""
  rows, found = [], []
  for r in results:
    recs = _recs(r.cladec, ref.x_test)
    label = f"{r.kind} {r.start}-{r.stop - 1}"
    row = {"kind": r.kind, "neurons": f"{r.start}-{r.stop - 1}", "n_neurons": r.stop - r.start,
           **_rec_cells("rec_cladec", recs, ref), **ref.baseline_cells()}
    checks = {"rec_cladec": health.loss_health(recs[ref.rec_reduction] if r.cladec else None,
                                               ref.baselines())}
    rows.append(health.mark_row("cladec_subsets", label, row, checks, found))
  return Table(
      "cladec_subsets", rows, columns=subsets_columns(info.config.rec_reduction),
      findings=tuple(found),
      title=f"ClaDec from neuron subsets of {layer_label} (Figs. 13/14)",
      notes=notes(info, epochs_of=("decoder",)) + [
          "neurons = channel index range (a run of consecutive channels at every position)",
          _health_note(has_acc=False)])


# ---------------------------------------------------------------------------
# Tables 7/8: occlusion
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class OcclusionExample:
  """The first seed's occlusions for Fig. 16.

  Attributes:
    images: (n, H, W, C) test images.
    recon: (n, H, W, C) their ClaDec reconstructions.
    occluded: (n, K, H, W, C) every occluded version.
    recon_occluded: (n, K, H, W, C) their reconstructions.
    i_min, i_max: (n,) the least / most relevant square by ClaDec relevance.
  """
  images: np.ndarray
  recon: np.ndarray
  occluded: np.ndarray
  recon_occluded: np.ndarray
  i_min: np.ndarray
  i_max: np.ndarray


@dataclasses.dataclass(frozen=True)
class OcclusionResult:
  """One layer's occlusion trials, one dict per seed with `OCCLUSION_KEYS`.

  `cladec` is empty (and `example` None) when the layer's ClaDec stage is
  missing. `gradcam_layer` is the tap GradCAM ran at: the layer itself, or the
  last tap with spatial extent below it (a layer without one always ties).
  """
  label: str
  shape: tuple[int, ...]
  cladec: tuple[Mapping[str, float], ...]
  gradcam: tuple[Mapping[str, float], ...]
  example: OcclusionExample | None = None
  gradcam_layer: str = ""


def occlusion_row(result: OcclusionResult, num_classes: int = 0,
                  found: list[health.Finding] | None = None) -> dict[str, Any]:
  """Mean and std over seeds of the accuracies with the most / least relevant square occluded.

  With `num_classes`, the accuracies with the least relevant square occluded
  (the classifier's accuracy nearly intact) are checked against chance.
  """
  row: dict[str, Any] = {"layer": result.label}
  for prefix, trials in (("cladec", result.cladec), ("gradcam", result.gradcam)):
    for key in OCCLUSION_KEYS:
      row[f"{prefix}_{key}"], row[f"{prefix}_{key}_std"] = mean_std([t[key] for t in trials])
  row["spatial"] = "x".join(map(str, result.shape))
  row["gradcam_layer"] = result.gradcam_layer
  if num_classes:
    row["chance"] = 1.0 / num_classes
    checks = {f"{p}_acc_min": health.accuracy_health([t["acc_min"] for t in trials], num_classes)
              for p, trials in (("cladec", result.cladec), ("gradcam", result.gradcam))}
    row = health.mark_row("occlusion", result.label, row, checks, found)
  return row


def occlusion_table(results: Sequence[OcclusionResult], n_images: int, num_classes: int,
                    info: RunInfo) -> Table:
  """Tables 7/8: one row per layer."""
  occ, found = info.config.occlusion, []
  moved = [f"{r.label} -> {r.gradcam_layer}" for r in results
           if r.gradcam_layer and not r.label.endswith(f"({r.gradcam_layer})")
           and r.label != r.gradcam_layer]
  return Table(
      "occlusion", [occlusion_row(r, num_classes, found) for r in results],
      columns=OCCLUSION_COLUMNS, findings=tuple(found),
      title="accuracy with the most / least relevant square occluded (Tables 7/8)",
      notes=notes(info, epochs_of=("decoder",)) + [
          f"{n_images} test images; 16 squares of {occ.size}x{occ.size} at corners "
          f"{tuple(occ.corners)}^2 filled with the training mean",
          "ClaDec relevance = sum over the square of the squared change of the ClaDec "
          "reconstruction; GradCAM relevance = sum over the square of the GradCAM map "
          "(target = the predicted class, bilinear upsampling, normalised to [0, 1])",
          "gradcam_layer: GradCAM runs at the layer if it has spatial extent, else at the last "
          "tap with spatial extent below it (a map without extent ties every square, so its "
          "delta would be 0 by construction)" + (f"; moved here: {', '.join(moved)}"
                                                 if moved else ""),
          "ties broken at random with one priority per image and square shared by min and "
          "max (so an all-tie map gives delta 0); seeds: ClaDec decoder seeds and tie-break "
          "draws",
          "delta_acc = acc_min - acc_max (accuracy with the least minus the most relevant "
          "square occluded)",
          f"chance = 1 / classes; status 'chance' = an acc_min within {health.CHANCE_MARGIN:g} "
          "of it"])


# ---------------------------------------------------------------------------
# All tables of one evaluation
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Results:
  """Everything the ClaDec program computes for its tables and figures.

  Attributes:
    layers: Tables 2/3, in the configured layer order.
    alpha: Tables 4/5, {alpha: reconstructions with logits}; empty: no sweep.
    alpha_label: the alpha sweep's layer, as shown.
    epochs: Table 6 per classifier; empty: no Table 6.
    epochs_refae: RefAE at Table 6's layer.
    epochs_label: Table 6's layer, as shown.
    subsets: per neuron subset; empty: none.
    subset_label: the subset layer, as shown.
    occlusion: Tables 7/8 per layer; empty: no occlusion study.
    occlusion_images: how many test images the occlusion study used.
    predictions: (N,) the explained classifier's predictions on the test set.
    mean_image: (H, W, C) float32 the training-mean image (a trivial decoder).
    num_classes: the data set's classes (chance = 1 / num_classes).
  """
  layers: tuple[LayerResult, ...]
  alpha: Mapping[float, Recons | None]
  alpha_label: str
  epochs: tuple[EpochsResult, ...]
  epochs_refae: Recons | None
  epochs_label: str
  subsets: tuple[SubsetResult, ...]
  subset_label: str
  occlusion: tuple[OcclusionResult, ...]
  occlusion_images: int
  predictions: np.ndarray
  mean_image: np.ndarray
  num_classes: int


def tables(results: Results, x_test: np.ndarray, labels: np.ndarray,
           info: RunInfo) -> list[Table]:
  """Every table the results hold, in the order the program writes them."""
  ref = reference(x_test, results.mean_image, results.num_classes, info.config.rec_reduction)
  out = [layers_table(results.layers, ref, info)]
  if results.alpha:
    out.append(alpha_table(results.alpha, results.alpha_label, labels, ref, info))
  if results.epochs:
    out.append(epochs_table(results.epochs, results.epochs_refae, results.epochs_label, ref,
                            info))
  if results.subsets:
    out.append(subsets_table(results.subsets, results.subset_label, ref, info))
  if results.occlusion:
    out.append(occlusion_table(results.occlusion, results.occlusion_images,
                               results.num_classes, info))
  return out


def summary(program: str, written: Sequence[Table]) -> Table:
  """The run summary: every table's health problems, one row each (`health.summary_rows`)."""
  found = [f for t in written for f in t.findings]
  return Table("summary", health.summary_rows(found), title=health.summary_title(program, found),
               notes=health.summary_notes() + [f"tables checked: {[t.name for t in written]}"],
               columns=health.SUMMARY_COLUMNS, findings=tuple(found))
