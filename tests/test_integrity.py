"""Checkpoints and exports are verified by sha256: damage is one clear error naming the file,
resume falls back to the newest checkpoint that verifies, eval and export read the run's
own config."""

import json
import os
import pathlib
import shutil

import jax
import pytest

from colorjax import artifact, export
from colorjax.checkpoint import DIGESTS, DamagedCheckpointError, TrainCheckpointer
from conftest import tiny_config
from test_export import TINY, tiny_export, tiny_state
from test_train_loop import run_cli


def flip_bytes(path: pathlib.Path, n: int = 4) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for i in range(mid, min(mid + n, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def largest_file(root: pathlib.Path) -> pathlib.Path:
    files = [p for p in root.rglob("*") if p.is_file() and p.name != DIGESTS]
    return max(files, key=lambda p: p.stat().st_size)


@pytest.fixture
def three_checkpoints(tmp_path):
    config = tiny_config("unet", **TINY)
    _, state = tiny_state(config)
    ckpt = TrainCheckpointer(str(tmp_path / "checkpoints"))
    for step in (2, 4, 6):
        ckpt.save(step, state.replace(step=jax.numpy.asarray(step)), {"next_batch": step}, config)
    ckpt.close()
    return tmp_path / "checkpoints", state


def test_every_saved_step_records_the_digests_of_its_files(three_checkpoints):
    root, _ = three_checkpoints
    for step in (2, 4, 6):
        digests = json.loads((root / str(step) / DIGESTS).read_text())
        files = {str(p.relative_to(root / str(step))) for p in (root / str(step)).rglob("*")
                 if p.is_file() and p.name != DIGESTS}
        assert set(digests) == files
        assert len(files) > 3


@pytest.mark.parametrize("damage", ["flip", "delete", "truncate"])
def test_resume_falls_back_to_the_newest_checkpoint_that_verifies(three_checkpoints, damage):
    root, state = three_checkpoints
    victim = largest_file(root / "6")
    if damage == "flip":
        flip_bytes(victim)
    elif damage == "delete":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    ckpt = TrainCheckpointer(str(root))
    assert ckpt.problem(6)
    assert victim.name in ckpt.problem(6)
    assert ckpt.problem(4) is None
    lines = []
    step, restored, data_state = ckpt.restore_newest_good(state, report=lines.append)
    assert (step, data_state["next_batch"], int(restored.step)) == (4, 4, 4)
    assert len(lines) == 1
    assert "step 6 is damaged" in lines[0]
    assert victim.name in lines[0]
    assert "resuming from step 4" in lines[0]
    assert ckpt.all_steps() == [2, 4]
    assert ckpt.newest_verified_step() == 4
    ckpt.close()
    aside = root.parent / "checkpoints.damaged" / "6"
    assert aside.is_dir()
    assert not (root / "6").exists()  # kept, not deleted


def test_every_checkpoint_damaged_is_an_error_and_all_are_kept(three_checkpoints):
    root, state = three_checkpoints
    for step in (2, 4, 6):
        flip_bytes(largest_file(root / str(step)))
    ckpt = TrainCheckpointer(str(root))
    with pytest.raises(DamagedCheckpointError, match="every checkpoint"):
        ckpt.restore_newest_good(state, report=lambda line: None)
    ckpt.close()
    assert sorted(p.name for p in (root.parent / "checkpoints.damaged").iterdir()) == ["2", "4", "6"]


def test_cli_resume_skips_a_damaged_checkpoint(tmp_path):
    wd = tmp_path / "run"
    steps = ["--config.checkpoint_every=2", "--config.eval_every=1000", "--config.log_every=2"]
    run_cli(wd, "--config.num_train_steps=4", *steps)
    flip_bytes(largest_file(wd / "checkpoints" / "4" / "state"))
    out = run_cli(wd, "--config.num_train_steps=6", *steps)
    assert "checkpoint step 4 is damaged" in out.stdout
    assert "resuming from step 2" in out.stdout
    assert "resumed from step 2" in out.stdout
    assert (wd / "checkpoints.damaged" / "4").is_dir()
    assert (wd / "checkpoints" / "6" / DIGESTS).is_file()


# --- exports ---------------------------------------------------------------------------------


@pytest.fixture
def export_copy(tmp_path_factory, tmp_path):
    path = tiny_export(tmp_path_factory.getbasetemp() / "colorjax_export")[0]
    copy = tmp_path / "export"
    shutil.copytree(path, copy)
    return copy


def test_export_records_digests_and_loads(export_copy):
    meta = json.loads((export_copy / "metadata.json").read_text())
    assert "config.json" in meta["sha256"]
    assert any(k.startswith("variables/") for k in meta["sha256"])
    artifact.read_export(str(export_copy))


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_export_is_one_clear_error(export_copy, damage):
    victim = largest_file(export_copy / "variables")
    if damage == "flip":
        flip_bytes(victim)
    elif damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:10])
    else:
        victim.unlink()
    from colorjax import Colorizer
    with pytest.raises(artifact.ExportError, match="damaged export") as err:
        Colorizer.load(str(export_copy))
    message = str(err.value)
    assert victim.name in message
    assert "\n" not in message
    assert "export the run again" in message.lower()


