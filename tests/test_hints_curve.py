"""benchmarks/hint_curve.py on a tiny exported hint model: the table, the JSON and the
plot, and a clear refusal for a model without hints."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from test_data_fixtures import make_plain_folder
from test_hints_colorize import hint_export
from test_export import tiny_export


def _curve(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "benchmarks/hint_curve.py", *map(str, args)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_hint_curve_on_a_tiny_export(tmp_path_factory, tmp_path):
    root = tmp_path_factory.getbasetemp()
    path = hint_export(root / "colorjax_hint_export")[0]
    photos = make_plain_folder(tmp_path / "photos", 6)
    out = tmp_path / "curve"
    res = _curve(f"--export={path}", f"--eval_folder={photos}", "--split=train",
                 "--num_examples=5", "--batch_size=4", "--hints=0,2,5", f"--out={out}")
    assert res.returncode == 0, res.stderr[-3000:]
    table = (out / "hint_curve.md").read_text()
    assert "| hints | unet export step 2: CIEDE2000 ↓ | PSNR (dB) ↑ | hints spread alone (no " \
        "network): CIEDE2000 ↓ | PSNR (dB) ↑ |" in table
    assert "| gray (ab = 0) |" in table and "5 images" in table
    result = json.loads((out / "hint_curve.json").read_text())
    rows = result["rows"]
    assert set(rows) == {"0", "2", "5", "gray"}
    assert all(r["num_examples"] == 5 and r["ciede2000"] > 0 for r in rows.values())
    assert rows["0"]["ciede2000"] != rows["5"]["ciede2000"]  # the hints reach the model
    # The spread-alone prior: gray without hints, better with them.
    spread = result["series"]["hints spread alone (no network)"]
    assert spread["0"]["ciede2000"] == rows["gray"]["ciede2000"]
    assert spread["5"]["ciede2000"] < spread["0"]["ciede2000"]
    assert (out / "hint_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Deterministic: the same seed gives the same numbers.
    res = _curve(f"--export={path}", f"--eval_folder={photos}", "--split=train",
                 "--num_examples=5", "--batch_size=4", "--hints=0,2,5", f"--out={out}2")
    assert json.loads((tmp_path / "curve2" / "hint_curve.json").read_text())["rows"] == rows

    # A model without hints as a reference: its automatic score on every row.
    from test_export import tiny_workdir

    wd = tiny_workdir(root / "colorjax_export")[0]
    res = _curve(f"--export={path}", f"--eval_folder={photos}", "--split=train",
                 "--num_examples=5", "--batch_size=4", "--hints=0,5", f"--reference={wd}",
                 f"--out={tmp_path / 'ref'}")
    assert res.returncode == 0, res.stderr[-3000:]
    series = json.loads((tmp_path / "ref" / "hint_curve.json").read_text())["series"]
    assert list(series["workdir (unet step 2, no hints)"]) == ["0"]
    assert "| 5 |" in (tmp_path / "ref" / "hint_curve.md").read_text()

    plain = tiny_export(root / "colorjax_export")[0]
    res = _curve(f"--export={plain}", f"--eval_folder={photos}", "--split=train",
                 f"--out={tmp_path / 'x'}")
    assert res.returncode != 0
    assert "trained without colour hints" in res.stderr.strip().splitlines()[-1]
