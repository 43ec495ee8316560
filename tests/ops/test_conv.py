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
