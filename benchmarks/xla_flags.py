"""Screen XLA:CPU flag settings on our convolution workloads (VGG forward, fwd+bwd, W4).

Each setting runs in its own process (the flags are read once, at backend start), with the
harness's fair environment and the compilation cache off (a cached executable would hide
the setting). Settings are interleaved round by round; each process reports its best warm
call per workload. A screen, not a harness result: it times ours only, so compare settings
with one another, and take ratios against a peer from `run_all.py`.

  python benchmarks/xla_flags.py                 # the default settings below, 2 rounds
  python benchmarks/xla_flags.py --rounds 3 --setting="" \
      --setting="--xla_cpu_experimental_ynn_fusion_type="

The figures and what they decided are in benchmarks/README.md ("XLA:CPU flags").
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import harness

_ALL = "LIBRARY_FUSION_TYPE_"
SETTINGS = (
    "",  # the default: YNNPACK for individual convolutions and dots
    "--xla_cpu_experimental_ynn_fusion_type=" + ",".join(
        _ALL + t for t in ("INDIVIDUAL_CONVOLUTION", "INDIVIDUAL_DOT", "DOT", "ELTWISE",
                           "REDUCE")),
    "--xla_cpu_experimental_ynn_fusion_type=",  # YNNPACK off: Eigen
    ("--xla_cpu_experimental_ynn_fusion_type= --xla_cpu_use_onednn=true "
     f"--xla_cpu_experimental_onednn_fusion_type={_ALL}DOT,{_ALL}ELTWISE"),
)
WORKLOADS = {  # name -> (wl_nets function, kwargs, timed calls)
    "fwd": ("vgg_ours", {"backward": False}, 3),
    "fwdbwd": ("vgg_ours", {"backward": True}, 3),
    "w4": ("w4_ours", {}, 2),
}


def child(names: list[str], quick: bool) -> dict:
  """In the child: best warm call (s) of each named workload."""
  import time  # pylint: disable=g-import-not-at-top
  import wl_nets  # pylint: disable=g-import-not-at-top
  out = {}
  for name in names:
    fn, kwargs, calls = WORKLOADS[name]
    ctx = harness.Context(quick, os.path.join(tempfile.gettempdir(), "xla_flags"), {})
    call, _ = getattr(wl_nets, fn)(ctx, **kwargs)
    harness.block(call())
    times = []
    for _ in range(calls):
      t0 = time.perf_counter()
      harness.block(call())
      times.append(time.perf_counter() - t0)
    out[name] = round(min(times), 4)
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--setting", action="append", help="an XLA_FLAGS value (repeatable)")
  p.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--quick", action="store_true", help="tiny sizes: checks the script only")
  p.add_argument("--child", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.child is not None:
    print(json.dumps(child(args.child.split(","), args.quick)))
    return
  for r in range(args.rounds):
    for setting in args.setting or SETTINGS:
      env = harness.child_env(None)
      env.update(XLA_FLAGS=setting, JAX_ENABLE_COMPILATION_CACHE="false")
      load = os.getloadavg()[0]
      cmd = [sys.executable, os.path.abspath(__file__), "--child", args.only]
      proc = subprocess.run(cmd + (["--quick"] if args.quick else []), env=env,
                            capture_output=True, text=True, cwd=harness.ROOT, check=False)
      lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
      result = json.loads(lines[-1]) if lines else {"error": proc.stderr.strip()[-300:]}
      print(json.dumps({"round": r, "load": round(load, 2), "xla_flags": setting, **result}),
            flush=True)


if __name__ == "__main__":
  main()
