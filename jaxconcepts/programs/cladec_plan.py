"""The ClaDec program's plan: its config checked and resolved once, and its stage names.

`prepare(config, workdir)` validates every value that needs no training (alpha
in [0, 1], layers the model has, neuron subsets that fit the layer, a trained
classifier where one is named, decoders that reach the image size, occlusion
squares that fit), loads the data and returns a `Plan`: an immutable record of
the resolved values every stage of `programs/cladec.py` reads. The stage names
(`cladec_stage`, `refae_stage`, `eval_stage`; the grids' `grid_stage` and
`eval_seeds_stage`) are the checkpoint folders under `workdir/checkpoints`:
they must stay stable, so an existing workdir resumes.

The data is held in memory: the decoder stages train on the classifier's codes
of every training image, packed with the image. A TFDS data set is read through
its stream (`classifier.load_data`), at most `data.max_train` / `data.max_test`
images per split: set them to bound the host memory a large split would take.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Mapping

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxconcepts import utils
from jaxconcepts import data as data_lib
from jaxconcepts.methods import cladec
from jaxconcepts.methods import occlusion as occ
from jaxconcepts.models import decoders
from jaxconcepts.models import split as split_lib
from jaxconcepts.ops import backend
from jaxconcepts.programs import classifier as classifier_lib
from jaxconcepts.train import checkpoints
from jaxconcepts.train import distributed
from jaxconcepts.train import trainer as training

STAGES_FILE = "cladec_stages.json"


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------

def _check_distinct_ints(values: Any, name: str, minimum: int) -> list[int]:
  out = [utils.check_int(v, name, minimum) for v in values]
  if len(set(out)) != len(out):
    raise ValueError(f"{name} must be distinct, got {tuple(values)}")
  return out


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks everything that needs no data or model (see `prepare` for the rest).

  Raises:
    ValueError: naming the bad value and what was expected.
  """
  classifier_lib.validate_data_and_arch(config)
  cladec.check_rec_reduction(config.rec_reduction)
  for a in (config.alpha, *config.alphas):
    cladec.check_alpha(a)
  if len(set(float(a) for a in config.alphas)) != len(config.alphas):
    raise ValueError(f"alphas has duplicates: {tuple(config.alphas)}")
  if not _check_distinct_ints(config.seeds, "seeds", 0):
    raise ValueError(f"seeds must name at least one seed, got {config.seeds!r}")
  if not tuple(config.layers):
    raise ValueError("layers must name at least one layer (e.g. (-1, -2, -3, -4, -5))")
  utils.check_choice("decoder variant", config.decoder.variant, decoders.VARIANTS)
  backend.conv_transpose_impl(config.decoder.impl)
  utils.check_int(config.decoder_epochs, "decoder_epochs")
  utils.check_int(config.refae_epochs, "refae_epochs")
  utils.check_int(config.eval_classifier.num_epochs, "eval_classifier.num_epochs", 0)
  if not config.classifier_workdir:
    utils.check_int(config.classifier.num_epochs, "classifier.num_epochs")
  _check_distinct_ints(config.classifier_epochs, "classifier_epochs", 0)
  utils.check_choice("classifier_epochs_runs", config.classifier_epochs_runs,
                     ("own", "snapshots"))
  utils.check_int(config.batch_size, "batch_size")
  utils.check_int(config.eval_batch_size, "eval_batch_size")
  utils.check_choice("decoder optimizer", config.decoder_optimizer.name, ("sgd", "adam"))
  for n in config.subsets.nested:
    utils.check_int(n, "subsets.nested sizes")
  if utils.check_int(config.subsets.disjoint_count, "subsets.disjoint_count", 0) > 0:
    if config.subsets.disjoint_size is not None:
      utils.check_int(config.subsets.disjoint_size, "subsets.disjoint_size")
    cladec.check_fraction(config.subsets.disjoint_fraction)
  utils.check_int(config.occlusion.n_images, "occlusion.n_images", 0)
  utils.check_int(config.figures.n_images, "figures.n_images")


