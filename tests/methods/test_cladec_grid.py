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
