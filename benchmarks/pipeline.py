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
* the pipeline's stages, CPU ms per image: read a record (array_record + TFDS parsing),
  decode + crop/resize, Lab (colorjax.color.rgb_to_model_inputs).

Cost per core is measured as CPU time per image (this process and its grain worker
processes, from /proc), so it stays meaningful on a machine shared with other jobs, where
wall-clock rates drop. Overhead = pipeline CPU ms/image / bare CPU ms/image - 1; the goal is
<= 30%. Wall-clock images/s are shown too. Each figure is the best of ``--repeats`` runs,
measured in turn (bare, bare+draft, w0, w1, ...).
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
from colorjax.data import builders, folder, images  # noqa: E402

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


def cpu_seconds() -> float:
    """CPU time of this process plus its live child processes (grain workers), Linux /proc."""
    total, me, tick = time.process_time(), os.getpid(), os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:  # ppid; utime and stime are fields 14 and 15 of stat
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def bare(paths: list[str], size: int, draft: bool) -> tuple[float, float]:
    """(images/s, CPU ms/image) of plain decode + resize of the shorter side to ``size``."""
    start, cpu = time.perf_counter(), time.process_time()
    for p in paths:
        with Image.open(p) as im:
            if draft:
                im.draft("RGB", (size, size))
            im = im.convert("RGB")
            w, h = im.size
            s = size / min(w, h)
            im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
    n = len(paths)
    return n / (time.perf_counter() - start), 1e3 * (time.process_time() - cpu) / n


def breakdown(builder_dir: str, size: int, n: int = 300) -> dict[str, float]:
    """CPU ms per image, one thread, of the pipeline's stages on ``n`` random records."""
    source = builders.ImageBytesSource(builder_dir, "train")
    order = np.random.default_rng(0).permutation(len(source))[:n]
    source[0]  # open the files
    t0 = time.process_time()
    blobs = [source[int(i)] for i in order]
    t1 = time.process_time()
    crops = [np.asarray(images.crop_resize(images.open_rgb(b, size), size, size)) for b in blobs]
    t2 = time.process_time()
    for c in crops:
        color.rgb_to_model_inputs(c)  # uint8, as in the pipeline
    t3 = time.process_time()
    return {"read": 1e3 * (t1 - t0) / n, "decode_crop": 1e3 * (t2 - t1) / n,
            "lab": 1e3 * (t3 - t2) / n}


def pipeline(data_dir: str, name: str, size: int, workers: int, batch: int, batches: int):
    cfg = default_data_config()
    cfg.name, cfg.data_dir, cfg.image_size = name, data_dir, size
    cfg.workers, cfg.read_threads = workers, 0
    it = create_train_iterator(cfg, global_batch_size=batch, seed=0)
    try:
        t0 = time.perf_counter()
        next(it)
        first = time.perf_counter() - t0
        t0, cpu = time.perf_counter(), cpu_seconds()
        for _ in range(batches):
            next(it)
        n = batches * batch
        rate, cpu_ms = n / (time.perf_counter() - t0), 1e3 * (cpu_seconds() - cpu) / n
    finally:
        it.close()
    return rate, cpu_ms, first


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
    print(f"{'S':>4} {'what':<14} {'img/s':>7} {'CPU ms/img':>10} {'vs bare':>8} "
          f"{'vs bare+draft':>13} {'1st batch s':>11}")
    workers = [int(w) for w in FLAGS.workers]
    for size in map(int, FLAGS.sizes):
        runs = {"bare": [], "draft": [], **{w: [] for w in workers}}
        for _ in range(FLAGS.repeats):
            runs["bare"].append(bare(paths, size, draft=False))
            runs["draft"].append(bare(paths, size, draft=True))
            for w in workers:
                runs[w].append(pipeline(data_dir, "bench_photos", size, w, FLAGS.batch_size,
                                        FLAGS.batches))
        best = {k: (max(r[0] for r in v), min(r[1] for r in v), min(r[-1] for r in v))
                for k, v in runs.items()}
        ref, ref_draft = best["bare"][1], best["draft"][1]
        for k, label in (("bare", "bare"), ("draft", "bare+draft")):
            print(f"{size:>4} {label:<14} {best[k][0]:>7.0f} {best[k][1]:>10.2f}")
        for w in workers:
            rate, cpu_ms, first = best[w]
            print(f"{size:>4} {f'pipeline w{w}':<14} {rate:>7.0f} {cpu_ms:>10.2f} "
                  f"{cpu_ms / ref - 1:>+8.0%} {cpu_ms / ref_draft - 1:>+13.0%} {first:>11.1f}")
        parts = min((breakdown(report.path, size) for _ in range(FLAGS.repeats)),
                    key=lambda d: sum(d.values()))
        print(f"{size:>4} pipeline stages, CPU ms/image: read record {parts['read']:.2f}, "
              f"decode+crop/resize {parts['decode_crop']:.2f}, Lab {parts['lab']:.2f}")


if __name__ == "__main__":
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()  # XLA:CPU's convolution choice, as the entry points make it
    app.run(main)
