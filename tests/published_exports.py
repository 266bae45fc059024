"""Converted DDColor and DeOldify exports for tests, without torch: random state_dicts of the
published layouts (written in torch.save's zip layout) converted by the real CLI,
`python -m colorjax.convert --from=...`. The weights are scaled so that every layer keeps
its activations in range without the BatchNorm statistics a trained network has (He
initialisation, BatchNorm statistics of an identity, spectral norm's stored u and v chosen
so that its sigma estimate is 1, residual branches damped): the colours vary and stay
finite. That the converted networks compute what the authors' do is
tests/test_ddcolor_peer.py's and tests/test_deoldify_peer.py's.

Used by tests/conftest.py's session fixtures (`ddcolor_tiny_export`,
`deoldify_video_export`, `deoldify_artistic_export`)."""

from __future__ import annotations

import collections
import pathlib
import zipfile

import numpy as np

from test_convert import run_convert, write_torch_zip


def _spectral_u(w: np.ndarray, rng, sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) with u . (W v) = sigma: spectral norm's eval-mode weight is then w / sigma
    (`w` itself for 1)."""
    flat = w.reshape(w.shape[0], -1)
    v = rng.standard_normal(flat.shape[1]).astype(np.float32)
    v /= np.linalg.norm(v)
    y = flat @ v
    return (np.float32(sigma) * y / np.dot(y, y)).astype(np.float32), v


def _he(rng, shape, fan_in: int, gain: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape, dtype=np.float32)
            * np.float32(gain * (2.0 / fan_in) ** 0.5))


def deoldify_state(arch: str, seed: int = 0) -> collections.OrderedDict:
    """A random state_dict of DeOldify's generator `arch` ("wide": ResNet-101, the stable
    and video releases; "deep": ResNet-34, artistic) in the authors' key order."""
    from colorjax.convert.deoldify import torch_layout

    rng = np.random.default_rng(seed)
    layout = torch_layout(arch)
    out = collections.OrderedDict()
    weights = {}
    for key, shape, name, role in layout:
        part = role[0] if isinstance(role, tuple) else ""
        role = role[1] if isinstance(role, tuple) else role
        if role in ("weight", "orig", "wn_v") and len(shape) > 1:  # conv (Conv1d) kernels
            gain = 0.3 if name == "layers_11_0" else 1.0  # the output: not saturated
            w = _he(rng, shape, int(np.prod(shape[1:])), gain)
            if role == "orig":
                weights[(name, part)] = w
            out[key] = w
        elif role == "weight":  # BatchNorm's scale; a bottleneck's last one damped
            last = key.startswith("layers.0.") and key.endswith(
                "bn3.weight" if arch == "wide" else "bn2.weight")
            lo = 0.1 if last else 0.8
            out[key] = rng.uniform(lo, lo + 0.2, shape).astype(np.float32)
        elif role == "bias":
            out[key] = (rng.standard_normal(shape) * 0.05).astype(np.float32)
        elif role == "running_mean":
            out[key] = np.zeros(shape, np.float32)
        elif role == "running_var":
            out[key] = np.ones(shape, np.float32)
        elif role == "u":
            out[key], out[key[:-1] + "v"] = _spectral_u(weights[(name, part)], rng)
        elif role == "v":
            assert key in out, key  # made with u
        elif role == "g":  # weight norm: g = |v| per output channel gives v itself
            continue  # after its v (below)
        elif role == "gamma":
            out[key] = np.full(shape, 0.5, np.float32)
        else:
            raise AssertionError((key, role))
    for key, shape, name, role in layout:  # weight norm's g, in the layout's order
        if role == "g":
            v = out[key[:-1] + "v"]
            out[key] = np.linalg.norm(v.reshape(v.shape[0], -1), axis=1).reshape(shape)
    return collections.OrderedDict((k, out[k]) for k, *_ in layout)


def ddcolor_state(model: str = "ddcolor_tiny", seed: int = 0) -> collections.OrderedDict:
    """A random state_dict of DDColor (`ddcolor_tiny` or `ddcolor_large`), its keys in
    the authors' order, ImageNet's mean and std as its buffers."""
    from colorjax.convert.ddcolor import RELEASES, ddcolor_layers
    from colorjax.models.ddcolor import IMAGENET_MEAN, IMAGENET_STD

    rng = np.random.default_rng(seed)
    out = collections.OrderedDict()
    for layer in ddcolor_layers(RELEASES[model].arch):
        for key, shape in layer.tensors():
            tail = key.rsplit(".", 1)[-1]
            if layer.kind == "buffer":
                out[key] = np.asarray(IMAGENET_MEAN if key == "mean" else IMAGENET_STD,
                                      np.float32).reshape(shape)
            elif tail == "bias" or tail == "in_proj_bias":
                out[key] = (rng.standard_normal(shape) * 0.05).astype(np.float32)
            elif layer.kind in ("ln", "drop") or (layer.kind == "bn" and tail == "weight"):
                out[key] = rng.uniform(0.8, 1.2, shape).astype(np.float32)
            elif tail == "running_mean":
                out[key] = np.zeros(shape, np.float32)
            elif tail == "running_var":
                out[key] = np.ones(shape, np.float32)
            elif layer.kind == "gamma":  # ConvNeXt's layer scale
                out[key] = np.full(shape, 0.3, np.float32)
            elif layer.kind == "embed":
                out[key] = rng.standard_normal(shape, dtype=np.float32)
            elif tail == "weight_u":
                w = out[key[:-1] + "orig"]
                # The output conv (ab in Lab units) scaled up: the colours vary strongly.
                sigma = 0.02 if key.startswith("refine_net") else 1.0
                out[key], out[key[:-1] + "v"] = _spectral_u(w, rng, sigma)
            elif tail == "weight_v":
                assert key in out, key
            else:  # conv, linear and attention kernels: (out, in, ...)
                fan_in = int(np.prod(shape[1:]))
                out[key] = _he(rng, shape, fan_in, 1.0 if len(shape) == 4 else 0.7)
    return out


def convert(source: str, weights: pathlib.Path, output: pathlib.Path) -> str:
    """`python -m colorjax.convert --from=source --weights=... --output=...`: the export."""
    out = run_convert(f"--from={source}", f"--weights={weights}", f"--output={output}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"wrote {output}" in out.stdout, out.stdout[-2000:]
    return str(output)


def write_state(path: pathlib.Path, state: dict) -> pathlib.Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        write_torch_zip(z, state)
    return path
