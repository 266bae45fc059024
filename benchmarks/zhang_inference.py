"""CPU inference time and peak memory of Zhang et al.'s converted networks (eccv16,
siggraph17) through colorjax's own paths, for docs/benchmarks.md:

    python benchmarks/zhang_inference.py --exports_dir=/tmp/zhang_exports \\
        --folder=../shared/data/bsds500/val

* one photo of `--size` (W x H, default 768x512): `Colorizer.load`, the first `colorize` (it
  compiles), then the median of `--repeats` calls, and the process's peak resident memory
  (each model in a fresh process);
* a folder: `python -m colorjax.colorize --input=FOLDER --output=...` in a subprocess, its
  wall time (start-up and compilation included) and peak resident memory.

The exports hold random weights of the release's shapes (converted from a state_dict made
here; the real files are not needed for timings, which do not depend on the values).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

MODELS = ("eccv16", "siggraph17")


def make_export(model: str, path: str) -> str:
    """An export of `model` with random weights of the release's layout (BatchNorm
    variances positive), written as `colorjax.convert` writes one."""
    from colorjax.presets import load_config
    from colorjax.convert import zhang as cz
    from colorjax.training.export import write_export

    if os.path.isfile(os.path.join(path, "metadata.json")):
        return path
    rng = np.random.default_rng(0)
    state = {}
    for layer in cz.LAYERS[model]():
        for key, shape in layer.tensors():
            fan_in = int(np.prod(shape[1:])) or 1
            a = rng.standard_normal(shape, dtype=np.float32) * np.float32((2 / fan_in) ** 0.5)
            state[key] = np.abs(a) + 0.5 if key.endswith("running_var") else a
    variables = cz.to_variables(state, model)
    return write_export(path, variables, load_config(model), step=0,
                        source="random weights of the release's layout (benchmark)")


def one_photo(args) -> dict:
    """Runs in a fresh process: one model, one photo."""
    from colorjax import Colorizer

    w, h = (int(v) for v in args.size.split("x"))
    rng = np.random.default_rng(0)
    from PIL import Image
    from skimage import data as skdata

    rgb = np.asarray(Image.fromarray(skdata.astronaut()).resize((w, h), Image.BICUBIC))
    rgb = np.clip(rgb.astype(np.int16) + rng.integers(-3, 4, rgb.shape), 0, 255).astype(np.uint8)
    t0 = time.perf_counter()
    c = Colorizer.load(args.export)
    t_load = time.perf_counter() - t0
    kwargs = {}
    if c.uses_hints:
        from colorjax import Hint
        kwargs["hints"] = [Hint(w // 3, h // 3, ab=(40.0, 20.0))]
    t0 = time.perf_counter()
    c.colorize(rgb, **kwargs)
    t_first = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        c.colorize(rgb, **kwargs)
        times.append(time.perf_counter() - t0)
    return {"model": c.model_name, "size": args.size, "load_s": t_load, "first_s": t_first,
            "median_s": float(np.median(times)), "min_s": float(np.min(times)),
            "repeats": args.repeats, "hints": len(kwargs.get("hints", [])),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def folder(export: str, photos: str, out: str) -> dict:
    """`python -m colorjax.colorize` over a folder in a subprocess: wall time, peak RSS."""
    n = len([f for f in os.listdir(photos) if not f.startswith(".")])
    t0 = time.perf_counter()
    res = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "colorjax.colorize",
                          f"--model={export}", f"--input={photos}", f"--output={out}",
                          "--overwrite"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(res.stderr[-3000:])
    peak_kib = int(res.stderr.strip().splitlines()[-1])
    return {"photos": n, "wall_s": wall, "per_photo_s": wall / n, "peak_rss_mib": peak_kib / 1024,
            "summary": res.stdout.strip().splitlines()[-1]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exports_dir", default="/tmp/zhang_exports")
    p.add_argument("--folder", default="")
    p.add_argument("--size", default="768x512", help="W x H of the single photo")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--one_photo", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--export", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one_photo:
        print(json.dumps(one_photo(args)))
        return
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines()
        if line.startswith("Model name")), platform.processor())
    print(f"CPU: {cpu}, {os.cpu_count()} cores; load average {os.getloadavg()}", flush=True)
    for model in args.models.split(","):
        export = make_export(model, os.path.join(args.exports_dir, model))
        res = subprocess.run([sys.executable, __file__, "--one_photo", f"--export={export}",
                              f"--size={args.size}", f"--repeats={args.repeats}"],
                             capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(res.stderr[-3000:])
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"{model} one {args.size} photo: load {r['load_s']:.1f} s, first colorize "
              f"{r['first_s']:.1f} s (compiles), then median {r['median_s']:.2f} s (min "
              f"{r['min_s']:.2f}) of {r['repeats']}; peak RSS {r['peak_rss_mib']:.0f} MiB"
              + (f"; {r['hints']} hint" if r["hints"] else ""), flush=True)
        if args.folder:
            f = folder(export, args.folder, os.path.join(args.exports_dir, f"out_{model}"))
            print(f"{model} folder of {f['photos']} photos ({args.folder}): {f['wall_s']:.1f} s "
                  f"wall ({f['per_photo_s']:.2f} s/photo, start-up and compilation included); "
                  f"peak RSS {f['peak_rss_mib']:.0f} MiB; {f['summary']}", flush=True)
        print(f"load average now {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()  # XLA:CPU's convolution choice, as the entry points make it
    main()
