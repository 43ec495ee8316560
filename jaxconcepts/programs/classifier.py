"""The classifier stage: validate a config, load data, train, restore, evaluate.

Used by `train.py` for `config.task == "classifier"`, by the ClaDec pipeline
(the explained classifier and the evaluation classifiers) and by the concept
pipeline (which explains a classifier restored from a workdir).
"""

import json
import os
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np

from jaxconcepts.programs import config_utils
from jaxconcepts.data import sources as data_lib
from jaxconcepts.models import classifiers as models
from jaxconcepts import report
from jaxconcepts.train import trainer as training

CONFIG_FILE = "config.json"


def validate_data_and_arch(config: ml_collections.ConfigDict) -> None:
  """Checks `config.data.source`, `config.data.dataset` and `config.arch`.

  Raises:
    ValueError: naming the bad value and the valid choices.
  """
  config_utils.check_choice("source", config.data.source, data_lib.SOURCES)
  config_utils.check_choice("dataset", config.data.dataset, data_lib.DATASETS)
  config_utils.check_choice("arch", config.arch, models.ARCHS)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks names and numbers in a classifier config before anything runs.

  Raises:
    ValueError: naming the bad value and the valid choices.
  """
  validate_data_and_arch(config)
  config_utils.check_choice("optimizer", config.optimizer.name, ("sgd", "adam"))
  for key in ("num_epochs", "batch_size"):
    if int(config[key]) < 1:
      raise ValueError(f"{key} must be >= 1, got {config[key]}")
  if config.optimizer.learning_rate <= 0:
    raise ValueError(f"optimizer.learning_rate must be > 0, got {config.optimizer.learning_rate}")


def load_data(data_config: ml_collections.ConfigDict) -> data_lib.Dataset:
  """Loads the dataset described by a `data` sub-config."""
  return data_lib.load_dataset(
      data_config.dataset, data_config.source, data_dir=data_config.get("data_dir"),
      image_size=data_config.get("image_size", 32), max_train=data_config.get("max_train"),
      max_test=data_config.get("max_test"))


def build_model(arch: str, num_classes: int, image_shape, **kwargs: Any):
  """Creates the model and checks that it can take `image_shape`."""
  model = models.create_model(arch, num_classes, **kwargs)
  model.check_input_shape(tuple(image_shape))
  return model


def init_state(model, config: ml_collections.ConfigDict, image_shape,
               steps_per_epoch: int, key: jax.Array):
  """(TrainState, lr schedule) for the classifier described by `config`."""
  variables = models.init_variables(model, key, image_shape)
  tx, lr_fn = training.optimizer_from_config(config.optimizer, steps_per_epoch,
                                             config.num_epochs)
  return training.create_train_state(model.apply, variables, tx), lr_fn


def save_config(config: ml_collections.ConfigDict, workdir: str, extra: dict) -> None:
  """Writes the config and what is needed to rebuild the model to workdir/config.json."""
  payload = {"config": json.loads(config.to_json_best_effort()), **extra}
  training.write_json_atomic(os.path.join(workdir, CONFIG_FILE), payload)


def train_classifier(config: ml_collections.ConfigDict, workdir: str, *,
                     name: str = "classifier", dataset: data_lib.Dataset | None = None,
                     train_images: np.ndarray | None = None,
                     eval_images: np.ndarray | None = None) -> tuple[Any, training.FitResult]:
  """Trains (or resumes, or just restores) a classifier.

  Args:
    config: a classifier config (see configs/classifier.py).
    workdir: run directory; checkpoints under `checkpoints/<name>`.
    name: stage name (e.g. "classifier", "eval_cladec_conv4_seed0").
    dataset: the data; loaded from `config.data` if None.
    train_images: replaces `dataset.train_images` (same labels), e.g. the
      reconstructions an evaluation classifier is trained on.
    eval_images: replaces `dataset.test_images` for the per-epoch test accuracy.

  Returns:
    (model, FitResult); `FitResult.state` holds params and batch_stats.
  """
  validate_config(config)
  dataset = dataset if dataset is not None else load_data(config.data)
  x_train = dataset.train_images if train_images is None else train_images
  x_test = dataset.test_images if eval_images is None else eval_images
  model = build_model(config.arch, dataset.num_classes, dataset.image_shape)
  cfg = training.loop_config(config)
  mesh = training.make_mesh(cfg.num_devices)
  training.check_batch_size(cfg.batch_size, mesh)
  training.check_batch_size(config.eval_batch_size, mesh)
  steps = data_lib.num_batches(len(x_train), cfg.batch_size)
  state, lr_fn = init_state(model, config, dataset.image_shape, steps,
                            jax.random.PRNGKey(config.seed))

  def eval_fn(state):
    m = training.evaluate_arrays(training.classifier_eval_step, state, x_test,
                                 dataset.test_labels, config.eval_batch_size, mesh)
    return {"test_loss": m["loss"], "test_accuracy": m["accuracy"]}

  logging.info("%s: %s on %s (%d train / %d test images, %s), %d epochs", name, config.arch,
               dataset.name, len(x_train), len(x_test), dataset.image_shape, cfg.num_epochs)
  result = training.fit(name=name, workdir=workdir, state=state,
                        train_step=training.classifier_train_step, images=x_train,
                        labels=dataset.train_labels, cfg=cfg, eval_fn=eval_fn, lr_fn=lr_fn)
  return model, result


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
  with open(cfg_path) as f:
    payload = json.load(f)
  config = ml_collections.ConfigDict(payload["config"])
  info = payload["classifier"]
  model = build_model(info["arch"], info["num_classes"], info["image_shape"])
  steps = data_lib.num_batches(info["num_train"], config.batch_size)
  state, _ = init_state(model, config, info["image_shape"], steps, jax.random.PRNGKey(0))
  restored = training.restore_latest(os.path.join(workdir, "checkpoints", name), state)
  if restored is None:
    raise FileNotFoundError(
        f"no checkpoint under {os.path.join(workdir, 'checkpoints', name)}; train the "
        f"classifier first (python train.py --config=configs/classifier.py --workdir={workdir})")
  state, step = restored
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  return model, variables, config, {**info, "step": step}


def run(config: ml_collections.ConfigDict, workdir: str) -> training.FitResult:
  """`train.py` entry for task "classifier"."""
  validate_config(config)
  dataset = load_data(config.data)
  build_model(config.arch, dataset.num_classes, dataset.image_shape)
  save_config(config, workdir, {"classifier": {
      "arch": config.arch, "num_classes": dataset.num_classes,
      "image_shape": list(dataset.image_shape), "num_train": dataset.num_train,
      "dataset": dataset.name, "class_names": list(dataset.class_names)}})
  _, result = train_classifier(config, workdir, dataset=dataset)
  return result


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """`evaluate.py` entry for task "classifier": accuracy per class, as JSON + MD."""
  model, variables, train_config, info = restore_classifier(workdir)
  dataset = load_data(config.data)
  predict = jax.jit(lambda x: jax.numpy.argmax(model.apply(variables, x), -1))
  preds = []
  for batch in data_lib.batches(dataset.test_images, dataset.test_labels,
                                config.eval_batch_size, shuffle=False):
    preds.append(np.asarray(predict(batch["image"]))[batch["mask"]])
  preds = np.concatenate(preds)
  labels = dataset.test_labels
  rows = []
  for c, cname in enumerate(dataset.class_names):
    sel = labels == c
    rows.append({"class": cname, "n": int(sel.sum()),
                 "accuracy": float((preds[sel] == c).mean()) if sel.any() else float("nan")})
  overall = float((preds == labels).mean())
  rows.append({"class": "all", "n": int(len(labels)), "accuracy": overall})
  report.write_table(
      os.path.join(workdir, "results", "classifier"), rows,
      title=f"{info['arch']} on {dataset.name}: test accuracy",
      notes=[f"checkpoint step {info['step']}",
             f"trained {train_config.num_epochs} epochs, batch {train_config.batch_size}, "
             f"seed {train_config.seed}"])
  logging.info("test accuracy %.4f", overall)
  return {"test_accuracy": overall, "per_class": rows}
