"""W1 / W1b / W1r: NMF, the time to reach scikit-learn ``mu``'s 200-iteration error.

Workloads (DESIGN section 6; k = 6, float32):
  W1   A = relu(U V + 0.1 noise), U 11760x16, V 16x1024 (seed 0), 20% of the rows zeroed
       (pixels with a negative attribution score), ~40% non-zeros.
  W1b  16 such matrices (seeds 0..15): scikit-learn loops, we batch (`nmf_batched`).
  W1r  real attribution matrices of three Fashion-MNIST classes at `conv2a`
       (`benchmarks/real_matrix.py`, saved in benchmarks/data/).

What is timed: the time to reach the target error, the relative error
``||A - W H||_F / ||A||_F`` that scikit-learn's ``NMF(solver="mu", max_iter=200, tol=0)``
reaches from the same initial W, H (our ``init="random"`` with key 0, split per matrix;
scikit-learn gets it as ``init="custom"``), times ``1 + SLACK``. ``prepare`` (untimed, its
own process) computes each matrix's target and, by stepping each solver one iteration at
a time, the fewest iterations each solver needs to reach it: ours ``mu`` / ``amu`` /
``hals`` / ``ehals`` (rerun from the init for each count: it carries state across
iterations) and scikit-learn's ``mu`` and ``cd`` (its private ``_update_coordinate_descent``,
the loop of ``NMF(solver="cd")``). Each side then runs exactly that many iterations
(``tol=0``; a batch runs the largest count of its matrices) and the parent checks that
every side's result reached every target (``agreement``). scikit-learn runs with 1 and 2
threads.
"""
from __future__ import annotations

import os
import types
import warnings

import numpy as np

from harness import Side

K = 6
SLACK = 1e-5
MAX_ITER = 400
SOLVERS = ("mu", "amu", "hals", "ehals")
REAL_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                         "fmnist_conv2a.npz")


def w1_matrix(seed: int, m: int = 11760, n: int = 1024, rank: int = 16,
              zero_row_frac: float = 0.2) -> np.ndarray:
  """relu(U V + 0.1 noise) with a fraction of the rows zeroed, (m, n) float32."""
  rng = np.random.default_rng(seed)
  u = rng.standard_normal((m, rank), dtype=np.float32)
  v = rng.standard_normal((rank, n), dtype=np.float32)
  a = u @ v + np.float32(0.1) * rng.standard_normal((m, n), dtype=np.float32)
  np.maximum(a, 0, out=a)
  a[rng.random(m) < zero_row_frac] = 0
  return a


def _stack(name: str, quick: bool) -> np.ndarray:
  """The workload's (B, m, n) float32 stack (zero-padded rows for ragged real ones)."""
  shape = dict(m=1200, n=256) if quick else {}
  if name == "W1":
    return w1_matrix(0, **shape)[None]
  if name == "W1b":
    return np.stack([w1_matrix(s, **shape) for s in range(3 if quick else 16)])
  with np.load(REAL_FILE) as f:
    mats = [f[k] for k in sorted(f.files)]
  rows = 1500 if quick else max(x.shape[0] for x in mats)
  out = np.zeros((len(mats), rows, mats[0].shape[1]), np.float32)
  for b, x in enumerate(mats):
    out[b, :min(rows, x.shape[0])] = x[:rows]
  return out


def _files(ctx, name):
  return {x: os.path.join(ctx.data_dir, f"{name}_{x}.npy") for x in ("a", "w0", "h0")}


