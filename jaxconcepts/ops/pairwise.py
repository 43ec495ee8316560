# Copyright 2025 The jaxconcepts Authors.
# SPDX-License-Identifier: Apache-2.0
"""All class pairs at once: pairwise logistic classifiers as grouped matmuls.

Class contrasting (Herdt & Otero Baguer, Sec. 5) trains one linear classifier
for every unordered pair of classes (a, b): a weight vector and a scalar bias,
binary cross-entropy with logits averaged over the pair's ``n_a + n_b``
samples, zero initialisation, full batch, plain SGD (default 100 epochs,
lr 0.01), no class balancing. :func:`train_pairwise` runs exactly that
protocol for all ``C (C - 1) / 2`` pairs together.

Label convention
----------------
For the pair ``(a, b)`` with ``a < b``, vectors of class ``a`` have label 1 and
vectors of class ``b`` label 0, so ``z = w . x + bias > 0`` means "a". The
stored hyperplane therefore points toward the smaller class index; use
:func:`hyperplane` to get it oriented toward either class. (The authors' code
uses the opposite labels, class i -> 0, and trains both orders; with zero
initialisation the classifier for ``(b, a)`` is exactly the negation of the one
for ``(a, b)`` -- the SGD updates are sign-symmetric in IEEE arithmetic -- so
each unordered pair is trained once.) Accuracy counts ``z > 0`` as predicting
``a`` (as the reference's ``outputs > 0``): an exact tie ``z == 0`` counts as
predicting ``b``.

How it is computed
------------------
Write ``u[c, o]`` for the classifier of pair ``{c, o}`` oriented toward ``c``
(``u[c, o] = -u[o, c]``). The gradient of pair ``(a, b)`` is
``(G[a, b] - G[b, a]) / (n_a + n_b)`` with
``G[c, o] = sum_{i in c} (sigmoid(u[c, o] . x_i + bias[c, o]) - 1) x_i``.
So in each step, for each class ``c``, the logits of *all* pairs touching
``c`` are one matrix product ``X_c @ U_c^T`` (``(N, D) x (D, C)``) and their
gradient contributions another, ``R_c^T @ X_c``: batched over classes these
are two large matmuls per step, never a copy of the data per pair. Ragged
classes are zero-padded to ``Nmax`` and masked.

The weights live in dense blocks. Classes are split into groups of ``g``; a
diagonal block (the pairs within one group) keeps the antisymmetric
``(g, g, D)`` layout ``u[c, o]`` above; a cross block (group ``I`` against a
later group ``J``) keeps ``(2g, g, D)``: rows for the classes of ``I`` then
``J``, each row holding its class's pairs oriented toward it. Both store each
pair twice (both orientations, exact negations of each other), so that every
class's vectors meet their weights in one contiguous batched matmul, and the
update subtracts each entry's partner (a transpose). Every pair lies in
exactly one block, and pairs are independent, so blocks are trained one after
another for all epochs: that bounds memory (``memory_budget_bytes``) at no
extra arithmetic. With the default 2 GiB budget, up to about 350 classes of
500 vectors at D=512 are one block.

Within a block the class (row) axis is sharded across the devices of a
``jax.sharding.Mesh`` (all local devices by default; rows padded with empty
classes to a multiple of the device count). The matmuls are local to a device;
the partner transpose in the update is an all-to-all of the gradient.

Cost per epoch: ``4 D (C - 1) C Nmax`` flops, the per-pair loop's
``4 D (n_a + n_b)`` summed over pairs for equal classes. Each step also streams
the weight-sized arrays about six times, so with few vectors per class the
step is bound by memory bandwidth rather than by the matmuls. Arithmetic is
float32 with ``precision="highest"`` matmuls by default, like the float32
PyTorch reference. Results come back as host numpy arrays (1000 classes at
D=1024: 2 GB of weights in host memory, outside the per-block device budget).
Training that diverges (non-finite weights) is an error, not a result.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import chex
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np

METRICS_AT = ("final", "last_step")
_DEFAULT_BUDGET = 2 * 2**30


class PairwiseResult(NamedTuple):
  """Classifiers for all unordered class pairs, in ``np.triu_indices`` order.

  Attributes:
    pairs: (P, 2) int32, rows ``(a, b)`` with ``a < b``, lexicographic.
    weights: (P, D) float32, oriented toward ``a`` (label 1 = class ``a``).
    biases: (P,) float32.
    accuracy: (P,) float32, training accuracy on the pair's vectors.
    loss: (P,) float32, mean binary cross-entropy on the pair's vectors.
    num_classes: C.
  """
  pairs: np.ndarray
  weights: np.ndarray
  biases: np.ndarray
  accuracy: np.ndarray
  loss: np.ndarray
  num_classes: int


def num_pairs(num_classes: int) -> int:
  """Number of unordered pairs of `num_classes` classes."""
  return num_classes * (num_classes - 1) // 2


def pair_index(a: Any, b: Any, num_classes: int) -> Any:
  """Row of pair ``(a, b)``, ``a < b``, in a :class:`PairwiseResult`.

  Works elementwise on integer numpy arrays as well as on Python ints.
  """
  a = np.asarray(a, np.int64)
  b = np.asarray(b, np.int64)
  idx = a * num_classes - a * (a + 1) // 2 + (b - a - 1)
  return int(idx) if idx.ndim == 0 else idx


def hyperplane(result: PairwiseResult, a: int,
               b: int) -> tuple[np.ndarray, float]:
  """The classifier of classes ``a`` and ``b``, oriented toward ``a``.

  Args:
    result: output of :func:`train_pairwise`.
    a: the class the hyperplane points to (``w . x + bias > 0`` means ``a``).
    b: the other class; either order of ``a`` and ``b`` is fine.

  Returns:
    ``(w, bias)``: (D,) float32 array and a float. For ``a > b`` this is the
    negation of the stored ``(b, a)`` classifier, which is exactly what
    training ``(a, b)`` from zero would give.
  """
  c = result.num_classes
  for name, v in (("a", a), ("b", b)):
    if not 0 <= int(v) < c:
      raise ValueError(f"class {name}={v} is out of range [0, {c}).")
  if a == b:
    raise ValueError(f"a and b must differ, got a == b == {a}.")
  if a < b:
    i = pair_index(a, b, c)
    return result.weights[i], float(result.biases[i])
  i = pair_index(b, a, c)
  return -result.weights[i], -float(result.biases[i])


def pad_classes(
    vectors: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """Stacks per-class (n_c, D) arrays into a zero-padded (C, Nmax, D) array.

  Args:
    vectors: sequence of C arrays, each (n_c, D), the same D.

  Returns:
    ``(padded, counts)``: (C, Nmax, D) float32 and (C,) int32.

  Raises:
    ValueError: an array is not 2-D or the arrays disagree on D.
  """
  arrays = [np.asarray(v) for v in vectors]
  for c, v in enumerate(arrays):
    if v.ndim != 2:
      raise ValueError(
          f"class {c}: expected a 2-D (n_c, D) array, got shape {v.shape}.")
  dims = {v.shape[1] for v in arrays}
  if len(dims) > 1:
    bad = [(c, v.shape[1]) for c, v in enumerate(arrays)
           if v.shape[1] != arrays[0].shape[1]]
    raise ValueError(
        f"mismatched D: class 0 has D={arrays[0].shape[1]} but (class, D) = "
        f"{bad[:5]}; all classes need the same vector dimension.")
  counts = np.array([v.shape[0] for v in arrays], np.int32)
  n_max = int(counts.max()) if len(arrays) else 0
  d = arrays[0].shape[1] if arrays else 0
  padded = np.zeros((len(arrays), n_max, d), np.float32)
  for c, v in enumerate(arrays):
    padded[c, :v.shape[0]] = v
  return padded, counts


def _check_options(epochs, lr, metrics_at) -> None:
  """Validates the training options (host side)."""
  if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)):
    raise TypeError(f"epochs must be an int, got {epochs!r}.")
  if epochs < 1:
    raise ValueError(f"epochs must be >= 1, got {epochs}.")
  if not (np.isfinite(lr) and lr > 0):
    raise ValueError(f"lr must be a positive finite number, got {lr}.")
  if metrics_at not in METRICS_AT:
    raise ValueError(
        f"metrics_at must be one of {METRICS_AT}, got {metrics_at!r}.")


def _as_padded(vectors, counts) -> tuple[np.ndarray, np.ndarray]:
  """(C, Nmax, D) vectors and (C,) counts from either input form."""
  if isinstance(vectors, (list, tuple)):
    if counts is not None:
      raise ValueError("counts must be None when vectors is a list of "
                       "per-class arrays (the counts are their lengths).")
    return pad_classes(vectors)
  x = np.asarray(vectors)
  if x.ndim != 3:
    raise ValueError(
        f"vectors must be (C, Nmax, D) or a list of (n_c, D) arrays, got "
        f"shape {x.shape}.")
  if counts is None:
    counts = np.full((x.shape[0],), x.shape[1], np.int32)
  counts = np.asarray(counts)
  if counts.shape != (x.shape[0],):
    raise ValueError(f"counts must have shape (C,) = ({x.shape[0]},), got "
                     f"{counts.shape}.")
  if not np.issubdtype(counts.dtype, np.integer):
    raise TypeError(f"counts must be integers, got dtype {counts.dtype}.")
  if (counts > x.shape[1]).any() or (counts < 0).any():
    raise ValueError(f"counts must lie in [0, Nmax={x.shape[1]}], got "
                     f"min {counts.min()}, max {counts.max()}.")
  return x, counts


def _check_vectors(x: np.ndarray, counts: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Float32 vectors with zeroed padding and int32 counts, all values checked."""
  if not (np.issubdtype(x.dtype, np.floating)
          or np.issubdtype(x.dtype, np.integer)):
    raise TypeError(f"vectors must be real numbers, got dtype {x.dtype}.")
  num_classes = x.shape[0]
  if num_classes < 2:
    raise ValueError(
        f"need at least 2 classes to form a pair, got {num_classes}.")
  if x.shape[2] < 1:
    raise ValueError(f"vectors must have D >= 1, got shape {x.shape}.")
  empty = np.flatnonzero(counts == 0)
  if empty.size:
    raise ValueError(
        f"class {int(empty[0])} has zero vectors (classes with none: "
        f"{empty[:10].tolist()}); every class needs at least one vector.")
  counts = counts.astype(np.int32)
  x = x.astype(np.float32, copy=False)
  for c in range(num_classes):
    if not np.isfinite(x[c, :counts[c]]).all():
      raise ValueError(f"class {c} contains NaN or inf in its vectors.")
  # Zero the padding so that garbage (even NaN) there cannot leak into sums.
  if (counts < x.shape[1]).any():
    valid = np.arange(x.shape[1])[None, :] < counts[:, None]
    x = np.where(valid[:, :, None], x, np.float32(0))
  return x, counts


