# Copyright 2025 The jaxconcepts Authors.
# SPDX-License-Identifier: Apache-2.0
"""Image classification data sources and preprocessing.

Four sources sit behind one function, :func:`load_dataset`:

* ``"tfds"``: TensorFlow Datasets (``mnist``, ``fashion_mnist``, ``cifar10``,
  ``cifar100``). Needs the ``tfds`` extra and, the first time, the network.
* ``"idx"``: a directory of MNIST-format IDX files (``mnist``,
  ``fashion_mnist``), gzipped or not, e.g. Debian's ``dataset-fashion-mnist``
  package at ``/usr/share/datasets/fashion-mnist``. Pure numpy.
* ``"digits"``: scikit-learn's bundled 8x8 digits (1797 images), upsampled.
  Needs nothing beyond the core dependencies; the embedded default.
* ``"planted"``: a generated data set whose classes are built from known
  parts, with the ground-truth part maps in `Dataset.parts`
  (:mod:`jaxconcepts.data.planted`). No download.

Every source returns a :class:`Dataset` of float32 NHWC images in [0, 1] and
int32 labels, held in host memory as numpy arrays (the whole of Fashion-MNIST
at 32x32 is 70k x 4 KiB = 287 MB). A TFDS split too large for that is read by
:class:`TfdsStream` instead: in per-process shards, a batch at a time,
deterministic and resumable mid-epoch (`TfdsStream.head`: its first N examples in memory).

Resizing follows the authors' reference code, which applies
``torch.nn.functional.interpolate(x, size=32)`` (mode ``"nearest"``) to the
``ToTensor`` output: output index ``i`` reads input index
``floor(i * float32(in / out))`` in float32 arithmetic (for 28 -> 32, input
rows and columns 0, 7, 14 and 21 are doubled). Note that this differs from
PIL's nearest filter (``floor((i + 0.5) * in / out)``).

Batching is in :mod:`jaxconcepts.data.batching`.
"""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import os
from typing import Any, Iterator

import chex
import numpy as np

from jaxconcepts.data import batching
from jaxconcepts.data import planted

SOURCES = ("tfds", "idx", "digits", "planted")
DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "digits", "planted")
# Debian / Ubuntu package `dataset-fashion-mnist`.
DEFAULT_IDX_DIRS = {"fashion_mnist": "/usr/share/datasets/fashion-mnist"}

# Which datasets each source can provide; CLASS_NAMES: each data set's names by label.
_SOURCE_DATASETS = {"tfds": ("mnist", "fashion_mnist", "cifar10", "cifar100"),
                    "idx": ("mnist", "fashion_mnist"), "digits": ("digits",),
                    "planted": ("planted",)}

_DIGIT_NAMES = tuple(str(i) for i in range(10))
CLASS_NAMES = {
    "mnist": _DIGIT_NAMES,
    "digits": _DIGIT_NAMES,
    "planted": planted.CLASS_NAMES,
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                "horse", "ship", "truck"),
    "cifar100": tuple((
        "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
        "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach "
        "couch crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster "
        "house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree "
        "motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear "
        "pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road "
        "rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel "
        "streetcar sunflower sweet_pepper table tank telephone television tiger tractor train "
        "trout tulip turtle wardrobe whale willow_tree wolf woman worm").split()),
}

# IDX file stems, in the order (train images, train labels, test images,
# test labels). Each may also be spelled with a dot before "idx" (as some
# mirrors do) and may carry a ".gz" suffix.
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_IDX_UBYTE = 0x08

