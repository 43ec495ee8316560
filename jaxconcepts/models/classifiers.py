"""Classifiers by name, and the split protocol a user model must follow.

The split protocol. `jaxconcepts.models.split` cuts any Flax linen module at a
named layer if the module has

* `layer_names`: the ordered tap names; tap `i` is the output of stage `i`;
* `__call__(x, train=False, *, start=None, stop=None)`: runs the stages after
  tap `start` (or from the input) up to and including tap `stop` (or the
  logits). So `model(x, stop=L)` is the encoder `h = encode(x)` and
  `model(h, start=L)` the head, and `head(encode(x)) == model(x)` exactly.
  `protocol.stage_range` turns (`start`, `stop`) into the stage indices to run;

and, optionally,

* every tap's value `sow`n into the collection "taps" as `TAP_PREFIX + layer`,
  so all taps can be read in one pass (`split.all_taps`, `split.layer_shapes`);
* `aliases`: a dict from alias (`"-1"`, `"-2"`, ...) to tap name;
* `num_classes` (int) and `check_input_shape((H, W, C))`;
* `act` (the elementwise nonlinearity) and `max_pool` as dataclass fields, so
  an attribution method can substitute its own (exact DeepLift swaps in a
  custom-VJP rule) without touching the parameters. Every nonlinearity must
  go through them for DeepLift to be exact.

Our models (`create_model`): `ClaDecVGG` (`models.vgg`, the ClaDec paper's
Table 1, taps `conv0` ... `conv4`, `logits`, aliases `-1` ... `-5`) and
`ResNet` (`models.resnet`, torchvision's layout: `resnet18/34/50` with the
ImageNet stem, `resnet10` with the CIFAR stem; taps `stem`, `layer1.0` ...,
`pool`, `logits`), whose weights import from a torchvision state dict
(`params_from_torch`, `models.torch_import`). Those names are re-exported
here, so `from jaxconcepts.models import classifiers as models` reaches all.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconcepts.models.protocol import TAP_PREFIX
from jaxconcepts.models.resnet import BasicBlock, Bottleneck, ResNet
from jaxconcepts.models.torch_import import params_from_torch
from jaxconcepts.models.vgg import ClaDecVGG, ConvBNAct
from jaxconcepts.utils import check_choice

__all__ = ["ARCHS", "TAP_PREFIX", "create_model", "init_variables", "ClaDecVGG",
           "ConvBNAct", "ResNet", "BasicBlock", "Bottleneck", "params_from_torch"]

ARCHS = ("vgg", "resnet10", "resnet18", "resnet34", "resnet50")

_RESNETS = {
    "resnet10": dict(stage_sizes=(1, 1, 1, 1), block="basic", stem="cifar"),
    "resnet18": dict(stage_sizes=(2, 2, 2, 2), block="basic", stem="imagenet"),
    "resnet34": dict(stage_sizes=(3, 4, 6, 3), block="basic", stem="imagenet"),
    "resnet50": dict(stage_sizes=(3, 4, 6, 3), block="bottleneck", stem="imagenet"),
}


def create_model(arch: str, num_classes: int, **kwargs: Any) -> nn.Module:
  """Builds a classifier by name.

  Args:
    arch: one of `ARCHS`.
    num_classes: number of output logits (>= 2).
    **kwargs: module attributes to override, e.g. `act=my_relu`,
      `conv_impl="xla"`, `stem="imagenet"`, `dropout_rate=0.0`.

  Returns:
    An unbound Flax module following the split protocol.

  Raises:
    ValueError: for an unknown arch (listing the valid ones) or fewer than 2 classes.
  """
  check_choice("arch", arch, ARCHS)
  if int(num_classes) < 2:
    raise ValueError(f"num_classes must be >= 2, got {num_classes}")
  if arch == "vgg":
    return ClaDecVGG(num_classes=num_classes, **kwargs)
  return ResNet(num_classes=num_classes, **{**_RESNETS[arch], **kwargs})


def init_variables(model: nn.Module, key: jax.Array,
                   image_shape: Sequence[int]) -> dict:
  """Initialises a model's variables for images of shape (H, W, C).

  Args:
    model: a module following the split protocol (e.g. from `create_model`).
    key: PRNG key for the parameters.
    image_shape: per-image (H, W, C), checked by `model.check_input_shape` if
      the model has one.

  Returns:
    {'params', 'batch_stats'} (float32), without the sown taps.
  """
  if hasattr(model, "check_input_shape"):
    model.check_input_shape(image_shape)
  x = jnp.zeros((1, *image_shape), jnp.float32)
  variables = jax.jit(lambda k: model.init({"params": k}, x, train=False))(key)
  return {k: v for k, v in variables.items() if k != "taps"}
