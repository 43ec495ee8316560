"""The `train` and `evaluate` programs (also `jaxconcepts-train` / `-evaluate`).

  python train.py --config=configs/classifier.py:source=idx --workdir=runs/x \
      [--config.num_epochs=4]
  python evaluate.py --config=configs/cladec.py --workdir=runs/x

The whole config flows from `configs/*.py` into the task named by
`config.task`; `--config.key=value` overrides any field (an unknown key is an
error naming it).
"""

import contextlib
import difflib
import importlib.util
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from jaxconcepts.programs import config_utils
from jaxconcepts.train import distributed
from jaxconcepts.train import workdir as workdir_lib

# TensorFlow (imported later, only for TFDS and TensorBoard event files) prints C++ notices on
# import (oneDNN, absl). It computes nothing of ours, so its oneDNN kernels and notices are off.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
config_flags.DEFINE_config_file("config", None, "Config file (configs/X.py[:arg]).",
                                lock_config=True)
flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of process 0 (with "
                    "--num_processes and --process_id).")
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")
flags.DEFINE_bool("distributed", False, "Multi-host: jax.distributed.initialize() with what a "
                  "Cloud TPU pod slice or SLURM sets.")

TRAIN_TASKS = ("classifier", "cladec")
EVALUATE_TASKS = ("classifier", "cladec", "concepts")


def _check_task(task: str, valid: tuple[str, ...], program: str) -> None:
  if task not in valid:
    raise ValueError(f"unknown task {task!r} for {program}; valid tasks: {list(valid)}")


def _validate(config, workdir: str) -> None:
  """The program's own config checks, before any folder is created or anything restored.

  Layer fields (names or aliases) are checked against the architecture here;
  the concepts program checks them against the classifier's saved config.
  """
  if config.task == "classifier":
    from jaxconcepts.programs import classifier  # pylint: disable=g-import-not-at-top
    classifier.validate_config(config)
  elif config.task == "cladec":
    from jaxconcepts.programs import cladec_plan  # pylint: disable=g-import-not-at-top
    cladec_plan.validate_config(config)
    config_utils.normalize_layers(config, config.arch)
  elif config.task == "concepts":
    from jaxconcepts.programs import concepts  # pylint: disable=g-import-not-at-top
    concepts.validate_config(config, workdir)


@contextlib.contextmanager
def _claimed(workdir: str, config, program: str):
  """Holds the workdir while the program runs: process 0 claims it (run.json, lock) and
  releases it at the end; the other processes of a multi-host run only check the config."""
  if not distributed.is_main_process():
    workdir_lib.check_config(workdir, config, program)
    yield
    return
  lock = workdir_lib.claim(workdir, config, program)
  try:
    yield
  finally:
    workdir_lib.release_lock(lock)


def train_and_evaluate(config, workdir: str):
  """Runs the training task named by `config.task` in `workdir`, which it claims first."""
  _check_task(config.task, TRAIN_TASKS, "train")
  _validate(config, workdir)
  with _claimed(workdir, config, "train"):
    if config.task == "classifier":
      from jaxconcepts.programs import classifier  # pylint: disable=g-import-not-at-top
      return classifier.run(config, workdir)
    from jaxconcepts.programs import cladec as cladec_pipeline  # pylint: disable=g-import-not-at-top
    return cladec_pipeline.train(config, workdir)


def evaluate(config, workdir: str):
  """Runs the evaluation task named by `config.task`; results under workdir/results."""
  _check_task(config.task, EVALUATE_TASKS, "evaluate")
  _validate(config, workdir)
  if config.task in TRAIN_TASKS and not os.path.isdir(workdir):
    raise ValueError(f"workdir {workdir!r} does not exist: nothing was trained there; run "
                     f"train.py with the same --config and --workdir first")
  with _claimed(workdir, config, "evaluate"):
    if config.task == "classifier":
      from jaxconcepts.programs import classifier  # pylint: disable=g-import-not-at-top
      return classifier.evaluate(config, workdir)
    if config.task == "cladec":
      from jaxconcepts.programs import cladec as cladec_pipeline  # pylint: disable=g-import-not-at-top
      return cladec_pipeline.evaluate(config, workdir)
    from jaxconcepts.programs import concepts as concepts_pipeline  # pylint: disable=g-import-not-at-top
    return concepts_pipeline.evaluate(config, workdir)


def config_keys(config) -> list[str]:
  """All dotted leaf keys of a ConfigDict, e.g. ["data.source", "num_epochs"]."""
  return sorted(workdir_lib.flatten(config))


def _config_arg(argv: list[str]) -> str | None:
  """The value of --config (`path[:arg]`) in argv, or None."""
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      return a.split("=", 1)[1]
    if a == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _load_config_from_argv(argv: list[str]):
  """Loads the --config file (with its :arg) named in argv, or None.

  Raises:
    FileNotFoundError: naming the missing config file.
  """
  value = _config_arg(argv)
  return load_config(value) if value else None


