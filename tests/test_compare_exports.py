"""`python -m colorjax.compare --exports=DIR,...`: exported models (here tiny converted-model
architectures, eccv16 and siggraph17) are rows beside a run, evaluated on the run's images.
An export that cannot be read is a failed row."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, TEST_XLA_FLAGS, tiny_config
from test_export import SIZE, TINY, tiny_state, write_checkpoint
from test_zhang_inference import tiny_zhang_export

SETS = ["--set=eval.num_examples=8", "--set=eval.batch_size=4", "--num_images=4",
        "--bootstrap=20"]


def run_compare(workdir, *flags):
    env = dict(os.environ, XLA_FLAGS=TEST_XLA_FLAGS)
    return subprocess.run([sys.executable, "-m", "colorjax.compare", f"--workdir={workdir}",
                           *SETS, *flags], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)


@pytest.mark.slow  # three models evaluated with LPIPS, FD/KID and SI: ~5 min on the shared
# 2-core build machine
@pytest.mark.slow
def test_exports_are_rows_beside_a_run_on_its_images(tmp_path):
    config = tiny_config("unet", **TINY)
    _, state = tiny_state(config)
    write_checkpoint(tmp_path / "cmp" / "unet_cpu", state, config)  # a finished run
    exports = [tiny_zhang_export(tmp_path, m) for m in ("eccv16", "siggraph17")]
    out = run_compare(tmp_path / "cmp", "--configs=configs/unet.py:cpu", "--eval_only",
                      f"--exports={','.join(exports)},{tmp_path / 'nothing'}")
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    split = next(iter(result["splits"].values()))
    rows = split["rows"]
    assert split["num_images"] == 8 and split["reference_run"] == "unet_cpu"
    for model in ("eccv16", "siggraph17"):
        row = rows[f"{model} (export)"]
        assert row["status"] == "ok", row
        assert row["steps"] == 1 and row["params"] > 0
        assert 0 < row["infer_seconds"] < 60  # 2 eval batches: the second one timed
        assert 0 < row["metrics"]["ciede2000"]["mean"] < 100
        assert result["models"][f"{model} (export)"]["model"] == model
    assert rows["nothing (export)"]["status"] == "failed"
    assert "export not usable" in rows["nothing (export)"]["error"]
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "eccv16 (export)" in table and "siggraph17 (export)" in table
    assert "| infer s/img |" in table and rows["unet_cpu"]["infer_seconds"] > 0


def test_exports_alone_that_cannot_be_read_fail_every_row(tmp_path):
    out = run_compare(tmp_path / "cmp", f"--exports={tmp_path / 'nothing'}")
    assert out.returncode == 1 and "every model failed" in out.stderr
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())["models"]
    assert rows["nothing (export)"]["status"] == "failed"
