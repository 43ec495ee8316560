"""The evaluation stages split over a mesh give the 1-device results (8 forced host devices).

Attribution splits its images, NMF its classes, the pairwise classifiers their class rows;
each is compared with one device to 1e-5 (tests/conftest.py forces 8 CPU devices).
"""
import jax
from jax.sharding import Mesh
import numpy as np
import pytest

from jaxconcepts.methods import attribution
from jaxconcepts.models import classifiers as models
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
