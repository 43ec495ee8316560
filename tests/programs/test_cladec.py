"""The ClaDec program: every bad input caught before training, stage names, end to end."""
import json
import os

import numpy as np
import pytest

from jaxconcepts.programs import cladec as cladec_pipeline
from tests.golden import record

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---------------------------------------------------------------------------
# Pipeline: every bad input is caught before any training
# ---------------------------------------------------------------------------

def _quick_config(**overrides):
  from configs import cladec as cladec_config  # pylint: disable=g-import-not-at-top
  c = cladec_config.get_config("quick")
  for key, value in overrides.items():
    node = c
    parts = key.split(".")
    for p in parts[:-1]:
      node = node[p]
    node[parts[-1]] = value
  return c


def _assert_nothing_trained(workdir):
  assert not os.path.exists(os.path.join(workdir, "checkpoints"))


@pytest.mark.parametrize("key,value", [("alpha", 1.5), ("alphas", (0.0, -0.2))])
def test_pipeline_rejects_alpha_outside_unit_interval(tmp_path, key, value):
  with pytest.raises(ValueError, match="alpha must lie in"):
    cladec_pipeline.train(_quick_config(**{key: value}), str(tmp_path))
  _assert_nothing_trained(tmp_path)


@pytest.mark.parametrize("key,value", [("layers", (-1, "conv9")), ("layers", (-7,)),
                                       ("alpha_layer", -9), ("subsets.layer", -9)])
def test_pipeline_rejects_a_layer_the_model_lacks(tmp_path, key, value):
  with pytest.raises(ValueError, match="unknown layer"):
    cladec_pipeline.train(_quick_config(**{key: value}), str(tmp_path))
  _assert_nothing_trained(tmp_path)


@pytest.mark.parametrize("key,value,match", [
    ("subsets.nested", (513,), "size 513 is larger than layer 'conv4a'.*512"),
    ("subsets.disjoint_count", 17, "17 disjoint neuron subsets of size 32 need 544")])
def test_pipeline_rejects_a_neuron_subset_larger_than_the_layer(tmp_path, key, value, match):
  with pytest.raises(ValueError, match=match):
    cladec_pipeline.train(_quick_config(**{key: value}), str(tmp_path))
  _assert_nothing_trained(tmp_path)


def test_pipeline_rejects_a_missing_classifier_checkpoint(tmp_path):
  clf = tmp_path / "no_classifier"
  clf.mkdir()
  config = _quick_config(classifier_workdir=str(clf))
  with pytest.raises(FileNotFoundError, match="no config.json"):
    cladec_pipeline.train(config, str(tmp_path / "run"))
  (clf / "config.json").write_text("{}")
  with pytest.raises(FileNotFoundError, match="no classifier checkpoint"):
    cladec_pipeline.train(config, str(tmp_path / "run"))
  _assert_nothing_trained(tmp_path / "run")


def test_pipeline_rejects_occlusion_layers_without_decoders(tmp_path):
  with pytest.raises(ValueError, match="occlusion.layers.*must also be in layers"):
    cladec_pipeline.train(_quick_config(**{"layers": (-1, -2), "occlusion.layers": (-5,)}),
                          str(tmp_path))


def test_stage_names_are_stable_and_distinct():
  names = {cladec_pipeline.cladec_stage("conv4", 0.0, "s0-1"),
           cladec_pipeline.cladec_stage("conv4", 0.9, "s0-1"),
           cladec_pipeline.cladec_stage("conv4", 0.0, "s0-1", (0, 32)),
           cladec_pipeline.cladec_stage("conv4", 0.0, "s0-1", clf_epochs=2),
           cladec_pipeline.refae_stage("conv4", "s0-1"),
           cladec_pipeline.eval_stage("cladec", "conv4", 0, 0.0),
           cladec_pipeline.eval_stage("refae", "conv4", 0)}
  assert len(names) == 7
  assert cladec_pipeline.cladec_stage("conv4", 0.0, "s0-1", (0, 32)) == "cladec_conv4_a0_n0-31_s0-1"


# ---------------------------------------------------------------------------
# The quick pipeline end to end, through train.py and evaluate.py
# ---------------------------------------------------------------------------

# The quick config trimmed to one vector and one spatial layer (`record.CLADEC`), run exactly as
# the golden recording is (one CPU device, -O0 compiles): its tables must equal a recording.
def _run_cli(program, workdir):
  record.run(ROOT, program, record.CLADEC, workdir)


