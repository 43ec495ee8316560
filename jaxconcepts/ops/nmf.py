"""Non-negative matrix factorisation by multiplicative updates, in JAX.

Concept extraction factorises, for every class, a non-negative matrix of
attribution-scaled activation vectors ``a`` (pixels x channels) into a few
non-negative concepts: ``a ~= w @ h`` with ``w`` (m, k) and ``h`` (k, n). This
is a JAX version of scikit-learn's ``NMF(solver="mu")`` with the Frobenius
loss: its update order, zero floor, convergence test and inits (see
:mod:`jaxconcepts.ops.nmf_loop` and :mod:`jaxconcepts.ops.nmf_init`).
Faster solvers reach the same objective in fewer reads of the matrix:
accelerated MU and HALS (``solver="amu"`` / ``"hals"``, Gillis & Glineur
2012) and HALS with extrapolation (``"ehals"``, after Ang & Gillis 2019); the
default ``"mu"`` is the scikit-learn-equal mode.

Entry points, each usable eagerly, under ``jax.jit`` and under ``jax.vmap``:

* :func:`nmf` -- one matrix.
* :func:`nmf_batched` -- a stack of matrices (one per class) with a valid-row
  count or a row mask per matrix, built on ``vmap``; with ``mesh=`` the stack
  is split over the mesh's devices (padded with copies of its last matrix).
* :func:`transform` -- ``w`` for a fixed ``h``, as scikit-learn's ``transform``.

Checks. Shapes, ``n_components`` and the static options (``init``,
``max_iter``, ``tol``, ...) are always checked; they must be Python values.
Array values (finite, non-negative) are checked when the arrays are concrete,
and not under ``jit`` / ``vmap``, where they are unknown.

Reading fewer bytes: all-zero rows of ``a`` (pixels whose attribution was
negative) do not change ``h`` or the other rows of ``w``: after the first
``w`` update their ``w`` rows are exactly zero. With concrete inputs, the
entry points can drop them before iterating (``skip_zero_rows``) and
account for them exactly in the initial error. For ``"mu"`` the result is the
same; for the accelerated solvers the inner loops' stopping rule also sees the
zero rows' first move, so the iterates differ while reaching the same error.
Dropping them costs a pass over ``a``, so by default it is done only for a fit
expected to be long (`nmf_loop.expects_long_fit`). Under ``jit`` / ``vmap``
the rows are not known, and the full matrix is iterated.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np

from jaxconcepts.ops import nmf_loop
from jaxconcepts.ops import sharding as sharding_ops
from jaxconcepts.ops.nmf_init import INITS, count_rows, initialize, mask_rows, scaled_stats
from jaxconcepts.utils import as_key, check_int, is_tracer


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
# Jitted cores (no checks).


@functools.partial(
    jax.jit, static_argnames=("n_components", "init", "checked", "form"))
def _nmf_core(a, key, row_mask, w_init, h_init, max_iter, tol, *,
              n_components, init, checked, form):
  a = mask_rows(a, row_mask)
  stats = scaled_stats(a, count_rows(a, row_mask))  # shared by the init and the fit
  w0, h0 = initialize(a, n_components, init, key, row_mask, w_init, h_init, stats)
  return NMFResult(*nmf_loop.fit(
      a, w0, h0, row_mask, None, stats, max_iter, tol, checked=checked, form=form))


def _nmf(a, key, row_mask, w_init, h_init, *, k, init, max_iter, tol, form):
  """The full-matrix fit: traced or concrete, rows outside row_mask ignored."""
  chex.assert_rank(a, 2)
  max_iter, tol, checked = nmf_loop.loop_args(max_iter, tol, a.dtype)
  return _nmf_core(a, key, row_mask, w_init, h_init, max_iter, tol,
                   n_components=k, init=init, checked=checked, form=form)


@functools.partial(jax.jit, static_argnames=("checked", "form"))
def _fit_compacted(a_c, w0_c, h0, row_mask_c, omitted_gram, stats, max_iter, tol, *,
                   checked, form):
  return NMFResult(*nmf_loop.fit(
      a_c, w0_c, h0, row_mask_c, omitted_gram, stats, max_iter, tol, checked=checked,
      form=form))


@jax.jit
def _stats(a):
  return scaled_stats(a, jnp.asarray(a.shape[0], a.dtype))


@jax.jit
def _nonzero_rows(a):
  return jnp.any(a != 0, axis=-1)


def _rows_to_keep(a: jax.Array, skip_zero_rows: bool) -> np.ndarray | None:
  """The (..., m) bool mask of nonzero rows when skipping zero rows applies.

  It applies to a concrete ``a`` (m, n) or stack (B, m, n) with some all-zero
  rows, unless every row is zero (then there is nothing to fit); for a stack,
  when even the fullest matrix has a zero row. Otherwise None.
  """
  if not skip_zero_rows or is_tracer(a):
    return None
  keep = np.asarray(jax.device_get(_nonzero_rows(a)))
  n_keep = int(keep.sum(axis=-1).max())
  return keep if 0 < n_keep < a.shape[-2] else None


# ---------------------------------------------------------------------------
# Input checks. Values only for concrete arrays.


def _check_ndim(x: Any, ndim: int, what: str) -> Any:
  """x (as an array if it has no ndim) if it has `ndim` axes."""
  if not hasattr(x, "ndim"):
    x = np.asarray(x)
  if x.ndim != ndim:
    raise ValueError(f"a must be a {what}, got shape {x.shape}.")
  return x


def _as_float_array(x: ArrayLike, name: str) -> jax.Array:
  """x as a float array (float32 unless it is float32 / float64 already)."""
  x = jnp.asarray(x)
  if jnp.issubdtype(x.dtype, jnp.complexfloating) or x.dtype == bool:
    raise TypeError(f"{name} must be a real numeric array, got dtype {x.dtype}.")
  if not jnp.issubdtype(x.dtype, jnp.floating) or x.dtype in (
      jnp.float16, jnp.bfloat16):
    x = x.astype(jnp.float32)
  return x


@functools.partial(jax.jit, static_argnames="per_matrix")
def _min_max(x, per_matrix=False):
  """(min, max) of x, over the last two axes if per_matrix, in one pass.

  XLA's min and max propagate NaN, so the two also say whether x is finite
  (an isfinite reduction beside them read x at half the speed).
  """
  axes = (-2, -1) if per_matrix else None
  return jnp.min(x, axis=axes), jnp.max(x, axis=axes)


def _check_values(x: jax.Array, name: str, per_matrix: bool = False) -> np.ndarray | None:
  """Non-empty always; finite and non-negative if x is concrete.

  Returns:
    x's largest entry (per matrix of a (B, m, n) stack if ``per_matrix``) as
    NumPy, for the range scaling; None for a traced x.
  """
  if x.size == 0:
    raise ValueError(f"{name} is empty (shape {x.shape}).")
  if is_tracer(x):
    return None
  xmin, xmax = jax.device_get(_min_max(x, per_matrix))
  if not (np.all(np.isfinite(xmin)) and np.all(np.isfinite(xmax))):
    raise ValueError(f"{name} contains NaN or Inf; expected finite values.")
  xmin = np.min(xmin)
  if xmin < 0:
    raise ValueError(
        f"{name} has negative entries (min {float(xmin):.3g}); NMF needs a "
        "non-negative matrix.")
  return xmax


def _check_options(n_components, init, max_iter, tol, min_dim, shape_msg):
  """The static arguments: Python values in range."""
  if isinstance(n_components, bool) or not isinstance(
      n_components, (int, np.integer)):
    raise TypeError(
        f"n_components must be an int, got {type(n_components).__name__}.")
  if n_components < 1:
    raise ValueError(f"n_components must be >= 1, got {n_components}.")
  if n_components > min_dim:
    raise ValueError(
        f"n_components={n_components} exceeds min(m, n)={min_dim} {shape_msg}.")
  if init not in INITS:
    raise ValueError(f"init must be one of {INITS}, got {init!r}.")
  check_int(max_iter, "max_iter")
  if is_tracer(tol):
    raise TypeError("tol must be a Python float (0 disables the test).")
  if not np.isfinite(tol) or tol < 0:
    raise ValueError(f"tol must be a finite float >= 0, got {tol!r}.")


def _check_custom(init, w_init, h_init, w_shape, h_shape, dtype):
  """(w_init, h_init) as arrays of `dtype` for init="custom", else (None, None)."""
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
  _check_values(w_init, "w_init")
  _check_values(h_init, "h_init")
  return w_init, h_init


# ---------------------------------------------------------------------------
# One matrix.


# Range. Products of the updates overflow float32 for entries near its maximum,
# and XLA flushes subnormal inputs to zero (a subnormal matrix would come back
# as a "perfect" zero fit). A concrete `a` outside [2**-60, 2**60] is therefore
# scaled by an exact power of two on the host (numpy keeps subnormals), fitted,
# and `w` scaled back: the full finite float32 range works. A traced `a` must
# lie in that range already (its values cannot be inspected under jit).
_SAFE_EXPONENT = 60


def _exponent_of(amax: float, matrix: Callable[[], jax.Array]) -> int:
  """e such that a * 2**e has its largest entry in [0.5, 1), or 0 if a needs no scaling,
  for the matrix a whose largest entry on the device is `amax`.

  `matrix()` gives the matrix; it is called (a copy to the host) only when
  `amax` is 0, to look for subnormal entries.
  """
  if amax == 0.0:
    amax = float(np.max(np.asarray(matrix())))  # subnormal entries read as zero on the device
  if amax == 0.0 or 2.0 ** -_SAFE_EXPONENT <= amax <= 2.0 ** _SAFE_EXPONENT:
    return 0
  return -int(np.frexp(amax)[1])


def _ldexp(x: ArrayLike, e: int | np.ndarray) -> jax.Array:
  """x * 2**e, exactly, on the host (`e` broadcasts, e.g. one exponent per matrix)."""
  x = np.asarray(x)
  return jnp.asarray(np.ldexp(x, e).astype(x.dtype))


def _unscaled(res: NMFResult, e: int) -> NMFResult:
  """Undoes `_exponent_of`'s scaling on w; a non-finite concrete result is an error."""
  if e:
    res = res._replace(w=_ldexp(res.w, -e))
  if not is_tracer(res.w) and not bool(jax.device_get(
      jnp.all(jnp.isfinite(res.w)) & jnp.all(jnp.isfinite(res.h)))):
    raise ValueError("the NMF fit is not finite (NaN or Inf in w or h); check the scale of a")
  return res


