r"""Side-by-side tables for docs/reproduction.md: the papers' values next to ours.

Reads the `results/*.json` that `evaluate.py` wrote into each workdir and prints Markdown: one
table per paper table, with the paper's Fashion-MNIST rows (ClaDec) or its ImageNet rows (Herdt:
no Fashion-MNIST numbers exist), ours, and one line per finding of the paper saying whether it
holds in our run. The findings are orderings and directions, never absolute values: our budgets
are far smaller than the papers', and the Herdt paper ran ImageNet ResNets.

  python docs/reproduction_tables.py \
      --cladec_vgg=/work/repro/cladec_vgg --cladec_resnet=/work/repro/cladec_resnet \
      --concepts=vgg:conv2a=/work/repro/concepts_vgg_conv2a \
      --concepts=vgg:conv3a=/work/repro/concepts_vgg_conv3a > /tmp/tables.md

Any workdir may be left out; its tables are then skipped.
"""

import argparse
import json
import math
import os
from typing import Any, Callable, Sequence

# ClaDec (Schneider & Vlachos 2022), Fashion-MNIST rows. Tables 2/3: per-pixel rec loss
# (ClaDec, RefAE) and evaluation accuracy (ClaDec, RefAE), per layer -1 .. -5.
PAPER_LAYERS = {
    "vgg": ((0.24, 0.038, 0.905, 0.917), (0.109, 0.017, 0.918, 0.921),
            (0.062, 0.013, 0.92, 0.919), (0.042, 0.003, 0.925, 0.917),
            (0.038, 0.002, 0.927, 0.915)),
    "resnet": ((0.1444, 0.0287, 0.916, 0.922), (0.0222, 0.0006, 0.9345, 0.9256),
               (0.0069, 0.0004, 0.9353, 0.931), (0.0171, 0.0006, 0.936, 0.9308),
               (0.0023, 0.0015, 0.9362, 0.935)),
}
# Tables 4/5: alpha -> (total loss, rec loss (per-image sum), classifier loss, eval accuracy).
PAPER_ALPHA = {
    "vgg": {1.0: (0.01, 285.5, 0.0, 0.903), 0.999: (0.03, 25.4, 0.03, 0.903),
            0.9: (0.84, 8.35, 0.75, 0.901), 0.0: (7.49, 7.49, 4.4, 0.882)},
    "resnet": {1.0: (0.009, 416.5, 0.0, 0.912), 0.999: (0.043, 34.5, 0.035, 0.911),
               0.99: (0.195, 19.0, 0.188, 0.911), 0.9: (1.33, 13.3, 1.193, 0.909),
               0.0: (12.2, 12.2, 4.936, 0.898)},
}
# Table 6 (VGG): epochs -> (classifier acc, rec ClaDec, rec RefAE, acc eval ClaDec, RefAE).
PAPER_EPOCHS = {0: (0.1, 5.445, 3.333, 0.85, 0.886), 1: (0.506, 6.417, 3.3, 0.88, 0.888),
                4: (0.885, 6.608, 3.299, 0.893, 0.893), 16: (0.902, 6.233, 3.334, 0.896, 0.891),
                64: (0.904, 6.081, 3.341, 0.895, 0.889)}
# Tables 7/8, Fashion-MNIST: layer -> (ClaDec acc max, min, delta; GradCAM max, min, delta).
PAPER_OCCLUSION = {
    "vgg": {"-1": (0.783, 0.907, 0.124, 0.859, 0.859, 0.0),
            "-3": (0.771, 0.906, 0.135, 0.878, 0.882, 0.004),
            "-5": (0.824, 0.888, 0.064, 0.843, 0.879, 0.036)},
    "resnet": {"-1": (0.814, 0.914, 0.1, 0.875, 0.912, 0.037),
               "-3": (0.876, 0.887, 0.011, 0.874, 0.893, 0.019),
               "-5": (0.878, 0.885, 0.006, 0.888, 0.889, 0.001)},
}
# Herdt & Otero Baguer, ImageNet ResNet50 (the model their text discusses), layer3.5 / 4.2:
# Table 1 (crops from all images) and Table 2 (class excluded): mean prediction, % predicted.
PAPER_STITCH = {"layer3.5": ((0.539, 56.3), (0.284, 30.0)),
                "layer4.2": ((0.898, 94.1), (0.619, 71.0))}
