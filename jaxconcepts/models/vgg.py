"""The VGG-style classifier of the ClaDec paper (Table 1), split at any conv stage.

Eight 3x3 convs (32, 64, 128, 128, 256, 256, 512, 512 channels; strides 2, 2,
1, 2, 1, 2, 1, 2), each followed by BatchNorm and ReLU, dropout 0.5 and a dense
layer to the classes. For 32x32 inputs the taps and the paper's aliases are::

    conv0  32x16x16      conv3a 256x4x4   (-5)
    conv1  64x8x8        conv3  256x2x2   (-4)
    conv2a 128x8x8       conv4a 512x2x2   (-3)
    conv2  128x4x4       conv4  512x1x1   (-2)
                         logits classes   (-1)

It follows the split protocol of `jaxconcepts.models.classifiers`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import numpy as np

from jaxconcepts.models import protocol
from jaxconcepts.models.layers import Conv


class ConvBNAct(nn.Module):
  """Conv 3x3 -> BatchNorm -> act, one VGG stage: (N, H, W, C) -> (N, H/s, W/s, features).

  Attributes:
    features: output channels.
    stride: the conv's stride in both spatial axes.
    act: the nonlinearity (replaceable, e.g. by exact DeepLift's rule).
    conv_impl: `Conv` implementation ("auto", "xla" or "im2col").
  """
  features: int
  stride: int
  act: Callable = nn.relu
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = Conv(self.features, (3, 3), (self.stride, self.stride),
             impl=self.conv_impl, name="conv")(x)
    x = protocol.batch_norm(train, "bn")(x)
    return self.act(x)


class ClaDecVGG(nn.Module):
  """The VGG-style classifier of the ClaDec paper (Table 1).

  Attributes:
    num_classes: number of logits.
    widths: output channels of each conv stage.
    strides: stride of each conv stage.
    conv_names: tap name of each conv stage.
    dropout_rate: dropout before the dense layer (active only with `train`).
    act: the nonlinearity after every BatchNorm (replaceable).
    conv_impl: `Conv` implementation ("auto", "xla" or "im2col").
  """
  num_classes: int = 10
  widths: Sequence[int] = (32, 64, 128, 128, 256, 256, 512, 512)
  strides: Sequence[int] = (2, 2, 1, 2, 1, 2, 1, 2)
  conv_names: Sequence[str] = ("conv0", "conv1", "conv2a", "conv2", "conv3a",
                               "conv3", "conv4a", "conv4")
  dropout_rate: float = 0.5
  act: Callable = nn.relu
  conv_impl: str = "auto"

  @property
  def layer_names(self) -> tuple[str, ...]:
    """The conv stages' tap names, then "logits"."""
    return tuple(self.conv_names) + ("logits",)

  @property
  def aliases(self) -> dict[str, str]:
    """The ClaDec paper's layer aliases: -1 logits ... -5 conv3a."""
    names = self.layer_names
    return {str(-k): names[-k] for k in range(1, min(6, len(names) + 1))}

  @property
  def input_stride(self) -> int:
    """Total downsampling factor of the conv stages."""
    return int(np.prod(self.strides))

  def check_input_shape(self, shape: Sequence[int]) -> None:
    """Raises ValueError unless `shape` = (H, W, C) fits the architecture."""
    protocol.check_image_shape(shape, self.input_stride, "the VGG's total stride")

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, *,
               start: str | None = None, stop: str | None = None) -> jax.Array:
    """Runs the stages after tap `start` up to tap `stop` (see the split protocol).

    Args:
      x: (N, H, W, C) images, or the activations at tap `start`.
      train: batch statistics and dropout on (training) or off (eval).
      start: tap whose activations `x` are; None: `x` are images.
      stop: last tap to compute; None: the logits.

    Returns:
      The activations at `stop`: (N, h, w, c) for a conv tap, (N, classes) for logits.
    """
    names = self.layer_names
    for i in protocol.stage_range(names, start, stop):
      if i < len(self.conv_names):
        x = ConvBNAct(self.widths[i], self.strides[i], self.act, self.conv_impl,
                      name=names[i])(x, train)
      else:
        x = x.reshape((x.shape[0], -1))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.Dense(self.num_classes, name="logits")(x)
      self.sow("taps", protocol.TAP_PREFIX + names[i], x)
    return x
