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

Nothing here runs a model or touches a file. Means and standard deviations are
over seeds, ignoring NaN (a missing stage or evaluation classifier).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import ml_collections
import numpy as np

from jaxconcepts.methods import cladec

LAYER_COLUMNS = ("layer", "shape", "rec_cladec", "rec_cladec_std", "rec_refae", "rec_refae_std",
                 "delta_rec", "acc_eval_cladec", "acc_eval_cladec_std", "acc_eval_refae",
                 "acc_eval_refae_std", "delta_acc")
ALPHA_COLUMNS = ("alpha", "total_loss", "total_loss_std", "rec_loss", "rec_loss_std",
                 "classifier_loss", "classifier_loss_std", "acc_eval_cladec",
                 "acc_eval_cladec_std", "acc_classifier_on_recon",
                 "acc_classifier_on_recon_std")
EPOCHS_COLUMNS = ("classifier_epochs", "classifier_accuracy", "rec_cladec", "rec_cladec_std",
                  "rec_refae", "rec_refae_std", "delta_rec", "acc_eval_cladec",
                  "acc_eval_cladec_std", "acc_eval_refae", "acc_eval_refae_std", "delta_acc")
OCCLUSION_COLUMNS = ("layer", "spatial", "cladec_acc_max", "cladec_acc_max_std",
                     "cladec_acc_min", "cladec_acc_min_std", "cladec_delta_acc",
                     "gradcam_acc_max", "gradcam_acc_max_std", "gradcam_acc_min",
                     "gradcam_acc_min_std", "gradcam_delta_acc")
OCCLUSION_KEYS = ("acc_max", "acc_min", "delta_acc")


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
  """One table as `report.write_table` takes it (`name` is the file stem)."""
  name: str
  rows: list[dict[str, Any]]
  title: str
  notes: list[str]
  columns: tuple[str, ...] | None = None


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


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """(mean, population std) over the values that are not NaN; (NaN, NaN) if none."""
  v = np.asarray([x for x in values if not np.isnan(x)], np.float64)
  if v.size == 0:
    return float("nan"), float("nan")
  return float(v.mean()), float(v.std())


def _recs(recons: Recons | None, x_test: np.ndarray, rec_reduction: str) -> list[float]:
  """Mean rec loss on the test set per seed ([] for a missing stage)."""
  if recons is None:
    return []
  return [cladec.reconstruction_metrics(x, x_test, rec_reduction=rec_reduction)["rec"]
          for x in recons.images]


def _accs(recons: Recons | None) -> list[float]:
  return [] if recons is None else list(recons.eval_accuracy)


def notes(info: RunInfo, epochs_of: Sequence[str] = ("decoder", "refae", "eval")) -> list[str]:
  """The settings behind a table: rec reduction, epochs, seeds, data, classifier."""
  c = info.config
  ep = {"decoder": f"ClaDec decoders {c.decoder_epochs} epochs",
        "refae": f"RefAE {c.refae_epochs} epochs",
        "eval": f"evaluation classifiers {c.eval_classifier.num_epochs} epochs"}
  rec = ("squared error summed over the pixels of an image, the paper's"
         if c.rec_reduction == "sum" else "squared error averaged over pixels, the authors' code")
  return [
      f"rec reduction: {c.rec_reduction} ({rec}), mean over the test images",
      "epochs: " + ", ".join(ep[k] for k in epochs_of)
      + f"; batch {c.batch_size}; decoder '{c.decoder.variant}' (kernel {info.kernel_size})",
      f"seeds: {list(info.seeds)} (mean and std over seeds)",
      f"data: {info.dataset} ({c.data.source}), {info.num_train} train / "
      f"{info.num_test} test images, {info.image_shape}",
      f"classifier: {c.arch} from {info.classifier_workdir} (step {info.classifier_step})",
  ] + list(info.warnings)


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


def layer_row(result: LayerResult, x_test: np.ndarray, rec_reduction: str) -> dict[str, Any]:
  """Rec loss and evaluation accuracy of ClaDec and RefAE at one layer, and the deltas."""
  recs_c, recs_r = (_recs(r, x_test, rec_reduction) for r in (result.cladec, result.refae))
  accs_c, accs_r = _accs(result.cladec), _accs(result.refae)
  rc, rc_s = mean_std(recs_c)
  rr, rr_s = mean_std(recs_r)
  ac, ac_s = mean_std(accs_c)
  ar, ar_s = mean_std(accs_r)
  return {"layer": result.label, "shape": "x".join(map(str, result.shape)),
          "rec_cladec": rc, "rec_cladec_std": rc_s, "rec_refae": rr, "rec_refae_std": rr_s,
          "delta_rec": rc - rr, "acc_eval_cladec": ac, "acc_eval_cladec_std": ac_s,
          "acc_eval_refae": ar, "acc_eval_refae_std": ar_s, "delta_acc": ac - ar,
          "per_seed": {"rec_cladec": recs_c, "rec_refae": recs_r,
                       "acc_eval_cladec": accs_c, "acc_eval_refae": accs_r}}


