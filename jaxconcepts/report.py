"""Results as JSON plus a readable Markdown table, and PNG image grids.

Every table is written twice under the same stem: `<stem>.json` (machine
readable: {"title", "notes", "columns", "rows"}) and `<stem>.md` (a Markdown
table with the title and the notes above it, e.g. which rec reduction, how many
epochs and seeds produced it). Writes go through a temporary file and a rename
(`utils.write_text_atomic`, PNGs too), so an interrupted run never leaves half a
result behind, and a full disk is one line (`utils.DiskFullError`) that names
the file, with the previous file, if any, intact.

In a multi-host run every process computes the same outputs, but only process 0
(`train.distributed.is_main_process`) writes them: the writers here return the
same paths on every process and touch the disk only on process 0. This is the
one guard for every table and figure of the programs.

Images go to PNG through one writer, :func:`save_image_grid`, in two styles:
one axes per cell (``"axes"``: each cell keeps its own aspect and the labels
sit on the cells) or one tiled image (``"mosaic"``: a single `imshow`, which
stays fast for figures of dozens of crops).

Evaluators return their outputs as values, `TableSet` (named tables for one
file pair) and `Figure` (one image grid); :func:`write_outputs` writes a list
of them under a program's workdir, in order.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from jaxconcepts.train.distributed import is_main_process
from jaxconcepts.utils import check_choice
from jaxconcepts.utils import write_file_atomic
from jaxconcepts.utils import write_text_atomic

GRID_STYLES = ("axes", "mosaic")
RESULTS_DIR = "results"
FIGURES_DIR = "figures"


def _fmt(value: Any, digits: int) -> str:
  if isinstance(value, (bool, np.bool_)):
    return "yes" if value else "no"
  if isinstance(value, (int, np.integer)):
    return str(int(value))
  if isinstance(value, (float, np.floating)):
    v = float(value)
    if math.isnan(v):
      return "n/a"
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 10 ** -digits):
      return f"{v:.{digits}g}"
    return f"{v:.{digits}f}"
  if value is None:
    return ""
  return str(value).replace("|", "\\|").replace("\n", " ")


def to_jsonable(value: Any) -> Any:
  """`value` with numpy scalars / arrays and tuples turned into JSON types.

  Args:
    value: nested mappings, sequences, numpy arrays and scalars.

  Returns:
    The same structure of dicts (string keys), lists, ints, floats and bools.
  """
  if isinstance(value, Mapping):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (np.floating,)):
    return float(value)
  if isinstance(value, (np.bool_,)):
    return bool(value)
  return value


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
  """Every key of `rows`, in first-seen order."""
  columns = []
  for row in rows:
    columns.extend(k for k in row if k not in columns)
  return columns


def _header(title: str, notes: Sequence[str]) -> list[str]:
  """The Markdown title and the notes as a bullet list (lines)."""
  md = [f"# {title}", ""]
  md += [f"- {n}" for n in notes]
  if notes:
    md.append("")
  return md


def _json_text(payload: Mapping[str, Any]) -> str:
  return json.dumps(payload, indent=2, allow_nan=True) + "\n"


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
                   digits: int = 4) -> str:
  """A GitHub Markdown table of `rows` (dicts) over `columns` (default: all keys).

  Args:
    rows: one dict per row; missing keys are empty cells.
    columns: column order (default: keys in first-seen order).
    digits: decimals of floats (tiny or huge values in `g` format).

  Returns:
    The table's lines joined by newlines (no trailing newline).
  """
  if columns is None:
    columns = _columns(rows)
  lines = ["| " + " | ".join(columns) + " |",
           "|" + "|".join("---" for _ in columns) + "|"]
  for row in rows:
    lines.append("| " + " | ".join(_fmt(row.get(c), digits) for c in columns) + " |")
  return "\n".join(lines)


def write_table(stem: str, rows: Sequence[Mapping[str, Any]], *, title: str,
                notes: Sequence[str] = (), columns: Sequence[str] | None = None,
                extra: Mapping[str, Any] | None = None, digits: int = 4) -> tuple[str, str]:
  """Writes `<stem>.json` and `<stem>.md`; returns both paths.

  Args:
    stem: path without extension, e.g. `workdir/results/cladec_layers`.
    rows: one dict per table row.
    title: a heading for the Markdown file.
    notes: lines shown under the title (settings that produced the table).
    columns: column order (default: keys in first-seen order).
    extra: more JSON fields (e.g. the config).
    digits: decimals in the Markdown table.

  Returns:
    The two paths; written by process 0 only (the others return them unwritten).
  """
  if not is_main_process():
    return stem + ".json", stem + ".md"
  rows = [dict(r) for r in rows]
  if columns is None:
    columns = _columns(rows)
  payload = {"title": title, "notes": list(notes), "columns": list(columns),
             "rows": to_jsonable(rows)}
  if extra:
    payload.update(to_jsonable(dict(extra)))
  write_text_atomic(stem + ".json", _json_text(payload))
  md = _header(title, notes) + [markdown_table(rows, columns, digits)]
  write_text_atomic(stem + ".md", "\n".join(md) + "\n")
  return stem + ".json", stem + ".md"


def write_tables(stem: str, tables: Mapping[str, Sequence[Mapping[str, Any]]], *,
                 title: str, notes: Sequence[str] = (),
                 columns: Mapping[str, Sequence[str]] | None = None,
                 extra: Mapping[str, Any] | None = None,
                 digits: int = 4) -> tuple[str, str]:
  """Like `write_table` for several named tables in one file pair.

  `<stem>.json` holds {"title", "notes", "tables": {name: {"columns", "rows"}},
  **extra}; `<stem>.md` the title, the notes, then one `## name` section with a
  Markdown table per entry of `tables` (in order).

  Args:
    stem: path without extension.
    tables: {name: rows}, rows one dict per table row.
    title: a heading for the Markdown file.
    notes: lines shown under the title.
    columns: optional {name: column order} (default: keys in first-seen order).
    extra: more JSON fields (e.g. the config).
    digits: decimals in the Markdown tables.

  Returns:
    The two paths; written by process 0 only (the others return them unwritten).
  """
  if not is_main_process():
    return stem + ".json", stem + ".md"
  columns = dict(columns or {})
  payload: dict[str, Any] = {"title": title, "notes": list(notes), "tables": {}}
  md = _header(title, notes)
  for name, rows in tables.items():
    rows = [dict(r) for r in rows]
    cols = columns.get(name)
    if cols is None:
      cols = _columns(rows)
    payload["tables"][name] = {"columns": list(cols), "rows": to_jsonable(rows)}
    md += [f"## {name}", "", markdown_table(rows, cols, digits), ""]
  if extra:
    payload.update(to_jsonable(dict(extra)))
  write_text_atomic(stem + ".json", _json_text(payload))
  write_text_atomic(stem + ".md", "\n".join(md))
  return stem + ".json", stem + ".md"


# ---------------------------------------------------------------------------
# Image grids.


def _cell(image: Any) -> np.ndarray | None:
  """One grid cell as (h, w) grey or (h, w, 3) RGB float32 in [0, 1].

  A single channel is squeezed; other channel counts than 1 or 3 (e.g. the
  9-channel toy images of the tests) are shown as grey, the max over channels.
  """
  if image is None:
    return None
  image = np.asarray(image, np.float32)
  if image.ndim == 3 and image.shape[-1] not in (1, 3):
    image = image.max(axis=-1, keepdims=True)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  return np.clip(image, 0, 1)


def _grid_cells(images: Any) -> list[list[np.ndarray | None]]:
  """Rows of cells (see `_cell`); raises if there is nothing to draw."""
  rows = [[_cell(im) for im in r] for r in images]
  if not any(im is not None for r in rows for im in r):
    raise ValueError("images is empty: nothing to draw")
  return rows


def _draw_axes(plt: Any, rows: list[list[np.ndarray | None]],
               row_labels: Sequence[str] | None, col_labels: Sequence[str] | None,
               title: str | None, cell_inches: float, cmap: str) -> Any:
  """One axes per cell, labels on the first column / row; returns the figure."""
  n_rows, n_cols = len(rows), max(len(r) for r in rows)
  fig, axes = plt.subplots(n_rows, n_cols, squeeze=False,
                           figsize=(cell_inches * n_cols + 1.0, cell_inches * n_rows + 0.6))
  for i in range(n_rows):
    for j in range(n_cols):
      ax = axes[i][j]
      ax.set_xticks([])
      ax.set_yticks([])
      img = rows[i][j] if j < len(rows[i]) else None
      if img is None:
        ax.axis("off")
        continue
      if img.ndim == 2:
        ax.imshow(img, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
      else:
        ax.imshow(img, interpolation="nearest")
      if row_labels is not None and j == 0:
        ax.set_ylabel(row_labels[i], fontsize=7)
      if col_labels is not None and i == 0 and j < len(col_labels):
        ax.set_title(col_labels[j], fontsize=7)
  if title:
    fig.suptitle(title, fontsize=9)
  return fig


def _tile(rows: list[list[np.ndarray | None]], gap: int,
          gap_value: float) -> tuple[np.ndarray, int, int]:
  """The cells tiled into one array, each padded to the largest cell, blank cells 0.

  Returns:
    (canvas (H, W) or (H, W, 3) float32, cell height, cell width).
  """
  cells = [im for r in rows for im in r if im is not None]
  rgb = any(im.ndim == 3 for im in cells)
  ch = max(im.shape[0] for im in cells)
  cw = max(im.shape[1] for im in cells)
  n_rows, n_cols = len(rows), max(len(r) for r in rows)
  shape = (n_rows * (ch + gap) + gap, n_cols * (cw + gap) + gap) + ((3,) if rgb else ())
  canvas = np.full(shape, gap_value, np.float32)
  for i, r in enumerate(rows):
    for j in range(n_cols):
      im = r[j] if j < len(r) else None
      y, x = gap + i * (ch + gap), gap + j * (cw + gap)
      if im is None:
        canvas[y:y + ch, x:x + cw] = 0.0
        continue
      if rgb and im.ndim == 2:
        im = np.repeat(im[..., None], 3, axis=-1)
      canvas[y:y + im.shape[0], x:x + im.shape[1]] = im
  return canvas, ch, cw


def _draw_mosaic(plt: Any, rows: list[list[np.ndarray | None]],
                 row_labels: Sequence[str] | None, col_labels: Sequence[str] | None,
                 title: str | None, cell_inches: float, cmap: str, gap: int,
                 gap_value: float) -> Any:
  """All cells in one `imshow`, labels as tick labels; returns the figure."""
  canvas, ch, cw = _tile(rows, gap, gap_value)
  n_rows, n_cols = len(rows), max(len(r) for r in rows)
  per_px = cell_inches / max(ch, cw)  # the larger side of a cell is cell_inches
  fig, ax = plt.subplots(figsize=(max(canvas.shape[1] * per_px, 1.2 * n_cols) + 2.0,
                                  canvas.shape[0] * per_px + 1.0))
  ax.imshow(canvas, cmap=None if canvas.ndim == 3 else cmap, vmin=0, vmax=1,
            interpolation="nearest")
  ax.set_xticks([gap + j * (cw + gap) + cw / 2 for j in range(n_cols)])
  ax.set_xticklabels(list(col_labels or [""] * n_cols)[:n_cols], fontsize=7)
  ax.xaxis.tick_top()
  ax.set_yticks([gap + i * (ch + gap) + ch / 2 for i in range(n_rows)])
  ax.set_yticklabels(list(row_labels or [""] * n_rows)[:n_rows], fontsize=7)
  ax.tick_params(length=0)
  for spine in ax.spines.values():
    spine.set_visible(False)
  if title:
    ax.set_title(title, fontsize=9, pad=18 if col_labels else 6)
  return fig


def save_image_grid(path: str, images: Any, *, row_labels: Sequence[str] | None = None,
                    col_labels: Sequence[str] | None = None, title: str | None = None,
                    style: str = "axes", cell_inches: float | None = None,
                    cmap: str = "gray", gap: int = 1, gap_value: float = 0.5) -> str:
  """Saves a grid of images (rows x cols) as a PNG, written atomically.

  Args:
    path: output .png path (folders are created).
    images: rows of images (or an array (R, C, h, w, ch)); each (h, w),
      (h, w, 1), (h, w, 3) or (h, w, ch) in [0, 1] (clipped): RGB shown as is,
      one channel with `cmap`, other channel counts as grey (max over
      channels). None leaves a blank cell.
    row_labels: one label per row (shown left of the first column).
    col_labels: one label per column (shown above the first row).
    title: optional figure title.
    style: "axes" (one axes per cell) or "mosaic" (one tiled image; the cells
      are padded to the largest, `gap` pixels of `gap_value` between them).
    cell_inches: size of one cell (default 1.2 for "axes", 0.9 for "mosaic").
    cmap: colour map of grey cells.
    gap: separator width in pixels ("mosaic").
    gap_value: separator value ("mosaic").

  Returns:
    `path`; drawn and written by process 0 only (the others return it unwritten).

  Raises:
    ValueError: an unknown style, or no image at all.
  """
  check_choice("grid style", style, GRID_STYLES)
  if not is_main_process():
    return path
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  rows = _grid_cells(images)
  if style == "axes":
    fig = _draw_axes(plt, rows, row_labels, col_labels, title,
                     1.2 if cell_inches is None else cell_inches, cmap)
  else:
    fig = _draw_mosaic(plt, rows, row_labels, col_labels, title,
                       0.9 if cell_inches is None else cell_inches, cmap, gap, gap_value)
  fig.tight_layout()
  try:
    write_file_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"), ".png")
  finally:
    plt.close(fig)
  return path


# ---------------------------------------------------------------------------
# Evaluator outputs.


class TableSet(NamedTuple):
  """Named tables for one `<stem>.json` / `<stem>.md` pair (:func:`write_tables`).

  Attributes:
    stem: the file name without extension.
    title: the Markdown heading.
    tables: {name: rows}, in order; rows are dicts.
    notes: the settings that produced the tables.
    extra: more JSON fields.
  """
  stem: str
  title: str
  tables: dict[str, list[dict[str, Any]]]
  notes: list[str]
  extra: dict[str, Any]


class Figure(NamedTuple):
  """One image grid for :func:`save_image_grid`.

  Attributes:
    path: the file name under the figures folder, e.g. "concepts/class_003.png".
    images: rows of images, each (h, w, C) float in [0, 1].
    row_labels: one per row.
    col_labels: one per column (or None).
    title: the figure title.
  """
  path: str
  images: list[list[np.ndarray]]
  row_labels: list[str]
  col_labels: list[str] | None
  title: str


def write_outputs(workdir: str, outputs: Sequence[TableSet | Figure], *,
                  extra: Mapping[str, Any] | None = None, style: str = "mosaic") -> list[str]:
  """Writes tables under workdir/results and figures under workdir/figures.

  Both folders are created even when there is nothing to put in one (on process 0; the
  other processes of a multi-host run write nothing, see the module doc).

  Args:
    workdir: the program's output folder.
    outputs: tables and figures, written in this order.
    extra: JSON fields put first in every table file (e.g. {"config": ...}).
    style: the figures' `save_image_grid` style.

  Returns:
    The paths written, in order (two per table set, one per figure); the same on every
    process.
  """
  results_dir = os.path.join(workdir, RESULTS_DIR)
  figures_dir = os.path.join(workdir, FIGURES_DIR)
  if is_main_process():
    os.makedirs(results_dir, exist_ok=True)
    os.makedirs(figures_dir, exist_ok=True)
  files = []
  for out in outputs:
    if isinstance(out, Figure):
      files.append(save_image_grid(
          os.path.join(figures_dir, out.path), out.images, row_labels=out.row_labels,
          col_labels=out.col_labels, title=out.title, style=style))
    else:
      files += write_tables(os.path.join(results_dir, out.stem), out.tables, title=out.title,
                            notes=out.notes, extra={**(extra or {}), **out.extra})
  return files
