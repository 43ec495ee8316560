"""ClaDec's alpha x seed grid: one program equals the separate runs, and compiles once."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconcepts.methods import cladec
from jaxconcepts.methods import cladec_grid
from jaxconcepts.models import classifiers as models
from jaxconcepts.models import decoders
from jaxconcepts.train import trainer as training

_SMALL = dict(widths=(4, 4, 8, 8, 8, 8, 16, 16))
_SHAPE = (32, 32, 1)
_LAYER = "conv3a"
_CODE = (4, 4, 8)


def _setup(n=8, clf_key=0):
  """A small classifier, packed rows (images + codes) and labels."""
  model = models.create_model("vgg", 4, **_SMALL)
  variables = models.init_variables(model, jax.random.PRNGKey(clf_key), _SHAPE)
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(n, *_SHAPE)).astype(np.float32)
  labels = rng.integers(0, 4, size=n).astype(np.int32)
  codes = np.asarray(model.apply(variables, images, stop=_LAYER))
  data = (jnp.asarray(cladec.pack(images, codes)), jnp.asarray(labels))
  return model, variables, data


def _batches(n, seeds, batch_size, steps):
  """Per-step batches of per-seed row indices (B, S), as `fit` feeds `seed_orders`."""
  orders = cladec.seed_orders(n, seeds)
  out = []
  for t in range(steps):
    start = (t * batch_size) % n
    idx = orders[start:start + batch_size]
    out.append({"image": jnp.asarray(idx), "label": jnp.zeros(len(idx), jnp.int32),
                "mask": jnp.ones(len(idx), bool)})
  return out


def _run(step, state, batches, *args):
  losses = []
  for batch in batches:
    state, m = step(state, batch, jax.random.PRNGKey(0), *args)
    losses.append(np.asarray(m["loss"]) / float(m["count"]))
  return state, np.stack(losses)


def test_grid_of_two_alphas_and_two_seeds_equals_the_four_separate_runs():
  alphas, seeds, steps = (0.0, 0.5), (3, 7), 3
  model, variables, data = _setup()
  dec = decoders.create_decoder(_CODE, _SHAPE)
  tx = training.create_optimizer("adam", 1e-3)
  batches = _batches(8, seeds, 4, steps)
  step, values = cladec_grid.make_grid_step(dec, model, _SHAPE, _CODE, alphas)
  grid, grid_losses = _run(functools.partial(step, per_member=True),
                           cladec_grid.init_grid(dec, _CODE, tx, seeds, len(alphas)), batches,
                           variables, values, data)
  assert grid_losses.shape == (steps, 2, 2)
  for a, alpha in enumerate(alphas):
    for s, seed in enumerate(seeds):
      one = cladec.init_decoder_seeds(dec, _CODE, tx, (seed,))
      own = [dict(b, image=b["image"][:, s:s + 1]) for b in batches]
      one, losses = _run(cladec.make_cladec_step(dec, model, _SHAPE, _CODE, alpha), one, own,
                         variables, data)
      np.testing.assert_allclose(grid_losses[:, a, s], losses, rtol=1e-5, atol=1e-5)
      member = cladec.seed_slice(cladec_grid.alpha_slice(grid, a), s)
      for x, y in zip(jax.tree.leaves(member.params),
                      jax.tree.leaves(cladec.seed_slice(one.params, 0))):
        np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-5)
  assert not np.allclose(grid_losses[:, 0], grid_losses[:, 1])  # the alphas really differ


def test_one_compilation_serves_every_alpha_and_seed_of_the_grid():
  """Alphas are traced: other alpha values and classifier weights reuse the compilation,
  where separate runs compile once per alpha (alpha is static there)."""
  model, variables, data = _setup()
  other_clf = _setup(clf_key=1)[1]
  dec = decoders.create_decoder(_CODE, _SHAPE)
  tx = training.create_optimizer("adam", 1e-3)
  seeds = (0, 1, 2)
  batches = _batches(8, seeds, 2, 2)  # batch 2: a shape no other test compiles
  counts = []
  for alphas, clf in (((0.1, 0.5, 0.9, 1.0), variables), ((0.0, 0.3, 0.6, 0.999), other_clf)):
    before = cladec_grid.cladec_grid_step._cache_size()  # pylint: disable=protected-access
    step, values = cladec_grid.make_grid_step(dec, model, _SHAPE, _CODE, alphas)
    state = cladec_grid.init_grid(dec, _CODE, tx, seeds, len(alphas))
    _, losses = _run(step, state, batches, clf, values, data)
    assert np.isfinite(losses).all()
    counts.append(cladec_grid.cladec_grid_step._cache_size() - before)  # pylint: disable=protected-access
  assert counts == [1, 0], counts
  before = cladec.cladec_train_step._cache_size()  # pylint: disable=protected-access
  for alpha in (0.1, 0.5):
    one = cladec.init_decoder_seeds(dec, _CODE, tx, seeds)
    _run(cladec.make_cladec_step(dec, model, _SHAPE, _CODE, alpha), one, batches, variables,
         data)
  assert cladec.cladec_train_step._cache_size() - before == 2  # pylint: disable=protected-access


def test_an_all_zero_grid_keeps_the_static_shortcut_and_never_calls_the_classifier():
  spec, values = cladec_grid.grid_spec(decoders.create_decoder(_CODE, _SHAPE), None, _SHAPE,
                                       _CODE, (0.0,))
  assert spec.alpha == 0.0 and values.tolist() == [0.0]
  spec, _ = cladec_grid.grid_spec(decoders.create_decoder(_CODE, _SHAPE), object(), _SHAPE,
                                  _CODE, (0.0, 0.5))
  assert spec.alpha is None  # traced: the classifier runs for every row


@pytest.mark.parametrize("alphas,match", [((0.5, 0.5), "distinct alphas"), ((), "distinct"),
                                          ((0.2, 1.5), "alpha must lie in")])
def test_bad_alpha_grids_are_rejected_before_compiling(alphas, match):
  model = models.create_model("vgg", 4, **_SMALL)
  with pytest.raises(ValueError, match=match):
    cladec_grid.make_grid_step(decoders.create_decoder(_CODE, _SHAPE), model, _SHAPE, _CODE,
                               alphas)


def test_a_traced_alpha_grid_needs_the_classifier():
  with pytest.raises(ValueError, match="needs the classifier"):
    cladec_grid.grid_spec(decoders.create_decoder(_CODE, _SHAPE), None, _SHAPE, _CODE,
                          (0.0, 0.5))


# ---------------------------------------------------------------------------
# Evaluation classifiers vmapped over seeds
# ---------------------------------------------------------------------------

def test_epoch_orders_are_each_seeds_own_shuffle_padded_to_full_batches():
  from jaxconcepts import data as data_lib  # pylint: disable=g-import-not-at-top
  orders = cladec_grid.epoch_orders(10, (3, 7), 2, 4)
  assert orders.shape == (2, 2, 12) and orders.dtype == np.int32
  for e in range(2):
    for s, seed in enumerate((3, 7)):
      np.testing.assert_array_equal(orders[e, s, :10], data_lib.epoch_permutation(10, seed, e))
  assert (orders[..., 10:] == 0).all()


def test_classifier_seeds_step_equals_each_seeds_own_run():
  """Each seed: its own images, batch order (with a padded last batch) and dropout keys."""
  from jaxconcepts import data as data_lib  # pylint: disable=g-import-not-at-top
  from jaxconcepts import utils  # pylint: disable=g-import-not-at-top
  seeds, n, batch, epochs = (3, 7), 10, 4, 2
  model = models.create_model("vgg", 4, **_SMALL)
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(2, n, *_SHAPE)).astype(np.float32)  # one set per seed
  labels = rng.integers(0, 4, size=n).astype(np.int32)
  tx = training.create_optimizer("sgd", 0.01, momentum=0.9, weight_decay=1e-4)

  def init(seed):
    variables = models.init_variables(model, jax.random.PRNGKey(seed), _SHAPE)
    return training.create_train_state(model.apply, variables, tx)

  states = [init(s) for s in seeds]
  stacked = jax.tree.unflatten(jax.tree.structure(states[0]), [
      jnp.stack(g) for g in zip(*(jax.tree.leaves(s) for s in states))])
  orders = jnp.asarray(cladec_grid.epoch_orders(n, seeds, epochs, batch))
  args = (utils.seed_keys(seeds), orders, (jnp.asarray(images), jnp.asarray(labels)))
  own_step = jax.jit(training.classifier_train_step)
  losses = []
  for e in range(epochs):
    own_batches = [list(data_lib.batches(images[s], labels, batch, shuffle=True, seed=seed,
                                         epoch=e)) for s, seed in enumerate(seeds)]
    for b in range(len(own_batches[0])):
      step = e * len(own_batches[0]) + b
      mask = jnp.asarray(own_batches[0][b]["mask"])
      stacked, m = cladec_grid.classifier_seeds_step(
          stacked, {"image": jnp.zeros(batch, jnp.int32), "label": jnp.zeros(batch, jnp.int32),
                    "mask": mask}, jax.random.PRNGKey(0), *args)
      own_losses = []
      for s, seed in enumerate(seeds):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), step)
        states[s], om = own_step(states[s], jax.tree.map(jnp.asarray, own_batches[s][b]), key)
        own_losses.append(float(om["loss"]))
      losses.append((float(m["loss"]), np.mean(own_losses)))
  assert mask.sum() == 2  # the last batch of an epoch is padded (10 = 4 + 4 + 2)
  # Per-step losses agree to float rounding (another batch or dropout key would move them
  # by far more); the vmapped convolutions round differently, which six SGD steps on
  # 4-row BatchNorm batches grow (the CPU decides how far: 1.1e-5 in the last loss on CI,
  # 1.2e-3 in the weights here); rtol 1e-4 still catches a wrong batch or key.
  np.testing.assert_allclose(*zip(*losses), rtol=1e-4, atol=1e-6)
  for s in range(2):
    for a, b in zip(jax.tree.leaves(cladec.seed_slice(stacked, s)), jax.tree.leaves(states[s])):
      # Rounding grown through six steps: up to 1.2e-3 on a leaf of scale 2.5 (measured on
      # this CPU); a wrong batch or dropout key moves the weights by orders more.
      scale = max(1.0, float(np.max(np.abs(b))))
      np.testing.assert_allclose(a, b, rtol=0, atol=2e-3 * scale)
