"""A PyTorch peer of DDColor (Kang et al., ICCV 2023; piddnad/DDColor, Apache-2.0), for tests
and measurements only: the network of `ddcolor/model.py` and its helpers
(`basicsr/archs/ddcolor_arch_utils/`: ConvNeXt, fastai's UNet pieces, the transformer
layers, DETR's sine position embedding) transcribed independently of colorjax's Flax one,
with the authors' state_dict layout, and their whole inference pipeline
(`ddcolor/pipeline.py`'s `ColorizationPipeline.process`). OpenCV is not in this Python: its
two calls there are transcribed in NumPy from OpenCV's float code paths (`cv2.resize`'s
INTER_LINEAR; `cvtColor`'s BGR2Lab and Lab2BGR for float32, D65, sRGB gamma). It is never
imported by colorjax and runs in its own Python, `.venv-torch`:

    .venv-torch/bin/python benchmarks/torch_ddcolor.py check --size=tiny --input=in.npz \\
        --input_size=64 --weights_out=w.pth --out=out.npz

`check` builds the network with random weights (BatchNorm statistics calibrated on the first
photo by one pass in training mode, which also runs spectral_norm's power iteration; then
random affine norms and a refine layer scaled so that the colours vary strongly), saves the
state_dict with `torch.save`, and writes to `--out` the pipeline's output for each photo
`photo<k>` (H, W, 3) uint8 of the input npz (a gray photo as three equal channels, as
cv2.imread reads it): `rgb<k>` (H, W, 3) uint8 and `ab<k>` (S, S, 2), Lab units.

    .venv-torch/bin/python benchmarks/torch_ddcolor.py time --size=tiny --photo=512x768

times the authors' pipeline on one photo (random weights), for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SIZES = {"tiny": ([3, 3, 9, 3], [96, 192, 384, 768]),
         "large": ([3, 3, 27, 3], [192, 384, 768, 1536])}


# --- ConvNeXt (convnext.py) ----------------------------------------------------------------


class ChannelsFirstLN(nn.Module):
    def __init__(self, c: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(c)), nn.Parameter(torch.zeros(c))
        self.eps = eps

    def forward(self, x):
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        return self.weight[:, None, None] * (x - mu) / torch.sqrt(var + self.eps) \
            + self.bias[:, None, None]


class Block(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1, self.pwconv2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, depths, dims):
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), ChannelsFirstLN(dims[0]))]
            + [nn.Sequential(ChannelsFirstLN(dims[i]), nn.Conv2d(dims[i], dims[i + 1], 2, 2))
               for i in range(3)])
        self.stages = nn.ModuleList(nn.Sequential(*[Block(d) for _ in range(n)])
                                    for n, d in zip(depths, dims))
        for i, d in enumerate(dims):
            self.add_module(f"norm{i}", ChannelsFirstLN(d))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)  # the classifier's; unused

    def forward(self, x):
        feats = []
        for i in range(4):
            x = self.stages[i](self.downsample_layers[i](x))
            feats.append(getattr(self, f"norm{i}")(x))
        return feats


class Encoder(nn.Module):
    def __init__(self, size: str):
        super().__init__()
        self.arch = ConvNeXt(*SIZES[size])


# --- the pixel decoder (unet.py) -------------------------------------------------------------


def sn_conv(cin: int, cout: int, k: int, bias: bool) -> nn.Module:
    return nn.utils.spectral_norm(nn.Conv2d(cin, cout, k, padding=(k - 1) // 2, bias=bias))


class Shuffle(nn.Module):
    """CustomPixelShuffle_ICNR with its blur."""

    def __init__(self, cin: int, cout: int, scale: int, extra_bn: bool):
        super().__init__()
        layers = [sn_conv(cin, cout * scale * scale, 1, bias=not extra_bn)]
        if extra_bn:
            layers.append(nn.BatchNorm2d(cout * scale * scale))
        self.conv = nn.Sequential(*layers)
        self.shuf = nn.PixelShuffle(scale)

    def forward(self, x):
        x = self.shuf(F.relu(self.conv(x)))
        return F.avg_pool2d(F.pad(x, (1, 0, 1, 0), mode="replicate"), 2, stride=1)


class UnetBlockWide(nn.Module):
    def __init__(self, cin: int, skip: int, cout: int):
        super().__init__()
        self.shuf = Shuffle(cin, cout, 2, extra_bn=True)
        self.bn = nn.BatchNorm2d(skip)
        self.conv = nn.Sequential(sn_conv(cout + skip, cout, 3, bias=False), nn.ReLU(),
                                  nn.BatchNorm2d(cout))

    def forward(self, up_in, s):
        return self.conv(F.relu(torch.cat([self.shuf(up_in), self.bn(s)], 1)))


# --- the colour decoder (model.py, transformer_utils.py, position_encoding.py) ---------------


def sine_pos(n: int, h: int, w: int, feats: int = 128) -> torch.Tensor:
    ones = torch.ones(n, h, w)
    y = ones.cumsum(1)
    x = ones.cumsum(2)
    y = y / (y[:, -1:, :] + 1e-6) * 2 * np.pi
    x = x / (x[:, :, -1:] + 1e-6) * 2 * np.pi
    t = torch.arange(feats, dtype=torch.float32)
    t = 10000 ** (2 * (t // 2) / feats)

    def enc(c):
        p = c[..., None] / t
        return torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), 4).flatten(3)

    return torch.cat((enc(y), enc(x)), 3).permute(0, 3, 1, 2)


class AttnLayer(nn.Module):
    def __init__(self, attr: str, d: int = 256):
        super().__init__()
        self.attr = attr
        setattr(self, attr, nn.MultiheadAttention(d, 8))
        self.norm = nn.LayerNorm(d)

    def forward(self, tgt, memory, pos, query_pos):  # sequence-first (L, N, C)
        q = tgt + query_pos
        k = q if memory is None else memory + pos
        v = tgt if memory is None else memory
        return self.norm(tgt + getattr(self, self.attr)(q, k, v)[0])


class FFN(nn.Module):
    def __init__(self, d: int = 256, hidden: int = 2048):
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(d, hidden), nn.Linear(hidden, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))


class MLP(nn.Module):
    def __init__(self, d: int = 256):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(d, d) for _ in range(3))

    def forward(self, x):
        return self.layers[2](F.relu(self.layers[1](F.relu(self.layers[0](x)))))


class ColorDecoder(nn.Module):
    def __init__(self, queries: int, scales: int, layers: int, d: int = 256):
        super().__init__()
        self.scales, self.num_layers = scales, layers
        self.query_feat = nn.Embedding(queries, d)
        self.query_embed = nn.Embedding(queries, d)
        self.level_embed = nn.Embedding(scales, d)
        self.input_proj = nn.ModuleList(nn.Conv2d(c, d, 1) for c in (512, 512, 256))
        self.transformer_self_attention_layers = nn.ModuleList(
            AttnLayer("self_attn") for _ in range(layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            AttnLayer("multihead_attn") for _ in range(layers))
        self.transformer_ffn_layers = nn.ModuleList(FFN() for _ in range(layers))
        self.decoder_norm = nn.LayerNorm(d)
        self.color_embed = MLP(d)

    def forward(self, xs, img):
        n = img.shape[0]
        src = [(self.input_proj[i](f).flatten(2) + self.level_embed.weight[i][None, :, None])
               .permute(2, 0, 1) for i, f in enumerate(xs)]
        pos = [sine_pos(n, f.shape[2], f.shape[3]).flatten(2).permute(2, 0, 1) for f in xs]
        qpos = self.query_embed.weight[:, None].repeat(1, n, 1)
        out = self.query_feat.weight[:, None].repeat(1, n, 1)
        for i in range(self.num_layers):
            s = i % self.scales
            out = self.transformer_cross_attention_layers[i](out, src[s], pos[s], qpos)
            out = self.transformer_self_attention_layers[i](out, None, None, qpos)
            out = self.transformer_ffn_layers[i](out)
        emb = self.color_embed(self.decoder_norm(out).transpose(0, 1))
        return torch.einsum("bqc,bchw->bqhw", emb, img)


class Decoder(nn.Module):
    def __init__(self, dims, queries: int, scales: int, layers: int, nf: int = 512):
        super().__init__()
        self.layers = nn.Sequential(UnetBlockWide(dims[3], dims[2], nf),
                                    UnetBlockWide(nf, dims[1], nf),
                                    UnetBlockWide(nf, dims[0], nf // 2))
        self.last_shuf = Shuffle(nf // 2, nf // 2, 4, extra_bn=False)
        self.color_decoder = ColorDecoder(queries, scales, layers)

    def forward(self, feats):
        out0 = self.layers[0](feats[3], feats[2])
        out1 = self.layers[1](out0, feats[1])
        out2 = self.layers[2](out1, feats[0])
        return self.color_decoder([out0, out1, out2], self.last_shuf(out2))


class DDColor(nn.Module):
    def __init__(self, size: str, queries: int = 100, scales: int = 3, layers: int = 9):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.encoder = Encoder(size)
        self.decoder = Decoder(SIZES[size][1], queries, scales, layers)
        self.refine_net = nn.Sequential(nn.Sequential(sn_conv(queries + 3, 2, 1, bias=True)))

    def forward(self, x):
        x = (x - self.mean) / self.std
        maps = self.decoder(self.encoder.arch(x))
        return self.refine_net(torch.cat([maps, x], 1))


# --- OpenCV's float paths, in NumPy (imgproc/src/color_lab.cpp, resize.cpp) ----------------

_M_RGB2XYZ = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
                       [0.019334, 0.119193, 0.950227]])
_M_XYZ2RGB = np.array([[3.240479, -1.53715, -0.498535], [-0.969256, 1.875991, 0.041556],
                       [0.055648, -0.204043, 1.057311]])
_WHITE = np.array([0.950456, 1.0, 1.088754])


def cv_rgb2lab(rgb: np.ndarray) -> np.ndarray:
    """cvtColor(COLOR_RGB2Lab) of float RGB in [0, 1]: L in [0, 100], ab in Lab units."""
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = lin @ (_M_RGB2XYZ / _WHITE[:, None]).T
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    y = xyz[..., 1]
    L = np.where(y > 0.008856, 116 * f[..., 1] - 16, 903.3 * y)
    return np.stack([L, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def cv_lab2rgb(lab: np.ndarray) -> np.ndarray:
    """cvtColor(COLOR_Lab2RGB) to float RGB, clipped to [0, 1] before the sRGB gamma."""
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    low = L <= 8.0  # OpenCV's lThresh, (6/29)^3 * 903.3 rounded to 8
    y = np.where(low, L / 903.3, ((L + 16) / 116) ** 3)
    fy = np.where(low, 7.787 * y + 16 / 116, (L + 16) / 116)
    fxz = np.stack([fy + a / 500, fy - b / 200], -1)
    fxz = np.where(fxz <= 6 / 29, (fxz - 16 / 116) / 7.787, fxz ** 3)  # no clip of Z
    xyz = np.stack([fxz[..., 0], y, fxz[..., 1]], -1)
    lin = np.clip(xyz @ (_M_XYZ2RGB * _WHITE[None, :]).T, 0, 1)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)


def cv_resize_linear(img: np.ndarray, size: int) -> np.ndarray:
    """cv2.resize(img, (size, size)) with INTER_LINEAR for a float image: source x =
    (dx + 0.5) * scale - 0.5, below 0 -> 0, at or past the last pixel -> the last."""
    def axis(n_in):
        fx = (np.arange(size) + 0.5) * (n_in / size) - 0.5
        sx = np.floor(fx).astype(int)
        fx = fx - sx
        fx[sx < 0], sx[sx < 0] = 0, 0
        last = sx >= n_in - 1
        fx[last], sx[last] = 0, n_in - 1
        return sx, np.minimum(sx + 1, n_in - 1), fx

    y0, y1, fy = axis(img.shape[0])
    x0, x1, fx = axis(img.shape[1])
    rows = img[y0] * (1 - fy)[:, None, None] + img[y1] * fy[:, None, None]
    return rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]


def pipeline(model: nn.Module, rgb_u8: np.ndarray, input_size: int):
    """ColorizationPipeline.process on an RGB photo: (RGB uint8 result, ab at input_size)."""
    h, w = rgb_u8.shape[:2]
    img = (rgb_u8 / 255.0).astype(np.float32).astype(np.float64)
    orig_l = cv_rgb2lab(img)[..., :1]
    small_l = cv_rgb2lab(cv_resize_linear(img, input_size))[..., :1]
    gray = cv_lab2rgb(np.concatenate([small_l, 0 * small_l, 0 * small_l], -1))
    x = torch.from_numpy(gray.transpose(2, 0, 1).astype(np.float32))[None]
    with torch.inference_mode():
        ab = model(x)
        ab_full = F.interpolate(ab, size=(h, w))[0].numpy().transpose(1, 2, 0)
    out = cv_lab2rgb(np.concatenate([orig_l, ab_full.astype(np.float64)], -1))
    return (out * 255.0).round().astype(np.uint8), ab[0].numpy().transpose(1, 2, 0)


# --- random weights that colour strongly ----------------------------------------------------


def build(size: str, seed: int, rgb_u8: np.ndarray, input_size: int) -> nn.Module:
    torch.manual_seed(seed)
    model = DDColor(size)
    g = torch.Generator().manual_seed(seed + 1)
    rand = lambda t, s=1.0: torch.randn(t.shape, generator=g) * s
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):  # layer scale: blocks that do something
                p.copy_(rand(p, 0.3))
            elif name.endswith("bias"):
                p.copy_(rand(p, 0.1))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 1.0  # the calibration pass sets the running statistics
        model.train()  # also spectral_norm's power iteration: u, v consistent with W
        x = torch.from_numpy(cv_resize_linear(rgb_u8 / 255.0, input_size)
                             .transpose(2, 0, 1).astype(np.float32))[None]
        model(x)
        model.eval()
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm, ChannelsFirstLN)):
                m.weight.copy_(1 + rand(m.weight, 0.2))
                m.bias.copy_(rand(m.bias, 0.1))
        # The refine layer: ab of std ~25 around a colour (its u scaled: sigma, so W / sigma).
        _, ab = pipeline(model, rgb_u8, input_size)
        conv = model.refine_net[0][0]
        conv.weight_u.mul_(float(ab.std()) / 25.0)
        conv.bias.copy_(torch.tensor([12.0, 20.0]))
    return model


def check(args):
    data = np.load(args.input)
    photos = [data[f"photo{k}"] for k in range(len(data.files))]
    model = build(args.size, args.seed, photos[0], args.input_size)
    torch.save(model.state_dict(), args.weights_out)
    out = {"num_params": sum(p.numel() for p in model.parameters())}
    for k, photo in enumerate(photos):
        out[f"rgb{k}"], out[f"ab{k}"] = pipeline(model, photo, args.input_size)
    np.savez(args.out, **out)


def time_model(args):
    """The network alone on (1, 3, S, S) and the authors' whole pipeline on an H x W photo."""
    from torch_timing import autocast, report, timed

    torch.set_num_threads(args.threads)
    h, w = map(int, args.photo.split("x"))
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    model = DDColor(args.size).eval()
    x = torch.rand(1, 3, args.input_size, args.input_size)

    def network():
        with torch.inference_mode(), autocast(args.bf16):
            model(x)

    def in_precision(t):  # the network under autocast, its ab back in float32
        with autocast(args.bf16):
            return model(t).float()

    def photo():
        pipeline(in_precision, rgb, args.input_size)

    report(f"ddcolor_{args.size}", args.threads, args.bf16,
           network=timed(network, args.repeats), photo=timed(photo, args.repeats),
           photo_size=args.photo, input_size=args.input_size,
           num_params=sum(p.numel() for p in model.parameters()))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("--size", choices=sorted(SIZES), required=True)
    c.add_argument("--input", required=True)
    c.add_argument("--input_size", type=int, default=512)
    c.add_argument("--weights_out", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("time")
    t.add_argument("--size", choices=sorted(SIZES), required=True)
    t.add_argument("--photo", default="512x768", help="HxW of the photo")
    t.add_argument("--input_size", type=int, default=512)
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--bf16", action="store_true", help="under torch.autocast('cpu', bfloat16)")
    args = p.parse_args()
    {"check": check, "time": time_model}[args.cmd](args)


if __name__ == "__main__":
    main()
