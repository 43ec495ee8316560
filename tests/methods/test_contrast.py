"""Class contrasting: the contrast filter, pairwise hyperplanes on contrast vectors,
contrast scaling, the shifting test (Table 3) and the bias probe (Table 4) on toy
heads built so the answers are known.

Toy head: logits = SCALE * spatial mean of the activations, one channel per class
(channel c "is" class c). Shifting B's activations along e_A - e_B (the direction
a contrast classifier between pure-A and pure-B vectors learns) must swap the
prediction to A at a large enough offset; shifting along the opposite direction
never raises p(A).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconcepts.methods import contrast as ct
from jaxconcepts.models import classifiers as models
from jaxconcepts.ops import pairwise
from jaxconcepts.models import split as split_lib
from tests.methods.test_concepts import FnSplit

SCALE = 20.0
C = 4


def toy_head(h):
  return SCALE * jnp.mean(h, axis=(1, 2))


TOY = FnSplit(head_fn=toy_head)  # the toy head as a (variable-free) Split


def class_activations(cls, n=6, hw=4, seed=0):
  """(n, hw, hw, C): channel `cls` is 1 on a random half of the pixels."""
  rng = np.random.default_rng(seed + cls)
  h = np.zeros((n, hw, hw, C), np.float32)
  h[..., cls] = rng.uniform(size=(n, hw, hw)) < 0.5
  h[:, 0, 0, cls] = 1.0
  return h


# ---------------------------------------------------------------------------
# Filter, vectors, hyperplanes.


def test_contrast_mask_keeps_pixels_above_a_quarter_of_the_image_max_strictly():
  scores = np.array([[4.0, 1.0], [1.01, -2.0]], np.float32)  # one image, 2x2
  attr = np.repeat(scores[None, ..., None], 3, axis=-1)  # channel mean = scores
  mask = np.asarray(ct.contrast_mask(attr, 0.25))
  np.testing.assert_array_equal(mask[0], [[True, False], [True, False]])
  assert not np.asarray(ct.contrast_mask(-np.abs(attr), 0.25)).any()  # max <= 0: none
  with pytest.raises(ValueError, match="threshold"):
    ct.contrast_mask(attr, 1.5)


def test_contrast_vectors_are_the_raw_activations_of_kept_pixels():
  acts = np.arange(2 * 2 * 2 * 3, dtype=np.float32).reshape(2, 2, 2, 3)
  attr = np.zeros_like(acts)
  attr[0, 0, 1] = 2.0
  attr[1, 1, 0] = 5.0
  attr[1, 1, 1] = 1.0  # 1 < 0.25 * 5: dropped
  vecs = ct.contrast_vectors(acts, attr, 0.25)
  np.testing.assert_array_equal(vecs, np.stack([acts[0, 0, 1], acts[1, 1, 0]]))
  # the reference code's order (ReLU per element first) is available too
  attr2 = np.zeros_like(acts)
  attr2[0, 0, 0] = [3.0, -3.0, 0.0]  # mean 0, mean of relu 1
  assert ct.contrast_vectors(acts, attr2, 0.25).shape == (0, 3)
  assert ct.contrast_vectors(acts, attr2, 0.25, "relu_then_mean").shape == (1, 3)


def test_pairwise_hyperplanes_on_contrast_vectors_point_toward_a():
  vectors = [class_activations(c).reshape(-1, C) for c in range(C)]
  vectors = [v[v.sum(-1) > 0] for v in vectors]
  result = ct.train_contrast(vectors, epochs=100, lr=0.5)
  for a in range(C):
    for b in range(C):
      if a == b:
        continue
      w, bias = pairwise.hyperplane(result, a, b)
      assert w[a] > 0 > w[b]
      assert np.all(vectors[a] @ w + bias > 0) and np.all(vectors[b] @ w + bias < 0)
  with pytest.raises(ValueError, match="class 1 has zero vectors"):
    ct.train_contrast([vectors[0], np.zeros((0, C))])


def test_contrast_matrix_scales_by_the_positive_part_of_the_hyperplane_score():
  acts = np.array([[[[1.0, 0.0], [0.0, 2.0]]]], np.float32)  # (1, 1, 2, 2)
  w, b = np.array([2.0, -1.0], np.float32), 0.5
  mat = np.asarray(ct.contrast_matrix(acts, w, b))
  # pixel 0: z = 2.5 -> 2.5 * (1, 0); pixel 1: z = -1.5 -> zero
  np.testing.assert_allclose(mat, [[2.5, 0.0], [0.0, 0.0]])
  np.testing.assert_allclose(ct.hyperplane_scores(acts, w, b), [[[2.5, -1.5]]])


# ---------------------------------------------------------------------------
# The shifting test.


def test_shift_activations_adds_the_raw_normal_at_every_position_then_relu():
  h = jnp.ones((2, 3, 3, 2))
  out = ct.shift_activations(h, jnp.array([1.0, -2.0]), (0.0, 1.0))
  assert out.shape == (2, 2, 3, 3, 2)
  np.testing.assert_allclose(out[0], h)
  np.testing.assert_allclose(out[1, ..., 0], 2.0)
  np.testing.assert_allclose(out[1, ..., 1], 0.0)  # 1 - 2 -> relu -> 0


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_shifting_probs_match_a_direct_loop_over_directions_and_offsets(batch_size):
  h = class_activations(1, n=5)
  dirs = np.random.default_rng(0).normal(size=(3, C)).astype(np.float32)
  offsets = (0.0, 0.5, 10.0)
  probs = ct.shifting_probs(TOY, None, h, dirs, offsets, batch_size)
  assert probs.shape == (3, 3, 5, C)
  for p, w in enumerate(dirs):
    for t_i, t in enumerate(offsets):
      want = jax.nn.softmax(toy_head(jax.nn.relu(h + t * w)), axis=-1)
      np.testing.assert_allclose(probs[p, t_i], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_size,per_call", [(1, 1), (4, 2), (64, 16)])
def test_shifting_stats_agree_with_the_full_probabilities(batch_size, per_call):
  h = class_activations(0, n=5)
  dirs = np.random.default_rng(1).normal(size=(3, C)).astype(np.float32)
  probs = ct.shifting_probs(TOY, None, h, dirs)
  targets = np.array([1, 2, 1])
  mean, arg, tgt = ct.shifting_stats(TOY, None, h, dirs, ct.OFFSETS, batch_size, per_call,
                                     targets=targets)
  assert mean.shape == (3, 10, C) and arg.shape == (3, 10, 5) and tgt.shape == (3, 10, 5)
  np.testing.assert_allclose(mean, probs.mean(axis=2), rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(arg, probs.argmax(-1))
  for p, a in enumerate(targets):
    np.testing.assert_allclose(tgt[p], probs[p, :, :, a], rtol=1e-5, atol=1e-7)
  assert ct.shifting_stats(TOY, None, h, dirs, ct.OFFSETS).target_probs is None
  base = probs[0, 0]
  for p in range(3):
    assert ct.shift_metrics(probs[p], 1, 0) == pytest.approx(ct.shift_metrics_from_stats(
        mean[p], arg[p], base.mean(0), 1, 0, target_probs=probs[p, :, :, 1],
        base_target=base[:, 1]))


def test_shifting_toward_a_swaps_the_prediction_and_away_does_not():
  a, b = 2, 0
  h = class_activations(b)
  toward = np.eye(C, dtype=np.float32)[a] - np.eye(C, dtype=np.float32)[b]
  probs = ct.shifting_probs(TOY, None, h, np.stack([toward, -toward]))
  good = ct.shift_metrics(probs[0], a, b)
  assert good["default_pred"] < 0.01 and good["default_pred_b"] > 0.9
  assert good["shifted_pred"] > 0.99 and good["best_offset"] >= 1.0
  assert good["flip_rate"] == 1.0 and good["majority"] == a
  assert good["swap_0.1"] and good["swap_0.2"] and good["swap_0.5"]
  bad = ct.shift_metrics(probs[1], a, b)
  assert bad["best_offset"] == 0.0 and bad["shifted_pred"] == pytest.approx(bad["default_pred"])
  assert not (bad["swap_0.1"] or bad["swap_0.2"] or bad["swap_0.5"])
  assert bad["flip_rate"] == 0.0


def test_pred_swap_needs_the_majority_and_the_confidence_threshold():
  offsets = (0.0, 1.0)
  # at offset 1: mean probs A 0.3, B 0.25, other 0.45 -> A above 0.2 but not majority
  p = np.zeros((2, 1, 3))
  p[0, 0] = [0.01, 0.98, 0.01]
  p[1, 0] = [0.3, 0.25, 0.45]
  m = ct.shift_metrics(p, 0, 1, offsets)
  assert m["best_offset"] == 1.0 and m["majority"] == 2
  assert not m["swap_0.1"]
  p[1, 0] = [0.4, 0.3, 0.3]  # majority A with 0.4: swaps at 0.1 and 0.2, not 0.5
  m = ct.shift_metrics(p, 0, 1, offsets)
  assert (m["swap_0.1"], m["swap_0.2"], m["swap_0.5"]) == (True, True, False)


def test_majority_is_a_per_image_vote_under_the_paper_rule():
  """Departure 8: the paper's majority class is the most frequent per-image argmax
  and its thresholds are "at least"; "mean_probs" keeps the earlier choice."""
  offsets = (0.0, 1.0)
  p = np.zeros((2, 3, 3))
  p[0] = [0.01, 0.98, 0.01]
  # at offset 1: two of three images vote A (0) with 0.5 each; one is sure of class 2.
  # Mean p: A 0.4, B 0.0, other 0.6 -> argmax of the mean is 2, the vote is A.
  p[1, :2] = [0.5, 0.0, 0.5 - 1e-9]
  p[1, 2] = [0.2, 0.0, 0.8]
  paper = ct.shift_metrics(p, 0, 1, offsets)
  old = ct.shift_metrics(p, 0, 1, offsets, rule="mean_probs")
  assert paper["majority"] == 0 and old["majority"] == 2
  assert paper["swap_0.2"] and not old["swap_0.2"]
  # ">=" at the threshold: exactly 0.5 on average swaps at 0.5 under the paper's rule only
  q = np.zeros((2, 2, 3))
  q[0] = [0.0, 1.0, 0.0]
  q[1] = [0.5, 0.25, 0.25]
  assert ct.shift_metrics(q, 0, 1, offsets)["swap_0.5"]
  assert not ct.shift_metrics(q, 0, 1, offsets, rule="mean_probs")["swap_0.5"]
  with pytest.raises(ValueError, match="rule"):
    ct.shift_metrics(q, 0, 1, offsets, rule="vote")


def test_shift_summary_std_is_over_samples_under_the_paper_rule():
  """Departure 8: the std pools every image of every pair (the paper's "std over
  all samples"); "mean_probs" keeps the std over the pairs' means."""
  rng = np.random.default_rng(0)
  offsets = (0.0, 1.0)
  rows, shifted = [], []
  for n in (3, 5):
    p = rng.dirichlet(np.ones(3), size=(2, n))
    row = ct.shift_metrics(p, 0, 1, offsets)
    row["n_images"] = n
    rows.append(row)
    shifted.append(p[offsets.index(row["best_offset"]), :, 0])
  paper = ct.shift_summary(rows, offsets=offsets)
  old = ct.shift_summary(rows, offsets=offsets, rule="mean_probs")
  assert paper["std_over"] == "samples" and old["std_over"] == "pairs"
  assert paper["shifted_pred_std"] == pytest.approx(np.concatenate(shifted).std())
  assert old["shifted_pred_std"] == pytest.approx(np.std([r["shifted_pred"] for r in rows]))
  assert paper["shifted_pred_std"] != pytest.approx(old["shifted_pred_std"])


def test_shift_summary_is_table_3():
  rows = [
      {"default_pred": 0.01, "shifted_pred": 0.6, "swap_0.1": True, "swap_0.2": True,
       "swap_0.5": True, "flip_rate": 0.7, "best_offset": 10.0},
      {"default_pred": 0.03, "shifted_pred": 0.2, "swap_0.1": True, "swap_0.2": False,
       "swap_0.5": False, "flip_rate": 0.1, "best_offset": 200.0},
      {"status": "failed: no images"},
  ]
  s = ct.shift_summary(rows)  # no per-image numbers: std over the pairs
  assert s["n_pairs"] == 2 and s["std_over"] == "pairs"
  assert s["default_pred"] == pytest.approx(0.02) and s["shifted_pred"] == pytest.approx(0.4)
  assert s["shifted_pred_std"] == pytest.approx(0.2)
  assert (s["pct_swap_0.1"], s["pct_swap_0.2"], s["pct_swap_0.5"]) == (100.0, 50.0, 50.0)
  assert s["increase_factor"] == pytest.approx(20.0)
  assert s["best_offset_counts"]["10"] == 1 and s["best_offset_counts"]["200"] == 1


def test_shifting_probs_through_a_split_vgg_head():
  model = models.create_model("vgg", 10)
  variables = models.init_variables(model, jax.random.PRNGKey(0), (32, 32, 1))
  s = split_lib.split(model, "conv4a")
  x = jax.random.uniform(jax.random.PRNGKey(1), (3, 32, 32, 1))
  h = np.asarray(s.encode(variables, x))
  w = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (1, s.shape((32, 32, 1))[-1])))
  head = lambda h: s.head(variables, h)  # pylint: disable=unnecessary-lambda-assignment
  probs = ct.shifting_probs(s, variables, h, w, (0.0, 2.0), batch_size=2)
  np.testing.assert_allclose(probs[0, 0], jax.nn.softmax(head(h)), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(probs[0, 1], jax.nn.softmax(head(jax.nn.relu(h + 2 * w[0]))),
                             rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------
# The bias probe.


def _toy_predict(images):
  """Softmax of SCALE * per-channel image mean (channel c = class c)."""
  return np.asarray(jax.nn.softmax(SCALE * jnp.mean(images, axis=(1, 2)), axis=-1))


def test_paste_puts_the_patch_in_the_chosen_corner():
  images = np.zeros((2, 6, 6, 1), np.float32)
  patch = np.ones((2, 3, 1), np.float32)
  out = ct.paste(images, patch, "bottom_right")
  assert out[:, 4:, 3:].min() == 1 and out.sum() == 2 * 6 and images.sum() == 0
  assert ct.paste(images, patch, "top_left")[:, :2, :3].min() == 1
  with pytest.raises(ValueError, match="does not fit"):
    ct.paste(images, np.ones((7, 1, 1)))
  with pytest.raises(ValueError, match="position"):
    ct.paste(images, patch, "middle")


def test_bias_probe_pasting_a_crop_of_a_moves_the_prediction_toward_a():
  a, b = 1, 3
  images = np.zeros((5, 16, 16, C), np.float32)
  images[:, :8, :8, b] = 1.0  # class-b object top left
  patch_a = np.zeros((10, 10, C), np.float32)
  patch_a[..., a] = 1.0
  patch_none = np.zeros((10, 10, C), np.float32)
  rows = ct.bias_probe(_toy_predict, images, np.stack([patch_a, patch_none]), a, b)
  pasted, control = rows
  assert pasted["orig_b"] > 0.9 and pasted["orig_a"] < 0.1
  assert pasted["pasted_a"] > pasted["pasted_b"] and pasted["pct_flipped"] == 100.0
  # the blank square (it also covers a corner of the b object) does not flip
  assert pasted["blank_a"] < 0.1 < 0.9 < pasted["blank_b"]
  assert control["pasted_a"] == pytest.approx(control["blank_a"])  # zeros = blank
  assert control["pct_flipped"] == 0.0
  with pytest.raises(ValueError, match="no images of class 3"):
    ct.bias_probe(_toy_predict, images[:0], patch_a, a, b)


def test_bias_probe_blank_can_be_the_mean_colour():
  """Departure 7: the paper's "zeros" in normalised space are the mean colour."""
  seen = []

  def predict(x):
    seen.append(x)
    return _toy_predict(x)

  images = np.zeros((2, 8, 8, C), np.float32)
  colour = np.arange(C, dtype=np.float32) / C + 0.1
  ct.bias_probe(predict, images, np.ones((2, 2, C), np.float32), 0, 1, blank=colour)
  blanked = seen[0][4:6]  # original (2), pasted (2), blank (2)
  np.testing.assert_allclose(blanked[:, -2:, -2:], np.broadcast_to(colour, (2, 2, 2, C)))
  np.testing.assert_allclose(blanked[:, :-2, :], 0.0)


def test_bias_probe_calls_predict_once():
  calls = []

  def predict(x):
    calls.append(x.shape[0])
    return _toy_predict(x)

  images = np.zeros((4, 8, 8, C), np.float32)
  ct.bias_probe(predict, images, np.zeros((3, 2, 2, C), np.float32), 0, 1)
  assert calls == [4 * (1 + 2 * 3)]



def test_shifting_stats_compile_once_for_two_checkpoints():
  """The head's weights are a traced argument: a second checkpoint of the same
  architecture reuses the compilation of the shifting test."""
  model = models.create_model("vgg", 4, widths=(4, 4, 8, 8, 8, 8, 16, 16))
  s = split_lib.split(model, "conv3a")
  x = jax.random.uniform(jax.random.PRNGKey(0), (5, 32, 32, 1))
  dirs = np.random.default_rng(0).normal(size=(3, s.shape((32, 32, 1))[-1])).astype(np.float32)
  grown, means = [], []
  for seed in (1, 2):
    variables = models.init_variables(model, jax.random.PRNGKey(seed), (32, 32, 1))
    h = np.asarray(s.encode(variables, x))
    before = ct._shift_stats_chunk._cache_size()  # pylint: disable=protected-access
    mean = ct.shifting_stats(s, variables, np.ones_like(h), dirs, (0.0, 1.0), 4, 2).mean_probs
    grown.append(ct._shift_stats_chunk._cache_size() - before)  # pylint: disable=protected-access
    means.append(mean)
  assert grown[0] <= 1 and grown[1] == 0, grown
  assert not np.allclose(means[0], means[1])
