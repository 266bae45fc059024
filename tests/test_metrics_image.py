"""colorjax.metrics.image against scikit-image, published data and NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.color import deltaE_cie76, deltaE_ciede2000
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from colorjax.color import rgb_to_lab
from colorjax.metrics.image import (
    ciede2000,
    ciede2000_map,
    colorfulness,
    delta_e76,
    psnr,
    ssim,
)

SIZES = [(11, 11), (16, 16), (32, 32), (24, 40), (37, 19)]  # smallest legal, small, non-square
BATCH = 3


def _rgb_pair(seed, h, w, c=3, scale=1.0):
    """A batch of random images and noisy copies, one noise level per image.

    Low to high noise covers SSIM from near 1 down to near 0.
    """
    rng = np.random.default_rng(seed)
    x = rng.random((BATCH, h, w, c))
    noise = np.array([0.02, 0.1, 0.5])[:, None, None, None]
    y = np.clip(x + noise * rng.standard_normal(x.shape), 0.0, 1.0)
    return x * scale, y * scale


def _random_lab(rng, shape):
    """Lab values over the whole sRGB-ish range, including negative a and b."""
    L = rng.uniform(0.0, 100.0, shape)
    ab = rng.uniform(-110.0, 110.0, shape + (2,))
    return np.concatenate([L[..., None], ab], axis=-1)


# --- SSIM ----------------------------------------------------------------------------


def _skimage_ssim(x, y, data_range, channel_axis=-1):
    return np.array(
        [
            structural_similarity(
                xi,
                yi,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=data_range,
                channel_axis=channel_axis,
            )
            for xi, yi in zip(x, y)
        ]
    )


@pytest.mark.parametrize("h,w", SIZES)
def test_ssim_matches_skimage(h, w):
    x, y = _rgb_pair(h * 100 + w, h, w)
    ours = np.asarray(jax.jit(ssim)(x, y))
    assert ours.shape == (BATCH,)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, _skimage_ssim(x, y, 1.0), rtol=0, atol=1e-4)


def test_ssim_data_range_and_single_channel():
    x, y = _rgb_pair(1, 20, 28, scale=255.0)
    ours = np.asarray(jax.jit(lambda a, b: ssim(a, b, data_range=255.0))(x, y))
    np.testing.assert_allclose(ours, _skimage_ssim(x, y, 255.0), atol=1e-4)
    g1, g2 = x[..., :1] / 255.0, y[..., :1] / 255.0
    ref = _skimage_ssim(g1[..., 0], g2[..., 0], 1.0, channel_axis=None)
    np.testing.assert_allclose(np.asarray(ssim(g1, g2)), ref, atol=1e-4)


def test_ssim_identical_is_one_and_small_images_rejected():
    x, _ = _rgb_pair(2, 16, 16)
    np.testing.assert_allclose(np.asarray(ssim(x, x)), 1.0, atol=1e-6)
    with pytest.raises(ValueError):
        ssim(x[:, :10], x[:, :10])  # the 11x11 window does not fit, as in scikit-image


# --- PSNR ----------------------------------------------------------------------------


@pytest.mark.parametrize("h,w", [(16, 16), (24, 40)])
def test_psnr_matches_skimage(h, w):
    x, y = _rgb_pair(h + w, h, w)
    ours = np.asarray(jax.jit(psnr)(x, y))
    ref = np.array([peak_signal_noise_ratio(a, b, data_range=1.0) for a, b in zip(x, y)])
    assert ours.shape == (BATCH,)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)


def test_psnr_identical_images_inf_or_capped():
    x, y = _rgb_pair(3, 16, 16)
    y[1] = x[1]  # one exact copy in the batch must not disturb the others
    values = np.asarray(jax.jit(psnr)(x, y))
    assert values[1] == np.inf
    assert np.all(np.isfinite(values[[0, 2]]))
    capped = np.asarray(jax.jit(lambda a, b: psnr(a, b, max_db=100.0))(x, y))
    np.testing.assert_allclose(capped, [values[0], 100.0, values[2]], rtol=1e-6)


# --- CIE76 ---------------------------------------------------------------------------


def test_delta_e76_matches_skimage():
    rng = np.random.default_rng(4)
    lab1, lab2 = _random_lab(rng, (BATCH, 12, 17)), _random_lab(rng, (BATCH, 12, 17))
    ours = np.asarray(jax.jit(delta_e76)(lab1, lab2))
    ref = deltaE_cie76(lab1, lab2).mean(axis=(1, 2))
    assert ours.shape == (BATCH,)
    np.testing.assert_allclose(ours, ref, rtol=1e-5)


# --- CIEDE2000 -----------------------------------------------------------------------

# Sharma, Wu and Dalal (2005), "The CIEDE2000 color-difference formula: implementation
# notes, supplementary test data, and mathematical observations", Color Research and
# Application 30(1):21-30, Table 1. Columns: L1, a1, b1, L2, a2, b2, dE00.
SHARMA_TABLE_1 = [
    (50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425),
    (50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615),
    (50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412),
    (50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669),
    (50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461),
    (50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065),
    (50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492),
    (50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977),
    (50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030),
    (50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000),
    (60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644),
    (63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630),
    (61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731),
    (35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645),
    (22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373),
    (36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146),
    (90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441),
    (90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381),
    (6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377),
    (2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082),
]


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("swap", [False, True])
def test_ciede2000_sharma_table(jit, swap):
    """All 34 pairs, in both orders (CIEDE2000 is symmetric), eager and jitted.

    Pairs 10 and 14 are exact 180-degree hue ties; pairs 7, 8 and 16 have C' = 0.
    """
    table = np.array(SHARMA_TABLE_1)
    lab1, lab2 = table[None, :, None, 0:3], table[None, :, None, 3:6]  # as one 34x1 image
    if swap:
        lab1, lab2 = lab2, lab1
    fn = jax.jit(ciede2000_map) if jit else ciede2000_map
    ours = np.asarray(fn(lab1, lab2))[0, :, 0]
    np.testing.assert_allclose(ours, table[:, 6], rtol=0, atol=1e-4)


def test_ciede2000_matches_skimage_on_random_lab():
    rng = np.random.default_rng(5)
    shape = (BATCH, 21, 13)
    lab1, lab2 = _random_lab(rng, shape), _random_lab(rng, shape)
    # Half the second image close to the first: small differences are the common case.
    lab2[:, :10] = lab1[:, :10] + rng.normal(0.0, 2.0, lab1[:, :10].shape)
    ref = deltaE_ciede2000(lab1, lab2)
    ours_map = np.asarray(jax.jit(ciede2000_map)(lab1, lab2))
    ours_mean = np.asarray(jax.jit(ciede2000)(lab1, lab2))
    assert ours_map.shape == shape
    assert ours_mean.shape == (BATCH,)
    np.testing.assert_allclose(ours_map, ref, rtol=0, atol=1e-3)
    np.testing.assert_allclose(ours_mean, ref.mean(axis=(1, 2)), rtol=0, atol=1e-3)


def test_ciede2000_matches_skimage_on_srgb_images():
    rgb1, rgb2 = _rgb_pair(6, 16, 24)
    lab1, lab2 = np.asarray(rgb_to_lab(rgb1)), np.asarray(rgb_to_lab(rgb2))
    ref = deltaE_ciede2000(lab1.astype(np.float64), lab2.astype(np.float64))
    np.testing.assert_allclose(np.asarray(ciede2000_map(lab1, lab2)), ref, atol=1e-3)


def _gray(L, shape=(2, 4, 5)):
    lab = np.zeros(shape + (3,), np.float32)
    lab[..., 0] = L
    return lab


@pytest.mark.parametrize(
    "lab1,lab2",
    [
        pytest.param(_gray(50.0), _gray(50.0), id="identical-grays"),
        pytest.param(_gray(30.0), _gray(70.0), id="different-grays"),
        pytest.param(_gray(50.0), _gray(50.0) + np.float32([0, 20, -30]), id="gray-vs-colour"),
        pytest.param(
            _gray(50.0) + np.float32([0, 20, -30]), _gray(50.0) + np.float32([0, 20, -30]),
            id="identical-colours",
        ),
    ],
)
def test_ciede2000_and_delta_e76_gradients_finite(lab1, lab2):
    for metric in (ciede2000, delta_e76):
        g1, g2 = jax.jit(jax.grad(lambda a, b: jnp.mean(metric(a, b)), argnums=(0, 1)))(lab1, lab2)
        assert np.all(np.isfinite(np.asarray(g1)))
        assert np.all(np.isfinite(np.asarray(g2)))


def test_ciede2000_zero_on_identical():
    rng = np.random.default_rng(7)
    lab = _random_lab(rng, (2, 6, 6))
    np.testing.assert_array_equal(np.asarray(ciede2000(lab, lab)), 0.0)
    np.testing.assert_array_equal(np.asarray(delta_e76(lab, lab)), 0.0)


# --- colourfulness -------------------------------------------------------------------


def _numpy_colorfulness(rgb01):
    """Hasler and Suesstrunk (2003) on 8-bit scale, straight from the paper's definition."""
    out = []
    for img in np.asarray(rgb01, np.float64) * 255.0:
        R, G, B = img[..., 0].ravel(), img[..., 1].ravel(), img[..., 2].ravel()
        rg, yb = R - G, 0.5 * (R + G) - B
        std = np.sqrt(rg.std() ** 2 + yb.std() ** 2)
        mean = np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
        out.append(std + 0.3 * mean)
    return np.array(out)


