"""Tests for jaxconcepts.ops.nmf_init: the inits equal scikit-learn's, the scaling is exact."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.decomposition._nmf import _initialize_nmf

from jaxconcepts.ops import nmf_init

K = 4


def _matrix(m=150, n=48, rank=6, seed=0, zero_rows=()):
  """relu(U V + noise), float32, with optional all-zero rows."""
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))
  a = np.maximum(a + 0.1 * rng.standard_normal((m, n)), 0).astype(np.float32)
  a[list(zero_rows)] = 0
  return a


@pytest.mark.parametrize("seed", [0, 1])
def test_nndsvda_init_equals_sklearn(seed):
  a = _matrix(seed=seed, zero_rows=(3, 10))
  w_sk, h_sk = _initialize_nmf(a.astype(np.float64), K, init="nndsvda",
                               random_state=seed)
  w0, h0 = nmf_init.initialize(jnp.asarray(a), K, "nndsvda",
                              jax.random.key(seed))
  np.testing.assert_allclose(np.asarray(w0), w_sk, rtol=1e-4,
                             atol=1e-4 * w_sk.max())
  np.testing.assert_allclose(np.asarray(h0), h_sk, rtol=1e-4,
                             atol=1e-4 * h_sk.max())


def test_random_init_scaled_like_sklearn():
  a = _matrix(m=1000, n=1000)
  w0, h0 = nmf_init.initialize(jnp.asarray(a), K, "random", jax.random.key(0))
  avg = np.sqrt(a.mean() / K)
  expected_mean = avg * np.sqrt(2 / np.pi)  # E|N(0, 1)| = sqrt(2 / pi)
  assert np.all(np.asarray(w0) >= 0) and np.all(np.asarray(h0) >= 0)
  np.testing.assert_allclose(np.mean(w0), expected_mean, rtol=0.05)
  np.testing.assert_allclose(np.mean(h0), expected_mean, rtol=0.05)


@pytest.mark.parametrize("init", ["nndsvda", "random"])
def test_same_factors_for_a_raw_key_and_a_typed_key(init):
  a = jnp.asarray(_matrix(seed=3))
  typed = nmf_init.initialize(a, K, init, jax.random.key(7))
  raw = nmf_init.initialize(a, K, init, jax.random.PRNGKey(7))
  for x, y in zip(typed, raw):
    np.testing.assert_array_equal(x, y)
  default = nmf_init.initialize(a, K, init)
  seed0 = nmf_init.initialize(a, K, init, jax.random.key(0))
  for x, y in zip(default, seed0):
    np.testing.assert_array_equal(x, y)


def test_row_mask_zeroes_w_and_ignores_masked_rows():
  a = _matrix(seed=4)
  mask = np.arange(150) < 100
  garbage = a.copy()
  garbage[100:] = 5.0
  w_m, h_m = nmf_init.initialize(jnp.asarray(garbage), K, "random",
                                 jax.random.key(1), jnp.asarray(mask))
  w_t, h_t = nmf_init.initialize(jnp.asarray(a[:100]), K, "random",
                                 jax.random.key(1))
  np.testing.assert_array_equal(np.asarray(w_m)[100:], 0)
  np.testing.assert_allclose(h_m, h_t, rtol=1e-6)


@pytest.mark.parametrize("amax,q", [(0.0, 0), (1.0, 0), (1.9, 0), (2.0, 1),
                                    (4.0 ** 20, 20), (4.0 ** -20, -20)])
def test_scale_exponent_puts_the_max_in_half_to_two(amax, q):
  assert int(nmf_init.scale_exponent(jnp.float32(amax))) == q
  if amax:
    assert 0.5 <= amax / 4.0 ** q < 2
