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
training set are computed once (`encode_dataset`) and stored next to the
pixels (`pack`), so a ClaDec step for alpha = 0 costs only the decoder.

Several seeds are trained at once: a state whose leaves carry a leading seed
axis (`init_seeds`) and steps `vmap`ped over it (the seeds share the batch
order and differ in initialisation and dropout).
"""

from typing import Any, Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxconcepts.train import trainer as training

REC_REDUCTIONS = ("sum", "mean")

Batch = dict[str, jax.Array]


# ---------------------------------------------------------------------------
# Checks and losses
# ---------------------------------------------------------------------------

def check_alpha(alpha: float) -> float:
  """Returns `alpha` as a float; ValueError unless it lies in [0, 1]."""
  try:
    a = float(alpha)
  except (TypeError, ValueError) as e:
    raise TypeError(f"alpha must be a number in [0, 1], got {alpha!r}") from e
  if not 0.0 <= a <= 1.0 or np.isnan(a):
    raise ValueError(f"alpha must lie in [0, 1] (Eq. 1 of the ClaDec paper), got {alpha!r}")
  return a


def check_rec_reduction(reduction: str) -> str:
  if reduction not in REC_REDUCTIONS:
    raise ValueError(f"unknown rec_reduction {reduction!r}; valid: {list(REC_REDUCTIONS)} "
                     "('sum' over pixels per image as the paper, 'mean' as the authors' code)")
  return reduction


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
                labels: jax.Array | None, alpha: float, reduction: str = "sum",
                mask: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Eq. 1: `(1 - alpha) * rec + alpha * CE(C(x_hat), y)`, batch means.

  Args:
    x_hat: (N, H, W, C) reconstructions.
    x: (N, H, W, C) inputs.
    logits: (N, classes) = C(x_hat), or None when alpha == 0.
    labels: (N,) int labels (None when alpha == 0).
    alpha: in [0, 1].
    reduction: "sum" | "mean" over pixels.
    mask: optional (N,) bool, False on padding rows.

  Returns:
    (loss, {"rec_sum", "ce_sum", "total_sum"}: sums over valid rows).
  """
  alpha = check_alpha(alpha)
  rec, rec_sum = _masked_mean(per_image_rec(x_hat, x, reduction), mask)
  if logits is None:
    if alpha > 0:
      raise ValueError(f"alpha={alpha} > 0 needs the classifier's logits on x_hat")
    ce = ce_sum = jnp.zeros((), rec.dtype)
  else:
    ce, ce_sum = _masked_mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels),
                              mask)
  loss = (1.0 - alpha) * rec + alpha * ce
  return loss, {"rec_sum": rec_sum, "ce_sum": ce_sum,
                "total_sum": (1.0 - alpha) * rec_sum + alpha * ce_sum}


# ---------------------------------------------------------------------------
# Models
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
    return self.decoder(self.encoder(x, train, stop=self.layer))


def select_neurons(codes: jax.Array | np.ndarray, neurons: Sequence[int] | None):
  """Keeps the given neurons (channels, the last axis) of codes (N, ..., c)."""
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


def map_batches(fn: Callable[..., jax.Array], *arrays: np.ndarray, args: Sequence[Any] = (),
                batch_size: int = 256) -> np.ndarray:
  """`fn(*args, *batch)` over aligned arrays in fixed-size batches, concatenated.

  The last batch is padded (so `fn` compiles once) and the padding dropped.
  `fn` is jitted here unless it already is (has `.lower`): pass a jitted
  function that takes the weights in `args` to reuse one compilation across
  calls with different weights.

  Args:
    fn: (*args, *(B, ...)) -> (B, ...).
    *arrays: (N, ...) arrays, N >= 1.
    args: leading arguments passed unchanged (e.g. variables).
    batch_size: rows per call.

  Returns:
    (N, ...) numpy array.
  """
  n = arrays[0].shape[0]
  if any(a.shape[0] != n for a in arrays):
    raise ValueError(f"arrays differ in length: {[a.shape[0] for a in arrays]}")
  if n == 0:
    raise ValueError("map_batches needs at least one row")
  bs = max(1, min(int(batch_size), n))
  jfn = fn if hasattr(fn, "lower") else jax.jit(fn)
  out = []
  for start in range(0, n, bs):
    chunk = [np.asarray(a[start:start + bs]) for a in arrays]
    k = chunk[0].shape[0]
    if k < bs:
      chunk = [np.concatenate([c, np.zeros((bs - k,) + c.shape[1:], c.dtype)]) for c in chunk]
    out.append(np.asarray(jfn(*args, *chunk))[:k])
  return np.concatenate(out, axis=0)


def encode_dataset(encode_fn: Callable[..., jax.Array], images: np.ndarray, args=(),
                   batch_size: int = 256) -> np.ndarray:
  """Codes (N, ...) float32 of all images: `encode_fn(*args, x)` in batches."""
  return map_batches(encode_fn, np.asarray(images, np.float32), args=args,
                     batch_size=batch_size).astype(np.float32)


