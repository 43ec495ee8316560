"""W3: layer DeepLift + SmoothGrad, jaxconcepts vs Captum, side by side.

Workload W3 (DESIGN section 6): the ClaDec VGG (random init, seed 0, eval
mode; PyTorch's init, ported to JAX so both run identical weights), 60 images
32x32x1 (uniform, seed 0), target 3, layer conv2 (the 4th conv block's
output, 128x4x4), DeepLift (Rescale) to the layer with SmoothGrad: 20 samples,
noise std 0.25, baseline the scalar 1.0.

Rows:
* jaxconcepts `layer_deeplift_smoothgrad` (noise drawn in the jitted program),
  all 60 images in one call, at the default `batch_size` and others;
* Captum `NoiseTunnel(LayerDeepLift)` on all 60 images, default
  `nt_samples_batch_size` (all 20 samples in one partition) and
  `nt_samples_batch_size=1` (20 partitions; the faster one on CPU);
* Captum the reference code's way: one image per `attribute` call.

A fresh Captum object is built for every call (Captum 0.9.0 leaks DeepLift
hook handles, so a reused object slows down call after call). Every row is
the best of a few repeats after a warm-up call (jit compilation and torch's
first-call costs excluded; the compile time is printed separately). Agreement
is the max |ours - Captum| / max |Captum| on the same 60 images with the same
noise tensors fed to both (a NoiseTunnel that adds our noise). The machine may
be shared with other jobs: compare ratios within one run.

Usage:
  python benchmarks/attribution.py [--quick] [--out FILE]
"""
import argparse
import os
import sys
import time
import warnings

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(1, os.path.dirname(_HERE))  # the repository root
import _common  # pylint: disable=g-import-not-at-top,wrong-import-position

N_IMAGES = 60
N_SAMPLES = 20
STD = 0.25
TARGET = 3
LAYER = "conv2"
BASELINE = 1.0


def w3_images(n=N_IMAGES, seed=0):
  return np.random.default_rng(seed).uniform(size=(n, 32, 32, 1)).astype(np.float32)


def load_peer():
  """(torch, captum.attr, torch_refs) or None when torch / captum are missing."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    from captum import attr as captum_attr  # pylint: disable=g-import-not-at-top
    from tests import torch_refs  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    print(f"peer skipped: {e}")
    return None
  return torch, captum_attr, torch_refs


def build(peer):
  """The W3 VGG as (model, variables, torch net or None)."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxconcepts import models  # pylint: disable=g-import-not-at-top
  model = models.create_model("vgg", 10)
  if peer is None:
    return model, models.init_variables(model, jax.random.PRNGKey(0), (32, 32, 1)), None
  torch, _, torch_refs = peer
  torch.manual_seed(0)
  net = torch_refs.TorchClaDecVGG(10).eval()
  return model, torch_refs.vgg_variables_from_torch(net), net


def captum_call(peer, net, xt, nt_batch):
  torch, captum_attr, torch_refs = peer
  layer = torch_refs.vgg_layer_modules(net)[LAYER]
  nt = captum_attr.NoiseTunnel(captum_attr.LayerDeepLift(net, layer))  # fresh every call
  return nt.attribute(xt, nt_type="smoothgrad", nt_samples=N_SAMPLES, stdevs=STD,
                      baselines=BASELINE, target=TARGET, nt_samples_batch_size=nt_batch)


def captum_one_at_a_time(peer, net, xt):
  torch = peer[0]
  return torch.cat([captum_call(peer, net, xt[i:i + 1], None) for i in range(len(xt))])


