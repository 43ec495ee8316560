"""Runs the fault and bad-input probes of issue 15 and prints input | outcome | verdict.

    python tests/fault_table.py [--keep DIR]

Each probe runs in its own process against a tiny quickstart run (digits, one
epoch, 256 / 128 images), as a careful new user would try it. The verdict is
"ok" when the outcome is the expected one (a one-line error naming the problem,
a refusal, a fallback), "FAIL" otherwise. Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
S = ["--config=configs/quickstart.py", "--config.num_epochs=1", "--config.data.max_train=256",
     "--config.data.max_test=128"]


def _run(args: list[str], timeout: int = 600) -> tuple[int, str]:
  proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  return proc.returncode, proc.stdout + proc.stderr


def _last_line(text: str) -> str:
  lines = [line for line in text.strip().splitlines() if line.strip()]
  return lines[-1][:160] if lines else ""


def _py(code: str) -> list[str]:
  return ["-c", "import numpy as np, jax, jaxconcepts as jc\n" + code]


def _probes(tmp: str) -> list[tuple[str, list[str], str]]:
  """(what was tried, argv of python, regex the outcome must match)."""
  w = os.path.join(tmp, "w")
  nan_img = ("m = jc.create_model('vgg', 10); v = jc.init_variables(m, jax.random.PRNGKey(0), "
             "(32, 32, 1))\nx = np.zeros((1, 32, 32, 1), np.float32)\n")
  return [
      ("--help", ["train.py", "--help"], r"--config.*--workdir"),
      ("no --config / --workdir", ["train.py"], r"FATAL: --config and --workdir are required"),
      ("a missing config file", ["train.py", "--config=configs/nope.py", f"--workdir={w}"],
       r"FATAL: no config file"),
      ("keep_checkpoints=0", ["train.py", *S, f"--workdir={w}0", "--config.keep_checkpoints=0"],
       r"FATAL: keep_checkpoints must be an integer >= 1"),
      ("seed=-1", ["train.py", *S, f"--workdir={w}0", "--config.seed=-1"],
       r"FATAL: seed must be an integer >= 0"),
      ("log_every_steps=0", ["train.py", *S, f"--workdir={w}0", "--config.log_every_steps=0"],
       r"FATAL: log_every_steps must be"),
      ("train the quickstart (setup; a checkpoint every 2 steps)",
       ["train.py", *S, f"--workdir={w}", "--config.checkpoint_every_steps=2"], r"train: done"),
      ("rerun with another batch_size", ["train.py", *S, f"--workdir={w}",
                                         "--config.batch_size=32"],
       r"FATAL: .*belongs to another configuration.*batch_size: 64 -> 32"),
      ("evaluate the digits model with classifier.py:source=idx",
       ["evaluate.py", "--config=configs/classifier.py:source=idx", f"--workdir={w}"],
       r"FATAL: .*belongs to another configuration.*data.source"),
      ("a workdir that is a file", ["train.py", *S, f"--workdir={os.path.join(tmp, 'afile')}"],
       r"FATAL: .*is a file"),
      ("a live process holds the workdir",
       ["-c", f"import json, os, subprocess, sys\np = subprocess.Popen(['sleep', '60'])\n"
              f"json.dump({{'pid': p.pid, 'host': os.uname().nodename}}, open('{w}/.lock', 'w'))\n"
              f"r = subprocess.run([sys.executable, 'evaluate.py', *{S!r}, '--workdir={w}'], "
              "capture_output=True, text=True)\np.kill(); p.wait()\nprint(r.stderr)"],
       r"FATAL: .*is in use by process"),
      ("a stale lock of a dead process", ["evaluate.py", *S, f"--workdir={w}"],
       r"taking over a stale lock[\s\S]*evaluate: done"),
      ("a damaged final checkpoint of a finished stage (its older steps were pruned)",
       ["-c", f"import glob, os, subprocess, sys\nd = sorted(glob.glob('{w}/checkpoints/"
              "classifier/[0-9]*'), key=lambda p: int(os.path.basename(p)))[-1]\n"
              "[open(f, 'r+b').truncate(0) for f in glob.glob(d + '/default/**', recursive=True) "
              "if os.path.isfile(f)]\nr = subprocess.run([sys.executable, 'train.py', "
              f"*{S!r}, '--config.num_epochs=2', '--workdir={w}'], capture_output=True, "
              "text=True)\nprint(r.stderr)"],
       r"FATAL: no checkpoint under \S+ restores .*moved to \S+\.damaged; delete \S+ to "
       r"train this stage again"),
      ("a damaged newest checkpoint of an interrupted run (kill -9 after step 6 of 12)",
       _sh(f"w2 = '{w}2'\ncmd = [sys.executable, 'train.py', *{S!r}, '--config.num_epochs=3', "
           "'--config.checkpoint_every_steps=2', f'--workdir={w2}']\n"
           "import glob, signal, time\np = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)\n"
           "c = f'{w2}/checkpoints/classifier'\nt = time.time()\n"
           "while not glob.glob(c + '/[68]/_CHECKPOINT_METADATA') and time.time() - t < 600:\n"
           "  time.sleep(0.2)\np.send_signal(signal.SIGKILL); p.wait()\n"
           "from jaxconcepts.train import checkpoints\n"
           "d = os.path.join(c, str(checkpoints.latest_step(c)))\n"
           "[open(f, 'r+b').truncate(0) for f in glob.glob(d + '/default/**', recursive=True) "
           "if os.path.isfile(f)]\nr = subprocess.run(cmd, capture_output=True, text=True)\n"
           "print(r.stderr)"),
       r"does not restore[\s\S]*resumed from step \d+ of 12[\s\S]*train: done"),
      ("a truncated config.json",
       ["-c", f"open('{w}/config.json', 'w').write('{{\"config\": ')\nimport subprocess, sys\n"
              f"r = subprocess.run([sys.executable, 'evaluate.py', *{S!r}, '--config.num_epochs=2',"
              f" '--workdir={w}'], capture_output=True, text=True)\nprint(r.stderr)"],
       r"FATAL: .*config.json is damaged"),
      ("NMF of a matrix with a 1e38 entry",
       _py("a = np.random.default_rng(0).uniform(size=(40, 12)).astype(np.float32)\n"
           "a[0, 0] = 1e38\nr = jc.nmf(a, 3)\nprint('finite', bool(np.isfinite(r.w).all()), "
           "'rel_error', float(r.rel_error))"), r"finite True rel_error 0\.\d"),
      ("NMF of a subnormal matrix (about 1e-42)",
       _py("a = (np.random.default_rng(0).uniform(size=(40, 12)) * 1e-42).astype(np.float32)\n"
           "r = jc.nmf(a, 3)\nprint('rel_error', float(r.rel_error))"), r"rel_error 0\.[1-9]"),
      ("DeepLift of an image with a NaN pixel",
       _py(nan_img + "x[0, 1, 1, 0] = np.nan\njc.deeplift(m, v, x, 0, 'conv1')"),
       r"ValueError: inputs contain NaN or Inf"),
      ("DeepLift of 28x28 images", _py(nan_img + "jc.deeplift(m, v, np.zeros((1, 28, 28, 1), "
                                                 "np.float32), 0, 'conv1')"), r"ValueError: .*28"),
      ("n_samples=0 with smoothing='square'",
       _py(nan_img + "jc.deeplift(m, v, x, 0, 'conv1', n_samples=0, smoothing='square')"),
       r"ValueError: smoothing='square' needs SmoothGrad samples"),
      ("pairwise classifiers on data scaled by 1e20",
       _py("rng = np.random.default_rng(0)\njc.train_pairwise([np.maximum(rng.normal(c, 1, "
           "(50, 64)), 0).astype(np.float32) * 1e20 for c in range(4)])"),
       r"ValueError: pairwise training diverged"),
      *_probes_issue15_rest(tmp, w + "2"),
      ("an IDX header claiming 4e9 images",
       _py(f"b = bytearray([0, 0, 8, 3]) + np.asarray([4000000000, 28, 28], '>u4').tobytes() "
           f"+ bytes(784)\nopen('{tmp}/h-idx3-ubyte', 'wb').write(b)\n"
           f"from jaxconcepts import data\ndata.read_idx('{tmp}/h-idx3-ubyte', 3)"),
       r"ValueError: .*is truncated"),
  ]


def _sh(code: str) -> list[str]:
  """A probe that is a small Python script run from the repository root."""
  return ["-c", "import json, os, subprocess, sys\nfrom tests import filesystems\n" + code]


def _probes_issue15_rest(tmp: str, w: str) -> list[tuple[str, list[str], str]]:
  """Full disk, layer and class-list fields, split inputs, damaged final checkpoint,
  read-only workdir (the second round of issue 15); `w` holds a trained classifier."""
  disk, ro = os.path.join(tmp, "disk"), os.path.join(tmp, "ro")
  train = ("['train.py', *" + repr(S) + f", '--workdir={disk}/w', "
           "'--config.checkpoint_every_steps=2']")
  parse = ("from absl import flags\nfrom ml_collections import config_flags\n"
           "from jaxconcepts.programs import cli\nfv = flags.FlagValues()\n"
           "config_flags.DEFINE_config_file('config', None, '', flag_values=fv, sys_argv=a)\n"
           f"fv(a)\ncli._validate(fv.config, '{tmp}/unused')\n")
  concepts = ["evaluate.py", "--config=configs/concepts.py:quick",
              f"--config.classifier_workdir={w}", f"--workdir={tmp}/concepts"]
  return [
      ("a full disk during training (50 MB tmpfs: step 2 fits, step 4 not), then the rerun "
       "on a grown disk",
       _sh(f"with filesystems.small_tmpfs('{disk}', 50 << 20) as m:\n"
           "  if not m: sys.exit('mount refused: run as root (see tests/filesystems.py)')\n"
           f"  r = subprocess.run([sys.executable, *{train}], capture_output=True, text=True)\n"
           f"  print(r.stderr.strip().splitlines()[-1], os.listdir('{disk}/w/checkpoints/"
           f"classifier'))\n  filesystems.resize('{disk}', 200 << 20)\n"
           f"  r = subprocess.run([sys.executable, *{train}], capture_output=True, text=True)\n"
           "  print(r.stderr)"),
       r"FATAL: disk full: cannot write \S+ \(needs about [\d.]+ MB, [\d.]+ MB free.*"
       r"\[last complete checkpoint: step 2\] \['2'\][\s\S]*resumed from step 2 of 4"
       r"[\s\S]*train: done"),
      ("--config.alpha_layer=conv3a (a name; the default is the alias -2)",
       _sh("a = ['train.py', '--config=configs/cladec.py:quick', '--config.alpha_layer=conv3a',"
           " '--config.layers=(-1,conv3a)']\n" + parse +
           "print('alpha_layer', fv.config.alpha_layer, 'layers', fv.config.layers, 'accepted')"),
       r"alpha_layer conv3a layers \(-1, 'conv3a'\) accepted"),
      ("--config.alpha_layer=conv9", ["train.py", "--config=configs/cladec.py:quick",
                                      f"--workdir={tmp}/cladec", "--config.alpha_layer=conv9"],
       r"FATAL: alpha_layer: unknown layer 'conv9' for ClaDecVGG; valid layers: .*"),
      ("--config.classes=(3,5) (a tuple; the default is None)",
       _sh("a = ['evaluate.py', '--config=configs/concepts.py:quick', '--config.classes=(3,5)', "
           f"'--config.classifier_workdir={w}']\n" + parse +
           "print('classes', fv.config.classes, 'accepted')"), r"classes \(3, 5\) accepted"),
      ("concepts --config.classes=(3,12) on a 10-class classifier",
       [*concepts, "--config.classes=(3,12)"], r"FATAL: classes \[12\] are out of range"),
      ("concepts --config.layer=conv9 (before the classifier is restored)",
       _sh("import time\nt = time.time()\nr = subprocess.run([sys.executable, "
           f"*{concepts + ['--config.layer=conv9']!r}], capture_output=True, text=True)\n"
           f"made = os.path.exists('{tmp}/concepts')\n"
           "print(r.stderr.strip().splitlines()[-1], f'({time.time() - t:.0f} s, workdir "
           "created: {made})')"),
       r"FATAL: unknown layer 'conv9' for ClaDecVGG.*workdir created: False\)"),
      ("split.encode / deeplift of 3-channel images (the model takes 1)",
       _py("m = jc.create_model('vgg', 10); v = jc.init_variables(m, jax.random.PRNGKey(0), "
           "(32, 32, 1))\nx = np.zeros((2, 32, 32, 3), np.float32)\n"
           "try:\n  jc.split(m, 'conv3a').encode(v, x)\nexcept ValueError as e:\n  print(e)\n"
           "jc.deeplift(m, v, x, 0, 'conv1')"),
       r"images of shape \(2, 32, 32, 3\) do not fit the model's weights: params\['conv0'\]"
       r"[\s\S]*ValueError: images of shape \(2, 32, 32, 3\) do not fit"),
      ("split.head of activations of another layer's shape",
       _py("m = jc.create_model('vgg', 10); v = jc.init_variables(m, jax.random.PRNGKey(0), "
           "(32, 32, 1))\njc.split(m, 'conv3a').head(v, np.zeros((2, 4, 4, 128), np.float32))"),
       r"ValueError: activations at conv3a of shape \(2, 4, 4, 128\) do not fit"),
      ("a damaged final checkpoint of a ClaDec stage (cladec_plan.is_done)",
       _sh("import glob, types\nimport numpy as np\nfrom jaxconcepts.programs import "
           "cladec_plan\nfrom jaxconcepts.train import checkpoints\n"
           f"plan = types.SimpleNamespace(workdir='{tmp}/stage', dataset=types.SimpleNamespace("
           "num_train=8))\nd = checkpoints.stage_dir(plan.workdir, 'refae_conv4_s0')\n"
           "checkpoints.save(d, 2, {'w': np.ones(5, np.float32)})\n"
           "before = cladec_plan.is_done(plan, 'refae_conv4_s0', 2, 8)\n"
           "[open(f, 'r+b').truncate(0) for f in glob.glob(d + '/2/default/**', recursive=True) "
           "if os.path.isfile(f)]\nprint('done before', before, 'after damage', "
           "cladec_plan.is_done(plan, 'refae_conv4_s0', 2, 8))"),
       r"done before True after damage False"),
      ("evaluate into a read-only workdir (a tmpfs remounted ro)",
       _sh(f"with filesystems.small_tmpfs('{ro}', 1 << 20) as m:\n"
           "  if not m: sys.exit('mount refused: run as root (see tests/filesystems.py)')\n"
           f"  os.makedirs('{ro}/w')\n  filesystems.remount_read_only('{ro}')\n"
           "  r = subprocess.run([sys.executable, 'evaluate.py', *" + repr(S) +
           f", '--workdir={ro}/w'], capture_output=True, text=True)\n  print(r.stderr)"),
       r"FATAL: workdir .* cannot be written \(Read-only file system on .*"),
  ]


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--keep", help="keep the temporary workdirs here")
  args = p.parse_args(argv)
  tmp = args.keep or tempfile.mkdtemp(prefix="fault_table_")
  os.makedirs(tmp, exist_ok=True)
  open(os.path.join(tmp, "afile"), "w").close()
  rows, failed = [], 0
  for what, cmd, expected in _probes(tmp):
    rc, out = _run(cmd)
    match = re.search(expected, out)
    library = cmd[-1].startswith("import numpy as np, jax, jaxconcepts")
    ok = match is not None and (library or "Traceback" not in out)  # programs: one line
    outcome = match.group(0)[:140].replace("\n", " ") if match else _last_line(out)
    failed += not ok
    rows.append((what, f"exit {rc}: {outcome}", "ok" if ok else "FAIL"))
    print(f"| {what} | {rows[-1][1].replace('|', '/')} | {rows[-1][2]} |", flush=True)
  print(f"\n{len(rows) - failed} ok, {failed} FAIL")
  with open(os.path.join(tmp, "fault_table.json"), "w") as f:
    json.dump(rows, f, indent=1)
  if not args.keep:
    shutil.rmtree(tmp, ignore_errors=True)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
