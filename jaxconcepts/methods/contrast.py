"""Class contrasting: why A rather than B (Herdt Sec. 5).

1. Per class, the raw pixel vectors (activation vectors at one spatial
   position of the layer) of the images predicted as the class whose pixel
   score exceeds ``threshold`` (0.25) x that image's maximum score
   (:func:`contrast_mask`, :func:`contrast_vectors`). The score is the
   one of `concepts.pixel_scores` (channel mean, negatives zeroed: the paper;
   the authors' code thresholds the signed mean, a bug we do not follow);
   the comparison is strict (``>``), as their code, and an image whose
   maximum score is zero keeps nothing.
2. One logistic classifier per unordered pair (`pairwise.train_pairwise`:
   zero init, full batch, SGD, 100 epochs, lr 0.01, BCE);
   `pairwise.hyperplane(result, a, b)` orients it toward A
   (``w . x + b > 0`` means A); :class:`ClassPairs` addresses the classifiers
   by class id.
3. Contrast concepts for (A, B): the activations of A's images scaled by
   ``max(w . x + b, 0)`` per pixel (:func:`contrast_matrix`), then NMF and
   crops exactly as for a single class (`concepts.py`, `crops.py`).
4. The shifting test (Table 3): start from the activations of images the
   model predicts as B, move every spatial position along the raw
   (unnormalised) hyperplane normal toward A, ``h' = relu(h + t * w)``, for the
   ten offsets ``t`` in :data:`OFFSETS`, apply the head and read the softmax
   (:func:`shifting_probs`, :func:`shifting_stats`: jitted and ``vmap``-ed
   over directions and offsets, with the model's `Split` static and its
   variables traced).
   :func:`shift_metrics` reads, per ordered pair (B -> A):

   * ``default_pred``: mean probability of A over the images, unshifted;
   * ``best_offset``: the offset (of the ten, 0 included) where the mean
     probability of A is highest; ``shifted_pred``: that probability;
     ``shifted_pred_b``: B's mean probability there;
   * ``flip_rate``: fraction of the images whose argmax is A at the best
     offset (how often the prediction flips from B to A);
   * ``majority``, ``swap_<t>``: the paper's "pred swap" -- A is the majority
     class *and* its mean probability is at least t (0.1, 0.2, 0.5). Rule
     ``"paper"`` (default): majority = per-image vote (the most frequent
     argmax at the best offset, ties to the lower id), ``>=``; rule
     ``"mean_probs"`` (our earlier choice): argmax of the mean, ``>``;
   * ``*_pred_sample_std``: std of p(A) over the pair's images.

   :func:`shift_summary`: mean of the default and shifted predictions, their
   std over all samples (``"paper"``: every image of every pair, pooled) or
   over the pairs (``"mean_probs"``), the % of pairs that swap per threshold
   (Table 3), the mean flip rate and the histogram of best offsets. (The
   authors' aggregation takes B's probability at the wrong offset index, an
   off-by-one; we read it at the best offset.)
5. The bias probe (Table 4): paste a crop (e.g. the top crop of a contrast
   concept of A, taken from an image predicted as A) into the images
   predicted as B, at the bottom-right corner, and compare the mean
   probabilities of A and B for the original images, the pasted ones and ones
   where the same square is filled with a blank value (:func:`probe_crops`,
   :func:`paste`, :func:`bias_probe`). The paper's blank is "zeros" in its
   normalised input space, i.e. the data's mean colour in our [0, 1] pixels
   (pass ``blank=`` the per-channel training mean; 0 is black).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxconcepts.methods import concepts as concepts_lib
from jaxconcepts.methods.crops import CropHits
from jaxconcepts.models import split as split_lib
from jaxconcepts.ops import pairwise
from jaxconcepts.utils import check_choice
from jaxconcepts.utils import check_int
from jaxconcepts.utils import map_batches

OFFSETS = (0.0, 0.5, 1.0, 2.0, 10.0, 15.0, 20.0, 35.0, 50.0, 200.0)
THRESHOLDS = (0.1, 0.2, 0.5)
SHIFT_RULES = ("paper", "mean_probs")
POSITIONS = ("bottom_right", "bottom_left", "top_right", "top_left")


# ---------------------------------------------------------------------------
# Filtering and training.


def contrast_mask(attributions: jax.Array, threshold: float = 0.25,
                  order: str = "mean_then_relu") -> jax.Array:
  """Pixels whose score exceeds `threshold` x the image's maximum score.

  Args:
    attributions: (N, h, w, c) layer attributions for the class.
    threshold: fraction of each image's maximum score, in [0, 1].
    order: score order, see `concepts.pixel_scores`.

  Returns:
    (N, h, w) bool; strict ``>`` and only positive scores.
  """
  if not 0.0 <= float(threshold) <= 1.0:
    raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
  scores = concepts_lib.pixel_scores(attributions, order)
  peak = jnp.max(scores, axis=(1, 2), keepdims=True)
  return (scores > threshold * peak) & (scores > 0)


def contrast_vectors(activations: jax.typing.ArrayLike, attributions: jax.typing.ArrayLike,
                     threshold: float = 0.25,
                     order: str = "mean_then_relu") -> np.ndarray:
  """The raw pixel vectors kept by :func:`contrast_mask`.

  Args:
    activations: (N, h, w, c) activations of the class's images.
    attributions: (N, h, w, c) their attributions for the class.
    threshold, order: see :func:`contrast_mask`.

  Returns:
    (n, c) float32 numpy array in (image, row, col) order (n may be 0).
  """
  chex.assert_rank([activations, attributions], 4)
  chex.assert_equal_shape([activations, attributions])
  keep = np.asarray(contrast_mask(attributions, threshold, order))
  return np.asarray(activations, np.float32)[keep]


def train_contrast(vectors: Sequence[np.ndarray], *, epochs: int = 100,
                   lr: float = 0.01, **kwargs: Any) -> pairwise.PairwiseResult:
  """`pairwise.train_pairwise` over per-class vector lists (all pairs at once).

  Args:
    vectors: C arrays (n_c, d) float32, one per class, n_c >= 1.
    epochs: full-batch SGD epochs (zero init, BCE).
    lr: learning rate.
    **kwargs: more `pairwise.train_pairwise` options.

  Returns:
    One classifier per unordered pair; `pairwise.hyperplane(result, a, b)`
    orients one toward A.

  Raises:
    ValueError: a class without vectors (naming it) -- filter such classes
      first; see `pairwise.train_pairwise` for the rest.
  """
  return pairwise.train_pairwise(list(vectors), epochs=epochs, lr=lr, **kwargs)


class ClassPairs(NamedTuple):
  """The pairwise classifiers of some classes, addressed by class id.

  Attributes:
    result: `train_contrast` of the classes' vectors, in the order of
      `classes`.
    classes: the class ids.
  """
  result: pairwise.PairwiseResult
  classes: tuple[int, ...]

  def hyperplane(self, a: int, b: int) -> tuple[np.ndarray, float]:
    """(w (c,), bias) of the (A, B) classifier, oriented toward A."""
    return pairwise.hyperplane(self.result, self.classes.index(a), self.classes.index(b))

  def train_acc(self, a: int, b: int) -> float:
    """Training accuracy of the classifier of the unordered pair {A, B}."""
    i, j = sorted((self.classes.index(a), self.classes.index(b)))
    return float(self.result.accuracy[pairwise.pair_index(i, j, len(self.classes))])


def hyperplane_scores(activations: jax.Array, w: jax.Array, b: float) -> jax.Array:
  """``w . x + b`` at every pixel.

  Args:
    activations: (N, h, w, c).
    w: (c,) hyperplane normal.
    b: bias.

  Returns:
    (N, h, w) scores, the activations' dtype.
  """
  chex.assert_rank(activations, 4)
  return jnp.einsum("nhwc,c->nhw", activations, jnp.asarray(w, activations.dtype)) + b


def contrast_matrix(activations: jax.Array, w: jax.Array, b: float) -> jax.Array:
  """Pixel vectors scaled by ``max(w . x + b, 0)``, as (N * h * w, c) for NMF.

  Args:
    activations: (N, h, w, c) activations of images predicted as A.
    w, b: the (A, B) hyperplane oriented toward A (`pairwise.hyperplane`).

  Returns:
    (N * h * w, c) in (image, row, col) order; pixels on B's side are zero.
  """
  activations = jnp.asarray(activations)
  chex.assert_shape(w, (activations.shape[-1],))
  z = jax.nn.relu(hyperplane_scores(activations, w, b))
  return (activations * z[..., None]).reshape(-1, activations.shape[-1])


# ---------------------------------------------------------------------------
# The shifting test.


def shift_activations(h: jax.Array, w: jax.Array, offsets: Sequence[float]) -> jax.Array:
  """``relu(h + t * w)`` for each offset t.

  Args:
    h: (N, ..., c) activations.
    w: (c,) direction, added at every position.
    offsets: T offsets.

  Returns:
    (T, N, ..., c), h's dtype.
  """
  t = jnp.asarray(offsets, h.dtype).reshape((-1,) + (1,) * h.ndim)
  return jax.nn.relu(h[None] + t * jnp.asarray(w, h.dtype))


def _shift_probs(split: split_lib.Split, variables: Any, h: jax.Array, ws: jax.Array,
                 offsets: jax.Array) -> jax.Array:
  """softmax(head(relu(h + t w))): h (n, ...), ws (P, c), offsets (T,) -> (P, T, n, K)."""
  def one(w: jax.Array, t: jax.Array) -> jax.Array:
    return jax.nn.softmax(split.head(variables, jax.nn.relu(h + t * w)), axis=-1)
  return jax.vmap(lambda w: jax.vmap(lambda t: one(w, t))(offsets))(ws)


@functools.partial(jax.jit, static_argnums=0)
def _shift_probs_images_first(split: split_lib.Split, variables: Any, ws: jax.Array,
                              offsets: jax.Array, h: jax.Array) -> jax.Array:
  """:func:`_shift_probs` with the images first, (n, P, T, K), for `map_batches`."""
  return jnp.moveaxis(_shift_probs(split, variables, h, ws, offsets), 2, 0)


def _check_directions(h: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  h = np.asarray(h, np.float32)
  directions = np.asarray(directions, np.float32)
  chex.assert_rank(directions, 2)
  if directions.shape[1] != h.shape[-1]:
    raise ValueError(f"directions have {directions.shape[1]} channels, the "
                     f"activations {h.shape[-1]}")
  return h, directions


def shifting_probs(split: split_lib.Split, variables: Any, h: np.ndarray,
                   directions: np.ndarray, offsets: Sequence[float] = OFFSETS,
                   batch_size: int = 64) -> np.ndarray:
  """Softmax of the head on shifted activations, all directions and offsets.

  Args:
    split: the model cut at the layer (`models.split.Split`, or any hashable
      object with ``head(variables, h)``); a static jit argument.
    variables: the model's variables (a traced argument: a new checkpoint of
      the same architecture does not recompile).
    h: (N, h, w, c) float32 activations (images predicted as B).
    directions: (P, c) hyperplane normals, each oriented toward its A.
    offsets: (T,) offsets.
    batch_size: images per compiled call (P * T * batch_size head
      evaluations each).

  Returns:
    (P, T, N, classes) float32 probabilities.
  """
  h, directions = _check_directions(h, directions)
  args = (split, variables, jnp.asarray(directions), jnp.asarray(offsets, jnp.float32))
  out = map_batches(_shift_probs_images_first, h, args=args, batch_size=batch_size)
  return np.moveaxis(out, 0, 2)


class ShiftStats(NamedTuple):
  """What :func:`shifting_stats` keeps of the shifted probabilities.

  Attributes:
    mean_probs: (P, T, classes) float32, the softmax averaged over the images.
    argmax: (P, T, N) int32, each image's predicted class.
    target_probs: (P, T, N) float32, each image's probability of its
      direction's target class (None: no targets given).
  """
  mean_probs: np.ndarray
  argmax: np.ndarray
  target_probs: np.ndarray | None


@functools.partial(jax.jit, static_argnums=0)
def _shift_stats_chunk(split: split_lib.Split, variables: Any, h: jax.Array,
                       valid: jax.Array, ws: jax.Array, offsets: jax.Array,
                       targets: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Sums over valid images of the softmax (P, T, K); argmax and p(target) per image (P, T, n)."""
  probs = _shift_probs(split, variables, h, ws, offsets)  # (P, T, n, classes)
  sums = jnp.sum(jnp.where(valid[None, None, :, None], probs, 0), axis=2)
  target = jnp.take_along_axis(probs, targets[:, None, None, None], axis=-1)[..., 0]
  return sums, jnp.argmax(probs, axis=-1).astype(jnp.int32), target


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
  """`x` (k, ...) zero-padded to (rows, ...)."""
  if x.shape[0] == rows:
    return x
  return np.concatenate([x, np.zeros((rows - x.shape[0],) + x.shape[1:], x.dtype)])


