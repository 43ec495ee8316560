r"""Sweeps across runs on Ray Tune (also `jaxconcepts-sweep`).

  python sweep.py --config=configs/quickstart.py --workdir=runs/sweep \
      [--address=ray://HEAD:10001] [--metric=test_accuracy] [--config.key=value ...]

A config module declares its sweep beside its config, in the spirit of big_vision's
`get_hyper`: `get_sweep(arg)` receives the same `arg` as `get_config(arg)` and returns a
list of override dicts ({"optimizer.learning_rate": 0.1, "seed": 1}; keys are config
paths), or a dict {"trials": [...], "resources": {"cpu": 1, "gpu": 0}, "metric":
"test_accuracy", "mode": "max"} that also gives each trial's Ray resources and the metric
to compare. `--config.key=value` flags apply to every trial. Every override is checked
before any trial starts.

Each trial is one Ray Tune trial that runs train, then evaluate, in its own workdir
`WORKDIR/trials/<name>`, the name spelled from its overrides (`sweep_trial.py`). The
sweep's state is those folders: a rerun skips the finished trials and hands Tune only
the others, which resume from their checkpoints as the programs always do (so no
`Tuner.restore`, which could not take a sweep that grew). A trial whose program fails
is reported with its error line while the others go on; one whose Ray worker dies (a
lost node) is retried `--retries` times and resumes from its checkpoint.

The sweep writes `WORKDIR/sweep_summary.{json,md}` (one row per trial: overrides,
status, metric, error, workdir) and `WORKDIR/sweep_<metric>.png` (the metric against
each swept key). It exits with status 1 when a trial failed; its last line says how
many did.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import sys
import time
from typing import Any, Mapping, NamedTuple, Sequence

from absl import app
from absl import flags
from absl import logging

from jaxconcepts import report
from jaxconcepts import utils
from jaxconcepts.programs import cli
from jaxconcepts.programs import sweep_trial
from jaxconcepts.train import distributed

FLAGS = flags.FLAGS
flags.DEFINE_string("address", None, "Ray cluster address (e.g. ray://HEAD:10001 or auto); "
                    "default: start an embedded local Ray.")
flags.DEFINE_string("metric", None, "Metric of evaluate's result to compare (default: the "
                    "sweep's own, e.g. test_accuracy).")
flags.DEFINE_integer("num_cpus", None, "CPUs of the embedded local Ray (default: all).")
flags.DEFINE_integer("retries", 0, "Times Tune retries a trial whose Ray worker died.")

TRIALS_DIR = "trials"
SUMMARY = "sweep_summary"
DEFAULT_RESOURCES = {"cpu": 1}
MODES = ("max", "min")
_MAX_NAME = 100


class Sweep(NamedTuple):
  """A config's sweep, as `get_sweep` declared it.

  Attributes:
    trials: one override dict per trial, {"config.path": value}.
    resources: Ray resources of one trial, e.g. {"cpu": 1, "gpu": 1}.
    metric: the name of evaluate's result to compare ("" for the first one).
    mode: "max" or "min": which end of the metric is best.
  """
  trials: list[dict[str, Any]]
  resources: dict[str, float]
  metric: str
  mode: str


class Trial(NamedTuple):
  """One trial: its stable name, its overrides, its workdir and its whole config."""
  name: str
  overrides: dict[str, Any]
  workdir: str
  config: Any


# ---------------------------------------------------------------------------
# The sweep a config declares.


def parse_sweep(raw: Any) -> Sweep:
  """The `Sweep` of `get_sweep`'s return value (a list of dicts, or a dict with "trials").

  Raises:
    ValueError: one line naming the malformed part.
  """
  spec = dict(raw) if isinstance(raw, Mapping) else {"trials": raw}
  unknown = sorted(set(spec) - {"trials", "resources", "metric", "mode"})
  if unknown:
    raise ValueError(f"get_sweep returned unknown entries {unknown}; "
                     "valid: trials, resources, metric, mode")
  trials = spec.get("trials")
  if not isinstance(trials, (list, tuple)) or not trials or not all(
      isinstance(t, Mapping) for t in trials):
    raise ValueError(f"get_sweep must give a non-empty list of override dicts, got {trials!r}")
  resources = dict(spec.get("resources") or DEFAULT_RESOURCES)
  if not all(isinstance(v, (int, float)) and v >= 0 for v in resources.values()) or not any(
      resources.values()):
    raise ValueError(f"sweep resources must be non-negative numbers, not all zero "
                     f"(e.g. {{'cpu': 1, 'gpu': 1}}), got {resources}")
  mode = utils.check_choice("sweep mode", spec.get("mode", "max"), MODES)
  return Sweep([dict(t) for t in trials], resources, str(spec.get("metric") or ""), mode)


def load(config_arg: str) -> tuple[Any, Sweep]:
  """The config and the sweep of `--config=configs/X.py[:arg]`.

  Raises:
    FileNotFoundError: naming a missing config file.
    ValueError: when the config module has no `get_sweep`, or it is malformed.
  """
  config = cli.load_config(config_arg)
  path, _, arg = config_arg.partition(":")
  spec = importlib.util.spec_from_file_location("_user_sweep", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_sweep"):
    raise ValueError(f"{path} declares no sweep: add get_sweep(arg) returning a list of "
                     "override dicts (see configs/quickstart.py)")
  return config, parse_sweep(module.get_sweep(arg) if arg else module.get_sweep())


def _value_text(value: Any) -> str:
  return json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)


def trial_name(overrides: Mapping[str, Any]) -> str:
  """A folder name spelled from the overrides, the same on every run.

  E.g. {"seed": 1, "optimizer.learning_rate": 0.05} -> "optimizer.learning_rate=0.05,seed=1";
  {} -> "base". Characters other than letters, digits and ._,=+- become "_"; a name over
  100 characters is cut and ends in a hash of the whole overrides.
  """
  if not overrides:
    return "base"
  name = ",".join(f"{k}={_value_text(v)}" for k, v in sorted(overrides.items()))
  name = re.sub(r"[^A-Za-z0-9._,=+-]", "_", name)
  if len(name) > _MAX_NAME:
    digest = hashlib.sha1(json.dumps(overrides, sort_keys=True, default=str).encode())
    name = f"{name[:_MAX_NAME - 11]}-{digest.hexdigest()[:10]}"
  return name


def plan(config: Any, sweep: Sweep, workdir: str) -> list[Trial]:
  """The trials of `sweep` under `workdir/trials`, each checked against `config`.

  Raises:
    ValueError: before any trial starts, for an unknown key or bad value in any trial,
      or two trials with the same name.
  """
  trials, seen = [], {}
  for i, overrides in enumerate(sweep.trials):
    trial_config = sweep_trial.apply_overrides(config, overrides,
                                               where=f"sweep trial {i} {overrides}: ")
    name = trial_name(overrides)
    if name in seen:
      raise ValueError(f"sweep trials {seen[name]} and {i} have the same name {name!r} "
                       f"(same overrides); every trial needs its own")
    seen[name] = i
    trials.append(Trial(name, dict(overrides), os.path.join(workdir, TRIALS_DIR, name),
                        trial_config))
  return trials


# ---------------------------------------------------------------------------
# The driver: Ray, the Tuner, the summary.


def _start_ray(address: str | None, num_cpus: int | None) -> bool:
  """Connects to `address`, or starts an embedded local Ray; returns whether it started one.

  Raises:
    ValueError: when the `sweep` extra (Ray Tune) is not installed.
  """
  try:
    import ray  # pylint: disable=g-import-not-at-top
    from ray import tune  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    raise ValueError("sweeps need Ray Tune: pip install 'jaxconcepts[sweep]'") from None
  if ray.is_initialized():
    return False
  if address is None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # an embedded Ray reports nothing
  # "local": a new Ray of this process, never one found on the machine (RAY_ADDRESS, `ray start`).
  ray.init(address=address or "local", num_cpus=None if address else num_cpus,
           include_dashboard=False, log_to_driver=False, logging_level="warning")
  return address is None


def _check_fits(resources: Mapping[str, float]) -> None:
  """Raises ValueError when one trial needs more than the whole local Ray has."""
  import ray  # pylint: disable=g-import-not-at-top
  have = {k.lower(): v for k, v in ray.cluster_resources().items()}
  short = {k: v for k, v in resources.items() if v > have.get(k.lower(), 0)}
  if short:
    raise ValueError(f"a trial needs {short} but this Ray has "
                     f"{ {k: have.get(k.lower(), 0) for k in short} }; lower the sweep's "
                     "resources, or run on a cluster with --address")


def _progress_callback(total: int) -> Any:
  """A Tune callback that logs each trial's start and its end (metric or error line)."""
  from ray import tune  # pylint: disable=g-import-not-at-top

  class _Progress(tune.Callback):
    started = 0

    def on_trial_start(self, iteration, trials, trial, **info):
      self.started += 1
      logging.info("sweep: trial %s started (%d of %d)", trial.config["trial"], self.started,
                   total)

    def on_trial_complete(self, iteration, trials, trial, **info):
      result = trial.last_result or {}
      if result.get("status") == "finished":
        logging.info("sweep: trial %s finished", trial.config["trial"])
      else:
        logging.error("sweep: trial %s FAILED: %s", trial.config["trial"],
                      result.get("error") or "no result")

    def on_trial_error(self, iteration, trials, trial, **info):
      logging.error("sweep: trial %s FAILED in Ray (worker lost or trainable error; see %s)",
                    trial.config["trial"], trial.local_path)

  return _Progress()


