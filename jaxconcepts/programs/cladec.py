"""The ClaDec paper end to end: `train(config, workdir)` and `evaluate(config, workdir)`.

`train.py --config=configs/cladec.py` (task "cladec") runs these stages, each
its own `training.fit` run under `workdir/checkpoints/<stage>`, so an
interrupted run resumes where it stopped and finished stages are skipped:

1. the classifier to explain: restored from `config.classifier_workdir`, or
   trained here (`classifier`, with `workdir/config.json` as `train.py
   --config=configs/classifier.py` writes it);
2. per layer in `config.layers`: ClaDec's decoder at `config.alpha`
   (`cladec_<layer>_a<alpha>_s<seeds>`) and RefAE (`refae_<layer>_s<seeds>`),
   all seeds of a stage trained together (`vmap` over PRNG keys);
3. the alpha sweep at `config.alpha_layer` (`cladec_<layer>_a<alpha>_...`);
4. evaluation classifiers (the classifier's architecture, `config.eval_classifier`)
   trained on ClaDec's and RefAE's reconstructions of the training set and
   tested on the reconstructions of the test set, one per seed
   (`eval_cladec_<layer>_a<alpha>_s<seed>`, `eval_refae_<layer>_s<seed>`);
5. neuron subsets at `config.subsets.layer`: nested and disjoint runs of
   channels (`cladec_<layer>_a<alpha>_n<first>-<last>_...`);
6. Table 6: one classifier run (`clf_sweep`) snapshotted after each of
   `config.classifier_epochs` epochs (0 = untrained), a ClaDec decoder and an
   evaluation classifier per snapshot at `config.classifier_epochs_layer`
   (RefAE does not depend on the classifier: its columns reuse stage 2).

`evaluate.py` restores all of it and writes under `workdir/results` the tables
`cladec_layers` (Tables 2/3), `cladec_alpha` (4/5), `cladec_training_epochs`
(6), `cladec_subsets`, `occlusion` (7/8), each `.json` + `.md` with the rec
reduction, epochs and seeds that produced it, and under `workdir/figures` the
PNGs `cladec_layers.png` / `cladec_layers_misclassified.png` (Figs. 6 / 7),
`cladec_alpha.png` (11), `cladec_training_epochs.png` (12),
`cladec_subsets_nested.png` / `_disjoint.png` (13 / 14), `occlusion.png` (16).

Every configuration error (alpha outside [0, 1], a layer the model lacks, a
neuron subset larger than the layer, a missing classifier checkpoint, a
decoder that cannot reach the image size, occlusion squares that do not fit)
is raised before any training.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from jaxconcepts.methods import cladec
from jaxconcepts.programs import classifier as classifier_lib
from jaxconcepts.programs import config_utils
from jaxconcepts.data import sources as data_lib
from jaxconcepts.models import decoders
from jaxconcepts.models import classifiers as models
from jaxconcepts.methods import occlusion as occ
from jaxconcepts import report
from jaxconcepts.models import split as split_lib
from jaxconcepts.train import trainer as training

RESULTS_DIR = "results"
FIGURES_DIR = "figures"
STAGES_FILE = "cladec_stages.json"
CONFIG_FILE = "cladec_config.json"


def _get(config, key, default=None):
  return config.get(key, default) if hasattr(config, "get") else getattr(config, key, default)


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------

def _int_list(values, what: str) -> list[int]:
  try:
    return [int(v) for v in (values or ())]
  except (TypeError, ValueError) as e:
    raise ValueError(f"{what} must be integers, got {values!r}") from e


def _check_epochs(value, what: str, minimum: int = 1) -> int:
  if isinstance(value, bool) or int(value) != value or int(value) < minimum:
    raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
  return int(value)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks everything that needs no data or model (see `prepare` for the rest).

  Raises:
    ValueError: naming the bad value and what was expected.
  """
  classifier_lib.validate_data_and_arch(config)
  cladec.check_rec_reduction(config.rec_reduction)
  cladec.check_alpha(config.alpha)
  for a in config.alphas:
    cladec.check_alpha(a)
  if len(set(float(a) for a in config.alphas)) != len(config.alphas):
    raise ValueError(f"alphas has duplicates: {tuple(config.alphas)}")
  seeds = _int_list(config.seeds, "seeds")
  if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
    raise ValueError(f"seeds must be distinct non-negative ints, at least one, got {config.seeds!r}")
  if not tuple(config.layers):
    raise ValueError("layers must name at least one layer (e.g. (-1, -2, -3, -4, -5))")
  config_utils.check_choice("decoder variant", config.decoder.variant, decoders.VARIANTS)
  decoders.choose_conv_transpose_impl(_get(config.decoder, "impl", "auto"))
  _check_epochs(config.decoder_epochs, "decoder_epochs")
  _check_epochs(config.refae_epochs, "refae_epochs")
  _check_epochs(config.eval_classifier.num_epochs, "eval_classifier.num_epochs", 0)
  if not config.classifier_workdir:
    _check_epochs(config.classifier.num_epochs, "classifier.num_epochs")
  epochs = _int_list(config.classifier_epochs, "classifier_epochs")
  if any(e < 0 for e in epochs) or len(set(epochs)) != len(epochs):
    raise ValueError(f"classifier_epochs must be distinct ints >= 0, got {tuple(epochs)}")
  for key in ("batch_size", "eval_batch_size"):
    _check_epochs(config[key], key)
  config_utils.check_choice("decoder optimizer", config.decoder_optimizer.name, ("sgd", "adam"))
  sub = config.subsets
  nested = _int_list(sub.nested, "subsets.nested")
  if any(n < 1 for n in nested):
    raise ValueError(f"subsets.nested sizes must be >= 1, got {tuple(nested)}")
  if int(sub.disjoint_count) < 0 or (int(sub.disjoint_count) > 0 and int(sub.disjoint_size) < 1):
    raise ValueError(f"subsets.disjoint_size must be >= 1 and disjoint_count >= 0, got "
                     f"{sub.disjoint_size} and {sub.disjoint_count}")
  if int(config.occlusion.n_images) < 0 or int(config.figures.n_images) < 1:
    raise ValueError("occlusion.n_images must be >= 0 and figures.n_images >= 1")


def check_classifier_workdir(path: str) -> None:
  """FileNotFoundError unless `path` holds a trained classifier (config + checkpoint)."""
  cfg = os.path.join(path, classifier_lib.CONFIG_FILE)
  ckpt = os.path.join(path, "checkpoints", "classifier")
  if not os.path.exists(cfg):
    raise FileNotFoundError(
        f"classifier_workdir {path!r} has no {classifier_lib.CONFIG_FILE}; train the classifier "
        f"first: python train.py --config=configs/classifier.py --workdir={path}")
  steps = [d for d in os.listdir(ckpt) if d.isdigit()] if os.path.isdir(ckpt) else []
  if not steps:
    raise FileNotFoundError(
        f"classifier_workdir {path!r} has no classifier checkpoint under {ckpt}; train it first: "
        f"python train.py --config=configs/classifier.py --workdir={path}")


# ---------------------------------------------------------------------------
# Context: data, model and everything resolved once
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class Context:
  """What every stage needs, resolved and checked once."""
  config: ml_collections.ConfigDict
  workdir: str
  dataset: data_lib.Dataset
  model: Any
  layers: list[str]
  layer_shapes: dict[str, tuple[int, ...]]
  seeds: list[int]
  alphas: list[float]
  alpha_layer: str | None
  subset_layer: str | None
  subsets: list[tuple[str, int, int]]  # (kind, start, stop)
  sweep_layer: str | None
  sweep_epochs: list[int]
  occlusion_layers: list[str]
  variables: Any = None  # the classifier's, once trained / restored
  classifier_info: dict = dataclasses.field(default_factory=dict)
  jits: dict = dataclasses.field(default_factory=dict)  # compiled once per process

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return self.dataset.image_shape

  @property
  def seed_tag(self) -> str:
    return "s" + "-".join(str(s) for s in self.seeds)

  def alias(self, layer: str) -> str:
    inv = {v: k for k, v in getattr(self.model, "aliases", {}).items()}
    return inv.get(layer, "")


