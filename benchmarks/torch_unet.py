"""colorjax's UNet (colorjax/models/unet.py) written in PyTorch, for benchmarks only.

Runs in its own Python (torch is never a colorjax dependency; on the build machines:
`python3 -m venv .venv-torch && .venv-torch/bin/pip install torch==2.13.0 numpy`):

    .venv-torch/bin/python benchmarks/torch_unet.py time --features=16,32,64,128 --size=64 --batch=16
    .venv-torch/bin/python benchmarks/torch_unet.py time --features=16,32,64,128 --profile=15
    .venv-torch/bin/python benchmarks/torch_unet.py check --npz=PARAMS.npz   # see vs_pytorch.py
    .venv-torch/bin/python benchmarks/torch_unet.py colorize --npz=PHOTOS.npz \\
        --params=PARAMS.npz --size=64 --batch=8     # see colorize_throughput.py

`check` loads colorjax's parameters (an .npz of flattened Flax paths, written by
benchmarks/vs_pytorch.py) and writes the network's outputs, in eval and in train mode, for
the input stored in the same file. Layers match colorjax's one for one: 3x3 conv (SAME),
BatchNorm (momentum 0.9 in Flax = 0.1 in PyTorch, eps 1e-5), LeakyReLU(0.2), 4x4 stride-2
conv down, 4x4 stride-2 transposed conv up, 1x1 conv head with tanh.

`colorize` times colorjax's photo pipeline (colorjax/media/photo_io.py's `PhotoIO`, as
`python -m colorjax.colorize` runs it) in torch ops on decoded uint8 RGB photos: CIELAB L,
L resized to size x size, the network in eval mode, ab resized back, Lab -> sRGB with the
photo's own L, to uint8.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def conv_norm_act(cin, cout, k, s):
    # Flax "SAME" for k=3,s=1 and for k=4,s=2 (even sizes) pads 1 on each side.
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, padding=1, bias=False),
                         nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1), nn.LeakyReLU(0.2))


class TorchUNet(nn.Module):
    def __init__(self, features, in_channels=1, out_channels=2):
        super().__init__()
        f = list(features)
        self.enc, self.down = nn.ModuleList(), nn.ModuleList()
        c = in_channels
        for feats in f[:-1]:
            self.enc.append(nn.Sequential(conv_norm_act(c, feats, 3, 1),
                                          conv_norm_act(feats, feats, 3, 1)))
            self.down.append(conv_norm_act(feats, feats, 4, 2))
            c = feats
        self.mid = nn.Sequential(conv_norm_act(c, f[-1], 3, 1), conv_norm_act(f[-1], f[-1], 3, 1))
        c = f[-1]
        self.up, self.dec = nn.ModuleList(), nn.ModuleList()
        for feats in reversed(f[:-1]):
            self.up.append(nn.Sequential(nn.ConvTranspose2d(c, feats, 4, 2, padding=1, bias=False),
                                         nn.BatchNorm2d(feats, eps=1e-5, momentum=0.1),
                                         nn.LeakyReLU(0.2)))
            self.dec.append(nn.Sequential(conv_norm_act(2 * feats, feats, 3, 1),
                                          conv_norm_act(feats, feats, 3, 1)))
            c = feats
        self.head = nn.Conv2d(c, out_channels, 1)

    def forward(self, x):
        skips = []
        for enc, down in zip(self.enc, self.down):
            x = enc(x)
            skips.append(x)
            x = down(x)
        x = self.mid(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), skip], 1))
        return torch.tanh(self.head(x))

    # --- colorjax's parameters -----------------------------------------------------------

    def flax_names(self):
        """(flax module path, torch module) for every layer with parameters, in the order
        Flax names them (DoubleConv_i counts encoder, bottleneck, then decoder)."""
        n = len(self.enc)
        out = []
        def double(prefix, seq):
            out.append((f"{prefix}/ConvNormAct_0", seq[0]))
            out.append((f"{prefix}/ConvNormAct_1", seq[1]))
        for i in range(n):
            double(f"DoubleConv_{i}", self.enc[i])
            out.append((f"ConvNormAct_{i}", self.down[i]))
        double(f"DoubleConv_{n}", self.mid)
        for j in range(n):
            out.append((f"UpNormAct_{j}", self.up[j]))
            double(f"DoubleConv_{n + 1 + j}", self.dec[j])
        out.append(("OutputHead_0/Conv_0", self.head))
        return out

    @torch.no_grad()
    def load_flax(self, arrays: dict) -> None:
        def get(key):
            return torch.from_numpy(np.ascontiguousarray(arrays[key]))
        for path, mod in self.flax_names():
            if isinstance(mod, nn.Conv2d):  # the head
                mod.weight.copy_(get(f"params/{path}/kernel").permute(3, 2, 0, 1))
                mod.bias.copy_(get(f"params/{path}/bias"))
                continue
            conv, bn = mod[0], mod[1]
            if isinstance(conv, nn.ConvTranspose2d):
                # Flax correlates the dilated input with the kernel as it is; PyTorch's
                # transposed conv is the conv's gradient: the same with the kernel flipped.
                k = get(f"params/{path}/ConvTranspose_0/kernel").flip(0, 1)
                conv.weight.copy_(k.permute(2, 3, 0, 1))
            else:
                conv.weight.copy_(get(f"params/{path}/Conv_0/kernel").permute(3, 2, 0, 1))
            norm = f"{path}/Norm_0/BatchNorm_0"
            bn.weight.copy_(get(f"params/{norm}/scale"))
            bn.bias.copy_(get(f"params/{norm}/bias"))
            bn.running_mean.copy_(get(f"batch_stats/{norm}/mean"))
            bn.running_var.copy_(get(f"batch_stats/{norm}/var"))


def check(npz: str, out: str) -> None:
    arrays = dict(np.load(npz))
    features = [int(v) for v in arrays["features"]]
    model = TorchUNet(features)
    model.load_flax(arrays)
    x = torch.from_numpy(arrays["input"]).permute(0, 3, 1, 2)
    model.eval()
    with torch.no_grad():
        y_eval = model(x).permute(0, 2, 3, 1).numpy()
    model.train()
    with torch.no_grad():
        y_train = model(x).permute(0, 2, 3, 1).numpy()
    np.savez(out, eval=y_eval, train=y_train,
             num_params=np.int64(sum(p.numel() for p in model.parameters())))


# --- colorjax's photo pipeline (colorjax/media/photo_io.py's PhotoIO) ----------------------
# CIELAB as colorjax/color defines it (D65, scikit-image's constants): this Python has no
# colorjax (it needs JAX), so the constants are repeated here; tests/test_torch_peer.py
# checks the outputs against colorjax's Colorizer.
XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]])
D65_WHITE = np.array([0.95047, 1.0, 1.08883])
LAB_EPS, LAB_KAPPA, LAB_OFFSET = 0.008856, 7.787, 16.0 / 116.0
AB_SCALE = 110.0  # colorjax.color.AB_SCALE: network ab = Lab ab / 110; network L = L / 50 - 1


def _srgb_to_linear(v):
    return torch.where(v > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92)


# The linear value of every 8-bit level (colorjax decodes uint8 photos through the same table).
LINEAR_FROM_UINT8 = _srgb_to_linear(torch.arange(256, dtype=torch.float32) / 255.0)
# Y / Yn of linear RGB: the one XYZ row that L needs.
Y_ROW = torch.tensor(XYZ_FROM_RGB[1] / D65_WHITE[1], dtype=torch.float32)
# Linear RGB of white-scaled XYZ (row vectors): lin = xyz @ RGB_OF_XYZ.
RGB_OF_XYZ = torch.tensor((np.linalg.inv(XYZ_FROM_RGB) * D65_WHITE[None, :]).T,
                          dtype=torch.float32)


def lightness(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 sRGB (N, H, W, 3) -> CIELAB L (N, H, W) in [0, 100], float32."""
    lin = torch.index_select(LINEAR_FROM_UINT8, 0, rgb.reshape(-1).int())  # faster than lut[rgb]
    y = lin.view(rgb.shape) @ Y_ROW
    f = torch.where(y > LAB_EPS, y.pow(1.0 / 3.0), LAB_KAPPA * y + LAB_OFFSET)
    return 116.0 * f - 16.0


