"""The concept paper's whole evaluation for one classifier and one layer.

`run_concepts_evaluation(config, workdir, model, variables, dataset)` runs on the split
``config.split`` of `dataset` (default: test) a list of one-way stages: compute (`methods`)
-> results -> rows (`evaluators.concepts`) -> files (`report`):

1. :func:`setup`: every configuration check, before anything long (`evaluate` runs them
   before restoring the classifier: :func:`validate_config`); 2. :func:`predict`: the
   model's argmax per image (labels are ignored);
3. :func:`class_concepts`: per class, DeepLift + SmoothGrad on the images predicted as the
   class (split over the ``num_devices`` mesh); score-scaled pixel vectors (batched NMF per
   :func:`nmf_chunk` classes, within ``memory_budget_bytes`` per device) and raw vectors
   above ``contrast_threshold`` x max; 4. :func:`train_contrast`: pairwise classifiers for
   all pairs of classes (class rows over the mesh, in blocks within the budget);
5. :func:`pair_matrices`, :func:`finish_nmf`: contrast matrices of ``pairs_to_plot``,
   factorised with the classes left from step 3; 6. :func:`search_crops`: every concept's
   top-m crops, one streamed search; 7. :func:`stitch_test` (Tables 1/2); 8.
   :func:`contrast_pairs` (stitched contrast concepts, bias probe, Table 4); 9.
   :func:`shift_test` (Table 3); 10. :func:`evaluate_results`, `report.write_outputs`, and
   the run summary of health problems (`evaluators.concepts_health`), logged as warnings.

Failures are per class / per pair: the row says why, summaries count them, the run goes on;
configuration errors are raised by :func:`setup`. Jitted functions take the variables as a
traced argument (the `Split` is static): a new checkpoint reuses every compilation.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Callable, Hashable, Mapping, NamedTuple, Sequence

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxconcepts import report
from jaxconcepts import utils
from jaxconcepts import data as data_lib
from jaxconcepts.evaluators import concepts as ev
from jaxconcepts.evaluators import concepts_health
from jaxconcepts.evaluators import health
from jaxconcepts.methods import concepts as cl
from jaxconcepts.methods import contrast as ct
from jaxconcepts.methods import crops as crops_lib
from jaxconcepts.models import split as split_lib
from jaxconcepts.programs import classifier
from jaxconcepts.programs import config_utils
from jaxconcepts.train import distributed
from jaxconcepts.utils import check_choice, check_int

# The errors that mark one class as failed (the attribution's input checks);
# anything else is a bug and stops the run.
ATTRIBUTION_ERRORS = (ValueError, TypeError)


# ---------------------------------------------------------------------------
# 1. Setup: configuration checks.


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
  """What every stage reads: the config, the model and the checked settings.

  Attributes:
    config: the concepts config (read where used).
    model, variables: the classifier and its variables (traced in every jitted function).
    split: the model cut at the layer (a static argument).
    images: (N, H, W, C) float32, the split explained and searched.
    classes, pairs: the classes explained; the pairs (A, B) for contrast.
    offsets: the shifting test's offsets.
    info: layer, shapes, geometry, layout, names, noise std and blank.
    key: the run's PRNG key (attribution noise, NMF init).
    truth: the split's planted parts (None: the data set has none).
    mesh: the devices splitting images / classes (``num_devices``; None: one device).
  """
  config: ml_collections.ConfigDict
  model: nn.Module
  variables: Any
  split: split_lib.Split
  images: np.ndarray
  classes: tuple[int, ...]
  pairs: tuple[tuple[int, int], ...]
  offsets: tuple[float, ...]
  info: ev.RunInfo
  key: jax.Array
  truth: ev.PartTruth | None = None
  mesh: Any = None

  @property
  def k(self) -> int:
    """The number of concepts."""
    return int(self.config.n_concepts)


def _pair_list(config: ml_collections.ConfigDict, num_classes: int) -> tuple[tuple[int, int], ...]:
  out = []
  for p in config.pairs_to_plot or ():
    if len(p) != 2:
      raise ValueError(f"pairs_to_plot entries must be (A, B), got {p!r}")
    a, b = int(p[0]), int(p[1])
    if not (0 <= a < num_classes and 0 <= b < num_classes) or a == b:
      raise ValueError(f"pairs_to_plot entry {(a, b)} must be two different classes "
                       f"in [0, {num_classes})")
    out.append((a, b))
  return tuple(out)


def _split_images(config: ml_collections.ConfigDict, dataset: data_lib.Dataset
                  ) -> tuple[np.ndarray, ev.PartTruth | None]:
  """The split's images (N, H, W, C) float32 and its planted parts, if any."""
  images = dataset.test_images if config.split == "test" else dataset.train_images
  cut = slice(None if config.max_images is None else int(config.max_images))
  if images[cut].shape[0] == 0:
    raise ValueError(f"the {config.split} split has no images")
  parts = getattr(dataset, "parts", None)
  truth = None if parts is None else ev.PartTruth(
      parts.split(config.split)[cut], np.asarray(parts.class_parts), tuple(parts.names))
  return np.asarray(images[cut], np.float32), truth


