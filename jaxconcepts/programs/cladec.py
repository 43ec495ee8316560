"""The ClaDec paper end to end: `train(config, workdir)` and `evaluate(config, workdir)`.

`train.py --config=configs/cladec.py` (task "cladec") runs these stages, each
its own `trainer.fit` run under `workdir/checkpoints/<stage>`, so an
interrupted run resumes where it stopped and finished stages are skipped:

1. the classifier to explain: restored from `config.classifier_workdir`, or
   trained here (`classifier`, with `workdir/config.json` as `train.py
   --config=configs/classifier.py` writes it);
2. the alpha sweep at `config.alpha_layer`: every alpha and seed as one
   program in one run (`cladec_<layer>_grid_a<alphas>_s<seeds>`, see
   `programs/cladec_grid.py`), each alpha then saved as its own stage
   (`cladec_<layer>_a<alpha>_s<seeds>`); first, so that stage 3's decoder at
   that layer, when `config.alpha` is one of the alphas, is already done;
3. per layer in `config.layers`: ClaDec's decoder at `config.alpha`
   (`cladec_<layer>_a<alpha>_s<seeds>`) and RefAE (`refae_<layer>_s<seeds>`),
   all seeds of a stage trained together (`vmap` over PRNG keys);
4. evaluation classifiers (the classifier's architecture, `config.eval_classifier`)
   trained on ClaDec's and RefAE's reconstructions of the training set, one per
   seed, the seeds of each kind as one program in one run
   (`eval_<kind>_<layer>..._seeds<seeds>`), each saved as its own stage
   (`eval_cladec_<layer>_a<alpha>_s<seed>`, `eval_refae_<layer>_s<seed>`);
   `evaluate` tests them on the reconstructions of the test set;
5. neuron subsets at `config.subsets.layer`: nested and disjoint runs of
   channels (`cladec_<layer>_a<alpha>_n<first>-<last>_...`);
6. Table 6: a classifier per entry of `config.classifier_epochs` (0 =
   untrained), each its own run with its own schedule (`clf_run<E>`; or, with
   `classifier_epochs_runs="snapshots"`, snapshots of one run `clf_sweep`), a
   ClaDec decoder and an evaluation classifier each at
   `config.classifier_epochs_layer` (RefAE's columns reuse stage 2).

`evaluate.py` restores all of it and flows one way: compute (reconstructions,
logits, occlusion trials: `evaluators.cladec.Results`), then evaluators (rows,
`evaluators/cladec.py`; image grids, `evaluators/cladec_figures.py`), then
report (files). It writes under `workdir/results` the tables `cladec_layers`
(Tables 2/3), `cladec_alpha` (4/5), `cladec_training_epochs` (6),
`cladec_subsets`, `occlusion` (7/8), each `.json` + `.md` with the rec
reduction, epochs and seeds that produced it and the health checks
(`evaluators.health`), the run `summary` of every collapsed, chance-level or
NaN result (also logged as WARNINGs at the end), and under `workdir/figures` the
PNGs `cladec_layers.png` / `cladec_layers_misclassified.png` (Figs. 6 / 7),
`cladec_alpha.png` (11), `cladec_training_epochs.png` (12),
`cladec_subsets_nested.png` / `_disjoint.png` (13 / 14), `occlusion.png` (16).

Every configuration error (`cladec_plan.prepare`: bad alpha, layer, neuron
subset, classifier checkpoint, decoder, occlusion squares) comes before training.

Weights are traced arguments of module-level jitted functions: all classifiers
of an architecture share one compilation per shape; stages of the same shapes
share one decoder and optimizer (`Plan.decoders`, `Plan.decoder_opt`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable, Mapping

from absl import logging
import jax
import ml_collections
import numpy as np

from jaxconcepts import data as data_lib
from jaxconcepts import report
from jaxconcepts import utils
from jaxconcepts.evaluators import cladec as tables
from jaxconcepts.evaluators import cladec_figures as figures
from jaxconcepts.evaluators import cladec_parts
from jaxconcepts.evaluators import health
from jaxconcepts.methods import cladec
from jaxconcepts.methods import occlusion as occ
from jaxconcepts.models import classifiers as models
from jaxconcepts.models import decoders
from jaxconcepts.models import split as split_lib
from jaxconcepts.programs import classifier as classifier_lib
from jaxconcepts.programs import cladec_grid
from jaxconcepts.programs import cladec_plan
from jaxconcepts.programs.cladec_plan import (  # pylint: disable=unused-import (the entry points)
    STAGES_FILE, Plan, check_classifier_workdir, cladec_stage, classifier_config, eval_stage,
    prepare, refae_stage, validate_config)
from jaxconcepts.train import checkpoints
from jaxconcepts.train import distributed
from jaxconcepts.train import trainer as training

RESULTS_DIR = report.RESULTS_DIR
FIGURES_DIR = report.FIGURES_DIR
CONFIG_FILE = "cladec_config.json"


@dataclasses.dataclass(frozen=True)
class Classifier:
  """The explained classifier: its variables and where they came from."""
  variables: Any
  info: Mapping[str, Any]


# ---------------------------------------------------------------------------
# Models: the classifier's logits and codes, decoders, RefAE
# ---------------------------------------------------------------------------

def _logits(plan: Plan, variables: Any, images: np.ndarray) -> np.ndarray:
  return split_lib.predict_logits(plan.model, variables, images, plan.config.eval_batch_size)


def _predict(plan: Plan, variables: Any, images: np.ndarray) -> np.ndarray:
  return _logits(plan, variables, images).argmax(-1)


def _refae(plan: Plan, layer: str) -> cladec.RefAE:
  encoder = models.create_model(plan.config.arch, plan.dataset.num_classes)
  return cladec.RefAE(encoder=encoder, layer=layer,
                      decoder=plan.decoders[plan.layer_shapes[layer]])


def _code_shape(plan: Plan, layer: str, neurons: tuple[int, int] | None) -> tuple[int, ...]:
  shape = plan.layer_shapes[layer]
  return shape if neurons is None else shape[:-1] + (neurons[1] - neurons[0],)


Reconstruct = Callable[[int, np.ndarray], np.ndarray]  # (seed index, images) -> images


def _cladec_reconstructor(plan: Plan, variables: Any, layer: str, alpha: float, *,
                          neurons=None, clf_epochs=None) -> Reconstruct | None:
  """Reconstructions by a trained ClaDec stage (None, with a warning, if it is missing)."""
  name = cladec_stage(layer, alpha, plan.seed_tag, neurons, clf_epochs)
  shape = _code_shape(plan, layer, neurons)
  decoder = plan.decoders[shape]
  state = jax.eval_shape(lambda: cladec.init_decoder_seeds(decoder, shape, plan.decoder_opt[0],
                                                           plan.seeds))
  restored = checkpoints.restore_latest(checkpoints.stage_dir(plan.workdir, name), state)
  if restored is None:
    logging.warning("cladec: stage %s is missing (run train.py)", name)
    return None
  s, params = split_lib.Split(plan.model, layer), restored[0].params
  return lambda i, x: cladec.reconstruct(s, variables, decoder, cladec.seed_slice(params, i), x,
                                         plan.config.eval_batch_size, neurons)


def _refae_reconstructor(plan: Plan, layer: str) -> Reconstruct | None:
  """Reconstructions by a trained RefAE stage (None, with a warning, if it is missing)."""
  name = refae_stage(layer, plan.seed_tag)
  refae = _refae(plan, layer)
  state = jax.eval_shape(lambda: cladec.init_refae_seeds(refae, plan.image_shape,
                                                         plan.refae_opt[0], plan.seeds))
  restored = checkpoints.restore_latest(checkpoints.stage_dir(plan.workdir, name), state)
  if restored is None:
    logging.warning("cladec: stage %s is missing (run train.py)", name)
    return None
  variables = {"params": restored[0].params, "batch_stats": restored[0].batch_stats}
  return lambda i, x: cladec.refae_reconstruct(refae, cladec.seed_slice(variables, i), x,
                                               plan.config.eval_batch_size)


# ---------------------------------------------------------------------------
# Train stages
# ---------------------------------------------------------------------------

def _classifier_stage(plan: Plan) -> Classifier:
  """Stage 1: restores the classifier from classifier_workdir or trains it in workdir."""
  c, ds = plan.config, plan.dataset
  if c.classifier_workdir:
    _, variables, _, info = classifier_lib.restore_classifier(c.classifier_workdir)
    logging.info("cladec: explaining the classifier in %s (step %d)", c.classifier_workdir,
                 info["step"])
    return Classifier(variables, {**info, "workdir": c.classifier_workdir})
  cfg = classifier_config(plan, c.classifier.num_epochs, int(c.classifier.seed))
  classifier_lib.save_config(cfg, plan.workdir, classifier_lib.dataset_info(c.arch, ds))
  t0 = time.time()
  _, result = classifier_lib.train_classifier(cfg, plan.workdir, name="classifier", dataset=ds)
  cladec_plan.record_stage(plan, "classifier", time.time() - t0, images=ds.num_train,
                           epochs=cfg.num_epochs)
  state = jax.device_get(result.state)
  return Classifier({"params": state.params, "batch_stats": state.batch_stats},
                    {"workdir": plan.workdir, "step": int(state.step)})


def _train_cladec(plan: Plan, variables: Any, layer: str, alpha: float, *, neurons=None,
                  clf_epochs=None) -> str:
  """Trains (or resumes / skips) one ClaDec stage for all seeds; returns its name."""
  c, ds = plan.config, plan.dataset
  name = cladec_stage(layer, alpha, plan.seed_tag, neurons, clf_epochs)
  epochs = int(c.decoder_epochs)
  if cladec_plan.is_done(plan, name, epochs, c.batch_size):
    return name
  t0 = time.time()
  code_shape, data = cladec_plan.decoder_data(plan, variables, layer, neurons)
  decoder = plan.decoders[code_shape]
  tx, lr_fn = plan.decoder_opt
  state = cladec.init_decoder_seeds(decoder, code_shape, tx, plan.seeds)
  step = cladec.make_cladec_step(decoder, plan.model, plan.image_shape, code_shape, alpha,
                                 c.rec_reduction)
  logging.info("cladec: %s (code %s, %d seeds, %d epochs)", name, code_shape, len(plan.seeds),
               epochs)
  training.fit(name=name, workdir=plan.workdir, state=state, train_step=step,
               step_args=(variables, data), images=cladec.seed_orders(ds.num_train, plan.seeds),
               labels=ds.train_labels, cfg=cladec_plan.loop_config(plan, epochs), lr_fn=lr_fn)
  cladec_plan.record_stage(plan, name, time.time() - t0, images=ds.num_train, epochs=epochs,
                           seeds=len(plan.seeds))
  return name


def _train_refae(plan: Plan, layer: str) -> str:
  """Trains (or resumes / skips) the RefAE of one layer for all seeds; returns its name."""
  c, ds = plan.config, plan.dataset
  name = refae_stage(layer, plan.seed_tag)
  epochs = int(c.refae_epochs)
  if cladec_plan.is_done(plan, name, epochs, c.batch_size):
    return name
  t0 = time.time()
  refae = _refae(plan, layer)
  tx, lr_fn = plan.refae_opt
  state = cladec.init_refae_seeds(refae, plan.image_shape, tx, plan.seeds)
  logging.info("cladec: %s (%d seeds, %d epochs)", name, len(plan.seeds), epochs)
  training.fit(name=name, workdir=plan.workdir, state=state,
               train_step=cladec.make_refae_step(refae, c.rec_reduction),
               step_args=((ds.train_images, ds.train_labels),),
               images=cladec.seed_orders(ds.num_train, plan.seeds), labels=ds.train_labels,
               cfg=cladec_plan.loop_config(plan, epochs), lr_fn=lr_fn)
  cladec_plan.record_stage(plan, name, time.time() - t0, images=ds.num_train, epochs=epochs,
                           seeds=len(plan.seeds))
  return name


def _train_eval_classifiers(plan: Plan, clf: Classifier) -> None:
  """Stage 4: evaluation classifiers for every layer (ClaDec, RefAE) and every alpha, the
  seeds of each kind trained together (`cladec_grid.train_eval_classifiers`)."""
  alpha, train_eval = plan.config.alpha, cladec_grid.train_eval_classifiers
  for layer in plan.layers:
    train_eval(plan, "cladec", layer, functools.partial(
        _cladec_reconstructor, plan, clf.variables, layer, alpha), alpha)
    train_eval(plan, "refae", layer, functools.partial(_refae_reconstructor, plan, layer))
  for a in plan.alphas:
    train_eval(plan, "cladec", plan.alpha_layer, functools.partial(
        _cladec_reconstructor, plan, clf.variables, plan.alpha_layer, a), a)


def _sweep_run(plan: Plan, epochs: int) -> tuple[str, ml_collections.ConfigDict]:
  """Table 6's classifier for `epochs`: (run name, config).

  `classifier_epochs_runs` "own" (the default): a run of its own over `epochs`
  epochs with its own learning-rate schedule (issue 16, fix 9); "snapshots":
  one run over the largest number, snapshotted (each snapshot mid-schedule).
  """
  seed, epochs_of = int(plan.config.classifier.seed), plan.sweep_epochs
  if plan.config.classifier_epochs_runs == "snapshots":
    return "clf_sweep", classifier_config(plan, max(max(epochs_of), 1), seed)
  return f"clf_run{epochs}", classifier_config(plan, max(epochs, 1), seed)


def _snapshot_variables(plan: Plan, epochs: int) -> Any | None:
  """The Table 6 classifier's variables after `epochs` epochs, or None if missing."""
  name, cfg = _sweep_run(plan, epochs)
  return classifier_lib.restore_variables(
      classifier_lib.snapshot_dir(plan.workdir, name, epochs), plan.model, cfg,
      plan.image_shape, plan.dataset.num_train, snapshot=True)