def _choose_passes(k, transpose_a, skip_zero_rows, solver, max_iter, tol
                   ) -> tuple[nmf_loop.Form, bool]:
  """The loop's form and whether to drop zero rows: by default, the passes over ``a``
  (transposed copy, zero-row compaction) only for a long fit (`nmf_loop.expects_long_fit`)."""
  if skip_zero_rows is not None and not isinstance(skip_zero_rows, (bool, np.bool_)):
    raise TypeError(f"skip_zero_rows must be None or a bool, got {skip_zero_rows!r}.")
  long_fit = nmf_loop.expects_long_fit(solver, max_iter, tol)
  form = nmf_loop.choose_form(k, transpose_a, solver, long_fit)
  return form, long_fit if skip_zero_rows is None else bool(skip_zero_rows)


def nmf(a: ArrayLike, n_components: int, *, init: str = "nndsvda",
        max_iter: int = 200, tol: float = 1e-4, key: Any = None,
        w_init: ArrayLike | None = None, h_init: ArrayLike | None = None,
        skip_zero_rows: bool | None = None,
        transpose_a: bool | None = None, solver: str = "mu") -> NMFResult:
  """Factorises a non-negative matrix: ``a ~= w @ h`` (Frobenius loss).

  ``solver="mu"`` (default): multiplicative updates as scikit-learn's
  ``NMF(solver="mu", beta_loss="frobenius")`` with no regularisation.
  ``"amu"`` / ``"hals"``: accelerated MU / hierarchical ALS (Gillis & Glineur
  2012), the same objective reached in fewer reads of ``a``; ``"ehals"``: HALS
  with extrapolation, fewer still. Works under
  ``jit`` and ``vmap`` (``a``, ``key``, ``w_init``, ``h_init`` may be traced);
  all other arguments are Python values.

  Args:
    a: (m, n) non-negative, finite array (float32 unless it is float64).
    n_components: k, 1 <= k <= min(m, n).
    init: ``"nndsvda"`` (default, as scikit-learn's), ``"random"`` or
      ``"custom"`` (then ``w_init`` (m, k) and ``h_init`` (k, n)).
    max_iter: maximum number of iterations, >= 1.
    tol: stop when the error dropped by less than ``tol * error_at_init`` over
      the last 10 iterations (checked every 10). 0: run ``max_iter``.
    key: PRNG key or int seed for ``"random"`` and for the randomized SVD of
      ``"nndsvda"``; None means seed 0.
    w_init: (m, k) initial w for ``init="custom"``.
    h_init: (k, n) initial h for ``init="custom"``.
    skip_zero_rows: drop all-zero rows of ``a`` before iterating (fewer bytes
      read per iteration, one pass over ``a`` to find them). Only for a
      concrete ``a``. None (default): only when the fit is expected to run at
      least `nmf_loop.LONG_FIT_ITERATIONS` iterations
      (`nmf_loop.expects_long_fit`: ``"mu"``, or any solver with ``tol=0``).
    transpose_a: keep a row-major copy of ``a.T`` for the ``w.T @ a`` product;
      None: the backend's choice (`ops.backend.nmf_transpose_a`) for a long
      fit as above, no copy for a short one.
    solver: ``"mu"``, ``"amu"``, ``"hals"`` or ``"ehals"`` (`nmf_loop.SOLVERS`);
      an iteration of the last three is one outer iteration (each factor
      updated from one product with ``a``, several inner steps); ``"ehals"``
      extrapolates each iterate along its last step (fewer outer iterations)
      and returns the best iterate it saw.

  Returns:
    :class:`NMFResult` ``(w, h, n_iter, rel_error)``.

  Raises:
    ValueError: ``a`` not 2-D or empty; concrete ``a`` with NaN / Inf or
      negative entries; ``n_components`` outside [1, min(m, n)]; bad ``init``
      / ``max_iter`` / ``tol`` / custom factors / ``solver``.
    TypeError: non-int ``n_components``, traced ``tol``, bad ``transpose_a``.
  """
  a = _check_ndim(a, 2, "2-D (m, n) matrix")
  m, n = a.shape
  _check_options(n_components, init, max_iter, tol, min(m, n),
                 f"for a of shape {(m, n)}")
  k = int(n_components)
  form, skip_zero_rows = _choose_passes(k, transpose_a, skip_zero_rows, solver, max_iter, tol)
  a = _as_float_array(a, "a")
  w_init, h_init = _check_custom(init, w_init, h_init, (m, k), (k, n), a.dtype)
  amax = _check_values(a, "a")
  e = 0 if amax is None else _exponent_of(float(amax), lambda: a)
  if e:
    a = _ldexp(a, e)
    w_init = None if w_init is None else _ldexp(w_init, e)
  return _unscaled(_nmf_scaled(a, k, init=init, key=key, w_init=w_init, h_init=h_init,
                               max_iter=max_iter, tol=tol, form=form,
                               skip_zero_rows=skip_zero_rows), e)


