"""DeOldify's published generators (jantic/DeOldify, MIT) as colorjax exports.

The files (`learn.save` of fastai v1) hold `{'model': state_dict, 'opt': ...}` or a bare
state_dict; the model's part is taken. Releases (README, `deoldify/visualize.py`):

* `ColorizeStable_gen.pth`, `ColorizeVideo_gen.pth`: `DynamicUnetWide`, ResNet-101 body,
  nf_factor 2 (`gen_inference_wide`);
* `ColorizeArtistic_gen.pth`: `DynamicUnetDeep`, ResNet-34 body, nf_factor 1.5
  (`gen_inference_deep`).

The expected layout is read off colorjax's Flax network (`colorjax.models.deoldify`, whose
module names are the PyTorch prefixes with '_' for '.'): a body conv is a plain Conv2d;
the last PixelShuffle_ICNR's conv is weight-normalised (fastai's default `NormType.Weight`:
weight_g, weight_v); every other conv, and the self-attention's query/key/value Conv1d,
is spectral-normalised (weight_orig, weight_u, weight_v). Folded as PyTorch computes the
weight in eval mode: weight_orig / sigma with sigma = u . (W v), W = weight_orig reshaped
(out, -1) (torch.nn.utils.spectral_norm, no power iteration in eval); g * v / |v| per
output channel (torch.nn.utils.weight_norm, dim 0).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from colorjax.convert.files import (ConversionError, flat_state_dict, read_torch_file,
                                   write_converted)

SOURCE = "https://github.com/jantic/DeOldify (MIT)"


@dataclasses.dataclass(frozen=True)
class Release:
    variant: str  # configs/deoldify.py's variant
    arch: str  # colorjax.models.deoldify.ARCHS
    file: str
    title: str


RELEASES = {
    "deoldify_stable": Release("stable", "wide", "ColorizeStable_gen.pth",
                               "DeOldify stable (DynamicUnetWide, ResNet-101)"),
    "deoldify_artistic": Release("artistic", "deep", "ColorizeArtistic_gen.pth",
                                 "DeOldify artistic (DynamicUnetDeep, ResNet-34)"),
    "deoldify_video": Release("video", "wide", "ColorizeVideo_gen.pth",
                              "DeOldify video (DynamicUnetWide, ResNet-101)"),
}
CLASS_NAMES = {"wide": "DynamicUnetWide", "deep": "DynamicUnetDeep"}


def flax_layout(arch: str) -> dict:
    """The Flax network's variables as shapes {"params": ..., "batch_stats": ...}."""
    import jax
    import jax.numpy as jnp

    from colorjax.models.deoldify import DeOldify

    m = DeOldify(arch=arch)
    shapes = jax.eval_shape(lambda: m.init(jax.random.key(0), jnp.zeros((1, 64, 64, 1))))
    return jax.tree.map(lambda s: tuple(s.shape), shapes)


def _conv_kind(name: str) -> str:
    if name.startswith("layers_0_"):
        return "plain"  # the torchvision body
    if name == "layers_8_conv_0":
        return "weight_norm"  # fastai PixelShuffle_ICNR's default NormType.Weight
    return "spectral"


# PyTorch's registration order of the named children (torchvision's Bottleneck, the U-Net
# blocks, SelfAttention); numbered children go by number.
_ORDER = {n: i for i, n in enumerate(("shuf", "bn", "conv", "conv1", "bn1", "conv2", "bn2",
                                      "conv3", "bn3", "downsample", "query", "key", "value"))}
_ORDER["conv1"] = _ORDER["conv"]


def _module_order(name: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, _ORDER.get(p, 99), p)
                 for p in name.split("_"))


def torch_layout(arch: str) -> list[tuple[str, tuple[int, ...], str, tuple]]:
    """(state_dict key, shape, Flax module, role) in the network's (PyTorch's) order."""
    out = []
    params = flax_layout(arch)["params"]
    for name in sorted(params, key=_module_order):
        p = params[name]
        t = name.replace("_", ".")  # no PyTorch name part has an underscore
        if "scale" in p:  # BatchNorm2d
            c = p["scale"][0]
            out += [(f"{t}.{k}", (c,), name, k) for k in
                    ("weight", "bias", "running_mean", "running_var")]
        elif "gamma" in p:  # SelfAttention: three spectral Conv1d (no bias), gamma
            for part in ("query", "key", "value"):
                cin, cout = p[part]["kernel"]
                out += [(f"{t}.{part}.weight_orig", (cout, cin, 1), name, (part, "orig")),
                        (f"{t}.{part}.weight_u", (cout,), name, (part, "u")),
                        (f"{t}.{part}.weight_v", (cin,), name, (part, "v"))]
            out.append((f"{t}.gamma", (1,), name, "gamma"))
        else:
            kh, kw, cin, cout = p["kernel"]
            kind = _conv_kind(name)
            w = (cout, cin, kh, kw)
            if kind == "plain":
                out.append((f"{t}.weight", w, name, "weight"))
            elif kind == "weight_norm":
                out += [(f"{t}.weight_g", (cout, 1, 1, 1), name, "g"),
                        (f"{t}.weight_v", w, name, "wn_v")]
            else:
                out += [(f"{t}.weight_orig", w, name, "orig"),
                        (f"{t}.weight_u", (cout,), name, "u"),
                        (f"{t}.weight_v", (cin * kh * kw,), name, "v")]
            if "bias" in p:
                out.append((f"{t}.bias", (cout,), name, "bias"))
    return out


