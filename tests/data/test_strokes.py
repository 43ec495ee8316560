"""The strokes data set: sparse, seeded, fixed split, balanced, learnable."""
import numpy as np
import pytest

from jaxconcepts.data import strokes


def test_images_are_sparse_unit_interval_float32_with_balanced_labels():
  ds = strokes.load_strokes(160, 40, num_classes=8)
  assert ds.name == "strokes" and ds.image_shape == (32, 32, 1)
  assert ds.train_images.dtype == np.float32 and ds.train_labels.dtype == np.int32
  x = ds.train_images
  assert x.min() >= 0.0 and x.max() <= 1.0 and x.max() > 0.9
  # Mostly black, like handwritten digits: at most a fifth of the pixels carry ink,
  # and every image carries some.
  assert (x > 0).mean() < 0.2
  assert (x.reshape(len(x), -1).max(1) > 0.5).all()
  np.testing.assert_array_equal(np.bincount(ds.train_labels), [20] * 8)
  assert ds.class_names == strokes.CLASS_NAMES


def test_same_arguments_give_the_same_arrays_and_the_split_is_fixed():
  a = strokes.load_strokes(40, 20, seed=3)
  b = strokes.load_strokes(40, 20, seed=3)
  np.testing.assert_array_equal(a.train_images, b.train_images)
  np.testing.assert_array_equal(a.test_labels, b.test_labels)
  # The test images do not depend on how many training images are drawn.
  c = strokes.load_strokes(16, 20, seed=3)
  np.testing.assert_array_equal(a.test_images, c.test_images)
  d = strokes.load_strokes(40, 20, seed=4)
  assert not np.array_equal(a.train_images, d.train_images)
  assert not np.array_equal(a.train_images[:20], a.test_images)


def test_classes_are_distinguishable_by_nearest_class_mean():
  # A weak check that labels mean something: a nearest-class-mean classifier on
  # the pixels is far above chance (1/4) on the test split.
  ds = strokes.load_strokes(400, 200, num_classes=4)
  flat = lambda x: x.reshape(len(x), -1)  # pylint: disable=unnecessary-lambda-assignment
  means = np.stack([flat(ds.train_images)[ds.train_labels == k].mean(0) for k in range(4)])
  d = ((flat(ds.test_images)[:, None] - means[None]) ** 2).sum(-1)
  assert (d.argmin(1) == ds.test_labels).mean() > 0.6


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_train=0), "num_train must be an integer >= 1, got 0"),
    (dict(num_classes=9), "num_classes must be at most 8"),
    (dict(num_classes=1), "num_classes must be an integer >= 2"),
    (dict(image_size=8), "image_size must be an integer >= 16"),
    (dict(seed=-1), "seed must be an integer >= 0"),
])
def test_bad_arguments_are_rejected_naming_the_value(kwargs, match):
  with pytest.raises(ValueError, match=match):
    strokes.load_strokes(**kwargs)
