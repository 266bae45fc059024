"""What a user sees from the entry points: help that exits 0 and lists the configs, the end
of a training run (what it wrote, the model against gray, the next commands, which work),
eval and export from `--workdir` alone, and progress output as a terminal shows it
(messages above the bar, a labelled bar, one final bar).

Every CLI is driven in a subprocess, as a user runs it; one tiny trained run is shared.
"""

import importlib
import importlib.util
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, TEST_XLA_FLAGS

ENV = dict(os.environ, XLA_FLAGS=TEST_XLA_FLAGS)
STEPS = 4
# The tiny loop of conftest's tiny_config + SMALL_LOOP, on the command line; an evaluation
# mid-run (step 2) so that an [eval] line is printed while the bar is on screen.
TINY = ["--config=configs/unet.py:cpu", "--config.model.features=(8, 16)",
        "--config.data.image_size=16", "--config.batch_size=4", "--config.eval.batch_size=4",
        "--config.eval.num_examples=4", "--config.eval.num_images=2",
        "--config.optimizer.warmup_steps=1", f"--config.num_train_steps={STEPS}",
        "--config.log_every=2", "--config.eval_every=2", "--config.checkpoint_every=2"]
ENTRY_POINTS = ["colorjax.main", "colorjax.compare", "colorjax.colorize", "colorjax.serve",
                "colorjax.data.prepare"] + \
    (["colorjax.convert"] if importlib.util.find_spec("colorjax.convert") else [])
# Which way is better, written out here (not read from colorjax.training.evaluate.METRICS).
HIGHER_BETTER = {"ssim", "psnr", "auc", "auc_rebalanced"}
LOWER_BETTER = {"loss", "delta_e76", "ciede2000", "lpips"}


def run(*args, merged=False, argv=None, timeout=600):
    """`python -m <args>` (or `argv`) from the repository root; `merged`: stderr into
    stdout, as a terminal interleaves them. Read as bytes: text mode would turn a progress
    bar's carriage returns into line breaks."""
    out = subprocess.run(argv or [sys.executable, "-m", *args], cwd=REPO, env=ENV,
                         stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT if merged else subprocess.PIPE,
                         timeout=timeout)
    return subprocess.CompletedProcess(out.args, out.returncode, out.stdout.decode(),
                                       (out.stderr or b"").decode())


def screen(text: str) -> list[str]:
    """The lines a terminal shows for `text`: a carriage return goes back to the start of
    the line, and what follows overwrites what was there."""
    lines = []
    for raw in text.split("\n"):
        shown = ""
        for part in raw.split("\r"):
            shown = part + shown[len(part):]
        lines.append(shown.rstrip())
    return lines


