"""`python -m colorjax.convert`: Zhang et al.'s state_dicts -> colorjax exports, without
torch (the files are written here in torch.save's zip layout). What a user gets wrong is one
line and exit status 2: a published name whose sha256 suffix does not match, the other
release's file, another architecture (naming the first key that differs), a file with
pickled code. The tensor mapping is checked on a converted file; that the converted network
computes what the authors' does is tests/test_zhang_peer.py's."""

import collections
import hashlib
import io
import json
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from conftest import REPO

from colorjax.convert import zhang as cz


def _op(obj) -> bytes:
    """Pickle opcodes pushing a plain value (protocol header and STOP stripped)."""
    return pickle.dumps(obj, protocol=2)[2:-1]


def torch_zip_bytes(state: dict, extra_ops: bytes = b"") -> bytes:
    """A state_dict of float32 arrays in torch.save's zip layout (`write_torch_zip`)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        write_torch_zip(z, state, extra_ops)
    return buf.getvalue()


def write_torch_zip(z: zipfile.ZipFile, state: dict, extra_ops: bytes = b"") -> None:
    """Write a state_dict of float32 arrays into `z` in torch.save's zip layout: an
    OrderedDict of `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False,
    OrderedDict())`, each storage a persistent id ('storage', torch.FloatStorage, key,
    'cpu', numel). Each tensor's bytes are written as they come (a big file is never held
    in memory twice)."""
    od = b"ccollections\nOrderedDict\n)R"
    body = b""
    for i, (key, value) in enumerate(state.items()):
        a = np.ascontiguousarray(value, "<f4")
        strides = tuple(s // 4 for s in a.strides) if a.ndim else ()
        pid = (b"(" + _op("storage") + b"ctorch\nFloatStorage\n" + _op(str(i)) + _op("cpu")
               + _op(int(a.size)) + b"tQ")
        body += (_op(key) + b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + _op(0)
                 + _op(tuple(a.shape)) + _op(strides) + b"\x89" + od + b"tR")
        z.writestr(f"archive/data/{i}", memoryview(a.reshape(-1)).cast("B"))
    z.writestr("archive/data.pkl", b"\x80\x02" + od + b"(" + body + extra_ops + b"u.")
    z.writestr("archive/byteorder", b"little")


def random_state(model: str, seed: int = 0) -> collections.OrderedDict:
    """A random state_dict of the release's layout (BatchNorm's num_batches_tracked left
    out, as a file made before PyTorch 0.4.1 would)."""
    rng = np.random.default_rng(seed)
    return collections.OrderedDict(
        (k, rng.standard_normal(s, dtype=np.float32))
        for layer in cz.LAYERS[model]() for k, s in layer.tensors())


def run_convert(*args):
    return subprocess.run([sys.executable, "-m", "colorjax.convert", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


def assert_one_line_error(out, *fragments):
    err = out.stderr.strip()
    assert out.returncode == 2, (out.returncode, out.stdout[-2000:], err[-2000:])
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err
    return err


def test_layouts_have_the_releases_parameter_counts():
    def learned(model):  # what torch's parameters() counts: not the running statistics
        return sum(int(np.prod(s)) for layer in cz.LAYERS[model]() for k, s in layer.tensors()
                   if not k.endswith(("running_mean", "running_var")))
    # The Flax networks' parameter counts, plus ECCV16's model_out (the 313 bins' ab) and
    # SIGGRAPH17's unused model_class (256 -> 529): the torch peer's counts.
    assert learned("eccv16") == 32_235_385 + 313 * 2
    assert learned("siggraph17") == 34_051_074 + 256 * 529 + 529
    assert cz.hub_hash("colorization_release_v2-9b330a0b.pth") == "9b330a0b"
    assert cz.hub_hash("/x/siggraph17-df00044c.pth") == "df00044c"
    assert cz.hub_hash("siggraph17.pth") is None and cz.hub_hash("my-model.pth") is None


def test_a_published_name_must_match_its_sha256(tmp_path):
    f = tmp_path / "colorization_release_v2-9b330a0b.pth"
    f.write_bytes(torch_zip_bytes({"x": np.zeros(3)}))
    err = assert_one_line_error(run_convert("--from=eccv16", f"--weights={f}",
                                            f"--output={tmp_path / 'out'}"),
                                "its sha256 starts with", "its name says 9b330a0b",
                                "damaged or not the published eccv16 release")
    assert not (tmp_path / "out").exists(), err
    # torch.hub's convention applies to any name: the suffix is checked.
    g = tmp_path / "mine-deadbeef.pth"
    g.write_bytes(f.read_bytes())
    assert_one_line_error(run_convert("--from=eccv16", f"--weights={g}", "--output=x"),
                          "its name says deadbeef")


def test_the_other_releases_file_is_named(tmp_path):
    f = tmp_path / "siggraph17-df00044c.pth"
    f.write_bytes(b"anything")
    assert_one_line_error(run_convert("--from=eccv16", f"--weights={f}", "--output=x"),
                          "is the published siggraph17 release; convert it with "
                          "--from=siggraph17")


def test_another_architecture_names_the_first_mismatching_key(tmp_path):
    # siggraph17's first conv reads 4 planes; eccv16's reads L alone.
    state = collections.OrderedDict([("model1.0.weight", np.zeros((64, 4, 3, 3)))])
    f = tmp_path / "weights.pth"
    f.write_bytes(torch_zip_bytes(state))
    out = run_convert("--from=eccv16", f"--weights={f}", f"--output={tmp_path / 'out'}")
    assert_one_line_error(out, "state_dict key 'model1.0.weight' has shape (64, 4, 3, 3); "
                               "eccv16's ECCVGenerator has (64, 1, 3, 3)")
    assert "is not the published release's name" in out.stdout
    f.write_bytes(torch_zip_bytes({"conv.weight": np.zeros((2, 2))}))
    assert_one_line_error(run_convert("--from=siggraph17", f"--weights={f}", "--output=x"),
                          "state_dict key 'model1.0.weight' is missing")
    # Every tensor of the release, plus one more.
    full = random_state("siggraph17")
    full["model11.0.weight"] = np.zeros(2, np.float32)
    with pytest.raises(cz.ConversionError, match="'model11.0.weight' is not in siggraph17"):
        cz.check_layout(full, "siggraph17")


@pytest.mark.slow
def test_pickled_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    evil = _op("evil") + b"cos\nsystem\n" + _op(f"touch {marker}") + b"\x85R"
    f = tmp_path / "weights.pth"
    f.write_bytes(torch_zip_bytes({"x": np.zeros(2)}, extra_ops=evil))
    assert_one_line_error(run_convert("--from=eccv16", f"--weights={f}", "--output=x"),
                          "not a PyTorch file colorjax reads safely", "forbidden global")
    assert not marker.exists()
    assert_one_line_error(run_convert("--from=eccv16", f"--weights={tmp_path / 'none.pth'}",
                                      "--output=x"), "cannot read it")
    out = run_convert("--from=resnet", f"--weights={f}", "--output=x")
    assert out.returncode == 2 and "invalid choice: 'resnet'" in out.stderr


@pytest.mark.slow  # a 130 MB file read, converted and written, then read again: ~30 s here
def test_eccv16_tensors_map_onto_the_flax_network(tmp_path):
    state = random_state("eccv16")
    state["model1.4.num_batches_tracked"] = np.zeros((), np.float32)  # present or not
    data = torch_zip_bytes(state)
    # A name that follows torch.hub's convention with the right prefix is accepted.
    f = tmp_path / f"eccv16-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    f.write_bytes(data)
    lines = []
    path = cz.convert("eccv16", str(f), str(tmp_path / "export"), say=lines.append)
    assert lines and "is not the published release's name" in lines[0]

    from colorjax.inference.artifact import read_export

    config, meta, objective, v = read_export(path)
    assert meta["model"] == "eccv16" and meta["step"] == 0
    assert meta["converted_from"]["sha256"] == hashlib.sha256(data).hexdigest()
    p, stats = v["params"], v["batch_stats"]
    np.testing.assert_array_equal(p["model1_0"]["kernel"],
                                  state["model1.0.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(p["model8_6"]["bias"], state["model8.6.bias"])
    # ConvTranspose2d (in, out, 4, 4): flipped in space for the direct convolution.
    np.testing.assert_array_equal(p["model8_0"]["kernel"][0, 1],
                                  state["model8.0.weight"][:, :, 3, 2])
    np.testing.assert_array_equal(p["model3_6"]["scale"], state["model3.6.weight"])
    np.testing.assert_array_equal(stats["model3_6"]["var"], state["model3.6.running_var"])
    np.testing.assert_allclose(v["colour_bins"]["centers"],
                               110.0 * state["model_out.weight"][:, :, 0, 0].T, rtol=1e-6)
    assert v["colour_bins"]["centers"].shape == (313, 2)
    # A folder of other things is not overwritten.
    other = tmp_path / "photos"
    other.mkdir()
    (other / "a.jpg").write_bytes(b"x")
    out = run_convert("--from=eccv16", f"--weights={f}", f"--output={other}")
    assert_one_line_error(out, "--output=", "is not a colorjax export")
    assert json.loads((tmp_path / "export" / "metadata.json").read_text())["model"] == "eccv16"
