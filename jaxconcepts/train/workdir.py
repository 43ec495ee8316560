"""A workdir belongs to one run configuration and one live process.

`claim(workdir, config, program)` is called by `train.py` and `evaluate.py`
before any work:

* The first call records the config (flattened) in ``WORKDIR/run.json``. A
  later call whose config differs in a field that changes results is refused
  with one line naming the fields and how to start a fresh workdir. Fields
  that change nothing but speed or logging (`FREE`) may differ; `num_epochs`
  may grow, to extend a run. `evaluate` may also change its evaluation-only
  fields (`EVALUATE_ONLY`, e.g. the occlusion study's settings).
* A lock file ``WORKDIR/.lock`` holding the process id refuses a second live
  process in the same workdir. A lock left by a dead process (same host) is
  taken over, and the log says so.
* A workdir that is a file, or cannot be written, is an error before any work.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
from typing import Any

from absl import logging

from jaxconcepts import utils

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
# Fields that change no result: logging, checkpoint cadence, batch sizes of inference.
FREE = ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints", "eval_batch_size",
        "num_devices", "crop_batch_size", "shift_batch_size", "shift_directions_per_call",
        "attribution_batch_size", "class_chunk")
# Fields that may grow between runs (training then continues from the last checkpoint).
GROW = ("num_epochs",)
# Field prefixes that only `evaluate` reads.
EVALUATE_ONLY = ("occlusion.", "figures.")


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
  """{"data.source": "digits", ...}: every leaf of a ConfigDict, JSON-normalised."""
  out: dict[str, Any] = {}
  for key, value in config.items():
    if hasattr(value, "items"):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = json.loads(json.dumps(value, default=str))
  return out


def differing_fields(recorded: dict[str, Any], config: dict[str, Any], *,
                     evaluating: bool) -> list[str]:
  """The fields whose change would mix two configurations in one workdir.

  Args:
    recorded: the flattened config the workdir was first used with.
    config: the flattened config of this run.
    evaluating: whether this run is `evaluate` (its evaluation-only fields are free).

  Returns:
    Sorted field names, each as "name: recorded -> new".
  """
  out = []
  for key in sorted(set(recorded) | set(config)):
    old, new = recorded.get(key), config.get(key)
    if old == new or key in FREE or (evaluating and key.startswith(EVALUATE_ONLY)):
      continue
    if key in GROW and isinstance(old, int) and isinstance(new, int) and new >= old:
      continue
    out.append(f"{key}: {old!r} -> {new!r}")
  return out


def _nearest_existing(path: str) -> str:
  probe = os.path.abspath(path)
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  return probe


def _check_folder(workdir: str) -> None:
  """One line if `workdir` is a file, lies under a file, or cannot be written.

  Writability is tried, not asked (`os.access` says yes to root even on a
  read-only filesystem): a probe file is created and removed in the workdir, or
  in its nearest existing parent.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f"workdir {workdir!r} is a file; give a folder (it is created if missing)")
  probe = _nearest_existing(workdir)
  if not os.path.isdir(probe):
    raise ValueError(f"workdir {workdir!r} cannot be created: {probe!r} is a file, not a folder")
  path = os.path.join(probe, f".write-probe-{os.getpid()}")
  try:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    os.remove(path)
  except OSError as e:
    if utils.is_disk_full(e):
      raise utils.disk_full_error(probe) from None
    raise ValueError(f"workdir {workdir!r} cannot be written ({e.strerror} on {probe!r}); "
                     "give a folder you can write to") from None


def check_config(workdir: str, config: Any, program: str) -> None:
  """Raises ValueError if `workdir` was first used with a different configuration."""
  path = os.path.join(workdir, RUN_FILE)
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      recorded = json.load(f)["config"]
  except (OSError, ValueError, KeyError) as e:
    raise ValueError(f"{path} is damaged ({type(e).__name__}); delete it to reuse the workdir "
                     f"with this config") from None
  diff = differing_fields(recorded, flatten(config), evaluating=program == "evaluate")
  if diff:
    raise ValueError(
        f"workdir {workdir!r} belongs to another configuration (differs in {'; '.join(diff)}); "
        f"use a fresh --workdir, or rerun with the recorded values ({path})")


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def acquire_lock(workdir: str) -> str:
  """Creates WORKDIR/.lock for this process; refuses a live holder, takes over a dead one.

  Returns:
    The lock's path (released at exit).
  """
  path = os.path.join(workdir, LOCK_FILE)
  me = {"pid": os.getpid(), "host": socket.gethostname()}
  for _ in range(2):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      holder = _read_lock(path)
      if holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
        return path  # this process holds it already (programs called one after another)
      if holder and holder.get("host") == me["host"] and not _pid_alive(int(holder["pid"])):
        logging.warning("workdir %s: taking over a stale lock of process %s (no longer running)",
                        workdir, holder["pid"])
        os.remove(path)
        continue
      raise ValueError(f"workdir {workdir!r} is in use by process {holder.get('pid', '?')} on "
                       f"{holder.get('host', '?')}; wait for it or use another --workdir "
                       f"(delete {path} if that process is gone)") from None
    with os.fdopen(fd, "w") as f:
      json.dump(me, f)
    atexit.register(release_lock, path)
    return path
  raise ValueError(f"could not take the lock {path}")


def _read_lock(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def release_lock(path: str) -> None:
  """Removes the lock if this process holds it."""
  if _read_lock(path).get("pid") == os.getpid():
    try:
      os.remove(path)
    except FileNotFoundError:
      pass


def claim(workdir: str, config: Any, program: str) -> str:
  """Checks, then takes `workdir` for this process and configuration (see the module doc).

  Args:
    workdir: the run's folder; created if missing, only after every check passed.
    config: the run's whole ConfigDict.
    program: "train" or "evaluate".

  Returns:
    The lock's path: pass it to `release_lock` when the program ends (it is also
    released at exit).

  Raises:
    ValueError: one line, for a file or unwritable workdir, another configuration, or a
      second live process.
  """
  utils.check_choice("program", program, ("train", "evaluate"))
  _check_folder(workdir)
  check_config(workdir, config, program)
  os.makedirs(workdir, exist_ok=True)
  lock = acquire_lock(workdir)
  path = os.path.join(workdir, RUN_FILE)
  if not os.path.exists(path):
    utils.write_json_atomic(path, {"task": config.get("task"), "first_program": program,
                                   "config": flatten(config)})
  return lock
