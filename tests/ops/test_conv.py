"""ops.conv: the im2col convolution equals XLA's, forward and backward."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconcepts.ops import conv


@pytest.mark.parametrize("hw,cin,cout,k,s", [
    (32, 1, 32, 3, 2), (8, 64, 128, 3, 1), (4, 256, 256, 3, 2), (2, 256, 512, 3, 1),
    (2, 512, 512, 3, 2), (7, 3, 5, 7, 2), (5, 4, 8, 1, 2), (6, 3, 4, 1, 1),
    (1, 16, 8, 3, 1), (1, 16, 8, 3, 2), (2, 8, 4, 5, 1), (2, 8, 4, 7, 2)])
def test_im2col_conv_equals_lax_conv_forward_and_gradient(hw, cin, cout, k, s):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, hw, hw, cin)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, cin, cout)) / np.sqrt(k * k * cin), jnp.float32)
  pad = ((k // 2, k // 2), (k // 2, k // 2))
  if k == 1:
    pad = ((0, 0), (0, 0))
  f_fast = lambda x, w: conv.im2col_conv(x, w, (s, s), pad)
  f_ref = lambda x, w: conv.xla_conv(x, w, (s, s), pad)
  np.testing.assert_allclose(f_fast(x, w), f_ref(x, w), rtol=1e-5, atol=1e-5)
  g_fast = jax.grad(lambda x, w: jnp.sum(jnp.sin(f_fast(x, w))), argnums=(0, 1))(x, w)
  g_ref = jax.grad(lambda x, w: jnp.sum(jnp.sin(f_ref(x, w))), argnums=(0, 1))(x, w)
  for a, b in zip(g_fast, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size,kernel,stride,expected", [
    (1, 3, 1, [1]),           # 1x1 map, pad 1: only the centre tap reads input
    (2, 3, 2, [1, 2]),        # 2x2 map, stride 2, one output: tap 0 is padding
    (2, 3, 1, [0, 1, 2]),     # two outputs: every tap reads some input
    (1, 7, 2, [3]),
    (8, 3, 1, [0, 1, 2]),
])
def test_data_taps_drop_only_offsets_that_read_padding(size, kernel, stride,
                                                       expected):
  pad = kernel // 2
  out = conv.conv_output_size(size, kernel, stride, (pad, pad))
  assert conv.data_taps(kernel, size, stride, out, pad) == expected


def test_im2col_on_1x1_map_contracts_only_the_centre_tap():
  x = jnp.ones((2, 1, 1, 16))
  w = jnp.ones((3, 3, 16, 8))
  jaxpr = jax.make_jaxpr(
      lambda x, w: conv.im2col_conv(x, w, (1, 1), ((1, 1), (1, 1))))(x, w)
  dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
  assert len(dots) == 1
  assert dots[0].invars[0].aval.shape[-1] == 16  # 1 tap x 16 channels, not 9 x 16


@pytest.mark.parametrize("h,w,cin,cout", [
    (8, 8, 64, 128), (4, 4, 128, 256), (2, 2, 256, 512), (6, 10, 3, 5), (2, 4, 8, 1)])
def test_winograd_conv_equals_lax_conv_forward_and_gradient(h, w, cin, cout):
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(3, h, w, cin)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(3, 3, cin, cout)) / np.sqrt(9 * cin), jnp.float32)
  pad = ((1, 1), (1, 1))
  f_fast = lambda x, k: conv.winograd_conv(x, k, (1, 1), pad)
  f_ref = lambda x, k: conv.xla_conv(x, k, (1, 1), pad)
  np.testing.assert_allclose(f_fast(x, k), f_ref(x, k), rtol=1e-5, atol=1e-5)
  g_fast = jax.grad(lambda x, k: jnp.sum(jnp.sin(f_fast(x, k))), argnums=(0, 1))(x, k)
  g_ref = jax.grad(lambda x, k: jnp.sum(jnp.sin(f_ref(x, k))), argnums=(0, 1))(x, k)
  for a, b in zip(g_fast, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  # Forward mode and vmap, as for the other kernels.
  t_fast = jax.jvp(lambda x: f_fast(x, k), (x,), (x * 0.5,))[1]
  t_ref = jax.jvp(lambda x: f_ref(x, k), (x,), (x * 0.5,))[1]
  np.testing.assert_allclose(t_fast, t_ref, rtol=1e-5, atol=1e-5)
  v_fast = jax.vmap(lambda xi: f_fast(xi[None], k))(x)
  np.testing.assert_allclose(v_fast[:, 0], f_ref(x, k), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hw,k,s,pad", [
    ((5, 4), 3, 1, 1), ((4, 4), 3, 2, 1), ((4, 4), 5, 1, 2), ((4, 4), 3, 1, 0)])
def test_winograd_conv_rejects_what_it_does_not_compute(hw, k, s, pad):
  assert not conv.winograd_applies((k, k), (s, s), ((pad, pad), (pad, pad)), hw)
  x = jnp.ones((1, *hw, 8))
  with pytest.raises(ValueError, match="winograd_conv needs a 3x3 kernel"):
    conv.winograd_conv(x, jnp.ones((k, k, 8, 4)), (s, s), ((pad, pad), (pad, pad)))
