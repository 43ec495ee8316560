"""Concepts of a single class (Herdt Sec. 4): arrays in, arrays out.

Why does a classifier predict class A? For a layer `Y` (a spatial tap, see
`models/split.py`):

1. Take the images the model *predicts* as A (up to 60; labels are ignored):
   :func:`class_image_indices` on the argmax of `split.predict_logits`.
2. Attribute the pre-softmax logit of A to the activations at `Y` with
   DeepLift + SmoothGrad (`attribution.layer_deeplift_smoothgrad`, injectable
   everywhere as `attribution_fn`).
3. Per-pixel score = channel mean of the attribution with negative pixels set
   to zero (the paper's order, ``"mean_then_relu"``; the authors' code applies
   the ReLU per element before the mean, ``"relu_then_mean"``):
   :func:`pixel_scores`. Activations are multiplied by the score:
   :func:`concept_matrix` gives the (N * h * w, c) matrix of scaled pixel
   vectors.
4. NMF into k concepts (default 6; multiplicative updates, `ops/nmf.py`): the
   concepts are the k rows of ``h`` (k, c), vectors in the layer's channel
   space. :func:`extract_concepts` (one class), :func:`extract_concepts_batched`
   (many classes in one ``vmap``-ed NMF).

The concepts are shown as data set crops and tested by stitching their crops
(`methods/crops.py`). :func:`explain_class` runs steps 2-4 for one class.

Models are applied in fixed-size batches by `models/split.py`'s jitted
functions, which take the model (or its `Split`) as a static argument and the
variables as a traced one, so a new checkpoint of the same architecture reuses
the compilations.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Hashable, Mapping, NamedTuple, Sequence

from absl import logging
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxconcepts.methods import crops as crops_lib
from jaxconcepts.methods.crops import CropGeometry
from jaxconcepts.methods.crops import CropHits
from jaxconcepts.models import split as split_lib
from jaxconcepts.ops import nmf as nmf_lib
from jaxconcepts.utils import as_key
from jaxconcepts.utils import check_choice
from jaxconcepts.utils import check_int

SCORE_ORDERS = ("mean_then_relu", "relu_then_mean")

AttributionFn = Callable[..., Any]


def default_attribution_fn(mesh: Any = None) -> AttributionFn:
  """`attribution.layer_deeplift_smoothgrad`, imported on first use (images split over `mesh`).

  Imported lazily so that this module (and the programs that import it) load
  without the attribution module's dependencies when a caller injects its own
  `attribution_fn`.
  """
  from jaxconcepts.methods import attribution  # pylint: disable=g-import-not-at-top
  if mesh is None:
    return attribution.layer_deeplift_smoothgrad
  return functools.partial(attribution.layer_deeplift_smoothgrad, mesh=mesh)


# ---------------------------------------------------------------------------
# Batched model application and class images.


def softmax(logits: jax.typing.ArrayLike) -> np.ndarray:
  """Softmax over the last axis, as a numpy array: (..., classes) -> (..., classes)."""
  return np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1))


def predict_probs(model: nn.Module, variables: Any, images: np.ndarray,
                  batch_size: int = 256) -> np.ndarray:
  """Softmax of `split.predict_logits`: (N, H, W, C) -> (N, classes) float32."""
  return softmax(split_lib.predict_logits(model, variables, images, batch_size))


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
  check_int(max_images, "max_images")
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
  k = check_int(n_components, "n_components")
  if k > channels:
    raise ValueError(f"n_components={k} exceeds the layer's {channels} channels")
  if n_vectors < k:
    raise ValueError(
        f"{what} has only {n_vectors} pixel vector(s) with a positive score, fewer "
        f"than n_components={k}: cannot extract {k} concepts (use fewer concepts, "
        "more images or another layer)")
  return k


def extract_concepts(matrix: jax.typing.ArrayLike, n_components: int = 6, *,
                     init: str = "nndsvda", max_iter: int = 200, tol: float = 1e-4,
                     key: Any = 0, what: str = "the class", solver: str = "mu") -> ConceptSet:
  """NMF of one class's scaled pixel vectors into `n_components` concepts.

  Args:
    matrix: (m, c) non-negative float (from :func:`concept_matrix`).
    n_components: k.
    init, max_iter, tol, key, solver: passed to `nmf.nmf` (key: a PRNG key or seed;
      solver "mu" is scikit-learn's, "amu" / "hals" / "ehals" reach its error sooner).
    what: how to name the matrix in errors.

  Returns:
    The k concepts (k, c) float32, the relative error, the number of non-zero
    rows and the iterations run.

  Raises:
    ValueError: k larger than the channels or than the number of non-zero
      pixel vectors (naming both).
  """
  matrix = jnp.asarray(matrix, jnp.float32)
  chex.assert_rank(matrix, 2)
  n_vec = count_vectors(matrix)
  k = _check_k(n_components, n_vec, matrix.shape[1], what)
  res = nmf_lib.nmf(matrix, k, init=init, max_iter=max_iter, tol=tol, key=key, solver=solver)
  return ConceptSet(np.asarray(res.h), float(res.rel_error), n_vec, int(res.n_iter))


def extract_concepts_batched(matrices: Sequence[jax.typing.ArrayLike], n_components: int = 6, *,
                             init: str = "nndsvda", max_iter: int = 200,
                             tol: float = 1e-4, key: Any = 0,
                             names: Sequence[str] | None = None,
                             solver: str = "mu", mesh: Any = None) -> list[ConceptSet]:
  """NMF of several classes at once (one `nmf.nmf_batched` call).

  The matrices have different numbers of rows; they are zero-padded to the
  largest and passed with `n_valid`. Result b equals `extract_concepts` on
  matrix b with key ``jax.random.split(key, B)[b]`` (up to float rounding).

  Args:
    matrices: B arrays (m_b, c), same c.
    n_components: k.
    init, max_iter, tol, key, solver: as `nmf.nmf_batched`.
    names: B names for errors (default "matrix b").
    mesh: a `jax.sharding.Mesh` to split the classes over (`nmf.nmf_batched`'s
      ``mesh``; the same results); None: one device.

  Returns:
    B `ConceptSet`s, in order.

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
                            max_iter=max_iter, tol=tol, key=key, solver=solver, mesh=mesh)
  h = np.asarray(res.h)
  return [ConceptSet(h[b], float(res.rel_error[b]), n_vecs[b], int(res.n_iter[b]))
          for b in range(len(mats))]


