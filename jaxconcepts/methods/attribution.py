"""Attribution for a classifier split at a layer: DeepLift, IG, SmoothGrad, GradCAM.

Every method scores the input (``layer=None``) or the activations ``h`` at a tap
(``"conv2"``, ``-3``, ``"layer3.5"``; see `jaxconcepts.models.split`) for one pre-softmax
target logit per image: :func:`gradient`, :func:`gradient_x_input`,
:func:`integrated_gradients` (Captum's quadratures; at a layer along the straight line from
``h(x0)`` to ``h(x)``, as ``LayerIntegratedGradients``), :func:`deeplift` (exact Rescale
rule and Captum's max-pool rule; attributions ``(h(x) - h(x0)) * multipliers`` with the
completeness delta ``sum(attributions) - (f(x) - f(x0))``), :func:`deeplift_ig` (its
IG-style approximation for any differentiable model) and :func:`gradcam` (spatial layers,
``(N, h, w)``). Every method takes ``n_samples=`` for SmoothGrad (``smoothing="mean" |
"square" | "vargrad"``); :func:`layer_deeplift_smoothgrad` is the concept extraction setting
(DESIGN section 4). The model-free pieces (DeepLift rules, quadratures, `path_integral`,
`smoothgrad` around any function, `upsample_maps`, `normalize_maps`, the input checks) live
in `jaxconcepts.ops.attribution`; the public ones are re-exported here.

Batching. Images and their SmoothGrad samples go through ``vmap`` together in chunks of at
most ``batch_size`` forward passes (``lax.map`` over chunks inside one ``jit`` whose static
argument is the plan and whose traced arguments include the variables), so memory is bounded
and new weights of the same shapes reuse the compilation. The reference's forward pass runs
once per call (shared baseline) or once per image (per-image baseline), never once per noise
sample, and is never back-propagated (Captum runs and differentiates ``[x; x0]`` for every
noisy sample). With ``mesh=`` (:func:`deeplift`, :func:`layer_deeplift_smoothgrad`) the
images are split over the mesh's devices (`ops.sharding.row_map`; the weights are a
replicated argument); each image keeps its index, so its noise and result do not change.

Exact DeepLift swaps the model's ``act`` (and, if it has one, ``max_pool``) for a custom-VJP
rule (`ops.attribution.rescale_rule`, `max_pool_rule`). One pass of the reference through
the head records the inputs and outputs of every replaceable op in call order
(`ops.attribution.ReferenceTape`); the pass on the (noisy) inputs replays them. This is
exact for any split-protocol model whose nonlinearities all go through ``act`` and
``max_pool`` (our VGG and ResNets: residual additions, eval-mode BatchNorm, dropout off and
average pooling are linear). A nonlinearity the model does not expose is differentiated
plainly, which shows as a non-zero completeness delta. Through a max-pool next to a ReLU (a
ResNet-18/34/50 stem) Captum 0.9.0 is not complete and we are, so input-level DeepLift there
differs from Captum's (see `max_pool_rule`).

The public functions may be called inside a user's ``jax.jit`` with the variables and inputs
traced; the target range is then not checked.

Shapes: inputs ``x`` (N, H, W, C) float; attributions the shape of ``x`` or of the layer's
activations (N, *h.shape); targets an int or (N,) ints; deltas (N,) or, with SmoothGrad, (N,
n_samples) (one per noisy sample).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxconcepts.models import split as split_lib
from jaxconcepts.ops import attribution as attr_ops
from jaxconcepts.ops import sharding as sharding_ops
from jaxconcepts.ops.attribution import (DEFAULT_BATCH_SIZE, EPS, QUADRATURES, SMOOTHINGS,
                                         Attribution, max_pool_rule, normalize_maps, path_integral,
                                         quadrature, rescale_rule, smoothgrad, upsample_maps)
from jaxconcepts.utils import as_key, check_int

__all__ = ["Attribution", "gradient", "gradient_x_input", "integrated_gradients", "deeplift",
           "deeplift_ig", "layer_deeplift_smoothgrad", "gradcam", "smoothgrad", "path_integral",
           "quadrature", "rescale_rule", "max_pool_rule", "upsample_maps", "normalize_maps",
           "EPS", "QUADRATURES", "SMOOTHINGS", "DEFAULT_BATCH_SIZE"]


# ---------------------------------------------------------------------------
# Exact DeepLift through a model: record the reference, replay it (ReferenceTape).


def _has_field(model: nn.Module, name: str) -> bool:
  return any(f.name == name for f in dataclasses.fields(model))


def _replaceable(model: nn.Module) -> tuple[str, ...]:
  """The model's replaceable nonlinearities: `act` and, if present, `max_pool`."""
  return ("act", "max_pool") if _has_field(model, "max_pool") else ("act",)


