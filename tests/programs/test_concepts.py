"""The whole concept evaluation (`programs/concepts.py`) on the toy PartsNet of
tests/methods/test_concepts.py, where every table entry is known: classes 0 and
1 are explained by their three parts, class 2 is never predicted, a class whose
attribution leaves too few pixel vectors is recorded and the run goes on; a
second checkpoint compiles nothing new.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconcepts.methods import contrast as ct
from jaxconcepts.methods import crops as crops_lib
from jaxconcepts.models import split as split_lib
from jaxconcepts.programs import cli
from jaxconcepts.programs import concepts as concepts_pipeline
from tests.methods.test_concepts import CHANNELS
from tests.methods.test_concepts import PartsNet
from tests.methods.test_concepts import parts_dataset
from tests.methods.test_concepts import small_config
from tests.methods.test_concepts import toy_attribution


@pytest.fixture(scope="module")
def parts_model():
  model = PartsNet()
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, CHANNELS)))
  return model, {k: v for k, v in variables.items() if k != "taps"}


def _concepts_config(arg):
  path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "concepts.py")
  return cli.load_config(f"{path}:{arg}" if arg else path)


def _read(workdir, name):
  with open(os.path.join(workdir, "results", name + ".json")) as f:
    return json.load(f)


def test_pipeline_on_the_toy_model_gives_the_known_tables_and_records_failures(
    parts_model, tmp_path):
  model, variables = parts_model
  out = concepts_pipeline.run_concepts_evaluation(
      small_config(), str(tmp_path), model, variables, parts_dataset(),
      attribution_fn=toy_attribution)
  stitch = _read(tmp_path, "stitch_test")
  per_class = stitch["tables"]["per class"]["rows"]
  assert [r["class"] for r in per_class] == [0, 1, 2]
  # class 2 is never predicted: recorded, the others ran
  assert per_class[2]["status"].startswith("failed: the model predicts this class for no")
  for r in per_class[:2]:
    assert r["status"] == "ok" and r["n_images"] == 12
    assert r["predicted_all"] and r["predicted_excl"]
    assert r["prob_all"] > 0.9 and r["prob_excl"] > 0.9
  t1 = stitch["tables"]["table 1 (crops from all images)"]["rows"][0]
  assert t1["n_classes"] == 2 and t1["n_failed"] == 1 and t1["pct_predicted"] == 100.0
  assert out["stitch_test"]["table2"]["pct_above_0.5"] == 100.0
  assert stitch["stitch_layout"] == "vertical"  # PartsNet takes any input size

  shift = _read(tmp_path, "shift_test")
  pairs = shift["tables"]["per ordered pair (B -> A)"]["rows"]
  assert len(pairs) == 6  # all ordered pairs of 3 classes
  ok = [r for r in pairs if r["status"] == "ok"]
  assert {(r["from_b"], r["to_a"]) for r in ok} == {(0, 1), (1, 0)}
  for r in ok:
    assert r["default_pred"] < 0.1 and r["shifted_pred"] > 0.9
    assert r["swap_0.5"] and r["flip_rate"] == 1.0 and r["best_offset"] > 0
  t3 = shift["tables"]["table 3"]["rows"][0]
  assert t3["n_pairs"] == 2 and t3["n_failed"] == 4 and t3["pct_swap_0.5"] == 100.0

  bias = _read(tmp_path, "bias_probe")
  rows = bias["tables"]["bias probe (Table 4)"]["rows"]
  assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
  # a part of class 0 pasted into class-1 images raises p(0); a blank square less so
  assert all(r["crop_from_class_a"] and r["crop_image_pred"] == 0 for r in rows)
  assert all(r["pasted_a"] > r["orig_a"] and r["pasted_a"] > r["blank_a"] for r in rows)
  contrast_stitch = bias["tables"]["stitched contrast concepts"]["rows"][0]
  assert contrast_stitch["argmax"] == 0 and contrast_stitch["prob_a"] > 0.9

  for name in ("stitch_test", "shift_test", "bias_probe"):
    with open(os.path.join(tmp_path, "results", name + ".md")) as f:
      assert "|" in f.read()
  for f in ("concepts/class_000.png", "concepts/class_001.png", "stitched.png",
            "contrast/000_vs_001.png"):
    assert os.path.getsize(os.path.join(tmp_path, "figures", f)) > 0
  assert not os.path.exists(os.path.join(tmp_path, "figures", "concepts", "class_002.png"))
  assert out["failures"]["classes"] == {2: per_class[2]["status"]}


def test_pipeline_records_a_class_with_fewer_vectors_than_concepts_and_goes_on(
    parts_model, tmp_path):
  model, variables = parts_model

  def sparse_for_class_1(model, variables, images, target, layer, **kw):
    attr = toy_attribution(model, variables, images, target, layer, **kw)
    if int(target[0]) == 1:  # one positive pixel (in the first image) only
      n, h, w, _ = attr.shape
      best = int(jnp.argmax(attr[0].mean(-1)))
      keep = jnp.zeros((n, h * w), bool).at[0, best].set(True).reshape(n, h, w)
      attr = jnp.where(keep[..., None], attr, -jnp.abs(attr) - 1.0)
    return attr

  out = concepts_pipeline.run_concepts_evaluation(
      small_config(classes=(1, 0), pairs_to_plot=((1, 0),)), str(tmp_path), model,
      variables, parts_dataset(), attribution_fn=sparse_for_class_1)
  rows = _read(tmp_path, "stitch_test")["tables"]["per class"]["rows"]
  assert [r["class"] for r in rows] == [1, 0]
  assert "fewer than n_concepts=3" in rows[0]["status"] and rows[0]["n_vectors"] == 1
  assert rows[1]["status"] == "ok" and rows[1]["predicted_all"]
  assert out["stitch_test"]["table1"]["n_classes"] == 1
  # the one vector still takes part in contrasting; the shifting test runs
  shift = _read(tmp_path, "shift_test")["tables"]["per ordered pair (B -> A)"]["rows"]
  assert all(r["status"] == "ok" for r in shift)
  assert next(r for r in shift if r["from_b"] == 1)["shifted_pred"] > 0.9
  bias = _read(tmp_path, "bias_probe")["tables"]["bias probe (Table 4)"]["rows"]
  assert "fewer than n_concepts=3" in bias[0]["status"]  # A = 1 has one vector


def test_pipeline_rejects_bad_configuration_before_running(parts_model, tmp_path):
  model, variables = parts_model
  ds = parts_dataset(4)
  calls = []

  def counting(*args, **kw):
    calls.append(1)
    return toy_attribution(*args, **kw)

  def run(**kw):
    concepts_pipeline.run_concepts_evaluation(
        small_config(**kw), str(tmp_path), model, variables, ds, attribution_fn=counting)

  with pytest.raises(ValueError, match="without spatial extent"):
    run(layer="logits")
  with pytest.raises(ValueError, match="unknown layer"):
    run(layer="conv9")
  with pytest.raises(ValueError, match=r"n_concepts=10 must lie in \[1, 9\]"):
    run(n_concepts=10)
  with pytest.raises(ValueError, match="out of range"):
    run(classes=(0, 5))
  with pytest.raises(ValueError, match="pairs_to_plot"):
    run(pairs_to_plot=((1, 1),))
  with pytest.raises(ValueError, match="score_order"):
    run(score_order="mean")
  with pytest.raises(ValueError, match="stitch layout"):
    run(stitch_layout="diagonal")
  with pytest.raises(ValueError, match="contrast_threshold"):
    run(contrast_threshold=1.5)
  with pytest.raises(ValueError, match="noise_std_units"):
    run(noise_std_units="normalised")
  with pytest.raises(ValueError, match="bias_blank"):
    run(bias_blank="white")
  assert not calls


def test_noise_is_relative_to_the_data_std_and_the_blank_is_the_mean_colour(parts_model):
  """Departures 6 and 7: the paper's SmoothGrad std 0.25 and its "zeros" are in
  normalised units: 0.25 x the training images' std, and their mean colour."""
  model, variables = parts_model
  ds = parts_dataset(4)
  train = np.asarray(ds.train_images, np.float64)
  run = concepts_pipeline.setup(small_config(noise_std_units="data_std", bias_blank="mean"),
                                model, variables, ds)
  assert run.info.data_std == pytest.approx(train.std(), rel=1e-5)
  assert run.info.noise_std == pytest.approx(0.25 * train.std(), rel=1e-5)
  np.testing.assert_allclose(run.info.blank, train.mean(axis=(0, 1, 2)), rtol=1e-5)
  old = concepts_pipeline.setup(small_config(), model, variables, ds)
  assert (old.info.noise_std, old.info.data_std) == (0.25, None)
  assert old.info.blank == (0.0,) * CHANNELS
  assert run.truth is None  # no planted parts in this data set