def check_classifier_workdir(path: str) -> None:
  """FileNotFoundError unless `path` holds a trained classifier (config + checkpoint)."""
  classifier_lib.check_trained_workdir(path)


# ---------------------------------------------------------------------------
# The plan: config, data and layers, resolved and checked once
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Plan:
  """What every stage needs, resolved and checked once by `prepare` (immutable)."""
  config: ml_collections.ConfigDict
  workdir: str
  dataset: data_lib.Dataset
  model: Any
  layers: tuple[str, ...]
  layer_shapes: Mapping[str, tuple[int, ...]]
  seeds: tuple[int, ...]
  alphas: tuple[float, ...]
  alpha_layer: str | None
  subset_layer: str | None
  subsets: tuple[tuple[str, int, int], ...]  # (kind, start, stop)
  sweep_layer: str | None
  sweep_epochs: tuple[int, ...]
  occlusion_layers: tuple[str, ...]
  # One decoder per code shape and one optimizer per kind of stage, shared by every stage
  # that uses them: a train state holds its `apply_fn` and `tx`, which jit compares as part
  # of the state's structure, so sharing them lets stages of the same shapes (e.g. Table 6's
  # decoders, one per classifier snapshot) reuse one compilation of the step.
  decoders: Mapping[tuple[int, ...], decoders.Decoder]
  decoder_opt: tuple[Any, Any]  # (optax transformation, lr schedule) for ClaDec decoders
  refae_opt: tuple[Any, Any]  # the same for RefAE

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return self.dataset.image_shape

  @property
  def seed_tag(self) -> str:
    return "s" + "-".join(str(s) for s in self.seeds)

  def label(self, layer: str | None) -> str:
    """`layer` as tables show it: "-2 (conv4)" where the paper has an alias."""
    inv = {v: k for k, v in getattr(self.model, "aliases", {}).items()}
    return f"{inv[layer]} ({layer})" if layer in inv else str(layer)


def _resolve_layers(model: Any, config: ml_collections.ConfigDict) -> tuple[str, ...]:
  layers = []
  for layer in config.layers:
    name = split_lib.resolve_layer(model, layer)
    if name in layers:
      raise ValueError(f"layers lists {name!r} twice: {tuple(config.layers)}")
    layers.append(name)
  return tuple(layers)


def _build_decoder(code_shape: tuple[int, ...], image_shape: tuple[int, ...],
                   d: ml_collections.ConfigDict) -> decoders.Decoder:
  """A decoder for one code shape, built (shapes only, no FLOPs) so that a decoder that
  cannot produce the image fails here, before any stage trains (issue 16, fix 1)."""
  decoder = decoders.create_decoder(code_shape, image_shape, variant=d.variant,
                                    kernel_size=d.kernel_size, impl=d.impl, output=d.output)
  code = jax.ShapeDtypeStruct((1, *code_shape), jnp.float32)
  jax.eval_shape(decoder.init, jax.random.PRNGKey(0), code)
  return decoder


