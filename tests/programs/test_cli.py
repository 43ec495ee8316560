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
])
def test_bad_command_lines_give_one_line_and_create_no_workdir(tmp_path, args, expected):
  proc = _run(*[a.replace("--workdir=w", f"--workdir={tmp_path}/w") for a in args])
  assert proc.returncode != 0
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and expected in lines[0], proc.stderr
  assert not os.path.exists(tmp_path / "w")


def test_usage_without_a_config_names_the_experiments():
  text = cli.usage(["train.py"])
  assert "configs/quickstart.py" in text and "keys of" not in text
