"""A generic, resumable, data-parallel training loop and the classifier steps.

Shape modelled on google/flax `examples/imagenet/train.py`: small named pieces
(`create_learning_rate_fn`, `create_optimizer`, `create_train_state`,
`classifier_train_step`, `classifier_eval_step`) and one loop, `fit`, that any
stage (classifier, RefAE, ClaDec decoder, evaluation classifier) reuses.

`fit`:
* data-parallel over all local devices: a 1-D `jax.sharding.Mesh` over the
  batch axis; the batch is sharded, the state replicated, and XLA inserts the
  reductions (BatchNorm statistics are over the global batch, so 1 and 8
  devices compute the same function). The same code runs on one device;
* orbax `CheckpointManager` under `workdir/checkpoints/<name>`: saves every
  `checkpoint_every_steps` and at the end, keeps `keep_checkpoints`, and resumes
  automatically from the latest checkpoint. Everything that decides the next
  step (shuffling order from (seed, epoch), dropout keys from
  `fold_in(key, step)`) is a function of the step, so a resumed run is bitwise
  equal to an uninterrupted one on CPU;
* clu metric writer (TensorBoard scalars: loss, accuracy, learning rate,
  images/s) when TensorFlow is installed (`pip install jaxconcepts[tfds]`),
  otherwise a logging writer; a per-epoch JSON log `workdir/metrics/<name>.json`;
* progress lines (step, epoch, loss, images/s, ETA) every `log_every_steps`.
"""

import dataclasses
import json
import os
import time
from typing import Any, Callable, Iterator, Mapping

from absl import logging
import flax
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxconcepts.data import sources as data_lib

Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]


class TrainState(train_state.TrainState):
  """Flax TrainState plus BatchNorm statistics (empty dict if none)."""
  batch_stats: Any = flax.struct.field(default_factory=dict)


# ---------------------------------------------------------------------------
# Optimisers
# ---------------------------------------------------------------------------

def create_learning_rate_fn(base_lr: float, steps_per_epoch: int, num_epochs: int,
                            decay_fractions=(0.5, 0.75),
                            decay_factor: float = 0.1) -> optax.Schedule:
  """Step schedule: `base_lr`, multiplied by `decay_factor` at each fraction.

  The reference recipe decays twice by 0.1 over 64 epochs; with the default
  fractions that is at epochs 32 and 48.
  """
  total = num_epochs * steps_per_epoch
  boundaries = {max(1, int(f * total)): decay_factor for f in decay_fractions if 0 < f < 1}
  return optax.piecewise_constant_schedule(base_lr, boundaries)


def create_optimizer(name: str, learning_rate: optax.Schedule | float, *,
                     momentum: float = 0.9, weight_decay: float = 0.0,
                     nesterov: bool = False) -> optax.GradientTransformation:
  """PyTorch-equivalent SGD (momentum, L2 weight decay) or Adam (L2 decay).

  PyTorch adds `weight_decay * param` to the gradient before the update for
  both `SGD` and `Adam`; `add_decayed_weights` before the optimiser does the
  same (this is not AdamW).
  """
  if name == "sgd":
    opt = optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov)
  elif name == "adam":
    opt = optax.adam(learning_rate)
  else:
    raise ValueError(f"unknown optimizer {name!r}; valid optimizers: ['sgd', 'adam']")
  if weight_decay:
    return optax.chain(optax.add_decayed_weights(weight_decay), opt)
  return opt


def optimizer_from_config(opt: ml_collections.ConfigDict, steps_per_epoch: int,
                          num_epochs: int) -> tuple[optax.GradientTransformation,
                                                    optax.Schedule]:
  """Builds (optimizer, learning-rate schedule) from an `optimizer` sub-config.

  Fields: name ("sgd" | "adam"), learning_rate, momentum, weight_decay,
  decay_fractions, decay_factor.
  """
  lr_fn = create_learning_rate_fn(opt.learning_rate, steps_per_epoch, num_epochs,
                                  tuple(opt.get("decay_fractions", (0.5, 0.75))),
                                  opt.get("decay_factor", 0.1))
  tx = create_optimizer(opt.name, lr_fn, momentum=opt.get("momentum", 0.9),
                        weight_decay=opt.get("weight_decay", 0.0))
  return tx, lr_fn


