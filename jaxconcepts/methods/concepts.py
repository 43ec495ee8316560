"""Concepts of a single class and the stitched-image test (Herdt Sec. 4).

Why does a classifier predict class A? For a layer `Y` (a spatial tap, see
`split.py`):

1. Take the images the model *predicts* as A (up to 60; labels are ignored):
   :func:`class_image_indices`.
2. Attribute the pre-softmax logit of A to the activations at `Y` with
   DeepLift + SmoothGrad (`attribution.layer_deeplift_smoothgrad`, injectable
   everywhere as `attribution_fn`).
3. Per-pixel score = channel mean of the attribution with negative pixels set
   to zero (the paper's order, ``"mean_then_relu"``; the authors' code applies
   the ReLU per element before the mean, ``"relu_then_mean"``):
   :func:`pixel_scores`. Activations are multiplied by the score:
   :func:`concept_matrix` gives the (N * h * w, c) matrix of scaled pixel
   vectors.
4. NMF into k concepts (default 6; multiplicative updates, `nmf.py`): the
   concepts are the k rows of ``h`` (k, c), vectors in the layer's channel
   space. :func:`extract_concepts` (one class), :func:`extract_concepts_batched`
   (many classes in one ``vmap``-ed NMF).

Visualisation by data set crops (:func:`search_crops`, :func:`extract_crops`):
the activations of every image of a data set are 2x2 average-pooled; the m
pooled pixels with the highest cosine similarity to a concept are shown as the
input crops under them. Crop geometry (:func:`crop_geometry`), following the
authors' code: for a tap of spatial size (h, w) from inputs (H, W), the pooled
grid is (h // 2, w // 2) (floor; a trailing odd row / column is dropped), the
crop side is ``H // (h // 2)`` by ``W // (w // 2)`` and pooled pixel (i, j)
is the crop at rows ``[i * side, (i + 1) * side)``. For even h this is
exactly the input region the pooled pixel's 2 x 2 tap pixels tile (side =
2 x the layer's stride); for odd h it is the reference code's approximation
(e.g. ResNet layer4 at 224: 7x7 tap, 3x3 grid, 74x74 crops, as the paper
says). Fallback: if the pooled grid would have fewer than 2 cells along a
side (e.g. a 2x2 tap), pooling is skipped (``pool = 1``: grid (h, w), side
``H // h``); a layer whose grid is still a single cell (1x1 taps) or that has
no spatial axes at all (logits, pooled vectors) has no crops: ValueError.

The stitched-image test (:func:`stitch`): the top-1 crop of each of the k
concepts stitched into one image and fed to the model; the model should
predict A. Crops come from all images (Table 1) or only from images the model
does not predict as A (Table 2). Layouts:

* ``"vertical"`` -- the crops concatenated along the height (k * side x side),
  as the authors' code; for models that take any input size (our ResNets,
  global average pooling).
* ``"canvas"`` -- the crops at native scale on a canvas of the model's input
  size filled with ``fill`` (a background value; 0 = black for MNIST-like
  data): the near-square grid below, centred, if it fits, else row-major cells
  of the whole canvas; needs ``(H // side) * (W // side) >= k``. E.g. the VGG
  at 32x32, conv2a (8x8 tap): six 8x8 crops as a 2 x 3 block (16 x 24) in the
  middle of a black 32x32 image, where the objects of centred data sets are.
* ``"grid"`` -- a near-square grid (``ceil(sqrt(k))`` columns), empty cells
  ``fill``.
* ``"auto"`` (pipeline default) -- ``"vertical"`` if the model takes inputs
  of any size (it accepts twice its input size and the strip's shape), else
  ``"canvas"`` if the crops fit, else ``"grid"``. (Our VGG accepts some other
  sizes -- any side in (16, 32] ends in a 1x1 code -- but its dense layer was
  trained on 32x32 inputs, so it gets the canvas.)

Whenever the stitched image's size is not one the model accepts (fixed-size
models such as our VGG: its dense layer sees the flattened last conv), it is
resized bilinearly to the model's input size (:func:`fit_to_size`); e.g. the
VGG at conv2 (4x4 tap, 16x16 crops, 6 crops do not fit 32x32): a 2 x 3 grid of
16x16 crops (32 x 48) resized to 32x32. The stitched-test table records which
layout ran and whether a resize happened.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxconcepts.ops import nmf as nmf_lib

SCORE_ORDERS = ("mean_then_relu", "relu_then_mean")
STITCH_LAYOUTS = ("auto", "vertical", "canvas", "grid")
CROP_MODES = ("all", "exclude", "only")
THRESHOLDS = (0.1, 0.2, 0.5)

AttributionFn = Callable[..., Any]


def default_attribution_fn() -> AttributionFn:
  """`attribution.layer_deeplift_smoothgrad`, imported lazily."""
  from jaxconcepts.methods import attribution  # pylint: disable=g-import-not-at-top
  return attribution.layer_deeplift_smoothgrad


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
  if value not in choices:
    raise ValueError(f"unknown {name} {value!r}; valid {name}s: {list(choices)}")


def _check_positive_int(name: str, value: Any) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"{name} must be a positive int, got {value!r}")
  return int(value)


# ---------------------------------------------------------------------------
# Batched model application and class images.


def batched_apply(fn: Callable[[jax.Array], jax.Array], x: np.ndarray,
                  batch_size: int = 256) -> np.ndarray:
  """`fn` over `x` in fixed-size batches (the last one padded), on the host.

  Args:
    fn: a jitted function of a batch (B, ...) -> (B, ...).
    x: (N, ...) array.
    batch_size: rows per call. Every call has the same number of rows,
      `batch_size` or, for N < batch_size, the next power of two >= N (the
      last batch is zero-padded), so `fn` compiles once per size class rather
      than once per N.

  Returns:
    numpy array (N, ...) of the outputs.
  """
  batch_size = _check_positive_int("batch_size", batch_size)
  x = np.asarray(x)
  n = x.shape[0]
  if n == 0:
    raise ValueError("batched_apply got 0 rows")
  bs = min(batch_size, 1 << (n - 1).bit_length())
  outs = []
  for i in range(0, n, bs):
    chunk = x[i:i + bs]
    k = chunk.shape[0]
    if k < bs:
      chunk = np.concatenate([chunk, np.zeros((bs - k,) + x.shape[1:], x.dtype)])
    outs.append(np.asarray(fn(chunk))[:k])
  return np.concatenate(outs)


def class_image_indices(predictions: np.ndarray, cls: int,
                        max_images: int = 60) -> np.ndarray:
  """Indices of the first `max_images` images predicted as `cls`.

  Args:
    predictions: (N,) int, the model's argmax per image.
    cls: the class.
    max_images: at most this many (the paper: 60).

  Returns:
    (n,) int64 indices in data set order, n <= max_images (may be 0).
  """
  predictions = np.asarray(predictions)
  chex.assert_rank(predictions, 1)
  _check_positive_int("max_images", max_images)
  return np.flatnonzero(predictions == int(cls))[:int(max_images)]


# ---------------------------------------------------------------------------
# Scores and the concept matrix.


def pixel_scores(attributions: jax.Array, order: str = "mean_then_relu") -> jax.Array:
  """Per-pixel attribution score, negatives zeroed.

  Args:
    attributions: (N, h, w, c) layer attributions.
    order: "mean_then_relu" (paper: relu(mean_c(a))) or "relu_then_mean"
      (authors' code: mean_c(relu(a))).

  Returns:
    (N, h, w) non-negative scores.
  """
  check_choice("score_order", order, SCORE_ORDERS)
  chex.assert_rank(attributions, 4)
  if order == "mean_then_relu":
    return jax.nn.relu(jnp.mean(attributions, axis=-1))
  return jnp.mean(jax.nn.relu(attributions), axis=-1)


def concept_matrix(activations: jax.Array, attributions: jax.Array,
                   order: str = "mean_then_relu") -> jax.Array:
  """The (N * h * w, c) matrix of score-scaled pixel vectors that NMF factorises.

  Args:
    activations: (N, h, w, c) non-negative layer activations.
    attributions: (N, h, w, c) their attributions for the class.
    order: see :func:`pixel_scores`.

  Returns:
    (N * h * w, c) float32: activation vector x pixel score, rows in
    (image, row, col) order; pixels with a non-positive score are zero rows.
  """
  chex.assert_rank([activations, attributions], 4)
  chex.assert_equal_shape([activations, attributions])
  scores = pixel_scores(attributions, order)
  scaled = activations * scores[..., None]
  return scaled.reshape(-1, activations.shape[-1])


class ConceptSet(NamedTuple):
  """k concepts of one class (or one contrast pair).

  Attributes:
    basis: (k, c) non-negative NMF components (unnormalised, as the authors
      save them), one concept per row.
    rel_error: ||A - W H||_F / ||A||_F of the factorisation.
    n_vectors: number of non-zero pixel vectors that were factorised.
    n_iter: NMF iterations run.
  """
  basis: np.ndarray
  rel_error: float
  n_vectors: int
  n_iter: int


def count_vectors(matrix: jax.Array) -> int:
  """Number of non-zero rows (pixel vectors with a positive score)."""
  return int(jnp.sum(jnp.any(jnp.asarray(matrix) != 0, axis=-1)))


def _check_k(n_components: int, n_vectors: int, channels: int, what: str) -> int:
  k = _check_positive_int("n_components", n_components)
  if k > channels:
    raise ValueError(f"n_components={k} exceeds the layer's {channels} channels")
  if n_vectors < k:
    raise ValueError(
        f"{what} has only {n_vectors} pixel vector(s) with a positive score, fewer "
        f"than n_components={k}: cannot extract {k} concepts (use fewer concepts, "
        "more images or another layer)")
  return k


def extract_concepts(matrix, n_components: int = 6, *, init: str = "nndsvda",
                     max_iter: int = 200, tol: float = 1e-4, key: Any = 0,
                     what: str = "the class") -> ConceptSet:
  """NMF of one class's scaled pixel vectors into `n_components` concepts.

  Args:
    matrix: (m, c) non-negative (from :func:`concept_matrix`).
    n_components: k.
    init, max_iter, tol, key: passed to `nmf.nmf`.
    what: how to name the matrix in errors.

  Raises:
    ValueError: k larger than the channels or than the number of non-zero
      pixel vectors (naming both).
  """
  matrix = jnp.asarray(matrix, jnp.float32)
  chex.assert_rank(matrix, 2)
  n_vec = count_vectors(matrix)
  k = _check_k(n_components, n_vec, matrix.shape[1], what)
  res = nmf_lib.nmf(matrix, k, init=init, max_iter=max_iter, tol=tol, key=key)
  return ConceptSet(np.asarray(res.h), float(res.rel_error), n_vec, int(res.n_iter))


def extract_concepts_batched(matrices: Sequence[Any], n_components: int = 6, *,
                             init: str = "nndsvda", max_iter: int = 200,
                             tol: float = 1e-4, key: Any = 0,
                             names: Sequence[str] | None = None) -> list[ConceptSet]:
  """NMF of several classes at once (one `nmf.nmf_batched` call).

  The matrices have different numbers of rows; they are zero-padded to the
  largest and passed with `n_valid`. Result b equals `extract_concepts` on
  matrix b with key ``jax.random.split(key, B)[b]`` (up to float rounding).

  Args:
    matrices: B arrays (m_b, c), same c.
    n_components: k.
    init, max_iter, tol, key: as `nmf.nmf_batched`.
    names: B names for errors (default "matrix b").

  Raises:
    ValueError: mismatched channels, or k too large for one of the matrices
      (naming it). Check with :func:`count_vectors` first to skip such classes.
  """
  if not matrices:
    raise ValueError("extract_concepts_batched needs at least one matrix")
  mats = [np.asarray(m, np.float32) for m in matrices]
  names = list(names) if names is not None else [f"matrix {b}" for b in range(len(mats))]
  chans = {m.shape[1] for m in mats}
  if len(chans) != 1 or any(m.ndim != 2 for m in mats):
    raise ValueError(f"matrices must be 2-D with the same channels, got shapes "
                     f"{[m.shape for m in mats]}")
  n_vecs = [int(np.any(m != 0, axis=1).sum()) for m in mats]
  for m, n_vec, name in zip(mats, n_vecs, names):
    _check_k(n_components, n_vec, m.shape[1], name)
  rows = np.array([m.shape[0] for m in mats])
  stacked = np.zeros((len(mats), int(rows.max()), mats[0].shape[1]), np.float32)
  for b, m in enumerate(mats):
    stacked[b, :m.shape[0]] = m
  res = nmf_lib.nmf_batched(stacked, int(n_components), n_valid=rows, init=init,
                            max_iter=max_iter, tol=tol, key=key)
  h = np.asarray(res.h)
  return [ConceptSet(h[b], float(res.rel_error[b]), n_vecs[b], int(res.n_iter[b]))
          for b in range(len(mats))]


# ---------------------------------------------------------------------------
# Crop geometry, pooled search, crops.


@dataclasses.dataclass(frozen=True)
class CropGeometry:
  """Where a pooled activation pixel sits in the input (see module docstring).

  Attributes:
    image_hw: (H, W) input size.
    layer_hw: (h, w) tap size.
    pool: average-pooling window and stride (2, or 1 in the fallback).
    grid_hw: (h // pool, w // pool), the pooled grid.
    crop_hw: (H // grid_h, W // grid_w), the crop size; pooled pixel (i, j)
      is the crop at rows i * crop_h, columns j * crop_w.
  """
  image_hw: tuple[int, int]
  layer_hw: tuple[int, int]
  pool: int
  grid_hw: tuple[int, int]
  crop_hw: tuple[int, int]

  @property
  def cells(self) -> int:
    return self.grid_hw[0] * self.grid_hw[1]


def crop_geometry(image_shape: Sequence[int], layer_shape: Sequence[int],
                  pool: int = 2, layer: str | None = None) -> CropGeometry:
  """Crop geometry for a tap (h, w, c) of images (H, W, C); see module docstring.

  Raises:
    ValueError: the layer has no spatial axes, or a single spatial cell
      (crops would be the whole image).
  """
  name = f"layer {layer!r}" if layer is not None else "the layer"
  if len(layer_shape) != 3:
    raise ValueError(
        f"{name} has per-image shape {tuple(layer_shape)} without spatial extent; "
        "concept crops and the stitched / shifting tests need a spatial layer "
        "(h, w, c), e.g. a conv tap")
  if len(image_shape) != 3:
    raise ValueError(f"image shape must be (H, W, C), got {tuple(image_shape)}")
  pool = _check_positive_int("pool", pool)
  (big_h, big_w), (h, w) = image_shape[:2], layer_shape[:2]
  if h * w <= 1:
    raise ValueError(
        f"{name} has a {h}x{w} spatial grid: every activation pixel sees the whole "
        "image, so there are no crops; choose an earlier layer with at least 2x2 "
        "pixels (e.g. conv2a, conv2 or conv3a for the VGG at 32x32)")
  if h // pool < 2 or w // pool < 2:
    pool = 1  # documented fallback: no pooling for small grids
  gh, gw = h // pool, w // pool
  return CropGeometry((int(big_h), int(big_w)), (int(h), int(w)), pool,
                      (gh, gw), (big_h // gh, big_w // gw))


def avg_pool(activations: jax.Array, pool: int) -> jax.Array:
  """`pool` x `pool` average pooling, stride `pool`, floor (VALID)."""
  if pool == 1:
    return activations
  n, h, w, c = activations.shape
  gh, gw = h // pool, w // pool
  x = activations[:, :gh * pool, :gw * pool]
  return x.reshape(n, gh, pool, gw, pool, c).mean(axis=(2, 4))


class CropHits(NamedTuple):
  """The top-m pooled pixels per concept.

  Attributes:
    image: (B, m) int, image index in the searched set (-1: none found).
    row: (B, m) int, pooled row.
    col: (B, m) int, pooled column.
    score: (B, m) float, cosine similarity (-inf: none found). Sorted
      descending along m.
  """
  image: np.ndarray
  row: np.ndarray
  col: np.ndarray
  score: np.ndarray


def _normalise(v, axis=-1):
  norm = jnp.linalg.norm(v, axis=axis, keepdims=True)
  return v / jnp.maximum(norm, 1e-12)


def search_crops(encode: Callable[[jax.Array], jax.Array], images: np.ndarray,
                 bases: np.ndarray, n_crops: int, geometry: CropGeometry, *,
                 modes: Sequence[str] = ("all",),
                 basis_class: np.ndarray | None = None,
                 predictions: np.ndarray | None = None,
                 batch_size: int = 256) -> dict[str, CropHits]:
  """Top-`n_crops` data set crops per concept by cosine similarity.

  Streams over `images` in batches: encode, pool (`geometry.pool`), cosine
  similarity of every pooled pixel vector with every basis vector, merged into
  a running top-m (no copy of the data set's activations is kept). Ties keep
  the earlier pixel; several crops may come from the same image (as the
  authors' code).

  Args:
    encode: images (b, H, W, C) -> activations (b, h, w, c), jittable.
    images: (N, H, W, C) the data set searched.
    bases: (B, c) concept vectors (e.g. all classes' concepts stacked).
    n_crops: m.
    geometry: from :func:`crop_geometry`.
    modes: any of "all" (every image), "exclude" (only images whose prediction
      differs from the basis' class), "only" (only images predicted as it).
    basis_class: (B,) int class of each basis, needed for exclude / only.
    predictions: (N,) int model predictions, needed for exclude / only.
    batch_size: images per step.

  Returns:
    {mode: CropHits}.
  """
  for mode in modes:
    check_choice("crop mode", mode, CROP_MODES)
  n_crops = _check_positive_int("n_crops", n_crops)
  images = np.asarray(images)
  chex.assert_rank(images, 4)
  bases = np.asarray(bases, np.float32)
  chex.assert_rank(bases, 2)
  n = images.shape[0]
  nb = bases.shape[0]
  needs_class = any(m != "all" for m in modes)
  if needs_class:
    if basis_class is None or predictions is None:
      raise ValueError("modes 'exclude' / 'only' need basis_class and predictions")
    basis_class = np.asarray(basis_class, np.int32)
    predictions = np.asarray(predictions, np.int32)
    chex.assert_shape(basis_class, (nb,))
    chex.assert_shape(predictions, (n,))
  else:
    basis_class = np.zeros((nb,), np.int32)
    predictions = np.zeros((n,), np.int32)
  gh, gw = geometry.grid_hw
  cells = gh * gw
  if n * cells >= 2**31:
    raise ValueError(f"{n} images x {cells} cells overflows int32 pixel ids")
  bs = min(_check_positive_int("batch_size", batch_size), n)
  m = min(n_crops, n * cells)
  bn = _normalise(jnp.asarray(bases))
  cls = jnp.asarray(basis_class)
  pool = geometry.pool

  @jax.jit
  def step(state, x, valid, pred, offset):
    h = encode(x)
    if h.shape[1:3] != geometry.layer_hw:
      raise ValueError(f"encode gave spatial shape {h.shape[1:3]}, geometry expects "
                       f"{geometry.layer_hw}")
    p = avg_pool(h, pool)[:, :gh, :gw]
    v = _normalise(p.reshape(-1, p.shape[-1]))
    sims = bn @ v.T  # (B, bs * cells)
    img = jnp.arange(bs * cells) // cells
    ids = offset * cells + jnp.arange(bs * cells, dtype=jnp.int32)
    ok = valid[img][None, :]
    same = pred[img][None, :] == cls[:, None]
    new_state = {}
    for mode in modes:
      allowed = ok if mode == "all" else (ok & ~same if mode == "exclude" else ok & same)
      s = jnp.where(allowed, sims, -jnp.inf)
      old_s, old_i = state[mode]
      all_s = jnp.concatenate([old_s, s], axis=1)
      all_i = jnp.concatenate([old_i, jnp.broadcast_to(ids, s.shape)], axis=1)
      top_s, pos = jax.lax.top_k(all_s, m)
      new_state[mode] = (top_s, jnp.take_along_axis(all_i, pos, axis=1))
    return new_state

  state = {mode: (jnp.full((nb, m), -jnp.inf, jnp.float32),
                  jnp.full((nb, m), -1, jnp.int32)) for mode in modes}
  for start in range(0, n, bs):
    x = images[start:start + bs]
    k = x.shape[0]
    valid = np.arange(bs) < k
    pred = predictions[start:start + bs]
    if k < bs:
      x = np.concatenate([x, np.zeros((bs - k,) + images.shape[1:], images.dtype)])
      pred = np.concatenate([pred, np.zeros((bs - k,), np.int32)])
    state = step(state, x, valid, pred, np.int32(start))
  out = {}
  for mode in modes:
    s, ids = (np.asarray(a) for a in state[mode])
    found = np.isfinite(s) & (ids >= 0)
    ids = np.where(found, ids, -1)
    image = np.where(found, ids // cells, -1)
    rem = np.where(found, ids % cells, 0)
    row, col = rem // gw, rem % gw
    if m < n_crops:  # fewer pixels than asked for: pad as "none found"
      pad = ((0, 0), (0, n_crops - m))
      image = np.pad(image, pad, constant_values=-1)
      row, col = np.pad(row, pad), np.pad(col, pad)
      s = np.pad(s, pad, constant_values=-np.inf)
    out[mode] = CropHits(image, np.where(image >= 0, row, 0),
                         np.where(image >= 0, col, 0), np.where(image >= 0, s, -np.inf))
  return out


def extract_crops(images: np.ndarray, hits: CropHits, geometry: CropGeometry,
                  fill: float = 0.0) -> np.ndarray:
  """The input crops under the hits.

  Args:
    images: (N, H, W, C) the searched set.
    hits: from :func:`search_crops`.
    geometry: the same geometry.
    fill: value of crops for "none found" entries.

  Returns:
    (B, m, crop_h, crop_w, C) float32.
  """
  images = np.asarray(images)
  ch, cw = geometry.crop_hw
  b, m = hits.image.shape
  out = np.full((b, m, ch, cw, images.shape[-1]), fill, np.float32)
  for i in range(b):
    for j in range(m):
      idx = int(hits.image[i, j])
      if idx < 0:
        continue
      r, c = int(hits.row[i, j]) * ch, int(hits.col[i, j]) * cw
      out[i, j] = images[idx, r:r + ch, c:c + cw]
  return out


# ---------------------------------------------------------------------------
# Stitching.


def grid_shape(k: int) -> tuple[int, int]:
  """(rows, cols) of the near-square grid for k crops: cols = ceil(sqrt(k))."""
  cols = math.ceil(math.sqrt(k))
  return math.ceil(k / cols), cols


def stitch(crops: np.ndarray, layout: str, *, canvas_hw: Sequence[int] | None = None,
           fill: float = 0.0) -> np.ndarray:
  """Stitches k crops (k, ch, cw, C) into one image (see module docstring).

  Args:
    crops: (k, ch, cw, C).
    layout: "vertical", "grid" or "canvas".
    canvas_hw: (H, W) for "canvas".
    fill: value of empty cells.

  Returns:
    (H', W', C) float32.

  Raises:
    ValueError: unknown layout, or "canvas" without room for k crops.
  """
  check_choice("stitch layout", layout, STITCH_LAYOUTS[1:])
  crops = np.asarray(crops, np.float32)
  chex.assert_rank(crops, 4)
  k, ch, cw, c = crops.shape
  if layout == "vertical":
    return crops.reshape(k * ch, cw, c)
  rows, cols = grid_shape(k)
  y0 = x0 = 0
  h_out, w_out = rows * ch, cols * cw
  if layout == "canvas":
    if canvas_hw is None:
      raise ValueError("layout 'canvas' needs canvas_hw=(H, W)")
    h_out, w_out = int(canvas_hw[0]), int(canvas_hw[1])
    if rows * ch <= h_out and cols * cw <= w_out:  # the block, centred
      y0, x0 = (h_out - rows * ch) // 2, (w_out - cols * cw) // 2
    else:  # row-major cells over the whole canvas
      rows, cols = h_out // ch, w_out // cw
      if rows * cols < k:
        raise ValueError(f"a {tuple(canvas_hw)} canvas holds {rows * cols} crops of "
                         f"{ch}x{cw}, fewer than k={k}; use layout 'grid'")
  out = np.full((h_out, w_out, c), fill, np.float32)
  for i in range(k):
    r, q = divmod(i, cols)
    y, x = y0 + r * ch, x0 + q * cw
    out[y:y + ch, x:x + cw] = crops[i]
  return out


def fit_to_size(image: np.ndarray, hw: Sequence[int]) -> np.ndarray:
  """Bilinear resize of (H', W', C) to (H, W, C) (identity if equal)."""
  image = np.asarray(image, np.float32)
  if tuple(image.shape[:2]) == tuple(hw):
    return image
  return np.asarray(jax.image.resize(image, (hw[0], hw[1], image.shape[2]),
                                     "bilinear"))


def accepts_shape(apply_fn: Callable[[jax.Array], jax.Array],
                  image_shape: Sequence[int]) -> bool:
  """Whether `apply_fn` can take a batch of images of `image_shape` (no FLOPs)."""
  try:
    jax.eval_shape(apply_fn, jax.ShapeDtypeStruct((1, *image_shape), jnp.float32))
  except Exception:  # pylint: disable=broad-except
    return False
  return True


def choose_layout(layout: str, geometry: CropGeometry, k: int, channels: int,
                  apply_fn: Callable[[jax.Array], jax.Array]) -> str:
  """Resolves "auto" (see module docstring); other layouts are returned as is."""
  check_choice("stitch layout", layout, STITCH_LAYOUTS)
  if layout != "auto":
    return layout
  ch, cw = geometry.crop_hw
  big_h, big_w = geometry.image_hw
  any_size = accepts_shape(apply_fn, (2 * big_h, 2 * big_w, channels))
  if any_size and accepts_shape(apply_fn, (k * ch, cw, channels)):
    return "vertical"
  if (big_h // ch) * (big_w // cw) >= k:
    return "canvas"
  return "grid"


def stitched_images(crops: np.ndarray, layout: str, geometry: CropGeometry,
                    apply_fn: Callable[[jax.Array], jax.Array] | None = None,
                    fill: float = 0.0) -> tuple[np.ndarray, bool]:
  """Stitches each row of (B, k, ch, cw, C) crops; resizes if the model needs it.

  Returns:
    (images (B, H', W', C), resized): resized is True when the stitched size
    was not accepted by `apply_fn` and the images were resized to the input
    size.
  """
  crops = np.asarray(crops, np.float32)
  chex.assert_rank(crops, 5)
  out = np.stack([stitch(c, layout, canvas_hw=geometry.image_hw, fill=fill)
                  for c in crops])
  resized = False
  if apply_fn is not None and not accepts_shape(apply_fn, out.shape[1:]):
    out = np.stack([fit_to_size(x, geometry.image_hw) for x in out])
    resized = True
  return out, resized


# ---------------------------------------------------------------------------
# Table 1 / 2 metrics.


def stitch_summary(target_probs: Sequence[float], hits: Sequence[bool],
                   thresholds: Sequence[float] = THRESHOLDS) -> dict[str, Any]:
  """Tables 1/2 of the paper over classes.

  Args:
    target_probs: per class, the softmax probability of the class for its
      stitched image.
    hits: per class, whether the class is the stitched image's argmax.
    thresholds: report % of classes with probability above each.

  Returns:
    {"n_classes", "mean_prob", "std_prob", "pct_predicted",
     "pct_above_0.1", ...}; NaN statistics for zero classes.
  """
  p = np.asarray(target_probs, np.float64)
  hit = np.asarray(hits, bool)
  n = int(p.size)
  nan = float("nan")
  out = {"n_classes": n,
         "mean_prob": float(p.mean()) if n else nan,
         "std_prob": float(p.std()) if n else nan,
         "pct_predicted": 100.0 * float(hit.mean()) if n else nan}
  for t in thresholds:
    out[f"pct_above_{t:g}"] = 100.0 * float((p > t).mean()) if n else nan
  return out


# ---------------------------------------------------------------------------
# One class end to end (convenience for users; the pipeline batches classes).


class ClassConcepts(NamedTuple):
  """Result of :func:`explain_class`.

  Attributes:
    concepts: the NMF concepts.
    activations: (N, h, w, c) activations of the images.
    attributions: (N, h, w, c) their attributions for the class.
    scores: (N, h, w) pixel scores.
  """
  concepts: ConceptSet
  activations: np.ndarray
  attributions: np.ndarray
  scores: np.ndarray


def explain_class(model, variables, images: np.ndarray, target: int, layer, *,
                  n_concepts: int = 6, score_order: str = "mean_then_relu",
                  n_samples: int = 20, noise_std: float = 0.25, baseline: float = 1.0,
                  key: Any = None, batch_size: int = 64,
                  attribution_fn: AttributionFn | None = None,
                  nmf_kwargs: dict | None = None) -> ClassConcepts:
  """Concepts of class `target` from `images` (the images predicted as it).

  Args:
    model, variables: a classifier following the split protocol.
    images: (N, H, W, C) images (the caller selects those predicted as target,
      e.g. with :func:`class_image_indices`).
    target: the class.
    layer: a spatial tap name or alias.
    n_concepts: k.
    score_order: see :func:`pixel_scores`.
    n_samples, noise_std, baseline, key, batch_size: DeepLift + SmoothGrad.
    attribution_fn: `layer_deeplift_smoothgrad`-compatible function.
    nmf_kwargs: extra arguments of :func:`extract_concepts`.

  Raises:
    ValueError: no images, or fewer positive pixel vectors than n_concepts.
  """
  from jaxconcepts.models import split as split_lib  # pylint: disable=g-import-not-at-top
  images = np.asarray(images, np.float32)
  chex.assert_rank(images, 4)
  if images.shape[0] == 0:
    raise ValueError(f"class {target}: no images (the model predicts it for none)")
  check_choice("score_order", score_order, SCORE_ORDERS)
  attribution_fn = attribution_fn or default_attribution_fn()
  key = jax.random.PRNGKey(0) if key is None else key
  s = split_lib.split(model, layer)
  name = s.layer
  acts = s.encode(variables, jnp.asarray(images))
  attr = attribution_fn(model, variables, jnp.asarray(images),
                        np.full((images.shape[0],), int(target), np.int32), name,
                        n_samples=n_samples, std=noise_std, baseline=baseline,
                        key=key, batch_size=batch_size)
  attr = jnp.asarray(attr)
  chex.assert_equal_shape([acts, attr])
  mat = concept_matrix(acts, attr, score_order)
  concepts = extract_concepts(mat, n_concepts, what=f"class {target}",
                              **(nmf_kwargs or {}))
  return ClassConcepts(concepts, np.asarray(acts), np.asarray(attr),
                       np.asarray(pixel_scores(attr, score_order)))
