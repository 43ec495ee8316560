r"""The concept paper's evaluation (Herdt & Otero Baguer) on a trained classifier.

Concepts per class, the stitched-image test (Tables 1/2), pairwise contrast
classifiers for all pairs, the shifting test (Table 3), contrast concepts and
the bias probe (Table 4) for chosen pairs; see jaxconcepts/programs/concepts.py.

  # 1. a classifier (see configs/classifier.py), e.g. the VGG on Fashion-MNIST
  python train.py --config=configs/classifier.py:source=idx,epochs=4 \
      --workdir=runs/fmnist_vgg
  # 2. its concepts (reads the classifier from classifier_workdir)
  python evaluate.py --config=configs/concepts.py \
      --config.classifier_workdir=runs/fmnist_vgg --workdir=runs/fmnist_vgg_concepts

Quick (a few minutes on 2 CPU cores): the planted-concepts set (`data/planted.py`,
classes built from known parts, no download) with its own classifier (about
2 minutes), the VGG's conv3a (16x16 crops: one quadrant, room for a whole part),
3 concepts, fewer samples; its results/planted_parts.{json,md} scores the
concept crops against the planted parts:

  python train.py --config=configs/classifier.py:source=planted --workdir=runs/planted
  python evaluate.py --config=configs/concepts.py:quick \
      --config.classifier_workdir=runs/planted --workdir=runs/planted_concepts

(With a classifier of another data set, e.g. runs/quickstart on digits, the quick
settings run on that classifier's data, without the planted-parts table.)

Arguments (after the colon): dataset, source, arch, layer, classes (e.g.
"0:1:2"; empty = all), score_order, seed, quick.
"""

import ml_collections

from jaxconcepts.data import planted
from jaxconcepts.programs import config_utils

# Fashion-MNIST pairs that look alike: (A, B) = why A rather than B.
_FASHION_PAIRS = ((6, 0), (0, 6), (4, 2), (2, 4), (9, 7), (7, 9))
_DIGIT_PAIRS = ((7, 1), (1, 7))
# Planted set: block vs ring share "stripes" (only the unique part separates
# them); block vs cross differ in both parts.
_PLANTED_PAIRS = ((0, 1), (1, 0), (0, 3), (3, 0))


