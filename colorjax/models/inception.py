"""Inception-v3 as FID uses it (the "FID Inception" of pytorch-fid), in Flax Linen.

The network is TensorFlow's 2015-12-05 ImageNet Inception-v3 graph (the one Heusel et al.'s
FID and Salimans et al.'s Inception Score were defined on), in the layout of pytorch-fid's
port (mseitzer/pytorch-fid, ``src/pytorch_fid/inception.py``): torchvision's
``inception_v3`` with 1008 classes, no auxiliary head, and four changes that match the TF
graph: the average pools of the A, C and first E blocks (Mixed_5b-5d, Mixed_6b-6e,
Mixed_7b) leave the zero padding out of the average (``count_include_pad=False``), and the
pool branch of the last E block (Mixed_7c) is a 3x3 *max* pool. Every convolution has no
bias and is followed by BatchNorm (eps 0.001) and ReLU.

Inputs are RGB in [0, 1] of any size: `preprocess` resizes them to 299x299 (bilinear,
half-pixel centres, no antialiasing, as ``F.interpolate(..., align_corners=False)``) and
maps them to [-1, 1]. Outputs: ``pool3``, the 2048-d global average of Mixed_7c (FID's
features), ``logits``, the 1008-way fc, and ``logits_unbiased``, the fc without its bias,
which the Inception Score is computed from (openai/improved-gan's
``inception_score/model.py`` multiplies pool3 by the ``softmax/logits/MatMul`` weight only;
torch-fidelity's ``feature_layer_isc`` default is likewise ``logits_unbiased``).

Weights are never shipped or downloaded: the user supplies pytorch-fid's release file
``pt_inception-2015-12-05-6726825d.pth`` (a zip-format ``torch.save`` state dict), which is
sha256-checked and read without executing pickled code (`colorjax.models.torch_zip`). Its
parameter names are this module's, e.g. ``Mixed_5b.branch1x1.conv.weight`` ->
``params/Mixed_5b/branch1x1/conv/kernel``. Outputs agree with an independent PyTorch forward
(benchmarks/torch_inception.py; tests/test_inception.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from colorjax.models.torch_weights import TorchWeightsError
from colorjax.models.torch_zip import load_torch

FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"
URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FILE_NAME}"
# The file's full sha256 (its name carries the first 8 hex digits, torch hub's convention).
# Published beside that URL in genforce/genforce metrics/inception.py (_MODEL_URL_SHA256,
# 'tf_inception_v3'); other projects pin the same digest for the same 95,628,359-byte file
# (e.g. as torch-fidelity's byte-identical weights-inception-2015-12-05-6726825d.pth).
SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INPUT_SIZE = 299
NUM_CLASSES = 1008
FEATURE_DIM = 2048
BN_EPS = 1e-3


class InceptionWeightsError(ValueError):
    """The Inception weight file is missing, not the expected one, or not readable."""


class BasicConv(nn.Module):
    """Conv (no bias) -> BatchNorm (running statistics, eps 1e-3) -> ReLU; torch's
    ``BasicConv2d`` with its ``conv`` and ``bn`` children."""

    features: int
    kernel: tuple[int, int]
    strides: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        ph, pw = self.padding
        x = nn.Conv(self.features, self.kernel, strides=self.strides,
                    padding=((ph, ph), (pw, pw)), use_bias=False, name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name="bn")(x)
        return nn.relu(x)


def _avg_pool_3x3(x):
    # TensorFlow's average pool: the padding is not counted in the average.
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x):
    return nn.max_pool(x, (3, 3), (2, 2), "VALID")


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(64, (1, 1), name="branch1x1")(x)
        b5 = BasicConv(48, (1, 1), name="branch5x5_1")(x)
        b5 = BasicConv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = BasicConv(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """The 35 -> 17 grid reduction (Mixed_6a)."""

    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(384, (3, 3), strides=2, name="branch3x3")(x)
        bd = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = BasicConv(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c = self.channels_7x7
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        b1 = BasicConv(192, (1, 1), name="branch1x1")(x)
        b7 = BasicConv(c, (1, 1), name="branch7x7_1")(x)
        b7 = BasicConv(c, **row, name="branch7x7_2")(b7)
        b7 = BasicConv(192, **col, name="branch7x7_3")(b7)
        bd = BasicConv(c, (1, 1), name="branch7x7dbl_1")(x)
        bd = BasicConv(c, **col, name="branch7x7dbl_2")(bd)
        bd = BasicConv(c, **row, name="branch7x7dbl_3")(bd)
        bd = BasicConv(c, **col, name="branch7x7dbl_4")(bd)
        bd = BasicConv(192, **row, name="branch7x7dbl_5")(bd)
        bp = BasicConv(192, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """The 17 -> 8 grid reduction (Mixed_7a)."""

    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(192, (1, 1), name="branch3x3_1")(x)
        b3 = BasicConv(320, (3, 3), strides=2, name="branch3x3_2")(b3)
        b7 = BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
    """Mixed_7b (average pool branch) and Mixed_7c (``max_pool=True``: the FID graph's
    3x3 max pool, stride 1, padding 1)."""

    max_pool: bool = False

    @nn.compact
    def __call__(self, x):
        row, col = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1), padding=(1, 0))
        b1 = BasicConv(320, (1, 1), name="branch1x1")(x)
        b3 = BasicConv(384, (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate([BasicConv(384, **row, name="branch3x3_2a")(b3),
                              BasicConv(384, **col, name="branch3x3_2b")(b3)], axis=-1)
        bd = BasicConv(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([BasicConv(384, **row, name="branch3x3dbl_3a")(bd),
                              BasicConv(384, **col, name="branch3x3dbl_3b")(bd)], axis=-1)
        pooled = (nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1))) if self.max_pool
                  else _avg_pool_3x3(x))
        bp = BasicConv(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """(N, 299, 299, 3) in [-1, 1] -> {"pool3": (N, 2048), "logits": (N, 1008),
    "logits_unbiased": (N, 1008)}. See the module docstring."""

    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, x):
        x = BasicConv(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3_s2(x)
        x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool_3x3_s2(x)
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        for name, c in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160),
                        ("Mixed_6e", 192)):
            x = InceptionC(c, name=name)(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, name="Mixed_7c")(x)
        pool3 = jnp.mean(x, axis=(1, 2))
        fc = nn.Dense(self.num_classes, name="fc")
        logits = fc(pool3)
        return {"pool3": pool3, "logits": logits,
                "logits_unbiased": logits - fc.variables["params"]["bias"]}


def preprocess(rgb: jax.Array) -> jax.Array:
    """RGB (N, H, W, 3) in [0, 1] -> (N, 299, 299, 3) in [-1, 1], as pytorch-fid does."""
    n, h, w, c = rgb.shape
    if (h, w) != (INPUT_SIZE, INPUT_SIZE):
        rgb = jax.image.resize(rgb, (n, INPUT_SIZE, INPUT_SIZE, c), "bilinear",
                               antialias=False)
    return 2.0 * rgb - 1.0


@jax.jit
def inception_apply(variables: Any, rgb: jax.Array) -> dict:
    """The outputs of `FIDInceptionV3` for RGB images (N, H, W, 3) in [0, 1]."""
    return FIDInceptionV3().apply(variables, preprocess(rgb.astype(jnp.float32)))


# --- weights -----------------------------------------------------------------------------


def expected_shapes() -> Any:
    """The variables' shapes, {"params", "batch_stats"} (no computation)."""
    x = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
    return jax.tree.map(lambda a: a.shape,
                        jax.eval_shape(FIDInceptionV3().init, jax.random.key(0), x))


