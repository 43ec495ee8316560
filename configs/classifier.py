r"""Train a classifier (the model ClaDec and the concept methods explain).

The reference recipe (authors' code): SGD momentum 0.9, lr 0.1, weight decay
1e-4, 64 epochs, lr x0.1 twice, batch 128, inputs in [0, 1], no augmentation.
64 epochs is a GPU budget; on CPU pass fewer, e.g.

  python train.py --config=configs/classifier.py:source=idx,epochs=4 \
      --workdir=runs/fmnist_vgg

The planted-concepts set (`data/planted.py`, no download; the quick concept
run's classifier): `source=planted` picks the data set too and a CPU recipe
(6 epochs, batch 64, lr 0.05: a few minutes on 2 cores)

  python train.py --config=configs/classifier.py:source=planted --workdir=runs/planted

Arguments (after the colon): dataset, source (tfds | idx | digits | planted),
arch, epochs and batch (0: the source's default), seed, quick (a tiny smoke run).
"""

from jaxconcepts.programs import config_utils


def get_config(arg=None):
  a = config_utils.parse_arg(arg, dataset="fashion_mnist", source="tfds", arch="vgg",
                             epochs=0, batch=0, seed=0, quick=False)
  planted = a.source == "planted"
  c = config_utils.ml_collections.ConfigDict()
  c.task = "classifier"
  c.data = config_utils.data_config("planted" if planted else a.dataset, a.source,
                                    image_size=32)
  c.arch = a.arch
  c.num_epochs = a.epochs or (6 if planted else 64)
  c.batch_size = a.batch or (64 if planted else 128)
  c.eval_batch_size = 512
  c.seed = a.seed
  c.optimizer = config_utils.optimizer_config("sgd", 0.05 if planted else 0.1, momentum=0.9,
                                              weight_decay=1e-4)
  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 2
  c.log_every_steps = 50
  c.eval_every_epochs = 1
  c.num_devices = 0  # 0 = all local devices
  if a.quick:
    c.num_epochs = 1
    c.data.max_train = 512
    c.data.max_test = 256
    c.log_every_steps = 2
  return c
