"""W2, W3, W4 and the VGG forward / forward+backward, as harness workloads (DESIGN section 6).

The models (W3, W4, VGG): the ClaDec VGG in PyTorch (`tests/torch_refs.TorchClaDecVGG`),
`torch.manual_seed(0)` default init, then BatchNorm made non-trivial: in block order each
BN's weight ~ U(0.75, 1.25) and bias ~ U(-0.1, 0.1) (torch's global generator), then one
batch of 256 U[0, 1) images (`torch.rand`, same generator) sets every BN's running mean
and (biased) variance to the exact batch statistics of its input, block after block (so
eval mode reproduces that batch's normalisation). Ours gets the same weights
(`tests/torch_refs.vgg_variables_from_torch`).

* W2: C classes x 500 x 512 (`pairwise.w2_data`), all pairs, 100 epochs full-batch SGD lr
  0.01, zero init. Ours `ops.pairwise.train_pairwise`; peers the PyTorch loop over pairs
  (the reference code's way) at 1 and 2 threads, and scikit-learn `LogisticRegression` per
  pair (its own objective: speed only). Slow peers time the first pairs and scale the time
  to all pairs (every pair has the same size; the scale is in the JSON).
  Agreement: max |w - w_torch| over the pairs the loop ran.
* W3: 60 images `default_rng(0).random((60, 1, 32, 32))`, target 3, layer conv2 (128x4x4),
  LayerDeepLift + SmoothGrad (20 samples, std 0.25), baseline ones. Peer: Captum
  `NoiseTunnel(LayerDeepLift)` with `nt_samples_batch_size` None and 1, at 1 and 2
  threads. Agreement: both sides on the same noise (saved by prepare), max |diff| / max.
* W4: the W3 VGG frozen (code conv4, 512x1x1); decoder five ConvTranspose(5x5, stride 2)
  512-256-128-64-32-1, ReLU between, sigmoid last, no dense layer; Adam 1e-3, batch 128,
  loss = squared error summed over pixels, mean over the batch; one call = 50 steps.
  Peer: PyTorch NCHW and channels_last. Agreement: the first step's loss.
* VGG: forward (eval) and forward+backward (train mode, cross-entropy, all gradients) of
  a batch of 1200 32x32x1 images; peer PyTorch NCHW and channels_last.
"""
from __future__ import annotations

import types

import numpy as np

from harness import Side

W3_TARGET, W3_LAYER, W3_SAMPLES, W3_STD = 3, "conv2", 20, 0.25
W4_STEPS, W4_BATCH = 50, 128
VGG_BATCH = 1200


# ---------------------------------------------------------------------------
# The calibrated-BatchNorm VGG, in torch and in ours.


def torch_vgg():
  """The W3 VGG in eval mode (see the module docstring)."""
  import torch  # pylint: disable=g-import-not-at-top
  from tests import torch_refs  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  net = torch_refs.TorchClaDecVGG(10)
  with torch.no_grad():
    for seq in net.features:
      seq[1].weight.uniform_(0.75, 1.25)
      seq[1].bias.uniform_(-0.1, 0.1)
    h = torch.rand(256, 1, 32, 32)
    for seq in net.features:
      z = seq[0](h)
      seq[1].running_mean.copy_(z.mean(dim=(0, 2, 3)))
      seq[1].running_var.copy_(z.var(dim=(0, 2, 3), unbiased=False))
      h = seq[2](seq[1].eval()(z))
  return net.eval()


def ours_vgg():
  """(model, variables) with the torch VGG's weights."""
  from jaxconcepts.models import classifiers as models  # pylint: disable=g-import-not-at-top
  from tests import torch_refs  # pylint: disable=g-import-not-at-top
  return models.create_model("vgg", 10), torch_refs.vgg_variables_from_torch(torch_vgg())


# ---------------------------------------------------------------------------
# W2.


def _w2(ctx, classes):
  from pairwise import w2_data  # pylint: disable=g-import-not-at-top
  return w2_data(8 if ctx.quick else classes, n=100 if ctx.quick else 500,
                 d=64 if ctx.quick else 512)


def w2_ours(ctx, classes: int):
  """`train_pairwise` on all pairs."""
  from jaxconcepts.ops import pairwise  # pylint: disable=g-import-not-at-top
  x = _w2(ctx, classes)
  counts = np.full((x.shape[0],), x.shape[1])
  return (lambda: pairwise.train_pairwise(x, counts),
          lambda r: {"w": r.weights, "b": r.biases})


