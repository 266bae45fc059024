"""Input-pipeline throughput next to bare PIL decode+resize of the same files, same run.

    JAX_PLATFORMS=cpu python benchmarks/pipeline.py [--src=../shared/data/imagenet-samples]
        [--sizes=64,256] [--workers=0,1,2] [--batch_size=32]

For each image size it measures, in images per second:

* ``bare``: ``Image.open(path).convert('RGB').resize(shorter side -> S, BILINEAR)`` over every
  kept file, one thread: what any loader must at least do.
* ``bare+draft``: the same with ``Image.draft`` (JPEG DCT-domain downscaling), which the
  pipeline uses; the fair reference for the pipeline's own decode.
* ``pipeline wN``: ``create_train_iterator`` (random crop, flip, Lab, batching) with N grain
  worker processes and one thread per process, so it uses max(N, 1) cores; the first batch
  (and the workers' start-up) is timed separately.
* a breakdown of one core's time per image: decode+crop/resize, Lab (colorjax.color), rest.

Overhead per core = (bare per core) / (pipeline per core) - 1; the goal is <= 30%.
Each figure is the best of ``--repeats`` runs, measured in turn (bare, bare+draft, w0, w1...).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from colorjax import color  # noqa: E402
from colorjax.data import create_train_iterator, default_data_config, prepare_folder  # noqa: E402
from colorjax.data import folder, images  # noqa: E402

_REPO = Path(__file__).resolve().parents[1]
flags.DEFINE_string("src", str(_REPO.parent / "shared" / "data" / "imagenet-samples"), "Photos.")
flags.DEFINE_list("sizes", ["64", "256"], "Image sizes S.")
flags.DEFINE_list("workers", ["0", "1", "2"], "grain worker counts.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("batches", 25, "Timed batches per pipeline run (after the first).")
flags.DEFINE_integer("repeats", 3, "Runs of each measurement; the best is reported (the "
                     "machine may be shared, and interference only ever slows a run down).")
flags.DEFINE_string("data_dir", "", "Where to prepare the folder (default: a temp dir).")
FLAGS = flags.FLAGS


def bare(paths: list[str], size: int, draft: bool) -> float:
    """Images per second of plain decode + resize of the shorter side to ``size``."""
    start = time.perf_counter()
    for p in paths:
        with Image.open(p) as im:
            if draft:
                im.draft("RGB", (size, size))
            im = im.convert("RGB")
            w, h = im.size
            s = size / min(w, h)
            im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
    return len(paths) / (time.perf_counter() - start)


def breakdown(paths: list[str], size: int) -> dict[str, float]:
    """Milliseconds per image, one core: decode+crop/resize, then Lab (colorjax.color)."""
    blobs = [Path(p).read_bytes() for p in paths]
    t0 = time.perf_counter()
    crops = [np.asarray(images.crop_resize(images.open_rgb(b, size), size, size)) for b in blobs]
    t1 = time.perf_counter()
    for c in crops:
        color.rgb_to_model_inputs(c.astype(np.float32) * np.float32(1 / 255))
    t2 = time.perf_counter()
    n = len(blobs)
    return {"decode_crop_resize_ms": 1e3 * (t1 - t0) / n, "lab_ms": 1e3 * (t2 - t1) / n}


def pipeline(data_dir: str, name: str, size: int, workers: int, batch: int, batches: int):
    cfg = default_data_config()
    cfg.name, cfg.data_dir, cfg.image_size = name, data_dir, size
    cfg.workers, cfg.read_threads = workers, 0
    it = create_train_iterator(cfg, global_batch_size=batch, seed=0)
    try:
        t0 = time.perf_counter()
        next(it)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(batches):
            next(it)
        rate = batches * batch / (time.perf_counter() - t0)
    finally:
        it.close()
    return rate, first


def main(argv):
    del argv
    src = Path(FLAGS.src)
    if not src.is_dir():
        print(f"{src} is absent: nothing to benchmark.")
        return
    data_dir = FLAGS.data_dir or tempfile.mkdtemp(prefix="colorjax_bench_")
    report = prepare_folder(src, "bench_photos", data_dir, val_fraction=0.0, progress=False)
    rejected = {line.split("\t")[1] for line in Path(report.rejected_list).read_text().splitlines()[1:]}
    files, _ = folder.scan(src)
    paths = [str(src / f) for f in files if f not in rejected]
    for p in paths:  # warm the page cache for both sides
        Path(p).read_bytes()
    print(f"{len(paths)} kept photos of {src} ({report.kept} in the dataset); "
          f"{os.cpu_count()} CPU cores; batch {FLAGS.batch_size}")
    print(f"{'S':>4} {'what':<16} {'img/s':>8} {'cores':>5} {'img/s/core':>10} "
          f"{'vs bare':>8} {'vs bare+draft':>13} {'1st batch s':>11}")
    workers = [int(w) for w in FLAGS.workers]
    for size in map(int, FLAGS.sizes):
        runs = {"bare": [], "draft": [], **{w: [] for w in workers}}
        for _ in range(FLAGS.repeats):
            runs["bare"].append(bare(paths, size, draft=False))
            runs["draft"].append(bare(paths, size, draft=True))
            for w in workers:
                runs[w].append(pipeline(data_dir, "bench_photos", size, w, FLAGS.batch_size,
                                        FLAGS.batches))
        ref, ref_draft = max(runs["bare"]), max(runs["draft"])
        print(f"{size:>4} {'bare':<16} {ref:>8.0f} {1:>5} {ref:>10.0f}")
        print(f"{size:>4} {'bare+draft':<16} {ref_draft:>8.0f} {1:>5} {ref_draft:>10.0f}")
        for w in workers:
            rate, first = max(runs[w])
            cores = max(w, 1)
            per_core = rate / cores
            print(f"{size:>4} {f'pipeline w{w}':<16} {rate:>8.0f} {cores:>5} {per_core:>10.0f} "
                  f"{ref / per_core - 1:>+8.0%} {ref_draft / per_core - 1:>+13.0%} {first:>11.1f}")
        parts = min((breakdown(paths[:300], size) for _ in range(FLAGS.repeats)),
                    key=lambda d: sum(d.values()))
        print(f"{size:>4} one core, ms/image: decode+crop/resize {parts['decode_crop_resize_ms']:.2f}, "
              f"Lab {parts['lab_ms']:.2f}")


if __name__ == "__main__":
    app.run(main)
