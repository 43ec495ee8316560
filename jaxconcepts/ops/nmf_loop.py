"""The multiplicative-update loops of NMF: jittable, vmappable, no value checks.

The public entry points are in :mod:`jaxconcepts.ops.nmf`; this module holds
what they run once their inputs are checked: the fit of ``w`` and ``h`` from
initial factors (:func:`fit`) and the fit of ``w`` for fixed ``h``
(:func:`fit_w`), both in the scaled units of :mod:`jaxconcepts.ops.nmf_init`.

* Lee-Seung multiplicative updates in scikit-learn's order (``w`` first, then
  ``h`` from the new ``w``), with scikit-learn's floor: a denominator that is
  exactly zero is replaced by ``EPSILON = finfo(float32).eps``. No
  regularisation (scikit-learn's ``alpha_W=0`` default: none).
* Convergence as scikit-learn: every 10 iterations the error
  ``||a - w h||_F`` is computed exactly and the loop stops when
  ``(previous_error - error) / error_at_init < tol``; ``tol=0`` runs exactly
  ``max_iter`` iterations. All inside ``lax.while_loop``.

* ``Form.solver`` ``"amu"`` / ``"hals"`` (Gillis & Glineur 2012): the same loop and
  test, but each iteration updates ``w`` several times from one ``a @ h.T`` and
  ``h @ h.T``, then ``h`` from one ``w.T @ a`` (:func:`_accelerated_iteration`).
* ``"ehals"``: HALS whose next iteration starts from iterates extrapolated along
  their last step, with the step size adapted and reset when the error rises
  (:func:`_fit_extrapolated`); the error of every iterate comes from the
  products the updates formed, without another read of ``a``.

One iteration is two full products, ``a @ h.T`` (to update ``w``) and
``w_new.T @ a`` (to update ``h``); the exact error is computed in row blocks
of ``a`` without forming ``w @ h``. How the two products are laid out is a
static :class:`Form` that :func:`choose_form` takes from the backend switch
(:mod:`jaxconcepts.ops.backend`): whether ``w.T @ a`` reads a row-major copy of
``a.T``, and how many columns the skinny products are padded to.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from jaxconcepts.ops import backend
from jaxconcepts.ops.nmf_init import mask_rows, pow2, scaled_stats

EPSILON = float(np.finfo(np.float32).eps)
"""Floor for zero denominators (scikit-learn's ``EPSILON``)."""

RESIDUAL_BLOCK_ROWS = 256
"""Rows of ``a`` per block when the exact residual is computed without forming
``w @ h`` (256 x 1024 float32 = 1 MiB, cache sized)."""

CHECK_EVERY = 10
"""Iterations between convergence tests (scikit-learn's)."""


SOLVERS = ("mu", "amu", "hals", "ehals")
"""Solver names: ``"mu"`` scikit-learn's multiplicative updates; ``"amu"``
accelerated MU and ``"hals"`` hierarchical ALS (Gillis & Glineur 2012), which
make several cheap inner updates of each factor from one read of ``a``;
``"ehals"`` that HALS with extrapolation and restarts (after Ang & Gillis 2019,
:func:`_fit_extrapolated`)."""


class Form(NamedTuple):
  """Static choices of the loop (hashable, a jit static argument).

  Attributes:
    transpose_a: keep a row-major copy of ``a.T`` and compute ``w.T @ a`` as
      ``(a_t @ w).T`` (see `backend.nmf_transpose_a`).
    dot_columns: compute ``a @ h.T`` with ``h``'s k rows zero-padded to this
      many (>= k; see `backend.nmf_dot_columns`).
    solver: one of :data:`SOLVERS`.
  """
  transpose_a: bool
  dot_columns: int
  solver: str = "mu"


LONG_FIT_ITERATIONS = 50
"""A fit that may run this many iterations is worth a per-fit pass over ``a`` (the zero-row
compaction, the transposed copy). Each pass costs about one iteration's reads of ``a`` or more,
and saves a part of each later iteration, so it pays only over many iterations; on W1 the
break-even was a few dozen (benchmarks/README.md, "W1: the per-fit passes over A")."""


def expects_long_fit(solver: str, max_iter: int, tol: float) -> bool:
  """Whether a fit is expected to run at least :data:`LONG_FIT_ITERATIONS` iterations.

  MU needs hundreds of iterations to converge, so ``max_iter`` bounds it; the accelerated
  solvers reach MU's 200-iteration error in 10-30 outer iterations (benchmarks/README.md), so
  they run long only when told to run ``max_iter`` iterations with no convergence test.
  """
  return int(max_iter) >= LONG_FIT_ITERATIONS and (solver == "mu" or float(tol) == 0)


def choose_form(k: int, transpose_a: bool | None = None,
                solver: str = "mu", long_fit: bool = True) -> Form:
  """The backend's :class:`Form` for k components and a solver.

  `transpose_a` None: the backend's choice (`backend.nmf_transpose_a`) for a long fit
  (:func:`expects_long_fit`), no copy for a short one.

  Raises:
    TypeError: `transpose_a` is neither None nor a bool.
    ValueError: `solver` is not one of :data:`SOLVERS`.
  """
  if solver not in SOLVERS:
    raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}.")
  copy = backend.nmf_transpose_a(transpose_a) and (transpose_a is not None or long_fit)
  return Form(copy, backend.nmf_dot_columns(k), solver)


