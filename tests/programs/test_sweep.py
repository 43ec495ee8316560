"""Sweeps on Ray Tune (`programs/sweep.py`): the declared sweep, trial names, the summary,
and end to end on an embedded local Ray (2 CPUs, no dashboard, shut down after each test)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxconcepts.programs import sweep
from jaxconcepts.programs import sweep_trial

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART = os.path.join(ROOT, "configs", "quickstart.py")
# The digits quickstart, tiny: 1 epoch on 128 images, one device (a trial is mostly JAX
# start-up and compilation); every trial of the sweep gets these.
TINY = {"data.max_train": 128, "data.max_test": 64, "eval_batch_size": 64, "num_devices": 1}


def _write_config(path, body: str) -> str:
  """A config module that reuses the quickstart's get_config (and maybe its get_sweep)."""
  path.write_text(f"import sys\nsys.path.insert(0, {ROOT!r})\nfrom configs import quickstart\n"
                  f"get_config = quickstart.get_config\n{body}")
  return str(path)


# ---------------------------------------------------------------------------
# Without Ray: the sweep's declaration, names, overrides and summary.


def test_quickstart_declares_four_trials_with_their_resources():
  config, s = sweep.load(QUICKSTART + ":epochs=1")
  assert config.num_epochs == 1
  assert len(s.trials) == 4 and s.metric == "test_accuracy" and s.mode == "max"
  assert s.resources == {"cpu": 1}
  assert {(t["seed"], t["optimizer.learning_rate"]) for t in s.trials} == {
      (0, 0.02), (0, 0.05), (1, 0.02), (1, 0.05)}


def test_trial_names_are_stable_readable_and_safe():
  a = sweep.trial_name({"seed": 1, "optimizer.learning_rate": 0.05})
  assert a == "optimizer.learning_rate=0.05,seed=1"
  assert a == sweep.trial_name({"optimizer.learning_rate": 0.05, "seed": 1})  # key order
  assert sweep.trial_name({}) == "base"
  assert "/" not in sweep.trial_name({"data.data_dir": "/x/y z"})
  long_a = sweep.trial_name({"data.data_dir": "a" * 200})
  long_b = sweep.trial_name({"data.data_dir": "a" * 199 + "b"})
  assert len(long_a) <= 100 and long_a != long_b


@pytest.mark.parametrize("raw, match", [
    ([], "non-empty list"),
    ({"trials": [{"seed": 1}], "resources": {"cpu": -1}}, "resources"),
    ({"trials": [{"seed": 1}], "mode": "best"}, "sweep mode"),
    ({"trials": [{"seed": 1}], "metrics": "x"}, "unknown entries"),
])
def test_malformed_sweeps_are_one_line_errors(raw, match):
  with pytest.raises(ValueError, match=match):
    sweep.parse_sweep(raw)


def test_unknown_or_mistyped_override_fails_before_any_trial(tmp_path):
  workdir = tmp_path / "sweep"
  bad_key = _write_config(tmp_path / "bad_key.py", "def get_sweep(arg=None):\n"
                          "  return [{'seed': 0}, {'optimizer.learning_rte': 0.1}]\n")
  with pytest.raises(ValueError, match=r"sweep trial 1 .*no key 'optimizer.learning_rte'.*"
                     r"did you mean \['optimizer.learning_rate'") as e:
    sweep.run(bad_key, str(workdir))
  assert "\n" not in str(e.value)
  bad_type = _write_config(tmp_path / "bad_type.py", "def get_sweep(arg=None):\n"
                           "  return [{'seed': 'one'}]\n")
  with pytest.raises(ValueError, match="sweep trial 0"):
    sweep.run(bad_type, str(workdir))
  with pytest.raises(ValueError, match="--config overrides: the config has no key 'epochs'"):
    sweep.run(QUICKSTART, str(workdir), base_overrides={"epochs": 1})
  assert not workdir.exists()  # nothing started


def test_duplicate_trials_and_a_config_without_sweep_are_refused(tmp_path):
  dup = _write_config(tmp_path / "dup.py", "def get_sweep(arg=None):\n"
                      "  return [{'seed': 0}, {'seed': 0}]\n")
  with pytest.raises(ValueError, match="same name 'seed=0'"):
    sweep.run(dup, str(tmp_path / "w"))
  none = _write_config(tmp_path / "none.py", "")
  with pytest.raises(ValueError, match="declares no sweep"):
    sweep.run(none, str(tmp_path / "w"))


def test_scalar_metrics_flatten_numbers_only():
  out = sweep_trial.scalar_metrics({"test_accuracy": 0.5, "per_class": [{"a": 1}],
                                    "stitch": {"acc": np.float32(0.25), "name": "x"},
                                    "ok": True})
  assert out == {"test_accuracy": 0.5, "stitch.acc": 0.25}


def _fake_trial(t: "sweep.Trial", status: str, accuracy: float | None, error=None) -> None:
  """Writes the files a trial leaves: its record, and its metrics when finished."""
  os.makedirs(t.workdir, exist_ok=True)
  with open(os.path.join(t.workdir, sweep_trial.TRIAL_FILE), "w") as f:
    json.dump({"overrides": t.overrides, "status": status, "attempts": 1, "error": error}, f)
  if accuracy is not None:
    with open(os.path.join(t.workdir, sweep_trial.METRICS_FILE), "w") as f:
      json.dump({"metrics": {"test_accuracy": accuracy},
                 "config": sweep_trial.workdir_lib.flatten(t.config)}, f)


