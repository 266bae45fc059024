"""DDColor (Kang et al., ICCV 2023), converted (`python -m colorjax.convert
--from=ddcolor_tiny`), colorizes a photo as the authors' own pipeline does: their
`ColorizationPipeline.process` (ddcolor/pipeline.py) and network in PyTorch
(benchmarks/torch_ddcolor.py, an independent transcription with OpenCV's two calls in NumPy,
in `.venv-torch`), on random weights that torch saved and whose colours vary strongly.
Tolerance (the issue's): mean absolute difference <= 1 and 99th percentile <= 4 of 255 in
RGB. The working size is 64 px (the authors' default is 512) to keep the test short.

The converter's refusals (one line, exit status 2) need no torch and run always.
"""

import io
import json
import pickle
import subprocess
import zipfile

import numpy as np
import pytest
from conftest import REPO, torch_python, torch_python_works
from PIL import Image
from test_convert import assert_one_line_error, run_convert
from skimage import color as skcolor
from skimage import data as skdata

from colorjax import Colorizer

TORCH_PYTHON = torch_python()
SIZE = 64  # the working size here (infer.py's --input_size, 512 by default)


def assert_matches(ours: np.ndarray, theirs: np.ndarray, what: str, colourful: bool = True):
    """The issue's tolerance on uint8 RGB, and that the colours vary strongly."""
    diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    mad, p99 = diff.mean(), np.percentile(diff, 99)
    print(f"{what}: mean |diff| {mad:.3f}, p99 {p99:.3f}, max {diff.max():.0f} (of 255)")
    assert mad <= 1.0 and p99 <= 4.0, (what, mad, p99)
    if colourful:
        ab = skcolor.rgb2lab(theirs)[..., 1:]
        assert np.hypot(ab[..., 0], ab[..., 1]).mean() > 15, what
        assert ab.std(axis=(0, 1)).min() > 8, (what, ab.std(axis=(0, 1)))