def layers_table(results: Sequence[LayerResult], x_test: np.ndarray, info: RunInfo) -> Table:
  """Tables 2/3: ClaDec vs RefAE per layer."""
  c = info.config
  rows = [layer_row(r, x_test, c.rec_reduction) for r in results]
  return Table(
      "cladec_layers", rows, columns=LAYER_COLUMNS,
      title=f"ClaDec vs RefAE per layer (Tables 2/3), {c.arch} on {info.dataset}, "
            f"alpha={c.alpha:g}",
      notes=notes(info) + [
          "delta_rec = rec_cladec - rec_refae; delta_acc = acc_eval_cladec - acc_eval_refae; "
          "acc_eval_* = accuracy on reconstructions of the test set of a classifier (same "
          "architecture) trained on reconstructions of the training set"])


# ---------------------------------------------------------------------------
# Tables 4/5: the alpha trade-off
# ---------------------------------------------------------------------------

def alpha_row(alpha: float, recons: Recons | None, x_test: np.ndarray, labels: np.ndarray,
              rec_reduction: str) -> dict[str, Any]:
  """Eq. 1's parts on the test set at one alpha, and the evaluation accuracy."""
  vals = {k: [] for k in ("total", "rec", "ce", "acc_c", "acc_eval")}
  if recons is not None:
    for x, logits, acc in zip(recons.images, recons.logits, recons.eval_accuracy):
      m = cladec.reconstruction_metrics(x, x_test, logits=logits, labels=labels, alpha=alpha,
                                        rec_reduction=rec_reduction)
      for key, value in (("total", m["total"]), ("rec", m["rec"]), ("ce", m["ce"]),
                         ("acc_c", m["accuracy"]), ("acc_eval", acc)):
        vals[key].append(value)
  row = {"alpha": alpha}
  for key, label in (("total", "total_loss"), ("rec", "rec_loss"), ("ce", "classifier_loss"),
                     ("acc_eval", "acc_eval_cladec"), ("acc_c", "acc_classifier_on_recon")):
    row[label], row[label + "_std"] = mean_std(vals[key])
  row["per_seed"] = vals
  return row


def alpha_table(results: Mapping[float, Recons | None], layer_label: str, x_test: np.ndarray,
                labels: np.ndarray, info: RunInfo) -> Table:
  """Tables 4/5: one row per alpha, largest first."""
  rec = info.config.rec_reduction
  rows = [alpha_row(a, results[a], x_test, labels, rec) for a in sorted(results, reverse=True)]
  return Table(
      "cladec_alpha", rows, columns=ALPHA_COLUMNS,
      title=f"alpha trade-off at {layer_label} (Tables 4/5)",
      notes=notes(info, epochs_of=("decoder", "eval")) + [
          "total_loss = (1 - alpha) rec_loss + alpha classifier_loss (Eq. 1) on the test "
          "set; classifier_loss = CE of the explained classifier on the reconstructions; "
          "acc_classifier_on_recon = its accuracy on them"])


# ---------------------------------------------------------------------------
# Table 6: classifiers trained for 0, 1, ... epochs
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EpochsResult:
  """ClaDec for one classifier snapshot (None: snapshot or decoder missing)."""
  epochs: int
  classifier_accuracy: float
  cladec: Recons | None


def epochs_table(results: Sequence[EpochsResult], refae: Recons | None, layer_label: str,
                 x_test: np.ndarray, info: RunInfo) -> Table:
  """Table 6: one row per snapshot; the RefAE columns are the same RefAE in every row."""
  c = info.config
  rr, rr_s = mean_std(_recs(refae, x_test, c.rec_reduction))
  ar, ar_s = mean_std(_accs(refae))
  rows = []
  for r in sorted(results, key=lambda r: r.epochs):
    rc, rc_s = mean_std(_recs(r.cladec, x_test, c.rec_reduction))
    ac, ac_s = mean_std(_accs(r.cladec))
    rows.append({"classifier_epochs": r.epochs, "classifier_accuracy": r.classifier_accuracy,
                 "rec_cladec": rc, "rec_cladec_std": rc_s, "rec_refae": rr,
                 "rec_refae_std": rr_s, "delta_rec": rc - rr, "acc_eval_cladec": ac,
                 "acc_eval_cladec_std": ac_s, "acc_eval_refae": ar, "acc_eval_refae_std": ar_s,
                 "delta_acc": ac - ar})
  epochs = [r.epochs for r in results]
  return Table(
      "cladec_training_epochs", rows, columns=EPOCHS_COLUMNS,
      title=f"impact of classifier training (Table 6) at {layer_label}",
      notes=notes(info) + [
          f"classifier snapshots of one run ({c.classifier.optimizer.name}, schedule over "
          f"{max(epochs)} epochs) after each number of epochs; 0 = untrained",
          "RefAE does not depend on the classifier: its columns are the same RefAE for all "
          "rows"])


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


