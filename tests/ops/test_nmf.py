"""Tests for jaxconcepts.ops.nmf: equality with scikit-learn, jit / vmap, numerics, bad input."""
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.decomposition import NMF

from jaxconcepts.ops import nmf as nmf_lib
from jaxconcepts.ops import nmf_init

K = 4


def _matrix(m=150, n=48, rank=6, seed=0, zero_rows=(), zero_cols=()):
  """relu(U V + noise), float32, with optional all-zero rows / columns."""
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))
  a = np.maximum(a + 0.1 * rng.standard_normal((m, n)), 0).astype(np.float32)
  a[list(zero_rows)] = 0
  a[:, list(zero_cols)] = 0
  return a


def _objective(a, w, h):
  """scikit-learn's Frobenius objective 0.5 ||a - w h||^2, in float64."""
  a, w, h = (np.asarray(x, np.float64) for x in (a, w, h))
  return 0.5 * np.sum((a - w @ h) ** 2)


def _sklearn_mu(a, w0, h0, max_iter, tol):
  """scikit-learn NMF(solver="mu", init="custom") in float64."""
  model = NMF(K, solver="mu", init="custom", max_iter=max_iter, tol=tol)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    w = model.fit_transform(np.asarray(a, np.float64),
                            W=np.asarray(w0, np.float64).copy(),
                            H=np.asarray(h0, np.float64).copy())
  return model, w


def _random_init(a, seed=1):
  w0, h0 = nmf_init.initialize(jnp.asarray(a), K, "random", jax.random.key(seed))
  return np.asarray(w0), np.asarray(h0)


# ---------------------------------------------------------------------------
# Equality with scikit-learn.


@pytest.mark.parametrize("transpose_a", [True, False],
                         ids=["two_product_transposed", "two_product"])
def test_objective_equals_sklearn_mu_after_fixed_iterations(transpose_a):
  a = _matrix()
  w0, h0 = _random_init(a)
  model, w_sk = _sklearn_mu(a, w0, h0, max_iter=100, tol=0)
  res = nmf_lib.nmf(a, K, init="custom", w_init=w0, h_init=h0, max_iter=100,
                    tol=0, transpose_a=transpose_a)
  obj_sk = _objective(a, w_sk, model.components_)
  obj = _objective(a, res.w, res.h)
  assert int(res.n_iter) == 100
  np.testing.assert_allclose(obj, obj_sk, rtol=1e-4)
  np.testing.assert_allclose(
      float(res.rel_error),
      model.reconstruction_err_ / np.linalg.norm(a.astype(np.float64)),
      rtol=1e-4)


@pytest.mark.parametrize(
    "tol,transpose_a", [(1e-3, True), (1e-3, False), (1e-4, None)],
    ids=["two_product_transposed", "two_product", "backend_default"])
def test_convergence_stops_at_sklearn_iteration(tol, transpose_a):
  a = _matrix(seed=3)
  w0, h0 = _random_init(a, seed=4)
  model, w_sk = _sklearn_mu(a, w0, h0, max_iter=200, tol=tol)
  res = nmf_lib.nmf(a, K, init="custom", w_init=w0, h_init=h0, max_iter=200,
                    tol=tol, transpose_a=transpose_a)
  assert int(res.n_iter) == model.n_iter_
  np.testing.assert_allclose(_objective(a, res.w, res.h),
                             _objective(a, w_sk, model.components_), rtol=1e-4)


def test_max_iter_not_a_multiple_of_check_interval():
  a = _matrix(seed=5)
  w0, h0 = _random_init(a)
  model, w_sk = _sklearn_mu(a, w0, h0, max_iter=23, tol=1e-12)
  res = nmf_lib.nmf(a, K, init="custom", w_init=w0, h_init=h0, max_iter=23,
                    tol=1e-12)
  assert int(res.n_iter) == model.n_iter_ == 23
  np.testing.assert_allclose(_objective(a, res.w, res.h),
                             _objective(a, w_sk, model.components_), rtol=1e-4)


