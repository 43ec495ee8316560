r"""ClaDec (Schneider & Vlachos): decoders per layer, RefAE, the alpha trade-off, evaluation
classifiers, Tables 2-8 and figures; see jaxconcepts/programs/cladec.py.

  # the paper's setting (GPU budget: 64 epochs everywhere, 5 seeds)
  python train.py --config=configs/cladec.py --workdir=runs/cladec_fmnist
  python evaluate.py --config=configs/cladec.py --workdir=runs/cladec_fmnist

  # explain a classifier trained before (configs/classifier.py) instead of training one
  python train.py --config=configs/cladec.py:source=idx \
      --config.classifier_workdir=runs/fmnist_vgg --workdir=runs/cladec_fmnist

  # Fashion-MNIST at CPU scale (IDX files; a training subset, few epochs, 2 seeds)
  python train.py --config=configs/cladec.py:fmnist \
      --config.classifier_workdir=runs/fmnist_vgg --workdir=runs/cladec_fmnist_cpu
  python evaluate.py --config=configs/cladec.py:fmnist \
      --config.classifier_workdir=runs/fmnist_vgg --workdir=runs/cladec_fmnist_cpu

  # quick: the embedded planted-concepts set (no download), everything small (README:
  # time, disk, the expected figure); results/cladec_planted_parts scores the
  # reconstructions against the planted parts
  python train.py --config=configs/cladec.py:quick --workdir=runs/cladec_quick
  python evaluate.py --config=configs/cladec.py:quick --workdir=runs/cladec_quick

Arguments (after the colon): dataset, source, arch, seeds ("0:1:2"), epochs (all
stages; 0 keeps the defaults), rec (sum | mean), variant (paper | reference),
quick, fmnist.
"""

import ml_collections

from jaxconcepts.programs import config_utils