def _subset_list(sub, channels: int, layer: str) -> list[tuple[str, int, int]]:
  out = []
  for n in _int_list(sub.nested, "subsets.nested"):
    if n > channels:
      raise ValueError(f"neuron subset of size {n} is larger than layer {layer!r}, which has "
                       f"{channels} neurons (channels)")
    out.append(("nested", 0, n))
  size, count = int(sub.disjoint_size), int(sub.disjoint_count)
  if count > 0:
    if size * count > channels:
      raise ValueError(f"{count} disjoint neuron subsets of size {size} need {size * count} "
                       f"neurons, but layer {layer!r} has {channels} (channels)")
    out += [("disjoint", i * size, (i + 1) * size) for i in range(count)]
  return out


def prepare(config: ml_collections.ConfigDict, workdir: str) -> Context:
  """Validates the config, loads the data and resolves layers; no training.

  Raises:
    ValueError / FileNotFoundError: every bad input the issue lists, before
      anything long runs.
  """
  validate_config(config)
  clf_dir = config.classifier_workdir
  if clf_dir:
    check_classifier_workdir(clf_dir)
  dataset = classifier_lib.load_data(config.data)
  model = classifier_lib.build_model(config.arch, dataset.num_classes, dataset.image_shape)
  shapes = split_lib.layer_shapes(model, dataset.image_shape)

  def resolve(layer):
    return split_lib.resolve_layer(model, layer)

  layers = []
  for layer in config.layers:
    name = resolve(layer)
    if name in layers:
      raise ValueError(f"layers lists {name!r} twice: {tuple(config.layers)}")
    layers.append(name)
  alphas = [float(a) for a in config.alphas]
  alpha_layer = resolve(config.alpha_layer) if alphas else None
  sub_layer = None
  subsets: list[tuple[str, int, int]] = []
  if tuple(config.subsets.nested) or int(config.subsets.disjoint_count) > 0:
    sub_layer = resolve(config.subsets.layer)
    subsets = _subset_list(config.subsets, shapes[sub_layer][-1], sub_layer)
  sweep_epochs = _int_list(config.classifier_epochs, "classifier_epochs")
  sweep_layer = resolve(config.classifier_epochs_layer) if sweep_epochs else None
  occ_layers = [resolve(layer) for layer in config.occlusion.layers]
  missing = [l for l in occ_layers if l not in layers]
  if missing:
    raise ValueError(f"occlusion.layers {missing} must also be in layers {layers} (the "
                     "occlusion study uses their ClaDec decoders)")
  if occ_layers:
    occ.square_masks(dataset.image_shape[:2], config.occlusion.corners, config.occlusion.size)
  for name in set(layers + [l for l in (alpha_layer, sub_layer, sweep_layer) if l]):
    decoders.create_decoder(shapes[name], dataset.image_shape, variant=config.decoder.variant,
                            kernel_size=_get(config.decoder, "kernel_size"))
  if clf_dir:
    with open(os.path.join(clf_dir, classifier_lib.CONFIG_FILE)) as f:
      info = json.load(f)["classifier"]
    if (info["dataset"] != dataset.name or tuple(info["image_shape"]) != dataset.image_shape
        or info["arch"] != config.arch):
      raise ValueError(
          f"the classifier in {clf_dir!r} is a {info['arch']} on {info['dataset']} "
          f"{tuple(info['image_shape'])}, but the config asks for {config.arch} on "
          f"{dataset.name} {dataset.image_shape}")
  return Context(config=config, workdir=workdir, dataset=dataset, model=model, layers=layers,
                 layer_shapes=shapes, seeds=_int_list(config.seeds, "seeds"), alphas=alphas,
                 alpha_layer=alpha_layer, subset_layer=sub_layer, subsets=subsets,
                 sweep_layer=sweep_layer, sweep_epochs=sweep_epochs,
                 occlusion_layers=occ_layers)


# ---------------------------------------------------------------------------
# Stage bookkeeping
# ---------------------------------------------------------------------------

def _fmt_alpha(alpha: float) -> str:
  return f"{float(alpha):g}"


def cladec_stage(layer: str, alpha: float, seed_tag: str, subset: tuple[int, int] | None = None,
                 clf_epochs: int | None = None) -> str:
  name = f"cladec_{layer}_a{_fmt_alpha(alpha)}"
  if subset is not None:
    name += f"_n{subset[0]}-{subset[1] - 1}"
  if clf_epochs is not None:
    name += f"_clf{clf_epochs}ep"
  return f"{name}_{seed_tag}"


def refae_stage(layer: str, seed_tag: str) -> str:
  return f"refae_{layer}_{seed_tag}"


def eval_stage(kind: str, layer: str, seed: int, alpha: float | None = None,
               clf_epochs: int | None = None) -> str:
  name = f"eval_{kind}_{layer}"
  if alpha is not None:
    name += f"_a{_fmt_alpha(alpha)}"
  if clf_epochs is not None:
    name += f"_clf{clf_epochs}ep"
  return f"{name}_s{seed}"


def _ckpt_dir(workdir: str, name: str) -> str:
  return os.path.join(workdir, "checkpoints", name)


def _latest_step(workdir: str, name: str) -> int | None:
  d = _ckpt_dir(workdir, name)
  steps = [int(s) for s in os.listdir(d) if s.isdigit()] if os.path.isdir(d) else []
  return max(steps) if steps else None


def _done(workdir: str, name: str, total_steps: int) -> bool:
  step = _latest_step(workdir, name)
  return step is not None and step >= total_steps


def _record_stage(workdir: str, name: str, seconds: float, **info) -> None:
  path = os.path.join(workdir, STAGES_FILE)
  stages = {}
  if os.path.exists(path):
    with open(path) as f:
      stages = json.load(f)
  prev = stages.get(name, {})
  stages[name] = {**info, "seconds": round(prev.get("seconds", 0.0) + seconds, 2)}
  training.write_json_atomic(path, stages)


def _loop(ctx: Context, num_epochs: int, seed: int | None = None) -> training.LoopConfig:
  c = ctx.config
  return training.loop_config(c, num_epochs=int(num_epochs), batch_size=int(c.batch_size),
                              seed=int(ctx.seeds[0] if seed is None else seed),
                              eval_every_epochs=max(int(num_epochs), 1))


# ---------------------------------------------------------------------------
# Classifiers
# ---------------------------------------------------------------------------

