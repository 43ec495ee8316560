"""The bottom layer: one helper per idea, used by every other layer.

Validation of user values (one-line errors that name the value and what was
expected), PRNG keys, mapping a jitted function over a large host array in
fixed-size batches, and atomic file writes. Nothing here imports from the rest
of the package.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np


# ---------------------------------------------------------------------------
# Validation.


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
  """Returns `value` if it is one of `choices`.

  Raises:
    ValueError: naming `name`, the bad `value` and the valid choices.
  """
  choices = list(choices)
  if value not in choices:
    raise ValueError(f"unknown {name} {value!r}; valid {name}s: {choices}")
  return value


def check_int(value: Any, name: str, minimum: int = 1) -> int:
  """Returns `value` as an int if it is an integer (not a bool) >= `minimum`.

  Raises:
    ValueError: naming `name`, the bad `value` and the minimum.
  """
  if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
      or value < minimum):
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return int(value)


def is_tracer(x: Any) -> bool:
  """Whether `x` is a JAX tracer (abstract under `jit` / `vmap` / `grad`).

  Public functions check values (ranges, finiteness) only when they are
  concrete, so they stay usable inside `jit` and `vmap`.
  """
  return isinstance(x, jax.core.Tracer)


# ---------------------------------------------------------------------------
# PRNG keys.


def as_key(key: Any = None) -> jax.Array:
  """A PRNG key from None (seed 0), an int seed, or a key (passed through).

  Both raw `uint32[2]` keys (`jax.random.PRNGKey`) and typed keys
  (`jax.random.key`) pass through unchanged; an int becomes
  `jax.random.PRNGKey(int)`.
  """
  if key is None:
    return jax.random.PRNGKey(0)
  if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
    return jax.random.PRNGKey(int(key))
  return key


def seed_keys(seeds: Sequence[int]) -> jax.Array:
  """One raw PRNG key per seed, stacked: (S, 2) uint32.

  Raises:
    ValueError: if `seeds` is empty or has duplicates.
  """
  seeds = [int(s) for s in seeds]
  if not seeds:
    raise ValueError("seeds must not be empty")
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"seeds has duplicates: {seeds}")
  return jnp.stack([jax.random.PRNGKey(s) for s in seeds])


# ---------------------------------------------------------------------------
# Batching over a large host array.


def map_batches(fn: Callable[..., Any], *arrays: np.ndarray, args: Sequence[Any] = (),
                batch_size: int = 256) -> np.ndarray:
  """`fn(*args, *batch)` over aligned host arrays in fixed-size batches.

  Every call sees the same number of rows: `batch_size`, or N when N is
  smaller. The last batch is zero-padded and the padding dropped, so `fn`
  compiles once per shape. `fn` is jitted here unless it already is (has
  `.lower`): pass one jitted function that takes the weights in `args`, so a
  new set of weights of the same shapes reuses the compilation.

  Args:
    fn: (*args, *(B, ...)) -> (B, ...) array.
    *arrays: (N, ...) arrays, N >= 1, all of the same length.
    args: leading arguments passed unchanged to every call (e.g. variables).
    batch_size: rows per call, >= 1.

  Returns:
    (N, ...) numpy array of the outputs, concatenated.

  Raises:
    ValueError: for arrays of different lengths, N = 0 or a bad batch size.
  """
  batch_size = check_int(batch_size, "batch_size")
  if not arrays:
    raise ValueError("map_batches needs at least one array")
  n = arrays[0].shape[0]
  if any(a.shape[0] != n for a in arrays):
    raise ValueError(f"arrays differ in length: {[a.shape[0] for a in arrays]}")
  if n == 0:
    raise ValueError("map_batches needs at least one row")
  bs = min(batch_size, n)
  jfn = fn if hasattr(fn, "lower") else jax.jit(fn)
  out = []
  for start in range(0, n, bs):
    chunk = [np.asarray(a[start:start + bs]) for a in arrays]
    k = chunk[0].shape[0]
    if k < bs:
      chunk = [np.concatenate([c, np.zeros((bs - k,) + c.shape[1:], c.dtype)]) for c in chunk]
    out.append(np.asarray(jfn(*args, *chunk))[:k])
  return np.concatenate(out, axis=0)


# ---------------------------------------------------------------------------
# Atomic writes.


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` via a temporary file and a rename: readers never see half a file."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes `obj` as indented JSON, atomically (see `write_text_atomic`)."""
  write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=float))


def read_json(path: str) -> Any:
  """The JSON document at `path`.

  Raises:
    FileNotFoundError: if there is no file.
    ValueError: one line naming a damaged (truncated, not JSON) file and what to do.
  """
  with open(path) as f:
    text = f.read()
  try:
    return json.loads(text)
  except ValueError as e:
    raise ValueError(f"{path} is damaged (not valid JSON: {e}); delete it, or restore it from "
                     "a copy, and run again") from None