def _train_sweep_classifiers(plan: Plan) -> None:
  """Table 6's classifiers: own runs or snapshots of one (see `_sweep_run`)."""
  runs = {}
  for e in plan.sweep_epochs:
    name, cfg = _sweep_run(plan, e)
    runs.setdefault(name, (cfg, []))[1].append(e)
  for name, (cfg, epochs) in runs.items():
    made = classifier_lib.train_snapshots(cfg, plan.workdir, plan.dataset, epochs, name=name)
    for e, seconds in made.items():
      cladec_plan.record_stage(plan, f"{name}_e{e}", seconds, images=plan.dataset.num_train,
                               epochs=e)


def _train_epochs_sweep(plan: Plan) -> list[str]:
  """Stage 6 (Table 6): snapshots, then a ClaDec decoder and evaluation classifiers each."""
  layer, alpha = plan.sweep_layer, plan.config.alpha
  stages = []
  if layer not in plan.layers:
    stages.append(_train_refae(plan, layer))
    cladec_grid.train_eval_classifiers(plan, "refae", layer,
                                       functools.partial(_refae_reconstructor, plan, layer))
  _train_sweep_classifiers(plan)
  for e in sorted(plan.sweep_epochs):
    variables = _snapshot_variables(plan, e)
    stages.append(_train_cladec(plan, variables, layer, alpha, clf_epochs=e))
    cla = functools.partial(_cladec_reconstructor, plan, variables, layer, alpha, clf_epochs=e)
    cladec_grid.train_eval_classifiers(plan, "cladec", layer, cla, alpha, clf_epochs=e)
  return stages


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """`train.py` entry for task "cladec": every stage, resumable (see module doc).

  Returns:
    {"stages": the names trained or found done, "wall_s"}.
  """
  t_start = time.time()
  plan = prepare(config, workdir)
  os.makedirs(workdir, exist_ok=True)
  training.enable_compilation_cache(config.compilation_cache_dir, workdir)
  if distributed.is_main_process():  # the others share the workdir
    utils.write_json_atomic(os.path.join(workdir, CONFIG_FILE),
                            json.loads(config.to_json_best_effort()))
  c = plan.config
  logging.info("cladec: %s on %s (%d train / %d test), layers %s, seeds %s, alpha %g, "
               "rec %s, decoder %s", c.arch, plan.dataset.name, plan.dataset.num_train,
               plan.dataset.num_test, list(plan.layers), list(plan.seeds), c.alpha,
               c.rec_reduction, c.decoder.variant)
  clf = _classifier_stage(plan)
  # The alpha grid first: it holds the layer table's stage at alpha_layer when c.alpha is
  # one of plan.alphas, so that stage is done below instead of trained on its own.
  stages = cladec_grid.train_alpha_grid(plan, clf.variables) if plan.alphas else []
  for layer in plan.layers:  # decoders first: the rec-loss columns need nothing else
    stages.append(_train_cladec(plan, clf.variables, layer, c.alpha))
    stages.append(_train_refae(plan, layer))
  _train_eval_classifiers(plan, clf)
  stages += [_train_cladec(plan, clf.variables, plan.subset_layer, c.alpha, neurons=(s, e))
             for _, s, e in plan.subsets]
  if plan.sweep_epochs:
    stages += _train_epochs_sweep(plan)
  wall = time.time() - t_start
  logging.info("cladec: training done in %.0f s", wall)
  return {"stages": stages, "wall_s": wall}


