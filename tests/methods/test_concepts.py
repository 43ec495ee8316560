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
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxconcepts.methods import concepts as cl
from jaxconcepts.data import sources as data_lib
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
      pairs_to_plot=((0, 1),), bias_position="bottom_right", bias_blank=0.0,
      eval_batch_size=64, crop_batch_size=16, shift_batch_size=8, seed=0))
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
# Crop geometry, search, crops.


@pytest.mark.parametrize("layer_hw,pool,grid,crop", [
    ((8, 8), 2, (4, 4), (8, 8)),     # VGG conv2a at 32x32
    ((4, 4), 2, (2, 2), (16, 16)),   # VGG conv2 / conv3a
    ((2, 2), 1, (2, 2), (16, 16)),   # VGG conv3: pooled grid 1x1 -> no pooling
    ((14, 14), 2, (7, 7), (32, 32)),  # ResNet50 layer3 at 224 (paper: 32x32)
    ((7, 7), 2, (3, 3), (74, 74)),   # ResNet50 layer4 at 224 (paper: 74x74)
])
def test_crop_geometry_follows_the_reference_rule(layer_hw, pool, grid, crop):
  image = (224, 224, 3) if layer_hw[0] in (7, 14) else (32, 32, 1)
  g = cl.crop_geometry(image, (*layer_hw, 16))
  assert (g.pool, g.grid_hw, g.crop_hw) == (pool, grid, crop)


def test_layer_without_spatial_extent_has_no_crops():
  with pytest.raises(ValueError, match="without spatial extent"):
    cl.crop_geometry((32, 32, 1), (10,), layer="logits")
  with pytest.raises(ValueError, match="1x1 spatial grid"):
    cl.crop_geometry((32, 32, 1), (1, 1, 512), layer="conv4")


def test_search_crops_finds_planted_pixels_and_honours_modes():
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 0.5, size=(10, 16, 16, 3)).astype(np.float32)
  geometry = cl.crop_geometry((16, 16, 3), (4, 4, 3))  # grid 2x2, crops 8x8
  images[3, 8:16, 0:8] = [1.0, 0.0, 0.0]  # image 3, pooled cell (1, 0): pure red
  images[7, 0:8, 8:16] = [1.0, 0.0, 0.0]  # image 7, cell (0, 1): pure red
  encode = lambda x: x.reshape(x.shape[0], 4, 4, 4, 4, 3).mean(axis=(2, 4))  # 4x4 tap
  bases = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]], np.float32)
  preds = np.zeros(10, np.int32)
  preds[3] = 5
  hits = cl.search_crops(encode, images, bases, 2, geometry,
                         modes=("all", "exclude", "only"),
                         basis_class=np.array([5, 1]), predictions=preds, batch_size=4)
  all_hits = hits["all"]
  assert {(all_hits.image[0, i], all_hits.row[0, i], all_hits.col[0, i])
          for i in range(2)} == {(3, 1, 0), (7, 0, 1)}
  np.testing.assert_allclose(all_hits.score[0], [1.0, 1.0], atol=1e-6)
  assert hits["exclude"].image[0, 0] == 7  # image 3 is predicted as the basis' class 5
  np.testing.assert_array_equal(hits["only"].image[0], [3, 3])  # only image 3 is class 5
  np.testing.assert_array_equal(hits["only"].image[1], [-1, -1])  # no image is class 1
  assert np.isneginf(hits["only"].score[1]).all()
  crops = cl.extract_crops(images, all_hits, geometry)
  assert crops.shape == (2, 2, 8, 8, 3)
  i = int(np.flatnonzero(all_hits.image[0] == 3)[0])
  np.testing.assert_array_equal(crops[0, i], images[3, 8:16, 0:8])


def test_search_crops_is_exhaustive_against_a_brute_force_ranking():
  rng = np.random.default_rng(2)
  images = rng.uniform(size=(13, 8, 8, 2)).astype(np.float32)
  geometry = cl.crop_geometry((8, 8, 2), (8, 8, 2))  # identity tap: grid 4x4, crops 2x2
  encode = lambda x: x
  bases = rng.uniform(size=(3, 2)).astype(np.float32)
  hits = cl.search_crops(encode, images, bases, 5, geometry, batch_size=4)["all"]
  pooled = images.reshape(13, 4, 2, 4, 2, 2).mean(axis=(2, 4)).reshape(-1, 2)
  sims = (bases / np.linalg.norm(bases, axis=1, keepdims=True)) @ (
      pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).T
  np.testing.assert_allclose(hits.score, -np.sort(-sims, axis=1)[:, :5], rtol=1e-5)


