"""W4 decoder training: jaxconcepts vs PyTorch, side by side (DESIGN section 6).

Frozen ClaDec VGG (random init, seed 0, eval mode), the ClaDec decoder
(paper variant: dense, 5x5 transposed convs 256-128-64-32-1, sigmoid) from the
512x1x1 code of `conv4` to 32x32x1, Adam (lr 3e-4), batch 128, MSE. One
training step = the frozen encoder's forward pass (no gradient), the decoder's
forward and backward pass and the Adam update. Rows:

* `encode+decode`: the step as defined above, in JAX (our decoder with the
  "auto" transposed conv = sub-pixel matmuls on CPU, and with XLA's
  transposed conv) and in PyTorch;
* `cached codes`: the decoder step alone on precomputed codes, which is what
  the ClaDec pipeline trains on (the encoder is frozen and deterministic, so
  its codes are computed once), in JAX and PyTorch.

  python benchmarks/decoder_training.py [--quick] [--steps N] [--out FILE]

The machine is shared and noisy: the JAX and PyTorch rows run alternately in
one process and are repeated; the table reports the best of the repeats and
the ratios against PyTorch.
"""

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common  # pylint: disable=g-import-not-at-top
from jaxconcepts.models import decoders  # pylint: disable=g-import-not-at-top
from jaxconcepts.models import classifiers as models  # pylint: disable=g-import-not-at-top
from jaxconcepts.ops import conv_transpose  # pylint: disable=g-import-not-at-top

BATCH = 128
LAYER = "conv4"
CODE_SHAPE = (1, 1, 512)


