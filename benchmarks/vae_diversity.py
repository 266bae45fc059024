"""Diversity and plausibility of a trained VAE colorizer's prior samples.

    python benchmarks/vae_diversity.py --workdir=runs/q_unetvae [--samples=4] [--step=-1]
        [--split=validation] [--num_examples=0] [--grid_images=6]

Restores the checkpoint (and the config saved with it) from `workdir`, then over the eval
split draws `--samples` colourings z ~ N(0, I) of every image, plus the z = 0 colouring, and
reports per image, averaged over the split:

* diversity: the mean pairwise CIEDE2000 between the samples of the same image (0 = the
  latent is ignored);
* plausibility: CIEDE2000 and LPIPS of each sample against the true colours, next to those
  of z = 0 and of the gray baseline (ab = 0), and the samples' colourfulness next to the
  truth's;
* what the latent can carry: the same figures with z = the posterior mean of the encoder,
  which sees the true colours (an oracle, not a prediction: it shows how far the right z
  moves the colours).

Writes `workdir/diversity/<split>_step_N.{md,json,png}`; the PNG has one row per sample:
gray | z = 0 | sample 1..S | ground truth, one column per image.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from colorjax import color, data, metrics  # noqa: E402
from colorjax.platform import parallel
from colorjax.training.evaluate import lpips_on_small_images, save_grid  # noqa: E402
from trained_run import load_run  # noqa: E402

flags.DEFINE_string("workdir", None, "Training workdir holding checkpoints/.")
flags.DEFINE_integer("step", -1, "Checkpoint step (-1 = latest).")
flags.DEFINE_integer("samples", 4, "Prior samples per image.")
flags.DEFINE_string("split", "", "Eval split ('' = the run's config.eval.split).")
flags.DEFINE_integer("num_examples", 0, "Images to use (0 = the whole split).")
flags.DEFINE_integer("grid_images", 6, "Images (columns) in the sample grid.")
flags.DEFINE_integer("seed", 0, "Seed of the prior samples.")
flags.DEFINE_string("eval_name", "", "Evaluate on this dataset instead of the run's eval data "
                    "(e.g. colorjax_demo, whose photos may be shown in docs).")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def posterior_mean(objective, state, l, ab):
    """The encoder's mu for (L, true ab): the latent that best explains the true colours."""
    ms = state.model_state["encoder"]
    mu, _ = objective.encoder.apply({"params": state.params["encoder"], **ms}, l, ab,
                                    train=False)
    return mu


def per_image_stats(objective, lpips, state, l, ab_true, rng, num_samples):
    """Per-image diversity and plausibility figures, plus the images for the grid."""
    dist = lpips_on_small_images(lpips, lpips.params)
    variables = objective.inference_variables(state)
    n = l.shape[0]
    zs = [objective.latent(jax.random.fold_in(rng, k), n, "prior") for k in range(num_samples)]
    samples = [objective.decode(variables, l, z) for z in zs]
    ab_zero = objective.decode(variables, l, objective.latent(rng, n, "zero"))
    ab_post = objective.decode(variables, l, posterior_mean(objective, state, l, ab_true))
    lab = lambda ab: color.model_outputs_to_lab(l, ab)  # noqa: E731
    rgb = lambda ab: color.model_outputs_to_rgb(l, ab)  # noqa: E731
    lab_true, rgb_true = lab(ab_true), rgb(ab_true)
    pairs = list(itertools.combinations(range(num_samples), 2))
    pairwise = jnp.mean(jnp.stack(
        [metrics.ciede2000(lab(samples[i]), lab(samples[j])) for i, j in pairs]), 0)
    mean_over = lambda f: jnp.mean(jnp.stack([f(s) for s in samples]), 0)  # noqa: E731
    stats = {
        "pairwise_ciede2000": pairwise,
        "prior_ciede2000": mean_over(lambda s: metrics.ciede2000(lab(s), lab_true)),
        "prior_lpips": mean_over(lambda s: dist(rgb(s), rgb_true)),
        # The closest of the samples: does one of them find the true colouring?
        "best_of_prior_ciede2000": jnp.min(jnp.stack(
            [metrics.ciede2000(lab(s), lab_true) for s in samples]), 0),
        "prior_colorfulness": mean_over(lambda s: metrics.colorfulness(rgb(s))),
        "zero_ciede2000": metrics.ciede2000(lab(ab_zero), lab_true),
        "zero_lpips": dist(rgb(ab_zero), rgb_true),
        "zero_colorfulness": metrics.colorfulness(rgb(ab_zero)),
        "posterior_ciede2000": metrics.ciede2000(lab(ab_post), lab_true),
        "posterior_lpips": dist(rgb(ab_post), rgb_true),
        "posterior_colorfulness": metrics.colorfulness(rgb(ab_post)),
        "gray_ciede2000": metrics.ciede2000(lab(jnp.zeros_like(ab_true)), lab_true),
        "gray_lpips": dist(color.gray_rgb(l), rgb_true),
        "gray_colorfulness": metrics.colorfulness(color.gray_rgb(l)),
        "true_colorfulness": metrics.colorfulness(rgb_true),
    }
    return stats, jnp.stack([ab_zero, *samples])


