"""The training loop: schedules, resume after SIGKILL, 1 vs 8 devices, CLI checks."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxconcepts.programs import classifier
from jaxconcepts.programs import cli
from jaxconcepts.models import classifiers as models
from jaxconcepts.train import distributed
from jaxconcepts.train import trainer as training
from tests import envs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SMALL = dict(widths=(8, 8, 8, 8, 16, 16, 16, 16))


def test_learning_rate_decays_twice_by_ten_at_half_and_three_quarters():
  lr = training.create_learning_rate_fn(0.1, steps_per_epoch=10, num_epochs=64)
  np.testing.assert_allclose([lr(0), lr(319), lr(320), lr(479), lr(480), lr(639)],
                             [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


def test_sgd_weight_decay_matches_pytorch_update_rule():
  # PyTorch SGD: g' = g + wd * p; buf = m * buf + g'; p -= lr * buf.
  tx = training.create_optimizer("sgd", 0.1, momentum=0.9, weight_decay=1e-2)
  p = jnp.array([1.0, -2.0])
  g = jnp.array([0.5, 0.25])
  state = tx.init(p)
  buf = np.zeros(2)
  p_ref = np.array(p)
  for _ in range(3):
    updates, state = tx.update(g, state, p)
    p = optax.apply_updates(p, updates)
    buf = 0.9 * buf + (np.array(g) + 1e-2 * p_ref)
    p_ref = p_ref - 0.1 * buf
  np.testing.assert_allclose(p, p_ref, rtol=1e-6)


def test_unknown_optimizer_is_rejected():
  with pytest.raises(ValueError, match="'rmsprop'.*sgd"):
    training.create_optimizer("rmsprop", 0.1)


def _small_state():
  model = models.create_model("vgg", 4, **_SMALL)
  variables = models.init_variables(model, jax.random.PRNGKey(0), (32, 32, 1))
  tx = training.create_optimizer("sgd", 0.1, momentum=0.9)
  return training.create_train_state(model.apply, variables, tx)


def _fit_small(workdir, num_devices, steps=3, log_every_steps=1, num_epochs=1, steps_in_flight=2,
               state=None):
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(48, 32, 32, 1)).astype(np.float32)
  labels = rng.integers(0, 4, size=48).astype(np.int32)
  state = _small_state() if state is None else state
  cfg = training.LoopConfig(num_epochs=num_epochs, batch_size=16, num_devices=num_devices,
                            checkpoint_every_steps=100, log_every_steps=log_every_steps,
                            steps_in_flight=steps_in_flight)
  return training.fit(name="c", workdir=str(workdir), state=state,
                      train_step=training.classifier_train_step, images=images,
                      labels=labels, cfg=cfg)


@pytest.mark.slow
def test_one_and_eight_devices_give_the_same_losses(tmp_path):
  assert len(jax.devices()) == 8, "conftest forces 8 host devices"
  one = _fit_small(tmp_path / "one", 1)
  eight = _fit_small(tmp_path / "eight", 8)
  np.testing.assert_allclose(one.history[-1]["train_loss"], eight.history[-1]["train_loss"],
                             rtol=1e-5)
  assert [s["step"] for s in one.steps] == [s["step"] for s in eight.steps] == [1, 2, 3]
  np.testing.assert_allclose([s["train_loss"] for s in one.steps],
                             [s["train_loss"] for s in eight.steps], rtol=1e-5)
  # Three full batches of 16: the epoch's loss is the mean of the per-step losses.
  np.testing.assert_allclose(np.mean([s["train_loss"] for s in one.steps]),
                             one.history[-1]["train_loss"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(one.state.params), jax.tree.leaves(eight.state.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  assert len(eight.state.params["logits"]["kernel"].sharding.device_set) == 8


def test_metrics_reach_the_host_only_at_log_lines_and_epoch_ends(tmp_path, monkeypatch):
  fetches = []
  fetch = distributed.DeviceSums._fetch  # pylint: disable=protected-access
  monkeypatch.setattr(distributed.DeviceSums, "_fetch",
                      staticmethod(lambda sums: fetches.append(1) or fetch(sums)))
  result = _fit_small(tmp_path, 1, log_every_steps=100, num_epochs=2)
  # 6 steps: 2 epoch ends and one log line (the last step), not one fetch per step.
  assert len(fetches) == 3
  assert [s["step"] for s in result.steps] == [6]
  assert [h["step"] for h in result.history] == [3, 6]


def test_the_host_waits_only_for_the_step_steps_in_flight_before(tmp_path, monkeypatch):
  waited, block = [], jax.block_until_ready
  monkeypatch.setattr(distributed.jax, "block_until_ready", lambda x: waited.append(x) or block(x))
  window = distributed.StepWindow(2)
  for i in range(5):
    window.push({"step": np.float32(i)})
  assert [float(w["step"]) for w in waited] == [0.0, 1.0, 2.0]  # steps 3 and 4 still queued
  waited.clear()
  _fit_small(tmp_path, 8, num_epochs=2, steps_in_flight=1)  # 8 devices
  assert len(waited) == 4  # 2 per epoch of 3 steps (an epoch ends with a sync anyway)
  with pytest.raises(ValueError, match="steps_in_flight"):
    training.LoopConfig(num_epochs=1, batch_size=8, steps_in_flight=0)


@pytest.mark.parametrize("num_devices", [1, 8])
def test_fit_leaves_the_callers_state_alive_for_a_second_fit(tmp_path, num_devices):
  """The step donates its state; fit donates copies, never the caller's buffers."""
  state = _small_state()
  before = jax.tree.map(np.array, state)
  runs = [_fit_small(tmp_path / w, num_devices, state=state) for w in ("a", "b")]
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(state)):  # batch_stats included
    np.testing.assert_array_equal(a, np.asarray(b))
  np.testing.assert_array_equal([s["train_loss"] for s in runs[0].steps],
                                [s["train_loss"] for s in runs[1].steps])


