"""Concepts of a class: scores, NMF concepts, crop geometry and search, stitching,
the stitched-image test on a toy model built so the answers are known, and the
whole pipeline (toy model; the quick config on digits with the real VGG).

The toy model ("PartsNet"): 9 input channels, the tap "feat" is the input
4x4-average-pooled (8x8x9 for 32x32 inputs), and logit c is a scaled spatial
mean of the channels 3c, 3c+1, 3c+2 ("the three parts of class c"). Images of
class c hold 8x8 patches (aligned to the 8-pixel crop grid) of the parts of c
and one distractor patch of a part of another class. So the concepts of class
c are the unit vectors of its three parts, the top crops are its part patches,
and three of them stitched together are predicted as c, also when they come
from images of the other class (the distractors).
"""
import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxconcepts.methods import concepts as cl
from jaxconcepts.methods import crops as crops_lib
from jaxconcepts import data as data_lib
from jaxconcepts.models import classifiers as models
from jaxconcepts.models import split as split_lib

N_CLASSES = 3
N_PARTS = 3
CHANNELS = N_CLASSES * N_PARTS


class PartsNet(nn.Module):
  """A toy classifier following the split protocol (see module docstring)."""
  num_classes: int = N_CLASSES
  scale: float = 40.0
  fixed_hw: tuple | None = None  # raise for other input sizes (like the VGG)

  @property
  def layer_names(self):
    return ("feat", "logits")

  @nn.compact
  def __call__(self, x, train=False, *, start=None, stop=None):
    del train
    self.param("unused", nn.initializers.zeros, ())
    if start is None:
      if self.fixed_hw is not None and tuple(x.shape[1:3]) != tuple(self.fixed_hw):
        raise ValueError(f"PartsNet takes {self.fixed_hw} inputs, got {x.shape[1:3]}")
      n, h, w, c = x.shape
      x = x.reshape(n, h // 4, 4, w // 4, 4, c).mean(axis=(2, 4))
      self.sow("taps", models.TAP_PREFIX + "feat", x)
      if stop == "feat":
        return x
    groups = jnp.repeat(jnp.eye(self.num_classes), N_PARTS, axis=0)  # (9, 3)
    logits = self.scale * jnp.mean(x, axis=(1, 2)) @ groups
    self.sow("taps", models.TAP_PREFIX + "logits", logits)
    return logits


@dataclasses.dataclass(frozen=True)
class FnSplit:
  """A toy `Split` from plain functions of the activations (no variables).

  Hashable, like `models.split.Split`, so it can be the static argument of
  the jitted crop search and shifting test.
  """
  encode_fn: Callable[[jax.Array], jax.Array] | None = None
  head_fn: Callable[[jax.Array], jax.Array] | None = None

  def encode(self, variables, x):
    del variables
    return self.encode_fn(x)

  def head(self, variables, h):
    del variables
    return self.head_fn(h)


def toy_attribution(model, variables, images, target, layer, *, n_samples=20, std=0.25,
                    baseline=1.0, key=None, batch_size=None):
  """Gradient x activation at the layer: exact DeepLift (zero reference) for a
  head that is linear in the activations, as PartsNet's is."""
  del n_samples, std, baseline, key, batch_size
  s = split_lib.split(model, layer)
  h = s.encode(variables, jnp.asarray(images))
  target = jnp.asarray(target)

  def total(h):
    return jnp.sum(jnp.take_along_axis(s.head(variables, h), target[:, None], axis=1))

  return h * jax.grad(total)(h)


def make_parts_images(n_per_class, classes=(0, 1), seed=0, hw=32):
  """Images of `classes` with their 3 part patches + 1 distractor (see docstring)."""
  rng = np.random.default_rng(seed)
  cells = (hw // 8) ** 2
  images, labels = [], []
  for c in classes:
    others = [o for o in classes if o != c]
    for i in range(n_per_class):
      img = np.zeros((hw, hw, CHANNELS), np.float32)
      pos = rng.permutation(cells)[:N_PARTS + 1]
      parts = [N_PARTS * c + p for p in range(N_PARTS)]
      # the distractor cycles over the other classes' parts, so every part
      # also appears in images of other classes
      parts.append(N_PARTS * others[(i // N_PARTS) % len(others)] + i % N_PARTS)
      for p, ch in zip(pos, parts):
        r, q = divmod(int(p), hw // 8)
        img[r * 8:(r + 1) * 8, q * 8:(q + 1) * 8, ch] = 1.0
      images.append(img)
      labels.append(c)
  return np.stack(images), np.asarray(labels, np.int32)


def parts_dataset(n_per_class=12, seed=0):
  x, y = make_parts_images(n_per_class, seed=seed)
  return data_lib.Dataset(name="digits", train_images=x[:2], train_labels=y[:2],
                          test_images=x, test_labels=y, num_classes=N_CLASSES,
                          class_names=("zero", "one", "two"))


@pytest.fixture(scope="module")
def parts_model():
  model = PartsNet()
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, CHANNELS)))
  variables = {k: v for k, v in variables.items() if k != "taps"}
  return model, variables


def small_config(**overrides):
  c = ml_collections.ConfigDict(dict(
      layer="feat", split="test", max_images=None, classes=None, n_images_per_class=12,
      n_concepts=3, n_crops=4, pool_size=2, n_samples=2, noise_std=0.25, baseline=1.0,
      attribution_batch_size=8, score_order="mean_then_relu", nmf_init="nndsvda",
      nmf_max_iter=200, nmf_tol=1e-4, class_chunk=16, stitch_layout="auto",
      stitch_fill=0.0, contrast_threshold=0.25, epochs=100, lr=0.01,
      shift_offsets=(0.0, 0.5, 1.0, 2.0, 10.0, 15.0, 20.0, 35.0, 50.0, 200.0),
      pairs_to_plot=((0, 1),), bias_position="bottom_right", bias_blank="black",
      noise_std_units="pixels", shift_rule="paper",
      eval_batch_size=64, crop_batch_size=16, shift_batch_size=8,
      shift_directions_per_call=16, seed=0))
  for k, v in overrides.items():
    c[k] = v
  return c


def _best_match(basis, planted):
  """Cosine similarity of each planted vector with its best-matching concept."""
  b = basis / np.linalg.norm(basis, axis=1, keepdims=True)
  p = planted / np.linalg.norm(planted, axis=1, keepdims=True)
  return (p @ b.T).max(axis=1)


# ---------------------------------------------------------------------------
# Scores and matrices.


def test_pixel_scores_follow_the_paper_order_and_the_reference_order():
  attr = jnp.asarray([[[[1.0, -3.0], [2.0, 2.0]]]])  # (1, 1, 2, 2)
  np.testing.assert_allclose(cl.pixel_scores(attr, "mean_then_relu"), [[[0.0, 2.0]]])
  np.testing.assert_allclose(cl.pixel_scores(attr, "relu_then_mean"), [[[0.5, 2.0]]])
  with pytest.raises(ValueError, match="score_order"):
    cl.pixel_scores(attr, "mean")


def test_concept_matrix_scales_pixel_vectors_and_zeroes_negative_pixels():
  acts = jnp.arange(8, dtype=jnp.float32).reshape(1, 2, 2, 2)
  attr = jnp.asarray([[[[1.0, 1.0], [-1.0, -1.0]], [[2.0, 0.0], [0.5, 0.5]]]])
  mat = np.asarray(cl.concept_matrix(acts, attr))
  np.testing.assert_allclose(mat, [[0, 1], [0, 0], [4, 5], [3, 3.5]])
  assert cl.count_vectors(mat) == 3


def test_class_image_indices_takes_the_first_predicted_images_ignoring_labels():
  preds = np.array([2, 0, 2, 2, 1, 2])
  np.testing.assert_array_equal(cl.class_image_indices(preds, 2, 3), [0, 2, 3])
  assert cl.class_image_indices(preds, 5, 3).size == 0


# ---------------------------------------------------------------------------
# NMF concepts.


def test_extract_concepts_recovers_planted_concepts():
  rng = np.random.default_rng(0)
  planted = rng.uniform(size=(4, 32)) * (rng.uniform(size=(4, 32)) < 0.4)
  weights = rng.exponential(size=(600, 4)) * (rng.uniform(size=(600, 4)) < 0.5)
  mat = weights @ planted
  mat[rng.uniform(size=600) < 0.3] = 0.0  # pixels with a negative score
  res = cl.extract_concepts(mat, 4, max_iter=1000, tol=1e-7)
  assert res.basis.shape == (4, 32)
  assert res.n_vectors == int(np.any(mat != 0, axis=1).sum())
  assert res.rel_error < 0.05
  assert _best_match(res.basis, planted).min() > 0.97


def test_extract_concepts_batched_matches_ragged_classes_and_recovers_each():
  rng = np.random.default_rng(1)
  mats, planted = [], []
  for rows in (300, 180, 420):
    p = rng.uniform(size=(3, 16)) * (rng.uniform(size=(3, 16)) < 0.5)
    w = rng.exponential(size=(rows, 3)) * (rng.uniform(size=(rows, 3)) < 0.6)
    mats.append(w @ p)
    planted.append(p)
  sets = cl.extract_concepts_batched(mats, 3, max_iter=800, tol=1e-7)
  for res, p in zip(sets, planted):
    assert res.basis.shape == (3, 16)
    assert _best_match(res.basis, p).min() > 0.97


@pytest.mark.parametrize("solver", ["amu", "hals"])
def test_each_fast_nmf_solver_recovers_the_planted_concepts(solver, parts_model):
  """The planted checks above and the toy model's parts, with accelerated MU and HALS."""
  rng = np.random.default_rng(0)
  planted = rng.uniform(size=(4, 32)) * (rng.uniform(size=(4, 32)) < 0.4)
  weights = rng.exponential(size=(600, 4)) * (rng.uniform(size=(600, 4)) < 0.5)
  mat = weights @ planted
  mat[rng.uniform(size=600) < 0.3] = 0.0
  res = cl.extract_concepts(mat, 4, max_iter=1000, tol=1e-7, solver=solver)
  assert res.rel_error < 0.05
  assert _best_match(res.basis, planted).min() > 0.97
  rng = np.random.default_rng(1)
  mats, parts = [], []
  for rows in (300, 180, 420):
    p = rng.uniform(size=(3, 16)) * (rng.uniform(size=(3, 16)) < 0.5)
    mats.append(rng.exponential(size=(rows, 3)) * (rng.uniform(size=(rows, 3)) < 0.6) @ p)
    parts.append(p)
  sets = cl.extract_concepts_batched(mats, 3, max_iter=800, tol=1e-7, solver=solver)
  for res, p in zip(sets, parts):
    assert _best_match(res.basis, p).min() > 0.97
  model, variables = parts_model
  images = parts_dataset().test_images
  preds = np.asarray(model.apply(variables, images)).argmax(-1)
  for c in (0, 1):
    res = cl.explain_class(model, variables, images[cl.class_image_indices(preds, c, 60)], c,
                           "feat", n_concepts=3, attribution_fn=toy_attribution,
                           nmf_kwargs=dict(max_iter=500, tol=1e-7, solver=solver))
    planted = np.eye(CHANNELS)[N_PARTS * c:N_PARTS * (c + 1)]
    assert _best_match(res.concepts.basis, planted).min() > 0.99


def test_k_larger_than_the_number_of_pixel_vectors_is_a_clear_error():
  mat = np.zeros((50, 8), np.float32)
  mat[:2] = 1.0
  with pytest.raises(ValueError, match=r"only 2 pixel vector.*n_components=3"):
    cl.extract_concepts(mat, 3)
  with pytest.raises(ValueError, match=r"class 7 has only 2"):
    cl.extract_concepts_batched([np.ones((40, 8)), mat], 3, names=["class 6", "class 7"])
  with pytest.raises(ValueError, match="exceeds the layer's 8 channels"):
    cl.extract_concepts(np.ones((40, 8)), 9)


# ---------------------------------------------------------------------------
# One class end to end, and its stitched test.


def test_stitched_test_on_the_toy_model_predicts_the_class(parts_model):
  model, variables = parts_model
  ds = parts_dataset()
  images = ds.test_images
  preds = np.asarray(model.apply(variables, images)).argmax(-1)
  np.testing.assert_array_equal(preds, ds.test_labels)
  s = split_lib.split(model, "feat")
  geometry = crops_lib.crop_geometry(images.shape[1:], s.shape(images.shape[1:]))
  for c in (0, 1):
    idx = cl.class_image_indices(preds, c, 60)
    res = cl.explain_class(model, variables, images[idx], c, "feat", n_concepts=3,
                           attribution_fn=toy_attribution,
                           nmf_kwargs=dict(max_iter=500, tol=1e-7))
    planted = np.eye(CHANNELS)[N_PARTS * c:N_PARTS * (c + 1)]
    assert _best_match(res.concepts.basis, planted).min() > 0.99
    hits = crops_lib.search_crops(s, variables, images, res.concepts.basis, 2, geometry,
                                  modes=("all", "exclude"),
                                  basis_class=np.full(3, c), predictions=preds)
    for mode in ("all", "exclude"):
      crops = crops_lib.extract_crops(images, hits[mode], geometry)
      top = crops[:, 0]
      # each top crop is a full patch of one of the class's parts
      assert sorted(int(t.sum(axis=(0, 1)).argmax()) for t in top) == [
          N_PARTS * c, N_PARTS * c + 1, N_PARTS * c + 2]
      if mode == "exclude":
        assert np.all(preds[hits[mode].image[:, 0]] != c)
      stitched, _ = crops_lib.stitched_images(top[None], "canvas", geometry, model=model,
                                              variables=variables)
      p = jax.nn.softmax(model.apply(variables, stitched))[0]
      assert int(p.argmax()) == c and p[c] > 0.9


# ---------------------------------------------------------------------------
# Batched model application.


def test_predict_encode_and_head_in_batches_match_the_model_and_compile_once():
  model = models.create_model("vgg", 4, widths=(4, 4, 8, 8, 8, 8, 16, 16))
  s = split_lib.split(model, "conv3a")
  x = np.random.default_rng(0).uniform(size=(7, 32, 32, 1)).astype(np.float32)
  # pylint: disable=protected-access
  fns = (split_lib.logits_batch, split_lib.encode_batch, split_lib.head_batch)
  grown = []
  for seed in (1, 2):
    variables = models.init_variables(model, jax.random.PRNGKey(seed), (32, 32, 1))
    before = [f._cache_size() for f in fns]
    logits = split_lib.predict_logits(model, variables, x, batch_size=3)
    h = split_lib.encode_images(s, variables, x, batch_size=3)
    from_h = split_lib.head_logits(s, variables, h, batch_size=3)
    grown.append([f._cache_size() - b for f, b in zip(fns, before)])
    want = model.apply(variables, x)
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h, s.encode(variables, x), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(from_h, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cl.predict_probs(model, variables, x, 3),
                               jax.nn.softmax(want), rtol=1e-4, atol=1e-6)
  assert all(n <= 1 for n in grown[0]) and grown[1] == [0, 0, 0], grown


def test_extract_concepts_each_marks_a_bad_matrix_and_factorises_the_others():
  rng = np.random.default_rng(3)
  good = rng.uniform(size=(40, 6)).astype(np.float32)
  bad = good.copy()
  bad[0, 0] = np.nan
  out = cl.extract_concepts_each({"a": good, "b": bad, 7: good}, 2,
                                 names={"a": "class a", "b": "class b", 7: "class 7"},
                                 max_iter=20)
  assert list(out) == ["a", "b", 7]
  assert isinstance(out["a"], cl.ConceptSet) and out["a"].basis.shape == (2, 6)
  assert out["b"].startswith("NMF error: ValueError") and "NaN" in out["b"]
  np.testing.assert_allclose(out[7].basis, out["a"].basis)  # alone: the same key
  together = cl.extract_concepts_each({"a": good}, 2, names={"a": "a"}, max_iter=20)
  assert isinstance(together["a"], cl.ConceptSet)