def lab_to_srgb_uint8(l: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """L (N, H, W) and ab (N, 2, H, W), Lab units -> sRGB uint8 (N, H, W, 3), clipped
    (colorjax.color.lab_to_rgb, then photos.to_uint8)."""
    fy = (l + 16.0) / 116.0
    fx = fy + ab[:, 0] / 500.0
    fz = torch.clamp(fy - ab[:, 1] / 200.0, min=0.0)
    f = torch.stack([fx, fy, fz], -1)
    xyz = torch.where(f > 0.2068966, f ** 3, (f - LAB_OFFSET) / LAB_KAPPA)
    lin = xyz @ RGB_OF_XYZ
    srgb = torch.where(lin > 0.0031308,
                       1.055 * torch.clamp(lin, min=0.0031308) ** (1 / 2.4) - 0.055, 12.92 * lin)
    return torch.round(torch.clamp(srgb, 0.0, 1.0) * 255.0).to(torch.uint8)


def resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear (N, C, h, w) -> (N, C, height, width), antialiased when shrinking, as
    colorjax's `photos.resize_plane` (PIL's BILINEAR) resizes."""
    shrink = height < x.shape[-2] or width < x.shape[-1]
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False,
                         antialias=shrink)


def colorize_batch(model: "TorchUNet", rgb: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 sRGB (N, H, W, 3) -> the colorized uint8 (N, H, W, 3): `PhotoIO`'s pipeline
    (call under torch.inference_mode(), with `model` in eval mode). As colorjax's
    `colorize` does it: the full-size work one photo at a time (its temporaries stay a
    photo's size), the network on the batch."""
    h, w = rgb.shape[1:3]
    ls = [lightness(photo[None]) for photo in rgb]
    l_small = torch.cat([resize(l[:, None], size, size) for l in ls])
    ab_small = model(l_small / 50.0 - 1.0) * AB_SCALE
    return torch.cat([lab_to_srgb_uint8(l, resize(ab[None], h, w))
                      for l, ab in zip(ls, ab_small)])


