"""Stage checkpoints: where they live, when a stage is done, save / restore, the stage log."""
import json

import numpy as np

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
