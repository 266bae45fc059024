"""What `python -m colorjax.compare` writes: bootstrap intervals, the markdown table, the
labelled image grid and the per-metric plots of the runs' eval metrics against the step.

The numbers come from `colorjax/compare/__main__.py`; everything here is plain NumPy/PIL/matplotlib.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from colorjax.training.evaluate import METRICS

# Per-image metrics shown in the table (colorfulness_true is the truth row's colorfulness).
TABLE_METRICS = [m for m in METRICS if m not in ("colorfulness_true", "auc", "auc_rebalanced")]
DISTRIBUTION = ("fd_vgg16", "fd_effnet", "kid_vgg16", "kid_effnet")
DISTRIBUTION_ARROWS = {k: "↓" for k in DISTRIBUTION}
SI_ARROWS = {"si_top1": "↑", "si_top5": "↑", "si_agreement": "↑"}
NOT_COMPUTED = ("fid", "is")


# --- statistics --------------------------------------------------------------------------


def bootstrap_indices(num_images: int, resamples: int, seed: int = 0) -> np.ndarray:
    """(resamples, num_images) image indices drawn with replacement: one set for all rows,
    so every model's interval comes from the same resampled image sets."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, num_images, size=(resamples, num_images))


def mean_and_interval(values, indices: np.ndarray | None) -> dict:
    """The mean of per-image `values` and its 95% percentile bootstrap interval over
    `indices` (None or no resamples: the interval is the mean itself)."""
    v = np.asarray(values, np.float64)
    mean = float(np.mean(v))
    if indices is None or not len(indices):
        return {"mean": mean, "lower": mean, "upper": mean}
    boot = v[indices].mean(axis=1)
    lower, upper = np.percentile(boot, [2.5, 97.5])
    # The percentile interval holds the mean up to rounding; keep lower <= mean <= upper.
    return {"mean": mean, "lower": float(min(lower, mean)), "upper": float(max(upper, mean))}


# --- the table ---------------------------------------------------------------------------


def _num(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, int):
        return str(v)
    return f"{v:.4g}"


def params_text(n) -> str:
    """A parameter count as 0.70M / 12.3k."""
    if n is None:
        return "—"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def _columns(rows: dict) -> list[tuple[str, str]]:
    """(column, arrow) of every value column some row has, in table order."""
    cols = [(m, METRICS[m]) for m in TABLE_METRICS
            if any(m in r.get("metrics", {}) for r in rows.values())]
    cols += [(k, a) for k, a in DISTRIBUTION_ARROWS.items()
             if any(k in r.get("distribution", {}) for r in rows.values())]
    cols += [(k, a) for k, a in SI_ARROWS.items()
             if any(k in r.get("si", {}) for r in rows.values())]
    return cols


def _value(row: dict, col: str):
    """(number or None, shown text) of `row`'s cell in column `col`."""
    if col in row.get("metrics", {}):
        m = row["metrics"][col]
        if m["lower"] == m["upper"] == m["mean"]:
            return m["mean"], _num(m["mean"])
        return m["mean"], f"{_num(m['mean'])} [{_num(m['lower'])}, {_num(m['upper'])}]"
    if col in row.get("distribution", {}):
        d = row["distribution"][col]
        if "error" in d:
            return None, "failed"
        text = _num(d["value"])
        if "std" in d:
            text += f" ± {_num(d['std'])}"
        return d["value"], f"{text} (n={d['num_images']})"
    if col in row.get("si", {}):
        return row["si"][col], _num(row["si"][col])
    return None, "—"


def inception_cell(cell) -> str:
    """A FID or IS cell: its value with the number of images, "failed", the truth's "—",
    or "not computed" (no --inception_weights)."""
    if cell is None:
        return "not computed"
    if isinstance(cell, str):
        return cell
    if "error" in cell:
        return "failed"
    return f"{_num(cell['value'])} (n={cell['num_images']})"


def _best(rows: dict, col: str, arrow: str):
    """The best value of column `col` over the comparable rows (models and gray, not the
    truth), or None when the column has no direction."""
    if arrow not in ("↑", "↓"):
        return None
    values = [v for name, r in rows.items() if not r.get("is_truth")
              for v in [_value(r, col)[0]] if v is not None and math.isfinite(v)]
    if not values:
        return None
    return max(values) if arrow == "↑" else min(values)


