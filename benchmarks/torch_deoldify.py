"""A PyTorch peer of DeOldify's generators, for tests and measurements only: jantic/DeOldify's
`DynamicUnetWide` / `DynamicUnetDeep` (deoldify/unet.py, deoldify/layers.py, MIT) on the
fastai v1 layers they use (fastai/layers.py as bundled with DeOldify: PixelShuffle_ICNR,
SelfAttention, res_block, MergeLayer, SigmoidRange) and torchvision's ResNet body,
transcribed independently of colorjax's Flax network, with their state_dict layout
(spectral norm's weight_orig/u/v, weight norm's g/v). It needs only torch and numpy, runs
in `.venv-torch`, and is never imported by colorjax:

    .venv-torch/bin/python benchmarks/torch_deoldify.py check --arch=wide \\
        --input=in.npz --weights_out=w.pth [--legacy_out=w_legacy.pth] --out=out.npz

`check` builds the network with random weights, sets its BatchNorm statistics from one
training-mode pass over the input (so activations keep their scale through a hundred
layers), then perturbs them, sets every spectral norm's u and v by two power iterations
from random vectors (a stored estimate, not the converged one), gives self-attention a
nonzero gamma, scales the last layer's u so the output varies without saturating, saves
`{'model': state_dict, 'opt': Adam's state_dict}` with `torch.save` (fastai's `learn.save`;
`--legacy_out`: also in the legacy format)
and writes the network's denormalised RGB (`pred_batch(reconstruct=True)`) for `x` of the
input npz: (N, 3, S, S), ImageNet-normalised gray RGB as filters.py makes it.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # fastai imagenet_stats
SN = nn.utils.spectral_norm


# --- torchvision's ResNet body (conv1 .. layer4), by its state_dict names -----------------


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or cin != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


def resnet_body(block, depths) -> nn.Sequential:
    """create_body(arch): the model's children but avgpool and fc."""
    mods, cin = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(True),
                 nn.MaxPool2d(3, 2, 1)], 64
    for i, (n, planes) in enumerate(zip(depths, (64, 128, 256, 512))):
        blocks = []
        for b in range(n):
            blocks.append(block(cin, planes, 2 if (i > 0 and b == 0) else 1))
            cin = planes * block.expansion
        mods.append(nn.Sequential(*blocks))
    return nn.Sequential(*mods)


# --- fastai v1 / DeOldify layers ---------------------------------------------------------


