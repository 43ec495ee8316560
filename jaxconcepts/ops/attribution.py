"""Model-free attribution kernels: DeepLift rules, path integrals, SmoothGrad, map helpers.

Nothing here knows about models; `jaxconcepts.methods.attribution` builds the
model-aware methods (DeepLift, IG, GradCAM through a split classifier) from
these pieces, and re-exports the public ones.

* DeepLift rules as custom-VJP ops with the signature
  ``rule(x, x_ref, y_ref=None) -> f(x)``: :func:`rescale_rule` for an
  elementwise nonlinearity (the Rescale rule: the cotangent is multiplied by
  the secant ``(f(x) - f(x_ref)) / (x - x_ref)``, or by ``f'(x)`` where
  ``|x - x_ref| < eps``, Captum's threshold ``eps = 1e-10``) and
  :func:`max_pool_rule` for a max-pool (Captum's formula, routed through the
  pool's VJP, complete to rounding). ``y_ref = f(x_ref)`` may be passed when
  it is already known: :class:`ReferenceTape` records a model's reference
  pass and replays it into the rules, so it is not recomputed.
* Integrated gradients of any batched function: :func:`quadrature` (Captum's
  Gauss-Legendre and Riemann rules) and :func:`path_integral`.
* SmoothGrad around any attribution function: :func:`smoothgrad`. Sample
  ``s`` of image ``i`` gets the noise ``std * normal(fold_in(fold_in(key, i),
  s))`` (:func:`sample_noise`), so results do not depend on how the samples
  are chunked, and the model-aware methods draw exactly the same noise.
* Maps: :func:`upsample_maps` and :func:`normalize_maps` (the occlusion study).
* What the model-aware driver shares: input checks (`check_inputs`,
  `check_target`, `check_baseline`, ...), `chunking` (images and samples per
  chunk for a memory bound) and `scan_groups`.

Shapes: inputs ``x`` are (N, H, W, C) floats; a batched function maps
(B, *S) -> (B,); attributions have the shape of what they attribute to.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxconcepts.utils import as_key, check_int, is_tracer

EPS = 1e-10  # Captum's threshold for falling back to the gradient.
QUADRATURES = ("gausslegendre", "riemann_trapezoid", "riemann_left",
               "riemann_right", "riemann_middle")
SMOOTHINGS = ("mean", "square", "vargrad")
# Captum's NoiseTunnel names are accepted too.
SMOOTHING_ALIASES = {"smoothgrad": "mean", "smoothgrad_sq": "square",
                     "mean": "mean", "square": "square", "vargrad": "vargrad"}
DEFAULT_BATCH_SIZE = 256

Rule = Callable[..., jax.Array]


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


def rescale_rule(fn: Callable[[jax.Array], jax.Array], eps: float = EPS) -> Rule:
  """The DeepLift Rescale rule for an elementwise nonlinearity.

  Args:
    fn: elementwise function (``nn.relu``, ``jnp.tanh``, ...).
    eps: where ``|x - x_ref| < eps`` the plain derivative ``fn'(x)`` is used.

  Returns:
    ``rule(x, x_ref, y_ref=None) = fn(x)`` whose VJP multiplies the cotangent
    by ``(fn(x) - y_ref) / (x - x_ref)`` with ``y_ref = fn(x_ref)`` (computed
    if not given); ``x_ref`` broadcasts against ``x`` (e.g. one reference for
    a batch of noisy inputs) and gets no cotangent.
  """

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

  def rule(x: jax.Array, x_ref: jax.Array, y_ref: jax.Array | None = None) -> jax.Array:
    return op(x, x_ref, fn(x_ref) if y_ref is None else y_ref)

  return rule


def max_pool_rule(pool: Callable[[jax.Array], jax.Array], eps: float = EPS) -> Rule:
  """Captum's DeepLift rule for a max-pool (any window, via the pool's VJP).

  With ``y = pool(x)``, ``y0 = pool(x0)`` and ``m = max(y, y0)``, the
  cotangent ``g`` becomes ``(P_x(g (m - y0)) + P_x0(g (y - m))) / (x - x0)``,
  where ``P_z`` routes a pooled value back to the arg-max of its window at
  ``z`` (the pool's VJP at ``z``); where ``|x - x0| < eps``, the plain
  gradient. The contributions of every window sum to ``g (y - y0)``, so
  completeness holds.

  This is Captum's formula and equals Captum 0.9.0 where Captum is complete
  (tested on a model with no ReLU next to the pool). Captum 0.9.0 is not
  complete when a ReLU feeds or follows the pool (a ResNet stem): its max-pool
  fallback uses the first sample's gradient (captum issue #1276), its hooks
  hand the pool the plain gradient of an adjacent ReLU instead of the
  Rescaled one, and its ``max_unpool`` overwrites instead of adding where
  3x3/2 windows overlap. So input-level DeepLift through a ResNet-18/34/50
  stem differs from Captum's (ours has a zero delta, Captum's does not);
  attributions at ``layer1.0`` or deeper never pass the stem. Our ResNet-10
  (CIFAR stem) has no max-pool.

  Args:
    pool: the model's max-pool, ``(N, H, W, C) -> (N, H', W', C)``.
    eps: fallback threshold.

  Returns:
    ``rule(x, x_ref, y_ref=None) = pool(x)`` with that VJP (``y_ref`` is
    accepted for a uniform signature and unused: the VJP needs the pool's
    arg-max at ``x_ref``, not its value).
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

  def rule(x: jax.Array, x_ref: jax.Array, y_ref: jax.Array | None = None) -> jax.Array:
    del y_ref
    return op(x, x_ref)

  return rule