def model_state_of(obj, model: str) -> dict[str, np.ndarray]:
    """The model's flat state_dict: fastai's {'model': ..., 'opt': ...} or a bare one."""
    return flat_state_dict(
        obj, f"a fastai checkpoint of {model}'s {CLASS_NAMES[RELEASES[model].arch]}", "model")


def check_layout(state: dict, model: str) -> list:
    """The layout, after ConversionError naming the first key missing, of another shape,
    or extra (BatchNorm's num_batches_tracked aside)."""
    arch = RELEASES[model].arch
    cls = CLASS_NAMES[arch]
    layout = torch_layout(arch)
    for key, shape, _, _ in layout:
        if key not in state:
            raise ConversionError(f"state_dict key {key!r} is missing: not {model}'s "
                                  f"architecture ({cls}, which has {key} of shape {shape})")
        if tuple(state[key].shape) != shape:
            raise ConversionError(f"state_dict key {key!r} has shape "
                                  f"{tuple(state[key].shape)}; {model}'s {cls} has {shape}: "
                                  "another architecture")
    known = {k for k, *_ in layout}
    for key in state:
        if key not in known and not key.endswith(".num_batches_tracked"):
            raise ConversionError(f"state_dict key {key!r} is not in {model}'s {cls}: "
                                  "another architecture")
    return layout


def spectral_weight(w: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """weight_orig / sigma, sigma = u . (W v) (torch spectral_norm in eval mode; float32
    as torch computes it)."""
    sigma = np.dot(u.astype(np.float32), w.reshape(w.shape[0], -1) @ v.astype(np.float32))
    return w / np.float32(sigma)


def weight_norm_weight(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    """g * v / |v|, the norm over all axes but the first (torch weight_norm, dim 0)."""
    v64 = v.astype(np.float64)
    norm = np.sqrt((v64 ** 2).reshape(v.shape[0], -1).sum(1)).reshape(g.shape)
    return (g.astype(np.float64) * v64 / norm).astype(np.float32)


def to_variables(state: dict, layout: list) -> dict:
    """The checked state_dict as the Flax network's {"params", "batch_stats"}."""
    by_module: dict[str, dict] = {}
    for key, _, name, role in layout:
        by_module.setdefault(name, {})[role] = np.asarray(state[key], np.float32)
    params, stats = {}, {}

    def kernel(w):  # (out, in, kh, kw) -> Flax's (kh, kw, in, out)
        return np.ascontiguousarray(w.transpose(2, 3, 1, 0))

    for name, t in by_module.items():
        if "running_mean" in t:
            params[name] = {"scale": t["weight"], "bias": t["bias"]}
            stats[name] = {"mean": t["running_mean"], "var": t["running_var"]}
        elif "gamma" in t:
            params[name] = {"gamma": t["gamma"]}
            for part in ("query", "key", "value"):
                w = spectral_weight(t[(part, "orig")], t[(part, "u")], t[(part, "v")])
                params[name][part] = {"kernel": np.ascontiguousarray(w[:, :, 0].T)}
        else:
            if "weight" in t:
                w = t["weight"]
            elif "g" in t:
                w = weight_norm_weight(t["g"], t["wn_v"])
            else:
                w = spectral_weight(t["orig"], t["u"], t["v"])
            params[name] = {"kernel": kernel(w)}
            if "bias" in t:
                params[name]["bias"] = t["bias"]
    return {"params": params, "batch_stats": stats}


def check_published_name(path: str, model: str, digest: str) -> str:
    """The provenance line; ConversionError where the name is another release's file."""
    name = os.path.basename(path)
    for other, r in RELEASES.items():
        if other != model and name == r.file:
            raise ConversionError(f"{name} is the published {other} release; convert it with "
                                  f"--from={other}")
    release = RELEASES[model]
    if name == release.file:
        return f"{name}: sha256 {digest[:16]}..., the published {model} release ({SOURCE})"
    return (f"note: {name} is not the published release's name ({release.file}); "
            f"sha256 {digest[:16]}...; converting it as {model} weights")


def read_release(path: str, model: str, say=print) -> tuple[dict, list, str]:
    """(the model's checked state_dict, its layout, the file's sha256)."""
    obj, digest = read_torch_file(path, model, RELEASES, check_published_name, say)
    state = model_state_of(obj, model)
    del obj  # the optimizer's state, if any
    return state, check_layout(state, model), digest


def convert(model: str, weights: str, output: str, say=print) -> str:
    """Convert `weights` (a DeOldify generator checkpoint) into a colorjax export at
    `output`. Returns its path; ConversionError (and ExportError) for the user's mistakes."""
    from colorjax.presets import load_config

    state, layout, digest = read_release(weights, model, say)
    variables = to_variables(state, layout)
    del state
    release = RELEASES[model]
    provenance = {"sha256": digest, "published": os.path.basename(weights) == release.file,
                  "release": release.title, "source": SOURCE}
    config = load_config("deoldify", release.variant)
    return write_converted(model, variables, config, weights, output, provenance)