def _data_settings(config: ml_collections.ConfigDict, dataset: data_lib.Dataset
                   ) -> tuple[float, float | None, tuple[float, ...]]:
  """(SmoothGrad std in [0, 1] pixels, the data std it was scaled by, the blank colour):
  the paper's std 0.25 and "zeros" are normalised units = 0.25 x data std, mean colour."""
  train = np.asarray(dataset.train_images, np.float32)
  data_std = float(train.std()) if config.noise_std_units == "data_std" else None
  noise = float(config.noise_std) * (data_std if data_std is not None else 1.0)
  blank = train.mean(axis=(0, 1, 2)) if config.bias_blank == "mean" else np.zeros(train.shape[-1])
  return noise, data_std, tuple(float(v) for v in blank)


def _check_values(config: ml_collections.ConfigDict) -> None:
  """Range checks of the config's numbers and choices (no model or data needed)."""
  for key in ("n_concepts", "n_crops", "n_images_per_class", "pool_size", "nmf_max_iter",
              "epochs", "attribution_batch_size", "eval_batch_size", "crop_batch_size",
              "shift_batch_size", "shift_directions_per_call", "class_chunk"):
    check_int(config[key], key)
  check_int(config.n_samples, "n_samples", 0)
  check_int(config.seed, "seed", 0)
  for key, low in (("max_images", 1), ("num_devices", 0)):  # None: all images / one device
    if config.get(key) is not None:
      check_int(config[key], key, low)
  check_choice("score_order", config.score_order, cl.SCORE_ORDERS)
  check_choice("split", config.split, ("test", "train"))
  check_choice("noise_std_units", config.noise_std_units, ("data_std", "pixels"))
  check_choice("bias_blank", config.bias_blank, ("mean", "black"))
  if not config.shift_offsets:
    raise ValueError("shift_offsets is empty")
  if not 0.0 <= (threshold := float(config.contrast_threshold)) <= 1.0:
    raise ValueError(f"contrast_threshold must lie in [0, 1], got {threshold}")
  check_choice("stitch layout", config.stitch_layout, crops_lib.STITCH_LAYOUTS)


def _check_model(config: ml_collections.ConfigDict, model: nn.Module,
                 image_shape: tuple[int, ...], num_classes: int, variables: Any = None):
  """(split, classes, pairs, layer shape, crop geometry): the config checked against the
  model (shapes only, no FLOPs; `variables` None: no weights needed)."""
  s = split_lib.split(model, config.layer)
  classes = config_utils.class_list(config.classes, num_classes=num_classes)
  pairs = _pair_list(config, num_classes)
  layer_shape = s.shape(image_shape, variables)
  geometry = crops_lib.crop_geometry(image_shape, layer_shape, int(config.pool_size), s.layer)
  k = int(config.n_concepts)
  if k > layer_shape[-1]:
    raise ValueError(f"n_concepts={k} must lie in [1, {layer_shape[-1]}] (the channels of "
                     f"{s.layer})")
  nmf_chunk(config, layer_shape, geometry)  # a budget too small for one class: an error now
  return s, classes, pairs, layer_shape, geometry


