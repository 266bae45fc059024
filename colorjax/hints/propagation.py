"""Hints spread along the image: an edge-aware guess of the colour everywhere from a few
points, as two more input planes for hint models (`config.model.hint_propagation`).

A network that reads sparse hint pixels must learn, from many examples, to carry a colour
from a 1-3 px patch to the whole object; a short CPU training run barely does (docs/
results.md, issue 23). So the conditioning also gets the hints already carried: the
classical "colorization by optimization" prior (Levin, Lischinski and Weiss, SIGGRAPH 2004:
neighbours with similar lightness have similar colour), computed as an edge-aware
normalized convolution. Each step replaces every pixel's (ab * confidence, confidence) by
the average over its 3x3 neighbourhood weighted by exp(-(dL / sigma)^2), and resets the hint
pixels to their hint (confidence 1); a coarse-to-fine pyramid (each level starting from the
coarser one's result) carries colour across the whole image in a few steps per level. The
network then decides where to trust the guess (the confidence plane) and where its own
prior knows better. With no hints both planes are zero.

Pure jax.numpy, a fixed number of steps (`lax.fori_loop`): it runs inside the jitted step
and prediction, on every device, for every family.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SIGMA_L = 0.08  # in network L units ([-1, 1]): 4 CIELAB L units, a visible edge
STEPS_PER_LEVEL = 6
LEVELS = 4  # full size down to 1/8
NUM_PLANES = 3  # the propagated ab (network range) and its confidence
_EPS = 1e-6


def _neighbour_mean(values: jax.Array, l: jax.Array) -> jax.Array:
    """Edge-aware 3x3 mean of `values` (N,H,W,C) guided by `l` (N,H,W,1), edges replicated."""
    h, w = l.shape[1:3]
    pad = lambda x: jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")  # noqa: E731
    lp, vp = pad(l), pad(values)
    total, weight = values, jnp.ones_like(l)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy == dx == 1:
                continue
            ln = lp[:, dy:dy + h, dx:dx + w]
            wgt = jnp.exp(-jnp.square((l - ln) / SIGMA_L))
            total = total + wgt * vp[:, dy:dy + h, dx:dx + w]
            weight = weight + wgt
    return total / weight


def _pool(x: jax.Array) -> jax.Array:
    n, h, w, c = x.shape
    return x[:, :h - h % 2, :w - w % 2].reshape(n, h // 2, 2, w // 2, 2, c).mean((2, 4))


def _spread(l, ab, mask, init):
    """STEPS_PER_LEVEL steps at one level: state (ab * conf, conf), hints reset each step."""
    hinted = jnp.concatenate([ab * mask, mask], -1)
    keep = mask > 0

    def step(_, state):
        state = _neighbour_mean(state, l)
        return jnp.where(keep, hinted, state)

    return jax.lax.fori_loop(0, STEPS_PER_LEVEL, step, jnp.where(keep, hinted, init))


@jax.jit  # one program: eagerly (a model's init) its ~150 small ops each compiled, 3.9 s
def propagate(l: jax.Array, hints: jax.Array) -> jax.Array:
    """(N,H,W,3): hints' ab carried along the image (network range) and its confidence in
    [0, 1], from L (N,H,W,1) and the hint planes (N,H,W,3: ab, mask; `colorjax.hints`)."""
    l = l.astype(jnp.float32)
    ab, mask = hints[..., :2].astype(jnp.float32), hints[..., 2:3].astype(jnp.float32)
    # The pyramid: L averaged; a hint's ab averaged over the hinted pixels of a cell, and
    # its mask the share of the cell hinted (a partial hint counts partly).
    pyramid = [(l, ab, mask)]
    for _ in range(LEVELS - 1):
        pl, pab, pm = pyramid[-1]
        if min(pl.shape[1:3]) < 2:
            break
        m = _pool(pm)
        pyramid.append((_pool(pl), _pool(pab * pm) / jnp.maximum(m, _EPS), m))
    state = None
    for pl, pab, pm in reversed(pyramid):
        if state is None:
            init = jnp.zeros(pl.shape[:3] + (3,), jnp.float32)
        else:  # the coarser level's result, upsampled (nearest, then one smoothing step)
            up = jnp.repeat(jnp.repeat(state, 2, 1), 2, 2)
            up = jnp.pad(up, ((0, 0), (0, pl.shape[1] - up.shape[1]),
                              (0, pl.shape[2] - up.shape[2]), (0, 0)), mode="edge")
            init = _neighbour_mean(up, pl)
        state = _spread(pl, pab, pm, init)
    conf = state[..., 2:3]
    prop_ab = jnp.where(conf > _EPS, state[..., :2] / jnp.maximum(conf, _EPS), 0.0)
    # The confidence decays fast away from a hint (it is diluted at every step); its 4th
    # root keeps the far field visible to the network (monotone: same order, in [0, 1]).
    return jnp.concatenate([prop_ab, jnp.sqrt(jnp.sqrt(conf))], -1).astype(hints.dtype)
