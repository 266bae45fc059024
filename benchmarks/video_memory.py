"""Peak memory of colorizing a video does not grow with its length (streaming).

    python benchmarks/video_memory.py --export=EXPORT_DIR [--frames=100,1000] [--size=160x120]

For each length, a fresh process writes a synthetic H.264 clip of that many frames (a
panning noise texture), colorizes it with `colorjax.video.colorize_video_file` and prints
its peak RSS; the lengths are run in separate processes so each peak is its own.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def one(export: str, frames: int, w: int, h: int) -> float:
    import av

    from colorjax.inference.colorizer import Colorizer
    from colorjax.video import colorize_video_file

    with tempfile.TemporaryDirectory() as d:
        src, out = os.path.join(d, "in.mp4"), os.path.join(d, "out.mp4")
        base = np.random.default_rng(0).uniform(0, 255, (h, w, 3)).astype(np.uint8)
        with av.open(src, "w") as o:
            s = o.add_stream("libx264", rate=24)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            for i in range(frames):
                o.mux(s.encode(av.VideoFrame.from_ndarray(np.roll(base, i, 1), format="rgb24")))
            o.mux(s.encode(None))
        stats = colorize_video_file(Colorizer.load(export, batch_size=8), src, out,
                                    progress=False)
        assert stats["frames"] == frames
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export", required=True)
    p.add_argument("--frames", default="100,1000")
    p.add_argument("--size", default="160x120")
    p.add_argument("--_one", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args()
    w, h = (int(v) for v in a.size.lower().split("x"))
    if a._one:
        print(f"{one(a.export, a._one, w, h):.0f}")
        return 0
    print("| frames | size | peak RSS (MiB) |\n|---:|---|---:|")
    for n in (int(v) for v in a.frames.split(",")):
        out = subprocess.run([sys.executable, __file__, f"--export={a.export}",
                              f"--size={a.size}", f"--_one={n}"], capture_output=True,
                             text=True, check=True).stdout.split()[-1]
        print(f"| {n} | {w}x{h} | {out} |", flush=True)
    return 0


if __name__ == "__main__":
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()  # XLA:CPU's convolution choice, as the entry points make it
    sys.exit(main())
