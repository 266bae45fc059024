"""DDColor and DeOldify, converted, against their authors' PyTorch networks on the same CPU
(issue 41), for docs/benchmarks.md:

    .venv/bin/python benchmarks/published_inference.py --exports_dir=/tmp/published \\
        --models=ddcolor_tiny,ddcolor_large,deoldify_artistic,deoldify_stable,deoldify_video

For each model, `--rounds` alternating pairs of fresh processes (colorjax, then PyTorch
2.13 eager in `.venv-torch`, `benchmarks/torch_ddcolor.py` / `torch_deoldify.py time`), each
timing after one warm-up call the median of `--repeats` calls of

* the network alone at the model's working size (DDColor 512, DeOldify render_factor x 16:
  560, the video weights 336), batch 1;
* one 512x768 (H x W) photo through the whole pipeline: colorjax's `Colorizer.colorize`
  (the authors' pre- and post-processing, `photo_io`), and for DDColor the PyTorch peer's
  transcription of `ColorizationPipeline.process` (DeOldify's needs PIL and OpenCV, which
  the peer's Python does not have: its network alone is compared);

with the process's CPU seconds and peak RSS; then the same in bfloat16 (colorjax
`Colorizer.load(..., precision="bfloat16")`, PyTorch `torch.autocast("cpu", bfloat16)`),
and how far colorjax's bfloat16 photo is from its float32 one (8-bit RGB: mean and 99th
percentile of |difference|; issue 41's tolerance is 1 and 4).

The exports hold random weights of the releases' layouts, made by the PyTorch peers' `check`
(the colours vary strongly) and converted with `python -m colorjax.convert`: the real files
are not on this machine, and timings do not depend on the values.
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
from torch_timing import timed  # the same timing as the PyTorch side's (no torch import)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_PYTHON = os.environ.get("COLORJAX_TORCH_PYTHON", os.path.join(REPO, ".venv-torch/bin/python"))
# converter source -> (peer script, peer args for `check` and `time`, working size)
MODELS = {
    "ddcolor_tiny": ("torch_ddcolor.py", ["--size=tiny"], 512),
    "ddcolor_large": ("torch_ddcolor.py", ["--size=large"], 512),
    "deoldify_artistic": ("torch_deoldify.py", ["--arch=deep"], 560),
    "deoldify_stable": ("torch_deoldify.py", ["--arch=wide"], 560),
    "deoldify_video": ("torch_deoldify.py", ["--arch=wide"], 336),
}
PHOTO_HW = (512, 768)


def test_photo() -> np.ndarray:
    """scikit-image's astronaut at 512x768 (H x W), uint8 RGB, a little noise."""
    from PIL import Image
    from skimage import data as skdata

    h, w = PHOTO_HW
    rgb = np.asarray(Image.fromarray(skdata.astronaut()).resize((w, h), Image.BICUBIC))
    noise = np.random.default_rng(0).integers(-3, 4, rgb.shape)
    return np.clip(rgb.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def make_export(source: str, exports_dir: str) -> str:
    """Random weights from the PyTorch peer's `check`, converted by the real CLI."""
    out = os.path.join(exports_dir, source)
    if os.path.isfile(os.path.join(out, "metadata.json")):
        return out
    os.makedirs(exports_dir, exist_ok=True)
    script, args, size = MODELS[source]
    inp, pth = os.path.join(exports_dir, f"{source}_in.npz"), os.path.join(exports_dir, f"{source}.pth")
    photo = test_photo()[:256, :256]
    if script == "torch_ddcolor.py":
        np.savez(inp, photo0=photo)
        args = args + [f"--input_size={size}"]
    else:  # the network's input: the gray photo, ImageNet-normalised, NCHW
        from PIL import Image
        gray = np.asarray(Image.fromarray(photo).resize((size, size)).convert("L"), np.float32)
        x = (np.repeat(gray[None, None], 3, 1) / 255.0 - np.array(
            [0.485, 0.456, 0.406], np.float32)[None, :, None, None]) / np.array(
            [0.229, 0.224, 0.225], np.float32)[None, :, None, None]
        np.savez(inp, x=x.astype(np.float32))
    run([TORCH_PYTHON, os.path.join(REPO, "benchmarks", script), "check", *args,
         f"--input={inp}", f"--weights_out={pth}", f"--out={os.path.join(exports_dir, source)}_peer.npz"])
    run([sys.executable, "-m", "colorjax.convert", f"--from={source}", f"--weights={pth}",
         f"--output={out}"])
    return out


def run(cmd: list[str]) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return res.stdout


def colorjax_one(args) -> dict:
    """In a fresh process: load the export, time the network and the photo, save the photo."""
    import jax
    import jax.numpy as jnp

    from colorjax import Colorizer
    from colorjax.platform import xla_cpu

    xla_cpu.configure_for_export(args.export)  # the convolutions colorize would choose
    t0 = time.perf_counter()
    c = Colorizer.load(args.export, precision=args.precision)
    load_s = time.perf_counter() - t0
    size = c.image_size
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, size, size, 1)), jnp.float32)
    obj = c.objective
    if hasattr(obj, "predict_rgb"):  # DeOldify: the network's own RGB output
        network = lambda: obj.predict_rgb(c.variables, x).block_until_ready()  # noqa: E731
    else:
        key = jax.random.PRNGKey(0)
        network = lambda: c._predict(c.variables, x, key).block_until_ready()  # noqa: E731
    photo = test_photo()
    out = {}

    def colorize():
        out["rgb"] = c.colorize(photo)

    result = {"name": os.path.basename(args.export), "framework": f"colorjax, jax {jax.__version__}",
              "precision": args.precision, "load_s": load_s,
              "network": timed(network, args.repeats), "photo": timed(colorize, args.repeats),
              "input_size": size, "photo_size": "x".join(map(str, PHOTO_HW)),
              "num_params": int(sum(np.size(v) for v in jax.tree.leaves(c.variables["params"]))),
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if args.save_photo:  # the driver compares the photos of its rounds; a lone --one does not
        np.save(args.save_photo, np.asarray(out["rgb"]))
    return result


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def cpu_line() -> str:
    info = run(["lscpu"])
    name = next(line.split(":", 1)[1].strip() for line in info.splitlines()
                if line.startswith("Model name"))
    flags = next(line.split(":", 1)[1].split() for line in info.splitlines()
                 if line.startswith("Flags"))
    keep = [f for f in flags if f.startswith(("avx512", "amx", "avx_vnni")) or f == "avx2"]
    return f"{name}, {os.cpu_count()} cores; {' '.join(keep)}"


def rgb_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    a8 = np.round(np.clip(a, 0, 1) * 255) if a.dtype != np.uint8 else a
    b8 = np.round(np.clip(b, 0, 1) * 255) if b.dtype != np.uint8 else b
    d = np.abs(a8.astype(np.float64) - b8.astype(np.float64))
    return float(d.mean()), float(np.percentile(d, 99))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exports_dir", default="/tmp/published")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--rounds", type=int, default=2, help="alternating colorjax/PyTorch pairs")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precisions", default="float32,bfloat16")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--export", default="", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    p.add_argument("--save_photo", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(colorjax_one(args)), flush=True)
        return
    print(f"# CPU: {cpu_line()}; load average {os.getloadavg()}", flush=True)
    for source in args.models.split(","):
        if source not in MODELS:
            raise SystemExit(f"--models: {source!r} is not one of {', '.join(MODELS)}")
        export = make_export(source, args.exports_dir)
        script, peer_args, size = MODELS[source]
        for precision in args.precisions.split(","):
            bf16 = precision == "bfloat16"
            for r in range(args.rounds):
                photo = os.path.join(args.exports_dir, f"{source}_{precision}.npy")
                ours = last_json(run([sys.executable, __file__, "--one", f"--export={export}",
                                      f"--precision={precision}", f"--save_photo={photo}",
                                      f"--repeats={args.repeats}"]))
                peer = [TORCH_PYTHON, os.path.join(REPO, "benchmarks", script), "time",
                        *peer_args, f"--repeats={args.repeats}", "--threads=2"]
                peer += ([f"--input_size={size}", "--photo=" + "x".join(map(str, PHOTO_HW))]
                         if script == "torch_ddcolor.py" else [f"--size={size}"])
                theirs = last_json(run(peer + (["--bf16"] if bf16 else [])))
                row = {"model": source, "precision": precision, "round": r,
                       "colorjax": ours, "pytorch": theirs,
                       "load_average": os.getloadavg()[0]}
                if bf16:
                    ref = os.path.join(args.exports_dir, f"{source}_float32.npy")
                    if os.path.isfile(ref):
                        row["bf16_vs_f32_rgb"] = rgb_difference(np.load(photo), np.load(ref))
                print(json.dumps(row), flush=True)
                net = theirs["network"]["median_s"] / ours["network"]["median_s"]
                print(f"# {source} {precision} round {r}: network colorjax "
                      f"{ours['network']['median_s']:.2f} s, PyTorch "
                      f"{theirs['network']['median_s']:.2f} s ({net:.2f}x); photo colorjax "
                      f"{ours['photo']['median_s']:.2f} s"
                      + (f", PyTorch {theirs['photo']['median_s']:.2f} s" if "photo" in theirs
                         else "")
                      + f"; RSS {ours['peak_rss_mib']:.0f} / {theirs['peak_rss_mib']:.0f} MiB",
                      flush=True)


if __name__ == "__main__":
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()
    main()
