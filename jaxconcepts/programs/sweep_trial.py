"""One trial of a sweep (`programs/sweep.py`): its files, its Ray trainable, its subprocess.

A trial's state is files in its workdir, so that a rerun of the sweep knows it:

* `sweep_trial.json`: the `--config` value, the overrides, the status ("running",
  "finished", "failed"), how many times it started (`attempts`) and the error line;
* `sweep_metrics.json`: the scalars of evaluate's result and the config they came from,
  written only when evaluate returned: the trial is finished;
* `sweep.log`: the output of train and evaluate, attempt after attempt.

The Ray worker (`trainable`) runs the programs in a fresh Python subprocess
(`main`), not in itself: JAX fixes its backend, devices, XLA flags and compilation
caches once per process, the programs hold their workdir's lock by process id, and a
crash (out of memory, a segfault) then ends one subprocess, not the worker. Train and
evaluate share the subprocess, so a trial pays for one JAX start-up. The subprocess
inherits the devices Ray gave the trial (Ray sets CUDA_VISIBLE_DEVICES) and ends when
its worker does.
"""

from __future__ import annotations

import copy
import difflib
import os
import subprocess
import sys
import threading
import time
from typing import Any, Mapping

from absl import flags
from absl import logging

from jaxconcepts import utils
from jaxconcepts.programs import cli
from jaxconcepts.train import workdir as workdir_lib

TRIAL_FILE = "sweep_trial.json"
METRICS_FILE = "sweep_metrics.json"
LOG_FILE = "sweep.log"


def apply_overrides(config: Any, overrides: Mapping[str, Any], where: str = "") -> Any:
  """A copy of `config` with `overrides` ({"a.b": value}) set.

  Raises:
    ValueError: one line (prefixed by `where`) for a key the config lacks, naming the
      closest keys, or a value of the wrong type.
  """
  keys = cli.config_keys(config)
  for key in overrides:
    if key not in keys:
      close = difflib.get_close_matches(key, keys, n=3)
      raise ValueError(f"{where}the config has no key {key!r}"
                       f"{f' (did you mean {close}?)' if close else ''}; valid keys: {keys}")
  out = copy.deepcopy(config)
  try:
    out.update_from_flattened_dict(dict(overrides))
  except (TypeError, ValueError) as e:
    raise ValueError(f"{where}{' '.join(str(e).split())}") from None
  return out


def read_record(trial_dir: str) -> dict[str, Any]:
  """The trial's `sweep_trial.json` ({} when it never started)."""
  path = os.path.join(trial_dir, TRIAL_FILE)
  return utils.read_json(path) if os.path.exists(path) else {}


def read_metrics(trial_dir: str) -> dict[str, Any] | None:
  """The trial's evaluate results ({"metrics", "config"}), or None before they exist."""
  path = os.path.join(trial_dir, METRICS_FILE)
  return utils.read_json(path) if os.path.exists(path) else None


def is_finished(trial_dir: str, config: Any) -> bool:
  """Whether evaluate's metrics exist for this very config (fields in `FREE` may differ).

  A trial whose config changed since (e.g. more epochs) is not finished: it runs again,
  and the programs extend it or refuse it as they do for any workdir.
  """
  done = read_metrics(trial_dir)
  if done is None:
    return False
  now = workdir_lib.flatten(config)
  return all(done["config"].get(k) == now.get(k) for k in set(done["config"]) | set(now)
             if k not in workdir_lib.FREE)


def scalar_metrics(result: Any, prefix: str = "") -> dict[str, float]:
  """The numbers of evaluate's returned dict, nested keys joined with "." (lists skipped)."""
  out: dict[str, float] = {}
  if isinstance(result, Mapping):
    for key, value in result.items():
      out.update(scalar_metrics(value, f"{prefix}{key}."))
  elif isinstance(result, (int, float)) and not isinstance(result, bool) and prefix:
    out[prefix[:-1]] = float(result)
  elif hasattr(result, "item") and getattr(result, "size", 0) == 1 and prefix:
    out[prefix[:-1]] = float(result.item())
  return out


def _error_line(exc: BaseException) -> str:
  text = " ".join(str(exc).split())
  return text if isinstance(exc, (ValueError, FileNotFoundError)) else (
      f"{type(exc).__name__}: {text}")