# Errors of NMF's input checks: the matrix cannot be factorised (NaN, negative
# values, fewer vectors than concepts), the others can.
NMF_ERRORS = (ValueError, TypeError)


def extract_concepts_each(matrices: Mapping[Hashable, Any], n_components: int = 6, *,
                          names: Mapping[Hashable, str], key: Any = 0,
                          fallback_key: Any = 0, init: str = "nndsvda", max_iter: int = 200,
                          tol: float = 1e-4, solver: str = "mu",
                          mesh: Any = None) -> dict[Hashable, ConceptSet | str]:
  """Concepts of each matrix: one batched NMF, one by one if the batch fails.

  The batch fails as a whole when one matrix cannot be factorised; then each
  matrix is factorised alone (key `fallback_key`) and the ones that fail get
  the error's text, so the caller can mark them as failed and go on.

  Args:
    matrices: {id: (m, c) non-negative matrix}, same c, in order.
    n_components: k.
    names: {id: name} for errors, e.g. "class 3".
    key: the batched NMF's key (:func:`extract_concepts_batched`).
    fallback_key: the key of each NMF alone (:func:`extract_concepts`).
    init, max_iter, tol, solver: as `nmf.nmf`.
    mesh: the batched NMF's classes split over it (:func:`extract_concepts_batched`).

  Returns:
    {id: ConceptSet, or "NMF error: <type>: <message>"}, in the order of
    `matrices`.
  """
  ids = list(matrices)
  kw = dict(init=init, max_iter=max_iter, tol=tol, solver=solver)
  try:
    return dict(zip(ids, extract_concepts_batched(
        [matrices[i] for i in ids], n_components, key=key, names=[names[i] for i in ids],
        mesh=mesh, **kw)))
  except NMF_ERRORS:
    logging.exception("batched NMF failed; factorising one by one")
  out = {}
  for i in ids:
    try:
      out[i] = extract_concepts(matrices[i], n_components, key=fallback_key, what=names[i],
                                **kw)
    except NMF_ERRORS as e:
      out[i] = f"NMF error: {type(e).__name__}: {e}"
  return out


