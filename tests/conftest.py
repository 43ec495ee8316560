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
