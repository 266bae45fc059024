"""Evaluation: colorization metrics over a split, the gray baseline, tables and image grids."""

from __future__ import annotations

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from colorjax import color, data, metrics
from colorjax.platform import parallel
from colorjax.config.checks import ConfigError
from colorjax.metrics.table import (  # noqa: F401 - re-exported: the tables' names
    METRICS, SAME_AS_GRAY, versus_gray, versus_gray_words)

# Pooled over every pixel of the split (not a mean of per-image values): summed as counts.
POOLED_COUNTS = "auc_counts"
# Summed too: images whose prediction holds NaN/Inf (their AuC counts are no score).
NONFINITE = "nonfinite_images"


def image_metrics(l, ab_pred, ab_true, lpips_distance) -> dict:
    """Per-image metrics (each (N,)) of predicted vs true ab, both in network range."""
    lab_pred = color.model_outputs_to_lab(l, ab_pred)
    lab_true = color.model_outputs_to_lab(l, ab_true)
    rgb_pred, rgb_true = color.lab_to_rgb(lab_pred), color.lab_to_rgb(lab_true)
    per_image = {
        "loss": jnp.mean((ab_pred - ab_true) ** 2, axis=(1, 2, 3)),
        "ssim": metrics.ssim(rgb_pred, rgb_true),
        "psnr": metrics.psnr(rgb_pred, rgb_true),
        "delta_e76": metrics.delta_e76(lab_pred, lab_true),
        "ciede2000": metrics.ciede2000(lab_pred, lab_true),
        "lpips": lpips_distance(rgb_pred, rgb_true),
        "colorfulness": metrics.colorfulness(rgb_pred),
        "colorfulness_true": metrics.colorfulness(rgb_true),
    }
    # A prediction holding NaN/Inf has no score. Some metrics would read it as a perfect
    # 0 (ΔE76 and CIEDE2000 take safe square roots, NaN > 0 being false), so each metric
    # of such an image is NaN; the truth's colourfulness is the truth's.
    finite = finite_predictions(ab_pred)
    return {k: v if k == "colorfulness_true" else jnp.where(finite, v, jnp.nan)
            for k, v in per_image.items()}


def finite_predictions(ab_pred) -> jax.Array:
    """(N,) True where image n's predicted ab holds no NaN or Inf."""
    return jnp.all(jnp.isfinite(ab_pred), axis=tuple(range(1, ab_pred.ndim)))


def lpips_on_small_images(lpips, params):
    """LPIPS distance that bilinearly upsamples images below the backbone's minimum size
    (e.g. 16 px test images; AlexNet needs 31 px) instead of refusing them."""
    def dist(x, y):
        h, w = x.shape[1:3]
        if min(h, w) < lpips.min_size:
            s = lpips.min_size / min(h, w)
            shape = (x.shape[0], round(h * s), round(w * s), 3)
            x, y = (jax.image.resize(v, shape, "bilinear") for v in (x, y))
        return lpips.distance(params, x, y)
    return dist


def _masked_sums(per_image: dict, mask) -> dict:
    """Sums over the real (unpadded) images of each metric, and their count under "count"."""
    # PSNR is +inf for a perfect image: 100 dB, rather than poison the mean. NaN (a model
    # whose predictions are not finite) stays NaN: it must never read as a perfect 0.
    sums = {k: jnp.sum(jnp.where(mask > 0, jnp.where(v == jnp.inf, 100.0, v), 0.0))
            for k, v in per_image.items()}
    return sums | {"count": jnp.sum((mask > 0).astype(jnp.float32))}


def _batch_sums(l, ab_pred, ab_true, lpips_distance, mask) -> dict:
    """Masked per-image metric sums plus the AuC counts of the batch (ab in network range)."""
    sums = _masked_sums(image_metrics(l, ab_pred, ab_true, lpips_distance), mask)
    counts = metrics.accuracy_counts(ab_pred * color.AB_SCALE, ab_true * color.AB_SCALE, mask)
    nonfinite = jnp.sum(((mask > 0) & ~finite_predictions(ab_pred)).astype(jnp.float32))
    return sums | {POOLED_COUNTS: counts, NONFINITE: nonfinite}


def _means(totals: dict) -> dict:
    """Per-image means of the summed metrics, and the AuC of the pooled counts."""
    totals = dict(totals)
    counts = totals.pop(POOLED_COUNTS, None)
    count = float(totals.pop("count", 0.0))
    nonfinite = float(totals.pop(NONFINITE, 0.0))
    if not count:
        return {}
    means = {k: float(v) / count for k, v in totals.items()}
    if counts is not None:
        # NaN pixels count as misses there (a 0, not a score): the AuC of a split with
        # non-finite predictions is NaN like the other metrics.
        means |= {k: float(v) if not nonfinite else float("nan")
                  for k, v in metrics.auc_from_counts(np.asarray(counts)).items()}
    return means | {"num_examples": count}


