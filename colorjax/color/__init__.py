"""The one definition of CIELAB in colorjax, and of how L and ab meet the network.

Every conversion works on NumPy arrays (in data-pipeline workers, no device needed) and
on JAX arrays (inside jitted code) with the same formulas: the array module is chosen
from the input's type. Images are float, channels last (``...HWC``), any batch shape.

Conventions (identical to scikit-image's ``rgb2lab``/``lab2rgb`` with illuminant D65 and
the 2 degree observer, so metrics computed here agree with the reference):

* sRGB in [0, 1]; L in [0, 100]; a and b roughly in [-110, 110] for sRGB colours.
* Network range: ``l_norm = L / 50 - 1`` in [-1, 1]; ``ab_norm = ab / AB_SCALE``.
"""

from __future__ import annotations

import numpy as np
import jax.numpy as jnp

# sRGB primaries / D65 white point as used by scikit-image (IEC 61966-2-1, CIE 15).
XYZ_FROM_RGB = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=np.float64,
)
RGB_FROM_XYZ = np.linalg.inv(XYZ_FROM_RGB)
D65_WHITE = np.array([0.95047, 1.0, 1.08883], dtype=np.float64)

# CIE constants: epsilon = (6/29)^3 and the linear segment slope (29/6)^2 / 3 = 7.787.
_LAB_EPS = 0.008856
_LAB_KAPPA = 7.787
_LAB_OFFSET = 16.0 / 116.0

L_MAX = 100.0
# ab is divided by this to reach the network's range. The sRGB gamut spans
# a in [-86.2, 98.2] and b in [-107.9, 94.5], so 110 keeps every sRGB colour inside [-1, 1].
AB_SCALE = 110.0


def _xp(x):
    """NumPy for NumPy inputs (pipeline workers), jax.numpy otherwise (jit, devices)."""
    return np if isinstance(x, (np.ndarray, np.generic, float, int)) else jnp


def _as_float(x):
    xp = _xp(x)
    return xp.asarray(x, dtype=xp.float32)


def srgb_to_linear(rgb):
    """Undo the sRGB transfer curve (IEC 61966-2-1)."""
    xp = _xp(rgb)
    return xp.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)


def linear_to_srgb(lin):
    """Apply the sRGB transfer curve; negative inputs fall on the linear segment."""
    xp = _xp(lin)
    safe = xp.maximum(lin, 0.0031308)  # keeps the power's gradient finite below the knee
    return xp.where(lin > 0.0031308, 1.055 * safe ** (1 / 2.4) - 0.055, 12.92 * lin)


# sRGB curve for every 8-bit level: decoding photos (uint8) becomes a table look-up,
# the same values as `srgb_to_linear(level / 255)`, several times faster in data workers.
_LINEAR_FROM_UINT8 = srgb_to_linear(np.arange(256, dtype=np.float32) / np.float32(255))


# Rows X/Xn, Y/Yn, Z/Zn of the linear-RGB -> white-normalised XYZ matrix, float32.
_XYZ_OVER_WHITE_ROWS = (XYZ_FROM_RGB / D65_WHITE[:, None]).astype(np.float32)


def rgb_to_lab(rgb):
    """sRGB (``...HW3``) to CIELAB (D65), float32, matching ``skimage.color.rgb2lab``.

    Float input is sRGB in [0, 1]; uint8 NumPy input (0..255, decoded photos) is also
    accepted and linearised through a 256-entry table of the same curve.
    """
    xp = _xp(rgb)
    fx, fy, fz = _lab_f_planes(rgb)
    return xp.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def rgb_to_l(rgb):
    """CIELAB L alone (``...HW``) of sRGB (``...HW3``): the same values as
    ``rgb_to_lab(rgb)[..., 0]`` (the same operations), a third of the work."""
    xp = _xp(rgb)
    r, g, b = _linear_planes(rgb)
    m = _XYZ_OVER_WHITE_ROWS[1]
    return 116.0 * _lab_f(r * m[0] + g * m[1] + b * m[2], xp) - 16.0


def _linear_planes(rgb):
    """sRGB ``...HW3`` -> its linear R, G, B planes (``...HW`` float32)."""
    xp = _xp(rgb)
    if xp is np and np.asarray(rgb).dtype == np.uint8:
        r, g, b = np.take(_LINEAR_FROM_UINT8, np.moveaxis(rgb, -1, 0))
        return r, g, b
    lin = srgb_to_linear(_as_float(rgb))
    return lin[..., 0], lin[..., 1], lin[..., 2]


