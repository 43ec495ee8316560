"""Stride-2 transposed convolution kernels (PyTorch semantics), XLA and sub-pixel.

`ConvTranspose2d(k, stride=2, padding=(k-1)//2, output_padding=...)` as the
ClaDec decoders use it: the output is exactly twice the input's height and
width. Two kernels with the same (k, k, cin, cout) weights:

* `xla_conv_transpose`: XLA's lhs-dilated convolution;
* `subpixel_conv_transpose`: the four output phases as one im2col product
  (`ops.conv.im2col_conv`) and a depth-to-space shuffle.

They agree to float32 rounding (tests/ops/test_conv_transpose.py). Which one a
layer uses is `ops.backend.conv_transpose_impl`; the flax module is
`models.layers.ConvTranspose`.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from jaxconcepts.ops import conv


def transpose_padding(kernel_size: int) -> tuple[int, int]:
  """(padding, output_padding) of a stride-2 PyTorch ConvTranspose2d giving 2x.

  Padding (k - 1) // 2 and the output padding that makes the output exactly
  twice the input: k = 5 gives (2, 1), k = 4 gives (1, 0).

  Raises:
    ValueError: for kernel_size < 2.
  """
  if kernel_size < 2:
    raise ValueError(f"kernel_size must be >= 2 for a stride-2 transposed conv, got {kernel_size}")
  p = (kernel_size - 1) // 2
  return p, 2 + 2 * p - kernel_size


def xla_conv_transpose(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-2 transposed conv as XLA's lhs-dilated convolution.

  Args:
    x: (N, h, w, cin) float.
    kernel: (k, k, cin, cout) of x's dtype, PyTorch semantics
      `y[2i - p + t] += x[i] w[t]` with p = `transpose_padding(k)[0]`.

  Returns:
    (N, 2h, 2w, cout) of x's dtype.
  """
  chex.assert_rank([x, kernel], 4)
  k = kernel.shape[0]
  p, op = transpose_padding(k)
  pad = (k - 1 - p, k - 1 - p + op)
  return lax.conv_general_dilated(
      x, kernel[::-1, ::-1], (1, 1), [pad, pad], lhs_dilation=(2, 2),
      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _subpixel_taps(k: int) -> tuple[np.ndarray, np.ndarray, int, int]:
  """Gather table for the sub-pixel form of a stride-2 transposed conv.

  Output `2m + r` reads input `m + d` with tap `t = r + p - 2d` (0 <= t < k).

  Returns:
    (taps (nd, 2) int: t for each window offset and phase, valid (nd, 2) bool,
    dmin, dmax).
  """
  p, _ = transpose_padding(k)
  ds = sorted({(r + p - t) // 2 for r in (0, 1) for t in range(k) if (r + p - t) % 2 == 0})
  dmin, dmax = ds[0], ds[-1]
  offsets = np.arange(dmin, dmax + 1)
  taps = np.zeros((len(offsets), 2), np.int32)
  valid = np.zeros((len(offsets), 2), bool)
  for i, d in enumerate(offsets):
    for r in (0, 1):
      t = r + p - 2 * d
      if 0 <= t < k:
        taps[i, r], valid[i, r] = t, True
  return taps, valid, int(dmin), int(dmax)


def subpixel_conv_transpose(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-2 transposed conv as one im2col matmul + depth-to-space.

  Output pixel (2m + ry, 2n + rx) only reads input pixels near (m, n), so the
  four output phases (ry, rx) are one ordinary convolution of the input with a
  rearranged kernel of 4 * cout channels, followed by a depth-to-space
  shuffle. For a 1x1 input the whole layer is a single dense product.

  Args:
    x: (N, h, w, cin) float.
    kernel: (k, k, cin, cout) of x's dtype; square; PyTorch semantics as
      `xla_conv_transpose`.

  Returns:
    (N, 2h, 2w, cout) of x's dtype, equal to `xla_conv_transpose` up to
    rounding.

  Raises:
    ValueError: for a non-square kernel.
  """
  chex.assert_rank([x, kernel], 4)
  k = kernel.shape[0]
  if kernel.shape[1] != k:
    raise ValueError(f"only square kernels are supported, got {kernel.shape[:2]}")
  n, h, w, cin = x.shape
  cout = kernel.shape[-1]
  taps, valid, dmin, dmax = _subpixel_taps(k)
  # Window offsets that can reach the input at all (|d| < h): for a 1x1 input
  # only d = 0 remains and the whole layer is a single dense product.
  keep = [i for i, d in enumerate(range(dmin, dmax + 1)) if -min(h, w) < d < min(h, w)]
  taps, valid = taps[keep], valid[keep]
  dmin, dmax = dmin + keep[0], dmin + keep[-1]
  nd = taps.shape[0]
  # kc[dy, dx, cin, ry, rx, cout] = w[t(dy, ry), t(dx, rx)] (0 where no tap).
  ty = taps[:, None, :, None]  # (nd, 1, 2, 1) over (dy, dx, ry, rx)
  tx = taps[None, :, None, :]  # (1, nd, 1, 2)
  mask = (valid[:, None, :, None] & valid[None, :, None, :]).astype(np.float32)
  ty, tx = np.broadcast_arrays(ty, tx)
  gathered = kernel[ty, tx]  # (nd, nd, 2, 2, cin, cout)
  gathered = gathered * jnp.asarray(mask, kernel.dtype)[..., None, None]
  kc = jnp.transpose(gathered, (0, 1, 4, 2, 3, 5)).reshape(nd, nd, cin, 4 * cout)
  pad = (-dmin, dmax)
  y = conv.im2col_conv(x, kc, (1, 1), (pad, pad))  # (n, h, w, 4 cout)
  y = y.reshape(n, h, w, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(n, 2 * h, 2 * w, cout)
