"""A workdir belongs to one configuration and one live process, and must be writable."""

import contextlib
import errno
import json
import os
import subprocess
import sys

import ml_collections
import pytest

from jaxconcepts.train import workdir as workdir_lib
from tests import filesystems


def _config(**over):
  c = ml_collections.ConfigDict(dict(task="classifier", seed=0, num_epochs=2, batch_size=64,
                                     log_every_steps=10, data=dict(source="digits", max_test=None),
                                     occlusion=dict(n_images=10)))
  for k, v in over.items():
    c[k] = v
  return c


def test_first_claim_records_the_config_and_a_differing_one_is_refused(tmp_path):
  wd = str(tmp_path / "w")
  lock = workdir_lib.claim(wd, _config(), "train")
  workdir_lib.release_lock(lock)
  with open(os.path.join(wd, "run.json")) as f:
    assert json.load(f)["config"]["batch_size"] == 64
  with pytest.raises(ValueError, match=r"differs in batch_size: 64 -> 32.*fresh --workdir"):
    workdir_lib.claim(wd, _config(batch_size=32), "train")
  bad = _config()
  bad.data.source = "idx"
  with pytest.raises(ValueError, match="data.source: 'digits' -> 'idx'"):
    workdir_lib.claim(wd, bad, "evaluate")


def test_free_fields_may_differ_num_epochs_may_grow_and_evaluate_only_fields_are_free(tmp_path):
  wd = str(tmp_path / "w")
  workdir_lib.release_lock(workdir_lib.claim(wd, _config(), "train"))
  workdir_lib.release_lock(workdir_lib.claim(wd, _config(log_every_steps=1, num_epochs=4),
                                             "train"))
  with pytest.raises(ValueError, match="num_epochs: 2 -> 1"):
    workdir_lib.claim(wd, _config(num_epochs=1), "train")
  other = _config()
  other.occlusion.n_images = 99
  workdir_lib.release_lock(workdir_lib.claim(wd, other, "evaluate"))
  with pytest.raises(ValueError, match="occlusion.n_images"):
    workdir_lib.claim(wd, other, "train")


def test_a_live_process_holds_the_workdir_and_a_dead_ones_lock_is_taken_over(tmp_path):
  wd = str(tmp_path / "w")
  os.makedirs(wd)
  lock = os.path.join(wd, ".lock")
  live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    with open(lock, "w") as f:
      json.dump({"pid": live.pid, "host": os.uname().nodename}, f)
    with pytest.raises(ValueError, match=f"in use by process {live.pid}"):
      workdir_lib.claim(wd, _config(), "train")
  finally:
    live.kill()
    live.wait()
  # The holder is gone now: its lock is stale and is taken over.
  assert workdir_lib.claim(wd, _config(), "train") == lock
  with open(lock) as f:
    assert json.load(f)["pid"] == os.getpid()
  workdir_lib.release_lock(lock)
  assert not os.path.exists(lock)


def test_a_file_and_a_damaged_record_are_one_line_errors(tmp_path):
  afile = tmp_path / "f"
  afile.write_text("x")
  with pytest.raises(ValueError, match="is a file"):
    workdir_lib.claim(str(afile), _config(), "train")
  wd = tmp_path / "w"
  wd.mkdir()
  (wd / "run.json").write_text('{"config": {"seed"')
  with pytest.raises(ValueError, match=r"run.json is damaged.*delete it"):
    workdir_lib.claim(str(wd), _config(), "train")


def test_a_workdir_under_a_file_is_one_line(tmp_path):
  afile = tmp_path / "f"
  afile.write_text("x")
  with pytest.raises(ValueError, match=r"cannot be created: '.*/f' is a file, not a folder"):
    workdir_lib.claim(str(afile / "run"), _config(), "train")


def test_a_read_only_workdir_is_one_line_before_any_work(tmp_path):
  """Root ignores permission bits (`os.access` says yes), so the filesystem itself is
  read-only: a tmpfs remounted ro (or, where mounting is refused, EROFS simulated)."""
  disk = str(tmp_path / "disk")
  wd = os.path.join(disk, "w")
  with filesystems.small_tmpfs(disk, 1 << 20) as mounted, contextlib.ExitStack() as stack:
    print("MODE", "tmpfs" if mounted else "simulated")
    workdir_lib.release_lock(workdir_lib.claim(wd, _config(), "train"))
    if mounted:
      filesystems.remount_read_only(disk)
    else:
      stack.enter_context(filesystems.simulated_full_disk(disk, errno.EROFS))
    for program, where in (("evaluate", wd), ("train", os.path.join(wd, "new"))):
      with pytest.raises(ValueError, match=r"cannot be written \(Read-only file system on "):
        workdir_lib.claim(where, _config(), program)
    assert sorted(os.listdir(wd)) == ["run.json"]