# ---------------------------------------------------------------------------
# Many classes within a memory budget: the per-class NMF in chunks of classes.

DEFAULT_MEMORY_BUDGET = 2 * 2**30  # bytes per device, as `pairwise.train_pairwise`'s


def nmf_class_bytes(rows: int, channels: int, n_components: int) -> int:
  """Estimated device bytes of one class's NMF: ``4 (3 m c + 3 m k + 4 k c)``.

  float32 buffers of an (m, c) matrix of scaled pixel vectors (the matrix, its
  compacted copy without zero rows, one matrix-sized product), ``w`` (m, k)
  with the numerator and denominator of its update, and ``h`` (k, c) with its
  update's buffers; m = images x h x w of the class.
  """
  m, c, k = int(rows), int(channels), int(n_components)
  return 4 * (3 * m * c + 3 * m * k + 4 * k * c)


def classes_per_chunk(bytes_per_class: int, memory_budget_bytes: int | None = None,
                      num_devices: int = 1) -> int:
  """Classes per chunk of a per-class stage: ``num_devices * (budget // bytes_per_class)``.

  A chunk's classes are split over the devices, so each device holds
  ``budget // bytes_per_class`` classes' working sets (see
  :func:`nmf_class_bytes`) within `memory_budget_bytes` (default 2 GiB).

  Raises:
    ValueError: a non-positive budget, or one too small for even one class
      per device (naming both sizes), before any work.
  """
  budget = DEFAULT_MEMORY_BUDGET if memory_budget_bytes is None else int(memory_budget_bytes)
  if budget <= 0:
    raise ValueError(f"memory_budget_bytes must be positive, got {budget}")
  per_device = budget // max(int(bytes_per_class), 1)
  if per_device < 1:
    raise ValueError(f"memory_budget_bytes={budget} is too small for one chunk: one class "
                     f"needs about {int(bytes_per_class)} bytes per device")
  return per_device * int(num_devices)


def nmf_chunk_size(n_images: int, layer_shape: Sequence[int], n_components: int,
                   class_chunk: int, memory_budget_bytes: int | None = None,
                   num_devices: int = 1) -> int:
  """Classes per NMF call of a per-class stage: at most `class_chunk`, fewer to fit the budget.

  One class's matrix has m = n_images x h x w rows of c channels
  (``layer_shape`` = (h, w, c)); the chunk is ``min(class_chunk,
  classes_per_chunk(nmf_class_bytes(m, c, k), memory_budget_bytes, num_devices))``.

  Raises:
    ValueError: the budget does not hold one class (before any work).
  """
  rows = int(n_images) * int(np.prod(layer_shape[:-1]))
  need = nmf_class_bytes(rows, layer_shape[-1], n_components)
  return max(1, min(int(class_chunk), classes_per_chunk(need, memory_budget_bytes, num_devices)))


