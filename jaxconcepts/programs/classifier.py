"""The classifier program: validate a config, load data, train, restore, evaluate.

Used by `train.py` for `config.task == "classifier"`, by the ClaDec program
(the explained classifier and the evaluation classifiers) and by the concept
program (which explains a classifier restored from a workdir).

In a multi-host run every process runs the same program (training,
checkpoints and evaluation are collective); process 0 alone writes files:
config.json, TensorBoard events and results.

Data: IDX, digits and planted are held in memory (`data.Dataset`); a TFDS data
set is read as streams (`data.sources.TfdsStream`: each process its shard, a batch
at a time), so `run` trains from the train stream and scores the test split
streamed, its sums on the devices (`evaluate_stream`), never holding a split.
Programs that need images in memory (ClaDec, the concept program) call
`load_data`, which reads a TFDS split through the same stream but only its first
`data.max_train` / `data.max_test` examples (all of it when unset).

A trained classifier's workdir holds `config.json` (the config and what is
needed to rebuild the model: `dataset_info`) and `checkpoints/classifier`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable, Mapping, Sequence

from absl import logging
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import ml_collections
import numpy as np

from jaxconcepts import report
from jaxconcepts import utils
from jaxconcepts import data as data_lib
from jaxconcepts.data import sources
from jaxconcepts.models import classifiers as models
from jaxconcepts.models import split as split_lib
from jaxconcepts.train import checkpoints
from jaxconcepts.train import distributed
from jaxconcepts.train import trainer as training

CONFIG_FILE = "config.json"


def validate_data_and_arch(config: ml_collections.ConfigDict) -> None:
  """Checks `config.data.source`, `config.data.dataset` and `config.arch`.

  Raises:
    ValueError: naming the bad value and the valid choices.
  """
  utils.check_choice("source", config.data.source, data_lib.SOURCES)
  utils.check_choice("dataset", config.data.dataset, data_lib.DATASETS)
  utils.check_choice("arch", config.arch, models.ARCHS)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks names and numbers in a classifier config before anything runs.

  Raises:
    ValueError: naming the bad value and the valid choices.
  """
  validate_data_and_arch(config)
  utils.check_choice("optimizer", config.optimizer.name, ("sgd", "adam"))
  training.loop_config(config)  # epochs, batch size, intervals, keep_checkpoints, seed
  utils.check_int(config.eval_batch_size, "eval_batch_size", 1)
  if config.optimizer.learning_rate <= 0:
    raise ValueError(f"optimizer.learning_rate must be > 0, got {config.optimizer.learning_rate}")


@dataclasses.dataclass(frozen=True)
class StreamedData:
  """A TFDS data set as two streams, never read whole; where a program takes a
  `data.Dataset`, it stands in with the same descriptive fields.

  Attributes:
    name: the data set's name.
    train: the training split, shuffled per (seed, epoch).
    test: the test split, in file order.
    num_classes, class_names: as in `data.Dataset`.
    image_shape: (H, W, C) of the images the streams yield.
  """
  name: str
  train: sources.TfdsStream
  test: sources.TfdsStream
  num_classes: int
  class_names: tuple[str, ...]
  image_shape: tuple[int, int, int]

  @property
  def num_train(self) -> int:
    """Training examples per epoch over all processes (`TfdsStream.num_examples`)."""
    return self.train.num_examples

  @property
  def num_test(self) -> int:
    return self.test.num_examples


def is_streamed(data_config: ml_collections.ConfigDict) -> bool:
  """Whether `data_config` names a TFDS data set (read as a stream, never whole)."""
  return data_config.source == "tfds"


