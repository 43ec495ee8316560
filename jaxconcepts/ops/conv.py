"""Convolution kernels: XLA's, and im2col (slices + one product) for XLA:CPU.

Pure functions of arrays in NHWC layout with HWIO kernels, as
`flax.linen.Conv` stores them; the flax module that picks between them is
`models.layers.Conv`, and the choice itself is `ops.backend.conv_impl`.

`im2col_conv` writes a convolution as shifted strided slices of the padded
input, concatenated on the channel axis, followed by a single matrix product.
Its backward pass is equally simple (the transpose of a strided slice is a
pad), whereas the backward pass of `lax.conv_general_dilated_patches` is itself
a convolution. Kernel taps whose slice reads only padding add exact zeros and
are left out: the last ClaDec VGG conv (2x2 -> 1x1, stride 2) keeps 4 of 9
taps, and a 3x3 conv on a 1x1 map keeps 1. Both kernels give the same values
up to float32 rounding (tests/ops/test_conv.py).
"""

from __future__ import annotations

from typing import Sequence

import chex
import jax
import jax.numpy as jnp
from jax import lax

Padding = Sequence[tuple[int, int]]


def conv_output_size(size: int, kernel: int, stride: int, pad: tuple[int, int]) -> int:
  """Spatial output size of a convolution along one axis.

  Args:
    size: input size along the axis.
    kernel: kernel size along the axis.
    stride: stride along the axis.
    pad: (before, after) zero padding.
  """
  return (size + pad[0] + pad[1] - kernel) // stride + 1


def im2col_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                padding: Padding) -> jax.Array:
  """Convolution as shifted strided slices + one matrix product.

  Args:
    x: (N, H, W, Cin) float input.
    kernel: (kh, kw, Cin, Cout) filter of x's dtype (HWIO, as `flax.linen.Conv`).
    strides: (sh, sw).
    padding: ((top, bottom), (left, right)) explicit zero padding.

  Returns:
    (N, H', W', Cout) of x's dtype, equal to `xla_conv` up to rounding.
  """
  chex.assert_rank([x, kernel], 4)
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
  """The kernel restricted to offsets `keep` along `axis` (a slice if contiguous)."""
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
  """`lax.conv_general_dilated` in NHWC / HWIO layout.

  Args:
    x: (N, H, W, Cin) float input.
    kernel: (kh, kw, Cin, Cout) filter of x's dtype.
    strides: (sh, sw).
    padding: ((top, bottom), (left, right)) explicit zero padding.

  Returns:
    (N, H', W', Cout) of x's dtype.
  """
  return lax.conv_general_dilated(
      x, kernel, strides, [tuple(p) for p in padding],
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
