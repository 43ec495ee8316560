"""Concept crops and the stitched-image test (Herdt Sec. 4).

A concept is a vector in a layer's channel space (`methods/concepts.py`). It is shown by the
input crops under the data set's activation pixels most similar to it, and tested by
stitching the top crops of a class's concepts into one image and asking the model for the
class.

Crop geometry (:func:`crop_geometry`), following the authors' code: the activations of every
image are 2x2 average-pooled; for a tap of spatial size (h, w) from inputs (H, W), the
pooled grid is (h // 2, w // 2) (floor; a trailing odd row / column is dropped), the crop
side is ``H // (h // 2)`` by ``W // (w // 2)`` and pooled pixel (i, j) is the crop at rows
``[i * side, (i + 1) * side)``. For even h this is exactly the input region the pooled
pixel's 2 x 2 tap pixels tile (side = 2 x the layer's stride); for odd h it is the reference
code's approximation (e.g. ResNet layer4 at 224: 7x7 tap, 3x3 grid, 74x74 crops, as the
paper says). Fallback: if the pooled grid would have fewer than 2 cells along a side (e.g. a
2x2 tap), pooling is skipped (``pool = 1``: grid (h, w), side ``H // h``); a layer whose
grid is still a single cell (1x1 taps) or that has no spatial axes at all (logits, pooled
vectors) has no crops: ValueError.

Search (:func:`search_crops`): the m pooled pixels with the highest cosine similarity to
each concept, over the whole data set, streamed in batches (with ``mesh=``, each batch's
images split over the devices, each device's top-m merged in image order: the same hits);
:func:`extract_crops` cuts the crops out.

The stitched-image test (:func:`stitch`): the top-1 crop of each of the k concepts stitched
into one image and fed to the model; the model should predict the class. Crops come from all
images (Table 1) or only from images the model does not predict as the class (Table 2).
Layouts:

* ``"vertical"`` -- the crops concatenated along the height (k * side x side), as the
  authors' code; for models that take any input size (our ResNets, global average pooling).
* ``"canvas"`` -- the crops at native scale on a canvas of the model's input size filled
  with ``fill`` (a background value; 0 = black for MNIST-like data): the near-square grid
  below, centred, if it fits, else row-major cells of the whole canvas; needs
  ``(H // side) * (W // side) >= k``. E.g. the VGG at 32x32, conv2a (8x8 tap): six 8x8 crops as a 2 x 3
  block (16 x 24) in the middle of a black 32x32 image, where the objects of centred data
  sets are.
* ``"grid"`` -- a near-square grid (``ceil(sqrt(k))`` columns), empty cells ``fill``.
* ``"place"`` -- each crop pasted back where it was cut from, on a ``fill`` canvas of the
  input size: for centred data sets (Fashion-MNIST) it keeps each part where the classifier
  expects it, where a grid moves parts anywhere.
* ``"auto"`` (program default) -- ``"vertical"`` if the model takes inputs of any size (it
  accepts twice its input size and the strip's shape), else ``"canvas"`` if the crops fit,
  else ``"grid"``. (Our VGG accepts some other sizes -- any side in (16, 32] ends in a 1x1
  code -- but its dense layer was trained on 32x32 inputs, so it gets the canvas.)

Whenever the stitched image's size is not one the model accepts (fixed-size models such as
our VGG: its dense layer sees the flattened last conv), it is resized bilinearly to the
model's input size (:func:`fit_to_size`); e.g. the VGG at conv2 (4x4 tap, 16x16 crops, 6
crops do not fit 32x32): a 2 x 3 grid of 16x16 crops (32 x 48) resized to 32x32. The
stitched-test table records which layout ran and whether a resize happened.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Hashable, Mapping, NamedTuple, Sequence

import chex
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxconcepts.models import split as split_lib
from jaxconcepts.ops import sharding as sharding_ops
from jaxconcepts.train import distributed
from jaxconcepts.utils import check_choice, check_int

STITCH_LAYOUTS = ("auto", "vertical", "canvas", "grid", "place")
CROP_MODES = ("all", "exclude", "only")
THRESHOLDS = (0.1, 0.2, 0.5)


# ---------------------------------------------------------------------------
# Geometry.


@dataclasses.dataclass(frozen=True)
class CropGeometry:
  """Where a pooled activation pixel sits in the input (see module docstring).

  Hashable: it is a static argument of the jitted search step.

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
    """Pooled pixels per image: grid_h * grid_w."""
    return self.grid_hw[0] * self.grid_hw[1]


