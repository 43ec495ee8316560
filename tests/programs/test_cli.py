"""The train / evaluate command lines: --help, one-line errors for missing flags and files,
layer and class-list fields, and a full disk."""

import json
import os
import re
import subprocess
import sys

from absl import flags
from ml_collections import config_flags
import pytest

from jaxconcepts.programs import cli
from tests import envs
from tests import filesystems

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
  env = envs.with_fast_compiles()
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


# ---------------------------------------------------------------------------
# Layer fields take names or aliases, class lists take tuples; both are checked first.


def _parse(*args):
  """The config as train.py would parse `args` (in this process, no program run)."""
  argv = ["train.py", *args]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True,
                                  sys_argv=argv)
  fv(argv)
  return fv.config


def _fake_classifier(path, arch="vgg", num_classes=6, image_shape=(32, 32, 1)):
  """File surgery: a classifier workdir that passes the checks but holds no weights, so a
  run that got as far as restoring them would fail differently."""
  os.makedirs(os.path.join(path, "checkpoints", "classifier", "4"))
  open(os.path.join(path, "checkpoints", "classifier", "4", "_CHECKPOINT_METADATA"), "w").close()
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump({"classifier": {"arch": arch, "num_classes": num_classes,
                              "image_shape": list(image_shape)}}, f)


def test_layer_fields_take_a_name_or_an_alias_and_classes_a_tuple(tmp_path):
  c = _parse("--config=configs/cladec.py:quick", "--config.alpha_layer=conv3a",
             "--config.subsets.layer=-4", "--config.classifier_epochs_layer='conv2'",
             "--config.layers=(-1,conv3a)")
  cli._validate(c, str(tmp_path / "w"))
  assert (c.alpha_layer, c.subsets.layer, c.classifier_epochs_layer) == ("conv3a", -4, "conv2")
  assert c.layers == (-1, "conv3a")
  _fake_classifier(str(tmp_path / "clf"))
  c = _parse("--config=configs/concepts.py:quick", "--config.classes=(3,5)",
             "--config.layer=-4", f"--config.classifier_workdir={tmp_path}/clf")
  cli._validate(c, str(tmp_path / "w"))
  assert c.classes == (3, 5) and c.layer == -4
  assert _parse("--config=configs/concepts.py", "--config.classes=3:5").classes == "3:5"


@pytest.mark.parametrize("args, expected", [
    (("--config.alpha_layer=conv9",), "alpha_layer: unknown layer 'conv9' for ClaDecVGG"),
    (("--config.subsets.layer=-7",), "subsets.layer: unknown layer -7"),
    (("--config.layers=(-1,conv9)",), "layers: unknown layer 'conv9'"),
    (("--config.alpha_layer=1.5",), "alpha_layer must be a layer name (e.g. 'conv3a') or alias"),
])
def test_a_bad_cladec_layer_is_one_line_before_any_work(tmp_path, args, expected):
  c = _parse("--config=configs/cladec.py:quick", *args)
  with pytest.raises(ValueError, match=re.escape(expected)):
    cli._validate(c, str(tmp_path / "w"))


@pytest.mark.parametrize("args, expected", [
    (("--config.layer=conv9",), "unknown layer 'conv9' for ClaDecVGG"),
    (("--config.classes=(3,12)",), "classes [12] are out of range [0, 6)"),
    (("--config.classes=(3,3)",), "classes has duplicates: (3, 3)"),
    (("--config.classes=(3,-1)",), "classes entries must be an integer >= 0, got -1"),
    (("--config.n_concepts=0",), "n_concepts must be an integer >= 1, got 0"),
    (("--config.n_concepts=999",), "n_concepts=999 must lie in [1, 256]"),
])
def test_a_bad_concepts_value_is_one_line_before_the_classifier_is_restored(
    tmp_path, args, expected):
  _fake_classifier(str(tmp_path / "clf"))
  c = _parse("--config=configs/concepts.py:quick", f"--config.classifier_workdir={tmp_path}/clf",
             *args)
  with pytest.raises(ValueError, match=re.escape(expected)):
    cli._validate(c, str(tmp_path / "w"))


def test_the_concepts_program_names_a_bad_layer_in_one_line_and_creates_no_workdir(tmp_path):
  _fake_classifier(str(tmp_path / "clf"))
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "evaluate.py"), "--config=configs/concepts.py:quick",
       f"--config.classifier_workdir={tmp_path}/clf", f"--workdir={tmp_path}/w",
       "--config.layer=conv9"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith(
      "FATAL: unknown layer 'conv9' for ClaDecVGG; valid layers:")
  assert not os.path.exists(tmp_path / "w")


# ---------------------------------------------------------------------------
# A full disk during training: one line, nothing half-written, and the rerun resumes.


@pytest.mark.slow
def test_a_full_disk_stops_training_with_one_line_and_the_rerun_resumes(tmp_path):
  disk = str(tmp_path / "disk")
  args = [sys.executable, os.path.join(ROOT, "train.py"), "--config=configs/quickstart.py",
          f"--workdir={disk}/w", "--config.num_epochs=1", "--config.data.max_train=256",
          "--config.data.max_test=128", "--config.checkpoint_every_steps=2"]
  # One checkpoint of the quickstart VGG is about 37 MB: 50 MB holds step 2, not step 4.
  with filesystems.small_tmpfs(disk, 50 * 2**20) as mounted:
    print("MODE", "tmpfs" if mounted else "simulated")
    if mounted:
      first = subprocess.run(args, cwd=ROOT, env=envs.with_fast_compiles(), capture_output=True,
                             text=True, timeout=600)
    else:  # where mounting is refused: ENOSPC from the start, in the program's own process
      boot = ("import runpy, sys; sys.path.insert(0, sys.argv[1]); from tests import filesystems;"
              "cm = filesystems.simulated_full_disk(sys.argv[2]); cm.__enter__(); sys.argv = sys.argv[3:];"
              "runpy.run_path(sys.argv[0], run_name='__main__')")
      first = subprocess.run([sys.executable, "-c", boot, ROOT, disk, *args[1:]], cwd=ROOT,
                             env=envs.with_fast_compiles(), capture_output=True, text=True, timeout=600)
    assert first.returncode == 2 and "Traceback" not in first.stderr, first.stderr[-3000:]
    last = first.stderr.strip().splitlines()[-1]
    assert last.startswith(f"FATAL: disk full: cannot write {disk}"), last
    assert "No space left on device" in last
    ckpts = os.path.join(disk, "w", "checkpoints", "classifier")
    if not mounted:
      return  # nothing could be written at all; the resume needs a real disk
    assert os.listdir(ckpts) == ["2"] and "[last complete checkpoint: step 2]" in last
    filesystems.resize(disk, 200 * 2**20)
    second = subprocess.run(args, cwd=ROOT, env=envs.with_fast_compiles(), capture_output=True,
                            text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from step 2 of 4" in second.stderr
    assert os.listdir(ckpts) == ["4"]
