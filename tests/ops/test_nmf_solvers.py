"""Tests for the faster NMF solvers of jaxconcepts.ops.nmf: accelerated MU, HALS, and
HALS with extrapolation (``ehals``).

Each must reach what scikit-learn's ``mu`` reaches in 200 iterations (from the same
init), in fewer iterations; decrease the objective at every outer iteration; keep the
factors non-negative; and work under jit / vmap / nmf_batched as ``mu`` does.
"""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.decomposition import NMF

from jaxconcepts.ops import backend
from jaxconcepts.ops import nmf as nmf_lib
from jaxconcepts.ops import nmf_init
from jaxconcepts.ops import nmf_loop

K = 6
FAST = ("amu", "hals", "ehals")


def _w1_like(m=600, n=128, rank=16, seed=0, zero_row_frac=0.2):
  """W1's recipe (DESIGN section 6) at a small size: relu(U V + 0.1 noise), rows zeroed."""
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))
  a = np.maximum(a + 0.1 * rng.standard_normal((m, n)), 0).astype(np.float32)
  a[rng.random(m) < zero_row_frac] = 0
  return a


def _random_init(a, seed=1):
  w0, h0 = nmf_init.initialize(jnp.asarray(a), K, "random", jax.random.key(seed))
  return np.asarray(w0), np.asarray(h0)


def _rel_error(a, w, h):
  a, w, h = (np.asarray(x, np.float64) for x in (a, w, h))
  return np.linalg.norm(a - w @ h) / np.linalg.norm(a)


# Outer iterations (each reads a twice, as one mu iteration) within which each solver
# must reach mu's 200-iteration error on the data of the tests below (measured: amu 79,
# hals 30, ehals 12; on W1's full size all need far fewer, see benchmarks/README.md).
MOST_ITERATIONS = {"amu": 100, "hals": 40, "ehals": 15}


@pytest.mark.reference
@pytest.mark.parametrize("solver", FAST)
def test_reaches_sklearn_mu_200_iteration_error_in_fewer_iterations(solver):
  a = _w1_like()
  w0, h0 = _random_init(a)
  model = NMF(K, solver="mu", init="custom", max_iter=200, tol=0)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    w_sk = model.fit_transform(a.astype(np.float64), W=w0.astype(np.float64).copy(),
                               H=h0.astype(np.float64).copy())
  target = _rel_error(a, w_sk, model.components_)
  errs = {}
  for it in sorted({*range(10, MOST_ITERATIONS[solver], 10), MOST_ITERATIONS[solver]}):
    res = nmf_lib.nmf(a, K, init="custom", w_init=w0, h_init=h0, max_iter=it, tol=0,
                      solver=solver)
    errs[it] = _rel_error(a, res.w, res.h)
    np.testing.assert_allclose(float(res.rel_error), errs[it], rtol=1e-4)
  assert errs[MOST_ITERATIONS[solver]] <= target * (1 + 1e-6), (solver, errs, target)


@pytest.mark.parametrize("solver", FAST)
def test_error_decreases_at_every_outer_iteration_and_factors_stay_non_negative(solver):
  a = _w1_like(seed=2)
  errs = []
  for it in range(1, 31):  # max_iter is traced in the core: one compile
    res = nmf_lib.nmf(a, K, init="random", key=3, max_iter=it, tol=0,
                      skip_zero_rows=False, solver=solver)
    assert float(jnp.min(res.w)) >= 0 and float(jnp.min(res.h)) >= 0
    errs.append(float(res.rel_error))
  assert np.all(np.diff(errs) <= 1e-6 * errs[0]), errs
  assert errs[-1] < errs[0]


@pytest.mark.parametrize("solver", FAST)
def test_batched_equals_single_calls_and_padding_rows_stay_zero(solver):
  mats = [_w1_like(m=m, seed=s) for s, m in ((4, 200), (5, 130))]
  stack = np.zeros((2, 200, 128), np.float32)
  for i, x in enumerate(mats):
    stack[i, :x.shape[0]] = x
  stack[1, 130:] = 5.0  # padding must be ignored
  keys = jax.random.split(jax.random.key(7), 2)
  res = nmf_lib.nmf_batched(stack, K, n_valid=[200, 130], init="random", key=keys,
                            tol=1e-4, solver=solver)
  assert float(jnp.max(jnp.abs(res.w[1, 130:]))) == 0
  for i, x in enumerate(mats):
    one = nmf_lib.nmf(x, K, init="random", key=keys[i], tol=1e-4, solver=solver)
    assert int(res.n_iter[i]) == int(one.n_iter)
    np.testing.assert_allclose(float(res.rel_error[i]), float(one.rel_error), rtol=1e-4)


