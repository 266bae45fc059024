"""The zip-format PyTorch reader (colorjax.models.torch_zip), the FID Inception-v3
(colorjax.models.inception), FID / IS (colorjax.metrics.inception_scores) and their columns in
colorjax.compare. None of these tests needs torch or the real weight file; the equivalence
with a PyTorch forward is tests/test_inception_peer.py."""

import hashlib
import io
import os
import pathlib
import pickle
import zipfile

import jax
import numpy as np
import pytest

from colorjax.metrics import inception_scores as ins
from colorjax.models import inception as inc
from colorjax.models.torch_weights import TorchWeightsError
from colorjax.models.torch_zip import load_torch, load_zip

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"


# --- the zip reader ----------------------------------------------------------------------


def test_zip_reader_reads_the_torch_made_fixture():
    # tests/fixtures/make_torch_zip_fixture.py wrote it with torch.save (zip format).
    sd = load_zip((FIXTURES / "torch_zip_small.pt").read_bytes())
    assert list(sd) == ["a", "view", "row", "i", "scalar", "half", "nested"]
    np.testing.assert_array_equal(sd["a"], np.arange(6, dtype=np.float32).reshape(2, 3))
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    assert sd["view"].dtype == np.float64
    np.testing.assert_array_equal(sd["view"], base.T[1:3])  # offset 1, strides (1, 6)
    np.testing.assert_array_equal(sd["row"], base[2])  # the same storage, offset 12
    assert sd["i"].dtype == np.int64 and sd["i"].tolist() == [1, -2, 3]
    assert sd["scalar"].shape == () and float(sd["scalar"]) == 2.5
    assert sd["half"].dtype == np.float16 and sd["half"].tolist() == [1.0, 1.0]
    empty, seven, text = sd["nested"]["list"]
    assert empty.shape == (0, 3) and seven == 7 and text == "seven"


def _zip(entries: dict[str, bytes], prefix: str = "archive/") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries.items():
            z.writestr(prefix + name, data)
    return buf.getvalue()


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_zip_reader_refuses_other_globals_without_running_them():
    data = _zip({"data.pkl": pickle.dumps({"w": _Evil()}, protocol=2)})
    with pytest.raises(TorchWeightsError, match=r"forbidden global (posix|os|nt)\.system"):
        load_zip(data)


def _fixture_entries() -> dict[str, bytes]:
    with zipfile.ZipFile(FIXTURES / "torch_zip_small.pt") as z:
        return {n.split("/", 1)[1]: z.read(n) for n in z.namelist()}


def test_zip_reader_refuses_broken_files():
    entries = _fixture_entries()
    with pytest.raises(TorchWeightsError, match="not a PyTorch zip"):
        load_zip(b"PK\x03\x04 but no zip")
    with pytest.raises(TorchWeightsError, match=r"one <prefix>/data.pkl, found 0"):
        load_zip(_zip({"weights.bin": b"x"}))
    missing = {k: v for k, v in entries.items() if k != "data/0"}
    with pytest.raises(TorchWeightsError, match="'data/0' is missing"):
        load_zip(_zip(missing))
    short = dict(entries, **{"data/0": entries["data/0"][:-4]})
    with pytest.raises(TorchWeightsError, match="storage '0' has 20 bytes"):
        load_zip(_zip(short))
    with pytest.raises(TorchWeightsError, match="little-endian"):
        load_zip(_zip(dict(entries, byteorder=b"big")))
    plain = pickle.dumps({"w": 1}, protocol=2)
    assert load_zip(_zip({"data.pkl": plain})) == {"w": 1}  # plain data needs no globals


def test_load_torch_dispatches_on_the_format():
    data = (FIXTURES / "torch_zip_small.pt").read_bytes()
    assert list(load_torch(data)) == list(load_zip(data))
    with pytest.raises(TorchWeightsError, match="legacy"):
        load_torch(b"neither zip nor legacy")


# --- the network and its weights ---------------------------------------------------------


def _param_count(tree) -> int:
    return int(sum(np.prod(s) for s in jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, tuple))))