def open_streams(data_config: ml_collections.ConfigDict) -> StreamedData:
  """The TFDS data set of a `data` sub-config as streams; reads no image.

  `max_train` / `max_test` cut the splits (TFDS's "train[:N]").

  Raises:
    ValueError: a bad data config, or an empty split.
  """
  name, data_dir = data_config.dataset, data_config.get("data_dir")
  image_size = data_config.get("image_size", 32)
  max_train, max_test = data_config.get("max_train"), data_config.get("max_test")
  sources.check_source_arguments(name, "tfds", data_dir, image_size, max_train, max_test)
  cut = lambda split, n: split if n is None else f"{split}[:{n}]"
  train = sources.TfdsStream(name, cut("train", max_train), data_dir, image_size)
  test = dataclasses.replace(train, split=cut("test", max_test), shuffle=False)
  for stream in (train, test):
    if stream.num_examples == 0:
      raise ValueError(f"the {stream.split} split of {name} (tfds) is empty; every program "
                       "needs images in both splits")
  names = sources.CLASS_NAMES[name]
  return StreamedData(name, train, test, len(names), names, train.image_shape)


def open_data(data_config: ml_collections.ConfigDict) -> data_lib.Dataset | StreamedData:
  """The classifier program's data: TFDS as streams (`open_streams`), the rest in memory."""
  return open_streams(data_config) if is_streamed(data_config) else load_data(data_config)


def load_data(data_config: ml_collections.ConfigDict,
              max_images: int | None = None) -> data_lib.Dataset:
  """The data set of a `data` sub-config in host memory.

  TFDS is read through its streams (`TfdsStream.head`, in file order, as
  `data.load_dataset` orders it), at most `max_train` / `max_test` examples per
  split, and at most `max_images` (e.g. the concept program's bound on the
  images it explains): the programs that need images in memory bound them there.
  Other sources are loaded whole (`max_images` is not applied to them).
  """
  if is_streamed(data_config):
    s = open_streams(data_config)
    (x_train, y_train), (x_test, y_test) = s.train.head(max_images), s.test.head(max_images)
    return data_lib.Dataset(s.name, x_train, y_train, x_test, y_test, s.num_classes,
                            s.class_names)
  return data_lib.load_dataset(
      data_config.dataset, data_config.source, data_dir=data_config.get("data_dir"),
      image_size=data_config.get("image_size", 32), max_train=data_config.get("max_train"),
      max_test=data_config.get("max_test"))


def build_model(arch: str, num_classes: int, image_shape: Sequence[int], **kwargs: Any):
  """Creates the model and checks that it can take `image_shape`."""
  model = models.create_model(arch, num_classes, **kwargs)
  model.check_input_shape(tuple(image_shape))
  return model


def init_state(model: Any, config: ml_collections.ConfigDict, image_shape: Sequence[int],
               steps_per_epoch: int, key: jax.Array):
  """(TrainState, lr schedule) for the classifier described by `config`.

  The variables are initialised eagerly from `key` (as every run before did),
  so a config and key give the same initial weights.
  """
  variables = models.init_variables(model, key, image_shape)
  tx, lr_fn = training.optimizer_from_config(config.optimizer, steps_per_epoch,
                                             config.num_epochs)
  return training.create_train_state(model.apply, variables, tx), lr_fn


def dataset_info(arch: str, dataset: data_lib.Dataset) -> dict[str, Any]:
  """The `classifier` entry of config.json: what `restore_classifier` rebuilds the model from."""
  return {"classifier": {
      "arch": arch, "num_classes": dataset.num_classes, "image_shape": list(dataset.image_shape),
      "num_train": dataset.num_train, "dataset": dataset.name,
      "class_names": list(dataset.class_names)}}


def save_config(config: ml_collections.ConfigDict, workdir: str, extra: Mapping) -> None:
  """Writes the config and what is needed to rebuild the model to workdir/config.json.

  Process 0 only (in a multi-host run the others share the workdir).
  """
  if not distributed.is_main_process():
    return
  payload = {"config": json.loads(config.to_json_best_effort()), **extra}
  utils.write_json_atomic(os.path.join(workdir, CONFIG_FILE), payload)