def _recording_model(model: nn.Module, tape: attr_ops.ReferenceTape) -> nn.Module:
  return model.clone(**{f: tape.record(getattr(model, f)) for f in _replaceable(model)})


def _deeplift_model(model: nn.Module, tape: attr_ops.ReferenceTape, eps: float) -> nn.Module:
  rules = {"act": rescale_rule, "max_pool": max_pool_rule}
  return model.clone(**{f: tape.replay(rules[f](getattr(model, f), eps))
                        for f in _replaceable(model)})


# ---------------------------------------------------------------------------
# The plan: everything static about one attribution call (a jit cache key).


@dataclasses.dataclass(frozen=True)
class _Plan:
  """Static description of one call; holds the model but never its weights."""
  method: str  # "gradient" | "gradient_x_input" | "ig" | "deeplift" | "gradcam"
  model: nn.Module
  layer: str | None
  n_samples: int  # 0: no SmoothGrad
  images_per_chunk: int
  samples_per_group: int
  n_groups: int
  shared_baseline: bool
  explicit_noise: bool
  n_steps: int = 0
  quadrature: str = "gausslegendre"
  eps: float = EPS

  @property
  def has_reference(self) -> bool:
    return self.method in ("ig", "deeplift")


def _encode(plan: _Plan, variables: Any, x: jax.Array) -> jax.Array:
  if plan.layer is None:
    return x
  return split_lib.Split(plan.model, plan.layer).encode(variables, x)


def _head(plan: _Plan, variables: Any, h: jax.Array,
          model: nn.Module | None = None) -> jax.Array:
  """Logits from `h`; `model` is the plan's model or a clone with replaced ops."""
  model = plan.model if model is None else model
  if plan.layer is None:
    return model.apply(variables, h)
  return split_lib.Split(model, plan.layer).head(variables, h)


def _reference(plan: _Plan, variables: Any, b: jax.Array):
  """Per-reference state: (h0, logits0, recorded pre-activations)."""
  h0 = _encode(plan, variables, b)
  if plan.method == "deeplift":
    tape = attr_ops.ReferenceTape()
    logits0 = _head(plan, variables, h0, _recording_model(plan.model, tape))
    return h0, logits0, tuple(tape.refs)
  return h0, _head(plan, variables, h0), ()


def _pick(logits: jax.Array, t: jax.Array) -> jax.Array:
  return logits[:, t]


# ---------------------------------------------------------------------------
# Kernels: one image's samples (g, *S) with target `t` -> (attributions, delta (g,)).


def _gradient_kernel(plan: _Plan, variables, xs, t):
  """Gradient, gradient x input or the GradCAM map; delta is zero (no reference)."""
  zeros = jnp.zeros((xs.shape[0],), xs.dtype)
  h = _encode(plan, variables, xs)
  grad = jax.grad(lambda h: jnp.sum(_pick(_head(plan, variables, h), t)))(h)
  if plan.method == "gradient":
    return grad, zeros
  if plan.method == "gradient_x_input":
    return h * grad, zeros
  weights = jnp.mean(grad, axis=(1, 2), keepdims=True)
  cam = jnp.sum(weights * h, axis=-1)
  return cam, zeros


