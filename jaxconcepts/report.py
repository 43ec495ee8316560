"""Results as JSON plus a readable Markdown table, and PNG image grids.

Every table is written twice under the same stem: `<stem>.json` (machine
readable: {"title", "notes", "columns", "rows"}) and `<stem>.md` (a Markdown
table with the title and the notes above it, e.g. which rec reduction, how many
epochs and seeds produced it). Writes go through a temporary file and a rename,
so an interrupted run never leaves half a result behind.
"""

import json
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np


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


def _to_jsonable(value: Any) -> Any:
  if isinstance(value, Mapping):
    return {str(k): _to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_to_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (np.floating,)):
    return float(value)
  if isinstance(value, (np.bool_,)):
    return bool(value)
  return value


def _atomic_write(path: str, text: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
                   digits: int = 4) -> str:
  """A GitHub Markdown table of `rows` (dicts) over `columns` (default: all keys)."""
  if columns is None:
    columns = []
    for row in rows:
      columns.extend(k for k in row if k not in columns)
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
  """
  rows = [dict(r) for r in rows]
  if columns is None:
    columns = []
    for row in rows:
      columns.extend(k for k in row if k not in columns)
  payload = {"title": title, "notes": list(notes), "columns": list(columns),
             "rows": _to_jsonable(rows)}
  if extra:
    payload.update(_to_jsonable(dict(extra)))
  _atomic_write(stem + ".json", json.dumps(payload, indent=2, allow_nan=True) + "\n")
  md = [f"# {title}", ""]
  md += [f"- {n}" for n in notes]
  if notes:
    md.append("")
  md.append(markdown_table(rows, columns, digits))
  _atomic_write(stem + ".md", "\n".join(md) + "\n")
  return stem + ".json", stem + ".md"


def save_image_grid(path: str, images: Sequence[Sequence[np.ndarray | None]], *,
                    row_labels: Sequence[str] | None = None,
                    col_labels: Sequence[str] | None = None, title: str | None = None,
                    cell_inches: float = 1.2, cmap: str = "gray") -> str:
  """Saves a grid of images (rows x cols) as a PNG.

  Args:
    path: output .png path.
    images: rows of images; each (H, W), (H, W, 1) or (H, W, 3) in [0, 1]
      (RGB images are shown as they are; gray ones with `cmap`); None leaves a
      blank cell.
    row_labels, col_labels: optional labels.
    title: optional figure title.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  n_rows = len(images)
  n_cols = max((len(r) for r in images), default=1)
  fig, axes = plt.subplots(n_rows, n_cols, squeeze=False,
                           figsize=(cell_inches * n_cols + 1.0, cell_inches * n_rows + 0.6))
  for i in range(n_rows):
    for j in range(n_cols):
      ax = axes[i][j]
      ax.set_xticks([])
      ax.set_yticks([])
      img = images[i][j] if j < len(images[i]) else None
      if img is None:
        ax.axis("off")
        continue
      img = np.asarray(img, np.float32)
      if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
      if img.ndim == 2:
        ax.imshow(np.clip(img, 0, 1), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
      else:
        ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
      if row_labels is not None and j == 0:
        ax.set_ylabel(row_labels[i], fontsize=7)
      if col_labels is not None and i == 0 and j < len(col_labels):
        ax.set_title(col_labels[j], fontsize=7)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}.png"
  fig.savefig(tmp, dpi=100)
  plt.close(fig)
  os.replace(tmp, path)
  return path


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
  """
  columns = dict(columns or {})
  payload: dict[str, Any] = {"title": title, "notes": list(notes), "tables": {}}
  md = [f"# {title}", ""]
  md += [f"- {n}" for n in notes]
  if notes:
    md.append("")
  for name, rows in tables.items():
    rows = [dict(r) for r in rows]
    cols = columns.get(name)
    if cols is None:
      cols = []
      for row in rows:
        cols.extend(k for k in row if k not in cols)
    payload["tables"][name] = {"columns": list(cols), "rows": _to_jsonable(rows)}
    md += [f"## {name}", "", markdown_table(rows, cols, digits), ""]
  if extra:
    payload.update(_to_jsonable(dict(extra)))
  _atomic_write(stem + ".json", json.dumps(payload, indent=2, allow_nan=True) + "\n")
  _atomic_write(stem + ".md", "\n".join(md))
  return stem + ".json", stem + ".md"


def save_image_mosaic(path: str, images, *, row_labels: Sequence[str] | None = None,
                      col_labels: Sequence[str] | None = None, title: str | None = None,
                      gap: int = 1, gap_value: float = 0.5, cell_inches: float = 0.9) -> str:
  """Like `save_image_grid`, drawn as one image (fast for large grids).

  The cells are tiled into a single array (each cell padded to the largest
  cell, `gap` pixels of `gap_value` between cells) and shown with one
  `imshow`; the labels become tick labels. Much faster than one axes per cell
  when a figure holds dozens of crops.

  Args:
    path: output .png path.
    images: rows of images (or an array (R, C, h, w, ch)); each (h, w),
      (h, w, 1) or (h, w, 3) in [0, 1]; None leaves a blank cell. Grey and RGB
      cells may not be mixed.
    row_labels, col_labels: optional labels.
    title: optional figure title.
    gap, gap_value: separator width (pixels) and value.
    cell_inches: size of one cell in the figure.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  rows = [[None if im is None else np.asarray(im, np.float32) for im in r] for r in images]
  cells = [im for r in rows for im in r if im is not None]
  if not cells:
    raise ValueError("images is empty: nothing to draw")
  cells = [im[..., 0] if im.ndim == 3 and im.shape[-1] == 1 else im for im in cells]
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
      if im.ndim == 3 and im.shape[-1] == 1:
        im = im[..., 0]
      if rgb and im.ndim == 2:
        im = np.repeat(im[..., None], 3, axis=-1)
      canvas[y:y + im.shape[0], x:x + im.shape[1]] = np.clip(im, 0, 1)
  per_px = cell_inches / max(ch, cw)  # the larger side of a cell is cell_inches
  fig, ax = plt.subplots(figsize=(max(canvas.shape[1] * per_px, 1.2 * n_cols) + 2.0,
                                  canvas.shape[0] * per_px + 1.0))
  ax.imshow(canvas, cmap=None if rgb else "gray", vmin=0, vmax=1, interpolation="nearest")
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
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}.png"
  fig.savefig(tmp, dpi=100)
  plt.close(fig)
  os.replace(tmp, path)
  return path
