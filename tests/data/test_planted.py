"""The planted-concepts data set: generator, split, truth and `load_dataset`."""
import numpy as np
import pytest

from jaxconcepts import data
from jaxconcepts.data import planted


def test_generator_is_seeded_and_the_split_is_fixed():
  (x1, y1), (t1, u1), p1 = planted.generate(0, 30, 12)
  (x2, y2), (t2, u2), p2 = planted.generate(0, 60, 6)
  np.testing.assert_array_equal(x1, x2[:30])  # the first images do not depend on the counts
  np.testing.assert_array_equal(t1[:6], t2)
  np.testing.assert_array_equal(p1.test[:6], p2.test)
  (x3, _), _, _ = planted.generate(1, 30, 12)
  assert not np.allclose(x1, x3)
  assert x1.dtype == np.float32 and x1.shape == (30, 32, 32, 1)
  assert 0.0 <= x1.min() and x1.max() <= 1.0
  assert y1.dtype == np.int32 and np.bincount(y1).tolist() == [5] * 6  # balanced


def test_each_image_holds_exactly_its_class_parts_where_the_maps_say():
  (x, y), _, parts = planted.generate(0, 120, 6)
  glyph_area = planted._glyphs().sum((1, 2))  # pylint: disable=protected-access
  for i in range(x.shape[0]):
    present = set(np.unique(parts.train[i]).tolist()) - {-1}
    assert present == set(np.flatnonzero(planted.CLASS_PARTS[y[i]]).tolist())
    for p in present:
      on = parts.train[i] == p
      assert on.sum() == glyph_area[p]  # never overlapped, never clipped
      assert x[i, ..., 0][on].max() <= planted.INK_RANGE[1]
    assert x[i, ..., 0][parts.train[i] < 0].min() >= planted.BACKGROUND_RANGE[0]
  # each part sits inside one quadrant, so a 16x16 crop can hold it whole
  for i in range(20):
    for p in set(np.unique(parts.train[i]).tolist()) - {-1}:
      rows, cols = np.nonzero(parts.train[i] == p)
      assert rows.min() // 16 == rows.max() // 16 and cols.min() // 16 == cols.max() // 16


def test_classes_share_some_parts_and_have_unique_ones():
  cp = planted.CLASS_PARTS
  assert cp.shape == (len(planted.CLASS_NAMES), len(planted.PART_NAMES))
  assert (cp.sum(1) == 2).all()
  per_part = cp.sum(0)
  assert (per_part[:6] == 1).all() and (per_part[6:] == 3).all()
  assert np.flatnonzero(planted.separating_parts(cp, 0, 1)).tolist() == [0]  # shared stripes
  assert np.flatnonzero(planted.separating_parts(cp, 0, 3)).tolist() == [0, 6]


def test_load_dataset_planted():
  ds = data.load_dataset("planted", "planted", max_train=60, max_test=24)
  assert (ds.num_train, ds.num_test, ds.num_classes) == (60, 24, 6)
  assert ds.image_shape == (32, 32, 1) and ds.class_names == planted.CLASS_NAMES
  assert ds.parts.train.shape == (60, 32, 32) and ds.parts.test.shape == (24, 32, 32)
  assert ds.parts.names == planted.PART_NAMES
  np.testing.assert_array_equal(ds.parts.split("test"), ds.parts.test)
  small = data.load_dataset("planted", "planted", image_size=16, max_train=6, max_test=6)
  assert small.image_shape == (16, 16, 1) and small.parts.train.shape == (6, 16, 16)
  # other sources carry no parts (the field is optional)
  assert data.load_dataset("digits", "digits", max_train=4, max_test=4).parts is None
  with pytest.raises(ValueError, match="data_dir"):
    data.load_dataset("planted", "planted", data_dir="/tmp")
  with pytest.raises(ValueError, match="planted"):
    data.load_dataset("planted", "digits")


def test_dataset_rejects_part_maps_of_the_wrong_shape():
  ds = data.load_dataset("planted", "planted", max_train=6, max_test=6)
  bad = ds.parts._replace(test=ds.parts.test[:3])
  with pytest.raises(ValueError, match="part maps"):
    data.Dataset(ds.name, ds.train_images, ds.train_labels, ds.test_images, ds.test_labels,
                 ds.num_classes, ds.class_names, bad)


def test_classifier_config_source_planted():
  import importlib.util  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "classifier.py")
  spec = importlib.util.spec_from_file_location("classifier_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config("source=planted")
  assert (c.data.dataset, c.data.source, c.num_epochs, c.batch_size) == (
      "planted", "planted", 6, 64)
  assert module.get_config("source=planted,epochs=2").num_epochs == 2
  c = module.get_config(None)
  assert (c.data.dataset, c.num_epochs, c.batch_size) == ("fashion_mnist", 64, 128)
