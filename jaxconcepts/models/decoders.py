"""Decoders from a layer's activations back to an image (ClaDec and RefAE).

The decoder of the ClaDec paper (Table 1) is a stack of stride-2 transposed
convolutions, ReLU after each, a sigmoid on the output; a dense layer first
for vector codes. The number of upsampling stages follows from the code's
spatial size: `log2(out_size / h)` (five for a 1x1 or vector code and 32x32
images, three for the 4x4 code of `conv3a`). Two variants:

* ``"paper"`` (default): 5x5 transposed convs, widths 256, 128, 64, 32 counted
  back from the output (the stages nearest the code are dropped for lower
  layers, as the paper says), output channels last.
* ``"reference"``: the authors' code: 4x4 transposed convs (stride 2, padding
  1), widths 512, 256, 128, 64 counted back from the output.

Both start the same way (the paper's Table 1 only shows the vector case; the
reference code does this for all codes): a code without spatial extent (a
vector, or a 1x1 map) goes through a dense layer with ReLU to
`max(d, 64)` features, reshaped to 1x1; a spatial code (h > 1) through a 3x3
conv with ReLU that keeps its channels.

`ConvTranspose` has PyTorch's `ConvTranspose2d(k, stride=2, padding=(k-1)//2,
output_padding=...)` semantics, producing exactly twice the input size, with a
kernel of shape (kh, kw, cin, cout). On CPU it runs as a "sub-pixel"
convolution: one im2col matrix product over a 3x3 window of the input producing
the four output phases (2 x 2 x cout channels), then a depth-to-space shuffle
(for a 1x1 input, a single dense product). XLA:CPU's transposed convolution
(an lhs-dilated convolution) is 5-20x slower for the wide layers (measured on
2 busy cores, batch 128, 5x5, forward + backward: 1x1x512 -> 2x2x256 27 ms vs
386 ms, 8x8x64 -> 16x16x32 181 ms vs 1093 ms) but faster for the last layer
with its single output channel (175 ms vs 30 ms), so "auto" picks per layer;
on GPU / TPU the XLA path is used. Both paths share parameters and agree to
float32 rounding (tests/test_decoders.py).
"""

import math
from typing import Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from jaxconcepts.ops import conv as layers

VARIANTS = ("paper", "reference")
CONV_TRANSPOSE_IMPLS = ("auto", "xla", "subpixel")
# Widths of the transposed convs, counted back from the output (the last one
# produces the image's channels): variant -> base width (doubling per stage).
_BASE_WIDTH = {"paper": 32, "reference": 64}
_KERNEL = {"paper": 5, "reference": 4}
MIN_DENSE_FEATURES = 64
SUBPIXEL_MIN_FEATURES = 8


def transpose_padding(kernel_size: int) -> tuple[int, int]:
  """(padding, output_padding) of a stride-2 PyTorch ConvTranspose2d giving 2x."""
  if kernel_size < 2:
    raise ValueError(f"kernel_size must be >= 2 for a stride-2 transposed conv, got {kernel_size}")
  p = (kernel_size - 1) // 2
  return p, 2 + 2 * p - kernel_size


def xla_conv_transpose(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-2 transposed conv as XLA's lhs-dilated convolution.

  Args:
    x: (N, h, w, cin).
    kernel: (k, k, cin, cout), PyTorch semantics `y[2i - p + t] += x[i] w[t]`.

  Returns:
    (N, 2h, 2w, cout).
  """
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

  Same semantics and shapes as `xla_conv_transpose`.
  """
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
  y = layers.im2col_conv(x, kc, (1, 1), (pad, pad))  # (n, h, w, 4 cout)
  y = y.reshape(n, h, w, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(n, 2 * h, 2 * w, cout)


def choose_conv_transpose_impl(impl: str, features: int = SUBPIXEL_MIN_FEATURES,
                               backend: str | None = None) -> str:
  """Resolves "auto": "subpixel" on CPU for >= `SUBPIXEL_MIN_FEATURES` outputs, else "xla".

  XLA:CPU's lhs-dilated convolution is 5-20x slower than the sub-pixel matmul
  for the decoder's wide layers, but faster for the last layer, whose few
  output channels make the im2col matrix all overhead.
  """
  if impl not in CONV_TRANSPOSE_IMPLS:
    raise ValueError(f"conv transpose impl must be one of {CONV_TRANSPOSE_IMPLS}, got {impl!r}")
  if impl != "auto":
    return impl
  backend = backend or jax.default_backend()
  return "subpixel" if backend == "cpu" and features >= SUBPIXEL_MIN_FEATURES else "xla"


class ConvTranspose(nn.Module):
  """Stride-2 transposed conv doubling height and width (PyTorch semantics).

  Attributes:
    features: output channels.
    kernel_size: k (square); padding (k-1)//2 and the output padding that
      gives exactly 2x (k=5: padding 2, output_padding 1; k=4: padding 1).
    use_bias: add a bias.
    impl: "auto" | "xla" | "subpixel".
  """
  features: int
  kernel_size: int = 5
  use_bias: bool = True
  impl: str = "auto"
  kernel_init: Callable = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = int(self.kernel_size)
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features),
                        jnp.float32).astype(x.dtype)
    impl = choose_conv_transpose_impl(self.impl, self.features)
    fn = subpixel_conv_transpose if impl == "subpixel" else xla_conv_transpose
    y = fn(x, kernel)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,),
                         jnp.float32).astype(y.dtype)
    return y


