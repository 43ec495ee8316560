"""The concept paper's whole evaluation for one classifier and one layer.

`run_concepts_evaluation(config, workdir, model, variables, dataset)` runs, on
the split ``config.split`` of `dataset` (default: test, images unseen in
training, as the paper's validation set):

1. predictions for every image (the model's argmax; labels are ignored);
2. per class (in chunks of ``config.class_chunk``): the images predicted as
   the class (up to ``n_images_per_class``), DeepLift + SmoothGrad at the
   layer, the score-scaled pixel vectors (for NMF) and the raw pixel vectors
   above ``contrast_threshold`` x max (for contrasting); then one batched NMF
   for the chunk's classes;
3. the concepts' top-m crops over the whole split (one streamed search for all
   classes, crops from all images and from images not predicted as the class),
   the stitched-image test -> ``results/stitch_test.{json,md}`` (per class,
   Table 1 = crops from all images, Table 2 = excluding the class) and
   ``figures/concepts/class_XXX.png`` (k concepts x m crops per class),
   ``figures/stitched.png``;
4. pairwise classifiers for all pairs of classes (one `train_pairwise` call),
   the shifting test for every ordered pair (B -> A) ->
   ``results/shift_test.{json,md}`` (per pair and Table 3);
5. for ``pairs_to_plot`` (ordered (A, B)): contrast concepts and their crops ->
   ``figures/contrast/A_vs_B.png``, the stitched test of the contrast concepts,
   and the bias probe (each contrast concept's top crop from an image
   predicted as A pasted into B's images) -> ``results/bias_probe.{json,md}``.

Failures are per class / per pair: a class the model predicts for no image,
a class with fewer positive pixel vectors than concepts, an attribution error,
a class without contrast vectors: the row says why, its metrics are empty, the
summaries are over the classes / pairs that ran (and count the failed ones),
and the run goes on. Configuration errors (unknown layer, a layer without
spatial extent, k larger than the channels, bad classes / pairs / offsets) are
raised before any long computation.

The attribution function is injectable (`attribution_fn`, default
`attribution.layer_deeplift_smoothgrad`), e.g. for tests with toy models.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxconcepts.methods import concepts as cl
from jaxconcepts.methods import contrast as ct
from jaxconcepts.ops import pairwise
from jaxconcepts import report
from jaxconcepts.models import split as split_lib

RESULTS_DIR = "results"
FIGURES_DIR = "figures"


def _cfg(config, key, default=None):
  return config.get(key, default) if hasattr(config, "get") else getattr(config, key, default)


def _class_list(config, num_classes: int) -> list[int]:
  classes = _cfg(config, "classes")
  if classes is None:
    return list(range(num_classes))
  classes = [int(c) for c in classes]
  bad = [c for c in classes if not 0 <= c < num_classes]
  if bad:
    raise ValueError(f"classes {bad} are out of range [0, {num_classes})")
  if len(set(classes)) != len(classes):
    raise ValueError(f"classes has duplicates: {classes}")
  if not classes:
    raise ValueError("classes is empty; use None for all classes")
  return classes


def _pair_list(config, num_classes: int) -> list[tuple[int, int]]:
  pairs = _cfg(config, "pairs_to_plot") or ()
  out = []
  for p in pairs:
    if len(p) != 2:
      raise ValueError(f"pairs_to_plot entries must be (A, B), got {p!r}")
    a, b = int(p[0]), int(p[1])
    if not (0 <= a < num_classes and 0 <= b < num_classes) or a == b:
      raise ValueError(f"pairs_to_plot entry {(a, b)} must be two different classes "
                       f"in [0, {num_classes})")
    out.append((a, b))
  return out


def _split_images(config, dataset) -> np.ndarray:
  which = _cfg(config, "split", "test")
  cl.check_choice("split", which, ("test", "train"))
  images = dataset.test_images if which == "test" else dataset.train_images
  max_images = _cfg(config, "max_images")
  if max_images is not None:
    images = images[:int(max_images)]
  if images.shape[0] == 0:
    raise ValueError(f"the {which} split has no images")
  return np.asarray(images, np.float32)


def _name(dataset, c: int) -> str:
  names = getattr(dataset, "class_names", None)
  return names[c] if names is not None and c < len(names) else str(c)


def _display(images: np.ndarray) -> np.ndarray:
  """Images with 1 or 3 channels as they are; others as grey (max over channels)."""
  images = np.asarray(images, np.float32)
  if images.shape[-1] in (1, 3):
    return images
  return images.max(axis=-1, keepdims=True)


def _softmax_np(logits):
  return np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1))


def run_concepts_evaluation(config: ml_collections.ConfigDict, workdir: str, model,
                            variables: dict, dataset, *,
                            attribution_fn: Callable[..., Any] | None = None
                            ) -> dict[str, Any]:
  """Runs the concept paper's evaluation; writes results and figures.

  Args:
    config: a concepts config (see configs/concepts.py): layer,
      n_images_per_class, n_concepts, n_crops, n_samples, noise_std, baseline,
      attribution_batch_size, score_order, contrast_threshold, epochs, lr,
      shift_offsets, classes, pairs_to_plot, stitch_layout, stitch_fill,
      pool_size, split, max_images, nmf_init, nmf_max_iter, nmf_tol,
      class_chunk, eval_batch_size, crop_batch_size, shift_batch_size,
      shift_directions_per_call,
      bias_position, bias_blank, seed.
    workdir: output folder; results go to workdir/results, figures to
      workdir/figures.
    model, variables: the classifier (split protocol) and its variables.
    dataset: a `data.Dataset`.
    attribution_fn: `layer_deeplift_smoothgrad`-compatible function; default
      the real one (imported lazily).

  Returns:
    {"stitch_test": {"table1", "table2"}, "shift_test": Table 3 summary,
     "bias_probe": rows, "failures": {...}, "files": [...], "layer",
     "wall_s"}.
  """
  t_start = time.time()
  # ---- configuration checks (before anything long) ----
  layer = split_lib.resolve_layer(model, _cfg(config, "layer"))
  images = _split_images(config, dataset)
  image_shape = images.shape[1:]
  num_classes = int(dataset.num_classes)
  classes = _class_list(config, num_classes)
  plot_pairs = _pair_list(config, num_classes)
  s = split_lib.split(model, layer)
  layer_shape = s.shape(image_shape, variables)
  pool = int(_cfg(config, "pool_size", 2))
  geometry = cl.crop_geometry(image_shape, layer_shape, pool, layer)
  channels = layer_shape[-1]
  k = int(config.n_concepts)
  if not 1 <= k <= channels:
    raise ValueError(f"n_concepts={k} must lie in [1, {channels}] (the channels of {layer})")
  n_crops = int(config.n_crops)
  if n_crops < 1:
    raise ValueError(f"n_crops must be >= 1, got {n_crops}")
  n_per_class = int(config.n_images_per_class)
  if n_per_class < 1:
    raise ValueError(f"n_images_per_class must be >= 1, got {n_per_class}")
  order = _cfg(config, "score_order", "mean_then_relu")
  cl.check_choice("score_order", order, cl.SCORE_ORDERS)
  offsets = tuple(float(t) for t in _cfg(config, "shift_offsets", ct.OFFSETS))
  if not offsets:
    raise ValueError("shift_offsets is empty")
  threshold = float(config.contrast_threshold)
  if not 0.0 <= threshold <= 1.0:
    raise ValueError(f"contrast_threshold must lie in [0, 1], got {threshold}")
  layout_cfg = _cfg(config, "stitch_layout", "auto")
  cl.check_choice("stitch layout", layout_cfg, cl.STITCH_LAYOUTS)
  fill = float(_cfg(config, "stitch_fill", 0.0))
  seed = int(_cfg(config, "seed", 0))
  eval_bs = int(_cfg(config, "eval_batch_size", 256))
  attr_bs = int(_cfg(config, "attribution_batch_size", 64))
  nmf_kw = dict(init=_cfg(config, "nmf_init", "nndsvda"),
                max_iter=int(_cfg(config, "nmf_max_iter", 200)),
                tol=float(_cfg(config, "nmf_tol", 1e-4)))
  if attribution_fn is None:
    attribution_fn = cl.default_attribution_fn()
  apply_fn = lambda x: model.apply(variables, x)  # pylint: disable=unnecessary-lambda-assignment
  layout = cl.choose_layout(layout_cfg, geometry, k, image_shape[-1], apply_fn)
  results_dir = os.path.join(workdir, RESULTS_DIR)
  figures_dir = os.path.join(workdir, FIGURES_DIR)
  os.makedirs(results_dir, exist_ok=True)
  os.makedirs(figures_dir, exist_ok=True)
  files: list[str] = []
  logging.info("concepts: layer %s %s, crops %s (pool %d, grid %s), stitch layout %s, "
               "%d classes, %d images in the %s split", layer, layer_shape, geometry.crop_hw,
               geometry.pool, geometry.grid_hw, layout, len(classes), images.shape[0],
               _cfg(config, "split", "test"))

  # ---- predictions ----
  t0 = time.time()
  jit_apply = jax.jit(apply_fn)
  jit_encode = jax.jit(lambda x: s.encode(variables, x))
  jit_head = jax.jit(lambda h: s.head(variables, h))
  logits = cl.batched_apply(jit_apply, images, eval_bs)
  preds = logits.argmax(-1).astype(np.int32)
  predict_probs = lambda x: _softmax_np(cl.batched_apply(jit_apply, x, eval_bs))  # pylint: disable=unnecessary-lambda-assignment
  logging.info("concepts: predicted %d images in %.1fs; per-class counts %s",
               images.shape[0], time.time() - t0,
               np.bincount(preds, minlength=num_classes).tolist())

  # ---- per class: attribution, NMF matrices, contrast vectors ----
  rows: dict[int, dict[str, Any]] = {}
  class_idx: dict[int, np.ndarray] = {}
  contrast_vecs: dict[int, np.ndarray] = {}
  concept_sets: dict[int, cl.ConceptSet] = {}
  pending: dict[Any, np.ndarray] = {}  # NMF matrices not yet factorised
  chunk = max(1, int(_cfg(config, "class_chunk", 16)))
  key = jax.random.PRNGKey(seed)
  n_samples, noise_std = int(config.n_samples), float(config.noise_std)
  baseline = float(config.baseline)
  nmf_calls = [0]

  def factorise(mats: dict[Any, np.ndarray], what) -> dict[Any, Any]:
    """One batched NMF of `mats`; per-matrix fallback if the batch fails."""
    tn = time.time()
    ids = list(mats)
    nmf_calls[0] += 1
    try:
      sets = cl.extract_concepts_batched(
          [mats[i] for i in ids], k, key=jax.random.fold_in(key, 10**6 + nmf_calls[0]),
          names=[what(i) for i in ids], **nmf_kw)
    except Exception:  # pylint: disable=broad-except
      logging.exception("concepts: batched NMF failed; factorising one by one")
      sets = []
      for i in ids:
        try:
          sets.append(cl.extract_concepts(mats[i], k, key=seed, what=what(i), **nmf_kw))
        except Exception as e:  # pylint: disable=broad-except
          sets.append(e)
    logging.info("concepts: NMF of %d matrices in %.1fs", len(ids), time.time() - tn)
    return dict(zip(ids, sets))

  def store_class_sets(done: dict[Any, Any]) -> None:
    for c, res in done.items():
      if isinstance(res, Exception):
        rows[c]["status"] = f"failed: NMF error: {type(res).__name__}: {res}"
      else:
        concept_sets[c] = res
        rows[c]["nmf_rel_error"] = res.rel_error
        rows[c]["nmf_iters"] = res.n_iter

  t_cls = time.time()
  for ci, c in enumerate(classes):
    tc = time.time()
    row = {"class": c, "name": _name(dataset, c), "status": "ok"}
    rows[c] = row
    idx = cl.class_image_indices(preds, c, n_per_class)
    row["n_images"] = int(idx.size)
    class_idx[c] = idx
    if idx.size == 0:
      row["status"] = "failed: the model predicts this class for no image"
      logging.warning("concepts: class %d/%d (%s) skipped: no image predicted", ci + 1,
                      len(classes), row["name"])
      continue
    # Pad to n_per_class images (repeats of the first), so the attribution
    # compiles once for all classes; the padding is dropped.
    x = images[np.concatenate([idx, np.full(n_per_class - idx.size, idx[0])])]
    try:
      acts = jnp.asarray(cl.batched_apply(jit_encode, x, eval_bs))[:idx.size]
      attr = jnp.asarray(attribution_fn(
          model, variables, jnp.asarray(x), np.full((n_per_class,), c, np.int32), layer,
          n_samples=n_samples, std=noise_std, baseline=baseline,
          key=jax.random.fold_in(key, c), batch_size=attr_bs))[:idx.size]
      if attr.shape != acts.shape:
        raise ValueError(f"attribution shape {attr.shape} != activation shape {acts.shape}")
    except Exception as e:  # pylint: disable=broad-except
      row["status"] = f"failed: attribution error: {type(e).__name__}: {e}"
      logging.exception("concepts: class %d attribution failed", c)
      continue
    mat = cl.concept_matrix(acts, attr, order)
    n_vec = cl.count_vectors(mat)
    row["n_vectors"] = n_vec
    cvec = ct.contrast_vectors(acts, attr, threshold, order)
    row["n_contrast_vectors"] = int(cvec.shape[0])
    if cvec.shape[0]:
      contrast_vecs[c] = cvec
    if n_vec < k:
      row["status"] = (f"failed: only {n_vec} pixel vector(s) with a positive score, "
                       f"fewer than n_concepts={k}")
      logging.warning("concepts: class %d: %s", c, row["status"])
    else:
      pending[c] = np.asarray(mat)
    logging.info("concepts: class %d/%d (%s): %d images, %d scored vectors, %d contrast "
                 "vectors, %.1fs", ci + 1, len(classes), row["name"], idx.size, n_vec,
                 cvec.shape[0], time.time() - tc)
    if len(pending) >= chunk:
      store_class_sets(factorise(pending, lambda c: f"class {c}"))
      pending = {}
  logging.info("concepts: attributions of %d classes in %.1fs", len(classes),
               time.time() - t_cls)

  # ---- pairwise classifiers for all pairs ----
  contrast_ok = [c for c in classes if c in contrast_vecs]
  cindex = {c: i for i, c in enumerate(contrast_ok)}
  result = None
  if len(contrast_ok) >= 2:
    tp = time.time()
    result = ct.train_contrast([contrast_vecs[c] for c in contrast_ok],
                               epochs=int(config.epochs), lr=float(config.lr))
    logging.info("concepts: %d pairwise classifiers in %.1fs (mean train acc %.3f)",
                 len(result.pairs), time.time() - tp, float(np.mean(result.accuracy)))

  # ---- contrast matrices for the chosen pairs; NMF of what is left ----
  pair_fail: dict[tuple[int, int], str] = {}
  for a, b in plot_pairs:
    if a not in cindex or b not in cindex or result is None:
      pair_fail[(a, b)] = ("a class of the pair was not evaluated or has no contrast "
                           "vectors")
      continue
    w, bias = pairwise.hyperplane(result, cindex[a], cindex[b])
    h_a = cl.batched_apply(jit_encode, images[class_idx[a]], eval_bs)
    mat = np.asarray(ct.contrast_matrix(jnp.asarray(h_a), jnp.asarray(w), bias))
    n_vec = cl.count_vectors(mat)
    if n_vec < k:
      pair_fail[(a, b)] = (f"only {n_vec} pixel vector(s) on A's side of the hyperplane, "
                           f"fewer than n_concepts={k}")
      continue
    pending[("pair", a, b)] = mat
  pair_sets: dict[tuple[int, int], cl.ConceptSet] = {}
  if pending:
    done = factorise(pending, lambda i: f"pair {i[1:]}" if isinstance(i, tuple) else f"class {i}")
    store_class_sets({i: r for i, r in done.items() if not isinstance(i, tuple)})
    for i, r in done.items():
      if isinstance(i, tuple):
        if isinstance(r, Exception):
          pair_fail[i[1:]] = f"NMF error: {type(r).__name__}: {r}"
        else:
          pair_sets[i[1:]] = r
    pending = {}

  # ---- one crop search over the split for all concepts ----
  ok = [c for c in classes if c in concept_sets]
  pair_ids = [p for p in plot_pairs if p in pair_sets]
  crops: dict[str, np.ndarray] = {}
  hits: dict[str, cl.CropHits] = {}
  if ok or pair_ids:
    tcrop = time.time()
    bases = np.concatenate([concept_sets[c].basis for c in ok]
                           + [pair_sets[p].basis for p in pair_ids])
    basis_class = np.repeat(np.asarray(ok + [p[0] for p in pair_ids], np.int32), k)
    hits = cl.search_crops(jit_encode, images, bases, n_crops, geometry,
                           modes=("all", "exclude", "only"), basis_class=basis_class,
                           predictions=preds,
                           batch_size=int(_cfg(config, "crop_batch_size", 256)))
    crops = {m: cl.extract_crops(images, h, geometry, fill) for m, h in hits.items()}
    logging.info("concepts: crop search over %d images for %d concepts in %.1fs",
                 images.shape[0], bases.shape[0], time.time() - tcrop)

  def concept_rows(i: int, mode: str):
    """Hits and crops of the i-th searched concept set (k rows)."""
    sl = slice(i * k, (i + 1) * k)
    return cl.CropHits(*(x[sl] for x in hits[mode])), crops[mode][sl]

  # ---- stitched-image test (Tables 1/2) ----
  table1, table2 = cl.stitch_summary([], []), cl.stitch_summary([], [])
  resized = False
  if ok:
    tst = time.time()
    stitched = {}
    for mode in ("all", "exclude"):
      top1 = np.stack([concept_rows(i, mode)[1][:, 0] for i in range(len(ok))])
      stitched[mode], resized = cl.stitched_images(top1, layout, geometry, apply_fn, fill)
    both = predict_probs(np.concatenate([stitched["all"], stitched["exclude"]]))
    probs = {"all": both[:len(ok)], "exclude": both[len(ok):]}
    for i, c in enumerate(ok):
      row = rows[c]
      for mode, tag in (("all", "all"), ("exclude", "excl")):
        missing = int((concept_rows(i, mode)[0].image[:, 0] < 0).sum())
        p = probs[mode][i]
        row[f"prob_{tag}"] = float(p[c])
        row[f"argmax_{tag}"] = int(p.argmax())
        row[f"predicted_{tag}"] = bool(p.argmax() == c)
        if missing:
          row[f"missing_crops_{tag}"] = missing
    table1 = cl.stitch_summary([rows[c]["prob_all"] for c in ok],
                               [rows[c]["predicted_all"] for c in ok])
    table2 = cl.stitch_summary([rows[c]["prob_excl"] for c in ok],
                               [rows[c]["predicted_excl"] for c in ok])
    for i, c in enumerate(ok):
      path = os.path.join(figures_dir, "concepts", f"class_{c:03d}.png")
      report.save_image_mosaic(
          path, [list(r) for r in _display(concept_rows(i, "all")[1])],
          row_labels=[f"concept {j}" for j in range(k)],
          col_labels=[f"#{j + 1}" for j in range(n_crops)],
          title=f"{rows[c]['name']} ({c}): {k} concepts x top-{n_crops} crops, {layer}")
      files.append(path)
    path = os.path.join(figures_dir, "stitched.png")
    report.save_image_mosaic(
        path, [[_display(stitched["all"][i]), _display(stitched["exclude"][i])]
               for i in range(len(ok))],
        row_labels=[f"{rows[c]['name']} {rows[c]['prob_all']:.2f}/{rows[c]['prob_excl']:.2f}"
                    for c in ok],
        title=f"stitched images ({layout}{', resized' if resized else ''})\nleft: crops "
              "from all images\nright: from images not\npredicted as the class\n"
              "p(class) left/right")
    files.append(path)
    logging.info("concepts: stitched test and figures in %.1fs", time.time() - tst)
  n_failed = sum(1 for c in classes if c not in concept_sets)
  table1["n_failed"] = table2["n_failed"] = n_failed
  notes = [
      f"layer {layer} {tuple(layer_shape)}; {len(classes)} classes; images: the "
      f"{_cfg(config, 'split', 'test')} split ({images.shape[0]} images), up to "
      f"{n_per_class} predicted per class (labels ignored)",
      f"attribution: DeepLift + SmoothGrad, {n_samples} samples, std {noise_std}, "
      f"baseline {baseline}; pixel score order {order}"
      f"{' (paper)' if order == 'mean_then_relu' else ' (reference code)'}",
      f"NMF: multiplicative updates, {k} concepts, init {nmf_kw['init']}, max_iter "
      f"{nmf_kw['max_iter']}, tol {nmf_kw['tol']}",
      f"crops: pool {geometry.pool}x{geometry.pool} -> grid {geometry.grid_hw}, crop "
      f"{geometry.crop_hw}; stitched layout '{layout}'"
      f"{', resized to the input size' if resized else ''}, fill {fill}",
      "table 1: crops from all images; table 2: crops only from images not predicted as "
      "the class; statistics over the classes that ran (n_failed did not)",
  ]
  files += report.write_tables(
      os.path.join(results_dir, "stitch_test"),
      {"per class": [rows[c] for c in classes],
       "table 1 (crops from all images)": [table1],
       "table 2 (excluding the class)": [table2]},
      title="Stitched-image test (Tables 1/2)", notes=notes,
      extra={"config": _config_json(config), "layer": layer,
             "geometry": {"pool": geometry.pool, "grid_hw": geometry.grid_hw,
                          "crop_hw": geometry.crop_hw},
             "stitch_layout": layout, "resized": resized})

  # ---- contrast concepts for the chosen pairs, bias probe (Table 4) ----
  bias_rows: list[dict[str, Any]] = []
  contrast_stitch_rows: list[dict[str, Any]] = []
  position = _cfg(config, "bias_position", "bottom_right")
  blank = float(_cfg(config, "bias_blank", 0.0))
  tpairs = time.time()
  for a, b in plot_pairs:
    base_row = {"to_a": a, "from_b": b, "name_a": _name(dataset, a), "name_b": _name(dataset, b)}
    if (a, b) not in pair_sets:
      why = pair_fail.get((a, b), "not run")
      contrast_stitch_rows.append({**base_row, "status": f"failed: {why}"})
      bias_rows.append({**base_row, "status": f"failed: {why}"})
      logging.warning("concepts: contrast pair (%d, %d): %s", a, b, why)
      continue
    cs = pair_sets[(a, b)]
    i = len(ok) + pair_ids.index((a, b))
    ph_all, pc_all = concept_rows(i, "all")
    ph_only, pc_only = concept_rows(i, "only")
    path = os.path.join(figures_dir, "contrast", f"{a:03d}_vs_{b:03d}.png")
    report.save_image_mosaic(
        path, [list(r) for r in _display(pc_all)],
        row_labels=[f"concept {j}" for j in range(k)],
        col_labels=[f"#{j + 1}" for j in range(n_crops)],
        title=f"why {_name(dataset, a)} rather than {_name(dataset, b)}: {k} contrast "
              f"concepts, {layer}")
    files.append(path)
    st, _ = cl.stitched_images(pc_all[None, :, 0], layout, geometry, apply_fn, fill)
    p = predict_probs(st)[0]
    contrast_stitch_rows.append({**base_row, "status": "ok", "nmf_rel_error": cs.rel_error,
                                 "n_vectors": cs.n_vectors, "prob_a": float(p[a]),
                                 "prob_b": float(p[b]), "argmax": int(p.argmax())})
    from_a = ph_only.image[:, 0] >= 0
    src = np.where(from_a, ph_only.image[:, 0], ph_all.image[:, 0])
    patches = np.where(from_a[:, None, None, None], pc_only[:, 0], pc_all[:, 0])
    found = np.flatnonzero(src >= 0)
    probe = (ct.bias_probe(predict_probs, images[class_idx[b]], patches[found], a, b,
                           position=position, blank=blank) if found.size else [])
    probe = dict(zip(found.tolist(), probe))
    for j in range(k):
      row = {**base_row, "concept": j, "crop_from_image": int(src[j]),
             "crop_image_pred": int(preds[src[j]]) if src[j] >= 0 else None,
             "crop_from_class_a": bool(from_a[j])}
      if j in probe:
        row["status"] = "ok"
        row.update(probe[j])
      else:
        row["status"] = "failed: no crop found"
      bias_rows.append(row)
  logging.info("concepts: %d contrast pairs (figures, bias probe) in %.1fs",
               len(plot_pairs), time.time() - tpairs)
  files += report.write_tables(
      os.path.join(results_dir, "bias_probe"),
      {"bias probe (Table 4)": bias_rows,
       "stitched contrast concepts": contrast_stitch_rows},
      title="Contrast concepts: bias probe (Table 4) and stitched test",
      notes=[f"for each chosen pair (A, B): contrast concepts = NMF ({k}) of A's "
             "activations scaled by max(w.x + b, 0); each concept's top crop taken from an "
             f"image predicted as A (crop_from_class_a) is pasted at the {position} corner "
             "of every image predicted as B",
             "orig / pasted / blank: mean p(A) and p(B) for the original images, with the "
             f"crop, and with the same square set to {blank}"],
      extra={"config": _config_json(config), "layer": layer})

  # ---- the shifting test over all ordered pairs (Table 3) ----
  shift_rows: list[dict[str, Any]] = []
  shift_bs = int(_cfg(config, "shift_batch_size", 16))
  ts = time.time()
  for bi, b in enumerate(classes):
    others = [a for a in classes if a != b]
    fail = None
    if result is None:
      fail = "fewer than 2 classes with contrast vectors"
    elif b not in cindex:
      fail = f"class {b}: " + (rows[b]["status"] if rows[b]["status"] != "ok"
                               else "no contrast vectors")
    per_a: dict[int, np.ndarray] = {}
    if fail is None:
      h_b = cl.batched_apply(jit_encode, images[class_idx[b]], eval_bs)
      todo = [a for a in others if a in cindex]
      dirs = np.stack([pairwise.hyperplane(result, cindex[a], cindex[b])[0] for a in todo])
      mean_b, arg_b = ct.shifting_stats(jit_head, h_b, dirs, offsets, shift_bs,
                                        int(_cfg(config, "shift_directions_per_call", 16)))
      base = _softmax_np(cl.batched_apply(jit_head, h_b, eval_bs)).mean(axis=0)
      per_a = {a: (mean_b[i], arg_b[i]) for i, a in enumerate(todo)}
    for a in others:
      row = {"from_b": b, "to_a": a, "name_b": _name(dataset, b), "name_a": _name(dataset, a)}
      if fail is not None:
        row["status"] = f"failed: {fail}"
      elif a not in per_a:
        row["status"] = f"failed: class {a}: " + (
            rows[a]["status"] if rows[a]["status"] != "ok" else "no contrast vectors")
      else:
        row["status"] = "ok"
        row["n_images"] = int(class_idx[b].size)
        i = pairwise.pair_index(min(cindex[a], cindex[b]), max(cindex[a], cindex[b]),
                                len(contrast_ok))
        row["pair_train_acc"] = float(result.accuracy[i])
        row.update(ct.shift_metrics_from_stats(*per_a[a], base, a, b, offsets))
      shift_rows.append(row)
    logging.info("concepts: shifting test from class %d/%d (%s) toward %d classes, %.1fs",
                 bi + 1, len(classes), _name(dataset, b), len(per_a), time.time() - ts)
  shift_summary = ct.shift_summary(shift_rows, offsets=offsets)
  shift_summary["n_failed"] = sum(1 for r in shift_rows if r["status"] != "ok")
  files += report.write_tables(
      os.path.join(results_dir, "shift_test"),
      {"per ordered pair (B -> A)": shift_rows, "table 3": [shift_summary]},
      title="Shifting test (Table 3)",
      notes=[f"layer {layer}; activations of images predicted as B shifted by t * w "
             f"(w: the (A, B) hyperplane normal toward A, raw) at every position, then "
             f"ReLU; offsets {list(offsets)}; best offset = highest mean p(A)",
             f"pairwise classifiers: raw pixel vectors with score > {threshold} x image "
             f"max, zero init, {config.epochs} epochs full-batch SGD lr {config.lr}",
             "swap_t: A is the argmax of the mean probabilities at the best offset and "
             "its mean probability > t; flip_rate: fraction of images with argmax A there",
             "table 3: mean (and std over pairs) of default / shifted p(A); % of pairs "
             "that swap"],
      extra={"config": _config_json(config), "layer": layer})
  logging.info("concepts: shifting test over %d ordered pairs in %.1fs", len(shift_rows),
               time.time() - ts)

  wall = time.time() - t_start
  failures = {"classes": {c: rows[c]["status"] for c in classes if rows[c]["status"] != "ok"},
              "pairs": shift_summary["n_failed"]}
  logging.info("concepts: done in %.1fs; table 1 %s; table 2 %s; table 3 %s", wall,
               table1, table2, shift_summary)
  return {"layer": layer, "stitch_test": {"table1": table1, "table2": table2},
          "shift_test": shift_summary, "bias_probe": bias_rows, "failures": failures,
          "files": files, "wall_s": wall}


def _config_json(config) -> Any:
  if hasattr(config, "to_dict"):
    d = config.to_dict()
  else:
    d = dict(config)
  return report._to_jsonable(d)  # pylint: disable=protected-access


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """`evaluate.py`'s entry for ``config.task == "concepts"``.

  Restores the classifier trained by `train.py` in ``config.classifier_workdir``
  (default: `workdir` itself; its latest checkpoint), loads its data set (the
  one in the classifier's saved config when ``config.use_classifier_data``,
  else ``config.data``) and runs :func:`run_concepts_evaluation`, writing
  under `workdir`.

  Raises:
    FileNotFoundError: no trained classifier there (with the command to train one).
    ValueError: a checkpoint other than "latest" (not supported yet).
  """
  from jaxconcepts.programs import classifier  # pylint: disable=g-import-not-at-top
  checkpoint = str(_cfg(config, "checkpoint", "latest"))
  if checkpoint != "latest":
    raise ValueError(f"checkpoint {checkpoint!r} is not supported; only 'latest' is")
  clf_dir = _cfg(config, "classifier_workdir") or workdir
  model, variables, clf_config, info = classifier.restore_classifier(clf_dir)
  data_config = clf_config.data if _cfg(config, "use_classifier_data", True) else config.data
  logging.info("concepts: classifier %s (%s, step %s) from %s; data %s/%s", info.get("arch"),
               info.get("num_classes"), info.get("step"), clf_dir, data_config.dataset,
               data_config.source)
  dataset = classifier.load_data(data_config)
  os.makedirs(workdir, exist_ok=True)
  return run_concepts_evaluation(config, workdir, model, variables, dataset)