def _table(workdir, stem):
  with open(os.path.join(workdir, "results", stem + ".json")) as f:
    return json.load(f)


def _assert_health_and_summary(workdir, tables):
  """Every row has a status; the summary lists exactly the rows' problems."""
  problems = set()
  for table in tables:
    for row in table["rows"]:
      assert row["status"] in ("ok", "collapsed", "chance", "nan", "missing")
      problems |= {(col, st) for col, st in row["checks"].items()
                   if st in ("collapsed", "chance", "nan")}
    assert "status" in table["columns"]
  assert "rec_black" in tables[0]["columns"] and "chance" in tables[0]["columns"]
  summary = _table(workdir, "summary")
  assert {(r["column"], r["status"]) for r in summary["rows"]} == problems
  assert summary["columns"] == ["table", "row", "column", "status", "note"]


@pytest.mark.slow
def test_quick_pipeline_trains_resumes_and_writes_the_recorded_tables_and_every_figure(tmp_path):
  workdir = str(tmp_path / "quick")
  _run_cli("train.py", workdir)
  ckpts = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  assert {"classifier", "refae_logits_s0-1", "refae_conv3a_s0-1", "cladec_logits_a0_s0-1",
          "cladec_logits_a0.5_s0-1", "cladec_conv3a_a0_s0-1", "cladec_conv3a_a0_n4-7_s0-1",
          "cladec_logits_a0_clf1ep_s0-1", "eval_refae_conv3a_s1",
          "eval_cladec_logits_a0.5_s0"} <= set(ckpts)
  _run_cli("train.py", workdir)  # everything is done: nothing retrains
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ckpts
  _run_cli("evaluate.py", workdir)
  closest, diffs = record.closest_recording(record.tables("cladec", workdir))
  assert not diffs, f"closest recording {closest}:\n" + "\n".join(diffs[:40])

  layers = _table(workdir, "cladec_layers")
  assert [r["layer"] for r in layers["rows"]] == ["-1 (logits)", "-5 (conv3a)"]
  assert layers["columns"][:3] == ["layer", "shape", "rec_cladec"]
  assert any("rec reduction: sum" in n for n in layers["notes"])
  assert any("seeds: [0, 1]" in n for n in layers["notes"])
  assert any("ClaDec decoders 1 epochs" in n for n in layers["notes"])
  for row in layers["rows"]:
    for key in ("rec_cladec", "rec_refae", "acc_eval_cladec", "acc_eval_refae"):
      assert np.isfinite(row[key]) and len(row["per_seed"][key]) == 2
    assert row["delta_rec"] == pytest.approx(row["rec_cladec"] - row["rec_refae"])
  alpha = _table(workdir, "cladec_alpha")
  assert [r["alpha"] for r in alpha["rows"]] == [0.5, 0.0]
  r0 = alpha["rows"][1]
  assert r0["total_loss"] == pytest.approx(r0["rec_loss"])
  epochs = _table(workdir, "cladec_training_epochs")
  assert [r["classifier_epochs"] for r in epochs["rows"]] == [0, 1]
  assert len({r["rec_refae"] for r in epochs["rows"]}) == 1
  subsets = _table(workdir, "cladec_subsets")
  assert [(r["kind"], r["neurons"]) for r in subsets["rows"]] == [
      ("nested", "0-3"), ("disjoint", "0-3"), ("disjoint", "4-7")]
  occl = _table(workdir, "occlusion")
  assert len(occl["rows"]) == 2
  row = occl["rows"][0]
  # the logits have no spatial extent (all squares would tie): GradCAM runs at conv4a
  assert row["gradcam_layer"] == "-3 (conv4a)" and occl["rows"][1]["gradcam_layer"] == "-5 (conv3a)"
  assert any("moved here: -1 (logits) -> -3 (conv4a)" in n for n in occl["notes"])
  for key in ("cladec_acc_max", "cladec_acc_min", "gradcam_acc_max", "gradcam_acc_min"):
    assert 0.0 <= row[key] <= 1.0
  assert {"clf_run0_e0", "clf_run1_e1"} <= set(ckpts)  # Table 6: own runs
  _assert_health_and_summary(workdir, [layers, alpha, epochs, subsets, occl])
  for stem in ("cladec_layers", "cladec_alpha", "cladec_training_epochs", "cladec_subsets",
               "occlusion", "summary"):
    assert os.path.exists(os.path.join(workdir, "results", stem + ".md"))
  for fig in ("cladec_layers", "cladec_alpha", "cladec_training_epochs",
              "cladec_subsets_nested", "cladec_subsets_disjoint", "occlusion"):
    path = os.path.join(workdir, "figures", fig + ".png")
    assert os.path.getsize(path) > 1000, path


