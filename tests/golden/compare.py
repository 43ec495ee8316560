"""Compares the tables of two program runs: the same values to float tolerance.

    python -m tests.golden.compare RESULTS_A RESULTS_B [--rtol 1e-3] [--atol 1e-4]

RESULTS_A and RESULTS_B are `results/` folders (or JSON files written by
`tests.golden.record`). Every table row is compared field by field: numbers to
`rtol`/`atol` (NaN equals NaN), everything else exactly. Timings and paths are
skipped. Exits 1 and lists the differences if there are any.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import sys
from typing import Any

SKIP = re.compile(r"(wall|seconds|time|_s$|path|file|dir)")


def load_tables(path: str) -> dict[str, Any]:
  """{stem: {table name: rows}} from a results folder or a recorded JSON file."""
  if os.path.isfile(path):
    with open(path) as f:
      return json.load(f)
  out = {}
  for fn in sorted(glob.glob(os.path.join(path, "*.json"))):
    with open(fn) as f:
      doc = json.load(f)
    stem = os.path.basename(fn)[:-5]
    if isinstance(doc, dict) and "tables" in doc:
      out[stem] = {name: t["rows"] for name, t in doc["tables"].items()}
    elif isinstance(doc, dict) and "rows" in doc:
      out[stem] = {"": doc["rows"]}
  return out


def _close(a: Any, b: Any, rtol: float, atol: float) -> bool:
  """Numbers to tolerance, lists and dicts element by element, the rest exactly."""
  if isinstance(a, dict) and isinstance(b, dict):
    return a.keys() == b.keys() and all(_close(a[k], b[k], rtol, atol) for k in a)
  if isinstance(a, list) and isinstance(b, list):
    return len(a) == len(b) and all(_close(x, y, rtol, atol) for x, y in zip(a, b))
  if isinstance(a, bool) or isinstance(b, bool) or not (
      isinstance(a, (int, float)) and isinstance(b, (int, float))):
    return a == b
  if math.isnan(a) or math.isnan(b):
    return math.isnan(a) and math.isnan(b)
  return abs(a - b) <= atol + rtol * abs(b)


def differences(a: dict, b: dict, rtol: float = 1e-3, atol: float = 1e-4) -> list[str]:
  """Every place where the tables `a` and `b` differ, as readable lines."""
  out = []
  for stem in sorted(set(a) | set(b)):
    if stem not in a or stem not in b:
      out.append(f"{stem}: only in {'b' if stem not in a else 'a'}")
      continue
    for name in sorted(set(a[stem]) | set(b[stem])):
      ra, rb = a[stem].get(name), b[stem].get(name)
      if ra is None or rb is None or len(ra) != len(rb):
        out.append(f"{stem}/{name}: rows {None if ra is None else len(ra)} vs "
                   f"{None if rb is None else len(rb)}")
        continue
      for i, (x, y) in enumerate(zip(ra, rb)):
        for key in sorted(set(x) | set(y)):
          if SKIP.search(key):
            continue
          if key not in x or key not in y:
            out.append(f"{stem}/{name}[{i}].{key}: missing on one side")
          elif not _close(x[key], y[key], rtol, atol):
            out.append(f"{stem}/{name}[{i}].{key}: {x[key]!r} vs {y[key]!r}")
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("a")
  p.add_argument("b")
  p.add_argument("--rtol", type=float, default=1e-3)
  p.add_argument("--atol", type=float, default=1e-4)
  args = p.parse_args(argv)
  a, b = load_tables(args.a), load_tables(args.b)
  diffs = differences(a, b, args.rtol, args.atol)
  n = sum(len(rows) for t in a.values() for rows in t.values())
  for line in diffs:
    print(line)
  print(f"{len(a)} result files, {n} rows compared: "
        + ("identical to tolerance" if not diffs else f"{len(diffs)} differences"))
  return 1 if diffs else 0


if __name__ == "__main__":
  sys.exit(main())
