"""Classifiers with named layer taps that can be split at any tap.

Every model here is a Flax linen module with

* `layer_names`: the ordered tap names; tap `i` is the output of stage `i`;
* `__call__(x, train=False, *, start=None, stop=None)`: runs the stages after
  tap `start` (or from the input) up to and including tap `stop` (or the
  logits). So `model(x, stop=L)` is the encoder `h = encode(x)` and
  `model(h, start=L)` the head, and `head(encode(x)) == model(x)` exactly;
* every tap's value is also `sow`n into the collection "taps" (as
  `"tap:<layer>"`) so all taps can be read in one pass (`mutable=["taps"]`);
* `act` (default `nn.relu`) and, for ResNets, `max_pool` are attributes, so an
  attribution method can substitute its own nonlinearity (exact DeepLift swaps
  in a custom-VJP ReLU) without touching the parameters.

Any Flax model a user brings works with `jaxconcepts.models.split` if it follows the
same protocol (a `layer_names` sequence and `start` / `stop` keywords).

Models:

* `ClaDecVGG` - Table 1 of the ClaDec paper: eight 3x3 convs (32, 64, 128, 128,
  256, 256, 512, 512 channels; strides 2, 2, 1, 2, 1, 2, 1, 2), each followed by
  BatchNorm and ReLU, dropout 0.5, a dense layer to the classes. For 32x32
  inputs the taps and the paper's aliases are::

      conv0  32x16x16      conv3a 256x4x4   (-5)
      conv1  64x8x8        conv3  256x2x2   (-4)
      conv2a 128x8x8       conv4a 512x2x2   (-3)
      conv2  128x4x4       conv4  512x1x1   (-2)
                           logits classes   (-1)

* `ResNet` in torchvision's layout (`resnet18/34/50`, ImageNet stem: 7x7/2 conv
  and 3x3/2 max-pool) and `resnet10` (one BasicBlock per stage, CIFAR stem: a
  3x3/1 conv, as used for 32x32 inputs in ClaDec). Taps: `stem`, `layer1.0` ...
  `layer4.N` (torchvision's block names), `pool` (global average), `logits`.
  Weights import from a torchvision state dict (`params_from_torch`).
"""

from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxconcepts.ops.conv import Conv

ARCHS = ("vgg", "resnet10", "resnet18", "resnet34", "resnet50")
# Sown tap values are named "tap:<layer>" (a sown name may not equal a submodule name).
TAP_PREFIX = "tap:"

# BatchNorm as PyTorch: momentum 0.1 there is 0.9 here; eps 1e-5.
_BN_MOMENTUM = 0.9
_BN_EPS = 1e-5


def _batch_norm(train: bool, name: str, scale_init=nn.initializers.ones) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=_BN_MOMENTUM,
                      epsilon=_BN_EPS, scale_init=scale_init, name=name)


def _stage_range(layer_names: Sequence[str], start: str | None,
                 stop: str | None) -> range:
  """Indices of the stages run for `start` (exclusive) .. `stop` (inclusive)."""
  for tap in (start, stop):
    if tap is not None and tap not in layer_names:
      raise ValueError(f"unknown layer {tap!r}; valid layers: {list(layer_names)}")
  i0 = 0 if start is None else layer_names.index(start) + 1
  i1 = len(layer_names) if stop is None else layer_names.index(stop) + 1
  if i1 < i0:
    raise ValueError(f"stop layer {stop!r} comes before start layer {start!r}")
  return range(i0, i1)


class ConvBNAct(nn.Module):
  """Conv -> BatchNorm -> act, one VGG stage."""
  features: int
  stride: int
  act: Callable = nn.relu
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = Conv(self.features, (3, 3), (self.stride, self.stride),
             impl=self.conv_impl, name="conv")(x)
    x = _batch_norm(train, "bn")(x)
    return self.act(x)


class ClaDecVGG(nn.Module):
  """The VGG-style classifier of the ClaDec paper (Table 1)."""
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
    return tuple(self.conv_names) + ("logits",)

  @property
  def aliases(self) -> dict[str, str]:
    """The ClaDec paper's layer aliases: -1 logits ... -5 conv3a."""
    names = self.layer_names
    return {str(-k): names[-k] for k in range(1, min(6, len(names) + 1))}

  @property
  def input_stride(self) -> int:
    return int(np.prod(self.strides))

  def check_input_shape(self, shape: Sequence[int]) -> None:
    """Raises ValueError unless `shape` = (H, W, C) fits the architecture."""
    _check_hwc(shape, self.input_stride, "the VGG's total stride")

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, *,
               start: str | None = None, stop: str | None = None) -> jax.Array:
    names = self.layer_names
    for i in _stage_range(names, start, stop):
      if i < len(self.conv_names):
        x = ConvBNAct(self.widths[i], self.strides[i], self.act, self.conv_impl,
                      name=names[i])(x, train)
      else:
        x = x.reshape((x.shape[0], -1))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.Dense(self.num_classes, name="logits")(x)
      self.sow("taps", TAP_PREFIX + names[i], x)
    return x


