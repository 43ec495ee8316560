"""Tests for jaxconcepts.data.sources. No network; everything is tiny or local."""

import gzip
import os
import sys
import types

import numpy as np
import pytest

from jaxconcepts import data
from jaxconcepts.data import sources

FASHION_DIR = data.DEFAULT_IDX_DIRS["fashion_mnist"]


# ---------------------------------------------------------------------------
# Helpers: write MNIST-format IDX files with numpy.


def _idx_bytes(array: np.ndarray) -> bytes:
  array = np.asarray(array, dtype=np.uint8)
  header = bytes([0, 0, 0x08, array.ndim])
  header += np.asarray(array.shape, dtype=">u4").tobytes()
  return header + array.tobytes()


def _write(path, payload: bytes, gz: bool):
  if gz:
    with gzip.open(str(path) + ".gz", "wb") as f:
      f.write(payload)
  else:
    with open(path, "wb") as f:
      f.write(payload)


def _tiny_split(rng, n, h=5, w=4):
  return (rng.integers(0, 256, size=(n, h, w), dtype=np.uint8),
          rng.integers(0, 10, size=(n,), dtype=np.uint8))


def _write_idx_dir(d, gz, n_train=7, n_test=3, h=5, w=4, seed=0):
  rng = np.random.default_rng(seed)
  tr_x, tr_y = _tiny_split(rng, n_train, h, w)
  te_x, te_y = _tiny_split(rng, n_test, h, w)
  for stem, arr in (("train-images-idx3-ubyte", tr_x),
                    ("train-labels-idx1-ubyte", tr_y),
                    ("t10k-images-idx3-ubyte", te_x),
                    ("t10k-labels-idx1-ubyte", te_y)):
    _write(d / stem, _idx_bytes(arr), gz)
  return tr_x, tr_y, te_x, te_y


# ---------------------------------------------------------------------------
# IDX source.


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_idx_roundtrip_native_size_is_exact(tmp_path, gz):
  tr_x, tr_y, te_x, te_y = _write_idx_dir(tmp_path, gz)
  ds = data.load_dataset("mnist", "idx", data_dir=str(tmp_path),
                         image_size=None)
  assert ds.name == "mnist" and ds.num_classes == 10
  assert ds.class_names == tuple("0123456789")
  assert ds.image_shape == (5, 4, 1)
  assert ds.train_images.dtype == np.float32
  assert ds.train_labels.dtype == np.int32
  np.testing.assert_array_equal(ds.train_images[..., 0] * 255, tr_x)
  np.testing.assert_array_equal(ds.test_images[..., 0] * 255, te_x)
  np.testing.assert_array_equal(
      ds.train_images, (tr_x[..., None].astype(np.float32) / np.float32(255)))
  np.testing.assert_array_equal(ds.train_labels, tr_y)
  np.testing.assert_array_equal(ds.test_labels, te_y)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_idx_max_train_max_test_take_the_first_examples(tmp_path, gz):
  tr_x, tr_y, te_x, te_y = _write_idx_dir(tmp_path, gz)
  ds = data.load_dataset("fashion_mnist", "idx", data_dir=str(tmp_path),
                         image_size=None, max_train=4, max_test=2)
  assert ds.num_train == 4 and ds.num_test == 2
  np.testing.assert_array_equal(ds.train_images[..., 0] * 255, tr_x[:4])
  np.testing.assert_array_equal(ds.test_labels, te_y[:2])
  # A cap larger than the file keeps everything.
  ds = data.load_dataset("fashion_mnist", "idx", data_dir=str(tmp_path),
                         image_size=None, max_train=100)
  assert ds.num_train == 7


def test_idx_resized_to_image_size(tmp_path):
  tr_x, _, _, _ = _write_idx_dir(tmp_path, gz=True, h=28, w=28, n_train=2)
  ds = data.load_dataset("mnist", "idx", data_dir=str(tmp_path))
  assert ds.image_shape == (32, 32, 1)
  expected = data.resize_nearest(tr_x[..., None], 32).astype(np.float32) / 255
  np.testing.assert_array_equal(ds.train_images, expected)