def w2_torch(ctx, classes: int, max_pairs: int):
  """The PyTorch loop over the first `max_pairs` pairs (0: all), time scaled to all."""
  from pairwise import peer_pairs, torch_loop  # pylint: disable=g-import-not-at-top
  x = _w2(ctx, classes)
  pairs = peer_pairs(x.shape[0], max_pairs)
  total = x.shape[0] * (x.shape[0] - 1) // 2
  return (lambda: torch_loop(x, pairs),
          lambda r: {"w": r[1], "b": r[2], "pairs": pairs, "_time_scale": total / len(pairs)})


def w2_sklearn(ctx, classes: int, max_pairs: int):
  """scikit-learn LogisticRegression() per pair (speed only), time scaled to all pairs."""
  from pairwise import peer_pairs, sklearn_loop  # pylint: disable=g-import-not-at-top
  x = _w2(ctx, classes)
  pairs = peer_pairs(x.shape[0], max_pairs)
  total = x.shape[0] * (x.shape[0] - 1) // 2
  return lambda: sklearn_loop(x, pairs), lambda r: {"_time_scale": total / len(pairs)}


def w2_agree(ctx, outputs):
  from jaxconcepts.ops import pairwise  # pylint: disable=g-import-not-at-top
  ours = outputs.get("ours")
  out = {}
  for name, o in outputs.items():
    if ours is None or "pairs" not in o:
      continue
    c = int(o["pairs"].max()) + 1 if o["pairs"].size else 0
    c = max(c, int(round((1 + np.sqrt(1 + 8 * ours["w"].shape[0])) / 2)))
    idx = pairwise.pair_index(o["pairs"][:, 0], o["pairs"][:, 1], c)
    out[f"max|w-w_{name}|"] = float(np.abs(o["w"] - ours["w"][idx]).max())
  return out


def _w2_sides(classes):
  def sides(quick, prepared):
    del prepared
    cut = 0 if quick or classes <= 20 else 495
    sk_cut = 8 if quick else 40
    return [Side("ours", "wl_nets:w2_ours", True, None, {"classes": classes},
                 calls=1 if classes > 20 else None),
            Side("torch_loop_t1", "wl_nets:w2_torch", False, 1,
                 {"classes": classes, "max_pairs": cut}, warmup=0, calls=1),
            Side("torch_loop_t2", "wl_nets:w2_torch", False, 2,
                 {"classes": classes, "max_pairs": cut}, warmup=0, calls=1),
            Side("sklearn_lr_t1", "wl_nets:w2_sklearn", False, 1,
                 {"classes": classes, "max_pairs": sk_cut}, warmup=0, calls=1)]
  return sides


# ---------------------------------------------------------------------------
# W3.


def w3_prepare(ctx):
  """Images and the shared noise (N, S, H, W, C), saved for both sides."""
  import os  # pylint: disable=g-import-not-at-top
  n = 6 if ctx.quick else 60
  x = np.random.default_rng(0).random((60, 1, 32, 32)).astype(np.float32)[:n]
  noise = np.random.default_rng(7).standard_normal((n, W3_SAMPLES, 32, 32, 1)).astype(
      np.float32) * W3_STD
  np.save(os.path.join(ctx.data_dir, "w3_x.npy"), x)
  np.save(os.path.join(ctx.data_dir, "w3_noise.npy"), noise)
  return {"images": n}


def _w3_data(ctx):
  import os  # pylint: disable=g-import-not-at-top
  return (np.load(os.path.join(ctx.data_dir, "w3_x.npy")),
          np.load(os.path.join(ctx.data_dir, "w3_noise.npy")))


