"""The evaluation stages split over a mesh give the 1-device results (8 forced host devices).

Attribution splits its images, NMF its classes, the pairwise classifiers their class rows;
each is compared with one device to 1e-5 (tests/conftest.py forces 8 CPU devices).
"""
import jax
from jax.sharding import Mesh
import numpy as np
import pytest

from jaxconcepts.methods import attribution
from jaxconcepts.methods import concepts
from jaxconcepts.methods import contrast
from jaxconcepts.methods import crops as crops_lib
from jaxconcepts.models import classifiers as models
from jaxconcepts.models import split as split_lib
from jaxconcepts.ops import nmf
from tests.methods.test_attribution import _random_variables


def _mesh(n):
  return Mesh(np.array(jax.devices()[:n]), ("data",))


@pytest.fixture(scope="module")
def small():
  """A tiny ClaDec VGG on 8x8x1 (tap conv1: 4x4x8) and 5 images: 8 devices pad 3 rows."""
  model = models.ClaDecVGG(num_classes=4, widths=(4, 8), strides=(2, 1),
                           conv_names=("conv0", "conv1"), conv_impl="xla")
  variables = _random_variables(model, (8, 8, 1), seed=3)
  x = np.random.default_rng(2).uniform(size=(5, 8, 8, 1)).astype(np.float32)
  return model, variables, x


def test_eight_devices_assumed():
  assert len(jax.devices()) == 8


def test_layer_deeplift_smoothgrad_sharded_over_images_equals_one_device(small):
  model, variables, x = small
  t = np.array([0, 1, 2, 3, 1], np.int32)
  kw = dict(n_samples=3, std=0.2, key=7, batch_size=6)
  ref = attribution.layer_deeplift_smoothgrad(model, variables, x, t, "conv1", **kw)
  one = attribution.layer_deeplift_smoothgrad(model, variables, x, t, "conv1", mesh=_mesh(1),
                                              **kw)
  eight = attribution.layer_deeplift_smoothgrad(model, variables, x, t, "conv1", mesh=_mesh(8),
                                                **kw)
  assert eight.shape == ref.shape == (5, 4, 4, 8)
  assert float(np.abs(ref).max()) > 1e-3  # not trivially zero
  np.testing.assert_allclose(one, ref, rtol=0, atol=1e-5)
  np.testing.assert_allclose(eight, ref, rtol=0, atol=1e-5)
  # The key matters (so the equality above compares noisy samples, not a key-free result).
  other = attribution.layer_deeplift_smoothgrad(model, variables, x, t, "conv1", mesh=_mesh(8),
                                                **{**kw, "key": 8})
  assert np.abs(np.asarray(other) - np.asarray(ref)).max() > 1e-4


def test_deeplift_per_image_baseline_and_explicit_noise_sharded(small):
  model, variables, x = small
  rng = np.random.default_rng(4)
  base = rng.uniform(size=x.shape).astype(np.float32)
  noise = (0.1 * rng.standard_normal((5, 2) + x.shape[1:])).astype(np.float32)
  ref = attribution.deeplift(model, variables, x, 2, "conv0", baseline=base, noise=noise)
  got = attribution.deeplift(model, variables, x, 2, "conv0", baseline=base, noise=noise,
                             mesh=_mesh(8))
  np.testing.assert_allclose(got.attributions, ref.attributions, rtol=0, atol=1e-5)
  np.testing.assert_allclose(got.delta, ref.delta, rtol=0, atol=1e-5)
  assert got.delta.shape == (5, 2)
  plain = attribution.deeplift(model, variables, x, 1, "conv1")  # no SmoothGrad, shared baseline
  split8 = attribution.deeplift(model, variables, x, 1, "conv1", mesh=_mesh(8))
  np.testing.assert_allclose(split8.attributions, plain.attributions, rtol=0, atol=1e-5)
  np.testing.assert_allclose(split8.delta, plain.delta, rtol=0, atol=1e-5)
  assert split8.delta.shape == (5,)


def _class_matrices(num, rows=(30, 41), channels=6, seed=0):
  """`num` non-negative (m_b, channels) matrices of unequal rows, some rows zero."""
  rng = np.random.default_rng(seed)
  mats = []
  for b in range(num):
    m = rng.uniform(size=(int(rng.integers(*rows)), channels)).astype(np.float32)
    m[rng.uniform(size=m.shape[0]) < 0.2] = 0.0
    mats.append(m * (1 + b))
  return mats


@pytest.mark.parametrize("init,atol", [
    ("random", 1e-5),
    # nndsvda's SVD rounds differently for a batch of 1 matrix per device than for 5 on one
    # (measured 5e-6 after the init, 1.4e-5 relative after 60 updates): the same up to that.
    ("nndsvda", 5e-5)])
def test_nmf_over_classes_sharded_equals_one_device(init, atol):
  mats = _class_matrices(5)  # 5 classes on 8 devices: 3 padding classes
  kw = dict(key=3, max_iter=60, tol=1e-6, init=init)
  ref = concepts.extract_concepts_batched(mats, 3, **kw)
  got = concepts.extract_concepts_batched(mats, 3, mesh=_mesh(8), **kw)
  one = concepts.extract_concepts_batched(mats, 3, mesh=_mesh(1), **kw)
  assert len(got) == 5
  for r, g, o in zip(ref, got, one):
    scale = float(np.abs(r.basis).max())
    np.testing.assert_allclose(g.basis / scale, r.basis / scale, rtol=0, atol=atol)
    np.testing.assert_allclose(o.basis, r.basis, rtol=0, atol=1e-6)
    assert abs(g.rel_error - r.rel_error) < 1e-5 and g.n_iter == r.n_iter
    assert g.n_vectors == r.n_vectors