# ---------------------------------------------------------------------------
# Stitching.


def test_stitch_layouts():
  crops = np.stack([np.full((8, 8, 1), i, np.float32) for i in range(6)])
  v = cl.stitch(crops, "vertical")
  assert v.shape == (48, 8, 1) and v[40, 0, 0] == 5
  g = cl.stitch(crops, "grid", fill=-1)
  assert g.shape == (16, 24, 1) and g[8, 16, 0] == 5
  c = cl.stitch(crops, "canvas", canvas_hw=(32, 32), fill=-1)  # 2x3 block, centred
  assert c.shape == (32, 32, 1) and c[8, 4, 0] == 0 and c[16, 20, 0] == 5
  assert c[7, 4, 0] == c[8, 3, 0] == c[24, 4, 0] == c[8, 28, 0] == -1
  c = cl.stitch(crops, "canvas", canvas_hw=(24, 16), fill=-1)  # 3x2 cells, row-major
  assert c.shape == (24, 16, 1) and c[16, 8, 0] == 5
  with pytest.raises(ValueError, match="holds 4 crops"):
    cl.stitch(np.zeros((6, 16, 16, 1)), "canvas", canvas_hw=(32, 32))


def test_auto_layout_is_vertical_for_any_size_models_and_canvas_or_grid_for_fixed_ones(
    parts_model):
  model, variables = parts_model
  geometry = cl.crop_geometry((32, 32, CHANNELS), (8, 8, CHANNELS))
  free = lambda x: model.apply(variables, x)
  fixed_model = PartsNet(fixed_hw=(32, 32))
  fixed = lambda x: fixed_model.apply(variables, x)
  assert cl.choose_layout("auto", geometry, 6, CHANNELS, free) == "vertical"
  assert cl.choose_layout("auto", geometry, 6, CHANNELS, fixed) == "canvas"
  big = cl.crop_geometry((32, 32, CHANNELS), (4, 4, CHANNELS))  # 16x16 crops
  assert cl.choose_layout("auto", big, 6, CHANNELS, fixed) == "grid"
  crops = np.ones((1, 6, 16, 16, CHANNELS), np.float32)
  out, resized = cl.stitched_images(crops, "grid", big, fixed)
  assert out.shape == (1, 32, 32, CHANNELS) and resized


def test_stitched_test_on_the_toy_model_predicts_the_class(parts_model):
  model, variables = parts_model
  ds = parts_dataset()
  images = ds.test_images
  preds = np.asarray(model.apply(variables, images)).argmax(-1)
  np.testing.assert_array_equal(preds, ds.test_labels)
  s = split_lib.split(model, "feat")
  geometry = cl.crop_geometry(images.shape[1:], s.shape(images.shape[1:]))
  for c in (0, 1):
    idx = cl.class_image_indices(preds, c, 60)
    res = cl.explain_class(model, variables, images[idx], c, "feat", n_concepts=3,
                           attribution_fn=toy_attribution,
                           nmf_kwargs=dict(max_iter=500, tol=1e-7))
    planted = np.eye(CHANNELS)[N_PARTS * c:N_PARTS * (c + 1)]
    assert _best_match(res.concepts.basis, planted).min() > 0.99
    hits = cl.search_crops(lambda x: s.encode(variables, x), images, res.concepts.basis, 2, geometry,
                           modes=("all", "exclude"),
                           basis_class=np.full(3, c), predictions=preds)
    for mode in ("all", "exclude"):
      crops = cl.extract_crops(images, hits[mode], geometry)
      top = crops[:, 0]
      # each top crop is a full patch of one of the class's parts
      assert sorted(int(t.sum(axis=(0, 1)).argmax()) for t in top) == [
          N_PARTS * c, N_PARTS * c + 1, N_PARTS * c + 2]
      if mode == "exclude":
        assert np.all(preds[hits[mode].image[:, 0]] != c)
      stitched, _ = cl.stitched_images(top[None], "canvas", geometry,
                                       lambda x: model.apply(variables, x))
      p = jax.nn.softmax(model.apply(variables, stitched))[0]
      assert int(p.argmax()) == c and p[c] > 0.9


def test_stitch_summary_reports_tables_1_and_2_columns():
  summ = cl.stitch_summary([0.05, 0.15, 0.3, 0.9], [False, False, True, True])
  assert summ["n_classes"] == 4
  assert summ["mean_prob"] == pytest.approx(0.35)
  assert summ["pct_predicted"] == 50.0
  assert (summ["pct_above_0.1"], summ["pct_above_0.2"], summ["pct_above_0.5"]) == (
      75.0, 50.0, 25.0)