# ---------------------------------------------------------------------------
# Evaluate stages: compute results
# ---------------------------------------------------------------------------

def _restore_classifier_for_eval(plan: Plan) -> Classifier:
  clf_dir = plan.config.classifier_workdir or plan.workdir
  if not plan.config.classifier_workdir:
    check_classifier_workdir(plan.workdir)
  _, variables, _, info = classifier_lib.restore_classifier(clf_dir)
  return Classifier(variables, {**info, "workdir": clf_dir})


def _eval_accuracy(plan: Plan, name: str, seed: int, recon_test: np.ndarray) -> float:
  """Test accuracy of a trained evaluation classifier on reconstructions (nan if missing)."""
  ec = plan.config.eval_classifier
  if int(ec.num_epochs) == 0:
    return float("nan")
  variables = classifier_lib.restore_variables(
      checkpoints.stage_dir(plan.workdir, name), plan.model,
      classifier_config(plan, ec.num_epochs, seed, ec), plan.image_shape, plan.dataset.num_train)
  if variables is None:
    logging.warning("cladec: evaluation classifier %s is missing (run train.py)", name)
    return float("nan")
  preds = _predict(plan, variables, recon_test)
  return float((preds == plan.dataset.test_labels[:len(preds)]).mean())


def _test_recons(plan: Plan, reconstruct: Reconstruct | None,
                 eval_name: Callable[[int], str] | None = None) -> tables.Recons | None:
  """Every seed's test-set reconstructions and (given `eval_name`) evaluation accuracy."""
  if reconstruct is None:
    return None
  images, accs = [], []
  for i, seed in enumerate(plan.seeds):
    images.append(reconstruct(i, plan.dataset.test_images))
    if eval_name is not None:
      accs.append(_eval_accuracy(plan, eval_name(seed), seed, images[-1]))
  return tables.Recons(tuple(images), tuple(accs))


