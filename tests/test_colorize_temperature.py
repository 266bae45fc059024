"""The annealed-mean temperature of classification models at colorize time: the API
(`Colorizer.colorize(..., temperature=)`), the CLI (`--temperature`) and the upload server
(form field / query `temperature`); lower T is more vivid, None is the export's default, a
new T does not recompile; other models and bad values are clear errors.

`colorful_export` (a tiny `colorful` export whose output bias favours one saturated bin, so
the mean and the mode differ) is shared with tests/test_serve_browser.py.
"""

import io
import os
import pathlib
import subprocess
import sys
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from colorjax import color
from colorjax.training import export
from colorjax.colorize import main
from colorjax.inference.colorizer import Colorizer
from colorjax.media.photos import to_photo
from colorjax.objectives import make_objective
from colorjax.serve import make_server
from conftest import tiny_config

import test_export  # the shared tiny unet export (tests/ is on sys.path under pytest)
import test_serve  # its multipart/request helpers

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_T = 0.38  # configs/colorful.py's classification.temperature
_CACHE = {}


def colorful_export(root):
    """(export dir, config) of a tiny `colorful` model: a real init whose output head is
    scaled down and whose bias favours one saturated bin (a = 20, b = 40 nearest) by 3
    nats: at T = 1 the mean of ~262 bins (dull), as T -> 0 that bin (vivid)."""
    if "export" not in _CACHE:
        from colorjax.objectives.classification import BINS, OUTPUT_HEAD

        config = tiny_config("colorful", size=16, features=(8, 16))
        obj = make_objective(config)
        batch = {"l": jnp.zeros((1, 16, 16, 1)), "ab": jnp.zeros((1, 16, 16, 2))}
        state = obj.init(jax.random.key(0), batch)
        centers = np.asarray(state.model_state[BINS]["centers"])
        favourite = int(np.argmin(((centers - [20.0, 40.0]) ** 2).sum(-1)))
        bias = np.zeros(len(centers), np.float32)
        bias[favourite] = 3.0

        def shape_head(params):
            head = params[OUTPUT_HEAD]["Conv_0"]
            conv = {**head, "kernel": head["kernel"] * 0.1, "bias": jnp.asarray(bias)}
            return {**params, OUTPUT_HEAD: {**params[OUTPUT_HEAD], "Conv_0": conv}}

        state = state.replace(params=shape_head(state.params),
                              ema_params=None if state.ema_params is None
                              else shape_head(state.ema_params))
        path = export.write_export(str(pathlib.Path(root) / "colorful_export"),
                                   obj.inference_variables(state), config, step=3)
        _CACHE["export"] = (pathlib.Path(path), config)
    return _CACHE["export"]


@pytest.fixture(scope="module")
def colorful(tmp_path_factory):
    path = colorful_export(tmp_path_factory.getbasetemp() / "colorjax_colorful")[0]
    return Colorizer.load(str(path), batch_size=2)


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    path = test_export.tiny_export(tmp_path_factory.getbasetemp() / "colorjax_export")[0]
    return Colorizer.load(str(path))


def astronaut(w=40, h=30):
    return np.asarray(Image.fromarray(skdata.astronaut()).resize((w, h), Image.BILINEAR))


def chroma(rgb8) -> float:
    """Mean CIELAB chroma |ab| of an sRGB uint8 image."""
    ab = color.rgb_to_lab(rgb8.astype(np.float32) / 255.0)[..., 1:]
    return float(np.linalg.norm(ab, axis=-1).mean())


# --- the API ----------------------------------------------------------------------------


@pytest.mark.slow
def test_lower_temperature_is_more_vivid_and_none_is_the_default(colorful):
    assert colorful.family == "classification"
    assert colorful.temperature_default == pytest.approx(DEFAULT_T)
    rgb = astronaut()
    hot, cold = colorful.colorize(rgb, temperature=1.0), colorful.colorize(rgb, temperature=0.1)
    assert hot.shape == cold.shape == (30, 40, 3)
    assert np.abs(hot.astype(int) - cold.astype(int)).max() > 10
    assert chroma(cold) > chroma(hot) + 5, (chroma(cold), chroma(hot))
    # The predicted ab itself (before sRGB clipping): chroma falls as T rises.
    p = to_photo(rgb)
    ab = {t: colorful.predict_small([p], temperature=t)[0][0] for t in (0.1, 0.38, 1.0)}
    c = {t: float(np.linalg.norm(v, axis=-1).mean()) for t, v in ab.items()}
    assert c[0.1] > c[0.38] > c[1.0], c

    default = colorful.colorize(rgb)
    np.testing.assert_array_equal(colorful.colorize(rgb, temperature=DEFAULT_T), default)
    assert not np.array_equal(default, hot)
    assert not np.array_equal(default, cold)
    # Lists, PIL images and numeric strings take it too.
    pil = colorful.colorize(Image.fromarray(rgb), temperature="0.1")
    np.testing.assert_array_equal(np.asarray(pil), cold)
    np.testing.assert_array_equal(colorful.colorize([rgb], temperature=np.float32(0.1))[0], cold)


def test_a_new_temperature_does_not_recompile(colorful):
    rgb = astronaut(20, 20)
    colorful.colorize(rgb, temperature=0.5)
    size = colorful._predict._cache_size()
    outs = [colorful.colorize(rgb, temperature=t) for t in (0.2, 0.31, 0.77)]
    assert colorful._predict._cache_size() == size
    assert not np.array_equal(outs[0], outs[2])


