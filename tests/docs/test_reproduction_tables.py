"""docs/reproduction_tables.py: the layers table read from several workdirs."""

import importlib.util
import json
import os

import pytest

_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "reproduction_tables.py")


@pytest.fixture(name="tables")
def _tables():
  spec = importlib.util.spec_from_file_location("reproduction_tables", _PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _workdir(root, name, rows):
  path = os.path.join(root, name, "results")
  os.makedirs(path)
  with open(os.path.join(path, "cladec_layers.json"), "w") as f:
    json.dump({"rows": rows}, f)
  return os.path.join(root, name)


def _row(layer, rec_c, rec_r, acc_c, acc_r, status="ok"):
  return {"layer": layer, "rec_cladec_mean": rec_c, "rec_refae_mean": rec_r,
          "acc_eval_cladec": acc_c, "acc_eval_refae": acc_r, "status": status}


def test_layers_table_joins_the_rows_of_comma_joined_workdirs(tables, tmp_path):
  a = _workdir(tmp_path, "a", [_row("-1 (logits)", 0.04, 0.03, 0.9, 0.7),
                               _row("-3 (conv4a)", 0.03, 0.02, 0.8, 0.7)])
  b = _workdir(tmp_path, "b", [_row("-2 (conv4)", 0.035, 0.025, 0.85, 0.7),
                               _row("-3 (conv4a)", 0.5, 0.4, 0.1, 0.1, "collapsed")])
  text = tables.layers_table(f"{a},{b}", "vgg")
  lines = [x for x in text.splitlines() if x.startswith("| -")]
  assert [x.split(" | ")[0] for x in lines] == ["| -1 (logits)", "| -2 (conv4)", "| -3 (conv4a)"]
  assert "0.5" not in lines[2]  # the first workdir's row of a layer wins
  assert "3 of 3 layers" in text and "health" not in text.split("\n- ")[-1]
  only_a = tables.layers_table(a, "vgg")
  assert "2 of 2 layers" in only_a
  assert tables.layers_table(str(tmp_path / "missing"), "vgg") is None
