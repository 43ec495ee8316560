"""Training at scale (issue 13): what the loop and the grids cost.

* `bench_grid`: ClaDec's alpha x seed grid of one layer (the paper's VGG
  alphas 1, 0.999, 0.9, 0 x 5 seeds) trained as one compiled program
  (`methods.cladec_grid`: alpha traced, vmapped over alphas and seeds)
  against the 20 runs one after the other (one alpha and one seed each, alpha
  static, as `cladec.make_cladec_step` trains a single stage). Both drive the
  jitted steps directly over the same device-resident batches (no `fit`, no
  checkpoints), from initial states to the last step, so the wall time holds
  the compilations, the initialisations and the steps. Compilations are
  counted twice: the step function's own cache entries (`_cache_size()`) and
  every XLA compilation of the phase (jax's backend-compile events).
  Sequential runs in one process reuse one compilation per alpha across the
  seeds (alpha is a static argument there); 20 separate processes would
  compile 20 times. The initialisations' small programs are compiled before
  either phase, so the counts are those of training.

* `bench_loop`: `trainer.fit`'s steady-state steps/s against a bare loop of
  the same jitted classifier step on the same device-resident batches (a
  narrow VGG on 32x32x1, random data). Fit's fixed costs (writer, final
  checkpoint, first compilation) are removed by timing two runs of different
  lengths (best of a few repeats each) and dividing the step difference by
  the time difference. Goal: the loop keeps at least 95% of the bare step's
  rate (no per-step host sync; the next batch is on the devices before the
  step runs).

  python benchmarks/trainer_overhead.py [--only grid] [--only loop] [--quick] [--out FILE]

Sizes are small (a narrow VGG, 256 images, batch 32) so that a run takes a
minute or two on a CPU; figures go to benchmarks/README.md, not here.
"""

import argparse
import os
import sys
import tempfile
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common  # pylint: disable=g-import-not-at-top
from jaxconcepts.methods import cladec  # pylint: disable=g-import-not-at-top
from jaxconcepts.methods import cladec_grid  # pylint: disable=g-import-not-at-top
from jaxconcepts.models import classifiers as models  # pylint: disable=g-import-not-at-top
from jaxconcepts.models import decoders  # pylint: disable=g-import-not-at-top
from jaxconcepts.train import distributed  # pylint: disable=g-import-not-at-top
from jaxconcepts.train import trainer as training  # pylint: disable=g-import-not-at-top

# jax records this event once per XLA compilation (jax/_src/dispatch.py).
_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileCounter:
  """Counts XLA compilations while installed (a jax.monitoring listener)."""

  def __init__(self):
    self.count = 0
    jax.monitoring.register_event_duration_secs_listener(self._listen)

  def _listen(self, event: str, duration: float, **kwargs: Any) -> None:
    del duration, kwargs
    if event == _BACKEND_COMPILE_EVENT:
      self.count += 1


# ---------------------------------------------------------------------------
# The ClaDec alpha x seed grid
# ---------------------------------------------------------------------------

GRID_ALPHAS = (1.0, 0.999, 0.9, 0.0)  # the paper's Table 4 (VGG)
GRID_SEEDS = (0, 1, 2, 3, 4)


def _grid_setup(n: int, width: int, layer: str):
  """A narrow VGG, its codes at `layer` and the packed rows (device-resident)."""
  widths = tuple(width * m for m in (1, 1, 2, 2, 4, 4, 8, 8))
  model = models.create_model("vgg", 10, widths=widths)
  variables = models.init_variables(model, jax.random.PRNGKey(0), (32, 32, 1))
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(n, 32, 32, 1)).astype(np.float32)
  labels = rng.integers(0, 10, size=n).astype(np.int32)
  codes = np.asarray(model.apply(variables, images, stop=layer))
  data = jax.device_put((jnp.asarray(cladec.pack(images, codes)), jnp.asarray(labels)))
  return model, variables, codes.shape[1:], data


def _index_batches(n: int, seeds, batch_size: int, epochs: int) -> list[dict[str, jax.Array]]:
  """Device-resident batches of per-seed row indices (B, S), `seed_orders` in order."""
  orders = cladec.seed_orders(n, seeds)
  return [jax.device_put({"image": orders[i:i + batch_size],
                          "label": np.zeros(batch_size, np.int32),
                          "mask": np.ones(batch_size, bool)})
          for _ in range(epochs) for i in range(0, n - batch_size + 1, batch_size)]


def _timed_run(step: Callable, state: Any, batches, args) -> tuple[Any, float]:
  """Runs every batch through `step`; (last metrics, seconds of the steps after the first)."""
  key = jax.random.PRNGKey(0)
  state, m = step(state, batches[0], key, *args)
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for b in batches[1:]:
    state, m = step(state, b, key, *args)
  jax.block_until_ready(m)
  return m, time.perf_counter() - t0


