"""Converted DDColor and DeOldify exports work with everything colorjax offers (issue 41),
through the real entry points: the upload server colorizes a photo as `Colorizer.colorize`
does (for DeOldify: its own `ColorizerFilter` pipeline, not L + ab) and a clip with the
temporal stabiliser; the video library stabilises their frames; `python -m colorjax.compare
--exports=...` gives their rows; `python -m colorjax.main --config.init_from=EXPORT`
fine-tunes DDColor-T and DeOldify (its video weights: the stable release's network, so one
conversion serves both), whose run then exports and colorizes.

The exports are converted by `python -m colorjax.convert` from random weights
(tests/published_exports.py; conftest.py's session fixtures, built once per session). That
the converted networks colorize as the authors' code is tests/test_*_peer.py's."""

import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import REPO, xla_flags_for_tests
from PIL import Image
from skimage import data as skdata

from colorjax import color
from colorjax.inference.artifact import read_export
from colorjax.inference.colorizer import Colorizer
from colorjax.media import video_io
from colorjax.metrics import flicker as flicker_lib
from colorjax.media.photo_io import PhotoIO
from colorjax.media.photos import (lab_to_rgb_striped, photo_from_array, resize_ab,
                                   to_photo, to_uint8)
from colorjax.serve import make_server
from colorjax.video import colorize_frames

from test_serve_video import frames as clip_frames
from test_video import clip as moving_clip

# Each needs an export of a 55 M or 218 M-parameter network (the session's fixtures: ~60 s),
# the fine-tuning runs train one step through the CLI (~2 and ~4 min here).
pytestmark = pytest.mark.slow

# Working sizes for the tests (multiples of DDColor's 32 and DeOldify's 16): small, fast.
SIZES = {"ddcolor": 64, "deoldify": 32}
EXPORTS = {"ddcolor": "ddcolor_tiny_export", "deoldify": "deoldify_video_export"}


@pytest.fixture(scope="module")
def colorizers(request):
    """{"ddcolor": DDColor-T, "deoldify": DeOldify's video weights}, loaded once. One
    photo a call: a photo, a clip's frames and the video library share one compilation."""
    return {m: Colorizer.load(request.getfixturevalue(f), size=SIZES[m], batch_size=1)
            for m, f in EXPORTS.items()}


def photo_png(w=77, h=53) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(skdata.coffee()).resize((w, h), Image.BILINEAR).save(buf, "PNG")
    return buf.getvalue()


def post(addr, path, body: bytes, ctype: str):
    conn = http.client.HTTPConnection(*addr, timeout=300)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": ctype})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("model", ["ddcolor", "deoldify"])