def create_train_state(apply_fn: Callable, variables: Mapping[str, Any],
                       tx: optax.GradientTransformation) -> TrainState:
  """A TrainState from initialised {'params', 'batch_stats'?} variables."""
  return TrainState.create(apply_fn=apply_fn, params=variables["params"], tx=tx,
                           batch_stats=variables.get("batch_stats", {}))


# ---------------------------------------------------------------------------
# Classifier steps
# ---------------------------------------------------------------------------

def masked_cross_entropy(logits: jax.Array, labels: jax.Array,
                         mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(mean CE over valid rows, summed CE, number of correct valid rows)."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  m = mask.astype(logits.dtype)
  count = jnp.maximum(m.sum(), 1.0)
  correct = jnp.sum((jnp.argmax(logits, -1) == labels) * m)
  return jnp.sum(ce * m) / count, jnp.sum(ce * m), correct


def classifier_train_step(state: TrainState, batch: Batch,
                          key: jax.Array) -> tuple[TrainState, Metrics]:
  """One SGD step on cross-entropy. `key` drives dropout.

  Args:
    state: the classifier state.
    batch: {"image": (B, H, W, C) f32, "label": (B,) i32, "mask": (B,) bool}.
    key: PRNG key for this step.

  Returns:
    The new state and summed metrics {"loss", "correct", "count"}.
  """

  def loss_fn(params):
    logits, updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, batch["image"],
        train=True, rngs={"dropout": key}, mutable=["batch_stats"])
    loss, loss_sum, correct = masked_cross_entropy(logits, batch["label"], batch["mask"])
    return loss, (updates, loss_sum, correct)

  grads, (updates, loss_sum, correct) = jax.grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
  return state, {"loss": loss_sum, "correct": correct,
                 "count": batch["mask"].sum().astype(jnp.float32)}


def classifier_eval_step(state: TrainState, batch: Batch) -> Metrics:
  """Summed test metrics {"loss", "correct", "count"} in eval mode."""
  logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                          batch["image"], train=False)
  _, loss_sum, correct = masked_cross_entropy(logits, batch["label"], batch["mask"])
  return {"loss": loss_sum, "correct": correct,
          "count": batch["mask"].sum().astype(jnp.float32)}


def summarize(sums: Mapping[str, float]) -> dict[str, float]:
  """Turns summed metrics into means: loss / count, accuracy = correct / count."""
  count = max(float(sums["count"]), 1.0)
  out = {k: float(v) / count for k, v in sums.items() if k not in ("count", "correct")}
  if "correct" in sums:
    out["accuracy"] = float(sums["correct"]) / count
  return out


# ---------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------

