"""Flax layers shared by the models: a convolution and a stride-2 transposed convolution.

Both hold their weights in flax's usual layout (a `kernel` of shape
(kh, kw, cin, cout) and a `bias`) and compute with one of two kernels from
`ops/`, picked per layer by the backend switch (`ops.backend`):

* `Conv`: `ops.conv.xla_conv` or `ops.conv.im2col_conv`
  (`ops.backend.conv_impl`);
* `ConvTranspose`: `ops.conv_transpose.xla_conv_transpose` or
  `ops.conv_transpose.subpixel_conv_transpose`
  (`ops.backend.conv_transpose_impl`).

The kernels of a layer share its parameters and agree to float32 rounding, so
checkpoints are interchangeable between backends and between `impl` values.
"""

from __future__ import annotations

from typing import Any, Callable

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconcepts.ops import backend
from jaxconcepts.ops import conv
from jaxconcepts.ops import conv_transpose


class Conv(nn.Module):
  """2-D convolution with torch-style symmetric padding and a fast CPU path.

  Maps (N, H, W, Cin) to (N, H', W', features) in the input's dtype (the
  parameters are float32 and cast to it).

  Attributes:
    features: output channels.
    kernel_size: (kh, kw).
    strides: (sh, sw).
    padding: explicit ((top, bottom), (left, right)); default `k // 2` each side
      (PyTorch's `padding=k//2`, which torchvision and the reference code use).
    use_bias: add a bias.
    impl: "auto" | "xla" | "im2col"; "auto" asks `ops.backend.conv_impl`.
    kernel_init: initializer of the (kh, kw, Cin, features) kernel.
    bias_init: initializer of the (features,) bias.
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
    chex.assert_rank(x, 4)
    kh, kw = self.kernel_size
    padding = self.padding
    if padding is None:
      padding = ((kh // 2, kh // 2), (kw // 2, kw // 2))
    kernel = self.param("kernel", self.kernel_init,
                        (kh, kw, x.shape[-1], self.features), jnp.float32)
    kernel = kernel.astype(x.dtype)
    ho = conv.conv_output_size(x.shape[1], kh, self.strides[0], padding[0])
    wo = conv.conv_output_size(x.shape[2], kw, self.strides[1], padding[1])
    impl = backend.conv_impl(self.impl, ho * wo)
    fn = conv.im2col_conv if impl == "im2col" else conv.xla_conv
    y = fn(x, kernel, tuple(self.strides), padding)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,),
                         jnp.float32).astype(y.dtype)
    return y


class ConvTranspose(nn.Module):
  """Stride-2 transposed conv doubling height and width (PyTorch semantics).

  Maps (N, h, w, cin) to (N, 2h, 2w, features) in the input's dtype.

  Attributes:
    features: output channels.
    kernel_size: k (square); padding (k-1)//2 and the output padding that
      gives exactly 2x (k=5: padding 2, output_padding 1; k=4: padding 1).
    use_bias: add a bias.
    impl: "auto" | "xla" | "subpixel"; "auto" asks
      `ops.backend.conv_transpose_impl` (per layer: it depends on `features`).
    kernel_init: initializer of the (k, k, cin, features) kernel.
  """
  features: int
  kernel_size: int = 5
  use_bias: bool = True
  impl: str = "auto"
  kernel_init: Callable = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    chex.assert_rank(x, 4)
    k = int(self.kernel_size)
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features),
                        jnp.float32).astype(x.dtype)
    impl = backend.conv_transpose_impl(self.impl, self.features)
    fn = (conv_transpose.subpixel_conv_transpose if impl == "subpixel"
          else conv_transpose.xla_conv_transpose)
    y = fn(x, kernel)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,),
                         jnp.float32).astype(y.dtype)
    return y
