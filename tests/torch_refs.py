"""PyTorch twins of our models for cross-check tests (imported only when torch is).

`TorchResNet` reproduces torchvision's ResNet module layout and state-dict keys
(conv1, bn1, layerX.Y.{conv1,bn1,conv2,bn2,[conv3,bn3],downsample.{0,1}}, fc), so
`models.params_from_torch` is exercised exactly as on a torchvision checkpoint
(PyPI's torchvision does not import beside this machine's torch build).
`TorchClaDecVGG` is the ClaDec VGG, and `vgg_variables_from_torch` ports its weights.
"""
import numpy as np
import torch
from torch import nn


class _Basic(nn.Module):
  expansion = 1

  def __init__(self, cin, c, stride, downsample):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(c)
    self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(c)
    self.relu = nn.ReLU()
    self.downsample = downsample

  def forward(self, x):
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class _Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, cin, c, stride, downsample):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, c, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(c)
    self.conv2 = nn.Conv2d(c, c, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(c)
    self.conv3 = nn.Conv2d(c, c * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(c * 4)
    self.relu = nn.ReLU()
    self.downsample = downsample

  def forward(self, x):
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class TorchResNet(nn.Module):
  """torchvision's ResNet layout; `stem="cifar"` gives our ResNet-10 stem."""

  def __init__(self, block, layers, num_classes, stem="imagenet", cin=3):
    super().__init__()
    block = {"basic": _Basic, "bottleneck": _Bottleneck}[block]
    if stem == "imagenet":
      self.conv1 = nn.Conv2d(cin, 64, 7, 2, 3, bias=False)
      self.maxpool = nn.MaxPool2d(3, 2, 1)
    else:
      self.conv1 = nn.Conv2d(cin, 64, 3, 1, 1, bias=False)
      self.maxpool = nn.Identity()
    self.bn1 = nn.BatchNorm2d(64)
    self.relu = nn.ReLU()
    inplanes = 64
    for i, (n, c) in enumerate(zip(layers, (64, 128, 256, 512))):
      blocks = []
      for j in range(n):
        stride = 2 if (i > 0 and j == 0) else 1
        ds = None
        if j == 0 and (stride != 1 or inplanes != c * block.expansion):
          ds = nn.Sequential(nn.Conv2d(inplanes, c * block.expansion, 1, stride, bias=False),
                             nn.BatchNorm2d(c * block.expansion))
        blocks.append(block(inplanes, c, stride, ds))
        inplanes = c * block.expansion
      setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
    self.fc = nn.Linear(inplanes, num_classes)

  def forward(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    for i in range(1, 5):
      x = getattr(self, f"layer{i}")(x)
    return self.fc(torch.flatten(x.mean((2, 3)), 1))


RESNET_LAYOUTS = {"resnet10": ("basic", (1, 1, 1, 1), "cifar"),
                  "resnet18": ("basic", (2, 2, 2, 2), "imagenet"),
                  "resnet34": ("basic", (3, 4, 6, 3), "imagenet"),
                  "resnet50": ("bottleneck", (3, 4, 6, 3), "imagenet")}


def randomize_batch_norm(net: nn.Module, seed: int = 0) -> None:
  """Non-trivial running statistics and affine parameters for eval-mode tests."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, nn.BatchNorm2d):
        m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
        m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)


class TorchClaDecVGG(nn.Module):
  """The ClaDec VGG (Table 1) in PyTorch: conv-BN-ReLU x 8, dropout, fc."""

  def __init__(self, num_classes=10, cin=1,
               widths=(32, 64, 128, 128, 256, 256, 512, 512),
               strides=(2, 2, 1, 2, 1, 2, 1, 2)):
    super().__init__()
    layers = []
    for w, s in zip(widths, strides):
      layers.append(nn.Sequential(nn.Conv2d(cin, w, 3, s, 1), nn.BatchNorm2d(w), nn.ReLU()))
      cin = w
    self.features = nn.Sequential(*layers)
    self.dropout = nn.Dropout(0.5)
    self.fc = nn.Linear(widths[-1], num_classes)

  def forward(self, x):
    return self.fc(self.dropout(torch.flatten(self.features(x), 1)))


VGG_NAMES = ("conv0", "conv1", "conv2a", "conv2", "conv3a", "conv3", "conv4a", "conv4")


def vgg_variables_from_torch(net: TorchClaDecVGG) -> dict:
  """Ports `TorchClaDecVGG` weights to `models.ClaDecVGG` variables."""
  t = lambda v: np.asarray(v.detach().cpu().numpy(), np.float32)
  params, stats = {}, {}
  for name, seq in zip(VGG_NAMES, net.features):
    conv, bn = seq[0], seq[1]
    params[name] = {"conv": {"kernel": t(conv.weight).transpose(2, 3, 1, 0), "bias": t(conv.bias)},
                    "bn": {"scale": t(bn.weight), "bias": t(bn.bias)}}
    stats[name] = {"bn": {"mean": t(bn.running_mean), "var": t(bn.running_var)}}
  params["logits"] = {"kernel": t(net.fc.weight).T, "bias": t(net.fc.bias)}
  return {"params": params, "batch_stats": stats}


# ---------------------------------------------------------------------------
# Attribution helpers (for tests/methods/test_attribution.py and
# benchmarks/attribution.py).


def vgg_layer_modules(net: TorchClaDecVGG) -> dict:
  """Tap name -> the torch module whose output is that tap (conv-BN-ReLU block)."""
  return dict(zip(VGG_NAMES, net.features))


def fixed_noise_tunnel(attribution_method, noise):
  """A Captum `NoiseTunnel` that adds the given noise instead of drawing its own.

  Args:
    attribution_method: e.g. `LayerDeepLift(net, layer)`.
    noise: (N * n_samples, C, H, W) tensor in NoiseTunnel's order (the
      samples of image 0 first: `repeat_interleave`), used with
      `nt_samples_batch_size=None` (one partition).

  Returns:
    The NoiseTunnel; its attribute `noisy_inputs` records the inputs it fed.
  """
  from captum.attr import NoiseTunnel  # pylint: disable=g-import-not-at-top

  class _FixedNoiseTunnel(NoiseTunnel):

    def _add_noise_to_input(self, input, stdev, nt_samples_partition):  # pylint: disable=redefined-builtin
      del stdev
      expanded = input.repeat_interleave(nt_samples_partition, dim=0)
      if expanded.shape != noise.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)}, NoiseTunnel needs "
                         f"{tuple(expanded.shape)}")
      self.noisy_inputs = expanded + noise
      return self.noisy_inputs

  return _FixedNoiseTunnel(attribution_method)


def separate_relus(net: nn.Module) -> nn.Module:
  """Gives every BasicBlock of a `TorchResNet` two distinct ReLU modules.

  Captum's DeepLift hooks modules and fails on a ReLU module used twice in
  one forward pass (torchvision's blocks reuse `self.relu`); this rebinds
  each block's forward to use `relu` after bn1 and a new `relu_out` after the
  residual addition. Same function, same state dict.
  """
  import types  # pylint: disable=g-import-not-at-top

  def forward(self, x):
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return self.relu_out(y + (x if self.downsample is None else self.downsample(x)))

  for m in net.modules():
    if isinstance(m, _Basic):
      m.relu_out = nn.ReLU()
      m.forward = types.MethodType(forward, m)
  return net


class TorchPoolNet(nn.Module):
  """Conv 3x3 (1 -> 4) -> ReLU -> conv 1x1 (4 -> 4) -> max-pool 2x2 -> fc.

  The twin of the small split-protocol model in tests/methods/test_attribution.py,
  for checking the DeepLift max-pool rule against Captum on 8x8x1 inputs. No
  ReLU is adjacent to the max-pool: Captum 0.9.0's hooks drop the Rescale
  rule of a ReLU right after a max-pool and its max-pool fallback uses the
  first sample's gradient (captum issue #1276), so it is not complete there.
  """

  def __init__(self, num_classes=3):
    super().__init__()
    self.conv = nn.Conv2d(1, 4, 3, 1, 1)
    self.relu = nn.ReLU()
    self.mix = nn.Conv2d(4, 4, 1)
    self.pool = nn.MaxPool2d(2, 2)
    self.fc = nn.Linear(4 * 4 * 4, num_classes)

  def forward(self, x):
    x = self.pool(self.mix(self.relu(self.conv(x))))
    return self.fc(torch.flatten(x, 1))


def pool_net_variables_from_torch(net: TorchPoolNet) -> dict:
  """Ports `TorchPoolNet` weights to NHWC Flax params {'conv', 'mix', 'logits'}."""
  t = lambda v: np.asarray(v.detach().cpu().numpy(), np.float32)
  fc = t(net.fc.weight).reshape(-1, 4, 4, 4).transpose(2, 3, 1, 0).reshape(64, -1)  # CHW -> HWC
  conv = lambda m: {"kernel": t(m.weight).transpose(2, 3, 1, 0), "bias": t(m.bias)}
  return {"params": {"conv": conv(net.conv), "mix": conv(net.mix),
                     "logits": {"kernel": fc, "bias": t(net.fc.bias)}}}
