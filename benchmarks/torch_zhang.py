"""A PyTorch peer of Zhang et al.'s released colorizers, for tests and measurements only:
the networks of richzhang/colorization (`colorizers/eccv16.py`, `colorizers/siggraph17.py`,
BSD-2) transcribed independently of colorjax's Flax ones, with their state_dict layout, and
the torch half of the authors' demo pipeline (`colorizers/util.py`: the network on the
256x256 L, then `F.interpolate(mode='bilinear')` of ab to the photo's size). The PIL and
scikit-image half (bicubic resize of the RGB photo, rgb2lab, lab2rgb) runs in the caller's
Python (tests/test_zhang_peer.py), so this file needs only torch and numpy. It is never
imported by colorjax and runs in its own Python, `.venv-torch`:

    .venv-torch/bin/python benchmarks/torch_zhang.py check --model=eccv16 \\
        --input=in.npz --weights_out=w.pth [--legacy_out=w_legacy.pth] --out=out.npz

`check` builds the network with random weights, calibrates its BatchNorm statistics on the
input (one pass in training mode, so activations keep their scale through 20-odd layers),
scales the output layer so that the colours vary strongly (ECCV16: peaked distributions over
random bins; SIGGRAPH17: tanh inputs of unit scale), saves the state_dict with `torch.save`
(zip format; `--legacy_out` also the legacy format), and writes to `--out` the network's
ab (Lab units) at 256 (`ab`) and upsampled to the photo's size (`ab_full`). The input npz
holds `l_rs` (N, 256, 256) and `l_orig` (H, W) L in [0, 100], and for siggraph17 optionally
`hint_ab` (N, 256, 256, 2) Lab units and `hint_mask` (N, 256, 256).

    .venv-torch/bin/python benchmarks/torch_zhang.py time --model=eccv16 --size=512x768

times the authors' torch path on one photo (network + upsampling), for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

L_CENT, L_NORM, AB_NORM = 50.0, 100.0, 110.0  # base_color.py


def vgg_block(cin: int, widths, *, stride_last: int = 1, dilation: int = 1,
              lead_relu: bool = False, norm: bool = True) -> nn.Sequential:
    """[ReLU,] (Conv3x3, ReLU)*, BatchNorm: the release's Sequential layout (so indices
    and state_dict keys match)."""
    mods = [nn.ReLU(True)] if lead_relu else []
    for k, w in enumerate(widths):
        stride = stride_last if k == len(widths) - 1 else 1
        mods += [nn.Conv2d(cin, w, 3, stride=stride, padding=dilation, dilation=dilation,
                           bias=True), nn.ReLU(True)]
        cin = w
    if norm:
        mods.append(nn.BatchNorm2d(cin))
    return nn.Sequential(*mods)


class ECCV16(nn.Module):
    def __init__(self, w: int = 64, bins: int = 313):
        super().__init__()
        self.model1 = vgg_block(1, [w, w], stride_last=2)
        self.model2 = vgg_block(w, [2 * w] * 2, stride_last=2)
        self.model3 = vgg_block(2 * w, [4 * w] * 3, stride_last=2)
        self.model4 = vgg_block(4 * w, [8 * w] * 3)
        self.model5 = vgg_block(8 * w, [8 * w] * 3, dilation=2)
        self.model6 = vgg_block(8 * w, [8 * w] * 3, dilation=2)
        self.model7 = vgg_block(8 * w, [8 * w] * 3)
        self.model8 = nn.Sequential(
            nn.ConvTranspose2d(8 * w, 4 * w, 4, stride=2, padding=1, bias=True), nn.ReLU(True),
            nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.ReLU(True),
            nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.ReLU(True),
            nn.Conv2d(4 * w, bins, 1))
        self.softmax = nn.Softmax(dim=1)
        self.model_out = nn.Conv2d(bins, 2, 1, bias=False)  # weights: the bins' ab / 110
        self.upsample4 = nn.Upsample(scale_factor=4, mode="bilinear")

    def forward(self, l):
        x = (l - L_CENT) / L_NORM
        for block in (self.model1, self.model2, self.model3, self.model4, self.model5,
                      self.model6, self.model7, self.model8):
            x = block(x)
        return self.upsample4(self.model_out(self.softmax(x))) * AB_NORM

    def output_layer(self):
        return self.model8[6]


class SIGGRAPH17(nn.Module):
    def __init__(self, w: int = 64, classes: int = 529):
        super().__init__()
        self.model1 = vgg_block(4, [w, w])
        self.model2 = vgg_block(w, [2 * w] * 2)
        self.model3 = vgg_block(2 * w, [4 * w] * 3)
        self.model4 = vgg_block(4 * w, [8 * w] * 3)
        self.model5 = vgg_block(8 * w, [8 * w] * 3, dilation=2)
        self.model6 = vgg_block(8 * w, [8 * w] * 3, dilation=2)
        self.model7 = vgg_block(8 * w, [8 * w] * 3)
        up = lambda cin, cout: nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride=2,
                                                                padding=1, bias=True))
        short = lambda cin, cout: nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1))
        self.model8up = up(8 * w, 4 * w)
        self.model8 = vgg_block(4 * w, [4 * w] * 2, lead_relu=True)
        self.model9up = up(4 * w, 2 * w)
        self.model9 = vgg_block(2 * w, [2 * w], lead_relu=True)
        self.model10up = up(2 * w, 2 * w)
        self.model10 = nn.Sequential(nn.ReLU(True), nn.Conv2d(2 * w, 2 * w, 3, padding=1),
                                     nn.LeakyReLU(negative_slope=0.2))
        self.model3short8 = short(4 * w, 4 * w)
        self.model2short9 = short(2 * w, 2 * w)
        self.model1short10 = short(w, 2 * w)
        self.model_class = nn.Sequential(nn.Conv2d(4 * w, classes, 1))  # unused by forward
        self.model_out = nn.Sequential(nn.Conv2d(2 * w, 2, 1), nn.Tanh())

    def forward(self, l, ab=None, mask=None):
        ab = torch.zeros_like(l).repeat(1, 2, 1, 1) if ab is None else ab
        mask = torch.zeros_like(l) if mask is None else mask
        c1 = self.model1(torch.cat([(l - L_CENT) / L_NORM, ab / AB_NORM, mask], 1))
        c2 = self.model2(c1[:, :, ::2, ::2])
        c3 = self.model3(c2[:, :, ::2, ::2])
        c4 = self.model4(c3[:, :, ::2, ::2])
        c7 = self.model7(self.model6(self.model5(c4)))
        c8 = self.model8(self.model8up(c7) + self.model3short8(c3))
        c9 = self.model9(self.model9up(c8) + self.model2short9(c2))
        c10 = self.model10(self.model10up(c9) + self.model1short10(c1))
        return self.model_out(c10) * AB_NORM

    def output_layer(self):
        return self.model_out[0]


MODELS = {"eccv16": ECCV16, "siggraph17": SIGGRAPH17}


def random_bins(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) distinct ab points of the grid of 10 within |ab| <= 110 (Lab units)."""
    axis = np.arange(-11, 12) * 10.0
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    grid = grid[np.hypot(grid[:, 0], grid[:, 1]) <= 110]
    return grid[rng.choice(len(grid), n, replace=False)]


