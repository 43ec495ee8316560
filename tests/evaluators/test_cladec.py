"""ClaDec evaluators: rows from computed results (no model, no files), and figure grids."""
import numpy as np
import pytest

from jaxconcepts.data import planted
from jaxconcepts.evaluators import cladec as ev
from jaxconcepts.evaluators import cladec_parts
from jaxconcepts.evaluators import cladec_figures as figs


def _x(n=4, value=0.0):
  return np.full((n, 8, 8, 1), value, np.float32)


def _ref(x, reduction="sum", classes=4, mean_image=None):
  return ev.reference(x, x.mean(0) if mean_image is None else mean_image, classes, reduction)


def test_mean_std_is_the_sample_std_ignoring_nan():
  assert ev.mean_std([1.0, float("nan"), 3.0]) == (2.0, pytest.approx(np.sqrt(2.0)))
  m, s = ev.mean_std([float("nan")])
  assert np.isnan(m) and np.isnan(s)
  m, s = ev.mean_std([5.0])  # one seed: no sample std
  assert m == 5.0 and np.isnan(s)


def test_layer_row_has_per_seed_values_and_deltas():
  x = _x()
  cla = ev.Recons((_x(value=0.5), _x(value=0.25)), (0.5, 0.7))
  ref = ev.Recons((_x(value=1.0), _x(value=1.0)), (0.25, float("nan")))
  row = ev.layer_row(ev.LayerResult("-5 (conv3a)", (4, 4, 256), cla, ref), _ref(x))
  assert row["per_seed"]["rec_cladec"] == [16.0, 4.0]  # 64 pixels x 0.25 and x 0.0625
  assert row["rec_cladec"] == 10.0 and row["rec_refae"] == 64.0
  assert row["rec_cladec_mean"] == pytest.approx(10.0 / 64)  # the other reduction
  assert row["delta_rec"] == -54.0 and row["shape"] == "4x4x256"
  assert row["acc_eval_refae"] == 0.25 and row["delta_acc"] == pytest.approx(0.35)
  assert row["chance"] == 0.25 and row["rec_black"] == 0.0  # x is black itself
  missing = ev.layer_row(ev.LayerResult("conv4", (2,), None, ref), _ref(x, "mean"))
  assert np.isnan(missing["rec_cladec"]) and missing["per_seed"]["rec_cladec"] == []
  assert missing["rec_refae"] == 1.0 and missing["rec_refae_sum"] == 64.0
  assert missing["checks"]["rec_cladec"] == "missing"


def test_alpha_row_is_eq1_on_the_test_set():
  x = _x(2)
  labels = np.array([0, 1])
  logits = np.array([[5.0, 0.0], [0.0, 5.0]], np.float32)
  recons = ev.Recons((_x(2, 0.5),), (0.9,), (logits,))
  row0 = ev.alpha_row(0.0, recons, labels, _ref(x, classes=2))
  assert row0["total_loss"] == row0["rec_loss"] == 16.0
  assert row0["acc_classifier_on_recon"] == 1.0 and row0["acc_eval_cladec"] == 0.9
  assert row0["rec_loss_mean"] == 0.25 and row0["checks"]["rec_loss"] == "collapsed"
  row1 = ev.alpha_row(1.0, recons, labels, _ref(x, classes=2))
  assert row1["total_loss"] == pytest.approx(row1["classifier_loss"])
  assert set(row1["per_seed"]) == {"total", "rec", "rec_mean", "ce", "acc_c", "acc_eval"}
  assert "rec_loss" not in row1["checks"]  # alpha = 1 trains no reconstruction


def test_occlusion_row_averages_trials_over_seeds():
  trials = ({"acc_max": 0.5, "acc_min": 0.75, "delta_acc": 0.25},
            {"acc_max": 0.25, "acc_min": 0.75, "delta_acc": 0.5})
  row = ev.occlusion_row(ev.OcclusionResult("-1 (logits)", (10,), trials, trials[:1]))
  assert row["cladec_acc_max"] == 0.375
  assert row["cladec_acc_max_std"] == pytest.approx(np.std([0.5, 0.25], ddof=1))
  assert row["gradcam_delta_acc"] == 0.25 and row["spatial"] == "10"
  empty = ev.occlusion_row(ev.OcclusionResult("x", (1,), (), trials))
  assert np.isnan(empty["cladec_acc_min"])
  checked = ev.occlusion_row(ev.OcclusionResult("x", (1,), trials, trials), num_classes=2)
  assert checked["chance"] == 0.5 and checked["status"] == "ok"
  assert ev.occlusion_row(ev.OcclusionResult("x", (1,), trials, trials),
                          num_classes=4)["status"] == "ok"