def w3_ours(ctx, batch_size: int = 256):
  """`layer_deeplift_smoothgrad` (timed, own noise); outputs on the shared noise."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxconcepts.methods import attribution  # pylint: disable=g-import-not-at-top
  model, variables = ours_vgg()
  x, noise = _w3_data(ctx)
  x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
  key = jax.random.key(0)

  def call():
    return attribution.layer_deeplift_smoothgrad(
        model, variables, x, W3_TARGET, W3_LAYER, n_samples=W3_SAMPLES, std=W3_STD,
        baseline=1.0, key=key, batch_size=batch_size)

  def outputs(_):
    res = attribution.deeplift(model, variables, x, W3_TARGET, W3_LAYER, baseline=1.0,
                               noise=noise)
    return {"attr": np.asarray(res.attributions).transpose(0, 3, 1, 2)}
  return call, outputs


def w3_captum(ctx, nt_batch: int | None):
  """Captum NoiseTunnel(LayerDeepLift) (timed); outputs on the shared noise."""
  import torch  # pylint: disable=g-import-not-at-top
  from captum import attr as captum_attr  # pylint: disable=g-import-not-at-top
  from tests import torch_refs  # pylint: disable=g-import-not-at-top
  net = torch_vgg()
  layer = torch_refs.vgg_layer_modules(net)[W3_LAYER]
  x, noise = _w3_data(ctx)
  xt = torch.from_numpy(x)
  kw = dict(nt_type="smoothgrad", nt_samples=W3_SAMPLES, stdevs=W3_STD, baselines=1.0,
            target=W3_TARGET)

  def call():
    nt = captum_attr.NoiseTunnel(captum_attr.LayerDeepLift(net, layer))
    return nt.attribute(xt, nt_samples_batch_size=nt_batch, **kw)

  def outputs(_):
    noise_t = torch.from_numpy(noise.reshape((-1, 32, 32, 1)).transpose(0, 3, 1, 2).copy())
    nt = torch_refs.fixed_noise_tunnel(captum_attr.LayerDeepLift(net, layer), noise_t)
    return {"attr": nt.attribute(xt, **kw).detach().numpy()}
  return call, outputs


def _max_rel(outputs, key):
  ours = [v for k, v in outputs.items() if k.startswith("ours")]
  out = {}
  for name, o in outputs.items():
    if ours and not name.startswith("ours") and key in o:
      ref = o[key]
      out[f"max|diff|/max vs {name}"] = float(np.abs(ours[0][key] - ref).max()
                                              / max(np.abs(ref).max(), 1e-30))
  return out


def _w3_sides(quick, prepared):
  del quick, prepared
  sides = [Side("ours", "wl_nets:w3_ours", True, None, {})]
  for t in (1, 2):
    for b in (None, 1):
      sides.append(Side(f"captum_nt{b or 'all'}_t{t}", "wl_nets:w3_captum", False, t,
                        {"nt_batch": b}, warmup=1, calls=1))
  return sides


# ---------------------------------------------------------------------------
# W4.


def _w4_images(ctx):
  n = 2 if ctx.quick else W4_STEPS
  return np.random.default_rng(0).random((n, W4_BATCH, 1, 32, 32)).astype(np.float32)


def w4_ours(ctx):
  """Our decoder (ConvTranspose "auto") on the frozen VGG's codes, one jitted step."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from flax import linen as nn  # pylint: disable=g-import-not-at-top
  from jaxconcepts.models import layers  # pylint: disable=g-import-not-at-top

  class Dec(nn.Module):
    @nn.compact
    def __call__(self, z):
      for i, w in enumerate((256, 128, 64, 32, 1)):
        z = layers.ConvTranspose(w, 5)(z)
        z = nn.relu(z) if i < 4 else nn.sigmoid(z)
      return z

  model, variables = ours_vgg()
  dec = Dec()
  params = dec.init(jax.random.key(1), jnp.zeros((1, 1, 1, 512)))["params"]
  tx = optax.adam(1e-3)
  images = [jnp.asarray(x.transpose(0, 2, 3, 1)) for x in _w4_images(ctx)]

  @jax.jit
  def step(p, o, x):
    code = jax.lax.stop_gradient(model.apply(variables, x, train=False, stop="conv4"))
    def loss_fn(p):
      return jnp.mean(jnp.sum(jnp.square(dec.apply({"params": p}, code) - x), axis=(1, 2, 3)))
    loss, g = jax.value_and_grad(loss_fn)(p)
    u, o = tx.update(g, o, p)
    return optax.apply_updates(p, u), o, loss

  def call():
    p, o, losses = params, tx.init(params), []
    for x in images:
      p, o, loss = step(p, o, x)
      losses.append(loss)
    return jnp.stack(losses)
  return call, lambda r: {"loss": r}


def w4_torch(ctx, channels_last: bool):
  """The same in PyTorch (NCHW or channels_last)."""
  import torch  # pylint: disable=g-import-not-at-top
  net = torch_vgg()
  for p in net.parameters():
    p.requires_grad_(False)
  torch.manual_seed(1)
  layers, cin = [], 512
  for i, w in enumerate((256, 128, 64, 32, 1)):
    layers += [torch.nn.ConvTranspose2d(cin, w, 5, stride=2, padding=2, output_padding=1),
               torch.nn.ReLU() if i < 4 else torch.nn.Sigmoid()]
    cin = w
  dec = torch.nn.Sequential(*layers)
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  dec, net = dec.to(memory_format=fmt), net.to(memory_format=fmt)
  images = [torch.from_numpy(x).contiguous(memory_format=fmt) for x in _w4_images(ctx)]
  state = dec.state_dict()

  def call():
    dec.load_state_dict(state)
    opt = torch.optim.Adam(dec.parameters(), lr=1e-3)
    losses = []
    for x in images:
      with torch.no_grad():
        code = net.features(x)
      loss = ((dec(code) - x) ** 2).sum(dim=(1, 2, 3)).mean()
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()
      losses.append(float(loss))
    return np.array(losses)
  return call, lambda r: {"loss": r}


