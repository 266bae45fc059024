"""Depthwise convolutions on this machine's CPU: XLA's grouped convolution
(`feature_group_count` = channels, what `nn.Conv` gives) against colorjax's
`blocks.depthwise_conv` (shifted, strided slices times their taps, one fused loop), at
EfficientNet-Lite0's depthwise shapes for 224 px (batch 32) and DDColor's ConvNeXt 7x7.

    .venv/bin/python benchmarks/depthwise.py

Forward, and the gradient of both the input and the kernel; median of 5 calls after a
first (compiling) one, milliseconds; the first call's seconds beside. The process keeps
colorjax's XLA:CPU choice (`COLORJAX_CPU_CONV`, default auto: Eigen).
"""

from __future__ import annotations

import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from colorjax.platform import xla_cpu  # noqa: E402

xla_cpu.configure()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from colorjax.models.blocks import depthwise_conv  # noqa: E402

# (batch, size, channels, kernel, stride): EfficientNet-Lite0's stages at 224 px (Tan & Le
# 2019, Table 1) and DDColor-T's ConvNeXt stages at 512 px input (dims 96/192, 7x7).
SHAPES = [(32, 112, 96, 3, 2), (32, 56, 144, 3, 1), (32, 56, 144, 5, 2),
          (32, 28, 240, 5, 1), (32, 14, 480, 3, 1), (32, 14, 672, 5, 2),
          (1, 128, 96, 7, 1), (1, 64, 192, 7, 1)]


def grouped(x, w, stride, pad):
    return lax.conv_general_dilated(x, w, (stride, stride), pad,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    feature_group_count=x.shape[-1])


def shifted(x, w, stride, pad):
    return depthwise_conv(x, w, (stride, stride), pad)


def timed(f, *args, repeats=5):
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3, first


def main():
    rng = np.random.default_rng(0)
    print("| batch, size, channels, kernel, stride | forward grouped / shifted ms | "
          "gradient grouped / shifted ms | first call (s) grouped / shifted, gradient |"
          " max difference |")
    print("|---|---:|---:|---|---:|")
    for n, size, c, k, s in SHAPES:
        x = jnp.asarray(rng.standard_normal((n, size, size, c)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((k, k, 1, c)) * 0.1, jnp.float32)
        pad = ((k // 2, k // 2),) * 2
        row = {}
        for name, f in (("grouped", grouped), ("shifted", shifted)):
            fwd = jax.jit(lambda x, w, f=f: f(x, w, s, pad))
            grad = jax.jit(jax.grad(lambda x, w, f=f: (f(x, w, s, pad) ** 2).sum(),
                                    argnums=(0, 1)))
            row[name] = (*timed(fwd, x, w), *timed(grad, x, w), fwd(x, w))
        g, h = row["grouped"], row["shifted"]
        diff = float(jnp.abs(g[4] - h[4]).max())
        print(f"| {n}, {size}, {c}, {k}, {s} | {g[0]:.1f} / {h[0]:.1f} | {g[2]:.1f} / "
              f"{h[2]:.1f} | {g[1]:.2f} / {h[1]:.2f}, {g[3]:.2f} / {h[3]:.2f} | {diff:.1e} |",
              flush=True)


if __name__ == "__main__":
    main()