def extract_concepts_chunked(matrices: Mapping[Hashable, Any], n_components: int = 6, *,
                             names: Mapping[Hashable, str] | None = None, key: Any = 0,
                             fallback_key: Any = 0, memory_budget_bytes: int | None = None,
                             mesh: Any = None, **kwargs: Any
                             ) -> dict[Hashable, ConceptSet | str]:
  """:func:`extract_concepts_each` over chunks of classes that fit a memory budget.

  The chunk size is :func:`classes_per_chunk` of the largest matrix's
  :func:`nmf_class_bytes` (per device of `mesh`, whose devices split each
  chunk's classes). Matrix b always gets key ``jax.random.split(key, B)[b]``,
  so the results do not depend on the chunking (equal to one
  :func:`extract_concepts_each` call with `key`); only one chunk's matrices
  are on the devices at a time.

  Args:
    matrices: {id: (m, c) non-negative matrix}, same c, in order.
    n_components: k.
    names: {id: name} for errors (default "matrix <id>").
    key, fallback_key: as :func:`extract_concepts_each`.
    memory_budget_bytes: bytes per device for one chunk (default 2 GiB).
    mesh: a `jax.sharding.Mesh` splitting each chunk's classes (None: one device).
    **kwargs: init, max_iter, tol, solver.

  Returns:
    {id: ConceptSet or "NMF error: ..."}, in the order of `matrices`.

  Raises:
    ValueError: a budget too small for one class, before any NMF.
  """
  ids = list(matrices)
  if not ids:
    return {}
  names = names or {i: f"matrix {i}" for i in ids}
  shapes = [np.shape(matrices[i]) for i in ids]
  need = nmf_class_bytes(max(s[0] for s in shapes), shapes[0][-1], n_components)
  chunk = classes_per_chunk(need, memory_budget_bytes, 1 if mesh is None else mesh.size)
  keys = jax.random.split(as_key(key), len(ids))
  out = {}
  for lo in range(0, len(ids), chunk):
    part = ids[lo:lo + chunk]
    out.update(extract_concepts_each({i: matrices[i] for i in part}, n_components,
                                     names=names, key=keys[lo:lo + len(part)],
                                     fallback_key=fallback_key, mesh=mesh, **kwargs))
  return out


def crop_search_bytes(n_bases: int, images_per_device: int, cells: int, n_crops: int,
                      n_modes: int = len(crops_lib.CROP_MODES)) -> int:
  """Estimated device bytes of a crop search step for `n_bases` concept vectors.

  ``4 B (b g (1 + 2 M) + 4 m M)``: the similarities (B, b g) of b images of g
  pooled cells, per mode their masked copy and the candidates' ids, and the
  running top-m scores and ids merged with them (M modes, m crops).
  """
  b, g, m, nm = int(images_per_device), int(cells), int(n_crops), int(n_modes)
  return 4 * int(n_bases) * (b * g * (1 + 2 * nm) + 4 * m * nm)


