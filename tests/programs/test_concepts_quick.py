"""The quick concept run (configs/concepts.py:quick) end to end on digits with the
real VGG and the real DeepLift + SmoothGrad: files written, tables of the right
shapes. The VGG has random weights (seed 1 predicts several digits on the first
200 test images), so this checks the plumbing, not the numbers.
"""
import json
import os

import jax
import pytest

from jaxconcepts.programs import concepts as concepts_pipeline
from jaxconcepts import data as data_lib
from jaxconcepts.models import classifiers as models
from jaxconcepts.programs import cli

_CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "concepts.py")


def _config(arg):
  return cli.load_config(f"{_CONFIG}:{arg}" if arg else _CONFIG)


def _tables(workdir, name):
  with open(os.path.join(workdir, "results", name + ".json")) as f:
    return json.load(f)["tables"]


def test_config_arguments_and_defaults():
  c = _config(None)
  assert (c.layer, c.n_images_per_class, c.n_concepts, c.n_samples) == ("conv2a", 60, 6, 20)
  assert (c.noise_std, c.baseline, c.contrast_threshold, c.epochs, c.lr) == (
      0.25, 1.0, 0.25, 100, 0.01)
  assert c.shift_offsets == (0.0, 0.5, 1.0, 2.0, 10.0, 15.0, 20.0, 35.0, 50.0, 200.0)
  assert c.classes is None and c.score_order == "mean_then_relu"
  c = _config("layer=conv3a,classes=0:3:5,score_order=relu_then_mean")
  assert (c.layer, c.classes, c.score_order) == ("conv3a", (0, 3, 5), "relu_then_mean")
  assert _config("quick").data.dataset == "planted"
  with pytest.raises(ValueError, match="score_order"):
    _config("score_order=median")


def test_quick_config_runs_end_to_end_on_digits_with_the_vgg(tmp_path):
  config = _config("quick")  # on a digits classifier: its own data, the quick settings
  config.classes = (2, 3, 4, 8)  # class 2: no image predicted (recorded)
  config.pairs_to_plot = ((4, 8), (3, 9))  # 9 is not among the classes (recorded)
  config.max_images = 200
  config.n_images_per_class = 8
  config.n_samples = 2
  ds = data_lib.load_dataset("digits", "digits", image_size=32)
  model = models.create_model("vgg", 10)
  variables = models.init_variables(model, jax.random.PRNGKey(1), (32, 32, 1))
  out = concepts_pipeline.run_concepts_evaluation(config, str(tmp_path), model, variables, ds)

  stitch = _tables(tmp_path, "stitch_test")
  rows = stitch["per class"]["rows"]
  assert [r["class"] for r in rows] == [2, 3, 4, 8]
  assert rows[0]["status"].startswith("failed")
  ran = [r for r in rows if r["status"] == "ok"]
  assert ran and all(0.0 <= r["prob_all"] <= 1.0 for r in ran)
  for table in ("table 1 (crops from all images)", "table 2 (excluding the class)"):
    summary = stitch[table]["rows"]
    assert len(summary) == 1 and summary[0]["n_classes"] == len(ran)
    assert {"mean_prob", "std_prob", "pct_predicted", "pct_above_0.1", "pct_above_0.2",
            "pct_above_0.5"} <= set(summary[0])
  shift = _tables(tmp_path, "shift_test")
  assert len(shift["per ordered pair (B -> A)"]["rows"]) == 12
  assert {"default_pred", "shifted_pred", "pct_swap_0.1", "pct_swap_0.2",
          "pct_swap_0.5"} <= set(shift["table 3"]["rows"][0])
  bias = _tables(tmp_path, "bias_probe")
  assert bias["stitched contrast concepts"]["rows"][1]["status"].startswith("failed")
  assert out["files"] and all(os.path.exists(f) for f in out["files"])
  assert os.path.exists(os.path.join(tmp_path, "figures", "stitched.png"))


@pytest.mark.slow
def test_quick_run_on_the_planted_set_finds_the_planted_parts(tmp_path):
  """The quick config on a briefly trained VGG (the planted set, 2 epochs): the
  concepts' top crops cover the classes' planted parts far better than random crops
  of the same images, and the planted-parts table and summary say so. (The full
  quick run -- 3000 images, 6 epochs, 20 images per class, 4 samples -- measured
  coverage 0.98 against 0.48 for random crops, contrast pairs 0.80 against 0.32.)"""
  from jaxconcepts.programs import classifier  # pylint: disable=g-import-not-at-top
  clf_config = cli.load_config(
      os.path.join(os.path.dirname(_CONFIG), "classifier.py") + ":source=planted,epochs=2")
  ds = classifier.load_data(clf_config.data)
  model, fit = classifier.train_classifier(clf_config, str(tmp_path / "clf"), dataset=ds)
  variables = {"params": fit.state.params, "batch_stats": fit.state.batch_stats}
  config = _config("quick")
  out = concepts_pipeline.run_concepts_evaluation(config, str(tmp_path / "c"), model,
                                                  variables, ds)
  summary = {r["what"]: r for r in out["planted_parts"]}
  classes = summary["classes (their parts)"]
  assert classes["n"] == 6
  assert classes["coverage"] >= 2 * classes["random_coverage"], (classes, out["stitch_test"])
  assert classes["coverage"] >= classes["random_coverage"] + 0.25, classes
  pairs = summary["contrast pairs (separating parts)"]
  assert pairs["n"] == 4 and pairs["coverage"] > pairs["random_coverage"], pairs
  table = _tables(tmp_path / "c", "planted_parts")
  assert len(table["per class"]["rows"]) == 6