def prepare(config: ml_collections.ConfigDict, workdir: str) -> Plan:
  """Validates the config, loads the data and resolves layers; no training.

  Raises:
    ValueError / FileNotFoundError: every bad input the module doc lists,
      before anything long runs.
  """
  validate_config(config)
  if config.classifier_workdir:
    check_classifier_workdir(config.classifier_workdir)
  dataset = classifier_lib.load_data(config.data)
  model = classifier_lib.build_model(config.arch, dataset.num_classes, dataset.image_shape)
  shapes = split_lib.layer_shapes(model, dataset.image_shape)
  resolve = functools.partial(split_lib.resolve_layer, model)
  layers = _resolve_layers(model, config)
  alpha_layer = resolve(config.alpha_layer) if config.alphas else None
  sub_layer, subsets = None, ()
  if tuple(config.subsets.nested) or int(config.subsets.disjoint_count) > 0:
    sub_layer = resolve(config.subsets.layer)
    sub = config.subsets
    subsets = cladec.neuron_subsets(sub.nested, sub.disjoint_size, sub.disjoint_count,
                                    shapes[sub_layer][-1], sub_layer,
                                    disjoint_fraction=sub.disjoint_fraction)
  sweep_epochs = tuple(int(e) for e in config.classifier_epochs)
  sweep_layer = resolve(config.classifier_epochs_layer) if sweep_epochs else None
  occ_layers = tuple(resolve(layer) for layer in config.occlusion.layers)
  missing = [l for l in occ_layers if l not in layers]
  if missing:
    raise ValueError(f"occlusion.layers {missing} must also be in layers {list(layers)} (the "
                     "occlusion study uses their ClaDec decoders)")
  if occ_layers:
    occ.square_masks(dataset.image_shape[:2], config.occlusion.corners, config.occlusion.size)
  code_shapes = {shapes[l] for l in layers + (alpha_layer, sub_layer, sweep_layer) if l}
  code_shapes |= {shapes[sub_layer][:-1] + (stop - start,) for _, start, stop in subsets}
  d = config.decoder
  decoder_of = {s: _build_decoder(s, dataset.image_shape, d) for s in sorted(code_shapes)}
  if config.classifier_workdir:
    classifier_lib.check_matches(config.classifier_workdir, dataset, config.arch)
  steps = data_lib.num_batches(dataset.num_train, config.batch_size)
  return Plan(config=config, workdir=workdir, dataset=dataset, model=model, layers=layers,
              layer_shapes=shapes, seeds=tuple(int(s) for s in config.seeds),
              alphas=tuple(float(a) for a in config.alphas), alpha_layer=alpha_layer,
              subset_layer=sub_layer, subsets=subsets, sweep_layer=sweep_layer,
              sweep_epochs=sweep_epochs, occlusion_layers=occ_layers, decoders=decoder_of,
              decoder_opt=training.optimizer_from_config(config.decoder_optimizer, steps,
                                                         int(config.decoder_epochs)),
              refae_opt=training.optimizer_from_config(config.decoder_optimizer, steps,
                                                       int(config.refae_epochs)))


# ---------------------------------------------------------------------------
# Stage names and bookkeeping
# ---------------------------------------------------------------------------

def _suffix(alpha: float | None = None, subset: tuple[int, int] | None = None,
            clf_epochs: int | None = None) -> str:
  """`_a<alpha>`, `_n<first>-<last>` (channels), `_clf<E>ep`, each only when given."""
  out = "" if alpha is None else f"_a{float(alpha):g}"
  out += "" if subset is None else f"_n{subset[0]}-{subset[1] - 1}"
  return out + ("" if clf_epochs is None else f"_clf{clf_epochs}ep")


def cladec_stage(layer: str, alpha: float, seed_tag: str, subset: tuple[int, int] | None = None,
                 clf_epochs: int | None = None) -> str:
  """The checkpoint name of a ClaDec decoder stage (all seeds in one state)."""
  return f"cladec_{layer}{_suffix(alpha, subset, clf_epochs)}_{seed_tag}"


def grid_stage(layer: str, alphas: tuple[float, ...], seed_tag: str) -> str:
  """The checkpoint name of an alpha grid (all alphas and seeds of a layer in one state).

  Its per-alpha results are saved under `cladec_stage` names too, which is
  what evaluation reads and what decides that the grid is done.
  """
  return f"cladec_{layer}_grid_a{'-'.join(f'{float(a):g}' for a in alphas)}_{seed_tag}"


def refae_stage(layer: str, seed_tag: str) -> str:
  """The checkpoint name of a RefAE stage (all seeds in one state)."""
  return f"refae_{layer}_{seed_tag}"


