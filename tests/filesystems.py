"""Small real filesystems for fault tests: a full disk and a read-only folder.

`small_tmpfs(path, size)` mounts a tmpfs of `size` bytes at `path` (root and a
kernel that allows it: CI's Debian machine and this sandbox do). Where mounting
is refused, the tests that use it fall back to `simulated_full_disk`, which
makes the OS boundary our code writes through answer ENOSPC (or EROFS) for
paths under a folder: Python's `open` for writing, `os.open` with O_CREAT, and
`shutil.disk_usage` (0 bytes free). Each test says which one it ran (`MODE`
in its output), so a fallback is never silent; JAXCONCEPTS_NO_MOUNT=1 forces it.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import shutil
import subprocess
from typing import Iterator


def _mount(args: list[str]) -> bool:
  if os.environ.get("JAXCONCEPTS_NO_MOUNT"):  # to run the fallback where mounting works
    return False
  try:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
  except (OSError, subprocess.TimeoutExpired):
    return False
  return proc.returncode == 0


@contextlib.contextmanager
def small_tmpfs(path: str, size: int, *, read_only: bool = False) -> Iterator[bool]:
  """Mounts a tmpfs of `size` bytes at `path` for the block; yields whether it mounted.

  Unmounted (lazily, so a process still holding a file cannot block it) at the end.
  """
  os.makedirs(path, exist_ok=True)
  opts = f"size={size}" + (",ro" if read_only else "")
  mounted = _mount(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", path])
  try:
    yield mounted
  finally:
    if mounted:
      subprocess.run(["umount", "-l", path], capture_output=True, timeout=30)


def resize(path: str, size: int) -> None:
  """Grows (or shrinks) a tmpfs mounted by `small_tmpfs`, keeping its files."""
  subprocess.run(["mount", "-o", f"remount,size={size}", path], check=True,
                 capture_output=True, timeout=30)


def remount_read_only(path: str) -> None:
  """Makes a tmpfs mounted by `small_tmpfs` read-only, keeping its files."""
  subprocess.run(["mount", "-o", "remount,ro", path], check=True, capture_output=True,
                 timeout=30)


@contextlib.contextmanager
def simulated_full_disk(folder: str, code: int = errno.ENOSPC) -> Iterator[None]:
  """ENOSPC (or `code`, e.g. EROFS) for every write under `folder`, in this process."""
  folder = os.path.abspath(folder)
  under = lambda p: os.path.abspath(os.fspath(p)).startswith(folder + os.sep)
  real_open, real_os_open, real_usage = builtins.open, os.open, shutil.disk_usage

  def full(p):
    return OSError(code, os.strerror(code), os.fspath(p))

  def fake_open(file, mode="r", *args, **kwargs):
    if isinstance(file, (str, os.PathLike)) and under(file) and set(mode) & set("wax+"):
      raise full(file)
    return real_open(file, mode, *args, **kwargs)

  def fake_os_open(p, flags, *args, **kwargs):
    if under(p) and flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR):
      raise full(p)
    return real_os_open(p, flags, *args, **kwargs)

  def fake_usage(p):
    usage = real_usage(p)
    return usage._replace(free=0) if under(os.path.join(p, "x")) else usage

  builtins.open, os.open, shutil.disk_usage = fake_open, fake_os_open, fake_usage
  try:
    yield
  finally:
    builtins.open, os.open, shutil.disk_usage = real_open, real_os_open, real_usage
