"""Colorize throughput on a folder of 512x768 photos: colorjax against the same network and
photo pipeline in PyTorch, on this machine's CPU (issue 42's goal: >= 1.0x PyTorch).

    .venv/bin/python benchmarks/colorize_throughput.py --torch_python=.venv-torch/bin/python \\
        --photos=32 --batch=8 --rounds=2 --workdir=/tmp/colorize_throughput
    .venv/bin/python benchmarks/colorize_throughput.py --export=EXPORT_DIR --size=64,256 # a UNet
    .venv/bin/python benchmarks/colorize_throughput.py --photos=4 --rounds=1 --size=64   # smoke

The folder: `--photos` RGB PNGs of 512x768 (H x W), scikit-image's sample photos resized
with PIL, cycling; and an .npz of the same decoded arrays for PyTorch (whose Python has no
PIL). The model: `--export` (a UNet with BatchNorm, no backbone, no hints), or else
configs/unet.py:cpu written by `write_export` with its initial weights moved off their
initial values (BatchNorm statistics away from 0 and 1, the zero-initialised head made
nonzero: timings do not depend on the values, the output comparison does).

For each working size (`--size`, a comma list; default the export's own, 256 and 512) and
`--rounds` rounds, alternating, each in a fresh process:

* colorjax CLI: `python -m colorjax.colorize --input=FOLDER` (decode, colorize, PNG encode,
  start-up included), wall time; run once untimed first so that `--compilation_cache` is warm;
* colorjax in-process: `Colorizer.load`, then what the CLI does to a batch of decoded
  photos (`to_photo` (CIELAB L), `predict_small(fixed_batch=True)`, `finish`, `to_uint8`),
  timed after one untimed batch (it compiles);
* PyTorch: benchmarks/torch_unet.py `colorize` with the export's weights: the same pipeline
  in torch ops (L, bilinear resize antialiased when shrinking, the network in eval mode
  under inference_mode, ab resized back, Lab -> sRGB), `--threads` threads, timed after
  one untimed batch.

Prints the medians (photos/s), the ratios against PyTorch, and how far PyTorch's colorized
photos are from colorjax's in-process ones (mean and max absolute difference of 255,
and the share of values that differ).
`--malloc` applies to all three: `default` (malloc as installed: how `colorize` runs) or
`hugepages` (colorjax.platform.host_memory's tunable, as `python -m colorjax.main` runs).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import numpy as np

from colorjax.platform import host_memory, host_threads  # light: no JAX
from colorjax.platform import xla_cpu

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from vs_pytorch import run_child  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 512, 768
SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
           "immunohistochemistry", "retina")


def make_photos(folder: pathlib.Path, n: int) -> pathlib.Path:
    """`n` PNGs of HEIGHT x WIDTH in `folder` and photos.npz of their pixels (beside it)."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():  # a folder of another --photos
        f.unlink()
    photos = []
    for i in range(n):
        im = Image.fromarray(getattr(data, SAMPLES[i % len(SAMPLES)])()[..., :3])
        im = im.resize((WIDTH, HEIGHT), Image.BICUBIC)
        im.save(folder / f"photo_{i:03d}.png")
        photos.append(np.asarray(im))
    npz = folder.with_suffix(".npz")
    np.savez(npz, photos=np.stack(photos))
    return npz


def environ(malloc: str, model: str | None = None) -> dict[str, str]:
    """A run's environment: malloc as installed or with huge pages; with `model`, the XLA
    flags `colorize` gives that model (the CLI sets its own)."""
    env = host_memory.untuned_environ(os.environ)
    if malloc == "hugepages":
        env = host_memory.tuned_environ(env) or env
    if model:
        env["XLA_FLAGS"] = xla_cpu.tuned_xla_flags(env, model) or env.get("XLA_FLAGS", "")
    host_threads.configure(env)  # NumPy's BLAS on one thread, as colorjax's programs run
    return env


def _call(function: str, *args) -> str:
    return ("import json, sys; sys.path.insert(0, 'benchmarks'); import colorize_throughput "
            f"as b; print('RESULT ' + json.dumps(b.{function}(*{args!r})))")


# --- in colorjax child processes ---------------------------------------------------------