def test_default_nndsvda_fit_equals_sklearn_default_init():
  a = _matrix(seed=7)
  model = NMF(K, solver="mu", init="nndsvda", max_iter=200, tol=1e-4)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    w_sk = model.fit_transform(a.astype(np.float64))
  res = nmf_lib.nmf(a, K)
  assert int(res.n_iter) == model.n_iter_
  np.testing.assert_allclose(_objective(a, res.w, res.h),
                             _objective(a, w_sk, model.components_), rtol=1e-4)


def test_transform_equals_sklearn():
  a = _matrix(seed=1)
  a_new = _matrix(m=60, seed=2)
  w0, h0 = _random_init(a)
  model, _ = _sklearn_mu(a, w0, h0, max_iter=200, tol=1e-4)
  h = model.components_.astype(np.float32)
  w_sk = model.transform(a_new.astype(np.float64))
  w = nmf_lib.transform(a_new, h)
  np.testing.assert_allclose(_objective(a_new, w, h),
                             _objective(a_new, w_sk, h), rtol=1e-4)
  np.testing.assert_allclose(np.asarray(w), w_sk, rtol=2e-3,
                             atol=2e-3 * w_sk.max())


def test_transform_with_fixed_iterations_equals_sklearn():
  a = _matrix(seed=1)
  w0, h0 = _random_init(a)
  model, _ = _sklearn_mu(a, w0, h0, max_iter=50, tol=0)
  w_sk = model.transform(a.astype(np.float64))
  w = nmf_lib.transform(a, model.components_, max_iter=50, tol=0)
  np.testing.assert_allclose(_objective(a, w, model.components_),
                             _objective(a, w_sk, model.components_), rtol=1e-4)


# ---------------------------------------------------------------------------
# Batched entry point, jit, zero-row skipping.


def _padded_stack(zero_rows):
  """Two classes with 150 and 97 valid rows, padded to 150 with garbage."""
  n_valid = [150, 97]
  mats = [_matrix(m=m, seed=s, zero_rows=zero_rows)
          for s, m in enumerate(n_valid)]
  stack = np.zeros((2, 150, 48), np.float32)
  for i, x in enumerate(mats):
    stack[i, :x.shape[0]] = x
  stack[1, 97:] = 7.0  # padding must be ignored
  return mats, stack, n_valid


@pytest.mark.parametrize("init,zero_rows", [("nndsvda", (5,)), ("random", ())],
                         ids=["nndsvda_skipping_zero_rows", "random_dense"])
