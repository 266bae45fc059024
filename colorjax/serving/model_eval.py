"""What an export says about its own quality, in words for the page: the evaluation table
that `--mode=export` copied into metadata.json (the run's newest `eval/*.json`), the model's
row against the gray baseline's, with the figures.
"""

from __future__ import annotations

import math
import re

# How the page names each metric, and the unit after a figure.
LABELS = {"loss": "loss", "ssim": "SSIM", "psnr": "PSNR", "delta_e76": "ΔE76",
          "ciede2000": "CIEDE2000", "lpips": "LPIPS", "auc": "AUC",
          "auc_rebalanced": "rebalanced AUC"}
UNITS = {"psnr": " dB"}
# Colour differences first: what a viewer of colours cares about most.
ORDER = ("ciede2000", "delta_e76", "lpips", "psnr", "ssim", "auc", "auc_rebalanced", "loss")


def _figure(x: float) -> str:
    """Three significant digits (16.2, 0.176, 23.2), never in exponent notation."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    digits = max(0, 2 - math.floor(math.log10(abs(x))))
    return f"{x:.{digits}f}"


def _pairs(names, row, gray) -> str:
    """"CIEDE2000 16.2 (gray 11.9), PSNR 23.2 dB (gray 24.1 dB)"."""
    def one(n):
        unit = UNITS.get(n, "")
        return (f"{LABELS.get(n, n)} {_figure(float(row[n]))}{unit} "
                f"(gray {_figure(float(gray[n]))}{unit})")
    return ", ".join(one(n) for n in names)


def summary(metadata: dict) -> dict | None:
    """The export's evaluation against gray: {"split", "images", "step", "better", "worse",
    "same" (metric names), "total", "words"}; None when the export holds no table with
    both rows (a converted model, an export of a run that never evaluated)."""
    found = metadata.get("metrics") or {}
    table = found.get("table") if isinstance(found, dict) else None
    if not isinstance(table, dict):
        return None
    from colorjax.metrics.table import GRAY_ROW, versus_gray

    gray = table.get(GRAY_ROW)
    row = table.get(metadata.get("model"))
    if not isinstance(row, dict):  # a table of one model: the row that is not gray's
        others = [v for k, v in table.items() if k != GRAY_ROW and isinstance(v, dict)]
        row = others[0] if len(others) == 1 else None
    if not isinstance(row, dict) or not isinstance(gray, dict):
        return None
    try:
        v = versus_gray(row, gray)
    except (TypeError, ValueError):  # a hand-edited table with text for a figure
        return None
    total = sum(len(names) for names in v.values())
    if not total:
        return None
    for names in v.values():
        names.sort(key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
    m = re.search(r"(?:^|/)([^/]+)_step_(\d+)\.json$", str(found.get("file", "")))
    split, step = (m.group(1), int(m.group(2))) if m else (None, None)
    images = gray.get("num_examples", row.get("num_examples"))
    images = int(images) if isinstance(images, (int, float)) and images > 0 else None
    where = " ".join(filter(None, ["On its", str(images) if images else None,
                                   split or "validation", "photos"]))
    if step is not None and step != metadata.get("step"):
        where += f" (at step {step})"
    words = [f"{where}, this model is better than leaving them gray on {len(v['better'])} "
             f"of {total} metric{'s' if total > 1 else ''}"
             + (f": {_pairs(v['better'], row, gray)}." if v["better"] else ".")]
    if v["worse"]:
        words.append(f"It is worse on {len(v['worse'])}: {_pairs(v['worse'], row, gray)}.")
    if v["same"]:
        words.append(f"About the same on {len(v['same'])}: {_pairs(v['same'], row, gray)}.")
    return {"split": split, "images": images, "step": step, "total": total, **v,
            "words": " ".join(words)}