def perturbed(variables, rng):
    """`variables` moved off their initial values (as tests/test_torch_peer.py moves them):
    BatchNorm variances in [0.5, ...), zero kernels (the head) nonzero, the rest by a fifth
    of their spread (0.1 where they have none)."""
    import jax
    import jax.numpy as jnp

    flat, tree = jax.tree_util.tree_flatten_with_path(variables)
    keys = jax.random.split(rng, len(flat))
    out = []
    for (path, v), k in zip(flat, keys):
        noise = jax.random.normal(k, v.shape)
        std = float(jnp.std(v))
        if path[-1].key == "var":
            out.append(0.5 + jnp.abs(0.5 * noise))
        elif path[-1].key == "kernel" and std == 0:
            out.append(noise * 0.5 / np.sqrt(np.prod(v.shape[:-1])))
        else:
            out.append(v + (0.2 * std if std > 0 else 0.1) * noise)
    return jax.tree.unflatten(tree, out)


def prepare(export: str, workdir: str) -> dict:
    """`export`, or configs/unet.py:cpu written to WORKDIR/export_unet_cpu; its variables
    flattened into WORKDIR/params.npz (tests/test_torch_peer.py's layout) for torch_unet.py."""
    import jax
    import jax.numpy as jnp

    from colorjax import Colorizer

    if not export:
        export = os.path.join(workdir, "export_unet_cpu")
        if not os.path.isfile(os.path.join(export, "metadata.json")):
            from colorjax.objectives import make_objective
            from colorjax.presets import load_config
            from colorjax.training.export import write_export

            config = load_config("configs/unet.py:cpu")
            objective = make_objective(config)
            size = config.data.image_size
            batch = {"l": jnp.zeros((1, size, size, 1)), "ab": jnp.zeros((1, size, size, 2))}
            state = objective.init(jax.random.key(0), batch)
            variables = perturbed(objective.inference_variables(state), jax.random.key(1))
            write_export(export, variables, config, step=0,
                         source="configs/unet.py:cpu, perturbed initial weights (benchmark)")
    c = Colorizer.load(export)
    m = c.config.model
    if (c.model_name != "unet" or m.get("norm", "batch") != "batch"
            or m.get("backbone", "none") != "none" or c.uses_hints):
        raise SystemExit(f"{export}: not a UNet with BatchNorm, no backbone and no hints: "
                         "benchmarks/torch_unet.py has no peer of it")
    flat = {"/".join(str(k.key) for k in path): np.asarray(v)
            for path, v in jax.tree_util.tree_flatten_with_path(c.variables)[0]}
    params = os.path.join(workdir, "params.npz")
    np.savez(params, features=np.asarray(tuple(m.features)), **flat)
    return {"export": os.path.abspath(export), "image_size": c.image_size, "params": params,
            "features": ",".join(str(f) for f in m.features)}


def colorjax_in_process(export: str, npz: str, size: int, batch: int, out: str) -> dict:
    """Photos/s of `Colorizer` over the decoded photos of `npz`, batch by batch, as
    `python -m colorjax.colorize` colorizes a batch (without decoding and encoding)."""
    from colorjax import Colorizer
    from colorjax.media.photos import to_photo, to_uint8

    arrays = np.load(npz)["photos"]
    c = Colorizer.load(export, size=size, batch_size=batch)

    def colorize(rgbs):
        photos = [to_photo(a) for a in rgbs]  # CIELAB L of the photo
        small = c.predict_small(photos, fixed_batch=True)
        return [to_uint8(c.finish(p, abs_[0])) for p, abs_ in zip(photos, small)]

    t0 = time.perf_counter()
    colorize(arrays[:batch])  # compiles
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    outs = [o for i in range(0, len(arrays), batch) for o in colorize(arrays[i:i + batch])]
    elapsed = time.perf_counter() - t0
    if out:
        np.savez(out, photos=np.stack(outs))
    return {"photos_per_sec": len(arrays) / elapsed, "seconds": elapsed, "first_batch_s": first}


# --- the parent --------------------------------------------------------------------------


