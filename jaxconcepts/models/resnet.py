"""ResNets in torchvision's layout, split at block granularity.

`ResNet` with `BasicBlock` or `Bottleneck` (v1.5: the stride sits on the 3x3
conv) covers ResNet-18/34/50 (ImageNet stem: a 7x7/2 conv and a 3x3/2
max-pool) and the ClaDec paper's ResNet-10 (one BasicBlock per stage, CIFAR
stem: a 3x3/1 conv, for 32x32 inputs). Taps: `stem`, `layer1.0` ...
`layer4.N` (torchvision's block names), `pool` (global average), `logits`.
Module names follow torchvision with '.' replaced by '_' (`layer3_5`,
`downsample_conv`), so `models.torch_import.params_from_torch` maps a
torchvision state dict onto them. It follows the split protocol of
`jaxconcepts.models.classifiers`; `act` and `max_pool` are replaceable.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconcepts.models import protocol
from jaxconcepts.models.layers import Conv

class _Block(nn.Module):
  """Fields shared by the residual blocks.

  Attributes:
    features: the block's inner width; it outputs `features * expansion` channels.
    stride: spatial stride of the block (on its 3x3 conv and its shortcut).
    downsample: project the shortcut with a 1x1 conv + BatchNorm (needed when
      the stride or the channel count changes).
    act: the nonlinearity (replaceable).
    conv_impl: `Conv` implementation ("auto", "xla" or "im2col").
  """
  features: int
  stride: int = 1
  downsample: bool = False
  act: Callable = nn.relu
  conv_impl: str = "auto"
  expansion = 1


def _conv(owner: nn.Module, features: int, kernel: int, name: str, stride: int = 1) -> Conv:
  """A bias-free conv padded by `kernel // 2` as torchvision's, with `owner.conv_impl`."""
  return Conv(features, (kernel, kernel), (stride, stride), use_bias=False,
              impl=owner.conv_impl, name=name)


def _residual(block: _Block, x: jax.Array, y: jax.Array, train: bool) -> jax.Array:
  """`act(y + shortcut(x))`, the shortcut projected when `block.downsample`."""
  if block.downsample:
    x = _conv(block, block.features * block.expansion, 1, "downsample_conv", block.stride)(x)
    x = protocol.batch_norm(train, "downsample_bn")(x)
  return block.act(y + x)


class BasicBlock(_Block):
  """torchvision's BasicBlock (expansion 1): two 3x3 convs and a shortcut."""
  expansion = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """(N, H, W, Cin) -> (N, H/stride, W/stride, features)."""
    y = _conv(self, self.features, 3, "conv1", self.stride)(x)
    y = self.act(protocol.batch_norm(train, "bn1")(y))
    y = _conv(self, self.features, 3, "conv2")(y)
    y = protocol.batch_norm(train, "bn2")(y)
    return _residual(self, x, y, train)


class Bottleneck(_Block):
  """torchvision's Bottleneck (v1.5: stride on the 3x3 conv; expansion 4)."""
  expansion = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """(N, H, W, Cin) -> (N, H/stride, W/stride, 4 * features)."""
    y = _conv(self, self.features, 1, "conv1")(x)
    y = self.act(protocol.batch_norm(train, "bn1")(y))
    y = _conv(self, self.features, 3, "conv2", self.stride)(y)
    y = self.act(protocol.batch_norm(train, "bn2")(y))
    y = _conv(self, self.features * 4, 1, "conv3")(y)
    y = protocol.batch_norm(train, "bn3")(y)
    return _residual(self, x, y, train)


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """torchvision's stem max-pool: 3x3, stride 2, padding 1 (padding is -inf)."""
  return nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))


