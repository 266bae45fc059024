"""Colour hints at inference: a tiny hint UNet learns to follow hints; an exported hint
model through `Colorizer.colorize(image, hints=...)` and the real `python -m
colorjax.colorize --hints=FILE.json`; the clear errors."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from colorjax import Hint, color
from colorjax.training import export
from colorjax import hints
from colorjax.objectives import make_objective
from conftest import REPO, STEADY_LR, fit_fixed_batch, photo_batch, tiny_config
from test_export import SIZE, TINY, tiny_export, tiny_state, write_checkpoint

_CACHE = {}


def hint_export(root):
    """(export dir, config, objective, state) of a tiny hint UNet (random weights, EMA),
    checkpointed at step 2 and exported once."""
    if "export" not in _CACHE:
        config = tiny_config("unet", **TINY, **{"model.hints": True})
        obj, state = tiny_state(config)
        wd = pathlib.Path(root) / "hint_workdir"
        write_checkpoint(wd, state, config)
        path = export.export_checkpoint(config, str(wd))
        _CACHE["export"] = (pathlib.Path(path), config, obj, state)
    return _CACHE["export"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return hint_export(tmp_path_factory.getbasetemp() / "colorjax_hint_export")


@pytest.fixture(scope="module")
def plain_export(tmp_path_factory):
    return tiny_export(tmp_path_factory.getbasetemp() / "colorjax_export")


def _photo_rgb(w=48, h=40, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.2, 0.8, (h, w, 3)) * 255).astype(np.uint8)


# --- learning ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_tiny_unet_learns_to_follow_hints():
    """Eight copies of one gray crop, each coloured with its own flat colour: only the
    hint (one patch of that colour) tells them apart. After a few dozen steps on this
    batch the prediction next to a hint is that colour, and without hints it is not."""
    n, size = 8, 16
    config = tiny_config("unet", size=size, features=(8, 16), **STEADY_LR,
                         **{"model.hints": True})
    obj = make_objective(config)
    l = jnp.repeat(photo_batch(1, size)["l"], n, axis=0)
    angles = 2 * np.pi * np.arange(n) / n
    colours = 0.4 * np.stack([np.cos(angles), np.sin(angles)], -1).astype(np.float32)
    ab = np.broadcast_to(colours[:, None, None, :], (n, size, size, 2)).copy()
    planes = np.zeros((n, size, size, 3), np.float32)
    rng = np.random.default_rng(0)
    where = []
    for i in range(n):
        y, x = rng.integers(2, size - 4, 2)
        planes[i, y:y + 2, x:x + 2] = (*colours[i], 1.0)
        where.append((y, x))
    batch = {"l": l, "ab": jnp.asarray(ab), "hints": jnp.asarray(planes)}
    state = obj.init(jax.random.key(0), batch, 60)
    state, losses = fit_fixed_batch(obj, state, batch, steps=60)
    assert losses[-1] < 0.5 * losses[0]
    predict = jax.jit(obj.predict)
    with_hints = np.asarray(predict(state, l, jax.random.key(0), hints=batch["hints"]))
    without = np.asarray(predict(state, l, jax.random.key(0)))
    near_with, near_without = [], []
    for i, (y, x) in enumerate(where):
        region = (slice(max(0, y - 2), y + 4), slice(max(0, x - 2), x + 4))
        near_with.append(np.abs(with_hints[i][region] - colours[i]).mean())
        near_without.append(np.abs(without[i][region] - colours[i]).mean())
    # Colours are 0.4 from gray; following the hint brings the prediction much closer.
    assert np.mean(near_with) < 0.5 * np.mean(near_without), (near_with, near_without)
    assert np.mean(near_with) < 0.15


# --- the API ----------------------------------------------------------------------------


def test_colorizer_knows_it_takes_hints(exported, plain_export):
    from colorjax import Colorizer

    c = Colorizer.load(str(exported[0]))
    assert c.uses_hints is True
    assert json.loads((exported[0] / "metadata.json").read_text())["hints"] is True
    assert Colorizer.load(str(plain_export[0])).uses_hints is False


@pytest.mark.slow
def test_colorize_with_hints_predicts_what_the_objective_does(exported):
    from colorjax import Colorizer

    path, config, obj, state = exported
    c = Colorizer.load(str(path))
    rgb = _photo_rgb(SIZE, SIZE)  # at the model's size: the planes are the hints' pixels
    photo_l = color.rgb_to_lab(rgb)[..., 0]
    given = [Hint(3, 5, rgb=(200, 30, 30)), Hint(20.5, 30, ab=(-30.0, 40.0))]
    planes = hints.planes_for_photo(given, photo_l, SIZE)
    assert planes[5, 3, 2] == 1 and planes[30, 20, 2] == 1
    l_norm = color.normalize_l(photo_l)[None, ..., None]
    rng = jax.random.key(0)
    expected = np.asarray(jax.jit(obj.predict)(state, jnp.asarray(l_norm), rng,
                                               hints=jnp.asarray(planes[None])))
    got = c.predict_small([c_photo(rgb)], hints=given)[0][0]
    np.testing.assert_allclose(got, color.denormalize_ab(expected[0]), atol=2e-3)

    out = c.colorize(rgb, hints=given)
    plain = c.colorize(rgb)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert not np.array_equal(out, plain)
    np.testing.assert_array_equal(c.colorize(rgb, hints=[]), plain)  # [] is no hints
    # JSON-format dicts are read too; a list of images shares one list of hints.
    as_json = [{"x": 3, "y": 5, "rgb": "#c81e1e"}, {"x": 20.5, "y": 30, "ab": [-30, 40]}]
    np.testing.assert_array_equal(c.colorize(rgb, hints=as_json), out)
    both = c.colorize([rgb, rgb], hints=given)
    np.testing.assert_array_equal(both[0], out)
    np.testing.assert_array_equal(both[1], out)


def c_photo(rgb):
    from colorjax.media.photos import to_photo
    return to_photo(rgb)


def test_full_resolution_hints_land_where_they_are_in_the_photo(exported):
    from colorjax import Colorizer

    c = Colorizer.load(str(exported[0]))
    big = Image.fromarray(_photo_rgb(4 * SIZE, 2 * SIZE))  # 128 x 64
    out = c.colorize(big, hints=[Hint(127, 63, ab=(60.0, 60.0))])
    assert isinstance(out, Image.Image) and out.size == big.size
    planes = c.hint_planes(c_photo(np.asarray(big)), [Hint(127, 63, ab=(60.0, 60.0))])
    assert planes[SIZE - 1, SIZE - 1, 2] == 1 and planes[..., 2].sum() == 1


def test_clear_errors(exported, plain_export):
    from colorjax import Colorizer

    c = Colorizer.load(str(exported[0]))
    rgb = _photo_rgb()
    with pytest.raises(ValueError, match=r"hint 0 at \(x=48, y=0\) is outside the photo; "
                                         r"allowed: 0 <= x < 48, 0 <= y < 40"):
        c.colorize(rgb, hints=[Hint(48, 0, rgb=(1, 2, 3))])
    with pytest.raises(ValueError, match="ints 0-255"):
        c.colorize(rgb, hints=[Hint(1, 1, rgb=(1, 2, 256))])
    with pytest.raises(ValueError, match=r"hints\[0\]: .*#rrggbb"):
        c.colorize(rgb, hints=[{"x": 1, "y": 1, "rgb": "red"}])
    with pytest.raises(ValueError, match="expected a list of colorjax.Hint"):
        c.colorize(rgb, hints=Hint(1, 1, rgb=(1, 2, 3)))
    plain = Colorizer.load(str(plain_export[0]))
    with pytest.raises(ValueError, match="'unet' was trained without colour hints "
                                         r"\(config.model.hints=False\)"):
        plain.colorize(rgb, hints=[Hint(1, 1, rgb=(1, 2, 3))])
    assert plain.colorize(rgb, hints=[]).shape == rgb.shape


# --- the CLI ----------------------------------------------------------------------------


def _cli(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "colorjax.colorize", *map(str, args)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_with_a_hints_file(exported, plain_export, tmp_path):
    photos = tmp_path / "in"
    photos.mkdir()
    Image.fromarray(_photo_rgb(48, 40)).save(photos / "a.png")
    Image.fromarray(_photo_rgb(20, 12, seed=1)).save(photos / "small.png")
    hint_file = tmp_path / "hints.json"
    hint_file.write_text(json.dumps([{"x": 30, "y": 20, "rgb": [220, 40, 40]},
                                     {"x": 2, "y": 3, "rgb": "#2040e0"},
                                     {"x": 10, "y": 8, "ab": [-40, 30]}]))
    res = _cli(f"--model={exported[0]}", f"--input={photos}", f"--output={tmp_path / 'out'}",
               f"--hints={hint_file}")
    # One photo is too small for a hint: reported and skipped (as unreadable files are).
    assert res.returncode == 0, res.stderr[-3000:]
    assert "skipped" in res.stderr and "small.png: --hints: hint 0 at (x=30, y=20) is " \
        "outside the photo" in res.stderr
    assert "colorized 1 photo(s)" in res.stdout
    hinted = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    res = _cli(f"--model={exported[0]}", f"--input={photos / 'a.png'}",
               f"--output={tmp_path / 'plain'}")
    assert res.returncode == 0, res.stderr[-3000:]
    plain = np.asarray(Image.open(tmp_path / "plain" / "a.png"))
    assert hinted.shape == plain.shape == (40, 48, 3)
    assert not np.array_equal(hinted, plain)
    # The same as the API.
    from colorjax import Colorizer

    api = Colorizer.load(str(exported[0])).colorize(
        _photo_rgb(48, 40), hints=hints.hints_from_json(json.loads(hint_file.read_text())))
    assert np.abs(api.astype(int) - hinted.astype(int)).max() <= 1

    # Hints for a model trained without them: one line, exit 2, nothing written.
    res = _cli(f"--model={plain_export[0]}", f"--input={photos / 'a.png'}",
               f"--output={tmp_path / 'x'}", f"--hints={hint_file}")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr[-3000:]
    assert "--hints=" in lines[0] and "trained without colour hints" in lines[0]
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("content,match", [
    ("[{\"x\": 1, ", "not valid JSON"),
    ("{\"x\": 1}", "hints must be a JSON list"),
    ("[{\"x\": 1, \"y\": 2, \"rgb\": [1, 2, 999]}]", r"hints\[0\]: rgb=\[1, 2, 999\]"),
    (None, "cannot read it"),
    # Hostile files: bounded before parsing (a RecursionError's 25-line traceback before;
    # 19 MB of empty lists cost half a GB), and the number of points.
    ("[" * 100_000, "over 65,536 bytes long"),
    ("[" * 60_000, "nested 60,000 levels deep; at most 8"),
    (json.dumps([{"x": 1, "y": 1, "rgb": "#ffffff"}] * 257), "257 hints; at most 256"),
])
def test_cli_bad_hints_file_is_one_line(content, match, tmp_path):
    photo = tmp_path / "a.png"
    Image.fromarray(_photo_rgb()).save(photo)
    hint_file = tmp_path / "h.json"
    if content is not None:
        hint_file.write_text(content)
    res = _cli("--model=/nonexistent", f"--input={photo}", f"--output={tmp_path / 'o'}",
               f"--hints={hint_file}")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr[-3000:]
    assert lines[0].startswith(f"error: --hints={hint_file}: ")
    assert __import__("re").search(match, lines[0]), lines[0]
