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
* orbax checkpoints under `workdir/checkpoints/<name>` (see `checkpoints.py`):
  saved every `checkpoint_every_steps` and at the end, the newest
  `keep_checkpoints` kept, resumed automatically from the latest. Everything
  that decides the next step (shuffling order from (seed, epoch), dropout keys
  from `fold_in(key, step)`) is a function of the step, so a resumed run is
  bitwise equal to an uninterrupted one on CPU;
* clu metric writer (TensorBoard scalars: loss, accuracy, learning rate,
  images/s) when TensorFlow is installed (`pip install jaxconcepts[tfds]`),
  otherwise a logging writer; a per-epoch JSON log `workdir/metrics/<name>.json`;
* progress lines (step, epoch, loss, images/s, ETA) every `log_every_steps`.

Weights are always arguments of the jitted functions here (the train state),
never constants closed over, so a new checkpoint of the same architecture
reuses the compilation (`models.split.predict_logits` applies a restored
classifier the same way).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Callable, Mapping, Sequence

from absl import logging
import flax
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxconcepts import utils
from jaxconcepts import data as data_lib
from jaxconcepts.train import checkpoints

Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]


class TrainState(train_state.TrainState):
  """Flax TrainState plus BatchNorm statistics (empty dict if none)."""
  batch_stats: Any = flax.struct.field(default_factory=dict)


# ---------------------------------------------------------------------------
# Optimisers
# ---------------------------------------------------------------------------

