"""Test-wide setup.

Eight host devices are forced before JAX is imported so that multi-device tests
can compare a 1-device mesh with an 8-device mesh in one process. Single-device
code still runs on device 0.
"""
import os

_FLAG = "--xla_force_host_platform_device_count=8"
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# A persistent XLA compilation cache shared by the test processes (pytest-xdist workers and the
# train.py subprocesses compile many identical programs; XLA:CPU compiles are slow).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(os.environ.get("TMPDIR", "/tmp"), "jaxconcepts-test-xla-cache"))


# ---------------------------------------------------------------------------
# Scheduling under pytest-xdist (`-n 2`): the long tests first, shared out
# ---------------------------------------------------------------------------
# The `slow` tests (each from about 30 s to several minutes on 2 cores) sit late in
# the collection (tests/programs, tests/train). Under xdist's default scheduling they
# ran last, and one worker finished minutes before the other. Here each worker's
# share of the collection starts with its share of the slow tests, and a worker that
# runs out of tests takes half of the other's remaining queue (xdist's work
# stealing), so the run ends with short tests on both workers.


def pytest_xdist_make_scheduler(config, log):
  """Work stealing instead of xdist's chunked load scheduling."""
  from xdist.scheduler import WorkStealingScheduling  # pylint: disable=g-import-not-at-top
  return WorkStealingScheduling(config, log)


def _share_sizes(n_items: int, n_workers: int) -> list[int]:
  """How xdist's work stealing first splits `n_items` over `n_workers` idle workers."""
  sizes, left = [], n_items
  for i in range(n_workers):
    sizes.append(left // (n_workers - i))
    left -= sizes[-1]
  return sizes


def slow_first_order(items: list, is_slow, n_workers: int) -> list:
  """Reorders `items` so that each worker's first share begins with every n-th slow item.

  Args:
    items: the collected tests, in collection order.
    is_slow: item -> bool.
    n_workers: the number of xdist workers.

  Returns:
    The same items; within the slow and within the other tests collection order is kept.
  """
  slow = [it for it in items if is_slow(it)]
  rest = [it for it in items if not is_slow(it)]
  sizes = _share_sizes(len(items), n_workers)
  heads = [slow[i::n_workers] for i in range(n_workers)]
  if n_workers < 2 or any(len(h) > s for h, s in zip(heads, sizes)):
    return slow + rest
  out, taken = [], 0
  for head, size in zip(heads, sizes):
    fill = size - len(head)
    out += head + rest[taken:taken + fill]
    taken += fill
  return out


def pytest_collection_modifyitems(config, items):
  del config
  n_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
  items[:] = slow_first_order(items, lambda it: it.get_closest_marker("slow") is not None,
                              n_workers)