def _nmf_scaled(a, k, *, init, key, w_init, h_init, max_iter, tol, form, skip_zero_rows):
  """`nmf` on a checked matrix `a` whose entries are in the safe range."""
  key = as_key(key)
  max_iter, tol = int(max_iter), float(tol)
  nonzero = _rows_to_keep(a, skip_zero_rows)
  if nonzero is not None:
    return _nmf_skipping(a, k, nonzero, init=init, key=key, w_init=w_init,
                         h_init=h_init, max_iter=max_iter, tol=tol, form=form)
  return _nmf(a, key, None, w_init, h_init, k=k, init=init, max_iter=max_iter,
              tol=tol, form=form)


def _nmf_skipping(a, k, nonzero, *, init, key, w_init, h_init, max_iter, tol,
                  form):
  """nmf on the nonzero rows of a, exactly equal to nmf on all of a."""
  stats = _stats(a)
  w0, h0 = initialize(a, k, init, key, None, w_init, h_init, stats)
  keep = np.flatnonzero(nonzero)
  drop = np.flatnonzero(~nonzero)
  w0_drop = w0[drop]
  max_iter, tol, checked = nmf_loop.loop_args(max_iter, tol, a.dtype)
  res = _fit_compacted(a[keep], w0[keep], h0, None, w0_drop.T @ w0_drop, stats,
                       max_iter, tol, checked=checked, form=form)
  w = jnp.zeros((a.shape[0], k), a.dtype).at[keep].set(res.w)
  return res._replace(w=w)