def nmf_chunk(config: ml_collections.ConfigDict, layer_shape: Sequence[int], geometry) -> int:
  """Classes per NMF call (<= class_chunk, in memory_budget_bytes); too small: ValueError."""
  n, budget, k = config.get("num_devices"), config.get("memory_budget_bytes"), config.n_concepts
  devices = 1 if n is None else (int(n) or jax.device_count())  # None: one device; 0: all
  cl.crop_chunk_size(k, config.crop_batch_size, geometry.cells, config.n_crops, budget, devices)
  return cl.nmf_chunk_size(int(config.n_images_per_class), layer_shape, int(k),
                           int(config.class_chunk), budget, devices)


def validate_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Every check before any restore or computation, against the classifier's config.json
  (its architecture, classes and image shape; a model without weights).

  Raises:
    ValueError / FileNotFoundError: one line naming the bad value or missing file.
  """
  config_utils.normalize_layers(config)
  config.classes = config_utils.class_list(config.classes)
  _check_values(config)
  if str(config.checkpoint) != "latest":
    raise ValueError(f"checkpoint {str(config.checkpoint)!r} is not supported; only 'latest' is")
  clf_dir = config.classifier_workdir or workdir
  classifier.check_trained_workdir(clf_dir)
  info = utils.read_json(os.path.join(clf_dir, classifier.CONFIG_FILE))["classifier"]
  model = classifier.build_model(info["arch"], info["num_classes"], info["image_shape"])
  _check_model(config, model, tuple(info["image_shape"]), int(info["num_classes"]))


def _class_names(dataset: data_lib.Dataset) -> tuple[str, ...]:
  names = getattr(dataset, "class_names", None)
  return tuple(names[c] if names is not None and c < len(names) else str(c)
               for c in range(int(dataset.num_classes)))


def setup(config: ml_collections.ConfigDict, model: nn.Module, variables: Any,
          dataset: data_lib.Dataset) -> Run:
  """Checks the config against the model and data; resolves layer and layout.

  Raises:
    ValueError: an unknown layer, a layer without spatial extent, k larger than the channels,
      bad classes / pairs / offsets / choices, a budget too small for one class.
  """
  _check_values(config)
  images, truth = _split_images(config, dataset)
  s, classes, pairs, layer_shape, geometry = _check_model(
      config, model, images.shape[1:], int(dataset.num_classes), variables)
  layout = crops_lib.choose_layout(config.stitch_layout, geometry, int(config.n_concepts),
                                   images.shape[-1], model, variables)
  info = ev.RunInfo(s.layer, tuple(layer_shape), images.shape[0], geometry, layout,
                    _class_names(dataset), *_data_settings(config, dataset))
  logging.info("concepts: layer %s %s, crops %s (pool %d, grid %s), stitch layout %s, %d "
               "classes, %d images in the %s split", s.layer, layer_shape, geometry.crop_hw,
               geometry.pool, geometry.grid_hw, layout, len(classes), len(images), config.split)
  n = config.get("num_devices")  # None: one device (as placed); 0: all
  mesh = None if n is None else distributed.global_mesh(int(n))
  return Run(config, model, variables, s, images, classes, pairs,
             tuple(float(t) for t in config.shift_offsets), info,
             jax.random.PRNGKey(int(config.seed)), truth, mesh)


# ---------------------------------------------------------------------------
# 2. - 3. Predictions; attribution, NMF matrices and contrast vectors per class.


def predict(run: Run) -> np.ndarray:
  """(N,) int32: the model's argmax for every image of the split."""
  t0 = time.time()
  logits = split_lib.predict_logits(run.model, run.variables, run.images,
                             int(run.config.eval_batch_size))
  preds = logits.argmax(-1).astype(np.int32)
  logging.info("concepts: predicted %d images in %.1fs; per-class counts %s", run.images.shape[0],
               time.time() - t0, np.bincount(preds, minlength=len(run.info.names)).tolist())
  return preds


