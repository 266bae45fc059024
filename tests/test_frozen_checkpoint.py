"""Training checkpoints leave frozen backbone weights out and restores put them back: from
the live state on resume, from the installed package in `restore_run` (eval, export);
checkpoints written with them (earlier versions) still restore."""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import photo_batch, tiny_config

from colorjax.training.checkpoint import TrainCheckpointer, restore_run, saved_with_frozen
from colorjax.models.backbone import load_backbone
from colorjax.models.fusion import FusionColorizer
from colorjax.objectives import make_objective

SIZE = 16
# (config, backbone, extra fields, where its frozen weights sit in model_state)
CASES = {
    "unet": ("unet", "efficientnet_lite0", {}, ("backbone",)),
    "unetgan": ("unetgan", "efficientnet_lite0",
                {"adversarial.disc_features": 4, "adversarial.perceptual_weight": 0.0,
                 "adversarial.disc_layers": 2},
                ("backbone",)),
    "unetvae": ("unetvae", "vgg16", {"model.encoder_features": (4, 8), "model.latent_dim": 4},
                ("decoder", "backbone")),
    "unetddpm": ("unetddpm", "vgg16", {}, ("backbone",)),
    # fusion's classifier is its own frozen collection (config.model.backbone stays none)
    "fusion": ("fusion", "none", {"model.fusion_width": 8, "model.embed_size": 32},
               ("backbone", "efficientnet")),
}


def config_for(name):
    model, backbone, extra, _ = CASES[name]
    fields = {"model.backbone": backbone, "model.backbone_width": 8, **extra}
    if model == "fusion":
        del fields["model.backbone_width"]
    if model == "unetddpm":
        fields.update({"model.attention_levels": (1,), "diffusion.timesteps": 10, "sampler.steps": 2})
    return tiny_config(model, size=SIZE, features=(4, 8), **fields)


def frozen_at(name, state):
    tree = state.model_state
    for key in CASES[name][3]:
        tree = tree[key]
    return tree


def moved(name, state):
    """`state` with every array a step changes changed (the step count, params, optimizer
    moments, EMA, BatchNorm statistics): what the checkpoint must bring back from disk. The
    frozen weights are kept, as a step keeps them. No train step is compiled: what is saved
    and restored is what these tests are about (a backbone step compiles in 10-30 s)."""
    frozen = {id(x) for x in jax.tree.leaves(frozen_at(name, state))}

    def shift(x):
        if id(x) in frozen or not hasattr(x, "dtype") or \
                jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return x
        return x + np.asarray(1, x.dtype)

    return jax.tree.map(shift, state)


def trained(name, tmp_path, write_frozen=False):
    """(config, a state unlike init's, `moved`) saved as checkpoint 1 in
    tmp_path/checkpoints; with `write_frozen`, saved whole, as colorjax did before frozen
    weights were left out."""
    config = config_for(name)
    obj = make_objective(config)
    batch = photo_batch(2, SIZE)
    state = moved(name, obj.init(jax.random.key(0), batch, config.num_train_steps))
    assert int(state.step) == 1
    ckpt = TrainCheckpointer(str(tmp_path / "checkpoints"), async_save=False)
    if write_frozen:
        import json

        ckpt._manager.save(1, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave({}),
            config=ocp.args.JsonSave(json.loads(config.to_json_best_effort()))), force=True)
        ckpt._unsealed.append(1)
    else:
        ckpt.save(1, state, {}, config)
    ckpt.close()
    return config, state


def _size_mb(path) -> float:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path)
               for f in fs) / 2 ** 20


def _assert_same(a, b):
    """Same paths and values (the static optimizers of two states never compare equal)."""
    la, lb = (jax.tree_util.tree_flatten_with_path(t)[0] for t in (a, b))
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (path, x), (_, y) in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_checkpoint_leaves_frozen_weights_out_and_restores_bring_them_back(name, tmp_path):
    config, state = trained(name, tmp_path)
    step_dir = tmp_path / "checkpoints" / "1"
    assert not saved_with_frozen(str(step_dir))
    weights_mb = sum(x.nbytes for x in jax.tree.leaves(frozen_at(name, state))) / 2 ** 20
    assert _size_mb(step_dir) < weights_mb / 2, (_size_mb(step_dir), weights_mb)

    # A resume: the live state's frozen weights are put back, the rest comes from disk.
    fresh = make_objective(config).init(jax.random.key(7), photo_batch(2, SIZE),
                                        config.num_train_steps)
    ckpt = TrainCheckpointer(str(tmp_path / "checkpoints"), async_save=False)
    resumed, _ = ckpt.restore(1, fresh)
    ckpt.close()
    _assert_same(resumed, state)

    # restore_run (eval, export): the weights come from the installed package.
    run = restore_run(str(tmp_path), config=config)
    expected = (FusionColorizer.load_pretrained({})["backbone"]["efficientnet"]
                if name == "fusion" else load_backbone(CASES[name][1]))
    _assert_same(frozen_at(name, run.state), expected)
    _assert_same(run.state.params, state.params)


@pytest.mark.slow
def test_checkpoint_written_with_frozen_weights_still_restores(tmp_path):
    config, state = trained("unet", tmp_path, write_frozen=True)
    assert saved_with_frozen(str(tmp_path / "checkpoints" / "1"))
    run = restore_run(str(tmp_path), config=config)
    _assert_same(run.state.params, state.params)
    _assert_same(frozen_at("unet", run.state), frozen_at("unet", state))
