"""The classification colorizer (Zhang et al. 2016): in-gamut ab bins, soft targets, the
rebalancing prior, the annealed mean, and the objective trained, exported and served."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import STEADY_LR, fit_fixed_batch, photo_batch, tiny_config

from colorjax import color
from colorjax.color import ab_bins
from colorjax.config.checks import ConfigError
from colorjax.objectives import make_objective

CENTERS = ab_bins.in_gamut_centers()


def _cells(ab):
    return set(map(tuple, np.round(np.asarray(ab) / ab_bins.GRID).astype(int)))


def test_bins_cover_the_srgb_gamut_and_nothing_outside_it():
    bins = _cells(CENTERS)
    assert len(bins) == len(CENTERS)
    # Random sRGB colours (not the cube the bins were built from), the primaries and the
    # extremes: every one falls in a bin.
    rgb = np.random.default_rng(0).random((200_000, 3), dtype=np.float32)
    corners = np.array(np.meshgrid(*[[0.0, 1.0]] * 3)).reshape(3, -1).T.astype(np.float32)
    ab = color.rgb_to_lab(np.concatenate([rgb, corners]))[:, 1:]
    assert _cells(ab) <= bins
    # Every bin holds sRGB colours: the cells of a 128^3 sRGB cube, converted by
    # scikit-image instead of colorjax.color, are exactly the bins.
    from skimage.color import rgb2lab
    g = np.linspace(0, 1, 128)
    cube = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 1, 3)
    assert _cells(rgb2lab(cube)[:, 0, 1:]) == bins
    # Far outside the gamut (saturated magenta-green extremes) there is no bin.
    assert (110 // 10, -110 // 10) not in bins and (-110 // 10, 110 // 10) not in bins
    assert 200 < len(CENTERS) < 400  # the paper's 313 from its own gamut computation


def test_soft_encoding_sums_to_one_and_is_led_by_the_nearest_bin():
    ab = jnp.asarray(np.random.default_rng(1).uniform(-60, 60, (3, 4, 5, 2)), jnp.float32)
    idx, w = ab_bins.soft_encode(ab, jnp.asarray(CENTERS))
    assert idx.shape == w.shape == (3, 4, 5, ab_bins.SOFT_NEIGHBOURS)
    np.testing.assert_allclose(np.sum(w, -1), 1.0, atol=1e-6)
    d = np.linalg.norm(np.asarray(ab)[..., None, :] - CENTERS, axis=-1)
    np.testing.assert_array_equal(np.asarray(idx[..., 0]), np.argmin(d, -1))
    assert (np.diff(np.asarray(w), axis=-1) <= 1e-7).all()  # nearer bins weigh more
    # The weights are the Gaussian of sigma 5 of the distances, normalised.
    dk = np.take_along_axis(d, np.asarray(idx), -1)
    g = np.exp(-dk ** 2 / (2 * ab_bins.SOFT_SIGMA ** 2))
    np.testing.assert_allclose(np.asarray(w), g / g.sum(-1, keepdims=True), atol=1e-5)


def test_rebalancing_weights_have_expectation_one_and_favour_rare_colours():
    counts = np.zeros(len(CENTERS))
    gray = int(np.argmin(np.linalg.norm(CENTERS, axis=-1)))
    rare = int(np.argmax(np.linalg.norm(CENTERS, axis=-1)))
    counts[gray], counts[rare] = 10_000, 10
    w, prior = ab_bins.rebalancing_weights(counts, CENTERS)
    np.testing.assert_allclose(np.sum(prior), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.sum(prior * w), 1.0, atol=1e-5)
    assert w[rare] > 10 * w[gray]
    # lambda = 1 (only the uniform distribution): every class weighs 1.
    np.testing.assert_allclose(ab_bins.rebalancing_weights(counts, CENTERS, mix=1.0)[0], 1.0,
                               atol=1e-5)
    with pytest.raises(ValueError, match="no pixels"):
        ab_bins.rebalancing_weights(np.zeros(len(CENTERS)), CENTERS)


def test_annealed_mean_is_the_expectation_at_one_and_the_mode_near_zero():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 0.5, (6, len(CENTERS)))
    logits[np.arange(6), rng.integers(0, len(CENTERS), 6)] += 5.0  # a clear mode per row
    logits = jnp.asarray(logits, jnp.float32)
    p = np.asarray(jax.nn.softmax(logits, -1))
    np.testing.assert_allclose(np.asarray(ab_bins.annealed_mean(logits, CENTERS, 1.0)),
                               p @ CENTERS, atol=1e-3)
    mode = CENTERS[np.argmax(p, -1)]
    np.testing.assert_allclose(np.asarray(ab_bins.annealed_mean(logits, CENTERS, 0.01)),
                               mode, atol=1e-2)
    # Between the two, saturation grows as T falls (the paper's trade-off).
    chroma = [float(np.mean(np.linalg.norm(ab_bins.annealed_mean(logits, CENTERS, t), axis=-1)))
              for t in (1.0, 0.38, 0.1)]
    assert chroma[0] < chroma[1] < chroma[2]


def config(**fields):
    return tiny_config("colorful", size=16, features=(8, 16), **STEADY_LR, **fields)


def test_bad_fields_are_named():
    with pytest.raises(ConfigError, match=r"config\.classification\.temperature: 0.0 is not allowed; allowed: \(0.0, ∞\)"):
        make_objective(config(**{"classification.temperature": 0}))
    with pytest.raises(ConfigError, match=r"config\.model\.network: 'vgg' .*'resnet', 'unet'"):
        make_objective(config(**{"model.network": "vgg"}))


@pytest.mark.slow
@pytest.mark.parametrize("network", ["unet", "resnet"])
def test_the_objective_learns_a_fixed_batch_and_decodes_with_any_temperature(network):
    extra = {"model.network": network, "model.width": 8} if network == "resnet" else {}
    obj = make_objective(config(**extra))
    batch = photo_batch(4, 16)
    state = obj.init(jax.random.key(0), batch, 100)
    state, images = obj.fit_data_statistics(state, [batch, batch])
    assert images == 8
    bins = state.model_state["colour_bins"]
    np.testing.assert_allclose(float(jnp.sum(bins["weights"] * bins["prior"])), 1.0, atol=1e-5)
    state, losses = fit_fixed_batch(obj, state, batch, steps=80)
    # The ResNet halves 16 px three times: it learns a 2x2 map, more slowly.
    assert losses[-1] < (0.8 if network == "unet" else 0.9) * losses[0], losses
    variables = obj.inference_variables(state)
    ab = {t: obj.predict_with(variables, batch["l"], jax.random.key(0), temperature=t)
          for t in (1.0, 0.38, 0.05)}
    assert all(a.shape == batch["ab"].shape for a in ab.values())
    assert all(float(jnp.abs(a).max()) <= 1.0 for a in ab.values())
    np.testing.assert_allclose(np.asarray(obj.predict(state, batch["l"], jax.random.key(0))),
                               np.asarray(ab[0.38]), atol=1e-6)
    if network == "unet":  # after fitting, the prediction is nearer the truth than gray
        err = lambda a: float(jnp.mean(jnp.abs(a - batch["ab"])))
        assert err(ab[0.38]) < 0.8 * err(jnp.zeros_like(batch["ab"]))


@pytest.mark.slow
def test_one_step_train_export_and_colorize_through_the_cli(tmp_path):
    """The real entry point: train (with the prior pass), export, load, colorize."""
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    wd, exp = tmp_path / "run", tmp_path / "export"
    flags = ["--config=configs/colorful.py:cpu", f"--workdir={wd}",
             "--config.model.features=(8, 16)", "--config.data.image_size=16",
             "--config.batch_size=4", "--config.eval.batch_size=4",
             "--config.eval.num_examples=4", "--config.num_train_steps=1",
             "--config.classification.prior_images=8"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    logs = []
    for extra in ([], ["--mode=export", f"--export_dir={exp}"]):
        out = subprocess.run([sys.executable, "-m", "colorjax.main", *flags, *extra], cwd=repo,
                             env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        logs.append(out.stdout)
    assert "colour prior counted over 8 training images" in logs[0]  # 2 batches of 4

    from colorjax import Colorizer

    c = Colorizer.load(str(exp))
    rgb = c.colorize(np.full((21, 34), 120, np.uint8))
    assert rgb.shape == (21, 34, 3)
    bins = c.variables["colour_bins"]
    assert bins["centers"].shape == CENTERS.shape
    assert not np.allclose(np.asarray(bins["weights"]), 1.0)  # the prior travelled along
