"""Hostile replay (issue 37): the command-line tools on odd files and interrupted runs, and
integrity without gaps, each case as a probe found it, through the real entry points
(`python -m colorjax.colorize`, `python -m colorjax.main`) in subprocesses.

- a FIFO named b.jpg (and one named clip.mp4) in the input folder hung colorize forever;
  a dangling symlink broken.jpg was a 19-line traceback with nothing colorized;
- Ctrl-C was a traceback; partial files of a killed run stayed; nothing resumed a run;
- a flipped byte in metadata.json's "image_size" ran the model at 22 px; one in its
  "sha256" key turned the digest check off;
- after a SIGKILL between saves, a flipped byte in the newest checkpoint was restored
  without a word;
- a restore error line carried orbax's '<bound method pybind11_...>'.
"""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import test_export  # the shared tiny export and workdir (tests/ is on sys.path under pytest)
from test_integrity import as_older_checkpoint, flip_bytes, flip_in, largest_file
from test_train_loop import run_cli

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = dict(os.environ, JAX_PLATFORMS="cpu")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return test_export.tiny_export(tmp_path_factory.getbasetemp() / "colorjax_export")[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The tiny workdir `export_dir` comes from: checkpoints/2, as training leaves it."""
    return test_export.tiny_workdir(tmp_path_factory.getbasetemp() / "colorjax_export")[0]


def colorize(*args, timeout=240):
    """`python -m colorjax.colorize ARGS`, run to the end (a hang fails at `timeout`)."""
    return subprocess.run([sys.executable, "-m", "colorjax.colorize", *map(str, args)],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def photo(path: pathlib.Path, w: int = 30, h: int = 24, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.uniform(size=(h, w, 3)) * 255).astype(np.uint8)).save(path)


def visible(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def hidden(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- the CLI on odd files ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("odd", ["fifo", "dangling symlink"])
def test_odd_files_in_the_input_folder_are_reported_and_skipped(export_dir, tmp_path, odd):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    photo(src / "a.jpg")
    photo(src / "c.png", seed=1)
    if odd == "fifo":  # nobody ever writes to them: reading one would block forever
        os.mkfifo(src / "b.jpg")
        os.mkfifo(src / "clip.mp4")
        reasons = {"b.jpg": "a FIFO (named pipe), not a regular file",
                   "clip.mp4": "a FIFO (named pipe), not a regular file"}
    else:
        (src / "broken.jpg").symlink_to(tmp_path / "gone.jpg")
        reasons = {"broken.jpg": f"a symbolic link to '{tmp_path / 'gone.jpg'}', which does "
                                 "not exist"}
    r = colorize(f"--model={export_dir}", f"--input={src}", f"--output={out}", timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    for name, reason in reasons.items():
        assert f"skipped {src / name}: {reason}" in r.stderr, r.stderr[-3000:]
    assert visible(out) == ["a.png", "c.png"]
    assert (f"colorized 2 photo(s) into {out} (2 file(s) written); skipped {len(reasons)} "
            "unreadable file(s)") in r.stdout


@pytest.mark.slow
def test_ctrl_c_then_skip_existing_resumes_without_redoing(export_dir, tmp_path):
    """SIGINT once the first output exists: the summary line, exit 130, no traceback, no
    partial file; a killed run's partial file is removed by the next run, which with
    --skip_existing writes only the missing outputs."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    n = 400  # hard links of one photo: cheap to make, each decoded and written in turn;
    # enough that a test process starved of CPU still sends its SIGINT mid-run
    photo(src / "p000.jpg", 160, 120)
    for i in range(1, n):
        os.link(src / "p000.jpg", src / f"p{i:03d}.jpg")
    proc = subprocess.Popen(
        [sys.executable, "-m", "colorjax.colorize", f"--model={export_dir}", f"--input={src}",
         f"--output={out}", "--batch_size=1"],
        cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline and not (
                out.is_dir() and visible(out)):
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, stderr[-3000:])
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    last = stdout.strip().splitlines()[-1]
    m = re.fullmatch(rf"interrupted: colorized (\d+) photo\(s\) into {re.escape(str(out))} "
                     rf"\((\d+) file\(s\) written\); not colorized: (\d+) photo\(s\) \(rerun "
                     r"with --skip_existing to finish\)", last)
    assert m, last
    done, written, left = map(int, m.groups())
    assert done == written == len(visible(out)) >= 1 and done + left == n
    assert hidden(out) == []  # the file being written when Ctrl-C came is gone
    for name in visible(out):
        with Image.open(out / name) as im:
            im.load()  # whole: written through a partial file and renamed
    first = {name: ((out / name).stat().st_ino, (out / name).stat().st_mtime_ns)
             for name in visible(out)}

    # A run killed outright (SIGKILL) leaves its partial file: the next run removes it.
    with open("/proc/sys/kernel/pid_max") as f:
        dead = int(f.read()) + 1  # a process id no process can have
    (out / f".p149.png.{dead}.tmp").write_bytes(b"half a png")
    r = colorize(f"--model={export_dir}", f"--input={src}", f"--output={out}",
                 "--skip_existing")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (f"removed 1 partial file(s) left by an interrupted run (the first: "
            f"{out / f'.p149.png.{dead}.tmp'})") in r.stdout
    assert (f"colorized {n - done} photo(s) into {out} ({n - done} file(s) written); kept the "
            f"existing outputs of {done} input(s)") in r.stdout
    assert visible(out) == [f"p{i:03d}.png" for i in range(n)]
    assert hidden(out) == []
    for name, stamp in first.items():  # not redone
        assert ((out / name).stat().st_ino, (out / name).stat().st_mtime_ns) == stamp, name


# --- integrity without gaps -------------------------------------------------------------------


@pytest.mark.parametrize("field", ["image_size", "sha256 key"])
def test_a_flipped_byte_in_metadata_json_stops_colorize(export_dir, tmp_path, field):
    copy = tmp_path / "export"
    shutil.copytree(export_dir, copy)
    if field == "image_size":
        flip_in(copy / "metadata.json", b'"image_size": ', len(b'"image_size": '))  # 32 -> 22
    else:
        flip_in(copy / "metadata.json", b'"sha256"', 4)  # "sha256" -> "sha356"
    photo(tmp_path / "one.jpg")
    r = colorize(f"--model={copy}", f"--input={tmp_path / 'one.jpg'}",
                 f"--output={tmp_path / 'out'}")
    assert r.returncode == 2, (r.stdout[-2000:], r.stderr[-2000:])
    assert r.stderr.strip().splitlines() == [
        f"error: {copy} is a damaged export: metadata.json has changed since it was written "
        "(sha256 differs). Export the run again (python -m colorjax.main --config=... "
        "--workdir=W --mode=export) or copy it again from its source"]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_sigkill_between_saves_then_a_flipped_byte_in_the_newest_step_is_caught(tmp_path):
    wd = tmp_path / "run"
    steps = ["--config.checkpoint_every=25", "--config.log_every=1000",
             "--config.eval_every=1000000"]
    proc = run_cli(wd, "--config.num_train_steps=100000", *steps,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    newest = wd / "checkpoints" / "50"
    try:
        deadline = time.monotonic() + 400
        while proc.poll() is None and time.monotonic() < deadline and not newest.is_dir():
            time.sleep(0.005)
        assert proc.poll() is None and newest.is_dir(), "no checkpoint 50 to kill the run at"
        proc.send_signal(signal.SIGKILL)  # between saves: step 50 complete, 75 not begun
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (wd / "checkpoints" / "75").exists()
    assert (newest / "colorjax_sha256.json").is_file()  # sealed with its save
    flip_bytes(largest_file(newest / "state"))

    out = run_cli(wd, "--config.num_train_steps=52", *steps)
    assert "checkpoint step 50 is damaged: state/" in out.stdout, out.stdout[-3000:]
    assert "resuming from step 25, the newest checkpoint that verifies" in out.stdout
    assert (wd / "checkpoints.damaged" / "50").is_dir()


def test_an_unrestorable_checkpoint_is_one_clean_line_from_export(workdir, tmp_path):
    """A checkpoint an older colorjax left without digests, its largest array file cut
    short: --mode=export says so in one line, not orbax's traceback with a method object."""
    wd = tmp_path / "workdir"
    shutil.copytree(workdir, wd, ignore=shutil.ignore_patterns("export"))
    step = wd / "checkpoints" / "2"
    as_older_checkpoint(step)
    data = step / "state" / "ocdbt.process_0" / "d"
    victim = max(data.iterdir(), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    r = subprocess.run([sys.executable, "-m", "colorjax.main", *test_export.TINY_FLAGS,
                        f"--workdir={wd}", "--mode=export"], cwd=REPO, env=ENV,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr[-3000:]
    assert lines[0].startswith(f"error: checkpoint step 2 in {wd / 'checkpoints'} cannot be "
                               "restored (ValueError: OUT_OF_RANGE: "), lines[0]
    assert "bound method" not in lines[0] and "pybind11" not in lines[0]
    assert lines[0].endswith("export another step (--config.eval.step=N; available: [2])")
    assert not (wd / "export").exists()



def test_only_asyncios_closed_loop_callbacks_are_kept_from_the_excepthook(monkeypatch, capsys):
    """What TensorStore prints through sys.excepthook after a failed checkpoint read (a
    completion scheduled on orbax's closed event loop) is dropped; every other exception,
    the same message from elsewhere included, is printed as before."""
    import asyncio

    from colorjax.platform import cli

    monkeypatch.delenv("COLORJAX_DEBUG", raising=False)
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    cli.quiet_closed_loop_callbacks()
    loop = asyncio.new_event_loop()
    loop.close()
    try:
        loop.call_soon_threadsafe(lambda: None)
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    assert capsys.readouterr().err == ""
    try:
        raise RuntimeError("Event loop is closed")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    assert "RuntimeError: Event loop is closed" in capsys.readouterr().err