def _deeplift_kernel(plan: _Plan, variables, xs, t, ref):
  """Exact DeepLift: multipliers from the replayed rules, times ``h - h0``."""
  h0, logits0, refs = ref
  h = _encode(plan, variables, xs)

  def target_logit(h):
    tape = attr_ops.ReferenceTape(refs)
    out = _pick(_head(plan, variables, h, _deeplift_model(plan.model, tape, plan.eps)), t)
    if tape.pos != len(tape.refs):
      raise RuntimeError(
          f"the model called {tape.pos} nonlinearities on the input but "
          f"{len(tape.refs)} on the reference; exact DeepLift needs the same calls")
    return jnp.sum(out), out

  (_, f), mult = jax.value_and_grad(target_logit, has_aux=True)(h)
  attr = (h - h0) * mult
  return attr, attr_ops.sum_per_sample(attr) - (f - _pick(logits0, t))


def _ig_kernel(plan: _Plan, variables, xs, t, ref):
  """Integrated gradients along the straight line from h(x0) to h(x)."""
  alphas, weights = quadrature(plan.quadrature, plan.n_steps)
  head_t = lambda h: _pick(_head(plan, variables, h), t)
  h0, logits0, _ = ref
  h = _encode(plan, variables, xs)
  avg = attr_ops.average_gradient(head_t, h, jnp.broadcast_to(h0, h.shape), alphas, weights)
  attr = (h - h0) * avg
  return attr, attr_ops.sum_per_sample(attr) - (head_t(h) - _pick(logits0, t))


def _kernel(plan: _Plan, variables, xs, t, ref):
  """Attributions (g, *A) and deltas (g,) for the samples `xs` (g, *S) of one image."""
  if plan.method == "deeplift":
    return _deeplift_kernel(plan, variables, xs, t, ref)
  if plan.method == "ig":
    return _ig_kernel(plan, variables, xs, t, ref)
  return _gradient_kernel(plan, variables, xs, t)


# ---------------------------------------------------------------------------
# The driver: chunks of images (lax.map), groups of samples (scan), vmap inside.


@functools.partial(jax.jit, static_argnums=0)
def _run(plan: _Plan, variables, x, target, baseline, key, noise, std, index=None):
  """The chunked, vmapped driver; `plan` is static, the variables are traced.

  `index`: the images' (N,) indices in the call (the noise's fold-in), default 0..N-1.

  Returns:
    (mean over samples (N, *A), mean of squares (N, *A) or None without
    SmoothGrad, deltas (N, max(n_samples, 1))).
  """
  n = x.shape[0]
  c = plan.images_per_chunk
  n_chunks = -(-n // c)
  shared_ref = None
  if plan.has_reference and plan.shared_baseline:
    shared_ref = _reference(plan, variables, baseline)  # once per call
  xs = _chunked_inputs(plan, n_chunks, x, target, baseline, noise, index)
  mean, mean_sq, deltas = jax.lax.map(
      lambda d: _chunk(plan, variables, shared_ref, key, std, d), xs)
  unchunk = lambda a: a.reshape((n_chunks * c,) + a.shape[2:])[:n]
  smooth = plan.n_samples > 0
  return unchunk(mean), (unchunk(mean_sq) if smooth else None), unchunk(deltas)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run_sharded(plan: _Plan, mesh, variables, x, target, baseline, key, noise, std):
  """`_run` with the images split over `mesh` (each keeps its index: same noise)."""
  own = plan.has_reference and not plan.shared_baseline  # per-image baselines: rows
  rows = (x, target, jnp.arange(x.shape[0]), baseline if own else None, noise)
  run = lambda w, r: _run(plan, w[0], r[0], r[1], r[3] if own else w[3], w[1], r[4], w[2], r[2])
  return sharding_ops.row_map(run, mesh, (variables, key, std, None if own else baseline),
                              rows, x.shape[0])


def _chunked_inputs(plan: _Plan, n_chunks: int, x, target, baseline, noise, index) -> dict:
  """Per-image inputs padded (repeating the last image) and reshaped to (n_chunks, c, ...)."""
  c = plan.images_per_chunk
  pad = n_chunks * c - x.shape[0]
  padn = lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, 0)]) if pad else a
  xs = {"x": padn(x), "t": padn(target),
        "i": jnp.arange(n_chunks * c) if index is None else padn(index)}
  if plan.has_reference and not plan.shared_baseline:
    xs["b"] = padn(baseline)
  if plan.explicit_noise:
    nz = noise
    extra = plan.n_groups * plan.samples_per_group - nz.shape[1]
    if extra:
      nz = jnp.concatenate([nz, jnp.zeros((nz.shape[0], extra) + nz.shape[2:], nz.dtype)], 1)
    xs["noise"] = padn(nz)
  return jax.tree.map(lambda a: a.reshape((n_chunks, c) + a.shape[1:]), xs)


