"""colorjax's diffusion UNet (colorjax/models/diffusion_unet.py, backbone "none") in PyTorch,
for benchmarks only.

Runs in its own Python (torch is never a colorjax dependency; see benchmarks/torch_unet.py):

    .venv-torch/bin/python benchmarks/torch_diffusion_unet.py time --features=32,64,128 \\
        --attention_levels=2 --num_res_blocks=1 --size=32 --batch=16
    .venv-torch/bin/python benchmarks/torch_diffusion_unet.py sample --size=32 --batch=8
    .venv-torch/bin/python benchmarks/torch_diffusion_unet.py check --npz=IN.npz --out=OUT.npz

`check` loads colorjax's parameters (an .npz of flattened Flax paths, written by
tests/test_torch_peer.py) and writes the network's output for the stored (x_t, L, t), and a
short DDIM sample from the stored x_T. `time` times colorjax's DiffusionObjective training
step in eager PyTorch: stratified t, x_t from the schedule's ᾱ, v- or ε-target, MSE, Adam
with linear warm-up and global-norm clipping at 1, EMA with colorjax's warm-up of the decay.
`sample` times DDIM (η = 0) under torch.inference_mode(), with colorjax's timesteps and x̂_0
clipping.

Layers match colorjax's one for one: GroupNorm (eps 1e-6, Flax's default; groups by
colorjax.models.blocks.groups_for's rule), SiLU, 3x3 convs (Flax "SAME"), a 3x3 stride-2
conv down (Flax pads it (0, 1) on even sizes), nearest x2 up + 3x3 conv, multi-head
self-attention as jax.nn.dot_product_attention computes it.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torch_unet import timed_steps  # same folder: run as a script, or with it on sys.path


def groups_for(channels: int, groups: int) -> int:
    """Largest divisor of `channels` not above `groups` (colorjax.models.blocks.groups_for)."""
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return g


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups_for(channels, groups), channels, eps=1e-6)  # Flax's epsilon


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """colorjax.models.diffusion_unet.timestep_embedding: (N,) -> (N, dim), [cos, sin]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t.to(torch.float32)[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class SameConv(nn.Conv2d):
    """Conv2d padded as Flax's "SAME": total max((ceil(n/s)-1)·s + k - n, 0), the smaller
    half before. For k=3, s=1 that is (1, 1); for k=3, s=2 on even n it is (0, 1)."""

    def forward(self, x):
        pads = []
        for n, k, s in zip(x.shape[:1:-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        if pads[0] == pads[1] == pads[2] == pads[3]:  # symmetric: the conv pads, no copy
            return F.conv2d(x, self.weight, self.bias, self.stride, pads[0])
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride)


def conv(cin, cout, k=3, stride=1, zero=False):
    c = SameConv(cin, cout, k, stride)
    if zero:  # where colorjax zero-initialises (irrelevant once colorjax's params are loaded)
        nn.init.zeros_(c.weight)
        nn.init.zeros_(c.bias)
    return c


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv, + Dense(SiLU(temb)), GroupNorm-SiLU-Dropout-Conv, residual."""

    def __init__(self, cin, cout, temb_dim, dropout, groups):
        super().__init__()
        self.norm1, self.conv1 = group_norm(cin, groups), conv(cin, cout)
        self.temb = nn.Linear(temb_dim, cout)
        self.norm2 = group_norm(cout, groups)
        # Flax's Dropout with rate 0 returns its input untouched; so does Identity.
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = conv(cout, cout, zero=True)
        self.skip = conv(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return (x if self.skip is None else self.skip(x)) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over H·W, residual; the heads split qkv as colorjax's
    reshape (N, HW, 3, heads, C/heads) does."""

    def __init__(self, c, num_heads, groups):
        super().__init__()
        self.heads = math.gcd(num_heads, c)
        self.norm = group_norm(c, groups)
        self.qkv = nn.Linear(c, 3 * c)
        self.out = nn.Linear(c, c)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        n, c, h, w = x.shape
        y = self.norm(x).reshape(n, c, h * w).transpose(1, 2)           # (N, HW, C)
        qkv = self.qkv(y).reshape(n, h * w, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)                   # (N, heads, HW, d)
        # Default scale 1/sqrt(d), softmax over keys: jax.nn.dot_product_attention's.
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, h * w, c)
        return x + self.out(y).transpose(1, 2).reshape(n, c, h, w)


class TorchDiffusionUNet(nn.Module):
    """(x_t, L, t) -> ε or v (NCHW), colorjax's DiffusionUNet with backbone_width=0.

    Modules are kept in the order Flax names them (ResBlock_i, SelfAttention_i, Conv_i of
    the top level), so `load_flax` maps index to index.
    """

    def __init__(self, features=(64, 128, 256, 256), num_res_blocks=2, attention_levels=(2, 3),
                 dropout=0.1, num_heads=4, groups=32, out_channels=2, in_channels=3):
        super().__init__()
        self.features, self.num_res_blocks = list(features), num_res_blocks
        self.attention_levels = set(attention_levels)
        base = self.features[0]
        self.temb_dim = max(base, 64)
        self.temb_in = nn.Linear(self.temb_dim, 4 * base)   # Flax's Dense_1 (built second)
        self.temb_out = nn.Linear(4 * base, 4 * base)       # Flax's Dense_0
        res = lambda cin, cout: ResBlock(cin, cout, 4 * base, dropout, groups)
        attn = lambda c: SelfAttention(c, num_heads, groups)
        self.res, self.attn, self.convs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        last = len(self.features) - 1

        self.convs.append(conv(in_channels, base))
        c, skips = base, [base]
        for level, feats in enumerate(self.features):
            for _ in range(num_res_blocks):
                self.res.append(res(c, feats))
                c = feats
                if level in self.attention_levels:
                    self.attn.append(attn(c))
                skips.append(c)
            if level != last:
                self.convs.append(conv(c, c, stride=2))
                skips.append(c)
        self.res.append(res(c, self.features[-1]))
        if self.attention_levels:
            self.attn.append(attn(self.features[-1]))
        self.res.append(res(self.features[-1], self.features[-1]))
        c = self.features[-1]
        for level in reversed(range(len(self.features))):
            for _ in range(num_res_blocks + 1):
                self.res.append(res(c + skips.pop(), self.features[level]))
                c = self.features[level]
                if level in self.attention_levels:
                    self.attn.append(attn(c))
            if level != 0:
                self.convs.append(conv(c, c))
        self.norm_out = group_norm(c, groups)
        self.convs.append(conv(c, out_channels, zero=True))

    def forward(self, x_t, l, t):
        temb = self.temb_out(F.silu(self.temb_in(timestep_embedding(t, self.temb_dim))))
        res, attn, convs = iter(self.res), iter(self.attn), iter(self.convs)
        last = len(self.features) - 1
        h = next(convs)(torch.cat([x_t, l], 1))
        skips = [h]
        for level in range(len(self.features)):
            for _ in range(self.num_res_blocks):
                h = next(res)(h, temb)
                if level in self.attention_levels:
                    h = next(attn)(h)
                skips.append(h)
            if level != last:
                h = next(convs)(h)
                skips.append(h)
        h = next(res)(h, temb)
        if self.attention_levels:
            h = next(attn)(h)
        h = next(res)(h, temb)
        for level in reversed(range(len(self.features))):
            for _ in range(self.num_res_blocks + 1):
                h = next(res)(torch.cat([h, skips.pop()], 1), temb)
                if level in self.attention_levels:
                    h = next(attn)(h)
            if level != 0:
                # jax.image.resize "nearest" at exactly x2 repeats each pixel, as this does.
                h = next(convs)(F.interpolate(h, scale_factor=2, mode="nearest"))
        return next(convs)(F.silu(self.norm_out(h)))

    # --- colorjax's parameters -----------------------------------------------------------

    @torch.no_grad()
    def load_flax(self, arrays: dict) -> None:
        """Copy flattened Flax params (`params/ResBlock_0/Conv_0/kernel`, ...) in: conv
        kernels HWIO -> OIHW, Dense kernels (in, out) -> Linear weights (out, in)."""
        used = set()

        def get(key):
            used.add(key)
            return torch.from_numpy(np.ascontiguousarray(arrays[key]))

        def put(mod, path):
            if isinstance(mod, nn.Conv2d):
                mod.weight.copy_(get(f"{path}/kernel").permute(3, 2, 0, 1))
                mod.bias.copy_(get(f"{path}/bias"))
            elif isinstance(mod, nn.Linear):
                mod.weight.copy_(get(f"{path}/kernel").T)
                mod.bias.copy_(get(f"{path}/bias"))
            else:  # GroupNorm
                mod.weight.copy_(get(f"{path}/scale"))
                mod.bias.copy_(get(f"{path}/bias"))

        put(self.temb_out, "params/Dense_0")
        put(self.temb_in, "params/Dense_1")
        put(self.norm_out, "params/GroupNorm_0")
        for i, c in enumerate(self.convs):
            put(c, f"params/Conv_{i}")
        for i, r in enumerate(self.res):
            p = f"params/ResBlock_{i}"
            names = [(r.norm1, "GroupNorm_0"), (r.conv1, "Conv_0"), (r.temb, "Dense_0"),
                     (r.norm2, "GroupNorm_1"), (r.conv2, "Conv_1"), (r.skip, "Conv_2")]
            for mod, name in names:
                if mod is not None:
                    put(mod, f"{p}/{name}")
        for i, a in enumerate(self.attn):
            p = f"params/SelfAttention_{i}"
            for mod, name in [(a.norm, "GroupNorm_0"), (a.qkv, "Dense_0"), (a.out, "Dense_1")]:
                put(mod, f"{p}/{name}")
        left = sorted(k for k in arrays if k.startswith("params/") and k not in used)
        if left:
            raise ValueError(f"colorjax params with no torch counterpart: {left[:5]}")


# --- the diffusion: colorjax/diffusion/schedules.py and samplers.py -----------------------

def cosine_alphas_cumprod(timesteps: int, s: float = 0.008, max_beta: float = 0.999):
    """ᾱ of colorjax's cosine schedule: products in float64, stored as float32."""
    steps = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    f = np.cos((steps + s) / (1 + s) * np.pi / 2) ** 2
    ac = f / f[0]
    betas = np.clip(1.0 - ac[1:] / ac[:-1], 0.0, max_beta)
    return np.cumprod(1.0 - betas).astype(np.float32)


def linear_alphas_cumprod(timesteps: int):
    scale = 1000.0 / timesteps
    betas = np.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=np.float64)
    return np.cumprod(1.0 - betas).astype(np.float32)


