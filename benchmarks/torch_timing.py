"""Timing for the PyTorch peers' `time` modes (benchmarks/torch_*.py, `.venv-torch`): one
warm-up call, then `repeats` timed calls of the network alone and, where the peer has it,
of the authors' whole photo pipeline; process CPU seconds and peak RSS; optionally under
PyTorch's CPU autocast to bfloat16 (`torch.autocast("cpu", dtype=torch.bfloat16)`, the
mixed precision PyTorch users reach for). One JSON line on stdout. `timed` imports no torch:
benchmarks/published_inference.py times colorjax's side with it too."""

from __future__ import annotations

import contextlib
import json
import resource
import statistics
import time


def autocast(enabled: bool):
    import torch

    return (torch.autocast("cpu", dtype=torch.bfloat16) if enabled
            else contextlib.nullcontext())


def timed(fn, repeats: int) -> dict:
    """Wall and CPU seconds of `fn()` after one untimed call: median and best."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {"first_s": first, "median_s": statistics.median(walls), "min_s": min(walls),
            "cpu_s": statistics.median(cpus), "repeats": repeats}


def report(name: str, threads: int, bf16: bool, **parts) -> None:
    import torch

    print(json.dumps({"name": name, "framework": f"torch {torch.__version__}",
                      "threads": threads, "precision": "bfloat16" if bf16 else "float32",
                      **parts,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}),
          flush=True)