def _chunk(plan: _Plan, variables, shared_ref, key, std, d: dict):
  """One chunk of `c` images: sample moments (c, *A) twice and deltas (c, n_samples)."""
  if plan.has_reference and not plan.shared_baseline:
    ref = _reference(plan, variables, d["b"])  # once per image, not per sample
    ref_axis = 0
  else:
    ref, ref_axis = shared_ref, None
  n_samp = max(plan.n_samples, 1)
  c, gs, ng = plan.images_per_chunk, plan.samples_per_group, plan.n_groups

  def group(carry, gi):
    return _group(plan, variables, key, std, d, ref, ref_axis, carry, gi)

  (s1, s2), deltas = attr_ops.scan_groups(group, ng)
  deltas = jnp.moveaxis(deltas, 0, 1).reshape(c, ng * gs)[:, :n_samp]
  return s1 / n_samp, (s2 / n_samp if plan.n_samples > 0 else None), deltas


def _group(plan: _Plan, variables, key, std, d: dict, ref, ref_axis, carry, gi):
  """Sample group `gi` of every image in the chunk; adds to the (sum, sum of squares)."""
  gs = plan.samples_per_group
  s_idx = gi * gs + jnp.arange(gs)
  valid = (s_idx < max(plan.n_samples, 1)).astype(d["x"].dtype)

  def one_image(xi, ti, ii, refi, nzi):
    if ref_axis == 0:
      refi = jax.tree.map(lambda r: r[None], refi)
    samples = _noisy_samples(plan, key, std, xi, ii, nzi, s_idx, gi)
    return _kernel(plan, variables, samples, ti, refi)

  nz = d.get("noise")
  attr, delta = jax.vmap(one_image, in_axes=(0, 0, 0, ref_axis, 0 if nz is not None else None))(
      d["x"], d["t"], d["i"], ref, nz)
  w = valid.reshape((1, gs) + (1,) * (attr.ndim - 2))
  s1, s2 = carry
  s1 = s1 + jnp.sum(attr * w, axis=1)
  if plan.n_samples > 0:
    s2 = s2 + jnp.sum(attr * attr * w, axis=1)
  return (s1, s2), delta


def _noisy_samples(plan: _Plan, key, std, xi, ii, nzi, s_idx, gi) -> jax.Array:
  """The samples of image `xi` in group `gi`: (gs, H, W, C), or (1, H, W, C) unsmoothed."""
  if plan.n_samples == 0:
    return xi[None]
  if plan.explicit_noise:
    gs = plan.samples_per_group
    return xi[None] + jax.lax.dynamic_slice_in_dim(nzi, gi * gs, gs, 0)
  nzs = jax.vmap(lambda s: attr_ops.sample_noise(key, std, ii, s, xi.shape, xi.dtype))(s_idx)
  return xi[None] + nzs


