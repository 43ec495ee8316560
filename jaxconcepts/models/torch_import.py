"""Importing a torchvision ResNet state dict into `models.resnet.ResNet` variables.

torchvision's keys (`layer3.5.conv2.weight`, `layer1.0.downsample.1.running_var`,
`fc.bias`) map onto our module paths (`layer3_5/conv2/kernel`,
`layer1_0/downsample_bn/var`, `logits/bias`); conv kernels go from OIHW to
HWIO and the dense kernel from (out, in) to (in, out). Every entry is checked
against the variables of the matching model, so a wrong architecture fails
with the offending key named rather than producing a silently wrong model.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

_TORCH_LEAF = {"weight": "kernel", "bias": "bias", "running_mean": "mean",
               "running_var": "var"}

_Path = tuple[str, ...]


def _torch_path(key: str) -> tuple[str, _Path, str] | None:
  """Maps a torchvision ResNet state-dict key to (collection, module path, leaf).

  Returns None for entries with no counterpart (`num_batches_tracked`).
  """
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


def _as_numpy(value: Any, path: _Path, name: str) -> np.ndarray:
  """A torch tensor or array as float32 numpy, transposed to our kernel layout."""
  arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value,
                   dtype=np.float32)
  if name == "kernel" and arr.ndim == 4:
    return arr.transpose(2, 3, 1, 0)  # OIHW -> HWIO
  if path == ("logits",) and name == "kernel":
    return arr.T  # (out, in) -> (in, out)
  return arr


def _nest(flat: Mapping[_Path, np.ndarray]) -> dict:
  """{(collection, *path, leaf): array} -> nested dicts of jax arrays."""
  nested: dict = {}
  for full, arr in flat.items():
    node = nested
    for part in full[:-1]:
      node = node.setdefault(part, {})
    node[full[-1]] = jnp.asarray(arr)
  return nested


def params_from_torch(state_dict: Mapping[str, Any], reference: dict) -> dict:
  """Converts a torchvision ResNet state dict into this package's variables.

  Args:
    state_dict: `torchvision.models.resnetXX().state_dict()` (tensors or arrays).
    reference: variables of the matching model from `init_variables`, used to
      check that every leaf is present with the right shape.

  Returns:
    {'params', 'batch_stats'} with conv kernels transposed OIHW -> HWIO and the
    dense kernel transposed (out, in) -> (in, out), float32.

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
    arr = _as_numpy(value, path, name)
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
    raise ValueError(f"state dict lacks entries for {missing[:5]} "
                     f"(and {max(0, len(missing) - 5)} more)")
  return _nest(out)