class ReferenceTape:
  """The reference's inputs and outputs of a model's replaceable ops, in call order.

  A recording pass on the reference stores ``(x0, f(x0))`` for every call of
  a wrapped function (a model's ``act`` / ``max_pool``); the pass on the
  inputs replays them into a DeepLift rule, each call taking the next stored
  pair, so the reference's forward pass is never repeated. Use a fresh tape
  per traced pass: it holds the pairs and a read position.

  Attributes:
    refs: the recorded (x_ref, y_ref) pairs.
    pos: how many of them the replay has used.
  """

  def __init__(self, refs: Sequence[tuple[jax.Array, jax.Array]] = ()):
    self.refs = list(refs)
    self.pos = 0

  def record(self, fn: Callable) -> Callable:
    """`fn`, storing each call's (input, output)."""
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


# ---------------------------------------------------------------------------
# Path integrals (integrated gradients) for any function.


def quadrature(method: str, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
  """Points ``alpha`` in [0, 1] and weights of Captum's IG quadratures.

  Args:
    method: one of `QUADRATURES`.
    n_steps: number of points (>= 1 for Gauss-Legendre, >= 2 for the Riemann rules).

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


def path_integral(fn: Callable[[jax.Array], jax.Array], x: jax.Array, x0: ArrayLike,
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
  avg = average_gradient(fn, x, x0, alphas, weights)
  attr = (x - x0) * avg
  delta = sum_per_sample(attr) - (fn(x) - fn(x0))
  return Attribution(attr, delta)


def average_gradient(fn: Callable[[jax.Array], jax.Array], x: jax.Array, x0: jax.Array,
                     alphas: np.ndarray, weights: np.ndarray) -> jax.Array:
  """``sum_k w_k grad fn(x0 + alpha_k (x - x0))``, all steps in one batch.

  Args:
    fn: (B, *S) -> (B,).
    x, x0: (B, *S) end points of the straight line.
    alphas, weights: (K,) quadrature points and weights (`quadrature`).

  Returns:
    (B, *S) weighted average gradient.
  """
  b = x.shape[0]
  a = jnp.asarray(alphas, x.dtype).reshape((-1, 1) + (1,) * (x.ndim - 1))
  points = (x0[None] + a * (x - x0)[None]).reshape((-1,) + x.shape[1:])
  grads = jax.grad(lambda p: jnp.sum(fn(p)))(points).reshape((len(alphas), b) + x.shape[1:])
  w = jnp.asarray(weights, x.dtype).reshape((-1,) + (1,) * x.ndim)
  return jnp.sum(grads * w, axis=0)


def sum_per_sample(a: jax.Array) -> jax.Array:
  """(B, ...) -> (B,) sum over all but the leading axis."""
  return jnp.sum(a.reshape(a.shape[0], -1), axis=1)


# ---------------------------------------------------------------------------
# Noise, input checks and chunking (shared with the model-aware methods).


def sample_noise(key: jax.Array, std: jax.Array, image_index: jax.Array,
                 sample_index: jax.Array, shape: Sequence[int], dtype: Any) -> jax.Array:
  """Noise of the given shape for one (image, sample) pair; independent of chunking."""
  k = jax.random.fold_in(jax.random.fold_in(key, image_index), sample_index)
  return std * jax.random.normal(k, shape, dtype)


@functools.partial(jax.jit, static_argnums=(4, 5))
def noise_pairs(key: jax.Array, std: jax.Array, image_index: jax.Array,
                sample_index: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
  """Noise for pairs (image_index[k], sample_index[k]), stacked: (K, *shape)."""
  return jax.vmap(lambda i, s: sample_noise(key, std, i, s, shape, dtype))(
      image_index, sample_index)


def check_inputs(x: ArrayLike) -> jax.Array:
  """Returns `x` as a jax array if it is a float (N, H, W, C) batch with N >= 1."""
  if not hasattr(x, "dtype"):
    x = np.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(
        f"inputs must be a floating-point array (N, H, W, C), got dtype {x.dtype}; "
        "convert images to float (e.g. x.astype(np.float32) / 255)")
  x = jnp.asarray(x)
  if x.ndim != 4 or x.shape[0] < 1:
    raise ValueError(f"inputs must have shape (N, H, W, C) with N >= 1, got {x.shape}")
  if not is_tracer(x) and not bool(jax.device_get(jnp.all(jnp.isfinite(x)))):
    bad = np.argwhere(~np.isfinite(np.asarray(x)))[0]
    raise ValueError(f"inputs contain NaN or Inf (first at index {tuple(int(i) for i in bad)}); "
                     "attributions of such images mean nothing")
  return x


def check_smoothing(smoothing: str) -> str:
  """The canonical name (one of `SMOOTHINGS`) of a smoothing or its Captum alias."""
  if smoothing not in SMOOTHING_ALIASES:
    raise ValueError(f"unknown smoothing {smoothing!r}; valid: {list(SMOOTHINGS)} "
                     "(or Captum's 'smoothgrad', 'smoothgrad_sq')")
  return SMOOTHING_ALIASES[smoothing]


def check_noise(noise: ArrayLike, x: jax.Array) -> jax.Array:
  """Explicit noise as an (N, n_samples, H, W, C) array of `x`'s dtype."""
  noise = jnp.asarray(noise, x.dtype)
  if noise.ndim != 5 or noise.shape[0] != x.shape[0] or noise.shape[2:] != x.shape[1:]:
    raise ValueError(f"noise must have shape (N, n_samples, H, W, C) = ({x.shape[0]}, n, "
                     f"{', '.join(map(str, x.shape[1:]))}), got {noise.shape}")
  return noise


def check_std(std: float) -> float:
  """Returns the noise `std` if it is finite and >= 0."""
  if not np.isfinite(std) or std < 0:
    raise ValueError(f"std must be a finite number >= 0 (input units), got {std!r}")
  return std


def check_target(target: ArrayLike, n: int, num_classes: int) -> jax.Array:
  """Targets as (N,) int32; the range 0 .. num_classes - 1 is checked when concrete.

  Args:
    target: an int or an (N,) integer array (may be traced).
    n: number of images N.
    num_classes: number of logits.
  """
  t = target if hasattr(target, "dtype") else np.asarray(target)
  if not jnp.issubdtype(t.dtype, jnp.integer):
    raise TypeError(f"target must be an int or an integer array of shape (N,), "
                    f"got dtype {t.dtype}")
  if t.ndim == 0:
    t = jnp.full((n,), t, jnp.int32)
  elif t.shape != (n,):
    raise ValueError(f"target must be an int or have shape (N,) = ({n},), got shape {t.shape}")
  if not is_tracer(t):
    tn = np.asarray(t)
    bad = tn[(tn < 0) | (tn >= num_classes)]
    if bad.size:
      raise ValueError(f"target class {int(bad[0])} is out of range for a model with "
                       f"{num_classes} classes (valid: 0 .. {num_classes - 1})")
  return jnp.asarray(t, jnp.int32)


def check_baseline(baseline: ArrayLike, x: jax.Array) -> tuple[jax.Array, bool]:
  """A reference input broadcast for `x` (N, *S).

  Returns:
    (baseline, shared): (1, *S) and True if one baseline serves all images (a
    scalar, (*S) or (1, *S)), else (N, *S) and False.
  """
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


def check_samples(noise: ArrayLike | None, x: jax.Array,
                   n_samples: int) -> tuple[jax.Array | None, int]:
  """Checks `n_samples` (>= 0) against explicit `noise` (N, n_samples, H, W, C).

  Returns:
    (noise array or None, number of SmoothGrad samples; 0: no smoothing).
  """
  n_samples = check_int(n_samples, "n_samples", 0)
  if noise is None:
    return None, n_samples
  noise = check_noise(noise, x)
  if n_samples not in (0, noise.shape[1]):
    raise ValueError(f"n_samples={n_samples} disagrees with noise of {noise.shape[1]} samples")
  return noise, noise.shape[1]


def chunking(n: int, per_chunk: int, samples: int) -> tuple[int, int, int]:
  """How to batch `n` images of `samples` passes each, `per_chunk` passes at a time.

  Whole images are batched while all their samples fit in a chunk (the chunk
  sizes balanced so the last chunk is not mostly padding); otherwise one
  image per chunk with its samples in groups.

  Returns:
    (images per chunk, samples per group, number of groups).
  """
  if samples <= per_chunk:
    c = min(n, per_chunk // samples)
    c = -(-n // -(-n // c))  # balance the chunks
    return c, samples, 1
  return 1, per_chunk, -(-samples // per_chunk)


def scan_groups(group: Callable, n_groups: int):
  """Runs ``group(carry, gi) -> (carry, out)`` for gi < n_groups, from zero sums.

  The carry is (sum, sum of squares), zero-initialised with the shape of one
  group's sums; one group is called directly (no scan).

  Returns:
    ((sum, sum of squares), outputs stacked over the groups (n_groups, ...)).
  """
  zero = jnp.zeros((), jnp.float32)
  if n_groups == 1:
    (s1, s2), delta = group((zero, zero), jnp.int32(0))
    return (s1, s2), delta[None]
  # Accumulator shapes from an abstract evaluation of one group (no FLOPs).
  (s1, _), _ = jax.eval_shape(lambda: group((zero, zero), jnp.int32(0)))
  acc = jnp.zeros(s1.shape, s1.dtype)
  return jax.lax.scan(group, (acc, acc), jnp.arange(n_groups))


def smooth(mean: jax.Array, mean_sq: jax.Array | None, smoothing: str) -> jax.Array:
  """Reduces sample moments: "mean", "square" (mean of squares) or "vargrad" (variance)."""
  if mean_sq is None or smoothing == "mean":
    return mean
  return mean_sq if smoothing == "square" else mean_sq - mean * mean


# ---------------------------------------------------------------------------
# SmoothGrad around any function, and map helpers.


def smoothgrad(attr_fn: Callable[..., jax.Array], x: ArrayLike, *per_image_args: ArrayLike,
               n_samples: int = 20, std: float = 0.25, key: Any = None,
               noise: ArrayLike | None = None, smoothing: str = "mean",
               batch_size: int = DEFAULT_BATCH_SIZE) -> jax.Array:
  """SmoothGrad around any attribution function.

  Calls ``attr_fn(x_noisy, *args)`` on chunks of at most `batch_size` noisy
  inputs, where ``args`` are `per_image_args` repeated for each noisy copy,
  and reduces over the samples of each image. The noise for sample ``s`` of
  image ``i`` is the same as the built-in ``n_samples=`` option of the
  methods in `jaxconcepts.methods.attribution`, so
  ``smoothgrad(lambda z, t: gradient(m, v, z, t), x, t)`` equals
  ``gradient(m, v, x, t, n_samples=...)``. (The built-in option is cheaper for
  reference-based methods: the reference runs once.)

  Args:
    attr_fn: (B, H, W, C), *(B, ...) -> (B, ...) attributions.
    x: (N, H, W, C) float inputs.
    *per_image_args: arrays with leading dimension N (e.g. targets).
    n_samples: noisy samples per image (ignored when `noise` is given).
    std: noise standard deviation, in input units.
    key: PRNG key or int seed (default ``PRNGKey(0)``).
    noise: explicit noise (N, n_samples, H, W, C) instead of drawn noise.
    smoothing: "mean", "square" or "vargrad" (or Captum's names).
    batch_size: noisy inputs per call of `attr_fn`.

  Returns:
    (N, ...) smoothed attributions.
  """
  x = check_inputs(x)
  n = x.shape[0]
  batch_size = check_int(batch_size, "batch_size")
  smoothing = check_smoothing(smoothing)
  if noise is not None:
    noise = check_noise(noise, x)
    n_samples = noise.shape[1]
  n_samples = check_int(n_samples, "n_samples")
  for i, a in enumerate(per_image_args):
    if np.shape(a)[:1] != (n,):
      raise ValueError(f"per_image_args[{i}] must have leading dimension N = {n}, "
                       f"got shape {np.shape(a)}")
  key = as_key(key)
  std = jnp.asarray(check_std(std), x.dtype)
  pairs_i = np.repeat(np.arange(n), n_samples)
  pairs_s = np.tile(np.arange(n_samples), n)
  s1 = s2 = 0.0
  for start in range(0, n * n_samples, batch_size):
    ii, ss = pairs_i[start:start + batch_size], pairs_s[start:start + batch_size]
    nz = (noise_pairs(key, std, ii, ss, x.shape[1:], x.dtype) if noise is None
          else noise[ii, ss])
    args = [jnp.asarray(a)[ii] for a in per_image_args]
    out = attr_fn(x[ii] + nz, *args)
    s1 = jnp.zeros((n,) + out.shape[1:], out.dtype).at[ii].add(out) + s1
    if smoothing != "mean":
      s2 = jnp.zeros((n,) + out.shape[1:], out.dtype).at[ii].add(out * out) + s2
  return smooth(s1 / n_samples, None if smoothing == "mean" else s2 / n_samples, smoothing)


def upsample_maps(maps: ArrayLike, size: Sequence[int], method: str = "bilinear") -> jax.Array:
  """Resizes (N, h, w) maps to (N, H, W) (``jax.image.resize``; half-pixel centres).

  For integer factors ``method="nearest"`` equals PyTorch's nearest mode
  (Captum's ``LayerAttribution.interpolate`` default).

  Args:
    maps: (N, h, w) float maps, e.g. from GradCAM.
    size: target (H, W).
    method: a `jax.image.resize` method.

  Returns:
    (N, H, W) maps.
  """
  maps = jnp.asarray(maps)
  if maps.ndim != 3:
    raise ValueError(f"maps must have shape (N, h, w), got {maps.shape}")
  if len(size) != 2 or any(int(s) < 1 for s in size):
    raise ValueError(f"size must be (H, W) with positive entries, got {tuple(size)}")
  return jax.image.resize(maps, (maps.shape[0], int(size[0]), int(size[1])), method)


def normalize_maps(maps: ArrayLike) -> jax.Array:
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