# ---------------------------------------------------------------------------
# Input checks and planning (concrete values, before any long computation).


def _num_classes(model: nn.Module, variables, x: jax.Array) -> int:
  k = getattr(model, "num_classes", None)
  if isinstance(k, int):
    return k
  out = jax.eval_shape(lambda v, a: model.apply(v, a), variables,
                       jax.ShapeDtypeStruct((1,) + x.shape[1:], x.dtype))
  return int(out.shape[-1])


def _method_baseline(method: str, model: nn.Module, baseline: ArrayLike,
                     x: jax.Array) -> tuple[jax.Array, bool]:
  """The checked baseline of a reference method, else an unused shared placeholder."""
  if method in ("ig", "deeplift"):
    baseline, shared = attr_ops.check_baseline(baseline, x)
  else:
    baseline, shared = jnp.zeros((1,) + x.shape[1:], x.dtype), True
  if method == "deeplift" and not _has_field(model, "act"):
    raise ValueError(f"exact DeepLift needs a model whose nonlinearity is the replaceable "
                     f"attribute `act`; {type(model).__name__} has none (use deeplift_ig, "
                     "the IG-style approximation, for any model)")
  return baseline, shared


def _check_layer(model: nn.Module, layer: str | int | None, method: str,
                 image_shape: tuple[int, ...]) -> str | None:
  """The canonical tap name (None: the input); GradCAM needs a spatial tap.

  The model's own input check (`check_input_shape`, our models have one) runs
  first, so images of a size the model was not built for are an error here too.
  """
  if hasattr(model, "check_input_shape"):
    model.check_input_shape(image_shape)
  if layer is None:
    name = None
  elif not hasattr(model, "layer_names"):
    raise ValueError(f"{type(model).__name__} does not follow the split protocol "
                     "(no `layer_names`); layer attribution needs named taps")
  else:
    name = split_lib.resolve_layer(model, layer)
  if method == "gradcam":
    if name is None:
      raise ValueError("GradCAM needs a layer (a conv tap), got layer=None")
    shape = _layer_shape(model, name, image_shape)
    if len(shape) != 3:
      raise ValueError(f"GradCAM needs a spatial layer (activations (h, w, c)); layer "
                       f"{name!r} has per-image shape {shape}")
  return name


@functools.lru_cache(maxsize=64)
def _layer_shape(model: nn.Module, layer: str, image_shape: tuple[int, ...]):
  return split_lib.Split(model, layer).shape(image_shape)