def _attribute(run: Run, c: int, idx: np.ndarray, attribution_fn: Callable[..., Any]
               ) -> tuple[jax.Array, jax.Array]:
  """Activations and attributions (n, h, w, c) of the class's n images."""
  config = run.config
  n_per_class = int(config.n_images_per_class)
  # Pad to n_per_class images (repeats of the first): one compilation for all classes.
  x = run.images[np.concatenate([idx, np.full(n_per_class - idx.size, idx[0])])]
  acts = jnp.asarray(split_lib.encode_images(run.split, run.variables, x,
                                             int(config.eval_batch_size)))[:idx.size]
  attr = jnp.asarray(attribution_fn(
      run.model, run.variables, jnp.asarray(x), np.full((n_per_class,), c, np.int32),
      run.split.layer, n_samples=int(config.n_samples), std=run.info.noise_std,
      baseline=float(config.baseline), key=jax.random.fold_in(run.key, c),
      batch_size=int(config.attribution_batch_size)))[:idx.size]
  if attr.shape != acts.shape:
    raise ValueError(f"attribution shape {attr.shape} != activation shape {acts.shape}")
  return acts, attr


def _explain_class(run: Run, c: int, preds: np.ndarray, attribution_fn: Callable[..., Any]
                   ) -> tuple[ev.ClassResult, np.ndarray | None, np.ndarray | None]:
  """(result, NMF matrix or None, contrast vectors (n, c) or None) of one class."""
  config = run.config
  idx = cl.class_image_indices(preds, c, int(config.n_images_per_class))
  if idx.size == 0:
    logging.warning("concepts: class %d (%s) skipped: no image predicted", c, run.info.names[c])
    return ev.ClassResult(c, idx, "failed: the model predicts this class for no image"), None, None
  try:
    acts, attr = _attribute(run, c, idx, attribution_fn)
  except ATTRIBUTION_ERRORS as e:
    logging.exception("concepts: class %d attribution failed", c)
    return (ev.ClassResult(c, idx, f"failed: attribution error: {type(e).__name__}: {e}"),
            None, None)
  mat = cl.concept_matrix(acts, attr, config.score_order)
  n_vec = cl.count_vectors(mat)
  cvec = ct.contrast_vectors(acts, attr, float(config.contrast_threshold), config.score_order)
  status = "ok"
  if n_vec < run.k:
    status = (f"failed: only {n_vec} pixel vector(s) with a positive score, "
              f"fewer than n_concepts={run.k}")
    logging.warning("concepts: class %d: %s", c, status)
  result = ev.ClassResult(c, idx, status, n_vec, int(cvec.shape[0]))
  return result, (np.asarray(mat) if n_vec >= run.k else None), cvec


def _factorise(run: Run, mats: Mapping[Hashable, np.ndarray],
               call: int) -> dict[Hashable, cl.ConceptSet | str]:
  """The run's `call`-th NMF (chunked, on the mesh): {class / ("pair", A, B): concepts / error}."""
  t0, config = time.time(), run.config
  names = {i: f"pair {i[1:]}" if isinstance(i, tuple) else f"class {i}" for i in mats}
  out = cl.extract_concepts_chunked(
      mats, run.k, names=names, key=jax.random.fold_in(run.key, 10**6 + call),
      fallback_key=int(config.seed), init=config.nmf_init, max_iter=int(config.nmf_max_iter),
      tol=float(config.nmf_tol), mesh=run.mesh,
      memory_budget_bytes=config.get("memory_budget_bytes"))
  logging.info("concepts: NMF of %d matrices in %.1fs", len(mats), time.time() - t0)
  return out


class ClassStage(NamedTuple):
  """Step 3: `classes` in order (no concepts yet); `vectors` {class: (n, c) contrast vectors};
  `factorised` {class: concepts or NMF error}; `pending` {class: NMF matrix}; `nmf_calls`."""
  classes: tuple[ev.ClassResult, ...]
  vectors: dict[int, np.ndarray]
  factorised: dict[Hashable, cl.ConceptSet | str]
  pending: dict[Hashable, np.ndarray]
  nmf_calls: int


