"""TFDS in the programs: the classifier trains from a `TfdsStream` and scores its test split
streamed; the programs that need images in memory read a bounded head of the same stream.

A tiny MNIST-shaped TFDS data set is prepared offline in tmp (`tests/data/tiny_tfds.py`).
The slow tests run train.py in-process (and resumed), and as two processes of four devices.
"""
import dataclasses
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxconcepts import data as data_lib
from jaxconcepts.data import batching
from jaxconcepts.data import sources
from jaxconcepts.models import classifiers as models
from jaxconcepts.programs import classifier
from jaxconcepts.programs import cli
from jaxconcepts.train import trainer as training
from tests.data import tiny_tfds

_SMALL = dict(widths=(8, 8, 8, 8, 16, 16, 16, 16))
N_TRAIN, N_TEST = 40, 12  # batch 8: 5 steps an epoch; the test split 2 batches, one padded
_HEAD = sources.TfdsStream.head  # the real one (some tests make it raise)


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  pytest.importorskip("tensorflow_datasets")
  return tiny_tfds.build(str(tmp_path_factory.mktemp("tfds")), N_TRAIN, N_TEST)


@pytest.fixture
def small_vgg(monkeypatch):
  """The programs build a narrow VGG (the same function of the config, 30x fewer FLOPs)."""
  create = models.create_model
  monkeypatch.setattr(models, "create_model",
                      lambda arch, n, **kw: create(arch, n, **{**_SMALL, **kw}))


def _config(data_dir, **overrides):
  from configs import classifier as classifier_config  # pylint: disable=g-import-not-at-top
  c = classifier_config.get_config("source=tfds,dataset=mnist,epochs=2,batch=8")
  c.data.data_dir = data_dir
  c.eval_batch_size = 8
  c.log_every_steps = 1
  c.checkpoint_every_steps = 2
  c.update(overrides)
  return c


def _no_whole_split(monkeypatch):
  """Makes the loaders that read a TFDS split whole raise."""

  def refuse(*args, **kwargs):
    raise AssertionError(f"a whole split was loaded: {args} {kwargs}")

  for module in (sources, data_lib):
    monkeypatch.setattr(module, "load_dataset", refuse)
  monkeypatch.setattr(sources, "_load_tfds", refuse)
  monkeypatch.setattr(sources.TfdsStream, "head", refuse)


def _params(workdir):
  _, variables, _, info = classifier.restore_classifier(str(workdir))
  return [np.asarray(x) for x in jax.tree.leaves(variables)], info["step"]