def eval_stage(kind: str, layer: str, seed: int, alpha: float | None = None,
               clf_epochs: int | None = None) -> str:
  """The checkpoint name of an evaluation classifier ("cladec" | "refae") for one seed."""
  return f"eval_{kind}_{layer}{_suffix(alpha, None, clf_epochs)}_s{seed}"


def eval_seeds_stage(kind: str, layer: str, seed_tag: str, alpha: float | None = None,
                     clf_epochs: int | None = None) -> str:
  """The checkpoint name of the evaluation classifiers of all seeds trained together.

  Each seed's classifier is saved under its `eval_stage` name too (what
  evaluation reads and what decides that the group is done).
  """
  return f"eval_{kind}_{layer}{_suffix(alpha, None, clf_epochs)}_seeds{seed_tag[1:]}"


def is_done(plan: Plan, name: str, epochs: int, batch_size: int) -> bool:
  """Whether stage `name` has trained `epochs` epochs of the training set at `batch_size`
  and its final checkpoint reads back (a damaged one does not count: the stage trains)."""
  total = epochs * data_lib.num_batches(plan.dataset.num_train, batch_size)
  return checkpoints.is_done(checkpoints.stage_dir(plan.workdir, name), total, verify=True)


def record_stage(plan: Plan, name: str, seconds: float, **info: Any) -> None:
  """Adds a stage's wall time to `workdir/cladec_stages.json` (process 0 only: in a
  multi-host run every process trains the stage, one writes its record)."""
  if not distributed.is_main_process():
    return
  checkpoints.record_stage(os.path.join(plan.workdir, STAGES_FILE), name, seconds, **info)


def loop_config(plan: Plan, num_epochs: int) -> training.LoopConfig:
  """`fit`'s knobs for a decoder or RefAE stage (seeded by the first seed)."""
  c = plan.config
  return training.loop_config(c, num_epochs=int(num_epochs), batch_size=int(c.batch_size),
                              seed=int(plan.seeds[0]), eval_every_epochs=max(int(num_epochs), 1))


def decoder_data(plan: Plan, variables: Any, layer: str,
                 neurons: tuple[int, int] | None = None
                 ) -> tuple[tuple[int, ...], tuple[np.ndarray, np.ndarray]]:
  """What a ClaDec decoder stage trains on: (code shape, (packed rows, labels)).

  The classifier (`variables`) encodes the training set once at `layer`
  (channels [start, stop) only, given `neurons`); each row packs an image and
  its code (`cladec.pack`), so a step gathers both by row index.
  """
  c, ds = plan.config, plan.dataset
  codes = cladec.layer_codes(split_lib.Split(plan.model, layer), variables, ds.train_images,
                             c.eval_batch_size, neurons)
  return codes.shape[1:], (cladec.pack(ds.train_images, codes), ds.train_labels)


def classifier_config(plan: Plan, num_epochs: int, seed: int,
                      sub: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
  """A `configs/classifier.py`-style config for the classifier or an evaluation classifier."""
  c = plan.config
  return classifier_lib.stage_config(c, num_epochs, seed, c.classifier if sub is None else sub)


_TRAINED_KEYS = ("rec_reduction", "decoder_epochs", "refae_epochs", "batch_size", "seeds",
                 "decoder", "decoder_optimizer", "data", "arch", "alpha",
                 "classifier_epochs_runs")


def trained_config_notes(plan: Plan, config_file: str) -> list[str]:
  """A warning note when the training-relevant settings differ from what train.py used.

  Args:
    plan: evaluate's plan.
    config_file: the config train.py wrote, relative to the workdir.
  """
  path = os.path.join(plan.workdir, config_file)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    trained = json.load(f)
  now = json.loads(plan.config.to_json_best_effort())
  diff = [k for k in _TRAINED_KEYS if trained.get(k) != now.get(k)]
  if diff:
    logging.warning("cladec: evaluate's config differs from train's in %s", diff)
    return [f"WARNING: evaluate's config differs from the one train.py used in {diff}"]
  return []