def test_idx_missing_directory_says_how_to_get_it(tmp_path):
  missing = str(tmp_path / "nope")
  with pytest.raises(FileNotFoundError,
                     match=r"(?s)nope.*apt-get install dataset-fashion-mnist"
                     r".*source='tfds'"):
    data.load_dataset("fashion_mnist", "idx", data_dir=missing)


def test_idx_missing_file_names_the_path(tmp_path):
  _write_idx_dir(tmp_path, gz=True)
  os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
  with pytest.raises(FileNotFoundError,
                     match=r"t10k-labels-idx1-ubyte.*source='tfds'"):
    data.load_dataset("mnist", "idx", data_dir=str(tmp_path))


def test_idx_without_default_dir_needs_data_dir():
  with pytest.raises(ValueError, match=r"'mnist'.*data_dir"):
    data.load_dataset("mnist", "idx")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_idx_truncated_file_raises_naming_file(tmp_path, gz):
  _write_idx_dir(tmp_path, gz)
  images = np.zeros((7, 5, 4), np.uint8)
  _write(tmp_path / "train-images-idx3-ubyte", _idx_bytes(images)[:-3], gz)
  with pytest.raises(ValueError,
                     match=r"train-images-idx3-ubyte.* truncated: expected 140"
                     r" bytes.*found 137"):
    data.load_dataset("mnist", "idx", data_dir=str(tmp_path))


