"""Hostile replay (issue 37): a model whose weights are not finite is never presented as
good, and the config mistakes the probe found are one line each.

* `--config.ema_decay=1.5` trained with a normal loss while its EMA copy became NaN; the
  evaluation turned NaN metrics into 0 (a perfect CIEDE2000 of 0.0000), `--mode=export`
  exported it and `colorjax.colorize` wrote black photos with exit status 0. Replayed
  here: the loop stops on the step whose EMA goes non-finite (validation bypassed, since
  it now refuses that decay), and a checkpoint whose EMA weights are NaN is failed by
  `--mode=eval` (its table says nan, never 0), refused by `--mode=export`, and an export
  holding such weights is refused by `colorize` and `Colorizer.load`.
* `eval.batch_size=0`, a photo folder with no photos, a negative, NaN or too large
  `ema_decay`, `optimizer.learning_rate=inf`, a mixture naming one source twice: one
  line naming the field, exit status 2, nothing compiled (`JAX_LOG_COMPILES=1` would
  add lines), no run directory.

Every CLI case runs the real entry point in a subprocess (several at once); the loop case
runs in this process on a tiny UNet. Bounded: a few steps, 16 px images, 4 eval images.
"""

import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from colorjax.inference import artifact
from colorjax.training import export
from colorjax.training.checkpoint import TrainCheckpointer
from conftest import REPO, SMALL_LOOP, STEADY_LR, tiny_config
from test_export import tiny_state, write_checkpoint

UNET = "configs/unet.py:cpu"


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "COLORJAX_DEBUG"}
    return {**env, **extra}


def _start(module, *args, **env):
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _error_line(err: str) -> str:
    """The one line of stderr that says what went wrong (progress bars aside): exactly one
    line starts with "error", and there is no traceback."""
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.lower().startswith(("error", "config"))]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


# --- config mistakes: one line, exit 2, before anything compiles ---------------------------


@pytest.mark.slow  # 7 CLI starts, ~20 s of CPU (wall 45-100 s on the loaded 2-core box)
def test_the_probes_config_mistakes_are_one_line_each(tmp_path):
    empty = tmp_path / "no_photos"
    (empty / "sub").mkdir(parents=True)
    (empty / "README.txt").write_text("photos go here")
    (empty / "sub" / ".hidden.jpg").write_bytes(b"hidden files are not read")
    cases = [  # (override, the field the line names)
        ("eval.batch_size=0", "eval.batch_size"),
        (f"data.folder={empty}", "data.folder"),
        ("ema_decay=-0.5", "ema_decay"),
        ("ema_decay=nan", "ema_decay"),
        ("ema_decay=1.5", "ema_decay"),
        ("optimizer.learning_rate=inf", "optimizer.learning_rate"),
        ("data.mixture=colorjax_demo,colorjax_demo=2", "data.mixture"),
    ]
    runs = [_start("colorjax.main", f"--config={UNET}", f"--workdir={tmp_path / f'run{i}'}",
                   f"--config.{override}", JAX_LOG_COMPILES="1")
            for i, (override, _) in enumerate(cases)]
    for i, ((override, field), proc) in enumerate(zip(cases, runs)):
        code, _, err = _finish(proc)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, (override, err[-3000:])
        assert "Traceback" not in err
        assert lines[0].startswith(f"config error: config.{field}: "), (override, lines[0])
        assert not (tmp_path / f"run{i}").exists(), override


# --- the training loop stops when the EMA weights go non-finite -----------------------------


@pytest.mark.slow  # compiles a train step and an evaluation: ~17 s of CPU (wall 35-70 s)
def test_the_loop_stops_on_the_step_whose_ema_goes_non_finite(tmp_path, monkeypatch):
    """ema_decay = 1e30 (the CLI now refuses it; validated here as 0.5): after one update the
    EMA is about 1e27, after two it overflows, while the loss and gradients stay finite.
    The run must stop at step 2 with the loop's non-finite error, and the only checkpoint
    saved (step 1) must hold finite weights."""
    from colorjax.training import loop as train

    config = tiny_config("unet", **SMALL_LOOP, **STEADY_LR, num_train_steps=4,
                         checkpoint_every=1, log_every=1, eval_every=4, ema_decay=1e30)
    validate = train.validate_config

    def validate_but_the_decay(c, *args, **kwargs):
        c = c.copy_and_resolve_references()
        c.ema_decay = 0.5
        return validate(c, *args, **kwargs)

    monkeypatch.setattr(train, "validate_config", validate_but_the_decay)
    with pytest.raises(train.NonFiniteLossError, match=r"parameters \(EMA included\) became "
                                                       r"NaN/Inf at step 2; stopping"):
        train.train_and_evaluate(config, str(tmp_path))
    ckpt = TrainCheckpointer(str(tmp_path / "checkpoints"))
    try:
        assert ckpt.all_steps() == [1]
        assert ckpt.newest_verified_step() == 1
    finally:
        ckpt.close()
    saved = ocp_tree(tmp_path / "checkpoints" / "1" / "state")
    assert saved and all(np.isfinite(v).all() for v in saved), "a non-finite checkpoint"
    assert not (tmp_path / "eval").exists()  # nothing evaluated, nothing reported as a score