def _data(n_batches: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  return rng.uniform(size=(n_batches, BATCH, 32, 32, 1)).astype(np.float32)


def jax_runner(impl: str, cached: bool, n_batches: int):
  """Returns run() -> seconds for n_batches training steps (after a warm-up step)."""
  model = models.create_model("vgg", 10)
  variables = models.init_variables(model, jax.random.PRNGKey(0), (32, 32, 1))
  dec = decoders.create_decoder(CODE_SHAPE, (32, 32, 1), impl=impl)
  params = dec.init(jax.random.PRNGKey(1), jnp.zeros((1, *CODE_SHAPE)))["params"]
  tx = optax.adam(3e-4)
  opt_state = tx.init(params)
  images = _data(n_batches)
  encode = jax.jit(lambda v, x: model.apply(v, x, train=False, stop=LAYER))
  codes = np.stack([np.asarray(encode(variables, x)) for x in images]) if cached else None

  def step(params, opt_state, x, code_or_vars):
    code = (code_or_vars if cached
            else jax.lax.stop_gradient(model.apply(code_or_vars, x, train=False, stop=LAYER)))

    def loss_fn(p):
      return jnp.mean(jnp.square(dec.apply({"params": p}, code) - x))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  jstep = jax.jit(step, donate_argnums=(0, 1))
  dev_images = [jnp.asarray(x) for x in images]
  dev_codes = [jnp.asarray(c) for c in codes] if cached else None
  state = {"p": params, "o": opt_state}

  def run_once():
    t0 = time.perf_counter()
    loss = None
    for i in range(n_batches):
      arg = dev_codes[i] if cached else variables
      state["p"], state["o"], loss = jstep(state["p"], state["o"], dev_images[i], arg)
    jax.block_until_ready(loss)
    return time.perf_counter() - t0

  t0 = time.perf_counter()
  arg = dev_codes[0] if cached else variables
  state["p"], state["o"], l0 = jstep(state["p"], state["o"], dev_images[0], arg)
  jax.block_until_ready(l0)
  compile_s = time.perf_counter() - t0
  return run_once, compile_s


def torch_runner(cached: bool, n_batches: int):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None, None
  from tests import torch_refs  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  vgg = torch_refs.TorchClaDecVGG(10).eval()
  for p in vgg.parameters():
    p.requires_grad_(False)
  widths = decoders.stage_widths("paper", 5, 1)
  p, op = conv_transpose.transpose_padding(5)
  layers = []
  cin = 512
  for i, w in enumerate(widths):
    layers.append(torch.nn.ConvTranspose2d(cin, w, 5, stride=2, padding=p, output_padding=op))
    layers.append(torch.nn.ReLU() if i < len(widths) - 1 else torch.nn.Sigmoid())
    cin = w
  stem = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.ReLU())
  deconv = torch.nn.Sequential(*layers)
  params = list(stem.parameters()) + list(deconv.parameters())
  opt = torch.optim.Adam(params, lr=3e-4)
  images = [torch.from_numpy(x).permute(0, 3, 1, 2).contiguous() for x in _data(n_batches)]
  with torch.no_grad():
    codes = [vgg.features(x).flatten(1) for x in images] if cached else None

  def step(i):
    x = images[i]
    if cached:
      code = codes[i]
    else:
      with torch.no_grad():
        code = vgg.features(x).flatten(1)
    out = deconv(stem(code).view(-1, 512, 1, 1))
    loss = torch.nn.functional.mse_loss(out, x)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  def run_once():
    t0 = time.perf_counter()
    for i in range(n_batches):
      step(i)
    return time.perf_counter() - t0

  t0 = time.perf_counter()
  step(0)
  return run_once, time.perf_counter() - t0


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--steps", type=int, default=8, help="training steps per timed repeat")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--quick", action="store_true", help="2 steps x 2 repeats")
  p.add_argument("--out", default=None)
  args = p.parse_args()
  steps, repeats = (2, 2) if args.quick else (args.steps, args.repeats)
  configs = [("encode+decode", "jax auto (sub-pixel)", lambda: jax_runner("auto", False, steps)),
             ("encode+decode", "jax xla conv_transpose", lambda: jax_runner("xla", False, steps)),
             ("encode+decode", "torch", lambda: torch_runner(False, steps)),
             ("cached codes", "jax auto (sub-pixel)", lambda: jax_runner("auto", True, steps)),
             ("cached codes", "torch", lambda: torch_runner(True, steps))]
  runners = {}
  for work, name, make in configs:
    run, compile_s = make()
    runners[(work, name)] = (run, compile_s)
  times = {k: [] for k in runners}
  for _ in range(repeats):  # interleaved, so load changes hit every row alike
    for key, (run, _) in runners.items():
      if run is not None:
        times[key].append(run())
  results = {"machine": _common.machine_info(), "batch": BATCH, "steps": steps,
             "repeats": repeats, "backend": jax.default_backend(), "rows": []}
  rows = []
  for work in ("encode+decode", "cached codes"):
    t_torch = times.get((work, "torch"))
    peer = BATCH * steps / min(t_torch) if t_torch else None
    for (w, name), ts in times.items():
      if w != work:
        continue
      if not ts:
        rows.append([work, name, "skipped (torch not installed)", "", ""])
        continue
      rate = BATCH * steps / min(ts)
      ratio = rate / peer if peer else float("nan")
      rows.append([work, name, f"{rate:.0f}", f"{ratio:.2f}" if peer else "",
                   f"{runners[(w, name)][1]:.1f}"])
      results["rows"].append({"workload": work, "impl": name, "images_per_s": rate,
                              "vs_torch": ratio, "first_step_s": runners[(w, name)][1],
                              "all_s": ts})
  print(f"W4 decoder training: frozen VGG -> conv4 (512x1x1) -> decoder -> 32x32x1, Adam, "
        f"batch {BATCH}, MSE; images/s, best of {repeats} x {steps} steps; backend "
        f"{jax.default_backend()}; load {results['machine'].get('loadavg')}")
  print(_common.format_table(rows, ["workload", "impl", "img/s", "vs torch",
                                    "first step s (compile)"]))
  if args.out:
    _common.write_json(args.out, results)


if __name__ == "__main__":
  main()