def test_the_server_colorizes_photos_and_clips(model, colorizers, tmp_path):
    colorizer = colorizers[model]
    srv = make_server(colorizer, "127.0.0.1", 0, quiet=True, timeout=30.0,
                      tmp_dir=str(tmp_path))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    addr = srv.server_address[:2]
    try:
        conn = http.client.HTTPConnection(*addr, timeout=60)
        conn.request("GET", "/api/info")
        assert json.loads(conn.getresponse().read())["model"] == model
        conn.close()
        # A photo: the answer is Colorizer.colorize's, pixel for pixel.
        data = photo_png()
        status, _, body = post(addr, "/api/colorize?format=png", data, "image/png")
        assert status == 200, body[:300]
        served = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
        rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        np.testing.assert_array_equal(served, colorizer.colorize(rgb))
        ab = color.rgb_to_lab(served / 255.0)[..., 1:]
        assert np.hypot(ab[..., 0], ab[..., 1]).mean() > 3  # coloured, not the gray back
        if model == "deoldify":  # its own pipeline (YUV), not colorjax's L + ab
            photo = to_photo(rgb)
            lab_way = to_uint8(PhotoIO.finish(PhotoIO(), colorizer, photo,
                                              colorizer.predict_small([photo])[0][0]))
            assert np.abs(lab_way.astype(int) - served).mean() > 0.5

        # A clip: every frame back, stabilised (the default) or not.
        clip = tmp_path / "clip.mp4"
        video_io.write_video(str(clip), clip_frames(), fps=24, audio_seconds=0.3)
        outs = {}
        for stabilize in ("1", "0"):
            status, headers, body = post(addr, f"/api/colorize_video?stabilize={stabilize}",
                                         clip.read_bytes(), "video/mp4")
            assert status == 200, body[:300]
            assert headers["X-Colorjax-Stabilized"] == stabilize
            assert headers["X-Colorjax-Frames"] == str(len(clip_frames()))
            (tmp_path / "out.mp4").write_bytes(body)
            outs[stabilize] = video_io.read_video(str(tmp_path / "out.mp4"))[0]
            assert outs[stabilize].shape == clip_frames().shape
        assert not np.array_equal(outs["1"], outs["0"])  # the stabiliser changed frames
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("model", ["ddcolor", "deoldify"])
def test_video_frames_are_stabilised_on_the_models_ab(model, colorizers):
    """colorjax's video path (the page's and the colorize CLI's): each frame's ab from the
    model at the working size, the stabiliser along optical flow, the frame's own L."""
    frames, flows = moving_clip(frames=9, grain=6.0)  # a pan, a zoom, a cut, a pan
    truth = [color.rgb_to_lab(f / 255.0) for f in frames]
    out = {}
    for stabilize in (True, False):
        out[stabilize] = list(colorize_frames(colorizers[model], frames, stabilize=stabilize))
        assert len(out[stabilize]) == len(frames)
        for f, t, o in zip(frames, truth, out[stabilize]):
            assert np.isfinite(o.ab).all() and o.rgb.shape == f.shape
            # The frame's own full-resolution L with the (stabilised) ab, brought to its size.
            want = lab_to_rgb_striped(photo_from_array(f).l,
                                      resize_ab(o.ab, f.shape[1], f.shape[0]))
            np.testing.assert_array_equal(o.rgb, to_uint8(want))
    # The stabiliser restarts where the clip cuts and carries colour along the motion
    # elsewhere: the ab flickers less than the model's own, frame by frame.
    assert [o.cut for o in out[True]] == [f is None for f in flows]
    steady, raw = (flicker_lib.flicker([o.ab for o in out[s]], truth, flows)
                   for s in (True, False))
    assert 0 <= steady < raw, (steady, raw)


def run(module, *args, timeout=900):
    # XLA's default -O2, not the tests' -O0: these networks have 55-218 M weights, and
    # unoptimised elementwise code (Adam's update of each) costs more than -O0 saves in
    # compiling (the DeOldify fine-tune alone: 101 s at -O0, 91 s at -O2).
    env = dict(os.environ, XLA_FLAGS=xla_flags_for_tests(2, optimized=True))
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_compare_gives_their_rows(ddcolor_tiny_export, deoldify_video_export, tmp_path):
    out = run("colorjax.compare", f"--workdir={tmp_path / 'cmp'}",
              f"--exports={ddcolor_tiny_export},{deoldify_video_export}",
              "--set=data.image_size=32", "--set=eval.num_examples=4",
              "--set=eval.batch_size=2", "--num_images=2", "--bootstrap=10")
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    rows = next(iter(result["splits"].values()))["rows"]
    for name, model in (("ddcolor_tiny (export)", "ddcolor"),
                        ("deoldify_video (export)", "deoldify")):
        row = rows[name]
        assert row["status"] == "ok", row
        assert result["models"][name]["model"] == model
        assert row["params"] > 50e6
        metrics = {k: v["mean"] for k, v in row["metrics"].items()
                   if isinstance(v, dict) and "mean" in v}
        assert {"ciede2000", "lpips", "psnr", "ssim"} <= metrics.keys()
        assert all(np.isfinite(v) for v in metrics.values()), metrics
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "ddcolor_tiny (export)" in table and "deoldify_video (export)" in table