def num_upsampling_stages(code_shape: Sequence[int], out_size: int) -> int:
  """log2(out_size / h) for a code (h, w, c); log2(out_size) for a vector code.

  Raises:
    ValueError: if the code is not square or out_size / h is not a power of 2.
  """
  code_shape = tuple(int(s) for s in code_shape)
  if len(code_shape) == 1:
    h = 1
  elif len(code_shape) == 3:
    h, w, _ = code_shape
    if h != w:
      raise ValueError(f"the decoder needs a square code, got spatial size {h}x{w}")
  else:
    raise ValueError(f"code shape must be (d,) or (h, w, c), got {code_shape}")
  ratio = out_size / h
  n = int(round(math.log2(ratio))) if ratio >= 1 else -1
  if n < 0 or 2 ** n * h != out_size:
    raise ValueError(f"cannot decode a {h}x{h} code to {out_size}x{out_size}: "
                     f"{out_size} / {h} must be a power of two")
  return n


def stage_widths(variant: str, n_stages: int, out_channels: int) -> tuple[int, ...]:
  """Output channels of each transposed conv, the last = the image's channels."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown decoder variant {variant!r}; valid variants: {list(VARIANTS)}")
  base = _BASE_WIDTH[variant]
  return tuple(base * 2 ** (n_stages - 2 - i) for i in range(n_stages - 1)) + (out_channels,)


class Decoder(nn.Module):
  """Code (N, d) or (N, h, w, c) -> image (N, S, S, out_channels) in [0, 1].

  Attributes:
    out_size: image height and width S (h * 2**stages must equal S).
    out_channels: image channels.
    variant: "paper" (5x5, widths 256..32) or "reference" (4x4, 512..64).
    kernel_size: override the variant's kernel size.
    impl: transposed-conv implementation, see `ConvTranspose`.
  """
  out_size: int = 32
  out_channels: int = 1
  variant: str = "paper"
  kernel_size: int | None = None
  impl: str = "auto"

  @nn.compact
  def __call__(self, code: jax.Array) -> jax.Array:
    if code.ndim not in (2, 4):
      raise ValueError(f"code must be (N, d) or (N, h, w, c), got shape {code.shape}")
    n_stages = num_upsampling_stages(code.shape[1:], self.out_size)
    widths = stage_widths(self.variant, n_stages, self.out_channels)
    k = int(self.kernel_size or _KERNEL[self.variant])
    if code.ndim == 2 or code.shape[1] == 1:
      x = code.reshape(code.shape[0], -1)
      x = nn.relu(nn.Dense(max(x.shape[-1], MIN_DENSE_FEATURES), name="stem")(x))
      x = x.reshape(x.shape[0], 1, 1, x.shape[-1])
    else:
      x = nn.relu(layers.Conv(code.shape[-1], (3, 3), name="stem")(code))
    for i, width in enumerate(widths):
      x = ConvTranspose(width, k, impl=self.impl, name=f"deconv{i}")(x)
      x = nn.relu(x) if i < len(widths) - 1 else nn.sigmoid(x)
    chex.assert_shape(x, (code.shape[0], self.out_size, self.out_size, self.out_channels))
    return x


def create_decoder(code_shape: Sequence[int], image_shape: Sequence[int], *,
                   variant: str = "paper", kernel_size: int | None = None,
                   impl: str = "auto") -> Decoder:
  """A decoder for codes of shape `code_shape` to images `image_shape` (H, W, C).

  Checks the shapes (square images, a power-of-two ratio) before anything runs.
  """
  image_shape = tuple(int(s) for s in image_shape)
  if len(image_shape) != 3 or image_shape[0] != image_shape[1]:
    raise ValueError(f"image shape must be (S, S, C), got {image_shape}")
  if variant not in VARIANTS:
    raise ValueError(f"unknown decoder variant {variant!r}; valid variants: {list(VARIANTS)}")
  if kernel_size is not None and int(kernel_size) < 2:
    raise ValueError(f"decoder kernel_size must be >= 2, got {kernel_size}")
  choose_conv_transpose_impl(impl)
  num_upsampling_stages(code_shape, image_shape[0])
  return Decoder(out_size=image_shape[0], out_channels=image_shape[2], variant=variant,
                 kernel_size=kernel_size, impl=impl)