def _check_inputs(vectors, counts, epochs, lr, metrics_at):
  """Validates and normalises the inputs (host side, before any training)."""
  _check_options(epochs, lr, metrics_at)
  return _check_vectors(*_as_padded(vectors, counts))


# ---------------------------------------------------------------------------
# Device code: one block of pairs, all epochs.
#
# A block holds rows r (classes, with their vectors x[r]) and, per row, K
# oriented weights w[r, k] (the pairs touching row r's class). Every entry has
# a partner entry holding the same pair oriented the other way, and
# `_partner(a)[r, k]` is the partner's value of `a`:
#   "diag"  (the pairs within one group of g classes; rows = columns = the
#           group): the partner of (r, k) is (k, r): a transpose.
#   "cross" (group I against a later group J, g classes each; rows = I then J,
#           K = g): the partner of (i, j) is (g + j, i) and vice versa.
# With w = -partner(w) (exactly, from zero init), one SGD step is
#   s = x @ w^T + bias,  r = dBCE/ds (masked),  G = r^T @ x,
#   w -= lr (G - partner(G)) / (n_a + n_b),
# two batched matmuls per step in which every row's layout is contiguous.


def _partner(a: jax.Array, kind: str) -> jax.Array:
  """The partner entries' values of `a` (R, K, ...) (see the comment above)."""
  if kind == "diag":
    return jnp.swapaxes(a, 0, 1)
  g = a.shape[1]
  return jnp.concatenate(
      [jnp.swapaxes(a[g:], 0, 1), jnp.swapaxes(a[:g], 0, 1)], axis=0)


