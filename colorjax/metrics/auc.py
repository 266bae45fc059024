"""AuC colour accuracy of Zhang, Isola & Efros, "Colorful Image Colorization" (ECCV 2016), §3.1.

accuracy(t) is the fraction of pixels whose predicted ab lies within L2 distance t (Lab units)
of the truth; the AuC is the area under that curve for t in [0, 150], normalised to [0, 1].
The class-rebalanced AuC weights every true-colour ab bin (10-unit grid) equally.

Statistics are accumulable: `accuracy_counts` of each batch sum to those of the whole set,
and `auc_from_counts` turns the total into the two numbers.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from colorjax.color import AB_SCALE

MAX_THRESHOLD = 150
GRID = 10.0
BINS_PER_AXIS = math.ceil(2 * AB_SCALE / GRID)
NUM_BINS = BINS_PER_AXIS ** 2
# Buckets 0..MAX_THRESHOLD hold ceil(d); the last one holds every d beyond MAX_THRESHOLD.
NUM_BUCKETS = MAX_THRESHOLD + 2


def _true_bins(ab_true):
    """Flat index of each pixel's true-colour bin; out-of-gamut values go to the edge bins."""
    idx = jnp.clip(jnp.floor((ab_true + AB_SCALE) / GRID), 0, BINS_PER_AXIS - 1)
    idx = idx.astype(jnp.int32)
    return idx[..., 0] * BINS_PER_AXIS + idx[..., 1]


def _distance_buckets(ab_pred, ab_true):
    """ceil of each pixel's ab distance, clipped to the "beyond" bucket."""
    d = jnp.sqrt(jnp.sum((ab_pred - ab_true) ** 2, axis=-1))
    d = jnp.where(jnp.isnan(d), jnp.inf, d)  # a NaN prediction is as wrong as can be
    return jnp.clip(jnp.ceil(d), 0, NUM_BUCKETS - 1).astype(jnp.int32)


def accuracy_counts(ab_pred, ab_true, mask=None) -> jax.Array:
    """(NUM_BINS, NUM_BUCKETS) float32 pixel counts per true-colour bin and distance bucket.

    ab_pred, ab_true: (N, H, W, 2) in Lab units; mask: (N,), images with mask 0 are left out.
    """
    ab_pred = jnp.asarray(ab_pred, jnp.float32)
    ab_true = jnp.asarray(ab_true, jnp.float32)
    flat = _true_bins(ab_true) * NUM_BUCKETS + _distance_buckets(ab_pred, ab_true)
    if mask is None:
        weight = jnp.ones(flat.shape, jnp.float32)
    else:
        per_image = (jnp.asarray(mask) > 0).astype(jnp.float32)
        weight = jnp.broadcast_to(per_image[:, None, None], flat.shape)
    # One scatter-add: a one-hot matmul over 73k cells would dominate the CPU eval step.
    counts = jnp.zeros(NUM_BINS * NUM_BUCKETS, jnp.float32)
    counts = counts.at[flat.reshape(-1)].add(weight.reshape(-1))
    return counts.reshape(NUM_BINS, NUM_BUCKETS)


def _curve_auc(xp, counts):
    """AuC of each row of (..., NUM_BUCKETS) counts; NaN for rows without pixels."""
    total = counts.sum(-1)
    acc = xp.cumsum(counts[..., :MAX_THRESHOLD + 1], axis=-1)
    acc = acc / xp.where(total > 0, total, 1)[..., None]
    # Trapezoid over integer thresholds 0..MAX_THRESHOLD with unit spacing.
    area = acc.sum(-1) - (acc[..., 0] + acc[..., -1]) / 2
    return xp.where(total > 0, area / MAX_THRESHOLD, xp.nan)


def auc_from_counts(counts) -> dict:
    """{"auc", "auc_rebalanced"} from (summed) `accuracy_counts`; numpy or jax input."""
    xp = jnp if isinstance(counts, jax.Array) else np
    counts = xp.asarray(counts, dtype=xp.float32 if xp is jnp else np.float64)
    pooled = _curve_auc(xp, counts.sum(0))
    per_bin = _curve_auc(xp, counts)
    filled = counts.sum(-1) > 0
    # Mean over the non-empty bins: each true colour counts once, however common it is.
    n = filled.sum()
    rebalanced = xp.where(n > 0, xp.where(filled, per_bin, 0).sum() / xp.maximum(n, 1), xp.nan)
    return {"auc": pooled, "auc_rebalanced": rebalanced}


def ab_accuracy_auc(ab_pred, ab_true, mask=None) -> dict:
    """AuC and rebalanced AuC of one batch (ab in Lab units); see `accuracy_counts`."""
    return auc_from_counts(accuracy_counts(ab_pred, ab_true, mask))
