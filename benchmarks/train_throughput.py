"""Training throughput: images/s, time to first step (compile), peak memory, MFU on GPUs.

    python benchmarks/train_throughput.py --config=configs/unet.py:cpu --size=64 --batch=16
    python benchmarks/train_throughput.py --config=configs/unet.py --size=256 --batch=64 \\
        --precision=bfloat16        # on a GPU: adds model FLOPs utilization
    python benchmarks/train_throughput.py --all --size=32 --batch=8 --devices=1,2   # CPU sweep

With `--devices=1,2` each count runs in its own process with that many host CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count). Batches are synthetic (random L/ab of
the right shapes), so this measures the model and the step, not the input pipeline
(benchmarks/pipeline.py measures that). Prints one markdown row per run.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
ALL_CONFIGS = ["resnet", "unet", "gan", "unetgan", "pix2pix_resnet", "wgan", "basicvae",
               "unetvae", "unetddpm", "unetddim"]

# Dense peak FLOP/s per device by name fragment, for MFU (vendor datasheets, no sparsity).
PEAK_FLOPS = {
    "H200": {"bfloat16": 989e12, "float32": 67e12},
    "H100": {"bfloat16": 989e12, "float32": 67e12},
    "A100": {"bfloat16": 312e12, "float32": 19.5e12},
}


def peak_flops(device, precision: str) -> float | None:
    kind = getattr(device, "device_kind", "")
    for name, table in PEAK_FLOPS.items():
        if name in kind:
            return table[precision]
    return None


def synthetic_step(config, num_train_steps: int):
    """(state, jitted step, one synthetic batch, rng) for `config`'s training step: random
    L and ab of the config's batch and image size, sharded over the default mesh."""
    import jax
    import numpy as np

    from colorjax.platform import parallel
    from colorjax.training import loop as train
    from colorjax.objectives import make_objective

    size, batch = config.data.image_size, config.batch_size
    mesh = parallel.create_mesh()
    obj = make_objective(config)
    state = train.create_state(config, obj, mesh, num_train_steps)
    data = np.random.default_rng(0)
    local = {"l": data.uniform(-1, 1, (batch, size, size, 1)).astype(np.float32),
             "ab": data.uniform(-0.5, 0.5, (batch, size, size, 2)).astype(np.float32)}
    return (state, train.make_train_step(obj, mesh), parallel.shard_batch(local, mesh),
            jax.random.key(0))


def measure(config_spec: str, size: int, batch: int, steps: int, precision: str,
            features: tuple[int, ...] | None = None, *,
            attention_levels: tuple[int, ...] | None = None, num_res_blocks: int | None = None,
            dropout: float | None = None, compilation_cache: str | None = None) -> dict:
    """One config's step: images/s, compile time, memory. `compilation_cache` (a directory)
    turns on JAX's persistent compilation cache as `python -m colorjax.main` does."""
    t_start = time.perf_counter()
    from colorjax.platform import xla_cpu

    xla_cpu.configure_for_precision(precision)  # as colorjax.main does, before JAX starts
    import jax
    import numpy as np

    from colorjax.platform import runtime
    from colorjax.presets import load_config

    if compilation_cache is not None:
        runtime.enable_compilation_cache(compilation_cache)
    config = load_config(config_spec)
    config.data.image_size = size
    config.batch_size = batch
    config.precision = precision
    if features is not None:  # e.g. the widths of a PyTorch peer (vs_pytorch.py)
        config.model.features = tuple(features)
    # The diffusion UNet's other shape fields, likewise for its PyTorch peer (None: config's).
    if attention_levels is not None:
        config.model.attention_levels = tuple(attention_levels)
    if num_res_blocks is not None:
        config.model.num_res_blocks = num_res_blocks
    if dropout is not None:
        config.model.dropout = dropout
    state, step_fn, batch_arrays, rng = synthetic_step(config, steps + 1)

    t0 = time.perf_counter()
    compiled = step_fn.lower(state, batch_arrays, rng).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0
    state, m = step_fn(state, batch_arrays, rng)
    jax.block_until_ready(m["loss"])
    first_step = time.perf_counter() - t0
    startup = time.perf_counter() - t_start  # + imports, initialization (its own jit)

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = step_fn(state, batch_arrays, rng)
    jax.block_until_ready(m["loss"])
    elapsed = time.perf_counter() - t0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)

    device = jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        peak_mem, mem_kind = stats["peak_bytes_in_use"], "device"
    else:  # CPU: the process's peak resident memory
        peak_mem, mem_kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "host RSS"
    step_time = elapsed / steps
    peak = peak_flops(device, precision)
    # cost_analysis describes the compiled per-device (SPMD) program: FLOPs per device per
    # step (measured: halves from 1 to 2 devices at the same global batch).
    mfu = flops / step_time / peak if peak and flops else None
    return {
        "config": config_spec, "model": config.model.name, "size": size, "batch": batch,
        "precision": precision, "devices": jax.device_count(), "device": device.device_kind,
        "images_per_sec": batch / step_time, "step_ms": step_time * 1e3,
        "first_step_s": first_step, "startup_s": startup, "peak_mem_gb": peak_mem / 2**30, "mem_kind": mem_kind,
        "step_gflops": flops / 1e9, "mfu": mfu, "loss_finite": bool(np.isfinite(float(m["loss"]))),
        # The host's page faults and kernel time per step (host_memory.py explains why).
        "page_faults_per_step": (usage1.ru_minflt - usage0.ru_minflt) / steps,
        "kernel_ms_per_step": 1e3 * (usage1.ru_stime - usage0.ru_stime) / steps,
    }