def test_the_concepts_config_follows_the_paper_by_default():
  c = _concepts_config(None)
  assert (c.noise_std, c.noise_std_units, c.bias_blank, c.shift_rule) == (
      0.25, "data_std", "mean", "paper")
  q = _concepts_config("quick")
  assert (q.data.dataset, q.data.source, q.layer, q.n_concepts) == (
      "planted", "planted", "conv3a", 3)


def test_a_second_checkpoint_of_the_same_architecture_compiles_nothing_new(tmp_path):
  """Every jitted function of the program takes the variables as an argument: a run
  on new weights of the same shapes (here the toy model's one parameter) reuses
  each compilation (counted with the functions' in-memory `_cache_size()`)."""
  # pylint: disable=protected-access
  model = PartsNet()
  jitted = {"predict": split_lib.logits_batch, "encode": split_lib.encode_batch,
            "head": split_lib.head_batch,
            "crop search": crops_lib._search_step, "shifting test": ct._shift_stats_chunk}
  grown = []
  for i, value in enumerate((0.0, 1.0)):
    variables = {"params": {"unused": jnp.float32(value)}}
    before = {name: f._cache_size() for name, f in jitted.items()}
    concepts_pipeline.run_concepts_evaluation(
        small_config(), str(tmp_path / str(i)), model, variables, parts_dataset(),
        attribution_fn=toy_attribution)
    grown.append({name: f._cache_size() - before[name] for name, f in jitted.items()})
  assert all(n >= 0 for n in grown[0].values())  # 0 where an earlier test compiled them
  assert grown[1] == {name: 0 for name in jitted}, grown
