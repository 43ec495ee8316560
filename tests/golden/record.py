"""Records the tables of small runs of the three programs, to check that a change keeps them.

    python -m tests.golden.record OUT.json [--repo ROOT]

Runs, through `train.py` / `evaluate.py` of the checkout at ROOT (default: this
one), in a temporary folder:

1. the quickstart classifier on digits (1 epoch, 256 / 128 images) and its
   evaluation;
2. the quick concepts program on that classifier;
3. a trimmed quick ClaDec program (the planted set, two layers, one epoch per stage).

and writes every results table to OUT.json ({program/stem: {table: rows}}).
`tests/programs/test_golden.py` reruns the same with the current code and
compares with `tests/golden/quick_programs*.json` (one recording per CPU seen;
the ClaDec entries differ across CPUs by rounding), the first recorded before
the package was restructured. XLA runs on one CPU device at -O0 (fast compiles); the
recording and the check use the same flags.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

from tests.golden import compare

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# One recording per CPU seen (the ClaDec entries differ across CPUs by rounding).
GOLDENS = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                        "quick_programs*.json")))
PROGRAMS = ("classifier", "concepts", "cladec")

CLASSIFIER = ["--config=configs/quickstart.py", "--config.num_epochs=1",
              "--config.data.max_train=256", "--config.data.max_test=128"]
CONCEPTS = ["--config=configs/concepts.py:quick", "--config.max_images=160",
            "--config.n_images_per_class=8", "--config.n_samples=2", "--config.epochs=20"]
# The quick ClaDec config (the planted set) trimmed to one vector and one spatial layer (also
# the end-to-end test's); the neuron subsets at the spatial one (the logits have 6 channels).
CLADEC_OVERRIDES = [
    "--config.layers=(-1, -5)", "--config.alpha_layer=-1", "--config.alphas=(0.5, 0.0)",
    "--config.subsets.layer=-5", "--config.subsets.nested=(4,)",
    "--config.subsets.disjoint_size=4", "--config.subsets.disjoint_count=2",
    "--config.classifier_epochs=(0, 1)", "--config.classifier_epochs_layer=-1",
    "--config.occlusion.layers=(-1, -5)", "--config.occlusion.n_images=32",
    "--config.figures.n_images=3", "--config.data.max_train=256", "--config.data.max_test=64",
    "--config.eval_batch_size=64", "--config.classifier.num_epochs=2",
    "--config.decoder_epochs=1", "--config.refae_epochs=1",
    "--config.eval_classifier.num_epochs=1",
]
CLADEC = ["--config=configs/cladec.py:quick", *CLADEC_OVERRIDES]


def run(root: str, script: str, args: list[str], workdir: str) -> None:
  """Runs `script` of the checkout at `root` with the recording's flags; raises if it fails."""
  env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="2")
  # Exactly these flags, whatever the caller's environment: one CPU device (the test suite forces
  # eight, which changes the data-parallel reductions) and fast -O0 compiles.
  env["XLA_FLAGS"] = "--xla_backend_optimization_level=0"
  cmd = [sys.executable, os.path.join(root, script), *args, f"--workdir={workdir}"]
  proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
  if proc.returncode:
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")


def tables(program: str, workdir: str) -> dict:
  """{program/stem: {table name: rows}} of the results a run wrote to `workdir`."""
  found = compare.load_tables(os.path.join(workdir, "results"))
  return {f"{program}/{stem}": rows for stem, rows in found.items()}


def record(root: str = ROOT, programs: tuple[str, ...] = PROGRAMS) -> dict:
  """Runs the small programs from the checkout at `root`; returns their tables.

  `programs` is a subset of `PROGRAMS`; the concepts run needs the classifier's.
  """
  out = {}
  with tempfile.TemporaryDirectory() as tmp:
    clf, con, cla = (os.path.join(tmp, n) for n in PROGRAMS)
    if "classifier" in programs or "concepts" in programs:
      run(root, "train.py", CLASSIFIER, clf)
      run(root, "evaluate.py", CLASSIFIER, clf)
      out.update(tables("classifier", clf))
    if "concepts" in programs:
      run(root, "evaluate.py", CONCEPTS + [f"--config.classifier_workdir={clf}"], con)
      out.update(tables("concepts", con))
    if "cladec" in programs:
      run(root, "train.py", CLADEC, cla)
      run(root, "evaluate.py", CLADEC, cla)
      out.update(tables("cladec", cla))
  return out


def closest_recording(actual: dict) -> tuple[str, list[str]]:
  """The recording in `GOLDENS` nearest to `actual`, and where they differ.

  Each recording is restricted to the programs `actual` holds (their `program/`
  prefixes), so a run of some of the programs is compared with their entries only.
  """
  programs = {key.split("/")[0] for key in actual}
  diffs = {}
  for path in GOLDENS:
    with open(path) as f:
      expected = json.load(f)
    expected = {k: v for k, v in expected.items() if k.split("/")[0] in programs}
    diffs[os.path.basename(path)] = compare.differences(expected, actual)
  closest = min(diffs, key=lambda k: len(diffs[k]))
  return closest, diffs[closest]


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("out")
  p.add_argument("--repo", default=ROOT)
  args = p.parse_args(argv)
  tables = record(os.path.abspath(args.repo))
  with open(args.out, "w") as f:
    json.dump(tables, f, indent=1, sort_keys=True)
  print(f"wrote {len(tables)} result files to {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
