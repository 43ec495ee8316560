"""A generic, resumable, data-parallel training loop and the classifier steps.

Shape modelled on google/flax `examples/imagenet/train.py`: small named pieces
(`create_learning_rate_fn`, `create_optimizer`, `create_train_state`,
`classifier_train_step`, `classifier_eval_step`) and one loop, `fit`, that any
stage (classifier, RefAE, ClaDec decoder, evaluation classifier) reuses.

`fit`:
* data-parallel over a 1-D `jax.sharding.Mesh` on the batch axis: all local
  devices, or every process's devices in a multi-process run
  (`distributed.py`); the batch is sharded, the state replicated, and XLA
  inserts the reductions (BatchNorm statistics are over the global batch, so
  1 and 8 devices, in one process or two, compute the same function). Our
  jitted step donates the state and names its in/out shardings;
* fed for an accelerator: each process reads only its rows of every batch
  (in memory, or streamed from TFDS), and the next batch is already on its
  way to the devices while the current step runs (`distributed.device_batches`);
  metrics are summed on the devices and reach the host only at a log line
  (every `log_every_steps`) and at the end of an epoch, so the host never
  stalls the device's asynchronous dispatch;
* orbax checkpoints under `workdir/checkpoints/<name>` (see `checkpoints.py`),
  written by every process together: saved every `checkpoint_every_steps` and
  at the end, the newest `keep_checkpoints` kept, resumed automatically from
  the latest. Everything that decides the next step (shuffling order from
  (seed, epoch), dropout keys from `fold_in(key, step)`) is a function of the
  step, so a resumed run is bitwise equal to an uninterrupted one on CPU;
* on process 0: `workdir/metrics/<name>.json` (a record per epoch, an entry per
  log line) and, with TensorFlow (the `tfds` extra), TensorBoard scalars through
  clu's writer and progress through clu's `periodic_actions` (`ReportProgress`;
  with `LoopConfig.profile`, `Profile`).

Weights are always arguments of the jitted functions here (the train state), never
constants closed over, so a new checkpoint of the same architecture reuses the compilation.
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
from jax.sharding import Mesh

from jaxconcepts import utils
from jaxconcepts import data as data_lib
from jaxconcepts.data import batching
from jaxconcepts.train import checkpoints
from jaxconcepts.train import distributed
from jaxconcepts.train import writers

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


# ---------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------

def make_mesh(num_devices: int | None = None) -> Mesh:
  """The 1-D data-parallel mesh: the first `num_devices` local devices (0/None: all), or
  every process's devices in a multi-process run (`distributed.global_mesh`)."""
  return distributed.global_mesh(num_devices)


