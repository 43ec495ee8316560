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
import jax
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


def step_damage(directory: str, step: int) -> str | None:
  """Why step `step` under `directory` does not read back, or None if it does.

  Reads the whole step from its own metadata (no target structure needed), so
  truncated data files, an emptied folder and a corrupt manifest all show.
  """
  path = os.path.join(os.path.abspath(directory), str(step), "default")
  try:
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.restore(path)
  except Exception as e:  # pylint: disable=broad-except  (orbax / tensorstore raise many types)
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
  return None


def is_done(directory: str, total_steps: int, *, verify: bool = False) -> bool:
  """Whether the newest checkpoint under `directory` is at step `total_steps` or later.

  Args:
    directory: a stage directory (see `stage_dir`).
    total_steps: the stage's number of steps.
    verify: also read the final checkpoint back (`step_damage`): a damaged one
      does not count (the stage then trains, and `restore_latest` moves it aside).
      Off by default: folder names alone are cheap enough for every stage.
  """
  step = latest_step(directory)
  if step is None or step < total_steps:
    return False
  if verify:
    why = step_damage(directory, step)
    if why is not None:
      logging.warning("checkpoint %s/%d is final but does not read back (%s): the stage is "
                      "not done", directory, step, why)
      return False
  return True


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


def remove_stage(directory: str) -> bool:
  """Deletes a stage's checkpoints once they have been copied elsewhere.

  Used for grouped runs (several alphas or seeds trained as one stacked state):
  after each member is saved as its own stage, the stacked copy would only double
  the disk use; nothing resumes from it, since every member's stage is done.
  Tolerant of a missing folder and of several processes deleting it at once.

  Returns:
    Whether the folder existed.
  """
  existed = os.path.isdir(directory)
  shutil.rmtree(directory, ignore_errors=True)
  if existed:
    logging.info("checkpoints: %s split into its members' stages; deleted", directory)
  return existed


# ---------------------------------------------------------------------------
# A full disk: checked before a save, and one line if it fills up during one.

TMP_MARK = ".orbax-checkpoint-tmp"  # orbax writes a step here, then renames it
SPACE_MARGIN = 1 << 20  # bytes beyond the arrays: orbax's metadata and manifests


def remove_partial_saves(directory: str) -> list[str]:
  """Removes the folders of saves orbax did not finish (`<step>.orbax-checkpoint-tmp*`).

  They are never checkpoints (`complete_steps` skips them) but hold the space a
  full disk needs back. Returns the removed paths.
  """
  if not os.path.isdir(directory):
    return []
  out = [os.path.join(directory, n) for n in sorted(os.listdir(directory)) if TMP_MARK in n]
  for path in out:
    utils.remove_quietly(path)
  return out


def _disk_full(directory: str, needed: int | None = None) -> utils.DiskFullError:
  """The one-line error of a save that found the disk full, after removing its partial step."""
  removed = remove_partial_saves(directory)
  if removed:
    logging.warning("checkpoints: removed the unfinished save(s) %s", removed)
  last = latest_step(directory)
  err = utils.disk_full_error(directory, needed)
  return utils.DiskFullError(f"{err} [last complete checkpoint: "
                             f"{'none' if last is None else f'step {last}'}]")


def tree_bytes(tree: Any) -> int:
  """Bytes of the arrays of a pytree (what a checkpoint of it writes, before metadata)."""
  return sum(int(getattr(x, "nbytes", 0)) for x in jax.tree_util.tree_leaves(tree))


def check_free_space(directory: str, tree: Any) -> None:
  """Raises `utils.DiskFullError` before a save of `tree` that the disk cannot hold.

  Failing here, before orbax starts, leaves no partial step and no background
  thread's tracebacks: the run stops with one line and the next run resumes
  from the last complete checkpoint.
  """
  needed = tree_bytes(tree) + SPACE_MARGIN
  if utils.free_bytes(directory) < needed:
    raise _disk_full(directory, needed)


class _Manager(ocp.CheckpointManager):
  """orbax's manager, except that a disk filling up during a save is one line.

  orbax reports ENOSPC from its background threads as a `ValueError` at the next
  `save`, `wait_until_finished` or `close` (every one goes through
  `wait_until_finished`); it becomes a `utils.DiskFullError`, and the unfinished
  step is removed, so the disk gets its space back and nothing half-written stays.
  """

  def wait_until_finished(self):
    try:
      super().wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except  (orbax wraps the OSError)
      if not utils.is_disk_full(e):
        raise
      raise _disk_full(str(self.directory)) from None


def manager(directory: str, keep: int | None) -> ocp.CheckpointManager:
  """An orbax manager that keeps the newest `keep` checkpoints and may save at any step.

  Unfinished saves of an earlier run (a crash, a full disk) are removed first.
  """
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=1, create=True,
                                         cleanup_tmp_directories=True)
  return _Manager(os.path.abspath(directory), options=options)


def save_step(mngr: ocp.CheckpointManager, step: int, tree: Any) -> None:
  """Saves `tree` as step `step` with a manager from `manager` (asynchronously).

  Waits for the previous save first (orbax would anyway), so that the free
  space is measured with it on disk.

  Raises:
    utils.DiskFullError: one line, if the disk cannot hold the checkpoint.
  """
  mngr.wait_until_finished()
  check_free_space(str(mngr.directory), tree)
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
  with manager(directory, None) as mngr:
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
