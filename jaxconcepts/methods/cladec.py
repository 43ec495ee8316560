"""ClaDec: decode a frozen classifier's layer, and its reference autoencoder.

Eq. 1 of the ClaDec paper: a decoder `D` is trained on the activations
`h = L(x)` of a frozen classifier `C` at layer `L` with

    loss = (1 - alpha) * rec(x, D(h)) + alpha * CE(C(D(h)), y)

`C` runs in eval mode (BatchNorm running statistics, no dropout) and is never
updated; gradients flow through it into the decoder. `rec` is the squared
error summed over the pixels of each image ("sum", the paper's) or averaged
over them ("mean", the authors' code), then averaged over the batch.

RefAE is the classifier's architecture up to `L`, trained from scratch end to
end with the same decoder and the reconstruction loss only (BatchNorm and, for
the logits layer, dropout in train mode, as the authors' code).

Because `C` is frozen and deterministic in eval mode, the codes `h` of the
training set are computed once (`split.encode_images`) and stored next to the
pixels (`pack`), so a ClaDec step for alpha = 0 costs only the decoder.

Several seeds are trained at once: a state whose leaves carry a leading seed
axis (`init_seeds`) and steps `vmap`ped over it. The seeds differ in
initialisation, dropout and batch order, as independent runs do (the paper's
5 runs): given the training rows as `data`, a step's batch holds one row index
per seed (`seed_orders`) and each seed gathers its own rows. Without `data` the
batch is shared by all seeds. `cladec_grid` adds an alpha axis (alpha traced).

Every jitted function here is defined once at module level: modules and shapes
are static arguments (flax modules hash by their attributes), weights are
traced arguments. A new classifier checkpoint of the same architecture, or a
second stage with the same shapes, reuses the compilation.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxconcepts import utils
from jaxconcepts.models import classifiers as models
from jaxconcepts.models import split as split_lib
from jaxconcepts.train import trainer as training

# "sum": squared error summed over the pixels of an image (the paper);
# "mean": averaged over them (the authors' code).
REC_REDUCTIONS = ("sum", "mean")

Batch = dict[str, jax.Array]


# ---------------------------------------------------------------------------
# Checks and losses
# ---------------------------------------------------------------------------

def check_alpha(alpha: float) -> float:
  """Returns `alpha` as a float.

  Raises:
    TypeError: for a value that is not a number.
    ValueError: unless it lies in [0, 1].
  """
  try:
    a = float(alpha)
  except (TypeError, ValueError) as e:
    raise TypeError(f"alpha must be a number in [0, 1], got {alpha!r}") from e
  if not 0.0 <= a <= 1.0 or np.isnan(a):
    raise ValueError(f"alpha must lie in [0, 1] (Eq. 1 of the ClaDec paper), got {alpha!r}")
  return a


def check_rec_reduction(reduction: str) -> str:
  """Returns `reduction` if it is one of `REC_REDUCTIONS`; ValueError naming the valid ones."""
  return utils.check_choice("rec_reduction", reduction, REC_REDUCTIONS)


def per_image_rec(x_hat: jax.Array, x: jax.Array, reduction: str = "sum") -> jax.Array:
  """Squared error per image: summed or averaged over (H, W, C).

  Args:
    x_hat, x: (N, H, W, C) float.
    reduction: "sum" | "mean".

  Returns:
    (N,) float.
  """
  chex.assert_equal_shape([x_hat, x])
  err = jnp.square(x_hat - x).reshape(x.shape[0], -1)
  return err.sum(-1) if check_rec_reduction(reduction) == "sum" else err.mean(-1)


def _masked_mean(v: jax.Array, mask: jax.Array | None) -> tuple[jax.Array, jax.Array]:
  """(mean over valid rows, sum over valid rows)."""
  if mask is None:
    return v.mean(), v.sum()
  m = mask.astype(v.dtype)
  s = jnp.sum(v * m)
  return s / jnp.maximum(m.sum(), 1.0), s


def cladec_loss(x_hat: jax.Array, x: jax.Array, logits: jax.Array | None,
                labels: jax.Array | None, alpha: float | jax.Array, reduction: str = "sum",
                mask: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Eq. 1: `(1 - alpha) * rec + alpha * CE(C(x_hat), y)`, batch means.

  Args:
    x_hat: (N, H, W, C) reconstructions.
    x: (N, H, W, C) inputs.
    logits: (N, classes) = C(x_hat), or None when alpha == 0.
    labels: (N,) int labels (None when alpha == 0).
    alpha: in [0, 1]; a Python number (checked here) or a traced scalar (an
      alpha grid vmapped into one program, `cladec_grid`; checked by its caller).
    reduction: "sum" | "mean" over pixels.
    mask: optional (N,) bool, False on padding rows.

  Returns:
    (loss, {"rec_sum", "ce_sum", "total_sum"}: sums over valid rows).
  """
  if not utils.is_tracer(alpha):
    alpha = check_alpha(alpha)
  rec, rec_sum = _masked_mean(per_image_rec(x_hat, x, reduction), mask)
  if logits is None:
    if not utils.is_tracer(alpha) and alpha > 0:
      raise ValueError(f"alpha={alpha} > 0 needs the classifier's logits on x_hat")
    ce = ce_sum = jnp.zeros((), rec.dtype)
  else:
    ce, ce_sum = _masked_mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels),
                              mask)
  loss = (1.0 - alpha) * rec + alpha * ce
  return loss, {"rec_sum": rec_sum, "ce_sum": ce_sum,
                "total_sum": (1.0 - alpha) * rec_sum + alpha * ce_sum}