def classifier_config(ctx: Context, num_epochs: int, seed: int,
                      sub: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
  """A `configs/classifier.py`-style config for the classifier or an evaluation classifier."""
  c = ctx.config
  sub = c.classifier if sub is None else sub
  out = ml_collections.ConfigDict()
  out.task = "classifier"
  out.data = ml_collections.ConfigDict(c.data.to_dict())
  out.arch = c.arch
  out.num_epochs = int(num_epochs)
  out.batch_size = int(_get(sub, "batch_size", c.batch_size))
  out.eval_batch_size = int(c.eval_batch_size)
  out.seed = int(seed)
  out.optimizer = ml_collections.ConfigDict(sub.optimizer.to_dict())
  for key in ("checkpoint_every_steps", "keep_checkpoints", "log_every_steps", "num_devices"):
    out[key] = c[key]
  out.eval_every_epochs = max(int(num_epochs), 1)
  return out


def _classifier_stage(ctx: Context) -> None:
  """Restores the classifier from classifier_workdir or trains it in workdir."""
  c = ctx.config
  if c.classifier_workdir:
    _, variables, _, info = classifier_lib.restore_classifier(c.classifier_workdir)
    ctx.variables, ctx.classifier_info = variables, {**info, "workdir": c.classifier_workdir}
    logging.info("cladec: explaining the classifier in %s (step %d)", c.classifier_workdir,
                 info["step"])
    return
  cfg = classifier_config(ctx, c.classifier.num_epochs, int(_get(c.classifier, "seed", 0)))
  ds = ctx.dataset
  classifier_lib.save_config(cfg, ctx.workdir, {"classifier": {
      "arch": c.arch, "num_classes": ds.num_classes, "image_shape": list(ds.image_shape),
      "num_train": ds.num_train, "dataset": ds.name, "class_names": list(ds.class_names)}})
  t0 = time.time()
  _, result = classifier_lib.train_classifier(cfg, ctx.workdir, name="classifier", dataset=ds)
  _record_stage(ctx.workdir, "classifier", time.time() - t0, images=ds.num_train,
                epochs=cfg.num_epochs)
  state = jax.device_get(result.state)
  ctx.variables = {"params": state.params, "batch_stats": state.batch_stats}
  ctx.classifier_info = {"workdir": ctx.workdir, "step": int(state.step)}


def _restore_classifier_for_eval(ctx: Context) -> None:
  clf_dir = ctx.config.classifier_workdir or ctx.workdir
  if not ctx.config.classifier_workdir:
    check_classifier_workdir(ctx.workdir)
  _, variables, _, info = classifier_lib.restore_classifier(clf_dir)
  ctx.variables, ctx.classifier_info = variables, {**info, "workdir": clf_dir}


def _jit(ctx: Context, key: Any, make: Callable[[], Callable]) -> Callable:
  """A jitted function cached in the context (weights are arguments, not constants)."""
  if key not in ctx.jits:
    ctx.jits[key] = jax.jit(make())
  return ctx.jits[key]


def _classifier_apply(ctx: Context, variables=None) -> Callable[[jax.Array], jax.Array]:
  """x -> logits of the (frozen, eval-mode) classifier, for use inside a train step.

  The weights are closed over, so they are constants of the compiled step (only
  steps with alpha > 0 call it; they are few and each is compiled once).
  """
  variables = ctx.variables if variables is None else variables
  model = ctx.model
  return lambda x: model.apply(variables, x, train=False)


def _logits(ctx: Context, images: np.ndarray, variables=None) -> np.ndarray:
  model = ctx.model
  fn = _jit(ctx, "logits", lambda: lambda v, x: model.apply(v, x, train=False))
  return cladec.map_batches(fn, images, args=(ctx.variables if variables is None else variables,),
                            batch_size=ctx.config.eval_batch_size)


def _predict(ctx: Context, images: np.ndarray, variables=None) -> np.ndarray:
  return _logits(ctx, images, variables).argmax(-1)


def _train_eval_classifier(ctx: Context, name: str, seed: int,
                           make_recons: Callable[[], tuple[np.ndarray, np.ndarray]]) -> None:
  """Trains one evaluation classifier on reconstructions (skipped when done)."""
  ec = ctx.config.eval_classifier
  epochs = int(ec.num_epochs)
  if epochs == 0:
    return
  cfg = classifier_config(ctx, epochs, seed, ec)
  total = epochs * data_lib.num_batches(ctx.dataset.num_train, cfg.batch_size)
  if _done(ctx.workdir, name, total):
    return
  t0 = time.time()
  recon_train, recon_test = make_recons()
  classifier_lib.train_classifier(cfg, ctx.workdir, name=name, dataset=ctx.dataset,
                                  train_images=recon_train, eval_images=recon_test)
  _record_stage(ctx.workdir, name, time.time() - t0, images=int(recon_train.shape[0]),
                epochs=epochs)


def _eval_classifier_accuracy(ctx: Context, name: str, seed: int,
                              recon_test: np.ndarray) -> float:
  """Test accuracy of a trained evaluation classifier on reconstructions (nan if missing)."""
  ec = ctx.config.eval_classifier
  if int(ec.num_epochs) == 0:
    return float("nan")
  cfg = classifier_config(ctx, ec.num_epochs, seed, ec)
  steps = data_lib.num_batches(ctx.dataset.num_train, cfg.batch_size)
  state = jax.eval_shape(lambda: classifier_lib.init_state(
      ctx.model, cfg, ctx.image_shape, steps, jax.random.PRNGKey(seed))[0])
  restored = training.restore_latest(_ckpt_dir(ctx.workdir, name), state)
  if restored is None:
    logging.warning("cladec: evaluation classifier %s is missing (run train.py)", name)
    return float("nan")
  state, _ = restored
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  preds = _predict(ctx, recon_test, variables)
  return float((preds == ctx.dataset.test_labels[:len(preds)]).mean())


# ---------------------------------------------------------------------------
# Decoders
# ---------------------------------------------------------------------------

def _decoder(ctx: Context, code_shape) -> decoders.Decoder:
  d = ctx.config.decoder
  return decoders.create_decoder(code_shape, ctx.image_shape, variant=d.variant,
                                 kernel_size=_get(d, "kernel_size"),
                                 impl=_get(d, "impl", "auto"))


def _decoder_init_fn(ctx: Context, decoder, code_shape) -> Callable:
  dummy = jnp.zeros((1, *code_shape), jnp.float32)
  return _jit(ctx, ("decoder_init", tuple(code_shape)),
              lambda: lambda k: decoder.init(k, dummy))


def _decode_fn(ctx: Context, decoder, code_shape) -> Callable:
  return _jit(ctx, ("decode", tuple(code_shape)),
              lambda: lambda p, c: decoder.apply({"params": p}, c))


def _decoder_state(ctx: Context, decoder, code_shape, num_epochs: int):
  steps = data_lib.num_batches(ctx.dataset.num_train, ctx.config.batch_size)
  tx, lr_fn = training.optimizer_from_config(ctx.config.decoder_optimizer, steps, num_epochs)
  state = cladec.init_seeds(_decoder_init_fn(ctx, decoder, code_shape), tx, decoder.apply,
                            ctx.seeds)
  return state, lr_fn


def _refae(ctx: Context, layer: str) -> cladec.RefAE:
  encoder = models.create_model(ctx.config.arch, ctx.dataset.num_classes)
  return cladec.RefAE(encoder=encoder, layer=layer,
                      decoder=_decoder(ctx, ctx.layer_shapes[layer]))


def _refae_state(ctx: Context, layer: str, num_epochs: int):
  """(RefAE, seed-stacked state, lr schedule); the encoder is initialised as the classifier."""
  refae = _refae(ctx, layer)
  steps = data_lib.num_batches(ctx.dataset.num_train, ctx.config.batch_size)
  tx, lr_fn = training.optimizer_from_config(ctx.config.decoder_optimizer, steps, num_epochs)
  dummy = jnp.zeros((1, *ctx.image_shape), jnp.float32)
  abstract = jax.eval_shape(lambda: refae.init({"params": jax.random.PRNGKey(0)}, dummy,
                                               train=False))
  enc_params = list(abstract["params"]["encoder"])
  enc_stats = list(abstract.get("batch_stats", {}).get("encoder", {}))
  # The full classifier's init (one compilation for all layers and seeds), cut at the layer,
  # and the decoder's init (shared with ClaDec's decoder of the same code shape).
  model = ctx.model
  image_shape = ctx.image_shape
  enc_init = _jit(ctx, "encoder_init",
                  lambda: lambda k: models.init_variables(model, k, image_shape))
  dec_init = _decoder_init_fn(ctx, refae.decoder, ctx.layer_shapes[layer])

  def init_fn(key):
    k_enc, k_dec = jax.random.split(key)
    full = enc_init(k_enc)
    return {"params": {"encoder": {k: full["params"][k] for k in enc_params},
                       "decoder": dec_init(k_dec)["params"]},
            "batch_stats": {"encoder": {k: full["batch_stats"][k] for k in enc_stats}}}

  return refae, cladec.init_seeds(init_fn, tx, refae.apply, ctx.seeds), lr_fn


def _codes(ctx: Context, layer: str, images: np.ndarray, variables=None,
           neurons: tuple[int, int] | None = None) -> np.ndarray:
  """The frozen classifier's activations at `layer` (optionally channels start:stop)."""
  model = ctx.model
  fn = _jit(ctx, ("encode", layer),
            lambda: lambda v, x: model.apply(v, x, train=False, stop=layer))
  codes = cladec.encode_dataset(fn, images, args=(ctx.variables if variables is None
                                                  else variables,),
                                batch_size=ctx.config.eval_batch_size)
  if neurons is not None:
    codes = np.ascontiguousarray(cladec.select_neurons(codes, range(*neurons)))
  return codes


def _train_cladec(ctx: Context, layer: str, alpha: float, *, neurons=None, clf_epochs=None,
                  variables=None) -> str:
  """Trains (or resumes / skips) one ClaDec stage for all seeds; returns its name."""
  c = ctx.config
  name = cladec_stage(layer, alpha, ctx.seed_tag, neurons, clf_epochs)
  epochs = int(c.decoder_epochs)
  total = epochs * data_lib.num_batches(ctx.dataset.num_train, c.batch_size)
  if _done(ctx.workdir, name, total):
    return name
  t0 = time.time()
  codes = _codes(ctx, layer, ctx.dataset.train_images, variables, neurons)
  code_shape = codes.shape[1:]
  decoder = _decoder(ctx, code_shape)
  state, lr_fn = _decoder_state(ctx, decoder, code_shape, epochs)
  step = cladec.make_cladec_step(decoder, _classifier_apply(ctx, variables), ctx.image_shape,
                                 code_shape, alpha, c.rec_reduction)
  logging.info("cladec: %s (code %s, %d seeds, %d epochs)", name, code_shape, len(ctx.seeds),
               epochs)
  training.fit(name=name, workdir=ctx.workdir, state=state, train_step=step,
               images=cladec.pack(ctx.dataset.train_images, codes),
               labels=ctx.dataset.train_labels, cfg=_loop(ctx, epochs), lr_fn=lr_fn)
  _record_stage(ctx.workdir, name, time.time() - t0, images=ctx.dataset.num_train,
                epochs=epochs, seeds=len(ctx.seeds))
  return name


def _train_refae(ctx: Context, layer: str) -> str:
  c = ctx.config
  name = refae_stage(layer, ctx.seed_tag)
  epochs = int(c.refae_epochs)
  total = epochs * data_lib.num_batches(ctx.dataset.num_train, c.batch_size)
  if _done(ctx.workdir, name, total):
    return name
  t0 = time.time()
  refae, state, lr_fn = _refae_state(ctx, layer, epochs)
  logging.info("cladec: %s (%d seeds, %d epochs)", name, len(ctx.seeds), epochs)
  training.fit(name=name, workdir=ctx.workdir, state=state,
               train_step=cladec.make_refae_step(refae, c.rec_reduction),
               images=ctx.dataset.train_images, labels=ctx.dataset.train_labels,
               cfg=_loop(ctx, epochs), lr_fn=lr_fn)
  _record_stage(ctx.workdir, name, time.time() - t0, images=ctx.dataset.num_train,
                epochs=epochs, seeds=len(ctx.seeds))
  return name


def _restore_cladec(ctx: Context, layer: str, alpha: float, *, neurons=None, clf_epochs=None):
  """(decoder, seed-stacked params) of a trained ClaDec stage, or None if missing."""
  name = cladec_stage(layer, alpha, ctx.seed_tag, neurons, clf_epochs)
  shape = ctx.layer_shapes[layer]
  if neurons is not None:
    shape = shape[:-1] + (neurons[1] - neurons[0],)
  decoder = _decoder(ctx, shape)
  state = jax.eval_shape(  # the structure only: nothing is initialised
      lambda: _decoder_state(ctx, decoder, shape, int(ctx.config.decoder_epochs))[0])
  restored = training.restore_latest(_ckpt_dir(ctx.workdir, name), state)
  if restored is None:
    logging.warning("cladec: stage %s is missing (run train.py)", name)
    return None
  return decoder, restored[0].params


def _restore_refae(ctx: Context, layer: str):
  name = refae_stage(layer, ctx.seed_tag)
  refae = _refae(ctx, layer)
  state = jax.eval_shape(lambda: _refae_state(ctx, layer, int(ctx.config.refae_epochs))[1])
  restored = training.restore_latest(_ckpt_dir(ctx.workdir, name), state)
  if restored is None:
    logging.warning("cladec: stage %s is missing (run train.py)", name)
    return None
  state = restored[0]
  return refae, {"params": state.params, "batch_stats": state.batch_stats}


def _refae_recons(ctx: Context, refae: cladec.RefAE, variables, seed_index: int,
                  images: np.ndarray) -> np.ndarray:
  fn = _jit(ctx, ("refae", refae.layer),
            lambda: lambda v, x: refae.apply(v, x, train=False))
  return cladec.refae_reconstruct(refae, cladec.seed_slice(variables, seed_index), images,
                                  ctx.config.eval_batch_size, apply_fn=fn)


def _cladec_recons(ctx, layer, alpha, seed_index, images, *, neurons=None, clf_epochs=None,
                   variables=None, restored=None):
  restored = restored or _restore_cladec(ctx, layer, alpha, neurons=neurons,
                                         clf_epochs=clf_epochs)
  if restored is None:
    return None
  decoder, params = restored
  codes = _codes(ctx, layer, images, variables, neurons)
  return cladec.decode(decoder, cladec.seed_slice(params, seed_index), codes,
                       ctx.config.eval_batch_size,
                       decode_fn=_decode_fn(ctx, decoder, codes.shape[1:]))


# ---------------------------------------------------------------------------
# Table 6: classifier snapshots
# ---------------------------------------------------------------------------

def _snapshot_dir(workdir: str, epochs: int) -> str:
  return _ckpt_dir(workdir, f"clf_sweep_e{epochs}")


def _sweep_init(ctx: Context):
  cfg = classifier_config(ctx, max(max(ctx.sweep_epochs), 1),
                          int(_get(ctx.config.classifier, "seed", 0)))
  steps = data_lib.num_batches(ctx.dataset.num_train, cfg.batch_size)
  state, lr_fn = classifier_lib.init_state(ctx.model, cfg, ctx.image_shape, steps,
                                           jax.random.PRNGKey(cfg.seed))
  return cfg, state, lr_fn


def _train_classifier_snapshots(ctx: Context) -> None:
  """One classifier run with snapshots after each of `classifier_epochs` epochs."""
  cfg, state, lr_fn = _sweep_init(ctx)
  ds = ctx.dataset
  for e in sorted(ctx.sweep_epochs):
    snap = _snapshot_dir(ctx.workdir, e)
    if os.path.isdir(snap) and any(d.isdigit() for d in os.listdir(snap)):
      continue
    t0 = time.time()
    if e > 0:
      loop = training.loop_config(cfg, num_epochs=e)
      mesh = training.make_mesh(loop.num_devices)

      def eval_fn(s):
        m = training.evaluate_arrays(training.classifier_eval_step, s, ds.test_images,
                                     ds.test_labels, cfg.eval_batch_size, mesh)
        return {"test_loss": m["loss"], "test_accuracy": m["accuracy"]}

      result = training.fit(name="clf_sweep", workdir=ctx.workdir, state=state,
                            train_step=training.classifier_train_step, images=ds.train_images,
                            labels=ds.train_labels, cfg=loop, eval_fn=eval_fn, lr_fn=lr_fn)
      snap_state = jax.device_get(result.state)
    else:
      snap_state = state
    variables = {"params": snap_state.params, "batch_stats": snap_state.batch_stats}
    with ocp.CheckpointManager(os.path.abspath(snap)) as mngr:
      mngr.save(e, args=ocp.args.StandardSave(variables), force=True)
      mngr.wait_until_finished()
    _record_stage(ctx.workdir, f"clf_sweep_e{e}", time.time() - t0, images=ds.num_train,
                  epochs=e)


def _snapshot_variables(ctx: Context, epochs: int):
  state = jax.eval_shape(lambda: _sweep_init(ctx)[1])
  abstract = {"params": state.params, "batch_stats": state.batch_stats}
  restored = training.restore_latest(_snapshot_dir(ctx.workdir, epochs), abstract)
  return None if restored is None else restored[0]


# ---------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------

def enable_compilation_cache(config: ml_collections.ConfigDict, workdir: str) -> str | None:
  """Turns on JAX's persistent compilation cache unless it is set already.

  The pipeline compiles dozens of programs, many identical (every evaluation
  classifier's step, the encoder inits); with the cache each is compiled
  once, and a resumed run or `evaluate.py` reloads them. The directory is
  `config.compilation_cache_dir` (default `<workdir>/xla_cache`; "" disables).

  Returns:
    The cache directory in use, or None.
  """
  current = jax.config.jax_compilation_cache_dir
  if current:
    return current
  path = _get(config, "compilation_cache_dir")
  if path == "":
    return None
  path = os.path.abspath(os.path.expanduser(path or os.path.join(workdir, "xla_cache")))
  jax.config.update("jax_compilation_cache_dir", path)
  return path


def _save_run_config(ctx: Context) -> None:
  training.write_json_atomic(os.path.join(ctx.workdir, CONFIG_FILE),
                             json.loads(ctx.config.to_json_best_effort()))


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """`train.py` entry for task "cladec": every stage, resumable (see module doc).

  Returns:
    {"stages": the names trained or found done, "wall_s"}.
  """
  t_start = time.time()
  ctx = prepare(config, workdir)
  os.makedirs(workdir, exist_ok=True)
  enable_compilation_cache(config, workdir)
  _save_run_config(ctx)
  c = ctx.config
  logging.info("cladec: %s on %s (%d train / %d test), layers %s, seeds %s, alpha %g, "
               "rec %s, decoder %s", c.arch, ctx.dataset.name, ctx.dataset.num_train,
               ctx.dataset.num_test, ctx.layers, ctx.seeds, c.alpha, c.rec_reduction,
               c.decoder.variant)
  _classifier_stage(ctx)
  stages = []
  ds = ctx.dataset
  # Decoders first: the reconstruction-loss columns need nothing else.
  for layer in ctx.layers:
    stages.append(_train_cladec(ctx, layer, c.alpha))
    stages.append(_train_refae(ctx, layer))
  for alpha in ctx.alphas:
    stages.append(_train_cladec(ctx, ctx.alpha_layer, alpha))

  # Evaluation classifiers on the reconstructions (train set -> fit, test set -> eval).
  def cladec_recons(layer, alpha, i, clf_epochs=None, variables=None):
    def make():
      restored = _restore_cladec(ctx, layer, alpha, clf_epochs=clf_epochs)
      return tuple(_cladec_recons(ctx, layer, alpha, i, x, restored=restored,
                                  variables=variables)
                   for x in (ds.train_images, ds.test_images))
    return make

  def refae_recons(layer, i):
    def make():
      refae, variables = _restore_refae(ctx, layer)
      return tuple(_refae_recons(ctx, refae, variables, i, x)
                   for x in (ds.train_images, ds.test_images))
    return make

  for layer in ctx.layers:
    for i, seed in enumerate(ctx.seeds):
      name = eval_stage("cladec", layer, seed, c.alpha)
      _train_eval_classifier(ctx, name, seed, cladec_recons(layer, c.alpha, i))
      name = eval_stage("refae", layer, seed)
      _train_eval_classifier(ctx, name, seed, refae_recons(layer, i))
  for alpha in ctx.alphas:
    for i, seed in enumerate(ctx.seeds):
      name = eval_stage("cladec", ctx.alpha_layer, seed, alpha)
      _train_eval_classifier(ctx, name, seed, cladec_recons(ctx.alpha_layer, alpha, i))

  # Neuron subsets (figures 13, 14 and a rec-loss table).
  for _, start, stop in ctx.subsets:
    stages.append(_train_cladec(ctx, ctx.subset_layer, c.alpha, neurons=(start, stop)))

  # Table 6: classifiers trained for 0, 1, 4, ... epochs.
  if ctx.sweep_epochs:
    if ctx.sweep_layer not in ctx.layers:
      stages.append(_train_refae(ctx, ctx.sweep_layer))
      for i, seed in enumerate(ctx.seeds):
        _train_eval_classifier(ctx, eval_stage("refae", ctx.sweep_layer, seed), seed,
                               refae_recons(ctx.sweep_layer, i))
    _train_classifier_snapshots(ctx)
    for e in sorted(ctx.sweep_epochs):
      variables = _snapshot_variables(ctx, e)
      stages.append(_train_cladec(ctx, ctx.sweep_layer, c.alpha, clf_epochs=e,
                                  variables=variables))
      for i, seed in enumerate(ctx.seeds):
        _train_eval_classifier(
            ctx, eval_stage("cladec", ctx.sweep_layer, seed, c.alpha, clf_epochs=e), seed,
            cladec_recons(ctx.sweep_layer, c.alpha, i, clf_epochs=e, variables=variables))
  wall = time.time() - t_start
  logging.info("cladec: training done in %.0f s", wall)
  return {"stages": stages, "wall_s": wall}


# ---------------------------------------------------------------------------
# evaluate: tables
# ---------------------------------------------------------------------------

def _mean_std(values: Sequence[float]) -> tuple[float, float]:
  v = np.asarray([x for x in values if not np.isnan(x)], np.float64)
  if v.size == 0:
    return float("nan"), float("nan")
  return float(v.mean()), float(v.std())


def _notes(ctx: Context, *, epochs_of: Sequence[str] = ("decoder", "refae", "eval")) -> list[str]:
  c = ctx.config
  info = ctx.classifier_info
  ep = {"decoder": f"ClaDec decoders {c.decoder_epochs} epochs",
        "refae": f"RefAE {c.refae_epochs} epochs",
        "eval": f"evaluation classifiers {c.eval_classifier.num_epochs} epochs"}
  notes = [
      f"rec reduction: {c.rec_reduction} ("
      + ("squared error summed over the pixels of an image, the paper's"
         if c.rec_reduction == "sum" else "squared error averaged over pixels, the authors' code")
      + "), mean over the test images",
      "epochs: " + ", ".join(ep[k] for k in epochs_of)
      + f"; batch {c.batch_size}; decoder '{c.decoder.variant}'"
      + f" (kernel {_get(c.decoder, 'kernel_size') or decoders._KERNEL[c.decoder.variant]})",
      f"seeds: {ctx.seeds} (mean and std over seeds)",
      f"data: {ctx.dataset.name} ({c.data.source}), {ctx.dataset.num_train} train / "
      f"{ctx.dataset.num_test} test images, {ctx.image_shape}",
      f"classifier: {c.arch} from {info.get('workdir')} (step {info.get('step')})",
  ]
  return notes


def _layer_label(ctx: Context, layer: str) -> str:
  a = ctx.alias(layer)
  return f"{a} ({layer})" if a else layer


def _layer_table(ctx: Context, cache: dict) -> list[dict]:
  c = ctx.config
  ds = ctx.dataset
  rows = []
  for layer in ctx.layers:
    logging.info("cladec: evaluate: layer table, %s", _layer_label(ctx, layer))
    recs_c, recs_r, accs_c, accs_r = [], [], [], []
    restored = _restore_cladec(ctx, layer, c.alpha)
    ref = _restore_refae(ctx, layer)
    for i, seed in enumerate(ctx.seeds):
      if restored is not None:
        x_c = _cladec_recons(ctx, layer, c.alpha, i, ds.test_images, restored=restored)
        cache[("cladec", layer, i)] = x_c
        m = cladec.reconstruction_metrics(x_c, ds.test_images, logits=_logits(ctx, x_c),
                                          labels=ds.test_labels, alpha=c.alpha,
                                          rec_reduction=c.rec_reduction)
        cache[("cladec_metrics", layer, c.alpha, i)] = m
        recs_c.append(m["rec"])
        accs_c.append(_eval_classifier_accuracy(
            ctx, eval_stage("cladec", layer, seed, c.alpha), seed, x_c))
      if ref is not None:
        refae, variables = ref
        x_r = _refae_recons(ctx, refae, variables, i, ds.test_images)
        cache[("refae", layer, i)] = x_r
        recs_r.append(cladec.reconstruction_metrics(x_r, ds.test_images,
                                                    rec_reduction=c.rec_reduction)["rec"])
        accs_r.append(_eval_classifier_accuracy(ctx, eval_stage("refae", layer, seed), seed,
                                                x_r))
    rc, rc_s = _mean_std(recs_c)
    rr, rr_s = _mean_std(recs_r)
    ac, ac_s = _mean_std(accs_c)
    ar, ar_s = _mean_std(accs_r)
    rows.append({"layer": _layer_label(ctx, layer), "shape": "x".join(map(str, ctx.layer_shapes[layer])),
                 "rec_cladec": rc, "rec_cladec_std": rc_s, "rec_refae": rr, "rec_refae_std": rr_s,
                 "delta_rec": rc - rr, "acc_eval_cladec": ac, "acc_eval_cladec_std": ac_s,
                 "acc_eval_refae": ar, "acc_eval_refae_std": ar_s, "delta_acc": ac - ar,
                 "per_seed": {"rec_cladec": recs_c, "rec_refae": recs_r,
                              "acc_eval_cladec": accs_c, "acc_eval_refae": accs_r}})
  return rows


def _alpha_table(ctx: Context, cache: dict) -> list[dict]:
  c = ctx.config
  ds = ctx.dataset
  layer = ctx.alpha_layer
  rows = []
  for alpha in sorted(ctx.alphas, reverse=True):
    restored = _restore_cladec(ctx, layer, alpha)
    vals = {k: [] for k in ("total", "rec", "ce", "acc_c", "acc_eval")}
    for i, seed in enumerate(ctx.seeds):
      if restored is None:
        continue
      x_c = cache.get(("cladec", layer, i)) if alpha == c.alpha else None
      if x_c is None:
        x_c = _cladec_recons(ctx, layer, alpha, i, ds.test_images, restored=restored)
      cache[("alpha", alpha, i)] = x_c
      m = cladec.reconstruction_metrics(x_c, ds.test_images, logits=_logits(ctx, x_c),
                                        labels=ds.test_labels, alpha=alpha,
                                        rec_reduction=c.rec_reduction)
      vals["total"].append(m["total"])
      vals["rec"].append(m["rec"])
      vals["ce"].append(m["ce"])
      vals["acc_c"].append(m["accuracy"])
      vals["acc_eval"].append(_eval_classifier_accuracy(
          ctx, eval_stage("cladec", layer, seed, alpha), seed, x_c))
    row = {"alpha": alpha}
    for key, label in (("total", "total_loss"), ("rec", "rec_loss"), ("ce", "classifier_loss"),
                       ("acc_eval", "acc_eval_cladec"), ("acc_c", "acc_classifier_on_recon")):
      row[label], row[label + "_std"] = _mean_std(vals[key])
    row["per_seed"] = vals
    rows.append(row)
  return rows


def _sweep_table(ctx: Context, cache: dict) -> list[dict]:
  c = ctx.config
  ds = ctx.dataset
  layer = ctx.sweep_layer
  ref = _restore_refae(ctx, layer)
  recs_r, accs_r = [], []
  for i, seed in enumerate(ctx.seeds):
    if ref is None:
      break
    x_r = cache.get(("refae", layer, i))
    if x_r is None:
      x_r = _refae_recons(ctx, ref[0], ref[1], i, ds.test_images)
    recs_r.append(cladec.reconstruction_metrics(x_r, ds.test_images,
                                                rec_reduction=c.rec_reduction)["rec"])
    accs_r.append(_eval_classifier_accuracy(ctx, eval_stage("refae", layer, seed), seed, x_r))
  rr, rr_s = _mean_std(recs_r)
  ar, ar_s = _mean_std(accs_r)
  rows = []
  for e in sorted(ctx.sweep_epochs):
    variables = _snapshot_variables(ctx, e)
    recs_c, accs_c = [], []
    clf_acc = float("nan")
    if variables is not None:
      clf_acc = float((_predict(ctx, ds.test_images, variables) == ds.test_labels).mean())
      restored = _restore_cladec(ctx, layer, c.alpha, clf_epochs=e)
      for i, seed in enumerate(ctx.seeds):
        if restored is None:
          break
        x_c = _cladec_recons(ctx, layer, c.alpha, i, ds.test_images, variables=variables,
                             restored=restored)
        cache[("sweep", e, i)] = x_c
        recs_c.append(cladec.reconstruction_metrics(x_c, ds.test_images,
                                                    rec_reduction=c.rec_reduction)["rec"])
        accs_c.append(_eval_classifier_accuracy(
            ctx, eval_stage("cladec", layer, seed, c.alpha, clf_epochs=e), seed, x_c))
    rc, rc_s = _mean_std(recs_c)
    ac, ac_s = _mean_std(accs_c)
    rows.append({"classifier_epochs": e, "classifier_accuracy": clf_acc,
                 "rec_cladec": rc, "rec_cladec_std": rc_s, "rec_refae": rr,
                 "rec_refae_std": rr_s, "delta_rec": rc - rr, "acc_eval_cladec": ac,
                 "acc_eval_cladec_std": ac_s, "acc_eval_refae": ar, "acc_eval_refae_std": ar_s,
                 "delta_acc": ac - ar})
  return rows


def _subset_table(ctx: Context, cache: dict) -> list[dict]:
  c = ctx.config
  ds = ctx.dataset
  rows = []
  for kind, start, stop in ctx.subsets:
    restored = _restore_cladec(ctx, ctx.subset_layer, c.alpha, neurons=(start, stop))
    recs = []
    for i in range(len(ctx.seeds)):
      if restored is None:
        break
      x = _cladec_recons(ctx, ctx.subset_layer, c.alpha, i, ds.test_images,
                         neurons=(start, stop), restored=restored)
      cache[("subset", kind, start, stop, i)] = x
      recs.append(cladec.reconstruction_metrics(x, ds.test_images,
                                                rec_reduction=c.rec_reduction)["rec"])
    m, s = _mean_std(recs)
    rows.append({"kind": kind, "neurons": f"{start}-{stop - 1}", "n_neurons": stop - start,
                 "rec_cladec": m, "rec_cladec_std": s})
  return rows


def _occlusion_table(ctx: Context, cache: dict, gradcam_fn: Callable | None) -> list[dict]:
  c = ctx.config
  ds = ctx.dataset
  n = min(int(c.occlusion.n_images), ds.num_test)
  if n == 0 or not ctx.occlusion_layers:
    return []
  x = ds.test_images[:n]
  y = ds.test_labels[:n]
  masks = occ.square_masks(ctx.image_shape[:2], c.occlusion.corners, c.occlusion.size)
  occluded = occ.occlude(x, masks, occ.training_fill(ds.train_images))
  k = masks.shape[0]
  flat = occluded.reshape((n * k,) + ctx.image_shape)
  predict = lambda imgs: _predict(ctx, imgs)  # pylint: disable=unnecessary-lambda-assignment
  preds = predict(x)
  bs = int(_get(c.occlusion, "batch_size", 64))
  if gradcam_fn is None:
    from jaxconcepts.methods import attribution  # pylint: disable=g-import-not-at-top
    gradcam_fn = attribution.gradcam
  rows = []
  for layer in ctx.occlusion_layers:
    logging.info("cladec: evaluate: occlusion, %s (%d images x %d squares)",
                 _layer_label(ctx, layer), n, k)
    restored = _restore_cladec(ctx, layer, c.alpha)
    maps = occ.gradcam_pixel_maps(gradcam_fn, ctx.model, ctx.variables, x, preds, layer,
                                  ctx.layer_shapes[layer], batch_size=bs)
    r_grad = occ.map_relevance(maps, masks)
    res_c = {"acc_max": [], "acc_min": [], "delta_acc": []}
    res_g = {"acc_max": [], "acc_min": [], "delta_acc": []}
    for i, seed in enumerate(ctx.seeds):
      priority = np.random.default_rng((seed, 7)).random((n, k))
      if restored is not None:
        recon = _cladec_recons(ctx, layer, c.alpha, i, x, restored=restored)
        recon_occ = _cladec_recons(ctx, layer, c.alpha, i, flat, restored=restored)
        r_cla = occ.cladec_relevance(recon, recon_occ.reshape((n, k) + ctx.image_shape), masks)
        i_min, i_max = occ.pick_squares(r_cla, priority)
        for key, v in occ.occlusion_accuracy(predict, occluded, y, i_min, i_max).items():
          res_c[key].append(v)
        if i == 0:
          cache[("occlusion", layer)] = (x, recon, occluded, recon_occ.reshape(
              (n, k) + ctx.image_shape), i_min, i_max)
      i_min, i_max = occ.pick_squares(r_grad, priority)
      for key, v in occ.occlusion_accuracy(predict, occluded, y, i_min, i_max).items():
        res_g[key].append(v)
    row = {"layer": _layer_label(ctx, layer)}
    for prefix, res in (("cladec", res_c), ("gradcam", res_g)):
      for key in ("acc_max", "acc_min", "delta_acc"):
        row[f"{prefix}_{key}"], row[f"{prefix}_{key}_std"] = _mean_std(res[key])
    row["spatial"] = "x".join(map(str, ctx.layer_shapes[layer]))
    rows.append(row)
  return rows


# ---------------------------------------------------------------------------
# evaluate: figures
# ---------------------------------------------------------------------------

def diff_image(refae: np.ndarray, cladec_img: np.ndarray, scale: float) -> np.ndarray:
  """Fig. 7's difference: red where RefAE is brighter than ClaDec, green the opposite.

  Args:
    refae, cladec_img: (H, W, C) in [0, 1] (channels averaged).
    scale: the difference shown at full intensity.

  Returns:
    (H, W, 3) RGB in [0, 1].
  """
  d = (np.asarray(refae, np.float32) - np.asarray(cladec_img, np.float32)).mean(-1)
  d = d / max(float(scale), 1e-8)
  rgb = np.zeros(d.shape + (3,), np.float32)
  rgb[..., 0] = np.clip(d, 0, 1)
  rgb[..., 1] = np.clip(-d, 0, 1)
  return rgb


def _show(img: np.ndarray) -> np.ndarray:
  img = np.asarray(img, np.float32)
  return img if img.shape[-1] in (1, 3) else img.mean(-1, keepdims=True)


def _fig_layers(ctx: Context, cache: dict, idx: np.ndarray, path: str, title: str) -> str | None:
  if idx.size == 0:
    return None
  ds = ctx.dataset
  rows, labels = [], []
  layers = [l for l in ctx.layers if ("cladec", l, 0) in cache and ("refae", l, 0) in cache]
  if not layers:
    return None
  diffs = [cache[("refae", l, 0)][idx] - cache[("cladec", l, 0)][idx] for l in layers]
  scale = max(float(np.abs(np.stack(diffs)).max()), 1e-3)
  for layer in layers:
    row = []
    for j in idx:
      r, cimg = cache[("refae", layer, 0)][j], cache[("cladec", layer, 0)][j]
      row += [_show(ds.test_images[j]), _show(r), _show(cimg), diff_image(r, cimg, scale)]
    rows.append(row)
    labels.append(_layer_label(ctx, layer))
  cols = []
  for j in idx:
    cols += [f"X ({ds.class_names[ds.test_labels[j]][:8]})", "RefAE", "ClaDec", "diff"]
  return report.save_image_grid(path, rows, row_labels=labels, col_labels=cols, title=title)


def _figures(ctx: Context, cache: dict) -> list[str]:
  c = ctx.config
  ds = ctx.dataset
  fig_dir = os.path.join(ctx.workdir, FIGURES_DIR)
  n = min(int(c.figures.n_images), ds.num_test)
  files = []
  scale_note = ("red: RefAE brighter than ClaDec, green: ClaDec brighter (scaled to the largest "
                "difference shown)")
  f = _fig_layers(ctx, cache, np.arange(n), os.path.join(fig_dir, "cladec_layers.png"),
                  f"X | RefAE | ClaDec | difference per layer (seed {ctx.seeds[0]}); {scale_note}")
  files += [f] if f else []
  preds = _predict(ctx, ds.test_images)
  wrong = np.nonzero(preds != ds.test_labels)[0][:n]
  f = _fig_layers(ctx, cache, wrong, os.path.join(fig_dir, "cladec_layers_misclassified.png"),
                  "misclassified test images: X | RefAE | ClaDec | difference; predicted: "
                  + ", ".join(ds.class_names[p][:8] for p in preds[wrong]))
  files += [f] if f else []
  idx = np.arange(n)
  originals = [_show(ds.test_images[j]) for j in idx]
  # Fig. 11: the alpha sweep.
  alpha_rows = [(a, cache[("alpha", a, 0)]) for a in sorted(ctx.alphas, reverse=True)
                if ("alpha", a, 0) in cache]
  if alpha_rows:
    files.append(report.save_image_grid(
        os.path.join(fig_dir, "cladec_alpha.png"),
        [originals] + [[_show(x[j]) for j in idx] for _, x in alpha_rows],
        row_labels=["X"] + [f"alpha={a:g}" for a, _ in alpha_rows],
        title=f"ClaDec reconstructions at {_layer_label(ctx, ctx.alpha_layer)} per alpha"))
  # Fig. 12: classifiers trained for 0, 1, 4, ... epochs.
  sweep_rows = [(e, cache[("sweep", e, 0)]) for e in sorted(ctx.sweep_epochs)
                if ("sweep", e, 0) in cache]
  if sweep_rows:
    ref = cache.get(("refae", ctx.sweep_layer, 0))
    rows = [originals] + ([[_show(ref[j]) for j in idx]] if ref is not None else [])
    rows += [[_show(x[j]) for j in idx] for _, x in sweep_rows]
    files.append(report.save_image_grid(
        os.path.join(fig_dir, "cladec_training_epochs.png"), rows,
        row_labels=["X"] + (["RefAE"] if ref is not None else [])
        + [f"clf {e} ep" for e, _ in sweep_rows],
        title=f"ClaDec at {_layer_label(ctx, ctx.sweep_layer)} for classifiers trained "
              "0, 1, ... epochs"))
  # Figs. 13 / 14: neuron subsets.
  for kind in ("nested", "disjoint"):
    rows = [(s, e, cache[("subset", k, s, e, 0)]) for k, s, e in ctx.subsets
            if k == kind and ("subset", k, s, e, 0) in cache]
    if rows:
      files.append(report.save_image_grid(
          os.path.join(fig_dir, f"cladec_subsets_{kind}.png"),
          [originals] + [[_show(x[j]) for j in idx] for _, _, x in rows],
          row_labels=["X"] + [f"n{s}-{e - 1}" for s, e, _ in rows],
          title=f"ClaDec from {kind} neuron subsets of {_layer_label(ctx, ctx.subset_layer)}"))
  # Fig. 16: occlusions.
  occ_rows, occ_labels = [], []
  n_occ = min(n, 4)
  for layer in ctx.occlusion_layers:
    if ("occlusion", layer) not in cache:
      continue
    x, recon, occluded, recon_occ, i_min, i_max = cache[("occlusion", layer)]
    for j in range(min(n_occ, x.shape[0])):
      occ_rows.append([_show(x[j]), _show(recon[j]), _show(occluded[j, i_min[j]]),
                       _show(recon_occ[j, i_min[j]]), _show(occluded[j, i_max[j]]),
                       _show(recon_occ[j, i_max[j]])])
      occ_labels.append(_layer_label(ctx, layer))
  if occ_rows:
    files.append(report.save_image_grid(
        os.path.join(fig_dir, "occlusion.png"), occ_rows, row_labels=occ_labels,
        col_labels=["X", "ClaDec(X)", "X_Omin", "ClaDec", "X_Omax", "ClaDec"],
        title="least (Omin) and most (Omax) relevant square by ClaDec relevance"))
  return files


# ---------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------

_LAYER_COLS = ["layer", "shape", "rec_cladec", "rec_cladec_std", "rec_refae", "rec_refae_std",
               "delta_rec", "acc_eval_cladec", "acc_eval_cladec_std", "acc_eval_refae",
               "acc_eval_refae_std", "delta_acc"]
_ALPHA_COLS = ["alpha", "total_loss", "total_loss_std", "rec_loss", "rec_loss_std",
               "classifier_loss", "classifier_loss_std", "acc_eval_cladec", "acc_eval_cladec_std",
               "acc_classifier_on_recon", "acc_classifier_on_recon_std"]
_SWEEP_COLS = ["classifier_epochs", "classifier_accuracy", "rec_cladec", "rec_cladec_std",
               "rec_refae", "rec_refae_std", "delta_rec", "acc_eval_cladec",
               "acc_eval_cladec_std", "acc_eval_refae", "acc_eval_refae_std", "delta_acc"]
_OCC_COLS = ["layer", "spatial", "cladec_acc_max", "cladec_acc_max_std", "cladec_acc_min",
             "cladec_acc_min_std", "cladec_delta_acc", "gradcam_acc_max", "gradcam_acc_max_std",
             "gradcam_acc_min", "gradcam_acc_min_std", "gradcam_delta_acc"]


def _trained_config_notes(ctx: Context) -> list[str]:
  """A warning note when the training-relevant settings differ from what train.py used."""
  path = os.path.join(ctx.workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    trained = json.load(f)
  now = json.loads(ctx.config.to_json_best_effort())
  keys = ("rec_reduction", "decoder_epochs", "refae_epochs", "batch_size", "seeds", "decoder",
          "decoder_optimizer", "data", "arch", "alpha")
  diff = [k for k in keys if trained.get(k) != now.get(k)]
  if diff:
    logging.warning("cladec: evaluate's config differs from train's in %s", diff)
    return [f"WARNING: evaluate's config differs from the one train.py used in {diff}"]
  return []


def evaluate(config: ml_collections.ConfigDict, workdir: str, *,
             gradcam_fn: Callable | None = None) -> dict[str, Any]:
  """`evaluate.py` entry for task "cladec": tables and figures (see module doc).

  Args:
    config: the config `train` ran with.
    workdir: the run directory.
    gradcam_fn: `(model, variables, x, target, layer) -> (N, h, w)` maps;
      default `attribution.gradcam`.

  Returns:
    {"layers", "alpha", "training_epochs", "subsets", "occlusion": rows,
     "files": written paths, "wall_s"}.
  """
  t0 = time.time()
  ctx = prepare(config, workdir)
  enable_compilation_cache(config, workdir)
  _restore_classifier_for_eval(ctx)
  c = ctx.config
  res_dir = os.path.join(workdir, RESULTS_DIR)
  extra_notes = _trained_config_notes(ctx)
  cache: dict = {}
  files: list[str] = []
  out: dict[str, Any] = {}

  rows = _layer_table(ctx, cache)
  out["layers"] = rows
  files += report.write_table(
      os.path.join(res_dir, "cladec_layers"), rows, columns=_LAYER_COLS,
      title=f"ClaDec vs RefAE per layer (Tables 2/3), {c.arch} on {ctx.dataset.name}, "
            f"alpha={c.alpha:g}",
      notes=_notes(ctx) + extra_notes + [
          "delta_rec = rec_cladec - rec_refae; delta_acc = acc_eval_cladec - acc_eval_refae; "
          "acc_eval_* = accuracy on reconstructions of the test set of a classifier (same "
          "architecture) trained on reconstructions of the training set"])
  if ctx.alphas:
    logging.info("cladec: evaluate: alpha table")
    rows = _alpha_table(ctx, cache)
    out["alpha"] = rows
    files += report.write_table(
        os.path.join(res_dir, "cladec_alpha"), rows, columns=_ALPHA_COLS,
        title=f"alpha trade-off at {_layer_label(ctx, ctx.alpha_layer)} (Tables 4/5)",
        notes=_notes(ctx, epochs_of=("decoder", "eval")) + extra_notes + [
            "total_loss = (1 - alpha) rec_loss + alpha classifier_loss (Eq. 1) on the test "
            "set; classifier_loss = CE of the explained classifier on the reconstructions; "
            "acc_classifier_on_recon = its accuracy on them"])
  if ctx.sweep_epochs:
    logging.info("cladec: evaluate: sweep table")
    rows = _sweep_table(ctx, cache)
    out["training_epochs"] = rows
    files += report.write_table(
        os.path.join(res_dir, "cladec_training_epochs"), rows, columns=_SWEEP_COLS,
        title=f"impact of classifier training (Table 6) at {_layer_label(ctx, ctx.sweep_layer)}",
        notes=_notes(ctx) + extra_notes + [
            f"classifier snapshots of one run ({c.classifier.optimizer.name}, schedule over "
            f"{max(ctx.sweep_epochs)} epochs) after each number of epochs; 0 = untrained",
            "RefAE does not depend on the classifier: its columns are the same RefAE for all "
            "rows"])
  if ctx.subsets:
    logging.info("cladec: evaluate: subset table")
    rows = _subset_table(ctx, cache)
    out["subsets"] = rows
    files += report.write_table(
        os.path.join(res_dir, "cladec_subsets"), rows,
        title=f"ClaDec from neuron subsets of {_layer_label(ctx, ctx.subset_layer)} "
              "(Figs. 13/14)",
        notes=_notes(ctx, epochs_of=("decoder",)) + extra_notes + [
            "neurons = channel index range (a run of consecutive channels at every position)"])
  if ctx.occlusion_layers and int(c.occlusion.n_images) > 0:
    rows = _occlusion_table(ctx, cache, gradcam_fn)
    out["occlusion"] = rows
    files += report.write_table(
        os.path.join(res_dir, "occlusion"), rows, columns=_OCC_COLS,
        title="accuracy with the most / least relevant square occluded (Tables 7/8)",
        notes=_notes(ctx, epochs_of=("decoder",)) + extra_notes + [
            f"{min(int(c.occlusion.n_images), ctx.dataset.num_test)} test images; 16 squares "
            f"of {c.occlusion.size}x{c.occlusion.size} at corners "
            f"{tuple(c.occlusion.corners)}^2 filled with the training mean",
            "ClaDec relevance = sum over the square of the squared change of the ClaDec "
            "reconstruction; GradCAM relevance = sum over the square of the GradCAM map "
            "(target = the predicted class, bilinear upsampling, normalised to [0, 1]); a layer "
            "without spatial extent gives a constant map (all squares tie)",
            "ties broken at random with one priority per image and square shared by min and "
            "max (so an all-tie map gives delta 0); seeds: ClaDec decoder seeds and tie-break "
            "draws",
            "delta_acc = acc_min - acc_max (accuracy with the least minus the most relevant "
            "square occluded)"])
  logging.info("cladec: evaluate: figures")
  files += _figures(ctx, cache)
  out["files"] = files
  out["wall_s"] = time.time() - t0
  logging.info("cladec: evaluation written in %.0f s: %s", out["wall_s"], files)
  return out
