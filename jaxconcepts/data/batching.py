# Copyright 2025 The jaxconcepts Authors.
# SPDX-License-Identifier: Apache-2.0
"""Fixed-shape batches over host arrays, deterministic and resumable.

:func:`batches` cuts arrays into batches of a fixed size: the last batch is
padded and carries a ``mask``, so a jitted step compiles once. Shuffling is a
pure function of ``(seed, epoch)``, so a resumed run sees the same order, and
``start_batch`` resumes mid-epoch without gathering the skipped batches.

With several processes each one gathers only its own rows of every batch
(``rows``, see `train.distributed.local_rows`); :class:`ArrayStream` is the
in-memory source the training loop reads that way (TFDS is streamed instead,
`data.sources.TfdsStream`).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import chex
import numpy as np

from jaxconcepts.utils import check_int



def num_batches(n: int, batch_size: int, drop_remainder: bool = False) -> int:
  """Number of batches `batches` yields for `n` examples."""
  if n < 0:
    raise ValueError(f"n must be >= 0, got {n}")
  batch_size = check_int(batch_size, "batch_size")
  return n // batch_size if drop_remainder else -(-n // batch_size)


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
  """The order `batches(..., shuffle=True)` visits `n` examples in.

  `np.random.default_rng((seed, epoch)).permutation(n)`: a pure function of
  (seed, epoch), so a resumed run replays the same order.
  """
  for value, what in ((seed, "seed"), (epoch, "epoch")):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
      raise TypeError(f"{what} must be an int, got {value!r}")
    if value < 0:
      raise ValueError(f"{what} must be >= 0, got {value}")
  return np.random.default_rng((int(seed), int(epoch))).permutation(n)


def batches(images: np.ndarray, labels: np.ndarray, batch_size: int, *,
            shuffle: bool, seed: int = 0, epoch: int = 0,
            drop_remainder: bool = False, start_batch: int = 0,
            rows: slice | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Yields one epoch of fixed-size batches.

  Every batch has exactly `batch_size` rows, so a jitted step never
  recompiles: unless `drop_remainder`, the last batch is padded with zero
  images and label 0, and its `mask` is False on the padding.

  Args:
    images: [N, ...] array (float32 [N, H, W, C] for a `Dataset`); the dtype
      is kept.
    labels: [N] integer array.
    batch_size: rows per batch, a positive int.
    shuffle: visit examples in `epoch_permutation(N, seed, epoch)` order
      (else in order).
    seed: non-negative int; with `epoch` fixes the order.
    epoch: non-negative int.
    drop_remainder: drop the last partial batch instead of padding it.
    start_batch: skip the first `start_batch` batches of this epoch (to resume
      mid-epoch) without gathering them.
    rows: yield only these rows of every (padded) batch, e.g. one process's
      share of a global batch; None: all `batch_size` rows.

  Yields:
    {"image": [B, ...] (images' dtype), "label": int32[B], "mask": bool[B]}
    with B = batch_size, or the length of `rows`.
  """
  images = np.asarray(images)
  labels = np.asarray(labels)
  if images.ndim < 1:
    raise ValueError(f"images must have a leading batch axis, got shape "
                     f"{images.shape}")
  chex.assert_rank(labels, 1)
  if images.shape[0] != labels.shape[0]:
    raise ValueError(f"images and labels differ in length: "
                     f"{images.shape[0]} vs {labels.shape[0]}")
  if not np.issubdtype(labels.dtype, np.integer):
    raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
  n = images.shape[0]
  total = num_batches(n, batch_size, drop_remainder)
  if isinstance(start_batch, bool) or not isinstance(start_batch,
                                                     (int, np.integer)):
    raise TypeError(f"start_batch must be an int, got {start_batch!r}")
  if not 0 <= start_batch <= total:
    raise ValueError(f"start_batch must lie in [0, {total}], got {start_batch}")
  lo, hi = _check_rows(rows, batch_size)
  order = (epoch_permutation(n, seed, epoch) if shuffle
           else np.arange(n))
  for b in range(start_batch, total):
    idx = order[b * batch_size:(b + 1) * batch_size][lo:hi]
    yield padded_batch(images, labels, idx, hi - lo)


def _check_rows(rows: slice | None, batch_size: int) -> tuple[int, int]:
  """(start, stop) of `rows` within a batch; ValueError for a slice outside it or with a step."""
  if rows is None:
    return 0, batch_size
  lo, hi, stride = rows.indices(batch_size)
  if stride != 1 or not 0 <= lo < hi <= batch_size or (rows.stop or 0) > batch_size:
    raise ValueError(f"rows must be a non-empty slice of the {batch_size} rows of a batch, "
                     f"got {rows}")
  return lo, hi


def padded_batch(images: np.ndarray, labels: np.ndarray, idx: np.ndarray,
                 size: int) -> dict[str, np.ndarray]:
  """Rows `idx` of (images [N, ...], labels [N]) as a batch of `size` >= len(idx) rows.

  Zero-padded at the end (label 0) with `mask` False there, so every batch of
  an epoch has one shape.

  Returns:
    {"image": [size, ...] (images' dtype), "label": int32[size], "mask": bool[size]}.
  """
  k = idx.shape[0]
  image = images[idx]
  label = labels[idx].astype(np.int32)
  mask = np.ones((size,), dtype=bool)
  if k < size:
    pad = size - k
    image = np.concatenate([image, np.zeros((pad,) + images.shape[1:], images.dtype)])
    label = np.concatenate([label, np.zeros((pad,), np.int32)])
    mask[k:] = False
  return {"image": image, "label": label, "mask": mask}


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayStream:
  """In-memory training data as the loop reads it: shuffled per (seed, epoch), cut into
  fixed-size batches of which each process gathers its own rows.

  Attributes:
    images: [N, ...] rows (images, or any per-example arrays).
    labels: [N] integers.
    shuffle: visit rows in `epoch_permutation` order (else in order).
  """
  images: np.ndarray
  labels: np.ndarray
  shuffle: bool = True

  @property
  def num_examples(self) -> int:
    return int(np.shape(self.images)[0])

  def num_batches(self, batch_size: int) -> int:
    """Global batches per epoch."""
    return num_batches(self.num_examples, batch_size)

  def local_batches(self, batch_size: int, rows: slice | None, *, seed: int, epoch: int,
                    start_batch: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """This process's `rows` of every global batch of the epoch, from `start_batch` on."""
    return batches(self.images, self.labels, batch_size, shuffle=self.shuffle, seed=seed,
                   epoch=epoch, start_batch=start_batch, rows=rows)


def mean_image(images: np.ndarray) -> np.ndarray:
  """The per-pixel mean image of a set (e.g. the training mean for occlusion).

  Args:
    images: [N, H, W, C] array, N >= 1.

  Returns:
    float32 [H, W, C], accumulated in float64.
  """
  images = np.asarray(images)
  chex.assert_rank(images, 4)
  if images.shape[0] == 0:
    raise ValueError("mean_image needs at least one image, got 0")
  return images.mean(axis=0, dtype=np.float64).astype(np.float32)
