"""Where a config's training step spends its time: XLA's own per-op timings, by layer.

    .venv/bin/python benchmarks/profile_step.py --config=configs/unet.py:cpu --size=64 --batch=16
    .venv/bin/python benchmarks/profile_step.py --all --size=64 --batch=16 --top=8

Runs the project's jitted training step (synthetic batches, as train_throughput.py makes
them) under the JAX profiler, reads the op events of the trace (the Perfetto JSON the
profiler writes), and names each compiled op by what it came from: the Flax module path and
primitive in the HLO's metadata, and whether it belongs to the forward pass, the backward
pass (`transpose(jvp(...))`) or the optimizer. Kernel gradients of convolutions carry no
metadata of their own in XLA:CPU's fusions; they are named by their inner instructions and,
failing that, by their output shape. Prints the top ops per config as a markdown table,
with each op's share of the summed op time (ops may overlap, so shares are of op time, not
of wall time).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import pathlib
import re
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import train_throughput  # noqa: E402

_INSTR = re.compile(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+) ([\w\-]+)\((.*)")
_COMP = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$")


def op_origins(hlo_text: str) -> dict[str, tuple[str, str]]:
    """Compiled op name -> (output shape, metadata op_name), looking inside fusions' called
    computations when the op itself has no metadata."""
    comps: dict[str, list[str]] = {}
    current = None
    for line in hlo_text.splitlines():
        m = _COMP.match(line)
        if m and "=" not in line.split("{")[0]:
            current = m.group(1)
            comps[current] = []
        elif current is not None:
            comps[current].append(line)

    def first_meta(comp: str, depth: int = 0) -> str:
        for line in comps.get(comp, []):
            on = re.search(r'op_name="([^"]+)"', line)
            if on:
                return on.group(1)
            called = re.search(r"calls=%?([\w.\-]+)", line)
            if called and depth < 3:
                found = first_meta(called.group(1), depth + 1)
                if found:
                    return found
        return ""

    def root_op(comp: str) -> str:
        for line in comps.get(comp, []):
            if line.lstrip().startswith("ROOT"):
                m = _INSTR.match(line)
                return m.group(3) if m else ""
        return ""

    out = {}
    for lines in comps.values():
        for line in lines:
            m = _INSTR.match(line)
            if not m:
                continue
            name, shape = m.group(1), m.group(2)
            on = re.search(r'op_name="([^"]+)"', line)
            meta = on.group(1) if on else ""
            called = re.search(r"calls=%?([\w.\-]+)", line)
            if not meta and called:
                meta = first_meta(called.group(1))
            if not meta:  # XLA:CPU strips it from kernel gradients and their layout copies
                root = root_op(called.group(1)) if called else m.group(3)
                meta = {"convolution": "conv kernel gradient, kernel (I,H,W,O) ",
                        "transpose": "layout transpose ", "copy": "layout copy "}.get(
                            root, f"{root} ") + shape.split("{")[0]
                meta = "(no metadata) " + meta
            out.setdefault(name, (shape, meta))
    return out


def describe(meta: str, shape: str) -> tuple[str, str]:
    """(pass, where) for an op's metadata: pass is forward / backward / optimizer / other."""
    if meta.startswith("(no metadata)"):
        kind = "backward" if "gradient" in meta else "other"
        return kind, meta.removeprefix("(no metadata) ")
    path = meta.removeprefix("jit(step)/")
    if "transpose(jvp(" in path:
        kind = "backward"
    elif "jvp(" in path:
        kind = "forward"
    elif any(w in path for w in ("optax", "adam", "clip", "scale_by", "ema", "tree_map",
                                 "global_norm", "update")):
        kind = "optimizer"
    else:
        kind = "other"
    # jvp(UNet)/DoubleConv_6/ConvNormAct_0/Conv_0/conv_general_dilated -> UNet/DoubleConv_6/...
    path = re.sub(r"(transpose\()?jvp\(([\w.]+)\)\)?", r"\2", path)
    path = re.sub(r"jit\((\w+)\)/", "", path)
    return kind, path


