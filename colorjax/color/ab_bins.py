"""Colour as classes (Zhang, Isola and Efros 2016, "Colorful Image Colorization", section 2):
the ab plane quantised into the in-gamut bins of a grid, soft targets, a rebalancing prior,
and the annealed-mean decoding.

The paper's constants: grid 10 (Lab units), soft encoding over the 5 nearest bins with a
Gaussian of sigma 5, prior smoothed by a Gaussian of sigma 5 and mixed with the uniform
distribution at lambda 1/2, annealed mean at T = 0.38. The paper kept Q = 313 in-gamut
bins; the bins here are computed from `colorjax.color` (every 8-bit-dense sRGB colour's
nearest bin centre) and number fewer (see `in_gamut_centers`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from colorjax import color

GRID = 10.0  # Lab units between bin centres
SOFT_NEIGHBOURS = 5  # bins a true colour is spread over
SOFT_SIGMA = 5.0  # Lab units, the soft encoding's Gaussian
PRIOR_SIGMA = 5.0  # Lab units, the prior's smoothing
PRIOR_MIX = 0.5  # lambda: weight of the uniform distribution in the rebalancing prior
TEMPERATURE = 0.38  # the annealed mean's default


@functools.lru_cache(maxsize=4)
def in_gamut_centers(grid: float = GRID, samples: int = 128) -> np.ndarray:
    """(Q, 2) float32 ab centres (Lab units, multiples of `grid`, sorted) of the bins that
    hold some sRGB colour: the nearest centre of each colour of a `samples`^3 sRGB cube.
    At grid 10 that is 262 bins (the paper reports 313 from its own gamut computation)."""
    g = np.linspace(0.0, 1.0, samples, dtype=np.float32)
    rgb = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    ab = color.rgb_to_lab(rgb)[:, 1:]
    cells = np.unique(np.round(ab / grid).astype(np.int64), axis=0)
    return (cells * grid).astype(np.float32)


def _sq_distances(ab, centers):
    """Squared distances (..., Q) of ab (..., 2) to the bin centres, Lab units."""
    return jnp.sum((ab[..., None, :] - centers) ** 2, axis=-1)


def soft_encode(ab, centers, k: int = SOFT_NEIGHBOURS, sigma: float = SOFT_SIGMA):
    """(indices (..., k), weights (..., k)) of the `k` bins nearest to ab (Lab units),
    Gaussian-weighted by distance and summing to one; indices[..., 0] is the nearest."""
    d2 = _sq_distances(ab, centers)
    neg, idx = jax.lax.top_k(-d2, k)
    w = jax.nn.softmax(neg / (2.0 * sigma ** 2), axis=-1)  # exp(-d^2 / 2 sigma^2), normalised
    return idx, w


def nearest_bin(ab, centers):
    """Index (...) of the bin centre nearest to ab (Lab units)."""
    return jnp.argmin(_sq_distances(ab, centers), axis=-1)


def bin_counts(ab, centers, mask=None):
    """(Q,) float32 pixel counts of the nearest bins of ab (N, H, W, 2) (Lab units), over the
    images where `mask` (N,) is nonzero."""
    idx = nearest_bin(ab, centers)
    ones = jnp.ones(idx.shape, jnp.float32)
    if mask is not None:
        ones = ones * mask.reshape((-1,) + (1,) * (idx.ndim - 1))
    return jnp.zeros((centers.shape[0],), jnp.float32).at[idx.ravel()].add(ones.ravel())


def rebalancing_weights(counts, centers, mix: float = PRIOR_MIX, sigma: float = PRIOR_SIGMA):
    """(Q,) class weights w ∝ ((1 - mix) p̃ + mix / Q)^-1 (Zhang et al. 2016, eq. 4), p̃
    the empirical distribution `counts` smoothed by a Gaussian of `sigma` Lab units over the
    bin centres, normalised so that E_p̃[w] = 1. Returns (weights, p̃)."""
    counts = np.asarray(counts, np.float64)
    centers = np.asarray(centers, np.float64)
    if counts.sum() <= 0:
        raise ValueError("no pixels to compute the colour prior from")
    p = counts / counts.sum()
    d2 = np.sum((centers[:, None] - centers[None]) ** 2, -1)
    kernel = np.exp(-d2 / (2 * sigma ** 2))
    kernel /= kernel.sum(axis=0, keepdims=True)  # each bin's mass spread, not created
    smooth = kernel @ p
    w = 1.0 / ((1 - mix) * smooth + mix / len(p))
    w /= np.sum(smooth * w)
    return w.astype(np.float32), smooth.astype(np.float32)


def annealed_mean(logits, centers, temperature):
    """ab (..., 2) in Lab units from per-bin logits (..., Q): the mean of the distribution
    re-tempered to f_T(z) ∝ exp(log z / T). T = 1 is the mean, T -> 0 the mode."""
    t = jnp.maximum(jnp.asarray(temperature, jnp.float32), 1e-3)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jax.nn.softmax(logp / t, axis=-1) @ centers
