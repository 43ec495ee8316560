"""Building blocks shared by the models: a convolution with a fast CPU path.

XLA:CPU's convolution is pathological for small spatial extents: a 3x3 conv
256 -> 512 on 2x2 inputs takes ~20x longer than the same contraction written as
im2col (shifted strided slices concatenated on the channel axis) followed by a
single matrix product. The backward pass of that formulation is equally cheap
(the transpose of a strided slice is a pad), whereas the backward pass of
`lax.conv_general_dilated_patches` is itself a slow convolution. Measured on
2 CPU cores at batch 128 (ms, forward / forward+backward):

  =====================  ===============  ===============
  layer (in, cin->cout)  lax.conv         im2col + dot
  =====================  ===============  ===============
  32x32, 1->32, s2       1.9 / 5.3        1.4 / 3.4
  16x16, 32->64, s2      4.5 / 18.6       7.0 / 8.7
  8x8, 64->128, s1       12.7 / 48.8      12.7 / 26.3
  4x4, 256->256, s2      7.5 / 112.8      4.4 / 8.6
  2x2, 256->512, s1      322.7 / 317.3    8.6 / 16.5
  2x2, 512->512, s2      158.9 / 94.1     5.7 / 9.3
  =====================  ===============  ===============

The im2col path also leaves out kernel taps whose slice reads only padding (they
add exact zeros): the last ClaDec VGG conv (2x2 -> 1x1, stride 2) keeps 4 of 9
taps and a 3x3 conv on a 1x1 map keeps 1. Forward+backward at batch 1200,
512 -> 512 channels, same process, interleaved: 2x2 stride 2 170 -> 80 ms,
1x1 stride 1 163-181 -> 20-23 ms.

So `Conv(impl="auto")` uses im2col on the CPU backend whenever the output has at
most `IM2COL_MAX_OUTPUT_PIXELS` pixels (larger maps would multiply activation
memory by kh*kw for little gain), and `lax.conv_general_dilated` everywhere else,
in particular on GPU and TPU, where it is unchanged. Both paths share the same
parameters (`kernel` of shape (kh, kw, cin, cout) and `bias`), so checkpoints are
interchangeable, and they agree to float32 rounding (see tests/test_layers.py).
"""

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

IM2COL_MAX_OUTPUT_PIXELS = 256
IMPLS = ("auto", "xla", "im2col")

Padding = Sequence[tuple[int, int]]


def conv_output_size(size: int, kernel: int, stride: int, pad: tuple[int, int]) -> int:
  """Spatial output size of a convolution along one axis."""
  return (size + pad[0] + pad[1] - kernel) // stride + 1


def im2col_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                padding: Padding) -> jax.Array:
  """Convolution as shifted strided slices + one matrix product.

  Args:
    x: (N, H, W, Cin) input.
    kernel: (kh, kw, Cin, Cout) filter (HWIO, as `flax.linen.Conv`).
    strides: (sh, sw).
    padding: ((top, bottom), (left, right)) explicit zero padding.

  Returns:
    (N, H', W', Cout), equal to `lax.conv_general_dilated` up to rounding.
  """
  kh, kw, cin, cout = kernel.shape
  n, h, w, _ = x.shape
  sh, sw = strides
  ho = conv_output_size(h, kh, sh, padding[0])
  wo = conv_output_size(w, kw, sw, padding[1])
  if kh == 1 and kw == 1 and tuple(map(tuple, padding)) == ((0, 0), (0, 0)):
    cols = x[:, ::sh, ::sw, :][:, :ho, :wo, :]
    return jnp.dot(cols, kernel.reshape(cin, cout))
  # Taps whose strided slice reads only padding contribute exact zeros: leave
  # them out of the product (on 1x1 maps a 3x3 conv keeps 1 tap of 9).
  row_taps = data_taps(kh, h, sh, ho, padding[0][0])
  col_taps = data_taps(kw, w, sw, wo, padding[1][0])
  xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  slices = [
      lax.slice(xp, (0, i, j, 0),
                (n, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, cin),
                (1, sh, sw, 1))
      for i in row_taps for j in col_taps
  ]
  cols = jnp.concatenate(slices, axis=-1) if len(slices) > 1 else slices[0]
  taps = _take_taps(_take_taps(kernel, row_taps, 0), col_taps, 1)
  return jnp.dot(cols, taps.reshape(len(row_taps) * len(col_taps) * cin, cout))


def _take_taps(kernel: jax.Array, keep: list[int], axis: int) -> jax.Array:
  """kernel restricted to offsets `keep` along `axis` (a slice if contiguous)."""
  if keep == list(range(keep[0], keep[-1] + 1)):
    return lax.slice_in_dim(kernel, keep[0], keep[-1] + 1, axis=axis)
  return jnp.take(kernel, jnp.asarray(keep), axis=axis)


def data_taps(kernel: int, size: int, stride: int, out: int,
              pad_before: int) -> list[int]:
  """Kernel offsets along one axis whose strided slice reads any input.

  Offset i reads padded positions i, i + stride, ..., i + (out - 1) * stride;
  the input occupies [pad_before, pad_before + size). Offsets that read only
  padding are dropped (there is always at least one that reads input when
  `out` >= 1 and the padding is smaller than the kernel).
  """
  keep = [i for i in range(kernel)
          if any(pad_before <= i + t * stride < pad_before + size
                 for t in range(out))]
  return keep or [0]


def xla_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
             padding: Padding) -> jax.Array:
  """`lax.conv_general_dilated` in NHWC / HWIO layout."""
  return lax.conv_general_dilated(
      x, kernel, strides, [tuple(p) for p in padding],
      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def choose_conv_impl(impl: str, out_pixels: int, backend: str | None = None) -> str:
  """Resolves `impl="auto"` to "im2col" or "xla" (see module docstring)."""
  if impl not in IMPLS:
    raise ValueError(f"conv impl must be one of {IMPLS}, got {impl!r}")
  if impl != "auto":
    return impl
  backend = backend or jax.default_backend()
  if backend == "cpu" and out_pixels <= IM2COL_MAX_OUTPUT_PIXELS:
    return "im2col"
  return "xla"


class Conv(nn.Module):
  """2-D convolution with torch-style symmetric padding and a fast CPU path.

  Attributes:
    features: output channels.
    kernel_size: (kh, kw).
    strides: (sh, sw).
    padding: explicit ((top, bottom), (left, right)); default `k // 2` each side
      (PyTorch's `padding=k//2`, which torchvision and the reference code use).
    use_bias: add a bias.
    impl: "auto" | "xla" | "im2col".
  """
  features: int
  kernel_size: tuple[int, int] = (3, 3)
  strides: tuple[int, int] = (1, 1)
  padding: Any = None
  use_bias: bool = True
  impl: str = "auto"
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = self.kernel_size
    padding = self.padding
    if padding is None:
      padding = ((kh // 2, kh // 2), (kw // 2, kw // 2))
    kernel = self.param("kernel", self.kernel_init,
                        (kh, kw, x.shape[-1], self.features), jnp.float32)
    kernel = kernel.astype(x.dtype)
    ho = conv_output_size(x.shape[1], kh, self.strides[0], padding[0])
    wo = conv_output_size(x.shape[2], kw, self.strides[1], padding[1])
    impl = choose_conv_impl(self.impl, ho * wo)
    fn = im2col_conv if impl == "im2col" else xla_conv
    y = fn(x, kernel, tuple(self.strides), padding)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,),
                         jnp.float32).astype(y.dtype)
    return y
