"""The ClaDec program's grids: each trained as one compiled program in one `fit` run.

The alpha trade-off (Tables 4/5), every alpha and seed:

`train_alpha_grid(plan, variables)` trains the decoders of every alpha in
`plan.alphas` at `plan.alpha_layer`, for all seeds, as one compiled program
(`methods.cladec_grid`: alpha traced, vmapped over alphas and seeds) in one
`training.fit` run under `checkpoints/<grid_stage>`, which resumes like any
stage. When it ends, each alpha's decoders are saved as the stage its own run
would have written (`cladec_stage(layer, alpha)`, at the same final step), so
evaluation and `is_done` read the same checkpoints as before the grid existed,
and a workdir trained then resumes. A grid whose alphas are all done is
skipped; one with some done (a workdir from before) trains the whole grid and
saves only the missing alphas.

The evaluation classifiers of one reconstruction kind (a layer's ClaDec at an
alpha, or its RefAE), every seed: `train_eval_classifiers` trains them vmapped
over seeds (`methods.cladec_grid.classifier_seeds_step`, each seed its own
reconstructions, batch order and dropout keys, as its own run) and saves each
under its `eval_stage` name in the layout `programs.classifier` restores.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from jaxconcepts import data as data_lib
from jaxconcepts import utils
from jaxconcepts.methods import cladec
from jaxconcepts.methods import cladec_grid
from jaxconcepts.programs import classifier as classifier_lib
from jaxconcepts.programs import cladec_plan
from jaxconcepts.train import checkpoints
from jaxconcepts.train import trainer as training


def alpha_stages(plan: cladec_plan.Plan) -> list[str]:
  """The per-alpha stage names of the trade-off, in `plan.alphas` order."""
  return [cladec_plan.cladec_stage(plan.alpha_layer, a, plan.seed_tag) for a in plan.alphas]


def _save_rows(plan: cladec_plan.Plan, state: Any, names: list[str], rows: list[int],
               step: int, group: str) -> None:
  """Saves rows `rows` of a stacked state as the stages `names[i]` at `step` (their last),
  then deletes the stacked run's checkpoints (stage `group`), now a copy of them."""
  state = jax.device_get(state)
  for i in rows:
    checkpoints.save(checkpoints.stage_dir(plan.workdir, names[i]), step,
                     cladec.seed_slice(state, i))
  checkpoints.remove_stage(checkpoints.stage_dir(plan.workdir, group))


def train_alpha_grid(plan: cladec_plan.Plan, variables: Any) -> list[str]:
  """Trains (or resumes / skips) the alpha trade-off at `plan.alpha_layer` in one run.

  Args:
    plan: the program's plan (`plan.alphas` non-empty).
    variables: the explained classifier's variables (frozen; traced in the step).

  Returns:
    The per-alpha stage names (`cladec_stage`), all done when this returns.
  """
  c, ds, layer = plan.config, plan.dataset, plan.alpha_layer
  names, epochs = alpha_stages(plan), int(c.decoder_epochs)
  todo = [i for i, n in enumerate(names)
          if not cladec_plan.is_done(plan, n, epochs, c.batch_size)]
  if not todo:
    return names
  t0 = time.time()
  name = cladec_plan.grid_stage(layer, plan.alphas, plan.seed_tag)
  code_shape, data = cladec_plan.decoder_data(plan, variables, layer)
  decoder = plan.decoders[code_shape]
  tx, lr_fn = plan.decoder_opt
  step, alphas = cladec_grid.make_grid_step(decoder, plan.model, plan.image_shape, code_shape,
                                            plan.alphas, c.rec_reduction)
  logging.info("cladec: %s (code %s, %d alphas x %d seeds in one program, %d epochs)", name,
               code_shape, len(plan.alphas), len(plan.seeds), epochs)
  result = training.fit(
      name=name, workdir=plan.workdir, state=cladec_grid.init_grid(
          decoder, code_shape, tx, plan.seeds, len(plan.alphas)),
      train_step=step, step_args=(variables, alphas, data),
      images=cladec.seed_orders(ds.num_train, plan.seeds), labels=ds.train_labels,
      cfg=cladec_plan.loop_config(plan, epochs), lr_fn=lr_fn)
  _save_rows(plan, result.state, names, todo,
             epochs * data_lib.num_batches(ds.num_train, c.batch_size), name)
  cladec_plan.record_stage(plan, name, time.time() - t0, images=ds.num_train, epochs=epochs,
                           seeds=len(plan.seeds), alphas=len(plan.alphas))
  return names