def test_colorfulness_matches_numpy_reference():
    x, y = _rgb_pair(8, 19, 23)
    batch = np.concatenate([x, y, 0.5 + 0.1 * (x - 0.5)])  # vivid, noisy, washed out
    ours = np.asarray(jax.jit(colorfulness)(batch))
    assert ours.shape == (3 * BATCH,)
    np.testing.assert_allclose(ours, _numpy_colorfulness(batch), rtol=1e-5)


def test_colorfulness_known_values_and_gray_gradient():
    gray = np.broadcast_to(np.linspace(0, 1, 8 * 8).reshape(1, 8, 8, 1), (1, 8, 8, 3))
    red = np.zeros((1, 8, 8, 3))
    red[..., 0] = 1.0
    # Gray: rg = yb = 0 everywhere. Flat pure red: sigma = 0, rg = 255, yb = 127.5.
    expected = [0.0, 0.3 * 255.0 * np.sqrt(1.0 + 0.25)]
    ours = np.asarray(colorfulness(np.concatenate([gray, red])))
    np.testing.assert_allclose(ours, expected, atol=1e-3)
    grad = jax.grad(lambda a: jnp.sum(colorfulness(a)))(jnp.asarray(gray, jnp.float32))
    assert np.all(np.isfinite(np.asarray(grad)))


def test_package_exports():
    import colorjax.metrics as metrics

    for name in ("ssim", "psnr", "delta_e76", "ciede2000", "ciede2000_map", "colorfulness"):
        assert getattr(metrics, name) is globals()[name]
    assert hasattr(metrics, "LPIPS")