def alphas_cumprod(schedule: str, timesteps: int):
    return (cosine_alphas_cumprod if schedule == "cosine" else linear_alphas_cumprod)(timesteps)


def ddim_timesteps(num_timesteps: int, steps: int) -> np.ndarray:
    """colorjax's spacing: `steps` timesteps evenly over 0..T-1, both ends, ascending."""
    return np.round(np.linspace(0, num_timesteps - 1, steps)).astype(np.int32)


def ddim_sample(model, l, x_T, abar: np.ndarray, steps: int, prediction: str = "v",
                clip: float | None = 4.0, data_scale: float = 4.0) -> torch.Tensor:
    """DDIM with η = 0 as colorjax's ddim_sample + DiffusionObjective.sample: x̂_0 clipped to
    [-clip, clip] and ε̂ recomputed from it; returns clip(x_0 / data_scale, -1, 1). The
    per-step constants are float32 scalars, as colorjax's abar[t] is."""
    ts = ddim_timesteps(len(abar), steps)[::-1]
    prev = np.concatenate([ts[1:], [-1]])
    abar_clean = np.concatenate([np.ones(1, np.float32), abar])
    one = np.float32(1.0)
    x = x_T
    t_vec = torch.empty(x.shape[0], dtype=torch.int32)
    for t, tp in zip(ts, prev):
        out = model(x, l, t_vec.fill_(int(t)))
        a, a_prev = abar[t], abar_clean[tp + 1]
        sa, s1 = float(np.sqrt(a)), float(np.sqrt(one - a))
        if prediction == "v":
            x0, eps = sa * x - s1 * out, s1 * x + sa * out
        else:
            eps = out
            x0 = (x - s1 * eps) / sa
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = (x - sa * x0) / s1
        x = float(np.sqrt(a_prev)) * x0 + float(np.sqrt(one - a_prev)) * eps
    return (x / data_scale).clamp(-1.0, 1.0)


