"""Stage checkpoints: where they live, when a stage is done, save / restore, the stage log,
a damaged final checkpoint, a full disk."""
import contextlib
import json
import os
import types

import numpy as np
import pytest

from jaxconcepts import utils
from jaxconcepts.train import checkpoints
from tests import filesystems


def test_a_stage_is_done_when_its_newest_step_reaches_the_total(tmp_path):
  d = checkpoints.stage_dir(str(tmp_path), "cladec_conv4_a0_s0")
  assert d.endswith("checkpoints/cladec_conv4_a0_s0")
  assert checkpoints.latest_step(d) is None and not checkpoints.is_done(d, 1)
  tree = {"w": np.arange(3.0, dtype=np.float32)}
  checkpoints.save(d, 4, tree)
  assert checkpoints.latest_step(d) == 4
  assert checkpoints.is_done(d, 4) and not checkpoints.is_done(d, 5)
  state, step = checkpoints.restore_latest(d, {"w": np.zeros(3, np.float32)})
  assert step == 4
  np.testing.assert_array_equal(state["w"], tree["w"])
  assert checkpoints.restore_latest(str(tmp_path / "nothing"), tree) is None


def test_record_stage_adds_the_seconds_of_a_resumed_stage(tmp_path):
  path = str(tmp_path / "stages.json")
  checkpoints.record_stage(path, "refae_conv4_s0", 1.5, epochs=2)
  checkpoints.record_stage(path, "refae_conv4_s0", 2.25, epochs=2)
  checkpoints.record_stage(path, "classifier", 1.0)
  with open(path) as f:
    stages = json.load(f)
  assert stages == {"refae_conv4_s0": {"epochs": 2, "seconds": 3.75},
                    "classifier": {"seconds": 1.0}}


def _damage(step_dir):
  """Truncates every file of a saved step's data (as a full disk or a crash would)."""
  for root, _, files in os.walk(os.path.join(step_dir, "default")):
    for name in files:
      with open(os.path.join(root, name), "r+b") as f:
        f.truncate(0)


def test_restore_falls_back_past_a_damaged_or_empty_newest_checkpoint(tmp_path):
  d = str(tmp_path / "stage")
  tree = {"w": np.arange(4, dtype=np.float32)}
  for step in (1, 2):
    checkpoints.save(d, step, {"w": tree["w"] * step})
  os.makedirs(os.path.join(d, "3"))  # an emptied step folder: not a checkpoint
  assert checkpoints.complete_steps(d) == [2, 1]
  _damage(os.path.join(d, "2"))
  state, step = checkpoints.restore_latest(d, tree)
  assert step == 1
  np.testing.assert_array_equal(state["w"], tree["w"])
  assert checkpoints.complete_steps(d) == [1]
  assert len(os.listdir(d + ".damaged")) == 1  # moved aside, not deleted
  _damage(os.path.join(d, "1"))
  with pytest.raises(ValueError, match=r"no checkpoint under .* restores.*delete"):
    checkpoints.restore_latest(d, tree)


def test_a_damaged_json_file_is_named_in_a_one_line_error(tmp_path):
  path = tmp_path / "stages.json"
  path.write_text('{"classifier": {"seconds": 1.0')
  with pytest.raises(ValueError, match=r"stages.json is damaged \(not valid JSON.*delete it"):
    checkpoints.record_stage(str(path), "decoder", 2.0)


# ---------------------------------------------------------------------------
# A damaged final checkpoint does not count as done.


def test_a_damaged_final_checkpoint_is_not_done(tmp_path):
  d = str(tmp_path / "stage")
  checkpoints.save(d, 4, {"w": np.arange(8, dtype=np.float32)})
  assert checkpoints.is_done(d, 4, verify=True) and checkpoints.step_damage(d, 4) is None
  _damage(os.path.join(d, "4"))
  assert checkpoints.is_done(d, 4)  # folder names alone cannot tell
  assert checkpoints.step_damage(d, 4) is not None
  assert not checkpoints.is_done(d, 4, verify=True)


def test_the_cladec_plan_does_not_count_a_damaged_final_checkpoint_as_done(tmp_path):
  from jaxconcepts.programs import cladec_plan  # pylint: disable=g-import-not-at-top
  plan = types.SimpleNamespace(workdir=str(tmp_path), dataset=types.SimpleNamespace(num_train=8))
  d = checkpoints.stage_dir(str(tmp_path), "refae_conv4_s0")
  checkpoints.save(d, 2, {"w": np.ones(5, np.float32)})  # 2 epochs of 8 images at batch 8
  assert cladec_plan.is_done(plan, "refae_conv4_s0", 2, 8)
  _damage(os.path.join(d, "2"))
  assert not cladec_plan.is_done(plan, "refae_conv4_s0", 2, 8)


# ---------------------------------------------------------------------------
# A full disk: one line, nothing half-written, and the next save works once there is room.

MB = 2**20


def _noise(n: int) -> dict:
  """A tree of n random float32 (orbax compresses, so constant arrays would take no room)."""
  return {"w": np.random.default_rng(n).normal(size=n).astype(np.float32)}


@pytest.fixture
def small_disk(tmp_path):
  """A 2 MB tmpfs (MODE tmpfs), or a simulated full disk where mounting is refused."""
  path = str(tmp_path / "disk")
  with filesystems.small_tmpfs(path, 2 * MB) as mounted:
    print("MODE", "tmpfs" if mounted else "simulated")
    yield path, mounted


def test_a_checkpoint_the_disk_cannot_hold_is_one_line_and_the_next_save_resumes(small_disk):
  path, mounted = small_disk
  d = os.path.join(path, "stage")
  small, big = _noise(1000), _noise(MB)  # 4 KB, 4 MB
  checkpoints.save(d, 1, small)
  with contextlib.ExitStack() as stack:
    if not mounted:
      stack.enter_context(filesystems.simulated_full_disk(path))
    with pytest.raises(utils.DiskFullError) as err:
      checkpoints.save(d, 2, big)
  message = str(err.value)
  assert "\n" not in message and message.startswith(f"disk full: cannot write {d}")
  assert "No space left on device" in message and "last complete checkpoint: step 1" in message
  assert os.listdir(d) == ["1"]  # no partial step left behind
  if mounted:
    filesystems.resize(path, 16 * MB)
  state, step = checkpoints.restore_latest(d, big)  # the next run resumes from step 1 ...
  assert step == 1
  checkpoints.save(d, 2, big)  # ... and saves once there is room
  assert checkpoints.complete_steps(d) == [2, 1]


def test_a_disk_that_fills_during_a_save_is_one_line_and_its_partial_step_is_removed(
    small_disk, monkeypatch):
  path, mounted = small_disk
  d = os.path.join(path, "stage")
  checkpoints.save(d, 1, _noise(1000))
  if mounted:  # skip the check before the save: orbax itself runs into the full disk
    monkeypatch.setattr(checkpoints, "SPACE_MARGIN", -10**12)
  else:  # orbax's own report of ENOSPC (TensorStore writes outside Python's open)
    def fail(self):
      os.makedirs(os.path.join(d, "2.orbax-checkpoint-tmp"), exist_ok=True)
      raise ValueError("RESOURCE_EXHAUSTED: Error writing ...: No space left on device "
                       "[os_error_code='28']")
    monkeypatch.setattr(checkpoints.ocp.CheckpointManager, "wait_until_finished", fail)
  with pytest.raises(utils.DiskFullError, match=r"^disk full: cannot write .*step 1\]$"):
    checkpoints.save(d, 2, _noise(MB))
  assert sorted(os.listdir(d)) == ["1"]
