"""Models: taps, the split identity, aliases, input checks, torchvision import."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconcepts.models import classifiers as models
from jaxconcepts.models import split as split_lib

_SHAPES = {"vgg": (32, 32, 1), "resnet10": (32, 32, 3), "resnet18": (32, 32, 3),
           "resnet34": (32, 32, 3), "resnet50": (32, 32, 3)}


@pytest.fixture(scope="module", params=models.ARCHS)
def built(request):
  arch = request.param
  model = models.create_model(arch, 10)
  variables = models.init_variables(model, jax.random.PRNGKey(0), _SHAPES[arch])
  # Non-trivial batch statistics so BatchNorm in eval mode is not the identity.
  variables["batch_stats"] = jax.tree.map(
      lambda v: v + 0.1 * jax.random.uniform(jax.random.PRNGKey(1), v.shape),
      variables["batch_stats"])
  x = jax.random.uniform(jax.random.PRNGKey(2), (2, *_SHAPES[arch]))
  return arch, model, variables, x


def test_head_of_encode_equals_model_at_every_tap(built):
  arch, model, variables, x = built
  full = model.apply(variables, x)
  for layer in model.layer_names:
    s = split_lib.split(model, layer)
    np.testing.assert_allclose(s.head(variables, s.encode(variables, x)), full, rtol=1e-5, atol=1e-5,
                               err_msg=f"{arch} split at {layer}")


def test_all_taps_match_encode_and_layer_shapes(built):
  arch, model, variables, x = built
  taps = split_lib.all_taps(model, variables, x)
  shapes = split_lib.layer_shapes(model, x.shape[1:])
  assert list(taps) == list(model.layer_names)
  for layer, value in taps.items():
    assert value.shape[1:] == shapes[layer], (arch, layer)
    np.testing.assert_allclose(value, split_lib.split(model, layer).encode(variables, x),
                               rtol=1e-6, atol=1e-6)


def test_split_is_a_hashable_static_value_and_head_of_encode_is_the_model():
  model = models.create_model("vgg", 10, conv_impl="xla")
  variables = models.init_variables(model, jax.random.PRNGKey(0), (32, 32, 1))
  x = jax.random.uniform(jax.random.PRNGKey(2), (2, 32, 32, 1))
  a, b = split_lib.split(model, "conv3a"), split_lib.split(model, -5)  # name and alias
  assert a == b and hash(a) == hash(b)
  assert split_lib.Split(model, "conv3a") == a
  assert a != split_lib.split(model, "conv2")
  assert a != split_lib.split(models.create_model("vgg", 7, conv_impl="xla"), "conv3a")
  assert len({a, b, split_lib.split(model, "conv2")}) == 2
  assert a.model.scope is None  # an unbound module: no variables inside

  @functools.partial(jax.jit, static_argnums=0)
  def through(s, variables, x):
    return s.head(variables, s.encode(variables, x))

  full = model.apply(variables, x)
  np.testing.assert_allclose(through(a, variables, x), full, rtol=1e-5, atol=1e-5)
  through(b, variables, x)  # an equal Split hits the same compilation
  assert through._cache_size() == 1  # pylint: disable=protected-access
  assert a.shape((32, 32, 1)) == (4, 4, 256)


def test_vgg_taps_have_the_papers_shapes_and_aliases():
  model = models.create_model("vgg", 10)
  shapes = split_lib.layer_shapes(model, (32, 32, 1))
  expected = {"-1": ("logits", (10,)), "-2": ("conv4", (1, 1, 512)),
              "-3": ("conv4a", (2, 2, 512)), "-4": ("conv3", (2, 2, 256)),
              "-5": ("conv3a", (4, 4, 256))}
  for alias, (name, shape) in expected.items():
    assert split_lib.resolve_layer(model, alias) == name
    assert split_lib.resolve_layer(model, int(alias)) == name
    assert shapes[name] == shape
  assert shapes["conv2"] == (4, 4, 128)


def test_resnet_block_names_follow_torchvision():
  model = models.create_model("resnet50", 1000)
  assert "layer3.5" in model.layer_names
  assert split_lib.resolve_layer(model, "layer3_5") == "layer3.5"
  assert split_lib.resolve_layer(model, -2) == "layer4.2"


def test_nonlinearity_is_replaceable():
  calls = []

  def counting_relu(x):
    calls.append(x.shape)
    return jax.nn.relu(x)

  model = models.create_model("vgg", 10, act=counting_relu)
  variables = models.init_variables(model, jax.random.PRNGKey(0), (32, 32, 1))
  calls.clear()
  model.apply(variables, jnp.zeros((1, 32, 32, 1)))
  assert len(calls) == 8


def test_unknown_arch_is_rejected_with_choices():
  with pytest.raises(ValueError, match="'vgg19'.*resnet50"):
    models.create_model("vgg19", 10)


def test_unknown_layer_is_rejected_with_choices():
  model = models.create_model("vgg", 10)
  with pytest.raises(ValueError, match="'conv9'.*conv3a"):
    split_lib.resolve_layer(model, "conv9")
  with pytest.raises(ValueError, match="-7"):
    split_lib.resolve_layer(model, -7)


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32), (0, 32, 1)])
def test_image_shape_the_vgg_cannot_take_is_rejected(shape):
  model = models.create_model("vgg", 10)
  with pytest.raises(ValueError, match=r"image shape"):
    model.check_input_shape(shape)


@pytest.mark.reference
@pytest.mark.parametrize("arch", ["resnet10", "resnet18", "resnet50"])
def test_resnet_equals_torch_with_torchvision_layout_on_random_weights(arch):
  torch = pytest.importorskip("torch")
  from tests import torch_refs
  torch.manual_seed(0)
  block, layout, stem = torch_refs.RESNET_LAYOUTS[arch]
  net = torch_refs.TorchResNet(block, layout, 7, stem).eval()
  torch_refs.randomize_batch_norm(net)
  model = models.create_model(arch, 7)
  ref = models.init_variables(model, jax.random.PRNGKey(0), (64, 64, 3))
  variables = models.params_from_torch(net.state_dict(), ref)
  x = np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype(np.float32)
  with torch.no_grad():
    expected = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  np.testing.assert_allclose(model.apply(variables, x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.reference
def test_vgg_equals_torch_twin_on_random_weights():
  torch = pytest.importorskip("torch")
  from tests import torch_refs
  torch.manual_seed(0)
  net = torch_refs.TorchClaDecVGG(10).eval()
  torch_refs.randomize_batch_norm(net)
  model = models.create_model("vgg", 10)
  variables = torch_refs.vgg_variables_from_torch(net)
  x = np.random.default_rng(0).uniform(size=(3, 32, 32, 1)).astype(np.float32)
  with torch.no_grad():
    expected = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  np.testing.assert_allclose(model.apply(variables, x), expected, rtol=1e-4, atol=1e-4)


def test_params_from_torch_rejects_a_mismatched_state_dict():
  model = models.create_model("resnet18", 10)
  ref = models.init_variables(model, jax.random.PRNGKey(0), (32, 32, 3))
  with pytest.raises(ValueError, match="fc.weight.*shape"):
    models.params_from_torch({"fc.weight": np.zeros((3, 3))}, ref)
  with pytest.raises(ValueError, match="lacks entries"):
    models.params_from_torch({}, ref)