def agreement(peer, model, variables, net, x):
  """Max relative difference from Captum fed our noise, and the completeness delta."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxconcepts import attribution  # pylint: disable=g-import-not-at-top
  torch, captum_attr, torch_refs = peer
  noise = np.asarray(jax.random.normal(jax.random.PRNGKey(7), (len(x), N_SAMPLES) + x.shape[1:]),
                     np.float32) * STD
  ours = attribution.deeplift(model, variables, x, TARGET, LAYER, baseline=BASELINE,
                              noise=noise)
  layer = torch_refs.vgg_layer_modules(net)[LAYER]
  noise_t = torch.from_numpy(noise.reshape((-1,) + x.shape[1:]).transpose(0, 3, 1, 2).copy())
  nt = torch_refs.fixed_noise_tunnel(captum_attr.LayerDeepLift(net, layer), noise_t)
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
  ref = nt.attribute(xt, nt_type="smoothgrad", nt_samples=N_SAMPLES, stdevs=STD,
                     baselines=BASELINE, target=TARGET).detach().numpy().transpose(0, 2, 3, 1)
  err = float(np.abs(np.asarray(ours.attributions) - ref).max() / np.abs(ref).max())
  return err, float(np.abs(np.asarray(ours.delta)).max())


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="12 images, 1 repeat")
  parser.add_argument("--out", help="write the results as JSON here")
  parser.add_argument("--batch-sizes", default="240,1200",
                      help="jaxconcepts batch sizes (forward passes per chunk) to time")
  args = parser.parse_args()
  warnings.filterwarnings("ignore")  # Captum warns on every DeepLift call.
  n = 12 if args.quick else N_IMAGES
  repeats = 1 if args.quick else 3

  import jax  # pylint: disable=g-import-not-at-top
  from jaxconcepts import attribution  # pylint: disable=g-import-not-at-top
  peer = load_peer()
  model, variables, net = build(peer)
  x = w3_images(n)
  key = jax.random.PRNGKey(1)
  info = _common.machine_info()
  print(f"W3: ClaDec VGG, {n} images 32x32x1, layer {LAYER} (4x4x128), target {TARGET}, "
        f"DeepLift + SmoothGrad ({N_SAMPLES} samples, std {STD}), baseline {BASELINE}")
  print(f"machine: {info}")

  rows, record = [], {"machine": info, "n_images": n, "runs": {}}

  def add(name, fn, reps=repeats):
    t = _common.time_call(fn, repeats=reps)
    ips = n / t["best_s"]
    record["runs"][name] = {**t, "images_per_s": ips}
    rows.append([name, t["best_s"], t["median_s"], ips])
    print(f"  {name}: best {t['best_s']:.3f} s ({ips:.1f} images/s), first call {t['first_s']:.2f} s",
          flush=True)
    return ips

  ours = {}
  for bs in [int(b) for b in args.batch_sizes.split(",")]:
    ours[bs] = add(f"jaxconcepts batch_size={bs}", lambda bs=bs: attribution.layer_deeplift_smoothgrad(
        model, variables, x, TARGET, LAYER, n_samples=N_SAMPLES, std=STD, baseline=BASELINE,
        key=key, batch_size=bs))
  best_ours = max(ours.values())
  peers = {}
  if peer is not None:
    torch = peer[0]
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    peers["captum default"] = add("captum NoiseTunnel(LayerDeepLift) default",
                                  lambda: captum_call(peer, net, xt, None))
    peers["captum nt_samples_batch_size=1"] = add(
        "captum NoiseTunnel(LayerDeepLift) nt_samples_batch_size=1",
        lambda: captum_call(peer, net, xt, 1))
    peers["captum one image per call"] = add(
        "captum one image per call (reference code)", lambda: captum_one_at_a_time(peer, net, xt),
        reps=1)
    err, delta = agreement(peer, model, variables, net, x)
    record["agreement_max_rel_err"] = err
    record["max_abs_completeness_delta"] = delta
  print()
  print(_common.format_table(rows, ["run", "best s", "median s", "images/s"]))
  print()
  if peers:
    fastest = max(peers.values())
    record["ratios"] = {k: best_ours / v for k, v in peers.items()}
    for k, v in peers.items():
      print(f"jaxconcepts (best) / {k}: {best_ours / v:.2f}x")
    print(f"vs Captum's fastest setting: {best_ours / fastest:.2f}x (goal >= 2x)")
    print(f"agreement with Captum (same noise): max rel err {record['agreement_max_rel_err']:.2e}; "
          f"max |completeness delta| {record['max_abs_completeness_delta']:.2e}")
  if args.out:
    _common.write_json(args.out, record)


if __name__ == "__main__":
  main()
