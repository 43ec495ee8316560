"""A finished stage keeps only its final checkpoint; an unfinished one keeps what it resumes from."""
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconcepts.train import checkpoints
from jaxconcepts.train import trainer as training


@flax.struct.dataclass
class _State:
  step: jax.Array
  w: jax.Array


@jax.jit
def _step(state, batch, key):
  del key
  n = batch["mask"].sum()
  return state.replace(step=state.step + 1, w=state.w + n), {"count": n, "loss": n}


class _Stop(Exception):
  pass


def _fit(workdir, num_epochs, stop_at_epoch=None):
  """12 rows, batch 4: 3 steps per epoch, a checkpoint every step, orbax keeps 3."""
  def eval_fn(state):
    if stop_at_epoch is not None and int(state.step) >= 3 * stop_at_epoch:
      raise _Stop  # an interruption after the epoch's last checkpoint was saved
    return {}
  cfg = training.LoopConfig(num_epochs=num_epochs, batch_size=4, num_devices=1,
                            checkpoint_every_steps=1, keep_checkpoints=3, log_every_steps=100)
  state = _State(step=jnp.zeros((), jnp.int32), w=jnp.zeros((), jnp.float32))
  return training.fit(name="s", workdir=str(workdir), state=state, train_step=_step,
                      images=np.zeros((12, 1), np.float32), labels=np.zeros(12, np.int32),
                      cfg=cfg, eval_fn=eval_fn)


def test_an_interrupted_stage_keeps_its_checkpoints_and_resumes_then_keeps_only_the_last(
    tmp_path):
  stage = checkpoints.stage_dir(str(tmp_path), "s")
  with pytest.raises(_Stop):
    _fit(tmp_path, num_epochs=3, stop_at_epoch=2)
  assert checkpoints.complete_steps(stage) == [6, 5, 4]  # unfinished (6 of 9): nothing pruned
  result = _fit(tmp_path, num_epochs=3)
  assert result.resumed_from_step == 6
  assert float(result.state.w) == 36.0  # every row of the 3 epochs counted once
  assert checkpoints.complete_steps(stage) == [9]
  assert sorted(os.listdir(stage)) == ["9"]
  state, step = checkpoints.restore_latest(stage, result.state)
  assert step == 9 and float(state.w) == 36.0


def test_prune_finished_deletes_older_steps_only_of_a_finished_stage(tmp_path):
  stage = str(tmp_path / "st")
  for s in (2, 4, 6):
    checkpoints.save(stage, s, {"w": np.full(3, s, np.float32)})
  os.makedirs(os.path.join(stage, "7"))  # an unfinished save (no orbax metadata): not a step
  assert checkpoints.prune_finished(stage, 8) == []  # unfinished: everything stays
  assert checkpoints.complete_steps(stage) == [6, 4, 2]
  assert checkpoints.prune_finished(stage, 6) == [4, 2]
  assert checkpoints.complete_steps(stage) == [6]
  assert os.path.isdir(os.path.join(stage, "7"))
  assert checkpoints.prune_finished(stage, 6) == []  # idempotent
  assert checkpoints.prune_finished(str(tmp_path / "missing"), 6) == []
  with pytest.raises(ValueError, match="total_steps must be an integer >= 1, got 0"):
    checkpoints.prune_finished(stage, 0)