def test_idx_truncated_gzip_stream_raises_value_error(tmp_path):
  _write_idx_dir(tmp_path, gz=True)
  path = tmp_path / "train-images-idx3-ubyte.gz"
  blob = path.read_bytes()
  path.write_bytes(blob[:len(blob) // 2])
  with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz"):
    data.load_dataset("mnist", "idx", data_dir=str(tmp_path))


def test_idx_gz_file_that_is_not_gzip_raises_value_error(tmp_path):
  _write_idx_dir(tmp_path, gz=True)
  (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
  with pytest.raises(ValueError,
                     match=r"t10k-images-idx3-ubyte\.gz.*Not a gzipped file"):
    data.load_dataset("mnist", "idx", data_dir=str(tmp_path))


def test_idx_extra_trailing_bytes_raise(tmp_path):
  _write_idx_dir(tmp_path, gz=False)
  labels = np.zeros((7,), np.uint8)
  _write(tmp_path / "train-labels-idx1-ubyte", _idx_bytes(labels) + b"\0",
         gz=False)
  with pytest.raises(ValueError, match=r"train-labels.*longer than its header"):
    data.load_dataset("mnist", "idx", data_dir=str(tmp_path))


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_idx_bad_magic_raises_naming_file_and_expected_magic(tmp_path, gz):
  _write_idx_dir(tmp_path, gz)
  payload = bytearray(_idx_bytes(np.zeros((7, 5, 4), np.uint8)))
  payload[2] = 0x0D  # float32 type code
  _write(tmp_path / "train-images-idx3-ubyte", bytes(payload), gz)
  with pytest.raises(ValueError,
                     match=r"train-images-idx3-ubyte.*bad magic 00000d03.*"
                     r"expected 00000803"):
    data.load_dataset("mnist", "idx", data_dir=str(tmp_path))


def test_idx_wrong_ndim_raises(tmp_path):
  _write_idx_dir(tmp_path, gz=False)
  # Labels file that holds a 2-D array.
  _write(tmp_path / "t10k-labels-idx1-ubyte",
         _idx_bytes(np.zeros((3, 1), np.uint8)), gz=False)
  with pytest.raises(ValueError, match=r"t10k-labels.*2 dimensions; expected 1"):
    data.load_dataset("mnist", "idx", data_dir=str(tmp_path))


def test_idx_label_count_mismatch_raises(tmp_path):
  _write_idx_dir(tmp_path, gz=True)
  _write(tmp_path / "train-labels-idx1-ubyte",
         _idx_bytes(np.zeros((6,), np.uint8)), gz=True)
  with pytest.raises(ValueError,
                     match=r"label count != image count.*6 labels, expected 7"):
    data.load_dataset("mnist", "idx", data_dir=str(tmp_path))


def test_idx_label_out_of_range_raises(tmp_path):
  _write_idx_dir(tmp_path, gz=False)
  _write(tmp_path / "t10k-labels-idx1-ubyte",
         _idx_bytes(np.array([0, 10, 3], np.uint8)), gz=False)
  with pytest.raises(ValueError, match=r"t10k-labels.*\[0, 10\)"):
    data.load_dataset("mnist", "idx", data_dir=str(tmp_path))


def test_read_idx_reads_back_exactly(tmp_path):
  arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  _write(tmp_path / "a", _idx_bytes(arr), gz=True)
  out = data.read_idx(str(tmp_path / "a.gz"), 3)
  np.testing.assert_array_equal(out, arr)
  np.testing.assert_array_equal(data.read_idx(str(tmp_path / "a.gz"), 3, 1),
                                arr[:1])


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR),
                    reason=f"{FASHION_DIR} missing: apt-get install "
                    "dataset-fashion-mnist (CI installs it)")
def test_debian_fashion_mnist_loads_from_default_dir():
  ds = data.load_dataset("fashion_mnist", "idx", max_train=100, max_test=20)
  assert ds.num_train == 100 and ds.num_test == 20
  assert ds.image_shape == (32, 32, 1)
  assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
  assert 0.0 <= ds.train_images.min() and ds.train_images.max() <= 1.0
  assert ds.train_images.max() == 1.0
  # The published first training labels of Fashion-MNIST.
  np.testing.assert_array_equal(ds.train_labels[:10],
                                [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])
  assert set(np.unique(ds.train_labels)) <= set(range(10))


# ---------------------------------------------------------------------------
# Argument validation.


def test_unknown_dataset_lists_valid_choices():
  with pytest.raises(ValueError,
                     match=r"unknown dataset 'imagenet'.*mnist, fashion_mnist, "
                     r"cifar10, cifar100, digits"):
    data.load_dataset("imagenet")


def test_unknown_source_lists_valid_choices():
  with pytest.raises(ValueError,
                     match=r"unknown source 'hdf5'.*tfds, idx, digits"):
    data.load_dataset("mnist", "hdf5")


@pytest.mark.parametrize("name,source", [
    ("digits", "tfds"), ("digits", "idx"), ("mnist", "digits"),
    ("cifar10", "idx"), ("cifar100", "digits")])
def test_bad_name_source_combination_raises(name, source):
  with pytest.raises(ValueError,
                     match=rf"{name!r} is not available from source "
                     rf"{source!r}.*provides"):
    data.load_dataset(name, source)


@pytest.mark.parametrize("kwargs,exc,pattern", [
    ({"image_size": 0}, ValueError, "image_size"),
    ({"image_size": 32.0}, TypeError, "image_size"),
    ({"max_train": -1}, ValueError, "max_train"),
    ({"max_test": 0}, ValueError, "max_test"),
    ({"data_dir": "/tmp"}, ValueError, "no data_dir"),
])
def test_bad_load_arguments_raise_before_io(kwargs, exc, pattern):
  with pytest.raises(exc, match=pattern):
    data.load_dataset("digits", "digits", **kwargs)


# ---------------------------------------------------------------------------
# TFDS source (no network: the package is faked or hidden).


def test_tfds_missing_package_gives_install_hint(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
  with pytest.raises(ImportError, match=r"pip install jaxconcepts\[tfds\]"):
    data.load_dataset("cifar10", "tfds")


def test_tfds_unknown_dataset_fails_before_import(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
  with pytest.raises(ValueError, match=r"unknown dataset 'svhn'.*cifar100"):
    data.load_dataset("svhn", "tfds")


def test_tfds_load_arguments_and_conversion(monkeypatch):
  calls = []
  rng = np.random.default_rng(0)
  raw = {"train": rng.integers(0, 256, (6, 28, 28, 1), dtype=np.uint8),
         "test": rng.integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)}

  def fake_load(name, *, split, batch_size, as_supervised, data_dir):
    calls.append(dict(name=name, split=split, batch_size=batch_size,
                      as_supervised=as_supervised, data_dir=data_dir))
    base, _, cut = split.partition("[:")
    x = raw[base][:int(cut[:-1])] if cut else raw[base]
    return x, np.arange(len(x), dtype=np.int64) % 10

  fake = types.SimpleNamespace(load=fake_load, as_numpy=lambda t: t)
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
  ds = data.load_dataset("fashion_mnist", "tfds", data_dir="/some/dir",
                         max_train=5)
  assert calls == [
      dict(name="fashion_mnist", split="train[:5]", batch_size=-1,
           as_supervised=True, data_dir="/some/dir"),
      dict(name="fashion_mnist", split="test", batch_size=-1,
           as_supervised=True, data_dir="/some/dir")]
  assert ds.num_train == 5 and ds.num_test == 4
  assert ds.image_shape == (32, 32, 1)
  assert ds.train_labels.dtype == np.int32
  np.testing.assert_array_equal(
      ds.test_images,
      data.resize_nearest(raw["test"], 32).astype(np.float32) / 255)

# ---------------------------------------------------------------------------
# TFDS as a stream: a tiny MNIST-shaped data set prepared offline in tmp.

_STREAM_N = 21  # two shards of 10, one example dropped


@pytest.fixture(scope="module")
def tiny_tfds_dir(tmp_path_factory):
  """A data_dir holding a prepared "mnist" 3.0.1 whose train image i has pixel (0, 0) = i.

  Built by a builder that is not registered (TFDS's own MNIST builder then reads
  the files: prepared, so nothing is downloaded).
  """
  tfds = pytest.importorskip("tensorflow_datasets")

  class TinyMnist(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Ids in pixel (0, 0); label = id % 10."""
    # A one-part module name: TFDS then looks for no source file of the builder (that lookup
    # needs `importlib_resources`, which tensorflow-datasets does not install).
    __module__ = "tiny_mnist"
    name = "mnist"
    VERSION = tfds.core.Version("3.0.1")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, supervised_keys=("image", "label"),
                                   features=tfds.features.FeaturesDict({
                                       "image": tfds.features.Image(shape=(28, 28, 1)),
                                       "label": tfds.features.ClassLabel(num_classes=10)}))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {"train": self._generate_examples(_STREAM_N), "test": self._generate_examples(3)}

    def _generate_examples(self, n):
      for i in range(n):
        image = np.zeros((28, 28, 1), np.uint8)
        image[0, 0, 0] = i
        yield i, {"image": image, "label": i % 10}

  path = str(tmp_path_factory.mktemp("tfds"))
  TinyMnist(data_dir=path).download_and_prepare()
  return path


def _stream_ids(data_dir, process, epoch, start_batch=0, seed=0):
  stream = sources.TfdsStream("mnist", data_dir=data_dir, image_size=None, process_index=process,
                           process_count=2)
  out = []
  for b in stream.local_batches(8, None, seed=seed, epoch=epoch, start_batch=start_batch):
    assert b["image"].shape == (4, 28, 28, 1) and b["image"].dtype == np.float32
    ids = np.rint(b["image"][:, 0, 0, 0] * 255).astype(int)
    np.testing.assert_array_equal(b["label"][b["mask"]], ids[b["mask"]] % 10)
    out.append(ids[b["mask"]].tolist())
  return out


def test_tfds_stream_shards_are_disjoint_deterministic_and_resumable(tiny_tfds_dir):
  stream = sources.TfdsStream("mnist", data_dir=tiny_tfds_dir, process_index=0, process_count=2)
  assert (stream.shard_size, stream.num_examples, stream.num_batches(8)) == (10, 20, 3)
  shards = [_stream_ids(tiny_tfds_dir, p, epoch=0) for p in (0, 1)]
  for batches in shards:
    assert [len(b) for b in batches] == [4, 4, 2]  # the last batch padded and masked
  flat = [i for batches in shards for b in batches for i in b]
  assert len(flat) == len(set(flat)) == 20 and set(flat) <= set(range(_STREAM_N))
  assert _stream_ids(tiny_tfds_dir, 0, epoch=0) == shards[0]  # the same epoch again
  assert _stream_ids(tiny_tfds_dir, 0, epoch=0, start_batch=1) == shards[0][1:]  # resumed
  other = _stream_ids(tiny_tfds_dir, 0, epoch=1)
  assert other != shards[0] and sorted(sum(other, [])) == sorted(sum(shards[0], []))


def test_tfds_stream_rejects_a_batch_the_processes_cannot_split(tiny_tfds_dir):
  stream = sources.TfdsStream("mnist", data_dir=tiny_tfds_dir, process_index=0, process_count=2)
  with pytest.raises(ValueError, match="batch_size 7 must split evenly over the 2 processes"):
    next(stream.local_batches(7, None, seed=0, epoch=0))



# ---------------------------------------------------------------------------
# Digits source.


def test_digits_shape_range_and_split_sizes():
  ds = data.load_dataset("digits", "digits")
  assert (ds.num_train, ds.num_test) == (1437, 360)
  assert ds.image_shape == (32, 32, 1)
  assert ds.train_images.dtype == np.float32
  assert ds.train_images.min() == 0.0 and ds.train_images.max() == 1.0
  assert ds.num_classes == 10
  assert set(np.unique(ds.test_labels)) == set(range(10))


def test_digits_split_is_deterministic_and_disjoint():
  from sklearn.datasets import load_digits
  a = data.load_dataset("digits", "digits", image_size=None)
  b = data.load_dataset("digits", "digits", image_size=None)
  np.testing.assert_array_equal(a.train_images, b.train_images)
  np.testing.assert_array_equal(a.test_labels, b.test_labels)
  assert a.image_shape == (8, 8, 1)
  # The documented split: permutation from default_rng(0), first 360 = test.
  raw = load_digits()
  perm = np.random.default_rng(0).permutation(1797)
  np.testing.assert_array_equal(a.test_images[..., 0],
                                raw.images[perm[:360]] / 16)
  np.testing.assert_array_equal(a.train_labels, raw.target[perm[360:]])
  # Train and test together are the whole set, once each.
  both = np.concatenate([a.train_images, a.test_images]).reshape(1797, -1)
  assert len(np.unique(both, axis=0)) == len(np.unique(
      raw.images.reshape(1797, -1), axis=0))


def test_digits_upsampled_by_pixel_replication():
  small = data.load_dataset("digits", "digits", image_size=None, max_train=3)
  big = data.load_dataset("digits", "digits", image_size=32, max_train=3)
  np.testing.assert_array_equal(
      big.train_images, np.repeat(np.repeat(small.train_images, 4, 1), 4, 2))


# ---------------------------------------------------------------------------
# Resizing.


def test_resize_nearest_28_to_32_doubles_rows_0_7_14_21():
  # Pixel value encodes its (row, col) so we can read back the source index.
  rows, cols = np.meshgrid(np.arange(28), np.arange(28), indexing="ij")
  img = (rows * 100 + cols)[None, :, :, None]
  out = data.resize_nearest(img, 32)
  assert out.shape == (1, 32, 32, 1)
  expected_src = np.array([i * 28 // 32 for i in range(32)])
  np.testing.assert_array_equal(out[0, :, 0, 0] // 100, expected_src)
  np.testing.assert_array_equal(out[0, 0, :, 0] % 100, expected_src)
  doubled = [s for s in range(28) if np.sum(expected_src == s) == 2]
  assert doubled == [0, 7, 14, 21]


def test_resize_nearest_keeps_dtype_channels_and_identity():
  x = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 3), np.uint8)
  y = data.resize_nearest(x, 32)
  assert y.dtype == np.uint8 and y.shape == (2, 32, 32, 3)
  assert data.resize_nearest(x, 28) is x
  np.testing.assert_array_equal(data.resize_nearest(x, 14), x[:, ::2, ::2])


def test_resize_nearest_rejects_bad_input():
  with pytest.raises(ValueError, match="size"):
    data.resize_nearest(np.zeros((1, 4, 4, 1)), 0)
  with pytest.raises(AssertionError):
    data.resize_nearest(np.zeros((4, 4, 1)), 8)


@pytest.mark.reference
@pytest.mark.parametrize("in_size,out_size",
                         [(28, 32), (8, 32), (32, 28), (7, 13), (13, 7),
                          (5, 1), (3, 64)])
def test_resize_nearest_matches_torch_interpolate(in_size, out_size):
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(0).integers(
      0, 256, (2, in_size, in_size, 3), np.uint8)
  # The reference pipeline: ToTensor (float / 255), then F.interpolate.
  xt = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255)
  want = torch.nn.functional.interpolate(xt, size=out_size, mode="nearest")
  want = want.permute(0, 2, 3, 1).numpy()
  got = data.resize_nearest(x, out_size).astype(np.float32) / np.float32(255)
  np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------
# Batching.


def _toy(n=10, shape=(2, 2, 1)):
  images = np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones(
      (1,) + shape, np.float32) + 1  # image i is filled with i + 1
  labels = (np.arange(n) % 7).astype(np.int64)
  return images, labels


def test_num_batches():
  assert data.num_batches(10, 4) == 3
  assert data.num_batches(10, 4, drop_remainder=True) == 2
  assert data.num_batches(8, 4) == 2 == data.num_batches(8, 4, True)
  assert data.num_batches(0, 4) == 0
  with pytest.raises(ValueError, match="batch_size"):
    data.num_batches(10, 0)


def test_batches_pads_and_masks_last_batch():
  images, labels = _toy(10)
  out = list(data.batches(images, labels, 4, shuffle=False))
  assert len(out) == 3 == data.num_batches(10, 4)
  for b in out:
    assert b["image"].shape == (4, 2, 2, 1) and b["image"].dtype == np.float32
    assert b["label"].shape == (4,) and b["label"].dtype == np.int32
    assert b["mask"].shape == (4,) and b["mask"].dtype == np.bool_
  last = out[-1]
  np.testing.assert_array_equal(last["mask"], [True, True, False, False])
  np.testing.assert_array_equal(last["image"][:2, 0, 0, 0], [9, 10])
  np.testing.assert_array_equal(last["image"][2:], 0)
  np.testing.assert_array_equal(last["label"], [8 % 7, 9 % 7, 0, 0])
  assert all(b["mask"].all() for b in out[:-1])


def test_batches_drop_remainder():
  images, labels = _toy(10)
  out = list(data.batches(images, labels, 4, shuffle=True,
                          drop_remainder=True))
  assert len(out) == 2 and all(b["mask"].all() for b in out)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("batch_size", [1, 3, 10, 16])
def test_batches_cover_every_example_once_per_epoch(shuffle, batch_size):
  images, labels = _toy(10)
  out = list(data.batches(images, labels, batch_size, shuffle=shuffle,
                          seed=3, epoch=2))
  seen = np.concatenate([b["image"][b["mask"], 0, 0, 0] for b in out])
  assert sorted(seen.tolist()) == list(range(1, 11))
  got_labels = np.concatenate([b["label"][b["mask"]] for b in out])
  np.testing.assert_array_equal(got_labels, (seen.astype(int) - 1) % 7)


def _order(n, seed, epoch, batch_size=4):
  images, labels = _toy(n)
  out = data.batches(images, labels, batch_size, shuffle=True, seed=seed,
                     epoch=epoch)
  return np.concatenate([b["image"][b["mask"], 0, 0, 0] for b in out])


def test_batches_shuffle_is_deterministic_per_seed_and_epoch():
  np.testing.assert_array_equal(_order(50, 1, 4), _order(50, 1, 4))
  np.testing.assert_array_equal(
      _order(50, 1, 4) - 1, np.random.default_rng((1, 4)).permutation(50))
  np.testing.assert_array_equal(_order(50, 1, 4) - 1,
                                data.epoch_permutation(50, 1, 4))


def test_batches_different_epochs_and_seeds_differ():
  assert not np.array_equal(_order(50, 0, 0), _order(50, 0, 1))
  assert not np.array_equal(_order(50, 0, 0), _order(50, 1, 0))
  assert not np.array_equal(_order(50, 0, 0), np.arange(1, 51))


def test_batches_start_batch_resumes_mid_epoch():
  images, labels = _toy(10)
  full = list(data.batches(images, labels, 3, shuffle=True, seed=5, epoch=1))
  rest = list(data.batches(images, labels, 3, shuffle=True, seed=5, epoch=1,
                           start_batch=2))
  assert len(rest) == 2
  for a, b in zip(full[2:], rest):
    for key in ("image", "label", "mask"):
      np.testing.assert_array_equal(a[key], b[key])


def test_batches_bad_arguments():
  images, labels = _toy(10)
  with pytest.raises(ValueError, match="differ in length"):
    next(data.batches(images, labels[:9], 4, shuffle=False))
  with pytest.raises(ValueError, match="batch_size"):
    next(data.batches(images, labels, 0, shuffle=False))
  with pytest.raises(ValueError, match="epoch must be >= 0"):
    next(data.batches(images, labels, 4, shuffle=True, epoch=-1))
  with pytest.raises(TypeError, match="labels must be integers"):
    next(data.batches(images, labels.astype(np.float32), 4, shuffle=False))
  with pytest.raises(ValueError, match="start_batch"):
    next(data.batches(images, labels, 4, shuffle=False, start_batch=4))


# ---------------------------------------------------------------------------
# Mean image and the Dataset container.


def test_mean_image():
  images, _ = _toy(10, shape=(3, 2, 1))
  m = data.mean_image(images)
  assert m.shape == (3, 2, 1) and m.dtype == np.float32
  np.testing.assert_allclose(m, 5.5)
  with pytest.raises(ValueError, match="at least one"):
    data.mean_image(images[:0])


def test_dataset_rejects_inconsistent_arrays():
  x = np.zeros((4, 8, 8, 1), np.float32)
  y = np.zeros((4,), np.int32)
  with pytest.raises(ValueError, match="3 labels"):
    data.Dataset("t", x, y[:3], x, y, 10, tuple("0123456789"))
  with pytest.raises(ValueError, match="class names"):
    data.Dataset("t", x, y, x, y, 3, ("a", "b"))
  with pytest.raises(ValueError, match="differ in shape"):
    data.Dataset("t", x, y, x[:, :4], y, 1, ("a",))
  ds = data.Dataset("t", x, y, x, y, 1, ("a",))
  assert ds.image_shape == (8, 8, 1) and "train=4" in repr(ds)


def test_an_empty_split_and_a_header_promising_too_much_are_one_line_errors(tmp_path):
  _write_idx_dir(tmp_path, gz=False, n_train=0)
  with pytest.raises(ValueError, match=r"the train split of mnist \(idx\) is empty"):
    data.load_dataset("mnist", "idx", data_dir=str(tmp_path))
  huge = bytearray(_idx_bytes(np.zeros((1, 28, 28), np.uint8)))
  huge[4:8] = np.asarray([4_000_000_000], ">u4").tobytes()  # claims 3 TB, holds one image
  _write(tmp_path / "huge-idx3-ubyte", bytes(huge), gz=False)
  with pytest.raises(ValueError, match="is truncated"):
    data.read_idx(str(tmp_path / "huge-idx3-ubyte"), 3)