def colorize(npz: str, size: int, batch: int, threads: int, features=None,
             params: str = "", out: str = "") -> dict:
    """Photos/s of `colorize_batch` over the photos of `npz` ("photos": (N, H, W, 3) uint8),
    `batch` at a time, after one untimed batch; the network has `params`' weights (an npz of
    colorjax's flattened variables, with "features") or, without, a random init of `features`.
    `out`: the colorized photos are saved there ("photos")."""
    torch.set_num_threads(threads)
    photos = torch.from_numpy(np.load(npz)["photos"])
    if params:
        arrays = dict(np.load(params))
        model = TorchUNet([int(v) for v in arrays["features"]])
        model.load_flax(arrays)
    else:
        torch.manual_seed(0)
        model = TorchUNet(features)
    model.eval()  # BatchNorm with the running statistics
    with torch.inference_mode():
        t0 = time.perf_counter()
        colorize_batch(model, photos[:batch], size)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        outs = [colorize_batch(model, photos[i:i + batch], size)
                for i in range(0, len(photos), batch)]
        elapsed = time.perf_counter() - t0
    if out:
        np.savez(out, photos=torch.cat(outs).numpy())
    return {"framework": "pytorch", "torch": torch.__version__, "threads": threads,
            "photos": len(photos), "seconds": elapsed, "photos_per_sec": len(photos) / elapsed,
            "first_batch_s": first}


def timed_steps(step, steps: int, warmup: int):
    """(seconds of the first call, seconds of `steps` calls after `warmup` in all, the last
    call's result) of a training step."""
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        out = step()
    return first, time.perf_counter() - t0, out


