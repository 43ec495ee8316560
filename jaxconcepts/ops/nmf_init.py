"""NMF initialisation as scikit-learn's ``_initialize_nmf``, and the scaling NMF runs in.

Inits (all jittable and vmappable; ``k`` and the init name are static):

* ``"random"``: ``|N(0, 1)| * sqrt(mean(a) / k)``, scikit-learn's scaling with
  JAX's random numbers (``h`` from the first half of the split key, ``w`` from
  the second).
* ``"nndsvda"``: scikit-learn's NNDSVD with zeros filled by ``mean(a)``, from a
  randomized SVD (10 oversamples, 7 power iterations, as scikit-learn's
  ``randomized_svd``).
* ``"custom"``: given ``w_init``, ``h_init``.

Scaling. The fit and the init work on ``a / 4**q`` with ``4**q`` the power of
four nearest ``max(a)`` (``w`` and ``h`` carried divided by ``2**q``). Scaling
by a power of two is exact, so the iterates equal those on ``a`` itself, while
tiny (1e-30) and huge (1e30) inputs neither underflow nor overflow in float32.
The helpers for that scaling (`scale_exponent`, `pow2`, `scaled_stats`) and for
row masks (`mask_rows`, `count_rows`) live here and are shared with
:mod:`jaxconcepts.ops.nmf`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
from jax import lax
import jax.numpy as jnp

from jaxconcepts.utils import as_key

INITS = ("nndsvda", "random", "custom")
"""The init names :func:`initialize` accepts."""

_SVD_OVERSAMPLES = 10  # scikit-learn's randomized_svd defaults.
_SVD_POWER_ITERS = 7
_GRAM_RTOL = 1e-6  # eigenvalues of a Gram matrix: sqrt(1e-6) ~ 8 sqrt(eps32)
_NNDSVD_TRUNC = 1e-6  # scikit-learn's `eps` in _initialize_nmf.
_INIT_EXACT_EXPONENT = 10  # nndsvda equals scikit-learn for 4**-10 <= max(a) < 4**11.


# ---------------------------------------------------------------------------
# Scaling and row masks (shared with ops.nmf).


def scale_exponent(amax: jax.Array) -> jax.Array:
  """Integer q with ``amax / 4**q`` in [0.5, 2) (0 for amax == 0).

  Args:
    amax: float scalar, max(a) >= 0.

  Returns:
    int32 scalar in [-62, 62].
  """
  _, p = jnp.frexp(amax)  # amax = f * 2**p, f in [0.5, 1).
  q = jnp.floor_divide(p, 2)
  q = jnp.where(amax > 0, q, 0)
  return jnp.clip(q, -62, 62).astype(jnp.int32)


def pow2(e: jax.Array, dtype: Any) -> jax.Array:
  """Exact ``2**e`` as a scalar of ``dtype`` (e an int scalar)."""
  return jnp.ldexp(jnp.ones((), dtype), e)


def scaled_stats(a: jax.Array, n_rows: jax.Array
                 ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """The scale of ``a`` and its statistics in scaled units.

  Args:
    a: (m, n) float, non-negative (rows outside a mask already zero).
    n_rows: float scalar, the number of rows that belong to the matrix.

  Returns:
    ``(q, 4**-q, mean(a) / 4**q, ||a / 4**q||_F**2)``: int32 and three
    scalars of a's dtype.
  """
  q = scale_exponent(jnp.max(a))
  inv_s = pow2(-2 * q, a.dtype)
  # a * inv_s is fused into each reduction, never materialised. The barrier keeps
  # XLA:CPU from making the two sums one multi-output fusion, which ran at a
  # sixth of the speed of two single ones (37 ms against 7.7 ms on 11760 x 1024,
  # same values; benchmarks/README.md "NMF solvers").
  mean_s = jnp.sum(a * inv_s) / (n_rows * a.shape[1])
  a2, inv2 = lax.optimization_barrier((a, inv_s))
  norm_sq_s = jnp.sum(jnp.square(a2 * inv2))
  return q, inv_s, mean_s, norm_sq_s


def mask_rows(x: jax.Array, row_mask: jax.Array | None) -> jax.Array:
  """``x`` (m, ...) with the rows outside ``row_mask`` ((m,) bool) set to zero."""
  return x if row_mask is None else jnp.where(row_mask[:, None], x, 0)


def count_rows(a: jax.Array, row_mask: jax.Array | None) -> jax.Array:
  """Rows of ``a`` (m, n) inside ``row_mask`` (all m if None), as a's dtype."""
  if row_mask is None:
    return jnp.asarray(a.shape[0], a.dtype)
  return jnp.sum(row_mask).astype(a.dtype)


