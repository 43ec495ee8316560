"""A classifier split at a layer: `encode(variables, x) -> h`, `head(variables, h) -> logits`.

This is the operation everything else hangs on: ClaDec decodes `h`, layer
attribution differentiates `head` at `h`, the shifting test edits `h`, and the
contrast classifiers are trained on pixel vectors of `h`.

A `Split` is a hashable value, (model, canonical layer name), with no weights
inside: the variables are an argument of `encode` and `head`, so a jitted
function that takes them as an argument compiles once per architecture and
shape, and a new checkpoint of the same architecture reuses the compilation.
A `Split` can be a static argument of `jax.jit`.

Layers are addressed by tap name (`"conv3a"`, `"layer3.5"`, `"logits"`), by the
module name of a torchvision block (`"layer3_5"`), or by the papers' negative
aliases (`-1` ... `-5` or the strings `"-1"` ...), see `models/classifiers.py`.

Applying a model or a `Split` to a large host array goes through
:func:`predict_logits`, :func:`encode_images` and :func:`head_logits`: fixed-size
batches of module-level jitted functions (:func:`logits_batch`,
:func:`encode_batch`, :func:`head_batch`) with the model or split static and the
variables traced.

Example::

    model = create_model("vgg", 10)
    variables = init_variables(model, key, (32, 32, 1))
    s = split(model, -2)                      # conv4, 512x1x1
    h = s.encode(variables, x)                # (N, 1, 1, 512)
    logits = s.head(variables, h)             # == model.apply(variables, x)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxconcepts.models.classifiers import TAP_PREFIX
from jaxconcepts.utils import map_batches


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


def all_taps(model: nn.Module, variables: Any, x: jax.Array) -> dict[str, jax.Array]:
  """Every tap's activations for `x` (N, H, W, C) in one forward pass (eval mode)."""
  chex.assert_rank(x, 4)
  _, state = model.apply(variables, x, train=False, mutable=["taps"])
  prefix = getattr(model, "tap_prefix", TAP_PREFIX)
  return {name[len(prefix):]: value[0] for name, value in state["taps"].items()
          if name.startswith(prefix)}


def layer_shapes(model: nn.Module, image_shape: Sequence[int],
                 variables: Any = None) -> dict[str, tuple[int, ...]]:
  """Per-sample shape of every tap for images of shape (H, W, C); no FLOPs.

  Args:
    model: a module following the split protocol.
    image_shape: (H, W, C) of one input image.
    variables: the model's variables, or None to trace an initialisation
      (shapes only, nothing is computed).

  Returns:
    {tap name: per-sample shape}, e.g. {"conv3a": (4, 4, 256), "logits": (10,)}.
  """
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  if variables is None:
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                                  jnp.zeros(x.shape), train=False))
    variables = {k: v for k, v in variables.items() if k != "taps"}
  taps = jax.eval_shape(lambda v, x: all_taps(model, v, x), variables, x)
  return {name: tuple(t.shape[1:]) for name, t in taps.items()}


def _plain(model: nn.Module) -> nn.Module:
  """`model` with its replaceable nonlinearities (`act`, `max_pool`) at their defaults.

  Parameter shapes do not depend on them, and the abstract init of `check_fits`
  must not run a caller's replacement (DeepLift's recording tape, a counter).
  """
  kw = {f.name: f.default for f in dataclasses.fields(model)
        if f.name in ("act", "max_pool") and f.default is not dataclasses.MISSING}
  return model.clone(**kw) if kw else model


@functools.lru_cache(maxsize=128)
def _param_shapes(model: nn.Module, in_shape: tuple[int, ...], start: str | None,
                  stop: str | None) -> dict[str, tuple[int, ...]]:
  """{param path: shape} that running `model` from `start` to `stop` on one input of
  per-sample shape `in_shape` creates (an abstract init: shapes only, no FLOPs).

  Raises:
    ValueError: if the model cannot run on such an input at all.
  """
  x = jax.ShapeDtypeStruct((1, *in_shape), jnp.float32)
  try:
    v = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False, start=start,
                                            stop=stop), x)
  except Exception as e:  # pylint: disable=broad-except  (flax / XLA shape errors vary)
    raise ValueError(f"{type(model).__name__} cannot run on inputs of per-sample shape "
                     f"{in_shape} ({type(e).__name__}: {' '.join(str(e).split())[:160]})") from None
  return {jax.tree_util.keystr(p): tuple(leaf.shape)
          for p, leaf in jax.tree_util.tree_leaves_with_path(v.get("params", {}))}


def check_fits(model: nn.Module, variables: Any, shape: Sequence[int], *, start: str | None = None,
               stop: str | None = None, what: str = "images") -> None:
  """Raises one line unless inputs of `shape` (N, ...) fit `model`'s weights in `variables`.

  The weights tell what the model was built for (e.g. its first kernel's input
  channels); without this check a wrong channel count or a channels-first batch
  surfaces as Flax's `ScopeParamShapeError` deep inside `apply`. Shapes only: it
  works at trace time inside `jit` and costs one cached abstract init per shape.

  Args:
    model: a module following the split protocol.
    variables: its variables ({'params', ...}); arrays or tracers.
    shape: the input's shape, batch first: images (N, H, W, C) or activations at `start`.
    start, stop: the taps the input starts at and the run stops at (None: images / logits).
    what: names the input in the error.
  """
  params = variables.get("params") if hasattr(variables, "get") else None
  if params is None:
    return
  want = _param_shapes(_plain(model), tuple(int(d) for d in shape[1:]), start, stop)
  have = {jax.tree_util.keystr(p): tuple(leaf.shape)
          for p, leaf in jax.tree_util.tree_leaves_with_path(params)}
  for path, need in want.items():
    if path in have and have[path] != need:
      hint = " (images are channels-last: (N, H, W, C))" if what == "images" else ""
      raise ValueError(f"{what} of shape {tuple(shape)} do not fit the model's weights: "
                       f"params{path} is {have[path]}, these {what} need {need}{hint}")


