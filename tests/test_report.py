"""report.py: tables as JSON + Markdown, the one image-grid writer (both styles), and
`write_outputs` for evaluator outputs; a full disk.
"""
import contextlib
import errno
import json
import os

import matplotlib.image
import numpy as np
import pytest

from jaxconcepts import report
from jaxconcepts import utils
from tests import filesystems


def _grey(v, hw=(4, 6)):
  return np.full(hw, v, np.float32)


def test_write_table_writes_json_and_markdown_with_notes(tmp_path):
  stem = os.path.join(tmp_path, "results", "t")
  paths = report.write_table(stem, [{"a": 1, "b": 0.5}, {"a": 2, "c": np.float32(1e-7)}],
                             title="T", notes=["n1"], extra={"config": {"x": (1, 2)}})
  assert paths == (stem + ".json", stem + ".md")
  with open(stem + ".json") as f:
    doc = json.load(f)
  assert doc["columns"] == ["a", "b", "c"] and doc["rows"][1]["c"] == pytest.approx(1e-7)
  assert doc["config"] == {"x": [1, 2]} and doc["notes"] == ["n1"]
  with open(stem + ".md") as f:
    md = f.read()
  assert md.startswith("# T\n\n- n1\n\n| a | b | c |") and "| 2 |  | 1e-07 |" in md
  assert not [p for p in os.listdir(os.path.dirname(stem)) if ".tmp-" in p]


def test_write_tables_keeps_the_order_of_tables_and_columns(tmp_path):
  stem = os.path.join(tmp_path, "s")
  report.write_tables(stem, {"first": [{"z": True, "y": None}], "second": [{"q": "a|b"}]},
                      title="S", extra={"layer": "conv2a"})
  with open(stem + ".json") as f:
    doc = json.load(f)
  assert list(doc["tables"]) == ["first", "second"] and doc["layer"] == "conv2a"
  assert doc["tables"]["first"]["columns"] == ["z", "y"]
  with open(stem + ".md") as f:
    md = f.read()
  assert md.index("## first") < md.index("## second")
  assert "| yes |  |" in md and "a\\|b" in md


def test_to_jsonable_turns_numpy_and_tuples_into_json_types():
  out = report.to_jsonable({1: (np.int64(2), np.float32(0.5), np.bool_(True)),
                            "a": np.arange(2)})
  assert out == {"1": [2, 0.5, True], "a": [0, 1]}
  json.dumps(out)


@pytest.mark.parametrize("style", report.GRID_STYLES)
def test_one_image_grid_writer_draws_mixed_cells_in_both_styles(tmp_path, style):
  rgb = np.zeros((4, 6, 3), np.float32)
  rgb[..., 0] = 1.0
  many = np.zeros((4, 6, 9), np.float32)  # 9 channels: shown as grey (max)
  rows = [[_grey(0.2), rgb[..., :1] + 0.5, None], [many, rgb]]
  path = os.path.join(tmp_path, "figs", f"grid_{style}.png")
  assert report.save_image_grid(path, rows, row_labels=["r0", "r1"],
                                col_labels=["a", "b", "c"], title="t", style=style) == path
  image = matplotlib.image.imread(path)
  assert image.ndim == 3 and image.shape[0] > 20 and image.shape[1] > 20
  assert not [p for p in os.listdir(os.path.dirname(path)) if ".tmp-" in p]


def test_image_grid_errors(tmp_path):
  path = os.path.join(tmp_path, "x.png")
  with pytest.raises(ValueError, match="grid style"):
    report.save_image_grid(path, [[_grey(0.5)]], style="collage")
  with pytest.raises(ValueError, match="nothing to draw"):
    report.save_image_grid(path, [[None]], style="mosaic")


def test_mosaic_tiles_cells_padded_to_the_largest_with_gaps():
  # pylint: disable=protected-access
  rows = report._grid_cells([[_grey(0.25, (2, 2)), _grey(2.0, (1, 2))], [None]])
  canvas, ch, cw = report._tile(rows, gap=1, gap_value=0.5)
  assert (ch, cw) == (2, 2) and canvas.shape == (2 * 3 + 1, 2 * 3 + 1)
  np.testing.assert_array_equal(canvas[1:3, 1:3], 0.25)
  np.testing.assert_array_equal(canvas[1, 4:6], 1.0)  # clipped to [0, 1]
  assert canvas[2, 4] == 0.5  # the smaller cell keeps the gap value below it
  np.testing.assert_array_equal(canvas[4:6, 1:3], 0.0)  # blank cell
  np.testing.assert_array_equal(canvas[4:6, 4:6], 0.0)  # missing cell of a short row
  assert canvas[0, 0] == canvas[3, 3] == 0.5


def test_write_outputs_writes_tables_and_figures_in_order_with_extra_first(tmp_path):
  outputs = [report.Figure("sub/f.png", [[_grey(0.1)]], ["r"], None, "fig"),
             report.TableSet("t", "T", {"rows": [{"a": 1}]}, ["note"], {"layer": "l"})]
  files = report.write_outputs(str(tmp_path), outputs, extra={"config": {"k": 1}})
  assert files == [os.path.join(tmp_path, "figures", "sub", "f.png"),
                   os.path.join(tmp_path, "results", "t.json"),
                   os.path.join(tmp_path, "results", "t.md")]
  with open(files[1]) as f:
    doc = json.load(f)
  assert list(doc)[-2:] == ["config", "layer"] and doc["tables"]["rows"]["rows"] == [{"a": 1}]
  assert os.path.isdir(os.path.join(tmp_path, "figures"))


def _fill(folder):
  """Writes a filler file until the filesystem of `folder` answers ENOSPC."""
  fd = os.open(os.path.join(folder, "filler"), os.O_CREAT | os.O_WRONLY)
  try:
    for chunk in (1 << 16, 1 << 12, 1):
      try:
        while os.write(fd, b"\0" * chunk):
          pass
      except OSError as e:
        assert e.errno == errno.ENOSPC
  finally:
    os.close(fd)


def test_a_full_disk_is_one_line_naming_the_file_and_the_previous_results_stay_whole(tmp_path):
  disk = str(tmp_path / "disk")
  with filesystems.small_tmpfs(disk, 1 << 20) as mounted, contextlib.ExitStack() as stack:
    print("MODE", "tmpfs" if mounted else "simulated")
    stem = os.path.join(disk, "results", "t")
    report.write_table(stem, [{"a": 1}], title="before")
    if mounted:
      _fill(disk)
    else:
      stack.enter_context(filesystems.simulated_full_disk(disk))
    with pytest.raises(utils.DiskFullError, match=f"^disk full: cannot write {stem}.json "):
      report.write_table(stem, [{"a": i} for i in range(20000)], title="after")
    png = os.path.join(disk, "figures", "g.png")
    with pytest.raises(utils.DiskFullError, match=f"^disk full: cannot write {png} "):
      report.save_image_grid(png, [[np.random.default_rng(0).uniform(size=(64, 64))] * 8] * 8)
    with open(stem + ".json") as f:
      assert json.load(f)["title"] == "before"  # the previous result, whole
    left = os.listdir(os.path.dirname(stem)) + os.listdir(os.path.dirname(png))
    assert not [p for p in left if ".tmp-" in p] and not os.path.exists(png)
