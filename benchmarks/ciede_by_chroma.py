"""Where a colorizer wins or loses CIEDE2000 against the gray baseline, by the true chroma.

    python benchmarks/ciede_by_chroma.py --workdir=runs/q_unet_l1 [--step=-1] [--split=...]
        [--num_examples=0] [--image_size=0]

Restores a run's checkpoint and the config saved with it, predicts every image of the eval
split (the run's eval data), and reports the mean per-pixel CIEDE2000 of the prediction and
of the gray baseline (ab = 0) over pixels grouped by the true chroma C*ab = |ab|. Also: the
prediction scaled towards gray (ab x 0.5), a global tint per image (the image's mean
predicted ab everywhere), the share of pixels in each group, the mean chroma the model puts
on them, and the CIEDE2000 between two predictions with different keys: for a sampler whose
spread matches its error this is close to its error against the truth; far below it means
confident, wrong colours rather than uncertain ones (0 for deterministic models). A second
table compares each image's colour cast (its mean a*, b*) between the model and the truth:
how much it varies across images, and whether the model's follows the truth's.

Why: CIEDE2000 judges a colour on a near-neutral pixel harshly (its chroma weighting S_C is
small there, and a* is stretched by up to 1.5 at low chroma), so a model that tints gray
walls and skies can lose to "no colour" while winning on colourful pixels. Writes
`workdir/eval/<split>_step_N_by_chroma.md`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from colorjax import color, data, metrics  # noqa: E402
from trained_run import load_run  # noqa: E402

flags.DEFINE_string("workdir", None, "Training workdir holding checkpoints/.")
flags.DEFINE_integer("step", -1, "Checkpoint step (-1 = latest).")
flags.DEFINE_string("split", "", "Eval split ('' = the run's config.eval.split).")
flags.DEFINE_integer("num_examples", 0, "Images to use (0 = the whole split).")
flags.DEFINE_integer("image_size", 0, "Eval crop size (0 = the run's config.data.image_size; "
                     "e.g. 64 for a run trained on 32 px crops).")
flags.DEFINE_float("temperature", None, "Sampler temperature for diffusion runs (default: the "
                   "run's config.sampler.temperature).")
flags.DEFINE_list("bins", ["0", "5", "15", "30"], "Lower edges of the true-chroma groups.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def pixel_errors(objective, state, batches, rng):
    """Per-pixel maps: CIEDE2000 of the model, gray, model x 0.5, per-image tint and of the
    model against a second prediction (another key); the true and the predicted chroma.
    Per image: the mean (a*, b*) of the truth, the model and its second prediction."""
    rng, rng_second = jax.random.split(rng)

    @jax.jit
    def maps(l, ab_true):
        ab = objective.predict(state, l, rng)
        lab = lambda p: color.model_outputs_to_lab(l, p)  # noqa: E731
        lab_true, lab_model = lab(ab_true), lab(ab)
        tint = jnp.broadcast_to(jnp.mean(ab, axis=(1, 2), keepdims=True), ab.shape)
        err = lambda p: metrics.ciede2000_map(lab(p), lab_true)  # noqa: E731
        chroma = lambda x: jnp.hypot(x[..., 1], x[..., 2])  # noqa: E731
        lab_second = lab(objective.predict(state, l, rng_second))
        second = metrics.ciede2000_map(lab_second, lab_model)
        cast = lambda x: jnp.mean(x[..., 1:], axis=(1, 2))  # noqa: E731
        return (err(ab), err(jnp.zeros_like(ab)), err(0.5 * ab), err(tint), second,
                chroma(lab_true), chroma(lab_model),
                cast(lab_true), cast(lab_model), cast(lab_second))

    out = []
    for batch in batches:
        keep = np.asarray(batch["mask"]) > 0
        out.append([np.asarray(m)[keep] for m in maps(batch["l"], batch["ab"])])
    return [np.concatenate(parts) for parts in zip(*out)]


def main(argv):
    del argv
    config, objective, state, step, _ = load_run(FLAGS.workdir, FLAGS.step,
                                                 temperature=FLAGS.temperature)
    split = FLAGS.split or config.eval.split
    if FLAGS.image_size:
        config.data.image_size = FLAGS.image_size
    batches = data.create_eval_iterator(config.data, split=split,
                                        global_batch_size=config.eval.batch_size,
                                        num_examples=FLAGS.num_examples or None)
    (model, gray, half, tint, second, chroma, model_chroma,
     cast_true, cast_model, cast_second) = pixel_errors(objective, state, batches,
                                                        jax.random.key(config.seed))
    edges = [float(b) for b in FLAGS.bins] + [np.inf]
    suffix = "" if FLAGS.temperature is None else f"_temperature{FLAGS.temperature:g}"
    lines = [f"CIEDE2000 by true chroma: {FLAGS.workdir} step {step}{suffix}, {split}, "
             f"{model.shape[0]} images", "",
             "| true chroma | share of pixels | model | gray (ab = 0) | model ab x 0.5 | "
             "per-image tint | model vs its second draw | model's chroma |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    groups = [(f"{lo:g}-{hi:g}", (chroma >= lo) & (chroma < hi))
              for lo, hi in zip(edges[:-1], edges[1:])] + [("all", np.ones_like(chroma, bool))]
    for name, m in groups:
        lines.append(f"| {name} | {m.mean():.2f} | {model[m].mean():.2f} | "
                     f"{gray[m].mean():.2f} | {half[m].mean():.2f} | {tint[m].mean():.2f} | "
                     f"{second[m].mean():.2f} | {model_chroma[m].mean():.2f} |")
    lines += ["", "Per-image colour cast (each image's mean a*, b*):", "",
              "| | mean a*, b* | std across images a*, b* | correlation with the truth's a*, b* |",
              "|---|---:|---:|---:|"]
    for name, c in (("truth", cast_true), ("model", cast_model),
                    ("model, second draw", cast_second)):
        corr = [np.corrcoef(c[:, k], cast_true[:, k])[0, 1] for k in (0, 1)]
        lines.append(f"| {name} | {c[:, 0].mean():.1f}, {c[:, 1].mean():.1f} | "
                     f"{c[:, 0].std():.1f}, {c[:, 1].std():.1f} | "
                     f"{corr[0]:.2f}, {corr[1]:.2f} |")
    text = "\n".join(lines) + "\n"
    out = Path(FLAGS.workdir) / "eval" / f"{split}_step_{step}{suffix}_by_chroma.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text + f"written to {out}")


if __name__ == "__main__":
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()  # XLA:CPU's convolution choice, as the entry points make it
    jax.config.update("jax_platforms", "cpu")
    app.run(main)