# Flax leaf name -> (torch suffix, whether the array is transposed from torch's layout)
_LEAVES = {("params", "kernel"): "weight", ("params", "scale"): "weight",
           ("params", "bias"): "bias", ("batch_stats", "mean"): "running_mean",
           ("batch_stats", "var"): "running_var"}


def _to_flax(name: str, a: np.ndarray) -> np.ndarray:
    if name == "kernel" and a.ndim == 4:
        return np.transpose(a, (2, 3, 1, 0))  # torch (O, I, kh, kw) -> flax (kh, kw, I, O)
    if name == "kernel":
        return a.T  # fc: torch (out, in) -> flax (in, out)
    return a


def convert_state_dict(sd: dict) -> dict:
    """pytorch-fid's Inception state dict (NumPy arrays) -> Flax variables, strictly: every
    variable must be there with its shape, and nothing else but BatchNorm's
    ``num_batches_tracked`` counters. Raises KeyError / ValueError naming the first
    mismatch."""
    if not isinstance(sd, dict):
        raise ValueError(f"the file holds a {type(sd).__name__}, not a state dict")
    shapes = expected_shapes()
    used = set()
    out: dict = {}
    for path, shape in jax.tree_util.tree_flatten_with_path(
            shapes, is_leaf=lambda s: isinstance(s, tuple))[0]:
        keys = [p.key for p in path]
        collection, *modules, leaf = keys
        key = ".".join(modules + [_LEAVES[(collection, leaf)]])
        if key not in sd:
            raise KeyError(f"the state dict has no {key!r}")
        a = sd[key]
        if not isinstance(a, np.ndarray) or a.dtype != np.float32:
            raise ValueError(f"{key!r} is not a float32 tensor")
        a = _to_flax(leaf, a)
        if a.shape != tuple(shape):
            raise ValueError(f"{key!r} has shape {a.shape} (as Flax), expected {tuple(shape)}")
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = np.ascontiguousarray(a)
        used.add(key)
    extra = sorted(k for k in sd if k not in used and not str(k).endswith(".num_batches_tracked"))
    if extra:
        raise KeyError(f"unexpected state dict keys {extra[:5]}")
    return out


_CACHE: dict[str, dict] = {}  # sha256 of a file's bytes -> its variables


def load_inception(path: str | Path, expected_sha256: str | None = SHA256) -> dict:
    """Flax variables {"params", "batch_stats"} of the FID Inception from pytorch-fid's
    ``pt_inception-2015-12-05-6726825d.pth`` at `path`, cached per file content.

    The file must have the sha256 `expected_sha256`; only Python callers (tests with
    weights they made) may pass None to skip that check; no command-line flag does. The
    bytes that were hashed are the bytes parsed. Raises `InceptionWeightsError` with a
    one-line reason.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise InceptionWeightsError(f"{p} is not a file (expected pytorch-fid's "
                                    f"{FILE_NAME}, from {URL})")
    data = p.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and found != expected_sha256:
        raise InceptionWeightsError(
            f"{p} has sha256 {found}, expected {expected_sha256} (pytorch-fid's "
            f"{FILE_NAME}, from {URL})")
    if found not in _CACHE:
        try:
            variables = convert_state_dict(load_torch(data))
        except (TorchWeightsError, KeyError, ValueError) as exc:
            raise InceptionWeightsError(
                f"{p} is not pytorch-fid's Inception state dict in a form read safely "
                f"({str(exc).strip(chr(39))})") from exc
        del data
        # Device arrays made outside any trace (a first call inside a jit must not cache
        # tracers).
        with jax.ensure_compile_time_eval():
            _CACHE.clear()  # one network is enough; keep memory bounded
            _CACHE[found] = jax.tree.map(jax.device_put, variables)
    return _CACHE[found]
