"""Crop geometry, the streamed crop search, stitching layouts and the Tables 1/2
summary (`methods/crops.py`), on planted pixels and the toy PartsNet of
test_concepts.py.
"""
import jax
import numpy as np
import pytest

from jaxconcepts.methods import crops as crops_lib
from jaxconcepts.models import classifiers as models
from jaxconcepts.models import split as split_lib
from tests.methods.test_concepts import CHANNELS
from tests.methods.test_concepts import FnSplit
from tests.methods.test_concepts import PartsNet
from tests.methods.test_concepts import parts_model  # noqa: F401  (a fixture)


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
  g = crops_lib.crop_geometry(image, (*layer_hw, 16))
  assert (g.pool, g.grid_hw, g.crop_hw) == (pool, grid, crop)


def test_layer_without_spatial_extent_has_no_crops():
  with pytest.raises(ValueError, match="without spatial extent"):
    crops_lib.crop_geometry((32, 32, 1), (10,), layer="logits")
  with pytest.raises(ValueError, match="1x1 spatial grid"):
    crops_lib.crop_geometry((32, 32, 1), (1, 1, 512), layer="conv4")


def test_search_crops_finds_planted_pixels_and_honours_modes():
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 0.5, size=(10, 16, 16, 3)).astype(np.float32)
  geometry = crops_lib.crop_geometry((16, 16, 3), (4, 4, 3))  # grid 2x2, crops 8x8
  images[3, 8:16, 0:8] = [1.0, 0.0, 0.0]  # image 3, pooled cell (1, 0): pure red
  images[7, 0:8, 8:16] = [1.0, 0.0, 0.0]  # image 7, cell (0, 1): pure red
  toy = FnSplit(lambda x: x.reshape(x.shape[0], 4, 4, 4, 4, 3).mean(axis=(2, 4)))  # 4x4 tap
  bases = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]], np.float32)
  preds = np.zeros(10, np.int32)
  preds[3] = 5
  hits = crops_lib.search_crops(toy, None, images, bases, 2, geometry,
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
  crops = crops_lib.extract_crops(images, all_hits, geometry)
  assert crops.shape == (2, 2, 8, 8, 3)
  i = int(np.flatnonzero(all_hits.image[0] == 3)[0])
  np.testing.assert_array_equal(crops[0, i], images[3, 8:16, 0:8])


def test_search_crops_is_exhaustive_against_a_brute_force_ranking():
  rng = np.random.default_rng(2)
  images = rng.uniform(size=(13, 8, 8, 2)).astype(np.float32)
  geometry = crops_lib.crop_geometry((8, 8, 2), (8, 8, 2))  # identity tap: grid 4x4, crops 2x2
  identity = FnSplit(lambda x: x)
  bases = rng.uniform(size=(3, 2)).astype(np.float32)
  hits = crops_lib.search_crops(identity, None, images, bases, 5, geometry,
                                batch_size=4)["all"]
  pooled = images.reshape(13, 4, 2, 4, 2, 2).mean(axis=(2, 4)).reshape(-1, 2)
  sims = (bases / np.linalg.norm(bases, axis=1, keepdims=True)) @ (
      pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).T
  np.testing.assert_allclose(hits.score, -np.sort(-sims, axis=1)[:, :5], rtol=1e-5)


# ---------------------------------------------------------------------------
# Stitching.


def test_stitch_layouts():
  crops = np.stack([np.full((8, 8, 1), i, np.float32) for i in range(6)])
  v = crops_lib.stitch(crops, "vertical")
  assert v.shape == (48, 8, 1) and v[40, 0, 0] == 5
  g = crops_lib.stitch(crops, "grid", fill=-1)
  assert g.shape == (16, 24, 1) and g[8, 16, 0] == 5
  c = crops_lib.stitch(crops, "canvas", canvas_hw=(32, 32), fill=-1)  # 2x3 block, centred
  assert c.shape == (32, 32, 1) and c[8, 4, 0] == 0 and c[16, 20, 0] == 5
  assert c[7, 4, 0] == c[8, 3, 0] == c[24, 4, 0] == c[8, 28, 0] == -1
  c = crops_lib.stitch(crops, "canvas", canvas_hw=(24, 16), fill=-1)  # 3x2 cells, row-major
  assert c.shape == (24, 16, 1) and c[16, 8, 0] == 5
  with pytest.raises(ValueError, match="holds 4 crops"):
    crops_lib.stitch(np.zeros((6, 16, 16, 1)), "canvas", canvas_hw=(32, 32))


def test_place_layout_pastes_each_crop_back_where_it_was_cut_from():
  crops = np.stack([np.full((8, 8, 1), i + 1, np.float32) for i in range(3)])
  # crop 0 at pooled (1, 2), crop 1 at (1, 2) too (under crop 0), crop 2 missing (-1)
  out = crops_lib.place(crops, np.array([1, 1, -1]), np.array([2, 2, 0]), (32, 32), fill=-1)
  assert out.shape == (32, 32, 1)
  assert (out[8:16, 16:24] == 1).all()  # concept 0 on top of concept 1
  assert (out[:8] == -1).all() and (out[16:] == -1).all() and (out[:, :16] == -1).all()
  geometry = crops_lib.crop_geometry((32, 32, 1), (4, 4, 1))  # 8x8 crops
  both, resized = crops_lib.stitched_images(
      crops[None], "place", geometry, positions=(np.array([[0, 3, 1]]), np.array([[0, 3, 2]])))
  assert not resized and both[0, 0, 0, 0] == 1 and both[0, 31, 31, 0] == 2
  assert both[0, 8, 16, 0] == 3
  with pytest.raises(ValueError, match="needs the crops' positions"):
    crops_lib.stitched_images(crops[None], "place", geometry)
  with pytest.raises(ValueError, match="outside the 32x32 canvas"):
    crops_lib.place(crops, np.array([4, 0, 0]), np.array([0, 0, 0]), (32, 32))


def test_auto_layout_is_vertical_for_any_size_models_and_canvas_or_grid_for_fixed_ones(
    parts_model):
  model, variables = parts_model
  geometry = crops_lib.crop_geometry((32, 32, CHANNELS), (8, 8, CHANNELS))
  fixed = PartsNet(fixed_hw=(32, 32))
  assert crops_lib.choose_layout("auto", geometry, 6, CHANNELS, model, variables) == "vertical"
  assert crops_lib.choose_layout("auto", geometry, 6, CHANNELS, fixed, variables) == "canvas"
  big = crops_lib.crop_geometry((32, 32, CHANNELS), (4, 4, CHANNELS))  # 16x16 crops
  assert crops_lib.choose_layout("auto", big, 6, CHANNELS, fixed, variables) == "grid"
  crops = np.ones((1, 6, 16, 16, CHANNELS), np.float32)
  out, resized = crops_lib.stitched_images(crops, "grid", big, model=fixed, variables=variables)
  assert out.shape == (1, 32, 32, CHANNELS) and resized



# ---------------------------------------------------------------------------
# Table 1 / 2 metrics.


def test_stitch_summary_reports_tables_1_and_2_columns():
  summ = crops_lib.stitch_summary([0.05, 0.15, 0.3, 0.9], [False, False, True, True])
  assert summ["n_classes"] == 4
  assert summ["mean_prob"] == pytest.approx(0.35)
  assert summ["pct_predicted"] == 50.0
  assert (summ["pct_above_0.1"], summ["pct_above_0.2"], summ["pct_above_0.5"]) == (
      75.0, 50.0, 25.0)


def test_search_crops_compiles_once_for_two_checkpoints():
  """The weights are a traced argument of the search step: new weights of the same
  architecture reuse its compilation."""
  model = models.create_model("vgg", 4, widths=(4, 4, 8, 8, 8, 8, 16, 16))
  s = split_lib.split(model, "conv2a")
  images = np.random.default_rng(0).uniform(size=(10, 32, 32, 1)).astype(np.float32)
  geometry = crops_lib.crop_geometry((32, 32, 1), s.shape((32, 32, 1)))
  bases = np.random.default_rng(1).uniform(size=(3, 8)).astype(np.float32)
  grown, scores = [], []
  for seed in (1, 2):
    variables = models.init_variables(model, jax.random.PRNGKey(seed), (32, 32, 1))
    before = crops_lib._search_step._cache_size()  # pylint: disable=protected-access
    hits = crops_lib.search_crops(s, variables, images, bases, 4, geometry, batch_size=4)
    grown.append(crops_lib._search_step._cache_size() - before)  # pylint: disable=protected-access
    scores.append(hits["all"].score)
  assert grown[0] <= 1 and grown[1] == 0, grown
  assert not np.allclose(scores[0], scores[1])  # the weights really differ


# ---------------------------------------------------------------------------
# Scoring crops against planted parts.


def _part_maps():
  """Two 8x8 images, crops of 4x4 (2x2 grid): image 0 holds part 0 whole in cell
  (0, 0) and part 1 split between cells (1, 0) and (1, 1); image 1 holds part 2 in
  cell (0, 1)."""
  maps = np.full((2, 8, 8), -1, np.int8)
  maps[0, 1:3, 1:3] = 0
  maps[0, 5:7, 2:6] = 1
  maps[1, 0:4, 4:8] = 2
  return maps


def test_part_coverage_is_the_fraction_of_each_part_inside_the_crop():
  from jaxconcepts.methods import concepts as cl  # pylint: disable=g-import-not-at-top
  geometry = crops_lib.crop_geometry((8, 8, 1), (4, 4, 3))
  assert geometry.crop_hw == (4, 4) and geometry.grid_hw == (2, 2)
  hits = crops_lib.CropHits(np.array([[0, 0, 1, -1]]), np.array([[0, 1, 0, 0]]),
                            np.array([[0, 0, 1, 0]]), np.zeros((1, 4)))
  cov = cl.part_coverage(hits, geometry, _part_maps(), 3)
  assert cov.shape == (1, 4, 3)
  np.testing.assert_allclose(cov[0, 0], [1.0, 0.0, 0.0])
  np.testing.assert_allclose(cov[0, 1], [0.0, 0.5, 0.0])  # half of part 1
  np.testing.assert_allclose(cov[0, 2], [0.0, 0.0, 1.0])
  assert np.isnan(cov[0, 3]).all()  # no hit
  s = cl.part_hit_scores(cov, np.array([True, True, False]))
  assert s["n_crops"] == 3
  assert s["coverage"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
  assert s["hit_rate"] == pytest.approx(2 / 3) and s["any_part"] == pytest.approx(2.5 / 3)
  assert s["top_part"] == [0]  # on average the concept covers part 0 most
  with pytest.raises(ValueError, match="part maps"):
    cl.part_coverage(hits, geometry, _part_maps()[:, :4], 3)


def test_random_hits_keep_the_images_and_draw_cells_in_the_grid():
  from jaxconcepts.methods import concepts as cl  # pylint: disable=g-import-not-at-top
  geometry = crops_lib.crop_geometry((8, 8, 1), (4, 4, 3))
  image = np.array([[0, 1, -1] * 100])
  hits = crops_lib.CropHits(image, np.zeros_like(image), np.zeros_like(image),
                            np.zeros(image.shape))
  rand = cl.random_hits(hits, geometry, seed=3)
  np.testing.assert_array_equal(rand.image, image)
  assert set(np.unique(rand.row)) == {0, 1} and set(np.unique(rand.col)) == {0, 1}
  np.testing.assert_array_equal(cl.random_hits(hits, geometry, seed=3).row, rand.row)
