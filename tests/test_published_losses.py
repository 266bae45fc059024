"""The regression family's `config.loss_terms` (colorjax/objectives/loss_terms.py), which
fine-tuning the converted DDColor and DeOldify uses: DDColor's colourfulness loss against a
NumPy transcription of the authors' `ColorfulnessLoss` (piddnad/DDColor,
basicsr/losses/losses.py), the VGG16 perceptual term, the GAN term's discriminator in the
state, the presets' weights and config mistakes. A fine-tune from a converted export through
the real CLI, logging every term, is in tests/test_published_everywhere.py."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import photo_batch, set_fields, tiny_config

from colorjax.config.checks import ConfigError
from colorjax.objectives import loss_terms, make_objective
from colorjax.objectives.base import TrainState
from colorjax.presets import load_config
from colorjax.training.checkpoint import TrainCheckpointer, restore_run
from colorjax.training.validation import validate_config


def authors_colorfulness_loss(rgb: np.ndarray, loss_weight: float = 1.0) -> float:
    """DDColor's ColorfulnessLoss.forward in NumPy, float64, for NCHW RGB in [0, 1]: a sum
    over the batch of 1 - (sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2)),
    rg = |R - G|, yb = |(R + G)/2 - B|, torch.std's Bessel-corrected deviations."""
    total = 0.0
    for image in rgb.astype(np.float64):
        r, g, b = image[0], image[1], image[2]
        rg = np.abs(r - g)
        yb = np.abs(0.5 * (r + g) - b)
        rb_mean, rb_std = rg.mean(), rg.std(ddof=1)
        yb_mean, yb_std = yb.mean(), yb.std(ddof=1)
        std_root = np.sqrt(rb_std ** 2 + yb_std ** 2)
        mean_root = np.sqrt(rb_mean ** 2 + yb_mean ** 2)
        total += 1 - (std_root + 0.3 * mean_root)
    return loss_weight * total


def test_colorfulness_loss_is_the_authors_formula():
    rng = np.random.default_rng(0)
    rgb = rng.random((3, 9, 7, 3)).astype(np.float32)
    rgb[1] = rgb[1, ..., :1]  # a gray image: C = 0
    rgb[2, ..., 0] *= 0.2  # a cyan-ish one
    want = authors_colorfulness_loss(rgb.transpose(0, 3, 1, 2))
    # theirs sums over the batch; colorjax averages
    np.testing.assert_allclose(float(loss_terms.colorfulness_loss(rgb)) * 3, want, rtol=1e-5)
    per_image = loss_terms.colorfulness_per_image(rgb)
    for i in range(3):
        np.testing.assert_allclose(
            1.0 - float(per_image[i]),
            authors_colorfulness_loss(rgb[i:i + 1].transpose(0, 3, 1, 2)), rtol=1e-5)
    assert float(per_image[1]) == 0.0 and float(per_image[0]) > 0.1
    # The gradient is finite on a gray image (torch's sqrt would give NaN there) and points
    # away from gray elsewhere.
    grad = jax.grad(loss_terms.colorfulness_loss)(jnp.asarray(rgb))
    assert bool(jnp.all(jnp.isfinite(grad)))
    assert float(loss_terms.colorfulness_loss(rgb - 0.01 * grad)) < float(
        loss_terms.colorfulness_loss(rgb))


def test_colour_enhance_is_the_authors_blend():
    rng = np.random.default_rng(1)
    rgb = rng.random((2, 5, 4, 3)).astype(np.float32)
    gray = 0.2989 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]  # torchvision's
    want = np.clip(gray[..., None] * (1 - 1.2) + rgb * 1.2, 0, 1)
    np.testing.assert_allclose(loss_terms.colour_enhance(jnp.asarray(rgb), 1.2), want,
                               atol=1e-6)
    assert loss_terms.colour_enhance(rgb, 1.0) is rgb