@pytest.mark.slow  # a 55 M-parameter network saved, converted and run twice (~40-60 s here)
@pytest.mark.skipif(not torch_python_works(), reason=f"no PyTorch Python at {TORCH_PYTHON}")
def test_ddcolor_tiny_converted_colorizes_as_the_authors_pipeline(tmp_path):
    rgb = skdata.coffee()  # (400, 600, 3): ab is resized up in both axes, unevenly
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    np.savez(tmp_path / "in.npz", photo0=rgb, photo1=np.repeat(gray[..., None], 3, -1))
    pth = tmp_path / "tiny.pth"
    out = subprocess.run([TORCH_PYTHON, "benchmarks/torch_ddcolor.py", "check", "--size=tiny",
                          f"--input={tmp_path / 'in.npz'}", f"--input_size={SIZE}",
                          f"--weights_out={pth}", f"--out={tmp_path / 'torch.npz'}"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert pth.read_bytes()[:4] == b"PK\x03\x04"  # torch.save's zip format
    want = dict(np.load(tmp_path / "torch.npz"))
    # DDColor-T as build_ddcolor_model makes it; ConvNeXt's unused final norm included.
    assert int(want["num_params"]) == 55_006_640

    conv = run_convert("--from=ddcolor_tiny", f"--weights={pth}",
                       f"--output={tmp_path / 'export'}")
    assert conv.returncode == 0, conv.stderr[-3000:]
    assert "is not a published name" in conv.stdout and "sha256" in conv.stdout
    meta = json.loads((tmp_path / "export" / "metadata.json").read_text())
    assert meta["model"] == "ddcolor" and meta["family"] == "regression"
    assert meta["converted_from"]["published"] is False

    colorizer = Colorizer.load(str(tmp_path / "export"), size=SIZE)
    assert colorizer.image_size == 512  # the export's own working size: infer.py's default
    assert_matches(colorizer.colorize(rgb), want["rgb0"], "ddcolor_tiny, colour photo")
    # A gray photo (2-D): the authors read it as three equal channels.
    assert_matches(colorizer.colorize(gray), want["rgb1"], "ddcolor_tiny, gray photo")


# --- refusals: no torch needed ---------------------------------------------------------------


def _op(obj) -> bytes:
    return pickle.dumps(obj, protocol=2)[2:-1]


def torch_zip(state: dict, wrap: str = "") -> bytes:
    """A {key: float32 array} state_dict in torch.save's zip layout (tests/test_convert.py's
    construction, small); `wrap`: as {wrap: state_dict}, basicsr's checkpoints' layout."""
    od = b"ccollections\nOrderedDict\n)R"
    body, storages = b"", {}
    for i, (key, value) in enumerate(state.items()):
        a = np.ascontiguousarray(value, "<f4")
        strides = tuple(s // 4 for s in a.strides) if a.ndim else ()
        pid = (b"(" + _op("storage") + b"ctorch\nFloatStorage\n" + _op(str(i)) + _op("cpu")
               + _op(int(a.size)) + b"tQ")
        body += (_op(key) + b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + _op(0)
                 + _op(tuple(a.shape)) + _op(strides) + b"\x89" + od + b"tR")
        storages[str(i)] = a.tobytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        inner = od + b"(" + body + b"u"
        pkl = b"}(" + _op(wrap) + inner + b"u" if wrap else inner
        z.writestr("archive/data.pkl", b"\x80\x02" + pkl + b".")
        z.writestr("archive/byteorder", b"little")
        for k, raw in storages.items():
            z.writestr(f"archive/data/{k}", raw)
    return buf.getvalue()


def _start():
    return {"mean": np.array([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1),
            "std": np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)}


@pytest.mark.slow
def test_convert_names_the_first_key_that_differs(tmp_path):
    # DDColor-L's stem (192 channels) given as DDColor-T's (96): its first mismatch.
    state = _start() | {"encoder.arch.downsample_layers.0.0.weight": np.zeros((192, 3, 4, 4))}
    (tmp_path / "large.pth").write_bytes(torch_zip(state))
    assert_one_line_error(run_convert("--from=ddcolor_tiny", f"--weights={tmp_path / 'large.pth'}",
                                      f"--output={tmp_path / 'out'}"),
                          "'encoder.arch.downsample_layers.0.0.weight' has shape (192, 3, 4, 4)",
                          "(96, 3, 4, 4)")
    # The same inside basicsr's {"params": state_dict}, which the authors' loader unwraps.
    (tmp_path / "wrapped.pth").write_bytes(torch_zip(state, wrap="params"))
    assert_one_line_error(run_convert("--from=ddcolor_tiny",
                                      f"--weights={tmp_path / 'wrapped.pth'}",
                                      f"--output={tmp_path / 'out'}"),
                          "'encoder.arch.downsample_layers.0.0.weight' has shape (192, 3, 4, 4)")
    # A file that stops early: the first missing key.
    state["encoder.arch.downsample_layers.0.0.weight"] = np.zeros((96, 3, 4, 4))
    (tmp_path / "short.pth").write_bytes(torch_zip(state))
    assert_one_line_error(run_convert("--from=ddcolor_tiny", f"--weights={tmp_path / 'short.pth'}",
                                      f"--output={tmp_path / 'out'}"),
                          "'encoder.arch.downsample_layers.0.0.bias' is missing")
    assert not (tmp_path / "out").exists()


def test_convert_refuses_the_other_size_and_other_files(tmp_path):
    published = tmp_path / "ddcolor_paper_tiny.pth"
    published.write_bytes(torch_zip(_start()))
    assert_one_line_error(run_convert("--from=ddcolor_large", f"--weights={published}",
                                      f"--output={tmp_path / 'out'}"),
                          "published ddcolor_tiny model", "--from=ddcolor_tiny")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    assert_one_line_error(run_convert("--from=ddcolor_large", f"--weights={junk}",
                                      f"--output={tmp_path / 'out'}"),
                          "not a PyTorch file colorjax reads safely")


# --- the converter's table against the Flax network, both sizes (shapes only) ----------------


def _table_shapes(layers) -> dict:
    """{Flax param path: shape} as the table's layers say (a mapping written here, apart
    from the converter's)."""
    out = {}
    for layer in layers:
        p, k, i, o = layer.path, layer.kernel, layer.cin, layer.cout
        if layer.kind in ("conv", "sn"):
            out[p + ("kernel",)] = (k, k, i // layer.groups, o)
            if layer.bias:
                out[p + ("bias",)] = (o,)
        elif layer.kind == "linear":
            out |= {p + ("kernel",): (i, o), p + ("bias",): (o,)}
        elif layer.kind in ("ln", "bn"):
            out |= {p + ("scale",): (o,), p + ("bias",): (o,)}
        elif layer.kind == "embed":
            out[p + ("embedding",)] = (i, o)
        elif layer.kind == "mha":
            out |= {p + ("in_proj_kernel",): (o, 3 * o), p + ("in_proj_bias",): (3 * o,),
                    p + ("out_proj", "kernel"): (o, o), p + ("out_proj", "bias"): (o,)}
        elif layer.kind == "gamma":
            out[p + ("gamma",)] = (o,)
    return out


@pytest.mark.parametrize("model", ["ddcolor_tiny", "ddcolor_large"])
def test_converter_table_is_the_flax_network(model):
    import jax
    import jax.numpy as jnp
    from flax import traverse_util

    from colorjax.convert.ddcolor import RELEASES, ddcolor_layers
    from colorjax.models.ddcolor import DDColor

    arch = RELEASES[model].arch
    shapes = jax.eval_shape(lambda: DDColor(arch).init(jax.random.key(0),
                                                       jnp.zeros((1, 64, 64, 1))))
    flax_shapes = {k: tuple(v.shape)
                   for k, v in traverse_util.flatten_dict(shapes["params"]).items()}
    layers = ddcolor_layers(arch)
    assert _table_shapes(layers) == flax_shapes
    # What torch's parameters() counts: the Flax network's, plus ConvNeXt's unused norm.
    learned = sum(int(np.prod(s)) for layer in layers for key, s in layer.tensors()
                  if not key.endswith(("running_mean", "running_var", "weight_u", "weight_v"))
                  and layer.kind != "buffer")
    flax_count = sum(int(np.prod(s)) for s in flax_shapes.values())
    assert learned == flax_count + 2 * arch.dims[-1]
    assert learned == {"ddcolor_tiny": 55_006_640, "ddcolor_large": 227_869_328}[model]


def detr_sine_position(h: int, w: int, features: int = 128,
                       temperature: float = 10000.0) -> np.ndarray:
    """DETR's PositionEmbeddingSine(normalize=True) in NumPy, (h * w, 2 * features): y's
    sin/cos pairs then x's, the coordinates 1..n scaled to (0, 2 pi]."""
    eps, scale = 1e-6, 2 * np.pi
    y = np.arange(1, h + 1, dtype=np.float32) / (h + eps) * scale
    x = np.arange(1, w + 1, dtype=np.float32) / (w + eps) * scale
    dim_t = temperature ** (2 * (np.arange(features) // 2) / features).astype(np.float32)

    def embed(t):  # (n,) -> (n, features): sin of even, cos of odd indices, interleaved
        a = t[:, None] / dim_t
        return np.stack([np.sin(a[:, 0::2]), np.cos(a[:, 1::2])], -1).reshape(len(t), -1)

    py, px = embed(y), embed(x)
    pos = np.concatenate([np.repeat(py[:, None], w, 1), np.repeat(px[None], h, 0)], -1)
    return pos.reshape(h * w, 2 * features).astype(np.float32)


@pytest.mark.parametrize("h, w", [(4, 6), (7, 3), (128, 128)])
def test_position_embedding_in_the_program_is_detrs(h, w):
    """The colour decoder computes DETR's sine position embedding in its program (not a
    NumPy table compiled in as a constant: 22 MB at 512 px); the same values as a NumPy
    transcription of PositionEmbeddingSine(normalize=True)."""
    import jax

    from colorjax.models.ddcolor import sine_position

    got = np.asarray(jax.jit(sine_position, static_argnums=(0, 1))(h, w))
    np.testing.assert_allclose(got, detr_sine_position(h, w), atol=2e-6)
