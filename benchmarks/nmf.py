"""W1 / W1b: multiplicative-update NMF, jaxconcepts against scikit-learn.

Workloads (DESIGN section 6):
  W1   A = relu(U V + 0.1 noise), U 11760x16, V 16x1024 (seed 0), masked to
       ~40% nonzeros, k = 6. The mask zeroes whole rows (pixels), as the
       concept pipeline does for pixels whose attribution was negative: relu
       leaves ~50% nonzeros, 20% of the rows are zeroed -> ~40%.
  W1b  16 such matrices (seeds 0..15): scikit-learn loops, jaxconcepts vmaps.

Peers, each at equal iterations from the same initial W, H:
  scikit-learn NMF(solver="mu", init="custom" from our random init, max_iter,
  tol=0) -- init="custom" instead of "random" only so that both start from
  the same W, H (same distribution, sqrt(mean / k) scaling; the init is not
  timed by either side); and scikit-learn's default NMF() (coordinate descent,
  nndsvda, tol 1e-4) to convergence, against our default nmf() (nndsvda,
  tol 1e-4).

scikit-learn runs in a subprocess with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
removed from its environment: this machine sets them and they halve NumPy's
matrix speed, which would flatter us. Both sides use float32 data.

Reported: seconds, ratio (scikit-learn / ours), relative error
||A - WH|| / ||A||, the effective GB/s of A read (bytes of A x iterations /
seconds) against the machine's read bandwidth measured in the same run, and the
floor: iterations x bytes(A) / bandwidth, the time to read A once per
iteration. "skip" drops the all-zero rows (exact; reads fewer bytes).

Usage: python benchmarks/nmf.py [--quick] [--out FILE] [--compare-forms]
                                [--no-cd] [--no-w1b]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _common  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position

from jaxconcepts.ops import nmf as nmf_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxconcepts.ops import nmf_init  # pylint: disable=g-import-not-at-top,wrong-import-position

_UNFAIR_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def w1_matrix(seed, m=11760, n=1024, rank=16, zero_row_frac=0.2):
  """relu(U V + 0.1 noise) with a fraction of rows zeroed, float32."""
  rng = np.random.default_rng(seed)
  u = rng.standard_normal((m, rank), dtype=np.float32)
  v = rng.standard_normal((rank, n), dtype=np.float32)
  a = u @ v + np.float32(0.1) * rng.standard_normal((m, n), dtype=np.float32)
  np.maximum(a, 0, out=a)
  a[rng.random(m) < zero_row_frac] = 0
  return a


def time_ours(fn, repeats):
  """Best of `repeats` timed calls of fn(max_iter) after fn(2) compiled it.

  max_iter is a traced argument of the jitted core, so the short warm-up call
  compiles exactly what the timed calls run.
  """
  _common.block(fn(2))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    res = _common.block(fn(None))
    times.append(time.perf_counter() - t0)
  return min(times), res


def read_bandwidth_gbs(nbytes=256 << 20, repeats=7):
  """Best read bandwidth of a jitted sum over a large float32 array (GB/s)."""
  x = jnp.ones((nbytes // 4,), jnp.float32)
  s = jax.jit(jnp.sum)
  t = _common.time_call(lambda: s(x), repeats=repeats)["best_s"]
  return nbytes / t / 1e9


def rel_error(a, w, h):
  a64 = np.asarray(a, np.float64)
  r = a64 - np.asarray(w, np.float64) @ np.asarray(h, np.float64)
  return float(np.linalg.norm(r) / np.linalg.norm(a64))


_PEER_SCRIPT = textwrap.dedent("""
    import json, sys, time, warnings
    import numpy as np
    from sklearn.decomposition import NMF
    d, mode, max_iter, k, repeats = (sys.argv[1], sys.argv[2], int(sys.argv[3]),
                                     int(sys.argv[4]), int(sys.argv[5]))
    a = np.load(d + "/a.npy", mmap_mode="r")
    w0 = np.load(d + "/w0.npy") if mode == "mu" else None
    h0 = np.load(d + "/h0.npy") if mode == "mu" else None
    out = {"times": [], "rel_error": [], "n_iter": []}
    mats = [np.ascontiguousarray(a[i]) for i in range(a.shape[0])]
    for _ in range(repeats):
      t0 = time.perf_counter()
      res = []
      for i, x in enumerate(mats):
        if mode == "mu":
          model = NMF(k, solver="mu", init="custom", max_iter=max_iter, tol=0)
          with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = model.fit_transform(x, W=w0[i].copy(), H=h0[i].copy())
        else:
          model = NMF(k)
          with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = model.fit_transform(x)
        res.append((w, model.components_, model.n_iter_))
      out["times"].append(time.perf_counter() - t0)
    for x, (w, h, n_iter) in zip(mats, res):
      r = x.astype(np.float64) - w.astype(np.float64) @ h.astype(np.float64)
      out["rel_error"].append(float(np.linalg.norm(r) /
                                    np.linalg.norm(x.astype(np.float64))))
      out["n_iter"].append(int(n_iter))
    print(json.dumps(out))