def _cladec_results(plan: Plan, variables: Any, layer: str, alpha: float,
                    eval_name: Callable[[int], str] | None, *, neurons=None,
                    clf_epochs=None) -> tables.Recons | None:
  return _test_recons(plan, _cladec_reconstructor(plan, variables, layer, alpha,
                                                  neurons=neurons, clf_epochs=clf_epochs),
                      eval_name)


def _refae_results(plan: Plan, layer: str) -> tables.Recons | None:
  return _test_recons(plan, _refae_reconstructor(plan, layer),
                      lambda seed: eval_stage("refae", layer, seed))


def _compute_layers(plan: Plan, clf: Classifier) -> tuple[tables.LayerResult, ...]:
  alpha = plan.config.alpha
  out = []
  for layer in plan.layers:
    logging.info("cladec: evaluate: layer table, %s", plan.label(layer))
    out.append(tables.LayerResult(
        plan.label(layer), plan.layer_shapes[layer],
        _cladec_results(plan, clf.variables, layer, alpha,
                        lambda seed, l=layer: eval_stage("cladec", l, seed, alpha)),
        _refae_results(plan, layer)))
  return tuple(out)


def _compute_alpha(plan: Plan, clf: Classifier, layers: Mapping[str, tables.LayerResult]
                   ) -> dict[float, tables.Recons | None]:
  """Reconstructions and the classifier's logits per alpha (reusing the layer table's)."""
  logging.info("cladec: evaluate: alpha table")
  layer, out = plan.alpha_layer, {}
  for a in plan.alphas:
    recons = layers[layer].cladec if a == plan.config.alpha and layer in layers else None
    if recons is None:
      recons = _cladec_results(plan, clf.variables, layer, a,
                               lambda seed, a=a: eval_stage("cladec", layer, seed, a))
    if recons is not None:
      logits = tuple(_logits(plan, clf.variables, x) for x in recons.images)
      recons = dataclasses.replace(recons, logits=logits)
    out[a] = recons
  return out


