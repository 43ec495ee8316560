"""Why a ClaDec decoder collapses to an all-black image on sparse data (issue 16).

Reproduces the collapse and varies one factor of the decoder recipe at a time,
using the library: `data.strokes` (thin strokes on black, ~9% ink) or the
upsampled scikit-learn digits or Fashion-MNIST (IDX), a small VGG classifier
trained here (`train.trainer.classifier_train_step`), its codes at a layer
(`methods.cladec.layer_codes`), and ClaDec decoders
(`models.decoders.create_decoder`) trained with `methods.cladec`'s vmapped
seed step at alpha = 0 (reconstruction only), several seeds at once.

Every run reports, on held-out images and in one unit whatever the training
reduction (squared error summed over the pixels of an image, mean over
images):

* `rec`: the decoder's loss after the last step, and at steps 20 and 50;
* `black`: the all-black image's loss (sum of x^2), `mean`: the training-mean
  image's loss; `rec / mean` < 1 means the decoder beats the mean image;
* `dead`: the fraction of the last hidden layer's ReLU units that are zero
  on every held-out image, `out`: the mean output pixel.

  python benchmarks/decoder_collapse.py [--data strokes|digits|fmnist] [--steps 300]
      [--seeds 0:1] [--settings fmnist,lr3e-4,...] [--refae] [--cache CLF.msgpack]
      [--out FILE.json]

Settings (one factor away from `fmnist`, the Fashion-MNIST CPU recipe):
see `SETTINGS`. `--refae` trains RefAE (the classifier's architecture up to
the layer, from scratch, with the decoder) instead, for settings without a
bias init. `dead` is nan for RefAE.

Findings (benchmarks/README.md, "ClaDec decoder recipe", has the tables): on
the strokes every sigmoid setting whose output bias starts at 0 ends at the
all-black image's loss (learning rate 1e-3 / 3e-4 / 1e-4, sum or mean, with or
without weight decay); a sigmoid started dark or at the mean pixel, and the
straight-through clip output (now the default), train well below the mean
image; on Fashion-MNIST the clip matches the sigmoid. The scikit-learn digits
upsampled are not sparse (51% non-zero pixels) and do not collapse.
Runtime: about 1.5 minutes per setting for two seeds on 2 busy cores.
"""

import argparse
import json
import os
import sys
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from jaxconcepts import data as data_lib  # pylint: disable=g-import-not-at-top
from jaxconcepts.data import strokes  # pylint: disable=g-import-not-at-top
from jaxconcepts.methods import cladec  # pylint: disable=g-import-not-at-top
from jaxconcepts.models import classifiers as models  # pylint: disable=g-import-not-at-top
from jaxconcepts.models import decoders  # pylint: disable=g-import-not-at-top
from jaxconcepts.models import split as split_lib  # pylint: disable=g-import-not-at-top
from jaxconcepts.train import trainer as training  # pylint: disable=g-import-not-at-top

# A narrow ClaDec VGG (the paper's strides and taps, 1/8 of the widths): trains in
# seconds and classifies the strokes at ~99%.
WIDTHS = (8, 8, 16, 16, 32, 32, 64, 64)
# The Fashion-MNIST CPU recipe (configs/cladec.py `fmnist` before issue 16).
FMNIST = dict(lr=1e-3, wd=1e-5, rec="sum", bias=None, output="sigmoid")
# setting -> what it changes in FMNIST (bias: the output layer's initial bias, a
# float or "mean" = logit of the training set's mean pixel).
SETTINGS = {
    "fmnist": {},
    "lr3e-4": dict(lr=3e-4),                 # the authors' code's rate
    "lr1e-4": dict(lr=1e-4),
    "mean": dict(rec="mean"),                # the authors' code: mean over pixels
    "mean_lr3e-4": dict(rec="mean", lr=3e-4),  # the authors' code's recipe
    "no_wd": dict(wd=0.0),
    "bias_mean": dict(bias="mean"),          # sigmoid starts at the mean pixel
    "bias_-4": dict(bias=-4.0),              # sigmoid starts near black
    "clip": dict(output="clip"),             # straight-through clip instead of sigmoid
    "clip_lr3e-4": dict(output="clip", lr=3e-4),
    "clip_mean_lr3e-4": dict(output="clip", rec="mean", lr=3e-4),
}


def load(name: str, n_train: int, n_test: int) -> data_lib.Dataset:
  """The data set of the experiment, `n_train` / `n_test` images."""
  if name == "strokes":
    return strokes.load_strokes(n_train, n_test)
  if name == "digits":
    return data_lib.load_dataset("digits", "digits", max_train=n_train, max_test=n_test)
  return data_lib.load_dataset("fashion_mnist", "idx", max_train=n_train, max_test=n_test)


