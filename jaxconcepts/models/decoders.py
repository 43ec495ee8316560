"""Decoders from a layer's activations back to an image (ClaDec and RefAE).

The decoder of the ClaDec paper (Table 1) is a stack of stride-2 transposed
convolutions, ReLU after each, a sigmoid on the output (see below); a dense layer first
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

The output activation (`output_activation`) is a straight-through clip by
default, not the paper's sigmoid: on mostly black images (digits, thin
strokes) Adam's first steps drive the sigmoid's pre-activations far negative,
its derivative vanishes, and every decoder collapsed to the all-black image
whatever the learning rate or loss reduction (issue 16; measured in
benchmarks/README.md, "ClaDec decoder recipe"). `output="sigmoid"` keeps the
paper's.

The transposed convolutions are `models.layers.ConvTranspose` (PyTorch's
`ConvTranspose2d(k, stride=2, padding=(k-1)//2, output_padding=...)`, exactly
twice the input size); its `impl` ("auto" | "xla" | "subpixel") is passed
through, and "auto" picks a kernel per layer through `ops.backend`.
"""

from __future__ import annotations

import math
from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconcepts.models import layers
from jaxconcepts.ops import backend
from jaxconcepts.utils import check_choice

VARIANTS = ("paper", "reference")
OUTPUTS = ("sigmoid", "clip")
# Widths of the transposed convs, counted back from the output (the last one
# produces the image's channels): variant -> base width (doubling per stage).
_BASE_WIDTH = {"paper": 32, "reference": 64}
_KERNEL = {"paper": 5, "reference": 4}


def kernel_size(variant: str, override: int | None = None) -> int:
  """The transposed-conv kernel size: `override`, else 5 (paper) or 4 (reference code)."""
  return int(override or _KERNEL[variant])
MIN_DENSE_FEATURES = 64


