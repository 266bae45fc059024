"""Does an XLA:CPU flag make a config's training step faster on this machine?

    .venv/bin/python benchmarks/xla_flags.py --config=configs/unet.py:cpu \\
        --flags="" --flags="--xla_cpu_use_onednn=true" --rounds=3 --devices=1

Each round runs benchmarks/train_throughput.py's step once per flag set, each in its own
process (XLA_FLAGS is read once, when the backend starts), alternating so that every flag
set sees the same load. Prints the median images/s per flag set and its ratio to the first
one (give the defaults, `--flags=""`, first). Synthetic batches, float32.

The defaults are colorjax's: its programs add Eigen convolutions to XLA_FLAGS
(colorjax/platform/xla_cpu.py) unless a flag set names `--xla_cpu_experimental_ynn_fusion_type`
itself. XLA's own default, YNNPACK convolutions, is
`--flags="--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"`.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from vs_pytorch import _colorjax_child  # noqa: E402


def run(config: str, flags: str, devices: int, size: int, batch: int, steps: int) -> dict:
    code = ("import json, sys; sys.path.insert(0, 'benchmarks'); import train_throughput as t; "
            f"r = t.measure({config!r}, {size}, {batch}, {steps}, 'float32'); "
            "print('RESULT ' + json.dumps(r))")
    return _colorjax_child(code, devices, flags)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", default=[], help="repeatable")
    p.add_argument("--flags", action="append", default=[],
                   help='one XLA flag set per use, e.g. --flags="" --flags="--xla_...=true"')
    p.add_argument("--devices", default="1", help="comma list of host device counts")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    if not a.config or len(a.flags) < 2:
        p.error("give --config and at least two --flags (the first is the baseline)")
    print("| config | devices | XLA flags | img/s (median) | vs first | runs |")
    print("|---|---:|---|---:|---:|---|")
    for config in a.config:
        for devices in [int(d) for d in a.devices.split(",")]:
            ips = {f: [] for f in a.flags}
            for _ in range(a.rounds):
                for f in a.flags:
                    ips[f].append(run(config, f, devices, a.size, a.batch, a.steps)
                                  ["images_per_sec"])
            base = statistics.median(ips[a.flags[0]])
            for f in a.flags:
                m = statistics.median(ips[f])
                runs = ", ".join(f"{v:.1f}" for v in ips[f])
                print(f"| {config} | {devices} | `{f or '(defaults)'}` | {m:.1f} "
                      f"| {m / base:.2f} | {runs} |", flush=True)


if __name__ == "__main__":
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()  # XLA:CPU's convolution choice, as the entry points make it
    # Time what `python -m colorjax.main` runs: with its malloc settings (host_memory.py).
    from colorjax.platform import host_memory

    host_memory.reexec_with_huge_pages()
    main()