def autocast(precision: str):
    """PyTorch's CPU mixed precision for "bfloat16" (float32 weights, bfloat16 compute where
    autocast allows: what colorjax's `config.precision=bfloat16` does), else nothing."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16")


def training_step(features, size, batch, threads, precision="float32"):
    """(step, model): one training step of MSE, Adam(2e-4), global-norm clipping at 1, on a
    fixed synthetic batch; forward and loss under `autocast(precision)`."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = TorchUNet(features).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    rng = np.random.default_rng(0)
    l = torch.from_numpy(rng.uniform(-1, 1, (batch, 1, size, size)).astype(np.float32))
    ab = torch.from_numpy(rng.uniform(-0.5, 0.5, (batch, 2, size, size)).astype(np.float32))

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(precision):
            loss = torch.mean((model(l).float() - ab) ** 2)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    return step, model


def time_steps(features, size, batch, steps, threads, warmup=3, precision="float32") -> dict:
    """Images/s of `training_step`."""
    step, model = training_step(features, size, batch, threads, precision)
    first, elapsed, loss = timed_steps(step, steps, warmup)
    return {"framework": "pytorch", "torch": torch.__version__, "threads": threads,
            "images_per_sec": batch * steps / elapsed, "step_ms": 1e3 * elapsed / steps,
            "first_step_s": first, "loss": float(loss.detach()), "precision": precision,
            "num_params": sum(p.numel() for p in model.parameters())}


def profile_steps(features, size, batch, steps, threads, top, warmup=3) -> str:
    """torch.profiler's self CPU time per ATen op, per step, for `training_step` (the
    counterpart of benchmarks/profile_step.py's table for colorjax)."""
    from torch.profiler import ProfilerActivity, profile

    step, _ = training_step(features, size, batch, threads)
    for _ in range(warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    rows = [f"{steps} profiled steps, {total / 1e3 / steps:.1f} ms of self CPU time per step",
            "", "| op | ms/step | share | calls/step |", "|---|---:|---:|---:|"]
    for e in events[:top]:
        rows.append(f"| {e.key} | {e.self_cpu_time_total / 1e3 / steps:.1f} "
                    f"| {100 * e.self_cpu_time_total / total:.1f}% | {e.count // steps} |")
    return "\n".join(rows)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("time")
    t.add_argument("--features", default="16,32,64,128")
    t.add_argument("--size", type=int, default=64)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--steps", type=int, default=10)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--profile", type=int, default=0, metavar="TOP",
                   help="print torch.profiler's TOP ops per step instead of timing")
    t.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                   help="bfloat16: torch.autocast on the CPU")
    c = sub.add_parser("check")
    c.add_argument("--npz", required=True)
    c.add_argument("--out", required=True)
    z = sub.add_parser("colorize", help="photos/s of colorjax's photo pipeline in torch ops")
    z.add_argument("--npz", required=True, help='decoded photos: "photos" (N, H, W, 3) uint8')
    z.add_argument("--params", default="", help="colorjax's flattened variables (.npz with "
                   '"features"); without: random weights of --features')
    z.add_argument("--features", default="16,32,64,128")
    z.add_argument("--size", type=int, default=64, help="the working size")
    z.add_argument("--batch", type=int, default=8)
    z.add_argument("--threads", type=int, default=2)
    z.add_argument("--out", default="", help="save the colorized photos here (.npz)")
    a = p.parse_args()
    if a.cmd == "check":
        check(a.npz, a.out)
    elif a.cmd == "colorize":
        print(json.dumps(colorize(a.npz, a.size, a.batch, a.threads,
                                  [int(v) for v in a.features.split(",")], a.params, a.out)))
    else:
        features = [int(v) for v in a.features.split(",")]
        if a.profile:
            print(profile_steps(features, a.size, a.batch, a.steps, a.threads, a.profile))
            return
        print(json.dumps(time_steps(features, a.size, a.batch, a.steps, a.threads,
                                    precision=a.precision)))


if __name__ == "__main__":
    main()
