"""Tests for jaxconcepts.ops.pairwise: all class pairs at once.

The correctness reference is a plain per-pair loop of the same protocol in
float64 numpy (and, under the `reference` mark, the reference code's float32
PyTorch loop); the library computes in float32, so weights agree to ~1e-7 and
are checked to 1e-5.
"""
import jax
from jax.sharding import Mesh
import numpy as np
import pytest

from jaxconcepts.ops import pairwise

_C, _D = 7, 24


def _data(seed=0, num_classes=_C, dim=_D, spread=0.4):
  """Ragged, overlapping classes (accuracies below 1 for some pairs)."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(num_classes):
    n = int(rng.integers(4, 30))
    mean = spread * rng.standard_normal(dim)
    out.append(np.maximum(mean + rng.standard_normal((n, dim)), 0)
               .astype(np.float32))
  return out


def _reference_pair(xa, xb, epochs, lr, metrics_at="final"):
  """One pair, the plain way, float64: labels a -> 1, b -> 0, mean BCE, SGD."""
  x = np.concatenate([xa, xb]).astype(np.float64)
  y = np.concatenate([np.ones(len(xa)), np.zeros(len(xb))])
  w = np.zeros(x.shape[1])
  b = 0.0

  def metrics(w, b):
    z = x @ w + b
    return np.mean((z > 0) == (y == 1)), np.mean(np.logaddexp(0, z) - y * z)

  for epoch in range(epochs):
    if metrics_at == "last_step" and epoch == epochs - 1:
      acc, loss = metrics(w, b)
    z = x @ w + b
    r = (1 / (1 + np.exp(-z)) - y) / len(x)
    w, b = w - lr * (x.T @ r), b - lr * r.sum()
  if metrics_at == "final":
    acc, loss = metrics(w, b)
  return w, b, acc, loss


def _reference_all(data, epochs, lr, metrics_at="final"):
  outs = [_reference_pair(data[a], data[b], epochs, lr, metrics_at)
          for a, b in zip(*np.triu_indices(len(data), 1))]
  return [np.array(v) for v in zip(*outs)]


@pytest.fixture(scope="module")
def data():
  return _data()


@pytest.fixture(scope="module")
def one_device():
  return Mesh(np.array(jax.devices()[:1]), ("pairs",))


@pytest.fixture(scope="module")
def reference(data):
  return _reference_all(data, epochs=100, lr=0.01)


@pytest.mark.parametrize("classes_per_chunk", [None, 2, 3])
def test_weights_accuracy_loss_match_float64_per_pair_loop(
    data, reference, one_device, classes_per_chunk):
  res = pairwise.train_pairwise(data, mesh=one_device,
                                classes_per_chunk=classes_per_chunk)
  w, b, acc, loss = reference
  p = pairwise.num_pairs(_C)
  assert res.weights.shape == (p, _D) and res.weights.dtype == np.float32
  assert res.pairs.shape == (p, 2) and res.num_classes == _C
  np.testing.assert_array_equal(res.pairs,
                                np.stack(np.triu_indices(_C, 1), 1))
  np.testing.assert_allclose(res.weights, w, rtol=0, atol=1e-5)
  np.testing.assert_allclose(res.biases, b, rtol=0, atol=1e-5)
  np.testing.assert_array_equal(res.accuracy, acc.astype(np.float32))
  np.testing.assert_allclose(res.loss, loss, rtol=1e-5, atol=1e-6)
  # The data really exercise both outcomes.
  assert 0.5 < res.accuracy.min() < 1.0 and res.accuracy.max() == 1.0


def test_large_learning_rate_still_matches_reference(data, one_device):
  # Larger steps give larger weights: the float32 error stays below 1e-5.
  res = pairwise.train_pairwise(data, epochs=40, lr=0.2, mesh=one_device)
  w, b, acc, _ = _reference_all(data, epochs=40, lr=0.2)
  assert np.abs(w).max() > 0.5
  np.testing.assert_allclose(res.weights, w, rtol=0, atol=1e-5)
  np.testing.assert_allclose(res.biases, b, rtol=0, atol=1e-5)
  np.testing.assert_array_equal(res.accuracy, acc.astype(np.float32))


def test_metrics_at_last_step_follows_reference_code(data, one_device):
  res = pairwise.train_pairwise(data, epochs=30, mesh=one_device,
                                metrics_at="last_step")
  w, _, acc, loss = _reference_all(data, epochs=30, lr=0.01,
                                   metrics_at="last_step")
  np.testing.assert_allclose(res.weights, w, rtol=0, atol=1e-5)
  np.testing.assert_array_equal(res.accuracy, acc.astype(np.float32))
  np.testing.assert_allclose(res.loss, loss, rtol=1e-5, atol=1e-6)


def test_hyperplane_is_antisymmetric_and_oriented(data, one_device):
  res = pairwise.train_pairwise(data, mesh=one_device)
  for a, b in [(0, 1), (2, 5), (6, 3)]:
    w_ab, b_ab = pairwise.hyperplane(res, a, b)
    w_ba, b_ba = pairwise.hyperplane(res, b, a)
    np.testing.assert_array_equal(w_ab, -w_ba)
    assert b_ab == -b_ba
    # Oriented toward a: a's vectors score higher than b's.
    assert np.mean(data[a] @ w_ab) > np.mean(data[b] @ w_ab)


def test_reversed_class_order_gives_exact_negation(data, one_device):
  # Training (b, a) from zero is the negation of (a, b), so the library trains
  # each unordered pair once. Bit-exact on the earlier sessions' CPU; on an
  # AVX2-only AMD EPYC (2026-12-02) the reversed data's sums round differently:
  # 122 of 504 weights differed, by at most 1.5e-8 (3e-6 relative).
  res = pairwise.train_pairwise(data, mesh=one_device)
  rev = pairwise.train_pairwise(data[::-1], mesh=one_device)
  a, b = np.triu_indices(_C, 1)
  idx = pairwise.pair_index(_C - 1 - b, _C - 1 - a, _C)
  np.testing.assert_allclose(rev.weights[idx], -res.weights, rtol=0, atol=1e-6)
  np.testing.assert_allclose(rev.biases[idx], -res.biases, rtol=0, atol=1e-6)
  np.testing.assert_allclose(rev.loss[idx], res.loss, rtol=1e-5)


@pytest.mark.parametrize("classes_per_chunk", [None, 3])
def test_one_device_and_eight_devices_agree(data, one_device,
                                            classes_per_chunk):
  assert len(jax.devices()) == 8  # tests/conftest.py forces 8 host devices
  eight = Mesh(np.array(jax.devices()), ("pairs",))
  r1 = pairwise.train_pairwise(data, mesh=one_device,
                               classes_per_chunk=classes_per_chunk)
  r8 = pairwise.train_pairwise(data, mesh=eight,
                               classes_per_chunk=classes_per_chunk)
  np.testing.assert_allclose(r8.weights, r1.weights, rtol=0, atol=1e-6)
  np.testing.assert_allclose(r8.biases, r1.biases, rtol=0, atol=1e-6)
  np.testing.assert_array_equal(r8.accuracy, r1.accuracy)
  np.testing.assert_allclose(r8.loss, r1.loss, rtol=1e-6)


def test_eight_devices_with_cross_blocks_agree_with_one_device():
  # 18 classes in groups of 8 on 8 devices: 3 diagonal and 3 cross blocks,
  # each with its rows sharded 8 ways (the last group padded with 6 empty
  # classes), against one unchunked block on one device.
  data = _data(seed=5, num_classes=18, dim=12)
  one = Mesh(np.array(jax.devices()[:1]), ("pairs",))
  eight = Mesh(np.array(jax.devices()), ("pairs",))
  r1 = pairwise.train_pairwise(data, epochs=20, mesh=one)
  r8 = pairwise.train_pairwise(data, epochs=20, mesh=eight,
                               classes_per_chunk=8)
  np.testing.assert_allclose(r8.weights, r1.weights, rtol=0, atol=1e-6)
  np.testing.assert_allclose(r8.biases, r1.biases, rtol=0, atol=1e-6)
  np.testing.assert_array_equal(r8.accuracy, r1.accuracy)
  np.testing.assert_allclose(r8.loss, r1.loss, rtol=1e-6)
  w, b, acc, _ = _reference_all(data, epochs=20, lr=0.01)
  np.testing.assert_allclose(r8.weights, w, rtol=0, atol=1e-5)
  np.testing.assert_array_equal(r8.accuracy, acc.astype(np.float32))


def test_default_mesh_uses_all_devices_and_agrees(data, reference):
  res = pairwise.train_pairwise(data)  # 8 devices: rows padded 7 -> 8
  np.testing.assert_allclose(res.weights, reference[0], rtol=0, atol=1e-5)


def test_two_dimensional_mesh_shards_over_both_axes(data, reference):
  mesh = Mesh(np.array(jax.devices()).reshape(2, 4), ("x", "y"))
  res = pairwise.train_pairwise(data, mesh=mesh, classes_per_chunk=4)
  np.testing.assert_allclose(res.weights, reference[0], rtol=0, atol=1e-5)


def test_memory_budget_splits_into_blocks_with_same_result(data, reference,
                                                           one_device):
  n_max = max(len(v) for v in data)
  budget = pairwise.block_bytes(3, n_max, _D)
  assert budget < pairwise.block_bytes(_C, n_max, _D)
  assert pairwise.classes_per_block(_C, n_max, _D,
                                    memory_budget_bytes=budget) <= 3
  res = pairwise.train_pairwise(data, mesh=one_device,
                                memory_budget_bytes=budget)
  np.testing.assert_allclose(res.weights, reference[0], rtol=0, atol=1e-5)
  np.testing.assert_array_equal(res.accuracy,
                                reference[2].astype(np.float32))


def test_thousand_classes_are_planned_within_the_budget():
  # 499,500 pairs x D=1024 (2 GB of weights) in blocks of a 2 GiB budget.
  budget = 2 * 2**30
  g = pairwise.classes_per_block(1000, 64, 1024, memory_budget_bytes=budget)
  assert g < 1000 and pairwise.block_bytes(g, 64, 1024) <= budget
  g8 = pairwise.classes_per_block(1000, 64, 1024, 8,
                                  memory_budget_bytes=budget // 8)
  assert g8 % 8 == 0 and pairwise.block_bytes(g8, 64, 1024, 8) <= budget // 8
  assert pairwise.classes_per_block(100, 500, 512) == 100  # W2: one block


def test_padded_input_equals_list_input_and_ignores_padding(data, one_device):
  padded, counts = pairwise.pad_classes(data)
  assert padded.shape == (_C, counts.max(), _D)
  garbage = padded.copy()
  for c, n in enumerate(counts):
    garbage[c, n:] = np.nan  # padding is never read
  r_list = pairwise.train_pairwise(data, epochs=5, mesh=one_device)
  r_pad = pairwise.train_pairwise(garbage, counts, epochs=5, mesh=one_device)
  np.testing.assert_array_equal(r_pad.weights, r_list.weights)
  np.testing.assert_array_equal(r_pad.accuracy, r_list.accuracy)


def test_no_jit_matches_jit(data, one_device):
  r_jit = pairwise.train_pairwise(data[:3], epochs=2, mesh=one_device)
  with jax.disable_jit():
    r_eager = pairwise.train_pairwise(data[:3], epochs=2, mesh=one_device)
  np.testing.assert_allclose(r_eager.weights, r_jit.weights, rtol=0,
                             atol=1e-6)
  np.testing.assert_array_equal(r_eager.accuracy, r_jit.accuracy)


def test_pair_index_follows_triu_order():
  a, b = np.triu_indices(9, 1)
  np.testing.assert_array_equal(pairwise.pair_index(a, b, 9),
                                np.arange(pairwise.num_pairs(9)))
  expected = int(np.flatnonzero((a == 3) & (b == 7))[0])
  assert pairwise.pair_index(3, 7, 9) == expected


def test_two_classes_from_a_jax_array(one_device):
  rng = np.random.default_rng(3)
  x = rng.standard_normal((2, 4, 5)).astype(np.float32)
  x[1] += 3.0
  res = pairwise.train_pairwise(jax.numpy.asarray(x), epochs=10, lr=0.5,
                                mesh=one_device)
  assert res.weights.shape == (1, 5) and res.pairs.tolist() == [[0, 1]]
  assert res.accuracy[0] == 1.0
  w, b = pairwise.hyperplane(res, 1, 0)
  assert (x[1] @ w + b > 0).all() and (x[0] @ w + b < 0).all()


# ---------------------------------------------------------------------------
# Bad input: a clear error for each, before any training.


def test_class_with_zero_vectors_raises(data):
  bad = list(data)
  bad[2] = np.zeros((0, _D), np.float32)
  with pytest.raises(ValueError, match="class 2 has zero vectors"):
    pairwise.train_pairwise(bad)
  padded, counts = pairwise.pad_classes(data)
  counts[4] = 0
  with pytest.raises(ValueError, match="class 4 has zero vectors"):
    pairwise.train_pairwise(padded, counts)


def test_mismatched_dimension_raises(data):
  bad = list(data)
  bad[3] = np.ones((5, _D + 1), np.float32)
  with pytest.raises(ValueError, match="mismatched D"):
    pairwise.train_pairwise(bad)


def test_nan_or_inf_raises(data):
  bad = list(data)
  bad[1] = bad[1].copy()
  bad[1][0, 3] = np.nan
  with pytest.raises(ValueError, match="class 1 contains NaN or inf"):
    pairwise.train_pairwise(bad)
  bad[1][0, 3] = np.inf
  with pytest.raises(ValueError, match="class 1 contains NaN or inf"):
    pairwise.train_pairwise(bad)


@pytest.mark.parametrize("num_classes", [0, 1])
def test_fewer_than_two_classes_raises(data, num_classes):
  with pytest.raises(ValueError, match="at least 2 classes"):
    pairwise.train_pairwise(np.ones((num_classes, 4, _D), np.float32))
  if num_classes:
    with pytest.raises(ValueError, match="at least 2 classes"):
      pairwise.train_pairwise(data[:num_classes])


@pytest.mark.parametrize("epochs", [0, -3])
def test_epochs_below_one_raises(data, epochs):
  with pytest.raises(ValueError, match="epochs must be >= 1"):
    pairwise.train_pairwise(data, epochs=epochs)


def test_non_integer_epochs_raises(data):
  with pytest.raises(TypeError, match="epochs must be an int"):
    pairwise.train_pairwise(data, epochs=2.5)


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan")])
def test_bad_learning_rate_raises(data, lr):
  with pytest.raises(ValueError, match="lr must be a positive finite"):
    pairwise.train_pairwise(data, lr=lr)


def test_bad_counts_raise(data):
  padded, counts = pairwise.pad_classes(data)
  with pytest.raises(ValueError, match="counts must lie in"):
    pairwise.train_pairwise(padded, counts + padded.shape[1])
  with pytest.raises(ValueError, match="counts must have shape"):
    pairwise.train_pairwise(padded, counts[:-1])
  with pytest.raises(ValueError, match="counts must be None"):
    pairwise.train_pairwise(data, counts)
  with pytest.raises(ValueError, match=r"vectors must be \(C, Nmax, D\)"):
    pairwise.train_pairwise(padded[0], counts)


def test_bad_chunking_metrics_and_precision_arguments_raise(data):
  with pytest.raises(ValueError, match="classes_per_chunk must be a positive"):
    pairwise.train_pairwise(data, classes_per_chunk=0)
  with pytest.raises(ValueError, match="memory_budget_bytes=100 is too small"):
    pairwise.train_pairwise(data, memory_budget_bytes=100)
  with pytest.raises(ValueError, match="metrics_at must be one of"):
    pairwise.train_pairwise(data, metrics_at="best")
  with pytest.raises(ValueError, match="precision must be"):
    pairwise.train_pairwise(data, precision="float64")


def test_hyperplane_bad_classes_raise(data, one_device):
  res = pairwise.train_pairwise(data, epochs=1, mesh=one_device)
  with pytest.raises(ValueError, match="a and b must differ"):
    pairwise.hyperplane(res, 2, 2)
  with pytest.raises(ValueError, match="out of range"):
    pairwise.hyperplane(res, 0, _C)


# ---------------------------------------------------------------------------
# Cross-check against the reference code's way: a float32 PyTorch loop.


@pytest.mark.reference
def test_matches_float32_pytorch_loop(data, one_device):
  torch = pytest.importorskip("torch")
  res = pairwise.train_pairwise(data, mesh=one_device)
  threads = torch.get_num_threads()
  torch.set_num_threads(1)  # tiny matvecs: extra threads only contend
  try:
    _check_against_torch_loop(torch, data, res)
  finally:
    torch.set_num_threads(threads)


def _check_against_torch_loop(torch, data, res):
  """The reference code's loop (zero init, labels a -> 1), pair by pair."""
  for p, (a, b) in enumerate(res.pairs):
    feats = torch.from_numpy(np.concatenate([data[a], data[b]]))
    targets = torch.cat([torch.ones(len(data[a])), torch.zeros(len(data[b]))])
    model = torch.nn.Linear(_D, 1)
    with torch.no_grad():
      model.weight.zero_()
      model.bias.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(100):
      out = model(feats).squeeze(1)
      loss = torch.nn.functional.binary_cross_entropy_with_logits(out, targets)
      opt.zero_grad()
      loss.backward()
      opt.step()
    with torch.no_grad():
      out = model(feats).squeeze(1)
      acc = torch.mean(((out > 0).float() == targets).float())
    np.testing.assert_allclose(res.weights[p], model.weight[0].detach().numpy(),
                               rtol=0, atol=1e-5)
    np.testing.assert_allclose(res.biases[p], float(model.bias.detach()),
                               rtol=0, atol=1e-5)
    assert res.accuracy[p] == pytest.approx(float(acc), abs=1e-6)


def test_diverged_training_is_an_error_not_a_result():
  rng = np.random.default_rng(0)
  vectors = [np.maximum(rng.normal(c, 1, (50, 64)), 0).astype(np.float32) for c in range(4)]
  pairwise.train_pairwise(vectors, epochs=100)  # the same data at its own scale trains
  with pytest.raises(ValueError, match=r"diverged: 6 of 6 pairs.*rescale them or lower lr"):
    pairwise.train_pairwise([v * 1e20 for v in vectors], epochs=100)
