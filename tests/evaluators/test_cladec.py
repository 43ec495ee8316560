"""ClaDec evaluators: rows from computed results (no model, no files), and figure grids."""
import numpy as np
import pytest

from jaxconcepts.evaluators import cladec as ev
from jaxconcepts.evaluators import cladec_figures as figs


def _x(n=4, value=0.0):
  return np.full((n, 8, 8, 1), value, np.float32)


def test_mean_std_ignores_nan_and_is_nan_without_values():
  assert ev.mean_std([1.0, float("nan"), 3.0]) == (2.0, 1.0)
  m, s = ev.mean_std([float("nan")])
  assert np.isnan(m) and np.isnan(s)


def test_layer_row_has_per_seed_values_and_deltas():
  x = _x()
  cla = ev.Recons((_x(value=0.5), _x(value=0.25)), (0.5, 0.7))
  ref = ev.Recons((_x(value=1.0), _x(value=1.0)), (0.25, float("nan")))
  row = ev.layer_row(ev.LayerResult("-5 (conv3a)", (4, 4, 256), cla, ref), x, "sum")
  assert row["per_seed"]["rec_cladec"] == [16.0, 4.0]  # 64 pixels x 0.25 and x 0.0625
  assert row["rec_cladec"] == 10.0 and row["rec_refae"] == 64.0
  assert row["delta_rec"] == -54.0 and row["shape"] == "4x4x256"
  assert row["acc_eval_refae"] == 0.25 and row["delta_acc"] == pytest.approx(0.35)
  missing = ev.layer_row(ev.LayerResult("conv4", (2,), None, ref), x, "mean")
  assert np.isnan(missing["rec_cladec"]) and missing["per_seed"]["rec_cladec"] == []
  assert missing["rec_refae"] == 1.0


def test_alpha_row_is_eq1_on_the_test_set():
  x = _x(2)
  labels = np.array([0, 1])
  logits = np.array([[5.0, 0.0], [0.0, 5.0]], np.float32)
  recons = ev.Recons((_x(2, 0.5),), (0.9,), (logits,))
  row0 = ev.alpha_row(0.0, recons, x, labels, "sum")
  assert row0["total_loss"] == row0["rec_loss"] == 16.0
  assert row0["acc_classifier_on_recon"] == 1.0 and row0["acc_eval_cladec"] == 0.9
  row1 = ev.alpha_row(1.0, recons, x, labels, "sum")
  assert row1["total_loss"] == pytest.approx(row1["classifier_loss"])
  assert set(row1["per_seed"]) == {"total", "rec", "ce", "acc_c", "acc_eval"}


def test_occlusion_row_averages_trials_over_seeds():
  trials = ({"acc_max": 0.5, "acc_min": 0.75, "delta_acc": 0.25},
            {"acc_max": 0.25, "acc_min": 0.75, "delta_acc": 0.5})
  row = ev.occlusion_row(ev.OcclusionResult("-1 (logits)", (10,), trials, trials[:1]))
  assert row["cladec_acc_max"] == 0.375 and row["cladec_acc_max_std"] == 0.125
  assert row["gradcam_delta_acc"] == 0.25 and row["spatial"] == "10"
  empty = ev.occlusion_row(ev.OcclusionResult("x", (1,), (), trials))
  assert np.isnan(empty["cladec_acc_min"])


def test_tables_writes_only_what_the_results_hold():
  x = _x()
  info = ev.RunInfo(config=_config(), dataset="digits", num_train=8, num_test=4,
                    image_shape=(8, 8, 1), seeds=(0,), classifier_workdir="w",
                    classifier_step=3, kernel_size=5, warnings=("WARNING: x",))
  results = ev.Results(layers=(ev.LayerResult("a", (2,), ev.Recons((x,), (0.5,)), None),),
                       alpha={}, alpha_label="", epochs=(), epochs_refae=None, epochs_label="",
                       subsets=(ev.SubsetResult("nested", 0, 4, ev.Recons((x,))),),
                       subset_label="a", occlusion=(), occlusion_images=0,
                       predictions=np.zeros(4, int))
  out = ev.tables(results, x, np.zeros(4, int), info)
  assert [t.name for t in out] == ["cladec_layers", "cladec_subsets"]
  assert out[0].notes[-2] == "WARNING: x" and "rec reduction: sum" in out[0].notes[0]
  assert out[1].rows == [{"kind": "nested", "neurons": "0-3", "n_neurons": 4,
                          "rec_cladec": 0.0, "rec_cladec_std": 0.0}]


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