def class_concepts(run: Run, preds: np.ndarray, attribution_fn: Callable[..., Any]) -> ClassStage:
  """Attribution, contrast vectors and NMF matrices per class; NMF per chunk."""
  t0 = time.time()
  results, vectors, done, pending, calls = [], {}, {}, {}, 0
  for ci, c in enumerate(run.classes):
    tc = time.time()
    result, mat, cvec = _explain_class(run, c, preds, attribution_fn)
    results.append(result)
    if cvec is not None and cvec.shape[0]:
      vectors[c] = cvec
    if mat is not None:
      pending[c] = mat
    logging.info("concepts: class %d/%d (%s): %s, %d images, %s scored vectors, %s contrast "
                 "vectors, %.1fs", ci + 1, len(run.classes), run.info.names[c], result.status,
                 result.image_idx.size, result.n_vectors, result.n_contrast_vectors,
                 time.time() - tc)
    if len(pending) >= nmf_chunk(run.config, run.info.layer_shape, run.info.geometry):
      calls += 1
      done.update(_factorise(run, pending, calls))
      pending = {}
  logging.info("concepts: attributions of %d classes in %.1fs", len(run.classes), time.time() - t0)
  return ClassStage(tuple(results), vectors, done, pending, calls)


# ---------------------------------------------------------------------------
# 4. - 5. Pairwise classifiers; contrast matrices; the last NMF call.


def train_contrast(run: Run, stage: ClassStage) -> ct.ClassPairs | None:
  """One logistic classifier per pair of classes with contrast vectors (None: < 2)."""
  ok = tuple(c for c in run.classes if c in stage.vectors)
  if len(ok) < 2:
    return None
  t0 = time.time()
  result = ct.train_contrast([stage.vectors[c] for c in ok], epochs=int(run.config.epochs),
                             lr=float(run.config.lr), mesh=run.mesh,
                             memory_budget_bytes=run.config.get("memory_budget_bytes"))
  logging.info("concepts: %d pairwise classifiers in %.1fs (mean train acc %.3f)",
               len(result.pairs), time.time() - t0, float(np.mean(result.accuracy)))
  return ct.ClassPairs(result, ok)


def pair_matrices(run: Run, classes: tuple[ev.ClassResult, ...], contrast: ct.ClassPairs | None
                  ) -> tuple[dict[Hashable, np.ndarray], dict[tuple[int, int], str]]:
  """Contrast matrices {("pair", A, B): (n, c)} of the chosen pairs, and why others failed."""
  idx = {r.cls: r.image_idx for r in classes}
  mats, fails = {}, {}
  for a, b in run.pairs:
    if contrast is None or a not in contrast.classes or b not in contrast.classes:
      fails[(a, b)] = "a class of the pair was not evaluated or has no contrast vectors"
      continue
    w, bias = contrast.hyperplane(a, b)
    h_a = split_lib.encode_images(run.split, run.variables, run.images[idx[a]],
                           int(run.config.eval_batch_size))
    mat = np.asarray(ct.contrast_matrix(jnp.asarray(h_a), jnp.asarray(w), bias))
    n_vec = cl.count_vectors(mat)
    if n_vec < run.k:
      fails[(a, b)] = (f"only {n_vec} pixel vector(s) on A's side of the hyperplane, "
                       f"fewer than n_concepts={run.k}")
      continue
    mats[("pair", a, b)] = mat
  return mats, fails


def _with_nmf(r: ev.ClassResult, res: cl.ConceptSet | str | None) -> ev.ClassResult:
  if res is None:
    return r
  return r._replace(status=f"failed: {res}") if isinstance(res, str) else r._replace(concepts=res)


def finish_nmf(run: Run, stage: ClassStage, pair_mats: Mapping[Hashable, np.ndarray]
               ) -> tuple[tuple[ev.ClassResult, ...], dict[tuple[int, int], cl.ConceptSet],
                          dict[tuple[int, int], str]]:
  """The last NMF call (leftover classes, then the pairs); concepts attached.

  Returns:
    (classes with their concepts or NMF errors, {pair: concepts}, {pair: NMF error}).
  """
  done = dict(stage.factorised)
  pending = {**stage.pending, **pair_mats}
  if pending:
    done.update(_factorise(run, pending, stage.nmf_calls + 1))
  classes = tuple(_with_nmf(r, done.get(r.cls)) for r in stage.classes)
  pair_sets = {key[1:]: done[key] for key in pair_mats if not isinstance(done[key], str)}
  fails = {key[1:]: done[key] for key in pair_mats if isinstance(done[key], str)}
  return classes, pair_sets, fails