@pytest.mark.parametrize("bad", [0, -0.5, "warm", float("nan"), float("inf"), True, [0.2]])
def test_bad_temperatures_are_a_clear_error(colorful, bad):
    with pytest.raises(ValueError, match=r"temperature=.* is not allowed; allowed: .*\(0, ∞\)"):
        colorful.colorize(astronaut(8, 8), temperature=bad)


def test_temperature_on_another_model_is_a_clear_error(unet):
    assert unet.temperature_default is None
    with pytest.raises(ValueError, match=r"'unet' is a regression model; temperature applies "
                                         r"to classification models \('colorful', 'eccv16'\) only"):
        unet.colorize(astronaut(8, 8), temperature=0.5)
    with pytest.raises(ValueError, match="classification models"):
        unet.predict_ab(np.zeros((1, 32, 32, 1), np.float32), temperature=0.5)
    assert unet.colorize(astronaut(8, 8)).shape == (8, 8, 3)  # None: as before


# --- the CLI ----------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_temperature_matches_the_api(colorful, tmp_path):
    """The real command line in a subprocess: its output at --temperature=0.2 is the API's
    colorization at 0.2 (and not the default's)."""
    rgb = astronaut(37, 23)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    proc = subprocess.run(
        [sys.executable, "-m", "colorjax.colorize", f"--model={colorful_export(None)[0]}",
         f"--input={tmp_path / 'photo.png'}", f"--output={tmp_path / 'out'}",
         "--temperature=0.2"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
        env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 0, proc.stderr
    assert "temperature 0.2" in proc.stdout
    got = np.asarray(Image.open(tmp_path / "out" / "photo.png")).astype(int)
    want = colorful.colorize(rgb, temperature=0.2).astype(int)
    default = colorful.colorize(rgb).astype(int)
    assert np.abs(got - want).max() <= 1
    assert np.abs(got - default).max() > 1


def test_cli_bad_temperature_and_other_models_are_one_line_errors(colorful, unet, tmp_path,
                                                                  capsys):
    Image.fromarray(astronaut(9, 7)).save(tmp_path / "p.png")
    io_args = [f"--input={tmp_path / 'p.png'}", f"--output={tmp_path / 'o'}"]
    for bad in ("0", "-1", "hot", "nan"):
        assert main([f"--model={colorful_export(None)[0]}", *io_args,
                     f"--temperature={bad}"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: --temperature="), err
        assert "(0, ∞)" in err
    assert main([f"--model={test_export.tiny_export(None)[0]}", *io_args,
                 "--temperature=0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "'unet'" in err and "classification models ('colorful', 'eccv16') only" in err
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")
    # The help says what it is.
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--temperature" in capsys.readouterr().out


# --- the server -------------------------------------------------------------------------


def _serving(colorizer):
    srv = make_server(colorizer, "127.0.0.1", 0, quiet=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _post(addr, fields, query=""):
    ctype, body = test_serve.multipart(fields)
    return test_serve.request(addr, "POST", "/api/colorize" + query, body,
                              {"Content-Type": ctype})


def test_server_takes_a_temperature_for_a_classification_model(colorful, unet):
    import json

    img = test_serve.photo_bytes(40, 30, "PNG")
    srv = _serving(colorful)
    try:
        addr = srv.server_address[:2]
        status, _, body = test_serve.request(addr, "GET", "/api/info")
        info = json.loads(body)
        assert info["temperature"] == pytest.approx(DEFAULT_T)
        assert info["family"] == "classification"
        page = test_serve.request(addr, "GET", "/")[2].decode()
        assert 'id="temperature"' in page and "low = vivid, 1 = the mean" in page

        status, _, body = _post(addr, {"image": img, "temperature": "0.2"})
        assert status == 200, body
        out = json.loads(body)
        assert out["temperature"] == pytest.approx(0.2)
        status, _, body = _post(addr, {"image": img})
        assert status == 200 and json.loads(body)["temperature"] == pytest.approx(DEFAULT_T)

        # The PNG answers: the server's colorization at T is the API's at T.
        pngs = {}
        for t in ("0.1", "1"):
            status, ctype, pngs[t] = _post(addr, {"image": img, "temperature": t},
                                           "?format=png")
            assert status == 200 and ctype == "image/png"
        photo = np.asarray(Image.open(io.BytesIO(img)))
        for t, png in pngs.items():
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))),
                                          colorful.colorize(photo, temperature=float(t)))
        assert pngs["0.1"] != pngs["1"]
        status, _, png = test_serve.request(addr, "POST", "/api/colorize?format=png&"
                                            "temperature=0.1", img)
        assert status == 200 and png == pngs["0.1"]

        for bad in ("0", "-2", "warm", "inf"):
            status, _, body = _post(addr, {"image": img, "temperature": bad})
            assert status == 400, (bad, body)
            assert "temperature=" in json.loads(body)["error"]
            assert "(0, ∞)" in json.loads(body)["error"]
    finally:
        srv.shutdown()
        srv.server_close()

    srv = _serving(unet)
    try:
        addr = srv.server_address[:2]
        assert json.loads(test_serve.request(addr, "GET", "/api/info")[2])["temperature"] is None
        status, _, body = _post(addr, {"image": img, "temperature": "0.5"})
        assert status == 400
        assert "classification models ('colorful', 'eccv16') only" in json.loads(body)["error"]
        assert _post(addr, {"image": img})[0] == 200
    finally:
        srv.shutdown()
        srv.server_close()