def loop_args(max_iter: int, tol: float, dtype
              ) -> tuple[jax.Array, jax.Array, bool]:
  """Loop controls as traced scalars, and the static switch: is there a test?

  Returns:
    ``(max_iter, tol, checked)``: int32 and ``dtype`` scalars, and
    ``tol > 0`` as a Python bool (whether the convergence test is compiled).

  `tol` is a Python float: whether it is 0 decides the compiled program.
  """
  checked = float(tol) > 0
  return jnp.asarray(max_iter, jnp.int32), jnp.asarray(tol, dtype), checked


# ---------------------------------------------------------------------------
# One iteration and the exact error, in scaled units: a is used as given,
# products with a are multiplied by inv_s = 4**-q, w and h are divided by 2**q.


def _mu(x: jax.Array, num: jax.Array, den: jax.Array) -> jax.Array:
  """Multiplicative update ``x * num / den`` with scikit-learn's zero floor."""
  den = jnp.where(den == 0, jnp.asarray(EPSILON, den.dtype), den)
  # (x * num) / den rather than x * (num / den): a zero entry stays zero even
  # where num / den would overflow. Equal to scikit-learn up to rounding.
  return (x * num) / den


def _a_ht(a: jax.Array, h: jax.Array, columns: int) -> jax.Array:
  """``a @ h.T`` (m, k) with h's k rows zero-padded to ``columns``.

  The zero columns of the product are sliced off, so the values are the same
  products; only the kernel XLA picks differs.
  """
  k = h.shape[0]
  if columns <= k:
    return a @ h.T
  return (a @ jnp.pad(h, ((0, columns - k), (0, 0))).T)[:, :k]


def _residual_sq(a: jax.Array, w: jax.Array, h: jax.Array,
                 inv_s: jax.Array) -> jax.Array:
  """``sum((a * inv_s - w @ h)**2)``, one read of a, without forming w @ h."""
  m = a.shape[0]
  bm = max(1, min(RESIDUAL_BLOCK_ROWS, m))
  nb, tail = divmod(m, bm)

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


def _error(sq: jax.Array) -> jax.Array:
  """``sqrt(sq)``, with a rounding-negative ``sq`` read as 0."""
  return jnp.sqrt(jnp.maximum(sq, 0))


def _iteration(a, a_t, w, h, inv_s, columns, with_residual):
  """One Lee-Seung iteration as two full products (reads a twice).

  a_t: None, or a row-major (n, m) copy of a.T; then ``w.T @ a`` is computed
  as ``(a_t @ w).T``. Returns (w_new, h_new, sq) where sq is the squared
  residual of the *input* iterate (w, h) if with_residual, else 0.
  """
  sq = (_residual_sq(a, w, h, inv_s) if with_residual
        else jnp.zeros((), a.dtype))
  w = _mu(w, _a_ht(a, h, columns) * inv_s, w @ (h @ h.T))
  wta = w.T @ a if a_t is None else _a_ht(a_t, w.T, columns).T
  h = _mu(h, wta * inv_s, (w.T @ w) @ h)
  return w, h, sq


# ---------------------------------------------------------------------------
# Accelerated MU and HALS (Gillis & Glineur 2012): one read of a per factor
# update, then several inner updates from the products it gave.

INNER_ALPHA = {"amu": 2.0, "hals": 0.5}
"""Gillis & Glineur's alpha: at most ``1 + alpha * rho`` inner updates, where
rho is the cost of the products with ``a`` over that of one inner update."""

