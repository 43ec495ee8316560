"""Non-negative matrix factorisation by multiplicative updates, in JAX.

Concept extraction factorises, for every class, a non-negative matrix of
attribution-scaled activation vectors ``a`` (pixels x channels) into a few
non-negative concepts: ``a ~= w @ h`` with ``w`` (m, k) and ``h`` (k, n). This
module is a JAX version of scikit-learn's ``NMF(solver="mu")`` with the
Frobenius loss:

* Lee-Seung multiplicative updates in scikit-learn's order (``w`` first, then
  ``h`` from the new ``w``), with scikit-learn's floor: a denominator that is
  exactly zero is replaced by ``EPSILON = finfo(float32).eps``. No
  regularisation (scikit-learn's ``alpha_W=0`` default: none).
* Convergence as scikit-learn: every 10 iterations the error
  ``||a - w h||_F`` is computed exactly and the loop stops when
  ``(previous_error - error) / error_at_init < tol``; ``tol=0`` runs exactly
  ``max_iter`` iterations. All inside ``lax.while_loop``.
* Inits ``"random"`` (``|N(0,1)| * sqrt(mean(a) / k)``, scikit-learn's scaling,
  JAX's random numbers), ``"nndsvda"`` (scikit-learn's NNDSVD with zeros filled
  by ``mean(a)``, from a randomized SVD with 10 oversamples and 7 power
  iterations) and ``"custom"`` (given ``w_init``, ``h_init``).

Entry points:

* :func:`nmf` -- one matrix, with input checks (concrete arrays).
* :func:`nmf_batched` -- a stack of matrices (one per class) with a valid-row
  count or a row mask per matrix, built on ``vmap``.
* :func:`transform` -- ``w`` for a fixed ``h``, as scikit-learn's ``transform``.
* :func:`nmf_unchecked`, :func:`initialize`, :func:`transform_unchecked` --
  the pure, jittable, vmappable cores without value checks, for library code
  that calls them under ``jit`` / ``vmap``.

Memory traffic, and the form kept. One iteration needs ``a @ h.T`` (to
update ``w``) and ``w_new.T @ a`` (to update ``h``). Two forms are
implemented:

* two full products (``block_rows=None``, the default), reading ``a`` twice
  per iteration (plus once every 10 iterations for the exact error);
* one pass (``block_rows=int``): walk ``a`` row block by row block; for each
  block compute ``a_b @ h.T``, update ``w_b`` from the old ``h`` and
  ``h h^T``, and accumulate ``w_b.T @ a_b`` and ``w_b.T @ w_b`` while the block
  is in cache, so ``a`` is read once per iteration; the exact error for the
  convergence test comes from the same pass (the residual ``a_b - w_b h`` of
  the previous iterate), at no extra read.

The two-product form is kept as the default. Measurements
(``benchmarks/nmf.py --compare-forms``; W1, 11760 x 1024, k = 6, XLA:CPU on a
2-core Xeon shared with other jobs): on the idle machine the two-product form
took 9.1 ms per iteration against 11.1 ms for the one-pass form; on one core
the one-pass form used 5-15% less CPU time; for matrices that fit in cache the
two-product form was 2-4x faster; under heavy load (load average ~10 on 2
cores) the one-pass form with 512-row blocks was faster in one full run (5.9 s
against 9.1 s for 200 iterations) and not in the next, so the load decides
more than the form there. Why reading ``a`` once does not pay on XLA:CPU: the
dot kernels for k = 6 columns are compute-bound at about 5-8 GB/s of ``a``
per core (``w.T @ a`` is the slow one), below the ~11 GB/s one core can read,
so halving the bytes read saves little, while the blocked loop runs small dots
one after another (no intra-op threading) and pays a fixed cost per block. On
accelerators the two large products are the natural form too (a few large
kernels rather than a sequential loop of small ones). The one-pass form stays
available (``block_rows=512`` is a good value on CPU).

The slow ``w.T @ a`` (it contracts ``a``'s long leading axis) is the one
product XLA:CPU runs well below the read bandwidth. With ``transpose_a`` (the
default on the CPU backend) the fit keeps a row-major copy of ``a.T``, made
once per fit, and computes ``w.T @ a`` as ``(a_t @ w).T``, the same kernel
shape as ``a @ h.T``: W1 200 iterations went from 1.77-1.83 s to 1.33-1.41 s
(dense) and from 1.40 s to 1.17-1.21 s (zero rows skipped) in one interleaved
run, at the cost of a second ``a``-sized buffer. Accelerators read a
transposed operand at full speed, so it is off there by default.

Reading fewer bytes: all-zero rows of ``a`` (pixels whose attribution was
negative) do not change ``h`` or the other rows of ``w``: after the first
``w`` update their ``w`` rows are exactly zero. :func:`nmf` and
:func:`nmf_batched` therefore drop them before iterating (``skip_zero_rows``)
and account for them exactly in the initial error; the result is the same.

Numerics: the iteration runs on ``a / 4**q`` with ``4**q`` the power of four
nearest ``max(a)`` (``w`` and ``h`` are carried divided by ``2**q``). Scaling
by a power of two is exact, so the iterates equal those on ``a`` itself, while
tiny (1e-30) and huge (1e30) inputs neither underflow nor overflow in float32.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import chex
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

EPSILON = float(np.finfo(np.float32).eps)
"""Floor for zero denominators (scikit-learn's ``EPSILON``)."""

RESIDUAL_BLOCK_ROWS = 256
"""Rows of ``a`` per block when the exact residual is computed without forming
``w @ h`` (256 x 1024 float32 = 1 MiB, cache sized)."""

_INITS = ("nndsvda", "random", "custom")
_CHECK_EVERY = 10  # scikit-learn tests convergence every 10 iterations.
_SVD_OVERSAMPLES = 10  # scikit-learn's randomized_svd defaults.
_SVD_POWER_ITERS = 7
_GRAM_RTOL = 1e-6  # eigenvalues of a Gram matrix: sqrt(1e-6) ~ 8 sqrt(eps32)
_NNDSVD_TRUNC = 1e-6  # scikit-learn's `eps` in _initialize_nmf.
_INIT_EXACT_EXPONENT = 10  # nndsvda equals scikit-learn for 4**-10 <= max(a) < 4**11.


class NMFResult(NamedTuple):
  """Result of :func:`nmf` (leading batch axis for :func:`nmf_batched`).

  Attributes:
    w: (m, k) non-negative coefficients (rows outside the row mask are zero).
    h: (k, n) non-negative components (the concepts).
    n_iter: int32 scalar, iterations run (scikit-learn's ``n_iter_``).
    rel_error: float scalar, ``||a - w h||_F / ||a||_F`` (0 for an all-zero
      ``a``). scikit-learn's ``reconstruction_err_`` is
      ``rel_error * ||a||_F``.
  """
  w: jax.Array
  h: jax.Array
  n_iter: jax.Array
  rel_error: jax.Array


# ---------------------------------------------------------------------------
# Scaling and small helpers.


def _scale_exponent(amax: jax.Array) -> jax.Array:
  """Integer q with ``amax / 4**q`` in [0.5, 2) (0 for amax == 0)."""
  _, p = jnp.frexp(amax)  # amax = f * 2**p, f in [0.5, 1).
  q = jnp.floor_divide(p, 2)
  q = jnp.where(amax > 0, q, 0)
  return jnp.clip(q, -62, 62).astype(jnp.int32)


def _pow2(e: jax.Array, dtype) -> jax.Array:
  """Exact 2**e as a scalar of ``dtype``."""
  return jnp.ldexp(jnp.ones((), dtype), e)


def _mu(x: jax.Array, num: jax.Array, den: jax.Array) -> jax.Array:
  """Multiplicative update ``x * num / den`` with scikit-learn's zero floor."""
  den = jnp.where(den == 0, jnp.asarray(EPSILON, den.dtype), den)
  # (x * num) / den rather than x * (num / den): a zero entry stays zero even
  # where num / den would overflow. Equal to scikit-learn up to rounding.
  return (x * num) / den


def _as_key(key):
  """Accepts None, an int seed, a typed key or a raw uint32 key."""
  if key is None:
    return jax.random.key(0)
  if isinstance(key, (int, np.integer)):
    return jax.random.key(int(key))
  return key


# ---------------------------------------------------------------------------
# Passes over a. All work in scaled units: a is used as given and products with
# a are multiplied by inv_s = 4**-q; w and h are divided by 2**q.


def _block_plan(m: int, block_rows: int) -> tuple[int, int, int]:
  bm = max(1, min(int(block_rows), m))
  nb, tail = divmod(m, bm)
  return bm, nb, tail


def _residual_sq(a, w, h, inv_s, block_rows):
  """sum((a * inv_s - w @ h)**2), one read of a, without forming w @ h."""
  m = a.shape[0]
  bm, nb, tail = _block_plan(m, block_rows)

  def block(a_b, w_b):
    r = a_b * inv_s - w_b @ h
    return jnp.sum(r * r)

  def body(i, sq):
    a_b = lax.dynamic_slice_in_dim(a, i * bm, bm, 0)
    w_b = lax.dynamic_slice_in_dim(w, i * bm, bm, 0)
    return sq + block(a_b, w_b)

  sq = lax.fori_loop(0, nb, body, jnp.zeros((), a.dtype))
  if tail:
    sq = sq + block(a[nb * bm:], w[nb * bm:])
  return sq


def _one_pass_iteration(a, w, h, inv_s, block_rows, with_residual):
  """One Lee-Seung iteration reading a once.

  Returns (w_new, h_new, sq) where sq is the squared residual of the *input*
  iterate (w, h) if with_residual, else 0.
  """
  m, n = a.shape
  k = h.shape[0]
  bm, nb, tail = _block_plan(m, block_rows)
  hht = h @ h.T

  def block(a_b, w_b, acc):
    wta, wtw, sq = acc
    if with_residual:
      r = a_b * inv_s - w_b @ h
      sq = sq + jnp.sum(r * r)
    w_b = _mu(w_b, _a_ht(a_b, h) * inv_s, w_b @ hht)
    wta = wta + w_b.T @ a_b
    wtw = wtw + w_b.T @ w_b
    return w_b, (wta, wtw, sq)

  def body(i, carry):
    w_new, acc = carry
    a_b = lax.dynamic_slice_in_dim(a, i * bm, bm, 0)
    w_b = lax.dynamic_slice_in_dim(w, i * bm, bm, 0)
    w_b, acc = block(a_b, w_b, acc)
    return lax.dynamic_update_slice_in_dim(w_new, w_b, i * bm, 0), acc

  acc = (jnp.zeros((k, n), a.dtype), jnp.zeros((k, k), a.dtype),
         jnp.zeros((), a.dtype))
  w_new, acc = lax.fori_loop(0, nb, body, (w, acc))
  if tail:
    w_t, acc = block(a[nb * bm:], w[nb * bm:], acc)
    w_new = lax.dynamic_update_slice_in_dim(w_new, w_t, nb * bm, 0)
  wta, wtw, sq = acc
  h_new = _mu(h, wta * inv_s, wtw @ h)
  return w_new, h_new, sq


def _a_ht(a: jax.Array, h: jax.Array) -> jax.Array:
  """``a @ h.T`` with the k rows of ``h`` zero-padded to a multiple of 8.

  XLA:CPU's dot kernels are about 25% faster for 8 output columns than for 6
  (W1: 3.3 ms against 4.3 ms); the zero columns are sliced off, so the values
  are the same products.
  """
  k = h.shape[0]
  k_pad = -(-k // 8) * 8
  if k_pad == k or k > 64:
    return a @ h.T
  return (a @ jnp.pad(h, ((0, k_pad - k), (0, 0))).T)[:, :k]


def _two_product_iteration(a, a_t, w, h, inv_s, with_residual):
  """One Lee-Seung iteration as two full products (reads a twice).

  a_t: None, or a row-major (n, m) copy of a.T; then ``w.T @ a`` is computed
  as ``(a_t @ w).T``, the fast form on CPU (see :class:`_Form`).
  """
  sq = (_residual_sq(a, w, h, inv_s, RESIDUAL_BLOCK_ROWS) if with_residual
        else jnp.zeros((), a.dtype))
  w = _mu(w, _a_ht(a, h) * inv_s, w @ (h @ h.T))
  wta = w.T @ a if a_t is None else _a_ht(a_t, w.T).T
  h = _mu(h, wta * inv_s, (w.T @ w) @ h)
  return w, h, sq


class _Form(NamedTuple):
  """Static choice of the iteration form (hashable, a jit static argument).

  block_rows: None for two full products, an int for the one-pass form.
  transpose_a: with two products, keep a row-major copy of ``a.T`` for the
    ``w.T @ a`` product. XLA:CPU computes ``w.T @ a`` (contracting the long
    leading axis) at about half the speed of the row-major ``a_t @ w``
    (W1: 5.6-6.6 ms against 3.4 ms per product); the copy costs one more
    ``a``-sized buffer and one transpose per fit.
  """
  block_rows: int | None = None
  transpose_a: bool = False


def _resolve_form(block_rows, transpose_a) -> _Form:
  """The static form; transpose_a=None means: on for the CPU backend only."""
  if transpose_a is None:
    transpose_a = jax.default_backend() == "cpu"
  elif not isinstance(transpose_a, (bool, np.bool_)):
    raise TypeError(
        f"transpose_a must be None or a bool, got {transpose_a!r}.")
  block_rows = None if block_rows is None else int(block_rows)
  return _Form(block_rows, bool(transpose_a) and block_rows is None)


def _iteration(a, a_t, w, h, inv_s, block_rows, with_residual):
  if block_rows is None:
    return _two_product_iteration(a, a_t, w, h, inv_s, with_residual)
  return _one_pass_iteration(a, w, h, inv_s, block_rows, with_residual)


# ---------------------------------------------------------------------------
# The iteration loop (scaled units).


def _fit_scaled(a, w, h, inv_s, init_offset, max_iter, tol, *, checked,
                form):
  """Runs the multiplicative updates; returns (w, h, n_iter, error).

  max_iter (int32) and tol may be traced; `checked` (static) is tol > 0;
  `form` (static) is a :class:`_Form`.
  """
  block_rows = form.block_rows
  res_rows = RESIDUAL_BLOCK_ROWS if block_rows is None else block_rows
  # The barrier keeps XLA from folding the transpose back into the dot.
  a_t = lax.optimization_barrier(a.T) if form.transpose_a else None
  step = functools.partial(_iteration, a, a_t, inv_s=inv_s,
                           block_rows=block_rows)

  def plain(i, wh):
    del i
    w, h, _ = step(*wh, with_residual=False)
    return w, h

  if not checked:  # tol == 0: scikit-learn runs max_iter iterations, no test.
    w, h = lax.fori_loop(0, max_iter, plain, (w, h))
    err = jnp.sqrt(jnp.maximum(_residual_sq(a, w, h, inv_s, res_rows), 0))
    return w, h, max_iter, err

  # Each trip of the loop: one iteration that also yields the exact error of
  # the current iterate t (a multiple of 10), the convergence test on it, then
  # up to 9 plain iterations. On convergence the iterate t is returned, as in
  # scikit-learn; the one extra iteration computed is discarded.
  def cond(state):
    _, _, t, _, _, _, done = state
    return jnp.logical_and(jnp.logical_not(done), t < max_iter)

  def body(state):
    w, h, t, prev, err0, _, _ = state
    w1, h1, sq = step(w, h, with_residual=True)
    first = t == 0
    sq = sq + jnp.where(first, init_offset, 0)
    err = jnp.sqrt(jnp.maximum(sq, 0))
    err0 = jnp.where(first, err, err0)
    safe0 = jnp.where(err0 > 0, err0, 1)
    rel_drop = jnp.where(err0 > 0, (prev - err) / safe0, 0)
    conv = jnp.logical_and(jnp.logical_not(first), rel_drop < tol)
    n_plain = jnp.clip(max_iter - (t + 1), 0, _CHECK_EVERY - 1)
    w2, h2 = lax.cond(
        conv, lambda: (w, h),
        lambda: lax.fori_loop(0, n_plain, plain, (w1, h1)))
    t2 = jnp.where(conv, t, t + 1 + n_plain)
    return w2, h2, t2, err, err0, err, conv

  zero = jnp.zeros((), a.dtype)
  state = (w, h, jnp.zeros((), jnp.int32), zero, zero, zero,
           jnp.zeros((), bool))
  w, h, t, _, _, err_t, done = lax.while_loop(cond, body, state)
  err = lax.cond(
      done, lambda: err_t,
      lambda: jnp.sqrt(jnp.maximum(_residual_sq(a, w, h, inv_s, res_rows), 0)))
  return w, h, t, err


# ---------------------------------------------------------------------------
# Initialisation.


def _scaled_stats(a, n_rows):
  """Scale exponent q, 4**-q, mean(a) / 4**q and ||a / 4**q||^2."""
  q = _scale_exponent(jnp.max(a))
  inv_s = _pow2(-2 * q, a.dtype)
  a_s = a * inv_s  # fused into the reductions below; never materialised.
  mean_s = jnp.sum(a_s) / (n_rows * a.shape[1])
  norm_sq_s = jnp.sum(a_s * a_s)
  return q, inv_s, mean_s, norm_sq_s


def _orthonormalize(y, axis):
  """Orthonormal basis of the dominant span of y's columns (axis=1) or rows.

  Eigen-decomposition of the small Gram matrix, done twice for orthogonality
  (like Cholesky-QR2, with eigh). Directions with a singular value below 1e-3
  x the largest are dropped (zero vectors): harmless for a range finder that
  keeps the top k of k + 10 directions unless the k-th singular value of the
  matrix is that small. Chosen over LAPACK's QR, which runs through a threaded
  BLAS that slows down by orders of magnitude on a busy machine, and over
  Gram-Schmidt loops, which compile slowly. Zero rows (axis=1) stay zero.
  """
  def once(y):
    g = y.T @ y if axis == 1 else y @ y.T
    d, v = jnp.linalg.eigh(g)
    keep = d > _GRAM_RTOL * jnp.max(d)
    scale = jnp.where(keep, lax.rsqrt(jnp.where(keep, d, 1)), 0)
    return y @ (v * scale) if axis == 1 else (v * scale).T @ y
  return once(once(y))


def _randomized_svd(a, k, key):
  """Top-k SVD of a by a randomized range finder (Halko et al.).

  As scikit-learn's randomized_svd (10 oversamples, 7 power iterations), with
  the iterate orthonormalised after every product. Rows of a that are zero
  give zero rows of u.
  """
  m, n = a.shape
  l = min(k + _SVD_OVERSAMPLES, m, n)
  omega = jax.random.normal(key, (n, l), a.dtype)
  # Products with a are written as a @ x.T and x.T @ a only (x with l << m, n
  # columns): XLA:CPU is fast at those and slow at a.T @ x, so the row space
  # iterate z is kept as (l, n) rows instead of (n, l) columns.
  q = _orthonormalize(a @ omega, 1)  # (m, l)

  def power(i, q):
    del i
    z = _orthonormalize(q.T @ a, 0)  # (l, n), rows span a.T q
    return _orthonormalize(a @ z.T, 1)

  q = lax.fori_loop(0, _SVD_POWER_ITERS, power, q)
  b = q.T @ a  # (l, n), a ~= q b
  # SVD of b through an (l, l) core, so that LAPACK only sees a tiny matrix:
  # b = (b qb^T) qb with qb's rows an orthonormal basis of b's rows.
  qb = _orthonormalize(b, 0)  # (l, n)
  uh, s, vt = jnp.linalg.svd(b @ qb.T)
  return q @ uh[:, :k], s[:k], vt[:k] @ qb


def _safe_div(x, d):
  return jnp.where(d > 0, x / jnp.where(d > 0, d, 1), 0)


def _nndsvda(a_u, k, key, mean_u, trunc):
  """scikit-learn's NNDSVDa on a_u (any units); zeros filled with mean_u."""
  u, s, v = _randomized_svd(a_u, k, key)
  s = jnp.maximum(s, 0)
  xp, xn = jnp.maximum(u, 0), jnp.maximum(-u, 0)  # (m, k)
  yp, yn = jnp.maximum(v, 0), jnp.maximum(-v, 0)  # (k, n)
  xpn, xnn = jnp.linalg.norm(xp, axis=0), jnp.linalg.norm(xn, axis=0)
  ypn, ynn = jnp.linalg.norm(yp, axis=1), jnp.linalg.norm(yn, axis=1)
  mp, mn = xpn * ypn, xnn * ynn
  use_p = mp > mn
  uu = jnp.where(use_p, _safe_div(xp, xpn), _safe_div(xn, xnn))
  vv = jnp.where(use_p[:, None], _safe_div(yp, ypn[:, None]),
                 _safe_div(yn, ynn[:, None]))
  lbd = jnp.sqrt(s * jnp.where(use_p, mp, mn))
  w = lbd * uu
  h = lbd[:, None] * vv
  # The leading singular pair is non-negative up to sign.
  w = w.at[:, 0].set(jnp.sqrt(s[0]) * jnp.abs(u[:, 0]))
  h = h.at[0].set(jnp.sqrt(s[0]) * jnp.abs(v[0]))
  w = jnp.where(w < trunc, 0, w)
  h = jnp.where(h < trunc, 0, h)
  w = jnp.where(w == 0, mean_u, w)
  h = jnp.where(h == 0, mean_u, h)
  return w, h


def _init_scaled(a, k, init, key, mean_s, q, w_init, h_init):
  """Initial (w, h) divided by 2**q."""
  m, n = a.shape
  dtype = a.dtype
  if init == "custom":
    down = _pow2(-q, dtype)
    return jnp.asarray(w_init, dtype) * down, jnp.asarray(h_init, dtype) * down
  key = _as_key(key)
  if init == "random":
    avg = jnp.sqrt(mean_s / k)
    kh, kw = jax.random.split(key)
    h = avg * jnp.abs(jax.random.normal(kh, (k, n), dtype))
    w = avg * jnp.abs(jax.random.normal(kw, (m, k), dtype))
    return w, h
  if init == "nndsvda":
    # scikit-learn's truncation (1e-6) and zero fill (mean(a)) are not scale
    # invariant; they are applied in units a / 4**qi, with qi = 0 (exactly
    # scikit-learn) unless max(a) is outside [4**-10, 4**11).
    qi = jnp.where(jnp.abs(q) <= _INIT_EXACT_EXPONENT, 0, q)
    a_u_scale = _pow2(-2 * qi, dtype)
    # The SVD of a in those units: u is unit free, s scales with a.
    w_u, h_u = _nndsvda(a * a_u_scale, k, key,
                        mean_s * _pow2(2 * (q - qi), dtype), _NNDSVD_TRUNC)
    back = _pow2(qi - q, dtype)
    return w_u * back, h_u * back
  raise ValueError(f"init must be one of {_INITS}, got {init!r}.")


def _mask_rows(x, row_mask):
  return x if row_mask is None else jnp.where(row_mask[:, None], x, 0)


def _n_rows(a, row_mask):
  if row_mask is None:
    return jnp.asarray(a.shape[0], a.dtype)
  return jnp.sum(row_mask).astype(a.dtype)


# ---------------------------------------------------------------------------
# Public jittable cores.


@functools.partial(jax.jit, static_argnames=("n_components", "init"))
def initialize(a: jax.Array, n_components: int, init: str = "nndsvda",
               key: Any = None, row_mask: jax.Array | None = None,
               w_init: jax.Array | None = None,
               h_init: jax.Array | None = None):
  """Initial factors as scikit-learn's ``_initialize_nmf`` (jittable).

  Args:
    a: (m, n) float, non-negative; rows outside ``row_mask`` are ignored.
    n_components: k, static.
    init: ``"nndsvda"``, ``"random"`` or ``"custom"``, static.
    key: PRNG key (``"random"``: the draws; ``"nndsvda"``: the randomized
      SVD's test matrix). None means ``jax.random.key(0)``.
    row_mask: optional (m,) bool, rows that belong to the matrix.
    w_init: (m, k) for ``"custom"``.
    h_init: (k, n) for ``"custom"``.

  Returns:
    (w0, h0): (m, k) and (k, n), same dtype as ``a``; rows of w0 outside the
    mask are zero.
  """
  a = _mask_rows(a, row_mask)
  q, _, mean_s, _ = _scaled_stats(a, _n_rows(a, row_mask))
  w, h = _init_scaled(a, n_components, init, key, mean_s, q, w_init, h_init)
  up = _pow2(q, a.dtype)
  return _mask_rows(w * up, row_mask), h * up


def _loop_args(max_iter, tol, dtype):
  """Traced loop controls and the static switch: is the convergence tested?"""
  if isinstance(tol, jax.core.Tracer):
    raise TypeError("tol must be a Python float (0 disables the test).")
  checked = float(tol) > 0
  return jnp.asarray(max_iter, jnp.int32), jnp.asarray(tol, dtype), checked


def _fit_core(a, w0, h0, row_mask, omitted_gram, n_rows, max_iter, tol, *,
              checked, form):
  """Fit from (w0, h0) in original units; rows of a outside the mask are 0.

  omitted_gram: (k, k) w0_d.T @ w0_d of rows that belong to the problem but are
  not in a (all-zero rows dropped by the caller); they only enter the error of
  the initial iterate.
  """
  q, inv_s, _, norm_sq_s = _scaled_stats(a, n_rows)
  down = _pow2(-q, a.dtype)
  w = _mask_rows(w0 * down, row_mask)
  h = h0 * down
  init_offset = jnp.zeros((), a.dtype)
  if omitted_gram is not None:
    init_offset = jnp.sum((omitted_gram * (down * down)) * (h @ h.T))
  w, h, n_iter, err = _fit_scaled(a, w, h, inv_s, init_offset, max_iter, tol,
                                  checked=checked, form=form)
  norm = jnp.sqrt(norm_sq_s)
  rel = jnp.where(norm > 0, err / jnp.where(norm > 0, norm, 1), 0)
  up = _pow2(q, a.dtype)
  return NMFResult(w * up, h * up, n_iter, rel)


@functools.partial(
    jax.jit, static_argnames=("n_components", "init", "checked", "form"))
def _nmf_core(a, key, row_mask, w_init, h_init, max_iter, tol, *,
              n_components, init, checked, form):
  a = _mask_rows(a, row_mask)
  w0, h0 = initialize(a, n_components, init, key, row_mask, w_init, h_init)
  return _fit_core(a, w0, h0, row_mask, None, _n_rows(a, row_mask), max_iter,
                   tol, checked=checked, form=form)


def nmf_unchecked(a: jax.Array, n_components: int, *, init: str = "nndsvda",
                  key: Any = None, row_mask: jax.Array | None = None,
                  w_init: jax.Array | None = None,
                  h_init: jax.Array | None = None, max_iter: int = 200,
                  tol: float = 1e-4,
                  block_rows: int | None = None,
                  transpose_a: bool | None = None) -> NMFResult:
  """Jittable, vmappable NMF core: no value checks, no zero-row skipping.

  Same arguments and result as :func:`nmf`, plus ``row_mask`` ((m,) bool:
  rows outside it are not part of the matrix; their ``w`` rows are zero).
  Assumes ``a`` is finite and non-negative and ``1 <= k <= min(m, n)``; use it
  under ``jit`` / ``vmap`` from library code that has checked its inputs.
  ``n_components``, ``init``, ``block_rows`` and ``transpose_a`` are static;
  ``max_iter`` may be traced; ``tol`` must be a Python float (whether it is 0
  is static).
  """
  chex.assert_rank(a, 2)
  max_iter, tol, checked = _loop_args(max_iter, tol, a.dtype)
  return _nmf_core(a, key, row_mask, w_init, h_init, max_iter, tol,
                   n_components=n_components, init=init, checked=checked,
                   form=_resolve_form(block_rows, transpose_a))


@functools.partial(jax.jit, static_argnames=("checked", "form"))
def _fit_compacted(a_c, w0_c, h0, row_mask_c, omitted_gram, max_iter, tol, *,
                   checked, form):
  return _fit_core(a_c, w0_c, h0, row_mask_c, omitted_gram,
                   jnp.asarray(1, a_c.dtype), max_iter, tol, checked=checked,
                   form=form)


@functools.partial(jax.jit, static_argnames=("checked", "form"))
def _fit_compacted_batched(a_c, w0_c, h0, row_mask_c, omitted_gram, max_iter,
                           tol, *, checked, form):
  def one(a, w0, h0, msk, gram):
    return _fit_core(a, w0, h0, msk, gram, jnp.asarray(1, a.dtype), max_iter,
                     tol, checked=checked, form=form)
  return jax.vmap(one)(a_c, w0_c, h0, row_mask_c, omitted_gram)


def transform_unchecked(a: jax.Array, h: jax.Array, *, max_iter: int = 200,
                        tol: float = 1e-4) -> jax.Array:
  """Jittable core of :func:`transform` (no value checks).

  ``max_iter`` may be traced; ``tol`` must be a Python float.
  """
  chex.assert_rank([a, h], 2)
  max_iter, tol, checked = _loop_args(max_iter, tol, a.dtype)
  return _transform_core(a, h, max_iter, tol, checked=checked)


@functools.partial(jax.jit, static_argnames=("checked",))
def _transform_core(a, h, max_iter, tol, *, checked):
  block_rows = RESIDUAL_BLOCK_ROWS
  k = h.shape[0]
  q, inv_s, mean_s, _ = _scaled_stats(a, jnp.asarray(a.shape[0], a.dtype))
  down = _pow2(-q, a.dtype)
  h = h.astype(a.dtype) * down
  # scikit-learn's transform with solver "mu": w starts at sqrt(mean(a) / k).
  w = jnp.full((a.shape[0], k), jnp.sqrt(mean_s / k), a.dtype)
  num = _a_ht(a, h) * inv_s  # one read of a, reused by every iteration
  hht = h @ h.T

  def update(w):
    return _mu(w, num, w @ hht)

  def err_of(w):
    return jnp.sqrt(jnp.maximum(_residual_sq(a, w, h, inv_s, block_rows), 0))

  if not checked:
    w = lax.fori_loop(0, max_iter, lambda i, w: update(w), w)
    return w * _pow2(q, a.dtype)

  err0 = err_of(w)

  def cond(state):
    _, t, _, done = state
    return jnp.logical_and(jnp.logical_not(done), t < max_iter)

  def body(state):
    w, t, prev, _ = state
    n = jnp.minimum(_CHECK_EVERY, max_iter - t)
    w = lax.fori_loop(0, n, lambda i, w: update(w), w)
    t = t + n
    checked = t % _CHECK_EVERY == 0
    err = lax.cond(checked, err_of, lambda w: prev, w)
    safe0 = jnp.where(err0 > 0, err0, 1)
    rel_drop = jnp.where(err0 > 0, (prev - err) / safe0, 0)
    done = jnp.logical_and(checked, rel_drop < tol)
    return w, t, err, done

  w, _, _, _ = lax.while_loop(
      cond, body, (w, jnp.zeros((), jnp.int32), err0, jnp.zeros((), bool)))
  return w * _pow2(q, a.dtype)


# ---------------------------------------------------------------------------
# Input checks (concrete arrays).


def _is_tracer(x) -> bool:
  return isinstance(x, jax.core.Tracer)


def _as_float_array(x, name: str) -> jax.Array:
  x = jnp.asarray(x)
  if jnp.issubdtype(x.dtype, jnp.complexfloating) or x.dtype == bool:
    raise TypeError(f"{name} must be a real numeric array, got dtype {x.dtype}.")
  if not jnp.issubdtype(x.dtype, jnp.floating) or x.dtype in (
      jnp.float16, jnp.bfloat16):
    x = x.astype(jnp.float32)
  return x


@jax.jit
def _value_summary(x):
  return jnp.logical_not(jnp.all(jnp.isfinite(x))), jnp.min(x)


def _check_values(x, name: str) -> None:
  if x.size == 0:
    raise ValueError(f"{name} is empty (shape {x.shape}).")
  nonfinite, xmin = jax.device_get(_value_summary(x))
  if nonfinite:
    raise ValueError(f"{name} contains NaN or Inf; expected finite values.")
  if xmin < 0:
    raise ValueError(
        f"{name} has negative entries (min {float(xmin):.3g}); NMF needs a "
        "non-negative matrix.")


def _check_common(n_components, init, max_iter, tol, block_rows, min_dim,
                  shape_msg):
  if isinstance(n_components, bool) or not isinstance(
      n_components, (int, np.integer)):
    raise TypeError(
        f"n_components must be an int, got {type(n_components).__name__}.")
  if n_components < 1:
    raise ValueError(f"n_components must be >= 1, got {n_components}.")
  if n_components > min_dim:
    raise ValueError(
        f"n_components={n_components} exceeds min(m, n)={min_dim} {shape_msg}.")
  if init not in _INITS:
    raise ValueError(f"init must be one of {_INITS}, got {init!r}.")
  if isinstance(max_iter, bool) or not isinstance(
      max_iter, (int, np.integer)) or max_iter < 1:
    raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}.")
  if not np.isfinite(tol) or tol < 0:
    raise ValueError(f"tol must be a finite float >= 0, got {tol!r}.")
  if block_rows is not None and (
      not isinstance(block_rows, (int, np.integer)) or block_rows < 1):
    raise ValueError(f"block_rows must be None or an int >= 1, got {block_rows!r}.")


def _check_custom(init, w_init, h_init, w_shape, h_shape, check_values, dtype):
  if init != "custom":
    if w_init is not None or h_init is not None:
      raise ValueError('w_init / h_init are only used with init="custom".')
    return None, None
  if w_init is None or h_init is None:
    raise ValueError('init="custom" needs both w_init and h_init.')
  w_init = _as_float_array(w_init, "w_init").astype(dtype)
  h_init = _as_float_array(h_init, "h_init").astype(dtype)
  if w_init.shape != w_shape:
    raise ValueError(f"w_init must have shape {w_shape}, got {w_init.shape}.")
  if h_init.shape != h_shape:
    raise ValueError(f"h_init must have shape {h_shape}, got {h_init.shape}.")
  if check_values:
    _check_values(w_init, "w_init")
    _check_values(h_init, "h_init")
  return w_init, h_init


# ---------------------------------------------------------------------------
# Public entry points.


def nmf(a, n_components: int, *, init: str = "nndsvda", max_iter: int = 200,
        tol: float = 1e-4, key: Any = None, w_init=None, h_init=None,
        skip_zero_rows: bool = True,
        block_rows: int | None = None,
        transpose_a: bool | None = None,
        check_inputs: bool = True) -> NMFResult:
  """Factorises a non-negative matrix: ``a ~= w @ h`` (Frobenius loss).

  Multiplicative updates as scikit-learn's ``NMF(solver="mu",
  beta_loss="frobenius")`` with no regularisation; see the module docstring.

  Args:
    a: (m, n) non-negative, finite array (float32 is used unless x64 is on).
    n_components: k, 1 <= k <= min(m, n).
    init: ``"nndsvda"`` (default, as scikit-learn's), ``"random"`` or
      ``"custom"`` (then ``w_init`` (m, k) and ``h_init`` (k, n)).
    max_iter: maximum number of iterations.
    tol: stop when the error dropped by less than ``tol * error_at_init`` over
      the last 10 iterations (checked every 10). 0: run ``max_iter``.
    key: PRNG key or int seed for ``"random"`` and for the randomized SVD of
      ``"nndsvda"``; None means seed 0.
    w_init: (m, k) initial w for ``init="custom"``.
    h_init: (k, n) initial h for ``init="custom"``.
    skip_zero_rows: drop all-zero rows of ``a`` before iterating (exact; reads
      fewer bytes). Needs concrete values.
    block_rows: None (default) for the two-product iteration; an int selects
      the one-pass iteration with that many rows of ``a`` per block (see the
      module docstring).
    transpose_a: two-product form only: keep a row-major copy of ``a.T`` for
      the ``w.T @ a`` product (about 2x faster on XLA:CPU, one more
      ``a``-sized buffer). None (default): on for the CPU backend, off on
      accelerators, whose matmuls read a transposed operand at full speed.
    check_inputs: check values (finite, non-negative). With False, ``a`` may be
      a tracer (inside ``jit`` / ``vmap``); then no rows are skipped. Static
      arguments are always checked.

  Returns:
    :class:`NMFResult` ``(w, h, n_iter, rel_error)``.

  Raises:
    ValueError: ``a`` not 2-D, empty, with NaN / Inf or negative entries;
      ``n_components`` outside [1, min(m, n)]; bad ``init`` / ``max_iter`` /
      ``tol`` / custom factors.
  """
  if not hasattr(a, "ndim"):
    a = np.asarray(a)
  if a.ndim != 2:
    raise ValueError(f"a must be a 2-D (m, n) matrix, got shape {a.shape}.")
  m, n = a.shape
  _check_common(n_components, init, max_iter, tol, block_rows, min(m, n),
                f"for a of shape {(m, n)}")
  form = _resolve_form(block_rows, transpose_a)  # a bad transpose_a fails here
  tracing = _is_tracer(a)
  if tracing and check_inputs:
    raise TypeError(
        "nmf() checks the values of `a` and cannot be traced; pass "
        "check_inputs=False (or call nmf_unchecked) inside jit / vmap.")
  a = _as_float_array(a, "a")
  k = int(n_components)
  w_init, h_init = _check_custom(init, w_init, h_init, (m, k), (k, n),
                                 check_inputs and not tracing, a.dtype)
  if check_inputs:
    _check_values(a, "a")
  key = _as_key(key)
  max_iter, tol = int(max_iter), float(tol)
  if skip_zero_rows and not tracing:
    nonzero = np.asarray(jax.device_get(_nonzero_rows(a)))
    n_keep = int(nonzero.sum())
    if 0 < n_keep < m:
      return _nmf_skipping(a, k, nonzero, init=init, key=key, w_init=w_init,
                           h_init=h_init, max_iter=max_iter, tol=tol,
                           form=form)
  return nmf_unchecked(a, k, init=init, key=key, w_init=w_init,
                       h_init=h_init, max_iter=max_iter, tol=tol,
                       block_rows=form.block_rows,
                       transpose_a=form.transpose_a)


@jax.jit
def _nonzero_rows(a):
  return jnp.any(a != 0, axis=-1)


def _nmf_skipping(a, k, nonzero, *, init, key, w_init, h_init, max_iter, tol,
                  form):
  """nmf on the nonzero rows of a, exactly equal to nmf on all of a."""
  w0, h0 = initialize(a, k, init, key, None, w_init, h_init)
  keep = np.flatnonzero(nonzero)
  drop = np.flatnonzero(~nonzero)
  w0_drop = w0[drop]
  max_iter, tol, checked = _loop_args(max_iter, tol, a.dtype)
  res = _fit_compacted(a[keep], w0[keep], h0, None, w0_drop.T @ w0_drop,
                       max_iter, tol, checked=checked, form=form)
  w = jnp.zeros((a.shape[0], k), a.dtype).at[keep].set(res.w)
  return res._replace(w=w)


def nmf_batched(a, n_components: int, *, n_valid=None, row_mask=None,
                init: str = "nndsvda", max_iter: int = 200, tol: float = 1e-4,
                key: Any = None, skip_zero_rows: bool = True,
                block_rows: int | None = None,
                transpose_a: bool | None = None,
                check_inputs: bool = True) -> NMFResult:
  """NMF of a stack of matrices (one per class), batched with ``vmap``.

  Classes have different numbers of pixel vectors: pad them to a common m and
  say which rows are real with ``n_valid`` (the first ``n_valid[b]`` rows of
  matrix b) or ``row_mask``. Rows outside are ignored (their ``w`` rows are
  zero). Matrix b's result equals ``nmf(a[b][rows_b], ...)`` with key
  ``keys[b]`` (same init, same iterations; equal up to float rounding). Each
  matrix stops at its own convergence test.

  Args:
    a: (B, m, n) non-negative, finite.
    n_components: k, 1 <= k <= min(valid rows of every matrix, n).
    n_valid: optional (B,) ints in [k, m].
    row_mask: optional (B, m) bool (alternative to n_valid).
    init, max_iter, tol, skip_zero_rows, block_rows, transpose_a,
      check_inputs: as :func:`nmf` (``transpose_a`` copies every matrix).
    key: one PRNG key / int seed (split into B keys) or a (B,) batch of keys.

  Returns:
    :class:`NMFResult` with a leading batch axis: w (B, m, k), h (B, k, n),
    n_iter (B,), rel_error (B,).
  """
  if not hasattr(a, "ndim"):
    a = np.asarray(a)
  if a.ndim != 3:
    raise ValueError(
        f"a must be a 3-D (batch, m, n) stack of matrices, got shape {a.shape}.")
  bsz, m, n = a.shape
  if bsz == 0:
    raise ValueError("a is an empty stack (batch size 0).")
  if n_valid is not None and row_mask is not None:
    raise ValueError("Give n_valid or row_mask, not both.")
  tracing = _is_tracer(a)
  if tracing and check_inputs:
    raise TypeError(
        "nmf_batched() checks the values of `a` and cannot be traced; pass "
        "check_inputs=False inside jit / vmap.")
  if n_valid is not None:
    n_valid = jnp.asarray(n_valid)
    if n_valid.shape != (bsz,):
      raise ValueError(f"n_valid must have shape ({bsz},), got {n_valid.shape}.")
    row_mask = jnp.arange(m)[None, :] < n_valid[:, None]
  elif row_mask is not None:
    row_mask = jnp.asarray(row_mask)
    if row_mask.shape != (bsz, m) or row_mask.dtype != bool:
      raise ValueError(
          f"row_mask must be a bool array of shape {(bsz, m)}, got "
          f"{row_mask.dtype} {row_mask.shape}.")
  rows_min = m
  if row_mask is not None and not _is_tracer(row_mask):
    counts = np.asarray(jax.device_get(jnp.sum(row_mask, axis=1)))
    rows_min = int(counts.min())
  _check_common(n_components, init, max_iter, tol, block_rows,
                min(rows_min, n),
                f"(fewest valid rows {rows_min}, n = {n})")
  form = _resolve_form(block_rows, transpose_a)
  if init == "custom":
    raise ValueError('nmf_batched supports init "nndsvda" and "random".')
  a = _as_float_array(a, "a")
  if check_inputs:
    _check_values(a if row_mask is None else jnp.where(row_mask[..., None], a, 0),
                  "a")
  k = int(n_components)
  max_iter, tol = int(max_iter), float(tol)
  keys = _batch_keys(key, bsz)
  if row_mask is not None:
    a = jnp.where(row_mask[..., None], a, 0)
  if skip_zero_rows and not tracing:
    keep = _nonzero_rows(a)
    keep = np.asarray(jax.device_get(keep))
    counts = keep.sum(axis=1)
    m_c = int(counts.max())
    if 0 < m_c < m:
      return _batched_skipping(a, k, keep, row_mask, keys, init=init,
                               max_iter=max_iter, tol=tol, form=form)
  fn = functools.partial(nmf_unchecked, n_components=k, init=init,
                         max_iter=max_iter, tol=tol, block_rows=form.block_rows,
                         transpose_a=form.transpose_a)
  if row_mask is None:
    return jax.vmap(lambda x, kk: fn(x, key=kk))(a, keys)
  return jax.vmap(lambda x, kk, msk: fn(x, key=kk, row_mask=msk))(
      a, keys, row_mask)


def _batch_keys(key, bsz):
  """One key (split into bsz) or a batch of bsz keys."""
  if key is None or isinstance(key, (int, np.integer)):
    return jax.random.split(_as_key(key), bsz)
  key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
  typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
  if key.ndim == (0 if typed else 1):
    return jax.random.split(key, bsz)
  if key.shape[0] != bsz or key.ndim != (1 if typed else 2):
    raise ValueError(
        f"key must be one PRNG key or a batch of {bsz} keys, got shape "
        f"{key.shape}.")
  return key


@functools.partial(jax.jit, static_argnames=("k", "init"))
def _init_batched(a, keys, row_mask, *, k, init):
  return jax.vmap(lambda x, kk, msk: initialize(x, k, init, kk, msk))(
      a, keys, row_mask)


def _batched_skipping(a, k, keep, row_mask, keys, *, init, max_iter, tol,
                      form):
  """nmf_batched on the nonzero rows only; equal to the dense computation."""
  bsz, m, _ = a.shape
  msk = (jnp.ones((bsz, m), bool) if row_mask is None else row_mask)
  w0, h0 = _init_batched(a, keys, msk, k=k, init=init)
  counts = keep.sum(axis=1)
  m_c = int(counts.max())
  idx = np.full((bsz, m_c), m, np.int64)  # m = out of range -> zero rows
  for b in range(bsz):
    rows = np.flatnonzero(keep[b])
    idx[b, :rows.size] = rows
  idx = jnp.asarray(idx)
  take = jax.vmap(lambda x, i: jnp.take(x, i, axis=0, mode="fill",
                                        fill_value=0))
  a_c = take(a, idx)
  w0_c = take(w0, idx)
  mask_c = jnp.arange(m_c)[None, :] < jnp.asarray(counts)[:, None]
  dropped = jnp.logical_and(msk, jnp.logical_not(jnp.asarray(keep)))
  w0_d = jnp.where(dropped[..., None], w0, 0)
  gram = jnp.einsum("bmk,bml->bkl", w0_d, w0_d)
  max_iter, tol, checked = _loop_args(max_iter, tol, a.dtype)
  res = _fit_compacted_batched(a_c, w0_c, h0, mask_c, gram, max_iter, tol,
                               checked=checked, form=form)
  w = jax.vmap(lambda i, wc: jnp.zeros((m, k), a.dtype).at[i].set(
      wc, mode="drop"))(idx, res.w)
  return res._replace(w=w)


def transform(a, h, *, max_iter: int = 200, tol: float = 1e-4,
              check_inputs: bool = True) -> jax.Array:
  """``w`` for fixed components ``h``, as scikit-learn's ``NMF.transform``.

  scikit-learn's ``mu`` solver with ``update_H=False``: ``w`` starts at
  ``sqrt(mean(a) / k)`` and is updated by multiplicative updates, with the
  same convergence test as :func:`nmf`.

  Args:
    a: (m, n) non-negative, finite.
    h: (k, n) non-negative components (e.g. ``nmf(...).h``).
    max_iter: maximum number of iterations.
    tol: tolerance of the convergence test (0: run ``max_iter``).
    check_inputs: check values (see :func:`nmf`).

  Returns:
    (m, k) non-negative ``w``.
  """
  if not hasattr(a, "ndim"):
    a = np.asarray(a)
  if not hasattr(h, "ndim"):
    h = np.asarray(h)
  if a.ndim != 2:
    raise ValueError(f"a must be a 2-D (m, n) matrix, got shape {a.shape}.")
  if h.ndim != 2 or h.shape[1] != a.shape[1]:
    raise ValueError(
        f"h must be (k, n) with n = {a.shape[1]} (a's columns), got shape "
        f"{h.shape}.")
  _check_common(h.shape[0], "custom", max_iter, tol, 1, max(h.shape[0], 1),
                "")
  if (_is_tracer(a) or _is_tracer(h)) and check_inputs:
    raise TypeError(
        "transform() checks values and cannot be traced; pass "
        "check_inputs=False inside jit / vmap.")
  a = _as_float_array(a, "a")
  h = _as_float_array(h, "h").astype(a.dtype)
  if check_inputs:
    _check_values(a, "a")
    _check_values(h, "h")
  return transform_unchecked(a, h, max_iter=int(max_iter), tol=float(tol))
