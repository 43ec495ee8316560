"""The benchmark harness: every side in its own process, interleaved rounds, JSON out.

A workload (W1, W2, ...) has sides: ours (one or more variants) and its peers (each
thread setting a side of its own). A side is a function ``setup(ctx) -> (call, outputs)``
in a workload module: ``call()`` is what is timed, ``outputs(result)`` the arrays the
parent compares for agreement. For each round the parent starts one child process per
side, in the order ours, peer, ours, peer, ...; a child sets the side up (untimed), makes
``warmup`` calls (compilation, caches), times ``calls`` calls and reports the best, and
saves its outputs to an .npz. Across rounds the parent takes the median of the per-round
bests, records the load average before each child, checks agreement on the outputs of the
last round (same inputs, same run), and writes ``benchmarks/results/<workload>.json``.

Every child runs with ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` unset (this machine
sets them; they slow NumPy's products) and with the side's own thread variables. A
workload may have a ``prepare(ctx)`` step, run once in its own process before the rounds
(data files, calibration), whose JSON-able result every side and the agreement check see.

Child mode (used by the parent): ``python benchmarks/harness.py --child SPEC``.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS_DIR = os.path.join(HERE, "results")
UNFAIR_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclasses.dataclass(frozen=True)
class Side:
  """One timed implementation of a workload.

  Attributes:
    name: unique within the workload, e.g. "ours_hals" or "sklearn_cd_t1".
    fn: "module:function" of the setup function (module under benchmarks/).
    ours: True for jaxconcepts, False for a peer.
    threads: None (library default) or the thread count the child sets (the BLAS /
      OpenMP variables, and `torch.set_num_threads` in torch sides).
    kwargs: keyword arguments of the setup function (JSON-able).
    warmup: untimed calls before the timed ones (None: the workload's WARMUP).
    calls: timed calls per round (None: the workload's CALLS).
  """
  name: str
  fn: str
  ours: bool
  threads: int | None = None
  kwargs: dict = dataclasses.field(default_factory=dict)
  warmup: int | None = None
  calls: int | None = None


@dataclasses.dataclass
class Context:
  """What a side's setup and a workload's prepare / agree functions get."""
  quick: bool
  data_dir: str  # a scratch directory shared by prepare and the sides of one run
  prepared: dict  # prepare's result ({} without one)
  threads: int | None = None


def child_env(threads: int | None) -> dict[str, str]:
  """The environment of a child: unfair OpenBLAS variables unset, threads as asked."""
  env = {k: v for k, v in os.environ.items() if k not in UNFAIR_ENV}
  for var in _THREAD_VARS:
    env.pop(var, None)
    if threads is not None:
      env[var] = str(threads)
  env["PYTHONPATH"] = os.pathsep.join([HERE, ROOT, env.get("PYTHONPATH", "")])
  # Rounds 2.. reuse round 1's XLA compilations (compile time is not what is timed).
  env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
      tempfile.gettempdir(), "jaxconcepts-bench-xla-cache"))
  return env


def _resolve(fn: str) -> Callable[..., Any]:
  module, name = fn.split(":")
  return getattr(importlib.import_module(module), name)


def block(x: Any) -> Any:
  """Waits for JAX results in `x` (a no-op when JAX was never imported)."""
  if "jax" in sys.modules:
    import jax  # pylint: disable=g-import-not-at-top
    return jax.block_until_ready(x)
  return x


def run_child(spec: dict) -> dict:
  """Child process: set up one side, warm it up, time it, save its outputs."""
  side = Side(**spec["side"])
  ctx = Context(spec["quick"], spec["data_dir"], spec["prepared"], side.threads)
  if side.threads is not None and ("torch" in side.fn or "captum" in side.fn):
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(side.threads)
  t0 = time.perf_counter()
  call, outputs = _resolve(side.fn)(ctx, **side.kwargs)
  setup_s = time.perf_counter() - t0
  first = []
  for _ in range(spec["warmup"]):
    t0 = time.perf_counter()
    result = block(call())
    first.append(time.perf_counter() - t0)
  times = []
  for _ in range(spec["calls"]):
    t0 = time.perf_counter()
    result = block(call())
    times.append(time.perf_counter() - t0)
  out = outputs(result)
  np.savez(spec["outputs"], **{k: np.asarray(v) for k, v in out.items()})
  return {"best_s": min(times), "times_s": times, "warmup_s": first, "setup_s": setup_s}


def _spawn(spec: dict, threads: int | None, timeout: float) -> dict:
  """Runs one child; returns its report, or {"error": ...}."""
  cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
  try:
    proc = subprocess.run(cmd, env=child_env(threads), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, check=False)
  except subprocess.TimeoutExpired:
    return {"error": f"timed out after {timeout:.0f} s"}
  for line in reversed(proc.stdout.splitlines()):
    if line.startswith("{"):
      return json.loads(line)
  return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]}


def _prepare(workload, quick: bool, data_dir: str, timeout: float) -> dict:
  """Runs the workload's prepare(ctx) in its own process (unfair env unset)."""
  if not getattr(workload, "PREPARE", None):
    return {}
  spec = {"prepare": workload.PREPARE, "quick": quick, "data_dir": data_dir}
  rep = _spawn(spec, None, timeout)
  if "error" in rep:
    raise RuntimeError(f"{workload.NAME} prepare failed: {rep['error']}")
  return rep


def _interleaved(sides: list[Side]) -> list[Side]:
  """ours, peer, ours, peer, ...: ours and peers alternate within a round."""
  ours = [s for s in sides if s.ours]
  peers = [s for s in sides if not s.ours]
  order = []
  for i in range(max(len(ours), len(peers))):
    order += ours[i:i + 1] + peers[i:i + 1]
  return order


def _pick(value, default):
  return default if value is None else value


def run_workload(workload, *, quick: bool, rounds: int, data_dir: str,
                 results_dir: str = RESULTS_DIR, log=print) -> dict:
  """All rounds of one workload; writes and returns its JSON record.

  `workload` is a namespace with NAME, TITLE, EXPECTED_S, sides(quick, prepared) ->
  [Side], and optionally PREPARE ("module:function"), agree(ctx, outputs) -> dict,
  extra(record) -> dict (added to the summary), UNITS (name, count per call), WARMUP,
  CALLS, TIMEOUT_S.
  """
  os.makedirs(data_dir, exist_ok=True)
  timeout = getattr(workload, "TIMEOUT_S", 900)
  prepared = _prepare(workload, quick, data_dir, timeout)
  sides = workload.sides(quick, prepared)
  per_side = {s.name: {"side": dataclasses.asdict(s), "rounds": []} for s in sides}
  for r in range(rounds):
    for side in _interleaved(sides):
      out_file = os.path.join(data_dir, f"{workload.NAME}_{side.name}.npz")
      spec = {"side": dataclasses.asdict(side), "quick": quick, "data_dir": data_dir,
              "prepared": prepared, "outputs": out_file,
              "warmup": _pick(side.warmup, getattr(workload, "WARMUP", 1)),
              "calls": _pick(side.calls, getattr(workload, "CALLS", 2))}
      load = os.getloadavg()[0]
      rep = _spawn(spec, side.threads, timeout)
      rep["loadavg_1min_before"] = load
      per_side[side.name]["rounds"].append(rep)
      log(f"  {workload.NAME} round {r + 1}/{rounds} {side.name}: "
          + (f"{rep['best_s']:.4g} s" if "best_s" in rep else f"ERROR {rep['error']}")
          + f" (load {load:.1f})")
  outputs = {}
  for name in per_side:
    f = os.path.join(data_dir, f"{workload.NAME}_{name}.npz")
    if os.path.exists(f):
      outputs[name] = dict(np.load(f))
  for name, entry in per_side.items():
    bests = [x["best_s"] for x in entry["rounds"] if "best_s" in x]
    # A side that timed part of the work (the first pairs of a slow loop) says by how
    # much to scale its time to the whole workload.
    scale = float(outputs.get(name, {}).pop("_time_scale", 1.0))
    entry["time_scale"] = scale
    entry["median_s"] = statistics.median(bests) * scale if bests else None
  ctx = Context(quick, data_dir, prepared)
  record = {"workload": workload.NAME, "title": workload.TITLE, "quick": quick,
            "rounds": rounds, "prepared": prepared, "sides": per_side,
            "agreement": workload.agree(ctx, outputs) if hasattr(workload, "agree") else {},
            "machine": machine_info(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
  record["summary"] = summarize(record, getattr(workload, "UNITS", None))
  if hasattr(workload, "extra"):
    record["summary"].update(workload.extra(record))
  os.makedirs(results_dir, exist_ok=True)
  with open(os.path.join(results_dir, f"{workload.NAME}.json"), "w") as f:
    json.dump(record, f, indent=1, default=float)
  return record


def summarize(record: dict, units: tuple[str, float] | None) -> dict:
  """Best ours side, best peer side (lowest median) and the ratio peer / ours."""
  sides = record["sides"]
  done = {k: v for k, v in sides.items() if v["median_s"] is not None}
  ours = {k: v["median_s"] for k, v in done.items() if v["side"]["ours"]}
  peers = {k: v["median_s"] for k, v in done.items() if not v["side"]["ours"]}
  out = {}
  if ours:
    out["ours_best"] = min(ours, key=ours.get)
    out["ours_s"] = ours[out["ours_best"]]
  if peers:
    out["peer_best"] = min(peers, key=peers.get)
    out["peer_s"] = peers[out["peer_best"]]
  if ours and peers:
    out["ratio"] = out["peer_s"] / out["ours_s"]
  if units and ours:
    out["rate"] = f"{units[1] / out['ours_s']:.4g} {units[0]}/s"
  loads = [x["loadavg_1min_before"] for v in sides.values() for x in v["rounds"]]
  out["loadavg_range"] = [min(loads), max(loads)] if loads else None
  return out


def cpu_info(path: str = "/proc/cpuinfo") -> dict:
  """The CPU's model name and its widest vector ISA, from /proc/cpuinfo ({} elsewhere).

  Every record carries them because the ratios depend on the CPU as well as on its load
  (benchmarks/README.md, "The CPU matters"): a figure without its CPU cannot be compared
  with another.
  """
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
  except OSError:
    return {}
  model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
  flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
  have = set(flags.group(1).split()) if flags else set()
  isa = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in have), "unknown")
  return {"cpu_model": model.group(1).strip() if model else "unknown",
          "cpu_isa": "avx512" if isa == "avx512f" else isa}


def machine_info() -> dict:
  """CPU count, model and ISA, platform, load average."""
  import platform  # pylint: disable=g-import-not-at-top
  return {"platform": platform.platform(), "cpu_count": os.cpu_count(), **cpu_info(),
          "loadavg": os.getloadavg(), "python": sys.version.split()[0]}


def _main_child(arg: str) -> None:
  spec = json.loads(arg)
  if "prepare" in spec:
    ctx = Context(spec["quick"], spec["data_dir"], {})
    rep = _resolve(spec["prepare"])(ctx)
  else:
    rep = run_child(spec)
  print(json.dumps(rep, default=float))


if __name__ == "__main__":
  if len(sys.argv) == 3 and sys.argv[1] == "--child":
    _main_child(sys.argv[2])
  else:
    sys.exit("harness.py is run by run_all.py (python benchmarks/run_all.py --help)")