def subsets_table(results: Sequence[SubsetResult], layer_label: str, x_test: np.ndarray,
                  info: RunInfo) -> Table:
  """Rec loss of decoders that see only a run of channels, in the configured order."""
  rows = []
  for r in results:
    m, s = mean_std(_recs(r.cladec, x_test, info.config.rec_reduction))
    rows.append({"kind": r.kind, "neurons": f"{r.start}-{r.stop - 1}",
                 "n_neurons": r.stop - r.start, "rec_cladec": m, "rec_cladec_std": s})
  return Table(
      "cladec_subsets", rows,
      title=f"ClaDec from neuron subsets of {layer_label} (Figs. 13/14)",
      notes=notes(info, epochs_of=("decoder",)) + [
          "neurons = channel index range (a run of consecutive channels at every position)"])


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

  `cladec` is empty (and `example` None) when the layer's ClaDec stage is missing.
  """
  label: str
  shape: tuple[int, ...]
  cladec: tuple[Mapping[str, float], ...]
  gradcam: tuple[Mapping[str, float], ...]
  example: OcclusionExample | None = None


def occlusion_row(result: OcclusionResult) -> dict[str, Any]:
  """Mean and std over seeds of the accuracies with the most / least relevant square occluded."""
  row: dict[str, Any] = {"layer": result.label}
  for prefix, trials in (("cladec", result.cladec), ("gradcam", result.gradcam)):
    for key in OCCLUSION_KEYS:
      row[f"{prefix}_{key}"], row[f"{prefix}_{key}_std"] = mean_std([t[key] for t in trials])
  row["spatial"] = "x".join(map(str, result.shape))
  return row


def occlusion_table(results: Sequence[OcclusionResult], n_images: int,
                    info: RunInfo) -> Table:
  """Tables 7/8: one row per layer."""
  occ = info.config.occlusion
  return Table(
      "occlusion", [occlusion_row(r) for r in results], columns=OCCLUSION_COLUMNS,
      title="accuracy with the most / least relevant square occluded (Tables 7/8)",
      notes=notes(info, epochs_of=("decoder",)) + [
          f"{n_images} test images; 16 squares of {occ.size}x{occ.size} at corners "
          f"{tuple(occ.corners)}^2 filled with the training mean",
          "ClaDec relevance = sum over the square of the squared change of the ClaDec "
          "reconstruction; GradCAM relevance = sum over the square of the GradCAM map "
          "(target = the predicted class, bilinear upsampling, normalised to [0, 1]); a layer "
          "without spatial extent gives a constant map (all squares tie)",
          "ties broken at random with one priority per image and square shared by min and "
          "max (so an all-tie map gives delta 0); seeds: ClaDec decoder seeds and tie-break "
          "draws",
          "delta_acc = acc_min - acc_max (accuracy with the least minus the most relevant "
          "square occluded)"])


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
    epochs: Table 6 per snapshot; empty: no Table 6.
    epochs_refae: RefAE at Table 6's layer.
    epochs_label: Table 6's layer, as shown.
    subsets: per neuron subset; empty: none.
    subset_label: the subset layer, as shown.
    occlusion: Tables 7/8 per layer; empty: no occlusion study.
    occlusion_images: how many test images the occlusion study used.
    predictions: (N,) the explained classifier's predictions on the test set.
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


def tables(results: Results, x_test: np.ndarray, labels: np.ndarray,
           info: RunInfo) -> list[Table]:
  """Every table the results hold, in the order the program writes them."""
  out = [layers_table(results.layers, x_test, info)]
  if results.alpha:
    out.append(alpha_table(results.alpha, results.alpha_label, x_test, labels, info))
  if results.epochs:
    out.append(epochs_table(results.epochs, results.epochs_refae, results.epochs_label, x_test,
                            info))
  if results.subsets:
    out.append(subsets_table(results.subsets, results.subset_label, x_test, info))
  if results.occlusion:
    out.append(occlusion_table(results.occlusion, results.occlusion_images, info))
  return out