def load_config(value: str):
  """The config of `--config=value` ("configs/X.py[:arg]"), as train.py / evaluate.py load it.

  Raises:
    FileNotFoundError: naming the missing config file.
  """
  path, _, arg = value.partition(":")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no config file {path!r} (--config=configs/X.py[:arg]; "
                            f"the files in configs/ are the experiments)")
  spec = importlib.util.spec_from_file_location("_user_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def check_overrides(argv: list[str]) -> None:
  """Raises ValueError for a `--config.key=value` whose key the config lacks."""
  config = _load_config_from_argv(argv)
  if config is None:
    return
  keys = config_keys(config)
  for a in argv[1:]:
    if not a.startswith("--config."):
      continue
    key = a[len("--config."):].split("=", 1)[0]
    if key not in keys:
      close = difflib.get_close_matches(key, keys, n=3)
      hint = f" Did you mean {close}?" if close else ""
      raise ValueError(f"the config has no key {key!r}.{hint} Valid keys: {keys}")


def usage(argv: list[str]) -> str:
  """The --help text: the two flags, and the keys of the config if --config names one."""
  program = os.path.basename(argv[0]) if argv else "train.py"
  lines = [
      f"usage: {program} --config=configs/X.py[:arg] --workdir=DIR [--config.key=value ...]",
      "",
      "  --config   an experiment: configs/quickstart.py, configs/classifier.py[:source=idx,...],",
      "             configs/cladec.py[:quick|fmnist], configs/concepts.py[:quick]",
      "  --workdir  folder for checkpoints, TensorBoard events, metrics, results and figures",
      "  --config.key=value  overrides one field of the config",
  ]
  config = _load_config_from_argv(argv)
  if config is not None:
    lines += ["", f"keys of {_config_arg(argv)}:"]
    lines += [f"  --config.{k}" for k in config_keys(config)]
  return "\n".join(lines) + "\n"


def _fail(message: str) -> None:
  sys.stderr.write(f"FATAL: {message}\n")
  sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with one-line errors, and a --help that lists the config's keys."""
  try:
    if "--help" in argv or "-h" in argv or "--helpshort" in argv:
      sys.stdout.write(usage(argv))
      sys.exit(0)
    check_overrides(argv)
    rest = FLAGS(argv)
  except (ValueError, FileNotFoundError, flags.Error) as e:
    _fail(" ".join(str(e).split()))
  missing = [f"--{name}" for name in ("config", "workdir") if FLAGS[name].value is None]
  if missing:
    _fail(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required; "
          f"see {os.path.basename(argv[0])} --help")
  return rest


class _QuietLibraries(logging.logging.Filter):
  """Drops INFO chatter of libraries: orbax (dozens of lines per checkpoint) and JAX's notice
  that it found no TPU backend (printed on every run of a machine without one)."""

  def filter(self, record) -> bool:
    if record.levelno >= logging.logging.WARNING:
      return True
    return "/orbax/" not in record.pathname and not (
        record.pathname.endswith("xla_bridge.py") and "Unable to initialize backend" in
        record.getMessage())


def _log_setup() -> None:
  logging.get_absl_handler().addFilter(_QuietLibraries())
  _one_line_errors(distributed.initialize, FLAGS.coordinator_address, FLAGS.num_processes,
                   FLAGS.process_id, FLAGS.distributed)
  logging.info("JAX %s, devices: %s", jax.__version__, jax.devices())


def _one_line_errors(fn, *args) -> None:
  """Runs `fn`; bad input (ValueError) or a file system that refuses (OSError: a missing
  file, a full disk, a read-only folder) ends the program with one line.

  Set JAXCONCEPTS_TRACEBACK=1 to see the traceback instead.
  """
  try:
    fn(*args)
  except (ValueError, OSError) as e:
    if os.environ.get("JAXCONCEPTS_TRACEBACK"):
      raise
    _fail(" ".join(str(e).split()))


def _train(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  _log_setup()
  _one_line_errors(train_and_evaluate, FLAGS.config, FLAGS.workdir)
  logging.info("train: done; checkpoints and metrics are in %s "
               "(next: python evaluate.py with the same --config and --workdir)",
               os.path.abspath(FLAGS.workdir))


def _evaluate(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  _log_setup()
  _one_line_errors(evaluate, FLAGS.config, FLAGS.workdir)
  logging.info("evaluate: done; results are in %s",
               ", ".join(os.path.join(os.path.abspath(FLAGS.workdir), d)
                         for d in ("results", "figures")
                         if os.path.isdir(os.path.join(FLAGS.workdir, d))))


def train_main():
  app.run(_train, flags_parser=parse_flags)


def evaluate_main():
  app.run(_evaluate, flags_parser=parse_flags)
