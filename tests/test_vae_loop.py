"""The VAE through the generic loop: config checks, sharded steps, checkpoint, evaluation.
(The export round trip of `unetvae` is in tests/test_export.py.)"""

import json

import jax
import numpy as np
import pytest

from colorjax import train
from colorjax.checkpoint import TrainCheckpointer
from colorjax.configs import load_config
from colorjax.objectives import make_objective


def loop_config():
    c = load_config("unetvae", "cpu")
    c.model.features = (8, 16)
    c.model.encoder_features = (8,)
    c.model.latent_dim = 4
    c.data.image_size = 16
    c.batch_size = 4
    c.eval.batch_size = 4
    c.eval.num_examples = 4
    c.eval.num_images = 2
    c.num_train_steps = 3
    c.log_every = 3
    c.eval_every = 3
    c.checkpoint_every = 3
    c.vae.kl_warmup_steps = 2
    return c


def test_loop_trains_checkpoints_and_evaluates_a_vae(tmp_path):
    config = loop_config()
    state = train.train_and_evaluate(config, str(tmp_path))
    assert int(state.step) == 3
    logged = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    train_rows = [r for r in logged if "recon" in r]
    assert train_rows and {"kl", "mu_sq", "sigma_sq", "beta"} <= set(train_rows[-1])
    assert (tmp_path / "samples" / "step_3.png").is_file()
    report = (tmp_path / "eval" / "validation_step_3.md").read_text()
    assert "unetvae" in report and "gray baseline" in report

    # The checkpoint restores (onto the structure of the state, what a resumed run does);
    # its inference variables are the decoder's.
    obj = make_objective(config, 3)
    ckpt = TrainCheckpointer(str(tmp_path / "checkpoints"))
    restored, _ = ckpt.restore(3, state)  # the target gives only structure, shardings
    ckpt.close()
    for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    variables = obj.inference_variables(restored)
    assert set(variables["params"]) == set(restored.params["decoder"])


def test_loop_rejects_a_bad_sample_mode_before_compiling(tmp_path):
    config = loop_config()
    config.vae.sample_mode = "posterior"
    with pytest.raises(ValueError, match=r"config\.vae\.sample_mode.*allowed"):
        train.validate_config(config)
