"""Helpers for writing a model that follows the split protocol.

The protocol itself (a `layer_names` sequence, `start` / `stop` keywords, taps
sown under `TAP_PREFIX`, replaceable `act`) is described in
`jaxconcepts.models.classifiers`. This module holds the pieces our VGG and
ResNets share, so that `vgg.py` and `resnet.py` import them from below and
`classifiers.py` can import both models without an import cycle. A user model
may use `stage_range` and `check_image_shape` too.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn

# Sown tap values are named "tap:<layer>" (a sown name may not equal a submodule name).
TAP_PREFIX = "tap:"

# BatchNorm as PyTorch's defaults (momentum 0.1 there is 0.9 here; eps 1e-5), so
# torchvision weights and running statistics import unchanged.
BN_MOMENTUM = 0.9
BN_EPS = 1e-5


def batch_norm(train: bool, name: str, scale_init=nn.initializers.ones) -> nn.BatchNorm:
  """BatchNorm with PyTorch's constants; running averages unless `train`."""
  return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                      epsilon=BN_EPS, scale_init=scale_init, name=name)


def stage_range(layer_names: Sequence[str], start: str | None, stop: str | None) -> range:
  """Indices of the stages to run for taps `start` (exclusive) .. `stop` (inclusive).

  Args:
    layer_names: the model's ordered tap names; tap `i` is the output of stage `i`.
    start: run from the stage after this tap; None: from the input.
    stop: run up to and including this tap's stage; None: to the last stage.

  Returns:
    A range of stage indices into `layer_names`.

  Raises:
    ValueError: for an unknown tap (listing the valid ones) or `stop` before `start`.
  """
  for tap in (start, stop):
    if tap is not None and tap not in layer_names:
      raise ValueError(f"unknown layer {tap!r}; valid layers: {list(layer_names)}")
  i0 = 0 if start is None else layer_names.index(start) + 1
  i1 = len(layer_names) if stop is None else layer_names.index(stop) + 1
  if i1 < i0:
    raise ValueError(f"stop layer {stop!r} comes before start layer {start!r}")
  return range(i0, i1)


def check_image_shape(shape: Sequence[int], stride: int, what: str,
                      divisible: bool = True) -> None:
  """Raises ValueError unless `shape` = (H, W, C) fits a model of total `stride`.

  Args:
    shape: per-image shape (H, W, C).
    stride: the model's total downsampling factor.
    what: how the error names the stride (e.g. "the VGG's total stride").
    divisible: require H and W to be multiples of `stride` (a VGG flattens its
      last map into a dense layer of fixed size); otherwise only at least
      `stride` (a ResNet pools globally and takes any size).
  """
  if len(shape) != 3 or any(int(s) < 1 for s in shape):
    raise ValueError(f"image shape must be (height, width, channels), got {tuple(shape)}")
  h, w, _ = shape
  if divisible and (h % stride or w % stride):
    raise ValueError(
        f"image shape {tuple(shape)} cannot be taken: height and width must be positive "
        f"multiples of {stride} ({what}); resize the images (e.g. image_size=32)")
  if not divisible and (h < stride or w < stride):
    raise ValueError(
        f"image shape {tuple(shape)} cannot be taken: height and width must be at least "
        f"{stride} ({what})")
