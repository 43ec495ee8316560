r"""Quickstart: a small VGG on scikit-learn's bundled digits (needs no download).

  python train.py --config=configs/quickstart.py --workdir=runs/quickstart
  python evaluate.py --config=configs/quickstart.py --workdir=runs/quickstart
  python sweep.py --config=configs/quickstart.py --workdir=runs/quickstart_sweep

About a minute or two on 2 CPU cores. Arguments: epochs, seed. The sweep (`get_sweep`): two
seeds x two learning rates, one CPU per trial.
"""

from jaxconcepts.programs import config_utils


def get_config(arg=None):
  a = config_utils.parse_arg(arg, epochs=8, seed=0)
  c = config_utils.ml_collections.ConfigDict()
  c.task = "classifier"
  c.data = config_utils.data_config("digits", "digits", image_size=32)
  c.arch = "vgg"
  c.num_epochs = a.epochs
  c.batch_size = 64
  c.eval_batch_size = 360
  c.seed = a.seed
  c.optimizer = config_utils.optimizer_config("sgd", 0.05, momentum=0.9, weight_decay=1e-4)
  c.checkpoint_every_steps = 50
  c.keep_checkpoints = 2
  c.log_every_steps = 10
  c.eval_every_epochs = 1
  c.num_devices = 0
  return c


def get_sweep(arg=None):
  """Four trials: seeds 0, 1 x learning rates 0.02, 0.05 (`arg` as for `get_config`)."""
  config_utils.parse_arg(arg, epochs=8, seed=0)  # the same arguments as get_config
  trials = [{"seed": seed, "optimizer.learning_rate": lr}
            for seed in (0, 1) for lr in (0.02, 0.05)]
  return {"trials": trials, "resources": {"cpu": 1}, "metric": "test_accuracy", "mode": "max"}