def test_batched_equals_loop_of_single_calls(init, zero_rows):
  mats, stack, n_valid = _padded_stack(zero_rows)
  keys = jax.random.split(jax.random.key(11), 2)
  res = nmf_lib.nmf_batched(stack, K, n_valid=n_valid, init=init, key=keys,
                            tol=1e-4)
  assert res.w.shape == (2, 150, K) and res.h.shape == (2, K, 48)
  for i, x in enumerate(mats):
    one = nmf_lib.nmf(x, K, init=init, key=keys[i], tol=1e-4)
    assert int(res.n_iter[i]) == int(one.n_iter)
    np.testing.assert_allclose(float(res.rel_error[i]), float(one.rel_error),
                               rtol=1e-5)
    np.testing.assert_allclose(res.h[i], one.h, rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(res.w[i, :x.shape[0]], one.w, rtol=2e-3,
                               atol=2e-4)
    assert np.all(np.asarray(res.w[i, x.shape[0]:]) == 0)


def test_batched_row_mask_equals_n_valid():
  _, stack, n_valid = _padded_stack((5,))
  mask = np.arange(150)[None, :] < np.asarray(n_valid)[:, None]
  r1 = nmf_lib.nmf_batched(stack, K, n_valid=n_valid, key=3)
  r2 = nmf_lib.nmf_batched(stack, K, row_mask=mask, key=3)
  np.testing.assert_array_equal(r1.h, r2.h)
  np.testing.assert_array_equal(r1.n_iter, r2.n_iter)


@pytest.mark.parametrize("skip_zero_rows", [True, False])
def test_batched_transposed_form_equals_plain_form(skip_zero_rows):
  stack = np.stack([_matrix(seed=s, zero_rows=range(s, 150, 5))
                    for s in range(3)])
  kw = dict(n_valid=[150, 140, 120], key=2, tol=1e-4,
            skip_zero_rows=skip_zero_rows)
  plain = nmf_lib.nmf_batched(stack, K, transpose_a=False, **kw)
  fast = nmf_lib.nmf_batched(stack, K, transpose_a=True, **kw)
  np.testing.assert_array_equal(fast.n_iter, plain.n_iter)
  np.testing.assert_allclose(fast.h, plain.h, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(fast.w, plain.w, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(fast.rel_error, plain.rel_error, rtol=1e-5)


def test_batched_skip_zero_rows_equals_dense():
  stack = np.stack([_matrix(seed=s, zero_rows=range(s, 150, 3))
                    for s in range(2)])
  kw = dict(n_valid=[150, 140], key=5, tol=1e-4)
  skip = nmf_lib.nmf_batched(stack, K, skip_zero_rows=True, **kw)
  dense = nmf_lib.nmf_batched(stack, K, skip_zero_rows=False, **kw)
  np.testing.assert_allclose(skip.h, dense.h, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(skip.w, dense.w, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(skip.rel_error, dense.rel_error, rtol=1e-5)


@pytest.mark.parametrize("init", ["nndsvda", "random"])
def test_skip_zero_rows_equals_dense(init):
  a = _matrix(zero_rows=range(0, 150, 4))
  skip = nmf_lib.nmf(a, K, init=init, skip_zero_rows=True)
  dense = nmf_lib.nmf(a, K, init=init, skip_zero_rows=False)
  assert int(skip.n_iter) == int(dense.n_iter)
  np.testing.assert_allclose(skip.h, dense.h, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(skip.w, dense.w, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(skip.rel_error, dense.rel_error, rtol=1e-5)


def test_results_identical_under_jit():
  a = jnp.asarray(_matrix(seed=2))
  kw = dict(init="nndsvda", max_iter=50, tol=1e-3)
  eager = nmf_lib.nmf(a, K, **kw)
  jitted = jax.jit(lambda x: nmf_lib.nmf(x, K, **kw))(a)
  for x, y in zip(eager, jitted):
    np.testing.assert_array_equal(x, y)


def test_traced_input_checks_shapes_and_options_not_values():
  neg = -jnp.ones((10, 8))
  with pytest.raises(ValueError, match="negative entries"):
    nmf_lib.nmf(neg, 2)
  traced = jax.jit(lambda x: nmf_lib.nmf(x, 2, max_iter=5).h)(neg)
  assert traced.shape == (2, 8)  # the values are unknown under jit: no check
  with pytest.raises(ValueError, match="exceeds"):
    jax.jit(lambda x: nmf_lib.nmf(x, 9).h)(jnp.ones((10, 8)))
  with pytest.raises(TypeError, match="tol must be a Python float"):
    jax.jit(lambda x, t: nmf_lib.nmf(x, 2, tol=t).h)(jnp.ones((10, 8)), 0.1)


def test_vmap_matches_a_loop_of_single_calls():
  stack = jnp.asarray(np.stack([_matrix(seed=s) for s in range(2)]))
  res = jax.vmap(lambda x: nmf_lib.nmf(x, K, max_iter=20, tol=0))(stack)
  one = nmf_lib.nmf(stack[1], K, max_iter=20, tol=0)
  np.testing.assert_allclose(res.h[1], one.h, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("init", ["nndsvda", "random"])
def test_vmap_over_matrices_and_keys_matches_a_loop(init):
  # Zero rows too: the loop skips them (concrete), vmap iterates them (traced).
  stack = np.stack([_matrix(seed=s, zero_rows=range(s, 150, 6))
                    for s in range(3)])
  keys = jax.random.split(jax.random.key(4), 3)
  res = jax.vmap(lambda x, kk: nmf_lib.nmf(x, K, init=init, key=kk))(
      jnp.asarray(stack), keys)
  assert res.w.shape == (3, 150, K) and res.n_iter.shape == (3,)
  for i in range(3):
    one = nmf_lib.nmf(stack[i], K, init=init, key=keys[i])
    assert int(res.n_iter[i]) == int(one.n_iter)
    np.testing.assert_allclose(res.rel_error[i], one.rel_error, rtol=1e-5)
    np.testing.assert_allclose(res.h[i], one.h, rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(res.w[i], one.w, rtol=2e-3, atol=2e-4)


def test_batched_under_jit_equals_eager():
  stack = np.stack([_matrix(seed=s) for s in range(2)])
  kw = dict(init="random", key=1, max_iter=30, tol=1e-3)
  eager = nmf_lib.nmf_batched(stack, K, n_valid=[150, 120], **kw)
  jitted = jax.jit(lambda x, nv: nmf_lib.nmf_batched(x, K, n_valid=nv, **kw))(
      stack, np.array([150, 120]))
  np.testing.assert_array_equal(eager.n_iter, jitted.n_iter)
  np.testing.assert_allclose(eager.h, jitted.h, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(eager.w, jitted.w, rtol=1e-5, atol=1e-7)


class JitVariantsTest(chex.TestCase):
  """nmf and transform give the same result with and without jax.jit."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_nmf(self):
    a = jnp.asarray(_matrix(seed=8))
    key = jax.random.key(2)
    fit = self.variant(lambda x, kk: nmf_lib.nmf(
        x, K, init="random", key=kk, max_iter=60, tol=1e-3))
    res = fit(a, key)
    ref = nmf_lib.nmf(_matrix(seed=8), K, init="random", key=key, max_iter=60,
                      tol=1e-3)
    chex.assert_shape([res.w, res.h], [(150, K), (K, 48)])
    self.assertEqual(int(res.n_iter), int(ref.n_iter))
    np.testing.assert_allclose(res.rel_error, ref.rel_error, rtol=1e-6)
    np.testing.assert_allclose(res.h, ref.h, rtol=1e-5, atol=1e-7)

  @chex.variants(with_jit=True, without_jit=True)
  def test_transform(self):
    a = jnp.asarray(_matrix(seed=1))
    h = nmf_lib.nmf(a, K, max_iter=50).h
    for tol in (0.0, 1e-4):
      w = self.variant(lambda x, hh, tol=tol: nmf_lib.transform(
          x, hh, max_iter=50, tol=tol))(a, h)
      ref = nmf_lib.transform(np.asarray(a), np.asarray(h), max_iter=50,
                              tol=tol)
      chex.assert_shape(w, (150, K))
      np.testing.assert_allclose(w, ref, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------
# Numerics.


def _assert_finite(res):
  for x in res:
    assert np.all(np.isfinite(np.asarray(x)))


@pytest.mark.parametrize("init", ["nndsvda", "random"])
def test_all_zero_rows_and_columns(init):
  a = _matrix(zero_rows=(0, 7, 8, 149), zero_cols=(0, 5, 47))
  for skip in (True, False):
    res = nmf_lib.nmf(a, K, init=init, skip_zero_rows=skip)
    _assert_finite(res)
    np.testing.assert_array_equal(np.asarray(res.w)[[0, 7, 8, 149]], 0)
    np.testing.assert_array_equal(np.asarray(res.h)[:, [0, 5, 47]], 0)
    assert 0 < float(res.rel_error) < 1


@pytest.mark.parametrize("init", ["nndsvda", "random"])
def test_all_zero_matrix(init):
  res = nmf_lib.nmf(np.zeros((20, 10), np.float32), 3, init=init)
  _assert_finite(res)
  assert float(res.rel_error) == 0.0
  np.testing.assert_array_equal(np.asarray(res.w) @ np.asarray(res.h), 0)


@pytest.mark.parametrize("scale", [1e-30, 1e30])
@pytest.mark.parametrize("init", ["nndsvda", "random"])
def test_tiny_and_huge_magnitudes(scale, init):
  a = _matrix(seed=4)
  ref = nmf_lib.nmf(a, K, init=init, max_iter=60, tol=0)
  res = nmf_lib.nmf(a * np.float32(scale), K, init=init, max_iter=60, tol=0)
  _assert_finite(res)
  np.testing.assert_allclose(float(res.rel_error), float(ref.rel_error),
                             rtol=2e-2)
  wh = np.asarray(res.w, np.float64) @ np.asarray(res.h, np.float64) / scale
  assert np.all(np.isfinite(wh))
  np.testing.assert_allclose(
      np.linalg.norm(a - wh) / np.linalg.norm(a), float(ref.rel_error),
      rtol=2e-2)


def test_power_of_four_scale_gives_identical_iterates():
  a = _matrix(seed=6)
  w0, h0 = _random_init(a)
  kw = dict(init="custom", max_iter=30, tol=0)
  ref = nmf_lib.nmf(a, K, w_init=w0, h_init=h0, **kw)
  res = nmf_lib.nmf(a * 4.0 ** 20, K, w_init=w0 * 2.0 ** 20,
                    h_init=h0 * 2.0 ** 20, **kw)
  np.testing.assert_array_equal(np.asarray(res.w), np.asarray(ref.w) * 2.0 ** 20)
  np.testing.assert_array_equal(np.asarray(res.h), np.asarray(ref.h) * 2.0 ** 20)


def test_all_zero_rows_in_transform():
  a = _matrix(zero_rows=(2, 3))
  h = np.abs(np.random.default_rng(0).standard_normal((K, 48))).astype(
      np.float32)
  w = np.asarray(nmf_lib.transform(a, h))
  assert np.all(np.isfinite(w))
  np.testing.assert_array_equal(w[[2, 3]], 0)


# ---------------------------------------------------------------------------
# Bad input.


def test_negative_entries_raise():
  a = _matrix()
  a[3, 4] = -0.5
  with pytest.raises(ValueError, match="negative entries"):
    nmf_lib.nmf(a, K)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_raise(bad):
  a = _matrix()
  a[1, 1] = bad
  with pytest.raises(ValueError, match="NaN or Inf"):
    nmf_lib.nmf(a, K)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_entry_anywhere_raises(bad):
  """The check reads only min and max (NaN propagates through both): every position,
  in one matrix and in each matrix of a stack, including the reductions' tails."""
  base = np.ones((2, 5, 13), np.float32)
  for b, i, j in np.ndindex(*base.shape):
    a = base.copy()
    a[b, i, j] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
      nmf_lib.nmf(a[b], 2)
    with pytest.raises(ValueError, match="NaN or Inf"):
      nmf_lib.nmf_batched(a, 2)


def test_too_many_components_raise():
  with pytest.raises(ValueError, match=r"n_components=11 exceeds min\(m, n\)=10"):
    nmf_lib.nmf(np.ones((30, 10), np.float32), 11)


@pytest.mark.parametrize("k", [0, -2])
def test_too_few_components_raise(k):
  with pytest.raises(ValueError, match="n_components must be >= 1"):
    nmf_lib.nmf(np.ones((30, 10), np.float32), k)


@pytest.mark.parametrize("shape", [(30,), (2, 30, 10), ()])
def test_non_2d_input_raises(shape):
  with pytest.raises(ValueError, match="must be a 2-D"):
    nmf_lib.nmf(np.ones(shape, np.float32), 2)


def test_other_bad_arguments_raise():
  a = np.ones((30, 10), np.float32)
  with pytest.raises(ValueError, match="init must be one of"):
    nmf_lib.nmf(a, 2, init="nndsvd")
  with pytest.raises(ValueError, match="needs both w_init and h_init"):
    nmf_lib.nmf(a, 2, init="custom")
  with pytest.raises(ValueError, match="w_init must have shape"):
    nmf_lib.nmf(a, 2, init="custom", w_init=np.ones((3, 2)),
                h_init=np.ones((2, 10)))
  with pytest.raises(ValueError, match="max_iter"):
    nmf_lib.nmf(a, 2, max_iter=0)
  with pytest.raises(ValueError, match="tol"):
    nmf_lib.nmf(a, 2, tol=-1.0)
  with pytest.raises(TypeError, match="n_components must be an int"):
    nmf_lib.nmf(a, 2.5)
  with pytest.raises(TypeError, match="transpose_a must be None or a bool"):
    nmf_lib.nmf(a, 2, transpose_a="yes")


def test_batched_bad_input_raises():
  stack = np.ones((2, 30, 10), np.float32)
  with pytest.raises(ValueError, match="3-D"):
    nmf_lib.nmf_batched(stack[0], 2)
  with pytest.raises(ValueError, match="n_valid must have shape"):
    nmf_lib.nmf_batched(stack, 2, n_valid=[30])
  with pytest.raises(ValueError, match="exceeds"):
    nmf_lib.nmf_batched(stack, 5, n_valid=[30, 4])
  bad = stack.copy()
  bad[1, 3, 3] = -1
  with pytest.raises(ValueError, match="negative entries"):
    nmf_lib.nmf_batched(bad, 2)
  bad[1, 3, 3] = np.nan
  with pytest.raises(ValueError, match="NaN or Inf"):
    nmf_lib.nmf_batched(bad, 2)


def test_transform_bad_input_raises():
  a = np.ones((30, 10), np.float32)
  with pytest.raises(ValueError, match=r"h must be \(k, n\)"):
    nmf_lib.transform(a, np.ones((2, 9), np.float32))
  with pytest.raises(ValueError, match="negative entries"):
    nmf_lib.transform(-a, np.ones((2, 10), np.float32))
  with pytest.raises(ValueError, match="must be a 2-D"):
    nmf_lib.transform(a[0], np.ones((2, 10), np.float32))


@pytest.mark.parametrize("scale", [3e38, 1e-30, 1e-38, 1e-42])
def test_nmf_handles_the_whole_finite_float32_range(scale):
  """Near float32's maximum the products would overflow, and subnormal input would be flushed
  to zero and reported as a perfect fit; both fit as well as the unscaled matrix does."""
  a = np.random.default_rng(0).uniform(size=(40, 12))
  ref = nmf_lib.nmf(a.astype(np.float32), 3, max_iter=50)
  big = (a / a.max() * scale).astype(np.float32)
  res = nmf_lib.nmf(big, 3, max_iter=50)
  assert np.all(np.isfinite(res.w)) and np.all(np.isfinite(res.h))
  err = (np.linalg.norm(big.astype(np.float64)
                        - np.asarray(res.w, np.float64) @ np.asarray(res.h, np.float64))
         / np.linalg.norm(big.astype(np.float64)))
  assert 0.0 < float(res.rel_error) and abs(err - float(ref.rel_error)) < 0.02
  stack = np.stack([a.astype(np.float32), big])
  batched = nmf_lib.nmf_batched(stack, 3, max_iter=50)
  np.testing.assert_allclose(batched.rel_error, [ref.rel_error, res.rel_error], rtol=1e-3)


def test_nmf_of_a_non_finite_input_is_an_error():
  a = np.ones((6, 4), np.float32)
  a[2, 1] = np.nan
  with pytest.raises(ValueError, match="NaN or Inf"):
    nmf_lib.nmf(a, 2)
