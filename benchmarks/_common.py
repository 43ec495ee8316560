"""Small helpers shared by the side-by-side benchmarks.

Timing (best of a few repeats, after a warm-up call), the machine's float32
matmul peak measured in the same process, a plain-text table and JSON output.
Nothing here imports a peer library; peers are imported lazily by each script.
"""
import json
import os
import platform
import statistics
import time
from typing import Any, Callable, Sequence


def block(x: Any) -> Any:
  """Waits for JAX arrays in `x` (any pytree); a no-op for other values."""
  try:
    import jax  # pylint: disable=g-import-not-at-top
    return jax.block_until_ready(x)
  except ImportError:
    return x


def time_call(fn: Callable[[], Any], *, repeats: int = 3,
              warmup: int = 1) -> dict[str, float]:
  """Times `fn()` (blocking on JAX results).

  Args:
    fn: zero-argument callable.
    repeats: timed calls.
    warmup: untimed calls first (compilation, caches).

  Returns:
    dict with `first_s` (the first call, compilation included, or nan if
    warmup == 0), `best_s`, `median_s` and `all_s`.
  """
  first = float("nan")
  for i in range(warmup):
    t0 = time.perf_counter()
    block(fn())
    if i == 0:
      first = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    block(fn())
    times.append(time.perf_counter() - t0)
  return {"first_s": first, "best_s": min(times),
          "median_s": statistics.median(times), "all_s": times}


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> dict[str, float]:
  """Measures float32 (n, n) @ (n, n) throughput with jax.jit and numpy.

  Returns:
    dict with `jax_gflops`, `numpy_gflops` and `peak_gflops` (the larger),
    each the best of `repeats` calls.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  a = rng.standard_normal((n, n), dtype=np.float32)
  b = rng.standard_normal((n, n), dtype=np.float32)
  flops = 2.0 * n ** 3
  ja, jb = jnp.asarray(a), jnp.asarray(b)
  mm = jax.jit(jnp.matmul)
  t_jax = time_call(lambda: mm(ja, jb), repeats=repeats)["best_s"]
  t_np = time_call(lambda: a @ b, repeats=repeats)["best_s"]
  out = {"jax_gflops": flops / t_jax / 1e9, "numpy_gflops": flops / t_np / 1e9}
  out["peak_gflops"] = max(out.values())
  return out


def matmul_sustained_gflops(n: int = 2048, seconds: float = 3.0) -> float:
  """Float32 (n, n) matmul throughput with jax.jit averaged over `seconds`.

  On a shared machine the best of a few short calls (`matmul_peak_gflops`)
  catches quiet moments; this is the rate a long computation can expect.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.standard_normal((n, n), dtype=np.float32))
  mm = jax.jit(jnp.matmul)
  block(mm(a, a))
  calls, t0 = 0, time.perf_counter()
  while time.perf_counter() - t0 < seconds:
    block(mm(a, a))
    calls += 1
  return 2.0 * n ** 3 * calls / (time.perf_counter() - t0) / 1e9


def machine_info() -> dict[str, Any]:
  """CPU count, platform and load average, for the JSON record."""
  info = {"platform": platform.platform(), "cpu_count": os.cpu_count()}
  if hasattr(os, "getloadavg"):
    info["loadavg"] = os.getloadavg()
  return info


def format_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
  """Formats rows as a left-aligned plain-text table."""
  cells = [[str(h) for h in headers]] + [
      [f"{v:.4g}" if isinstance(v, float) else str(v) for v in r] for r in rows]
  widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
  lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def write_json(path: str, obj: Any) -> None:
  """Writes `obj` as indented JSON (numpy scalars converted with float())."""
  with open(path, "w") as f:
    json.dump(obj, f, indent=2, default=float)