check_batch_size = distributed.check_batch_size


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Places a whole host batch on the mesh, split along the leading (batch) axis.

  Each process contributes only its own rows (`distributed.local_rows`).
  """
  size = int(np.shape(next(iter(batch.values())))[0])
  rows = distributed.local_rows(mesh, size)
  return distributed.to_global({k: np.asarray(v)[rows] for k, v in batch.items()}, mesh, size)


def replicate(tree: Any, mesh: Mesh, copy: bool = False) -> Any:
  """Places every leaf of `tree` on all devices of the mesh (`distributed.replicate`)."""
  return distributed.replicate(tree, mesh, copy)


@functools.lru_cache(maxsize=None)
def _key_fn(mesh: Mesh) -> Callable[[jax.Array, np.ndarray], jax.Array]:
  """`fold_in(key, step)` replicated on the mesh (a step's PRNG key, valid on every process)."""
  return jax.jit(jax.random.fold_in, out_shardings=distributed.replicated(mesh))


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


class _Progress:
  """What the loop reports while it trains, with one host sync per log line.

  Metrics are summed on the devices (`distributed.DeviceSums`); every `log_every_steps` (and at
  the last step) the window's means become one log line, TensorBoard scalars
  and an entry of the step log; clu's actions (with TensorFlow) add steps/s,
  the ETA and, with `LoopConfig.profile`, a trace in `workdir/profile/<name>`.
  """

  def __init__(self, run: "_Run", writer: Any, lr_fn: optax.Schedule | None,
               steps_log: list[dict[str, float]], profile_dir: str):
    self.run, self.writer, self.lr_fn, self.steps_log = run, writer, lr_fn, steps_log
    self.sums = distributed.DeviceSums(run.mesh)
    self.t_last = time.perf_counter()
    actions = writers.periodic_actions()
    self.actions = [] if actions is None else [actions.ReportProgress(
        num_train_steps=run.total_steps, every_steps=run.cfg.log_every_steps, every_secs=None,
        writer=writer)]
    if run.cfg.profile and distributed.is_main_process():
      if actions is None:  # clu's Profile comes with its writers, which need TensorFlow
        logging.warning("profile: clu's Profile needs TensorFlow ('jaxconcepts[tfds]')")
      else:
        self.actions.append(actions.Profile(logdir=profile_dir, num_profile_steps=5,
                                            every_secs=None))

  def step_done(self, step: int, epoch: int, metrics: Metrics) -> None:
    """Records the metrics of the step that ended at `step`; writes a line when due."""
    self.sums.add(metrics)
    for action in self.actions:
      action(step)
    if step % self.run.cfg.log_every_steps == 0 or step == self.run.total_steps:
      self._write(step, epoch)

  def _write(self, step: int, epoch: int) -> None:
    sums = self.sums.take_window()
    now = time.perf_counter()
    rate = sums.get("count", 0.0) / max(now - self.t_last, 1e-9)
    means = summarize(sums)
    name = self.run.name
    scalars = {f"{name}/train_{k}": v for k, v in means.items()}
    scalars[f"{name}/images_per_sec"] = rate
    if self.lr_fn is not None:
      scalars[f"{name}/learning_rate"] = float(self.lr_fn(step))
    self.writer.write_scalars(step, scalars)
    self.steps_log.append({"step": step, "epoch": epoch + 1,
                           **{f"train_{k}": v for k, v in means.items()}})
    logging.info("%s: step %d/%d (epoch %d) loss %.4f, %.0f images/s", name, step,
                 self.run.total_steps, epoch + 1, means.get("loss", float("nan")), rate)
    self.t_last = now


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
  profile: bool = False
  steps_in_flight: int = 2

  def __post_init__(self):
    """One-line errors before any work: a 0 interval would divide by zero after a step, and
    keep_checkpoints=0 would let orbax delete the trained model."""
    for name in ("num_epochs", "batch_size", "checkpoint_every_steps", "keep_checkpoints",
                 "log_every_steps", "eval_every_epochs", "steps_in_flight"):
      utils.check_int(getattr(self, name), name, 1)
    utils.check_int(self.seed, "seed", 0)
    if not isinstance(self.profile, bool):
      raise ValueError(f"profile must be True or False, got {self.profile!r}")


def loop_config(config: ml_collections.ConfigDict, **overrides: Any) -> LoopConfig:
  """A LoopConfig from the config's top-level fields of the same names, then `overrides`."""
  fields = {f.name for f in dataclasses.fields(LoopConfig)}
  values = {k: config[k] for k in fields if k in config}
  values.update(overrides)
  return LoopConfig(**values)


@dataclasses.dataclass
class FitResult:
  """What `fit` returns: the final state, the per-epoch log, the step it resumed from, and the
  log-point entries ({"step", "epoch", "train_loss", ...}: per-step with log_every_steps=1)."""
  state: Any
  history: list[dict[str, float]]
  resumed_from_step: int
  steps: list[dict[str, float]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class _Run:
  """Everything constant during one `fit` call."""
  name: str
  cfg: LoopConfig
  mesh: Mesh
  step_fn: Callable
  step_args: tuple
  stream: Any
  rows: slice
  steps_per_epoch: int
  total_steps: int
  metrics_path: str
  eval_fn: Callable[[Any], Mapping[str, float]] | None


def _jit_step(train_step: Callable, mesh: Mesh, num_step_args: int) -> Callable:
  """`train_step` jitted with the state donated and explicit shardings, unless jitted already.

  Ours: the state, key and `step_args` replicated, the batch split over the
  mesh's "data" axis; the new state and the metrics replicated.

  A step that is jitted already (has `.lower`), or a `functools.partial` of
  one (e.g. a module-level `jax.jit` step with its static description bound),
  is used as it is (it donates its state itself; its inputs arrive with the
  shardings above): it keeps its own compilation cache, so every stage with
  the same shapes reuses one compilation. Wrapping it in a new `jax.jit`
  would compile once per stage. The state's `apply_fn` and `tx` are part of
  its tree structure, hence of that cache's key: stages that should share a
  compilation must share those objects too.
  """
  inner = train_step.func if isinstance(train_step, functools.partial) else train_step
  if hasattr(inner, "lower"):
    return train_step
  repl, data = distributed.replicated(mesh), distributed.data_sharding(mesh)
  return jax.jit(train_step, in_shardings=(repl, data, repl) + (repl,) * num_step_args,
                 out_shardings=(repl, repl), donate_argnums=(0,))


def _resume(run: _Run, ckpt_dir: str, state: Any) -> tuple[Any, list, list, int]:
  """(state, epoch history, step log, step) from the latest checkpoint, or the initial state.

  Every process restores (orbax coordinates the read); `state` is the target
  whose shardings the restored arrays take.
  """
  restored = checkpoints.restore_latest(ckpt_dir, state)
  if restored is None:
    return state, [], [], 0
  state, resumed_from = restored
  history, steps_log = [], []
  if os.path.exists(run.metrics_path):
    log = utils.read_json(run.metrics_path)
    history = [h for h in log["epochs"] if h["epoch"] * run.steps_per_epoch <= resumed_from]
    steps_log = [s for s in log.get("steps", []) if s["step"] <= resumed_from]
  logging.info("%s: resumed from step %d of %d", run.name, resumed_from, run.total_steps)
  return state, history, steps_log, resumed_from


def _write_log(run: _Run, history: list, steps_log: list) -> None:
  """`workdir/metrics/<name>.json` (process 0): per-epoch records and log-point entries."""
  if distributed.is_main_process():
    utils.write_json_atomic(run.metrics_path,
                            {"name": run.name, "epochs": history, "steps": steps_log})


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


def _train_epoch(run: _Run, state: Any, step: int, mngr: Any, progress: _Progress,
                 history: list[dict[str, float]]) -> tuple[Any, int]:
  """Trains from `step` to the end of its epoch; checkpoints and logs on the way.

  The host never waits for a step's metrics: they are summed on the devices
  and fetched at log lines and at the epoch's end. Batches arrive through
  `distributed.device_batches`, the next one already on its way.
  """
  epoch, start_batch = divmod(step, run.steps_per_epoch)
  base_key = jax.random.PRNGKey(run.cfg.seed)
  key_fn = _key_fn(run.mesh)
  local = run.stream.local_batches(run.cfg.batch_size, run.rows, seed=run.cfg.seed,
                                   epoch=epoch, start_batch=start_batch)
  window = distributed.StepWindow(run.cfg.steps_in_flight)
  for batch in distributed.device_batches(local, run.mesh, run.cfg.batch_size):
    key = key_fn(base_key, np.uint32(step))
    state, metrics = run.step_fn(state, batch, key, *run.step_args)
    window.push(metrics)
    step += 1
    progress.step_done(step, epoch, metrics)
    if step % run.cfg.checkpoint_every_steps == 0 or step == run.total_steps:
      checkpoints.save_step(mngr, step, state)  # every process takes part
      _write_log(run, history, progress.steps_log)
  history.append(_end_of_epoch(run, progress.writer, state, step, epoch,
                               progress.sums.take_epoch()))
  _write_log(run, history, progress.steps_log)
  return state, step


def _stream(images: np.ndarray | None, labels: np.ndarray | None, stream: Any) -> Any:
  """The training data as a stream: `stream`, or (images, labels) held in memory."""
  if stream is None:
    if images is None or labels is None:
      raise ValueError("fit needs images and labels, or a stream")
    return batching.ArrayStream(images, labels)
  if images is not None or labels is not None:
    raise ValueError("fit takes images and labels or a stream, not both")
  return stream


def fit(*, name: str, workdir: str, state: Any, train_step: Callable[..., tuple[Any, Metrics]],
        cfg: LoopConfig, images: np.ndarray | None = None, labels: np.ndarray | None = None,
        stream: Any = None, eval_fn: Callable[[Any], Mapping[str, float]] | None = None,
        lr_fn: optax.Schedule | None = None, step_args: Sequence[Any] = ()) -> FitResult:
  """Trains `state` with `train_step` for `cfg.num_epochs`, resuming if possible.

  Every process of a multi-process run calls `fit` with the same arguments;
  the mesh spans all their devices, each feeds its rows of every batch, all
  join the checkpoints, and process 0 alone writes TensorBoard and the JSON log.

  Args:
    name: stage name; checkpoints go to `workdir/checkpoints/<name>`, scalars
      are prefixed `<name>/`, the log is `workdir/metrics/<name>.json`
      ({"epochs": per-epoch records, "steps": one entry per log line}).
    workdir: the run directory.
    state: the initial state (a pytree with an integer `.step`).
    train_step: pure `(state, batch, key, *step_args) -> (state, summed
      metrics)` with a "count" entry; jitted here (state donated, explicit
      shardings) unless it is jitted already (see `_jit_step`).
    cfg: loop knobs.
    images: (N, H, W, C) training images (or any (N, ...) rows); batches are
      {"image", "label", "mask"} dicts of `cfg.batch_size` rows (the last
      padded and masked).
    labels: (N,) int labels.
    stream: instead of images and labels, an object with `num_batches(batch_size)`
      and `local_batches(batch_size, rows, *, seed, epoch, start_batch)`, e.g.
      `data.sources.TfdsStream` (read in shards, never whole).
    eval_fn: called with the state after each `eval_every_epochs`, returns
      scalars (e.g. {"test_accuracy": ...}) that are logged and recorded.
    lr_fn: schedule to log the learning rate from.
    step_args: extra arguments of every step, e.g. a frozen model's variables
      (traced, so a new checkpoint does not recompile the step); replicated
      on the mesh like the state.

  Returns:
    FitResult with the final state, per-epoch history, the resumed step and
    the log-point entries.
  """
  stream = _stream(images, labels, stream)
  mesh = make_mesh(cfg.num_devices)
  check_batch_size(cfg.batch_size, mesh)
  steps_per_epoch = stream.num_batches(cfg.batch_size)
  run = _Run(name=name, cfg=cfg, mesh=mesh, step_fn=_jit_step(train_step, mesh, len(step_args)),
             step_args=replicate(tuple(step_args), mesh), stream=stream,
             rows=distributed.local_rows(mesh, cfg.batch_size), steps_per_epoch=steps_per_epoch,
             total_steps=steps_per_epoch * cfg.num_epochs,
             metrics_path=os.path.join(workdir, "metrics", f"{name}.json"), eval_fn=eval_fn)
  ckpt_dir = checkpoints.stage_dir(workdir, name)
  # A copy: the step donates it, and the caller's initial state stays valid.
  state, history, steps_log, resumed_from = _resume(run, ckpt_dir,
                                                    replicate(state, mesh, copy=True))
  if resumed_from >= run.total_steps:
    logging.info("%s: already trained (%d steps)", name, resumed_from)
    return FitResult(state, history, resumed_from, steps_log)
  writer = writers.create_writer(os.path.join(workdir, "tensorboard", name))
  progress = _Progress(run, writer, lr_fn, steps_log, os.path.join(workdir, "profile", name))
  step = resumed_from
  with checkpoints.manager(ckpt_dir, cfg.keep_checkpoints) as mngr:
    while step < run.total_steps:
      state, step = _train_epoch(run, state, step, mngr, progress, history)
    mngr.wait_until_finished()
  checkpoints.prune_finished(ckpt_dir, run.total_steps)
  writer.flush()
  return FitResult(state, history, resumed_from, steps_log)


@functools.lru_cache(maxsize=None)
def _jit_eval(eval_step: Callable, mesh: Mesh) -> Callable:
  """`eval_step` jitted once per mesh, its summed metrics replicated."""
  return jax.jit(eval_step, out_shardings=distributed.replicated(mesh))


def evaluate_arrays(eval_step: Callable[[Any, Batch], Metrics], state: Any,
                    images: np.ndarray, labels: np.ndarray, batch_size: int,
                    mesh: Mesh | None = None) -> dict[str, float]:
  """Means of a summed-metrics `eval_step` over all of (images, labels).

  Uses the padded, masked batches of `data.batching.batches` (the same as
  training), so the step sees one shape and its masked sums count real rows
  only; each process feeds its rows of every batch; the sums stay on the
  devices until the end.

  Args:
    eval_step: `(state, batch) -> summed metrics` with a "count" entry; jitted
      here (a module-level step compiles once per shape).
    state: passed to every call.
    images: (N, H, W, C); labels: (N,) int.
    batch_size: rows per call, a multiple of the mesh's devices.
    mesh: default: `make_mesh()`.

  Returns:
    The means of `summarize` (e.g. {"loss", "accuracy"}).
  """
  mesh = mesh or make_mesh()
  check_batch_size(batch_size, mesh)
  step = _jit_eval(eval_step, mesh)
  sums = distributed.DeviceSums(mesh)
  local = data_lib.batches(images, labels, batch_size, shuffle=False,
                           rows=distributed.local_rows(mesh, batch_size))
  window = distributed.StepWindow()
  for batch in distributed.device_batches(local, mesh, batch_size):
    metrics = step(state, batch)
    window.push(metrics)
    sums.add(metrics)
  return summarize(sums.take_epoch())
