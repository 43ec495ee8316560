"""The train / evaluate command lines: --help, and one-line errors for missing flags and files."""

import os
import subprocess
import sys

import pytest

from jaxconcepts.programs import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args, cwd=ROOT):
  return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args], cwd=cwd,
                        capture_output=True, text=True, timeout=120)


def test_help_lists_the_flags_and_the_config_keys_and_exits_0():
  proc = _run("--config=configs/quickstart.py", "--help")
  assert proc.returncode == 0, proc.stderr
  for text in ("--config", "--workdir", "--config.num_epochs", "--config.data.source"):
    assert text in proc.stdout


@pytest.mark.parametrize("args, expected", [
    ((), "--config and --workdir are required"),
    (("--config=configs/quickstart.py",), "--workdir is required"),
    (("--config=configs/nope.py", "--workdir=w"), "no config file 'configs/nope.py'"),
    (("--config=configs/quickstart.py", "--workdir=w", "--config.num_epoch=2"),
     "the config has no key 'num_epoch'"),
    (("--config=configs/quickstart.py", "--workdir=w", "--config.seed=-1"),
     "seed must be an integer >= 0, got -1"),
    (("--config=configs/quickstart.py", "--workdir=w", "--config.log_every_steps=0"),
     "log_every_steps must be an integer >= 1, got 0"),
    (("--config=configs/quickstart.py", "--workdir=w", "--config.keep_checkpoints=0"),
     "keep_checkpoints must be an integer >= 1, got 0"),
])
def test_bad_command_lines_give_one_line_and_create_no_workdir(tmp_path, args, expected):
  proc = _run(*[a.replace("--workdir=w", f"--workdir={tmp_path}/w") for a in args])
  assert proc.returncode != 0
  assert "Traceback" not in proc.stderr, proc.stderr
  fatal = [line for line in proc.stderr.splitlines() if line.startswith("FATAL")]
  assert len(fatal) == 1 and expected in fatal[0], proc.stderr
  assert proc.stderr.strip().splitlines()[-1] == fatal[0]
  assert not os.path.exists(tmp_path / "w")


def test_usage_without_a_config_names_the_experiments():
  text = cli.usage(["train.py"])
  assert "configs/quickstart.py" in text and "keys of" not in text


@pytest.mark.slow
def test_a_first_run_is_quiet_prints_each_line_once_and_ends_with_where_results_are(tmp_path):
  common = ["--config=configs/quickstart.py", f"--workdir={tmp_path}/w", "--config.num_epochs=1",
            "--config.data.max_train=128", "--config.data.max_test=64",
            "--config.log_every_steps=1"]
  env = dict(os.environ)
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)
  procs = [subprocess.run([sys.executable, os.path.join(ROOT, script), *common], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
           for script in ("train.py", "evaluate.py")]
  for proc in procs:
    assert proc.returncode == 0, proc.stderr[-2000:]
  train_log, eval_log = (p.stderr for p in procs)
  for noise in ("oneDNN", "Unable to initialize backend", "absl::InitializeLog", "{'"):
    assert noise not in train_log + eval_log, noise
  messages = [line.split("] ", 1)[-1] for line in train_log.splitlines() if "] " in line]
  assert len(messages) == len(set(messages)), "a log line was printed twice"
  assert sum("step" in m and "/2 (epoch 1)" in m for m in messages) == 2  # one line per step
  assert train_log.strip().splitlines()[-1].endswith(
      "(next: python evaluate.py with the same --config and --workdir)")
  assert eval_log.strip().splitlines()[-1].endswith(os.path.join(str(tmp_path), "w", "results"))
