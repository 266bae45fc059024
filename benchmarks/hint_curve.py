"""How much colour hints help: CIEDE2000 and PSNR against the number of hints.

    python benchmarks/hint_curve.py (--workdir=RUN [--step=-1] | --export=EXPORT_DIR)
        [--split=validation] [--eval_folder=PHOTOS] [--num_examples=64]
        [--hints=0,1,2,5,10,20] [--seed=0] [--out=DIR]

For a model trained with `config.model.hints=True` (Zhang et al. 2017's user-guided
colorization), each eval image gets k hints drawn from its own truth by the training
sampler (`colorjax.hints.sample_planes`: square patches of the truth's mean ab, sides and
places as in training) with a fixed seed per image (`hint_rng(seed, image index, 2)`), so
every model and every run sees the same hints; the k points are the first k of one
sequence, so the hint sets are nested (the 10 hints include the 5). k = 0 is the automatic
colorization. Reported per k: mean CIEDE2000 (Lab, ↓) and PSNR (sRGB, dB, ↑) over the
images, with the gray baseline (ab = 0) for reference. Writes `hint_curve.md`, `.json` and
`.png` (matplotlib) into --out (default: `hint_curve/` in the run's workdir, or beside an
export; not `eval/`, whose newest table an export takes as the model's metrics).

The eval data is the run's (or the export's) `config.data` eval data; `--eval_folder`
evaluates a folder of photos instead (prepared on first use, as training does).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jax
import numpy as np
from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from colorjax import color, data, metrics  # noqa: E402
from colorjax import hints

flags.DEFINE_string("workdir", None, "A training workdir (its checkpoints/).")
flags.DEFINE_integer("step", -1, "Checkpoint step of --workdir (-1 = latest).")
flags.DEFINE_string("export", None, "An export directory (--mode=export) instead of --workdir.")
flags.DEFINE_string("split", "", "Eval split ('' = the config's eval.split).")
flags.DEFINE_string("eval_folder", "", "A folder of photos to evaluate on instead.")
flags.DEFINE_integer("num_examples", 64, "Images to evaluate (0 = the whole split).")
flags.DEFINE_integer("batch_size", 0, "Images per call (0 = the config's eval.batch_size).")
flags.DEFINE_list("hints", ["0", "1", "2", "5", "10", "20"], "Numbers of hints.")
flags.DEFINE_integer("seed", 0, "Seed of the hints (and of sampling models' noise).")
flags.DEFINE_list("reference", [], "Other workdirs to measure on the same images and draw "
                  "on the same plot: hint models get their curve, models without hints "
                  "their automatic score (a horizontal line), e.g. the same model trained "
                  "without hints.")
flags.DEFINE_string("out", "", "Output folder ('' = hint_curve/ in the workdir, or beside "
                    "the export).")
FLAGS = flags.FLAGS


def load_model(workdir: str | None, step: int, export_dir: str | None):
    """(config, objective, inference variables, a label) of a run or an export."""
    if bool(workdir) == bool(export_dir):
        raise app.UsageError("give exactly one of --workdir and --export")
    if export_dir:
        from colorjax.inference.artifact import read_export
        config, metadata, objective, variables = read_export(export_dir)
        return config, objective, variables, f"{metadata['model']} export step {metadata['step']}"
    from colorjax.training.checkpoint import restore_run
    config, objective, state, step = restore_run(workdir, step)
    return (config, objective, objective.inference_variables(state),
            f"{config.model.name} step {step}")


def curve(objective, variables, batches, counts, seed: int, spread: bool = False) -> dict:
    """{k: {"ciede2000", "psnr", "num_examples"}} for every k in `counts`, plus "gray";
    with `spread`, also ("spread", k): the hints spread along the image alone
    (`colorjax.hints.propagation`, no network), the prior a propagating model starts from.
    A model without hints is measured at k = 0 only (its automatic colorization)."""
    from colorjax.hints.propagation import propagate

    takes_hints = bool(getattr(objective, "hints", False))
    counts = counts if takes_hints else [0]
    predict = jax.jit(lambda v, l, r, h: objective.predict_with(v, l, r, hints=h)
                      if takes_hints else objective.predict_with(v, l, r))
    spread_ab = jax.jit(lambda l, h: propagate(l, h)[..., :2])

    @jax.jit
    def scores(l, ab_pred, ab_true):
        lab_pred = color.model_outputs_to_lab(l, ab_pred)
        lab_true = color.model_outputs_to_lab(l, ab_true)
        return (metrics.ciede2000(lab_pred, lab_true),
                metrics.psnr(color.lab_to_rgb(lab_pred), color.lab_to_rgb(lab_true),
                             max_db=100.0))

    keys = [*counts, "gray"] + ([("spread", k) for k in counts] if spread else [])
    sums = {k: np.zeros(2) for k in keys}
    n, start = 0, 0
    for i, batch in enumerate(batches):
        keep = np.asarray(batch["mask"]) > 0
        l, ab = np.asarray(batch["l"]), np.asarray(batch["ab"])
        positions = range(start, start + len(l))  # the image's index in the split
        start += len(l)
        rng = jax.random.fold_in(jax.random.key(seed), i)
        for k in counts:
            planes = hints.sample_batch(ab, seed, positions, num_points=k)
            ab_pred = predict(variables, l, rng, planes)
            ciede, psnr = (np.asarray(x)[keep] for x in scores(l, ab_pred, ab))
            sums[k] += (ciede.sum(), psnr.sum())
            if spread:
                ciede, psnr = (np.asarray(x)[keep]
                               for x in scores(l, spread_ab(l, planes), ab))
                sums[("spread", k)] += (ciede.sum(), psnr.sum())
        ciede, psnr = (np.asarray(x)[keep] for x in scores(l, np.zeros_like(ab), ab))
        sums["gray"] += (ciede.sum(), psnr.sum())
        n += int(keep.sum())
    if not n:
        raise ValueError("the eval data has no images")
    return {k: {"ciede2000": float(s[0] / n), "psnr": float(s[1] / n), "num_examples": n}
            for k, s in sums.items()}


SPREAD = "hints spread alone (no network)"


def curves_of(rows: dict, label: str) -> dict:
    """{series name: {k: row}}: the model, the spread-alone prior (if measured)."""
    out = {label: {k: r for k, r in rows.items() if isinstance(k, int)}}
    spread = {k[1]: r for k, r in rows.items() if isinstance(k, tuple)}
    if spread:
        out[SPREAD] = spread
    return out


def markdown(series: dict, gray: dict, title: str) -> str:
    """One row per number of hints, CIEDE2000 and PSNR per series; a series measured at
    k = 0 only (a model without hints) is its automatic score on every row."""
    ks = sorted({k for rows in series.values() for k in rows})
    head = "| hints | " + " | ".join(f"{name}: CIEDE2000 ↓ | PSNR (dB) ↑" for name in series)
    lines = [title, "", head + " |", "|---:|" + "---:|---:|" * len(series)]
    for k in ks:
        cells = []
        for rows in series.values():
            r = rows.get(k, rows[0] if list(rows) == [0] else None)
            cells.append("  |  " if r is None else f"{r['ciede2000']:.3f} | {r['psnr']:.3f}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("| gray (ab = 0) | " + " | ".join(
        f"{gray['ciede2000']:.3f} | {gray['psnr']:.3f}" for _ in series) + " |")
    return "\n".join(lines) + "\n"


def plot(series: dict, gray: dict, title: str, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted({k for rows in series.values() for k in rows})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, metric, label in ((axes[0], "ciede2000", "CIEDE2000 (lower is better)"),
                              (axes[1], "psnr", "PSNR, dB (higher is better)")):
        for name, rows in series.items():
            if list(rows) == [0]:  # no hints: its automatic score
                ax.axhline(rows[0][metric], ls=":", color="black", label=name)
            else:
                style = "s--" if name == SPREAD else "o-"
                ax.plot(sorted(rows), [rows[k][metric] for k in sorted(rows)], style,
                        label=name)
        ax.axhline(gray[metric], color="gray", ls="--", label="gray (ab = 0)")
        ax.set_xlabel("number of hints")
        ax.set_ylabel(label)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlim(min(ks) - 0.3, max(ks) * 1.15 + 0.3)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    try:
        counts = sorted({int(k) for k in FLAGS.hints})
    except ValueError:
        raise app.UsageError(f"--hints={','.join(FLAGS.hints)}: allowed: integers >= 0")
    if not counts or counts[0] < 0:
        raise app.UsageError(f"--hints={','.join(FLAGS.hints)}: allowed: integers >= 0")
    config, objective, variables, label = load_model(FLAGS.workdir, FLAGS.step, FLAGS.export)
    if not getattr(objective, "hints", False):
        sys.exit(f"error: {label} was trained without colour hints (config.model.hints="
                 "False); the curve needs a hint model")
    if FLAGS.eval_folder:
        config.data.eval_folder = FLAGS.eval_folder
    split = FLAGS.split or config.eval.split
    batches = data.create_eval_iterator(
        config.data, split=split, global_batch_size=FLAGS.batch_size or config.eval.batch_size,
        num_examples=FLAGS.num_examples or None)
    rows = curve(objective, variables, batches, counts, FLAGS.seed,
                 spread=bool(getattr(objective, "hint_propagation", False)))
    gray = rows["gray"]
    n = gray["num_examples"]
    if FLAGS.workdir:
        label = f"{os.path.basename(os.path.normpath(FLAGS.workdir))} ({label})"
    series = curves_of(rows, label)
    for ref in FLAGS.reference:  # the same images, the same hints
        r_config, r_obj, r_vars, r_label = load_model(ref, -1, None)
        ref_batches = data.create_eval_iterator(
            config.data, split=split,
            global_batch_size=FLAGS.batch_size or config.eval.batch_size,
            num_examples=FLAGS.num_examples or None)
        ref_rows = curve(r_obj, r_vars, ref_batches, counts, FLAGS.seed)
        name = f"{os.path.basename(os.path.normpath(ref))} ({r_label}" + (
            ")" if getattr(r_obj, "hints", False) else ", no hints)")
        series.update(curves_of(ref_rows, name))
    where = FLAGS.eval_folder or config.data.eval_folder or config.data.eval_name or (
        config.data.folder or config.data.name)
    title = f"Colour hints: {label}, {where}:{split}, {n} images, seed {FLAGS.seed}"
    out = FLAGS.out or (os.path.join(FLAGS.workdir, "hint_curve") if FLAGS.workdir else
                        os.path.join(os.path.dirname(os.path.abspath(FLAGS.export)),
                                     "hint_curve"))
    os.makedirs(out, exist_ok=True)
    text = markdown(series, gray, title)
    with open(os.path.join(out, "hint_curve.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "hint_curve.json"), "w") as f:
        json.dump({"title": title, "split": split, "seed": FLAGS.seed,
                   "rows": {str(k): v for k, v in rows.items() if not isinstance(k, tuple)},
                   "gray": gray,
                   "series": {name: {str(k): v for k, v in r.items()}
                              for name, r in series.items()}}, f, indent=2)
    plot(series, gray, title, os.path.join(out, "hint_curve.png"))
    print(text + f"written to {out}/hint_curve.md, .json, .png")


if __name__ == "__main__":
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()  # XLA:CPU's convolution choice, as the entry points make it
    app.run(main)