def _lab_f_planes(rgb):
    """sRGB ``...HW3`` -> (f(X/Xn), f(Y/Yn), f(Z/Zn)), each ``...HW`` float32.

    Works one channel plane at a time: in NumPy data workers this is about twice as fast
    as a matrix product over interleaved channels (fewer, contiguous temporaries), and XLA
    fuses either form the same way.
    """
    xp = _xp(rgb)
    r, g, b = _linear_planes(rgb)
    return tuple(_lab_f(r * m[0] + g * m[1] + b * m[2], xp) for m in _XYZ_OVER_WHITE_ROWS)


def _lab_f(t, xp):
    """CIELAB's f: the cube root above epsilon, the linear segment below."""
    # Under jax the root's argument is kept >= epsilon so its gradient stays finite where
    # the segment is chosen; NumPy needs no guard (cbrt is defined everywhere).
    root = xp.cbrt(t if xp is np else xp.maximum(t, _LAB_EPS))
    return xp.where(t > _LAB_EPS, root, _LAB_KAPPA * t + _LAB_OFFSET)


def lab_to_rgb(lab):
    """CIELAB (D65) to sRGB in [0, 1], matching ``skimage.color.lab2rgb``.

    Out-of-gamut colours are **clipped**: negative Z is clipped to 0 (as scikit-image
    does) and the final RGB to [0, 1], so any Lab input gives a displayable image, but
    Lab -> RGB -> Lab is not the identity for colours outside the sRGB gamut.
    """
    xp = _xp(lab)
    lab = _as_float(lab)
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    fy = (L + 16.0) / 116.0
    fx = fy + a / 500.0
    fz = xp.maximum(fy - b / 200.0, 0.0)
    f = xp.stack([fx, fy, fz], axis=-1)
    xyz = xp.where(f > 0.2068966, f**3, (f - _LAB_OFFSET) / _LAB_KAPPA)
    m = xp.asarray((RGB_FROM_XYZ * D65_WHITE[None, :]).T, dtype=xp.float32)
    lin = xyz @ m
    return xp.clip(linear_to_srgb(lin), 0.0, 1.0).astype(xp.float32)


# --- network range -------------------------------------------------------------------


def normalize_l(L):
    """L in [0, 100] -> [-1, 1]."""
    return L / (L_MAX / 2) - 1.0


def denormalize_l(l_norm):
    """[-1, 1] -> L in [0, 100]."""
    return (l_norm + 1.0) * (L_MAX / 2)


def normalize_ab(ab):
    """ab in Lab units -> network range (about [-1, 1] for sRGB colours)."""
    return ab / AB_SCALE


def denormalize_ab(ab_norm):
    """Network range -> ab in Lab units."""
    return ab_norm * AB_SCALE


def rgb_to_model_inputs(rgb):
    """sRGB ``...HW3`` (float in [0, 1], or uint8 NumPy) -> (l_norm ``...HW1``, ab_norm ``...HW2``).

    The values of ``rgb_to_lab`` then ``normalize_l``/``normalize_ab``, computed straight
    from the f planes: this is the data pipeline's per-image colour cost.
    """
    xp = _xp(rgb)
    fx, fy, fz = _lab_f_planes(rgb)
    half = L_MAX / 2
    l_norm = (116.0 / half) * fy - (16.0 / half + 1.0)
    ab_norm = xp.stack([(500.0 / AB_SCALE) * (fx - fy), (200.0 / AB_SCALE) * (fy - fz)], -1)
    return l_norm[..., None], ab_norm


def model_outputs_to_lab(l_norm, ab_norm):
    """(l_norm ``...HW1``, ab_norm ``...HW2``) -> Lab ``...HW3`` in Lab units."""
    xp = _xp(l_norm)
    return xp.concatenate([denormalize_l(l_norm), denormalize_ab(ab_norm)], axis=-1)


def model_outputs_to_rgb(l_norm, ab_norm):
    """(l_norm, ab_norm) -> sRGB in [0, 1], clipped (see ``lab_to_rgb``)."""
    return lab_to_rgb(model_outputs_to_lab(l_norm, ab_norm))


def gray_rgb(l_norm):
    """The gray image a model sees, as 3-channel sRGB (ab = 0)."""
    xp = _xp(l_norm)
    return model_outputs_to_rgb(l_norm, xp.zeros(l_norm.shape[:-1] + (2,), l_norm.dtype))