def test_prepare_builds_a_resnet_decoder_at_full_resolution_before_training(tmp_path):
  # ResNet-10's layer -5 is 32x32: its decoder has no upsampling stage, and prepare builds
  # it (and every other layer's decoder) before any stage trains.
  plan = cladec_pipeline.prepare(
      _quick_config(arch="resnet10", layers=(-1, -5), alpha_layer=-1, alphas=(),
                    **{"subsets.nested": (), "subsets.disjoint_count": 0,
                       "classifier_epochs": (), "occlusion.layers": ()}), str(tmp_path))
  assert plan.layer_shapes["layer1.0"] == (32, 32, 64)
  assert set(plan.decoders) == {(6,), (32, 32, 64)}  # the quick run: 6 planted classes
  _assert_nothing_trained(tmp_path)


def test_resnet_alpha_sweep_has_the_papers_0_99():
  from configs import cladec as cladec_config  # pylint: disable=g-import-not-at-top
  assert cladec_config.get_config("arch=resnet10").alphas == (1.0, 0.999, 0.99, 0.9, 0.0)
  assert 0.99 not in cladec_config.get_config().alphas  # VGG's Table 4 has none
  assert 0.99 in cladec_config.get_config("fmnist=True,arch=resnet10").alphas


def test_fmnist_config_runs_table6_and_disjoint_subsets_of_two_percent():
  from configs import cladec as cladec_config  # pylint: disable=g-import-not-at-top
  c = cladec_config.get_config("fmnist=True")
  assert tuple(c.classifier_epochs) == (0, 1, 2) and c.classifier_epochs_runs == "own"
  assert c.subsets.disjoint_size is None and c.subsets.disjoint_fraction == 0.02


def test_table6_classifiers_are_own_runs_unless_snapshots_are_asked_for(tmp_path):
  plan = cladec_pipeline.prepare(_quick_config(**{"classifier_epochs": (0, 2, 4)}),
                                 str(tmp_path))
  runs = {e: cladec_pipeline._sweep_run(plan, e) for e in (0, 2, 4)}  # pylint: disable=protected-access
  assert [runs[e][0] for e in (0, 2, 4)] == ["clf_run0", "clf_run2", "clf_run4"]
  assert [runs[e][1].num_epochs for e in (0, 2, 4)] == [1, 2, 4]  # own schedules
  plan = cladec_pipeline.prepare(_quick_config(**{"classifier_epochs": (0, 2, 4),
                                                  "classifier_epochs_runs": "snapshots"}),
                                 str(tmp_path))
  assert {cladec_pipeline._sweep_run(plan, e)[0] for e in (0, 2, 4)} == {"clf_sweep"}  # pylint: disable=protected-access
  with pytest.raises(ValueError, match="classifier_epochs_runs"):
    cladec_pipeline.prepare(_quick_config(classifier_epochs_runs="some"), str(tmp_path))


# ---------------------------------------------------------------------------
# The alpha trade-off: one grid, saved as the per-alpha stages
# ---------------------------------------------------------------------------

def _grid_plan(workdir, alphas=(0.5, 0.0)):
  c = _quick_config(**{"layers": (-1,), "alpha_layer": -1, "alphas": alphas,
                       "subsets.nested": (), "subsets.disjoint_count": 0,
                       "classifier_epochs": (), "occlusion.layers": ()})
  c.data.max_train, c.data.max_test, c.batch_size, c.eval_batch_size = 64, 32, 32, 32
  c.decoder_epochs = 1
  return cladec_pipeline.prepare(c, str(workdir))


def _restored_params(plan, alpha):
  from jaxconcepts.methods import cladec  # pylint: disable=g-import-not-at-top
  from jaxconcepts.train import checkpoints  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  shape = plan.layer_shapes[plan.alpha_layer]
  abstract = jax.eval_shape(lambda: cladec.init_decoder_seeds(
      plan.decoders[shape], shape, plan.decoder_opt[0], plan.seeds))
  name = cladec_pipeline.cladec_stage(plan.alpha_layer, alpha, plan.seed_tag)
  state, step = checkpoints.restore_latest(checkpoints.stage_dir(plan.workdir, name), abstract)
  return state.params, step