def test_nmf_batched_one_class_per_device_equals_one_device():
  a = np.stack([m[:30] for m in _class_matrices(8, seed=1)])
  res = nmf.nmf_batched(a, 2, key=0, max_iter=20, mesh=_mesh(8), init="random")
  ref = nmf.nmf_batched(a, 2, key=0, max_iter=20, init="random")
  assert res.h.shape == (8, 2, 6)
  np.testing.assert_allclose(res.h, ref.h, rtol=0, atol=1e-5)
  np.testing.assert_allclose(res.w, ref.w, rtol=0, atol=1e-5)


def test_pairwise_classifiers_sharded_equals_one_device():
  rng = np.random.default_rng(5)
  vecs = [rng.standard_normal((int(rng.integers(3, 9)), 5)).astype(np.float32) + c
          for c in range(5)]
  r1 = contrast.train_contrast(vecs, epochs=20, lr=0.1, mesh=_mesh(1))
  r8 = contrast.train_contrast(vecs, epochs=20, lr=0.1, mesh=_mesh(8))
  np.testing.assert_allclose(r8.weights, r1.weights, rtol=0, atol=1e-5)
  np.testing.assert_allclose(r8.biases, r1.biases, rtol=0, atol=1e-5)
  np.testing.assert_array_equal(r8.accuracy, r1.accuracy)


@pytest.mark.parametrize("batch_size", [4, 16])
def test_crop_search_sharded_over_images_equals_one_device(small, batch_size):
  model, variables, _ = small
  rng = np.random.default_rng(6)
  images = rng.uniform(size=(13, 8, 8, 1)).astype(np.float32)
  images[9] = images[2]  # exact ties: the earlier image must win on 8 devices too
  s = split_lib.split(model, "conv1")
  geometry = crops_lib.crop_geometry((8, 8, 1), s.shape((8, 8, 1)))
  bases = rng.uniform(size=(4, 8)).astype(np.float32)
  pooled = crops_lib.avg_pool(s.encode(variables, images[2:3]), geometry.pool)
  bases[0] = np.asarray(pooled)[0, 1, 0]  # image 2's (and 9's) pooled pixel (1, 0)
  kw = dict(modes=crops_lib.CROP_MODES, basis_class=np.array([0, 1, 2, 3]),
            predictions=rng.integers(0, 4, 13).astype(np.int32), batch_size=batch_size)
  ref = crops_lib.search_crops(s, variables, images, bases, 5, geometry, **kw)
  got = crops_lib.search_crops(s, variables, images, bases, 5, geometry, mesh=_mesh(8), **kw)
  for mode in crops_lib.CROP_MODES:
    for field in ("image", "row", "col"):
      np.testing.assert_array_equal(getattr(got[mode], field), getattr(ref[mode], field))
    np.testing.assert_allclose(got[mode].score, ref[mode].score, rtol=0, atol=1e-5)
  assert (ref["all"].image >= 0).all() and np.isfinite(ref["all"].score).all()
  # Basis 0 is the duplicated pixel: images 2 then 9 (the tie keeps the earlier image).
  np.testing.assert_array_equal(got["all"].image[0, :2], [2, 9])
  np.testing.assert_array_equal(got["all"].row[0, :2], [1, 1])


@pytest.mark.slow
def test_concepts_program_on_eight_devices_gives_the_one_device_tables(tmp_path):
  """The toy pipeline (tests/programs/test_concepts.py) with ``num_devices=0`` (all 8: NMF,
  pairwise classifiers and crop search split) and with one device."""
  from jaxconcepts.programs import concepts as program  # pylint: disable=g-import-not-at-top
  from tests.methods import test_concepts as toy  # pylint: disable=g-import-not-at-top
  model = toy.PartsNet()
  variables = model.init(jax.random.PRNGKey(0), np.zeros((1, 32, 32, toy.CHANNELS), np.float32))
  variables = {k: v for k, v in variables.items() if k != "taps"}
  outs = [program.run_concepts_evaluation(toy.small_config(num_devices=n), str(tmp_path / str(n)),
                                          model, variables, toy.parts_dataset(),
                                          attribution_fn=toy.toy_attribution)
          for n in (1, 0)]
  one, eight = outs
  assert one["failures"] == eight["failures"]
  for key in ("table1", "table2"):
    assert one["stitch_test"][key].keys() == eight["stitch_test"][key].keys()
    for name, v in one["stitch_test"][key].items():
      if isinstance(v, (str, dict)):  # the health status, its note and its checks
        assert eight["stitch_test"][key][name] == v, name
      else:
        np.testing.assert_allclose(eight["stitch_test"][key][name], v, rtol=1e-4, atol=1e-5)
  for name, v in one["shift_test"].items():
    if isinstance(v, (int, float)):
      np.testing.assert_allclose(eight["shift_test"][name], v, rtol=1e-4, atol=1e-5)
