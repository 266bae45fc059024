"""The grain input pipeline: prepared TFDS split -> (L, ab) batches, per process shard.

Train: one global stream of examples, whatever the number of processes::

    records.shuffle(seed).repeat()              # global shuffle, a new order every epoch
      .map_with_index(decode -> RGB -> resize shorter side -> crop -> flip -> Lab -> scale)
      .batch(b)                                 # b = global_batch_size // process_count
      [process_index::process_count]            # this process's rows of each global batch

Global batch k is stream positions ``k*B .. (k+1)*B - 1`` (B the global batch); process i
takes the i-th block of b of them, so the processes' rows concatenated in process order are
the batch one process would read: a run on N processes sees the same global batches as a
run on one (the multi-process tests compare their parameters). The map is lazy, so each
process decodes only its own rows. Augmentations draw from
``np.random.default_rng([seed, 0, position in the stream])``, and the position already
encodes the epoch. The iterator's state is therefore just the number of batches taken;
restoring it restarts the grain iterator at that batch, with any number of worker
processes (workers only change who computes a batch, not its content).

Mixture (``config.data.mixture``): each source's split is its own
``records.shuffle(seed_i).repeat()`` (seed_0 is the data seed, seed_i for i > 0 is derived
from it), and ``grain.MapDataset.mix`` interleaves them deterministically in proportion to
the weights into the one stream above, which is then mapped, batched and split into
process blocks the same way. So a mixture of one source reads exactly the batches of that
source alone (only the iterator state's meta differs), and the state is again the number
of batches taken.

Eval: the first ``num_examples`` records of the split in global batches laid out the same
way (process i reads block i of each), center crop, no flip; the last global batch is padded
with ``mask == 0`` examples, so every process yields the same number of full batches and
the global batches, hence the metrics, do not depend on the number of processes.

Worker processes are started with ``spawn``: scripts that train with ``workers > 0``
need the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import json
import math

import grain
from absl import flags, logging
import jax
import numpy as np

from colorjax import color
from colorjax import hints
from colorjax.config.checks import ConfigError
from colorjax.data import allocator, images
from colorjax.data.config import check_fields
from colorjax.data.sources import open_mixture, open_split
from colorjax.platform import parallel

STATE_VERSION = 1


# --- per-example work (picklable: runs in grain workers) --------------------------------


def _to_model(rgb8: np.ndarray) -> dict[str, np.ndarray]:
    l, ab = color.rgb_to_model_inputs(np.asarray(rgb8, dtype=np.uint8))  # any strides
    return {"l": l, "ab": ab}


class _TrainExample:
    """(position in the stream, image bytes) -> augmented {'l', 'ab'} (and 'hints', drawn
    from the augmented truth, with `hints`)."""

    def __init__(self, seed: int, cfg, with_hints: bool = False):
        self.seed, self.with_hints = seed, with_hints
        self.size = cfg.image_size
        self.shorter = cfg.resize_shorter_to or cfg.image_size
        self.random_crop, self.hflip, self.draft = cfg.random_crop, cfg.hflip, cfg.jpeg_draft
        self.keep_freed_memory = cfg.keep_freed_memory
        self.mirror_a = float(cfg.get("mirror_a", 0.0))
        self.min_chroma_scale = float(cfg.get("min_chroma_scale", 1.0))

    def __call__(self, position: int, data: bytes) -> dict[str, np.ndarray]:
        if self.keep_freed_memory:  # here, so it also runs in each grain worker process
            allocator.keep_freed_memory()
        # The 0 stood for the process index when each process read a stream of its own;
        # kept so that single-process runs (and their checkpoints) see the same batches.
        rng = np.random.default_rng([self.seed, 0, position])
        offset = tuple(rng.random(2)) if self.random_crop else (0.5, 0.5)
        flip = self.hflip and rng.random() < 0.5
        im = images.open_rgb(data, self.shorter, self.draft)
        rgb = np.asarray(images.crop_resize(im, self.shorter, self.size, offset))
        out = _to_model(rgb[:, ::-1] if flip else rgb)
        if self.mirror_a > 0 or self.min_chroma_scale < 1:
            out["ab"] = self._colour_augment(out["ab"], position)
        if self.with_hints:  # their own generator: hints on or off, the same crops and flips
            out["hints"] = hints.sample_planes(out["ab"], hints.hint_rng(self.seed, position))
        return out


    def _colour_augment(self, ab: np.ndarray, position: int) -> np.ndarray:
        """The truth's a mirrored (red <-> green) with probability `mirror_a`, and its ab
        scaled by a factor uniform in [`min_chroma_scale`, 1] (see config.data)."""
        # A stream of its own: runs without these augmentations keep their batches.
        rng = np.random.default_rng([self.seed, 1, position])
        sign = -1.0 if rng.random() < self.mirror_a else 1.0
        scale = rng.uniform(self.min_chroma_scale, 1.0)
        return ab * np.asarray([sign * scale, scale], ab.dtype)


class _EvalExample:
    """Index in this process's rows -> center-cropped {'l', 'ab', 'mask'}; padding where
    the record index is -1. `num_hints` not None: also 'hints', that many points drawn
    from the truth with `hints.hint_rng(hint_seed, record index, stream=2)`."""

    def __init__(self, source, indices: list[int], cfg, num_hints: int | None = None,
                 hint_seed: int = 0):
        self.source, self.indices = source, indices
        self.num_hints, self.hint_seed = num_hints, hint_seed
        self.size, self.draft = cfg.image_size, cfg.jpeg_draft
        self.keep_freed_memory = cfg.keep_freed_memory

    def __call__(self, i: int) -> dict[str, np.ndarray]:
        if self.keep_freed_memory:
            allocator.keep_freed_memory()
        s = self.size
        if self.indices[i] < 0:
            out = {"l": np.zeros((s, s, 1), np.float32), "ab": np.zeros((s, s, 2), np.float32),
                   "mask": np.float32(0.0)}
            if self.num_hints is not None:
                out["hints"] = hints.empty_planes((s, s))
            return out
        im = images.open_rgb(self.source[self.indices[i]], s, self.draft)
        out = _to_model(np.asarray(images.crop_resize(im, s, s)))
        out["mask"] = np.float32(1.0)
        if self.num_hints is not None:
            out["hints"] = hints.sample_planes(
                out["ab"], hints.hint_rng(self.hint_seed, self.indices[i], stream=2),
                num_points=self.num_hints)
        return out


def _iterate(ds: grain.MapDataset, cfg, shared_memory: bool = True):
    """A grain iterator over ``ds`` with the configured threads and worker processes."""
    if cfg.keep_freed_memory:  # this process receives (and with 0 workers makes) the batches
        allocator.keep_freed_memory()
    it_ds = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=cfg.read_threads, prefetch_buffer_size=cfg.prefetch)
    )
    if not shared_memory:
        # Workers then pickle their outputs through a queue instead of shared memory.
        it_ds = grain.experimental.WithOptionsIterDataset(
            it_ds, grain.experimental.DatasetOptions(min_shm_size=2**62)
        )
    if cfg.workers > 0:
        if not flags.FLAGS.is_parsed():
            # grain's worker processes read its absl flags; outside an absl app (tests,
            # notebooks) use their defaults instead of failing.
            flags.FLAGS.mark_as_parsed()
        it_ds = it_ds.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=cfg.workers,
                                         per_worker_buffer_size=cfg.worker_buffer)
        )
    return iter(it_ds)


def _plain(batch: dict) -> dict[str, np.ndarray]:
    # Batches from worker processes live in shared memory (grain's SharedMemoryArray),
    # freed when the array is collected; copying them out (about 1 ms for 6 MB) means a
    # caller that keeps a batch, or exits holding one, cannot leak shared memory.
    return {k: np.array(v) if type(v) is not np.ndarray else v for k, v in batch.items()}


def _close(it) -> None:
    if it is not None and hasattr(it, "close"):
        it.close()


# --- iterators ---------------------------------------------------------------------------


class TrainIterator:
    """Infinite iterator of training batches with a JSON-serialisable, restorable state.

    ``get_state()`` is a small dict (it can be saved as it is, e.g. with orbax
    ``JsonSave``, or with ``encode_state``); ``set_state()`` makes the next batch the one
    that followed when the state was taken.
    """

    def __init__(self, batches: grain.MapDataset, cfg, meta: dict):
        self._batches, self._cfg, self._meta = batches, cfg, meta
        self._next = 0
        self._it = None

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._it is None:
            ds = self._batches[self._next :] if self._next else self._batches
            self._it = _iterate(ds, self._cfg)
        batch = _plain(next(self._it))
        self._next += 1
        return batch

    def get_state(self) -> dict:
        return {"version": STATE_VERSION, "next_batch": self._next, **self._meta}

    def set_state(self, state: dict) -> None:
        if isinstance(state, (bytes, str)):
            state = decode_state(state)
        mismatch = {k: (state.get(k), v) for k, v in self._meta.items() if state.get(k) != v}
        data_changed = {k: mismatch.pop(k) for k in ("dataset", "num_examples", "mixture")
                        if k in mismatch}
        if state.get("version") != STATE_VERSION or mismatch:
            raise ValueError(
                "The data iterator state does not belong to this pipeline, so restoring it "
                f"would not replay the same batches (saved vs now: {mismatch}, "
                f"version {state.get('version')} vs {STATE_VERSION})."
            )
        if data_changed:  # e.g. photos added to the folder: resume, but say it is not a replay
            logging.warning("Data changed since the iterator state was saved (saved vs now: %s); "
                            "resuming at batch %s of the new data.", data_changed,
                            state["next_batch"])
        self.close()
        self._next = int(state["next_batch"])

    def close(self) -> None:
        """Stop worker processes and threads (also done when garbage-collected)."""
        _close(self._it)
        self._it = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001  interpreter shutdown
            pass


class EvalIterable:
    """Finite, re-iterable eval batches ``{'l', 'ab', 'mask'}``; ``len()`` batches."""

    def __init__(self, batches: grain.MapDataset, cfg, num_batches: int, num_real: int):
        self._batches, self._cfg = batches, cfg
        self.num_batches, self.num_examples = num_batches, num_real  # num_real: this process

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        # When a finite dataset ends in the workers, grain 0.2.18 leaves one shared memory
        # batch per worker unfreed until exit: a leak per eval pass. Pickle eval batches.
        it = _iterate(self._batches, self._cfg, shared_memory=False)
        try:
            for batch in it:
                yield _plain(batch)
        finally:
            _close(it)


def _batch_per_process(global_batch_size: int, field: str) -> tuple[int, int, int]:
    return (parallel.process_batch(global_batch_size, field), jax.process_index(),
            jax.process_count())


def create_train_iterator(data_config, *, global_batch_size: int, seed: int,
                          with_hints: bool = False) -> TrainIterator:
    """Infinite training batches ``{'l': (b,S,S,1), 'ab': (b,S,S,2)}`` float32 for this process.

    ``with_hints`` (``config.model.hints``): also ``'hints'`` (b,S,S,3), colour hints drawn
    from each example's truth after crop and flip (``colorjax.hints.sample_planes``) with
    ``hint_rng(data seed, stream position)``: the same hints on resume and on any number
    of processes."""
    cfg = check_fields(data_config)
    b, pi, pc = _batch_per_process(global_batch_size, "config.batch_size")
    data_seed = seed if cfg.shuffle_seed in (None, -1) else cfg.shuffle_seed
    data_seed = int(data_seed) % 2**32
    if cfg.mixture:
        ds, meta = _mixture_stream(cfg, data_seed)
    else:
        source = open_split(cfg, cfg.train_split, False, "config.data.train_split")
        if not len(source):
            raise ConfigError("config.data.train_split", f"{cfg.train_split!r} has no images.")
        ds = _source_stream(source, cfg, data_seed)
        meta = {"dataset": f"{source.builder_dir}:{cfg.train_split}",
                "num_examples": len(source)}
    ds = ds.map_with_index(_TrainExample(data_seed, cfg, with_hints))
    ds = ds.batch(b, drop_remainder=True)[pi::pc]  # block pi of every global batch
    # The stream depends on the global batch only: a run may resume on another number of
    # processes. (States saved before kept the per-process batch and the process layout;
    # with one process those equal the global batch, and the extra keys are not compared.)
    meta.update(seed=data_seed, batch_size=global_batch_size, image_size=cfg.image_size)
    if with_hints:  # (absent without: states saved before hints existed still match)
        meta["hints"] = True
    return TrainIterator(ds, cfg, meta)


def _source_stream(source, cfg, seed: int) -> grain.MapDataset:
    """A split's records, shuffled anew every epoch (when cfg.shuffle), repeated for ever."""
    ds = grain.MapDataset.source(source)
    if cfg.shuffle:
        ds = ds.shuffle(seed=seed)
    return ds.repeat(None)