def test_fit_writes_checkpoint_and_metrics_and_skips_when_done(tmp_path):
  first = _fit_small(tmp_path, 1)
  assert os.path.isdir(tmp_path / "checkpoints" / "c" / "3")
  with open(tmp_path / "metrics" / "c.json") as f:
    log = json.load(f)
  assert log["epochs"][0]["step"] == 3 and [s["step"] for s in log["steps"]] == [1, 2, 3]
  again = _fit_small(tmp_path, 1)
  assert again.resumed_from_step == 3
  for a, b in zip(jax.tree.leaves(first.state.params), jax.tree.leaves(again.state.params)):
    np.testing.assert_array_equal(a, b)


def test_batch_size_not_divisible_by_devices_is_rejected():
  with pytest.raises(ValueError, match="batch_size.*8 devices.*got 12"):
    training.check_batch_size(12, training.make_mesh(8))


def _train_cmd(workdir, epochs=3):
  return [sys.executable, os.path.join(ROOT, "train.py"),
          f"--config={os.path.join(ROOT, 'configs', 'quickstart.py')}:epochs={epochs}",
          f"--workdir={workdir}", "--config.data.max_train=192", "--config.data.max_test=64",
          "--config.eval_batch_size=64", "--config.batch_size=32",
          "--config.checkpoint_every_steps=4", "--config.num_devices=1",
          "--config.log_every_steps=2"]


def _env():
  env = envs.with_fast_compiles()  # every run here uses the same flags
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  return env


