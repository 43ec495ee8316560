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
    fn's outputs over all rows, (n, ...) each, replicated over the mesh.
  """
  total = padded_size(n, mesh)
  rows = jax.tree.map(lambda a: pad_rows(a, total), rows)
  spec = rows_spec(mesh)
  out = jax.shard_map(fn, mesh=mesh, in_specs=(P(), spec), out_specs=spec,
                      check_vma=False)(whole, rows)
  # Replicated results: whole on every device, so every process can read them.
  return jax.lax.with_sharding_constraint(jax.tree.map(lambda a: a[:n], out),
                                          NamedSharding(mesh, P()))


def merge_top_k(state: dict, candidates: dict, m: int) -> dict:
  """{key: (scores (B, m), ids (B, m))}: the running top-m merged with candidates (B, r).

  The state's entries come first, then the candidates in their order, so on
  equal scores the earlier entry wins (`jax.lax.top_k` keeps the lower index).
  """
  out = {}
  for key, (old_s, old_i) in state.items():
    new_s, new_i = candidates[key]
    top_s, pos = jax.lax.top_k(jnp.concatenate([old_s, new_s], axis=1), m)
    out[key] = (top_s, jnp.take_along_axis(jnp.concatenate([old_i, new_i], axis=1), pos, 1))
  return out


def blockwise_top_k(block_step: Callable[..., dict], mesh: Mesh, whole: Any, rows: Any,
                    state: dict) -> dict:
  """A running top-m search step with the batch's rows split over `mesh`.

  Each device runs ``block_step(whole, rows_block, first_row, fresh_state)`` on
  its block (``first_row``: the block's first row in the batch, for global
  ids; ``fresh_state``: `state` emptied to -inf scores and -1 ids) and keeps
  its own top-m; these are merged into `state` in device order (= row order),
  so ties resolve as in one search over the whole batch. The batch's rows must
  be a multiple of the device count (no padding: padded rows would be hits).

  Returns:
    The new state, as `block_step` on the whole batch would give.
  """
  n = jax.tree.leaves(rows)[0].shape[0]
  if n % mesh.size:
    raise ValueError(f"the batch's {n} rows must be a multiple of the {mesh.size} devices")

  def block(w, r):
    fresh = {k: (jnp.full_like(s, -jnp.inf), jnp.full_like(i, -1)) for k, (s, i) in w[1].items()}
    out = block_step(w[0], r[0], r[1][0], fresh)
    return jax.tree.map(lambda a: a[None], out)  # (1, B, m) per device

  spec = rows_spec(mesh)
  cand = jax.shard_map(block, mesh=mesh, in_specs=(P(), spec), out_specs=spec,
                       check_vma=False)((whole, state), (rows, jnp.arange(n, dtype=jnp.int32)))
  flat = lambda a: jnp.moveaxis(a, 0, 1).reshape(a.shape[1], -1)  # (d, B, m) -> (B, d m)
  m = jax.tree.leaves(state)[0].shape[1]
  return merge_top_k(state, jax.tree.map(flat, cand), m)
