"""W1r: real attribution matrices for the NMF benchmark, from the Fashion-MNIST concepts run.

The trained Fashion-MNIST VGG (a workdir of `configs/classifier.py:source=idx`) is split
at the concepts config's layer (`conv2a`); for each class, the first 60 test images the
model predicts as it are attributed with the library's DeepLift + SmoothGrad (20 samples,
std 0.25 x the training images' std, white baseline) and turned into the matrix NMF
factorises (`methods.concepts.concept_matrix`, paper order). The matrices are saved in
one compressed .npz (`class_<c>`: (60 * h * w, channels) float32; zero rows included,
as the concepts program passes them).

Usage:
  python benchmarks/real_matrix.py --workdir /work/repro/fmnist_vgg \
      --out benchmarks/data/fmnist_conv2a.npz [--classes 0,3,7]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import concepts as concepts_config  # pylint: disable=wrong-import-position


def build(workdir: str, classes: list[int], layer: str) -> dict[str, np.ndarray]:
  """{class_<c>: matrix} for the given classes (see the module docstring)."""
  # pylint: disable=g-import-not-at-top
  import jax
  from jaxconcepts.methods import concepts as cl
  from jaxconcepts.models import split as split_lib
  from jaxconcepts.programs import classifier
  # pylint: enable=g-import-not-at-top
  model, variables, config, _ = classifier.restore_classifier(workdir)
  cfg = concepts_config.get_config()
  dataset = classifier.load_data(config.data)
  noise = float(cfg.noise_std) * float(np.asarray(dataset.train_images).std())
  images = np.asarray(dataset.test_images, np.float32)
  s = split_lib.split(model, layer)
  preds = np.asarray(split_lib.predict_logits(model, variables, images, 512)).argmax(-1)
  out = {}
  for c in classes:
    idx = cl.class_image_indices(preds, c, int(cfg.n_images_per_class))
    x = images[idx]
    acts = split_lib.encode_images(s, variables, x, 256)
    attr = cl.default_attribution_fn()(
        model, variables, x, np.full((len(idx),), c, np.int32), s.layer,
        n_samples=int(cfg.n_samples), std=noise, baseline=float(cfg.baseline),
        key=jax.random.key(c), batch_size=int(cfg.attribution_batch_size))
    out[f"class_{c}"] = np.asarray(cl.concept_matrix(acts, attr, cfg.score_order), np.float32)
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", default="/work/repro/fmnist_vgg")
  p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               "data", "fmnist_conv2a.npz"))
  p.add_argument("--classes", default="0,3,7")
  p.add_argument("--layer", default="conv2a")
  args = p.parse_args()
  t0 = time.perf_counter()
  mats = build(args.workdir, [int(c) for c in args.classes.split(",")], args.layer)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  np.savez_compressed(args.out, **mats)
  for k, v in mats.items():
    print(f"{k}: {v.shape}, {np.mean(np.any(v != 0, axis=1)):.0%} non-zero rows")
  print(f"wrote {args.out} ({os.path.getsize(args.out) / 2**20:.1f} MiB) "
        f"in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
  main()