def _is_label_one(rows, cols, kind):
  """(R, K) bool: row r's class is the pair's first class (label 1)."""
  r = jnp.arange(rows)[:, None]
  if kind == "diag":
    return r < jnp.arange(cols)[None, :]
  return jnp.broadcast_to(r < cols, (rows, cols))


def _row_constraint(a: jax.Array, sharding: NamedSharding | None) -> jax.Array:
  """`a` constrained to shard its row axis as `sharding` (None: unchanged)."""
  if sharding is None:
    return a
  return jax.lax.with_sharding_constraint(a, sharding)


def _logits(x, w, bias, precision):
  """Logits toward each row's class: (R, N, K) from x (R, N, D), w (R, K, D)."""
  s = jnp.einsum("rnd,rkd->rnk", x, w, precision=precision)
  return s + bias[:, None, :]


def _sgd_step(x, mask, n_pair, lr, w, bias, *, kind, precision, w_sharding):
  """One full-batch SGD step of every entry of a block: the new (w, bias)."""
  s = _logits(x, w, bias, precision)
  r = -jax.nn.sigmoid(-s) * mask[:, :, None]        # d(loss sum)/d(logit)
  g = jnp.einsum("rnk,rnd->rkd", r, x, precision=precision)
  gb = jnp.sum(r, axis=1)
  # (G - partner(G)) / n is exactly antisymmetric, so w stays so too.
  grad_w = (g - _partner(g, kind)) / n_pair[:, :, None]
  grad_b = (gb - _partner(gb, kind)) / n_pair
  w = _row_constraint(w - lr * grad_w, w_sharding)
  return w, bias - lr * grad_b