def eval_scores_fn(images: np.ndarray, labels: np.ndarray, batch_size: int,
                   mesh: Mesh) -> Callable[[Any], dict[str, float]]:
  """`fit`'s eval_fn: state -> {"test_loss", "test_accuracy"} on (images, labels)."""

  def eval_fn(state):
    m = training.evaluate_arrays(training.classifier_eval_step, state, images, labels,
                                 batch_size, mesh)
    return {"test_loss": m["loss"], "test_accuracy": m["accuracy"]}

  return eval_fn


@functools.lru_cache(maxsize=None)
def _jit_sums(eval_step: Callable, mesh: Mesh) -> tuple[Callable, Callable]:
  """(`eval_step` jitted, a jitted pytree sum), their outputs replicated on `mesh`."""
  repl = distributed.replicated(mesh)
  return (jax.jit(eval_step, out_shardings=repl),
          jax.jit(lambda a, b: jax.tree.map(jnp.add, a, b), out_shardings=repl))


def evaluate_stream(eval_step: Callable[[Any, Any], Mapping[str, jax.Array]], state: Any,
                    stream: Any, batch_size: int, mesh: Mesh) -> dict[str, np.ndarray]:
  """Sums of `eval_step` over one pass of `stream`: `trainer.evaluate_arrays`'s streamed twin.

  Each process feeds its rows of every batch (`stream.local_batches`, e.g. its
  shard of a `TfdsStream`); the sums stay on the devices until the end, so no
  split is ever held on the host.

  Args:
    eval_step: `(state, batch) -> summed metrics` (scalars or arrays, e.g. per class).
    state: passed to every call.
    stream: `local_batches(batch_size, rows, *, seed, epoch)` as `TfdsStream` has.
    batch_size: rows per call, a multiple of the mesh's devices.
    mesh: the data-parallel mesh.

  Returns:
    {name: the metric summed over the stream} as numpy arrays.
  """
  training.check_batch_size(batch_size, mesh)
  step, add = _jit_sums(eval_step, mesh)
  local = stream.local_batches(batch_size, distributed.local_rows(mesh, batch_size), seed=0,
                               epoch=0)
  window, total = distributed.StepWindow(), None
  for batch in distributed.device_batches(local, mesh, batch_size):
    metrics = step(state, batch)
    window.push(metrics)
    total = metrics if total is None else add(total, metrics)
  return {k: np.asarray(v) for k, v in jax.device_get(total or {}).items()}


def stream_scores_fn(stream: Any, batch_size: int, mesh: Mesh) -> Callable[[Any], dict]:
  """`fit`'s eval_fn on a stream: state -> {"test_loss", "test_accuracy"}."""

  def eval_fn(state):
    m = training.summarize(evaluate_stream(training.classifier_eval_step, state, stream,
                                           batch_size, mesh))
    return {"test_loss": m["loss"], "test_accuracy": m["accuracy"]}

  return eval_fn