def row(r: dict) -> str:
    mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "n/a"
    return (f"| {r['config']} | {r['size']} | {r['batch']} | {r['precision']} | {r['devices']} "
            f"| {r['images_per_sec']:.1f} | {r['step_ms']:.0f} | {r['first_step_s']:.1f} "
            f"| {r['peak_mem_gb']:.2f} ({r['mem_kind']}) | {r['step_gflops']:.1f} | {mfu} "
            f"| {r['page_faults_per_step']:.0f} | {r['kernel_ms_per_step']:.0f} |")


HEADER = ("| config | px | batch | precision | devices | img/s | ms/step | first step s "
          "| peak memory GB | GFLOP/step/device | MFU | page faults/step | kernel ms/step |\n"
          "|---|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", default=[],
                   help="config file[:variant]; repeatable")
    p.add_argument("--all", action="store_true", help="every model config, :cpu variants")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--precision", default="float32",
                   choices=["float32", "bfloat16", "bfloat16_convs"])
    p.add_argument("--devices", default="", help="e.g. 1,2: CPU device counts, one process each")
    p.add_argument("--json", default="", help="append results as JSON lines to this file")
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    configs = args.config or []
    if args.all:
        configs += [f"configs/{c}.py:cpu" for c in ALL_CONFIGS]
    if not configs:
        p.error("give --config (repeatable) or --all")

    if args.devices and not args._child:
        print(HEADER, flush=True)
        for n in [int(x) for x in args.devices.split(",")]:
            # The caller's other XLA flags are kept (e.g. a convolution library to time).
            flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}"
            env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags.strip())
            for c in configs:
                cmd = [sys.executable, __file__, "--_child", f"--config={c}",
                       f"--size={args.size}", f"--batch={args.batch}", f"--steps={args.steps}",
                       f"--precision={args.precision}"] + ([f"--json={args.json}"] if args.json else [])
                out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
                lines = [l for l in out.stdout.splitlines() if l.startswith("| configs")]
                print(lines[-1] if lines else f"| {c} | failed: {out.stderr.strip()[-300:]} |",
                      flush=True)
        return

    if not args._child:
        print(HEADER, flush=True)
    for c in configs:
        r = measure(c, args.size, args.batch, args.steps, args.precision)
        print(row(r), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()  # XLA:CPU's convolution choice, as the entry points make it
    # Time what `python -m colorjax.main` runs: with its malloc settings (host_memory.py).
    from colorjax.platform import host_memory

    host_memory.reexec_with_huge_pages()
    main()
