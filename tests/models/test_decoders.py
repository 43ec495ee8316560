"""Decoders: stride-2 transposed convs (sub-pixel == XLA == PyTorch), shapes, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconcepts.models import decoders


def _naive_conv_transpose(x, w):
  """PyTorch ConvTranspose2d(k, stride=2, padding=p, output_padding=op) in numpy."""
  n, h, wd, cin = x.shape
  k = w.shape[0]
  p, _ = decoders.transpose_padding(k)
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
  for fn in (decoders.xla_conv_transpose, decoders.subpixel_conv_transpose):
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

  for a, b in zip(grads(decoders.subpixel_conv_transpose), grads(decoders.xla_conv_transpose)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_transpose_padding_gives_twice_the_size():
  assert decoders.transpose_padding(5) == (2, 1)
  assert decoders.transpose_padding(4) == (1, 0)
  assert decoders.transpose_padding(3) == (1, 1)


def test_stage_counts_and_widths_follow_table1_and_the_reference_code():
  assert decoders.num_upsampling_stages((10,), 32) == 5
  assert decoders.num_upsampling_stages((1, 1, 512), 32) == 5
  assert decoders.num_upsampling_stages((2, 2, 512), 32) == 4
  assert decoders.num_upsampling_stages((4, 4, 256), 32) == 3
  assert decoders.stage_widths("paper", 5, 1) == (256, 128, 64, 32, 1)
  assert decoders.stage_widths("paper", 3, 3) == (64, 32, 3)
  assert decoders.stage_widths("reference", 5, 1) == (512, 256, 128, 64, 1)


@pytest.mark.parametrize("variant", ["paper", "reference"])
@pytest.mark.parametrize("code_shape", [(10,), (1, 1, 16), (2, 2, 8), (4, 4, 8)])
def test_decoder_maps_any_tap_shape_to_an_image_in_unit_range(variant, code_shape):
  dec = decoders.create_decoder(code_shape, (16, 16, 1), variant=variant)
  code = jax.random.normal(jax.random.PRNGKey(0), (3, *code_shape))
  variables = dec.init(jax.random.PRNGKey(1), code)
  out = dec.apply(variables, code)
  assert out.shape == (3, 16, 16, 1)
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  n_stages = decoders.num_upsampling_stages(code_shape, 16)
  assert len([k for k in variables["params"] if k.startswith("deconv")]) == n_stages
  k = variables["params"]["deconv0"]["kernel"].shape[0]
  assert k == (5 if variant == "paper" else 4)
  stem = variables["params"]["stem"]
  if len(code_shape) == 1 or code_shape[0] == 1:
    assert stem["kernel"].shape == (int(np.prod(code_shape)), max(int(np.prod(code_shape)), 64))
  else:
    assert stem["kernel"].shape == (3, 3, code_shape[-1], code_shape[-1])


def test_decoder_impls_share_parameters_and_agree():
  code = jax.random.normal(jax.random.PRNGKey(0), (2, 2, 2, 8))
  outs = []
  for impl in ("xla", "subpixel", "auto"):
    dec = decoders.create_decoder((2, 2, 8), (8, 8, 3), impl=impl)
    variables = dec.init(jax.random.PRNGKey(1), code)
    outs.append(dec.apply(variables, code))
  np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(outs[0], outs[2], rtol=1e-5, atol=1e-6)


def test_auto_impl_uses_xla_for_the_narrow_output_layer_and_off_cpu():
  assert decoders.choose_conv_transpose_impl("auto", 64, backend="cpu") == "subpixel"
  assert decoders.choose_conv_transpose_impl("auto", 1, backend="cpu") == "xla"
  assert decoders.choose_conv_transpose_impl("auto", 64, backend="gpu") == "xla"


def test_bad_decoder_inputs_are_rejected():
  with pytest.raises(ValueError, match="power of two"):
    decoders.create_decoder((3, 3, 8), (32, 32, 1))
  with pytest.raises(ValueError, match="square code"):
    decoders.create_decoder((2, 4, 8), (32, 32, 1))
  with pytest.raises(ValueError, match="variant.*'fancy'"):
    decoders.create_decoder((2, 2, 8), (32, 32, 1), variant="fancy")
  with pytest.raises(ValueError, match="impl.*'fft'"):
    decoders.create_decoder((2, 2, 8), (32, 32, 1), impl="fft")
  with pytest.raises(ValueError, match="image shape"):
    decoders.create_decoder((2, 2, 8), (32, 16, 1))
  with pytest.raises(ValueError, match="code shape"):
    decoders.num_upsampling_stages((2, 2), 32)


@pytest.mark.reference
def test_conv_transpose_matches_torch_conv_transpose2d():
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  for k in (5, 4):
    x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    w = rng.normal(size=(k, k, 3, 6)).astype(np.float32)
    p, op = decoders.transpose_padding(k)
    ref = torch.nn.functional.conv_transpose2d(
        torch.tensor(x).permute(0, 3, 1, 2), torch.tensor(w).permute(2, 3, 0, 1), stride=2,
        padding=p, output_padding=op).permute(0, 2, 3, 1).numpy()
    ours = decoders.ConvTranspose(6, k, use_bias=False).apply(
        {"params": {"kernel": jnp.asarray(w)}}, jnp.asarray(x))
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
