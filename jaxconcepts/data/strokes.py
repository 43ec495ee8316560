"""A seeded, embedded data set of sparse line drawings: thin strokes on black.

Each class is a glyph made of straight strokes (a ring, a bar, a "Z", a "7",
an "L", a cross, a plus, a triangle), drawn with a random rotation, scale,
shift, per-vertex jitter, stroke width and ink intensity, anti-aliased, on a
black background. The images are (size, size, 1) float32 in [0, 1] and mostly
zero (about 10% of the pixels carry ink), like handwritten digits: the data
on which the Fashion-MNIST decoder recipe collapsed to an all-black image
(issue 16). It needs no download and is a pure function of its arguments.

The split is fixed: the training and test images are drawn from two
independent streams of `np.random.default_rng([seed, 0])` and
`np.random.default_rng([seed, 1])`, so the first `num_test` test images are
the same whatever `num_train` is (and vice versa). Labels cycle through the
classes (balanced), in an order shuffled by the same stream.
"""

from __future__ import annotations

import numpy as np

from jaxconcepts import utils
from jaxconcepts.data.sources import Dataset

NAME = "strokes"


def _ring(n: int = 16) -> np.ndarray:
  t = np.linspace(0.0, 2.0 * np.pi, n + 1)
  return np.stack([0.65 * np.cos(t), 0.9 * np.sin(t)], -1)


# Glyphs in a [-1, 1]^2 frame (x right, y down): each a tuple of polylines.
_GLYPHS = {
    "ring": (_ring(),),
    "bar": (np.array([[-0.25, -0.65], [0.0, -0.9], [0.0, 0.9]]),),
    "zed": (np.array([[-0.7, -0.8], [0.7, -0.8], [-0.7, 0.8], [0.7, 0.8]]),),
    "seven": (np.array([[-0.7, -0.8], [0.7, -0.8], [-0.1, 0.9]]),),
    "ell": (np.array([[-0.5, -0.9], [-0.5, 0.8], [0.7, 0.8]]),),
    "cross": (np.array([[-0.7, -0.8], [0.7, 0.8]]), np.array([[0.7, -0.8], [-0.7, 0.8]])),
    "plus": (np.array([[0.0, -0.9], [0.0, 0.9]]), np.array([[-0.8, 0.0], [0.8, 0.0]])),
    "triangle": (np.array([[0.0, -0.85], [0.8, 0.75], [-0.8, 0.75], [0.0, -0.85]]),),
}
CLASS_NAMES = tuple(_GLYPHS)


def _segments(name: str) -> np.ndarray:
  """(S, 2, 2) float: the glyph's strokes as segments (start, end) of (x, y)."""
  return np.concatenate([np.stack([p[:-1], p[1:]], 1) for p in _GLYPHS[name]], 0)


def _pose(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
  """Random pose and ink of n drawings (angles in radians, lengths in pixels)."""
  return {"angle": rng.uniform(-0.3, 0.3, n), "scale": rng.uniform(0.55, 0.8, n),
          "shift": rng.uniform(-3.0, 3.0, (n, 2)), "width": rng.uniform(0.6, 1.2, n),
          "ink": rng.uniform(0.75, 1.0, n)}


def _draw(segments: np.ndarray, pose: dict[str, np.ndarray], size: int) -> np.ndarray:
  """Anti-aliased drawings (n, size, size) float32 of segments (n, S, 2, 2) in glyph units.

  A pixel's value is `ink * clip(width + 0.5 - d, 0, 1)`, d = the distance (in
  pixels) from its centre to the nearest stroke: a stroke of half-width
  `width` with a one-pixel linear edge.
  """
  c, s = np.cos(pose["angle"]), np.sin(pose["angle"])
  rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (n, 2, 2)
  half = size / 2.0
  pts = np.einsum("nij,nsej->nsei", rot, segments) * (pose["scale"] * half)[:, None, None, None]
  pts = pts + half + pose["shift"][:, None, None, :]
  a, b = pts[:, :, 0], pts[:, :, 1]  # (n, S, 2)
  yy, xx = np.mgrid[0:size, 0:size] + 0.5
  p = np.stack([xx.ravel(), yy.ravel()], -1)  # (P, 2) as (x, y)
  ab = b - a
  t = np.einsum("pk,nsk->nps", p, ab) - np.einsum("nsk,nsk->ns", a, ab)[:, None]
  t = np.clip(t / np.maximum(np.einsum("nsk,nsk->ns", ab, ab), 1e-9)[:, None], 0.0, 1.0)
  nearest = a[:, None] + t[..., None] * ab[:, None]  # (n, P, S, 2)
  d = np.sqrt(np.square(p[None, :, None] - nearest).sum(-1)).min(-1)  # (n, P)
  img = np.clip(pose["width"][:, None] + 0.5 - d, 0.0, 1.0) * pose["ink"][:, None]
  return img.reshape(-1, size, size).astype(np.float32)


def _jittered(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
  """(n, S_max, 2, 2) segments of each label's glyph, vertices jittered; short glyphs padded.

  Padding repeats a glyph's last segment, which draws nothing new.
  """
  segs = [_segments(CLASS_NAMES[k]) for k in range(len(CLASS_NAMES))]
  s_max = max(len(s) for s in segs)
  padded = np.stack([np.concatenate([s, np.repeat(s[-1:], s_max - len(s), 0)]) for s in segs])
  out = padded[labels]
  return out + rng.normal(0.0, 0.04, out.shape)


def _split(rng: np.random.Generator, n: int, num_classes: int,
           size: int, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
  labels = rng.permutation(np.arange(n) % num_classes).astype(np.int32)
  segs = _jittered(rng, labels)
  pose = _pose(rng, n)
  images = [_draw(segs[i:i + chunk], {k: v[i:i + chunk] for k, v in pose.items()}, size)
            for i in range(0, n, chunk)]
  images = np.concatenate(images, 0) if images else np.zeros((0, size, size), np.float32)
  return images[..., None], labels


def load_strokes(num_train: int = 2000, num_test: int = 500, *, num_classes: int = 8,
                 image_size: int = 32, seed: int = 0) -> Dataset:
  """The strokes data set: sparse line drawings of `num_classes` glyphs on black.

  Args:
    num_train: training images (>= 1).
    num_test: test images (>= 1).
    num_classes: how many of the glyphs `CLASS_NAMES` to use (2..8), the first ones.
    image_size: height and width (>= 16).
    seed: the data set's seed; the same arguments give the same arrays.

  Returns:
    A `Dataset` named "strokes": float32 (N, S, S, 1) images in [0, 1] (mostly
    zero), int32 labels, balanced over the classes.

  Raises:
    ValueError: naming a bad argument, before anything is drawn.
  """
  utils.check_int(num_train, "num_train", 1)
  utils.check_int(num_test, "num_test", 1)
  utils.check_int(num_classes, "num_classes", 2)
  if num_classes > len(CLASS_NAMES):
    raise ValueError(f"num_classes must be at most {len(CLASS_NAMES)} (the glyphs "
                     f"{', '.join(CLASS_NAMES)}), got {num_classes}")
  utils.check_int(image_size, "image_size", 16)
  utils.check_int(seed, "seed", 0)
  splits = [_split(np.random.default_rng([seed, i]), n, num_classes, image_size)
            for i, n in ((0, num_train), (1, num_test))]
  (train_x, train_y), (test_x, test_y) = splits
  return Dataset(name=NAME, train_images=train_x, train_labels=train_y, test_images=test_x,
                 test_labels=test_y, num_classes=num_classes,
                 class_names=CLASS_NAMES[:num_classes])
