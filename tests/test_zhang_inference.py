"""Exports of Zhang et al.'s networks go through colorjax's inference paths unchanged:
`python -m colorjax.colorize` (with `--hints=FILE.json` for siggraph17, `--temperature` for
eccv16), the page's server with hints, and the video path; each with the authors'
pre/post-processing (`AuthorsDemoIO`). Tiny widths (4) at 32 px; the equivalence with the
authors' code at the real size is tests/test_zhang_peer.py's."""

import json
import subprocess
import sys
import threading

import jax
import numpy as np
import pytest
from conftest import REPO, tiny_config
from PIL import Image
from skimage import data as skdata

from colorjax import Colorizer, Hint
from colorjax.training.export import write_export
from colorjax.objectives import make_objective
from colorjax.objectives.zhang import AuthorsDemoIO

SIZE = 32


def tiny_zhang_export(root, model):
    """An export of `model` at width 4 and 32 px, random weights (output layer scaled up so
    the colours vary)."""
    config = tiny_config(model, size=SIZE, **{"model.width": 4})
    obj = make_objective(config)
    state = jax.jit(obj.init)(jax.random.key(0, impl="rbg"),
                              {"l": np.zeros((1, SIZE, SIZE, 1), np.float32),
                               "ab": np.zeros((1, SIZE, SIZE, 2), np.float32)})
    v = obj.inference_variables(state)
    head = "model8_6" if model == "eccv16" else "model_out_0"
    v["params"][head]["kernel"] = v["params"][head]["kernel"] * 50.0
    return write_export(str(root / model), v, config, step=1)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("zhang_exports")
    return {m: tiny_zhang_export(root, m) for m in ("eccv16", "siggraph17")}


def photo(w=90, h=60):
    return np.asarray(Image.fromarray(skdata.astronaut()).resize((w, h), Image.BILINEAR))


@pytest.mark.slow
def test_the_colorizer_uses_the_authors_io(exports):
    for model, path in exports.items():
        c = Colorizer.load(path)
        assert isinstance(c.photo_io, AuthorsDemoIO), model
        assert c.uses_hints == (model == "siggraph17")
        assert c.temperature_default == (1.0 if model == "eccv16" else None)


@pytest.mark.slow
def test_cli_colorizes_siggraph17_with_a_hints_file(exports, tmp_path):
    rgb = photo()
    Image.fromarray(rgb).save(tmp_path / "in.png")
    hints = [{"x": 10, "y": 12, "ab": [70.0, -60.0]}, {"x": 70, "y": 40, "rgb": "#20c040"}]
    (tmp_path / "h.json").write_text(json.dumps(hints))
    for flags, out in (([f"--hints={tmp_path / 'h.json'}"], "with"), ([], "without")):
        res = subprocess.run([sys.executable, "-m", "colorjax.colorize",
                              f"--model={exports['siggraph17']}", f"--input={tmp_path / 'in.png'}",
                              f"--output={tmp_path / out}", *flags],
                             cwd=REPO, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
    with_hints = np.asarray(Image.open(next((tmp_path / "with").glob("*.png"))))
    without = np.asarray(Image.open(next((tmp_path / "without").glob("*.png"))))
    c = Colorizer.load(exports["siggraph17"])
    given = [Hint(10, 12, ab=(70.0, -60.0)), Hint(70, 40, rgb=(32, 192, 64))]
    np.testing.assert_array_equal(with_hints, c.colorize(rgb, hints=given))
    np.testing.assert_array_equal(without, c.colorize(rgb))
    assert np.abs(with_hints.astype(int) - without).max() > 0  # the hints reached the network


@pytest.mark.slow
def test_cli_eccv16_takes_a_temperature_and_refuses_hints(exports, tmp_path):
    Image.fromarray(photo()).save(tmp_path / "in.png")
    run = lambda *flags: subprocess.run(
        [sys.executable, "-m", "colorjax.colorize", f"--model={exports['eccv16']}",
         f"--input={tmp_path / 'in.png'}", *flags], cwd=REPO, capture_output=True, text=True,
        timeout=600)
    res = run(f"--output={tmp_path / 'vivid'}", "--temperature=0.38")
    assert res.returncode == 0 and "temperature 0.38" in res.stdout, res.stderr[-2000:]
    (tmp_path / "h.json").write_text('[{"x": 1, "y": 1, "ab": [10, 10]}]')
    res = run(f"--output={tmp_path / 'x'}", f"--hints={tmp_path / 'h.json'}")
    assert res.returncode == 2 and "'eccv16' was trained without colour hints" in res.stderr


@pytest.mark.slow
def test_the_page_sends_hints_to_siggraph17(exports):
    from colorjax.serve import make_server
    from test_serve import decode_data_url, photo_bytes, upload

    srv = make_server(Colorizer.load(exports["siggraph17"]), "127.0.0.1", 0, quiet=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        addr = srv.server_address[:2]
        answers = {}
        for hints in ("[]", json.dumps([{"x": 20, "y": 15, "ab": [80.0, 60.0]}])):
            status, _, body = upload(addr, {"image": photo_bytes(60, 40), "hints": hints})
            assert status == 200, body
            answers[hints] = np.asarray(decode_data_url(json.loads(body)["colors"][0]))
        a, b = answers.values()
        assert a.shape == b.shape == (40, 60, 3) and np.abs(a.astype(int) - b).max() > 0
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.slow
def test_the_video_path_runs_both(exports):
    from colorjax.video import colorize_frames

    frames = [photo(64, 48), photo(64, 48)[:, ::-1].copy()]
    for model, path in exports.items():
        c = Colorizer.load(path)
        hints = [Hint(5, 5, ab=(50.0, 50.0))] if c.uses_hints else None
        out = list(colorize_frames(c, frames, hints=hints))
        assert len(out) == 2, model
        rgb = [f.rgb for f in out]
        assert all(r.shape == (48, 64, 3) for r in rgb), model
