"""`--config.init_from=EXPORT`: a run starts from an export's weights (a converted published
model, or any export of the same model), through the real `python -m colorjax.main`; a
classification model keeps the export's output layer while its colour prior is counted from
the new data; wrong exports are one line, exit status 2."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import REPO, TEST_XLA_FLAGS, restore_checkpoint, tiny_config

from colorjax.platform import parallel
from colorjax.training import loop as train
from colorjax.training.export import write_export
from colorjax.objectives import make_objective

SIZE = 32
LOOP = ["--config.data.image_size=32", "--config.batch_size=4", "--config.eval.batch_size=4",
        "--config.eval.num_examples=4", "--config.eval.num_images=4",
        "--config.model.width=4", "--config.num_train_steps=1", "--config.eval_every=1",
        "--config.checkpoint_every=1", "--config.optimizer.warmup_steps=0",
        "--config.optimizer.schedule=constant"]


def fields(model):
    extra = {"classification.prior_images": 8} if model == "eccv16" else {}
    return {"data.image_size": SIZE, "model.width": 4, **extra}


def export_of(root, model, seed=3, **overrides):
    """An export of `model` at test size whose weights are not what a fresh run draws."""
    config = tiny_config(model, size=SIZE, **{**fields(model), **overrides})
    obj = make_objective(config)
    state = jax.jit(obj.init)(jax.random.key(seed, impl="rbg"),
                              {"l": np.zeros((1, SIZE, SIZE, 1), np.float32),
                               "ab": np.zeros((1, SIZE, SIZE, 2), np.float32)})
    v = obj.inference_variables(state)
    return write_export(str(root / f"{model}_export"), v, config, step=7), jax.device_get(v)


def run_main(config, workdir, *extra):
    env = dict(os.environ, XLA_FLAGS=TEST_XLA_FLAGS)
    return subprocess.run([sys.executable, "-m", "colorjax.main", f"--config={config}",
                           f"--workdir={workdir}", *LOOP, *extra], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


def trained_params(model, workdir):
    config = tiny_config(model, size=SIZE, **fields(model))
    obj = make_objective(config)
    state = train.create_state(config, obj, parallel.create_mesh(), 1)
    step, state, _ = restore_checkpoint(workdir, state)
    return step, jax.device_get(state)


@pytest.mark.slow  # two short training runs through the CLI: ~40 s each here
@pytest.mark.parametrize("model", ["eccv16", "siggraph17"])
def test_a_run_starts_from_the_exports_weights(model, tmp_path):
    path, want = export_of(tmp_path, model)
    # A learning rate of ~0: after one step the weights are still the export's.
    prior = ["--config.classification.prior_images=8"] if model == "eccv16" else []
    out = run_main(f"configs/{model}.py:cpu", tmp_path / "run", f"--config.init_from={path}",
                   "--config.optimizer.learning_rate=1e-12", *prior)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"starting from the weights of {path}" in out.stdout
    step, state = trained_params(model, tmp_path / "run")
    assert step == 1
    for got, exp in zip(jax.tree.leaves(state.params), jax.tree.leaves(want["params"])):
        np.testing.assert_allclose(got, exp, atol=1e-6)
    stats = state.model_state["batch_stats"]
    assert jax.tree.structure(stats) == jax.tree.structure(want["batch_stats"])
    if model == "eccv16":  # the prior is this run's data's; the bins are the export's
        bins = state.model_state["colour_bins"]
        np.testing.assert_array_equal(bins["centers"], want["colour_bins"]["centers"])
        assert not np.allclose(bins["weights"], 1.0)  # counted before step 1


@pytest.mark.slow  # three CLI starts, one of them compiling the network: ~35 s here
def test_wrong_exports_are_one_line(tmp_path):
    path, _ = export_of(tmp_path, "siggraph17")
    cases = [
        ("configs/eccv16.py:cpu", [f"--config.init_from={path}"],
         "config.init_from: " + path + " is an export of 'siggraph17'; this run trains "
         "'eccv16'; allowed: an export of 'eccv16'"),
        ("configs/siggraph17.py:cpu", [f"--config.init_from={tmp_path}"],
         "config.init_from: " + str(tmp_path) + " is not a colorjax export"),
        ("configs/siggraph17.py:cpu", [f"--config.init_from={path}", "--config.model.width=8"],
         "config.init_from: " + path + " does not fit this run's model: "),
    ]
    for config, extra, message in cases:
        out = run_main(config, tmp_path / "never", *extra)
        err = out.stderr.strip()
        assert out.returncode == 2 and len(err.splitlines()) == 1, (out.returncode, err[-2000:])
        assert message in err, err