class NonFiniteMetricsError(RuntimeError):
    """A model's metrics came out NaN or infinite: its predictions are not finite."""


def require_finite_metrics(rows: dict[str, dict], where: str, table: str = "") -> None:
    """NonFiniteMetricsError naming each row of `rows` (model -> metrics) with a NaN/Inf
    metric: such a model has no score, and the run's evaluation fails (after its table,
    where they read nan, is written: `table`)."""
    bad = {name: [k for k, v in row.items() if isinstance(v, (int, float))
                  and not np.isfinite(v)] for name, row in rows.items()}
    bad = {name: keys for name, keys in bad.items() if keys}
    if bad:
        what = "; ".join(f"{name}: {', '.join(keys)}" for name, keys in bad.items())
        raise NonFiniteMetricsError(
            f"metrics came out NaN/Inf {where} ({what}): the model's predictions are not "
            "finite, so it has no score (its weights, or activations they overflow); train "
            "it again from an earlier checkpoint or with a smaller learning rate"
            + (f". The table: {table}" if table else ""))


def _hint_kwargs(batch: dict) -> dict:
    """`predict`'s hints keyword where the eval batch has hint planes (config.eval.num_hints)."""
    return {"hints": batch["hints"]} if "hints" in batch else {}


def _add_sums(totals: dict, sums: dict) -> dict:
    return jax.tree.map(jnp.add, totals, sums)


@functools.cache
def _per_image_metrics(net: str):
    """`image_metrics` with the LPIPS `net`, jitted: one program per net per process, shared
    by every Evaluator (compare scores many runs and exports)."""
    lpips = metrics.LPIPS(net)
    return jax.jit(lambda l, p, t, params: image_metrics(
        l, p, t, lpips_on_small_images(lpips, params)))


