"""Programs compile each jitted function once per shape: a new classifier checkpoint reuses it.

Weights are traced arguments everywhere (never constants closed over), so the
functions the ClaDec and classifier programs run on a classifier's variables
(predictions, encoding, decoding, RefAE, the ClaDec training step inside
`trainer.fit`) compile once for two different sets of variables of the same
shapes. Counted with each jitted function's `_cache_size()` (the in-memory
cache, whatever the persistent compilation cache holds).
"""
import jax
import numpy as np
import pytest

from jaxconcepts.methods import cladec
from jaxconcepts.models import classifiers as models
from jaxconcepts.models import decoders
from jaxconcepts.models import split as split_lib
from jaxconcepts.programs import cladec as cladec_program
from jaxconcepts.train import trainer as training

_SMALL = dict(widths=(4, 4, 8, 8, 8, 8, 16, 16))
_SHAPE = (32, 32, 1)


def _two_classifiers():
  """One architecture, two checkpoints: different weights of the same shapes."""
  model = models.create_model("vgg", 4, **_SMALL)
  return model, [models.init_variables(model, jax.random.PRNGKey(k), _SHAPE) for k in (1, 2)]


def _images(n=12, seed=0):
  return np.random.default_rng(seed).uniform(size=(n, *_SHAPE)).astype(np.float32)


def _compiles(fn, run):
  """How many new compilations of the jitted `fn` each call of `run(i)`, i = 0, 1, adds."""
  counts = []
  for i in range(2):
    before = fn._cache_size()  # pylint: disable=protected-access
    run(i)
    counts.append(fn._cache_size() - before)  # pylint: disable=protected-access
  return counts


def _assert_compiled_once(counts):
  assert counts[0] <= 1, counts  # 0 if an earlier test compiled these shapes already
  assert counts[1] == 0, f"the second checkpoint recompiled: {counts}"


def test_predictions_compile_once_for_two_checkpoints():
  model, variables = _two_classifiers()
  x = _images()
  outs = []
  counts = _compiles(split_lib.logits_batch, lambda i: outs.append(split_lib.predict_logits(
      model, variables[i], x, batch_size=8)))
  _assert_compiled_once(counts)
  assert not np.allclose(outs[0], outs[1])  # the weights really are different
  np.testing.assert_allclose(outs[0], model.apply(variables[0], x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer", ["conv3a", "logits"])
def test_encoding_compiles_once_for_two_checkpoints(layer):
  model, variables = _two_classifiers()
  s = split_lib.split(model, layer)
  x = _images()
  counts = _compiles(split_lib.encode_batch,
                     lambda i: split_lib.encode_images(s, variables[i], x, batch_size=8))
  _assert_compiled_once(counts)


def test_decoding_and_refae_compile_once_for_two_sets_of_weights():
  dec = decoders.create_decoder((4, 4, 8), _SHAPE)
  params = [cladec.init_decoder(dec, (4, 4, 8), jax.random.PRNGKey(k))["params"] for k in (0, 1)]
  codes = np.random.default_rng(0).normal(size=(12, 4, 4, 8)).astype(np.float32)
  _assert_compiled_once(_compiles(cladec.decode_batch,
                                  lambda i: cladec.decode(dec, params[i], codes, batch_size=8)))
  refae = cladec.RefAE(encoder=models.create_model("vgg", 4, **_SMALL), layer="conv3a",
                       decoder=dec)
  tx = training.create_optimizer("adam", 1e-3)
  states = [cladec.init_refae_seeds(refae, _SHAPE, tx, (k,)) for k in (0, 1)]
  _assert_compiled_once(_compiles(cladec.refae_batch, lambda i: cladec.refae_reconstruct(
      refae, cladec.seed_slice({"params": states[i].params,
                                "batch_stats": states[i].batch_stats}, 0), _images(),
      batch_size=8)))


def test_cladec_step_in_fit_compiles_once_for_two_classifier_checkpoints(tmp_path):
  """Table 6's case: one decoder stage per classifier snapshot, same shapes."""
  model, variables = _two_classifiers()
  x = _images(16)
  labels = np.arange(16, dtype=np.int32) % 4
  dec = decoders.create_decoder((4, 4, 8), _SHAPE)
  tx = training.create_optimizer("adam", 1e-3)
  step = cladec.make_cladec_step(dec, model, _SHAPE, (4, 4, 8), 0.5)
  cfg = training.LoopConfig(num_epochs=1, batch_size=8, num_devices=1, log_every_steps=100)

  def run(i):
    codes = split_lib.encode_images(split_lib.split(model, "conv3a"), variables[i], x)
    state = cladec.init_decoder_seeds(dec, (4, 4, 8), tx, (0, 1))
    training.fit(name=f"cladec_clf{i}", workdir=str(tmp_path), state=state, train_step=step,
                 step_args=(variables[i],), images=cladec.pack(x, codes), labels=labels,
                 cfg=cfg)

  _assert_compiled_once(_compiles(cladec.cladec_train_step, run))


def test_program_trains_table6_decoders_with_one_compilation(tmp_path):
  """The ClaDec program's own stage function, for two snapshots of one classifier."""
  from configs import cladec as cladec_config  # pylint: disable=g-import-not-at-top
  c = cladec_config.get_config("quick")
  c.layers, c.alpha, c.alphas, c.classifier_epochs = (-1,), 0.5, (), (0, 1)
  c.classifier_epochs_layer = -1
  c.subsets.nested, c.subsets.disjoint_count, c.occlusion.layers = (), 0, ()
  c.data.max_train, c.data.max_test, c.batch_size, c.eval_batch_size = 64, 32, 32, 32
  c.decoder_epochs = 1
  plan = cladec_program.prepare(c, str(tmp_path))
  variables = [models.init_variables(plan.model, jax.random.PRNGKey(k), plan.image_shape)
               for k in (1, 2)]
  train_cladec = cladec_program._train_cladec  # pylint: disable=protected-access
  counts = _compiles(cladec.cladec_train_step,
                     lambda i: train_cladec(plan, variables[i], "logits", 0.5, clf_epochs=i))
  _assert_compiled_once(counts)
  names = {cladec_program.cladec_stage("logits", 0.5, plan.seed_tag, clf_epochs=i)
           for i in (0, 1)}
  assert names <= set(p.name for p in (tmp_path / "checkpoints").iterdir())

