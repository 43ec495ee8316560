"""ops.backend: what the one backend switch chooses, with the backend named explicitly."""
import pytest

from jaxconcepts.ops import backend


def test_auto_impl_uses_im2col_only_on_cpu_for_small_maps():
  assert backend.conv_impl("auto", 4, backend="cpu") == "im2col"
  assert backend.conv_impl("auto", 4, backend="gpu") == "xla"
  assert backend.conv_impl("auto", 4, backend="tpu") == "xla"
  big = backend.IM2COL_MAX_OUTPUT_PIXELS + 1
  assert backend.conv_impl("auto", big, backend="cpu") == "xla"
  assert backend.conv_impl("auto", backend.IM2COL_MAX_OUTPUT_PIXELS, backend="cpu") == "im2col"


@pytest.mark.parametrize("impl", ["xla", "im2col"])
@pytest.mark.parametrize("name", ["cpu", "gpu", "tpu"])
def test_explicit_conv_impl_is_kept_on_every_backend(impl, name):
  assert backend.conv_impl(impl, 4, backend=name) == impl
  assert backend.conv_impl(impl, 10**6, backend=name) == impl


def test_unknown_conv_impl_is_rejected():
  with pytest.raises(ValueError, match="auto.*'fft'"):
    backend.conv_impl("fft", 4)


def test_auto_impl_uses_xla_for_the_narrow_output_layer_and_off_cpu():
  assert backend.conv_transpose_impl("auto", 64, backend="cpu") == "subpixel"
  assert backend.conv_transpose_impl("auto", 1, backend="cpu") == "xla"
  assert backend.conv_transpose_impl("auto", 64, backend="gpu") == "xla"
  edge = backend.SUBPIXEL_MIN_FEATURES
  assert backend.conv_transpose_impl("auto", edge, backend="cpu") == "subpixel"
  assert backend.conv_transpose_impl("auto", edge - 1, backend="cpu") == "xla"
  assert backend.conv_transpose_impl("subpixel", 1, backend="gpu") == "subpixel"
  with pytest.raises(ValueError, match="auto.*'fft'"):
    backend.conv_transpose_impl("fft")


def test_nmf_transpose_a_defaults_on_for_cpu_only():
  assert backend.nmf_transpose_a(None, backend="cpu") is True
  assert backend.nmf_transpose_a(None, backend="gpu") is False
  assert backend.nmf_transpose_a(None, backend="tpu") is False
  assert backend.nmf_transpose_a(False, backend="cpu") is False
  assert backend.nmf_transpose_a(True, backend="gpu") is True
  with pytest.raises(TypeError, match="transpose_a must be None or a bool"):
    backend.nmf_transpose_a("yes")


@pytest.mark.parametrize("k,cpu", [(1, 8), (6, 8), (8, 8), (9, 16), (64, 64), (65, 65)])
def test_nmf_dot_columns_pad_to_a_multiple_of_8_on_cpu_only(k, cpu):
  assert backend.nmf_dot_columns(k, backend="cpu") == cpu
  assert backend.nmf_dot_columns(k, backend="gpu") == k
  assert backend.nmf_dot_columns(k, backend="tpu") == k


def test_default_backend_is_jax_default():
  import jax  # pylint: disable=g-import-not-at-top
  assert backend.name() == jax.default_backend()
  assert backend.name("tpu") == "tpu"