# ---------------------------------------------------------------------------
# Randomized SVD and NNDSVDa.


def _orthonormalize(y: jax.Array, axis: int) -> jax.Array:
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


def _randomized_svd(a: jax.Array, k: int, key: jax.Array
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Top-k SVD of a (m, n) by a randomized range finder (Halko et al.).

  As scikit-learn's randomized_svd (10 oversamples, 7 power iterations), with
  the iterate orthonormalised after every product. Rows of a that are zero
  give zero rows of u. Returns u (m, k), s (k,), vt (k, n).
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


def _safe_div(x: jax.Array, d: jax.Array) -> jax.Array:
  """x / d where d > 0, else 0."""
  return jnp.where(d > 0, x / jnp.where(d > 0, d, 1), 0)


def _nndsvda(a_u: jax.Array, k: int, key: jax.Array, mean_u: jax.Array,
             trunc: float) -> tuple[jax.Array, jax.Array]:
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


# ---------------------------------------------------------------------------
# Initial factors.


def _init_scaled(a, k, init, key, mean_s, q, w_init, h_init):
  """Initial (w, h) divided by 2**q."""
  m, n = a.shape
  dtype = a.dtype
  if init == "custom":
    down = pow2(-q, dtype)
    return jnp.asarray(w_init, dtype) * down, jnp.asarray(h_init, dtype) * down
  key = as_key(key)
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
    a_u_scale = pow2(-2 * qi, dtype)
    # The SVD of a in those units: u is unit free, s scales with a.
    w_u, h_u = _nndsvda(a * a_u_scale, k, key,
                        mean_s * pow2(2 * (q - qi), dtype), _NNDSVD_TRUNC)
    back = pow2(qi - q, dtype)
    return w_u * back, h_u * back
  raise ValueError(f"init must be one of {INITS}, got {init!r}.")


@functools.partial(jax.jit, static_argnames=("n_components", "init"))
def initialize(a: jax.Array, n_components: int, init: str = "nndsvda",
               key: Any = None, row_mask: jax.Array | None = None,
               w_init: jax.Array | None = None,
               h_init: jax.Array | None = None,
               stats: tuple[jax.Array, ...] | None = None
               ) -> tuple[jax.Array, jax.Array]:
  """Initial factors as scikit-learn's ``_initialize_nmf`` (jitted, vmappable).

  No value checks: :func:`jaxconcepts.ops.nmf.nmf` checks its inputs and then
  calls this.

  Args:
    a: (m, n) float, non-negative; rows outside ``row_mask`` are ignored.
    n_components: k, static.
    init: ``"nndsvda"``, ``"random"`` or ``"custom"``, static.
    key: PRNG key or int seed (``"random"``: the draws; ``"nndsvda"``: the
      randomized SVD's test matrix). None means seed 0.
    row_mask: optional (m,) bool, rows that belong to the matrix.
    w_init: (m, k) for ``"custom"``.
    h_init: (k, n) for ``"custom"``.
    stats: optional :func:`scaled_stats` of the masked ``a``, when the caller
      has them already (the fit needs them too: computing them once saves two
      reads of ``a``).

  Returns:
    (w0, h0): (m, k) and (k, n), same dtype as ``a``; rows of w0 outside the
    mask are zero.
  """
  a = mask_rows(a, row_mask)
  if stats is None:
    stats = scaled_stats(a, count_rows(a, row_mask))
  q, _, mean_s, _ = stats
  w, h = _init_scaled(a, n_components, init, key, mean_s, q, w_init, h_init)
  up = pow2(q, a.dtype)
  return mask_rows(w * up, row_mask), h * up
