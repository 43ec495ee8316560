"""Occlusion study of the ClaDec paper (Sec. 6.6, Tables 7 and 8).

For each image, 16 candidate occlusions: squares of 12x12 pixels with upper
left corners (x, y) in {0, 6, 12, 20}^2, filled with the training mean (one
value per channel: the mean of all training pixels, "a gray tone").

* ClaDec relevance of square O: `sum_{i in O} (x_hat_occ_i - x_hat_i)^2`, the
  squared change of ClaDec's reconstruction inside the square when O is
  occluded (summed over channels).
* GradCAM relevance: the GradCAM map at the layer, upsampled to the image
  (bilinear), normalised to [0, 1] per image, summed over the square. A layer
  without spatial extent (a vector, or 1x1) would give a constant map (all
  squares tie, Delta Acc 0 by construction, where the paper's Table 8 reports
  GradCAM at ResNet -1 as 0.152 / 0.037 / 0.023), so GradCAM runs at the last
  tap with spatial extent at or below the layer (`gradcam_layer`).

The most / least relevant square of each image is occluded and the frozen
classifier's accuracy on the occluded images reported; `Delta Acc = acc(min
occluded) - acc(max occluded)`. Ties are broken at random by one priority per
(image, square), shared by the argmin and the argmax, so when all squares tie
both pick the same square (Delta Acc = 0, as the paper's GradCAM rows for the
logits layer).
"""

from typing import Callable, Mapping, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

CORNERS = (0, 6, 12, 20)
SQUARE = 12


def square_masks(image_hw: Sequence[int], corners: Sequence[int] = CORNERS,
                 size: int = SQUARE) -> np.ndarray:
  """Boolean masks (K, H, W) of the K = len(corners)^2 squares, row-major (y, x).

  Args:
    image_hw: (H, W) of the images.
    corners: top-left offsets, used for both y and x (the paper: 0, 6, 12, 20).
    size: side of each square in pixels (the paper: 12).

  Returns:
    bool (K, H, W), True inside square k.

  Raises:
    ValueError: a square that does not fit inside the image.
  """
  h, w = (int(s) for s in image_hw)
  corners = [int(c) for c in corners]
  size = int(size)
  if size < 1:
    raise ValueError(f"occlusion square size must be >= 1, got {size}")
  if not corners:
    raise ValueError("occlusion corners must not be empty")
  bad = [c for c in corners if c < 0 or c + size > min(h, w)]
  if bad:
    raise ValueError(f"occlusion squares of {size}x{size} at corners {bad} do not fit in a "
                     f"{h}x{w} image (need 0 <= corner <= {min(h, w) - size})")
  masks = np.zeros((len(corners) ** 2, h, w), bool)
  for k, (y, x) in enumerate((y, x) for y in corners for x in corners):
    masks[k, y:y + size, x:x + size] = True
  return masks


def occlude(images: np.ndarray, masks: np.ndarray, fill: np.ndarray | float) -> np.ndarray:
  """All occluded versions: (N, H, W, C), (K, H, W) -> (N, K, H, W, C).

  `fill` is a scalar or a per-channel (C,) value.
  """
  images = np.asarray(images, np.float32)
  chex.assert_rank(images, 4)
  m = np.asarray(masks, bool)[None, :, :, :, None]
  fill = np.broadcast_to(np.asarray(fill, np.float32), (images.shape[-1],))
  return np.where(m, fill, images[:, None]).astype(np.float32)


def training_fill(train_images: np.ndarray) -> np.ndarray:
  """The per-channel mean of all training pixels (C,), accumulated in float64."""
  train_images = np.asarray(train_images)
  chex.assert_rank(train_images, 4)
  return train_images.mean(axis=(0, 1, 2), dtype=np.float64).astype(np.float32)


def cladec_relevance(recon: np.ndarray, recon_occluded: np.ndarray,
                     masks: np.ndarray) -> np.ndarray:
  """R(O) = sum over the square of the squared change of the reconstruction.

  Args:
    recon: (N, H, W, C) reconstructions of the unoccluded images.
    recon_occluded: (N, K, H, W, C) reconstructions of the occluded images.
    masks: (K, H, W) bool.

  Returns:
    (N, K) float32.
  """
  d = np.square(np.asarray(recon_occluded, np.float64) - np.asarray(recon, np.float64)[:, None])
  d = d.sum(-1)  # channels
  return np.einsum("nkhw,khw->nk", d, np.asarray(masks, np.float64)).astype(np.float32)


