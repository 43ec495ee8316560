"""Process-local batching: each process's rows of a global batch, and ArrayStream."""
import numpy as np
import pytest

from jaxconcepts.data import batching


def _data(n=11):
  images = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
  return images, np.arange(n, dtype=np.int32) % 3


@pytest.mark.parametrize("shuffle", [False, True])
def test_rows_of_every_batch_put_together_are_the_whole_batch(shuffle):
  images, labels = _data()
  whole = list(batching.batches(images, labels, 4, shuffle=shuffle, seed=1, epoch=2))
  halves = [list(batching.batches(images, labels, 4, shuffle=shuffle, seed=1, epoch=2,
                                  rows=slice(lo, lo + 2))) for lo in (0, 2)]
  assert len(whole) == len(halves[0]) == len(halves[1]) == 3
  for b, first, second in zip(whole, *halves):
    for k in ("image", "label", "mask"):
      np.testing.assert_array_equal(np.concatenate([first[k], second[k]]), b[k])
  # 11 rows: the last batch holds 3, so the second process's half of it is one row + padding.
  np.testing.assert_array_equal(halves[1][-1]["mask"], [True, False])


def test_rows_outside_the_batch_are_rejected():
  images, labels = _data()
  for rows in (slice(2, 6), slice(3, 3), slice(0, 4, 2)):
    with pytest.raises(ValueError, match="rows must be a non-empty slice of the 4 rows"):
      next(batching.batches(images, labels, 4, shuffle=False, rows=rows))


def test_array_stream_is_batches_resumed_mid_epoch():
  images, labels = _data()
  stream = batching.ArrayStream(images, labels)
  assert (stream.num_examples, stream.num_batches(4)) == (11, 3)
  full = list(stream.local_batches(4, slice(0, 2), seed=3, epoch=1))
  resumed = list(stream.local_batches(4, slice(0, 2), seed=3, epoch=1, start_batch=1))
  for a, b in zip(full[1:], resumed):
    np.testing.assert_array_equal(a["image"], b["image"])
  order = batching.epoch_permutation(11, 3, 1)
  np.testing.assert_array_equal(full[0]["image"].ravel(), order[:2])


def test_padded_batch_pads_with_zeros_and_masks():
  images, labels = _data()
  b = batching.padded_batch(images, labels, np.array([5, 7]), 4)
  np.testing.assert_array_equal(b["image"].ravel(), [5, 7, 0, 0])
  np.testing.assert_array_equal(b["label"], [2, 1, 0, 0])
  np.testing.assert_array_equal(b["mask"], [True, True, False, False])
  assert b["label"].dtype == np.int32