def _config(size=32, **terms):
    """The tiny UNet with `config.loss_terms` (add_loss_terms' defaults, then `terms`)."""
    from colorjax.presets import default

    config = tiny_config("unet", size=size)
    default.add_loss_terms(config, **terms)
    return config


def test_terms_are_off_unless_a_config_turns_them_on():
    assert make_objective(tiny_config("unet")).terms == loss_terms.DEFAULTS
    assert make_objective(_config()).terms == loss_terms.DEFAULTS
    pixel = jnp.float32(0.25)
    assert loss_terms.total_loss(loss_terms.DEFAULTS, pixel, None, None, None) == (pixel, {})
    for name in ("unet", "resnet", "fusion", "eccv16", "siggraph17"):
        assert "loss_terms" not in load_config(name, "cpu")


@pytest.mark.slow
def test_perceptual_term_is_zero_for_the_truth_and_positive_otherwise():
    terms = loss_terms.LossTerms(perceptual_weight=2.0,
                                 perceptual_layer_weights=(0.0625, 0.125, 0.25, 0.5, 1.0))
    batch = photo_batch(2, 16)
    vgg = make_objective(_config(size=16, perceptual_weight=2.0)).vgg_params

    @jax.jit  # VGG16 an argument: closed over, it compiles in 6 s instead of 0.4
    @jax.value_and_grad
    def perceptual(ab, vgg):
        return loss_terms.total_loss(terms, jnp.float32(0.0), ab, batch, None, vgg)[1][
            "loss_perceptual"]

    same, _ = perceptual(batch["ab"], vgg)
    gray, grad = perceptual(jnp.zeros_like(batch["ab"]), vgg)
    assert abs(float(same)) < 1e-5 and float(gray) > 0.1  # 0 up to float32 rounding
    assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.abs(grad).max()) > 0


@pytest.mark.slow  # a step through VGG16 and back: ~4 s here
def test_perceptual_gradient_reaches_the_params():
    """The perceptual term alone (no pixel loss), through the training loop's own step: the
    gradient is the term's, and VGG16 reaches the step as an argument (`step_constants`),
    not as 59 MB of constants compiled into the program."""
    from colorjax.platform import parallel
    from colorjax.training.loop import make_train_step

    config = _config(pixel_weight=0.0, perceptual_weight=2.0,
                     perceptual_layer_weights=(0.0625, 0.125, 0.25, 0.5, 1.0))
    objective = make_objective(config)
    mesh = parallel.create_mesh()
    batch = parallel.shard_batch(photo_batch(2, 32), mesh)
    state = jax.jit(lambda r, b: objective.init(r, b, num_train_steps=4),
                    out_shardings=parallel.replicated(mesh))(jax.random.key(0), batch)
    assert type(state) is TrainState  # no discriminator without the GAN term
    step = make_train_step(objective, mesh)
    assert set(step.constants) == {"vgg"}
    program = step.lower(state, batch, jax.random.key(1)).as_text()
    assert len(program) < 2_000_000, len(program)  # closed over: ~120 MB of hex constants
    _, metrics = step(state, batch, jax.random.key(1))
    assert bool(metrics["finite"])
    np.testing.assert_allclose(metrics["loss"], 2.0 * metrics["loss_perceptual"], rtol=1e-6)
    assert float(metrics["loss_perceptual"]) > 0 and float(metrics["grad_norm"]) > 0