def test_network_has_inception_v3_fid_shapes():
    shapes = inc.expected_shapes()
    # torchvision's inception_v3(num_classes=1008, aux_logits=False) has 23,850,960
    # parameters (conv weights, BatchNorm scales and biases, fc); the torch peer counts them.
    assert _param_count(shapes["params"]) == 23_850_960
    assert shapes["params"]["Conv2d_1a_3x3"]["conv"]["kernel"] == (3, 3, 3, 32)
    assert shapes["params"]["Mixed_7c"]["branch_pool"]["conv"]["kernel"] == (1, 1, 2048, 192)
    assert shapes["params"]["fc"]["kernel"] == (2048, 1008)
    assert shapes["batch_stats"]["Mixed_5b"]["branch1x1"]["bn"]["mean"] == (64,)


def _torch_layout_state_dict() -> dict:
    """A state dict with every key and torch shape of pytorch-fid's file (zeros)."""
    sd = {}
    names = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
             "var": "running_var"}
    for path, shape in jax.tree_util.tree_flatten_with_path(
            inc.expected_shapes(), is_leaf=lambda s: isinstance(s, tuple))[0]:
        keys = [p.key for p in path]
        torch_shape = (shape[::-1] if len(shape) == 2 else
                       (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape)
        sd[".".join(keys[1:-1] + [names[keys[-1]]])] = np.zeros(torch_shape, np.float32)
    return sd


def test_convert_state_dict_uses_pytorch_fid_names_strictly():
    sd = _torch_layout_state_dict()
    for key in ("Conv2d_1a_3x3.conv.weight", "Conv2d_1a_3x3.bn.running_mean",
                "Mixed_5b.branch1x1.conv.weight", "Mixed_7c.branch3x3dbl_3b.bn.bias",
                "fc.weight", "fc.bias"):
        assert key in sd
    sd["Mixed_5b.branch1x1.bn.num_batches_tracked"] = np.array(0, np.int64)  # ignored
    sd["fc.weight"] = np.arange(1008 * 2048, dtype=np.float32).reshape(1008, 2048)
    v = inc.convert_state_dict(sd)
    assert v["params"]["fc"]["kernel"].shape == (2048, 1008)
    assert v["params"]["fc"]["kernel"][3, 2] == sd["fc.weight"][2, 3]
    with pytest.raises(KeyError, match="unexpected state dict keys.*AuxLogits"):
        inc.convert_state_dict(dict(sd, **{"AuxLogits.fc.weight": np.zeros(1, np.float32)}))
    missing = {k: v for k, v in sd.items() if k != "Mixed_6e.branch_pool.bn.running_var"}
    with pytest.raises(KeyError, match="Mixed_6e.branch_pool.bn.running_var"):
        inc.convert_state_dict(missing)
    with pytest.raises(ValueError, match="shape"):
        inc.convert_state_dict(dict(sd, **{"fc.bias": np.zeros(1000, np.float32)}))


def test_load_inception_errors_are_one_line(tmp_path):
    with pytest.raises(inc.InceptionWeightsError, match="is not a file"):
        inc.load_inception(tmp_path / "nowhere.pth")
    wrong = tmp_path / "wrong.pth"
    wrong.write_bytes(b"not the weights")
    found = hashlib.sha256(b"not the weights").hexdigest()
    with pytest.raises(inc.InceptionWeightsError) as e:
        inc.load_inception(wrong)
    msg = str(e.value)
    assert "\n" not in msg and found in msg and inc.SHA256 in msg
    # Only Python callers can skip the hash; then the format is still checked.
    with pytest.raises(inc.InceptionWeightsError, match="not pytorch-fid's Inception"):
        inc.load_inception(wrong, expected_sha256=None)
    with pytest.raises(inc.InceptionWeightsError, match="not pytorch-fid's Inception.*no "):
        inc.load_inception(FIXTURES / "torch_zip_small.pt", expected_sha256=None)


def test_sha256_is_the_one_pytorch_fid_s_file_name_abbreviates():
    assert len(inc.SHA256) == 64 and inc.SHA256.startswith("6726825d")
    assert inc.FILE_NAME.endswith(f"-{inc.SHA256[:8]}.pth")


# --- Inception Score ---------------------------------------------------------------------


def test_inception_score_bounds():
    # The same prediction for every image: p(y|x) = p(y), KL 0, IS 1.
    same = np.tile(np.array([[9.0, 0.0, 0.0, 0.0]]), (6, 1))
    assert ins.inception_score(same) == pytest.approx((1.0, 0.0))
    # Confident, distinct, evenly spread: IS = the number of classes.
    k = 5
    onehot = 50.0 * np.eye(k)
    mean, std = ins.inception_score(np.repeat(onehot, 2, axis=0))
    assert mean == pytest.approx(k, rel=1e-6) and std == 0.0
    # Hard one-hot (underflowing probabilities) stays finite.
    assert ins.inception_score(1e4 * np.eye(3))[0] == pytest.approx(3.0)
    rng = np.random.default_rng(0)
    for scale in (0.1, 3.0, 30.0):
        logits = scale * rng.normal(size=(40, 10))
        mean, _ = ins.inception_score(logits)
        assert 1.0 <= mean <= 10.0
    mean, std = ins.inception_score(rng.normal(size=(40, 10)) * 3, splits=4)
    assert 1.0 <= mean <= 10.0 and std > 0
    with pytest.raises(ValueError, match="splits"):
        ins.inception_score(same, splits=7)


# --- the network's outputs, FID and the compare columns (random weights) ------------------


def random_variables(seed: int = 0) -> dict:
    """Variables of the network's shapes drawn with NumPy (jitting `init` of 94 convolutions
    takes minutes on a CPU): He-scaled kernels, BatchNorm near identity."""
    rng = np.random.default_rng(seed)

    def draw(path, shape):
        leaf = path[-1].key
        if leaf == "kernel":
            return rng.normal(0, np.sqrt(2.0 / np.prod(shape[:-1])), shape).astype(np.float32)
        if leaf in ("scale", "var"):
            return rng.uniform(0.8, 1.2, shape).astype(np.float32)
        return rng.normal(0, 0.1, shape).astype(np.float32)
    return jax.tree_util.tree_map_with_path(draw, inc.expected_shapes(),
                                            is_leaf=lambda s: isinstance(s, tuple))


@pytest.mark.slow
def test_fid_of_a_set_with_itself_is_zero_and_the_compare_columns():
    from colorjax.compare import evaluation as compare
    from colorjax.compare import report as compare_report

    variables = random_variables()
    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 1, (4, 24, 24, 3)).astype(np.float32)
    feats, logits = ins.inception_outputs(truth, variables, batch_size=4)
    assert feats.shape == (4, 2048) and logits.shape == (4, 1008)
    assert feats.dtype == np.float64 and np.all(np.isfinite(feats)) and feats.std() > 0

    # The per-row function of compare: FID against the split's truth (here the truth
    # itself: ~0; one 2048-d sqrtm, the slow part) and IS with the number of images.
    ev = compare.Evaluation(num_images=2, bootstrap=0, inception=variables)
    ev.reference["validation"] = {"rgb": truth}
    row = ev.inception_columns("validation", truth)
    scale = float(np.trace(np.cov(feats, rowvar=False)))
    assert row["fid"]["num_images"] == 4
    assert abs(row["fid"]["value"]) < 1e-6 * max(scale, 1.0)
    assert row["is"] == {"value": pytest.approx(ins.inception_score(logits)[0]), "splits": 1,
                         "num_images": 4}
    assert 1.0 <= row["is"]["value"] <= 4.0  # at most the number of images (one split)
    truth_cols = ev.inception_columns("validation", truth, truth=True)
    assert "fid" not in truth_cols and truth_cols["is"] == row["is"]
    broken = ev.inception_columns("validation", truth[:1])  # FID needs 2 images
    assert "error" in broken["fid"] and broken["is"]["value"] == pytest.approx(1.0)
    assert compare.Evaluation(2, 0).inception_columns("validation", truth) == {}

    assert compare_report.inception_cell(None) == "not computed"
    assert compare_report.inception_cell("—") == "—"
    assert compare_report.inception_cell(broken["fid"]) == "failed"
    assert compare_report.inception_cell({"value": 12.345678, "num_images": 4}) == "12.35 (n=4)"