# Fixed split of scikit-learn's digits: a permutation drawn with
# np.random.default_rng(0); its first 360 indices are the test set.
DIGITS_SPLIT_SEED = 0
DIGITS_NUM_TEST = 360


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """An image classification data set held in host memory.

  Attributes:
    name: data set name, one of `DATASETS`.
    train_images: float32[N, H, W, C] in [0, 1].
    train_labels: int32[N] in [0, num_classes).
    test_images: float32[M, H, W, C] in [0, 1].
    test_labels: int32[M].
    num_classes: number of classes.
    class_names: `num_classes` human-readable names, indexed by label.
    parts: the ground-truth part maps of a data set with planted concepts
      (`data.planted.PlantedParts`), None for every other source.
  """
  name: str
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int
  class_names: tuple[str, ...]
  parts: Any = None

  def __post_init__(self):
    chex.assert_rank([self.train_images, self.test_images], 4)
    chex.assert_rank([self.train_labels, self.test_labels], 1)
    if self.train_images.shape[1:] != self.test_images.shape[1:]:
      raise ValueError(
          f"train and test images differ in shape: "
          f"{self.train_images.shape[1:]} vs {self.test_images.shape[1:]}")
    for split in ("train", "test"):
      images = getattr(self, f"{split}_images")
      labels = getattr(self, f"{split}_labels")
      if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{split}: {images.shape[0]} images but "
                         f"{labels.shape[0]} labels")
    if len(self.class_names) != self.num_classes:
      raise ValueError(f"{len(self.class_names)} class names for "
                       f"{self.num_classes} classes")
    if self.parts is not None:
      for split in ("train", "test"):
        maps = getattr(self.parts, split)
        if maps.shape != getattr(self, f"{split}_images").shape[:3]:
          raise ValueError(f"{split} part maps {maps.shape} do not match the images "
                           f"{getattr(self, f'{split}_images').shape[:3]}")

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C) of one image."""
    return tuple(self.train_images.shape[1:])

  num_train = property(lambda self: self.train_images.shape[0])
  num_test = property(lambda self: self.test_images.shape[0])

  def __repr__(self) -> str:
    return (f"Dataset(name={self.name!r}, train={self.num_train}, test={self.num_test}, "
            f"image_shape={self.image_shape}, num_classes={self.num_classes})")


# --------------------------------------------------------------------------
# Validation.


def _check_optional_positive_int(value, what: str) -> None:
  if value is None:
    return
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"{what} must be a positive int or None, got "
                    f"{value!r} of type {type(value).__name__}")
  if value < 1:
    raise ValueError(f"{what} must be a positive int or None, got {value}")


def check_source_arguments(name, source, data_dir, image_size, max_train, max_test):
  """Checks `load_dataset` arguments before any I/O."""
  if source not in SOURCES:
    raise ValueError(f"unknown source {source!r}; valid sources: "
                     f"{', '.join(SOURCES)}")
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; valid datasets: "
                     f"{', '.join(DATASETS)}")
  if name not in _SOURCE_DATASETS[source]:
    providers = [s for s in SOURCES if name in _SOURCE_DATASETS[s]]
    raise ValueError(
        f"dataset {name!r} is not available from source {source!r}; source "
        f"{source!r} provides: {', '.join(_SOURCE_DATASETS[source])}; "
        f"{name!r} is available from source(s): {', '.join(providers)}")
  if source == "idx" and data_dir is None and name not in DEFAULT_IDX_DIRS:
    raise ValueError(
        f"source 'idx' has no default directory for {name!r} (defaults exist "
        f"for: {', '.join(DEFAULT_IDX_DIRS)}); pass data_dir=<directory with "
        f"{', '.join(_IDX_FILES)} (optionally .gz)>")
  if data_dir is not None and source in ("digits", "planted"):
    raise ValueError(f"source {source!r} reads its embedded data and takes no data_dir, "
                     f"got data_dir={data_dir!r}")
  _check_optional_positive_int(image_size, "image_size")
  _check_optional_positive_int(max_train, "max_train")
  _check_optional_positive_int(max_test, "max_test")


# --------------------------------------------------------------------------
# Resizing and pixel scaling.


def _nearest_indices(in_size: int, out_size: int) -> np.ndarray:
  """Source index of each output index, as torch's "nearest" computes it.

  torch (`nearest_idx` in aten/src/ATen/native/cpu/UpSampleKernel.cpp, with
  `nearest_neighbor_compute_source_index` from UpSample.h): identity when the
  sizes agree, ``i >> 1`` for exact 2x (the same as the general rule),
  otherwise ``min(floor(i * scale), in - 1)`` with ``scale = float32(in) /
  out`` and the product taken in float32.
  """
  if in_size == out_size:
    return np.arange(out_size)
  scale = np.float32(in_size) / np.float32(out_size)
  src = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
  return np.minimum(src, in_size - 1)


def resize_nearest(images: np.ndarray, size: int) -> np.ndarray:
  """Resizes images to `size` x `size` by nearest neighbour (torch semantics).

  Output pixel ``(i, j)`` is input pixel ``(floor(i * H / size),
  floor(j * W / size))`` computed as ``torch.nn.functional.interpolate(x,
  size=size, mode="nearest")`` does (float32 scale), which is what the ClaDec
  reference code applies to 28x28 Fashion-MNIST. Works for up- and
  down-sampling and keeps the dtype, so it can run on uint8 before scaling.

  Args:
    images: [N, H, W, C] array of any dtype.
    size: output height and width, a positive int.

  Returns:
    [N, size, size, C] array of the input's dtype.
  """
  _check_optional_positive_int(size, "size")
  if size is None:
    raise ValueError("size must be a positive int, got None")
  images = np.asarray(images)
  chex.assert_rank(images, 4)
  _, h, w, _ = images.shape
  if h == size and w == size:
    return images
  rows = _nearest_indices(h, size)
  cols = _nearest_indices(w, size)
  return images[:, rows[:, None], cols[None, :], :]


def _to_unit_float(images: np.ndarray) -> np.ndarray:
  """uint8 -> float32 in [0, 1], as torchvision's ToTensor (x.float() / 255)."""
  return images.astype(np.float32) / np.float32(255)


