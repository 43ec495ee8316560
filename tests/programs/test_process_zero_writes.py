"""Process 0 alone writes results, figures and run records; every process computes them.

`jax.process_index` is patched to 1 (a non-main process of a multi-host run) around the
writers, then to 0; checkpoints are not touched here (every process writes them, via orbax).
"""
import os

import jax
import numpy as np
import pytest

from jaxconcepts import report
from jaxconcepts.models import classifiers as models
from jaxconcepts.programs import cladec_plan
from jaxconcepts.programs import cli
from jaxconcepts.programs import sweep

_SMALL = dict(widths=(8, 8, 8, 8, 16, 16, 16, 16))


def _files(root):
  return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root)
                for f in fs)


def _write_everything(root):
  """Every writer of tables, figures and records once under `root`; their returned paths."""
  rows = [{"a": 1, "b": 0.5}]
  image = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4, 1)
  paths = list(report.write_table(os.path.join(root, "t"), rows, title="t"))
  paths += report.write_tables(os.path.join(root, "ts"), {"x": rows}, title="ts")
  paths.append(report.save_image_grid(os.path.join(root, "g.png"), [[image]]))
  paths += report.write_outputs(root, [report.TableSet("o", "o", {"x": rows}, [], {}),
                                       report.Figure("f.png", [[image]], ["r"], None, "f")])
  paths.append(sweep.plot_metric(os.path.join(root, "sweep.png"),
                                 [{"lr": 0.1, "acc": 0.5}, {"lr": 1.0, "acc": 0.7}], ["lr"],
                                 "acc"))
  plan = type("Plan", (), {"workdir": root})()
  cladec_plan.record_stage(plan, "stage", 1.5, epochs=2)
  return paths


@pytest.mark.parametrize("index", [1, 0])
def test_the_writers_write_on_process_zero_only_and_return_the_same_paths(tmp_path, monkeypatch,
                                                                           index):
  monkeypatch.setattr(jax, "process_index", lambda *a, **k: index)
  root = str(tmp_path)
  paths = _write_everything(root)
  expected = ["f.png", "g.png", "o.json", "o.md", "sweep.png", "t.json", "t.md", "ts.json",
              "ts.md"]
  assert sorted(os.path.basename(p) for p in paths) == expected
  if index:
    assert _files(root) == []  # no file, and no results/ or figures/ folder either
    assert os.listdir(root) == []
  else:
    written = _files(root)
    assert written == sorted([os.path.relpath(p, root) for p in paths]
                             + [cladec_plan.STAGES_FILE])
    assert all(os.path.getsize(os.path.join(root, p)) > 0 for p in written)


@pytest.mark.slow
def test_a_quick_run_evaluated_on_process_one_writes_no_results_but_returns_them(tmp_path,
                                                                                 monkeypatch):
  create = models.create_model
  monkeypatch.setattr(models, "create_model",
                      lambda arch, n, **kw: create(arch, n, **{**_SMALL, **kw}))
  from configs import quickstart  # pylint: disable=g-import-not-at-top
  c = quickstart.get_config("epochs=1")
  c.data.max_train, c.data.max_test, c.eval_batch_size = 64, 40, 40
  workdir = str(tmp_path / "run")
  cli.train_and_evaluate(c, workdir)  # process 0 (orbax saves need the primary host)
  results = os.path.join(workdir, report.RESULTS_DIR)
  monkeypatch.setattr(jax, "process_index", lambda *a, **k: 1)
  other = cli.evaluate(c, workdir)
  assert not os.path.exists(results)
  assert other["per_class"][-1]["n"] == 40 and 0.0 <= other["test_accuracy"] <= 1.0
  monkeypatch.setattr(jax, "process_index", lambda *a, **k: 0)
  main = cli.evaluate(c, workdir)
  assert main == other
  assert sorted(os.listdir(results)) == ["classifier.json", "classifier.md"]
  rows = report.to_jsonable(main["per_class"])
  import json  # pylint: disable=g-import-not-at-top
  with open(os.path.join(results, "classifier.json")) as f:
    assert json.load(f)["rows"] == rows