def _mixture_stream(cfg, data_seed: int) -> tuple[grain.MapDataset, dict]:
    """The sources of config.data.mixture, each its own endless stream, interleaved by weight."""
    sources = open_mixture(cfg, cfg.train_split, "config.data.train_split")
    streams, described = [], []
    for i, (res, source, weight) in enumerate(sources):
        if not len(source):
            raise ConfigError("config.data.mixture", f"the source {res.label} has no images in "
                              f"config.data.train_split={cfg.train_split!r}.")
        # Source 0 keeps the data seed, so a one-source mixture is that source alone.
        seed_i = data_seed if i == 0 else int(
            np.random.SeedSequence([data_seed, i]).generate_state(1)[0])
        streams.append(_source_stream(source, cfg, seed_i))
        described.append({"dataset": f"{source.builder_dir}:{cfg.train_split}",
                          "num_examples": len(source), "weight": float(weight)})
    meta = {"dataset": "mixture of " + ", ".join(d["dataset"] for d in described),
            "num_examples": sum(d["num_examples"] for d in described), "mixture": described}
    return grain.MapDataset.mix(streams, [d["weight"] for d in described]), meta


def create_eval_iterator(data_config, *, split: str, global_batch_size: int,
                         num_examples: int | None = None, num_hints: int | None = None,
                         hint_seed: int = 0) -> EvalIterable:
    """Deterministic eval batches ``{'l', 'ab', 'mask'}`` of ``split`` for this process.

    ``num_hints`` not None: batches also hold ``'hints'``, exactly that many points from
    each image's truth, seeded by ``hint_seed`` and the image's index in the split (the
    same hints whatever the batch size or number of processes).

    Uses the first ``num_examples`` images of the split (all when None). Global batch k
    holds images ``k*B .. (k+1)*B - 1`` (B = ``global_batch_size``), process i reads its
    i-th block of b = B / processes of them, and padding examples (mask 0) fill the last
    global batch: every process yields ``ceil(n / B)`` batches.
    """
    cfg = check_fields(data_config)
    b, pi, pc = _batch_per_process(global_batch_size, "config.eval.batch_size")
    source = open_split(cfg, split, True, "config.eval.split")
    n = len(source) if num_examples is None else min(int(num_examples), len(source))
    if n < 1:
        raise ValueError(f"split={split!r} of the eval data has no images (num_examples={num_examples}).")
    num_batches = math.ceil(n / global_batch_size)
    positions = [k * global_batch_size + pi * b + j for k in range(num_batches) for j in range(b)]
    local = [p if p < n else -1 for p in positions]
    ds = grain.MapDataset.range(len(local)).map(
        _EvalExample(source, local, cfg, num_hints, hint_seed)).batch(b)
    return EvalIterable(ds, cfg, num_batches, sum(p >= 0 for p in local))


# --- state helpers -----------------------------------------------------------------------


def encode_state(state: dict) -> bytes:
    """Iterator state -> UTF-8 JSON bytes (the state is already a JSON-compatible dict)."""
    return json.dumps(state, sort_keys=True).encode("utf-8")


def decode_state(data: bytes | str) -> dict:
    """Inverse of ``encode_state``."""
    return json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