def _preprocess(images: np.ndarray, image_size: int | None) -> np.ndarray:
  """uint8 [N, H, W, C] -> float32 [N, S, S, C] in [0, 1]."""
  if image_size is not None:
    images = resize_nearest(images, image_size)  # on uint8: 4x less to move
  return _to_unit_float(images)


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"{where}: labels must lie in [0, {num_classes}), found "
                     f"range [{labels.min()}, {labels.max()}]")


# --------------------------------------------------------------------------
# IDX source.


def _idx_path(data_dir: str, stem: str, name: str) -> str:
  """Finds `stem` in `data_dir`, raw or gzipped; FileNotFoundError if absent."""
  dotted = stem.replace("-idx", ".idx")
  for candidate in (stem, stem + ".gz", dotted, dotted + ".gz"):
    path = os.path.join(data_dir, candidate)
    if os.path.isfile(path):
      return path
  hint = _idx_hint(name)
  raise FileNotFoundError(
      f"IDX file {os.path.join(data_dir, stem)}[.gz] not found (directory "
      f"{data_dir} holds: {', '.join(sorted(os.listdir(data_dir))) or 'nothing'})"
      f". {hint}")


def _idx_hint(name: str) -> str:
  get = ("install it with `sudo apt-get install dataset-fashion-mnist` "
         f"(puts it in {DEFAULT_IDX_DIRS['fashion_mnist']}), "
         if name == "fashion_mnist" else
         "download the four MNIST-format IDX files into data_dir, ")
  return (f"To get {name!r}: {get}or use source='tfds' "
          "(`pip install jaxconcepts[tfds]`, downloads on first use).")


_READ_CHUNK = 1 << 26


def _read_exactly(f, n: int, path: str, what: str) -> bytes:
  """n bytes of f, read in chunks: a header that claims more data than the file has is a
  "truncated" error when the data runs out, not an attempt to allocate it all at once."""
  chunks, got = [], 0
  try:
    while got < n:
      chunk = f.read(min(_READ_CHUNK, n - got))
      if not chunk:
        break
      chunks.append(chunk)
      got += len(chunk)
  except (EOFError, OSError, gzip.BadGzipFile) as e:  # truncated/corrupt gzip
    raise ValueError(f"IDX file {path}: cannot read {what} "
                     f"({type(e).__name__}: {e})") from e
  data = b"".join(chunks)
  if len(data) != n:
    raise ValueError(f"IDX file {path} is truncated: expected {n} bytes of "
                     f"{what}, found {len(data)}")
  return data