def get_config(arg=None):
  a = config_utils.parse_arg(arg, dataset="fashion_mnist", source="tfds", arch="vgg",
                             layer="conv2a", classes="", score_order="mean_then_relu",
                             seed=0, quick=False)
  c = ml_collections.ConfigDict()
  c.task = "concepts"
  # The classifier to explain: a workdir written by train.py (config.json +
  # checkpoints; default: the evaluate workdir itself) and which checkpoint
  # (only "latest" for now).
  c.classifier_workdir = ml_collections.config_dict.placeholder(str)
  c.checkpoint = "latest"
  # The data: by default the data set the classifier was trained on (from its
  # saved config); set use_classifier_data=False to read `data` instead.
  c.use_classifier_data = True
  c.data = config_utils.data_config(a.dataset, a.source, image_size=32)
  c.arch = a.arch
  c.split = "test"  # images explained and searched for crops: unseen in training
  c.max_images = ml_collections.config_dict.placeholder(int)  # cap the split (None: all)

  # Layer: a spatial tap. VGG at 32x32: conv2a (8x8 -> 8x8 crops), conv2 / conv3a
  # (4x4 -> 16x16 crops). ResNet-10 at 32x32: layer3.0 (8x8).
  c.layer = config_utils.layer_field(a.layer)  # a tap name or an alias (e.g. -2)
  # None = all classes; --config.classes=(3,12) or "3:12"
  c.classes = config_utils.class_list_field(config_utils.class_list(a.classes or None))
  c.n_images_per_class = 60
  c.n_concepts = 6
  c.n_crops = 8  # m crops per concept in the figures (the test uses the top 1)
  c.pool_size = 2  # 2x2 average pooling before the crop search (1 = none)

  # DeepLift + SmoothGrad at the layer.
  c.n_samples = 20
  # The paper's std 0.25 is in normalised input units (x - mean) / std; our
  # pixels are [0, 1], so "data_std" runs 0.25 x the training images' std
  # (Fashion-MNIST: 0.25 x 0.353 = 0.088); "pixels" runs 0.25 in [0, 1] units
  # (about 3x the paper's noise relative to the data). The notes say which.
  c.noise_std = 0.25
  c.noise_std_units = "data_std"
  c.baseline = 1.0  # white image
  c.attribution_batch_size = 64
  # "mean_then_relu" (paper: channel mean, then negatives zeroed) or
  # "relu_then_mean" (authors' code).
  config_utils.check_choice("score_order", a.score_order,
                            ("mean_then_relu", "relu_then_mean"))
  c.score_order = a.score_order

  # NMF (multiplicative updates).
  c.nmf_init = "nndsvda"
  c.nmf_max_iter = 200
  c.nmf_tol = 1e-4
  c.class_chunk = 16  # classes per batched NMF (fewer if the memory budget says so)

  # Scale: the devices that attribution (images), NMF (classes) and the pairwise classifiers
  # (class rows) split their work over (0: all, one global mesh; n: the first n), and the
  # bytes per device for one chunk of classes: NMF chunks hold budget // nmf_class_bytes
  # classes per device (methods/concepts.py: 4 (3 m c + 3 m k + 4 k c), m = images x h x w),
  # pairwise blocks as ops/pairwise.block_bytes; too small for one class: an error at setup.
  c.num_devices = 0
  c.memory_budget_bytes = 2 * 2**30

  # Stitched-image test: "auto" | "vertical" | "canvas" | "grid" | "place" (each crop back
  # where it was cut from; methods/crops.py); the result is resized to the input size when
  # the model needs that size.
  c.stitch_layout = "auto"
  c.stitch_fill = 0.0  # empty cells: black (the background of MNIST-like data)

  # Contrasting.
  c.contrast_threshold = 0.25
  c.epochs = 100
  c.lr = 0.01
  c.shift_offsets = (0.0, 0.5, 1.0, 2.0, 10.0, 15.0, 20.0, 35.0, 50.0, 200.0)
  # "paper": majority = per-image vote, ">=" at the thresholds, std over all
  # samples; "mean_probs": argmax of the mean probabilities, ">", std over pairs.
  c.shift_rule = "paper"
  c.pairs_to_plot = (_DIGIT_PAIRS if a.dataset in ("digits", "mnist") else
                     _PLANTED_PAIRS if a.dataset == "planted" else _FASHION_PAIRS)
  c.bias_position = "bottom_right"
  # The probe's control square: "mean" (the paper's zeros in normalised space =
  # the training images' mean colour) or "black" (0).
  c.bias_blank = "mean"

  c.eval_batch_size = 256
  c.crop_batch_size = 256
  c.shift_batch_size = 16  # images per compiled shifting call ...
  c.shift_directions_per_call = 16  # ... times directions (x 10 offsets)
  c.seed = a.seed

  if a.quick:
    c.data = config_utils.data_config("planted", "planted", image_size=32)
    c.layer = "conv3a" if a.layer == "conv2a" else a.layer
    c.n_images_per_class = 20
    c.n_concepts = 3  # 3 crops of 16x16 fill the 32x32 canvas of the stitched test
    c.n_crops = 8
    c.n_samples = 4
    c.attribution_batch_size = 40
    c.nmf_max_iter = 100
    c.epochs = 50
    c.pairs_to_plot = _PLANTED_PAIRS
    # The planted images are dark parts on a light background: the empty cell of
    # the stitched canvas gets the background's mean, not black (a black 16x16
    # cell looks like the "block" part and pulls every stitched image to it).
    c.stitch_fill = sum(planted.BACKGROUND_RANGE) / 2
  return c