def _shift_stats_directions(split: split_lib.Split, variables: Any, h: np.ndarray,
                            ws: np.ndarray, offsets: jax.Array, bs: int, targets: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Mean softmax (P, T, K), argmax and p(target) (P, T, N) for one padded chunk."""
  n = h.shape[0]
  total, arg, tgt = 0.0, [], []
  for start in range(0, n, bs):
    chunk = h[start:start + bs]
    k = chunk.shape[0]
    s_, a_, t_ = _shift_stats_chunk(split, variables, _pad_rows(chunk, bs),
                                    np.arange(bs) < k, ws, offsets, targets)
    total = total + np.asarray(s_)
    arg.append(np.asarray(a_)[:, :, :k])
    tgt.append(np.asarray(t_)[:, :, :k])
  return total / n, np.concatenate(arg, axis=2), np.concatenate(tgt, axis=2)


def shifting_stats(split: split_lib.Split, variables: Any, h: np.ndarray,
                   directions: np.ndarray, offsets: Sequence[float] = OFFSETS,
                   batch_size: int = 16, directions_per_call: int = 16,
                   targets: Sequence[int] | None = None) -> ShiftStats:
  """What Table 3 needs from :func:`shifting_probs`, in bounded memory.

  Each compiled call evaluates ``min(directions_per_call, P) x T x
  batch_size`` shifted activations (the last chunks are padded, so it
  compiles once for a given P); only the mean probabilities and the
  per-image argmax are kept, so 1000 classes (999 directions per class) fit
  in memory. Images are summed per call and the sums added up on the host
  (this order of additions is part of the recorded results).

  Args:
    split, variables, h, directions, offsets: as :func:`shifting_probs`.
    batch_size: images per call (at most the next power of two >= N, so
      classes with different image counts share compilations).
    directions_per_call: directions per call.
    targets: (P,) the class each direction points to (its A); when given,
      each image's probability of it is kept too (for the std over samples).

  Returns:
    `ShiftStats` (mean_probs, argmax, target_probs).
  """
  h, directions = _check_directions(h, directions)
  n, p = h.shape[0], directions.shape[0]
  if n == 0 or p == 0:
    raise ValueError(f"need images and directions, got {n} images, {p} directions")
  tgt = np.zeros(p, np.int32) if targets is None else np.asarray(targets, np.int32)
  if tgt.shape != (p,):
    raise ValueError(f"targets must have one class per direction ({p}), got shape {tgt.shape}")
  offs = jnp.asarray(offsets, jnp.float32)
  bs = min(check_int(batch_size, "batch_size"), 1 << (n - 1).bit_length())
  dp = min(check_int(directions_per_call, "directions_per_call"), p)
  sums, args, tgts = [], [], []
  for d0 in range(0, p, dp):  # p is the same for every class of a run: one compilation
    ws, t = directions[d0:d0 + dp], tgt[d0:d0 + dp]
    mean, arg, tp = _shift_stats_directions(split, variables, h, _pad_rows(ws, dp), offs, bs,
                                            _pad_rows(t, dp))
    sums.append(mean[:ws.shape[0]])
    args.append(arg[:ws.shape[0]])
    tgts.append(tp[:ws.shape[0]])
  return ShiftStats(np.concatenate(sums), np.concatenate(args),
                    None if targets is None else np.concatenate(tgts))


def shift_metrics(probs: np.ndarray, a: int, b: int,
                  offsets: Sequence[float] = OFFSETS,
                  thresholds: Sequence[float] = THRESHOLDS,
                  base_probs: np.ndarray | None = None, *,
                  rule: str = "paper") -> dict[str, Any]:
  """Table 3's per-pair numbers for shifting B's images toward A.

  Args:
    probs: (T, N, classes) softmax after shifting by each offset.
    a: the class shifted toward.
    b: the images' (predicted) class.
    offsets: the T offsets.
    thresholds: pred-swap thresholds.
    base_probs: (N, classes) unshifted probabilities; default: the entry of
      offset 0 (which must then be among the offsets).
    rule: one of :data:`SHIFT_RULES` (see module docstring).

  Returns:
    dict with default_pred, default_pred_b, shifted_pred, shifted_pred_b,
    best_offset, flip_rate, majority, swap_<t>, default_pred_sample_std,
    shifted_pred_sample_std (see module docstring).
  """
  probs = np.asarray(probs, np.float64)
  chex.assert_rank(probs, 3)
  offsets = [float(t) for t in offsets]
  if len(offsets) != probs.shape[0]:
    raise ValueError(f"{len(offsets)} offsets for {probs.shape[0]} rows of probs")
  if base_probs is None:
    if 0.0 not in offsets:
      raise ValueError("base_probs is needed when 0 is not among the offsets")
    base_probs = probs[offsets.index(0.0)]
  base_probs = np.asarray(base_probs, np.float64)
  return shift_metrics_from_stats(probs.mean(axis=1), probs.argmax(axis=-1),
                                  base_probs.mean(axis=0), a, b, offsets, thresholds,
                                  rule=rule, target_probs=probs[..., a],
                                  base_target=base_probs[:, a])


def _majority(mean: np.ndarray, argmax: np.ndarray, rule: str) -> int:
  """The majority class at one offset: per-image vote ("paper") or argmax of the mean."""
  if rule == "paper":
    return int(np.argmax(np.bincount(np.asarray(argmax).ravel(), minlength=mean.shape[-1])))
  return int(np.argmax(mean))


def shift_metrics_from_stats(mean_probs: np.ndarray, argmax: np.ndarray,
                             base_mean: np.ndarray, a: int, b: int,
                             offsets: Sequence[float] = OFFSETS,
                             thresholds: Sequence[float] = THRESHOLDS, *,
                             rule: str = "paper", target_probs: np.ndarray | None = None,
                             base_target: np.ndarray | None = None) -> dict[str, Any]:
  """:func:`shift_metrics` from :func:`shifting_stats`' outputs for one pair.

  Args:
    mean_probs: (T, classes) softmax averaged over the images, per offset.
    argmax: (T, N) predicted class per offset and image.
    base_mean: (classes,) unshifted softmax averaged over the images.
    a, b, offsets, thresholds, rule: as :func:`shift_metrics`.
    target_probs: (T, N) p(A) per offset and image (optional: the per-pair
      sample std at the best offset).
    base_target: (N,) unshifted p(A) per image (optional: its sample std).
  """
  check_choice("rule", rule, SHIFT_RULES)
  mean = np.asarray(mean_probs, np.float64)
  chex.assert_rank([mean, argmax, base_mean], [2, 2, 1])
  offsets = [float(t) for t in offsets]
  if len(offsets) != mean.shape[0]:
    raise ValueError(f"{len(offsets)} offsets for {mean.shape[0]} rows of mean_probs")
  best = int(np.argmax(mean[:, a]))
  shifted = float(mean[best, a])
  majority = _majority(mean[best], np.asarray(argmax)[best], rule)
  out = {"default_pred": float(base_mean[a]), "default_pred_b": float(base_mean[b]),
         "shifted_pred": shifted, "shifted_pred_b": float(mean[best, b]),
         "best_offset": offsets[best], "flip_rate": float(np.mean(np.asarray(argmax)[best] == a)),
         "majority": majority}
  for t in thresholds:
    above = shifted >= t if rule == "paper" else shifted > t
    out[f"swap_{t:g}"] = bool(majority == a and above)
  if base_target is not None:
    out["default_pred_sample_std"] = float(np.std(np.asarray(base_target, np.float64)))
  if target_probs is not None:
    out["shifted_pred_sample_std"] = float(np.std(np.asarray(target_probs, np.float64)[best]))
  return out


def _std(ok: Sequence[dict[str, Any]], key: str, rule: str) -> tuple[float, str]:
  """(std of `key`, over what): over all samples ("paper", if the rows have the
  per-pair sample stds and sizes: pooled, ddof 0) or over the pairs' means."""
  means = np.array([r[key] for r in ok], np.float64)
  std_key = f"{key}_sample_std"
  if rule != "paper" or not all(std_key in r and "n_images" in r for r in ok):
    return float(means.std()), "pairs"
  stds = np.array([r[std_key] for r in ok], np.float64)
  w = np.array([r["n_images"] for r in ok], np.float64) / sum(r["n_images"] for r in ok)
  mean, second = (w * means).sum(), (w * (stds ** 2 + means ** 2)).sum()
  return float(np.sqrt(max(second - mean ** 2, 0.0))), "samples"


def shift_summary(rows: Sequence[dict[str, Any]],
                  thresholds: Sequence[float] = THRESHOLDS,
                  offsets: Sequence[float] = OFFSETS, *, rule: str = "paper") -> dict[str, Any]:
  """Table 3 over pairs: mean +- std and % of pairs that swap.

  Args:
    rows: per-pair dicts from :func:`shift_metrics` (rows without
      "shifted_pred", e.g. failed pairs, are skipped); with "n_images" and the
      "*_sample_std" columns the std is over all samples.
    thresholds: the pred-swap thresholds of the rows.
    offsets: the offsets (for the histogram of best offsets).
    rule: one of :data:`SHIFT_RULES`: "paper" -- std over all samples (every
      image of every pair; over the pairs if the rows lack the per-image
      numbers); "mean_probs" -- std over the pairs' means (ddof 0).

  Returns:
    {"n_pairs", "default_pred", "default_pred_std", "shifted_pred",
    "shifted_pred_std", "std_over", "increase_factor", "pct_swap_<t>",
    "mean_flip_rate", "best_offset_counts"}; NaN statistics for zero pairs.
  """
  check_choice("rule", rule, SHIFT_RULES)
  ok = [r for r in rows if r.get("shifted_pred") is not None]
  nan = float("nan")
  d = np.array([r["default_pred"] for r in ok], np.float64)
  s = np.array([r["shifted_pred"] for r in ok], np.float64)
  n = len(ok)
  (d_std, over), (s_std, _) = ((_std(ok, "default_pred", rule), _std(ok, "shifted_pred", rule))
                               if n else ((nan, ""), (nan, "")))
  out = {"n_pairs": n, "default_pred": float(d.mean()) if n else nan, "default_pred_std": d_std,
         "shifted_pred": float(s.mean()) if n else nan, "shifted_pred_std": s_std,
         "std_over": over,
         "increase_factor": float(s.mean() / d.mean()) if n and d.mean() > 0 else nan}
  for t in thresholds:
    out[f"pct_swap_{t:g}"] = (100.0 * float(np.mean([r[f"swap_{t:g}"] for r in ok]))
                              if n else nan)
  out["mean_flip_rate"] = float(np.mean([r["flip_rate"] for r in ok])) if n else nan
  best = [r["best_offset"] for r in ok]
  out["best_offset_counts"] = {f"{t:g}": int(sum(b == float(t) for b in best))
                               for t in offsets}
  return out


# ---------------------------------------------------------------------------
# The bias probe.


def paste(images: np.ndarray, patch: np.ndarray,
          position: str = "bottom_right") -> np.ndarray:
  """Copies `patch` into a corner of every image.

  Args:
    images: (N, H, W, C), not modified.
    patch: (ph, pw, C), ph <= H, pw <= W.
    position: one of :data:`POSITIONS`.

  Returns:
    (N, H, W, C) float32 copies with the patch pasted.
  """
  check_choice("position", position, POSITIONS)
  images = np.array(images, np.float32, copy=True)
  patch = np.asarray(patch, np.float32)
  chex.assert_rank([images, patch], [4, 3])
  _, big_h, big_w, c = images.shape
  ph, pw, pc = patch.shape
  if ph > big_h or pw > big_w or pc != c:
    raise ValueError(f"patch {patch.shape} does not fit images {images.shape[1:]}")
  r = big_h - ph if position.startswith("bottom") else 0
  q = big_w - pw if position.endswith("right") else 0
  images[:, r:r + ph, q:q + pw] = patch
  return images


def probe_crops(all_hits: CropHits, all_crops: np.ndarray, only_hits: CropHits,
                only_crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Each contrast concept's crop for the bias probe.

  The top crop from an image predicted as A (mode "only" of the search) if
  there is one, else the top crop from any image (mode "all").

  Args:
    all_hits: (k, m) hits over all images.
    all_crops: (k, m, ch, cw, C) their crops.
    only_hits: (k, m) hits over the images predicted as A.
    only_crops: (k, m, ch, cw, C) their crops.

  Returns:
    (image (k,) int -- the crop's image, -1: none; from_a (k,) bool;
    patches (k, ch, cw, C) float32).
  """
  from_a = only_hits.image[:, 0] >= 0
  image = np.where(from_a, only_hits.image[:, 0], all_hits.image[:, 0])
  patches = np.where(from_a[:, None, None, None], only_crops[:, 0], all_crops[:, 0])
  return image, from_a, patches


def bias_probe(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
               patches: np.ndarray, a: int, b: int, *,
               position: str = "bottom_right",
               blank: float | np.ndarray = 0.0) -> list[dict[str, float]]:
  """Table 4: prediction change when a crop is pasted into B's images.

  All images (original, one pasted and one blanked set per patch) go through
  `predict` in one call.

  Args:
    predict: images (n, H, W, C) -> softmax probabilities (n, classes).
    images: (N, H, W, C) images predicted as B.
    patches: (P, ph, pw, C) crops (e.g. the top crop of each contrast concept
      of A), or one (ph, pw, C) crop.
    a, b: the classes whose mean probabilities are reported.
    position: corner to paste into.
    blank: fill value of the control: a scalar or a (C,) colour (the paper's
      "zeros" in normalised space = the data's mean colour; 0 = black).

  Returns:
    One dict per patch: {orig_a, orig_b, pasted_a, pasted_b, blank_a, blank_b,
    pct_flipped}: mean probabilities over the images, and the % of images whose
    argmax is A after pasting.
  """
  images = np.asarray(images, np.float32)
  patches = np.asarray(patches, np.float32)
  if patches.ndim == 3:
    patches = patches[None]
  chex.assert_rank([images, patches], 4)
  n = images.shape[0]
  if n == 0:
    raise ValueError(f"no images of class {b} to paste into")
  fill = np.broadcast_to(np.asarray(blank, np.float32), patches.shape[1:])
  batch = [images]
  for patch in patches:
    batch.append(paste(images, patch, position))
    batch.append(paste(images, fill, position))
  probs = np.asarray(predict(np.concatenate(batch))).reshape(len(batch), n, -1)
  p0 = probs[0]
  out = []
  for j in range(patches.shape[0]):
    p1, p2 = probs[1 + 2 * j], probs[2 + 2 * j]
    out.append({"orig_a": float(p0[:, a].mean()), "orig_b": float(p0[:, b].mean()),
                "pasted_a": float(p1[:, a].mean()), "pasted_b": float(p1[:, b].mean()),
                "blank_a": float(p2[:, a].mean()), "blank_b": float(p2[:, b].mean()),
                "pct_flipped": 100.0 * float(np.mean(p1.argmax(-1) == a))})
  return out