# Table 3, ResNet50: default pred, shifted pred, % swap at 0.1 / 0.2 / 0.5.
PAPER_SHIFT = (0.000, 0.335, 34.3, 32.8, 29.5)
# Table 4: (original, person inserted, blank inserted) for (husky = A, malamute = B).
PAPER_BIAS = ((0.377, 0.265, 0.342), (0.203, 0.265, 0.189))


def load(workdir: str, stem: str) -> dict[str, Any] | None:
  """`<workdir>/results/<stem>.json`, or None when it is missing."""
  path = os.path.join(workdir, "results", stem + ".json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def rows_of(payload: dict[str, Any], table: str | None = None) -> list[dict[str, Any]]:
  """The rows of a single table, or of the named table of a table set."""
  if table is None:
    return payload["rows"]
  return payload["tables"][table]["rows"]


def fmt(v: Any, digits: int = 3) -> str:
  """A number for a table cell."""
  if v is None:
    return "–"
  if isinstance(v, float):
    return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.0f}"
  return str(v)


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A Markdown table."""
  out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  out += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
  return "\n".join(out)


def share(k: int, n: int) -> bool | str | None:
  """A finding over n cases that holds in k: True above 2/3, False below 1/3, else "mixed"."""
  if n <= 0:
    return None
  return True if 3 * k > 2 * n else False if 3 * k < n else "mixed"


def verdict(name: str, holds: bool | str | None, detail: str) -> str:
  """One finding line: holds / does not hold / mixed / not measured."""
  mark = {True: "**holds**", False: "**does not hold**", "mixed": "**mixed**",
          None: "not measured"}[holds]
  return f"- {name}: {mark} ({detail})"


def health_line(rows: Sequence[dict[str, Any]]) -> list[str]:
  """A line naming the rows the health checks flagged (their findings mean little)."""
  bad = [r for r in rows if r.get("status", "ok") not in ("ok", "")]
  if not bad:
    return []
  return [f"- health: {len(bad)} of {len(rows)} rows flagged, read their findings with care: "
          + "; ".join(str(r.get("health") or r.get("status")) for r in bad)]


def _alias(layer: str) -> str:
  return layer.split()[0]


def _pm(row: dict[str, Any], key: str) -> str:
  """The value with its sample std over seeds; none for one seed (its std is NaN)."""
  std = row.get(key + "_std")
  if std is None or (isinstance(std, float) and math.isnan(std)):
    return fmt(row.get(key))
  return fmt(row.get(key)) + f" ± {fmt(std, 2)}"


def _monotone(values: Sequence[float], increasing: bool) -> bool:
  pairs = zip(values, values[1:])
  return all((b >= a) if increasing else (b <= a) for a, b in pairs)


def layers_table(workdir: str, arch: str) -> str | None:
  """Tables 2/3: per-pixel rec losses (the paper's figure) and evaluation accuracies.

  ``workdir`` may name several workdirs joined by commas (runs of one config that
  differ only in their layers): their rows are read together, the first run's row
  of a layer winning.
  """
  payloads = [p for p in (load(w, "cladec_layers") for w in workdir.split(",")) if p]
  if not payloads:
    return None
  all_rows = [r for p in payloads for r in rows_of(p)]
  rows = {}
  for r in all_rows:
    rows.setdefault(_alias(r["layer"]), r)
  body, ours = [], []
  for i, paper in enumerate(PAPER_LAYERS[arch]):
    r = rows.get(str(-(i + 1)))
    if r is None:
      continue
    pix = "rec_cladec_mean" if "rec_cladec_mean" in r else "rec_cladec"
    pix_r = pix.replace("cladec", "refae")
    ours.append((r[pix], r[pix_r], r["acc_eval_cladec"], r["acc_eval_refae"]))
    body.append((r["layer"], *paper[:2], fmt(r[pix]), fmt(r[pix_r]), *paper[2:],
                 _pm(r, "acc_eval_cladec"), _pm(r, "acc_eval_refae"), r.get("status", "")))
  header = ("layer", "paper rec ClaDec", "paper rec RefAE", "ours rec ClaDec", "ours rec RefAE",
            "paper acc ClaDec", "paper acc RefAE", "ours acc ClaDec", "ours acc RefAE",
            "health")
  n = len(ours)
  rec_ok = all(c > r for c, r, _, _ in ours)
  acc_wins = sum(a > b for _, _, a, b in ours[1:])
  order = _monotone([c for c, _, _, _ in ours], increasing=False)
  lines = [
      md_table(header, body), "",
      verdict("RefAE reconstructs better than ClaDec at every layer", rec_ok if n else None,
              f"{sum(c > r for c, r, _, _ in ours)} of {n} layers"),
      verdict("the evaluation classifier does better on ClaDec's reconstructions below the "
              "logits", share(acc_wins, n - 1),
              f"ClaDec ahead at {acc_wins} of {n - 1} layers below -1"),
      verdict("ClaDec's rec loss grows towards the output (-5 lowest, -1 highest)",
              order if n else None, "ours: " + ", ".join(fmt(c) for c, _, _, _ in ours)),
  ] + health_line(list(rows.values()))
  return "\n".join(lines)


def alpha_table(workdir: str, arch: str) -> str | None:
  """Tables 4/5: the alpha trade-off (per-image sum rec loss, as the paper's)."""
  payload = load(workdir, "cladec_alpha")
  if payload is None:
    return None
  rows = sorted(rows_of(payload), key=lambda r: -r["alpha"])
  body = []
  for r in rows:
    p = PAPER_ALPHA[arch].get(round(r["alpha"], 3), (None,) * 4)
    body.append((r["alpha"], p[0], _pm(r, "total_loss"), p[1], _pm(r, "rec_loss"), p[2],
                 _pm(r, "classifier_loss"), p[3], _pm(r, "acc_eval_cladec"),
                 r.get("status", "")))
  header = ("alpha", "paper total", "ours total", "paper rec", "ours rec", "paper CE",
            "ours CE", "paper acc eval", "ours acc eval", "health")
  recs = [r["rec_loss"] for r in rows]
  ces = [r["classifier_loss"] for r in rows]
  zero = [r for r in rows if r["alpha"] == 0.0]
  pos = [r for r in rows if r["alpha"] > 0.0]
  acc_up = (bool(zero) and bool(pos) and
            max(r["acc_eval_cladec"] for r in pos) > zero[0]["acc_eval_cladec"])
  lines = [md_table(header, body), "",
           verdict("rec loss grows with alpha", _monotone(recs, increasing=False),
                   "alpha high to low: " + ", ".join(fmt(v) for v in recs)),
           verdict("classifier loss falls with alpha", _monotone(ces, increasing=True),
                   "alpha high to low: " + ", ".join(fmt(v) for v in ces)),
           verdict("alpha > 0 gives a higher evaluation accuracy than alpha = 0",
                   acc_up if zero and pos else None,
                   ", ".join(f"{r['alpha']}: {fmt(r['acc_eval_cladec'])}" for r in rows))]
  lines += health_line(rows)
  return "\n".join(lines)


def epochs_table(workdir: str) -> str | None:
  """Table 6: classifiers trained for 0, 1, ... epochs."""
  payload = load(workdir, "cladec_training_epochs")
  if payload is None or not rows_of(payload):
    return None
  rows = sorted(rows_of(payload), key=lambda r: r["classifier_epochs"])
  body = []
  for r in rows:
    p = PAPER_EPOCHS.get(r["classifier_epochs"], (None,) * 5)
    body.append((r["classifier_epochs"], p[0], fmt(r["classifier_accuracy"]), p[1],
                 _pm(r, "rec_cladec"), p[2], _pm(r, "rec_refae"), p[3],
                 _pm(r, "acc_eval_cladec"), p[4], _pm(r, "acc_eval_refae"),
                 r.get("status", "")))
  header = ("epochs", "paper clf acc", "ours clf acc", "paper rec ClaDec", "ours rec ClaDec",
            "paper rec RefAE", "ours rec RefAE", "paper acc ClaDec", "ours acc ClaDec",
            "paper acc RefAE", "ours acc RefAE", "health")
  accs = [r["acc_eval_cladec"] for r in rows]
  recs = [r["rec_cladec"] for r in rows]
  peak = max(range(len(recs)), key=recs.__getitem__)
  lines = [md_table(header, body), "",
           verdict("the evaluation accuracy on ClaDec grows with the classifier's training",
                   accs[-1] > accs[0], "epochs low to high: " + ", ".join(map(fmt, accs))),
           verdict("ClaDec's rec loss is lowest for the untrained classifier and peaks in "
                   "between (inverted U)", recs[0] == min(recs) and 0 < peak < len(recs) - 1
                   if len(recs) > 2 else None, ", ".join(map(fmt, recs)))]
  lines += health_line(rows)
  return "\n".join(lines)


def occlusion_table(workdir: str, arch: str) -> str | None:
  """Tables 7/8: occluding the most and least relevant square, ClaDec vs GradCAM."""
  payload = load(workdir, "occlusion")
  if payload is None:
    return None
  body, deltas = [], []
  for r in rows_of(payload):
    p = PAPER_OCCLUSION[arch].get(_alias(r["layer"]), (None,) * 6)
    deltas.append((r["cladec_delta_acc"], r["gradcam_delta_acc"]))
    body.append((r["layer"], p[0], p[1], p[2], _pm(r, "cladec_acc_max"),
                 _pm(r, "cladec_acc_min"), fmt(r["cladec_delta_acc"]), p[5],
                 fmt(r["gradcam_delta_acc"]), r.get("gradcam_layer", ""), r.get("status", "")))
  header = ("layer", "paper ClaDec max", "paper ClaDec min", "paper ClaDec ΔAcc",
            "ours ClaDec max", "ours ClaDec min", "ours ClaDec ΔAcc", "paper GradCAM ΔAcc",
            "ours GradCAM ΔAcc", "GradCAM tap", "health")
  lines = [md_table(header, body), "",
           verdict("occluding ClaDec's most relevant square hurts more than its least "
                   "relevant (ΔAcc > 0)", all(c > 0 for c, _ in deltas),
                   ", ".join(fmt(c) for c, _ in deltas)),
           verdict("ClaDec's ΔAcc exceeds GradCAM's", all(c > g for c, g in deltas),
                   ", ".join(f"{fmt(c)} vs {fmt(g)}" for c, g in deltas))]
  lines += health_line(rows_of(payload))
  return "\n".join(lines)


def _stitch_row(payload: dict[str, Any], table: str) -> dict[str, Any]:
  return rows_of(payload, table)[0]


def stitch_tables(runs: Sequence[tuple[str, str]]) -> str | None:
  """Herdt Tables 1/2 for each (label, workdir); the paper's ResNet50 rows for reference."""
  body, predicted = [], {}
  for label, workdir in runs:
    payload = load(workdir, "stitch_test")
    if payload is None:
      continue
    names = list(payload["tables"])
    t1 = _stitch_row(payload, next(n for n in names if n.startswith("table 1")))
    t2 = _stitch_row(payload, next(n for n in names if n.startswith("table 2")))
    predicted[label] = (t1["pct_predicted"], t2["pct_predicted"])
    for name, t in (("1 (all images)", t1), ("2 (class excluded)", t2)):
      body.append((label, name, f"{fmt(t['mean_prob'])} ± {fmt(t['std_prob'], 2)}",
                   fmt(t["pct_predicted"]), fmt(t["pct_above_0.1"]), fmt(t["pct_above_0.2"]),
                   fmt(t["pct_above_0.5"])))
  if not body:
    return None
  for layer, ((m1, p1), (m2, p2)) in PAPER_STITCH.items():
    body.append((f"paper ResNet50 {layer}", "1 (all images)", m1, p1, "", "", ""))
    body.append((f"paper ResNet50 {layer}", "2 (class excluded)", m2, p2, "", "", ""))
  header = ("model:layer", "table", "mean pred", "% predicts class", "% > 0.1", "% > 0.2",
            "% > 0.5")
  lines = [md_table(header, body), ""]
  labels = list(predicted)

  def kind(label: str) -> tuple[str, str]:  # "model:layer (layout)" -> (model, layout)
    return label.split(":")[0], label.partition("(")[2]

  for a, b in zip(labels, labels[1:]):
    if kind(a) == kind(b):  # the same model and layout at two layers, in the order given
      lines.append(verdict(f"the later layer does better on the stitched test ({b} vs {a})",
                           predicted[b][0] > predicted[a][0],
                           f"% predicted {fmt(predicted[a][0])} -> {fmt(predicted[b][0])}"))
  lines.append(verdict("excluding the class makes the test harder (Table 2 below Table 1)",
                       all(p2 <= p1 for p1, p2 in predicted.values()),
                       "; ".join(f"{k}: {fmt(v[0])} vs {fmt(v[1])}"
                                 for k, v in predicted.items())))
  return "\n".join(lines)


def shift_tables(runs: Sequence[tuple[str, str]]) -> str | None:
  """Herdt Table 3: the shifting test."""
  body, ups = [], []
  for label, workdir in runs:
    payload = load(workdir, "shift_test")
    if payload is None:
      continue
    t = _stitch_row(payload, "table 3")
    ups.append((label, t["default_pred"], t["shifted_pred"]))
    body.append((label, f"{fmt(t['default_pred'])} ± {fmt(t['default_pred_std'], 2)}",
                 f"{fmt(t['shifted_pred'])} ± {fmt(t['shifted_pred_std'], 2)}",
                 fmt(t["pct_swap_0.1"]), fmt(t["pct_swap_0.2"]), fmt(t["pct_swap_0.5"])))
  if not body:
    return None
  body.append(("paper ResNet50", *PAPER_SHIFT))
  header = ("model:layer", "default pred", "shifted pred", "% swap 0.1", "% swap 0.2",
            "% swap 0.5")
  lines = [md_table(header, body), ""]
  lines += [verdict(f"shifting along the pair's normal raises p(A) ({k})", s > d,
                    f"{fmt(d)} -> {fmt(s)}") for k, d, s in ups]
  return "\n".join(lines)


def bias_tables(runs: Sequence[tuple[str, str]]) -> str | None:
  """Herdt Table 4: pasting a contrast concept of A into B's images vs pasting a blank.

  One row per (run, pair): p(A) and p(B) on B's images as they are, with each of A's contrast
  concepts pasted (mean over the concepts, and the best one), and with a blank square.
  """
  body, found = [], []
  for label, workdir in runs:
    payload = load(workdir, "bias_probe")
    if payload is None:
      continue
    pairs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows_of(payload, "bias probe (Table 4)"):
      if r.get("status") == "ok":
        pairs.setdefault((r["name_a"], r["name_b"]), []).append(r)
    for (a, b), rs in pairs.items():
      pasted = [r["pasted_a"] for r in rs]
      up = sum(p > r["blank_a"] for p, r in zip(pasted, rs))
      found.append((up, len(rs)))
      body.append((label, f"{a} vs {b}", fmt(rs[0]["orig_a"]), fmt(sum(pasted) / len(rs)),
                   fmt(max(pasted)), fmt(rs[0]["blank_a"]), fmt(rs[0]["orig_b"]),
                   fmt(sum(r["pasted_b"] for r in rs) / len(rs)), fmt(rs[0]["blank_b"]),
                   f"{up} of {len(rs)}"))
  if not body:
    return None
  body.append(("paper ResNet50", "malamute vs husky (person)", PAPER_BIAS[1][0],
               PAPER_BIAS[1][1], PAPER_BIAS[1][1], PAPER_BIAS[1][2], PAPER_BIAS[0][0],
               PAPER_BIAS[0][1], PAPER_BIAS[0][2], "1 of 1"))
  header = ("model:layer", "A vs B (B's images)", "orig p(A)", "pasted p(A), mean",
            "pasted p(A), best", "blank p(A)", "orig p(B)", "pasted p(B), mean", "blank p(B)",
            "concepts raising p(A) above blank")
  up, n = sum(u for u, _ in found), sum(k for _, k in found)
  lines = [md_table(header, body), "",
           verdict("pasting A's contrast concepts raises p(A) more than pasting a blank",
                   share(up, n), f"{up} of {n} concepts over {len(found)} pairs")]
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--cladec_vgg", help="workdir, or workdirs joined by commas (Table 2)")
  p.add_argument("--cladec_resnet", help="workdir, or workdirs joined by commas (Table 3)")
  p.add_argument("--concepts", action="append", default=[],
                 help="label=workdir, e.g. vgg:conv2a=runs/concepts_vgg")
  a = p.parse_args(argv)
  runs = [tuple(s.split("=", 1)) for s in a.concepts]
  sections: list[tuple[str, Callable[[], str | None]]] = []
  for arch, wds in (("vgg", a.cladec_vgg), ("resnet", a.cladec_resnet)):
    if wds:
      # Several comma-joined workdirs feed the layers table; the others read the first.
      wd = wds.split(",")[0]
      t = ("2", "4", "7") if arch == "vgg" else ("3", "5", "8")
      sections += [(f"ClaDec Table {t[0]} ({arch})", lambda w=wds, r=arch: layers_table(w, r)),
                   (f"ClaDec Table {t[1]} ({arch})", lambda w=wd, r=arch: alpha_table(w, r)),
                   (f"ClaDec Table {t[2]} ({arch})", lambda w=wd, r=arch: occlusion_table(w, r))]
      if arch == "vgg":
        sections.append(("ClaDec Table 6 (vgg)", lambda w=wd: epochs_table(w)))
  sections += [("Herdt Tables 1/2", lambda: stitch_tables(runs)),
               ("Herdt Table 3", lambda: shift_tables(runs)),
               ("Herdt Table 4", lambda: bias_tables(runs))]
  for title, make in sections:
    text = make()
    if text:
      print(f"### {title}\n\n{text}\n")


if __name__ == "__main__":
  main()