@pytest.mark.slow
def test_alpha_tradeoff_trains_in_one_run_and_saves_each_alpha_as_its_own_stage(
    tmp_path, monkeypatch):
  import jax  # pylint: disable=g-import-not-at-top
  from jaxconcepts.models import classifiers as models  # pylint: disable=g-import-not-at-top
  from jaxconcepts.programs import cladec_grid  # pylint: disable=g-import-not-at-top
  from jaxconcepts.train import trainer as training  # pylint: disable=g-import-not-at-top
  plan = _grid_plan(tmp_path / "grid")
  variables = models.init_variables(plan.model, jax.random.PRNGKey(1), plan.image_shape)
  fits = []
  fit = training.fit
  monkeypatch.setattr(training, "fit", lambda **kw: fits.append(kw["name"]) or fit(**kw))
  names = cladec_grid.train_alpha_grid(plan, variables)
  assert fits == ["cladec_logits_grid_a0.5-0_s0-1"]  # every alpha and seed: one fit run
  assert names == ["cladec_logits_a0.5_s0-1", "cladec_logits_a0_s0-1"]
  ckpts = os.listdir(os.path.join(plan.workdir, "checkpoints"))
  assert "cladec_logits_grid_a0.5-0_s0-1" not in ckpts and set(names) <= set(ckpts)  # no copy
  assert cladec_grid.train_alpha_grid(plan, variables) == names and len(fits) == 1  # done
  # Each alpha's decoders equal the ones its own stage trains (a workdir from before the
  # grid: alpha 0.5 done there, so the grid saves alpha 0 only and keeps the other as it is).
  alone = _grid_plan(tmp_path / "alone")
  cladec_pipeline._train_cladec(alone, variables, "logits", 0.5)  # pylint: disable=protected-access
  before = _restored_params(alone, 0.5)
  cladec_grid.train_alpha_grid(alone, variables)
  assert len(fits) == 3
  for alpha in (0.5, 0.0):
    (grid, step), (own, own_step) = _restored_params(plan, alpha), _restored_params(alone, alpha)
    assert step == own_step == 2
    for a, b in zip(jax.tree.leaves(grid), jax.tree.leaves(own)):
      np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
  for a, b in zip(jax.tree.leaves(before[0]), jax.tree.leaves(_restored_params(alone, 0.5)[0])):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_evaluation_classifiers_of_every_seed_train_in_one_run_as_their_own_runs(
    tmp_path, monkeypatch):
  import jax  # pylint: disable=g-import-not-at-top
  from jaxconcepts.programs import classifier as classifier_lib  # pylint: disable=g-import-not-at-top
  from jaxconcepts.programs import cladec_grid  # pylint: disable=g-import-not-at-top
  from jaxconcepts.train import checkpoints  # pylint: disable=g-import-not-at-top
  from jaxconcepts.train import trainer as training  # pylint: disable=g-import-not-at-top
  plan = _grid_plan(tmp_path / "group")
  ec = plan.config.eval_classifier
  ec.num_epochs, ec.batch_size = 1, 24  # 64 images: 3 batches, the last one padded
  recons = lambda i, x: np.clip(x + 0.1 * i, 0.0, 1.0).astype(np.float32)  # pylint: disable=unnecessary-lambda-assignment
  fits = []
  fit = training.fit
  monkeypatch.setattr(training, "fit", lambda **kw: fits.append(kw["name"]) or fit(**kw))
  cladec_grid.train_eval_classifiers(plan, "refae", "logits", lambda: recons)
  assert fits == ["eval_refae_logits_seeds0-1"]  # both seeds: one fit run
  ckpts = os.listdir(os.path.join(plan.workdir, "checkpoints"))
  assert "eval_refae_logits_seeds0-1" not in ckpts  # the stacked copy is deleted once split
  cladec_grid.train_eval_classifiers(plan, "refae", "logits", lambda: recons)
  assert len(fits) == 1  # done: every seed's stage is there
  for i, seed in enumerate(plan.seeds):
    cfg = cladec_pipeline.classifier_config(plan, 1, seed, ec)
    _, own = classifier_lib.train_classifier(cfg, str(tmp_path / "own"), name=f"own{seed}",
                                             dataset=plan.dataset,
                                             train_images=recons(i, plan.dataset.train_images))
    restored = classifier_lib.restore_variables(
        checkpoints.stage_dir(plan.workdir, cladec_pipeline.eval_stage("refae", "logits", seed)),
        plan.model, cfg, plan.image_shape, plan.dataset.num_train)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(
        {"params": own.state.params, "batch_stats": own.state.batch_stats})):
      np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4)
