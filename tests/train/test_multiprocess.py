"""Two processes with four CPU devices each train like one process with eight (jax.distributed).

Each run is `train.py` on the digits quickstart (a few steps), started as real
processes: the pair joined by a coordinator on localhost, collectives over
gloo (`train.distributed.initialize`), one global mesh over the 8 devices,
each process feeding its rows of every batch.

One pair is killed mid-run (one process SIGKILLed, its partner ended as a
scheduler would) and relaunched; the run must resume and, over all its steps
(those before the kill and those after the relaunch, both computed by two
processes), give the single process's per-step losses
(`metrics/classifier.json`, one entry per step with log_every_steps=1) and
final parameters. One pair run rather than two keeps the test small for CI.
"""
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxconcepts.programs import classifier
from jaxconcepts.train import distributed

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOTAL_STEPS = 6  # 96 images / batch 32 = 3 steps per epoch, 2 epochs


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _cmd(workdir, *extra):
  return [sys.executable, os.path.join(ROOT, "train.py"),
          f"--config={os.path.join(ROOT, 'configs', 'quickstart.py')}:epochs=2",
          f"--workdir={workdir}", "--config.data.max_train=96", "--config.data.max_test=64",
          "--config.batch_size=32", "--config.eval_batch_size=64",
          "--config.checkpoint_every_steps=2", "--config.log_every_steps=1",
          "--config.eval_every_epochs=2", *extra]


def _env(devices):
  env = dict(os.environ)
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  return env


def _start_pair(workdir, log_dir):
  """Two train.py processes of one run, four CPU devices each; returns the Popen objects."""
  port = _free_port()
  procs = []
  for pid in range(2):
    log = open(os.path.join(log_dir, f"{os.path.basename(workdir)}-{pid}-{time.time()}.log"),
               "w")
    procs.append(subprocess.Popen(
        _cmd(workdir, f"--coordinator_address=localhost:{port}", "--num_processes=2",
             f"--process_id={pid}"), env=_env(4), stdout=log, stderr=subprocess.STDOUT))
  return procs


def _wait(procs, log_dir, timeout=600):
  for p in procs:
    rc = p.wait(timeout=timeout)
    if rc:
      logs = "".join(open(f).read()[-3000:] for f in sorted(glob.glob(f"{log_dir}/*.log")))
      raise AssertionError(f"a process exited with {rc}:\n{logs}")


def _steps(path):
  with open(os.path.join(path, "metrics", "classifier.json")) as f:
    return json.load(f)["steps"]


def _checkpoints(workdir):
  return sorted(int(os.path.basename(d)) for d in
                glob.glob(os.path.join(workdir, "checkpoints", "classifier", "*"))
                if os.path.basename(d).isdigit())


def _assert_same_run(reference, other):
  ref_steps, steps = _steps(reference), _steps(other)
  assert [s["step"] for s in ref_steps] == [s["step"] for s in steps] == list(
      range(1, TOTAL_STEPS + 1))
  np.testing.assert_allclose([s["train_loss"] for s in steps],
                             [s["train_loss"] for s in ref_steps], rtol=1e-5, atol=1e-5)
  _, v_ref, _, info_ref = classifier.restore_classifier(str(reference))
  _, v_other, _, info_other = classifier.restore_classifier(str(other))
  assert info_ref["step"] == info_other["step"] == TOTAL_STEPS
  for a, b in zip(jax.tree.leaves(v_ref), jax.tree.leaves(v_other)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_two_processes_killed_and_relaunched_train_like_one_with_eight_devices(tmp_path):
  logs = tmp_path / "logs"
  logs.mkdir()
  one, pair = tmp_path / "one", tmp_path / "pair"
  subprocess.run(_cmd(one), check=True, env=_env(8), capture_output=True)
  procs = _start_pair(pair, logs)
  deadline = time.time() + 300
  while time.time() < deadline and procs[1].poll() is None and not _checkpoints(pair):
    time.sleep(0.05)
  assert procs[1].poll() is None, "the run ended before it could be killed"
  procs[1].send_signal(signal.SIGKILL)  # one process dies; its partner blocks in a collective
  procs[1].wait()
  try:
    procs[0].wait(timeout=5)
  except subprocess.TimeoutExpired:
    procs[0].send_signal(signal.SIGKILL)  # as a cluster scheduler would end the job
    procs[0].wait()
  done = _checkpoints(pair)
  assert done and done[-1] < TOTAL_STEPS, f"expected a partial run, found checkpoints {done}"
  _wait(_start_pair(pair, logs), logs)
  assert "resumed from step" in open(sorted(glob.glob(f"{logs}/pair-0-*.log"))[-1]).read()
  _assert_same_run(one, pair)
  assert not glob.glob(str(pair / "results" / "*")) and os.path.exists(pair / "config.json")
  # TensorBoard: one events file per launch of process 0, none from process 1.
  assert len(glob.glob(str(pair / "tensorboard" / "classifier" / "events.out.tfevents*"))) == 2


# ---------------------------------------------------------------------------
# The helpers, in this (single) process with its 8 host devices.


@pytest.mark.parametrize("args,match", [
    (("localhost:1234", None, 0), r"missing --num_processes"),
    (("localhost", 2, 0), r"coordinator_address must be host:port, got 'localhost'"),
    (("localhost:1234", 0, 0), r"num_processes must be an integer >= 1, got 0"),
    (("localhost:1234", 2, 2), r"process_id must lie in \[0, 2\), got 2"),
])
def test_bad_multi_host_settings_are_one_line_errors(args, match):
  with pytest.raises(ValueError, match=match):
    distributed.initialize(*args)


def test_without_settings_initialize_does_nothing():
  assert distributed.initialize() is False
  assert jax.process_count() == 1 and distributed.is_main_process()


def test_one_process_mesh_and_rows():
  mesh = distributed.global_mesh()
  assert mesh.devices.size == 8 and mesh.axis_names == ("data",)
  assert distributed.local_rows(mesh, 16) == slice(0, 16)
  assert distributed.global_mesh(2).devices.size == 2
  with pytest.raises(ValueError, match=r"num_devices must be in \[1, 8\], got 9"):
    distributed.global_mesh(9)
  with pytest.raises(ValueError, match="multiple of the 8 devices in the mesh, got 12"):
    distributed.local_rows(mesh, 12)


def test_device_batches_keep_the_next_batch_in_flight():
  mesh = distributed.global_mesh()
  pulled = []

  def source():
    for i in range(4):
      pulled.append(i)
      yield {"image": np.full((8, 2), i, np.float32)}

  seen = []
  for i, batch in enumerate(distributed.device_batches(source(), mesh, 8)):
    assert pulled[-1] == min(i + 1, 3)  # batch i + 1 is on its way while i is consumed
    assert len(batch["image"].sharding.device_set) == 8
    seen.append(float(batch["image"][0, 0]))
  assert seen == [0.0, 1.0, 2.0, 3.0]