def _tune(specs: dict[str, dict], resources: Mapping[str, float], workdir: str,
          retries: int) -> None:
  """Runs the trials in `specs` ({name: spec}) as one Tune experiment under workdir/ray."""
  from ray import tune  # pylint: disable=g-import-not-at-top
  trainable = tune.with_resources(tune.with_parameters(sweep_trial.trainable, specs=specs),
                                  resources=dict(resources))
  tuner = tune.Tuner(
      trainable,
      param_space={"trial": tune.grid_search(sorted(specs))},
      tune_config=tune.TuneConfig(trial_name_creator=lambda t: t.config["trial"],
                                  trial_dirname_creator=lambda t: t.config["trial"]),
      run_config=tune.RunConfig(
          name=time.strftime("sweep-%Y%m%d-%H%M%S"),
          storage_path=os.path.join(os.path.abspath(workdir), "ray"), verbose=0,
          callbacks=[_progress_callback(len(specs))],
          failure_config=tune.FailureConfig(max_failures=retries)))
  tuner.fit()


def _specs(trials: Sequence[Trial], config_arg: str, base: Mapping[str, Any],
           resources: Mapping[str, float]) -> dict[str, dict]:
  """{name: spec} for `run_trial`; paths absolute (Tune's workers start elsewhere)."""
  path, sep, arg = config_arg.partition(":")
  config = os.path.abspath(path) + sep + arg
  return {t.name: {"workdir": os.path.abspath(t.workdir), "config": config,
                   "overrides": {**base, **t.overrides}, "resources": dict(resources),
                   "cwd": os.getcwd()} for t in trials}