# ---------------------------------------------------------------------------
# 6. - 9. Crops, stitched test, contrast pairs, shifting test.


def search_crops(run: Run, preds: np.ndarray, classes: tuple[ev.ClassResult, ...],
                 pair_sets: Mapping[tuple[int, int], cl.ConceptSet]
                 ) -> dict[Hashable, crops_lib.ConceptCrops]:
  """One search over the split for every concept; {class or (A, B): crops}."""
  sets = {r.cls: (r.concepts.basis, r.cls) for r in classes if r.concepts is not None}
  sets.update((p, (pair_sets[p].basis, p[0])) for p in run.pairs if p in pair_sets)
  if not sets:
    return {}
  t0 = time.time()
  crops = cl.search_concept_crops_chunked(  # chunks of sets within memory_budget_bytes
      run.split, run.variables, run.images, sets, int(run.config.n_crops), run.info.geometry,
      predictions=preds, fill=float(run.config.stitch_fill), mesh=run.mesh,
      batch_size=int(run.config.crop_batch_size),
      memory_budget_bytes=run.config.get("memory_budget_bytes"))
  logging.info("concepts: crop search over %d images for %d concepts in %.1fs",
               run.images.shape[0], run.k * len(sets), time.time() - t0)
  return crops


def _stitch(run: Run, top1: np.ndarray, hits: Sequence[crops_lib.CropHits]
            ) -> tuple[np.ndarray, bool]:
  """Stitched images of (B, k, ch, cw, C) top crops (B hits of k concepts), in the run's layout."""
  positions = (np.stack([h.row[:, 0] for h in hits]), np.stack([h.col[:, 0] for h in hits]))
  return crops_lib.stitched_images(top1, run.info.layout, run.info.geometry, model=run.model,
                                   variables=run.variables, positions=positions,
                                   fill=float(run.config.stitch_fill))


def _predict_probs(run: Run, images: np.ndarray) -> np.ndarray:
  """(n, classes) softmax of the model for (n, H, W, C) images."""
  return cl.predict_probs(run.model, run.variables, images, int(run.config.eval_batch_size))


def stitch_test(run: Run, classes: tuple[ev.ClassResult, ...],
                crops: Mapping[Hashable, crops_lib.ConceptCrops]) -> ev.StitchResult | None:
  """Each class's top-1 crops stitched and predicted (None: no class has concepts)."""
  ok = tuple(r.cls for r in classes if r.concepts is not None)
  if not ok:
    return None
  images, resized = {}, False
  for mode, _ in ev.STITCH_MODES:
    images[mode], resized = _stitch(run, np.stack([crops[c].crops[mode][:, 0] for c in ok]),
                                    [crops[c].hits[mode] for c in ok])
  both = _predict_probs(run, np.concatenate([images["all"], images["exclude"]]))
  probs = {"all": both[:len(ok)], "exclude": both[len(ok):]}
  missing = {mode: np.array([int((crops[c].hits[mode].image[:, 0] < 0).sum()) for c in ok])
             for mode, _ in ev.STITCH_MODES}
  return ev.StitchResult(ok, images, probs, missing, resized)


def _contrast_pair(run: Run, preds: np.ndarray, images_b: np.ndarray, a: int, b: int,
                   concepts: cl.ConceptSet, cc: crops_lib.ConceptCrops) -> ev.PairResult:
  """The stitched test and the bias probe of one pair's contrast concepts."""
  stitched, _ = _stitch(run, cc.crops["all"][None, :, 0], [cc.hits["all"]])
  probs = _predict_probs(run, stitched)[0]
  src, from_a, patches = ct.probe_crops(cc.hits["all"], cc.crops["all"], cc.hits["only"],
                                        cc.crops["only"])
  found = np.flatnonzero(src >= 0)
  probe = (ct.bias_probe(functools.partial(_predict_probs, run), images_b, patches[found],
                         a, b, position=run.config.bias_position,
                         blank=np.asarray(run.info.blank)) if found.size else [])
  by_concept = dict(zip(found.tolist(), probe))
  return ev.PairResult(
      a, b, "ok", concepts, cc.crops["all"], probs, tuple(int(i) for i in src),
      tuple(int(preds[i]) if i >= 0 else None for i in src), tuple(bool(f) for f in from_a),
      tuple(by_concept.get(j) for j in range(src.size)))


