"""`python -m colorjax.compare` end to end: two tiny runs and a config that fails, then
`--eval_only` on the finished directory; the one-line errors."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import TEST_XLA_FLAGS

# Every test here runs the real CLI end to end (and most share one module-scoped run).
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]

# Overrides both configs/unet.py and configs/resnet.py accept: 32 px, 3 steps, 8 eval images.
SHARED = ["data.image_size=32", "num_train_steps=3", "batch_size=4", "eval.batch_size=4",
          "eval.num_examples=8", "log_every=1", "eval_every=3", "checkpoint_every=3",
          "optimizer.warmup_steps=1"]
MODELS = ["unet_cpu", "resnet_cpu"]


def run_compare(workdir, *args, configs="configs/unet.py:cpu,configs/resnet.py:cpu,"
                                        "configs/nonexistent.py"):
    cmd = [sys.executable, "-m", "colorjax.compare", f"--workdir={workdir}",
           *([f"--configs={configs}"] if configs else []),
           *[f"--set={s}" for s in SHARED], "--num_images=3", "--bootstrap=200", *args]
    env = dict(os.environ, XLA_FLAGS=TEST_XLA_FLAGS)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    wd = tmp_path_factory.mktemp("compare")
    out = run_compare(wd)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return wd, out


def table_rows(md: str, split: str = "validation") -> dict[str, str]:
    """Name -> table line of the rows of `split`'s section of compare.md."""
    rows = {}
    section = md.split(f"## {split}\n", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| model"):
            rows[line.split("|")[1].strip()] = line
    return rows


def test_compare_trains_evaluates_and_reports(compared):
    wd, out = compared
    assert "[1/3] unet_cpu: training ..." in out.stdout
    assert "[2/3] resnet_cpu: training ..." in out.stdout
    for name in MODELS:
        assert (wd / name / "train.log").is_file()
        assert (wd / name / "checkpoints").is_dir()

    rows = table_rows((wd / "compare.md").read_text())
    assert list(rows) == ["gray (ab = 0)", *MODELS, "nonexistent", "truth"]
    assert "not computed" in rows["unet_cpu"]  # FID and IS without --inception_weights
    assert "**" in (wd / "compare.md").read_text()  # the best of each column is bold

    report = json.loads((wd / "compare.json").read_text())
    split = report["splits"]["validation"]
    assert split["num_images"] == 8
    for name in ["gray (ab = 0)", *MODELS]:
        row = split["rows"][name]
        assert row["status"] == "ok"
        for metric in ("ssim", "psnr", "ciede2000", "lpips", "colorfulness"):
            m = row["metrics"][metric]
            assert m["lower"] <= m["mean"] <= m["upper"], (name, metric, m)
            assert np.isfinite(m["mean"])
            assert len(row["per_image"][metric]) == 8
    for name in MODELS:
        row = split["rows"][name]
        assert row["steps"] == 3
        assert row["params"] > 0 and row["images_per_sec"] > 0
        assert row["train_minutes"] > 0 and row["train_minutes_source"] == "subprocess"

    # The nonexistent config is a failed row with its reason; the others have numbers.
    failed = split["rows"]["nonexistent"]
    assert failed["status"] == "failed"
    assert "no config file" in failed["error"] and "configs/nonexistent.py" in failed["error"]
    assert "failed: training failed: config error" in rows["nonexistent"]


def test_compare_grid_and_plots(compared):
    wd, _ = compared
    report = json.loads((wd / "compare.json").read_text())
    grid = report["splits"]["validation"]["grid"]
    assert grid["rows"] == ["gray (ab = 0)", *MODELS, "truth"]
    img = np.asarray(Image.open(wd / "compare_grid.png").convert("RGB"))
    th, tw = grid["tile_px"]
    assert img.shape[0] == (len(MODELS) + 2) * th  # a row of tiles per model, gray, truth
    assert img.shape[1] == grid["label_px"] + 3 * tw  # the label strip and 3 images
    label_strip = img[:, :grid["label_px"]]
    assert (label_strip < 128).any()  # the labels are drawn
    tiles = img[:, grid["label_px"]:].astype(float)
    gray_row, truth_row = tiles[:th], tiles[-th:]
    assert np.abs(gray_row - gray_row.mean(-1, keepdims=True)).max() < 2  # gray is gray
    assert np.abs(truth_row - truth_row.mean(-1, keepdims=True)).max() > 10  # truth has colour
    for metric in ("ciede2000", "lpips", "psnr", "ssim"):
        assert (wd / "plots" / f"{metric}.png").is_file()
        assert f"plots/{metric}.png" in report["plots"]


def test_eval_only_trains_nothing_and_rewrites_the_table(compared):
    wd, _ = compared
    logs = {name: (wd / name / "train.log").read_text() for name in MODELS}
    before = json.loads((wd / "compare.json").read_text())["splits"]["validation"]["rows"]
    (wd / "compare.md").unlink()
    # A split the data lacks fails in its own section; the validation numbers stand.
    out = run_compare(wd, "--eval_only", "--splits=validation,nosuchsplit")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    assert "training ..." not in out.stdout and "--eval_only: no training" in out.stdout
    for name in MODELS:  # no training subprocess ran: the logs are untouched
        assert (wd / name / "train.log").read_text() == logs[name]
    rows = table_rows((wd / "compare.md").read_text())
    assert list(rows) == ["gray (ab = 0)", *MODELS, "nonexistent", "truth"]
    after = json.loads((wd / "compare.json").read_text())["splits"]["validation"]["rows"]
    for name in ["gray (ab = 0)", *MODELS]:
        for metric, m in before[name]["metrics"].items():
            assert after[name]["metrics"][metric]["mean"] == pytest.approx(m["mean"], rel=1e-4,
                                                                            abs=1e-6)
    for name in MODELS:
        assert after[name]["steps"] == 3
        assert after[name]["train_minutes_source"] == "metrics.jsonl"
        assert after[name]["train_minutes"] > 0
    assert after["nonexistent"]["status"] == "failed"
    assert "no checkpoints" in after["nonexistent"]["error"]
    other = table_rows((wd / "compare.md").read_text(), "nosuchsplit")
    assert list(other) == [*MODELS, "nonexistent"]
    for name in MODELS:
        assert "failed: evaluation failed" in other[name] and "nosuchsplit" in other[name]
    report = json.loads((wd / "compare.json").read_text())
    assert report["splits"]["validation"]["grid"]["path"] == "compare_grid.png"
    assert report["models"]["unet_cpu"]["status"] == "ok"


def test_exit_status_is_nonzero_only_when_every_model_fails(tmp_path):
    out = run_compare(tmp_path, configs="configs/nonexistent.py")
    assert out.returncode != 0
    assert "every model failed" in out.stderr
    report = json.loads((tmp_path / "compare.json").read_text())
    assert report["models"]["nonexistent"]["status"] == "failed"


def test_inception_weights_is_one_line_error(tmp_path):
    out = run_compare(tmp_path, "--inception_weights=/nowhere.pth")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert out.stderr.startswith("error: --inception_weights: /nowhere.pth is not a file")
    assert not (tmp_path / "unet_cpu").exists()  # nothing trained


def test_all_lists_every_model_config_at_its_cpu_variant():
    from colorjax.compare.runs import cpu_model_configs, run_name
    from colorjax.presets import available_configs

    specs = cpu_model_configs()
    assert all(s.endswith(".py:cpu") for s in specs)
    names = [run_name(s) for s in specs]
    assert "unet_cpu" in names and "resnet_cpu" in names
    assert "default_cpu" not in names
    assert len(specs) == len(available_configs())  # every model config has a :cpu variant


def test_eval_only_sets_apply_their_runtime_fields_only():
    """`--set` with `--eval_only` changes what the runs are evaluated on (data, eval), never
    the trained model: a model field is left as the run saved it."""
    from colorjax.compare.runs import runtime_overrides
    from colorjax.presets import load_config

    config = load_config("unet", "cpu")
    prepare = runtime_overrides(["data.eval_name=colorjax_demo", "data.eval_folder=",
                                 "eval.num_examples=0", "eval.batch_size=8",
                                 "model.features=(4, 8)", "model.norm=group"])
    out = prepare(config)
    assert out.data.eval_name == "colorjax_demo" and out.data.eval_folder == ""
    assert out.eval.num_examples == 0 and out.eval.batch_size == 8
    assert tuple(out.model.features) == (16, 32, 64, 128) and out.model.norm == "batch"


def test_a_nan_metric_is_a_failed_row_never_a_score():
    """Per-image NaN (a model whose predictions are not finite) stays NaN, and
    evaluate_split fails that model's row instead of reporting 0 (issue 37); PSNR's +inf
    still counts as 100 dB."""
    from colorjax.compare import evaluation, table

    v = evaluation._finite([np.nan, np.inf, 3.0])
    assert np.isnan(v[0]) and list(v[1:]) == [100.0, 3.0]

    class NanModel:  # `Evaluation.predict_split` of a model that predicts NaN
        def predict_split(self, *args):
            n = 3
            per = {"ciede2000": np.array([np.nan, 1.0, np.nan]), "psnr": np.full(n, 30.0)}
            return (np.zeros((n, 8, 8, 1)), np.full((n, 8, 8, 2), np.nan),
                    np.zeros((n, 8, 8, 2)), per)

    with pytest.raises(ValueError, match=r"^its metrics are NaN/Inf on 2 of 3 images "
                                         r"\(ciede2000\): its predictions are not finite"):
        table.evaluate_split(NanModel(), "validation", "unet", None, None, None, {}, {},
                               {}, {})