def test_summary_rows_plot_and_finished_means_same_config(tmp_path):
  config, s = sweep.load(QUICKSTART)
  trials = sweep.plan(config, s, str(tmp_path))
  for t, acc in zip(trials[:3], (0.5, 0.7, 0.6)):
    _fake_trial(t, "finished", acc)
  _fake_trial(trials[3], "failed", None, error="optimizer.learning_rate must be > 0")
  summary = sweep.write_summary(str(tmp_path), trials, "test_accuracy", "max", started=4)
  assert (summary["finished"], summary["failed"]) == (3, 1)
  assert summary["best"] == {"trial": trials[1].name, "test_accuracy": 0.7}
  assert [r["status"] for r in summary["rows"]] == ["finished"] * 3 + ["failed"]
  saved = json.loads((tmp_path / "sweep_summary.json").read_text())
  assert saved["failed"] == 1 and saved["swept"] == ["seed", "optimizer.learning_rate"]
  assert saved["rows"][3]["error"] == "optimizer.learning_rate must be > 0"
  assert "| failed |" in (tmp_path / "sweep_summary.md").read_text()
  assert (tmp_path / "sweep_test_accuracy.png").stat().st_size > 1000
  assert "1 failed" in sweep.closing_line(summary)
  # The same trials with more epochs are no longer finished (they run again).
  longer = sweep_trial.apply_overrides(trials[0].config, {"num_epochs": 9})
  assert sweep_trial.is_finished(trials[0].workdir, trials[0].config)
  assert not sweep_trial.is_finished(trials[0].workdir, longer)
  # FREE fields (logging, checkpoint cadence) may differ.
  chatty = sweep_trial.apply_overrides(trials[0].config, {"log_every_steps": 1})
  assert sweep_trial.is_finished(trials[0].workdir, chatty)


# ---------------------------------------------------------------------------
# End to end on an embedded local Ray.


@pytest.fixture
def ray_guard():
  """Ray Tune is installed (the `sweep` extra, installed by CI); Ray is down after the test."""
  ray = pytest.importorskip("ray")
  pytest.importorskip("ray.tune")
  yield
  ray.shutdown()
  assert not ray.is_initialized()


def _attempts(summary) -> list[int]:
  return [r["attempts"] for r in summary["rows"]]


@pytest.mark.slow
def test_four_trial_quickstart_sweep_completes_and_a_rerun_starts_no_trial(tmp_path,
                                                                           ray_guard):
  workdir = str(tmp_path / "sweep")
  summary = sweep.run(QUICKSTART + ":epochs=1", workdir, base_overrides=TINY, num_cpus=2)
  assert (summary["trials"], summary["finished"], summary["failed"]) == (4, 4, 0)
  assert summary["started"] == 4 and _attempts(summary) == [1, 1, 1, 1]
  for row in summary["rows"]:
    assert 0.0 <= row["test_accuracy"] <= 1.0
    assert os.path.basename(row["workdir"]) == sweep.trial_name(
        {"seed": row["seed"], "optimizer.learning_rate": row["optimizer.learning_rate"]})
    assert os.path.exists(os.path.join(row["workdir"], "results", "classifier.json"))
  for name in ("sweep_summary.json", "sweep_summary.md", "sweep_test_accuracy.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  import ray  # pylint: disable=g-import-not-at-top
  assert not ray.is_initialized()  # the embedded Ray is shut down
  again = sweep.run(QUICKSTART + ":epochs=1", workdir, base_overrides=TINY, num_cpus=2)
  assert again["started"] == 0 and _attempts(again) == [1, 1, 1, 1]
  assert [r["test_accuracy"] for r in again["rows"]] == [
      r["test_accuracy"] for r in summary["rows"]]
  # A trial cut off after training (no evaluate results) runs again from its checkpoint.
  cut = summary["rows"][2]["workdir"]
  os.remove(os.path.join(cut, sweep_trial.METRICS_FILE))
  resumed = sweep.run(QUICKSTART + ":epochs=1", workdir, base_overrides=TINY, num_cpus=2)
  assert resumed["started"] == 1 and _attempts(resumed) == [1, 1, 2, 1]
  assert resumed["finished"] == 4
  with open(os.path.join(cut, sweep_trial.LOG_FILE)) as f:
    second_attempt = f.read().split("--- attempt 2")[1]
  assert "classifier: already trained (2 steps)" in second_attempt


@pytest.mark.slow
def test_a_failing_trial_is_reported_and_the_other_finishes(tmp_path, ray_guard):
  # Two trials (one round on 2 CPUs): the second one's training raises.
  config = _write_config(tmp_path / "one_fails.py", (
      "def get_sweep(arg=None):\n"
      "  s = quickstart.get_sweep(arg)\n"
      "  s['trials'] = s['trials'][:2]\n"
      "  s['trials'][1]['optimizer.learning_rate'] = -1.0  # train raises\n"
      "  return s\n"))
  workdir = tmp_path / "sweep"
  flags = [f"--config.{k}={v}" for k, v in TINY.items()]
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "sweep.py"), f"--config={config}:epochs=1",
       f"--workdir={workdir}", "--num_cpus=2", *flags],
      capture_output=True, text=True, timeout=900, cwd=str(tmp_path), check=False)
  last = proc.stderr.strip().splitlines()[-1]
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert "2 trials, 1 finished, 1 failed" in last, last
  saved = json.loads((workdir / "sweep_summary.json").read_text())
  status = {r["trial"]: (r["status"], r["error"]) for r in saved["rows"]}
  bad = "optimizer.learning_rate=-1.0,seed=0"
  assert status.pop(bad) == ("failed", "optimizer.learning_rate must be > 0, got -1.0")
  assert [s for s, _ in status.values()] == ["finished"]
  assert "FAILED: optimizer.learning_rate must be > 0" in proc.stderr