def contrast_pairs(run: Run, preds: np.ndarray, classes: tuple[ev.ClassResult, ...],
                   pair_sets: Mapping[tuple[int, int], cl.ConceptSet],
                   fails: Mapping[tuple[int, int], str],
                   crops: Mapping[Hashable, crops_lib.ConceptCrops]) -> tuple[ev.PairResult, ...]:
  """Per chosen pair: the contrast concepts' stitched test and bias probe."""
  t0 = time.time()
  idx = {r.cls: r.image_idx for r in classes}
  out = []
  for a, b in run.pairs:
    if (a, b) not in pair_sets:
      why = fails.get((a, b), "not run")
      logging.warning("concepts: contrast pair (%d, %d): %s", a, b, why)
      out.append(ev.PairResult(a, b, why))
      continue
    out.append(_contrast_pair(run, preds, run.images[idx[b]], a, b, pair_sets[(a, b)],
                              crops[(a, b)]))
  logging.info("concepts: %d contrast pairs (stitched test, bias probe) in %.1fs",
               len(run.pairs), time.time() - t0)
  return tuple(out)


def _shift_from(run: Run, b: int, idx_b: np.ndarray, contrast: ct.ClassPairs) -> ev.ShiftResult:
  """The shifting test from class B's images toward every other contrast class."""
  config = run.config
  h_b = split_lib.encode_images(run.split, run.variables, run.images[idx_b],
                         int(config.eval_batch_size))
  todo = tuple(a for a in run.classes if a != b and a in contrast.classes)
  dirs = np.stack([contrast.hyperplane(a, b)[0] for a in todo])
  stats = ct.shifting_stats(run.split, run.variables, h_b, dirs, run.offsets,
                            int(config.shift_batch_size), int(config.shift_directions_per_call),
                            targets=todo)
  base = cl.softmax(split_lib.head_logits(run.split, run.variables, h_b,
                                          int(config.eval_batch_size)))
  acc = np.array([contrast.train_acc(a, b) for a in todo])
  return ev.ShiftResult(b, todo, stats.mean_probs, stats.argmax, base.mean(axis=0), acc,
                        int(idx_b.size), stats.target_probs, base)


def shift_test(run: Run, classes: tuple[ev.ClassResult, ...],
               contrast: ct.ClassPairs | None) -> dict[int, ev.ShiftResult]:
  """{B: the shifting test from B} for every class with contrast vectors."""
  if contrast is None:
    return {}
  t0, out = time.time(), {}
  for r in classes:
    if r.cls in contrast.classes:
      out[r.cls] = _shift_from(run, r.cls, r.image_idx, contrast)
      logging.info("concepts: shifting test from class %d (%s) toward %d classes, %.1fs",
                   r.cls, run.info.names[r.cls], len(out[r.cls].targets), time.time() - t0)
  return out


# ---------------------------------------------------------------------------
# 10. Rows (evaluators) and files (report).


def evaluate_results(run: Run, classes: tuple[ev.ClassResult, ...],
                     crops: Mapping[Hashable, crops_lib.ConceptCrops],
                     stitch: ev.StitchResult | None, pairs: tuple[ev.PairResult, ...],
                     shifts: Mapping[int, ev.ShiftResult]
                     ) -> list[report.TableSet | report.Figure]:
  """Every table and figure of the run, in the order they are written."""
  info = run.info
  class_crops = {r.cls: crops[r.cls].crops["all"] for r in classes if r.concepts is not None}
  out = [*ev.concept_figures(info, class_crops),
         *([ev.stitched_figure(info, stitch)] if stitch is not None else []),
         ev.stitch_test(run.config, info, classes, stitch, class_crops),
         *ev.contrast_figures(info, pairs), ev.bias_probe(run.config, info, pairs),
         ev.shift_test(run.config, info, classes, shifts, run.offsets),
         *([ev.planted_parts(run.config, info, run.truth, classes, crops, run.pairs)]
           if run.truth is not None else [])]
  return out + [concepts_health.run_summary(out)]  # last: every table's health problems