INNER_DELTA = 0.1
"""Inner updates stop once a step changes the factor by less than this times
the first step's change (Frobenius norms; Gillis & Glineur's delta)."""


def inner_steps(solver: str, rows: int, cols: int, k: int) -> int:
  """Most inner updates of a factor with ``rows`` rows (a is rows x cols).

  Gillis & Glineur: ``rho = 1 + (rows * cols + cols * k) / (rows * (k + 1))``
  (reading a and forming the Gram matrix, against one inner update), at most
  ``floor(1 + alpha * rho)`` inner updates.
  """
  rho = 1 + (rows * cols + cols * k) / (rows * (k + 1))
  return int(1 + INNER_ALPHA[solver] * rho)


def _hals_sweep(x: jax.Array, num: jax.Array, gram: jax.Array) -> jax.Array:
  """One HALS sweep over the k rows of x (k, p): each the exact minimiser.

  Row j: ``x_j = max(0, x_j + (num_j - gram_j @ x) / gram_jj)`` with the rows
  before j already updated; a row whose ``gram_jj`` is 0 (a dead component)
  is kept, as scikit-learn's coordinate descent does.
  """
  def row(j, x):
    g = lax.dynamic_index_in_dim(gram, j, 0, keepdims=False)
    gjj = g[j]
    xj = lax.dynamic_index_in_dim(x, j, 0, keepdims=False)
    nj = lax.dynamic_index_in_dim(num, j, 0, keepdims=False)
    step = (nj - g @ x) / jnp.where(gjj > 0, gjj, 1)
    new = jnp.where(gjj > 0, jnp.maximum(xj + step, 0), xj)
    return lax.dynamic_update_index_in_dim(x, new, j, 0)
  return lax.fori_loop(0, x.shape[0], row, x)


def _inner_updates(x: jax.Array, num: jax.Array, gram: jax.Array, *,
                   solver: str, max_steps: int) -> jax.Array:
  """Updates x (k, p) for ``min ||a' - x.T c||`` given ``num`` = c a'.T (k, p)
  and ``gram`` = c c.T (k, k), at most ``max_steps`` times.

  Each step costs O(p k^2) and reads no ``a``. The steps stop early by
  Gillis & Glineur's rule: when a step moves x by less than
  :data:`INNER_DELTA` times the first step's move.
  """
  def update(x):
    if solver == "hals":
      return _hals_sweep(x, num, gram)
    return _mu(x, num, gram @ x)

  def moved(x, y):
    d = y - x
    return jnp.sum(d * d)

  x1 = update(x)
  first = moved(x, x1)
  limit = (INNER_DELTA * INNER_DELTA) * first

  def cond(state):
    _, last, i = state
    return jnp.logical_and(i < max_steps, last > limit)

  def body(state):
    x, _, i = state
    y = update(x)
    return y, moved(x, y), i + 1

  x, _, _ = lax.while_loop(cond, body, (x1, first, jnp.ones((), jnp.int32)))
  return x


def _accelerated_iteration(a, a_t, w, h, inv_s, columns, with_residual, *,
                           solver):
  """One outer iteration of ``"amu"`` / ``"hals"``: reads a twice, as MU.

  The products ``a @ h.T`` and ``w.T @ a`` are formed once each; w (as w.T)
  and then h get their inner updates from them. Same signature and returns
  as :func:`_iteration`.
  """
  m, n = a.shape
  k = h.shape[0]
  sq = (_residual_sq(a, w, h, inv_s) if with_residual
        else jnp.zeros((), a.dtype))
  num_w = (_a_ht(a, h, columns) * inv_s).T
  w = _inner_updates(w.T, num_w, h @ h.T, solver=solver,
                     max_steps=inner_steps(solver, m, n, k)).T
  wta = w.T @ a if a_t is None else _a_ht(a_t, w.T, columns).T
  h = _inner_updates(h, wta * inv_s, w.T @ w, solver=solver,
                     max_steps=inner_steps(solver, n, m, k))
  return w, h, sq


# ---------------------------------------------------------------------------
# The fit of w and h.


