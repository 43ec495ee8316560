"""Grids inside one program: ClaDec's alpha x seed grid, and evaluation classifiers over seeds.

The alpha trade-off (the paper's Tables 4/5) trains a decoder per alpha and
seed on the codes of one layer. `methods.cladec` already trains the seeds
together (a leading seed axis, `vmap`); here the alphas get a second leading
axis, and Eq. 1's alpha is a traced value (one per grid row), so the whole
grid is one jitted step: one compilation whatever the alpha values, and one
`training.fit` run instead of one per alpha.

Every member of the grid computes what its own run would: the same initial
decoder (seed s's, for every alpha), the same batches (seed s's rows,
`cladec.seed_orders`, for every alpha) and the same Eq. 1 at its alpha. A
traced alpha cannot skip the classifier, so a row with alpha = 0 still applies
it and multiplies its cross-entropy by 0; a grid whose alphas are all 0 keeps
the static shortcut (`spec.alpha == 0`: the classifier is never called).

The evaluation classifiers (one per seed, each trained on its own seed's
reconstructions) are vmapped over seeds the same way (`classifier_seeds_step`):
each seed visits its rows in the order its own run would (`epoch_orders`,
`data.epoch_permutation(n, seed, epoch)`, looked up from the state's step) with
its own dropout keys (`fold_in(PRNGKey(seed), step)`), so every seed computes
what `training.fit` computes for it alone.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxconcepts import data as data_lib
from jaxconcepts.methods import cladec
from jaxconcepts.train import trainer as training

Batch = cladec.Batch


def grid_spec(decoder: nn.Module, classifier: nn.Module | None, image_shape: Sequence[int],
              code_shape: Sequence[int], alphas: Sequence[float],
              rec_reduction: str = "sum") -> tuple[cladec.CladecSpec, np.ndarray]:
  """The grid's static description and its alphas, checked before any compilation.

  Args:
    decoder, classifier, image_shape, code_shape, rec_reduction: as `CladecSpec`.
    alphas: A >= 1 distinct values in [0, 1].

  Returns:
    (spec, alphas (A,) float32): `spec.alpha` is None (traced alphas) unless
    every alpha is 0, then a static 0.0 (the classifier is not applied).

  Raises:
    ValueError: an alpha outside [0, 1], duplicates or an empty grid.
  """
  values = [cladec.check_alpha(a) for a in alphas]
  if not values or len(set(values)) != len(values):
    raise ValueError(f"an alpha grid needs distinct alphas, got {tuple(alphas)}")
  static = 0.0 if not any(values) else None
  spec = cladec.CladecSpec(decoder, classifier, image_shape, code_shape, static, rec_reduction)
  return spec, np.asarray(values, np.float32)


def init_grid(decoder: nn.Module, code_shape: Sequence[int], tx: optax.GradientTransformation,
              seeds: Sequence[int], num_alphas: int) -> training.TrainState:
  """Decoder states with leading (A, S) axes: row a holds `init_decoder_seeds(seeds)`.

  Every alpha starts from the same per-seed decoders, as separate runs would.
  """
  num_alphas = int(num_alphas)
  if num_alphas < 1:
    raise ValueError(f"an alpha grid needs at least one alpha, got {num_alphas}")
  seeds_state = cladec.init_decoder_seeds(decoder, code_shape, tx, seeds)
  return jax.tree.map(lambda a: jnp.stack([a] * num_alphas), seeds_state)


def alpha_slice(state: Any, i: int) -> Any:
  """Row `i` of a grid state: the seed-stacked state of the i-th alpha (as its own run)."""
  return cladec.seed_slice(state, i)


@functools.partial(jax.jit, static_argnames=("spec", "per_member"), donate_argnums=0)
def cladec_grid_step(state: training.TrainState, batch: Batch, key: jax.Array,
                     classifier_variables: Any, alphas: jax.Array,
                     data: tuple[jax.Array, jax.Array] | None = None, *,
                     spec: cladec.CladecSpec, per_member: bool = False
                     ) -> tuple[training.TrainState, dict[str, jax.Array]]:
  """One ClaDec step (Eq. 1) of every (alpha, seed) of a grid; donates `state`.

  Args:
    state: grid state, leaves with leading (A, S) axes (`init_grid`).
    batch: as `cladec.cladec_train_step` (with `data`: (B, S) row indices).
    key: passed unchanged to every alpha (each seed then gets the key its
      own run would); unused by the deterministic decoder.
    classifier_variables: the frozen classifier's variables (traced).
    alphas: (A,) float32, traced (from `grid_spec`).
    data: optional (packed rows (N, P + D), labels (N,)).
    spec: from `grid_spec`.
    per_member: keep the metrics per member, (A, S) arrays (for tests and
      benchmarks); default: means over the grid (what `training.fit` logs).

  Returns:
    (state, metrics): batch sums "loss" (Eq. 1's total), "rec", "ce", and "count".
  """
  rows = jax.tree.leaves(state.params)[0].shape[0]
  if alphas.shape != (rows,):
    raise ValueError(f"alphas must have shape ({rows},), one per row of the grid state, got "
                     f"{alphas.shape}")

  def per_alpha(state_a, alpha):
    a = alpha if spec.alpha is None else spec.alpha
    step_one = cladec.cladec_step_one(spec, classifier_variables, a)
    return cladec.vmap_seeds(step_one, data, reduce=False)(state_a, batch, key)

  state, metrics = jax.vmap(per_alpha)(state, alphas)
  if per_member:
    return state, {**metrics, "count": metrics["count"].reshape(-1)[0]}
  return state, cladec.mean_metrics(metrics)


def make_grid_step(decoder: nn.Module, classifier: nn.Module | None,
                   image_shape: Sequence[int], code_shape: Sequence[int],
                   alphas: Sequence[float], rec_reduction: str = "sum"
                   ) -> tuple[Callable, jax.Array]:
  """The grid's training step for `training.fit`, and its alphas.

  Returns:
    (step, alphas (A,)): `step(state, batch, key, classifier_variables,
    alphas, data=None)`, a partial of the module-level jitted
    `cladec_grid_step`, so grids of the same shapes and number of alphas share
    one compilation whatever the alpha values and classifier weights.
  """
  spec, values = grid_spec(decoder, classifier, image_shape, code_shape, alphas, rec_reduction)
  return functools.partial(cladec_grid_step, spec=spec), jnp.asarray(values)


# ---------------------------------------------------------------------------
# Evaluation classifiers: one per seed, vmapped
# ---------------------------------------------------------------------------

def epoch_orders(n: int, seeds: Sequence[int], num_epochs: int, batch_size: int) -> np.ndarray:
  """(E, S, T * B) int32: the rows seed s's own run visits in epoch e, padded to T batches.

  Row order `data.epoch_permutation(n, seed, e)` (what `training.fit` with
  `cfg.seed = seed` shuffles), padded with row 0 up to T = ceil(n / B) full
  batches of B (`batch_size`); the padded places are masked by the step.
  """
  total = data_lib.num_batches(n, batch_size) * batch_size
  out = np.zeros((int(num_epochs), len(seeds), total), np.int32)
  for e in range(int(num_epochs)):
    for s, seed in enumerate(seeds):
      out[e, s, :n] = data_lib.epoch_permutation(n, int(seed), e)
  return out


def _own_batch(orders: jax.Array, images: jax.Array, labels: jax.Array, mask: jax.Array,
               step: jax.Array) -> Batch:
  """One seed's batch at its `step`: rows of `orders` (E, T * B); zeros where masked.

  Padded places hold zero images and label 0, as `data.batches` pads them, since
  BatchNorm's batch statistics see every row.
  """
  size = mask.shape[0]
  per_epoch = orders.shape[-1] // size
  idx = jax.lax.dynamic_slice(orders[step // per_epoch], ((step % per_epoch) * size,), (size,))
  keep = mask.reshape((size,) + (1,) * (images.ndim - 1))
  return {"image": jnp.where(keep, images[idx], 0).astype(images.dtype),
          "label": jnp.where(mask, labels[idx], 0).astype(jnp.int32), "mask": mask}


@functools.partial(jax.jit, donate_argnums=0)
def classifier_seeds_step(state: training.TrainState, batch: Batch, key: jax.Array,
                          seed_keys: jax.Array, orders: jax.Array,
                          data: tuple[jax.Array, jax.Array]
                          ) -> tuple[training.TrainState, dict[str, jax.Array]]:
  """One `training.classifier_train_step` per seed, each on its own data; donates `state`.

  Args:
    state: seed-stacked classifier states (leading S axis), all at one step.
    batch: `training.fit`'s batch; only its "mask" (B,) is read (the padding
      of this step's batch, the same for every seed).
    key: unused: seed s's dropout key is `fold_in(seed_keys[s], step)`, its own run's.
    seed_keys: (S, 2) `utils.seed_keys(seeds)`.
    orders: (E, S, T * B) int32 from `epoch_orders`.
    data: (images (S, N, H, W, C), one set per seed; labels (N,)).

  Returns:
    (state, metrics): per-seed batch sums {"loss", "correct"} averaged over
    seeds, and "count".
  """
  del key
  images, labels = data

  def one(state_s, key_s, orders_s, images_s):
    own = _own_batch(orders_s, images_s, labels, batch["mask"], state_s.step)
    return training.classifier_train_step(state_s, own, jax.random.fold_in(key_s, state_s.step))

  state, metrics = jax.vmap(one, in_axes=(0, 0, 1, 0))(state, seed_keys, orders, images)
  return state, cladec.mean_metrics(metrics)