def test_tables_writes_only_what_the_results_hold():
  x = _x()
  info = ev.RunInfo(config=_config(), dataset="digits", num_train=8, num_test=4,
                    image_shape=(8, 8, 1), seeds=(0,), classifier_workdir="w",
                    classifier_step=3, kernel_size=5, warnings=("WARNING: x",))
  results = ev.Results(layers=(ev.LayerResult("a", (2,), ev.Recons((x,), (0.5,)), None),),
                       alpha={}, alpha_label="", epochs=(), epochs_refae=None, epochs_label="",
                       subsets=(ev.SubsetResult("nested", 0, 4, ev.Recons((x,))),),
                       subset_label="a", occlusion=(), occlusion_images=0,
                       predictions=np.zeros(4, int), mean_image=x[0], num_classes=10)
  out = ev.tables(results, x, np.zeros(4, int), info)
  assert [t.name for t in out] == ["cladec_layers", "cladec_subsets"]
  assert out[0].notes[-3] == "WARNING: x" and "rec reduction: sum" in out[0].notes[0]
  sub = out[1].rows[0]
  assert (sub["kind"], sub["neurons"], sub["n_neurons"], sub["rec_cladec"]) == (
      "nested", "0-3", 4, 0.0)
  assert np.isnan(sub["rec_cladec_std"])  # one seed
  # x is all black, so a perfect reconstruction equals the all-black baseline: collapsed.
  assert sub["status"] == "collapsed" and sub["rec_black"] == 0.0


def _config():
  from configs import cladec as cladec_config  # pylint: disable=g-import-not-at-top
  return cladec_config.get_config("quick")


def test_diff_image_is_red_where_refae_is_brighter():
  rgb = figs.diff_image(np.ones((2, 2, 1)), np.zeros((2, 2, 1)), 0.5)
  assert rgb.shape == (2, 2, 3) and (rgb[..., 0] == 1).all() and (rgb[..., 1] == 0).all()


def test_layer_figure_skips_layers_without_both_reconstructions():
  test = figs.TestSet(_x(3), np.array([0, 1, 0]), ["zero", "one"])
  both = ev.LayerResult("a", (2,), ev.Recons((_x(3, 0.5),)), ev.Recons((_x(3, 0.25),)))
  half = ev.LayerResult("b", (2,), ev.Recons((_x(3, 0.5),)), None)
  grid = figs.layers_figure([both, half], test, np.arange(2), "cladec_layers", "t")
  assert grid.row_labels == ["a"] and len(grid.rows[0]) == 8
  assert grid.col_labels[:2] == ["X (zero)", "RefAE"]
  assert figs.layers_figure([half], test, np.arange(2), "n", "t") is None


def _strokes(n=16, seed=0):
  """Sparse images: a bright bar on black at a random row (mostly-dark, like digits)."""
  rng = np.random.default_rng(seed)
  x = np.zeros((n, 32, 32, 1), np.float32)
  for i, r in enumerate(rng.integers(2, 28, n)):
    x[i, r:r + 3, 4:28] = 1.0
  return x