class ResNet(nn.Module):
  """ResNet in torchvision's layout, split at block granularity.

  Attributes:
    stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
    block: "basic" (`BasicBlock`) or "bottleneck" (`Bottleneck`).
    num_classes: number of logits.
    stem: "imagenet" (7x7/2 conv + 3x3/2 max-pool) or "cifar" (3x3/1 conv).
    widths: inner width of each stage.
    act: the nonlinearity (replaceable).
    max_pool: the stem's max-pool (replaceable, e.g. by DeepLift's rule).
    conv_impl: `Conv` implementation ("auto", "xla" or "im2col").
  """
  stage_sizes: Sequence[int]
  block: str = "basic"
  num_classes: int = 1000
  stem: str = "imagenet"
  widths: Sequence[int] = (64, 128, 256, 512)
  act: Callable = nn.relu
  max_pool: Callable = _max_pool_3x3_s2
  conv_impl: str = "auto"

  @property
  def _block_cls(self) -> type[_Block]:
    return {"basic": BasicBlock, "bottleneck": Bottleneck}[self.block]

  @property
  def block_names(self) -> tuple[str, ...]:
    """torchvision's block names, `layer1.0` ... `layer4.N`."""
    return tuple(f"layer{i + 1}.{j}" for i, n in enumerate(self.stage_sizes)
                 for j in range(n))

  @property
  def layer_names(self) -> tuple[str, ...]:
    """`stem`, the blocks, `pool`, `logits`."""
    return ("stem",) + self.block_names + ("pool", "logits")

  @property
  def aliases(self) -> dict[str, str]:
    """-1 = logits, -2 = the last block, -3 the one before, ... (pool skipped)."""
    names = ("stem",) + self.block_names + ("logits",)
    return {str(-k): names[-k] for k in range(1, len(names) + 1)}

  @property
  def input_stride(self) -> int:
    """Total downsampling factor before the global pool."""
    stem = 4 if self.stem == "imagenet" else 1
    return stem * 2 ** (len(self.stage_sizes) - 1)

  def check_input_shape(self, shape: Sequence[int]) -> None:
    """Raises ValueError unless `shape` = (H, W, C) fits the architecture."""
    protocol.check_image_shape(shape, self.input_stride, "the ResNet's total stride",
                               divisible=False)

  def _stem(self, x: jax.Array, train: bool) -> jax.Array:
    """The stem: conv (7x7/2 or 3x3/1) -> BatchNorm -> act [-> 3x3/2 max-pool]."""
    if self.stem == "imagenet":
      x = _conv(self, self.widths[0], 7, "conv1", 2)(x)
      x = self.act(protocol.batch_norm(train, "bn1")(x))
      return self.max_pool(x)
    x = _conv(self, self.widths[0], 3, "conv1")(x)
    return self.act(protocol.batch_norm(train, "bn1")(x))

  def _block(self, name: str, x: jax.Array, train: bool) -> jax.Array:
    """Block `name` ("layer<stage>.<index>"), projecting the shortcut where needed."""
    stage, idx = (int(t) for t in name[len("layer"):].split("."))
    features = self.widths[stage - 1]
    stride = 2 if (stage > 1 and idx == 0) else 1
    in_ch = x.shape[-1]
    downsample = idx == 0 and (stride != 1 or in_ch != features * self._block_cls.expansion)
    return self._block_cls(features, stride, downsample, self.act, self.conv_impl,
                           name=name.replace(".", "_"))(x, train)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, *,
               start: str | None = None, stop: str | None = None) -> jax.Array:
    """Runs the stages after tap `start` up to tap `stop` (see the split protocol).

    Args:
      x: (N, H, W, C) images, or the activations at tap `start`.
      train: batch statistics on (training) or off (eval).
      start: tap whose activations `x` are; None: `x` are images.
      stop: last tap to compute; None: the logits.

    Returns:
      The activations at `stop`: (N, h, w, c) for `stem` and the blocks,
      (N, c) for `pool`, (N, classes) for `logits`.
    """
    names = self.layer_names
    for i in protocol.stage_range(names, start, stop):
      name = names[i]
      if name == "stem":
        x = self._stem(x, train)
      elif name in self.block_names:
        x = self._block(name, x, train)
      elif name == "pool":
        x = jnp.mean(x, axis=(1, 2))
      else:
        x = nn.Dense(self.num_classes, name="logits")(x)
      self.sow("taps", protocol.TAP_PREFIX + name, x)
    return x
