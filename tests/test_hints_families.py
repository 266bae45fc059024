"""Colour hints (`config.model.hints`) in every family: one jitted train step with hint
planes in the batch, predictions that read them, and a clear error for hints given to a
model trained without."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import STEADY_LR, photo_batch, tiny_config

from colorjax import hints
from colorjax.config import registry
from colorjax.config.checks import ConfigError
from colorjax.training.validation import validate_config
from colorjax.objectives import make_objective

SIZE = 16
CONFIG_FILE = {"wgan_gp": "wgan"}  # model name -> config file, where they differ
# eccv16 reads hints as any family does, but at 16 px its dilated layers see a 2x2 map and
# a first step's prediction barely depends on its input: tests/test_zhang.py, at 32 px.
# ddcolor and deoldify read the gray image alone (their validate refuses hints): their
# published networks have no input for them.
MODELS = tuple(m for m in registry.names() if m not in ("eccv16", "ddcolor", "deoldify"))


def config_for(model, **fields):
    """`model` at test size (16 px, widths 4-8, constant learning rate) with hints on."""
    extra = {"model.hints": True, **STEADY_LR}
    family = registry.spec(model).family
    features = (4, 8)
    if family == "vae":
        extra.update({"model.encoder_features": (4, 8), "model.latent_dim": 4})
    elif family == "adversarial":
        extra.update({"adversarial.disc_features": 4, "adversarial.perceptual_weight": 0.0})
    elif family == "diffusion":
        extra.update({"sampler.steps": 2, "model.attention_levels": ()})
    elif model == "siggraph17":  # Zhang et al.'s network at 4 to 32 channels
        extra["model.width"] = 4
    elif model == "fusion":
        features = (4, 8, 16, 32)  # EfficientNet's stride 32 at embed_size 32
        extra.update({"model.fusion_width": 8, "model.embed_size": 32})
    c = tiny_config(CONFIG_FILE.get(model, model), size=SIZE, features=features, **extra)
    if family == "adversarial" and c.adversarial.discriminator == "patchgan":
        c.adversarial.disc_layers = 2  # a 3-layer PatchGAN needs >= 24 px
    for path, value in fields.items():
        section, name = path.split(".")
        c[section][name] = value
    return c


def hint_batch(n=4):
    batch = photo_batch(n, SIZE)
    ab = np.asarray(batch["ab"])
    planes = np.stack([hints.sample_planes(ab[i], hints.hint_rng(0, i), num_points=5)
                       for i in range(n)])
    return {**batch, "hints": jnp.asarray(planes)}


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_one_train_step_with_hints(model):
    config = config_for(model)
    validate_config(config)
    obj = make_objective(config)
    assert obj.hints
    batch = hint_batch()
    state = obj.init(jax.random.key(0), batch, 10)
    state, metrics = jax.jit(obj.train_step)(state, batch, jax.random.key(1))
    assert bool(metrics["finite"]), model
    assert int(state.step) == 1
    predict = jax.jit(obj.predict)
    rng = jax.random.key(2)
    with_hints = np.asarray(predict(state, batch["l"], rng, hints=batch["hints"]))
    without = np.asarray(predict(state, batch["l"], rng))
    assert with_hints.shape == without.shape == batch["ab"].shape
    assert np.all(np.isfinite(with_hints))
    # The network reads the planes: hints change the prediction (zeros = no hints).
    assert not np.allclose(with_hints, without), model
    zeros = np.asarray(predict(state, batch["l"], rng, hints=jnp.zeros_like(batch["hints"])))
    np.testing.assert_allclose(zeros, without, atol=1e-6)


def test_hints_to_a_model_without_them_is_a_clear_error():
    config = tiny_config("unet", size=SIZE, features=(4, 8))
    obj = make_objective(config)
    assert not obj.hints
    batch = hint_batch(2)
    state = obj.init(jax.random.key(0), batch, 10)  # a batch's hints: ignored
    with pytest.raises(ValueError, match="trained without colour hints"):
        obj.predict(state, batch["l"], jax.random.key(0), hints=batch["hints"])


@pytest.mark.parametrize("field,value,match", [
    ("model.hints", 1, r"config\.model\.hints: .*allowed: True or False"),
    ("model.hints", "yes", r"config\.model\.hints: .*allowed: True or False"),
    ("eval.num_hints", -1, r"config\.eval\.num_hints"),
])
def test_hint_fields_are_checked(field, value, match):
    config = tiny_config("unet", size=SIZE, features=(4, 8))
    section, name = field.split(".")
    del config[section][name]  # a value of another type (ml_collections keeps types)
    config[section][name] = value
    with pytest.raises(ConfigError, match=match) as e:
        validate_config(config)
    assert "\n" not in str(e.value)


def test_eval_hints_need_a_hint_model():
    config = tiny_config("unet", size=SIZE, features=(4, 8), **{"eval.num_hints": 5})
    with pytest.raises(ConfigError, match=r"config\.eval\.num_hints: 5 needs a hint model"):
        validate_config(config)
    validate_config(tiny_config("unet", size=SIZE, features=(4, 8),
                                **{"eval.num_hints": 5, "model.hints": True}))


def test_a_bad_hints_flag_is_one_line(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    out = subprocess.run([sys.executable, "-m", "colorjax.main", "--config=configs/unet.py:cpu",
                          f"--workdir={tmp_path / 'run'}", "--config.eval.num_hints=3"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
    assert "config.eval.num_hints: 3 needs a hint model" in lines[0]
