"""How a photo meets a model at inference: what the network sees of it at the working size,
how its ab comes back to the photo's size, and how big a user's hint is.

`Colorizer` (colorize.py) asks the objective for its `photo_io` and uses `PhotoIO` when it
has none. `PhotoIO` is colorjax's own way (the one its models train with: the data pipeline
computes L first and resizes planes). A family whose published inference differs declares
its own: Zhang et al.'s converted networks (`colorjax.objectives.zhang`) resize the RGB
photo bicubically before taking L and upsample ab as PyTorch does, as the authors' demo.

The video path uses `model_l` through `Colorizer.predict_small`; its ab goes through the
temporal stabiliser at its own resolution (`colorjax.video`).
"""

from __future__ import annotations

import numpy as np

from colorjax.media.photos import Photo, lab_to_rgb_striped, resize_ab, resize_plane


class PhotoIO:
    """colorjax's way: the photo's full-resolution L resized (bilinear, antialiased when
    shrinking) to size x size; ab resized back bilinearly (`photos.resize_ab`); a hint is a
    `hints.inference_side(size)` patch."""

    def model_l(self, photo: Photo, size: int) -> np.ndarray:
        """CIELAB L (size, size) float32, in [0, 100]: what the network reads."""
        return resize_plane(photo.l, size, size)

    def full_size_ab(self, ab_small: np.ndarray, width: int, height: int) -> np.ndarray:
        """ab (S, S, 2), Lab units, resized to (height, width, 2)."""
        return resize_ab(ab_small, width, height)

    def hint_side(self, size: int) -> int | None:
        """A user hint's patch side at working size `size`; None: `hints.inference_side`."""
        del size
        return None

    def lab_to_rgb(self, l: np.ndarray, ab: np.ndarray) -> np.ndarray:
        """The full-size L (H, W) and ab (H, W, 2) as sRGB float32 (H, W, 3) in [0, 1]."""
        return lab_to_rgb_striped(l, ab)

    def finish(self, colorizer, photo: Photo, ab_small: np.ndarray) -> np.ndarray:
        """sRGB float32 (H, W, 3): the photo's own full-size L with the upsampled ab."""
        return self.lab_to_rgb(photo.l, colorizer.full_size_ab(photo, ab_small))

    def colorize_photos(self, colorizer, photos: list[Photo], size: int):
        """The finished photos of a published pipeline whose result is not the photo's L +
        the predicted ab (DeOldify's); None: colorjax's way, `finish` of the ab."""
        del colorizer, photos, size
        return None


def _axis_weights(n_in: int, n_out: int):
    """(i0, i1, w1) for each output index: half-pixel centres, source clamped at 0 and
    n_in - 1, as PyTorch's `area_pixel_compute_source_index` with align_corners=False."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def resize_bilinear_torch(planes: np.ndarray, width: int, height: int,
                          stripe_pixels: int = 1 << 20) -> np.ndarray:
    """(h, w, C) float planes -> (height, width, C), as PyTorch's
    `F.interpolate(x, size=(height, width), mode='bilinear')` (align_corners=False, no
    antialiasing, also when shrinking). Computed in stripes of rows (bounded memory)."""
    planes = np.asarray(planes, np.float32)
    h, w = planes.shape[:2]
    y0, y1, wy = _axis_weights(h, height)
    x0, x1, wx = _axis_weights(w, width)
    wx = wx[:, None]
    out = np.empty((height, width) + planes.shape[2:], np.float32)
    rows = max(1, stripe_pixels // max(width, 1))
    for top in range(0, height, rows):
        sl = slice(top, top + rows)
        a = wy[sl, None, None]
        cols = planes[y0[sl]] * (1.0 - a) + planes[y1[sl]] * a  # (rows, w, C)
        out[sl] = cols[:, x0] * (1.0 - wx) + cols[:, x1] * wx
    return out
