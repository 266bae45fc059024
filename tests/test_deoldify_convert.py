"""`python -m colorjax.convert --from=deoldify_*` without torch: the layout read off the Flax
network, the published files' sizes, fastai's checkpoint shape, the spectral and weight
norm folding, and a user's mistakes as one line and exit status 2. That the converted
network colorizes as the authors' is tests/test_deoldify_peer.py's."""

import collections

import numpy as np
import pytest
from test_convert import _op, assert_one_line_error, run_convert, torch_zip_bytes

from colorjax.presets import load_config
from colorjax.convert import deoldify as cd
from colorjax.objectives import deoldify as od


def test_layouts_name_the_authors_modules():
    keys = [k for k, *_ in cd.torch_layout("wide")]
    assert keys[0] == "layers.0.0.weight" and keys[-1] == "layers.11.0.bias"
    for key in ("layers.5.conv.3.query.weight_orig", "layers.5.conv.3.gamma",
                "layers.8.conv.0.weight_g", "layers.10.layers.1.0.weight_u",
                "layers.0.6.22.conv3.weight", "layers.4.shuf.conv.1.running_var"):
        assert key in keys, key
    assert "layers.5.conv2.3.value.weight_v" in [k for k, *_ in cd.torch_layout("deep")]


def test_spectral_and_weight_norm_fold_as_torch_eval():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    u, v = rng.standard_normal(8), rng.standard_normal(36)
    sigma = u @ w.reshape(8, -1) @ v  # the stored estimate, not the largest singular value
    np.testing.assert_allclose(cd.spectral_weight(w, u, v), w / sigma, rtol=1e-5)
    g = rng.random((8, 1, 1, 1)).astype(np.float32)
    norm = np.linalg.norm(w.reshape(8, -1), axis=1).reshape(8, 1, 1, 1)
    np.testing.assert_allclose(cd.weight_norm_weight(g, w), g * w / norm, rtol=1e-5)


def test_fastai_checkpoints_give_their_models_part():
    sd = {"layers.0.0.weight": np.zeros((64, 3, 7, 7), np.float32)}
    assert cd.model_state_of({"model": sd, "opt": {"state": {}}}, "deoldify_stable") == sd
    assert cd.model_state_of(sd, "deoldify_stable") == sd
    with pytest.raises(cd.ConversionError, match="not a fastai checkpoint"):
        cd.model_state_of([1, 2], "deoldify_artistic")


def test_the_authors_uint8_cast_wraps_as_numpy():
    x = np.arange(-600.0, 600.0, 0.37).astype(np.float32)
    np.testing.assert_array_equal(od.authors_uint8(x), x.astype(np.uint8))


def test_variants():
    assert load_config("deoldify").model.arch == "wide"
    assert load_config("deoldify", "artistic").model.arch == "deep"
    assert load_config("deoldify", "video").data.image_size == 21 * 16
    assert load_config("deoldify", "stable").data.image_size == 35 * 16
    with pytest.raises(ValueError, match="unknown config variant"):
        load_config("deoldify", "nope")


@pytest.mark.slow
def test_mistakes_are_one_line_and_exit_status_2(tmp_path):
    f = tmp_path / "weights.pth"
    # the ResNet-34 body's first conv is ResNet-101's too; a 5x5 one is neither
    f.write_bytes(torch_zip_bytes(collections.OrderedDict(
        [("layers.0.0.weight", np.zeros((64, 3, 5, 5)))])))
    out = run_convert("--from=deoldify_stable", f"--weights={f}", "--output=x")
    assert_one_line_error(out, "state_dict key 'layers.0.0.weight' has shape (64, 3, 5, 5); "
                               "deoldify_stable's DynamicUnetWide has (64, 3, 7, 7)")
    f.write_bytes(torch_zip_bytes({"layers.0.0.weight": np.zeros((64, 3, 7, 7))}))
    assert_one_line_error(run_convert("--from=deoldify_artistic", f"--weights={f}",
                                      "--output=x"),
                          "state_dict key 'layers.0.1.weight' is missing")
    g = tmp_path / "ColorizeArtistic_gen.pth"
    g.write_bytes(f.read_bytes())
    assert_one_line_error(run_convert("--from=deoldify_video", f"--weights={g}", "--output=x"),
                          "is the published deoldify_artistic release; convert it with "
                          "--from=deoldify_artistic")
    marker = tmp_path / "pwned"
    evil = _op("evil") + b"cos\nsystem\n" + _op(f"touch {marker}") + b"\x85R"
    f.write_bytes(torch_zip_bytes({"x": np.zeros(2)}, extra_ops=evil))
    assert_one_line_error(run_convert("--from=deoldify_stable", f"--weights={f}", "--output=x"),
                          "not a PyTorch file colorjax reads safely")
    assert not marker.exists()
