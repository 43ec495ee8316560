"""The ClaDec program's alpha trade-off (Tables 4/5): every alpha and seed in one `fit` run.

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
"""

from __future__ import annotations

import time
from typing import Any

from absl import logging
import jax

from jaxconcepts import data as data_lib
from jaxconcepts.methods import cladec
from jaxconcepts.methods import cladec_grid
from jaxconcepts.programs import cladec_plan
from jaxconcepts.train import checkpoints
from jaxconcepts.train import trainer as training


def alpha_stages(plan: cladec_plan.Plan) -> list[str]:
  """The per-alpha stage names of the trade-off, in `plan.alphas` order."""
  return [cladec_plan.cladec_stage(plan.alpha_layer, a, plan.seed_tag) for a in plan.alphas]


def _save_alphas(plan: cladec_plan.Plan, state: Any, rows: list[int], step: int) -> None:
  """Saves grid rows `rows` (alphas) as their own stages at `step` (the stage's last)."""
  state = jax.device_get(state)
  names = alpha_stages(plan)
  for i in rows:
    checkpoints.save(checkpoints.stage_dir(plan.workdir, names[i]), step,
                     cladec_grid.alpha_slice(state, i))


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
  _save_alphas(plan, result.state, todo, epochs * data_lib.num_batches(ds.num_train,
                                                                       c.batch_size))
  cladec_plan.record_stage(plan, name, time.time() - t0, images=ds.num_train, epochs=epochs,
                           seeds=len(plan.seeds), alphas=len(plan.alphas))
  return names
