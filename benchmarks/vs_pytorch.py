"""colorjax against PyTorch on the same network, size and batch, on this machine's CPU.

    .venv/bin/python benchmarks/vs_pytorch.py --torch_python=.venv-torch/bin/python \\
        --features=16,32,64,128 --features=32,64,128,256 --size=64 --batch=16 --rounds=3
    .venv/bin/python benchmarks/vs_pytorch.py --model=unetddpm --features=32,64,128 \\
        --attention_levels=2 --num_res_blocks=1 --size=32 --batch=16        # add --sample

Each round runs colorjax's jitted training step (benchmarks/train_throughput.py's
`measure`) and PyTorch's eager step of the same network, each in its own process,
alternating, so that both see the same load. Prints the medians and the ratio
colorjax / PyTorch (images/s). `--devices=1,2` repeats colorjax with that many host devices.

`--model=unet` (the default): configs/unet.py:cpu with those widths against
benchmarks/torch_unet.py (MSE, Adam, global-norm clipping at 1, 2 threads).
`--model=unetddpm`: configs/unetddpm.py:cpu with those widths, attention levels, residual
blocks and dropout against benchmarks/torch_diffusion_unet.py (the same diffusion training
step: stratified t, v-target, MSE, Adam with warm-up, clipping, EMA).
`--precision=bfloat16` times both training steps in mixed precision: colorjax's
`config.precision=bfloat16` (float32 weights, the network computed in bfloat16) against
the same forward under `torch.autocast("cpu", dtype=torch.bfloat16)`.
`--sample` (unetddpm only) compares DDIM-50 (η = 0) sampling instead: colorjax's jitted
`DiffusionObjective.sample` (as benchmarks/sampling.py times it) against the eager loop
under torch.inference_mode(); one colorjax device (the sampler is not sharded).
torch is never a colorjax dependency: it lives in its own Python (see torch_unet.py).

colorjax runs as `python -m colorjax.main` does, with glibc's huge pages for malloc
(colorjax/platform/host_memory.py). `--torch_malloc` says how PyTorch runs: `default` (as
installed), `hugepages` (the same tunable) or `both` (the default: each round times PyTorch both ways,
and the table has a ratio for each).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

from colorjax.platform import host_memory  # light: no JAX
from colorjax.platform import xla_cpu

REPO = pathlib.Path(__file__).resolve().parents[1]


DEFAULT_FEATURES = {"unet": "16,32,64,128", "unetddpm": "32,64,128"}  # the :cpu widths


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _colorjax_child(code: str, devices: int, xla_flags: str = "") -> dict:
    """Run `code` (which prints `RESULT <json>`) in a fresh Python with `devices` CPU devices
    and the extra `xla_flags`."""
    flags = f"--xla_force_host_platform_device_count={devices} {xla_flags}".strip()
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    env = host_memory.tuned_environ(env) or env  # what python -m colorjax.main runs with
    env["XLA_FLAGS"] = xla_cpu.tuned_xla_flags(env) or env["XLA_FLAGS"]  # and its convs
    return run_child(code, env, f"colorjax run (XLA_FLAGS={flags!r})")


def run_child(code: str, env: dict[str, str], what: str = "colorjax run") -> dict:
    """Run `code` (which prints `RESULT <json>`) in a fresh Python with `env`; its result,
    or exit with `what` and the child's stderr."""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True)
    if out.returncode:
        sys.exit(f"error: {what} failed:\n{out.stderr[-3000:]}")
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def colorjax_run(a, features: str, devices: int) -> dict:
    """colorjax's training step (train_throughput.measure) for `a.model` at these widths."""
    if a.model == "unet":
        spec, extra = "configs/unet.py:cpu", ""
    else:
        spec = "configs/unetddpm.py:cpu"
        extra = (f", attention_levels={_ints(a.attention_levels)!r}, "
                 f"num_res_blocks={a.num_res_blocks}, dropout={a.dropout}")
    code = ("import json, sys; sys.path.insert(0, 'benchmarks'); import train_throughput as t; "
            f"r = t.measure({spec!r}, {a.size}, {a.batch}, {a.steps}, {a.precision!r}, "
            f"features={_ints(features)!r}{extra}); print('RESULT ' + json.dumps(r))")
    return _colorjax_child(code, devices)