def _compute_epochs(plan: Plan, layers: Mapping[str, tables.LayerResult]
                    ) -> tuple[tuple[tables.EpochsResult, ...], tables.Recons | None]:
  """Table 6: per snapshot, its test accuracy and ClaDec; RefAE at the layer."""
  logging.info("cladec: evaluate: sweep table")
  layer, alpha, ds = plan.sweep_layer, plan.config.alpha, plan.dataset
  refae = layers[layer].refae if layer in layers else _refae_results(plan, layer)
  out = []
  for e in sorted(plan.sweep_epochs):
    variables = _snapshot_variables(plan, e)
    acc, recons = float("nan"), None
    if variables is not None:
      acc = float((_predict(plan, variables, ds.test_images) == ds.test_labels).mean())
      recons = _cladec_results(
          plan, variables, layer, alpha,
          lambda seed, e=e: eval_stage("cladec", layer, seed, alpha, clf_epochs=e),
          clf_epochs=e)
    out.append(tables.EpochsResult(e, acc, recons))
  return tuple(out), refae


def _compute_subsets(plan: Plan, clf: Classifier) -> tuple[tables.SubsetResult, ...]:
  logging.info("cladec: evaluate: subset table")
  return tuple(
      tables.SubsetResult(kind, start, stop, _cladec_results(
          plan, clf.variables, plan.subset_layer, plan.config.alpha, None,
          neurons=(start, stop)))
      for kind, start, stop in plan.subsets)


