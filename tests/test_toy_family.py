"""A training family of one's own, defined in this file alone, trained, exported and used
for colorizing by colorjax's real entry points with no edit to colorjax: what
docs/architecture.md's "How to add a family" promises.

This module is the family (MODELS, OBJECTIVE, validate, downsample_factor) and its config
file (get_config): `--config=tests/test_toy_family.py` with `tests/` on PYTHONPATH, and
`config.model.objective = "test_toy_family"` tells colorjax where the family lives.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.config import checks
from colorjax.config.registry import ModelSpec
from colorjax.objectives import base

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent


# --- the family ---------------------------------------------------------------------------


class ToyNet(nn.Module):
    """ab = tanh(conv(relu(conv(L)))): two 3x3 convolutions."""

    width: int = 8

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train
        h = nn.relu(nn.Conv(self.width, (3, 3))(x))
        return jnp.tanh(nn.Conv(2, (3, 3))(h))


def validate(config) -> None:
    """ConfigError naming the first wrong field this family reads."""
    checks.choice(config, "model.name", tuple(MODELS))
    checks.integer(config, "model.width", low=1)


def downsample_factor(config) -> int:
    del config
    return 1  # the network never halves the image


class ToyObjective(base.Objective):
    """L1 regression with `ToyNet`; `predict` is one forward pass."""

    def __init__(self, config):
        validate(config)
        self.read_shared_fields(config)
        self.model = ToyNet(width=int(config.model.width))

    def init(self, rng, batch, num_train_steps=None):
        params = base.init_variables(self.model, rng, self.batch_conditioning(batch))["params"]
        return base.TrainState.create(params, {}, base.optimizer_for(self.opt_config,
                                                                     num_train_steps),
                                      base.init_ema(params, self.ema_decay))

    def train_step(self, state, batch, rng):
        del rng
        x = self.batch_conditioning(batch)

        def loss_fn(params):
            return base.pixel_loss("l1", self.model.apply({"params": params}, x), batch["ab"])

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return base.apply_gradients(state, grads, self.ema_decay, loss)

    def predict_with(self, variables, gray_l, rng, sampling: bool = False, hints=None):
        del rng, sampling
        return self.model.apply({"params": variables["params"]},
                                self.conditioning(gray_l, hints))


MODELS = {"toy": ModelSpec("toy", "toy_net")}
OBJECTIVE = ToyObjective


# --- its config file ----------------------------------------------------------------------


def get_config(variant: str = ""):
    """The toy family on colorjax's embedded demo photos, at test size."""
    from colorjax.presets import default

    c = default.get_config(variant)
    c.model.name = "toy"
    c.model.objective = "test_toy_family"
    c.model.width = 8
    c.data.image_size = 16
    c.batch_size = c.eval.batch_size = 4
    c.eval.num_examples = 4
    c.num_train_steps = 40
    c.eval_every = c.checkpoint_every = 40
    c.log_every = 10
    c.optimizer.learning_rate = 3e-3
    c.optimizer.warmup_steps = 0
    return c


# --- the test -----------------------------------------------------------------------------


def _run(*args, cwd=REPO):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]))
    res = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"{args[0]} failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.mark.slow
def test_a_family_defined_outside_colorjax_trains_exports_and_colorizes(tmp_path):
    workdir, export, out = tmp_path / "run", tmp_path / "export", tmp_path / "out"
    config = f"--config={pathlib.Path(__file__).resolve()}"
    _run("colorjax.main", config, f"--workdir={workdir}")
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r.get("split") == "train" and "loss" in r]
    assert len(losses) >= 2 and losses[-1] < losses[0], losses  # it learned something

    _run("colorjax.main", f"--workdir={workdir}", "--mode=export", f"--export_dir={export}")
    metadata = json.loads((export / "metadata.json").read_text())
    assert (metadata["model"], metadata["family"], metadata["objective"]) == (
        "toy", "toy", "test_toy_family")

    photo = tmp_path / "photo.png"
    rgb = (np.random.default_rng(0).random((20, 28, 3)) * 255).astype(np.uint8)
    from PIL import Image

    Image.fromarray(rgb).save(photo)
    _run("colorjax.colorize", f"--model={export}", f"--input={photo}", f"--output={out}")
    result = np.asarray(Image.open(next(out.glob("photo.*"))))
    assert result.shape == (20, 28, 3)

    # In this process too: the library API loads the family from the export's metadata.
    from colorjax.inference.colorizer import Colorizer

    colorizer = Colorizer.load(str(export))
    assert colorizer.family == "toy" and colorizer.colorize(rgb).shape == (20, 28, 3)