def stratified_timesteps(n: int, T: int) -> torch.Tensor:
    """colorjax.objectives.diffusion.stratified_timesteps: ⌊T·((u + i/n) mod 1)⌋."""
    frac = torch.remainder(torch.rand(()) + torch.arange(n, dtype=torch.float32) / n, 1.0)
    return torch.clamp((frac * T).to(torch.int64), max=T - 1)


# --- subcommands ---------------------------------------------------------------------------

def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def build(features, num_res_blocks, attention_levels, dropout=0.0, num_heads=4, groups=32):
    return TorchDiffusionUNet(features, num_res_blocks, attention_levels, dropout, num_heads,
                              groups)


def num_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def check(npz: str, out: str) -> None:
    a = dict(np.load(npz))
    model = build([int(v) for v in a["features"]], int(a["num_res_blocks"]),
                  [int(v) for v in a["attention_levels"]], 0.0, int(a["num_heads"]),
                  int(a["groups"])).eval()
    model.load_flax(a)
    nchw = lambda k: torch.from_numpy(a[k]).permute(0, 3, 1, 2).contiguous()
    l = nchw("l")
    results = {"num_params": np.int64(num_params(model))}
    with torch.no_grad():
        y = model(nchw("x_t"), l, torch.from_numpy(a["t"]))
        results["output"] = y.permute(0, 2, 3, 1).numpy()
        if "x_T" in a:
            scale = float(a["data_scale"])
            abar = alphas_cumprod(str(a["schedule"]), int(a["timesteps"]))
            x0 = ddim_sample(model, l, nchw("x_T"), abar, int(a["ddim_steps"]),
                             str(a["prediction"]), scale, scale)
            results["ddim"] = x0.permute(0, 2, 3, 1).numpy()
    np.savez(out, **results)