def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D data-parallel mesh over the first `num_devices` local devices."""
  devices = jax.local_devices()
  n = len(devices) if num_devices in (None, 0) else int(num_devices)
  if not 1 <= n <= len(devices):
    raise ValueError(f"num_devices must be in [1, {len(devices)}], got {num_devices}")
  return Mesh(np.asarray(devices[:n]), ("data",))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  n = mesh.devices.size
  if batch_size < 1 or batch_size % n:
    raise ValueError(f"batch_size must be a positive multiple of the {n} devices in the "
                     f"mesh, got {batch_size}")


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Places a host batch on the mesh, split along the leading (batch) axis."""
  sharding = NamedSharding(mesh, P("data"))
  return {k: jax.device_put(v, sharding) for k, v in batch.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
  return jax.device_put(tree, NamedSharding(mesh, P()))


# ---------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------

class LoggingWriter:
  """Minimal stand-in for a clu MetricWriter when TensorFlow is absent."""

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    logging.info("[%d] %s", step, ", ".join(f"{k}={float(v):.5g}" for k, v in scalars.items()))

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    logging.info("hparams: %s", dict(hparams))

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


def create_writer(logdir: str):
  """clu's default writer (TensorBoard events + logging) or a logging writer."""
  try:
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
  except ImportError:
    logging.warning("TensorFlow is not installed, so no TensorBoard events are written "
                    "(pip install 'jaxconcepts[tfds]'); metrics go to the log and JSON.")
    return LoggingWriter()
  return metric_writers.create_default_writer(logdir, just_logging=jax.process_index() > 0)


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes JSON via a temporary file and rename, so readers never see half a file."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=False, default=float)
  os.replace(tmp, path)


# ---------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """Knobs of `fit` (read from the config's top level by `loop_config`)."""
  num_epochs: int
  batch_size: int
  seed: int = 0
  checkpoint_every_steps: int = 500
  keep_checkpoints: int = 2
  log_every_steps: int = 50
  num_devices: int | None = None
  eval_every_epochs: int = 1


def loop_config(config: ml_collections.ConfigDict, **overrides: Any) -> LoopConfig:
  fields = {f.name for f in dataclasses.fields(LoopConfig)}
  values = {k: config[k] for k in fields if k in config}
  values.update(overrides)
  return LoopConfig(**values)


@dataclasses.dataclass
class FitResult:
  state: Any
  history: list[dict[str, float]]
  resumed_from_step: int


def _checkpoint_manager(directory: str, cfg: LoopConfig) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=cfg.keep_checkpoints, save_interval_steps=1, create=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def restore_latest(directory: str, abstract_state: Any) -> tuple[Any, int] | None:
  """Restores the newest checkpoint under `directory` into `abstract_state`'s structure.

  Returns:
    (state, step), or None if there is no checkpoint.
  """
  if not os.path.isdir(directory):
    return None
  with ocp.CheckpointManager(os.path.abspath(directory)) as mngr:
    step = mngr.latest_step()
    if step is None:
      return None
    state = mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))
  return state, int(step)


