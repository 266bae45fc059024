"""The README's recipe shape through the real CLI: a UNet with the frozen EfficientNet-Lite0
encoder, trained on a weighted mixture of two photo folders, resumed, evaluated and
exported; its checkpoints hold no backbone weights and its export does."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import CONSTANT_RATE, flags_of
from PIL import Image
from skimage import data as skdata

REPO = pathlib.Path(__file__).resolve().parents[1]
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def photo_folder(root, names, n):
    """`n` 48x56 crops of each of scikit-image's colour photos `names`, as JPEGs."""
    root.mkdir(parents=True)
    for name in names:
        img = getattr(skdata, name)()
        for i in range(n):
            y, x = 17 * i, 23 * i
            Image.fromarray(img[y:y + 48 * 4:4, x:x + 56 * 4:4]).save(root / f"{name}_{i}.jpg")
    return root


def run_cli(workdir, *extra, ok=True):
    cmd = [sys.executable, "-m", "colorjax.main", "--config=configs/unet.py:cpu_backbone",
           f"--workdir={workdir}", "--config.model.features=(8, 16)",
           "--config.model.backbone_width=8", "--config.data.image_size=32",
           "--config.batch_size=4", "--config.eval.batch_size=4",
           "--config.eval.num_examples=4", "--config.eval.num_images=2",
           *flags_of(CONSTANT_RATE),  # the resumed run reuses the first run's compiled step
           *extra]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert (out.returncode == 0) == ok, f"{cmd}\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return out


def _model_state_paths(step_dir):
    """Names of the arrays saved under model_state in an orbax step directory."""
    meta = json.loads((step_dir / "state" / "_METADATA").read_text())
    keys = meta["tree_metadata"].keys()
    return [k for k in keys if "model_state" in k]


@pytest.mark.slow
def test_backbone_unet_on_a_mixture_trains_resumes_evaluates_and_exports(tmp_path):
    a = photo_folder(tmp_path / "a", PHOTOS[:2], 4)
    b = photo_folder(tmp_path / "b", PHOTOS[2:], 3)
    wd = tmp_path / "run"
    data = [f"--config.data.mixture={a}=2,{b}=1", f"--config.data.eval_folder={b}"]

    # 6 photos are too few to hold back a validation split: one line naming the field.
    out = run_cli(wd, *data, "--config.num_train_steps=2", ok=False)
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("config error: config.eval.split: 'validation' is not a split"), \
        out.stderr[-2000:]
    assert "allowed: ['train']" in last and "Traceback" not in out.stderr, out.stderr[-2000:]

    data.append("--config.eval.split=train")

    out = run_cli(wd, *data, "--config.num_train_steps=2", "--config.eval_every=2")
    assert "step 2" in out.stdout + out.stderr
    step_dir = wd / "checkpoints" / "2"
    saved = _model_state_paths(step_dir)
    assert not [k for k in saved if "backbone" in k], saved
    size_mb = sum(f.stat().st_size for f in step_dir.rglob("*") if f.is_file()) / 2 ** 20
    assert size_mb < 5, size_mb  # EfficientNet-Lite0's weights alone are ~13 MB

    # Resume to step 3 (the frozen weights come back from the fresh state), then eval.
    run_cli(wd, *data, "--config.num_train_steps=3", "--config.eval_every=3")
    assert (wd / "checkpoints" / "3").is_dir()
    out = run_cli(wd, *data, "--config.num_train_steps=3", "--mode=eval")
    assert "ciede2000" in out.stdout

    # The export is self-contained: it carries the backbone and colorizes.
    exp = tmp_path / "export"
    run_cli(wd, *data, "--config.num_train_steps=3", "--mode=export", f"--export_dir={exp}")
    code = ("import numpy as np, jax, colorjax\n"
            f"c = colorjax.Colorizer.load({str(exp)!r})\n"
            "names = ['/'.join(str(getattr(k, 'key', k)) for k in p) for p, _ in "
            "jax.tree_util.tree_flatten_with_path(c.variables)[0]]\n"
            "assert any('backbone' in n for n in names), names[:5]\n"
            "rgb = c.colorize(np.full((40, 30), 128, np.uint8))\n"
            "print(rgb.shape)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "(40, 30, 3)" in res.stdout