def _fit_tested(a, w, h, inv_s, init_offset, max_iter, tol, step, plain):
  """The loop with scikit-learn's convergence test; returns (w, h, n_iter, error).

  Each trip of the loop: one iteration that also yields the exact error of
  the current iterate t (a multiple of 10), the convergence test on it, then
  up to 9 plain iterations. On convergence the iterate t is returned, as in
  scikit-learn; the one extra iteration computed is discarded.
  """
  def cond(state):
    _, _, t, _, _, _, done = state
    return jnp.logical_and(jnp.logical_not(done), t < max_iter)

  def body(state):
    w, h, t, prev, err0, _, _ = state
    w1, h1, sq = step(w, h, with_residual=True)
    first = t == 0
    sq = sq + jnp.where(first, init_offset, 0)
    err = _error(sq)
    err0 = jnp.where(first, err, err0)
    safe0 = jnp.where(err0 > 0, err0, 1)
    rel_drop = jnp.where(err0 > 0, (prev - err) / safe0, 0)
    conv = jnp.logical_and(jnp.logical_not(first), rel_drop < tol)
    n_plain = jnp.clip(max_iter - (t + 1), 0, CHECK_EVERY - 1)
    w2, h2 = lax.cond(
        conv, lambda: (w, h),
        lambda: lax.fori_loop(0, n_plain, plain, (w1, h1)))
    t2 = jnp.where(conv, t, t + 1 + n_plain)
    return w2, h2, t2, err, err0, err, conv

  zero = jnp.zeros((), a.dtype)
  state = (w, h, jnp.zeros((), jnp.int32), zero, zero, zero,
           jnp.zeros((), bool))
  w, h, t, _, _, err_t, done = lax.while_loop(cond, body, state)
  err = lax.cond(done, lambda: err_t,
                 lambda: _error(_residual_sq(a, w, h, inv_s)))
  return w, h, t, err


# ---------------------------------------------------------------------------
# Extrapolated HALS (after Ang & Gillis 2019, "heuristic extrapolation with
# restarts"): each outer iteration updates w from the extrapolated (wy, hy),
# extrapolates it, updates h from that, and extrapolates h.

EXTRAPOLATION = {"beta0": 0.5, "eta": 1.5, "gamma": 1.01, "gamma_bar": 1.005}
"""Ang & Gillis's parameters: the first step factor beta, its cut on a restart
(beta / eta), its growth after a decrease (gamma) and the growth of its cap
(gamma_bar, the cap starting at 1)."""


def _gram_error_sq(norm_sq, w, h, wta_s, wtw):
  """``||a_s - w h||_F**2`` from ``wta_s = w.T a_s`` (k, n) and ``wtw = w.T w``.

  ``||a_s||**2 - 2 <h, w.T a_s> + <w.T w, h h.T>``: O(k**2 n), no read of a.
  Cancellation costs about one digit when the relative error is near 0.3, so
  the convergence test uses it and the returned error is computed exactly.
  """
  return norm_sq - 2 * jnp.sum(h * wta_s) + jnp.sum(wtw * (h @ h.T))


