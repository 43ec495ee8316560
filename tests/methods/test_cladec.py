"""ClaDec methods: Eq. 1, the frozen classifier, RefAE, vmapped seeds, occlusion."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxconcepts.methods import cladec
from jaxconcepts.models import decoders
from jaxconcepts.models import classifiers as models
from jaxconcepts.models import split as split_lib
from jaxconcepts.methods import occlusion as occ
from jaxconcepts.train import trainer as training

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
  step = cladec.make_cladec_step(dec, model, (32, 32, 1), codes.shape[1:], alpha)
  batch = {"image": jnp.asarray(cladec.pack(images, codes)), "label": jnp.asarray(labels),
           "mask": jnp.ones(len(labels), bool)}
  return model, variables, state, step, batch


@pytest.mark.slow
def test_vmapped_seeds_equal_seeds_trained_one_by_one():
  _, _, both, step, batch = _cladec_setup(0.5, (3, 7))
  run = jax.jit(step)
  key = jax.random.PRNGKey(0)
  _, variables = _classifier()
  for _ in range(2):
    both, _ = run(both, batch, key, variables)
  for i, seed in enumerate((3, 7)):
    _, _, one, step1, _ = _cladec_setup(0.5, (seed,))
    for _ in range(2):
      one, _ = jax.jit(step1)(one, batch, key, variables)
    for a, b in zip(jax.tree.leaves(cladec.seed_slice(both.params, i)),
                    jax.tree.leaves(cladec.seed_slice(one.params, 0))):
      np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_classifier_is_frozen_but_its_gradient_reaches_the_decoder():
  model, variables, state, step, batch = _cladec_setup(1.0, (0,))
  before = jax.tree.map(np.asarray, variables)
  new, metrics = jax.jit(step)(state, batch, jax.random.PRNGKey(0), variables)
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

  class Boom(nn.Module):

    def __call__(self, x, train=False):
      raise AssertionError("the classifier must not run for alpha = 0")

  step = jax.jit(cladec.make_cladec_step(dec, Boom(), (32, 32, 1), codes.shape[1:], 0.0))
  state = cladec.init_seeds(lambda k: dec.init(k, jnp.zeros((1, *codes.shape[1:]))),
                            optax.adam(1e-3), dec.apply, (0,))
  batch = {"image": jnp.asarray(cladec.pack(images, codes)), "label": jnp.asarray(labels),
           "mask": jnp.ones(8, bool)}
  _, metrics = step(state, batch, jax.random.PRNGKey(0), variables)
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


def test_select_neurons_keeps_channels_and_rejects_out_of_range():
  codes = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
  np.testing.assert_array_equal(cladec.select_neurons(codes, [1, 3]), codes[..., [1, 3]])
  with pytest.raises(ValueError, match=r"neuron indices must lie in \[0, 5\)"):
    cladec.select_neurons(codes, range(3, 6))


def test_neuron_subsets_are_nested_then_disjoint_runs_of_channels():
  assert cladec.neuron_subsets((8, 2), 4, 2, 16) == (
      ("nested", 0, 8), ("nested", 0, 2), ("disjoint", 0, 4), ("disjoint", 4, 8))
  with pytest.raises(ValueError, match="size 32 is larger than layer 'conv4'.*16"):
    cladec.neuron_subsets((32,), 4, 0, 16, "conv4")
  with pytest.raises(ValueError, match="5 disjoint neuron subsets of size 4 need 20"):
    cladec.neuron_subsets((), 4, 5, 16)


@pytest.mark.slow
def test_reconstruct_decodes_the_selected_channels_of_the_layer_codes():
  model, variables = _classifier()
  images, _ = _batch(5)
  dec = decoders.create_decoder((4, 4, 3), (32, 32, 1))
  params = cladec.init_decoder(dec, (4, 4, 3), jax.random.PRNGKey(0))["params"]
  s = split_lib.split(model, "conv3a")
  out = cladec.reconstruct(s, variables, dec, params, images, batch_size=2, neurons=(2, 5))
  codes = model.apply(variables, images, stop="conv3a")[..., 2:5]
  np.testing.assert_allclose(out, dec.apply({"params": params}, codes), rtol=1e-5, atol=1e-6)
  assert out.dtype == np.float32 and out.shape == images.shape


def test_occlusion_study_runs_one_trial_per_seed_for_each_relevance():
  images = np.zeros((3, 32, 32, 1), np.float32)
  masks = occ.square_masks((32, 32))
  occluded = occ.occlude(images, masks, 0.5)
  predict = lambda x: np.zeros(len(x), int)  # pylint: disable=unnecessary-lambda-assignment
  labels = np.zeros(3, int)
  calls = []

  def reconstruct(i, x):
    calls.append((i, len(x)))
    return x

  study = occ.occlusion_study(predict, images, labels, occluded, masks, np.zeros((3, 16)),
                              (0, 1), reconstruct)
  assert calls == [(0, 3), (0, 48), (1, 3), (1, 48)]
  assert len(study["cladec"]) == len(study["gradcam"]) == 2
  assert study["cladec"][0] == {"acc_max": 1.0, "acc_min": 1.0, "delta_acc": 0.0}
  assert study["example"][3].shape == (3, 16, 32, 32, 1)
  without = occ.occlusion_study(predict, images, labels, occluded, masks, np.zeros((3, 16)),
                                (0,), None)
  assert without["cladec"] == [] and without["example"] is None


def test_disjoint_subsets_default_to_two_percent_of_the_layer():
  subsets = cladec.neuron_subsets((), None, 3, 512, "conv4")
  assert subsets == (("disjoint", 0, 10), ("disjoint", 10, 20), ("disjoint", 20, 30))
  assert cladec.neuron_subsets((), 64, 2, 512)[1] == ("disjoint", 64, 128)  # the override
  assert cladec.neuron_subsets((), None, 1, 20)[0] == ("disjoint", 0, 1)  # at least one
  with pytest.raises(ValueError, match="disjoint_fraction must lie in"):
    cladec.neuron_subsets((), None, 1, 512, disjoint_fraction=0.0)


@pytest.mark.parametrize("arch,layer,expected", [
    ("vgg", "logits", "conv4a"), ("vgg", "conv4", "conv4a"), ("vgg", "conv3a", "conv3a"),
    ("resnet10", "logits", "layer4.0"), ("resnet10", "layer2.0", "layer2.0")])
def test_gradcam_layer_is_the_last_spatial_tap_at_or_below(arch, layer, expected):
  model = models.create_model(arch, 10)
  shapes = split_lib.layer_shapes(model, (32, 32, 1))
  assert occ.gradcam_layer(model.layer_names, shapes, layer) == expected
  with pytest.raises(ValueError, match="unknown layer"):
    occ.gradcam_layer(model.layer_names, shapes, "nope")


@pytest.mark.parametrize("variant", ["paper", "reference"])
def test_resnet_full_resolution_decoder_has_no_upsampling_stage(variant):
  # ResNet-10's layer -5 (layer1.0) is 32x32x64: as large as the image.
  code_shape = split_lib.layer_shapes(models.create_model("resnet10", 10), (32, 32, 1))[
      "layer1.0"]
  assert code_shape == (32, 32, 64)
  assert decoders.num_upsampling_stages(code_shape, 32) == 0
  assert decoders.stage_widths(variant, 0, 1) == ()
  dec = decoders.create_decoder(code_shape, (32, 32, 1), variant=variant)
  codes = jnp.ones((2,) + code_shape)
  params = dec.init(jax.random.PRNGKey(0), codes)
  out = dec.apply(params, codes)
  assert out.shape == (2, 32, 32, 1) and float(out.min()) >= 0 and float(out.max()) <= 1
  assert not any(k.startswith("deconv") for k in params["params"])


def test_each_seed_trains_on_its_own_batch_order():
  model, variables = _classifier()
  images, labels = _batch(8)
  codes = np.asarray(model.apply(variables, images, stop="conv3a"))
  orders = cladec.seed_orders(8, (3, 7))
  assert orders.shape == (8, 2) and not np.array_equal(orders[:, 0], orders[:, 1])
  assert sorted(orders[:, 0]) == list(range(8))
  np.testing.assert_array_equal(orders[:, 1], cladec.seed_orders(8, (7,))[:, 0])
  _, _, both, step, _ = _cladec_setup(0.5, (3, 7))
  rows = cladec.pack(images, codes)
  data = (jnp.asarray(rows), jnp.asarray(labels))
  idx = orders[:4]  # one batch of 4 rows: different rows per seed
  batch = {"image": jnp.asarray(idx), "label": jnp.zeros(4, jnp.int32),
           "mask": jnp.ones(4, bool)}
  both, _ = jax.jit(step)(both, batch, jax.random.PRNGKey(0), variables, data)
  for i, seed in enumerate((3, 7)):
    _, _, one, step1, _ = _cladec_setup(0.5, (seed,))
    own = {"image": jnp.asarray(rows[idx[:, i]]), "label": jnp.asarray(labels[idx[:, i]]),
           "mask": jnp.ones(4, bool)}
    one, _ = jax.jit(step1)(one, own, jax.random.PRNGKey(0), variables)
    for a, b in zip(jax.tree.leaves(cladec.seed_slice(both.params, i)),
                    jax.tree.leaves(cladec.seed_slice(one.params, 0))):
      np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_refae_seeds_gather_their_own_rows():
  encoder = models.create_model("vgg", 4, **_SMALL)
  refae = cladec.RefAE(encoder=encoder, layer="conv3a",
                       decoder=decoders.create_decoder((4, 4, 8), (32, 32, 1)))
  images, labels = _batch(8)
  state = cladec.init_refae_seeds(refae, (32, 32, 1), optax.adam(1e-3), (0, 1))
  batch = {"image": jnp.asarray(cladec.seed_orders(8, (0, 1))[:4]),
           "label": jnp.zeros(4, jnp.int32), "mask": jnp.ones(4, bool)}
  step = jax.jit(cladec.make_refae_step(refae, "mean"))
  new, m = step(state, batch, jax.random.PRNGKey(0), (jnp.asarray(images), jnp.asarray(labels)))
  assert np.isfinite(float(m["loss"])) and float(m["count"]) == 4.0
  assert int(new.step[0]) == 1
