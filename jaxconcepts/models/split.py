"""A classifier split at a layer: `encode(x) -> h` and `head(h) -> logits`.

This is the operation everything else hangs on: ClaDec decodes `h`, layer
attribution differentiates `head` at `h`, the shifting test edits `h`, and the
contrast classifiers are trained on pixel vectors of `h`.

Layers are addressed by tap name (`"conv3a"`, `"layer3.5"`, `"logits"`), by the
module name of a torchvision block (`"layer3_5"`), or by the papers' negative
aliases (`-1` ... `-5` or the strings `"-1"` ...), see `models.py`.

Example::

    model = create_model("vgg", 10)
    variables = init_variables(model, key, (32, 32, 1))
    s = split(model, variables, -2)           # conv4, 512x1x1
    h = s.encode(x)                           # (N, 1, 1, 512)
    logits = s.head(h)                        # == model.apply(variables, x)
"""

import dataclasses
from typing import Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconcepts.models.classifiers import TAP_PREFIX


def resolve_layer(model: nn.Module, layer: str | int) -> str:
  """Returns the canonical tap name for a name, block name or alias.

  Raises:
    ValueError: naming the layer and listing the valid names and aliases.
  """
  names = tuple(model.layer_names)
  aliases = dict(getattr(model, "aliases", {}))
  key = str(layer)
  if key in names:
    return key
  if key in aliases:
    return aliases[key]
  dotted = key.replace("_", ".")
  if dotted in names:
    return dotted
  raise ValueError(
      f"unknown layer {layer!r} for {type(model).__name__}; valid layers: {list(names)}"
      + (f", aliases: {sorted(aliases, key=int, reverse=True)}" if aliases else ""))


def encode(model: nn.Module, variables: dict, x: jax.Array, layer: str | int,
           *, train: bool = False, rngs: dict | None = None) -> jax.Array:
  """The activations `h` at `layer` for images `x` (N, H, W, C)."""
  chex.assert_rank(x, 4)
  name = resolve_layer(model, layer)
  return model.apply(variables, x, train=train, stop=name, rngs=rngs)


def head(model: nn.Module, variables: dict, h: jax.Array, layer: str | int,
         *, train: bool = False, rngs: dict | None = None) -> jax.Array:
  """The logits (N, classes) computed from activations `h` at `layer`."""
  name = resolve_layer(model, layer)
  return model.apply(variables, h, train=train, start=name, rngs=rngs)


def all_taps(model: nn.Module, variables: dict, x: jax.Array) -> dict[str, jax.Array]:
  """Every tap's activations for `x` in one forward pass (eval mode)."""
  chex.assert_rank(x, 4)
  _, state = model.apply(variables, x, train=False, mutable=["taps"])
  prefix = getattr(model, "tap_prefix", TAP_PREFIX)
  return {name[len(prefix):]: value[0] for name, value in state["taps"].items()
          if name.startswith(prefix)}


def layer_shapes(model: nn.Module, image_shape: Sequence[int],
                 variables: dict | None = None) -> dict[str, tuple[int, ...]]:
  """Per-sample shape of every tap for images of shape (H, W, C), no FLOPs."""
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  if variables is None:
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                                  jnp.zeros(x.shape), train=False))
    variables = {k: v for k, v in variables.items() if k != "taps"}
  taps = jax.eval_shape(lambda v, x: all_taps(model, v, x), variables, x)
  return {name: tuple(t.shape[1:]) for name, t in taps.items()}


@dataclasses.dataclass(frozen=True)
class Split:
  """A model bound to its variables and cut at `layer`.

  Attributes:
    layer: the canonical tap name.
    shape: per-sample shape of `h`, e.g. (4, 4, 256) or (10,).
    encode: x (N, H, W, C) -> h (N, *shape).
    head: h (N, *shape) -> logits (N, classes).
  """
  layer: str
  shape: tuple[int, ...]
  encode: Callable[[jax.Array], jax.Array]
  head: Callable[[jax.Array], jax.Array]


def split(model: nn.Module, variables: dict, layer: str | int,
          image_shape: Sequence[int] | None = None) -> Split:
  """Binds `variables` and cuts `model` at `layer` (eval mode).

  Args:
    model: a module following the split protocol (see `models.py`).
    variables: its {'params', 'batch_stats'}.
    layer: tap name, block name or alias.
    image_shape: (H, W, C) of the inputs, to report `Split.shape`; if None the
      shape is left empty.

  Returns:
    A `Split` whose `encode` and `head` are pure and jittable.
  """
  name = resolve_layer(model, layer)
  shape: tuple[int, ...] = ()
  if image_shape is not None:
    shape = layer_shapes(model, image_shape, variables)[name]
  return Split(
      layer=name, shape=shape,
      encode=lambda x: encode(model, variables, x, name),
      head=lambda h: head(model, variables, h, name))