# ---------------------------------------------------------------------------
# Evaluation classifiers, vmapped over seeds
# ---------------------------------------------------------------------------

Reconstruct = Callable[[int, np.ndarray], np.ndarray]  # (seed index, images) -> images


def _stacked_classifiers(plan: cladec_plan.Plan, configs: list[Any]) -> tuple[Any, Any]:
  """(seed-stacked classifier TrainState, lr schedule): seed s initialised as its own run."""
  steps = data_lib.num_batches(plan.dataset.num_train, configs[0].batch_size)
  made = [classifier_lib.init_state(plan.model, cfg, plan.image_shape, steps,
                                    jax.random.PRNGKey(cfg.seed)) for cfg in configs]
  leaves = [jax.tree.leaves(state) for state, _ in made]
  stacked = [jnp.stack(group) for group in zip(*leaves)]
  return jax.tree.unflatten(jax.tree.structure(made[0][0]), stacked), made[0][1]


def train_eval_classifiers(plan: cladec_plan.Plan, kind: str, layer: str,
                           restore: Callable[[], Reconstruct], alpha: float | None = None,
                           clf_epochs: int | None = None) -> None:
  """Trains (or resumes / skips) the evaluation classifiers of every seed in one run.

  Args:
    plan: the program's plan.
    kind: "cladec" | "refae" (the stage names' kind).
    layer, alpha, clf_epochs: name the reconstructions (as `eval_stage`).
    restore: returns `(seed index, images) -> reconstructions` of the trained
      decoders; called only when some seed's classifier is not done.
  """
  ec, ds = plan.config.eval_classifier, plan.dataset
  epochs = int(ec.num_epochs)
  names = [cladec_plan.eval_stage(kind, layer, s, alpha, clf_epochs) for s in plan.seeds]
  todo = [i for i, n in enumerate(names)
          if epochs and not cladec_plan.is_done(plan, n, epochs, int(ec.batch_size))]
  if not todo:
    return
  t0 = time.time()
  reconstruct = restore()
  images = np.stack([reconstruct(i, ds.train_images) for i in range(len(plan.seeds))])
  configs = [cladec_plan.classifier_config(plan, epochs, s, ec) for s in plan.seeds]
  classifier_lib.validate_config(configs[0])
  state, lr_fn = _stacked_classifiers(plan, configs)
  group = cladec_plan.eval_seeds_stage(kind, layer, plan.seed_tag, alpha, clf_epochs)
  logging.info("cladec: %s (%d seeds in one program, %d epochs)", group, len(plan.seeds),
               epochs)
  orders = cladec_grid.epoch_orders(ds.num_train, plan.seeds, epochs, int(ec.batch_size))
  result = training.fit(
      name=group, workdir=plan.workdir, state=state,
      train_step=cladec_grid.classifier_seeds_step,
      step_args=(utils.seed_keys(plan.seeds), orders, (images, ds.train_labels)),
      images=np.arange(ds.num_train, dtype=np.int32), labels=ds.train_labels,
      cfg=training.loop_config(configs[0]), lr_fn=lr_fn)
  _save_rows(plan, result.state, names, todo,
             epochs * data_lib.num_batches(ds.num_train, int(ec.batch_size)), group)
  cladec_plan.record_stage(plan, group, time.time() - t0, images=ds.num_train, epochs=epochs,
                           seeds=len(plan.seeds))
