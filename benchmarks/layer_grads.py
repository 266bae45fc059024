"""Forward and gradient time of single layers, jitted, on this machine's CPU.

    .venv/bin/python benchmarks/layer_grads.py

The x2 upsampling of every decoder (16x16x128 -> 32x32x64, batch 16) as `nn.ConvTranspose`
and as colorjax's sub-pixel `ConvTranspose4x4`, and the stride-2 down convs (4x4: UNet,
generators, discriminators; 3x3: diffusion UNet) as `nn.Conv` and as `blocks.Conv`, beside
a 3x3 conv of the same width, at the three levels of the `:cpu` UNet at 64 px; and the
diffusion UNet's upsampling (nearest x2 resize, 3x3 conv) at its two `:cpu` levels, as
written before and as `blocks.Conv(upsample_nearest=True)`; and 1x1 convs (the diffusion
UNet's residual shortcuts, every output head) as `nn.Conv` and as `blocks.Conv` (a matmul).
Gradients are of both the parameters and the input. Median of 5 calls, milliseconds.
"""

from __future__ import annotations

import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from colorjax.models.blocks import Conv, ConvTranspose4x4  # noqa: E402


def median_ms(fn, *args, calls: int = 5) -> float:
    """Median wall time of `calls` calls of `fn` (jitted here), after one that compiles."""
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def row(name: str, module: nn.Module, x) -> str:
    params = module.init(jax.random.key(1), x)
    loss = lambda p, x: jnp.sum(module.apply(p, x) ** 2)  # noqa: E731
    fwd = median_ms(loss, params, x)
    grad = median_ms(jax.grad(loss, argnums=(0, 1)), params, x)
    return f"| {name} | {tuple(x.shape)} | {fwd:.1f} | {grad:.1f} |"


class ResizeThenConv(nn.Module):
    """Nearest x2 resize, then a 3x3 conv: the diffusion UNet's upsampling as it was."""

    features: int

    @nn.compact
    def __call__(self, x):
        n, h, w, c = x.shape
        return nn.Conv(self.features, (3, 3))(
            jax.image.resize(x, (n, 2 * h, 2 * w, c), "nearest"))


def main():
    print("| layer | input | forward ms | gradient ms |\n|---|---|---:|---:|")
    for size, ch in ((16, 128), (32, 64)):
        x = jax.random.normal(jax.random.key(0), (16, size, size, ch))
        print(row(f"nearest resize + nn.Conv 3x3 {ch}->{ch}", ResizeThenConv(ch), x))
        print(row(f"blocks.Conv 3x3 {ch}->{ch} upsample_nearest (sub-pixel)",
                  Conv(ch, (3, 3), upsample_nearest=True), x))
    for size, cin, cout in ((64, 96, 32), (32, 192, 64), (16, 256, 128)):
        x = jax.random.normal(jax.random.key(0), (16, size, size, cin))
        print(row(f"nn.Conv 1x1 {cin}->{cout}", nn.Conv(cout, (1, 1)), x))
        print(row(f"blocks.Conv 1x1 {cin}->{cout} (matmul)", Conv(cout, (1, 1)), x))
    x = jax.random.normal(jax.random.key(0), (16, 16, 16, 128))
    print(row("nn.ConvTranspose 4x4 s2 128->64",
              nn.ConvTranspose(64, (4, 4), strides=(2, 2), padding="SAME", use_bias=False), x))
    print(row("ConvTranspose4x4 (sub-pixel) 128->64", ConvTranspose4x4(64, use_bias=False), x))
    for size, ch in ((64, 16), (32, 32), (16, 64)):
        x = jax.random.normal(jax.random.key(0), (16, size, size, ch))
        print(row(f"nn.Conv 4x4 s2 {ch}->{ch}",
                  nn.Conv(ch, (4, 4), strides=2, padding="SAME", use_bias=False), x))
        print(row(f"blocks.Conv 4x4 s2 {ch}->{ch} (space-to-depth input gradient)",
                  Conv(ch, (4, 4), strides=2, padding="SAME", use_bias=False), x))
        print(row(f"nn.Conv 3x3 s2 {ch}->{ch}",
                  nn.Conv(ch, (3, 3), strides=2, padding="SAME", use_bias=False), x))
        print(row(f"blocks.Conv 3x3 s2 {ch}->{ch} (space-to-depth input gradient)",
                  Conv(ch, (3, 3), strides=2, padding="SAME", use_bias=False), x))
        print(row(f"nn.Conv 3x3 {ch}->{ch}", nn.Conv(ch, (3, 3), padding="SAME", use_bias=False), x))


if __name__ == "__main__":
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()  # XLA:CPU's convolution choice, as the entry points make it
    # Time what `python -m colorjax.main` runs: with its malloc settings (host_memory.py).
    from colorjax.platform import host_memory

    host_memory.reexec_with_huge_pages()
    main()