def _metrics(x, mask, n_pair, w, bias, *, kind, precision):
  """Mean BCE and training accuracy of every entry's pair: (R, K) each."""
  s = _logits(x, w, bias, precision)
  m = mask[:, :, None]
  loss_sum = jnp.sum(jax.nn.softplus(-s) * m, axis=1)
  # Label-1 rows are right iff z = s > 0; label-0 rows see s = -z and are
  # right iff z <= 0 iff s >= 0 (ties count as predicting the second class).
  first = _is_label_one(s.shape[0], s.shape[2], kind)[:, None, :]
  n_right = jnp.sum(jnp.where(first, s > 0, s >= 0) * m, axis=1)
  return ((loss_sum + _partner(loss_sum, kind)) / n_pair,
          (n_right + _partner(n_right, kind)) / n_pair)


@functools.partial(jax.jit, static_argnames=(
    "kind", "epochs", "metrics_at", "precision", "w_sharding"))
def _train_block(x, mask, n_pair, lr, *, kind, epochs, metrics_at, precision,
                 w_sharding):
  """All epochs for one block; returns (w, bias, loss, accuracy)."""
  rows, _, d = x.shape
  cols = n_pair.shape[1]
  w = _row_constraint(jnp.zeros((rows, cols, d), x.dtype), w_sharding)
  bias = jnp.zeros((rows, cols), x.dtype)
  step = functools.partial(_sgd_step, x, mask, n_pair, lr, kind=kind,
                           precision=precision, w_sharding=w_sharding)
  n_first = epochs if metrics_at == "final" else epochs - 1
  w, bias = jax.lax.fori_loop(0, n_first, lambda _, wb: step(*wb), (w, bias))
  loss, acc = _metrics(x, mask, n_pair, w, bias, kind=kind,
                       precision=precision)
  if n_first < epochs:  # "last_step": the reference reports these metrics.
    w, bias = step(w, bias)
  if kind == "cross":  # only the rows oriented toward group I are returned
    w, bias, loss, acc = w[:cols], bias[:cols], loss[:cols], acc[:cols]
  return w, bias, loss, acc


