"""Stage checkpoints: where they live, when a stage is done, save / restore, the stage log."""
import json
import os

import numpy as np
import pytest

from jaxconcepts.train import checkpoints


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