def train_classifier(ds: data_lib.Dataset, epochs: int, seed: int = 0, cache: str | None = None):
  """(model, variables, test accuracy) of the narrow VGG trained with SGD momentum.

  With `cache` (a file), the trained variables are read from it if it exists,
  else written to it.
  """
  model = models.create_model("vgg", ds.num_classes, widths=WIDTHS)
  variables = models.init_variables(model, jax.random.PRNGKey(seed), ds.image_shape)
  if cache and os.path.exists(cache):
    with open(cache, "rb") as f:
      variables = flax.serialization.from_bytes(variables, f.read())
    return model, variables, _accuracy(model, variables, ds)
  steps = data_lib.num_batches(ds.num_train, 64)
  tx = training.create_optimizer(
      "sgd", training.create_learning_rate_fn(0.05, steps, epochs), weight_decay=1e-4)
  state = training.create_train_state(model.apply, variables, tx)
  step = jax.jit(training.classifier_train_step)
  for epoch in range(epochs):
    for i, batch in enumerate(data_lib.batches(ds.train_images, ds.train_labels, 64,
                                               shuffle=True, seed=seed, epoch=epoch)):
      state, _ = step(state, batch, jax.random.PRNGKey(epoch * 10_000 + i))
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  if cache:
    with open(cache, "wb") as f:
      f.write(flax.serialization.to_bytes(variables))
  return model, variables, _accuracy(model, variables, ds)


def _accuracy(model, variables, ds) -> float:
  logits = split_lib.predict_logits(model, variables, ds.test_images)
  return float((logits.argmax(-1) == ds.test_labels).mean())


def _set_output_bias(state, bias):
  """Sets the last transposed conv's bias of every seed (a float, or per-seed array)."""
  params = jax.tree_util.tree_map(lambda a: a, state.params)
  last = max((k for k in params if k.startswith("deconv")), key=lambda k: int(k[6:]))
  params[last]["bias"] = jnp.full_like(params[last]["bias"], bias)
  return state.replace(params=params, opt_state=jax.vmap(state.tx.init)(params))


def diagnose(decoder, params, codes, images):
  """(per-image summed squared error, dead fraction of the last ReLU layer, mean output)."""
  out, inter = decoder.apply({"params": params}, jnp.asarray(codes),
                             capture_intermediates=True)
  names = sorted((k for k in inter["intermediates"] if k.startswith("deconv")),
                 key=lambda k: int(k[6:]))
  hidden = inter["intermediates"][names[-2]]["__call__"][0]  # pre-ReLU of the last hidden layer
  dead = float(jnp.mean(jnp.all(hidden <= 0, axis=(0, 1, 2))))
  rec = float(jnp.mean(jnp.sum(jnp.square(out - images), axis=(1, 2, 3))))
  return rec, dead, float(out.mean())


def run_setting(setting, decoder, code_shape, packed, labels, test_codes, test_images,
                seeds, steps, batch_size, mean_pixel):
  """Trains one setting for all seeds; returns per-seed diagnostics and the loss curve."""
  cfg = {**FMNIST, **SETTINGS[setting]}
  lr, wd, reduction, bias = cfg["lr"], cfg["wd"], cfg["rec"], cfg["bias"]
  decoder = decoder.clone(output=cfg["output"])
  tx = training.create_optimizer("adam", lr, weight_decay=wd)
  state = cladec.init_decoder_seeds(decoder, code_shape, tx, seeds)
  if bias is not None:
    b = float(np.log(mean_pixel / (1 - mean_pixel))) if bias == "mean" else float(bias)
    state = _set_output_bias(state, b)
  step_fn = cladec.make_cladec_step(decoder, None, test_images.shape[1:], code_shape, 0.0,
                                    reduction)
  checkpoints = {}
  step, epoch = 0, 0
  while step < steps:
    for batch in data_lib.batches(packed, labels, batch_size, shuffle=True, seed=0,
                                  epoch=epoch, drop_remainder=True):
      state, _ = step_fn(state, batch, jax.random.PRNGKey(step))
      step += 1
      if step in (20, 50) or step == steps:
        checkpoints[step] = [diagnose(decoder, cladec.seed_slice(state.params, i), test_codes,
                                      test_images) for i in range(len(seeds))]
      if step == steps:
        break
    epoch += 1
  return checkpoints


