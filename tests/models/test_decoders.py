"""models.decoders: stage counts and widths, any tap shape to an image, impls, bad input."""
import jax
import numpy as np
import pytest

from jaxconcepts.models import decoders


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