# ---------------------------------------------------------------------------
# Models and data
# ---------------------------------------------------------------------------

class RefAE(nn.Module):
  """The classifier's architecture up to `layer` (from scratch) + a decoder.

  Attributes:
    encoder: a classifier module following the split protocol (its stages
      after `layer` are never created).
    layer: the canonical tap name.
    decoder: e.g. `decoders.Decoder`.
  """
  encoder: nn.Module
  layer: str
  decoder: nn.Module

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Reconstructions (N, H, W, C) of images `x` (N, H, W, C)."""
    return self.decoder(self.encoder(x, train, stop=self.layer))


def select_neurons(codes: jax.typing.ArrayLike,
                   neurons: Sequence[int] | None) -> jax.typing.ArrayLike:
  """Keeps the given neurons (channels, the last axis) of codes (N, ..., c).

  Raises:
    ValueError: for an empty list or an index outside [0, c).
  """
  if neurons is None:
    return codes
  idx = np.asarray(neurons, np.int64)
  if idx.ndim != 1 or idx.size == 0:
    raise ValueError(f"neurons must be a non-empty 1-D list of indices, got shape {idx.shape}")
  c = codes.shape[-1]
  if idx.min() < 0 or idx.max() >= c:
    raise ValueError(f"neuron indices must lie in [0, {c}) (the layer has {c} neurons per "
                     f"position), got range [{idx.min()}, {idx.max()}]")
  return codes[..., idx]


# The paper's Fig. 14: disjoint subsets of 2% of the last conv layer's neurons.
DISJOINT_FRACTION = 0.02


def check_fraction(fraction: float) -> float:
  """`fraction` as a float in (0, 1]; ValueError otherwise."""
  f = float(fraction)
  if not 0.0 < f <= 1.0:
    raise ValueError(f"subsets.disjoint_fraction must lie in (0, 1], got {fraction!r}")
  return f


def neuron_subsets(nested: Sequence[int], disjoint_size: int | None, disjoint_count: int,
                   channels: int, layer: str = "the layer", *,
                   disjoint_fraction: float = DISJOINT_FRACTION
                   ) -> tuple[tuple[str, int, int], ...]:
  """Runs of channels for decoders that see only part of a layer (Figs. 13/14).

  Args:
    nested: sizes n of the nested subsets, channels [0, n).
    disjoint_size: channels per disjoint run; None: `disjoint_fraction` of the
      layer's channels, rounded, at least 1 (the paper: 2%, e.g. 10 of 512).
    disjoint_count: that many consecutive disjoint runs from channel 0 (0: none).
    channels: the layer's channels.
    layer: named in errors.
    disjoint_fraction: in (0, 1], used when `disjoint_size` is None.

  Returns:
    ((kind, start, stop), ...) with kind "nested" or "disjoint", nested first.

  Raises:
    ValueError: a subset larger than the layer, naming both.
  """
  out = []
  for n in nested:
    if n > channels:
      raise ValueError(f"neuron subset of size {n} is larger than layer {layer!r}, which has "
                       f"{channels} neurons (channels)")
    out.append(("nested", 0, int(n)))
  count = int(disjoint_count)
  if count > 0:
    size = (max(1, int(round(check_fraction(disjoint_fraction) * channels)))
            if disjoint_size is None else int(disjoint_size))
    if size * count > channels:
      raise ValueError(f"{count} disjoint neuron subsets of size {size} need {size * count} "
                       f"neurons, but layer {layer!r} has {channels} (channels)")
    out += [("disjoint", i * size, (i + 1) * size) for i in range(count)]
  return tuple(out)


def pack(images: np.ndarray, codes: np.ndarray) -> np.ndarray:
  """(N, H, W, C) images and (N, ...) codes -> one float32 (N, HWC + D) array.

  `training.fit` batches a single array; a ClaDec step `unpack`s it.
  """
  images = np.asarray(images, np.float32)
  codes = np.asarray(codes, np.float32)
  if images.shape[0] != codes.shape[0]:
    raise ValueError(f"images and codes differ in length: {images.shape[0]} vs {codes.shape[0]}")
  n = images.shape[0]
  return np.concatenate([images.reshape(n, -1), codes.reshape(n, -1)], axis=1)


def unpack(packed: jax.Array, image_shape: Sequence[int],
           code_shape: Sequence[int]) -> tuple[jax.Array, jax.Array]:
  """Inverse of `pack` for a batch: (B, P + D) -> images (B, *image_shape), codes."""
  p = int(np.prod(image_shape))
  b = packed.shape[0]
  return (packed[:, :p].reshape(b, *image_shape), packed[:, p:].reshape(b, *code_shape))


# ---------------------------------------------------------------------------
# Inference over a data set (one compilation per module and batch shape)
# ---------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnums=0)
def decode_batch(decoder: nn.Module, params: Any, codes: jax.Array) -> jax.Array:
  """Reconstructions (B, H, W, C) in [0, 1] of codes (B, *code_shape)."""
  return decoder.apply({"params": params}, codes)


@functools.partial(jax.jit, static_argnums=0)
def refae_batch(refae: RefAE, variables: Any, x: jax.Array) -> jax.Array:
  """RefAE reconstructions (B, H, W, C) of images (B, H, W, C), eval mode."""
  return refae.apply(variables, x, train=False)


def layer_codes(s: split_lib.Split, variables: Any, images: np.ndarray, batch_size: int = 256,
                neurons: tuple[int, int] | None = None) -> np.ndarray:
  """Codes (N, *code_shape) float32 of all images, optionally only channels [start, stop)."""
  codes = split_lib.encode_images(s, variables, images, batch_size)
  if neurons is not None:
    codes = np.ascontiguousarray(select_neurons(codes, range(*neurons)))
  return codes


def decode(decoder: nn.Module, params: Any, codes: np.ndarray,
           batch_size: int = 256) -> np.ndarray:
  """Reconstructions (N, H, W, C) float32 of codes (N, ...) for one seed's params."""
  return utils.map_batches(decode_batch, codes, args=(decoder, params),
                           batch_size=batch_size).astype(np.float32)


