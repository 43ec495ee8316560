"""An embedded data set with planted concepts: classes built from known parts.

Every image is 32x32x1 float32 in [0, 1]: a light noisy background (uniform
in [0.85, 1]) with two dark *parts* (12x12 glyphs at intensity U(0, 0.25))
pasted into two different quadrants, each at a random offset of 0..4 pixels
inside its 16x16 quadrant. Which two parts an image carries is its class.
(Dark on light because the concept paper's DeepLift baseline is a white image:
an attribution then measures what the parts add to an empty page; with
bright parts a filled white block looks like the baseline and gets none.)

===========  ================  ================
class        unique part       shared part
===========  ================  ================
0 block      ``block``         ``stripes`` (0, 1, 2)
1 ring       ``ring``          ``stripes``
2 plus       ``plus``          ``stripes``
3 cross      ``cross``         ``checker`` (3, 4, 5)
4 triangle   ``triangle``      ``checker``
5 diamond    ``diamond``       ``checker``
===========  ================  ================

So a class is recognised by its unique part; the shared part says only which
half of the classes it belongs to. Because the truth is known, explanations can
be scored against it: each image comes with a *part map* (H, W) int8, the
part id under each pixel (-1: background; parts never overlap), and
:data:`CLASS_PARTS` says which parts each class holds. For a pair (A, B) the
parts that separate A from B are those of A that B lacks
(:func:`separating_parts`): for (0, 1) only ``block``; for (0, 3) ``block``
and ``stripes``.

Why quadrants: a concept crop of the VGG at ``conv3a`` (4x4 tap, 2x2
average-pooled: a 2x2 grid of 16x16 crops) is one quadrant, so a crop can hold
a whole part; the jitter keeps the parts off a fixed pixel grid.

The generator is a pure function of its arguments (:func:`generate`); the
split is fixed: the test images come from ``np.random.default_rng([seed, 1])``
and the training images from ``np.random.default_rng([seed, 0])``, so the
first n test images do not depend on how many training images are drawn.
Labels cycle through the classes (balanced) in an order shuffled by the same
stream. Generation is numpy only: 3000 + 600 images take well under a second.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxconcepts import utils

NAME = "planted"
IMAGE_SIZE = 32
PART_SIZE = 12
CELL = 16  # the quadrant size; parts sit at a 0..CELL-PART_SIZE offset in it
NUM_TRAIN, NUM_TEST = 3000, 600
BACKGROUND_RANGE = (0.85, 1.0)
INK_RANGE = (0.0, 0.25)

PART_NAMES = ("block", "ring", "plus", "cross", "triangle", "diamond", "stripes", "checker")
CLASS_NAMES = ("block", "ring", "plus", "cross", "triangle", "diamond")
# (num_classes, num_parts) bool: which parts each class holds.
CLASS_PARTS = np.zeros((len(CLASS_NAMES), len(PART_NAMES)), bool)
for _c in range(len(CLASS_NAMES)):
  CLASS_PARTS[_c, _c] = True
  CLASS_PARTS[_c, 6 if _c < 3 else 7] = True


def _glyphs(size: int = PART_SIZE) -> np.ndarray:
  """(num_parts, size, size) bool: the part shapes, in `PART_NAMES` order."""
  r, c = np.mgrid[:size, :size].astype(np.float32) + 0.5
  mid = size / 2
  dr, dc = r - mid, c - mid
  dist = np.hypot(dr, dc)
  out = [
      (np.abs(dr) < 0.42 * size) & (np.abs(dc) < 0.42 * size),          # block
      (dist > 0.28 * size) & (dist < 0.47 * size),                       # ring
      (np.abs(dr) < 0.13 * size) | (np.abs(dc) < 0.13 * size),           # plus
      (np.abs(dr - dc) < 0.17 * size) | (np.abs(dr + dc) < 0.17 * size),  # cross
      (r > 0.1 * size) & (r < 0.9 * size) & (np.abs(dc) < 0.5 * (r - 0.1 * size)),  # triangle
      (np.abs(np.abs(dr) + np.abs(dc) - 0.34 * size) < 0.14 * size),    # diamond
      (np.floor(r / 2) % 2 == 0),                                       # stripes (texture)
      ((np.floor(r / 3) + np.floor(c / 3)) % 2 == 0),                    # checker (texture)
  ]
  return np.stack(out)


class PlantedParts(NamedTuple):
  """The ground truth of a planted data set (`Dataset.parts`).

  Attributes:
    train: (N, H, W) int8 part maps of the training images (-1: background).
    test: (M, H, W) int8 part maps of the test images.
    names: the part names, indexed by part id.
    class_parts: (num_classes, num_parts) bool, the parts each class holds.
  """
  train: np.ndarray
  test: np.ndarray
  names: tuple[str, ...]
  class_parts: np.ndarray

  def split(self, name: str) -> np.ndarray:
    """The part maps of split "train" or "test"."""
    utils.check_choice("split", name, ("train", "test"))
    return self.train if name == "train" else self.test


def separating_parts(class_parts: np.ndarray, a: int, b: int) -> np.ndarray:
  """(num_parts,) bool: the parts class `a` holds and class `b` does not."""
  class_parts = np.asarray(class_parts, bool)
  return class_parts[a] & ~class_parts[b]


def _draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """n images, labels and part maps from one stream (see module docstring).

  Everything is drawn image by image (labels per block of one image per
  class), so the first n images of a stream do not depend on how many follow.
  """
  glyphs = _glyphs()
  k = len(CLASS_NAMES)
  labels = np.empty(n, np.int32)
  images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 1), np.float32)
  maps = np.full((n, IMAGE_SIZE, IMAGE_SIZE), -1, np.int8)
  for i in range(n):
    if i % k == 0:
      block = rng.permutation(k)
    labels[i] = block[i % k]
    images[i] = rng.uniform(*BACKGROUND_RANGE, images.shape[1:])
    quads = rng.permutation(4)[:2]  # two distinct quadrants
    jitter = rng.integers(0, CELL - PART_SIZE + 1, (2, 2))
    ink = rng.uniform(*INK_RANGE, 2)
    for j, part in enumerate(np.flatnonzero(CLASS_PARTS[labels[i]])):
      r = (quads[j] // 2) * CELL + jitter[j, 0]
      c = (quads[j] % 2) * CELL + jitter[j, 1]
      g = glyphs[part]
      images[i, r:r + PART_SIZE, c:c + PART_SIZE, 0][g] = ink[j]
      maps[i, r:r + PART_SIZE, c:c + PART_SIZE][g] = part
  return images, labels, maps


def generate(seed: int = 0, num_train: int = NUM_TRAIN, num_test: int = NUM_TEST
             ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray],
                        PlantedParts]:
  """Draws the planted data set.

  Args:
    seed: the generator's seed (0 for `load_dataset`).
    num_train: training images (>= 1).
    num_test: test images (>= 1).

  Returns:
    ((train images (N, 32, 32, 1) float32 in [0, 1], labels (N,) int32),
    (test images, labels), `PlantedParts` with the part maps).
  """
  seed = utils.check_int(seed, "seed", 0)
  num_train = utils.check_int(num_train, "num_train")
  num_test = utils.check_int(num_test, "num_test")
  train = _draw(np.random.default_rng([seed, 0]), num_train)
  test = _draw(np.random.default_rng([seed, 1]), num_test)
  parts = PlantedParts(train[2], test[2], PART_NAMES, CLASS_PARTS.copy())
  return train[:2], test[:2], parts


def load(image_size: int | None = None, max_train: int | None = None,
         max_test: int | None = None, seed: int = 0):
  """The splits and truth for `load_dataset("planted", "planted")`.

  Args:
    image_size: None or 32 keep the native size; another size resizes the
      images and the part maps alike (nearest neighbour).
    max_train, max_test: draw only that many images (the first ones of each
      fixed stream; default `NUM_TRAIN`, `NUM_TEST`).
    seed: the generator's seed.

  Returns:
    ([(train_x, train_y), (test_x, test_y)], `PlantedParts`).
  """
  from jaxconcepts.data.sources import resize_nearest  # pylint: disable=g-import-not-at-top
  train, test, parts = generate(seed, max_train or NUM_TRAIN, max_test or NUM_TEST)
  if image_size is not None and image_size != IMAGE_SIZE:
    train = (resize_nearest(train[0], image_size), train[1])
    test = (resize_nearest(test[0], image_size), test[1])
    parts = parts._replace(train=resize_nearest(parts.train[..., None], image_size)[..., 0],
                           test=resize_nearest(parts.test[..., None], image_size)[..., 0])
  return [train, test], parts
