"""Split's API boundary: images and activations that do not fit are one line, not Flax's
ScopeParamShapeError from deep inside `apply`."""

import jax
import numpy as np
import pytest

from jaxconcepts.models import classifiers
from jaxconcepts.models import split as split_lib


@pytest.fixture(scope="module")
def vgg():
  model = classifiers.create_model("vgg", 10)
  return model, classifiers.init_variables(model, jax.random.PRNGKey(0), (32, 32, 1))


@pytest.mark.parametrize("shape, message", [
    ((2, 32, 32, 3), r"images of shape \(2, 32, 32, 3\) do not fit the model's weights: "
                     r"params\['conv0'\]\['conv'\]\['kernel'\] is \(3, 3, 1, 32\), these images "
                     r"need \(3, 3, 3, 32\) \(images are channels-last"),
    ((2, 1, 32, 32), r"image shape \(1, 32, 32\) cannot be taken"),  # channels first
    ((2, 28, 28, 1), r"image shape \(28, 28, 1\) cannot be taken"),
    ((32, 32, 1), r"images must be \(N, H, W, C\), got shape \(32, 32, 1\)"),
])
def test_encode_rejects_images_that_do_not_fit_in_one_line(vgg, shape, message):
  model, variables = vgg
  with pytest.raises(ValueError, match=message):
    split_lib.split(model, "conv3a").encode(variables, np.zeros(shape, np.float32))


@pytest.mark.parametrize("shape, message", [
    ((2, 4, 4, 128), r"activations at conv3a of shape \(2, 4, 4, 128\) do not fit .*"
                     r"need \(3, 3, 128, 256\)"),
    ((2, 8, 8, 256), r"activations at conv3a of shape \(2, 8, 8, 256\) do not fit .*"
                     r"params\['logits'\]\['kernel'\] is \(512, 10\)"),
    ((256,), r"activations at conv3a must be \(N, ...\), got shape \(256,\)"),
])
def test_head_rejects_activations_that_do_not_fit_in_one_line(vgg, shape, message):
  model, variables = vgg
  with pytest.raises(ValueError, match=message):
    split_lib.split(model, "conv3a").head(variables, np.zeros(shape, np.float32))


def test_inputs_that_fit_pass_also_under_jit(vgg):
  model, variables = vgg
  s = split_lib.split(model, -5)  # conv3a
  x = np.random.default_rng(0).uniform(size=(2, 32, 32, 1)).astype(np.float32)
  h = jax.jit(s.encode)(variables, x)
  assert h.shape == (2, 4, 4, 256)
  assert jax.eval_shape(s.head, variables, h).shape == (2, 10)
  with pytest.raises(ValueError, match="do not fit the model's weights"):
    jax.jit(s.head)(variables, np.zeros((2, 4, 4, 64), np.float32))
