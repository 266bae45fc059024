"""How a trained colorizer compares with leaving the photo gray, on photos it never saw.

    python benchmarks/demo_quality.py SOURCE [--photos DIR|demo ...] [--size 64]
        [--grid OUT.png] [--grid_images 8] [--step -1] [--json OUT.json]

SOURCE is a training workdir (its latest checkpoint, or --step) or an export directory.
Each --photos is a folder of photos (every image file in it, sorted by name), one photo,
or `demo`, the embedded demo's validation photos (colorjax/data/demo.py). Every photo is resized so
its shorter side is --size and center-cropped, as the evaluation pipeline does. For each
set the script prints, for the model and for gray (ab = 0): CIEDE2000, LPIPS (AlexNet),
and the mean a and b over all pixels, beside the truth's mean a and b: a global colour
cast shows as a mean a/b far from the truth's. --grid writes a PNG per set (rows gray |
prediction | truth; the set's name is added before the extension when there are several).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # trained_run
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from colorjax import color, metrics  # noqa: E402
from colorjax.data import demo, images  # noqa: E402
from colorjax.training.evaluate import image_metrics, lpips_on_small_images, save_grid  # noqa: E402
from colorjax.media.photos import image_files  # noqa: E402

COLUMNS = ("ciede2000", "lpips", "mean_a", "mean_b", "true_a", "true_b")


def load_model(source: str, step: int = -1):
    """(objective, inference variables, step) of a workdir's checkpoint or an export."""
    if os.path.isfile(os.path.join(source, "metadata.json")):
        from colorjax.inference.artifact import read_export  # noqa: PLC0415

        _, metadata, objective, variables = read_export(source)
        return objective, variables, metadata.get("step")
    from trained_run import load_run  # noqa: PLC0415

    _, objective, state, step, _ = load_run(source, step)
    return objective, objective.inference_variables(state), step


def demo_validation_photos() -> list[np.ndarray]:
    """The demo's validation squares, cut exactly as colorjax_demo cuts them."""
    out = []
    for name in demo.PHOTOS:
        rgb = np.asarray(Image.open(demo.photo_dir() / name).convert("RGB"))
        out.extend(demo.tiles(rgb)[1])
    return out


def load_photos(spec: str, size: int) -> np.ndarray:
    """(N, size, size, 3) uint8: the set's photos, shorter side to `size`, center crop."""
    if spec == "demo":
        pil = [Image.fromarray(a) for a in demo_validation_photos()]
    elif os.path.isfile(spec):
        pil = [Image.open(spec).convert("RGB")]
    else:
        files, _ = image_files(spec)
        if not files:
            raise SystemExit(f"no photos in {spec}")
        pil = [Image.open(f).convert("RGB") for f in sorted(files)]
    return np.stack([np.asarray(images.crop_resize(im, size, size)) for im in pil])


def evaluate_set(objective, variables, rgb: np.ndarray, batch_size: int = 16):
    """Per-image metrics of the model and of gray, and the predictions, for uint8 `rgb`."""
    lpips = metrics.LPIPS("alex")
    dist = lpips_on_small_images(lpips, lpips.params)
    predict = jax.jit(lambda v, l: objective.predict_with(v, l, jax.random.key(0)))
    score = jax.jit(lambda l, ab, true: image_metrics(l, ab, true, dist))
    rows = {"model": [], "gray": []}
    ls, preds, trues = [], [], []
    for i in range(0, len(rgb), batch_size):
        l, ab_true = color.rgb_to_model_inputs(rgb[i:i + batch_size])
        l, ab_true = jnp.asarray(l, jnp.float32), jnp.asarray(ab_true, jnp.float32)
        ab = predict(variables, l)
        rows["model"].append(jax.device_get(score(l, ab, ab_true)))
        rows["gray"].append(jax.device_get(score(l, jnp.zeros_like(ab_true), ab_true)))
        ls.append(np.asarray(l))
        preds.append(np.asarray(ab))
        trues.append(np.asarray(ab_true))
    l, pred, true = (np.concatenate(x) for x in (ls, preds, trues))
    per_image = {k: {m: np.concatenate([r[m] for r in v]) for m in v[0]}
                 for k, v in rows.items()}
    return per_image, l, pred, true