# ---------------------------------------------------------------------------
# A stack of matrices.


def _batch_row_mask(n_valid, row_mask, bsz: int, m: int):
  """The (B, m) bool row mask from n_valid or row_mask (None: all rows)."""
  if n_valid is not None and row_mask is not None:
    raise ValueError("Give n_valid or row_mask, not both.")
  if n_valid is not None:
    n_valid = jnp.asarray(n_valid)
    if n_valid.shape != (bsz,):
      raise ValueError(f"n_valid must have shape ({bsz},), got {n_valid.shape}.")
    return jnp.arange(m)[None, :] < n_valid[:, None]
  if row_mask is not None:
    row_mask = jnp.asarray(row_mask)
    if row_mask.shape != (bsz, m) or row_mask.dtype != bool:
      raise ValueError(
          f"row_mask must be a bool array of shape {(bsz, m)}, got "
          f"{row_mask.dtype} {row_mask.shape}.")
  return row_mask


def _fewest_rows(row_mask, m: int) -> int:
  """Fewest valid rows of any matrix (m when unknown: no mask, or traced)."""
  if row_mask is None or is_tracer(row_mask):
    return m
  return int(np.asarray(jax.device_get(jnp.sum(row_mask, axis=1))).min())


def _batch_keys(key, bsz: int) -> jax.Array:
  """One key or int seed (split into bsz), or a batch of bsz keys."""
  if key is None or isinstance(key, (int, np.integer)):
    return jax.random.split(as_key(key), bsz)
  key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
  typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
  if key.ndim == (0 if typed else 1):
    return jax.random.split(key, bsz)
  if key.shape[0] != bsz or key.ndim != (1 if typed else 2):
    raise ValueError(
        f"key must be one PRNG key or a batch of {bsz} keys, got shape "
        f"{key.shape}.")
  return key