def colorjax_sample(features, attention_levels, num_res_blocks, size, batch, steps,
                    repeats) -> dict:
    """DDIM-`steps` (η = 0) images/s of colorjax's jitted DiffusionObjective.sample
    (configs/unetddpm.py:cpu with these widths), timed as benchmarks/sampling.py does:
    compile first, then the best wall time of `repeats` runs. Runs in the child process."""
    import time

    import jax

    from colorjax.presets import load_config
    from colorjax.objectives.diffusion import DiffusionObjective

    config = load_config("configs/unetddpm.py:cpu")
    config.model.features = tuple(features)
    config.model.attention_levels = tuple(attention_levels)
    config.model.num_res_blocks = num_res_blocks
    config.data.image_size = size
    objective = DiffusionObjective(config)
    gray_l = jax.random.uniform(jax.random.key(0), (batch, size, size, 1), minval=-1, maxval=1)
    state = jax.jit(objective.init)(jax.random.key(1), {"l": gray_l})
    params = objective.inference_variables(state)["params"]
    fn = jax.jit(lambda p, r: objective.sample(p, gray_l, r, sampler="ddim", steps=steps,
                                               eta=0.0))
    rng = jax.random.key(3)
    t0 = time.perf_counter()
    compiled = fn.lower(params, rng).compile()
    jax.block_until_ready(compiled(params, rng))
    first = time.perf_counter() - t0
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(params, rng))
        walls.append(time.perf_counter() - t0)
    wall = min(walls)
    return {"framework": "colorjax", "sampler": f"DDIM-{steps}", "images_per_sec": batch / wall,
            "seconds_per_batch": wall, "ms_per_step": 1e3 * wall / steps, "first_call_s": first}


def colorjax_sample_run(a, features: str) -> dict:
    code = ("import json, sys; sys.path.insert(0, 'benchmarks'); import vs_pytorch as v; "
            f"r = v.colorjax_sample({_ints(features)!r}, {_ints(a.attention_levels)!r}, "
            f"{a.num_res_blocks}, {a.size}, {a.batch}, {a.sample_steps}, {a.sample_repeats}); "
            "print('RESULT ' + json.dumps(r))")
    return _colorjax_child(code, 1)


def torch_environ(malloc: str) -> dict[str, str]:
    """The environment of a PyTorch run: malloc as installed ('default') or with the huge
    pages colorjax's entry point uses ('hugepages')."""
    env = host_memory.untuned_environ(os.environ)
    if malloc == "hugepages":
        tuned = host_memory.tuned_environ(env)
        if tuned is None:
            sys.exit("error: --torch_malloc=hugepages: this machine has no glibc >= 2.35 with "
                     "transparent huge pages")
        env = tuned
    return env


