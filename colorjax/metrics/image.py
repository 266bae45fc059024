"""Full-reference and no-reference image metrics, batched over ``NHWC``.

Every function is pure ``jax.numpy`` in float32, jit-able, and returns one value per
image, shape ``(N,)``; callers reduce over the batch. SSIM and PSNR take RGB (or any
channel count) in ``[0, data_range]``; the colour differences take CIELAB images as
produced by :func:`colorjax.color.rgb_to_lab`; colourfulness takes sRGB in ``[0, 1]``.
"""

from __future__ import annotations

import numpy as np
import jax.numpy as jnp
from jax import lax

__all__ = ["ssim", "psnr", "delta_e76", "ciede2000", "ciede2000_map", "colorfulness"]

_IMAGE_AXES = (1, 2, 3)  # H, W, C of an NHWC batch


# --- gradient-safe elementary functions ----------------------------------------------


def safe_sqrt(x):
    """sqrt with a zero (not NaN/inf) gradient at x <= 0, e.g. identical images."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _safe_atan2(y, x):
    """atan2 that is 0 with a zero gradient at the origin (where jnp's gradient is NaN)."""
    origin = (x == 0) & (y == 0)
    return jnp.where(origin, 0.0, jnp.arctan2(jnp.where(origin, 0.0, y), jnp.where(origin, 1.0, x)))


def _as_batch(x):
    x = jnp.asarray(x, jnp.float32)
    if x.ndim != 4:
        raise ValueError(f"expected an NHWC batch, got shape {x.shape}")
    return x


# --- SSIM ----------------------------------------------------------------------------

# Wang et al. (2004), "Image quality assessment: from error visibility to structural
# similarity": 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03. scikit-image
# builds the window as scipy.ndimage does, radius = int(truncate * sigma + 0.5) with
# truncate = 3.5, i.e. radius 5.
_SSIM_SIGMA = 1.5
_SSIM_TRUNCATE = 3.5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03


def _gaussian_taps(sigma: float, truncate: float) -> np.ndarray:
    """Normalised 1-D Gaussian taps, built exactly like ``scipy.ndimage.gaussian_filter``."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * x**2 / sigma**2)
    return (taps / taps.sum()).astype(np.float32)


def _filter_valid(x, taps: np.ndarray, axis: int):
    """Correlate ``x`` with ``taps`` along ``axis``, keeping only fully covered positions.

    scikit-image filters with 'reflect' padding and then crops ``radius`` pixels from each
    border before averaging; the kept pixels never see the padding, so a 'valid'
    correlation gives exactly the same numbers with less work.
    """
    out_len = x.shape[axis] - len(taps) + 1
    return sum(
        float(w) * lax.slice_in_dim(x, k, k + out_len, axis=axis) for k, w in enumerate(taps)
    )


def ssim(x, y, data_range: float = 1.0):
    """Mean SSIM per image, ``(N,)``, for ``NHWC`` images in ``[0, data_range]``.

    Matches ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, channel_axis=-1)``: Gaussian-weighted local
    statistics (population covariance), SSIM map averaged over the interior region
    (5-pixel border dropped) and over channels. H and W must be at least 11.
    """
    x, y = _as_batch(x), _as_batch(y)
    taps = _gaussian_taps(_SSIM_SIGMA, _SSIM_TRUNCATE)
    if min(x.shape[1:3]) < len(taps):
        raise ValueError(f"SSIM needs H, W >= {len(taps)}, got {x.shape[1:3]}")
    c = x.shape[-1]
    # One filtering pass for all five local moments.
    moments = jnp.concatenate([x, y, x * x, y * y, x * y], axis=-1)
    moments = _filter_valid(_filter_valid(moments, taps, axis=1), taps, axis=2)
    ux, uy, uxx, uyy, uxy = (moments[..., i * c : (i + 1) * c] for i in range(5))
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    num = (2 * ux * uy + c1) * (2 * vxy + c2)
    den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    # Every channel keeps the same number of pixels, so the mean over (H, W, C) equals
    # scikit-image's mean of per-channel means.
    return jnp.mean(num / den, axis=_IMAGE_AXES)


# --- PSNR ----------------------------------------------------------------------------


def psnr(x, y, data_range: float = 1.0, max_db: float | None = None):
    """PSNR in dB per image, ``(N,)``, over all pixels and channels.

    Matches ``skimage.metrics.peak_signal_noise_ratio``. Identical images have zero
    error and give ``+inf`` (as scikit-image does); pass ``max_db`` to clip the result
    instead, e.g. before averaging over a batch that may contain exact copies.
    """
    x, y = _as_batch(x), _as_batch(y)
    mse = jnp.mean((x - y) ** 2, axis=_IMAGE_AXES)
    # data_range**2 / 0 = inf, and log10(inf) = inf: no warning, no NaN.
    value = 10.0 * jnp.log10(data_range**2 / mse)
    return value if max_db is None else jnp.minimum(value, max_db)


# --- colour differences --------------------------------------------------------------


def delta_e76(lab1, lab2):
    """CIE76 colour difference (Euclidean distance in Lab), averaged per image, ``(N,)``."""
    lab1, lab2 = _as_batch(lab1), _as_batch(lab2)
    dist = safe_sqrt(jnp.sum((lab1 - lab2) ** 2, axis=-1))
    return jnp.mean(dist, axis=(1, 2))


_25_POW_7 = 25.0**7


def _chroma_weight(c_mean):
    """sqrt(C^7 / (C^7 + 25^7)), the chroma factor shared by G and R_T."""
    c7 = c_mean**7
    return safe_sqrt(c7 / (c7 + _25_POW_7))


def _hue_terms(a1p, b1, a2p, b2, h1, h2):
    """Hue difference dh' and mean hue H' (radians), CIEDE2000 steps 2.4 and 3.3.

    Follows Sharma, Wu and Dalal (2005), eqs. (10) and (14): if either chroma is zero,
    dh' = 0 and H' = h1' + h2'. Otherwise dh' is the signed angle from colour 1 to
    colour 2, wrapped into [-180, 180] degrees, and H' = h1' + dh'/2 reduced to
    [0, 360), which equals the paper's case analysis on |h1' - h2'| > 180. It is
    computed with atan2(cross, dot) so it does not depend on how h1', h2' rounded.
    A difference of exactly 180 degrees is not wrapped in the paper (|h1' - h2'| <= 180
    keeps the raw h2' - h1'); the tie is detected exactly (cross == 0, dot < 0) and
    given the sign of h2' - h1'. Table 1 pairs 10 and 14 are such ties.
    (With a zero chroma, dH' = 0 cancels every term that reads H', so the paper's
    H' = h1' + h2' there cannot change dE00; it is kept only to follow the paper.)
    """
    chroma_zero = ((a1p == 0) & (b1 == 0)) | ((a2p == 0) & (b2 == 0))
    cross = a1p * b2 - b1 * a2p
    dot = a1p * a2p + b1 * b2
    # Compare the two products instead of testing cross == 0: under jit XLA fuses the
    # subtraction into an FMA, which leaves a ~1e-10 residue for exactly opposite hues.
    tie = (a1p * b2 == b1 * a2p) & (dot < 0)
    dh = _safe_atan2(cross, dot)
    dh = jnp.where(tie, jnp.where(h2 >= h1, jnp.pi, -jnp.pi), dh)
    dh = jnp.where(chroma_zero, 0.0, dh)
    h_mean = jnp.where(chroma_zero, h1 + h2, jnp.mod(h1 + 0.5 * dh, 2 * jnp.pi))
    return dh, h_mean


def ciede2000_map(lab1, lab2):
    """Per-pixel CIEDE2000 colour difference (kL = kC = kH = 1), shape ``(N, H, W)``.

    Formula and notation of Sharma, Wu and Dalal (2005), "The CIEDE2000 color-difference
    formula: implementation notes, supplementary test data, and mathematical
    observations", Color Res. Appl. 30(1). Matches ``skimage.color.deltaE_ciede2000``.
    Square roots and atan2 are guarded so the gradient is finite everywhere, including
    at identical colours and at neutral grays (C' = 0).
    """
    lab1, lab2 = _as_batch(lab1), _as_batch(lab2)
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]

    # Step 1: stretch a* by (1 + G) depending on the mean chroma, then go polar.
    c_ab_mean = 0.5 * (safe_sqrt(a1**2 + b1**2) + safe_sqrt(a2**2 + b2**2))
    scale = 1.0 + 0.5 * (1.0 - _chroma_weight(c_ab_mean))
    a1p, a2p = a1 * scale, a2 * scale
    c1p, c2p = safe_sqrt(a1p**2 + b1**2), safe_sqrt(a2p**2 + b2**2)
    h1 = jnp.mod(_safe_atan2(b1, a1p), 2 * jnp.pi)  # h' in [0, 2 pi); 0 when a' = b' = 0
    h2 = jnp.mod(_safe_atan2(b2, a2p), 2 * jnp.pi)

    # Step 2: differences.
    dh, h_mean = _hue_terms(a1p, b1, a2p, b2, h1, h2)
    dL = L2 - L1
    dC = c2p - c1p
    dH = 2.0 * safe_sqrt(c1p * c2p) * jnp.sin(0.5 * dh)

    # Step 3: weighting functions and the rotation term.
    L_mean = 0.5 * (L1 + L2)
    c_mean = 0.5 * (c1p + c2p)
    h_deg = jnp.rad2deg(h_mean)
    T = (
        1.0
        - 0.17 * jnp.cos(jnp.deg2rad(h_deg - 30.0))
        + 0.24 * jnp.cos(jnp.deg2rad(2.0 * h_deg))
        + 0.32 * jnp.cos(jnp.deg2rad(3.0 * h_deg + 6.0))
        - 0.20 * jnp.cos(jnp.deg2rad(4.0 * h_deg - 63.0))
    )
    d_theta = 30.0 * jnp.exp(-(((h_deg - 275.0) / 25.0) ** 2))  # degrees
    R_C = 2.0 * _chroma_weight(c_mean)
    L_dev = (L_mean - 50.0) ** 2
    S_L = 1.0 + 0.015 * L_dev / jnp.sqrt(20.0 + L_dev)
    S_C = 1.0 + 0.045 * c_mean
    S_H = 1.0 + 0.015 * c_mean * T
    R_T = -jnp.sin(jnp.deg2rad(2.0 * d_theta)) * R_C

    tL, tC, tH = dL / S_L, dC / S_C, dH / S_H
    # The rotation term can make the sum a hair negative through rounding; clamp it.
    return safe_sqrt(tL**2 + tC**2 + tH**2 + R_T * tC * tH)


def ciede2000(lab1, lab2):
    """Mean CIEDE2000 colour difference per image, ``(N,)``; see :func:`ciede2000_map`."""
    return jnp.mean(ciede2000_map(lab1, lab2), axis=(1, 2))


# --- colourfulness -------------------------------------------------------------------

# Hasler and Suesstrunk (2003), "Measuring colourfulness in natural images", SPIE 5007:
# M = sigma_rgyb + 0.3 * mu_rgyb on opponent channels of 8-bit RGB.
_COLORFULNESS_MU_WEIGHT = 0.3
_COLORFULNESS_SCALE = 255.0


def colorfulness(rgb):
    """Hasler-Suesstrunk colourfulness per image, ``(N,)``, for sRGB in ``[0, 1]``.

    The input is multiplied by 255 internally because the metric and its published
    scale (about 0 for gray, above 100 for extremely colourful images) are defined on
    8-bit values. Standard deviations are population (ddof = 0) over all pixels.
    """
    rgb = _as_batch(rgb) * _COLORFULNESS_SCALE
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    axes = (1, 2)
    sigma = safe_sqrt(jnp.var(rg, axis=axes) + jnp.var(yb, axis=axes))
    mu = safe_sqrt(jnp.mean(rg, axis=axes) ** 2 + jnp.mean(yb, axis=axes) ** 2)
    return sigma + _COLORFULNESS_MU_WEIGHT * mu