def run_concepts_evaluation(config: ml_collections.ConfigDict, workdir: str,
                            model: nn.Module, variables: Any, dataset: data_lib.Dataset, *,
                            attribution_fn: Callable[..., Any] | None = None) -> dict[str, Any]:
  """Runs the concept paper's evaluation; writes results and figures.

  Args:
    config: a concepts config (see configs/concepts.py).
    workdir: output folder (workdir/results, workdir/figures).
    model, variables: the classifier (split protocol) and its variables.
    dataset: a `data.Dataset` (with `parts`: the planted-parts table too).
    attribution_fn: `layer_deeplift_smoothgrad`-compatible; default the real one.

  Returns:
    {"layer", "stitch_test": {"table1", "table2"}, "shift_test": Table 3, "bias_probe": rows,
    "failures": {"classes": {class: status}, "pairs": n_failed}, "planted_parts": summary
    rows or None, "files", "wall_s"}.
  """
  t0 = time.time()
  run = setup(config, model, variables, dataset)
  attribution_fn = attribution_fn or cl.default_attribution_fn(run.mesh)
  preds = predict(run)
  stage = class_concepts(run, preds, attribution_fn)
  contrast = train_contrast(run, stage)
  pair_mats, pair_fails = pair_matrices(run, stage.classes, contrast)
  classes, pair_sets, nmf_fails = finish_nmf(run, stage, pair_mats)
  crops = search_crops(run, preds, classes, pair_sets)
  stitch = stitch_test(run, classes, crops)
  pairs = contrast_pairs(run, preds, classes, pair_sets, {**pair_fails, **nmf_fails}, crops)
  shifts = shift_test(run, classes, contrast)
  outputs = evaluate_results(run, classes, crops, stitch, pairs, shifts)
  files = report.write_outputs(workdir, outputs,
                               extra={"config": report.to_jsonable(config.to_dict())})
  tables = {t.stem: t.tables for t in outputs if isinstance(t, report.TableSet)}
  table1 = tables["stitch_test"]["table 1 (crops from all images)"][0]
  table2 = tables["stitch_test"]["table 2 (excluding the class)"][0]
  table3 = tables["shift_test"]["table 3"][0]
  wall = time.time() - t0
  logging.info("concepts: done in %.1fs; table 1 %s; table 2 %s; table 3 %s", wall, table1,
               table2, table3)
  health.log_warnings("concepts", tables["summary"]["summary"])
  return {"layer": run.split.layer, "stitch_test": {"table1": table1, "table2": table2},
          "shift_test": table3, "bias_probe": tables["bias_probe"]["bias probe (Table 4)"],
          "failures": {"classes": {r.cls: r.status for r in classes if r.status != "ok"},
                       "pairs": table3["n_failed"]},
          "planted_parts": tables.get("planted_parts", {}).get("summary"),
          "files": files, "wall_s": wall}


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """`evaluate.py`'s entry for ``config.task == "concepts"``: returns the run's summary.

  Restores the classifier's latest checkpoint from ``classifier_workdir`` (default `workdir`),
  loads its data (or ``config.data``; TFDS: at most ``max_images`` per split, streamed) and runs
  :func:`run_concepts_evaluation`. Raises FileNotFoundError (no trained classifier: the message
  gives the command to train one) or ValueError (a bad config value, before the restore).
  """
  validate_config(config, workdir)  # before the restore (evaluate.py has run it already)
  clf_dir = config.classifier_workdir or workdir
  model, variables, clf_config, info = classifier.restore_classifier(clf_dir)
  data_config = clf_config.data if config.use_classifier_data else config.data
  logging.info("concepts: classifier %s (%s, step %s) from %s; data %s/%s", info.get("arch"),
               info.get("num_classes"), info.get("step"), clf_dir, data_config.dataset,
               data_config.source)
  dataset = classifier.load_data(data_config, config.max_images)
  os.makedirs(workdir, exist_ok=True)
  return run_concepts_evaluation(config, workdir, model, variables, dataset)
