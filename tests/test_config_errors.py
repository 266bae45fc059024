"""A wrong config or flag is one line on stderr, exit status 2, before anything compiles.

Every test drives the real entry points (`python -m colorjax.main`, `python -m
colorjax.data.prepare`) in a subprocess, with JAX_LOG_COMPILES=1: a compilation would add
log lines to stderr, so "exactly one line" also means "nothing was compiled".
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO


def _run(module, *args, **env):
    inherited = {k: v for k, v in os.environ.items() if k != "COLORJAX_DEBUG"}
    full_env = {**inherited, "JAX_LOG_COMPILES": "1", **env}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=300)


def _main(tmp_path, config, *overrides, **env):
    return _run("colorjax.main", f"--config={config}", f"--workdir={tmp_path / 'run'}",
                *overrides, **env)


def _one_line(out) -> str:
    """The single stderr line of a usage error (exit 2, no traceback, nothing else)."""
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-3000:]
    assert len(lines) == 1, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    return lines[0]


UNET, DDIM, GAN, VAE = (f"configs/{n}.py:cpu" for n in ("unet", "unetddim", "unetgan", "unetvae"))


@pytest.mark.slow
@pytest.mark.parametrize("config,override,field,allowed", [
    (UNET, "model.norm=foo", "model.norm", "'batch', 'group', 'instance', 'none'"),
    (UNET, "loss=cosine", "loss", "'huber', 'l1', 'mse'"),
    (UNET, "optimizer.name=sgd", "optimizer.name", "'adam', 'adamw'"),
    (UNET, "optimizer.schedule=step", "optimizer.schedule", "'constant', 'cosine'"),
    (UNET, "precision=float16", "precision", "'auto', 'bfloat16', 'bfloat16_convs', 'float32'"),
    (UNET, "model.name=transformer", "model.name", "'basicvae', 'colorful', 'ddcolor', 'deoldify', 'eccv16', 'fusion', 'gan'"),
    (UNET, "eval.lpips_net=squeeze", "eval.lpips_net", "'alex', 'vgg'"),
    (DDIM, "sampler.name=euler", "sampler.name", "'ddim', 'ddpm'"),
    (DDIM, "model.backbone=resnet50", "model.backbone", "'none', 'vgg16'"),
    (DDIM, "diffusion.prediction=x0", "diffusion.prediction", "'eps', 'v'"),
    (GAN, "adversarial.discriminator=mlp", "adversarial.discriminator", "'conv', 'patchgan'"),
    (GAN, "model.generator=vit", "model.generator", "'encoder_decoder', 'residual_unet'"),
    (GAN, "adversarial.disc_norm=layer", "adversarial.disc_norm", "'batch', 'group'"),
    (VAE, "vae.sample_mode=posterior", "vae.sample_mode", "'prior', 'zero'"),
    (VAE, "model.condition=concat", "model.condition", "'bottleneck', 'film'"),
])
def test_an_enumerated_field_is_checked_up_front(tmp_path, config, override, field, allowed):
    line = _one_line(_main(tmp_path, config, f"--config.{override}"))
    value = override.split("=", 1)[1]
    assert line.startswith(f"config error: config.{field}: {value!r} is not allowed; allowed: ")
    assert allowed in line
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
@pytest.mark.parametrize("override,field,closest", [
    ("nosuchfield=1", "nosuchfield", None),
    ("model.nrom=batch", "model.nrom", "model.norm"),
    ("data.imgae_size=64", "data.imgae_size", "data.image_size"),
    ("norm=batch", "norm", "model.norm"),
])
def test_an_unknown_field_is_named_with_the_closest_known_one(tmp_path, override, field,
                                                              closest):
    line = _one_line(_main(tmp_path, UNET, f"--config.{override}"))
    assert line.startswith(f"config error: config.{field}: no such field (closest known "
                           f"field: config.{closest or ''}")
    parent = field.rpartition(".")[0]
    assert f"; allowed: the fields of config{'.' + parent if parent else ''}: " in line


def test_image_size_names_the_multiples_either_side(tmp_path):
    line = _one_line(_main(tmp_path, UNET, "--config.data.image_size=33"))
    assert line.startswith("config error: config.data.image_size: 33 ")
    assert line.endswith("allowed: positive multiples of 8 (e.g. 32 or 40)")


def test_a_number_out_of_range_from_an_objective_reads_the_same(tmp_path):
    line = _one_line(_main(tmp_path, DDIM, "--config.sampler.steps=0"))
    assert line.startswith("config error: config.sampler.steps: 0 is not allowed; allowed: [1, ")


def test_a_value_of_the_wrong_type_is_one_line(tmp_path):
    line = _one_line(_main(tmp_path, UNET, "--config.batch_size=abc"))
    assert line.startswith("config error: config.batch_size: 'abc' is not allowed")
    assert line.endswith("allowed: integers")


@pytest.mark.parametrize("config,expect", [
    ("configs/nosuch.py", "no config file configs/nosuch.py; available: ['basicvae'"),
    ("configs/unet.py:gpu", "unknown config variant 'gpu'; allowed: "),
])
def test_a_config_file_that_does_not_load_is_one_line(tmp_path, config, expect):
    line = _one_line(_main(tmp_path, config, "--config.batch_size=8"))
    assert line.startswith(f"config error: --config={config}: ")
    assert expect in line


def test_other_flag_mistakes_are_one_line_too(tmp_path):
    line = _one_line(_main(tmp_path, UNET, "--mode=fit"))
    assert line.startswith("error: flag --mode=fit: value should be one of")
    line = _one_line(_run("colorjax.main", f"--config={UNET}"))
    assert line.startswith("error: flag --workdir=None")


def test_colorjax_debug_shows_the_traceback(tmp_path):
    out = _main(tmp_path, UNET, "--config.model.norm=foo", COLORJAX_DEBUG="1")
    assert out.returncode == 2
    assert "Traceback" in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("config error: config.model.norm: ")


# --- python -m colorjax.data.prepare -----------------------------------------------------


def test_prepare_a_missing_folder_is_one_line_naming_it(tmp_path):
    line = _one_line(_run("colorjax.data.prepare", f"--src={tmp_path / 'nope'}",
                          COLORJAX_DATA_DIR=str(tmp_path / "tfds")))
    assert line == f"error: src='{tmp_path / 'nope'}' is not a folder."


def test_prepare_a_folder_without_usable_photos_is_one_error_line(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    (src / "a.jpg").write_text("not a photo")
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(src / "gray.png")
    out = _run("colorjax.data.prepare", f"--src={src}", "--name=nothing_usable",
               COLORJAX_DATA_DIR=str(tmp_path / "tfds"))
    assert out.returncode == 2, out.stderr[-3000:]
    errors = [line for line in out.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: No usable image in {src}: ")
    assert "--val_fraction" not in out.stderr + out.stdout  # no flag help
    assert "Traceback" not in out.stderr


def test_prepare_flag_mistakes_are_one_line(tmp_path):
    line = _one_line(_run("colorjax.data.prepare", COLORJAX_DATA_DIR=str(tmp_path)))
    assert line.startswith("error: flag --src=None")