def nmf_batched(a: ArrayLike, n_components: int, *,
                n_valid: ArrayLike | None = None,
                row_mask: ArrayLike | None = None, init: str = "nndsvda",
                max_iter: int = 200, tol: float = 1e-4, key: Any = None,
                skip_zero_rows: bool | None = None,
                transpose_a: bool | None = None,
                solver: str = "mu", mesh: Any = None) -> NMFResult:
  """NMF of a stack of matrices (one per class), batched with ``vmap``.

  Classes have different numbers of pixel vectors: pad them to a common m and
  say which rows are real with ``n_valid`` (the first ``n_valid[b]`` rows of
  matrix b) or ``row_mask``. Rows outside are ignored (their ``w`` rows are
  zero). Matrix b's result equals ``nmf(a[b][rows_b], ...)`` with key
  ``keys[b]`` (same init, same iterations; equal up to float rounding). Each
  matrix stops at its own convergence test. Works under ``jit`` and ``vmap``
  as :func:`nmf` does.

  Args:
    a: (B, m, n) non-negative, finite.
    n_components: k, 1 <= k <= min(valid rows of every matrix, n).
    n_valid: optional (B,) ints in [k, m].
    row_mask: optional (B, m) bool (alternative to n_valid).
    init: ``"nndsvda"`` or ``"random"``.
    max_iter, tol, skip_zero_rows, transpose_a, solver: as :func:`nmf`
      (``transpose_a`` copies every matrix).
    key: one PRNG key / int seed (split into B keys) or a (B,) batch of keys.
    mesh: a `jax.sharding.Mesh` to split the batch over (padded to a multiple
      of its devices with copies of the last matrix, dropped after; matrix b's
      result does not change). None: as placed (one device).

  Returns:
    :class:`NMFResult` with a leading batch axis: w (B, m, k), h (B, k, n),
    n_iter (B,), rel_error (B,).

  Raises:
    ValueError / TypeError: as :func:`nmf`, plus a bad ``n_valid``,
      ``row_mask`` or ``key`` batch, or ``init="custom"``.
  """
  a = _check_ndim(a, 3, "3-D (batch, m, n) stack of matrices")
  bsz, m, n = a.shape
  if bsz == 0:
    raise ValueError("a is an empty stack (batch size 0).")
  row_mask = _batch_row_mask(n_valid, row_mask, bsz, m)
  rows_min = _fewest_rows(row_mask, m)
  _check_options(n_components, init, max_iter, tol, min(rows_min, n),
                 f"(fewest valid rows {rows_min}, n = {n})")
  k = int(n_components)
  form, skip_zero_rows = _choose_passes(k, transpose_a, skip_zero_rows, solver, max_iter, tol)
  if init == "custom":
    raise ValueError('nmf_batched supports init "nndsvda" and "random".')
  a = _as_float_array(a, "a")
  if row_mask is not None:
    a = jnp.where(row_mask[..., None], a, 0)
  # The check's read also gives every matrix's maximum (no per-matrix slices).
  maxima = _check_values(a, "a", per_matrix=True)
  e = (np.zeros((bsz,), int) if maxima is None else np.array(
      [_exponent_of(float(mx), lambda b=b: a[b]) for b, mx in enumerate(maxima)], int))
  if e.any():
    a = _ldexp(a, e[:, None, None])
  res = _batched_scaled(a, k, row_mask, _batch_keys(key, bsz), init=init,
                        max_iter=int(max_iter), tol=float(tol), form=form,
                        skip_zero_rows=skip_zero_rows, mesh=mesh)
  if e.any():
    res = res._replace(w=_ldexp(res.w, -e[:, None, None]))
  return _unscaled(res, 0)


