"""ClaDec VGG throughput, jaxconcepts vs PyTorch, side by side.

Forward (eval mode) and forward+backward (train mode, cross-entropy, gradients
w.r.t. all parameters) images/s at batch 1200 on 32x32x1 inputs, for our
convolution paths ("auto" = im2col on CPU, "xla" = lax.conv) and for PyTorch
(the same architecture, tests/torch_refs.py) when torch is installed.

  python benchmarks/vgg_throughput.py [--batch 1200] [--repeats 3] [--out FILE]
"""

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common  # pylint: disable=g-import-not-at-top
from jaxconcepts.models import classifiers as models  # pylint: disable=g-import-not-at-top


def jax_rates(batch: int, impl: str, repeats: int) -> dict[str, float]:
  model = models.create_model("vgg", 10, conv_impl=impl)
  variables = models.init_variables(model, jax.random.PRNGKey(0), (32, 32, 1))
  x = jax.random.uniform(jax.random.PRNGKey(1), (batch, 32, 32, 1))
  y = jnp.arange(batch) % 10
  fwd = jax.jit(lambda v, x: model.apply(v, x))

  def loss(params, stats, x):
    logits, _ = model.apply({"params": params, "batch_stats": stats}, x, train=True,
                            rngs={"dropout": jax.random.PRNGKey(0)}, mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  bwd = jax.jit(jax.grad(loss))
  t_f = _common.time_call(lambda: fwd(variables, x), repeats=repeats)
  t_b = _common.time_call(lambda: bwd(variables["params"], variables["batch_stats"], x),
                          repeats=repeats)
  return {"forward": batch / t_f["best_s"], "forward_backward": batch / t_b["best_s"]}


def torch_rates(batch: int, repeats: int) -> dict[str, float] | None:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  from tests import torch_refs  # pylint: disable=g-import-not-at-top
  net = torch_refs.TorchClaDecVGG(10)
  x = torch.rand(batch, 1, 32, 32)
  y = torch.arange(batch) % 10

  def fwd():
    net.eval()
    with torch.no_grad():
      net(x)

  def bwd():
    net.train()
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()

  t_f = _common.time_call(fwd, repeats=repeats)
  t_b = _common.time_call(bwd, repeats=repeats)
  return {"forward": batch / t_f["best_s"], "forward_backward": batch / t_b["best_s"],
          "threads": torch.get_num_threads()}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=1200)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--out", default=None)
  args = p.parse_args()
  results = {"machine": _common.machine_info(), "batch": args.batch}
  for impl in ("auto", "xla"):
    results[f"jax_{impl}"] = jax_rates(args.batch, impl, args.repeats)
  peer = torch_rates(args.batch, args.repeats)
  results["torch"] = peer
  rows = []
  for name in ("jax_auto", "jax_xla", "torch"):
    r = results[name]
    if r is None:
      rows.append([name, "skipped (torch not installed)", "", "", ""])
      continue
    rows.append([name, f"{r['forward']:.0f}", f"{r['forward_backward']:.0f}",
                 f"{r['forward'] / peer['forward']:.2f}" if peer else "",
                 f"{r['forward_backward'] / peer['forward_backward']:.2f}" if peer else ""])
  print(f"ClaDec VGG, batch {args.batch}, 32x32x1, images/s (best of {args.repeats}); "
        f"backend {jax.default_backend()}")
  print(_common.format_table(rows, ["impl", "fwd img/s", "fwd+bwd img/s", "fwd vs torch",
                                    "fwd+bwd vs torch"]))
  if args.out:
    _common.write_json(args.out, results)


if __name__ == "__main__":
  main()