def read_idx(path: str, ndim: int, count: int | None = None) -> np.ndarray:
  """Reads an unsigned-byte IDX file (MNIST format), gzipped or not.

  IDX layout: two zero bytes, a type byte (0x08 = unsigned byte), a byte with
  the number of dimensions, one big-endian uint32 per dimension, then the data
  in C order.

  Args:
    path: the file; a ".gz" suffix means gzip.
    ndim: the expected number of dimensions (3 for images, 1 for labels).
    count: if given, read only the first `count` entries along axis 0 (the
      rest of the file is not read, so it is not checked either).

  Returns:
    uint8 array of the header's shape (axis 0 cut to `count`).

  Raises:
    ValueError: bad magic / type / ndim, or fewer or more data bytes than the
      header promises, naming the file and what was expected.
  """
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    magic = _read_exactly(f, 4, path, "the 4-byte header")
    if magic[0] != 0 or magic[1] != 0 or magic[2] != _IDX_UBYTE:
      raise ValueError(
          f"IDX file {path} has bad magic {magic.hex()}; expected "
          f"0000{_IDX_UBYTE:02x}{ndim:02x} (unsigned-byte IDX, {ndim} dims)")
    if magic[3] != ndim:
      raise ValueError(f"IDX file {path} has {magic[3]} dimensions; expected "
                       f"{ndim} (magic 0000{_IDX_UBYTE:02x}{ndim:02x})")
    shape = list(np.frombuffer(
        _read_exactly(f, 4 * ndim, path, "the dimension sizes"), dtype=">u4"))
    shape = [int(d) for d in shape]
    if count is not None:
      shape[0] = min(shape[0], count)
    n_bytes = int(np.prod(shape))
    data = _read_exactly(f, n_bytes, path,
                         f"data for shape {tuple(shape)} (from the header)")
    if count is None and f.read(1):
      raise ValueError(f"IDX file {path} is longer than its header says: "
                       f"expected exactly {n_bytes} data bytes for shape "
                       f"{tuple(shape)}")
  return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _load_idx(name, data_dir, image_size, max_train, max_test):
  data_dir = DEFAULT_IDX_DIRS[name] if data_dir is None else data_dir
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(
        f"IDX directory {data_dir} for {name!r} does not exist. "
        f"{_idx_hint(name)}")
  paths = [_idx_path(data_dir, stem, name) for stem in _IDX_FILES]
  num_classes = len(CLASS_NAMES[name])
  splits = []
  for img_path, lbl_path, count in ((paths[0], paths[1], max_train),
                                    (paths[2], paths[3], max_test)):
    images = read_idx(img_path, 3, count)
    labels = read_idx(lbl_path, 1, count)
    if images.shape[0] != labels.shape[0]:
      raise ValueError(f"IDX label count != image count: {lbl_path} holds "
                       f"{labels.shape[0]} labels, expected "
                       f"{images.shape[0]} as in {img_path}")
    _check_labels(labels, num_classes, lbl_path)
    splits.append((_preprocess(images[..., None], image_size),
                   labels.astype(np.int32)))
  return splits


# --------------------------------------------------------------------------
# TFDS source.


def _import_tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "source='tfds' needs tensorflow-datasets: `pip install "
        "jaxconcepts[tfds]` (or use source='idx' or source='digits')") from e
  return tfds


def _load_tfds(name, data_dir, image_size, max_train, max_test):
  tfds = _import_tfds()
  splits = []
  for split, count in (("train", max_train), ("test", max_test)):
    spec = split if count is None else f"{split}[:{count}]"
    images, labels = tfds.as_numpy(tfds.load(
        name, split=spec, batch_size=-1, as_supervised=True,
        data_dir=data_dir))
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
      raise ValueError(f"tfds {name}/{split}: expected uint8 [N, H, W, C] "
                       f"images, got {images.dtype} {images.shape}")
    labels = np.asarray(labels).astype(np.int32)
    _check_labels(labels, len(CLASS_NAMES[name]), f"tfds {name}/{split}")
    splits.append((_preprocess(images, image_size), labels))
  return splits

# --------------------------------------------------------------------------
# TFDS as a stream (data too large for host memory).


def _epoch_seed(seed: int, epoch: int) -> int:
  """An int32 seed for tf.data from (seed, epoch): each epoch its own, reproducible order."""
  return int(np.random.default_rng((int(seed), int(epoch), 1)).integers(2**31 - 1))