class BasicBlock(nn.Module):
  """torchvision's BasicBlock (expansion 1)."""
  features: int
  stride: int = 1
  downsample: bool = False
  act: Callable = nn.relu
  conv_impl: str = "auto"
  expansion = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    s = (self.stride, self.stride)
    y = Conv(self.features, (3, 3), s, use_bias=False, impl=self.conv_impl, name="conv1")(x)
    y = self.act(_batch_norm(train, "bn1")(y))
    y = Conv(self.features, (3, 3), use_bias=False, impl=self.conv_impl, name="conv2")(y)
    y = _batch_norm(train, "bn2")(y)
    if self.downsample:
      x = Conv(self.features, (1, 1), s, padding=((0, 0), (0, 0)), use_bias=False,
               impl=self.conv_impl, name="downsample_conv")(x)
      x = _batch_norm(train, "downsample_bn")(x)
    return self.act(y + x)


class Bottleneck(nn.Module):
  """torchvision's Bottleneck (v1.5: stride on the 3x3 conv; expansion 4)."""
  features: int
  stride: int = 1
  downsample: bool = False
  act: Callable = nn.relu
  conv_impl: str = "auto"
  expansion = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    s = (self.stride, self.stride)
    no_pad = ((0, 0), (0, 0))
    y = Conv(self.features, (1, 1), padding=no_pad, use_bias=False,
             impl=self.conv_impl, name="conv1")(x)
    y = self.act(_batch_norm(train, "bn1")(y))
    y = Conv(self.features, (3, 3), s, use_bias=False, impl=self.conv_impl, name="conv2")(y)
    y = self.act(_batch_norm(train, "bn2")(y))
    y = Conv(self.features * 4, (1, 1), padding=no_pad, use_bias=False,
             impl=self.conv_impl, name="conv3")(y)
    y = _batch_norm(train, "bn3")(y)
    if self.downsample:
      x = Conv(self.features * 4, (1, 1), s, padding=no_pad, use_bias=False,
               impl=self.conv_impl, name="downsample_conv")(x)
      x = _batch_norm(train, "downsample_bn")(x)
    return self.act(y + x)


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """torchvision's stem max-pool: 3x3, stride 2, padding 1 (padding is -inf)."""
  return nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))


class ResNet(nn.Module):
  """ResNet in torchvision's layout, split at block granularity.

  Module names follow torchvision with '.' replaced by '_' (`layer3_5`,
  `downsample_conv`), tap names keep torchvision's dots (`layer3.5`).
  """
  stage_sizes: Sequence[int]
  block: str = "basic"  # "basic" | "bottleneck"
  num_classes: int = 1000
  stem: str = "imagenet"  # "imagenet" (7x7/2 + max-pool) | "cifar" (3x3/1)
  widths: Sequence[int] = (64, 128, 256, 512)
  act: Callable = nn.relu
  max_pool: Callable = _max_pool_3x3_s2
  conv_impl: str = "auto"

  @property
  def _block_cls(self):
    return {"basic": BasicBlock, "bottleneck": Bottleneck}[self.block]

  @property
  def block_names(self) -> tuple[str, ...]:
    return tuple(f"layer{i + 1}.{j}" for i, n in enumerate(self.stage_sizes)
                 for j in range(n))

  @property
  def layer_names(self) -> tuple[str, ...]:
    return ("stem",) + self.block_names + ("pool", "logits")

  @property
  def aliases(self) -> dict[str, str]:
    """-1 = logits, -2 = the last block, -3 the one before, ... (pool skipped)."""
    names = ("stem",) + self.block_names + ("logits",)
    return {str(-k): names[-k] for k in range(1, len(names) + 1)}

  @property
  def input_stride(self) -> int:
    stem = 4 if self.stem == "imagenet" else 1
    return stem * 2 ** (len(self.stage_sizes) - 1)

  def check_input_shape(self, shape: Sequence[int]) -> None:
    """Raises ValueError unless `shape` = (H, W, C) fits the architecture."""
    _check_hwc(shape, self.input_stride, "the ResNet's total stride", divisible=False)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, *,
               start: str | None = None, stop: str | None = None) -> jax.Array:
    names = self.layer_names
    blocks = self.block_names
    for i in _stage_range(names, start, stop):
      name = names[i]
      if name == "stem":
        if self.stem == "imagenet":
          x = Conv(self.widths[0], (7, 7), (2, 2), use_bias=False,
                   impl=self.conv_impl, name="conv1")(x)
          x = self.act(_batch_norm(train, "bn1")(x))
          x = self.max_pool(x)
        else:
          x = Conv(self.widths[0], (3, 3), use_bias=False, impl=self.conv_impl,
                   name="conv1")(x)
          x = self.act(_batch_norm(train, "bn1")(x))
      elif name in blocks:
        stage, idx = (int(t) for t in name[len("layer"):].split("."))
        features = self.widths[stage - 1]
        stride = 2 if (stage > 1 and idx == 0) else 1
        in_ch = x.shape[-1]
        downsample = idx == 0 and (stride != 1 or in_ch != features * self._block_cls.expansion)
        x = self._block_cls(features, stride, downsample, self.act, self.conv_impl,
                            name=name.replace(".", "_"))(x, train)
      elif name == "pool":
        x = jnp.mean(x, axis=(1, 2))
      else:
        x = nn.Dense(self.num_classes, name="logits")(x)
      self.sow("taps", TAP_PREFIX + name, x)
    return x