@pytest.mark.slow  # a step of the UNet and a PatchGAN, forward and back: ~30 s here
def test_gan_term_trains_a_discriminator_kept_out_of_the_export(tmp_path):
    config = _config(gan_weight=1.0, colorfulness_weight=2.0, target_enhance=1.2,
                     disc_features=8, disc_layers=2)
    objective = make_objective(config)
    batch = photo_batch(2, 32)
    state = jax.jit(lambda r, b: objective.init(r, b, num_train_steps=4))(
        jax.random.key(0), batch)
    assert isinstance(state, loss_terms.CriticState) and state.disc_tx is not None
    step = jax.jit(objective.train_step)
    new, metrics = step(state, batch, jax.random.key(1))
    assert bool(metrics["finite"])
    for key in ("loss_pixel", "loss_colorfulness", "loss_gan", "d_loss", "d_real", "d_fake"):
        assert np.isfinite(float(metrics[key])), key
    assert "loss_perceptual" not in metrics
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()),
                                         new.disc_params, state.disc_params))
    assert max(moved) > 0  # D took its step
    assert set(objective.inference_variables(new)) == {"params", "batch_stats"}
    # A checkpoint holds D and its optimizer, and restores as a run (eval, export) does.
    ckpt = TrainCheckpointer(str(tmp_path / "checkpoints"), async_save=False)
    ckpt.save(1, new, {}, config)
    ckpt.close()
    restored = restore_run(str(tmp_path)).state
    assert isinstance(restored, loss_terms.CriticState)
    for got, want in zip(jax.tree.leaves((restored.disc_params, restored.disc_opt_state)),
                         jax.tree.leaves((new.disc_params, new.disc_opt_state))):
        np.testing.assert_array_equal(got, want)
    # The real pairs D sees are the enhanced truth's ab: more colourful than the truth.
    _, ab = loss_terms.targets(objective.terms, batch["l"], batch["ab"])
    assert float(jnp.abs(ab).mean()) > float(jnp.abs(batch["ab"]).mean())


def test_presets_hold_the_authors_weights():
    dd = load_config("ddcolor", "cpu").loss_terms
    assert (dd.pixel_weight, dd.perceptual_weight, dd.colorfulness_weight, dd.gan_weight,
            dd.target_enhance) == (pytest.approx(11.0), 5.0, 2.0, 1.0, 1.2)
    assert dd.perceptual_layer_weights == (0.0625, 0.125, 0.25, 0.5, 1.0)
    ddd = load_config("ddcolor", "cpu").disc_optimizer
    assert (ddd.name, ddd.learning_rate, ddd.b1, ddd.b2) == ("adam", 1e-4, 0.9, 0.99)
    for variant in ("cpu", "artistic_cpu", ""):
        de = load_config("deoldify", variant).loss_terms
        assert (de.pixel_weight, de.perceptual_weight, de.colorfulness_weight,
                de.gan_weight) == (1.0, 1.0, 0.0, 0.0)
        assert de.perceptual_layer_weights == (0.0, 0.0, 20.0, 70.0, 10.0)


@pytest.mark.parametrize("field, value, problem", [
    ("loss_terms.perceptual_weight", -1.0, "config.loss_terms.perceptual_weight: -1.0"),
    ("loss_terms.colorfulness_weight", float("nan"), "config.loss_terms.colorfulness_weight"),
    ("loss_terms.perceptual_layer_weights", (1.0, 2.0), "5 numbers in [0.0, ∞)"),
    ("loss_terms.disc_norm", "spectral", "'batch', 'group', 'instance', 'none'"),
    ("loss_terms.disc_layers", 4, "config.data.image_size: 32 is too small for the GAN"),
    ("disc_optimizer.learning_rate", 0.0, "config.disc_optimizer.learning_rate"),
])
def test_mistakes_name_the_field_and_what_is_allowed(field, value, problem):
    config = set_fields(load_config("ddcolor", "cpu"), {"data.image_size": 32, field: value})
    with pytest.raises(ConfigError) as e:
        validate_config(config)
    assert problem in str(e.value), str(e.value)
    # Without the GAN term, a PatchGAN that would not fit is not built, so not refused.
    if field == "loss_terms.disc_layers":
        validate_config(set_fields(config, {"loss_terms.gan_weight": 0.0}))


def test_the_gan_term_needs_a_discriminator_optimizer():
    config = tiny_config("unet", size=32)
    config.loss_terms = ml_collections.ConfigDict({"gan_weight": 1.0})
    with pytest.raises(ConfigError, match=r"config.disc_optimizer.name: is missing"):
        validate_config(config)
    config.loss_terms.gan_weight = 0.0
    validate_config(config)
