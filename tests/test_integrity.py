"""Checkpoints and exports are verified by sha256: damage is one clear error naming the file,
resume falls back to the newest checkpoint that verifies, eval and export read the run's
own config."""

import json
import os
import pathlib
import shutil

import jax
import pytest

from colorjax.inference import artifact
from colorjax.training import export
from colorjax.platform import integrity
from colorjax.training.checkpoint import (COMMIT_RECORDS, DIGESTS, DamagedCheckpointError,
                                 TrainCheckpointer)
from conftest import TEST_XLA_FLAGS, tiny_config
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
        # All but orbax's commit records, which it writes after the digests (at the rename).
        files = {str(p.relative_to(root / str(step))) for p in (root / str(step)).rglob("*")
                 if p.is_file() and p.name != DIGESTS
                 and str(p.relative_to(root / str(step))) not in COMMIT_RECORDS}
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_export_and_eval_read_the_runs_config(tmp_path):
    wd = tmp_path / "run"
    run_cli(wd, "--config.num_train_steps=2", "--config.eval_every=1000",
            "--config.ema_decay=0.995", "--config.loss=l1")
    import subprocess
    import sys
    from test_train_loop import REPO
    env = dict(os.environ, XLA_FLAGS=TEST_XLA_FLAGS)

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


# --- no gaps: the newest step, the metadata, the error line (issue 37) ------------------------


def as_older_checkpoint(step_dir: pathlib.Path) -> None:
    """Make `step_dir` look like a checkpoint an older colorjax left without digests (killed
    before they were written): no DIGESTS, no step metadata saying there should be one."""
    (step_dir / DIGESTS).unlink()
    meta = json.loads((step_dir / "_CHECKPOINT_METADATA").read_text())
    meta["custom_metadata"] = {}
    (step_dir / "_CHECKPOINT_METADATA").write_text(json.dumps(meta))


def test_the_newest_step_is_sealed_when_its_save_completes(tmp_path):
    """A process killed between saves (no `wait`, no `close`, no next save) still leaves the
    newest step with its digests: a flipped byte there is caught on resume."""
    config = tiny_config("unet", **TINY)
    _, state = tiny_state(config)
    ckpt = TrainCheckpointer(str(tmp_path / "checkpoints"))
    for step in (2, 4):
        ckpt.save(step, state.replace(step=jax.numpy.asarray(step)), {"next_batch": step}, config)
    ckpt._manager.wait_until_finished()  # the async save is complete; nothing else runs
    assert (tmp_path / "checkpoints" / "4" / DIGESTS).is_file()
    flip_bytes(largest_file(tmp_path / "checkpoints" / "4"))
    lines = []
    resumed = TrainCheckpointer(str(tmp_path / "checkpoints"))
    step, _, data_state = resumed.restore_newest_good(state, report=lines.append)
    resumed.close()
    assert (step, data_state["next_batch"]) == (2, 2)
    assert len(lines) == 1 and "step 4 is damaged" in lines[0] and "resuming from step 2" in lines[0]


def test_a_sealed_step_without_its_digests_is_damaged_an_older_one_is_restored(
        three_checkpoints):
    root, state = three_checkpoints
    (root / "6" / DIGESTS).unlink()  # saved with digests (the step metadata says so)
    ckpt = TrainCheckpointer(str(root))
    assert ckpt.problem(6) == f"{DIGESTS} is missing (it was saved with its digests)"
    as_older_checkpoint(root / "4")
    assert ckpt.problem(4) is None  # an older colorjax's: a restore tells
    lines = []
    step, _, _ = ckpt.restore_newest_good(state, report=lines.append)
    ckpt.close()
    assert step == 4
    assert "step 6 is damaged: colorjax_sha256.json is missing" in lines[0]