def _phase(counter: CompileCounter, fn_cache: Callable[[], int],
           run: Callable[[], float]) -> dict[str, float]:
  """Wall time, steady step time and compilations of `run()` (which returns step seconds)."""
  c0, s0, t0 = counter.count, fn_cache(), time.perf_counter()
  steady = run()
  return {"wall_s": time.perf_counter() - t0, "steady_steps_s": steady,
          "xla_compiles": counter.count - c0, "step_compiles": fn_cache() - s0}


def bench_grid(quick: bool = False) -> dict[str, Any]:
  """The 4 alpha x 5 seed ClaDec grid as one program against 20 sequential runs.

  Returns:
    {"config": sizes, "grid": phase, "sequential": phase, "max_loss_diff": the
     largest difference of a member's last-step loss between the two}, each
    phase {"wall_s", "steady_steps_s", "xla_compiles", "step_compiles"}.
  """
  n, batch, epochs, width, layer = (128, 32, 1, 4, "conv3a") if quick else \
      (256, 32, 2, 8, "conv3a")
  counter = CompileCounter()
  model, variables, code_shape, data = _grid_setup(n, width, layer)
  dec = decoders.create_decoder(code_shape, (32, 32, 1))
  tx = training.create_optimizer("adam", 3e-4, weight_decay=1e-5)
  batches = _index_batches(n, GRID_SEEDS, batch, epochs)
  own = [[dict(b, image=jax.device_put(np.asarray(b["image"])[:, s:s + 1])) for b in batches]
         for s in range(len(GRID_SEEDS))]
  # Initialisation's small programs compile here, outside both phases.
  jax.block_until_ready(cladec_grid.init_grid(dec, code_shape, tx, GRID_SEEDS,
                                              len(GRID_ALPHAS)))
  jax.block_until_ready(cladec.init_decoder_seeds(dec, code_shape, tx, GRID_SEEDS[:1]))
  grid_losses, seq_losses = {}, {}

  def run_grid():
    step, alphas = cladec_grid.make_grid_step(dec, model, (32, 32, 1), code_shape, GRID_ALPHAS)
    state = cladec_grid.init_grid(dec, code_shape, tx, GRID_SEEDS, len(GRID_ALPHAS))
    m, seconds = _timed_run(lambda *a: step(*a, per_member=True), state, batches,
                            (variables, alphas, data))
    grid_losses["loss"] = np.asarray(m["loss"]) / float(m["count"])
    return seconds

  def run_sequential():
    seconds = 0.0
    for a, alpha in enumerate(GRID_ALPHAS):
      step = cladec.make_cladec_step(dec, model, (32, 32, 1), code_shape, alpha)
      for s, seed in enumerate(GRID_SEEDS):
        state = cladec.init_decoder_seeds(dec, code_shape, tx, (seed,))
        m, sec = _timed_run(step, state, own[s], (variables, data))
        seq_losses[(a, s)] = float(m["loss"]) / float(m["count"])
        seconds += sec
    return seconds

  grid = _phase(counter, cladec_grid.cladec_grid_step._cache_size, run_grid)  # pylint: disable=protected-access
  seq = _phase(counter, cladec.cladec_train_step._cache_size, run_sequential)  # pylint: disable=protected-access
  diff = max(abs(grid_losses["loss"][a, s] - v) for (a, s), v in seq_losses.items())
  return {"config": {"alphas": GRID_ALPHAS, "seeds": GRID_SEEDS, "images": n, "batch": batch,
                     "epochs": epochs, "steps": len(batches), "vgg_width": width,
                     "layer": layer, "code_shape": code_shape},
          "grid": grid, "sequential": seq, "max_loss_diff": diff}


def _print_grid(r: dict[str, Any]) -> None:
  rows = [[name, r[name]["wall_s"], r[name]["steady_steps_s"], r[name]["xla_compiles"],
           r[name]["step_compiles"]] for name in ("grid", "sequential")]
  print(f"ClaDec grid {len(GRID_ALPHAS)} alphas x {len(GRID_SEEDS)} seeds: {r['config']}")
  print(_common.format_table(rows, ["run", "wall_s", "steps_after_first_s", "xla_compiles",
                                    "step_compiles"]))
  print(f"sequential / grid wall time: {r['sequential']['wall_s'] / r['grid']['wall_s']:.2f}; "
        f"largest last-step loss difference: {r['max_loss_diff']:.2e}")


# ---------------------------------------------------------------------------
# The training loop against the bare step