def _row(trial: Trial, metric: str) -> dict[str, Any]:
  """One summary row: overrides, status, the metric, error and workdir of a trial."""
  record = sweep_trial.read_record(trial.workdir)
  done = sweep_trial.read_metrics(trial.workdir) if sweep_trial.is_finished(
      trial.workdir, trial.config) else None
  status = "finished" if done else record.get("status", "not run")
  if not done and status in ("running", "finished"):  # killed, or done for an older config
    status = "not finished"
  value = (done or {}).get("metrics", {}).get(metric, float("nan"))
  return {"trial": trial.name, **trial.overrides, "status": status, metric: value,
          "attempts": int(record.get("attempts", 0)), "error": None if done else record.get(
              "error"), "workdir": os.path.abspath(trial.workdir)}


def _choose_metric(trials: Sequence[Trial], wanted: str) -> str:
  """`wanted`, or else the first metric of the first finished trial ("" if none).

  A `wanted` metric that no finished trial has is kept (its column stays empty) and
  logged with the names evaluate gave.
  """
  found = [d["metrics"] for d in map(sweep_trial.read_metrics, (t.workdir for t in trials))
           if d and d["metrics"]]
  if found and wanted and not any(wanted in m for m in found):
    logging.warning("sweep: no trial has the metric %r; evaluate gave %s", wanted,
                    sorted(found[0]))
  return wanted or (next(iter(found[0])) if found else "")