def _compute_occlusion(plan: Plan, clf: Classifier, n: int,
                       gradcam_fn: Callable | None) -> tuple[tables.OcclusionResult, ...]:
  """Tables 7/8 on the first `n` test images, per occlusion layer."""
  c, ds = plan.config, plan.dataset
  if n == 0 or not plan.occlusion_layers:
    return ()
  if gradcam_fn is None:
    from jaxconcepts.methods import attribution  # pylint: disable=g-import-not-at-top
    gradcam_fn = attribution.gradcam
  x, y = ds.test_images[:n], ds.test_labels[:n]
  masks = occ.square_masks(plan.image_shape[:2], c.occlusion.corners, c.occlusion.size)
  occluded = occ.occlude(x, masks, occ.training_fill(ds.train_images))
  preds = _predict(plan, clf.variables, x)
  out = []
  for layer in plan.occlusion_layers:
    logging.info("cladec: evaluate: occlusion, %s (%d images x %d squares)", plan.label(layer),
                 n, masks.shape[0])
    cam_layer = occ.gradcam_layer(plan.model.layer_names, plan.layer_shapes, layer)
    maps = occ.gradcam_pixel_maps(gradcam_fn, plan.model, clf.variables, x, preds, cam_layer,
                                  plan.layer_shapes[cam_layer], batch_size=c.occlusion.batch_size)
    study = occ.occlusion_study(
        lambda imgs: _predict(plan, clf.variables, imgs), x, y, occluded, masks,
        occ.map_relevance(maps, masks), plan.seeds,
        _cladec_reconstructor(plan, clf.variables, layer, c.alpha))
    example = None if study["example"] is None else tables.OcclusionExample(*study["example"])
    out.append(tables.OcclusionResult(plan.label(layer), plan.layer_shapes[layer],
                                      tuple(study["cladec"]), tuple(study["gradcam"]), example,
                                      plan.label(cam_layer)))
  return tuple(out)


def compute_results(plan: Plan, clf: Classifier,
                    gradcam_fn: Callable | None = None) -> tables.Results:
  """Evaluate's compute stage: every array the tables and figures need."""
  layers = _compute_layers(plan, clf)
  by_layer = {l: r for l, r in zip(plan.layers, layers)}
  alpha = _compute_alpha(plan, clf, by_layer) if plan.alphas else {}
  epochs, epochs_refae = _compute_epochs(plan, by_layer) if plan.sweep_epochs else ((), None)
  n_occ = min(int(plan.config.occlusion.n_images), plan.dataset.num_test)
  return tables.Results(
      layers=layers, alpha=alpha, alpha_label=plan.label(plan.alpha_layer), epochs=epochs,
      epochs_refae=epochs_refae, epochs_label=plan.label(plan.sweep_layer),
      subsets=_compute_subsets(plan, clf) if plan.subsets else (),
      subset_label=plan.label(plan.subset_layer),
      occlusion=_compute_occlusion(plan, clf, n_occ, gradcam_fn), occlusion_images=n_occ,
      predictions=_predict(plan, clf.variables, plan.dataset.test_images),
      mean_image=data_lib.mean_image(plan.dataset.train_images),
      num_classes=plan.dataset.num_classes)