def train_classifier(config: ml_collections.ConfigDict, workdir: str, *,
                     name: str = "classifier",
                     dataset: data_lib.Dataset | StreamedData | None = None,
                     train_images: np.ndarray | None = None,
                     eval_images: np.ndarray | None = None) -> tuple[Any, training.FitResult]:
  """Trains (or resumes, or just restores) a classifier.

  Args:
    config: a classifier config (see configs/classifier.py).
    workdir: run directory; checkpoints under `checkpoints/<name>`.
    name: stage name (e.g. "classifier", "eval_cladec_conv4_seed0").
    dataset: the data (in memory, or `StreamedData`: trained from its train
      stream, scored on its test stream); `open_data(config.data)` if None.
    train_images: replaces `dataset.train_images` (same labels), e.g. the
      reconstructions an evaluation classifier is trained on (in memory only).
    eval_images: replaces `dataset.test_images` for the per-epoch test accuracy.

  Returns:
    (model, FitResult); `FitResult.state` holds params and batch_stats.
  """
  validate_config(config)
  dataset = dataset if dataset is not None else open_data(config.data)
  streamed = isinstance(dataset, StreamedData)
  if streamed and (train_images is not None or eval_images is not None):
    raise ValueError("train_images / eval_images replace images held in memory, but the data "
                     f"set {dataset.name} is streamed (tfds); load it with load_data")
  model = build_model(config.arch, dataset.num_classes, dataset.image_shape)
  cfg = training.loop_config(config)
  mesh = training.make_mesh(cfg.num_devices)
  training.check_batch_size(cfg.batch_size, mesh)
  training.check_batch_size(config.eval_batch_size, mesh)
  if streamed:
    data = {"stream": dataset.train}
    steps = dataset.train.num_batches(cfg.batch_size)
    eval_fn = stream_scores_fn(dataset.test, config.eval_batch_size, mesh)
  else:
    x_train = dataset.train_images if train_images is None else train_images
    x_test = dataset.test_images if eval_images is None else eval_images
    data = {"images": x_train, "labels": dataset.train_labels}
    steps = data_lib.num_batches(len(x_train), cfg.batch_size)
    eval_fn = eval_scores_fn(x_test, dataset.test_labels, config.eval_batch_size, mesh)
  state, lr_fn = init_state(model, config, dataset.image_shape, steps,
                            jax.random.PRNGKey(config.seed))
  logging.info("%s: %s on %s (%d train / %d test images%s, %s), %d epochs", name, config.arch,
               dataset.name, dataset.num_train if streamed else len(x_train),
               dataset.num_test, ", streamed" if streamed else "", dataset.image_shape,
               cfg.num_epochs)
  result = training.fit(name=name, workdir=workdir, state=state,
                        train_step=training.classifier_train_step, cfg=cfg, eval_fn=eval_fn,
                        lr_fn=lr_fn, **data)
  return model, result