@pytest.mark.slow
def test_train_py_trains_the_classifier_from_the_stream_and_resumes_mid_epoch(
    tfds_dir, tmp_path, monkeypatch, small_vgg):
  ds = sources.load_dataset("mnist", "tfds", data_dir=tfds_dir)  # the reference, in memory
  _no_whole_split(monkeypatch)
  reads = []
  local_batches = sources.TfdsStream.local_batches

  def spy(self, *args, **kwargs):
    reads.append((self.split, self.shuffle, kwargs["epoch"], kwargs.get("start_batch", 0)))
    return local_batches(self, *args, **kwargs)

  monkeypatch.setattr(sources.TfdsStream, "local_batches", spy)
  config = _config(tfds_dir)
  full = cli.train_and_evaluate(config, str(tmp_path / "full"))
  assert [h["epoch"] for h in full.history] == [1, 2]
  assert len(full.steps) == 10 and all(np.isfinite(s["train_loss"]) for s in full.steps)
  # Epochs 0 and 1 of the shuffled train split, each scored on the test split in file order.
  assert reads == [("train", True, 0, 0), ("test", False, 0, 0),
                   ("train", True, 1, 0), ("test", False, 0, 0)]

  # The streamed test scores are those of the whole test split held in memory.
  assert ds.num_test == N_TEST
  mesh = training.make_mesh()
  in_memory = training.evaluate_arrays(training.classifier_eval_step, full.state,
                                       ds.test_images, ds.test_labels, 8, mesh)
  np.testing.assert_allclose(full.history[-1]["test_accuracy"], in_memory["accuracy"],
                             rtol=1e-6)
  np.testing.assert_allclose(full.history[-1]["test_loss"], in_memory["loss"], rtol=1e-5)

  # evaluate.py: per-class counts summed on the devices over the streamed test split.
  out = cli.evaluate(config, str(tmp_path / "full"))
  assert [r["n"] for r in out["per_class"][:-1]] == np.bincount(ds.test_labels, minlength=10
                                                                ).tolist()
  assert out["per_class"][-1]["n"] == N_TEST
  np.testing.assert_allclose(out["test_accuracy"], in_memory["accuracy"], rtol=1e-6)

  # Interrupted reading the 8th training batch (batch 2 of epoch 1: step 6 has run and is
  # saved), then run again: it resumes from step 6, reading epoch 1 from batch 1, and ends
  # where the uninterrupted run did.
  served = []

  def interrupted(self, *args, **kwargs):
    for batch in local_batches(self, *args, **kwargs):
      if self.split == "train":
        if len(served) == 7:
          raise KeyboardInterrupt("interrupted")
        served.append(1)
      yield batch

  monkeypatch.setattr(sources.TfdsStream, "local_batches", interrupted)
  with pytest.raises(KeyboardInterrupt):
    cli.train_and_evaluate(config, str(tmp_path / "cut"))
  monkeypatch.setattr(sources.TfdsStream, "local_batches", spy)
  reads.clear()
  resumed = cli.train_and_evaluate(config, str(tmp_path / "cut"))
  assert resumed.resumed_from_step == 6
  assert reads[0] == ("train", True, 1, 1)
  (a, step_a), (b, step_b) = _params(tmp_path / "full"), _params(tmp_path / "cut")
  assert step_a == step_b == 10
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6)
  assert resumed.history[-1]["test_accuracy"] == full.history[-1]["test_accuracy"]


def test_the_stream_in_file_order_trains_as_the_same_arrays_in_memory(tfds_dir, tmp_path):
  """With one order (the stream's file order), streaming and memory are the same training."""
  config = _config(tfds_dir)
  streams = classifier.open_streams(config.data)
  images, labels = streams.train.head(None)
  assert images.shape == (N_TRAIN, 32, 32, 1) and streams.num_train == N_TRAIN
  model = models.create_model("vgg", 10, **_SMALL)
  init = lambda: classifier.init_state(model, config, (32, 32, 1), 5, jax.random.PRNGKey(0))[0]
  cfg = training.loop_config(config, num_epochs=1)
  streamed = training.fit(name="s", workdir=str(tmp_path / "s"), state=init(),
                          train_step=training.classifier_train_step, cfg=cfg,
                          stream=dataclasses.replace(streams.train, shuffle=False))
  in_memory = training.fit(name="m", workdir=str(tmp_path / "m"), state=init(),
                           train_step=training.classifier_train_step, cfg=cfg,
                           stream=batching.ArrayStream(images, labels, shuffle=False))
  losses = [[s["train_loss"] for s in r.steps] for r in (streamed, in_memory)]
  assert len(losses[0]) == 5
  np.testing.assert_allclose(losses[0], losses[1], rtol=1e-6)
  for x, y in zip(jax.tree.leaves(streamed.state.params), jax.tree.leaves(in_memory.state.params)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)


def test_load_data_reads_a_bounded_head_of_the_stream_as_the_whole_loader_orders_it(
    tfds_dir, monkeypatch):
  want = sources.load_dataset("mnist", "tfds", data_dir=tfds_dir, max_train=13, max_test=5)
  _no_whole_split(monkeypatch)
  monkeypatch.setattr(sources.TfdsStream, "head", _HEAD)
  config = _config(tfds_dir)
  config.data.max_train, config.data.max_test = 13, 5
  ds = classifier.load_data(config.data)
  assert (ds.num_train, ds.num_test, ds.image_shape) == (13, 5, (32, 32, 1))
  for field in ("train_images", "train_labels", "test_images", "test_labels"):
    np.testing.assert_array_equal(getattr(ds, field), getattr(want, field))
  assert ds.class_names == want.class_names
  # The concept program's bound (max_images) cuts both splits further, to the same heads.
  reads = []
  monkeypatch.setattr(sources.TfdsStream, "local_batches",
                      _counting(sources.TfdsStream.local_batches, reads))
  small = classifier.load_data(config.data, max_images=4)
  assert (small.num_train, small.num_test) == (4, 4) and sum(reads) == 2 * 4
  np.testing.assert_array_equal(small.train_images, want.train_images[:4])
  np.testing.assert_array_equal(small.test_labels, want.test_labels[:4])