@dataclasses.dataclass(frozen=True)
class TfdsStream:
  """A TFDS split read as a stream, each process its own shard, never whole.

  The split is cut into `process_count` equal shards
  (`tfds.even_splits(..., drop_remainder=True)`, as `tfds.split_for_jax_process`
  does, but equal so every process runs the same number of steps); process p
  reads shard p. Within an epoch the order is a pure function of (seed,
  epoch): files are interleaved with a seeded `ReadConfig` and examples pass a
  seeded shuffle buffer, so reading the epoch again, or resuming it at batch
  b (the first b local batches skipped), gives the same examples in the same
  order. The training loop reads it like `data.batching.ArrayStream`.

  Attributes:
    name: a registered TFDS name (e.g. "imagenet2012", "cifar100").
    split: "train", "test", or any TFDS split string ("train[:10%]").
    data_dir: TFDS data directory (default: TFDS's).
    image_size: resize to image_size x image_size (`resize_nearest`); None:
      keep the native size.
    shuffle: shuffle files and examples per (seed, epoch) (else file order).
    shuffle_buffer: examples in tf.data's shuffle buffer.
    process_index, process_count: this process's shard; None: JAX's.
  """
  name: str
  split: str = "train"
  data_dir: str | None = None
  image_size: int | None = 32
  shuffle: bool = True
  shuffle_buffer: int = 10_000
  process_index: int | None = None
  process_count: int | None = None

  def _process(self) -> tuple[int, int]:
    if self.process_count is None:
      import jax  # pylint: disable=g-import-not-at-top
      return jax.process_index(), jax.process_count()
    return int(self.process_index or 0), int(self.process_count)

  def _builder(self):
    tfds = _import_tfds()
    builder = tfds.builder(self.name, data_dir=self.data_dir)
    if not builder.is_prepared():
      if self._process()[1] > 1:
        raise ValueError(f"tfds {self.name} is not prepared in {builder.data_dir}; prepare it "
                         f"once before a multi-host run (`tfds build {self.name}` or one "
                         f"single-process run with the same data_dir)")
      builder.download_and_prepare()
    return builder

  @property
  def shard_size(self) -> int:
    """Examples in each process's shard (the split's size // process_count)."""
    return self._builder().info.splits[self.split].num_examples // self._process()[1]

  @property
  def num_examples(self) -> int:
    """Examples per epoch over all processes (the remainder of the shards dropped)."""
    return self.shard_size * self._process()[1]

  def num_batches(self, batch_size: int) -> int:
    """Global batches per epoch: every process reads batch_size / process_count per batch."""
    return -(-self.shard_size // self._local_size(batch_size, None))

  def _local_size(self, batch_size: int, rows: slice | None) -> int:
    count = self._process()[1]
    local = batch_size // count if rows is None else rows.stop - rows.start
    if batch_size % count or local * count != batch_size:
      raise ValueError(f"batch_size {batch_size} must split evenly over the {count} processes "
                       f"(rows {rows})")
    return local

  def local_batches(self, batch_size: int, rows: slice | None, *, seed: int, epoch: int,
                    start_batch: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """This process's part of every global batch of `epoch`, from batch `start_batch` on.

    Yields:
      {"image": float32 [L, S, S, C] in [0, 1], "label": int32 [L], "mask":
      bool [L]}, L = batch_size / process_count; the last batch padded and
      masked.
    """
    tfds = _import_tfds()
    local = self._local_size(batch_size, rows)
    index, count = self._process()
    if not 0 <= start_batch <= self.num_batches(batch_size):
      raise ValueError(f"start_batch must lie in [0, {self.num_batches(batch_size)}], got "
                       f"{start_batch}")
    shard = tfds.even_splits(self.split, count, drop_remainder=True)[index]
    epoch_seed = _epoch_seed(seed, epoch)
    read_config = tfds.ReadConfig(shuffle_seed=epoch_seed)
    ds = self._builder().as_dataset(split=shard, as_supervised=True, shuffle_files=self.shuffle,
                                    read_config=read_config)
    if self.shuffle:
      ds = ds.shuffle(self.shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)
    ds = ds.skip(start_batch * local).batch(local).prefetch(2)
    num_classes = len(CLASS_NAMES.get(self.name, ())) or None
    for images, labels in tfds.as_numpy(ds):
      if num_classes:
        _check_labels(labels, num_classes, f"tfds {self.name}/{self.split}")
      yield batching.padded_batch(_preprocess(images, self.image_size), labels.astype(np.int32),
                                  np.arange(len(labels)), local)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C) of the images it yields: the stored shape, resized to `image_size`."""
    h, w, c = self._builder().info.features["image"].shape
    return (h, w, c) if self.image_size is None else (self.image_size, self.image_size, c)

  def head(self, n: int | None, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The split's first `n` examples (None: all) in file order, the same on every process:
    (float32 [n, S, S, C], int32 [n]) in host memory, read a batch at a time."""
    _check_optional_positive_int(n, "n")
    whole = dataclasses.replace(self, shuffle=False, process_index=0, process_count=1)
    batches = whole.local_batches(batch_size, None, seed=0, epoch=0)
    if n is not None:
      batches = itertools.islice(batches, -(-n // batch_size))
    parts = [(b["image"][b["mask"]], b["label"][b["mask"]]) for b in batches]
    if not parts:
      raise ValueError(f"tfds {self.name}/{self.split} holds no examples")
    return np.concatenate([p[0] for p in parts])[:n], np.concatenate([p[1] for p in parts])[:n]

# --------------------------------------------------------------------------
# scikit-learn digits source.


def _load_digits(image_size, max_train, max_test):
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
  digits = sk_datasets.load_digits()
  images = (digits.images / 16.0).astype(np.float32)[..., None]  # 0..16
  labels = digits.target.astype(np.int32)
  perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(labels))
  test_idx, train_idx = perm[:DIGITS_NUM_TEST], perm[DIGITS_NUM_TEST:]
  splits = []
  for idx, count in ((train_idx, max_train), (test_idx, max_test)):
    idx = idx[:count]
    x = images[idx]
    if image_size is not None:
      x = resize_nearest(x, image_size)
    splits.append((np.ascontiguousarray(x), labels[idx]))
  return splits


# --------------------------------------------------------------------------
# Public entry point.


def load_dataset(name: str, source: str = "tfds", *,
                 data_dir: str | None = None, image_size: int | None = 32,
                 max_train: int | None = None,
                 max_test: int | None = None) -> Dataset:
  """Loads an image classification data set into host memory.

  Args:
    name: one of `DATASETS`. "digits" only with source "digits".
    source: one of `SOURCES`:
      "tfds": `tensorflow_datasets.load` (train / test splits); `data_dir` is
        passed through. Needs `pip install jaxconcepts[tfds]`.
      "idx": four MNIST-format IDX files in `data_dir` (default
        `DEFAULT_IDX_DIRS[name]`): train-images-idx3-ubyte,
        train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
        t10k-labels-idx1-ubyte, each optionally gzipped (".gz").
      "digits": scikit-learn's 8x8 digits (values 0..16 scaled by 1/16),
        split by a fixed permutation (`np.random.default_rng(0)`): 1437
        train, 360 test images.
      "planted": `data.planted` (seed 0): 3000 train, 600 test images of
        six classes built from eight parts; the part maps in `parts`.
    data_dir: directory for "tfds" / "idx" (not used by "digits").
    image_size: resize to `image_size` x `image_size` with nearest neighbour
      (`resize_nearest`, torch semantics); None keeps the native size.
    max_train: keep only the first `max_train` training examples.
    max_test: keep only the first `max_test` test examples.

  Returns:
    A `Dataset` with float32 [N, H, W, C] images in [0, 1] and int32 labels.

  Raises:
    ValueError: unknown name / source, an unsupported combination, bad
      sizes, or a corrupt IDX file (naming the file and what was expected).
    FileNotFoundError: "idx" directory or file missing (with how to get it).
    ImportError: "tfds" without tensorflow-datasets installed.
  """
  check_source_arguments(name, source, data_dir, image_size, max_train, max_test)
  if source == "idx":
    splits = _load_idx(name, data_dir, image_size, max_train, max_test)
  elif source == "tfds":
    splits = _load_tfds(name, data_dir, image_size, max_train, max_test)
  elif source == "planted":
    splits, parts = planted.load(image_size, max_train, max_test)
  else:
    splits = _load_digits(image_size, max_train, max_test)
  (train_x, train_y), (test_x, test_y) = splits
  for split, images in (("train", train_x), ("test", test_x)):
    if images.shape[0] == 0:
      raise ValueError(f"the {split} split of {name} ({source}) is empty; every program needs "
                       "images in both splits")
  class_names = CLASS_NAMES[name]
  return Dataset(name=name, train_images=train_x, train_labels=train_y,
                 test_images=test_x, test_labels=test_y,
                 num_classes=len(class_names), class_names=class_names,
                 parts=parts if source == "planted" else None)