def run(config_arg: str, workdir: str, *, base_overrides: Mapping[str, Any] | None = None,
        address: str | None = None, metric: str | None = None, num_cpus: int | None = None,
        retries: int = 0) -> dict[str, Any]:
  """Runs the sweep that `config_arg`'s module declares; writes and returns its summary.

  Args:
    config_arg: the `--config` value, "configs/X.py[:arg]".
    workdir: the sweep's folder; trial i runs in workdir/trials/<name of its overrides>.
    base_overrides: {"config.path": value} for every trial (the `--config.key` flags).
    address: a Ray cluster address; None starts (and stops) an embedded local Ray.
    metric: the evaluate result to tabulate and plot (default: the sweep's own).
    num_cpus: the embedded Ray's CPUs (default: all of this machine's).
    retries: Tune's retries of a trial whose worker died.

  Returns:
    The summary: {"rows", "metric", "mode", "trials", "finished", "failed", "started",
    "files"}.

  Raises:
    ValueError: one line, before any trial starts, for a bad config, sweep or override.
  """
  base_config, sweep = load(config_arg)
  base = dict(base_overrides or {})
  config = sweep_trial.apply_overrides(base_config, base, where="--config overrides: ")
  trials = plan(config, sweep, workdir)
  pending = [t for t in trials if not sweep_trial.is_finished(t.workdir, t.config)]
  logging.info("sweep: %d trials, %d finished before, %d to run, in %s", len(trials),
               len(trials) - len(pending), len(pending), os.path.abspath(workdir))
  if pending:
    utils.check_int(retries, "retries", 0)
    started_ray = _start_ray(address, num_cpus)
    try:
      if started_ray:
        _check_fits(sweep.resources)
      _tune(_specs(pending, config_arg, base, sweep.resources), sweep.resources, workdir,
            retries)
    finally:
      if started_ray:
        import ray  # pylint: disable=g-import-not-at-top
        ray.shutdown()
  return write_summary(workdir, trials, _choose_metric(trials, metric or sweep.metric),
                       sweep.mode, started=len(pending))


# ---------------------------------------------------------------------------
# Summary table and plot.


def _swept_keys(trials: Sequence[Trial]) -> list[str]:
  """The override keys, in first-seen order, that take two or more values."""
  keys: list[str] = []
  for t in trials:
    keys.extend(k for k in t.overrides if k not in keys)
  return [k for k in keys if len({_value_text(t.overrides.get(k)) for t in trials}) > 1]


def _positions(values: Sequence[Any]) -> tuple[list[float], list[str] | None]:
  """x positions of swept values: the numbers themselves, or indices of sorted labels."""
  if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
    return [float(v) for v in values], None
  labels = sorted({_value_text(v) for v in values})
  return [float(labels.index(_value_text(v))) for v in values], labels


def plot_metric(path: str, rows: Sequence[Mapping[str, Any]], keys: Sequence[str],
                metric: str) -> str | None:
  """Writes the metric against each swept key (one panel per key; dots per trial, the mean
  per value as a line); returns `path`, or None when no trial has a finite metric. Process 0
  alone draws and writes it (as `report`'s writers do)."""
  rows = [r for r in rows if isinstance(r.get(metric), float) and math.isfinite(r[metric])]
  if not rows:
    return None
  if not distributed.is_main_process():
    return path
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  keys = list(keys) or ["trial"]
  fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
  for ax, key in zip(axes[0], keys):
    x, labels = _positions([r.get(key) for r in rows])
    y = [r[metric] for r in rows]
    ax.plot(x, y, "o", alpha=0.6, label="trial")
    xs = sorted(set(x))
    ax.plot(xs, [sum(b for a, b in zip(x, y) if a == v) / x.count(v) for v in xs], "-",
            label="mean")
    if labels is not None:
      ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
    elif min(x) > 0 and max(x) / min(x) >= 10:
      ax.set_xscale("log")
    if labels is None and len(xs) <= 8:
      ax.set_xticks(xs, [f"{v:g}" for v in xs])
    ax.legend(fontsize=7)
    ax.set_xlabel(key)
    ax.set_ylabel(metric)
  fig.suptitle(f"{metric} over {len(rows)} finished trials")
  fig.tight_layout()
  tmp = f"{path}.tmp-{os.getpid()}.png"
  fig.savefig(tmp, dpi=100)
  plt.close(fig)
  os.replace(tmp, path)
  return path


def _best(rows: Sequence[Mapping[str, Any]], metric: str, mode: str) -> dict | None:
  scored = [r for r in rows if isinstance(r.get(metric), float) and math.isfinite(r[metric])]
  if not scored:
    return None
  pick = max if mode == "max" else min
  best = pick(scored, key=lambda r: r[metric])
  return {"trial": best["trial"], metric: best[metric]}


