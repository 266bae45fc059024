"""DDColor's published checkpoints (piddnad/DDColor, Apache-2.0, MODEL_ZOO.md) as colorjax
exports.

The files are PyTorch state_dicts of `DDColor` (ddcolor/model.py) as `torch.save` writes
them (their loader, ddcolor/pipeline.py, also takes one wrapped as {"params": state_dict},
basicsr's training checkpoints; so does this):

* `--from=ddcolor_tiny`: `ddcolor_paper_tiny` (DDColor-T, ConvNeXt-T encoder);
* `--from=ddcolor_large`: `ddcolor_paper`, `ddcolor_modelscope`, `ddcolor_artistic`
  (DDColor-L, ConvNeXt-L encoder), which differ only in their training data.

Both as build_ddcolor_model makes them: num_queries 100, num_scales 3, dec_layers 9,
2 output channels, spectral normalisation in the decoder.

Each tensor maps to one Flax parameter (`colorjax.models.ddcolor`): a Conv2d weight
(out, in / groups, kh, kw) becomes a kernel (kh, kw, in / groups, out); a Linear weight
(out, in) a kernel (in, out); a spectral-normalised conv's `weight_orig`, `weight_u`,
`weight_v` the weight PyTorch's `spectral_norm` uses in eval mode, weight_orig / sigma with
sigma = u . (W v) from the stored vectors (no power iteration); nn.MultiheadAttention's
packed `in_proj_weight` (3D, D) one kernel (D, 3D); BatchNorm's running statistics the
`batch_stats`. ConvNeXt's final `norm` (its classification head's, which DDColor never
reads) is checked and dropped, and so are the `mean` / `std` buffers (ImageNet's; a file
with others is refused).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from colorjax.convert.files import (ConversionError, flat_state_dict, read_torch_file,
                                   write_converted)
from colorjax.models.ddcolor import FFN, HIDDEN, IMAGENET_MEAN, IMAGENET_STD, NF, Arch

SOURCE = "https://github.com/piddnad/DDColor (Apache-2.0)"
TITLE = ('Kang et al., "DDColor: Towards Photo-Realistic Image Colorization via Dual '
         'Decoders", ICCV 2023')


@dataclasses.dataclass(frozen=True)
class Release:
    """One --from choice: the config variant it converts into, and the published files."""

    variant: str  # configs/ddcolor.py's variant
    arch: Arch
    files: tuple[str, ...]  # MODEL_ZOO.md's names


RELEASES = {
    "ddcolor_tiny": Release("tiny", Arch("convnext-t"), ("ddcolor_paper_tiny",)),
    "ddcolor_large": Release("large", Arch("convnext-l"),
                             ("ddcolor_paper", "ddcolor_modelscope", "ddcolor_artistic")),
}


@dataclasses.dataclass(frozen=True)
class Layer:
    """One PyTorch module: its state_dict prefix, its Flax path and kind. kind: "conv"
    (Conv2d; `bias` whether it has one), "sn" (a spectral-normalised Conv2d), "linear",
    "ln" (LayerNorm), "bn" (BatchNorm2d), "embed" (nn.Embedding), "mha"
    (nn.MultiheadAttention), "gamma" (ConvNeXt's layer scale), "drop" (a LayerNorm not
    used), "buffer" (DDColor's mean / std)."""

    name: str
    path: tuple[str, ...]
    kind: str
    cin: int
    cout: int
    kernel: int = 1
    groups: int = 1
    bias: bool = True

    def tensors(self) -> list[tuple[str, tuple[int, ...]]]:
        """(state_dict key, shape) of this layer's tensors, in PyTorch's order."""
        n, k, o, i = self.name, self.kernel, self.cout, self.cin
        bias = [(f"{n}.bias", (o,))] if self.bias else []
        if self.kind == "conv":
            return [(f"{n}.weight", (o, i // self.groups, k, k))] + bias
        if self.kind == "sn":  # spectral_norm registers weight_orig, then u and v
            return bias + [(f"{n}.weight_orig", (o, i, k, k)), (f"{n}.weight_u", (o,)),
                           (f"{n}.weight_v", (i * k * k,))]
        if self.kind == "linear":
            return [(f"{n}.weight", (o, i)), (f"{n}.bias", (o,))]
        if self.kind in ("ln", "drop"):
            return [(f"{n}.weight", (o,)), (f"{n}.bias", (o,))]
        if self.kind == "bn":
            return [(f"{n}.{t}", (o,)) for t in ("weight", "bias", "running_mean",
                                                  "running_var")]
        if self.kind == "embed":
            return [(f"{n}.weight", (i, o))]
        if self.kind == "mha":
            return [(f"{n}.in_proj_weight", (3 * o, o)), (f"{n}.in_proj_bias", (3 * o,)),
                    (f"{n}.out_proj.weight", (o, o)), (f"{n}.out_proj.bias", (o,))]
        if self.kind == "gamma":
            return [(n, (o,))]
        if self.kind == "buffer":  # registered as a (1, 3, 1, 1) tensor
            return [(n, (1, o, 1, 1))]
        raise AssertionError(self.kind)


def _encoder(arch: Arch) -> list[Layer]:
    p, e = "encoder.arch", ("encoder",)
    layers = []
    for i, (depth, dim) in enumerate(zip(arch.depths, arch.dims)):
        d = f"downsample_layers_{i}"
        if i == 0:
            layers += [Layer(f"{p}.downsample_layers.0.0", e + (f"{d}_0",), "conv", 3, dim, 4),
                       Layer(f"{p}.downsample_layers.0.1", e + (f"{d}_1",), "ln", dim, dim)]
        else:
            prev = arch.dims[i - 1]
            layers += [Layer(f"{p}.downsample_layers.{i}.0", e + (f"{d}_0",), "ln", prev, prev),
                       Layer(f"{p}.downsample_layers.{i}.1", e + (f"{d}_1",), "conv", prev,
                             dim, 2)]
    for i, (depth, dim) in enumerate(zip(arch.depths, arch.dims)):
        for j in range(depth):
            s, f = f"{p}.stages.{i}.{j}", e + (f"stages_{i}_{j}",)
            layers += [Layer(f"{s}.gamma", f, "gamma", dim, dim),
                       Layer(f"{s}.dwconv", f + ("dwconv",), "conv", dim, dim, 7, groups=dim),
                       Layer(f"{s}.norm", f + ("norm",), "ln", dim, dim),
                       Layer(f"{s}.pwconv1", f + ("pwconv1",), "linear", dim, 4 * dim),
                       Layer(f"{s}.pwconv2", f + ("pwconv2",), "linear", 4 * dim, dim)]
    layers += [Layer(f"{p}.norm{i}", e + (f"norm{i}",), "ln", d, d)
               for i, d in enumerate(arch.dims)]
    return layers + [Layer(f"{p}.norm", (), "drop", arch.dims[-1], arch.dims[-1])]


def _unet_block(i: int, cin: int, skip: int, cout: int) -> list[Layer]:
    n, f = f"decoder.layers.{i}", ("decoder", f"layers_{i}")
    return [Layer(f"{n}.shuf.conv.0", f + ("shuf", "conv_0"), "sn", cin, 4 * cout, bias=False),
            Layer(f"{n}.shuf.conv.1", f + ("shuf", "conv_1"), "bn", 4 * cout, 4 * cout),
            Layer(f"{n}.bn", f + ("bn",), "bn", skip, skip),
            Layer(f"{n}.conv.0", f + ("conv_0",), "sn", cout + skip, cout, 3, bias=False),
            Layer(f"{n}.conv.2", f + ("conv_2",), "bn", cout, cout)]


def _color_decoder(arch: Arch) -> list[Layer]:
    n, f = "decoder.color_decoder", ("decoder", "color_decoder")
    layers = [Layer(f"{n}.query_feat", f + ("query_feat",), "embed", arch.num_queries, HIDDEN),
              Layer(f"{n}.query_embed", f + ("query_embed",), "embed", arch.num_queries,
                    HIDDEN),
              Layer(f"{n}.level_embed", f + ("level_embed",), "embed", arch.num_scales, HIDDEN)]
    layers += [Layer(f"{n}.input_proj.{i}", f + (f"input_proj_{i}",), "conv", c, HIDDEN)
               for i, c in enumerate((NF, NF, NF // 2))]  # MultiScaleColorDecoder's in_channels
    for kind in ("self_attention", "cross_attention", "ffn"):  # three ModuleLists
        for i in range(arch.dec_layers):
            t = f"transformer_{kind}_layers_{i}"
            m, g = f"{n}.transformer_{kind}_layers.{i}", f + (t,)
            if kind == "ffn":
                layers += [Layer(f"{m}.linear1", g + ("linear1",), "linear", HIDDEN, FFN),
                           Layer(f"{m}.linear2", g + ("linear2",), "linear", FFN, HIDDEN)]
            else:
                attn = "self_attn" if kind == "self_attention" else "multihead_attn"
                layers.append(Layer(f"{m}.{attn}", g + (attn,), "mha", HIDDEN, HIDDEN))
            layers.append(Layer(f"{m}.norm", g + ("norm",), "ln", HIDDEN, HIDDEN))
    layers.append(Layer(f"{n}.decoder_norm", f + ("decoder_norm",), "ln", HIDDEN, HIDDEN))
    return layers + [Layer(f"{n}.color_embed.layers.{k}", f + (f"color_embed_layers_{k}",),
                           "linear", HIDDEN, HIDDEN) for k in range(3)]


def ddcolor_layers(arch: Arch) -> list[Layer]:
    """DDColor's modules in state_dict order (a module's own tensors before its children's)."""
    dims = arch.dims
    return ([Layer("mean", (), "buffer", 3, 3), Layer("std", (), "buffer", 3, 3)]
            + _encoder(arch)
            + _unet_block(0, dims[3], dims[2], NF) + _unet_block(1, NF, dims[1], NF)
            + _unet_block(2, NF, dims[0], NF // 2)
            + [Layer("decoder.last_shuf.conv.0", ("decoder", "last_shuf", "conv_0"), "sn",
                     NF // 2, NF // 2 * 16)]
            + _color_decoder(arch)
            + [Layer("refine_net.0.0", ("refine_net_0_0",), "sn", arch.num_queries + 3, 2)])


# --- reading and checking ---------------------------------------------------------------


def state_dict_of(obj, model: str) -> dict[str, np.ndarray]:
    """The file's object as a flat {key: array} state_dict: {"params": state_dict} (basicsr's
    checkpoints, which the authors' loader takes) unwrapped, a uniform 'module.' prefix
    (nn.DataParallel's) removed; ConversionError for anything else."""
    return flat_state_dict(obj, f"a PyTorch state_dict of {model}'s DDColor", "params")


def check_layout(state: dict[str, np.ndarray], model: str) -> None:
    """ConversionError naming the first key that differs from the architecture: a missing
    tensor or one of another shape (in PyTorch's order), then an extra one."""
    arch = RELEASES[model].arch
    what = f"{model}'s DDColor ({arch.encoder} encoder, {arch.num_queries} colour queries)"
    expected = [t for layer in ddcolor_layers(arch) for t in layer.tensors()]
    for key, shape in expected:
        if key not in state:
            raise ConversionError(f"state_dict key {key!r} is missing: not {what}, which has "
                                  f"{key} of shape {shape}")
        if tuple(state[key].shape) != shape:
            raise ConversionError(f"state_dict key {key!r} has shape "
                                  f"{tuple(state[key].shape)}; {what} has {shape}: another "
                                  "architecture")
    known = {k for k, _ in expected}
    for key in state:
        if key not in known and not key.endswith(".num_batches_tracked"):
            raise ConversionError(f"state_dict key {key!r} is not in {what}: another "
                                  "architecture")
    for key, want in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
        if not np.allclose(state[key].reshape(-1), want, atol=1e-6):
            raise ConversionError(f"state_dict key {key!r} is {state[key].ravel().tolist()}, not "
                                  f"ImageNet's {list(want)} that DDColor normalises with")


def spectral_weight(state: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The weight `torch.nn.utils.spectral_norm` computes in eval mode: weight_orig / sigma,
    sigma = u . (W v), W the weight as (out, -1) and u, v the stored vectors."""
    w = state[f"{name}.weight_orig"].astype(np.float64)
    u = state[f"{name}.weight_u"].astype(np.float64)
    v = state[f"{name}.weight_v"].astype(np.float64)
    sigma = float(u @ (w.reshape(w.shape[0], -1) @ v))
    if not np.isfinite(sigma) or sigma == 0.0:
        raise ConversionError(f"state_dict key {name + '.weight_u'!r}: the spectral norm "
                              f"estimate u . (W v) is {sigma}: not a trained DDColor")
    return (w / sigma).astype(np.float32)


def _put(tree: dict, path: tuple[str, ...], leaves: dict) -> None:
    for p in path:
        tree = tree.setdefault(p, {})
    tree.update(leaves)


def to_variables(state: dict[str, np.ndarray], model: str) -> dict:
    """The checked state_dict as the inference variables of colorjax's DDColor:
    {"params", "batch_stats"}."""
    params, stats = {}, {}
    f32 = lambda key: np.ascontiguousarray(state[key], np.float32)
    conv = lambda w: np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    for layer in ddcolor_layers(RELEASES[model].arch):
        n, kind = layer.name, layer.kind
        bias = {"bias": f32(f"{n}.bias")} if layer.bias and kind in ("conv", "sn") else {}
        if kind == "conv":
            _put(params, layer.path, {"kernel": conv(f32(f"{n}.weight")), **bias})
        elif kind == "sn":
            _put(params, layer.path, {"kernel": conv(spectral_weight(state, n)), **bias})
        elif kind == "linear":
            _put(params, layer.path, {"kernel": np.ascontiguousarray(f32(f"{n}.weight").T),
                                      "bias": f32(f"{n}.bias")})
        elif kind == "ln":
            _put(params, layer.path, {"scale": f32(f"{n}.weight"), "bias": f32(f"{n}.bias")})
        elif kind == "bn":
            _put(params, layer.path, {"scale": f32(f"{n}.weight"), "bias": f32(f"{n}.bias")})
            _put(stats, layer.path, {"mean": f32(f"{n}.running_mean"),
                                     "var": f32(f"{n}.running_var")})
        elif kind == "embed":
            _put(params, layer.path, {"embedding": f32(f"{n}.weight")})
        elif kind == "mha":
            _put(params, layer.path, {
                "in_proj_kernel": np.ascontiguousarray(f32(f"{n}.in_proj_weight").T),
                "in_proj_bias": f32(f"{n}.in_proj_bias"),
                "out_proj": {"kernel": np.ascontiguousarray(f32(f"{n}.out_proj.weight").T),
                             "bias": f32(f"{n}.out_proj.bias")}})
        elif kind == "gamma":
            _put(params, layer.path, {"gamma": f32(n)})
        # "drop", "buffer": checked, not used
    return {"params": params, "batch_stats": stats}


def provenance_line(path: str, model: str, digest: str) -> str:
    """The line to print about the file: which published model its name says it is
    (MODEL_ZOO.md publishes no hashes, so its sha256 is reported, not checked);
    ConversionError where the name is the other size's published model."""
    stem = os.path.splitext(os.path.basename(path))[0]
    for other, release in RELEASES.items():
        if other != model and stem in release.files:
            raise ConversionError(f"{stem} is a published {other} model "
                                  f"({release.arch.encoder}); convert it with --from={other}")
    if stem in RELEASES[model].files:
        return f"{os.path.basename(path)}: sha256 {digest[:16]}..., published {model} ({SOURCE})"
    return (f"note: {os.path.basename(path)} is not a published name "
            f"({', '.join(RELEASES[model].files)}); sha256 {digest[:16]}...; converting it as "
            f"{model} weights")


def read_release(path: str, model: str, say=print) -> tuple[dict, str]:
    """(the checked state_dict, the file's sha256) of `path` as `model`'s weights."""
    obj, digest = read_torch_file(path, model, RELEASES, provenance_line, say)
    state = state_dict_of(obj, model)
    check_layout(state, model)
    return state, digest


def convert(model: str, weights: str, output: str, say=print) -> str:
    """Convert `weights` (a DDColor state_dict of `model`'s size) into a colorjax export at
    `output` (replacing an export there; refusing anything else). Returns the export's
    path. ConversionError (and the export's ExportError) for the user's mistakes."""
    from colorjax.presets import load_config

    state, digest = read_release(weights, model, say)
    variables = to_variables(state, model)
    del state
    stem = os.path.splitext(os.path.basename(weights))[0]
    provenance = {"sha256": digest, "published": stem in RELEASES[model].files,
                  "release": TITLE, "source": SOURCE}
    config = load_config("ddcolor", RELEASES[model].variant)
    return write_converted(model, variables, config, weights, output, provenance)