def reconstruct(s: split_lib.Split, variables: Any, decoder: nn.Module, params: Any,
                images: np.ndarray, batch_size: int = 256,
                neurons: tuple[int, int] | None = None) -> np.ndarray:
  """ClaDec's reconstructions (N, H, W, C) float32 of images (N, H, W, C).

  Args:
    s: the classifier cut at the decoded layer.
    variables: the classifier's variables.
    decoder, params: one seed's decoder.
    images: (N, H, W, C).
    batch_size: rows per call.
    neurons: the decoder sees only channels [start, stop) of the codes.
  """
  return decode(decoder, params, layer_codes(s, variables, images, batch_size, neurons),
                batch_size)


def refae_reconstruct(refae: RefAE, variables: Any, images: np.ndarray,
                      batch_size: int = 256) -> np.ndarray:
  """RefAE reconstructions (N, H, W, C) float32 in eval mode for one seed's variables."""
  chex.assert_rank(images, 4)
  return utils.map_batches(refae_batch, images, args=(refae, variables),
                           batch_size=batch_size).astype(np.float32)


# ---------------------------------------------------------------------------
# Seeds: states with a leading seed axis
# ---------------------------------------------------------------------------

def init_seeds(init_fn: Callable[[jax.Array], dict], tx: optax.GradientTransformation,
               apply_fn: Callable, seeds: Sequence[int]) -> training.TrainState:
  """A TrainState whose params / batch_stats / opt_state have a leading seed axis.

  Args:
    init_fn: key -> {"params", "batch_stats"?} for one seed (called once per
      seed with `PRNGKey(seed)`; jit it to compile once).
    tx: the optimiser (shared).
    apply_fn: stored in the state (static).
    seeds: S distinct ints.
  """
  keys = utils.seed_keys(seeds)
  per_seed = [init_fn(keys[i]) for i in range(keys.shape[0])]
  per_seed = [{"params": v["params"], "batch_stats": v.get("batch_stats", {})} for v in per_seed]
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *per_seed)
  return jax.vmap(lambda v: training.create_train_state(apply_fn, v, tx))(stacked)