def get_config(arg=None):
  a = config_utils.parse_arg(arg, dataset="fashion_mnist", source="tfds", arch="vgg",
                             seeds="0:1:2:3:4", epochs=0, rec="sum", variant="paper",
                             quick=False, fmnist=False)
  c = ml_collections.ConfigDict()
  c.task = "cladec"
  c.data = config_utils.data_config(a.dataset, a.source, image_size=32)
  c.arch = a.arch

  # The classifier to explain: a workdir written by
  # `train.py --config=configs/classifier.py` (config.json + checkpoints/classifier);
  # None trains one here with `classifier` below.
  c.classifier_workdir = ml_collections.config_dict.placeholder(str)
  c.classifier = ml_collections.ConfigDict()
  c.classifier.num_epochs = 64
  c.classifier.batch_size = 128
  c.classifier.seed = 0
  c.classifier.optimizer = config_utils.optimizer_config("sgd", 0.1, momentum=0.9,
                                                         weight_decay=1e-4)

  # Layers to explain (names or the paper's aliases: -1 logits ... -5 conv3a).
  c.layers = (-1, -2, -3, -4, -5)
  c.seeds = tuple(int(s) for s in a.seeds.split(":"))
  # Eq. 1: (1 - alpha) rec + alpha CE(C(x_hat), y). `alpha` for the layer table,
  # `alphas` for the trade-off (Tables 4/5, Fig. 11) at `alpha_layer`.
  c.alpha = 0.0
  # The paper's Table 4 (VGG); its Table 5 (ResNet) adds 0.99.
  c.alphas = ((1.0, 0.999, 0.99, 0.9, 0.0) if a.arch.startswith("resnet")
              else (1.0, 0.999, 0.9, 0.0))
  c.alpha_layer = config_utils.layer_field(-2)  # a name or an alias
  # "sum": squared error summed over pixels per image (the paper); "mean": averaged
  # over pixels (the authors' code).
  c.rec_reduction = a.rec

  # Decoder: "paper" (Table 1: 5x5 transposed convs, widths 256..32) or "reference"
  # (the authors' code: 4x4, widths 512..64); kernel_size overrides the variant's.
  c.decoder = ml_collections.ConfigDict()
  c.decoder.variant = a.variant
  c.decoder.kernel_size = ml_collections.config_dict.placeholder(int)
  c.decoder.impl = "auto"  # transposed conv: auto | xla | subpixel
  # Output in [0, 1]: "clip" (straight-through clip, the default for every config) or
  # "sigmoid" (the paper's Table 1). With a sigmoid, decoders of mostly black images
  # (digits, strokes) collapsed to the all-black image at every learning rate and
  # reduction tried (issue 16; benchmarks/README.md "ClaDec decoder recipe").
  c.decoder.output = "clip"
  c.decoder_epochs = 64
  c.refae_epochs = 64
  # The reference recipe: Adam lr 3e-4, weight decay 1e-5, lr x0.1 twice.
  c.decoder_optimizer = config_utils.optimizer_config("adam", 3e-4, weight_decay=1e-5)
  c.batch_size = 128
  c.eval_batch_size = 512

  # Evaluation classifiers (the classifier's architecture) on reconstructions;
  # num_epochs 0 skips them.
  c.eval_classifier = ml_collections.ConfigDict()
  c.eval_classifier.num_epochs = 64
  c.eval_classifier.batch_size = 128
  c.eval_classifier.optimizer = config_utils.optimizer_config("sgd", 0.1, momentum=0.9,
                                                              weight_decay=1e-4)

  # Table 6: classifiers trained for these epochs (empty: skip), explained at this layer.
  # "own": each its own run with its own lr schedule over its epochs; "snapshots": one
  # run over the largest number, snapshotted (cheaper; mid-schedule classifiers).
  c.classifier_epochs = (0, 1, 4, 16, 64)
  c.classifier_epochs_layer = config_utils.layer_field(-2)
  c.classifier_epochs_runs = "own"

  # Figs. 13/14: decoders from runs of channels of `layer`: nested sizes (neurons
  # 0..n-1) and `disjoint_count` disjoint runs (0: none) of `disjoint_size` channels, by
  # default (None) `disjoint_fraction` of the layer's, the paper's 2% (10 of 512).
  c.subsets = ml_collections.ConfigDict()
  c.subsets.layer = config_utils.layer_field(-2)
  c.subsets.nested = (256, 64, 16, 4)
  c.subsets.disjoint_size = ml_collections.config_dict.placeholder(int)
  c.subsets.disjoint_fraction = 0.02
  c.subsets.disjoint_count = 4

  # Tables 7/8, Fig. 16 (layers must be among `layers`; empty: skip).
  c.occlusion = ml_collections.ConfigDict()
  c.occlusion.layers = (-1, -3, -5)
  c.occlusion.n_images = 10000
  c.occlusion.corners = (0, 6, 12, 20)
  c.occlusion.size = 12
  c.occlusion.batch_size = 64

  c.figures = ml_collections.ConfigDict()
  c.figures.n_images = 8

  # JAX's persistent compilation cache (None: <workdir>/xla_cache; "": off), unless
  # JAX_COMPILATION_CACHE_DIR is set.
  c.compilation_cache_dir = ml_collections.config_dict.placeholder(str)

  # Loop knobs (training.fit).
  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 2
  c.log_every_steps = 50
  c.num_devices = 0  # 0 = all local devices

  if a.fmnist:
    # Fashion-MNIST at CPU scale, from the IDX files (Debian's dataset-fashion-mnist).
    # Reduced against the paper: 3000 training images (of 60000) for the decoders, RefAE
    # and the evaluation classifiers, 2000 test images (of 10000); 3 decoder / RefAE
    # epochs (of 64) at Adam lr 1e-3 (of 3e-4, to make up for the few steps); 2
    # evaluation-classifier epochs (of 64); 2 seeds (of 5); alphas 0.999, (0.99 for a
    # ResNet,) 0.9, 0 (no 1.0); Table 6 with classifiers of 0, 1 and 2 epochs (of 0, 1,
    # 4, 16, 64), each its own run on the 3000 images; 4 subset decoders (2 disjoint of
    # 2%); 1000 occlusion images.
    c.data = config_utils.data_config("fashion_mnist", "idx", image_size=32,
                                      max_train=3000, max_test=2000)
    c.seeds = (0, 1)
    c.decoder_epochs = c.refae_epochs = 3
    c.decoder_optimizer = config_utils.optimizer_config("adam", 1e-3, weight_decay=1e-5)
    c.eval_classifier.num_epochs = 2
    c.classifier.num_epochs = 5
    c.alphas = (0.999, 0.99, 0.9, 0.0) if a.arch.startswith("resnet") else (0.999, 0.9, 0.0)
    c.classifier_epochs = (0, 1, 2)
    c.subsets.nested = (64, 8)
    c.subsets.disjoint_count = 2
    c.occlusion.n_images = 1000
    c.keep_checkpoints = 1
    c.checkpoint_every_steps = 100
    c.log_every_steps = 10

  if a.quick:
    # The planted-concepts set (data/planted.py: six classes built from known parts, with
    # the part masks, no download), everything small (README "The quick ClaDec run").
    # The part masks let the tables score the reconstructions against the class's parts
    # (results/cladec_planted_parts). Decoders: Adam 1e-3 (3e-3 gave a higher loss at
    # conv4a); 24 epochs of 24 steps (at 8 epochs the conv3a reconstructions were dark
    # blobs; at 24 the parts' shapes show).
    c.data = config_utils.data_config("planted", "planted", image_size=32, max_train=1536,
                                      max_test=384)
    c.seeds = (0, 1)
    # Two spatial layers (conv4a 2x2, conv3a 4x4: the logits say which class but not
    # where its parts are, so no decoder can draw them); the alpha sweep and two disjoint
    # neuron subsets at conv4a, which the layer table trains anyway; no Table 6 (its
    # decoders would add about a third to the run; configs/cladec.py:fmnist has it).
    c.layers = (-3, -5)
    c.alpha_layer = c.subsets.layer = c.classifier_epochs_layer = -3
    c.classifier.num_epochs = 6
    c.classifier.batch_size = 64
    c.classifier.optimizer = config_utils.optimizer_config("sgd", 0.05, momentum=0.9,
                                                           weight_decay=1e-4)
    c.decoder_epochs = c.refae_epochs = 24
    c.decoder_optimizer = config_utils.optimizer_config("adam", 1e-3, weight_decay=1e-5)
    c.eval_classifier.num_epochs = 2
    c.eval_classifier.batch_size = 64
    c.eval_classifier.optimizer = c.classifier.optimizer
    c.batch_size = 64
    c.eval_batch_size = 384
    c.alphas = (0.9, 0.0)
    c.classifier_epochs = ()
    c.subsets.nested = ()
    c.subsets.disjoint_size = 32
    c.subsets.disjoint_count = 2
    c.occlusion.layers = (-3, -5)
    c.occlusion.n_images = 64
    c.figures.n_images = 4
    c.checkpoint_every_steps = 50
    c.keep_checkpoints = 1
    c.log_every_steps = 10
    c.num_devices = 1

  if a.epochs:
    c.classifier.num_epochs = c.decoder_epochs = c.refae_epochs = a.epochs
    c.eval_classifier.num_epochs = a.epochs
  return c