def crop_chunk_size(k: int, batch_size: int, cells: int, n_crops: int,
                    memory_budget_bytes: int | None = None, num_devices: int = 1) -> int:
  """Concept sets (of k bases) per crop search: ``budget // crop_search_bytes(k, b, ...)``,
  b = ceil(batch_size / num_devices) images per device (every device sees every set).

  Raises:
    ValueError: the budget does not hold one set's search.
  """
  need = crop_search_bytes(k, -(-int(batch_size) // int(num_devices)), cells, n_crops)
  return classes_per_chunk(need, memory_budget_bytes)


def search_concept_crops_chunked(split: Any, variables: Any, images: np.ndarray,
                                 sets: Mapping[Hashable, tuple[np.ndarray, int]], n_crops: int,
                                 geometry: CropGeometry, *, predictions: np.ndarray,
                                 fill: float = 0.0, batch_size: int = 256, mesh: Any = None,
                                 memory_budget_bytes: int | None = None
                                 ) -> dict[Hashable, crops_lib.ConceptCrops]:
  """`crops.search_concept_crops` over chunks of concept sets that fit a memory budget.

  Each concept's top crops do not depend on the others, so the result equals
  one search over all sets; each chunk streams the images once. Chunk: the
  most sets whose :func:`crop_search_bytes` (k bases per set, the batch split
  over `mesh`'s devices) fits `memory_budget_bytes` (default 2 GiB) per device.

  Raises:
    ValueError: the budget does not hold one set's search (before any work).
  """
  ids = list(sets)
  if not ids:
    return {}
  chunk = crop_chunk_size(int(np.shape(sets[ids[0]][0])[0]),
                          min(int(batch_size), images.shape[0]), geometry.cells, n_crops,
                          memory_budget_bytes, 1 if mesh is None else mesh.size)
  out = {}
  for lo in range(0, len(ids), chunk):
    out.update(crops_lib.search_concept_crops(
        split, variables, images, {i: sets[i] for i in ids[lo:lo + chunk]}, n_crops, geometry,
        predictions=predictions, fill=fill, batch_size=batch_size, mesh=mesh))
  return out


# ---------------------------------------------------------------------------
# One class end to end (convenience for users; the program batches classes).


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


def explain_class(model: nn.Module, variables: Any, images: np.ndarray, target: int,
                  layer: str | int, *, n_concepts: int = 6,
                  score_order: str = "mean_then_relu", n_samples: int = 20,
                  noise_std: float = 0.25, baseline: float = 1.0, key: Any = None,
                  batch_size: int = 64, attribution_fn: AttributionFn | None = None,
                  nmf_kwargs: dict | None = None) -> ClassConcepts:
  """Concepts of class `target` from `images` (the images predicted as it).

  Args:
    model: a classifier following the split protocol.
    variables: its variables.
    images: (N, H, W, C) float32 images (the caller selects those predicted
      as target, e.g. with :func:`class_image_indices`).
    target: the class.
    layer: a spatial tap name or alias.
    n_concepts: k.
    score_order: see :func:`pixel_scores`.
    n_samples: SmoothGrad samples.
    noise_std: SmoothGrad noise std, in input ([0, 1] pixel) units. The paper's
      0.25 is in normalised units: pass 0.25 x the data's std for its noise
      (the program does, ``noise_std_units="data_std"``).
    baseline: DeepLift baseline (1.0: a white image).
    key: PRNG key or int seed of the noise (None: seed 0).
    batch_size: attribution batch size.
    attribution_fn: `layer_deeplift_smoothgrad`-compatible function.
    nmf_kwargs: extra arguments of :func:`extract_concepts`.

  Returns:
    The concepts, the activations and attributions (N, h, w, c) and the
    pixel scores (N, h, w).

  Raises:
    ValueError: no images, or fewer positive pixel vectors than n_concepts.
  """
  images = np.asarray(images, np.float32)
  chex.assert_rank(images, 4)
  if images.shape[0] == 0:
    raise ValueError(f"class {target}: no images (the model predicts it for none)")
  check_choice("score_order", score_order, SCORE_ORDERS)
  attribution_fn = attribution_fn or default_attribution_fn()
  s = split_lib.split(model, layer)
  acts = s.encode(variables, jnp.asarray(images))
  attr = attribution_fn(model, variables, jnp.asarray(images),
                        np.full((images.shape[0],), int(target), np.int32), s.layer,
                        n_samples=n_samples, std=noise_std, baseline=baseline,
                        key=as_key(key), batch_size=batch_size)
  attr = jnp.asarray(attr)
  chex.assert_equal_shape([acts, attr])
  mat = concept_matrix(acts, attr, score_order)
  concepts = extract_concepts(mat, n_concepts, what=f"class {target}",
                              **(nmf_kwargs or {}))
  return ClassConcepts(concepts, np.asarray(acts), np.asarray(attr),
                       np.asarray(pixel_scores(attr, score_order)))


# ---------------------------------------------------------------------------
# Scoring crops against planted parts (data sets with known parts, `data.planted`).


def part_coverage(hits: CropHits, geometry: CropGeometry, part_maps: np.ndarray,
                  num_parts: int) -> np.ndarray:
  """How much of each planted part lies inside each hit's crop.

  The score of a crop for part p is the fraction of p's pixels in the crop's
  image that fall inside the crop: 1 when the crop holds the whole part, 0 when
  it misses it or the image has no such part. (A part bigger than the crop
  cannot reach 1; the planted set's 12x12 parts fit its 16x16 crops.)

  Args:
    hits: (B, m) hits of :func:`crops.search_crops` (image -1: none found).
    geometry: the search's crop geometry.
    part_maps: (N, H, W) int part id per pixel (-1 background) of the searched
      images.
    num_parts: P, the number of part ids.

  Returns:
    (B, m, P) float32 in [0, 1]; NaN rows for hits without an image.
  """
  part_maps = np.asarray(part_maps)
  chex.assert_rank(part_maps, 3)
  if tuple(part_maps.shape[1:]) != tuple(geometry.image_hw):
    raise ValueError(f"part maps {part_maps.shape[1:]} do not match the images "
                     f"{geometry.image_hw}")
  num_parts = check_int(num_parts, "num_parts")
  out = np.full((*hits.image.shape, num_parts), np.nan, np.float32)
  for i, j, idx, window in crops_lib.hit_windows(hits, geometry):
    full = np.bincount(part_maps[idx].ravel() + 1, minlength=num_parts + 1)[1:]
    inside = np.bincount(part_maps[idx][window].ravel() + 1, minlength=num_parts + 1)[1:]
    out[i, j] = inside[:num_parts] / np.maximum(full[:num_parts], 1)
  return out


def random_hits(hits: CropHits, geometry: CropGeometry, seed: int = 0) -> CropHits:
  """The baseline of :func:`part_coverage`: the same images, cells drawn at random.

  Args:
    hits: (B, m) hits; each keeps its image (-1 stays -1).
    geometry: the crop geometry (its pooled grid is sampled uniformly).
    seed: numpy seed of the draw.

  Returns:
    (B, m) `CropHits` with random rows / columns and NaN scores.
  """
  rng = np.random.default_rng(seed)
  shape = hits.image.shape
  return CropHits(hits.image, rng.integers(0, geometry.grid_hw[0], shape),
                  rng.integers(0, geometry.grid_hw[1], shape), np.full(shape, np.nan))


def part_hit_scores(coverage: np.ndarray, wanted: np.ndarray) -> dict[str, Any]:
  """Summaries of :func:`part_coverage` for one concept set against some parts.

  Args:
    coverage: (k, m, P) coverage of k concepts' top-m crops (NaN: no crop).
    wanted: (P,) bool, the parts that count (a class's parts, or the parts
      that separate A from B).

  Returns:
    {"coverage": mean over crops of the best coverage by a wanted part,
    "any_part": the same for any part, "hit_rate": fraction of crops that hold
    at least half of a wanted part, "n_crops", "top_part": (k,) the part id each
    concept covers most on average (-1: no crop)}.
  """
  coverage = np.asarray(coverage, np.float64)
  chex.assert_rank(coverage, 3)
  wanted = np.asarray(wanted, bool)
  found = ~np.isnan(coverage[..., 0])
  best = np.where(wanted, coverage, 0.0).max(-1)[found]
  nan = float("nan")
  mean_cov = np.nansum(coverage, axis=1) / np.maximum(found.sum(1), 1)[:, None]  # (k, P)
  top = np.where(found.any(1), mean_cov.argmax(-1), -1)
  return {"coverage": float(best.mean()) if best.size else nan,
          "any_part": float(coverage.max(-1)[found].mean()) if best.size else nan,
          "hit_rate": float((best >= 0.5).mean()) if best.size else nan,
          "n_crops": int(best.size), "top_part": [int(t) for t in top]}
