"""Test clips made from still colour photos by a simulated camera, with their exact motion.

A clip is a list of shots; each shot films one photo along a camera path: frame pixel x
sees the photo at `scale_t * x + offset_t` (a pan moves the offset, a zoom shrinks the
scale). Because the motion is known, so is the exact flow from every frame back to the
previous one (None at the first frame and at each cut), which the flicker metric needs
(`colorjax.metrics.flicker`) without trusting an estimated flow. Optional grain (Gaussian,
in 8-bit levels, independent per frame) imitates film noise, the usual source of flicker.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Shot:
    """`frames` frames of `photo` (RGB uint8), the camera moving at constant speed through
    the key positions `keys`, each (scale, (x, y)): photo pixels per frame pixel, and the
    photo point at the frame's top-left corner."""

    photo: np.ndarray
    frames: int
    keys: tuple

    def camera(self, i: int) -> tuple[float, np.ndarray]:
        f = (len(self.keys) - 1) * i / max(1, self.frames - 1)
        k = min(int(f), len(self.keys) - 2)
        u = f - k
        (s0, o0), (s1, o1) = self.keys[k], self.keys[k + 1]
        return s0 + u * (s1 - s0), np.asarray(o0) + u * (np.asarray(o1) - np.asarray(o0))


def _render(photo: np.ndarray, scale: float, offset, size: tuple[int, int]) -> np.ndarray:
    import cv2

    w, h = size
    m = np.array([[scale, 0.0, offset[0]], [0.0, scale, offset[1]]], np.float64)
    return cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


def _flow_back(prev: tuple[float, np.ndarray], cur: tuple[float, np.ndarray],
               size: tuple[int, int]) -> np.ndarray:
    """Exact flow (H, W, 2): frame pixel x of `cur` is at x + flow(x) in the previous frame."""
    (s0, o0), (s1, o1) = prev, cur
    w, h = size
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    px, py = s1 * gx + o1[0], s1 * gy + o1[1]  # the photo point this pixel sees
    return np.stack([(px - o0[0]) / s0 - gx, (py - o0[1]) / s0 - gy], -1).astype(np.float32)


def render_clip(shots: list[Shot], size: tuple[int, int], grain: float = 0.0,
                seed: int = 0) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Frames (T, H, W, 3) uint8 at `size` = (w, h), and the exact flows back."""
    rng = np.random.default_rng(seed)
    frames, flows = [], []
    for shot in shots:
        prev = None
        for i in range(shot.frames):
            cam = shot.camera(i)
            f = _render(shot.photo, cam[0], cam[1], size).astype(np.float32)
            if grain > 0:
                f = f + rng.normal(0.0, grain, f.shape[:2])[..., None]  # luminance grain
            frames.append(np.clip(np.round(f), 0, 255).astype(np.uint8))
            flows.append(None if prev is None else _flow_back(prev, cam, size))
            prev = cam
    return np.stack(frames), flows


def fit_photo(photo: np.ndarray, size: tuple[int, int], max_scale: float = 1.25) -> np.ndarray:
    """`photo` shrunk (antialiased) so that the widest view of a `size` frame needs at most
    `max_scale` photo pixels per frame pixel: bilinear rendering then does not alias."""
    from PIL import Image

    w, h = size
    ph, pw = photo.shape[:2]
    s = min(pw / w, ph / h)
    if s <= max_scale:
        return photo
    k = max_scale / s
    return np.asarray(Image.fromarray(photo).resize((max(w, round(pw * k)), max(h, round(ph * k))),
                                                    Image.LANCZOS))


def camera_moves(photo_a: np.ndarray, photo_b: np.ndarray, size: tuple[int, int],
                 frames_per_move: int = 12) -> list[Shot]:
    """The benchmark's clip: over photo A a pan from the left to the centre then a zoom in
    to 70% of the view, a cut, then a diagonal pan over photo B. The camera sees at most 90%
    of a photo, so no frame reaches past its border."""
    w, h = size
    shots = []
    for photo, diagonal in ((photo_a, False), (photo_b, True)):
        photo = fit_photo(photo, size)
        ph, pw = photo.shape[:2]
        s = 0.9 * min(pw / w, ph / h)  # the widest view that fits
        fx, fy = pw - s * w, ph - s * h  # room to pan at that scale
        if diagonal:
            shots.append(Shot(photo, frames_per_move + 1, ((s, (0.0, 0.0)), (s, (fx, fy)))))
        else:
            c = np.array([pw, ph]) / 2
            s1 = 0.7 * s
            zoomed = tuple(c - s1 * np.array([w, h]) / 2)
            shots.append(Shot(photo, 2 * frames_per_move + 1,
                              ((s, (0.0, fy / 2)), (s, (fx / 2, fy / 2)), (s1, zoomed))))
    return shots


def static_shot(photo: np.ndarray, size: tuple[int, int], frames: int) -> Shot:
    """A locked-off camera on the middle of `photo` (at one photo pixel per frame pixel)."""
    w, h = size
    ph, pw = photo.shape[:2]
    o = ((pw - w) / 2, (ph - h) / 2)
    return Shot(photo, frames, ((1.0, o), (1.0, o)))