def _exit_with_parent(parent: int) -> None:
  """Ends this process once its parent (the trial's Ray worker) is gone."""
  while os.getppid() == parent:
    time.sleep(1.0)
  os._exit(3)


def main() -> None:
  """The trial subprocess: train then evaluate in `sys.argv[1]`, its metrics to a file.

  The config and overrides come from the trial's `sweep_trial.json`. An error ends the
  process with status 1 and a last line `FATAL: <error>`.
  """
  trial_dir = sys.argv[1]
  threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
  flags.FLAGS.mark_as_parsed()  # absl logging as under app.run, without flags to parse
  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)
  cli._log_setup()  # pylint: disable=protected-access  (the programs' own log filter)
  record = read_record(trial_dir)
  try:
    config = apply_overrides(cli.load_config(record["config"]), record["overrides"])
    cli.train_and_evaluate(config, trial_dir)
    result = cli.evaluate(config, trial_dir)
  except Exception as e:  # pylint: disable=broad-except
    if not isinstance(e, (ValueError, FileNotFoundError)):
      logging.exception("trial %s failed", trial_dir)
    sys.stderr.write(f"FATAL: {_error_line(e)}\n")
    sys.exit(1)
  utils.write_json_atomic(os.path.join(trial_dir, METRICS_FILE),
                          {"metrics": scalar_metrics(result),
                           "config": workdir_lib.flatten(config)})


def _last_error(log_path: str, returncode: int) -> str:
  """The `FATAL:` line of the trial's log, else its last line, else the exit status."""
  try:
    with open(log_path, errors="replace") as f:
      lines = [l.strip() for l in f.readlines()[-200:] if l.strip()]
  except OSError:
    lines = []
  fatal = [l for l in lines if l.startswith("FATAL: ")]
  if fatal:
    return fatal[-1][len("FATAL: "):]
  return f"exit status {returncode}" + (f": {lines[-1]}" if lines else "")


def _trial_env(resources: Mapping[str, float]) -> dict[str, str]:
  """The subprocess environment: a trial with a fraction of a GPU takes that much memory."""
  env = dict(os.environ)
  gpu = float(resources.get("gpu", 0))
  if 0 < gpu < 1:
    env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 * gpu:.2f}"
  return env


def run_trial(spec: Mapping[str, Any]) -> dict[str, Any]:
  """Runs one trial's programs in a subprocess; returns its record (also its file).

  Args:
    spec: {"workdir", "config" (the `--config` value, absolute path), "overrides" (base and
      trial), "resources", "cwd"}.

  Returns:
    The record: status "finished" with "metrics", or "failed" with "error" (one line).
  """
  trial_dir = spec["workdir"]
  os.makedirs(trial_dir, exist_ok=True)
  if os.path.exists(os.path.join(trial_dir, METRICS_FILE)):
    os.remove(os.path.join(trial_dir, METRICS_FILE))  # results of another config: stale
  record = read_record(trial_dir)
  record.update(config=spec["config"], overrides=spec["overrides"], status="running",
                attempts=int(record.get("attempts", 0)) + 1, error=None)
  utils.write_json_atomic(os.path.join(trial_dir, TRIAL_FILE), record)
  log_path = os.path.join(trial_dir, LOG_FILE)
  command = [sys.executable, "-c",
             "from jaxconcepts.programs import sweep_trial; sweep_trial.main()", trial_dir]
  start = time.time()
  with open(log_path, "a") as log:
    log.write(f"--- attempt {record['attempts']}: {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    log.flush()
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                            env=_trial_env(spec["resources"]),
                            cwd=spec["cwd"] if os.path.isdir(spec["cwd"]) else None)
    try:
      returncode = proc.wait()
    finally:
      if proc.poll() is None:
        proc.kill()
  done = read_metrics(trial_dir) if returncode == 0 else None
  record.update(status="finished" if done else "failed", seconds=round(time.time() - start, 1),
                error=None if done else _last_error(log_path, returncode))
  utils.write_json_atomic(os.path.join(trial_dir, TRIAL_FILE), record)
  return {**record, "metrics": done["metrics"] if done else {}}


def trainable(config: dict, specs: dict) -> None:
  """The Ray Tune function trainable: the trial named by `config["trial"]`."""
  from ray import tune  # pylint: disable=g-import-not-at-top
  record = run_trial(specs[config["trial"]])
  tune.report({"status": record["status"], "error": record["error"] or "",
               **record["metrics"]})