def _counting(local_batches, reads):
  """`local_batches` that appends each batch's number of real rows to `reads`."""

  def wrapped(self, batch_size, *args, **kwargs):
    for batch in local_batches(self, min(batch_size, 4), *args, **kwargs):
      reads.append(int(batch["mask"].sum()))
      yield batch

  return wrapped


def test_streamed_data_checks_its_config_before_reading(tfds_dir):
  config = _config(tfds_dir)
  config.data.dataset = "digits"
  with pytest.raises(ValueError, match="dataset 'digits' is not available from source 'tfds'"):
    classifier.open_streams(config.data)
  streams = classifier.open_streams(_config(tfds_dir).data)
  with pytest.raises(ValueError, match="streamed .tfds.; load it with load_data"):
    classifier.train_classifier(_config(tfds_dir), "/nonexistent", dataset=streams,
                                train_images=np.zeros((N_TRAIN, 32, 32, 1), np.float32))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_from_their_shards_and_score_the_whole_test_split(tfds_dir, tmp_path):
  """train.py as two processes of four CPU devices: each reads its shard of the train and test
  splits; the streamed test scores, summed over both, are those of the whole split in memory."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
  workdir, port = str(tmp_path / "run"), _free_port()
  procs = [subprocess.Popen(
      [sys.executable, os.path.join(root, "train.py"),
       f"--config={os.path.join(root, 'configs', 'classifier.py')}:source=tfds,dataset=mnist,"
       "epochs=1,batch=8", f"--workdir={workdir}", f"--config.data.data_dir={tfds_dir}",
       "--config.eval_batch_size=8", "--config.log_every_steps=1",
       f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={pid}"],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for pid in (0, 1)]
  for p in procs:
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-3000:]
  with open(os.path.join(workdir, "metrics", "classifier.json")) as f:
    metrics = json.load(f)
  assert [s["step"] for s in metrics["steps"]] == [1, 2, 3, 4, 5]  # a shard of 20, 4 a step
  model, variables, _, _ = classifier.restore_classifier(workdir)
  ds = sources.load_dataset("mnist", "tfds", data_dir=tfds_dir)
  mesh = training.make_mesh()
  state = training.replicate(training.create_train_state(
      model.apply, variables, training.create_optimizer("sgd", 0.1)), mesh)
  want = training.evaluate_arrays(training.classifier_eval_step, state, ds.test_images,
                                  ds.test_labels, 8, mesh)
  np.testing.assert_allclose(metrics["epochs"][-1]["test_accuracy"], want["accuracy"], rtol=1e-6)
  np.testing.assert_allclose(metrics["epochs"][-1]["test_loss"], want["loss"], rtol=1e-4)



def test_cladec_holds_a_bounded_head_of_the_tfds_stream(tfds_dir, tmp_path, monkeypatch):
  """ClaDec's plan (its data in memory) reads max_train / max_test images through the stream."""
  from configs import cladec as cladec_config  # pylint: disable=g-import-not-at-top
  from jaxconcepts.programs import cladec_plan  # pylint: disable=g-import-not-at-top
  want = sources.load_dataset("mnist", "tfds", data_dir=tfds_dir, max_train=16, max_test=8)
  _no_whole_split(monkeypatch)
  monkeypatch.setattr(sources.TfdsStream, "head", _HEAD)
  config = cladec_config.get_config("source=tfds,dataset=mnist,seeds=0")
  config.data.data_dir, config.data.max_train, config.data.max_test = tfds_dir, 16, 8
  plan = cladec_plan.prepare(config, str(tmp_path))
  assert (plan.dataset.num_train, plan.dataset.num_test) == (16, 8)
  np.testing.assert_array_equal(plan.dataset.train_images, want.train_images)
  np.testing.assert_array_equal(plan.dataset.test_labels, want.test_labels)
