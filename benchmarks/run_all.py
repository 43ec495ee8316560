"""Runs the side-by-side benchmarks: `python benchmarks/run_all.py [--quick] [--only W1,W3]`.

Each workload's sides run in their own processes in interleaved rounds (`harness.py`);
results go to benchmarks/results/<workload>.json and the results table of
benchmarks/README.md is regenerated from them (`make_table.py`). Run the full set on a
quiet machine; `--quick` uses tiny sizes and checks the harness only (its figures mean
nothing and go to benchmarks/results/quick/, not to the README).
"""
import argparse
import importlib
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))

import functools  # pylint: disable=wrong-import-position,g-bad-import-order

import harness  # pylint: disable=wrong-import-position
import make_table  # pylint: disable=wrong-import-position

MODULES = ("wl_nmf", "wl_nets")
print = functools.partial(print, flush=True)  # pylint: disable=redefined-builtin


def workloads() -> dict:
  """{name: workload} in run order."""
  out = {}
  for m in MODULES:
    for w in importlib.import_module(m).WORKLOADS:
      out[w.NAME] = w
  return out


def main(argv=None):
  all_w = workloads()
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness")
  p.add_argument("--only", default="", help=f"comma-separated subset of {','.join(all_w)}")
  p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (>= 3 for figures)")
  args = p.parse_args(argv)
  names = [n for n in args.only.split(",") if n] or list(all_w)
  unknown = [n for n in names if n not in all_w]
  if unknown:
    p.error(f"unknown workload(s) {unknown}; expected some of {list(all_w)}")
  expected = sum(all_w[n].EXPECTED_S for n in names)
  print(f"workloads {names}, {args.rounds} rounds; expected duration on a quiet 2-core "
        f"machine: {'about a minute per workload' if args.quick else f'~{expected / 60:.0f} min'}"
        f"; load average now {os.getloadavg()[0]:.1f}")
  out_dir = os.path.join(harness.RESULTS_DIR, "quick") if args.quick else harness.RESULTS_DIR
  t0 = time.time()
  with tempfile.TemporaryDirectory(prefix="jaxconcepts-bench-") as data_dir:
    for n in names:
      t = time.time()
      rec = harness.run_workload(all_w[n], quick=args.quick, rounds=args.rounds,
                                 data_dir=data_dir, results_dir=out_dir, log=print)
      print(f"{n}: {rec['summary']} ({time.time() - t:.0f} s)")
  print(f"done in {time.time() - t0:.0f} s")
  if not args.quick:
    make_table.main([])


if __name__ == "__main__":
  main()