def crop_geometry(image_shape: Sequence[int], layer_shape: Sequence[int],
                  pool: int = 2, layer: str | None = None) -> CropGeometry:
  """Crop geometry for a tap (h, w, c) of images (H, W, C); see module docstring.

  Args:
    image_shape: (H, W, C) per-image input shape.
    layer_shape: (h, w, c) per-image shape of the tap.
    pool: the average-pooling window (2 in the paper; 1 = none).
    layer: the layer's name, for errors.

  Returns:
    The `CropGeometry`.

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
  pool = check_int(pool, "pool")
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
  """`pool` x `pool` average pooling, stride `pool`, floor (VALID).

  Args:
    activations: (N, h, w, c).
    pool: window and stride.

  Returns:
    (N, h // pool, w // pool, c), same dtype.
  """
  if pool == 1:
    return activations
  n, h, w, c = activations.shape
  gh, gw = h // pool, w // pool
  x = activations[:, :gh * pool, :gw * pool]
  return x.reshape(n, gh, pool, gw, pool, c).mean(axis=(2, 4))


# ---------------------------------------------------------------------------
# The crop search.


class CropHits(NamedTuple):
  """The top-m pooled pixels per concept.

  Attributes:
    image: (B, m) int, image index in the searched set (-1: none found).
    row: (B, m) int, pooled row.
    col: (B, m) int, pooled column.
    score: (B, m) float, cosine similarity (-inf: none found). Sorted descending along m.
  """
  image: np.ndarray
  row: np.ndarray
  col: np.ndarray
  score: np.ndarray

  def select(self, rows: slice) -> CropHits:
    """The hits of the concepts in `rows` (a slice over B)."""
    return CropHits(*(x[rows] for x in self))


class _SearchSpec(NamedTuple):
  """The static part of one search: geometry, modes, m and the batch size."""
  geometry: CropGeometry
  modes: tuple[str, ...]
  m: int
  batch: int


def _normalise(v: jax.Array, axis: int = -1) -> jax.Array:
  norm = jnp.linalg.norm(v, axis=axis, keepdims=True)
  return v / jnp.maximum(norm, 1e-12)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _search_step(split: split_lib.Split, spec: _SearchSpec, variables: Any, state: dict,
                 unit_bases: jax.Array, basis_class: jax.Array, x: jax.Array,
                 valid: jax.Array, pred: jax.Array, offset: jax.Array) -> dict:
  """Merges one batch of images into the running top-m of every mode.

  The weights (`variables`) and the bases are traced arguments: a new checkpoint or new
  concepts of the same shapes reuse the compilation.
  """
  gh, gw = spec.geometry.grid_hw
  cells, bs = gh * gw, spec.batch
  h = split.encode(variables, x)
  if h.shape[1:3] != spec.geometry.layer_hw:
    raise ValueError(f"encode gave spatial shape {h.shape[1:3]}, geometry expects "
                     f"{spec.geometry.layer_hw}")
  p = avg_pool(h, spec.geometry.pool)[:, :gh, :gw]
  v = _normalise(p.reshape(-1, p.shape[-1]))
  sims = unit_bases @ v.T  # (B, bs * cells)
  img = jnp.arange(bs * cells) // cells
  ids = offset * cells + jnp.arange(bs * cells, dtype=jnp.int32)
  ok = valid[img][None, :]
  same = pred[img][None, :] == basis_class[:, None]
  cand = {}
  for mode in spec.modes:
    allowed = ok if mode == "all" else (ok & ~same if mode == "exclude" else ok & same)
    s = jnp.where(allowed, sims, -jnp.inf)
    cand[mode] = (s, jnp.broadcast_to(ids, s.shape))
  return sharding_ops.merge_top_k(state, cand, spec.m)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _search_step_sharded(split: split_lib.Split, spec: _SearchSpec, mesh: Any, variables: Any,
                         state: dict, unit_bases, basis_class, x, valid, pred, offset) -> dict:
  """`_search_step` with the batch's images split over `mesh` (`blockwise_top_k`)."""
  local = spec._replace(batch=spec.batch // mesh.size)
  step = lambda w, r, i, fresh: _search_step(split, local, w[0], fresh, *w[1:3], *r, w[3] + i)
  return sharding_ops.blockwise_top_k(step, mesh, (variables, unit_bases, basis_class, offset),
                                      (x, valid, pred), state)


def _hits_from_state(scores: jax.Array, ids: jax.Array, grid_hw: tuple[int, int],
                     n_crops: int) -> CropHits:
  """Pixel ids of a finished search -> (image, row, col), padded to n_crops."""
  s, ids = np.asarray(scores), np.asarray(ids)
  gw = grid_hw[1]
  cells = grid_hw[0] * gw
  found = np.isfinite(s) & (ids >= 0)
  ids = np.where(found, ids, -1)
  image = np.where(found, ids // cells, -1)
  rem = np.where(found, ids % cells, 0)
  row, col = rem // gw, rem % gw
  if s.shape[1] < n_crops:  # fewer pixels than asked for: pad as "none found"
    pad = ((0, 0), (0, n_crops - s.shape[1]))
    image = np.pad(image, pad, constant_values=-1)
    row, col = np.pad(row, pad), np.pad(col, pad)
    s = np.pad(s, pad, constant_values=-np.inf)
  return CropHits(image, np.where(image >= 0, row, 0), np.where(image >= 0, col, 0),
                  np.where(image >= 0, s, -np.inf))


def _search_classes(modes: Sequence[str], n: int, nb: int, basis_class: Any,
                    predictions: Any) -> tuple[np.ndarray, np.ndarray]:
  """Checked (basis_class (B,), predictions (N,)); zeros when only "all" runs."""
  if all(m == "all" for m in modes):
    return np.zeros((nb,), np.int32), np.zeros((n,), np.int32)
  if basis_class is None or predictions is None:
    raise ValueError("modes 'exclude' / 'only' need basis_class and predictions")
  basis_class, predictions = np.asarray(basis_class, np.int32), np.asarray(predictions, np.int32)
  chex.assert_shape([basis_class, predictions], [(nb,), (n,)])
  return basis_class, predictions


def search_crops(split: split_lib.Split, variables: Any, images: np.ndarray,
                 bases: np.ndarray, n_crops: int, geometry: CropGeometry, *,
                 modes: Sequence[str] = ("all",),
                 basis_class: np.ndarray | None = None,
                 predictions: np.ndarray | None = None,
                 batch_size: int = 256, mesh: Any = None) -> dict[str, CropHits]:
  """Top-`n_crops` data set crops per concept by cosine similarity.

  Streams over `images` in batches: encode, pool (`geometry.pool`), cosine similarity of every
  pooled pixel vector with every basis vector, merged into a running top-m (no copy of the data
  set's activations is kept). Ties keep the earlier pixel; several crops may come from the same
  image (as the authors' code).

  Args:
    split: the model cut at the layer (`models.split.Split`, or any hashable object whose
      ``encode(variables, x)`` maps images (b, H, W, C) to activations (b, h, w, c)); a static
      jit argument.
    variables: the model's variables (traced: a new checkpoint of the same architecture does
      not recompile).
    images: (N, H, W, C) float32, the data set searched.
    bases: (B, c) concept vectors (e.g. all classes' concepts stacked).
    n_crops: m >= 1.
    geometry: from :func:`crop_geometry`.
    modes: any of "all" (every image), "exclude" (only images whose prediction
      differs from the basis' class), "only" (only images predicted as it).
    basis_class: (B,) int class of each basis, needed for exclude / only.
    predictions: (N,) int model predictions, needed for exclude / only.
    batch_size: images per step (with `mesh`, rounded up to a multiple of its devices).
    mesh: a `jax.sharding.Mesh` to split each batch's images over (the same hits).

  Returns:
    {mode: CropHits} with (B, n_crops) fields.
  """
  modes = tuple(check_choice("crop mode", m, CROP_MODES) for m in modes)
  n_crops = check_int(n_crops, "n_crops")
  images = np.asarray(images)
  bases = np.asarray(bases, np.float32)
  chex.assert_rank([images, bases], [4, 2])
  n, nb = images.shape[0], bases.shape[0]
  basis_class, predictions = _search_classes(modes, n, nb, basis_class, predictions)
  if n * geometry.cells >= 2**31:
    raise ValueError(f"{n} images x {geometry.cells} cells overflows int32 pixel ids")
  bs = min(check_int(batch_size, "batch_size"), n)
  bs = bs if mesh is None else sharding_ops.padded_size(bs, mesh)
  spec = _SearchSpec(geometry, modes, min(n_crops, n * geometry.cells), bs)
  step = (functools.partial(_search_step, split, spec) if mesh is None else
          functools.partial(_search_step_sharded, split, spec, mesh))
  window = distributed.StepWindow()  # host <= 2 steps ahead (XLA:CPU all-reduce deadlock)
  unit_bases = _normalise(jnp.asarray(bases))
  state = {mode: (jnp.full((nb, spec.m), -jnp.inf, jnp.float32),
                  jnp.full((nb, spec.m), -1, jnp.int32)) for mode in modes}
  for start in range(0, n, bs):
    x = images[start:start + bs]
    k = x.shape[0]
    pred = predictions[start:start + bs]
    if k < bs:
      x = np.concatenate([x, np.zeros((bs - k,) + images.shape[1:], images.dtype)])
      pred = np.concatenate([pred, np.zeros((bs - k,), np.int32)])
    state = step(variables, state, unit_bases, basis_class, x, np.arange(bs) < k, pred,
                 np.int32(start))
    window.push(state)
  return {mode: _hits_from_state(*state[mode], geometry.grid_hw, n_crops)
          for mode in modes}


class ConceptCrops(NamedTuple):
  """The top crops of one concept set (a class or a pair), per crop mode.

  Attributes:
    hits: {mode: CropHits with (k, m) fields}.
    crops: {mode: (k, m, ch, cw, C) float32 crops}.
  """
  hits: dict[str, CropHits]
  crops: dict[str, np.ndarray]


def search_concept_crops(split: split_lib.Split, variables: Any, images: np.ndarray,
                         sets: Mapping[Hashable, tuple[np.ndarray, int]], n_crops: int,
                         geometry: CropGeometry, *, predictions: np.ndarray,
                         fill: float = 0.0, batch_size: int = 256, mesh: Any = None
                         ) -> dict[Hashable, ConceptCrops]:
  """Crops of several concept sets in every mode, from one :func:`search_crops`.

  Args:
    split, variables, images, n_crops, geometry, batch_size, mesh: as :func:`search_crops`.
    sets: {id: (basis (k, c), class)}, k the same for all; the class is the
      one the exclude / only modes refer to.
    predictions: (N,) int model predictions.
    fill: value of crops for "none found" entries.

  Returns:
    {id: ConceptCrops} for the modes all, exclude and only.
  """
  ids = list(sets)
  bases = np.concatenate([np.asarray(sets[i][0], np.float32) for i in ids])
  k = bases.shape[0] // len(ids)
  basis_class = np.repeat(np.asarray([sets[i][1] for i in ids], np.int32), k)
  hits = search_crops(split, variables, images, bases, n_crops, geometry, modes=CROP_MODES,
                      basis_class=basis_class, predictions=predictions,
                      batch_size=batch_size, mesh=mesh)
  crops = {m: extract_crops(images, h, geometry, fill) for m, h in hits.items()}
  rows = {i: slice(j * k, (j + 1) * k) for j, i in enumerate(ids)}
  return {i: ConceptCrops({m: h.select(sl) for m, h in hits.items()},
                          {m: c[sl] for m, c in crops.items()}) for i, sl in rows.items()}


def extract_crops(images: np.ndarray, hits: CropHits, geometry: CropGeometry,
                  fill: float = 0.0) -> np.ndarray:
  """The input crops under the hits.

  Args:
    images: (N, H, W, C) the searched set.
    hits: from :func:`search_crops`, (B, m) fields.
    geometry: the same geometry.
    fill: value of crops for "none found" entries.

  Returns:
    (B, m, crop_h, crop_w, C) float32.
  """
  images = np.asarray(images)
  ch, cw = geometry.crop_hw
  out = np.full((*hits.image.shape, ch, cw, images.shape[-1]), fill, np.float32)
  for i, j, idx, window in hit_windows(hits, geometry):
    out[i, j] = images[idx][window]
  return out


def hit_windows(hits: CropHits, geometry: CropGeometry):
  """Yields (i, j, image index, (row slice, col slice)) for every found hit (image >= 0).

  The slices cut hit (i, j)'s crop out of its image (H, W, ...).
  """
  ch, cw = geometry.crop_hw
  b, m = hits.image.shape
  for i in range(b):
    for j in range(m):
      idx = int(hits.image[i, j])
      if idx >= 0:
        r, c = int(hits.row[i, j]) * ch, int(hits.col[i, j]) * cw
        yield i, j, idx, (slice(r, r + ch), slice(c, c + cw))


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
  check_choice("stitch layout", layout, ("vertical", "canvas", "grid"))
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


def place(crops: np.ndarray, rows: np.ndarray, cols: np.ndarray, canvas_hw: Sequence[int], *,
          fill: float = 0.0) -> np.ndarray:
  """Pastes k crops (k, ch, cw, C) back at their pooled positions on one canvas.

  Args:
    crops: (k, ch, cw, C).
    rows, cols: (k,) int pooled positions (windows start at row * ch, col * cw);
      a negative row marks a missing crop, left as `fill`.
    canvas_hw: (H, W), the model's input size.
    fill: value of the uncovered canvas.

  Returns:
    (H, W, C) float32; where crops overlap, the lower-numbered one is on top.
  """
  crops = np.asarray(crops, np.float32)
  chex.assert_rank(crops, 4)
  k, ch, cw, c = crops.shape
  rows, cols = np.asarray(rows, int).reshape(-1), np.asarray(cols, int).reshape(-1)
  chex.assert_shape((rows, cols), (k,))
  h, w = int(canvas_hw[0]), int(canvas_hw[1])
  out = np.full((h, w, c), fill, np.float32)
  for i in reversed(range(k)):  # concept 0 pasted last, so it is on top
    if rows[i] < 0:
      continue
    y, x = rows[i] * ch, cols[i] * cw
    if y + ch > h or x + cw > w or x < 0:
      raise ValueError(f"crop {i} at pooled ({rows[i]}, {cols[i]}) of size {ch}x{cw} lies "
                       f"outside the {h}x{w} canvas")
    out[y:y + ch, x:x + cw] = crops[i]
  return out


def fit_to_size(image: np.ndarray, hw: Sequence[int]) -> np.ndarray:
  """Bilinear resize of (H', W', C) to (H, W, C) float32 (identity if equal)."""
  image = np.asarray(image, np.float32)
  if tuple(image.shape[:2]) == tuple(hw):
    return image
  return np.asarray(jax.image.resize(image, (hw[0], hw[1], image.shape[2]),
                                     "bilinear"))


def accepts_shape(model: nn.Module, variables: Any, image_shape: Sequence[int]) -> bool:
  """Whether the model takes a batch of images of `image_shape` (no FLOPs).

  Args:
    model: a Flax classifier.
    variables: its variables.
    image_shape: (H, W, C).

  Returns:
    False when applying it to that shape raises a shape error (a type, value
    or Flax error, e.g. a dense kernel of the wrong size).
  """
  try:
    jax.eval_shape(model.apply, variables,
                   jax.ShapeDtypeStruct((1, *image_shape), jnp.float32))
  except (TypeError, ValueError, flax.errors.FlaxError):
    return False
  return True


def choose_layout(layout: str, geometry: CropGeometry, k: int, channels: int,
                  model: nn.Module, variables: Any) -> str:
  """Resolves "auto" (see module docstring); other layouts are returned as is.

  Args:
    layout: one of :data:`STITCH_LAYOUTS`.
    geometry: the crop geometry.
    k: crops per stitched image (the number of concepts).
    channels: C of the input images.
    model, variables: the classifier whose input sizes are probed.

  Returns:
    "vertical", "canvas", "grid" or "place" (never chosen by "auto").
  """
  check_choice("stitch layout", layout, STITCH_LAYOUTS)
  if layout != "auto":
    return layout
  ch, cw = geometry.crop_hw
  big_h, big_w = geometry.image_hw
  any_size = accepts_shape(model, variables, (2 * big_h, 2 * big_w, channels))
  if any_size and accepts_shape(model, variables, (k * ch, cw, channels)):
    return "vertical"
  if (big_h // ch) * (big_w // cw) >= k:
    return "canvas"
  return "grid"


def stitched_images(crops: np.ndarray, layout: str, geometry: CropGeometry, *,
                    model: nn.Module | None = None, variables: Any = None,
                    fill: float = 0.0, positions: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> tuple[np.ndarray, bool]:
  """Stitches each row of crops; resizes if the model needs its input size.

  Args:
    crops: (B, k, ch, cw, C) crops, k per stitched image.
    layout: "vertical", "grid", "canvas" or "place".
    geometry: the crop geometry (its image size is the canvas / resize size).
    model, variables: the classifier; None skips the size check.
    fill: value of empty cells.
    positions: for "place", the crops' pooled (rows, cols), each (B, k) int.

  Returns:
    (images (B, H', W', C) float32, resized): resized is True when the
    stitched size was not accepted by the model and the images were resized
    to the input size.
  """
  crops = np.asarray(crops, np.float32)
  chex.assert_rank(crops, 5)
  if layout == "place":
    if positions is None:
      raise ValueError("layout 'place' needs the crops' positions=(rows, cols)")
    out = np.stack([place(c, r, q, geometry.image_hw, fill=fill)
                    for c, r, q in zip(crops, *positions)])
  else:
    out = np.stack([stitch(c, layout, canvas_hw=geometry.image_hw, fill=fill)
                    for c in crops])
  resized = False
  if model is not None and not accepts_shape(model, variables, out.shape[1:]):
    out = np.stack([fit_to_size(x, geometry.image_hw) for x in out])
    resized = True
  return out, resized


# ---------------------------------------------------------------------------
# Table 1 / 2 metrics.


def stitch_summary(target_probs: Sequence[float], hits: Sequence[bool],
                   thresholds: Sequence[float] = THRESHOLDS) -> dict[str, Any]:
  """Tables 1/2 of the paper over classes.

  Args:
    target_probs: per class, the softmax probability of the class for its stitched image.
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