def colorjax_cli(a, export, folder, size, batch, env) -> dict:
    """Wall time of `python -m colorjax.colorize` over the folder, start-up included."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "colorjax.colorize", f"--model={export}",
                          f"--input={folder}", f"--output={a.workdir}/out_cli", "--overwrite",
                          f"--batch_size={batch}", f"--size={size}",
                          f"--compilation_cache={a.workdir}/jax_cache"],
                         cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode:
        sys.exit(f"error: colorjax.colorize failed:\n{out.stderr[-3000:]}")
    return {"photos_per_sec": a.photos / wall, "seconds": wall}


def torch_colorize(a, model, npz, size, batch, out="") -> dict:
    out = subprocess.run([a.torch_python, "benchmarks/torch_unet.py", "colorize",
                          f"--npz={npz}", f"--params={model['params']}", f"--size={size}",
                          f"--batch={batch}", f"--threads={a.threads}"] +
                         ([f"--out={out}"] if out else []),
                         cwd=REPO, env=environ(a.malloc), capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"error: PyTorch run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--torch_python", default=".venv-torch/bin/python")
    p.add_argument("--export", default="", help="a UNet export (default: make configs/unet.py:cpu)")
    p.add_argument("--workdir", default="/tmp/colorize_throughput")
    p.add_argument("--photos", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", default="", help="working sizes, a comma list (default: the "
                   "export's own, 256 and 512)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="PyTorch's")
    p.add_argument("--malloc", default="default", choices=["default", "hugepages"])
    a = p.parse_args()
    if not os.path.exists(a.torch_python):
        sys.exit(f"error: no PyTorch Python at {a.torch_python}: python3 -m venv .venv-torch && "
                 ".venv-torch/bin/pip install torch==2.13.0 numpy")
    a.workdir = os.path.abspath(a.workdir)
    os.makedirs(a.workdir, exist_ok=True)
    folder = pathlib.Path(a.workdir) / "photos"
    npz = make_photos(folder, a.photos)
    model = run_child(_call("prepare", a.export, a.workdir), environ(a.malloc, "unet"))
    sizes = list(dict.fromkeys([int(s) for s in a.size.split(",")] if a.size
                               else [model["image_size"], 256, 512]))
    batch = min(a.batch, a.photos)  # what colorize batches (and compiles) for this folder
    cj_env, cli_env = environ(a.malloc, "unet"), environ(a.malloc)
    print(f"{a.photos} photos of {HEIGHT}x{WIDTH}, {model['export']} (UNet "
          f"{model['features']}, trained at {model['image_size']}), {os.cpu_count()} CPUs, "
          f"malloc {a.malloc}, PyTorch {a.threads} threads", flush=True)
    print("| working size | batch | photos | colorjax CLI photos/s | colorjax in-process "
          "photos/s | PyTorch photos/s | in-process / PyTorch | CLI / PyTorch "
          "| PyTorch - colorjax: mean / max of 255 (values that differ) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    med = lambda rs: statistics.median(r["photos_per_sec"] for r in rs)
    for size in sizes:
        colorjax_cli(a, model["export"], folder, size, batch, cli_env)  # warms the cache
        cli, cj, pt = [], [], []
        outs = {k: f"{a.workdir}/out_{k}_{size}.npz" for k in ("colorjax", "torch")}
        for r in range(a.rounds):
            cli.append(colorjax_cli(a, model["export"], folder, size, batch, cli_env))
            cj.append(run_child(_call("colorjax_in_process", model["export"], str(npz), size,
                                   batch, outs["colorjax"] if r == 0 else ""), cj_env))
            pt.append(torch_colorize(a, model, npz, size, batch, outs["torch"] if r == 0 else ""))
        diff = np.abs(np.load(outs["torch"])["photos"].astype(np.int16)
                      - np.load(outs["colorjax"])["photos"])
        c, i, t = med(cli), med(cj), med(pt)
        print(f"| {size} | {batch} | {a.photos} | {c:.2f} | {i:.2f} | {t:.2f} | {i / t:.2f} "
              f"| {c / t:.2f} | {diff.mean():.4f} / {diff.max()} "
              f"({100 * (diff > 0).mean():.3f}%) |", flush=True)


if __name__ == "__main__":
    xla_cpu.configure_program()  # XLA:CPU's convolution choice, as the entry points make it
    main()