def time_steps(features, attention_levels, num_res_blocks, dropout, size, batch, steps, threads,
               prediction="v", lr=5e-4, warmup_steps=100, ema_decay=0.995, data_scale=4.0,
               timesteps=1000, buckets=4, warmup=3, precision="float32") -> dict:
    """Images/s of colorjax's DiffusionObjective.train_step (configs/unetddpm.py:cpu's
    settings by default), eagerly: same data as train_throughput.measure (one fixed batch
    of uniform L in [-1, 1] and ab in [-0.5, 0.5]), fresh t and noise every step."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(features, num_res_blocks, attention_levels, dropout).train()
    params = list(model.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=lr)  # betas (0.9, 0.999), eps 1e-8: optax's defaults
    abar = torch.from_numpy(alphas_cumprod("cosine", timesteps))
    rng = np.random.default_rng(0)
    l = torch.from_numpy(rng.uniform(-1, 1, (batch, 1, size, size)).astype(np.float32))
    ab = torch.from_numpy(rng.uniform(-0.5, 0.5, (batch, 2, size, size)).astype(np.float32))
    count = [0]

    def step():
        k = count[0]
        # optax.linear_schedule(0, lr, warmup) joined to a constant: lr·min(k, W)/W at count k.
        for g in opt.param_groups:
            g["lr"] = lr * min(k, warmup_steps) / warmup_steps if warmup_steps > 0 else lr
        x0 = ab * data_scale
        t = stratified_timesteps(batch, timesteps)
        noise = torch.randn_like(x0)
        a = abar[t].view(-1, 1, 1, 1)
        sa, s1 = a.sqrt(), (1.0 - a).sqrt()
        x_t = sa * x0 + s1 * noise
        target = noise if prediction == "eps" else sa * noise - s1 * x0
        opt.zero_grad(set_to_none=True)
        # bfloat16: the network under torch.autocast (colorjax's config.precision computes
        # the network in bfloat16; the diffusion arithmetic and the loss stay float32).
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            out = model(x_t, l, t)
        per_example = ((out.float() - target) ** 2).mean(dim=(1, 2, 3))
        loss = per_example.mean()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            # colorjax's EMA warm-up: decay min(d, (1+k)/(10+k)).
            decay = min(ema_decay, (1.0 + k) / (10.0 + k))
            torch._foreach_lerp_(ema, params, 1.0 - decay)
            # The metrics colorjax's step returns: per-bucket losses, a finiteness flag.
            onehot = F.one_hot(t * buckets // timesteps, buckets).to(per_example.dtype)
            bucket = (per_example.detach() @ onehot) / onehot.sum(0).clamp(min=1.0)
            finite = torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)
        count[0] += 1
        return loss, bucket, finite

    first, elapsed, (loss, _, finite) = timed_steps(step, steps, warmup)
    return {"framework": "pytorch", "torch": torch.__version__, "threads": threads,
            "model": "unetddpm", "images_per_sec": batch * steps / elapsed,
            "step_ms": 1e3 * elapsed / steps, "first_step_s": first, "loss": float(loss.detach()),
            "loss_finite": bool(finite), "num_params": num_params(model)}


def time_sampling(features, attention_levels, num_res_blocks, size, batch, threads, steps=50,
                  repeats=1, prediction="v", data_scale=4.0, timesteps=1000) -> dict:
    """Images/s of DDIM-`steps` (η = 0) from x_T ~ N(0, I), eager, under inference_mode; the
    best of `repeats` timed runs after a 2-step warm-up run."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(features, num_res_blocks, attention_levels).eval()
    abar = alphas_cumprod("cosine", timesteps)
    l = torch.rand(batch, 1, size, size) * 2 - 1
    x_T = torch.randn(batch, 2, size, size)
    with torch.inference_mode():
        ddim_sample(model, l, x_T, abar, 2, prediction, data_scale, data_scale)
        walls = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            ddim_sample(model, l, x_T, abar, steps, prediction, data_scale, data_scale)
            walls.append(time.perf_counter() - t0)
    wall = min(walls)
    return {"framework": "pytorch", "torch": torch.__version__, "threads": threads,
            "sampler": f"DDIM-{steps}", "images_per_sec": batch / wall,
            "seconds_per_batch": wall, "ms_per_step": 1e3 * wall / steps,
            "num_params": num_params(model)}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def network(sp):
        # configs/unetddpm.py:cpu's network by default
        sp.add_argument("--features", default="32,64,128")
        sp.add_argument("--attention_levels", default="2", help="comma list; '' for none")
        sp.add_argument("--num_res_blocks", type=int, default=1)
        sp.add_argument("--size", type=int, default=32)
        sp.add_argument("--batch", type=int, default=16)
        sp.add_argument("--threads", type=int, default=2)
        sp.add_argument("--prediction", default="v", choices=["v", "eps"])

    t = sub.add_parser("time")
    network(t)
    t.add_argument("--dropout", type=float, default=0.0)
    t.add_argument("--steps", type=int, default=10)
    t.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                   help="bfloat16: the network under torch.autocast on the CPU")
    s = sub.add_parser("sample")
    network(s)
    s.add_argument("--steps", type=int, default=50, help="DDIM steps")
    s.add_argument("--repeats", type=int, default=1)
    c = sub.add_parser("check")
    c.add_argument("--npz", required=True)
    c.add_argument("--out", required=True)
    a = p.parse_args()
    if a.cmd == "check":
        check(a.npz, a.out)
    elif a.cmd == "time":
        print(json.dumps(time_steps(_ints(a.features), _ints(a.attention_levels),
                                    a.num_res_blocks, a.dropout, a.size, a.batch, a.steps,
                                    a.threads, a.prediction, precision=a.precision)))
    else:
        print(json.dumps(time_sampling(_ints(a.features), _ints(a.attention_levels),
                                       a.num_res_blocks, a.size, a.batch, a.threads, a.steps,
                                       a.repeats, a.prediction)))


if __name__ == "__main__":
    main()
