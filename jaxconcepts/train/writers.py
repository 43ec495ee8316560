"""Where training reports: TensorBoard through clu's writer, clu's periodic actions.

Both come from clu, whose writers import TensorFlow (the `tfds` extra). The
plain package trains without them: no event files, progress in the log lines.
Only process 0 writes.
"""
from __future__ import annotations

from typing import Any, Mapping

from absl import logging

from jaxconcepts.train import distributed



class NullWriter:
  """A clu-MetricWriter stand-in that writes nothing (no TensorFlow, or not process 0)."""

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    del step, scalars

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    del hparams

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


def create_writer(logdir: str):
  """TensorBoard event files through clu's `SummaryWriter`, on process 0 only.

  The loop logs its own progress and evaluation lines, so the writer does not
  log (clu's default writer would print every scalar a second time). Without
  TensorFlow (the `tfds` extra) no events are written and this says so once.
  """
  if not distributed.is_main_process():
    return NullWriter()
  try:
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
    return metric_writers.SummaryWriter(logdir)
  except (ImportError, AttributeError):
    logging.warning("TensorFlow is not installed, so no TensorBoard events are written "
                    "(pip install 'jaxconcepts[tfds]'); metrics go to the log and JSON.")
    return NullWriter()


def periodic_actions() -> Any | None:
  """clu's `periodic_actions`, or None without TensorFlow (clu imports it with them): the
  plain package trains without it, its progress in the log lines alone."""
  try:
    from clu import periodic_actions  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return periodic_actions
