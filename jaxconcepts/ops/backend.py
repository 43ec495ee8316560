"""The one backend switch: every choice that depends on the XLA backend.

The math in `ops/` and `models/` is the same on every backend; only the way
some products are laid out differs, because XLA:CPU's kernels are slow for a
few shapes that accelerators handle well. Each such choice is one small
function here that says what it picks on which backend and why. The math
modules call these functions (at trace time, with static shapes) and never
test the backend themselves. Every function takes the backend name as an
optional argument (default: `jax.default_backend()`), so the choices can be
tested for any backend on any machine.

The measurements behind the thresholds are in `benchmarks/README.md`
("ops: NMF, pairwise, convolutions").
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np

CPU = "cpu"
"""The name `jax.default_backend()` gives for XLA:CPU."""

CONV_IMPLS = ("auto", "xla", "im2col")
"""`impl` values of `models.layers.Conv`."""

CONV_TRANSPOSE_IMPLS = ("auto", "xla", "subpixel")
"""`impl` values of `models.layers.ConvTranspose` and `models.decoders.Decoder`."""

IM2COL_MAX_OUTPUT_PIXELS = 256
"""Largest output map (H' x W') that `Conv(impl="auto")` computes by im2col on CPU."""

SUBPIXEL_MIN_FEATURES = 8
"""Fewest output channels for which `ConvTranspose(impl="auto")` is sub-pixel on CPU."""

NMF_COLUMN_MULTIPLE = 8
"""On CPU, NMF's skinny products with k columns are padded to a multiple of this."""

NMF_PAD_MAX_COLUMNS = 64
"""Above this many columns the products are no longer skinny: no padding."""


def name(backend: str | None = None) -> str:
  """The backend name: `backend` if given, else `jax.default_backend()`."""
  return backend or jax.default_backend()


def _resolve(kind: str, impl: Any, choices: Sequence[str], fast: str,
             use_fast: bool) -> str:
  """`impl`, with "auto" made `fast` if `use_fast`, else "xla".

  Raises:
    ValueError: `impl` is not one of `choices` (listed first in the message).
  """
  if impl not in choices:
    raise ValueError(f"{kind} impl must be one of {choices}, got {impl!r}")
  if impl != "auto":
    return impl
  return fast if use_fast else "xla"


def conv_impl(impl: str, out_pixels: int, backend: str | None = None) -> str:
  """Resolves a convolution's `impl="auto"` to `"im2col"` or `"xla"`.

  CPU, output map of at most `IM2COL_MAX_OUTPUT_PIXELS` pixels: `"im2col"`
  (shifted strided slices concatenated on the channel axis, then one matrix
  product; `ops.conv.im2col_conv`). XLA:CPU's convolution is slow for small
  spatial extents with many channels, and its backward pass more so, while the
  im2col product's backward pass is a pad and a product. Larger maps stay on
  XLA: im2col multiplies the activation memory by kh * kw for little gain.
  Every other backend: `"xla"` (`lax.conv_general_dilated`), which GPU and TPU
  run well at every size.

  Args:
    impl: `"auto"`, `"xla"` or `"im2col"`; anything but `"auto"` is returned.
    out_pixels: H' * W' of the convolution's output.
    backend: backend name; default `jax.default_backend()`.

  Returns:
    `"im2col"` or `"xla"`.

  Raises:
    ValueError: for an `impl` not in `CONV_IMPLS`.
  """
  small = out_pixels <= IM2COL_MAX_OUTPUT_PIXELS
  return _resolve("conv", impl, CONV_IMPLS, "im2col",
                  name(backend) == CPU and small)


def conv_transpose_impl(impl: str, features: int = SUBPIXEL_MIN_FEATURES,
                        backend: str | None = None) -> str:
  """Resolves a stride-2 transposed convolution's `impl="auto"`.

  CPU, at least `SUBPIXEL_MIN_FEATURES` output channels: `"subpixel"` (one
  im2col product over a 3x3 window producing the four output phases, then a
  depth-to-space shuffle; `ops.conv_transpose.subpixel_conv_transpose`).
  XLA:CPU runs the transposed convolution as an lhs-dilated convolution, which
  is slow for the decoder's wide layers. The last layer, with one or three
  output channels, stays on XLA: there the im2col matrix is mostly overhead
  and XLA is faster. Every other backend: `"xla"`.

  Args:
    impl: one of `CONV_TRANSPOSE_IMPLS`; an explicit `"xla"` or `"subpixel"`
      is returned unchanged, on every backend.
    features: output channels of the layer (the choice is per layer).
    backend: backend name; default `jax.default_backend()`.

  Returns:
    `"subpixel"` or `"xla"`; ValueError for any other `impl`.
  """
  wide = features >= SUBPIXEL_MIN_FEATURES
  return _resolve("conv transpose", impl, CONV_TRANSPOSE_IMPLS, "subpixel",
                  name(backend) == CPU and wide)


def nmf_transpose_a(transpose_a: bool | None = None,
                    backend: str | None = None) -> bool:
  """Whether NMF keeps a row-major copy of `a.T` for the `w.T @ a` product.

  `w.T @ a` contracts the long leading axis of `a` (m x n, m >> k), which
  XLA:CPU's Eigen dots computed at about half the speed of the row-major
  `a_t @ w`. With the copy, made once per fit at the cost of a second
  `a`-sized buffer, both products of an iteration have the fast shape. With
  the YNNPACK dots of later jaxlibs the two shapes ran at the same speed on
  W1 (benchmarks/README.md), so the NMF entry points make the copy only for
  fits expected to be long (`nmf_loop.expects_long_fit`), where it was
  within the noise. Accelerators read a transposed operand at full speed, so
  the copy is only memory there.

  Args:
    transpose_a: None for the backend's default (on for CPU, off elsewhere);
      a bool is returned unchanged.
    backend: backend name; default `jax.default_backend()`.

  Returns:
    The choice, a Python bool.

  Raises:
    TypeError: `transpose_a` is neither None nor a bool.
  """
  if transpose_a is None:
    return name(backend) == CPU
  if not isinstance(transpose_a, (bool, np.bool_)):
    raise TypeError(f"transpose_a must be None or a bool, got {transpose_a!r}.")
  return bool(transpose_a)


def nmf_dot_columns(k: int, backend: str | None = None) -> int:
  """Columns NMF computes `a @ h.T` with, for k components (k <= columns).

  CPU: k rounded up to a multiple of `NMF_COLUMN_MULTIPLE` (8) when k is at
  most `NMF_PAD_MAX_COLUMNS`: XLA:CPU's dot kernels are faster for 8 output
  columns than for 6. The extra rows of `h` are zeros and the extra columns
  of the product are sliced off, so the values are the same products. Other
  backends: k (no padding; the choice was measured on CPU only).

  Args:
    k: number of components, >= 1.
    backend: backend name; default `jax.default_backend()`.

  Returns:
    The padded column count, >= k.
  """
  if name(backend) != CPU or k > NMF_PAD_MAX_COLUMNS:
    return k
  return -(-k // NMF_COLUMN_MULTIPLE) * NMF_COLUMN_MULTIPLE
