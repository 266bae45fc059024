"""Flicker of a colorized video: how much its colour changes where the scene does not.

For each pair of consecutive frames, the previous frame's ab is warped to the current one
along a flow (the exact camera motion of a synthetic clip, or DIS flow estimated on the
truth's L for a real one), and the mean ab distance (Euclidean, Lab units) to the current
ab is taken over the *static region*: pixels whose correspondence lies inside the previous
frame and where the truth itself barely changes after the same warp (CIEDE76 below
`max_truth_change`), which leaves out occlusions, moving objects, lighting changes and
resampling error at edges. Pairs across a scene cut (flow None) are skipped. Lower is
steadier; a video whose truth is static scores its own per-frame noise.
"""

from __future__ import annotations

import numpy as np

from colorjax.media.temporal import warp

MAX_TRUTH_CHANGE = 5.0  # Lab units: the truth changes less than this -> "static"


def static_mask(truth_prev_lab: np.ndarray, truth_lab: np.ndarray, flow_back: np.ndarray,
                max_truth_change: float = MAX_TRUTH_CHANGE) -> np.ndarray:
    """(H, W) bool: where the scene is static between the two truth frames (Lab, (H, W, 3))
    under `flow_back` (current pixel x -> previous frame at x + flow(x))."""
    warped, inside = warp(truth_prev_lab, flow_back)
    change = np.linalg.norm(warped - truth_lab, axis=-1)
    return inside & (change < max_truth_change)


def pair_flicker(ab_prev: np.ndarray, ab: np.ndarray, flow_back: np.ndarray,
                 mask: np.ndarray) -> float:
    """Mean |ab - warp(ab_prev)| (Lab units) over `mask`; NaN for an empty mask."""
    warped, _ = warp(ab_prev, flow_back)
    d = np.linalg.norm(warped - ab, axis=-1)
    return float(d[mask].mean()) if mask.any() else float("nan")


def flicker(abs_, truths_lab, flows_back) -> float:
    """Mean pair flicker of a sequence: abs_ (T of (H, W, 2)), the truth's Lab frames
    (T of (H, W, 3)) and flows_back[t] from frame t to t - 1 (None at t = 0 and at cuts)."""
    values = []
    for t in range(1, len(abs_)):
        if flows_back[t] is None:
            continue
        m = static_mask(truths_lab[t - 1], truths_lab[t], flows_back[t])
        v = pair_flicker(abs_[t - 1], abs_[t], flows_back[t], m)
        if np.isfinite(v):
            values.append(v)
    return float(np.mean(values)) if values else float("nan")
