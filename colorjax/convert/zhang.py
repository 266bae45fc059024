"""Zhang et al.'s released checkpoints (richzhang/colorization, BSD-2) as colorjax exports.

The releases are plain PyTorch state_dicts saved by `torch.save`:

* `colorization_release_v2-9b330a0b.pth`: `ECCVGenerator` (colorizers/eccv16.py), ECCV 2016;
* `siggraph17-df00044c.pth`: `SIGGRAPHGenerator` (colorizers/siggraph17.py), SIGGRAPH 2017.

The part of each name after the last '-' is the start of the file's sha256 (torch.hub's
convention, which their `load_url(..., check_hash=True)` checks); so does `convert`.

Each tensor maps to one Flax parameter (`colorjax.models.zhang`, whose module names are the
PyTorch ones with '_' for '.'): a Conv2d weight (out, in, kh, kw) becomes a kernel
(kh, kw, in, out); a ConvTranspose2d weight (in, out, 4, 4), flipped in both spatial axes,
the kernel of the equivalent convolution of the dilated input (`UpConv`); a BatchNorm2d's
weight, bias, running mean and variance become scale, bias and the `batch_stats` mean and
var (`num_batches_tracked`, present or not, is not used). ECCV16's `model_out` (2, 313, 1, 1),
the fixed 1x1 convolution that decodes the softmax into ab / 110, holds the 313 bins' ab:
110 x its weight becomes `model_state["colour_bins"]["centers"]` (the release's
pts_in_hull.npy). SIGGRAPH17's `model_class` (a 529-way classifier its forward never calls)
is checked and dropped.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from colorjax.convert.files import (ConversionError, flat_state_dict, read_torch_file,
                                   write_converted)
from colorjax.models.zhang import NUM_BINS, WIDTH

AB_NORM = 110.0  # base_color.py's ab_norm: the release's outputs are ab / 110


@dataclasses.dataclass(frozen=True)
class Release:
    """One published checkpoint: its model, file name, what it is."""

    model: str  # colorjax's model name (configs/<model>.py)
    file: str  # the published file name (its suffix: the start of the sha256)
    title: str

    @property
    def sha256_prefix(self) -> str:
        return hub_hash(self.file)


RELEASES = {
    "eccv16": Release("eccv16", "colorization_release_v2-9b330a0b.pth",
                      'Zhang, Isola and Efros, "Colorful Image Colorization", ECCV 2016'),
    "siggraph17": Release("siggraph17", "siggraph17-df00044c.pth",
                          'Zhang et al., "Real-Time User-Guided Image Colorization with '
                          'Learned Deep Priors", SIGGRAPH 2017'),
}
SOURCE = "https://github.com/richzhang/colorization (BSD-2-Clause)"


def hub_hash(name: str) -> str | None:
    """The sha256 prefix a file name carries by torch.hub's convention (`name-<hex>.ext`),
    or None."""
    m = re.search(r"-([0-9a-f]{8,64})\.[^.]+$", os.path.basename(name))
    return m.group(1) if m else None


# --- the authors' architectures, as their state_dicts list them -------------------------


@dataclasses.dataclass(frozen=True)
class Layer:
    """One PyTorch module of the release: its state_dict prefix, kind and channels.
    kind: "conv" (kxk Conv2d with bias), "up" (4x4 ConvTranspose2d with bias), "bn"
    (BatchNorm2d), "bins" (ECCV16's model_out, no bias), "drop" (a Conv2d not used)."""

    name: str
    kind: str
    cin: int
    cout: int
    kernel: int = 3

    def tensors(self) -> list[tuple[str, tuple[int, ...]]]:
        """(state_dict key, shape) of this layer's tensors, in PyTorch's order."""
        k = self.kernel
        if self.kind in ("conv", "drop"):
            return [(f"{self.name}.weight", (self.cout, self.cin, k, k)),
                    (f"{self.name}.bias", (self.cout,))]
        if self.kind == "up":
            return [(f"{self.name}.weight", (self.cin, self.cout, 4, 4)),
                    (f"{self.name}.bias", (self.cout,))]
        if self.kind == "bn":
            return [(f"{self.name}.{t}", (self.cout,))
                    for t in ("weight", "bias", "running_mean", "running_var")]
        if self.kind == "bins":
            return [(f"{self.name}.weight", (self.cout, self.cin, 1, 1))]
        raise AssertionError(self.kind)


def _vgg_block(name: str, cin: int, widths: list[int], first: int = 0) -> list[Layer]:
    """conv, ReLU, conv, ReLU, ..., BatchNorm (PyTorch Sequential indices from `first`)."""
    layers, i = [], first
    for w in widths:
        layers.append(Layer(f"{name}.{i}", "conv", cin, w))
        cin, i = w, i + 2
    return layers + [Layer(f"{name}.{i}", "bn", cin, cin)]


def eccv16_layers(w: int = WIDTH, bins: int = NUM_BINS) -> list[Layer]:
    """ECCVGenerator's modules in registration order."""
    return (_vgg_block("model1", 1, [w, w]) + _vgg_block("model2", w, [2 * w] * 2)
            + _vgg_block("model3", 2 * w, [4 * w] * 3) + _vgg_block("model4", 4 * w, [8 * w] * 3)
            + _vgg_block("model5", 8 * w, [8 * w] * 3) + _vgg_block("model6", 8 * w, [8 * w] * 3)
            + _vgg_block("model7", 8 * w, [8 * w] * 3)
            + [Layer("model8.0", "up", 8 * w, 4 * w), Layer("model8.2", "conv", 4 * w, 4 * w),
               Layer("model8.4", "conv", 4 * w, 4 * w),
               Layer("model8.6", "conv", 4 * w, bins, kernel=1),
               Layer("model_out", "bins", bins, 2)])


def siggraph17_layers(w: int = WIDTH, classes: int = 529) -> list[Layer]:
    """SIGGRAPHGenerator's modules in registration order."""
    return (_vgg_block("model1", 4, [w, w]) + _vgg_block("model2", w, [2 * w] * 2)
            + _vgg_block("model3", 2 * w, [4 * w] * 3) + _vgg_block("model4", 4 * w, [8 * w] * 3)
            + _vgg_block("model5", 8 * w, [8 * w] * 3) + _vgg_block("model6", 8 * w, [8 * w] * 3)
            + _vgg_block("model7", 8 * w, [8 * w] * 3)
            + [Layer("model8up.0", "up", 8 * w, 4 * w)]
            + _vgg_block("model8", 4 * w, [4 * w] * 2, first=1)
            + [Layer("model9up.0", "up", 4 * w, 2 * w)]
            + _vgg_block("model9", 2 * w, [2 * w], first=1)
            + [Layer("model10up.0", "up", 2 * w, 2 * w), Layer("model10.1", "conv", 2 * w, 2 * w),
               Layer("model3short8.0", "conv", 4 * w, 4 * w),
               Layer("model2short9.0", "conv", 2 * w, 2 * w),
               Layer("model1short10.0", "conv", w, 2 * w),
               Layer("model_class.0", "drop", 4 * w, classes, kernel=1),
               Layer("model_out.0", "conv", 2 * w, 2, kernel=1)])


LAYERS = {"eccv16": eccv16_layers, "siggraph17": siggraph17_layers}
CLASS_NAMES = {"eccv16": "ECCVGenerator", "siggraph17": "SIGGRAPHGenerator"}


# --- reading and checking ---------------------------------------------------------------


def state_dict_of(obj, model: str) -> dict[str, np.ndarray]:
    """The file's object as a flat {key: array} state_dict (a uniform 'module.' prefix,
    nn.DataParallel's, removed); ConversionError for anything else."""
    return flat_state_dict(obj, f"a PyTorch state_dict of {model}'s {CLASS_NAMES[model]}")


def check_layout(state: dict[str, np.ndarray], model: str) -> None:
    """ConversionError naming the first key that differs from the release's architecture:
    a missing tensor or one of another shape (in PyTorch's order), then an extra one."""
    expected = [t for layer in LAYERS[model]() for t in layer.tensors()]
    for key, shape in expected:
        if key not in state:
            raise ConversionError(f"state_dict key {key!r} is missing: not {model}'s "
                                  f"architecture ({CLASS_NAMES[model]}, which has {key} of "
                                  f"shape {shape})")
        if tuple(state[key].shape) != shape:
            raise ConversionError(f"state_dict key {key!r} has shape "
                                  f"{tuple(state[key].shape)}; {model}'s "
                                  f"{CLASS_NAMES[model]} has {shape}: another architecture")
    known = {k for k, _ in expected}
    for key in state:
        if key not in known and not key.endswith(".num_batches_tracked"):
            raise ConversionError(f"state_dict key {key!r} is not in {model}'s "
                                  f"{CLASS_NAMES[model]}: another architecture")


def to_variables(state: dict[str, np.ndarray], model: str) -> dict:
    """The checked state_dict as the inference variables of colorjax's network:
    {"params", "batch_stats"} and, for eccv16, {"colour_bins"}."""
    params, stats, bins = {}, {}, None
    f32 = lambda key: np.ascontiguousarray(state[key], np.float32)
    for layer in LAYERS[model]():
        name = layer.name.replace(".", "_")
        if layer.kind == "conv":
            params[name] = {"kernel": f32(f"{layer.name}.weight").transpose(2, 3, 1, 0),
                            "bias": f32(f"{layer.name}.bias")}
        elif layer.kind == "up":
            w = f32(f"{layer.name}.weight")[:, :, ::-1, ::-1]  # (in, out, 4, 4), flipped
            params[name] = {"kernel": np.ascontiguousarray(w.transpose(2, 3, 0, 1)),
                            "bias": f32(f"{layer.name}.bias")}
        elif layer.kind == "bn":
            params[name] = {"scale": f32(f"{layer.name}.weight"),
                            "bias": f32(f"{layer.name}.bias")}
            stats[name] = {"mean": f32(f"{layer.name}.running_mean"),
                           "var": f32(f"{layer.name}.running_var")}
        elif layer.kind == "bins":
            centers = AB_NORM * f32(f"{layer.name}.weight")[:, :, 0, 0].T  # (313, 2)
            q = centers.shape[0]
            bins = {"centers": np.ascontiguousarray(centers, np.float32),
                    "weights": np.ones((q,), np.float32),
                    "prior": np.full((q,), 1.0 / q, np.float32)}
        # "drop": checked, not used
    variables = {"params": params, "batch_stats": stats}
    if bins is not None:
        variables["colour_bins"] = bins
    return variables


def check_published_name(path: str, model: str, digest: str) -> str:
    """The line to print about the file's provenance; ConversionError where its name
    carries a sha256 prefix (torch.hub's convention) that the contents do not have, or
    names the other release."""
    name = os.path.basename(path)
    release = RELEASES[model]
    for other in RELEASES.values():
        if other.model != model and name == other.file:
            raise ConversionError(f"{name} is the published {other.model} release; convert it "
                                  f"with --from={other.model}")
    prefix = hub_hash(name)
    if prefix is not None and not digest.startswith(prefix):
        raise ConversionError(
            f"its sha256 starts with {digest[:len(prefix)]}, but its name says {prefix} "
            "(torch.hub's convention: the start of the file's sha256): the file is damaged "
            f"or not {'the published ' + model + ' release' if name == release.file else 'the one its name says'}; "
            "download it again")
    if name == release.file:
        return (f"{name}: sha256 {digest[:16]}... matches the published {model} release "
                f"({SOURCE})")
    return (f"note: {name} is not the published release's name ({release.file}), so its "
            f"sha256 ({digest[:16]}...) cannot be checked against it; converting it as "
            f"{model} weights")


def read_release(path: str, model: str, say=print) -> tuple[dict, str]:
    """(the checked state_dict, the file's sha256) of `path` as `model`'s weights."""
    obj, digest = read_torch_file(path, model, RELEASES, check_published_name, say)
    state = state_dict_of(obj, model)
    check_layout(state, model)
    return state, digest


def convert(model: str, weights: str, output: str, say=print) -> str:
    """Convert `weights` (the release of `model`, or a file of its layout) into a colorjax
    export at `output` (replacing an export there; refusing anything else). Returns the
    export's path. ConversionError (and the export's ExportError) for the user's mistakes."""
    from colorjax.presets import load_config

    state, digest = read_release(weights, model, say)
    variables = to_variables(state, model)
    del state
    release = RELEASES[model]
    provenance = {"sha256": digest, "published": os.path.basename(weights) == release.file,
                  "release": release.title, "source": SOURCE}
    return write_converted(model, variables, load_config(model), weights, output, provenance)