def _check_hwc(shape: Sequence[int], stride: int, what: str, divisible: bool = True) -> None:
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
  """
  if arch not in ARCHS:
    raise ValueError(f"unknown arch {arch!r}; valid archs: {list(ARCHS)}")
  if int(num_classes) < 2:
    raise ValueError(f"num_classes must be >= 2, got {num_classes}")
  if arch == "vgg":
    return ClaDecVGG(num_classes=num_classes, **kwargs)
  return ResNet(num_classes=num_classes, **{**_RESNETS[arch], **kwargs})


def init_variables(model: nn.Module, key: jax.Array,
                   image_shape: Sequence[int]) -> dict:
  """Initialises {'params', 'batch_stats'} for images of shape (H, W, C)."""
  if hasattr(model, "check_input_shape"):
    model.check_input_shape(image_shape)
  x = jnp.zeros((1, *image_shape), jnp.float32)
  variables = jax.jit(lambda k: model.init({"params": k}, x, train=False))(key)
  return {k: v for k, v in variables.items() if k != "taps"}


# ---------------------------------------------------------------------------
# torchvision import
# ---------------------------------------------------------------------------

_TORCH_LEAF = {"weight": "kernel", "bias": "bias", "running_mean": "mean",
               "running_var": "var"}


def _torch_path(key: str) -> tuple[str, tuple[str, ...], str] | None:
  """Maps a torchvision ResNet state-dict key to (collection, module path, leaf)."""
  parts = key.split(".")
  leaf = parts[-1]
  if leaf == "num_batches_tracked":
    return None
  mods = parts[:-1]
  if mods[0] == "fc":
    path = ("logits",)
  elif mods[0].startswith("layer"):
    block = f"{mods[0]}_{mods[1]}"
    rest = mods[2:]
    if rest[0] == "downsample":
      rest = ["downsample_conv" if rest[1] == "0" else "downsample_bn"]
    path = (block, *rest)
  else:
    path = tuple(mods)
  is_bn = "bn" in path[-1]
  collection = "batch_stats" if leaf in ("running_mean", "running_var") else "params"
  name = _TORCH_LEAF[leaf]
  if is_bn and leaf == "weight":
    name = "scale"
  return collection, path, name


def params_from_torch(state_dict: Mapping[str, Any], reference: dict) -> dict:
  """Converts a torchvision ResNet state dict into this module's variables.

  Args:
    state_dict: `torchvision.models.resnetXX().state_dict()` (tensors or arrays).
    reference: variables of the matching model from `init_variables`, used to
      check that every leaf is present with the right shape.

  Returns:
    {'params', 'batch_stats'} with conv kernels transposed OIHW -> HWIO and the
    dense kernel transposed (out, in) -> (in, out).

  Raises:
    ValueError: on a missing, unexpected or mis-shaped entry (naming it).
  """
  flat_ref = {tuple(str(getattr(k, "key", k)) for k in path): v for path, v in
              jax.tree_util.tree_flatten_with_path(reference)[0]}
  out = {}
  for key, value in state_dict.items():
    mapped = _torch_path(key)
    if mapped is None:
      continue
    collection, path, name = mapped
    arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value,
                     dtype=np.float32)
    if name == "kernel" and arr.ndim == 4:
      arr = arr.transpose(2, 3, 1, 0)
    elif path == ("logits",) and name == "kernel":
      arr = arr.T
    full = (collection, *path, name)
    if full not in flat_ref:
      raise ValueError(f"state dict entry {key!r} maps to {'/'.join(full)}, which the "
                       "model does not have; is it the same architecture?")
    if flat_ref[full].shape != arr.shape:
      raise ValueError(f"state dict entry {key!r} has shape {arr.shape} after transposing, "
                       f"the model expects {flat_ref[full].shape} at {'/'.join(full)}")
    out[full] = arr
  missing = sorted("/".join(k) for k in flat_ref if k not in out)
  if missing:
    raise ValueError(f"state dict lacks entries for {missing[:5]} (and {max(0, len(missing) - 5)} more)")
  nested: dict = {}
  for full, arr in out.items():
    node = nested
    for part in full[:-1]:
      node = node.setdefault(part, {})
    node[full[-1]] = jnp.asarray(arr)
  return nested

