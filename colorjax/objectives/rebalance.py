"""Colour rebalancing: make rare (saturated) colours count more in a per-pixel loss.

A per-pixel loss on ab is dominated by the many near-gray pixels of natural photos, so a
regression colorizer learns desaturated, sepia-leaning colour. Zhang, Isola and Efros
(2016, "Colorful Image Colorization", section 2.2, eq. 4) weight each pixel by the inverse
of its colour's smoothed frequency, mixed with a uniform distribution:

    w(q) ∝ ((1 - λ) p̃(q) + λ / Q)^-1,

with ab quantised on a grid of 10 Lab units, p̃ the empirical distribution smoothed by a
Gaussian of σ = 5 Lab units, Q = 313 in-gamut bins and λ = 1/2. Two differences: p̃ is
the histogram of the current global batch (not of the whole training set): it needs no
pass over the data and no state, and at 16 x 64 x 64 = 65,536 pixels per batch it is well
populated; and the weights are normalised to mean 1 over the batch's pixels (Zhang et al.
normalise under p̃), so the weighted loss keeps the unweighted one's scale and the
learning rate its meaning.
`strength` = 1 - λ: 0 leaves the loss unweighted, 0.5 is Zhang et al.'s setting.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from colorjax.color.ab_bins import GRID  # Lab units per ab bin (Zhang et al. 2016)
from colorjax.color.ab_bins import PRIOR_SIGMA as SIGMA  # Lab units, the histogram's smoothing
from colorjax.color import AB_SCALE

IN_GAMUT_BINS = 313  # Q: in-gamut bins at that grid (Zhang et al. 2016)
_BINS = int(2 * -(-AB_SCALE // GRID))  # bins per ab axis covering [-AB_SCALE, AB_SCALE]


def _smooth(hist: jax.Array) -> jax.Array:
    """`hist` (B, B) convolved with a separable Gaussian of SIGMA Lab units."""
    x = jnp.arange(-2, 3, dtype=jnp.float32)
    k = jnp.exp(-0.5 * (x * GRID / SIGMA) ** 2)
    k = k / jnp.sum(k)
    rows = jax.vmap(lambda r: jnp.convolve(r, k, mode="same"))(hist)
    return jax.vmap(lambda c: jnp.convolve(c, k, mode="same"), in_axes=1, out_axes=1)(rows)


def rebalancing_weights(ab: jax.Array, strength: float, mask=None) -> jax.Array:
    """Per-pixel weights (N, H, W) for true ab (N, H, W, 2) in network range, mean 1 over
    the batch's pixels; no gradient. `mask` (N,) leaves padding rows out of
    the histogram."""
    idx = jnp.clip(jnp.floor((ab * AB_SCALE + AB_SCALE) / GRID), 0, _BINS - 1).astype(jnp.int32)
    flat = idx[..., 0] * _BINS + idx[..., 1]  # (N, H, W)
    count = jnp.ones(flat.shape, jnp.float32)
    if mask is not None:
        count = count * mask.reshape((-1,) + (1,) * (flat.ndim - 1))
    hist = jnp.zeros((_BINS * _BINS,), jnp.float32).at[flat.ravel()].add(count.ravel())
    p = _smooth(hist.reshape(_BINS, _BINS)).ravel()
    p = p / jnp.maximum(jnp.sum(p), 1e-12)
    w = (1.0 / (strength * p + (1.0 - strength) / IN_GAMUT_BINS))[flat]
    w = w / (jnp.sum(w * count) / jnp.maximum(jnp.sum(count), 1.0))
    return jax.lax.stop_gradient(w)
