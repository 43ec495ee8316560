"""Checkpoints of training stages: where they live, save, restore, and whether one is done.

Every stage of a program (a classifier, a decoder, an evaluation classifier)
keeps its orbax checkpoints under `workdir/checkpoints/<name>/<step>`. A stage
is finished when its newest step reaches the stage's total number of steps, so
a program that is run again skips finished stages and resumes the others.
`record_stage` keeps a JSON log of the wall time each stage took.
"""

from __future__ import annotations

import json
import os
from typing import Any

import orbax.checkpoint as ocp

from jaxconcepts import utils

CHECKPOINTS_DIR = "checkpoints"


def stage_dir(workdir: str, name: str) -> str:
  """The checkpoint directory of stage `name`: `workdir/checkpoints/<name>`."""
  return os.path.join(workdir, CHECKPOINTS_DIR, name)


def latest_step(directory: str) -> int | None:
  """The newest step saved under `directory` (its numeric subfolders), or None.

  Reads the folder names only (no orbax), so it is cheap enough to ask for
  every stage of a program before deciding what to train.
  """
  if not os.path.isdir(directory):
    return None
  steps = [int(s) for s in os.listdir(directory) if s.isdigit()]
  return max(steps) if steps else None


def is_done(directory: str, total_steps: int) -> bool:
  """Whether the newest checkpoint under `directory` is at step `total_steps` or later."""
  step = latest_step(directory)
  return step is not None and step >= total_steps


def manager(directory: str, keep: int) -> ocp.CheckpointManager:
  """An orbax manager that keeps the newest `keep` checkpoints and may save at any step."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=1, create=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save_step(mngr: ocp.CheckpointManager, step: int, tree: Any) -> None:
  """Saves `tree` as step `step` with a manager from `manager` (asynchronously)."""
  mngr.save(step, args=ocp.args.StandardSave(tree), force=True)


def restore_latest(directory: str, abstract_state: Any) -> tuple[Any, int] | None:
  """Restores the newest checkpoint under `directory` into `abstract_state`'s structure.

  Args:
    directory: a stage directory (see `stage_dir`).
    abstract_state: a pytree of arrays or `jax.ShapeDtypeStruct`s (e.g. from
      `jax.eval_shape`) with the saved structure.

  Returns:
    (state, step), or None if there is no checkpoint.
  """
  if not os.path.isdir(directory):
    return None
  with ocp.CheckpointManager(os.path.abspath(directory)) as mngr:
    step = mngr.latest_step()
    if step is None:
      return None
    state = mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))
  return state, int(step)


def save(directory: str, step: int, tree: Any) -> None:
  """Saves the pytree `tree` as step `step` under `directory` and waits until it is written."""
  with ocp.CheckpointManager(os.path.abspath(directory)) as mngr:
    save_step(mngr, step, tree)
    mngr.wait_until_finished()


def record_stage(path: str, name: str, seconds: float, **info: Any) -> None:
  """Adds a stage's wall time (and `info`) to the JSON log of stages at `path`.

  A stage that is resumed adds its new seconds to those recorded before.
  """
  stages = {}
  if os.path.exists(path):
    with open(path) as f:
      stages = json.load(f)
  prev = stages.get(name, {})
  stages[name] = {**info, "seconds": round(prev.get("seconds", 0.0) + seconds, 2)}
  utils.write_json_atomic(path, stages)