""")


def run_sklearn(a, w0, h0, mode, max_iter, k, repeats, threads=None):
  """Times scikit-learn in a subprocess with the unfair OpenBLAS env unset.

  threads: None leaves OpenBLAS's thread count alone (all cores); an int sets
  OPENBLAS_NUM_THREADS (1 is faster for these skinny products on a busy
  machine, where spinning BLAS threads wait for a core).
  """
  env = {key: val for key, val in os.environ.items() if key not in _UNFAIR_ENV}
  if threads is not None:
    env["OPENBLAS_NUM_THREADS"] = str(threads)
  with tempfile.TemporaryDirectory() as d:
    np.save(os.path.join(d, "a.npy"), a)
    if w0 is not None:
      np.save(os.path.join(d, "w0.npy"), w0)
      np.save(os.path.join(d, "h0.npy"), h0)
    script = os.path.join(d, "peer.py")
    with open(script, "w") as f:
      f.write(_PEER_SCRIPT)
    proc = subprocess.run(
        [sys.executable, script, d, mode, str(max_iter), str(k), str(repeats)],
        env=env, capture_output=True, text=True, check=False)
  if proc.returncode != 0:
    raise RuntimeError("scikit-learn subprocess failed:\n" + proc.stderr)
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  out["best_s"] = min(out["times"])
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="small sizes, few iterations (smoke test)")
  parser.add_argument("--out", help="write results as JSON")
  parser.add_argument("--compare-forms", action="store_true",
                      help="also time the iteration without the a.T copy")
  parser.add_argument("--no-cd", action="store_true",
                      help="skip scikit-learn's default (cd) solver")
  parser.add_argument("--no-w1b", action="store_true", help="skip W1b")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()

  k = 6
  m, n, n_b, max_iter = 11760, 1024, 16, 200
  if args.quick:
    m, n_b, max_iter = 1960, 4, 50
  repeats = 1 if args.quick else args.repeats

  unfair = {v: os.environ.get(v) for v in _UNFAIR_ENV if v in os.environ}
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()}")
  print(f"OpenBLAS variables in this environment: {unfair or 'none'}; "
        "scikit-learn is timed in a subprocess with them unset.")
  bw_start = read_bandwidth_gbs()
  peak = _common.matmul_peak_gflops(n=1024 if args.quick else 2048)
  print(f"read bandwidth {bw_start:.1f} GB/s (jitted sum over 256 MiB; "
        "measured again at the end, the larger is used); float32 matmul peak "
        f"{peak['peak_gflops']:.0f} GFLOP/s\n")

  record = {"machine": _common.machine_info(), "matmul_peak": peak,
            "max_iter": max_iter, "k": k, "rows": []}
  raw = []

  def add(workload, impl, seconds, rel_err, iters, bytes_a, bytes_read,
          sk_seconds=None, n_iter=None):
    """One result; bytes_a: dense A bytes, bytes_read: bytes per iteration."""
    raw.append(dict(workload=workload, impl=impl, seconds=seconds,
                    rel_error=rel_err, iterations=iters, n_iter=n_iter,
                    bytes_a=bytes_a, bytes_read=bytes_read,
                    sklearn_seconds=sk_seconds))

  def table(bw):
    rows = []
    for r in raw:
      it, sec = r["iterations"], r["seconds"]
      r["sklearn_over_ours"] = (r["sklearn_seconds"] / sec
                                if r["sklearn_seconds"] else None)
      r["effective_gbs"] = it * r["bytes_a"] / sec / 1e9
      r["actual_read_gbs"] = it * r["bytes_read"] / sec / 1e9
      r["floor_s"] = it * r["bytes_a"] / (bw * 1e9)
      r["floor_over_time"] = r["floor_s"] / sec
      r["gflops"] = it * r["bytes_read"] * k / sec / 1e9  # 4 m n k flops
      rows.append([
          r["workload"], r["impl"], f"{sec:.3f}",
          "-" if r["sklearn_over_ours"] is None else
          f"{r['sklearn_over_ours']:.2f}x",
          f"{r['rel_error']:.6f}",
          r["n_iter"] if r["n_iter"] is not None else it,
          f"{r['effective_gbs']:.1f}", f"{r['floor_s']:.3f}",
          f"{100 * r['floor_over_time']:.0f}%", f"{r['gflops']:.0f}"])
    return rows

  # ------------------------------------------------------------------ W1
  a = w1_matrix(0, m=m, n=n)
  bytes_a = a.nbytes
  nz_rows = int(np.any(a != 0, axis=1).sum())
  print(f"W1: A {a.shape} float32 ({bytes_a / 1e6:.1f} MB), "
        f"{100 * np.count_nonzero(a) / a.size:.1f}% nonzeros, "
        f"{m - nz_rows} all-zero rows ({100 * (m - nz_rows) / m:.0f}%)")
  aj = jnp.asarray(a)
  w0, h0 = nmf_init.initialize(aj, k, "random", jax.random.key(0))
  w0n, h0n = np.asarray(w0), np.asarray(h0)

  # The fair peer: the faster of OpenBLAS with all threads and with one.
  sk_runs = {t: run_sklearn(a[None], w0n[None], h0n[None], "mu", max_iter, k,
                            repeats, threads=t) for t in (None, 1)}
  for t, sk in sk_runs.items():
    add("W1", f"sklearn mu, {'all' if t is None else t} BLAS thread(s)",
        sk["best_s"], sk["rel_error"][0], max_iter, bytes_a, bytes_a)
  peer_threads = min(sk_runs, key=lambda t: sk_runs[t]["best_s"])
  sk_s = sk_runs[peer_threads]["best_s"]
  record["peer_threads"] = peer_threads

  def ours(label, **kw):
    fn = lambda it: nmf_lib.nmf(aj, k, init="custom", w_init=w0, h_init=h0,
                                max_iter=it or max_iter, tol=0, **kw)
    seconds, res = time_ours(fn, repeats)
    skip = kw.get("skip_zero_rows", True)
    read = (nz_rows * n * 4) if skip else bytes_a
    add("W1", label, seconds, float(res.rel_error), max_iter, bytes_a, read,
        sk_s)

  ours("jaxconcepts dense", skip_zero_rows=False)
  ours("jaxconcepts skip", skip_zero_rows=True)
  if args.compare_forms:  # transpose_a is the CPU default (ops.backend)
    ours("two-product, no a.T copy, dense", skip_zero_rows=False,
         transpose_a=False)

  if not args.no_cd:
    cd = run_sklearn(a[None], None, None, "cd", max_iter, k, repeats,
                     threads=peer_threads)
    seconds, res = time_ours(
        lambda it: nmf_lib.nmf(aj, k, max_iter=it or max_iter), repeats)
    add("W1 to tol", "sklearn cd (default)", cd["best_s"], cd["rel_error"][0],
        cd["n_iter"][0], bytes_a, bytes_a, n_iter=cd["n_iter"][0])
    add("W1 to tol", "jaxconcepts default (mu)", seconds,
        float(res.rel_error), int(res.n_iter), bytes_a, nz_rows * n * 4,
        cd["best_s"], n_iter=int(res.n_iter))

  # ------------------------------------------------------------------ W1b
  if not args.no_w1b:
    stack = np.stack([w1_matrix(s, m=m, n=n) for s in range(n_b)])
    sj = jnp.asarray(stack)
    keys = jax.random.split(jax.random.key(0), n_b)
    w0b, h0b = jax.vmap(
        lambda x, kk: nmf_init.initialize(x, k, "random", kk))(sj, keys)
    skb = run_sklearn(stack, np.asarray(w0b), np.asarray(h0b), "mu", max_iter,
                      k, 1, threads=peer_threads)
    bytes_b = stack.nbytes
    nz_b = int(np.any(stack != 0, axis=2).sum())
    print(f"W1b: {n_b} x {stack.shape[1:]} ({bytes_b / 1e6:.0f} MB), "
          f"{100 * (1 - nz_b / (n_b * m)):.0f}% all-zero rows")
    add("W1b", "sklearn mu (loop)", skb["best_s"],
        float(np.mean(skb["rel_error"])), max_iter, bytes_b, bytes_b)
    for label, skip in (("jaxconcepts vmap dense", False),
                        ("jaxconcepts vmap skip", True)):
      # nmf_batched takes its init from `key`; the same keys give the same
      # (w0, h0) as above (checked below through the error).
      fn = lambda it, skip=skip: nmf_lib.nmf_batched(
          sj, k, init="random", key=keys, max_iter=it or max_iter, tol=0,
          skip_zero_rows=skip)
      seconds, res = time_ours(fn, 1)
      read = nz_b * n * 4 if skip else bytes_b
      add("W1b", label, seconds, float(np.mean(np.asarray(res.rel_error))),
          max_iter, bytes_b, read, skb["best_s"])

  bw_end = read_bandwidth_gbs()
  bw = max(bw_start, bw_end)
  record.update(bandwidth_gbs=bw, bandwidth_start_gbs=bw_start,
                bandwidth_end_gbs=bw_end, rows=raw)
  headers = ["workload", "implementation", "seconds", "sklearn/ours",
             "rel error", "iters", "GB/s of A", "floor s", "floor/time",
             "GFLOP/s"]
  print()
  print(_common.format_table(table(bw), headers))
  print(f"\nread bandwidth {bw_start:.1f} GB/s at the start, {bw_end:.1f} at the "
        f"end; floor = iterations x bytes(A) / {bw:.1f} GB/s (A read once per "
        "iteration). GB/s of A = iterations x bytes(dense A) / seconds, also "
        "for 'skip', which reads only the nonzero rows. GFLOP/s: 4 m n k per "
        "iteration on the rows read. scikit-learn ratios use its faster "
        "configuration on W1 (OPENBLAS_NUM_THREADS="
        f"{'unset' if peer_threads is None else peer_threads}), also for cd "
        f"and W1b. Load average at the end: {os.getloadavg()} on "
        f"{os.cpu_count()} CPUs: figures are noisy when other jobs run.")
  if args.out:
    _common.write_json(args.out, record)


if __name__ == "__main__":
  main()