def ocp_tree(path):
    """The floating-point arrays of an orbax checkpoint item, restored as NumPy."""
    import orbax.checkpoint as ocp

    ckptr = ocp.PyTreeCheckpointer()
    try:
        tree = ckptr.restore(str(path))
    finally:
        ckptr.close()
    return [np.asarray(v) for v in jax.tree.leaves(tree)
            if hasattr(v, "dtype") and np.issubdtype(np.asarray(v).dtype, np.floating)]


# --- a checkpoint whose (EMA) weights are NaN: eval fails, export refuses ------------------


def _nan_tree(tree):
    return jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), tree)


@pytest.fixture(scope="module")
def nan_workdir(tmp_path_factory):
    """A workdir whose checkpoint (step 2) has finite params and a NaN EMA copy: what the
    probe's `--config.ema_decay=1.5` run left, as the loop used to save it."""
    config = tiny_config("unet", size=16, ema_decay=0.5, **SMALL_LOOP)
    _, state = tiny_state(config)
    state = state.replace(ema_params=_nan_tree(state.ema_params))
    wd = tmp_path_factory.mktemp("nan_run")
    write_checkpoint(wd, state, config, step=2)
    return wd, config, state


@pytest.mark.slow  # an evaluation compiled in a subprocess: 12-28 s on the loaded 2-core box
def test_eval_of_a_nan_model_fails_and_its_table_says_nan(nan_workdir):
    wd, _, _ = nan_workdir
    code, out, err = _finish(_start("colorjax.main", "--mode=eval", f"--workdir={wd}"))
    assert code not in (0, 2), (code, err[-3000:])  # a failed run, not a usage error
    line = _error_line(err)
    assert line.startswith("error: metrics came out NaN/Inf on validation at step 2 ("), line
    assert "ciede2000" in line and "predictions are not finite" in line
    assert "Warning" not in err  # (a sample grid of NaN pixels warned in its uint8 cast)
    assert not list((wd / "eval").glob("*.png"))  # no sample grid of a model without a score
    table = json.loads((wd / "eval" / "validation_step_2.json").read_text())
    model = table["unet"]
    for metric in ("ciede2000", "lpips", "delta_e76", "loss", "ssim"):
        assert math.isnan(model[metric]), (metric, model[metric])  # never a perfect 0
    assert all(math.isfinite(v) for v in table["gray baseline (ab = 0)"].values())
    md = (wd / "eval" / "validation_step_2.md").read_text()
    row = next(r for r in md.splitlines() if r.startswith("| unet "))
    assert "nan" in row and "0.0000" not in row.split("|")[5], row  # ciede2000's column


def test_export_of_a_nan_checkpoint_is_refused_in_one_line(nan_workdir, tmp_path):
    wd, _, _ = nan_workdir
    target = tmp_path / "export"
    code, _, err = _finish(_start("colorjax.main", "--mode=export", f"--workdir={wd}",
                                  f"--export_dir={target}"))
    assert code not in (0, 2), (code, err[-3000:])
    line = _error_line(err)
    assert line.startswith("error: not exported: the weights of step 2 of "), line
    assert "are not finite (params/" in line and "hold NaN/Inf" in line
    assert "--config.eval.step=<step>" in line
    assert not target.exists() and not list(tmp_path.glob(".export-*"))


# --- an export holding NaN weights: colorize and Colorizer.load refuse it -----------------


@pytest.fixture(scope="module")
def nan_export(nan_workdir, tmp_path_factory):
    """An export of the NaN EMA weights, written as an older colorjax (without the
    finiteness check) would have: write_export's check is bypassed."""
    wd, config, state = nan_workdir
    from colorjax.objectives import make_objective

    variables = make_objective(config).inference_variables(state)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(export, "nonfinite_leaves", lambda tree: [], raising=False)
        path = export.write_export(str(tmp_path_factory.mktemp("nan_export") / "e"), variables,
                                   config, step=2, source=str(wd))
    return pathlib.Path(path), variables


def test_write_export_refuses_non_finite_weights(nan_export, tmp_path):
    _, variables = nan_export
    config = tiny_config("unet", size=16, ema_decay=0.5)
    with pytest.raises(export.ExportError, match=r"^not exported: the weights of step 3 are "
                                                 r"not finite \(params/.* hold NaN/Inf\)"):
        export.write_export(str(tmp_path / "e"), variables, config, step=3)
    assert not (tmp_path / "e").exists()


def test_colorizer_load_refuses_a_nan_export(nan_export):
    from colorjax import Colorizer

    path, _ = nan_export
    with pytest.raises(artifact.ExportError, match=r"its weights are not finite \(params/"):
        Colorizer.load(str(path))


def test_colorize_cli_refuses_a_nan_export_in_one_line(nan_export, tmp_path):
    path, _ = nan_export
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 24, 3), np.uint8)).save(photo)
    out_dir = tmp_path / "out"
    code, _, err = _finish(_start("colorjax.colorize", f"--model={path}", f"--input={photo}",
                                  f"--output={out_dir}"))
    assert code == 2, (code, err[-3000:])
    line = _error_line(err)
    assert line.startswith(f"error: {path}: its weights are not finite (params/"), line
    assert "would colorize every photo black" in line
    assert not out_dir.exists() or not any(out_dir.iterdir())