def _torch(python: str, args: list[str], malloc: str = "default") -> dict:
    out = subprocess.run([python] + args, cwd=REPO, capture_output=True, text=True,
                         env=torch_environ(malloc))
    if out.returncode:
        sys.exit(f"error: PyTorch run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def torch_mallocs(a) -> list[str]:
    return ["default", "hugepages"] if a.torch_malloc == "both" else [a.torch_malloc]


def torch_precision(a) -> str:
    """PyTorch's precision for colorjax's `a.precision`: its autocast for either bfloat16."""
    if a.torch_precision:
        return a.torch_precision
    return "float32" if a.precision == "float32" else "bfloat16"


def torch_run(a, features: str, malloc: str = "default") -> dict:
    common = [f"--features={features}", f"--size={a.size}", f"--batch={a.batch}",
              f"--steps={a.steps}", f"--threads={a.threads}",
              f"--precision={torch_precision(a)}"]
    if a.model == "unet":
        return _torch(a.torch_python, ["benchmarks/torch_unet.py", "time"] + common, malloc)
    return _torch(a.torch_python, ["benchmarks/torch_diffusion_unet.py", "time"] + common + [
        f"--attention_levels={a.attention_levels}", f"--num_res_blocks={a.num_res_blocks}",
        f"--dropout={a.dropout}"], malloc)


def torch_sample_run(a, features: str, malloc: str = "default") -> dict:
    return _torch(a.torch_python, [
        "benchmarks/torch_diffusion_unet.py", "sample", f"--features={features}",
        f"--attention_levels={a.attention_levels}", f"--num_res_blocks={a.num_res_blocks}",
        f"--size={a.size}", f"--batch={a.batch}", f"--threads={a.threads}",
        f"--steps={a.sample_steps}", f"--repeats={a.sample_repeats}"], malloc)


def alternate(a, colorjax, torch) -> tuple[list[dict], dict[str, list[dict]]]:
    """`a.rounds` rounds of `colorjax()` then `torch(malloc)` for each --torch_malloc choice,
    alternating, so that both frameworks see the same load."""
    cj, pt = [], {m: [] for m in torch_mallocs(a)}
    for _ in range(a.rounds):
        cj.append(colorjax())
        for malloc, runs in pt.items():
            runs.append(torch(malloc))
    return cj, pt


def model_label(a) -> str:
    if a.model == "unet":
        return "unet"
    levels = a.attention_levels or "none"
    return f"unetddpm (attention {levels}, {a.num_res_blocks} res)"


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
    p.add_argument("--model", default="unet", choices=["unet", "unetddpm"])
    # unetddpm's network (defaults: configs/unetddpm.py:cpu's)
    p.add_argument("--attention_levels", default="2", help="unetddpm: comma list, '' for none")
    p.add_argument("--num_res_blocks", type=int, default=1, help="unetddpm")
    p.add_argument("--dropout", type=float, default=0.0, help="unetddpm")
    p.add_argument("--sample", action="store_true",
                   help="unetddpm: compare DDIM sampling instead of training")
    p.add_argument("--sample_steps", type=int, default=50, help="DDIM steps of --sample")
    p.add_argument("--sample_repeats", type=int, default=1,
                   help="timed sampler calls per round (the best counts)")
    p.add_argument("--precision", default="float32",
                   choices=["float32", "bfloat16", "bfloat16_convs"],
                   help="training: colorjax's config.precision; PyTorch runs both bfloat16 "
                        "ones under torch.autocast (CPU), its own mixed precision")
    p.add_argument("--torch_precision", default=None, choices=["float32", "bfloat16"],
                   help="PyTorch's instead (default: float32 for float32, else bfloat16)")
    p.add_argument("--torch_malloc", default="both", choices=["default", "hugepages", "both"],
                   help="PyTorch's malloc: as installed, with colorjax's huge pages, or both")
    a = p.parse_args()
    if not os.path.exists(a.torch_python):
        sys.exit(f"error: no PyTorch Python at {a.torch_python}: python3 -m venv .venv-torch && "
                 ".venv-torch/bin/pip install torch==2.13.0 numpy")
    if a.sample and a.model != "unetddpm":
        p.error("--sample needs --model=unetddpm")
    if a.sample and a.precision != "float32":
        p.error("--precision is for training steps; --sample runs float32")
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    if a.sample:
        if a.devices != "1":
            print(f"note: --sample runs colorjax on 1 device (not {a.devices}): the sampler "
                  "is not sharded", file=sys.stderr)
        print("| model | widths | px | batch | sampler | PyTorch malloc | colorjax img/s "
              "| PyTorch img/s | colorjax / PyTorch | colorjax ms/step | PyTorch ms/step "
              "| colorjax first call s |")
        print("|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|")
        for features in a.features or [DEFAULT_FEATURES[a.model]]:
            cj, pt = alternate(a, lambda: colorjax_sample_run(a, features),
                               lambda malloc: torch_sample_run(a, features, malloc))
            c = med(cj, "images_per_sec")
            for malloc, runs in pt.items():
                t = med(runs, "images_per_sec")
                print(f"| {model_label(a)} | {features} | {a.size} | {a.batch} "
                      f"| DDIM-{a.sample_steps} | {malloc} | {c:.2f} | {t:.2f} | {c / t:.2f} "
                      f"| {med(cj, 'ms_per_step'):.1f} | {med(runs, 'ms_per_step'):.1f} "
                      f"| {med(cj, 'first_call_s'):.1f} |", flush=True)
        return
    print("| model | widths | px | batch | precision | colorjax devices | PyTorch malloc "
          "| colorjax img/s "
          "| PyTorch img/s | colorjax / PyTorch | colorjax page faults/step "
          "| colorjax first step s | PyTorch first step s |")
    print("|---|---|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for features in a.features or [DEFAULT_FEATURES[a.model]]:
        for devices in [int(d) for d in a.devices.split(",")]:
            cj, pt = alternate(a, lambda: colorjax_run(a, features, devices),
                               lambda malloc: torch_run(a, features, malloc))
            c = med(cj, "images_per_sec")
            for malloc, runs in pt.items():
                t = med(runs, "images_per_sec")
                print(f"| {model_label(a)} | {features} | {a.size} | {a.batch} | {a.precision} "
                      f"| {devices} "
                      f"| {malloc} | {c:.1f} | {t:.1f} | {c / t:.2f} "
                      f"| {med(cj, 'page_faults_per_step'):.0f} "
                      f"| {med(cj, 'first_step_s'):.1f} | {med(runs, 'first_step_s'):.2f} |",
                      flush=True)


if __name__ == "__main__":
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()  # XLA:CPU's convolution choice, as the entry points make it
    main()