def _plan_and_args(method: str, model: nn.Module, variables, x, target, layer, *,
                   baseline=0.0, n_samples: int = 0, std: float = 0.25, key=None,
                   noise=None, smoothing: str = "mean", batch_size: int = DEFAULT_BATCH_SIZE,
                   passes: int = 1, devices: int = 1, **extra):
  """Validates everything and returns (plan, canonical smoothing, args for `_run`)."""
  x = attr_ops.check_inputs(x)
  batch_size = check_int(batch_size, "batch_size")
  name = _check_layer(model, layer, method, tuple(x.shape[1:]))
  if hasattr(model, "layer_names"):  # channels and layout against the weights, one line
    split_lib.check_fits(model, variables, x.shape)
  target = attr_ops.check_target(target, x.shape[0], _num_classes(model, variables, x))
  smoothing = attr_ops.check_smoothing(smoothing)
  noise, n_samples = attr_ops.check_samples(noise, x, n_samples)
  if n_samples == 0 and smoothing != "mean":
    raise ValueError(f"smoothing={smoothing!r} needs SmoothGrad samples (n_samples >= 1 or "
                     "explicit noise); with n_samples=0 there is nothing to smooth")
  std = attr_ops.check_std(std)
  key = as_key(key)
  baseline, shared = _method_baseline(method, model, baseline, x)
  c, gs, ng = attr_ops.chunking(-(-x.shape[0] // devices), max(1, batch_size // passes),
                                max(n_samples, 1))  # per device
  plan = _Plan(method=method, model=model, layer=name, n_samples=n_samples,
               images_per_chunk=c, samples_per_group=gs, n_groups=ng,
               shared_baseline=shared, explicit_noise=noise is not None, **extra)
  return plan, smoothing, (variables, x, target, baseline, key, noise, jnp.asarray(std, x.dtype))


def _attribute(method, model, variables, x, target, layer, *, mesh=None, **kwargs):
  """Checks, plans and runs (images split over `mesh`, if any); returns (attributions, deltas)."""
  plan, smoothing, args = _plan_and_args(method, model, variables, x, target, layer,
                                         devices=mesh.size if mesh else 1, **kwargs)
  mean, mean_sq, deltas = _run(plan, *args) if mesh is None else _run_sharded(plan, mesh, *args)
  if plan.n_samples == 0:
    deltas = deltas[:, 0]
  n = args[1].shape[0]
  chex.assert_axis_dimension(mean, 0, n)
  chex.assert_shape(deltas, (n, plan.n_samples) if plan.n_samples else (n,))
  return attr_ops.smooth(mean, mean_sq, smoothing), deltas


# ---------------------------------------------------------------------------
# Public methods.

_COMMON_ARGS = """
    model: a Flax module following the split protocol (`layer_names`, ``start`` / ``stop``),
      e.g. from `models.create_model`.
    variables: its {'params', 'batch_stats'} (eval mode is used); may be traced (the function
      can be called inside a user's ``jax.jit``).
    x: (N, H, W, C) float inputs.
    target: the logit to explain: an int or an (N,) int array.
    layer: None for the input, or a tap name / block name / alias.
    batch_size: at most this many forward passes per chunk (memory bound).
    n_samples: SmoothGrad samples per image (0: no smoothing).
    std: SmoothGrad noise standard deviation, in input units.
    key: PRNG key (or int seed) for the noise (default ``PRNGKey(0)``); sample ``s`` of image
      ``i`` uses ``fold_in(fold_in(key, i), s)``, so results do not depend on `batch_size`.
    noise: explicit noise (N, n_samples, H, W, C) added to the inputs instead (``std`` and
      ``key`` unused), e.g. to reproduce another library's draws.
    smoothing: "mean" (SmoothGrad), "square" (mean of squares) or "vargrad" (variance over
      samples); Captum's names are accepted.
"""


def _doc(f):
  f.__doc__ = f.__doc__.replace("  Args:\n", "  Args:" + _COMMON_ARGS, 1)
  return f


@_doc
def gradient(model: nn.Module, variables: Any, x: ArrayLike, target: ArrayLike,
             layer: str | int | None = None, *, batch_size: int = DEFAULT_BATCH_SIZE,
             n_samples: int = 0, std: float = 0.25, key: Any = None,
             noise: ArrayLike | None = None, smoothing: str = "mean") -> jax.Array:
  """Gradient of the target logit with respect to the input or the layer.

  Args:

  Returns:
    (N, *shape) attributions, the shape of `x` or of the layer.
  """
  return _attribute("gradient", model, variables, x, target, layer, batch_size=batch_size,
                    n_samples=n_samples, std=std, key=key, noise=noise,
                    smoothing=smoothing)[0]


@_doc
def gradient_x_input(model: nn.Module, variables: Any, x: ArrayLike, target: ArrayLike,
                     layer: str | int | None = None, *,
                     batch_size: int = DEFAULT_BATCH_SIZE, n_samples: int = 0,
                     std: float = 0.25, key: Any = None, noise: ArrayLike | None = None,
                     smoothing: str = "mean") -> jax.Array:
  """Gradient times the input (or times the layer's activations).

  Args:

  Returns:
    (N, *shape) attributions.
  """
  return _attribute("gradient_x_input", model, variables, x, target, layer,
                    batch_size=batch_size, n_samples=n_samples, std=std, key=key,
                    noise=noise, smoothing=smoothing)[0]


@_doc
def integrated_gradients(model: nn.Module, variables: Any, x: ArrayLike, target: ArrayLike,
                         layer: str | int | None = None, *, baseline: ArrayLike = 0.0,
                         n_steps: int = 50, method: str = "gausslegendre",
                         batch_size: int = DEFAULT_BATCH_SIZE, n_samples: int = 0,
                         std: float = 0.25, key: Any = None,
                         noise: ArrayLike | None = None,
                         smoothing: str = "mean") -> Attribution:
  """Integrated gradients at the input or a layer.

  ``(h - h0) * sum_k w_k grad_h logit(h0 + alpha_k (h - h0))`` with Captum's
  quadratures; at a layer the head is integrated along the straight line
  from ``h(x0)`` to ``h(x)``, as Captum's ``IntegratedGradients`` /
  ``LayerIntegratedGradients`` (``multiply_by_inputs=True``). At a layer this
  is also the IG-style approximation of DeepLift, :func:`deeplift_ig`.

  Args:
    baseline: reference input, broadcastable to `x`: a scalar, (H, W, C),
      (1, H, W, C) or (N, H, W, C).
    n_steps: quadrature points (each costs one forward and backward pass; a
      chunk holds ``batch_size // (n_steps + 1)`` samples).
    method: one of `QUADRATURES`.

  Returns:
    `Attribution` (attributions (N, *shape), delta).
  """
  n_steps = check_int(n_steps, "n_steps")
  quadrature(method, n_steps)  # validates
  attrs, deltas = _attribute(
      "ig", model, variables, x, target, layer, baseline=baseline, batch_size=batch_size,
      n_samples=n_samples, std=std, key=key, noise=noise, smoothing=smoothing,
      passes=n_steps + 1, n_steps=n_steps, quadrature=method)
  return Attribution(attrs, deltas)


@_doc
def deeplift(model: nn.Module, variables: Any, x: ArrayLike, target: ArrayLike,
             layer: str | int | None = None, *, baseline: ArrayLike = 0.0,
             eps: float = EPS, batch_size: int = DEFAULT_BATCH_SIZE, n_samples: int = 0,
             std: float = 0.25, key: Any = None, noise: ArrayLike | None = None,
             smoothing: str = "mean", mesh: Any = None) -> Attribution:
  """Exact DeepLift (Rescale rule; Captum's max-pool rule) at the input or a layer.

  Equal to Captum's ``DeepLift`` / ``LayerDeepLift`` (``multiply_by_inputs=True``,
  attribution to the layer's output) and, with ``n_samples``, to
  ``NoiseTunnel(LayerDeepLift)`` fed the same noise - except through a
  max-pool next to a ReLU, where Captum 0.9.0 is not complete and we are
  (see the module docstring).

  Args:
    baseline: reference input, broadcastable to `x` (scalar, (H, W, C),
      (1, H, W, C): computed once; (N, H, W, C): once per image).
    eps: where ``|x - x0| < eps`` at a nonlinearity its plain gradient is used.
    mesh: a `jax.sharding.Mesh` to split the images over (padded to a multiple
      of its devices; the same results); None: one device.

  Returns:
    `Attribution`: attributions ``(h(x) - h(x0)) * multipliers`` (N, *shape)
    (averaged over noisy samples with SmoothGrad) and the completeness delta
    ``sum(attributions) - (f(x) - f(x0))``, (N,) or (N, n_samples).
  """
  attrs, deltas = _attribute("deeplift", model, variables, x, target, layer,
                             baseline=baseline, batch_size=batch_size, n_samples=n_samples,
                             std=std, key=key, noise=noise, smoothing=smoothing, eps=float(eps),
                             mesh=mesh)
  return Attribution(attrs, deltas)


@_doc
def deeplift_ig(model: nn.Module, variables: Any, x: ArrayLike, target: ArrayLike,
                layer: str | int | None = None, *, baseline: ArrayLike = 0.0,
                n_steps: int = 50, method: str = "gausslegendre",
                batch_size: int = DEFAULT_BATCH_SIZE, n_samples: int = 0,
                std: float = 0.25, key: Any = None, noise: ArrayLike | None = None,
                smoothing: str = "mean") -> Attribution:
  """The IG-style approximation of DeepLift; needs no replaceable nonlinearity.

  Multipliers are the average gradient of the head along the straight line
  from ``h(x0)`` to ``h(x)``: this is :func:`integrated_gradients` at the
  layer (Captum's ``LayerIntegratedGradients``), named for its role.

  Args:
    baseline: reference input, broadcastable to `x`.
    n_steps: quadrature points.
    method: one of `QUADRATURES`.

  Returns:
    `Attribution` (attributions (N, *shape), delta).
  """
  return integrated_gradients(model, variables, x, target, layer, baseline=baseline,
                              n_steps=n_steps, method=method,
                              batch_size=batch_size, n_samples=n_samples, std=std,
                              key=key, noise=noise, smoothing=smoothing)


def layer_deeplift_smoothgrad(model: nn.Module, variables: Any, images: ArrayLike,
                              target: ArrayLike, layer: str | int, *, n_samples: int = 20,
                              std: float = 0.25, baseline: ArrayLike = 1.0, key: Any = None,
                              noise: ArrayLike | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                              mesh: Any = None) -> jax.Array:
  """Concept extraction's attribution: DeepLift + SmoothGrad at a layer.

  The concept paper's setting (Herdt et al., Sec. 4; Captum
  ``NoiseTunnel(LayerDeepLift)``): 20 noisy samples with std 0.25 in input
  units, a white baseline (1.0), the pre-softmax logit of `target`.

  Args:
    model: the classifier (split protocol, replaceable `act`).
    variables: its variables (may be traced).
    images: (N, H, W, C) float.
    target: int or (N,) int array.
    layer: the tap to attribute to.
    n_samples, std, baseline, key, noise, batch_size, mesh: see :func:`deeplift`.

  Returns:
    (N, *h.shape) attributions at `layer` (use :func:`deeplift` with
    ``n_samples`` for the completeness deltas too).
  """
  if layer is None:
    raise ValueError("layer_deeplift_smoothgrad needs a layer, got None")
  return deeplift(model, variables, images, target, layer, baseline=baseline,
                  batch_size=batch_size, n_samples=n_samples, std=std, key=key,
                  noise=noise, mesh=mesh).attributions


def gradcam(model: nn.Module, variables: Any, x: ArrayLike, target: ArrayLike,
            layer: str | int, *, relu: bool = True,
            batch_size: int = DEFAULT_BATCH_SIZE) -> jax.Array:
  """GradCAM at a spatial layer (Selvaraju et al.; Captum ``LayerGradCam``).

  ``cam = relu(sum_c mean_{ij}(d logit / d h_{ijc}) * h_{ijc})``.

  Args:
    model: the classifier (split protocol).
    variables: its variables (may be traced).
    x: (N, H, W, C) float inputs.
    target: int or (N,) int array.
    layer: a tap with (h, w, c) activations.
    relu: apply the ReLU (Captum's ``relu_attributions``; its default is off).
    batch_size: images per chunk.

  Returns:
    (N, h, w) maps at the layer's resolution (see :func:`upsample_maps`).
  """
  cam = _attribute("gradcam", model, variables, x, target, layer, batch_size=batch_size)[0]
  return jax.nn.relu(cam) if relu else cam