def num_upsampling_stages(code_shape: Sequence[int], out_size: int) -> int:
  """log2(out_size / h) for a code (h, w, c); log2(out_size) for a vector code.

  Args:
    code_shape: per-sample code shape, (d,) or (h, w, c).
    out_size: image height and width.

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
  """Output channels of each transposed conv, the last = the image's channels.

  Args:
    variant: "paper" (widths 256, 128, 64, 32 back from the output) or
      "reference" (512, 256, 128, 64).
    n_stages: number of transposed convs (`num_upsampling_stages`).
    out_channels: the image's channels.

  Returns:
    n_stages widths; for fewer stages the widest (nearest the code) are dropped;
    () for a code at full resolution (no upsampling stage: `Decoder` ends in a
    stride-1 conv to the image's channels instead).

  Raises:
    ValueError: for an unknown variant.
  """
  check_choice("decoder variant", variant, VARIANTS)
  base = _BASE_WIDTH[variant]
  if n_stages == 0:
    return ()
  return tuple(base * 2 ** (n_stages - 2 - i) for i in range(n_stages - 1)) + (out_channels,)


def output_activation(z: jax.Array, kind: str = "clip") -> jax.Array:
  """The decoder's output in [0, 1] from the last layer's pre-activation `z` (any shape).

  "sigmoid": the paper's. "clip" (the default): `clip(z, 0, 1)` in value with the
  gradient of the identity (straight-through), so a pixel outside [0, 1] still
  receives the reconstruction loss's gradient; a sigmoid's derivative s(1 - s)
  vanishes there, which is how decoders of mostly black images collapsed to
  the all-black image (see the module docstring).

  Args:
    z: float pre-activations.
    kind: "clip" | "sigmoid".

  Returns:
    Values in [0, 1], shaped like `z`.

  Raises:
    ValueError: for another `kind`.
  """
  if check_choice("decoder output", kind, OUTPUTS) == "sigmoid":
    return nn.sigmoid(z)
  return z + jax.lax.stop_gradient(jnp.clip(z, 0.0, 1.0) - z)


class Decoder(nn.Module):
  """Code (N, d) or (N, h, w, c) -> image (N, S, S, out_channels) in [0, 1].

  Attributes:
    out_size: image height and width S (h * 2**stages must equal S).
    out_channels: image channels.
    variant: "paper" (5x5, widths 256..32) or "reference" (4x4, 512..64).
    kernel_size: override the variant's kernel size.
    impl: transposed-conv implementation, see `models.layers.ConvTranspose`.
    output: the output activation, "clip" (default) or "sigmoid" (the paper's),
      see `output_activation`.
  """
  out_size: int = 32
  out_channels: int = 1
  variant: str = "paper"
  kernel_size: int | None = None
  impl: str = "auto"
  output: str = "clip"

  @nn.compact
  def __call__(self, code: jax.Array) -> jax.Array:
    """Decodes float codes (N, d) or (N, h, h, c) to (N, S, S, out_channels) images."""
    if code.ndim not in (2, 4):
      raise ValueError(f"code must be (N, d) or (N, h, w, c), got shape {code.shape}")
    n_stages = num_upsampling_stages(code.shape[1:], self.out_size)
    widths = stage_widths(self.variant, n_stages, self.out_channels)
    k = kernel_size(self.variant, self.kernel_size)
    if code.ndim == 2 or code.shape[1] == 1:
      x = code.reshape(code.shape[0], -1)
      x = nn.relu(nn.Dense(max(x.shape[-1], MIN_DENSE_FEATURES), name="stem")(x))
      x = x.reshape(x.shape[0], 1, 1, x.shape[-1])
    else:
      x = nn.relu(layers.Conv(code.shape[-1], (3, 3), name="stem")(code))
    for i, width in enumerate(widths):
      x = layers.ConvTranspose(width, k, impl=self.impl, name=f"deconv{i}")(x)
      x = nn.relu(x) if i < len(widths) - 1 else output_activation(x, self.output)
    if not widths:  # a code at full resolution: a 3x3 stride-1 conv (odd: keeps the size)
      x = output_activation(layers.Conv(self.out_channels, (3, 3), name="out")(x), self.output)
    chex.assert_shape(x, (code.shape[0], self.out_size, self.out_size, self.out_channels))
    return x


def create_decoder(code_shape: Sequence[int], image_shape: Sequence[int], *,
                   variant: str = "paper", kernel_size: int | None = None,
                   impl: str = "auto", output: str = "clip") -> Decoder:
  """A decoder for codes of shape `code_shape` to images `image_shape` (H, W, C).

  Checks every argument (square images, a power-of-two ratio, the variant, the
  kernel size, the impl, the output) before anything runs.

  Args:
    code_shape: per-sample code shape, (d,) or (h, h, c).
    image_shape: (S, S, C) images the decoder produces.
    variant: "paper" or "reference" (see the module docstring).
    kernel_size: override the variant's kernel size (>= 2).
    impl: "auto" | "xla" | "subpixel", see `models.layers.ConvTranspose`.
    output: "clip" (default) or "sigmoid" (the paper's), see `output_activation`.

  Returns:
    An unbound `Decoder`.

  Raises:
    ValueError: naming the bad argument.
  """
  image_shape = tuple(int(s) for s in image_shape)
  if len(image_shape) != 3 or image_shape[0] != image_shape[1]:
    raise ValueError(f"image shape must be (S, S, C), got {image_shape}")
  check_choice("decoder variant", variant, VARIANTS)
  if kernel_size is not None and int(kernel_size) < 2:
    raise ValueError(f"decoder kernel_size must be >= 2, got {kernel_size}")
  backend.conv_transpose_impl(impl)
  check_choice("decoder output", output, OUTPUTS)
  num_upsampling_stages(code_shape, image_shape[0])
  return Decoder(out_size=image_shape[0], out_channels=image_shape[2], variant=variant,
                 kernel_size=kernel_size, impl=impl, output=output)