@pytest.mark.slow
def test_training_killed_with_sigkill_resumes_bitwise_equal(tmp_path):
  full, killed = tmp_path / "full", tmp_path / "killed"
  subprocess.run(_train_cmd(full), check=True, env=_env(), capture_output=True)
  proc = subprocess.Popen(_train_cmd(killed), env=_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  ckpt = killed / "checkpoints" / "classifier"
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    done = [d for d in glob.glob(str(ckpt / "*")) if os.path.basename(d).isdigit()]
    if any(int(os.path.basename(d)) >= 4 for d in done):
      break
    time.sleep(0.05)
  assert proc.poll() is None, "the run finished before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  steps = sorted(int(os.path.basename(d)) for d in glob.glob(str(ckpt / "*"))
                 if os.path.basename(d).isdigit())
  assert steps and steps[-1] < 18, f"expected a partial run, found checkpoints {steps}"
  subprocess.run(_train_cmd(killed), check=True, env=_env(), capture_output=True)
  _, v_full, _, info_full = classifier.restore_classifier(str(full))
  _, v_killed, _, info_killed = classifier.restore_classifier(str(killed))
  assert info_full["step"] == info_killed["step"] == 18
  for a, b in zip(jax.tree.leaves(v_full), jax.tree.leaves(v_killed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with open(killed / "metrics" / "classifier.json") as f:
    assert [e["epoch"] for e in json.load(f)["epochs"]] == [1, 2, 3]
  # What the README promises after training: TensorBoard events, then evaluate's results.
  assert glob.glob(str(full / "tensorboard" / "classifier" / "events.out.tfevents*"))
  evaluate_cmd = [a.replace("train.py", "evaluate.py") for a in _train_cmd(full)]
  subprocess.run(evaluate_cmd, check=True, env=_env(), capture_output=True)
  with open(full / "results" / "classifier.json") as f:
    rows = json.load(f)["rows"]
  assert [r["class"] for r in rows] == [str(d) for d in range(10)] + ["all"]
  assert rows[-1]["n"] == 64 and 0.0 <= rows[-1]["accuracy"] <= 1.0


def _config(**data):
  from configs import quickstart  # pylint: disable=g-import-not-at-top
  c = quickstart.get_config()
  c.num_epochs = 1
  for k, v in data.items():
    if k in c.data:
      c.data[k] = v
    else:
      c[k] = v
  return c


@pytest.mark.parametrize("override,match", [
    (dict(dataset="imagenet"), r"unknown dataset 'imagenet'.*fashion_mnist"),
    (dict(source="hub"), r"unknown source 'hub'.*idx"),
    (dict(arch="vgg16"), r"unknown arch 'vgg16'.*resnet10"),
    (dict(num_epochs=0), r"num_epochs must be an integer >= 1, got 0"),
])
def test_bad_config_values_are_rejected_before_training(tmp_path, override, match):
  with pytest.raises(ValueError, match=match):
    cli.train_and_evaluate(_config(**override), str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints")


def test_missing_idx_directory_is_rejected_before_training(tmp_path):
  c = _config(dataset="fashion_mnist", source="idx", data_dir=str(tmp_path / "nowhere"))
  with pytest.raises(FileNotFoundError, match="nowhere"):
    cli.train_and_evaluate(c, str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w" / "checkpoints")


def test_truncated_idx_file_is_rejected_before_training(tmp_path):
  from jaxconcepts import data  # pylint: disable=g-import-not-at-top
  d = tmp_path / "idx"
  d.mkdir()
  for split, n in (("train", 4), ("t10k", 2)):
    (d / f"{split}-images-idx3-ubyte").write_bytes(
        np.array([0, 0, 8, 3], np.uint8).tobytes() + np.array([n, 28, 28], ">i4").tobytes()
        + bytes(28 * 28 * n - (10 if split == "train" else 0)))
    (d / f"{split}-labels-idx1-ubyte").write_bytes(
        np.array([0, 0, 8, 1], np.uint8).tobytes() + np.array([n], ">i4").tobytes() + bytes(n))
  del data
  c = _config(dataset="fashion_mnist", source="idx", data_dir=str(d))
  with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
    cli.train_and_evaluate(c, str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w" / "checkpoints")


def test_image_shape_the_model_cannot_take_is_rejected_before_training(tmp_path):
  c = _config(image_size=28)
  with pytest.raises(ValueError, match=r"image shape \(28, 28, 1\) cannot be taken"):
    cli.train_and_evaluate(c, str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints")


def test_unknown_task_is_rejected():
  c = _config(task="distill")
  with pytest.raises(ValueError, match="'distill'.*classifier"):
    cli.train_and_evaluate(c, "/nonexistent")


def test_config_key_that_does_not_exist_is_rejected_with_valid_keys():
  argv = ["train.py", f"--config={os.path.join(ROOT, 'configs', 'classifier.py')}",
          "--config.nmu_epochs=3"]
  with pytest.raises(ValueError, match=r"no key 'nmu_epochs'.*num_epochs.*Valid keys"):
    cli.check_overrides(argv)
  cli.check_overrides(argv[:2] + ["--config.num_epochs=3"])


def test_config_argument_that_does_not_exist_is_rejected():
  from configs import classifier as classifier_config  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=r"'sourec'.*source"):
    classifier_config.get_config("sourec=idx")


def test_the_plain_package_trains_without_tensorflow(tmp_path):
  """The quickstart of the plain install (no `tfds` extra): TensorFlow absent, training runs."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  code = ("import sys\n"
          "for m in ('tensorflow', 'tensorflow_datasets', 'tensorboard'): sys.modules[m] = None\n"
          "sys.argv = ['train.py', '--config=configs/quickstart.py:epochs=1', "
          f"'--workdir={tmp_path / 'w'}', '--config.data.max_train=64', "
          "'--config.data.max_test=32']\n"
          "from jaxconcepts.programs import cli\n"
          "cli.train_main()\n")
  out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                       timeout=300, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "no TensorBoard events are written" in out.stderr
