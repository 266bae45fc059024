"""colorjax.color against scikit-image, on NumPy and under jax.jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import color as skcolor

from colorjax import color

CORNERS = np.array([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1],
                    [1, 1, 0], [0, 1, 1], [1, 0, 1]], np.float32).reshape(1, 8, 1, 3)


def random_rgb(shape=(3, 17, 23, 3), seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


@pytest.mark.parametrize("backend", ["numpy", "jit"])
@pytest.mark.parametrize("image", ["random", "corners"])
def test_rgb_to_lab_matches_skimage(backend, image):
    rgb = random_rgb() if image == "random" else CORNERS
    ref = skcolor.rgb2lab(rgb.astype(np.float64))
    lab = color.rgb_to_lab(rgb) if backend == "numpy" else jax.jit(color.rgb_to_lab)(rgb)
    assert lab.dtype == np.float32
    err = np.abs(np.asarray(lab) - ref).reshape(-1, 3).max(axis=0)
    assert np.all(err <= 1e-3), err  # each of L, a, b


@pytest.mark.parametrize("backend", ["numpy", "jit"])
def test_lab_to_rgb_matches_skimage_including_out_of_gamut(backend):
    rng = np.random.default_rng(1)
    lab = np.stack([rng.uniform(0, 100, 2000), rng.uniform(-128, 127, 2000),
                    rng.uniform(-128, 127, 2000)], -1).reshape(2, 1000, 1, 3)
    with pytest.warns(UserWarning):  # scikit-image warns when it clips negative Z
        ref = skcolor.lab2rgb(lab)
    lab32 = lab.astype(np.float32)
    rgb = color.lab_to_rgb(lab32) if backend == "numpy" else jax.jit(color.lab_to_rgb)(lab32)
    rgb = np.asarray(rgb)
    assert rgb.min() >= 0
    assert rgb.max() <= 1  # clipped, as documented
    assert np.abs(rgb - ref).max() <= 1e-3


def test_round_trip_and_corners():
    rgb = np.concatenate([random_rgb((1, 8, 8, 3)).reshape(1, 64, 1, 3), CORNERS], axis=1)
    back = color.lab_to_rgb(color.rgb_to_lab(rgb))
    assert np.abs(back - rgb).max() < 1e-4
    lab = color.rgb_to_lab(CORNERS)[0, :, 0]
    np.testing.assert_allclose(lab[0], [0, 0, 0], atol=1e-3)  # black
    # White under D65: L = 100; a, b within 0.01 of 0 (the sRGB matrix's rows sum to the
    # D65 white point only to its 6 printed decimals, in scikit-image too).
    np.testing.assert_allclose(lab[1], [100, 0, 0], atol=1e-2)
    assert abs(lab[1, 0] - 100) < 1e-3


def test_network_scaling_is_one_definition():
    rgb = random_rgb((2, 8, 8, 3))
    l_norm, ab_norm = color.rgb_to_model_inputs(rgb)
    assert l_norm.shape == (2, 8, 8, 1)
    assert ab_norm.shape == (2, 8, 8, 2)
    assert -1 <= l_norm.min()
    assert l_norm.max() <= 1
    assert np.abs(ab_norm).max() <= 1
    np.testing.assert_allclose(color.model_outputs_to_rgb(l_norm, ab_norm), rgb, atol=1e-4)
    lab = color.rgb_to_lab(rgb)
    np.testing.assert_allclose(color.denormalize_l(l_norm)[..., 0], lab[..., 0], atol=1e-4)
    np.testing.assert_allclose(color.denormalize_ab(ab_norm), lab[..., 1:], atol=1e-4)


def test_sRGB_gamut_fits_the_network_range():
    # Every 8-bit sRGB colour (on a 32-level grid with the extremes) maps inside [-1, 1].
    levels = np.linspace(0, 1, 32, dtype=np.float32)
    grid = np.stack(np.meshgrid(levels, levels, levels), -1).reshape(1, -1, 1, 3)
    assert np.abs(color.normalize_ab(color.rgb_to_lab(grid)[..., 1:])).max() <= 1.0


@pytest.mark.slow
def test_gray_rgb_has_no_chroma_and_gradients_are_finite():
    l_norm = jnp.linspace(-1, 1, 16).reshape(1, 4, 4, 1)
    g = np.asarray(color.gray_rgb(l_norm))
    assert np.abs(g[..., 0] - g[..., 1]).max() < 1e-4
    assert np.abs(g[..., 1] - g[..., 2]).max() < 1e-4
    rgb = jnp.asarray(np.concatenate([random_rgb((1, 4, 4, 3)), np.zeros((1, 4, 4, 3))], 1))
    grad = jax.grad(lambda x: color.rgb_to_lab(x).sum())(rgb)
    assert np.all(np.isfinite(grad))
    grad = jax.grad(lambda ab: color.model_outputs_to_rgb(l_norm, ab).sum())(jnp.zeros((1, 4, 4, 2)))
    assert np.all(np.isfinite(grad))


def test_uint8_photos_take_the_table_path_with_the_same_values():
    rgb8 = np.random.default_rng(3).integers(0, 256, (2, 19, 23, 3), dtype=np.uint8)
    as_float = rgb8.astype(np.float32) / 255
    np.testing.assert_allclose(color.rgb_to_lab(rgb8), color.rgb_to_lab(as_float), atol=1e-4)
    np.testing.assert_allclose(color.rgb_to_lab(rgb8), skcolor.rgb2lab(rgb8), atol=1e-3)
    l8, ab8 = color.rgb_to_model_inputs(rgb8)
    lf, abf = color.rgb_to_model_inputs(as_float)
    np.testing.assert_allclose(l8, lf, atol=1e-6)
    np.testing.assert_allclose(ab8, abf, atol=1e-6)


def test_model_inputs_of_8_bit_colours_match_skimage_for_any_memory_layout():
    # Every 5th level per channel (52^3 colours, 0 and 255 included), and the same pixels
    # mirrored (a negative-stride view, as the pipeline's horizontal flip makes).
    levels = np.arange(0, 256, 5, dtype=np.uint8)
    rgb8 = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(52 * 4, 13 * 52, 3)
    ref = skcolor.rgb2lab(rgb8)
    for view in (rgb8, rgb8[:, ::-1]):
        ref_view = ref if view is rgb8 else ref[:, ::-1]
        l_norm, ab_norm = color.rgb_to_model_inputs(view)
        assert l_norm.dtype == ab_norm.dtype == np.float32
        np.testing.assert_allclose(color.denormalize_l(l_norm), ref_view[..., :1], atol=1e-4)
        np.testing.assert_allclose(color.denormalize_ab(ab_norm), ref_view[..., 1:], atol=2e-4)
        lab = color.rgb_to_lab(view)
        np.testing.assert_allclose(l_norm, color.normalize_l(lab[..., :1]), atol=1e-6)
        np.testing.assert_allclose(ab_norm, color.normalize_ab(lab[..., 1:]), atol=1e-6)


def test_rgb_to_l_is_rgb_to_labs_l_exactly():
    """`rgb_to_l` (what a photo's full-size L is computed with) gives rgb_to_lab's L to the
    bit, for decoded uint8 photos and for float sRGB."""
    rng = np.random.default_rng(3)
    rgb8 = rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)
    for rgb in (rgb8, rgb8.astype(np.float32) / 255):
        np.testing.assert_array_equal(color.rgb_to_l(rgb), color.rgb_to_lab(rgb)[..., 0])