def main(argv):
    del argv
    def use_eval_name(config):
        if FLAGS.eval_name:
            config.data.eval_name, config.data.eval_folder = FLAGS.eval_name, ""

    config, objective, state, step, mesh = load_run(FLAGS.workdir, FLAGS.step, use_eval_name)
    if not hasattr(objective, "latent"):
        raise ValueError(f"{config.model.name!r} is not a VAE: it has no latent to sample")
    split = FLAGS.split or config.eval.split
    lpips = metrics.LPIPS(config.eval.lpips_net)
    stats_fn = jax.jit(lambda v, l, ab, r: per_image_stats(objective, lpips, v, l, ab, r,
                                                           FLAGS.samples))

    batches = data.create_eval_iterator(config.data, split=split,
                                        global_batch_size=config.eval.batch_size,
                                        num_examples=FLAGS.num_examples or None)
    sums, count, grid = {}, 0.0, {"l": [], "ab": [], "true": []}
    rng = jax.random.key(FLAGS.seed)
    for i, local in enumerate(batches):
        batch = parallel.shard_batch(local, mesh)
        stats, abs_ = jax.device_get(stats_fn(state, batch["l"], batch["ab"],
                                              jax.random.fold_in(rng, i)))
        keep = np.asarray(local["mask"]) > 0
        for k, v in stats.items():
            sums[k] = sums.get(k, 0.0) + float(np.sum(np.asarray(v)[keep]))
        count += float(keep.sum())
        if sum(len(x) for x in grid["l"]) < FLAGS.grid_images:
            grid["l"].append(np.asarray(local["l"])[keep])
            grid["ab"].append(np.asarray(abs_)[:, keep])
            grid["true"].append(np.asarray(local["ab"])[keep])
    means = {k: v / count for k, v in sums.items()} | {"num_examples": count, "step": step,
                                                      "samples": FLAGS.samples}

    g = FLAGS.grid_images
    l = np.concatenate(grid["l"])[:g]
    abs_ = np.concatenate(grid["ab"], axis=1)[:, :g]
    rows = [color.gray_rgb(l), *[color.model_outputs_to_rgb(l, a) for a in abs_],
            color.model_outputs_to_rgb(l, np.concatenate(grid["true"])[:g])]
    out = os.path.join(FLAGS.workdir, "diversity" + (f"_{FLAGS.eval_name}" if FLAGS.eval_name else ""))
    stem = os.path.join(out, f"{split}_step_{step}")
    save_grid(rows, stem + ".png", min_tile=64)
    table = "\n".join([
        f"| {config.model.name} step {step}, {int(count)} images | CIEDE2000 ↓ | LPIPS ↓ "
        "| colourfulness |", "|---|---:|---:|---:|",
        f"| gray baseline (ab = 0) | {means['gray_ciede2000']:.3f} | {means['gray_lpips']:.4f} "
        f"| {means['gray_colorfulness']:.2f} |",
        f"| z = 0 | {means['zero_ciede2000']:.3f} | {means['zero_lpips']:.4f} "
        f"| {means['zero_colorfulness']:.2f} |",
        f"| z ~ N(0, I), mean of {FLAGS.samples} | {means['prior_ciede2000']:.3f} "
        f"| {means['prior_lpips']:.4f} | {means['prior_colorfulness']:.2f} |",
        f"| z ~ N(0, I), closest of {FLAGS.samples} to the truth (per image) | "
        f"{means['best_of_prior_ciede2000']:.3f} | | |",
        f"| z = encoder's mean for the true colours (oracle) | "
        f"{means['posterior_ciede2000']:.3f} | {means['posterior_lpips']:.4f} "
        f"| {means['posterior_colorfulness']:.2f} |",
        f"| ground truth | 0 | 0 | {means['true_colorfulness']:.2f} |",
        "",
        f"Mean pairwise CIEDE2000 between the {FLAGS.samples} prior samples of the same image: "
        f"**{means['pairwise_ciede2000']:.3f}**",
    ])
    with open(stem + ".md", "w") as f:
        f.write(table + "\n")
    with open(stem + ".json", "w") as f:
        json.dump(means, f, indent=2)
    print(table)
    print(f"wrote {stem}.md, .json and .png (rows: gray, z = 0, {FLAGS.samples} samples, truth)")


if __name__ == "__main__":
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()  # XLA:CPU's convolution choice, as the entry points make it
    app.run(main)
