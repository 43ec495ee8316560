"""Checkpoints of training stages: where they live, save, restore, and whether one is done.

Every stage of a program (a classifier, a decoder, an evaluation classifier)
keeps its orbax checkpoints under `workdir/checkpoints/<name>/<step>`. A stage
is finished when its newest step reaches the stage's total number of steps, so
a program that is run again skips finished stages and resumes the others.
`record_stage` keeps a JSON log of the wall time each stage took.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

from absl import logging
import orbax.checkpoint as ocp

from jaxconcepts import utils

CHECKPOINTS_DIR = "checkpoints"


def stage_dir(workdir: str, name: str) -> str:
  """The checkpoint directory of stage `name`: `workdir/checkpoints/<name>`."""
  return os.path.join(workdir, CHECKPOINTS_DIR, name)


METADATA_FILE = "_CHECKPOINT_METADATA"  # orbax writes it when a step is complete


def complete_steps(directory: str) -> list[int]:
  """The steps under `directory` that orbax finished writing, newest first.

  A numeric folder without orbax's metadata file (an interrupted or emptied
  save) is not a checkpoint. Reads folder names only (no orbax), so it is cheap
  enough to ask for every stage of a program before deciding what to train.
  """
  if not os.path.isdir(directory):
    return []
  steps = [int(s) for s in os.listdir(directory)
           if s.isdigit() and os.path.exists(os.path.join(directory, s, METADATA_FILE))]
  return sorted(steps, reverse=True)


def latest_step(directory: str) -> int | None:
  """The newest complete step saved under `directory`, or None."""
  steps = complete_steps(directory)
  return steps[0] if steps else None


def set_aside(directory: str, step: int, reason: str) -> str:
  """Moves a damaged step out of the stage (next to it, `<stage>.damaged/<step>-<time>`).

  Nothing is deleted: the user can inspect or remove it. Returns the new path.
  """
  dest = os.path.join(f"{directory.rstrip(os.sep)}.damaged", f"{step}-{int(time.time())}")
  os.makedirs(os.path.dirname(dest), exist_ok=True)
  os.replace(os.path.join(directory, str(step)), dest)
  logging.warning("checkpoint %s/%d does not restore (%s); moved it to %s and fell back to an "
                  "older one", directory, step, reason, dest)
  return dest


def is_done(directory: str, total_steps: int) -> bool:
  """Whether the newest checkpoint under `directory` is at step `total_steps` or later."""
  step = latest_step(directory)
  return step is not None and step >= total_steps


def prune_finished(directory: str, total_steps: int) -> list[int]:
  """Deletes every checkpoint of a finished stage but its final one (issue 16: disk use).

  While a stage trains, orbax keeps its newest `keep_checkpoints` steps, so an
  interrupted run can resume. Once the newest complete step reaches
  `total_steps`, nothing resumes from the older ones, and every later read
  (`restore_latest`, `is_done`) uses the newest only. An unfinished stage is
  left as it is; so are folders orbax did not finish (not checkpoints) and
  steps set aside as damaged (`<stage>.damaged`, for the user to inspect).

  Args:
    directory: a stage directory (see `stage_dir`).
    total_steps: the stage's number of steps (>= 1).

  Returns:
    The steps deleted, newest first ([] for an unfinished or missing stage).
  """
  total_steps = utils.check_int(total_steps, "total_steps")
  steps = complete_steps(directory)
  if not steps or steps[0] < total_steps:
    return []
  for step in steps[1:]:  # tolerant: in a multi-process run every process may prune
    shutil.rmtree(os.path.join(directory, str(step)), ignore_errors=True)
  if steps[1:]:
    logging.info("checkpoints: %s finished at step %d; deleted older steps %s", directory,
                 steps[0], steps[1:])
  return steps[1:]


def manager(directory: str, keep: int) -> ocp.CheckpointManager:
  """An orbax manager that keeps the newest `keep` checkpoints and may save at any step."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=1, create=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save_step(mngr: ocp.CheckpointManager, step: int, tree: Any) -> None:
  """Saves `tree` as step `step` with a manager from `manager` (asynchronously)."""
  mngr.save(step, args=ocp.args.StandardSave(tree), force=True)


def restore_latest(directory: str, abstract_state: Any) -> tuple[Any, int] | None:
  """Restores the newest checkpoint under `directory` that restores.

  A damaged newest checkpoint (truncated files, an emptied folder, a corrupt
  manifest) is moved aside with a warning naming it and why (`set_aside`), and
  the next older one is tried, so a run resumes from the newest good state.

  Args:
    directory: a stage directory (see `stage_dir`).
    abstract_state: a pytree of arrays or `jax.ShapeDtypeStruct`s (e.g. from
      `jax.eval_shape`) with the saved structure.

  Returns:
    (state, step), or None if there is no checkpoint.

  Raises:
    ValueError: if checkpoints exist but none restores, naming the folder to delete.
  """
  steps = complete_steps(directory)
  if not steps:
    return None
  reasons = []
  with ocp.CheckpointManager(os.path.abspath(directory)) as mngr:
    for step in steps:
      try:
        state = mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))
        return state, int(step)
      except Exception as e:  # pylint: disable=broad-except  (orbax / tensorstore raise many types)
        reason = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        reasons.append(f"step {step}: {reason}")
        set_aside(directory, step, reason)
  raise ValueError(f"no checkpoint under {directory} restores ({'; '.join(reasons)}); they were "
                   f"moved to {directory}.damaged; delete {directory} to train this stage again")


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
    stages = utils.read_json(path)
  prev = stages.get(name, {})
  stages[name] = {**info, "seconds": round(prev.get("seconds", 0.0) + seconds, 2)}
  utils.write_json_atomic(path, stages)