# ---------------------------------------------------------------------------
# evaluate: results -> evaluators -> report
# ---------------------------------------------------------------------------

_OUTPUT_KEYS = {"cladec_layers": "layers", "cladec_alpha": "alpha",
                "cladec_training_epochs": "training_epochs", "cladec_subsets": "subsets",
                "occlusion": "occlusion", "summary": "summary",
                "cladec_planted_parts": "planted_parts"}


def _run_info(plan: Plan, clf: Classifier) -> tables.RunInfo:
  c, ds, d = plan.config, plan.dataset, plan.config.decoder
  return tables.RunInfo(
      config=c, dataset=ds.name, num_train=ds.num_train, num_test=ds.num_test,
      image_shape=plan.image_shape, seeds=plan.seeds, classifier_workdir=clf.info.get("workdir"),
      classifier_step=clf.info.get("step"), kernel_size=decoders.kernel_size(d.variant,
                                                                             d.kernel_size),
      warnings=tuple(cladec_plan.trained_config_notes(plan, CONFIG_FILE)))


def _write_tables(plan: Plan, results: tables.Results,
                  info: tables.RunInfo) -> tuple[dict[str, Any], list[str]]:
  """Evaluators -> report: every table and the run summary as JSON + Markdown.

  Returns:
    ({key: rows, "summary": the summary's rows}, paths written).
  """
  ds = plan.dataset
  rows, files = {}, []
  written = tables.tables(results, ds.test_images, ds.test_labels, info)
  written += cladec_parts.planted_tables(results, ds.test_images, ds.test_labels, ds.parts, info)
  summary = tables.summary("ClaDec", written)
  for table in written + [summary]:
    rows[_OUTPUT_KEYS[table.name]] = table.rows
    files += report.write_table(os.path.join(plan.workdir, RESULTS_DIR, table.name), table.rows,
                                title=table.title, notes=table.notes, columns=table.columns)
  return rows, files





def _write_figures(plan: Plan, results: tables.Results) -> list[str]:
  """Evaluators -> report: every figure as a PNG (Fig. 12 with RefAE if Table 2 has it)."""
  logging.info("cladec: evaluate: figures")
  ds = plan.dataset
  by_layer = dict(zip(plan.layers, results.layers))
  refae = by_layer[plan.sweep_layer].refae if plan.sweep_layer in by_layer else None
  test = figures.TestSet(ds.test_images, ds.test_labels, ds.class_names)
  grids = figures.figures(results, test, plan.config.figures.n_images, plan.seeds[0],
                          refae.images[0] if refae is not None else None)
  return [report.save_image_grid(os.path.join(plan.workdir, FIGURES_DIR, g.name + ".png"),
                                 g.rows, row_labels=g.row_labels, col_labels=g.col_labels,
                                 title=g.title) for g in grids]


def evaluate(config: ml_collections.ConfigDict, workdir: str, *,
             gradcam_fn: Callable | None = None) -> dict[str, Any]:
  """`evaluate.py` entry for task "cladec": tables and figures (see module doc).

  Stages: prepare, restore the classifier, compute the results (methods),
  then tables and figures (evaluators, report).

  Args:
    config: the config `train` ran with.
    workdir: the run directory.
    gradcam_fn: `(model, variables, x, target, layer) -> (N, h, w)` maps;
      default `attribution.gradcam`.

  Returns:
    {"layers", "alpha", "training_epochs", "subsets", "occlusion": rows (the
     tables written), "summary": the rows of `results/summary` (one per
     collapsed, chance-level or NaN result, each also logged as a WARNING),
     "files": written paths, "wall_s"}.
  """
  t0 = time.time()
  plan = prepare(config, workdir)
  training.enable_compilation_cache(config.compilation_cache_dir, workdir)
  clf = _restore_classifier_for_eval(plan)
  results = compute_results(plan, clf, gradcam_fn)
  out, files = _write_tables(plan, results, _run_info(plan, clf))
  out["files"] = files + _write_figures(plan, results)
  out["wall_s"] = time.time() - t0
  logging.info("cladec: evaluation written in %.0f s: %s", out["wall_s"], out["files"])
  health.log_warnings("cladec", out["summary"])
  return out
