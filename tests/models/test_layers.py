"""models.layers: Conv equals flax's nn.Conv, ConvTranspose equals PyTorch's, for every impl."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconcepts.models import layers
from jaxconcepts.ops import conv_transpose


@pytest.mark.parametrize("impl", ["auto", "xla", "im2col"])
def test_conv_module_equals_flax_conv_with_same_params(impl):
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 8, 8, 16))
  ours = layers.Conv(32, (3, 3), (2, 2), impl=impl)
  variables = ours.init(jax.random.PRNGKey(1), x)
  ref = nn.Conv(32, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
  np.testing.assert_allclose(ours.apply(variables, x), ref.apply(variables, x),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["auto", "xla", "subpixel"])
def test_conv_transpose_impls_share_parameters_and_agree(impl):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 6))
  ref = layers.ConvTranspose(8, 5, impl="xla")
  variables = ref.init(jax.random.PRNGKey(1), x)
  ours = layers.ConvTranspose(8, 5, impl=impl).apply(variables, x)
  assert ours.shape == (2, 8, 8, 8)
  np.testing.assert_allclose(ours, ref.apply(variables, x), rtol=1e-5, atol=1e-5)


def test_unknown_impls_are_rejected_when_the_layer_runs():
  x = jnp.ones((1, 4, 4, 2))
  with pytest.raises(ValueError, match="auto.*'fft'"):
    layers.Conv(4, impl="fft").init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match="auto.*'fft'"):
    layers.ConvTranspose(4, impl="fft").init(jax.random.PRNGKey(0), x)


@pytest.mark.reference
def test_conv_transpose_matches_torch_conv_transpose2d():
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  for k in (5, 4):
    x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    w = rng.normal(size=(k, k, 3, 6)).astype(np.float32)
    p, op = conv_transpose.transpose_padding(k)
    ref = torch.nn.functional.conv_transpose2d(
        torch.tensor(x).permute(0, 3, 1, 2), torch.tensor(w).permute(2, 3, 0, 1), stride=2,
        padding=p, output_padding=op).permute(0, 2, 3, 1).numpy()
    ours = layers.ConvTranspose(6, k, use_bias=False).apply(
        {"params": {"kernel": jnp.asarray(w)}}, jnp.asarray(x))
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
