"""Sampler throughput: images/s for DDIM-50 and DDPM-1000, and the loop's cost per step
over a bare forward pass of the same network, measured in the same run.

    .venv/bin/python benchmarks/sampling.py --config=configs/unetddim.py:cpu
    .venv/bin/python benchmarks/sampling.py --config=configs/unetddpm.py --batch=64

Untrained (randomly initialised) parameters: sampling time does not depend on their values.
The goal: the sampler adds at most 10% to the network's own time per step.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from colorjax.presets import load_config  # noqa: E402
from colorjax.objectives.diffusion import DiffusionObjective  # noqa: E402


def timed(fn, *args, repeats: int) -> tuple[float, float]:
    """Best wall time and best process CPU time (all threads) of `repeats` runs after one
    compiling run, in seconds. On a machine shared with other jobs the CPU time is the
    steadier figure: it counts only this process's work."""
    jax.block_until_ready(fn(*args))
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/unetddim.py:cpu")
    p.add_argument("--batch", type=int, default=8, help="images per sampler call")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--repeats", type=int, default=3, help="timed runs (best is reported)")
    p.add_argument("--ddpm-repeats", type=int, default=1)
    p.add_argument("--skip-ddpm", action="store_true", help="DDPM-1000 is 20x DDIM-50's time")
    p.add_argument("--json", default="", help="also write the figures to this file")
    args = p.parse_args(argv)

    config = load_config(args.config)
    objective = DiffusionObjective(config)
    n, s = args.batch, args.size
    gray_l = jax.random.uniform(jax.random.key(0), (n, s, s, 1), minval=-1, maxval=1)
    state = jax.jit(objective.init)(jax.random.key(1), {"l": gray_l})
    params = objective.inference_variables(state)["params"]
    # A frozen backbone (config.model.backbone) runs once per sampler call, and in each
    # timed forward here, so its cost counts once per step below: overhead is overstated.
    frozen = state.model_state
    x = jax.random.normal(jax.random.key(2), (n, s, s, 2))
    t = jnp.full((n,), 500, jnp.int32)

    forward = jax.jit(lambda p, x, t: objective.model_fn(p, gray_l, frozen)(x, t))
    fwd_wall, fwd_cpu = timed(forward, params, x, t, repeats=max(args.repeats, 5))

    def sampler(name, steps):
        return jax.jit(lambda p, r: objective.sample(p, gray_l, r, sampler=name, steps=steps,
                                                     eta=0.0, model_state=frozen))

    rows = []
    runs = [("ddim", 50, args.repeats)]
    if not args.skip_ddpm:
        runs.append(("ddpm", objective.num_timesteps, args.ddpm_repeats))
    for name, steps, repeats in runs:
        wall, cpu = timed(sampler(name, steps), params, jax.random.key(3), repeats=repeats)
        rows.append(dict(sampler=f"{name.upper()}-{steps}", images_per_sec=n / wall,
                         seconds_per_batch=wall, ms_per_step=1e3 * wall / steps,
                         ms_forward=1e3 * fwd_wall, overhead=wall / steps / fwd_wall - 1.0,
                         cpu_ms_per_step=1e3 * cpu / steps, cpu_ms_forward=1e3 * fwd_cpu,
                         cpu_overhead=cpu / steps / fwd_cpu - 1.0))

    dev = jax.devices()[0]
    head = (f"{config.model.name} features={tuple(config.model.features)} "
            f"attention_levels={tuple(config.model.attention_levels)} "
            f"res_blocks={config.model.num_res_blocks}; batch {n} at {s}x{s}; "
            f"{jax.device_count()} x {dev.platform} ({dev.device_kind}); jax {jax.__version__}")
    print(head)
    print("| sampler | images/s | s/batch | ms/step | forward ms | overhead | "
          "CPU ms/step | CPU forward ms | CPU overhead |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['sampler']} | {r['images_per_sec']:.2f} | {r['seconds_per_batch']:.2f} | "
              f"{r['ms_per_step']:.1f} | {r['ms_forward']:.1f} | {100 * r['overhead']:+.1f}% | "
              f"{r['cpu_ms_per_step']:.1f} | {r['cpu_ms_forward']:.1f} | "
              f"{100 * r['cpu_overhead']:+.1f}% |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(dict(setup=head, rows=rows), indent=2))
    return rows


if __name__ == "__main__":
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()  # XLA:CPU's convolution choice, as the entry points make it
    # Time what `python -m colorjax.main` runs: with its malloc settings (host_memory.py).
    from colorjax.platform import host_memory

    host_memory.reexec_with_huge_pages()
    np.set_printoptions(precision=3)
    main()
