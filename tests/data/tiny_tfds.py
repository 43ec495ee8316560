"""A tiny MNIST-shaped TFDS data set prepared offline (no network), for stream tests.

`build(path)` prepares "mnist" 3.0.1 under `path` with a builder that is not
registered (TFDS's own MNIST builder then reads the files: prepared, so
nothing is downloaded). Train image i has pixel (0, 0) = i and label i % 10,
plus a label-dependent bright square so a classifier can learn something.
"""

import numpy as np


def image(i: int, with_square: bool = True) -> np.ndarray:
  """The uint8 (28, 28, 1) image with id `i`."""
  out = np.zeros((28, 28, 1), np.uint8)
  if with_square:
    c = i % 10
    out[2 + 2 * c:6 + 2 * c, 4:10, 0] = 200
  out[0, 0, 0] = i % 256
  return out


def build(path: str, n_train: int, n_test: int, with_square: bool = True) -> str:
  """Prepares the data set in `path` and returns `path` (the TFDS data_dir)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

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
      return {"train": self._generate_examples(n_train),
              "test": self._generate_examples(n_test, offset=n_train)}

    def _generate_examples(self, n, offset=0):
      for i in range(offset, offset + n):
        yield i, {"image": image(i, with_square), "label": i % 10}

  TinyMnist(data_dir=path).download_and_prepare()
  return path
