"""Environments for the tests' subprocesses (train.py runs, multi-process workers)."""

import os

FAST_COMPILES = "--xla_backend_optimization_level=0"


def with_fast_compiles(env: dict | None = None) -> dict:
  """A copy of `env` (default: this process's) whose XLA:CPU compiles run at -O0.

  Compiles dominate the short train.py runs of the tests. Every run that a test compares
  with another must use the same flags: -O0 changes the float results slightly.
  """
  env = dict(os.environ if env is None else env)
  env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {FAST_COMPILES}".strip()
  return env