# --- help -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helps():
    """module -> the finished `python -m <module> --help` of every entry point (run
    side by side)."""
    procs = {m: subprocess.Popen([sys.executable, "-m", m, "--help"], cwd=REPO, env=ENV,
                                 text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for m in ENTRY_POINTS}
    return {m: (p.wait(timeout=300), *p.communicate()) for m, p in procs.items()}


@pytest.mark.slow
@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help_of_every_entry_point_exits_0(helps, module):
    rc, out, err = helps[module]
    assert rc == 0, (module, out[-2000:], err[-2000:])
    assert "--" in out and "Traceback" not in err


def _module_doc(name: str) -> str:
    return importlib.import_module(f"colorjax.presets.{name}").__doc__ or ""


def test_main_help_and_list_configs_list_every_config_and_variant_once(helps):
    from colorjax.presets import available_configs, variants

    listed = run("colorjax.main", "--list_configs")
    assert listed.returncode == 0, listed.stderr[-2000:]
    for text in (helps["colorjax.main"][1], listed.stdout):
        lines = text.splitlines()
        for name in available_configs():
            doc = _module_doc(name)
            for variant, what in variants(name).items():
                spec = f"configs/{name}.py" + (f":{variant}" if variant else "")
                mine = [l for l in lines if l.split() and l.split()[0] == spec]
                assert len(mine) == 1, (spec, mine)
                # The line says what it is, from the config file itself.
                words = what if variant else doc.split()[0]
                assert words and words in mine[0], (spec, mine[0])


def test_every_config_declares_the_variants_it_accepts():
    """The listing's variants are the config files' own: each declared one loads, and an
    undeclared one is refused with the declared ones named."""
    from colorjax.presets import available_configs, load_config, variants

    for name in available_configs():
        declared = variants(name)
        assert "" in declared, name
        for variant, what in declared.items():
            assert what, f"configs/{name}.py: variant {variant!r} says nothing about itself"
            load_config(name, variant)
        with pytest.raises(ValueError, match="unknown config variant 'nosuch'") as e:
            load_config(name, "nosuch")
        for variant in declared:
            if variant:
                assert repr(variant) in str(e.value), (name, variant, str(e.value))


def test_training_without_a_config_is_one_line_naming_the_way_to_list_them(tmp_path):
    out = run("colorjax.main", f"--workdir={tmp_path / 'w'}")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0, out.stderr
    assert "--config=configs/" in out.stderr and "--list_configs" in out.stderr


@pytest.mark.parametrize("mode", ["export", "eval"])
def test_export_or_eval_of_a_workdir_without_checkpoints_is_one_line(tmp_path, mode):
    out = run("colorjax.main", f"--workdir={tmp_path / 'nothing'}", f"--mode={mode}")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0, out.stderr
    assert out.stderr.startswith("error: no checkpoints in ") and "train first" in out.stderr


# --- in words, and the clock of a bar ---------------------------------------------------


def test_versus_gray_counts_each_metric_in_its_own_direction():
    from colorjax.training.evaluate import versus_gray, versus_gray_words

    gray = {"loss": 0.03, "ssim": 0.90, "psnr": 24.0, "delta_e76": 19.0, "ciede2000": 12.0,
            "lpips": 0.18, "colorfulness": 0.0, "auc": 0.87}
    model = {"loss": 0.02, "ssim": 0.80, "psnr": 25.0, "delta_e76": 20.0, "ciede2000": 12.05,
             "lpips": 0.10, "colorfulness": 30.0, "auc": 0.86}
    v = versus_gray(model, gray)
    assert v == {"better": ["loss", "psnr", "lpips"], "worse": ["ssim", "delta_e76", "auc"],
                 "same": ["ciede2000"]}  # 12.05 vs 12.0: within 1%; colourfulness: no side
    words = versus_gray_words(model, gray)
    assert words.startswith("better than gray on 3 of 7 metrics (loss, psnr, lpips); "
                            "worse on 3 (ssim, delta_e76, auc); about the same")


def test_the_time_left_starts_after_the_first_step():
    """A first step that takes long (compilation) does not make the time left long."""
    from colorjax.platform import progress

    bar = progress.bar(100, "train", "step", enabled=True)
    try:
        time.sleep(1.0)  # "compiling"
        bar.update(1)
        progress.restart_clock(bar)
        for _ in range(5):
            time.sleep(0.01)
            bar.update(1)
        d = bar.format_dict
        assert d["n"] == 6 and d["initial"] == 1 and d["elapsed"] < 0.5
        rate = d["rate"] or (d["n"] - d["initial"]) / d["elapsed"]
        assert (d["total"] - d["n"]) / rate < 20  # ~1 s left, not ~100 s
    finally:
        bar.close()


# --- one tiny trained run ---------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(workdir, what the terminal showed) of a tiny run trained by the CLI. The workdir
    is `<dir>/unet_cpu`, where `colorjax.compare --eval_only` finds it."""
    wd = tmp_path_factory.mktemp("cli") / "unet_cpu"
    out = run("colorjax.main", f"--workdir={wd}", *TINY, merged=True)
    assert out.returncode == 0, out.stdout[-5000:]
    return wd, out.stdout


def _after(lines: list[str], head: str) -> list[str]:
    return lines[next(i for i, l in enumerate(lines) if l.startswith(head)):]


def _next_commands(text: str) -> dict[str, str]:
    """what -> command of the "next:" lines, without their trailing comments."""
    found = {}
    for line in _after(screen(text), "next:")[1:]:
        if m := re.match(r"  (\w+): +(.*)$", line):
            found[m.group(1)] = m.group(2).split("   #")[0]
    return found


@pytest.mark.slow
def test_the_end_of_a_run_says_what_it_wrote_and_how_it_compares_with_gray(trained):
    wd, text = trained
    lines = _after(screen(text), "done:")
    summary = "\n".join(lines)
    assert f"checkpoint:  step {STEPS} in {wd / 'checkpoints' / str(STEPS)}" in summary
    assert (wd / "checkpoints" / str(STEPS)).is_dir()
    table = wd / "eval" / f"validation_step_{STEPS}.md"
    grid = wd / "samples" / f"step_{STEPS}.png"
    assert f"eval table:  {table}" in summary and table.is_file()
    assert f"sample grid: {grid}" in summary and grid.is_file()

    rows = json.loads(table.with_suffix(".json").read_text())
    model, gray = rows["unet"], rows["gray baseline (ab = 0)"]
    better = sum(1 for k in HIGHER_BETTER | LOWER_BETTER
                 if abs(model[k] - gray[k]) > 0.01 * abs(gray[k])
                 and (model[k] > gray[k]) == (k in HIGHER_BETTER))
    m = re.search(r"against gray \(ab = 0\) on validation \((\d+) images\): better than gray "
                  r"on (\d+) of (\d+) metrics", summary)
    assert m, summary
    assert (int(m.group(1)), int(m.group(2)), int(m.group(3))) == (4, better, 8)


@pytest.mark.slow
def test_the_next_commands_printed_at_the_end_work(trained, tmp_path):
    wd, text = trained
    commands = _next_commands(text)
    assert set(commands) == {"export", "colorize", "serve"}
    export = wd / "export" / f"step_{STEPS}"
    assert commands["export"].split()[1:] == ["-m", "colorjax.main", f"--workdir={wd}",
                                              "--mode=export"]  # no --config needed

    out = run(argv=shlex.split(commands["export"]))
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"exported to {export}" in out.stdout
    assert json.loads((export / "metadata.json").read_text())["step"] == STEPS

    # The colorize command with a photo of ours in place of YOUR_PHOTOS.
    photos = tmp_path / "photos"
    photos.mkdir()
    rgb = np.random.default_rng(0).integers(0, 255, (24, 20, 3), np.uint8)
    Image.fromarray(rgb).save(photos / "a.png")
    argv = shlex.split(commands["colorize"].replace("YOUR_PHOTOS", str(photos)))
    assert f"--model={export}" in argv
    out = run(argv=argv, merged=True)
    assert out.returncode == 0, out.stdout[-3000:]
    assert (wd / "colorized" / "a.png").is_file()
    shown = screen(out.stdout)
    # Its bar is labelled and printed once, finished, before the last line.
    bars = [l for l in shown if l.startswith("colorize:")]
    assert len(bars) == 1 and "1/1" in bars[0], shown
    assert shown[-2].startswith("colorized 1 photo(s) into"), shown

    # The serve command's flags are serve's own.
    from colorjax import serve
    args = serve.parse_args(shlex.split(commands["serve"])[3:])
    assert args.model == str(export)


@pytest.mark.slow
def test_eval_needs_only_the_workdir(trained):
    wd, _ = trained
    out = run("colorjax.main", f"--workdir={wd}", "--mode=eval", "--config.eval.num_images=1")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "against gray (ab = 0) on validation (4 images): better than gray on" in out.stdout
    # A flag that would change the trained model is named, in one line.
    out = run("colorjax.main", f"--workdir={wd}", "--mode=export",
              "--config.model.features=(4, 8)")
    assert out.returncode != 0 and out.stderr.strip().count("\n") == 0, out.stderr
    assert "config.model.features: the run trained with [8, 16]" in out.stderr


@pytest.mark.slow
def test_progress_lines_stay_off_the_bar_and_the_bar_ends_once(trained):
    _, text = trained
    shown = screen(text)
    evals = [l for l in shown if "[eval" in l]
    assert len(evals) == 3, shown  # the gray baseline, step 2, step 4
    for line in evals:
        assert line.startswith("[eval"), f"a message on the bar's line: {line!r}"
    bars = [l for l in shown if f"| {STEPS}/{STEPS} [" in l]  # the finished bar
    assert len(bars) == 1, f"the bar is shown more than once: {bars}"
    assert bars[0].startswith("train: 100%|"), bars  # labelled, and alone on its line
    # The final bar comes before the table and the summary.
    assert shown.index(bars[0]) < next(i for i, l in enumerate(shown) if l.startswith("| |"))
    # After the first step (compilation) the bar's clock restarts: 1 step done, no rate yet.
    assert re.search(rf"train: +\d+%\|[^|]*\| 1/{STEPS} \[00:00<\?, \?step/s", text), text


def test_compare_prints_its_messages_above_one_labelled_bar(tmp_path):
    """Two runs that are not there (`--eval_only`): each is a message and a failed row, the
    bar counts them and ends once, above the tables."""
    out = run("colorjax.compare", "--configs=configs/unet.py:cpu,configs/resnet.py:cpu",
              f"--workdir={tmp_path}", "--eval_only", merged=True)
    assert out.returncode == 1, out.stdout[-5000:]  # every model failed
    shown = screen(out.stdout)
    for i, name in enumerate(["unet_cpu", "resnet_cpu"], 1):
        mine = [l for l in shown if f"{name}:" in l]
        assert len(mine) == 2, shown  # evaluating ..., evaluation failed: ...
        assert all(l.startswith(f"[{i}/2] {name}: ") for l in mine), mine
    bars = [l for l in shown if l.startswith("compare:")]
    assert len(bars) == 1 and "| 2/2 [" in bars[0], bars
    assert shown.index(bars[0]) < next(i for i, l in enumerate(shown) if l.startswith("## "))
