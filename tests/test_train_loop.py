"""The loop end to end through the CLI: train, resume after SIGKILL, eval, bad configs, NaN."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from colorjax.training import loop as train
from conftest import (CONSTANT_RATE, TEST_XLA_FLAGS, flags_of, loop_config, restore_checkpoint,
                      tiny_config)

REPO = pathlib.Path(__file__).resolve().parents[1]

# A tiny UNet on 32 px demo crops: steps take milliseconds, so tests measure the loop. At a
# constant rate, runs of any length here and in test_integrity.py and
# test_hostile_cli_integrity.py share one compiled step.
TINY = [
    "--config.model.features=(8, 16)", "--config.data.image_size=32",
    "--config.batch_size=4", "--config.eval.batch_size=4", "--config.eval.num_examples=8",
    "--config.eval.num_images=4", *flags_of(CONSTANT_RATE),
]


def run_cli(workdir, *extra, mode="train", check=True, **popen):
    cmd = [sys.executable, "-m", "colorjax.main", "--config=configs/unet.py:cpu",
           f"--workdir={workdir}", f"--mode={mode}", *TINY, *extra]
    env = dict(os.environ, XLA_FLAGS=TEST_XLA_FLAGS)
    if popen:
        return subprocess.Popen(cmd, cwd=REPO, env=env, **popen)
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if check and out.returncode:
        raise AssertionError(f"{cmd} failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
    return out


def final_params(workdir):
    """Parameters of the latest checkpoint, restored in this process."""
    config = tiny_config("unet", size=32)
    import jax
    from colorjax.platform import parallel
    from colorjax.objectives import make_objective
    mesh = parallel.create_mesh()
    obj = make_objective(config)
    state = train.create_state(config, obj, mesh, config.num_train_steps)
    step, state, data_state = restore_checkpoint(workdir, state)
    return step, jax.device_get(state.params), data_state


@pytest.mark.slow
def test_cli_train_then_eval_writes_everything(tmp_path):
    wd = tmp_path / "run"
    out = run_cli(wd, "--config.num_train_steps=6", "--config.log_every=3",
                  "--config.eval_every=6", "--config.checkpoint_every=3")
    assert "gray baseline" in out.stdout
    records = [json.loads(l) for l in open(wd / "metrics.jsonl")]
    train_steps = [r["step"] for r in records if r["split"] == "train"]
    assert train_steps == [3, 6]
    assert any(r["split"] == "eval" and "ciede2000" in r and "lpips" in r
               for r in records), records
    assert any(r["split"] == "eval_gray_baseline" for r in records)
    assert (wd / "samples" / "step_6.png").is_file()
    assert (wd / "eval" / "validation_step_6.md").is_file()
    assert list((wd / "tensorboard").iterdir())
    assert sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit()) == [3, 6]

    out = run_cli(wd, "--config.num_train_steps=6", mode="eval")
    table = json.loads((wd / "eval" / "validation_step_6.json").read_text())
    assert set(table) == {"unet", "gray baseline (ab = 0)"}
    assert 0 < table["unet"]["ssim"] <= 1
    assert table["unet"]["lpips"] >= 0
    assert (wd / "eval" / "validation_step_6.png").is_file()

    # Running the finished command again resumes and has nothing left to do.
    out = run_cli(wd, "--config.num_train_steps=6")
    assert "already at step 6" in out.stdout


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    # Checkpoints every 40 of 400 steps: the kill comes after the first, with hundreds of
    # millisecond steps still to run (every 4 wrote 100 checkpoints a run, most of its time).
    steps = ["--config.num_train_steps=400", "--config.checkpoint_every=40",
             "--config.log_every=50", "--config.eval_every=100000"]
    a, b = tmp_path / "uninterrupted", tmp_path / "killed"
    run_cli(a, *steps)

    proc = run_cli(b, *steps, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = b / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
    assert killed_at < 400

    run_cli(b, *steps)
    step_a, params_a, data_a = final_params(a)
    step_b, params_b, data_b = final_params(b)
    assert step_a == step_b == 400
    assert data_a == data_b
    import jax
    for x, y in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
        np.testing.assert_allclose(x, y, atol=1e-6)


@pytest.mark.parametrize("override,field", [
    ("--config.model.name=transformer", "config.model.name"),
    ("--config.data.image_size=33", "config.data.image_size"),
    ("--config.batch_size=3", "config.batch_size"),
    ("--config.data.name=no_such_dataset", "config.data.name"),
    ("--config.loss=cosine", "config.loss"),
])
def test_bad_config_fails_fast_naming_the_field(tmp_path, override, field):
    config = tiny_config("unet", size=32)
    key, value = override.removeprefix("--config.").split("=")
    target = config
    *parents, leaf = key.split(".")
    for p in parents:
        target = target[p]
    target[leaf] = type(target[leaf])(value) if not isinstance(target[leaf], str) else value
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        train.validate_config(config)


@pytest.mark.slow
def test_nan_loss_stops_with_the_step_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    config = loop_config("unet", size=32, num_train_steps=20, checkpoint_every=2,
                         log_every=100, eval_every=1000)

    real = train.data.create_train_iterator

    class Poisoned:
        """Real batches, but NaN from the 7th on."""
        def __init__(self, it):
            self.it, self.n = it, 0
        def __next__(self):
            batch = next(self.it)
            self.n += 1
            if self.n >= 7:
                batch = {k: np.full_like(v, np.nan) for k, v in batch.items()}
            return batch
        def get_state(self):
            return self.it.get_state()
        def set_state(self, s):
            self.it.set_state(s)

    monkeypatch.setattr(train.data, "create_train_iterator",
                        lambda *a, **k: Poisoned(real(*a, **k)))
    with pytest.raises(train.NonFiniteLossError, match="at step 7") as err:
        train.train_and_evaluate(config, str(tmp_path))
    assert "newest checkpoint that verifies is step 6" in str(err.value)
    ckpts = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert ckpts[-1] == 6


@pytest.mark.slow
def test_compilation_cache_is_used_by_default_and_can_be_disabled(tmp_path):
    cache = tmp_path / "cache"
    env_cache = {"COLORJAX_COMPILATION_CACHE": str(cache)}
    old = {k: os.environ.get(k) for k in env_cache}
    os.environ.update(env_cache)
    try:
        run_cli(tmp_path / "a", "--config.num_train_steps=2", "--config.eval_every=1000",
                "--config.log_every=1")
        assert cache.is_dir(), "nothing was cached"
        assert any(cache.iterdir()), "nothing was cached"
        run_cli(tmp_path / "b", "--config.num_train_steps=2", "--config.eval_every=1000",
                "--config.log_every=1", "--compilation_cache=none")
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