def _by_rows(fn, mesh, whole, rows):
  """``fn(*rows, *whole)`` on the batch, or on each device's block of it over `mesh`."""
  if mesh is None:
    return fn(*rows, *whole)
  return sharding_ops.row_map(lambda w, r: fn(*r, *w), mesh, whole, rows, rows[0].shape[0])


def _batched_scaled(a, k, row_mask, keys, *, init, max_iter, tol, form, skip_zero_rows,
                    mesh=None):
  """`nmf_batched` on a checked stack whose matrices are in the safe range."""
  keep = _rows_to_keep(a, skip_zero_rows)
  if keep is not None:
    return _batched_skipping(a, k, keep, row_mask, keys, init=init,
                             max_iter=max_iter, tol=tol, form=form, mesh=mesh)
  fit = functools.partial(_nmf, w_init=None, h_init=None, k=k, init=init,
                          max_iter=max_iter, tol=tol, form=form)
  if row_mask is None:
    return _by_rows(jax.vmap(lambda x, kk: fit(x, kk, None)), mesh, (), (a, keys))
  return _by_rows(jax.vmap(fit), mesh, (), (a, keys, row_mask))


def _batched_skipping(a, k, keep, row_mask, keys, *, init, max_iter, tol,
                      form, mesh=None):
  """nmf_batched on the nonzero rows only; equal to the dense computation.

  The row indices are built on the host; the init, the compaction, the fit and
  the scatter back run as one jitted program (:func:`_skipping_core`): run op by
  op, their dispatches cost more than the fit's few iterations on W1.
  """
  bsz, m, _ = a.shape
  msk = (jnp.ones((bsz, m), bool) if row_mask is None else row_mask)
  counts = keep.sum(axis=1)
  m_c = int(counts.max())
  idx = np.full((bsz, m_c), m, np.int32)  # m = out of range -> zero rows
  for b in range(bsz):
    rows = np.flatnonzero(keep[b])
    idx[b, :rows.size] = rows
  max_iter, tol, checked = nmf_loop.loop_args(max_iter, tol, a.dtype)
  core = functools.partial(_skipping_core, k=k, init=init, checked=checked, form=form)
  return _by_rows(core, mesh, (max_iter, tol),
                  (a, jnp.asarray(idx), jnp.asarray(counts), keys, msk, jnp.asarray(keep)))