LR = 1e-5  # the :cpu configs' fine-tuning rate, given here too
FINE_TUNE = ["--config.data.image_size=32", "--config.batch_size=2",
             "--config.eval.batch_size=2", "--config.eval.num_examples=2",
             "--config.eval.num_images=2", "--config.num_train_steps=1",
             "--config.eval_every=1", "--config.checkpoint_every=1",
             "--config.optimizer.warmup_steps=0", "--config.optimizer.schedule=constant",
             f"--config.optimizer.learning_rate={LR}"]


# The papers' loss terms each preset trains with (config.loss_terms) and their weights:
# DDColor's train_ddcolor.yml (pixel, perceptual, colourfulness, GAN), DeOldify's FeatureLoss.
TERMS = {"ddcolor": {"loss_pixel": 11.0, "loss_perceptual": 5.0, "loss_colorfulness": 2.0,
                     "loss_gan": 1.0},
         "deoldify": {"loss_pixel": 1.0, "loss_perceptual": 1.0}}


# DeOldify fine-tunes its deep generator (ResNet-34, the artistic release): the same
# network code, objective and CLI as the wide one (ResNet-101) that configs/deoldify.py:cpu
# trains, which the other tests here run converted (colorize, compare, serve, video) and
# tests/test_deoldify_peer.py checks against the authors' code. Its fine-tune took 116 s
# and 11 GB here against 70 s and 5 GB (docs/benchmarks.md, "2026-12-07, night").
@pytest.mark.parametrize("export, config", [("ddcolor_tiny_export", "configs/ddcolor.py:cpu"),
                                            ("deoldify_artistic_export",
                                             "configs/deoldify.py:artistic_cpu")])
def test_fine_tuning_starts_from_the_export_then_exports_and_colorizes(export, config,
                                                                        request, tmp_path):
    """A fine-tune from a converted export with the paper's losses (every term logged,
    finite, summing to the loss), then its export colorizes."""
    path = request.getfixturevalue(export)
    model = config.split("/")[1].split(".")[0]
    work, tuned = tmp_path / "run", tmp_path / "tuned"
    small_disc = ["--config.loss_terms.disc_features=8"] if "loss_gan" in TERMS[model] else []
    out = run("colorjax.main", f"--config={config}", f"--workdir={work}",
              f"--config.init_from={path}", *FINE_TUNE, *small_disc)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"starting from the weights of {path}" in out.stdout
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == [1] and np.isfinite(train[0]["loss"])
    row, weights = train[0], TERMS[model]
    for key in weights:
        assert np.isfinite(row[key]), (key, row)
    assert ("d_loss" in row) == ("loss_gan" in weights)
    assert ("loss_colorfulness" in row) == ("loss_colorfulness" in weights)
    np.testing.assert_allclose(row["loss"], sum(w * row[k] for k, w in weights.items()),
                               rtol=1e-4)
    out = run("colorjax.main", f"--workdir={work}", "--mode=export", f"--export_dir={tuned}")
    assert out.returncode == 0, out.stderr[-3000:]
    shutil.rmtree(work)  # its checkpoint (with Adam's state: 0.5 GB for DeOldify) is done

    # The run started from the export's weights: one Adam step moves a weight by at most
    # about the learning rate (|g| / (|g| + eps), plus decay), a random start by far more.
    _, _, _, before = read_export(path)
    _, meta, _, after = read_export(str(tuned))
    assert meta["step"] == 1
    import jax

    moved = [float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in
             zip(jax.tree.leaves(after["params"]), jax.tree.leaves(before["params"]))]
    assert len(moved) == len(jax.tree.leaves(before["params"]))
    assert 0 < max(moved) <= 1.5 * LR, max(moved)
    del before, after

    # The fine-tuned export colorizes (the colorize CLI, at its 32 px working size).
    Image.fromarray(skdata.coffee()).resize((75, 50)).save(tmp_path / "photo.png")
    out = run("colorjax.colorize", f"--model={tuned}", f"--input={tmp_path / 'photo.png'}",
              f"--output={tmp_path / 'out'}")
    assert out.returncode == 0, out.stderr[-3000:]
    rgb = np.asarray(Image.open(tmp_path / "out" / "photo.png"))
    assert rgb.shape == (50, 75, 3)
    shutil.rmtree(tuned)  # 225 MB for DeOldify
