"""Model-free attribution kernels: DeepLift rules, path integrals, SmoothGrad, maps."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconcepts.ops import attribution


def test_rescale_rule_uses_secant_and_falls_back_to_gradient():
  op = attribution.rescale_rule(jax.nn.relu)
  x = jnp.array([2.0, -1.0, 3.0, 0.5, 1e-12])
  x0 = jnp.array([-2.0, -3.0, 1.0, 0.5, -1e-12])
  y, vjp = jax.vjp(lambda a: op(a, x0), x)
  np.testing.assert_array_equal(y, jax.nn.relu(x))
  # (relu(x) - relu(x0)) / (x - x0); where |x - x0| < 1e-10, relu'(x).
  np.testing.assert_allclose(vjp(jnp.ones(5))[0], [0.5, 0.0, 1.0, 1.0, 1.0])


def test_rescale_rule_with_a_recorded_reference_output_is_the_same_op():
  rule = attribution.rescale_rule(jnp.tanh)
  x = jnp.array([0.3, -1.2, 2.0])
  x0 = jnp.array([0.1, 0.4, -0.5])
  computed = jax.grad(lambda a: jnp.sum(rule(a, x0)))(x)
  recorded = jax.grad(lambda a: jnp.sum(rule(a, x0, jnp.tanh(x0))))(x)
  np.testing.assert_array_equal(computed, recorded)
  np.testing.assert_allclose(computed, (jnp.tanh(x) - jnp.tanh(x0)) / (x - x0), rtol=1e-6)


def test_max_pool_rule_is_complete_on_a_pool_alone():
  pool = lambda z: jax.lax.reduce_window(z, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                                         (1, 2, 2, 1), "VALID")
  rule = attribution.max_pool_rule(pool)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(-1, 1, (2, 4, 4, 3)), jnp.float32)
  x0 = jnp.asarray(rng.uniform(-1, 1, (1, 4, 4, 3)), jnp.float32)
  np.testing.assert_array_equal(rule(x, x0), pool(x))
  mult = jax.grad(lambda a: jnp.sum(rule(a, x0)))(x)
  total = jnp.sum((x - x0) * mult, axis=(1, 2, 3))
  np.testing.assert_allclose(total, jnp.sum(pool(x) - pool(x0), axis=(1, 2, 3)), rtol=1e-5)


def test_path_integral_of_any_function_is_complete():
  fn = lambda z: jnp.sum(jnp.tanh(z) ** 2 + jnp.sin(3 * z), axis=1)
  x = jnp.array([[0.3, -1.2, 2.0], [1.0, 0.5, -0.7]])
  out = jax.jit(lambda x: attribution.path_integral(fn, x, 0.0, n_steps=64))(x)
  np.testing.assert_allclose(out.attributions.sum(1), fn(x) - fn(jnp.zeros_like(x)), atol=1e-5)
  np.testing.assert_allclose(out.delta, 0.0, atol=1e-5)


@pytest.mark.parametrize("method", attribution.QUADRATURES)
def test_quadratures_integrate_a_linear_function_exactly(method):
  alphas, weights = attribution.quadrature(method, 8)
  assert alphas.shape == weights.shape == (8,)
  assert np.all((alphas >= 0) & (alphas <= 1))
  if method not in ("riemann_trapezoid",):  # Captum's trapezoid weights sum to 1 - 1/n
    np.testing.assert_allclose(np.sum(weights), 1.0)
  if method in ("gausslegendre", "riemann_middle"):
    np.testing.assert_allclose(np.sum(weights * alphas), 0.5)


def test_smoothgrad_of_the_identity_is_the_mean_of_the_noisy_inputs():
  x = np.random.default_rng(1).uniform(size=(3, 4, 4, 1)).astype(np.float32)
  noise = 0.3 * np.random.default_rng(2).standard_normal((3, 5, 4, 4, 1)).astype(np.float32)
  out = attribution.smoothgrad(lambda z: z, x, noise=noise, batch_size=4)
  np.testing.assert_allclose(out, x + noise.mean(1), rtol=1e-5, atol=1e-6)
  var = attribution.smoothgrad(lambda z: z, x, noise=noise, smoothing="vargrad", batch_size=7)
  np.testing.assert_allclose(var, noise.var(1), rtol=1e-3, atol=1e-6)


def test_drawn_noise_does_not_depend_on_chunking():
  x = np.zeros((2, 3, 3, 1), np.float32)
  a = attribution.smoothgrad(lambda z: z * z, x, n_samples=4, key=3, batch_size=8)
  b = attribution.smoothgrad(lambda z: z * z, x, n_samples=4, key=3, batch_size=3)
  np.testing.assert_allclose(a, b, rtol=1e-6)


def test_bad_smoothgrad_arguments_are_rejected():
  x = np.zeros((2, 3, 3, 1), np.float32)
  with pytest.raises(ValueError, match="unknown smoothing"):
    attribution.smoothgrad(lambda z: z, x, smoothing="median")
  with pytest.raises(ValueError, match="std must be"):
    attribution.smoothgrad(lambda z: z, x, std=float("nan"))
  with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
    attribution.smoothgrad(lambda z: z, x, batch_size=0)
  with pytest.raises(ValueError, match=r"per_image_args\[0\]"):
    attribution.smoothgrad(lambda z, t: z, x, np.zeros(3))

