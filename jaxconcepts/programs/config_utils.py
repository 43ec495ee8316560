"""Helpers for `configs/*.py` (big_vision style) and config validation.

`get_config(arg)` receives the string after the colon in
`--config=configs/X.py:quick,layer=-2`; `parse_arg` turns it into a
ConfigDict of typed values, starting from defaults.
"""

from typing import Any

import ml_collections

from jaxconcepts.utils import check_choice  # noqa: F401  (configs call it from here)


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