def seed_slice(tree: Any, i: int) -> Any:
  """The `i`-th seed's leaves of a seed-stacked pytree."""
  return jax.tree.map(lambda a: a[i], tree)


@functools.partial(jax.jit, static_argnums=(0, 1))
def init_decoder(decoder: nn.Module, code_shape: tuple[int, ...], key: jax.Array) -> dict:
  """A decoder's {"params"} for codes of per-example shape `code_shape` (a tuple)."""
  return decoder.init(key, jnp.zeros((1, *code_shape), jnp.float32))


@functools.partial(jax.jit, static_argnums=(0, 1))
def init_classifier(model: nn.Module, image_shape: tuple[int, ...], key: jax.Array) -> dict:
  """A classifier's {"params", "batch_stats"} for images of shape `image_shape` (a tuple)."""
  return models.init_variables(model, key, image_shape)


def init_decoder_seeds(decoder: nn.Module, code_shape: Sequence[int],
                       tx: optax.GradientTransformation,
                       seeds: Sequence[int]) -> training.TrainState:
  """Seed-stacked decoder states (see `init_seeds`) for codes of shape `code_shape`."""
  init_fn = functools.partial(init_decoder, decoder, tuple(int(s) for s in code_shape))
  return init_seeds(init_fn, tx, decoder.apply, seeds)