def _fit_extrapolated(a, a_t, w, h, inv_s, norm_sq, init_offset, max_iter, tol, *,
                      checked, columns):
  """Extrapolated HALS; returns (w, h, n_iter, error) as :func:`_fit_scaled`.

  One outer iteration reads a twice, as HALS: ``a @ hy.T`` for the inner
  updates of w from ``wy``, then ``wy_new.T @ a`` for those of h from ``hy``,
  where ``wy_new = max(0, w_new + beta (w_new - w))`` and likewise
  ``hy_new``. The error of ``(wy_new, h_new)`` (h fitted to that w) follows
  from the second product (:func:`_gram_error_sq`). If it is above the last
  accepted error, the extrapolation is dropped (``wy, hy = w_new, h_new``),
  the cap becomes beta and beta shrinks by eta; otherwise beta grows by gamma
  up to the cap, which grows by gamma_bar up to 1. The best iterate seen is
  returned with its exact error. With ``checked``, the loop stops as
  scikit-learn's: every 10 iterations, once the error fell by less than
  ``tol`` times the initial error since the last check.
  """
  m, n = a.shape
  k = h.shape[0]
  p = EXTRAPOLATION
  dtype = a.dtype
  steps_w, steps_h = inner_steps("hals", m, n, k), inner_steps("hals", n, m, k)
  # The initial error is only needed for the convergence test (a read of a).
  err0 = (_error(_residual_sq(a, w, h, inv_s) + init_offset) if checked
          else jnp.asarray(jnp.inf, a.dtype))

  def one(state):
    (w, h, wy, hy, beta, cap, e_last, best, t, e_check, done) = state
    num_w = (_a_ht(a, hy, columns) * inv_s).T
    w_new = _inner_updates(wy.T, num_w, hy @ hy.T, solver="hals",
                           max_steps=steps_w).T
    w_ex = jnp.maximum(w_new + beta * (w_new - w), 0)
    wta = (w_ex.T @ a if a_t is None else _a_ht(a_t, w_ex.T, columns).T) * inv_s
    wtw = w_ex.T @ w_ex
    h_new = _inner_updates(hy, wta, wtw, solver="hals", max_steps=steps_h)
    h_ex = jnp.maximum(h_new + beta * (h_new - h), 0)
    e = _error(_gram_error_sq(norm_sq, w_ex, h_new, wta, wtw))  # of (w_ex, h_new)
    worse = e > e_last
    wy_new = jnp.where(worse, w_new, w_ex)
    hy_new = jnp.where(worse, h_new, h_ex)
    cap_new = jnp.where(worse, beta, jnp.minimum(1.0, p["gamma_bar"] * cap))
    beta_new = jnp.where(worse, beta / p["eta"], jnp.minimum(cap, p["gamma"] * beta))
    e_last = jnp.where(worse, e_last, e)
    b_w, b_h, b_e = best
    better = e < b_e
    best = (jnp.where(better, w_ex, b_w), jnp.where(better, h_new, b_h),
            jnp.minimum(e, b_e))
    t = t + 1
    at_check = t % CHECK_EVERY == 0
    if checked:
      drop = jnp.where(err0 > 0, (e_check - best[2]) / jnp.where(err0 > 0, err0, 1), 0)
      done = jnp.logical_and(at_check, drop < tol)
      e_check = jnp.where(at_check, best[2], e_check)
    return (w_new, h_new, wy_new, hy_new, beta_new, cap_new, e_last, best, t,
            e_check, done)

  def cond(state):
    return jnp.logical_and(jnp.logical_not(state[-1]), state[8] < max_iter)

  f = lambda x: jnp.asarray(x, dtype)  # pylint: disable=unnecessary-lambda-assignment
  state = (w, h, w, h, f(p["beta0"]), f(1.0), err0, (w, h, err0),
           jnp.zeros((), jnp.int32), err0, jnp.zeros((), bool))
  state = lax.while_loop(cond, one, state)
  (w, h, _), t = state[7], state[8]
  return w, h, t, _error(_residual_sq(a, w, h, inv_s))


def _fit_scaled(a, w, h, inv_s, norm_sq, init_offset, max_iter, tol, *, checked,
                form):
  """Runs the multiplicative updates; returns (w, h, n_iter, error).

  max_iter (int32) and tol may be traced; `checked` (static) is tol > 0;
  `form` (static) is a :class:`Form`; norm_sq is ``||a * inv_s||_F**2``.
  """
  # The barrier keeps XLA from folding the transpose back into the dot.
  a_t = lax.optimization_barrier(a.T) if form.transpose_a else None
  if form.solver == "ehals":
    return _fit_extrapolated(a, a_t, w, h, inv_s, norm_sq, init_offset, max_iter, tol,
                             checked=checked, columns=form.dot_columns)
  one = (_iteration if form.solver == "mu" else functools.partial(
      _accelerated_iteration, solver=form.solver))
  step = functools.partial(one, a, a_t, inv_s=inv_s, columns=form.dot_columns)

  def plain(i, wh):
    del i
    w, h, _ = step(*wh, with_residual=False)
    return w, h

  if not checked:  # tol == 0: scikit-learn runs max_iter iterations, no test.
    w, h = lax.fori_loop(0, max_iter, plain, (w, h))
    return w, h, max_iter, _error(_residual_sq(a, w, h, inv_s))
  return _fit_tested(a, w, h, inv_s, init_offset, max_iter, tol, step, plain)


