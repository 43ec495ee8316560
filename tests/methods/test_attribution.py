"""Attribution through a model: exact DeepLift, IG, SmoothGrad, GradCAM; Captum cross-checks.

The model-free rules and helpers are tested in tests/ops/test_attribution.py.

XLA:CPU compilation dominates here, so the tests use `conv_impl="xla"` models
(it compiles faster than the im2col path; values agree to rounding),
variables drawn with numpy (no jitted `init`), batches of 2-3 images, and as
few distinct compiled programs as possible. Relative errors are
max |ours - reference| / max |reference|.
"""
from typing import Callable

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconcepts.methods import attribution
from jaxconcepts.models import classifiers as models
from jaxconcepts.models import split as split_lib
from jaxconcepts.ops import attribution as ops_attribution


def _rel_err(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.abs(a - b).max() / np.abs(b).max()


def _nchw(x):
  return np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2))


def _nhwc(t):
  return np.asarray(t.detach().numpy()).transpose(0, 2, 3, 1)


def _random_variables(model, image_shape, seed=0):
  """Variables with fan-in scaled kernels and non-trivial BatchNorm, no jit."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                             jnp.zeros((1, *image_shape)), train=False))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = str(getattr(path[-1], "key", path[-1]))
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    if name in ("scale", "var"):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    return (0.1 * rng.standard_normal(leaf.shape)).astype(np.float32)

  variables = jax.tree_util.tree_map_with_path(draw, shapes)
  return {k: v for k, v in variables.items() if k != "taps"}


def _small_vgg(seed=0):
  """A four-stage ClaDec-style VGG on 16x16x1 (property tests; the full VGG is
  checked against Captum). Taps: conv0 8x8x8, conv1 8x8x16, conv2 4x4x16,
  conv3 2x2x32, logits 10."""
  model = models.ClaDecVGG(num_classes=10, widths=(8, 16, 16, 32), strides=(2, 1, 2, 2),
                           conv_names=("conv0", "conv1", "conv2", "conv3"), conv_impl="xla")
  variables = _random_variables(model, (16, 16, 1), seed=seed)
  x = np.random.default_rng(1).uniform(size=(3, 16, 16, 1)).astype(np.float32)
  return model, variables, x


@pytest.fixture(scope="module")
def vgg():
  return _small_vgg()


@pytest.fixture(scope="module")
def torch_vgg():
  """A torch twin of the ClaDec VGG and the same weights in JAX."""
  torch = pytest.importorskip("torch")
  pytest.importorskip("captum")
  from tests import torch_refs
  torch.manual_seed(0)
  net = torch_refs.TorchClaDecVGG(10).eval()
  torch_refs.randomize_batch_norm(net)
  model = models.create_model("vgg", 10, conv_impl="xla")
  variables = torch_refs.vgg_variables_from_torch(net)
  x = np.random.default_rng(0).uniform(size=(2, 32, 32, 1)).astype(np.float32)
  return net, model, variables, x


class PoolNet(nn.Module):
  """A user's model following the split protocol, with a max-pool.

  `pool_after_act=False`: conv -> act -> conv 1x1 -> max-pool -> dense (the
  layout of `torch_refs.TorchPoolNet`); True: conv -> conv 1x1 -> act ->
  max-pool -> dense (a ResNet stem's order). Taps: "conv", "pool", "logits".
  """
  pool_after_act: bool = False
  act: Callable = nn.relu
  max_pool: Callable = lambda x: nn.max_pool(x, (2, 2), (2, 2))
  layer_names = ("conv", "pool", "logits")

  @nn.compact
  def __call__(self, x, train=False, *, start=None, stop=None):
    names = self.layer_names
    first = 0 if start is None else names.index(start) + 1
    last = len(names) if stop is None else names.index(stop) + 1
    for i in range(first, last):
      if i == 0:
        x = nn.Conv(4, (3, 3), name="conv")(x)
        x = x if self.pool_after_act else self.act(x)
      elif i == 1:
        x = nn.Conv(4, (1, 1), name="mix")(x)
        x = self.max_pool(self.act(x) if self.pool_after_act else x)
      else:
        x = nn.Dense(3, name="logits")(x.reshape(x.shape[0], -1))
    return x


# ---------------------------------------------------------------------------
# Cross-checks against Captum (torch CPU).


@pytest.mark.reference
def test_deeplift_equals_captum_at_input_and_two_hidden_layers(torch_vgg):
  torch = pytest.importorskip("torch")
  from captum.attr import DeepLift, LayerDeepLift
  from tests import torch_refs
  net, model, variables, x = torch_vgg
  xt = torch.from_numpy(_nchw(x))
  ours = attribution.deeplift(model, variables, x, 3, baseline=1.0)
  ref, ref_delta = DeepLift(net).attribute(xt, baselines=1.0, target=3,
                                           return_convergence_delta=True)
  assert _rel_err(ours.attributions, _nhwc(ref)) <= 1e-4
  np.testing.assert_allclose(ours.delta, ref_delta.numpy(), atol=1e-5)
  modules = torch_refs.vgg_layer_modules(net)
  target = np.array([3, 7])  # one target per image
  for layer in ("conv2", "conv3a"):
    ours = attribution.deeplift(model, variables, x, target, layer, baseline=1.0)
    ref = LayerDeepLift(net, modules[layer]).attribute(
        xt, baselines=1.0, target=torch.from_numpy(target))
    assert ours.attributions.shape == _nhwc(ref).shape
    assert _rel_err(ours.attributions, _nhwc(ref)) <= 1e-4, layer


@pytest.mark.reference
def test_noise_tunnel_layer_deeplift_equals_captum_fed_the_same_noise(torch_vgg):
  torch = pytest.importorskip("torch")
  from captum.attr import LayerDeepLift
  from tests import torch_refs
  net, model, variables, x = torch_vgg
  n_samples = 4
  noise = 0.25 * np.random.default_rng(1).standard_normal(
      (len(x), n_samples) + x.shape[1:]).astype(np.float32)
  ours = attribution.deeplift(model, variables, x, 3, "conv2", baseline=1.0, noise=noise)
  nt = torch_refs.fixed_noise_tunnel(
      LayerDeepLift(net, torch_refs.vgg_layer_modules(net)["conv2"]),
      torch.from_numpy(_nchw(noise.reshape((-1,) + x.shape[1:]))))
  ref = nt.attribute(torch.from_numpy(_nchw(x)), nt_type="smoothgrad", nt_samples=n_samples,
                     stdevs=0.25, baselines=1.0, target=3)
  # Captum saw exactly the noisy inputs we used: each image repeated per sample + noise.
  noisy = (x[:, None] + noise).reshape((-1,) + x.shape[1:])
  np.testing.assert_array_equal(_nhwc(nt.noisy_inputs), noisy)
  assert _rel_err(ours.attributions, _nhwc(ref)) <= 1e-4
  assert ours.delta.shape == (len(x), n_samples)


@pytest.mark.reference
def test_gradcam_equals_captum_layer_gradcam(torch_vgg):
  torch = pytest.importorskip("torch")
  from captum.attr import LayerGradCam
  from tests import torch_refs
  net, model, variables, x = torch_vgg
  xt = torch.from_numpy(_nchw(x))
  gc = LayerGradCam(net, torch_refs.vgg_layer_modules(net)["conv3a"])
  for relu in (False, True):
    ours = attribution.gradcam(model, variables, x, 3, "conv3a", relu=relu)
    ref = gc.attribute(xt, target=3, relu_attributions=relu).detach().numpy()[:, 0]
    assert ours.shape == (2, 4, 4)
    assert _rel_err(ours, ref) <= 1e-5, relu


@pytest.mark.reference
def test_integrated_gradients_within_captum_convergence_tolerance(torch_vgg):
  torch = pytest.importorskip("torch")
  from captum.attr import IntegratedGradients, LayerIntegratedGradients
  from tests import torch_refs
  net, model, variables, x = torch_vgg
  xt = torch.from_numpy(_nchw(x))
  ours = attribution.integrated_gradients(model, variables, x, 3, baseline=1.0, n_steps=16)
  ref, ref_delta = IntegratedGradients(net).attribute(
      xt, baselines=1.0, target=3, n_steps=16, return_convergence_delta=True)
  tolerance = np.abs(ref_delta.numpy()).max()
  assert np.abs(np.asarray(ours.attributions) - _nhwc(ref)).max() <= tolerance
  assert _rel_err(ours.attributions, _nhwc(ref)) <= 1e-4  # same quadrature: closer still
  np.testing.assert_allclose(ours.delta, ref_delta.numpy(), atol=1e-4, rtol=1e-3)
  # At a layer: the straight line between activations, as LayerIntegratedGradients.
  ours = attribution.integrated_gradients(model, variables, x, 3, "conv3", baseline=1.0,
                                          n_steps=16)
  ref = LayerIntegratedGradients(net, torch_refs.vgg_layer_modules(net)["conv3"]).attribute(
      xt, baselines=1.0, target=3, n_steps=16)
  assert _rel_err(ours.attributions, _nhwc(ref)) <= 1e-4


@pytest.mark.reference
def test_deeplift_max_pool_rule_equals_captum_on_a_user_model():
  torch = pytest.importorskip("torch")
  from captum.attr import DeepLift
  from tests import torch_refs
  torch.manual_seed(0)
  net = torch_refs.TorchPoolNet().eval()
  model = PoolNet()
  variables = torch_refs.pool_net_variables_from_torch(net)
  x = np.random.default_rng(2).uniform(size=(3, 8, 8, 1)).astype(np.float32)
  baseline = np.random.default_rng(3).uniform(size=(1, 8, 8, 1)).astype(np.float32)
  ours = attribution.deeplift(model, variables, x, 1, baseline=baseline)
  ref, ref_delta = DeepLift(net).attribute(torch.from_numpy(_nchw(x)),
                                           baselines=torch.from_numpy(_nchw(baseline)),
                                           target=1, return_convergence_delta=True)
  assert _rel_err(ours.attributions, _nhwc(ref)) <= 1e-4
  np.testing.assert_allclose(ours.delta, ref_delta.numpy(), atol=1e-5)


# ---------------------------------------------------------------------------
# Completeness and other properties.


def test_max_pool_rule_is_complete_after_relu():
  # ReLU -> max-pool (a ResNet stem's order): windows of tied zeros. Captum 0.9.0
  # is not complete here (its max-pool fallback uses the first sample's gradient,
  # captum issue #1276, and its hooks drop the adjacent ReLU's Rescale rule); the
  # rule routed through the pool's VJP is, at the input and at a layer.
  model = PoolNet(pool_after_act=True)
  variables = _random_variables(model, (8, 8, 1), seed=4)
  x = np.random.default_rng(5).uniform(-1, 1, size=(3, 8, 8, 1)).astype(np.float32)
  logits = jax.jit(model.apply)(variables, np.concatenate([x, np.full_like(x[:1], 0.2)]))
  diff = logits[:3, 2] - logits[3, 2]
  for layer in (None, "conv"):
    out = attribution.deeplift(model, variables, x, 2, layer, baseline=0.2)
    np.testing.assert_allclose(np.asarray(out.attributions).sum((1, 2, 3)), diff,
                               atol=1e-5 * float(np.abs(diff).max()))


def test_resnet10_deeplift_smoothgrad_is_complete_for_every_noisy_sample():
  # Residual additions, global average pooling, BatchNorm in eval mode: all of
  # ResNet-10 (CIFAR stem) between the input and the logit.
  model = models.create_model("resnet10", 10, conv_impl="xla")
  variables = _random_variables(model, (16, 16, 3), seed=6)
  x = np.random.default_rng(7).uniform(size=(2, 16, 16, 3)).astype(np.float32)
  noise = 0.25 * np.random.default_rng(8).standard_normal((2, 3, 16, 16, 3)).astype(np.float32)
  out = attribution.deeplift(model, variables, x, 2, baseline=1.0, noise=noise)
  assert out.attributions.shape == (2, 16, 16, 3)
  assert out.delta.shape == (2, 3)
  noisy = (x[:, None] + noise).reshape(6, 16, 16, 3)
  logits = jax.jit(model.apply)(variables, np.concatenate([noisy, np.ones_like(noisy[:1])]))
  diff = (logits[:6, 2] - logits[6, 2]).reshape(2, 3)
  scale = float(np.abs(diff).max())
  total = np.asarray(out.attributions).reshape(2, -1).sum(1)  # mean over samples
  np.testing.assert_allclose(total, diff.mean(1), atol=1e-4 * scale)
  assert np.abs(np.asarray(out.delta)).max() <= 1e-4 * scale


@pytest.mark.parametrize("use_jit", [False, True])
def test_deeplift_ig_equals_exact_deeplift_for_a_linear_head(vgg, use_jit):
  # Split at the last conv the head is the dense layer: both give (h - h0) W.
  model, variables, x = vgg
  fn = lambda v, x: attribution.deeplift(model, v, x, 4, "conv3", baseline=1.0)
  if use_jit:
    fn = jax.jit(fn)
  exact = fn(variables, x)
  approx = attribution.deeplift_ig(model, variables, x, 4, "conv3", baseline=1.0, n_steps=2)
  np.testing.assert_allclose(approx.attributions, exact.attributions, rtol=1e-4, atol=1e-6)
  assert np.abs(np.asarray(exact.delta)).max() < 1e-4
  assert np.abs(np.asarray(approx.delta)).max() < 1e-4


def test_reference_forward_pass_runs_once_not_once_per_noise_sample(vgg):
  # Count the ReLU calls while tracing (no compilation): with a shared baseline
  # the reference (batch 1) passes each of the 4 ReLUs once; every other call
  # sees the 5 noisy samples of one image (the images are vmapped).
  model, variables, x = vgg
  batches = []

  def counting_relu(z):
    batches.append(z.shape[0])
    return jax.nn.relu(z)

  counting = model.clone(act=counting_relu)
  out = jax.eval_shape(
      lambda v, x: attribution.deeplift(counting, v, x, 3, "conv1", baseline=1.0,
                                        n_samples=5), variables, x)
  assert out.attributions.shape == (3, 8, 8, 16) and out.delta.shape == (3, 5)
  assert batches.count(1) == 4
  assert set(batches) == {1, 5}


def test_smoothgrad_chunking_and_per_image_baselines_do_not_change_results(vgg):
  model, variables, x = vgg
  key = jax.random.PRNGKey(9)
  one_chunk = attribution.deeplift(model, variables, x, 3, "conv1", baseline=1.0,
                                   n_samples=5, key=key)
  # One image per chunk, samples in groups of 2 (padded), a per-image baseline.
  small = attribution.layer_deeplift_smoothgrad(
      model, variables, x, 3, "conv1", n_samples=5, key=key, baseline=np.ones_like(x),
      batch_size=2)
  assert small.shape == (3, 8, 8, 16)
  np.testing.assert_allclose(small, one_chunk.attributions, rtol=1e-5, atol=1e-7)


def test_smoothgrad_wrapper_equals_built_in_smoothing_for_every_variant(vgg):
  model, variables, x = vgg
  noise = 0.3 * np.random.default_rng(3).standard_normal((3, 4, 16, 16, 1)).astype(np.float32)
  target = np.array([1, 2, 3])
  grad_fn = jax.jit(lambda z, t: attribution.gradient(model, variables, z, t, "conv2"))
  samples = np.stack([grad_fn(x + noise[:, s], target) for s in range(4)], 1)
  expected = {"mean": samples.mean(1), "square": (samples ** 2).mean(1),
              "vargrad": samples.var(1)}
  for smoothing in ("mean", "square", "vargrad"):
    wrapped = attribution.smoothgrad(grad_fn, x, target, noise=noise, smoothing=smoothing,
                                     batch_size=6)
    built_in = attribution.gradient(model, variables, x, target, "conv2", noise=noise,
                                    smoothing=smoothing)
    np.testing.assert_allclose(wrapped, expected[smoothing], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(built_in, expected[smoothing], rtol=1e-4, atol=1e-7)


def test_gradient_times_input_and_gradcam_follow_from_the_layer_gradient(vgg):
  model, variables, x = vgg
  g = attribution.gradient(model, variables, x, 0, "conv1")
  gxi = attribution.gradient_x_input(model, variables, x, 0, "conv1")
  acts = split_lib.split(model, "conv1").encode(variables, x)
  np.testing.assert_allclose(gxi, acts * g, rtol=1e-5, atol=1e-8)
  cam = attribution.gradcam(model, variables, x, 0, "conv1")
  expected = jax.nn.relu(jnp.sum(acts * g.mean(axis=(1, 2), keepdims=True), -1))
  assert cam.shape == (3, 8, 8)
  np.testing.assert_allclose(cam, expected, rtol=1e-5, atol=1e-8)
  up = attribution.upsample_maps(cam, (16, 16), "nearest")
  assert up.shape == (3, 16, 16)
  np.testing.assert_array_equal(up[:, ::2, ::2], cam)
  norm = attribution.normalize_maps(up)
  np.testing.assert_allclose(norm.min((1, 2)), 0.0)
  np.testing.assert_allclose(norm.max((1, 2)), 1.0)


class JitAndNoJitTest(chex.TestCase):
  """The public functions with and without a user's `jax.jit` (variables traced)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model, cls.variables, cls.x = _small_vgg()

  @chex.variants(with_jit=True, without_jit=True)
  def test_gradient_at_a_layer_is_the_heads_gradient(self):
    model = self.model
    fn = self.variant(lambda v, x: attribution.gradient(model, v, x, 3, "conv2"))
    got = fn(self.variables, self.x)
    s = split_lib.split(model, "conv2")
    h = s.encode(self.variables, self.x)
    expected = jax.grad(lambda h: jnp.sum(s.head(self.variables, h)[:, 3]))(h)
    chex.assert_shape(got, (3, 4, 4, 16))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)

  @chex.variants(with_jit=True, without_jit=True)
  def test_deeplift_with_smoothgrad_is_complete_and_matches_eager(self):
    model = self.model
    call = lambda v, x: attribution.deeplift(model, v, x, 3, "conv1", baseline=1.0,
                                             n_samples=3, key=5)
    out = self.variant(call)(self.variables, self.x)
    chex.assert_shape(out.attributions, (3, 8, 8, 16))
    chex.assert_shape(out.delta, (3, 3))
    assert np.abs(np.asarray(out.delta)).max() < 1e-4
    eager = call(self.variables, self.x)
    np.testing.assert_allclose(out.attributions, eager.attributions, rtol=1e-5, atol=1e-7)