class Evaluator:
    """Jitted evaluation of any objective's `predict` on one split of the eval dataset."""

    def __init__(self, config, objective, mesh):
        self.config = config
        self.objective = objective
        self.mesh = mesh
        self.lpips = metrics.LPIPS(config.eval.lpips_net)
        self.rng = jax.random.fold_in(jax.random.key(config.seed), 0xE7A1)
        self.seconds_per_image = None  # the network's, measured by `per_image`
        repl, sharded = parallel.replicated(mesh), parallel.data_sharded(mesh)
        self._model_sums = jax.jit(self._model_batch_sums,
                                   in_shardings=(repl, sharded, repl, repl), out_shardings=repl)
        self._gray_sums = jax.jit(self._gray_batch_sums,
                                  in_shardings=(sharded, repl), out_shardings=repl)
        # `inputs`: the batch's "l" (and "hints" where the eval batches have them).
        self._predict = jax.jit(
            lambda state, inputs, rng: objective.predict(state, inputs["l"], rng,
                                                         **_hint_kwargs(inputs)),
            in_shardings=(repl, sharded, repl), out_shardings=sharded)
        # Running sums stay on the devices; the host fetches them once per split.
        self._add = jax.jit(_add_sums, out_shardings=repl, donate_argnums=0)
        self._baselines: dict[str, dict] = {}

    def _model_batch_sums(self, state, batch, rng, lpips_params):
        ab = self.objective.predict(state, batch["l"], rng, **_hint_kwargs(batch))
        dist = lpips_on_small_images(self.lpips, lpips_params)
        return _batch_sums(batch["l"], ab, batch["ab"], dist, batch["mask"])

    def _gray_batch_sums(self, batch, lpips_params):
        dist = lpips_on_small_images(self.lpips, lpips_params)
        gray = jnp.zeros_like(batch["ab"])
        return _batch_sums(batch["l"], gray, batch["ab"], dist, batch["mask"])

    def _batches(self, split):
        cfg = self.config
        # A hint model is evaluated without hints (its automatic colorization) unless
        # config.eval.num_hints asks for that many points from the truth, seeded.
        num_hints = int(cfg.eval.get("num_hints", 0) or 0)
        return data.create_eval_iterator(
            cfg.data, split=split, global_batch_size=cfg.eval.batch_size,
            num_examples=cfg.eval.num_examples or None,
            num_hints=num_hints or None, hint_seed=cfg.seed)

    def _mean_over_split(self, split, batch_sums) -> dict:
        totals = None
        for i, local in enumerate(self._batches(split)):
            batch = parallel.shard_batch(local, self.mesh)
            sums = batch_sums(batch, jax.random.fold_in(self.rng, i))
            totals = sums if totals is None else self._add(totals, sums)
        means = _means(jax.device_get(totals or {}))
        if not means:
            raise ConfigError("config.eval.split", f"{split!r} has no examples to evaluate")
        return means

    def evaluate(self, state, split: str | None = None) -> dict:
        """Mean metrics of the model's predictions over the split."""
        split = split or self.config.eval.split
        fn = lambda b, r: self._model_sums(state, b, r, self.lpips.params)
        return self._mean_over_split(split, fn)

    def gray_baseline(self, split: str | None = None) -> dict:
        """What "no colour" (ab = 0) scores on the split; computed once per run."""
        split = split or self.config.eval.split
        if split not in self._baselines:
            fn = lambda b, r: self._gray_sums(b, self.lpips.params)
            self._baselines[split] = self._mean_over_split(split, fn)
        return self._baselines[split]

    def _predicted_batches(self, state, split, timing: list | None = None):
        """(batch, predicted ab, mask of real rows) per eval batch of `split`: the batches,
        hints and keys `evaluate` uses, as host arrays. Gathers are collectives: every
        process runs them. `timing` gets (seconds, images) of each batch's prediction."""
        for i, local in enumerate(self._batches(split)):
            batch = parallel.shard_batch(local, self.mesh)
            inputs = {k: batch[k] for k in ("l", "hints") if k in batch}
            keep = parallel.to_host(batch["mask"]) > 0  # drop the padding rows
            t0 = time.perf_counter()
            ab = parallel.to_host(self._predict(state, inputs, jax.random.fold_in(self.rng, i)))
            if timing is not None:
                timing.append((time.perf_counter() - t0, int(keep.sum())))
            host = {k: parallel.to_host(batch[k])[keep] for k in ("l", "ab")}
            yield host, ab[keep]

    def per_image(self, state, split: str | None = None):
        """(l, predicted ab, true ab, per-image metrics) over the whole split, in order:
        what `evaluate` averages, image by image (compare's table and its intervals)."""
        split = split or self.config.eval.split
        ls, preds, trues, timing = [], [], [], []
        for batch, ab in self._predicted_batches(state, split, timing):
            ls.append(batch["l"]), preds.append(ab), trues.append(batch["ab"])
        if not ls:
            raise ConfigError("config.eval.split", f"{split!r} has no examples to evaluate")
        # The network's seconds per image, the first batch (it compiles) left out; None
        # with a single batch.
        later = timing[1:]
        self.seconds_per_image = (sum(t for t, _ in later) / max(1, sum(n for _, n in later))
                                  if later else None)
        l, ab_pred, ab_true = (np.concatenate(x) for x in (ls, preds, trues))
        return l, ab_pred, ab_true, self.score(l, ab_pred, ab_true)

    def score(self, l, ab_pred, ab_true) -> dict:
        """Per-image metrics ({name: (N,)} host arrays) of host arrays, in eval batches."""
        score = _per_image_metrics(self.config.eval.lpips_net)
        size = int(self.config.eval.batch_size)
        parts = [jax.device_get(score(l[s:s + size], ab_pred[s:s + size],
                                            ab_true[s:s + size], self.lpips.params))
                 for s in range(0, len(l), size)]
        return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}

    def sample_grid(self, state, path: str, split: str | None = None) -> str:
        """PNG with rows gray | prediction | ground truth for `eval.num_images` images."""
        split = split or self.config.eval.split
        n = self.config.eval.num_images
        ls, preds, trues = [], [], []
        for batch, ab in self._predicted_batches(state, split):
            ls.append(batch["l"]), preds.append(ab), trues.append(batch["ab"])
            if sum(len(x) for x in ls) >= n:
                break
        l, ab_pred, ab_true = (np.concatenate(x)[:n] for x in (ls, preds, trues))
        rows = [color.gray_rgb(l), color.model_outputs_to_rgb(l, ab_pred),
                color.model_outputs_to_rgb(l, ab_true)]
        if jax.process_index() == 0:
            save_grid(rows, path)
        return path


def save_grid(rows, path: str, min_tile: int = 128) -> None:
    """Save a list of image rows (each (n,H,W,3) in [0,1]) as one PNG, upscaled for viewing."""
    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    img = Image.fromarray(np.round(np.clip(grid, 0, 1) * 255).astype(np.uint8))
    scale = max(1, min_tile // rows[0].shape[1])
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    img.save(path)


def markdown_table(rows: dict[str, dict]) -> str:
    """One row per model (or baseline), one column per metric."""
    cols = [k for k in METRICS if any(k in r for r in rows.values())]
    head = "| | " + " | ".join(f"{c} {METRICS[c]}".strip() for c in cols) + " |"
    sep = "|---|" + "---:|" * len(cols)
    body = ["| " + name + " | " + " | ".join(f"{r.get(c, float('nan')):.4f}" for c in cols) + " |"
            for name, r in rows.items()]
    return "\n".join([head, sep, *body])


def write_report(rows: dict[str, dict], directory: str, stem: str) -> tuple[str, str]:
    """Write `stem.md` and `stem.json` with the metrics table; returns their paths."""
    if jax.process_index() != 0:
        return "", ""
    os.makedirs(directory, exist_ok=True)
    md, js = os.path.join(directory, stem + ".md"), os.path.join(directory, stem + ".json")
    with open(md, "w") as f:
        f.write(markdown_table(rows) + "\n")
    with open(js, "w") as f:
        json.dump(rows, f, indent=2)
    return md, js