def fit(a: jax.Array, w0: jax.Array, h0: jax.Array,
        row_mask: jax.Array | None, omitted_gram: jax.Array | None,
        stats: tuple[jax.Array, ...], max_iter: jax.Array, tol: jax.Array, *,
        checked: bool, form: Form) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Fits ``a ~= w @ h`` from (w0, h0), in original units.

  Args:
    a: (m, n) float, non-negative; rows outside ``row_mask`` are zero.
    w0: (m, k) initial w, a's dtype.
    h0: (k, n) initial h, a's dtype.
    row_mask: optional (m,) bool, the rows that belong to the matrix.
    omitted_gram: optional (k, k) ``w0_d.T @ w0_d`` of rows that belong to the
      problem but are not in ``a`` (all-zero rows the caller dropped); they
      only enter the error of the initial iterate.
    stats: :func:`~jaxconcepts.ops.nmf_init.scaled_stats` of the whole
      problem's matrix (only its scale and squared norm are used; the zero rows
      a caller dropped change neither).
    max_iter: int32 scalar.
    tol: scalar of a's dtype.
    checked: static, ``tol > 0`` (see :func:`loop_args`).
    form: static :class:`Form`.

  Returns:
    ``(w, h, n_iter, rel_error)``: (m, k), (k, n), int32 scalar and the
    relative error ``||a - w h||_F / ||a||_F`` (0 for an all-zero a).
  """
  q, inv_s, _, norm_sq_s = stats
  down = pow2(-q, a.dtype)
  w = mask_rows(w0 * down, row_mask)
  h = h0 * down
  init_offset = jnp.zeros((), a.dtype)
  if omitted_gram is not None:
    init_offset = jnp.sum((omitted_gram * (down * down)) * (h @ h.T))
  w, h, n_iter, err = _fit_scaled(a, w, h, inv_s, norm_sq_s, init_offset, max_iter, tol,
                                  checked=checked, form=form)
  norm = jnp.sqrt(norm_sq_s)
  rel = jnp.where(norm > 0, err / jnp.where(norm > 0, norm, 1), 0)
  up = pow2(q, a.dtype)
  return w * up, h * up, n_iter, rel


# ---------------------------------------------------------------------------
# The fit of w for fixed h (scikit-learn's transform).


def _fit_w_tested(a, h, w, inv_s, max_iter, tol,
                  update: Callable[[jax.Array], jax.Array]) -> jax.Array:
  """The w-only loop with the convergence test every 10 iterations."""
  def err_of(w):
    return _error(_residual_sq(a, w, h, inv_s))

  err0 = err_of(w)

  def cond(state):
    _, t, _, done = state
    return jnp.logical_and(jnp.logical_not(done), t < max_iter)

  def body(state):
    w, t, prev, _ = state
    n = jnp.minimum(CHECK_EVERY, max_iter - t)
    w = lax.fori_loop(0, n, lambda i, w: update(w), w)
    t = t + n
    at_check = t % CHECK_EVERY == 0
    err = lax.cond(at_check, err_of, lambda w: prev, w)
    safe0 = jnp.where(err0 > 0, err0, 1)
    rel_drop = jnp.where(err0 > 0, (prev - err) / safe0, 0)
    done = jnp.logical_and(at_check, rel_drop < tol)
    return w, t, err, done

  w, _, _, _ = lax.while_loop(
      cond, body, (w, jnp.zeros((), jnp.int32), err0, jnp.zeros((), bool)))
  return w


@functools.partial(jax.jit, static_argnames=("checked", "columns"))
def fit_w(a: jax.Array, h: jax.Array, max_iter: jax.Array, tol: jax.Array, *,
          checked: bool, columns: int) -> jax.Array:
  """``w`` (m, k) for fixed ``h`` (k, n), as scikit-learn's ``mu`` transform.

  ``w`` starts at ``sqrt(mean(a) / k)``; ``a @ h.T`` is computed once (padded
  to ``columns``, see :class:`Form`) and reused by every iteration. ``a`` is
  (m, n) non-negative float; ``max_iter``, ``tol``, ``checked`` as in
  :func:`fit`.
  """
  k = h.shape[0]
  q, inv_s, mean_s, _ = scaled_stats(a, jnp.asarray(a.shape[0], a.dtype))
  down = pow2(-q, a.dtype)
  h = h.astype(a.dtype) * down
  w = jnp.full((a.shape[0], k), jnp.sqrt(mean_s / k), a.dtype)
  num = _a_ht(a, h, columns) * inv_s  # one read of a, reused by every iteration
  hht = h @ h.T

  def update(w):
    return _mu(w, num, w @ hht)

  if not checked:
    w = lax.fori_loop(0, max_iter, lambda i, w: update(w), w)
  else:
    w = _fit_w_tested(a, h, w, inv_s, max_iter, tol, update)
  return w * pow2(q, a.dtype)
