"""Time to first step, with and without JAX's persistent compilation cache.

    .venv/bin/python benchmarks/first_step.py --config=configs/unet.py:cpu --size=64 --batch=16

Three fresh processes per config: no cache; a cold cache (an empty directory, which the run
fills); the same cache again, warm (what a user's second run of a config sees: the CLI turns
the cache on by default, see colorjax/platform/runtime.py). Each reports "startup" (from the
start of `train_throughput.measure`, after Python's imports: JAX import, parameter
initialization and the train step's compilation and first run) and "compile + first step"
alone.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]


def child(config: str, size: int, batch: int, cache: str | None) -> dict:
    code = ("import json, sys; sys.path.insert(0, 'benchmarks'); import train_throughput as t; "
            f"r = t.measure({config!r}, {size}, {batch}, 2, 'float32', "
            f"compilation_cache={cache!r}); print('RESULT ' + json.dumps(r))")
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, check=True)
    return json.loads([l for l in out.stdout.splitlines() if l.startswith("RESULT ")][-1][7:])


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", default=[])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    a = p.parse_args()
    print("| config | px | batch | cache | startup s | compile + first step s |")
    print("|---|---:|---:|---|---:|---:|")
    for config in a.config or ["configs/unet.py:cpu"]:
        with tempfile.TemporaryDirectory() as cache:
            for label, c in (("none", None), ("cold (empty)", cache), ("warm", cache)):
                r = child(config, a.size, a.batch, c)
                print(f"| {config} | {a.size} | {a.batch} | {label} | {r['startup_s']:.1f} "
                      f"| {r['first_step_s']:.1f} |", flush=True)


if __name__ == "__main__":
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()  # XLA:CPU's convolution choice, as the entry points make it
    # Time what `python -m colorjax.main` runs: with its malloc settings (host_memory.py).
    from colorjax.platform import host_memory

    host_memory.reexec_with_huge_pages()
    main()