def write_summary(workdir: str, trials: Sequence[Trial], metric: str, mode: str, *,
                  started: int) -> dict[str, Any]:
  """Writes workdir/sweep_summary.{json,md} and sweep_<metric>.png; returns the summary.

  Args:
    workdir: the sweep's folder.
    trials: every trial of the sweep, in the sweep's order.
    metric: the evaluate result shown per trial ("" when no trial has any).
    mode: "max" or "min" (which trial is best).
    started: how many trials this run handed to Ray (0 when all were finished).
  """
  keys = _swept_keys(trials)
  override_keys = list(dict.fromkeys(k for t in trials for k in t.overrides))
  rows = [_row(t, metric) for t in trials]
  failed = [r for r in rows if r["status"] != "finished"]
  best = _best(rows, metric, mode)
  columns = ["trial", *override_keys, "status", metric, "attempts", "error", "workdir"]
  files = list(report.write_table(
      os.path.join(workdir, SUMMARY), rows, columns=columns,
      title=f"Sweep of {len(rows)} trials: {metric or 'no metric'}",
      notes=[f"{len(rows) - len(failed)} finished, {len(failed)} failed or not finished; "
             f"{started} started by the last run",
             f"best ({mode} {metric}): {best}" if best else "no finished trial with the metric"],
      extra={"metric": metric, "mode": mode, "swept": keys, "started": started,
             "finished": len(rows) - len(failed), "failed": len(failed), "best": best}))
  png = plot_metric(os.path.join(workdir, f"sweep_{re.sub(r'[^A-Za-z0-9._-]', '_', metric)}.png"),
                    rows, keys, metric) if metric else None
  files += [png] if png else []
  return {"rows": rows, "metric": metric, "mode": mode, "trials": len(rows),
          "finished": len(rows) - len(failed), "failed": len(failed), "started": started,
          "best": best, "files": files}


def closing_line(summary: Mapping[str, Any]) -> str:
  """The sweep's last line: how many trials finished and failed, the best, the files."""
  best = summary["best"]
  best_text = f"; best {best['trial']} ({summary['metric']}={best[summary['metric']]:.4f})" if (
      best) else ""
  return (f"sweep: {summary['trials']} trials, {summary['finished']} finished, "
          f"{summary['failed']} failed ({summary['started']} run now){best_text}; summary: "
          f"{', '.join(summary['files'])}")


# ---------------------------------------------------------------------------
# The program.


def _sweep(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {list(argv[1:])}")
  flag = FLAGS["config"]
  try:
    summary = run(flag.config_filename, FLAGS.workdir,
                  base_overrides=dict(getattr(flag, "override_values", {}) or {}),
                  address=FLAGS.address, metric=FLAGS.metric, num_cpus=FLAGS.num_cpus,
                  retries=FLAGS.retries)
  except (ValueError, FileNotFoundError) as e:
    if os.environ.get("JAXCONCEPTS_TRACEBACK"):
      raise
    sys.stderr.write(f"FATAL: {' '.join(str(e).split())}\n")
    sys.exit(2)
  for row in summary["rows"]:
    if row["status"] != "finished":
      logging.error("sweep: trial %s %s: %s", row["trial"], row["status"], row["error"])
  logging.info(closing_line(summary))
  if summary["failed"]:
    sys.exit(1)


_USAGE = """
  --address  a Ray cluster (auto, HOST:6379 or ray://HEAD:10001); default: an embedded local Ray
  --metric   the number of evaluate's result to tabulate and plot (default: the sweep's own)
  --num_cpus CPUs of the embedded Ray (default: all); each trial takes the sweep's resources
  --retries  times Ray retries a trial whose worker died (default 0)
"""


def _parse_flags(argv: list[str]) -> list[str]:
  """cli's flag parsing, with this program's flags added to --help."""
  if "--help" in argv or "-h" in argv or "--helpshort" in argv:
    sys.stdout.write(cli.usage(argv) + _USAGE)
    sys.exit(0)
  return cli.parse_flags(argv)


def main(argv: Sequence[str] | None = None) -> None:
  """`sweep.py`'s main: absl flags (cli's --config/--workdir, and this module's)."""
  app.run(_sweep, argv=list(argv) if argv is not None else None, flags_parser=_parse_flags)
