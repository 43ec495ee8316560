"""ClaDec: Eq. 1, the frozen classifier, RefAE, vmapped seeds, occlusion, config checks."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxconcepts.methods import cladec
from jaxconcepts.programs import cladec as cladec_pipeline
from jaxconcepts.models import decoders
from jaxconcepts.models import classifiers as models
from jaxconcepts.methods import occlusion as occ
from jaxconcepts.train import trainer as training

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SMALL = dict(widths=(4, 4, 8, 8, 8, 8, 16, 16))


# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------

def test_rec_loss_sums_or_averages_over_pixels_per_image():
  x = jnp.zeros((2, 4, 4, 1))
  x_hat = jnp.ones((2, 4, 4, 1)) * jnp.array([0.5, 1.0])[:, None, None, None]
  np.testing.assert_allclose(cladec.per_image_rec(x_hat, x, "sum"), [4.0, 16.0])
  np.testing.assert_allclose(cladec.per_image_rec(x_hat, x, "mean"), [0.25, 1.0])


@pytest.mark.parametrize("use_jit", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_cladec_loss_is_eq1_with_padding_masked(alpha, use_jit):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(3, 4, 4, 1)), jnp.float32)
  x_hat = jnp.asarray(rng.uniform(size=(3, 4, 4, 1)), jnp.float32)
  logits = jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)
  labels = jnp.array([1, 2, 0])
  mask = jnp.array([True, True, False])
  fn = lambda *a: cladec.cladec_loss(*a, alpha, "sum", mask)  # pylint: disable=unnecessary-lambda-assignment
  loss, parts = (jax.jit(fn) if use_jit else fn)(x_hat, x, logits, labels)
  rec = np.sum((np.asarray(x_hat) - np.asarray(x)) ** 2, axis=(1, 2, 3))[:2].mean()
  ce = np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, labels))[:2].mean()
  np.testing.assert_allclose(loss, (1 - alpha) * rec + alpha * ce, rtol=1e-5)
  np.testing.assert_allclose(parts["rec_sum"], 2 * rec, rtol=1e-5)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_alpha_outside_unit_interval_is_rejected(alpha):
  with pytest.raises(ValueError, match="alpha must lie in"):
    cladec.check_alpha(alpha)


def test_unknown_rec_reduction_is_rejected():
  with pytest.raises(ValueError, match="rec_reduction 'median'"):
    cladec.per_image_rec(jnp.zeros((1, 2, 2, 1)), jnp.zeros((1, 2, 2, 1)), "median")


def test_pack_unpack_round_trip():
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(5, 4, 4, 1)).astype(np.float32)
  codes = rng.normal(size=(5, 2, 2, 3)).astype(np.float32)
  x, c = cladec.unpack(jnp.asarray(cladec.pack(images, codes)), (4, 4, 1), (2, 2, 3))
  np.testing.assert_array_equal(x, images)
  np.testing.assert_array_equal(c, codes)


# ---------------------------------------------------------------------------
# Steps: frozen classifier, vmapped seeds, RefAE
# ---------------------------------------------------------------------------

def _classifier():
  model = models.create_model("vgg", 4, **_SMALL)
  variables = models.init_variables(model, jax.random.PRNGKey(0), (32, 32, 1))
  return model, variables


def _batch(n=8, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.uniform(size=(n, 32, 32, 1)).astype(np.float32),
          rng.integers(0, 4, size=n).astype(np.int32))


def _cladec_setup(alpha, seeds, layer="conv3a"):
  model, variables = _classifier()
  images, labels = _batch()
  codes = np.asarray(model.apply(variables, images, stop=layer))
  dec = decoders.create_decoder(codes.shape[1:], (32, 32, 1))
  tx = training.create_optimizer("adam", 1e-3)
  state = cladec.init_seeds(lambda k: dec.init(k, jnp.zeros((1, *codes.shape[1:]))), tx,
                            dec.apply, seeds)
  step = cladec.make_cladec_step(dec, lambda x: model.apply(variables, x), (32, 32, 1),
                                 codes.shape[1:], alpha)
  batch = {"image": jnp.asarray(cladec.pack(images, codes)), "label": jnp.asarray(labels),
           "mask": jnp.ones(len(labels), bool)}
  return model, variables, state, step, batch


def test_vmapped_seeds_equal_seeds_trained_one_by_one():
  _, _, both, step, batch = _cladec_setup(0.5, (3, 7))
  run = jax.jit(step)
  key = jax.random.PRNGKey(0)
  for _ in range(2):
    both, _ = run(both, batch, key)
  for i, seed in enumerate((3, 7)):
    _, _, one, step1, _ = _cladec_setup(0.5, (seed,))
    for _ in range(2):
      one, _ = jax.jit(step1)(one, batch, key)
    for a, b in zip(jax.tree.leaves(cladec.seed_slice(both.params, i)),
                    jax.tree.leaves(cladec.seed_slice(one.params, 0))):
      np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_classifier_is_frozen_but_its_gradient_reaches_the_decoder():
  model, variables, state, step, batch = _cladec_setup(1.0, (0,))
  before = jax.tree.map(np.asarray, variables)
  new, metrics = jax.jit(step)(state, batch, jax.random.PRNGKey(0))
  # alpha = 1: only the classification loss, so any decoder update came through C.
  moved = [np.abs(np.asarray(a) - np.asarray(b)).max()
           for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params))]
  assert max(moved) > 0
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(variables)):
    np.testing.assert_array_equal(a, b)
  assert float(metrics["rec"]) > 0 and float(metrics["count"]) == 8.0


def test_alpha_zero_does_not_call_the_classifier():
  model, variables = _classifier()
  images, labels = _batch()
  codes = np.asarray(model.apply(variables, images, stop="conv3a"))
  dec = decoders.create_decoder(codes.shape[1:], (32, 32, 1))

  def boom(x):
    raise AssertionError("the classifier must not run for alpha = 0")

  step = jax.jit(cladec.make_cladec_step(dec, boom, (32, 32, 1), codes.shape[1:], 0.0))
  state = cladec.init_seeds(lambda k: dec.init(k, jnp.zeros((1, *codes.shape[1:]))),
                            optax.adam(1e-3), dec.apply, (0,))
  batch = {"image": jnp.asarray(cladec.pack(images, codes)), "label": jnp.asarray(labels),
           "mask": jnp.ones(8, bool)}
  _, metrics = step(state, batch, jax.random.PRNGKey(0))
  assert float(metrics["ce"]) == 0.0


def test_refae_has_the_classifier_architecture_up_to_the_layer_and_learns():
  encoder = models.create_model("vgg", 4, **_SMALL)
  dec = decoders.create_decoder((4, 4, 8), (32, 32, 1))
  refae = cladec.RefAE(encoder=encoder, layer="conv3a", decoder=dec)
  images, labels = _batch(16)
  variables = refae.init({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, 32, 32, 1)))
  assert set(variables["params"]["encoder"]) == {"conv0", "conv1", "conv2a", "conv2", "conv3a"}
  state = cladec.init_seeds(
      lambda k: {c: v for c, v in refae.init({"params": k}, jnp.zeros((1, 32, 32, 1))).items()
                 if c != "taps"}, optax.adam(3e-3), refae.apply, (0, 1))
  step = jax.jit(cladec.make_refae_step(refae, "mean"))
  batch = {"image": jnp.asarray(images), "label": jnp.asarray(labels),
           "mask": jnp.ones(16, bool)}
  losses = []
  for i in range(5):
    state, m = step(state, batch, jax.random.PRNGKey(i))
    losses.append(float(m["loss"]))
  assert losses[-1] < losses[0]
  assert jax.tree.leaves(state.batch_stats)[0].shape[0] == 2  # per-seed BatchNorm statistics


# ---------------------------------------------------------------------------
# Occlusion
# ---------------------------------------------------------------------------

def test_sixteen_squares_of_twelve_pixels_at_the_papers_corners():
  masks = occ.square_masks((32, 32))
  assert masks.shape == (16, 32, 32)
  assert (masks.sum((1, 2)) == 144).all()
  assert masks[0, 0, 0] and masks[-1, 31, 31] and not masks[0, 12, 12]
  with pytest.raises(ValueError, match="do not fit"):
    occ.square_masks((28, 28), corners=(0, 20))


def test_occlude_fills_with_the_training_mean():
  x = np.ones((2, 32, 32, 1), np.float32)
  fill = occ.training_fill(np.full((3, 32, 32, 1), 0.25, np.float32))
  out = occ.occlude(x, occ.square_masks((32, 32)), fill)
  assert out.shape == (2, 16, 32, 32, 1)
  assert out[1, 5][occ.square_masks((32, 32))[5]].max() == 0.25
  assert (out[1, 5][~occ.square_masks((32, 32))[5]] == 1).all()


def test_cladec_relevance_is_the_squared_change_inside_the_square():
  masks = occ.square_masks((32, 32))
  recon = np.zeros((1, 32, 32, 1), np.float32)
  recon_occ = np.zeros((1, 16, 32, 32, 1), np.float32)
  recon_occ[0, 3, 0:2, 30:32] = 2.0  # only square 3 (y=0, x=20) covers these pixels
  r = occ.cladec_relevance(recon, recon_occ, masks)
  assert r.shape == (1, 16)
  assert r[0, 3] == 16.0 and r[0].sum() == 16.0


def test_ties_are_broken_by_one_shared_random_priority():
  rel = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 5.0, 5.0, 0.0]])
  priority = np.array([[0.1, 0.9, 0.5, 0.2], [0.3, 0.2, 0.8, 0.1]])
  i_min, i_max = occ.pick_squares(rel, priority)
  np.testing.assert_array_equal(i_min, [1, 0])
  np.testing.assert_array_equal(i_max, [1, 2])


def test_occlusion_accuracy_and_delta():
  occluded = np.zeros((2, 3, 1, 1, 1), np.float32)
  occluded[:, 1] = 1.0  # square 1 occluded -> the fake classifier predicts 1
  predict = lambda x: (x.reshape(len(x), -1)[:, 0] > 0.5).astype(int)
  acc = occ.occlusion_accuracy(predict, occluded, np.array([0, 0]), np.array([0, 2]),
                               np.array([1, 1]))
  assert acc == {"acc_max": 0.0, "acc_min": 1.0, "delta_acc": 1.0}


def test_gradcam_maps_are_upsampled_normalised_and_constant_without_extent():
  model, variables = _classifier()
  images, _ = _batch(3)
  calls = []

  def fake_gradcam(m, v, x, t, layer):
    calls.append(layer)
    return jnp.arange(4.0)[None].repeat(x.shape[0], 0).reshape(-1, 2, 2)

  maps = occ.gradcam_pixel_maps(fake_gradcam, model, variables, images, np.zeros(3, int),
                                "conv3", (2, 2, 8))
  assert maps.shape == (3, 32, 32)
  assert maps.min() == 0.0 and maps.max() == 1.0
  flat = occ.gradcam_pixel_maps(fake_gradcam, model, variables, images, np.zeros(3, int),
                                "logits", (4,))
  assert calls == ["conv3"] and (flat == 0).all()


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

# The quick config, trimmed to one vector and one spatial layer so that the run stays at a
# couple of minutes on 2 cores (XLA:CPU compiles dominate; -O0 halves them).
_QUICK_TEST_OVERRIDES = [
    "--config.layers=(-1, -5)", "--config.alpha_layer=-1", "--config.alphas=(0.5, 0.0)",
    "--config.subsets.layer=-1", "--config.subsets.nested=(4,)",
    "--config.subsets.disjoint_size=4", "--config.subsets.disjoint_count=2",
    "--config.classifier_epochs=(0, 1)", "--config.classifier_epochs_layer=-1",
    "--config.occlusion.layers=(-1, -5)", "--config.occlusion.n_images=32",
    "--config.figures.n_images=3", "--config.data.max_train=256", "--config.data.max_test=64",
    "--config.eval_batch_size=64", "--config.classifier.num_epochs=2",
    "--config.decoder_epochs=1", "--config.refae_epochs=1", "--config.eval_classifier.num_epochs=1",
]


def _run_cli(program, workdir):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  env = dict(os.environ)
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
  cmd = [sys.executable, os.path.join(ROOT, program),
         f"--config={os.path.join(ROOT, 'configs', 'cladec.py')}:quick",
         f"--workdir={workdir}"] + _QUICK_TEST_OVERRIDES
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-4000:]


def _table(workdir, stem):
  import json  # pylint: disable=g-import-not-at-top
  with open(os.path.join(workdir, "results", stem + ".json")) as f:
    return json.load(f)


@pytest.mark.slow
def test_quick_pipeline_trains_resumes_and_writes_every_table_and_figure(tmp_path):
  workdir = str(tmp_path / "quick")
  _run_cli("train.py", workdir)
  ckpts = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  assert {"classifier", "refae_logits_s0-1", "refae_conv3a_s0-1", "cladec_logits_a0_s0-1",
          "cladec_logits_a0.5_s0-1", "cladec_conv3a_a0_s0-1", "cladec_logits_a0_n4-7_s0-1",
          "cladec_logits_a0_clf1ep_s0-1", "eval_refae_conv3a_s1",
          "eval_cladec_logits_a0.5_s0"} <= set(ckpts)
  _run_cli("train.py", workdir)  # everything is done: nothing retrains
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ckpts
  _run_cli("evaluate.py", workdir)

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
  assert row["gradcam_delta_acc"] == 0.0  # the logits have no spatial extent: all squares tie
  for key in ("cladec_acc_max", "cladec_acc_min", "gradcam_acc_max", "gradcam_acc_min"):
    assert 0.0 <= row[key] <= 1.0
  for stem in ("cladec_layers", "cladec_alpha", "cladec_training_epochs", "cladec_subsets",
               "occlusion"):
    assert os.path.exists(os.path.join(workdir, "results", stem + ".md"))
  for fig in ("cladec_layers", "cladec_alpha", "cladec_training_epochs",
              "cladec_subsets_nested", "cladec_subsets_disjoint", "occlusion"):
    path = os.path.join(workdir, "figures", fig + ".png")
    assert os.path.getsize(path) > 1000, path


def test_select_neurons_keeps_channels_and_rejects_out_of_range():
  codes = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
  np.testing.assert_array_equal(cladec.select_neurons(codes, [1, 3]), codes[..., [1, 3]])
  with pytest.raises(ValueError, match=r"neuron indices must lie in \[0, 5\)"):
    cladec.select_neurons(codes, range(3, 6))