@functools.partial(jax.jit, static_argnames=("k", "init", "checked", "form"))
def _skipping_core(a, idx, counts, keys, msk, keep, max_iter, tol, *, k, init, checked,
                   form):
  """Init, compaction to the rows ``idx`` (B, m_c), fit, and w scattered back.

  a (B, m, n); counts (B,) kept rows per matrix; keys (B,) PRNG keys; msk and
  keep (B, m) bool: the rows that belong to each matrix and its nonzero ones.
  """
  m = a.shape[1]
  stats = jax.vmap(lambda x, mm: scaled_stats(x, count_rows(x, mm)))(a, msk)
  w0, h0 = jax.vmap(lambda x, kk, mm, st: initialize(x, k, init, kk, mm, stats=st))(
      a, keys, msk, stats)
  take = jax.vmap(lambda x, i: jnp.take(x, i, axis=0, mode="fill", fill_value=0))
  a_c, w0_c = take(a, idx), take(w0, idx)
  mask_c = jnp.arange(idx.shape[1])[None, :] < counts[:, None]
  w0_d = jnp.where(jnp.logical_and(msk, jnp.logical_not(keep))[..., None], w0, 0)
  gram = jnp.einsum("bmk,bml->bkl", w0_d, w0_d)

  fit = functools.partial(_fit_compacted, checked=checked, form=form)
  res = jax.vmap(fit, in_axes=(0, 0, 0, 0, 0, 0, None, None))(
      a_c, w0_c, h0, mask_c, gram, stats, max_iter, tol)
  w = jax.vmap(lambda i, wc: jnp.zeros((m, k), a.dtype).at[i].set(
      wc, mode="drop"))(idx, res.w)
  return res._replace(w=w)


# ---------------------------------------------------------------------------
# Fixed components.


def transform(a: ArrayLike, h: ArrayLike, *, max_iter: int = 200,
              tol: float = 1e-4) -> jax.Array:
  """``w`` for fixed components ``h``, as scikit-learn's ``NMF.transform``.

  scikit-learn's ``mu`` solver with ``update_H=False``: ``w`` starts at
  ``sqrt(mean(a) / k)`` and is updated by multiplicative updates, with the
  same convergence test as :func:`nmf`. Works under ``jit`` and ``vmap``
  (``a`` and ``h`` may be traced; values are checked when concrete).

  Args:
    a: (m, n) non-negative, finite.
    h: (k, n) non-negative components (e.g. ``nmf(...).h``).
    max_iter: maximum number of iterations, >= 1.
    tol: tolerance of the convergence test (0: run ``max_iter``).

  Returns:
    (m, k) non-negative ``w``, a's float dtype.

  Raises:
    ValueError: bad shapes, concrete values that are NaN / Inf or negative,
      bad ``max_iter`` / ``tol``.
  """
  a = _check_ndim(a, 2, "2-D (m, n) matrix")
  if not hasattr(h, "ndim"):
    h = np.asarray(h)
  if h.ndim != 2 or h.shape[1] != a.shape[1]:
    raise ValueError(
        f"h must be (k, n) with n = {a.shape[1]} (a's columns), got shape "
        f"{h.shape}.")
  _check_options(h.shape[0], "custom", max_iter, tol, max(h.shape[0], 1), "")
  a = _as_float_array(a, "a")
  h = _as_float_array(h, "h").astype(a.dtype)
  _check_values(a, "a")
  _check_values(h, "h")
  max_iter, tol, checked = nmf_loop.loop_args(int(max_iter), float(tol),
                                              a.dtype)
  columns = nmf_loop.choose_form(h.shape[0]).dot_columns
  return nmf_loop.fit_w(a, h, max_iter, tol, checked=checked, columns=columns)
