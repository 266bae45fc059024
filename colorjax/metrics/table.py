"""The columns of every metrics table, which way each is better, and a model's row against
the gray baseline's (the end of a training run, `--mode=eval` and the page say it in words).
Without the data pipeline `colorjax.training.evaluate` imports: the server reads an export's table
with it."""

from __future__ import annotations

import numpy as np

# The gray baseline's row in the tables `colorjax.training.evaluate` writes (ab = 0 everywhere).
GRAY_ROW = "gray baseline (ab = 0)"

# Column order of every metrics table; arrows say which direction is better.
METRICS = {
    "loss": "↓", "ssim": "↑", "psnr": "↑", "delta_e76": "↓", "ciede2000": "↓",
    "lpips": "↓", "colorfulness": "", "colorfulness_true": "",
    "auc": "↑", "auc_rebalanced": "↑",
}

# A model within this fraction of the gray baseline's value is "about the same" on that
# metric: closer than an evaluation over a few dozen images can tell apart.
SAME_AS_GRAY = 0.01


def versus_gray(row: dict, gray: dict) -> dict[str, list[str]]:
    """The metrics with a direction in METRICS (↑ higher is better, ↓ lower is better) on
    which `row` is "better" than, "worse" than or about the "same" as the gray baseline
    `gray` (rows of `markdown_table`); metrics without a direction (colourfulness) are
    left out."""
    out = {"better": [], "worse": [], "same": []}
    for name, arrow in METRICS.items():
        if not arrow or name not in row or name not in gray:
            continue
        value, base = float(row[name]), float(gray[name])
        if not (np.isfinite(value) and np.isfinite(base)):
            continue
        if abs(value - base) <= SAME_AS_GRAY * abs(base):
            out["same"].append(name)
        elif (value > base) == (arrow == "↑"):
            out["better"].append(name)
        else:
            out["worse"].append(name)
    return out


def versus_gray_words(row: dict, gray: dict) -> str:
    """`versus_gray` in words: "better than gray on 4 of 8 metrics (ssim, ...); worse on 3
    (...); about the same (within 1%) on 1 (...)"."""
    v = versus_gray(row, gray)
    total = sum(len(names) for names in v.values())
    if not total:
        return "no metric to compare with gray"
    named = lambda names: f" ({', '.join(names)})" if names else ""
    words = [f"better than gray on {len(v['better'])} of {total} metrics{named(v['better'])}"]
    if v["worse"]:
        words.append(f"worse on {len(v['worse'])}{named(v['worse'])}")
    if v["same"]:
        words.append(f"about the same (within {SAME_AS_GRAY:.0%}) on {len(v['same'])}"
                     f"{named(v['same'])}")
    return "; ".join(words)