@dataclasses.dataclass(frozen=True)
class Split:
  """A model cut at `layer`; hashable, holds no weights.

  Attributes:
    model: a module following the split protocol (see `models/classifiers.py`).
    layer: the canonical tap name (use `split(model, layer)` to resolve
      aliases).
  """
  model: nn.Module
  layer: str

  def encode(self, variables: Any, x: jax.Array, *, train: bool = False,
             rngs: dict | None = None) -> jax.Array:
    """Activations h (N, *shape) at the layer for images `x` (N, H, W, C).

    Raises:
      ValueError: one line for images that are not (N, H, W, C), of a size the
        model was not built for, or with channels its weights do not take.
    """
    if len(x.shape) != 4:
      raise ValueError(f"images must be (N, H, W, C), got shape {tuple(x.shape)}")
    if hasattr(self.model, "check_input_shape"):
      self.model.check_input_shape(tuple(x.shape[1:]))
    check_fits(self.model, variables, x.shape, stop=self.layer)
    return self.model.apply(variables, x, train=train, stop=self.layer, rngs=rngs)

  def head(self, variables: Any, h: jax.Array, *, train: bool = False,
           rngs: dict | None = None) -> jax.Array:
    """Logits (N, classes) computed from activations `h` (N, *shape) at the layer.

    Raises:
      ValueError: one line for activations whose shape the later layers' weights
        do not take (e.g. another layer's, or a missing batch axis).
    """
    if len(h.shape) < 2:
      raise ValueError(f"activations at {self.layer} must be (N, ...), got shape "
                       f"{tuple(h.shape)}")
    check_fits(self.model, variables, h.shape, start=self.layer,
               what=f"activations at {self.layer}")
    return self.model.apply(variables, h, train=train, start=self.layer, rngs=rngs)

  def shape(self, image_shape: Sequence[int], variables: Any = None) -> tuple[int, ...]:
    """Per-sample shape of `h` for images of shape (H, W, C), e.g. (4, 4, 256)."""
    return layer_shapes(self.model, image_shape, variables)[self.layer]


def split(model: nn.Module, layer: str | int) -> Split:
  """Cuts `model` at `layer` (a tap name, block name or alias).

  Raises:
    ValueError: for a layer the model does not have, listing the valid ones.
  """
  return Split(model, resolve_layer(model, layer))


# ---------------------------------------------------------------------------
# Batched application: one compilation per architecture and batch shape.


@functools.partial(jax.jit, static_argnums=0)
def logits_batch(model: nn.Module, variables: Any, x: jax.Array) -> jax.Array:
  """Logits (B, classes) of images `x` (B, H, W, C), eval mode; `model` static."""
  return model.apply(variables, x, train=False)


@functools.partial(jax.jit, static_argnums=0)
def encode_batch(s: Split, variables: Any, x: jax.Array) -> jax.Array:
  """Activations (B, *shape) at `s.layer` of images `x` (B, H, W, C); `s` static."""
  return s.encode(variables, x)


@functools.partial(jax.jit, static_argnums=0)
def head_batch(s: Split, variables: Any, h: jax.Array) -> jax.Array:
  """Logits (B, classes) from activations `h` (B, *shape) at `s.layer`; `s` static."""
  return s.head(variables, h)


def predict_logits(model: nn.Module, variables: Any, images: np.ndarray,
                   batch_size: int = 256) -> np.ndarray:
  """A classifier's logits for many images, in fixed-size batches (eval mode).

  Args:
    model: a Flax classifier (hashable; a static jit argument).
    variables: its variables (a traced argument: any checkpoint of the same
      architecture reuses the compilation).
    images: (N, H, W, C) float32, N >= 1.
    batch_size: images per call.

  Returns:
    (N, classes) float32 numpy array.
  """
  return map_batches(logits_batch, np.asarray(images), args=(model, variables),
                     batch_size=batch_size)


def encode_images(s: Split, variables: Any, images: np.ndarray,
                  batch_size: int = 256) -> np.ndarray:
  """Activations at the split's layer for many images, in fixed-size batches.

  Args:
    s: the model cut at a layer (a static jit argument).
    variables: the model's variables (a traced argument).
    images: (N, H, W, C) float32, N >= 1.
    batch_size: images per call.

  Returns:
    (N, *shape) float32 numpy array.
  """
  chex.assert_rank(images, 4)
  return map_batches(encode_batch, np.asarray(images, np.float32), args=(s, variables),
                     batch_size=batch_size).astype(np.float32)


def head_logits(s: Split, variables: Any, h: np.ndarray,
                batch_size: int = 256) -> np.ndarray:
  """Logits from many activations at the split's layer, in fixed-size batches.

  Args:
    s: the model cut at a layer (a static jit argument).
    variables: the model's variables (a traced argument).
    h: (N, *shape) activations, N >= 1.
    batch_size: rows per call.

  Returns:
    (N, classes) float32 numpy array.
  """
  return map_batches(head_batch, np.asarray(h), args=(s, variables), batch_size=batch_size)
