"""ops.conv_transpose: both stride-2 transposed-conv kernels equal the PyTorch definition."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconcepts.ops import conv_transpose


def _naive_conv_transpose(x, w):
  """PyTorch ConvTranspose2d(k, stride=2, padding=p, output_padding=op) in numpy."""
  n, h, wd, cin = x.shape
  k = w.shape[0]
  p, _ = conv_transpose.transpose_padding(k)
  out = np.zeros((n, 2 * h, 2 * wd, w.shape[-1]))
  for i in range(h):
    for j in range(wd):
      for ty in range(k):
        for tx in range(k):
          oy, ox = 2 * i - p + ty, 2 * j - p + tx
          if 0 <= oy < 2 * h and 0 <= ox < 2 * wd:
            out[:, oy, ox] += x[:, i, j] @ w[ty, tx]
  return out


@pytest.mark.parametrize("k", [5, 4, 3, 2])
@pytest.mark.parametrize("h", [1, 2, 3])
def test_both_transposed_conv_paths_equal_the_pytorch_definition(k, h):
  rng = np.random.default_rng(k * 10 + h)
  x = rng.normal(size=(2, h, h, 3)).astype(np.float32)
  w = rng.normal(size=(k, k, 3, 4)).astype(np.float32)
  ref = _naive_conv_transpose(x, w)
  for fn in (conv_transpose.xla_conv_transpose, conv_transpose.subpixel_conv_transpose):
    np.testing.assert_allclose(fn(jnp.asarray(x), jnp.asarray(w)), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("use_jit", [False, True])
@pytest.mark.parametrize("k", [5, 4])
def test_subpixel_gradients_equal_xla_gradients(k, use_jit):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 4, 4, 6)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, 6, 5)) / 10, jnp.float32)

  def grads(fn):
    g = jax.grad(lambda x, w: jnp.sum(jnp.sin(fn(x, w))), argnums=(0, 1))
    return (jax.jit(g) if use_jit else g)(x, w)

  for a, b in zip(grads(conv_transpose.subpixel_conv_transpose), grads(conv_transpose.xla_conv_transpose)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_transpose_padding_gives_twice_the_size():
  assert conv_transpose.transpose_padding(5) == (2, 1)
  assert conv_transpose.transpose_padding(4) == (1, 0)
  assert conv_transpose.transpose_padding(3) == (1, 1)