def run_refae(setting, model, layer, decoder, ds, seeds, steps, batch_size):
  """Trains RefAE (the classifier's architecture up to `layer`, from scratch, + the
  decoder) for one setting without a bias init; per-seed (loss, nan, mean output)."""
  cfg = {**FMNIST, **SETTINGS[setting]}
  if cfg["bias"] is not None:
    raise ValueError(f"--refae runs settings without a bias init, got {setting!r}")
  refae = cladec.RefAE(model, layer, decoder.clone(output=cfg["output"]))
  tx = training.create_optimizer("adam", cfg["lr"], weight_decay=cfg["wd"])
  state = cladec.init_refae_seeds(refae, ds.image_shape, tx, seeds)
  step_fn = cladec.make_refae_step(refae, cfg["rec"])
  checkpoints, step, epoch = {}, 0, 0
  while step < steps:
    for batch in data_lib.batches(ds.train_images, ds.train_labels, batch_size, shuffle=True,
                                  seed=0, epoch=epoch, drop_remainder=True):
      state, _ = step_fn(state, batch, jax.random.PRNGKey(step))
      step += 1
      if step in (20, 50) or step == steps:
        checkpoints[step] = []
        for i in range(len(seeds)):
          v = {"params": cladec.seed_slice(state.params, i),
               "batch_stats": cladec.seed_slice(state.batch_stats, i)}
          out = cladec.refae_reconstruct(refae, v, ds.test_images)
          rec = float(np.square(out - ds.test_images).sum((1, 2, 3)).mean())
          checkpoints[step].append((rec, float("nan"), float(out.mean())))
      if step == steps:
        break
    epoch += 1
  return checkpoints


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--data", default="strokes", choices=("strokes", "digits", "fmnist"))
  p.add_argument("--layer", default="-2", help="layer (name or the paper's alias)")
  p.add_argument("--n_train", type=int, default=1024)
  p.add_argument("--n_test", type=int, default=256)
  p.add_argument("--clf_epochs", type=int, default=6)
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--seeds", default="0:1")
  p.add_argument("--settings", default=",".join(SETTINGS))
  p.add_argument("--out", default=None)
  p.add_argument("--cache", default=None, help="file to keep the trained classifier in")
  p.add_argument("--refae", action="store_true",
                 help="train RefAE (encoder from scratch) instead of ClaDec decoders")
  args = p.parse_args(argv)
  seeds = tuple(int(s) for s in args.seeds.split(":"))
  ds = load(args.data, args.n_train, args.n_test)
  t0 = time.time()
  model, variables, acc = train_classifier(ds, args.clf_epochs, cache=args.cache)
  layer = split_lib.resolve_layer(model, int(args.layer) if args.layer.lstrip("-").isdigit()
                                  else args.layer)
  s = split_lib.Split(model, layer)
  codes = cladec.layer_codes(s, variables, ds.train_images)
  test_codes = cladec.layer_codes(s, variables, ds.test_images)
  x = ds.test_images
  mean_img = ds.train_images.mean(0, keepdims=True)
  baselines = {"black": float(np.square(x).sum((1, 2, 3)).mean()),
               "mean": float(np.square(x - mean_img).sum((1, 2, 3)).mean())}
  print(f"{args.data}: classifier test accuracy {acc:.3f} ({time.time() - t0:.0f}s), layer "
        f"{layer} {codes.shape[1:]}, ink {float((x > 0).mean()):.3f}, baselines {baselines}",
        flush=True)
  decoder = decoders.create_decoder(codes.shape[1:], ds.image_shape)
  packed = cladec.pack(ds.train_images, codes)
  results = {"data": args.data, "model": "refae" if args.refae else "cladec", "layer": layer, "classifier_accuracy": acc,
             "baselines": baselines, "steps": args.steps, "seeds": seeds, "runs": {}}
  for setting in args.settings.split(","):
    t0 = time.time()
    if args.refae:
      ck = run_refae(setting, model, layer, decoder, ds, seeds, args.steps, args.batch_size)
    else:
      ck = run_setting(setting, decoder, codes.shape[1:], packed, ds.train_labels, test_codes,
                       x, seeds, args.steps, args.batch_size, float(ds.train_images.mean()))
    results["runs"][setting] = {str(k): v for k, v in ck.items()}
    final = ck[args.steps]
    print(f"{setting:12s} " + "  ".join(
        f"s{sd}: rec {r:.2f} (@20 {ck[20][i][0]:.2f}, @50 {ck[50][i][0]:.2f}) "
        f"rec/mean {r / baselines['mean']:.3f} dead {d:.2f} out {o:.3f}"
        for i, (sd, (r, d, o)) in enumerate(zip(seeds, final))) +
          f"  [{time.time() - t0:.0f}s]", flush=True)
  if args.out:
    with open(args.out, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