def init_refae_seeds(refae: RefAE, image_shape: Sequence[int],
                     tx: optax.GradientTransformation,
                     seeds: Sequence[int]) -> training.TrainState:
  """Seed-stacked RefAE states; the encoder is initialised as the classifier would be.

  The full classifier is initialised (one compilation for every layer and
  seed) and cut at the layer; the decoder's init is shared with ClaDec's
  decoder of the same code shape.
  """
  image_shape = tuple(int(s) for s in image_shape)
  dummy = jnp.zeros((1, *image_shape), jnp.float32)
  abstract = jax.eval_shape(lambda: refae.init({"params": jax.random.PRNGKey(0)}, dummy,
                                               train=False))
  enc_params = list(abstract["params"]["encoder"])
  enc_stats = list(abstract.get("batch_stats", {}).get("encoder", {}))
  code_shape = split_lib.Split(refae.encoder, refae.layer).shape(image_shape)

  def init_fn(key):
    k_enc, k_dec = jax.random.split(key)
    full = init_classifier(refae.encoder, image_shape, k_enc)
    return {"params": {"encoder": {k: full["params"][k] for k in enc_params},
                       "decoder": init_decoder(refae.decoder, code_shape, k_dec)["params"]},
            "batch_stats": {"encoder": {k: full["batch_stats"][k] for k in enc_stats}}}

  return init_seeds(init_fn, tx, refae.apply, seeds)


def seed_orders(n: int, seeds: Sequence[int]) -> np.ndarray:
  """(n, S) int32: column s a permutation of the n rows drawn from seed s alone.

  Passed to `training.fit` as the "images" of a seed-stacked step with `data`:
  fit shuffles the rows of this table each epoch (one shared order), and seed
  s trains on `data[table[:, s]]`, so each seed visits every row once per
  epoch in an order of its own, independent of the other seeds.
  """
  cols = [np.random.default_rng((int(s), 13)).permutation(int(n)) for s in seeds]
  return np.stack(cols, axis=1).astype(np.int32)


def _seed_batches(batch: Batch, data: tuple[jax.Array, jax.Array]) -> Batch:
  """A batch of per-seed row indices (B, S) -> per-seed batches with a leading S axis."""
  rows, labels = data
  idx = batch["image"].T  # (S, B)
  return {"image": rows[idx], "label": labels[idx],
          "mask": jnp.broadcast_to(batch["mask"], idx.shape)}


