"""Helpers for `configs/*.py` (big_vision style) and config validation.

`get_config(arg)` receives the string after the colon in
`--config=configs/X.py:quick,layer=-2`; `parse_arg` turns it into a
ConfigDict of typed values, starting from defaults. Fields that take a layer or
a class list are typed `object` (`layer_field`, `class_list_field`) and checked
by `normalize_layers` / `class_list` before any work.
"""

from typing import Any

import ml_collections

from jaxconcepts.utils import check_choice  # noqa: F401  (configs call it from here)
from jaxconcepts.utils import check_int


def _convert(value: str, default: Any) -> Any:
  if isinstance(default, bool):
    if value.lower() in ("1", "true", "yes", ""):
      return True
    if value.lower() in ("0", "false", "no"):
      return False
    raise ValueError(f"expected a boolean, got {value!r}")
  if isinstance(default, int):
    return int(value)
  if isinstance(default, float):
    return float(value)
  return value


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses "quick,layer=-2,seeds=3" into a ConfigDict over `defaults`.

  A bare word sets a boolean default to True. Unknown keys are an error
  naming the valid ones.
  """
  out = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ValueError(f"unknown config argument {key!r}; valid arguments: {sorted(defaults)}")
    out[key] = _convert(value if "=" in item else "true", defaults[key])
  return out


def optimizer_config(name: str, learning_rate: float, *, momentum: float = 0.9,
                     weight_decay: float = 0.0, decay_fractions=(0.5, 0.75),
                     decay_factor: float = 0.1) -> ml_collections.ConfigDict:
  """The `optimizer` sub-config read by `training.optimizer_from_config`."""
  return ml_collections.ConfigDict(dict(
      name=name, learning_rate=learning_rate, momentum=momentum,
      weight_decay=weight_decay, decay_fractions=tuple(decay_fractions),
      decay_factor=decay_factor))


def data_config(dataset: str, source: str, *, image_size: int = 32,
                data_dir: str | None = None, max_train: int | None = None,
                max_test: int | None = None) -> ml_collections.ConfigDict:
  """The `data` sub-config read by `data.load_from_config`."""
  c = ml_collections.ConfigDict()
  c.dataset = dataset
  c.source = source
  c.image_size = image_size
  c.data_dir = ml_collections.config_dict.placeholder(str)
  c.max_train = ml_collections.config_dict.placeholder(int)
  c.max_test = ml_collections.config_dict.placeholder(int)
  if data_dir is not None:
    c.data_dir = data_dir
  if max_train is not None:
    c.max_train = max_train
  if max_test is not None:
    c.max_test = max_test
  return c


# ---------------------------------------------------------------------------
# Fields that take a layer or a list of classes.
#
# A field's type is fixed by its default (ml_collections), so `alpha_layer = -2`
# would only take ints and `classes = None` nothing. These fields are typed
# `object`: `--config.alpha_layer=conv3a`, `--config.alpha_layer=-3` and
# `--config.classes=(3,12)` all parse (as Python literals, else strings), and
# `normalize_layers` / `class_list` check them before any work.


def layer_field(default: int | str) -> ml_collections.FieldReference:
  """A config field that takes a layer by tap name ("conv3a") or alias (-2 or "-2")."""
  return ml_collections.FieldReference(default, field_type=object)


def class_list_field(default: tuple[int, ...] | None = None) -> ml_collections.FieldReference:
  """A config field that takes a tuple of class indices, or None for all classes."""
  return ml_collections.FieldReference(default, field_type=object)


def layer_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """The dotted keys of every field that takes a layer or layers: a last component
  `layer`, `layers` or `*_layer` (e.g. alpha_layer, subsets.layer, occlusion.layers)."""
  out = []
  for key, value in config.items():
    if hasattr(value, "items"):
      out += layer_keys(value, f"{prefix}{key}.")
    elif key in ("layer", "layers") or key.endswith("_layer"):
      out.append(f"{prefix}{key}")
  return out


def _layer_value(key: str, value: Any) -> int | str:
  """One layer as given: an int alias or a non-empty name ("-2" stays a string)."""
  if isinstance(value, str) and value.strip():
    return value.strip().strip("'\"")
  if isinstance(value, int) and not isinstance(value, bool):
    return value
  raise ValueError(f"{key} must be a layer name (e.g. 'conv3a') or alias (e.g. -2), "
                   f"got {value!r}")


def _layer_items(value: Any) -> list[Any]:
  """The items of a layer list; "(-1,conv3a)" (a tuple flag whose names were not quoted,
  which ml_collections keeps as one string) is split into its items."""
  items = [value] if isinstance(value, (str, int)) else list(value or ())
  out = []
  for item in items:
    if isinstance(item, str) and "," in item:
      parts = [p.strip().strip("'\"") for p in item.strip().strip("()[]").split(",")]
      out += [int(p) if p.lstrip("-").isdigit() else p for p in parts if p]
    else:
      out.append(item)
  return out


def normalize_layers(config: ml_collections.ConfigDict, arch: str | None = None) -> None:
  """Checks every layer field of `config` (see `layer_keys`), in place; no model weights.

  A list field becomes a tuple of ints and names. With `arch`, each layer must
  be one the architecture has (names come from the module, nothing is run).

  Raises:
    ValueError: one line naming the field, the bad value and the valid layers.
  """
  model = None
  if arch is not None:
    from jaxconcepts.models import classifiers  # pylint: disable=g-import-not-at-top
    model = classifiers.create_model(arch, 10)  # names only: nothing is initialised
  for key in layer_keys(config):
    node, leaf = _parent(config, key)
    value = node[leaf]
    if key.endswith("layers"):
      items = tuple(_layer_value(key, v) for v in _layer_items(value))
      node[leaf] = items
    else:
      items = (_layer_value(key, value),)
    for item in items if model is not None else ():
      _resolve(model, key, item)


def _parent(config: ml_collections.ConfigDict, key: str) -> tuple[Any, str]:
  *path, leaf = key.split(".")
  node = config
  for p in path:
    node = node[p]
  return node, leaf


def _resolve(model: Any, key: str, layer: int | str) -> str:
  from jaxconcepts.models import split  # pylint: disable=g-import-not-at-top
  try:
    return split.resolve_layer(model, layer)
  except ValueError as e:
    raise ValueError(f"{key}: {e}") from None


def class_list(value: Any, key: str = "classes",
               num_classes: int | None = None) -> tuple[int, ...] | None:
  """A class list as a tuple of distinct ints >= 0 (None: all classes).

  Accepts a tuple or list, one int, or a string "3:12" / "3,12" / "(3, 12)".
  With `num_classes`, every class must be below it, and None becomes all of them.

  Raises:
    ValueError: one line naming the field and the bad value.
  """
  if value is None:
    return None if num_classes is None else tuple(range(num_classes))
  if isinstance(value, str):
    parts = [p.strip() for p in value.strip().strip("()[]").replace(":", ",").split(",")]
    if not all(p.lstrip("-").isdigit() for p in parts if p):
      raise ValueError(f"{key} must be class indices, e.g. (3, 12), got {value!r}")
    value = [int(p) for p in parts if p]
  items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
  if not isinstance(items, (list, tuple)):
    raise ValueError(f"{key} must be a tuple of class indices (or None: all), got {value!r}")
  out = tuple(check_int(c, f"{key} entries", 0) for c in items)
  if not out:
    raise ValueError(f"{key} is empty; use None for all classes")
  if len(set(out)) != len(out):
    raise ValueError(f"{key} has duplicates: {out}")
  bad = [c for c in out if num_classes is not None and c >= num_classes]
  if bad:
    raise ValueError(f"{key} {bad} are out of range [0, {num_classes})")
  return out
