"""The kernel gradient of a 3x3 convolution on XLA:CPU, as XLA computes it and in the other
forms tried for issue 18 (all give the same values; milliseconds, median of 10 calls).

    .venv/bin/python benchmarks/kernel_grads.py
    .venv/bin/python benchmarks/kernel_grads.py --shapes=16x8x256x256,16x16x128x128
    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= .venv/bin/python benchmarks/kernel_grads.py

`--shapes`: comma list of NxHWxCINxCOUT (x is N x HW x HW x CIN, the gradient g has COUT
channels). Under `XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=` (YNNPACK off) the `xla`
row is Eigen's convolution instead of YNNPACK's.

Why: kernel gradients are 37-42% of the UNet and diffusion UNet steps' op time
(benchmarks/profile_step.py) and run at a third to a quarter of the rate of the same
conv's forward pass and input gradient. Shapes: batch 16, the first level of the `:cpu`
UNets at 64 px (64x64x32) and a deep level (16x16x128).

- `xla`: `jax.vjp` of `lax.conv_general_dilated` (what the models use).
- `im2col`: the nine shifted copies of x side by side, one matmul over N*H*W.
- `taps`: one matmul per tap over a contiguous window of the row-flattened padded x
  (g padded with zero columns, so windows that wrap rows add nothing).
- `tiles TxT`: x cut into TxT spatial tiles with a 1-pixel halo, stacked on the batch
  axis, then XLA's kernel gradient of a VALID conv (a larger batch for the same work).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

from layer_grads import median_ms  # noqa: E402

_NHWC = ("NHWC", "HWIO", "NHWC")


def xla(x, g):
    k = jnp.zeros((3, 3, x.shape[-1], g.shape[-1]), x.dtype)
    conv = lambda k: lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=_NHWC)  # noqa: E731
    return jax.vjp(conv, k)[1](g)[0]


def im2col(x, g):
    n, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = jnp.concatenate([xp[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], -1)
    return jnp.einsum("nhwk,nhwo->ko", cols, g).reshape(3, 3, c, g.shape[-1])


def taps(x, g):
    n, h, w, c = x.shape
    wp = w + 2
    xp = jnp.pad(x, ((0, 0), (1, 2), (1, 1), (0, 0))).reshape(n, (h + 3) * wp, c)
    gp = jnp.pad(g, ((0, 0), (0, 0), (0, 2), (0, 0))).reshape(n * h * wp, -1)
    out = []
    for i in range(3):
        for j in range(3):
            window = lax.optimization_barrier(xp[:, i * wp + j:i * wp + j + h * wp])
            out.append(jnp.dot(window.reshape(-1, c).T, gp, precision="highest"))
    return jnp.stack(out).reshape(3, 3, c, g.shape[-1])


def tiles(t):
    def f(x, g):
        n, h, w, c = x.shape
        th, tw = h // t, w // t
        xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        xt = jnp.concatenate([xp[:, a * th:a * th + th + 2, b * tw:b * tw + tw + 2]
                              for a in range(t) for b in range(t)], 0)
        gt = jnp.concatenate([g[:, a * th:(a + 1) * th, b * tw:(b + 1) * tw]
                              for a in range(t) for b in range(t)], 0)
        k = jnp.zeros((3, 3, c, g.shape[-1]), x.dtype)
        conv = lambda k: lax.conv_general_dilated(xt, k, (1, 1), "VALID",  # noqa: E731
                                                  dimension_numbers=_NHWC)
        return jax.vjp(conv, k)[1](gt)[0]
    return f


def _shapes(text: str) -> list[tuple[int, int, int, int]]:
    """`--shapes`: NxHWxCINxCOUT, comma-separated; HW a multiple of 4 (the 4x4 tiles)."""
    try:
        shapes = [tuple(int(v) for v in s.split("x")) for s in text.split(",") if s.strip()]
    except ValueError:
        shapes = []
    if not shapes or any(len(s) != 4 or min(s) < 1 or s[1] % 4 for s in shapes):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a comma list of NxHWxCINxCOUT with HW a multiple of 4, "
            "e.g. 16x64x32x32,16x8x256x256")
    return shapes


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", type=_shapes, default="16x64x32x32,16x16x128x128",
                   help="comma list of NxHWxCINxCOUT")
    a = p.parse_args()
    print("| form | x | g | ms | GFLOP/s | max abs diff vs xla |\n|---|---|---|---:|---:|---:|")
    for n, hw, cin, cout in a.shapes:
        x = jax.random.normal(jax.random.key(0), (n, hw, hw, cin))
        g = jax.random.normal(jax.random.key(1), (n, hw, hw, cout))
        ref = jax.jit(xla)(x, g)
        gflop = 2 * 9 * cin * cout * n * hw * hw / 1e9
        for name, fn in (("xla", xla), ("im2col", im2col), ("taps", taps),
                         ("tiles 2x2", tiles(2)), ("tiles 4x4", tiles(4))):
            ms = median_ms(fn, x, g, calls=10)
            diff = float(jnp.max(jnp.abs(jax.jit(fn)(x, g) - ref)))
            print(f"| {name} | {tuple(x.shape)} | {tuple(g.shape)} | {ms:.1f} "
                  f"| {gflop / ms * 1e3:.0f} | {diff:.1e} |", flush=True)
        fwd = median_ms(lambda x, k: lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                                              dimension_numbers=_NHWC),
                        x, jnp.ones((3, 3, cin, cout)), calls=10)
        print(f"| (forward conv, same shapes) | {tuple(x.shape)} | | {fwd:.1f} "
              f"| {gflop / fwd * 1e3:.0f} | |", flush=True)


if __name__ == "__main__":
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()  # XLA:CPU's convolution choice, as the entry points make it
    # Time what `python -m colorjax.main` runs: with its malloc settings (host_memory.py).
    from colorjax.platform import host_memory

    host_memory.reexec_with_huge_pages()
    main()