def mean_metrics(metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Per-member metrics (leading member axes) -> their means, and the shared "count"."""
  count = metrics.pop("count").reshape(-1)[0]
  return {**{k: v.mean() for k, v in metrics.items()}, "count": count}


def vmap_seeds(step_one: Callable, data: tuple[jax.Array, jax.Array] | None = None,
                reduce: bool = True) -> Callable:
  """(state[S], batch, key) -> (state[S], metrics averaged over seeds).

  With `data` = (rows (N, ...), labels (N,)), batch["image"] is (B, S) row
  indices, one column per seed (`seed_orders`); without, the batch is shared.
  With `reduce=False` the metrics keep their seed axis (S,).
  """

  def step(state, batch, key):
    n_seeds = jax.tree.leaves(state.params)[0].shape[0]
    keys = jax.random.split(key, n_seeds)
    axis = None if data is None else 0
    if data is not None:
      batch = _seed_batches(batch, data)
    state, metrics = jax.vmap(step_one, in_axes=(0, axis, 0))(state, batch, keys)
    return state, (mean_metrics(metrics) if reduce else metrics)

  return step


# ---------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CladecSpec:
  """Everything static about a ClaDec step; hashable, holds no weights.

  Attributes:
    decoder: the decoder module (its state holds only its params).
    classifier: the frozen classifier module, applied in eval mode to the
      reconstructions; its variables are an argument of the step. May be
      None when alpha == 0 (it is not called then).
    image_shape, code_shape: per-example shapes inside the packed batch.
    alpha: Eq. 1's trade-off, in [0, 1]; None: traced, one value per row of
      an alpha grid (`cladec_grid`), which always applies the classifier.
    rec_reduction: "sum" | "mean".
  """
  decoder: nn.Module
  classifier: nn.Module | None
  image_shape: tuple[int, ...]
  code_shape: tuple[int, ...]
  alpha: float | None
  rec_reduction: str = "sum"

  def __post_init__(self):
    object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))
    object.__setattr__(self, "code_shape", tuple(int(s) for s in self.code_shape))
    if self.alpha is not None:
      object.__setattr__(self, "alpha", check_alpha(self.alpha))
    check_rec_reduction(self.rec_reduction)
    if (self.alpha is None or self.alpha > 0) and self.classifier is None:
      raise ValueError(f"alpha={self.alpha} (> 0 or traced) needs the classifier")


def cladec_step_one(spec: CladecSpec, classifier_variables: Any,
                    alpha: float | jax.Array) -> Callable:
  """One seed's ClaDec step `(state, batch, key) -> (state, metrics)` at `alpha`.

  Args:
    spec: the static description; its classifier is applied unless
      `spec.alpha` is a static 0 (then `alpha` must be 0 too).
    classifier_variables: the frozen classifier's variables (traced).
    alpha: `spec.alpha`, or a traced scalar when `spec.alpha` is None.

  Returns:
    A function for `vmap_seeds`; its metrics are batch sums "loss" (Eq. 1's
    total), "rec", "ce" and "count".
  """

  def step_one(state, batch, key):
    del key  # the decoder is deterministic
    x, code = unpack(batch["image"], spec.image_shape, spec.code_shape)

    def loss_fn(params):
      x_hat = spec.decoder.apply({"params": params}, code)
      logits = (spec.classifier.apply(classifier_variables, x_hat, train=False)
                if spec.alpha is None or spec.alpha > 0 else None)
      return cladec_loss(x_hat, x, logits, batch["label"], alpha, spec.rec_reduction,
                         batch["mask"])

    grads, parts = jax.grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads)
    return state, {"loss": parts["total_sum"], "rec": parts["rec_sum"], "ce": parts["ce_sum"],
                   "count": batch["mask"].sum().astype(jnp.float32)}

  return step_one


@functools.partial(jax.jit, static_argnames=("spec",), donate_argnums=0)
def cladec_train_step(state: training.TrainState, batch: Batch, key: jax.Array,
                      classifier_variables: Any = None,
                      data: tuple[jax.Array, jax.Array] | None = None, *,
                      spec: CladecSpec) -> tuple[training.TrainState, dict[str, jax.Array]]:
  """One ClaDec step (Eq. 1) over seed-stacked decoder states; donates `state`.

  Args:
    state: seed-stacked decoder state (see `init_decoder_seeds`).
    batch: {"image": packed (B, P + D) from `pack`, "label" (B,), "mask" (B,)},
      shared by the seeds; with `data`, "image" is (B, S) int row indices.
    key: unused (the decoder is deterministic); kept for the `fit` protocol.
    classifier_variables: the frozen classifier's {"params", "batch_stats"};
      traced, so a new checkpoint does not recompile. Unused when alpha == 0.
    data: optional (packed rows (N, P + D), labels (N,)): each seed's batch is
      its own rows (see `seed_orders`).
    spec: the static description (hashable).

  Returns:
    (state, metrics): sums over the batch ("loss" = total, "rec", "ce") averaged
    over seeds, and "count".
  """
  if spec.alpha is None:
    raise ValueError("cladec_train_step needs a static alpha; an alpha grid (alpha None, "
                     "traced) trains with cladec_grid.cladec_grid_step")
  step_one = cladec_step_one(spec, classifier_variables, spec.alpha)
  return vmap_seeds(step_one, data)(state, batch, key)


def make_cladec_step(decoder: nn.Module, classifier: nn.Module | None,
                     image_shape: Sequence[int], code_shape: Sequence[int], alpha: float,
                     rec_reduction: str = "sum") -> Callable:
  """The ClaDec training step for one spec (see `CladecSpec`, `cladec_train_step`).

  Returns:
    `step(state, batch, key, classifier_variables) -> (state, metrics)`, a
    partial of the module-level jitted `cladec_train_step`: every step with
    the same spec shares one compilation, whatever the classifier's weights.
  """
  spec = CladecSpec(decoder, classifier, image_shape, code_shape, alpha, rec_reduction)
  return functools.partial(cladec_train_step, spec=spec)


@functools.partial(jax.jit, static_argnames=("refae", "rec_reduction"), donate_argnums=0)
def refae_train_step(state: training.TrainState, batch: Batch, key: jax.Array,
                     data: tuple[jax.Array, jax.Array] | None = None, *,
                     refae: RefAE,
                     rec_reduction: str = "sum") -> tuple[training.TrainState,
                                                          dict[str, jax.Array]]:
  """One RefAE step (reconstruction loss only) over seed-stacked states; donates `state`.

  Batch {"image" (B, H, W, C), "label" (unused), "mask" (B,)}, or with `data`
  = (images (N, H, W, C), labels (N,)) "image" (B, S) row indices, one column
  per seed (`seed_orders`); BatchNorm and dropout in train mode (`key` drives
  dropout, one key per seed).
  """

  def step_one(state, batch, key):
    x = batch["image"]

    def loss_fn(params):
      x_hat, updates = refae.apply({"params": params, "batch_stats": state.batch_stats}, x,
                                   train=True, rngs={"dropout": key}, mutable=["batch_stats"])
      loss, parts = cladec_loss(x_hat, x, None, None, 0.0, rec_reduction, batch["mask"])
      return loss, (updates, parts)

    grads, (updates, parts) = jax.grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads,
                                  batch_stats=updates.get("batch_stats", state.batch_stats))
    return state, {"loss": parts["rec_sum"], "rec": parts["rec_sum"],
                   "count": batch["mask"].sum().astype(jnp.float32)}

  return vmap_seeds(step_one, data)(state, batch, key)


def make_refae_step(refae: RefAE, rec_reduction: str = "sum") -> Callable:
  """`step(state, batch, key)`: `refae_train_step` for this RefAE (one compilation per RefAE)."""
  check_rec_reduction(rec_reduction)
  return functools.partial(refae_train_step, refae=refae, rec_reduction=rec_reduction)


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------

def reconstruction_metrics(x_hat: np.ndarray, x: np.ndarray, *,
                           logits: np.ndarray | None = None, labels: np.ndarray | None = None,
                           alpha: float = 0.0, rec_reduction: str = "sum") -> dict[str, float]:
  """Mean rec loss (both reductions) and, given C(x_hat), CE / accuracy / Eq. 1's total.

  Args:
    x_hat, x: (N, H, W, C) reconstructions and originals.
    logits: optional (N, classes) logits of the explained classifier on x_hat.
    labels: (N,) int labels (needed with `logits`).
    alpha: Eq. 1's alpha for the total.
    rec_reduction: which reduction "rec" (and the total) uses.

  Returns:
    {"rec", "rec_sum", "rec_mean"} and, with logits, {"ce", "accuracy", "total"}
    (total = (1 - alpha) rec + alpha ce). Accumulated in float64 on the host.
  """
  x_hat = np.asarray(x_hat, np.float32)
  x = np.asarray(x, np.float32)
  chex.assert_equal_shape([x_hat, x])
  err = np.square(x_hat.astype(np.float64) - x).reshape(x.shape[0], -1)
  out = {"rec_sum": float(err.sum(-1).mean()), "rec_mean": float(err.mean())}
  out["rec"] = out["rec_sum"] if check_rec_reduction(rec_reduction) == "sum" else out["rec_mean"]
  if logits is not None:
    logits = np.asarray(logits, np.float32)
    labels = np.asarray(labels)
    ce = np.asarray(optax.softmax_cross_entropy_with_integer_labels(
        jnp.asarray(logits), jnp.asarray(labels)))
    out["ce"] = float(ce.mean())
    out["accuracy"] = float((logits.argmax(-1) == labels).mean())
    a = check_alpha(alpha)
    out["total"] = (1.0 - a) * out["rec"] + a * out["ce"]
  return out
