"""Attribution for a classifier split at a layer: DeepLift, IG, SmoothGrad, GradCAM.

Every method scores either the input (``layer=None``) or the activations ``h``
at a tap (``layer="conv2"``, ``-3``, ``"layer3.5"``; see `jaxconcepts.models.split`)
for one target logit per image (pre-softmax):

* :func:`gradient` - ``d logit / d h``;
* :func:`gradient_x_input` - ``h * d logit / d h``;
* :func:`integrated_gradients` - ``(h - h0) * mean_alpha d logit / d h`` along
  a straight path, with Captum's quadratures (``gausslegendre`` by default,
  ``riemann_{left,right,middle,trapezoid}``). At a layer the path is the
  straight line from ``h(x0)`` to ``h(x)`` in activation space, as Captum's
  ``LayerIntegratedGradients``;
* :func:`deeplift` - exact DeepLift (Rescale rule). The model's nonlinearity
  ``act`` (and, if it has one, its ``max_pool``) is swapped for a custom-VJP op
  that sees its own pre-activation ``x`` and the reference's ``x0`` and
  back-propagates ``(f(x) - f(x0)) / (x - x0)``, or the plain gradient where
  ``|x - x0| < eps`` (Captum's rule, ``eps = 1e-10``); max-pools follow
  Captum's DeepLift max-pool formula (:func:`max_pool_rule`). Attributions
  are ``(h(x) - h(x0)) * multipliers``, and the completeness delta
  ``sum(attributions) - (f(x) - f(x0))`` is returned with them;
* :func:`deeplift_ig` - an integrated-gradients-style approximation of
  DeepLift that needs nothing from the model (any differentiable function):
  the multipliers are the average gradient of the head along the straight line
  from ``h(x0)`` to ``h(x)`` (:func:`path_integral` is the same for any
  function of a batch). For a linear head it equals DeepLift exactly; for a
  head with one layer of elementwise nonlinearities it converges to the
  Rescale multipliers as ``n_steps`` grows (the average slope along the line
  is the secant); deeper heads differ from DeepLift (both are complete:
  completeness holds for IG in the limit);
* SmoothGrad around any of them (``n_samples`` noisy copies of each image,
  noise ``std`` in input units; ``smoothing="mean" | "square" | "vargrad"``),
  built in (every method takes ``n_samples=``) or around any function with
  :func:`smoothgrad`; :func:`layer_deeplift_smoothgrad` is the concept
  extraction setting (DESIGN section 4);
* :func:`gradcam` - GradCAM at any spatial layer, ``(N, h, w)``;
  :func:`upsample_maps` and :func:`normalize_maps` for the occlusion study.

Batching. Images and their SmoothGrad samples go through ``vmap`` together in
chunks of at most ``batch_size`` forward passes (``lax.map`` over chunks, all
inside one ``jit``), so memory is bounded whatever the number of images. The
reference's forward pass is computed once: a shared baseline (a scalar, an
(H, W, C) image or a batch of one) is run once per call, a per-image baseline
once per image - never once per noise sample, and the reference half is never
back-propagated (Captum runs and differentiates the concatenation
``[x; x0]`` for every noisy sample).

How exact DeepLift sees the reference: one forward pass of the reference
through the head records the pre-activations of every replaceable op in call
order; the pass on the (noisy) inputs replays them, each op taking the next
recorded reference. This works for any model following the split protocol
whose nonlinearities all go through its ``act`` (elementwise) and
``max_pool`` attributes (our VGG and ResNets: residual additions, BatchNorm in
eval mode, dropout off and global average pooling are linear and need no
rule). A nonlinearity the model does not expose is differentiated plainly,
which shows up as a non-zero completeness delta.

Max-pools and Captum. The max-pool rule routes ``g * (max(y, y0) - y0)``
through the pool's VJP at ``x`` and ``g * (y - max(y, y0))`` through the VJP at
``x0`` and divides by ``x - x0`` - Captum's formula, complete to rounding,
and equal to Captum 0.9.0 where Captum is complete (tested on a model with no
ReLU next to the pool). Captum 0.9.0 is not complete when a ReLU feeds or
follows the pool (a ResNet stem): its max-pool fallback uses the first
sample's gradient (captum issue #1276), its hooks hand the pool the plain
gradient of an adjacent ReLU instead of the Rescaled one, and its
``max_unpool`` overwrites instead of adding where 3x3/2 windows overlap. So
input-level DeepLift through a ResNet-18/34/50 stem differs from Captum's
(ours has a zero delta, Captum's does not); attributions at ``layer1.0`` or
deeper never pass the stem and are unaffected. Our ResNet-10 (CIFAR stem)
has no max-pool.

Shapes: inputs ``x`` are (N, H, W, C) floats; attributions have the shape of
``x`` (``layer=None``) or of the layer's activations (N, *h.shape); targets are
an int or an (N,) int array; deltas are (N,) or, with SmoothGrad, (N, n_samples)
(one per noisy sample).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxconcepts.models import split as split_lib

EPS = 1e-10  # Captum's threshold for falling back to the gradient.
QUADRATURES = ("gausslegendre", "riemann_trapezoid", "riemann_left",
               "riemann_right", "riemann_middle")
SMOOTHINGS = ("mean", "square", "vargrad")
_SMOOTHING_ALIASES = {"smoothgrad": "mean", "smoothgrad_sq": "square",
                      "mean": "mean", "square": "square", "vargrad": "vargrad"}
DEFAULT_BATCH_SIZE = 256


class Attribution(NamedTuple):
  """Attributions and their completeness delta.

  Attributes:
    attributions: (N, *shape) float, shape of the input or of the layer.
    delta: sum of each sample's attributions minus ``f(x) - f(x0)`` for its
      target logit: (N,), or (N, n_samples) with SmoothGrad (one per noisy
      sample, as Captum's NoiseTunnel).
  """
  attributions: jax.Array
  delta: jax.Array


# ---------------------------------------------------------------------------
# DeepLift rules as custom-VJP ops.


def rescale_rule(fn: Callable[[jax.Array], jax.Array],
                 eps: float = EPS) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """The DeepLift Rescale rule for an elementwise nonlinearity.

  Args:
    fn: elementwise function (``nn.relu``, ``jnp.tanh``, ...).
    eps: where ``|x - x_ref| < eps`` the plain derivative ``fn'(x)`` is used.

  Returns:
    ``op(x, x_ref) = fn(x)`` whose VJP multiplies the cotangent by
    ``(fn(x) - fn(x_ref)) / (x - x_ref)``; ``x_ref`` broadcasts against ``x``
    (e.g. one reference for a batch of noisy inputs) and gets no cotangent.
  """
  op = _rescale_op(fn, eps)
  return lambda x, x_ref: op(x, x_ref, fn(x_ref))


def _rescale_op(fn, eps):
  """``op(x, x_ref, y_ref) = fn(x)`` with the Rescale VJP; ``y_ref = fn(x_ref)``."""

  @jax.custom_vjp
  def op(x, x_ref, y_ref):
    del x_ref, y_ref
    return fn(x)

  def fwd(x, x_ref, y_ref):
    y, slope = jax.jvp(fn, (x,), (jnp.ones_like(x),))
    dx = x - x_ref
    small = jnp.abs(dx) < eps
    secant = (y - y_ref) / jnp.where(small, jnp.ones_like(dx), dx)
    return y, jnp.where(small, slope, secant)

  def bwd(multiplier, g):
    return g * multiplier, None, None

  op.defvjp(fwd, bwd)
  return op


def max_pool_rule(pool: Callable[[jax.Array], jax.Array],
                  eps: float = EPS) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """Captum's DeepLift rule for a max-pool (any window, via the pool's VJP).

  With ``y = pool(x)``, ``y0 = pool(x0)`` and ``m = max(y, y0)``, the
  cotangent ``g`` becomes ``(P_x(g (m - y0)) + P_x0(g (y - m))) / (x - x0)``,
  where ``P_z`` routes a pooled value back to the arg-max of its window at
  ``z`` (the pool's VJP at ``z``); where ``|x - x0| < eps``, the plain
  gradient. The contributions of every window sum to ``g (y - y0)``, so
  completeness holds.

  Args:
    pool: the model's max-pool, ``(N, H, W, C) -> (N, H', W', C)``.
    eps: fallback threshold.

  Returns:
    ``op(x, x_ref) = pool(x)`` with that VJP.
  """

  @jax.custom_vjp
  def op(x, x_ref):
    del x_ref
    return pool(x)

  def fwd(x, x_ref):
    return pool(x), (x, x_ref)

  def bwd(res, g):
    x, x_ref = res
    x_ref = jnp.broadcast_to(x_ref, x.shape)
    y, vjp_x = jax.vjp(pool, x)
    y0, vjp_ref = jax.vjp(pool, x_ref)
    top = jnp.maximum(y, y0)
    routed = vjp_x(g * (top - y0))[0] + vjp_ref(g * (y - top))[0]
    dx = x - x_ref
    small = jnp.abs(dx) < eps
    plain = vjp_x(g)[0]
    return jnp.where(small, plain, routed / jnp.where(small, jnp.ones_like(dx), dx)), None

  op.defvjp(fwd, bwd)
  return op


class _Tape:
  """The reference's inputs and outputs of a model's replaceable ops, in call order.

  A recording pass on the reference stores ``(x0, f(x0))`` for every call of
  ``act`` / ``max_pool``; the pass on the inputs replays them, each call
  taking the next stored pair, so the reference's forward pass is never
  repeated.
  """

  def __init__(self, refs: Sequence[tuple[jax.Array, jax.Array]] = ()):
    self.refs = list(refs)
    self.pos = 0

  def record(self, fn: Callable) -> Callable:
    def call(x):
      y = fn(x)
      self.refs.append((x, y))
      return y
    return call

  def replay(self, rule: Callable) -> Callable:
    """`rule(x, x_ref, y_ref)` applied with the next recorded reference."""
    def call(x):
      if self.pos >= len(self.refs):
        raise RuntimeError(
            "the model called its nonlinearities more often on the input than on the "
            "reference; exact DeepLift needs the same sequence of `act` / `max_pool` calls")
      x_ref, y_ref = self.refs[self.pos]
      self.pos += 1
      if x_ref.shape[1:] != x.shape[1:]:
        raise RuntimeError(
            f"nonlinearity call {self.pos} sees shape {x.shape[1:]} on the input but "
            f"{x_ref.shape[1:]} on the reference; the calls are not in the same order")
      return rule(x, x_ref, y_ref)
    return call


def _has_field(model: nn.Module, name: str) -> bool:
  return any(f.name == name for f in dataclasses.fields(model))


def _recording_model(model: nn.Module, tape: _Tape) -> nn.Module:
  overrides = {"act": tape.record(model.act)}
  if _has_field(model, "max_pool"):
    overrides["max_pool"] = tape.record(model.max_pool)
  return model.clone(**overrides)


def _deeplift_model(model: nn.Module, tape: _Tape, eps: float) -> nn.Module:
  overrides = {"act": tape.replay(_rescale_op(model.act, eps))}
  if _has_field(model, "max_pool"):
    pool_rule = max_pool_rule(model.max_pool, eps)
    overrides["max_pool"] = tape.replay(lambda x, x_ref, y_ref: pool_rule(x, x_ref))
  return model.clone(**overrides)


# ---------------------------------------------------------------------------
# Path integrals (integrated gradients) for any function.


def quadrature(method: str, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
  """Points ``alpha`` in [0, 1] and weights of Captum's IG quadratures.

  Returns:
    (alphas, weights), each (n_steps,) float64. As Captum, the trapezoid
    weights are ``1/n`` with both ends halved (they sum to ``1 - 1/n``).
  """
  if method not in QUADRATURES:
    raise ValueError(f"unknown quadrature {method!r}; valid: {list(QUADRATURES)}")
  n = int(n_steps)
  if method == "gausslegendre":
    if n < 1:
      raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    points, weights = np.polynomial.legendre.leggauss(n)
    return 0.5 * (1.0 + points), 0.5 * weights
  if n < 2:
    raise ValueError(f"n_steps must be >= 2 for {method}, got {n_steps}")
  weights = np.full(n, 1.0 / n)
  if method == "riemann_trapezoid":
    weights[0] /= 2
    weights[-1] /= 2
    return np.linspace(0.0, 1.0, n), weights
  if method == "riemann_left":
    return np.linspace(0.0, 1.0 - 1.0 / n, n), weights
  if method == "riemann_right":
    return np.linspace(1.0 / n, 1.0, n), weights
  return np.linspace(1.0 / (2 * n), 1.0 - 1.0 / (2 * n), n), weights


def path_integral(fn: Callable[[jax.Array], jax.Array], x: jax.Array, x0: jax.Array,
                  *, n_steps: int = 50, method: str = "gausslegendre") -> Attribution:
  """Integrated gradients of any differentiable batched function.

  The IG-style approximation of DeepLift for functions whose nonlinearities
  cannot be replaced: ``(x - x0) * sum_k w_k grad fn(x0 + alpha_k (x - x0))``.

  Args:
    fn: (B, *S) -> (B,) scalar per sample (e.g. one logit of a head).
    x: (B, *S) points.
    x0: reference, broadcastable to ``x``.
    n_steps: quadrature points.
    method: one of `QUADRATURES`.

  Returns:
    `Attribution` with attributions (B, *S) and delta (B,) =
    ``sum(attributions) - (fn(x) - fn(x0))``.
  """
  alphas, weights = quadrature(method, n_steps)
  x0 = jnp.broadcast_to(x0, x.shape).astype(x.dtype)
  avg = _average_gradient(fn, x, x0, alphas, weights)
  attr = (x - x0) * avg
  delta = _sum_per_sample(attr) - (fn(x) - fn(x0))
  return Attribution(attr, delta)


def _average_gradient(fn, x, x0, alphas, weights):
  """sum_k w_k grad fn at x0 + alpha_k (x - x0), all steps in one batch."""
  b = x.shape[0]
  a = jnp.asarray(alphas, x.dtype).reshape((-1, 1) + (1,) * (x.ndim - 1))
  points = (x0[None] + a * (x - x0)[None]).reshape((-1,) + x.shape[1:])
  grads = jax.grad(lambda p: jnp.sum(fn(p)))(points).reshape((len(alphas), b) + x.shape[1:])
  w = jnp.asarray(weights, x.dtype).reshape((-1,) + (1,) * x.ndim)
  return jnp.sum(grads * w, axis=0)


def _sum_per_sample(a: jax.Array) -> jax.Array:
  return jnp.sum(a.reshape(a.shape[0], -1), axis=1)


# ---------------------------------------------------------------------------
# The plan: everything static about one attribution call (a jit cache key).


@dataclasses.dataclass(frozen=True)
class _Plan:
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


def _encode(plan: _Plan, variables, x):
  if plan.layer is None:
    return x
  return plan.model.apply(variables, x, stop=plan.layer)


def _head(plan: _Plan, variables, h, model=None):
  model = plan.model if model is None else model
  return model.apply(variables, h, start=plan.layer)


def _reference(plan: _Plan, variables, b):
  """Per-reference state: (h0, logits0, recorded pre-activations)."""
  h0 = _encode(plan, variables, b)
  if plan.method == "deeplift":
    tape = _Tape()
    logits0 = _head(plan, variables, h0, _recording_model(plan.model, tape))
    return h0, logits0, tuple(tape.refs)
  return h0, _head(plan, variables, h0), ()


def _pick(logits, t):
  return logits[:, t]


def _kernel(plan: _Plan, variables, xs, t, ref):
  """Attributions for the samples `xs` (g, *S) of one image with target `t`.

  Returns (attributions (g, *A), delta (g,)); delta is zeros for methods
  without a reference.
  """
  g = xs.shape[0]
  zeros = jnp.zeros((g,), xs.dtype)
  if plan.method in ("gradient", "gradient_x_input", "gradcam"):
    h = _encode(plan, variables, xs)
    grad = jax.grad(lambda h: jnp.sum(_pick(_head(plan, variables, h), t)))(h)
    if plan.method == "gradient":
      return grad, zeros
    if plan.method == "gradient_x_input":
      return h * grad, zeros
    weights = jnp.mean(grad, axis=(1, 2), keepdims=True)
    cam = jnp.sum(weights * h, axis=-1)
    return cam, zeros

  if plan.method == "deeplift":
    h0, logits0, refs = ref
    h = _encode(plan, variables, xs)

    def target_logit(h):
      tape = _Tape(refs)
      out = _pick(_head(plan, variables, h, _deeplift_model(plan.model, tape, plan.eps)), t)
      if tape.pos != len(tape.refs):
        raise RuntimeError(
            f"the model called {tape.pos} nonlinearities on the input but "
            f"{len(tape.refs)} on the reference; exact DeepLift needs the same calls")
      return jnp.sum(out), out

    (_, f), mult = jax.value_and_grad(target_logit, has_aux=True)(h)
    attr = (h - h0) * mult
    return attr, _sum_per_sample(attr) - (f - _pick(logits0, t))

  # Integrated gradients along the straight line from h(x0) to h(x).
  alphas, weights = quadrature(plan.quadrature, plan.n_steps)
  head_t = lambda h: _pick(_head(plan, variables, h), t)
  h0, logits0, _ = ref
  h = _encode(plan, variables, xs)
  avg = _average_gradient(head_t, h, jnp.broadcast_to(h0, h.shape), alphas, weights)
  attr = (h - h0) * avg
  return attr, _sum_per_sample(attr) - (head_t(h) - _pick(logits0, t))


def _noise(key, std, image_index, sample_index, shape, dtype):
  """Noise for one (image, sample) pair; independent of chunking."""
  k = jax.random.fold_in(jax.random.fold_in(key, image_index), sample_index)
  return std * jax.random.normal(k, shape, dtype)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _noise_pairs(key, std, image_index, sample_index, shape, dtype):
  """Noise for pairs (image_index[k], sample_index[k]), stacked: (K, *shape)."""
  return jax.vmap(lambda i, s: _noise(key, std, i, s, shape, dtype))(image_index, sample_index)


@functools.partial(jax.jit, static_argnums=0)
def _run(plan: _Plan, variables, x, target, baseline, key, noise, std):
  """The chunked, vmapped driver.

  Returns:
    (mean over samples (N, *A), mean of squares (N, *A) or None without
    SmoothGrad, deltas (N, max(n_samples, 1))).
  """
  n = x.shape[0]
  c, gs, ng = plan.images_per_chunk, plan.samples_per_group, plan.n_groups
  n_chunks = -(-n // c)
  pad = n_chunks * c - n
  padn = lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, 0)]) if pad else a
  smooth = plan.n_samples > 0
  n_samp = max(plan.n_samples, 1)

  shared_ref = None
  if plan.has_reference and plan.shared_baseline:
    shared_ref = _reference(plan, variables, baseline)  # once per call

  xs = {"x": padn(x), "t": padn(target), "i": jnp.arange(n_chunks * c)}
  if plan.has_reference and not plan.shared_baseline:
    xs["b"] = padn(baseline)
  if plan.explicit_noise:
    nz = noise
    extra = ng * gs - nz.shape[1]
    if extra:
      nz = jnp.concatenate([nz, jnp.zeros((nz.shape[0], extra) + nz.shape[2:], nz.dtype)], 1)
    xs["noise"] = padn(nz)
  xs = jax.tree.map(lambda a: a.reshape((n_chunks, c) + a.shape[1:]), xs)

  def chunk(d):
    if plan.has_reference and not plan.shared_baseline:
      ref = _reference(plan, variables, d["b"])  # once per image, not per sample
      ref_axis = 0
    else:
      ref, ref_axis = shared_ref, None

    def group(carry, gi):
      s_idx = gi * gs + jnp.arange(gs)
      valid = (s_idx < n_samp).astype(x.dtype)

      def one_image(xi, ti, ii, refi, nzi):
        if ref_axis == 0:
          refi = jax.tree.map(lambda r: r[None], refi)
        if not smooth:
          samples = xi[None]
        elif plan.explicit_noise:
          samples = xi[None] + jax.lax.dynamic_slice_in_dim(nzi, gi * gs, gs, 0)
        else:
          nzs = jax.vmap(lambda s: _noise(key, std, ii, s, xi.shape, xi.dtype))(s_idx)
          samples = xi[None] + nzs
        return _kernel(plan, variables, samples, ti, refi)

      nz = d.get("noise")
      attr, delta = jax.vmap(one_image, in_axes=(0, 0, 0, ref_axis, 0 if nz is not None else None))(
          d["x"], d["t"], d["i"], ref, nz)
      w = valid.reshape((1, gs) + (1,) * (attr.ndim - 2))
      s1, s2 = carry
      s1 = s1 + jnp.sum(attr * w, axis=1)
      if smooth:
        s2 = s2 + jnp.sum(attr * attr * w, axis=1)
      return (s1, s2), delta

    (s1, s2), deltas = _scan_groups(group, ng)
    deltas = jnp.moveaxis(deltas, 0, 1).reshape(c, ng * gs)[:, :n_samp]
    return s1 / n_samp, (s2 / n_samp if smooth else None), deltas

  mean, mean_sq, deltas = jax.lax.map(chunk, xs)
  unchunk = lambda a: a.reshape((n_chunks * c,) + a.shape[2:])[:n]
  return unchunk(mean), (unchunk(mean_sq) if smooth else None), unchunk(deltas)


def _scan_groups(group, n_groups):
  """Runs `group` over sample groups, accumulating (sum, sum of squares)."""
  zero = jnp.zeros((), jnp.float32)
  if n_groups == 1:
    (s1, s2), delta = group((zero, zero), jnp.int32(0))
    return (s1, s2), delta[None]
  # Accumulator shapes from an abstract evaluation of one group (no FLOPs).
  (s1, _), _ = jax.eval_shape(lambda: group((zero, zero), jnp.int32(0)))
  acc = jnp.zeros(s1.shape, s1.dtype)
  return jax.lax.scan(group, (acc, acc), jnp.arange(n_groups))


# ---------------------------------------------------------------------------
# Input checks and planning (concrete values, before any long computation).


def _is_tracer(v) -> bool:
  return isinstance(v, jax.core.Tracer)


def _check_inputs(x) -> jax.Array:
  if not hasattr(x, "dtype"):
    x = np.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(
        f"inputs must be a floating-point array (N, H, W, C), got dtype {x.dtype}; "
        "convert images to float (e.g. x.astype(np.float32) / 255)")
  x = jnp.asarray(x)
  if x.ndim != 4 or x.shape[0] < 1:
    raise ValueError(f"inputs must have shape (N, H, W, C) with N >= 1, got {x.shape}")
  return x


def _num_classes(model: nn.Module, variables, x: jax.Array) -> int:
  k = getattr(model, "num_classes", None)
  if isinstance(k, int):
    return k
  out = jax.eval_shape(lambda v, a: model.apply(v, a), variables,
                       jax.ShapeDtypeStruct((1,) + x.shape[1:], x.dtype))
  return int(out.shape[-1])


def _check_target(target, n: int, num_classes: int) -> jax.Array:
  t = target if hasattr(target, "dtype") else np.asarray(target)
  if not jnp.issubdtype(t.dtype, jnp.integer):
    raise TypeError(f"target must be an int or an integer array of shape (N,), "
                    f"got dtype {t.dtype}")
  if t.ndim == 0:
    t = jnp.full((n,), t, jnp.int32)
  elif t.shape != (n,):
    raise ValueError(f"target must be an int or have shape (N,) = ({n},), got shape {t.shape}")
  if not _is_tracer(t):
    tn = np.asarray(t)
    bad = tn[(tn < 0) | (tn >= num_classes)]
    if bad.size:
      raise ValueError(f"target class {int(bad[0])} is out of range for a model with "
                       f"{num_classes} classes (valid: 0 .. {num_classes - 1})")
  return jnp.asarray(t, jnp.int32)


def _check_baseline(baseline, x: jax.Array) -> tuple[jax.Array, bool]:
  """Returns (baseline, shared): (1, *S) if shared by all images, else (N, *S)."""
  b = baseline if hasattr(baseline, "dtype") else np.asarray(baseline)
  if not (jnp.issubdtype(b.dtype, jnp.floating) or jnp.issubdtype(b.dtype, jnp.integer)):
    raise TypeError(f"baseline must be a real number or array, got dtype {b.dtype}")
  try:
    ok = np.broadcast_shapes(b.shape, x.shape) == x.shape
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(f"baseline of shape {tuple(b.shape)} does not broadcast to the "
                     f"inputs' shape {tuple(x.shape)}; give a scalar, an (H, W, C) image, "
                     "(1, H, W, C) or (N, H, W, C)")
  b = jnp.asarray(b, x.dtype)
  shared = b.ndim < 4 or b.shape[0] == 1
  shape = (1,) + x.shape[1:] if shared else x.shape
  return jnp.broadcast_to(b, shape), shared


def _check_positive_int(value, name: str, minimum: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return int(value)


def _check_key(key):
  """None -> PRNGKey(0); an int -> PRNGKey(int); a key passes through."""
  if key is None:
    return jax.random.PRNGKey(0)
  if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
    return jax.random.PRNGKey(int(key))
  return key


def _check_layer(model: nn.Module, layer) -> str | None:
  if layer is None:
    return None
  if not hasattr(model, "layer_names"):
    raise ValueError(f"{type(model).__name__} does not follow the split protocol "
                     "(no `layer_names`); layer attribution needs named taps")
  return split_lib.resolve_layer(model, layer)


@functools.lru_cache(maxsize=64)
def _layer_shape(model: nn.Module, layer: str, image_shape: tuple[int, ...]):
  return split_lib.layer_shapes(model, image_shape)[layer]


def _plan_and_args(method: str, model: nn.Module, variables, x, target, layer, *,
                   baseline=0.0, n_samples: int = 0, std: float = 0.25, key=None,
                   noise=None, smoothing: str = "mean", batch_size: int = DEFAULT_BATCH_SIZE,
                   passes: int = 1, **extra):
  """Validates everything and returns (plan, args for `_run`)."""
  x = _check_inputs(x)
  n = x.shape[0]
  batch_size = _check_positive_int(batch_size, "batch_size")
  name = _check_layer(model, layer)
  if method == "gradcam":
    if name is None:
      raise ValueError("GradCAM needs a layer (a conv tap), got layer=None")
    shape = _layer_shape(model, name, tuple(x.shape[1:]))
    if len(shape) != 3:
      raise ValueError(f"GradCAM needs a spatial layer (activations (h, w, c)); layer "
                       f"{name!r} has per-image shape {shape}")
  target = _check_target(target, n, _num_classes(model, variables, x))
  if smoothing not in _SMOOTHING_ALIASES:
    raise ValueError(f"unknown smoothing {smoothing!r}; valid: {list(SMOOTHINGS)} "
                     "(or Captum's 'smoothgrad', 'smoothgrad_sq')")
  smoothing = _SMOOTHING_ALIASES[smoothing]
  n_samples = _check_positive_int(n_samples, "n_samples", 0)
  if noise is not None:
    noise = jnp.asarray(noise, x.dtype)
    if noise.ndim != 5 or noise.shape[0] != n or noise.shape[2:] != x.shape[1:]:
      raise ValueError(f"noise must have shape (N, n_samples, H, W, C) = ({n}, n, "
                       f"{', '.join(map(str, x.shape[1:]))}), got {noise.shape}")
    if n_samples not in (0, noise.shape[1]):
      raise ValueError(f"n_samples={n_samples} disagrees with noise of {noise.shape[1]} samples")
    n_samples = noise.shape[1]
  if not np.isfinite(std) or std < 0:
    raise ValueError(f"std must be a finite number >= 0 (input units), got {std!r}")
  key = _check_key(key)
  if method in ("ig", "deeplift"):
    baseline, shared = _check_baseline(baseline, x)
  else:
    baseline, shared = jnp.zeros((1,) + x.shape[1:], x.dtype), True
  if method == "deeplift" and not _has_field(model, "act"):
    raise ValueError(f"exact DeepLift needs a model whose nonlinearity is the replaceable "
                     f"attribute `act`; {type(model).__name__} has none (use deeplift_ig, "
                     "the IG-style approximation, for any model)")

  per_chunk = max(1, batch_size // passes)
  samples = max(n_samples, 1)
  if samples <= per_chunk:
    gs, ng = samples, 1
    c = min(n, per_chunk // samples)
    c = -(-n // -(-n // c))  # balance the chunks
  else:
    c, gs = 1, per_chunk
    ng = -(-samples // gs)
  plan = _Plan(method=method, model=model, layer=name, n_samples=n_samples,
               images_per_chunk=c,
               samples_per_group=gs, n_groups=ng, shared_baseline=shared,
               explicit_noise=noise is not None, **extra)
  return plan, smoothing, (variables, x, target, baseline, key, noise,
                           jnp.asarray(std, x.dtype))


def _smooth(mean, mean_sq, smoothing):
  if mean_sq is None or smoothing == "mean":
    return mean
  return mean_sq if smoothing == "square" else mean_sq - mean * mean


def _attribute(method, model, variables, x, target, layer, *, smoothing="mean", **kwargs):
  """Checks, plans and runs; returns (attributions, deltas)."""
  plan, smoothing, args = _plan_and_args(method, model, variables, x, target, layer,
                                         smoothing=smoothing, **kwargs)
  mean, mean_sq, deltas = _run(plan, *args)
  if plan.n_samples == 0:
    deltas = deltas[:, 0]
  n = args[1].shape[0]
  chex.assert_axis_dimension(mean, 0, n)
  chex.assert_shape(deltas, (n, plan.n_samples) if plan.n_samples else (n,))
  return _smooth(mean, mean_sq, smoothing), deltas


# ---------------------------------------------------------------------------
# Public methods.

_COMMON_ARGS = """
    model: a Flax module following the split protocol (`layer_names`,
      ``start`` / ``stop``), e.g. from `models.create_model`.
    variables: its {'params', 'batch_stats'} (eval mode is used).
    x: (N, H, W, C) float inputs.
    target: the logit to explain: an int or an (N,) int array.
    layer: None for the input, or a tap name / block name / alias.
    batch_size: at most this many forward passes per chunk (memory bound).
    n_samples: SmoothGrad samples per image (0: no smoothing).
    std: SmoothGrad noise standard deviation, in input units.
    key: PRNG key (or int seed) for the noise (default ``PRNGKey(0)``);
      sample ``s`` of image ``i`` uses ``fold_in(fold_in(key, i), s)``, so
      results do not depend on `batch_size`.
    noise: explicit noise (N, n_samples, H, W, C) added to the inputs instead
      (``std`` and ``key`` unused), e.g. to reproduce another library's draws.
    smoothing: "mean" (SmoothGrad), "square" (mean of squares) or "vargrad"
      (variance over samples); Captum's names are accepted.
"""


def _doc(f):
  f.__doc__ = f.__doc__.replace("  Args:\n", "  Args:" + _COMMON_ARGS, 1)
  return f


@_doc
def gradient(model: nn.Module, variables, x, target, layer=None, *,
             batch_size: int = DEFAULT_BATCH_SIZE, n_samples: int = 0, std: float = 0.25,
             key=None, noise=None, smoothing: str = "mean") -> jax.Array:
  """Gradient of the target logit with respect to the input or the layer.

  Args:

  Returns:
    (N, *shape) attributions, the shape of `x` or of the layer.
  """
  return _attribute("gradient", model, variables, x, target, layer, batch_size=batch_size,
                    n_samples=n_samples, std=std, key=key, noise=noise,
                    smoothing=smoothing)[0]


@_doc
def gradient_x_input(model: nn.Module, variables, x, target, layer=None, *,
                     batch_size: int = DEFAULT_BATCH_SIZE, n_samples: int = 0,
                     std: float = 0.25, key=None, noise=None,
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
def integrated_gradients(model: nn.Module, variables, x, target, layer=None, *,
                         baseline=0.0, n_steps: int = 50, method: str = "gausslegendre",
                         batch_size: int = DEFAULT_BATCH_SIZE,
                         n_samples: int = 0, std: float = 0.25, key=None, noise=None,
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
  n_steps = _check_positive_int(n_steps, "n_steps")
  quadrature(method, n_steps)  # validates
  attrs, deltas = _attribute(
      "ig", model, variables, x, target, layer, baseline=baseline, batch_size=batch_size,
      n_samples=n_samples, std=std, key=key, noise=noise, smoothing=smoothing,
      passes=n_steps + 1, n_steps=n_steps, quadrature=method)
  return Attribution(attrs, deltas)


@_doc
def deeplift(model: nn.Module, variables, x, target, layer=None, *, baseline=0.0,
             eps: float = EPS, batch_size: int = DEFAULT_BATCH_SIZE, n_samples: int = 0,
             std: float = 0.25, key=None, noise=None,
             smoothing: str = "mean") -> Attribution:
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

  Returns:
    `Attribution`: attributions ``(h(x) - h(x0)) * multipliers`` (N, *shape)
    (averaged over noisy samples with SmoothGrad) and the completeness delta
    ``sum(attributions) - (f(x) - f(x0))``, (N,) or (N, n_samples).
  """
  attrs, deltas = _attribute("deeplift", model, variables, x, target, layer,
                             baseline=baseline, batch_size=batch_size, n_samples=n_samples,
                             std=std, key=key, noise=noise, smoothing=smoothing, eps=float(eps))
  return Attribution(attrs, deltas)


@_doc
def deeplift_ig(model: nn.Module, variables, x, target, layer=None, *, baseline=0.0,
                n_steps: int = 50, method: str = "gausslegendre",
                batch_size: int = DEFAULT_BATCH_SIZE, n_samples: int = 0,
                std: float = 0.25, key=None, noise=None,
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


def layer_deeplift_smoothgrad(model: nn.Module, variables, images, target, layer, *,
                              n_samples: int = 20, std: float = 0.25, baseline=1.0,
                              key=None, noise=None, batch_size: int = DEFAULT_BATCH_SIZE
                              ) -> jax.Array:
  """Concept extraction's attribution: DeepLift + SmoothGrad at a layer.

  The concept paper's setting (Herdt et al., Sec. 4; Captum
  ``NoiseTunnel(LayerDeepLift)``): 20 noisy samples with std 0.25 in input
  units, a white baseline (1.0), the pre-softmax logit of `target`.

  Args:
    model, variables: the classifier.
    images: (N, H, W, C) float.
    target: int or (N,) int array.
    layer: the tap to attribute to.
    n_samples, std, baseline, key, noise, batch_size: see :func:`deeplift`.

  Returns:
    (N, *h.shape) attributions at `layer` (use :func:`deeplift` with
    ``n_samples`` for the completeness deltas too).
  """
  if layer is None:
    raise ValueError("layer_deeplift_smoothgrad needs a layer, got None")
  return deeplift(model, variables, images, target, layer, baseline=baseline,
                  batch_size=batch_size, n_samples=n_samples, std=std, key=key,
                  noise=noise).attributions


def gradcam(model: nn.Module, variables, x, target, layer, *, relu: bool = True,
            batch_size: int = DEFAULT_BATCH_SIZE) -> jax.Array:
  """GradCAM at a spatial layer (Selvaraju et al.; Captum ``LayerGradCam``).

  ``cam = relu(sum_c mean_{ij}(d logit / d h_{ijc}) * h_{ijc})``.

  Args:
    model, variables: the classifier.
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


def upsample_maps(maps: jax.Array, size: Sequence[int], method: str = "bilinear") -> jax.Array:
  """Resizes (N, h, w) maps to (N, H, W) (``jax.image.resize``; half-pixel centres).

  For integer factors ``method="nearest"`` equals PyTorch's nearest mode
  (Captum's ``LayerAttribution.interpolate`` default).
  """
  maps = jnp.asarray(maps)
  if maps.ndim != 3:
    raise ValueError(f"maps must have shape (N, h, w), got {maps.shape}")
  if len(size) != 2 or any(int(s) < 1 for s in size):
    raise ValueError(f"size must be (H, W) with positive entries, got {tuple(size)}")
  return jax.image.resize(maps, (maps.shape[0], int(size[0]), int(size[1])), method)


def normalize_maps(maps: jax.Array) -> jax.Array:
  """Scales each map to [0, 1] (min to 0, max to 1; a constant map becomes 0).

  Args:
    maps: (N, ...) float, e.g. (N, h, w) GradCAM maps.

  Returns:
    (N, ...) maps in [0, 1].
  """
  maps = jnp.asarray(maps)
  chex.assert_rank(maps, {2, 3, 4})
  flat = maps.reshape(maps.shape[0], -1)
  lo = jnp.min(flat, axis=1).reshape((-1,) + (1,) * (maps.ndim - 1))
  hi = jnp.max(flat, axis=1).reshape((-1,) + (1,) * (maps.ndim - 1))
  rng = hi - lo
  return jnp.where(rng > 0, (maps - lo) / jnp.where(rng > 0, rng, 1), 0.0)


def smoothgrad(attr_fn: Callable[..., jax.Array], x, *per_image_args, n_samples: int = 20,
               std: float = 0.25, key=None, noise=None, smoothing: str = "mean",
               batch_size: int = DEFAULT_BATCH_SIZE) -> jax.Array:
  """SmoothGrad around any attribution function.

  Calls ``attr_fn(x_noisy, *args)`` on chunks of at most `batch_size` noisy
  inputs, where ``args`` are `per_image_args` repeated for each noisy copy,
  and reduces over the samples of each image. The noise for sample ``s`` of
  image ``i`` is the same as the built-in ``n_samples=`` option of the
  methods above, so ``smoothgrad(lambda z, t: gradient(m, v, z, t), x, t)``
  equals ``gradient(m, v, x, t, n_samples=...)``. (The built-in option is
  faster for reference-based methods: the reference runs once.)

  Args:
    attr_fn: (B, H, W, C), *(B, ...) -> (B, ...) attributions.
    x: (N, H, W, C) float inputs.
    *per_image_args: arrays with leading dimension N (e.g. targets).
    n_samples, std, key, noise, smoothing, batch_size: as in :func:`gradient`.

  Returns:
    (N, ...) smoothed attributions.
  """
  x = _check_inputs(x)
  n = x.shape[0]
  batch_size = _check_positive_int(batch_size, "batch_size")
  if smoothing not in _SMOOTHING_ALIASES:
    raise ValueError(f"unknown smoothing {smoothing!r}; valid: {list(SMOOTHINGS)}")
  smoothing = _SMOOTHING_ALIASES[smoothing]
  if noise is not None:
    noise = jnp.asarray(noise, x.dtype)
    if noise.ndim != 5 or noise.shape[0] != n or noise.shape[2:] != x.shape[1:]:
      raise ValueError(f"noise must have shape (N, n_samples, H, W, C), got {noise.shape}")
    n_samples = noise.shape[1]
  n_samples = _check_positive_int(n_samples, "n_samples")
  for i, a in enumerate(per_image_args):
    if np.shape(a)[:1] != (n,):
      raise ValueError(f"per_image_args[{i}] must have leading dimension N = {n}, "
                       f"got shape {np.shape(a)}")
  key = _check_key(key)
  pairs_i = np.repeat(np.arange(n), n_samples)
  pairs_s = np.tile(np.arange(n_samples), n)
  if not np.isfinite(std) or std < 0:
    raise ValueError(f"std must be a finite number >= 0 (input units), got {std!r}")
  std = jnp.asarray(std, x.dtype)
  s1 = s2 = 0.0
  for start in range(0, n * n_samples, batch_size):
    ii, ss = pairs_i[start:start + batch_size], pairs_s[start:start + batch_size]
    nz = (_noise_pairs(key, std, ii, ss, x.shape[1:], x.dtype) if noise is None
          else noise[ii, ss])
    args = [jnp.asarray(a)[ii] for a in per_image_args]
    out = attr_fn(x[ii] + nz, *args)
    s1 = jnp.zeros((n,) + out.shape[1:], out.dtype).at[ii].add(out) + s1
    if smoothing != "mean":
      s2 = jnp.zeros((n,) + out.shape[1:], out.dtype).at[ii].add(out * out) + s2
  mean = s1 / n_samples
  if smoothing == "mean":
    return mean
  sq = s2 / n_samples
  return sq if smoothing == "square" else sq - mean * mean