_LOOP_WIDTHS = (8, 8, 16, 16, 32, 32, 32, 32)
_DISTINCT_BATCHES = 8


class _DeviceStream:
  """`fit`'s stream interface over batches that already live on the mesh (cycled)."""

  def __init__(self, batches, steps_per_epoch):
    self.batches, self.steps_per_epoch = batches, steps_per_epoch

  def num_batches(self, batch_size):
    del batch_size
    return self.steps_per_epoch

  def local_batches(self, batch_size, rows, *, seed, epoch, start_batch=0):
    del batch_size, rows, seed, epoch
    for i in range(start_batch, self.steps_per_epoch):
      yield self.batches[i % len(self.batches)]


def _loop_setup(batch: int):
  model = models.create_model("vgg", 10, widths=_LOOP_WIDTHS)
  variables = models.init_variables(model, jax.random.PRNGKey(0), (32, 32, 1))
  tx = training.create_optimizer("sgd", 0.01, momentum=0.9)
  mesh = training.make_mesh()
  rng = np.random.default_rng(0)
  batches = [distributed.to_global({
      "image": rng.uniform(size=(batch, 32, 32, 1)).astype(np.float32),
      "label": rng.integers(0, 10, batch).astype(np.int32),
      "mask": np.ones(batch, bool)}, mesh, batch) for _ in range(_DISTINCT_BATCHES)]
  return model, variables, tx, mesh, batches


def _bare_rate(model, variables, tx, mesh, batches, steps: int) -> float:
  """Steps/s of the jitted step alone (state donated), blocking once at the end."""
  step = training._jit_step(training.classifier_train_step, mesh, 0)  # pylint: disable=protected-access
  state = training.replicate(training.create_train_state(model.apply, variables, tx), mesh,
                             copy=True)
  key = jax.random.PRNGKey(0)
  state, _ = _common.block(step(state, batches[0], key))  # compile
  t0 = time.perf_counter()
  for i in range(steps):
    state, metrics = step(state, batches[i % len(batches)], key)
  _common.block((state, metrics))
  return steps / (time.perf_counter() - t0)


def _fit_seconds(model, variables, tx, batches, steps: int, batch: int) -> float:
  state = training.create_train_state(model.apply, variables, tx)
  cfg = training.LoopConfig(num_epochs=1, batch_size=batch, log_every_steps=50,
                            checkpoint_every_steps=10**9)
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.perf_counter()
    training.fit(name="bench", workdir=workdir, state=state,
                 train_step=training.classifier_train_step, cfg=cfg,
                 stream=_DeviceStream(batches, steps))
    return time.perf_counter() - t0


def bench_loop(quick: bool = False) -> dict[str, Any]:
  """`trainer.fit` steps/s vs the bare jitted step on the same device-resident batches."""
  steps, batch, repeats = (80, 16, 2) if quick else (400, 64, 3)
  model, variables, tx, mesh, batches = _loop_setup(batch)
  bare = max(_bare_rate(model, variables, tx, mesh, batches, steps) for _ in range(repeats))
  _fit_seconds(model, variables, tx, batches, 4, batch)  # compile, writer, orbax warm-up
  short = min(_fit_seconds(model, variables, tx, batches, steps // 4, batch)
              for _ in range(repeats))
  long = min(_fit_seconds(model, variables, tx, batches, steps, batch) for _ in range(repeats))
  # Too noisy (a loaded machine) when the longer run was not the slower one: no figure.
  loop = (steps - steps // 4) / (long - short) if long > short else float("nan")
  return {"devices": mesh.devices.size, "batch": batch, "steps": steps, "repeats": repeats,
          "bare_steps_per_s": bare, "fit_steps_per_s": loop, "fit_over_bare": loop / bare}


def _print_loop(r: dict[str, Any]) -> None:
  print(f"loop: {r['devices']} device(s), batch {r['batch']}, {r['steps']} steps: bare step "
        f"{r['bare_steps_per_s']:.1f} steps/s, fit {r['fit_steps_per_s']:.1f} steps/s "
        f"({100 * r['fit_over_bare']:.1f}% of bare; goal >= 95%)")


BENCHES = {"grid": (bench_grid, _print_grid), "loop": (bench_loop, _print_loop)}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--only", choices=sorted(BENCHES), action="append",
                 help="run only these benchmarks (repeatable; default: all)")
  p.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
  p.add_argument("--out", help="write the results as JSON here")
  args = p.parse_args(argv)
  results = {"machine": _common.machine_info()}
  for name in args.only or sorted(BENCHES):
    bench, show = BENCHES[name]
    results[name] = bench(quick=args.quick)
    show(results[name])
  if args.out:
    _common.write_json(args.out, results)
  return 0


if __name__ == "__main__":
  sys.exit(main())