def conv_sn(ni, nf, ks=3, *, bn=True, act=True, attention=False):
    """deoldify custom_conv_layer(norm_type=Spectral, extra_bn=...): spectral conv (bias
    only without BatchNorm), [ReLU], [BatchNorm], [SelfAttention]."""
    mods = [SN(nn.Conv2d(ni, nf, ks, padding=(ks - 1) // 2, bias=not bn))]
    if act:
        mods.append(nn.ReLU(True))
    if bn:
        mods.append(nn.BatchNorm2d(nf))
    if attention:
        mods.append(SelfAttention(nf))
    return nn.Sequential(*mods)


class SelfAttention(nn.Module):
    """SAGAN self-attention (fastai.layers.SelfAttention): spectral 1x1 Conv1d, no bias."""

    def __init__(self, n):
        super().__init__()
        self.query = SN(nn.Conv1d(n, n // 8, 1, bias=False))
        self.key = SN(nn.Conv1d(n, n // 8, 1, bias=False))
        self.value = SN(nn.Conv1d(n, n, 1, bias=False))
        self.gamma = nn.Parameter(torch.tensor([0.0]))

    def forward(self, x):
        b, c, h, w = x.shape
        flat = x.reshape(b, c, h * w)
        q, k, v = self.query(flat), self.key(flat), self.value(flat)
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=1)  # (b, hw, hw), over the first
        return (self.gamma * (v @ attn) + flat).reshape(b, c, h, w)


def blur_shuffle(x):
    """PixelShuffle(2), ReplicationPad2d((1, 0, 1, 0)), AvgPool2d(2, stride=1)."""
    return F.avg_pool2d(F.pad(F.pixel_shuffle(x, 2), (1, 0, 1, 0), mode="replicate"), 2, 1)


class CustomShuffle(nn.Module):
    """deoldify CustomPixelShuffle_ICNR with the spectral kwargs: conv 1x1 + BN, ReLU,
    shuffle and blur (its `if self.blur` is always true)."""

    def __init__(self, ni, nf):
        super().__init__()
        self.conv = conv_sn(ni, nf * 4, 1, act=False)

    def forward(self, x):
        return blur_shuffle(F.relu(self.conv(x)))


class FinalShuffle(nn.Module):
    """fastai PixelShuffle_ICNR(ni) with its defaults: weight-normalised 1x1 conv (bias)."""

    def __init__(self, ni):
        super().__init__()
        self.conv = nn.Sequential(nn.utils.weight_norm(nn.Conv2d(ni, ni * 4, 1)))

    def forward(self, x):
        return blur_shuffle(F.relu(self.conv(x)))


class UnetBlock(nn.Module):
    def __init__(self, up_in, skip, shuf, convs, attention):
        super().__init__()
        self.shuf = CustomShuffle(up_in, shuf)
        self.bn = nn.BatchNorm2d(skip)
        self.names = ["conv"] if len(convs) == 1 else ["conv1", "conv2"]
        for i, (name, (a, b)) in enumerate(zip(self.names, convs)):
            setattr(self, name, conv_sn(a, b, attention=attention and i == len(convs) - 1))

    def forward(self, x, s):
        up = self.shuf(x)
        if up.shape[-2:] != s.shape[-2:]:
            up = F.interpolate(up, s.shape[-2:], mode="nearest")
        x = F.relu(torch.cat([up, self.bn(s)], 1))
        for name in self.names:
            x = getattr(self, name)(x)
        return x


class ResBlock(nn.Module):
    """fastai res_block(nf, norm_type=Spectral): SequentialEx(conv_layer x2, MergeLayer)."""

    def __init__(self, n):
        super().__init__()
        self.layers = nn.ModuleList([conv_sn(n, n, bn=False), conv_sn(n, n, bn=False),
                                     nn.Identity()])

    def forward(self, x):
        return x + self.layers[1](self.layers[0](x))


class Generator(nn.Module):
    """DynamicUnetWide (wide) or DynamicUnetDeep: `self.layers` indexed as the authors'."""

    def __init__(self, arch: str):
        super().__init__()
        wide = arch == "wide"
        block, depths = (Bottleneck, (3, 4, 23, 3)) if wide else (BasicBlock, (3, 4, 6, 3))
        e, nf_factor = block.expansion, (2 if wide else 1.5)
        skips = (256 * e, 128 * e, 64 * e, 64)
        x = 512 * e
        mods = [resnet_body(block, depths), nn.BatchNorm2d(x), nn.ReLU(),
                nn.Sequential(conv_sn(x, 2 * x), conv_sn(2 * x, x))]
        for i, s in enumerate(skips):
            last = i == 3
            if wide:
                half = (512 * nf_factor if not last else 512 * nf_factor // 2) // 2
                shuf, convs = int(half), [(int(half) + s, int(half))]
            else:
                shuf = x // 2
                ni = shuf + s
                nf = int((ni // 2 if last else ni) * nf_factor)
                convs = [(ni, nf), (nf, nf)]
            mods.append(UnetBlock(x, s, shuf, convs, attention=i == 1))
            x = convs[-1][1]
        mods += [FinalShuffle(x), nn.Identity(), ResBlock(x + 3),
                 nn.Sequential(SN(nn.Conv2d(x + 3, 3, 1))), nn.Identity()]
        self.layers = nn.ModuleList(mods)

    def forward(self, inp):
        body, skips, h = self.layers[0], [], inp
        for i, m in enumerate(body):
            h = m(h)
            if i in (2, 4, 5, 6):  # the hooks: stem ReLU, layer1, layer2, layer3
                skips.append(h)
        h = self.layers[3](self.layers[2](self.layers[1](h)))
        for blk, s in zip(self.layers[4:8], skips[::-1]):
            h = blk(h, s)
        h = torch.cat([self.layers[8](h), inp], 1)  # MergeLayer(dense=True)
        h = self.layers[11](self.layers[10](h))
        return torch.sigmoid(h) * 6.0 - 3.0  # SigmoidRange(-3, 3)


# --- random weights ----------------------------------------------------------------------


def spectral_modules(model):
    for m in model.modules():
        if hasattr(m, "weight_u"):
            yield m


@torch.no_grad()
def randomise(model: Generator, x: torch.Tensor, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("weight_g"):
            p.copy_(torch.rand(p.shape, generator=g) + 0.5)
        elif name.endswith("bias"):
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        elif name.endswith("gamma"):
            p.fill_(0.7)
        elif p.ndim == 1:  # BatchNorm weight
            p.copy_(torch.rand(p.shape, generator=g) * 0.5 + 0.75)
        else:
            fan_in = p[0].numel()
            p.copy_(torch.randn(p.shape, generator=g) * (2.0 / fan_in) ** 0.5)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.momentum = 1.0  # running stats = this batch's
    model.train()
    model(x)
    model.eval()
    for m in bns:
        m.running_mean.add_(torch.randn(m.running_mean.shape, generator=g) * 0.05)
        m.running_var.mul_(torch.rand(m.running_var.shape, generator=g) * 0.4 + 0.8)
    for m in spectral_modules(model):
        w = m.weight_orig.reshape(m.weight_orig.shape[0], -1)
        v = F.normalize(torch.randn(w.shape[1], generator=g), dim=0)
        for _ in range(2):
            u = F.normalize(w @ v, dim=0)
            v = F.normalize(w.T @ u, dim=0)
        m.weight_u.copy_(u)
        m.weight_v.copy_(v)
    # The last conv: the output before the sigmoid at a std of ~0.7 (no saturation).
    last = model.layers[11][0]
    pre = {}
    hook = last.register_forward_hook(lambda mod, i, o: pre.setdefault("o", o))
    model(x)
    hook.remove()
    last.weight_u.mul_(float(pre["o"].std()) / 0.7)
    last.bias.mul_(0.7 / float(pre["o"].std()))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["check", "time"])
    p.add_argument("--arch", choices=["wide", "deep"], required=True)
    p.add_argument("--input")
    p.add_argument("--weights_out")
    p.add_argument("--legacy_out")
    p.add_argument("--out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=560)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="0: PyTorch's default")
    p.add_argument("--bf16", action="store_true", help="under torch.autocast('cpu', bfloat16)")
    a = p.parse_args()
    torch.set_num_threads(a.threads or max(1, torch.get_num_threads()))
    model = Generator(a.arch).eval()
    if a.mode == "time":  # the network alone (PIL and OpenCV are not in this Python)
        from torch_timing import autocast, report, timed

        x = torch.randn(1, 3, a.size, a.size)

        def network():
            with torch.no_grad(), autocast(a.bf16):
                model(x)

        report(f"deoldify_{a.arch}", torch.get_num_threads(), a.bf16,
               network=timed(network, a.repeats), input_size=a.size,
               num_params=sum(p.numel() for p in model.parameters()))
        return
    x = torch.from_numpy(np.load(a.input)["x"])
    randomise(model, x, a.seed)
    # fastai's learn.save: the model's state and the optimizer's (here Adam after one step
    # on the last layer, so that the file also holds the optimizer's tensors).
    last = list(model.layers[11].parameters())
    for t in model.parameters():
        t.requires_grad_(any(t is q for q in last))
    opt = torch.optim.Adam(last, lr=1e-3)
    model(x[:1]).mean().backward()
    opt.step()
    opt.zero_grad()
    ckpt = {"model": model.state_dict(), "opt": opt.state_dict()}
    torch.save(ckpt, a.weights_out)
    if a.legacy_out:  # torch < 1.6's format, which the published 2019 files may have
        torch.save(ckpt, a.legacy_out, _use_new_zipfile_serialization=False)
    with torch.no_grad():
        y = model(x)
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    rgb = y * std + mean  # pred_batch: the data's denorm (normalize(..., do_y=True))
    np.savez(a.out, rgb=rgb.numpy(), num_params=sum(t.numel() for t in model.state_dict().values()
                                                    if t.dtype.is_floating_point))


if __name__ == "__main__":
    main()
