"""colorjax against PyTorch on the same UNet, size and batch, on this machine's CPU.

    .venv/bin/python benchmarks/vs_pytorch.py --torch_python=.venv-torch/bin/python \\
        --features=16,32,64,128 --features=32,64,128,256 --size=64 --batch=16 --rounds=3

Each round runs colorjax's jitted training step (benchmarks/train_throughput.py's
`measure`, configs/unet.py with those widths) and PyTorch's eager step of the same network
(benchmarks/torch_unet.py: MSE, Adam, global-norm clipping at 1, 2 threads), each in its
own process, alternating, so that both see the same load. Prints the medians and the ratio
colorjax / PyTorch (images/s). `--devices=1,2` repeats colorjax with that many host devices.
torch is never a colorjax dependency: it lives in its own Python (see torch_unet.py).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def colorjax_run(features: str, size: int, batch: int, steps: int, devices: int) -> dict:
    widths = tuple(int(v) for v in features.split(","))
    code = ("import json, sys; sys.path.insert(0, 'benchmarks'); import train_throughput as t; "
            f"r = t.measure('configs/unet.py:cpu', {size}, {batch}, {steps}, 'float32', "
            f"features={widths!r}); print('RESULT ' + json.dumps(r))")
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, check=True)
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def torch_run(python: str, features: str, size: int, batch: int, steps: int, threads: int) -> dict:
    out = subprocess.run([python, "benchmarks/torch_unet.py", "time", f"--features={features}",
                          f"--size={size}", f"--batch={batch}", f"--steps={steps}",
                          f"--threads={threads}"], cwd=REPO, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--torch_python", default=".venv-torch/bin/python")
    p.add_argument("--features", action="append", default=[])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--devices", default="1")
    a = p.parse_args()
    if not os.path.exists(a.torch_python):
        sys.exit(f"error: no PyTorch Python at {a.torch_python}: python3 -m venv .venv-torch && "
                 ".venv-torch/bin/pip install torch==2.13.0 numpy")
    print("| widths | px | batch | colorjax devices | colorjax img/s | PyTorch img/s "
          "| colorjax / PyTorch | colorjax first step s | PyTorch first step s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for features in a.features or ["16,32,64,128"]:
        for devices in [int(d) for d in a.devices.split(",")]:
            cj, pt = [], []
            for _ in range(a.rounds):  # alternate: both frameworks see the same load
                cj.append(colorjax_run(features, a.size, a.batch, a.steps, devices))
                pt.append(torch_run(a.torch_python, features, a.size, a.batch, a.steps,
                                    a.threads))
            c = statistics.median(r["images_per_sec"] for r in cj)
            t = statistics.median(r["images_per_sec"] for r in pt)
            print(f"| {features} | {a.size} | {a.batch} | {devices} | {c:.1f} | {t:.1f} "
                  f"| {c / t:.2f} | {statistics.median(r['first_step_s'] for r in cj):.1f} "
                  f"| {statistics.median(r['first_step_s'] for r in pt):.2f} |", flush=True)


if __name__ == "__main__":
    main()