def fit(*, name: str, workdir: str, state: Any,
        train_step: Callable[[Any, Batch, jax.Array], tuple[Any, Metrics]],
        images: np.ndarray, labels: np.ndarray, cfg: LoopConfig,
        eval_fn: Callable[[Any], Mapping[str, float]] | None = None,
        lr_fn: optax.Schedule | None = None) -> FitResult:
  """Trains `state` with `train_step` for `cfg.num_epochs`, resuming if possible.

  Args:
    name: stage name; checkpoints go to `workdir/checkpoints/<name>`, scalars
      are prefixed `<name>/`, the epoch log is `workdir/metrics/<name>.json`.
    workdir: the run directory.
    state: the initial state (a pytree with an integer `.step`).
    train_step: pure `(state, batch, key) -> (state, summed metrics)` with a
      "count" entry; it is jitted here.
    images: (N, H, W, C) training images; batches are {"image", "label",
      "mask"} dicts of `cfg.batch_size` rows (the last padded and masked).
    labels: (N,) int labels.
    cfg: loop knobs.
    eval_fn: called with the state after each `eval_every_epochs`, returns
      scalars (e.g. {"test_accuracy": ...}) that are logged and recorded.
    lr_fn: schedule to log the learning rate from.

  Returns:
    FitResult with the final state, per-epoch history and the resumed step.
  """
  mesh = make_mesh(cfg.num_devices)
  check_batch_size(cfg.batch_size, mesh)
  n = len(images)
  steps_per_epoch = data_lib.num_batches(n, cfg.batch_size)
  total_steps = steps_per_epoch * cfg.num_epochs
  ckpt_dir = os.path.join(workdir, "checkpoints", name)
  metrics_path = os.path.join(workdir, "metrics", f"{name}.json")

  history: list[dict[str, float]] = []
  resumed_from = 0
  restored = restore_latest(ckpt_dir, state)
  if restored is not None:
    state, resumed_from = restored
    if os.path.exists(metrics_path):
      with open(metrics_path) as f:
        history = [h for h in json.load(f)["epochs"]
                   if h["epoch"] * steps_per_epoch <= resumed_from]
    logging.info("%s: resumed from step %d of %d", name, resumed_from, total_steps)
  state = replicate(state, mesh)
  step = int(resumed_from)
  if step >= total_steps:
    logging.info("%s: already trained (%d steps)", name, step)
    return FitResult(state, history, resumed_from)

  writer = create_writer(os.path.join(workdir, "tensorboard", name))
  jit_step = jax.jit(train_step, donate_argnums=(0,))
  base_key = jax.random.PRNGKey(cfg.seed)
  sums: dict[str, float] = {}
  log_sums: dict[str, float] = {}
  t_log = time.perf_counter()
  t_start = t_log
  seen_since_log = 0
  steps_done_here = 0

  with _checkpoint_manager(ckpt_dir, cfg) as mngr:
    while step < total_steps:
      epoch, start_batch = divmod(step, steps_per_epoch)
      if start_batch == 0:
        sums = {}
      it: Iterator[dict] = data_lib.batches(
          images, labels, cfg.batch_size, shuffle=True, seed=cfg.seed,
          epoch=epoch, start_batch=start_batch)
      for host_batch in it:
        batch = shard_batch(host_batch, mesh)
        key = jax.random.fold_in(base_key, step)
        state, metrics = jit_step(state, batch, key)
        step += 1
        steps_done_here += 1
        metrics = jax.device_get(metrics)
        for k, v in metrics.items():
          sums[k] = sums.get(k, 0.0) + float(v)
          log_sums[k] = log_sums.get(k, 0.0) + float(v)
        seen_since_log += int(metrics["count"])
        if step % cfg.log_every_steps == 0 or step == total_steps:
          now = time.perf_counter()
          rate = seen_since_log / max(now - t_log, 1e-9)
          scalars = {f"{name}/train_{k}": v for k, v in summarize(log_sums).items()}
          scalars[f"{name}/images_per_sec"] = rate
          if lr_fn is not None:
            scalars[f"{name}/learning_rate"] = float(lr_fn(step))
          writer.write_scalars(step, scalars)
          eta = (total_steps - step) * (now - t_start) / max(steps_done_here, 1)
          logging.info("%s: step %d/%d (epoch %d) loss %.4f, %.0f images/s, ETA %.0fs",
                       name, step, total_steps, epoch + 1,
                       summarize(log_sums).get("loss", float("nan")), rate, eta)
          log_sums, seen_since_log, t_log = {}, 0, now
        end_of_epoch = step % steps_per_epoch == 0
        if step % cfg.checkpoint_every_steps == 0 or step == total_steps:
          mngr.save(step, args=ocp.args.StandardSave(state), force=True)
        if end_of_epoch:
          record = {"epoch": epoch + 1, "step": step,
                    **{f"train_{k}": v for k, v in summarize(sums).items()}}
          if eval_fn is not None and ((epoch + 1) % cfg.eval_every_epochs == 0
                                      or step == total_steps):
            scores = dict(eval_fn(state))
            record.update(scores)
            writer.write_scalars(step, {f"{name}/{k}": v for k, v in scores.items()})
            logging.info("%s: epoch %d %s", name, epoch + 1,
                         ", ".join(f"{k}={v:.4f}" for k, v in scores.items()))
          history.append(record)
          write_json_atomic(metrics_path, {"name": name, "epochs": history})
    mngr.wait_until_finished()
  writer.flush()
  return FitResult(state, history, resumed_from)


def evaluate_arrays(eval_step: Callable[[Any, Batch], Metrics], state: Any,
                    images: np.ndarray, labels: np.ndarray, batch_size: int,
                    mesh: Mesh | None = None) -> dict[str, float]:
  """Runs a jitted `eval_step` over all of (images, labels); returns means."""
  mesh = mesh or make_mesh()
  check_batch_size(batch_size, mesh)
  step = jax.jit(eval_step)
  sums: dict[str, float] = {}
  for host_batch in data_lib.batches(images, labels, batch_size, shuffle=False):
    metrics = jax.device_get(step(state, shard_batch(host_batch, mesh)))
    for k, v in metrics.items():
      sums[k] = sums.get(k, 0.0) + float(v)
  return summarize(sums)