def _rel_errors(a: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
  """(B,) relative errors, float64."""
  out = []
  for x, wb, hb in zip(a, w, h):
    x = x.astype(np.float64)
    out.append(np.linalg.norm(x - wb.astype(np.float64) @ hb.astype(np.float64))
               / np.linalg.norm(x))
  return np.array(out)


def _gram_error(a64_sq: float, a: np.ndarray, w: np.ndarray, h: np.ndarray) -> float:
  """Relative error from ||A||^2, A H^T and the Gram matrices (no (m, n) residual)."""
  w64, h64 = w.astype(np.float64), h.astype(np.float64)
  aht = (a @ h.T).astype(np.float64)
  sq = a64_sq - 2 * np.sum(w64 * aht) + np.sum((w64.T @ w64) * (h64 @ h64.T))
  return float(np.sqrt(max(sq, 0.0) / a64_sq))


def _ours_iterations(a, w0, h0, thr, solvers) -> dict[str, list[int]]:
  """Fewest outer iterations of each of our solvers reaching thr[b], per matrix."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxconcepts.ops import nmf as nmf_lib  # pylint: disable=g-import-not-at-top
  out = {}
  for solver in solvers:
    # ehals carries its step size and last iterates across iterations: it is rerun from
    # the init with max_iter = 1, 2, ... (eager calls; the core traces max_iter, so one
    # compile) instead of being stepped from the last factors.
    rerun = solver == "ehals"
    step = jax.jit(jax.vmap(lambda x, w, h, s=solver: nmf_lib.nmf(
        x, K, init="custom", w_init=w, h_init=h, max_iter=1, tol=0, solver=s)))
    w, h = w0, h0
    n = np.full(len(a), MAX_ITER + 1)
    for it in range(1, MAX_ITER + 1):
      if rerun:
        runs = [nmf_lib.nmf(x, K, init="custom", w_init=wb, h_init=hb, max_iter=it, tol=0,
                            solver=solver) for x, wb, hb in zip(a, w0, h0)]
        res = types.SimpleNamespace(rel_error=np.array([float(r.rel_error) for r in runs]))
      else:
        res = step(a, w, h)
        w, h = res.w, res.h
      err = np.asarray(res.rel_error, np.float64)
      n = np.where((n > MAX_ITER) & (err <= thr), it, n)
      if np.all(n <= MAX_ITER):
        break
    out[solver] = [int(v) for v in n]
  return out


def _sklearn_cd_iterations(a, w0, h0, thr) -> list[int]:
  """Fewest iterations of scikit-learn's cd (its own loop, stepped) reaching thr[b]."""
  from sklearn.decomposition._nmf import _update_coordinate_descent  # pylint: disable=g-import-not-at-top
  out = []
  for x, w, h, t in zip(a, w0, h0, thr):
    x = np.ascontiguousarray(x)
    w, ht = np.array(w, order="C"), np.ascontiguousarray(h.T)
    a_sq = float(np.sum(x.astype(np.float64) ** 2))
    rng = np.random.RandomState(0)
    n = MAX_ITER + 1
    for it in range(1, MAX_ITER + 1):
      _update_coordinate_descent(x, w, ht, 0.0, 0.0, False, rng)
      _update_coordinate_descent(np.ascontiguousarray(x.T), ht, w, 0.0, 0.0, False, rng)
      if _gram_error(a_sq, x, w, ht.T) <= t:
        n = it
        break
    out.append(n)
  return out


def read_bandwidth_gbs(nbytes: int = 256 << 20, repeats: int = 5) -> float:
  """The machine's read bandwidth: the best of a few NumPy sums over 256 MiB (GB/s)."""
  import time  # pylint: disable=g-import-not-at-top
  x = np.ones(nbytes // 4, np.float32)
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    x.sum()
    best = min(best, time.perf_counter() - t0)
  return nbytes / best / 1e9


def extra(record: dict, name: str) -> dict:
  """Our best side's bytes of A read per second (two reads of A's non-zero rows per
  outer iteration, as `skip_zero_rows` iterates) against the machine's read bandwidth."""
  s, prep = record["summary"], record["prepared"]
  if "ours_best" not in s:
    return {}
  n = max(prep["iterations"][s["ours_best"]])
  nbytes = 2 * n * prep["nonzero_rows"] * prep["shape"][2] * 4
  gbs = nbytes / s["ours_s"] / 1e9
  return {"ours_read_gbs": gbs, "fraction_of_read_bandwidth": gbs / prep["read_bandwidth_gbs"]}


def _sklearn_fit(x, w0, h0, solver, max_iter):
  from sklearn.decomposition import NMF  # pylint: disable=g-import-not-at-top
  model = NMF(K, solver=solver, init="custom", max_iter=int(max_iter), tol=0)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    w = model.fit_transform(x, W=w0.copy(), H=h0.copy())
  return w, model.components_


def prepare(ctx, name: str) -> dict:
  """Data, initial factors, targets and iterations to target (see module docstring)."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxconcepts.ops import nmf_init  # pylint: disable=g-import-not-at-top
  a = _stack(name, ctx.quick)
  keys = jax.random.split(jax.random.key(0), a.shape[0])
  inits = [nmf_init.initialize(jax.numpy.asarray(x), K, "random", kk) for x, kk in zip(a, keys)]
  w0 = np.stack([np.asarray(w) for w, _ in inits])
  h0 = np.stack([np.asarray(h) for _, h in inits])
  files = _files(ctx, name)
  for k, v in (("a", a), ("w0", w0), ("h0", h0)):
    np.save(files[k], v)
  fits = [_sklearn_fit(x, w, h, "mu", 200) for x, w, h in zip(a, w0, h0)]
  target = _rel_errors(a, np.stack([f[0] for f in fits]), np.stack([f[1] for f in fits]))
  thr = target * (1 + SLACK)
  # W1b leaves out our mu (scikit-learn's updates; W1 times it) to keep the run short.
  solvers = SOLVERS[1:] if name == "W1b" else SOLVERS
  its = {f"ours_{k}": v for k, v in _ours_iterations(a, w0, h0, thr, solvers).items()}
  its["sklearn_mu"] = [200] * len(a)  # its own 200-iteration error, by definition
  its["sklearn_cd"] = _sklearn_cd_iterations(a, w0, h0, thr)
  return {"shape": list(a.shape), "nonzero_fraction": float(np.mean(a != 0)),
          "nonzero_rows": int(np.sum(np.any(a != 0, axis=2))),
          "read_bandwidth_gbs": read_bandwidth_gbs(),
          "target": target.tolist(), "slack": SLACK, "iterations": its}


def ours(ctx, name: str, solver: str):
  """nmf_batched from the shared init (key 0), the calibrated iterations, tol 0."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxconcepts.ops import nmf as nmf_lib  # pylint: disable=g-import-not-at-top
  a = jnp.asarray(np.load(_files(ctx, name)["a"]))
  n = max(ctx.prepared["iterations"][f"ours_{solver}"])

  def call():
    return nmf_lib.nmf_batched(a, K, init="random", key=0, max_iter=n, tol=0, solver=solver)
  return call, lambda r: {"w": r.w, "h": r.h}


def sklearn(ctx, name: str, solver: str):
  """scikit-learn NMF(solver, init="custom" from the shared init, tol 0) per matrix."""
  f = _files(ctx, name)
  a, w0, h0 = (np.load(f[k]) for k in ("a", "w0", "h0"))
  its = ctx.prepared["iterations"][f"sklearn_{solver}"]
  mats = [np.ascontiguousarray(x) for x in a]
  # The first fit in a process runs several times slower (allocator, BLAS start-up): one
  # short untimed fit makes every timed call a warm one, also where a side times one call.
  _sklearn_fit(mats[0], w0[0], h0[0], solver, 2)

  def call():
    return [_sklearn_fit(x, w, h, solver, n) for x, w, h, n in zip(mats, w0, h0, its)]
  return call, lambda r: {"w": np.stack([x[0] for x in r]), "h": np.stack([x[1] for x in r])}


def agree(ctx, outputs: dict, name: str) -> dict:
  """Every side's error against every target: reached or not, worst ratio."""
  a = np.load(_files(ctx, name)["a"])
  thr = np.array(ctx.prepared["target"]) * (1 + SLACK)
  out = {}
  for side, o in outputs.items():
    err = _rel_errors(a, o["w"], o["h"])
    out[side] = {"reached_target": bool(np.all(err <= thr)),
                 "worst_error_over_target": float(np.max(err / thr * (1 + SLACK)))}
  return out


def _best_threads(solver: str) -> list[int]:
  """W1's best thread count for a scikit-learn solver (from its JSON), else both."""
  import json  # pylint: disable=g-import-not-at-top
  from harness import RESULTS_DIR  # pylint: disable=g-import-not-at-top
  try:
    with open(os.path.join(RESULTS_DIR, "W1.json")) as f:
      sides = json.load(f)["sides"]
    times = {t: sides[f"sklearn_{solver}_t{t}"]["median_s"] for t in (1, 2)}
    return [min(times, key=lambda t: times[t] or float("inf"))]
  except (OSError, KeyError, ValueError):
    return [1, 2]


def _w1_cd_faster() -> bool:
  """Whether W1's record (if any) has scikit-learn's cd faster than its mu."""
  import json  # pylint: disable=g-import-not-at-top
  from harness import RESULTS_DIR  # pylint: disable=g-import-not-at-top
  try:
    with open(os.path.join(RESULTS_DIR, "W1.json")) as f:
      sides = json.load(f)["sides"]
    best = {s: min(sides[f"sklearn_{s}_t{t}"]["median_s"] or float("inf") for t in (1, 2))
            for s in ("mu", "cd")}
    return best["cd"] < best["mu"]
  except (OSError, KeyError, ValueError):
    return False


def _sides(name: str, quick: bool, prepared: dict) -> list[Side]:
  """Ours per solver; scikit-learn's mu and cd at 1 and 2 threads (W1b: W1's best)."""
  del quick
  its = prepared["iterations"]
  sides = [Side(f"ours_{s}", "wl_nmf:ours", True, None, {"name": name, "solver": s})
           for s in SOLVERS if f"ours_{s}" in its]
  for solver in ("mu", "cd"):
    threads = _best_threads(solver) if name == "W1b" else [1, 2]
    if name == "W1b" and solver == "mu" and _w1_cd_faster():
      continue  # not scikit-learn's best on W1 (same matrices): W1b times its cd only
    for t in threads:
      sides.append(Side(f"sklearn_{solver}_t{t}", "wl_nmf:sklearn", False, t,
                        {"name": name, "solver": solver}, warmup=0,
                        calls=1 if name == "W1b" else 2))
  return sides


def _workload(name: str, title: str, expected_s: float) -> types.SimpleNamespace:
  return types.SimpleNamespace(
      NAME=name, TITLE=title, PREPARE=f"wl_nmf:prepare_{name}", WARMUP=1, CALLS=2,
      EXPECTED_S=expected_s, sides=lambda quick, prepared: _sides(name, quick, prepared),
      agree=lambda ctx, outputs: agree(ctx, outputs, name),
      extra=lambda record: extra(record, name))


def prepare_W1(ctx):  # pylint: disable=invalid-name
  return prepare(ctx, "W1")


def prepare_W1b(ctx):  # pylint: disable=invalid-name
  return prepare(ctx, "W1b")


def prepare_W1r(ctx):  # pylint: disable=invalid-name
  return prepare(ctx, "W1r")


WORKLOADS = [
    _workload("W1", "NMF time to target error, W1 (11760 x 1024, k = 6)", 150),
    _workload("W1b", "NMF time to target error, W1b (16 x W1)", 200),
    _workload("W1r", "NMF time to target error, W1r (3 Fashion-MNIST classes at conv2a)", 60),
]