def markdown_table(split: str, rows: dict, bootstrap: int, si_note: str = "") -> str:
    """One row per entry of `rows` (gray first, then the models, truth last)."""
    cols = _columns(rows)
    best = {c: _best(rows, c, a) for c, a in cols}
    # FID (lower) and IS (higher) over the models and gray, where computed.
    best_inception = {}
    for key, pick in (("fid", min), ("is", max)):
        found = [r[key]["value"] for r in rows.values() if not r.get("is_truth")
                 and isinstance(r.get(key), dict) and "value" in r[key]
                 and math.isfinite(r[key]["value"])]
        best_inception[key] = pick(found) if found else None
    head = (["model", "status", "steps", "train min", "params", "img/s", "infer s/img"]
            + [f"{c} {a}".strip() for c, a in cols] + ["FID ↓", "IS ↑"])
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for name, r in rows.items():
        if r.get("status") == "failed":
            cells = [name, f"failed: {r['error']}"] + [""] * (len(head) - 2)
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
            continue
        minutes = r.get("train_minutes")
        minutes = "—" if minutes is None else f"{minutes:.2f} ({r['train_minutes_source']})"
        cells = [name, r.get("status", "ok"), _num(r.get("steps")), minutes,
                 params_text(r.get("params")), _num(r.get("images_per_sec")),
                 _num(r.get("infer_seconds"))]
        for c, _ in cols:
            v, text = _value(r, c)
            if v is not None and best[c] is not None and not r.get("is_truth") and v == best[c]:
                text = f"**{text}**"
            cells.append(text)
        for key in ("fid", "is"):
            cell, text = r.get(key), inception_cell(r.get(key))
            if (not r.get("is_truth") and isinstance(cell, dict) and "value" in cell
                    and cell["value"] == best_inception[key]):
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    note = (f"Split `{split}`: mean over images [95% percentile bootstrap interval, "
            f"{bootstrap} resamples of the images, seed 0]; bold: the best model or gray "
            "value of each column with a direction (↑ higher is better, ↓ lower). "
            "fd_*/kid_*: Fréchet / kernel distance of pooled features to the split's "
            "true images (n images; kid: mean ± std over 100 random subsets of half the "
            "images, at most 1,000). SI: EfficientNet-Lite0 "
            "top-1/top-5 accuracy on ImageNet labels where the split's file names carry "
            "them, else si_agreement, the share of images whose top-1 class matches the "
            "truth's" + (f" ({si_note})" if si_note else "") + ". FID / IS: on "
            "the FID Inception-v3 (pytorch-fid's weights, --inception_weights; images "
            "resized to 299): FID of the pool3 features against the split's true images, "
            "IS over one split of the n images (small sets: not comparable with published "
            "50k-image IS); \"not computed\" without the weights. train min: wall time of the "
            "training subprocess, or from the run's metrics.jsonl timestamps when the run "
            "was reused or resumed. img/s: training throughput; infer s/img: the network's "
            "seconds per image in the split's eval batches at its image size, the first "
            "batch (compilation) left out (— with one batch).")
    return "\n".join([f"## {split}", "", note, "", *lines, ""])


def write_outputs(workdir: str, tables: list[str], payload: dict) -> tuple[str, str]:
    """`compare.md` (the tables) and `compare.json` (`payload`) in `workdir`."""
    md, js = os.path.join(workdir, "compare.md"), os.path.join(workdir, "compare.json")
    with open(md, "w") as f:
        f.write("# Model comparison\n\n" + "\n".join(tables))
    with open(js, "w") as f:
        json.dump(payload, f, indent=2, allow_nan=True)
    return md, js


# --- the image grid ----------------------------------------------------------------------


def save_labelled_grid(rows: list[tuple[str, np.ndarray]], path: str,
                       min_tile: int = 128) -> dict:
    """A PNG with one row of tiles per (label, images (n,H,W,3) in [0,1]), upscaled (nearest)
    to at least `min_tile` px, each row labelled at its left with PIL's default font.
    Returns the layout: labels, tile size and label width in pixels."""
    h, w = rows[0][1].shape[1:3]
    scale = max(1, min_tile // h)
    th, tw = h * scale, w * scale
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = 12 + max(int(math.ceil(probe.textlength(label, font=font))) for label, _ in rows)
    n = max(len(images) for _, images in rows)
    canvas = Image.new("RGB", (label_w + n * tw, len(rows) * th), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, images) in enumerate(rows):
        strip = np.concatenate(list(np.clip(images, 0, 1)), axis=1)
        tile = Image.fromarray(np.round(strip * 255).astype(np.uint8))
        if scale > 1:
            tile = tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST)
        canvas.paste(tile, (label_w, i * th))
        box = draw.textbbox((0, 0), label, font=font)
        draw.text((6, i * th + (th - (box[3] - box[1])) // 2 - box[1]), label, fill="black",
                  font=font)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    canvas.save(path)
    return {"rows": [label for label, _ in rows], "tile_px": [th, tw], "label_px": label_w,
            "num_images": n}


# --- plots of the runs' eval metrics against the step ------------------------------------


def read_metrics(path: str) -> list[dict]:
    """The records of a run's metrics.jsonl (writers.MetricWriter); [] when absent. A line
    cut off by a killed run is skipped."""
    if not os.path.isfile(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def eval_curves(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """metric -> [(step, value)] of the "eval" rows, by step (a step evaluated again after
    a resume keeps its last value)."""
    by_metric: dict[str, dict[int, float]] = {}
    for r in records:
        if r.get("split") != "eval":
            continue
        for k, v in r.items():
            if k in ("step", "split", "time", "num_examples") or not isinstance(v, (int, float)):
                continue
            by_metric.setdefault(k, {})[int(r["step"])] = float(v)
    return {k: sorted(v.items()) for k, v in by_metric.items()}


def plot_curves(runs: dict[str, list[dict]], directory: str) -> list[str]:
    """`directory/<metric>.png` for every eval metric of the runs: one line per run (its
    metrics.jsonl records in `runs`), the metric against the training step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {name: eval_curves(records) for name, records in runs.items()}
    # The gray baseline of the first run that logged one: a dashed line for reference.
    gray = next(({k: v for k, v in r.items() if isinstance(v, (int, float))}
                 for records in runs.values() for r in records
                 if r.get("split") == "eval_gray_baseline"), {})
    metrics = sorted({m for c in curves.values() for m in c},
                     key=lambda m: (list(METRICS).index(m) if m in METRICS else len(METRICS), m))
    os.makedirs(directory, exist_ok=True)
    paths = []
    for metric in metrics:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, c in curves.items():
            if metric in c:
                steps, values = zip(*c[metric])
                ax.plot(steps, values, marker="o", label=name)
        if metric in gray:
            ax.axhline(gray[metric], color="gray", linestyle="--", label="gray (ab = 0)")
        arrow = METRICS.get(metric, "")
        ax.set_xlabel("training step")
        ax.set_ylabel(f"{metric} {arrow}".strip())
        ax.set_title(f"eval {metric}")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = os.path.join(directory, f"{metric}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