# ---------------------------------------------------------------------------
# Host side: blocks, sharding, assembly.


def block_bytes(group: int, n_max: int, dim: int, num_devices: int = 1, *,
                cross: bool = True) -> int:
  """Estimated per-device bytes of one block's device working set.

  A cross block pairs two groups of `group` classes: 2g rows of vectors
  (2g, Nmax, D) and weights (2g, g, D); a diagonal block (all classes in one
  group, `cross=False`) has g rows. About four weight-sized float32 buffers
  are live (weights, gradient, its partner view, the update) plus a few
  (rows, Nmax, g) logit buffers; rows are sharded over the devices.
  """
  rows = 2 * group if cross else group
  floats = (4 * rows * group * dim + rows * n_max * dim
            + 3 * rows * n_max * group) / num_devices
  return int(4 * floats)


def _largest_fitting_group(num_classes: int, n_max: int, dim: int,
                           num_devices: int, budget: int) -> int:
  """Largest multiple of the device count whose cross block fits `budget`.

  Then as many groups as needed, as evenly filled as possible (less padding).

  Raises:
    ValueError: not even one block of `num_devices` classes fits.
  """
  group = 0
  lo, hi = 1, -(-num_classes // num_devices)  # binary search over g / devices
  while lo <= hi:
    mid = (lo + hi) // 2
    if block_bytes(mid * num_devices, n_max, dim, num_devices) <= budget:
      group, lo = mid * num_devices, mid + 1
    else:
      hi = mid - 1
  if group == 0:
    need = block_bytes(num_devices, n_max, dim, num_devices)
    raise ValueError(
        f"memory_budget_bytes={budget} is too small: one block of "
        f"{num_devices} classes (Nmax={n_max}, D={dim}) needs about "
        f"{need} bytes per device.")
  return -(-num_classes // -(-num_classes // group))


def classes_per_block(num_classes: int, n_max: int, dim: int,
                      num_devices: int = 1, *,
                      memory_budget_bytes: int | None = None,
                      classes_per_chunk: int | None = None) -> int:
  """Group size g that :func:`train_pairwise` uses (a multiple of devices).

  Args:
    num_classes: C.
    n_max: vectors per class after padding.
    dim: D.
    num_devices: devices the rows are sharded over.
    memory_budget_bytes: per-device budget (default 2 GiB), see
      :func:`block_bytes`.
    classes_per_chunk: explicit group size; overrides the budget.

  Returns:
    g; the C classes form ceil(C / g) groups and ceil(C/g) (ceil(C/g) + 1) / 2
    blocks. g >= C means one block.

  Raises:
    ValueError: a bad `classes_per_chunk`, or a budget too small for a block.
  """
  budget, group = memory_budget_bytes, classes_per_chunk
  if group is not None:
    if (isinstance(group, bool) or not isinstance(group, (int, np.integer))
        or group < 1):
      raise ValueError(
          f"classes_per_chunk must be a positive int, got {group!r}.")
    group = min(int(group), num_classes)
  else:
    budget = _DEFAULT_BUDGET if budget is None else budget
    if budget <= 0:
      raise ValueError(f"memory_budget_bytes must be positive, got {budget}.")
    c_pad = -(-num_classes // num_devices) * num_devices
    if block_bytes(c_pad, n_max, dim, num_devices, cross=False) <= budget:
      group = num_classes
    else:
      group = _largest_fitting_group(num_classes, n_max, dim, num_devices,
                                     budget)
  return -(-group // num_devices) * num_devices


def _default_mesh() -> Mesh:
  """A 1-D mesh ("pairs") of all devices."""
  return Mesh(np.array(jax.devices()), ("pairs",))


def _precision(precision: str) -> jax.lax.Precision:
  """`precision` as a `jax.lax.Precision`, or ValueError naming the choices."""
  try:
    return jax.lax.Precision(precision)
  except ValueError as e:
    raise ValueError(f"precision must be 'highest', 'high' or 'default', got "
                     f"{precision!r}.") from e


def _group_data(x: np.ndarray, counts: np.ndarray, k: int, group: int
                ) -> tuple[np.ndarray, np.ndarray, int]:
  """Vectors and counts of group k, padded with empty classes (host).

  Returns (g, Nmax, D) vectors, (g,) counts and the number of real classes.
  """
  num_classes, n_max, dim = x.shape
  idx = np.arange(k * group, (k + 1) * group)
  real = idx < num_classes
  if real.all() and group == num_classes:  # one group, no padding: no copy
    return x, counts, num_classes
  xg = np.zeros((group, n_max, dim), np.float32)
  xg[real] = x[idx[real]]
  cnt = np.zeros((group,), np.int32)
  cnt[real] = counts[idx[real]]
  return xg, cnt, int(real.sum())


def _device_data(xr, cr, ci, cj, rows: NamedSharding):
  """Rows' vectors and masks, pair sizes n_a + n_b (>= 1), on the mesh.

  xr: (R, Nmax, D) vectors of the block's rows, cr: (R,) their counts; ci, cj:
  counts of the pair columns' first and second classes (a cross block has
  R = len(ci) + len(cj) rows, whose pair sizes are n and n.T).
  """
  n_max = xr.shape[1]
  mask = (np.arange(n_max)[None, :] < cr[:, None]).astype(np.float32)
  n = (ci[:, None] + cj[None, :]).astype(np.float32)
  if len(cr) > len(ci):  # cross block: rows I then J, partner sizes
    n = np.concatenate([n, n.T])
  # may_alias: the host vectors are only read while this call runs, so the device may use
  # their memory in place rather than a copy (benchmarks/README.md, W2).
  return (jax.device_put(xr, rows, may_alias=True), jax.device_put(mask, rows),
          jax.device_put(np.maximum(n, 1.0), rows))


class _Outputs:
  """Host arrays for all P pairs, filled block by block."""

  def __init__(self, num_classes: int, dim: int):
    p = num_pairs(num_classes)
    self.num_classes = num_classes
    self.w = np.empty((p, dim), np.float32)
    self.b = np.empty((p,), np.float32)
    self.acc = np.empty((p,), np.float32)
    self.loss = np.empty((p,), np.float32)

  def store(self, ia, ib, a0, b0, w, bias, loss, acc) -> None:
    """Writes local block entries (ia, ib) for global classes a0+ia, b0+ib."""
    rows = pair_index(a0 + ia, b0 + ib, self.num_classes)
    self.w[rows] = np.asarray(w)[ia, ib]
    self.b[rows] = np.asarray(bias)[ia, ib]
    self.loss[rows] = np.asarray(loss)[ia, ib]
    self.acc[rows] = np.asarray(acc)[ia, ib]

  def result(self) -> PairwiseResult:
    """The filled arrays with the pairs in ``np.triu_indices`` order."""
    c = self.num_classes
    pairs = np.stack(np.triu_indices(c, 1), axis=1).astype(np.int32)
    return PairwiseResult(pairs=pairs, weights=self.w, biases=self.b,
                          accuracy=self.acc, loss=self.loss, num_classes=c)


def _train_blocks(x, counts, group: int, rows: NamedSharding, lr: jax.Array,
                  **common) -> _Outputs:
  """Trains every block (diagonal, then cross with each later group)."""
  num_classes = x.shape[0]
  num_groups = -(-num_classes // group)
  out = _Outputs(num_classes, x.shape[2])
  for k in range(num_groups):
    xk, ck, rk = _group_data(x, counts, k, group)
    res = _train_block(*_device_data(xk, ck, ck, ck, rows), lr, kind="diag",
                       **common)
    ia, ib = np.triu_indices(rk, 1)
    out.store(ia, ib, k * group, k * group, *res)
    del res
    for l in range(k + 1, num_groups):
      xl, cl, rl = _group_data(x, counts, l, group)
      both = _device_data(np.concatenate([xk, xl]), np.concatenate([ck, cl]),
                          ck, cl, rows)
      res = _train_block(*both, lr, kind="cross", **common)
      ia, ib = np.meshgrid(np.arange(rk), np.arange(rl), indexing="ij")
      out.store(ia.ravel(), ib.ravel(), k * group, l * group, *res)
      del res, both, xl
  return out


def train_pairwise(
    vectors: ArrayLike | Sequence[ArrayLike],
    counts: ArrayLike | None = None,
    *,
    epochs: int = 100,
    lr: float = 0.01,
    mesh: Mesh | None = None,
    memory_budget_bytes: int | None = None,
    classes_per_chunk: int | None = None,
    metrics_at: str = "final",
    precision: str = "highest",
) -> PairwiseResult:
  """Trains a logistic classifier for every unordered pair of classes.

  The reference protocol for each pair ``(a, b)``, ``a < b`` (zero init,
  label 1 = class ``a``, mean BCE over the ``n_a + n_b`` vectors, ``epochs``
  full-batch SGD steps); see the module docstring, also for the grouped
  matmuls, chunking and sharding.

  Args:
    vectors: (C, Nmax, D) array, class ``c``'s vectors in rows
      ``[0, counts[c])`` (the rest is padding and ignored), or a list of C
      arrays of shape (n_c, D). Converted to float32.
    counts: (C,) ints, vectors per class, for a padded array (None: all Nmax
      rows are valid); must be None for a list.
    epochs: number of full-batch SGD steps, >= 1.
    lr: learning rate, > 0.
    mesh: devices to shard the class (row) axis of each block over; all axes
      of the mesh are used together. Default: a 1-D mesh of all devices.
    memory_budget_bytes: approximate per-device bytes for one block of pairs
      (see :func:`block_bytes`); classes are grouped so that a block fits.
      Default 2 GiB. Ignored if `classes_per_chunk` is given.
    classes_per_chunk: explicit group size g (rounded up to a multiple of the
      device count); blocks are then g x g classes.
    metrics_at: "final" (default): accuracy and loss of the returned weights;
      "last_step": of the last epoch's forward pass, before its update, as the
      reference code reports them.
    precision: matmul precision for `jax.lax.dot_general` ("highest",
      "high" or "default"); "highest" keeps full float32 on accelerators.

  Returns:
    A :class:`PairwiseResult` of host numpy arrays: pairs (P, 2) int32,
    weights (P, D) float32, biases, accuracy and loss (P,) float32,
    P = C (C - 1) / 2, in ``np.triu_indices(C, 1)`` order.

  Raises:
    ValueError / TypeError: fewer than 2 classes, a class with zero vectors,
      mismatched D, NaN or inf in the vectors, epochs < 1, lr <= 0, bad counts,
      a budget too small for one block. All checked before any training.
  """
  x, counts = _check_inputs(vectors, counts, epochs, lr, metrics_at)
  num_classes, n_max, dim = x.shape
  chex.assert_shape(counts, (num_classes,))
  precision = _precision(precision)
  mesh = _default_mesh() if mesh is None else mesh
  group = classes_per_block(num_classes, n_max, dim, mesh.size,
                            memory_budget_bytes=memory_budget_bytes,
                            classes_per_chunk=classes_per_chunk)
  rows = NamedSharding(mesh, PartitionSpec(tuple(mesh.axis_names)))
  out = _train_blocks(x, counts, group, rows, jnp.float32(lr),
                      epochs=int(epochs), metrics_at=metrics_at,
                      precision=precision, w_sharding=rows)
  return _check_finite(out.result(), float(np.abs(x).max()), float(lr))


def _check_finite(result: PairwiseResult, xmax: float, lr: float) -> PairwiseResult:
  """The result, unless training diverged (non-finite weights): then a one-line error."""
  bad = ~(np.isfinite(result.weights).all(-1) & np.isfinite(result.biases))
  if bad.any():
    raise ValueError(
        f"pairwise training diverged: {int(bad.sum())} of {bad.size} pairs have non-finite "
        f"weights (first: classes {tuple(result.pairs[np.argmax(bad)].tolist())}); the vectors "
        f"reach |x| = {xmax:.3g} at lr {lr:g}: rescale them or lower lr")
  return result