def test_new_weights_reuse_the_compiled_driver_inside_and_outside_a_users_jit():
  # The variables are traced arguments of the jitted driver, never constants:
  # a second set of weights of the same shapes compiles nothing new.
  model, v1, x = _small_vgg(seed=0)
  _, v2, _ = _small_vgg(seed=1)
  call = lambda v, x: attribution.deeplift(model, v, x, 2, "conv2", baseline=1.0, n_samples=2)
  first = call(v1, x)
  size = attribution._run._cache_size()  # pylint: disable=protected-access
  second = call(v2, x)
  assert attribution._run._cache_size() == size  # pylint: disable=protected-access
  assert not np.allclose(first.attributions, second.attributions)
  user = jax.jit(call)
  np.testing.assert_allclose(user(v2, x).attributions, second.attributions,
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(user(v1, x).attributions, first.attributions,
                             rtol=1e-5, atol=1e-7)
  assert user._cache_size() == 1  # pylint: disable=protected-access


def test_methods_module_re_exports_the_model_free_names():
  for name in ("Attribution", "rescale_rule", "max_pool_rule", "quadrature", "path_integral",
               "smoothgrad", "upsample_maps", "normalize_maps", "EPS", "QUADRATURES"):
    assert getattr(attribution, name) is getattr(ops_attribution, name), name


# ---------------------------------------------------------------------------
# Bad input: a clear error each, raised before any computation.


def test_target_out_of_range_is_rejected(vgg):
  model, variables, x = vgg
  with pytest.raises(ValueError, match=r"target class 10 .* 10 classes"):
    attribution.deeplift(model, variables, x, 10, "conv2")
  with pytest.raises(ValueError, match=r"target class -1"):
    attribution.gradcam(model, variables, x, np.array([0, -1, 2]), "conv2")
  with pytest.raises(TypeError, match="target must be an int"):
    attribution.gradient(model, variables, x, 1.5)


def test_unknown_layer_is_rejected(vgg):
  model, variables, x = vgg
  with pytest.raises(ValueError, match=r"unknown layer 'conv9'.*conv2"):
    attribution.layer_deeplift_smoothgrad(model, variables, x, 0, "conv9")
  with pytest.raises(ValueError, match=r"spatial layer.*'logits'"):
    attribution.gradcam(model, variables, x, 0, "logits")


@pytest.mark.parametrize("batch_size", [0, -3, 2.5])
def test_batch_size_below_one_is_rejected(vgg, batch_size):
  model, variables, x = vgg
  with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1"):
    attribution.deeplift(model, variables, x, 0, "conv2", batch_size=batch_size)


def test_baseline_that_does_not_broadcast_is_rejected(vgg):
  model, variables, x = vgg
  with pytest.raises(ValueError, match=r"baseline of shape \(2, 16, 16, 1\) does not broadcast"):
    attribution.deeplift(model, variables, x, 0, baseline=np.ones((2, 16, 16, 1)))
  with pytest.raises(ValueError, match=r"baseline of shape \(28, 28, 1\)"):
    attribution.integrated_gradients(model, variables, x, 0, baseline=np.ones((28, 28, 1)))


def test_non_float_input_is_rejected(vgg):
  model, variables, x = vgg
  with pytest.raises(TypeError, match=r"floating-point.*uint8"):
    attribution.deeplift(model, variables, np.zeros((2, 16, 16, 1), np.uint8), 0)


def test_other_bad_arguments_are_rejected(vgg):
  model, variables, x = vgg
  with pytest.raises(ValueError, match=r"shape \(N, H, W, C\)"):
    attribution.gradient(model, variables, x[0], 0)
  with pytest.raises(ValueError, match="unknown smoothing"):
    attribution.gradient(model, variables, x, 0, n_samples=2, smoothing="median")
  with pytest.raises(ValueError, match="noise must have shape"):
    attribution.deeplift(model, variables, x, 0, noise=np.zeros((3, 2, 16, 16)))
  with pytest.raises(ValueError, match="unknown quadrature"):
    attribution.integrated_gradients(model, variables, x, 0, method="simpson")
  with pytest.raises(ValueError, match="std must be"):
    attribution.deeplift(model, variables, x, 0, n_samples=2, std=-1.0)
  with pytest.raises(ValueError, match="needs a model whose nonlinearity"):
    attribution.deeplift(_NoAct(), {"params": {}}, x, 0)


class _NoAct(nn.Module):
  """A classifier without a replaceable `act` (exact DeepLift must refuse it)."""
  num_classes: int = 10
  layer_names = ("logits",)

  @nn.compact
  def __call__(self, x, train=False, *, start=None, stop=None):
    return nn.Dense(10)(jax.nn.relu(x).reshape(x.shape[0], -1))


def test_inputs_the_attribution_cannot_handle_are_one_line_errors(vgg):
  model, variables, x = vgg
  bad = np.array(x)
  bad[0, 3, 4, 0] = np.nan
  with pytest.raises(ValueError, match=r"NaN or Inf \(first at index \(0, 3, 4, 0\)\)"):
    attribution.deeplift(model, variables, bad, 0, "conv1")
  with pytest.raises(ValueError, match="NaN or Inf"):
    attribution.gradient(model, variables, bad, 0, "conv1")
  for hw in (28, 4):
    small = np.zeros((2, hw, hw, x.shape[-1]), np.float32)
    with pytest.raises(ValueError, match=f"{hw}, {hw}"):
      attribution.deeplift(model, variables, small, 0, "conv1")
  with pytest.raises(ValueError, match="smoothing='square' needs SmoothGrad samples"):
    attribution.deeplift(model, variables, x, 0, "conv1", n_samples=0, smoothing="square")


@pytest.mark.parametrize("method", ["deeplift", "gradient", "gradcam"])
def test_wrong_channels_or_channels_first_input_is_one_line_not_a_flax_error(vgg, method):
  model, variables, x = vgg
  fn = getattr(attribution, method)
  c = x.shape[-1]
  with pytest.raises(ValueError, match=r"do not fit the model's weights: params\['conv0'\].*"
                                       r"images are channels-last"):
    fn(model, variables, np.zeros(x.shape[:-1] + (c + 2,), np.float32), 0, "conv1")
  with pytest.raises(ValueError, match=rf"image shape \({c}, "):  # (N, C, H, W)
    fn(model, variables, np.moveaxis(np.asarray(x), -1, 1), 0, "conv1")