def test_an_unrestorable_step_is_one_clean_line(three_checkpoints):
    """orbax wraps TensorStore's error in one that prints a method object
    ('<bound method pybind11_...spec of TensorStore({'): the line names the real error."""
    root, state = three_checkpoints
    as_older_checkpoint(root / "6")
    data = root / "6" / "state" / "ocdbt.process_0" / "d"
    victim = max(data.iterdir(), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    ckpt = TrainCheckpointer(str(root))
    lines = []
    step, _, _ = ckpt.restore_newest_good(state, report=lines.append)
    ckpt.close()
    assert step == 4
    assert len(lines) == 1
    assert "step 6 is damaged: it cannot be restored (ValueError: OUT_OF_RANGE" in lines[0]
    assert "bound method" not in lines[0] and "pybind11" not in lines[0]
    assert "\n" not in lines[0]


def test_error_line_takes_the_innermost_error_without_orbax_noise():
    from colorjax.platform.integrity import error_line

    try:
        try:
            raise ValueError('OUT_OF_RANGE: Error reading "params.w/0.0" in OCDBT database')
        except ValueError as inner:
            raise Exception("Encountered error while reading array index: (slice(0, 3, 1),). "
                            "See full TensorStore details: <bound method pybind11_detail_"
                            "function_record_v1.spec of TensorStore({\n  'base': {") from inner
    except Exception as e:  # noqa: BLE001
        line = error_line(e)
    assert line == 'ValueError: OUT_OF_RANGE: Error reading "params.w/0.0" in OCDBT database'
    assert error_line(RuntimeError("x" * 500)).endswith("...")
    assert len(error_line(RuntimeError("x" * 500))) == 300
    assert error_line(KeyError()) == "KeyError"


# --- exports: metadata.json covered too ------------------------------------------------------


def flip_in(path: pathlib.Path, marker: bytes, offset: int) -> None:
    """Flip the lowest bit of the byte `offset` bytes after `marker` in `path`."""
    data = bytearray(path.read_bytes())
    data[data.index(marker) + offset] ^= 0x01
    path.write_bytes(bytes(data))


def as_version_1(export_dir: pathlib.Path) -> None:
    """Make `export_dir` what the previous colorjax wrote: format version 1, the digests of
    the other files in metadata.json, no digest of metadata.json itself."""
    (export_dir / "metadata.json.sha256").unlink()
    meta = json.loads((export_dir / "metadata.json").read_text())
    meta["format_version"] = 1
    (export_dir / "metadata.json").write_text(json.dumps(meta, indent=2))


def test_metadata_json_has_its_own_digest(export_copy):
    line = (export_copy / "metadata.json.sha256").read_text()
    assert line == f"{integrity.file_sha256(str(export_copy / 'metadata.json'))}  metadata.json\n"
    assert "metadata.json" not in json.loads((export_copy / "metadata.json").read_text())["sha256"]


@pytest.mark.parametrize("damage,problem", [
    # 32 -> 22: before, the model silently ran at 22 px.
    ("image_size", "metadata.json has changed since it was written"),
    # "sha256" -> "sha356": before, the table was missing, so the export passed as old.
    ("table key", "metadata.json has changed since it was written"),
    ("no digest file", "metadata.json.sha256 is missing"),
    ("no table", "the sha256 table is missing from metadata.json (format version 2 records it)"),
    ("version 0", "format_version 0 in metadata.json is no version colorjax writes"),
])
def test_damaged_metadata_is_a_damaged_export(export_copy, damage, problem):
    meta_path = export_copy / "metadata.json"
    if damage == "image_size":
        flip_in(meta_path, b'"image_size": ', len(b'"image_size": '))
        assert json.loads(meta_path.read_text())["image_size"] == 22
    elif damage == "table key":
        flip_in(meta_path, b'"sha256"', 4)
        assert "sha256" not in json.loads(meta_path.read_text())
    elif damage == "no digest file":
        (export_copy / "metadata.json.sha256").unlink()
    else:  # written consistently (digest and all), by a tool that dropped or broke a field
        meta = json.loads(meta_path.read_text())
        if damage == "no table":
            del meta["sha256"]
        else:
            meta["format_version"] = 0
        meta_path.write_text(json.dumps(meta))
        integrity.write_sidecar(str(meta_path))
    with pytest.raises(artifact.ExportError, match="damaged export") as err:
        artifact.read_export(str(export_copy))
    assert problem in str(err.value)
    assert "\n" not in str(err.value)


def test_exports_of_the_previous_version_still_load_and_are_checked(export_copy, tmp_path):
    from colorjax import Colorizer

    as_version_1(export_copy)
    assert Colorizer.load(str(export_copy)).size == 32
    # From before digests were recorded: loads unverified, as before.
    older = tmp_path / "older"
    shutil.copytree(export_copy, older)
    meta = json.loads((older / "metadata.json").read_text())
    del meta["sha256"]
    (older / "metadata.json").write_text(json.dumps(meta))
    Colorizer.load(str(older))

    # Their table still guards the other files...
    flip_bytes(largest_file(export_copy / "variables"))
    with pytest.raises(artifact.ExportError, match="damaged export: variables/"):
        Colorizer.load(str(export_copy))


@pytest.mark.parametrize("damage,problem", [
    ("image_size", "metadata.json's image_size 22 differs from what config.json and the model "
                   "say (32)"),
    ("table key", "the sha256 table is missing from metadata.json (a table of digests sits "
                  "under the key 'sha356')"),
])
def test_version_1_metadata_damage_is_caught_where_it_can_be(export_copy, damage, problem):
    """Without a digest of its own, a version-1 metadata.json is cross-checked: the image size
    against config.json (covered by the table), a table under a damaged key by its shape."""
    as_version_1(export_copy)
    meta_path = export_copy / "metadata.json"
    if damage == "image_size":
        flip_in(meta_path, b'"image_size": ', len(b'"image_size": '))
    else:
        flip_in(meta_path, b'"sha256"', 4)
    with pytest.raises(artifact.ExportError, match="damaged export") as err:
        artifact.read_export(str(export_copy))
    assert problem in str(err.value)