def map_relevance(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
  """R(O) = sum of a per-pixel map over the square: (N, H, W), (K, H, W) -> (N, K)."""
  maps = np.asarray(maps, np.float64)
  chex.assert_rank(maps, 3)
  return np.einsum("nhw,khw->nk", maps, np.asarray(masks, np.float64)).astype(np.float32)


def gradcam_pixel_maps(gradcam_fn: Callable, model, variables, images: np.ndarray,
                       targets: np.ndarray, layer: str, layer_shape: Sequence[int],
                       batch_size: int = 64) -> np.ndarray:
  """GradCAM maps at `layer`, upsampled (bilinear) and normalised to [0, 1]: (N, H, W).

  A layer without spatial extent (vector or 1x1) gives all-zero maps (every
  square ties) without calling `gradcam_fn`.

  Args:
    gradcam_fn: `(model, variables, x, target, layer) -> (N, h, w)`, e.g.
      `attribution.gradcam`.
    model, variables: the classifier.
    images: (N, H, W, C).
    targets: (N,) int classes to explain (e.g. the predictions).
    layer: tap name.
    layer_shape: per-image shape of the layer's activations.
    batch_size: images per call.
  """
  images = np.asarray(images, np.float32)
  n, h, w, _ = images.shape
  if not has_spatial_extent(layer_shape):
    return np.zeros((n, h, w), np.float32)
  out = []
  for start in range(0, n, batch_size):
    x = images[start:start + batch_size]
    t = np.asarray(targets[start:start + batch_size], np.int32)
    out.append(np.asarray(gradcam_fn(model, variables, jnp.asarray(x), jnp.asarray(t), layer)))
  maps = jnp.asarray(np.concatenate(out, axis=0), jnp.float32)
  chex.assert_rank(maps, 3)
  maps = jax.image.resize(maps, (n, h, w), "bilinear")
  flat = maps.reshape(n, -1)
  lo = flat.min(1)[:, None, None]
  hi = flat.max(1)[:, None, None]
  rng = hi - lo
  return np.asarray(jnp.where(rng > 0, (maps - lo) / jnp.where(rng > 0, rng, 1.0), 0.0),
                    np.float32)


def has_spatial_extent(shape: Sequence[int]) -> bool:
  """Whether a per-sample tap shape is (h, w, c) with h * w > 1."""
  return len(shape) == 3 and int(shape[0]) * int(shape[1]) > 1


def gradcam_layer(layer_names: Sequence[str], shapes: Mapping[str, Sequence[int]],
                  layer: str) -> str:
  """The tap GradCAM explains `layer` at: itself if it has spatial extent, else the last
  tap before it (in model order) that has.

  Args:
    layer_names: the model's taps, input to output.
    shapes: {tap: per-sample shape}.
    layer: a name in `layer_names`.

  Raises:
    ValueError: an unknown layer, or no tap with spatial extent at or below it.
  """
  names = list(layer_names)
  if layer not in names:
    raise ValueError(f"unknown layer {layer!r}; taps: {names}")
  for name in reversed(names[:names.index(layer) + 1]):
    if has_spatial_extent(shapes[name]):
      return name
  raise ValueError(f"no tap at or below {layer!r} has spatial extent for GradCAM "
                   f"(shapes {[tuple(shapes[n]) for n in names]})")


def pick_squares(relevance: np.ndarray, priority: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Indices of the least and most relevant square per image, ties by `priority`.

  Args:
    relevance: (N, K).
    priority: (N, K) distinct random numbers; among tied squares the one with
      the highest priority is taken (for both the min and the max).

  Returns:
    (argmin (N,), argmax (N,)) int.
  """
  relevance = np.asarray(relevance)
  chex.assert_equal_shape([relevance, priority])
  lo = relevance.min(1, keepdims=True)
  hi = relevance.max(1, keepdims=True)
  p = np.asarray(priority, np.float64)
  i_min = np.where(relevance == lo, p, -np.inf).argmax(1)
  i_max = np.where(relevance == hi, p, -np.inf).argmax(1)
  return i_min, i_max


def occlusion_accuracy(predict_fn: Callable[[np.ndarray], np.ndarray],
                       occluded: np.ndarray, labels: np.ndarray, i_min: np.ndarray,
                       i_max: np.ndarray) -> dict[str, float]:
  """Accuracy of the classifier with the least / most relevant square occluded.

  Args:
    predict_fn: (N, H, W, C) -> (N,) predicted classes.
    occluded: (N, K, H, W, C) all occluded versions.
    labels: (N,) true labels.
    i_min, i_max: (N,) chosen squares.

  Returns:
    {"acc_max", "acc_min", "delta_acc" = acc_min - acc_max}.
  """
  rows = np.arange(occluded.shape[0])
  acc_min = float((predict_fn(occluded[rows, i_min]) == labels).mean())
  acc_max = float((predict_fn(occluded[rows, i_max]) == labels).mean())
  return {"acc_max": acc_max, "acc_min": acc_min, "delta_acc": acc_min - acc_max}


def tie_break_priority(seed: int, n: int, k: int) -> np.ndarray:
  """(n, k) float64 uniform priorities for breaking ties, drawn from `(seed, 7)`.

  One draw per seed, shared by the ClaDec and GradCAM rankings of that seed
  and by the argmin and the argmax.
  """
  return np.random.default_rng((int(seed), 7)).random((n, k))


def occlusion_trial(predict_fn: Callable[[np.ndarray], np.ndarray], occluded: np.ndarray,
                    labels: np.ndarray, relevance: np.ndarray,
                    priority: np.ndarray) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
  """Occludes each image's least and most relevant square and measures the accuracy.

  Args:
    predict_fn: (M, H, W, C) -> (M,) predicted classes.
    occluded: (N, K, H, W, C) all occluded versions.
    labels: (N,) true labels.
    relevance: (N, K) relevance of each square (ClaDec or GradCAM).
    priority: (N, K) tie-break priorities (see `tie_break_priority`).

  Returns:
    ({"acc_max", "acc_min", "delta_acc"}, i_min (N,), i_max (N,)).
  """
  i_min, i_max = pick_squares(relevance, priority)
  return occlusion_accuracy(predict_fn, occluded, labels, i_min, i_max), i_min, i_max


def occlusion_study(predict_fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
                    labels: np.ndarray, occluded: np.ndarray, masks: np.ndarray,
                    gradcam_relevance: np.ndarray, seeds: Sequence[int],
                    reconstruct: Callable[[int, np.ndarray], np.ndarray] | None) -> dict:
  """One layer's occlusion trials per seed, by ClaDec relevance and by GradCAM relevance.

  Args:
    predict_fn: (M, H, W, C) -> (M,) the classifier's predicted classes.
    images: (N, H, W, C); labels: (N,) int.
    occluded: (N, K, H, W, C) from `occlude`.
    masks: (K, H, W) from `square_masks`.
    gradcam_relevance: (N, K) from `map_relevance` of the GradCAM maps.
    seeds: one trial per seed (its tie-break priorities and, for ClaDec, its
      decoder).
    reconstruct: `(seed_index, images (M, H, W, C)) -> (M, H, W, C)` ClaDec
      reconstructions, or None when there is no trained decoder.

  Returns:
    {"cladec": [accuracies per seed] (empty without `reconstruct`),
     "gradcam": [accuracies per seed], "example": the first seed's (images,
     recon, occluded, recon_occluded, i_min, i_max) or None}; accuracies are
    `occlusion_accuracy` dicts.
  """
  chex.assert_rank(occluded, 5)
  n, k = occluded.shape[:2]
  chex.assert_shape([images, gradcam_relevance], [(n, *occluded.shape[2:]), (n, k)])
  shape = occluded.shape[2:]
  out = {"cladec": [], "gradcam": [], "example": None}
  for i, seed in enumerate(seeds):
    priority = tie_break_priority(seed, n, k)
    if reconstruct is not None:
      recon = reconstruct(i, images)
      recon_occ = reconstruct(i, occluded.reshape((n * k,) + shape)).reshape((n, k) + shape)
      accs, i_min, i_max = occlusion_trial(predict_fn, occluded, labels,
                                           cladec_relevance(recon, recon_occ, masks), priority)
      out["cladec"].append(accs)
      if i == 0:
        out["example"] = (images, recon, occluded, recon_occ, i_min, i_max)
    out["gradcam"].append(occlusion_trial(predict_fn, occluded, labels, gradcam_relevance,
                                          priority)[0])
  return out