def category(kind: str, where: str) -> str:
    """A coarse bucket for the summary line."""
    if "kernel gradient" in where:
        return "conv kernel gradients"
    if "layout" in where:
        return "layout copies"
    if "conv_general_dilated" in where:
        return "conv input gradients" if kind == "backward" else "conv forward"
    if kind == "optimizer":
        return "optimizer"
    if any(w in where for w in ("BatchNorm", "GroupNorm", "LayerNorm")):
        return "normalization"
    if any(w in where for w in ("Attention", "dot_general", "Dense")):
        return "attention and dense"
    if any(w in where for w in ("concatenate", "stack", "pad", "slice")):
        return "concatenate, stack, pad, slice"
    if "select_n" in where or "leaky_relu" in where or "silu" in where or "logistic" in where:
        return "activations"
    return "other elementwise"


def profile(config_spec: str, size: int, batch: int, steps: int,
            precision: str = "float32") -> dict:
    import jax

    from colorjax.presets import load_config

    config = load_config(config_spec)
    config.data.image_size = size
    config.batch_size = batch
    config.precision = precision
    state, step_fn, arrays, rng = train_throughput.synthetic_step(config, steps + 10)
    origins = op_origins(step_fn.lower(state, arrays, rng).compile().as_text())
    for _ in range(2):  # compile and warm up outside the trace
        state, m = step_fn(state, arrays, rng)
    jax.block_until_ready(m)

    with tempfile.TemporaryDirectory() as trace_dir:
        t0 = time.perf_counter()
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for _ in range(steps):
                state, m = step_fn(state, arrays, rng)
            jax.block_until_ready(m)
        wall = (time.perf_counter() - t0) / steps
        trace = sorted(glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"),
                                 recursive=True))[-1]
        events = json.load(gzip.open(trace))
    events = events["traceEvents"] if isinstance(events, dict) else events

    per_op = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e.get("name") in origins:
            per_op[e["name"]] += e["dur"] / 1e3 / steps  # µs over all steps -> ms per step
    rows = collections.Counter()
    for name, ms in per_op.items():
        shape, meta = origins[name]
        op_kind = re.sub(r"[.\d]+$", "", name)  # ynn_fusion.117 -> ynn_fusion
        rows[(*describe(meta, shape), op_kind)] += ms
    return {"config": config_spec, "size": size, "batch": batch,
            "wall_ms_per_step": 1e3 * wall, "op_ms_per_step": sum(per_op.values()),
            "rows": [(k, ms) for k, ms in rows.most_common()],
            "by_pass": _sum_by(rows, lambda k: k[0]),
            "by_category": _sum_by(rows, lambda k: category(k[0], k[1]))}


def _sum_by(rows: collections.Counter, key) -> dict[str, float]:
    out = collections.Counter()
    for k, ms in rows.items():
        out[key(k)] += ms
    return dict(out.most_common())


def print_profile(p: dict, top: int) -> None:
    total = p["op_ms_per_step"]
    passes = ", ".join(f"{k} {v:.0f} ms" for k, v in sorted(p["by_pass"].items(),
                                                          key=lambda kv: -kv[1]))
    print(f"\n### {p['config']}, {p['size']} px, batch {p['batch']}: "
          f"{p['wall_ms_per_step']:.0f} ms/step wall (profiled), {total:.0f} ms of ops "
          f"({passes})\n")
    print("By kind: " + ", ".join(f"{k} {100 * v / total:.0f}%"
                                  for k, v in p["by_category"].items()) + "\n")
    print("| pass | where (Flax module / primitive) | XLA op | ms/step | share |")
    print("|---|---|---|---:|---:|")
    for (kind, where, op_kind), ms in p["rows"][:top]:
        print(f"| {kind} | {where} | {op_kind} | {ms:.1f} | {100 * ms / total:.1f}% |")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", action="append", default=[])
    ap.add_argument("--all", action="store_true", help="every model config, :cpu variants")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--json", default="", help="append the profiles as JSON lines here")
    a = ap.parse_args()
    configs = a.config + ([f"configs/{c}.py:cpu" for c in train_throughput.ALL_CONFIGS]
                          if a.all else [])
    if not configs:
        ap.error("give --config (repeatable) or --all")
    for c in configs:
        p = profile(c, a.size, a.batch, a.steps, a.precision)
        print_profile(p, a.top)
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(p) + "\n")


if __name__ == "__main__":
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()  # XLA:CPU's convolution choice, as the entry points make it
    # Time what `python -m colorjax.main` runs: with its malloc settings (host_memory.py).
    from colorjax.platform import host_memory

    host_memory.reexec_with_huge_pages()
    main()
