"""The bottom layer: one helper per idea, used by every other layer.

Validation of user values (one-line errors that name the value and what was
expected), PRNG keys, mapping a jitted function over a large host array in
fixed-size batches, and atomic file writes. Nothing here imports from the rest
of the package.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
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
# Atomic writes, and a full disk as one line.


class DiskFullError(OSError):
  """No space left on the device (ENOSPC), as one line naming the path and what to do.

  Raised instead of the raw error of whatever hit the full disk (Python's
  `OSError`, orbax's `ValueError` carrying TensorStore's "os_error_code=28"), after
  the partial file was removed, so the next run finds nothing half-written.
  """

  def __init__(self, message: str):
    super().__init__(message)
    self.errno = errno.ENOSPC


def free_bytes(path: str) -> int:
  """Free bytes on the filesystem of `path` (or of its nearest existing parent)."""
  probe = os.path.abspath(path)
  while not os.path.exists(probe) and os.path.dirname(probe) != probe:
    probe = os.path.dirname(probe)
  return shutil.disk_usage(probe).free


def _mb(n: int) -> str:
  return f"{n / 2**20:.1f} MB"


def disk_full_error(path: str, needed: int | None = None) -> DiskFullError:
  """The one-line error for a write of `path` that found the disk full.

  Args:
    path: the file or folder that could not be written.
    needed: bytes the write needed, if known (named in the message).
  """
  need = f"needs about {_mb(needed)}, " if needed else ""
  return DiskFullError(
      f"disk full: cannot write {path} ({need}{_mb(free_bytes(path))} free on its "
      "filesystem, No space left on device); nothing half-written was kept: free some space "
      "and run the same command again (training resumes from its last complete checkpoint)")


def is_disk_full(exc: BaseException | None) -> bool:
  """Whether `exc` (or an exception it was raised from) is ENOSPC, however it was wrapped.

  orbax and TensorStore report a full disk as a `ValueError` whose text carries
  "No space left on device" / "os_error_code='28'", not as an `OSError`.
  """
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
      return True
    text = str(exc)
    if "No space left on device" in text or "os_error_code='28'" in text:
      return True
    exc = exc.__cause__ or exc.__context__
  return False


def remove_quietly(path: str) -> None:
  """Removes a file or folder if it exists (cleanup after a failed write)."""
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path, ignore_errors=True)
  elif os.path.lexists(path):
    try:
      os.remove(path)
    except OSError:
      pass


def write_file_atomic(path: str, write: Callable[[str], None], suffix: str = "") -> None:
  """`write(tmp)` to a temporary file next to `path`, then a rename: never half a file.

  On any failure the temporary file is removed, and `path` keeps its previous
  content (or stays absent); a full disk becomes a `DiskFullError` naming `path`.

  Args:
    path: the file to (re)write.
    write: writes the whole content to the path it is given.
    suffix: the temporary file's extension (e.g. ".png", for writers that infer the format).

  Raises:
    DiskFullError: one line, if the disk filled up.
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}{suffix}"
  try:
    write(tmp)
    os.replace(tmp, path)
  except BaseException as e:
    remove_quietly(tmp)
    if is_disk_full(e):
      raise disk_full_error(path) from None
    raise


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` via a temporary file and a rename (see `write_file_atomic`)."""

  def write(tmp: str) -> None:
    with open(tmp, "w") as f:
      f.write(text)

  write_file_atomic(path, write)


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
