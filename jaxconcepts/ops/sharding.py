"""Row-parallel evaluation over a mesh: pad, split the rows over the devices, drop the padding.

The evaluation stages (attribution over images, NMF over classes, crop search
over images) are independent per row of their leading axis. :func:`row_map`
runs a per-block function on every device of a `jax.sharding.Mesh` with
`jax.shard_map`: the row arguments are padded (repeating their last row) to a
multiple of the device count and split along their leading axis over *all*
the mesh's axes together; the other arguments (the weights) are passed whole
to every device as arguments, never closed over; the outputs' leading axes are
concatenated and cut back to the real rows. :func:`pad_rows` and
:func:`row_sharding` are the host-side pieces for stages that shard with
`jax.device_put` and let XLA partition the batched program.

Padding rows are copies of real ones, so they compute nothing new and can
never introduce a NaN; they are dropped before any result is returned.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def rows_spec(mesh: Mesh) -> P:
  """The leading axis split over every axis of `mesh` (in order)."""
  return P(tuple(mesh.axis_names))


def row_sharding(mesh: Mesh) -> NamedSharding:
  """`NamedSharding` of the leading axis over the whole mesh."""
  return NamedSharding(mesh, rows_spec(mesh))


def padded_size(n: int, mesh: Mesh) -> int:
  """`n` rounded up to a multiple of the mesh's device count."""
  d = int(mesh.size)
  return -(-int(n) // d) * d


def pad_rows(a: Any, rows: int) -> Any:
  """`a` (n, ...) with its last row repeated up to `rows` rows (numpy or jax)."""
  pad = rows - a.shape[0]
  if pad < 0:
    raise ValueError(f"cannot pad {a.shape[0]} rows down to {rows}")
  if pad == 0:
    return a
  xp = np if isinstance(a, np.ndarray) else jnp
  return xp.concatenate([a, xp.repeat(a[-1:], pad, axis=0)])


def row_map(fn: Callable[..., Any], mesh: Mesh, whole: Any, rows: Any, n: int) -> Any:
  """``fn(whole, rows_block)`` on every device's block of rows; outputs cut to `n` rows.

  Args:
    fn: ``fn(whole, rows) -> outputs``, every output with a leading row axis
      (None leaves allowed); it sees one device's block of the padded rows.
    mesh: the devices (all axes together split the rows).
    whole: a pytree given entire to every device (weights, keys, scalars).
    rows: a pytree of arrays with `n` leading rows each.
    n: the number of real rows.

  Returns:
    fn's outputs over all rows, (n, ...) each.
  """
  total = padded_size(n, mesh)
  rows = jax.tree.map(lambda a: pad_rows(a, total), rows)
  spec = rows_spec(mesh)
  out = jax.shard_map(fn, mesh=mesh, in_specs=(P(), spec), out_specs=spec,
                      check_vma=False)(whole, rows)
  return jax.tree.map(lambda a: a[:n], out)