def build(model: str, seed: int, inputs: tuple) -> nn.Module:
    """`model` with random weights whose output varies strongly over `inputs`."""
    torch.manual_seed(seed)
    net = MODELS[model]()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for m in net.modules():  # random, not constant, affine BatchNorm parameters
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.momentum = None  # cumulative average: one pass sets the statistics
        if model == "eccv16":
            bins = random_bins(net.model_out.weight.shape[1], rng)
            net.model_out.weight.copy_(torch.tensor(bins.T[:, :, None, None] / AB_NORM))
        net.train()
        net(*inputs)  # BatchNorm statistics of the input
        net.eval()
        # The output layer's scale: logits of std 4 (ECCV16: peaked distributions over
        # distant bins) or tanh inputs of std 1 (SIGGRAPH17: ab over most of +-110).
        layer, target = net.output_layer(), (4.0 if model == "eccv16" else 1.0)
        captured = {}
        hook = layer.register_forward_hook(lambda m, i, o: captured.setdefault("o", o))
        net(*inputs)
        hook.remove()
        s = target / float(captured["o"].std())
        layer.weight.mul_(s)
        layer.bias.mul_(s)
    return net


def torch_inputs(data, model: str) -> tuple:
    l_rs = torch.tensor(np.asarray(data["l_rs"], np.float32))[:, None]
    if model == "eccv16":
        return (l_rs,)
    n, h, w = data["l_rs"].shape
    ab = (np.asarray(data["hint_ab"], np.float32) if "hint_ab" in data
          else np.zeros((n, h, w, 2), np.float32))
    mask = (np.asarray(data["hint_mask"], np.float32) if "hint_mask" in data
            else np.zeros((n, h, w), np.float32))
    return (l_rs, torch.tensor(ab).permute(0, 3, 1, 2).contiguous(), torch.tensor(mask)[:, None])


def check(args):
    data = dict(np.load(args.input))
    inputs = torch_inputs(data, args.model)
    net = build(args.model, args.seed, inputs)
    state = net.state_dict()
    torch.save(state, args.weights_out)
    if args.legacy_out:
        torch.save(state, args.legacy_out, _use_new_zipfile_serialization=False)
    with torch.no_grad():
        ab = net(*inputs)  # (N, 2, 256, 256), Lab units
        h, w = data["l_orig"].shape
        # util.postprocess_tens: F.interpolate(out_ab, size=HW_orig, mode='bilinear')
        ab_full = F.interpolate(ab, size=(h, w), mode="bilinear") if (h, w) != ab.shape[2:] \
            else ab
    np.savez(args.out, ab=ab.permute(0, 2, 3, 1).numpy(),
             ab_full=ab_full.permute(0, 2, 3, 1).numpy(),
             num_params=sum(p.numel() for p in net.parameters()))


def time_model(args):
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.split("x"))
    net = MODELS[args.model]().eval()
    l_rs = torch.rand(1, 1, 256, 256) * 100
    times = []
    with torch.no_grad():
        for _ in range(args.repeats + 1):
            t = time.perf_counter()
            ab = net(l_rs)
            F.interpolate(ab, size=(h, w), mode="bilinear")
            times.append(time.perf_counter() - t)
    print(f"{args.model} torch {torch.__version__}, {args.threads} threads: network + "
          f"upsampling to {h}x{w}: median {np.median(times[1:]):.3f} s "
          f"(first {times[0]:.3f} s)")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("--model", choices=sorted(MODELS), required=True)
    c.add_argument("--input", required=True)
    c.add_argument("--weights_out", required=True)
    c.add_argument("--legacy_out", default="")
    c.add_argument("--out", required=True)
    c.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("time")
    t.add_argument("--model", choices=sorted(MODELS), required=True)
    t.add_argument("--size", default="512x768", help="HxW of the photo")
    t.add_argument("--repeats", type=int, default=5)
    t.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    check(args) if args.cmd == "check" else time_model(args)


if __name__ == "__main__":
    main()
