"""DeOldify's generators, converted (`python -m colorjax.convert --from=deoldify_*`), colorize
a photo as the authors' pipeline does: `ColorizerFilter` (deoldify/filters.py) with PIL and
OpenCV here, their network in PyTorch (benchmarks/torch_deoldify.py, an independent
transcription, in `.venv-torch`), on random weights saved as fastai saves a learner
({'model': state_dict, 'opt': ...}) with spectral norm's stored u and v and perturbed
BatchNorm statistics. Tolerance (issue 41's): mean absolute difference <= 1 and 99th
percentile <= 4 of 255 in RGB. Small render factors keep it fast; sizes that are not
multiples of 32 exercise the decoder's nearest resize.

Without a PyTorch Python (`.venv-torch`, or COLORJAX_TORCH_PYTHON) these tests skip.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, torch_python, torch_python_works
from PIL import Image
from skimage import data as skdata

from colorjax import Colorizer

TORCH_PYTHON = torch_python()
MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # fastai imagenet_stats
STD = np.array([0.229, 0.224, 0.225], np.float32)
pytestmark = [pytest.mark.skipif(not torch_python_works(),
                                 reason=f"no PyTorch Python at {TORCH_PYTHON}"),
              pytest.mark.slow]  # 255 MB and 873 MB of weights: ~50 s and ~110 s here


# --- the authors' ColorizerFilter, its PIL / OpenCV half (deoldify/filters.py) -------------


def authors_model_input(orig: Image.Image, render_factor: int) -> np.ndarray:
    """_model_process up to the network: square bilinear stretch, 'LA' -> 'RGB', /255,
    ImageNet normalisation; (3, S, S) float32."""
    s = render_factor * 16
    square = orig.resize((s, s), resample=Image.BILINEAR).convert("LA").convert("RGB")
    x = np.asarray(square).astype(np.float32).transpose(2, 0, 1) / np.float32(255)
    return (x - MEAN[:, None, None]) / STD[:, None, None]


def authors_finish(rgb: np.ndarray, orig: Image.Image) -> np.ndarray:
    """image2np(out * 255).astype(uint8), _unsquare (bilinear), _post_process (YUV)."""
    import cv2

    out = Image.fromarray((rgb.transpose(1, 2, 0) * 255).astype(np.uint8))
    raw = np.asarray(out.resize(orig.size, resample=Image.BILINEAR))
    color_yuv = cv2.cvtColor(raw, cv2.COLOR_RGB2YUV)
    hires = cv2.cvtColor(np.asarray(orig), cv2.COLOR_RGB2YUV)
    hires[:, :, 1:3] = color_yuv[:, :, 1:3]
    return cv2.cvtColor(hires, cv2.COLOR_YUV2RGB)


def run_peer(tmp_path, arch: str, x: np.ndarray, legacy: bool = False):
    np.savez(tmp_path / "in.npz", x=x)
    pth = tmp_path / f"{arch}_gen.pth"
    extra = [f"--legacy_out={tmp_path / 'legacy.pth'}"] if legacy else []
    out = subprocess.run([TORCH_PYTHON, "benchmarks/torch_deoldify.py", "check",
                          f"--arch={arch}", f"--input={tmp_path / 'in.npz'}",
                          f"--weights_out={pth}", f"--out={tmp_path / 'torch.npz'}", *extra],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return pth, dict(np.load(tmp_path / "torch.npz"))


def convert_cli(source, weights, output):
    out = subprocess.run([sys.executable, "-m", "colorjax.convert", f"--from={source}",
                          f"--weights={weights}", f"--output={output}"],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "is not the published release's name" in out.stdout
    return out


def assert_matches(ours: np.ndarray, theirs: np.ndarray, what: str):
    diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    mad, p99 = diff.mean(), np.percentile(diff, 99)
    print(f"{what}: mean |diff| {mad:.3f}, p99 {p99:.3f}, max {diff.max():.0f} (of 255)")
    assert mad <= 1.0 and p99 <= 4.0, (what, mad, p99)
    # The colours vary (not the photo's gray back): U and V spread.
    yuv = __import__("cv2").cvtColor(theirs, __import__("cv2").COLOR_RGB2YUV)
    assert yuv[..., 1:].astype(np.float64).std(axis=(0, 1)).min() > 3, what


def check_release(tmp_path, source: str, arch: str, render_factor: int,
                  legacy: bool = False):
    rgb = skdata.coffee()[::2, ::2]  # (200, 300, 3): rows and columns both change size
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    photos = [Image.fromarray(rgb).convert("RGB"), Image.fromarray(gray).convert("RGB")]
    x = np.stack([authors_model_input(p, render_factor) for p in photos])
    pth, want = run_peer(tmp_path, arch, x, legacy)
    assert pth.read_bytes()[:4] == b"PK\x03\x04"  # torch.save's zip format
    convert_cli(source, pth, tmp_path / source)
    meta = json.loads((tmp_path / source / "metadata.json").read_text())
    assert meta["model"] == "deoldify" and meta["converted_from"]["published"] is False
    colorizer = Colorizer.load(str(tmp_path / source), size=16 * render_factor)
    for k, (image, what) in enumerate(((rgb, "colour photo"), (gray, "gray photo"))):
        theirs = authors_finish(want["rgb"][k], photos[k])
        ours = colorizer.colorize(image)
        assert ours.shape == theirs.shape and ours.dtype == np.uint8
        assert_matches(ours, theirs, f"{source}, {what}")
    # The converter's layout (read off the Flax network) is the transcription's state_dict.
    from colorjax.convert.deoldify import torch_layout

    assert int(want["num_params"]) == sum(int(np.prod(s)) for _, s, _, _ in torch_layout(arch))
    return colorizer


def test_deoldify_artistic_converted_colorizes_as_the_authors(tmp_path):
    # render_factor 5: 80 px, layer4 at 3x3 -> 6x6 resized to layer3's 5x5 (nearest)
    colorizer = check_release(tmp_path, "deoldify_artistic", "deep", render_factor=5,
                              legacy=True)
    assert colorizer.image_size == 560  # render_factor 35, the authors' default
    # The legacy format (torch < 1.6, as the 2019 releases) gives the same weights.
    from colorjax.convert import deoldify as cd

    say = []
    zip_state, _, _ = cd.read_release(str(tmp_path / "deep_gen.pth"), "deoldify_artistic",
                                      say.append)
    legacy_state, _, _ = cd.read_release(str(tmp_path / "legacy.pth"), "deoldify_artistic",
                                         say.append)
    assert (tmp_path / "legacy.pth").read_bytes()[:4] != b"PK\x03\x04"
    assert zip_state.keys() == legacy_state.keys()
    for k, v in zip_state.items():
        np.testing.assert_array_equal(legacy_state[k], v, err_msg=k)


def test_deoldify_stable_converted_colorizes_as_the_authors(tmp_path):
    # render_factor 3: 48 px, layer4 at 2x2 -> 4x4 resized to layer3's 3x3 (nearest)
    check_release(tmp_path, "deoldify_stable", "wide", render_factor=3)