def _collapsed_decoder_recons(x):
  """Reconstructions by a real decoder forced to a constant: every parameter zero and the
  output bias at -30, so sigmoid gives ~0 (the all-black image) for every code."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxconcepts.models import decoders  # pylint: disable=g-import-not-at-top
  dec = decoders.create_decoder((16,), (32, 32, 1))
  codes = np.random.default_rng(1).normal(size=(x.shape[0], 16)).astype(np.float32)
  params = jax.tree.map(np.zeros_like, dec.init(jax.random.PRNGKey(0), codes)["params"])
  last = sorted(k for k in params if k.startswith("deconv"))[-1]
  params[last]["bias"] = np.full_like(params[last]["bias"], -30.0)
  out = np.asarray(dec.apply({"params": params}, codes))
  assert out.max() < 1e-6  # the planted collapse: a constant, all-black output
  return out


def test_planted_collapse_is_flagged_in_the_table_and_the_summary():
  x, labels = _strokes(), np.arange(16) % 4
  collapsed = _collapsed_decoder_recons(x)
  healthy = np.clip(x + np.random.default_rng(2).normal(0, 0.05, x.shape), 0, 1)
  healthy = healthy.astype(np.float32)
  results = ev.Results(
      layers=(ev.LayerResult("-1 (logits)", (10,), ev.Recons((collapsed, collapsed), (0.9, 0.27)),
                             ev.Recons((healthy, healthy), (0.9, 0.95))),
              ev.LayerResult("-5 (conv3a)", (4, 4, 256), ev.Recons((healthy,), (0.8,)),
                             ev.Recons((healthy,), (0.9,)))),
      alpha={}, alpha_label="", epochs=(), epochs_refae=None, epochs_label="", subsets=(),
      subset_label="", occlusion=(), occlusion_images=0, predictions=labels,
      mean_image=x.mean(0), num_classes=4)
  info = ev.RunInfo(config=_config(), dataset="strokes", num_train=16, num_test=16,
                    image_shape=(32, 32, 1), seeds=(0, 1), classifier_workdir="w",
                    classifier_step=1, kernel_size=5)
  written = ev.tables(results, x, labels, info)
  bad, good = written[0].rows
  assert bad["status"] == "collapsed" and bad["checks"]["rec_cladec"] == "collapsed"
  assert bad["rec_cladec"] == pytest.approx(bad["rec_black"], rel=1e-5)
  assert bad["checks"]["acc_eval_cladec"] == "chance"  # one seed at 0.27, chance 0.25
  assert bad["checks"]["rec_refae"] == "ok" and "all-black" in bad["health"]
  assert good["status"] == "ok" and good["health"] == ""
  assert good["rec_cladec"] < 0.1 * min(good["rec_black"], good["rec_mean_image"])
  assert {"rec_black", "rec_mean_image", "chance", "status"} <= set(written[0].columns)
  summary = ev.summary("ClaDec", written)
  assert [(r["row"], r["column"], r["status"]) for r in summary.rows] == [
      ("-1 (logits)", "rec_cladec", "collapsed"), ("-1 (logits)", "acc_eval_cladec", "chance")]
  assert "2 result(s) mean nothing" in summary.title


def test_a_nan_loss_is_reported_not_averaged_away():
  x = _strokes(4)
  nan = np.full_like(x, np.nan)
  row = ev.layer_row(ev.LayerResult("a", (2,), ev.Recons((x, nan)), None), _ref(x))
  assert row["status"] == "nan" and row["checks"]["rec_cladec"] == "nan"
  assert row["rec_cladec"] == 0.0  # the mean over the finite seeds, with the row marked


# ---------------------------------------------------------------------------
# Reconstructions against the planted parts (evaluators/cladec_parts)
# ---------------------------------------------------------------------------

def _planted(n=12):
  _, (x, y), parts = planted.generate(0, 6, n)
  return x, y, parts.test, parts.class_parts


def test_part_masks_split_each_image_into_its_unique_and_shared_part():
  x, y, maps, class_parts = _planted()
  m = cladec_parts.part_masks(maps, y, class_parts)
  for i in range(len(y)):
    assert set(np.unique(maps[i][m["unique"][i]])) == {y[i]}  # part id c is class c's own
    assert set(np.unique(maps[i][m["shared"][i]])) == {6 if y[i] < 3 else 7}
  assert not (m["unique"] & m["shared"]).any()
  np.testing.assert_array_equal(m["unique"] | m["shared"], m["parts"])
  np.testing.assert_array_equal(m["background"], maps < 0)
  with pytest.raises(ValueError, match="part maps name part 9, but class_parts has 8"):
    cladec_parts.part_masks(np.full((1, 2, 2), 9), np.zeros(1, int), class_parts)


def test_part_scores_of_a_perfect_a_blank_and_a_half_reconstruction():
  x, y, maps, class_parts = _planted()
  score = lambda r: cladec_parts.part_scores(r, x, maps, y, class_parts)
  perfect = score(x)
  assert perfect["contrast_unique"] == pytest.approx(1.0)
  assert perfect["contrast_shared"] == pytest.approx(1.0)
  assert perfect["iou_parts"] == 1.0
  assert perfect["err_unique"] == perfect["err_background"] == 0.0
  blank = score(np.full(x.shape[1:], 0.9, np.float32))  # a constant page, no parts
  assert blank["contrast_unique"] == blank["contrast_shared"] == 0.0
  assert blank["iou_parts"] == 0.0
  assert blank["err_unique"] > 0.4 and blank["err_background"] < 0.01  # dark parts missed
  # the unique part kept, the shared part painted over with the background's level
  m = cladec_parts.part_masks(maps, y, class_parts)
  half = np.where(m["shared"][..., None], 0.925, x)
  s = score(half)
  assert s["contrast_unique"] == pytest.approx(1.0)
  assert abs(s["contrast_shared"]) < 0.05
  assert 0.2 < s["iou_parts"] < 0.8 and s["err_unique"] == 0.0 < s["err_shared"]


def test_parts_table_scores_cladec_and_refae_per_layer_beside_the_training_mean():
  x, y, maps, class_parts = _planted()
  layers = (ev.LayerResult("-5 (conv3a)", (4, 4, 256), ev.Recons((x, x)),
                           ev.Recons((np.full_like(x, 0.9),) * 2)),
            ev.LayerResult("-1 (logits)", (6,), None, ev.Recons((x,))))
  results = ev.Results(layers, {}, "", (), None, "", (), "", (), 0, y, x.mean(0), 6)
  info = ev.RunInfo(_config(), "planted", 6, len(y), (32, 32, 1), (0, 1), None, 0, 5)
  table = cladec_parts.parts_table(results, x, y, maps, class_parts, info)
  assert [(r["layer"], r["decoder"]) for r in table.rows] == [
      ("-", "training-mean image"), ("-5 (conv3a)", "ClaDec"), ("-5 (conv3a)", "RefAE"),
      ("-1 (logits)", "RefAE")]
  assert table.rows[1]["contrast_unique"] == pytest.approx(1.0)
  assert table.rows[1]["per_seed"]["iou_parts"] == [1.0, 1.0]
  assert table.rows[2]["contrast_unique"] == 0.0 and table.rows[2]["contrast_unique_std"] == 0.0
  assert np.isnan(table.rows[3]["contrast_unique_std"])  # one seed: no sample std
  assert 0.0 < table.rows[0]["contrast_unique"] < 0.5  # the mean image: parts blurred away
  assert table.name == "cladec_planted_parts" and any("how to read" in n for n in table.notes)
  assert cladec_parts.planted_tables(results, x, y, None, info) == []