def w4_agree(ctx, outputs):
  del ctx
  out = {}
  for name, o in outputs.items():
    out[f"first loss {name}"] = float(o["loss"][0])
  return out


def _torch_layout_sides(fn, kw=None):
  sides = []
  for cl in (False, True):
    for t in (1, 2):
      sides.append(Side(f"torch_{'cl' if cl else 'nchw'}_t{t}", fn, False, t,
                        {"channels_last": cl, **(kw or {})}))
  return sides


# ---------------------------------------------------------------------------
# VGG forward / forward+backward.


def _vgg_batch(ctx):
  n = 64 if ctx.quick else VGG_BATCH
  return np.random.default_rng(1).random((n, 1, 32, 32)).astype(np.float32)


def vgg_ours(ctx, backward: bool):
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  model, variables = ours_vgg()
  x = jax.numpy.asarray(_vgg_batch(ctx).transpose(0, 2, 3, 1))
  y = np.arange(x.shape[0]) % 10
  if not backward:
    fwd = jax.jit(lambda v, x: model.apply(v, x))
    return lambda: fwd(variables, x), lambda r: {"logits": r}

  def loss(params, x):
    logits, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                            train=True, rngs={"dropout": jax.random.key(0)},
                            mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  grad = jax.jit(jax.grad(loss))
  return lambda: grad(variables["params"], x), lambda r: {}


def vgg_torch(ctx, backward: bool, channels_last: bool):
  import torch  # pylint: disable=g-import-not-at-top
  net = torch_vgg()
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  net = net.to(memory_format=fmt)
  x = torch.from_numpy(_vgg_batch(ctx)).contiguous(memory_format=fmt)
  y = torch.arange(x.shape[0]) % 10
  if not backward:
    def fwd():
      with torch.no_grad():
        return net(x)
    return fwd, lambda r: {"logits": r.numpy()}

  def fwd_bwd():
    net.train()
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    return None
  return fwd_bwd, lambda r: {}


# ---------------------------------------------------------------------------


def _w(name, title, sides, expected_s, **kw):
  kw = {"WARMUP": 1, "CALLS": 2, **kw}
  return types.SimpleNamespace(NAME=name, TITLE=title, sides=sides, EXPECTED_S=expected_s,
                               **kw)


WORKLOADS = [
    _w("W2_C20", "W2 pairwise, C = 20 (190 pairs)", _w2_sides(20), 90,
       agree=lambda ctx, o: w2_agree(ctx, o), UNITS=("pairs", 190)),
    _w("W2_C100", "W2 pairwise, C = 100 (4950 pairs; torch loop on 495, scaled)",
       _w2_sides(100), 170, agree=lambda ctx, o: w2_agree(ctx, o), UNITS=("pairs", 4950)),
    _w("W3", "W3 DeepLift + SmoothGrad, 60 images (calibrated-BN VGG)", _w3_sides, 150,
       PREPARE="wl_nets:w3_prepare", agree=lambda ctx, o: _max_rel(o, "attr"),
       UNITS=("images", 60)),
    _w("W4", "W4 decoder training, 50 steps of batch 128", lambda q, p: [
        Side("ours", "wl_nets:w4_ours", True)] + _torch_layout_sides("wl_nets:w4_torch"),
       170, agree=w4_agree, UNITS=("images", W4_STEPS * W4_BATCH), CALLS=1),
    _w("VGG_fwd", "VGG forward, batch 1200 (eval)", lambda q, p: [
        Side("ours", "wl_nets:vgg_ours", True, None, {"backward": False})]
       + _torch_layout_sides("wl_nets:vgg_torch", {"backward": False}), 80,
       agree=lambda ctx, o: _max_rel(o, "logits"), UNITS=("images", VGG_BATCH)),
    _w("VGG_fwdbwd", "VGG forward+backward, batch 1200 (train)", lambda q, p: [
        Side("ours", "wl_nets:vgg_ours", True, None, {"backward": True})]
       + _torch_layout_sides("wl_nets:vgg_torch", {"backward": True}), 130,
       UNITS=("images", VGG_BATCH)),
]
