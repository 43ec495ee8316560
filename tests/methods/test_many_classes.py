"""Concepts for 120 classes within a memory budget: chunked equals unchunked; too small: one line.

The per-class NMF (`concepts.extract_concepts_chunked`) and the pairwise classifiers
(`contrast.train_contrast`, blocks of classes) process classes in chunks whose size comes
from `memory_budget_bytes`; a budget too small for one chunk is an error before any work.
"""
import os

import jax
from jax.sharding import Mesh
import numpy as np
import pytest

from jaxconcepts.methods import concepts
from jaxconcepts.methods import contrast
from jaxconcepts.ops import nmf as nmf_lib
from jaxconcepts.ops import pairwise

NUM_CLASSES = 120
ROWS, CHANNELS, K = 12, 4, 2


@pytest.fixture(scope="module")
def matrices():
  """120 positive (12, 4) matrices (no zero rows: every chunk compiles to one shape)."""
  rng = np.random.default_rng(0)
  return {c: rng.uniform(0.1, 1.0, size=(ROWS, CHANNELS)).astype(np.float32)
          for c in range(NUM_CLASSES)}


def test_budget_formula():
  need = concepts.nmf_class_bytes(ROWS, CHANNELS, K)
  assert need == 4 * (3 * ROWS * CHANNELS + 3 * ROWS * K + 4 * K * CHANNELS)
  assert concepts.classes_per_chunk(need, 10 * need + need // 2) == 10
  assert concepts.classes_per_chunk(need, 10 * need, num_devices=8) == 80
  assert concepts.classes_per_chunk(need) == concepts.DEFAULT_MEMORY_BUDGET // need


def test_nmf_of_120_classes_chunked_equals_unchunked(matrices, monkeypatch):
  calls = []
  real = nmf_lib.nmf_batched
  monkeypatch.setattr(nmf_lib, "nmf_batched",
                      lambda a, *args, **kw: calls.append(a.shape[0]) or real(a, *args, **kw))
  kw = dict(key=5, max_iter=30, tol=1e-6, init="random")
  budget = 16 * concepts.nmf_class_bytes(ROWS, CHANNELS, K)  # 16 classes per chunk
  chunked = concepts.extract_concepts_chunked(matrices, K, memory_budget_bytes=budget, **kw)
  assert calls == [16] * 7 + [8]  # never more than 16 classes' matrices at once
  calls.clear()
  whole = concepts.extract_concepts_each(matrices, K, names={c: str(c) for c in matrices}, **kw)
  assert calls == [NUM_CLASSES]
  assert list(chunked) == list(whole) == list(range(NUM_CLASSES))
  for c in matrices:
    np.testing.assert_allclose(chunked[c].basis, whole[c].basis, rtol=0, atol=1e-5)
    assert chunked[c].n_iter == whole[c].n_iter


def test_nmf_chunks_split_over_eight_devices(matrices):
  mesh = Mesh(np.array(jax.devices()), ("data",))
  budget = 2 * concepts.nmf_class_bytes(ROWS, CHANNELS, K)  # 2 per device: 16 per chunk
  kw = dict(key=5, max_iter=30, tol=1e-6, init="random")
  some = {c: matrices[c] for c in range(40)}
  got = concepts.extract_concepts_chunked(some, K, memory_budget_bytes=budget, mesh=mesh, **kw)
  ref = concepts.extract_concepts_chunked(some, K, **kw)
  for c in some:
    np.testing.assert_allclose(got[c].basis, ref[c].basis, rtol=0, atol=1e-5)


def test_budget_too_small_for_one_class_fails_before_any_nmf(matrices, monkeypatch):
  monkeypatch.setattr(nmf_lib, "nmf_batched", lambda *a, **k: pytest.fail("NMF ran"))
  with pytest.raises(ValueError, match=r"memory_budget_bytes=100 is too small for one chunk"
                                       r": one class needs about \d+ bytes") as e:
    concepts.extract_concepts_chunked(matrices, K, memory_budget_bytes=100)
  assert "\n" not in str(e.value)


def _contrast_vectors(num_classes, dim=6, seed=1):
  rng = np.random.default_rng(seed)
  return [(rng.standard_normal((int(rng.integers(2, 6)), dim)) + 0.1 * c).astype(np.float32)
          for c in range(num_classes)]


def test_pairwise_of_120_classes_in_blocks_equals_one_block():
  vecs = _contrast_vectors(NUM_CLASSES)
  one = Mesh(np.array(jax.devices()[:1]), ("pairs",))
  budget = pairwise.block_bytes(40, 5, 6)  # groups of 40 classes: 3 diagonal + 3 cross blocks
  assert pairwise.classes_per_block(NUM_CLASSES, 5, 6, memory_budget_bytes=budget) == 40
  small = contrast.train_contrast(vecs, epochs=10, lr=0.1, mesh=one, memory_budget_bytes=budget)
  whole = contrast.train_contrast(vecs, epochs=10, lr=0.1, mesh=one)
  assert small.weights.shape == (NUM_CLASSES * (NUM_CLASSES - 1) // 2, 6)
  np.testing.assert_allclose(small.weights, whole.weights, rtol=0, atol=1e-5)
  np.testing.assert_allclose(small.biases, whole.biases, rtol=0, atol=1e-5)


def test_pairwise_budget_too_small_is_one_line():
  with pytest.raises(ValueError, match="memory_budget_bytes=64 is too small") as e:
    contrast.train_contrast(_contrast_vectors(NUM_CLASSES), epochs=1, memory_budget_bytes=64)
  assert "\n" not in str(e.value)


def test_program_budget_too_small_fails_at_setup_before_any_attribution(tmp_path):
  from jaxconcepts.programs import concepts as program  # pylint: disable=g-import-not-at-top
  from tests.methods import test_concepts as toy  # pylint: disable=g-import-not-at-top
  model = toy.PartsNet()
  variables = model.init(jax.random.PRNGKey(0), np.zeros((1, 32, 32, toy.CHANNELS), np.float32))
  calls = []

  def counting(*args, **kw):
    calls.append(1)
    return toy.toy_attribution(*args, **kw)

  with pytest.raises(ValueError, match="memory_budget_bytes=1000 is too small for one chunk"):
    program.run_concepts_evaluation(toy.small_config(memory_budget_bytes=1000), str(tmp_path),
                                    model, {k: v for k, v in variables.items() if k != "taps"},
                                    toy.parts_dataset(4), attribution_fn=counting)
  assert not calls and not os.listdir(tmp_path)


def test_crop_search_of_120_concept_sets_chunked_equals_unchunked(monkeypatch):
  from jaxconcepts.methods import crops as crops_lib  # pylint: disable=g-import-not-at-top
  from tests.methods.test_concepts import FnSplit  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  images = rng.uniform(size=(9, 8, 8, 2)).astype(np.float32)
  geometry = crops_lib.crop_geometry((8, 8, 2), (8, 8, 2))  # identity tap: grid 4x4
  identity = FnSplit(lambda x: x)
  sets = {c: (rng.uniform(size=(K, 2)).astype(np.float32), c % 4) for c in range(NUM_CLASSES)}
  preds = rng.integers(0, 4, 9).astype(np.int32)
  calls = []
  real = crops_lib.search_crops
  monkeypatch.setattr(crops_lib, "search_crops",
                      lambda *a, **kw: calls.append(a[3].shape[0]) or real(*a, **kw))
  kw = dict(predictions=preds, batch_size=4)
  budget = 30 * concepts.crop_search_bytes(K, 4, geometry.cells, 3)  # 30 sets per search
  chunked = concepts.search_concept_crops_chunked(identity, None, images, sets, 3, geometry,
                                                  memory_budget_bytes=budget, **kw)
  assert calls == [30 * K] * 4
  whole = crops_lib.search_concept_crops(identity, None, images, sets, 3, geometry, **kw)
  assert list(chunked) == list(whole)
  for c in sets:
    for mode in crops_lib.CROP_MODES:
      np.testing.assert_array_equal(chunked[c].hits[mode].image, whole[c].hits[mode].image)
      np.testing.assert_array_equal(chunked[c].crops[mode], whole[c].crops[mode])
  with pytest.raises(ValueError, match="memory_budget_bytes=10 is too small for one chunk"):
    concepts.search_concept_crops_chunked(identity, None, images, sets, 3, geometry,
                                          memory_budget_bytes=10, **kw)
  assert len(calls) == 5  # the four chunks and the unchunked search; none for the error
