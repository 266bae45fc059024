"""The VAE through the generic loop: config checks, sharded steps, checkpoint, evaluation.
(The export round trip of `unetvae` is in tests/test_export.py.)"""

import json

import jax
import numpy as np
import pytest

from colorjax.training import loop as train
from colorjax.objectives import make_objective
from conftest import loop_config, restore_checkpoint


def vae_loop_config():
    """The shared `loop_config` of a VAE: 3 steps, logged, evaluated and saved at step 3."""
    return loop_config("unetvae", **{
        "model.encoder_features": (8,), "model.latent_dim": 4, "eval.num_images": 2,
        "num_train_steps": 3, "log_every": 3, "eval_every": 3, "checkpoint_every": 3,
        "vae.kl_warmup_steps": 2})


@pytest.mark.slow
def test_loop_trains_checkpoints_and_evaluates_a_vae(tmp_path):
    config = vae_loop_config()
    state = train.train_and_evaluate(config, str(tmp_path))
    assert int(state.step) == 3
    logged = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    train_rows = [r for r in logged if "recon" in r]
    assert train_rows
    assert {"kl", "mu_sq", "sigma_sq", "beta"} <= set(train_rows[-1])
    assert (tmp_path / "samples" / "step_3.png").is_file()
    report = (tmp_path / "eval" / "validation_step_3.md").read_text()
    assert "unetvae" in report
    assert "gray baseline" in report

    # The checkpoint restores (onto the structure of the state, what a resumed run does);
    # its inference variables are the decoder's.
    obj = make_objective(config)
    _, restored, _ = restore_checkpoint(tmp_path, state, step=3)  # target: structure only
    for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    variables = obj.inference_variables(restored)
    assert set(variables["params"]) == set(restored.params["decoder"])


def test_loop_rejects_a_bad_sample_mode_before_compiling(tmp_path):
    config = vae_loop_config()
    config.vae.sample_mode = "posterior"
    with pytest.raises(ValueError, match=r"config\.vae\.sample_mode.*allowed"):
        train.validate_config(config)