@pytest.mark.parametrize("solver", FAST)
def test_vmap_and_jit_equal_eager_and_zero_rows_give_the_dense_fit(solver):
  a = _w1_like(m=300, seed=6)
  kw = dict(init="random", key=2, max_iter=25, tol=0, solver=solver)
  eager = nmf_lib.nmf(a, K, skip_zero_rows=True, **kw)
  dense = nmf_lib.nmf(a, K, skip_zero_rows=False, **kw)
  jitted = jax.jit(lambda x: nmf_lib.nmf(x, K, **kw))(a)
  vmapped = jax.vmap(lambda x: nmf_lib.nmf(x, K, **kw))(jnp.stack([a, a]))
  for other in (dense, jitted):
    np.testing.assert_allclose(float(other.rel_error), float(eager.rel_error), rtol=1e-4)
  np.testing.assert_allclose(np.asarray(vmapped.rel_error), float(eager.rel_error),
                             rtol=1e-4)
  assert eager.w.dtype == jnp.float32 and eager.h.dtype == jnp.float32


def test_inner_step_bound_follows_gillis_glineur():
  # rho_W = 1 + (m n + n k) / (m (k + 1)); at most floor(1 + alpha rho) inner steps.
  assert nmf_loop.inner_steps("amu", 100, 10, 4) == int(1 + 2 * (1 + (1000 + 40) / 500))
  assert nmf_loop.inner_steps("hals", 10, 100, 4) == int(1 + 0.5 * (1 + (1000 + 400) / 50))


def test_unknown_solver_is_a_clear_error_before_any_work():
  a = _w1_like(m=40, n=16)
  with pytest.raises(ValueError, match=r"solver must be one of .*'cd'"):
    nmf_lib.nmf(a, 3, solver="cd")
  with pytest.raises(ValueError, match=r"solver must be one of"):
    nmf_lib.nmf_batched(a[None], 3, solver="HALS")


@pytest.mark.parametrize("solver, max_iter, tol, long_fit", [
    ("mu", 200, 1e-4, True), ("mu", 49, 0.0, False), ("ehals", 200, 1e-4, False),
    ("hals", 10, 0.0, False), ("ehals", 50, 0.0, True), ("amu", 400, 0.0, True)])
def test_per_fit_passes_over_a_only_for_long_fits(solver, max_iter, tol, long_fit):
  # The zero-row compaction and the transposed copy each cost a pass over a; by default
  # they are made only when the fit may run LONG_FIT_ITERATIONS or more iterations.
  assert nmf_loop.expects_long_fit(solver, max_iter, tol) is long_fit
  form = nmf_loop.choose_form(K, None, solver, long_fit)
  assert form.transpose_a is (long_fit and backend.nmf_transpose_a(None))
  assert nmf_loop.choose_form(K, True, solver, long_fit).transpose_a is True
  assert nmf_loop.choose_form(K, False, solver, long_fit).transpose_a is False


@pytest.mark.parametrize("solver", FAST)
def test_default_short_fit_equals_the_dense_fit(solver):
  # A short fit (the default skip_zero_rows=None, tol 0, 20 iterations) iterates the
  # full matrix, so it equals skip_zero_rows=False, transpose_a=False.
  a = _w1_like(m=300, seed=7)
  kw = dict(init="random", key=3, max_iter=20, tol=0, solver=solver)
  default = nmf_lib.nmf(a, K, **kw)
  dense = nmf_lib.nmf(a, K, skip_zero_rows=False, transpose_a=False, **kw)
  np.testing.assert_array_equal(np.asarray(default.w), np.asarray(dense.w))
  np.testing.assert_array_equal(np.asarray(default.h), np.asarray(dense.h))


def test_a_non_bool_skip_zero_rows_is_a_clear_error_before_any_work():
  a = np.ones((8, 6), np.float32)
  with pytest.raises(TypeError, match=r"skip_zero_rows must be None or a bool, got 'no'"):
    nmf_lib.nmf(a, 2, skip_zero_rows="no")
  with pytest.raises(TypeError, match=r"skip_zero_rows must be None or a bool, got 1"):
    nmf_lib.nmf_batched(a[None], 2, skip_zero_rows=1)