# ---------------------------------------------------------------------------
# Seeds: states with a leading seed axis
# ---------------------------------------------------------------------------

def seed_keys(seeds: Sequence[int]) -> jax.Array:
  """One PRNG key per seed, stacked (S, 2)."""
  seeds = [int(s) for s in seeds]
  if not seeds:
    raise ValueError("seeds must not be empty")
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"seeds has duplicates: {seeds}")
  return jnp.stack([jax.random.PRNGKey(s) for s in seeds])


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
  keys = seed_keys(seeds)
  per_seed = [init_fn(keys[i]) for i in range(keys.shape[0])]
  per_seed = [{"params": v["params"], "batch_stats": v.get("batch_stats", {})} for v in per_seed]
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *per_seed)
  return jax.vmap(lambda v: training.create_train_state(apply_fn, v, tx))(stacked)


def seed_slice(tree: Any, i: int) -> Any:
  """The `i`-th seed's leaves of a seed-stacked pytree."""
  return jax.tree.map(lambda a: a[i], tree)


def _vmap_seeds(step_one: Callable) -> Callable:
  """(state[S], batch, key) -> (state[S], metrics averaged over seeds)."""

  def step(state, batch, key):
    n_seeds = jax.tree.leaves(state.params)[0].shape[0]
    keys = jax.random.split(key, n_seeds)
    state, metrics = jax.vmap(step_one, in_axes=(0, None, 0))(state, batch, keys)
    count = metrics.pop("count")[0]
    metrics = {k: v.mean() for k, v in metrics.items()}
    metrics["count"] = count
    return state, metrics

  return step


# ---------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------

def make_cladec_step(decoder: nn.Module, classifier_apply: Callable[[jax.Array], jax.Array],
                     image_shape: Sequence[int], code_shape: Sequence[int], alpha: float,
                     rec_reduction: str = "sum") -> Callable:
  """The ClaDec training step over seed-stacked decoder states.

  Args:
    decoder: the decoder module (its state holds only its params).
    classifier_apply: x (B, H, W, C) -> logits with the classifier's variables
      bound, in eval mode; frozen (not part of the state), gradients flow
      through it. Not called when alpha == 0.
    image_shape, code_shape: per-example shapes inside the packed batch.
    alpha: Eq. 1's trade-off, in [0, 1].
    rec_reduction: "sum" | "mean".

  Returns:
    `step(state, batch, key) -> (state, metrics)` with batch {"image": packed
    (B, P + D) from `pack`, "label", "mask"}; metrics are sums over the batch
    ("loss" = total, "rec", "ce", "correct" of C on x_hat) averaged over seeds.
  """
  alpha = check_alpha(alpha)
  check_rec_reduction(rec_reduction)

  def step_one(state, batch, key):
    del key  # the decoder is deterministic
    x, code = unpack(batch["image"], image_shape, code_shape)

    def loss_fn(params):
      x_hat = decoder.apply({"params": params}, code)
      logits = classifier_apply(x_hat) if alpha > 0 else None
      loss, parts = cladec_loss(x_hat, x, logits, batch["label"], alpha, rec_reduction,
                                batch["mask"])
      return loss, parts

    grads, parts = jax.grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads)
    return state, {"loss": parts["total_sum"], "rec": parts["rec_sum"], "ce": parts["ce_sum"],
                   "count": batch["mask"].sum().astype(jnp.float32)}

  return _vmap_seeds(step_one)


def make_refae_step(refae: RefAE, rec_reduction: str = "sum") -> Callable:
  """The RefAE training step (reconstruction loss only) over seed-stacked states.

  Batch {"image" (B, H, W, C), "label" (unused), "mask"}; BatchNorm and dropout
  in train mode (`key` drives dropout).
  """
  check_rec_reduction(rec_reduction)

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

  return _vmap_seeds(step_one)


# ---------------------------------------------------------------------------
# Inference and evaluation
# ---------------------------------------------------------------------------

def decode(decoder: nn.Module, params: Any, codes: np.ndarray, batch_size: int = 256,
           decode_fn: Callable | None = None) -> np.ndarray:
  """Reconstructions (N, H, W, C) of codes (N, ...) for one seed's params.

  `decode_fn(params, codes)` (jitted) may be passed to reuse a compilation.
  """
  fn = decode_fn or jax.jit(lambda p, c: decoder.apply({"params": p}, c))
  return map_batches(fn, codes, args=(params,), batch_size=batch_size).astype(np.float32)


def refae_reconstruct(refae: RefAE, variables: Any, images: np.ndarray, batch_size: int = 256,
                      apply_fn: Callable | None = None) -> np.ndarray:
  """RefAE reconstructions in eval mode for one seed's variables."""
  fn = apply_fn or jax.jit(lambda v, x: refae.apply(v, x, train=False))
  return map_batches(fn, images, args=(variables,), batch_size=batch_size).astype(np.float32)


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
    (total = (1 - alpha) rec + alpha ce).
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