# --- eval and export use the run's config ----------------------------------------------------


def test_export_and_eval_read_the_runs_config(tmp_path):
    wd = tmp_path / "run"
    run_cli(wd, "--config.num_train_steps=2", "--config.eval_every=1000",
            "--config.ema_decay=0.995", "--config.loss=l1")
    import subprocess
    import sys
    from test_train_loop import REPO
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "colorjax.main", "--config=configs/unet.py:cpu",
                               f"--workdir={wd}", *args], cwd=REPO, env=env,
                              capture_output=True, text=True)

    # No training flag repeated: the widths, the size, the EMA and the loss come from the run.
    out = cli("--mode=export")
    assert out.returncode == 0, out.stderr[-3000:]
    saved = json.loads((wd / "export" / "step_2" / "config.json").read_text())
    assert (saved["ema_decay"], saved["loss"], saved["model"]["features"]) == (0.995, "l1", [8, 16])

    out = cli("--mode=export", "--config.loss=mse", "--config.ema_decay=0.995")
    assert out.returncode != 0
    assert "config.loss: the run trained with 'l1'" in out.stderr + out.stdout
    assert "ema_decay" not in (out.stderr + out.stdout).split("config.loss")[1]  # equal: fine

    out = cli("--mode=eval", "--config.eval.num_examples=4", "--config.eval.batch_size=2")
    assert out.returncode == 0, out.stderr[-3000:]
    table = json.loads((wd / "eval" / "validation_step_2.json").read_text())
    assert table["unet"]["num_examples"] == 4


def test_serve_refuses_to_start_on_a_damaged_export(export_copy):
    import subprocess
    import sys
    from test_train_loop import REPO
    flip_bytes(largest_file(export_copy / "variables"))
    out = subprocess.run([sys.executable, "-m", "colorjax.serve", f"--model={export_copy}",
                          "--port=0"], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr[-2000:]
    assert "damaged export" in lines[0], out.stderr[-2000:]


def test_export_of_a_damaged_checkpoint_names_it_and_the_steps_left(three_checkpoints):
    root, _ = three_checkpoints
    flip_bytes(largest_file(root / "6"))
    with pytest.raises(export.ExportError, match=r"checkpoint step 6 .* is damaged: .*"
                                                 r"available: \[2, 4, 6\]"):
        export.export_checkpoint(tiny_config("unet", **TINY), str(root.parent))
    config = tiny_config("unet", **TINY)
    config.eval.step = 4
    assert export.export_checkpoint(config, str(root.parent)).endswith("step_4")