def stage_config(parent: ml_collections.ConfigDict, num_epochs: int, seed: int,
                 sub: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A `configs/classifier.py`-style config for a classifier another program trains.

  Args:
    parent: the program's config: data, arch, eval batch size and loop knobs.
    num_epochs: epochs of this classifier.
    seed: its seed.
    sub: its sub-config (batch_size, optimizer), e.g. `parent.classifier`.
  """
  out = ml_collections.ConfigDict()
  out.task = "classifier"
  out.data = ml_collections.ConfigDict(parent.data.to_dict())
  out.arch = parent.arch
  out.num_epochs = int(num_epochs)
  out.batch_size = int(sub.batch_size)
  out.eval_batch_size = int(parent.eval_batch_size)
  out.seed = int(seed)
  out.optimizer = ml_collections.ConfigDict(sub.optimizer.to_dict())
  for key in ("checkpoint_every_steps", "keep_checkpoints", "log_every_steps", "num_devices"):
    out[key] = parent[key]
  out.eval_every_epochs = max(int(num_epochs), 1)
  return out


def check_trained_workdir(path: str) -> None:
  """FileNotFoundError unless `path` holds a trained classifier (config.json + checkpoint)."""
  train_cmd = f"python train.py --config=configs/classifier.py --workdir={path}"
  if not os.path.exists(os.path.join(path, CONFIG_FILE)):
    raise FileNotFoundError(f"classifier_workdir {path!r} has no {CONFIG_FILE}; "
                            f"train the classifier first: {train_cmd}")
  ckpt = checkpoints.stage_dir(path, "classifier")
  if checkpoints.latest_step(ckpt) is None:
    raise FileNotFoundError(f"classifier_workdir {path!r} has no classifier checkpoint under "
                            f"{ckpt}; train it first: {train_cmd}")


def check_matches(path: str, dataset: data_lib.Dataset, arch: str) -> None:
  """ValueError unless the classifier trained in `path` is `arch` on `dataset`."""
  info = utils.read_json(os.path.join(path, CONFIG_FILE))["classifier"]
  if (info["dataset"] != dataset.name or tuple(info["image_shape"]) != dataset.image_shape
      or info["arch"] != arch):
    raise ValueError(
        f"the classifier in {path!r} is a {info['arch']} on {info['dataset']} "
        f"{tuple(info['image_shape'])}, but the config asks for {arch} on "
        f"{dataset.name} {dataset.image_shape}")


def restore_variables(directory: str, model: Any, config: ml_collections.ConfigDict,
                      image_shape: Sequence[int], num_train: int,
                      snapshot: bool = False) -> Any | None:
  """{"params", "batch_stats"} of the newest checkpoint under `directory`, or None.

  Args:
    directory: a stage directory holding a TrainState (`snapshot=False`, as
      `train_classifier` saves) or bare variables (`snapshot=True`, as
      `train_snapshots` saves).
    model, config, image_shape, num_train: what the classifier was built and
      trained with (they fix the saved structure; nothing is initialised).
  """
  steps = data_lib.num_batches(num_train, config.batch_size)
  state = jax.eval_shape(lambda: init_state(model, config, image_shape, steps,
                                            jax.random.PRNGKey(0))[0])
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  restored = checkpoints.restore_latest(directory, variables if snapshot else state)
  if restored is None:
    return None
  if snapshot:
    return restored[0]
  return {"params": restored[0].params, "batch_stats": restored[0].batch_stats}


def snapshot_dir(workdir: str, name: str, epochs: int) -> str:
  """Where `train_snapshots` keeps the snapshot after `epochs` epochs."""
  return checkpoints.stage_dir(workdir, f"{name}_e{epochs}")


def train_snapshots(config: ml_collections.ConfigDict, workdir: str, dataset: data_lib.Dataset,
                    epochs: Sequence[int], *, name: str = "clf_sweep") -> dict[int, float]:
  """One classifier run, its variables saved after each of `epochs` epochs (0: untrained).

  The run is the stage `name` (resumable like any `fit`); the snapshot after
  E epochs goes to `snapshot_dir(workdir, name, E)`. The learning-rate
  schedule is the one of `config.num_epochs`, so every snapshot is a point of
  the same run.

  Returns:
    {E: seconds} for the snapshots made by this call (existing ones are kept).
  """
  model = build_model(config.arch, dataset.num_classes, dataset.image_shape)
  steps = data_lib.num_batches(dataset.num_train, config.batch_size)
  state, lr_fn = init_state(model, config, dataset.image_shape, steps,
                            jax.random.PRNGKey(config.seed))
  made = {}
  for e in sorted(epochs):
    snap = snapshot_dir(workdir, name, e)
    if checkpoints.latest_step(snap) is not None:
      continue
    t0 = time.time()
    snap_state = state
    if e > 0:
      loop = training.loop_config(config, num_epochs=e)
      eval_fn = eval_scores_fn(dataset.test_images, dataset.test_labels,
                               config.eval_batch_size, training.make_mesh(loop.num_devices))
      result = training.fit(name=name, workdir=workdir, state=state,
                            train_step=training.classifier_train_step,
                            images=dataset.train_images, labels=dataset.train_labels, cfg=loop,
                            eval_fn=eval_fn, lr_fn=lr_fn)
      snap_state = jax.device_get(result.state)
    checkpoints.save(snap, e, {"params": snap_state.params,
                               "batch_stats": snap_state.batch_stats})
    made[e] = time.time() - t0
  return made


def restore_classifier(workdir: str, name: str = "classifier"):
  """Rebuilds a trained classifier from `workdir/config.json` and its checkpoint.

  Returns:
    (model, variables {'params', 'batch_stats'}, config, info dict).

  Raises:
    FileNotFoundError: naming the missing config or checkpoint directory.
  """
  cfg_path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(cfg_path):
    raise FileNotFoundError(
        f"no classifier config at {cfg_path}; train one first with "
        f"`python train.py --config=configs/classifier.py --workdir={workdir}`")
  payload = utils.read_json(cfg_path)
  config = ml_collections.ConfigDict(payload["config"])
  info = payload["classifier"]
  model = build_model(info["arch"], info["num_classes"], info["image_shape"])
  steps = data_lib.num_batches(info["num_train"], config.batch_size)
  state, _ = init_state(model, config, info["image_shape"], steps, jax.random.PRNGKey(0))
  restored = checkpoints.restore_latest(checkpoints.stage_dir(workdir, name), state)
  if restored is None:
    raise FileNotFoundError(
        f"no checkpoint under {checkpoints.stage_dir(workdir, name)}; train the "
        f"classifier first (python train.py --config=configs/classifier.py --workdir={workdir})")
  state, step = restored
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  return model, variables, config, {**info, "step": step}


def run(config: ml_collections.ConfigDict, workdir: str) -> training.FitResult:
  """`train.py` entry for task "classifier"."""
  validate_config(config)
  dataset = open_data(config.data)
  build_model(config.arch, dataset.num_classes, dataset.image_shape)
  save_config(config, workdir, dataset_info(config.arch, dataset))
  _, result = train_classifier(config, workdir, dataset=dataset)
  return result


def _class_counts_step(model: Any, num_classes: int, variables: Any,
                       batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  """{"n": (classes,) images per label, "correct": (classes,) correctly predicted} of a
  padded batch {"image", "label", "mask"} (eval mode)."""
  logits = split_lib.logits_batch(model, variables, batch["image"])
  onehot = jax.nn.one_hot(batch["label"], num_classes) * batch["mask"][:, None]
  hit = (logits.argmax(-1) == batch["label"])[:, None]
  return {"n": onehot.sum(0), "correct": (onehot * hit).sum(0)}


def class_counts(model: Any, variables: Any, dataset: data_lib.Dataset | StreamedData,
                 batch_size: int, num_devices: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(images per class, correct per class) on the test split, each (classes,) int.

  A streamed data set is counted on the devices over its test stream
  (`evaluate_stream`), one held in memory from its logits.
  """
  k = dataset.num_classes
  if isinstance(dataset, StreamedData):
    mesh = training.make_mesh(num_devices)
    sums = evaluate_stream(functools.partial(_class_counts_step, model, k),
                           distributed.replicate(variables, mesh), dataset.test, batch_size,
                           mesh)
    return np.rint(sums["n"]).astype(int), np.rint(sums["correct"]).astype(int)
  preds = split_lib.predict_logits(model, variables, dataset.test_images, batch_size).argmax(-1)
  labels = dataset.test_labels
  return (np.bincount(labels, minlength=k),
          np.bincount(labels[preds == labels], minlength=k))


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """`evaluate.py` entry for task "classifier": accuracy per class, as JSON + MD (written
  by process 0; TFDS test splits are streamed, see `class_counts`)."""
  model, variables, train_config, info = restore_classifier(workdir)
  dataset = open_data(config.data)
  n, correct = class_counts(model, variables, dataset, config.eval_batch_size,
                            config.get("num_devices", 0))
  rows = [{"class": cname, "n": int(n[c]),
           "accuracy": float(correct[c] / n[c]) if n[c] else float("nan")}
          for c, cname in enumerate(dataset.class_names)]
  overall = float(correct.sum() / max(n.sum(), 1))
  rows.append({"class": "all", "n": int(n.sum()), "accuracy": overall})
  logging.info("test accuracy %.4f", overall)
  report.write_table(
      os.path.join(workdir, "results", "classifier"), rows,
      title=f"{info['arch']} on {dataset.name}: test accuracy",
      notes=[f"checkpoint step {info['step']}",
             f"trained {train_config.num_epochs} epochs, batch {train_config.batch_size}, "
             f"seed {train_config.seed}"])
  return {"test_accuracy": overall, "per_class": rows}