def summary(per_image: dict, l, pred, true) -> dict:
    """The table's rows: mean metrics, and mean a, b (Lab units) of prediction and truth."""
    true_ab = (true * color.AB_SCALE).mean(axis=(0, 1, 2))
    out = {}
    for name, ab in (("model", pred), ("gray", np.zeros_like(true))):
        mean_ab = (ab * color.AB_SCALE).mean(axis=(0, 1, 2))
        out[name] = {"ciede2000": float(per_image[name]["ciede2000"].mean()),
                     "lpips": float(per_image[name]["lpips"].mean()),
                     "mean_a": float(mean_ab[0]), "mean_b": float(mean_ab[1]),
                     "true_a": float(true_ab[0]), "true_b": float(true_ab[1])}
    # Share of photos where the model is closer to the truth than gray is.
    for m in ("ciede2000", "lpips"):
        wins = per_image["model"][m] < per_image["gray"][m]
        out["model"][f"{m}_wins"] = float(wins.mean())
    out["model"]["num_images"] = int(len(l))
    return out


def markdown(results: dict) -> str:
    head = ("| photos | | CIEDE2000 ↓ | LPIPS ↓ | mean a (truth) | mean b (truth) "
            "| beats gray (CIEDE / LPIPS) |\n|---|---|---:|---:|---:|---:|---:|")
    lines = [head]
    for photos, rows in results.items():
        for name, r in rows.items():
            wins = (f"{r['ciede2000_wins']:.0%} / {r['lpips_wins']:.0%}"
                    if "ciede2000_wins" in r else "")
            lines.append(f"| {photos} | {name} | {r['ciede2000']:.2f} | {r['lpips']:.4f} "
                         f"| {r['mean_a']:+.2f} ({r['true_a']:+.2f}) "
                         f"| {r['mean_b']:+.2f} ({r['true_b']:+.2f}) | {wins} |")
    return "\n".join(lines)


def grid_path(grid: str, name: str, several: bool) -> str:
    if not several:
        return grid
    stem, ext = os.path.splitext(grid)
    return f"{stem}_{Path(name).stem or 'photos'}{ext}"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="a training workdir or an export directory")
    p.add_argument("--photos", action="append",
                   help="a folder of photos, a photo, or 'demo' (repeatable; default: demo)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--step", type=int, default=-1, help="workdir checkpoint (-1 = latest)")
    p.add_argument("--grid", default="", help="write a gray | prediction | truth PNG here")
    p.add_argument("--grid_images", type=int, default=8)
    p.add_argument("--json", default="", help="also write the results here")
    args = p.parse_args(argv)
    sets = args.photos or ["demo"]
    objective, variables, step = load_model(args.source, args.step)
    results = {}
    for spec in sets:
        rgb = load_photos(spec, args.size)
        per_image, l, pred, true = evaluate_set(objective, variables, rgb)
        results[spec] = summary(per_image, l, pred, true)
        if args.grid:
            n = args.grid_images
            # Evenly spaced over the set, so every source photo of the demo shows up.
            pick = np.linspace(0, len(l) - 1, min(n, len(l))).round().astype(int)
            rows = [color.gray_rgb(l[pick]), color.model_outputs_to_rgb(l[pick], pred[pick]),
                    color.model_outputs_to_rgb(l[pick], true[pick])]
            save_grid(rows, grid_path(args.grid, spec, len(sets) > 1))
    print(f"{args.source} (step {step}), {args.size} px")
    print(markdown(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"source": args.source, "step": step, "size": args.size,
                       "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()  # XLA:CPU's convolution choice, as the entry points make it
    jax.config.update("jax_platforms", "cpu")
    main()