def create_learning_rate_fn(base_lr: float, steps_per_epoch: int, num_epochs: int,
                            decay_fractions: Sequence[float] = (0.5, 0.75),
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

  Raises:
    ValueError: for an optimizer other than "sgd" or "adam".
  """
  utils.check_choice("optimizer", name, ("sgd", "adam"))
  if name == "sgd":
    opt = optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov)
  else:
    opt = optax.adam(learning_rate)
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
  """Cross-entropy over the valid rows of a padded batch.

  Args:
    logits: (B, classes) float.
    labels: (B,) int.
    mask: (B,) bool, False on padding rows.

  Returns:
    (mean CE over valid rows, summed CE, number of correct valid rows), scalars.
  """
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


def _accumulate(sums: dict[str, float], metrics: Mapping[str, Any]) -> None:
  """Adds one step's summed metrics (host values) into `sums`, in place."""
  for k, v in metrics.items():
    sums[k] = sums.get(k, 0.0) + float(v)


# ---------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------

def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D data-parallel mesh over the first `num_devices` local devices (0/None: all)."""
  devices = jax.local_devices()
  n = len(devices) if num_devices in (None, 0) else int(num_devices)
  if not 1 <= n <= len(devices):
    raise ValueError(f"num_devices must be in [1, {len(devices)}], got {num_devices}")
  return Mesh(np.asarray(devices[:n]), ("data",))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """Raises ValueError unless `batch_size` is a positive multiple of the mesh's devices."""
  n = mesh.devices.size
  if batch_size < 1 or batch_size % n:
    raise ValueError(f"batch_size must be a positive multiple of the {n} devices in the "
                     f"mesh, got {batch_size}")


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Places a host batch on the mesh, split along the leading (batch) axis."""
  sharding = NamedSharding(mesh, P("data"))
  return {k: jax.device_put(v, sharding) for k, v in batch.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf of `tree` on all devices of the mesh."""
  return jax.device_put(tree, NamedSharding(mesh, P()))


def enable_compilation_cache(directory: str | None, workdir: str) -> str | None:
  """Turns on JAX's persistent compilation cache unless it is set already.

  A program with many stages, run again to resume, or followed by its
  evaluation, then reloads the programs compiled before instead of compiling
  them again.

  Args:
    directory: the cache directory; None: `<workdir>/xla_cache`; "": off.
    workdir: the run directory.

  Returns:
    The cache directory in use, or None.
  """
  current = jax.config.jax_compilation_cache_dir
  if current:
    return current
  if directory == "":
    return None
  path = os.path.abspath(os.path.expanduser(directory or os.path.join(workdir, "xla_cache")))
  jax.config.update("jax_compilation_cache_dir", path)
  return path


# ---------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------

class NullWriter:
  """A clu-MetricWriter stand-in that writes nothing (no TensorFlow, or not process 0)."""

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    del step, scalars

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    del hparams

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


def create_writer(logdir: str):
  """TensorBoard event files through clu's `SummaryWriter`, on process 0 only.

  The loop logs its own progress and evaluation lines, so the writer does not
  log (clu's default writer would print every scalar a second time). Without
  TensorFlow (the `tfds` extra) no events are written and this says so once.
  """
  if jax.process_index() > 0:
    return NullWriter()
  try:
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
    return metric_writers.SummaryWriter(logdir)
  except (ImportError, AttributeError):
    logging.warning("TensorFlow is not installed, so no TensorBoard events are written "
                    "(pip install 'jaxconcepts[tfds]'); metrics go to the log and JSON.")
    return NullWriter()


class _ProgressLog:
  """The progress line: metric sums and images seen since the last line, and the ETA."""

  def __init__(self, name: str, writer: Any, lr_fn: optax.Schedule | None,
               total_steps: int, every: int):
    self.name, self.writer, self.lr_fn = name, writer, lr_fn
    self.total_steps, self.every = total_steps, every
    self.sums: dict[str, float] = {}
    self.seen = 0
    self.steps_done = 0
    self.t_start = self.t_last = time.perf_counter()

  def add(self, step: int, epoch: int, metrics: Mapping[str, Any]) -> None:
    """Records the metrics of the step that ended at `step`; writes a line when due."""
    _accumulate(self.sums, metrics)
    self.seen += int(metrics["count"])
    self.steps_done += 1
    if step % self.every == 0 or step == self.total_steps:
      self._write(step, epoch)

  def _write(self, step: int, epoch: int) -> None:
    now = time.perf_counter()
    rate = self.seen / max(now - self.t_last, 1e-9)
    means = summarize(self.sums)
    scalars = {f"{self.name}/train_{k}": v for k, v in means.items()}
    scalars[f"{self.name}/images_per_sec"] = rate
    if self.lr_fn is not None:
      scalars[f"{self.name}/learning_rate"] = float(self.lr_fn(step))
    self.writer.write_scalars(step, scalars)
    eta = (self.total_steps - step) * (now - self.t_start) / max(self.steps_done, 1)
    logging.info("%s: step %d/%d (epoch %d) loss %.4f, %.0f images/s, ETA %.0fs", self.name,
                 step, self.total_steps, epoch + 1, means.get("loss", float("nan")), rate, eta)
    self.sums, self.seen, self.t_last = {}, 0, now


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

  def __post_init__(self):
    """One-line errors before any work: a 0 interval would divide by zero after a step, and
    keep_checkpoints=0 would let orbax delete the trained model."""
    for name in ("num_epochs", "batch_size", "checkpoint_every_steps", "keep_checkpoints",
                 "log_every_steps", "eval_every_epochs"):
      utils.check_int(getattr(self, name), name, 1)
    utils.check_int(self.seed, "seed", 0)


def loop_config(config: ml_collections.ConfigDict, **overrides: Any) -> LoopConfig:
  """A LoopConfig from the config's top-level fields of the same names, then `overrides`."""
  fields = {f.name for f in dataclasses.fields(LoopConfig)}
  values = {k: config[k] for k in fields if k in config}
  values.update(overrides)
  return LoopConfig(**values)


@dataclasses.dataclass
class FitResult:
  """What `fit` returns: the final state, the per-epoch log, and the step it resumed from."""
  state: Any
  history: list[dict[str, float]]
  resumed_from_step: int


@dataclasses.dataclass(frozen=True)
class _Run:
  """Everything constant during one `fit` call."""
  name: str
  cfg: LoopConfig
  mesh: Mesh
  step_fn: Callable
  step_args: tuple
  images: np.ndarray
  labels: np.ndarray
  steps_per_epoch: int
  total_steps: int
  metrics_path: str
  eval_fn: Callable[[Any], Mapping[str, float]] | None


def _jit_step(train_step: Callable) -> Callable:
  """`train_step` jitted with the state donated, unless it is jitted already.

  A step that is jitted already (has `.lower`), or a `functools.partial` of
  one (e.g. a module-level `jax.jit` step with its static description bound),
  is used as it is: it keeps its own compilation cache, so every stage with
  the same shapes reuses one compilation. Wrapping it in a new `jax.jit`
  would compile once per stage. The state's `apply_fn` and `tx` are part of
  its tree structure, hence of that cache's key: stages that should share a
  compilation must share those objects too.
  """
  inner = train_step.func if isinstance(train_step, functools.partial) else train_step
  if hasattr(inner, "lower"):
    return train_step
  return jax.jit(train_step, donate_argnums=(0,))


def _resume(run: _Run, ckpt_dir: str, state: Any) -> tuple[Any, list[dict[str, float]], int]:
  """(state, history, step) from the latest checkpoint, or the initial state at step 0."""
  restored = checkpoints.restore_latest(ckpt_dir, state)
  if restored is None:
    return state, [], 0
  state, resumed_from = restored
  history = []
  if os.path.exists(run.metrics_path):
    history = [h for h in utils.read_json(run.metrics_path)["epochs"]
               if h["epoch"] * run.steps_per_epoch <= resumed_from]
  logging.info("%s: resumed from step %d of %d", run.name, resumed_from, run.total_steps)
  return state, history, resumed_from


def _end_of_epoch(run: _Run, writer: Any, state: Any, step: int, epoch: int,
                  sums: Mapping[str, float]) -> dict[str, float]:
  """The epoch's record: train means, and the `eval_fn` scores when due (logged)."""
  record = {"epoch": epoch + 1, "step": step,
            **{f"train_{k}": v for k, v in summarize(sums).items()}}
  if run.eval_fn is not None and ((epoch + 1) % run.cfg.eval_every_epochs == 0
                                  or step == run.total_steps):
    scores = dict(run.eval_fn(state))
    record.update(scores)
    writer.write_scalars(step, {f"{run.name}/{k}": v for k, v in scores.items()})
    logging.info("%s: epoch %d %s", run.name, epoch + 1,
                 ", ".join(f"{k}={v:.4f}" for k, v in scores.items()))
  return record


def _train_epoch(run: _Run, state: Any, step: int, mngr: Any, progress: _ProgressLog,
                 history: list[dict[str, float]]) -> tuple[Any, int]:
  """Trains from `step` to the end of its epoch; checkpoints and logs on the way."""
  epoch, start_batch = divmod(step, run.steps_per_epoch)
  base_key = jax.random.PRNGKey(run.cfg.seed)
  sums: dict[str, float] = {}
  for host_batch in data_lib.batches(run.images, run.labels, run.cfg.batch_size, shuffle=True,
                                     seed=run.cfg.seed, epoch=epoch, start_batch=start_batch):
    batch = shard_batch(host_batch, run.mesh)
    key = jax.random.fold_in(base_key, step)
    state, metrics = run.step_fn(state, batch, key, *run.step_args)
    step += 1
    metrics = jax.device_get(metrics)
    _accumulate(sums, metrics)
    progress.add(step, epoch, metrics)
    if step % run.cfg.checkpoint_every_steps == 0 or step == run.total_steps:
      checkpoints.save_step(mngr, step, state)
  history.append(_end_of_epoch(run, progress.writer, state, step, epoch, sums))
  utils.write_json_atomic(run.metrics_path, {"name": run.name, "epochs": history})
  return state, step


def fit(*, name: str, workdir: str, state: Any, train_step: Callable[..., tuple[Any, Metrics]],
        images: np.ndarray, labels: np.ndarray, cfg: LoopConfig,
        eval_fn: Callable[[Any], Mapping[str, float]] | None = None,
        lr_fn: optax.Schedule | None = None, step_args: Sequence[Any] = ()) -> FitResult:
  """Trains `state` with `train_step` for `cfg.num_epochs`, resuming if possible.

  Args:
    name: stage name; checkpoints go to `workdir/checkpoints/<name>`, scalars
      are prefixed `<name>/`, the epoch log is `workdir/metrics/<name>.json`.
    workdir: the run directory.
    state: the initial state (a pytree with an integer `.step`).
    train_step: pure `(state, batch, key, *step_args) -> (state, summed
      metrics)` with a "count" entry; jitted here (state donated) unless it is
      jitted already (see `_jit_step`).
    images: (N, H, W, C) training images (or any (N, ...) rows); batches are
      {"image", "label", "mask"} dicts of `cfg.batch_size` rows (the last
      padded and masked).
    labels: (N,) int labels.
    cfg: loop knobs.
    eval_fn: called with the state after each `eval_every_epochs`, returns
      scalars (e.g. {"test_accuracy": ...}) that are logged and recorded.
    lr_fn: schedule to log the learning rate from.
    step_args: extra arguments of every step, e.g. a frozen model's variables
      (traced, so a new checkpoint does not recompile the step); replicated
      on the mesh like the state.

  Returns:
    FitResult with the final state, per-epoch history and the resumed step.
  """
  mesh = make_mesh(cfg.num_devices)
  check_batch_size(cfg.batch_size, mesh)
  steps_per_epoch = data_lib.num_batches(len(images), cfg.batch_size)
  run = _Run(name=name, cfg=cfg, mesh=mesh, step_fn=_jit_step(train_step),
             step_args=replicate(tuple(step_args), mesh), images=images, labels=labels,
             steps_per_epoch=steps_per_epoch, total_steps=steps_per_epoch * cfg.num_epochs,
             metrics_path=os.path.join(workdir, "metrics", f"{name}.json"), eval_fn=eval_fn)
  ckpt_dir = checkpoints.stage_dir(workdir, name)
  state, history, resumed_from = _resume(run, ckpt_dir, state)
  state = replicate(state, mesh)
  if resumed_from >= run.total_steps:
    logging.info("%s: already trained (%d steps)", name, resumed_from)
    return FitResult(state, history, resumed_from)
  writer = create_writer(os.path.join(workdir, "tensorboard", name))
  progress = _ProgressLog(name, writer, lr_fn, run.total_steps, cfg.log_every_steps)
  step = resumed_from
  with checkpoints.manager(ckpt_dir, cfg.keep_checkpoints) as mngr:
    while step < run.total_steps:
      state, step = _train_epoch(run, state, step, mngr, progress, history)
    mngr.wait_until_finished()
  checkpoints.prune_finished(ckpt_dir, run.total_steps)
  writer.flush()
  return FitResult(state, history, resumed_from)


def evaluate_arrays(eval_step: Callable[[Any, Batch], Metrics], state: Any,
                    images: np.ndarray, labels: np.ndarray, batch_size: int,
                    mesh: Mesh | None = None) -> dict[str, float]:
  """Means of a summed-metrics `eval_step` over all of (images, labels).

  Uses the padded, masked batches of `data.sources.batches` (the same as
  training), so the step sees one shape and its masked sums count real rows
  only; each batch is sharded over `mesh`.

  Args:
    eval_step: `(state, batch) -> summed metrics` with a "count" entry; jitted
      here (a module-level step compiles once per shape).
    state: passed to every call.
    images: (N, H, W, C); labels: (N,) int.
    batch_size: rows per call, a multiple of the mesh's devices.
    mesh: default: all local devices.

  Returns:
    The means of `summarize` (e.g. {"loss", "accuracy"}).
  """
  mesh = mesh or make_mesh()
  check_batch_size(batch_size, mesh)
  step = jax.jit(eval_step)
  sums: dict[str, float] = {}
  for host_batch in data_lib.batches(images, labels, batch_size, shuffle=False):
    _accumulate(sums, jax.device_get(step(state, shard_batch(host_batch, mesh))))
  return summarize(sums)
